//! From registers and VRAM to the RGBA [`Frame`] front ends get: mode decoding, palettes and
//! incremental redraw.
//!
//! Incremental rendering: every VRAM write marks its 4 KiB page in a bitmap. A refresh decodes
//! the current mode ([`Mode`], which includes the resolved palette); if it differs from the last
//! refresh everything is redrawn, otherwise only scanlines (or text rows) whose source bytes lie
//! in a dirty page. The union of redrawn lines becomes the frame's dirty rectangle, and the
//! bitmap is cleared. Mode decoding costs a few hundred nanoseconds, so an idle screen costs
//! almost nothing per refresh.

use vessel_core::display::{Frame, Rect};

use super::{graphics, text, Extension, Vga};

const PAGE_SHIFT: usize = 12;

/// Renderer bookkeeping (not guest state).
#[derive(Clone, Debug, Default)]
pub struct DisplayState {
    pub frame: Frame,
    /// One bit per 4 KiB page of VRAM written since the last refresh.
    pub dirty_pages: Vec<u64>,
    /// Redraw everything at the next refresh.
    pub full: bool,
    pub last_mode: Option<Mode>,
    /// Text cursor as last drawn: (cell address, visible).
    pub last_cursor: Option<(u32, bool)>,
    pub last_blink: bool,
    /// Lines redrawn by the last refresh (for measurements).
    pub lines_drawn: u32,
    /// Plane 2 (the text font) written since the last refresh.
    pub font_dirty: bool,
    /// Character + attribute of every cell as last drawn (text modes compare against it, so a
    /// dirty page only redraws the rows that really changed).
    pub text_shadow: Vec<u16>,
}

impl DisplayState {
    pub fn invalidate(&mut self) {
        self.full = true;
    }

    #[inline]
    pub fn mark(&mut self, off: usize) {
        if off & 3 == 2 {
            self.font_dirty = true;
        }
        let page = off >> PAGE_SHIFT;
        if let Some(w) = self.dirty_pages.get_mut(page >> 6) {
            *w |= 1 << (page & 63);
        } else {
            self.full = true;
        }
    }

    pub fn mark_range(&mut self, off: usize, len: usize, vram_len: usize) {
        if len == 0 {
            return;
        }
        if len >= vram_len {
            self.full = true;
            return;
        }
        self.font_dirty = true;
        let first = off >> PAGE_SHIFT;
        let last = (off + len - 1) >> PAGE_SHIFT;
        let pages = vram_len >> PAGE_SHIFT;
        for p in first..=last {
            let p = p % pages;
            if let Some(w) = self.dirty_pages.get_mut(p >> 6) {
                *w |= 1 << (p & 63);
            }
        }
    }

    /// Whether any page overlapping VRAM bytes `[start, end)` (wrapping at `vram_len`) is dirty.
    pub fn range_dirty(&self, start: usize, end: usize, vram_len: usize) -> bool {
        if end <= start {
            return false;
        }
        if end - start >= vram_len {
            return true;
        }
        let pages = vram_len >> PAGE_SHIFT;
        let first = start >> PAGE_SHIFT;
        let last = (end - 1) >> PAGE_SHIFT;
        (first..=last).any(|p| {
            let p = p % pages;
            self.dirty_pages[p >> 6] & (1 << (p & 63)) != 0
        })
    }
}

/// Parameters of an alphanumeric mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextMode {
    pub cols: u32,
    pub rows: u32,
    /// Character cell width in pixels (8, 9, or doubled 16/18 with the /2 dot clock).
    pub cell_w: u32,
    pub cell_h: u32,
    /// Font scanlines per character (cell_h / 2 with double scan).
    pub font_h: u32,
    pub dot9: bool,
    pub wide: bool,
    /// Planar address of the first character.
    pub start: u32,
    /// Planar addresses between rows.
    pub pitch: u32,
    /// Planar addresses of the two character sets (attribute bit 3 = 0 / 1).
    pub font: [u32; 2],
    pub line_graphics: bool,
    pub blink_enabled: bool,
    pub cursor: Option<(u32, u32, u32)>,
    /// Attribute -> colour for the 16 text colours.
    pub colors: [[u8; 4]; 16],
}

