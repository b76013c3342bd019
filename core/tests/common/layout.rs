//! Guest memory map and CPU mode set-ups shared by every differential test.
//!
//! ```text
//! 0x00000 IVT (real mode): every vector -> 0300:v*4      0x01000 GDT      0x02000 IDT (32-bit gates)
//! 0x03000 exception stubs: vector v is a HLT at 0x3000 + 4*v
//! 0x04000-0x08000 stack        0x08000-0x10000 code        0x10000-0x60000 data (random bytes)
//! 0x50000 NP page, 0x51000 NP page, 0x52000 read-only page (paging mode only)
//! 0xe0000 page directory, 0xe1000 page table (identity map of the 1 MiB of RAM)
//! ```
//! Faults are observed as "halted at stub v": the exception frame is on the stack in memory, so
//! vector, error code, return CS:EIP and EFLAGS are all compared like any other memory.

use super::state::*;

pub const MEM_SIZE: usize = 0x10_0000;
pub const GDT_BASE: u32 = 0x1000;
pub const IDT_BASE: u32 = 0x2000;
pub const STUBS: u32 = 0x3000;
/// 32-bit TSS: SS0:ESP0 = 0x10:0x7ff0 (ring-0 stack for exceptions from CPL 3), no I/O bitmap.
pub const TSS_BASE: u32 = 0x1c00;
pub const TSS_SEL: u16 = 0xa0;
pub const NUM_VECTORS: u32 = 32;
pub const STACK_LO: u32 = 0x4000;
pub const STACK_HI: u32 = 0x8000;
pub const CODE: u32 = 0x8000;
pub const DATA_LO: u32 = 0x10000;
pub const DATA_HI: u32 = 0x60000;
pub const PD: u32 = 0xe_0000;
pub const PT0: u32 = 0xe_1000;
pub const NP_PAGE1: u32 = 0x50000;
pub const NP_PAGE2: u32 = 0x51000;
pub const RO_PAGE: u32 = 0x52000;

pub const CR0_PE: u32 = 1;
pub const CR0_ET: u32 = 1 << 4;
pub const CR0_NE: u32 = 1 << 5;
pub const CR0_WP: u32 = 1 << 16;
pub const CR0_PG: u32 = 1 << 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Real mode, 16-bit code, segments at 0x0700 (CS), 0x1000 (DS), ...
    Real,
    /// 16-bit protected mode: 16-bit CS/SS, DS/ES at base 0x10000.
    Pm16,
    /// 32-bit protected mode, flat 4 GiB segments.
    Pm32Flat,
    /// 32-bit protected mode with non-zero bases and small byte/page-granular limits.
    Pm32Based,
    /// 32-bit flat protected mode with paging (4 KiB pages, some not present / read-only).
    Pm32Paging,
    /// 32-bit flat protected mode at CPL 3 (IOPL 0): exceptions switch to the ring-0 stack of
    /// the TSS; the final HLT itself raises #GP, so every case ends in a handler.
    Pm32User,
}

impl Mode {
    /// The modes the oracle can run on every host. Legacy (non-long-mode) paging is missing here:
    /// this host's KVM is kvm-pvm, which refuses CR0.PG without EFER.LME (KVM_EXIT_SHUTDOWN, see
    /// `kvm_legacy_paging` in diff_kvm_selftest.rs), so `Pm32Paging` is only used when it works.
    pub const ALL: [Mode; 4] = [Mode::Real, Mode::Pm16, Mode::Pm32Flat, Mode::Pm32Based];
    /// [`Mode::ALL`] plus CPL 3 (where the final HLT is a #GP): the instruction-group tests.
    pub const WITH_USER: [Mode; 5] = [Mode::Real, Mode::Pm16, Mode::Pm32Flat, Mode::Pm32Based, Mode::Pm32User];
    pub fn code32(self) -> bool {
        !matches!(self, Mode::Real | Mode::Pm16)
    }
    pub fn protected(self) -> bool {
        self != Mode::Real
    }
}

