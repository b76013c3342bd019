//! Hand-written tests for the system paths (cpu-sys): paging (32-bit, 4 MiB, PAE, NX), the TLB
//! (global pages across CR3 loads, INVLPG), SYSENTER/SYSEXIT, debug-register breakpoints, #AC,
//! MTRR MSRs and CPUID. Expected values come from the SDM (Vol. 3 ch. 4, 6, 17; Vol. 2 for the
//! instructions); the KVM oracle on this host cannot run legacy paging (docs/status/cpu-diff.md).

use super::paging::{CR4_PAE, CR4_PGE, CR4_PSE, EFER_NXE};
use super::*;
use crate::bus::FlatBus;

const CODE: usize = 0x5000;
/// Ring-0 stack top (also the TSS ESP0).
const STACK0: u32 = 0x9000;

fn put32(m: &mut [u8], a: usize, v: u32) {
    m[a..a + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(m: &mut [u8], a: usize, v: u64) {
    m[a..a + 8].copy_from_slice(&v.to_le_bytes());
}
fn get32(m: &[u8], a: u32) -> u32 {
    u32::from_le_bytes(m[a as usize..a as usize + 4].try_into().unwrap())
}
fn get64(m: &[u8], a: usize) -> u64 {
    u64::from_le_bytes(m[a..a + 8].try_into().unwrap())
}

#[derive(Clone, Copy, PartialEq)]
enum Paging {
    Off,
    /// 32-bit paging: PD 0x10000, PT 0x11000 identity-maps 0-4 MiB (user, writable).
    Legacy,
    /// PAE: PDPT 0x10000 -> PD 0x11000 -> PTs 0x12000/0x13000 identity-map 0-4 MiB.
    Pae,
}

/// Legacy PTE address for linear page `p` (first 4 MiB).
fn pte32(p: u32) -> usize {
    0x11000 + 4 * p as usize
}
/// PAE PTE address for linear page `p` (first 4 MiB).
fn pte64(p: u32) -> usize {
    0x12000 + 8 * p as usize
}

/// Flat 32-bit protected mode, ring 0, code at 0x5000, 8 MiB RAM. GDT: 08 code0, 10 data0,
/// 18 code3, 20 data3, 28 TSS (0x1800, ESP0 = 0x9000). IDT: vector v -> HLT at 0x3000 + 16 v.
fn machine(paging: Paging, code: &[u8]) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(8 << 20);
    let m = &mut bus.memory;
    let gdt: [u64; 6] = [
        0,
        0x00cf_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00cf_fb00_0000_ffff,
        0x00cf_f300_0000_ffff,
        0x0000_8900_1800_0067,
    ];
    for (i, d) in gdt.iter().enumerate() {
        put64(m, 0x1000 + 8 * i, *d);
    }
    put32(m, 0x1804, STACK0);
    put32(m, 0x1808, 0x10);
    for v in 0..32u32 {
        put32(m, 0x2000 + 8 * v as usize, 0x0008_0000 | (0x3000 + 16 * v));
        put32(m, 0x2004 + 8 * v as usize, 0x0000_8e00);
        m[0x3000 + 16 * v as usize] = 0xf4;
    }
    match paging {
        Paging::Off => {}
        Paging::Legacy => {
            put32(m, 0x10000, 0x11000 | 7);
            for p in 0..1024u32 {
                put32(m, pte32(p), (p << 12) | 7);
            }
        }
        Paging::Pae => {
            put64(m, 0x10000, 0x11000 | 1);
            put64(m, 0x11000, 0x12000 | 7);
            put64(m, 0x11008, 0x13000 | 7);
            for p in 0..1024u32 {
                put64(m, pte64(p), ((p as u64) << 12) | 7);
            }
        }
    }
    m[CODE..CODE + code.len()].copy_from_slice(code);
    let mut cpu = Cpu::new();
    let mut s = cpu.state();
    s.cr0 = CR0_PE | CR0_ET | if paging == Paging::Off { 0 } else { CR0_PG };
    s.cr3 = 0x10000;
    s.cr4 = if paging == Paging::Pae { CR4_PAE } else { 0 };
    let code_seg = Segment { selector: 8, base: 0, limit: u32::MAX, access: 0xc09b, valid: true };
    let data = Segment { selector: 0x10, base: 0, limit: u32::MAX, access: 0xc093, valid: true };
    s.seg = [data, code_seg, data, data, data, data];
    s.gdtr = DescriptorTable { base: 0x1000, limit: 6 * 8 - 1 };
    s.idtr = DescriptorTable { base: 0x2000, limit: 32 * 8 - 1 };
    s.tr = Segment { selector: 0x28, base: 0x1800, limit: 0x67, access: 0x8b, valid: true };
    s.eip = CODE as u32;
    s.gpr[ESP] = STACK0;
    cpu.set_state(&s);
    (cpu, bus)
}

/// Switch the machine to ring 3 (flat user segments, user stack 0x8000).
fn to_ring3(cpu: &mut Cpu) {
    let mut s = cpu.state();
    let c3 = Segment { selector: 0x1b, base: 0, limit: u32::MAX, access: 0xc0fb, valid: true };
    let d3 = Segment { selector: 0x23, base: 0, limit: u32::MAX, access: 0xc0f3, valid: true };
    s.seg = [d3, c3, d3, d3, d3, d3];
    s.gpr[ESP] = 0x8000;
    cpu.set_state(&s);
}

fn modify(cpu: &mut Cpu, f: impl FnOnce(&mut CpuState)) {
    let mut s = cpu.state();
    f(&mut s);
    cpu.set_state(&s);
}

/// Run to HLT; the exception vector whose stub halted, or None if the code's own HLT did.
fn run_vector(cpu: &mut Cpu, bus: &mut FlatBus) -> Option<u32> {
    assert_eq!(cpu.run(bus, 100_000), RunExit::Halted);
    let eip = cpu.state().eip;
    (0x3001..0x3200).contains(&eip).then(|| (eip - 0x3001) / 16)
}

/// The ring-0 fault frame: (error code, EIP) for an exception with an error code, from CPL 0
/// (`from_user` false) or CPL 3.
fn frame_err(bus: &FlatBus, from_user: bool) -> (u32, u32) {
    let top = STACK0 - if from_user { 24 } else { 16 };
    (get32(&bus.memory, top), get32(&bus.memory, top + 4))
}

// mov eax,[a]
fn ld_eax(a: u32) -> Vec<u8> {
    let mut v = vec![0xa1];
    v.extend_from_slice(&a.to_le_bytes());
    v
}
// mov [a],eax
fn st_eax(a: u32) -> Vec<u8> {
    let mut v = vec![0xa3];
    v.extend_from_slice(&a.to_le_bytes());
    v
}
// mov r32, imm32 (r = encoding number)
fn mov_ri(r: u8, v: u32) -> Vec<u8> {
    let mut b = vec![0xb8 + r];
    b.extend_from_slice(&v.to_le_bytes());
    b
}
// mov r32,[a]
fn ld(r: u8, a: u32) -> Vec<u8> {
    let mut v = vec![0x8b, 0x05 | (r << 3)];
    v.extend_from_slice(&a.to_le_bytes());
    v
}
// mov dword [a], imm
fn st_imm(a: u32, imm: u32) -> Vec<u8> {
    let mut v = vec![0xc7, 0x05];
    v.extend_from_slice(&a.to_le_bytes());
    v.extend_from_slice(&imm.to_le_bytes());
    v
}
// invlpg [a]
fn invlpg(a: u32) -> Vec<u8> {
    let mut v = vec![0x0f, 0x01, 0x3d];
    v.extend_from_slice(&a.to_le_bytes());
    v
}
// wrmsr of ecx=msr, edx:eax=v
fn wrmsr(msr: u32, v: u64) -> Vec<u8> {
    [mov_ri(1, msr), mov_ri(0, v as u32), mov_ri(2, (v >> 32) as u32), vec![0x0f, 0x30]].concat()
}
const HLT: u8 = 0xf4;

// ---------------------------------------------------------------- 32-bit paging

#[test]
fn pf_not_present_read_sets_cr2_and_error_code() {
    let code = [ld_eax(0x40123), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, pte32(0x40), 0);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(cpu.state().cr2, 0x40123);
    assert_eq!(frame_err(&bus, false), (0, CODE as u32), "read, supervisor, not present; EIP of the MOV");
}

#[test]
fn pf_user_write_to_read_only_and_supervisor_page() {
    // U/S=1 R/W=0 page: user write -> err P|W|U = 7.
    let code = [st_eax(0x41000), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, pte32(0x41), 0x41000 | 5);
    to_ring3(&mut cpu);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(frame_err(&bus, true), (7, CODE as u32));
    assert_eq!(cpu.state().cr2, 0x41000);

    // Supervisor page (U/S=0) read from ring 3 -> err P|U = 5; the PDE's U/S=0 alone does it too.
    let code = [ld_eax(0x42000), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, pte32(0x42), 0x42000 | 3);
    to_ring3(&mut cpu);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(frame_err(&bus, true), (5, CODE as u32));
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, 0x10000, 0x11000 | 3);
    to_ring3(&mut cpu);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(frame_err(&bus, true).0, 5);
}

