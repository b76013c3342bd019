//! The GD5446 BitBLT engine: screen-to-screen copies (forward and backward), 8x8 pattern fills,
//! monochrome colour expansion (from VRAM or from system memory), transparency and the 16
//! raster operations, at 8/16/24/32 bits per pixel. Registers are GR20-GR39 (also mapped at
//! MMIO offsets 0x00-0x40, see [`mmio_read`]); writing GR31 bit 1 starts an operation, which
//! completes immediately except for system-to-screen transfers, which consume the data the CPU
//! then writes to the framebuffer, one source line at a time.

use serde::{Deserialize, Serialize};

use super::{cirrus, Extension, Vga};

// GR31
pub const BUSY: u8 = 0x01;
pub const START: u8 = 0x02;
pub const RESET: u8 = 0x04;
pub const FIFO_USED: u8 = 0x10;
pub const AUTOSTART: u8 = 0x80;
// GR30
const BACKWARDS: u8 = 0x01;
const MEMSYS_DEST: u8 = 0x02;
const MEMSYS_SRC: u8 = 0x04;
const TRANSPARENT: u8 = 0x08;
const PATTERN: u8 = 0x40;
const COLOR_EXPAND: u8 = 0x80;
// GR33
const EXT_DWORD_GRANULARITY: u8 = 0x01;
const EXT_EXPAND_INVERT: u8 = 0x02;
const EXT_SOLID_FILL: u8 = 0x04;

/// Raster operation codes (GR32) and what they compute from destination `d` and source `s`.
/// Unknown codes leave the destination unchanged.
pub fn rop(code: u8, d: u8, s: u8) -> u8 {
    match code {
        0x00 => 0,
        0x05 => s & d,
        0x06 => d,
        0x09 => s & !d,
        0x0B => !d,
        0x0D => s,
        0x0E => 0xFF,
        0x50 => !s & d,
        0x59 => s ^ d,
        0x6D => s | d,
        0x90 => !s | !d,
        0x95 => !(s ^ d),
        0xAD => s | !d,
        0xD0 => !s,
        0xD6 => !s | d,
        0xDA => !s & !d,
        _ => d,
    }
}

/// One operation's parameters, latched from the registers at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Bytes per line.
    pub width: u32,
    pub height: u32,
    pub dst_pitch: i32,
    pub src_pitch: i32,
    pub dst: u32,
    pub src: u32,
    pub mode: u8,
    pub modeext: u8,
    pub rop: u8,
    /// Bytes per pixel (1-4).
    pub pw: u32,
    pub fg: u32,
    pub bg: u32,
    pub transparent: u16,
    /// Pixels to skip at the left of every line (GR2F).
    pub skip_px: u32,
}

/// A system-to-screen transfer in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTransfer {
    pub op: Op,
    pub buf: Vec<u8>,
    pub line_bytes: usize,
    pub y: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Blitter {
    pub cpu: Option<CpuTransfer>,
    /// Operations executed (for tests and statistics).
    pub count: u64,
}

fn blt(vga: &mut Vga) -> &mut Blitter {
    match &mut vga.ext {
        Extension::Cirrus(c) => &mut c.blt,
        _ => unreachable!(),
    }
}

pub fn cpu_source_active(vga: &Vga) -> bool {
    matches!(&vga.ext, Extension::Cirrus(c) if c.blt.cpu.is_some())
}

/// GR31 written.
pub fn write_control(vga: &mut Vga, v: u8) {
    let old = vga.regs.gr[0x31];
    vga.regs.gr[0x31] = v;
    if old & RESET != 0 && v & RESET == 0 {
        reset(vga);
    } else if old & START == 0 && v & START != 0 {
        start(vga);
    }
}

fn reset(vga: &mut Vga) {
    vga.regs.gr[0x31] &= !(START | BUSY | FIFO_USED);
    blt(vga).cpu = None;
}

