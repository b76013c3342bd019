//! Internal snapshots: a saved copy of the L1 table whose clusters hold an extra reference.
//!
//! Ordering (each step durable before the next, so a crash leaves leaks at worst):
//! - create: copy L1 to new clusters; +1 on every cluster reachable from the active L1 and clear
//!   COPIED flags; write a new snapshot table; point the header at it (one 12-byte write); free
//!   the old table.
//! - apply: +1 on the snapshot's clusters; write its L1 into the active L1; -1 on the clusters the
//!   old active L1 reached; recompute COPIED flags.
//! - delete: write the table without the entry and point the header at it; -1 on the snapshot's
//!   clusters and free its L1 copy; recompute COPIED flags.

use crate::block::be::*;
use crate::block::file::ImageFile;
use crate::block::BlockError;

use super::header::OFF_SNAPSHOTS;
use super::table::{self, Cluster, OFFSET_MASK, OFLAG_COPIED};
use super::State;

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub l1_table_offset: u64,
    pub l1_size: u32,
    pub id: String,
    pub name: String,
    pub date_sec: u32,
    pub date_nsec: u32,
    pub vm_clock_nsec: u64,
    pub vm_state_size: u32,
    /// Raw extra data (v3: at least vm_state_size_large and disk_size).
    pub extra: Vec<u8>,
}

/// What `snapshot -l` shows.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    pub vm_state_size: u64,
    pub date_sec: u32,
    pub date_nsec: u32,
    pub vm_clock_nsec: u64,
    pub disk_size: Option<u64>,
}

impl Snapshot {
    pub fn disk_size(&self) -> Option<u64> {
        (self.extra.len() >= 16).then(|| be64(&self.extra, 8))
    }

    pub fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            vm_state_size: if self.extra.len() >= 8 { be64(&self.extra, 0) } else { self.vm_state_size as u64 },
            date_sec: self.date_sec,
            date_nsec: self.date_nsec,
            vm_clock_nsec: self.vm_clock_nsec,
            disk_size: self.disk_size(),
        }
    }
}

pub fn read_table(f: &ImageFile, offset: u64, count: u32) -> Result<Vec<Snapshot>, BlockError> {
    let mut out = Vec::new();
    let mut off = offset;
    for _ in 0..count {
        let mut h = [0u8; 40];
        f.read_at(&mut h, off)?;
        let extra_len = be32(&h, 36) as usize;
        let id_len = be16(&h, 12) as usize;
        let name_len = be16(&h, 14) as usize;
        let mut rest = vec![0u8; extra_len + id_len + name_len];
        f.read_at(&mut rest, off + 40)?;
        let s = Snapshot {
            l1_table_offset: be64(&h, 0),
            l1_size: be32(&h, 8),
            date_sec: be32(&h, 16),
            date_nsec: be32(&h, 20),
            vm_clock_nsec: be64(&h, 24),
            vm_state_size: be32(&h, 32),
            extra: rest[..extra_len].to_vec(),
            id: String::from_utf8_lossy(&rest[extra_len..extra_len + id_len]).into_owned(),
            name: String::from_utf8_lossy(&rest[extra_len + id_len..]).into_owned(),
        };
        off += (40 + rest.len() as u64 + 7) & !7;
        out.push(s);
    }
    Ok(out)
}

fn encode_table(snaps: &[Snapshot]) -> Vec<u8> {
    let mut b = Vec::new();
    for s in snaps {
        let mut h = [0u8; 40];
        put64(&mut h, 0, s.l1_table_offset);
        put32(&mut h, 8, s.l1_size);
        put16(&mut h, 12, s.id.len() as u16);
        put16(&mut h, 14, s.name.len() as u16);
        put32(&mut h, 16, s.date_sec);
        put32(&mut h, 20, s.date_nsec);
        put64(&mut h, 24, s.vm_clock_nsec);
        put32(&mut h, 32, s.vm_state_size);
        put32(&mut h, 36, s.extra.len() as u32);
        b.extend_from_slice(&h);
        b.extend_from_slice(&s.extra);
        b.extend_from_slice(s.id.as_bytes());
        b.extend_from_slice(s.name.as_bytes());
        while b.len() % 8 != 0 {
            b.push(0);
        }
    }
    b
}

impl State {
    pub(super) fn find_snapshot(&self, id_or_name: &str) -> Option<usize> {
        self.snaps.iter().position(|s| s.id == id_or_name).or_else(|| self.snaps.iter().position(|s| s.name == id_or_name))
    }

