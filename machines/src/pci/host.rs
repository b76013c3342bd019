//! i440FX PCI host bridge (00:00.0): PAM shadow-RAM control for 0xC0000-0xFFFFF and SMRAM.
//!
//! The config mechanism #1 ports (0xCF8/0xCFC) are decoded by the board (`pc`), which owns the bus.

use serde::{Deserialize, Serialize};
use vessel_core::bus::Width;

use super::{PciConfig, PciDevice};
use crate::device::IoDevice;

/// First PAM register; PAM0 (0x59) high nibble controls 0xF0000-0xFFFFF, PAM1..PAM6 (0x5A..0x5F)
/// control 16 KiB segments 0xC0000..0xEFFFF (low nibble = lower segment).
pub const PAM0: usize = 0x59;
pub const SMRAM: usize = 0x72;
/// SMRAM "D_OPEN": the A/B segment (0xA0000-0xBFFFF) maps to RAM instead of VGA.
pub const SMRAM_D_OPEN: u8 = 0x40;

/// What the CPU sees in a PAM-controlled segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PamAttr {
    /// Reads come from shadow RAM (else from the ROM/PCI side).
    pub read_ram: bool,
    /// Writes go to shadow RAM (else to the ROM/PCI side, i.e. dropped).
    pub write_ram: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct I440fx {
    pub config: PciConfig,
    /// Bumped whenever PAM or SMRAM changes the memory map.
    pub generation: u64,
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new()
    }
}

impl I440fx {
    pub fn new() -> Self {
        let mut config = PciConfig::new(0x8086, 0x1237, 0x06_00_00, 0x02);
        // PAM0..PAM6, SMRAM: writable as on QEMU
        for r in PAM0..PAM0 + 7 {
            config.set_writable(r, 1, 0xFF);
        }
        config.set_writable(SMRAM, 1, 0x78);
        config.bytes[SMRAM] = 0x02;
        I440fx { config, generation: 0 }
    }

    /// PAM attribute for physical address `addr` in 0xC0000..0x100000.
    pub fn pam(&self, addr: u32) -> PamAttr {
        let nibble = if addr >= 0xF0000 {
            self.config.bytes[PAM0] >> 4
        } else {
            let seg = (addr - 0xC0000) >> 14; // 0..11
            let b = self.config.bytes[PAM0 + 1 + (seg as usize >> 1)];
            if seg & 1 == 0 { b & 0xF } else { b >> 4 }
        };
        PamAttr { read_ram: nibble & 1 != 0, write_ram: nibble & 2 != 0 }
    }

    /// Whether SMRAM is open (0xA0000-0xBFFFF is RAM for the CPU).
    pub fn smram_open(&self) -> bool {
        self.config.bytes[SMRAM] & SMRAM_D_OPEN != 0
    }
}

impl IoDevice for I440fx {
    fn name(&self) -> &'static str {
        "i440fx"
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl PciDevice for I440fx {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn config_write(&mut self, offset: u8, width: Width, value: u32) {
        let before = (self.config.bytes[PAM0..PAM0 + 7].to_vec(), self.config.bytes[SMRAM]);
        self.config.write(offset, width, value);
        if before != (self.config.bytes[PAM0..PAM0 + 7].to_vec(), self.config.bytes[SMRAM]) {
            self.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_segments_decode_like_the_datasheet() {
        let mut h = I440fx::new();
        assert_eq!(h.pam(0xF0000), PamAttr { read_ram: false, write_ram: false });
        // SeaBIOS make_bios_writable: PAM1..6 = 0x33, PAM0 = 0x30
        h.config_write(0x58, 4, 0x3333_3000);
        h.config_write(0x5C, 4, 0x3333_3333);
        assert_eq!(h.pam(0xF8000), PamAttr { read_ram: true, write_ram: true });
        assert_eq!(h.pam(0xC0000), PamAttr { read_ram: true, write_ram: true });
        assert_eq!(h.config.read(0x58, 4), 0x3333_3000, "0x58 itself is read-only");
        assert_eq!(h.pam(0xD0000), PamAttr { read_ram: true, write_ram: true });
        h.config_write(0x5A, 1, 0x21);
        assert_eq!(h.pam(0xC0000), PamAttr { read_ram: true, write_ram: false });
        assert_eq!(h.pam(0xC4000), PamAttr { read_ram: false, write_ram: true });
        assert!(h.generation >= 2);
    }
}