fn latch(vga: &Vga) -> Option<Op> {
    let g = &vga.regs.gr;
    let Extension::Cirrus(c) = &vga.ext else { return None };
    let w16 = |lo: usize| u32::from(g[lo]) | u32::from(g[lo + 1]) << 8;
    let mode = g[0x30];
    let pw = match mode & 0x30 {
        0x00 => 1,
        0x10 => 2,
        0x20 => 3,
        _ => 4,
    };
    let fg = u32::from(c.shadow_gr1) | u32::from(g[0x11]) << 8 | u32::from(g[0x13]) << 16 | u32::from(g[0x15]) << 24;
    let bg = u32::from(c.shadow_gr0) | u32::from(g[0x10]) << 8 | u32::from(g[0x12]) << 16 | u32::from(g[0x14]) << 24;
    let mask = vga.vram_mask() as u32;
    let skip_px = if pw == 3 { u32::from(g[0x2F] & 0x1F) / 3 } else { u32::from(g[0x2F] & 7) };
    Some(Op {
        width: w16(0x20) + 1,
        height: w16(0x22) + 1,
        dst_pitch: w16(0x24) as i32,
        src_pitch: w16(0x26) as i32,
        dst: (w16(0x28) | u32::from(g[0x2A]) << 16) & mask,
        src: (w16(0x2C) | u32::from(g[0x2E]) << 16) & mask,
        mode,
        modeext: g[0x33],
        rop: g[0x32],
        pw,
        fg,
        bg,
        transparent: u16::from(g[0x34]) | u16::from(g[0x35]) << 8,
        skip_px,
    })
}

/// Start the operation programmed in GR20-GR33.
pub fn start(vga: &mut Vga) {
    vga.regs.gr[0x31] |= BUSY;
    let Some(op) = latch(vga) else { return };
    blt(vga).count += 1;
    tracing::trace!(?op, "cirrus bitblt");
    if op.mode & (MEMSYS_SRC | MEMSYS_DEST) == MEMSYS_SRC | MEMSYS_DEST || op.mode & MEMSYS_DEST != 0 {
        // memory-to-memory and screen-to-system are not supported by the emulated part either
        reset(vga);
        return;
    }
    if op.mode & MEMSYS_SRC != 0 {
        let px = op.width / op.pw;
        let line_bytes = if op.mode & PATTERN != 0 {
            if op.mode & COLOR_EXPAND != 0 { 8 } else { (64 * op.pw) as usize }
        } else if op.mode & COLOR_EXPAND != 0 {
            if op.modeext & EXT_DWORD_GRANULARITY != 0 { px.div_ceil(32) as usize * 4 } else { px.div_ceil(8) as usize }
        } else {
            (op.width as usize + 3) & !3
        };
        blt(vga).cpu = Some(CpuTransfer { op, buf: Vec::with_capacity(line_bytes), line_bytes, y: 0 });
        return;
    }
    for y in 0..op.height {
        run_line(vga, &op, y, Source::Vram);
    }
    reset(vga);
}

/// A byte the CPU wrote to the framebuffer while a system-to-screen transfer is active.
pub fn cpu_source_write(vga: &mut Vga, v: u8) {
    let Some(mut t) = blt(vga).cpu.take() else { return };
    t.buf.push(v);
    if t.buf.len() < t.line_bytes {
        blt(vga).cpu = Some(t);
        return;
    }
    let done = if t.op.mode & PATTERN != 0 {
        for y in 0..t.op.height {
            run_line(vga, &t.op, y, Source::Pattern(&t.buf));
        }
        true
    } else {
        run_line(vga, &t.op, t.y, Source::Line(&t.buf));
        t.y += 1;
        t.buf.clear();
        t.y >= t.op.height
    };
    if done {
        reset(vga);
    } else {
        blt(vga).cpu = Some(t);
    }
}

