//! One `vessel run` process per running VM. The manager never runs a guest in its own process:
//! `vessel run --profile NAME -name NAME -monitor unix:<vm_dir>/monitor.sock,server,nowait` runs it (and
//! opens the guest window when there is a display), its output goes to `<vm_dir>/run.log`, and
//! the manager talks to it only through the control socket. A crashed VM process shows up as
//! an exit status; the manager carries on.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vessel_core::profile::Store;

use super::control::{ControlError, Monitor, RunState};

/// The `vessel` binary that runs VMs: `$VESSEL_EXE`, else this executable.
pub fn vessel_exe() -> PathBuf {
    std::env::var_os("VESSEL_EXE")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("vessel"))
}

/// What the library shows for a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmState {
    /// No process.
    Stopped,
    /// Process started, control socket not answering yet.
    Starting,
    Running,
    Paused,
    /// `quit` sent, waiting for the process to exit.
    Stopping,
    /// The process ended by itself with a failure (exit status, last log line).
    Failed { code: Option<i32>, message: String },
}

pub struct VmProcess {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    screen: PathBuf,
    monitor: Option<Monitor>,
    started: Instant,
    last_screendump: Option<Instant>,
}

/// How long a socket read may block the UI thread (local socket: answers take microseconds).
const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the running VM's screen is saved for the thumbnail.
const SCREEN_EVERY: Duration = Duration::from_secs(2);

pub fn socket_path(store: &Store, name: &str) -> PathBuf {
    store.vm_dir(name).join("monitor.sock")
}

/// The last screen of a VM (thumbnail).
pub fn screen_path(store: &Store, name: &str) -> PathBuf {
    store.vm_dir(name).join("screen.ppm")
}

impl VmProcess {
    pub fn spawn(exe: &Path, store: &Store, name: &str) -> Result<VmProcess> {
        let dir = store.vm_dir(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let socket = socket_path(store, name);
        let _ = std::fs::remove_file(&socket);
        let log = dir.join("run.log");
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--profile")
            .arg(name)
            // the guest window's title
            .arg("-name")
            .arg(name)
            .arg("-monitor")
            .arg(format!("unix:{},server,nowait", socket.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        tracing::info!(vm = name, pid = child.id(), "started vessel run");
        Ok(VmProcess {
            child,
            socket,
            log,
            screen: screen_path(store, name),
            monitor: None,
            started: Instant::now(),
            last_screendump: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn monitor(&mut self) -> Result<&mut Monitor, ControlError> {
        if self.monitor.is_none() {
            self.monitor = Some(Monitor::connect(&self.socket, IO_TIMEOUT)?);
        }
        Ok(self.monitor.as_mut().unwrap())
    }

    /// Current state; `None` once the process has exited cleanly (the VM is stopped).
    pub fn poll(&mut self) -> VmState {
        match self.child.try_wait() {
            Ok(Some(st)) => {
                if st.success() {
                    return VmState::Stopped;
                }
                use std::os::unix::process::ExitStatusExt;
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                // `vessel run` reports a refusal as `Error: ...` (anyhow); else the last line
                let last = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Error: "))
                    .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let message = match st.signal() {
                    Some(sig) => format!("killed by signal {sig}"),
                    None => last,
                };
                return VmState::Failed { code: st.code(), message };
            }
            Ok(None) => {}
            Err(e) => return VmState::Failed { code: None, message: e.to_string() },
        }
        let status = self.monitor().and_then(|m| m.status());
        match status {
            Ok(s) => {
                if self.last_screendump.is_none_or(|t| t.elapsed() >= SCREEN_EVERY) {
                    self.last_screendump = Some(Instant::now());
                    self.save_screen();
                }
                match s {
                    RunState::Running => VmState::Running,
                    RunState::Paused => VmState::Paused,
                }
            }
            Err(e) => {
                // a dropped connection is retried on the next poll
                self.monitor = None;
                if self.started.elapsed() > Duration::from_secs(30) {
                    tracing::warn!("control socket: {e}");
                }
                VmState::Starting
            }
        }
    }

    /// `screendump` into a temporary file, renamed over the thumbnail when complete.
    fn save_screen(&mut self) {
        let tmp = self.screen.with_extension("ppm.part");
        let r = self.monitor().and_then(|m| m.screendump(&tmp));
        match r {
            Ok(()) => {
                let _ = std::fs::rename(&tmp, &self.screen);
            }
            Err(e) => tracing::debug!("screendump: {e}"),
        }
    }

    pub fn pause(&mut self) -> Result<(), ControlError> {
        self.monitor()?.stop()
    }

    pub fn resume(&mut self) -> Result<(), ControlError> {
        self.monitor()?.cont()
    }

    /// Save the last screen, then `quit`; kill the process if the monitor does not answer or
    /// the process has not exited within 5 s.
    pub fn stop(mut self) -> Result<()> {
        self.save_screen();
        let quit = match self.monitor.take() {
            Some(m) => m.quit(),
            None => Monitor::connect(&self.socket, IO_TIMEOUT).and_then(|m| m.quit()),
        };
        if let Err(e) = &quit {
            tracing::warn!("quit: {e}; killing pid {}", self.child.id());
            let _ = self.child.kill();
        }
        let t0 = Instant::now();
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&self.socket);
        Ok(())
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        // a VM keeps running when the manager closes only if it was detached; reap it otherwise
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