#[test]
fn supervisor_write_to_read_only_page_obeys_cr0_wp() {
    let code = [mov_ri(0, 0xabcd), st_eax(0x41000), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, pte32(0x41), 0x41000 | 5);
    assert_eq!(run_vector(&mut cpu, &mut bus), None, "WP=0: ring 0 writes read-only pages");
    assert_eq!(get32(&bus.memory, 0x41000), 0xabcd);
    assert_eq!(get32(&bus.memory, pte32(0x41) as u32) & 0x60, 0x60, "A and D set");

    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, pte32(0x41), 0x41000 | 5);
    modify(&mut cpu, |s| s.cr0 |= CR0_WP);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(frame_err(&bus, false), (3, CODE as u32 + 5), "P|W, supervisor");
    assert_eq!(get32(&bus.memory, 0x41000), 0, "nothing written");
    assert_eq!(get32(&bus.memory, pte32(0x41) as u32) & 0x60, 0, "no A/D for a faulting access");
}

#[test]
fn four_mib_pages_translate_set_ad_and_check_reserved_bits() {
    // PDE 2 (linear 8-12 MiB) -> 4 MiB page at physical 4 MiB; PDE 3 has reserved bit 13 set.
    let code = [mov_ri(0, 0x5555_aaaa), st_eax(0x80_0123), ld(3, 0x80_1000), ld_eax(0xc0_0000), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, 0x10008, 0x40_0000 | 0x87);
    put32(&mut bus.memory, 0x1000c, 0x40_0000 | 0x2000 | 0x87);
    put32(&mut bus.memory, 0x40_1000, 0x1234_5678);
    modify(&mut cpu, |s| s.cr4 |= CR4_PSE);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(get32(&bus.memory, 0x40_0123), 0x5555_aaaa, "linear 0x800123 -> physical 0x400123");
    assert_eq!(cpu.state().gpr[EBX], 0x1234_5678);
    assert_eq!(get32(&bus.memory, 0x10008) & 0x60, 0x60, "A and D in the 4 MiB PDE");
    assert_eq!(frame_err(&bus, false).0, 9, "P|RSVD for PSE-36 bits without PSE-36");
    assert_eq!(cpu.state().cr2, 0xc0_0000);
    // Without CR4.PSE the PS bit is ignored: the PDE points to a page table.
    let (mut cpu, mut bus) = machine(Paging::Legacy, &[ld_eax(0x80_0000), vec![HLT]].concat());
    put32(&mut bus.memory, 0x10008, 0x11000 | 0x87);
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
}

