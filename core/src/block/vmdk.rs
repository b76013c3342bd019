//! VMware VMDK sparse extents (monolithicSparse and streamOptimized), read-only.
//!
//! One file: a little-endian sparse header, a grain directory of grain tables mapping each
//! grain (64 KiB by default) to a sector. streamOptimized images keep the real header in a
//! footer near the end (gdOffset = GD_AT_END) and store each grain zlib-compressed behind a
//! 12-byte marker (LBA, size).

use std::path::Path;
use std::sync::Mutex;

use super::be::*;
use super::file::ImageFile;
use super::{check_range, BlockDevice, BlockError};

const GD_AT_END: u64 = u64::MAX;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_ZERO_GTE: u32 = 1 << 2;

pub struct Vmdk {
    f: ImageFile,
    size: u64,
    grain: u64,
    gtes_per_gt: u64,
    gd: Vec<u32>,
    compressed: bool,
    zero_gte: bool,
    /// Last grain table (sector, entries) and last inflated grain (sector, data).
    cache: Mutex<(u32, Vec<u32>, u32, Vec<u8>)>,
}

fn parse_header(h: &[u8]) -> (u32, u64, u64, u32, u64, u16) {
    // flags, capacity, grain size, GTEs per GT, gd offset, compress algorithm
    (le32(h, 8), le64(h, 12), le64(h, 20), le32(h, 44), le64(h, 56), le16(h, 77))
}

impl Vmdk {
    pub fn open(path: &Path) -> Result<Self, BlockError> {
        let f = ImageFile::open(path, true)?;
        let mut h = [0u8; 512];
        f.read_at(&mut h, 0)?;
        if &h[0..4] != b"KDMV" {
            return Err(f.format_err("not a sparse VMDK (descriptor-only and split VMDKs are not supported)"));
        }
        let mut p = parse_header(&h);
        if p.4 == GD_AT_END {
            let len = f.len()?;
            if len < 1536 {
                return Err(f.format_err("streamOptimized VMDK without footer"));
            }
            f.read_at(&mut h, len - 1024)?;
            if &h[0..4] != b"KDMV" {
                return Err(f.format_err("streamOptimized VMDK footer is missing"));
            }
            p = parse_header(&h);
        }
        let (flags, capacity, grain_sectors, gtes, gd_offset, algo) = p;
        if grain_sectors == 0 || !grain_sectors.is_power_of_two() || grain_sectors > 2048 || gtes == 0 || gtes > 1 << 16 {
            return Err(f.format_err("bad VMDK grain size or grain table size"));
        }
        let compressed = flags & FLAG_COMPRESSED != 0;
        if compressed && algo != 1 {
            return Err(f.format_err(format!("unknown VMDK compression algorithm {algo}")));
        }
        let grain = grain_sectors * 512;
        let size = capacity * 512;
        let gd_entries = size.div_ceil(grain * gtes as u64) as usize;
        if gd_entries > 1 << 24 {
            return Err(f.format_err("VMDK grain directory too large"));
        }
        let mut raw = vec![0u8; gd_entries * 4];
        f.read_at(&mut raw, gd_offset * 512)?;
        let gd = raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        Ok(Vmdk {
            f,
            size,
            grain,
            gtes_per_gt: gtes as u64,
            gd,
            compressed,
            zero_gte: flags & FLAG_ZERO_GTE != 0,
            cache: Mutex::new((0, Vec::new(), 0, Vec::new())),
        })
    }

    fn read_grain(&self, gi: u64, in_off: usize, out: &mut [u8]) -> Result<(), BlockError> {
        let gt = self.gd.get((gi / self.gtes_per_gt) as usize).copied().unwrap_or(0);
        let mut c = self.cache.lock().unwrap();
        let sector = if gt == 0 {
            0
        } else {
            if c.0 != gt || c.1.is_empty() {
                let mut raw = vec![0u8; self.gtes_per_gt as usize * 4];
                self.f.read_at(&mut raw, gt as u64 * 512)?;
                c.1 = raw.chunks_exact(4).map(|x| u32::from_le_bytes(x.try_into().unwrap())).collect();
                c.0 = gt;
            }
            c.1[(gi % self.gtes_per_gt) as usize]
        };
        if sector == 0 || (sector == 1 && self.zero_gte) {
            out.fill(0);
            return Ok(());
        }
        if !self.compressed {
            return self.f.read_at(out, sector as u64 * 512 + in_off as u64);
        }
        if c.2 != sector || c.3.is_empty() {
            let mut m = [0u8; 12];
            self.f.read_at(&mut m, sector as u64 * 512)?;
            let len = le32(&m, 8) as usize;
            if len > 2 * self.grain as usize + 4096 {
                return Err(self.f.format_err(format!("compressed grain at sector {sector} is too large")));
            }
            let mut raw = vec![0u8; len];
            self.f.read_at(&mut raw, sector as u64 * 512 + 12)?;
            let mut data = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&raw, self.grain as usize)
                .map_err(|e| self.f.format_err(format!("corrupt compressed grain at sector {sector}: {e:?}")))?;
            data.resize(self.grain as usize, 0);
            c.2 = sector;
            c.3 = data;
        }
        out.copy_from_slice(&c.3[in_off..in_off + out.len()]);
        Ok(())
    }
}

impl BlockDevice for Vmdk {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        check_range(self.f.path(), offset, buf.len(), self.size)?;
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let in_off = (pos % self.grain) as usize;
            let n = (self.grain as usize - in_off).min(buf.len() - done);
            self.read_grain(pos / self.grain, in_off, &mut buf[done..done + n])?;
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