    /// Writes the snapshot list to new clusters, switches the header to it, frees the old list.
    fn write_snapshot_table(&mut self, f: &ImageFile) -> Result<(), BlockError> {
        let raw = encode_table(&self.snaps);
        let old = (self.h.snapshots_offset, self.snap_table_len);
        let new_off = if self.snaps.is_empty() {
            0
        } else {
            let n = (raw.len() as u64).div_ceil(self.cs);
            let off = self.rc.alloc(f, n)?;
            self.rc.write_dirty_blocks(f)?;
            f.sync()?;
            self.rc.write_dirty_table(f)?;
            f.write_at(&raw, off)?;
            off
        };
        f.sync()?;
        let mut hdr = [0u8; 12];
        put32(&mut hdr, 0, self.snaps.len() as u32);
        put64(&mut hdr, 4, new_off);
        f.write_at(&hdr, OFF_SNAPSHOTS)?;
        f.sync()?;
        self.h.nb_snapshots = self.snaps.len() as u32;
        self.h.snapshots_offset = new_off;
        self.snap_table_len = raw.len() as u64;
        if old.0 != 0 {
            for c in 0..old.1.div_ceil(self.cs) {
                self.rc.add(f, (old.0 >> self.bits) + c, -1)?;
            }
        }
        Ok(())
    }

    fn read_l1(&self, f: &ImageFile, off: u64, size: u32) -> Result<Vec<u64>, BlockError> {
        let mut raw = vec![0u8; size as usize * 8];
        f.read_at(&mut raw, off)?;
        Ok(table::decode(&raw))
    }

    /// Adds `delta` to the refcount of every L2 table and data cluster reachable from `l1`.
    /// Returns the host offsets of clusters that dropped to zero.
    fn tree_refcount(&mut self, f: &ImageFile, l1: &[u64], delta: i64) -> Result<Vec<u64>, BlockError> {
        let mut freed = Vec::new();
        for &l1e in l1 {
            let l2off = l1e & OFFSET_MASK;
            if l2off == 0 {
                continue;
            }
            let entries = self.l2.get(f, l2off, self.l2_entries)?.e.clone();
            for e in entries {
                for h in Cluster::from_entry(e, self.bits).host_clusters(self.bits) {
                    if self.rc.add(f, h >> self.bits, delta)? == 0 {
                        freed.push(h);
                    }
                }
            }
            if self.rc.add(f, l2off >> self.bits, delta)? == 0 {
                freed.push(l2off);
            }
        }
        Ok(freed)
    }

    /// Sets COPIED on active L1/L2 entries exactly where the refcount is 1.
    pub(super) fn fix_copied_flags(&mut self, f: &ImageFile) -> Result<(), BlockError> {
        for i in 0..self.l1.len() {
            let l1e = self.l1[i];
            let l2off = l1e & OFFSET_MASK;
            if l2off == 0 {
                continue;
            }
            let want = if self.rc.get(f, l2off >> self.bits)? == 1 { OFLAG_COPIED } else { 0 };
            if l1e & OFLAG_COPIED != want {
                self.l1[i] = (l1e & !OFLAG_COPIED) | want;
                self.l1_dirty = true;
            }
            let n = self.l2_entries;
            for j in 0..n {
                let e = self.l2.get(f, l2off, n)?.e[j];
                let c = Cluster::from_entry(e, self.bits);
                let host = match c {
                    Cluster::Normal(h) | Cluster::Zero(Some(h)) => h,
                    _ => continue,
                };
                let want = if self.rc.get(f, host >> self.bits)? == 1 { OFLAG_COPIED } else { 0 };
                if e & OFLAG_COPIED != want {
                    let t = self.l2.get(f, l2off, n)?;
                    t.e[j] = (e & !OFLAG_COPIED) | want;
                    t.dirty = true;
                }
            }
        }
        Ok(())
    }

    fn evict_freed(&mut self, freed: &[u64]) {
        for &h in freed {
            self.l2.evict(h);
        }
        self.comp_cache = None;
    }

