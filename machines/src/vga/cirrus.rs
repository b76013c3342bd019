//! Cirrus Logic GD5446 extensions: unlock (SR6), extended sequencer/graphics/CRTC registers,
//! the hidden DAC register (HDR, selects 15/16 bpp), the dual 32 KiB banks at 0xA0000 (GR9/GRA,
//! 4K or 16K granularity from GRB), extended write modes 4/5 (colour expansion), the linear
//! framebuffer (PCI BAR 0), the register MMIO window (BAR 1, and optionally 0xB8000 or the top
//! of BAR 0), and the packed-pixel display modes. The BitBLT engine is in [`super::blitter`].

use serde::{Deserialize, Serialize};

use super::blitter::{self, Blitter};
use super::render::{dac_rgba, GraphicsMode, Mode};
use super::{graphics::Kind, Extension, Vga, VgaRegs};

/// CR27 part ID of the GD5446.
pub const PART_ID_5446: u8 = 0xB8;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CirrusState {
    pub hidden_dac: u8,
    /// Consecutive reads of 0x3C6 (the fifth access reaches the hidden DAC register).
    pub hidden_dac_count: u8,
    /// 16 extra DAC entries for the hardware cursor (SR12 bit 1 selects them).
    pub hidden_palette: Vec<u8>,
    /// Full 8-bit GR0/GR1 (the standard registers keep 4 bits; the blitter uses all 8).
    pub shadow_gr0: u8,
    pub shadow_gr1: u8,
    pub blt: Blitter,
}

impl CirrusState {
    pub fn new() -> Self {
        CirrusState {
            hidden_dac: 0,
            hidden_dac_count: 0,
            hidden_palette: vec![0; 48],
            shadow_gr0: 0,
            shadow_gr1: 0,
            blt: Blitter::default(),
        }
    }

    /// Power-on values of the extension registers (4 MiB, PCI bus).
    pub fn reset(&mut self, r: &mut VgaRegs) {
        *self = CirrusState::new();
        r.sr[0x06] = 0x0F;
        r.sr[0x0F] = 0x98; // 4 MiB, 64-bit DRAM interface, bank switching
        r.sr[0x15] = 0x04;
        r.sr[0x17] = 0x20; // PCI
        r.sr[0x1F] = 0x2D;
        r.gr[0x18] = 0x0F;
        r.cr[0x27] = PART_ID_5446;
    }

    /// SR7 bit 0: extended (packed-pixel, linear) memory and display.
    pub fn extended(&self, r: &VgaRegs) -> bool {
        r.sr[7] & 1 != 0
    }

    pub fn read_pel_mask(&mut self, pel_mask: u8) -> u8 {
        if self.hidden_dac_count == 4 {
            self.hidden_dac_count = 0;
            return self.hidden_dac;
        }
        self.hidden_dac_count += 1;
        pel_mask
    }

    pub fn write_pel_mask(&mut self, pel_mask: &mut u8, v: u8) {
        if self.hidden_dac_count == 4 {
            self.hidden_dac = v;
        } else {
            *pel_mask = v;
        }
        self.hidden_dac_count = 0;
    }

    pub fn read_sr(&self, r: &VgaRegs, i: u8) -> u8 {
        match i {
            0x10 | 0x30 | 0x50 | 0x70 | 0x90 | 0xB0 | 0xD0 | 0xF0 => r.sr[0x10],
            0x11 | 0x31 | 0x51 | 0x71 | 0x91 | 0xB1 | 0xD1 | 0xF1 => r.sr[0x11],
            0x05..=0x1F => r.sr[i as usize],
            _ => 0xFF,
        }
    }

    pub fn write_sr(&mut self, r: &mut VgaRegs, i: u8, v: u8) {
        match i {
            0x06 => r.sr[6] = if v & 0x17 == 0x12 { 0x12 } else { 0x0F },
            0x10 | 0x30 | 0x50 | 0x70 | 0x90 | 0xB0 | 0xD0 | 0xF0 => r.sr[0x10] = v,
            0x11 | 0x31 | 0x51 | 0x71 | 0x91 | 0xB1 | 0xD1 | 0xF1 => r.sr[0x11] = v,
            0x17 => r.sr[0x17] = (r.sr[0x17] & 0x38) | (v & 0xC7),
            0x05 | 0x07..=0x1F => r.sr[i as usize] = v,
            _ => {}
        }
    }

    pub fn read_gr(&self, r: &VgaRegs, i: u8) -> u8 {
        match i {
            0 => self.shadow_gr0,
            1 => self.shadow_gr1,
            0x02..=0x39 => r.gr[i as usize],
            _ => 0xFF,
        }
    }

