//! VGA: the standard VGA core plus the Cirrus Logic GD5446 and Bochs (QEMU "std") extensions.
//!
//! Split by concern:
//! - [`regs`]: the register file (sequencer, graphics controller, CRTC, attribute controller,
//!   DAC, misc) and the port I/O that reaches it (0x3B0-0x3DF).
//! - [`memory`]: the CPU's view of video memory through the 0xA0000-0xBFFFF window: planar
//!   write modes 0-3, read modes 0-1, latches, chain-4 and odd/even addressing.
//! - [`text`], [`graphics`]: renderers for alphanumeric modes (the font is whatever the guest
//!   loaded into plane 2) and for planar 16-colour, 256-colour and linear 8/15/16/24/32 bpp.
//! - [`render`]: mode decoding, palette, dirty tracking and the [`Frame`] handed to front ends.
//! - [`cirrus`], [`blitter`]: GD5446 extension registers, banking, linear framebuffer and BitBLT.
//! - [`bochs`]: the Bochs DISPI interface used by `vgabios-stdvga.bin` (QEMU `-vga std`).
//! - [`pci`]: the PCI functions (Cirrus 1013:00B8, std 1234:1111) with their BARs and option ROM.
//!
//! VRAM layout (a design decision shared with QEMU and Bochs): byte `4 * a + p` holds plane `p`
//! of planar address `a`. Chain-4 (mode 13h) CPU addresses then map 1:1 onto VRAM bytes, so the
//! Cirrus/Bochs packed-pixel modes and mode 13h share one linear array; odd/even (text) mode maps
//! CPU offset `o` to plane `o & 1`, planar address `o >> 1`, so character `k` of a text page is
//! at planar address `k` (VRAM byte `4k`) and its attribute at `4k + 1`.

pub mod blitter;
pub mod bochs;
pub mod cirrus;
pub mod graphics;
pub mod memory;
pub mod pci;
pub mod regs;
pub mod render;
pub mod text;

use serde::{Deserialize, Serialize};
use vessel_core::display::Frame;

pub use pci::PciVga;
pub use regs::VgaRegs;

/// Which extension the VGA core carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Extension {
    /// Plain IBM VGA.
    None,
    Cirrus(cirrus::CirrusState),
    Bochs(bochs::Dispi),
}

/// A VGA adapter: registers, video memory and the renderer's bookkeeping.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Vga {
    pub regs: VgaRegs,
    pub vram: Vec<u8>,
    /// The four plane latches (plane p in bits 8p..8p+7), loaded by every planar read.
    pub latch: u32,
    pub ext: Extension,
    /// Renderer state: not guest-visible, rebuilt (full redraw) after a restore.
    #[serde(skip)]
    pub display: render::DisplayState,
}

impl Vga {
    /// A VGA with `vram_size` bytes (a power of two, at least 256 KiB).
    pub fn new(vram_size: usize, ext: Extension) -> Self {
        assert!(vram_size.is_power_of_two() && vram_size >= 256 * 1024);
        let mut v = Vga { regs: VgaRegs::new(), vram: vec![0; vram_size], latch: 0, ext, display: Default::default() };
        v.reset();
        v
    }

    /// Power-on register state (VRAM is kept, as on a warm reset).
    pub fn reset(&mut self) {
        self.regs = VgaRegs::new();
        self.latch = 0;
        match &mut self.ext {
            Extension::None => {}
            Extension::Cirrus(c) => c.reset(&mut self.regs),
            Extension::Bochs(b) => *b = bochs::Dispi::new(self.vram.len()),
        }
        self.display.invalidate();
    }

    pub fn vram_mask(&self) -> usize {
        self.vram.len() - 1
    }

    /// Record a write to VRAM byte `off` for incremental rendering.
    #[inline]
    pub fn mark_dirty(&mut self, off: usize) {
        self.display.mark(off & (self.vram.len() - 1));
    }

    /// Mark `len` bytes from `off` dirty.
    pub fn mark_dirty_range(&mut self, off: usize, len: usize) {
        self.display.mark_range(off, len, self.vram.len());
    }

    /// Render what changed since the last call into the device's frame and return it.
    /// `now_ns` (virtual time) drives cursor and character blinking.
    pub fn update_frame(&mut self, now_ns: u64) -> &Frame {
        render::update(self, now_ns);
        &self.display.frame
    }
}
