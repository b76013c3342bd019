//! One IDE channel: two drive positions (master / slave), their task-file registers, the
//! command protocol (PIO data blocks, DMA through the bus master, ATAPI packets), device control
//! (nIEN, SRST) and the interrupt line.
//!
//! Register copies are per drive, as on QEMU: writes go to both drives, reads come from the
//! selected one, and each drive places its own signature after a reset (an ATAPI drive answers
//! 14h/EBh in the cylinder registers, a missing slave FFh/FFh), which is what Linux's and
//! SeaBIOS's probes look at. A command written for a drive position without a drive is ignored;
//! on a channel without any drive every register reads 0 (QEMU's behaviour, which guests probe).
//!
//! Disk reads and writes go to the I/O worker (see `worker.rs`) in chunks of up to 128 KiB (CD:
//! 64 KiB); the drive shows BSY until the chunk is back, then offers DRQ blocks (PIO) or lets the
//! bus master move it (DMA).

use serde::{Deserialize, Serialize};
use vessel_core::bus::Width;

use super::ata::{self, XferMode, MAX_MULT, SECTOR};
use super::atapi::{self, Action, Cdrom, CD_SECTOR};
use super::bmdma::BusMaster;
use super::worker::{Completion, IoWorker, Op, Request};
use super::Medium;

pub const ST_ERR: u8 = 0x01;
pub const ST_DRQ: u8 = 0x08;
pub const ST_DSC: u8 = 0x10;
pub const ST_DRDY: u8 = 0x40;
pub const ST_BSY: u8 = 0x80;
pub const ERR_ABRT: u8 = 0x04;
pub const ERR_IDNF: u8 = 0x10;
pub const CTL_NIEN: u8 = 0x02;
pub const CTL_SRST: u8 = 0x04;
pub const CTL_HOB: u8 = 0x80;

const READY: u8 = ST_DRDY | ST_DSC;
/// Sectors per I/O worker request.
const DISK_CHUNK: u64 = 256;
const CD_CHUNK: u64 = 32;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[default]
    None,
    Disk,
    Cdrom,
}

/// Task-file registers (with the "previous" bytes LBA48 commands read through HOB).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regs {
    pub feature: u8,
    pub nsector: u8,
    pub sector: u8,
    pub lcyl: u8,
    pub hcyl: u8,
    pub hob_feature: u8,
    pub hob_nsector: u8,
    pub hob_sector: u8,
    pub hob_lcyl: u8,
    pub hob_hcyl: u8,
    /// Device/head register without the DEV bit.
    pub select: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drive {
    pub kind: Kind,
    pub regs: Regs,
    pub status: u8,
    pub error: u8,
    /// Disk: the drive's default geometry, and the one INITIALIZE DEVICE PARAMETERS set.
    pub geometry: Option<ata::Geometry>,
    pub cur_heads: u8,
    pub cur_sectors: u8,
    pub mult: u16,
    pub mode: XferMode,
    pub write_cache: bool,
    pub cd: Cdrom,
    pub serial: String,
    pub model: String,
}

/// What the data register is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Xfer {
    #[default]
    Idle,
    /// Host reads `buf[pos..end]`.
    PioIn,
    /// Host writes `buf[pos..end]`.
    PioOut,
    /// The bus master moves the buffer once it is started.
    Dma,
}

/// The command in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Cmd {
    #[default]
    None,
    Identify,
    DiskRead { dma: bool },
    DiskWrite { dma: bool },
    Flush,
    /// Receiving the 12-byte packet.
    Packet,
    /// ATAPI data-in of a reply held in the buffer.
    AtapiData { dma: bool },
    /// ATAPI data-in of sectors read from the medium.
    AtapiRead { dma: bool },
}

/// A finished I/O request kept across save/restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedIo {
    pub buf: Vec<u8>,
    pub result: Result<(), String>,
}

/// The parts of the machine a channel needs while handling an access.
pub struct Env<'a> {
    pub worker: &'a IoWorker,
    pub ram: &'a mut [u8],
}

