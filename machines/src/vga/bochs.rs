//! The Bochs DISPI interface of QEMU's standard VGA (`-vga std`): index/data ports 0x1CE/0x1CF
//! (and MMIO at BAR 2 + 0x500), giving `vgabios-stdvga.bin` its VBE linear modes.

use serde::{Deserialize, Serialize};

use super::render::{dac_rgba, GraphicsMode, Mode};
use super::{graphics::Kind, Extension, Vga};

pub const INDEX_ID: u16 = 0;
pub const INDEX_XRES: u16 = 1;
pub const INDEX_YRES: u16 = 2;
pub const INDEX_BPP: u16 = 3;
pub const INDEX_ENABLE: u16 = 4;
pub const INDEX_BANK: u16 = 5;
pub const INDEX_VIRT_WIDTH: u16 = 6;
pub const INDEX_VIRT_HEIGHT: u16 = 7;
pub const INDEX_X_OFFSET: u16 = 8;
pub const INDEX_Y_OFFSET: u16 = 9;
pub const INDEX_VIDEO_MEMORY_64K: u16 = 10;
pub const ID5: u16 = 0xB0C5;
pub const ENABLED: u16 = 0x01;
pub const GETCAPS: u16 = 0x02;
pub const NOCLEARMEM: u16 = 0x80;
pub const MAX_XRES: u16 = 2560;
pub const MAX_YRES: u16 = 1600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispi {
    pub index: u16,
    pub regs: [u16; 10],
    pub vram_64k: u16,
}

impl Dispi {
    pub fn new(vram_len: usize) -> Self {
        let mut regs = [0; 10];
        regs[INDEX_ID as usize] = ID5;
        regs[INDEX_BPP as usize] = 8;
        Dispi { index: 0, regs, vram_64k: (vram_len >> 16) as u16 }
    }

    pub fn enabled(&self) -> bool {
        self.regs[INDEX_ENABLE as usize] & ENABLED != 0
    }

    fn bytes_pp(&self) -> u32 {
        (u32::from(self.regs[INDEX_BPP as usize]) + 7) / 8
    }
}

fn dispi(vga: &mut Vga) -> &mut Dispi {
    match &mut vga.ext {
        Extension::Bochs(d) => d,
        _ => unreachable!(),
    }
}

pub fn read(vga: &mut Vga, index: u16) -> u16 {
    let d = dispi(vga);
    let caps = d.regs[INDEX_ENABLE as usize] & GETCAPS != 0;
    match index {
        INDEX_XRES if caps => MAX_XRES,
        INDEX_YRES if caps => MAX_YRES,
        INDEX_BPP if caps => 32,
        INDEX_VIDEO_MEMORY_64K => d.vram_64k,
        i if (i as usize) < d.regs.len() => d.regs[i as usize],
        _ => 0,
    }
}

pub fn write(vga: &mut Vga, index: u16, v: u16) {
    let vram_len = vga.vram.len();
    let d = dispi(vga);
    match index {
        INDEX_ID => {
            if (0xB0C0..=ID5).contains(&v) {
                d.regs[0] = v;
            }
        }
        INDEX_XRES | INDEX_YRES if v > if index == INDEX_XRES { MAX_XRES } else { MAX_YRES } => {}
        INDEX_BPP => {
            if matches!(v, 0 | 4 | 8 | 15 | 16 | 24 | 32) {
                d.regs[3] = if v == 0 { 8 } else { v };
            }
        }
        INDEX_ENABLE => {
            let was = d.enabled();
            d.regs[4] = v;
            if v & ENABLED != 0 && !was {
                let xres = u32::from(d.regs[INDEX_XRES as usize]);
                d.regs[INDEX_VIRT_WIDTH as usize] = xres as u16;
                let pitch = xres * d.bytes_pp();
                if pitch != 0 {
                    d.regs[INDEX_VIRT_HEIGHT as usize] = (vram_len as u32 / pitch).min(0xFFFF) as u16;
                }
                d.regs[INDEX_X_OFFSET as usize] = 0;
                d.regs[INDEX_Y_OFFSET as usize] = 0;
                if v & NOCLEARMEM == 0 {
                    vga.vram.iter_mut().for_each(|b| *b = 0);
                }
                // like the hardware: graphics mode, chain-4, 256-colour shift
                vga.regs.gr[6] = (vga.regs.gr[6] & !0x0C) | 0x05;
                vga.regs.sr[4] |= 0x08;
                vga.display.invalidate();
            }
        }
        INDEX_VIRT_WIDTH => {
            d.regs[6] = v;
            let pitch = u32::from(v) * d.bytes_pp();
            if pitch != 0 {
                d.regs[7] = (vram_len as u32 / pitch).min(0xFFFF) as u16;
            }
        }
        INDEX_VIRT_HEIGHT => {}
        i if (i as usize) < d.regs.len() => d.regs[i as usize] = v,
        _ => {}
    }
}

