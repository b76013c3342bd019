//! Unit tests for tricky semantics (the differential tests against KVM live in core/tests/).

use super::*;
use crate::bus::FlatBus;

/// A CPU in real mode at 0000:1000 with `code` there.
fn real(code: &[u8]) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(1 << 20);
    bus.memory[0x1000..0x1000 + code.len()].copy_from_slice(code);
    let mut cpu = Cpu::new();
    let mut s = cpu.state();
    s.seg[CS] = Segment::real(0);
    s.eip = 0x1000;
    s.gpr[ESP] = 0x8000;
    cpu.set_state(&s);
    (cpu, bus)
}

#[test]
fn reset_state() {
    let cpu = Cpu::new();
    let s = cpu.state();
    assert_eq!(s.seg[CS].selector, 0xf000);
    assert_eq!(s.seg[CS].base, 0xffff_0000);
    assert_eq!(s.eip, 0xfff0);
    assert_eq!(s.gpr[EDX] & 0xf00, 0x600);
}

#[test]
fn add_flags_and_hlt() {
    // mov ax,0x7fff; add ax,1; hlt
    let (mut cpu, mut bus) = real(&[0xb8, 0xff, 0x7f, 0x05, 0x01, 0x00, 0xf4]);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let s = cpu.state();
    assert_eq!(s.gpr[EAX] & 0xffff, 0x8000);
    assert_eq!(s.eflags & (OF | SF | ZF | CF | AF | PF), OF | SF | AF | PF);
    assert_eq!(s.eip, 0x1007);
}

#[test]
fn div_by_zero_goes_through_ivt() {
    // IVT[0] -> 0000:2000 (hlt). xor cx,cx; div cx
    let (mut cpu, mut bus) = real(&[0x31, 0xc9, 0xf7, 0xf1]);
    bus.memory[0..4].copy_from_slice(&[0x00, 0x20, 0x00, 0x00]);
    bus.memory[0x2000] = 0xf4;
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let s = cpu.state();
    assert_eq!(s.eip, 0x2001);
    // The pushed IP is the faulting DIV (restartable), not the next instruction.
    assert_eq!(u16::from_le_bytes([bus.memory[0x7ffa], bus.memory[0x7ffb]]), 0x1002);
}

#[test]
fn rep_movsb_and_loop() {
    // cld; mov si,0x3000; mov di,0x4000; mov cx,5; rep movsb; hlt
    let (mut cpu, mut bus) = real(&[0xfc, 0xbe, 0x00, 0x30, 0xbf, 0x00, 0x40, 0xb9, 0x05, 0x00, 0xf3, 0xa4, 0xf4]);
    bus.memory[0x3000..0x3005].copy_from_slice(b"hello");
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    assert_eq!(&bus.memory[0x4000..0x4005], b"hello");
    let s = cpu.state();
    assert_eq!(s.gpr[ECX] & 0xffff, 0);
    assert_eq!(s.gpr[ESI] & 0xffff, 0x3005);
}

#[test]
fn lazy_flags_inc_keeps_cf() {
    // stc; mov al,0xff; inc al; hlt  -> CF still 1, ZF 1, AF 1
    let (mut cpu, mut bus) = real(&[0xf9, 0xb0, 0xff, 0xfe, 0xc0, 0xf4]);
    cpu.run(&mut bus, 100);
    let f = cpu.state().eflags;
    assert_eq!(f & (CF | ZF | AF | OF | SF), CF | ZF | AF);
}

