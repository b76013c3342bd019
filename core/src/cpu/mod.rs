//! The IA-32 interpreter: Vessel's reference CPU. See `docs/cpu.md`.
//!
//! Layout (v86-style, split by concern): [`state`] plain architectural state, `flags` lazy
//! arithmetic flags, `mem` the memory access fast path, `decode` prefixes + opcode maps + ModRM,
//! `alu` value semantics of the integer instructions, `string` REP string ops, `control` far
//! transfers. Owned by cpu-sys: `segment`, `interrupt`, `task`, `paging`, `system`.

pub mod fpu;
pub mod state;

mod alu;
mod control;
mod debug;
mod decode;
mod decode0f;
pub mod disasm;
mod flags;
mod interrupt;
mod mem;
mod paging;
mod segment;
mod string;
mod system;
mod task;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sys;

pub use state::{CpuState, DescriptorTable, Fault, SegReg, Segment};

use crate::bus::Bus;
use flags::{FlagOp, Lazy};
use state::*;

/// Why [`Cpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The instruction budget was used up.
    Limit,
    /// HLT with no interrupt to wake the CPU.
    Halted,
    /// The bus asked for attention (`should_yield`).
    Yield,
    /// Triple fault: the machine must reset.
    Shutdown,
}

/// Prefix state of the instruction being executed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prefixes {
    pub op32: bool,
    pub a32: bool,
    /// Segment override (index) or 0xff for the default segment.
    pub seg: u8,
    /// 0 = none, 0xf3 = REP/REPE, 0xf2 = REPNE.
    pub rep: u8,
    pub lock: bool,
}

/// One IA-32 CPU.
pub struct Cpu {
    pub(crate) s: CpuState,
    pub(crate) lf: Lazy,
    retired: u64,
    /// Offset (in CS) of the next byte to fetch of the current instruction.
    pub(crate) ip: u32,
    /// EIP of the current instruction (its first prefix).
    pub(crate) start_eip: u32,
    pub(crate) p: Prefixes,
    /// Fetch translation cache: linear page (tag) -> physical page, valid when RAM.
    fetch_tag: u32,
    fetch_phys: u64,
    /// Data page cache (mem.rs).
    pub(crate) pc: Box<mem::PageCache>,
    /// TLB and PAE PDPTE registers (paging.rs).
    pub(crate) tlb: Box<paging::Tlb>,
    /// Bus map generation the caches were filled under.
    map_gen: u64,
    /// A software interrupt was taken by the current instruction (no single-step trap after it).
    pub(crate) sw_int: bool,
    /// Armed debug-register breakpoints (debug.rs `DBG_*`), recomputed on DR writes.
    pub(crate) dbg: u8,
    /// DR6 B0-B3 bits of data breakpoints hit by the current instruction.
    pub(crate) dbg_hits: u32,
    /// Instruction trace (target `vessel::cpu::trace`) enabled at the start of `run`.
    trace: bool,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

const NO_FETCH: u32 = 1; // an impossible page tag (tags are page aligned)

impl Cpu {
    /// Power-on state, as after RESET.
    pub fn new() -> Self {
        Cpu {
            s: CpuState::power_on(),
            lf: Lazy::default(),
            retired: 0,
            ip: 0,
            start_eip: 0,
            p: Prefixes::default(),
            fetch_tag: NO_FETCH,
            fetch_phys: 0,
            pc: Box::default(),
            tlb: Box::default(),
            map_gen: u64::MAX,
            trace: false,
            sw_int: false,
            dbg: 0,
            dbg_hits: 0,
        }
    }

    /// RESET: every architectural register to its power-on value (x87 state included).
    pub fn reset(&mut self) {
        let retired = self.retired;
        *self = Self::new();
        self.retired = retired;
    }

    /// The architectural state with lazy flags materialised.
    pub fn state(&self) -> CpuState {
        let mut s = self.s.clone();
        s.eflags = self.eflags();
        s
    }