/// GDT entries (selector = index * 8). Accessed bits are pre-set so loads do not dirty the GDT.
pub fn gdt() -> Vec<Seg> {
    let d = |base: u32, limit: u32, access: u16| Seg { selector: 0, base, limit, access, valid: true };
    vec![
        Seg::null(),
        d(0, 0xffff_ffff, 0xc09b),       // 0x08 flat 32-bit code
        d(0, 0xffff_ffff, 0xc093),       // 0x10 flat 32-bit data
        d(0, 0xffff, 0x009b),            // 0x18 16-bit code, base 0
        d(0x10000, 0xffff, 0x0093),      // 0x20 16-bit data at 0x10000
        d(0, 0xffff, 0x0093),            // 0x28 16-bit stack, base 0
        d(0x6000, 0xffff, 0x409b),       // 0x30 32-bit code, base 0x6000, limit 64K
        d(0x20000, 0x7fff, 0x4093),      // 0x38 32-bit data, base 0x20000, limit 32K-1
        d(0x30000, 0x0fff, 0x4093),      // 0x40 32-bit data, base 0x30000, limit 4K-1
        d(0x38000, 0x7fff, 0x4093),      // 0x48 32-bit data, base 0x38000
        d(0x40000, 0xffff, 0xc093),      // 0x50 32-bit data, base 0x40000, G=1 limit 0xffff
        d(0x0000, 0x7fff, 0x4093),       // 0x58 32-bit stack, base 0, limit 0x7fff
        d(0x20000, 0xffff, 0x4013),      // 0x60 not present data
        d(0x20000, 0xffff, 0x40f3),      // 0x68 DPL3 data
        d(0x0000, 0xffff, 0x4099),       // 0x70 execute-only code
        d(0x20000, 0x0fff, 0x4097),      // 0x78 expand-down data (valid offsets 0x1000..=0xffffffff)
        d(0x20000, 0xffff, 0x4091),      // 0x80 read-only data
        d(0x1000, 0x7f, 0x0082),         // 0x88 LDT descriptor (system segment)
        d(0, 0xffff_ffff, 0xc0fb),       // 0x90 flat 32-bit code, DPL3
        d(0, 0xffff_ffff, 0xc0f3),       // 0x98 flat 32-bit data, DPL3
        d(TSS_BASE, 0x67, 0x008b),       // 0xa0 busy 32-bit TSS
    ]
}

pub fn sel(index: u16) -> u16 {
    index * 8
}

/// Segment caches as the CPU would hold them after loading `selector` from [`gdt`].
pub fn gdt_seg(selector: u16) -> Seg {
    let mut s = gdt()[(selector >> 3) as usize];
    s.selector = selector;
    if selector & 3 != 0 {
        // RPL 3 selectors name the DPL 3 descriptors
        assert_eq!((s.access >> 5) & 3, 3);
    }
    s
}

