//! PIIX3 IDE (PCI 00:01.1, 8086:7010, class 0101h prog-if 80h), as on QEMU's `pc` machine: two
//! legacy channels (0x1F0-0x1F7 + 0x3F6 on IRQ 14, 0x170-0x177 + 0x376 on IRQ 15), bus-master
//! DMA in BAR 4 (16 ports: 8 per channel), IDETIM/SIDETIM timing registers (0x40-0x4F) writable.
//! Drives: ATA hard disks (`ata.rs`) and ATAPI CD-ROMs (`atapi.rs`) on images of the block
//! layer; one channel's protocol is `channel.rs`, the bus master `bmdma.rs`.
//!
//! Disk I/O never blocks the CPU thread: reads, writes and flushes run on an I/O worker thread
//! (`worker.rs`, which documents the protocol and why save/restore stays consistent). The drive
//! is BSY while its request is out; the completion is picked up in [`IoDevice::poll`], on status
//! reads, and in [`IoDevice::wait_io`] while the CPU is halted waiting for it.
//!
//! State: the channels' registers, transfer buffers and drive settings are a plain serde struct
//! (`save_state`/`restore_state`, RON); disk *contents* are not part of it. Saving drains the
//! worker first. `flush` (machine stop) drains and flushes every writable image.
//!
//! Drive names are QEMU's: `ide0-hd0`, `ide0-hd1`, `ide1-cd0`, ... (bus = channel, unit = master
//! 0 / slave 1); index `n` of `-drive index=n` is channel `n / 2`, unit `n % 2`.

pub mod ata;
pub mod atapi;
pub mod bmdma;
pub mod channel;
pub mod worker;

#[cfg(test)]
mod tests;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vessel_core::block::{open_image, BlockDevice};
use vessel_core::bus::Width;
use vessel_core::vm::{BlockInfo, VmError};

use crate::device::{IoCtx, IoDevice, Region};
use crate::pci::{BarKind, PciConfig, PciDevice};
use ata::{Geometry, SECTOR};
use channel::{Channel, Env, Kind, SavedIo};
use worker::IoWorker;

/// An image in a drive.
#[derive(Clone)]
pub struct Medium {
    pub dev: Arc<dyn BlockDevice>,
    pub path: PathBuf,
    /// Format name for `info block` (`raw`, `qcow2`, ...).
    pub format: String,
    pub read_only: bool,
    /// Writes go to a temporary overlay (`snapshot=on`).
    pub snapshot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IdeError {
    #[error("IDE index {0} does not exist (0..=3: ide0 master, ide0 slave, ide1 master, ide1 slave)")]
    BadIndex(usize),
    #[error("IDE index {0} is already in use")]
    InUse(usize),
    #[error("{0}: an IDE hard disk image must be at least 512 bytes")]
    TooSmall(PathBuf),
    #[error("{0}: IDE hard disks cannot be read-only (use snapshot=on to keep the image unchanged)")]
    ReadOnlyDisk(PathBuf),
}

pub const DISK_MODEL: &str = "QEMU HARDDISK";
pub const CD_MODEL: &str = "QEMU DVD-ROM";

pub struct PiixIde {
    pub config: PciConfig,
    chans: [Channel; 2],
    worker: IoWorker,
}

/// The saved device state.
#[derive(Serialize, Deserialize)]
struct IdeState {
    chans: [Channel; 2],
}

fn device_name(index: usize, kind: Kind) -> String {
    let k = if kind == Kind::Cdrom { "cd" } else { "hd" };
    format!("ide{}-{k}{}", index / 2, index % 2)
}

impl Default for PiixIde {
    fn default() -> Self {
        Self::new()
    }
}

impl PiixIde {
    pub fn new() -> Self {
        let mut config = PciConfig::new(0x8086, 0x7010, 0x01_01_80, 0x00);
        config.add_bar(4, BarKind::Io, 16);
        config.set_u16(crate::pci::STATUS, 0x0280); // medium DEVSEL, fast back-to-back
        for off in (0x40..0x50).step_by(4) {
            config.set_writable(off, 4, 0xFFFF_FFFF); // IDETIM, SIDETIM (and PIIX4's UDMA regs)
        }
        PiixIde { config, chans: [Channel::new(0), Channel::new(1)], worker: IoWorker::new() }
    }

