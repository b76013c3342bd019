//! The `pc` board: QEMU's `pc` machine (i440FX host bridge + PIIX3), wired for Debian's SeaBIOS.
//!
//! Memory map (as QEMU's, for up to 3.5 GiB of RAM, all below 4 GiB):
//! - RAM from 0, one host buffer; 0xA0000-0xBFFFF is the VGA window (or RAM while the i440FX
//!   SMRAM D_OPEN bit is set); 0xC0000-0xFFFFF is shadow RAM controlled by the PAM registers: where
//!   a segment reads from the "PCI side", 0xE0000-0xFFFFF shows the last 128 KiB of the BIOS image
//!   (QEMU's `isa-bios` alias) and 0xC0000-0xDFFFF reads as zeros (QEMU's empty `pc.rom`).
//! - The BIOS image at 4 GiB - its size; PCI BARs anywhere in the hole above RAM.
//!
//! Ports: DMA 0x00-0x0F/0xC0-0xDF/0x81-0x8F, PIC 0x20/0xA0 + ELCR 0x4D0, PIT 0x40-0x43 + 0x61,
//! i8042 0x60/0x64, RTC 0x70/0x71, POST 0x80, fast A20 0x92, APM 0xB2/0xB3, COM1 0x3F8,
//! debug console 0x402, isa-debug-exit 0x501, fw_cfg 0x510/0x511/0x514, PCI 0xCF8/0xCFC (+0xCF9
//! PIIX3 reset control), PIIX4 PM at the base SeaBIOS programs (0x600). Pluggable devices
//! (IDE, VGA, floppy, ...) register through [`Pc::add_pci_device`]/[`Pc::add_isa_device`].
//!
//! Time: see [`clock`]. Power-off: ACPI S5 through the PIIX4 PM1a control register, or a write to
//! the isa-debug-exit port 0x501 (exit status `(value << 1) | 1`, as QEMU's isa-debug-exit).

pub mod clock;
pub mod cmos;
pub mod linux;
pub mod machine;
pub mod ram;
pub mod vm;
// pub mod machine; (enabled once the CPU lands)

use std::io::Write;

use vessel_core::bus::{Bus, PageKind, Width};

use crate::device::{all_ones, IoCtx, IoDevice, Region};
use crate::dma::Dma;
use crate::fw_cfg::{self, FwCfg};
use crate::i8042::I8042;
use crate::pci::host::I440fx;
use crate::pci::piix3::Piix3;
use crate::pci::piix4_pm::Piix4Pm;
use crate::pci::{ConfigAddress, PciDevice};
use crate::pic::Pic;
use crate::pit::Pit;
use crate::rtc::Rtc;
use crate::serial::{Serial, SerialSink};

pub use clock::Clock;

/// Largest RAM the board maps (everything stays below the PCI hole, as QEMU's `pc` with
/// `below_4g_mem_size` = RAM for RAM < 3.5 GiB).
pub const MAX_RAM: u64 = 0xE000_0000;

#[derive(Debug, thiserror::Error)]
pub enum PcError {
    #[error("RAM size {0} bytes: must be between 2 MiB and 3.5 GiB, a multiple of 1 MiB")]
    RamSize(u64),
    #[error("BIOS image of {0} bytes: must be a multiple of 64 KiB between 64 KiB and 16 MiB")]
    BiosSize(usize),
    #[error("kernel image: {0}")]
    Kernel(String),
}

/// What a guest did that ends or restarts the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineExit {
    /// ACPI soft-off (S5).
    PowerOff,
    /// isa-debug-exit port 0x501 written: exit status `(value << 1) | 1`.
    DebugExit(u32),
    /// Reset requested (0xCF9, keyboard controller pulse, port 0x92 bit 0, triple fault).
    Reset,
}

/// Linux kernel to boot through `linuxboot_dma.bin` (QEMU's `-kernel/-initrd/-append`).
#[derive(Clone, Debug, Default)]
pub struct LinuxBoot {
    pub kernel: Vec<u8>,
    pub initrd: Option<Vec<u8>>,
    pub cmdline: String,
    /// The option ROM (Debian: /usr/share/qemu/linuxboot_dma.bin).
    pub option_rom: Vec<u8>,
}

