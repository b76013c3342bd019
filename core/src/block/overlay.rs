//! `snapshot=on`: a temporary qcow2 overlay that takes every write and is thrown away when the
//! VM stops; the image underneath is opened read-only and never changes.
//!
//! The overlay is a qcow2 file in the temp directory, unlinked right after opening (the open
//! file keeps it alive, nothing is left behind after a crash). Unwritten clusters read through
//! to the base device.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::qcow2::{CreateOptions, Qcow2};
use super::{BlockDevice, BlockError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Wraps `base` (typically opened read-only) in a throw-away writable overlay.
pub fn temporary_overlay(base: Arc<dyn BlockDevice>) -> Result<Arc<dyn BlockDevice>, BlockError> {
    let dir = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("vessel-overlay-{}-{n}.qcow2", std::process::id()));
    let opts = CreateOptions { size: base.size(), ..Default::default() };
    Qcow2::create(&path, &opts)?;
    let q = Qcow2::open_with_backing(&path, false, Some(base));
    let _ = std::fs::remove_file(&path);
    Ok(Arc::new(q?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RawFile;

    #[test]
    fn overlay_discards_writes_and_keeps_base() {
        let dir = std::env::temp_dir().join(format!("vessel-ovl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("base.img");
        std::fs::write(&p, vec![0x5a; 3 << 20]).unwrap();
        let base: Arc<dyn BlockDevice> = Arc::new(RawFile::open(&p, true).unwrap());
        let o = temporary_overlay(base).unwrap();
        assert_eq!(o.size(), 3 << 20);
        o.write_at(&[1, 2, 3], 70000).unwrap();
        o.flush().unwrap();
        let mut b = [0u8; 5];
        o.read_at(&mut b, 69999).unwrap();
        assert_eq!(b, [0x5a, 1, 2, 3, 0x5a]);
        drop(o);
        assert!(std::fs::read(&p).unwrap().iter().all(|&x| x == 0x5a));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
