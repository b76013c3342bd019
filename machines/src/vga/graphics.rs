//! Graphics renderers: planar 16-colour (modes 0Dh-12h), CGA-compatible 4-colour, VGA 256-colour
//! (mode 13h and unchained "mode X") and the linear packed-pixel modes of the Cirrus and Bochs
//! extensions (8 bpp palettized, 15/16/24/32 bpp direct colour). Each output line is redrawn only
//! when its source bytes are on a dirty VRAM page.

use serde::{Deserialize, Serialize};
use vessel_core::display::Rect;

use super::render::GraphicsMode;
use super::Vga;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Four planes, one bit per plane per pixel (GR5 shift mode 0).
    Planar16,
    /// Interleaved shift mode (GR5 bit 5): two bits per pixel from planes 0/1.
    Cga4,
    /// 256-colour shift mode: one byte per pixel, each pixel two dots wide.
    Vga256,
    /// Extension modes, one pixel per `bytes` bytes of linear VRAM.
    Linear8,
    Rgb555,
    Rgb565,
    Rgb888,
    Rgbx8888,
}

impl Kind {
    /// Source VRAM bytes one output line of `width` pixels reads.
    fn line_bytes(self, width: u32, double_width: bool) -> usize {
        let px = if double_width { width / 2 } else { width } as usize;
        match self {
            Kind::Planar16 => px.div_ceil(8) * 4,
            Kind::Cga4 => px.div_ceil(4) * 2,
            Kind::Vga256 => px / 2,
            Kind::Linear8 => px,
            Kind::Rgb555 | Kind::Rgb565 => px * 2,
            Kind::Rgb888 => px * 3,
            Kind::Rgbx8888 => px * 4,
        }
    }
}

/// 5- and 6-bit colour channels to 8 bits by replicating their top bits into the low ones, so
/// full intensity is 255 (white stays white). QEMU's displayed (and screendumped) 16-bpp
/// surfaces convert the same way.
fn expand5(c: u16) -> u8 {
    let c = (c & 0x1F) as u8;
    (c << 3) | (c >> 2)
}
fn expand6(c: u16) -> u8 {
    let c = (c & 0x3F) as u8;
    (c << 2) | (c >> 4)
}

pub fn render(vga: &mut Vga, g: &GraphicsMode, full: bool) -> (Rect, u32) {
    let mask = vga.vram.len() - 1;
    let vram_len = vga.vram.len();
    let fw = vga.display.frame.width as usize;
    let line_bytes = g.kind.line_bytes(g.width, g.double_width);
    let mut dirty = Rect::default();
    let mut lines = 0;
    let mut base = g.start as usize;
    let mut origin = 0u32;
    let scan_mult = g.scan_mult.max(1);
    let mut first_dirty: Option<u32> = None;
    let mut last_dirty = 0;
    for y in 0..g.height {
        if g.line_compare == Some(y) && y != 0 {
            base = 0;
            origin = y;
        }
        let scan = (y - origin) / scan_mult;
        let mut addr = base + scan as usize * g.pitch as usize;
        if g.cga_banks && g.kind == Kind::Cga4 {
            // CGA layout: even pixel rows in the first 8 KiB, odd ones in the second (CPU offset
            // 0x2000 = VRAM byte 0x4000 in the odd/even layout), 80 CPU bytes per pixel row.
            let p = (y - origin) as usize / (scan_mult as usize / 2).max(1);
            addr = base + (p / 2) * (g.pitch as usize / 2) + (p & 1) * 0x4000;
        }
        let addr = addr & mask;
        if !full && !vga.display.range_dirty(addr, addr + line_bytes, vram_len) {
            continue;
        }
        let row = y as usize * fw * 4;
        let out = &mut vga.display.frame.rgba[row..row + g.width as usize * 4];
        let vram = &vga.vram;
        let pal = &g.palette;
        match g.kind {
            Kind::Planar16 => {
                for (x, px) in out.chunks_exact_mut(4).enumerate() {
                    let p = if g.double_width { x / 2 } else { x };
                    let a = (addr + (p / 8) * 4) & mask;
                    let bit = 7 - (p % 8);
                    let c = ((vram[a] >> bit) & 1)
                        | (((vram[a + 1] >> bit) & 1) << 1)
                        | (((vram[a + 2] >> bit) & 1) << 2)
                        | (((vram[a + 3] >> bit) & 1) << 3);
                    px.copy_from_slice(&pal[c as usize]);
                }
            }
            Kind::Cga4 => {
                for (x, px) in out.chunks_exact_mut(4).enumerate() {
                    let p = if g.double_width { x / 2 } else { x };
                    // 4 pixels per byte; even bytes in plane 0, odd in plane 1
                    let byte = p / 4;
                    let a = (addr + (byte / 2) * 4 + (byte & 1)) & mask;
                    let c = (vram[a] >> (6 - 2 * (p % 4))) & 3;
                    px.copy_from_slice(&pal[c as usize]);
                }
            }
            Kind::Vga256 => {
                for (x, px) in out.chunks_exact_mut(4).enumerate() {
                    px.copy_from_slice(&pal[vram[(addr + x / 2) & mask] as usize]);
                }
            }
            Kind::Linear8 => {
                for (x, px) in out.chunks_exact_mut(4).enumerate() {
                    px.copy_from_slice(&pal[vram[(addr + x) & mask] as usize]);
                }
            }
            Kind::Rgb555 | Kind::Rgb565 => {
                for (x, px) in out.chunks_exact_mut(4).enumerate() {
                    let a = (addr + 2 * x) & mask;
                    let v = u16::from_le_bytes([vram[a], vram[(a + 1) & mask]]);
                    let (r, g, b) = if g.kind == Kind::Rgb565 {
                        (expand5(v >> 11), expand6(v >> 5), expand5(v))
                    } else {
                        (expand5(v >> 10), expand5(v >> 5), expand5(v))
                    };
                    px.copy_from_slice(&[r, g, b, 0xFF]);
                }
            }
            Kind::Rgb888 => {
                for (x, px) in out.chunks_exact_mut(4).enumerate() {
                    let a = addr + 3 * x;
                    px.copy_from_slice(&[vram[(a + 2) & mask], vram[(a + 1) & mask], vram[a & mask], 0xFF]);
                }
            }
            Kind::Rgbx8888 => {
                for (x, px) in out.chunks_exact_mut(4).enumerate() {
                    let a = addr + 4 * x;
                    px.copy_from_slice(&[vram[(a + 2) & mask], vram[(a + 1) & mask], vram[a & mask], 0xFF]);
                }
            }
        }
        lines += 1;
        if first_dirty.is_none() {
            first_dirty = Some(y);
        }
        last_dirty = y;
    }
    if let Some(f) = first_dirty {
        dirty = Rect { x: 0, y: f, width: g.width, height: last_dirty - f + 1 };
    }
    (dirty, lines)
}

