//! Instruction groups: each emits one random instruction (with any set-up it needs) into a [`Gen`].

use super::flags;
use super::gen::*;
use super::layout::*;
use super::state::*;

pub struct Group {
    pub name: &'static str,
    /// GPRs the group writes implicitly: never used for addressing.
    pub avoid: u8,
    /// Whether the case may have memory operands.
    pub memory: bool,
    pub max_units: u32,
    pub unit: fn(&mut Gen),
    /// Compared against the host CPU (32-bit flat, register-only, fault-free) instead of KVM:
    /// KVM's instruction emulator on this host lacks DAA/AAA/AAS and computes DAS/AAM/AAD flags
    /// differently from silicon (see diff_kvm_vs_silicon.rs).
    pub silicon: bool,
}

const ALU_NAMES: [&str; 8] = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
const SHIFT_NAMES: [&str; 8] = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"];
const CC: [&str; 16] = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

fn w(bits: u32, byte_op: u8) -> u8 {
    if bits == 8 { byte_op } else { byte_op + 1 }
}

pub fn alu(g: &mut Gen) {
    let bits = g.osize();
    match g.rng.below(13) {
        0..=7 => {
            let op = g.rng.below(8) as u8;
            g.need_flags(if op == 2 || op == 3 { CF } else { 0 });
            let write = op != 7;
            let name = ALU_NAMES[op as usize];
            let form = g.rng.below(4);
            if form == 0 {
                let rm = g.rm(bits, write, true);
                let r = g.rreg();
                let t = format!("{name} {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
                g.emit_rm(bits, &[w(bits, op * 8)], r, &rm, &[], t);
            } else if form == 1 {
                let r = if write { g.wreg(bits) } else { g.rreg() };
                let rm = g.rm(bits, false, true);
                let t = format!("{name} {}, {}", reg_name(r, bits), g.rm_text(&rm, bits));
                g.emit_rm(bits, &[w(bits, op * 8 + 2)], r, &rm, &[], t);
            } else if form == 2 && (!write || g.writable(EAX)) {
                let v = g.rng.operand(bits);
                let t = format!("{name} {}, {:#x}", reg_name(0, bits), v & mask(bits));
                let mut b = vec![w(bits, op * 8 + 4)];
                b.extend(imm_bytes(v, bits));
                g.emit(bits, &b, t);
            } else {
                let rm = g.rm(bits, write, true);
                let (opc, imm) = if bits != 8 && g.rng.chance(1, 2) {
                    (0x83, vec![g.rng.u8()])
                } else if bits == 8 && g.rng.chance(1, 8) {
                    (0x82, vec![g.rng.u8()]) // alias of 80 outside 64-bit mode
                } else {
                    (w(bits, 0x80), imm_bytes(g.rng.operand(bits), bits))
                };
                let t = format!("{name} {}, imm {:02x?} ({opc:02x})", g.rm_text(&rm, bits), imm);
                g.emit_rm(bits, &[opc], op, &rm, &imm, t);
            }
            let (d, u) = if matches!(op, 1 | 4 | 6) { flags::LOGIC } else { flags::ARITH_ALL };
            g.set_flags(d, u);
        }
        8 => {
            match g.rng.below(3) {
                0 => {
                    let rm = g.rm(bits, false, true);
                    let r = g.rreg();
                    let t = format!("test {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
                    g.emit_rm(bits, &[w(bits, 0x84)], r, &rm, &[], t);
                }
                1 => {
                    let v = g.rng.operand(bits);
                    let mut b = vec![w(bits, 0xa8)];
                    b.extend(imm_bytes(v, bits));
                    g.emit(bits, &b, format!("test {}, {:#x}", reg_name(0, bits), v & mask(bits)));
                }
                _ => {
                    let rm = g.rm(bits, false, true);
                    let v = g.rng.operand(bits);
                    let t = format!("test {}, {:#x}", g.rm_text(&rm, bits), v & mask(bits));
                    g.emit_rm(bits, &[w(bits, 0xf6)], 0, &rm, &imm_bytes(v, bits), t);
                }
            }
            g.set_flags(flags::LOGIC.0, flags::LOGIC.1);
        }
        9 | 10 => {
            let dec = g.rng.chance(1, 2);
            let name = if dec { "dec" } else { "inc" };
            if bits != 8 && g.rng.chance(1, 3) {
                let r = g.wreg(bits);
                g.emit(bits, &[0x40 + (dec as u8) * 8 + r], format!("{name} {}", reg_name(r, bits)));
            } else {
                let rm = g.rm(bits, true, true);
                let t = format!("{name} {}", g.rm_text(&rm, bits));
                g.emit_rm(bits, &[w(bits, 0xfe)], dec as u8, &rm, &[], t);
            }
            g.set_flags(flags::INCDEC.0, flags::INCDEC.1);
        }
        11 => {
            let neg = g.rng.chance(1, 2);
            let rm = g.rm(bits, true, true);
            let t = format!("{} {}", if neg { "neg" } else { "not" }, g.rm_text(&rm, bits));
            g.emit_rm(bits, &[w(bits, 0xf6)], if neg { 3 } else { 2 }, &rm, &[], t);
            if neg {
                g.set_flags(ARITH, 0);
            }
        }
        _ => {
            // mov: varies operands without touching flags
            if g.rng.chance(1, 2) {
                let r = g.wreg(bits);
                let v = g.rng.operand(bits);
                g.mov_imm(r, bits, v);
            } else {
                let rm = g.rm(bits, true, true);
                let r = g.rreg();
                let t = format!("mov {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
                g.emit_rm(bits, &[w(bits, 0x88)], r, &rm, &[], t);
            }
        }
    }
}

fn mask(bits: u32) -> u32 {
    if bits == 32 { u32::MAX } else { (1 << bits) - 1 }
}

fn count(g: &mut Gen, bits: u32) -> u32 {
    match g.rng.below(8) {
        0 => 0,
        1 | 2 => 1,
        3 => g.rng.pick(&[bits - 1, bits, bits + 1, 31, 32, 33, 9, 17]),
        4 => g.rng.u8() as u32,
        _ => g.rng.range(2, bits),
    }
}

pub fn shift(g: &mut Gen) {
    let bits = g.osize();
    let op = g.rng.below(8) as u8;
    let form = g.rng.below(3);
    let cnt = if form == 0 { 1 } else { count(g, bits) };
    if form == 1 {
        g.mov_imm(1, 8, cnt); // mov cl, count (ECX is reserved for this group)
    }
    g.need_flags(if op == 2 || op == 3 { CF } else { 0 });
    let rm = g.rm(bits, true, true);
    let dst = g.rm_text(&rm, bits);
    let name = SHIFT_NAMES[op as usize];
    match form {
        0 => g.emit_rm(bits, &[w(bits, 0xd0)], op, &rm, &[], format!("{name} {dst}, 1")),
        1 => g.emit_rm(bits, &[w(bits, 0xd2)], op, &rm, &[], format!("{name} {dst}, cl")),
        _ => g.emit_rm(bits, &[w(bits, 0xc0)], op, &rm, &[cnt as u8], format!("{name} {dst}, {cnt:#x}")),
    }
    let c = cnt & 31;
    let (d, u) = if op < 4 { flags::rotate(c) } else { flags::shift(op, c, bits) };
    g.set_flags(d, u);
}

pub fn shiftd(g: &mut Gen) {
    let bits = g.rng.pick(&[16, 32]);
    let right = g.rng.chance(1, 2);
    let by_cl = g.rng.chance(1, 2);
    let mut cnt = count(g, bits);
    let rm = g.rm(bits, true, true);
    let mem = matches!(rm, Rm::Mem(_));
    if bits == 16 && (cnt & 31) > 16 && mem {
        cnt = g.rng.range(0, 17); // result undefined for a memory destination: not generated
    }
    if by_cl {
        g.mov_imm(1, 8, cnt);
    }
    let src = g.rreg();
    let name = if right { "shrd" } else { "shld" };
    let dst = g.rm_text(&rm, bits);
    let base = if right { 0xac } else { 0xa4 };
    if by_cl {
        g.emit_rm(bits, &[0x0f, base + 1], src, &rm, &[], format!("{name} {dst}, {}, cl", reg_name(src, bits)));
    } else {
        g.emit_rm(bits, &[0x0f, base], src, &rm, &[cnt as u8], format!("{name} {dst}, {}, {cnt:#x}", reg_name(src, bits)));
    }
    let c = cnt & 31;
    let (d, u) = flags::shld(c, bits);
    g.set_flags(d, u);
    if c > bits {
        // SDM: "If the count is greater than the operand size, the result is undefined": overwrite it.
        if let Rm::Reg(r) = rm {
            let v = g.rng.u16() as u32;
            g.mov_imm(r, 16, v);
        }
    }
}

pub fn muldiv(g: &mut Gen) {
    let bits = g.osize();
    match g.rng.below(6) {
        k @ (0 | 1) => {
            let rm = g.rm(bits, false, true);
            let t = format!("{} {}", if k == 0 { "mul" } else { "imul" }, g.rm_text(&rm, bits));
            g.emit_rm(bits, &[w(bits, 0xf6)], 4 + k as u8, &rm, &[], t);
            g.set_flags(flags::MUL.0, flags::MUL.1);
        }
        2 => {
            let bits = g.rng.pick(&[16, 32]);
            let r = g.wreg(bits);
            let rm = g.rm(bits, false, true);
            let t = format!("imul {}, {}", reg_name(r, bits), g.rm_text(&rm, bits));
            g.emit_rm(bits, &[0x0f, 0xaf], r, &rm, &[], t);
            g.set_flags(flags::MUL.0, flags::MUL.1);
        }
        3 => {
            let bits = g.rng.pick(&[16, 32]);
            let r = g.wreg(bits);
            let rm = g.rm(bits, false, true);
            let (opc, imm) = if g.rng.chance(1, 2) { (0x6b, vec![g.rng.u8()]) } else { (0x69, imm_bytes(g.rng.operand(bits), bits)) };
            let t = format!("imul {}, {}, imm {:02x?}", reg_name(r, bits), g.rm_text(&rm, bits), imm);
            g.emit_rm(bits, &[opc], r, &rm, &imm, t);
            g.set_flags(flags::MUL.0, flags::MUL.1);
        }
        k => {
            let signed = k == 5;
            let rm = g.rm(bits, false, true);
            // The divisor's value: memory is read from the image (this group never writes memory).
            let mut d = if g.rng.chance(1, 12) { 0 } else { g.rng.operand(bits) & mask(bits) };
            match &rm {
                Rm::Reg(r) => {
                    let gpr = if bits == 8 { (r & 3) as usize } else { *r as usize };
                    if g.writable(gpr) {
                        let cur = g.st.gpr[gpr];
                        let full = if bits == 8 && *r >= 4 { (cur & !0xff00) | (d << 8) } else { (cur & !mask(bits)) | d };
                        g.mov_imm(gpr as u8, 32, full);
                    } else {
                        d = if bits == 8 && *r >= 4 { (g.st.gpr[gpr] >> 8) & 0xff } else { g.st.gpr[gpr] & mask(bits) };
                    }
                }
                Rm::Mem(m) => d = g.peek(g.addr_seg(), m.offset, bits / 8),
            }
            // Dividend: usually one whose quotient fits (no #DE), sometimes anything.
            let fits = g.rng.chance(3, 4);
            let lo = g.rng.operand(bits) & mask(bits);
            let hi = if !fits {
                g.rng.operand(bits) & mask(bits)
            } else if signed {
                if lo >> (bits - 1) & 1 == 1 { mask(bits) } else { 0 }
            } else if d == 0 {
                0
            } else {
                g.rng.below(d)
            };
            let (dividend_regs, text) = match bits {
                8 => {
                    g.mov_imm(0, 16, hi << 8 | lo);
                    ((), "")
                }
                _ => {
                    g.mov_imm(0, bits, lo);
                    g.mov_imm(2, bits, hi);
                    ((), "")
                }
            };
            let _ = (dividend_regs, text);
            // The divisor register may be EAX/EDX, which the dividend moves just overwrote: fine,
            // both sides see the same bytes.
            let t = format!("{} {}", if signed { "idiv" } else { "div" }, g.rm_text(&rm, bits));
            g.emit_rm(bits, &[w(bits, 0xf6)], 6 + signed as u8, &rm, &[], t);
            g.set_flags(flags::DIV.0, flags::DIV.1);
        }
    }
}

pub fn bcd(g: &mut Gen) {
    if g.rng.chance(1, 2) {
        let op = g.rng.pick(&[0u8, 2, 3, 5]); // add adc sbb sub al, imm8
        g.need_flags(if op == 2 || op == 3 { CF } else { 0 });
        let v = g.rng.u8();
        g.emit(0, &[op * 8 + 4, v], format!("{} al, {v:#x}", ALU_NAMES[op as usize]));
        g.set_flags(ARITH, 0);
    }
    match g.rng.below(6) {
        k @ 0..=3 => {
            g.need_flags(AF | CF);
            let (opc, name) = [(0x27u8, "daa"), (0x2f, "das"), (0x37, "aaa"), (0x3f, "aas")][k as usize];
            g.emit(0, &[opc], name.into());
            let (d, u) = if k < 2 { flags::DAA } else { flags::AAA };
            g.set_flags(d, u);
        }
        k => {
            // AAM 0 (#DE) is in the `aam0` group: this group runs on the host CPU, where a fault
            // would be a signal.
            let imm = match g.rng.below(6) {
                0 if k == 5 => 0,
                1 | 2 => g.rng.u8().max(1),
                _ => 10,
            };
            let (opc, name) = if k == 4 { (0xd4, "aam") } else { (0xd5, "aad") };
            g.emit(0, &[opc, imm], format!("{name} {imm:#x}"));
            g.set_flags(flags::AAM.0, flags::AAM.1);
        }
    }
}

/// AAM 0 raises #DE (with random AX and flags), compared against KVM in every mode.
pub fn aam0(g: &mut Gen) {
    // alone: KVM's emulator computes AAM's flags unlike the host CPU (see bcd)
    g.emit(0, &[0xd4, 0], "aam 0x0".into());
}

pub fn bitops(g: &mut Gen) {
    let bits = g.rng.pick(&[16, 32]);
    match g.rng.below(3) {
        0 => {
            let op = g.rng.below(4) as u8; // bt bts btr btc
            let rm = g.rm(bits, op != 0, true);
            let mut r = g.rreg();
            if let Rm::Mem(_) = rm {
                // A register bit offset addresses a bit string: keep it near the operand.
                r = g.wreg(bits);
                let off = (g.rng.range(0, 1536) as i32 - 512) as u32;
                g.mov_imm(r, bits, off & mask(bits));
            }
            let name = ["bt", "bts", "btr", "btc"][op as usize];
            let t = format!("{name} {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
            g.emit_rm(bits, &[0x0f, 0xa3 + op * 8], r, &rm, &[], t);
            g.set_flags(flags::BT.0, flags::BT.1);
        }
        1 => {
            let op = g.rng.below(4) as u8;
            let rm = g.rm(bits, op != 0, true);
            let imm = g.rng.u8();
            let name = ["bt", "bts", "btr", "btc"][op as usize];
            let t = format!("{name} {}, {imm:#x}", g.rm_text(&rm, bits));
            g.emit_rm(bits, &[0x0f, 0xba], 4 + op, &rm, &[imm], t);
            g.set_flags(flags::BT.0, flags::BT.1);
        }
        _ => {
            let rev = g.rng.chance(1, 2);
            let r = g.wreg(bits);
            let rm = g.rm(bits, false, true);
            if let Rm::Reg(s) = rm {
                if g.rng.chance(1, 4) && g.writable(s as usize) && s != r {
                    g.mov_imm(s, bits, 0);
                }
            }
            let t = format!("{} {}, {}", if rev { "bsr" } else { "bsf" }, reg_name(r, bits), g.rm_text(&rm, bits));
            g.emit_rm(bits, &[0x0f, 0xbc + rev as u8], r, &rm, &[], t);
            g.set_flags(flags::BSF.0, flags::BSF.1);
        }
    }
}

pub fn string(g: &mut Gen) {
    let std = g.rng.chance(1, 2);
    g.emit(0, &[if std { 0xfd } else { 0xfc }], if std { "std" } else { "cld" }.into());
    let bits = g.osize();
    let size = bits / 8;
    let a32 = g.code32 ^ g.rng.chance(1, 4);
    let op = g.rng.below(5); // movs cmps stos lods scas
    let rep = match g.rng.below(3) {
        0 => None,
        1 => Some(0xf3u8),
        _ if op == 1 || op == 4 => Some(0xf2),
        _ => Some(0xf3),
    };
    let n = if rep.is_some() { g.rng.below(9) } else { 0 };
    let src_seg = if g.rng.chance(1, 3) { g.rng.pick(&[ES, SS, DS, FS, GS]) } else { DS };
    let margin = 9 * 4 + 32;
    // REPE/REPNE CMPS/SCAS running into a limit fault after some iterations: KVM's emulator
    // drops the flags of the completed iterations (it writes EFLAGS back only when the whole
    // emulation succeeds), so those are not generated; the other string ops do hit limits.
    let may_fault = !(rep.is_some() && (op == 1 || op == 4));
    let place = |g: &mut Gen, seg: usize| -> u32 {
        let w = if a32 { data_window(g.mode, seg) } else { data_window16(g.mode, seg) };
        let s = g.st.seg[seg];
        let limit_bounded = may_fault && w.hi as u64 == s.limit as u64 + 1 && seg != SS;
        if limit_bounded && g.rng.chance(1, 20) {
            w.hi - g.rng.range(0, 12) // runs into the limit part way
        } else {
            g.rng.range(w.lo + margin, w.hi - margin)
        }
    };
    let si = place(g, src_seg);
    let di = place(g, ES);
    let (bits_a, hi_rand) = if a32 { (32, 0) } else { (32, g.rng.u32() & 0xffff_0000) };
    g.mov_imm(ESI as u8, bits_a, si | hi_rand);
    let v = di | (g.rng.u32() & 0xffff_0000 & if a32 { 0 } else { !0 });
    g.mov_imm(EDI as u8, bits_a, v);
    let v = n | if a32 { 0 } else { g.rng.u32() & 0xffff_0000 };
    g.mov_imm(ECX as u8, 32, v);
    let mut b = Vec::new();
    if let Some(p) = rep {
        b.push(p);
    }
    if src_seg != DS || g.rng.chance(1, 8) {
        b.push(SEG_PREFIX[src_seg]);
    }
    if a32 != g.code32 {
        b.push(0x67);
    }
    if (bits == 16 && g.code32) || (bits == 32 && !g.code32) {
        b.push(0x66);
    }
    let base = [0xa4u8, 0xa6, 0xaa, 0xac, 0xae][op as usize];
    b.push(if bits == 8 { base } else { base + 1 });
    let name = ["movs", "cmps", "stos", "lods", "scas"][op as usize];
    let pre = match rep {
        Some(0xf3) if op == 1 || op == 4 => "repe ",
        Some(0xf3) => "rep ",
        Some(_) => "repne ",
        None => "",
    };
    g.emit_raw(&b, format!("{pre}{name}{} (src {}, a{})", ["b", "w", "d"][(size.trailing_zeros()) as usize], SEG_NAMES[src_seg], if a32 { 32 } else { 16 }));
    if (op == 1 || op == 4) && (rep.is_none() || n > 0) {
        g.set_flags(ARITH, 0);
    }
}

pub fn xchg(g: &mut Gen) {
    let bits = g.osize();
    match g.rng.below(7) {
        0 => {
            let zx = g.rng.chance(1, 2);
            let dbits = g.rng.pick(&[16, 32]);
            let sbits = if dbits == 16 { 8 } else { g.rng.pick(&[8, 16]) };
            let r = g.wreg(dbits);
            let rm = g.rm(sbits, false, true);
            let opc = if zx { 0xb6 } else { 0xbe } + (sbits == 16) as u8;
            let t = format!("{} {}, {}", if zx { "movzx" } else { "movsx" }, reg_name(r, dbits), g.rm_text(&rm, sbits));
            g.emit_rm(dbits, &[0x0f, opc], r, &rm, &[], t);
        }
        1 => {
            let rm = g.rm(bits, true, true);
            let r = g.wreg(bits);
            let t = format!("xchg {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
            g.emit_rm(bits, &[w(bits, 0x86)], r, &rm, &[], t);
        }
        2 => {
            let bits = g.rng.pick(&[16, 32]);
            let r = g.wreg(bits);
            g.emit(bits, &[0x90 + r], format!("xchg {}, {}", reg_name(0, bits), reg_name(r, bits)));
        }
        3 => {
            let rm = g.rm(bits, true, true);
            let r = g.wreg(bits);
            let t = format!("xadd {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
            g.emit_rm(bits, &[0x0f, w(bits, 0xc0)], r, &rm, &[], t);
            g.set_flags(ARITH, 0);
        }
        4 => {
            let rm = g.rm(bits, true, true);
            let r = g.rreg();
            if let Rm::Reg(d) = rm {
                if g.rng.chance(1, 2) {
                    // mov eAX, dest: makes the "equal" path likely
                    let t = format!("mov {}, {}", reg_name(0, bits), reg_name(d, bits));
                    g.emit_rm(bits, &[w(bits, 0x8a)], 0, &Rm::Reg(d), &[], t);
                }
            }
            let t = format!("cmpxchg {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
            g.emit_rm(bits, &[0x0f, w(bits, 0xb0)], r, &rm, &[], t);
            g.set_flags(ARITH, 0);
        }
        5 if g.use_mem => {
            let m = Rm::Mem(g.mem(8));
            let t = format!("cmpxchg8b {}", g.rm_text(&m, 64));
            let times = if g.rng.chance(1, 2) { 2 } else { 1 };
            for _ in 0..times {
                g.emit_rm(0, &[0x0f, 0xc7], 1, &m, &[], t.clone());
                g.set_flags(flags::CMPXCHG8B.0, flags::CMPXCHG8B.1);
            }
        }
        _ => {
            // BSWAP r32 (BSWAP r16 is documented undefined: not generated)
            let r = g.wreg(32);
            g.emit(32, &[0x0f, 0xc8 + r], format!("bswap {}", reg_name(r, 32)));
        }
    }
}

/// Flag-neutral filler (2 bytes each) to jump over.
fn filler(g: &mut Gen, n: u32) {
    for _ in 0..n {
        let r = g.wreg(8);
        let v = g.rng.u8();
        g.emit_raw(&[0xb0 + r, v], format!("mov {}, {v:#x}", reg_name(r, 8)));
    }
}

pub fn cond(g: &mut Gen) {
    let cc = g.rng.below(16) as u8;
    match g.rng.below(7) {
        0 => {
            g.need_flags(flags::cc_reads(cc));
            let rm = g.rm(8, true, true);
            let t = format!("set{} {}", CC[cc as usize], g.rm_text(&rm, 8));
            g.emit_rm(0, &[0x0f, 0x90 + cc], 0, &rm, &[], t);
        }
        1 => {
            g.need_flags(flags::cc_reads(cc));
            let bits = g.rng.pick(&[16, 32]);
            let r = g.wreg(bits);
            let rm = g.rm(bits, false, true);
            let t = format!("cmov{} {}, {}", CC[cc as usize], reg_name(r, bits), g.rm_text(&rm, bits));
            g.emit_rm(bits, &[0x0f, 0x40 + cc], r, &rm, &[], t);
        }
        2 => {
            g.need_flags(flags::cc_reads(cc));
            let n = g.rng.below(4);
            g.emit_raw(&[0x70 + cc, (n * 2) as u8], format!("j{} short +{}", CC[cc as usize], n * 2));
            filler(g, n);
        }
        3 => {
            g.need_flags(flags::cc_reads(cc));
            let n = g.rng.below(4);
            let wide = g.rng.chance(1, 3);
            let bits = if g.code32 != wide { 32 } else { 16 };
            let mut b = vec![0x0f, 0x80 + cc];
            b.extend(imm_bytes(n * 2, bits));
            g.emit(bits, &b, format!("j{} near{bits} +{}", CC[cc as usize], n * 2));
            filler(g, n);
        }
        4 => {
            // jcxz/jecxz, loop/loope/loopne (forward only); ECX is reserved for this group
            let k = g.rng.below(4);
            let a32 = g.code32 ^ g.rng.chance(1, 3);
            if g.rng.chance(1, 2) {
                let v = g.rng.pick(&[0u32, 1, 2, 0x10000, 0x10001]);
                g.mov_imm(ECX as u8, 32, v);
            }
            if k == 1 || k == 2 {
                g.need_flags(ZF);
            }
            let n = g.rng.below(3);
            let mut b = vec![];
            if a32 != g.code32 {
                b.push(0x67);
            }
            b.extend([[0xe3u8, 0xe2, 0xe1, 0xe0][k as usize], (n * 2) as u8]);
            let name = ["jcxz", "loop", "loope", "loopne"][k as usize];
            g.emit_raw(&b, format!("{name} (a{}) +{}", if a32 { 32 } else { 16 }, n * 2));
            filler(g, n);
        }
        5 => {
            let bits = g.osize();
            let rm = g.rm(bits, false, true);
            let r = g.rreg();
            let t = format!("cmp {}, {}", g.rm_text(&rm, bits), reg_name(r, bits));
            g.emit_rm(bits, &[w(bits, 0x38)], r, &rm, &[], t);
            g.set_flags(ARITH, 0);
        }
        _ => {
            // set flags directly: sahf (SF ZF AF PF CF from AH)
            let r = g.wreg(8);
            let _ = r;
            if g.writable(EAX) {
                let v = g.rng.u8();
                g.emit_raw(&[0xb4, v], format!("mov ah, {v:#x}"));
                g.emit_raw(&[0x9e], "sahf".into());
                g.set_flags(SF | ZF | AF | PF | CF, 0);
            }
        }
    }
}

pub fn lea(g: &mut Gen) {
    let bits = g.rng.pick(&[16, 32]);
    let a32 = g.code32 ^ g.rng.chance(1, 3);
    let r = g.wreg(bits);
    let md = g.rng.below(3) as u8;
    let rm = g.rng.below(8) as u8;
    let mut b = vec![];
    if a32 != g.code32 {
        b.push(0x67);
    }
    if (bits == 16 && g.code32) || (bits == 32 && !g.code32) {
        b.push(0x66);
    }
    b.extend([0x8d, md << 6 | r << 3 | rm]);
    let mut disp = 0;
    if a32 {
        if rm == 4 {
            let sib = g.rng.u8();
            b.push(sib);
            if md == 0 && sib & 7 == 5 {
                disp = 4;
            }
        }
        if md == 0 && rm == 5 {
            disp = 4;
        }
        if md == 1 {
            disp = 1;
        } else if md == 2 {
            disp = 4;
        }
    } else {
        disp = match (md, rm) {
            (0, 6) => 2,
            (0, _) => 0,
            (1, _) => 1,
            _ => 2,
        };
    }
    for _ in 0..disp {
        b.push(g.rng.u8());
    }
    g.emit_raw(&b, format!("lea {}, [a{} form]", reg_name(r, bits), if a32 { 32 } else { 16 }));
}

pub fn stack(g: &mut Gen) {
    let bits = g.rng.pick(&[16, 32]);
    let no_mem_regs = g.reserved == 1 << ESP;
    match g.rng.below(9) {
        0 => {
            let r = g.rreg();
            g.emit(bits, &[0x50 + r], format!("push {}", reg_name(r, bits)));
        }
        1 => {
            let r = g.wreg(bits);
            g.emit(bits, &[0x58 + r], format!("pop {}", reg_name(r, bits)));
        }
        2 => {
            if g.rng.chance(1, 2) {
                let v = g.rng.u8();
                g.emit(bits, &[0x6a, v], format!("push byte {v:#x}"));
            } else {
                let v = g.rng.operand(bits);
                let mut b = vec![0x68];
                b.extend(imm_bytes(v, bits));
                g.emit(bits, &b, format!("push {v:#x}"));
            }
        }
        3 => {
            let rm = g.rm(bits, false, true);
            let t = format!("push {}", g.rm_text(&rm, bits));
            g.emit_rm(bits, &[0xff], 6, &rm, &[], t);
        }
        4 => {
            let rm = g.rm(bits, true, true);
            let t = format!("pop {}", g.rm_text(&rm, bits));
            g.emit_rm(bits, &[0x8f], 0, &rm, &[], t);
        }
        5 => {
            g.emit(bits, &[0x60], format!("pusha{}", if bits == 32 { "d" } else { "" }));
            if no_mem_regs && g.rng.chance(1, 2) {
                g.emit(bits, &[0x61], format!("popa{}", if bits == 32 { "d" } else { "" }));
            }
        }
        6 => {
            // pushf; popf of a controlled image (TF clear so no single-step trap)
            g.need_flags(ARITH);
            g.emit(bits, &[0x9c], "pushf".into());
            let v = (g.rng.u32() & 0x0025_4cd5 & !TF & ac_mask(g)) | 2;
            let mut b = vec![0x68];
            b.extend(imm_bytes(v, bits));
            g.emit(bits, &b, format!("push {v:#x}"));
            g.emit(bits, &[0x9d], "popf".into());
            g.set_flags(ARITH, 0);
        }
        7 => {
            // enter/leave with EBP pointing into the stack (EBP is reserved for this group)
            let sp = g.st.gpr[ESP];
            let ebp = (sp & 0xffff_0000) | (g.rng.range(0x5000, 0x7000) & 0xfffc);
            let ebp = if g.st.seg[SS].access & 0x4000 != 0 { ebp & 0xffff } else { ebp };
            g.mov_imm(EBP as u8, 32, ebp);
            let size = g.rng.below(64) as u16;
            // Nesting levels > 0: KVM's instruction emulator (used for non-paged guests on this
            // host) refuses them (KVM_EXIT_INTERNAL_ERROR), so only level 0 is compared.
            let level = 0u8;
            let mut b = vec![0xc8];
            b.extend(size.to_le_bytes());
            b.push(level);
            // ENTER with the non-default operand size (66 prefix) is wrong in KVM's emulator (it
            // disagrees with the host CPU in diff_kvm_vs_silicon), so only the default size.
            let bits = if g.code32 { 32 } else { 16 };
            g.emit(bits, &b, format!("enter {size:#x}, {level}"));
            if g.rng.chance(1, 2) {
                g.emit(bits, &[0xc9], "leave".into());
            }
        }
        _ => {
            let push = g.rng.below(6) as usize;
            let pop = g.rng.pick(&[ES, DS, FS, GS, SS]);
            let pop = if pop == SS { SS } else { pop };
            let pb: &[u8] = match push {
                ES => &[0x06],
                CS => &[0x0e],
                SS => &[0x16],
                DS => &[0x1e],
                FS => &[0x0f, 0xa0],
                _ => &[0x0f, 0xa8],
            };
            // pop ss only of the SS selector itself (another stack would leave the window)
            let src = if pop == SS { SS } else { push };
            let pb2: &[u8] = match src {
                ES => &[0x06],
                CS => &[0x0e],
                SS => &[0x16],
                DS => &[0x1e],
                FS => &[0x0f, 0xa0],
                _ => &[0x0f, 0xa8],
            };
            let _ = pb;
            // Do not reload the segment this case's memory operands go through.
            if !no_mem_regs && pop == g.addr_seg() {
                return;
            }
            g.emit(bits, pb2, format!("push {}", SEG_NAMES[src]));
            let qb: &[u8] = match pop {
                ES => &[0x07],
                SS => &[0x17],
                DS => &[0x1f],
                FS => &[0x0f, 0xa1],
                _ => &[0x0f, 0xa9],
            };
            g.emit(bits, qb, format!("pop {}", SEG_NAMES[pop]));
        }
    }
}

pub fn misc(g: &mut Gen) {
    match g.rng.below(10) {
        9 if matches!(g.mode, Mode::Pm16 | Mode::Pm32Flat) => {
            // #UD: invalid encodings (the sequence ends in the #UD handler). Only where this
            // host's KVM emulator injects #UD (in real mode and the based mode it gives up).
            let (b, t): (&[u8], &str) = g.rng.pick(&[
                (&[0x0f, 0x0b][..], "ud2"),
                (&[0xf0, 0x01, 0xc0][..], "lock add eax, eax (register destination)"),
                (&[0xf0, 0x90][..], "lock nop"),
                // (0F FF, LEA and CMPXCHG8B with a register operand: KVM's emulator on this host
                // gives up instead of raising #UD, so they are not generated)
            ]);
            g.emit_raw(b, t.into());
        }
        0 => {
            let bits = g.rng.pick(&[16, 32]);
            g.emit(bits, &[0x98], if bits == 16 { "cbw" } else { "cwde" }.into());
        }
        1 => {
            let bits = g.rng.pick(&[16, 32]);
            g.emit(bits, &[0x99], if bits == 16 { "cwd" } else { "cdq" }.into());
        }
        2 => {
            let k = g.rng.below(3);
            if k == 2 {
                g.need_flags(CF);
            }
            g.emit(0, &[[0xf8, 0xf9, 0xf5][k as usize]], ["clc", "stc", "cmc"][k as usize].into());
            g.set_flags(CF, 0);
        }
        3 => {
            g.need_flags(SF | ZF | AF | PF | CF);
            g.emit(0, &[0x9f], "lahf".into());
        }
        4 => {
            g.emit(0, &[0x9e], "sahf".into());
            g.set_flags(SF | ZF | AF | PF | CF, 0);
        }
        5 => {
            // xlat: [ebx/bx + al]; EBX is reserved for this group's set-up
            let seg = if g.rng.chance(1, 3) { g.rng.pick(&[ES, DS, FS, GS]) } else { DS };
            let a32 = g.code32 ^ g.rng.chance(1, 4);
            let wnd = if a32 { data_window(g.mode, seg) } else { data_window16(g.mode, seg) };
            let bx = g.rng.range(wnd.lo, wnd.hi - 256);
            let v = if a32 { bx } else { bx | (g.rng.u32() & 0xffff_0000) };
            g.mov_imm(EBX as u8, 32, v);
            let mut b = vec![];
            if seg != DS {
                b.push(SEG_PREFIX[seg]);
            }
            if a32 != g.code32 {
                b.push(0x67);
            }
            b.push(0xd7);
            g.emit_raw(&b, format!("xlat {}:[{}bx+al]", SEG_NAMES[seg], if a32 { "e" } else { "" }));
        }
        6 => {
            let bits = g.osize();
            let r = g.wreg(bits);
            let rm = g.rm(bits, false, true);
            let t = format!("mov {}, {}", reg_name(r, bits), g.rm_text(&rm, bits));
            g.emit_rm(bits, &[w(bits, 0x8a)], r, &rm, &[], t);
        }
        7 => {
            let bits = g.osize();
            let rm = g.rm(bits, true, true);
            let v = g.rng.operand(bits);
            let t = format!("mov {}, {:#x}", g.rm_text(&rm, bits), v & mask(bits));
            g.emit_rm(bits, &[w(bits, 0xc6)], 0, &rm, &imm_bytes(v, bits), t);
        }
        _ => {
            // mov al/ax/eax <-> moffs (DS) (also the #UD slot in modes without it)
            let bits = g.osize();
            let a32 = g.code32 ^ g.rng.chance(1, 4);
            let wnd = if a32 { data_window(g.mode, DS) } else { data_window16(g.mode, DS) };
            let off = g.rng.range(wnd.lo, wnd.hi - 4);
            let store = g.rng.chance(1, 2);
            let mut b = vec![];
            if a32 != g.code32 {
                b.push(0x67);
            }
            if (bits == 16 && g.code32) || (bits == 32 && !g.code32) {
                b.push(0x66);
            }
            b.push(w(bits, if store { 0xa2 } else { 0xa0 }));
            b.extend(imm_bytes(off, if a32 { 32 } else { 16 }));
            g.emit_raw(&b, format!("mov moffs{} [{off:#x}] {}", if a32 { 32 } else { 16 }, if store { "<- acc" } else { "-> acc" }));
        }
    }
}

/// Segment register loads: MOV Sreg (every check: null, limit, type, DPL/RPL, present, SS rules),
/// MOV r/m, Sreg. No memory operands (a reloaded segment would send them anywhere).
pub fn sreg(g: &mut Gen) {
    let prot = g.mode.protected();
    match g.rng.below(4) {
        0..=2 => {
            let dst = g.rng.pick(&[ES, DS, FS, GS, SS, SS]);
            let sel: u16 = if !prot {
                g.rng.u16()
            } else if dst == SS {
                // SS candidates either contain the current ESP or fault without loading
                let cur = g.st.seg[SS].selector;
                let ok: Vec<u16> = match g.mode {
                    Mode::Pm16 => vec![cur, 0x28, 0x28],
                    Mode::Pm32Based => vec![cur, 0x10, 0x58],
                    _ => vec![cur, 0x10, 0x58],
                };
                if g.rng.chance(3, 4) {
                    g.rng.pick(&ok)
                } else {
                    g.rng.pick(&[0u16, 3, 0x08, 0x11, 0x13, 0x60, 0x68, 0x6b, 0x70, 0x80, 0x88, 0x98, 0x4000, 0x14, 0x1c])
                }
            } else {
                match g.rng.below(8) {
                    0 => g.rng.pick(&[0u16, 1, 2, 3]),
                    1 => g.rng.pick(&[0x98u16, 0x2000, 0xfff8, 0x14, 0x0c]),
                    2 => (g.rng.range(1, 18) as u16) << 3 | g.rng.below(4) as u16,
                    _ => g.rng.pick(&[0x08u16, 0x10, 0x20, 0x28, 0x38, 0x40, 0x48, 0x50, 0x58, 0x68, 0x6b, 0x78, 0x80]),
                }
            };
            g.emit(16, &[0xb8, sel as u8, (sel >> 8) as u8], format!("mov ax, {sel:#x}"));
            let sreg_enc = [0u8, 1, 2, 3, 4, 5][dst];
            g.emit_raw(&[0x8e, 0xc0 | sreg_enc << 3], format!("mov {}, ax", SEG_NAMES[dst]));
        }
        _ => {
            let bits = g.rng.pick(&[16, 32]);
            let r = g.wreg(bits);
            let src = g.rng.below(6) as u8;
            let t = format!("mov {}, {}", reg_name(r, bits), SEG_NAMES[src as usize]);
            g.emit_rm(bits, &[0x8c], src, &Rm::Reg(r), &[], t);
        }
    }
}

/// Privileged and IOPL-sensitive instructions (CPL 0 executes them, CPL 3 with IOPL 0 faults),
/// port I/O (compared port by port), software interrupts.
/// EFLAGS.AC in POPF images: this host's KVM (kvm-pvm) clears AC set by a CPL-3 POPF and on
/// exception delivery (hardware does neither: AC is writable at every CPL and protected-mode
/// delivery only clears TF/VM/RF/NT), so POPF never sets AC here.
fn ac_mask(_g: &Gen) -> u32 {
    !(1 << 18)
}

pub fn privileged(g: &mut Gen) {
    match g.rng.below(9) {
        0 => {
            let sti = g.rng.chance(1, 2);
            g.emit_raw(&[if sti { 0xfb } else { 0xfa }], if sti { "sti" } else { "cli" }.into());
        }
        1 => {
            let port = g.rng.pick(&[0xe9u8, 0x70, 0xf0, 0x99]);
            let bits = g.osize();
            let out = g.rng.chance(1, 2);
            let opc = w(bits, if out { 0xe6 } else { 0xe4 });
            g.emit(bits, &[opc, port], format!("{} {port:#x}, {}", if out { "out" } else { "in" }, reg_name(0, bits)));
        }
        2 => {
            let bits = g.osize();
            let out = g.rng.chance(1, 2);
            let port = g.rng.pick(&[0x1234u32, 0x0cf8, 0x0510, 0xe9]);
            g.mov_imm(EDX as u8, 16, port);
            g.emit(bits, &[w(bits, if out { 0xee } else { 0xec })], format!("{} dx, {}", if out { "out" } else { "in" }, reg_name(0, bits)));
        }
        // Software interrupts only in real mode: KVM's emulator on this host cannot do INT n /
        // INT3 / INTO in protected mode (KVM_EXIT_INTERNAL_ERROR), and INT 0x80 never returns.
        3 if !g.mode.protected() => {
            // INT n: vectors without an error code (n < 32) or any vector (to stub 0)
            let n = g.rng.pick(&[0u8, 1, 3, 4, 5, 6, 7, 9, 16, 18, 20, 31]); // (vectors >= 32 never return on this host)
            g.emit_raw(&[0xcd, n], format!("int {n:#x}"));
        }
        4 if !g.mode.protected() => {
            if g.rng.chance(1, 2) {
                g.emit_raw(&[0xcc], "int3".into());
            } else {
                g.need_flags(OF);
                g.emit_raw(&[0xce], "into".into());
            }
        }
        5 => {
            if g.mode.protected() || g.rng.chance(1, 2) {
                let r = g.wreg(32);
                let cr = g.rng.pick(&[0u8, 2, 3, 4]);
                g.emit_raw(&[0x0f, 0x20, 0xc0 | cr << 3 | r], format!("mov {}, cr{cr}", reg_name(r, 32)));
            }
        }
        6 => g.emit_raw(&[0x0f, 0x06], "clts".into()),
        7 => {
            // popf of a controlled image: CPL 3 cannot change IF/IOPL (silently)
            let bits = g.rng.pick(&[16, 32]);
            let v = (g.rng.u32() & 0x0025_7fd5 & !TF & ac_mask(g)) | 2;
            let mut b = vec![0x68];
            b.extend(imm_bytes(v, bits));
            g.emit(bits, &b, format!("push {v:#x}"));
            g.emit(bits, &[0x9d], "popf".into());
            g.set_flags(ARITH, 0);
        }
        8 => g.emit_raw(&[0xf4], "hlt (mid-sequence)".into()),
        _ => g.emit_raw(&[0xfa], "cli".into()),
    }
}

/// x87 through the whole CPU (decoder, ModRM, FPU memory operands, FNSTSW AX, FCOMI flags),
/// against the host CPU in 32-bit flat mode: loads from and stores to memory, arithmetic with
/// m32/m64 operands, register ops, integer conversions. Every case starts with FNINIT and ends
/// with FNINIT (the host's x87 stack must be empty again); values reach the comparison through
/// stores, FNSTSW AX and EFLAGS.
pub fn x87(g: &mut Gen) {
    if g.code.is_empty() {
        g.emit_raw(&[0xdb, 0xe3], "fninit".into());
        let cw = 0x037f | (g.rng.below(4) as u16) << 10;
        let _ = cw; // control word stays the FNINIT default (64-bit precision, nearest)
    }
    let m = |g: &mut Gen, bytes: u32| Rm::Mem(g.mem(bytes));
    match g.rng.below(12) {
        0 => { let o = m(g, 8); let t = format!("fld qword {}", g.rm_text(&o, 0)); g.emit_rm(0, &[0xdd], 0, &o, &[], t); }
        1 => { let o = m(g, 4); let t = format!("fld dword {}", g.rm_text(&o, 0)); g.emit_rm(0, &[0xd9], 0, &o, &[], t); }
        2 => { let o = m(g, 4); let t = format!("fild dword {}", g.rm_text(&o, 0)); g.emit_rm(0, &[0xdb], 0, &o, &[], t); }
        3 => {
            // fadd/fmul/fcom/fcomp/fsub/fsubr/fdiv/fdivr m64 or m32
            let op = g.rng.below(8) as u8;
            let (opc, b) = if g.rng.chance(1, 2) { (0xdc, 8) } else { (0xd8, 4) };
            let o = m(g, b);
            let t = format!("f{} {}", ["add", "mul", "com", "comp", "sub", "subr", "div", "divr"][op as usize], g.rm_text(&o, b * 8));
            g.emit_rm(0, &[opc], op, &o, &[], t);
        }
        4 => { let o = m(g, 8); let t = format!("fstp qword {}", g.rm_text(&o, 0)); g.emit_rm(0, &[0xdd], 3, &o, &[], t); }
        5 => { let o = m(g, 4); let t = format!("fist dword {}", g.rm_text(&o, 0)); g.emit_rm(0, &[0xdb], 2, &o, &[], t); }
        6 => { let o = m(g, 10); let t = format!("fstp tword {}", g.rm_text(&o, 0)); g.emit_rm(0, &[0xdb], 7, &o, &[], t); }
        7 => {
            let (b, t) = g.rng.pick(&[
                ([0xd9u8, 0xe8], "fld1"), ([0xd9, 0xee], "fldz"), ([0xd9, 0xe0], "fchs"), ([0xd9, 0xe1], "fabs"),
                ([0xd9, 0xfa], "fsqrt"), ([0xd9, 0xc9], "fxch st1"), ([0xd9, 0xfc], "frndint"), ([0xde, 0xc1], "faddp st1"),
                ([0xde, 0xf9], "fdivp st1"), ([0xd9, 0xeb], "fldpi"), ([0xd9, 0xc0], "fld st0"), ([0xdd, 0xd8], "fstp st0"),
            ]);
            g.emit_raw(&b, t.into());
        }
        8 => {
            // fcomi / fucomi st0, st1: ZF PF CF (OF SF AF cleared)
            let b = if g.rng.chance(1, 2) { [0xdb, 0xf1] } else { [0xdb, 0xe9] };
            g.emit_raw(&b, "fcomi/fucomi st0, st1".into());
            g.set_flags(ARITH, 0);
        }
        9 => {
            if g.writable(EAX) {
                g.emit_raw(&[0xdf, 0xe0], "fnstsw ax".into());
            }
        }
        10 => { let o = m(g, 2); let t = format!("fnstcw {}", g.rm_text(&o, 16)); g.emit_rm(0, &[0xd9], 7, &o, &[], t); }
        _ => { let o = m(g, 2); let t = format!("fnstsw {}", g.rm_text(&o, 16)); g.emit_rm(0, &[0xdd], 7, &o, &[], t); }
    }
}

pub fn all() -> Vec<Group> {
    vec![
        Group { name: "alu", avoid: 0, memory: true, max_units: 6, unit: alu, silicon: false },
        Group { name: "shift", avoid: 1 << ECX, memory: true, max_units: 5, unit: shift, silicon: false },
        Group { name: "shiftd", avoid: 1 << ECX, memory: true, max_units: 4, unit: shiftd, silicon: false },
        Group { name: "muldiv", avoid: 1 << EAX | 1 << EDX, memory: true, max_units: 4, unit: muldiv, silicon: false },
        Group { name: "bcd", avoid: 1 << EAX, memory: false, max_units: 6, unit: bcd, silicon: true },
        Group { name: "aam0", avoid: 1 << EAX, memory: false, max_units: 1, unit: aam0, silicon: false },
        Group { name: "bitops", avoid: 0, memory: true, max_units: 5, unit: bitops, silicon: false },
        Group { name: "string", avoid: 1 << ECX | 1 << ESI | 1 << EDI, memory: false, max_units: 3, unit: string, silicon: false },
        Group { name: "xchg", avoid: 1 << EAX | 1 << EDX, memory: true, max_units: 5, unit: xchg, silicon: false },
        Group { name: "cond", avoid: 1 << ECX | 1 << EAX, memory: true, max_units: 6, unit: cond, silicon: false },
        Group { name: "lea", avoid: 0, memory: false, max_units: 6, unit: lea, silicon: false },
        Group { name: "stack", avoid: 1 << ESP | 1 << EBP, memory: true, max_units: 8, unit: stack, silicon: false },
        Group { name: "sreg", avoid: 1 << EAX, memory: false, max_units: 5, unit: sreg, silicon: false },
        Group { name: "privileged", avoid: 1 << EAX | 1 << EDX, memory: false, max_units: 4, unit: privileged, silicon: false },
        Group { name: "x87", avoid: 1 << EAX, memory: true, max_units: 12, unit: x87, silicon: true },
        Group { name: "misc", avoid: 1 << EAX | 1 << EDX | 1 << EBX, memory: true, max_units: 6, unit: misc, silicon: false },
    ]
}

pub fn group(name: &str) -> Group {
    all().into_iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no group {name}"))
}

/// Build case `seed` of `group` in `mode` over the base `image`.
pub fn make_case(gr: &Group, mode: Mode, seed: u64, image: &[u8]) -> Case {
    make_case_with(gr, mode, seed, image, true)
}

/// As [`make_case`]; `memory = false` keeps every operand in registers.
pub fn make_case_with(gr: &Group, mode: Mode, seed: u64, image: &[u8], memory: bool) -> Case {
    let mut g = Gen::new(mode, seed, image);
    // host-CPU groups: FS/GS are null selectors on the host, so no overrides to them
    g.no_fs_gs = gr.silicon;
    if memory && gr.memory && (gr.name == "x87" || g.rng.chance(3, 4)) {
        g.setup_addr(gr.avoid);
    }
    // Implicitly written registers are never used for addressing; keep them writable.
    let n = g.rng.range(1, gr.max_units + 1);
    for _ in 0..n {
        (gr.unit)(&mut g);
    }
    if gr.name == "x87" {
        g.emit_raw(&[0xdb, 0xe3], "fninit".into());
    }
    g.finish(gr.name, seed)
}
