//! The VGA as a PCI function, as QEMU places it: Cirrus GD5446 (1013:00B8, `-vga cirrus`) with
//! BAR 0 = 32 MiB linear framebuffer window, BAR 1 = 4 KiB register MMIO; or the "std" VGA
//! (1234:1111, `-vga std`) with BAR 0 = 16 MiB framebuffer, BAR 2 = 4 KiB MMIO (VGA ports at
//! 0x400, DISPI registers at 0x500). Both decode the legacy VGA ports and the 0xA0000 window, and
//! carry their VGA BIOS (SeaVGABIOS) in the expansion ROM BAR, where SeaBIOS finds and runs it.

use std::any::Any;

use vessel_core::bus::Width;
use vessel_core::display::Frame;

use super::bochs::{self, Dispi};
use super::cirrus::{self, CirrusState};
use super::{Extension, Vga};
use crate::device::{IoCtx, IoDevice, Region};
use crate::pci::{BarKind, PciConfig, PciDevice};

/// Which adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgaModel {
    Cirrus,
    Std,
}

pub struct PciVga {
    pub config: PciConfig,
    pub vga: Vga,
    pub model: VgaModel,
    rom: Vec<u8>,
    /// Virtual time of the latest access or poll (drives cursor blink in [`IoDevice::display`]).
    now_ns: u64,
}

#[derive(serde::Serialize)]
struct SavedVga<'a> {
    regs: &'a super::VgaRegs,
    latch: u32,
    ext: &'a Extension,
}

#[derive(serde::Deserialize)]
struct OwnedVga {
    regs: super::VgaRegs,
    latch: u32,
    ext: Extension,
}

const CIRRUS_VRAM: usize = 4 << 20;
const STD_VRAM: usize = 16 << 20;

fn rom_bar_size(len: usize) -> u32 {
    (len.max(2048) as u32).next_power_of_two()
}

impl PciVga {
    /// Cirrus CL-GD5446 with 4 MiB; `rom` is `vgabios-cirrus.bin`.
    pub fn cirrus(rom: Vec<u8>) -> Self {
        let mut config = PciConfig::new(0x1013, 0x00B8, 0x03_00_00, 0);
        config.add_bar(0, BarKind::Mem32Prefetch, 32 << 20);
        config.add_bar(1, BarKind::Mem32, 0x1000);
        if !rom.is_empty() {
            config.add_bar(6, BarKind::Mem32, rom_bar_size(rom.len()));
        }
        PciVga { config, vga: Vga::new(CIRRUS_VRAM, Extension::Cirrus(CirrusState::new())), model: VgaModel::Cirrus, rom, now_ns: 0 }
    }

    /// QEMU's standard VGA with 16 MiB and the Bochs DISPI interface; `rom` is `vgabios-stdvga.bin`.
    pub fn std(rom: Vec<u8>) -> Self {
        let mut config = PciConfig::new(0x1234, 0x1111, 0x03_00_00, 2);
        config.add_bar(0, BarKind::Mem32Prefetch, STD_VRAM as u32);
        config.add_bar(2, BarKind::Mem32, 0x1000);
        if !rom.is_empty() {
            config.add_bar(6, BarKind::Mem32, rom_bar_size(rom.len()));
        }
        PciVga { config, vga: Vga::new(STD_VRAM, Extension::Bochs(Dispi::new(STD_VRAM))), model: VgaModel::Std, rom, now_ns: 0 }
    }

    /// Render what changed and return the frame (see [`Vga::update_frame`]).
    pub fn update_frame(&mut self, now_ns: u64) -> &Frame {
        self.vga.update_frame(now_ns)
    }

    fn byte_read(&mut self, region: Region, off: u64, now_ns: u64) -> u8 {
        match (region, self.model) {
            (Region::Legacy, _) => self.vga.mem_read((off - 0xA0000) as u32),
            (Region::Bar(0), VgaModel::Cirrus) => cirrus::linear_read(&mut self.vga, off),
            (Region::Bar(0), VgaModel::Std) => self.vga.vram.get(off as usize).copied().unwrap_or(0xFF),
            (Region::Bar(1), VgaModel::Cirrus) => cirrus::mmio_read(&mut self.vga, off, now_ns),
            (Region::Bar(2), VgaModel::Std) => match off {
                0x400..=0x41F => self.vga.port_read(0x3C0 + (off - 0x400) as u16, now_ns),
                0x500..=0x515 => {
                    let v = bochs::read(&mut self.vga, ((off - 0x500) / 2) as u16);
                    (v >> (8 * (off & 1))) as u8
                }
                _ => 0xFF,
            },
            (Region::Bar(6), _) => self.rom.get(off as usize).copied().unwrap_or(0),
            _ => 0xFF,
        }
    }

    fn byte_write(&mut self, region: Region, off: u64, v: u8) {
        match (region, self.model) {
            (Region::Legacy, _) => self.vga.mem_write((off - 0xA0000) as u32, v),
            (Region::Bar(0), VgaModel::Cirrus) => cirrus::linear_write(&mut self.vga, off, v),
            (Region::Bar(0), VgaModel::Std) => {
                if let Some(b) = self.vga.vram.get_mut(off as usize) {
                    *b = v;
                    self.vga.mark_dirty(off as usize);
                }
            }
            (Region::Bar(1), VgaModel::Cirrus) => cirrus::mmio_write(&mut self.vga, off, v),
            (Region::Bar(2), VgaModel::Std) => {
                if let 0x400..=0x41F = off {
                    self.vga.port_write(0x3C0 + (off - 0x400) as u16, v)
                }
            }
            _ => {}
        }
    }
}