    fn slot(&mut self, index: usize) -> Result<(&mut Channel, usize), IdeError> {
        if index > 3 {
            return Err(IdeError::BadIndex(index));
        }
        let ch = &mut self.chans[index / 2];
        if ch.drives[index % 2].kind != Kind::None {
            return Err(IdeError::InUse(index));
        }
        Ok((ch, index % 2))
    }

    /// Attach a hard disk at `index` (0..=3). Returns the geometry (for the CMOS).
    pub fn attach_disk(&mut self, index: usize, medium: Medium) -> Result<Geometry, IdeError> {
        let total = medium.dev.size() / SECTOR as u64;
        if total == 0 {
            return Err(IdeError::TooSmall(medium.path));
        }
        if medium.read_only {
            return Err(IdeError::ReadOnlyDisk(medium.path));
        }
        let mut mbr = [0u8; 512];
        if let Err(e) = medium.dev.read_at(&mut mbr, 0) {
            tracing::warn!(error = %e, "cannot read the MBR for the geometry guess");
        }
        let geo = ata::guess_geometry(total, &mbr);
        let (ch, unit) = self.slot(index)?;
        let d = &mut ch.drives[unit];
        d.kind = Kind::Disk;
        d.geometry = Some(geo);
        d.serial = format!("QM{:05}", index + 1);
        d.model = DISK_MODEL.into();
        ch.media[unit] = Some(medium);
        ch.reset();
        Ok(geo)
    }

    /// Attach a CD-ROM drive at `index`, with a medium or empty.
    pub fn attach_cdrom(&mut self, index: usize, medium: Option<Medium>) -> Result<(), IdeError> {
        let (ch, unit) = self.slot(index)?;
        let d = &mut ch.drives[unit];
        d.kind = Kind::Cdrom;
        d.serial = format!("QM{:05}", index + 1);
        d.model = CD_MODEL.into();
        d.cd.tray_open = false;
        ch.media[unit] = medium;
        ch.reset();
        Ok(())
    }

    /// Geometry of the hard disks at indexes 0..=3 (CMOS setup).
    pub fn disk_geometries(&self) -> [Option<Geometry>; 4] {
        std::array::from_fn(|i| {
            let d = &self.chans[i / 2].drives[i % 2];
            if d.kind == Kind::Disk { d.geometry } else { None }
        })
    }

    /// Deliver finished I/O to the channels.
    fn pump(&mut self, ram: &mut [u8]) {
        while let Some(c) = self.worker.take() {
            let ch = &mut self.chans[c.chan as usize];
            if c.generation != ch.generation {
                continue; // overtaken by a reset
            }
            ch.complete(c, &mut Env { worker: &self.worker, ram });
        }
        for ch in &mut self.chans {
            if ch.done.is_some() {
                ch.apply_saved(&mut Env { worker: &self.worker, ram });
            }
        }
    }

    fn legacy_channel(port: u16) -> (usize, u16) {
        match port {
            0x1F0..=0x1F7 => (0, port - 0x1F0),
            0x3F6 => (0, 8),
            0x170..=0x177 => (1, port - 0x170),
            _ => (1, 8),
        }
    }

