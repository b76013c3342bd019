//! The terminal: stdin to the serial port, to the monitor (`-monitor stdio`), or to both
//! through QEMU's multiplexer (`-serial mon:stdio`, the default with `-nographic`).
//!
//! Multiplexer keys (as QEMU): `Ctrl-A c` switches between the serial console and the monitor,
//! `Ctrl-A x` quits, `Ctrl-A h` prints help, `Ctrl-A Ctrl-A` sends one Ctrl-A to the guest.
//! Vessel does not put the terminal into raw mode, so in an interactive shell each key
//! sequence reaches it after Enter.

use std::io::{Read, Write};

use vessel_core::vm::{Command, Commander};

use super::socket::write_reply;
use super::{greeting, Monitor};

/// Who reads stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinMode {
    /// Nobody.
    None,
    /// Typed bytes go to COM1.
    Serial,
    /// Lines are monitor commands.
    Monitor,
    /// Serial console and monitor, switched with Ctrl-A c.
    Mux,
}

const CTRL_A: u8 = 0x01;

struct Router {
    vm: Commander,
    mon: Monitor,
    /// Monitor has the focus (Mux) / always (Monitor).
    monitor_focus: bool,
    mode: StdinMode,
    escape: bool,
    line: Vec<u8>,
    serial: Vec<u8>,
}

impl Router {
    fn say(&self, text: &str, prompt: bool) {
        let mut o = std::io::stdout().lock();
        let _ = write_reply(&mut o, text, prompt);
    }

    fn flush_serial(&mut self) {
        if !self.serial.is_empty() {
            let _ = self.vm.send(Command::SerialInput(std::mem::take(&mut self.serial)));
        }
    }

    /// Returns false to stop reading.
    fn byte(&mut self, b: u8) -> bool {
        if self.mode == StdinMode::Mux {
            if self.escape {
                self.escape = false;
                match b {
                    b'c' => {
                        self.flush_serial();
                        self.monitor_focus = !self.monitor_focus;
                        if self.monitor_focus {
                            self.say(&greeting(), true);
                        }
                        return true;
                    }
                    b'x' => {
                        self.flush_serial();
                        eprintln!("vessel: terminated (Ctrl-A x)");
                        let _ = self.vm.send(Command::Quit);
                        return false;
                    }
                    b'h' => {
                        self.say(
                            "C-a h    print this help\nC-a x    exit emulator\nC-a c    switch between console and monitor\nC-a C-a  sends C-a",
                            false,
                        );
                        return true;
                    }
                    CTRL_A if !self.monitor_focus => self.serial.push(CTRL_A),
                    _ => {}
                }
                return true;
            }
            if b == CTRL_A {
                self.escape = true;
                return true;
            }
        }
        if !self.monitor_focus {
            self.serial.push(b);
            return true;
        }
        if b == b'\n' || b == b'\r' {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            let out = self.mon.execute(&line);
            self.say(&out.text, !out.quit);
            return !out.quit;
        }
        self.line.push(b);
        true
    }
}

/// Start the stdin thread for `mode`.
pub fn start(mode: StdinMode, vm: Commander) {
    if mode == StdinMode::None {
        return;
    }
    let mut r = Router {
        mon: Monitor::new(vm.clone()),
        vm,
        monitor_focus: mode == StdinMode::Monitor,
        mode,
        escape: false,
        line: Vec::new(),
        serial: Vec::new(),
    };
    if mode == StdinMode::Monitor {
        r.say(&greeting(), true);
    }
    std::thread::Builder::new()
        .name("vessel-stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            let mut last = 0u8;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    // "\r\n" from a terminal or socat is one line end for the monitor
                    let skip = r.monitor_focus && b == b'\n' && last == b'\r';
                    last = b;
                    if !skip && !r.byte(b) {
                        r.flush_serial();
                        return;
                    }
                }
                r.flush_serial();
                let _ = std::io::stdout().flush();
            }
        })
        .expect("spawn the stdin thread");
}
