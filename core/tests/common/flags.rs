//! Flags Intel documents as undefined, per instruction (Intel SDM Vol. 2A/2B, the "Flags Affected"
//! section of each instruction's page; quoted in the comments). Only these are ever masked.

use super::state::*;

/// AND, OR, XOR, TEST: "The OF and CF flags are cleared; the SF, ZF, and PF flags are set according
/// to the result. The state of the AF flag is undefined."
pub const LOGIC: (u32, u32) = (CF | OF | SF | ZF | PF, AF);
/// ADD, ADC, SUB, SBB, CMP, NEG, XADD, CMPXCHG, CMPS, SCAS: all six defined.
pub const ARITH_ALL: (u32, u32) = (ARITH, 0);
/// INC, DEC: "The CF flag is not affected. The OF, SF, ZF, AF, and PF flags are set according to the result."
pub const INCDEC: (u32, u32) = (OF | SF | ZF | AF | PF, 0);
/// MUL, IMUL: "The OF and CF flags are set to 0 if the upper half of the result is 0 [resp. the sign
/// extension]...; otherwise, they are set to 1. The SF, ZF, AF, and PF flags are undefined."
pub const MUL: (u32, u32) = (CF | OF, SF | ZF | AF | PF);
/// DIV, IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
pub const DIV: (u32, u32) = (0, ARITH);
/// DAA, DAS: "The CF and AF flags are set if ... The SF, ZF, and PF flags are set according to the
/// result. The OF flag is undefined."
pub const DAA: (u32, u32) = (CF | AF | SF | ZF | PF, OF);
/// AAA, AAS: "The AF and CF flags are set to 1 if there is a decimal carry [borrow]; otherwise,
/// they are set to 0. The OF, SF, ZF, and PF flags are undefined."
pub const AAA: (u32, u32) = (AF | CF, OF | SF | ZF | PF);
/// AAM, AAD: "The SF, ZF, and PF flags are set according to the resulting binary value in the AL
/// register. The OF, AF, and CF flags are undefined."
pub const AAM: (u32, u32) = (SF | ZF | PF, OF | AF | CF);
/// BT, BTS, BTR, BTC: "The CF flag contains the value of the selected bit [before it is changed].
/// The ZF flag is unaffected. The OF, SF, AF, and PF flags are undefined."
pub const BT: (u32, u32) = (CF, OF | SF | AF | PF);
/// BSF, BSR: "The ZF flag is set to 1 if the source operand is 0; otherwise, the ZF flag is
/// cleared. The CF, OF, SF, AF, and PF flags are undefined."
/// (The destination for a zero source is documented as undefined too; every Intel and AMD part,
/// and software such as Linux, rely on it being left unchanged, so it is compared.)
pub const BSF: (u32, u32) = (ZF, CF | OF | SF | AF | PF);
/// CMPXCHG8B: "The ZF flag is set if the destination operand and EDX:EAX are equal; otherwise it
/// is cleared. The CF, PF, AF, SF, and OF flags are unaffected."
pub const CMPXCHG8B: (u32, u32) = (ZF, 0);

/// SAL/SAR/SHL/SHR (SDM "SAL/SAR/SHL/SHR—Shift"): "The CF flag contains the value of the last bit
/// shifted out of the destination operand; it is undefined for SHL and SHR instructions where the
/// count is greater than or equal to the size (in bits) of the destination operand. The OF flag is
/// affected only for 1-bit shifts; otherwise, it is undefined. The SF, ZF, and PF flags are set
/// according to the result. If the count is 0, the flags are not affected. For a non-zero count,
/// the AF flag is undefined." `op` is the ModRM reg field (4 SHL, 5 SHR, 6 SAL, 7 SAR).
pub fn shift(op: u8, masked_count: u32, bits: u32) -> (u32, u32) {
    let c = masked_count;
    if c == 0 {
        return (0, 0);
    }
    let mut def = SF | ZF | PF | CF | OF;
    let mut undef = AF;
    if c != 1 {
        def &= !OF;
        undef |= OF;
    }
    if op != 7 && c >= bits {
        def &= !CF;
        undef |= CF;
    }
    (def, undef)
}

/// ROL/ROR/RCL/RCR (SDM "RCL/RCR/ROL/ROR—Rotate"): "If the masked count is 0, the flags are not
/// affected. If the masked count is 1, then the OF flag is affected, otherwise (masked count is
/// greater than 1) the OF flag is undefined. The CF flag is affected when the masked count is
/// non-zero. The SF, ZF, AF, and PF flags are always unaffected."
pub fn rotate(masked_count: u32) -> (u32, u32) {
    match masked_count {
        0 => (0, 0),
        1 => (CF | OF, 0),
        _ => (CF, OF),
    }
}

/// SHLD/SHRD (SDM "SHLD—Double Precision Shift Left"): "If the count is 1 or greater, the CF flag
/// is filled with the last bit shifted out of the destination operand and the SF, ZF, and PF flags
/// are set according to the value of the result. For a 1-bit shift, the OF flag is set if a sign
/// change occurred; otherwise, it is cleared. For shifts greater than 1 bit, the OF flag is
/// undefined. If a shift occurs, the AF flag is undefined. If the count operand is 0, the flags are
/// not affected. If the count is greater than the operand size, the flags are undefined."
pub fn shld(masked_count: u32, bits: u32) -> (u32, u32) {
    let c = masked_count;
    if c == 0 {
        (0, 0)
    } else if c > bits {
        (0, ARITH)
    } else if c == 1 {
        (CF | SF | ZF | PF | OF, AF)
    } else {
        (CF | SF | ZF | PF, AF | OF)
    }
}

/// Flags a condition code (the low nibble of Jcc/SETcc/CMOVcc) reads.
pub fn cc_reads(cc: u8) -> u32 {
    match cc >> 1 {
        0 => OF,
        1 => CF,
        2 => ZF,
        3 => CF | ZF,
        4 => SF,
        5 => PF,
        6 => SF | OF,
        _ => ZF | SF | OF,
    }
}