#[derive(Default, Serialize, Deserialize)]
pub struct Channel {
    pub index: u8,
    pub drives: [Drive; 2],
    unit: usize,
    ctrl: u8,
    irq: bool,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    xfer: Xfer,
    cmd: Cmd,
    /// Next sector (512 or 2048 bytes) of the transfer and sectors still to do.
    lba: u64,
    left: u64,
    /// Sectors in the current chunk / DRQ block.
    chunk: u64,
    blk: u64,
    lba48: bool,
    /// Where the current DRQ block began in `buf`.
    block_start: usize,
    /// ATAPI byte count limit and DMA flag from the PACKET command.
    byte_limit: usize,
    atapi_dma: bool,
    /// An I/O worker request is out for this channel.
    pub io_busy: bool,
    pub generation: u32,
    /// A completion taken before a save, applied at the next poll.
    pub done: Option<SavedIo>,
    pub bm: BusMaster,
    #[serde(skip)]
    pub media: [Option<Medium>; 2],
}

impl Channel {
    pub fn new(index: u8) -> Self {
        let mut c = Channel { index, ..Default::default() };
        c.reset();
        c
    }

    fn any_drive(&self) -> bool {
        self.drives.iter().any(|d| d.kind != Kind::None)
    }

    fn cur(&mut self) -> &mut Drive {
        &mut self.drives[self.unit]
    }

    /// Sectors of the selected drive's medium (512 bytes for disks, 2048 for CDs).
    fn medium_sectors(&self, unit: usize) -> Option<u64> {
        let m = self.media[unit].as_ref()?;
        let unit_size = if self.drives[unit].kind == Kind::Cdrom { CD_SECTOR } else { SECTOR } as u64;
        Some(m.dev.size() / unit_size)
    }

    pub fn irq_level(&self) -> bool {
        self.irq && self.ctrl & CTL_NIEN == 0
    }

    fn raise_irq(&mut self) {
        self.irq = true;
        // PIIX sets the bus master interrupt bit whenever the channel's IRQ is asserted
        self.bm.status |= super::bmdma::ST_INTERRUPT;
    }

    fn signature(&mut self, unit: usize) {
        let kind = self.drives[unit].kind;
        let r = &mut self.drives[unit].regs;
        r.select &= 0xF0;
        r.nsector = 1;
        r.sector = 1;
        (r.lcyl, r.hcyl) = match kind {
            Kind::Cdrom => (0x14, 0xEB),
            Kind::Disk => (0, 0),
            Kind::None => (0xFF, 0xFF),
        };
    }

    fn reset_drive(&mut self, unit: usize) {
        let d = &mut self.drives[unit];
        d.status = match d.kind {
            Kind::Disk => READY,
            _ => 0,
        };
        d.error = 0x01;
        if let Some(g) = d.geometry {
            d.cur_heads = g.heads;
            d.cur_sectors = g.sectors;
        }
        if d.kind == Kind::Disk {
            d.mult = MAX_MULT;
        }
        self.signature(unit);
    }

    /// Abandon any transfer (a request still out is recognised by its old generation).
    fn cancel(&mut self) {
        self.xfer = Xfer::Idle;
        self.cmd = Cmd::None;
        self.pos = 0;
        self.end = 0;
        self.io_busy = false;
        self.done = None;
        self.generation = self.generation.wrapping_add(1);
    }

    /// Power-on / hardware reset.
    pub fn reset(&mut self) {
        self.cancel();
        self.unit = 0;
        self.ctrl = 0;
        self.irq = false;
        self.bm = BusMaster::default();
        for u in 0..2 {
            self.drives[u].regs = Regs::default();
            self.drives[u].mode = XferMode::Pio;
            self.drives[u].write_cache = true;
            self.reset_drive(u);
        }
    }

    // ---- registers ----------------------------------------------------------------------

    /// Command block register `reg` (1..=7).
    pub fn read_reg(&mut self, reg: u16) -> u8 {
        if !self.any_drive() {
            return 0;
        }
        let hob = self.ctrl & CTL_HOB != 0;
        let present = self.drives[self.unit].kind != Kind::None;
        let unit = self.unit;
        let d = &self.drives[unit];
        let r = &d.regs;
        match reg {
            1 => if hob { r.hob_feature } else { d.error },
            2 => if hob { r.hob_nsector } else { r.nsector },
            3 => if hob { r.hob_sector } else { r.sector },
            4 => if hob { r.hob_lcyl } else { r.lcyl },
            5 => if hob { r.hob_hcyl } else { r.hcyl },
            6 => r.select | 0xA0 | ((unit as u8) << 4),
            _ => {
                self.irq = false;
                if present { d.status } else { 0 }
            }
        }
    }

