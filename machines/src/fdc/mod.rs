//! Floppy disk controller: an Intel 82078-compatible FDC in PC AT / PS/2 mode (what QEMU's
//! `isa-fdc` models), ports 0x3F0-0x3F5 and 0x3F7, IRQ 6, ISA DMA channel 2, two drives
//! (`floppy0`, `floppy1`).
//!
//! Registers (offset from 0x3F0): 0 SRA and 1 SRB (PS/2 status, read), 2 DOR (drive select,
//! /RESET, DMA+IRQ gate, motors), 3 TDR, 4 MSR (read) / DSR (write: data rate, software reset),
//! 5 FIFO, 7 DIR (read: disk change line in bit 7) / CCR (write: data rate). 0x3F6 is not decoded:
//! it is the IDE device control register.
//!
//! Commands: SPECIFY, SENSE DRIVE STATUS, SENSE INTERRUPT STATUS, RECALIBRATE, SEEK (also
//! relative), READ DATA, READ DELETED DATA, WRITE DATA, WRITE DELETED DATA, READ TRACK, READ ID,
//! FORMAT TRACK, VERIFY, VERSION (0x90), CONFIGURE, LOCK/UNLOCK, PERPENDICULAR MODE, DUMPREG,
//! PART ID (0x41). Anything else is an invalid command (one result byte, ST0 = 0x80). The SCAN
//! commands, SAVE/RESTORE, POWERDOWN MODE and DRIVE SPECIFICATION are not implemented.
//!
//! Design decisions (documented because they differ from a cycle-accurate chip):
//! - Nothing is clocked. A command completes as soon as its last parameter byte arrives: seeks
//!   take no time, a DMA transfer moves all its sectors through [`Dma::transfer`] at once (if the
//!   channel is still masked, the controller waits in the execution phase and retries on every
//!   board poll), and the interrupt is raised right away. QEMU does the same.
//! - Implied seek: READ/WRITE/VERIFY move the head to the cylinder in the command even when
//!   CONFIGURE's EIS bit is off, as QEMU does (SeaBIOS depends on it: it never issues SEEK); the
//!   result's ST0 then has SE set, as after an implied seek on the real chip.
//! - The ID fields of every sector are the standard ones (C = cylinder, H = head, R = 1..n,
//!   N = 2): an image has no room for anything else. A command whose R or N does not exist on the
//!   track, or whose H differs from the head bit, ends with "no data" (ST1 ND); a track or head
//!   the medium does not have, a data rate that does not match the medium, FM mode, or no medium
//!   at all ends with "missing address mark" (ST1 MA) where a real drive would time out.
//!   FORMAT TRACK writes the filler byte into the sectors whose IDs fit the image's fixed
//!   geometry; deleted-data marks are not recorded (WRITE DELETED writes normal data, READ
//!   DELETED sees every sector as normal data: ST2 CM).
//! - End of a transfer: terminal count (the DMA count running out) ends it normally with C/H/R
//!   of the next sector (the 82078 table, multi-track included). Reaching EOT without terminal
//!   count, which always happens in non-DMA mode, ends it with ST0 AT + ST1 EN and C/H/R of the
//!   last sector moved (what Linux's floppy driver expects from pseudo-DMA).
//! - The interrupt line is gated by DOR bit 3 (DMA/IRQ enable), as on the real chip. It is
//!   cleared by the first result byte read, by SENSE INTERRUPT STATUS (after SEEK, RECALIBRATE
//!   and reset), or by a data byte access in non-DMA mode; in non-DMA execution it is raised
//!   again at the next board poll while a byte is ready, so each byte is an edge.
//! - Power-on: DOR = 0x0C (out of reset, DMA on), data rate 500 kb/s, like QEMU. Leaving reset
//!   (DOR bit 2 0 -> 1, or DSR bit 7) raises the interrupt; the next four SENSE INTERRUPT STATUS
//!   return ST0 0xC0-0xC3 (polling, "ready changed" for drives 0-3) unless another command comes
//!   first. CONFIGURE and PRETRK keep
//!   their values across a reset only when LOCKed. Motors are not simulated: a drive reads with
//!   its motor off.
//! - Disk change (DIR bit 7) is active at power-on, after an eject or insert and while the drive
//!   is empty; it clears when the head steps (SEEK/RECALIBRATE to another cylinder) with a medium
//!   inserted.

mod media;
#[cfg(test)]
mod tests;

pub use media::{drive_type_for, geometry_for_size, rate, DriveType, Geometry, Media, MediaError, SECTOR};

use std::path::Path;

use serde::{Deserialize, Serialize};
use vessel_core::bus::Width;
use vessel_core::vm::{BlockInfo, VmError};

use crate::device::{IoCtx, IoDevice, Region};

pub const BASE: u16 = 0x3F0;
pub const IRQ: u8 = 6;
pub const DMA_CHANNEL: usize = 2;

mod msr {
    pub const RQM: u8 = 0x80;
    pub const DIO: u8 = 0x40;
    pub const NDMA: u8 = 0x20;
    pub const CB: u8 = 0x10;
}

