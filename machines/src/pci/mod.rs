//! PCI configuration space and the device interface of the board's PCI bus (bus 0 only).
//!
//! Writing a PCI function (for device authors, e.g. PIIX3 IDE, Cirrus VGA):
//! 1. Keep a [`PciConfig`] in your device: `PciConfig::new(vendor, device, class_code, revision)`,
//!    then [`PciConfig::add_bar`] for each BAR (size must be a power of two; I/O BARs >= 4,
//!    memory BARs >= 16), `set_interrupt_pin(1)` for INTA# if you interrupt. Writable bits follow
//!    from that (command, latency, interrupt line, BAR address bits); sizing writes of all ones
//!    read back the size mask as on hardware. Add device-specific writable registers with
//!    [`PciConfig::set_writable`].
//! 2. Implement [`crate::device::IoDevice`] (port/MMIO handlers; BAR accesses arrive as
//!    `Region::Bar(n)` with the offset inside the BAR, fixed ranges as `Region::Legacy`) and
//!    [`PciDevice`] (`config`/`config_mut`; override `config_read`/`config_write` only for side
//!    effects).
//! 3. The board places it with `Pc::add_pci_device(slot, function, Box::new(dev))`. BARs are
//!    decoded only while the command register's I/O (bit 0) / memory (bit 1) enable is set; the
//!    board re-reads BARs after every config write, so nothing else is needed when the BIOS moves
//!    them. INTx is routed as on QEMU's i440FX: PIRQ = (slot + pin - 1) mod 4 via PIIX3 0x60..0x63.

pub mod host;
pub mod piix3;
pub mod piix4_pm;

use serde::{Deserialize, Serialize};
use vessel_core::bus::Width;

use crate::device::IoDevice;

pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const BAR0: usize = 0x10;
pub const ROM_BAR: usize = 0x30;
pub const INTERRUPT_LINE: usize = 0x3C;
pub const INTERRUPT_PIN: usize = 0x3D;

pub const CMD_IO: u16 = 1;
pub const CMD_MEM: u16 = 2;
pub const CMD_MASTER: u16 = 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarKind {
    #[default]
    None,
    Io,
    Mem32,
    Mem32Prefetch,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub kind: BarKind,
    pub size: u32,
}

/// 256 bytes of type-0 configuration space plus which bits the guest may change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciConfig {
    pub bytes: Vec<u8>,
    /// Bits the guest can write.
    pub wmask: Vec<u8>,
    /// Bits a guest write of 1 clears (status register error bits).
    pub w1cmask: Vec<u8>,
    /// BAR 0..5 and the expansion ROM (index 6).
    pub bars: [Bar; 7],
}

impl PciConfig {
    pub fn new(vendor: u16, device: u16, class_code: u32, revision: u8) -> Self {
        let mut c = PciConfig { bytes: vec![0; 256], wmask: vec![0; 256], w1cmask: vec![0; 256], bars: [Bar::default(); 7] };
        c.set_u16(0x00, vendor);
        c.set_u16(0x02, device);
        c.bytes[0x08] = revision;
        c.bytes[0x09] = class_code as u8;
        c.bytes[0x0A] = (class_code >> 8) as u8;
        c.bytes[0x0B] = (class_code >> 16) as u8;
        // command: I/O, memory, bus master, SERR, parity; interrupt disable (bit 10)
        c.set_writable(COMMAND, 2, 0x0547);
        c.w1cmask[STATUS + 1] = 0xF9; // parity / abort / SERR bits
        c.set_writable(0x0C, 1, 0xFF); // cache line size
        c.set_writable(0x0D, 1, 0xFF); // latency timer
        c.set_writable(INTERRUPT_LINE, 1, 0xFF);
        // QEMU gives every function its subsystem IDs (Red Hat / "QEMU virtual machine");
        // SeaBIOS recognises QEMU by these on the host bridge. Override with `subsystem()`.
        c.set_u16(0x2C, 0x1AF4);
        c.set_u16(0x2E, 0x1100);
        c
    }

    pub fn header_type(mut self, t: u8) -> Self {
        self.bytes[0x0E] = t;
        self
    }

    pub fn subsystem(mut self, vendor: u16, id: u16) -> Self {
        self.set_u16(0x2C, vendor);
        self.set_u16(0x2E, id);
        self
    }