/// Parameters of a graphics mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphicsMode {
    pub kind: graphics::Kind,
    pub width: u32,
    pub height: u32,
    /// VRAM byte address of the first line.
    pub start: u32,
    /// VRAM bytes between lines.
    pub pitch: u32,
    /// Output lines per memory line (scan doubling / max scan line).
    pub scan_mult: u32,
    /// Output line at which the CRTC restarts at address 0 (split screen), if inside the screen.
    pub line_compare: Option<u32>,
    /// Dot clock halved: each pixel is two output pixels wide (planar modes).
    pub double_width: bool,
    /// CGA compatibility addressing (CR17 bit 0 clear): odd rows from the second bank.
    pub cga_banks: bool,
    /// Colour lookup for palettized kinds (256 entries; 16 used by planar modes).
    pub palette: Vec<[u8; 4]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Screen off (no palette access, sequencer screen off or nothing programmed).
    Blank { width: u32, height: u32 },
    Text(TextMode),
    Graphics(GraphicsMode),
}

/// 6-bit DAC value to 8 bits as QEMU shows it (so screenshots compare exactly).
#[inline]
pub fn c6_to_8(v: u8) -> u8 {
    let v = v & 0x3F;
    let b = v & 1;
    (v << 2) | (b << 1) | b
}

/// DAC entry `i` as RGBA.
pub fn dac_rgba(vga: &Vga, i: u8) -> [u8; 4] {
    let d = &vga.regs.dac[i as usize * 3..i as usize * 3 + 3];
    [c6_to_8(d[0]), c6_to_8(d[1]), c6_to_8(d[2]), 0xFF]
}

/// The DAC index the attribute controller produces for 4-bit colour `c`.
pub fn attr_to_dac(vga: &Vga, c: u8) -> u8 {
    let ar = &vga.regs.ar;
    let c = c & ar[0x12] & 0x0F;
    let p = ar[c as usize];
    let v = if ar[0x10] & 0x80 != 0 { (p & 0x0F) | ((ar[0x14] & 0x03) << 4) } else { p & 0x3F };
    v | ((ar[0x14] & 0x0C) << 4)
}

/// Vertical display end + 1 from CR12/CR07.
fn vde(vga: &Vga) -> u32 {
    let cr = &vga.regs.cr;
    (cr[0x12] as u32 | ((cr[0x07] as u32 & 0x02) << 7) | ((cr[0x07] as u32 & 0x40) << 3)) + 1
}

fn line_compare(vga: &Vga) -> u32 {
    let cr = &vga.regs.cr;
    cr[0x18] as u32 | ((cr[0x07] as u32 & 0x10) << 4) | ((cr[0x09] as u32 & 0x40) << 3)
}

/// Start address and line offset (both in planar address units before any shift).
fn crtc_start_offset(vga: &Vga) -> (u32, u32) {
    let cr = &vga.regs.cr;
    let mut start = ((cr[0x0C] as u32) << 8) | cr[0x0D] as u32;
    let mut offset = cr[0x13] as u32;
    if let Extension::Cirrus(_) = vga.ext {
        start |= ((cr[0x1B] as u32 & 0x01) << 16) | ((cr[0x1B] as u32 & 0x0C) << 15) | ((cr[0x1D] as u32 & 0x80) << 12);
        offset |= (cr[0x1B] as u32 & 0x10) << 4;
    }
    (start, offset)
}

