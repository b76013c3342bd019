//! The monitor: a QEMU-HMP-like text console that controls a running VM (docs/monitor.md).
//!
//! [`Monitor::execute`] parses one command line and runs it against the VM through its
//! [`Commander`]; it knows nothing about where the line came from. The transports are
//! [`socket`] (`-monitor unix:PATH,server,nowait`, the control socket the manager uses) and
//! [`stdio`] (`-monitor stdio`, and the `-serial mon:stdio` multiplexer).
//!
//! Replies are plain text lines; an error reply's first line starts with `Error: `. The
//! transports end every reply with the prompt, which is the end-of-reply marker.

pub mod keys;
pub mod registers;
pub mod socket;
pub mod stdio;

use std::path::{Path, PathBuf};

use vessel_core::vm::{BlockInfo, Command, Commander, RunState, SnapshotEntry, VmError};

/// The prompt that ends every reply.
pub const PROMPT: &str = "(vessel) ";

pub fn greeting() -> String {
    format!("Vessel {} monitor - type 'help' for more information", env!("CARGO_PKG_VERSION"))
}

/// What one command produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Reply text, lines separated by `\n` (no trailing newline; empty for silent success).
    pub text: String,
    /// The command ended the VM (`quit`): the transport closes after this reply.
    pub quit: bool,
}

impl Output {
    fn text(s: impl Into<String>) -> Output {
        Output { text: s.into(), quit: false }
    }
    fn error(msg: impl std::fmt::Display) -> Output {
        Output::text(format!("Error: {msg}"))
    }
}

/// (name, arguments, description) for `help`.
const COMMANDS: &[(&str, &str, &str)] = &[
    ("help|?", "[cmd]", "show the help"),
    ("info", "[subcommand]", "show various information about the VM state"),
    ("stop", "", "stop emulation"),
    ("cont|c", "", "resume emulation"),
    ("system_reset", "", "reset the system"),
    ("system_powerdown", "", "send system power down event (ACPI power button)"),
    ("change", "device filename [format]", "change a removable medium"),
    ("eject", "[-f] device", "eject a removable medium (use -f to force it)"),
    ("savevm", "[tag]", "save a VM snapshot (machine state + qcow2 snapshot of every writable disk)"),
    ("loadvm", "tag", "restore a VM snapshot from its tag"),
    ("delvm", "tag", "delete a VM snapshot from its tag"),
    ("screendump", "filename", "save the screen as a PNG (.png) or PPM (other names) image"),
    ("sendkey", "keys [hold_ms]", "send keys to the VM (e.g. 'sendkey ctrl-alt-delete')"),
    ("quit|q", "", "quit the emulator"),
];

const INFO: &[(&str, &str)] = &[
    ("block", "show the block devices"),
    ("clock", "show instructions executed and the virtual clock (Vessel)"),
    ("registers", "show the cpu registers"),
    ("snapshots", "show the currently saved VM snapshots"),
    ("status", "show the current VM status (running|paused)"),
    ("version", "show the version of Vessel"),
];

fn help(topic: Option<&str>) -> String {
    let mut s = String::new();
    for (name, args, desc) in COMMANDS {
        if let Some(t) = topic {
            if !name.split('|').any(|n| n == t) {
                continue;
            }
        }
        if *name == "info" && topic.is_some() {
            for (sub, d) in INFO {
                s += &format!("info {sub}  -- {d}\n");
            }
            continue;
        }
        s += &format!("{name} {args} -- {desc}\n");
    }
    if s.is_empty() {
        return format!("Error: unknown command: '{}'", topic.unwrap_or(""));
    }
    s.pop();
    s
}

pub struct Monitor {
    vm: Commander,
}

impl Monitor {
    pub fn new(vm: Commander) -> Monitor {
        Monitor { vm }
    }

    /// Run one command line.
    pub fn execute(&mut self, line: &str) -> Output {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else { return Output::default() };
        let args: Vec<&str> = words.collect();
        match self.run(cmd, &args) {
            Ok(o) => o,
            Err(e) => Output::error(e),
        }
    }

