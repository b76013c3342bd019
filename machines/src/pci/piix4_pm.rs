//! PIIX4 power management function (00:01.3 on QEMU's `pc`): ACPI PM1 event/control registers,
//! the 3.579545 MHz PM timer and the SMBus base register (no SMBus devices behind it).
//!
//! Beside the PM block, the fixed ports QEMU's PIIX4 PM decodes and the ACPI tables SeaBIOS
//! generates describe (Vessel has no fw_cfg ACPI tables, so SeaBIOS's own DSDT is the guest's):
//! - GPE0 block at 0xAFE0 (status, write-1-to-clear, then enable; 2 bytes each),
//! - PCI hotplug at 0xAE00: PCIU (slots up) and PCID (slots down) read 0 — nothing is ever
//!   hot-plugged here —, B0EJ (eject) writes are logged and ignored, RMV reads 0 (no slot is
//!   removable), SEL selects bus 0,
//! - CPU hotplug at 0xAF00: a 32-byte bitmap of present CPUs.
//!
//! Without them these ports read as all ones, which SeaBIOS's DSDT takes for "every GPE fired,
//! every slot asked to eject, 256 CPUs present": Linux then ejected every PCI function but the
//! host bridge at boot (its acpiphp driver obeys the eject requests), so no driver could bind.
//!
//! SCI (ISA IRQ 9, level, as on QEMU's `pc`) is asserted while an enabled PM1 event (power
//! button, timer overflow, global lock) or an enabled GPE is pending.
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
    /// GPE0 status (write 1 to clear) and enable registers.
    #[serde(default)]
    pub gpe_sts: u16,
    #[serde(default)]
    pub gpe_en: u16,
    /// CPUs present, for the CPU hotplug bitmap.
    #[serde(default = "one")]
    pub cpus: u16,
    /// Last PM timer value seen, to latch TMR_STS when bit 23 toggles.
    #[serde(default)]
    pub last_tmr: u32,
}

fn one() -> u16 {
    1
}

/// Fixed port blocks (first port, length) decoded by the PM function besides its PMBA block.
pub const GPE0_BASE: u16 = 0xAFE0;
pub const GPE0_LEN: u16 = 4;
pub const PCIHP_BASE: u16 = 0xAE00;
pub const PCIHP_LEN: u16 = 0x14;
pub const CPUHP_BASE: u16 = 0xAF00;
pub const CPUHP_LEN: u16 = 0x20;