pub fn port_read(vga: &mut Vga, port: u16) -> u16 {
    match port {
        0x1CE => dispi(vga).index,
        _ => {
            let i = dispi(vga).index;
            read(vga, i)
        }
    }
}

pub fn port_write(vga: &mut Vga, port: u16, v: u16) {
    match port {
        0x1CE => dispi(vga).index = v,
        _ => {
            let i = dispi(vga).index;
            write(vga, i, v)
        }
    }
}

/// 64 KiB banks at 0xA0000 while DISPI is on.
pub fn window_read(vga: &mut Vga, addr: u32) -> u8 {
    let bank = usize::from(dispi(vga).regs[INDEX_BANK as usize]);
    if addr >= 0x10000 {
        return 0xFF;
    }
    let a = (bank << 16) + addr as usize;
    vga.vram.get(a).copied().unwrap_or(0xFF)
}

pub fn window_write(vga: &mut Vga, addr: u32, v: u8) {
    let bank = usize::from(dispi(vga).regs[INDEX_BANK as usize]);
    if addr >= 0x10000 {
        return;
    }
    let a = (bank << 16) + addr as usize;
    if a < vga.vram.len() {
        vga.vram[a] = v;
        vga.mark_dirty(a);
    }
}

pub fn decode(vga: &Vga) -> Option<Mode> {
    let Extension::Bochs(d) = &vga.ext else { return None };
    if !d.enabled() {
        return None;
    }
    let r = &d.regs;
    let (w, h) = (u32::from(r[1]), u32::from(r[2]));
    if w == 0 || h == 0 {
        return Some(Mode::Blank { width: 640, height: 480 });
    }
    let kind = match r[3] {
        15 => Kind::Rgb555,
        16 => Kind::Rgb565,
        24 => Kind::Rgb888,
        32 => Kind::Rgbx8888,
        _ => Kind::Linear8,
    };
    let bpp = d.bytes_pp();
    let pitch = u32::from(r[INDEX_VIRT_WIDTH as usize]) * bpp;
    let start = u32::from(r[INDEX_Y_OFFSET as usize]) * pitch + u32::from(r[INDEX_X_OFFSET as usize]) * bpp;
    let palette = if kind == Kind::Linear8 { (0..=255u8).map(|i| dac_rgba(vga, i)).collect() } else { Vec::new() };
    Some(Mode::Graphics(GraphicsMode {
        kind,
        width: w,
        height: h,
        start,
        pitch,
        scan_mult: 1,
        line_compare: None,
        double_width: false,
        cga_banks: false,
        palette,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vbe_mode_set_and_render() {
        let mut v = Vga::new(16 << 20, Extension::Bochs(Dispi::new(16 << 20)));
        port_write(&mut v, 0x1CE, INDEX_ID);
        assert_eq!(port_read(&mut v, 0x1CF), ID5);
        port_write(&mut v, 0x1CE, INDEX_VIDEO_MEMORY_64K);
        assert_eq!(port_read(&mut v, 0x1CF), 256);
        for (i, val) in [(INDEX_XRES, 800), (INDEX_YRES, 600), (INDEX_BPP, 32), (INDEX_ENABLE, ENABLED | 0x40)] {
            port_write(&mut v, 0x1CE, i);
            port_write(&mut v, 0x1CF, val);
        }
        let off = (600 - 1) * 800 * 4 + 799 * 4;
        v.vram[off..off + 4].copy_from_slice(&[1, 2, 3, 0]);
        let f = v.update_frame(0);
        assert_eq!((f.width, f.height), (800, 600));
        assert_eq!(f.pixel(799, 599), [3, 2, 1, 0xFF]);
    }
}
