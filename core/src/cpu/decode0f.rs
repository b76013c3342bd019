//! The two-byte opcode map (0F xx).

use super::decode::ModRm;
use super::flags::{mask, szp};
use super::fpu::FpuOutcome;
use super::state::*;
use super::{Cpu, Res};
use crate::bus::Bus;

impl Cpu {
    /// Memory operand of a BT-family instruction with a register bit offset: the bit string
    /// extends beyond the operand (signed offset).
    fn bt_addr(&self, m: &ModRm, bit: u32, sz: u8) -> (u32, u32) {
        let bits = sz as u32 * 8;
        let sbit = if sz == 2 { bit as u16 as i16 as i32 } else { bit as i32 };
        let word = sbit.div_euclid(bits as i32);
        let off = self.m_off(m, (word * sz as i32) as u32);
        (off, sbit.rem_euclid(bits as i32) as u32)
    }

    pub(crate) fn exec_0f<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        let op = self.fetch8(bus)?;
        let osz = self.osz();
        match op {
            0x00 => self.group6(bus)?,
            0x01 => self.group7(bus)?,
            0x02 | 0x03 => self.lar_lsl(bus, op == 0x03)?,
            0x06 => self.clts()?,
            0x08 | 0x09 => {
                if self.cpl() != 0 {
                    return Err(Fault::GeneralProtection(0).into());
                }
            }
            0x0b => return Err(Fault::InvalidOpcode.into()),
            0x18..=0x1f => {
                // Hint NOPs (NOP r/m, prefetch hints).
                let _ = self.modrm(bus)?;
            }
            0x20..=0x23 => self.mov_cr_dr(bus, op)?,
            0x30 => self.wrmsr()?,
            0x31 => {
                if self.s.cr4 & (1 << 2) != 0 && self.cpl() != 0 && self.s.protected() {
                    return Err(Fault::GeneralProtection(0).into());
                }
                let t = self.s.tsc.wrapping_add(self.instructions_retired());
                self.s.gpr[EAX] = t as u32;
                self.s.gpr[EDX] = (t >> 32) as u32;
            }
            0x32 => self.rdmsr()?,
            0x34 => self.sysenter()?,
            0x35 => self.sysexit()?,
            0x40..=0x4f => {
                let m = self.modrm(bus)?;
                let v = self.rm_read(bus, &m, osz)?;
                if self.cond(op & 0xf) {
                    self.set_reg(m.reg, osz, v);
                } else if osz == 4 {
                    // 32-bit CMOV zero-extends nothing in 32-bit mode: the register is unchanged.
                }
            }
            0x60..=0x7f | 0xd0..=0xff => {
                if self.p.op32 != self.s.seg[CS].big() || self.p.rep != 0 {
                    // 66/F2/F3 forms are SSE/SSE2: not implemented, not advertised.
                    return Err(Fault::InvalidOpcode.into());
                }
                if self.s.cr0 & CR0_EM != 0 || op == 0xff {
                    return Err(Fault::InvalidOpcode.into());
                }
                if self.s.cr0 & CR0_TS != 0 {
                    return Err(Fault::DeviceNotAvailable.into());
                }
                if self.s.fpu.pending_exception() && self.s.cr0 & CR0_NE != 0 {
                    return Err(Fault::MathFault.into());
                }
                if op == 0x77 {
                    self.s.fpu.emms();
                    return Ok(());
                }
                let m = self.modrm(bus)?;
                if (0x71..=0x73).contains(&op) {
                    // Shift by immediate: the imm8 follows the ModRM byte.
                    let imm = self.fetch8(bus)?;
                    match self.s.fpu.mmx_shift_imm(op, m.raw, imm) {
                        FpuOutcome::Done => {}
                        _ => return Err(Fault::InvalidOpcode.into()),
                    }
                    return Ok(());
                }
                self.fpu_mem_op(bus, &m, |f, ea, mem, gpr| f.mmx_execute(op, m.raw, ea, mem, gpr))?;
            }
            0x80..=0x8f => {
                let d = self.imm(bus, osz)?;
                let d = if osz == 2 { d as u16 as i16 as i32 as u32 } else { d };
                if self.cond(op & 0xf) {
                    self.jump(self.ip.wrapping_add(d))?;
                }
            }
            0x90..=0x9f => {
                let m = self.modrm(bus)?;
                let v = self.cond(op & 0xf) as u32;
                self.rm_write(bus, &m, 1, v)?;
            }
            0xa0 | 0xa8 => {
                let r = if op == 0xa0 { FS } else { GS };
                let v = self.s.seg[r].selector as u32;
                if osz == 4 {
                    let esp = self.s.gpr[ESP];
                    let big = self.s.seg[SS].big();
                    let n = esp.wrapping_sub(4);
                    let off = if big { n } else { n & 0xffff };
                    self.check_wr(bus, SS, off, 4)?;
                    self.wr(bus, SS, off, 2, v)?;
                    self.s.gpr[ESP] = if big { n } else { (esp & 0xffff_0000) | (n & 0xffff) };
                } else {
                    self.push(bus, v, 2)?;
                }
            }
            0xa1 | 0xa9 => {
                let r = if op == 0xa1 { FS } else { GS };
                let v = self.peek(bus, 0, osz)? as u16;
                self.load_seg(bus, r, v)?;
                self.add_sp(osz as u32);
            }
            0xa2 => self.cpuid(),
            0xa3 | 0xab | 0xb3 | 0xbb => {
                let m = self.modrm(bus)?;
                let bit = self.reg(m.reg, osz);
                let kind = (op >> 3) & 3; // 0 BT, 1 BTS, 2 BTR, 3 BTC
                self.bit_op(bus, &m, bit, osz, kind, true)?;
            }
            0xba => {
                let m = self.modrm(bus)?;
                let bit = self.fetch8(bus)? as u32;
                if m.reg < 4 {
                    return Err(Fault::InvalidOpcode.into());
                }
                self.bit_op(bus, &m, bit, osz, m.reg & 3, false)?;
            }
            0xa4 | 0xa5 | 0xac | 0xad => {
                let m = self.modrm(bus)?;
                let d = self.rm_read(bus, &m, osz)?;
                let count = if op & 1 == 0 { self.fetch8(bus)? as u32 } else { self.s.gpr[ECX] & 0xff };
                let s = self.reg(m.reg, osz);
                let save = (self.lf, self.s.eflags);
                if let Some(r) = self.shiftd(op < 0xa8, d, s, count, osz) {
                    if let Err(e) = self.rm_write(bus, &m, osz, r) {
                        (self.lf, self.s.eflags) = save;
                        return Err(e);
                    }
                }
            }
            0xae => {
                let m = self.modrm(bus)?;
                if !m.mem || m.reg > 1 {
                    return Err(Fault::InvalidOpcode.into());
                }
                if self.s.cr0 & CR0_EM != 0 {
                    return Err(Fault::InvalidOpcode.into());
                }
                if self.s.cr0 & CR0_TS != 0 {
                    return Err(Fault::DeviceNotAvailable.into());
                }
                if self.s.seg[m.seg as usize].base.wrapping_add(m.off) & 15 != 0 {
                    // The 16-byte alignment rule is on the linear address.
                    return Err(Fault::GeneralProtection(0).into());
                }
                if m.reg == 0 {
                    self.fpu_mem_op(bus, &m, |f, ea, mem, _| f.fxsave(ea.unwrap_or(0), mem))?;
                } else {
                    self.fpu_mem_op(bus, &m, |f, ea, mem, _| f.fxrstor(ea.unwrap_or(0), mem))?;
                }
            }
            0xaf => {
                let m = self.modrm(bus)?;
                let b = self.rm_read(bus, &m, osz)?;
                let a = self.reg(m.reg, osz);
                let r = self.imul2(a, b, osz);
                self.set_reg(m.reg, osz, r);
            }
            0xb0 | 0xb1 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let d = self.rm_read(bus, &m, sz)?;
                let a = self.reg(0, sz);
                let save = self.lf;
                self.alu(7, a, d, sz);
                if a == d {
                    let s = self.reg(m.reg, sz);
                    if let Err(e) = self.rm_write(bus, &m, sz, s) {
                        self.lf = save;
                        return Err(e);
                    }
                } else {
                    // The destination is written back with its own value (locked cycle).
                    if let Err(e) = self.rm_write(bus, &m, sz, d) {
                        self.lf = save;
                        return Err(e);
                    }
                    self.set_reg(0, sz, d);
                }
            }
            0xb2 | 0xb4 | 0xb5 => {
                let m = self.modrm(bus)?;
                if !m.mem {
                    return Err(Fault::InvalidOpcode.into());
                }
                let seg = match op {
                    0xb2 => SS,
                    0xb4 => FS,
                    _ => GS,
                };
                let off = self.rd(bus, m.seg as usize, m.off, osz)?;
                let o2 = self.m_off(&m, osz as u32);
                let sel = self.rd(bus, m.seg as usize, o2, 2)? as u16;
                self.load_seg(bus, seg, sel)?;
                self.set_reg(m.reg, osz, off);
            }
            0xb6 | 0xb7 | 0xbe | 0xbf => {
                let m = self.modrm(bus)?;
                let ssz = if op & 1 == 0 { 1 } else { 2 };
                let v = self.rm_read(bus, &m, ssz)?;
                let v = if op >= 0xbe {
                    if ssz == 1 {
                        v as u8 as i8 as i32 as u32
                    } else {
                        v as u16 as i16 as i32 as u32
                    }
                } else {
                    v
                };
                self.set_reg(m.reg, osz, v);
            }
            0xbc | 0xbd => {
                let m = self.modrm(bus)?;
                let v = self.rm_read(bus, &m, osz)? & mask(osz);
                if v == 0 {
                    self.set_arith(ZF, ZF);
                } else {
                    let r = if op == 0xbc { v.trailing_zeros() } else { 31 - v.leading_zeros() };
                    self.set_reg(m.reg, osz, r);
                    self.set_arith(ARITH, szp(r, osz) & !ZF);
                }
            }
            0xc0 | 0xc1 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let d = self.rm_read(bus, &m, sz)?;
                let s = self.reg(m.reg, sz);
                let save = self.lf;
                let r = self.alu(0, d, s, sz);
                if let Err(e) = self.rm_write(bus, &m, sz, r) {
                    self.lf = save;
                    return Err(e);
                }
                self.set_reg(m.reg, sz, d);
                if !m.mem {
                    self.set_reg(m.rm, sz, r);
                }
            }
            0xc7 => {
                let m = self.modrm(bus)?;
                if m.reg != 1 || !m.mem {
                    return Err(Fault::InvalidOpcode.into());
                }
                let seg = m.seg as usize;
                let lo = self.rd(bus, seg, m.off, 4)?;
                let o2 = self.m_off(&m, 4);
                let hi = self.rd(bus, seg, o2, 4)?;
                self.check_wr(bus, seg, m.off, 8)?;
                let cur = ((hi as u64) << 32) | lo as u64;
                let want = ((self.s.gpr[EDX] as u64) << 32) | self.s.gpr[EAX] as u64;
                let f = self.eflags();
                if cur == want {
                    self.wr(bus, seg, m.off, 4, self.s.gpr[EBX])?;
                    self.wr(bus, seg, o2, 4, self.s.gpr[ECX])?;
                    self.set_arith(ZF, ZF | f);
                } else {
                    self.wr(bus, seg, m.off, 4, lo)?;
                    self.wr(bus, seg, o2, 4, hi)?;
                    self.s.gpr[EAX] = lo;
                    self.s.gpr[EDX] = hi;
                    self.set_arith(ZF, 0);
                }
            }
            0xc8..=0xcf => {
                let r = op & 7;
                let v = self.s.gpr[r as usize].swap_bytes();
                if osz == 4 {
                    self.s.gpr[r as usize] = v;
                } else {
                    // 16-bit BSWAP is undefined; the P6 family clears the low word.
                    self.set_reg(r, 2, 0);
                }
            }
            _ => return Err(Fault::InvalidOpcode.into()),
        }
        let _ = FpuOutcome::Done;
        Ok(())
    }

    /// BT/BTS/BTR/BTC. `kind`: 0 test, 1 set, 2 reset, 3 complement.
    fn bit_op<B: Bus>(&mut self, bus: &mut B, m: &ModRm, bit: u32, osz: u8, kind: u8, reg_offset: bool) -> Res<()> {
        let bits = osz as u32 * 8;
        let (v, b, off) = if m.mem && reg_offset {
            let (off, b) = self.bt_addr(m, bit, osz);
            (self.rd(bus, m.seg as usize, off, osz)?, b, off)
        } else {
            (self.rm_read(bus, m, osz)?, bit & (bits - 1), m.off)
        };
        let cf = (v >> b) & 1;
        let nv = match kind {
            1 => v | (1 << b),
            2 => v & !(1 << b),
            3 => v ^ (1 << b),
            _ => v,
        };
        if kind != 0 {
            if m.mem {
                self.wr(bus, m.seg as usize, off, osz, nv)?;
            } else {
                self.set_reg(m.rm, osz, nv);
            }
        }
        self.set_arith(CF, cf);
        Ok(())
    }
}