    pub fn alt_status(&self) -> u8 {
        if !self.any_drive() || self.drives[self.unit].kind == Kind::None {
            return 0;
        }
        self.drives[self.unit].status
    }

    pub fn write_reg(&mut self, reg: u16, v: u8, env: &mut Env) {
        if reg != 7 {
            self.ctrl &= !CTL_HOB;
        }
        for d in &mut self.drives {
            let r = &mut d.regs;
            match reg {
                1 => (r.hob_feature, r.feature) = (r.feature, v),
                2 => (r.hob_nsector, r.nsector) = (r.nsector, v),
                3 => (r.hob_sector, r.sector) = (r.sector, v),
                4 => (r.hob_lcyl, r.lcyl) = (r.lcyl, v),
                5 => (r.hob_hcyl, r.hcyl) = (r.hcyl, v),
                6 => r.select = v & !0x10,
                _ => {}
            }
        }
        match reg {
            6 => self.unit = ((v >> 4) & 1) as usize,
            7 => self.command(v, env),
            _ => {}
        }
    }

    /// Device control register (0x3F6 / 0x376).
    pub fn write_ctrl(&mut self, v: u8) {
        let was = self.ctrl & CTL_SRST != 0;
        let now = v & CTL_SRST != 0;
        if !was && now {
            self.cancel();
            for d in &mut self.drives {
                d.status = ST_BSY;
            }
        } else if was && !now {
            for u in 0..2 {
                self.reset_drive(u);
            }
            self.unit = 0;
        }
        self.ctrl = v;
    }

    // ---- data register --------------------------------------------------------------------

    pub fn read_data(&mut self, width: Width, env: &mut Env) -> u32 {
        if self.xfer != Xfer::PioIn {
            return 0;
        }
        let n = (width as usize).min(self.end - self.pos);
        let mut v = 0u32;
        for i in 0..n {
            v |= (self.buf[self.pos + i] as u32) << (8 * i);
        }
        self.pos += n;
        if self.pos >= self.end {
            self.pio_done(env);
        }
        v
    }

    pub fn write_data(&mut self, width: Width, v: u32, env: &mut Env) {
        if self.xfer != Xfer::PioOut {
            return;
        }
        let n = (width as usize).min(self.end - self.pos);
        for i in 0..n {
            self.buf[self.pos + i] = (v >> (8 * i)) as u8;
        }
        self.pos += n;
        if self.pos >= self.end {
            self.pio_done(env);
        }
    }

    // ---- bus master ---------------------------------------------------------------------

    pub fn read_bm(&self, off: u16) -> u8 {
        self.bm.read(off)
    }

    pub fn write_bm(&mut self, off: u16, v: u8, env: &mut Env) {
        if self.bm.write(off, v) == Some(true) {
            self.try_dma(env);
        }
    }

    // ---- command completion helpers -------------------------------------------------------

    fn ok(&mut self, irq: bool) {
        self.xfer = Xfer::Idle;
        self.cmd = Cmd::None;
        self.cur().status = READY;
        if irq {
            self.raise_irq();
        }
    }

    fn abort_with(&mut self, error: u8) {
        self.xfer = Xfer::Idle;
        self.cmd = Cmd::None;
        let d = self.cur();
        d.error = error;
        d.status = ST_DRDY | ST_ERR;
        self.raise_irq();
    }

    fn abort(&mut self) {
        self.abort_with(ERR_ABRT);
    }

    fn pio_in(&mut self, len: usize) {
        self.pos = 0;
        self.end = len;
        self.xfer = Xfer::PioIn;
        self.cur().status = READY | ST_DRQ;
        self.raise_irq();
    }

    fn submit(&mut self, env: &Env, op: Op, offset: u64, buf: Vec<u8>) {
        let dev = self.media[self.unit].as_ref().expect("medium present").dev.clone();
        self.io_busy = true;
        self.xfer = Xfer::Idle;
        let d = self.cur();
        d.status = ST_BSY | ST_DRDY | if d.kind == Kind::Disk { ST_DSC } else { 0 };
        env.worker.submit(Request { chan: self.index, generation: self.generation, dev, op, offset, buf });
    }

