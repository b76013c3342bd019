//! Alphanumeric modes: characters and attributes from planes 0/1, glyphs from the font the guest
//! loaded into plane 2 (32 bytes per character, in the maps SR3 selects), 8 or 9 dot cells with
//! the line-graphics ninth column, attribute blink and the hardware cursor.

use vessel_core::display::Rect;

use super::render::TextMode;
use super::Vga;

/// Cursor blink period: 16 frames on, 16 off at 60 Hz; attribute blink at half that rate.
const CURSOR_HALF_PERIOD_NS: u64 = 16 * 16_683_350;

pub fn render(vga: &mut Vga, t: &TextMode, mut full: bool, now_ns: u64) -> (Rect, u32) {
    let mask = vga.vram.len() - 1;
    let vram_len = vga.vram.len();
    let cursor_on = (now_ns / CURSOR_HALF_PERIOD_NS) % 2 == 0;
    let blink_on = (now_ns / (2 * CURSOR_HALF_PERIOD_NS)) % 2 == 0;
    // font rewritten -> everything may look different
    if vga.display.font_dirty {
        full = true;
    }
    let cells = (t.rows * t.cols) as usize;
    if vga.display.text_shadow.len() != cells {
        vga.display.text_shadow = vec![0; cells];
        full = true;
    }
    if t.blink_enabled && blink_on != vga.display.last_blink {
        full = true;
    }
    vga.display.last_blink = blink_on;
    // the cell the cursor is on, if any
    let cursor_cell = t.cursor.and_then(|(pos, cs, ce)| {
        let rel = pos.wrapping_sub(t.start);
        let (row, col) = if t.pitch == 0 { (0, rel) } else { (rel / t.pitch, rel % t.pitch) };
        (row < t.rows && col < t.cols).then_some((row, col, cs, ce))
    });
    let cursor_key = t.cursor.map(|(pos, _, _)| (pos, cursor_on && cursor_cell.is_some()));
    let mut cursor_rows = [None, None];
    if vga.display.last_cursor != cursor_key {
        if let Some((pos, _)) = vga.display.last_cursor {
            let rel = pos.wrapping_sub(t.start);
            if t.pitch != 0 {
                cursor_rows[0] = Some(rel / t.pitch);
            }
        }
        cursor_rows[1] = cursor_cell.map(|c| c.0);
    }
    vga.display.last_cursor = cursor_key;

    let fw = vga.display.frame.width as usize;
    let mut dirty = Rect::default();
    let mut lines = 0;
    for row in 0..t.rows {
        let addr = t.start.wrapping_add(row * t.pitch) as usize;
        let s = (addr * 4) & mask;
        let mut changed = full || cursor_rows.contains(&Some(row));
        if vga.display.range_dirty(s, s + t.cols as usize * 4, vram_len) {
            // compare with what is on screen; update the shadow
            for col in 0..t.cols as usize {
                let cell = ((addr + col) * 4) & mask;
                let v = vga.vram[cell] as u16 | (vga.vram[cell + 1] as u16) << 8;
                let sh = &mut vga.display.text_shadow[row as usize * t.cols as usize + col];
                if *sh != v {
                    *sh = v;
                    changed = true;
                }
            }
        } else if full {
            for col in 0..t.cols as usize {
                let cell = ((addr + col) * 4) & mask;
                vga.display.text_shadow[row as usize * t.cols as usize + col] =
                    vga.vram[cell] as u16 | (vga.vram[cell + 1] as u16) << 8;
            }
        }
        if !changed {
            continue;
        }
        let y0 = row * t.cell_h;
        let rows_here = t.cell_h.min(vga.display.frame.height - y0);
        for col in 0..t.cols {
            let cell = ((addr + col as usize) * 4) & mask;
            let ch = vga.vram[cell];
            let attr = vga.vram[cell + 1];
            let mut fg = t.colors[(attr & 0x0F) as usize];
            let bg = if t.blink_enabled {
                let bg = t.colors[((attr >> 4) & 7) as usize];
                if attr & 0x80 != 0 && !blink_on {
                    fg = bg;
                }
                bg
            } else {
                t.colors[(attr >> 4) as usize]
            };
            let font = t.font[((attr >> 3) & 1) as usize] as usize;
            let dup9 = t.dot9 && t.line_graphics && (0xC0..=0xDF).contains(&ch);
            let cur = cursor_cell.filter(|c| cursor_on && c.0 == row && c.1 == col);
            let x0 = (col * t.cell_w) as usize;
            for yy in 0..rows_here {
                let fl = if t.cell_h > t.font_h { yy / 2 } else { yy };
                let mut bits = vga.vram[((font + ch as usize * 32 + fl as usize) * 4 + 2) & mask] as u16;
                bits <<= 1;
                if dup9 {
                    bits |= bits >> 1 & 1;
                }
                if let Some((_, _, cs, ce)) = cur {
                    let ce = ce.min(t.font_h - 1);
                    if cs <= ce && fl >= cs && fl <= ce {
                        bits = 0x1FF;
                    }
                }
                let dots = if t.dot9 { 9 } else { 8 };
                let line = ((y0 + yy) as usize * fw + x0) * 4;
                let out = &mut vga.display.frame.rgba[line..line + t.cell_w as usize * 4];
                let mut o = 0;
                for d in 0..dots {
                    let on = bits & (0x100 >> d) != 0;
                    let c = if on { fg } else { bg };
                    out[o..o + 4].copy_from_slice(&c);
                    o += 4;
                    if t.wide {
                        out[o..o + 4].copy_from_slice(&c);
                        o += 4;
                    }
                }
            }
        }
        lines += rows_here;
        dirty = dirty.union(Rect { x: 0, y: y0, width: vga.display.frame.width, height: rows_here });
    }
    (dirty, lines)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{Extension, Vga};
    use vessel_core::display::Rect;

    /// Mode 3 registers as the VGA BIOS programs them (80x25, 9x16 cells).
    pub(crate) fn mode3() -> Vga {
        let mut v = Vga::new(256 * 1024, Extension::None);
        let r = &mut v.regs;
        r.misc = 0x67;
        r.sr[1] = 0x00;
        r.sr[2] = 0x03;
        r.sr[4] = 0x02;
        r.gr[5] = 0x10;
        r.gr[6] = 0x0E;
        r.cr[0x01] = 0x4F;
        r.cr[0x07] = 0x1F;
        r.cr[0x09] = 0x4F;
        r.cr[0x0A] = 0x0D;
        r.cr[0x0B] = 0x0E;
        r.cr[0x12] = 0x8F;
        r.cr[0x13] = 0x28;
        r.cr[0x17] = 0xA3;
        r.cr[0x18] = 0xFF;
        r.ar_index = 0x20;
        for i in 0..16 {
            r.ar[i] = [0, 1, 2, 3, 4, 5, 0x14, 7, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F][i];
        }
        r.ar[0x10] = 0x0C;
        r.ar[0x12] = 0x0F;
        // EGA-style DAC for the 64 attribute palette values used above
        for i in 0..64usize {
            let c = |hi: usize, lo: usize| (((i >> hi) & 1) * 0x2A + ((i >> lo) & 1) * 0x15) as u8;
            r.dac[i * 3..i * 3 + 3].copy_from_slice(&[c(2, 5), c(1, 4), c(0, 3)]);
        }
        v
    }

    #[test]
    fn glyph_from_plane2_with_colours_and_ninth_column() {
        let mut v = mode3();
        // glyph for 'A' (0x41): a vertical bar in column 0 and the rightmost column 7
        for l in 0..16 {
            v.vram[(0x41 * 32 + l) * 4 + 2] = 0x81;
            v.vram[(0xC4 * 32 + l) * 4 + 2] = 0xFF; // box-drawing horizontal line
        }
        // row 1, col 2: 'A' white on blue; row 1, col 3: 0xC4 light grey on black
        let cell = 80 + 2;
        v.vram[cell * 4] = 0x41;
        v.vram[cell * 4 + 1] = 0x1F;
        v.vram[(cell + 1) * 4] = 0xC4;
        v.vram[(cell + 1) * 4 + 1] = 0x07;
        v.regs.cr[0x0A] = 0x20; // cursor off
        let f = v.update_frame(0).clone();
        assert_eq!((f.width, f.height), (720, 400));
        assert_eq!(f.dirty, None);
        let white = [0xFF, 0xFF, 0xFF, 0xFF];
        let blue = [0, 0, 168, 0xFF];
        let (x0, y0) = (2 * 9, 16);
        assert_eq!(f.pixel(x0, y0 + 3), white);
        assert_eq!(f.pixel(x0 + 1, y0 + 3), blue);
        assert_eq!(f.pixel(x0 + 7, y0 + 3), white);
        assert_eq!(f.pixel(x0 + 8, y0 + 3), blue, "9th column is background for letters");
        let grey = [168, 168, 168, 0xFF];
        assert_eq!(f.pixel(x0 + 9 + 8, y0), grey, "9th column repeats column 8 for 0xC0-0xDF");
        assert_eq!(f.pixel(0, 0), [0, 0, 0, 0xFF]);
    }

    #[test]
    fn incremental_redraw_and_cursor() {
        let mut v = mode3();
        for l in 0..16 {
            v.vram[(0x41 * 32 + l) * 4 + 2] = 0xFF;
        }
        v.regs.cr[0x0A] = 0x20;
        let _ = v.update_frame(0);
        assert_eq!(v.update_frame(0).dirty, Some(Rect::default()), "nothing changed");
        // write a character through the CPU window on row 10
        v.mem_write(0x18000 + (10 * 80 + 5) * 2, 0x41);
        v.mem_write(0x18000 + (10 * 80 + 5) * 2 + 1, 0x07);
        let f = v.update_frame(0);
        let d = f.dirty.unwrap();
        assert!(d.y <= 160 && d.y + d.height >= 176, "row 10 redrawn: {d:?}");
        assert_eq!(d.height, 16, "only the changed row: {d:?}");
        assert_eq!(f.pixel(5 * 9 + 3, 165), [168, 168, 168, 0xFF]);
        assert_eq!(v.display.lines_drawn, d.height);
        // cursor on at row 24, col 0, lines 14-15: redraws that row only
        v.regs.cr[0x0A] = 0x0E;
        v.regs.cr[0x0B] = 0x0F;
        v.regs.cr[0x0E] = ((24 * 80) >> 8) as u8;
        v.regs.cr[0x0F] = (24 * 80) as u8;
        v.vram[24 * 80 * 4 + 1] = 0x07;
        let f = v.update_frame(0);
        assert_eq!(f.dirty, Some(Rect { x: 0, y: 384, width: 720, height: 16 }));
        assert_eq!(f.pixel(4, 384 + 14), [168, 168, 168, 0xFF]);
        assert_eq!(f.pixel(4, 384 + 13), [0, 0, 0, 0xFF]);
        // half a blink period later the cursor is off
        let f = v.update_frame(super::CURSOR_HALF_PERIOD_NS);
        assert_eq!(f.pixel(4, 384 + 14), [0, 0, 0, 0xFF]);
    }
}