/// PM1 status/enable bits that raise SCI: TMR (overflow), GBL, PWRBTN, RTC.
pub const PM1_TMR: u16 = 1 << 0;
pub const PM1_GBL: u16 = 1 << 5;
pub const PM1_PWRBTN: u16 = 1 << 8;
pub const PM1_RTC: u16 = 1 << 10;
const PM1_SCI_EVENTS: u16 = PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_RTC;

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
        Piix4Pm { config, pm1_sts: 0, pm1_en: 0, pm1_cnt: 0, power_off: false, gpe_sts: 0, gpe_en: 0, cpus: 1, last_tmr: 0 }
    }

    /// The PM function of a machine with `cpus` processors.
    pub fn with_cpus(cpus: u16) -> Self {
        Piix4Pm { cpus: cpus.max(1), ..Self::new() }
    }

    /// Level of the SCI line (ISA IRQ 9).
    pub fn sci_level(&self) -> bool {
        self.pm1_sts & self.pm1_en & PM1_SCI_EVENTS != 0 || self.gpe_sts & self.gpe_en != 0
    }

    /// Latch TMR_STS when the PM timer's bit 23 changed since the last look (every ~2.3 s).
    pub fn poll_timer(&mut self, now_ns: u64) {
        let t = Self::pm_timer(now_ns);
        if (t ^ self.last_tmr) & 0x80_0000 != 0 {
            self.pm1_sts |= PM1_TMR;
        }
        self.last_tmr = t;
    }

    /// Press the power button (the monitor's `system_powerdown`): PWRBTN_STS, SCI if enabled.
    pub fn press_power_button(&mut self) {
        self.pm1_sts |= PM1_PWRBTN;
    }

    /// Whether `port` is one of the fixed GPE / hotplug blocks.
    pub fn decodes_fixed(port: u16) -> bool {
        (GPE0_BASE..GPE0_BASE + GPE0_LEN).contains(&port)
            || (PCIHP_BASE..PCIHP_BASE + PCIHP_LEN).contains(&port)
            || (CPUHP_BASE..CPUHP_BASE + CPUHP_LEN).contains(&port)
    }

    /// Read of the fixed blocks, byte by byte (`width` bytes from `port`).
    pub fn fixed_read(&self, port: u16, width: Width) -> u32 {
        let mut v = 0u32;
        for i in 0..width as u16 {
            let p = port.wrapping_add(i);
            let b = match p {
                GPE0_BASE | 0xAFE1 => (self.gpe_sts >> (8 * (p - GPE0_BASE))) as u8,
                0xAFE2 | 0xAFE3 => (self.gpe_en >> (8 * (p - GPE0_BASE - 2))) as u8,
                p if (CPUHP_BASE..CPUHP_BASE + CPUHP_LEN).contains(&p) => {
                    let first = (p - CPUHP_BASE) * 8;
                    let present = |cpu: u16| cpu < self.cpus;
                    (0..8).fold(0u8, |acc, bit| acc | (present(first + bit) as u8) << bit)
                }
                // PCIU, PCID, B0EJ, RMV, SEL: no hotplug activity, nothing removable, bus 0
                _ => 0,
            };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    pub fn fixed_write(&mut self, port: u16, width: Width, value: u32) {
        for i in 0..width as u16 {
            let p = port.wrapping_add(i);
            let b = (value >> (8 * i)) as u8 as u16;
            match p {
                GPE0_BASE | 0xAFE1 => self.gpe_sts &= !(b << (8 * (p - GPE0_BASE))),
                0xAFE2 | 0xAFE3 => {
                    let sh = 8 * (p - GPE0_BASE - 2);
                    self.gpe_en = (self.gpe_en & !(0xFF << sh)) | (b << sh);
                }
                0xAE08..=0xAE0B if b != 0 => {
                    tracing::warn!(slot_bits = b << (8 * (p - 0xAE08)), "guest asked to eject a PCI slot; hotplug is not supported, ignored");
                }
                _ => {}
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_blocks_read_as_an_idle_machine_not_as_open_bus() {
        let pm = Piix4Pm::with_cpus(2);
        assert_eq!(pm.fixed_read(GPE0_BASE, 4), 0, "no GPE pending or enabled");
        assert_eq!(pm.fixed_read(PCIHP_BASE, 4), 0, "PCIU: no slot came up");
        assert_eq!(pm.fixed_read(PCIHP_BASE + 4, 4), 0, "PCID: no slot asks to go");
        assert_eq!(pm.fixed_read(PCIHP_BASE + 0x0C, 4), 0, "RMV: nothing removable");
        assert_eq!(pm.fixed_read(CPUHP_BASE, 1), 0b11, "CPUs 0 and 1 present");
        assert_eq!(pm.fixed_read(CPUHP_BASE + 1, 4), 0);
        assert!(!pm.sci_level());
    }

    #[test]
    fn gpe_status_is_write_one_to_clear_and_raises_sci_only_when_enabled() {
        let mut pm = Piix4Pm::new();
        pm.gpe_sts = 0b10; // GPE 1 (PCI hotplug) pending
        assert!(!pm.sci_level(), "disabled GPE");
        pm.fixed_write(0xAFE2, 2, 0b10);
        assert_eq!(pm.fixed_read(0xAFE2, 2), 0b10);
        assert!(pm.sci_level());
        pm.fixed_write(GPE0_BASE, 2, 0b01); // clears only bit 0
        assert!(pm.sci_level());
        pm.fixed_write(GPE0_BASE, 2, 0b10);
        assert_eq!(pm.fixed_read(GPE0_BASE, 2), 0);
        assert!(!pm.sci_level());
    }

    #[test]
    fn power_button_and_timer_overflow_raise_sci_when_enabled() {
        let mut pm = Piix4Pm::new();
        pm.press_power_button();
        assert!(!pm.sci_level(), "PWRBTN_EN clear");
        pm.pm_write(2, 2, PM1_PWRBTN as u32);
        assert!(pm.sci_level());
        pm.pm_write(0, 2, PM1_PWRBTN as u32);
        assert!(!pm.sci_level(), "status cleared by writing 1");
        // bit 23 of the 3.58 MHz timer toggles after 2^23 ticks (~2.34 s)
        let toggle_ns = (1u64 << 23) * 1_000_000_000 / PM_TIMER_HZ + 1;
        pm.pm_write(2, 2, PM1_TMR as u32);
        pm.poll_timer(1_000_000);
        assert!(!pm.sci_level());
        pm.poll_timer(toggle_ns + 1_000);
        assert!(pm.sci_level(), "TMR_STS latched on the bit-23 change");
    }
}