/// The RAM image every case starts from: tables, stubs, random data (deterministic in `seed`).
pub fn base_image(mode: Mode, rng: &mut super::rng::Rng) -> Vec<u8> {
    let mut m = vec![0u8; MEM_SIZE];
    // IVT: vector v -> 0300:(v*4).
    for v in 0..256u32 {
        let off = if v < NUM_VECTORS { v * 4 } else { 0 };
        m[(v * 4) as usize..(v * 4 + 2) as usize].copy_from_slice(&(off as u16).to_le_bytes());
        m[(v * 4 + 2) as usize..(v * 4 + 4) as usize].copy_from_slice(&((STUBS >> 4) as u16).to_le_bytes());
    }
    for (i, s) in gdt().iter().enumerate() {
        let at = GDT_BASE as usize + i * 8;
        m[at..at + 8].copy_from_slice(&s.descriptor().to_le_bytes());
    }
    // IDT: 32-bit interrupt gates to 0x08:STUBS+4v.
    for v in 0..NUM_VECTORS {
        let off = STUBS + v * 4;
        let gate: u64 = (off as u64 & 0xffff) | (8u64 << 16) | (0x8e00u64 << 32) | ((off as u64 >> 16) << 48);
        let at = (IDT_BASE + v * 8) as usize;
        m[at..at + 8].copy_from_slice(&gate.to_le_bytes());
    }
    let tss = TSS_BASE as usize;
    m[tss..tss + 0x68].fill(0);
    m[tss + 4..tss + 8].copy_from_slice(&0x7ff0u32.to_le_bytes());
    m[tss + 8..tss + 10].copy_from_slice(&0x10u16.to_le_bytes());
    m[tss + 0x66..tss + 0x68].copy_from_slice(&0x68u16.to_le_bytes());
    for v in 0..NUM_VECTORS {
        let at = (STUBS + v * 4) as usize;
        m[at..at + 4].copy_from_slice(&[0xf4, 0xf4, 0xf4, 0xf4]);
    }
    // Stack and data areas: random bytes.
    rng.fill(&mut m[STACK_LO as usize..STACK_HI as usize]);
    rng.fill(&mut m[DATA_LO as usize..DATA_HI as usize]);
    // Code area: HLTs, so a stray jump stops quickly.
    m[CODE as usize..DATA_LO as usize].fill(0xf4);
    if mode == Mode::Pm32Paging {
        let pde = PT0 | 0x3; // present, writable
        m[PD as usize..PD as usize + 4].copy_from_slice(&pde.to_le_bytes());
        for p in 0..(MEM_SIZE as u32 >> 12) {
            let addr = p << 12;
            let flags = match addr {
                NP_PAGE1 | NP_PAGE2 => 0x2,
                RO_PAGE => 0x1,
                _ => 0x3,
            };
            let pte = addr | flags;
            let at = (PT0 + p * 4) as usize;
            m[at..at + 4].copy_from_slice(&pte.to_le_bytes());
        }
    }
    m
}

/// A segment window the generator may address: offsets `[lo, hi)` within segment `seg` are valid
/// (inside the limit and backed by RAM).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub lo: u32,
    pub hi: u32,
}

/// Initial CPU state for `mode` (registers are filled in by the generator).
pub fn initial_state(mode: Mode) -> State {
    let mut s = State::default();
    s.eflags = 0x2;
    s.gdtr = Dt { base: GDT_BASE, limit: (gdt().len() * 8 - 1) as u16 };
    s.ldtr = Seg { selector: 0, base: 0, limit: 0xffff, access: 0x82, valid: true };
    s.tr = Seg { selector: TSS_SEL, base: TSS_BASE, limit: 0x67, access: 0x8b, valid: true };
    match mode {
        Mode::Real => {
            s.cr0 = CR0_ET;
            s.idtr = Dt { base: 0, limit: 0x3ff };
            s.seg[ES] = Seg::real(0x1800, false);
            s.seg[CS] = Seg::real(0x0700, true);
            s.seg[SS] = Seg::real(0x0000, false);
            s.seg[DS] = Seg::real(0x1000, false);
            s.seg[FS] = Seg::real(0x2000, false);
            s.seg[GS] = Seg::real(0x3000, false);
            s.eip = CODE - 0x7000;
        }
        Mode::Pm16 => {
            s.cr0 = CR0_ET | CR0_PE;
            s.idtr = Dt { base: IDT_BASE, limit: (NUM_VECTORS * 8 - 1) as u16 };
            s.seg[ES] = gdt_seg(sel(4));
            s.seg[CS] = gdt_seg(sel(3));
            s.seg[SS] = gdt_seg(sel(5));
            s.seg[DS] = gdt_seg(sel(4));
            s.seg[FS] = gdt_seg(sel(2));
            s.seg[GS] = gdt_seg(sel(4));
            s.eip = CODE;
        }
        Mode::Pm32Flat | Mode::Pm32Paging => {
            s.cr0 = CR0_ET | CR0_PE;
            if mode == Mode::Pm32Paging {
                s.cr0 |= CR0_PG | CR0_WP;
                s.cr3 = PD;
            }
            s.idtr = Dt { base: IDT_BASE, limit: (NUM_VECTORS * 8 - 1) as u16 };
            s.seg[CS] = gdt_seg(sel(1));
            for r in [ES, SS, DS, FS, GS] {
                s.seg[r] = gdt_seg(sel(2));
            }
            s.eip = CODE;
        }
        Mode::Pm32User => {
            s.cr0 = CR0_ET | CR0_PE;
            s.idtr = Dt { base: IDT_BASE, limit: (NUM_VECTORS * 8 - 1) as u16 };
            s.seg[CS] = gdt_seg(0x93);
            for r in [ES, SS, DS, FS, GS] {
                s.seg[r] = gdt_seg(0x9b);
            }
            s.eip = CODE;
        }
        Mode::Pm32Based => {
            s.cr0 = CR0_ET | CR0_PE;
            s.idtr = Dt { base: IDT_BASE, limit: (NUM_VECTORS * 8 - 1) as u16 };
            s.seg[CS] = gdt_seg(sel(6));
            s.seg[SS] = gdt_seg(sel(11));
            s.seg[DS] = gdt_seg(sel(7));
            s.seg[ES] = gdt_seg(sel(8));
            s.seg[FS] = gdt_seg(0x78); // expand-down: valid offsets 0x1000..=0xffffffff
            s.seg[GS] = gdt_seg(sel(10));
            s.eip = CODE - 0x6000;
        }
    }
    s
}

