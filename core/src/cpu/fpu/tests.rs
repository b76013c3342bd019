//! Differential tests against the host's own x87/MMX unit.
//!
//! Each test case is a short program of real instruction bytes. The same bytes are run natively
//! (copied to an executable page and called with RDI -> a memory buffer; memory operands are
//! `[rdi + disp32]`) and fed, instruction by instruction, to [`FpuState`] against a copy of the
//! buffer. Every program ends with FNSAVE, so the whole x87 state (control/status/tag words and all
//! eight registers) lands in memory; the two memory images must then be identical, except for the
//! instruction/operand pointers, which name host addresses.

use super::float::F80;
use super::*;
use std::arch::asm;

const MEM: usize = 2048;
const O_CW: u32 = 0;
const O_A: u32 = 16;
const O_B: u32 = 32;
const O_C: u32 = 48;
const O_R: u32 = 64;
const O_EFL: u32 = 128;
const O_EFLIN: u32 = 136;
const O_SAVE: u32 = 256;
const O_FXS: u32 = 1024;
const O_SAVE2: u32 = 1536;
const O_STATUS: u32 = 1664;

#[repr(C, align(64))]
#[derive(Clone)]
struct Buf([u8; MEM]);

struct TestMem<'a>(&'a mut [u8]);
impl FpuMemory for TestMem<'_> {
    fn read(&mut self, off: u32, buf: &mut [u8]) -> Result<(), MemFault> {
        let o = off as usize;
        buf.copy_from_slice(&self.0[o..o + buf.len()]);
        Ok(())
    }
    fn write(&mut self, off: u32, data: &[u8]) -> Result<(), MemFault> {
        let o = off as usize;
        self.0[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Fpu { esc: u8, modrm: u8, ea: Option<u32> },
    /// With an operand-size prefix (16-bit FNSTENV/FLDENV/FNSAVE/FRSTOR layouts).
    Fpu16 { esc: u8, modrm: u8, ea: u32 },
    Mmx { op: u8, modrm: u8, ea: Option<u32> },
    MmxImm { op: u8, modrm: u8, imm: u8 },
    StoreAx(u32),
    LoadEax(u32),
    StoreEax(u32),
    StoreFlags(u32),
    LoadFlags(u32),
    Fxsave(u32),
    Fxrstor(u32),
}

#[derive(Default)]
struct Prog {
    code: Vec<u8>,
    acts: Vec<Act>,
}

impl Prog {
    /// fninit; fldz x8; fninit (all physical registers +0, like a fresh FpuState); fldcw [CW].
    fn new() -> Prog {
        let mut p = Prog::default();
        p.reg(3, 0xE3);
        for _ in 0..8 {
            p.reg(1, 0xEE);
        }
        p.reg(3, 0xE3);
        p.mem(1, 5, O_CW);
        p
    }
    fn reg(&mut self, esc: u8, modrm: u8) -> &mut Self {
        self.code.extend_from_slice(&[0xD8 + esc, modrm]);
        self.acts.push(Act::Fpu { esc, modrm, ea: None });
        self
    }
    fn mem(&mut self, esc: u8, reg: u8, disp: u32) -> &mut Self {
        let modrm = 0x87 | (reg << 3);
        self.code.extend_from_slice(&[0xD8 + esc, modrm]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(Act::Fpu { esc, modrm, ea: Some(disp) });
        self
    }
    fn mem16(&mut self, esc: u8, reg: u8, disp: u32) -> &mut Self {
        let modrm = 0x87 | (reg << 3);
        self.code.extend_from_slice(&[0x66, 0xD8 + esc, modrm]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(Act::Fpu16 { esc, modrm, ea: disp });
        self
    }
    fn mmx_reg(&mut self, op: u8, dst: u8, src: u8) -> &mut Self {
        let modrm = 0xC0 | (dst << 3) | src;
        self.code.extend_from_slice(&[0x0F, op, modrm]);
        self.acts.push(Act::Mmx { op, modrm, ea: None });
        self
    }
    fn mmx_mem(&mut self, op: u8, reg: u8, disp: u32) -> &mut Self {
        let modrm = 0x87 | (reg << 3);
        self.code.extend_from_slice(&[0x0F, op, modrm]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(Act::Mmx { op, modrm, ea: Some(disp) });
        self
    }
    fn mmx_imm(&mut self, op: u8, ext: u8, rm: u8, imm: u8) -> &mut Self {
        let modrm = 0xC0 | (ext << 3) | rm;
        self.code.extend_from_slice(&[0x0F, op, modrm, imm]);
        self.acts.push(Act::MmxImm { op, modrm, imm });
        self
    }
    fn fnstsw_ax(&mut self, disp: u32) -> &mut Self {
        // fnstsw ax; mov [rdi+disp], ax
        self.code.extend_from_slice(&[0xDF, 0xE0, 0x66, 0x89, 0x87]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(Act::Fpu { esc: 7, modrm: 0xE0, ea: None });
        self.acts.push(Act::StoreAx(disp));
        self
    }
    /// mov eax, [rdi+disp]
    fn load_eax(&mut self, disp: u32) -> &mut Self {
        self.code.extend_from_slice(&[0x8B, 0x87]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(Act::LoadEax(disp));
        self
    }
    /// mov [rdi+disp], eax
    fn store_eax(&mut self, disp: u32) -> &mut Self {
        self.code.extend_from_slice(&[0x89, 0x87]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(Act::StoreEax(disp));
        self
    }
    fn store_flags(&mut self, disp: u32) -> &mut Self {
        // pushfq; pop rax; mov [rdi+disp], eax
        self.code.extend_from_slice(&[0x9C, 0x58, 0x89, 0x87]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(Act::StoreFlags(disp));
        self
    }
    fn load_flags(&mut self, disp: u32) -> &mut Self {
        // push qword [rdi+disp]; popfq
        self.code.extend_from_slice(&[0xFF, 0xB7]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.code.push(0x9D);
        self.acts.push(Act::LoadFlags(disp));
        self
    }
    fn fxsave(&mut self, disp: u32, restore: bool) -> &mut Self {
        self.code.extend_from_slice(&[0x0F, 0xAE, if restore { 0x8F } else { 0x87 }]);
        self.code.extend_from_slice(&disp.to_le_bytes());
        self.acts.push(if restore { Act::Fxrstor(disp) } else { Act::Fxsave(disp) });
        self
    }
    /// The program cut after its first `n` actions (code boundaries found by replaying the
    /// builder's byte counts), finished again: to find the first instruction that differs.
    fn prefix(&self, n: usize, ends: &[usize]) -> Prog {
        let mut p = Prog { code: self.code[..ends[n - 1]].to_vec(), acts: self.acts[..n].to_vec() };
        p.finish();
        p
    }
    /// fnsave [SAVE]; ret
    fn finish(&mut self) {
        self.mem(5, 6, O_SAVE);
        self.code.push(0xC3);
    }

    fn run_host(&self, buf: &mut Buf) {
        let page = exec_page();
        assert!(self.code.len() <= 4096);
        unsafe {
            std::ptr::copy_nonoverlapping(self.code.as_ptr(), page, self.code.len());
            let f: extern "C" fn(*mut u8) = std::mem::transmute(page);
            f(buf.0.as_mut_ptr());
        }
    }

    fn run_emu(&self, buf: &mut Buf) -> FpuState {
        let mut s = FpuState::new();
        assert_eq!(s.tag_word(), 0x5555, "power-on tag word");
        let mut eflags: u32 = 0x202;
        let mut gpr = [0u32; 8];
        for a in &self.acts {
            let mut m = TestMem(&mut buf.0);
            let ctx = FpuContext { op32: true, protected: true, cs: 0, eip: 0, ds: 0, eflags };
            let out = match *a {
                Act::Fpu { esc, modrm, ea } => s.execute(esc, modrm, ea, &mut m, &ctx),
                Act::Fpu16 { esc, modrm, ea } => {
                    let ctx = FpuContext { op32: false, ..ctx };
                    s.execute(esc, modrm, Some(ea), &mut m, &ctx)
                }
                Act::Mmx { op, modrm, ea } => s.mmx_execute(op, modrm, ea, &mut m, &mut gpr),
                Act::MmxImm { op, modrm, imm } => s.mmx_shift_imm(op, modrm, imm),
                Act::StoreAx(d) => {
                    m.write(d, &(gpr[0] as u16).to_le_bytes()).unwrap();
                    FpuOutcome::Done
                }
                Act::LoadEax(d) => {
                    let mut b = [0u8; 4];
                    m.read(d, &mut b).unwrap();
                    gpr[0] = u32::from_le_bytes(b);
                    FpuOutcome::Done
                }
                Act::StoreEax(d) => {
                    m.write(d, &gpr[0].to_le_bytes()).unwrap();
                    FpuOutcome::Done
                }
                Act::StoreFlags(d) => {
                    m.write(d, &eflags.to_le_bytes()).unwrap();
                    FpuOutcome::Done
                }
                Act::LoadFlags(d) => {
                    let mut b = [0u8; 4];
                    m.read(d, &mut b).unwrap();
                    eflags = u32::from_le_bytes(b);
                    FpuOutcome::Done
                }
                Act::Fxsave(d) => s.fxsave(d, &mut m),
                Act::Fxrstor(d) => s.fxrstor(d, &mut m),
            };
            match out {
                FpuOutcome::Done => {}
                FpuOutcome::StoreAx(v) => gpr[0] = (gpr[0] & !0xFFFF) | v as u32,
                FpuOutcome::Eflags(f) => eflags = f,
                o => panic!("unexpected outcome {o:?} for {a:?}"),
            }
        }
        s
    }
}

fn exec_page() -> *mut u8 {
    use std::sync::OnceLock;
    thread_local! {
        static PAGE: OnceLock<usize> = const { OnceLock::new() };
    }
    PAGE.with(|p| {
        *p.get_or_init(|| {
            let ret: isize;
            // mmap(NULL, 4096, RWX, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
            unsafe {
                asm!("syscall", inlateout("rax") 9isize => ret, in("rdi") 0usize, in("rsi") 4096usize,
                     in("rdx") 7usize, in("r10") 0x22usize, in("r8") -1isize, in("r9") 0usize,
                     lateout("rcx") _, lateout("r11") _, options(nostack));
            }
            assert!(ret > 0, "mmap failed: {ret}");
            ret as usize
        })
    }) as *mut u8
}

/// Run on both and compare the whole memory image (pointer fields of the FNSAVE image excluded).
fn check(p: &Prog, init: &Buf, what: &dyn Fn() -> String) -> FpuState {
    let mut host = init.clone();
    let mut emu = init.clone();
    p.run_host(&mut host);
    let s = p.run_emu(&mut emu);
    let sv = O_SAVE as usize;
    for b in [&mut host, &mut emu] {
        b.0[sv + 12..sv + 28].fill(0);
        // FXSAVE: FOP/FIP/FCS/FDP/FDS and MXCSR are not modelled against the host.
        let fx = O_FXS as usize;
        b.0[fx + 6..fx + 32].fill(0);
        b.0[fx + 160..fx + 512].fill(0);
    }
    if host.0[..] != emu.0[..] && !amd_denormal_underflow(&host, &emu) {
        let mut msg = String::new();
        for (i, (h, e)) in host.0.iter().zip(emu.0.iter()).enumerate() {
            if h != e {
                msg += &format!("  byte {i:4}: host {h:02x} emu {e:02x}\n");
            }
        }
        let sw_h = u16::from_le_bytes([host.0[sv + 4], host.0[sv + 5]]);
        let sw_e = u16::from_le_bytes([emu.0[sv + 4], emu.0[sv + 5]]);
        let reg = |b: &Buf, i: usize| F80::from_bytes(&b.0[sv + 28 + 10 * i..]);
        panic!(
            "mismatch: {}\nacts {:?}\nsw host {sw_h:04x} emu {sw_e:04x}\nst0 host {:?} emu {:?}\nst1 host {:?} emu {:?}\n{msg}",
            what(),
            p.acts.iter().skip(11).collect::<Vec<_>>(),
            reg(&host, 0),
            reg(&emu, 0),
            reg(&host, 1),
            reg(&emu, 1)
        );
    }
    s
}

/// The host's x87 vendor: the emulator follows Intel; AMD chips differ in a few documented corner
/// cases (docs/fpu.md, "Host vendor differences"), which the tests accept only in their exact form.
fn host_is_amd() -> bool {
    use std::sync::OnceLock;
    static AMD: OnceLock<bool> = OnceLock::new();
    *AMD.get_or_init(|| {
        // CPUID leaf 0 exists on every x86-64 CPU (`__cpuid` is a safe fn on newer toolchains).
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&r.ebx.to_le_bytes());
        v[4..8].copy_from_slice(&r.edx.to_le_bytes());
        v[8..].copy_from_slice(&r.ecx.to_le_bytes());
        &v == b"AuthenticAMD"
    })
}

/// AMD: where Intel passes a denormal operand through unchanged as the result (FSCALE by 0, FPREM
/// of a denormal by infinity, ...), AMD treats the result as tiny and, with UE unmasked, raises
/// underflow and delivers it normalised with the exponent bias-adjusted by +24576 (the unmasked
/// underflow response). True only when `host` is exactly `emu` transformed that way: every other
/// byte equal, SW differing by UE|ES|B only, the changed registers' tags recomputed.
fn amd_denormal_underflow(host: &Buf, emu: &Buf) -> bool {
    const UNDERFLOW: u16 = 0x10 | SW_ES | SW_B;
    if !host_is_amd() {
        return false;
    }
    let sv = O_SAVE as usize;
    let word = |b: &Buf, o: usize| u16::from_le_bytes([b.0[sv + o], b.0[sv + o + 1]]);
    let (sw_h, sw_e) = (word(host, 4), word(emu, 4));
    let cw = word(emu, 0);
    if cw & 0x10 != 0 || sw_e & UNDERFLOW != 0 || sw_h != sw_e | UNDERFLOW {
        return false;
    }
    let top = ((sw_e >> 11) & 7) as usize;
    let mut want = emu.clone();
    let mut changed = false;
    for k in 0..8 {
        let slot = sv + 28 + 10 * k;
        let e = F80::from_bytes(&emu.0[slot..]);
        let phys = (top + k) & 7;
        let tag = (word(emu, 8) >> (2 * phys)) & 3;
        if F80::from_bytes(&host.0[slot..]) == e || tag == 3 || !e.is_denormal() || e.sig == 0 {
            continue;
        }
        // normalise: the denormal's true exponent is 1 - bias; shift the integer bit into place
        let shift = e.sig.leading_zeros() as i32;
        let adjusted = F80 { sig: e.sig << shift, se: (e.se & 0x8000) | (1 - shift + 24576) as u16 };
        want.0[slot..slot + 10].copy_from_slice(&adjusted.to_bytes());
        let tw = word(&want, 8) & !(3 << (2 * phys)); // now a valid (normal) number: tag 00
        want.0[sv + 8..sv + 10].copy_from_slice(&tw.to_le_bytes());
        changed = true;
    }
    want.0[sv + 4..sv + 6].copy_from_slice(&sw_h.to_le_bytes());
    changed && want.0[..] == host.0[..]
}

// ---------------- random operands ----------------

struct Rng(u64);
impl Rng {
    /// Per-test seed, varied by `VESSEL_FPU_SEED` for soaks with fresh operands.
    fn seeded(n: u64) -> Rng {
        let extra: u64 = std::env::var("VESSEL_FPU_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut r = Rng((n ^ extra.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

fn rand_sig(r: &mut Rng) -> u64 {
    let v = r.next() | (1 << 63);
    match r.below(8) {
        0 => 1 << 63,
        1 => u64::MAX,
        // just around the PC=24 / PC=53 / PC=64 rounding points
        2 => (v & !((1u64 << 40) - 1)) | (1u64 << 39) | r.below(3),
        3 => (v & !((1u64 << 11) - 1)) | (1u64 << 10) | r.below(3),
        4 => v | ((1u64 << 40) - 1),
        5 => v & !((1u64 << 11) - 1),
        _ => v,
    }
}

fn rand_f80(r: &mut Rng) -> F80 {
    let s = r.bool();
    match r.below(24) {
        0 => F80::zero(s),
        1 => F80::new(s, 0, r.next() >> (1 + r.below(63))),
        2 => F80::new(s, 0, r.next() | (1 << 63)),
        3 => F80::inf(s),
        4 => F80::new(s, 0x7FFF, r.next() | (3 << 62)),
        5 => F80::new(s, 0x7FFF, ((r.next() & !(3 << 62)) | 1) | (1 << 63)),
        6 if r.bool() => F80::new(s, 0x7FFF, r.next() >> r.below(2)), // pseudo-infinity / pseudo-NaN
        6 => F80::new(s, 1 + r.below(0x7FFE) as u16, r.next() & !(1 << 63)), // unnormal
        7 => F80::new(s, 1 + r.below(70) as u16, rand_sig(r)),
        8 => F80::new(s, 0x7FFE - r.below(70) as u16, rand_sig(r)),
        9..=11 => F80::new(s, 1 + r.below(0x7FFE) as u16, rand_sig(r)),
        // around the f32/f64 exponent limits (for FST m32/m64)
        12 => F80::new(s, (0x3FFF - 126 - 30 + r.below(60)) as u16, rand_sig(r)),
        13 => F80::new(s, (0x3FFF + 127 - 5 + r.below(10)) as u16, rand_sig(r)),
        14 => F80::new(s, (0x3FFF - 1022 - 60 + r.below(90)) as u16, rand_sig(r)),
        15 => F80::new(s, (0x3FFF + 1023 - 5 + r.below(10)) as u16, rand_sig(r)),
        _ => F80::new(s, (0x3FFF - 70 + r.below(140)) as u16, rand_sig(r)),
    }
}

/// A second operand, often close to the first (cancellation, equal exponents, ties).
fn rand_near(r: &mut Rng, a: F80) -> F80 {
    if a.is_nan() && r.below(3) == 0 {
        // NaN pairs with equal significands: the sign / quietness tie-break rules.
        let b = if r.bool() { a.neg() } else { a };
        return match r.below(3) {
            0 => b.quiet(),
            1 => F80 { sig: b.sig & !(1 << 62) | 1, se: b.se },
            _ => b,
        };
    }
    match r.below(4) {
        0 if a.exp() > 0 && a.exp() < 0x7FFF => {
            let e = (a.exp() + r.below(5) as i32 - 2).clamp(1, 0x7FFE);
            let sig = if r.bool() { a.sig ^ (r.next() >> (r.below(64) + 1)) } else { a.sig };
            F80::new(r.bool(), e as u16, sig | (1 << 63))
        }
        1 => {
            let mut b = rand_f80(r);
            if b.exp() > 0 && b.exp() < 0x7FFF && a.exp() > 64 && a.exp() < 0x7FFF - 64 {
                b = F80::new(b.sign(), (a.exp() + r.below(128) as i32 - 64) as u16, b.sig);
            }
            b
        }
        _ => rand_f80(r),
    }
}

fn rand_cw(r: &mut Rng, allow_unmasked: bool) -> u16 {
    let pc = [0u16, 2, 3, 3, 1][r.below(5) as usize];
    let rc = r.below(4) as u16;
    let masks = if allow_unmasked && r.below(4) == 0 { r.next() as u16 & 0x3F } else { 0x3F };
    masks | (pc << 8) | (rc << 10) | 0x40
}

fn buf_with(cw: u16, a: F80, b: F80, c: F80) -> Buf {
    let mut buf = Buf([0u8; MEM]);
    buf.0[O_CW as usize..][..2].copy_from_slice(&cw.to_le_bytes());
    buf.0[O_A as usize..][..10].copy_from_slice(&a.to_bytes());
    buf.0[O_B as usize..][..10].copy_from_slice(&b.to_bytes());
    buf.0[O_C as usize..][..10].copy_from_slice(&c.to_bytes());
    buf
}

/// Cases per instruction; `VESSEL_FPU_CASES=200000` for a soak.
fn cases() -> usize {
    std::env::var("VESSEL_FPU_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20000)
}

/// ST0 = A, ST1 = B, then `op` (register form), FNSAVE.
fn binop_case(esc: u8, modrm: u8, seed: u64, unmasked: bool) {
    let mut r = Rng::seeded(seed);
    for i in 0..cases() {
        let a = rand_f80(&mut r);
        let b = rand_near(&mut r, a);
        let cw = rand_cw(&mut r, unmasked);
        let mut p = Prog::new();
        p.mem(3, 5, O_B).mem(3, 5, O_A).reg(esc, modrm);
        p.finish();
        check(&p, &buf_with(cw, a, b, F80::ZERO), &|| {
            format!("case {i} op {:02x} {modrm:02x} cw {cw:04x} a {a:?} b {b:?}", 0xD8 + esc)
        });
    }
}

#[test]
fn fadd_fsub_host() {
    binop_case(0, 0xC1, 1, true); // FADD ST0, ST1
    binop_case(0, 0xE1, 2, true); // FSUB ST0, ST1
    binop_case(0, 0xE9, 3, true); // FSUBR ST0, ST1
    binop_case(6, 0xC1, 4, true); // FADDP ST1, ST0
    binop_case(4, 0xE1, 5, false); // DC E1: FSUBR ST1, ST0 (ST1 = ST0 - ST1)
    binop_case(6, 0xE9, 6, false); // FSUBP ST1, ST0
}

#[test]
fn fmul_fdiv_host() {
    binop_case(0, 0xC9, 11, true); // FMUL
    binop_case(0, 0xF1, 12, true); // FDIV ST0, ST1
    binop_case(0, 0xF9, 13, true); // FDIVR ST0, ST1
    binop_case(4, 0xF9, 14, false); // DC F9: FDIV ST1, ST0 (ST1 = ST1 / ST0)
    binop_case(6, 0xF1, 15, false); // FDIVRP ST1, ST0
}

#[test]
fn compare_host() {
    let mut r = Rng::seeded(21);
    let ops: [(u8, u8); 8] = [(0, 0xD1), (0, 0xD9), (6, 0xD9), (5, 0xE1), (5, 0xE9), (2, 0xE9), (1, 0xE4), (1, 0xE5)];
    for i in 0..cases() {
        let a = rand_f80(&mut r);
        let b = if r.below(4) == 0 { a } else { rand_near(&mut r, a) };
        let cw = rand_cw(&mut r, true);
        let (esc, modrm) = ops[i % ops.len()];
        let mut p = Prog::new();
        p.mem(3, 5, O_B).mem(3, 5, O_A).reg(esc, modrm);
        p.fnstsw_ax(O_R);
        p.finish();
        check(&p, &buf_with(cw, a, b, F80::ZERO), &|| format!("case {i} {esc} {modrm:02x} cw {cw:04x} a {a:?} b {b:?}"));
    }
}

#[test]
fn fcomi_fcmov_host() {
    let mut r = Rng::seeded(22);
    // FCOMI, FUCOMI, FCOMIP, FUCOMIP, then FCMOVcc on random flags.
    let ops: [(u8, u8); 4] = [(3, 0xF1), (3, 0xE9), (7, 0xF1), (7, 0xE9)];
    for i in 0..cases() {
        let a = rand_f80(&mut r);
        let b = if r.below(4) == 0 { a } else { rand_near(&mut r, a) };
        let cw = rand_cw(&mut r, true);
        let mut buf = buf_with(cw, a, b, F80::ZERO);
        let fl: u64 = 0x202 | (r.next() & 0x8D5);
        buf.0[O_EFLIN as usize..][..8].copy_from_slice(&fl.to_le_bytes());
        let mut p = Prog::new();
        p.mem(3, 5, O_B).mem(3, 5, O_A).load_flags(O_EFLIN);
        if i % 2 == 0 {
            let (esc, modrm) = ops[(i / 2) % 4];
            p.reg(esc, modrm);
        } else {
            let cc = r.below(8) as u8;
            p.reg(2 + (cc >> 2), 0xC1 | ((cc & 3) << 3));
        }
        p.store_flags(O_EFL);
        p.finish();
        let mut host = buf.clone();
        let mut emu = buf.clone();
        p.run_host(&mut host);
        p.run_emu(&mut emu);
        let e = O_EFL as usize;
        for b in [&mut host, &mut emu] {
            let f = u32::from_le_bytes(b.0[e..e + 4].try_into().unwrap()) & 0x8D5;
            b.0[e..e + 4].copy_from_slice(&f.to_le_bytes());
        }
        let mut h2 = buf.clone();
        h2.0.copy_from_slice(&host.0);
        let sv = O_SAVE as usize;
        host.0[sv + 12..sv + 28].fill(0);
        emu.0[sv + 12..sv + 28].fill(0);
        assert!(host.0[..] == emu.0[..], "case {i} cw {cw:04x} a {a:?} b {b:?} fl {fl:x}: host eflags {:x?} emu {:x?}\nhost sw {:x?} emu {:x?}",
            &host.0[e..e + 4], &emu.0[e..e + 4], &host.0[sv + 4..sv + 6], &emu.0[sv + 4..sv + 6]);
    }
}

fn unop_case(modrm: u8, seed: u64, n: usize) {
    let mut r = Rng::seeded(seed);
    for i in 0..n {
        let a = rand_f80(&mut r);
        let b = rand_near(&mut r, a);
        let cw = rand_cw(&mut r, true);
        let mut p = Prog::new();
        p.mem(3, 5, O_B).mem(3, 5, O_A).reg(1, modrm);
        p.finish();
        check(&p, &buf_with(cw, a, b, F80::ZERO), &|| format!("case {i} D9 {modrm:02x} cw {cw:04x} a {a:?} b {b:?}"));
    }
}

#[test]
fn sqrt_rndint_scale_xtract_host() {
    unop_case(0xFA, 31, cases()); // FSQRT
    unop_case(0xFC, 32, cases()); // FRNDINT
    unop_case(0xFD, 33, cases()); // FSCALE
    unop_case(0xF4, 34, cases()); // FXTRACT
    unop_case(0xE0, 35, 300); // FCHS
    unop_case(0xE1, 36, 300); // FABS
    unop_case(0xF6, 37, 100); // FDECSTP
    unop_case(0xF7, 38, 100); // FINCSTP
}

#[test]
fn fprem_host() {
    unop_case(0xF8, 41, cases()); // FPREM
    unop_case(0xF5, 42, cases()); // FPREM1
}

#[test]
fn constants_host() {
    let mut r = Rng::seeded(51);
    for i in 0..200 {
        let cw = rand_cw(&mut r, false);
        let k = 0xE8 + (i % 7) as u8;
        let mut p = Prog::new();
        p.reg(1, k);
        p.finish();
        check(&p, &buf_with(cw, F80::ZERO, F80::ZERO, F80::ZERO), &|| format!("D9 {k:02x} cw {cw:04x}"));
    }
}

/// FST/FSTP m32/m64/m80, FIST(P) m16/m32/m64, FBSTP, and the matching loads.
#[test]
fn load_store_host() {
    let mut r = Rng::seeded(61);
    // (esc, reg) stores
    let stores: [(u8, u8); 10] = [(1, 2), (1, 3), (5, 2), (5, 3), (3, 7), (7, 2), (3, 2), (3, 3), (7, 7), (7, 6)];
    for i in 0..cases() * 2 {
        let a = rand_f80(&mut r);
        let cw = rand_cw(&mut r, true);
        let (esc, reg) = stores[i % stores.len()];
        let mut p = Prog::new();
        p.mem(3, 5, O_A).mem(esc, reg, O_R);
        p.finish();
        check(&p, &buf_with(cw, a, F80::ZERO, F80::ZERO), &|| format!("case {i} store {esc}/{reg} cw {cw:04x} a {a:?}"));
    }
    // loads from random bit patterns: FLD m32/m64, FILD m16/m32/m64, FBLD (valid BCD)
    let loads: [(u8, u8); 6] = [(1, 0), (5, 0), (7, 0), (3, 0), (7, 5), (7, 4)];
    for i in 0..cases() {
        let cw = rand_cw(&mut r, true);
        let (esc, reg) = loads[i % loads.len()];
        let mut buf = buf_with(cw, F80::ZERO, F80::ZERO, F80::ZERO);
        let mut v = r.next();
        if r.below(3) == 0 {
            // f32/f64 specials: denormals, NaNs, infinities
            v = match (esc, r.below(3)) {
                (1, 0) => v & 0x807F_FFFF,
                (1, 1) => v | 0x7F80_0000,
                (5, 0) => v & 0x800F_FFFF_FFFF_FFFF,
                (5, 1) => v | 0x7FF0_0000_0000_0000,
                _ => v >> r.below(64),
            };
        }
        if (esc, reg) == (7, 4) {
            let mut bcd = [0u8; 10];
            for b in bcd.iter_mut().take(9) {
                *b = ((r.below(10) as u8) << 4) | r.below(10) as u8;
            }
            bcd[9] = if r.bool() { 0x80 } else { 0 };
            buf.0[O_R as usize..][..10].copy_from_slice(&bcd);
        } else {
            buf.0[O_R as usize..][..8].copy_from_slice(&v.to_le_bytes());
        }
        let mut p = Prog::new();
        p.mem(esc, reg, O_R);
        p.finish();
        check(&p, &buf, &|| format!("case {i} load {esc}/{reg} cw {cw:04x} v {v:x}"));
    }
}

/// Memory-operand arithmetic: FADD..FDIVR, FCOM(P) with m32real/m64real/m32int/m16int.
#[test]
fn mem_arith_host() {
    let mut r = Rng::seeded(71);
    for i in 0..cases() * 2 {
        let a = rand_f80(&mut r);
        let cw = rand_cw(&mut r, true);
        let esc = [0u8, 4, 2, 6][i % 4];
        let reg = r.below(8) as u8;
        let mut buf = buf_with(cw, a, F80::ZERO, F80::ZERO);
        let mut v = r.next();
        if r.bool() {
            // operand derived from A, so results are interesting
            let mut st = float::Status::default();
            v = match esc {
                0 => float::to_ieee(a, 23, 8, 0x37F, &mut st).unwrap_or(v),
                4 => float::to_ieee(a, 52, 11, 0x37F, &mut st).unwrap_or(v),
                _ => v >> r.below(64),
            };
        }
        buf.0[O_R as usize..][..8].copy_from_slice(&v.to_le_bytes());
        let mut p = Prog::new();
        p.mem(3, 5, O_A).mem(esc, reg, O_R);
        p.finish();
        check(&p, &buf, &|| format!("case {i} {:02x}/{reg} cw {cw:04x} a {a:?} v {v:x}", 0xD8 + esc));
    }
}

/// Stack faults, FXCH, FFREE, FLD ST(i), FST ST(i), FNSTSW, FNCLEX, tags, FXAM on empty.
#[test]
fn stack_and_control_host() {
    let mut r = Rng::seeded(81);
    for i in 0..cases() {
        let cw = rand_cw(&mut r, false); // all masked: a pending unmasked exception would trap the host
        let a = rand_f80(&mut r);
        let b = rand_f80(&mut r);
        let mut p = Prog::new();
        let pushes = r.below(10);
        for k in 0..pushes {
            p.mem(3, 5, if k % 2 == 0 { O_A } else { O_B });
        }
        for _ in 0..4 {
            let i = r.below(8) as u8;
            match r.below(13) {
                0 => p.reg(1, 0xC8 | i),        // FXCH
                1 => p.reg(5, 0xC0 | i),        // FFREE
                2 => p.reg(1, 0xC0 | i),        // FLD ST(i)
                3 => p.reg(5, 0xD0 | i),        // FST ST(i)
                4 => p.reg(5, 0xD8 | i),        // FSTP ST(i)
                5 => p.reg(1, 0xE5),            // FXAM
                6 => p.reg(0, 0xC0 | i),        // FADD ST0, ST(i)
                7 => p.reg(7, 0xC0 | i),        // FFREEP
                8 => p.reg(1, 0xE8 | (i % 7)),  // constants
                9 => p.reg(3, 0xE2),            // FNCLEX
                10 => p.reg(6, 0xD9),           // FCOMPP
                // undocumented aliases: FSTP1, FXCH4, FXCH7, FSTP8, FSTP9, FCOM2, FCOMP3, FCOMP5
                _ => {
                    let (esc, base) = [(1u8, 0xD8u8), (5, 0xC8), (7, 0xC8), (7, 0xD0), (7, 0xD8), (4, 0xD0), (4, 0xD8), (6, 0xD0)]
                        [r.below(8) as usize];
                    p.reg(esc, base | i)
                }
            };
            p.fnstsw_ax(O_R + 2 * r.below(4) as u32);
        }
        p.finish();
        check(&p, &buf_with(cw, a, b, F80::ZERO), &|| format!("case {i} cw {cw:04x}"));
    }
}

#[test]
fn env_and_fxsave_host() {
    let mut r = Rng::seeded(91);
    for i in 0..500 {
        let cw = rand_cw(&mut r, true) | 1;
        let a = rand_f80(&mut r);
        let b = rand_f80(&mut r);
        let mut p = Prog::new();
        for k in 0..r.below(9) {
            p.mem(3, 5, if k % 2 == 0 { O_A } else { O_B });
        }
        p.reg(5, 0xC0 | r.below(8) as u8); // FFREE
        // FNSTENV to R area, FLDENV back, FNSTCW, FXSAVE/FXRSTOR round trip.
        p.mem(1, 6, O_R);
        p.mem(1, 4, O_R);
        p.mem(1, 7, O_EFL);
        // FLDCW of an arbitrary word (reserved bits, PC=01), read back with FNSTCW
        p.mem(1, 5, O_C).mem(1, 7, O_EFL + 2).mem(1, 5, O_CW);
        p.fxsave(O_FXS, false);
        p.reg(3, 0xE3);
        p.fxsave(O_FXS, true);
        p.finish();
        let mut init = buf_with(cw, a, b, F80::ZERO);
        let odd_cw = (r.next() as u16) | 0x3F;
        init.0[O_C as usize..][..2].copy_from_slice(&odd_cw.to_le_bytes());
        let mut host = init.clone();
        let mut emu = init.clone();
        p.run_host(&mut host);
        p.run_emu(&mut emu);
        for m in [&mut host, &mut emu] {
            let rr = O_R as usize;
            m.0[rr + 12..rr + 28].fill(0);
            let sv = O_SAVE as usize;
            m.0[sv + 12..sv + 28].fill(0);
            let fx = O_FXS as usize;
            m.0[fx + 6..fx + 32].fill(0);
            m.0[fx + 160..fx + 512].fill(0);
        }
        assert!(host.0[..] == emu.0[..], "case {i}: {:?}", host.0.iter().zip(emu.0.iter()).enumerate().filter(|(_, (h, e))| h != e).take(20).collect::<Vec<_>>());
    }
}

#[test]
fn mmx_host() {
    let mut r = Rng::seeded(101);
    let ops: &[u8] = &[
        0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6F, 0x74, 0x75, 0x76, 0xD1, 0xD2,
        0xD3, 0xD5, 0xD8, 0xD9, 0xDB, 0xDC, 0xDD, 0xDF, 0xE1, 0xE2, 0xE5, 0xE8, 0xE9, 0xEB, 0xEC, 0xED, 0xEF, 0xF1,
        0xF2, 0xF3, 0xF5, 0xF8, 0xF9, 0xFA, 0xFC, 0xFD, 0xFE,
    ];
    for i in 0..cases() * 2 {
        let mut buf = buf_with(0x37F, F80::ZERO, F80::ZERO, F80::ZERO);
        let rv = |r: &mut Rng| -> u64 {
            match r.below(4) {
                0 => r.next() & 0x8080_8080_8080_8080 | (r.next() & 0x0101_0101_0101_0101),
                1 => r.below(80),
                _ => r.next(),
            }
        };
        let (x, y) = (rv(&mut r), rv(&mut r));
        buf.0[O_A as usize..][..8].copy_from_slice(&x.to_le_bytes());
        buf.0[O_B as usize..][..8].copy_from_slice(&y.to_le_bytes());
        let op = ops[i % ops.len()];
        let (d, s) = (r.below(8) as u8, r.below(8) as u8);
        let mut p = Prog::new();
        if r.bool() {
            // leave some x87 state behind first
            p.mem(3, 5, O_C);
        }
        p.mmx_mem(0x6F, d, O_A).mmx_mem(0x6F, s, O_B);
        match r.below(4) {
            0 => p.mmx_mem(op, d, O_B),
            1 => {
                let ext = [2u8, 4, 6][r.below(3) as usize];
                let (o, ext) = match r.below(3) {
                    0 => (0x71, ext),
                    1 => (0x72, ext),
                    _ => (0x73, if ext == 4 { 2 } else { ext }),
                };
                p.mmx_imm(o, ext, d, r.below(70) as u8)
            }
            _ => p.mmx_reg(op, d, s),
        };
        p.mmx_mem(0x7F, d, O_R).mmx_mem(0x7E, s, O_R + 8);
        p.mmx_mem(0x6E, s, O_A);
        if r.bool() {
            // MOVD with a general register: movd eax, mmD; mov [R+12], eax; mov eax, [B]; movd mmS, eax
            p.mmx_reg(0x7E, d, 0).store_eax(O_R + 12).load_eax(O_B).mmx_reg(0x6E, s, 0);
        }
        if r.bool() {
            p.code.extend_from_slice(&[0x0F, 0x77]);
            p.acts.push(Act::Mmx { op: 0x77, modrm: 0, ea: None });
        }
        p.finish();
        check(&p, &buf, &|| format!("case {i} op {op:02x} d {d} s {s} x {x:x} y {y:x}"));
    }
}

/// Transcendentals: host and emulator within 1 ulp (round to nearest, 64-bit significand), with
/// identical flags other than PE/C1 (which follow the rounding of that last ulp).
fn trans_case(modrm: u8, seed: u64, gen: &dyn Fn(&mut Rng) -> (F80, F80)) {
    let mut r = Rng::seeded(seed);
    let mut max_ulps = 0u64;
    let mut inexact_cases = 0;
    for i in 0..cases() {
        // Mostly in-domain operands; some special ones (zeros, infinities, NaNs, denormals...).
        let (mut a, mut b) = gen(&mut r);
        if r.below(8) == 0 {
            a = rand_f80(&mut r);
        }
        if r.below(8) == 0 {
            b = rand_f80(&mut r);
        }
        let cw = rand_cw(&mut r, true) | 0x300; // precision control does not apply here
        let mut p = Prog::new();
        // Usually ST0 = a, ST1 = b; sometimes an empty, short or full stack (stack faults).
        let depth = if r.below(8) == 0 { r.below(9) } else { 2 };
        for k in 0..depth {
            p.mem(3, 5, if k + 2 >= depth { if k + 1 == depth { O_A } else { O_B } } else { O_C });
        }
        p.reg(1, modrm);
        p.finish();
        let init = buf_with(cw, a, b, rand_f80(&mut r));
        let mut host = init.clone();
        let mut emu = init.clone();
        p.run_host(&mut host);
        p.run_emu(&mut emu);
        let sv = O_SAVE as usize;
        let sw_h = u16::from_le_bytes([host.0[sv + 4], host.0[sv + 5]]);
        let sw_e = u16::from_le_bytes([emu.0[sv + 4], emu.0[sv + 5]]);
        let mut differs = false;
        for k in 0..8 {
            let h = F80::from_bytes(&host.0[sv + 28 + 10 * k..]);
            let e = F80::from_bytes(&emu.0[sv + 28 + 10 * k..]);
            let d = ulps(h, e);
            max_ulps = max_ulps.max(d);
            differs |= d != 0;
            assert!(d <= 1, "case {i} D9 {modrm:02x} cw {cw:04x} a {a:?} b {b:?}: st{k} host {h:?} emu {e:?}");
        }
        // Identical results must come with identical exception flags; a last-ulp difference may change
        // PE (exactness), C1 (rounding direction) and UE (tininess at the boundary).
        // C1 ("rounded up") reflects the chip's internal approximation, which may sit on the other
        // side of the same rounded result: never compared for transcendentals.
        let mask = if differs { !(0x30u16 | SW_C1 | SW_ES | SW_B) } else { !SW_C1 };
        if differs {
            inexact_cases += 1;
            if let Ok(path) = std::env::var("VESSEL_FPU_DUMP") {
                use std::io::Write;
                let h = F80::from_bytes(&host.0[sv + 28..]);
                let e = F80::from_bytes(&emu.0[sv + 28..]);
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
                writeln!(f, "{modrm:02x} {cw:04x} {:04x} {:016x} {:04x} {:016x} {:04x} {:016x} {:04x} {:016x}", a.se, a.sig, b.se, b.sig, h.se, h.sig, e.se, e.sig).unwrap();
            }
        }
        assert_eq!(sw_h & mask, sw_e & mask, "case {i} D9 {modrm:02x} cw {cw:04x} a {a:?} b {b:?}: sw host {sw_h:04x} emu {sw_e:04x}");
        // The tag of a non-empty register follows from its value: where the values differ by the
        // allowed ulp (e.g. the smallest denormal vs zero), the tags may too; emptiness may not.
        let tw = |b: &Buf| u16::from_le_bytes([b.0[sv + 8], b.0[sv + 9]]);
        let top = ((sw_e >> 11) & 7) as usize;
        let mut tag_mask = 0xFFFFu16;
        for k in 0..8 {
            let (h, e) = (F80::from_bytes(&host.0[sv + 28 + 10 * k..]), F80::from_bytes(&emu.0[sv + 28 + 10 * k..]));
            let phys = (top + k) & 7;
            let nonempty = |b: &Buf| (tw(b) >> (2 * phys)) & 3 != 3;
            if h != e && nonempty(&host) && nonempty(&emu) {
                tag_mask &= !(3 << (2 * phys));
            }
        }
        assert_eq!(tw(&host) & tag_mask, tw(&emu) & tag_mask, "case {i} D9 {modrm:02x} cw {cw:04x} a {a:?} b {b:?}: tag word");
    }
    eprintln!("D9 {modrm:02x}: max difference {max_ulps} ulp, {inexact_cases} of {} cases not bit-identical", cases());
}

fn ulps(a: F80, b: F80) -> u64 {
    if a == b {
        return 0;
    }
    if a.sign() != b.sign() || a.exp() == 0x7FFF || b.exp() == 0x7FFF {
        return u64::MAX;
    }
    // Monotonic integer image of the magnitude.
    let key = |x: F80| if x.exp() == 0 { x.sig as u128 } else { (x.exp() as u128) << 63 | (x.sig & !(1u64 << 63)) as u128 };
    (key(a) as i128 - key(b) as i128).unsigned_abs().min(u64::MAX as u128) as u64
}

fn small(r: &mut Rng, lo: i32, hi: i32) -> F80 {
    let e = 0x3FFF + lo + r.below((hi - lo + 1) as u64) as i32;
    F80::new(r.bool(), e as u16, rand_sig(r))
}

#[test]
fn transcendental_host() {
    trans_case(0xF0, 111, &|r| (small(r, -70, -1), F80::ZERO)); // F2XM1
    trans_case(0xFE, 112, &|r| (small(r, -40, 62), F80::ZERO)); // FSIN
    trans_case(0xFF, 113, &|r| (small(r, -40, 62), F80::ZERO)); // FCOS
    trans_case(0xFB, 114, &|r| (small(r, -40, 62), F80::ZERO)); // FSINCOS
    trans_case(0xF2, 115, &|r| (small(r, -40, 62), F80::ZERO)); // FPTAN
    trans_case(0xF3, 116, &|r| (small(r, -60, 60), small(r, -60, 60))); // FPATAN
    trans_case(0xF1, 117, &|r| (small(r, -200, 200).with_sign(false), small(r, -60, 60))); // FYL2X
    trans_case(0xF9, 118, &|r| (small(r, -80, -3), small(r, -60, 60))); // FYL2XP1
}


/// FNSTENV/FLDENV/FNSAVE/FRSTOR in the 16-bit protected layout (operand-size prefix) and FRSTOR /
/// FXRSTOR of random images (tag word handling, TOP, register order).
#[test]
fn env_random_images_host() {
    let mut r = Rng::seeded(92);
    for i in 0..cases() {
        let cw = 0x3F | (r.below(4) as u16) << 8 | (r.below(4) as u16) << 10 | 0x40;
        let sw = (r.next() as u16) & !(0x80 | 0x8000 | 0x3F) | (r.next() as u16 & 0x3F);
        let tw = r.next() as u16;
        let regs: Vec<F80> = (0..8).map(|_| rand_f80(&mut r)).collect();
        let mut buf = buf_with(cw, F80::ZERO, F80::ZERO, F80::ZERO);
        let op16 = r.bool();
        let fx = r.below(3) == 0;
        let base = O_R as usize;
        if fx {
            let b = &mut buf.0[O_FXS as usize..];
            b[0..2].copy_from_slice(&cw.to_le_bytes());
            b[2..4].copy_from_slice(&sw.to_le_bytes());
            b[4] = tw as u8;
            b[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
            for (k, v) in regs.iter().enumerate() {
                b[32 + 16 * k..42 + 16 * k].copy_from_slice(&v.to_bytes());
            }
        } else if op16 {
            let b = &mut buf.0[base..];
            b[0..2].copy_from_slice(&cw.to_le_bytes());
            b[2..4].copy_from_slice(&sw.to_le_bytes());
            b[4..6].copy_from_slice(&tw.to_le_bytes());
            for (k, v) in regs.iter().enumerate() {
                b[14 + 10 * k..24 + 10 * k].copy_from_slice(&v.to_bytes());
            }
        } else {
            let b = &mut buf.0[base..];
            b[0..4].copy_from_slice(&(cw as u32).to_le_bytes());
            b[4..8].copy_from_slice(&(sw as u32).to_le_bytes());
            b[8..12].copy_from_slice(&(tw as u32).to_le_bytes());
            for (k, v) in regs.iter().enumerate() {
                b[28 + 10 * k..38 + 10 * k].copy_from_slice(&v.to_bytes());
            }
        }
        let mut p = Prog::new();
        if fx {
            p.fxsave(O_FXS, true);
        } else if op16 {
            p.mem16(5, 4, O_R); // FRSTOR m94
            p.mem16(1, 6, O_C + 64); // FNSTENV m14
        } else {
            p.mem(5, 4, O_R);
        }
        p.finish();
        let init = buf.clone();
        let mut host = init.clone();
        let mut emu = init.clone();
        p.run_host(&mut host);
        p.run_emu(&mut emu);
        for m in [&mut host, &mut emu] {
            let sv = O_SAVE as usize;
            m.0[sv + 12..sv + 28].fill(0);
            let e = (O_C + 64) as usize;
            m.0[e + 6..e + 14].fill(0);
        }
        assert!(host.0[..] == emu.0[..], "case {i} fx {fx} op16 {op16} cw {cw:04x} sw {sw:04x} tw {tw:04x}: {:?}",
            host.0.iter().zip(emu.0.iter()).enumerate().filter(|(_, (h, e))| h != e).take(20).collect::<Vec<_>>());
    }
}

/// Real-mode layouts cannot run on the host (long mode): check that FNSAVE/FRSTOR and
/// FNSTENV/FLDENV round-trip every field in both operand sizes, with the pointers stored as
/// 20-bit linear addresses (segment * 16 + offset) and the opcode kept.
#[test]
fn real_mode_env_round_trip() {
    let mut r = Rng::seeded(131);
    for _ in 0..2000 {
        let mut s = FpuState::new();
        for i in 0..8 {
            s.regs[i] = rand_f80(&mut r);
        }
        s.top = r.below(8) as u8;
        s.tags = r.next() as u8;
        s.cw = (r.next() as u16 & 0x1F3F) | 0x40;
        s.sw = r.next() as u16 & !(7 << 11);
        s.update_es();
        s.fcs = r.next() as u16;
        s.fip = r.below(0x10000) as u32;
        s.fds = r.next() as u16;
        s.fdp = r.below(0x10000) as u32;
        s.fop = r.next() as u16 & 0x7FF;
        for op32 in [false, true] {
            let ctx = FpuContext { op32, protected: false, ..Default::default() };
            let mut mem = vec![0u8; 256];
            let mut saver = s.clone();
            assert_eq!(saver.execute(5, 0x36, Some(0), &mut TestMem(&mut mem), &ctx), FpuOutcome::Done); // FNSAVE
            assert_eq!((saver.tags, saver.cw), (0, 0x37F), "FNSAVE ends with FNINIT");
            let mut t = FpuState::new();
            t.finit();
            assert_eq!(t.execute(5, 0x26, Some(0), &mut TestMem(&mut mem), &ctx), FpuOutcome::Done); // FRSTOR
            let lin = |seg: u16, off: u32| (seg as u32 * 16 + off) & if op32 { u32::MAX } else { 0xF_FFFF };
            assert_eq!(t.fip, lin(s.fcs, s.fip));
            assert_eq!(t.fdp, lin(s.fds, s.fdp));
            assert_eq!(t.fop, s.fop);
            assert_eq!((t.cw, t.sw, t.top, t.tags, t.regs), (s.cw, s.sw, s.top, s.tags, s.regs));
            // FNSTENV/FLDENV: the environment alone, same encoding.
            let mut e = vec![0u8; 32];
            let mut u = s.clone();
            u.execute(1, 0x36, Some(0), &mut TestMem(&mut e), &ctx);
            let mut v = FpuState::new();
            v.execute(1, 0x26, Some(0), &mut TestMem(&mut e), &ctx);
            assert_eq!((v.fip, v.fdp, v.fop, v.sw, v.top, v.tags), (t.fip, t.fdp, t.fop, s.sw, s.top, s.tags));
            assert_eq!(v.cw, s.cw);
            assert_eq!(u.cw, s.cw | 0x3F, "FNSTENV masks all exceptions after storing");
        }
    }
}

/// A memory fault must leave the FPU untouched (the instruction is restarted after #PF/#GP), and
/// `operand_bytes` must cover exactly what the instruction touches.
#[test]
fn memory_faults_are_restartable() {
    struct Faulting {
        fail_reads: bool,
        touched: u32,
    }
    impl FpuMemory for Faulting {
        fn read(&mut self, off: u32, buf: &mut [u8]) -> Result<(), MemFault> {
            self.touched = self.touched.max(off + buf.len() as u32);
            if self.fail_reads {
                return Err(MemFault);
            }
            buf.fill(0x41);
            Ok(())
        }
        fn write(&mut self, off: u32, data: &[u8]) -> Result<(), MemFault> {
            self.touched = self.touched.max(off + data.len() as u32);
            Err(MemFault)
        }
    }
    let mut r = Rng::seeded(141);
    for _ in 0..200 {
        let mut s = FpuState::new();
        for i in 0..8 {
            s.regs[i] = rand_f80(&mut r);
        }
        s.top = r.below(8) as u8;
        s.tags = r.next() as u8;
        s.cw = (r.next() as u16 & 0x1F3F) | 0x40;
        s.sw = r.next() as u16 & !(7 << 11) & !0x80;
        s.update_es();
        for esc in 0..8u8 {
            for reg in 0..8u8 {
                let modrm = reg << 3 | 6;
                for op32 in [false, true] {
                    for fail_reads in [false, true] {
                        let ctx = FpuContext { op32, protected: true, ..Default::default() };
                        let mut t = s.clone();
                        let mut m = Faulting { fail_reads, touched: 0 };
                        let out = t.execute(esc, modrm, Some(0), &mut m, &ctx);
                        let size = operand_bytes(esc, modrm, op32);
                        match out {
                            FpuOutcome::MemFault => assert_eq!(t, s, "D{:X} /{reg}: state changed on a fault", 8 + esc),
                            FpuOutcome::Unimplemented => assert_eq!(size, 0, "D{:X} /{reg}", 8 + esc),
                            _ => {}
                        }
                        if m.touched != 0 {
                            assert_eq!(m.touched, size, "D{:X} /{reg} op32 {op32}: bytes accessed", 8 + esc);
                        }
                    }
                }
            }
        }
    }
}

/// Random programs: sequences of any (non-transcendental) x87 instruction in register and
/// memory forms, on a shared stack, with random (masked) control words and EFLAGS; the final
/// FNSAVE image and every stored operand must match the host.
#[test]
fn random_programs_host() {
    let mut r = Rng::seeded(151);
    // Register forms the host and we both implement (transcendentals excluded: 1-ulp tolerance).
    let trans = [0xF0u8, 0xF1, 0xF2, 0xF3, 0xF9, 0xFB, 0xFE, 0xFF];
    let mut regs: Vec<(u8, u8)> = Vec::new();
    for esc in 0..8u8 {
        for modrm in 0xC0..=0xFFu8 {
            if (esc == 1 && trans.contains(&modrm)) || (esc == 3 && modrm == 0xE3) || (esc == 7 && modrm == 0xE0) {
                continue;
            }
            let mut s = FpuState::new();
            let ctx = FpuContext::default();
            if s.execute(esc, modrm, None, &mut TestMem(&mut [0u8; 0]), &ctx) != FpuOutcome::Unimplemented {
                regs.push((esc, modrm));
            }
        }
    }
    // Memory forms: (esc, reg) with the operand area they use.
    let loads: [(u8, u8); 6] = [(3, 5), (1, 0), (5, 0), (7, 0), (3, 0), (7, 5)];
    let ariths: [u8; 4] = [0, 4, 2, 6];
    let stores: [(u8, u8); 11] = [(1, 2), (1, 3), (5, 2), (5, 3), (3, 7), (7, 2), (7, 3), (3, 2), (3, 3), (7, 7), (7, 6)];
    for case in 0..cases() / 3 {
        // Half the programs run with random exception masks: then every instruction is followed
        // by FNSTSW m16 + FNCLEX (no-wait), so nothing traps and every status word is compared.
        let unmasked = r.bool();
        let cw = rand_cw(&mut r, unmasked);
        let mut buf = buf_with(cw, rand_f80(&mut r), rand_f80(&mut r), rand_f80(&mut r));
        let fl: u64 = 0x202 | (r.next() & 0x8D5);
        buf.0[O_EFLIN as usize..][..8].copy_from_slice(&fl.to_le_bytes());
        // O_R..O_R+48: a few m32/m64/int operands derived from random values
        for k in 0..6u32 {
            let v = if r.bool() { r.next() } else { 0x3FF0_0000_0000_0000u64 ^ (r.next() >> 12) };
            buf.0[(O_R + 8 * k) as usize..][..8].copy_from_slice(&v.to_le_bytes());
        }
        let mut p = Prog::new();
        p.load_flags(O_EFLIN);
        let mut ends: Vec<usize> = vec![0; p.acts.len()];
        *ends.last_mut().unwrap() = p.code.len();
        for _ in 0..(5 + r.below(20)) {
            let src = [O_A, O_B, O_C][r.below(3) as usize];
            match r.below(12) {
                11 => {
                    // state save/restore round trips mid-program
                    match r.below(3) {
                        0 => {
                            p.mem(1, 6, O_SAVE2);
                            ends.push(p.code.len());
                            p.mem(1, 4, O_SAVE2);
                        }
                        1 => {
                            p.mem(5, 6, O_SAVE2);
                            ends.push(p.code.len());
                            p.mem(5, 4, O_SAVE2);
                        }
                        _ => {
                            p.fxsave(O_FXS, false);
                            ends.push(p.code.len());
                            p.fxsave(O_FXS, true);
                        }
                    }
                }
                10 => {
                    // MMX in the middle of x87 code (aliasing, TOP=0, tags, EMMS)
                    let mmx_ops: [u8; 8] = [0x6F, 0xFC, 0xEF, 0xD5, 0x63, 0x68, 0x75, 0xF5];
                    match r.below(4) {
                        0 => {
                            p.code.extend_from_slice(&[0x0F, 0x77]);
                            p.acts.push(Act::Mmx { op: 0x77, modrm: 0, ea: None });
                        }
                        1 => {
                            p.mmx_mem(0x6F, r.below(8) as u8, src);
                        }
                        _ => {
                            p.mmx_reg(mmx_ops[r.below(8) as usize], r.below(8) as u8, r.below(8) as u8);
                        }
                    }
                }
                0 | 1 => {
                    let (esc, reg) = loads[r.below(6) as usize];
                    let at = if (esc, reg) == (3, 5) { src } else { O_R + 8 * r.below(6) as u32 };
                    p.mem(esc, reg, at);
                }
                2 => {
                    p.mem(ariths[r.below(4) as usize], r.below(8) as u8, O_R + 8 * r.below(6) as u32);
                }
                3 => {
                    let (esc, reg) = stores[r.below(11) as usize];
                    p.mem(esc, reg, O_R + 48 + 16 * r.below(4) as u32);
                }
                _ => {
                    let (esc, modrm) = regs[r.below(regs.len() as u64) as usize];
                    p.reg(esc, modrm);
                }
            }
            ends.push(p.code.len());
            if unmasked {
                let k = (ends.len() - 12) as u32;
                p.mem(5, 7, O_STATUS + 2 * k);
                ends.push(p.code.len());
                p.reg(3, 0xE2);
                ends.push(p.code.len());
            }
        }
        p.fnstsw_ax(O_EFL + 4);
        p.store_flags(O_EFL);
        p.finish();
        let mut host = buf.clone();
        let mut emu = buf.clone();
        p.run_host(&mut host);
        p.run_emu(&mut emu);
        let e = O_EFL as usize;
        let sv = O_SAVE as usize;
        for b in [&mut host, &mut emu] {
            let f = u32::from_le_bytes(b.0[e..e + 4].try_into().unwrap()) & 0x8D5;
            b.0[e..e + 4].copy_from_slice(&f.to_le_bytes());
            b.0[sv + 12..sv + 28].fill(0);
            // pointer fields of the mid-program images (host addresses), MXCSR and XMM area
            let s2 = O_SAVE2 as usize;
            b.0[s2 + 12..s2 + 28].fill(0);
            let fx = O_FXS as usize;
            b.0[fx + 6..fx + 32].fill(0);
            b.0[fx + 160..fx + 512].fill(0);
        }
        if host.0[..] != emu.0[..] {
            // Find the first instruction after which the states differ.
            for n in 12..p.acts.len() {
                let q = p.prefix(n, &ends);
                let (mut h, mut e) = (buf.clone(), buf.clone());
                q.run_host(&mut h);
                q.run_emu(&mut e);
                h.0[sv + 12..sv + 28].fill(0);
                e.0[sv + 12..sv + 28].fill(0);
                if h.0[sv..sv + 108] != e.0[sv..sv + 108] {
                    let reg = |b: &Buf, i: usize| F80::from_bytes(&b.0[sv + 28 + 10 * i..]);
                    panic!(
                        "case {case} cw {cw:04x}: first difference after {:?}\nprogram {:?}\nhost sw {:02x?} tw {:02x?} st0..3 {:?}\nemu  sw {:02x?} tw {:02x?} st0..3 {:?}",
                        p.acts[n - 1], &p.acts[11..n],
                        &h.0[sv + 4..sv + 6], &h.0[sv + 8..sv + 10], (0..4).map(|i| reg(&h, i)).collect::<Vec<_>>(),
                        &e.0[sv + 4..sv + 6], &e.0[sv + 8..sv + 10], (0..4).map(|i| reg(&e, i)).collect::<Vec<_>>(),
                    );
                }
            }
            let diffs: Vec<_> = host.0.iter().zip(emu.0.iter()).enumerate().filter(|(_, (h, e))| h != e).take(16).collect();
            panic!("case {case} cw {cw:04x}\nacts {:?}\ndiffs {diffs:?}", p.acts.iter().skip(11).collect::<Vec<_>>());
        }
    }
}

/// Rough per-instruction cost of the soft-float (run with --ignored --nocapture).
#[test]
#[ignore]
fn throughput() {
    let ops: [(&str, u8, u8); 9] = [
        ("FADD", 0, 0xC1),
        ("FMUL", 0, 0xC9),
        ("FDIV", 0, 0xF1),
        ("FSQRT", 1, 0xFA),
        ("FXCH", 1, 0xC9),
        ("FSIN", 1, 0xFE),
        ("FPATAN", 1, 0xF3),
        ("FYL2X", 1, 0xF1),
        ("F2XM1", 1, 0xF0),
    ];
    let mut mem = [0u8; 16];
    let ctx = FpuContext::default();
    for (name, esc, modrm) in ops {
        let n = 200_000;
        let t = std::time::Instant::now();
        for i in 0..n {
            let mut s = FpuState::new();
            s.finit();
            s.top = 6;
            s.set_st(1, F80::new(false, 0x3FFE, 0xC90F_DAA2_2168_C234 ^ i));
            s.set_st(0, F80::new(false, 0x3FFD, 0xB504_F333_F9DE_6484 ^ (i << 3)));
            s.execute(esc, modrm, None, &mut TestMem(&mut mem), &ctx);
            std::hint::black_box(&s);
        }
        eprintln!("{name:>22}: {:6.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
    }
}
