//! Harness for whole-system guest tests.
//!
//! A test describes a guest once, as QEMU-style command-line arguments, plus a script of
//! expectations and input. The same arguments run under `qemu-system-i386` (the reference) and
//! under `vessel run` (which accepts QEMU's flags), so the two emulators are compared on exactly
//! the same guest. Each run records how long it took to reach every marker.

pub mod screen;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Which emulator runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// `qemu-system-i386 -accel tcg`: the reference.
    Qemu,
    /// `target/release/vessel run`.
    Vessel,
}

impl Emulator {
    pub fn name(self) -> &'static str {
        match self {
            Emulator::Qemu => "qemu-system-i386",
            Emulator::Vessel => "vessel",
        }
    }
}

/// One step of a guest script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Wait until the serial/debug output contains this text (after the previous match).
    Expect(&'static str),
    /// Type this text on the serial console.
    Send(&'static str),
    /// Wait until the emulator exits by itself (e.g. after the guest's `poweroff -f`); recorded
    /// as the marker "exit".
    ExpectExit,
}

/// What a run produced.
#[derive(Debug)]
pub struct Transcript {
    pub emulator: Emulator,
    /// Everything the guest printed on the console we watched.
    pub output: String,
    /// Time from start to each `Expect` marker, in script order.
    pub marker_times: Vec<(&'static str, Duration)>,
    /// Error if a marker was not reached before the deadline.
    pub failure: Option<String>,
}

impl Transcript {
    pub fn assert_ok(&self) {
        if let Some(f) = &self.failure {
            let tail: String = {
                let chars: Vec<char> = self.output.chars().collect();
                chars[chars.len().saturating_sub(3000)..].iter().collect()
            };
            panic!("{}: {f}\n--- last output ---\n{tail}\n--- end ---", self.emulator.name());
        }
    }

    pub fn report(&self) -> String {
        let mut s = format!("{:>17}:", self.emulator.name());
        for (m, t) in &self.marker_times {
            s += &format!(" [{m}] at {:.2}s", t.as_secs_f64());
        }
        if let Some(f) = &self.failure {
            s += &format!(" FAILED: {f}");
        }
        s
    }
}

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Directory holding the guests built by `tests/guests/build.sh`; builds them if missing.
pub fn guests_dir() -> PathBuf {
    let out = repo_root().join("tests/guests/out");
    let needed = [
        "vmlinuz-686",
        "initrd.cpio.gz",
        "initrd-ata.cpio.gz",
        "initrd-fb.cpio.gz",
        "linux-disk.img",
        "grub-rescue.iso",
        "memtest86+ia32.bin",
        "floppy-memtest.img",
        "initrd-floppy-ab.cpio.gz",
        "floppy-fdctest.img",
    ];
    if !needed.iter().all(|f| out.join(f).exists()) {
        let status = Command::new("bash")
            .arg(repo_root().join("tests/guests/build.sh"))
            .status()
            .expect("run tests/guests/build.sh");
        assert!(status.success(), "tests/guests/build.sh failed");
    }
    out
}

/// Path of a guest file, building guests first if needed.
pub fn guest(name: &str) -> String {
    guests_dir().join(name).to_string_lossy().into_owned()
}

/// Debian's SeaBIOS.
pub const SEABIOS: &str = "/usr/share/seabios/bios.bin";

/// The `vessel` binary built by `cargo build --release` (the Makefile builds it before testing).
pub fn vessel_binary() -> PathBuf {
    let profile_dirs = ["release", "debug"];
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    for p in profile_dirs {
        let b = target.join(p).join("vessel");
        if b.exists() {
            return b;
        }
    }
    panic!("vessel binary not found under {}: run `cargo build --release` first", target.display());
}

fn spawn(emulator: Emulator, args: &[String]) -> Child {
    let mut cmd = match emulator {
        Emulator::Qemu => {
            let mut c = Command::new("qemu-system-i386");
            c.args(["-accel", "tcg", "-no-reboot"]);
            c
        }
        Emulator::Vessel => {
            let mut c = Command::new(vessel_binary());
            c.arg("run").arg("-no-reboot");
            c
        }
    };
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", emulator.name()))
}

fn reader(mut r: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Run a guest with QEMU-style `args` (the console to watch must go to stdio, e.g.
/// `-serial stdio` or `-debugcon stdio`), follow `script`, and kill the emulator at the end.
pub fn run(emulator: Emulator, args: &[&str], script: &[Step], timeout: Duration) -> Transcript {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    let mut child = spawn(emulator, &args);
    let mut stdin = child.stdin.take();
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let mut output = String::new();
    let mut stderr = String::new();
    let mut marker_times = Vec::new();
    let mut failure = None;
    let mut searched_from = 0;
    'script: for step in script {
        match step {
            Step::Send(text) => {
                // Type slowly: a UART FIFO is 16 bytes and guests read it from an interrupt handler.
                if let Some(i) = stdin.as_mut() {
                    for b in text.bytes() {
                        let _ = i.write_all(&[b]);
                        let _ = i.flush();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            Step::ExpectExit => loop {
                while let Ok(chunk) = out.try_recv() {
                    output.push_str(&String::from_utf8_lossy(&chunk));
                }
                if let Ok(Some(_)) = child.try_wait() {
                    std::thread::sleep(Duration::from_millis(100));
                    while let Ok(chunk) = out.try_recv() {
                        output.push_str(&String::from_utf8_lossy(&chunk));
                    }
                    marker_times.push(("exit", start.elapsed()));
                    break;
                }
                if start.elapsed() > timeout {
                    failure = Some(format!("did not exit within {timeout:?}"));
                    break 'script;
                }
                std::thread::sleep(Duration::from_millis(20));
            },
            Step::Expect(marker) => loop {
                while let Ok(chunk) = out.try_recv() {
                    output.push_str(&String::from_utf8_lossy(&chunk));
                }
                while let Ok(chunk) = err.try_recv() {
                    stderr.push_str(&String::from_utf8_lossy(&chunk));
                }
                if let Some(pos) = output[searched_from..].find(marker) {
                    searched_from += pos + marker.len();
                    marker_times.push((*marker, start.elapsed()));
                    break;
                }
                if start.elapsed() > timeout {
                    failure = Some(format!("marker {marker:?} not seen within {timeout:?}"));
                    break 'script;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    // Drain what is left before giving up.
                    std::thread::sleep(Duration::from_millis(100));
                    while let Ok(chunk) = out.try_recv() {
                        output.push_str(&String::from_utf8_lossy(&chunk));
                    }
                    if output[searched_from..].contains(marker) {
                        continue;
                    }
                    failure = Some(format!("exited ({status}) before marker {marker:?}; stderr: {stderr}"));
                    break 'script;
                }
                std::thread::sleep(Duration::from_millis(20));
            },
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    Transcript { emulator, output, marker_times, failure }
}

/// Run a guest on the reference alone, print its timeline and require every marker.
pub fn reference(args: &[&str], script: &[Step], timeout: Duration) -> Transcript {
    let q = run(Emulator::Qemu, args, script, timeout);
    println!("{}", q.report());
    q.assert_ok();
    q
}

/// Run the same guest on the reference and on Vessel; both must reach every marker.
/// Prints both timelines (visible with `--nocapture`, and in the failure message otherwise).
pub fn compare(args: &[&str], script: &[Step], timeout: Duration) -> (Transcript, Transcript) {
    let q = run(Emulator::Qemu, args, script, timeout);
    println!("{}", q.report());
    q.assert_ok();
    let v = run(Emulator::Vessel, args, script, timeout);
    println!("{}", v.report());
    v.assert_ok();
    (q, v)
}
