//! System instructions: control/debug registers, descriptor tables, MSRs, CPUID, I/O permission.
//!
//! INTERIM VERSION written by cpu-exec; owned by cpu-sys, who replaces/extends it (LTR/LLDT
//! details, SYSENTER, MTRRs, debug breakpoints). What is here follows the SDM checks for each
//! instruction but has not been differential-tested yet.

use super::segment::desc_to_seg;
use super::paging::{CR4_DE, CR4_MCE, CR4_OSFXSR, CR4_PAE, CR4_PGE, CR4_PSE, CR4_TSD, EFER_NXE};
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
                self.invlpg_op(&m);
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
                    0 => self.write_cr0(bus, v)?,
                    2 => self.s.cr2 = v,
                    3 => {
                        let old = self.s.cr3;
                        self.s.cr3 = v;
                        if self.s.cr0 & CR0_PG != 0 && self.s.cr4 & CR4_PAE != 0 {
                            if let Err(f) = self.load_pdptes(bus, true) {
                                self.s.cr3 = old;
                                return Err(f.into());
                            }
                        }
                        // Global entries survive (SDM 4.10.4.1).
                        self.flush_tlb_nonglobal();
                        self.flush_page_cache();
                    }
                    4 => self.write_cr4(bus, v)?,
                    _ => return Err(Fault::InvalidOpcode.into()),
                }
            }
            0x21 => {
                let i = self.dr_index(m.reg)?;
                let v = self.s.dr[i];
                self.set_reg(r, 4, v);
            }
            _ => {
                let i = self.dr_index(m.reg)?;
                let v = self.reg(r, 4);
                self.s.dr[i] = match i {
                    // P6: DR6 bits 4-11 and 16-31 read as 1, bit 12 as 0.
                    6 => (v & 0x0000_e00f) | 0xffff_0ff0,
                    // DR7 bit 10 reads as 1; 11, 12, 14, 15 as 0.
                    7 => (v & !0x0000_d800) | 0x400,
                    _ => v,
                };
                self.update_debug();
            }
        }
        Ok(())
    }

    /// DRn number for MOV DR (DR4/DR5 alias DR6/DR7 unless CR4.DE), with the general-detect
    /// fault (DR7.GD: #DB before the access, DR6.BD set, GD cleared for the handler).
    fn dr_index(&mut self, n: u8) -> Res<usize> {
        let i = match n {
            4 | 5 if self.s.cr4 & CR4_DE != 0 => return Err(Fault::InvalidOpcode.into()),
            4 => 6,
            5 => 7,
            n => n as usize,
        };
        if self.s.dr[7] & (1 << 13) != 0 {
            self.s.dr[6] |= 1 << 13;
            self.s.dr[7] &= !(1 << 13);
            return Err(Fault::Debug.into());
        }
        Ok(i)
    }

    fn write_cr0<B: Bus>(&mut self, bus: &mut B, v: u32) -> Res<()> {
        if (v & CR0_PG != 0 && v & CR0_PE == 0) || (v & (1 << 29) != 0 && v & (1 << 30) == 0) {
            return Err(Fault::GeneralProtection(0).into());
        }
        let old = self.s.cr0;
        let v = v | CR0_ET;
        self.s.cr0 = v;
        if (old ^ v) & CR0_PG != 0 {
            self.flush_tlb();
            if v & CR0_PG != 0 && self.s.cr4 & CR4_PAE != 0 {
                if let Err(f) = self.load_pdptes(bus, true) {
                    self.s.cr0 = old;
                    return Err(f.into());
                }
            }
        }
        // The data page cache bakes in WP and PG.
        self.flush_page_cache();
        Ok(())
    }

    fn write_cr4<B: Bus>(&mut self, bus: &mut B, v: u32) -> Res<()> {
        // Implemented: TSD, DE, PSE, PAE, MCE, PGE, OSFXSR (no VME/PVI).
        let ok = CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_OSFXSR;
        if v & !ok != 0 {
            return Err(Fault::GeneralProtection(0).into());
        }
        let old = self.s.cr4;
        self.s.cr4 = v;
        if (old ^ v) & (CR4_PAE | CR4_PGE | CR4_PSE) != 0 {
            // Flushes global entries too (SDM 4.10.4.1): Linux's __flush_tlb_all toggles PGE.
            self.flush_tlb();
            if self.s.cr0 & CR0_PG != 0 && v & CR4_PAE != 0 {
                if let Err(f) = self.load_pdptes(bus, true) {
                    self.s.cr4 = old;
                    return Err(f.into());
                }
            }
        }
        self.flush_page_cache();
        Ok(())
    }

    /// INVLPG m: drop the translation of the page holding the operand's linear address.
    fn invlpg_op(&mut self, m: &super::decode::ModRm) {
        let lin = self.s.seg[m.seg as usize].base.wrapping_add(m.off);
        self.invlpg(lin);
    }

    /// SYSENTER (0F 34): flat ring-0 CS/SS from IA32_SYSENTER_CS, ESP/EIP from their MSRs.
    pub(crate) fn sysenter(&mut self) -> Res<()> {
        let cs = self.s.sysenter_cs as u16;
        if !self.s.protected() || cs & 0xfffc == 0 {
            return Err(Fault::GeneralProtection(0).into());
        }
        let f = self.eflags();
        self.set_eflags_raw(f & !(VM | IF | RF));
        self.s.seg[CS] = Segment { selector: cs & 0xfffc, base: 0, limit: u32::MAX, access: 0xc09b, valid: true };
        self.s.seg[SS] =
            Segment { selector: (cs & 0xfffc).wrapping_add(8), base: 0, limit: u32::MAX, access: 0xc093, valid: true };
        self.s.gpr[ESP] = self.s.sysenter_esp;
        self.ip = self.s.sysenter_eip;
        self.invalidate_fetch();
        Ok(())
    }

    /// SYSEXIT (0F 35): flat ring-3 CS = SYSENTER_CS+16, SS = +24, ESP = ECX, EIP = EDX.
    pub(crate) fn sysexit(&mut self) -> Res<()> {
        let cs = self.s.sysenter_cs as u16;
        if !self.s.protected() || self.s.v86() || self.cpl() != 0 || cs & 0xfffc == 0 {
            return Err(Fault::GeneralProtection(0).into());
        }
        self.s.seg[CS] =
            Segment { selector: cs.wrapping_add(16) | 3, base: 0, limit: u32::MAX, access: 0xc0fb, valid: true };
        self.s.seg[SS] =
            Segment { selector: cs.wrapping_add(24) | 3, base: 0, limit: u32::MAX, access: 0xc0f3, valid: true };
        self.s.gpr[ESP] = self.s.gpr[ECX];
        self.ip = self.s.gpr[EDX];
        self.invalidate_fetch();
        Ok(())
    }

    pub(crate) fn rdmsr(&mut self) -> Res<()> {
        self.need_cpl0()?;
        let m = &self.s.mtrr;
        let v: u64 = match self.s.gpr[ECX] {
            MSR_TSC => self.s.tsc.wrapping_add(self.instructions_retired()),
            MSR_APIC_BASE => self.s.apic_base,
            MSR_BIOS_SIGN_ID => 0,
            MSR_MTRRCAP => MTRRCAP,
            MSR_SYSENTER_CS => self.s.sysenter_cs as u64,
            MSR_SYSENTER_ESP => self.s.sysenter_esp as u64,
            MSR_SYSENTER_EIP => self.s.sysenter_eip as u64,
            n @ MSR_MTRR_PHYS..=MSR_MTRR_PHYS_END => m.var[(n - MSR_MTRR_PHYS) as usize],
            n @ (MSR_MTRR_FIX64K | MSR_MTRR_FIX16K..=0x259 | MSR_MTRR_FIX4K..=0x26f) => m.fixed[fixed_index(n)],
            MSR_PAT => self.s.pat,
            MSR_MTRR_DEF_TYPE => m.def_type,
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
        let gp = Err(Fault::GeneralProtection(0).into());
        match self.s.gpr[ECX] {
            MSR_TSC => self.s.tsc = v.wrapping_sub(self.instructions_retired()),
            MSR_APIC_BASE => self.s.apic_base = v,
            MSR_BIOS_SIGN_ID => {}
            MSR_SYSENTER_CS => self.s.sysenter_cs = v as u32,
            MSR_SYSENTER_ESP => self.s.sysenter_esp = v as u32,
            MSR_SYSENTER_EIP => self.s.sysenter_eip = v as u32,
            n @ MSR_MTRR_PHYS..=MSR_MTRR_PHYS_END => {
                // Even: PhysBase (type 7:0, base 35:12); odd: PhysMask (valid 11, mask 35:12).
                let bad = if n & 1 == 0 { v & !(PHYS_MASK | 0xff) != 0 || !mem_type_ok(v as u8) } else { v & !(PHYS_MASK | 0x800) != 0 };
                if bad {
                    return gp;
                }
                self.s.mtrr.var[(n - MSR_MTRR_PHYS) as usize] = v;
            }
            n @ (MSR_MTRR_FIX64K | MSR_MTRR_FIX16K..=0x259 | MSR_MTRR_FIX4K..=0x26f) => {
                if !v.to_le_bytes().iter().all(|&t| mem_type_ok(t)) {
                    return gp;
                }
                self.s.mtrr.fixed[fixed_index(n)] = v;
            }
            MSR_PAT => {
                // Eight 3-bit types in bytes; 2 and 3 are reserved.
                if !v.to_le_bytes().iter().all(|&t| t & 0xf8 == 0 && t != 2 && t != 3) {
                    return gp;
                }
                self.s.pat = v;
            }
            MSR_MTRR_DEF_TYPE => {
                if v & !0xcff != 0 || !mem_type_ok(v as u8) {
                    return gp;
                }
                self.s.mtrr.def_type = v;
            }
            MSR_EFER => {
                // Only NXE exists on this CPU (no SYSCALL, no long mode).
                if v & !EFER_NXE != 0 {
                    return gp;
                }
                if (v ^ self.s.efer) & EFER_NXE != 0 {
                    self.flush_tlb();
                    self.flush_page_cache();
                }
                self.s.efer = v;
            }
            _ => return gp,
        }
        Ok(())
    }

    /// CPUID: family 6 model 3 stepping 3 ("Pentium II class"), advertising exactly what is
    /// implemented (docs/status/cpu-sys.md lists each bit and its test).
    pub(crate) fn cpuid(&mut self) {
        let g = &mut self.s.gpr;
        let (a, b, c, d) = match g[EAX] {
            0 => (2, u32::from_le_bytes(*b"Genu"), u32::from_le_bytes(*b"ntel"), u32::from_le_bytes(*b"ineI")),
            1 => (0x0633, 0, 0, CPUID1_EDX),
            2 => (0x0302_0101, 0, 0, 0x0c04_0843),
            0x8000_0000 => (0x8000_0001, 0, 0, 0),
            // NX (bit 20): EFER.NXE and the XD bit of PAE entries.
            0x8000_0001 => (0, 0, 0, 1 << 20),
            _ => (0, 0, 0, 0),
        };
        g[EAX] = a;
        g[EBX] = b;
        g[ECX] = c;
        g[EDX] = d;
    }
}

