//! The board's virtual clock.
//!
//! Choice: time is derived from instructions executed, not from the host clock. Each retired
//! instruction advances virtual time by a fixed `ns_per_instruction` (default 10 ns, i.e. a
//! 100 MIPS machine), and when the CPU halts the clock jumps straight to the next device deadline
//! (PIT IRQ 0, RTC). Why: runs are deterministic and reproducible (same guest, same timing,
//! whatever the host load), guests' timing loops (SeaBIOS TSC calibration against PIT channel 2,
//! Linux's PIT/TSC calibration and BogoMIPS) measure a consistent machine, and idle guests cost no
//! host time. The price: guest time runs faster than wall time while idle and slower than wall
//! time when the interpreter is slower than the nominal rate; front ends that want wall-clock
//! pacing sleep while idle (`vessel run --realtime`), and the RTC starts from the host clock.
//!
//! The CPU runs in slices of at most [`MAX_SLICE_NS`] of virtual time and never past the next
//! device deadline, so interrupts arrive within one slice of when they are due and device reads
//! (PIT counters, PM timer, RTC) see time advance in steps of at most one slice.

use serde::{Deserialize, Serialize};

pub const DEFAULT_NS_PER_INSTRUCTION: u64 = 10;
/// Longest slice of virtual time the CPU runs without devices being polled.
pub const MAX_SLICE_NS: u64 = 20_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    pub ns_per_instruction: u64,
    /// Virtual nanoseconds since power-on.
    pub now_ns: u64,
    /// Instructions executed since power-on (as reported by the run loop).
    pub instructions: u64,
    /// Virtual time spent halted (skipped).
    pub idle_ns: u64,
}

impl Clock {
    pub fn new(ns_per_instruction: u64) -> Self {
        Clock { ns_per_instruction: ns_per_instruction.max(1), now_ns: 0, instructions: 0, idle_ns: 0 }
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn add_instructions(&mut self, n: u64) {
        self.instructions += n;
        self.now_ns += n * self.ns_per_instruction;
    }

    pub fn skip_to(&mut self, t: u64) {
        if t > self.now_ns {
            self.idle_ns += t - self.now_ns;
            self.now_ns = t;
        }
    }

    /// Instructions that fit before virtual time `deadline` (rounded up, so the deadline is reached).
    pub fn instructions_until(&self, deadline: u64) -> u64 {
        deadline.saturating_sub(self.now_ns).div_ceil(self.ns_per_instruction)
    }
}
