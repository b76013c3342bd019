//! 80-bit extended-precision soft-float, written for the x87's exact behaviour.
//!
//! Representation: a value is `se` (sign bit 15, biased exponent bits 0-14, bias 16383) and a 64-bit
//! significand `sig` with an explicit integer bit (bit 63), exactly the memory image of an m80.
//!
//! Every arithmetic result goes through [`round_pack`], which models the x87 rounding unit: the
//! exact result (carried in a `u128` with guard and sticky bits) is rounded to the precision
//! selected by PC (24/53/64 bits) in the RC direction, with the 15-bit exponent range kept even at
//! reduced precision (that is what the chip does, unlike a true f32/f64). Tiny results are
//! denormalised *before* rounding at the same significand position; tininess for the UE flag is
//! detected after rounding, as Intel's hardware does (checked against the host chip in the tests).
//! Unmasked overflow/underflow deliver the result with the exponent wrapped by 24576 (register
//! destinations only).

use serde::{Deserialize, Serialize};

pub const IE: u16 = 0x01;
pub const DE: u16 = 0x02;
pub const ZE: u16 = 0x04;
pub const OE: u16 = 0x08;
pub const UE: u16 = 0x10;
pub const PE: u16 = 0x20;
pub const SF: u16 = 0x40;

pub const BIAS: i32 = 16383;
/// Exponent wrap applied to register results on unmasked overflow/underflow.
pub const WRAP: i32 = 24576;

/// An 80-bit extended value, bit-exact image of an x87 register / m80 operand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct F80 {
    pub sig: u64,
    pub se: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Zero,
    /// Denormal or pseudo-denormal (exponent field 0, significand non-zero).
    Denormal,
    Normal,
    Inf,
    QNaN,
    SNaN,
    /// Unnormal, pseudo-infinity, pseudo-NaN: rejected with IE by the 387 and later.
    Unsupported,
}

impl F80 {
    pub const ZERO: F80 = F80 { sig: 0, se: 0 };
    pub const ONE: F80 = F80 { sig: 1 << 63, se: 0x3FFF };
    pub const INF: F80 = F80 { sig: 1 << 63, se: 0x7FFF };
    /// The QNaN "real indefinite" produced by masked invalid operations.
    pub const INDEFINITE: F80 = F80 { sig: 0xC000_0000_0000_0000, se: 0xFFFF };

    pub const fn new(sign: bool, exp: u16, sig: u64) -> F80 {
        F80 { sig, se: ((sign as u16) << 15) | (exp & 0x7FFF) }
    }
    #[inline]
    pub fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }
    #[inline]
    pub fn exp(self) -> i32 {
        (self.se & 0x7FFF) as i32
    }
    pub fn with_sign(self, s: bool) -> F80 {
        F80 { sig: self.sig, se: (self.se & 0x7FFF) | ((s as u16) << 15) }
    }
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> F80 {
        F80 { sig: self.sig, se: self.se ^ 0x8000 }
    }
    pub fn zero(sign: bool) -> F80 {
        F80::new(sign, 0, 0)
    }
    pub fn inf(sign: bool) -> F80 {
        F80::new(sign, 0x7FFF, 1 << 63)
    }
    pub fn class(self) -> Class {
        let e = self.exp();
        let j = self.sig >> 63 != 0;
        if e == 0 {
            if self.sig == 0 {
                Class::Zero
            } else {
                Class::Denormal
            }
        } else if e == 0x7FFF {
            if !j {
                Class::Unsupported
            } else if self.sig << 1 == 0 {
                Class::Inf
            } else if self.sig & (1 << 62) != 0 {
                Class::QNaN
            } else {
                Class::SNaN
            }
        } else if j {
            Class::Normal
        } else {
            Class::Unsupported
        }
    }
    pub fn is_nan(self) -> bool {
        matches!(self.class(), Class::QNaN | Class::SNaN)
    }
    pub fn is_denormal(self) -> bool {
        self.exp() == 0 && self.sig != 0
    }
    pub fn is_zero(self) -> bool {
        self.exp() == 0 && self.sig == 0
    }
    /// A pseudo-denormal re-encoded with exponent 1 (what the chip writes back when it passes an
    /// operand through unchanged); everything else as is.
    pub fn canonical(self) -> F80 {
        if self.exp() == 0 && self.sig >> 63 != 0 {
            F80 { sig: self.sig, se: self.se | 1 }
        } else {
            self
        }
    }
    pub fn quiet(self) -> F80 {
        F80 { sig: self.sig | (1 << 62), se: self.se }
    }
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> F80 {
        F80 {
            sig: u64::from_le_bytes(b[..8].try_into().unwrap()),
            se: u16::from_le_bytes([b[8], b[9]]),
        }
    }
    /// (sign, biased exponent, significand with bit 63 set) of a finite non-zero value; denormals
    /// and pseudo-denormals are normalised (their exponent may become <= 0).
    pub fn unpack(self) -> (bool, i32, u64) {
        let e = self.exp();
        if e == 0 {
            let lz = self.sig.leading_zeros() as i32;
            (self.sign(), 1 - lz, self.sig << lz)
        } else {
            (self.sign(), e, self.sig)
        }
    }
}