/// 32-bit flat protected mode with paging: identity-mapped first 4 MiB except the page at
/// 0x40000 (not present); IDT at 0x2000 whose gates all go to a HLT at 0x3000.
fn paged(code: &[u8]) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(4 << 20);
    let m = &mut bus.memory;
    let put = |m: &mut Vec<u8>, a: usize, v: u32| m[a..a + 4].copy_from_slice(&v.to_le_bytes());
    // GDT: null, code 0x08, data 0x10 (flat, 4 GiB).
    m[0x1008..0x1010].copy_from_slice(&0x00cf_9b00_0000_ffffu64.to_le_bytes());
    m[0x1010..0x1018].copy_from_slice(&0x00cf_9300_0000_ffffu64.to_le_bytes());
    // IDT: 32 interrupt gates to 0008:3000.
    for v in 0..32 {
        put(m, 0x2000 + v * 8, 0x0008_3000);
        put(m, 0x2004 + v * 8, 0x0000_8e00);
    }
    m[0x3000] = 0xf4;
    put(m, 0x10000, 0x11000 | 3);
    for p in 0..1024u32 {
        let pte = if p == 0x40 { 0 } else { (p << 12) | 3 };
        put(m, 0x11000 + p as usize * 4, pte);
    }
    m[0x5000..0x5000 + code.len()].copy_from_slice(code);
    let mut cpu = Cpu::new();
    let mut s = cpu.state();
    s.cr0 = CR0_PE | CR0_PG | CR0_ET;
    s.cr3 = 0x10000;
    let code_seg = Segment { selector: 8, base: 0, limit: u32::MAX, access: 0xc09b, valid: true };
    let data = Segment { selector: 0x10, base: 0, limit: u32::MAX, access: 0xc093, valid: true };
    s.seg = [data, code_seg, data, data, data, data];
    s.gdtr = DescriptorTable { base: 0x1000, limit: 0x17 };
    s.idtr = DescriptorTable { base: 0x2000, limit: 32 * 8 - 1 };
    s.eip = 0x5000;
    s.gpr[ESP] = 0x9000;
    cpu.set_state(&s);
    (cpu, bus)
}

#[test]
fn rep_movsb_page_fault_is_restartable() {
    // mov esi,0x3ff00; mov edi,0x50000; mov ecx,0x200; cld; rep movsb; hlt
    let code = [0xbe, 0x00, 0xff, 0x03, 0x00, 0xbf, 0x00, 0x00, 0x05, 0x00, 0xb9, 0x00, 0x02, 0x00, 0x00, 0xfc, 0xf3, 0xa4, 0xf4];
    let (mut cpu, mut bus) = paged(&code);
    for i in 0..0x100 {
        bus.memory[0x3ff00 + i] = i as u8 ^ 0x5a;
    }
    assert_eq!(cpu.run(&mut bus, 1000), RunExit::Halted);
    let s = cpu.state();
    assert_eq!(s.eip, 0x3001, "#PF handler reached");
    assert_eq!(s.cr2, 0x40000);
    assert_eq!((s.gpr[ECX], s.gpr[ESI], s.gpr[EDI]), (0x100, 0x40000, 0x50100), "completed iterations committed");
    let st = |a: usize| u32::from_le_bytes(bus.memory[a..a + 4].try_into().unwrap());
    // Frame: error code, EIP, CS, EFLAGS.
    assert_eq!(st(0x9000 - 16), 0, "read, supervisor, not present");
    assert_eq!(st(0x9000 - 12), 0x5010, "EIP of the REP prefix");
    assert_eq!(st(0x9000 - 8), 8);
    assert_eq!(st(0x9000 - 4) & RF, RF);
    assert_eq!(&bus.memory[0x50000..0x50100], &bus.memory[0x3ff00..0x40000].to_vec()[..]);
    assert_eq!(bus.memory[0x50100], 0, "nothing copied from the missing page");
    // The walk set A on the PDE and PTEs used, D on the written page's PTE.
    assert_eq!(st(0x10000) & 0x20, 0x20);
    assert_eq!(st(0x11000 + 0x50 * 4) & 0x60, 0x60);
    assert_eq!(st(0x11000 + 0x3f * 4) & 0x60, 0x20);
}

#[test]
fn page_crossing_store_faults_before_writing() {
    // mov dword [0x3fffe], 0x11223344 ; the second half is on the missing page
    let code = [0xc7, 0x05, 0xfe, 0xff, 0x03, 0x00, 0x44, 0x33, 0x22, 0x11, 0xf4];
    let (mut cpu, mut bus) = paged(&code);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let s = cpu.state();
    assert_eq!(s.cr2, 0x40000);
    assert_eq!(&bus.memory[0x3fffe..0x40000], &[0, 0], "first page untouched");
    let err = u32::from_le_bytes(bus.memory[0x9000 - 16..0x9000 - 12].try_into().unwrap());
    assert_eq!(err, 2, "write, supervisor, not present");
}