    /// Replace the whole architectural state (drops every cache).
    pub fn set_state(&mut self, s: &CpuState) {
        self.s = s.clone();
        self.s.eflags = (self.s.eflags | 2) & !(0x8 | 0x20 | 0x8000);
        self.lf = Lazy::default();
        self.flush_caches();
    }

    pub fn instructions_retired(&self) -> u64 {
        self.retired
    }

    pub(crate) fn flush_caches(&mut self) {
        self.flush_page_cache();
        self.map_gen = u64::MAX;
        self.flush_tlb();
        self.dbg = 0;
        self.update_debug();
    }

    /// Current EFLAGS with the lazy arithmetic flags materialised.
    #[inline]
    pub(crate) fn eflags(&self) -> u32 {
        self.lf.materialize(self.s.eflags)
    }

    /// Store EFLAGS (all bits) and make the flags eager.
    #[inline]
    pub(crate) fn set_eflags_raw(&mut self, v: u32) {
        self.s.eflags = (v | 2) & !(0x8 | 0x20 | 0x8000 | 0xffc0_0000);
        self.lf.op = FlagOp::Eager;
    }

    /// Replace the arithmetic flags selected by `mask` with those in `v`.
    #[inline]
    pub(crate) fn set_arith(&mut self, mask: u32, v: u32) {
        let f = self.eflags();
        self.s.eflags = (f & !mask) | (v & mask);
        self.lf.op = FlagOp::Eager;
    }

    #[inline]
    pub(crate) fn cf(&self) -> bool {
        self.lf.cf(self.s.eflags)
    }

    /// Condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc).
    #[inline]
    pub(crate) fn cond(&self, cc: u8) -> bool {
        let f = self.s.eflags;
        let l = &self.lf;
        let r = match cc >> 1 {
            0 => l.of(f),
            1 => l.cf(f),
            2 => l.zf(f),
            3 => l.cf(f) || l.zf(f),
            4 => l.sf(f),
            5 => {
                if l.op == FlagOp::Eager {
                    f & PF != 0
                } else {
                    flags::parity(l.res)
                }
            }
            6 => l.sf(f) != l.of(f),
            _ => l.zf(f) || (l.sf(f) != l.of(f)),
        };
        r ^ (cc & 1 != 0)
    }

    // ---- registers ----

    #[inline(always)]
    pub(crate) fn reg(&self, i: u8, sz: u8) -> u32 {
        match sz {
            1 => {
                if i < 4 {
                    self.s.gpr[i as usize] & 0xff
                } else {
                    (self.s.gpr[(i - 4) as usize] >> 8) & 0xff
                }
            }
            2 => self.s.gpr[i as usize] & 0xffff,
            _ => self.s.gpr[i as usize],
        }
    }

    #[inline(always)]
    pub(crate) fn set_reg(&mut self, i: u8, sz: u8, v: u32) {
        match sz {
            1 => {
                if i < 4 {
                    let r = &mut self.s.gpr[i as usize];
                    *r = (*r & !0xff) | (v & 0xff);
                } else {
                    let r = &mut self.s.gpr[(i - 4) as usize];
                    *r = (*r & !0xff00) | ((v & 0xff) << 8);
                }
            }
            2 => {
                let r = &mut self.s.gpr[i as usize];
                *r = (*r & !0xffff) | (v & 0xffff);
            }
            _ => self.s.gpr[i as usize] = v,
        }
    }

    #[inline(always)]
    pub(crate) fn cpl(&self) -> u8 {
        self.s.cpl()
    }

    // ---- the run loop ----

    /// Execute up to `max_instructions` instructions (interrupt deliveries count as one).
    pub fn run<B: Bus>(&mut self, bus: &mut B, max_instructions: u64) -> RunExit {
        self.trace = tracing::enabled!(target: "vessel::cpu::trace", tracing::Level::TRACE);
        let g = bus.map_generation();
        if g != self.map_gen {
            self.map_gen = g;
            self.flush_page_cache();
        }
        let mut n = 0u64;
        while n < max_instructions {
            // Poll the bus for attention every 256 instructions.
            if n & 255 == 255 {
                if bus.should_yield() {
                    return RunExit::Yield;
                }
                let g = bus.map_generation();
                if g != self.map_gen {
                    self.map_gen = g;
                    self.flush_page_cache();
                }
            }
            match self.step_inner(bus) {
                None => {}
                Some(exit) => return exit,
            }
            n += 1;
        }
        RunExit::Limit
    }

