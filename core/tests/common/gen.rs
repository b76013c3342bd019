//! Test-case generator: a tiny IA-32 encoder plus bookkeeping that keeps every generated sequence
//! deterministic on real hardware.
//!
//! Rules that make a random sequence comparable:
//! - Memory operands of a case share one addressing form (base/index registers fixed for the case,
//!   the displacement varies), and those registers are *reserved*: no instruction of the case writes
//!   them, so every access lands inside a RAM-backed segment window (or deliberately just past a
//!   segment limit to provoke #GP/#SS).
//! - Flags Intel documents as undefined are tracked: before an instruction that reads a currently
//!   undefined flag, a `cmp reg, imm8` redefines all six; at the end, the still-undefined flags are
//!   masked from the comparison (see `flags.rs` for the per-instruction table with SDM citations).
//! - Results Intel documents as undefined (16-bit SHLD/SHRD with count > 16, BSWAP r16) are not
//!   generated, or are immediately overwritten.

use super::layout::*;
use super::rng::Rng;
use super::state::*;

#[derive(Clone, Debug)]
pub struct Case {
    pub group: &'static str,
    pub mode: Mode,
    pub seed: u64,
    pub init: State,
    pub code: Vec<u8>,
    /// One line per instruction: offset, bytes, text.
    pub listing: Vec<String>,
    /// Flags undefined at the end of the sequence.
    pub undef_end: u32,
    /// Flags undefined at any point (used when the sequence faulted part way).
    pub undef_ever: u32,
}

impl Case {
    pub fn code_linear(&self) -> u32 {
        self.init.seg[CS].base.wrapping_add(self.init.eip)
    }
}

#[derive(Clone, Debug)]
pub struct MemOp {
    pub modrm_mod: u8,
    pub rm: u8,
    pub sib: Option<u8>,
    pub disp: Vec<u8>,
    pub text: String,
    /// Segment-relative offset the operand addresses.
    pub offset: u32,
}

#[derive(Clone, Debug)]
pub enum Rm {
    Reg(u8),
    Mem(MemOp),
}

#[derive(Clone, Debug)]
struct AddrForm {
    a32: bool,
    seg: usize,
    prefix: Option<u8>,
    /// 32-bit: base, index, scale, disp size (0, 1, 4). 16-bit: rm, disp size (0, 1, 2).
    base: Option<u8>,
    index: Option<(u8, u8)>,
    rm16: u8,
    disp_size: u8,
    anchor: u32,
    /// Value of base + index*scale (mod address size); displacement = target - regsum.
    regsum: u32,
    window: Window,
    /// The window ends at the segment limit, so going past it faults instead of hitting other data.
    limit_bounded: bool,
    /// Expand-down segment whose window starts at limit+1 (below it faults).
    expand_down: bool,
}

pub struct Gen<'a> {
    pub rng: Rng,
    pub mode: Mode,
    pub code32: bool,
    pub image: &'a [u8],
    pub st: State,
    pub code: Vec<u8>,
    pub listing: Vec<String>,
    /// GPRs (bit per encoding) that no instruction of the case may write.
    pub reserved: u8,
    pub undef: u32,
    pub undef_ever: u32,
    addr: Option<AddrForm>,
    start: usize,
    /// Whether this case has memory operands (decided before any instruction is generated, since
    /// the addressing registers' initial values are chosen then).
    pub use_mem: bool,
    /// No FS/GS segment overrides (host-CPU oracle: those are null selectors there).
    pub no_fs_gs: bool,
}

pub const SEG_PREFIX: [u8; 6] = [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];

pub fn reg_name(enc: u8, bits: u32) -> &'static str {
    const R8: [&str; 8] = ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"];
    const R16: [&str; 8] = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"];
    match bits {
        8 => R8[enc as usize],
        16 => R16[enc as usize],
        _ => GPR_NAMES[enc as usize],
    }
}

fn size_name(bits: u32) -> &'static str {
    match bits {
        8 => "byte",
        16 => "word",
        32 => "dword",
        64 => "qword",
        _ => "",
    }
}

pub fn imm_bytes(v: u32, bits: u32) -> Vec<u8> {
    v.to_le_bytes()[..(bits / 8) as usize].to_vec()
}

