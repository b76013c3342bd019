//! Compressed clusters: raw deflate (no zlib header).
//!
//! QEMU inflates qcow2 clusters with a 4 KiB window (`inflateInit2(.., -12)`), so a stream that
//! refers back further than 4096 bytes (as miniz/zlib with their default 32 KiB window produce)
//! is unreadable for QEMU. Hence our own small encoder: LZ77 with hash chains limited to a 4 KiB
//! window, one fixed-Huffman block. Decoding uses miniz_oxide (any window).

/// Inflates a raw deflate stream into exactly `out.len()` bytes. Trailing bytes after the end of
/// the stream (sector padding) are ignored.
pub fn inflate_exact(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    let v = miniz_oxide::inflate::decompress_to_vec_with_limit(input, out.len())
        .map_err(|e| format!("corrupt compressed cluster: {e:?}"))?;
    if v.len() != out.len() {
        return Err(format!("compressed cluster inflates to {} bytes, expected {}", v.len(), out.len()));
    }
    out.copy_from_slice(&v);
    Ok(())
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn bits(&mut self, v: u32, n: u32) {
        self.acc |= (v as u64) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Huffman codes go most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let rev = code.reverse_bits() >> (32 - len);
        self.bits(rev, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

const LEN_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 24] =
    [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073];
const DIST_EXTRA: [u8; 24] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10];

const WINDOW: usize = 4096;
const MAX_CHAIN: usize = 48;
const HASH_BITS: u32 = 14;

fn lit(w: &mut BitWriter, sym: u32) {
    match sym {
        0..=143 => w.code(0x30 + sym, 8),
        144..=255 => w.code(0x190 + sym - 144, 9),
        256..=279 => w.code(sym - 256, 7),
        _ => w.code(0xc0 + sym - 280, 8),
    }
}

fn emit_match(w: &mut BitWriter, len: usize, dist: usize) {
    let li = LEN_BASE.iter().rposition(|&b| b as usize <= len).unwrap();
    lit(w, 257 + li as u32);
    w.bits((len - LEN_BASE[li] as usize) as u32, LEN_EXTRA[li] as u32);
    let di = DIST_BASE.iter().rposition(|&b| b as usize <= dist).unwrap();
    w.code(di as u32, 5);
    w.bits((dist - DIST_BASE[di] as usize) as u32, DIST_EXTRA[di] as u32);
}

fn hash(d: &[u8], i: usize) -> usize {
    let v = (d[i] as u32) | (d[i + 1] as u32) << 8 | (d[i + 2] as u32) << 16;
    (v.wrapping_mul(0x9e37_79b1) >> (32 - HASH_BITS)) as usize
}

/// Raw deflate with back references of at most 4 KiB.
pub fn deflate_4k(data: &[u8]) -> Vec<u8> {
    let mut w = BitWriter { out: Vec::with_capacity(data.len() / 2), acc: 0, n: 0 };
    w.bits(1, 1); // BFINAL
    w.bits(1, 2); // fixed Huffman
    let mut head = vec![usize::MAX; 1 << HASH_BITS];
    let mut prev = vec![usize::MAX; data.len()];
    let mut i = 0;
    let insert = |head: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        if p + 3 <= data.len() {
            let h = hash(data, p);
            prev[p] = head[h];
            head[h] = p;
        }
    };
    while i < data.len() {
        let mut best = (0usize, 0usize);
        if i + 3 <= data.len() {
            let mut cand = head[hash(data, i)];
            let mut chain = 0;
            let max = (data.len() - i).min(258);
            while cand != usize::MAX && i - cand <= WINDOW && chain < MAX_CHAIN {
                let l = data[cand..].iter().zip(&data[i..i + max]).take_while(|(a, b)| a == b).count();
                if l > best.0 {
                    best = (l, i - cand);
                    if l == max {
                        break;
                    }
                }
                cand = prev[cand];
                chain += 1;
            }
        }
        if best.0 >= 3 {
            emit_match(&mut w, best.0, best.1);
            for p in i..i + best.0 {
                insert(&mut head, &mut prev, p);
            }
            i += best.0;
        } else {
            lit(&mut w, data[i] as u32);
            insert(&mut head, &mut prev, i);
            i += 1;
        }
    }
    lit(&mut w, 256);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_round_trip() {
        let mut seed = 1u64;
        let mut data = Vec::new();
        for i in 0..70000usize {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            data.push(if i % 3000 < 1500 { (i % 251) as u8 } else { (seed >> 60) as u8 });
        }
        let c = deflate_4k(&data);
        assert!(c.len() < data.len());
        let mut out = vec![0; data.len()];
        inflate_exact(&c, &mut out).unwrap();
        assert_eq!(out, data);
        let z = vec![0u8; 65536];
        let c = deflate_4k(&z);
        assert!(c.len() < 1024);
        let mut out = vec![1; 65536];
        inflate_exact(&c, &mut out).unwrap();
        assert_eq!(out, z);
    }
}
