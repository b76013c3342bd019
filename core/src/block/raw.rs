//! Raw images: the file is the disk, byte for byte. Holes in sparse files read as zeros.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{check_range, BlockDevice, BlockError};

pub struct RawFile {
    file: File,
    path: PathBuf,
    size: u64,
    read_only: bool,
}

impl RawFile {
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<Self, BlockError> {
        let path = path.as_ref().to_owned();
        let io = |source| BlockError::Io { path: path.clone(), source };
        let file = OpenOptions::new().read(true).write(!read_only).open(&path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(RawFile { file, path, size, read_only })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BlockDevice for RawFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        check_range(&self.path, offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| BlockError::Io { path: self.path.clone(), source })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly { path: self.path.clone() });
        }
        check_range(&self.path, offset, buf.len(), self.size)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| BlockError::Io { path: self.path.clone(), source })
    }

    fn flush(&self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(|source| BlockError::Io { path: self.path.clone(), source })
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_and_bounds() {
        let dir = std::env::temp_dir().join(format!("vessel-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.img");
        let f = File::create(&p).unwrap();
        f.set_len(1 << 20).unwrap();
        let d = RawFile::open(&p, false).unwrap();
        assert_eq!(d.size(), 1 << 20);
        d.write_at(&[0xab; 512], 4096).unwrap();
        let mut b = [0u8; 1024];
        d.read_at(&mut b, 3584).unwrap();
        assert!(b[..512].iter().all(|&x| x == 0) && b[512..].iter().all(|&x| x == 0xab));
        let e = d.read_at(&mut b, (1 << 20) - 512).unwrap_err();
        assert!(e.to_string().contains("d.img") && e.to_string().contains("beyond the end"));
        let ro = RawFile::open(&p, true).unwrap();
        assert!(matches!(ro.write_at(&[0], 0), Err(BlockError::ReadOnly { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