enum Source<'a> {
    /// Source (or pattern) in video memory at `op.src`.
    Vram,
    /// One line of system data.
    Line(&'a [u8]),
    /// A whole pattern (8 rows) of system data.
    Pattern(&'a [u8]),
}

/// Execute line `y` of `op`.
fn run_line(vga: &mut Vga, op: &Op, y: u32, src: Source) {
    let mask = vga.vram_mask();
    let back = op.mode & BACKWARDS != 0 && op.mode & (PATTERN | COLOR_EXPAND) == 0;
    let line = |base: u32, pitch: i32| -> i64 {
        if back { base as i64 - y as i64 * pitch as i64 } else { base as i64 + y as i64 * pitch as i64 }
    };
    let dst_line = line(op.dst, op.dst_pitch);
    let pw = op.pw as usize;
    let width = op.width as usize;
    let px_count = width / pw.max(1);
    let at = |base: i64, off: usize, back: bool| -> usize {
        (if back { base - off as i64 } else { base + off as i64 }) as usize & mask
    };
    let solid = op.modeext & EXT_SOLID_FILL != 0
        && op.mode & (TRANSPARENT | PATTERN | COLOR_EXPAND) == PATTERN | COLOR_EXPAND;
    let expand = op.mode & COLOR_EXPAND != 0;
    let pattern = op.mode & PATTERN != 0;
    let invert = op.modeext & EXT_EXPAND_INVERT != 0;
    let transparent = op.mode & TRANSPARENT != 0;
    let color_bytes = |c: u32| c.to_le_bytes();
    let fg = color_bytes(op.fg);
    let bg = color_bytes(op.bg);

    if solid {
        for px in op.skip_px as usize..px_count {
            for k in 0..pw {
                let a = at(dst_line, px * pw + k, false);
                vga.vram[a] = rop(op.rop, vga.vram[a], fg[k]);
            }
        }
    } else if expand {
        // monochrome source: one bit per pixel, MSB first
        let pattern_row = if pattern {
            let row = y as usize & 7;
            Some(match src {
                Source::Vram => vga.vram[((op.src as usize & !7) + row) & mask],
                Source::Pattern(b) | Source::Line(b) => b.get(row).copied().unwrap_or(0),
            })
        } else {
            None
        };
        let src_line = line(op.src, op.src_pitch);
        for px in op.skip_px as usize..px_count {
            let bits = match (pattern_row, &src) {
                (Some(r), _) => r,
                (None, Source::Vram) => vga.vram[at(src_line, px / 8, false)],
                (None, Source::Line(b) | Source::Pattern(b)) => b.get(px / 8).copied().unwrap_or(0),
            };
            let bit = if pattern { 0x80 >> (px & 7) } else { 0x80 >> (px % 8) };
            let set = (bits & bit != 0) != (transparent && invert);
            let color = if transparent {
                if !set {
                    continue;
                }
                if invert { &bg } else { &fg }
            } else if set {
                &fg
            } else {
                &bg
            };
            for k in 0..pw {
                let a = at(dst_line, px * pw + k, false);
                vga.vram[a] = rop(op.rop, vga.vram[a], color[k]);
            }
        }
    } else if pattern {
        // 8x8 colour pattern, rows of 8 pixels
        let row = y as usize & 7;
        let row_bytes = 8 * pw;
        let size = if pw == 3 { 256 } else { 64 * pw };
        for px in op.skip_px as usize..px_count {
            for k in 0..pw {
                let off = row * row_bytes + (px & 7) * pw + k;
                let s = match &src {
                    Source::Vram => vga.vram[((op.src as usize & !(size - 1)) + off) & mask],
                    Source::Line(b) | Source::Pattern(b) => b.get(off).copied().unwrap_or(0),
                };
                let a = at(dst_line, px * pw + k, false);
                vga.vram[a] = rop(op.rop, vga.vram[a], s);
            }
        }
    } else {
        let src_line = line(op.src, op.src_pitch);
        let read = |vga: &Vga, x: usize| match &src {
            Source::Vram => vga.vram[at(src_line, x, back)],
            Source::Line(b) | Source::Pattern(b) => b.get(x).copied().unwrap_or(0),
        };
        if transparent && pw <= 2 {
            for px in 0..px_count {
                let s0 = read(vga, px * pw);
                let s1 = if pw == 2 { read(vga, px * pw + 1) } else { 0 };
                let v = u16::from(s0) | u16::from(s1) << 8;
                let key = if pw == 2 { op.transparent } else { op.transparent & 0xFF };
                if v == key {
                    continue;
                }
                for (k, s) in [s0, s1].into_iter().take(pw).enumerate() {
                    let a = at(dst_line, px * pw + k, back);
                    vga.vram[a] = rop(op.rop, vga.vram[a], s);
                }
            }
        } else {
            for x in 0..width {
                let s = read(vga, x);
                let a = at(dst_line, x, back);
                vga.vram[a] = rop(op.rop, vga.vram[a], s);
            }
        }
    }
    let start = if back { dst_line - width as i64 + 1 } else { dst_line };
    vga.mark_dirty_range(start as usize & mask, width);
}

/// GR register reached by blitter MMIO offset `off` (0x00-0x40).
fn mmio_reg(off: u32) -> Option<u8> {
    Some(match off {
        0x00 => 0x00,
        0x01 => 0x10,
        0x02 => 0x12,
        0x03 => 0x14,
        0x04 => 0x01,
        0x05 => 0x11,
        0x06 => 0x13,
        0x07 => 0x15,
        0x08..=0x0F => 0x20 + (off - 0x08) as u8,
        0x10..=0x12 => 0x28 + (off - 0x10) as u8,
        0x14..=0x16 => 0x2C + (off - 0x14) as u8,
        0x17 => 0x2F,
        0x18 => 0x30,
        0x1A => 0x32,
        0x1B => 0x33,
        0x1C => 0x34,
        0x1D => 0x35,
        0x20 => 0x38,
        0x21 => 0x39,
        0x40 => 0x31,
        _ => return None,
    })
}

pub fn mmio_read(vga: &mut Vga, off: u32) -> u8 {
    match (mmio_reg(off), &vga.ext) {
        (Some(i), Extension::Cirrus(c)) => c.read_gr(&vga.regs, i),
        _ => 0xFF,
    }
}

pub fn mmio_write(vga: &mut Vga, off: u32, v: u8) {
    if let Some(i) = mmio_reg(off) {
        cirrus::write_gr(vga, i, v);
    }
}

#[cfg(test)]
mod tests {
    use super::super::cirrus::{write_gr, CirrusState};
    use super::super::{Extension, Vga};
    use super::*;

    fn vga() -> Vga {
        Vga::new(4 << 20, Extension::Cirrus(CirrusState::new()))
    }

    fn program(v: &mut Vga, w: u32, h: u32, dpitch: u32, spitch: u32, dst: u32, src: u32, mode: u8, rop_code: u8) {
        for (i, val) in [
            (0x20, w - 1),
            (0x22, h - 1),
            (0x24, dpitch),
            (0x26, spitch),
            (0x28, dst),
            (0x2C, src),
        ] {
            write_gr(v, i, val as u8);
            write_gr(v, i + 1, (val >> 8) as u8);
            if i == 0x28 || i == 0x2C {
                write_gr(v, i + 2, (val >> 16) as u8);
            }
        }
        write_gr(v, 0x30, mode);
        write_gr(v, 0x32, rop_code);
    }

    #[test]
    fn all_sixteen_rops_on_a_copy() {
        let cases: [(u8, fn(u8, u8) -> u8); 16] = [
            (0x00, |_, _| 0),
            (0x05, |d, s| s & d),
            (0x06, |d, _| d),
            (0x09, |d, s| s & !d),
            (0x0B, |d, _| !d),
            (0x0D, |_, s| s),
            (0x0E, |_, _| 0xFF),
            (0x50, |d, s| !s & d),
            (0x59, |d, s| s ^ d),
            (0x6D, |d, s| s | d),
            (0x90, |d, s| !s | !d),
            (0x95, |d, s| !(s ^ d)),
            (0xAD, |d, s| s | !d),
            (0xD0, |_, s| !s),
            (0xD6, |d, s| !s | d),
            (0xDA, |d, s| !s & !d),
        ];
        for (code, f) in cases {
            let mut v = vga();
            for i in 0..64 {
                v.vram[0x1000 + i] = (i as u8).wrapping_mul(37) ^ 0x5A; // source
                v.vram[0x2000 + i] = (i as u8).wrapping_mul(11) ^ 0xC3; // destination
            }
            program(&mut v, 16, 4, 16, 16, 0x2000, 0x1000, 0, code);
            write_gr(&mut v, 0x31, START);
            for i in 0..64usize {
                let s = (i as u8).wrapping_mul(37) ^ 0x5A;
                let d = (i as u8).wrapping_mul(11) ^ 0xC3;
                assert_eq!(v.vram[0x2000 + i], f(d, s), "rop {code:#x} byte {i}");
            }
            assert_eq!(v.regs.gr[0x31] & (BUSY | START), 0, "done");
        }
    }

    #[test]
    fn pitch_rectangle_and_backwards_overlap() {
        let mut v = vga();
        for i in 0..100 {
            v.vram[i] = i as u8;
        }
        // 4x3 rectangle from a 10-byte pitch source to a 20-byte pitch destination
        program(&mut v, 4, 3, 20, 10, 0x1000, 12, 0, 0x0D);
        write_gr(&mut v, 0x31, START);
        for y in 0..3 {
            assert_eq!(&v.vram[0x1000 + 20 * y..0x1000 + 20 * y + 4], &[12 + 10 * y as u8, 13 + 10 * y as u8, 14 + 10 * y as u8, 15 + 10 * y as u8]);
            assert_eq!(v.vram[0x1000 + 20 * y + 4], 0);
        }
        // overlapping move right by 2 within a line: backwards from the last byte
        for i in 0..10 {
            v.vram[0x3000 + i] = i as u8;
        }
        program(&mut v, 8, 1, 0, 0, 0x3000 + 9, 0x3000 + 7, BACKWARDS, 0x0D);
        write_gr(&mut v, 0x31, START);
        assert_eq!(&v.vram[0x3000..0x300A], &[0, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn solid_fill_and_color_expand_16bpp() {
        let mut v = vga();
        // fg = 0xBEEF
        write_gr(&mut v, 0x01, 0xEF);
        write_gr(&mut v, 0x11, 0xBE);
        write_gr(&mut v, 0x00, 0x34);
        write_gr(&mut v, 0x10, 0x12);
        program(&mut v, 8, 2, 100, 0, 0x400, 0, PATTERN | COLOR_EXPAND | 0x10, 0x0D);
        write_gr(&mut v, 0x33, EXT_SOLID_FILL);
        write_gr(&mut v, 0x31, START);
        assert_eq!(&v.vram[0x400..0x408], &[0xEF, 0xBE, 0xEF, 0xBE, 0xEF, 0xBE, 0xEF, 0xBE]);
        assert_eq!(&v.vram[0x400 + 100..0x400 + 104], &[0xEF, 0xBE, 0xEF, 0xBE]);
        // opaque colour expansion of 0b1010_0000 from VRAM: fg, bg, fg, bg
        write_gr(&mut v, 0x33, 0);
        v.vram[0x800] = 0b1010_0000;
        program(&mut v, 8, 1, 0, 1, 0x900, 0x800, COLOR_EXPAND | 0x10, 0x0D);
        write_gr(&mut v, 0x31, START);
        assert_eq!(&v.vram[0x900..0x908], &[0xEF, 0xBE, 0x34, 0x12, 0xEF, 0xBE, 0x34, 0x12]);
        // transparent: only set bits are drawn
        v.vram[0xA00..0xA08].copy_from_slice(&[9; 8]);
        program(&mut v, 8, 1, 0, 1, 0xA00, 0x800, COLOR_EXPAND | TRANSPARENT | 0x10, 0x0D);
        write_gr(&mut v, 0x31, START);
        assert_eq!(&v.vram[0xA00..0xA08], &[0xEF, 0xBE, 9, 9, 0xEF, 0xBE, 9, 9]);
    }

    #[test]
    fn system_to_screen_expansion_through_the_framebuffer() {
        let mut v = vga();
        write_gr(&mut v, 0x01, 0xFF);
        write_gr(&mut v, 0x00, 0x00);
        // 16 pixels x 2 lines at 8 bpp, data from the CPU, dword granularity
        program(&mut v, 16, 2, 32, 0, 0x100, 0, COLOR_EXPAND | MEMSYS_SRC, 0x0D);
        write_gr(&mut v, 0x33, EXT_DWORD_GRANULARITY);
        write_gr(&mut v, 0x31, START);
        assert!(cpu_source_active(&v));
        assert_eq!(v.regs.gr[0x31] & BUSY, BUSY);
        for b in [0xF0, 0x0F, 0, 0, 0x81, 0x00, 0, 0] {
            cirrus::linear_write(&mut v, 0, b);
        }
        assert!(!cpu_source_active(&v));
        assert_eq!(&v.vram[0x100..0x110], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(&v.vram[0x120..0x130], &[0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(v.vram[0], 0, "transfer data never reaches VRAM");
    }

    #[test]
    fn pattern_fill_and_mmio_registers() {
        let mut v = vga();
        // 8x8 pattern at 0x200 (8 bpp): row r = bytes r*8 .. r*8+7 with value r*16 + column
        for r in 0..8 {
            for c in 0..8 {
                v.vram[0x200 + r * 8 + c] = (r * 16 + c) as u8;
            }
        }
        // program through the MMIO block instead of GR ports
        let w = |v: &mut Vga, off: u32, val: u32, n: u32| {
            for i in 0..n {
                mmio_write(v, off + i, (val >> (8 * i)) as u8);
            }
        };
        w(&mut v, 0x08, 15, 2); // width 16
        w(&mut v, 0x0A, 9, 2); // height 10
        w(&mut v, 0x0C, 64, 2);
        w(&mut v, 0x10, 0x1000, 3);
        w(&mut v, 0x14, 0x200, 3);
        w(&mut v, 0x18, PATTERN as u32, 1);
        w(&mut v, 0x1A, 0x0D, 1);
        assert_eq!(mmio_read(&mut v, 0x08), 15);
        w(&mut v, 0x40, START as u32, 1);
        for y in 0..10usize {
            for x in 0..16usize {
                assert_eq!(v.vram[0x1000 + y * 64 + x], ((y & 7) * 16 + (x & 7)) as u8, "({x},{y})");
            }
        }
        assert_eq!(mmio_read(&mut v, 0x40) & BUSY, 0);
    }
}