// ---------------------------------------------------------------- PAE and NX

#[test]
fn pae_walk_4k_2m_and_36_bit_physical_addresses() {
    // PDPTE 1 (linear 1-2 GiB) -> PD 0x14000: PDE 0 a 2 MiB page at 6 MiB, PDE 1 -> PT 0x15000 whose
    // PTE 0 maps physical 0x700000 and PTE 1 physical 4 GiB (beyond RAM: MMIO on the FlatBus).
    let code = [
        mov_ri(0, 0x1122_3344),
        st_eax(0x4000_1234),
        ld(3, 0x4020_0010),
        ld(1, 0x4020_1000),
        vec![HLT],
    ]
    .concat();
    let (mut cpu, mut bus) = machine(Paging::Pae, &code);
    let m = &mut bus.memory;
    put64(m, 0x10008, 0x14000 | 1);
    put64(m, 0x14000, 0x60_0000 | 0x83);
    put64(m, 0x14008, 0x15000 | 3);
    put64(m, 0x15000, 0x70_0000 | 3);
    put64(m, 0x15008, 0x1_0000_0000 | 3);
    put32(m, 0x70_0010, 0xfeed_f00d);
    put32(m, 0, 0x0bad_0bad);
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
    let s = cpu.state();
    assert_eq!(get32(&bus.memory, 0x60_1234), 0x1122_3344);
    assert_eq!(s.gpr[EBX], 0xfeed_f00d);
    assert_eq!(s.gpr[ECX], 0xffff_ffff, "physical 0x1_0000_0000 is not RAM address 0 (no truncation)");
    assert_eq!(get64(&bus.memory, 0x14000) & 0x60, 0x60, "A/D in the 2 MiB PDE");
    assert_eq!(get64(&bus.memory, 0x15000) & 0x60, 0x20, "A only for a read");
    assert_eq!(get64(&bus.memory, 0x14008) & 0x20, 0x20);
}

#[test]
fn pae_reserved_bits_fault_with_rsvd() {
    // A PTE with bit 40 set (above MAXPHYADDR 36) -> #PF P|RSVD.
    let (mut cpu, mut bus) = machine(Paging::Pae, &[ld_eax(0x40000), vec![HLT]].concat());
    put64(&mut bus.memory, pte64(0x40), (1 << 40) | 0x40000 | 7);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(frame_err(&bus, false).0, 9);
    assert_eq!(cpu.state().cr2, 0x40000);
}

#[test]
fn pdpte_with_reserved_bits_makes_mov_cr3_gp() {
    // New PDPT at 0x20000 whose entry 0 has reserved bit 5: MOV CR3 faults, CR3 unchanged.
    let code = [mov_ri(0, 0x20000), vec![0x0f, 0x22, 0xd8, HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Pae, &code);
    put64(&mut bus.memory, 0x20000, 0x11000 | 0x21);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(13));
    assert_eq!(frame_err(&bus, false), (0, CODE as u32 + 5));
    assert_eq!(cpu.state().cr3, 0x10000);
    // The same table without the reserved bit loads.
    let (mut cpu, mut bus) = machine(Paging::Pae, &code);
    put64(&mut bus.memory, 0x20000, 0x11000 | 1);
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
    assert_eq!(cpu.state().cr3, 0x20000);
}

