//! FPREM/FPREM1 (exact, integer arithmetic) and the transcendental instructions.
//!
//! Transcendentals are evaluated in double-double arithmetic (~104 significant bits, built on
//! `f64::mul_add`), then rounded once to the 64-bit significand in the RC direction through
//! [`float::round_f80`]. The result is therefore the correctly rounded value except when the
//! exact result lies within ~2^-100 relative of a rounding boundary; Intel documents its parts as
//! "< 1 ulp" for these instructions, and the tests against the host chip assert <= 1 ulp.
//!
//! FSIN/FCOS/FSINCOS/FPTAN reduce their argument modulo pi/2 with the same 66-bit approximation of
//! pi the hardware uses (exactly, in integer arithmetic), so results for large arguments follow
//! the chip rather than the true function. Extreme exponents (outside the double-double range)
//! use the first-order behaviour of the function with a sticky bit for correct directed rounding.

use super::float::{self, Class, Status, F80, BIAS, DE, IE, ZE};
use super::FpuState;

// ---------------- double-double ----------------

#[derive(Clone, Copy, Debug)]
struct Dd {
    hi: f64,
    lo: f64,
}

fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}
fn quick(a: f64, b: f64) -> Dd {
    let s = a + b;
    Dd { hi: s, lo: b - (s - a) }
}

impl Dd {
    const fn c(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }
    fn add(self, y: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, y.hi);
        let (t, f) = two_sum(self.lo, y.lo);
        let r = quick(s, e + t);
        quick(r.hi, r.lo + f)
    }
    fn neg(self) -> Dd {
        Dd { hi: -self.hi, lo: -self.lo }
    }
    fn sub(self, y: Dd) -> Dd {
        self.add(y.neg())
    }
    fn mul(self, y: Dd) -> Dd {
        let p = self.hi * y.hi;
        let e = self.hi.mul_add(y.hi, -p);
        quick(p, e + (self.hi * y.lo + self.lo * y.hi))
    }
    fn div(self, y: Dd) -> Dd {
        let q1 = self.hi / y.hi;
        let r = self.sub(y.mul(Dd::c(q1)));
        let q2 = r.hi / y.hi;
        let r = r.sub(y.mul(Dd::c(q2)));
        let q3 = r.hi / y.hi;
        quick(q1, q2).add(Dd::c(q3))
    }
    /// Division by a double (small integers in the series): one correction step.
    fn div_f64(self, d: f64) -> Dd {
        let q1 = self.hi / d;
        let p = q1 * d;
        let e = q1.mul_add(d, -p);
        let r = ((self.hi - p) - e) + self.lo;
        quick(q1, r / d)
    }
    fn sqrt(self) -> Dd {
        let s = self.hi.sqrt();
        let e = self.sub(Dd::c(s).mul(Dd::c(s)));
        quick(s, e.hi / (2.0 * s))
    }
    fn scale(self, n: i32) -> Dd {
        let p = pow2(n);
        Dd { hi: self.hi * p, lo: self.lo * p }
    }
}