    fn take_buf(&mut self, len: usize) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.buf);
        b.resize(len, 0);
        b
    }

    // ---- ATA addressing -------------------------------------------------------------------

    fn count(&self) -> u64 {
        let r = &self.drives[self.unit].regs;
        if self.lba48 {
            match ((r.hob_nsector as u64) << 8) | r.nsector as u64 {
                0 => 65536,
                n => n,
            }
        } else {
            match r.nsector {
                0 => 256,
                n => n as u64,
            }
        }
    }

    /// The starting sector from the registers; `None` for an invalid CHS address.
    fn address(&self) -> Option<u64> {
        let d = &self.drives[self.unit];
        let r = &d.regs;
        if r.select & 0x40 != 0 {
            Some(if self.lba48 {
                (r.hob_hcyl as u64) << 40
                    | (r.hob_lcyl as u64) << 32
                    | (r.hob_sector as u64) << 24
                    | (r.hcyl as u64) << 16
                    | (r.lcyl as u64) << 8
                    | r.sector as u64
            } else {
                ((r.select & 0x0F) as u64) << 24 | (r.hcyl as u64) << 16 | (r.lcyl as u64) << 8 | r.sector as u64
            })
        } else {
            let cyl = ((r.hcyl as u64) << 8) | r.lcyl as u64;
            let head = (r.select & 0x0F) as u64;
            let (heads, secs) = (d.cur_heads as u64, d.cur_sectors as u64);
            if r.sector == 0 || r.sector as u64 > secs || head >= heads.max(1) {
                return None;
            }
            Some((cyl * heads + head) * secs + r.sector as u64 - 1)
        }
    }

    /// Put sector `lba` in the address registers (where the last transfer ended).
    fn set_address(&mut self, lba: u64) {
        let lba48 = self.lba48;
        let d = &mut self.drives[self.unit];
        let (heads, secs) = (d.cur_heads.max(1) as u64, d.cur_sectors.max(1) as u64);
        let r = &mut d.regs;
        if r.select & 0x40 != 0 {
            r.sector = lba as u8;
            r.lcyl = (lba >> 8) as u8;
            r.hcyl = (lba >> 16) as u8;
            if lba48 {
                r.hob_sector = (lba >> 24) as u8;
                r.hob_lcyl = (lba >> 32) as u8;
                r.hob_hcyl = (lba >> 40) as u8;
            } else {
                r.select = (r.select & 0xF0) | ((lba >> 24) as u8 & 0x0F);
            }
        } else {
            let cyl = lba / (heads * secs);
            let rest = lba % (heads * secs);
            r.hcyl = (cyl >> 8) as u8;
            r.lcyl = cyl as u8;
            r.select = (r.select & 0xF0) | (rest / secs) as u8 & 0x0F;
            r.sector = (rest % secs + 1) as u8;
        }
    }

    // ---- commands ---------------------------------------------------------------------------

    fn command(&mut self, op: u8, env: &mut Env) {
        let kind = self.drives[self.unit].kind;
        if kind == Kind::None {
            return; // no drive at this position: the command is not seen
        }
        let busy = self.drives[self.unit].status & ST_BSY != 0;
        if busy && !(op == 0x08 && kind == Kind::Cdrom) {
            return;
        }
        self.irq = false;
        self.cur().error = 0;
        self.lba48 = matches!(op, 0x24 | 0x25 | 0x27 | 0x29 | 0x34 | 0x35 | 0x39 | 0x3D | 0x42 | 0xEA);
        tracing::trace!(chan = self.index, unit = self.unit, op, "IDE command");
        if kind == Kind::Cdrom {
            return self.cd_command(op, env);
        }
        match op {
            0xEC => {
                let d = &self.drives[self.unit];
                let total = self.medium_sectors(self.unit).unwrap_or(0);
                let geo = d.geometry.expect("disk has a geometry");
                let id = ata::identify_disk(total, &geo, &d.serial, &d.model, d.mult, d.mode, d.write_cache);
                self.buf = ata::to_bytes(&id);
                self.cmd = Cmd::Identify;
                self.pio_in(512);
            }
            // READ SECTORS (EXT), READ MULTIPLE (EXT), READ DMA (EXT)
            0x20 | 0x21 | 0x24 | 0xC4 | 0x29 | 0xC8 | 0xC9 | 0x25 => {
                let multiple = matches!(op, 0xC4 | 0x29);
                let dma = matches!(op, 0xC8 | 0xC9 | 0x25);
                if multiple && self.drives[self.unit].mult == 0 {
                    return self.abort();
                }
                let Some((lba, n)) = self.range() else { return };
                self.lba = lba;
                self.left = n;
                self.blk = if multiple { self.drives[self.unit].mult as u64 } else { 1 };
                self.cmd = Cmd::DiskRead { dma };
                self.disk_read_chunk(env);
            }
            // WRITE SECTORS (EXT), WRITE MULTIPLE (EXT), WRITE DMA (EXT, FUA EXT)
            0x30 | 0x31 | 0x34 | 0xC5 | 0x39 | 0xCA | 0xCB | 0x35 | 0x3D => {
                let multiple = matches!(op, 0xC5 | 0x39);
                let dma = matches!(op, 0xCA | 0xCB | 0x35 | 0x3D);
                if multiple && self.drives[self.unit].mult == 0 {
                    return self.abort();
                }
                let Some((lba, n)) = self.range() else { return };
                self.lba = lba;
                self.left = n;
                self.cmd = Cmd::DiskWrite { dma };
                if dma {
                    self.xfer = Xfer::Dma;
                    self.cur().status = READY | ST_DRQ;
                    self.try_dma(env);
                } else {
                    self.blk = if multiple { self.drives[self.unit].mult as u64 } else { 1 };
                    self.write_block();
                }
            }
            // READ VERIFY (EXT)
            0x40 | 0x41 | 0x42 => {
                let Some((lba, n)) = self.range() else { return };
                self.set_address(lba + n - 1);
                self.ok(true);
            }
            // FLUSH CACHE (EXT)
            0xE7 | 0xEA => {
                self.cmd = Cmd::Flush;
                let buf = std::mem::take(&mut self.buf);
                self.submit(env, Op::Flush, 0, buf);
            }
            0xC6 => {
                // SET MULTIPLE MODE
                let n = self.drives[self.unit].regs.nsector as u16;
                if n > MAX_MULT || (n != 0 && !n.is_power_of_two()) {
                    return self.abort();
                }
                self.cur().mult = n;
                self.ok(true);
            }
            0x91 => {
                // INITIALIZE DEVICE PARAMETERS
                let r = self.drives[self.unit].regs.clone();
                if r.nsector == 0 {
                    return self.abort();
                }
                let d = self.cur();
                d.cur_heads = (r.select & 0x0F) + 1;
                d.cur_sectors = r.nsector;
                self.ok(true);
            }
            0xEF => self.set_features(),
            0xF8 | 0x27 => {
                // READ NATIVE MAX ADDRESS (EXT)
                let total = self.medium_sectors(self.unit).unwrap_or(0);
                let max = if op == 0x27 { total } else { total.min(0x0FFF_FFFF) };
                self.drives[self.unit].regs.select |= 0x40;
                self.set_address(max.saturating_sub(1));
                self.ok(true);
            }
            0x70..=0x7F => {
                // SEEK
                let total = self.medium_sectors(self.unit).unwrap_or(0);
                match self.address() {
                    Some(l) if l < total => self.ok(true),
                    _ => self.abort_with(ERR_IDNF | ERR_ABRT),
                }
            }
            0x10..=0x1F => {
                // RECALIBRATE: back to cylinder 0
                self.ok(true);
            }
            0xE5 | 0x98 => {
                // CHECK POWER MODE: active / idle
                for d in &mut self.drives {
                    d.regs.nsector = 0xFF;
                }
                self.ok(true);
            }
            0xE0..=0xE3 | 0x94..=0x97 | 0xE6 | 0x99 => self.ok(true), // STANDBY, IDLE, SLEEP
            0x90 => {
                // EXECUTE DEVICE DIAGNOSTIC
                self.signature(self.unit);
                self.cur().error = 0x01;
                self.ok(true);
                self.cur().error = 0x01;
            }
            _ => {
                tracing::debug!(op, "IDE: unsupported ATA command");
                self.abort();
            }
        }
    }

    /// Start sector and count of a read/write; out of range (or a bad CHS address) fails the
    /// command with IDNF.
    fn range(&mut self) -> Option<(u64, u64)> {
        let total = self.medium_sectors(self.unit).unwrap_or(0);
        let n = self.count();
        match self.address() {
            Some(lba) if lba.checked_add(n).is_some_and(|e| e <= total) => Some((lba, n)),
            _ => {
                self.abort_with(ERR_IDNF);
                None
            }
        }
    }

    fn set_features(&mut self) {
        let r = self.drives[self.unit].regs.clone();
        match r.feature {
            0x02 => self.cur().write_cache = true,
            0x82 => self.cur().write_cache = false,
            0x03 => match XferMode::from_setting(r.nsector) {
                Some(m) => self.cur().mode = m,
                None => return self.abort(),
            },
            // read look-ahead, reverting to defaults, 8-bit PIO off, ECC bytes, APM, AAM
            0xAA | 0x55 | 0xCC | 0x66 | 0x81 | 0x44 | 0xBB | 0x05 | 0x85 | 0x42 | 0xC2 | 0x31 => {}
            _ => return self.abort(),
        }
        self.ok(true);
    }

    fn disk_read_chunk(&mut self, env: &Env) {
        let n = self.left.min(DISK_CHUNK);
        self.chunk = n;
        let buf = self.take_buf(n as usize * SECTOR);
        self.submit(env, Op::Read, self.lba * SECTOR as u64, buf);
    }

    /// Offer the next DRQ block of a PIO read (the chunk is in `buf` from `pos`).
    fn read_block(&mut self) {
        let in_buf = (self.buf.len() - self.pos) / SECTOR;
        let n = self.blk.min(in_buf as u64).max(1);
        let start = self.pos;
        self.pio_in(n as usize * SECTOR);
        self.pos = start;
        self.block_start = start;
        self.end = start + n as usize * SECTOR;
    }

    /// Ask the host for the next DRQ block of a PIO write.
    fn write_block(&mut self) {
        let n = self.blk.min(self.left);
        self.chunk = n;
        self.buf.resize(n as usize * SECTOR, 0);
        self.pos = 0;
        self.end = n as usize * SECTOR;
        self.xfer = Xfer::PioOut;
        self.cur().status = READY | ST_DRQ;
    }

    fn pio_done(&mut self, env: &mut Env) {
        match self.cmd {
            Cmd::Identify => self.ok(false),
            Cmd::DiskRead { .. } => {
                let n = (((self.end - self.block_start) / SECTOR) as u64).min(self.left);
                self.lba += n;
                self.left -= n;
                self.set_address(self.lba - 1);
                if self.left == 0 {
                    self.ok(false);
                } else if self.pos < self.buf.len() {
                    self.read_block();
                } else {
                    self.disk_read_chunk(env);
                }
            }
            Cmd::DiskWrite { .. } => {
                let buf = std::mem::take(&mut self.buf);
                self.submit(env, Op::Write, self.lba * SECTOR as u64, buf);
            }
            Cmd::Packet => self.packet(env),
            Cmd::AtapiData { .. } | Cmd::AtapiRead { .. } => self.atapi_next(env),
            Cmd::Flush | Cmd::None => self.ok(false),
        }
    }

    // ---- DMA --------------------------------------------------------------------------------

    fn try_dma(&mut self, env: &mut Env) {
        if self.xfer != Xfer::Dma || !self.bm.started() || self.io_busy {
            return;
        }
        match self.cmd {
            Cmd::DiskRead { .. } => {
                let n = self.bm.scatter(env.ram, &self.buf);
                if n < self.buf.len() {
                    return self.dma_short();
                }
                self.lba += self.chunk;
                self.left -= self.chunk;
                self.set_address(self.lba - 1);
                if self.left > 0 {
                    self.disk_read_chunk(env);
                } else {
                    self.bm.complete();
                    self.ok(true);
                }
            }
            Cmd::DiskWrite { .. } => {
                let n = self.left.min(DISK_CHUNK);
                self.chunk = n;
                let mut buf = self.take_buf(n as usize * SECTOR);
                let got = self.bm.gather(env.ram, &mut buf);
                if got < buf.len() {
                    self.buf = buf;
                    return self.dma_short();
                }
                self.submit(env, Op::Write, self.lba * SECTOR as u64, buf);
            }
            Cmd::AtapiData { .. } | Cmd::AtapiRead { .. } => {
                let n = self.bm.scatter(env.ram, &self.buf[self.pos..]);
                self.pos += n;
                let more = matches!(self.cmd, Cmd::AtapiRead { .. }) && self.left > 0;
                if self.pos < self.buf.len() && more {
                    return self.dma_short();
                }
                if more {
                    self.atapi_read_chunk(env);
                } else {
                    self.bm.complete();
                    self.atapi_ok();
                }
            }
            _ => {}
        }
    }

    /// The PRD table ended before the transfer.
    fn dma_short(&mut self) {
        tracing::debug!(chan = self.index, "IDE DMA: PRD table shorter than the transfer");
        self.bm.fail();
        if self.drives[self.unit].kind == Kind::Cdrom {
            self.atapi_ok();
        } else {
            self.abort();
        }
    }

    // ---- I/O completion ---------------------------------------------------------------------

    /// A worker request of this channel finished (stale ones are dropped by the caller).
    pub fn complete(&mut self, c: Completion, env: &mut Env) {
        self.apply(SavedIo { buf: c.buf, result: c.result }, env);
    }

    /// Apply a completion kept across save/restore.
    pub fn apply_saved(&mut self, env: &mut Env) {
        if let Some(s) = self.done.take() {
            self.apply(s, env);
        }
    }

    fn apply(&mut self, io: SavedIo, env: &mut Env) {
        self.io_busy = false;
        self.buf = io.buf;
        if let Err(e) = &io.result {
            tracing::warn!(chan = self.index, unit = self.unit, error = %e, "IDE request failed");
            if self.drives[self.unit].kind == Kind::Cdrom {
                self.cur().cd.sense = atapi::Sense { key: 3, asc: 0x11, ascq: 0 };
                if matches!(self.cmd, Cmd::AtapiRead { dma: true }) {
                    self.bm.complete();
                }
                return self.atapi_error();
            }
            if matches!(self.cmd, Cmd::DiskRead { dma: true } | Cmd::DiskWrite { dma: true }) {
                self.bm.complete();
            }
            return self.abort();
        }
        match self.cmd {
            Cmd::DiskRead { dma: false } => {
                self.pos = 0;
                self.block_start = 0;
                self.read_block();
            }
            Cmd::DiskRead { dma: true } => {
                self.xfer = Xfer::Dma;
                self.cur().status = READY | ST_DRQ;
                self.try_dma(env);
            }
            Cmd::DiskWrite { dma } => {
                self.lba += self.chunk;
                self.left -= self.chunk;
                self.set_address(self.lba - 1);
                if self.left == 0 {
                    if dma {
                        self.bm.complete();
                    }
                    self.ok(true);
                } else if dma {
                    self.xfer = Xfer::Dma;
                    self.cur().status = READY | ST_DRQ;
                    self.try_dma(env);
                } else {
                    self.write_block();
                    self.raise_irq();
                }
            }
            Cmd::Flush => self.ok(true),
            Cmd::AtapiRead { .. } => {
                self.lba += self.chunk;
                self.left -= self.chunk;
                self.pos = 0;
                self.atapi_start_data(env);
            }
            _ => self.ok(true),
        }
    }

    // ---- ATAPI ------------------------------------------------------------------------------

    fn cd_command(&mut self, op: u8, env: &mut Env) {
        match op {
            0xA1 => {
                let d = &self.drives[self.unit];
                self.buf = ata::to_bytes(&ata::identify_cdrom(&d.serial, &d.model, d.mode));
                self.cmd = Cmd::Identify;
                self.pio_in(512);
            }
            0xA0 => {
                let r = self.drives[self.unit].regs.clone();
                let dma = r.feature & 1 != 0;
                let limit = ((r.hcyl as usize) << 8) | r.lcyl as usize;
                self.byte_limit = match limit {
                    0 | 0xFFFF => 0xFFFE,
                    l => l,
                };
                self.cmd = Cmd::Packet;
                self.atapi_dma = dma;
                self.buf.clear();
                self.buf.resize(12, 0);
                self.pos = 0;
                self.end = 12;
                self.xfer = Xfer::PioOut;
                let d = self.cur();
                d.regs.nsector = (d.regs.nsector & !7) | 1; // C/D: expecting the command packet
                d.status = READY | ST_DRQ;
            }
            0x08 => {
                // DEVICE RESET: no interrupt
                self.cancel();
                self.reset_drive(self.unit);
            }
            0x90 => {
                self.signature(self.unit);
                self.ok(true);
                let d = self.cur();
                d.status = 0;
                d.error = 0x01;
            }
            0xEF => self.set_features(),
            0xE5 | 0x98 => {
                for d in &mut self.drives {
                    d.regs.nsector = 0xFF;
                }
                self.ok(true);
            }
            0xE0..=0xE3 | 0x94..=0x97 | 0xE6 | 0x99 => self.ok(true),
            // IDENTIFY DEVICE and READ SECTORS must abort with the signature in place
            0xEC | 0x20 | 0x21 => {
                self.signature(self.unit);
                self.abort();
            }
            _ => self.abort(),
        }
        let _ = env;
    }

    fn packet(&mut self, env: &mut Env) {
        let cdb: [u8; 12] = self.buf[..12].try_into().unwrap();
        let sectors = self.medium_sectors(self.unit);
        let model = self.drives[self.unit].model.clone();
        let dma = self.atapi_dma;
        tracing::trace!(chan = self.index, cdb = ?cdb, "ATAPI packet");
        match self.cur().cd.command(&cdb, sectors, &model) {
            Action::Data(v) => {
                if v.is_empty() {
                    return self.atapi_ok();
                }
                self.buf = v;
                self.pos = 0;
                self.left = 0;
                self.cmd = Cmd::AtapiData { dma };
                self.atapi_start_data(env);
            }
            Action::Read { lba, count } => {
                self.lba = lba;
                self.left = count;
                self.cmd = Cmd::AtapiRead { dma };
                self.atapi_read_chunk(env);
            }
            Action::Ok => self.atapi_ok(),
            Action::Check => self.atapi_error(),
        }
    }

    fn atapi_read_chunk(&mut self, env: &Env) {
        let n = self.left.min(CD_CHUNK);
        self.chunk = n;
        let buf = self.take_buf(n as usize * CD_SECTOR);
        self.submit(env, Op::Read, self.lba * CD_SECTOR as u64, buf);
    }

    fn atapi_start_data(&mut self, env: &mut Env) {
        if self.atapi_dma {
            self.xfer = Xfer::Dma;
            self.cur().status = READY | ST_DRQ;
            self.try_dma(env);
        } else {
            self.atapi_pio_block();
        }
    }

    /// Offer the next DRQ block of an ATAPI PIO data-in (at most the byte count limit).
    fn atapi_pio_block(&mut self) {
        let remaining = self.buf.len() - self.pos;
        let mut size = remaining;
        if size > self.byte_limit {
            size = self.byte_limit & !1;
        }
        let start = self.pos;
        self.end = start + size;
        self.xfer = Xfer::PioIn;
        let d = self.cur();
        d.regs.lcyl = size as u8;
        d.regs.hcyl = (size >> 8) as u8;
        d.regs.nsector = (d.regs.nsector & !7) | 2; // I/O: data to the host
        d.status = READY | ST_DRQ;
        self.raise_irq();
    }

    fn atapi_next(&mut self, env: &mut Env) {
        if self.pos < self.buf.len() {
            self.atapi_pio_block();
        } else if matches!(self.cmd, Cmd::AtapiRead { .. }) && self.left > 0 {
            self.atapi_read_chunk(env);
        } else {
            self.atapi_ok();
        }
    }

    fn atapi_ok(&mut self) {
        self.xfer = Xfer::Idle;
        self.cmd = Cmd::None;
        let d = self.cur();
        d.regs.nsector = (d.regs.nsector & !7) | 3; // I/O + C/D: status
        d.status = READY;
        self.raise_irq();
    }

    fn atapi_error(&mut self) {
        self.xfer = Xfer::Idle;
        self.cmd = Cmd::None;
        let d = self.cur();
        d.error = d.cd.sense.key << 4;
        d.regs.nsector = (d.regs.nsector & !7) | 3;
        d.status = ST_DRDY | ST_ERR;
        self.raise_irq();
    }
}
