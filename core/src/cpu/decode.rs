//! Prefixes, the one- and two-byte opcode maps and ModRM/SIB effective addresses.
//!
//! Decoding is a `match` on the opcode byte straight into the semantics (no decoded-instruction
//! structure, no tables of function pointers): the compiler turns it into a jump table and every
//! helper is statically dispatched over `B: Bus`.

use super::flags::mask;
use super::fpu::{FpuContext, FpuMemory, FpuOutcome, MemFault};
use super::interrupt::Kind;
use super::state::*;
use super::{Cpu, Exit, Prefixes, Res};
use crate::bus::Bus;

/// A decoded ModRM operand.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ModRm {
    pub reg: u8,
    /// Register number when `!mem`.
    pub rm: u8,
    pub mem: bool,
    pub seg: u8,
    pub off: u32,
    /// The raw ModRM byte.
    pub raw: u8,
}

#[inline(always)]
fn sx8(v: u32) -> u32 {
    v as u8 as i8 as i32 as u32
}
#[inline(always)]
fn sx16(v: u32) -> u32 {
    v as u16 as i16 as i32 as u32
}

impl Cpu {
    #[inline(always)]
    pub(crate) fn osz(&self) -> u8 {
        if self.p.op32 {
            4
        } else {
            2
        }
    }

    #[inline(always)]
    pub(crate) fn dseg(&self, default: usize) -> usize {
        if self.p.seg != 0xff {
            self.p.seg as usize
        } else {
            default
        }
    }

    /// Decode ModRM (+SIB, displacement).
    #[inline(always)]
    pub(crate) fn modrm<B: Bus>(&mut self, bus: &mut B) -> Res<ModRm> {
        let b = self.fetch8(bus)?;
        let md = b >> 6;
        let reg = (b >> 3) & 7;
        let rm = b & 7;
        if md == 3 {
            return Ok(ModRm { reg, rm, mem: false, seg: 0, off: 0, raw: b });
        }
        let g = self.s.gpr;
        let (off, def) = if self.p.a32 {
            let (base, def) = if rm == 4 {
                let sib = self.fetch8(bus)?;
                let idx = (sib >> 3) & 7;
                let scale = sib >> 6;
                let bs = sib & 7;
                let index = if idx == 4 { 0 } else { g[idx as usize] << scale };
                if bs == 5 && md == 0 {
                    (self.fetch32(bus)?.wrapping_add(index), DS)
                } else {
                    let d = if bs == 4 || bs == 5 { SS } else { DS };
                    (g[bs as usize].wrapping_add(index), d)
                }
            } else if rm == 5 && md == 0 {
                (self.fetch32(bus)?, DS)
            } else {
                (g[rm as usize], if rm == 5 { SS } else { DS })
            };
            let disp = match md {
                1 => sx8(self.fetch8(bus)? as u32),
                2 => self.fetch32(bus)?,
                _ => 0,
            };
            (base.wrapping_add(disp), def)
        } else {
            let (base, def) = match rm {
                0 => (g[EBX].wrapping_add(g[ESI]), DS),
                1 => (g[EBX].wrapping_add(g[EDI]), DS),
                2 => (g[EBP].wrapping_add(g[ESI]), SS),
                3 => (g[EBP].wrapping_add(g[EDI]), SS),
                4 => (g[ESI], DS),
                5 => (g[EDI], DS),
                6 => {
                    if md == 0 {
                        (0, DS)
                    } else {
                        (g[EBP], SS)
                    }
                }
                _ => (g[EBX], DS),
            };
            let disp = match md {
                0 if rm == 6 => self.fetch16(bus)? as u32,
                1 => sx8(self.fetch8(bus)? as u32),
                2 => self.fetch16(bus)? as u32,
                _ => 0,
            };
            // Each register is 16 bits here; the sum wraps at 64 KiB.
            let base = if rm < 4 {
                let (a, b) = match rm {
                    0 => (g[EBX], g[ESI]),
                    1 => (g[EBX], g[EDI]),
                    2 => (g[EBP], g[ESI]),
                    _ => (g[EBP], g[EDI]),
                };
                (a & 0xffff).wrapping_add(b & 0xffff)
            } else {
                base & 0xffff
            };
            (base.wrapping_add(disp) & 0xffff, def)
        };
        let seg = if self.p.seg != 0xff { self.p.seg } else { def as u8 };
        Ok(ModRm { reg, rm, mem: true, seg, off, raw: b })
    }

    #[inline(always)]
    pub(crate) fn rm_read<B: Bus>(&mut self, bus: &mut B, m: &ModRm, sz: u8) -> Res<u32> {
        if m.mem {
            self.rd(bus, m.seg as usize, m.off, sz)
        } else {
            Ok(self.reg(m.rm, sz))
        }
    }

    #[inline(always)]
    pub(crate) fn rm_write<B: Bus>(&mut self, bus: &mut B, m: &ModRm, sz: u8, v: u32) -> Res<()> {
        if m.mem {
            self.wr(bus, m.seg as usize, m.off, sz, v)
        } else {
            self.set_reg(m.rm, sz, v);
            Ok(())
        }
    }

