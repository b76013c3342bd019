//! The interpreter side: `vessel_core::cpu::Cpu` on a `FlatBus` holding exactly the oracle's RAM.

use super::diff::{case_image, End, Outcome};
use super::gen::Case;
use super::state::{Dt, Seg, State};
use vessel_core::bus::FlatBus;
use vessel_core::cpu::{Cpu, CpuState, DescriptorTable, RunExit, Segment};

/// Instruction budget per case: generated sequences are short and branch only forward.
const MAX_INSTRUCTIONS: u64 = 100_000;

fn to_seg(s: &Seg) -> Segment {
    Segment { selector: s.selector, base: s.base, limit: s.limit, access: s.access, valid: s.valid }
}

fn from_seg(s: &Segment) -> Seg {
    Seg { selector: s.selector, base: s.base, limit: s.limit, access: s.access, valid: s.valid }
}

/// The oracle state as the interpreter's `CpuState` (other fields: power-on values).
pub fn to_cpu_state(s: &State) -> CpuState {
    let mut c = Cpu::new().state();
    c.gpr = s.gpr;
    c.eip = s.eip;
    c.eflags = s.eflags | 2;
    for i in 0..6 {
        c.seg[i] = to_seg(&s.seg[i]);
    }
    c.ldtr = to_seg(&s.ldtr);
    c.tr = to_seg(&s.tr);
    c.gdtr = DescriptorTable { base: s.gdtr.base, limit: s.gdtr.limit };
    c.idtr = DescriptorTable { base: s.idtr.base, limit: s.idtr.limit };
    c.cr0 = s.cr0;
    c.cr2 = s.cr2;
    c.cr3 = s.cr3;
    c.cr4 = s.cr4;
    c.efer = 0;
    c.halted = false;
    c
}

pub fn from_cpu_state(c: &CpuState) -> State {
    State {
        gpr: c.gpr,
        eip: c.eip,
        eflags: c.eflags,
        seg: [0, 1, 2, 3, 4, 5].map(|i| from_seg(&c.seg[i])),
        ldtr: from_seg(&c.ldtr),
        tr: from_seg(&c.tr),
        gdtr: Dt { base: c.gdtr.base, limit: c.gdtr.limit },
        idtr: Dt { base: c.idtr.base, limit: c.idtr.limit },
        cr0: c.cr0,
        cr2: c.cr2,
        cr3: c.cr3,
        cr4: c.cr4,
    }
}

/// Run `case` on the interpreter until HLT (or shutdown / budget).
pub fn run_interp(case: &Case, image: &[u8]) -> Outcome {
    let mut bus = FlatBus { memory: case_image(case, image), io_writes: Vec::new() };
    let mut cpu = Cpu::new();
    cpu.set_state(&to_cpu_state(&case.init));
    let end = match cpu.run(&mut bus, MAX_INSTRUCTIONS) {
        RunExit::Halted => End::Hlt,
        RunExit::Shutdown => End::Shutdown,
        other => End::Other(format!("{other:?} after {} instructions", cpu.instructions_retired())),
    };
    let io_writes = bus.io_writes.iter().map(|&(p, w, v)| (p, w, v)).collect();
    Outcome { end, state: from_cpu_state(&cpu.state()), mem: bus.memory, io_writes }
}