    fn io_read_inner(&mut self, ctx: &mut IoCtx, region: Region, port: u16, width: Width) -> u32 {
        match region {
            Region::Legacy => {
                let (c, reg) = Self::legacy_channel(port);
                if reg == 0 {
                    let worker = &self.worker;
                    return self.chans[c].read_data(width, &mut Env { worker, ram: ctx.ram });
                }
                if reg == 7 || reg == 8 {
                    self.pump(ctx.ram);
                }
                let ch = &mut self.chans[c];
                let mut v = 0u32;
                for i in 0..width as u16 {
                    let r = reg + i;
                    let b = match r {
                        1..=7 => ch.read_reg(r),
                        8 => ch.alt_status(),
                        _ => 0xFF,
                    };
                    v |= (b as u32) << (8 * i);
                }
                v
            }
            Region::Bar(4) => {
                let mut v = 0u32;
                for i in 0..width as u16 {
                    let o = port + i;
                    let b = self.chans[(o as usize / 8) & 1].read_bm(o % 8);
                    v |= (b as u32) << (8 * i);
                }
                v
            }
            _ => crate::device::all_ones(width) as u32,
        }
    }

    fn io_write_inner(&mut self, ctx: &mut IoCtx, region: Region, port: u16, width: Width, value: u32) {
        let worker = &self.worker;
        let mut env = Env { worker, ram: ctx.ram };
        match region {
            Region::Legacy => {
                let (c, reg) = Self::legacy_channel(port);
                let ch = &mut self.chans[c];
                match reg {
                    0 => ch.write_data(width, value, &mut env),
                    8 => ch.write_ctrl(value as u8),
                    _ => {
                        for i in 0..width as u16 {
                            if reg + i <= 7 {
                                ch.write_reg(reg + i, (value >> (8 * i)) as u8, &mut env);
                            }
                        }
                    }
                }
            }
            Region::Bar(4) => {
                for i in 0..width as u16 {
                    let o = port + i;
                    self.chans[(o as usize / 8) & 1].write_bm(o % 8, (value >> (8 * i)) as u8, &mut env);
                }
            }
            _ => {}
        }
    }


    fn find_drive(&self, device: &str) -> Option<(usize, usize)> {
        (0..4).find_map(|i| {
            let d = &self.chans[i / 2].drives[i % 2];
            (d.kind != Kind::None && device_name(i, d.kind) == device).then_some((i / 2, i % 2))
        })
    }
}

impl IoDevice for PiixIde {
    fn name(&self) -> &'static str {
        "piix3-ide"
    }

    fn legacy_io(&self) -> Vec<(u16, u16)> {
        vec![(0x1F0, 8), (0x3F6, 1), (0x170, 8), (0x376, 1)]
    }

    fn io_read(&mut self, ctx: &mut IoCtx, region: Region, port: u16, width: Width) -> u32 {
        let v = self.io_read_inner(ctx, region, port, width);
        tracing::trace!(?region, port, width, v, irq = self.isa_irq_levels(), "IDE read");
        v
    }

    fn io_write(&mut self, ctx: &mut IoCtx, region: Region, port: u16, width: Width, value: u32) {
        self.io_write_inner(ctx, region, port, width, value);
        tracing::trace!(?region, port, width, value, irq = self.isa_irq_levels(), "IDE write");
    }

    fn isa_irq_levels(&self) -> u16 {
        (self.chans[0].irq_level() as u16) << 14 | (self.chans[1].irq_level() as u16) << 15
    }

    fn poll(&mut self, ctx: &mut IoCtx) {
        if self.worker.outstanding() > 0 || self.chans.iter().any(|c| c.done.is_some()) {
            self.pump(ctx.ram);
            tracing::trace!(irq = self.isa_irq_levels(), "IDE poll delivered I/O");
        }
    }

    fn wait_io(&mut self, max: Duration) -> bool {
        self.worker.wait(max)
    }

    fn flush(&mut self) {
        self.worker.drain();
        for ch in &self.chans {
            for m in ch.media.iter().flatten() {
                if !m.read_only {
                    if let Err(e) = m.dev.flush() {
                        tracing::error!(error = %e, "flushing a disk image failed");
                    }
                }
            }
        }
    }

