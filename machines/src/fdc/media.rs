//! Floppy media and drives: which geometry a raw image has (guessed from its size, as QEMU does),
//! which drive type the CMOS reports, and the image behind a drive.
//!
//! Supported image sizes (raw, 512-byte sectors, MFM; the data rate is what the controller's
//! DSR/CCR must be set to for the medium to read):
//!
//! | size | tracks x heads x sectors | rate | drive |
//! |---|---|---|---|
//! | 160K / 180K | 40 x 1 x 8 / 9 | 250 (or 300) kb/s | 1.2M 5.25" |
//! | 320K / 360K | 40 x 2 x 8 / 9 | 250 (or 300) kb/s | 1.2M 5.25" |
//! | 720K / 800K | 80 x 2 x 9 / 10 | 250 kb/s | 1.44M 3.5" |
//! | 1.2M | 80 x 2 x 15 | 500 kb/s | 1.2M 5.25" |
//! | 1.44M | 80 x 2 x 18 | 500 kb/s | 1.44M 3.5" |
//! | 1.6M / 1.68M / 1.72M / 1.74M / 1.76M / 1.84M | 80/80/82/83/80/80 x 2 x 20/21/21/21/22/23 | 500 kb/s | 1.44M 3.5" |
//! | 2.88M | 80 x 2 x 36 | 1 Mb/s | 2.88M 3.5" |
//!
//! Any other size is refused with an error naming the file and its size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vessel_core::block::{open_image, BlockDevice, BlockError};

/// Bytes per sector (size code N = 2). Other sector sizes are not supported.
pub const SECTOR: usize = 512;

/// Data rate select bits of DSR/CCR (bits 0-1).
pub mod rate {
    pub const K500: u8 = 0;
    pub const K300: u8 = 1;
    pub const K250: u8 = 2;
    pub const M1: u8 = 3;
}

/// Physical layout of a medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    pub tracks: u8,
    pub heads: u8,
    pub sectors: u8,
    /// Data rate code the medium is recorded at ([`rate`]).
    pub rate: u8,
}

impl Geometry {
    pub fn bytes(&self) -> u64 {
        self.tracks as u64 * self.heads as u64 * self.sectors as u64 * SECTOR as u64
    }

    /// Whether the controller's data rate setting reads this medium. 250 kb/s media also read at
    /// 300 kb/s (a 360K disk in a 1.2M drive spins at 360 rpm).
    pub fn rate_matches(&self, selected: u8) -> bool {
        selected == self.rate || (self.rate == rate::K250 && selected == rate::K300)
    }

    /// Byte offset of sector `r` (1-based) on track `c`, head `h`.
    pub fn offset(&self, c: u8, h: u8, r: u8) -> u64 {
        let lba = (c as u64 * self.heads as u64 + h as u64) * self.sectors as u64 + (r as u64 - 1);
        lba * SECTOR as u64
    }
}

/// Drive types, as the CMOS (byte 0x10) encodes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriveType {
    /// 5.25" 1.2M (CMOS type 2).
    D120,
    /// 3.5" 1.44M (CMOS type 4).
    D144,
    /// 3.5" 2.88M (CMOS type 5); QEMU's fallback for a drive that starts empty.
    D288,
}

impl DriveType {
    pub fn cmos(self) -> u8 {
        match self {
            DriveType::D120 => 2,
            DriveType::D144 => 4,
            DriveType::D288 => 5,
        }
    }
}

/// `(bytes, tracks, heads, sectors, rate)` of the sizes we accept.
const FORMATS: &[(u64, u8, u8, u8, u8)] = &[
    (163_840, 40, 1, 8, rate::K250),
    (184_320, 40, 1, 9, rate::K250),
    (327_680, 40, 2, 8, rate::K250),
    (368_640, 40, 2, 9, rate::K250),
    (737_280, 80, 2, 9, rate::K250),
    (819_200, 80, 2, 10, rate::K250),
    (1_228_800, 80, 2, 15, rate::K500),
    (1_474_560, 80, 2, 18, rate::K500),
    (1_638_400, 80, 2, 20, rate::K500),
    (1_720_320, 80, 2, 21, rate::K500),
    (1_763_328, 82, 2, 21, rate::K500),
    (1_784_832, 83, 2, 21, rate::K500),
    (1_802_240, 80, 2, 22, rate::K500),
    (1_884_160, 80, 2, 23, rate::K500),
    (2_949_120, 80, 2, 36, rate::M1),
];