    fn done(&self, cmd: Command) -> Result<Output, String> {
        self.vm.request(cmd).map_err(|e| e.to_string())?;
        Ok(Output::default())
    }

    fn run(&mut self, cmd: &str, args: &[&str]) -> Result<Output, String> {
        let want = |n: usize, usage: &str| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("usage: {cmd} {usage}"))
            }
        };
        match cmd {
            "help" | "?" => Ok(Output::text(help(args.first().copied()))),
            "info" => self.info(args),
            "stop" => {
                want(0, "")?;
                self.done(Command::Pause)
            }
            "cont" | "c" => {
                want(0, "")?;
                self.done(Command::Resume)
            }
            "system_reset" => {
                want(0, "")?;
                self.done(Command::Reset)
            }
            "system_powerdown" => {
                want(0, "")?;
                self.done(Command::PowerButton)
            }
            "quit" | "q" => {
                want(0, "")?;
                self.vm.request(Command::Quit).map_err(|e| e.to_string())?;
                Ok(Output { text: String::new(), quit: true })
            }
            "change" => {
                if !(2..=3).contains(&args.len()) {
                    return Err("usage: change device filename [format]".into());
                }
                let path = PathBuf::from(args[1]);
                if !path.exists() {
                    return Err(format!("Could not open '{}': No such file or directory", args[1]));
                }
                self.done(Command::ChangeMedia { device: args[0].to_string(), path: Some(path) })
            }
            "eject" => {
                let dev: Vec<&str> = args.iter().copied().filter(|a| *a != "-f").collect();
                if dev.len() != 1 {
                    return Err("usage: eject [-f] device".into());
                }
                self.done(Command::ChangeMedia { device: dev[0].to_string(), path: None })
            }
            "savevm" => {
                let name = match args {
                    [] => auto_tag(),
                    [n] => n.to_string(),
                    _ => return Err("usage: savevm [tag]".into()),
                };
                self.done(Command::SaveVm(name))
            }
            "loadvm" => {
                want(1, "tag")?;
                self.done(Command::LoadVm(args[0].to_string()))
            }
            "delvm" => {
                want(1, "tag")?;
                self.done(Command::DelVm(args[0].to_string()))
            }
            "screendump" => {
                // QEMU: screendump filename [-d device] [-f format]
                let Some(file) = args.first() else { return Err("usage: screendump filename".into()) };
                self.screendump(Path::new(file))
            }
            "sendkey" => {
                if !(1..=2).contains(&args.len()) {
                    return Err("usage: sendkey keys [hold_ms]".into());
                }
                let hold = match args.get(1) {
                    Some(h) => h.parse::<u64>().map_err(|_| format!("invalid hold time '{h}'"))?,
                    None => 100,
                };
                let codes = keys::parse_combo(args[0])?;
                for &c in &codes {
                    self.vm.send(Command::Input(keys::key(c, true))).map_err(|e| e.to_string())?;
                }
                std::thread::sleep(std::time::Duration::from_millis(hold.min(10_000)));
                for &c in codes.iter().rev() {
                    self.vm.send(Command::Input(keys::key(c, false))).map_err(|e| e.to_string())?;
                }
                Ok(Output::default())
            }
            other => Err(format!("unknown command: '{other}'")),
        }
    }

    fn info(&mut self, args: &[&str]) -> Result<Output, String> {
        let Some(what) = args.first() else {
            let mut s = String::new();
            for (sub, d) in INFO {
                s += &format!("info {sub}  -- {d}\n");
            }
            s.pop();
            return Ok(Output::text(s));
        };
        let e = |e: VmError| e.to_string();
        let text = match *what {
            "status" => {
                let st = self.vm.status().map_err(e)?;
                format!(
                    "VM status: {}",
                    match st.state {
                        RunState::Running => "running",
                        RunState::Paused => "paused",
                        RunState::Shutdown(_) => "shutdown",
                    }
                )
            }
            "version" => format!("{} (Vessel)", env!("CARGO_PKG_VERSION")),
            // Vessel extension: the CPU's progress (tests check that `stop` really stops it)
            "clock" => {
                let st = self.vm.status().map_err(e)?;
                format!("instructions: {}\nvirtual time: {} ns", st.instructions, st.virtual_ns)
            }
            "block" => format_block(&self.vm.block_info().map_err(e)?),
            "registers" => match self.vm.registers().map_err(e)? {
                Some(s) => registers::format(&s),
                None => return Err("this machine does not show its registers".into()),
            },
            "snapshots" => format_snapshots(&self.vm.snapshots().map_err(e)?),
            other => return Err(format!("unknown info subcommand: '{other}' (try 'help info')")),
        };
        Ok(Output::text(text))
    }

    fn screendump(&mut self, path: &Path) -> Result<Output, String> {
        let Some(frame) = self.vm.screen().map_err(|e| e.to_string())? else {
            return Err("the machine has no display (-vga none)".into());
        };
        if frame.width == 0 || frame.height == 0 {
            return Err("the display shows nothing yet".into());
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            crate::screenshot::write_png(path, &frame).map_err(|e| format!("{e:#}"))?;
        } else {
            let mut ppm = format!("P6\n{} {}\n255\n", frame.width, frame.height).into_bytes();
            ppm.extend(frame.rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]));
            std::fs::write(path, ppm).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Output::default())
    }
}

