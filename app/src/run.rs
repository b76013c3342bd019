//! `vessel run`: boot a `pc` machine, QEMU-style flags.
//!
//! Accepts the QEMU spellings the tests use (`-m 64`, `-nographic`, `-bios FILE`, `-serial stdio`,
//! `-kernel/-initrd/-append`, `-boot menu=on`, `-no-reboot`, `-monitor unix:PATH,server,nowait`,
//! ...): single-dash long options are rewritten to clap's double-dash form by
//! [`qemu_style_args`] before parsing. `--profile NAME` takes the machine from a saved profile.
//!
//! With a display (no `-nographic`, no `-display none`) the guest is shown in a window
//! (`crate::window`); closing the window powers the VM off (status 0). Either way the machine
//! runs on the engine's CPU thread (`vessel_core::vm::Vm`); stdin and the monitor talk to it
//! through its `Commander`.
//!
//! Consoles: serial defaults to stdio (stdin is its input). With `-nographic` (and no
//! `-monitor`) stdio is QEMU's multiplexer `mon:stdio`: Ctrl-A c switches to the monitor.
//! `-monitor stdio` needs the serial port elsewhere (`-serial file:..`/`none`; without `-serial`
//! it goes nowhere, with `-nographic` or `-serial stdio` it is an error, as in QEMU).
//!
//! Exit status: 0 on guest power-off (ACPI S5) or `quit`, QEMU's `(value << 1) | 1` for a write
//! to the isa-debug-exit port 0x501, 0 when the guest resets with `-no-reboot`, 124 on
//! `--timeout`, 1 when the CPU halts for good (interrupts off).

use std::ffi::OsString;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use vessel_core::vm::{Command, Event, StopReason, Vm, VmOptions};
use vessel_machines::pc::machine::Machine;
use vessel_machines::pc::{LinuxBoot, Pc, PcConfig};
use vessel_machines::serial::SerialSink;
use vessel_machines::vga::PciVga;

use crate::monitor::stdio::StdinMode;

