//! PIIX bus-master IDE (BAR 4, 8 ports per channel): command / status / PRD table address
//! registers and the scatter-gather walk over the guest's Physical Region Descriptor table.
//!
//! A PRD entry is 8 bytes: a physical address (bit 0 zero), a byte count in the low 16 bits of
//! the second dword (0 means 64 KiB) and end-of-table in bit 31. The walk keeps its position
//! across calls, so one ATA command may be moved in several chunks (the I/O worker reads up to
//! 128 KiB at a time).

use serde::{Deserialize, Serialize};

pub const CMD_START: u8 = 0x01;
/// Bus-master writes to memory (a read from the drive).
pub const CMD_TO_MEMORY: u8 = 0x08;
pub const ST_ACTIVE: u8 = 0x01;
pub const ST_ERROR: u8 = 0x02;
pub const ST_INTERRUPT: u8 = 0x04;
/// Drive 0/1 DMA capable (software-set bits).
pub const ST_CAPABLE: u8 = 0x60;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusMaster {
    pub cmd: u8,
    pub status: u8,
    /// PRD table base (dword aligned).
    pub table: u32,
    /// Address of the next PRD entry to fetch.
    next_entry: u32,
    /// Current entry's remaining region.
    cur_addr: u32,
    cur_left: u32,
    /// The current entry is the last one.
    last: bool,
    /// The table is used up.
    exhausted: bool,
}

impl BusMaster {
    pub fn started(&self) -> bool {
        self.cmd & CMD_START != 0
    }

    pub fn to_memory(&self) -> bool {
        self.cmd & CMD_TO_MEMORY != 0
    }

    /// Register read at `off` (0..8) of the channel's block.
    pub fn read(&self, off: u16) -> u8 {
        match off {
            0 => self.cmd,
            2 => self.status,
            4..=7 => (self.table >> (8 * (off - 4))) as u8,
            _ => 0,
        }
    }

    /// Register write. Returns `Some(true)` when the start bit went 0 -> 1, `Some(false)` when it
    /// went 1 -> 0, `None` otherwise.
    pub fn write(&mut self, off: u16, v: u8) -> Option<bool> {
        match off {
            0 => {
                let was = self.started();
                // the direction bit can only change while stopped
                self.cmd = if was { (self.cmd & CMD_TO_MEMORY) | (v & CMD_START) } else { v & (CMD_START | CMD_TO_MEMORY) };
                match (was, self.started()) {
                    (false, true) => {
                        self.status |= ST_ACTIVE;
                        self.rewind();
                        Some(true)
                    }
                    (true, false) => {
                        self.status &= !ST_ACTIVE;
                        Some(false)
                    }
                    _ => None,
                }
            }
            2 => {
                self.status = (self.status & !(ST_CAPABLE | ((v & (ST_ERROR | ST_INTERRUPT))))) | (v & ST_CAPABLE);
                None
            }
            4..=7 => {
                let sh = 8 * (off - 4);
                self.table = (self.table & !(0xFF << sh)) | ((v as u32) << sh);
                self.table &= !3;
                None
            }
            _ => None,
        }
    }

    fn rewind(&mut self) {
        self.next_entry = self.table;
        self.cur_left = 0;
        self.last = false;
        self.exhausted = false;
    }

    /// Move to the next region if the current one is used up. False: the table ended.
    fn region(&mut self, ram: &[u8]) -> bool {
        while self.cur_left == 0 {
            if self.last || self.exhausted {
                self.exhausted = true;
                return false;
            }
            let e = self.next_entry as usize;
            let word = |i: usize| -> u32 {
                ram.get(e + i..e + i + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
            };
            let (addr, ctl) = (word(0), word(4));
            self.next_entry = self.next_entry.wrapping_add(8);
            self.cur_addr = addr & !1;
            let n = ctl & 0xFFFE;
            self.cur_left = if n == 0 { 0x10000 } else { n };
            self.last = ctl & 0x8000_0000 != 0;
        }
        true
    }

    /// Copy `data` into guest memory along the table. Returns the bytes placed (less than
    /// `data.len()` when the table is too short).
    pub fn scatter(&mut self, ram: &mut [u8], data: &[u8]) -> usize {
        let mut done = 0;
        while done < data.len() && self.region(ram) {
            let n = (self.cur_left as usize).min(data.len() - done);
            let a = self.cur_addr as usize;
            if a < ram.len() {
                let m = n.min(ram.len() - a);
                ram[a..a + m].copy_from_slice(&data[done..done + m]);
            }
            self.cur_addr = self.cur_addr.wrapping_add(n as u32);
            self.cur_left -= n as u32;
            done += n;
        }
        done
    }

    /// Fill `out` from guest memory along the table. Returns the bytes gathered.
    pub fn gather(&mut self, ram: &[u8], out: &mut [u8]) -> usize {
        let mut done = 0;
        while done < out.len() && self.region(ram) {
            let n = (self.cur_left as usize).min(out.len() - done);
            let a = self.cur_addr as usize;
            for (i, b) in out[done..done + n].iter_mut().enumerate() {
                *b = ram.get(a + i).copied().unwrap_or(0xFF);
            }
            self.cur_addr = self.cur_addr.wrapping_add(n as u32);
            self.cur_left -= n as u32;
            done += n;
        }
        done
    }

    /// The transfer finished: the engine stops (the guest still has to clear the start bit).
    pub fn complete(&mut self) {
        self.status &= !ST_ACTIVE;
        self.status |= ST_INTERRUPT;
    }

    /// The table ended before the transfer did.
    pub fn fail(&mut self) {
        self.status &= !ST_ACTIVE;
        self.status |= ST_INTERRUPT | ST_ERROR;
    }
}