#[test]
fn cmpxchg8b_and_xadd() {
    // mov eax,1; mov edx,2; mov ebx,3; mov ecx,4; cmpxchg8b [0x6000]; xadd [0x6008],ebx; hlt
    let code = [
        0xb8, 1, 0, 0, 0, 0xba, 2, 0, 0, 0, 0xbb, 3, 0, 0, 0, 0xb9, 4, 0, 0, 0, 0x0f, 0xc7, 0x0d, 0x00, 0x60, 0, 0, 0x0f, 0xc1,
        0x1d, 0x08, 0x60, 0, 0, 0xf4,
    ];
    let (mut cpu, mut bus) = paged(&code);
    bus.memory[0x6000..0x6008].copy_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
    bus.memory[0x6008] = 10;
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    assert_eq!(cpu.state().eip, 0x5000 + code.len() as u32);
    assert_eq!(&bus.memory[0x6000..0x6008], &[3, 0, 0, 0, 4, 0, 0, 0]);
    assert_eq!(bus.memory[0x6008], 13);
    assert_eq!(cpu.state().gpr[EBX], 10);
}

#[test]
fn external_interrupt_wakes_hlt() {
    struct Irq(FlatBus, bool);
    impl crate::bus::Bus for Irq {
        fn ram(&mut self) -> &mut [u8] {
            self.0.ram()
        }
        fn page_kind(&self, p: u64) -> crate::bus::PageKind {
            self.0.page_kind(p)
        }
        fn map_generation(&self) -> u64 {
            0
        }
        fn mmio_read(&mut self, a: u64, w: u8) -> u64 {
            self.0.mmio_read(a, w)
        }
        fn mmio_write(&mut self, a: u64, w: u8, v: u64) {
            self.0.mmio_write(a, w, v)
        }
        fn io_read(&mut self, p: u16, w: u8) -> u32 {
            self.0.io_read(p, w)
        }
        fn io_write(&mut self, p: u16, w: u8, v: u32) {
            self.0.io_write(p, w, v)
        }
        fn intr_pending(&mut self) -> bool {
            self.1
        }
        fn intr_ack(&mut self) -> u8 {
            self.1 = false;
            8
        }
    }
    // sti; hlt; hlt   IVT[8] -> 0000:2000: mov al,0x42; iret
    let (mut cpu, bus) = real(&[0xfb, 0xf4, 0xf4]);
    let mut bus = Irq(bus, false);
    bus.0.memory[0x20..0x24].copy_from_slice(&[0x00, 0x20, 0, 0]);
    bus.0.memory[0x2000..0x2003].copy_from_slice(&[0xb0, 0x42, 0xcf]);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    assert_eq!(cpu.state().eip, 0x1002);
    bus.1 = true;
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let s = cpu.state();
    assert_eq!(s.gpr[EAX] & 0xff, 0x42, "handler ran");
    assert_eq!(s.eip, 0x1003, "returned after the first HLT and halted on the second");
}

#[test]
fn trap_flag_single_steps() {
    // pushf; pop ax; or ah,1; push ax; popf; inc cx; inc cx; hlt   IVT[1] -> 0000:2000: inc bx; iret
    // POPF setting TF: the first trap comes after the instruction following it.
    let (mut cpu, mut bus) = real(&[0x9c, 0x58, 0x80, 0xcc, 0x01, 0x50, 0x9d, 0x41, 0x41, 0xf4]);
    bus.memory[4..8].copy_from_slice(&[0x00, 0x20, 0, 0]);
    bus.memory[0x2000..0x2002].copy_from_slice(&[0x43, 0xcf]);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let s = cpu.state();
    assert_eq!(s.gpr[ECX] & 0xffff, 2);
    // Traps after: inc cx, inc cx, hlt -> the handler is not itself single-stepped.
    assert_eq!(s.gpr[EBX] & 0xffff, 2, "one trap per stepped instruction");
    assert_eq!(s.dr[6] & 0x4000, 0x4000);
}

