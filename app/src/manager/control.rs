//! Client for a VM's control socket: the QEMU-HMP-like monitor `vessel run -monitor
//! unix:PATH,server,nowait` serves (docs/monitor.md). Plain text over a Unix stream socket:
//! a greeting ending in the prompt (`(vessel) `; QEMU's is `(qemu) `), then one command per line,
//! each answered by its output and the next prompt (the end-of-reply marker).
//!
//! The client tolerates QEMU's line editor, which echoes the command back with cursor escape
//! sequences (`\x1b[K`, `\x1b[D`): escapes are removed and an echo line that ends with the
//! command is dropped. The same client talks to `qemu-system-i386 -monitor unix:...` (the tests
//! use QEMU as the reference for the protocol).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Vessel's prompt, then QEMU's.
pub const PROMPTS: [&str; 2] = ["(vessel) ", "(qemu) "];

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: the VM closed the control socket", path.display())]
    Closed { path: PathBuf },
    #[error("{}: `{command}` failed: {message}", path.display())]
    Command { path: PathBuf, command: String, message: String },
    #[error("{}: unexpected answer to `{command}`: {answer:?}", path.display())]
    Unexpected { path: PathBuf, command: String, answer: String },
}

/// What `info status` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
}

pub struct Monitor {
    path: PathBuf,
    stream: UnixStream,
}

