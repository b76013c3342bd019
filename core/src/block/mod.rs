//! The block layer: disk images behind one small trait that the storage devices (IDE, ATAPI,
//! floppy) use.
//!
//! Design (why it looks like this):
//! - Byte offsets, not sectors: IDE uses 512-byte sectors, ATAPI 2048, floppy 512, and image
//!   formats have their own cluster sizes; the trait stays neutral and each layer checks alignment
//!   where it matters.
//! - `&self` methods and `Send + Sync`: an image is shared as `Arc<dyn BlockDevice>` between the
//!   device model (on the CPU thread) and an I/O worker thread that performs the actual reads and
//!   writes, so a slow disk never stalls the CPU thread. Formats that keep mutable metadata (qcow2)
//!   lock internally; the lock is per request, never per guest instruction.
//! - Errors name the image file so users see which disk failed and why.

use std::path::PathBuf;

pub mod raw;

pub use raw::RawFile;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: request at {offset}+{len} is beyond the end of the image ({size} bytes)")]
    OutOfRange { path: PathBuf, offset: u64, len: u64, size: u64 },
    #[error("{path}: image is read-only")]
    ReadOnly { path: PathBuf },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
}

/// A virtual disk: random access at byte offsets within `0..size()`.
pub trait BlockDevice: Send + Sync {
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`. Unallocated areas read as zeros.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError>;
    /// Write `buf` at `offset`. Durable only after [`BlockDevice::flush`].
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError>;
    /// Make every acknowledged write durable (metadata included).
    fn flush(&self) -> Result<(), BlockError>;
    /// The guest no longer needs this range; formats may free it. Reads afterwards return zeros
    /// or the old data (both are allowed, as for ATA TRIM without DRAT).
    fn discard(&self, _offset: u64, _len: u64) -> Result<(), BlockError> {
        Ok(())
    }
    fn read_only(&self) -> bool;
}

/// Checks that `offset..offset+len` lies inside a device of `size` bytes.
pub fn check_range(path: &std::path::Path, offset: u64, len: usize, size: u64) -> Result<(), BlockError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { path: path.to_owned(), offset, len: len as u64, size }),
    }
}