/// The geometry of a raw image of `size` bytes.
pub fn geometry_for_size(size: u64) -> Option<Geometry> {
    FORMATS
        .iter()
        .find(|f| f.0 == size)
        .map(|&(_, tracks, heads, sectors, rate)| Geometry { tracks, heads, sectors, rate })
}

/// The drive type a medium of this geometry needs.
pub fn drive_type_for(g: &Geometry) -> DriveType {
    match (g.rate, g.tracks, g.sectors) {
        (rate::M1, ..) => DriveType::D288,
        (_, 40, _) | (_, _, 15) => DriveType::D120,
        _ => DriveType::D144,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(
        "{path}: {size} bytes is not a floppy image size Vessel knows (160K, 180K, 320K, 360K, 720K, \
         800K, 1.2M, 1.44M, 1.6M-1.84M or 2.88M raw images)"
    )]
    Size { path: PathBuf, size: u64 },
}

/// An inserted disk.
pub struct Media {
    pub path: PathBuf,
    pub format: String,
    pub image: Arc<dyn BlockDevice>,
    pub geometry: Geometry,
    pub read_only: bool,
}

impl Media {
    /// Opens a floppy image (`format` `None`: probed). A writable open that fails because the
    /// file is not writable is retried read-only (the disk then shows as write-protected).
    /// `snapshot`: writes go to a temporary overlay and are dropped (QEMU's `snapshot=on`).
    pub fn open_with(path: &Path, format: Option<&str>, read_only: bool, snapshot: bool) -> Result<Media, MediaError> {
        let open_ro = read_only || snapshot;
        let (mut image, read_only) = match open_image(path, format, open_ro) {
            Ok(i) => (i, read_only),
            Err(BlockError::Io { source, .. }) if !open_ro && source.kind() == std::io::ErrorKind::PermissionDenied => {
                (open_image(path, format, true)?, true)
            }
            Err(e) => return Err(e.into()),
        };
        if snapshot && !read_only {
            image = vessel_core::block::overlay::temporary_overlay(image)?;
        }
        let size = image.size();
        let geometry = geometry_for_size(size).ok_or_else(|| MediaError::Size { path: path.to_owned(), size })?;
        let format = match format {
            Some(f) => f.to_string(),
            None => vessel_core::block::probe_format(path).map(|f| f.name().to_string()).unwrap_or_else(|_| "raw".into()),
        };
        let read_only = read_only || image.read_only();
        Ok(Media { path: path.to_owned(), format, image, geometry, read_only })
    }

    pub fn open(path: &Path, format: Option<&str>, read_only: bool) -> Result<Media, MediaError> {
        Self::open_with(path, format, read_only, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_drive_types() {
        let g = geometry_for_size(1_474_560).unwrap();
        assert_eq!((g.tracks, g.heads, g.sectors, g.rate), (80, 2, 18, rate::K500));
        assert_eq!(drive_type_for(&g), DriveType::D144);
        assert_eq!(drive_type_for(&geometry_for_size(2_949_120).unwrap()), DriveType::D288);
        assert_eq!(drive_type_for(&geometry_for_size(1_228_800).unwrap()), DriveType::D120);
        assert_eq!(drive_type_for(&geometry_for_size(368_640).unwrap()), DriveType::D120);
        assert_eq!(drive_type_for(&geometry_for_size(737_280).unwrap()), DriveType::D144);
        for f in FORMATS {
            assert_eq!(geometry_for_size(f.0).unwrap().bytes(), f.0);
        }
        assert!(geometry_for_size(1_474_561).is_none());
        assert_eq!(g.offset(1, 1, 3), ((1 * 2 + 1) * 18 + 2) * 512);
    }

    #[test]
    fn snapshot_and_read_only_opens() {
        let p = std::env::temp_dir().join(format!("vessel-fd-media-{}.img", std::process::id()));
        std::fs::write(&p, vec![0x11u8; 737_280]).unwrap();
        let m = Media::open_with(&p, Some("raw"), false, true).unwrap();
        assert!(!m.read_only, "snapshot: writable");
        m.image.write_at(&[0x22; 512], 0).unwrap();
        let mut b = [0u8; 512];
        m.image.read_at(&mut b, 0).unwrap();
        assert_eq!(b, [0x22; 512], "the guest sees its write");
        assert!(std::fs::read(&p).unwrap().iter().all(|&x| x == 0x11), "the file does not change");
        let m = Media::open(&p, None, true).unwrap();
        assert!(m.read_only);
        assert_eq!(m.format, "raw");
        assert_eq!(m.geometry.rate, rate::K250);
        assert!(m.image.write_at(&[0; 512], 0).is_err());
        let _ = std::fs::remove_file(&p);
    }
}