pub struct PcConfig {
    pub ram_size: u64,
    /// Firmware image (SeaBIOS `bios.bin`).
    pub bios: Vec<u8>,
    pub cpus: u16,
    /// Guest wall-clock time at power-on, seconds since 1970 (host UTC, or host local time).
    pub rtc_base_secs: i64,
    /// QEMU-style boot order letters: a (floppy), c (disk), d (CD-ROM), n (network).
    pub boot_order: String,
    pub boot_menu: bool,
    /// No display: SeaBIOS then prints to COM1 (QEMU's `-machine graphics=off`, fw_cfg
    /// `etc/sercon-port`).
    pub graphics: bool,
    pub serial: SerialSink,
    /// Port 0x402 (SeaBIOS's debug log).
    pub debugcon: SerialSink,
    pub linux: Option<LinuxBoot>,
    /// Virtual clock rate (see [`clock`]).
    pub ns_per_instruction: u64,
}

impl Default for PcConfig {
    fn default() -> Self {
        PcConfig {
            ram_size: 128 << 20,
            bios: Vec::new(),
            cpus: 1,
            rtc_base_secs: 0,
            boot_order: "cad".into(),
            boot_menu: false,
            graphics: true,
            serial: SerialSink::Null,
            debugcon: SerialSink::Null,
            linux: None,
            ns_per_instruction: clock::DEFAULT_NS_PER_INSTRUCTION,
        }
    }
}

/// Where a port or MMIO range of a pluggable device leads.
#[derive(Clone, Copy, Debug)]
struct Route {
    dev: usize,
    region: Region,
    base: u64,
}

enum Ext {
    Pci { devfn: u8, dev: Box<dyn PciDevice> },
    Isa(Box<dyn IoDevice>),
}

impl Ext {
    fn io(&mut self) -> &mut dyn IoDevice {
        match self {
            Ext::Pci { dev, .. } => dev.as_mut(),
            Ext::Isa(d) => d.as_mut(),
        }
    }
}

pub struct Pc {
    ram: ram::GuestRam,
    bios: ram::GuestRam,
    pub host: I440fx,
    pub piix3: Piix3,
    pub pm: Piix4Pm,
    pub pic: Pic,
    pub pit: Pit,
    pub rtc: Rtc,
    pub kbc: I8042,
    pub dma: Dma,
    pub serial: Serial,
    pub debugcon: SerialSink,
    pub fw_cfg: FwCfg,
    pub clock: Clock,
    pub post_code: u8,
    pub port92: u8,
    pub apm: [u8; 2],
    cf8: u32,
    a20: bool,
    generation: u64,
    host_generation: u64,
    low_kinds: [PageKind; 256],
    ext: Vec<Ext>,
    io_map: Vec<u16>,
    io_routes: Vec<Route>,
    mmio_routes: Vec<(u64, u64, Route)>,
    ext_lines: u16,
    /// ISA IRQ levels driven by the board's own devices (PIT, i8042, COM1, RTC).
    /// Set when something asks the machine to stop or restart; the run loop takes it.
    pub exit: Option<MachineExit>,
    last_poll_ns: u64,
}

impl Pc {
    pub fn new(cfg: PcConfig) -> Result<Self, PcError> {
        if cfg.ram_size < (2 << 20) || cfg.ram_size > MAX_RAM || cfg.ram_size % (1 << 20) != 0 {
            return Err(PcError::RamSize(cfg.ram_size));
        }
        if cfg.bios.len() < 0x10000 || cfg.bios.len() > (16 << 20) || cfg.bios.len() % 0x10000 != 0 {
            return Err(PcError::BiosSize(cfg.bios.len()));
        }
        let mut pc = Pc {
            ram: ram::GuestRam::new(cfg.ram_size as usize),
            bios: {
                let mut b = ram::GuestRam::new(cfg.bios.len());
                b.copy_from_slice(&cfg.bios);
                b
            },
            host: I440fx::new(),
            piix3: Piix3::new(),
            pm: Piix4Pm::with_cpus(cfg.cpus),
            pic: Pic::new(),
            pit: Pit::new(),
            rtc: Rtc::new(cfg.rtc_base_secs),
            kbc: I8042::new(),
            dma: Dma::new(),
            serial: Serial::new(cfg.serial),
            debugcon: cfg.debugcon,
            fw_cfg: FwCfg::new(),
            clock: Clock::new(cfg.ns_per_instruction),
            post_code: 0,
            port92: 0,
            apm: [0; 2],
            cf8: 0,
            a20: true,
            generation: 1,
            host_generation: 0,
            low_kinds: [PageKind::Mmio; 256],
            ext: Vec::new(),
            io_map: vec![0; 0x10000],
            io_routes: Vec::new(),
            mmio_routes: Vec::new(),
            ext_lines: 0,
            exit: None,
            last_poll_ns: 0,
        };
        cmos::fill(&mut pc.rtc, cfg.ram_size, cfg.cpus, &cfg.boot_order);
        pc.setup_fw_cfg(cfg.ram_size, cfg.cpus, &cfg.boot_order, cfg.boot_menu, cfg.graphics);
        if let Some(l) = cfg.linux {
            linux::load(&mut pc.fw_cfg, &l, cfg.ram_size).map_err(PcError::Kernel)?;
        }
        pc.rebuild_low_kinds();
        Ok(pc)
    }

