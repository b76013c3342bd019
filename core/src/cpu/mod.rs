//! The IA-32 interpreter: Vessel's reference CPU. See `docs/cpu.md`.

pub mod fpu;