/// Exception flags and C1 produced by one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub flags: u16,
    /// "Rounded up" for inexact results.
    pub c1: bool,
}

#[inline]
pub fn precision(cw: u16) -> u32 {
    match (cw >> 8) & 3 {
        0 => 24,
        2 => 53,
        _ => 64,
    }
}

pub fn shr_jam128(x: u128, n: u32) -> u128 {
    if n == 0 {
        x
    } else if n >= 128 {
        (x != 0) as u128
    } else {
        (x >> n) | ((x << (128 - n)) != 0) as u128
    }
}

/// Round `sig` (value = sig / 2^127 * 2^(exp - bias), bit 127 set, or zero) to `prec` bits in the
/// RC direction, for a destination whose all-ones exponent field is `emax`. `wrap` != 0 enables
/// the unmasked-exception exponent wrap (register destination). Returns (exponent field, sig).
#[allow(clippy::too_many_arguments)]
pub fn round_pack(
    sign: bool,
    mut exp: i32,
    sig: u128,
    prec: u32,
    emax: i32,
    cw: u16,
    wrap: i32,
    st: &mut Status,
) -> (i32, u64) {
    if sig == 0 {
        return (0, 0);
    }
    let rc = (cw >> 10) & 3;
    let shift = 128 - prec;
    let mask = (1u128 << shift) - 1;
    let half = 1u128 << (shift - 1);
    let inc = |s: u128| -> bool {
        let rem = s & mask;
        if rem == 0 {
            return false;
        }
        match rc {
            0 => rem > half || (rem == half && (s >> shift) & 1 == 1),
            1 => sign,
            2 => !sign,
            _ => false,
        }
    };
    let um_under = cw & UE == 0;
    let um_over = cw & OE == 0;
    // Tininess is detected after rounding: a value that rounds up to the smallest normal is not tiny.
    let carry_to_normal = exp == 0 && inc(sig) && (sig | mask) == u128::MAX;
    if exp <= 0 && !carry_to_normal {
        if um_under && wrap == 0 {
            // Memory destination with unmasked underflow: nothing is stored, only UE is raised.
            st.flags |= UE;
            return (0, 0);
        }
        if um_under && exp + wrap <= 0 {
            // Beyond even the wrapped range: a signed zero.
            st.flags |= UE | PE;
            st.c1 = false;
            return (0, 0);
        }
        if um_under {
            exp += wrap;
            st.flags |= UE;
        } else {
            let tiny = true;
            let s = shr_jam128(sig, (1 - exp) as u32);
            let i = inc(s);
            let inexact = s & mask != 0;
            let r = (s & !mask) + if i { 1u128 << shift } else { 0 };
            if inexact {
                st.flags |= PE;
                st.c1 = i;
            }
            if tiny && (inexact || um_under) {
                st.flags |= UE;
            }
            let e = (r >> 127) as i32;
            return (e, (r >> 64) as u64);
        }
    }
    let i = inc(sig);
    let inexact = sig & mask != 0;
    let (mut r, ov) = (sig & !mask).overflowing_add(if i { 1u128 << shift } else { 0 });
    if ov {
        r = 1 << 127;
        exp += 1;
    }
    if exp >= emax {
        if um_over && wrap == 0 {
            st.flags |= OE;
            return (emax, 1 << 63);
        }
        if um_over && exp - wrap >= emax {
            // Beyond even the wrapped range: infinity whatever the rounding mode.
            st.flags |= OE | PE;
            st.c1 = true;
            return (emax, 1 << 63);
        }
        if um_over {
            exp -= wrap;
            st.flags |= OE;
        } else {
            st.flags |= OE | PE;
            let to_inf = match rc {
                0 => true,
                1 => sign,
                2 => !sign,
                _ => false,
            };
            st.c1 = to_inf;
            return if to_inf {
                (emax, 1 << 63)
            } else {
                (emax - 1, ((!mask) >> 64) as u64)
            };
        }
    }
    if inexact {
        st.flags |= PE;
        st.c1 = i;
    }
    (exp, (r >> 64) as u64)
}

