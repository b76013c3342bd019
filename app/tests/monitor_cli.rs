//! The monitor end to end: the real `vessel run` binary running Debian's SeaBIOS, driven over the
//! unix-socket control socket and over stdio, with `qemu-system-i386` running the same script as
//! the reference where QEMU's monitor behaves the same. Also `--profile` and refused options.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEABIOS: &str = "/usr/share/seabios/bios.bin";
const BANNER: &str = "SeaBIOS (version";
const MENU: &str = "Press ESC for boot menu";
const SELECT: &str = "Select boot device";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vessel-montest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Emu {
    Qemu,
    Vessel,
}

/// The guest's serial output, collected by a thread.
#[derive(Clone, Default)]
struct Serial(Arc<Mutex<String>>);

impl Serial {
    fn follow(r: impl Read + Send + 'static) -> Serial {
        let s = Serial::default();
        let out = s.0.clone();
        std::thread::spawn(move || {
            let mut r = r;
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        s
    }
    fn count(&self, m: &str) -> usize {
        self.0.lock().unwrap().matches(m).count()
    }
    fn wait(&self, m: &str, n: usize, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while self.count(m) < n {
            assert!(Instant::now() < end, "no {n}x {m:?} on serial within {secs}s; serial:\n{}", self.0.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A monitor client that works with both QEMU's HMP (which echoes input with terminal escapes)
/// and Vessel's (no echo): a reply is everything up to the next prompt.
struct Mon {
    r: BufReader<UnixStream>,
    w: UnixStream,
    prompt: &'static str,
}

impl Mon {
    fn connect(path: &Path, emu: Emu) -> (Mon, String) {
        let end = Instant::now() + Duration::from_secs(30);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < end, "connect {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let prompt = if emu == Emu::Qemu { "(qemu) " } else { "(vessel) " };
        let mut m = Mon { r: BufReader::new(s.try_clone().unwrap()), w: s, prompt };
        let greeting = m.read_reply();
        (m, greeting)
    }

    fn read_reply(&mut self) -> String {
        let mut raw = Vec::new();
        let mut b = [0u8; 1];
        while !raw.ends_with(self.prompt.as_bytes()) {
            match self.r.read(&mut b) {
                Ok(1) => raw.push(b[0]),
                _ => break,
            }
        }
        let mut s = String::from_utf8_lossy(&raw).into_owned();
        if let Some(t) = s.strip_suffix(self.prompt) {
            s = t.to_string();
        }
        // QEMU's readline echo: the typed line, redrawn with ESC sequences, up to the first CRLF
        if s.contains('\x1b') {
            s = s.split_once("\r\n").map(|(_, r)| r.to_string()).unwrap_or_default();
        }
        s.replace("\r\n", "\n").trim().to_string()
    }

    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.w, "{line}").unwrap();
        self.w.flush().unwrap();
        self.read_reply()
    }
}

fn start(emu: Emu, sock: &Path, state: &Path) -> (Child, Serial) {
    let common = [
        "-bios", SEABIOS, "-nographic", "-nic", "none", "-m", "64", "-boot", "menu=on,splash-time=60000",
    ];
    let monitor = format!("unix:{},server,nowait", sock.display());
    let mut c = match emu {
        Emu::Qemu => {
            let mut c = Command::new("qemu-system-i386");
            c.args(["-accel", "tcg"]);
            c
        }
        Emu::Vessel => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_vessel"));
            // --realtime: SeaBIOS's 60 s menu wait takes 60 s of wall time, as in QEMU
            c.arg("run").arg("--realtime").arg("--state-dir").arg(state);
            c
        }
    };
    c.args(common).arg("-monitor").arg(monitor);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("start {emu:?}: {e}"));
    let serial = Serial::follow(child.stdout.take().unwrap());
    (child, serial)
}

fn clock(m: &mut Mon) -> String {
    let c = m.cmd("info clock");
    assert!(c.starts_with("instructions: "), "{c}");
    c
}

fn wait_exit(c: &mut Child, secs: u64) -> std::process::ExitStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = c.kill();
            panic!("did not exit within {secs}s after quit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The keys (`EAX`, `CS `, `CR0`, ...) of an `info registers` dump.
fn register_keys(dump: &str) -> Vec<String> {
    dump.replace(" =", "=").split_whitespace().filter_map(|w| w.split_once('=').map(|(k, _)| k.trim().to_string())).filter(|k| !k.is_empty()).collect()
}

/// One script, run on QEMU and on Vessel; savevm/loadvm and `info clock` only on Vessel (QEMU
/// needs a qcow2 disk for savevm and has no instruction counter in HMP).
fn monitor_script(emu: Emu) -> String {
    let dir = tmp(&format!("{emu:?}"));
    let sock = dir.join("mon.sock");
    let (mut child, serial) = start(emu, &sock, &dir.join("states"));
    serial.wait(MENU, 1, 120);
    let (mut m, greeting) = Mon::connect(&sock, emu);
    assert!(greeting.contains("monitor - type 'help' for more information"), "{greeting}");

    assert_eq!(m.cmd("info status"), "VM status: running");
    assert_eq!(m.cmd("stop"), "");
    assert_eq!(m.cmd("info status"), "VM status: paused");
    let regs = m.cmd("info registers");
    if emu == Emu::Vessel {
        // paused: the CPU does not advance
        let c1 = clock(&mut m);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(clock(&mut m), c1, "instructions advanced while paused");
        assert_eq!(m.cmd("info registers"), regs);
        // the saved point: paused at the boot menu prompt
        assert_eq!(m.cmd("savevm menu1"), "");
        let snaps = m.cmd("info snapshots");
        assert!(snaps.lines().any(|l| l.split_whitespace().nth(1) == Some("menu1")), "{snaps}");
        assert_eq!(m.cmd("cont"), "");
        let end = Instant::now() + Duration::from_secs(20);
        while clock(&mut m) == c1 {
            assert!(Instant::now() < end, "no progress after cont");
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        assert_eq!(m.cmd("cont"), "");
    }
    assert_eq!(m.cmd("info status"), "VM status: running");

    // bad input: an error, the VM keeps running
    let e = m.cmd("frobnicate now");
    assert!(e.contains("unknown command: 'frobnicate'"), "{e}");
    assert_eq!(m.cmd("info status"), "VM status: running");

    // reset: SeaBIOS starts over; at its menu, ESC (PS/2 keyboard) opens the boot menu
    assert_eq!(m.cmd("system_reset"), "");
    serial.wait(BANNER, 2, 120);
    serial.wait(MENU, 2, 120);
    assert_eq!(m.cmd("sendkey esc"), "");
    serial.wait(SELECT, 1, 60);

    if emu == Emu::Vessel {
        // back to the saved point: same registers, SeaBIOS waits at the menu prompt again and
        // takes ESC again, without another reset
        assert_eq!(m.cmd("stop"), "");
        assert_eq!(m.cmd("loadvm menu1"), "");
        assert_eq!(m.cmd("info registers"), regs, "loadvm did not restore the CPU");
        assert_eq!(m.cmd("cont"), "");
        assert_eq!(m.cmd("sendkey esc"), "");
        serial.wait(SELECT, 2, 60);
        assert_eq!(serial.count(BANNER), 2, "loadvm must not reboot the guest");
        let e = m.cmd("loadvm nosuch");
        assert!(e.starts_with("Error: no snapshot named 'nosuch'"), "{e}");
        assert_eq!(m.cmd("delvm menu1"), "");
        assert_eq!(m.cmd("info snapshots"), "There is no snapshot available.");
        assert!(m.cmd("loadvm menu1").starts_with("Error: "));
        assert_eq!(m.cmd("info status"), "VM status: running");
    }

    // a second client after the first one leaves
    drop(m);
    let (mut m, _) = Mon::connect(&sock, emu);
    assert_eq!(m.cmd("info status"), "VM status: running");
    writeln!(m.w, "quit").unwrap();
    let status = wait_exit(&mut child, 30);
    assert_eq!(status.code(), Some(0), "{emu:?} quit exit status");
    regs
}

#[test]
fn socket_monitor_seabios_against_qemu() {
    let q_regs = monitor_script(Emu::Qemu);
    let v_regs = monitor_script(Emu::Vessel);
    // `info registers` has QEMU's layout: every register Vessel prints, QEMU prints too
    let q = register_keys(&q_regs);
    let v = register_keys(&v_regs);
    for k in ["EAX", "EIP", "EFL", "CS", "SS", "GDT", "IDT", "CR0", "CR3", "DR7", "EFER"] {
        assert!(v.iter().any(|x| x == k), "vessel info registers lacks {k}:\n{v_regs}");
    }
    for k in &v {
        assert!(q.contains(k), "{k} is not in QEMU's info registers:\n{q_regs}");
    }
}

/// `-monitor stdio` (serial in a file) and the `-nographic` multiplexer (Ctrl-A c), on both.
#[test]
fn stdio_monitor_and_multiplexer() {
    let dir = tmp("stdio");
    for emu in [Emu::Qemu, Emu::Vessel] {
        for mux in [false, true] {
            let mut c = match emu {
                Emu::Qemu => {
                    let mut c = Command::new("qemu-system-i386");
                    c.args(["-accel", "tcg"]);
                    c
                }
                Emu::Vessel => {
                    let mut c = Command::new(env!("CARGO_BIN_EXE_vessel"));
                    c.arg("run");
                    c
                }
            };
            c.args(["-bios", SEABIOS, "-nic", "none", "-m", "32"]);
            if mux {
                c.arg("-nographic");
            } else {
                let ser = dir.join(format!("{emu:?}-serial.txt"));
                c.args(["-display", "none", "-monitor", "stdio", "-serial"]).arg(format!("file:{}", ser.display()));
            }
            c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let out = Serial::follow(child.stdout.take().unwrap());
            if mux {
                out.wait(BANNER, 1, 60);
                stdin.write_all(b"\x01c").unwrap();
                stdin.flush().unwrap();
            }
            out.wait("monitor - type 'help'", 1, 60);
            stdin.write_all(b"info status\n").unwrap();
            stdin.flush().unwrap();
            out.wait("VM status: running", 1, 60);
            stdin.write_all(b"quit\n").unwrap();
            stdin.flush().unwrap();
            let st = wait_exit(&mut child, 30);
            assert_eq!(st.code(), Some(0), "{emu:?} mux={mux}: {}", out.0.lock().unwrap());
        }
    }
}

fn vessel_run(args: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vessel"));
    c.arg("run").args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn profiles_and_refused_options() {
    let data = tmp("profiles");
    let store = data.join("vessel");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        store.join("small.ron"),
        "Profile(schema_version: 2, name: \"small\", memory_mib: 48, boot_order: \"c\")",
    )
    .unwrap();
    std::fs::write(
        store.join("nodisk.ron"),
        "Profile(schema_version: 2, name: \"nodisk\", disks: [Disk(path: \"nodisk/gone.qcow2\")])",
    )
    .unwrap();
    std::fs::write(store.join("loud.ron"), "Profile(schema_version: 2, name: \"loud\", sound: Sb16)").unwrap();
    let env = [("XDG_DATA_HOME", data.as_path())];

    // the profile's machine: SeaBIOS's debug log says how much RAM it found
    let log = data.join("debugcon.txt");
    let debugcon = format!("file:{}", log.display());
    let (code, out, err) =
        vessel_run(&["--profile", "small", "-nographic", "-debugcon", &debugcon, "--timeout", "5", "-no-reboot"], &env);
    assert_eq!(code, Some(124), "{err}");
    assert!(out.contains(BANNER), "{out}");
    let log = std::fs::read_to_string(&log).unwrap();
    // e820: RAM from 1 MiB up to 48 MiB less the 8 KiB SeaBIOS reserves at the top
    assert!(log.contains("0000000000100000 - 0000000002ffe000 = 1 RAM"), "48 MiB expected in SeaBIOS's log:\n{log}");

    let (code, _, err) = vessel_run(&["--profile", "nosuch", "-nographic"], &env);
    assert_ne!(code, Some(0));
    assert!(err.contains("no profile named \"nosuch\""), "{err}");
    let (code, _, err) = vessel_run(&["--profile", "nodisk", "-nographic"], &env);
    assert_ne!(code, Some(0));
    assert!(err.contains("gone.qcow2 does not exist"), "{err}");
    let (code, _, err) = vessel_run(&["--profile", "loud", "-nographic"], &env);
    assert_ne!(code, Some(0));
    assert!(err.contains("sound Sb16 is not emulated"), "{err}");

    let (code, _, err) = vessel_run(&["-nographic", "-soundhw", "sb16"], &env);
    assert_ne!(code, Some(0));
    assert!(err.contains("no sound device"), "{err}");
    let (code, _, err) = vessel_run(&["-nographic", "-monitor", "stdio"], &env);
    assert_ne!(code, Some(0));
    assert!(err.contains("stdio cannot be used by both"), "{err}");
    let (code, _, err) = vessel_run(&["-nographic", "-monitor", "tcp:1234"], &env);
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown -monitor"), "{err}");
}