    pub fn read_cr(&self, r: &VgaRegs, i: u8) -> u8 {
        match i {
            0x00..=0x18 | 0x19..=0x1D | 0x22 | 0x25 | 0x27 => r.cr[i as usize],
            0x24 => (r.ar_flip as u8) << 7,
            0x26 => r.ar_index & 0x3F,
            _ => 0xFF,
        }
    }

    pub fn write_cr(&mut self, r: &mut VgaRegs, i: u8, v: u8) {
        if let 0x19..=0x1D = i {
            r.cr[i as usize] = v;
        }
    }
}

impl Default for CirrusState {
    fn default() -> Self {
        Self::new()
    }
}

fn state(vga: &mut Vga) -> &mut CirrusState {
    match &mut vga.ext {
        Extension::Cirrus(c) => c,
        _ => unreachable!("cirrus register access without the extension"),
    }
}

/// GR write with the Cirrus extensions (GR0-GR8 standard, GR9-GRB banking, GR10-GR15 colour
/// extensions, GR20-GR39 blitter).
pub fn write_gr(vga: &mut Vga, i: u8, v: u8) {
    let gr = &mut vga.regs.gr;
    match i {
        0x00 => {
            vga.write_std_gr(0, v);
            state(vga).shadow_gr0 = v;
        }
        0x01 => {
            vga.write_std_gr(1, v);
            state(vga).shadow_gr1 = v;
        }
        0x02..=0x04 | 0x06..=0x08 => vga.write_std_gr(i, v),
        0x05 => gr[5] = v & 0x7F,
        0x09..=0x0B | 0x10..=0x15 | 0x20 | 0x22 | 0x24 | 0x26 | 0x28 | 0x29 | 0x2C | 0x2D | 0x2F | 0x30 | 0x32
        | 0x33 | 0x34 | 0x35 | 0x38 | 0x39 => gr[i as usize] = v,
        0x21 | 0x23 | 0x25 | 0x27 => gr[i as usize] = v & 0x1F,
        0x2A => {
            gr[0x2A] = v & 0x3F;
            if gr[0x31] & blitter::AUTOSTART != 0 {
                blitter::start(vga);
            }
        }
        0x2E => gr[0x2E] = v & 0x3F,
        0x31 => blitter::write_control(vga, v),
        _ => {}
    }
}

/// Byte offset into VRAM of bank window offset `off` (< 0x10000), or None beyond VRAM.
fn bank_offset(vga: &Vga, off: u32) -> Option<usize> {
    let gr = &vga.regs.gr;
    let dual = gr[0x0B] & 1 != 0;
    let bank = (off >> 15) as usize;
    let reg = if dual { gr[0x09 + bank] } else { gr[0x09] } as usize;
    let mut base = if gr[0x0B] & 0x20 != 0 { reg << 14 } else { reg << 12 };
    if !dual && bank == 1 {
        base += 0x8000;
    }
    let a = base + (off as usize & 0x7FFF);
    (a < vga.vram.len()).then_some(a)
}

/// Memory-mapped blitter registers at 0xB8000 (SR17 bit 2 set, bit 6 clear).
fn legacy_mmio(vga: &Vga, addr: u32) -> bool {
    (0x18000..0x18100).contains(&addr) && vga.regs.sr[0x17] & 0x44 == 0x04
}

/// Address scaling of extended write modes: x8 (GRB bit 1) or x16 (GRB bits 2+4).
fn scale(vga: &Vga, a: usize) -> usize {
    let grb = vga.regs.gr[0x0B];
    let a = if grb & 0x14 == 0x14 {
        a << 4
    } else if grb & 0x02 != 0 {
        a << 3
    } else {
        a
    };
    a & vga.vram_mask()
}

pub fn window_read(vga: &mut Vga, addr: u32) -> u8 {
    if addr < 0x10000 {
        return match bank_offset(vga, addr) {
            Some(a) => {
                let a = scale(vga, a);
                vga.vram[a]
            }
            None => 0xFF,
        };
    }
    if legacy_mmio(vga, addr) {
        return blitter::mmio_read(vga, addr & 0xFF);
    }
    0xFF
}

pub fn window_write(vga: &mut Vga, addr: u32, v: u8) {
    if blitter::cpu_source_active(vga) && addr < 0x10000 {
        blitter::cpu_source_write(vga, v);
        return;
    }
    if addr < 0x10000 {
        if let Some(a) = bank_offset(vga, addr) {
            let a = scale(vga, a);
            vram_write(vga, a, v);
        }
        return;
    }
    if legacy_mmio(vga, addr) {
        blitter::mmio_write(vga, addr & 0xFF, v);
    }
}