#[test]
fn nx_forbids_fetch_not_reads() {
    // Page 0x7000 has XD: reading it works, jumping to it is #PF with I/D.
    let code = [ld_eax(0x7000), mov_ri(3, 0x7000), vec![0xff, 0xe3]].concat();
    let (mut cpu, mut bus) = machine(Paging::Pae, &code);
    put64(&mut bus.memory, pte64(7), (1 << 63) | 0x7000 | 7);
    put32(&mut bus.memory, 0x7000, 0x90f4_9090);
    modify(&mut cpu, |s| s.efer = EFER_NXE);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    let s = cpu.state();
    assert_eq!(s.gpr[EAX], 0x90f4_9090, "data read from an XD page");
    assert_eq!(s.cr2, 0x7000);
    assert_eq!(frame_err(&bus, false), (0x11, 0x7000), "P|I/D, supervisor fetch; EIP = the target");

    // XD in a PDE covers its whole 2 MiB; a user fetch gives P|U|I/D.
    let (mut cpu, mut bus) = machine(Paging::Pae, &[mov_ri(3, 0x20_0000), vec![0xff, 0xe3]].concat());
    put64(&mut bus.memory, 0x11008, (1 << 63) | 0x13000 | 7);
    modify(&mut cpu, |s| s.efer = EFER_NXE);
    to_ring3(&mut cpu);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(cpu.state().cr2, 0x20_0000);
    assert_eq!(frame_err(&bus, true), (0x15, 0x20_0000));

    // Without EFER.NXE bit 63 is reserved: any access faults with RSVD, and no I/D bit.
    let (mut cpu, mut bus) = machine(Paging::Pae, &[ld_eax(0x7000), vec![HLT]].concat());
    put64(&mut bus.memory, pte64(7), (1 << 63) | 0x7000 | 7);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(14));
    assert_eq!(frame_err(&bus, false).0, 9);
}

#[test]
fn efer_accepts_only_nxe() {
    let code = [wrmsr(0xc000_0080, EFER_NXE), wrmsr(0xc000_0080, 1 << 8), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Off, &code);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(13), "LME does not exist on this CPU");
    assert_eq!(cpu.state().efer, EFER_NXE);
}

// ---------------------------------------------------------------- TLB

/// Page 0x60 (global when `g`) and 0x61 (not global) are read into the TLB, then both PTEs are
/// pointed elsewhere in memory; `between` runs before reading them again into ESI/EDI.
fn tlb_case(paging: Paging, cr4: u32, between: &[u8]) -> (Cpu, FlatBus) {
    let (pte60, pte61, (new60, new61)) = match paging {
        Paging::Legacy => (pte32(0x60), pte32(0x61), (0x62107u64, 0x63007u64)),
        _ => (pte64(0x60), pte64(0x61), (0x62107, 0x63007)),
    };
    let st = |a: usize, v: u64| -> Vec<u8> { st_imm(a as u32, v as u32) };
    let code = [ld_eax(0x60000), ld(3, 0x61000), st(pte60, new60), st(pte61, new61), between.to_vec(), ld(6, 0x60000), ld(7, 0x61000), vec![HLT]]
        .concat();
    let (mut cpu, mut bus) = machine(paging, &code);
    let m = &mut bus.memory;
    let g = 0x100;
    if paging == Paging::Legacy {
        put32(m, pte60, 0x60000 | g | 7);
    } else {
        put64(m, pte60, (0x60000 | g | 7) as u64);
    }
    for (a, v) in [(0x60000, 0x1111_1111), (0x61000, 0x2222_2222), (0x62000, 0x3333_3333), (0x63000, 0x4444_4444)] {
        put32(m, a, v);
    }
    modify(&mut cpu, |s| s.cr4 |= cr4);
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
    (cpu, bus)
}

const MOV_CR3_RELOAD: [u8; 6] = [0x0f, 0x20, 0xd9, 0x0f, 0x22, 0xd9]; // mov ecx,cr3; mov cr3,ecx

#[test]
fn tlb_is_stale_until_invalidated() {
    // No flush at all: both old translations stay (hardware may cache them; ours does).
    let (cpu, _) = tlb_case(Paging::Legacy, 0, &[]);
    assert_eq!((cpu.state().gpr[ESI], cpu.state().gpr[EDI]), (0x1111_1111, 0x2222_2222));
    // INVLPG of one page: that page is re-walked, the other stays stale.
    let (cpu, _) = tlb_case(Paging::Legacy, 0, &invlpg(0x61000));
    assert_eq!((cpu.state().gpr[ESI], cpu.state().gpr[EDI]), (0x1111_1111, 0x4444_4444));
}