pub const DEFAULT_BIOS: &str = "/usr/share/seabios/bios.bin";
pub const LINUXBOOT_ROM: &str = "/usr/share/qemu/linuxboot_dma.bin";
/// SeaVGABIOS images QEMU loads into the VGA's PCI expansion ROM.
pub const VGABIOS_CIRRUS: &str = "/usr/share/seabios/vgabios-cirrus.bin";
pub const VGABIOS_STD: &str = "/usr/share/seabios/vgabios-stdvga.bin";

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// RAM size (MiB, or with a K/M/G suffix).
    #[arg(short = 'm', default_value = "128")]
    pub memory: String,
    /// Firmware image.
    #[arg(long, default_value = DEFAULT_BIOS)]
    pub bios: PathBuf,
    /// COM1: `stdio`, `file:PATH` or `none` (default: stdio).
    #[arg(long)]
    pub serial: Option<String>,
    /// Debug console port 0x402 (SeaBIOS's log): `stdio`, `file:PATH` or a path.
    #[arg(long)]
    pub debugcon: Option<String>,
    /// `none` (headless) or `gtk`/`sdl`/`window` (the guest window). Without `-display` and
    /// `-nographic` the window opens when a display server is there (DISPLAY/WAYLAND_DISPLAY),
    /// otherwise the run is headless with a warning.
    #[arg(long)]
    pub display: Option<String>,
    /// The VM's name for the window title (QEMU `-name NAME` or `-name guest=NAME,...`);
    /// also names the savevm state directory.
    #[arg(long)]
    pub name: Option<String>,
    /// Start the window fullscreen (Ctrl+Alt+F toggles).
    #[arg(long = "full-screen")]
    pub full_screen: bool,
    /// How the window scales the guest screen: `integer` (whole multiples, sharp) or `smooth`
    /// (fill the window, filtered); both keep the aspect ratio.
    #[arg(long, value_enum, default_value = "integer")]
    pub scale: crate::window::ScaleMode,
    /// Monitor console: `stdio`, `unix:PATH,server,nowait` (the control socket) or `none`.
    #[arg(long)]
    pub monitor: Option<String>,
    /// Run the VM of this profile (`<data>/vessel/NAME.ron`): the machine comes from the
    /// profile, consoles and `--timeout` from the command line.
    #[arg(long)]
    pub profile: Option<String>,
    /// Directory for savevm machine states (default: see docs/monitor.md).
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Start paused (QEMU `-S`); `cont` in the monitor starts the CPU.
    #[arg(short = 'S')]
    pub start_paused: bool,
    /// Sound card (QEMU `-soundhw`): none is emulated yet, so anything but `none` is refused.
    #[arg(long)]
    pub soundhw: Option<String>,
    #[arg(long)]
    pub audiodev: Option<String>,
    #[arg(long)]
    pub audio: Option<String>,
    /// No display at all: serial on stdio and SeaBIOS mirrors its screen to COM1 (as QEMU).
    #[arg(long)]
    pub nographic: bool,
    /// Linux kernel (bzImage) to boot through linuxboot_dma.bin.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, allow_hyphen_values = true)]
    pub append: Option<String>,
    /// IDE hard disks at index 0..3 (ide0-hd0, ide0-hd1, ide1-hd0, ide1-hd1).
    #[arg(long)]
    pub hda: Option<PathBuf>,
    #[arg(long)]
    pub hdb: Option<PathBuf>,
    #[arg(long)]
    pub hdc: Option<PathBuf>,
    #[arg(long)]
    pub hdd: Option<PathBuf>,
    /// CD-ROM image at index 2 (ide1-cd0).
    #[arg(long)]
    pub cdrom: Option<PathBuf>,
    /// Every disk writes to a temporary overlay (QEMU's `-snapshot`).
    #[arg(long)]
    pub snapshot: bool,
    /// Floppy drive A image (raw 1.44M etc., see vessel_machines::fdc).
    #[arg(long)]
    pub fda: Option<PathBuf>,
    /// Floppy drive B image.
    #[arg(long)]
    pub fdb: Option<PathBuf>,
    /// QEMU `-drive file=F[,format=raw|qcow2|..][,if=ide][,index=N][,media=disk|cdrom][,snapshot=on][,readonly=on]`,
    /// or `-drive file=...,if=floppy[,index=N][,readonly=on]`.
    #[arg(long)]
    pub drive: Vec<String>,
    /// Boot order letters and options: `d`, `order=dc`, `menu=on`.
    #[arg(long)]
    pub boot: Option<String>,
    /// RTC in host local time instead of UTC.
    #[arg(long)]
    pub localtime: bool,
    /// Stop after this many seconds of wall-clock time (exit status 124).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Write the VGA output to this PNG when the run ends.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Display adapter: `cirrus` (Cirrus CL-GD5446, the default), `std` (Bochs/QEMU standard
    /// VGA) or `none`. As in QEMU, `-nographic` keeps the adapter (SeaBIOS then writes to both).
    #[arg(long, default_value = "cirrus")]
    pub vga: String,
    /// VGA BIOS image (default: Debian's SeaVGABIOS for the chosen adapter).
    #[arg(long)]
    pub vgabios: Option<PathBuf>,
    /// Exit instead of resetting when the guest resets.
    #[arg(long = "no-reboot")]
    pub no_reboot: bool,
    /// Accepted for QEMU compatibility; only `none` (there is no network device).
    #[arg(long)]
    pub nic: Option<String>,
    #[arg(long)]
    pub net: Option<String>,
    /// Accepted and ignored (QEMU compatibility).
    #[arg(long)]
    pub accel: Option<String>,
    /// Never let guest time run ahead of wall-clock time while the guest idles.
    #[arg(long)]
    pub realtime: bool,
    /// Virtual nanoseconds per instruction (the machine's nominal speed).
    #[arg(long, default_value_t = vessel_machines::pc::clock::DEFAULT_NS_PER_INSTRUCTION)]
    pub ns_per_instruction: u64,
}