    /// Memory operand offset `+ delta` (for far pointers, BOUND, CMPXCHG8B).
    #[inline(always)]
    pub(crate) fn m_off(&self, m: &ModRm, delta: u32) -> u32 {
        let o = m.off.wrapping_add(delta);
        if self.p.a32 {
            o
        } else {
            o & 0xffff
        }
    }

    // ---- stack ----

    #[inline(always)]
    pub(crate) fn push<B: Bus>(&mut self, bus: &mut B, v: u32, sz: u8) -> Res<()> {
        let esp = self.s.gpr[ESP];
        if self.s.seg[SS].big() {
            let n = esp.wrapping_sub(sz as u32);
            self.wr(bus, SS, n, sz, v)?;
            self.s.gpr[ESP] = n;
        } else {
            let n = esp.wrapping_sub(sz as u32) & 0xffff;
            self.wr(bus, SS, n, sz, v)?;
            self.s.gpr[ESP] = (esp & 0xffff_0000) | n;
        }
        Ok(())
    }

    /// Read the stack `depth` bytes above the stack pointer.
    #[inline(always)]
    pub(crate) fn peek<B: Bus>(&mut self, bus: &mut B, depth: u32, sz: u8) -> Res<u32> {
        let esp = self.s.gpr[ESP];
        let off = if self.s.seg[SS].big() { esp.wrapping_add(depth) } else { esp.wrapping_add(depth) & 0xffff };
        self.rd(bus, SS, off, sz)
    }

    #[inline(always)]
    pub(crate) fn add_sp(&mut self, n: u32) {
        let esp = self.s.gpr[ESP];
        self.s.gpr[ESP] = if self.s.seg[SS].big() { esp.wrapping_add(n) } else { (esp & 0xffff_0000) | (esp.wrapping_add(n) & 0xffff) };
    }

    #[inline(always)]
    pub(crate) fn pop<B: Bus>(&mut self, bus: &mut B, sz: u8) -> Res<u32> {
        let v = self.peek(bus, 0, sz)?;
        self.add_sp(sz as u32);
        Ok(v)
    }

    /// Near jump to `target` (truncated to the operand size) with the CS limit check.
    #[inline(always)]
    pub(crate) fn jump(&mut self, target: u32) -> Res<()> {
        let t = if self.p.op32 { target } else { target & 0xffff };
        if t > self.s.seg[CS].limit && (self.s.cr0 & CR0_PE != 0 || true) {
            return Err(Fault::GeneralProtection(0).into());
        }
        self.ip = t;
        Ok(())
    }

    /// The count register of string ops / LOOP (CX or ECX by address size).
    #[inline(always)]
    pub(crate) fn count_reg(&self) -> u32 {
        if self.p.a32 {
            self.s.gpr[ECX]
        } else {
            self.s.gpr[ECX] & 0xffff
        }
    }
    #[inline(always)]
    pub(crate) fn set_count_reg(&mut self, v: u32) {
        if self.p.a32 {
            self.s.gpr[ECX] = v;
        } else {
            self.s.gpr[ECX] = (self.s.gpr[ECX] & 0xffff_0000) | (v & 0xffff);
        }
    }

    /// Lock prefix on an instruction that cannot be locked (or with a register destination): #UD.
    fn check_lock<B: Bus>(&mut self, bus: &mut B, op: u8) -> Res<()> {
        let save = self.ip;
        let ok = (|| -> Res<bool> {
            let (op2, two) = if op == 0x0f { (self.fetch8(bus)?, true) } else { (op, false) };
            let m = self.fetch8(bus)?;
            let mem = m < 0xc0;
            let reg = (m >> 3) & 7;
            let lockable = if two {
                matches!(op2, 0xab | 0xb3 | 0xbb | 0xb0 | 0xb1 | 0xc0 | 0xc1) || (op2 == 0xba && reg >= 5) || (op2 == 0xc7 && reg == 1)
            } else {
                match op2 {
                    0x00..=0x3f => op2 & 7 < 2 && op2 & 0x38 != 0x38,
                    0x80..=0x83 => reg != 7,
                    0x86 | 0x87 => true,
                    0xf6 | 0xf7 => reg == 2 || reg == 3,
                    0xfe => reg < 2,
                    0xff => reg < 2,
                    _ => false,
                }
            };
            Ok(lockable && mem)
        })()?;
        self.ip = save;
        if ok {
            Ok(())
        } else {
            Err(Fault::InvalidOpcode.into())
        }
    }

