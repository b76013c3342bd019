//! Architectural CPU state as plain data (serde), the form the KVM oracle, save/restore and the
//! future JIT exchange. The interpreter keeps the same struct inside [`super::Cpu`] and only adds
//! caches (lazy arithmetic flags, fetch translation) on top; [`super::Cpu::state`] materialises them.

use super::fpu::FpuState;
use serde::{Deserialize, Serialize};

/// Segment registers in encoding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum SegReg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

pub const ES: usize = 0;
pub const CS: usize = 1;
pub const SS: usize = 2;
pub const DS: usize = 3;
pub const FS: usize = 4;
pub const GS: usize = 5;

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
pub const IOPL: u32 = 3 << 12;
pub const NT: u32 = 1 << 14;
pub const RF: u32 = 1 << 16;
pub const VM: u32 = 1 << 17;
pub const AC: u32 = 1 << 18;
pub const VIF: u32 = 1 << 19;
pub const VIP: u32 = 1 << 20;
pub const ID: u32 = 1 << 21;
/// The six arithmetic status flags (the ones the lazy-flag machinery computes).
pub const ARITH: u32 = CF | PF | AF | ZF | SF | OF;

// CR0 bits.
pub const CR0_PE: u32 = 1 << 0;
pub const CR0_MP: u32 = 1 << 1;
pub const CR0_EM: u32 = 1 << 2;
pub const CR0_TS: u32 = 1 << 3;
pub const CR0_ET: u32 = 1 << 4;
pub const CR0_NE: u32 = 1 << 5;
pub const CR0_WP: u32 = 1 << 16;
pub const CR0_AM: u32 = 1 << 18;
pub const CR0_PG: u32 = 1 << 31;

/// A segment register's hidden descriptor cache, packed the VMX/KVM way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub selector: u16,
    pub base: u32,
    /// Byte-granular limit (already expanded with G).
    pub limit: u32,
    /// type(4) S(1) DPL(2) P(1) in bits 0-7, AVL bit 12, L bit 13, D/B bit 14, G bit 15.
    pub access: u16,
    /// False for a null/unusable segment (VMX "unusable" bit 16).
    pub valid: bool,
}

impl Segment {
    /// Real-mode style segment: base = selector * 16, 64 KiB, present read/write (accessed).
    pub fn real(selector: u16) -> Self {
        Segment { selector, base: (selector as u32) << 4, limit: 0xffff, access: 0x93, valid: true }
    }
    pub fn dpl(&self) -> u8 {
        ((self.access >> 5) & 3) as u8
    }
    /// D/B bit: 32-bit default operand size (code) / 32-bit stack pointer (stack).
    pub fn big(&self) -> bool {
        self.access & 0x4000 != 0
    }
    pub fn typ(&self) -> u8 {
        (self.access & 0xf) as u8
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorTable {
    pub base: u32,
    pub limit: u16,
}

/// A fault or trap raised while executing an instruction. Error codes as pushed on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("#DE divide error")]
    DivideError,
    #[error("#DB debug")]
    Debug,
    #[error("NMI")]
    Nmi,
    #[error("#BP breakpoint")]
    Breakpoint,
    #[error("#OF overflow")]
    Overflow,
    #[error("#BR bound range")]
    BoundRange,
    #[error("#UD invalid opcode")]
    InvalidOpcode,
    #[error("#NM device not available")]
    DeviceNotAvailable,
    #[error("#DF double fault")]
    DoubleFault,
    #[error("#TS({0:#x}) invalid TSS")]
    InvalidTss(u16),
    #[error("#NP({0:#x}) segment not present")]
    NotPresent(u16),
    #[error("#SS({0:#x}) stack fault")]
    StackFault(u16),
    #[error("#GP({0:#x}) general protection")]
    GeneralProtection(u16),
    #[error("#PF({err:#x}) page fault at {cr2:#x}")]
    PageFault { err: u32, cr2: u32 },
    #[error("#MF x87 floating-point error")]
    MathFault,
    #[error("#AC alignment check")]
    AlignmentCheck,
    #[error("#MC machine check")]
    MachineCheck,
    #[error("#XM SIMD floating-point")]
    SimdFault,
}

impl Fault {
    pub fn vector(&self) -> u8 {
        match self {
            Fault::DivideError => 0,
            Fault::Debug => 1,
            Fault::Nmi => 2,
            Fault::Breakpoint => 3,
            Fault::Overflow => 4,
            Fault::BoundRange => 5,
            Fault::InvalidOpcode => 6,
            Fault::DeviceNotAvailable => 7,
            Fault::DoubleFault => 8,
            Fault::InvalidTss(_) => 10,
            Fault::NotPresent(_) => 11,
            Fault::StackFault(_) => 12,
            Fault::GeneralProtection(_) => 13,
            Fault::PageFault { .. } => 14,
            Fault::MathFault => 16,
            Fault::AlignmentCheck => 17,
            Fault::MachineCheck => 18,
            Fault::SimdFault => 19,
        }
    }
    /// The error code pushed for this exception, if it pushes one.
    pub fn error_code(&self) -> Option<u32> {
        match *self {
            Fault::DoubleFault | Fault::AlignmentCheck => Some(0),
            Fault::InvalidTss(e) | Fault::NotPresent(e) | Fault::StackFault(e) | Fault::GeneralProtection(e) => {
                Some(e as u32)
            }
            Fault::PageFault { err, .. } => Some(err),
            _ => None,
        }
    }
    /// Contributory exceptions (for the double-fault rule).
    pub fn contributory(&self) -> bool {
        matches!(self.vector(), 0 | 10 | 11 | 12 | 13)
    }
}

/// MTRR MSRs: IA32_MTRR_DEF_TYPE, the 11 fixed-range registers (0x250, 0x258-0x259,
/// 0x268-0x26f) and 8 variable PhysBase/PhysMask pairs (0x200-0x20f). All zero at reset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtrrState {
    pub def_type: u64,
    pub fixed: [u64; 11],
    pub var: [u64; 16],
}

