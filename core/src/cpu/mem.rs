//! The memory access fast path: segment limit/type checks, linear -> physical (paging.rs), then
//! RAM straight from `bus.ram()` or MMIO. Accesses crossing a page translate both pages before
//! touching anything, so a #PF on the second page leaves memory unchanged (restartable).

use super::debug::DBG_DATA;
use super::state::*;
use super::{Cpu, Res};
use crate::bus::{Bus, PageKind};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Read,
    Write,
    Exec,
}

impl Cpu {
    /// Linear address of `seg:off` for an access of `len` bytes, with the limit and type checks.
    #[inline(always)]
    pub(crate) fn lin(&self, seg: usize, off: u32, len: u32, acc: Access) -> Result<u32, Fault> {
        let d = &self.s.seg[seg];
        let fault = || if seg == SS { Fault::StackFault(0) } else { Fault::GeneralProtection(0) };
        let last = off.wrapping_add(len - 1);
        if self.s.cr0 & CR0_PE != 0 && self.s.eflags & VM == 0 {
            if !d.valid {
                return Err(fault());
            }
            let t = d.access & 0xf;
            let code = d.access & 0x8 != 0;
            match acc {
                Access::Write if code || t & 2 == 0 => return Err(fault()),
                Access::Read if code && t & 2 == 0 => return Err(fault()),
                _ => {}
            }
            if !code && t & 4 != 0 {
                // Expand-down: valid offsets are limit+1 ..= 0xffff / 0xffffffff.
                let top = if d.access & 0x4000 != 0 { u32::MAX } else { 0xffff };
                if off <= d.limit || last > top || last < off {
                    return Err(fault());
                }
                return Ok(d.base.wrapping_add(off));
            }
        }
        if last > d.limit || last < off {
            return Err(fault());
        }
        Ok(d.base.wrapping_add(off))
    }

    #[inline(always)]
    fn user(&self) -> bool {
        self.s.cpl() == 3
    }

    /// Read `sz` (1, 2, 4) bytes at a linear address.
    #[inline(always)]
    pub(crate) fn read_lin<B: Bus>(&mut self, bus: &mut B, lin: u32, sz: u32, user: bool) -> Result<u32, Fault> {
        if (lin & 0xfff) + sz <= 0x1000 {
            let i = ((lin >> 12) as usize) & (PAGE_CACHE - 1);
            let tag = (lin & !0xfff) | 1 | ((user as u32) << 1);
            if self.pc.rtag[i] == tag {
                let a = (self.pc.phys[i] | (lin & 0xfff) as u64) as usize;
                let ram = bus.ram();
                return Ok(match sz {
                    1 => ram[a] as u32,
                    2 => u16::from_le_bytes([ram[a], ram[a + 1]]) as u32,
                    _ => u32::from_le_bytes([ram[a], ram[a + 1], ram[a + 2], ram[a + 3]]),
                });
            }
            let p = self.translate(bus, lin, Access::Read, user)? & bus.a20_mask();
            if self.dbg & DBG_DATA != 0 {
                self.data_bp(lin, sz, false);
            } else if matches!(bus.page_kind(p >> 12), PageKind::Ram | PageKind::RamReadOnly) {
                self.pc.rtag[i] = tag;
                if self.pc.wtag[i] != tag {
                    self.pc.wtag[i] = 0;
                }
                self.pc.phys[i] = p & !0xfff;
            }
            Ok(phys_read(bus, p, sz))
        } else {
            let p0 = self.translate(bus, lin, Access::Read, user)?;
            let p1 = self.translate(bus, (lin | 0xfff).wrapping_add(1), Access::Read, user)?;
            if self.dbg & DBG_DATA != 0 {
                self.data_bp(lin, sz, false);
            }
            let first = 0x1000 - (lin & 0xfff);
            let mut v = 0u32;
            for i in 0..sz {
                let p = if i < first { p0 + i as u64 } else { p1 + (i - first) as u64 };
                v |= phys_read(bus, p, 1) << (8 * i);
            }
            Ok(v)
        }
    }

    /// Write `sz` bytes at a linear address.
    #[inline(always)]
    pub(crate) fn write_lin<B: Bus>(&mut self, bus: &mut B, lin: u32, sz: u32, v: u32, user: bool) -> Result<(), Fault> {
        if (lin & 0xfff) + sz <= 0x1000 {
            let i = ((lin >> 12) as usize) & (PAGE_CACHE - 1);
            let tag = (lin & !0xfff) | 1 | ((user as u32) << 1);
            if self.pc.wtag[i] == tag {
                let a = (self.pc.phys[i] | (lin & 0xfff) as u64) as usize;
                let ram = bus.ram();
                match sz {
                    1 => ram[a] = v as u8,
                    2 => ram[a..a + 2].copy_from_slice(&(v as u16).to_le_bytes()),
                    _ => ram[a..a + 4].copy_from_slice(&v.to_le_bytes()),
                }
                return Ok(());
            }
            let p = self.translate(bus, lin, Access::Write, user)? & bus.a20_mask();
            if self.dbg & DBG_DATA != 0 {
                self.data_bp(lin, sz, true);
            } else if bus.page_kind(p >> 12) == PageKind::Ram {
                // A write walk has set the dirty bit, so later writes may skip the walk.
                self.pc.rtag[i] = tag;
                self.pc.wtag[i] = tag;
                self.pc.phys[i] = p & !0xfff;
            }
            phys_write(bus, p, sz, v);
        } else {
            let p0 = self.translate(bus, lin, Access::Write, user)?;
            let p1 = self.translate(bus, (lin | 0xfff).wrapping_add(1), Access::Write, user)?;
            if self.dbg & DBG_DATA != 0 {
                self.data_bp(lin, sz, true);
            }
            let first = 0x1000 - (lin & 0xfff);
            for i in 0..sz {
                let p = if i < first { p0 + i as u64 } else { p1 + (i - first) as u64 };
                phys_write(bus, p, 1, v >> (8 * i));
            }
        }
        Ok(())
    }

