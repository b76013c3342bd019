//! The small device interface the board dispatches port I/O and MMIO through.
//!
//! Legacy chipset devices of the `pc` board (PIC, PIT, RTC, ...) are concrete fields of the board
//! and are called directly. Pluggable devices (PCI functions, the floppy controller, VGA) implement
//! [`IoDevice`] (and [`crate::pci::PciDevice`] for PCI functions) and are registered with the board
//! (`Pc::add_pci_device` / `Pc::add_isa_device`); the board builds a port table and an MMIO range
//! list from their BARs and [`IoDevice::legacy_io`]/[`IoDevice::legacy_mmio`] ranges and calls
//! them through one dynamic call per access (port I/O and MMIO are slow paths; RAM never comes here).
//!
//! Interrupts are *levels* the board polls after each call into a device and on every time slice:
//! [`IoDevice::isa_irq_levels`] for ISA lines (IDE 14/15, floppy 6), [`IoDevice::intx_level`] for a
//! PCI function's INTx pin (routed through the PIIX3 PIRQ registers). An edge-triggered ISA device
//! raises then lowers its level; the PIC sees the rising edge.

use std::any::Any;
use vessel_core::bus::Width;

use crate::dma::Dma;

/// What a device may touch while it handles an access or a poll.
pub struct IoCtx<'a> {
    /// Guest RAM (guest physical address = index), for bus-master DMA.
    pub ram: &'a mut [u8],
    /// The ISA DMA controllers (i8237 pair), for floppy / ISA DMA transfers.
    pub dma: &'a mut Dma,
    /// Virtual time in nanoseconds since machine start (see `pc::clock`).
    pub now_ns: u64,
}

/// Which of a device's address ranges an access hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// PCI BAR `n` (0..=5, or 6 for the expansion ROM); the offset is relative to the BAR base.
    Bar(u8),
    /// A fixed legacy range from `legacy_io`/`legacy_mmio`; the offset is the absolute port/address.
    Legacy,
}

pub const fn all_ones(width: Width) -> u64 {
    if width >= 8 { u64::MAX } else { (1u64 << (width as u32 * 8)) - 1 }
}

pub trait IoDevice: Send + Any {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    fn io_read(&mut self, _ctx: &mut IoCtx, _region: Region, _offset: u16, width: Width) -> u32 {
        all_ones(width) as u32
    }
    fn io_write(&mut self, _ctx: &mut IoCtx, _region: Region, _offset: u16, _width: Width, _value: u32) {}
    fn mmio_read(&mut self, _ctx: &mut IoCtx, _region: Region, _offset: u64, width: Width) -> u64 {
        all_ones(width)
    }
    fn mmio_write(&mut self, _ctx: &mut IoCtx, _region: Region, _offset: u64, _width: Width, _value: u64) {}
    /// Fixed port ranges `(first port, count)` the device decodes regardless of BARs.
    fn legacy_io(&self) -> Vec<(u16, u16)> {
        Vec::new()
    }
    /// Fixed physical ranges `(base, length)` the device decodes (e.g. VGA 0xA0000, 0x20000).
    fn legacy_mmio(&self) -> Vec<(u64, u64)> {
        Vec::new()
    }
    /// Bit n set = ISA IRQ n asserted by this device.
    fn isa_irq_levels(&self) -> u16 {
        0
    }
    /// Level of this PCI function's INTx pin (the pin is in config byte 0x3D).
    fn intx_level(&self) -> bool {
        false
    }
    /// Called once per board time slice (a few microseconds of virtual time).
    fn poll(&mut self, _ctx: &mut IoCtx) {}
    /// Machine reset.
    fn reset(&mut self) {}
    /// Background host work (e.g. a disk request on an I/O thread) is outstanding: wait up to
    /// `max` of wall time for some of it to finish and return true; false when there is none.
    /// While the CPU is halted the board calls this instead of letting virtual time jump to the
    /// next timer, so a guest waiting for its disk does not see time race ahead.
    fn wait_io(&mut self, _max: std::time::Duration) -> bool {
        false
    }
    /// Make everything written so far durable (disk images): the machine stops or pauses.
    fn flush(&mut self) {}
    /// For front ends that need the concrete device (e.g. the VGA framebuffer).
    fn as_any_mut(&mut self) -> &mut dyn Any;

    // ---- engine hooks (`pc::vm`): optional, for the devices they concern ----

    /// Display devices: bring the RGBA frame up to date and return it, `dirty` = what changed
    /// since the previous call. The engine publishes it to front ends at ~60 Hz.
    fn display(&mut self) -> Option<&mut vessel_core::display::Frame> {
        None
    }
    /// Drives this device has, for the monitor's `info block`.
    fn drives(&self) -> Vec<vessel_core::vm::BlockInfo> {
        Vec::new()
    }
    /// The disk images behind this device's drives (what `savevm` must snapshot together with
    /// the machine state). Empty drives are left out.
    fn disks(&self) -> Vec<vessel_core::vm::VmDisk> {
        Vec::new()
    }
    /// Insert (`Some`) or eject (`None`) the medium of drive `device` (`BlockInfo::device`).
    /// `None`: not one of this device's drives.
    fn change_media(
        &mut self,
        _device: &str,
        _path: Option<&std::path::Path>,
    ) -> Option<Result<(), vessel_core::vm::VmError>> {
        None
    }
    /// Device state for `savevm` (e.g. `ron` of the device's serde state struct; PCI config space
    /// is saved by the board). `None`: this device cannot be saved, so neither can the machine.
    fn save_state(&self) -> Option<Vec<u8>> {
        None
    }
    /// Restore what [`IoDevice::save_state`] returned.
    fn restore_state(&mut self, _data: &[u8]) -> Result<(), String> {
        Err(format!("{} cannot restore its state", self.name()))
    }
}
