//! The VGA register file and its port I/O (0x3B0-0x3DF).
//!
//! Index/data pairs: sequencer 0x3C4/0x3C5, graphics controller 0x3CE/0x3CF, CRTC 0x3D4/0x3D5
//! (0x3B4/0x3B5 when the misc output register selects mono addressing), attribute controller
//! 0x3C0 (index/data flip-flop, reset by reading input status 1 at 0x3DA) and 0x3C1 (read), DAC
//! 0x3C6 (pixel mask) / 0x3C7 / 0x3C8 / 0x3C9. Extension registers (Cirrus SR/GR/CR above the
//! standard ones, the hidden DAC register) are forwarded to [`super::cirrus`].

use serde::{Deserialize, Serialize};

use super::{Extension, Vga};

/// Implemented bits of the standard sequencer registers SR0-SR4 (others read as zero).
const SR_MASK: [u8; 5] = [0x03, 0x3D, 0x0F, 0x3F, 0x0E];
/// Implemented bits of the standard graphics controller registers GR0-GR8.
const GR_MASK: [u8; 9] = [0x0F, 0x0F, 0x0F, 0x1F, 0x03, 0x7B, 0x0F, 0x0F, 0xFF];

/// Plain register state. Arrays are `Vec`s so serde can handle the 256-entry files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgaRegs {
    pub misc: u8,
    pub fcr: u8,
    pub sr_index: u8,
    pub sr: Vec<u8>,
    pub gr_index: u8,
    pub gr: Vec<u8>,
    pub cr_index: u8,
    pub cr: Vec<u8>,
    pub ar_index: u8,
    /// Attribute controller flip-flop: false = next 0x3C0 write is an index.
    pub ar_flip: bool,
    pub ar: Vec<u8>,
    /// 256 entries of 6-bit R, G, B.
    pub dac: Vec<u8>,
    pub dac_read_index: u8,
    pub dac_write_index: u8,
    pub dac_sub: u8,
    /// 0 = last index write was 0x3C8 (write mode), 3 = 0x3C7 (read mode).
    pub dac_state: u8,
    pub dac_cache: [u8; 3],
    pub pel_mask: u8,
    /// Video subsystem enable (port 0x3C3).
    pub enable: u8,
}

impl VgaRegs {
    pub fn new() -> Self {
        VgaRegs {
            misc: 0,
            fcr: 0,
            sr_index: 0,
            sr: vec![0; 256],
            gr_index: 0,
            gr: vec![0; 256],
            cr_index: 0,
            cr: vec![0; 256],
            ar_index: 0,
            ar_flip: false,
            ar: vec![0; 0x15],
            dac: vec![0; 768],
            dac_read_index: 0,
            dac_write_index: 0,
            dac_sub: 0,
            dac_state: 0,
            dac_cache: [0; 3],
            pel_mask: 0xFF,
            enable: 1,
        }
    }

    /// CRTC at 0x3Dx (colour) rather than 0x3Bx (mono).
    pub fn color_io(&self) -> bool {
        self.misc & 1 != 0
    }
}

impl Default for VgaRegs {
    fn default() -> Self {
        Self::new()
    }
}

/// Input status 1 (0x3DA): vertical retrace for ~1.2 ms of every 60 Hz frame, display enable
/// toggling at the line rate. Derived from virtual time so polling loops terminate.
fn input_status1(now_ns: u64) -> u8 {
    const FRAME_NS: u64 = 16_683_350;
    const VRETRACE_NS: u64 = 1_200_000;
    const LINE_NS: u64 = 31_778;
    let t = now_ns % FRAME_NS;
    let mut v = 0;
    if t >= FRAME_NS - VRETRACE_NS {
        v |= 0x09; // retrace, display disabled
    } else if (t % LINE_NS) > LINE_NS * 8 / 10 {
        v |= 0x01; // horizontal blanking
    }
    v
}

impl Vga {
    /// Whether `port` belongs to the CRTC/status block not selected by the misc register.
    fn port_inactive(&self, port: u16) -> bool {
        match port {
            0x3B0..=0x3BF => self.regs.color_io(),
            0x3D0..=0x3DF => !self.regs.color_io(),
            _ => false,
        }
    }