#[test]
fn global_pages_survive_cr3_loads() {
    for paging in [Paging::Legacy, Paging::Pae] {
        // PGE on: the global page keeps its old translation across MOV CR3, the other is reloaded.
        let (cpu, _) = tlb_case(paging, CR4_PGE, &MOV_CR3_RELOAD);
        assert_eq!((cpu.state().gpr[ESI], cpu.state().gpr[EDI]), (0x1111_1111, 0x4444_4444));
        // PGE off: G is ignored, MOV CR3 flushes both.
        let (cpu, _) = tlb_case(paging, 0, &MOV_CR3_RELOAD);
        assert_eq!((cpu.state().gpr[ESI], cpu.state().gpr[EDI]), (0x3333_3333, 0x4444_4444));
        // INVLPG drops a global entry.
        let (cpu, _) = tlb_case(paging, CR4_PGE, &[MOV_CR3_RELOAD.to_vec(), invlpg(0x60000)].concat());
        assert_eq!(cpu.state().gpr[ESI], 0x3333_3333);
        // Toggling CR4.PGE flushes everything (Linux's __flush_tlb_all).
        // mov eax,cr4; and eax,~0x80; mov cr4,eax; or eax,0x80; mov cr4,eax
        let toggle = [0x0f, 0x20, 0xe0, 0x25, 0x7f, 0xff, 0xff, 0xff, 0x0f, 0x22, 0xe0, 0x0d, 0x80, 0, 0, 0, 0x0f, 0x22, 0xe0];
        let (cpu, _) = tlb_case(paging, CR4_PGE, &toggle);
        assert_eq!((cpu.state().gpr[ESI], cpu.state().gpr[EDI]), (0x3333_3333, 0x4444_4444));
    }
}

#[test]
fn invlpg_drops_every_fragment_of_a_large_page() {
    // Linear 8 MiB (4 MiB page) -> physical 4 MiB; two 4 KiB fragments are used, the PDE moves
    // to physical 0 and one INVLPG (of the first fragment) must drop both.
    let code = [ld_eax(0x80_0000), ld(3, 0x80_1000), st_imm(0x10008, 0x87), invlpg(0x80_0000), ld(6, 0x80_1000), vec![HLT]]
        .concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, 0x10008, 0x40_0000 | 0x87);
    put32(&mut bus.memory, 0x40_1000, 0x7777_7777);
    put32(&mut bus.memory, 0x1000, 0x8888_8888);
    modify(&mut cpu, |s| s.cr4 |= CR4_PSE);
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
    assert_eq!(cpu.state().gpr[EBX], 0x7777_7777);
    assert_eq!(cpu.state().gpr[ESI], 0x8888_8888, "re-walked through the new PDE");
}

// ---------------------------------------------------------------- SYSENTER / SYSEXIT

#[test]
fn sysexit_to_ring3_and_sysenter_back() {
    let mut code = [
        wrmsr(0x174, 0x08),
        wrmsr(0x175, 0x8800),
        wrmsr(0x176, 0x5100),
        mov_ri(1, 0x7000), // ECX: user ESP
        mov_ri(2, 0x5200), // EDX: user EIP
        vec![0xfb, 0x0f, 0x35], // sti; sysexit
    ]
    .concat();
    code.resize(0x100, 0x90);
    code.push(HLT); // 0x5100: the SYSENTER target
    code.resize(0x200, 0x90);
    // 0x5200 (ring 3): mov bx,cs; mov si,ss; mov edi,esp; sysenter
    code.extend_from_slice(&[0x66, 0x8c, 0xcb, 0x66, 0x8c, 0xd6, 0x89, 0xe7, 0x0f, 0x34]);
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
    let s = cpu.state();
    assert_eq!(s.eip, 0x5101);
    assert_eq!((s.gpr[EBX] & 0xffff, s.gpr[ESI] & 0xffff, s.gpr[EDI]), (0x1b, 0x23, 0x7000), "ring 3 after SYSEXIT");
    assert_eq!((s.seg[CS].selector, s.seg[SS].selector, s.gpr[ESP]), (0x08, 0x10, 0x8800));
    assert_eq!(s.seg[CS].access, 0xc09b);
    assert_eq!(s.seg[SS].access, 0xc093);
    assert_eq!(s.eflags & IF, 0, "SYSENTER clears IF");
    assert_eq!(s.cpl(), 0);
}

#[test]
fn sysenter_and_sysexit_faults() {
    // SYSENTER with SYSENTER_CS = 0 -> #GP(0).
    let (mut cpu, mut bus) = machine(Paging::Off, &[0x0f, 0x34]);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(13));
    assert_eq!(frame_err(&bus, false), (0, CODE as u32));
    // SYSEXIT from ring 3 -> #GP(0).
    let (mut cpu, mut bus) = machine(Paging::Off, &[0x0f, 0x35]);
    modify(&mut cpu, |s| s.sysenter_cs = 8);
    to_ring3(&mut cpu);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(13));
    // In real mode SYSENTER is #GP too.
    let mut cpu = Cpu::new();
    let mut bus = FlatBus::new(1 << 20);
    bus.memory[0x1000..0x1002].copy_from_slice(&[0x0f, 0x34]);
    modify(&mut cpu, |s| {
        s.seg[CS] = Segment::real(0);
        s.eip = 0x1000;
        s.sysenter_cs = 8;
        s.gpr[ESP] = 0x8000;
    });
    bus.memory[13 * 4..13 * 4 + 4].copy_from_slice(&[0x00, 0x20, 0, 0]);
    bus.memory[0x2000] = HLT;
    assert_eq!(cpu.run(&mut bus, 10), RunExit::Halted);
    assert_eq!(cpu.state().eip, 0x2001);
}

