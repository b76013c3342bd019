//! A host file holding an image, with errors that name it. Formats that parse structures
//! (qcow2, vmdk, vpc) read through this.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::BlockError;

pub struct ImageFile {
    file: File,
    path: PathBuf,
}

impl ImageFile {
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
        Ok(ImageFile { file, path: path.to_owned() })
    }

    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, BlockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
        Ok(ImageFile { file, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn io(&self, source: std::io::Error) -> BlockError {
        BlockError::Io { path: self.path.clone(), source }
    }

    pub fn format_err(&self, msg: impl Into<String>) -> BlockError {
        BlockError::Format { path: self.path.clone(), msg: msg.into() }
    }

    /// Reads `buf` at `off`; bytes beyond the end of the file read as zeros (images may end in
    /// a partial cluster or a compressed run that stops short of a sector boundary).
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), BlockError> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    pub fn write_at(&self, buf: &[u8], off: u64) -> Result<(), BlockError> {
        self.file.write_all_at(buf, off).map_err(|e| self.io(e))
    }

    pub fn sync(&self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|e| self.io(e))
    }

    pub fn len(&self) -> Result<u64, BlockError> {
        Ok(self.file.metadata().map_err(|e| self.io(e))?.len())
    }

    pub fn set_len(&self, len: u64) -> Result<(), BlockError> {
        self.file.set_len(len).map_err(|e| self.io(e))
    }
}