    pub(super) fn snapshot_create(&mut self, f: &ImageFile, name: &str, vm_clock_nsec: u64) -> Result<(), BlockError> {
        if self.find_snapshot(name).is_some() {
            return Err(f.format_err(format!("a snapshot named '{name}' already exists")));
        }
        if name.len() > 65535 {
            return Err(f.format_err("snapshot name too long"));
        }
        self.flush_metadata(f)?;
        // 1. The L1 copy.
        let l1_bytes = self.l1.len() as u64 * 8;
        let l1_off = if l1_bytes > 0 { self.rc.alloc(f, l1_bytes.div_ceil(self.cs))? } else { 0 };
        if l1_bytes > 0 {
            f.write_at(&table::encode(&self.l1), l1_off)?;
        }
        // 2. One more reference on everything the active L1 reaches; COPIED flags follow.
        let l1 = self.l1.clone();
        self.tree_refcount(f, &l1, 1)?;
        self.rc.write_dirty_blocks(f)?;
        f.sync()?;
        self.rc.write_dirty_table(f)?;
        self.fix_copied_flags(f)?;
        self.write_tables(f)?;
        f.sync()?;
        // 3. The table entry.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let next_id = self.snaps.iter().filter_map(|s| s.id.parse::<u64>().ok()).max().unwrap_or(0) + 1;
        let mut extra = vec![0u8; 24];
        put64(&mut extra, 8, self.size);
        put64(&mut extra, 16, u64::MAX); // no icount
        self.snaps.push(Snapshot {
            l1_table_offset: l1_off,
            l1_size: self.l1.len() as u32,
            id: next_id.to_string(),
            name: name.to_string(),
            date_sec: now.as_secs() as u32,
            date_nsec: now.subsec_nanos(),
            vm_clock_nsec,
            vm_state_size: 0,
            extra,
        });
        if let Err(e) = self.write_snapshot_table(f) {
            self.snaps.pop();
            return Err(e);
        }
        self.flush_metadata(f)
    }

    pub(super) fn snapshot_apply(&mut self, f: &ImageFile, id_or_name: &str) -> Result<(), BlockError> {
        let i = self
            .find_snapshot(id_or_name)
            .ok_or_else(|| f.format_err(format!("no snapshot '{id_or_name}'")))?;
        self.flush_metadata(f)?;
        let sn = self.snaps[i].clone();
        if sn.l1_size as usize > self.l1.len() {
            self.grow_l1(f, sn.l1_size as usize)?;
        }
        let sn_l1 = self.read_l1(f, sn.l1_table_offset, sn.l1_size)?;
        // 1. +1 on the snapshot's tree.
        self.tree_refcount(f, &sn_l1, 1)?;
        self.rc.write_dirty_blocks(f)?;
        f.sync()?;
        self.rc.write_dirty_table(f)?;
        f.sync()?;
        // 2. The snapshot's L1 becomes the active L1.
        let n = self.l1.len();
        let old_l1 = std::mem::replace(&mut self.l1, vec![0; n]);
        for (k, e) in sn_l1.iter().enumerate() {
            self.l1[k] = e & !OFLAG_COPIED;
        }
        f.write_at(&table::encode(&self.l1), self.h.l1_table_offset)?;
        if let Some(ds) = sn.disk_size() {
            if ds != self.size {
                f.write_at(&ds.to_be_bytes(), super::header::OFF_SIZE)?;
                self.size = ds;
                self.h.size = ds;
            }
        }
        f.sync()?;
        // 3. -1 on the old active tree, now unreferenced.
        let freed = self.tree_refcount(f, &old_l1, -1)?;
        self.evict_freed(&freed);
        self.rc.write_dirty_blocks(f)?;
        f.sync()?;
        // 4. COPIED flags for the new active tree.
        self.fix_copied_flags(f)?;
        self.write_tables(f)?;
        f.sync()
    }

    pub(super) fn snapshot_delete(&mut self, f: &ImageFile, id_or_name: &str) -> Result<(), BlockError> {
        let i = self
            .find_snapshot(id_or_name)
            .ok_or_else(|| f.format_err(format!("no snapshot '{id_or_name}'")))?;
        self.flush_metadata(f)?;
        let sn = self.snaps.remove(i);
        if let Err(e) = self.write_snapshot_table(f) {
            self.snaps.insert(i, sn);
            return Err(e);
        }
        let sn_l1 = self.read_l1(f, sn.l1_table_offset, sn.l1_size)?;
        let mut freed = self.tree_refcount(f, &sn_l1, -1)?;
        let l1_clusters = (sn.l1_size as u64 * 8).div_ceil(self.cs);
        for c in 0..l1_clusters {
            let h = sn.l1_table_offset + c * self.cs;
            if self.rc.add(f, h >> self.bits, -1)? == 0 {
                freed.push(h);
            }
        }
        self.evict_freed(&freed);
        self.rc.write_dirty_blocks(f)?;
        f.sync()?;
        self.fix_copied_flags(f)?;
        self.write_tables(f)?;
        f.sync()
    }
}
