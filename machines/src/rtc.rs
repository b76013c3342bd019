//! Motorola MC146818 real-time clock and 128 bytes of CMOS RAM (ports 0x70/0x71, IRQ 8).
//!
//! The clock is a base time (seconds since 1970 as the guest should see it: host UTC, or host
//! local time with `--localtime`) plus elapsed virtual time, so guest time follows the virtual
//! clock (see `pc::clock`) and is exact at any resolution. Interrupt flags (periodic, update-ended,
//! alarm) are brought up to date lazily on every access and on every board time slice.

use serde::{Deserialize, Serialize};

pub const REG_A: usize = 0x0A;
pub const REG_B: usize = 0x0B;
pub const REG_C: usize = 0x0C;
pub const REG_D: usize = 0x0D;
pub const REG_CENTURY: usize = 0x32;

const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;

const NS: u64 = 1_000_000_000;
/// Update-in-progress is reported for this long before each second boundary.
const UIP_NS: u64 = 244_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rtc {
    pub cmos: Vec<u8>,
    pub index: u8,
    /// NMI disable bit (bit 7 of the last index write).
    pub nmi_disabled: bool,
    /// Guest time (s since 1970) at virtual time `base_ns`.
    pub base_secs: i64,
    pub base_ns: u64,
    /// Virtual time the interrupt flags were last brought up to date.
    pub last_ns: u64,
}

/// Broken-down calendar time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn datetime_from_secs(secs: i64) -> DateTime {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400) as u32;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    DateTime { year, month, day, hour: rem / 3600, min: rem / 60 % 60, sec: rem % 60, weekday: (days + 4).rem_euclid(7) as u32 }
}

pub fn secs_from_datetime(t: &DateTime) -> i64 {
    days_from_civil(t.year, t.month, t.day) * 86400 + (t.hour * 3600 + t.min * 60 + t.sec) as i64
}

impl Rtc {
    /// A clock showing `base_secs` at virtual time 0, CMOS status registers as after power-on.
    pub fn new(base_secs: i64) -> Self {
        let mut cmos = vec![0u8; 128];
        cmos[REG_A] = 0x26;
        cmos[REG_B] = B_24H;
        cmos[REG_D] = 0x80;
        let mut r = Rtc { cmos, index: 0, nmi_disabled: false, base_secs, base_ns: 0, last_ns: 0 };
        r.store_time(base_secs);
        r
    }

    fn running(&self) -> bool {
        self.cmos[REG_B] & B_SET == 0 && self.cmos[REG_A] & 0x70 == 0x20
    }

    /// Guest time in seconds at `now`.
    pub fn secs(&self, now: u64) -> i64 {
        if self.running() {
            self.base_secs + (now.saturating_sub(self.base_ns) / NS) as i64
        } else {
            self.base_secs
        }
    }

    fn to_reg(&self, v: u32) -> u8 {
        if self.cmos[REG_B] & B_DM_BINARY != 0 { v as u8 } else { (((v / 10) << 4) | (v % 10)) as u8 }
    }

    fn from_reg(&self, v: u8) -> u32 {
        if self.cmos[REG_B] & B_DM_BINARY != 0 { v as u32 } else { ((v >> 4) as u32 * 10) + (v & 0xF) as u32 }
    }