    /// Execute exactly one instruction (or deliver one pending interrupt).
    pub fn step<B: Bus>(&mut self, bus: &mut B) -> RunExit {
        self.trace = tracing::enabled!(target: "vessel::cpu::trace", tracing::Level::TRACE);
        let g = bus.map_generation();
        if g != self.map_gen {
            self.map_gen = g;
            self.flush_page_cache();
        }
        self.step_inner(bus).unwrap_or(RunExit::Limit)
    }

    /// One instruction or event; `Some` when `run` must return.
    #[inline]
    fn step_inner<B: Bus>(&mut self, bus: &mut B) -> Option<RunExit> {
        // Events between instructions.
        if self.s.intr_shadow {
            self.s.intr_shadow = false;
        } else {
            if !self.s.nmi_blocked && bus.take_nmi() {
                self.s.halted = false;
                self.s.nmi_blocked = true;
                return self.event(bus, 2, interrupt::Kind::External);
            }
            if self.s.eflags & IF != 0 && bus.intr_pending() {
                self.s.halted = false;
                let v = bus.intr_ack();
                return self.event(bus, v, interrupt::Kind::External);
            }
        }
        if self.s.halted {
            return Some(RunExit::Halted);
        }
        self.start_eip = self.s.eip;
        self.ip = self.s.eip;
        if self.trace {
            self.trace_insn(bus);
        }
        if self.s.eflags & (TF | RF) != 0 || self.dbg != 0 {
            return self.step_debug(bus);
        }
        match self.exec(bus) {
            Ok(()) => {
                self.retired += 1;
                None
            }
            Err(Exit::Fault(f)) => {
                self.s.eip = self.start_eip;
                self.retired += 1;
                self.fault(bus, f)
            }
            Err(Exit::Halt) => {
                self.retired += 1;
                Some(RunExit::Halted)
            }
        }
    }

    /// Deliver an external event (counts as one instruction).
    fn event<B: Bus>(&mut self, bus: &mut B, vector: u8, kind: interrupt::Kind) -> Option<RunExit> {
        self.retired += 1;
        self.start_eip = self.s.eip;
        match self.deliver(bus, vector, kind, None) {
            Ok(()) => None,
            Err(f) => self.fault(bus, f),
        }
    }

    /// Deliver an exception raised by the current instruction, applying the double-fault and
    /// triple-fault rules.
    pub(crate) fn fault<B: Bus>(&mut self, bus: &mut B, f: Fault) -> Option<RunExit> {
        let mut f = f;
        let mut first: Option<Fault> = None;
        loop {
            self.s.eip = self.start_eip;
            match self.deliver(bus, f.vector(), interrupt::Kind::Exception, f.error_code()) {
                Ok(()) => return None,
                Err(g) => {
                    if f == Fault::DoubleFault {
                        tracing::warn!("triple fault ({g}) while delivering #DF");
                        return Some(RunExit::Shutdown);
                    }
                    let df = match first.unwrap_or(f) {
                        p if p.contributory() && g.contributory() => true,
                        Fault::PageFault { .. } => g.contributory() || matches!(g, Fault::PageFault { .. }),
                        _ => false,
                    };
                    first = Some(f);
                    f = if df { Fault::DoubleFault } else { g };
                }
            }
        }
    }
}

/// Why `exec` stopped an instruction early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Fault(Fault),
    Halt,
}

impl From<Fault> for Exit {
    #[inline(always)]
    fn from(f: Fault) -> Self {
        Exit::Fault(f)
    }
}

pub(crate) type Res<T> = Result<T, Exit>;
