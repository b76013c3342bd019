//! Exception and interrupt delivery.
//!
//! INTERIM VERSION written by cpu-exec; owned by cpu-sys, who replaces/extends it. What is here:
//! real-mode IVT delivery; protected-mode IDT interrupt/trap gates (16/32-bit) with the gate and
//! target checks, inter-privilege stack switch through the TSS (also from virtual-8086 mode).
//! Missing: task gates (reported as #GP), VME redirection.

use super::segment::desc_to_seg;
use super::state::*;
use super::Cpu;
use crate::bus::Bus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// CPU exception (EXT=1 for errors while delivering it).
    Exception,
    /// INT n / INT3 / INTO: gate DPL checked against CPL, EXT=0.
    Software,
    /// INTR / NMI.
    External,
}

/// Is `off..off+len` inside segment cache `d` (expand-up or expand-down)?
pub(crate) fn in_limit(d: &Segment, off: u32, len: u32) -> bool {
    let last = off.wrapping_add(len - 1);
    if last < off {
        return false;
    }
    if d.access & 0x18 == 0x10 && d.access & 4 != 0 {
        let top = if d.big() { u32::MAX } else { 0xffff };
        off > d.limit && last <= top
    } else {
        last <= d.limit
    }
}

/// A stack being built for a transfer: pushes go below `sp` in segment `seg`, checked, and the
/// caller commits `sp` only when everything succeeded.
pub(crate) struct Frame {
    pub seg: Segment,
    pub sp: u32,
    pub big: bool,
    pub user: bool,
    /// Error-code selector for a stack limit violation (#SS).
    pub err: u16,
}

impl Cpu {
    pub(crate) fn frame_push<B: Bus>(&mut self, bus: &mut B, f: &mut Frame, sz: u32, v: u32) -> Result<(), Fault> {
        let nsp = if f.big { f.sp.wrapping_sub(sz) } else { (f.sp.wrapping_sub(sz)) & 0xffff };
        if !in_limit(&f.seg, nsp, sz) {
            return Err(Fault::StackFault(f.err));
        }
        self.write_lin(bus, f.seg.base.wrapping_add(nsp), sz, v, f.user)?;
        f.sp = if f.big { nsp } else { (f.sp & 0xffff_0000) | nsp };
        Ok(())
    }

