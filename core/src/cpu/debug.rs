//! Debug registers: instruction breakpoints (faults before the instruction, suppressed by
//! EFLAGS.RF), data breakpoints (traps after the instruction, or after the REP iteration that hit),
//! single-step (TF) and the combined DR6 report, and #AC alignment checks.
//!
//! Cost when unused: the run loop tests one word (`EFLAGS & (TF|RF)` or `dbg != 0`) per
//! instruction; data breakpoints disable the data page cache (mem.rs) while enabled, so the
//! RAM fast path needs no check at all and every access reaches `data_bp` through the slow path.

use super::interrupt::Kind;
use super::state::*;
use super::{Cpu, RunExit};
use crate::bus::Bus;

/// Some DR7-enabled breakpoint is an instruction breakpoint.
pub(crate) const DBG_EXEC: u8 = 1;
/// Some DR7-enabled breakpoint is a data (write or read/write) breakpoint.
pub(crate) const DBG_DATA: u8 = 2;

/// DR6 bits.
const DR6_BS: u32 = 1 << 14;

impl Cpu {
    /// Recompute `dbg` after a DR0-DR7 write (or `set_state`).
    pub(crate) fn update_debug(&mut self) {
        let dr7 = self.s.dr[7];
        let mut d = 0;
        for i in 0..4 {
            if dr7 & (3 << (2 * i)) == 0 {
                continue;
            }
            match (dr7 >> (16 + 4 * i)) & 3 {
                0 => d |= DBG_EXEC,
                1 | 3 => d |= DBG_DATA,
                _ => {} // I/O breakpoints (CR4.DE): not implemented.
            }
        }
        if d & DBG_DATA != 0 && self.dbg & DBG_DATA == 0 {
            // The data page cache bypasses `data_bp`: empty it while data breakpoints are armed.
            self.flush_page_cache();
        }
        self.dbg = d;
        self.dbg_hits = 0;
    }

    /// Enabled breakpoints of kind `rw` (0 exec, 1 write, 3 read/write) matching
    /// `lin..lin+len`, as DR6 B0-B3 bits.
    fn bp_match(&self, lin: u32, len: u32, write: bool, exec: bool) -> u32 {
        let dr7 = self.s.dr[7];
        let mut hits = 0;
        for i in 0..4 {
            if dr7 & (3 << (2 * i)) == 0 {
                continue;
            }
            let rw = (dr7 >> (16 + 4 * i)) & 3;
            let blen = match (dr7 >> (18 + 4 * i)) & 3 {
                0 => 1u32,
                1 => 2,
                3 => 4,
                _ => 8,
            };
            let a = self.s.dr[i] & !(blen - 1);
            let hit = if exec {
                rw == 0 && self.s.dr[i] == lin
            } else {
                // Overlap of [lin, lin+len) and [a, a+blen).
                (rw == 3 || (rw == 1 && write)) && (lin.wrapping_sub(a) < blen || a.wrapping_sub(lin) < len)
            };
            if hit {
                hits |= 1 << i;
            }
        }
        hits
    }

    /// Called by the memory slow path for every data access while `dbg & DBG_DATA`.
    #[inline(never)]
    pub(crate) fn data_bp(&mut self, lin: u32, len: u32, write: bool) {
        self.dbg_hits |= self.bp_match(lin, len, write, false);
    }

    /// #AC: CR0.AM, EFLAGS.AC, CPL 3 and an operand not aligned to its size. Only called for
    /// misaligned accesses, so the condition costs nothing on aligned ones.
    #[cold]
    pub(crate) fn alignment_check(&self) -> bool {
        self.s.cr0 & CR0_AM != 0 && self.eflags() & AC != 0 && self.cpl() == 3
    }

    /// The run loop's path for instructions that start with TF or RF set or with breakpoints
    /// armed: instruction-breakpoint fault, the instruction, then one #DB trap for data
    /// breakpoints and single-step together.
    #[inline(never)]
    pub(crate) fn step_debug<B: Bus>(&mut self, bus: &mut B) -> Option<RunExit> {
        let f = self.s.eflags;
        if self.dbg & DBG_EXEC != 0 && f & RF == 0 {
            let lin = self.s.seg[CS].base.wrapping_add(self.s.eip);
            let hits = self.bp_match(lin, 1, false, true);
            if hits != 0 {
                // Fault: EIP at the instruction, RF=0 in the pushed image (the handler sets it).
                self.s.dr[6] = (self.s.dr[6] & !0xf) | hits;
                self.retired += 1;
                return self.fault(bus, Fault::Debug);
            }
        }
        self.sw_int = false;
        self.dbg_hits = 0;
        match self.exec(bus) {
            Ok(()) => {
                self.retired += 1;
                if f & RF != 0 {
                    // RF is cleared once an instruction completes (IRET may set it again).
                    self.s.eflags &= !RF;
                }
                let mut dr6 = 0;
                if self.dbg_hits != 0 {
                    dr6 |= self.dbg_hits;
                }
                if f & TF != 0 && !self.sw_int {
                    dr6 |= DR6_BS;
                }
                self.sw_int = false;
                if dr6 == 0 {
                    return None;
                }
                self.s.dr[6] = (self.s.dr[6] & !0xf) | dr6;
                self.start_eip = self.s.eip;
                match self.deliver(bus, 1, Kind::Exception, None) {
                    Ok(()) => None,
                    Err(e) => self.fault(bus, e),
                }
            }
            Err(super::Exit::Fault(e)) => {
                self.s.eip = self.start_eip;
                self.retired += 1;
                self.fault(bus, e)
            }
            Err(super::Exit::Halt) => {
                self.retired += 1;
                Some(RunExit::Halted)
            }
        }
    }
}
