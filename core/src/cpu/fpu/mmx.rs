//! MMX: eight 64-bit registers aliased onto the x87 significands (MMi = physical R i).
//!
//! Every MMX instruction except EMMS sets TOP = 0 and marks all tags valid; a write to MMi also
//! sets R i's sign/exponent field to all ones (so x87 code sees a NaN), as the hardware does.

use super::{FpuMemory, FpuOutcome, FpuState, MemFault};

fn lanes<const N: usize>(v: u64) -> [u64; N] {
    let bits = 64 / N;
    let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let mut out = [0u64; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (v >> (i * bits)) & mask;
    }
    out
}

fn join<const N: usize>(l: [u64; N]) -> u64 {
    let bits = 64 / N;
    let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    l.iter().enumerate().fold(0, |acc, (i, &x)| acc | ((x & mask) << (i * bits)))
}

fn sext(x: u64, bits: u32) -> i64 {
    ((x << (64 - bits)) as i64) >> (64 - bits)
}

/// Lane-wise binary operation on `N` lanes of `64/N` bits.
fn map2<const N: usize>(a: u64, b: u64, f: impl Fn(u64, u64) -> u64) -> u64 {
    let (la, lb) = (lanes::<N>(a), lanes::<N>(b));
    let mut r = [0u64; N];
    for i in 0..N {
        r[i] = f(la[i], lb[i]);
    }
    join(r)
}

fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    let min = -(1i64 << (bits - 1));
    v.clamp(min, max) as u64
}

fn sat_u(v: i64, bits: u32) -> u64 {
    v.clamp(0, (1i64 << bits) - 1) as u64
}

macro_rules! lanewise {
    ($a:expr, $b:expr, $n:literal, $bits:literal, |$x:ident, $y:ident| $e:expr) => {
        map2::<$n>($a, $b, |$x, $y| $e)
    };
}

fn shift(a: u64, count: u64, lane_bits: u32, kind: u8) -> u64 {
    // kind: 0 logical right, 1 arithmetic right, 2 left
    match lane_bits {
        16 => map2::<4>(a, 0, |x, _| shift_lane(x, count, 16, kind)),
        32 => map2::<2>(a, 0, |x, _| shift_lane(x, count, 32, kind)),
        _ => shift_lane(a, count, 64, kind),
    }
}

fn shift_lane(x: u64, count: u64, bits: u32, kind: u8) -> u64 {
    let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    match kind {
        0 => {
            if count >= bits as u64 {
                0
            } else {
                (x & mask) >> count
            }
        }
        1 => {
            let c = count.min(bits as u64 - 1);
            (sext(x, bits) >> c) as u64 & mask
        }
        _ => {
            if count >= bits as u64 {
                0
            } else {
                (x << count) & mask
            }
        }
    }
}

impl FpuState {
    fn mmx_touch(&mut self) {
        self.top = 0;
        self.tags = 0xFF;
    }

    pub fn set_mm(&mut self, i: usize, v: u64) {
        self.regs[i & 7].sig = v;
        self.regs[i & 7].se = 0xFFFF;
    }

    /// Execute a 0F-prefixed MMX instruction (`opcode` = byte after 0F). For MOVD with a register
    /// operand the general-purpose registers are read/written through `gpr`. The immediate shifts
    /// (0F 71-73) use [`FpuState::mmx_shift_imm`].
    pub fn mmx_execute<M: FpuMemory>(
        &mut self,
        opcode: u8,
        modrm: u8,
        ea: Option<u32>,
        mem: &mut M,
        gpr: &mut [u32; 8],
    ) -> FpuOutcome {
        match self.mmx_inner(opcode, modrm, ea, mem, gpr) {
            Ok(o) => o,
            Err(MemFault) => FpuOutcome::MemFault,
        }
    }

