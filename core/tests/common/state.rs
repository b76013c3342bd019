//! The machine state both sides of a differential test start from and end in.
//!
//! It mirrors `vessel_core::cpu::CpuState` field for field (segment access bits packed the VMX way,
//! limits byte-granular) so the KVM side and the interpreter side convert 1:1 and a mismatch report
//! can name fields the CPU authors know.

use std::fmt;

pub const ES: usize = 0;
pub const CS: usize = 1;
pub const SS: usize = 2;
pub const DS: usize = 3;
pub const FS: usize = 4;
pub const GS: usize = 5;
pub const SEG_NAMES: [&str; 6] = ["es", "cs", "ss", "ds", "fs", "gs"];
pub const GPR_NAMES: [&str; 8] = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];

pub const EAX: usize = 0;
pub const ECX: usize = 1;
pub const EDX: usize = 2;
pub const EBX: usize = 3;
pub const ESP: usize = 4;
pub const EBP: usize = 5;
pub const ESI: usize = 6;
pub const EDI: usize = 7;

// EFLAGS bits.
pub const CF: u32 = 1 << 0;
pub const PF: u32 = 1 << 2;
pub const AF: u32 = 1 << 4;
pub const ZF: u32 = 1 << 6;
pub const SF: u32 = 1 << 7;
pub const TF: u32 = 1 << 8;
pub const IF: u32 = 1 << 9;
pub const DF: u32 = 1 << 10;
pub const OF: u32 = 1 << 11;
pub const ARITH: u32 = CF | PF | AF | ZF | SF | OF;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Seg {
    pub selector: u16,
    pub base: u32,
    pub limit: u32,
    /// type(4) S(1) DPL(2) P(1) in bits 0-7, AVL bit 12, L bit 13, D/B bit 14, G bit 15.
    pub access: u16,
    pub valid: bool,
}

impl Seg {
    /// A real-mode style segment (selector*16, 64 KiB, present read/write data or code).
    pub fn real(selector: u16, code: bool) -> Seg {
        Seg { selector, base: (selector as u32) << 4, limit: 0xffff, access: if code { 0x9b } else { 0x93 }, valid: true }
    }
    pub fn null() -> Seg {
        Seg { selector: 0, base: 0, limit: 0, access: 0, valid: false }
    }
    /// The 8-byte GDT descriptor that loads into this cache (accessed bit as in `access`).
    pub fn descriptor(&self) -> u64 {
        let g = self.access & 0x8000 != 0;
        let lim = if g { self.limit >> 12 } else { self.limit };
        let b = self.base as u64;
        let a = self.access as u64;
        (lim as u64 & 0xffff)
            | (b & 0xff_ffff) << 16
            | (a & 0xff) << 40
            | ((lim as u64 >> 16) & 0xf) << 48
            | ((a >> 12) & 0xf) << 52
            | (b >> 24) << 56
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dt {
    pub base: u32,
    pub limit: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct State {
    pub gpr: [u32; 8],
    pub eip: u32,
    pub eflags: u32,
    pub seg: [Seg; 6],
    pub ldtr: Seg,
    pub tr: Seg,
    pub gdtr: Dt,
    pub idtr: Dt,
    pub cr0: u32,
    pub cr2: u32,
    pub cr3: u32,
    pub cr4: u32,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in GPR_NAMES.iter().enumerate() {
            write!(f, "{n}={:08x} ", self.gpr[i])?;
            if i == 3 {
                writeln!(f)?;
            }
        }
        writeln!(f, "\neip={:08x} eflags={:08x} [{}]", self.eip, self.eflags, flag_string(self.eflags))?;
        for (i, n) in SEG_NAMES.iter().enumerate() {
            let s = &self.seg[i];
            writeln!(f, "{n}={:04x} base={:08x} limit={:08x} access={:04x}{}", s.selector, s.base, s.limit, s.access, if s.valid { "" } else { " unusable" })?;
        }
        write!(
            f,
            "cr0={:08x} cr2={:08x} cr3={:08x} cr4={:08x} gdtr={:08x}/{:04x} idtr={:08x}/{:04x}",
            self.cr0, self.cr2, self.cr3, self.cr4, self.gdtr.base, self.gdtr.limit, self.idtr.base, self.idtr.limit
        )
    }
}

pub fn flag_string(fl: u32) -> String {
    let names = [(OF, "OF"), (DF, "DF"), (IF, "IF"), (TF, "TF"), (SF, "SF"), (ZF, "ZF"), (AF, "AF"), (PF, "PF"), (CF, "CF")];
    let v: Vec<&str> = names.iter().filter(|(b, _)| fl & b != 0).map(|(_, n)| *n).collect();
    v.join(" ")
}
