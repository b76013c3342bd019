//! System instructions: control/debug registers, descriptor tables, MSRs, CPUID, I/O permission.
//!
//! INTERIM VERSION written by cpu-exec; owned by cpu-sys, who replaces/extends it (LTR/LLDT
//! details, SYSENTER, MTRRs, debug breakpoints). What is here follows the SDM checks for each
//! instruction but has not been differential-tested yet.

use super::segment::desc_to_seg;
use super::state::*;
use super::{Cpu, Res};
use crate::bus::Bus;

const MSR_TSC: u32 = 0x10;
const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_BIOS_SIGN_ID: microcode revision (Linux writes 0 and reads it back).
const MSR_BIOS_SIGN_ID: u32 = 0x8b;
const MSR_SYSENTER_CS: u32 = 0x174;
const MSR_SYSENTER_ESP: u32 = 0x175;
const MSR_SYSENTER_EIP: u32 = 0x176;
const MSR_PAT: u32 = 0x277;
const MSR_EFER: u32 = 0xc000_0080;

impl Cpu {
    fn need_cpl0(&self) -> Res<()> {
        if self.s.protected() && self.cpl() != 0 {
            return Err(Fault::GeneralProtection(0).into());
        }
        Ok(())
    }

    /// I/O permission: CPL <= IOPL, else the TSS I/O bitmap must allow every byte.
    pub(crate) fn io_check<B: Bus>(&mut self, bus: &mut B, port: u16, sz: u8) -> Res<()> {
        if !self.s.protected() || (!self.s.v86() && self.cpl() <= self.s.iopl()) {
            return Ok(());
        }
        let tr = self.s.tr;
        let gp = Fault::GeneralProtection(0);
        if !tr.valid || tr.access & 0x8 == 0 || tr.limit < 0x67 {
            return Err(gp.into());
        }
        let base = self.rd_sys(bus, tr.base.wrapping_add(0x66), 2)?;
        let byte = base + (port as u32 >> 3);
        if byte + 1 > tr.limit {
            return Err(gp.into());
        }
        let w = self.rd_sys(bus, tr.base.wrapping_add(byte), 2)?;
        let m = ((1u32 << sz) - 1) << (port & 7);
        if w & m != 0 {
            return Err(gp.into());
        }
        Ok(())
    }

