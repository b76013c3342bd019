//! Consistency check and repair: recount every reference from the header, L1/L2 tables,
//! snapshots and refcount structures and compare with the stored refcounts, as `qemu-img check`
//! does (a stored count above the references is a leak, below is corruption; COPIED flags that
//! disagree with a count of 1 are corruption).

use crate::block::file::ImageFile;
use crate::block::BlockError;

use super::table::{Cluster, OFFSET_MASK, OFLAG_COPIED};
use super::State;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub corruptions: u64,
    pub leaks: u64,
    pub corruptions_fixed: u64,
    pub leaks_fixed: u64,
    pub allocated_clusters: u64,
    pub total_clusters: u64,
    pub compressed_clusters: u64,
    pub image_end_offset: u64,
    pub messages: Vec<String>,
}

struct Refs {
    counts: Vec<u64>,
    bits: u32,
    file_clusters: u64,
    errors: Vec<String>,
}

impl Refs {
    fn add(&mut self, off: u64, len: u64, what: &str) {
        if len == 0 {
            return;
        }
        let first = off >> self.bits;
        let last = (off + len - 1) >> self.bits;
        for c in first..=last {
            if c >= self.file_clusters + (1 << 20) {
                self.errors.push(format!("{what} at {off:#x} lies far beyond the end of the file"));
                return;
            }
            if c as usize >= self.counts.len() {
                self.counts.resize(c as usize + 1, 0);
            }
            self.counts[c as usize] += 1;
        }
    }
}

impl State {
    fn count_tree(&mut self, f: &ImageFile, r: &mut Refs, l1: &[u64], active: bool, rep: &mut CheckReport) -> Result<(), BlockError> {
        let cs = self.cs;
        for &l1e in l1 {
            let l2off = l1e & OFFSET_MASK;
            if l2off == 0 {
                continue;
            }
            if l2off & (cs - 1) != 0 {
                r.errors.push(format!("L2 table at {l2off:#x} is not cluster aligned"));
                continue;
            }
            r.add(l2off, cs, "L2 table");
            let entries = self.l2.get(f, l2off, self.l2_entries)?.e.clone();
            for e in entries {
                let c = Cluster::from_entry(e, self.bits);
                match c {
                    Cluster::Normal(h) | Cluster::Zero(Some(h)) => {
                        if h & (cs - 1) != 0 {
                            r.errors.push(format!("data cluster at {h:#x} is not cluster aligned"));
                            continue;
                        }
                        r.add(h, cs, "data cluster");
                        if active {
                            rep.allocated_clusters += 1;
                        }
                    }
                    Cluster::Compressed { offset, sectors } => {
                        r.add(offset & !511, sectors * 512, "compressed cluster");
                        if active {
                            rep.allocated_clusters += 1;
                            rep.compressed_clusters += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn count_refs(&mut self, f: &ImageFile, rep: &mut CheckReport) -> Result<Refs, BlockError> {
        let cs = self.cs;
        let file_len = f.len()?;
        let mut r = Refs { counts: Vec::new(), bits: self.bits, file_clusters: file_len.div_ceil(cs), errors: Vec::new() };
        r.add(0, cs, "header");
        r.add(self.h.l1_table_offset, self.l1.len() as u64 * 8, "L1 table");
        let l1 = self.l1.clone();
        self.count_tree(f, &mut r, &l1, true, rep)?;
        if self.h.nb_snapshots > 0 {
            r.add(self.h.snapshots_offset, self.snap_table_len, "snapshot table");
        }
        for s in self.snaps.clone() {
            r.add(s.l1_table_offset, s.l1_size as u64 * 8, "snapshot L1 table");
            let mut raw = vec![0u8; s.l1_size as usize * 8];
            f.read_at(&mut raw, s.l1_table_offset)?;
            let sl1 = super::table::decode(&raw);
            self.count_tree(f, &mut r, &sl1, false, rep)?;
        }
        r.add(self.rc.table_offset, self.rc.table_clusters as u64 * cs, "refcount table");
        for &b in &self.rc.table.clone() {
            if b != 0 {
                r.add(b, cs, "refcount block");
            }
        }
        Ok(r)
    }

    fn check_copied(&mut self, f: &ImageFile, rep: &mut CheckReport) -> Result<(), BlockError> {
        for i in 0..self.l1.len() {
            let l1e = self.l1[i];
            let l2off = l1e & OFFSET_MASK;
            if l2off == 0 {
                continue;
            }
            let rc = self.rc.get(f, l2off >> self.bits)?;
            if (rc == 1) != (l1e & OFLAG_COPIED != 0) {
                rep.corruptions += 1;
                rep.messages.push(format!("ERROR OFLAG_COPIED L2 table at {l2off:#x}: refcount {rc}"));
            }
            let entries = self.l2.get(f, l2off, self.l2_entries)?.e.clone();
            for e in entries {
                if let Cluster::Normal(h) | Cluster::Zero(Some(h)) = Cluster::from_entry(e, self.bits) {
                    let rc = self.rc.get(f, h >> self.bits)?;
                    if (rc == 1) != (e & OFLAG_COPIED != 0) {
                        rep.corruptions += 1;
                        rep.messages.push(format!("ERROR OFLAG_COPIED data cluster at {h:#x}: refcount {rc}"));
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn check(&mut self, f: &ImageFile, repair: bool) -> Result<CheckReport, BlockError> {
        let mut rep = CheckReport { total_clusters: self.size.div_ceil(self.cs), ..Default::default() };
        let r = self.count_refs(f, &mut rep)?;
        rep.corruptions += r.errors.len() as u64;
        rep.messages.extend(r.errors.iter().map(|e| format!("ERROR {e}")));
        let end = (r.counts.len() as u64).max(self.rc.end_cluster).max(r.file_clusters);
        let mut fixes = Vec::new();
        for c in 0..end {
            let stored = self.rc.get(f, c)?;
            let refs = r.counts.get(c as usize).copied().unwrap_or(0);
            if stored == refs {
                continue;
            }
            if stored > refs {
                rep.leaks += 1;
                if refs == 0 {
                    rep.messages.push(format!("Leaked cluster {c} refcount={stored} reference=0"));
                } else {
                    rep.messages.push(format!("ERROR cluster {c} refcount={stored} reference={refs}"));
                }
            } else {
                rep.corruptions += 1;
                rep.messages.push(format!("ERROR cluster {c} refcount={stored} reference={refs}"));
            }
            fixes.push((c, stored, refs));
        }
        self.check_copied(f, &mut rep)?;
        rep.image_end_offset = f.len()?;
        if !repair || (fixes.is_empty() && rep.corruptions == 0) {
            return Ok(rep);
        }
        if !r.errors.is_empty() {
            rep.messages.push("structural errors cannot be repaired; refcounts left alone".into());
            return Ok(rep);
        }
        for &(c, _, refs) in &fixes {
            if !self.rc.has_block_for(c) {
                rep.messages.push(format!("cluster {c} has no refcount block; not repaired"));
                continue;
            }
            self.rc.force_set(f, c, refs)?;
        }
        self.fix_copied_flags(f)?;
        self.flush_metadata(f)?;
        let after = self.check(f, false)?;
        rep.corruptions_fixed = rep.corruptions.saturating_sub(after.corruptions);
        rep.leaks_fixed = rep.leaks.saturating_sub(after.leaks);
        rep.corruptions = after.corruptions;
        rep.leaks = after.leaks;
        rep.messages.extend(after.messages);
        Ok(rep)
    }
}