/// Rewrites QEMU's single-dash long options (`-nographic`) to `--nographic` for clap; `-m` and
/// anything after `--` or not starting with one dash are left alone.
pub fn qemu_style_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut in_run = false;
    let mut expect_value = false;
    for a in args {
        let s = a.to_string_lossy().into_owned();
        if !in_run {
            in_run = s == "run";
            out.push(a);
            continue;
        }
        if !expect_value && s.starts_with('-') && !s.starts_with("--") && s.len() > 2 {
            out.push(OsString::from(format!("-{s}")));
            expect_value = !matches!(
                s.as_str(),
                "-nographic" | "-localtime" | "-no-reboot" | "-realtime" | "-snapshot" | "-full-screen"
            );
        } else {
            expect_value = s == "-m" && !expect_value;
            out.push(a);
        }
    }
    out
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim().trim_start_matches("size=");
    let (num, mul) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1 << 20),
    };
    let n: f64 = num.parse().with_context(|| format!("bad memory size {s:?}"))?;
    Ok((n * mul as f64) as u64)
}

fn sink(spec: &str) -> Result<SerialSink> {
    Ok(match spec {
        "stdio" | "mon:stdio" => SerialSink::Stdout,
        "none" | "null" => SerialSink::Null,
        s => {
            let path = s.strip_prefix("file:").unwrap_or(s);
            let f = File::create(path).with_context(|| format!("create {path}"))?;
            SerialSink::Writer(Box::new(BufWriter::new(f)))
        }
    })
}

/// Seconds since 1970 of the wall-clock time the RTC should show.
fn rtc_base(localtime: bool) -> i64 {
    let utc = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if !localtime {
        return utc;
    }
    // the host's current UTC offset, e.g. "+0130"
    let off = std::process::Command::new("date")
        .arg("+%z")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let off = off.trim();
    if off.len() == 5 {
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let h: i64 = off[1..3].parse().unwrap_or(0);
        let m: i64 = off[3..5].parse().unwrap_or(0);
        return utc + sign * (h * 3600 + m * 60);
    }
    utc
}

/// Boot order letters and whether the boot menu is on, from `-boot`.
fn parse_boot(spec: Option<&str>) -> (String, bool) {
    let mut order = "cad".to_string();
    let mut menu = false;
    if let Some(spec) = spec {
        for part in spec.split(',') {
            if let Some(v) = part.strip_prefix("order=").or_else(|| part.strip_prefix("once=")) {
                order = v.to_string();
            } else if let Some(v) = part.strip_prefix("menu=") {
                menu = v == "on";
            } else if !part.contains('=') && !part.is_empty() {
                order = part.to_string();
            }
        }
    }
    (order, menu)
}