    fn setup_fw_cfg(&mut self, ram: u64, cpus: u16, boot: &str, menu: bool, graphics: bool) {
        let f = &mut self.fw_cfg;
        f.add(fw_cfg::UUID, vec![0; 16]);
        f.add_u64(fw_cfg::RAM_SIZE, ram);
        f.add_u16(fw_cfg::NOGRAPHIC, !graphics as u16);
        f.add_u16(fw_cfg::NB_CPUS, cpus);
        f.add_u16(fw_cfg::MAX_CPUS, cpus);
        f.add_u16(fw_cfg::BOOT_DEVICE, boot.bytes().next().unwrap_or(b'c') as u16);
        f.add_u16(fw_cfg::BOOT_MENU, menu as u16);
        f.add(fw_cfg::NUMA, vec![0; 8 * (1 + cpus as usize)]);
        f.add_u32(fw_cfg::IRQ0_OVERRIDE, 1);
        f.add_file("etc/e820", fw_cfg::e820_entry(0, ram, 1).to_vec());
        if !graphics {
            f.add_file("etc/sercon-port", 0x3F8u16.to_le_bytes().to_vec());
        }
    }

    /// The firmware image mapped below 4 GiB.
    pub fn bios(&self) -> &[u8] {
        &self.bios
    }

    /// Guest RAM.
    pub fn ram_mut(&mut self) -> &mut [u8] {
        &mut self.ram
    }

    /// Place a PCI function at 00:`slot`.`function`. Slots 0 and 1 are the chipset's.
    pub fn add_pci_device(&mut self, slot: u8, function: u8, dev: Box<dyn PciDevice>) {
        assert!(slot >= 2 || (slot == 1 && function != 0 && function != 3), "slot taken by the chipset");
        self.ext.push(Ext::Pci { devfn: (slot << 3) | function, dev });
        self.rebuild_maps();
    }

    /// Add an ISA device that only decodes its `legacy_io`/`legacy_mmio` ranges.
    pub fn add_isa_device(&mut self, dev: Box<dyn IoDevice>) {
        self.ext.push(Ext::Isa(dev));
        self.rebuild_maps();
    }

    /// Plug in the floppy controller (ports 0x3F0-0x3F5/0x3F7, IRQ 6, DMA 2) and record its
    /// drives in the CMOS (bytes 0x10 and 0x14).
    pub fn add_fdc(&mut self, fdc: crate::fdc::Fdc) {
        cmos::set_floppy(&mut self.rtc, fdc.cmos_drive_types(), fdc.drive_count());
        self.add_isa_device(Box::new(fdc));
    }