    /// Deliver interrupt `vector`. `self.s.eip` is the return address.
    pub(crate) fn deliver<B: Bus>(&mut self, bus: &mut B, vector: u8, kind: Kind, err: Option<u32>) -> Result<(), Fault> {
        let flags = self.eflags();
        if self.s.cr0 & CR0_PE == 0 {
            let a = vector as u32 * 4;
            if a + 3 > self.s.idtr.limit as u32 {
                return Err(Fault::GeneralProtection(0));
            }
            let ip = self.rd_sys(bus, self.s.idtr.base.wrapping_add(a), 2)?;
            let cs = self.rd_sys(bus, self.s.idtr.base.wrapping_add(a + 2), 2)? as u16;
            let ss = self.s.seg[SS];
            let mut f = Frame { seg: ss, sp: self.s.gpr[ESP], big: ss.big(), user: false, err: 0 };
            self.frame_push(bus, &mut f, 2, flags)?;
            self.frame_push(bus, &mut f, 2, self.s.seg[CS].selector as u32)?;
            self.frame_push(bus, &mut f, 2, self.s.eip)?;
            self.s.gpr[ESP] = f.sp;
            let c = &mut self.s.seg[CS];
            c.selector = cs;
            c.base = (cs as u32) << 4;
            self.s.eip = ip;
            self.set_eflags_raw(flags & !(IF | TF | AC | RF));
            self.invalidate_fetch();
            return Ok(());
        }
        let ext = (kind != Kind::Software) as u16;
        let verr = (vector as u16) * 8 + 2 + ext;
        if vector as u32 * 8 + 7 > self.s.idtr.limit as u32 {
            return Err(Fault::GeneralProtection(verr));
        }
        let ga = self.s.idtr.base.wrapping_add(vector as u32 * 8);
        let lo = self.rd_sys(bus, ga, 4)?;
        let hi = self.rd_sys(bus, ga + 4, 4)?;
        let gtype = (hi >> 8) & 0x1f;
        let gdpl = ((hi >> 13) & 3) as u8;
        let gate32 = match gtype {
            0x0e | 0x0f => true,
            0x06 | 0x07 | 0x05 => false,
            _ => return Err(Fault::GeneralProtection(verr)),
        };
        let cpl = self.cpl();
        if kind == Kind::Software && gdpl < cpl {
            return Err(Fault::GeneralProtection(verr));
        }
        if hi & 0x8000 == 0 {
            return Err(Fault::NotPresent(verr));
        }
        if gtype == 0x05 {
            let tss = (lo >> 16) as u16;
            return self.task_switch(bus, tss, super::task::Source::Int, err);
        }
        let sel = (lo >> 16) as u16;
        let offset = if gate32 { (hi & 0xffff_0000) | (lo & 0xffff) } else { lo & 0xffff };
        if sel & 0xfffc == 0 {
            return Err(Fault::GeneralProtection(ext));
        }
        let serr = (sel & 0xfffc) | ext;
        let d = self.read_desc(bus, sel).map_err(|_| Fault::GeneralProtection(serr))?;
        let mut cs = desc_to_seg(sel, d);
        let dpl = cs.dpl();
        if cs.access & 0x18 != 0x18 || dpl > cpl {
            return Err(Fault::GeneralProtection(serr));
        }
        if cs.access & 0x80 == 0 {
            return Err(Fault::NotPresent(serr));
        }
        let conforming = cs.access & 4 != 0;
        let vm = flags & VM != 0;
        let sz = if gate32 { 4 } else { 2 };
        let old_ss = self.s.seg[SS];
        let old_esp = self.s.gpr[ESP];
        let new_cpl;
        let mut f;
        let mut new_ss = None;
        if !conforming && dpl < cpl {
            if vm && dpl != 0 {
                return Err(Fault::GeneralProtection(serr));
            }
            // Inner stack from the TSS.
            let tr = self.s.tr;
            let t32 = tr.access & 0x8 != 0;
            let (spo, sso, w) = if t32 { (4 + 8 * dpl as u32, 8 + 8 * dpl as u32, 4) } else { (2 + 4 * dpl as u32, 4 + 4 * dpl as u32, 2) };
            if sso + 1 > tr.limit || spo + w - 1 > tr.limit {
                return Err(Fault::InvalidTss(tr.selector & 0xfffc | ext));
            }
            let nsp = self.rd_sys(bus, tr.base.wrapping_add(spo), w)?;
            let nss_sel = self.rd_sys(bus, tr.base.wrapping_add(sso), 2)? as u16;
            let tserr = (nss_sel & 0xfffc) | ext;
            if nss_sel & 0xfffc == 0 {
                return Err(Fault::InvalidTss(ext));
            }
            if (nss_sel & 3) as u8 != dpl {
                return Err(Fault::InvalidTss(tserr));
            }
            let sd = self.read_desc(bus, nss_sel).map_err(|_| Fault::InvalidTss(tserr))?;
            let mut ss = desc_to_seg(nss_sel, sd);
            if ss.dpl() != dpl || ss.access & 0x1a != 0x12 {
                return Err(Fault::InvalidTss(tserr));
            }
            if ss.access & 0x80 == 0 {
                return Err(Fault::StackFault(tserr));
            }
            self.set_accessed(bus, nss_sel, sd)?;
            ss.access |= 1;
            new_cpl = dpl;
            f = Frame { seg: ss, sp: nsp, big: ss.big(), user: dpl == 3, err: tserr };
            if vm {
                for r in [GS, FS, DS, ES] {
                    let v = self.s.seg[r].selector as u32;
                    self.frame_push(bus, &mut f, sz, v)?;
                }
            }
            self.frame_push(bus, &mut f, sz, old_ss.selector as u32)?;
            self.frame_push(bus, &mut f, sz, old_esp)?;
            new_ss = Some(ss);
        } else {
            if vm {
                return Err(Fault::GeneralProtection(serr));
            }
            new_cpl = cpl;
            f = Frame { seg: old_ss, sp: old_esp, big: old_ss.big(), user: cpl == 3, err: ext };
        }
        // Faults push EFLAGS with RF set so the restarted instruction skips instruction
        // breakpoints (SDM 17.3.1.1).
        let fault_class = kind == Kind::Exception && matches!(vector, 0 | 5 | 6 | 7 | 10..=14 | 16 | 17 | 19);
        let pushed = if fault_class { flags | RF } else { flags };
        self.frame_push(bus, &mut f, sz, pushed)?;
        self.frame_push(bus, &mut f, sz, self.s.seg[CS].selector as u32)?;
        self.frame_push(bus, &mut f, sz, self.s.eip)?;
        if let Some(e) = err {
            self.frame_push(bus, &mut f, sz, e)?;
        }
        if offset > cs.limit {
            return Err(Fault::GeneralProtection(ext));
        }
        self.set_accessed(bus, sel, d)?;
        // Commit.
        cs.access |= 1;
        cs.selector = (sel & 0xfffc) | new_cpl as u16;
        if let Some(mut ss) = new_ss {
            ss.selector = (ss.selector & 0xfffc) | new_cpl as u16;
            self.s.seg[SS] = ss;
        }
        if vm {
            for r in [ES, DS, FS, GS] {
                self.s.seg[r] = Segment { selector: 0, base: 0, limit: 0, access: 0, valid: false };
            }
        }
        self.s.seg[CS] = cs;
        self.s.gpr[ESP] = f.sp;
        self.s.eip = offset;
        let mut nf = flags & !(TF | NT | RF | VM);
        if gtype & 1 == 0 {
            nf &= !IF;
        }
        self.set_eflags_raw(nf);
        self.invalidate_fetch();
        Ok(())
    }
}