pub fn build_machine(a: &RunArgs) -> Result<Machine> {
    for (flag, v) in [("-soundhw", &a.soundhw), ("-audiodev", &a.audiodev), ("-audio", &a.audio)] {
        if let Some(v) = v {
            if v != "none" {
                bail!("{flag} {v}: Vessel has no sound device yet (no Sound Blaster 16); remove {flag}");
            }
        }
    }
    let bios = std::fs::read(&a.bios).with_context(|| format!("read BIOS {}", a.bios.display()))?;
    let graphics = !a.nographic && a.display.as_deref() != Some("none");
    let serial = match (&a.serial, a.nographic) {
        (Some(s), _) => sink(s)?,
        (None, _) => SerialSink::Stdout,
    };
    let debugcon = match &a.debugcon {
        Some(s) => sink(s)?,
        None => SerialSink::Null,
    };
    if let Some(n) = a.nic.as_deref().or(a.net.as_deref()) {
        if n != "none" {
            bail!("networking is not implemented (only `-nic none`)");
        }
    }
    let floppies = crate::floppy::floppy_specs(a.fda.as_ref(), a.fdb.as_ref(), &a.drive, a.snapshot)?;
    let hd = [a.hda.as_ref(), a.hdb.as_ref(), a.hdc.as_ref(), a.hdd.as_ref()];
    let ide_drives: Vec<String> = a.drive.iter().filter(|d| !crate::floppy::is_floppy_drive(d)).cloned().collect();
    let ide = crate::drives::build_ide(&crate::drives::drive_list(hd, a.cdrom.as_ref(), &ide_drives, a.snapshot)?)?;
    let linux = match &a.kernel {
        Some(k) => Some(LinuxBoot {
            kernel: std::fs::read(k).with_context(|| format!("read kernel {}", k.display()))?,
            initrd: match &a.initrd {
                Some(p) => Some(std::fs::read(p).with_context(|| format!("read initrd {}", p.display()))?),
                None => None,
            },
            cmdline: a.append.clone().unwrap_or_default(),
            option_rom: std::fs::read(LINUXBOOT_ROM).with_context(|| format!("read {LINUXBOOT_ROM}"))?,
        }),
        None => None,
    };
    let (boot_order, boot_menu) = parse_boot(a.boot.as_deref());
    let cfg = PcConfig {
        ram_size: parse_size(&a.memory)?,
        bios,
        cpus: 1,
        rtc_base_secs: rtc_base(a.localtime),
        boot_order,
        boot_menu,
        graphics,
        serial,
        debugcon,
        linux,
        ns_per_instruction: a.ns_per_instruction,
    };
    let mut pc = Pc::new(cfg)?;
    // the floppy controller, always there with drive A as in QEMU's `pc`
    pc.add_fdc(crate::floppy::build_fdc(&floppies)?);
    // PIIX3 IDE at 00:01.1 (always present on QEMU's `pc`), its disks in the CMOS
    pc.set_ide_cmos(&ide.disk_geometries());
    pc.add_pci_device(1, 1, Box::new(ide));
    // QEMU's `-boot splash-time=MS` (how long SeaBIOS waits at "Press ESC for boot menu") and
    // `reboot-timeout` (default -1: after "No bootable device." wait instead of rebooting).
    if let Some(ms) = boot_option(a.boot.as_deref(), "splash-time") {
        pc.fw_cfg.add_file("etc/boot-menu-wait", (ms.min(0xFFFF) as u16).to_le_bytes().to_vec());
    }
    let reboot = boot_option(a.boot.as_deref(), "reboot-timeout").unwrap_or(-1);
    pc.fw_cfg.add_file("etc/boot-fail-wait", (reboot as u32).to_le_bytes().to_vec());
    if let Some(vga) = build_vga(a)? {
        // 00:02.0, where QEMU's `pc` machine puts its VGA
        pc.add_pci_device(2, 0, Box::new(vga));
    }
    let mut m = Machine::new(pc);
    m.no_reboot = a.no_reboot;
    Ok(m)
}

