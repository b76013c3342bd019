//! Far control transfers: JMP/CALL far (code segments and call gates), RET far, IRET.
//! Task switches (TSS / task gates) belong to cpu-sys's task.rs and are reported as #GP until
//! they land there.

use super::interrupt::{in_limit, Frame};
use super::segment::desc_to_seg;
use super::state::*;
use super::{Cpu, Res};
use crate::bus::Bus;

impl Cpu {
    fn real_mode_like(&self) -> bool {
        self.s.cr0 & CR0_PE == 0 || self.s.eflags & VM != 0
    }

    fn load_cs_real(&mut self, sel: u16) {
        let c = &mut self.s.seg[CS];
        c.selector = sel;
        c.base = (sel as u32) << 4;
        self.invalidate_fetch();
    }

    /// Check a code segment target of JMP/CALL (not through a gate); returns the cache to load.
    fn code_target<B: Bus>(&mut self, bus: &mut B, sel: u16, d: u64, off: u32) -> Result<Segment, Fault> {
        let cpl = self.cpl();
        let e = sel & 0xfffc;
        let mut s = desc_to_seg(sel, d);
        let conforming = s.access & 4 != 0;
        if conforming {
            if s.dpl() > cpl {
                return Err(Fault::GeneralProtection(e));
            }
        } else if (sel & 3) as u8 > cpl || s.dpl() != cpl {
            return Err(Fault::GeneralProtection(e));
        }
        if s.access & 0x80 == 0 {
            return Err(Fault::NotPresent(e));
        }
        if off > s.limit {
            return Err(Fault::GeneralProtection(0));
        }
        self.set_accessed(bus, sel, d)?;
        s.access |= 1;
        s.selector = e | cpl as u16;
        Ok(s)
    }

    pub(crate) fn far_jmp<B: Bus>(&mut self, bus: &mut B, sel: u16, off: u32) -> Res<()> {
        let off = if self.p.op32 { off } else { off & 0xffff };
        if self.real_mode_like() {
            if off > self.s.seg[CS].limit {
                return Err(Fault::GeneralProtection(0).into());
            }
            self.load_cs_real(sel);
            self.ip = off;
            return Ok(());
        }
        if sel & 0xfffc == 0 {
            return Err(Fault::GeneralProtection(0).into());
        }
        let d = self.read_desc(bus, sel)?;
        let a = (d >> 40) as u8;
        if a & 0x18 == 0x18 {
            let cs = self.code_target(bus, sel, d, off)?;
            self.s.seg[CS] = cs;
            self.ip = off;
            self.invalidate_fetch();
            return Ok(());
        }
        if a & 0x10 == 0 && (a & 0xf == 0x4 || a & 0xf == 0xc) {
            let (tsel, toff, _) = self.gate_checks(bus, sel, d)?;
            let td = self.read_desc(bus, tsel)?;
            let ts = desc_to_seg(tsel, td);
            if ts.access & 0x18 != 0x18 {
                return Err(Fault::GeneralProtection(tsel & 0xfffc).into());
            }
            let cpl = self.cpl();
            let conforming = ts.access & 4 != 0;
            if (conforming && ts.dpl() > cpl) || (!conforming && ts.dpl() != cpl) {
                return Err(Fault::GeneralProtection(tsel & 0xfffc).into());
            }
            let sel2 = (tsel & 0xfffc) | cpl as u16;
            let cs = self.code_target(bus, sel2, td, toff)?;
            self.s.seg[CS] = cs;
            self.ip = toff;
            self.invalidate_fetch();
            return Ok(());
        }
        self.far_task(bus, sel, d, super::task::Source::Jmp)
    }

    /// JMP/CALL to a TSS descriptor or a task gate.
    fn far_task<B: Bus>(&mut self, bus: &mut B, sel: u16, d: u64, src: super::task::Source) -> Res<()> {
        let a = (d >> 40) as u8;
        let e = sel & 0xfffc;
        let dpl = (a >> 5) & 3;
        let cpl = self.cpl();
        if dpl < cpl || dpl < (sel & 3) as u8 {
            return Err(Fault::GeneralProtection(e).into());
        }
        let tss = match a & 0x1f {
            0x01 | 0x09 => sel,
            0x05 => (d >> 16) as u16,
            _ => return Err(Fault::GeneralProtection(e).into()),
        };
        if a & 0x80 == 0 {
            return Err(Fault::NotPresent(e).into());
        }
        self.s.eip = self.ip;
        self.task_switch(bus, tss, src, None)?;
        self.ip = self.s.eip;
        Ok(())
    }

