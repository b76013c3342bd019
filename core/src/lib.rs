//! Vessel engine: everything that runs a virtual machine but knows nothing about a GUI.
//!
//! - [`bus`]: the contract between a CPU and the machine around it (physical memory, MMIO, port I/O,
//!   interrupt lines). `vessel-machines` implements it; the CPU only ever sees this trait.
//! - [`block`]: disk images (raw, qcow2, ...) behind the `BlockDevice` trait.
//! - [`cpu`]: the IA-32 interpreter (the reference CPU).
//! - [`display`]: the RGBA frame display devices hand to front ends.
//! - [`profile`]: VM profiles (RON files in the XDG data directory) and templates.
//! - [`vm`]: a machine on its own thread, driven by commands, reporting events (the engine API).

pub mod block;
pub mod bus;
pub mod cpu;
pub mod display;
pub mod profile;
pub mod vm;
