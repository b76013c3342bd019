//! PIIX3 PCI-to-ISA bridge (00:01.0): PIRQ routing registers and the reset control register.
//! The ELCR (0x4D0/0x4D1) lives with the PIC (`crate::pic`), as on QEMU.

use serde::{Deserialize, Serialize};

use super::{PciConfig, PciDevice};
use crate::device::IoDevice;

/// PIRQRC[A..D]: bit 7 = routing disabled, bits 0-3 = ISA IRQ.
pub const PIRQRC: usize = 0x60;
/// Device activity B (APMC enable etc.; written by SeaBIOS's SMM setup).
pub const DEVACTB: usize = 0x58;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piix3 {
    pub config: PciConfig,
    /// Reset control register (port 0xCF9).
    pub rcr: u8,
}

impl Default for Piix3 {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix3 {
    pub fn new() -> Self {
        let mut config = PciConfig::new(0x8086, 0x7000, 0x06_01_00, 0x00).header_type(0x80);
        config.set_writable(0x4C, 1, 0xFF); // IORT
        config.set_writable(0x4E, 2, 0xFFFF); // XBCS
        config.set_writable(PIRQRC, 4, 0x8F8F_8F8F);
        config.set_writable(0x69, 1, 0xFF); // TOM
        config.set_writable(0x6A, 2, 0xFFFF);
        config.set_writable(0x70, 2, 0xFFFF); // MBIRQ
        config.set_writable(0x76, 2, 0xFFFF); // MBDMA
        config.set_writable(0x80, 1, 0xFF); // APIC base relocation
        config.set_writable(0x82, 1, 0xFF); // deterministic latency
        for r in (0xA0..0xB0).step_by(4) {
            config.set_writable(r, 4, 0xFFFF_FFFF);
        }
        config.bytes[0x4C] = 0x4D;
        config.bytes[0x4E] = 0x03;
        config.bytes[0x69] = 0x02;
        config.set_u32(PIRQRC, 0x8080_8080);
        config.bytes[0x70] = 0x80;
        config.bytes[0x76] = 0x0C;
        config.bytes[0x77] = 0x0C;
        Piix3 { config, rcr: 0 }
    }

    /// ISA IRQ that PIRQ `n` (0 = A .. 3 = D) is routed to, if enabled.
    pub fn pirq_route(&self, n: usize) -> Option<u8> {
        let r = self.config.bytes[PIRQRC + n];
        (r & 0x80 == 0 && r & 0xF >= 3).then_some(r & 0xF)
    }

    /// Write to port 0xCF9. Returns true when the write requests a system reset.
    pub fn write_rcr(&mut self, v: u8) -> bool {
        let reset = v & 4 != 0;
        self.rcr = v & 0x02;
        reset
    }
}

impl IoDevice for Piix3 {
    fn name(&self) -> &'static str {
        "piix3"
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl PciDevice for Piix3 {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}