    /// Call gate checks common to JMP and CALL: (target selector, offset, param count).
    fn gate_checks<B: Bus>(&mut self, _bus: &mut B, sel: u16, d: u64) -> Result<(u16, u32, u32), Fault> {
        let cpl = self.cpl();
        let e = sel & 0xfffc;
        let gdpl = ((d >> 45) & 3) as u8;
        if gdpl < cpl || gdpl < (sel & 3) as u8 {
            return Err(Fault::GeneralProtection(e));
        }
        if d & (1 << 47) == 0 {
            return Err(Fault::NotPresent(e));
        }
        let tsel = (d >> 16) as u16;
        let g32 = (d >> 40) & 0x8 != 0;
        let off = if g32 { (d & 0xffff) as u32 | ((d >> 32) as u32 & 0xffff_0000) } else { (d & 0xffff) as u32 };
        if tsel & 0xfffc == 0 {
            return Err(Fault::GeneralProtection(0));
        }
        Ok((tsel, off, ((d >> 32) & 0x1f) as u32))
    }

    pub(crate) fn far_call<B: Bus>(&mut self, bus: &mut B, sel: u16, off: u32) -> Res<()> {
        let osz = self.osz() as u32;
        let off = if osz == 4 { off } else { off & 0xffff };
        let ret_cs = self.s.seg[CS].selector as u32;
        let ret_ip = self.ip;
        let ss = self.s.seg[SS];
        let cpl = self.cpl();
        let mut f = Frame { seg: ss, sp: self.s.gpr[ESP], big: ss.big(), user: cpl == 3, err: 0 };
        if self.real_mode_like() {
            if off > self.s.seg[CS].limit {
                return Err(Fault::GeneralProtection(0).into());
            }
            self.frame_push(bus, &mut f, osz, ret_cs)?;
            self.frame_push(bus, &mut f, osz, ret_ip)?;
            self.s.gpr[ESP] = f.sp;
            self.load_cs_real(sel);
            self.ip = off;
            return Ok(());
        }
        if sel & 0xfffc == 0 {
            return Err(Fault::GeneralProtection(0).into());
        }
        let d = self.read_desc(bus, sel)?;
        let a = (d >> 40) as u8;
        if a & 0x18 == 0x18 {
            let cs = self.code_target(bus, sel, d, off)?;
            self.frame_push(bus, &mut f, osz, ret_cs)?;
            self.frame_push(bus, &mut f, osz, ret_ip)?;
            self.s.gpr[ESP] = f.sp;
            self.s.seg[CS] = cs;
            self.ip = off;
            self.invalidate_fetch();
            return Ok(());
        }
        if a & 0x10 == 0 && (a & 0xf == 0x4 || a & 0xf == 0xc) {
            let (tsel, toff, params) = self.gate_checks(bus, sel, d)?;
            let gsz = if a & 0x8 != 0 { 4 } else { 2 };
            let td = self.read_desc(bus, tsel)?;
            let mut ts = desc_to_seg(tsel, td);
            let te = tsel & 0xfffc;
            if ts.access & 0x18 != 0x18 || ts.dpl() > cpl {
                return Err(Fault::GeneralProtection(te).into());
            }
            if ts.access & 0x80 == 0 {
                return Err(Fault::NotPresent(te).into());
            }
            if toff > ts.limit {
                return Err(Fault::GeneralProtection(0).into());
            }
            let conforming = ts.access & 4 != 0;
            let dpl = ts.dpl();
            if !conforming && dpl < cpl {
                // More privileged: new stack from the TSS, copy `params` parameters.
                let tr = self.s.tr;
                let t32 = tr.access & 0x8 != 0;
                let (spo, sso, w) = if t32 { (4 + 8 * dpl as u32, 8 + 8 * dpl as u32, 4) } else { (2 + 4 * dpl as u32, 4 + 4 * dpl as u32, 2) };
                if sso + 1 > tr.limit {
                    return Err(Fault::InvalidTss(tr.selector & 0xfffc).into());
                }
                let nsp = self.rd_sys(bus, tr.base.wrapping_add(spo), w)?;
                let nss = self.rd_sys(bus, tr.base.wrapping_add(sso), 2)? as u16;
                let se = nss & 0xfffc;
                if se == 0 || (nss & 3) as u8 != dpl {
                    return Err(Fault::InvalidTss(se).into());
                }
                let sd = self.read_desc(bus, nss).map_err(|_| Fault::InvalidTss(se))?;
                let mut nseg = desc_to_seg(nss, sd);
                if nseg.dpl() != dpl || nseg.access & 0x1a != 0x12 {
                    return Err(Fault::InvalidTss(se).into());
                }
                if nseg.access & 0x80 == 0 {
                    return Err(Fault::StackFault(se).into());
                }
                let mut nf = Frame { seg: nseg, sp: nsp, big: nseg.big(), user: dpl == 3, err: se };
                self.frame_push(bus, &mut nf, gsz, ss.selector as u32)?;
                self.frame_push(bus, &mut nf, gsz, self.s.gpr[ESP])?;
                for i in (0..params).rev() {
                    let o = self.s.gpr[ESP].wrapping_add(i * gsz);
                    let o = if ss.big() { o } else { o & 0xffff };
                    if !in_limit(&ss, o, gsz) {
                        return Err(Fault::StackFault(0).into());
                    }
                    let v = self.read_lin(bus, ss.base.wrapping_add(o), gsz, cpl == 3)?;
                    self.frame_push(bus, &mut nf, gsz, v)?;
                }
                self.frame_push(bus, &mut nf, gsz, ret_cs)?;
                self.frame_push(bus, &mut nf, gsz, ret_ip)?;
                self.set_accessed(bus, nss, sd)?;
                self.set_accessed(bus, tsel, td)?;
                nseg.access |= 1;
                ts.access |= 1;
                ts.selector = te | dpl as u16;
                self.s.seg[SS] = nseg;
                self.s.gpr[ESP] = nf.sp;
                self.s.seg[CS] = ts;
            } else {
                self.frame_push(bus, &mut f, gsz, ret_cs)?;
                self.frame_push(bus, &mut f, gsz, ret_ip)?;
                self.set_accessed(bus, tsel, td)?;
                ts.access |= 1;
                ts.selector = te | cpl as u16;
                self.s.gpr[ESP] = f.sp;
                self.s.seg[CS] = ts;
            }
            self.ip = toff;
            self.invalidate_fetch();
            return Ok(());
        }
        self.far_task(bus, sel, d, super::task::Source::Call)
    }

