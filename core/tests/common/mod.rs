//! KVM differential-testing harness for the IA-32 interpreter (see docs/status/cpu-diff.md).
#![allow(dead_code)]

pub mod kvm;
pub mod layout;
pub mod rng;
pub mod state;
pub mod flags;
pub mod gen;
pub mod groups;
pub mod diff;
pub mod host32;
pub mod interp;
