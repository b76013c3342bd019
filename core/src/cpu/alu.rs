//! Value semantics of the integer instructions: ALU, shifts/rotates, double shifts, multiply and
//! divide, BCD. Results are computed on u32 with an operand size in bytes; flags either go to the
//! lazy record (ALU, INC/DEC) or are stored eagerly.

use super::flags::{mask, sign, szp, FlagOp, Lazy};
use super::state::*;
use super::{Cpu, Res};

impl Cpu {
    #[inline(always)]
    fn lazy(&mut self, op: FlagOp, sz: u8, res: u32, a: u32, b: u32, cin: bool) {
        self.lf = Lazy { op, sz, res: res & mask(sz), a, b, cin };
    }

    /// The eight ALU operations of opcodes 00-3F / 80-83 (`op` = reg field). Returns the result
    /// (CMP returns `a`, the caller does not write it back).
    #[inline(always)]
    pub(crate) fn alu(&mut self, op: u8, a: u32, b: u32, sz: u8) -> u32 {
        let m = mask(sz);
        match op {
            0 => {
                let r = a.wrapping_add(b) & m;
                self.lazy(FlagOp::Add, sz, r, a, b, false);
                r
            }
            1 => {
                let r = (a | b) & m;
                self.lazy(FlagOp::Logic, sz, r, a, b, false);
                r
            }
            2 => {
                let c = self.cf();
                let r = a.wrapping_add(b).wrapping_add(c as u32) & m;
                self.lazy(FlagOp::Add, sz, r, a, b, c);
                r
            }
            3 => {
                let c = self.cf();
                let r = a.wrapping_sub(b).wrapping_sub(c as u32) & m;
                self.lazy(FlagOp::Sub, sz, r, a, b, c);
                r
            }
            4 => {
                let r = a & b & m;
                self.lazy(FlagOp::Logic, sz, r, a, b, false);
                r
            }
            5 | 7 => {
                let r = a.wrapping_sub(b) & m;
                self.lazy(FlagOp::Sub, sz, r, a, b, false);
                if op == 7 { a } else { r }
            }
            _ => {
                let r = (a ^ b) & m;
                self.lazy(FlagOp::Logic, sz, r, a, b, false);
                r
            }
        }
    }

    #[inline(always)]
    pub(crate) fn inc(&mut self, a: u32, sz: u8) -> u32 {
        let c = self.cf();
        let r = a.wrapping_add(1) & mask(sz);
        self.lazy(FlagOp::Inc, sz, r, a, 1, c);
        r
    }

    #[inline(always)]
    pub(crate) fn dec(&mut self, a: u32, sz: u8) -> u32 {
        let c = self.cf();
        let r = a.wrapping_sub(1) & mask(sz);
        self.lazy(FlagOp::Dec, sz, r, a, 1, c);
        r
    }

    #[inline(always)]
    pub(crate) fn neg(&mut self, a: u32, sz: u8) -> u32 {
        let r = 0u32.wrapping_sub(a) & mask(sz);
        self.lazy(FlagOp::Sub, sz, r, 0, a, false);
        r
    }

    /// Group 2: ROL ROR RCL RCR SHL SHR SAL SAR. `None` when the count is zero (nothing changes).
    pub(crate) fn shift(&mut self, op: u8, v: u32, count: u32, sz: u8) -> Option<u32> {
        let count = count & 0x1f;
        if count == 0 {
            return None;
        }
        let bits = sz as u32 * 8;
        let m = mask(sz);
        let sb = sign(sz);
        let v = v & m;
        let f = self.eflags();
        let (r, cf, of);
        match op {
            0 => {
                let c = count % bits;
                r = if c == 0 { v } else { ((v << c) | (v >> (bits - c))) & m };
                cf = r & 1 != 0;
                of = (r & sb != 0) ^ cf;
                self.set_arith(CF | OF, (cf as u32) | if of { OF } else { 0 });
                return Some(r);
            }
            1 => {
                let c = count % bits;
                r = if c == 0 { v } else { ((v >> c) | (v << (bits - c))) & m };
                cf = r & sb != 0;
                of = ((r ^ (r << 1)) & sb) != 0;
                self.set_arith(CF | OF, (cf as u32) | if of { OF } else { 0 });
                return Some(r);
            }
            2 | 3 => {
                let c = count % (bits + 1);
                let cin = (f & CF) as u64;
                if c == 0 {
                    return Some(v);
                }
                // Rotate through a (bits+1)-bit value with CF on top.
                let w = (v as u64) | (cin << bits);
                let n = bits as u64 + 1;
                let full = (1u64 << n) - 1;
                let c = c as u64;
                let rot = if op == 2 { ((w << c) | (w >> (n - c))) & full } else { ((w >> c) | (w << (n - c))) & full };
                r = (rot as u32) & m;
                cf = (rot >> bits) & 1 != 0;
                of = if op == 2 { (r & sb != 0) ^ cf } else { ((r ^ (r << 1)) & sb) != 0 };
                self.set_arith(CF | OF, (cf as u32) | if of { OF } else { 0 });
                return Some(r);
            }
            4 | 6 => {
                let w = (v as u64) << count;
                r = (w as u32) & m;
                cf = (w >> bits) & 1 != 0;
                of = (r & sb != 0) ^ cf;
            }
            5 => {
                r = ((v as u64) >> count) as u32 & m;
                cf = ((v as u64) >> (count - 1)) & 1 != 0;
                of = v & sb != 0;
            }
            _ => {
                let sv = ((v << (32 - bits)) as i32) >> (32 - bits);
                r = (sv >> count.min(31)) as u32 & m;
                cf = (sv >> (count - 1).min(31)) & 1 != 0;
                of = false;
            }
        }
        let fl = szp(r, sz) | cf as u32 | if of { OF } else { 0 };
        self.set_arith(ARITH, fl);
        Some(r)
    }