/// Decode the current mode from the registers.
pub fn decode(vga: &Vga) -> Mode {
    let r = &vga.regs;
    let cr = &r.cr;
    let char_w = if r.sr[1] & 1 != 0 { 8 } else { 9 };
    let h_chars = cr[0x01] as u32 + 1;
    let height = vde(vga);
    if let Some(m) = super::bochs::decode(vga) {
        return m;
    }
    if let Some(m) = super::cirrus::decode(vga, height) {
        return m;
    }
    if r.ar_index & 0x20 == 0 || r.sr[1] & 0x20 != 0 || height < 2 || cr[0x01] == 0 {
        let w = if r.gr[6] & 1 == 0 { h_chars * char_w } else { h_chars * 8 };
        return Mode::Blank { width: w.max(8), height: height.max(2) };
    }
    let (start, offset) = crtc_start_offset(vga);
    let max_scan = (cr[0x09] as u32 & 0x1F) + 1;
    let double_scan = cr[0x09] & 0x80 != 0;
    if r.gr[6] & 1 == 0 {
        let font_h = max_scan;
        let cell_h = font_h << double_scan as u32;
        let wide = r.sr[1] & 0x08 != 0;
        let cell_w = char_w << wide as u32;
        let rows = height.div_ceil(cell_h);
        let sr3 = r.sr[3] as u32;
        let map_b = ((sr3 >> 4) & 1) | ((sr3 << 1) & 6);
        let map_a = ((sr3 >> 5) & 1) | ((sr3 >> 1) & 6);
        let cursor_start = cr[0x0A] as u32;
        let cursor = (cursor_start & 0x20 == 0).then(|| {
            let pos = ((cr[0x0E] as u32) << 8) | cr[0x0F] as u32;
            (pos, cursor_start & 0x1F, cr[0x0B] as u32 & 0x1F)
        });
        let mut colors = [[0u8; 4]; 16];
        for (i, c) in colors.iter_mut().enumerate() {
            *c = dac_rgba(vga, attr_to_dac(vga, i as u8));
        }
        return Mode::Text(TextMode {
            cols: h_chars,
            rows,
            cell_w,
            cell_h,
            font_h,
            dot9: char_w == 9,
            wide,
            start,
            pitch: offset * 2,
            font: [map_b * 0x2000, map_a * 0x2000],
            line_graphics: r.ar[0x10] & 0x04 != 0,
            blink_enabled: r.ar[0x10] & 0x08 != 0,
            cursor,
            colors,
        });
    }
    let shift = (r.gr[5] >> 5) & 3;
    let width = h_chars * 8;
    let scan_mult = max_scan << double_scan as u32;
    let lc = line_compare(vga);
    let (kind, palette) = if shift >= 2 {
        let pal = (0..=255u8).map(|i| dac_rgba(vga, i)).collect();
        (graphics::Kind::Vga256, pal)
    } else {
        let pal = (0..16u8).map(|i| dac_rgba(vga, attr_to_dac(vga, i))).collect();
        (if shift == 1 { graphics::Kind::Cga4 } else { graphics::Kind::Planar16 }, pal)
    };
    Mode::Graphics(GraphicsMode {
        kind,
        width,
        height,
        start: start * 4,
        pitch: offset * 8,
        scan_mult,
        line_compare: (lc < height).then_some(lc),
        double_width: r.sr[1] & 0x08 != 0,
        cga_banks: cr[0x17] & 1 == 0,
        palette,
    })
}

/// Bring the device's frame up to date. Sets `frame.dirty` to what this call changed
/// (`None` = everything, `Some(empty)` = nothing).
pub fn update(vga: &mut Vga, now_ns: u64) {
    let pages = vga.vram.len() >> PAGE_SHIFT;
    if vga.display.dirty_pages.len() != pages.div_ceil(64) {
        vga.display.dirty_pages = vec![0; pages.div_ceil(64)];
        vga.display.full = true;
    }
    let mode = decode(vga);
    let (w, h) = match &mode {
        Mode::Blank { width, height } => (*width, *height),
        Mode::Text(t) => (t.cols * t.cell_w, t.rows * t.cell_h),
        Mode::Graphics(g) => (g.width, g.height),
    };
    // The text cursor is tracked separately (moving it redraws two rows, not the screen).
    let mut key = mode.clone();
    if let Mode::Text(t) = &mut key {
        t.cursor = None;
    }
    let mut full = vga.display.full || vga.display.last_mode.as_ref() != Some(&key);
    let gen_before = vga.display.frame.mode_generation;
    vga.display.frame.resize(w, h);
    if vga.display.frame.mode_generation != gen_before {
        full = true;
    }
    let mut dirty = Rect::default();
    let mut lines = 0;
    match &mode {
        Mode::Blank { .. } => {
            if full {
                for px in vga.display.frame.rgba.chunks_exact_mut(4) {
                    px.copy_from_slice(&[0, 0, 0, 0xFF]);
                }
                lines = h;
            }
        }
        Mode::Text(t) => {
            let (d, l) = text::render(vga, t, full, now_ns);
            dirty = d;
            lines = l;
        }
        Mode::Graphics(g) => {
            let (d, l) = graphics::render(vga, g, full);
            dirty = d;
            lines = l;
        }
    }
    vga.display.frame.dirty = if full { None } else { Some(dirty) };
    vga.display.lines_drawn = lines;
    vga.display.full = false;
    vga.display.font_dirty = false;
    vga.display.dirty_pages.iter_mut().for_each(|w| *w = 0);
    vga.display.last_mode = Some(key);
}

