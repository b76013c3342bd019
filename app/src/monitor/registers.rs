//! `info registers` in QEMU's layout (`x86_cpu_dump_state`), so tools that read QEMU's output
//! read ours.

use vessel_core::cpu::CpuState;

/// QEMU's segment "flags" column: the descriptor's high dword without the base/limit bits.
fn seg_flags(access: u16) -> u32 {
    ((access as u32 & 0xFF) << 8) | (((access as u32 >> 12) & 0xF) << 20)
}

pub fn format(s: &CpuState) -> String {
    let g = &s.gpr; // EAX ECX EDX EBX ESP EBP ESI EDI
    let f = s.eflags;
    let flag = |bit: u32, c: char| if f & (1 << bit) != 0 { c } else { '-' };
    let protected = s.cr0 & 1 != 0 && f & (1 << 17) == 0;
    let cpl = if protected { (s.seg[2].access >> 5) & 3 } else if f & (1 << 17) != 0 { 3 } else { 0 };
    let mut o = String::new();
    o += &format!("EAX={:08x} EBX={:08x} ECX={:08x} EDX={:08x}\n", g[0], g[3], g[1], g[2]);
    o += &format!("ESI={:08x} EDI={:08x} EBP={:08x} ESP={:08x}\n", g[6], g[7], g[5], g[4]);
    o += &format!(
        "EIP={:08x} EFL={:08x} [{}{}{}{}{}{}{}] CPL={} II={} SMM=0 HLT={}\n",
        s.eip,
        f,
        flag(10, 'D'),
        flag(11, 'O'),
        flag(7, 'S'),
        flag(6, 'Z'),
        flag(4, 'A'),
        flag(2, 'P'),
        flag(0, 'C'),
        cpl,
        s.intr_shadow as u8,
        s.halted as u8
    );
    for (name, seg) in ["ES =", "CS =", "SS =", "DS =", "FS =", "GS ="].iter().zip(&s.seg) {
        o += &format!("{name}{:04x} {:08x} {:08x} {:08x}\n", seg.selector, seg.base, seg.limit, seg_flags(seg.access));
    }
    o += &format!("LDT={:04x} {:08x} {:08x} {:08x}\n", s.ldtr.selector, s.ldtr.base, s.ldtr.limit, seg_flags(s.ldtr.access));
    o += &format!("TR ={:04x} {:08x} {:08x} {:08x}\n", s.tr.selector, s.tr.base, s.tr.limit, seg_flags(s.tr.access));
    o += &format!("GDT=     {:08x} {:08x}\n", s.gdtr.base, s.gdtr.limit);
    o += &format!("IDT=     {:08x} {:08x}\n", s.idtr.base, s.idtr.limit);
    o += &format!("CR0={:08x} CR2={:08x} CR3={:08x} CR4={:08x}\n", s.cr0, s.cr2, s.cr3, s.cr4);
    o += &format!("DR0={:08x} DR1={:08x} DR2={:08x} DR3={:08x} \n", s.dr[0], s.dr[1], s.dr[2], s.dr[3]);
    o += &format!("DR6={:08x} DR7={:08x}\n", s.dr[6], s.dr[7]);
    o += &format!("EFER={:016x}\n", s.efer);
    let fp = &s.fpu;
    o += &format!(
        "FCW={:04x} FSW={:04x} [ST={}] FTW={:02x}",
        fp.cw,
        fp.sw | ((fp.top as u16 & 7) << 11),
        fp.top & 7,
        fp.tags
    );
    o
}