    pub fn port_read(&mut self, port: u16, now_ns: u64) -> u8 {
        if self.port_inactive(port) {
            return 0xFF;
        }
        if !matches!(port, 0x3C6) {
            if let Extension::Cirrus(c) = &mut self.ext {
                c.hidden_dac_count = 0;
            }
        }
        let r = &mut self.regs;
        match port {
            0x3C0 => {
                if r.ar_flip { 0 } else { r.ar_index }
            }
            0x3C1 => r.ar.get((r.ar_index & 0x1F) as usize).copied().unwrap_or(0),
            0x3C2 => 0x10, // input status 0: switch sense high (colour monitor)
            0x3C3 => r.enable,
            0x3C4 => r.sr_index,
            0x3C5 => self.read_sr(),
            0x3C6 => match &mut self.ext {
                Extension::Cirrus(c) => c.read_pel_mask(r.pel_mask),
                _ => r.pel_mask,
            },
            0x3C7 => r.dac_state,
            0x3C8 => r.dac_write_index,
            0x3C9 => {
                let hidden = matches!(&self.ext, Extension::Cirrus(_)) && r.sr[0x12] & 2 != 0;
                let i = r.dac_read_index as usize;
                let v = if hidden {
                    match &self.ext {
                        Extension::Cirrus(c) => c.hidden_palette[(i & 0xF) * 3 + r.dac_sub as usize],
                        _ => 0,
                    }
                } else {
                    r.dac[i * 3 + r.dac_sub as usize]
                };
                r.dac_sub += 1;
                if r.dac_sub == 3 {
                    r.dac_sub = 0;
                    r.dac_read_index = r.dac_read_index.wrapping_add(1);
                }
                v
            }
            0x3CA => r.fcr,
            0x3CC => r.misc,
            0x3CE => r.gr_index,
            0x3CF => self.read_gr(),
            0x3B4 | 0x3D4 => r.cr_index,
            0x3B5 | 0x3D5 => self.read_cr(),
            0x3BA | 0x3DA => {
                r.ar_flip = false;
                input_status1(now_ns)
            }
            _ => 0xFF,
        }
    }

    pub fn port_write(&mut self, port: u16, v: u8) {
        if self.port_inactive(port) {
            return;
        }
        if port != 0x3C6 {
            if let Extension::Cirrus(c) = &mut self.ext {
                c.hidden_dac_count = 0;
            }
        }
        let r = &mut self.regs;
        match port {
            0x3C0 => {
                if !r.ar_flip {
                    r.ar_index = v & 0x3F;
                } else {
                    let i = (r.ar_index & 0x1F) as usize;
                    match i {
                        0x00..=0x0F => r.ar[i] = v & 0x3F,
                        0x10 => r.ar[i] = v & !0x10,
                        0x11 => r.ar[i] = v,
                        0x12 => r.ar[i] = v & 0x3F,
                        0x13 | 0x14 => r.ar[i] = v & 0x0F,
                        _ => {}
                    }
                }
                r.ar_flip = !r.ar_flip;
            }
            0x3C2 => r.misc = v & !0x10,
            0x3C3 => r.enable = v & 1,
            0x3C4 => r.sr_index = v,
            0x3C5 => self.write_sr(v),
            0x3C6 => match &mut self.ext {
                Extension::Cirrus(c) => c.write_pel_mask(&mut r.pel_mask, v),
                _ => r.pel_mask = v,
            },
            0x3C7 => {
                r.dac_read_index = v;
                r.dac_sub = 0;
                r.dac_state = 3;
            }
            0x3C8 => {
                r.dac_write_index = v;
                r.dac_sub = 0;
                r.dac_state = 0;
            }
            0x3C9 => {
                r.dac_cache[r.dac_sub as usize] = v & 0x3F;
                r.dac_sub += 1;
                if r.dac_sub == 3 {
                    let i = r.dac_write_index as usize;
                    let hidden = r.sr[0x12] & 2 != 0;
                    match &mut self.ext {
                        Extension::Cirrus(c) if hidden => {
                            c.hidden_palette[(i & 0xF) * 3..(i & 0xF) * 3 + 3].copy_from_slice(&r.dac_cache)
                        }
                        _ => r.dac[i * 3..i * 3 + 3].copy_from_slice(&r.dac_cache),
                    }
                    r.dac_sub = 0;
                    r.dac_write_index = r.dac_write_index.wrapping_add(1);
                }
            }
            0x3CE => r.gr_index = v,
            0x3CF => self.write_gr(v),
            0x3B4 | 0x3D4 => r.cr_index = v,
            0x3B5 | 0x3D5 => self.write_cr(v),
            0x3BA | 0x3DA => r.fcr = v & 0x10,
            _ => {}
        }
    }

    fn read_sr(&mut self) -> u8 {
        let i = self.regs.sr_index;
        if let Extension::Cirrus(c) = &self.ext {
            if i >= 5 {
                return c.read_sr(&self.regs, i);
            }
        }
        if (i as usize) < SR_MASK.len() { self.regs.sr[i as usize] } else { 0xFF }
    }