pub mod st0 {
    pub const INVALID: u8 = 0x80;
    pub const AT: u8 = 0x40;
    pub const SE: u8 = 0x20;
    pub const EC: u8 = 0x10;
    pub const RDYCHG: u8 = 0xC0;
}
pub mod st1 {
    pub const EN: u8 = 0x80;
    pub const DE: u8 = 0x20;
    pub const ND: u8 = 0x04;
    pub const NW: u8 = 0x02;
    pub const MA: u8 = 0x01;
}
pub mod st2 {
    pub const CM: u8 = 0x40;
    pub const WC: u8 = 0x10;
    pub const BC: u8 = 0x02;
}
pub mod st3 {
    pub const WP: u8 = 0x40;
    pub const RDY: u8 = 0x20;
    pub const T0: u8 = 0x10;
    pub const TS: u8 = 0x08;
}

/// CONFIGURE byte 2 bits.
mod config {
    pub const EFIFO: u8 = 0x20;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for a command or its parameter bytes.
    #[default]
    Command,
    /// Transferring data (non-DMA), or waiting for the DMA channel.
    Execution,
    /// Result bytes to read.
    Result,
    /// DOR bit 2 is 0.
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XferKind {
    Read,
    ReadDeleted,
    ReadTrack,
    Write,
    WriteDeleted,
    Verify,
    Format,
}

impl XferKind {
    fn writes(self) -> bool {
        matches!(self, XferKind::Write | XferKind::WriteDeleted | XferKind::Format)
    }
}

/// A transfer command in its execution phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xfer {
    pub kind: XferKind,
    pub drive: u8,
    /// Physical head (HDS), switched by multi-track.
    pub head: u8,
    /// ID field of the current sector.
    pub c: u8,
    pub h: u8,
    pub r: u8,
    pub n: u8,
    pub eot: u8,
    pub mt: bool,
    pub sk: bool,
    /// VERIFY with EC = 1 / READ TRACK / FORMAT: sectors still to do.
    pub count: Option<u8>,
    /// FORMAT filler byte.
    pub filler: u8,
    pub st2: u8,
    /// Bytes of the current sector moved (non-DMA).
    pub pos: usize,
    /// The command moved the head (implied seek): ST0 SE in the result.
    #[serde(default)]
    pub sought: bool,
}

/// Per-drive state that is not the medium.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveState {
    pub head: u8,
    /// Sector READ ID reports next.
    pub sector: u8,
    pub disk_changed: bool,
}

/// All controller registers (the serde state; media are not part of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdcState {
    pub dor: u8,
    pub tdr: u8,
    /// Data rate select (DSR/CCR bits 0-1).
    pub rate: u8,
    /// DSR bits 2-6 (precompensation, power down), kept for reads of nothing but DUMPREG.
    pub dsr: u8,
    pub phase: Phase,
    pub cmd: Vec<u8>,
    pub result: Vec<u8>,
    pub result_pos: usize,
    /// Current sector's data (non-DMA) or FORMAT IDs.
    pub buf: Vec<u8>,
    pub xfer: Option<Xfer>,
    /// Interrupt request (before the DOR gate).
    pub irq: bool,
    /// Raise the interrupt at the next poll (non-DMA: a byte is ready again / result phase).
    pub irq_deferred: bool,
    /// Execution phase waits for DMA channel 2 to be unmasked.
    pub dma_wait: bool,
    /// SENSE INTERRUPT STATUS still to report the reset polling for this many drives.
    pub reset_sensei: u8,
    /// ST0 of a finished SEEK/RECALIBRATE per drive, for SENSE INTERRUPT STATUS.
    pub seek_st0: [Option<u8>; 4],
    /// Present cylinder number per drive.
    pub pcn: [u8; 4],
    /// SPECIFY bytes: SRT/HUT, HLT/ND.
    pub specify: [u8; 2],
    pub config: u8,
    pub pretrk: u8,
    pub lock: bool,
    pub perpendicular: u8,
    /// EOT of the last transfer command (DUMPREG).
    pub last_eot: u8,
    pub drives: [DriveState; 2],
}

impl Default for FdcState {
    fn default() -> Self {
        FdcState {
            dor: 0x0C,
            tdr: 0,
            rate: rate::K500,
            dsr: 0,
            phase: Phase::Command,
            cmd: Vec::new(),
            result: Vec::new(),
            result_pos: 0,
            buf: Vec::new(),
            xfer: None,
            irq: false,
            irq_deferred: false,
            dma_wait: false,
            reset_sensei: 0,
            seek_st0: [None; 4],
            pcn: [0; 4],
            specify: [0; 2],
            config: config::EFIFO,
            pretrk: 0,
            lock: false,
            perpendicular: 0,
            last_eot: 0,
            drives: [DriveState { disk_changed: true, sector: 1, head: 0 }, DriveState { disk_changed: true, sector: 1, head: 0 }],
        }
    }
}

/// An installed drive.
pub struct Drive {
    pub dtype: DriveType,
    pub media: Option<Media>,
}

/// Result of a transfer command.
#[derive(Clone, Copy, Debug)]
struct End {
    st0: u8,
    st1: u8,
    st2: u8,
    c: u8,
    h: u8,
    r: u8,
    n: u8,
}