    /// The pluggable device of concrete type `T` (e.g. to read the VGA framebuffer).
    pub fn device_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.ext.iter_mut().find_map(|e| e.io().as_any_mut().downcast_mut::<T>())
    }

    /// Everything written to the serial port so far, when its sink is a buffer.
    pub fn serial_output(&self) -> &[u8] {
        match &self.serial.sink {
            SerialSink::Buffer(v) => v,
            _ => &[],
        }
    }

    pub fn debugcon_output(&self) -> &[u8] {
        match &self.debugcon {
            SerialSink::Buffer(v) => v,
            _ => &[],
        }
    }

    /// Machine reset (the CPU is reset by the caller): chipset registers to power-on values,
    /// RAM and the RTC's CMOS contents kept.
    pub fn reset(&mut self) {
        let now = self.clock.now_ns();
        self.host.config = I440fx::new().config;
        self.piix3 = Piix3::new();
        self.pm = Piix4Pm::new();
        self.pic.reset();
        self.pit.reset(now);
        self.kbc.reset();
        self.dma.reset();
        self.serial.reset();
        self.cf8 = 0;
        self.port92 = 0;
        self.set_a20(true);
        for e in &mut self.ext {
            e.io().reset();
            if let Ext::Pci { dev, .. } = e {
                // BARs and command register back to zero
                let c = dev.config_mut();
                for off in [0x04usize, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30] {
                    let w = c.wmask[off..off + 4].to_vec();
                    for (i, m) in w.iter().enumerate() {
                        c.bytes[off + i] &= !m;
                    }
                }
            }
        }
        self.rebuild_maps();
        self.generation += 1;
        self.rebuild_low_kinds();
        self.exit = None;
    }

    fn set_a20(&mut self, on: bool) {
        if on != self.a20 {
            self.a20 = on;
            self.generation += 1;
        }
    }

    fn rebuild_low_kinds(&mut self) {
        for page in 0..256u64 {
            let addr = (page << 12) as u32;
            self.low_kinds[page as usize] = match addr {
                0..=0x9FFFF => PageKind::Ram,
                0xA0000..=0xBFFFF => {
                    if self.host.smram_open() { PageKind::Ram } else { PageKind::Mmio }
                }
                _ => {
                    let p = self.host.pam(addr);
                    match (p.read_ram, p.write_ram) {
                        (true, true) => PageKind::Ram,
                        (true, false) => PageKind::RamReadOnly,
                        _ => PageKind::Mmio,
                    }
                }
            };
        }
        self.host_generation = self.host.generation;
    }

    /// Recompute the port table and MMIO ranges of pluggable devices (after config writes).
    fn rebuild_maps(&mut self) {
        self.io_map.iter_mut().for_each(|e| *e = 0);
        self.io_routes.clear();
        self.mmio_routes.clear();
        for (i, e) in self.ext.iter_mut().enumerate() {
            let mut io_ranges = Vec::new();
            let mut mmio_ranges = Vec::new();
            let dev = e.io();
            for (start, len) in dev.legacy_io() {
                io_ranges.push((start as u64, len as u64, Region::Legacy, 0u64));
            }
            for (start, len) in dev.legacy_mmio() {
                mmio_ranges.push((start, len, Region::Legacy, 0u64));
            }
            if let Ext::Pci { dev, .. } = e {
                let c = dev.config();
                for b in 0..7 {
                    if let Some(base) = c.bar_base(b) {
                        let bar = c.bars[b];
                        if bar.kind == crate::pci::BarKind::Io {
                            io_ranges.push((base, bar.size as u64, Region::Bar(b as u8), base));
                        } else {
                            mmio_ranges.push((base, bar.size as u64, Region::Bar(b as u8), base));
                        }
                    }
                }
            }
            for (start, len, region, base) in io_ranges {
                self.io_routes.push(Route { dev: i, region, base });
                let idx = self.io_routes.len() as u16;
                for p in start..(start + len).min(0x10000) {
                    self.io_map[p as usize] = idx;
                }
            }
            for (start, len, region, base) in mmio_ranges {
                self.mmio_routes.push((start, start + len, Route { dev: i, region, base }));
            }
        }
        self.generation += 1;
    }

    // ---- time -------------------------------------------------------------------------

    /// Instructions the CPU may run before the next device event is due (at least 1).
    pub fn slice_budget(&self) -> u64 {
        let now = self.clock.now_ns();
        let deadline = self.next_event_ns().unwrap_or(u64::MAX).min(now + clock::MAX_SLICE_NS);
        self.clock.instructions_until(deadline).max(1)
    }

    /// Earliest virtual time a device will change an interrupt line by itself.
    pub fn next_event_ns(&self) -> Option<u64> {
        let now = self.clock.now_ns();
        let mut next = self.pit.ch[0].next_rise_ns(now);
        if let Some(r) = self.rtc.next_event_ns(now) {
            next = Some(next.map_or(r, |n| n.min(r)));
        }
        next
    }

    /// Account for `instructions` the CPU executed and bring devices up to the new time.
    pub fn advance(&mut self, instructions: u64) {
        self.clock.add_instructions(instructions);
        self.poll_devices();
    }

    /// The CPU is halted: jump virtual time to the next device event. Returns false when nothing
    /// can ever wake the CPU (no timer armed).
    pub fn idle(&mut self) -> bool {
        // A device waiting for host I/O: wait for it instead of skipping virtual time.
        let mut waited = false;
        for e in &mut self.ext {
            waited |= e.io().wait_io(std::time::Duration::from_millis(2));
        }
        if waited {
            self.poll_devices();
            return true;
        }
        match self.next_event_ns() {
            Some(t) => {
                self.clock.skip_to(t);
                self.poll_devices();
                true
            }
            None => false,
        }
    }

    fn poll_devices(&mut self) {
        let now = self.clock.now_ns();
        let last = self.last_poll_ns;
        if self.pit.ch[0].rose_between(last, now) {
            self.pic.set_irq(0, false);
            self.pic.set_irq(0, true);
        }
        let out0 = self.pit.ch[0].get_out(now);
        self.pic.set_irq(0, out0);
        let rtc_irq = self.rtc.update(now);
        self.pic.set_irq(8, rtc_irq);
        let sci = self.pm.sci_level();
        self.pm.poll_timer(now);
        if !self.ext.is_empty() {
            let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: now };
            for e in &mut self.ext {
                e.io().poll(&mut ctx);
            }
            self.update_ext_irqs();
        } else if sci != self.pm.sci_level() {
            self.update_ext_irqs();
        }
        self.last_poll_ns = now;
    }

    fn update_ext_irqs(&mut self) {
        let mut lines = 0u16;
        for e in &self.ext {
            match e {
                Ext::Pci { devfn, dev } => {
                    lines |= dev.isa_irq_levels();
                    let pin = dev.config().u8(crate::pci::INTERRUPT_PIN);
                    if pin != 0 && dev.intx_level() {
                        let pirq = ((devfn >> 3) as usize + pin as usize - 1) & 3;
                        if let Some(irq) = self.piix3.pirq_route(pirq) {
                            lines |= 1 << irq;
                        }
                    }
                }
                Ext::Isa(d) => lines |= d.isa_irq_levels(),
            }
        }
        // ACPI SCI of the PIIX4 PM function: ISA IRQ 9, level (QEMU's `pc` wiring)
        if self.pm.sci_level() {
            lines |= 1 << 9;
        }
        let changed = lines ^ self.ext_lines;
        if changed != 0 {
            for irq in 0..16 {
                if changed & (1 << irq) != 0 {
                    self.pic.set_irq(irq, lines & (1 << irq) != 0);
                }
            }
            self.ext_lines = lines;
        }
    }

    fn update_kbc_irqs(&mut self, pulse: bool) {
        let (k, m) = self.kbc.irqs();
        if pulse {
            self.pic.set_irq(1, false);
            self.pic.set_irq(12, false);
        }
        self.pic.set_irq(1, k);
        self.pic.set_irq(12, m);
    }

    /// Host keyboard input (scancode set 2).
    pub fn key_event(&mut self, set2: &[u8]) {
        self.kbc.key_event(set2);
        self.update_kbc_irqs(false);
    }

    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.kbc.mouse_event(dx, dy, dz, buttons);
        self.update_kbc_irqs(false);
    }

    pub fn serial_receive(&mut self, data: &[u8]) {
        self.serial.receive(data);
        let irq = self.serial.irq();
        self.pic.set_irq(4, irq);
    }

    // ---- PCI configuration ----------------------------------------------------------------

    fn pci_config_read(&mut self, port: u16, width: Width) -> u32 {
        let Some(a) = ConfigAddress::decode(self.cf8) else { return all_ones(width) as u32 };
        if a.bus != 0 {
            return all_ones(width) as u32;
        }
        let off = a.register + (port & 3) as u8;
        match a.devfn {
            0x00 => self.host.config_read(off, width),
            0x08 => self.piix3.config_read(off, width),
            0x0B => self.pm.config_read(off, width),
            devfn => {
                for e in &mut self.ext {
                    if let Ext::Pci { devfn: d, dev } = e {
                        if *d == devfn {
                            return dev.config_read(off, width);
                        }
                    }
                }
                all_ones(width) as u32
            }
        }
    }

    fn pci_config_write(&mut self, port: u16, width: Width, value: u32) {
        let Some(a) = ConfigAddress::decode(self.cf8) else { return };
        if a.bus != 0 {
            return;
        }
        let off = a.register + (port & 3) as u8;
        match a.devfn {
            0x00 => {
                self.host.config_write(off, width, value);
                if self.host.generation != self.host_generation {
                    self.generation += 1;
                    self.rebuild_low_kinds();
                }
            }
            0x08 => self.piix3.config_write(off, width, value),
            0x0B => self.pm.config_write(off, width, value),
            devfn => {
                let mut hit = false;
                for e in &mut self.ext {
                    if let Ext::Pci { devfn: d, dev } = e {
                        if *d == devfn {
                            dev.config_write(off, width, value);
                            hit = true;
                        }
                    }
                }
                if hit {
                    self.rebuild_maps();
                }
            }
        }
    }

    // ---- memory ---------------------------------------------------------------------------

    fn bios_base(&self) -> u64 {
        (1u64 << 32) - self.bios.len() as u64
    }

    /// A byte of the "PCI side" below 1 MiB: the isa-bios alias and the empty option ROM area.
    fn low_rom_byte(&self, addr: u64) -> u8 {
        if addr >= 0xE0000 {
            let isa_len = self.bios.len().min(0x20000);
            let off = self.bios.len() - isa_len + (addr as usize - (0x100000 - isa_len));
            if addr as usize >= 0x100000 - isa_len { self.bios[off] } else { 0xFF }
        } else {
            0
        }
    }

    fn ext_mmio(&self, paddr: u64) -> Option<Route> {
        self.mmio_routes.iter().find(|(s, e, _)| paddr >= *s && paddr < *e).map(|(_, _, r)| *r)
    }
}