#[cfg(test)]
mod cost {
    //! Render cost: full and incremental refreshes of a text screen and of 1024x768 modes.
    //! Prints per-refresh times (`cargo test --release -p vessel-machines render_cost -- --nocapture`);
    //! asserts on the work done (lines redrawn), not on time.
    use super::super::cirrus::CirrusState;
    use super::super::{Extension, Vga};
    use std::time::Instant;

    fn time(label: &str, vga: &mut Vga, mut touch: impl FnMut(&mut Vga, u32)) -> (f64, u32) {
        let n = 50;
        let mut lines = 0;
        let t = Instant::now();
        for i in 0..n {
            touch(vga, i);
            let _ = vga.update_frame(0);
            lines = vga.display.lines_drawn;
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("render cost: {label:<40} {us:>9.1} us/refresh, {lines} lines redrawn");
        (us, lines)
    }

    fn cirrus_1024x768(sr7: u8, bpp: u32) -> Vga {
        let mut v = Vga::new(4 << 20, Extension::Cirrus(CirrusState::new()));
        let r = &mut v.regs;
        r.sr[7] = sr7;
        r.cr[0x01] = 0x7F;
        r.cr[0x12] = 0xFF;
        r.cr[0x07] = 0x40;
        let offset = 1024 * bpp / 8 / 8; // CR13 counts 8-byte units
        r.cr[0x13] = offset as u8;
        r.cr[0x1B] = 0x22 | (((offset >> 8) as u8 & 1) << 4);
        r.ar_index = 0x20;
        for (i, b) in v.vram.iter_mut().enumerate() {
            *b = (i * 7 / 3) as u8;
        }
        v
    }

    #[test]
    fn render_cost() {
        let mut t = super::super::text::tests::mode3();
        for (i, b) in t.vram.iter_mut().enumerate().take(80 * 25 * 4) {
            if i % 4 < 2 {
                *b = if i % 4 == 0 { b'A' + (i / 4 % 26) as u8 } else { 0x07 };
            }
        }
        t.regs.cr[0x0A] = 0x20;
        let (_, l) = time("text 80x25 full (720x400)", &mut t, |v, _| v.display.invalidate());
        assert_eq!(l, 400);
        let (_, l) = time("text 80x25 idle", &mut t, |_, _| {});
        assert_eq!(l, 0);
        let (_, l) = time("text 80x25 one character", &mut t, |v, i| v.mem_write(0x18000 + 2 * 1000, i as u8));
        assert_eq!(l, 16);
        for (label, sr7, bpp) in [("1024x768x8", 0x01, 8), ("1024x768x16", 0x07, 16), ("1024x768x24", 0x05, 24)] {
            let mut v = cirrus_1024x768(sr7, bpp);
            let (_, l) = time(&format!("{label} full"), &mut v, |v, _| v.display.invalidate());
            assert_eq!(l, 768);
            let (_, l) = time(&format!("{label} idle"), &mut v, |_, _| {});
            assert_eq!(l, 0);
            let pitch = 1024 * bpp as usize / 8;
            let (_, l) = time(&format!("{label} one pixel"), &mut v, |v, i| {
                super::super::cirrus::linear_write(v, (pitch * 300 + 40) as u64, i as u8)
            });
            // the lines sharing the written 4 KiB page
            assert!(l >= 1 && l as usize <= 4096 / pitch + 1, "{l}");
        }
    }
}