pub struct Fdc {
    pub st: FdcState,
    drives: [Option<Drive>; 2],
}

/// Parameter bytes (including the command byte) of a command, `None` = invalid.
fn command_len(b: u8) -> Option<usize> {
    Some(match b & 0x1F {
        0x02 | 0x05 | 0x06 | 0x09 | 0x0C | 0x16 => 9,
        0x0A => 2,
        0x0D => 6,
        _ => match b {
            0x03 => 3,
            0x04 | 0x07 | 0x12 => 2,
            0x08 | 0x0E | 0x10 | 0x14 | 0x94 | 0x18 => 1,
            0x0F | 0x8F | 0xCF => 3,
            0x13 => 4,
            _ => return None,
        },
    })
}

impl Default for Fdc {
    fn default() -> Self {
        Self::new()
    }
}

impl Fdc {
    /// A controller with no drives; add them with [`Fdc::attach`].
    pub fn new() -> Self {
        Fdc { st: FdcState::default(), drives: [None, None] }
    }

    /// Installs drive `unit` (0 or 1) with an optional medium. The drive type follows the medium
    /// (an empty drive is a 2.88M drive, QEMU's fallback).
    pub fn attach(&mut self, unit: usize, media: Option<Media>) {
        let dtype = media.as_ref().map(|m| drive_type_for(&m.geometry)).unwrap_or(DriveType::D288);
        self.drives[unit] = Some(Drive { dtype, media });
        self.st.drives[unit].disk_changed = true;
    }

    pub fn drive(&self, unit: usize) -> Option<&Drive> {
        self.drives.get(unit)?.as_ref()
    }

    /// CMOS byte 0x10 (drive 0 type in the high nibble).
    pub fn cmos_drive_types(&self) -> u8 {
        let t = |u: usize| self.drive(u).map_or(0, |d| d.dtype.cmos());
        (t(0) << 4) | t(1)
    }

    /// Number of installed drives (CMOS equipment byte).
    pub fn drive_count(&self) -> usize {
        self.drives.iter().filter(|d| d.is_some()).count()
    }

    /// Insert (`Some`) or eject (`None`) the medium of `unit`.
    pub fn set_media(&mut self, unit: usize, media: Option<Media>) -> Result<(), String> {
        let Some(d) = self.drives.get_mut(unit).and_then(|d| d.as_mut()) else {
            return Err(format!("no floppy drive {unit}"));
        };
        d.media = media;
        self.st.drives[unit].disk_changed = true;
        Ok(())
    }

    fn media(&self, drive: u8) -> Option<&Media> {
        self.drives.get(drive as usize)?.as_ref()?.media.as_ref()
    }

    fn dma_mode(&self) -> bool {
        self.st.specify[1] & 1 == 0
    }

    fn set_irq(&mut self) {
        self.st.irq = true;
        self.st.irq_deferred = false;
    }

    fn clear_irq(&mut self) {
        self.st.irq = false;
        self.st.irq_deferred = false;
    }

    // ---- registers --------------------------------------------------------------------------

    pub fn msr(&self) -> u8 {
        let busy = self.st.seek_st0.iter().enumerate().fold(0u8, |b, (i, s)| b | if s.is_some() { 1 << i } else { 0 });
        match self.st.phase {
            Phase::Reset => 0,
            Phase::Command => msr::RQM | if self.st.cmd.is_empty() { 0 } else { msr::CB } | busy,
            Phase::Result => msr::RQM | msr::DIO | msr::CB | busy,
            Phase::Execution => {
                let Some(x) = &self.st.xfer else { return msr::CB };
                if self.dma_mode() {
                    msr::CB
                } else if x.kind.writes() {
                    msr::RQM | msr::NDMA | msr::CB
                } else {
                    msr::RQM | msr::DIO | msr::NDMA | msr::CB
                }
            }
        }
    }