/// Offsets that are valid (within limit and RAM, outside code/tables) for data accesses through
/// segment register `r` in `mode`.
pub fn data_window(mode: Mode, r: usize) -> Window {
    let s = initial_state(mode).seg[r];
    if r == SS {
        return Window { lo: STACK_LO - s.base, hi: STACK_HI - s.base };
    }
    if s.access & 0x1c == 0x14 {
        // expand-down data: offsets above the limit are valid
        let lo = (s.limit + 1).max(DATA_LO.saturating_sub(s.base));
        return Window { lo, hi: DATA_HI - s.base };
    }
    match mode {
        Mode::Pm32Flat | Mode::Pm32Paging | Mode::Pm32User => Window { lo: DATA_LO, hi: DATA_HI },
        _ => {
            let lo = DATA_LO.saturating_sub(s.base);
            let hi = (s.limit as u64 + 1).min((DATA_HI - s.base) as u64) as u32;
            Window { lo, hi }
        }
    }
}

/// The window for 16-bit address arithmetic (offsets wrap at 64 KiB): the part of
/// [`data_window`] below 64 KiB, or the stack area when a segment's data lies above 64 KiB (flat
/// segments), so a 16-bit address never lands on the tables or the code.
pub fn data_window16(mode: Mode, r: usize) -> Window {
    let w = data_window(mode, r);
    if w.hi > 0x10000 && w.lo < 0x10000 && initial_state(mode).seg[r].access & 0x1c == 0x14 {
        return Window { lo: w.lo, hi: 0x10000 };
    }
    if w.lo >= 0x10000 {
        let base = initial_state(mode).seg[r].base;
        Window { lo: STACK_LO.wrapping_sub(base), hi: STACK_HI.wrapping_sub(base) }
    } else {
        Window { lo: w.lo, hi: w.hi.min(0x10000) }
    }
}

/// Decoded exception frame, if the run ended in one of the exception stubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u32,
    /// Linear address of the frame (return EIP/IP is the first item).
    pub frame: u32,
    /// Whether the frame is 32-bit (PM gates here are all 32-bit) or 16-bit (real mode).
    pub frame32: bool,
    pub has_error_code: bool,
}

pub fn has_error_code(vector: u32) -> bool {
    matches!(vector, 8 | 10..=14 | 17)
}

pub fn fault_of(mode: Mode, st: &State) -> Option<Fault> {
    let lin = st.seg[CS].base.wrapping_add(st.eip);
    if lin <= STUBS || lin > STUBS + NUM_VECTORS * 4 {
        return None;
    }
    let vector = (lin - STUBS - 1) / 4;
    let sp = if st.seg[SS].access & 0x4000 != 0 { st.gpr[ESP] } else { st.gpr[ESP] & 0xffff };
    let protected = mode.protected();
    Some(Fault {
        vector,
        frame: st.seg[SS].base.wrapping_add(sp),
        frame32: protected,
        has_error_code: protected && has_error_code(vector),
    })
}