/// Round an exact value to an f80 register at the precision selected by PC (or `prec`).
pub fn round_f80(sign: bool, exp: i32, sig: u128, prec: u32, cw: u16, st: &mut Status) -> F80 {
    if sig == 0 {
        return F80::zero(sign);
    }
    let lz = sig.leading_zeros();
    let (e, s) = round_pack(sign, exp - lz as i32, sig << lz, prec, 0x7FFF, cw, WRAP, st);
    F80::new(sign, e as u16, s)
}

/// Masked response to an invalid operation: IE, and the indefinite unless unmasked.
pub fn invalid(cw: u16, st: &mut Status) -> Option<F80> {
    st.flags |= IE;
    if cw & IE != 0 {
        Some(F80::INDEFINITE)
    } else {
        None
    }
}

/// QNaN result for an operation with at least one NaN operand (x87 rules: an SNaN signals IE;
/// of two NaNs of the same kind the larger significand wins, a QNaN wins over an SNaN).
pub fn nan_result(a: F80, b: F80, cw: u16, st: &mut Status) -> Option<F80> {
    let ca = a.class();
    let cb = b.class();
    if ca == Class::SNaN || cb == Class::SNaN {
        st.flags |= IE;
        if cw & IE == 0 {
            return None;
        }
    }
    let an = matches!(ca, Class::QNaN | Class::SNaN);
    let bn = matches!(cb, Class::QNaN | Class::SNaN);
    let r = match (an, bn) {
        (true, false) => a,
        (false, true) => b,
        _ => {
            if ca != cb {
                if ca == Class::QNaN {
                    a
                } else {
                    b
                }
            } else {
                // Larger significand wins; on a tie the positive one (host-verified).
                let (ma, mb) = (a.sig << 1, b.sig << 1);
                if mb > ma || (mb == ma && a.sign() && !b.sign()) {
                    b
                } else {
                    a
                }
            }
        }
    };
    Some(r.quiet())
}

pub fn nan1(a: F80, cw: u16, st: &mut Status) -> Option<F80> {
    nan_result(a, a, cw, st)
}

/// Common prologue of two-operand arithmetic: unsupported formats and NaNs.
fn special2(a: F80, b: F80, cw: u16, st: &mut Status) -> Option<Option<F80>> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Some(invalid(cw, st));
    }
    if matches!(ca, Class::QNaN | Class::SNaN) || matches!(cb, Class::QNaN | Class::SNaN) {
        return Some(nan_result(a, b, cw, st));
    }
    None
}

/// Denormal-operand check; `false` when DE is unmasked (operation suppressed).
pub fn denormal_check(a: F80, b: F80, cw: u16, st: &mut Status) -> bool {
    if a.is_denormal() || b.is_denormal() {
        st.flags |= DE;
        return cw & DE != 0;
    }
    true
}