    /// Check a code segment returned to by RET far / IRET at privilege `rpl`.
    fn return_cs<B: Bus>(&mut self, bus: &mut B, sel: u16, off: u32) -> Result<Segment, Fault> {
        let cpl = self.cpl();
        let e = sel & 0xfffc;
        if e == 0 {
            return Err(Fault::GeneralProtection(0));
        }
        let rpl = (sel & 3) as u8;
        let d = self.read_desc(bus, sel)?;
        let mut s = desc_to_seg(sel, d);
        if rpl < cpl || s.access & 0x18 != 0x18 {
            return Err(Fault::GeneralProtection(e));
        }
        let conforming = s.access & 4 != 0;
        if (conforming && s.dpl() > rpl) || (!conforming && s.dpl() != rpl) {
            return Err(Fault::GeneralProtection(e));
        }
        if s.access & 0x80 == 0 {
            return Err(Fault::NotPresent(e));
        }
        if off > s.limit {
            return Err(Fault::GeneralProtection(0));
        }
        self.set_accessed(bus, sel, d)?;
        s.access |= 1;
        Ok(s)
    }

    /// The outer stack of a return to privilege `rpl`.
    fn return_ss<B: Bus>(&mut self, bus: &mut B, sel: u16, rpl: u8) -> Result<Segment, Fault> {
        let e = sel & 0xfffc;
        if e == 0 {
            return Err(Fault::GeneralProtection(0));
        }
        let d = self.read_desc(bus, sel)?;
        let mut s = desc_to_seg(sel, d);
        if (sel & 3) as u8 != rpl || s.access & 0x1a != 0x12 || s.dpl() != rpl {
            return Err(Fault::GeneralProtection(e));
        }
        if s.access & 0x80 == 0 {
            return Err(Fault::StackFault(e));
        }
        self.set_accessed(bus, sel, d)?;
        s.access |= 1;
        Ok(s)
    }

    pub(crate) fn far_ret<B: Bus>(&mut self, bus: &mut B, n: u32) -> Res<()> {
        let osz = self.osz();
        let o = osz as u32;
        let ip = self.peek(bus, 0, osz)?;
        let sel = self.peek(bus, o, 2)? as u16;
        let ip = if osz == 4 { ip } else { ip & 0xffff };
        if self.real_mode_like() {
            if ip > self.s.seg[CS].limit {
                return Err(Fault::GeneralProtection(0).into());
            }
            self.load_cs_real(sel);
            self.ip = ip;
            self.add_sp(2 * o + n);
            return Ok(());
        }
        let cpl = self.cpl();
        let cs = self.return_cs(bus, sel, ip)?;
        let rpl = (sel & 3) as u8;
        if rpl == cpl {
            self.s.seg[CS] = cs;
            self.add_sp(2 * o + n);
        } else {
            let nsp = self.peek(bus, 2 * o + n, osz)?;
            let nss = self.peek(bus, 3 * o + n, 2)? as u16;
            let ss = self.return_ss(bus, nss, rpl)?;
            self.s.seg[CS] = cs;
            self.s.seg[SS] = ss;
            let nsp = nsp.wrapping_add(n);
            self.s.gpr[ESP] = if ss.big() { nsp } else { (self.s.gpr[ESP] & 0xffff_0000) | (nsp & 0xffff) };
            self.null_outer_segments();
        }
        self.ip = ip;
        self.invalidate_fetch();
        Ok(())
    }