/// A CPU write to VRAM byte `a` in extended mode: plain, or colour expansion in write modes 4/5.
fn vram_write(vga: &mut Vga, a: usize, v: u8) {
    let mode = vga.regs.gr[5] & 7;
    let grb = vga.regs.gr[0x0B];
    if !(4..=5).contains(&mode) || grb & 0x04 == 0 {
        vga.vram[a] = v;
        vga.mark_dirty(a);
        return;
    }
    let (fg, bg) = {
        let c = match &vga.ext {
            Extension::Cirrus(c) => c,
            _ => unreachable!(),
        };
        let g = &vga.regs.gr;
        (u16::from(c.shadow_gr1) | u16::from(g[0x11]) << 8, u16::from(c.shadow_gr0) | u16::from(g[0x10]) << 8)
    };
    let wide = grb & 0x14 == 0x14;
    let mask = vga.vram_mask();
    let mut bits = v;
    for x in 0..8 {
        let pix = if bits & 0x80 != 0 { Some(fg) } else if mode == 5 { Some(bg) } else { None };
        if let Some(c) = pix {
            if wide {
                vga.vram[(a + 2 * x) & mask] = c as u8;
                vga.vram[(a + 2 * x + 1) & mask] = (c >> 8) as u8;
            } else {
                vga.vram[(a + x) & mask] = c as u8;
            }
        }
        bits <<= 1;
    }
    vga.mark_dirty_range(a, if wide { 16 } else { 8 });
}

/// BAR 0: 4 MiB of linear VRAM; with SR17 bits 2+6 the last 256 bytes of VRAM space are the
/// blitter registers; during a system-to-screen BitBLT every write is blitter source data.
pub fn linear_read(vga: &mut Vga, off: u64) -> u8 {
    let mask = vga.vram_mask();
    let off = off as usize & mask;
    let mmio_mask = mask & !0xFF;
    if vga.regs.sr[0x17] & 0x44 == 0x44 && off & mmio_mask == mmio_mask {
        return blitter::mmio_read(vga, (off & 0xFF) as u32);
    }
    vga.vram[scale(vga, off)]
}

pub fn linear_write(vga: &mut Vga, off: u64, v: u8) {
    let mask = vga.vram_mask();
    let off = off as usize & mask;
    let mmio_mask = mask & !0xFF;
    if vga.regs.sr[0x17] & 0x44 == 0x44 && off & mmio_mask == mmio_mask {
        blitter::mmio_write(vga, (off & 0xFF) as u32, v);
        return;
    }
    if blitter::cpu_source_active(vga) {
        blitter::cpu_source_write(vga, v);
        return;
    }
    let a = scale(vga, off);
    vram_write(vga, a, v);
}

/// BAR 1 (4 KiB): VGA ports 0x3C0.. at offsets 0..0xFF, blitter registers from 0x100.
pub fn mmio_read(vga: &mut Vga, off: u64, now_ns: u64) -> u8 {
    if off >= 0x100 {
        blitter::mmio_read(vga, (off - 0x100) as u32 & 0xFF)
    } else {
        vga.port_read(0x3C0 + off as u16, now_ns)
    }
}

pub fn mmio_write(vga: &mut Vga, off: u64, v: u8) {
    if off >= 0x100 {
        blitter::mmio_write(vga, (off - 0x100) as u32 & 0xFF, v)
    } else {
        vga.port_write(0x3C0 + off as u16, v)
    }
}