    /// Check that a write of `sz` bytes at `lin` would not fault (for multi-part stores).
    pub(crate) fn probe_write<B: Bus>(&mut self, bus: &mut B, lin: u32, sz: u32, user: bool) -> Result<(), Fault> {
        self.translate(bus, lin, Access::Write, user)?;
        let last = lin.wrapping_add(sz - 1);
        if last & !0xfff != lin & !0xfff {
            self.translate(bus, last, Access::Write, user)?;
        }
        Ok(())
    }

    // ---- segment:offset accesses with the current privilege ----

    #[inline(always)]
    pub(crate) fn rd<B: Bus>(&mut self, bus: &mut B, seg: usize, off: u32, sz: u8) -> Res<u32> {
        let l = self.lin(seg, off, sz as u32, Access::Read)?;
        if l & (sz as u32 - 1) != 0 && self.alignment_check() {
            return Err(Fault::AlignmentCheck.into());
        }
        let u = self.user();
        Ok(self.read_lin(bus, l, sz as u32, u)?)
    }

    #[inline(always)]
    pub(crate) fn wr<B: Bus>(&mut self, bus: &mut B, seg: usize, off: u32, sz: u8, v: u32) -> Res<()> {
        let l = self.lin(seg, off, sz as u32, Access::Write)?;
        if l & (sz as u32 - 1) != 0 && self.alignment_check() {
            return Err(Fault::AlignmentCheck.into());
        }
        let u = self.user();
        Ok(self.write_lin(bus, l, sz as u32, v, u)?)
    }

    /// Check a `len`-byte write at seg:off would succeed (segment and paging).
    pub(crate) fn check_wr<B: Bus>(&mut self, bus: &mut B, seg: usize, off: u32, len: u32) -> Res<()> {
        let l = self.lin(seg, off, len, Access::Write)?;
        let u = self.user();
        Ok(self.probe_write(bus, l, len, u)?)
    }

    /// Supervisor (implicit) accesses: descriptor tables, TSS, IDT.
    pub(crate) fn rd_sys<B: Bus>(&mut self, bus: &mut B, lin: u32, sz: u32) -> Result<u32, Fault> {
        self.read_lin(bus, lin, sz, false)
    }
    pub(crate) fn wr_sys<B: Bus>(&mut self, bus: &mut B, lin: u32, sz: u32, v: u32) -> Result<(), Fault> {
        self.write_lin(bus, lin, sz, v, false)
    }

    // ---- instruction fetch ----

    #[inline(always)]
    pub(crate) fn fetch8<B: Bus>(&mut self, bus: &mut B) -> Res<u8> {
        let off = self.ip;
        let cs = &self.s.seg[CS];
        if off > cs.limit {
            return Err(Fault::GeneralProtection(0).into());
        }
        let lin = cs.base.wrapping_add(off);
        self.ip = off.wrapping_add(1);
        if lin & !0xfff == self.fetch_tag {
            let p = (self.fetch_phys | (lin & 0xfff) as u64) as usize;
            return Ok(bus.ram()[p]);
        }
        self.fetch_slow(bus, lin)
    }

    #[inline(never)]
    fn fetch_slow<B: Bus>(&mut self, bus: &mut B, lin: u32) -> Res<u8> {
        let u = self.user();
        let p = self.translate(bus, lin, Access::Exec, u)? & bus.a20_mask();
        if matches!(bus.page_kind(p >> 12), PageKind::Ram | PageKind::RamReadOnly) {
            // A20 folds whole pages, so caching the masked page is exact.
            self.fetch_tag = lin & !0xfff;
            self.fetch_phys = p & !0xfff;
            Ok(bus.ram()[p as usize])
        } else {
            Ok(bus.mmio_read(p, 1) as u8)
        }
    }