    fn write_sr(&mut self, v: u8) {
        let i = self.regs.sr_index;
        if (i as usize) < SR_MASK.len() {
            self.regs.sr[i as usize] = v & SR_MASK[i as usize];
            return;
        }
        if let Extension::Cirrus(c) = &mut self.ext {
            c.write_sr(&mut self.regs, i, v);
        }
    }

    fn read_gr(&mut self) -> u8 {
        let i = self.regs.gr_index;
        if let Extension::Cirrus(c) = &self.ext {
            return c.read_gr(&self.regs, i);
        }
        if (i as usize) < GR_MASK.len() { self.regs.gr[i as usize] } else { 0xFF }
    }

    fn write_gr(&mut self, v: u8) {
        let i = self.regs.gr_index;
        if matches!(self.ext, Extension::Cirrus(_)) {
            cirrus::write_gr(self, i, v);
            return;
        }
        if (i as usize) < GR_MASK.len() {
            self.regs.gr[i as usize] = v & GR_MASK[i as usize];
        }
    }

    /// Standard GR write (used by the Cirrus handler for GR0-GR8).
    pub(super) fn write_std_gr(&mut self, i: u8, v: u8) {
        if (i as usize) < GR_MASK.len() {
            self.regs.gr[i as usize] = v & GR_MASK[i as usize];
        }
    }

    fn read_cr(&mut self) -> u8 {
        let i = self.regs.cr_index;
        if let Extension::Cirrus(c) = &self.ext {
            return c.read_cr(&self.regs, i);
        }
        if i <= 0x18 { self.regs.cr[i as usize] } else { 0xFF }
    }

    fn write_cr(&mut self, v: u8) {
        let i = self.regs.cr_index;
        let r = &mut self.regs;
        if i <= 0x18 {
            // CR11 bit 7 write-protects CR0-CR7, except the line compare bit 4 of CR7.
            if r.cr[0x11] & 0x80 != 0 && i <= 7 {
                if i == 7 {
                    r.cr[7] = (r.cr[7] & !0x10) | (v & 0x10);
                }
                return;
            }
            r.cr[i as usize] = v;
            return;
        }
        if let Extension::Cirrus(c) = &mut self.ext {
            c.write_cr(r, i, v);
        }
    }
}

use super::cirrus;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_flip_flop_and_status_reset() {
        let mut v = Vga::new(256 * 1024, Extension::None);
        v.port_write(0x3C2, 0x01); // colour I/O
        v.port_write(0x3C0, 0x10);
        v.port_write(0x3C0, 0x0C);
        assert_eq!(v.regs.ar[0x10], 0x0C);
        v.port_write(0x3C0, 0x31); // index with PAS
        let _ = v.port_read(0x3DA, 0); // back to index state
        v.port_write(0x3C0, 0x20 | 0x12);
        assert_eq!(v.port_read(0x3C0, 0), 0x00, "data phase reads 0");
        v.port_write(0x3C0, 0xFF);
        assert_eq!(v.regs.ar[0x12], 0x3F);
        assert_eq!(v.port_read(0x3C0, 0), 0x32, "index phase reads the index");
    }

    #[test]
    fn crtc_protect_and_mono_ports() {
        let mut v = Vga::new(256 * 1024, Extension::None);
        v.port_write(0x3C2, 0x01);
        v.port_write(0x3D4, 0x11);
        v.port_write(0x3D5, 0x80);
        v.port_write(0x3D4, 0x01);
        v.port_write(0x3D5, 0x4F);
        assert_eq!(v.regs.cr[1], 0, "CR1 protected");
        v.port_write(0x3D4, 0x07);
        v.port_write(0x3D5, 0xFF);
        assert_eq!(v.regs.cr[7], 0x10, "only CR7 bit 4 writable while protected");
        assert_eq!(v.port_read(0x3B4, 0), 0xFF, "mono CRTC ports inactive in colour mode");
    }

    #[test]
    fn dac_autoincrement() {
        let mut v = Vga::new(256 * 1024, Extension::None);
        v.port_write(0x3C8, 5);
        for x in [1, 2, 3, 4, 5, 6] {
            v.port_write(0x3C9, x);
        }
        assert_eq!(&v.regs.dac[15..21], &[1, 2, 3, 4, 5, 6]);
        v.port_write(0x3C7, 6);
        assert_eq!([v.port_read(0x3C9, 0), v.port_read(0x3C9, 0), v.port_read(0x3C9, 0)], [4, 5, 6]);
        assert_eq!(v.port_read(0x3C7, 0), 3);
    }
}
