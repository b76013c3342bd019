//! Intel 8254 programmable interval timer (ports 0x40-0x43) and port 0x61 (PC speaker gate,
//! timer 2 output, DRAM refresh toggle).
//!
//! Counters are not stepped: each channel remembers when its count was loaded and everything
//! (current count, output level, next rising edge) is computed from the virtual time passed in,
//! so the model is exact at any time resolution and costs nothing between accesses.

use serde::{Deserialize, Serialize};

/// Input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

fn ticks(ns: u64) -> u64 {
    (ns as u128 * PIT_HZ as u128 / 1_000_000_000) as u64
}

/// First virtual time (ns) at which `ticks` input clocks have elapsed.
fn ticks_to_ns(t: u64) -> u64 {
    ((t as u128 * 1_000_000_000).div_ceil(PIT_HZ as u128)) as u64
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Reload value; 0x10000 for a written 0.
    pub count: u32,
    pub latched_count: u16,
    /// 0 = nothing latched; otherwise the access mode (1 lo, 2 hi, 3 lo then hi) of the latch.
    pub count_latched: u8,
    pub status_latched: bool,
    pub status: u8,
    /// Read/write byte toggles for access mode 3.
    pub read_hi: bool,
    pub write_hi: bool,
    pub write_latch: u8,
    /// Access mode: 1 = LSB, 2 = MSB, 3 = LSB then MSB.
    pub rw_mode: u8,
    pub mode: u8,
    pub bcd: bool,
    pub gate: bool,
    /// Virtual time the count was loaded (counting starts here).
    pub load_ns: u64,
    /// No count loaded since the last mode write (output stays at its mode-write level).
    pub null_count: bool,
}

impl Channel {
    fn elapsed(&self, now: u64) -> u64 {
        ticks(now.saturating_sub(self.load_ns))
    }

    /// Current counter value.
    pub fn get_count(&self, now: u64) -> u16 {
        if self.null_count {
            return 0;
        }
        let d = self.elapsed(now);
        let n = self.count as u64;
        let c = match self.mode {
            0 | 1 | 4 | 5 => (n.wrapping_sub(d)) & 0xFFFF,
            2 | 6 => n - (d % n),
            _ => {
                // mode 3 counts down by two each clock, twice per period
                n.wrapping_sub((2 * d) % n) & 0xFFFF
            }
        };
        c as u16
    }

    /// Output pin level.
    pub fn get_out(&self, now: u64) -> bool {
        if self.null_count {
            return self.mode != 0 && self.mode != 2;
        }
        let d = self.elapsed(now);
        let n = self.count as u64;
        match self.mode {
            0 => d >= n,
            1 => d >= n,
            // QEMU's polarity: a one-clock high pulse at the end of each period (the datasheet has
            // a one-clock low pulse); either way one rising edge per period, and no edge when the
            // mode is programmed.
            2 | 6 => d % n == 0 && d != 0,
            3 | 7 => d % n < n.div_ceil(2),
            _ => d != n,
        }
    }

    /// Tick (from load) of the first rising edge of the output strictly after tick `d`.
    fn next_rise_after(&self, d: u64) -> Option<u64> {
        if self.null_count {
            return None;
        }
        let n = self.count as u64;
        match self.mode {
            0 | 1 => (d < n).then_some(n),
            2 | 3 | 6 | 7 => Some((d / n + 1) * n),
            _ => (d < n + 1).then_some(n + 1),
        }
    }

    /// Virtual time of the next rising edge after `now`.
    pub fn next_rise_ns(&self, now: u64) -> Option<u64> {
        if self.mode == 0 || self.mode == 4 || self.mode & 3 == 2 || self.mode & 3 == 3 || self.gate {
            let d = self.elapsed(now);
            self.next_rise_after(d).map(|t| self.load_ns + ticks_to_ns(t))
        } else {
            None
        }
    }

    /// Whether the output rose at least once in (t0, t1].
    pub fn rose_between(&self, t0: u64, t1: u64) -> bool {
        if t1 <= t0 || t1 < self.load_ns {
            return false;
        }
        // ticks since load at t0 (a load after t0 counts from tick 0)
        let d0 = if t0 < self.load_ns { 0 } else { self.elapsed(t0) };
        matches!(self.next_rise_after(d0), Some(e) if e <= self.elapsed(t1))
    }

    fn latch_count(&mut self, now: u64) {
        if self.count_latched == 0 {
            self.latched_count = self.get_count(now);
            self.count_latched = self.rw_mode;
        }
    }