    fn mmx_inner<M: FpuMemory>(
        &mut self,
        opcode: u8,
        modrm: u8,
        ea: Option<u32>,
        mem: &mut M,
        gpr: &mut [u32; 8],
    ) -> Result<FpuOutcome, MemFault> {
        let reg = ((modrm >> 3) & 7) as usize;
        let rm = (modrm & 7) as usize;
        let ea = if modrm >= 0xC0 { None } else { ea };
        match opcode {
            0x77 => {
                self.emms();
                return Ok(FpuOutcome::Done);
            }
            0x6E => {
                let v = match ea {
                    Some(ea) => {
                        let mut b = [0u8; 4];
                        mem.read(ea, &mut b)?;
                        u32::from_le_bytes(b)
                    }
                    None => gpr[rm],
                };
                self.mmx_touch();
                self.set_mm(reg, v as u64);
                return Ok(FpuOutcome::Done);
            }
            0x7E => {
                let v = self.mm(reg) as u32;
                match ea {
                    Some(ea) => mem.write(ea, &v.to_le_bytes())?,
                    None => gpr[rm] = v,
                }
                self.mmx_touch();
                return Ok(FpuOutcome::Done);
            }
            0x7F => {
                let v = self.mm(reg);
                match ea {
                    Some(ea) => mem.write(ea, &v.to_le_bytes())?,
                    None => self.set_mm(rm, v),
                }
                self.mmx_touch();
                return Ok(FpuOutcome::Done);
            }
            _ => {}
        }
        if !matches!(opcode, 0x60..=0x6B | 0x6F | 0x74..=0x76 | 0xD1..=0xD3 | 0xD5 | 0xD8 | 0xD9 | 0xDB..=0xDD
            | 0xDF | 0xE1 | 0xE2 | 0xE5 | 0xE8 | 0xE9 | 0xEB..=0xED | 0xEF | 0xF1..=0xF3 | 0xF5 | 0xF8..=0xFA
            | 0xFC..=0xFE)
        {
            return Ok(FpuOutcome::Unimplemented);
        }
        let b = match ea {
            Some(ea) => {
                // PUNPCKL* read only 32 bits on MMX.
                if matches!(opcode, 0x60..=0x62) {
                    let mut x = [0u8; 4];
                    mem.read(ea, &mut x)?;
                    u32::from_le_bytes(x) as u64
                } else {
                    let mut x = [0u8; 8];
                    mem.read(ea, &mut x)?;
                    u64::from_le_bytes(x)
                }
            }
            None => self.mm(rm),
        };
        let a = self.mm(reg);
        let r = mmx_op(opcode, a, b);
        self.mmx_touch();
        self.set_mm(reg, r);
        Ok(FpuOutcome::Done)
    }

    /// 0F 71/72/73 /2 /4 /6 ib: shift MMi (modrm rm, register form only) by an immediate.
    pub fn mmx_shift_imm(&mut self, opcode: u8, modrm: u8, imm: u8) -> FpuOutcome {
        let reg = (modrm >> 3) & 7;
        let rm = (modrm & 7) as usize;
        if modrm < 0xC0 {
            return FpuOutcome::Unimplemented;
        }
        let bits = match opcode {
            0x71 => 16,
            0x72 => 32,
            0x73 => 64,
            _ => return FpuOutcome::Unimplemented,
        };
        let kind = match (reg, bits) {
            (2, _) => 0,
            (4, 16) | (4, 32) => 1,
            (6, _) => 2,
            _ => return FpuOutcome::Unimplemented,
        };
        let r = shift(self.mm(rm), imm as u64, bits, kind);
        self.mmx_touch();
        self.set_mm(rm, r);
        FpuOutcome::Done
    }
}

