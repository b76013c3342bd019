//! Linear -> physical translation: 32-bit paging (4 KiB pages, 4 MiB pages with CR4.PSE) and PAE
//! paging (4 KiB / 2 MiB pages, 36-bit physical addresses, execute-disable with EFER.NXE), with a
//! TLB.
//!
//! The TLB is direct-mapped on the linear page number and holds 4 KiB fragments of every page
//! (a 4 MiB page fills one entry per 4 KiB page used). Each entry caches the *combined* rights of
//! all levels of the walk (U/S and R/W of every level, any XD) and whether the leaf's dirty bit
//! is already set, so a hit decides the access without touching memory; anything it cannot decide
//! (a denied right, a write to a not-yet-dirty page) falls back to a full walk, which also gives
//! the exact #PF error code from the current tables (hardware also re-walks before faulting).
//!
//! Flushes follow the SDM (Vol. 3 4.10.4): MOV CR3 and task switches drop the non-global entries
//! only (O(1): a generation number in every non-global entry), MOV CR4 changing PGE/PAE/PSE and
//! MOV CR0 changing PG drop everything, INVLPG drops the page (all fragments of a large page).
//! Staleness is architectural: a PTE changed in memory without INVLPG keeps translating the old
//! way until an entry is evicted, exactly what guests must expect from hardware.
//!
//! PAE's four PDPTEs are loaded into registers on MOV CR3 / MOV CR0 / MOV CR4 (checked: a reserved
//! bit is #GP(0) on the MOV, SDM 4.4.1) and on task switches; `set_state` reloads them lazily.
//!
//! The data page cache in mem.rs (linear page -> RAM page, per privilege) is filled from this TLB
//! and flushed by every operation that flushes the TLB (a superset), so it never outlives a TLB
//! entry it came from.

use super::mem::Access;
use super::state::*;
use super::Cpu;
use crate::bus::Bus;

/// Entries in the TLB (direct-mapped on the linear page number).
pub(crate) const TLB_SIZE: usize = 1024;

/// Rights cached in a TLB entry.
const T_USER: u8 = 1; // every level U/S=1
const T_WRITE: u8 = 2; // every level R/W=1
const T_EXEC: u8 = 4; // no level has XD=1 (or EFER.NXE=0)
const T_DIRTY: u8 = 8; // the leaf's D bit is set
const T_GLOBAL: u8 = 16; // G=1 in the leaf with CR4.PGE=1
const T_LARGE: u8 = 32; // fragment of a 4 MiB / 2 MiB page

/// CR4 bits.
pub const CR4_TSD: u32 = 1 << 2;
pub const CR4_DE: u32 = 1 << 3;
pub const CR4_PSE: u32 = 1 << 4;
pub const CR4_PAE: u32 = 1 << 5;
pub const CR4_MCE: u32 = 1 << 6;
pub const CR4_PGE: u32 = 1 << 7;
pub const CR4_OSFXSR: u32 = 1 << 9;

/// EFER.NXE.
pub const EFER_NXE: u64 = 1 << 11;

/// Physical address width with PAE (CPUID has no leaf 0x80000008 here, so 36 bits, SDM 4.1.4).
const MAXPHYADDR: u32 = 36;
/// PAE entry bits that must be zero (above MAXPHYADDR; bit 63 XD is handled separately).
const PAE_RSVD_HI: u64 = ((1u64 << 63) - 1) & !((1u64 << MAXPHYADDR) - 1);
const PAE_ADDR: u64 = ((1u64 << MAXPHYADDR) - 1) & !0xfff;

// #PF error code bits.
const PF_P: u32 = 1;
const PF_W: u32 = 2;
const PF_U: u32 = 4;
const PF_RSVD: u32 = 8;
const PF_ID: u32 = 16;

#[derive(Clone, Copy, Default)]
struct TlbEntry {
    /// Linear page | 1 (valid); 0 = empty.
    tag: u32,
    /// Flush generation the entry was filled in (ignored for global entries).
    gen: u32,
    /// Physical page address (before the A20 mask).
    phys: u64,
    rights: u8,
}

pub(crate) struct Tlb {
    e: [TlbEntry; TLB_SIZE],
    /// Current generation: MOV CR3 increments it, dropping every non-global entry at once.
    gen: u32,
    /// A large-page fragment was filled since the last full flush (INVLPG must then search).
    has_large: bool,
    /// PAE page-directory-pointer-table registers.
    pdpte: [u64; 4],
    /// `pdpte` must be reloaded from memory before the next PAE walk (after `set_state`).
    pdpte_stale: bool,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb { e: [TlbEntry::default(); TLB_SIZE], gen: 1, has_large: false, pdpte: [0; 4], pdpte_stale: true }
    }
}

