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