/// Complete architectural state of one IA-32 CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuState {
    /// EAX ECX EDX EBX ESP EBP ESI EDI.
    pub gpr: [u32; 8],
    pub eip: u32,
    pub eflags: u32,
    /// ES CS SS DS FS GS.
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub cr0: u32,
    pub cr2: u32,
    pub cr3: u32,
    pub cr4: u32,
    pub dr: [u32; 8],
    pub efer: u64,
    pub tsc: u64,
    pub sysenter_cs: u32,
    pub sysenter_esp: u32,
    pub sysenter_eip: u32,
    pub apic_base: u64,
    pub pat: u64,
    /// Memory type range registers (stored and checked; the emulator has no caches to apply
    /// them to).
    #[serde(default)]
    pub mtrr: MtrrState,
    pub halted: bool,
    pub nmi_blocked: bool,
    /// One-instruction interrupt inhibit after MOV SS / POP SS / STI.
    pub intr_shadow: bool,
    pub fpu: FpuState,
}

impl Default for CpuState {
    fn default() -> Self {
        Self::power_on()
    }
}

impl CpuState {
    /// The state after RESET (SDM Vol. 3 9.1.1): real mode, CS:IP = F000:FFF0 with CS base FFFF0000.
    pub fn power_on() -> Self {
        let mut seg = [Segment::real(0); 6];
        seg[CS] = Segment { selector: 0xf000, base: 0xffff_0000, limit: 0xffff, access: 0x9b, valid: true };
        CpuState {
            gpr: [0, 0, 0x0000_0633, 0, 0, 0, 0, 0],
            eip: 0xfff0,
            eflags: 0x2,
            seg,
            ldtr: Segment { selector: 0, base: 0, limit: 0xffff, access: 0x82, valid: true },
            tr: Segment { selector: 0, base: 0, limit: 0xffff, access: 0x8b, valid: true },
            gdtr: DescriptorTable { base: 0, limit: 0xffff },
            idtr: DescriptorTable { base: 0, limit: 0xffff },
            cr0: 0x6000_0010,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400, 0xffff_0ff0, 0x400],
            efer: 0,
            tsc: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            apic_base: 0xfee0_0900,
            pat: 0x0007_0406_0007_0406,
            mtrr: MtrrState::default(),
            halted: false,
            nmi_blocked: false,
            intr_shadow: false,
            fpu: FpuState::new(),
        }
    }

    pub fn protected(&self) -> bool {
        self.cr0 & CR0_PE != 0
    }
    pub fn v86(&self) -> bool {
        self.cr0 & CR0_PE != 0 && self.eflags & VM != 0
    }
    /// Current privilege level: 0 in real mode, 3 in virtual-8086 mode, CS.DPL otherwise.
    pub fn cpl(&self) -> u8 {
        if self.cr0 & CR0_PE == 0 {
            0
        } else if self.eflags & VM != 0 {
            3
        } else {
            self.seg[CS].dpl()
        }
    }
    pub fn iopl(&self) -> u8 {
        ((self.eflags >> 12) & 3) as u8
    }
}