    /// SHLD (`left`) / SHRD of `dst` with bits from `src`.
    pub(crate) fn shiftd(&mut self, left: bool, dst: u32, src: u32, count: u32, sz: u8) -> Option<u32> {
        let c = count & 0x1f;
        if c == 0 {
            return None;
        }
        let bits = sz as u32 * 8;
        let m = mask(sz);
        let (dst, src) = (dst & m, src & m);
        let (r, cf);
        if sz == 4 {
            if left {
                r = (dst << c) | (src >> (32 - c));
                cf = (dst >> (32 - c)) & 1 != 0;
            } else {
                r = (dst >> c) | (src << (32 - c));
                cf = (dst >> (c - 1)) & 1 != 0;
            }
        } else {
            // 16-bit: the 32-bit concatenation, counts above 16 give the documented-undefined
            // result of the same 48-bit pattern the hardware uses (dst:src:dst).
            if left {
                let w = ((dst as u64) << 32) | ((src as u64) << 16) | dst as u64;
                let s = w << c;
                r = ((s >> 32) as u32) & m;
                cf = (s >> 48) & 1 != 0;
            } else {
                let w = ((dst as u64) << 32) | ((src as u64) << 16) | dst as u64;
                let s = w >> c;
                r = (s as u32) & m;
                cf = (w >> (c - 1)) & 1 != 0;
            }
        }
        let _ = bits;
        let of = ((r ^ dst) & sign(sz)) != 0;
        self.set_arith(ARITH, szp(r, sz) | cf as u32 | if of { OF } else { 0 });
        Some(r)
    }

    /// MUL/IMUL one-operand form: EDX:EAX (DX:AX, AX) = EAX * v.
    pub(crate) fn mul1(&mut self, signed: bool, v: u32, sz: u8) {
        let m = mask(sz);
        let a = self.reg(EAX as u8, sz);
        let (lo, hi, ovf);
        if signed {
            let bits = sz as u32 * 8;
            let sa = ((a << (32 - bits)) as i32 >> (32 - bits)) as i64;
            let sv = ((v << (32 - bits)) as i32 >> (32 - bits)) as i64;
            let p = sa * sv;
            lo = (p as u64 as u32) & m;
            hi = ((p >> bits) as u64 as u32) & m;
            let back = ((lo << (32 - bits)) as i32 >> (32 - bits)) as i64;
            ovf = back != p;
        } else {
            let p = (a as u64) * (v as u64);
            let bits = sz as u32 * 8;
            lo = (p as u32) & m;
            hi = ((p >> bits) as u32) & m;
            ovf = hi != 0;
        }
        match sz {
            1 => self.set_reg(EAX as u8, 2, lo | (hi << 8)),
            _ => {
                self.set_reg(EAX as u8, sz, lo);
                self.set_reg(EDX as u8, sz, hi);
            }
        }
        let fl = szp(lo, sz) | if ovf { CF | OF } else { 0 };
        self.set_arith(ARITH, fl);
    }

    /// IMUL two/three-operand forms: truncated signed product, CF=OF=overflow.
    pub(crate) fn imul2(&mut self, a: u32, b: u32, sz: u8) -> u32 {
        let bits = sz as u32 * 8;
        let sa = ((a << (32 - bits)) as i32 >> (32 - bits)) as i64;
        let sb = ((b << (32 - bits)) as i32 >> (32 - bits)) as i64;
        let p = sa * sb;
        let r = (p as u64 as u32) & mask(sz);
        let back = ((r << (32 - bits)) as i32 >> (32 - bits)) as i64;
        self.set_arith(ARITH, szp(r, sz) | if back != p { CF | OF } else { 0 });
        r
    }

