//! Descriptors and segment register loads.
//!
//! INTERIM VERSION written by cpu-exec; owned by cpu-sys, who replaces/extends it. What is here:
//! descriptor fetch from GDT/LDT, the data/stack segment load checks of MOV/POP Sreg and LxS
//! (null, limit, type, RPL/DPL/CPL, present), accessed bit, real/v86 loads.

use super::state::*;
use super::Cpu;
use crate::bus::Bus;

/// Unpack an 8-byte descriptor into a segment cache.
pub(crate) fn desc_to_seg(sel: u16, d: u64) -> Segment {
    let base = ((d >> 16) & 0xff_ffff) as u32 | (((d >> 56) as u32) << 24);
    let mut limit = (d & 0xffff) as u32 | (((d >> 48) & 0xf) as u32) << 16;
    let access = ((d >> 40) & 0xff) as u16 | ((((d >> 52) & 0xf) as u16) << 12);
    if access & 0x8000 != 0 {
        limit = (limit << 12) | 0xfff;
    }
    Segment { selector: sel, base, limit, access, valid: true }
}

impl Cpu {
    /// Linear address of the descriptor for `sel`, or #GP(sel) if outside its table.
    pub(crate) fn desc_addr(&self, sel: u16) -> Result<u32, Fault> {
        let idx = (sel & 0xfff8) as u32;
        let err = Fault::GeneralProtection(sel & 0xfffc);
        if sel & 4 != 0 {
            let l = &self.s.ldtr;
            if !l.valid || l.selector & 0xfffc == 0 || idx + 7 > l.limit {
                return Err(err);
            }
            Ok(l.base.wrapping_add(idx))
        } else {
            if idx + 7 > self.s.gdtr.limit as u32 {
                return Err(err);
            }
            Ok(self.s.gdtr.base.wrapping_add(idx))
        }
    }

    pub(crate) fn read_desc<B: Bus>(&mut self, bus: &mut B, sel: u16) -> Result<u64, Fault> {
        let a = self.desc_addr(sel)?;
        let lo = self.rd_sys(bus, a, 4)? as u64;
        let hi = self.rd_sys(bus, a.wrapping_add(4), 4)? as u64;
        Ok(lo | hi << 32)
    }

    /// Set the accessed bit of a code/data descriptor if clear.
    pub(crate) fn set_accessed<B: Bus>(&mut self, bus: &mut B, sel: u16, d: u64) -> Result<(), Fault> {
        if d & (1 << 40) == 0 {
            let a = self.desc_addr(sel)?;
            let b = self.rd_sys(bus, a + 5, 1)?;
            self.wr_sys(bus, a + 5, 1, b | 1)?;
        }
        Ok(())
    }

    /// MOV/POP Sreg, LDS/LES/LFS/LGS/LSS: load a data or stack segment register with every check.
    /// Not for CS (far transfers live in control.rs).
    pub(crate) fn load_seg<B: Bus>(&mut self, bus: &mut B, seg: usize, sel: u16) -> Result<(), Fault> {
        if self.s.cr0 & CR0_PE == 0 || self.s.eflags & VM != 0 {
            let s = &mut self.s.seg[seg];
            s.selector = sel;
            s.base = (sel as u32) << 4;
            s.valid = true;
            if self.s.eflags & VM != 0 {
                *s = Segment { selector: sel, base: (sel as u32) << 4, limit: 0xffff, access: 0xf3, valid: true };
            }
            return Ok(());
        }
        let cpl = self.cpl();
        let rpl = (sel & 3) as u8;
        let e = sel & 0xfffc;
        if e == 0 {
            if seg == SS {
                return Err(Fault::GeneralProtection(0));
            }
            self.s.seg[seg] = Segment { selector: sel, base: 0, limit: 0, access: 0, valid: false };
            return Ok(());
        }
        let d = self.read_desc(bus, sel)?;
        let s = desc_to_seg(sel, d);
        let dpl = s.dpl();
        let a = s.access;
        let sys = a & 0x10 == 0;
        let code = a & 0x8 != 0;
        if seg == SS {
            if rpl != cpl || sys || code || a & 2 == 0 || dpl != cpl {
                return Err(Fault::GeneralProtection(e));
            }
            if a & 0x80 == 0 {
                return Err(Fault::StackFault(e));
            }
        } else {
            if sys || (code && a & 2 == 0) {
                return Err(Fault::GeneralProtection(e));
            }
            let conforming = code && a & 4 != 0;
            if !conforming && (rpl > dpl || cpl > dpl) {
                return Err(Fault::GeneralProtection(e));
            }
            if a & 0x80 == 0 {
                return Err(Fault::NotPresent(e));
            }
        }
        self.set_accessed(bus, sel, d)?;
        let mut s = s;
        s.access |= 1;
        self.s.seg[seg] = s;
        Ok(())
    }

    /// After a privilege decrease (RET/IRET to an outer level): null data segment registers the
    /// new CPL may not use.
    pub(crate) fn null_outer_segments(&mut self) {
        let cpl = self.cpl();
        for r in [ES, DS, FS, GS] {
            let s = &self.s.seg[r];
            let code_conf = s.access & 0x8 != 0 && s.access & 0x4 != 0;
            if s.valid && !code_conf && s.dpl() < cpl {
                self.s.seg[r] = Segment { selector: 0, base: 0, limit: 0, access: 0, valid: false };
            }
        }
    }
}