/// The value computed by a two-operand MMX instruction `a = a op b`.
pub fn mmx_op(opcode: u8, a: u64, b: u64) -> u64 {
    match opcode {
        0x6F => b,
        // Unpack low / high.
        0x60 => interleave::<8>(a, b, 0),
        0x61 => interleave::<4>(a, b, 0),
        0x62 => interleave::<2>(a, b, 0),
        0x68 => interleave::<8>(a, b, 1),
        0x69 => interleave::<4>(a, b, 1),
        0x6A => interleave::<2>(a, b, 1),
        // Packs.
        0x63 => pack::<4>(a, b, |x| sat_s(sext(x, 16), 8)),
        0x67 => pack::<4>(a, b, |x| sat_u(sext(x, 16), 8)),
        0x6B => pack::<2>(a, b, |x| sat_s(sext(x, 32), 16)),
        // Compares.
        0x64 => lanewise!(a, b, 8, 8, |x, y| if sext(x, 8) > sext(y, 8) { 0xFF } else { 0 }),
        0x65 => lanewise!(a, b, 4, 16, |x, y| if sext(x, 16) > sext(y, 16) { 0xFFFF } else { 0 }),
        0x66 => lanewise!(a, b, 2, 32, |x, y| if sext(x, 32) > sext(y, 32) { 0xFFFF_FFFF } else { 0 }),
        0x74 => lanewise!(a, b, 8, 8, |x, y| if x == y { 0xFF } else { 0 }),
        0x75 => lanewise!(a, b, 4, 16, |x, y| if x == y { 0xFFFF } else { 0 }),
        0x76 => lanewise!(a, b, 2, 32, |x, y| if x == y { 0xFFFF_FFFF } else { 0 }),
        // Shifts by register/memory count (64-bit count).
        0xD1 => shift(a, b, 16, 0),
        0xD2 => shift(a, b, 32, 0),
        0xD3 => shift(a, b, 64, 0),
        0xE1 => shift(a, b, 16, 1),
        0xE2 => shift(a, b, 32, 1),
        0xF1 => shift(a, b, 16, 2),
        0xF2 => shift(a, b, 32, 2),
        0xF3 => shift(a, b, 64, 2),
        // Multiplies.
        0xD5 => lanewise!(a, b, 4, 16, |x, y| x.wrapping_mul(y)),
        0xE5 => lanewise!(a, b, 4, 16, |x, y| ((sext(x, 16) * sext(y, 16)) >> 16) as u64),
        0xF5 => {
            let (x, y) = (lanes::<4>(a), lanes::<4>(b));
            let p = |i: usize| sext(x[i], 16) * sext(y[i], 16);
            join::<2>([(p(0) + p(1)) as u64, (p(2) + p(3)) as u64])
        }
        // Logic.
        0xDB => a & b,
        0xDF => !a & b,
        0xEB => a | b,
        0xEF => a ^ b,
        // Add/sub: wrapping, signed saturating, unsigned saturating.
        0xFC => lanewise!(a, b, 8, 8, |x, y| x.wrapping_add(y)),
        0xFD => lanewise!(a, b, 4, 16, |x, y| x.wrapping_add(y)),
        0xFE => lanewise!(a, b, 2, 32, |x, y| x.wrapping_add(y)),
        0xF8 => lanewise!(a, b, 8, 8, |x, y| x.wrapping_sub(y)),
        0xF9 => lanewise!(a, b, 4, 16, |x, y| x.wrapping_sub(y)),
        0xFA => lanewise!(a, b, 2, 32, |x, y| x.wrapping_sub(y)),
        0xEC => lanewise!(a, b, 8, 8, |x, y| sat_s(sext(x, 8) + sext(y, 8), 8)),
        0xED => lanewise!(a, b, 4, 16, |x, y| sat_s(sext(x, 16) + sext(y, 16), 16)),
        0xE8 => lanewise!(a, b, 8, 8, |x, y| sat_s(sext(x, 8) - sext(y, 8), 8)),
        0xE9 => lanewise!(a, b, 4, 16, |x, y| sat_s(sext(x, 16) - sext(y, 16), 16)),
        0xDC => lanewise!(a, b, 8, 8, |x, y| sat_u(x as i64 + y as i64, 8)),
        0xDD => lanewise!(a, b, 4, 16, |x, y| sat_u(x as i64 + y as i64, 16)),
        0xD8 => lanewise!(a, b, 8, 8, |x, y| sat_u(x as i64 - y as i64, 8)),
        0xD9 => lanewise!(a, b, 4, 16, |x, y| sat_u(x as i64 - y as i64, 16)),
        _ => a,
    }
}

fn interleave<const N: usize>(a: u64, b: u64, high: usize) -> u64 {
    let (la, lb) = (lanes::<N>(a), lanes::<N>(b));
    let mut r = [0u64; N];
    let base = high * N / 2;
    for i in 0..N / 2 {
        r[2 * i] = la[base + i];
        r[2 * i + 1] = lb[base + i];
    }
    join(r)
}

/// Pack the N lanes of `a` then of `b` into 2N narrower lanes.
fn pack<const N: usize>(a: u64, b: u64, f: impl Fn(u64) -> u64) -> u64 {
    let (la, lb) = (lanes::<N>(a), lanes::<N>(b));
    let bits = 32 / N;
    let mask = (1u64 << bits) - 1;
    let mut r = 0u64;
    for i in 0..N {
        r |= (f(la[i]) & mask) << (i * bits);
        r |= (f(lb[i]) & mask) << ((i + N) * bits);
    }
    r
}