// ---------------------------------------------------------------- debug registers

#[test]
fn instruction_breakpoint_faults_and_rf_resumes() {
    // DR0 = 0x5005 (L0, execute). The #DB handler sets RF in the pushed EFLAGS and IRETs; the
    // instruction then runs once without a second #DB.
    let code = [vec![0x90; 5], mov_ri(0, 1), vec![0x45, HLT]].concat(); // ...; mov eax,1; inc ebp; hlt
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    // Vector 1 stub: inc ebx; or dword [esp+8],0x10000; iret
    bus.memory[0x3010..0x3020].copy_from_slice(&[0x43, 0x81, 0x4c, 0x24, 0x08, 0, 0, 1, 0, 0xcf, 0, 0, 0, 0, 0, 0]);
    modify(&mut cpu, |s| {
        s.dr[0] = 0x5005;
        s.dr[7] = 0x401;
    });
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
    let s = cpu.state();
    assert_eq!(s.gpr[EBX], 1, "exactly one #DB");
    assert_eq!((s.gpr[EAX], s.gpr[EBP]), (1, 1));
    assert_eq!(s.dr[6] & 0xf, 1, "B0");
    assert_eq!(s.eflags & RF, 0, "RF cleared after the resumed instruction");
    // The frame the handler saw: EIP = breakpoint address, RF=0 in the pushed image originally.
    assert_eq!(get32(&bus.memory, STACK0 - 12), 0x5005);
}

#[test]
fn instruction_breakpoint_frame_has_rf_clear() {
    let (mut cpu, mut bus) = machine(Paging::Off, &[0x90, 0x90, HLT]);
    modify(&mut cpu, |s| {
        s.dr[2] = 0x5001;
        s.dr[7] = 1 << 5; // G2
    });
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(1));
    assert_eq!(get32(&bus.memory, STACK0 - 12), 0x5001);
    assert_eq!(get32(&bus.memory, STACK0 - 4) & RF, 0);
    assert_eq!(cpu.state().dr[6] & 0xf, 4, "B2");
}

#[test]
fn data_breakpoints_trap_after_the_access() {
    // DR1 = 0x6000, write-only, 4 bytes. A read does not trigger, an overlapping byte write does.
    let code = [ld_eax(0x6000), vec![0xa2, 0x02, 0x60, 0, 0], vec![0x90, HLT]].concat(); // mov [0x6002],al
    for paging in [Paging::Off, Paging::Legacy] {
        let (mut cpu, mut bus) = machine(paging, &code);
        modify(&mut cpu, |s| {
            s.dr[1] = 0x6000;
            s.dr[7] = (1 << 2) | (1 << 20) | (3 << 22);
        });
        assert_eq!(run_vector(&mut cpu, &mut bus), Some(1));
        assert_eq!(get32(&bus.memory, STACK0 - 12), CODE as u32 + 10, "trap: EIP after the store");
        assert_eq!(bus.memory[0x6002], cpu.state().gpr[EAX] as u8, "the store completed");
        assert_eq!(cpu.state().dr[6] & 0xf, 2, "B1");
    }
    // Read/write breakpoint: the read triggers.
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    modify(&mut cpu, |s| {
        s.dr[3] = 0x6003;
        s.dr[7] = (1 << 6) | (3 << 28);
    });
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(1));
    assert_eq!(get32(&bus.memory, STACK0 - 12), CODE as u32 + 5);
    assert_eq!(cpu.state().dr[6] & 0xf, 8, "B3");
}

#[test]
fn data_breakpoint_stops_rep_after_the_hitting_iteration() {
    // rep stosb of 32 bytes from 0x6000 over a byte breakpoint at 0x6010.
    let code = [mov_ri(7, 0x6000), mov_ri(1, 32), mov_ri(0, 0xaa), vec![0xfc, 0xf3, 0xaa, HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    modify(&mut cpu, |s| {
        s.dr[0] = 0x6010;
        s.dr[7] = 1 | (1 << 16);
    });
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(1));
    let s = cpu.state();
    assert_eq!((s.gpr[EDI], s.gpr[ECX]), (0x6011, 15));
    assert_eq!(get32(&bus.memory, STACK0 - 12), CODE as u32 + 16, "EIP of the REP STOSB: it resumes");
    assert_eq!(bus.memory[0x6010], 0xaa);
    assert_eq!(bus.memory[0x6011], 0);
}

#[test]
fn general_detect_faults_mov_dr() {
    let (mut cpu, mut bus) = machine(Paging::Off, &[0x0f, 0x21, 0xc0, HLT]); // mov eax,dr0
    modify(&mut cpu, |s| s.dr[7] = 0x2400);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(1));
    let s = cpu.state();
    assert_eq!(get32(&bus.memory, STACK0 - 12), CODE as u32, "fault: EIP at the MOV DR");
    assert_eq!(s.dr[6] & (1 << 13), 1 << 13, "BD");
    assert_eq!(s.dr[7] & (1 << 13), 0, "GD cleared for the handler");
}