    pub(crate) fn iret<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        let osz = self.osz();
        let o = osz as u32;
        let old = self.eflags();
        if self.s.cr0 & CR0_PE == 0 || old & VM != 0 {
            if old & VM != 0 && self.s.iopl() < 3 {
                return Err(Fault::GeneralProtection(0).into());
            }
            let ip = self.peek(bus, 0, osz)?;
            let sel = self.peek(bus, o, 2)? as u16;
            let fl = self.peek(bus, 2 * o, osz)?;
            if ip > self.s.seg[CS].limit {
                return Err(Fault::GeneralProtection(0).into());
            }
            let mut mask = if osz == 4 { 0x0025_7fd5 } else { 0x7fd5 };
            if old & VM != 0 {
                mask &= !(IOPL | VIP | VIF);
            }
            mask &= !VM;
            self.load_cs_real(sel);
            self.add_sp(3 * o);
            self.set_eflags_raw((old & !mask) | (fl & mask));
            self.ip = ip;
            return Ok(());
        }
        if old & NT != 0 {
            // Return to the task in the back link.
            let back = self.rd_sys(bus, self.s.tr.base, 2)? as u16;
            self.s.eip = self.ip;
            self.task_switch(bus, back, super::task::Source::Iret, None)?;
            self.ip = self.s.eip;
            return Ok(());
        }
        let cpl = self.cpl();
        let ip = self.peek(bus, 0, osz)?;
        let sel = self.peek(bus, o, 2)? as u16;
        let fl = self.peek(bus, 2 * o, osz)?;
        if osz == 4 && fl & VM != 0 && cpl == 0 {
            // Return to virtual-8086 mode.
            let esp = self.peek(bus, 12, 4)?;
            let ss = self.peek(bus, 16, 4)? as u16;
            let es = self.peek(bus, 20, 4)? as u16;
            let ds = self.peek(bus, 24, 4)? as u16;
            let fs = self.peek(bus, 28, 4)? as u16;
            let gs = self.peek(bus, 32, 4)? as u16;
            self.set_eflags_raw(fl);
            let v = |s: u16| Segment { selector: s, base: (s as u32) << 4, limit: 0xffff, access: 0xf3, valid: true };
            self.s.seg[CS] = v(sel);
            self.s.seg[SS] = v(ss);
            self.s.seg[ES] = v(es);
            self.s.seg[DS] = v(ds);
            self.s.seg[FS] = v(fs);
            self.s.seg[GS] = v(gs);
            self.s.gpr[ESP] = esp;
            self.ip = ip & 0xffff;
            self.invalidate_fetch();
            return Ok(());
        }
        let ip = if osz == 4 { ip } else { ip & 0xffff };
        let cs = self.return_cs(bus, sel, ip)?;
        let rpl = (sel & 3) as u8;
        let mut mask = CF | PF | AF | ZF | SF | TF | DF | OF | NT | RF | AC | ID;
        if cpl == 0 {
            mask |= IOPL | VIF | VIP;
        }
        if cpl <= self.s.iopl() {
            mask |= IF;
        }
        if osz == 2 {
            mask &= 0xffff;
        }
        if rpl == cpl {
            self.s.seg[CS] = cs;
            self.add_sp(3 * o);
        } else {
            let nsp = self.peek(bus, 3 * o, osz)?;
            let nss = self.peek(bus, 4 * o, 2)? as u16;
            let ss = self.return_ss(bus, nss, rpl)?;
            self.s.seg[CS] = cs;
            self.s.seg[SS] = ss;
            self.s.gpr[ESP] = if osz == 4 { nsp } else { (self.s.gpr[ESP] & 0xffff_0000) | (nsp & 0xffff) };
            self.null_outer_segments();
        }
        self.set_eflags_raw((old & !mask) | (fl & mask));
        self.ip = ip;
        self.invalidate_fetch();
        Ok(())
    }
}