pub fn add(a: F80, b: F80, sub: bool, cw: u16, st: &mut Status) -> Option<F80> {
    if let Some(r) = special2(a, b, cw, st) {
        return r;
    }
    let b = if sub { b.neg() } else { b };
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Inf && cb == Class::Inf && a.sign() != b.sign() {
        return invalid(cw, st);
    }
    if !denormal_check(a, b, cw, st) {
        return None;
    }
    if ca == Class::Inf {
        return Some(a);
    }
    if cb == Class::Inf {
        return Some(b);
    }
    let prec = precision(cw);
    let rc = (cw >> 10) & 3;
    match (ca == Class::Zero, cb == Class::Zero) {
        (true, true) => {
            let s = if a.sign() == b.sign() { a.sign() } else { rc == 1 };
            return Some(F80::zero(s));
        }
        (true, false) => {
            let (s, e, m) = b.unpack();
            return Some(round_f80(s, e, (m as u128) << 64, prec, cw, st));
        }
        (false, true) => {
            let (s, e, m) = a.unpack();
            return Some(round_f80(s, e, (m as u128) << 64, prec, cw, st));
        }
        _ => {}
    }
    let (sa, ea, ma) = a.unpack();
    let (sb, eb, mb) = b.unpack();
    // Place significands at bit 126 (one bit of headroom for the carry).
    let (big_s, big_e, big_m, small_m, d) = if ea > eb || (ea == eb && ma >= mb) {
        (sa, ea, ma, mb, (ea - eb) as u32)
    } else {
        (sb, eb, mb, ma, (eb - ea) as u32)
    };
    let x = (big_m as u128) << 63;
    let y = shr_jam128((small_m as u128) << 63, d);
    if sa == sb {
        Some(round_f80(big_s, big_e + 1, x + y, prec, cw, st))
    } else {
        let diff = x - y;
        if diff == 0 {
            return Some(F80::zero(rc == 1));
        }
        Some(round_f80(big_s, big_e + 1, diff, prec, cw, st))
    }
}

pub fn mul(a: F80, b: F80, cw: u16, st: &mut Status) -> Option<F80> {
    if let Some(r) = special2(a, b, cw, st) {
        return r;
    }
    let (ca, cb) = (a.class(), b.class());
    let sign = a.sign() != b.sign();
    if (ca == Class::Inf && cb == Class::Zero) || (ca == Class::Zero && cb == Class::Inf) {
        return invalid(cw, st);
    }
    if !denormal_check(a, b, cw, st) {
        return None;
    }
    if ca == Class::Inf || cb == Class::Inf {
        return Some(F80::inf(sign));
    }
    if ca == Class::Zero || cb == Class::Zero {
        return Some(F80::zero(sign));
    }
    let (_, ea, ma) = a.unpack();
    let (_, eb, mb) = b.unpack();
    let p = (ma as u128) * (mb as u128);
    Some(round_f80(sign, ea + eb - BIAS + 1, p, precision(cw), cw, st))
}

pub fn div(a: F80, b: F80, cw: u16, st: &mut Status) -> Option<F80> {
    if let Some(r) = special2(a, b, cw, st) {
        return r;
    }
    let (ca, cb) = (a.class(), b.class());
    let sign = a.sign() != b.sign();
    if (ca == Class::Inf && cb == Class::Inf) || (ca == Class::Zero && cb == Class::Zero) {
        return invalid(cw, st);
    }
    if cb == Class::Zero && ca != Class::Inf {
        // Zero-divide has priority over the denormal-operand exception.
        st.flags |= ZE;
        return if cw & ZE != 0 { Some(F80::inf(sign)) } else { None };
    }
    if !denormal_check(a, b, cw, st) {
        return None;
    }
    if ca == Class::Inf {
        return Some(F80::inf(sign));
    }
    if cb == Class::Inf {
        return Some(F80::zero(sign));
    }
    if ca == Class::Zero {
        return Some(F80::zero(sign));
    }
    let (_, ea, ma) = a.unpack();
    let (_, eb, mb) = b.unpack();
    let (q, e) = div_sig(ma, mb);
    Some(round_f80(sign, ea - eb + BIAS + e, q, precision(cw), cw, st))
}

/// ma/mb (both with bit 63 set) as a u128 with bit 127 set and a sticky bit; returns the
/// exponent adjustment (0 or -1).
pub fn div_sig(ma: u64, mb: u64) -> (u128, i32) {
    let (num, e) = if ma >= mb { ((ma as u128) << 63, 0) } else { ((ma as u128) << 64, -1) };
    let d = mb as u128;
    let q1 = num / d;
    let r1 = num % d;
    let n2 = r1 << 64;
    let q2 = n2 / d;
    let r2 = n2 % d;
    ((q1 << 64) | q2 | (r2 != 0) as u128, e)
}

