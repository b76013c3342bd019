//! L1/L2 tables: the two-level map from guest clusters to host clusters.

use std::collections::HashMap;

use crate::block::file::ImageFile;
use crate::block::BlockError;

/// Set when the cluster's refcount is exactly 1 (it may be written in place).
pub const OFLAG_COPIED: u64 = 1 << 63;
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
/// v3: the cluster reads as zeros (with or without an allocated host cluster).
pub const OFLAG_ZERO: u64 = 1;
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// What one L2 entry says about a guest cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cluster {
    /// Not in this image: read from the backing file (or zeros).
    Unallocated,
    /// Reads as zeros; `Some(host)` keeps a preallocated host cluster.
    Zero(Option<u64>),
    Normal(u64),
    /// Compressed data at `offset`, `sectors` 512-byte sectors spanned (from `offset & !511`).
    Compressed { offset: u64, sectors: u64 },
}

impl Cluster {
    pub fn from_entry(e: u64, cluster_bits: u32) -> Cluster {
        if e & OFLAG_COMPRESSED != 0 {
            let x = 62 - (cluster_bits - 8);
            let offset = e & ((1u64 << x) - 1);
            let sectors = ((e >> x) & ((1u64 << (cluster_bits - 8)) - 1)) + 1;
            return Cluster::Compressed { offset, sectors };
        }
        let host = e & OFFSET_MASK;
        if e & OFLAG_ZERO != 0 {
            return Cluster::Zero(if host != 0 { Some(host) } else { None });
        }
        if host == 0 {
            Cluster::Unallocated
        } else {
            Cluster::Normal(host)
        }
    }

    /// Host clusters (offsets) this entry holds a reference on.
    pub fn host_clusters(&self, cluster_bits: u32) -> Vec<u64> {
        match *self {
            Cluster::Normal(h) | Cluster::Zero(Some(h)) => vec![h],
            Cluster::Compressed { offset, sectors } => {
                let start = offset & !511;
                let end = start + sectors * 512 - 1;
                (start >> cluster_bits..=end >> cluster_bits).map(|c| c << cluster_bits).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The compressed-cluster L2 entry for `len` bytes at host `offset`.
pub fn compressed_entry(offset: u64, len: u64, cluster_bits: u32) -> u64 {
    let x = 62 - (cluster_bits - 8);
    let nb = ((offset + len - 1) >> 9) - (offset >> 9);
    OFLAG_COMPRESSED | (nb << x) | offset
}

pub struct L2Table {
    pub e: Vec<u64>,
    pub dirty: bool,
}

/// Every L2 table touched so far, keyed by host offset. Tables are small (one cluster) and the
/// whole set for a large disk is a few MiB; dirty ones are written back at flush.
#[derive(Default)]
pub struct L2Cache {
    tables: HashMap<u64, L2Table>,
}

impl L2Cache {
    pub fn get(&mut self, f: &ImageFile, off: u64, entries: usize) -> Result<&mut L2Table, BlockError> {
        if !self.tables.contains_key(&off) {
            let mut raw = vec![0u8; entries * 8];
            f.read_at(&mut raw, off)?;
            let e = raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect();
            self.tables.insert(off, L2Table { e, dirty: false });
        }
        Ok(self.tables.get_mut(&off).unwrap())
    }

    /// A fresh table at a newly allocated `off`.
    pub fn insert(&mut self, off: u64, e: Vec<u64>) {
        self.tables.insert(off, L2Table { e, dirty: true });
    }

    pub fn evict(&mut self, off: u64) {
        self.tables.remove(&off);
    }

    pub fn any_dirty(&self) -> bool {
        self.tables.values().any(|t| t.dirty)
    }

    pub fn write_dirty(&mut self, f: &ImageFile) -> Result<bool, BlockError> {
        let mut any = false;
        for (&off, t) in self.tables.iter_mut() {
            if t.dirty {
                f.write_at(&encode(&t.e), off)?;
                t.dirty = false;
                any = true;
            }
        }
        Ok(any)
    }
}

pub fn encode(e: &[u64]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(e.len() * 8);
    for v in e {
        raw.extend_from_slice(&v.to_be_bytes());
    }
    raw
}

pub fn decode(raw: &[u8]) -> Vec<u64> {
    raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect()
}