/// Display mode when the extended (packed-pixel) mode is on.
pub fn decode(vga: &Vga, height: u32) -> Option<Mode> {
    let Extension::Cirrus(c) = &vga.ext else { return None };
    let r = &vga.regs;
    if r.sr[7] & 1 == 0 {
        return None;
    }
    let width = (r.cr[0x01] as u32 + 1) * 8;
    let height = if r.cr[0x1A] & 1 != 0 { height * 2 } else { height };
    if r.ar_index & 0x20 == 0 || r.sr[1] & 0x20 != 0 {
        return Some(Mode::Blank { width, height });
    }
    let hdr16 = c.hidden_dac & 0x0F == 1;
    let (kind, bpp) = match r.sr[7] & 0x0E {
        0x02 | 0x06 => (if hdr16 { Kind::Rgb565 } else { Kind::Rgb555 }, 2),
        0x04 => (Kind::Rgb888, 3),
        0x08 => (Kind::Rgbx8888, 4),
        _ => (Kind::Linear8, 1),
    };
    let _ = bpp;
    let cr = &r.cr;
    let start = ((cr[0x0C] as u32) << 8)
        | cr[0x0D] as u32
        | ((cr[0x1B] as u32 & 0x01) << 16)
        | ((cr[0x1B] as u32 & 0x0C) << 15)
        | ((cr[0x1D] as u32 & 0x80) << 12);
    let pitch = (cr[0x13] as u32 | ((cr[0x1B] as u32 & 0x10) << 4)) * 8;
    let max_scan = (cr[0x09] as u32 & 0x1F) + 1;
    let scan_mult = max_scan << ((cr[0x09] >> 7) as u32);
    let palette = if kind == Kind::Linear8 { (0..=255u8).map(|i| dac_rgba(vga, i)).collect() } else { Vec::new() };
    Some(Mode::Graphics(GraphicsMode {
        kind,
        width,
        height,
        start: start * 4,
        pitch,
        scan_mult,
        line_compare: None,
        double_width: false,
        cga_banks: false,
        palette,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn cirrus() -> Vga {
        Vga::new(4 << 20, Extension::Cirrus(CirrusState::new()))
    }

    #[test]
    fn unlock_id_and_memory_size_as_seavgabios_reads_them() {
        let mut v = cirrus();
        v.port_write(0x3C2, 1);
        v.port_write(0x3C4, 0x06);
        v.port_write(0x3C5, 0x92);
        assert_eq!(v.port_read(0x3C5, 0), 0x12, "unlocked");
        v.port_write(0x3C5, 0x00);
        assert_eq!(v.port_read(0x3C5, 0), 0x0F, "locked");
        v.port_write(0x3D4, 0x27);
        assert_eq!(v.port_read(0x3D5, 0), PART_ID_5446);
        v.port_write(0x3C4, 0x0F);
        let sr0f = v.port_read(0x3C5, 0);
        assert!((sr0f >> 3) & 3 == 3 && sr0f & 0x80 != 0, "4 MiB");
    }

    #[test]
    fn hidden_dac_after_four_reads() {
        let mut v = cirrus();
        v.port_write(0x3C6, 0xFF);
        for _ in 0..4 {
            assert_eq!(v.port_read(0x3C6, 0), 0xFF);
        }
        v.port_write(0x3C6, 0xE1);
        assert_eq!(v.regs.pel_mask, 0xFF);
        for _ in 0..4 {
            let _ = v.port_read(0x3C6, 0);
        }
        assert_eq!(v.port_read(0x3C6, 0), 0xE1);
        // an access elsewhere breaks the sequence
        for _ in 0..3 {
            let _ = v.port_read(0x3C6, 0);
        }
        let _ = v.port_read(0x3C8, 0);
        let _ = v.port_read(0x3C6, 0);
        v.port_write(0x3C6, 0x77);
        assert_eq!(v.regs.pel_mask, 0x77);
    }

    #[test]
    fn banked_window_and_linear_framebuffer() {
        let mut v = cirrus();
        v.regs.sr[7] = 0x01;
        v.regs.gr[0x0B] = 0x20; // 16K granularity, single bank
        v.regs.gr[0x09] = 3;
        v.mem_write(0x10, 0xAB);
        assert_eq!(v.vram[3 * 16384 + 0x10], 0xAB);
        v.mem_write(0x8010, 0xCD); // second half of the single bank
        assert_eq!(v.vram[3 * 16384 + 0x8010], 0xCD);
        assert_eq!(linear_read(&mut v, (3 * 16384 + 0x10) as u64), 0xAB);
        linear_write(&mut v, 0x3F_FFFF, 0x11);
        assert_eq!(v.vram[0x3F_FFFF], 0x11);
        // extended write mode 4: colour-expand a byte to eight 8-bpp pixels of GR1
        v.regs.gr[0x0B] = 0x26; // extended write modes, x8 addressing
        write_gr(&mut v, 0x01, 0x5A);
        v.regs.gr[5] = 4;
        v.regs.gr[9] = 0;
        v.mem_write(2, 0b1010_0000); // pixel address 2 * 8 = 16
        assert_eq!(&v.vram[16..20], &[0x5A, 0x00, 0x5A, 0x00]);
    }

    #[test]
    fn extended_mode_decodes_1024x768x24() {
        let mut v = cirrus();
        let r = &mut v.regs;
        r.sr[7] = 0x05;
        r.cr[0x01] = 0x7F;
        r.cr[0x12] = 0xFF;
        r.cr[0x07] = 0x40; // VDE bit 9 (767 = 0x2FF)
        r.cr[0x13] = 0x80;
        r.cr[0x1B] = 0x32;
        r.ar_index = 0x20;
        v.vram[3 * 1024 + 3..3 * 1024 + 6].copy_from_slice(&[0x10, 0x20, 0x30]);
        let f = v.update_frame(0);
        assert_eq!((f.width, f.height), (1024, 768));
        assert_eq!(f.pixel(1, 1), [0x30, 0x20, 0x10, 0xFF]);
    }
}