    fn read_reg(&mut self, ctx: &mut IoCtx, reg: u16) -> u8 {
        match reg {
            0 => {
                // PS/2 SRA: INTPEND, /DRV2, /TRK0, /WP (of the selected drive)
                let d = (self.st.dor & 1) as usize;
                let mut v = if self.st.irq { 0x80 } else { 0 };
                if self.drive(1).is_none() {
                    v |= 0x40;
                }
                if self.st.pcn[d] != 0 {
                    v |= 0x10;
                }
                if !self.write_protected(d as u8) {
                    v |= 0x02;
                }
                v
            }
            1 => {
                // PS/2 SRB: bits 7-6 set, drive select 0, motor enables 1/0
                let dor = self.st.dor;
                0xC0 | if dor & 1 != 0 { 0x20 } else { 0 } | ((dor >> 4) & 3)
            }
            2 => self.st.dor,
            3 => self.st.tdr,
            4 => self.msr(),
            5 => self.read_fifo(ctx),
            7 => {
                let d = (self.st.dor & 3) as usize;
                match self.drive(d) {
                    Some(dr) if dr.media.is_none() || self.st.drives[d].disk_changed => 0x80,
                    _ => 0,
                }
            }
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, ctx: &mut IoCtx, reg: u16, v: u8) {
        match reg {
            2 => {
                let old = self.st.dor;
                self.st.dor = v;
                if v & 4 == 0 {
                    if old & 4 != 0 || self.st.phase != Phase::Reset {
                        self.reset_controller();
                        self.st.phase = Phase::Reset;
                    }
                } else if old & 4 == 0 {
                    self.reset_controller();
                    self.reset_done();
                }
            }
            3 => self.st.tdr = v & 0x0F,
            4 => {
                self.st.rate = v & 3;
                self.st.dsr = v & 0x7C;
                if v & 0x80 != 0 && self.st.phase != Phase::Reset {
                    self.reset_controller();
                    self.reset_done();
                }
            }
            5 => self.write_fifo(ctx, v),
            7 => self.st.rate = v & 3,
            _ => {}
        }
    }

    /// Controller reset (DOR bit 2 low, DSR bit 7): back to the command phase, no interrupt.
    fn reset_controller(&mut self) {
        let s = &mut self.st;
        s.phase = Phase::Command;
        s.cmd.clear();
        s.result.clear();
        s.result_pos = 0;
        s.buf.clear();
        s.xfer = None;
        s.dma_wait = false;
        s.reset_sensei = 0;
        s.seek_st0 = [None; 4];
        s.pcn = [0; 4];
        s.irq = false;
        s.irq_deferred = false;
        if !s.lock {
            s.config = config::EFIFO;
            s.pretrk = 0;
        }
    }

    /// Leaving reset: polling reports "ready changed" for the four drives.
    fn reset_done(&mut self) {
        self.st.phase = Phase::Command;
        self.st.reset_sensei = 4;
        self.set_irq();
    }

    fn write_protected(&self, drive: u8) -> bool {
        self.media(drive).is_none_or(|m| m.read_only)
    }

    // ---- command phase ----------------------------------------------------------------------

    fn write_fifo(&mut self, ctx: &mut IoCtx, v: u8) {
        match self.st.phase {
            Phase::Command => {
                if self.st.cmd.is_empty() && command_len(v).is_none() {
                    tracing::debug!(cmd = format_args!("{v:#04x}"), "fdc: invalid command");
                    self.results(&[st0::INVALID]);
                    return;
                }
                if self.st.cmd.is_empty() && v != 0x08 {
                    // another command ends the reset polling reports (as QEMU; SeaBIOS reads
                    // only the first and then recalibrates)
                    self.st.reset_sensei = 0;
                }
                self.st.cmd.push(v);
                if self.st.cmd.len() == command_len(self.st.cmd[0]).unwrap_or(1) {
                    let cmd = std::mem::take(&mut self.st.cmd);
                    self.execute(ctx, &cmd);
                }
            }
            Phase::Execution => self.pio_write(v),
            Phase::Result | Phase::Reset => {}
        }
    }

    fn read_fifo(&mut self, _ctx: &mut IoCtx) -> u8 {
        match self.st.phase {
            Phase::Result => {
                let v = self.st.result.get(self.st.result_pos).copied().unwrap_or(0);
                if self.st.result_pos == 0 {
                    self.clear_irq();
                }
                self.st.result_pos += 1;
                if self.st.result_pos >= self.st.result.len() {
                    self.st.phase = Phase::Command;
                    self.st.result.clear();
                    self.st.result_pos = 0;
                }
                v
            }
            Phase::Execution => self.pio_read(),
            _ => 0,
        }
    }

    /// Enter the result phase with these bytes (no interrupt).
    fn results(&mut self, r: &[u8]) {
        self.st.result = r.to_vec();
        self.st.result_pos = 0;
        self.st.phase = Phase::Result;
    }

    fn execute(&mut self, ctx: &mut IoCtx, c: &[u8]) {
        tracing::trace!(cmd = ?c, "fdc: command");
        let ds = c.get(1).map_or(0, |b| b & 3);
        let hd = c.get(1).map_or(0, |b| (b >> 2) & 1);
        match c[0] {
            0x03 => {
                self.st.specify = [c[1], c[2]];
                self.st.phase = Phase::Command;
            }
            0x04 => {
                let mut v = ds | (hd << 2);
                if self.drive(ds as usize).is_some() {
                    self.st.drives[ds as usize].head = hd;
                    v |= st3::RDY | st3::TS;
                    if self.st.pcn[ds as usize] == 0 {
                        v |= st3::T0;
                    }
                }
                if self.write_protected(ds) {
                    v |= st3::WP;
                }
                self.results(&[v]);
            }
            0x07 => {
                let st0 = if self.drive(ds as usize).is_some() {
                    self.step_to(ds, 0);
                    st0::SE | ds
                } else {
                    // no TRK0 signal from a missing drive: equipment check
                    st0::AT | st0::SE | st0::EC | ds
                };
                self.st.seek_st0[ds as usize] = Some(st0);
                self.st.phase = Phase::Command;
                self.set_irq();
            }
            0x08 => self.sense_interrupt(),
            0x0F | 0x8F | 0xCF => {
                let cur = self.st.pcn[ds as usize];
                let target = match c[0] {
                    0x8F => cur.saturating_sub(c[2]),
                    0xCF => cur.saturating_add(c[2]),
                    _ => c[2],
                };
                self.step_to(ds, target);
                if (ds as usize) < 2 {
                    self.st.drives[ds as usize].head = hd;
                }
                self.st.seek_st0[ds as usize] = Some(st0::SE | (hd << 2) | ds);
                self.st.phase = Phase::Command;
                self.set_irq();
            }
            0x10 => self.results(&[0x90]),
            0x18 => self.results(&[0x41]),
            0x14 | 0x94 => {
                self.st.lock = c[0] & 0x80 != 0;
                self.results(&[(self.st.lock as u8) << 4]);
            }
            0x0E => {
                let s = &self.st;
                let r = [
                    s.pcn[0],
                    s.pcn[1],
                    s.pcn[2],
                    s.pcn[3],
                    s.specify[0],
                    s.specify[1],
                    s.last_eot,
                    ((s.lock as u8) << 7) | (s.perpendicular & 0x3F),
                    s.config,
                    s.pretrk,
                ];
                self.results(&r);
            }
            0x12 => {
                // OW (bit 7) set: D3-D0 update too; GAP/WGATE always
                let p = c[1];
                self.st.perpendicular =
                    if p & 0x80 != 0 { p & 0x3F } else { (self.st.perpendicular & 0x3C) | (p & 3) };
                self.st.phase = Phase::Command;
            }
            0x13 => {
                self.st.config = c[2];
                self.st.pretrk = c[3];
                self.st.phase = Phase::Command;
            }
            b if b & 0x1F == 0x0A => self.read_id(ds, hd, b & 0x40 != 0),
            b if b & 0x1F == 0x0D => self.start_format(ctx, c),
            _ => self.start_transfer(ctx, c),
        }
    }

    /// Step drive `ds` to cylinder `target`; stepping with a medium in clears disk change.
    fn step_to(&mut self, ds: u8, target: u8) {
        let d = ds as usize;
        if self.st.pcn[d] != target && d < 2 && self.media(ds).is_some() {
            self.st.drives[d].disk_changed = false;
        }
        self.st.pcn[d] = target;
    }

    fn sense_interrupt(&mut self) {
        if self.st.reset_sensei > 0 {
            let d = 4 - self.st.reset_sensei;
            self.st.reset_sensei -= 1;
            self.clear_irq();
            let r = [st0::RDYCHG | d, self.st.pcn[d as usize]];
            self.results(&r);
        } else if let Some(d) = self.st.seek_st0.iter().position(|s| s.is_some()) {
            let st0 = self.st.seek_st0[d].take().unwrap();
            self.clear_irq();
            let r = [st0, self.st.pcn[d]];
            self.results(&r);
        } else {
            self.results(&[st0::INVALID]);
        }
    }

    /// Why the medium in `drive` cannot be read with the current settings (ST1 bits).
    fn medium_error(&self, drive: u8, head: u8, mfm: bool) -> Option<u8> {
        let Some(m) = self.media(drive) else { return Some(st1::MA) };
        let g = &m.geometry;
        if !mfm || !g.rate_matches(self.st.rate) || head >= g.heads || self.st.pcn[drive as usize] >= g.tracks {
            return Some(st1::MA);
        }
        None
    }

    fn read_id(&mut self, ds: u8, hd: u8, mfm: bool) {
        let c = self.st.pcn[ds as usize];
        let d = ds as usize;
        let (st0, st1, r) = match self.medium_error(ds, hd, mfm) {
            Some(e) => (st0::AT | (hd << 2) | ds, e, 1),
            None => {
                let spt = self.media(ds).map_or(1, |m| m.geometry.sectors);
                let ds_state = &mut self.st.drives[d];
                ds_state.head = hd;
                let r = ds_state.sector.clamp(1, spt);
                ds_state.sector = r % spt + 1;
                ((hd << 2) | ds, 0, r)
            }
        };
        self.results(&[st0, st1, 0, c, hd, r, 2]);
        self.set_irq();
    }

    // ---- transfers --------------------------------------------------------------------------

    fn start_transfer(&mut self, ctx: &mut IoCtx, c: &[u8]) {
        let kind = match c[0] & 0x1F {
            0x06 => XferKind::Read,
            0x0C => XferKind::ReadDeleted,
            0x02 => XferKind::ReadTrack,
            0x05 => XferKind::Write,
            0x09 => XferKind::WriteDeleted,
            _ => XferKind::Verify,
        };
        let ds = c[1] & 3;
        let hd = (c[1] >> 2) & 1;
        let mfm = c[0] & 0x40 != 0;
        let mt = c[0] & 0x80 != 0 && kind != XferKind::ReadTrack;
        // VERIFY with EC = 1: the sector count is in the DTL byte
        let count = if kind == XferKind::Verify && c[1] & 0x80 != 0 { Some(c[8]) } else { None };
        let mut x = Xfer {
            kind,
            drive: ds,
            head: hd,
            c: c[2],
            h: c[3],
            r: if kind == XferKind::ReadTrack { 1 } else { c[4] },
            n: c[5],
            eot: c[6],
            mt,
            sk: c[0] & 0x20 != 0,
            count,
            filler: 0,
            st2: 0,
            pos: 0,
            sought: false,
        };
        self.st.last_eot = c[6];
        if (ds as usize) < 2 {
            self.st.drives[ds as usize].head = hd;
        }
        // implied seek (see the module doc)
        if self.drive(ds as usize).is_some() && self.st.pcn[ds as usize] != x.c {
            self.step_to(ds, x.c);
            x.sought = true;
        }
        if let Some(e) = self.medium_error(ds, hd, mfm) {
            return self.finish(x.end(st0::AT, e), false);
        }
        if kind.writes() && self.write_protected(ds) {
            return self.finish(x.end(st0::AT, st1::NW), false);
        }
        self.st.xfer = Some(x);
        self.st.phase = Phase::Execution;
        if kind == XferKind::Verify {
            self.run_verify();
        } else if self.dma_mode() {
            self.st.dma_wait = true;
            self.try_dma(ctx);
        } else {
            self.pio_begin_sector(false);
        }
    }

    fn start_format(&mut self, ctx: &mut IoCtx, c: &[u8]) {
        let ds = c[1] & 3;
        let hd = (c[1] >> 2) & 1;
        let x = Xfer {
            kind: XferKind::Format,
            drive: ds,
            head: hd,
            c: self.st.pcn[ds as usize],
            h: hd,
            r: 1,
            n: c[2],
            eot: c[3],
            mt: false,
            sk: false,
            count: Some(c[3]),
            filler: c[5],
            st2: 0,
            pos: 0,
            sought: false,
        };
        if let Some(e) = self.medium_error(ds, hd, c[0] & 0x40 != 0) {
            return self.finish(x.end(st0::AT, e), false);
        }
        if self.write_protected(ds) {
            return self.finish(x.end(st0::AT, st1::NW), false);
        }
        if c[3] == 0 {
            return self.finish(x.end(0, 0), false);
        }
        self.st.xfer = Some(x);
        self.st.phase = Phase::Execution;
        self.st.buf.clear();
        if self.dma_mode() {
            self.st.dma_wait = true;
            self.try_dma(ctx);
        } else {
            self.st.irq_deferred = true;
        }
    }

    /// Image offset of the current sector, or the ST1/ST2 bits why it cannot be found.
    fn locate(&self, x: &Xfer) -> Result<u64, (u8, u8)> {
        let Some(m) = self.media(x.drive) else { return Err((st1::MA, 0)) };
        let g = &m.geometry;
        let cyl = self.st.pcn[x.drive as usize];
        if cyl >= g.tracks || x.head >= g.heads {
            return Err((st1::MA, 0));
        }
        if x.c != cyl {
            return Err((st1::ND, if x.c == 0xFF { st2::BC } else { st2::WC }));
        }
        if x.h != x.head || x.r == 0 || x.r > g.sectors || x.n != 2 {
            return Err((st1::ND, 0));
        }
        Ok(g.offset(cyl, x.head, x.r))
    }

    /// Reads the current sector into `buf`.
    fn load_sector(&mut self, x: &Xfer, buf: &mut [u8]) -> Result<(), (u8, u8)> {
        let off = self.locate(x)?;
        let m = self.media(x.drive).unwrap();
        m.image.read_at(buf, off).map_err(|e| {
            tracing::warn!("floppy read: {e}");
            (st1::DE, 0)
        })
    }

    fn store_sector(&mut self, x: &Xfer, buf: &[u8]) -> Result<(), (u8, u8)> {
        let off = self.locate(x)?;
        let m = self.media(x.drive).unwrap();
        m.image.write_at(buf, off).map_err(|e| {
            tracing::warn!("floppy write: {e}");
            (st1::DE, 0)
        })
    }

    /// After a sector: `tc` = terminal count. Returns the end of the command, or `None` to go
    /// on with the next sector (already selected in `x`).
    fn advance(&self, x: &mut Xfer, tc: bool) -> Option<End> {
        let heads = self.media(x.drive).map_or(1, |m| m.geometry.heads);
        if let Some(n) = x.count.as_mut() {
            *n = n.saturating_sub(1);
        }
        let at_eot = x.r >= x.eot;
        let normal = |x: &Xfer| {
            // normal termination: C/H/R of the next sector (82078 result table)
            let (c, h, r) = if !at_eot {
                (x.c, x.h, x.r.wrapping_add(1))
            } else if x.mt && x.h & 1 == 0 {
                (x.c, x.h | 1, 1)
            } else if x.mt {
                (x.c.wrapping_add(1), x.h & !1, 1)
            } else {
                (x.c.wrapping_add(1), x.h, 1)
            };
            let se = if x.sought { st0::SE } else { 0 };
            Some(End { st0: se | (x.head << 2) | x.drive, st1: 0, st2: x.st2, c, h, r, n: x.n })
        };
        if tc || x.count == Some(0) || (x.kind == XferKind::ReadDeleted && !x.sk) {
            return normal(x);
        }
        if at_eot {
            if x.mt && x.head == 0 && heads > 1 {
                x.head = 1;
                x.h |= 1;
                x.r = 1;
                return None;
            }
            if x.kind == XferKind::Verify {
                return normal(x);
            }
            return Some(x.end(st0::AT, st1::EN));
        }
        x.r += 1;
        None
    }

    fn finish(&mut self, e: End, deferred: bool) {
        if let Some(x) = &self.st.xfer {
            if (x.drive as usize) < 2 {
                self.st.drives[x.drive as usize].sector = e.r;
            }
        }
        self.st.xfer = None;
        self.st.dma_wait = false;
        self.st.buf.clear();
        self.results(&[e.st0, e.st1, e.st2, e.c, e.h, e.r, e.n]);
        if deferred {
            self.st.irq = false;
            self.st.irq_deferred = true;
        } else {
            self.set_irq();
        }
    }

    fn run_verify(&mut self) {
        let mut x = self.st.xfer.clone().unwrap();
        let mut buf = vec![0u8; SECTOR];
        loop {
            if let Err((s1, s2)) = self.load_sector(&x, &mut buf) {
                x.st2 |= s2;
                return self.finish(x.end(st0::AT, s1), false);
            }
            if let Some(e) = self.advance(&mut x, false) {
                return self.finish(e, false);
            }
        }
    }

    /// Runs a DMA transfer if channel 2 is ready (else the controller keeps waiting).
    fn try_dma(&mut self, ctx: &mut IoCtx) {
        if !self.st.dma_wait || !ctx.dma.channel_ready(DMA_CHANNEL) {
            return;
        }
        self.st.dma_wait = false;
        let mut x = self.st.xfer.clone().unwrap();
        if x.kind == XferKind::Format {
            return self.dma_format(ctx, x);
        }
        let mut buf = vec![0u8; SECTOR];
        loop {
            let before = ctx.dma.remaining(DMA_CHANNEL);
            if before == 0 {
                // channel masked mid-command (e.g. terminal count on an earlier sector)
                return self.finish(x.end(st0::AT, st1::EN), false);
            }
            let res = if x.kind.writes() {
                buf.iter_mut().for_each(|b| *b = 0);
                ctx.dma.transfer(DMA_CHANNEL, ctx.ram, &mut buf);
                self.store_sector(&x, &buf)
            } else {
                match self.load_sector(&x, &mut buf) {
                    Ok(()) => {
                        if x.kind == XferKind::ReadDeleted {
                            x.st2 |= st2::CM;
                        }
                        if x.kind == XferKind::ReadDeleted && x.sk {
                            Ok(())
                        } else {
                            ctx.dma.transfer(DMA_CHANNEL, ctx.ram, &mut buf);
                            Ok(())
                        }
                    }
                    Err(e) => Err(e),
                }
            };
            if let Err((s1, s2)) = res {
                x.st2 |= s2;
                return self.finish(x.end(st0::AT, s1), false);
            }
            let tc = before <= SECTOR;
            if let Some(e) = self.advance(&mut x, tc) {
                return self.finish(e, false);
            }
        }
    }

    fn dma_format(&mut self, ctx: &mut IoCtx, x: Xfer) {
        let mut ids = vec![0u8; 4 * x.eot as usize];
        let n = ctx.dma.transfer(DMA_CHANNEL, ctx.ram, &mut ids);
        ids.truncate(n - n % 4);
        self.st.buf = ids;
        self.format_ids(x);
    }

    /// FORMAT TRACK with all IDs in `buf`: fill the sectors that fit the image.
    fn format_ids(&mut self, mut x: Xfer) {
        let ids = std::mem::take(&mut self.st.buf);
        let fill = vec![x.filler; SECTOR];
        for id in ids.chunks_exact(4) {
            x.c = id[0];
            x.h = id[1];
            x.r = id[2];
            x.n = id[3];
            // a raw image has fixed IDs: write the sector that has this ID, if any
            let mut probe = x.clone();
            probe.c = self.st.pcn[x.drive as usize];
            let on_track = id[0] == probe.c && id[1] & 1 == x.head && id[3] == 2;
            if on_track {
                probe.h = x.head;
                if let Err((s1, _)) = self.store_sector(&probe, &fill) {
                    if s1 == st1::DE {
                        return self.finish(x.end(st0::AT, st1::DE), false);
                    }
                }
            }
        }
        let e = x.end(0, 0);
        self.finish(e, false);
    }

    /// Non-DMA: load (reads) or prepare (writes) the current sector and signal a ready byte.
    fn pio_begin_sector(&mut self, deferred: bool) {
        let x = self.st.xfer.clone().unwrap();
        let mut buf = vec![0u8; SECTOR];
        if !x.kind.writes() {
            if let Err((s1, s2)) = self.load_sector(&x, &mut buf) {
                let mut x = x;
                x.st2 |= s2;
                return self.finish(x.end(st0::AT, s1), deferred);
            }
        } else if let Err((s1, s2)) = self.locate(&x) {
            let mut x = x;
            x.st2 |= s2;
            return self.finish(x.end(st0::AT, s1), deferred);
        }
        self.st.buf = buf;
        if let Some(x) = self.st.xfer.as_mut() {
            x.pos = 0;
        }
        if deferred {
            self.st.irq = false;
            self.st.irq_deferred = true;
        } else {
            self.set_irq();
        }
    }

    fn pio_read(&mut self) -> u8 {
        let Some(mut x) = self.st.xfer.clone() else { return 0 };
        if self.dma_mode() || x.kind.writes() {
            return 0;
        }
        let v = self.st.buf.get(x.pos).copied().unwrap_or(0);
        self.clear_irq();
        x.pos += 1;
        if x.pos < SECTOR {
            self.st.xfer = Some(x);
            self.st.irq_deferred = true;
            return v;
        }
        if x.kind == XferKind::ReadDeleted {
            x.st2 |= st2::CM;
        }
        match self.advance(&mut x, false) {
            Some(e) => {
                self.st.xfer = Some(x);
                self.finish(e, true);
            }
            None => {
                self.st.xfer = Some(x);
                self.pio_begin_sector(true);
            }
        }
        v
    }

    fn pio_write(&mut self, v: u8) {
        let Some(mut x) = self.st.xfer.clone() else { return };
        if self.dma_mode() || !x.kind.writes() {
            return;
        }
        self.clear_irq();
        if x.kind == XferKind::Format {
            self.st.buf.push(v);
            if self.st.buf.len() >= 4 * x.eot as usize {
                return self.format_ids(x);
            }
            self.st.irq_deferred = true;
            return;
        }
        if let Some(b) = self.st.buf.get_mut(x.pos) {
            *b = v;
        }
        x.pos += 1;
        if x.pos < SECTOR {
            self.st.xfer = Some(x);
            self.st.irq_deferred = true;
            return;
        }
        let buf = std::mem::take(&mut self.st.buf);
        if let Err((s1, s2)) = self.store_sector(&x, &buf) {
            x.st2 |= s2;
            return self.finish(x.end(st0::AT, s1), true);
        }
        match self.advance(&mut x, false) {
            Some(e) => {
                self.st.xfer = Some(x);
                self.finish(e, true);
            }
            None => {
                self.st.xfer = Some(x);
                self.pio_begin_sector(true);
            }
        }
    }

    fn unit_of(device: &str) -> Option<usize> {
        match device {
            "floppy0" => Some(0),
            "floppy1" => Some(1),
            _ => None,
        }
    }
}

impl Xfer {
    /// Abnormal or early end at the current sector.
    fn end(&self, st0: u8, st1: u8) -> End {
        let se = if self.sought { st0::SE } else { 0 };
        End { st0: se | st0 | (self.head << 2) | self.drive, st1, st2: self.st2, c: self.c, h: self.h, r: self.r, n: self.n }
    }
}

impl IoDevice for Fdc {
    fn name(&self) -> &'static str {
        "isa-fdc"
    }