    pub(crate) fn arpl<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        if !self.s.protected() || self.s.v86() {
            return Err(Fault::InvalidOpcode.into());
        }
        let m = self.modrm(bus)?;
        let d = self.rm_read(bus, &m, 2)?;
        let s = self.reg(m.reg, 2);
        if d & 3 < s & 3 {
            self.rm_write(bus, &m, 2, (d & !3) | (s & 3))?;
            self.set_arith(ZF, ZF);
        } else {
            self.set_arith(ZF, 0);
        }
        Ok(())
    }

    pub(crate) fn clts(&mut self) -> Res<()> {
        self.need_cpl0()?;
        self.s.cr0 &= !CR0_TS;
        Ok(())
    }

    pub(crate) fn group6<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        if !self.s.protected() || self.s.v86() {
            return Err(Fault::InvalidOpcode.into());
        }
        let m = self.modrm(bus)?;
        match m.reg {
            0 | 1 => {
                let v = if m.reg == 0 { self.s.ldtr.selector } else { self.s.tr.selector } as u32;
                if m.mem {
                    self.rm_write(bus, &m, 2, v)?;
                } else {
                    let osz = self.osz();
                    self.set_reg(m.rm, osz, v);
                }
            }
            2 | 3 => {
                self.need_cpl0()?;
                let sel = self.rm_read(bus, &m, 2)? as u16;
                let e = sel & 0xfffc;
                if m.reg == 2 {
                    if e == 0 {
                        self.s.ldtr = Segment { selector: sel, base: 0, limit: 0, access: 0, valid: false };
                        return Ok(());
                    }
                    if sel & 4 != 0 {
                        return Err(Fault::GeneralProtection(e).into());
                    }
                    let d = self.read_desc(bus, sel)?;
                    let s = desc_to_seg(sel, d);
                    if s.access & 0x1f != 0x02 {
                        return Err(Fault::GeneralProtection(e).into());
                    }
                    if s.access & 0x80 == 0 {
                        return Err(Fault::NotPresent(e).into());
                    }
                    self.s.ldtr = s;
                } else {
                    if e == 0 || sel & 4 != 0 {
                        return Err(Fault::GeneralProtection(e).into());
                    }
                    let d = self.read_desc(bus, sel)?;
                    let mut s = desc_to_seg(sel, d);
                    let t = s.access & 0x1f;
                    if t != 0x01 && t != 0x09 {
                        return Err(Fault::GeneralProtection(e).into());
                    }
                    if s.access & 0x80 == 0 {
                        return Err(Fault::NotPresent(e).into());
                    }
                    // Mark busy in the GDT.
                    let a = self.desc_addr(sel)?;
                    let b = self.rd_sys(bus, a + 5, 1)?;
                    self.wr_sys(bus, a + 5, 1, b | 2)?;
                    s.access |= 2;
                    self.s.tr = s;
                }
            }
            4 | 5 => {
                let sel = self.rm_read(bus, &m, 2)? as u16;
                let ok = self.verify(bus, sel, m.reg == 5);
                self.set_arith(ZF, if ok { ZF } else { 0 });
            }
            _ => return Err(Fault::InvalidOpcode.into()),
        }
        Ok(())
    }

    /// VERR/VERW: readable/writable at CPL and RPL, no fault.
    fn verify<B: Bus>(&mut self, bus: &mut B, sel: u16, write: bool) -> bool {
        if sel & 0xfffc == 0 {
            return false;
        }
        let Ok(d) = self.read_desc(bus, sel) else { return false };
        let s = desc_to_seg(sel, d);
        if s.access & 0x10 == 0 {
            return false;
        }
        let code = s.access & 8 != 0;
        let conforming = code && s.access & 4 != 0;
        if !conforming && (s.dpl() < self.cpl() || s.dpl() < (sel & 3) as u8) {
            return false;
        }
        if write {
            !code && s.access & 2 != 0
        } else {
            !code || s.access & 2 != 0
        }
    }

    pub(crate) fn lar_lsl<B: Bus>(&mut self, bus: &mut B, lsl: bool) -> Res<()> {
        if !self.s.protected() || self.s.v86() {
            return Err(Fault::InvalidOpcode.into());
        }
        let osz = self.osz();
        let m = self.modrm(bus)?;
        let sel = self.rm_read(bus, &m, 2)? as u16;
        let res = (|| {
            if sel & 0xfffc == 0 {
                return None;
            }
            let d = self.read_desc(bus, sel).ok()?;
            let s = desc_to_seg(sel, d);
            let t = s.access & 0x1f;
            let ok_type = if s.access & 0x10 != 0 {
                true
            } else if lsl {
                matches!(t, 1 | 2 | 3 | 9 | 11)
            } else {
                matches!(t, 1 | 2 | 3 | 4 | 5 | 9 | 11 | 12)
            };
            let conforming = s.access & 0x1c == 0x1c;
            if !ok_type || (!conforming && (s.dpl() < self.cpl() || s.dpl() < (sel & 3) as u8)) {
                return None;
            }
            Some(if lsl { s.limit } else { ((d >> 32) as u32) & 0x00f0_ff00 })
        })();
        match res {
            Some(v) => {
                self.set_reg(m.reg, osz, v);
                self.set_arith(ZF, ZF);
            }
            None => self.set_arith(ZF, 0),
        }
        Ok(())
    }

    pub(crate) fn group7<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        let m = self.modrm(bus)?;
        let osz = self.osz();
        match m.reg {
            0 | 1 => {
                if !m.mem {
                    return Err(Fault::InvalidOpcode.into());
                }
                let t = if m.reg == 0 { self.s.gdtr } else { self.s.idtr };
                self.check_wr(bus, m.seg as usize, m.off, 6)?;
                self.wr(bus, m.seg as usize, m.off, 2, t.limit as u32)?;
                let o2 = self.m_off(&m, 2);
                // 16-bit operand size stores 24 bits of base and 0xff above on the 386; later
                // CPUs store the full base.
                self.wr(bus, m.seg as usize, o2, 4, t.base)?;
            }
            2 | 3 => {
                if !m.mem {
                    return Err(Fault::InvalidOpcode.into());
                }
                self.need_cpl0()?;
                let limit = self.rd(bus, m.seg as usize, m.off, 2)? as u16;
                let o2 = self.m_off(&m, 2);
                let mut base = self.rd(bus, m.seg as usize, o2, 4)?;
                if osz == 2 {
                    base &= 0x00ff_ffff;
                }
                let t = DescriptorTable { base, limit };
                if m.reg == 2 {
                    self.s.gdtr = t;
                } else {
                    self.s.idtr = t;
                }
            }
            4 => {
                let v = self.s.cr0;
                if m.mem {
                    self.rm_write(bus, &m, 2, v)?;
                } else {
                    self.set_reg(m.rm, osz, v);
                }
            }
            6 => {
                self.need_cpl0()?;
                let v = self.rm_read(bus, &m, 2)?;
                // LMSW: PE can be set but not cleared; MP EM TS.
                let cr0 = self.s.cr0;
                self.s.cr0 = (cr0 & !0xe) | (v & 0xe) | ((v | cr0) & 1);
            }
            7 => {
                if !m.mem {
                    return Err(Fault::InvalidOpcode.into());
                }
                self.need_cpl0()?;
                self.flush_tlb();
                self.flush_page_cache();
            }
            _ => return Err(Fault::InvalidOpcode.into()),
        }
        Ok(())
    }

    pub(crate) fn mov_cr_dr<B: Bus>(&mut self, bus: &mut B, op: u8) -> Res<()> {
        let m = self.modrm(bus)?;
        self.need_cpl0()?;
        if self.s.v86() {
            return Err(Fault::GeneralProtection(0).into());
        }
        let r = m.rm;
        match op {
            0x20 => {
                let v = match m.reg {
                    0 => self.s.cr0,
                    2 => self.s.cr2,
                    3 => self.s.cr3,
                    4 => self.s.cr4,
                    _ => return Err(Fault::InvalidOpcode.into()),
                };
                self.set_reg(r, 4, v);
            }
            0x22 => {
                let v = self.reg(r, 4);
                match m.reg {
                    0 => {
                        if (v & CR0_PG != 0 && v & CR0_PE == 0) || (v & (1 << 29) != 0 && v & (1 << 30) == 0) {
                            return Err(Fault::GeneralProtection(0).into());
                        }
                        self.s.cr0 = v | CR0_ET;
                    }
                    2 => self.s.cr2 = v,
                    3 => self.s.cr3 = v,
                    4 => {
                        // Implemented: VME? no. PVI no. TSD, DE, PSE, MCE, PGE, OSFXSR.
                        let ok = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 9);
                        if v & !ok != 0 {
                            return Err(Fault::GeneralProtection(0).into());
                        }
                        self.s.cr4 = v;
                    }
                    _ => return Err(Fault::InvalidOpcode.into()),
                }
                self.flush_tlb();
                self.flush_page_cache();
            }
            0x21 => {
                let i = match m.reg {
                    4 | 5 if self.s.cr4 & (1 << 3) != 0 => return Err(Fault::InvalidOpcode.into()),
                    4 => 6,
                    5 => 7,
                    n => n,
                };
                self.set_reg(r, 4, self.s.dr[i as usize]);
            }
            _ => {
                let i = match m.reg {
                    4 | 5 if self.s.cr4 & (1 << 3) != 0 => return Err(Fault::InvalidOpcode.into()),
                    4 => 6,
                    5 => 7,
                    n => n,
                };
                self.s.dr[i as usize] = self.reg(r, 4);
            }
        }
        Ok(())
    }

    pub(crate) fn rdmsr(&mut self) -> Res<()> {
        self.need_cpl0()?;
        let v: u64 = match self.s.gpr[ECX] {
            MSR_TSC => self.s.tsc.wrapping_add(self.instructions_retired()),
            MSR_APIC_BASE => self.s.apic_base,
            MSR_BIOS_SIGN_ID => 0,
            MSR_SYSENTER_CS => self.s.sysenter_cs as u64,
            MSR_SYSENTER_ESP => self.s.sysenter_esp as u64,
            MSR_SYSENTER_EIP => self.s.sysenter_eip as u64,
            MSR_PAT => self.s.pat,
            MSR_EFER => self.s.efer,
            _ => return Err(Fault::GeneralProtection(0).into()),
        };
        self.s.gpr[EAX] = v as u32;
        self.s.gpr[EDX] = (v >> 32) as u32;
        Ok(())
    }

    pub(crate) fn wrmsr(&mut self) -> Res<()> {
        self.need_cpl0()?;
        let v = ((self.s.gpr[EDX] as u64) << 32) | self.s.gpr[EAX] as u64;
        match self.s.gpr[ECX] {
            MSR_TSC => self.s.tsc = v.wrapping_sub(self.instructions_retired()),
            MSR_APIC_BASE => self.s.apic_base = v,
            MSR_BIOS_SIGN_ID => {}
            MSR_SYSENTER_CS => self.s.sysenter_cs = v as u32,
            MSR_SYSENTER_ESP => self.s.sysenter_esp = v as u32,
            MSR_SYSENTER_EIP => self.s.sysenter_eip = v as u32,
            MSR_PAT => self.s.pat = v,
            MSR_EFER => self.s.efer = v,
            _ => return Err(Fault::GeneralProtection(0).into()),
        }
        Ok(())
    }

    /// CPUID: family 6 model 3 ("Pentium II class"), only what exists.
    pub(crate) fn cpuid(&mut self) {
        let g = &mut self.s.gpr;
        match g[EAX] {
            0 => {
                g[EAX] = 2;
                g[EBX] = u32::from_le_bytes(*b"Genu");
                g[EDX] = u32::from_le_bytes(*b"ineI");
                g[ECX] = u32::from_le_bytes(*b"ntel");
            }
            1 => {
                g[EAX] = 0x0633;
                g[EBX] = 0;
                g[ECX] = 0;
                // FPU DE PSE TSC MSR CX8 APIC? no. PGE? no (no TLB yet). CMOV MMX FXSR.
                g[EDX] = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 15) | (1 << 23) | (1 << 24);
            }
            2 => {
                g[EAX] = 0x0302_0101;
                g[EBX] = 0;
                g[ECX] = 0;
                g[EDX] = 0x0c04_0843;
            }
            _ => {
                g[EAX] = 0;
                g[EBX] = 0;
                g[ECX] = 0;
                g[EDX] = 0;
            }
        }
    }
}