impl Bus for Pc {
    #[inline]
    fn ram(&mut self) -> &mut [u8] {
        &mut self.ram
    }

    #[inline]
    fn page_kind(&self, page: u64) -> PageKind {
        if page < 256 {
            self.low_kinds[page as usize]
        } else if page < (self.ram.len() as u64 >> 12) {
            PageKind::Ram
        } else {
            PageKind::Mmio
        }
    }

    fn map_generation(&self) -> u64 {
        self.generation
    }

    fn a20_mask(&self) -> u64 {
        if self.a20 { u64::MAX } else { !(1u64 << 20) }
    }

    fn mmio_read(&mut self, paddr: u64, width: Width) -> u64 {
        if (0xC0000..0x100000).contains(&paddr) {
            let mut v = 0u64;
            for i in 0..width as u64 {
                let a = paddr + i;
                let b = if a >= 0x100000 {
                    self.ram.get(a as usize).copied().unwrap_or(0xFF)
                } else if self.host.pam(a as u32).read_ram {
                    self.ram[a as usize]
                } else {
                    self.low_rom_byte(a)
                };
                v |= (b as u64) << (8 * i);
            }
            return v;
        }
        if paddr >= self.bios_base() && paddr < (1 << 32) {
            let off = (paddr - self.bios_base()) as usize;
            let mut v = 0u64;
            for i in 0..width as usize {
                v |= (*self.bios.get(off + i).unwrap_or(&0xFF) as u64) << (8 * i);
            }
            return v;
        }
        if (0xA0000..0xC0000).contains(&paddr) && self.host.smram_open() {
            let mut v = 0u64;
            for i in 0..width as usize {
                v |= (self.ram[paddr as usize + i] as u64) << (8 * i);
            }
            return v;
        }
        if let Some(r) = self.ext_mmio(paddr) {
            let now = self.clock.now_ns();
            let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: now };
            let off = if r.region == Region::Legacy { paddr } else { paddr - r.base };
            let v = self.ext[r.dev].io().mmio_read(&mut ctx, r.region, off, width);
            self.update_ext_irqs();
            return v;
        }
        if (paddr as usize) < self.ram.len() {
            // RAM reached through the slow path (e.g. A/B segment without a VGA)
            let mut v = 0u64;
            for i in 0..width as usize {
                v |= (*self.ram.get(paddr as usize + i).unwrap_or(&0xFF) as u64) << (8 * i);
            }
            return v;
        }
        all_ones(width)
    }

    fn mmio_write(&mut self, paddr: u64, width: Width, value: u64) {
        if (0xC0000..0x100000).contains(&paddr) {
            for i in 0..width as u64 {
                let a = paddr + i;
                if a >= 0x100000 {
                    if let Some(m) = self.ram.get_mut(a as usize) {
                        *m = (value >> (8 * i)) as u8;
                    }
                } else if self.host.pam(a as u32).write_ram {
                    self.ram[a as usize] = (value >> (8 * i)) as u8;
                }
            }
            return;
        }
        if (0xA0000..0xC0000).contains(&paddr) && self.host.smram_open() {
            for i in 0..width as usize {
                self.ram[paddr as usize + i] = (value >> (8 * i)) as u8;
            }
            return;
        }
        if let Some(r) = self.ext_mmio(paddr) {
            let now = self.clock.now_ns();
            let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: now };
            let off = if r.region == Region::Legacy { paddr } else { paddr - r.base };
            self.ext[r.dev].io().mmio_write(&mut ctx, r.region, off, width, value);
            self.update_ext_irqs();
            return;
        }
        if (0xA0000..0xC0000).contains(&paddr) {
            return;
        }
        if (paddr as usize) < self.ram.len() {
            for i in 0..width as usize {
                if let Some(m) = self.ram.get_mut(paddr as usize + i) {
                    *m = (value >> (8 * i)) as u8;
                }
            }
        }
    }

    fn io_read(&mut self, port: u16, width: Width) -> u32 {
        let route = self.io_map[port as usize];
        if route != 0 {
            let r = self.io_routes[route as usize - 1];
            let now = self.clock.now_ns();
            let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: now };
            let off = if r.region == Region::Legacy { port } else { port - r.base as u16 };
            let v = self.ext[r.dev].io().io_read(&mut ctx, r.region, off, width);
            self.update_ext_irqs();
            return v;
        }
        if let Some(base) = self.pm.pm_base() {
            if (base..base + 64).contains(&port) {
                return self.pm.pm_read(self.clock.now_ns(), port - base, width);
            }
        }
        if Piix4Pm::decodes_fixed(port) {
            return self.pm.fixed_read(port, width);
        }
        if matches!(port, 0x510 | 0x511 | 0x514..=0x51B) {
            return self.fw_cfg.io_read(port, width);
        }
        if (0xCFC..=0xCFF).contains(&port) {
            return self.pci_config_read(port, width);
        }
        if port == 0xCF8 && width == 4 {
            return self.cf8;
        }
        if width > 1 {
            // byte-wise for legacy 8-bit devices
            let mut v = 0;
            for i in 0..width as u16 {
                v |= (self.io_read8(port.wrapping_add(i)) as u32) << (8 * i);
            }
            return v;
        }
        self.io_read8(port) as u32
    }

    fn io_write(&mut self, port: u16, width: Width, value: u32) {
        let route = self.io_map[port as usize];
        if route != 0 {
            let r = self.io_routes[route as usize - 1];
            let now = self.clock.now_ns();
            let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: now };
            let off = if r.region == Region::Legacy { port } else { port - r.base as u16 };
            self.ext[r.dev].io().io_write(&mut ctx, r.region, off, width, value);
            self.update_ext_irqs();
            return;
        }
        if let Some(base) = self.pm.pm_base() {
            if (base..base + 64).contains(&port) {
                self.pm.pm_write(port - base, width, value);
                if self.pm.power_off {
                    self.exit = Some(MachineExit::PowerOff);
                }
                self.update_ext_irqs();
                return;
            }
        }
        if Piix4Pm::decodes_fixed(port) {
            self.pm.fixed_write(port, width, value);
            self.update_ext_irqs();
            return;
        }
        match (port, width) {
            (0xCF8, 4) => {
                self.cf8 = value;
                return;
            }
            (0xCFC..=0xCFF, _) => {
                self.pci_config_write(port, width, value);
                return;
            }
            (0x510..=0x51B, _) => {
                self.fw_cfg.io_write(port, width, value, &mut self.ram);
                return;
            }
            (0x501, _) => {
                self.exit = Some(MachineExit::DebugExit((value << 1) | 1));
                return;
            }
            _ => {}
        }
        for i in 0..width as u16 {
            self.io_write8(port.wrapping_add(i), (value >> (8 * i)) as u8);
        }
    }

    fn intr_pending(&mut self) -> bool {
        self.pic.intr()
    }

    fn intr_ack(&mut self) -> u8 {
        self.pic.ack()
    }

    fn should_yield(&mut self) -> bool {
        self.exit.is_some()
    }
}