impl Tlb {
    /// Drop everything, global entries included.
    fn flush_all(&mut self) {
        for e in self.e.iter_mut() {
            e.tag = 0;
        }
        self.has_large = false;
    }

    /// Drop the non-global entries (MOV CR3, task switch).
    fn flush_nonglobal(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            // Wrapped: old generations could match again; start over.
            self.flush_all();
            self.gen = 1;
        }
    }
}

/// The outcome of a walk before it is cached.
struct Walk {
    phys: u64,
    rights: u8,
}

impl Cpu {
    /// Everything, global entries too (MOV CR4 paging bits, MOV CR0.PG, `set_state`).
    pub(crate) fn flush_tlb(&mut self) {
        self.tlb.flush_all();
        self.tlb.pdpte_stale = true;
    }

    /// MOV CR3 / task switch: non-global entries only.
    pub(crate) fn flush_tlb_nonglobal(&mut self) {
        self.tlb.flush_nonglobal();
    }

    /// PDPTEs must be reloaded before the next PAE walk (task switch loaded CR3).
    pub(crate) fn mark_pdptes_stale(&mut self) {
        self.tlb.pdpte_stale = true;
    }

    /// INVLPG: the page holding `lin` (every fragment of a large page), global or not.
    pub(crate) fn invlpg(&mut self, lin: u32) {
        let page = lin & !0xfff;
        let i = (page >> 12) as usize & (TLB_SIZE - 1);
        let e = &mut self.tlb.e[i];
        if e.tag & !0xfff == page {
            e.tag = 0;
        }
        let large = self.tlb.has_large;
        if large {
            // The page may be a fragment of a 4 MiB (2 MiB with PAE) page: drop every fragment of
            // the large page around `lin` (the mask covers both sizes; dropping more is allowed).
            for e in self.tlb.e.iter_mut() {
                if e.rights & T_LARGE != 0 && (e.tag ^ lin) & 0xffc0_0000 == 0 {
                    e.tag = 0;
                }
            }
            self.flush_page_cache();
        } else {
            self.flush_page_cache_entry(page);
        }
    }

    /// Load the PAE PDPTE registers from the table CR3 points to; #GP(0) when a present entry
    /// has reserved bits set (SDM 4.4.1: checked on the MOV that loads them).
    pub(crate) fn load_pdptes<B: Bus>(&mut self, bus: &mut B, check: bool) -> Result<(), Fault> {
        let base = (self.s.cr3 & 0xffff_ffe0) as u64;
        let mut p = [0u64; 4];
        for (i, e) in p.iter_mut().enumerate() {
            *e = Self::pt_read64(bus, base + 8 * i as u64);
            // Reserved: bits 2:1, 8:5 and above MAXPHYADDR (bit 63 too: no XD in PDPTEs).
            if check && *e & 1 != 0 && (*e & 0x1e6 != 0 || *e & (PAE_RSVD_HI | 1 << 63) != 0) {
                return Err(Fault::GeneralProtection(0));
            }
        }
        self.tlb.pdpte = p;
        self.tlb.pdpte_stale = false;
        Ok(())
    }

    /// Translate `lin` for an access; `user` = the access is made at CPL 3 (not an implicit
    /// supervisor access).
    #[inline(always)]
    pub(crate) fn translate<B: Bus>(&mut self, bus: &mut B, lin: u32, acc: Access, user: bool) -> Result<u64, Fault> {
        if self.s.cr0 & CR0_PG == 0 {
            return Ok(lin as u64);
        }
        let e = &self.tlb.e[(lin >> 12) as usize & (TLB_SIZE - 1)];
        if e.tag == (lin & !0xfff) | 1 && (e.gen == self.tlb.gen || e.rights & T_GLOBAL != 0) {
            let wp = self.s.cr0 & CR0_WP != 0;
            let need = match acc {
                Access::Read => 0,
                Access::Write => T_DIRTY | if user || wp { T_WRITE } else { 0 },
                Access::Exec => T_EXEC,
            } | if user { T_USER } else { 0 };
            if e.rights & need == need {
                return Ok(e.phys | (lin & 0xfff) as u64);
            }
        }
        self.walk(bus, lin, acc, user)
    }

