//! Lazy arithmetic flags.
//!
//! Most instructions that write flags are followed by another that overwrites them before anyone
//! reads them, so ALU ops only record (kind, size, result, operands, carry-in) and the six status
//! flags are computed when a Jcc/SETcc/PUSHF/... asks. Everything else (shifts, MUL, BCD, POPF)
//! stores the flags eagerly into `eflags` and marks the record `Eager`.

use super::state::{AF, ARITH, CF, OF, PF, SF, ZF};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    /// `eflags` holds the current arithmetic flags.
    Eager,
    /// ADD/ADC (carry-in in `cin`).
    Add,
    /// SUB/SBB/CMP/NEG (borrow-in in `cin`); NEG is 0 - x.
    Sub,
    /// AND/OR/XOR/TEST: CF=OF=0, AF=0.
    Logic,
    /// INC: like ADD x,1 but CF preserved (in `cin`).
    Inc,
    /// DEC: like SUB x,1 but CF preserved (in `cin`).
    Dec,
}

#[derive(Clone, Copy, Debug)]
pub struct Lazy {
    pub op: FlagOp,
    /// Operand size in bytes (1, 2, 4).
    pub sz: u8,
    pub res: u32,
    pub a: u32,
    pub b: u32,
    pub cin: bool,
}

impl Default for Lazy {
    fn default() -> Self {
        Lazy { op: FlagOp::Eager, sz: 4, res: 0, a: 0, b: 0, cin: false }
    }
}

#[inline(always)]
pub fn mask(sz: u8) -> u32 {
    if sz == 4 {
        u32::MAX
    } else {
        (1u32 << (sz * 8)) - 1
    }
}

#[inline(always)]
pub fn sign(sz: u8) -> u32 {
    1u32 << (sz * 8 - 1)
}

#[inline(always)]
pub fn parity(v: u32) -> bool {
    (v as u8).count_ones() & 1 == 0
}

/// PF, ZF and SF of a result of `sz` bytes.
#[inline(always)]
pub fn szp(res: u32, sz: u8) -> u32 {
    let r = res & mask(sz);
    (if parity(r) { PF } else { 0 }) | (if r == 0 { ZF } else { 0 }) | (if r & sign(sz) != 0 { SF } else { 0 })
}

impl Lazy {
    #[inline(always)]
    pub fn cf(&self, eflags: u32) -> bool {
        let m = mask(self.sz);
        match self.op {
            FlagOp::Eager => eflags & CF != 0,
            FlagOp::Add => {
                let (r, a) = (self.res & m, self.a & m);
                if self.cin { r <= a } else { r < a }
            }
            FlagOp::Sub => {
                let (a, b) = (self.a & m, self.b & m);
                if self.cin { a <= b } else { a < b }
            }
            FlagOp::Logic => false,
            FlagOp::Inc | FlagOp::Dec => self.cin,
        }
    }

    #[inline(always)]
    pub fn zf(&self, eflags: u32) -> bool {
        match self.op {
            FlagOp::Eager => eflags & ZF != 0,
            _ => self.res & mask(self.sz) == 0,
        }
    }

    #[inline(always)]
    pub fn sf(&self, eflags: u32) -> bool {
        match self.op {
            FlagOp::Eager => eflags & SF != 0,
            _ => self.res & sign(self.sz) != 0,
        }
    }

    #[inline(always)]
    pub fn of(&self, eflags: u32) -> bool {
        let s = sign(self.sz);
        match self.op {
            FlagOp::Eager => eflags & OF != 0,
            FlagOp::Add | FlagOp::Inc => (self.a ^ self.res) & (self.b ^ self.res) & s != 0,
            FlagOp::Sub | FlagOp::Dec => (self.a ^ self.b) & (self.a ^ self.res) & s != 0,
            FlagOp::Logic => false,
        }
    }

    /// All six arithmetic flags, merged into `eflags`.
    pub fn materialize(&self, eflags: u32) -> u32 {
        if self.op == FlagOp::Eager {
            return eflags;
        }
        let mut f = szp(self.res, self.sz);
        if self.cf(eflags) {
            f |= CF;
        }
        if self.of(eflags) {
            f |= OF;
        }
        if self.op != FlagOp::Logic {
            f |= (self.a ^ self.b ^ self.res) & AF;
        }
        (eflags & !ARITH) | f
    }
}