    /// `n` bytes of the instruction stream at once when they lie in the cached code page and
    /// inside the CS limit; `None` sends the caller to the byte-wise path.
    #[inline(always)]
    fn fetch_fast<B: Bus, const N: usize>(&mut self, bus: &mut B) -> Option<[u8; N]> {
        let off = self.ip;
        let cs = &self.s.seg[CS];
        let last = off.wrapping_add(N as u32 - 1);
        if last > cs.limit || last < off {
            return None;
        }
        let lin = cs.base.wrapping_add(off);
        if lin & !0xfff != self.fetch_tag || (lin & 0xfff) > 0x1000 - N as u32 {
            return None;
        }
        let p = (self.fetch_phys | (lin & 0xfff) as u64) as usize;
        let b = bus.ram().get(p..p + N)?.try_into().ok()?;
        self.ip = off.wrapping_add(N as u32);
        Some(b)
    }

    #[inline(always)]
    pub(crate) fn fetch16<B: Bus>(&mut self, bus: &mut B) -> Res<u16> {
        if let Some(b) = self.fetch_fast::<B, 2>(bus) {
            return Ok(u16::from_le_bytes(b));
        }
        let a = self.fetch8(bus)? as u16;
        let b = self.fetch8(bus)? as u16;
        Ok(a | (b << 8))
    }

    #[inline(always)]
    pub(crate) fn fetch32<B: Bus>(&mut self, bus: &mut B) -> Res<u32> {
        if let Some(b) = self.fetch_fast::<B, 4>(bus) {
            return Ok(u32::from_le_bytes(b));
        }
        let a = self.fetch16(bus)? as u32;
        let b = self.fetch16(bus)? as u32;
        Ok(a | (b << 16))
    }

    /// Immediate of `sz` bytes (1, 2, 4).
    #[inline(always)]
    pub(crate) fn imm<B: Bus>(&mut self, bus: &mut B, sz: u8) -> Res<u32> {
        Ok(match sz {
            1 => self.fetch8(bus)? as u32,
            2 => self.fetch16(bus)? as u32,
            _ => self.fetch32(bus)?,
        })
    }

    /// Drop every cached translation (fetch page and data page cache). Called on anything that
    /// can change linear->physical mappings or page kinds: CR0/CR3/CR4 writes, INVLPG, a new bus
    /// map generation, `set_state`. Far transfers call it too (cheap, and keeps CS changes simple).
    pub(crate) fn invalidate_fetch(&mut self) {
        self.fetch_tag = 1;
    }

    /// Drop the cached translations of one linear page (INVLPG).
    pub(crate) fn flush_page_cache_entry(&mut self, page: u32) {
        let i = ((page >> 12) as usize) & (PAGE_CACHE - 1);
        if self.pc.rtag[i] & !0xfff == page {
            self.pc.rtag[i] = 0;
        }
        if self.pc.wtag[i] & !0xfff == page {
            self.pc.wtag[i] = 0;
        }
        if self.fetch_tag == page {
            self.fetch_tag = 1;
        }
    }

    pub(crate) fn flush_page_cache(&mut self) {
        self.fetch_tag = 1;
        self.pc.rtag = [0; PAGE_CACHE];
        self.pc.wtag = [0; PAGE_CACHE];
    }
}

/// Entries in the direct-mapped data page cache.
pub(crate) const PAGE_CACHE: usize = 256;

/// Direct-mapped cache of linear page -> RAM page for data accesses. Tags are the page-aligned
/// linear address | 1 (valid) | user << 1; `wtag` only holds pages that a write walk has found
/// writable RAM (so the dirty bit is already set), `rtag` pages readable straight from RAM.
#[derive(Clone)]
pub(crate) struct PageCache {
    pub rtag: [u32; PAGE_CACHE],
    pub wtag: [u32; PAGE_CACHE],
    pub phys: [u64; PAGE_CACHE],
}

impl Default for PageCache {
    fn default() -> Self {
        PageCache { rtag: [0; PAGE_CACHE], wtag: [0; PAGE_CACHE], phys: [0; PAGE_CACHE] }
    }
}

#[inline(always)]
fn phys_read<B: Bus>(bus: &mut B, p: u64, sz: u32) -> u32 {
    let p = p & bus.a20_mask();
    match bus.page_kind(p >> 12) {
        PageKind::Ram | PageKind::RamReadOnly => {
            let ram = bus.ram();
            let i = p as usize;
            match sz {
                1 => ram[i] as u32,
                2 => u16::from_le_bytes([ram[i], ram[i + 1]]) as u32,
                _ => u32::from_le_bytes([ram[i], ram[i + 1], ram[i + 2], ram[i + 3]]),
            }
        }
        PageKind::Mmio => bus.mmio_read(p, sz as u8) as u32,
    }
}

#[inline(always)]
fn phys_write<B: Bus>(bus: &mut B, p: u64, sz: u32, v: u32) {
    let p = p & bus.a20_mask();
    match bus.page_kind(p >> 12) {
        PageKind::Ram => {
            let ram = bus.ram();
            let i = p as usize;
            match sz {
                1 => ram[i] = v as u8,
                2 => ram[i..i + 2].copy_from_slice(&(v as u16).to_le_bytes()),
                _ => ram[i..i + 4].copy_from_slice(&v.to_le_bytes()),
            }
        }
        _ => bus.mmio_write(p, sz as u8, v as u64),
    }
}