/// QEMU's default savevm tag: `vm-YYYYMMDDHHMMSS`.
fn auto_tag() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("vm-{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// UTC calendar date and time of a Unix time (days-from-civil inverted).
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (rem / 3600) as u32, (rem / 60 % 60) as u32, (rem % 60) as u32)
}

fn format_block(drives: &[BlockInfo]) -> String {
    let mut s = String::new();
    for d in drives {
        match &d.file {
            Some(f) => {
                s += &format!("{}: {} ({}{})\n", d.device, f.display(), d.format.as_deref().unwrap_or("raw"), if d.read_only { ", read-only" } else { "" })
            }
            None => s += &format!("{}: [not inserted]\n", d.device),
        }
        if d.removable {
            s += "    Removable device: not locked, tray closed\n";
        }
        s += "\n";
    }
    s.truncate(s.trim_end().len());
    s
}

fn format_snapshots(list: &[SnapshotEntry]) -> String {
    if list.is_empty() {
        return "There is no snapshot available.".into();
    }
    let mut s = String::from("List of snapshots present on all disks:\n");
    s += "ID        TAG               VM SIZE                DATE     VM CLOCK     DISKS\n";
    for (i, e) in list.iter().enumerate() {
        let (y, mo, d, h, mi, sec) = civil(e.date_secs);
        let ns = e.virtual_ns;
        let clock = format!(
            "{:02}:{:02}:{:02}.{:03}",
            ns / 3_600_000_000_000,
            ns / 60_000_000_000 % 60,
            ns / 1_000_000_000 % 60,
            ns / 1_000_000 % 1000
        );
        let size = format!("{:.1} MiB", e.state_size as f64 / (1 << 20) as f64);
        let disks = if e.disks.is_empty() { "--".to_string() } else { e.disks.join(",") };
        s += &format!(
            "{:<9} {:<17} {:>8} {y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{sec:02} {clock} {disks}\n",
            i + 1,
            e.name,
            size
        );
    }
    s.pop();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
    }

    #[test]
    fn help_lists_commands() {
        let h = help(None);
        for c in ["info", "stop", "cont", "savevm", "loadvm", "quit", "sendkey"] {
            assert!(h.lines().any(|l| l.starts_with(c)), "{c} missing from help:\n{h}");
        }
        assert!(help(Some("info")).contains("info registers"));
        assert!(help(Some("nope")).starts_with("Error: "));
    }
}