impl Monitor {
    /// Connect and read the banner up to the first prompt.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Monitor, ControlError> {
        let io = |source| ControlError::Io { path: path.to_path_buf(), source };
        let stream = UnixStream::connect(path).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let mut m = Monitor { path: path.to_path_buf(), stream };
        m.read_to_prompt()?;
        Ok(m)
    }

    fn read_to_prompt(&mut self) -> Result<String, ControlError> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|source| ControlError::Io { path: self.path.clone(), source })?;
            if n == 0 {
                return Err(ControlError::Closed { path: self.path.clone() });
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = PROMPTS.iter().find(|p| buf.ends_with(p.as_bytes())) {
                buf.truncate(buf.len() - p.len());
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }

    /// Send one command and return its output (echo and prompt removed). Output lines that say
    /// `Error: ...` or `unknown command` become [`ControlError::Command`].
    pub fn command(&mut self, cmd: &str) -> Result<String, ControlError> {
        self.stream
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(|source| ControlError::Io { path: self.path.clone(), source })?;
        let raw = self.read_to_prompt()?;
        let out = clean_output(&raw, cmd);
        // Vessel: `Error: ...` (also for unknown commands); QEMU: `unknown command: 'x'` bare
        if let Some(l) = out.lines().find(|l| l.starts_with("Error:") || l.starts_with("unknown command")) {
            return Err(ControlError::Command {
                path: self.path.clone(),
                command: cmd.into(),
                message: l.trim_start_matches("Error:").trim().into(),
            });
        }
        Ok(out)
    }

    /// `info status`.
    pub fn status(&mut self) -> Result<RunState, ControlError> {
        let out = self.command("info status")?;
        let state = out.lines().find_map(|l| l.trim().strip_prefix("VM status:")).map(str::trim);
        match state {
            Some(s) if s.starts_with("running") => Ok(RunState::Running),
            Some(s) if s.starts_with("paused") => Ok(RunState::Paused),
            _ => Err(ControlError::Unexpected { path: self.path.clone(), command: "info status".into(), answer: out }),
        }
    }

    pub fn stop(&mut self) -> Result<(), ControlError> {
        self.command("stop").map(drop)
    }

    pub fn cont(&mut self) -> Result<(), ControlError> {
        self.command("cont").map(drop)
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn system_reset(&mut self) -> Result<(), ControlError> {
        self.command("system_reset").map(drop)
    }

    /// Write the current screen to `file` (PPM, or PNG when the monitor supports `-f png`).
    pub fn screendump(&mut self, file: &Path) -> Result<(), ControlError> {
        self.command(&format!("screendump {}", file.display())).map(drop)
    }

    /// `quit`: the VM process exits; the socket closes without a prompt.
    pub fn quit(mut self) -> Result<(), ControlError> {
        self.stream
            .write_all(b"quit\n")
            .map_err(|source| ControlError::Io { path: self.path.clone(), source })?;
        match self.read_to_prompt() {
            Err(ControlError::Closed { .. }) | Err(ControlError::Io { .. }) => Ok(()),
            Ok(out) => Err(ControlError::Unexpected { path: self.path.clone(), command: "quit".into(), answer: out }),
            Err(e) => Err(e),
        }
    }
}

/// Remove terminal escape sequences, the echoed command line and surrounding blank lines.
pub fn clean_output(raw: &str, cmd: &str) -> String {
    let mut text = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            text.push(c);
        }
    }
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.first().is_some_and(|l| l.trim_end().ends_with(cmd.trim())) {
        lines.remove(0);
    }
    lines.join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_qemu_echo() {
        let raw = "i\x1b[K\x1b[Din\x1b[K\x1b[D\x1b[Dinfo status\x1b[K\r\nVM status: running\r\n";
        assert_eq!(clean_output(raw, "info status"), "VM status: running");
        assert_eq!(clean_output("VM status: paused\r\n", "info status"), "VM status: paused");
        assert_eq!(clean_output("s\x1b[K\x1b[Dstop\x1b[K\r\n", "stop"), "");
    }

    /// The client against Vessel's own monitor (`vessel run -monitor unix:...`).
    #[test]
    fn drives_vessel_monitor() {
        let dir = std::env::temp_dir().join(format!("vessel-mon-v-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("vessel.sock");
        let exe = super::super::tests::vessel_exe();
        let help = std::process::Command::new(&exe).args(["run", "--help"]).output().unwrap();
        if !String::from_utf8_lossy(&help.stdout).contains("--monitor") {
            eprintln!("NOTE: `vessel run` has no -monitor yet; drives_vessel_monitor did not run");
            return;
        }
        let mut vm = std::process::Command::new(&exe)
            .args(["run", "-m", "16", "-display", "none", "-serial", "none", "-monitor"])
            .arg(format!("unix:{},server,nowait", sock.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        let mut m = loop {
            match Monitor::connect(&sock, Duration::from_secs(5)) {
                Ok(m) => break m,
                Err(e) => {
                    assert!(t0.elapsed() < Duration::from_secs(20), "{e}");
                    std::thread::sleep(Duration::from_millis(50))
                }
            }
        };
        assert_eq!(m.status().unwrap(), RunState::Running);
        m.stop().unwrap();
        assert_eq!(m.status().unwrap(), RunState::Paused);
        m.cont().unwrap();
        assert_eq!(m.status().unwrap(), RunState::Running);
        // SeaBIOS draws its text screen: wait for some non-black pixels
        let ppm = dir.join("screen.ppm");
        let t0 = std::time::Instant::now();
        loop {
            m.screendump(&ppm).unwrap();
            let img = super::super::thumbnail::read_image(&ppm).unwrap();
            if img.rgb.iter().any(|&v| v > 0) {
                assert!(img.width >= 320 && img.height >= 200, "{}x{}", img.width, img.height);
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "the screen stayed black");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(matches!(m.command("no_such_command"), Err(ControlError::Command { .. })));
        m.quit().unwrap();
        assert!(vm.wait().unwrap().success());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The client against the real reference: QEMU's own HMP monitor on a Unix socket.
    #[test]
    fn drives_qemu_monitor() {
        let dir = std::env::temp_dir().join(format!("vessel-mon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("qemu.sock");
        let mut qemu = std::process::Command::new("qemu-system-i386")
            .args(["-display", "none", "-nodefaults", "-vga", "std", "-m", "16", "-monitor"])
            .arg(format!("unix:{},server,nowait", sock.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("qemu-system-i386 (scripts/setup-debian installs it)");
        let t0 = std::time::Instant::now();
        let mut m = loop {
            match Monitor::connect(&sock, Duration::from_secs(5)) {
                Ok(m) => break m,
                Err(e) if t0.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(m.status().unwrap(), RunState::Running);
        m.stop().unwrap();
        assert_eq!(m.status().unwrap(), RunState::Paused);
        m.cont().unwrap();
        assert_eq!(m.status().unwrap(), RunState::Running);
        m.system_reset().unwrap();
        assert_eq!(m.status().unwrap(), RunState::Running);
        let ppm = dir.join("screen.ppm");
        m.screendump(&ppm).unwrap();
        let img = super::super::thumbnail::read_image(&ppm).unwrap();
        assert!(img.width >= 320 && img.height >= 200, "{}x{}", img.width, img.height);
        match m.command("no_such_command") {
            Err(ControlError::Command { message, .. }) => assert!(message.contains("no_such_command"), "{message}"),
            other => panic!("{other:?}"),
        }
        m.quit().unwrap();
        let st = qemu.wait().unwrap();
        assert!(st.success(), "{st}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