#[test]
fn call_to_tss_and_iret_back() {
    let mut bus = FlatBus::new(1 << 20);
    let m = &mut bus.memory;
    let desc = |base: u32, limit: u32, access: u8, flags: u8| -> u64 {
        (limit as u64 & 0xffff)
            | ((base as u64 & 0xff_ffff) << 16)
            | ((access as u64) << 40)
            | (((limit as u64 >> 16) & 0xf) << 48)
            | ((flags as u64) << 52)
            | (((base >> 24) as u64) << 56)
    };
    let gdt = [0, desc(0, 0xfffff, 0x9b, 0xc), desc(0, 0xfffff, 0x93, 0xc), desc(0x4000, 0x67, 0x8b, 0), desc(0x4100, 0x67, 0x89, 0)];
    for (i, d) in gdt.iter().enumerate() {
        m[0x1000 + i * 8..0x1008 + i * 8].copy_from_slice(&d.to_le_bytes());
    }
    let put = |m: &mut Vec<u8>, a: usize, v: u32| m[a..a + 4].copy_from_slice(&v.to_le_bytes());
    put(m, 0x4100 + 0x20, 0x6000); // EIP
    put(m, 0x4100 + 0x24, 0x2); // EFLAGS
    put(m, 0x4100 + 0x38, 0x7000); // ESP
    for (i, s) in [0x10, 0x08, 0x10, 0x10, 0x10, 0x10].iter().enumerate() {
        put(m, 0x4100 + 0x48 + 4 * i, *s);
    }
    m[0x5000..0x500a].copy_from_slice(&[0x9a, 0, 0, 0, 0, 0x20, 0x00, 0x89, 0xc3, 0xf4]);
    m[0x6000..0x6006].copy_from_slice(&[0xb8, 0x77, 0, 0, 0, 0xcf]);
    let mut cpu = Cpu::new();
    let mut s = cpu.state();
    s.cr0 = CR0_PE | CR0_ET;
    let code = Segment { selector: 8, base: 0, limit: u32::MAX, access: 0xc09b, valid: true };
    let data = Segment { selector: 0x10, base: 0, limit: u32::MAX, access: 0xc093, valid: true };
    s.seg = [data, code, data, data, data, data];
    s.tr = Segment { selector: 0x18, base: 0x4000, limit: 0x67, access: 0x8b, valid: true };
    s.gdtr = DescriptorTable { base: 0x1000, limit: 0x27 };
    s.eip = 0x5000;
    s.gpr[ESP] = 0x9000;
    cpu.set_state(&s);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let s = cpu.state();
    // The caller's registers come back from its TSS; the nested task's EAX is in the nested TSS.
    assert_eq!(s.gpr[EBX], 0, "caller's EAX (saved in its TSS) restored");
    assert_eq!(u32::from_le_bytes(bus.memory[0x4128..0x412c].try_into().unwrap()), 0x77, "the nested task ran");
    assert_eq!(s.eip, 0x500a);
    assert_eq!(s.tr.selector, 0x18);
    assert_eq!(s.gpr[ESP], 0x9000, "outgoing task's registers restored from its TSS");
    assert_eq!(s.eflags & NT, 0);
    assert_eq!(s.cr0 & CR0_TS, CR0_TS);
    assert_eq!(u16::from_le_bytes([bus.memory[0x4100], bus.memory[0x4101]]), 0x18, "back link");
    assert_eq!(bus.memory[0x1000 + 4 * 8 + 5] & 0x1f, 0x09, "nested TSS no longer busy");
    assert_eq!(bus.memory[0x1000 + 3 * 8 + 5] & 0x1f, 0x0b, "caller TSS still busy");
    assert_eq!(u32::from_le_bytes(bus.memory[0x4120..0x4124].try_into().unwrap()), 0x6006, "nested EIP saved after its IRET");
}

