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
//!
//! Devices open images with [`open_image`] (format probed from the magic unless given; backing
//! chains resolved relative to each image's directory) and, for QEMU's `snapshot=on`, wrap the
//! result in [`overlay::temporary_overlay`]. See docs/block.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod be;
pub mod file;
pub mod ops;
pub mod overlay;
pub mod qcow1;
pub mod qcow2;
pub mod raw;
pub mod vmdk;
pub mod vpc;

pub use qcow2::Qcow2;
pub use raw::RawFile;

/// Image formats Vessel reads (and, for raw and qcow2, writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
    /// Read-only imports.
    Qcow,
    Vmdk,
    Vpc,
}

impl Format {
    /// The format from its QEMU name (`raw`, `qcow2`, ...).
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "raw" | "file" => Format::Raw,
            "qcow2" => Format::Qcow2,
            "qcow" => Format::Qcow,
            "vmdk" => Format::Vmdk,
            "vpc" | "vhd" => Format::Vpc,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Qcow => "qcow",
            Format::Vmdk => "vmdk",
            Format::Vpc => "vpc",
        }
    }

    pub fn writable(self) -> bool {
        matches!(self, Format::Raw | Format::Qcow2)
    }
}

/// Guesses an image's format from its first bytes (and, for fixed VHDs, its last sector).
/// Anything unrecognised is raw, as in QEMU.
pub fn probe_format(path: &Path) -> Result<Format, BlockError> {
    let f = file::ImageFile::open(path, true)?;
    let mut head = [0u8; 8];
    f.read_at(&mut head, 0)?;
    if &head[0..4] == b"QFI\xfb" {
        let version = u32::from_be_bytes(head[4..8].try_into().unwrap());
        return match version {
            1 => Ok(Format::Qcow),
            2 | 3 => Ok(Format::Qcow2),
            v => Err(f.format_err(format!("unsupported qcow version {v}"))),
        };
    }
    if &head[0..4] == b"KDMV" {
        return Ok(Format::Vmdk);
    }
    // Like QEMU, only dynamic VHDs (header copy at the start) are probed; a fixed VHD is a raw
    // disk plus a footer and needs an explicit format.
    if &head == b"conectix" {
        return Ok(Format::Vpc);
    }
    Ok(Format::Raw)
}

/// Opens a disk image. `format` is a QEMU format name; `None` probes the file.
pub fn open_image(path: &Path, format: Option<&str>, read_only: bool) -> Result<Arc<dyn BlockDevice>, BlockError> {
    let fmt = match format {
        Some(name) => Format::from_name(name).ok_or_else(|| BlockError::Format {
            path: path.to_owned(),
            msg: format!("unknown image format '{name}'"),
        })?,
        None => probe_format(path)?,
    };
    if !read_only && !fmt.writable() {
        return Err(BlockError::Format {
            path: path.to_owned(),
            msg: format!("{} images are read-only in Vessel; convert them to qcow2 first", fmt.name()),
        });
    }
    Ok(match fmt {
        Format::Raw => Arc::new(RawFile::open(path, read_only)?),
        Format::Qcow2 => Arc::new(Qcow2::open(path, read_only)?),
        Format::Qcow => Arc::new(qcow1::Qcow1::open(path)?),
        Format::Vmdk => Arc::new(vmdk::Vmdk::open(path)?),
        Format::Vpc => Arc::new(vpc::Vpc::open(path)?),
    })
}

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
    /// The qcow2 image behind this device, if it is one (internal snapshots for `savevm`).
    fn as_qcow2(&self) -> Option<&qcow2::Qcow2> {
        None
    }
}

/// Checks that `offset..offset+len` lies inside a device of `size` bytes.
pub fn check_range(path: &std::path::Path, offset: u64, len: usize, size: u64) -> Result<(), BlockError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { path: path.to_owned(), offset, len: len as u64, size }),
    }
}