    fn pt_read<B: Bus>(bus: &mut B, p: u64) -> u32 {
        let p = p & bus.a20_mask();
        let ram = bus.ram();
        if (p as usize) + 4 <= ram.len() {
            let i = p as usize;
            u32::from_le_bytes([ram[i], ram[i + 1], ram[i + 2], ram[i + 3]])
        } else {
            bus.mmio_read(p, 4) as u32
        }
    }

    fn pt_read64<B: Bus>(bus: &mut B, p: u64) -> u64 {
        Self::pt_read(bus, p) as u64 | (Self::pt_read(bus, p + 4) as u64) << 32
    }

    /// A/D bits live in the low dword in both formats.
    fn pt_write<B: Bus>(bus: &mut B, p: u64, v: u32) {
        let p = p & bus.a20_mask();
        if (p as usize) + 4 <= bus.ram().len() {
            bus.ram()[p as usize..p as usize + 4].copy_from_slice(&v.to_le_bytes());
        } else {
            bus.mmio_write(p, 4, v as u64);
        }
    }

    /// Full walk: checks, A/D updates, TLB fill. Faults set CR2 and return the error code.
    #[inline(never)]
    fn walk<B: Bus>(&mut self, bus: &mut B, lin: u32, acc: Access, user: bool) -> Result<u64, Fault> {
        let pae = self.s.cr4 & CR4_PAE != 0;
        let r = if pae { self.walk_pae(bus, lin, acc, user) } else { self.walk_legacy(bus, lin, acc, user) };
        match r {
            Ok(w) => {
                let mut rights = w.rights;
                if acc == Access::Write {
                    rights |= T_DIRTY;
                }
                let i = (lin >> 12) as usize & (TLB_SIZE - 1);
                if rights & T_LARGE != 0 {
                    self.tlb.has_large = true;
                }
                self.tlb.e[i] = TlbEntry { tag: (lin & !0xfff) | 1, gen: self.tlb.gen, phys: w.phys, rights };
                Ok(w.phys | (lin & 0xfff) as u64)
            }
            Err(err) => {
                // A faulting access also drops the stale entry (SDM 4.10.4.1).
                let i = (lin >> 12) as usize & (TLB_SIZE - 1);
                if self.tlb.e[i].tag & !0xfff == lin & !0xfff {
                    self.tlb.e[i].tag = 0;
                }
                let nxe_ids = pae && self.s.efer & EFER_NXE != 0;
                let err = err
                    | if acc == Access::Write { PF_W } else { 0 }
                    | if user { PF_U } else { 0 }
                    | if acc == Access::Exec && nxe_ids { PF_ID } else { 0 };
                self.s.cr2 = lin;
                Err(Fault::PageFault { err, cr2: lin })
            }
        }
    }

    /// The rights check shared by both formats; `Err` holds the P/RSVD part of the error code.
    #[inline(always)]
    fn check_rights(&self, rights: u8, acc: Access, user: bool) -> Result<(), u32> {
        if user && rights & T_USER == 0 {
            return Err(PF_P);
        }
        if acc == Access::Write && rights & T_WRITE == 0 && (user || self.s.cr0 & CR0_WP != 0) {
            return Err(PF_P);
        }
        if acc == Access::Exec && rights & T_EXEC == 0 {
            return Err(PF_P);
        }
        Ok(())
    }

    fn walk_legacy<B: Bus>(&mut self, bus: &mut B, lin: u32, acc: Access, user: bool) -> Result<Walk, u32> {
        let write = acc == Access::Write;
        let pde_a = (self.s.cr3 & 0xffff_f000) as u64 + ((lin >> 22) * 4) as u64;
        let pde = Self::pt_read(bus, pde_a);
        if pde & 1 == 0 {
            return Err(0);
        }
        let pge = self.s.cr4 & CR4_PGE != 0;
        let rights_of = |e: u32| -> u8 { ((e >> 2) & 1) as u8 * T_USER | ((e >> 1) & 1) as u8 * T_WRITE | T_EXEC };
        if pde & 0x80 != 0 && self.s.cr4 & CR4_PSE != 0 {
            // 4 MiB page. Without PSE-36 (not advertised) bits 21:13 are reserved.
            if pde & 0x003f_e000 != 0 {
                return Err(PF_P | PF_RSVD);
            }
            let mut rights = rights_of(pde) | T_LARGE;
            if pge && pde & 0x100 != 0 {
                rights |= T_GLOBAL;
            }
            self.check_rights(rights, acc, user)?;
            let nv = pde | 0x20 | if write { 0x40 } else { 0 };
            if nv != pde {
                Self::pt_write(bus, pde_a, nv);
            }
            if pde & 0x40 != 0 {
                rights |= T_DIRTY;
            }
            let phys = ((pde & 0xffc0_0000) | (lin & 0x003f_f000)) as u64;
            return Ok(Walk { phys, rights });
        }
        let pte_a = (pde & 0xffff_f000) as u64 + (((lin >> 12) & 0x3ff) * 4) as u64;
        let pte = Self::pt_read(bus, pte_a);
        if pte & 1 == 0 {
            return Err(0);
        }
        let mut rights = rights_of(pde) & rights_of(pte);
        if pge && pte & 0x100 != 0 {
            rights |= T_GLOBAL;
        }
        self.check_rights(rights, acc, user)?;
        if pde & 0x20 == 0 {
            Self::pt_write(bus, pde_a, pde | 0x20);
        }
        let nv = pte | 0x20 | if write { 0x40 } else { 0 };
        if nv != pte {
            Self::pt_write(bus, pte_a, nv);
        }
        if pte & 0x40 != 0 {
            rights |= T_DIRTY;
        }
        Ok(Walk { phys: (pte & 0xffff_f000) as u64, rights })
    }

