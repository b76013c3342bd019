//! Virtual PC / Hyper-V VHD images (fixed and dynamic), read-only.
//!
//! The virtual size follows QEMU: from the CHS geometry unless the creator is one that uses the
//! footer's current_size (Hyper-V, disk2vhd, XenServer, newer QEMU) or the geometry is the
//! maximum. Unallocated blocks read as zeros (differencing disks are refused).

use std::path::Path;

use super::be::*;
use super::file::ImageFile;
use super::{check_range, BlockDevice, BlockError};

pub struct Vpc {
    f: ImageFile,
    size: u64,
    /// Dynamic disks: block size and block allocation table (sector offsets).
    block_size: u64,
    bat: Option<Vec<u32>>,
}

impl Vpc {
    pub fn open(path: &Path) -> Result<Self, BlockError> {
        let f = ImageFile::open(path, true)?;
        let len = f.len()?;
        let mut foot = [0u8; 512];
        f.read_at(&mut foot, 0)?;
        if &foot[0..8] != b"conectix" {
            if len < 512 {
                return Err(f.format_err("not a VHD image"));
            }
            f.read_at(&mut foot, len - 512)?;
            if &foot[0..8] != b"conectix" {
                return Err(f.format_err("not a VHD image (no 'conectix' footer)"));
            }
        }
        let disk_type = be32(&foot, 60);
        let creator = &foot[28..32];
        let chs = be16(&foot, 56) as u64 * foot[58] as u64 * foot[59] as u64;
        let use_chs = !matches!(creator, b"win " | b"qem2" | b"d2v " | b"CTXS" | b"tap\0");
        let size = if !use_chs || chs == 65535 * 16 * 255 { be64(&foot, 48) } else { chs * 512 };
        match disk_type {
            2 => {
                if size > len {
                    return Err(f.format_err("fixed VHD is shorter than its size"));
                }
                Ok(Vpc { f, size, block_size: 0, bat: None })
            }
            3 => {
                let mut dh = [0u8; 1024];
                f.read_at(&mut dh, be64(&foot, 16))?;
                if &dh[0..8] != b"cxsparse" {
                    return Err(f.format_err("dynamic VHD header missing"));
                }
                let table_offset = be64(&dh, 16);
                let entries = be32(&dh, 28) as usize;
                let block_size = be32(&dh, 32) as u64;
                if !block_size.is_power_of_two() || block_size < 512 || entries > 1 << 24 {
                    return Err(f.format_err("bad dynamic VHD header"));
                }
                let mut raw = vec![0u8; entries * 4];
                f.read_at(&mut raw, table_offset)?;
                let bat = raw.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect();
                Ok(Vpc { f, size, block_size, bat: Some(bat) })
            }
            4 => Err(f.format_err("differencing VHD images are not supported")),
            t => Err(f.format_err(format!("unknown VHD disk type {t}"))),
        }
    }
}

impl BlockDevice for Vpc {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        check_range(self.f.path(), offset, buf.len(), self.size)?;
        let Some(bat) = &self.bat else {
            return self.f.read_at(buf, offset);
        };
        let bitmap = (self.block_size / 512).div_ceil(8).div_ceil(512) * 512;
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let bi = (pos / self.block_size) as usize;
            let in_off = pos % self.block_size;
            let n = ((self.block_size - in_off) as usize).min(buf.len() - done);
            match bat.get(bi).copied().unwrap_or(u32::MAX) {
                u32::MAX => buf[done..done + n].fill(0),
                s => self.f.read_at(&mut buf[done..done + n], s as u64 * 512 + bitmap + in_off)?,
            }
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
