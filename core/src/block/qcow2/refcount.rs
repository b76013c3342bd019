//! Refcount table and refcount blocks: how many references each host cluster has, and cluster
//! allocation on top of them.
//!
//! Refcount blocks are cached whole in memory (2 bytes per 64 KiB cluster with the default
//! 16-bit refcounts: 32 MiB for a 1 TiB image) and written back by [`Refcounts::write_dirty`]
//! before anything that references the newly counted clusters (see `Qcow2::flush_metadata`).
//! Decrements are deferred ([`Refcounts::defer_free`]) until the tables that stopped referencing
//! the clusters are on disk, so an interrupted update can leak clusters but never leave a
//! reference to a cluster counted as free.

use std::collections::{BTreeSet, HashMap};

use crate::block::be::*;
use crate::block::file::ImageFile;
use crate::block::BlockError;

use super::header::OFF_REFCOUNT_TABLE;

struct RefBlock {
    data: Vec<u8>,
    dirty: bool,
}

pub struct Refcounts {
    /// Host offsets of the refcount blocks (0 = none yet, all counts in its range are 0).
    pub table: Vec<u64>,
    pub table_offset: u64,
    pub table_clusters: u32,
    table_dirty: BTreeSet<usize>,
    /// Cached blocks, keyed by refcount-table index.
    blocks: HashMap<usize, RefBlock>,
    pub order: u32,
    cluster_bits: u32,
    /// No free cluster below this index (a search hint).
    free_hint: u64,
    /// One past the highest cluster that has a non-zero count (or the file end).
    pub end_cluster: u64,
    /// Decrements waiting until the metadata that dropped the references is durable.
    pending: Vec<u64>,
}

impl Refcounts {
    pub fn load(
        f: &ImageFile,
        table_offset: u64,
        table_clusters: u32,
        order: u32,
        cluster_bits: u32,
    ) -> Result<Self, BlockError> {
        let cs = 1u64 << cluster_bits;
        let bytes = table_clusters as u64 * cs;
        if bytes > 256 << 20 {
            return Err(f.format_err(format!("refcount table of {bytes} bytes is too large")));
        }
        let mut raw = vec![0u8; bytes as usize];
        f.read_at(&mut raw, table_offset)?;
        let table: Vec<u64> = raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect();
        for (i, &e) in table.iter().enumerate() {
            if e & (cs - 1) != 0 {
                return Err(f.format_err(format!("refcount block {i} at {e:#x} is not cluster aligned")));
            }
        }
        let end_cluster = f.len()?.div_ceil(cs);
        Ok(Refcounts {
            table,
            table_offset,
            table_clusters,
            table_dirty: BTreeSet::new(),
            blocks: HashMap::new(),
            order,
            cluster_bits,
            free_hint: 0,
            end_cluster,
            pending: Vec::new(),
        })
    }