/// Numeric `-boot` sub-option `key=N`.
fn boot_option(spec: Option<&str>, key: &str) -> Option<i64> {
    spec?.split(',').find_map(|p| p.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn build_vga(a: &RunArgs) -> Result<Option<PciVga>> {
    let (default_rom, make): (&str, fn(Vec<u8>) -> PciVga) = match a.vga.as_str() {
        "cirrus" => (VGABIOS_CIRRUS, PciVga::cirrus),
        "std" => (VGABIOS_STD, PciVga::std),
        "none" => return Ok(None),
        other => bail!("unknown -vga {other:?}: use cirrus, std or none"),
    };
    let path = a.vgabios.clone().unwrap_or_else(|| PathBuf::from(default_rom));
    let rom = std::fs::read(&path).with_context(|| format!("read VGA BIOS {}", path.display()))?;
    Ok(Some(make(rom)))
}

/// Decides where serial and monitor go when both could want stdio; sets `a.serial` to the
/// effective serial spec and returns who reads stdin.
pub fn resolve_consoles(a: &mut RunArgs) -> Result<StdinMode> {
    let monitor = a.monitor.as_deref().unwrap_or("none");
    let mon_stdio = monitor == "stdio";
    let serial = match (a.serial.as_deref(), a.nographic, mon_stdio) {
        (Some(s), _, _) => s.to_string(),
        (None, true, true) => bail!("-nographic -monitor stdio: stdio cannot be used by both the serial port and the monitor (use -serial mon:stdio, or -monitor unix:PATH,server,nowait)"),
        (None, true, false) if a.monitor.is_none() => "mon:stdio".into(),
        (None, _, true) => "none".into(),
        (None, _, false) => "stdio".into(),
    };
    let mode = match serial.as_str() {
        "stdio" if mon_stdio => bail!("-serial stdio -monitor stdio: stdio cannot be used by both (use -serial mon:stdio to share it)"),
        "mon:stdio" if mon_stdio => bail!("-serial mon:stdio already puts the monitor on stdio; drop -monitor stdio"),
        "stdio" => StdinMode::Serial,
        "mon:stdio" => StdinMode::Mux,
        _ if mon_stdio => StdinMode::Monitor,
        _ => StdinMode::None,
    };
    match monitor {
        "stdio" | "none" => {}
        m if m.starts_with("unix:") => {}
        m => bail!("unknown -monitor {m:?}: use stdio, unix:PATH,server,nowait or none"),
    }
    a.serial = Some(serial);
    Ok(mode)
}

/// `<XDG data>/vessel`.
fn data_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| std::path::Path::new(v).is_absolute()) {
        return Ok(PathBuf::from(d).join("vessel"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/vessel")),
        None => bail!("no data directory for savevm states: set XDG_DATA_HOME or HOME, or pass --state-dir"),
    }
}

/// The first disk image on the command line (`-hda`, `-drive file=`).
fn first_disk(a: &RunArgs) -> Option<PathBuf> {
    a.hda.clone().or_else(|| {
        a.drive.iter().find_map(|d| {
            let media_cd = d.split(',').any(|p| p == "media=cdrom");
            let file = d.split(',').find_map(|p| p.strip_prefix("file="))?;
            (!media_cd).then(|| PathBuf::from(file))
        })
    })
}

/// Where savevm keeps machine states (docs/monitor.md): `--state-dir`; the profile's
/// `<data>/vessel/NAME/states`; `<data>/vessel/states/NAME` for `-name NAME`; next to the
/// first disk (`DISK.states/`); else `<data>/vessel/states/default`.
pub fn state_dir(a: &RunArgs) -> Result<PathBuf> {
    if let Some(d) = &a.state_dir {
        return Ok(d.clone());
    }
    if let Some(p) = &a.profile {
        return Ok(data_dir()?.join(p).join("states"));
    }
    if let Some(n) = &a.name {
        return Ok(data_dir()?.join("states").join(n));
    }
    if let Some(d) = first_disk(a) {
        let mut s = d.into_os_string();
        s.push(".states");
        return Ok(PathBuf::from(s));
    }
    Ok(data_dir()?.join("states/default"))
}

/// `--profile NAME`: fill the machine flags from the profile.
pub fn apply_profile(a: &mut RunArgs) -> Result<()> {
    use vessel_core::profile::{DiskInterface, Network, SoundCard, Store, Vga};
    let Some(name) = a.profile.clone() else { return Ok(()) };
    if a.hda.is_some() || a.cdrom.is_some() || a.fda.is_some() || !a.drive.is_empty() || a.kernel.is_some() {
        bail!("--profile {name}: the disks and boot files come from the profile; drop -hda/-cdrom/-fda/-drive/-kernel");
    }
    let store = Store::open_default().context("open the profile store")?;
    let p = store.load(&name).with_context(|| format!("--profile {name} (profiles are in {})", store.root().display()))?;
    let problems = store.problems(&p);
    // a disk with size_mib that does not exist yet is created by the manager, not here
    let missing: Vec<String> = p
        .disks
        .iter()
        .map(|d| store.resolve(&d.path))
        .filter(|f| !f.exists())
        .map(|f| format!("disk {} does not exist (create it with `vessel img create -f qcow2 FILE SIZE`)", f.display()))
        .chain(problems.iter().filter(|pr| !pr.field.starts_with("disks")).map(|pr| format!("{}: {}", pr.field, pr.message)))
        .collect();
    if !missing.is_empty() {
        bail!("profile {name} ({}): {}", store.profile_path(&name).display(), missing.join("; "));
    }
    if p.sound != SoundCard::None {
        bail!("profile {name}: sound {:?} is not emulated yet; set `sound: None`", p.sound);
    }
    if p.network != Network::None {
        bail!("profile {name}: network {:?} is not emulated yet; set `network: None`", p.network);
    }
    a.memory = format!("{}M", p.memory_mib);
    for d in &p.disks {
        let file = store.resolve(&d.path);
        let iface = match d.interface {
            DiskInterface::Ide => "ide",
            DiskInterface::Floppy => "floppy",
        };
        let mut spec = format!("file={},format={},if={iface}", file.display(), d.format.name());
        if d.read_only {
            spec += ",readonly=on";
        }
        a.drive.push(spec);
    }
    a.cdrom = p.cdrom.as_ref().map(|c| store.resolve(c));
    a.fda = p.floppy.as_ref().map(|f| store.resolve(f));
    if a.boot.is_none() && !p.boot_order.is_empty() {
        a.boot = Some(p.boot_order.clone());
    }
    a.vga = match p.vga {
        Vga::Std => "std".into(),
        Vga::Cirrus => "cirrus".into(),
    };
    a.localtime |= p.localtime;
    a.full_screen |= p.full_screen;
    if a.name.is_none() {
        a.name = Some(p.name.clone());
    }
    Ok(())
}

fn exit_code(r: &StopReason) -> i32 {
    match r {
        StopReason::PowerOff => {
            tracing::info!("guest powered off");
            0
        }
        StopReason::DebugExit(c) => *c as i32,
        StopReason::Reset => {
            tracing::info!("guest reset (-no-reboot)");
            0
        }
        StopReason::Hung(msg) => {
            eprintln!("vessel: {msg}");
            1
        }
        StopReason::Requested => 0,
    }
}

/// Whether `vessel run` shows the guest in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DisplayKind {
    Headless,
    Window,
    /// No `-display`: a window if there is a display server to show it on.
    Auto,
}

fn display_kind(a: &RunArgs) -> Result<DisplayKind> {
    if a.nographic {
        return Ok(DisplayKind::Headless);
    }
    // QEMU's `-display gtk,zoom-to-fit=on`: the part before the first comma picks the display
    let d = a.display.as_deref().map(|d| d.split(',').next().unwrap_or(""));
    Ok(match d {
        Some("none") => DisplayKind::Headless,
        None | Some("default") => DisplayKind::Auto,
        Some("gtk" | "sdl" | "window") => DisplayKind::Window,
        Some(other) => bail!("unknown -display {other:?}: use none (headless) or gtk/sdl/window (the guest window)"),
    })
}

pub fn run(mut a: RunArgs) -> Result<i32> {
    if let Some(n) = &a.name {
        // `-name guest=NAME,process=...`
        let n = n.split(',').find_map(|p| p.strip_prefix("guest=")).unwrap_or(n.split(',').next().unwrap_or(""));
        a.name = Some(n.to_string());
    }
    // the command line picks headless or window; a profile adds full screen and its name
    let kind = display_kind(&a)?;
    apply_profile(&mut a)?;
    let windowed = match kind {
        DisplayKind::Headless => false,
        DisplayKind::Window => true,
        DisplayKind::Auto if crate::window::display_server_available() => true,
        DisplayKind::Auto => {
            eprintln!("vessel: no display server (DISPLAY/WAYLAND_DISPLAY unset): running headless; -display none silences this");
            false
        }
    };
    let stdin_mode = resolve_consoles(&mut a)?;
    let machine = build_machine(&a)?;
    let monitor_socket = match a.monitor.as_deref() {
        Some(m) if m.starts_with("unix:") => {
            let spec = crate::monitor::socket::parse_unix(m)?;
            let (l, first) = crate::monitor::socket::bind(&spec)?;
            Some((l, first, spec.path))
        }
        _ => None,
    };
    let opts = VmOptions {
        start_paused: a.start_paused,
        realtime: a.realtime,
        refresh_ms: None,
        state_dir: Some(state_dir(&a)?),
    };
    let consoles = move |cmd: &vessel_core::vm::Commander| {
        crate::monitor::stdio::start(stdin_mode, cmd.clone());
        if let Some((l, first, path)) = monitor_socket {
            crate::monitor::socket::serve(l, first, cmd.clone(), &path);
        }
    };
    if windowed {
        return crate::window::session::run_windowed(&a, machine, opts, consoles);
    }
    let start = Instant::now();
    let mut vm = Vm::spawn(machine, opts);
    let events = vm.take_events().expect("fresh VM");
    let mut frames = vm.take_frames().expect("fresh VM");
    consoles(&vm.commander());
    let deadline = a.timeout.map(|t| start + Duration::from_secs_f64(t));
    let mut code = None;
    while code.is_none() {
        let ev = match deadline {
            Some(d) => events.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match ev {
            Ok(Event::Exited(r)) => code = Some(exit_code(&r)),
            Ok(Event::Error(e)) => eprintln!("vessel: {e}"),
            Ok(Event::Serial(b)) => {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&b);
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                let _ = vm.send(Command::Quit);
                // wait for the CPU thread's flush and final frame
                while let Ok(e) = events.recv_timeout(Duration::from_secs(10)) {
                    if matches!(e, Event::Exited(_)) {
                        break;
                    }
                }
                eprintln!("vessel: timeout after {:.1}s", a.timeout.unwrap_or(0.0));
                code = Some(124);
            }
            Err(RecvTimeoutError::Disconnected) => code = Some(1),
        }
    }
    vm.join();
    if let Some(p) = &a.screenshot {
        let frame = match frames.latest() {
            Some(f) => f,
            None => frames.current(),
        };
        if frame.width == 0 || frame.height == 0 {
            bail!("--screenshot: the machine has no display output (-vga none?)");
        }
        crate::screenshot::write_png(p, frame)?;
        tracing::info!(path = %p.display(), width = frame.width, height = frame.height, "screenshot written");
    }
    Ok(code.unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_flags_become_clap_flags() {
        let v: Vec<String> = qemu_style_args(
            ["vessel", "run", "-no-reboot", "-m", "64", "-bios", "/x", "-nographic", "-append", "-x console=ttyS0"]
                .map(OsString::from),
        )
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect();
        assert_eq!(
            v,
            ["vessel", "run", "--no-reboot", "-m", "64", "--bios", "/x", "--nographic", "--append", "-x console=ttyS0"]
        );
    }

    #[test]
    fn boot_and_sizes() {
        assert_eq!(parse_boot(Some("menu=on")), ("cad".to_string(), true));
        assert_eq!(parse_boot(Some("d")), ("d".to_string(), false));
        assert_eq!(boot_option(Some("menu=on,splash-time=30000"), "splash-time"), Some(30000));
        assert_eq!(boot_option(Some("menu=on"), "splash-time"), None);
        assert_eq!(parse_size("64").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
    }
}