    /// Execute one instruction starting at `self.ip` (= EIP).
    #[inline(always)]
    pub(crate) fn exec<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        let d32 = self.s.seg[CS].big();
        self.p = Prefixes { op32: d32, a32: d32, seg: 0xff, rep: 0, lock: false };
        let mut n = 0;
        let op = loop {
            let b = self.fetch8(bus)?;
            match b {
                0x66 => self.p.op32 = !d32,
                0x67 => self.p.a32 = !d32,
                0x26 => self.p.seg = ES as u8,
                0x2e => self.p.seg = CS as u8,
                0x36 => self.p.seg = SS as u8,
                0x3e => self.p.seg = DS as u8,
                0x64 => self.p.seg = FS as u8,
                0x65 => self.p.seg = GS as u8,
                0xf0 => self.p.lock = true,
                0xf2 | 0xf3 => self.p.rep = b,
                _ => break b,
            }
            n += 1;
            if n >= 15 {
                return Err(Fault::GeneralProtection(0).into());
            }
        };
        if self.p.lock {
            self.check_lock(bus, op)?;
        }
        self.exec_op(bus, op)?;
        // CS may have changed (far transfers): mask by the new code segment's size.
        self.s.eip = if self.s.seg[CS].big() { self.ip } else { self.ip & 0xffff };
        Ok(())
    }

    fn exec_op<B: Bus>(&mut self, bus: &mut B, op: u8) -> Res<()> {
        let osz = self.osz();
        match op {
            // ALU forms 00-3D.
            0x00..=0x3f if op & 7 < 6 => {
                let aop = op >> 3;
                let sz = if op & 1 == 0 { 1 } else { osz };
                match op & 7 {
                    0 | 1 => {
                        let m = self.modrm(bus)?;
                        let a = self.rm_read(bus, &m, sz)?;
                        let b = self.reg(m.reg, sz);
                        if aop == 7 {
                            self.alu(7, a, b, sz);
                        } else {
                            let save = self.lf;
                            let r = self.alu(aop, a, b, sz);
                            if let Err(e) = self.rm_write(bus, &m, sz, r) {
                                self.lf = save;
                                return Err(e);
                            }
                        }
                    }
                    2 | 3 => {
                        let m = self.modrm(bus)?;
                        let b = self.rm_read(bus, &m, sz)?;
                        let a = self.reg(m.reg, sz);
                        let r = self.alu(aop, a, b, sz);
                        if aop != 7 {
                            self.set_reg(m.reg, sz, r);
                        }
                    }
                    4 | _ => {
                        let b = self.imm(bus, sz)?;
                        let a = self.reg(0, sz);
                        let r = self.alu(aop, a, b, sz);
                        if aop != 7 {
                            self.set_reg(0, sz, r);
                        }
                    }
                }
            }
            0x06 | 0x0e | 0x16 | 0x1e => {
                let v = self.s.seg[(op >> 3) as usize].selector as u32;
                self.push_sreg(bus, v)?;
            }
            0x07 | 0x17 | 0x1f => {
                let r = (op >> 3) as usize;
                let v = self.peek(bus, 0, osz)? as u16;
                self.load_seg(bus, r, v)?;
                self.add_sp(osz as u32);
                if r == SS {
                    self.s.intr_shadow = true;
                }
            }
            0x0f => return self.exec_0f(bus),
            0x27 => self.daa(false),
            0x2f => self.daa(true),
            0x37 => self.aaa(false),
            0x3f => self.aaa(true),
            0x40..=0x47 => {
                let r = op & 7;
                let v = self.reg(r, osz);
                let v = self.inc(v, osz);
                self.set_reg(r, osz, v);
            }
            0x48..=0x4f => {
                let r = op & 7;
                let v = self.reg(r, osz);
                let v = self.dec(v, osz);
                self.set_reg(r, osz, v);
            }
            0x50..=0x57 => {
                let v = self.reg(op & 7, osz);
                self.push(bus, v, osz)?;
            }
            0x58..=0x5f => {
                let v = self.pop(bus, osz)?;
                self.set_reg(op & 7, osz, v);
            }
            0x60 => {
                // PUSHA: all eight stores are checked before ESP moves.
                let esp = self.s.gpr[ESP];
                let big = self.s.seg[SS].big();
                let mut sp = esp;
                let vals: [u32; 8] = core::array::from_fn(|i| self.reg(i as u8, osz));
                for v in vals {
                    sp = sp.wrapping_sub(osz as u32);
                    let off = if big { sp } else { sp & 0xffff };
                    self.wr(bus, SS, off, osz, v)?;
                }
                self.s.gpr[ESP] = if big { sp } else { (esp & 0xffff_0000) | (sp & 0xffff) };
            }
            0x61 => {
                let mut v = [0u32; 8];
                for i in 0..8 {
                    v[7 - i] = self.peek(bus, (i as u32) * osz as u32, osz)?;
                }
                for i in 0..8 {
                    if i != ESP {
                        self.set_reg(i as u8, osz, v[i]);
                    }
                }
                self.add_sp(8 * osz as u32);
            }
            0x62 => {
                let m = self.modrm(bus)?;
                if !m.mem {
                    return Err(Fault::InvalidOpcode.into());
                }
                let lo = self.rd(bus, m.seg as usize, m.off, osz)?;
                let o2 = self.m_off(&m, osz as u32);
                let hi = self.rd(bus, m.seg as usize, o2, osz)?;
                let v = self.reg(m.reg, osz);
                let (v, lo, hi) = if osz == 2 {
                    (sx16(v) as i32, sx16(lo) as i32, sx16(hi) as i32)
                } else {
                    (v as i32, lo as i32, hi as i32)
                };
                if v < lo || v > hi {
                    return Err(Fault::BoundRange.into());
                }
            }
            0x63 => self.arpl(bus)?,
            0x68 => {
                let v = self.imm(bus, osz)?;
                self.push(bus, v, osz)?;
            }
            0x6a => {
                let v = sx8(self.fetch8(bus)? as u32);
                self.push(bus, v, osz)?;
            }
            0x69 | 0x6b => {
                let m = self.modrm(bus)?;
                let a = self.rm_read(bus, &m, osz)?;
                let b = if op == 0x6b { sx8(self.fetch8(bus)? as u32) } else { self.imm(bus, osz)? };
                let r = self.imul2(a, b, osz);
                self.set_reg(m.reg, osz, r);
            }
            0x6c..=0x6f | 0xa4..=0xa7 | 0xaa..=0xaf => self.string_op(bus, op)?,
            0x70..=0x7f => {
                let d = sx8(self.fetch8(bus)? as u32);
                if self.cond(op & 0xf) {
                    self.jump(self.ip.wrapping_add(d))?;
                }
            }
            0x80..=0x83 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let a = self.rm_read(bus, &m, sz)?;
                let b = if op == 0x83 { sx8(self.fetch8(bus)? as u32) & mask(sz) } else { self.imm(bus, sz)? };
                if m.reg == 7 {
                    self.alu(7, a, b, sz);
                } else {
                    let save = self.lf;
                    let r = self.alu(m.reg, a, b, sz);
                    if let Err(e) = self.rm_write(bus, &m, sz, r) {
                        self.lf = save;
                        return Err(e);
                    }
                }
            }
            0x84 | 0x85 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let a = self.rm_read(bus, &m, sz)?;
                let b = self.reg(m.reg, sz);
                self.alu(4, a, b, sz);
            }
            0x86 | 0x87 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let a = self.rm_read(bus, &m, sz)?;
                let b = self.reg(m.reg, sz);
                self.rm_write(bus, &m, sz, b)?;
                self.set_reg(m.reg, sz, a);
            }
            0x88 | 0x89 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let v = self.reg(m.reg, sz);
                self.rm_write(bus, &m, sz, v)?;
            }
            0x8a | 0x8b => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let v = self.rm_read(bus, &m, sz)?;
                self.set_reg(m.reg, sz, v);
            }
            0x8c => {
                let m = self.modrm(bus)?;
                if m.reg > 5 {
                    return Err(Fault::InvalidOpcode.into());
                }
                let v = self.s.seg[m.reg as usize].selector as u32;
                // To memory always 16 bits; to a register the operand size (upper bits zero).
                if m.mem {
                    self.rm_write(bus, &m, 2, v)?;
                } else {
                    self.set_reg(m.rm, osz, v);
                }
            }
            0x8d => {
                let m = self.modrm(bus)?;
                if !m.mem {
                    return Err(Fault::InvalidOpcode.into());
                }
                self.set_reg(m.reg, osz, m.off);
            }
            0x8e => {
                let m = self.modrm(bus)?;
                if m.reg == CS as u8 || m.reg > 5 {
                    return Err(Fault::InvalidOpcode.into());
                }
                let v = self.rm_read(bus, &m, 2)? as u16;
                self.load_seg(bus, m.reg as usize, v)?;
                if m.reg == SS as u8 {
                    self.s.intr_shadow = true;
                }
            }
            0x8f => {
                // POP r/m: the address is computed with ESP already incremented.
                let v = self.peek(bus, 0, osz)?;
                let esp = self.s.gpr[ESP];
                self.add_sp(osz as u32);
                let r = (|| -> Res<()> {
                    let m = self.modrm(bus)?;
                    self.rm_write(bus, &m, osz, v)
                })();
                if r.is_err() {
                    self.s.gpr[ESP] = esp;
                }
                r?;
            }
            0x90 => {
                // NOP / PAUSE.
            }
            0x91..=0x97 => {
                let r = op & 7;
                let a = self.reg(0, osz);
                let b = self.reg(r, osz);
                self.set_reg(0, osz, b);
                self.set_reg(r, osz, a);
            }
            0x98 => {
                if osz == 4 {
                    self.s.gpr[EAX] = sx16(self.s.gpr[EAX]);
                } else {
                    let v = sx8(self.s.gpr[EAX]);
                    self.set_reg(0, 2, v);
                }
            }
            0x99 => {
                let s = self.reg(0, osz) & (1 << (osz * 8 - 1)) != 0;
                self.set_reg(EDX as u8, osz, if s { u32::MAX } else { 0 });
            }
            0x9a => {
                let off = self.imm(bus, osz)?;
                let sel = self.fetch16(bus)?;
                self.far_call(bus, sel, off)?;
            }
            0x9b => {
                if self.s.cr0 & (CR0_MP | CR0_TS) == (CR0_MP | CR0_TS) {
                    return Err(Fault::DeviceNotAvailable.into());
                }
                if self.s.fpu.pending_exception() && self.s.cr0 & CR0_NE != 0 {
                    return Err(Fault::MathFault.into());
                }
            }
            0x9c => self.pushf(bus)?,
            0x9d => self.popf(bus)?,
            0x9e => {
                let ah = (self.s.gpr[EAX] >> 8) & 0xff;
                self.set_arith(CF | PF | AF | ZF | SF, ah);
            }
            0x9f => {
                let f = self.eflags() & 0xd7 | 2;
                self.set_reg(4, 1, f);
            }
            0xa0..=0xa3 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let off = if self.p.a32 { self.fetch32(bus)? } else { self.fetch16(bus)? as u32 };
                let seg = self.dseg(DS);
                if op < 0xa2 {
                    let v = self.rd(bus, seg, off, sz)?;
                    self.set_reg(0, sz, v);
                } else {
                    let v = self.reg(0, sz);
                    self.wr(bus, seg, off, sz, v)?;
                }
            }
            0xa8 | 0xa9 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let b = self.imm(bus, sz)?;
                let a = self.reg(0, sz);
                self.alu(4, a, b, sz);
            }
            0xb0..=0xb7 => {
                let v = self.fetch8(bus)? as u32;
                self.set_reg(op & 7, 1, v);
            }
            0xb8..=0xbf => {
                let v = self.imm(bus, osz)?;
                self.set_reg(op & 7, osz, v);
            }
            0xc0 | 0xc1 | 0xd0..=0xd3 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let v = self.rm_read(bus, &m, sz)?;
                let count = match op {
                    0xc0 | 0xc1 => self.fetch8(bus)? as u32,
                    0xd0 | 0xd1 => 1,
                    _ => self.s.gpr[ECX] & 0xff,
                };
                let save = (self.lf, self.s.eflags);
                if let Some(r) = self.shift(m.reg, v, count, sz) {
                    if let Err(e) = self.rm_write(bus, &m, sz, r) {
                        (self.lf, self.s.eflags) = save;
                        return Err(e);
                    }
                }
            }
            0xc2 | 0xc3 => {
                let n = if op == 0xc2 { self.fetch16(bus)? as u32 } else { 0 };
                let t = self.peek(bus, 0, osz)?;
                self.jump(t)?;
                self.add_sp(osz as u32 + n);
            }
            0xc4 | 0xc5 => {
                let m = self.modrm(bus)?;
                self.load_far_ptr(bus, &m, if op == 0xc4 { ES } else { DS })?;
            }
            0xc6 | 0xc7 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let v = self.imm(bus, sz)?;
                if m.reg != 0 {
                    return Err(Fault::InvalidOpcode.into());
                }
                self.rm_write(bus, &m, sz, v)?;
            }
            0xc8 => self.enter(bus)?,
            0xc9 => {
                let big = self.s.seg[SS].big();
                let esp = self.s.gpr[ESP];
                let ebp = self.s.gpr[EBP];
                self.s.gpr[ESP] = if big { ebp } else { (esp & 0xffff_0000) | (ebp & 0xffff) };
                match self.pop(bus, osz) {
                    Ok(v) => self.set_reg(EBP as u8, osz, v),
                    Err(e) => {
                        self.s.gpr[ESP] = esp;
                        return Err(e);
                    }
                }
            }
            0xca | 0xcb => {
                let n = if op == 0xca { self.fetch16(bus)? as u32 } else { 0 };
                self.far_ret(bus, n)?;
            }
            0xcc => self.soft_int(bus, 3)?,
            0xcd => {
                let v = self.fetch8(bus)?;
                if self.s.v86() && self.s.iopl() < 3 {
                    return Err(Fault::GeneralProtection(0).into());
                }
                self.soft_int(bus, v)?;
            }
            0xce => {
                if self.cond(0) {
                    self.soft_int(bus, 4)?;
                }
            }
            0xcf => self.iret(bus)?,
            0xd4 => {
                let b = self.fetch8(bus)? as u32;
                self.aam(b)?;
            }
            0xd5 => {
                let b = self.fetch8(bus)? as u32;
                self.aad(b);
            }
            0xd6 => {
                let v = if self.cf() { 0xff } else { 0 };
                self.set_reg(0, 1, v);
            }
            0xd7 => {
                let bx = if self.p.a32 { self.s.gpr[EBX] } else { self.s.gpr[EBX] & 0xffff };
                let off = bx.wrapping_add(self.s.gpr[EAX] & 0xff);
                let off = if self.p.a32 { off } else { off & 0xffff };
                let seg = self.dseg(DS);
                let v = self.rd(bus, seg, off, 1)?;
                self.set_reg(0, 1, v);
            }
            0xd8..=0xdf => self.x87(bus, op)?,
            0xe0..=0xe2 => {
                let d = sx8(self.fetch8(bus)? as u32);
                let c = self.count_reg().wrapping_sub(1) & if self.p.a32 { u32::MAX } else { 0xffff };
                let take = c != 0
                    && match op {
                        0xe0 => !self.cond(4),
                        0xe1 => self.cond(4),
                        _ => true,
                    };
                if take {
                    self.jump(self.ip.wrapping_add(d))?;
                }
                self.set_count_reg(c);
            }
            0xe3 => {
                let d = sx8(self.fetch8(bus)? as u32);
                if self.count_reg() == 0 {
                    self.jump(self.ip.wrapping_add(d))?;
                }
            }
            0xe4 | 0xe5 | 0xec | 0xed => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let port = if op < 0xe8 { self.fetch8(bus)? as u16 } else { self.s.gpr[EDX] as u16 };
                self.io_check(bus, port, sz)?;
                let v = bus.io_read(port, sz);
                self.set_reg(0, sz, v);
            }
            0xe6 | 0xe7 | 0xee | 0xef => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let port = if op < 0xe8 { self.fetch8(bus)? as u16 } else { self.s.gpr[EDX] as u16 };
                self.io_check(bus, port, sz)?;
                bus.io_write(port, sz, self.reg(0, sz));
            }
            0xe8 => {
                let d = self.imm(bus, osz)?;
                let ret = self.ip;
                let t = ret.wrapping_add(d);
                self.jump(t)?;
                if let Err(e) = self.push(bus, ret, osz) {
                    return Err(e);
                }
            }
            0xe9 => {
                let d = self.imm(bus, osz)?;
                self.jump(self.ip.wrapping_add(d))?;
            }
            0xea => {
                let off = self.imm(bus, osz)?;
                let sel = self.fetch16(bus)?;
                self.far_jmp(bus, sel, off)?;
            }
            0xeb => {
                let d = sx8(self.fetch8(bus)? as u32);
                self.jump(self.ip.wrapping_add(d))?;
            }
            0xf1 => {
                self.s.eip = self.ip;
                self.deliver(bus, 1, Kind::Exception, None)?;
                self.ip = self.s.eip;
            }
            0xf4 => {
                if self.cpl() != 0 {
                    return Err(Fault::GeneralProtection(0).into());
                }
                self.s.eip = self.ip;
                self.s.halted = true;
                return Err(Exit::Halt);
            }
            0xf5 => {
                let f = self.eflags();
                self.set_arith(CF, f ^ CF);
            }
            0xf6 | 0xf7 => {
                let sz = if op & 1 == 0 { 1 } else { osz };
                let m = self.modrm(bus)?;
                let v = self.rm_read(bus, &m, sz)?;
                match m.reg {
                    0 | 1 => {
                        let b = self.imm(bus, sz)?;
                        self.alu(4, v, b, sz);
                    }
                    2 => self.rm_write(bus, &m, sz, !v & mask(sz))?,
                    3 => {
                        let save = self.lf;
                        let r = self.neg(v, sz);
                        if let Err(e) = self.rm_write(bus, &m, sz, r) {
                            self.lf = save;
                            return Err(e);
                        }
                    }
                    4 => self.mul1(false, v, sz),
                    5 => self.mul1(true, v, sz),
                    6 => self.div(false, v, sz)?,
                    _ => self.div(true, v, sz)?,
                }
            }
            0xf8 => self.set_arith(CF, 0),
            0xf9 => self.set_arith(CF, CF),
            0xfa | 0xfb => {
                if self.s.protected() && self.cpl() > self.s.iopl() {
                    return Err(Fault::GeneralProtection(0).into());
                }
                if op == 0xfa {
                    self.s.eflags &= !IF;
                } else {
                    if self.s.eflags & IF == 0 {
                        self.s.intr_shadow = true;
                    }
                    self.s.eflags |= IF;
                }
            }
            0xfc => self.s.eflags &= !DF,
            0xfd => self.s.eflags |= DF,
            0xfe | 0xff => {
                let sz = if op == 0xfe { 1 } else { osz };
                let m = self.modrm(bus)?;
                match m.reg {
                    0 | 1 => {
                        let v = self.rm_read(bus, &m, sz)?;
                        let save = self.lf;
                        let r = if m.reg == 0 { self.inc(v, sz) } else { self.dec(v, sz) };
                        if let Err(e) = self.rm_write(bus, &m, sz, r) {
                            self.lf = save;
                            return Err(e);
                        }
                    }
                    _ if op == 0xfe => return Err(Fault::InvalidOpcode.into()),
                    2 => {
                        let t = self.rm_read(bus, &m, osz)?;
                        let ret = self.ip;
                        self.jump(t)?;
                        self.push(bus, ret, osz)?;
                    }
                    3 | 5 => {
                        if !m.mem {
                            return Err(Fault::InvalidOpcode.into());
                        }
                        let off = self.rd(bus, m.seg as usize, m.off, osz)?;
                        let o2 = self.m_off(&m, osz as u32);
                        let sel = self.rd(bus, m.seg as usize, o2, 2)? as u16;
                        if m.reg == 3 {
                            self.far_call(bus, sel, off)?;
                        } else {
                            self.far_jmp(bus, sel, off)?;
                        }
                    }
                    4 => {
                        let t = self.rm_read(bus, &m, osz)?;
                        self.jump(t)?;
                    }
                    6 => {
                        let v = self.rm_read(bus, &m, osz)?;
                        self.push(bus, v, osz)?;
                    }
                    _ => return Err(Fault::InvalidOpcode.into()),
                }
            }
            _ => return Err(Fault::InvalidOpcode.into()),
        }
        Ok(())
    }

    /// PUSH Sreg: a 32-bit push writes only the low 16 bits (P6 and later).
    fn push_sreg<B: Bus>(&mut self, bus: &mut B, v: u32) -> Res<()> {
        let osz = self.osz();
        if osz == 4 {
            let esp = self.s.gpr[ESP];
            let big = self.s.seg[SS].big();
            let n = esp.wrapping_sub(4);
            let off = if big { n } else { n & 0xffff };
            self.check_wr(bus, SS, off, 4)?;
            self.wr(bus, SS, off, 2, v)?;
            self.s.gpr[ESP] = if big { n } else { (esp & 0xffff_0000) | (n & 0xffff) };
            Ok(())
        } else {
            self.push(bus, v, 2)
        }
    }

    fn load_far_ptr<B: Bus>(&mut self, bus: &mut B, m: &ModRm, seg: usize) -> Res<()> {
        if !m.mem {
            return Err(Fault::InvalidOpcode.into());
        }
        let osz = self.osz();
        let off = self.rd(bus, m.seg as usize, m.off, osz)?;
        let o2 = self.m_off(m, osz as u32);
        let sel = self.rd(bus, m.seg as usize, o2, 2)? as u16;
        self.load_seg(bus, seg, sel)?;
        self.set_reg(m.reg, osz, off);
        if seg == SS {
            self.s.intr_shadow = true;
        }
        Ok(())
    }

    fn enter<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        let osz = self.osz();
        let size = self.fetch16(bus)? as u32;
        let level = (self.fetch8(bus)? & 31) as u32;
        let big = self.s.seg[SS].big();
        let w = |v: u32| if big { v } else { v & 0xffff };
        let esp0 = self.s.gpr[ESP];
        let mut sp = esp0;
        let mut ebp = self.s.gpr[EBP];
        sp = sp.wrapping_sub(osz as u32);
        self.wr(bus, SS, w(sp), osz, self.reg(EBP as u8, osz))?;
        let frame = sp;
        if level > 0 {
            for _ in 1..level {
                ebp = ebp.wrapping_sub(osz as u32);
                let v = self.rd(bus, SS, w(ebp), osz)?;
                sp = sp.wrapping_sub(osz as u32);
                self.wr(bus, SS, w(sp), osz, v)?;
            }
            sp = sp.wrapping_sub(osz as u32);
            self.wr(bus, SS, w(sp), osz, frame)?;
        }
        sp = sp.wrapping_sub(size);
        // The final stack pointer must be writable.
        if size > 0 {
            self.check_wr(bus, SS, w(sp), 1)?;
        }
        self.set_reg(EBP as u8, osz, frame);
        self.s.gpr[ESP] = if big { sp } else { (esp0 & 0xffff_0000) | (sp & 0xffff) };
        Ok(())
    }

    fn pushf<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        if self.s.v86() && self.s.iopl() < 3 {
            return Err(Fault::GeneralProtection(0).into());
        }
        let f = self.eflags() & !(VM | RF);
        let osz = self.osz();
        self.push(bus, f, osz)
    }

    fn popf<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        let osz = self.osz();
        let v86 = self.s.v86();
        if v86 && self.s.iopl() < 3 {
            return Err(Fault::GeneralProtection(0).into());
        }
        let v = self.pop(bus, osz)?;
        let old = self.eflags();
        let mut mask = CF | PF | AF | ZF | SF | TF | IF | DF | OF | NT | IOPL;
        if osz == 4 {
            mask |= AC | ID;
        }
        if self.s.protected() {
            let cpl = self.cpl();
            if cpl > 0 || v86 {
                mask &= !IOPL;
            }
            if cpl > self.s.iopl() && !v86 {
                mask &= !IF;
            }
        }
        if osz == 2 {
            mask &= 0xffff;
        }
        self.set_eflags_raw((old & !mask) | (v & mask));
        Ok(())
    }

    pub(crate) fn soft_int<B: Bus>(&mut self, bus: &mut B, v: u8) -> Res<()> {
        self.s.eip = self.ip;
        self.deliver(bus, v, Kind::Software, None)?;
        self.ip = self.s.eip;
        self.sw_int = true;
        Ok(())
    }

    /// x87 escape D8-DF.
    fn x87<B: Bus>(&mut self, bus: &mut B, op: u8) -> Res<()> {
        let m = self.modrm(bus)?;
        let esc = op - 0xd8;
        let modrm = m.raw;
        if self.s.cr0 & CR0_EM != 0 {
            return Err(Fault::DeviceNotAvailable.into());
        }
        if self.s.cr0 & CR0_TS != 0 {
            return Err(Fault::DeviceNotAvailable.into());
        }
        // Pending unmasked exception: #MF with CR0.NE=1; with NE=0 the chipset's FERR#/IRQ13
        // path reports it and the instruction runs.
        if !super::fpu::is_nowait(esc, modrm) && self.s.fpu.pending_exception() && self.s.cr0 & CR0_NE != 0 {
            return Err(Fault::MathFault.into());
        }
        let ctx = FpuContext {
            op32: self.p.op32,
            protected: self.s.protected() && !self.s.v86(),
            cs: self.s.seg[CS].selector,
            eip: self.start_eip,
            ds: if m.mem { self.s.seg[m.seg as usize].selector } else { 0 },
            eflags: self.eflags(),
        };
        let ea = if m.mem { Some(m.off) } else { None };
        let mut fpu = core::mem::replace(&mut self.s.fpu, super::fpu::FpuState::new());
        let out = {
            let mut mem = InsnMem { cpu: self, bus, seg: m.seg as usize, fault: None };
            let out = fpu.execute(esc, modrm, ea, &mut mem, &ctx);
            (out, mem.fault)
        };
        self.s.fpu = fpu;
        match out {
            (FpuOutcome::Done, _) => Ok(()),
            (FpuOutcome::StoreAx(v), _) => {
                self.set_reg(0, 2, v as u32);
                Ok(())
            }
            (FpuOutcome::Eflags(v), _) => {
                self.set_arith(ARITH, v);
                Ok(())
            }
            (FpuOutcome::MemFault, Some(f)) => Err(f.into()),
            (FpuOutcome::MemFault, None) => Err(Fault::GeneralProtection(0).into()),
            (FpuOutcome::Unimplemented, _) => Err(Fault::InvalidOpcode.into()),
        }
    }

    /// 0F AE /0 /1 and MMX: call the FPU module with this instruction's memory.
    pub(crate) fn fpu_mem_op<B: Bus>(&mut self, bus: &mut B, m: &ModRm, f: impl FnOnce(&mut super::fpu::FpuState, Option<u32>, &mut InsnMem<'_, B>, &mut [u32; 8]) -> FpuOutcome) -> Res<()> {
        let mut fpu = core::mem::replace(&mut self.s.fpu, super::fpu::FpuState::new());
        let mut gpr = self.s.gpr;
        let ea = if m.mem { Some(m.off) } else { None };
        let (out, fault) = {
            let mut mem = InsnMem { cpu: self, bus, seg: m.seg as usize, fault: None };
            let out = f(&mut fpu, ea, &mut mem, &mut gpr);
            (out, mem.fault)
        };
        self.s.fpu = fpu;
        match out {
            FpuOutcome::Done => {
                self.s.gpr = gpr;
                Ok(())
            }
            FpuOutcome::StoreAx(v) => {
                self.set_reg(0, 2, v as u32);
                Ok(())
            }
            FpuOutcome::Eflags(v) => {
                self.set_arith(ARITH, v);
                Ok(())
            }
            FpuOutcome::MemFault => Err(fault.unwrap_or(Fault::GeneralProtection(0)).into()),
            FpuOutcome::Unimplemented => Err(Fault::InvalidOpcode.into()),
        }
    }
}