impl Pc {
    fn io_read8(&mut self, port: u16) -> u8 {
        let now = self.clock.now_ns();
        match port {
            0x00..=0x0F | 0x81..=0x8F | 0xC0..=0xDF => self.dma.io_read(port).unwrap_or(0xFF),
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => self.pic.io_read(port),
            0x40..=0x43 => self.pit.read(port, now),
            0x61 => self.pit.read_port61(now),
            0x60 | 0x64 => {
                let v = self.kbc.io_read(port);
                self.update_kbc_irqs(port == 0x60);
                v
            }
            0x70 | 0x71 => {
                let v = self.rtc.io_read(port, now);
                let irq = self.rtc.update(now);
                self.pic.set_irq(8, irq);
                v
            }
            0x80 => self.post_code,
            0x92 => self.port92 | if self.a20 { 2 } else { 0 },
            0xB2 | 0xB3 => self.apm[(port - 0xB2) as usize],
            0x3F8..=0x3FF => {
                let v = self.serial.io_read(port - 0x3F8);
                let irq = self.serial.irq();
                self.pic.set_irq(4, irq);
                v
            }
            0x402 => 0xE9,
            0xCF9 => self.piix3.rcr,
            _ => 0xFF,
        }
    }

    fn io_write8(&mut self, port: u16, v: u8) {
        let now = self.clock.now_ns();
        match port {
            0x00..=0x0F | 0x81..=0x8F | 0xC0..=0xDF => {
                self.dma.io_write(port, v);
            }
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => self.pic.io_write(port, v),
            0x40..=0x43 => {
                self.pit.write(port, v, now);
                if port == 0x40 {
                    let out = self.pit.ch[0].get_out(now);
                    self.pic.set_irq(0, out);
                }
            }
            0x61 => self.pit.write_port61(v, now),
            0x60 | 0x64 => {
                let ch = self.kbc.io_write(port, v);
                if let Some(a20) = ch.a20 {
                    self.set_a20(a20);
                }
                if ch.reset {
                    self.exit = Some(MachineExit::Reset);
                }
                self.update_kbc_irqs(false);
            }
            0x70 | 0x71 => {
                self.rtc.io_write(port, v, now);
                let irq = self.rtc.update(now);
                self.pic.set_irq(8, irq);
            }
            0x80 => self.post_code = v,
            0x92 => {
                self.port92 = v & !2;
                self.set_a20(v & 2 != 0);
                if v & 1 != 0 {
                    self.exit = Some(MachineExit::Reset);
                }
            }
            0xB2 | 0xB3 => {
                self.apm[(port - 0xB2) as usize] = v;
                // APM control: the ACPI enable/disable commands of the FADT (SMI_CMD = 0xB2)
                // toggle SCI_EN, as QEMU's PIIX4 does (there is no SMM handler to do it).
                if port == 0xB2 {
                    match v {
                        0xF1 => self.pm.pm1_cnt |= 1,
                        0xF0 => self.pm.pm1_cnt &= !1,
                        _ => {}
                    }
                    self.update_ext_irqs();
                }
            }
            0x3F8..=0x3FF => {
                self.serial.io_write(port - 0x3F8, v);
                let irq = self.serial.irq();
                self.pic.set_irq(4, irq);
            }
            0x402 => {
                self.debugcon.write(v);
            }
            0xCF9 => {
                if self.piix3.write_rcr(v) {
                    self.exit = Some(MachineExit::Reset);
                }
            }
            _ => {}
        }
    }

    /// Flush the serial and debug console sinks and the devices' disk images.
    pub fn flush(&mut self) {
        for e in &mut self.ext {
            e.io().flush();
        }
        self.flush_output();
    }

    /// Only the character outputs (serial, debug console, stdout), not the disks: cheap enough
    /// for every time the guest goes idle.
    pub fn flush_output(&mut self) {
        self.serial.flush();
        self.debugcon.flush();
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests;
