//! String instructions (MOVS CMPS STOS LODS SCAS INS OUTS) with REP/REPE/REPNE.
//!
//! Each iteration commits ESI/EDI/ECX before the next one starts, so a fault in the middle leaves
//! the registers describing the completed iterations and EIP at the instruction: restarting it
//! continues where it stopped. Long REP runs stop after a bounded number of iterations with EIP
//! unchanged so interrupts and `run` budgets are honoured (the instruction simply resumes).

use super::state::*;
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
}