/// The current instruction's memory operand as the FPU sees it: offsets in one segment, checked.
pub(crate) struct InsnMem<'a, B: Bus> {
    cpu: &'a mut Cpu,
    bus: &'a mut B,
    seg: usize,
    fault: Option<Fault>,
}

impl<B: Bus> FpuMemory for InsnMem<'_, B> {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), MemFault> {
        let r = (|| -> Result<(), Fault> {
            let l = self.cpu.lin(self.seg, offset, buf.len() as u32, super::mem::Access::Read)?;
            let u = self.cpu.s.cpl() == 3;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.cpu.read_lin(self.bus, l.wrapping_add(i as u32), 1, u)? as u8;
            }
            Ok(())
        })();
        r.map_err(|f| {
            self.fault = Some(f);
            MemFault
        })
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), MemFault> {
        let r = (|| -> Result<(), Fault> {
            let n = data.len() as u32;
            let l = self.cpu.lin(self.seg, offset, n, super::mem::Access::Write)?;
            let u = self.cpu.s.cpl() == 3;
            // Every page first, then the bytes: a fault leaves memory untouched.
            let mut a = l & !0xfff;
            while a <= l.wrapping_add(n - 1) {
                self.cpu.probe_write(self.bus, a.max(l), 1, u)?;
                match a.checked_add(0x1000) {
                    Some(x) => a = x,
                    None => break,
                }
            }
            for (i, b) in data.iter().enumerate() {
                self.cpu.write_lin(self.bus, l.wrapping_add(i as u32), 1, *b as u32, u)?;
            }
            Ok(())
        })();
        r.map_err(|f| {
            self.fault = Some(f);
            MemFault
        })
    }
}