/// CPUID.1:EDX: FPU, DE, PSE, TSC, MSR, PAE, CX8, SEP, MTRR, PGE, CMOV, MMX, FXSR.
/// Not advertised (not implemented): VME, MCE, APIC (the board's business), MCA, PAT, PSE-36,
/// CLFSH, SSE and later.
pub(crate) const CPUID1_EDX: u32 = (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15)
    | (1 << 23)
    | (1 << 24);

const MSR_MTRRCAP: u32 = 0xfe;
/// 8 variable ranges, fixed ranges, write-combining (no SMRR).
const MTRRCAP: u64 = 8 | 1 << 8 | 1 << 10;
const MSR_MTRR_PHYS: u32 = 0x200;
const MSR_MTRR_PHYS_END: u32 = 0x20f;
const MSR_MTRR_FIX64K: u32 = 0x250;
const MSR_MTRR_FIX16K: u32 = 0x258;
const MSR_MTRR_FIX4K: u32 = 0x268;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// Address bits of PhysBase/PhysMask below MAXPHYADDR (36).
const PHYS_MASK: u64 = 0xf_ffff_f000;

/// UC, WC, WT, WP, WB.
fn mem_type_ok(t: u8) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// Index into `MtrrState::fixed` (0x250, 0x258, 0x259, 0x268..=0x26f).
fn fixed_index(msr: u32) -> usize {
    match msr {
        MSR_MTRR_FIX64K => 0,
        0x258 | 0x259 => 1 + (msr - 0x258) as usize,
        _ => 3 + (msr - MSR_MTRR_FIX4K) as usize,
    }
}