pub fn isqrt(n: u128) -> u128 {
    if n == 0 {
        return 0;
    }
    let mut x = ((n as f64).sqrt() as u128).max(1);
    for _ in 0..3 {
        x = (x + n / x) >> 1;
    }
    while !matches!(x.checked_mul(x), Some(v) if v <= n) {
        x -= 1;
    }
    while (x + 1).checked_mul(x + 1).is_some_and(|v| v <= n) {
        x += 1;
    }
    x
}

pub fn sqrt(a: F80, cw: u16, st: &mut Status) -> Option<F80> {
    match a.class() {
        Class::Unsupported => return invalid(cw, st),
        Class::QNaN | Class::SNaN => return nan1(a, cw, st),
        Class::Zero => return Some(a),
        Class::Inf if !a.sign() => return Some(a),
        _ => {}
    }
    if a.sign() {
        return invalid(cw, st);
    }
    if !denormal_check(a, a, cw, st) {
        return None;
    }
    let (_, e, m) = a.unpack();
    let ue = e - BIAS;
    // value = m * 2^(ue-63). Pick N with an even power of two left over.
    let (n, k) = if ue & 1 != 0 { ((m as u128) << 64, (ue - 127) / 2) } else { ((m as u128) << 63, (ue - 126) / 2) };
    let r = isqrt(n);
    let rem = n - r * r;
    let mut s = r << 64;
    if rem > r {
        s |= 1 << 63 | 1;
    } else if rem != 0 {
        s |= 1;
    }
    Some(round_f80(false, 63 + k + BIAS, s, precision(cw), cw, st))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Less,
    Equal,
    Greater,
    Unordered,
}

/// FCOM (quiet = false) / FUCOM (quiet = true) comparison. The hardware sets the condition
/// codes even when IE/DE is unmasked (it only skips the pop); callers check `st.flags`.
pub fn compare(a: F80, b: F80, quiet: bool, _cw: u16, st: &mut Status) -> Cmp {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        st.flags |= IE;
        return Cmp::Unordered;
    }
    let an = matches!(ca, Class::QNaN | Class::SNaN);
    let bn = matches!(cb, Class::QNaN | Class::SNaN);
    if an || bn {
        if !quiet || ca == Class::SNaN || cb == Class::SNaN {
            st.flags |= IE;
        }
        return Cmp::Unordered;
    }
    if a.is_denormal() || b.is_denormal() {
        st.flags |= DE;
    }
    cmp_values(a, b)
}

/// Ordered comparison of two non-NaN supported values.
pub fn cmp_values(a: F80, b: F80) -> Cmp {
    let key = |x: F80| -> (bool, i32, u64) {
        match x.class() {
            Class::Zero => (false, i32::MIN, 0),
            Class::Inf => (x.sign(), i32::MAX, 0),
            _ => {
                let (s, e, m) = x.unpack();
                (s, e, m)
            }
        }
    };
    let (sa, ea, ma) = key(a);
    let (sb, eb, mb) = key(b);
    let za = a.is_zero();
    let zb = b.is_zero();
    if za && zb {
        return Cmp::Equal;
    }
    // Signed comparison: zeros are unsigned.
    let sa = sa && !za;
    let sb = sb && !zb;
    if sa != sb {
        return if sa { Cmp::Less } else { Cmp::Greater };
    }
    let mag = if za {
        std::cmp::Ordering::Less
    } else if zb {
        std::cmp::Ordering::Greater
    } else {
        (ea, ma).cmp(&(eb, mb))
    };
    let mag = if sa { mag.reverse() } else { mag };
    match mag {
        std::cmp::Ordering::Less => Cmp::Less,
        std::cmp::Ordering::Equal => Cmp::Equal,
        std::cmp::Ordering::Greater => Cmp::Greater,
    }
}

// ---- conversions ----

