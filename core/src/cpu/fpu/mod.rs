//! The x87 FPU and MMX unit. See `docs/fpu.md`.
//!
//! `cpu-exec` decodes the D8-DF escapes (and 0F MMX / 0F AE FXSAVE opcodes), resolves the memory
//! operand to an offset in its segment, checks CR0.EM/TS/MP and pending #MF, and calls
//! [`FpuState::execute`]. Everything x87 happens here, on plain serde-able state.
//!
//! - [`float`]: the 80-bit soft-float (rounding, PC/RC, exception flags, conversions).
//! - [`transcend`]: F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN, FSIN, FCOS, FSINCOS, FPREM/FPREM1.
//! - [`env`]: FNSTENV/FLDENV/FNSAVE/FRSTOR (16/32-bit, real/protected) and FXSAVE/FXRSTOR.
//! - [`mmx`]: the MMX instructions, aliasing the x87 register file.

pub mod env;
pub mod float;
pub mod mmx;
pub mod transcend;

#[cfg(all(test, target_arch = "x86_64"))]
mod tests;

use float::{Class, Cmp, Status, F80, DE, IE, PE, SF, ZE};
use serde::{Deserialize, Serialize};

/// x87 + MMX architectural state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpuState {
    /// Physical registers R0..R7 (ST(i) is `regs[(top + i) & 7]`; MMi is `regs[i].sig`).
    pub regs: [F80; 8],
    pub cw: u16,
    /// Status word without the TOP field (bits 11-13 always zero here).
    pub sw: u16,
    pub top: u8,
    /// Bit i set: physical register i is not empty (the FXSAVE abridged tag).
    pub tags: u8,
    /// Last non-control instruction: CS:EIP, opcode (11 bits), operand DS:offset.
    pub fip: u32,
    pub fcs: u16,
    pub fop: u16,
    pub fdp: u32,
    pub fds: u16,
}

/// The CPU has recorded a memory fault (e.g. #PF, #GP); the instruction must be aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemFault;