#[test]
fn v86_round_trip_through_the_idt() {
    // PM32 ring 0 IRETs into v86 mode (IOPL=3) at 1000:0010 which runs INT 21h; the IDT gate
    // takes it to ring 0 on the TSS stack with GS FS DS ES pushed and the data segments nulled.
    let (mut cpu, mut bus) = paged(&[]);
    let m = &mut bus.memory;
    let put = |m: &mut Vec<u8>, a: usize, v: u32| m[a..a + 4].copy_from_slice(&v.to_le_bytes());
    // TSS at 0x7000: ESP0 = 0x8800, SS0 = 0x10.
    put(m, 0x7004, 0x8800);
    put(m, 0x7008, 0x10);
    // Ring-0 code at 0x5000: push v86 frame and IRET.
    let mut code = vec![];
    for v in [0x4444u32, 0x3333, 0x2222, 0x1111, 0x2000, 0x0100, 0x2_3202, 0x1000, 0x0010] {
        code.push(0x68);
        code.extend_from_slice(&v.to_le_bytes());
    }
    code.push(0xcf);
    m[0x5000..0x5000 + code.len()].copy_from_slice(&code);
    // INT 21h gate with DPL 3 (with DPL 0 the INT would #GP(0x10a) from v86).
    put(m, 0x2000 + 0x21 * 8, 0x0008_3000);
    put(m, 0x2000 + 0x21 * 8 + 4, 0x0000_ee00);
    // v86 code at 0x10010: mov ax,0x1234; int 21h
    m[0x10010..0x10015].copy_from_slice(&[0xb8, 0x34, 0x12, 0xcd, 0x21]);
    let mut s = cpu.state();
    s.cr0 &= !CR0_PG;
    s.tr = Segment { selector: 0x18, base: 0x7000, limit: 0x67, access: 0x8b, valid: true };
    s.idtr.limit = 0x21 * 8 + 7;
    cpu.set_state(&s);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let s = cpu.state();
    assert_eq!(s.eip, 0x3001);
    assert_eq!(s.eflags & VM, 0);
    assert_eq!(s.seg[CS].selector, 8);
    assert_eq!(s.seg[SS].selector, 0x10);
    assert!(!s.seg[DS].valid && !s.seg[ES].valid && !s.seg[FS].valid && !s.seg[GS].valid);
    assert_eq!(s.gpr[EAX] & 0xffff, 0x1234);
    let st = |a: u32| u32::from_le_bytes(bus.memory[a as usize..a as usize + 4].try_into().unwrap());
    let f: Vec<u32> = (0..9).map(|i| st(s.gpr[ESP] + 4 * i)).collect();
    // EIP CS EFLAGS ESP SS ES DS FS GS
    assert_eq!(f[0], 0x15);
    assert_eq!(f[1], 0x1000);
    assert_eq!(f[2] & (VM | IOPL), VM | IOPL);
    assert_eq!((f[3], f[4]), (0x100, 0x2000));
    assert_eq!((f[5], f[6], f[7], f[8]), (0x1111, 0x2222, 0x3333, 0x4444));
    assert_eq!(s.gpr[ESP], 0x8800 - 36);
}

#[test]
fn mmx_shift_immediate_and_x87_dispatch() {
    // fninit; fld1; fld1; faddp; fistp dword [0x6000]; psrlw mm0,4 (0F 71 /2 ib); hlt
    let code = [0xdb, 0xe3, 0xd9, 0xe8, 0xd9, 0xe8, 0xde, 0xc1, 0xdb, 0x1d, 0x00, 0x60, 0x00, 0x00, 0x0f, 0x71, 0xd0, 0x04, 0xf4];
    let (mut cpu, mut bus) = paged(&code);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    assert_eq!(cpu.state().eip, 0x5000 + code.len() as u32, "imm8 of the MMX shift consumed");
    assert_eq!(&bus.memory[0x6000..0x6004], &[2, 0, 0, 0]);
    // With CR0.TS the first x87 instruction raises #NM (vector 7) without executing.
    let (mut cpu, mut bus) = paged(&code);
    let mut s = cpu.state();
    s.cr0 |= CR0_TS;
    cpu.set_state(&s);
    assert_eq!(cpu.run(&mut bus, 100), RunExit::Halted);
    let eip = u32::from_le_bytes(bus.memory[0x9000 - 12..0x9000 - 8].try_into().unwrap());
    assert_eq!(eip, 0x5000, "#NM frame (no error code) points at FNINIT");
}
