//! Hardware task switch (TSS), for JMP/CALL to a TSS or task gate, interrupts through a task gate
//! and IRET with NT set.
//!
//! INTERIM VERSION written by cpu-exec; owned by cpu-sys, who replaces/extends it. 16- and 32-bit
//! TSS formats, busy bits, back link and NT, CR3 reload, CR0.TS, segment loads with #TS. Not yet
//! differential-tested; debug trap bit (T) not honoured.

use super::segment::desc_to_seg;
use super::state::*;
use super::Cpu;
use crate::bus::Bus;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Source {
    Jmp,
    Call,
    Int,
    Iret,
}

impl Cpu {
    /// Switch to the task whose TSS selector is `sel`. `self.s.eip` must already be the EIP to
    /// save for the outgoing task.
    pub(crate) fn task_switch<B: Bus>(&mut self, bus: &mut B, sel: u16, src: Source, err: Option<u32>) -> Result<(), Fault> {
        let e = sel & 0xfffc;
        if sel & 4 != 0 {
            return Err(Fault::GeneralProtection(e));
        }
        let d = self.read_desc(bus, sel)?;
        let mut ntss = desc_to_seg(sel, d);
        let t = ntss.access & 0x1f;
        let want_busy = src == Source::Iret;
        let ok = match t {
            0x01 | 0x09 => !want_busy,
            0x03 | 0x0b => want_busy,
            _ => false,
        };
        if !ok {
            return Err(if src == Source::Iret { Fault::InvalidTss(e) } else { Fault::GeneralProtection(e) });
        }
        if ntss.access & 0x80 == 0 {
            return Err(Fault::NotPresent(e));
        }
        let n32 = t & 8 != 0;
        if ntss.limit < if n32 { 0x67 } else { 0x2b } {
            return Err(Fault::InvalidTss(e));
        }
        // Save the outgoing task.
        let old = self.s.tr;
        let o32 = old.access & 8 != 0;
        let mut flags = self.eflags();
        if src == Source::Iret {
            flags &= !NT;
        }
        let ob = old.base;
        if o32 {
            self.wr_sys(bus, ob + 0x20, 4, self.s.eip)?;
            self.wr_sys(bus, ob + 0x24, 4, flags)?;
            for i in 0..8 {
                self.wr_sys(bus, ob + 0x28 + 4 * i, 4, self.s.gpr[i as usize])?;
            }
            for i in 0..6 {
                self.wr_sys(bus, ob + 0x48 + 4 * i, 2, self.s.seg[i as usize].selector as u32)?;
            }
        } else {
            self.wr_sys(bus, ob + 0x0e, 2, self.s.eip)?;
            self.wr_sys(bus, ob + 0x10, 2, flags)?;
            for i in 0..8 {
                self.wr_sys(bus, ob + 0x12 + 2 * i, 2, self.s.gpr[i as usize])?;
            }
            for i in 0..4 {
                self.wr_sys(bus, ob + 0x22 + 2 * i, 2, self.s.seg[i as usize].selector as u32)?;
            }
        }
        if matches!(src, Source::Jmp | Source::Iret) {
            let a = self.desc_addr(old.selector)?;
            let b = self.rd_sys(bus, a + 5, 1)?;
            self.wr_sys(bus, a + 5, 1, b & !2)?;
        }
        if matches!(src, Source::Call | Source::Int) {
            self.wr_sys(bus, ntss.base, 2, old.selector as u32)?;
        }
        if src != Source::Iret {
            let a = self.desc_addr(sel)?;
            let b = self.rd_sys(bus, a + 5, 1)?;
            self.wr_sys(bus, a + 5, 1, b | 2)?;
            ntss.access |= 2;
        }
        // Load the incoming task.
        let nb = ntss.base;
        let (eip, mut nflags, gpr, sels, ldt, cr3);
        let mut g = [0u32; 8];
        let mut s6 = [0u16; 6];
        if n32 {
            cr3 = Some(self.rd_sys(bus, nb + 0x1c, 4)?);
            eip = self.rd_sys(bus, nb + 0x20, 4)?;
            nflags = self.rd_sys(bus, nb + 0x24, 4)?;
            for i in 0..8 {
                g[i] = self.rd_sys(bus, nb + 0x28 + 4 * i as u32, 4)?;
            }
            for i in 0..6 {
                s6[i] = self.rd_sys(bus, nb + 0x48 + 4 * i as u32, 2)? as u16;
            }
            ldt = self.rd_sys(bus, nb + 0x60, 2)? as u16;
        } else {
            cr3 = None;
            eip = self.rd_sys(bus, nb + 0x0e, 2)?;
            nflags = self.rd_sys(bus, nb + 0x10, 2)? | (flags & 0xffff_0000);
            for i in 0..8 {
                g[i] = (self.s.gpr[i] & 0xffff_0000) | self.rd_sys(bus, nb + 0x12 + 2 * i as u32, 2)?;
            }
            for i in 0..4 {
                s6[i] = self.rd_sys(bus, nb + 0x22 + 2 * i as u32, 2)? as u16;
            }
            ldt = self.rd_sys(bus, nb + 0x2a, 2)? as u16;
        }
        gpr = g;
        sels = s6;
        if matches!(src, Source::Call | Source::Int) {
            nflags |= NT;
        }
        // Commit the register state; segment checks follow (faults there are in the new task).
        self.s.tr = ntss;
        if let Some(c) = cr3 {
            if self.s.cr0 & CR0_PG != 0 {
                self.s.cr3 = c;
            }
        }
        self.s.gpr = gpr;
        self.s.eip = eip;
        self.set_eflags_raw(nflags);
        self.s.cr0 |= CR0_TS;
        if cr3.is_some() {
            // A CR3 load: non-global entries go, PAE PDPTEs are reloaded before the next walk.
            self.flush_tlb_nonglobal();
            self.mark_pdptes_stale();
        }
        self.flush_page_cache();
        for (i, s) in sels.iter().enumerate() {
            self.s.seg[i].selector = *s;
        }
        // LDT.
        let le = ldt & 0xfffc;
        if le == 0 {
            self.s.ldtr = Segment { selector: ldt, base: 0, limit: 0, access: 0, valid: false };
        } else {
            if ldt & 4 != 0 {
                return Err(Fault::InvalidTss(le));
            }
            let d = self.read_desc(bus, ldt).map_err(|_| Fault::InvalidTss(le))?;
            let l = desc_to_seg(ldt, d);
            if l.access & 0x1f != 0x02 {
                return Err(Fault::InvalidTss(le));
            }
            if l.access & 0x80 == 0 {
                return Err(Fault::NotPresent(le));
            }
            self.s.ldtr = l;
        }
        if nflags & VM != 0 {
            for i in 0..6 {
                let s = sels[i];
                self.s.seg[i] = Segment { selector: s, base: (s as u32) << 4, limit: 0xffff, access: 0xf3, valid: true };
            }
        } else {
            // CS first: it sets the CPL the other checks use.
            let cs = sels[CS];
            let ce = cs & 0xfffc;
            if ce == 0 {
                return Err(Fault::InvalidTss(0));
            }
            let d = self.read_desc(bus, cs).map_err(|_| Fault::InvalidTss(ce))?;
            let mut c = desc_to_seg(cs, d);
            if c.access & 0x18 != 0x18 {
                return Err(Fault::InvalidTss(ce));
            }
            let conforming = c.access & 4 != 0;
            if (conforming && c.dpl() > (cs & 3) as u8) || (!conforming && c.dpl() != (cs & 3) as u8) {
                return Err(Fault::InvalidTss(ce));
            }
            if c.access & 0x80 == 0 {
                return Err(Fault::NotPresent(ce));
            }
            self.set_accessed(bus, cs, d)?;
            c.access |= 1;
            self.s.seg[CS] = c;
            for r in [SS, ES, DS, FS, GS] {
                if !n32 && (r == FS || r == GS) {
                    continue;
                }
                let s = sels[r];
                self.load_seg(bus, r, s).map_err(|f| match f {
                    Fault::GeneralProtection(x) => Fault::InvalidTss(x),
                    Fault::StackFault(x) if r == SS => Fault::StackFault(x),
                    other => other,
                })?;
            }
        }
        self.invalidate_fetch();
        if let Some(code) = err {
            let osz = if n32 { 4 } else { 2 };
            let esp = self.s.gpr[ESP];
            let big = self.s.seg[SS].big();
            let n = if big { esp.wrapping_sub(osz) } else { esp.wrapping_sub(osz) & 0xffff };
            let l = self.lin(SS, n, osz, super::mem::Access::Write)?;
            let u = self.s.cpl() == 3;
            self.write_lin(bus, l, osz, code, u)?;
            self.s.gpr[ESP] = if big { n } else { (esp & 0xffff_0000) | n };
        }
        if self.s.eip > self.s.seg[CS].limit {
            return Err(Fault::GeneralProtection(0));
        }
        Ok(())
    }
}
