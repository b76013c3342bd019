//! String instructions (MOVS CMPS STOS LODS SCAS INS OUTS) with REP/REPE/REPNE.
//!
//! Each iteration commits ESI/EDI/ECX before the next one starts, so a fault in the middle leaves
//! the registers describing the completed iterations and EIP at the instruction: restarting it
//! continues where it stopped. Long REP runs stop after a bounded number of iterations with EIP
//! unchanged so interrupts and `run` budgets are honoured (the instruction simply resumes).

use super::debug::DBG_DATA;
use super::mem::Access;
use super::state::*;
use crate::bus::PageKind;
use super::{Cpu, Res};
use crate::bus::Bus;

const ITER_CHUNK: u32 = 4096;

impl Cpu {
    #[inline(always)]
    fn idx(&self, r: usize) -> u32 {
        if self.p.a32 {
            self.s.gpr[r]
        } else {
            self.s.gpr[r] & 0xffff
        }
    }

    #[inline(always)]
    fn step_idx(&mut self, r: usize, sz: u8) {
        let d = if self.s.eflags & DF != 0 { (sz as u32).wrapping_neg() } else { sz as u32 };
        if self.p.a32 {
            self.s.gpr[r] = self.s.gpr[r].wrapping_add(d);
        } else {
            let v = self.s.gpr[r];
            self.s.gpr[r] = (v & 0xffff_0000) | (v.wrapping_add(d) & 0xffff);
        }
    }

    pub(crate) fn string_op<B: Bus>(&mut self, bus: &mut B, op: u8) -> Res<()> {
        let sz = if op & 1 == 0 { 1 } else { self.osz() };
        if matches!(op, 0x6c..=0x6f) {
            let port = self.s.gpr[EDX] as u16;
            self.io_check(bus, port, sz)?;
        }
        let rep = self.p.rep != 0;
        let src = self.dseg(DS);
        // Forward REP MOVS/STOS move whole page-sized blocks at once (`rep_block`).
        let fast = rep && matches!(op, 0xa4 | 0xa5 | 0xaa | 0xab) && self.s.eflags & DF == 0 && self.dbg & DBG_DATA == 0;
        let mut n = 0;
        loop {
            if rep {
                if self.count_reg() == 0 {
                    return Ok(());
                }
                if n == ITER_CHUNK {
                    // Resume later: EIP stays on this instruction.
                    self.ip = self.start_eip;
                    return Ok(());
                }
            }
            if fast && n + 1 < ITER_CHUNK {
                let k = self.rep_block(bus, op, sz, src, ITER_CHUNK - n);
                if k != 0 {
                    n += k;
                    continue;
                }
            }
            n += 1;
            match op {
                0xa4 | 0xa5 => {
                    let si = self.idx(ESI);
                    let di = self.idx(EDI);
                    let v = self.rd(bus, src, si, sz)?;
                    self.wr(bus, ES, di, sz, v)?;
                    self.step_idx(ESI, sz);
                    self.step_idx(EDI, sz);
                }
                0xa6 | 0xa7 => {
                    let si = self.idx(ESI);
                    let di = self.idx(EDI);
                    let a = self.rd(bus, src, si, sz)?;
                    let b = self.rd(bus, ES, di, sz)?;
                    self.alu(7, a, b, sz);
                    self.step_idx(ESI, sz);
                    self.step_idx(EDI, sz);
                }
                0xaa | 0xab => {
                    let di = self.idx(EDI);
                    let v = self.reg(0, sz);
                    self.wr(bus, ES, di, sz, v)?;
                    self.step_idx(EDI, sz);
                }
                0xac | 0xad => {
                    let si = self.idx(ESI);
                    let v = self.rd(bus, src, si, sz)?;
                    self.set_reg(0, sz, v);
                    self.step_idx(ESI, sz);
                }
                0xae | 0xaf => {
                    let di = self.idx(EDI);
                    let b = self.rd(bus, ES, di, sz)?;
                    let a = self.reg(0, sz);
                    self.alu(7, a, b, sz);
                    self.step_idx(EDI, sz);
                }
                0x6c | 0x6d => {
                    let di = self.idx(EDI);
                    self.check_wr(bus, ES, di, sz as u32)?;
                    let v = bus.io_read(self.s.gpr[EDX] as u16, sz);
                    self.wr(bus, ES, di, sz, v)?;
                    self.step_idx(EDI, sz);
                }
                _ => {
                    let si = self.idx(ESI);
                    let v = self.rd(bus, src, si, sz)?;
                    bus.io_write(self.s.gpr[EDX] as u16, sz, v);
                    self.step_idx(ESI, sz);
                }
            }
            if !rep {
                return Ok(());
            }
            let c = self.count_reg().wrapping_sub(1);
            self.set_count_reg(c);
            if matches!(op, 0xa6 | 0xa7 | 0xae | 0xaf) {
                let zf = self.cond(4);
                if (self.p.rep == 0xf3 && !zf) || (self.p.rep == 0xf2 && zf) {
                    return Ok(());
                }
            }
            if self.dbg_hits != 0 && c != 0 {
                // A data breakpoint traps after the iteration that hit, EIP still on the
                // instruction so the IRET resumes the remaining iterations.
                self.ip = self.start_eip;
                return Ok(());
            }
        }
    }