impl IoDevice for PciVga {
    fn name(&self) -> &'static str {
        match self.model {
            VgaModel::Cirrus => "cirrus-vga",
            VgaModel::Std => "VGA",
        }
    }

    fn io_read(&mut self, ctx: &mut IoCtx, _region: Region, port: u16, width: Width) -> u32 {
        self.now_ns = ctx.now_ns;
        if (0x1CE..=0x1CF).contains(&port) && self.model == VgaModel::Std {
            return u32::from(bochs::port_read(&mut self.vga, port));
        }
        let mut v = 0;
        for i in 0..width as u16 {
            v |= u32::from(self.vga.port_read(port.wrapping_add(i), ctx.now_ns)) << (8 * i);
        }
        v
    }

    fn io_write(&mut self, _ctx: &mut IoCtx, _region: Region, port: u16, width: Width, value: u32) {
        if (0x1CE..=0x1CF).contains(&port) && self.model == VgaModel::Std {
            bochs::port_write(&mut self.vga, port, value as u16);
            return;
        }
        for i in 0..width as u16 {
            self.vga.port_write(port.wrapping_add(i), (value >> (8 * i)) as u8);
        }
    }

    fn mmio_read(&mut self, ctx: &mut IoCtx, region: Region, offset: u64, width: Width) -> u64 {
        if region == Region::Bar(2) && self.model == VgaModel::Std && (0x500..0x516).contains(&offset) && width == 2 {
            return u64::from(bochs::read(&mut self.vga, ((offset - 0x500) / 2) as u16));
        }
        let mut v = 0;
        for i in 0..width as u64 {
            v |= u64::from(self.byte_read(region, offset + i, ctx.now_ns)) << (8 * i);
        }
        v
    }

    fn mmio_write(&mut self, _ctx: &mut IoCtx, region: Region, offset: u64, width: Width, value: u64) {
        if region == Region::Bar(2) && self.model == VgaModel::Std && (0x500..0x516).contains(&offset) && width == 2 {
            bochs::write(&mut self.vga, ((offset - 0x500) / 2) as u16, value as u16);
            return;
        }
        for i in 0..width as u64 {
            self.byte_write(region, offset + i, (value >> (8 * i)) as u8);
        }
    }

    fn legacy_io(&self) -> Vec<(u16, u16)> {
        let mut v = vec![(0x3B0, 0x30)];
        if self.model == VgaModel::Std {
            v.push((0x1CE, 2));
        }
        v
    }

    fn legacy_mmio(&self) -> Vec<(u64, u64)> {
        vec![(0xA0000, 0x20000)]
    }

    fn reset(&mut self) {
        self.vga.reset();
    }

    fn poll(&mut self, ctx: &mut IoCtx) {
        self.now_ns = ctx.now_ns;
    }

    fn display(&mut self) -> Option<&mut Frame> {
        let now = self.now_ns;
        self.vga.update_frame(now);
        Some(&mut self.vga.display.frame)
    }

    /// `u32` length + RON of the register state, then the raw VRAM.
    fn save_state(&self) -> Option<Vec<u8>> {
        let regs = SavedVga { regs: &self.vga.regs, latch: self.vga.latch, ext: &self.vga.ext };
        let text = ron::to_string(&regs).ok()?;
        let mut out = Vec::with_capacity(4 + text.len() + self.vga.vram.len());
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&self.vga.vram);
        Some(out)
    }

    fn restore_state(&mut self, data: &[u8]) -> Result<(), String> {
        let bad = || "VGA state truncated".to_string();
        let len = u32::from_le_bytes(data.get(..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
        let text = std::str::from_utf8(data.get(4..4 + len).ok_or_else(bad)?).map_err(|e| e.to_string())?;
        let vram = &data[4 + len..];
        if vram.len() != self.vga.vram.len() {
            return Err(format!("VGA state has {} bytes of VRAM, this adapter {}", vram.len(), self.vga.vram.len()));
        }
        let s: OwnedVga = ron::from_str(text).map_err(|e| format!("VGA state: {e}"))?;
        self.vga.regs = s.regs;
        self.vga.latch = s.latch;
        self.vga.ext = s.ext;
        self.vga.vram.copy_from_slice(vram);
        self.vga.display.invalidate();
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl PciDevice for PciVga {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_restore_round_trip() {
        let mut a = PciVga::cirrus(vec![0x55, 0xAA]);
        a.vga.port_write(0x3C4, 0x07);
        a.vga.port_write(0x3C5, 0x01);
        a.vga.vram[12345] = 7;
        let data = a.save_state().unwrap();
        let mut b = PciVga::cirrus(Vec::new());
        b.restore_state(&data).unwrap();
        assert_eq!(b.vga.regs, a.vga.regs);
        assert_eq!(b.vga.vram[12345], 7);
        assert!(PciVga::std(Vec::new()).restore_state(&data).is_err());
    }
}
