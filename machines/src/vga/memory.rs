//! The CPU's view of VGA memory through the legacy window (offsets from 0xA0000).
//!
//! GR6 bits 2-3 choose the window (128K at A0000, 64K at A0000, 32K at B0000 or B8000); SR4 bit 3
//! (chain-4) and SR4 bit 2 clear (odd/even) choose the addressing; otherwise the access is
//! planar: reads load the four latches and return one plane (read mode 0) or a colour-compare
//! result (read mode 1); writes go through write modes 0-3 (rotate, set/reset, ALU function
//! with the latches, bit mask) to the planes enabled in the map mask SR2.

use super::{bochs, cirrus, Extension, Vga};

/// Byte `b` replicated into the four plane lanes.
#[inline]
fn spread(b: u8) -> u32 {
    u32::from(b) * 0x0101_0101
}

/// Bit n of `m` set -> byte n all ones.
#[inline]
fn mask16(m: u8) -> u32 {
    let mut v = 0;
    for p in 0..4 {
        if m & (1 << p) != 0 {
            v |= 0xFF << (8 * p);
        }
    }
    v
}

impl Vga {
    /// Byte read at `addr` (offset from 0xA0000, < 0x20000).
    pub fn mem_read(&mut self, addr: u32) -> u8 {
        match &self.ext {
            Extension::Cirrus(c) if c.extended(&self.regs) => return cirrus::window_read(self, addr),
            Extension::Bochs(b) if b.enabled() => return bochs::window_read(self, addr),
            _ => {}
        }
        self.std_mem_read(addr)
    }

    pub fn mem_write(&mut self, addr: u32, v: u8) {
        match &self.ext {
            Extension::Cirrus(c) if c.extended(&self.regs) => return cirrus::window_write(self, addr, v),
            Extension::Bochs(b) if b.enabled() => return bochs::window_write(self, addr, v),
            _ => {}
        }
        self.std_mem_write(addr, v)
    }

    /// Offset inside the window selected by GR6, or None when `addr` is outside it.
    fn window_offset(&self, addr: u32) -> Option<u32> {
        let (base, size) = match (self.regs.gr[6] >> 2) & 3 {
            0 => (0, 0x20000),
            1 => (0, 0x10000),
            2 => (0x10000, 0x8000),
            _ => (0x18000, 0x8000),
        };
        (addr >= base && addr < base + size).then(|| addr - base)
    }

    /// Standard VGA read.
    pub fn std_mem_read(&mut self, addr: u32) -> u8 {
        let Some(a) = self.window_offset(addr) else { return 0xFF };
        let a = a as usize;
        let mask = self.vram_mask();
        let r = &self.regs;
        if r.sr[4] & 0x08 != 0 {
            // chain-4: low two address bits select the plane; VRAM is linear in this layout
            return self.vram[a & mask];
        }
        if r.sr[4] & 0x04 == 0 {
            // odd/even: A0 selects plane 0/1 (plus read map select bit 1 for planes 2/3)
            let plane = (r.gr[4] as usize & 2) | (a & 1);
            let base = ((a >> 1) << 2) & mask;
            self.latch = u32::from_le_bytes(self.vram[base..base + 4].try_into().unwrap());
            return self.vram[base + plane];
        }
        let base = (a << 2) & mask;
        self.latch = u32::from_le_bytes(self.vram[base..base + 4].try_into().unwrap());
        if r.gr[5] & 0x08 == 0 {
            // read mode 0: the plane chosen by read map select
            (self.latch >> (8 * (r.gr[4] & 3))) as u8
        } else {
            // read mode 1: 1 where every "care" plane matches the colour compare value
            let diff = (self.latch ^ mask16(r.gr[2])) & mask16(r.gr[7]);
            let d = diff | (diff >> 8) | (diff >> 16) | (diff >> 24);
            !(d as u8)
        }
    }

    /// Standard VGA write.
    pub fn std_mem_write(&mut self, addr: u32, v: u8) {
        let Some(a) = self.window_offset(addr) else { return };
        let a = a as usize;
        let mask = self.vram_mask();
        let r = &self.regs;
        if r.sr[4] & 0x08 != 0 {
            if r.sr[2] & (1 << (a & 3)) != 0 {
                self.vram[a & mask] = v;
                self.mark_dirty(a);
            }
            return;
        }
        if r.sr[4] & 0x04 == 0 {
            let plane = (r.gr[4] as usize & 2) | (a & 1);
            if r.sr[2] & (1 << plane) != 0 {
                let off = (((a >> 1) << 2) | plane) & mask;
                self.vram[off] = v;
                self.mark_dirty(off);
            }
            return;
        }
        let data = self.planar_write_value(v);
        let r_sr2 = r.sr[2];
        let planes = mask16(r_sr2 & 0x0F);
        let base = (a << 2) & mask;
        let old = u32::from_le_bytes(self.vram[base..base + 4].try_into().unwrap());
        let new = (old & !planes) | (data & planes);
        self.vram[base..base + 4].copy_from_slice(&new.to_le_bytes());
        self.mark_dirty(base);
        if r_sr2 & 4 != 0 {
            self.display.font_dirty = true;
        }
    }

