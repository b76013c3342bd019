//! PIIX4 power management function (00:01.3 on QEMU's `pc`): ACPI PM1 event/control registers,
//! the 3.579545 MHz PM timer and the SMBus base register (no SMBus devices behind it).
//!
//! Guest power-off: writing PM1a_CNT with SLP_EN (bit 13) set and SLP_TYP = 0 (QEMU's S5 value in
//! its DSDT, also what SeaBIOS's generated tables advertise) powers the machine off; the board then
//! stops `run` with a power-off exit.

use serde::{Deserialize, Serialize};
use vessel_core::bus::Width;

use super::{PciConfig, PciDevice};
use crate::device::IoDevice;

pub const PMBA: usize = 0x40;
pub const PMREGMISC: usize = 0x80;
pub const SMBBA: usize = 0x90;
pub const SMBHSTCFG: usize = 0xD2;
pub const DEVACTB: usize = 0x58;

/// PM timer frequency in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piix4Pm {
    pub config: PciConfig,
    pub pm1_sts: u16,
    pub pm1_en: u16,
    pub pm1_cnt: u16,
    /// Set when the guest asked for soft-off (S5); the board turns it into a power-off exit.
    pub power_off: bool,
}

impl Default for Piix4Pm {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix4Pm {
    pub fn new() -> Self {
        let mut config = PciConfig::new(0x8086, 0x7113, 0x06_80_00, 0x03);
        config.set_interrupt_pin(1);
        config.set_writable(PMBA, 4, 0x0000_FFC0);
        config.set_u32(PMBA, 1);
        config.set_writable(DEVACTB, 4, 0xFFFF_FFFF);
        config.set_writable(PMREGMISC, 1, 0x01);
        config.set_writable(SMBBA, 4, 0x0000_FFF0);
        config.set_u32(SMBBA, 1);
        // No SMM on this machine: mark SMM as already initialised and locked (APMC_EN, byte 0x5B
        // bit 1) the way QEMU does with `smm=off`, so SeaBIOS skips its SMI relocation handshake.
        config.bytes[DEVACTB + 3] = 0x02;
        config.set_writable(SMBHSTCFG, 1, 0xFF);
        Piix4Pm { config, pm1_sts: 0, pm1_en: 0, pm1_cnt: 0, power_off: false }
    }

    /// Base of the 64-byte PM I/O block while enabled (PMREGMISC bit 0).
    pub fn pm_base(&self) -> Option<u16> {
        let base = (self.config.u32(PMBA) & 0xFFC0) as u16;
        (self.config.bytes[PMREGMISC] & 1 != 0 && base != 0).then_some(base)
    }

    /// PM timer value (24 bits) at virtual time `now_ns`.
    pub fn pm_timer(now_ns: u64) -> u32 {
        ((now_ns as u128 * PM_TIMER_HZ as u128 / 1_000_000_000) as u32) & 0x00FF_FFFF
    }

    pub fn pm_read(&mut self, now_ns: u64, off: u16, width: Width) -> u32 {
        let tmr = Self::pm_timer(now_ns);
        let mut v = 0u32;
        for i in 0..width as u16 {
            let o = off + i;
            let b = match o {
                0 | 1 => (self.pm1_sts >> (8 * (o & 1))) as u8,
                2 | 3 => (self.pm1_en >> (8 * (o & 1))) as u8,
                4 | 5 => (self.pm1_cnt >> (8 * (o & 1))) as u8,
                8..=11 => (tmr >> (8 * (o - 8))) as u8,
                _ => 0,
            };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    pub fn pm_write(&mut self, off: u16, width: Width, value: u32) {
        for i in 0..width as u16 {
            let o = off + i;
            let b = (value >> (8 * i)) as u8 as u16;
            match o {
                0 | 1 => self.pm1_sts &= !(b << (8 * (o & 1))),
                2 => self.pm1_en = (self.pm1_en & 0xFF00) | b,
                3 => self.pm1_en = (self.pm1_en & 0x00FF) | (b << 8),
                4 => self.pm1_cnt = (self.pm1_cnt & 0xFF00) | b,
                5 => self.write_cnt((self.pm1_cnt & 0x00FF) | (b << 8)),
                _ => {}
            }
        }
    }

    fn write_cnt(&mut self, v: u16) {
        self.pm1_cnt = v & !(1 << 13);
        if v & (1 << 13) != 0 && (v >> 10) & 7 == 0 {
            self.power_off = true;
        }
    }
}

impl IoDevice for Piix4Pm {
    fn name(&self) -> &'static str {
        "piix4-pm"
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl PciDevice for Piix4Pm {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}