    fn walk_pae<B: Bus>(&mut self, bus: &mut B, lin: u32, acc: Access, user: bool) -> Result<Walk, u32> {
        let write = acc == Access::Write;
        if self.tlb.pdpte_stale {
            let _ = self.load_pdptes(bus, false);
        }
        let nxe = self.s.efer & EFER_NXE != 0;
        // XD is a reserved bit unless EFER.NXE=1.
        let rsvd_hi = if nxe { PAE_RSVD_HI } else { PAE_RSVD_HI | 1 << 63 };
        let pdpte = self.tlb.pdpte[(lin >> 30) as usize];
        if pdpte & 1 == 0 {
            return Err(0);
        }
        if pdpte & 0x1e6 != 0 || pdpte & (PAE_RSVD_HI | 1 << 63) != 0 {
            return Err(PF_P | PF_RSVD);
        }
        let pge = self.s.cr4 & CR4_PGE != 0;
        let rights_of = |e: u64| -> u8 {
            ((e >> 2) & 1) as u8 * T_USER | ((e >> 1) & 1) as u8 * T_WRITE | if nxe && e >> 63 != 0 { 0 } else { T_EXEC }
        };
        let pde_a = (pdpte & PAE_ADDR) + (((lin >> 21) & 0x1ff) * 8) as u64;
        let pde = Self::pt_read64(bus, pde_a);
        if pde & 1 == 0 {
            return Err(0);
        }
        if pde & rsvd_hi != 0 {
            return Err(PF_P | PF_RSVD);
        }
        if pde & 0x80 != 0 {
            // 2 MiB page: bits 20:13 reserved.
            if pde & 0x001f_e000 != 0 {
                return Err(PF_P | PF_RSVD);
            }
            let mut rights = rights_of(pde) | T_LARGE;
            if pge && pde & 0x100 != 0 {
                rights |= T_GLOBAL;
            }
            self.check_rights(rights, acc, user)?;
            let lo = pde as u32;
            let nv = lo | 0x20 | if write { 0x40 } else { 0 };
            if nv != lo {
                Self::pt_write(bus, pde_a, nv);
            }
            if lo & 0x40 != 0 {
                rights |= T_DIRTY;
            }
            let phys = (pde & PAE_ADDR & !0x1f_ffff) | (lin & 0x001f_f000) as u64;
            return Ok(Walk { phys, rights });
        }
        let pte_a = (pde & PAE_ADDR) + (((lin >> 12) & 0x1ff) * 8) as u64;
        let pte = Self::pt_read64(bus, pte_a);
        if pte & 1 == 0 {
            return Err(0);
        }
        if pte & rsvd_hi != 0 {
            return Err(PF_P | PF_RSVD);
        }
        let mut rights = rights_of(pde) & rights_of(pte);
        if pge && pte & 0x100 != 0 {
            rights |= T_GLOBAL;
        }
        self.check_rights(rights, acc, user)?;
        if pde & 0x20 == 0 {
            Self::pt_write(bus, pde_a, pde as u32 | 0x20);
        }
        let lo = pte as u32;
        let nv = lo | 0x20 | if write { 0x40 } else { 0 };
        if nv != lo {
            Self::pt_write(bus, pte_a, nv);
        }
        if lo & 0x40 != 0 {
            rights |= T_DIRTY;
        }
        Ok(Walk { phys: pte & PAE_ADDR, rights })
    }
}