    /// The 32-bit value (one byte per plane) write modes 0-3 produce for CPU byte `v`.
    pub fn planar_write_value(&self, v: u8) -> u32 {
        let r = &self.regs;
        let mode = r.gr[5] & 3;
        let mut bit_mask = r.gr[8];
        let set_reset = mask16(r.gr[0]);
        let data = match mode {
            0 => {
                let rot = v.rotate_right(u32::from(r.gr[3] & 7));
                let en = mask16(r.gr[1]);
                (spread(rot) & !en) | (set_reset & en)
            }
            1 => return self.latch,
            2 => mask16(v & 0x0F),
            _ => {
                let rot = v.rotate_right(u32::from(r.gr[3] & 7));
                bit_mask &= rot;
                set_reset
            }
        };
        let l = self.latch;
        let alu = match (r.gr[3] >> 3) & 3 {
            0 => data,
            1 => data & l,
            2 => data | l,
            _ => data ^ l,
        };
        let bm = spread(bit_mask);
        (alu & bm) | (l & !bm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planar() -> Vga {
        let mut v = Vga::new(256 * 1024, Extension::None);
        v.regs.sr[2] = 0x0F;
        v.regs.sr[4] = 0x06; // planar, no chain-4, no odd/even
        v.regs.gr[5] = 0x00;
        v.regs.gr[6] = 0x05; // A0000 64K, graphics
        v.regs.gr[8] = 0xFF;
        v
    }

    fn planes(v: &Vga, a: usize) -> [u8; 4] {
        v.vram[a * 4..a * 4 + 4].try_into().unwrap()
    }

    #[test]
    fn write_mode0_rotate_set_reset_and_map_mask() {
        let mut v = planar();
        v.std_mem_write(0, 0x81);
        assert_eq!(planes(&v, 0), [0x81; 4]);
        v.regs.gr[3] = 1; // rotate right by 1
        v.std_mem_write(1, 0x81);
        assert_eq!(planes(&v, 1), [0xC0; 4]);
        v.regs.gr[3] = 0;
        v.regs.gr[0] = 0b0101; // set/reset value
        v.regs.gr[1] = 0b0011; // enabled for planes 0, 1
        v.regs.sr[2] = 0b1011; // plane 2 masked off
        v.std_mem_write(2, 0x3C);
        assert_eq!(planes(&v, 2), [0xFF, 0x00, 0x00, 0x3C]);
    }

    #[test]
    fn latches_alu_and_bit_mask() {
        let mut v = planar();
        v.vram[40..44].copy_from_slice(&[0xF0, 0x0F, 0xAA, 0x55]);
        assert_eq!(v.std_mem_read(10), 0xF0, "read mode 0, map 0");
        assert_eq!(v.latch, 0x55AA_0FF0);
        v.regs.gr[3] = 0x08; // AND
        v.regs.gr[8] = 0x3C; // only middle bits from the ALU
        v.std_mem_write(10, 0xFF);
        // AND with 0xFF gives the latch back everywhere
        assert_eq!(planes(&v, 10), [0xF0, 0x0F, 0xAA, 0x55]);
        v.regs.gr[3] = 0x18; // XOR
        v.std_mem_write(10, 0xFF);
        assert_eq!(planes(&v, 10), [0xCC, 0x33, 0x96, 0x69]);
        // write mode 1 copies the latches (loaded from address 10 before) to address 11
        let _ = v.std_mem_read(10);
        v.regs.gr[5] = 1;
        v.std_mem_write(11, 0x00);
        assert_eq!(planes(&v, 11), [0xCC, 0x33, 0x96, 0x69]);
    }

    #[test]
    fn write_modes_2_and_3() {
        let mut v = planar();
        v.regs.gr[5] = 2;
        v.regs.gr[8] = 0x0F;
        v.std_mem_write(0, 0x05); // colour 5 into the low nibble, high nibble from latch (0)
        assert_eq!(planes(&v, 0), [0x0F, 0x00, 0x0F, 0x00]);
        v.regs.gr[5] = 3;
        v.regs.gr[0] = 0x0A;
        v.regs.gr[8] = 0xF0;
        let _ = v.std_mem_read(0); // latch the colour-5 pixels
        v.std_mem_write(0, 0xCC); // bit mask = 0xF0 & 0xCC = 0xC0
        assert_eq!(planes(&v, 0), [0x0F, 0xC0, 0x0F, 0xC0]);
    }

    #[test]
    fn read_mode1_colour_compare() {
        let mut v = planar();
        v.vram[0..4].copy_from_slice(&[0b1100_0000, 0b1010_0000, 0, 0]);
        v.regs.gr[5] = 0x08;
        v.regs.gr[2] = 0b0011; // colour 3
        v.regs.gr[7] = 0x0F;
        assert_eq!(v.std_mem_read(0), 0b1000_0000);
        v.regs.gr[7] = 0b0001; // only plane 0 matters
        assert_eq!(v.std_mem_read(0), 0b1100_0000);
    }

    #[test]
    fn chain4_and_odd_even_addressing() {
        let mut v = planar();
        v.regs.sr[4] = 0x0E; // chain-4
        v.std_mem_write(0x1235, 0x77);
        assert_eq!(v.vram[0x1235], 0x77);
        assert_eq!(v.std_mem_read(0x1235), 0x77);
        v.regs.sr[4] = 0x02; // odd/even
        v.regs.sr[2] = 0x03;
        v.regs.gr[6] = 0x0E; // B8000 32K
        v.std_mem_write(0x18000 + 2 * 7, b'A');
        v.std_mem_write(0x18000 + 2 * 7 + 1, 0x1F);
        assert_eq!(v.vram[7 * 4], b'A');
        assert_eq!(v.vram[7 * 4 + 1], 0x1F);
        assert_eq!(v.std_mem_read(0x18000 + 15), 0x1F);
        v.std_mem_write(0x100, 1); // outside the B8000 window: ignored
        assert_eq!(v.std_mem_read(0x100), 0xFF);
    }
}