/// m32/m64 real to f80 (FLD m32/m64): exact; SNaN quieted with IE, denormal source sets DE.
pub fn from_ieee(bits: u64, frac_bits: u32, exp_bits: u32, _cw: u16, st: &mut Status) -> Option<F80> {
    let sign = bits >> (frac_bits + exp_bits) & 1 != 0;
    let emax = (1u64 << exp_bits) - 1;
    let e = (bits >> frac_bits) & emax;
    let f = bits & ((1u64 << frac_bits) - 1);
    let bias = (1i32 << (exp_bits - 1)) - 1;
    if e == emax {
        if f == 0 {
            return Some(F80::inf(sign));
        }
        let v = F80::new(sign, 0x7FFF, (1 << 63) | (f << (63 - frac_bits)));
        // An SNaN stays signalling in the 80-bit image: the consumer raises IE and quiets it
        // (the x87 NaN-selection rules depend on which operand was signalling).

        return Some(v);
    }
    if e == 0 {
        if f == 0 {
            return Some(F80::zero(sign));
        }
        // DE is raised, but the value is converted even when DE is unmasked (FLD loads it; the
        // arithmetic forms check the flag themselves).
        st.flags |= DE;
        let lz = f.leading_zeros() as i32; // f < 2^frac_bits
        let m = f << lz;
        // value = f * 2^(1 - bias - frac_bits); m = f * 2^lz has bit 63 set: exponent of m's J bit:
        let ue = 1 - bias - frac_bits as i32 + (63 - lz);
        return Some(F80::new(sign, (ue + BIAS) as u16, m));
    }
    Some(F80::new(sign, (e as i32 - bias + BIAS) as u16, (1 << 63) | (f << (63 - frac_bits))))
}

/// f80 to m32/m64 (FST): rounds per RC to the format. `None`: unmasked IE/DE; the caller also
/// suppresses the store when OE/UE are unmasked and raised.
pub fn to_ieee(a: F80, frac_bits: u32, exp_bits: u32, cw: u16, st: &mut Status) -> Option<u64> {
    let emax = (1i32 << exp_bits) - 1;
    let bias = (1i32 << (exp_bits - 1)) - 1;
    let sbit = (a.sign() as u64) << (frac_bits + exp_bits);
    let inf = sbit | ((emax as u64) << frac_bits);
    match a.class() {
        Class::Unsupported => {
            st.flags |= IE;
            if cw & IE == 0 {
                return None;
            }
            return Some(inf | (1 << (frac_bits - 1)) | (1 << (frac_bits + exp_bits)));
        }
        Class::SNaN | Class::QNaN => {
            if a.class() == Class::SNaN {
                st.flags |= IE;
                if cw & IE == 0 {
                    return None;
                }
            }
            let frac = ((a.sig << 1) >> (64 - frac_bits)) | (1 << (frac_bits - 1));
            return Some(inf | frac);
        }
        Class::Inf => return Some(inf),
        Class::Zero => return Some(sbit),
        _ => {}
    }
    // FST m32/m64 raises no denormal-operand exception.
    let (s, e, m) = a.unpack();
    let (fe, fm) = round_pack(s, e - BIAS + bias, (m as u128) << 64, frac_bits + 1, emax, cw, 0, st);
    Some(sbit | ((fe as u64) << frac_bits) | ((fm >> (63 - frac_bits)) & ((1u64 << frac_bits) - 1)))
}

pub fn from_int(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    let m = v.unsigned_abs();
    let lz = m.leading_zeros();
    F80::new(v < 0, (BIAS + 63 - lz as i32) as u16, m << lz)
}

/// Round a finite value to an integer magnitude per RC: (magnitude, inexact, rounded up).
/// Magnitudes that do not fit in 64 bits return `None`.
pub fn round_to_int(a: F80, rc: u16) -> Option<(u64, bool, bool)> {
    if a.is_zero() {
        return Some((0, false, false));
    }
    let (s, e, m) = a.unpack();
    let ue = e - BIAS;
    if ue >= 64 {
        return None;
    }
    if ue >= 63 {
        return Some((m, false, false));
    }
    // int part and fraction in a 64.64 fixed point.
    let fx = shr_jam128((m as u128) << 64, (63 - ue) as u32);
    let int = (fx >> 64) as u64;
    let frac = fx as u64;
    if frac == 0 {
        return Some((int, false, false));
    }
    let half = 1u64 << 63;
    let up = match rc {
        0 => frac > half || (frac == half && int & 1 == 1),
        1 => s,
        2 => !s,
        _ => false,
    };
    if up {
        int.checked_add(1).map(|v| (v, true, true))
    } else {
        Some((int, true, false))
    }
}

