//! Small deterministic PRNG (xorshift64*): every case is reproducible from its seed.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03 | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    pub fn u16(&mut self) -> u16 {
        self.u32() as u16
    }
    pub fn u8(&mut self) -> u8 {
        self.u32() as u8
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.u32() as u64 * n as u64) >> 32) as u32
    }
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo)
    }
    pub fn chance(&mut self, num: u32, den: u32) -> bool {
        self.below(den) < num
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u32) as usize]
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    /// An "interesting" operand value of `bits` width: edges (0, 1, max, sign bit) often, random otherwise.
    pub fn operand(&mut self, bits: u32) -> u32 {
        let mask = if bits == 32 { u32::MAX } else { (1 << bits) - 1 };
        let sign = 1u32 << (bits - 1);
        let v = match self.below(10) {
            0 => self.pick(&[0, 1, mask, sign, sign - 1, sign + 1, mask - 1, 0x0f, 0x10, 0x80, 0x7f]),
            1 => self.below(16),
            2 => mask.wrapping_sub(self.below(16)),
            _ => self.u32(),
        };
        let full = self.u32();
        (full & !mask) | (v & mask)
    }
}