    fn load(&mut self, v: u32, now: u64) {
        self.count = if v == 0 { 0x10000 } else { v };
        self.load_ns = now;
        self.null_count = false;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pit {
    pub ch: [Channel; 3],
    /// Port 0x61 bits 0-3 as written (timer 2 gate, speaker data, parity/IOCHK enables).
    pub port61: u8,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    pub fn new() -> Self {
        let mut p = Pit { ch: Default::default(), port61: 0 };
        p.reset(0);
        p
    }

    pub fn reset(&mut self, now: u64) {
        for (i, c) in self.ch.iter_mut().enumerate() {
            *c = Channel { mode: 3, gate: i != 2, rw_mode: 3, null_count: true, ..Default::default() };
            c.load(0, now);
            c.null_count = i != 0;
        }
        self.port61 = 0;
    }

    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        let c = &mut self.ch[(port & 3) as usize];
        if port & 3 == 3 {
            return 0xFF;
        }
        if c.status_latched {
            c.status_latched = false;
            return c.status;
        }
        if c.count_latched != 0 {
            return match c.count_latched {
                1 => {
                    c.count_latched = 0;
                    c.latched_count as u8
                }
                2 => {
                    c.count_latched = 0;
                    (c.latched_count >> 8) as u8
                }
                _ => {
                    c.count_latched = 2;
                    c.latched_count as u8
                }
            };
        }
        let count = c.get_count(now);
        match c.rw_mode {
            1 => count as u8,
            2 => (count >> 8) as u8,
            _ => {
                c.read_hi = !c.read_hi;
                if c.read_hi { count as u8 } else { (count >> 8) as u8 }
            }
        }
    }

    pub fn write(&mut self, port: u16, v: u8, now: u64) {
        if port & 3 == 3 {
            let sel = v >> 6;
            if sel == 3 {
                // read-back command
                for i in 0..3 {
                    if v & (2 << i) == 0 {
                        continue;
                    }
                    let out = self.ch[i].get_out(now);
                    let c = &mut self.ch[i];
                    if v & 0x20 == 0 {
                        c.latch_count(now);
                    }
                    if v & 0x10 == 0 && !c.status_latched {
                        c.status = ((out as u8) << 7)
                            | ((c.null_count as u8) << 6)
                            | (c.rw_mode << 4)
                            | (c.mode << 1)
                            | c.bcd as u8;
                        c.status_latched = true;
                    }
                }
                return;
            }
            let c = &mut self.ch[sel as usize];
            let access = (v >> 4) & 3;
            if access == 0 {
                c.latch_count(now);
            } else {
                c.rw_mode = access;
                c.read_hi = false;
                c.write_hi = false;
                c.mode = (v >> 1) & 7;
                if c.mode > 5 {
                    c.mode -= 4;
                }
                c.bcd = v & 1 != 0;
                c.null_count = true;
                c.count_latched = 0;
            }
            return;
        }
        let c = &mut self.ch[(port & 3) as usize];
        match c.rw_mode {
            1 => c.load(v as u32, now),
            2 => c.load((v as u32) << 8, now),
            _ => {
                if !c.write_hi {
                    c.write_latch = v;
                    c.write_hi = true;
                } else {
                    c.write_hi = false;
                    let val = c.write_latch as u32 | ((v as u32) << 8);
                    c.load(val, now);
                }
            }
        }
    }

    /// Port 0x61 read.
    pub fn read_port61(&self, now: u64) -> u8 {
        // DRAM refresh request toggles every 15.085 us
        let refresh = ((now / 15_085) & 1) as u8;
        (self.port61 & 0x0F) | (refresh << 4) | ((self.ch[2].get_out(now) as u8) << 5)
    }

    pub fn write_port61(&mut self, v: u8, now: u64) {
        let gate = v & 1 != 0;
        let c = &mut self.ch[2];
        if gate && !c.gate && matches!(c.mode, 1 | 2 | 3 | 5) {
            // rising gate edge retriggers
            c.load_ns = now;
        }
        c.gate = gate;
        self.port61 = v & 0x0F;
    }

    /// Whether the PC speaker is sounding (gate and data set, channel 2 in square-wave mode).
    pub fn speaker_on(&self) -> bool {
        self.port61 & 3 == 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel0_mode2_period_and_counter() {
        let mut p = Pit::new();
        p.write(0x43, 0x34, 0); // ch0, lo/hi, mode 2
        p.write(0x40, 0x9C, 0); // 1193 ticks ~ 1 ms
        p.write(0x40, 0x04, 0);
        let c = &p.ch[0];
        assert_eq!(c.count, 1180 + 0);
        let t1 = c.next_rise_ns(0).unwrap();
        assert!((988_000..=990_000).contains(&t1), "{t1}");
        assert_eq!(c.next_rise_ns(t1).unwrap(), ticks_to_ns(2 * 1180));
        assert!(c.rose_between(0, t1));
        assert!(!c.rose_between(0, t1 - 1));
        // latch + read at 0.5 ms: ~596 ticks elapsed
        p.write(0x43, 0x00, 500_000);
        let lo = p.read(0x40, 900_000);
        let hi = p.read(0x40, 900_000);
        let v = lo as u32 | (hi as u32) << 8;
        assert_eq!(v, 1180 - 596);
    }

    #[test]
    fn channel2_one_shot_drives_port61_bit5() {
        // SeaBIOS TSC calibration: gate on, mode 0, count 0x800, poll bit 5
        let mut p = Pit::new();
        p.write_port61(0x01, 0);
        p.write(0x43, 0xB0, 0);
        p.write(0x42, 0x00, 0);
        p.write(0x42, 0x08, 0);
        assert_eq!(p.read_port61(1_000_000) & 0x20, 0);
        let done = ticks_to_ns(0x800);
        assert_eq!(p.read_port61(done - 1) & 0x20, 0);
        assert_eq!(p.read_port61(done) & 0x20, 0x20);
    }

    #[test]
    fn read_back_status() {
        let mut p = Pit::new();
        p.write(0x43, 0x36, 0); // ch0 lo/hi mode 3
        p.write(0x43, 0xE2, 0); // read-back status of ch0
        assert_eq!(p.read(0x40, 0), 0x80 | 0x40 | 0x36);
    }
}