fn pow2(n: i32) -> f64 {
    if n < -1022 {
        return pow2(n + 600) * pow2(-600);
    }
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// A 128-bit constant (exponent of the leading bit, significand) as a double-double.
fn dd_const(e: i32, m: u128) -> Dd {
    let hi = (m >> 75) as f64 * pow2(e - 52);
    let lo = ((m >> 22) & ((1u128 << 53) - 1)) as f64 * pow2(e - 105);
    quick(hi, lo)
}

const PI: (i32, u128) = (1, 0xc90fdaa22168c234c4c6628b80dc1cd1);
const LN2: (i32, u128) = (-1, 0xb17217f7d1cf79abc9e3b39803f2f6af);
const LOG2E: (i32, u128) = (0, 0xb8aa3b295c17f0bbbe87fed0691d3e88);

/// A finite value with a 128-bit significand: value = sig / 2^127 * 2^(exp - BIAS).
#[derive(Clone, Copy, Debug)]
struct Wide {
    sign: bool,
    exp: i32,
    sig: u128,
}

impl Wide {
    fn from_f80(x: F80) -> Wide {
        let (s, e, m) = x.unpack();
        Wide { sign: s, exp: e, sig: (m as u128) << 64 }
    }
    fn konst(c: (i32, u128)) -> Wide {
        Wide { sign: false, exp: c.0 + BIAS, sig: c.1 }
    }
    fn round(self, cw: u16, st: &mut Status) -> F80 {
        float::round_f80(self.sign, self.exp, self.sig, 64, cw, st)
    }
    /// Round a result the chip always reports as inexact (even when our value is exact, e.g.
    /// log2 of a power of two): PE, and UE for a denormal result.
    fn round_inexact(self, cw: u16, st: &mut Status) -> F80 {
        let r = self.round(cw, st);
        if r.exp() == 0 && r.sig != 0 && cw & float::UE != 0 {
            st.flags |= float::UE;
        }
        st.flags |= float::PE;
        r
    }
    fn mul(self, o: Wide) -> Wide {
        let (a1, a0) = ((self.sig >> 64) as u64 as u128, self.sig as u64 as u128);
        let (b1, b0) = ((o.sig >> 64) as u64 as u128, o.sig as u64 as u128);
        let hh = a1 * b1;
        let hl = a1 * b0;
        let lh = a0 * b1;
        let ll = a0 * b0;
        let mid = (hl & u64::MAX as u128) + (lh & u64::MAX as u128) + (ll >> 64);
        let top = hh + (hl >> 64) + (lh >> 64) + (mid >> 64);
        let sticky = (mid as u64 != 0 || ll as u64 != 0) as u128;
        // top = product / 2^128; product / 2^254 = value scale.
        Wide { sign: self.sign != o.sign, exp: self.exp + o.exp - BIAS + 1, sig: top | sticky }
    }
    /// self - o for 0 < o << self (both positive), truncating o's bits below self's with a
    /// sticky borrow.
    fn sub_smaller(self, o: Wide) -> Wide {
        let lz = self.sig.leading_zeros();
        let (a, ea) = (self.sig << lz, self.exp - lz as i32);
        let lzo = o.sig.leading_zeros();
        let (b, eb) = (o.sig << lzo, o.exp - lzo as i32);
        let d = (ea - eb) as u32;
        let bs = float::shr_jam128(b, d);
        Wide { sign: self.sign, exp: ea, sig: a - bs }
    }
    /// Nudge the magnitude by a tiny amount (for a result known to be just below/above).
    fn nudge(mut self, up: bool) -> Wide {
        let lz = self.sig.leading_zeros();
        self.sig <<= lz;
        self.exp -= lz as i32;
        if up {
            self.sig |= 1;
        } else {
            self.sig -= 1;
            self.sig |= 1;
        }
        self
    }
    /// Unbiased exponent of the leading bit.
    fn uexp(self) -> i32 {
        self.exp - BIAS - self.sig.leading_zeros() as i32
    }
    fn to_dd(self) -> Dd {
        let lz = self.sig.leading_zeros();
        let s = self.sig << lz;
        let e = self.exp - BIAS - lz as i32;
        let hi = (s >> 75) as f64 * pow2(e - 52);
        let lo = ((s >> 22) & ((1u128 << 53) - 1)) as f64 * pow2(e - 105);
        let r = quick(hi, lo);
        if self.sign {
            r.neg()
        } else {
            r
        }
    }
    fn from_dd(d: Dd) -> Wide {
        Wide::from_parts(&[d.hi, d.lo])
    }
    /// The exact sum of f64 parts (largest first), truncated at 2^-120 of the largest with a
    /// sticky bit: keeps the tail of e.g. 1 - 2^-61 + 2^-124 that a double-double cannot hold.
    fn from_parts(parts: &[f64]) -> Wide {
        let lead = parts.iter().copied().find(|p| *p != 0.0).unwrap_or(0.0);
        let sign = lead < 0.0;
        let (_, e0) = decompose(lead.abs());
        let ref_e = e0 + 52 - 120; // scale of bit 0
        let mut x: i128 = 0;
        let mut frac = false;
        for &p in parts {
            if p == 0.0 {
                continue;
            }
            let p = if sign { -p } else { p };
            let (m, e) = decompose(p.abs());
            let sh = e - ref_e;
            let (mag, inexact) = if sh >= 0 {
                ((m as i128) << sh, false)
            } else if sh > -64 {
                ((m >> -sh) as i128, (m << (64 + sh)) != 0)
            } else {
                (0, true)
            };
            if p < 0.0 {
                x -= mag + inexact as i128; // floor
            } else {
                x += mag;
            }
            frac |= inexact;
        }
        if frac {
            x |= 1;
        }
        // value = x * 2^ref_e = x / 2^127 * 2^(ref_e + 127).
        Wide { sign, exp: ref_e + 127 + BIAS, sig: x as u128 }
    }
}

/// Positive finite f64 -> (integer mantissa, exponent) with value = m * 2^e.
fn decompose(x: f64) -> (u64, i32) {
    let b = x.to_bits();
    let e = ((b >> 52) & 0x7FF) as i32;
    let f = b & ((1u64 << 52) - 1);
    if e == 0 {
        (f, -1074)
    } else {
        (f | (1 << 52), e - 1075)
    }
}

// ---------------- series ----------------

/// A value kept as `base + d` (base 0 or +-1), so that cos t = 1 + (cos t - 1) keeps the low
/// bits of its small part.
#[derive(Clone, Copy, Debug)]
struct Tri {
    base: f64,
    d: Dd,
}

impl Tri {
    fn neg(self) -> Tri {
        Tri { base: -self.base, d: self.d.neg() }
    }
    fn dd(self) -> Dd {
        Dd::c(self.base).add(self.d)
    }
    fn wide(self) -> Wide {
        if self.base == 0.0 {
            Wide::from_dd(self.d)
        } else {
            Wide::from_parts(&[self.base, self.d.hi, self.d.lo])
        }
    }
}

/// sin(t), cos(t) for |t| <= pi/4 (roughly).
fn sincos_dd(t: Dd) -> (Tri, Tri) {
    let t2 = t.mul(t);
    let mut s = t;
    let mut term = t;
    let mut c = Dd::c(0.0);
    let mut cterm = Dd::c(1.0);
    for k in 1..30 {
        let n = (2 * k) as f64;
        term = term.mul(t2).div_f64(-n * (n + 1.0));
        cterm = cterm.mul(t2).div_f64(-(n - 1.0) * n);
        s = s.add(term);
        c = c.add(cterm);
        if cterm.hi.abs() < 1e-36 * c.hi.abs() && term.hi.abs() < 1e-36 * s.hi.abs() {
            break;
        }
    }
    (Tri { base: 0.0, d: s }, Tri { base: 1.0, d: c })
}

/// atan(z) for 0 <= z <= 1.
fn atan_dd(z: Dd) -> Dd {
    let mut z = z;
    let mut scale = 1.0;
    for _ in 0..4 {
        // atan(z) = 2 atan(z / (1 + sqrt(1 + z^2)))
        let d = Dd::c(1.0).add(Dd::c(1.0).add(z.mul(z)).sqrt());
        z = z.div(d);
        scale *= 2.0;
    }
    let z2 = z.mul(z);
    let mut sum = z;
    let mut p = z;
    for k in 1..40 {
        p = p.mul(z2).neg();
        let term = p.div_f64((2 * k + 1) as f64);
        sum = sum.add(term);
        if term.hi.abs() < 1e-36 * sum.hi.abs() {
            break;
        }
    }
    sum.mul(Dd::c(scale))
}

/// ln(m) for m in [sqrt(1/2), sqrt(2)) via 2 atanh((m-1)/(m+1)).
fn ln_dd(s: Dd) -> Dd {
    // s = (m-1)/(m+1)
    let s2 = s.mul(s);
    let mut sum = s;
    let mut p = s;
    for k in 1..60 {
        p = p.mul(s2);
        let term = p.div_f64((2 * k + 1) as f64);
        sum = sum.add(term);
        if term.hi.abs() < 1e-36 * sum.hi.abs() {
            break;
        }
    }
    sum.mul(Dd::c(2.0))
}

/// e^t - 1 for |t| < 1.
fn expm1_dd(t: Dd) -> Dd {
    let mut sum = t;
    let mut term = t;
    for k in 2..50 {
        term = term.mul(t).div_f64(k as f64);
        sum = sum.add(term);
        if term.hi.abs() < 1e-36 * sum.hi.abs() {
            break;
        }
    }
    sum
}

/// log2 of a positive finite value as a Wide (exactly 0 for 1.0).
fn log2_wide(x: F80) -> Option<Wide> {
    let (_, e, m) = x.unpack();
    let mut ue = e - BIAS;
    // m/2^63 in [1,2); move to [sqrt(1/2), sqrt(2)).
    let mut md = Dd { hi: (m >> 11) as f64 * pow2(-52), lo: (m & 0x7FF) as f64 * pow2(-63) };
    md = quick(md.hi, md.lo);
    if m > 0xB504_F333_F9DE_6484 {
        md = md.scale(-1);
        ue += 1;
    }
    let s = md.sub(Dd::c(1.0)).div(md.add(Dd::c(1.0)));
    let l = if s.hi == 0.0 { Dd::c(0.0) } else { ln_dd(s).mul(dd_const(LOG2E.0, LOG2E.1)) };
    let r = Dd::c(ue as f64).add(l);
    if r.hi == 0.0 {
        None
    } else {
        Some(Wide::from_dd(r))
    }
}

/// log2 of a positive double-double.
fn log2_dd(v: Dd) -> Dd {
    let (_, e) = decompose(v.hi);
    let mut k = e + 52;
    let mut m = v.scale(-k);
    if m.hi > std::f64::consts::SQRT_2 {
        m = m.scale(-1);
        k += 1;
    }
    let s = m.sub(Dd::c(1.0)).div(m.add(Dd::c(1.0)));
    let l = if s.hi == 0.0 { Dd::c(0.0) } else { ln_dd(s).mul(dd_const(LOG2E.0, LOG2E.1)) };
    Dd::c(k as f64).add(l)
}

// ---------------- instructions ----------------

pub(super) fn execute(s: &mut FpuState, op: u8) {
    match op {
        0x0 => f2xm1(s),
        0x1 | 0x9 => fyl2x(s, op == 0x9),
        0x2 | 0xB | 0xE | 0xF => trig(s, op),
        0x3 => fpatan(s),
        0x5 | 0x8 => fprem(s, op == 0x5),
        _ => {}
    }
}

fn set_result(s: &mut FpuState, i: u8, st: Status, r: Option<F80>) {
    s.apply(st);
    if let Some(v) = r {
        s.set_st(i, v);
    }
}

fn f2xm1(s: &mut FpuState) {
    if s.empty(0) {
        if s.underflow() {
            s.set_st(0, F80::INDEFINITE);
        }
        return;
    }
    let x = s.st(0);
    let cw = s.cw;
    let mut st = Status::default();
    let r = match x.class() {
        Class::Unsupported => float::invalid(cw, &mut st),
        Class::QNaN | Class::SNaN => float::nan1(x, cw, &mut st),
        Class::Zero => Some(x),
        Class::Inf => Some(if x.sign() { F80::ONE.neg() } else { x }),
        _ => {
            if !float::denormal_check(x, x, cw, &mut st) {
                None
            } else if x.exp() >= BIAS {
                // |x| >= 1: outside the documented domain. The chip returns +1 / -0.5 for +-1 and
                // leaves larger operands unchanged, signalling PE either way (host-verified).
                st.flags |= float::PE;
                st.c1 = false;
                if x.exp() == BIAS && x.sig == 1 << 63 {
                    Some(if x.sign() { F80::new(true, (BIAS - 1) as u16, 1 << 63) } else { F80::ONE })
                } else {
                    Some(x)
                }
            } else {
                let w = Wide::from_f80(x);
                if w.uexp() < -900 {
                    // 2^x - 1 = x ln2 (1 + x ln2 / 2 + ...): just above |x ln2| for x > 0.
                    Some(w.mul(Wide::konst(LN2)).nudge(!x.sign()).round(cw, &mut st))
                } else {
                    let t = w.to_dd().mul(dd_const(LN2.0, LN2.1));
                    Some(Wide::from_dd(expm1_dd(t)).round(cw, &mut st))
                }
            }
        }
    };
    set_result(s, 0, st, r);
}

/// FYL2X (ST1 = ST1 * log2(ST0)) and FYL2XP1 (ST1 = ST1 * log2(ST0 + 1)), then pop.
fn fyl2x(s: &mut FpuState, p1: bool) {
    if s.empty(0) || s.empty(1) {
        if s.underflow() {
            s.set_st(1, F80::INDEFINITE);
            s.pop();
        }
        return;
    }
    let (x, y) = (s.st(0), s.st(1));
    let cw = s.cw;
    let mut st = Status::default();
    let r = yl2x(x, y, p1, cw, &mut st);
    s.apply(st);
    if let Some(v) = r {
        s.set_st(1, v);
        s.pop();
    }
}

fn yl2x(x: F80, y: F80, p1: bool, cw: u16, st: &mut Status) -> Option<F80> {
    let (cx, cy) = (x.class(), y.class());
    if cx == Class::Unsupported || cy == Class::Unsupported {
        return float::invalid(cw, st);
    }
    if x.is_nan() || y.is_nan() {
        return float::nan_result(x, y, cw, st);
    }
    let ysign = y.sign();
    if p1 {
        // Domain: x > -1 (Intel documents |x| < 1 - sqrt(2)/2; larger values are computed anyway).
        if cx == Class::Inf {
            if x.sign() || cy == Class::Zero {
                return float::invalid(cw, st);
            }
            if !float::denormal_check(y, y, cw, st) {
                return None;
            }
            return Some(F80::inf(ysign));
        }
        if x.sign() && cx != Class::Zero && float::cmp_values(x, F80::ONE.neg()) != float::Cmp::Greater {
            // x <= -1: the chip returns x itself, inexact (host-verified).
            if !float::denormal_check(y, y, cw, st) {
                return None;
            }
            if cy == Class::Zero {
                return Some(F80::zero(ysign != x.sign()));
            }
            if cy == Class::Inf {
                return Some(F80::inf(ysign != x.sign()));
            }
            st.flags |= float::PE;
            st.c1 = false;
            return Some(x);
        }
        if cx == Class::Zero {
            if cy == Class::Inf {
                return float::invalid(cw, st);
            }
            if !float::denormal_check(y, y, cw, st) {
                return None;
            }
            return Some(F80::zero(ysign != x.sign()));
        }
    } else {
        if x.sign() && cx != Class::Zero {
            return float::invalid(cw, st);
        }
        if cx == Class::Zero {
            if cy == Class::Zero {
                return float::invalid(cw, st);
            }
            // Zero-divide has priority over a denormal y.
            if cy != Class::Inf {
                st.flags |= ZE;
                if cw & ZE == 0 {
                    return None;
                }
            }
            return Some(F80::inf(!ysign));
        }
        if cx == Class::Inf {
            if cy == Class::Zero {
                return float::invalid(cw, st);
            }
            if !float::denormal_check(y, y, cw, st) {
                return None;
            }
            return Some(F80::inf(ysign));
        }
    }
    if !float::denormal_check(x, y, cw, st) {
        return None;
    }
    // l = log2(x) or log2(1 + x).
    let l: Option<Wide> = if p1 {
        let w = Wide::from_f80(x);
        if w.uexp() < -900 {
            // log2(1+x) = x log2(e) (1 - x/2 + ...)
            Some(w.mul(Wide::konst(LOG2E)).nudge(x.sign()))
        } else if w.uexp() < -2 {
            let xd = w.to_dd();
            let sv = xd.div(Dd::c(2.0).add(xd));
            Some(Wide::from_dd(ln_dd(sv).mul(dd_const(LOG2E.0, LOG2E.1))))
        } else if w.uexp() > 200 {
            // log2(1 + x) = log2(x) + (far below the precision)
            log2_wide(x)
        } else {
            // Outside the documented |x| < 1 - sqrt(2)/2 the chip still computes log2(1 + x).
            Some(Wide::from_dd(log2_dd(Dd::c(1.0).add(w.to_dd()))))
        }
    } else {
        log2_wide(x)
    };
    match (l, cy) {
        (None, Class::Inf) => float::invalid(cw, st),
        (None, _) => Some(F80::zero(ysign)),
        (Some(l), Class::Inf) => Some(F80::inf(ysign != l.sign)),
        (Some(l), Class::Zero) => Some(F80::zero(ysign != l.sign)),
        (Some(l), _) => Some(Wide::from_f80(y).mul(l).round_inexact(cw, st)),
    }
}

fn fpatan(s: &mut FpuState) {
    if s.empty(0) || s.empty(1) {
        if s.underflow() {
            s.set_st(1, F80::INDEFINITE);
            s.pop();
        }
        return;
    }
    let (x, y) = (s.st(0), s.st(1));
    let cw = s.cw;
    let mut st = Status::default();
    let r = atan2(y, x, cw, &mut st);
    s.apply(st);
    if let Some(v) = r {
        s.set_st(1, v);
        s.pop();
    }
}

fn atan2(y: F80, x: F80, cw: u16, st: &mut Status) -> Option<F80> {
    let (cx, cy) = (x.class(), y.class());
    if cx == Class::Unsupported || cy == Class::Unsupported {
        return float::invalid(cw, st);
    }
    if x.is_nan() || y.is_nan() {
        return float::nan_result(y, x, cw, st);
    }
    if !float::denormal_check(x, y, cw, st) {
        return None;
    }
    let ys = y.sign();
    let pi = dd_const(PI.0, PI.1);
    let res = |d: Dd, st: &mut Status| -> F80 {
        let w = Wide::from_dd(d);
        let w = Wide { sign: ys, ..w };
        w.round(cw, st)
    };
    match (cy, cx) {
        (Class::Zero, _) => {
            return Some(if x.sign() { res(pi, st) } else { F80::zero(ys) });
        }
        (Class::Inf, Class::Inf) => {
            let q = pi.scale(-2);
            return Some(res(if x.sign() { q.mul(Dd::c(3.0)) } else { q }, st));
        }
        (Class::Inf, _) | (_, Class::Zero) => return Some(res(pi.scale(-1), st)),
        (_, Class::Inf) => return Some(if x.sign() { res(pi, st) } else { F80::zero(ys) }),
        _ => {}
    }
    let (_, ey, my) = y.unpack();
    let (_, ex, mx) = x.unpack();
    let (q, adj) = float::div_sig(my, mx);
    let z = Wide { sign: false, exp: ey - ex + BIAS + adj, sig: q };
    let ze = z.uexp();
    if ze < -45 {
        if !x.sign() {
            if ze < -68 {
                // Like FSIN, the chip returns the quotient itself here (host-verified).
                let r = Wide { sign: ys, ..z }.round(cw, st);
                if r.exp() == 0 && cw & float::UE != 0 {
                    st.flags |= float::UE;
                }
                st.flags |= float::PE;
                st.c1 = false;
                return Some(r);
            }
            // atan(z) = z - z^3/3 + ...: the cubic term still reaches the low bits of the
            // 128-bit quotient here, so subtract it exactly (the next term is far below).
            let z3 = z.mul(z).mul(z);
            let c = Wide { sign: false, exp: z3.exp, sig: z3.sig / 3 | (z3.sig % 3 != 0) as u128 };
            return Some(Wide { sign: ys, ..z.sub_smaller(c).nudge(false) }.round(cw, st));
        }
        // pi - z
        return Some(res(pi.sub(z.to_dd()), st));
    }
    let a = if ze > 900 {
        pi.scale(-1).sub(Dd::c(0.0))
    } else {
        let zd = z.to_dd();
        if zd.hi > 1.0 {
            pi.scale(-1).sub(atan_dd(Dd::c(1.0).div(zd)))
        } else {
            atan_dd(zd)
        }
    };
    let a = if x.sign() { pi.sub(a) } else { a };
    Some(res(a, st))
}

/// 66-bit pi as the hardware uses for argument reduction: pi = PI66 * 2^-66.
const PI66: u128 = 0xC90FDAA22168C234C;

/// FPTAN (0x2), FSINCOS (0xB), FSIN (0xE), FCOS (0xF).
fn trig(s: &mut FpuState, op: u8) {
    let pushes = op == 0x2 || op == 0xB;
    s.sw &= !super::SW_C2;
    if s.empty(0) {
        if s.underflow() {
            s.set_st(0, F80::INDEFINITE);
            if pushes {
                s.force_push(F80::INDEFINITE);
            }
        }
        return;
    }
    if pushes && s.push_overflows() {
        s.raise(IE | float::SF, Some(true));
        if s.cw & IE != 0 {
            s.set_st(0, F80::INDEFINITE);
            s.push(F80::INDEFINITE);
        }
        return;
    }
    let x = s.st(0);
    let cw = s.cw;
    let mut st = Status::default();
    s.sw &= !super::SW_C2;
    match x.class() {
        Class::Unsupported | Class::Inf => {
            let r = float::invalid(cw, &mut st);
            s.apply(st);
            if let Some(v) = r {
                s.set_st(0, v);
                if pushes {
                    s.push(v);
                }
            }
            return;
        }
        Class::QNaN | Class::SNaN => {
            let r = float::nan1(x, cw, &mut st);
            s.apply(st);
            if let Some(v) = r {
                s.set_st(0, v);
                if pushes {
                    s.push(v);
                }
            }
            return;
        }
        Class::Zero => {
            s.apply(st);
            match op {
                0x2 => {
                    s.push(F80::ONE);
                }
                0xB => {
                    s.set_st(0, x);
                    s.push(F80::ONE);
                }
                0xF => s.set_st(0, F80::ONE),
                _ => {}
            }
            return;
        }
        _ => {}
    }
    if x.is_denormal() {
        st.flags |= DE;
        if cw & DE == 0 {
            s.apply(st);
            return;
        }
    }
    let (sign, e, m) = x.unpack();
    let ue = e - BIAS;
    if ue >= 63 {
        s.sw |= super::SW_C2;
        s.apply(st);
        return;
    }
    // Results as (sin, cos) in double-double, or a tiny-argument shortcut.
    let (sv, cv): (Wide, Wide);
    if ue < -45 {
        // Below 2^-45 the x^3 term no longer shows in a double-double next to x: use the sign of
        // the correction as a sticky bit instead.
        // sin x = x - x^3/6: just below |x|; cos x = 1 - x^2/2: just below 1; tan: just above |x|.
        let w = Wide::from_f80(x);
        if ue < -68 {
            // The chip returns sin = tan = x and cos = 1 here, inexact, "not rounded up" (host-verified).
            st.flags |= float::PE;
            st.c1 = false;
            let r1 = match op {
                0xB => Some(F80::ONE),
                0x2 => Some(F80::ONE),
                _ => None,
            };
            let r0 = if op == 0xF {
                F80::ONE
            } else {
                // x itself, but it is an inexact result: a denormal one underflows.
                let r = w.round(cw, &mut st);
                if r.exp() == 0 {
                    st.flags |= float::UE;
                }
                r
            };
            st.flags |= float::PE;
            st.c1 = false;
            s.apply(st);
            write_trig(s, op, r0, r1);
            return;
        }
        sv = w;
        cv = Wide { sign: false, exp: BIAS, sig: 1 << 127 };
        let (res0, res1): (F80, Option<F80>) = match op {
            0xE => (sv.nudge(false).round(cw, &mut st), None),
            0xF => (cv.nudge(false).round(cw, &mut st), None),
            0xB => {
                let sn = sv.nudge(false).round(cw, &mut st);
                let cs = cv.nudge(false).round(cw, &mut st);
                (sn, Some(cs))
            }
            _ => (sv.nudge(true).round(cw, &mut st), Some(F80::ONE)),
        };
        s.apply(st);
        write_trig(s, op, res0, res1);
        return;
    }
    // Exact reduction: x = m * 2^(ue-63); pi/2 = PI66 * 2^-67. r = x mod pi/2 at scale 2^-67.
    let (t, quadrant) = if ue < -2 {
        (Wide::from_f80(x.with_sign(false)).to_dd(), 0u32)
    } else {
        let shift = (ue + 4) as u32; // x * 2^67 = m << (ue + 4)
        let mut r: u128 = 0;
        let mut q: u32 = 0;
        for bit in (0..64 + shift).rev() {
            let b = if bit >= shift { (m >> (bit - shift)) & 1 } else { 0 };
            r = (r << 1) | b as u128;
            q <<= 1;
            if r >= PI66 {
                r -= PI66;
                q |= 1;
            }
        }
        // Fold to [0, pi/4].
        let (r, q) = if r > PI66 / 2 { (PI66 - r, ((q.wrapping_add(1)) & 3) | 4) } else { (r, q & 3) };
        let w = Wide { sign: false, exp: BIAS + 60, sig: r };
        let d = if r == 0 { Dd::c(0.0) } else { w.to_dd() };
        (d, q)
    };
    let folded = quadrant & 4 != 0;
    let qd = quadrant & 3;
    let (mut sn, cs) = if t.hi == 0.0 {
        (Tri { base: 0.0, d: Dd::c(0.0) }, Tri { base: 1.0, d: Dd::c(0.0) })
    } else {
        sincos_dd(t)
    };
    if folded {
        // t = pi/2*k - r: sin(k pi/2 - r) handled by negating r's sine after rotation.
        sn = sn.neg();
    }
    // rotate by quadrant qd
    let (sn, cs) = match qd {
        0 => (sn, cs),
        1 => (cs, sn.neg()),
        2 => (sn.neg(), cs.neg()),
        _ => (cs.neg(), sn),
    };
    let (sn, cs) = if sign { (sn.neg(), cs) } else { (sn, cs) };
    let w = |d: Tri, st: &mut Status| -> F80 {
        if d.base == 0.0 && d.d.hi == 0.0 {
            F80::ZERO
        } else {
            d.wide().round(cw, st)
        }
    };
    let (res0, res1) = match op {
        0xE => (w(sn, &mut st), None),
        0xF => (w(cs, &mut st), None),
        0xB => {
            let a = w(sn, &mut st);
            let b = w(cs, &mut st);
            (a, Some(b))
        }
        _ => (w(Tri { base: 0.0, d: sn.dd().div(cs.dd()) }, &mut st), Some(F80::ONE)),
    };
    s.apply(st);
    write_trig(s, op, res0, res1);
}

fn write_trig(s: &mut FpuState, op: u8, res0: F80, res1: Option<F80>) {
    match op {
        0xB => {
            // FSINCOS: ST0 = sin, then push cos.
            s.set_st(0, res0);
            s.push(res1.unwrap());
        }
        0x2 => {
            s.set_st(0, res0);
            s.push(F80::ONE);
        }
        _ => s.set_st(0, res0),
    }
}

/// FPREM (truncating) / FPREM1 (IEEE, round to nearest).
fn fprem(s: &mut FpuState, ieee: bool) {
    if s.empty(0) || s.empty(1) {
        s.sw &= !super::SW_C2;
        if s.underflow() {
            s.set_st(0, F80::INDEFINITE);
        }
        return;
    }
    let (a, b) = (s.st(0), s.st(1));
    let cw = s.cw;
    let mut st = Status::default();
    let (ca, cb) = (a.class(), b.class());
    let r: Option<F80>;
    let mut q: u64 = 0;
    let mut partial = false;
    // NaN / invalid results leave C0 and C3 alone and clear C1 and C2 (host-verified).
    let special = |s: &mut FpuState, r: Option<F80>, st: Status| {
        s.raise(st.flags, Some(false));
        s.sw &= !super::SW_C2;
        if let Some(v) = r {
            s.set_st(0, v);
        }
    };
    if ca == Class::Unsupported || cb == Class::Unsupported {
        let r = float::invalid(cw, &mut st);
        return special(s, r, st);
    } else if a.is_nan() || b.is_nan() {
        let r = float::nan_result(a, b, cw, &mut st);
        return special(s, r, st);
    } else if ca == Class::Inf || cb == Class::Zero {
        let r = float::invalid(cw, &mut st);
        return special(s, r, st);
    } else if !float::denormal_check(a, b, cw, &mut st) {
        return special(s, None, st);
    } else if ca == Class::Zero {
        r = Some(a);
    } else if cb == Class::Inf {
        r = Some(a.canonical());
    } else {
        let (sa, ea, ma) = a.unpack();
        let (_, eb, mb) = b.unpack();
        let d = ea - eb;
        if d < 0 {
            if ieee && d == -1 && ma > mb {
                q = 1;
                let v = ((2 * mb as u128) - ma as u128) << 62;
                r = Some(float::round_f80(!sa, ea + 2, v, 64, cw, &mut st));
            } else {
                r = Some(float::round_f80(sa, ea, (ma as u128) << 64, 64, cw, &mut st));
            }
        } else {
            // Partial remainder when the exponents are far apart (the 387+ reduce by 2^(d - N)).
            let (steps, rexp) = if d >= 64 {
                partial = true;
                let n = 32 + (d - 32) % 32;
                (n, eb + d - n)
            } else {
                (d, eb)
            };
            let mbw = mb as u128;
            let mut rr = ma as u128;
            if rr >= mbw {
                rr -= mbw;
                q = 1;
            }
            for _ in 0..steps {
                rr <<= 1;
                q <<= 1;
                if rr >= mbw {
                    rr -= mbw;
                    q |= 1;
                }
            }
            let mut sign = sa;
            if ieee && !partial && (2 * rr > mbw || (2 * rr == mbw && q & 1 == 1)) {
                rr = mbw - rr;
                q = q.wrapping_add(1);
                sign = !sign;
            }
            r = Some(if rr == 0 {
                F80::zero(sa)
            } else {
                float::round_f80(sign, rexp, rr << 64, 64, cw, &mut st)
            });
        }
    }
    s.raise(st.flags, None);
    if let Some(v) = r {
        s.set_st(0, v);
        s.sw &= !(super::SW_C0 | super::SW_C1 | super::SW_C2 | super::SW_C3);
        if partial {
            s.sw |= super::SW_C2;
        } else {
            if q & 4 != 0 {
                s.sw |= super::SW_C0;
            }
            if q & 2 != 0 {
                s.sw |= super::SW_C3;
            }
            if q & 1 != 0 {
                s.sw |= super::SW_C1;
            }
        }
    }
}
