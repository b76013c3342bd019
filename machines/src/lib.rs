//! Hardware models and boards for Vessel: the i440FX + PIIX3 PC (`pc`), one device per module.

pub mod device;
pub mod dma;
pub mod fdc;
pub mod fw_cfg;
pub mod i8042;
pub mod ide;
pub mod pc;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod serial;
pub mod vga;
