//! The original qcow format (version 1), read-only: what `qemu-img create -f qcow` makes.
//! Two-level table like qcow2 but without refcounts; compressed clusters are raw deflate.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::be::*;
use super::file::ImageFile;
use super::qcow2::compress::inflate_exact;
use super::{check_range, BlockDevice, BlockError};

pub struct Qcow1 {
    f: ImageFile,
    size: u64,
    cluster_bits: u32,
    l2_bits: u32,
    l1: Vec<u64>,
    backing: Option<Arc<dyn BlockDevice>>,
    /// Last L2 table read (offset, entries) and last decompressed cluster (entry, data).
    cache: Mutex<(u64, Vec<u64>, u64, Vec<u8>)>,
}

impl Qcow1 {
    pub fn open(path: &Path) -> Result<Self, BlockError> {
        let f = ImageFile::open(path, true)?;
        let mut h = [0u8; 48];
        f.read_at(&mut h, 0)?;
        if &h[0..4] != b"QFI\xfb" || be32(&h, 4) != 1 {
            return Err(f.format_err("not a qcow (version 1) image"));
        }
        let size = be64(&h, 24);
        let cluster_bits = h[32] as u32;
        let l2_bits = h[33] as u32;
        if !(9..=16).contains(&cluster_bits) || !(6..=16).contains(&l2_bits) {
            return Err(f.format_err(format!("unsupported cluster/L2 bits {cluster_bits}/{l2_bits}")));
        }
        if be32(&h, 36) != 0 {
            return Err(f.format_err("encrypted qcow images are not supported"));
        }
        let shift = cluster_bits + l2_bits;
        let l1_size = size.div_ceil(1 << shift);
        if l1_size > (32 << 20) / 8 {
            return Err(f.format_err("L1 table too large"));
        }
        let mut raw = vec![0u8; l1_size as usize * 8];
        f.read_at(&mut raw, be64(&h, 40))?;
        let l1 = raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect();
        let backing = match be64(&h, 8) {
            0 => None,
            off => {
                let len = be32(&h, 16) as usize;
                if len > 1023 {
                    return Err(f.format_err("backing file name too long"));
                }
                let mut name = vec![0u8; len];
                f.read_at(&mut name, off)?;
                let name = String::from_utf8_lossy(&name).into_owned();
                let p = super::qcow2::resolve_backing(path, &name)
                    .ok_or_else(|| f.format_err(format!("unsupported backing file name '{name}'")))?;
                Some(super::open_image(&p, None, true)?)
            }
        };
        Ok(Qcow1 { f, size, cluster_bits, l2_bits, l1, backing, cache: Mutex::new((0, Vec::new(), 0, Vec::new())) })
    }

    fn read_cluster(&self, ci: u64, in_off: usize, out: &mut [u8]) -> Result<(), BlockError> {
        let l1i = (ci >> self.l2_bits) as usize;
        let l2i = (ci & ((1 << self.l2_bits) - 1)) as usize;
        let l2off = self.l1.get(l1i).copied().unwrap_or(0);
        let mut c = self.cache.lock().unwrap();
        let entry = if l2off == 0 {
            0
        } else {
            if c.0 != l2off || c.1.is_empty() {
                let mut raw = vec![0u8; 8 << self.l2_bits];
                self.f.read_at(&mut raw, l2off)?;
                c.1 = raw.chunks_exact(8).map(|x| u64::from_be_bytes(x.try_into().unwrap())).collect();
                c.0 = l2off;
            }
            c.1[l2i]
        };
        let pos = (ci << self.cluster_bits) + in_off as u64;
        if entry == 0 {
            drop(c);
            return match &self.backing {
                Some(b) if pos < b.size() => {
                    let n = ((b.size() - pos) as usize).min(out.len());
                    b.read_at(&mut out[..n], pos)?;
                    out[n..].fill(0);
                    Ok(())
                }
                _ => {
                    out.fill(0);
                    Ok(())
                }
            };
        }
        if entry & (1 << 63) != 0 {
            let cb = self.cluster_bits;
            let csize = (entry >> (63 - cb)) & ((1 << cb) - 1);
            let off = entry & ((1 << (63 - cb)) - 1);
            if c.2 != entry || c.3.is_empty() {
                let mut raw = vec![0u8; csize as usize];
                self.f.read_at(&mut raw, off)?;
                let mut data = vec![0u8; 1 << cb];
                inflate_exact(&raw, &mut data).map_err(|m| self.f.format_err(m))?;
                c.2 = entry;
                c.3 = data;
            }
            out.copy_from_slice(&c.3[in_off..in_off + out.len()]);
            return Ok(());
        }
        self.f.read_at(out, entry + in_off as u64)
    }
}

impl BlockDevice for Qcow1 {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        check_range(self.f.path(), offset, buf.len(), self.size)?;
        let cs = 1u64 << self.cluster_bits;
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let in_off = (pos & (cs - 1)) as usize;
            let n = (cs as usize - in_off).min(buf.len() - done);
            self.read_cluster(pos >> self.cluster_bits, in_off, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }
    fn write_at(&self, _: &[u8], _: u64) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly { path: self.f.path().to_owned() })
    }
    fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
    fn read_only(&self) -> bool {
        true
    }
}