    fn legacy_io(&self) -> Vec<(u16, u16)> {
        vec![(BASE, 6), (BASE + 7, 1)]
    }

    fn io_read(&mut self, ctx: &mut IoCtx, _region: Region, port: u16, _width: Width) -> u32 {
        self.read_reg(ctx, port - BASE) as u32
    }

    fn io_write(&mut self, ctx: &mut IoCtx, _region: Region, port: u16, _width: Width, value: u32) {
        self.write_reg(ctx, port - BASE, value as u8);
    }

    fn isa_irq_levels(&self) -> u16 {
        if self.st.irq && self.st.dor & 0x08 != 0 { 1 << IRQ } else { 0 }
    }

    fn poll(&mut self, ctx: &mut IoCtx) {
        if self.st.irq_deferred {
            self.st.irq_deferred = false;
            self.st.irq = true;
        }
        if self.st.dma_wait {
            self.try_dma(ctx);
        }
    }

    fn reset(&mut self) {
        let drives = self.st.drives.clone();
        self.st = FdcState { drives, ..FdcState::default() };
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn drives(&self) -> Vec<BlockInfo> {
        (0..2)
            .filter_map(|u| {
                let d = self.drive(u)?;
                Some(BlockInfo {
                    device: format!("floppy{u}"),
                    removable: true,
                    file: d.media.as_ref().map(|m| m.path.clone()),
                    format: d.media.as_ref().map(|m| m.format.clone()),
                    read_only: d.media.as_ref().is_some_and(|m| m.read_only),
                })
            })
            .collect()
    }

    fn disks(&self) -> Vec<vessel_core::vm::VmDisk> {
        (0..2)
            .filter_map(|u| {
                let m = self.drive(u)?.media.as_ref()?;
                Some(vessel_core::vm::VmDisk { device: format!("floppy{u}"), path: m.path.clone(), image: m.image.clone() })
            })
            .collect()
    }

    fn change_media(&mut self, device: &str, path: Option<&Path>) -> Option<Result<(), VmError>> {
        let unit = Self::unit_of(device)?;
        self.drive(unit)?;
        let media = match path {
            Some(p) => match Media::open(p, None, false) {
                Ok(m) => Some(m),
                Err(e) => return Some(Err(VmError::Failed(e.to_string()))),
            },
            None => None,
        };
        Some(self.set_media(unit, media).map_err(VmError::Failed))
    }

    fn save_state(&self) -> Option<Vec<u8>> {
        ron::to_string(&self.st).ok().map(String::into_bytes)
    }

    fn restore_state(&mut self, data: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(data).map_err(|e| format!("floppy state: {e}"))?;
        self.st = ron::from_str(text).map_err(|e| format!("floppy state: {e}"))?;
        Ok(())
    }
}