    /// Up to `budget` iterations of a forward REP MOVS/STOS as one block copy/fill in RAM, when
    /// the block stays inside one source and one destination page, inside the segment limits,
    /// without address wrap-around, on RAM, and (MOVS) the destination does not overlap the
    /// source ahead of it (then element-wise and memmove semantics differ). Registers are
    /// committed as after that many iterations. Returns 0 when anything does not fit: the caller
    /// then runs one ordinary iteration, which raises any fault exactly where hardware would.
    #[inline(never)]
    fn rep_block<B: Bus>(&mut self, bus: &mut B, op: u8, sz: u8, src: usize, budget: u32) -> u32 {
        let sz32 = sz as u32;
        let movs = op <= 0xa5;
        let wrap = if self.p.a32 { 1u64 << 32 } else { 1 << 16 };
        let di = self.idx(EDI);
        let dlin = self.s.seg[ES].base.wrapping_add(di);
        let mut k = self.count_reg().min(budget) as u64;
        k = k.min((wrap - di as u64) / sz as u64).min((0x1000 - (dlin & 0xfff) as u64) / sz as u64);
        let si = self.idx(ESI);
        let slin = self.s.seg[src].base.wrapping_add(si);
        if movs {
            k = k.min((wrap - si as u64) / sz as u64).min((0x1000 - (slin & 0xfff) as u64) / sz as u64);
        }
        if k < 2 {
            return 0;
        }
        let k = k as u32;
        let len = k * sz32;
        if self.lin(ES, di, len, Access::Write).is_err() || (movs && self.lin(src, si, len, Access::Read).is_err()) {
            return 0;
        }
        if (dlin | if movs { slin } else { 0 }) & (sz32 - 1) != 0 && self.alignment_check() {
            return 0;
        }
        let user = self.cpl() == 3;
        let a20 = bus.a20_mask();
        let ps = if movs {
            match self.translate(bus, slin, Access::Read, user) {
                Ok(p) if matches!(bus.page_kind((p & a20) >> 12), PageKind::Ram | PageKind::RamReadOnly) => p & a20,
                _ => return 0,
            }
        } else {
            0
        };
        let pd = match self.translate(bus, dlin, Access::Write, user) {
            Ok(p) if bus.page_kind((p & a20) >> 12) == PageKind::Ram => p & a20,
            _ => return 0,
        };
        let (d, l) = (pd as usize, len as usize);
        let ram = bus.ram();
        if movs {
            let s = ps as usize;
            if d > s && d < s + l {
                return 0;
            }
            ram.copy_within(s..s + l, d);
        } else {
            let v = self.s.gpr[EAX].to_le_bytes();
            match sz {
                1 => ram[d..d + l].fill(v[0]),
                _ => {
                    for c in ram[d..d + l].chunks_exact_mut(sz as usize) {
                        c.copy_from_slice(&v[..sz as usize]);
                    }
                }
            }
        }
        let add = |r: u32| -> u32 { if self.p.a32 { r.wrapping_add(len) } else { (r & 0xffff_0000) | (r.wrapping_add(len) & 0xffff) } };
        self.s.gpr[EDI] = add(self.s.gpr[EDI]);
        if movs {
            self.s.gpr[ESI] = add(self.s.gpr[ESI]);
        }
        let c = self.count_reg() - k;
        self.set_count_reg(c);
        k
    }
}