    fn hour_to_reg(&self, h: u32) -> u8 {
        if self.cmos[REG_B] & B_24H != 0 {
            self.to_reg(h)
        } else {
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            self.to_reg(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn hour_from_reg(&self, v: u8) -> u32 {
        if self.cmos[REG_B] & B_24H != 0 {
            self.from_reg(v)
        } else {
            let h = self.from_reg(v & 0x7F) % 12;
            if v & 0x80 != 0 { h + 12 } else { h }
        }
    }

    /// Write the broken-down time of `secs` into the clock registers.
    fn store_time(&mut self, secs: i64) {
        let t = datetime_from_secs(secs);
        self.cmos[0] = self.to_reg(t.sec);
        self.cmos[2] = self.to_reg(t.min);
        self.cmos[4] = self.hour_to_reg(t.hour);
        self.cmos[6] = self.to_reg(t.weekday + 1);
        self.cmos[7] = self.to_reg(t.day);
        self.cmos[8] = self.to_reg(t.month);
        self.cmos[9] = self.to_reg((t.year % 100) as u32);
        self.cmos[REG_CENTURY] = self.to_reg((t.year / 100) as u32);
    }

    /// Time encoded in the clock registers.
    fn load_time(&self) -> i64 {
        let t = DateTime {
            year: self.from_reg(self.cmos[REG_CENTURY]) as i64 * 100 + self.from_reg(self.cmos[9]) as i64,
            month: self.from_reg(self.cmos[8]).clamp(1, 12),
            day: self.from_reg(self.cmos[7]).clamp(1, 31),
            hour: self.hour_from_reg(self.cmos[4]),
            min: self.from_reg(self.cmos[2]),
            sec: self.from_reg(self.cmos[0]),
            weekday: 0,
        };
        secs_from_datetime(&t)
    }

    fn periodic_ns(&self) -> Option<u64> {
        let rate = self.cmos[REG_A] & 0xF;
        if rate == 0 || self.cmos[REG_A] & 0x70 != 0x20 {
            return None;
        }
        let rate = if rate <= 2 { rate + 7 } else { rate };
        Some((NS << (rate - 1)) / 32768)
    }

    fn alarm_matches(&self, secs: i64) -> bool {
        let t = datetime_from_secs(secs);
        let m = |reg: usize, v: u32| self.cmos[reg] & 0xC0 == 0xC0 || self.cmos[reg] == self.to_reg(v);
        let mh = self.cmos[5] & 0xC0 == 0xC0 || self.cmos[5] == self.hour_to_reg(t.hour);
        m(1, t.sec) && m(3, t.min) && mh
    }

    /// Bring the interrupt flags up to `now`. Returns the IRQ 8 level.
    pub fn update(&mut self, now: u64) -> bool {
        if now > self.last_ns {
            let last = self.last_ns;
            if let Some(p) = self.periodic_ns() {
                if now / p != last / p {
                    self.cmos[REG_C] |= C_PF;
                }
            }
            if self.running() {
                let s0 = self.secs(last.max(self.base_ns));
                let s1 = self.secs(now);
                if s1 > s0 {
                    self.cmos[REG_C] |= C_UF;
                    let from = if s1 - s0 > 86400 { s1 - 86400 } else { s0 + 1 };
                    if self.cmos[REG_B] & B_AIE != 0 && (from..=s1).any(|s| self.alarm_matches(s)) {
                        self.cmos[REG_C] |= C_AF;
                    }
                }
            }
            self.last_ns = now;
        }
        let b = self.cmos[REG_B];
        let c = self.cmos[REG_C];
        let irq = (c & C_PF != 0 && b & B_PIE != 0) || (c & C_UF != 0 && b & B_UIE != 0) || (c & C_AF != 0 && b & B_AIE != 0);
        if irq {
            self.cmos[REG_C] |= C_IRQF;
        }
        self.cmos[REG_C] & C_IRQF != 0
    }

    /// Next virtual time at which `update` may raise the IRQ (for idle skipping).
    pub fn next_event_ns(&self, now: u64) -> Option<u64> {
        let b = self.cmos[REG_B];
        let mut next = None;
        if b & B_PIE != 0 {
            if let Some(p) = self.periodic_ns() {
                next = Some((now / p + 1) * p);
            }
        }
        if b & (B_UIE | B_AIE) != 0 && self.running() {
            let since = now.saturating_sub(self.base_ns);
            let t = self.base_ns + (since / NS + 1) * NS;
            next = Some(next.map_or(t, |n: u64| n.min(t)));
        }
        next
    }

    pub fn io_read(&mut self, port: u16, now: u64) -> u8 {
        if port & 1 == 0 {
            return 0xFF;
        }
        let idx = (self.index & 0x7F) as usize;
        match idx {
            0..=9 | REG_CENTURY => {
                if self.running() {
                    let s = self.secs(now);
                    self.store_time(s);
                }
                self.cmos[idx]
            }
            REG_A => {
                let since = now.saturating_sub(self.base_ns) % NS;
                let uip = self.running() && since >= NS - UIP_NS;
                (self.cmos[REG_A] & 0x7F) | if uip { 0x80 } else { 0 }
            }
            REG_C => {
                self.update(now);
                let v = self.cmos[REG_C];
                self.cmos[REG_C] = 0;
                v
            }
            _ => self.cmos[idx],
        }
    }

    pub fn io_write(&mut self, port: u16, v: u8, now: u64) {
        if port & 1 == 0 {
            self.index = v & 0x7F;
            self.nmi_disabled = v & 0x80 != 0;
            return;
        }
        let idx = self.index as usize;
        match idx {
            0..=9 | REG_CENTURY => {
                let s = self.secs(now);
                self.store_time(s);
                self.cmos[idx] = v;
                self.rebase(now);
            }
            REG_A => {
                self.update(now);
                let s = self.secs(now);
                self.cmos[REG_A] = v & 0x7F;
                self.base_secs = s;
                self.base_ns = now;
            }
            REG_B => {
                self.update(now);
                let s = self.secs(now);
                self.store_time(s);
                let old = self.cmos[REG_B];
                let mut v = v;
                if v & B_SET != 0 {
                    v &= !B_UIE; // the update cycle is inhibited while SET
                }
                // the clock registers are re-encoded in the new mode
                if (old ^ v) & (B_DM_BINARY | B_24H) != 0 {
                    self.cmos[REG_B] = v;
                    self.store_time(s);
                } else {
                    self.cmos[REG_B] = v;
                }
                self.base_secs = s;
                self.base_ns = now;
            }
            REG_C | REG_D => {}
            _ => self.cmos[idx] = v,
        }
    }

    fn rebase(&mut self, now: u64) {
        self.base_secs = self.load_time();
        self.base_ns = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(r: &mut Rtc, i: u8, now: u64) -> u8 {
        r.io_write(0x70, i, now);
        r.io_read(0x71, now)
    }

    #[test]
    fn calendar_roundtrip_matches_known_dates() {
        // 2024-02-29 12:34:56 UTC = 1709210096, a Thursday
        let t = datetime_from_secs(1_709_210_096);
        assert_eq!((t.year, t.month, t.day, t.hour, t.min, t.sec, t.weekday), (2024, 2, 29, 12, 34, 56, 4));
        assert_eq!(secs_from_datetime(&t), 1_709_210_096);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn bcd_time_advances_with_virtual_time_and_uip() {
        let mut r = Rtc::new(1_709_210_096);
        assert_eq!(rd(&mut r, 0, 0), 0x56);
        assert_eq!(rd(&mut r, 4, 0), 0x12);
        assert_eq!(rd(&mut r, 9, 0), 0x24);
        assert_eq!(rd(&mut r, 0x32, 0), 0x20);
        assert_eq!(rd(&mut r, 6, 0), 5, "Thursday = day 5 with Sunday = 1");
        assert_eq!(rd(&mut r, 0, 4 * NS + 1), 0x00);
        assert_eq!(rd(&mut r, 2, 4 * NS + 1), 0x35);
        assert_eq!(rd(&mut r, 0x0A, NS / 2) & 0x80, 0);
        assert_eq!(rd(&mut r, 0x0A, NS - 1000) & 0x80, 0x80);
    }

    #[test]
    fn set_time_in_binary_mode() {
        let mut r = Rtc::new(0);
        r.io_write(0x70, 0x0B, 0);
        r.io_write(0x71, 0x80 | B_24H | B_DM_BINARY, 0);
        for (reg, v) in [(0u8, 30u8), (2, 59), (4, 23), (7, 31), (8, 12), (9, 99), (0x32, 19)] {
            r.io_write(0x70, reg, 0);
            r.io_write(0x71, v, 0);
        }
        r.io_write(0x70, 0x0B, 0);
        r.io_write(0x71, B_24H | B_DM_BINARY, 0);
        assert_eq!(r.secs(0), secs_from_datetime(&datetime_from_secs(946_684_799 - 29)));
        assert_eq!(rd(&mut r, 0, 30 * NS), 0);
        assert_eq!(rd(&mut r, 9, 30 * NS), 0, "rolled over to 2000");
        assert_eq!(rd(&mut r, 0x32, 30 * NS), 20);
    }

    #[test]
    fn periodic_interrupt_1024hz() {
        let mut r = Rtc::new(0);
        r.io_write(0x70, 0x0B, 0);
        r.io_write(0x71, B_24H | B_PIE, 0);
        assert!(!r.update(1000));
        let next = r.next_event_ns(1000).unwrap();
        assert_eq!(next, 976_562);
        assert!(r.update(next));
        assert_eq!(rd(&mut r, 0x0C, next) & 0xC0, 0xC0);
        assert!(!r.update(next + 1), "reading C acknowledges");
    }
}
