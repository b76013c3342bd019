//! The bus a CPU talks to: physical memory, memory-mapped I/O, port I/O and the interrupt pins.
//!
//! Design (see `docs/architecture.md`):
//! - Plain RAM is one contiguous host buffer exposed through [`Bus::ram`]; guest physical address `p`
//!   lives at `ram()[p]` whenever [`Bus::page_kind`] says the page is RAM. The CPU caches that answer
//!   in its TLB, so a normal load or store is an index into a slice: no lock, no dynamic dispatch.
//! - Everything else (ROM above 4 GiB - 256 KiB, VGA windows, MMIO BARs, holes) goes through
//!   [`Bus::mmio_read`]/[`Bus::mmio_write`].
//! - When the machine changes what a page is (PAM shadow registers, VGA mode, PCI BAR moves, A20) it
//!   bumps [`Bus::map_generation`]; the CPU drops its cached page kinds when the number changes.
//! - The CPU is generic over `B: Bus` so every call is statically dispatched.

/// What a physical page (4 KiB) is, as far as the CPU's fast path is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// Readable and writable directly in `ram()` at the same offset.
    Ram,
    /// Readable directly in `ram()`; writes go to [`Bus::mmio_write`] (which may drop them: ROM).
    RamReadOnly,
    /// Every access goes through `mmio_read`/`mmio_write`.
    Mmio,
}

/// Access width for I/O and MMIO, in bytes: 1, 2, 4 or 8.
pub type Width = u8;

pub trait Bus {
    /// Guest RAM as one host buffer. Offsets are guest physical addresses.
    fn ram(&mut self) -> &mut [u8];

    /// Kind of the 4 KiB physical page number `page` (= physical address >> 12).
    fn page_kind(&self, page: u64) -> PageKind;

    /// Incremented whenever any answer of `page_kind` (or the A20 mask) may have changed.
    fn map_generation(&self) -> u64;

    /// Address mask applied to every physical address the CPU produces: `!(1 << 20)` when the A20
    /// gate is closed, `u64::MAX` otherwise.
    fn a20_mask(&self) -> u64 {
        u64::MAX
    }

    /// Read `width` bytes (1, 2, 4, 8) of MMIO/ROM at `paddr`, little-endian in the low bits.
    fn mmio_read(&mut self, paddr: u64, width: Width) -> u64;
    /// Write `width` bytes of MMIO at `paddr`.
    fn mmio_write(&mut self, paddr: u64, width: Width, value: u64);

    /// Port input of `width` bytes (1, 2, 4).
    fn io_read(&mut self, port: u16, width: Width) -> u32;
    /// Port output of `width` bytes (1, 2, 4).
    fn io_write(&mut self, port: u16, width: Width, value: u32);

    /// Level of the INTR pin (the PIC's output). Checked by the CPU between instructions when IF=1.
    fn intr_pending(&mut self) -> bool {
        false
    }
    /// Interrupt acknowledge cycle: the vector the interrupt controller puts on the bus.
    fn intr_ack(&mut self) -> u8 {
        0
    }
    /// Edge-triggered NMI: returns true once per NMI and clears it.
    fn take_nmi(&mut self) -> bool {
        false
    }
    /// Whether the CPU should return from `run` early (a device asked for attention, e.g. a timer
    /// deadline passed or a front end posted a command). Polled at most once per translated
    /// block / every few hundred instructions, so it can be a cheap flag read.
    fn should_yield(&mut self) -> bool {
        false
    }
}

/// A bus with only RAM (and optional ROM mapped at the top of the 4 GiB space) and no devices:
/// port reads return all ones, writes are recorded. Used by CPU tests and the KVM differential
/// harness, which need exactly the same memory the real CPU sees and nothing else.
#[derive(Clone, Debug, Default)]
pub struct FlatBus {
    pub memory: Vec<u8>,
    /// Every `io_write`, in order: (port, width, value).
    pub io_writes: Vec<(u16, Width, u32)>,
}

impl FlatBus {
    pub fn new(size: usize) -> Self {
        Self { memory: vec![0; size], io_writes: Vec::new() }
    }
}

impl Bus for FlatBus {
    fn ram(&mut self) -> &mut [u8] {
        &mut self.memory
    }
    fn page_kind(&self, page: u64) -> PageKind {
        if ((page + 1) << 12) as usize <= self.memory.len() {
            PageKind::Ram
        } else {
            PageKind::Mmio
        }
    }
    fn map_generation(&self) -> u64 {
        0
    }
    fn mmio_read(&mut self, _paddr: u64, width: Width) -> u64 {
        if width >= 8 { u64::MAX } else { (1u64 << (width * 8)) - 1 }
    }
    fn mmio_write(&mut self, _paddr: u64, _width: Width, _value: u64) {}
    fn io_read(&mut self, _port: u16, width: Width) -> u32 {
        if width >= 4 { u32::MAX } else { (1u32 << (width * 8)) - 1 }
    }
    fn io_write(&mut self, port: u16, width: Width, value: u32) {
        self.io_writes.push((port, width, value));
    }
}
