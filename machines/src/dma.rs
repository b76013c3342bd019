//! Intel 8237 DMA controller pair (ISA DMA): DMA1 = channels 0-3 (byte, ports 0x00-0x0F),
//! DMA2 = channels 4-7 (word, ports 0xC0-0xDF), page registers at 0x81-0x8F.
//!
//! Transfers are not clocked: a device that is ready (the floppy controller) calls
//! [`Dma::transfer`] and the whole block moves at once, which is what QEMU does as well.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub base_addr: u16,
    pub base_count: u16,
    pub cur_addr: u16,
    pub cur_count: u16,
    pub mode: u8,
    pub page: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controller {
    pub ch: [Channel; 4],
    /// Byte-pointer flip-flop: false = next access is the low byte.
    pub flip_flop: bool,
    pub mask: u8,
    pub status: u8,
    pub command: u8,
    pub request: u8,
    pub temp: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dma {
    pub ctrl: [Controller; 2],
    /// Page registers 0x80-0x8F as written (0x80 itself doubles as the POST port on the board).
    pub page_regs: [u8; 16],
}

/// Page register port offset (from 0x80) for each channel.
const PAGE_PORT: [u8; 8] = [0x7, 0x3, 0x1, 0x2, 0xF, 0xB, 0x9, 0xA];

impl Controller {
    fn read(&mut self, reg: u8) -> u8 {
        match reg {
            0..=7 => {
                let c = &self.ch[(reg >> 1) as usize];
                let v = if reg & 1 == 0 { c.cur_addr } else { c.cur_count };
                let b = if self.flip_flop { (v >> 8) as u8 } else { v as u8 };
                self.flip_flop = !self.flip_flop;
                b
            }
            8 => {
                let s = self.status;
                self.status &= 0xF0; // terminal-count bits clear on read
                s
            }
            0xD => self.temp,
            0xF => self.mask | 0xF0,
            _ => 0xFF,
        }
    }

    fn write(&mut self, reg: u8, v: u8) {
        match reg {
            0..=7 => {
                let c = &mut self.ch[(reg >> 1) as usize];
                let (base, cur) = if reg & 1 == 0 { (&mut c.base_addr, &mut c.cur_addr) } else { (&mut c.base_count, &mut c.cur_count) };
                *base = if self.flip_flop { (*base & 0x00FF) | ((v as u16) << 8) } else { (*base & 0xFF00) | v as u16 };
                *cur = *base;
                self.flip_flop = !self.flip_flop;
            }
            8 => self.command = v,
            9 => {
                let bit = 1 << (v & 3);
                if v & 4 != 0 { self.request |= bit } else { self.request &= !bit }
            }
            0xA => {
                let bit = 1 << (v & 3);
                if v & 4 != 0 { self.mask |= bit } else { self.mask &= !bit }
            }
            0xB => self.ch[(v & 3) as usize].mode = v,
            0xC => self.flip_flop = false,
            0xD => {
                // master clear
                self.flip_flop = false;
                self.mask = 0xF;
                self.status = 0;
                self.command = 0;
                self.request = 0;
            }
            0xE => self.mask = 0,
            0xF => self.mask = v & 0xF,
            _ => {}
        }
    }
}

impl Dma {
    pub fn new() -> Self {
        let mut d = Dma::default();
        d.reset();
        d
    }

    pub fn reset(&mut self) {
        for c in &mut self.ctrl {
            c.write(0xD, 0);
        }
    }

    /// Handles ports 0x00-0x0F, 0xC0-0xDF and 0x81-0x8F. Returns `None` for other ports.
    pub fn io_read(&mut self, port: u16) -> Option<u8> {
        match port {
            0x00..=0x0F => Some(self.ctrl[0].read(port as u8)),
            0xC0..=0xDF => Some(self.ctrl[1].read(((port - 0xC0) >> 1) as u8)),
            0x81..=0x8F => Some(self.page_regs[(port - 0x80) as usize]),
            _ => None,
        }
    }

    pub fn io_write(&mut self, port: u16, v: u8) -> bool {
        match port {
            0x00..=0x0F => self.ctrl[0].write(port as u8, v),
            0xC0..=0xDF => self.ctrl[1].write(((port - 0xC0) >> 1) as u8, v),
            0x80..=0x8F => {
                self.page_regs[(port - 0x80) as usize] = v;
                for (n, p) in PAGE_PORT.iter().enumerate() {
                    if *p as u16 == port - 0x80 {
                        self.ctrl[n / 4].ch[n % 4].page = v;
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Whether `channel` (0-7) is unmasked, i.e. the guest has programmed it for a transfer.
    pub fn channel_ready(&self, channel: usize) -> bool {
        self.ctrl[channel / 4].mask & (1 << (channel % 4)) == 0
    }

    /// Bytes [`Dma::transfer`] can still move on `channel` before terminal count (0 while the
    /// channel is masked). A device uses it to tell whether a block it moves ends at TC.
    pub fn remaining(&self, channel: usize) -> usize {
        if !self.channel_ready(channel) {
            return 0;
        }
        let unit = if channel >= 4 { 2 } else { 1 };
        (self.ctrl[channel / 4].ch[channel % 4].cur_count as usize + 1) * unit
    }

    /// Moves up to `buf.len()` bytes between `buf` and guest RAM on `channel` (0-7). The direction
    /// comes from the channel's mode register (bits 2-3: 01 = write to memory, 10 = read memory).
    /// Returns the number of bytes moved; sets terminal count when the count is exhausted.
    pub fn transfer(&mut self, channel: usize, ram: &mut [u8], buf: &mut [u8]) -> usize {
        if !self.channel_ready(channel) {
            return 0;
        }
        let word = channel >= 4;
        let ctl = &mut self.ctrl[channel / 4];
        let c = &mut ctl.ch[channel % 4];
        let unit = if word { 2 } else { 1 };
        let remaining = (c.cur_count as usize + 1) * unit;
        let n = buf.len().min(remaining);
        let dir = (c.mode >> 2) & 3;
        let down = c.mode & 0x20 != 0;
        for (i, b) in buf.iter_mut().enumerate().take(n) {
            let (addr, off) = if word {
                let a = (((c.page as u32) & 0xFE) << 16) | ((c.cur_addr as u32) << 1);
                (a, (i & 1) as u32)
            } else {
                (((c.page as u32) << 16) | c.cur_addr as u32, 0)
            };
            let pa = (addr + off) as usize;
            match dir {
                1 => {
                    if let Some(m) = ram.get_mut(pa) {
                        *m = *b
                    }
                }
                2 => *b = ram.get(pa).copied().unwrap_or(0xFF),
                _ => {}
            }
            if !word || i & 1 == 1 {
                c.cur_addr = if down { c.cur_addr.wrapping_sub(1) } else { c.cur_addr.wrapping_add(1) };
                c.cur_count = c.cur_count.wrapping_sub(1);
            }
        }
        if n == remaining {
            ctl.status |= 1 << (channel % 4);
            if c.mode & 0x10 != 0 {
                c.cur_addr = c.base_addr;
                c.cur_count = c.base_count;
            } else {
                ctl.mask |= 1 << (channel % 4);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floppy_style_transfer_to_memory() {
        let mut d = Dma::new();
        // program channel 2: single mode, write to memory (0x46), addr 0x1000 page 0x02, 512 bytes
        d.io_write(0x0C, 0);
        d.io_write(0x0B, 0x46);
        d.io_write(0x04, 0x00);
        d.io_write(0x04, 0x10);
        d.io_write(0x81, 0x02);
        d.io_write(0x05, 0xFF);
        d.io_write(0x05, 0x01);
        assert!(!d.channel_ready(2));
        d.io_write(0x0A, 0x02);
        let mut ram = vec![0u8; 0x30000];
        let mut buf = [0x5Au8; 600];
        assert_eq!(d.remaining(2), 512);
        assert_eq!(d.transfer(2, &mut ram, &mut buf), 512);
        assert_eq!(d.remaining(2), 0);
        assert_eq!(ram[0x21000], 0x5A);
        assert_eq!(ram[0x211FF], 0x5A);
        assert_eq!(ram[0x21200], 0);
        assert_eq!(d.io_read(0x08).unwrap() & 4, 4, "terminal count");
        assert!(!d.channel_ready(2), "masked after terminal count without autoinit");
    }
}