    fn cs(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// log2 of the number of entries per refcount block.
    fn block_shift(&self) -> u32 {
        self.cluster_bits + 3 - self.order
    }

    pub fn max_refcount(&self) -> u64 {
        if self.order == 6 {
            u64::MAX
        } else {
            (1u64 << (1 << self.order)) - 1
        }
    }

    fn block(&mut self, f: &ImageFile, idx: usize) -> Result<Option<&mut RefBlock>, BlockError> {
        if idx >= self.table.len() || self.table[idx] == 0 {
            return Ok(None);
        }
        if !self.blocks.contains_key(&idx) {
            let mut data = vec![0u8; self.cs() as usize];
            f.read_at(&mut data, self.table[idx])?;
            self.blocks.insert(idx, RefBlock { data, dirty: false });
        }
        Ok(self.blocks.get_mut(&idx))
    }

    fn entry_get(order: u32, d: &[u8], i: usize) -> u64 {
        match order {
            0 => ((d[i / 8] >> (i % 8)) & 1) as u64,
            1 => ((d[i / 4] >> (2 * (i % 4))) & 3) as u64,
            2 => ((d[i / 2] >> (4 * (i % 2))) & 15) as u64,
            3 => d[i] as u64,
            4 => be16(d, i * 2) as u64,
            5 => be32(d, i * 4) as u64,
            _ => be64(d, i * 8),
        }
    }

    fn entry_set(order: u32, d: &mut [u8], i: usize, v: u64) {
        match order {
            0..=2 => {
                let bits = 1usize << order;
                let per = 8 / bits;
                let shift = bits * (i % per);
                let mask = (((1u16 << bits) - 1) as u8) << shift;
                d[i / per] = (d[i / per] & !mask) | (((v as u8) << shift) & mask);
            }
            3 => d[i] = v as u8,
            4 => put16(d, i * 2, v as u16),
            5 => put32(d, i * 4, v as u32),
            _ => put64(d, i * 8, v),
        }
    }

    pub fn get(&mut self, f: &ImageFile, cluster: u64) -> Result<u64, BlockError> {
        let shift = self.block_shift();
        let idx = (cluster >> shift) as usize;
        let i = (cluster & ((1 << shift) - 1)) as usize;
        let order = self.order;
        Ok(match self.block(f, idx)? {
            Some(b) => Self::entry_get(order, &b.data, i),
            None => 0,
        })
    }

    /// Sets a count; the cluster's refcount block must exist (see [`Refcounts::ensure_block`]).
    fn set(&mut self, f: &ImageFile, cluster: u64, v: u64) -> Result<(), BlockError> {
        let shift = self.block_shift();
        let idx = (cluster >> shift) as usize;
        let i = (cluster & ((1 << shift) - 1)) as usize;
        let order = self.order;
        let b = match self.block(f, idx)? {
            Some(b) => b,
            None => return Err(f.format_err(format!("no refcount block for cluster {cluster}"))),
        };
        Self::entry_set(order, &mut b.data, i, v);
        b.dirty = true;
        if v > 0 {
            self.end_cluster = self.end_cluster.max(cluster + 1);
        } else {
            self.free_hint = self.free_hint.min(cluster);
        }
        Ok(())
    }

    /// Adds `delta` to a cluster's count now (increments; decrements only where the caller has
    /// already made the dropped reference durable). Returns the new count.
    pub fn add(&mut self, f: &ImageFile, cluster: u64, delta: i64) -> Result<u64, BlockError> {
        let old = self.get(f, cluster)?;
        let new = if delta >= 0 {
            old.checked_add(delta as u64).filter(|&n| n <= self.max_refcount())
        } else {
            old.checked_sub(delta.unsigned_abs())
        };
        let new = new.ok_or_else(|| {
            f.format_err(format!("refcount of cluster {cluster} would go from {old} by {delta} out of range"))
        })?;
        if delta > 0 {
            self.ensure_block(f, cluster)?;
        }
        self.set(f, cluster, new)?;
        Ok(new)
    }

    /// Queues a decrement of the cluster holding `offset`, applied by [`Refcounts::apply_pending`].
    pub fn defer_free(&mut self, offset: u64) {
        self.pending.push(offset >> self.cluster_bits);
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Applies queued decrements; returns the host offsets of clusters that became free.
    pub fn apply_pending(&mut self, f: &ImageFile) -> Result<Vec<u64>, BlockError> {
        let mut freed = Vec::new();
        for c in std::mem::take(&mut self.pending) {
            if self.add(f, c, -1)? == 0 {
                freed.push(c << self.cluster_bits);
            }
        }
        Ok(freed)
    }

    /// Finds `n` contiguous clusters with a zero count.
    fn find_free(&mut self, f: &ImageFile, n: u64) -> Result<u64, BlockError> {
        let mut c = self.free_hint;
        let mut run = 0;
        loop {
            if c >= self.end_cluster {
                return Ok(c - run);
            }
            if self.get(f, c)? == 0 {
                run += 1;
                if run == n {
                    return Ok(c + 1 - n);
                }
            } else {
                run = 0;
                if c == self.free_hint {
                    self.free_hint = c + 1;
                }
            }
            c += 1;
        }
    }

    /// Allocates `n` contiguous clusters with count 1 and returns the host offset of the first.
    pub fn alloc(&mut self, f: &ImageFile, n: u64) -> Result<u64, BlockError> {
        loop {
            let start = self.find_free(f, n)?;
            for c in start..start + n {
                self.ensure_block(f, c)?;
            }
            // Creating a refcount block may have taken a cluster of the run: search again.
            let mut free = true;
            for c in start..start + n {
                if self.get(f, c)? != 0 {
                    free = false;
                    break;
                }
            }
            if free {
                for c in start..start + n {
                    self.set(f, c, 1)?;
                }
                return Ok(start << self.cluster_bits);
            }
        }
    }

    /// Makes sure the refcount block covering `cluster` exists, creating it (and growing the
    /// refcount table) when needed. A new block is placed in the first free cluster; when that
    /// cluster lies in the range the block itself covers, the block counts itself.
    pub fn ensure_block(&mut self, f: &ImageFile, cluster: u64) -> Result<(), BlockError> {
        let shift = self.block_shift();
        let idx = (cluster >> shift) as usize;
        if idx >= self.table.len() {
            self.grow_table(f, idx + 1)?;
        }
        if self.table[idx] != 0 {
            return Ok(());
        }
        loop {
            let b = self.find_free(f, 1)?;
            let bidx = (b >> shift) as usize;
            if bidx == idx {
                self.install_block(idx, b);
                self.set(f, b, 1)?;
                return Ok(());
            }
            self.ensure_block(f, b)?;
            if self.table[idx] != 0 {
                return Ok(()); // created while placing the other one
            }
            if self.get(f, b)? == 0 {
                self.set(f, b, 1)?;
                self.install_block(idx, b);
                return Ok(());
            }
        }
    }

    /// Makes `cluster` (an index) the refcount block for table entry `idx`.
    fn install_block(&mut self, idx: usize, cluster: u64) {
        self.table[idx] = cluster << self.cluster_bits;
        let cs = self.cs() as usize;
        self.blocks.insert(idx, RefBlock { data: vec![0; cs], dirty: true });
        self.table_dirty.insert(idx);
        self.end_cluster = self.end_cluster.max(cluster + 1);
    }

    /// Replaces the refcount table with a larger one at the end of the image. Done synchronously
    /// with its own barriers: new blocks and table durable, then the header points at them, then
    /// the old table is released.
    fn grow_table(&mut self, f: &ImageFile, min_entries: usize) -> Result<(), BlockError> {
        let cs = self.cs();
        let shift = self.block_shift();
        let start = self.end_cluster;
        let mut entries = min_entries.max(self.table.len() * 2).max(1);
        let mut t_clusters;
        let mut new_blocks: Vec<usize>;
        loop {
            t_clusters = (entries as u64 * 8).div_ceil(cs);
            let mut nb = 0u64;
            loop {
                let end = start + t_clusters + nb;
                new_blocks = ((start >> shift) as usize..=((end - 1) >> shift) as usize)
                    .filter(|&i| i >= self.table.len() || self.table[i] == 0)
                    .collect();
                if new_blocks.len() as u64 == nb {
                    break;
                }
                nb = new_blocks.len() as u64;
            }
            let need = (((start + t_clusters + nb - 1) >> shift) + 1) as usize;
            if need <= entries {
                break;
            }
            entries = need;
        }
        entries = (t_clusters * cs / 8) as usize;
        let old_offset = self.table_offset;
        let old_clusters = self.table_clusters as u64;
        self.table.resize(entries, 0);
        for (k, &i) in new_blocks.iter().enumerate() {
            let off = (start + t_clusters + k as u64) << self.cluster_bits;
            self.table[i] = off;
            self.blocks.insert(i, RefBlock { data: vec![0; cs as usize], dirty: true });
        }
        self.end_cluster = self.end_cluster.max(start + t_clusters + new_blocks.len() as u64);
        for c in start..start + t_clusters + new_blocks.len() as u64 {
            self.set(f, c, 1)?;
        }
        self.write_dirty_blocks(f)?;
        let mut raw = vec![0u8; (t_clusters * cs) as usize];
        for (i, e) in self.table.iter().enumerate() {
            put64(&mut raw, i * 8, *e);
        }
        f.write_at(&raw, start << self.cluster_bits)?;
        f.sync()?;
        let mut hdr = [0u8; 12];
        put64(&mut hdr, 0, start << self.cluster_bits);
        put32(&mut hdr, 8, t_clusters as u32);
        f.write_at(&hdr, OFF_REFCOUNT_TABLE)?;
        f.sync()?;
        self.table_offset = start << self.cluster_bits;
        self.table_clusters = t_clusters as u32;
        self.table_dirty.clear();
        for c in 0..old_clusters {
            self.defer_free(old_offset + c * cs);
        }
        Ok(())
    }

    /// Writes changed refcount blocks; true if anything was written.
    pub fn write_dirty_blocks(&mut self, f: &ImageFile) -> Result<bool, BlockError> {
        let mut any = false;
        for (&idx, b) in self.blocks.iter_mut() {
            if b.dirty {
                f.write_at(&b.data, self.table[idx])?;
                b.dirty = false;
                any = true;
            }
        }
        Ok(any)
    }

    /// Writes changed refcount-table entries (after the blocks they point to are durable).
    pub fn write_dirty_table(&mut self, f: &ImageFile) -> Result<bool, BlockError> {
        let any = !self.table_dirty.is_empty();
        for i in std::mem::take(&mut self.table_dirty) {
            f.write_at(&self.table[i].to_be_bytes(), self.table_offset + i as u64 * 8)?;
        }
        Ok(any)
    }

    /// Every cluster index with a refcount block, for check/repair.
    pub fn covered_clusters(&self) -> u64 {
        (self.table.len() as u64) << self.block_shift()
    }

    pub fn has_block_for(&self, cluster: u64) -> bool {
        let idx = (cluster >> self.block_shift()) as usize;
        idx < self.table.len() && self.table[idx] != 0
    }

    /// Sets a count directly (repair). The block must exist.
    pub fn force_set(&mut self, f: &ImageFile, cluster: u64, v: u64) -> Result<(), BlockError> {
        self.set(f, cluster, v)
    }
}