#[test]
fn single_step_and_data_breakpoint_report_together() {
    // TF set and a write breakpoint hit by the same instruction: one #DB with BS and B0.
    let (mut cpu, mut bus) = machine(Paging::Off, &[0xa3, 0, 0x60, 0, 0, HLT]);
    modify(&mut cpu, |s| {
        s.eflags |= TF;
        s.dr[0] = 0x6000;
        s.dr[7] = 1 | (1 << 16) | (3 << 18);
    });
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(1));
    assert_eq!(cpu.state().dr[6] & 0x400f, 0x4001);
    assert_eq!(get32(&bus.memory, STACK0 - 12), CODE as u32 + 5);
}

// ---------------------------------------------------------------- #AC

#[test]
fn alignment_check_at_cpl3_only_with_am_and_ac() {
    let code = [ld_eax(0x6004), ld_eax(0x6001), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    modify(&mut cpu, |s| {
        s.cr0 |= CR0_AM;
        s.eflags |= AC;
    });
    to_ring3(&mut cpu);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(17));
    assert_eq!(frame_err(&bus, true), (0, CODE as u32 + 5), "#AC(0) on the misaligned load only");
    // Any of the three conditions missing: no #AC (the final HLT at CPL 3 is #GP).
    for (am, ac, user) in [(false, true, true), (true, false, true), (true, true, false)] {
        let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
        modify(&mut cpu, |s| {
            s.cr0 |= if am { CR0_AM } else { 0 };
            s.eflags |= if ac { AC } else { 0 };
        });
        if user {
            to_ring3(&mut cpu);
        }
        let v = run_vector(&mut cpu, &mut bus);
        assert!(v == None || v == Some(13), "{am} {ac} {user}: {v:?}");
    }
}

// ---------------------------------------------------------------- MSRs and CPUID

#[test]
fn mtrr_msrs_store_and_check() {
    let code = [
        wrmsr(0x2ff, 0xc06),
        wrmsr(0x200, 0x8000_0006),
        wrmsr(0x201, 0xf_8000_0800),
        wrmsr(0x250, 0x0606_0606_0606_0606),
        wrmsr(0x26f, 0x0505_0505_0505_0505),
        mov_ri(1, 0xfe),
        vec![0x0f, 0x32, 0x89, 0xc3], // rdmsr; mov ebx,eax
        wrmsr(0x202, 0x2), // type 2 is reserved
        vec![HLT],
    ]
    .concat();
    let (mut cpu, mut bus) = machine(Paging::Off, &code);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(13));
    let s = cpu.state();
    assert_eq!(s.mtrr.def_type, 0xc06);
    assert_eq!((s.mtrr.var[0], s.mtrr.var[1]), (0x8000_0006, 0xf_8000_0800));
    assert_eq!((s.mtrr.fixed[0], s.mtrr.fixed[10]), (0x0606_0606_0606_0606, 0x0505_0505_0505_0505));
    assert_eq!(s.gpr[EBX] & 0xff, 8, "MTRRcap: 8 variable ranges");
    assert_eq!(s.gpr[EBX] & 0x100, 0x100, "fixed ranges");
    assert_eq!(s.mtrr.var[2], 0);
}

#[test]
fn cpuid_advertises_what_is_implemented() {
    // cpuid(1) -> edx into esi; cpuid(0x80000000) -> eax into edi; cpuid(0x80000001) -> edx stays
    let code = [mov_ri(0, 1), vec![0x0f, 0xa2, 0x89, 0xd6], mov_ri(0, 0x8000_0000), vec![0x0f, 0xa2, 0x89, 0xc7], mov_ri(0, 0x8000_0001), vec![0x0f, 0xa2, HLT]]
        .concat();
    let (mut cpu, mut bus) = machine(Paging::Off, &code);
    assert_eq!(run_vector(&mut cpu, &mut bus), None);
    let s = cpu.state();
    let d = s.gpr[ESI];
    for (bit, name) in [(6, "PAE"), (11, "SEP"), (12, "MTRR"), (13, "PGE"), (3, "PSE"), (8, "CX8"), (15, "CMOV")] {
        assert_ne!(d & (1 << bit), 0, "{name}");
    }
    for (bit, name) in [(1, "VME"), (7, "MCE"), (14, "MCA"), (16, "PAT"), (17, "PSE36"), (25, "SSE"), (26, "SSE2")] {
        assert_eq!(d & (1 << bit), 0, "{name} not implemented");
    }
    assert_eq!(s.gpr[EDI], 0x8000_0001);
    assert_eq!(s.gpr[EDX], 1 << 20, "NX");
}