impl<'a> Gen<'a> {
    /// A fresh case: random GPRs and arithmetic flags, ESP inside the stack window.
    pub fn new(mode: Mode, seed: u64, image: &'a [u8]) -> Gen<'a> {
        let mut rng = Rng::new(seed);
        let mut st = initial_state(mode);
        for r in 0..8 {
            st.gpr[r] = rng.operand(32);
        }
        let ss_big = st.seg[SS].access & 0x4000 != 0;
        let sp = rng.range(0x5000, 0x7000) & !rng.pick(&[0u32, 1, 3]);
        // ESP[31:16] stays zero with a 16-bit stack: this host's KVM (kvm-pvm) delivers exceptions
        // through a 16-bit stack with the full ESP (triple fault in 16-bit PM, ESP[31:16] cleared in
        // real mode), unlike hardware, so a non-zero upper half would test KVM, not the interpreter.
        let _ = ss_big;
        st.gpr[ESP] = sp;
        st.eflags = 0x2 | (rng.u32() & ARITH);
        Gen {
            rng,
            mode,
            code32: mode.code32(),
            image,
            st,
            code: Vec::new(),
            listing: Vec::new(),
            reserved: 1 << ESP,
            undef: 0,
            undef_ever: 0,
            addr: None,
            start: 0,
            use_mem: false,
            no_fs_gs: false,
        }
    }

    pub fn finish(mut self, group: &'static str, seed: u64) -> Case {
        self.begin();
        self.code.push(0xf4);
        self.end("hlt".into());
        Case {
            group,
            mode: self.mode,
            seed,
            init: self.st,
            code: self.code,
            listing: self.listing,
            undef_end: self.undef,
            undef_ever: self.undef_ever,
        }
    }

    // ----- listing -----
    fn begin(&mut self) {
        self.start = self.code.len();
    }
    fn end(&mut self, text: String) {
        let bytes: Vec<String> = self.code[self.start..].iter().map(|b| format!("{b:02x}")).collect();
        self.listing.push(format!("{:04x}: {:<30} {}", self.start, bytes.join(" "), text));
    }

    // ----- registers -----
    /// A register (encoding) the case may write, for an operand of `bits`.
    pub fn wreg(&mut self, bits: u32) -> u8 {
        loop {
            let e = self.rng.below(8) as u8;
            let gpr = if bits == 8 { e & 3 } else { e };
            if self.reserved & (1 << gpr) == 0 {
                return e;
            }
        }
    }
    /// Any register as a source.
    pub fn rreg(&mut self) -> u8 {
        self.rng.below(8) as u8
    }
    pub fn writable(&self, gpr: usize) -> bool {
        self.reserved & (1 << gpr) == 0
    }
    /// Reserve GPRs the group writes implicitly (so they are not used for addressing).
    pub fn reserve(&mut self, mask: u8) {
        self.reserved |= mask;
    }

    // ----- flags -----
    /// Before an instruction reading `reads`: redefine flags that are currently undefined.
    pub fn need_flags(&mut self, reads: u32) {
        if reads & self.undef != 0 {
            let r = self.rreg();
            let imm = self.rng.u8();
            self.begin();
            if !self.code32 {
                self.code.push(0x66);
            }
            self.code.extend_from_slice(&[0x83, 0xc0 | 7 << 3 | r, imm]);
            self.end(format!("cmp {}, {imm:#x}", reg_name(r, 32)));
            self.undef = 0;
        }
    }
    /// After an instruction: `defined` flags got defined values, `undefined` became undefined.
    pub fn set_flags(&mut self, defined: u32, undefined: u32) {
        self.undef = (self.undef & !defined) | undefined;
        self.undef_ever |= undefined;
    }

    // ----- memory operands -----
    /// Choose this case's addressing form. `avoid` = GPRs the group writes (not usable as base/index).
    pub fn setup_addr(&mut self, avoid: u8) {
        let a32 = self.code32 ^ self.rng.chance(1, 6);
        let usable = |r: u8| (avoid | (self.reserved & !(1 << ESP))) & (1 << r) == 0;
        let mut form = AddrForm {
            a32,
            seg: DS,
            prefix: None,
            base: None,
            index: None,
            rm16: 0,
            disp_size: 0,
            anchor: 0,
            regsum: 0,
            window: Window { lo: 0, hi: 0 },
            limit_bounded: false,
            expand_down: false,
        };
        let mut regs = 0u8;
        self.use_mem = true;
        if a32 {
            let cands: Vec<u8> = (0..8).filter(|&r| usable(r)).collect();
            if !cands.is_empty() && self.rng.chance(7, 8) {
                form.base = Some(self.rng.pick(&cands));
            }
            let icands: Vec<u8> = cands.iter().copied().filter(|&r| r != ESP as u8).collect();
            if !icands.is_empty() && self.rng.chance(1, 2) {
                form.index = Some((self.rng.pick(&icands), self.rng.below(4) as u8));
            }
            form.disp_size = match (form.base, self.rng.below(3)) {
                (None, _) => 4,
                (Some(b), 0) if b != EBP as u8 => 0,
                (_, 1) => 1,
                _ => 4,
            };
            if matches!(form.base, Some(b) if b == ESP as u8 || b == EBP as u8) {
                form.seg = SS;
            }
        } else {
            // rm: 0 bx+si, 1 bx+di, 2 bp+si, 3 bp+di, 4 si, 5 di, 6 bp (or disp16), 7 bx.
            let regs_of = |rm: u8| -> u8 {
                [1 << EBX | 1 << ESI, 1 << EBX | 1 << EDI, 1 << EBP | 1 << ESI, 1 << EBP | 1 << EDI, 1 << ESI, 1 << EDI, 1 << EBP, 1 << EBX][rm as usize]
            };
            let ok: Vec<u8> = (0..8u8).filter(|&rm| (0..8).all(|r| regs_of(rm) & (1 << r) == 0 || usable(r))).collect();
            if ok.is_empty() || self.rng.chance(1, 10) {
                form.rm16 = 6;
                form.disp_size = 0; // [disp16]
            } else {
                form.rm16 = self.rng.pick(&ok);
                form.disp_size = match self.rng.below(3) {
                    0 if form.rm16 != 6 => 0,
                    1 => 1,
                    _ => 2,
                };
                regs = regs_of(form.rm16);
                if matches!(form.rm16, 2 | 3 | 6) {
                    form.seg = SS;
                }
            }
        }
        if self.rng.chance(1, 3) {
            form.seg = if self.no_fs_gs { self.rng.pick(&[ES, SS, DS]) } else { self.rng.pick(&[ES, SS, DS, FS, GS]) };
            form.prefix = Some(SEG_PREFIX[form.seg]);
        }
        form.window = if a32 { data_window(self.mode, form.seg) } else { data_window16(self.mode, form.seg) };
        let s = self.st.seg[form.seg];
        // Past the limit must fault rather than reach other data: always so for the data segments
        // whose window ends at the limit; for SS only in the based mode (elsewhere code follows).
        form.limit_bounded = form.window.hi as u64 == s.limit as u64 + 1 && (form.seg != SS || self.mode == Mode::Pm32Based);
        form.expand_down = s.access & 0x1c == 0x14 && form.window.lo == s.limit.wrapping_add(1);
        if s.access & 0x1c == 0x14 {
            form.limit_bounded = false;
        }
        let w = form.window;
        form.anchor = self.rng.range(w.lo + 256, w.hi - 256 - 16);
        // Registers so that base + index*scale = anchor where possible; otherwise a disp32
        // absorbs the difference (ESP as base keeps its stack value).
        if a32 {
            let mut sum = 0u32;
            let same = form.base.is_some() && form.base == form.index.map(|x| x.0);
            if let Some((i, sc)) = form.index {
                let v = if self.rng.chance(1, 2) { self.rng.below(64) } else { self.rng.u32() };
                let v = if form.base.is_none() { v & 0xff } else { v };
                self.st.gpr[i as usize] = v;
                sum = sum.wrapping_add(v << sc);
                regs |= 1 << i;
            }
            if let Some(b) = form.base {
                if b == ESP as u8 || same {
                    sum = sum.wrapping_add(self.st.gpr[b as usize]);
                } else {
                    self.st.gpr[b as usize] = form.anchor.wrapping_sub(sum);
                    sum = form.anchor;
                }
                if b != ESP as u8 {
                    regs |= 1 << b;
                }
            }
            form.regsum = sum;
            if sum != form.anchor {
                form.disp_size = 4;
            }
        } else if form.rm16 != 6 || form.disp_size != 0 {
            let r = regs_16(form.rm16);
            let first = self.rng.u16() as u32;
            let a = form.anchor & 0xffff;
            match r {
                (x, Some(y)) => {
                    set_lo16(&mut self.st.gpr[x], first);
                    set_lo16(&mut self.st.gpr[y], a.wrapping_sub(first));
                }
                (x, None) => set_lo16(&mut self.st.gpr[x], a),
            }
            form.regsum = a;
        }
        self.reserved |= regs;
        self.addr = Some(form);
    }

    /// A memory operand of `bytes` size in this case's addressing form.
    pub fn mem(&mut self, bytes: u32) -> MemOp {
        assert!(self.use_mem, "memory operand in a case without an addressing form");
        let f = self.addr.clone().unwrap();
        let w = f.window;
        let sum = f.regsum;
        let pick_target = |rng: &mut Rng| -> u32 {
            if f.expand_down && rng.chance(1, 40) {
                // at or just below the lower bound of an expand-down segment
                w.lo - bytes - 4 + rng.range(0, bytes + 8)
            } else if f.limit_bounded && rng.chance(1, 40) {
                w.hi - bytes + rng.range(1, bytes + 8) // crosses or lies past the limit
            } else {
                rng.range(w.lo, w.hi - bytes - 16)
            }
        };
        let (disp, target): (u32, u32) = match f.disp_size {
            0 => (0, sum),
            1 => {
                let d = self.rng.range(0, 256) as i32 - 128;
                (d as u32, sum.wrapping_add(d as u32))
            }
            _ => {
                let t = pick_target(&mut self.rng);
                (t.wrapping_sub(sum), t)
            }
        };
        let seg = SEG_NAMES[f.seg];
        if f.a32 {
            let mut parts = Vec::new();
            if let Some(b) = f.base {
                parts.push(GPR_NAMES[b as usize].to_string());
            }
            if let Some((i, sc)) = f.index {
                parts.push(format!("{}*{}", GPR_NAMES[i as usize], 1 << sc));
            }
            let disp_val = disp;
            let (modrm_mod, dbytes) = match (f.base, f.disp_size) {
                (None, _) => (0, disp_val.to_le_bytes().to_vec()),
                (Some(_), 0) => (0, vec![]),
                (Some(_), 1) => (1, vec![disp_val as u8]),
                _ => (2, disp_val.to_le_bytes().to_vec()),
            };
            if f.disp_size != 0 {
                parts.push(format!("{:#x}", disp_val));
            }
            let (rm, sib) = if f.index.is_none() && f.base != Some(ESP as u8) {
                (f.base.unwrap_or(5), None)
            } else {
                let (i, sc) = f.index.unwrap_or((4, 0));
                (4, Some(sc << 6 | i << 3 | f.base.unwrap_or(5)))
            };
            MemOp { modrm_mod, rm, sib, disp: dbytes, text: format!("{seg}:[{}]", parts.join("+")), offset: target }
        } else {
            let names = ["bx+si", "bx+di", "bp+si", "bp+di", "si", "di", "bp", "bx"];
            let d16 = disp & 0xffff;
            if f.rm16 == 6 && f.disp_size == 0 {
                // [disp16]: no registers, the displacement is the target
                let t = pick_target(&mut self.rng) & 0xffff;
                return MemOp { modrm_mod: 0, rm: 6, sib: None, disp: (t as u16).to_le_bytes().to_vec(), text: format!("{seg}:[{t:#x}]"), offset: t };
            }
            let (m, dbytes) = match f.disp_size {
                0 => (0, vec![]),
                1 => (1, vec![disp as u8]),
                _ => (2, (d16 as u16).to_le_bytes().to_vec()),
            };
            let text = if f.disp_size == 0 { format!("{seg}:[{}]", names[f.rm16 as usize]) } else { format!("{seg}:[{}+{:#x}]", names[f.rm16 as usize], if f.disp_size == 1 { disp & 0xff } else { d16 }) };
            MemOp { modrm_mod: m, rm: f.rm16, sib: None, disp: dbytes, text, offset: target & 0xffff }
        }
    }

    /// Register or memory operand (memory with probability 1/2 when `allow_mem`).
    pub fn rm(&mut self, bits: u32, write: bool, allow_mem: bool) -> Rm {
        if allow_mem && self.use_mem && self.rng.chance(1, 2) {
            Rm::Mem(self.mem(bits / 8))
        } else if write {
            Rm::Reg(self.wreg(bits))
        } else {
            Rm::Reg(self.rreg())
        }
    }

    pub fn rm_text(&self, rm: &Rm, bits: u32) -> String {
        match rm {
            Rm::Reg(r) => reg_name(*r, bits).to_string(),
            Rm::Mem(m) => format!("{} {}", size_name(bits), m.text),
        }
    }

    // ----- encoding -----
    fn prefixes(&mut self, bits: u32, rm: Option<&Rm>) {
        if let Some(Rm::Mem(_)) = rm {
            let f = self.addr.as_ref().unwrap();
            if let Some(p) = f.prefix {
                self.code.push(p);
            }
            if f.a32 != self.code32 {
                self.code.push(0x67);
            }
        }
        if (bits == 16 && self.code32) || (bits == 32 && !self.code32) {
            self.code.push(0x66);
        }
    }

    /// Emit `opcode` with a ModRM (reg field `reg`) addressing `rm`, then `imm`.
    pub fn emit_rm(&mut self, bits: u32, opcode: &[u8], reg: u8, rm: &Rm, imm: &[u8], text: String) {
        self.begin();
        self.prefixes(bits, Some(rm));
        self.code.extend_from_slice(opcode);
        match rm {
            Rm::Reg(r) => self.code.push(0xc0 | reg << 3 | r),
            Rm::Mem(m) => {
                self.code.push(m.modrm_mod << 6 | reg << 3 | m.rm);
                if let Some(s) = m.sib {
                    self.code.push(s);
                }
                self.code.extend_from_slice(&m.disp);
            }
        }
        self.code.extend_from_slice(imm);
        self.end(text);
    }

    /// Emit an instruction without ModRM (operand-size prefix chosen from `bits`, 0 = none).
    pub fn emit(&mut self, bits: u32, bytes: &[u8], text: String) {
        self.begin();
        self.prefixes(bits, None);
        self.code.extend_from_slice(bytes);
        self.end(text);
    }

    /// Emit raw bytes with their own prefixes (`a32` decides a 67 prefix when it differs from code size).
    pub fn emit_raw(&mut self, bytes: &[u8], text: String) {
        self.begin();
        self.code.extend_from_slice(bytes);
        self.end(text);
    }

    /// `mov reg32/16/8, imm` (B0+r / B8+r), used to set up counts and dividends.
    pub fn mov_imm(&mut self, reg: u8, bits: u32, v: u32) {
        let op = if bits == 8 { 0xb0 + reg } else { 0xb8 + reg };
        let mut b = vec![op];
        b.extend(imm_bytes(v, bits));
        self.emit(bits, &b, format!("mov {}, {v:#x}", reg_name(reg, bits)));
    }

    /// Random operand size 8/16/32.
    pub fn osize(&mut self) -> u32 {
        self.rng.pick(&[8, 16, 32])
    }

    /// Read `n` bytes of the base image at segment `seg` offset (for operands the generator must know).
    pub fn peek(&self, seg: usize, off: u32, n: u32) -> u32 {
        let lin = self.st.seg[seg].base.wrapping_add(off) as usize;
        let mut v = 0u32;
        for i in (0..n as usize).rev() {
            v = v << 8 | *self.image.get(lin + i).unwrap_or(&0xff) as u32;
        }
        v
    }
    pub fn addr_seg(&self) -> usize {
        self.addr.as_ref().map(|f| f.seg).unwrap_or(DS)
    }
    pub fn addr32(&self) -> bool {
        self.addr.as_ref().map(|f| f.a32).unwrap_or(self.code32)
    }
}

fn regs_16(rm: u8) -> (usize, Option<usize>) {
    match rm {
        0 => (EBX, Some(ESI)),
        1 => (EBX, Some(EDI)),
        2 => (EBP, Some(ESI)),
        3 => (EBP, Some(EDI)),
        4 => (ESI, None),
        5 => (EDI, None),
        6 => (EBP, None),
        _ => (EBX, None),
    }
}

fn set_lo16(r: &mut u32, v: u32) {
    *r = (*r & 0xffff_0000) | (v & 0xffff);
}
