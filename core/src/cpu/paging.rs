//! Linear -> physical translation.
//!
//! INTERIM VERSION written by cpu-exec so the interpreter runs; owned by cpu-sys, who replaces it
//! (TLB, PAE + NX, PGE). What is here: 2-level walk, 4 MiB pages with CR4.PSE, U/S and R/W checks
//! with CR0.WP, A/D bits, #PF error codes and CR2. No TLB: `flush_tlb` is a no-op.

use super::mem::Access;
use super::state::*;
use super::Cpu;
use crate::bus::Bus;

impl Cpu {
    pub(crate) fn flush_tlb(&mut self) {}

    #[inline(always)]
    pub(crate) fn translate<B: Bus>(&mut self, bus: &mut B, lin: u32, acc: Access, user: bool) -> Result<u64, Fault> {
        if self.s.cr0 & CR0_PG == 0 {
            return Ok(lin as u64);
        }
        self.walk(bus, lin, acc, user)
    }

    fn pt_read<B: Bus>(bus: &mut B, p: u64) -> u32 {
        let p = p & bus.a20_mask();
        let mut b = [0u8; 4];
        if (p as usize) + 4 <= bus.ram().len() {
            b.copy_from_slice(&bus.ram()[p as usize..p as usize + 4]);
            u32::from_le_bytes(b)
        } else {
            bus.mmio_read(p, 4) as u32
        }
    }

    fn pt_write<B: Bus>(bus: &mut B, p: u64, v: u32) {
        let p = p & bus.a20_mask();
        if (p as usize) + 4 <= bus.ram().len() {
            bus.ram()[p as usize..p as usize + 4].copy_from_slice(&v.to_le_bytes());
        } else {
            bus.mmio_write(p, 4, v as u64);
        }
    }

    #[inline(never)]
    fn walk<B: Bus>(&mut self, bus: &mut B, lin: u32, acc: Access, user: bool) -> Result<u64, Fault> {
        let write = acc == Access::Write;
        let pf = |s: &mut Cpu, present: bool| {
            s.s.cr2 = lin;
            let err = present as u32 | (write as u32) << 1 | (user as u32) << 2;
            Fault::PageFault { err, cr2: lin }
        };
        let pde_a = (self.s.cr3 & 0xffff_f000) as u64 + ((lin >> 22) * 4) as u64;
        let pde = Self::pt_read(bus, pde_a);
        if pde & 1 == 0 {
            return Err(pf(self, false));
        }
        let wp = self.s.cr0 & CR0_WP != 0;
        let check = |flags: u32| -> bool {
            if user && flags & 4 == 0 {
                return false;
            }
            if write && flags & 2 == 0 && (user || wp) {
                return false;
            }
            true
        };
        if pde & 0x80 != 0 && self.s.cr4 & (1 << 4) != 0 {
            if !check(pde) {
                return Err(pf(self, true));
            }
            let nv = pde | 0x20 | if write { 0x40 } else { 0 };
            if nv != pde {
                Self::pt_write(bus, pde_a, nv);
            }
            return Ok(((pde & 0xffc0_0000) | (lin & 0x3f_ffff)) as u64);
        }
        let pte_a = (pde & 0xffff_f000) as u64 + (((lin >> 12) & 0x3ff) * 4) as u64;
        let pte = Self::pt_read(bus, pte_a);
        if pte & 1 == 0 {
            return Err(pf(self, false));
        }
        if !check(pde & pte) {
            return Err(pf(self, true));
        }
        if pde & 0x20 == 0 {
            Self::pt_write(bus, pde_a, pde | 0x20);
        }
        let nv = pte | 0x20 | if write { 0x40 } else { 0 };
        if nv != pte {
            Self::pt_write(bus, pte_a, nv);
        }
        Ok(((pte & 0xffff_f000) | (lin & 0xfff)) as u64)
    }
}