/// FIST/FISTP: `bits` = 16/32/64. Returns the integer (two's complement, truncated to `bits`).
pub fn to_int(a: F80, bits: u32, cw: u16, st: &mut Status) -> Option<u64> {
    let indef = 1u64 << (bits - 1);
    let bad = |st: &mut Status| {
        st.flags |= IE;
        if cw & IE != 0 {
            Some(indef)
        } else {
            None
        }
    };
    match a.class() {
        Class::Unsupported | Class::QNaN | Class::SNaN | Class::Inf => return bad(st),
        _ => {}
    }
    // FIST raises no denormal-operand exception.
    let rc = (cw >> 10) & 3;
    let Some((mag, inexact, up)) = round_to_int(a, rc) else { return bad(st) };
    let limit = if a.sign() { indef } else { indef - 1 };
    if mag > limit {
        return bad(st);
    }
    if inexact {
        st.flags |= PE;
        st.c1 = up;
    }
    let v = if a.sign() { (mag as i64).wrapping_neg() as u64 } else { mag };
    Some(if bits == 64 { v } else { v & ((1u64 << bits) - 1) })
}

/// FRNDINT.
pub fn rndint(a: F80, cw: u16, st: &mut Status) -> Option<F80> {
    match a.class() {
        Class::Unsupported => return invalid(cw, st),
        Class::QNaN | Class::SNaN => return nan1(a, cw, st),
        Class::Zero | Class::Inf => return Some(a),
        _ => {}
    }
    if !denormal_check(a, a, cw, st) {
        return None;
    }
    let (s, e, _) = a.unpack();
    if e - BIAS >= 63 {
        return Some(a);
    }
    let (mag, inexact, up) = round_to_int(a, (cw >> 10) & 3).unwrap();
    if inexact {
        st.flags |= PE;
        st.c1 = up;
    }
    if mag == 0 {
        return Some(F80::zero(s));
    }
    let r = from_int(mag as i64 & i64::MAX);
    if mag >> 63 != 0 {
        return Some(F80::new(s, (BIAS + 63) as u16, mag));
    }
    Some(r.with_sign(s))
}

/// Packed BCD (FBLD): 18 digits, sign in bit 7 of byte 9.
pub fn from_bcd(b: &[u8]) -> F80 {
    let mut v: u64 = 0;
    for i in (0..9).rev() {
        v = v * 100 + ((b[i] >> 4) as u64) * 10 + (b[i] & 15) as u64;
    }
    let neg = b[9] & 0x80 != 0;
    let r = from_int(v as i64);
    if neg {
        r.with_sign(true)
    } else {
        r
    }
}

/// FBSTP: `None` when IE is unmasked.
pub fn to_bcd(a: F80, cw: u16, st: &mut Status) -> Option<[u8; 10]> {
    let indef = [0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF];
    let bad = |st: &mut Status| {
        st.flags |= IE;
        if cw & IE != 0 {
            Some(indef)
        } else {
            None
        }
    };
    match a.class() {
        Class::Unsupported | Class::QNaN | Class::SNaN | Class::Inf => return bad(st),
        _ => {}
    }
    let Some((mut mag, inexact, up)) = round_to_int(a, (cw >> 10) & 3) else { return bad(st) };
    if mag >= 1_000_000_000_000_000_000 {
        return bad(st);
    }
    if inexact {
        st.flags |= PE;
        st.c1 = up;
    }
    let mut out = [0u8; 10];
    for o in out.iter_mut().take(9) {
        let lo = (mag % 10) as u8;
        mag /= 10;
        let hi = (mag % 10) as u8;
        mag /= 10;
        *o = hi << 4 | lo;
    }
    if a.sign() {
        out[9] = 0x80;
    }
    Some(out)
}