/// Memory access for the current instruction: offsets are within the operand's segment.
pub trait FpuMemory {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), MemFault>;
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), MemFault>;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct FpuContext {
    pub op32: bool,
    /// PE && !VM: selects the protected-mode FNSTENV/FNSAVE layout.
    pub protected: bool,
    pub cs: u16,
    /// EIP of this instruction (recorded as the last instruction pointer).
    pub eip: u32,
    /// Selector of the operand segment.
    pub ds: u16,
    /// EFLAGS on entry (read by FCMOVcc; FCOMI/FUCOMI return an updated copy via
    /// [`FpuOutcome::Eflags`]). Extension of the contract, see `docs/fpu.md`.
    pub eflags: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpuOutcome {
    Done,
    /// FNSTSW AX: write this value to AX.
    StoreAx(u16),
    /// FCOMI/FCOMIP/FUCOMI/FUCOMIP: write this full EFLAGS value (ZF/PF/CF set, OF/SF/AF cleared).
    Eflags(u32),
    MemFault,
    /// Encoding that does not exist on this CPU (e.g. FISTTP, SSE): raise #UD.
    Unimplemented,
}

impl From<MemFault> for FpuOutcome {
    fn from(_: MemFault) -> Self {
        FpuOutcome::MemFault
    }
}

pub const SW_C0: u16 = 1 << 8;
pub const SW_C1: u16 = 1 << 9;
pub const SW_C2: u16 = 1 << 10;
pub const SW_C3: u16 = 1 << 14;
pub const SW_ES: u16 = 1 << 7;
pub const SW_B: u16 = 1 << 15;
const CC_MASK: u16 = SW_C0 | SW_C1 | SW_C2 | SW_C3;

const CF: u32 = 1;
const PF: u32 = 1 << 2;
const AF: u32 = 1 << 4;
const ZF: u32 = 1 << 6;
const SFL: u32 = 1 << 7;
const OF: u32 = 1 << 11;

/// Constants of FLD1/FLDL2T/.../FLDZ with 128 bits of precision, rounded per RC when loaded
/// (exponent, significand). The chip keeps more than 64 bits internally and rounds them the same way.
const CONSTS: [(i32, u128); 5] = [
    (1, 0xd49a784bcd1b8afe492bf6ff4dafdb4c),  // log2(10)
    (0, 0xb8aa3b295c17f0bbbe87fed0691d3e88),  // log2(e)
    (1, 0xc90fdaa22168c234c4c6628b80dc1cd1),  // pi
    (-2, 0x9a209a84fbcff7988f8959ac0b7c9178), // log10(2)
    (-1, 0xb17217f7d1cf79abc9e3b39803f2f6af), // ln(2)
];

impl Default for FpuState {
    fn default() -> Self {
        Self::new()
    }
}

/// True for the no-wait control instructions (FNINIT, FNCLEX, FNSTSW, FNSTCW, FNSTENV, FNSAVE and
/// the 8087 leftovers FNENI/FNDISI/FNSETPM): the CPU must not raise a pending #MF before them.
pub fn is_nowait(esc: u8, modrm: u8) -> bool {
    let reg = (modrm >> 3) & 7;
    let mem = modrm < 0xC0;
    match esc & 7 {
        1 => mem && (reg == 6 || reg == 7),
        3 => !mem && matches!(modrm, 0xE0..=0xE4),
        5 => mem && (reg == 6 || reg == 7),
        7 => !mem && modrm == 0xE0,
        _ => false,
    }
}

/// Bytes of memory a memory-form escape instruction accesses (0 for register forms and
/// undefined encodings), for the caller's segment-limit checks. `op32` selects the 28/108-byte
/// environment/state images.
pub fn operand_bytes(esc: u8, modrm: u8, op32: bool) -> u32 {
    if modrm >= 0xC0 {
        return 0;
    }
    let (env, save) = if op32 { (28, 108) } else { (14, 94) };
    match (esc & 7, (modrm >> 3) & 7) {
        (0, _) | (2, _) => 4,
        (4, _) | (6, _) => if esc & 7 == 6 { 2 } else { 8 },
        (1, 0) | (1, 2) | (1, 3) => 4,
        (1, 4) | (1, 6) => env,
        (1, 5) | (1, 7) => 2,
        (3, 0) | (3, 2) | (3, 3) => 4,
        (3, 5) | (3, 7) => 10,
        (5, 0) | (5, 2) | (5, 3) => 8,
        (5, 4) | (5, 6) => save,
        (5, 7) => 2,
        (7, 0) | (7, 2) | (7, 3) => 2,
        (7, 4) | (7, 6) => 10,
        (7, 5) | (7, 7) => 8,
        _ => 0,
    }
}

impl FpuState {
    /// Power-on (RESET) state as the SDM gives it for P6: FCW 0040h, FSW 0, FTW 5555h (every
    /// register +0.0 and tagged valid/zero), pointers 0. Firmware then runs FNINIT.
    pub fn new() -> Self {
        FpuState {
            regs: [F80::ZERO; 8],
            cw: 0x0040,
            sw: 0,
            top: 0,
            tags: 0xFF,
            fip: 0,
            fcs: 0,
            fop: 0,
            fdp: 0,
            fds: 0,
        }
    }

    /// FNINIT: control word 037Fh, status 0, all registers empty (contents kept), pointers 0.
    pub fn finit(&mut self) {
        self.cw = 0x037F;
        self.sw = 0;
        self.top = 0;
        self.tags = 0;
        self.fip = 0;
        self.fcs = 0;
        self.fop = 0;
        self.fdp = 0;
        self.fds = 0;
    }

    /// The architectural status word (with TOP).
    pub fn status_word(&self) -> u16 {
        (self.sw & !(7 << 11)) | ((self.top as u16 & 7) << 11)
    }

    pub fn set_status_word(&mut self, v: u16) {
        self.top = ((v >> 11) & 7) as u8;
        self.sw = v & !(7 << 11);
        self.update_es();
    }

    pub fn set_control_word(&mut self, v: u16) {
        self.cw = (v & 0x1F3F) | 0x40;
        self.update_es();
    }

    pub fn pending_exception(&self) -> bool {
        self.sw & SW_ES != 0
    }

    fn update_es(&mut self) {
        if self.sw & 0x3F & !self.cw != 0 {
            self.sw |= SW_ES | SW_B;
        } else {
            self.sw &= !(SW_ES | SW_B);
        }
    }

    /// The full 16-bit tag word as FNSTENV stores it.
    pub fn tag_word(&self) -> u16 {
        let mut tw = 0u16;
        for i in 0..8 {
            let t = if self.tags & (1 << i) == 0 {
                3
            } else {
                match self.regs[i].class() {
                    Class::Zero => 1,
                    Class::Normal => 0,
                    _ => 2,
                }
            };
            tw |= t << (2 * i);
        }
        tw
    }

    pub fn set_tag_word(&mut self, tw: u16) {
        self.tags = 0;
        for i in 0..8 {
            if (tw >> (2 * i)) & 3 != 3 {
                self.tags |= 1 << i;
            }
        }
    }

    #[inline]
    fn phys(&self, i: u8) -> usize {
        ((self.top + i) & 7) as usize
    }
    #[inline]
    pub fn st(&self, i: u8) -> F80 {
        self.regs[self.phys(i)]
    }
    #[inline]
    pub fn empty(&self, i: u8) -> bool {
        self.tags & (1 << self.phys(i)) == 0
    }
    #[inline]
    fn set_st(&mut self, i: u8, v: F80) {
        let p = self.phys(i);
        self.regs[p] = v;
        self.tags |= 1 << p;
    }
    fn pop(&mut self) {
        let p = self.phys(0);
        self.tags &= !(1 << p);
        self.top = (self.top + 1) & 7;
    }
    /// Push a value; handles stack overflow (returns false when IE is unmasked: nothing pushed).
    fn push(&mut self, v: F80) -> bool {
        let p = ((self.top + 7) & 7) as usize;
        if self.tags & (1 << p) != 0 {
            self.raise(IE | SF, Some(true));
            if self.cw & IE == 0 {
                return false;
            }
            self.top = p as u8;
            self.set_st(0, F80::INDEFINITE);
            return true;
        }
        self.top = p as u8;
        self.set_st(0, v);
        true
    }
    /// Push without the overflow check (after a masked stack underflow).
    fn force_push(&mut self, v: F80) {
        self.top = (self.top + 7) & 7;
        self.set_st(0, v);
    }
    /// Would a push overflow?
    fn push_overflows(&self) -> bool {
        self.tags & (1 << ((self.top + 7) & 7)) != 0
    }

    /// Merge exception flags and set C1 (`None` leaves C1 alone).
    fn raise(&mut self, flags: u16, c1: Option<bool>) {
        self.sw |= flags;
        if let Some(c) = c1 {
            if c {
                self.sw |= SW_C1;
            } else {
                self.sw &= !SW_C1;
            }
        }
        self.update_es();
    }

    fn apply(&mut self, st: Status) {
        self.raise(st.flags, Some(st.c1));
    }

    /// Stack underflow: IE+SF, C1=0. Returns true when masked (the caller writes the indefinite).
    fn underflow(&mut self) -> bool {
        self.raise(IE | SF, Some(false));
        self.cw & IE != 0
    }

    fn set_cc(&mut self, c3: bool, c2: bool, c1: bool, c0: bool) {
        self.sw &= !CC_MASK;
        if c3 {
            self.sw |= SW_C3;
        }
        if c2 {
            self.sw |= SW_C2;
        }
        if c1 {
            self.sw |= SW_C1;
        }
        if c0 {
            self.sw |= SW_C0;
        }
    }

    fn read_mem<M: FpuMemory, const N: usize>(mem: &mut M, ea: u32) -> Result<[u8; N], MemFault> {
        let mut b = [0u8; N];
        mem.read(ea, &mut b)?;
        Ok(b)
    }

    /// Execute one x87 escape instruction (see the contract in `docs/fpu.md`).
    pub fn execute<M: FpuMemory>(
        &mut self,
        esc: u8,
        modrm: u8,
        ea: Option<u32>,
        mem: &mut M,
        ctx: &FpuContext,
    ) -> FpuOutcome {
        let esc = esc & 7;
        let reg = (modrm >> 3) & 7;
        let r = match ea {
            Some(ea) if modrm < 0xC0 => self.exec_mem(esc, reg, ea, mem, ctx),
            _ => self.exec_reg(esc, modrm, ctx),
        };
        match r {
            Ok((out, control)) => {
                if !control {
                    self.fip = ctx.eip;
                    self.fcs = ctx.cs;
                    self.fop = ((esc as u16) << 8) | modrm as u16;
                    if let (Some(ea), true) = (ea, modrm < 0xC0) {
                        self.fdp = ea;
                        self.fds = ctx.ds;
                    }
                }
                out
            }
            Err(MemFault) => FpuOutcome::MemFault,
        }
    }

    /// Binary arithmetic `a op b` with op = reg field of D8 (0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr).
    fn arith(op: u8, a: F80, b: F80, cw: u16, st: &mut Status) -> Option<F80> {
        match op {
            0 => float::add(a, b, false, cw, st),
            1 => float::mul(a, b, cw, st),
            4 => float::add(a, b, true, cw, st),
            5 => float::add(b, a, true, cw, st),
            6 => float::div(a, b, cw, st),
            _ => float::div(b, a, cw, st),
        }
    }

    /// ST0 op (already converted) memory operand, or FCOM/FCOMP with it.
    fn mem_arith(&mut self, reg: u8, b: F80, st: Status) {
        if self.empty(0) {
            let masked = self.underflow();
            if reg == 2 || reg == 3 {
                self.set_cc(true, true, false, true);
                if reg == 3 && masked {
                    self.pop();
                }
            } else if masked {
                self.set_st(0, F80::INDEFINITE);
            }
            return;
        }
        let a = self.st(0);
        if reg == 2 || reg == 3 {
            let mut st = st;
            if a.is_nan() || a.class() == Class::Unsupported {
                st.flags &= !DE;
            }
            self.compare_cc(a, b, false, reg == 3, 0, st);
            return;
        }
        // `st` holds the operand conversion's flags (DE for a denormal m32/m64, IE for an SNaN).
        let cw = self.cw;
        let mut conv = st.flags;
        let mut st = Status::default();
        let r = Self::arith(reg, a, b, cw, &mut st);
        if a.is_nan() || a.class() == Class::Unsupported || st.flags & (IE | ZE) != 0 {
            // Invalid, NaN and zero-divide take priority over the operand's denormal exception.
            conv &= !DE;
        }
        if conv & (IE | DE) & !cw != 0 {
            self.raise(conv, Some(false));
            return;
        }
        st.flags |= conv;
        self.apply(st);
        if let Some(v) = r {
            self.set_st(0, v);
        }
    }

    /// FCOM family on condition codes; pops `pops` times on success.
    fn compare_cc(&mut self, a: F80, b: F80, quiet: bool, pop: bool, pop2: u8, mut st: Status) {
        let c = float::compare(a, b, quiet, self.cw, &mut st);
        let unmasked = st.flags & !self.cw & 0x3F != 0;
        self.raise(st.flags, None);
        {
            match c {
                Cmp::Greater => self.set_cc(false, false, false, false),
                Cmp::Less => self.set_cc(false, false, false, true),
                Cmp::Equal => self.set_cc(true, false, false, false),
                Cmp::Unordered => self.set_cc(true, true, false, true),
            }
            if unmasked {
                return;
            }
            if pop {
                self.pop();
            }
            for _ in 0..pop2 {
                self.pop();
            }
        }
    }

    fn exec_mem<M: FpuMemory>(
        &mut self,
        esc: u8,
        reg: u8,
        ea: u32,
        mem: &mut M,
        ctx: &FpuContext,
    ) -> Result<(FpuOutcome, bool), MemFault> {
        let done = Ok((FpuOutcome::Done, false));
        let cw = self.cw;
        match (esc, reg) {
            // Arithmetic with m32real / m64real / m32int / m16int.
            (0, _) | (4, _) | (2, _) | (6, _) => {
                let mut st = Status::default();
                let b = match esc {
                    0 => {
                        let v = u32::from_le_bytes(Self::read_mem::<M, 4>(mem, ea)?);
                        float::from_ieee(v as u64, 23, 8, cw, &mut st)
                    }
                    4 => {
                        let v = u64::from_le_bytes(Self::read_mem::<M, 8>(mem, ea)?);
                        float::from_ieee(v, 52, 11, cw, &mut st)
                    }
                    2 => Some(float::from_int(i32::from_le_bytes(Self::read_mem::<M, 4>(mem, ea)?) as i64)),
                    _ => Some(float::from_int(i16::from_le_bytes(Self::read_mem::<M, 2>(mem, ea)?) as i64)),
                };
                if self.empty(0) {
                    // Stack underflow takes priority over operand exceptions.
                    self.mem_arith(reg, F80::ZERO, Status::default());
                    return done;
                }
                match b {
                    Some(b) => self.mem_arith(reg, b, st),
                    None => self.apply(st),
                }
                done
            }
            // FLD m32 / m64 / m80
            (1, 0) | (5, 0) | (3, 5) => {
                let mut st = Status::default();
                let v = match (esc, reg) {
                    (1, _) | (5, _) => {
                        let v = if esc == 1 {
                            let v = u32::from_le_bytes(Self::read_mem::<M, 4>(mem, ea)?);
                            float::from_ieee(v as u64, 23, 8, cw, &mut st)
                        } else {
                            let v = u64::from_le_bytes(Self::read_mem::<M, 8>(mem, ea)?);
                            float::from_ieee(v, 52, 11, cw, &mut st)
                        };
                        v.map(|v| {
                            if v.class() == Class::SNaN {
                                st.flags |= IE;
                                v.quiet()
                            } else {
                                v
                            }
                        })
                    }
                    _ => Some(F80::from_bytes(&Self::read_mem::<M, 10>(mem, ea)?)),
                };
                if self.push_overflows() {
                    self.push(F80::INDEFINITE);
                    return done;
                }
                self.raise(st.flags, Some(false));
                match v {
                    // An unmasked SNaN load is suppressed; an unmasked denormal one is not.
                    Some(v) if st.flags & IE & !cw == 0 => {
                        self.push(v);
                    }
                    _ => {}
                }
                done
            }
            // FILD m16 / m32 / m64, FBLD
            (7, 0) | (3, 0) | (7, 5) | (7, 4) => {
                let v = match (esc, reg) {
                    (7, 0) => float::from_int(i16::from_le_bytes(Self::read_mem::<M, 2>(mem, ea)?) as i64),
                    (3, 0) => float::from_int(i32::from_le_bytes(Self::read_mem::<M, 4>(mem, ea)?) as i64),
                    (7, 5) => float::from_int(i64::from_le_bytes(Self::read_mem::<M, 8>(mem, ea)?)),
                    _ => float::from_bcd(&Self::read_mem::<M, 10>(mem, ea)?),
                };
                if !self.push_overflows() {
                    self.raise(0, Some(false));
                }
                self.push(v);
                done
            }
            // FST/FSTP m32, m64
            (1, 2) | (1, 3) | (5, 2) | (5, 3) => {
                let pop = reg == 3;
                let (fb, eb, n) = if esc == 1 { (23, 8, 4) } else { (52, 11, 8) };
                if self.empty(0) {
                    // Store first (it may fault: nothing may change then), then report.
                    if cw & IE != 0 {
                        let indef: u64 = if n == 4 { 0xFFC0_0000 } else { 0xFFF8_0000_0000_0000 };
                        mem.write(ea, &indef.to_le_bytes()[..n])?;
                    }
                    if self.underflow() && pop {
                        self.pop();
                    }
                    return done;
                }
                let mut st = Status::default();
                let r = float::to_ieee(self.st(0), fb, eb, cw, &mut st);
                let suppressed = st.flags & (float::OE | float::UE) & !cw != 0;
                if let (Some(v), false) = (r, suppressed) {
                    mem.write(ea, &v.to_le_bytes()[..n])?;
                    self.apply(st);
                    if pop {
                        self.pop();
                    }
                } else {
                    self.apply(st);
                }
                done
            }
            // FIST/FISTP m16 (DF /2 /3), m32 (DB /2 /3), FISTP m64 (DF /7), FBSTP (DF /6)
            (7, 2) | (7, 3) | (3, 2) | (3, 3) | (7, 7) | (7, 6) => {
                let pop = reg != 2;
                if self.empty(0) {
                    if cw & IE != 0 {
                        let bytes: &[u8] = match (esc, reg) {
                            (7, 6) => &[0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF],
                            (7, 7) => &[0, 0, 0, 0, 0, 0, 0, 0x80],
                            (3, _) => &[0, 0, 0, 0x80],
                            _ => &[0, 0x80],
                        };
                        mem.write(ea, bytes)?;
                    }
                    if self.underflow() && pop {
                        self.pop();
                    }
                    return done;
                }
                let mut st = Status::default();
                let a = self.st(0);
                let ok = if (esc, reg) == (7, 6) {
                    match float::to_bcd(a, cw, &mut st) {
                        Some(b) => {
                            mem.write(ea, &b)?;
                            true
                        }
                        None => false,
                    }
                } else {
                    let bits = match (esc, reg) {
                        (7, 7) => 64,
                        (3, _) => 32,
                        _ => 16,
                    };
                    match float::to_int(a, bits, cw, &mut st) {
                        Some(v) => {
                            mem.write(ea, &v.to_le_bytes()[..(bits / 8) as usize])?;
                            true
                        }
                        None => false,
                    }
                };
                self.apply(st);
                if ok && pop {
                    self.pop();
                }
                done
            }
            // FSTP m80
            (3, 7) => {
                if self.empty(0) {
                    if cw & IE != 0 {
                        mem.write(ea, &F80::INDEFINITE.to_bytes())?;
                    }
                    if self.underflow() {
                        self.pop();
                    }
                    return done;
                }
                mem.write(ea, &self.st(0).to_bytes())?;
                self.raise(0, Some(false));
                self.pop();
                done
            }
            // FLDENV, FLDCW, FNSTENV, FNSTCW
            (1, 4) => {
                env::fldenv(self, ea, mem, ctx)?;
                Ok((FpuOutcome::Done, true))
            }
            (1, 5) => {
                let v = u16::from_le_bytes(Self::read_mem::<M, 2>(mem, ea)?);
                self.set_control_word(v);
                Ok((FpuOutcome::Done, true))
            }
            (1, 6) => {
                env::fnstenv(self, ea, mem, ctx)?;
                self.cw |= 0x3F;
                self.update_es();
                Ok((FpuOutcome::Done, true))
            }
            (1, 7) => {
                mem.write(ea, &self.cw.to_le_bytes())?;
                Ok((FpuOutcome::Done, true))
            }
            // FRSTOR, FNSAVE, FNSTSW m16
            (5, 4) => {
                env::frstor(self, ea, mem, ctx)?;
                Ok((FpuOutcome::Done, true))
            }
            (5, 6) => {
                env::fnsave(self, ea, mem, ctx)?;
                self.finit();
                Ok((FpuOutcome::Done, true))
            }
            (5, 7) => {
                mem.write(ea, &self.status_word().to_le_bytes())?;
                Ok((FpuOutcome::Done, true))
            }
            // FISTTP (SSE3) and reserved encodings.
            _ => Ok((FpuOutcome::Unimplemented, true)),
        }
    }

    fn exec_reg(&mut self, esc: u8, modrm: u8, ctx: &FpuContext) -> Result<(FpuOutcome, bool), MemFault> {
        let reg = (modrm >> 3) & 7;
        let i = modrm & 7;
        let done = Ok((FpuOutcome::Done, false));
        let cw = self.cw;
        match esc {
            0 => {
                if reg == 2 || reg == 3 {
                    self.fcom_reg(i, false, reg == 3, 0);
                } else {
                    self.reg_arith(reg, 0, i, false);
                }
                done
            }
            4 | 6 => {
                let pop = esc == 6;
                match reg {
                    2 => self.fcom_reg(i, false, pop, 0),
                    3 => {
                        if esc == 6 {
                            if i == 1 {
                                self.fcom_reg(1, false, true, 1); // FCOMPP
                            } else {
                                return Ok((FpuOutcome::Unimplemented, true));
                            }
                        } else {
                            self.fcom_reg(i, false, true, 0);
                        }
                    }
                    _ => {
                        // DC/DE: ST(i) = ST(i) op ST(0); sub/div encodings are reversed.
                        let op = match reg {
                            4 => 5,
                            5 => 4,
                            6 => 7,
                            7 => 6,
                            r => r,
                        };
                        self.reg_arith(op, i, 0, pop);
                    }
                }
                done
            }
            1 => self.exec_d9(modrm, cw),
            2 => {
                match reg {
                    0..=3 => {
                        let f = ctx.eflags;
                        let c = match reg {
                            0 => f & CF != 0,
                            1 => f & ZF != 0,
                            2 => f & (CF | ZF) != 0,
                            _ => f & PF != 0,
                        };
                        self.fcmov(i, c);
                    }
                    5 if i == 1 => self.fcom_reg(1, true, true, 1), // FUCOMPP
                    _ => return Ok((FpuOutcome::Unimplemented, true)),
                }
                done
            }
            3 => {
                match reg {
                    0..=3 => {
                        let f = ctx.eflags;
                        let c = match reg {
                            0 => f & CF == 0,
                            1 => f & ZF == 0,
                            2 => f & (CF | ZF) == 0,
                            _ => f & PF == 0,
                        };
                        self.fcmov(i, c);
                        done
                    }
                    4 => match modrm {
                        0xE0 | 0xE1 | 0xE4 => Ok((FpuOutcome::Done, true)), // FNENI/FNDISI/FNSETPM
                        0xE2 => {
                            self.sw &= !(0xFF | SW_B);
                            Ok((FpuOutcome::Done, true))
                        }
                        0xE3 => {
                            self.finit();
                            Ok((FpuOutcome::Done, true))
                        }
                        _ => Ok((FpuOutcome::Unimplemented, true)),
                    },
                    5 | 6 => Ok((self.fcomi(i, reg == 5, false, ctx.eflags), false)),
                    _ => Ok((FpuOutcome::Unimplemented, true)),
                }
            }
            5 => {
                match reg {
                    0 => {
                        let p = self.phys(i);
                        self.tags &= !(1 << p);
                        self.raise(0, Some(false));
                    }
                    1 => self.fxch(i),
                    2 | 3 => self.fst_reg(i, reg == 3),
                    4 => self.fcom_reg(i, true, false, 0),
                    5 => self.fcom_reg(i, true, true, 0),
                    _ => return Ok((FpuOutcome::Unimplemented, true)),
                }
                done
            }
            _ => {
                // DF
                match reg {
                    0 => {
                        // FFREEP (undocumented, P6 and later)
                        let p = self.phys(i);
                        self.tags &= !(1 << p);
                        self.raise(0, Some(false));
                        self.pop();
                        done
                    }
                    1 => {
                        self.fxch(i);
                        done
                    }
                    2 | 3 => {
                        self.fst_reg(i, true);
                        done
                    }
                    4 if modrm == 0xE0 => Ok((FpuOutcome::StoreAx(self.status_word()), true)),
                    5 | 6 => Ok((self.fcomi(i, reg == 5, true, ctx.eflags), false)),
                    _ => Ok((FpuOutcome::Unimplemented, true)),
                }
            }
        }
    }

    fn exec_d9(&mut self, modrm: u8, cw: u16) -> Result<(FpuOutcome, bool), MemFault> {
        let reg = (modrm >> 3) & 7;
        let i = modrm & 7;
        let done = Ok((FpuOutcome::Done, false));
        match reg {
            0 => {
                // FLD ST(i)
                if self.empty(i) {
                    // Source underflow is reported (C1=0) even if the push would also overflow.
                    if self.underflow() {
                        self.force_push(F80::INDEFINITE);
                    }
                } else {
                    let v = self.st(i);
                    if !self.push_overflows() {
                        self.raise(0, Some(false));
                    }
                    self.push(v);
                }
                done
            }
            1 => {
                self.fxch(i);
                done
            }
            2 => {
                if i == 0 {
                    done // FNOP
                } else {
                    Ok((FpuOutcome::Unimplemented, true))
                }
            }
            3 => {
                // FSTP1 (undocumented alias, "FSTPNCE"): on an empty ST0 the chip raises no stack
                // fault and just pops (host-verified).
                if self.empty(0) {
                    self.raise(0, Some(false));
                    self.pop();
                } else {
                    self.fst_reg(i, true);
                }
                done
            }
            4 => {
                match i {
                    0 | 1 => {
                        // FCHS, FABS
                        if self.empty(0) {
                            if self.underflow() {
                                self.set_st(0, F80::INDEFINITE);
                            }
                        } else {
                            let v = self.st(0);
                            let v = if i == 0 { v.neg() } else { v.with_sign(false) };
                            self.set_st(0, v);
                            self.raise(0, Some(false));
                        }
                    }
                    4 => {
                        // FTST
                        if self.empty(0) {
                            self.underflow();
                            self.set_cc(true, true, false, true);
                        } else {
                            self.compare_cc(self.st(0), F80::ZERO, false, false, 0, Status::default());
                        }
                    }
                    5 => self.fxam(),
                    _ => return Ok((FpuOutcome::Unimplemented, true)),
                }
                done
            }
            5 => {
                // Constants
                if i == 7 {
                    return Ok((FpuOutcome::Unimplemented, true));
                }
                let v = match i {
                    0 => F80::ONE,
                    6 => F80::ZERO,
                    _ => {
                        let (e, m) = CONSTS[(i - 1) as usize];
                        let mut st = Status::default();
                        // Only RC matters: precision control does not apply to constants.
                        float::round_f80(false, e + float::BIAS, m, 64, cw | 0x300, &mut st)
                    }
                };
                if !self.push_overflows() {
                    self.raise(0, Some(false));
                }
                self.push(v);
                done
            }
            _ => {
                // D9 F0-FF
                let op = modrm & 0x0F;
                match op {
                    0x6 => {
                        self.top = (self.top + 7) & 7;
                        self.raise(0, Some(false));
                    }
                    0x7 => {
                        self.top = (self.top + 1) & 7;
                        self.raise(0, Some(false));
                    }
                    0xA | 0xC => {
                        // FSQRT, FRNDINT
                        if self.empty(0) {
                            if self.underflow() {
                                self.set_st(0, F80::INDEFINITE);
                            }
                        } else {
                            let mut st = Status::default();
                            let r = if op == 0xA {
                                float::sqrt(self.st(0), cw, &mut st)
                            } else {
                                float::rndint(self.st(0), cw, &mut st)
                            };
                            self.apply(st);
                            if let Some(v) = r {
                                self.set_st(0, v);
                            }
                        }
                    }
                    0x4 => self.fxtract(),
                    0xD => self.fscale(),
                    _ => transcend::execute(self, op),
                }
                done
            }
        }
    }

    /// D8/DC/DE register arithmetic: ST(dst) = ST(dst) op ST(src) (with `op` in D8 numbering,
    /// `a` = ST(dst)).
    fn reg_arith(&mut self, op: u8, dst: u8, src: u8, pop: bool) {
        if self.empty(dst) || self.empty(src) {
            if self.underflow() {
                self.set_st(dst, F80::INDEFINITE);
                if pop {
                    self.pop();
                }
            }
            return;
        }
        let mut st = Status::default();
        let r = Self::arith(op, self.st(dst), self.st(src), self.cw, &mut st);
        self.apply(st);
        if let Some(v) = r {
            self.set_st(dst, v);
            if pop {
                self.pop();
            }
        }
    }

    fn fcom_reg(&mut self, i: u8, quiet: bool, pop: bool, extra_pops: u8) {
        if self.empty(0) || self.empty(i) {
            // The compares report "unordered" even when the underflow is unmasked.
            let masked = self.underflow();
            self.set_cc(true, true, false, true);
            if masked {
                if pop {
                    self.pop();
                }
                for _ in 0..extra_pops {
                    self.pop();
                }
            }
            return;
        }
        self.compare_cc(self.st(0), self.st(i), quiet, pop, extra_pops, Status::default());
    }

    fn fcomi(&mut self, i: u8, quiet: bool, pop: bool, eflags: u32) -> FpuOutcome {
        let mut f = eflags & !(ZF | PF | CF | OF | SFL | AF);
        if self.empty(0) || self.empty(i) {
            if self.underflow() && pop {
                self.pop();
            }
            return FpuOutcome::Eflags(f | ZF | PF | CF);
        }
        let mut st = Status::default();
        let c = float::compare(self.st(0), self.st(i), quiet, self.cw, &mut st);
        let unmasked = st.flags & !self.cw & 0x3F != 0;
        // A completed FCOMI leaves C1 alone (host-verified); underflow clears it.
        self.raise(st.flags, None);
        f |= match c {
            Cmp::Greater => 0,
            Cmp::Less => CF,
            Cmp::Equal => ZF,
            Cmp::Unordered => ZF | PF | CF,
        };
        if pop && !unmasked {
            self.pop();
        }
        FpuOutcome::Eflags(f)
    }

    fn fcmov(&mut self, i: u8, cond: bool) {
        if self.empty(0) || self.empty(i) {
            if self.underflow() {
                self.set_st(0, F80::INDEFINITE);
            }
            return;
        }
        // C1 is left alone (host-verified).
        if cond {
            self.set_st(0, self.st(i));
        }
    }

    fn fxch(&mut self, i: u8) {
        let (e0, ei) = (self.empty(0), self.empty(i));
        if e0 || ei {
            if !self.underflow() {
                return;
            }
            let a = if e0 { F80::INDEFINITE } else { self.st(0) };
            let b = if ei { F80::INDEFINITE } else { self.st(i) };
            self.set_st(0, b);
            self.set_st(i, a);
            return;
        }
        let (a, b) = (self.st(0), self.st(i));
        self.set_st(0, b);
        self.set_st(i, a);
        self.raise(0, Some(false));
    }

    fn fst_reg(&mut self, i: u8, pop: bool) {
        if self.empty(0) {
            if self.underflow() {
                self.set_st(i, F80::INDEFINITE);
                if pop {
                    self.pop();
                }
            }
            return;
        }
        self.set_st(i, self.st(0));
        self.raise(0, Some(false));
        if pop {
            self.pop();
        }
    }

    fn fxam(&mut self) {
        let v = self.st(0);
        let s = v.sign();
        if self.empty(0) {
            self.set_cc(true, false, s, true);
            return;
        }
        let (c3, c2, c0) = match v.class() {
            Class::Unsupported => (false, false, false),
            Class::QNaN | Class::SNaN => (false, false, true),
            Class::Normal => (false, true, false),
            Class::Inf => (false, true, true),
            Class::Zero => (true, false, false),
            Class::Denormal => (true, true, false),
        };
        self.set_cc(c3, c2, s, c0);
    }

    fn fxtract(&mut self) {
        if self.empty(0) {
            if self.underflow() {
                self.set_st(0, F80::INDEFINITE);
                self.force_push(F80::INDEFINITE);
            }
            return;
        }
        if self.push_overflows() {
            // Masked overflow: both results are the indefinite (host-verified).
            if self.cw & IE != 0 {
                self.set_st(0, F80::INDEFINITE);
            }
            self.push(F80::INDEFINITE);
            return;
        }
        let a = self.st(0);
        let cw = self.cw;
        let mut st = Status::default();
        let (e, m) = match a.class() {
            Class::Unsupported => match float::invalid(cw, &mut st) {
                Some(v) => (v, v),
                None => {
                    self.apply(st);
                    return;
                }
            },
            Class::QNaN | Class::SNaN => match float::nan1(a, cw, &mut st) {
                Some(v) => (v, v),
                None => {
                    self.apply(st);
                    return;
                }
            },
            Class::Zero => {
                st.flags |= ZE;
                if cw & ZE == 0 {
                    self.apply(st);
                    return;
                }
                (F80::inf(true), a)
            }
            Class::Inf => (F80::INF, a),
            _ => {
                if a.is_denormal() {
                    st.flags |= DE;
                    if cw & DE == 0 {
                        self.apply(st);
                        return;
                    }
                }
                let (s, e, m) = a.unpack();
                (float::from_int((e - float::BIAS) as i64), F80::new(s, float::BIAS as u16, m))
            }
        };
        self.apply(st);
        self.set_st(0, e);
        self.push(m);
    }

    fn fscale(&mut self) {
        if self.empty(0) || self.empty(1) {
            if self.underflow() {
                self.set_st(0, F80::INDEFINITE);
            }
            return;
        }
        let (a, b) = (self.st(0), self.st(1));
        let cw = self.cw;
        let mut st = Status::default();
        let r = fscale(a, b, cw, &mut st);
        self.apply(st);
        if let Some(v) = r {
            self.set_st(0, v);
        }
    }

    /// MMX register i (physical register i's significand).
    pub fn mm(&self, i: usize) -> u64 {
        self.regs[i & 7].sig
    }

    /// EMMS: all registers empty; like every MMX instruction it also resets TOP (host-verified).
    pub fn emms(&mut self) {
        self.tags = 0;
        self.top = 0;
    }
}

/// FSCALE: a * 2^trunc(b).
fn fscale(a: F80, b: F80, cw: u16, st: &mut Status) -> Option<F80> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return float::invalid(cw, st);
    }
    if a.is_nan() || b.is_nan() {
        return float::nan_result(a, b, cw, st);
    }
    if cb == Class::Inf {
        if (ca == Class::Zero && !b.sign()) || (ca == Class::Inf && b.sign()) {
            return float::invalid(cw, st);
        }
        if !float::denormal_check(a, a, cw, st) {
            return None;
        }
        if ca == Class::Zero || ca == Class::Inf {
            return Some(a);
        }
        return Some(if b.sign() { F80::zero(a.sign()) } else { F80::inf(a.sign()) });
    }
    if !float::denormal_check(a, b, cw, st) {
        return None;
    }
    if ca == Class::Zero || ca == Class::Inf {
        return Some(a);
    }
    // trunc(b), clamped: anything beyond +-2^17 over/underflows everything anyway.
    let n: i64 = if cb == Class::Zero {
        0
    } else {
        let (s, e, m) = b.unpack();
        let ue = e - float::BIAS;
        let mag = if ue < 0 {
            0
        } else if ue >= 20 {
            1 << 20
        } else {
            (m >> (63 - ue)) as i64
        };
        if s {
            -mag
        } else {
            mag
        }
    };
    if cb == Class::Zero {
        return Some(a.canonical());
    }
    let (s, e, m) = a.unpack();
    Some(float::round_f80(s, e + n as i32, (m as u128) << 64, 64, cw, st))
}

impl FpuState {
    pub fn fxsave<M: FpuMemory>(&self, ea: u32, mem: &mut M) -> FpuOutcome {
        match env::fxsave(self, ea, mem) {
            Ok(()) => FpuOutcome::Done,
            Err(_) => FpuOutcome::MemFault,
        }
    }
    pub fn fxrstor<M: FpuMemory>(&mut self, ea: u32, mem: &mut M) -> FpuOutcome {
        match env::fxrstor(self, ea, mem) {
            Ok(()) => FpuOutcome::Done,
            Err(_) => FpuOutcome::MemFault,
        }
    }
}

// Silence "unused" for flags only referenced in some cfgs.
const _: u16 = PE;