    /// Declare BAR `index` (0..=5, 6 = expansion ROM) of `size` bytes.
    pub fn add_bar(&mut self, index: usize, kind: BarKind, size: u32) {
        assert!(size.is_power_of_two());
        let off = if index == 6 { ROM_BAR } else { BAR0 + 4 * index };
        let (low, mask) = match kind {
            // all 32 address bits writable, as QEMU's wmask: SeaBIOS sizes a BAR as
            // ~(readback & mask) + 1 over 32 bits (decoding uses the low 16)
            BarKind::Io => (1u32, !(size - 1) & !3),
            BarKind::Mem32 => (0, !(size - 1) & !0xF),
            BarKind::Mem32Prefetch => (8, !(size - 1) & !0xF),
            BarKind::None => (0, 0),
        };
        let (low, mask) = if index == 6 { (0, (!(size - 1) & !0x7FF) | 1) } else { (low, mask) };
        self.set_u32(off, low);
        self.set_writable(off, 4, mask);
        self.bars[index] = Bar { kind, size };
    }

    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.bytes[INTERRUPT_PIN] = pin;
    }

    /// Make bits `mask` of the `len`-byte register at `off` guest-writable.
    pub fn set_writable(&mut self, off: usize, len: usize, mask: u32) {
        assert!(len <= 4);
        for i in 0..len {
            self.wmask[off + i] = (mask >> (8 * i)) as u8;
        }
    }

    pub fn u8(&self, off: usize) -> u8 {
        self.bytes[off]
    }
    pub fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }
    pub fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().unwrap())
    }
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn command(&self) -> u16 {
        self.u16(COMMAND)
    }

    /// Guest-visible read of `width` bytes at `off` (off + width <= 256).
    pub fn read(&self, off: u8, width: Width) -> u32 {
        let mut v = 0u32;
        for i in 0..width as usize {
            v |= (self.bytes[(off as usize + i) & 0xFF] as u32) << (8 * i);
        }
        v
    }

    /// Guest write: applies the writable and write-1-to-clear masks.
    pub fn write(&mut self, off: u8, width: Width, value: u32) {
        for i in 0..width as usize {
            let o = (off as usize + i) & 0xFF;
            let b = (value >> (8 * i)) as u8;
            let old = self.bytes[o];
            self.bytes[o] = ((old & !self.wmask[o]) | (b & self.wmask[o])) & !(b & self.w1cmask[o]);
        }
    }

    /// Decoded base of BAR `index` if the BAR exists, its space is enabled in the command register
    /// and it has been given an address.
    pub fn bar_base(&self, index: usize) -> Option<u64> {
        let bar = self.bars[index];
        let cmd = self.command();
        match bar.kind {
            BarKind::None => None,
            BarKind::Io => {
                let base = self.u32(BAR0 + 4 * index) & !3 & 0xFFFF;
                (cmd & CMD_IO != 0 && base != 0).then_some(base as u64)
            }
            BarKind::Mem32 | BarKind::Mem32Prefetch => {
                let off = if index == 6 { ROM_BAR } else { BAR0 + 4 * index };
                let raw = self.u32(off);
                if index == 6 && raw & 1 == 0 {
                    return None;
                }
                let base = raw & !(bar.size - 1) & !0xF;
                (cmd & CMD_MEM != 0 && base != 0 && base != !(bar.size - 1) & !0xF).then_some(base as u64)
            }
        }
    }
}

/// A PCI function. See the module documentation.
pub trait PciDevice: IoDevice {
    fn config(&self) -> &PciConfig;
    fn config_mut(&mut self) -> &mut PciConfig;
    /// Config read of `width` bytes at `offset` (naturally aligned). Override for side effects.
    fn config_read(&mut self, offset: u8, width: Width) -> u32 {
        self.config().read(offset, width)
    }
    /// Config write. Override to react (then call `self.config_mut().write(..)` yourself).
    fn config_write(&mut self, offset: u8, width: Width, value: u32) {
        self.config_mut().write(offset, width, value)
    }
}

/// Config mechanism #1 address register (port 0xCF8) decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigAddress {
    pub bus: u8,
    pub devfn: u8,
    pub register: u8,
}

impl ConfigAddress {
    /// Decodes the 0xCF8 value; `None` when the enable bit (31) is clear.
    pub fn decode(cf8: u32) -> Option<Self> {
        if cf8 & 0x8000_0000 == 0 {
            return None;
        }
        Some(ConfigAddress { bus: (cf8 >> 16) as u8, devfn: (cf8 >> 8) as u8, register: (cf8 & 0xFC) as u8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_sizing_reads_back_size_mask() {
        let mut c = PciConfig::new(0x8086, 0x7010, 0x01_01_80, 0);
        c.add_bar(4, BarKind::Io, 16);
        c.add_bar(0, BarKind::Mem32Prefetch, 1 << 25);
        c.write(0x20, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(0x20, 4), 0xFFFF_FFF1);
        c.write(0x10, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(0x10, 4), 0xFE00_0008);
        c.write(0x20, 4, 0xC000);
        assert_eq!(c.bar_base(4), None, "I/O decoding disabled");
        c.write(0x04, 2, 0x0001);
        assert_eq!(c.bar_base(4), Some(0xC000));
        // vendor id is read-only
        c.write(0x00, 4, 0);
        assert_eq!(c.read(0x00, 2), 0x8086);
    }

    #[test]
    fn status_bits_are_write_one_to_clear() {
        let mut c = PciConfig::new(1, 2, 0, 0);
        c.bytes[STATUS + 1] = 0x30;
        c.write(STATUS as u8, 2, 0x1000);
        assert_eq!(c.bytes[STATUS + 1], 0x20);
    }
}