// ---------------------------------------------------------------- REP MOVS/STOS block path

/// The block path of REP MOVS/STOS (string.rs `rep_block`) against the element-wise path
/// (forced by an armed data breakpoint that never hits): same registers, flags, CR2, memory,
/// including unaligned and page-crossing blocks, overlapping copies, 16-bit address wrap,
/// a #PF in the middle and a count above the 4096-iteration resume chunk.
#[test]
fn rep_block_path_matches_element_wise() {
    // (esi, edi, ecx, eax, prefix bytes + opcode)
    let cases: &[(u32, u32, u32, u32, &[u8])] = &[
        (0x20003, 0x30001, 0x1000, 0, &[0xf3, 0xa5]),
        (0x20000, 0x20005, 100, 0, &[0xf3, 0xa4]),
        (0x20005, 0x20000, 300, 0, &[0xf3, 0x66, 0xa5]),
        (0x20000, 0x21002, 3000, 0xdead_beef, &[0xf3, 0xab]),
        (0x20000, 0xfff0, 0x20, 0x1234_5678, &[0xf3, 0x67, 0x66, 0xab]),
        (0x20000, 0x3f800, 0x400, 0, &[0xf3, 0xa5]),
        (0x20000, 0x50000, 10000, 0x77, &[0xf3, 0xaa]),
        (0x2fff0, 0x3fff0, 0x10, 0, &[0xf3, 0x67, 0xa4]),
    ];
    for (i, &(esi, edi, ecx, eax, op)) in cases.iter().enumerate() {
        let code = [mov_ri(6, esi), mov_ri(7, edi), mov_ri(1, ecx), mov_ri(0, eax), vec![0xfc], op.to_vec(), vec![HLT]].concat();
        let run = |slow: bool| {
            let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
            put32(&mut bus.memory, pte32(0x40), 0);
            for a in 0x20000..0x30000 {
                bus.memory[a] = (a * 7 + a / 253) as u8;
            }
            if slow {
                modify(&mut cpu, |s| {
                    s.dr[0] = 0x7f_f000;
                    s.dr[7] = 1 | (1 << 16);
                });
            }
            let v = run_vector(&mut cpu, &mut bus);
            let s = cpu.state();
            (v, s.gpr, s.eip, s.eflags & !RF, s.cr2, bus.memory)
        };
        let (fast, slow) = (run(false), run(true));
        assert_eq!(fast.0, slow.0, "case {i}: vector");
        assert_eq!((fast.1, fast.2, fast.3, fast.4), (slow.1, slow.2, slow.3, slow.4), "case {i}: registers");
        assert!(fast.5 == slow.5, "case {i}: memory differs");
    }
}

// ---------------------------------------------------------------- double and triple faults

#[test]
fn gp_through_a_not_present_gate_becomes_double_fault() {
    // mov ax,0x40; mov ds,ax: selector 0x40 is beyond the GDT limit -> #GP(0x40). The #GP gate is
    // not present -> #NP(IDT vector 13: 13*8+2). #GP then #NP are both contributory -> #DF(0)
    // (SDM Vol. 3 table 6-5), delivered with the EIP of the faulting MOV.
    let code = [vec![0x66, 0xb8, 0x40, 0x00, 0x8e, 0xd8], vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Off, &code);
    put32(&mut bus.memory, 0x2004 + 8 * 13, 0x0000_0e00); // vector 13: P=0
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(8));
    assert_eq!(frame_err(&bus, false), (0, CODE as u32 + 4), "#DF pushes error code 0, EIP of MOV DS");
}

#[test]
fn benign_then_contributory_is_not_a_double_fault() {
    // INT3 (a trap, benign) through a not-present gate raises #NP(3*8+2), delivered normally.
    let code = [vec![0xcc], vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Off, &code);
    put32(&mut bus.memory, 0x2004 + 8 * 3, 0x0000_ee00 & !0x8000);
    assert_eq!(run_vector(&mut cpu, &mut bus), Some(11));
    assert_eq!(frame_err(&bus, false).0, 3 * 8 + 2, "#NP error code names IDT entry 3 (IDT bit set)");
}

#[test]
fn page_fault_while_delivering_page_fault_is_double_then_triple() {
    // The access faults (page 0x40 not present); pushing the #PF frame faults again on the
    // not-present stack page -> #DF; pushing the #DF frame faults on the same page -> shutdown.
    let code = [ld_eax(0x40123), vec![HLT]].concat();
    let (mut cpu, mut bus) = machine(Paging::Legacy, &code);
    put32(&mut bus.memory, pte32(0x40), 0);
    put32(&mut bus.memory, pte32((STACK0 - 4) >> 12), 0);
    assert_eq!(cpu.run(&mut bus, 100_000), RunExit::Shutdown);
    assert_eq!(cpu.state().cr2, STACK0 - 4, "CR2 holds the last faulting address: the #DF push");
}