#[cfg(test)]
mod tests {
    use super::super::{Extension, Vga};
    use vessel_core::display::Rect;

    /// Mode 12h (640x480x16) and mode 13h (320x200x256) register sets as the VGA BIOS writes them.
    fn mode12() -> Vga {
        let mut v = Vga::new(256 * 1024, Extension::None);
        let r = &mut v.regs;
        r.misc = 0xE3;
        r.sr[1] = 0x01;
        r.sr[2] = 0x0F;
        r.sr[4] = 0x06;
        r.gr[5] = 0x00;
        r.gr[6] = 0x05;
        r.gr[8] = 0xFF;
        r.cr[0x01] = 0x4F;
        r.cr[0x07] = 0x3E;
        r.cr[0x09] = 0x40;
        r.cr[0x12] = 0xDF;
        r.cr[0x13] = 0x28;
        r.cr[0x17] = 0xE3;
        r.cr[0x18] = 0xFF;
        r.ar_index = 0x20;
        for i in 0..16 {
            r.ar[i] = i as u8;
        }
        r.ar[0x10] = 0x01;
        r.ar[0x12] = 0x0F;
        for i in 0..16usize {
            r.dac[i * 3..i * 3 + 3].copy_from_slice(&[(i * 4) as u8, 0, (63 - i * 4) as u8]);
        }
        v
    }

    #[test]
    fn high_colour_channels_expand_to_full_range() {
        // r5g6b5 / x1r5g5b5: full intensity is 255, not 248 (what QEMU shows too)
        assert_eq!((super::expand5(0x1F), super::expand6(0x3F)), (255, 255));
        assert_eq!((super::expand5(0), super::expand6(0)), (0, 0));
        assert_eq!((super::expand5(21), super::expand6(42)), (173, 170)); // VGA blue, green
    }

    #[test]
    fn planar16_pixels_from_four_planes() {
        let mut v = mode12();
        // write mode 2: colour 9 to the leftmost pixel of line 3
        v.regs.gr[5] = 2;
        v.regs.gr[8] = 0x80;
        let _ = v.mem_read(3 * 80);
        v.mem_write(3 * 80, 9);
        let f = v.update_frame(0);
        assert_eq!((f.width, f.height), (640, 480));
        assert_eq!(f.pixel(0, 3), [super::super::render::c6_to_8(36), 0, super::super::render::c6_to_8(27), 0xFF]);
        assert_eq!(f.pixel(1, 3), [0, 0, 0xFF, 0xFF]);
        // draw on line 400: only that page's lines are redrawn
        v.mem_write(400 * 80 + 10, 0xFF);
        let f = v.update_frame(0);
        let d = f.dirty.unwrap();
        assert!(d.y <= 400 && d.y + d.height > 400 && d.height <= 52, "{d:?}");
        // a palette change redraws everything
        v.port_write(0x3C8, 0);
        v.port_write(0x3C9, 1);
        v.port_write(0x3C9, 1);
        v.port_write(0x3C9, 1);
        assert_eq!(v.update_frame(0).dirty, None);
        assert_eq!(v.update_frame(0).dirty, Some(Rect::default()));
    }

    #[test]
    fn mode13h_chain4() {
        let mut v = mode12();
        let r = &mut v.regs;
        r.sr[4] = 0x0E;
        r.gr[5] = 0x40;
        r.cr[0x09] = 0x41;
        r.cr[0x12] = 0x8F;
        r.cr[0x07] = 0x1F;
        r.cr[0x14] = 0x40;
        r.cr[0x17] = 0xA3;
        r.ar[0x10] = 0x41;
        r.dac[200 * 3..200 * 3 + 3].copy_from_slice(&[63, 32, 0]);
        v.mem_write(199 * 320 + 319, 200);
        let f = v.update_frame(0);
        assert_eq!((f.width, f.height), (640, 400));
        let c = [0xFF, super::super::render::c6_to_8(32), 0, 0xFF];
        assert_eq!(f.pixel(639, 399), c);
        assert_eq!(f.pixel(638, 398), c);
        assert_eq!(f.pixel(637, 399), [0, 0, 0xFF, 0xFF]);
    }
}