    /// DIV/IDIV: #DE on zero divisor or quotient overflow; flags unchanged (undefined).
    pub(crate) fn div(&mut self, signed: bool, v: u32, sz: u8) -> Res<()> {
        let bits = sz as u32 * 8;
        let m = mask(sz);
        let v = v & m;
        if v == 0 {
            return Err(Fault::DivideError.into());
        }
        let dividend: u64 = match sz {
            1 => self.reg(EAX as u8, 2) as u64,
            2 => ((self.reg(EDX as u8, 2) as u64) << 16) | self.reg(EAX as u8, 2) as u64,
            _ => ((self.s.gpr[EDX] as u64) << 32) | self.s.gpr[EAX] as u64,
        };
        let (q, r);
        if signed {
            let dbits = 2 * bits;
            let sd = ((dividend << (64 - dbits)) as i64) >> (64 - dbits);
            let sv = ((v << (32 - bits)) as i32 >> (32 - bits)) as i64;
            let qq = sd.checked_div(sv).ok_or(Fault::DivideError)?;
            let min = -(1i64 << (bits - 1));
            let max = (1i64 << (bits - 1)) - 1;
            if qq < min || qq > max {
                return Err(Fault::DivideError.into());
            }
            q = (qq as u64 as u32) & m;
            r = ((sd % sv) as u64 as u32) & m;
        } else {
            let qq = dividend / v as u64;
            if qq > m as u64 {
                return Err(Fault::DivideError.into());
            }
            q = qq as u32;
            r = (dividend % v as u64) as u32;
        }
        match sz {
            1 => self.set_reg(EAX as u8, 2, q | (r << 8)),
            _ => {
                self.set_reg(EAX as u8, sz, q);
                self.set_reg(EDX as u8, sz, r);
            }
        }
        Ok(())
    }

    pub(crate) fn daa(&mut self, sub: bool) {
        let f = self.eflags();
        let old_al = self.s.gpr[EAX] & 0xff;
        let old_cf = f & CF != 0;
        let mut al = old_al;
        let mut cf = false;
        let mut af = false;
        if (al & 0xf) > 9 || f & AF != 0 {
            let borrow;
            if sub {
                borrow = al < 6;
                al = al.wrapping_sub(6) & 0xff;
            } else {
                borrow = al + 6 > 0xff;
                al = (al + 6) & 0xff;
            }
            cf = old_cf || borrow;
            af = true;
        }
        if old_al > 0x99 || old_cf {
            al = if sub { al.wrapping_sub(0x60) } else { al + 0x60 } & 0xff;
            cf = true;
        } else if !sub {
            // DAA clears CF here; DAS keeps the borrow of the first step (SDM pseudo-code).
            cf = false;
        }
        self.set_reg(EAX as u8, 1, al);
        self.set_arith(ARITH, szp(al, 1) | cf as u32 | if af { AF } else { 0 });
    }

    pub(crate) fn aaa(&mut self, sub: bool) {
        let f = self.eflags();
        let mut ax = self.s.gpr[EAX] & 0xffff;
        let adj = (ax & 0xf) > 9 || f & AF != 0;
        if adj {
            if sub {
                ax = ax.wrapping_sub(6) & 0xffff;
                ax = ax.wrapping_sub(0x100) & 0xffff;
            } else {
                ax = (ax + 0x106) & 0xffff;
            }
        }
        ax &= 0xff0f;
        self.set_reg(EAX as u8, 2, ax);
        let fl = if adj { CF | AF } else { 0 };
        self.set_arith(ARITH, szp(ax, 1) | fl);
    }

    pub(crate) fn aam(&mut self, base: u32) -> Res<()> {
        if base == 0 {
            return Err(Fault::DivideError.into());
        }
        let al = self.s.gpr[EAX] & 0xff;
        let r = ((al / base) << 8) | (al % base);
        self.set_reg(EAX as u8, 2, r);
        self.set_arith(ARITH, szp(r & 0xff, 1));
        Ok(())
    }

    pub(crate) fn aad(&mut self, base: u32) {
        let al = self.s.gpr[EAX] & 0xff;
        let ah = (self.s.gpr[EAX] >> 8) & 0xff;
        let r = (al + ah * base) & 0xff;
        self.set_reg(EAX as u8, 2, r);
        self.set_arith(ARITH, szp(r, 1));
    }
}