    fn reset(&mut self) {
        for ch in &mut self.chans {
            ch.reset();
            for d in &mut ch.drives {
                d.cd.sense = Default::default();
                d.cd.locked = false;
            }
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn disks(&self) -> Vec<vessel_core::vm::VmDisk> {
        let mut v = Vec::new();
        for i in 0..4 {
            let ch = &self.chans[i / 2];
            if let Some(m) = ch.media[i % 2].as_ref() {
                v.push(vessel_core::vm::VmDisk {
                    device: device_name(i, ch.drives[i % 2].kind),
                    path: m.path.clone(),
                    image: m.dev.clone(),
                });
            }
        }
        v
    }

    fn drives(&self) -> Vec<BlockInfo> {
        let mut v = Vec::new();
        for i in 0..4 {
            let ch = &self.chans[i / 2];
            let d = &ch.drives[i % 2];
            if d.kind == Kind::None {
                continue;
            }
            let m = ch.media[i % 2].as_ref();
            v.push(BlockInfo {
                device: device_name(i, d.kind),
                removable: d.kind == Kind::Cdrom,
                file: m.map(|m| m.path.clone()),
                format: m.map(|m| m.format.clone()),
                read_only: m.is_none_or(|m| m.read_only),
            });
        }
        v
    }

    fn change_media(&mut self, device: &str, path: Option<&Path>) -> Option<Result<(), VmError>> {
        let (c, u) = self.find_drive(device)?;
        let ch = &mut self.chans[c];
        if ch.drives[u].kind != Kind::Cdrom {
            return Some(Err(VmError::Failed(format!("{device} is not a removable drive"))));
        }
        let cd = &mut ch.drives[u].cd;
        if cd.locked {
            // the guest holds the tray shut: ask it to let go (media event), as QEMU does
            cd.event_eject_request = true;
            return Some(Err(VmError::Failed(format!("device {device} is locked by the guest"))));
        }
        Some(match path {
            None => {
                ch.media[u] = None;
                ch.drives[u].cd.media_removed();
                Ok(())
            }
            Some(p) => match open_image(p, None, true) {
                Ok(dev) => {
                    let format = vessel_core::block::probe_format(p).map(|f| f.name().to_string()).unwrap_or_else(|_| "raw".into());
                    ch.media[u] = Some(Medium { dev, path: p.to_owned(), format, read_only: true, snapshot: false });
                    ch.drives[u].cd.media_inserted();
                    Ok(())
                }
                Err(e) => Err(VmError::Failed(e.to_string())),
            },
        })
    }

    fn save_state(&self) -> Option<Vec<u8>> {
        // every request out completes first; its result is saved with the channel
        self.worker.drain();
        let mut chans = [Channel::new(0), Channel::new(1)];
        for (i, ch) in self.chans.iter().enumerate() {
            let text = ron::to_string(ch).ok()?;
            chans[i] = ron::from_str(&text).ok()?;
        }
        self.worker.peek_stash(|stash| {
            for c in stash {
                let ch = &mut chans[c.chan as usize];
                if c.generation == ch.generation {
                    ch.done = Some(SavedIo { buf: c.buf.clone(), result: c.result.clone() });
                }
            }
        });
        ron::to_string(&IdeState { chans }).ok().map(String::into_bytes)
    }

    fn restore_state(&mut self, data: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(data).map_err(|e| format!("IDE state: {e}"))?;
        let st: IdeState = ron::from_str(text).map_err(|e| format!("IDE state: {e}"))?;
        for (i, (new, old)) in st.chans.iter().zip(&self.chans).enumerate() {
            for u in 0..2 {
                if new.drives[u].kind != old.drives[u].kind {
                    return Err(format!(
                        "IDE state has a {:?} drive at ide{i} unit {u}, this machine a {:?}",
                        new.drives[u].kind, old.drives[u].kind
                    ));
                }
            }
        }
        self.worker.drain();
        self.worker.discard_stash();
        for (new, old) in st.chans.into_iter().zip(self.chans.iter_mut()) {
            let media = std::mem::take(&mut old.media);
            *old = new;
            old.media = media;
        }
        Ok(())
    }
}

impl PciDevice for PiixIde {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}
