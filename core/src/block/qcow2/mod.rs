//! qcow2 images (versions 2 and 3), compatible with QEMU's format (docs/interop/qcow2.txt).
//!
//! - [`header`]: the header and its extensions.
//! - [`refcount`]: refcount table/blocks and cluster allocation.
//! - [`table`]: L1/L2 tables and what an L2 entry means.
//! - [`snapshot`]: internal snapshots.
//! - [`compress`]: compressed clusters.
//! - [`check`]: consistency check and repair (`vessel img check`).
//!
//! Metadata lives in memory (L1, every L2 table and refcount block touched) and reaches the disk
//! at [`BlockDevice::flush`] in an order that keeps the image consistent whatever the moment of a
//! crash (docs/block.md, "Crash consistency"): refcount increments, then the refcount table, then
//! L2 tables, then L1, then the deferred refcount decrements, each step behind an fdatasync.
//! Guest data goes straight to its host cluster when written, so it is on disk before the
//! metadata that points at it.

pub mod check;
pub mod compress;
pub mod header;
pub mod refcount;
pub mod snapshot;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::block::be::*;
use crate::block::file::ImageFile;
use crate::block::{check_range, BlockDevice, BlockError};

use header::*;
use refcount::Refcounts;
use snapshot::{Snapshot, SnapshotInfo};
use table::{Cluster, L2Cache, OFFSET_MASK, OFLAG_COPIED, OFLAG_ZERO};

/// Options for [`Qcow2::create`].
#[derive(Clone, Debug)]
pub struct CreateOptions {
    pub size: u64,
    /// 2 (QEMU `compat=0.10`) or 3 (`compat=1.1`, the default).
    pub version: u32,
    pub cluster_bits: u32,
    /// Refcount width in bits: 1, 2, 4, 8, 16 (default), 32 or 64. Version 2 allows only 16.
    pub refcount_bits: u32,
    /// Stored as given (relative names are relative to the new image's directory).
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions { size: 0, version: 3, cluster_bits: 16, refcount_bits: 16, backing_file: None, backing_format: None }
    }
}

/// Format details for `vessel img info`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Qcow2Info {
    pub version: u32,
    pub cluster_size: u64,
    pub refcount_bits: u32,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    pub lazy_refcounts: bool,
    pub corrupt: bool,
    pub compression_type: &'static str,
    pub snapshots: Vec<SnapshotInfo>,
}

/// What [`Qcow2::cluster_status`] reports for one guest cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not allocated here: comes from the backing file (or reads as zeros without one).
    Backing,
    Zero,
    Data(u64),
    Compressed,
}

pub(crate) struct State {
    h: Header,
    cs: u64,
    bits: u32,
    l2_entries: usize,
    size: u64,
    l1: Vec<u64>,
    l1_dirty: bool,
    l2: L2Cache,
    rc: Refcounts,
    snaps: Vec<Snapshot>,
    snap_table_len: u64,
    /// The last decompressed cluster (L2 entry, data).
    comp_cache: Option<(u64, Vec<u8>)>,
    /// Next free byte in a partly used cluster for compressed data (0 = none).
    comp_cursor: u64,
}

pub struct Qcow2 {
    f: ImageFile,
    backing: Option<Arc<dyn BlockDevice>>,
    read_only: bool,
    st: Mutex<State>,
}

/// The L1 size needed for `size` bytes.
fn l1_entries(size: u64, cluster_bits: u32) -> u64 {
    let per_l2 = 1u64 << (cluster_bits + cluster_bits - 3);
    size.div_ceil(per_l2)
}

impl Qcow2 {
    /// Opens an image and its backing chain (resolved relative to the image's directory).
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<Self, BlockError> {
        let path = path.as_ref();
        let mut q = Self::open_with_backing(path, read_only, None)?;
        let (name, fmt) = {
            let st = q.st.lock().unwrap();
            (st.h.backing_file.clone(), st.h.backing_format.clone())
        };
        if let Some(name) = name {
            let bpath = resolve_backing(path, &name)
                .ok_or_else(|| q.f.format_err(format!("unsupported backing file name '{name}'")))?;
            let b = crate::block::open_image(&bpath, fmt.as_deref(), true)?;
            q.backing = Some(b);
        }
        Ok(q)
    }

    /// Opens an image with the given backing device instead of the one its header names.
    pub fn open_with_backing(
        path: impl AsRef<Path>,
        read_only: bool,
        backing: Option<Arc<dyn BlockDevice>>,
    ) -> Result<Self, BlockError> {
        let f = ImageFile::open(path.as_ref(), read_only)?;
        let mut first = vec![0u8; 104];
        f.read_at(&mut first, 0)?;
        if &first[0..4] != MAGIC {
            return Err(f.format_err("not a qcow2 image"));
        }
        let cluster_bits = be32(&first, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(f.format_err(format!("unsupported cluster size 2^{cluster_bits}")));
        }
        let mut buf = vec![0u8; 1 << cluster_bits];
        f.read_at(&mut buf, 0)?;
        let mut h = Header::parse(&buf).map_err(|m| f.format_err(m))?;
        if h.crypt_method != 0 {
            return Err(f.format_err("encrypted qcow2 images are not supported"));
        }
        let inc = h.incompatible_features;
        if inc & INCOMPAT_DATA_FILE != 0 {
            return Err(f.format_err("qcow2 external data files are not supported"));
        }
        if inc & INCOMPAT_EXTL2 != 0 {
            return Err(f.format_err("qcow2 extended L2 entries (subclusters) are not supported"));
        }
        if inc & INCOMPAT_COMPRESSION != 0 && h.compression_type != 0 {
            return Err(f.format_err("zstd-compressed qcow2 images are not supported (zlib only)"));
        }
        if inc >> 5 != 0 {
            return Err(f.format_err(format!("unknown incompatible features {inc:#x}")));
        }
        if !read_only && inc & INCOMPAT_CORRUPT != 0 {
            return Err(f.format_err("image is marked corrupt; open it read-only or repair it with qemu-img"));
        }
        // Lazy refcounts left stale by an unclean QEMU shutdown: rebuilt below, as QEMU does on
        // a writable open.
        let needs_repair = !read_only && inc & INCOMPAT_DIRTY != 0;
        if !read_only && h.autoclear_features != 0 {
            // Autoclear features we do not maintain (persistent bitmaps) must be dropped before
            // the first write so that QEMU notices the stale data.
            f.write_at(&[0u8; 8], 88)?;
            f.sync()?;
            h.autoclear_features = 0;
        }
        let bits = h.cluster_bits;
        let cs = 1u64 << bits;
        let need = l1_entries(h.size, bits);
        if (h.l1_size as u64) < need {
            return Err(f.format_err(format!("L1 table has {} entries, {need} needed", h.l1_size)));
        }
        if h.l1_size as u64 > (32 << 20) / 8 {
            return Err(f.format_err("L1 table too large"));
        }
        let mut raw = vec![0u8; h.l1_size as usize * 8];
        f.read_at(&mut raw, h.l1_table_offset)?;
        let l1 = table::decode(&raw);
        let rc = Refcounts::load(&f, h.refcount_table_offset, h.refcount_table_clusters, h.refcount_order, bits)?;
        let snaps = snapshot::read_table(&f, h.snapshots_offset, h.nb_snapshots)?;
        let snap_table_len = {
            let mut n = 0u64;
            for s in &snaps {
                n += (40 + s.extra.len() as u64 + s.id.len() as u64 + s.name.len() as u64 + 7) & !7;
            }
            n
        };
        let st = State {
            size: h.size,
            cs,
            bits,
            l2_entries: (cs / 8) as usize,
            h,
            l1,
            l1_dirty: false,
            l2: L2Cache::default(),
            rc,
            snaps,
            snap_table_len,
            comp_cache: None,
            comp_cursor: 0,
        };
        let q = Qcow2 { f, backing, read_only, st: Mutex::new(st) };
        if needs_repair {
            let mut st = q.lock();
            let r = st.check(&q.f, true)?;
            if r.corruptions > 0 {
                return Err(q.f.format_err(format!(
                    "image has the dirty flag set and {} errors remain after repair",
                    r.corruptions
                )));
            }
            st.h.incompatible_features &= !INCOMPAT_DIRTY;
            q.f.write_at(&st.h.incompatible_features.to_be_bytes(), OFF_INCOMPAT)?;
            q.f.sync()?;
            tracing::info!("{}: repaired refcounts after an unclean shutdown", q.f.path().display());
        }
        Ok(q)
    }

    /// Creates a new, empty image. Fails if `path` exists (nothing is touched then).
    pub fn create(path: impl AsRef<Path>, o: &CreateOptions) -> Result<(), BlockError> {
        let path = path.as_ref();
        let err = |m: String| BlockError::Format { path: path.to_owned(), msg: m };
        if o.version != 2 && o.version != 3 {
            return Err(err(format!("qcow2 version must be 2 or 3, not {}", o.version)));
        }
        if !(9..=21).contains(&o.cluster_bits) {
            return Err(err("cluster size must be a power of two between 512 and 2M".into()));
        }
        if !o.refcount_bits.is_power_of_two() || o.refcount_bits > 64 {
            return Err(err(format!("refcount width {} is not a power of two up to 64", o.refcount_bits)));
        }
        if o.version == 2 && o.refcount_bits != 16 {
            return Err(err("qcow2 version 2 (compat=0.10) supports only 16-bit refcounts".into()));
        }
        let order = o.refcount_bits.trailing_zeros();
        let bits = o.cluster_bits;
        let cs = 1u64 << bits;
        let l1_size = l1_entries(o.size, bits);
        if l1_size > (32 << 20) / 8 {
            return Err(err(format!("image size {} is too large for cluster size {cs}", o.size)));
        }
        let l1_clusters = (l1_size * 8).div_ceil(cs);
        let per_block = 1u64 << (bits + 3 - order);
        let (mut rt, mut rb) = (1u64, 1u64);
        loop {
            let total = 1 + rt + rb + l1_clusters;
            let need_rb = total.div_ceil(per_block);
            let need_rt = (need_rb * 8).div_ceil(cs);
            if need_rb <= rb && need_rt <= rt {
                break;
            }
            rb = need_rb.max(rb);
            rt = need_rt.max(rt);
        }
        let total = 1 + rt + rb + l1_clusters;
        let mut h = Header {
            version: o.version,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: bits,
            size: o.size,
            crypt_method: 0,
            l1_size: l1_size as u32,
            l1_table_offset: (1 + rt + rb) * cs,
            refcount_table_offset: cs,
            refcount_table_clusters: rt as u32,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: order,
            header_length: 0,
            compression_type: 0,
            extensions: Vec::new(),
            backing_file: o.backing_file.clone(),
            backing_format: o.backing_format.clone(),
        };
        let hdr = h.serialize().map_err(err)?;
        if path.exists() {
            return Err(err("file exists; remove it first".into()));
        }
        let f = ImageFile::create(path)?;
        let mut img = vec![0u8; (total * cs) as usize];
        img[..hdr.len()].copy_from_slice(&hdr);
        for i in 0..rb {
            put64(&mut img, (cs + i * 8) as usize, (1 + rt + i) * cs);
        }
        // Refcount 1 for every metadata cluster just laid out.
        let rb_start = ((1 + rt) * cs) as usize;
        for c in 0..total {
            let idx = rb_start + ((c / per_block) * cs) as usize;
            let i = (c % per_block) as usize;
            let d = &mut img[idx..idx + cs as usize];
            match order {
                0..=2 => {
                    let b = 1usize << order;
                    let per = 8 / b;
                    d[i / per] |= 1 << (b * (i % per));
                }
                3 => d[i] = 1,
                4 => put16(d, i * 2, 1),
                5 => put32(d, i * 4, 1),
                _ => put64(d, i * 8, 1),
            }
        }
        f.write_at(&img, 0)?;
        f.sync()?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self) -> &Path {
        self.f.path()
    }

    pub fn backing(&self) -> Option<&Arc<dyn BlockDevice>> {
        self.backing.as_ref()
    }

    pub fn cluster_size(&self) -> u64 {
        self.lock().cs
    }

    pub fn info(&self) -> Qcow2Info {
        let st = self.lock();
        Qcow2Info {
            version: st.h.version,
            cluster_size: st.cs,
            refcount_bits: 1 << st.h.refcount_order,
            backing_file: st.h.backing_file.clone(),
            backing_format: st.h.backing_format.clone(),
            lazy_refcounts: st.h.compatible_features & COMPAT_LAZY_REFCOUNTS != 0,
            corrupt: st.h.incompatible_features & INCOMPAT_CORRUPT != 0,
            compression_type: if st.h.compression_type == 0 { "zlib" } else { "zstd" },
            snapshots: st.snaps.iter().map(|s| s.info()).collect(),
        }
    }

    /// Where guest cluster `index` lives.
    pub fn cluster_status(&self, index: u64) -> Result<Status, BlockError> {
        let mut st = self.lock();
        Ok(match st.lookup(&self.f, index)? {
            Cluster::Unallocated => Status::Backing,
            Cluster::Zero(_) => Status::Zero,
            Cluster::Normal(h) => Status::Data(h),
            Cluster::Compressed { .. } => Status::Compressed,
        })
    }

    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.lock().snaps.iter().map(|s| s.info()).collect()
    }

    fn writable(&self) -> Result<(), BlockError> {
        if self.read_only {
            Err(BlockError::ReadOnly { path: self.f.path().to_owned() })
        } else {
            Ok(())
        }
    }

    pub fn snapshot_create(&self, name: &str) -> Result<(), BlockError> {
        self.writable()?;
        self.lock().snapshot_create(&self.f, name, 0)
    }

    /// Rolls the disk back to the snapshot (by id or name).
    pub fn snapshot_apply(&self, id_or_name: &str) -> Result<(), BlockError> {
        self.writable()?;
        self.lock().snapshot_apply(&self.f, id_or_name)
    }

    pub fn snapshot_delete(&self, id_or_name: &str) -> Result<(), BlockError> {
        self.writable()?;
        self.lock().snapshot_delete(&self.f, id_or_name)
    }

    pub fn check(&self, repair: bool) -> Result<check::CheckReport, BlockError> {
        if repair {
            self.writable()?;
        }
        let mut st = self.lock();
        if !self.read_only {
            st.flush_metadata(&self.f)?;
        }
        st.check(&self.f, repair)
    }

    /// Writes one whole guest cluster compressed (for `convert -c`). The cluster must not hold
    /// data yet; data that does not shrink is stored uncompressed.
    pub fn write_compressed(&self, index: u64, data: &[u8]) -> Result<(), BlockError> {
        self.writable()?;
        let mut st = self.lock();
        if data.len() as u64 != st.cs {
            return Err(self.f.format_err("compressed writes must be one whole cluster"));
        }
        let c = compress::deflate_4k(data);
        if c.len() as u64 >= st.cs - 512 {
            drop(st);
            return self.write_at(data, index * data.len() as u64);
        }
        st.write_compressed(&self.f, index, &c)
    }

    /// Drops every cluster of this image so that it reads through to its backing file again
    /// (after `commit`).
    pub fn make_empty(&self) -> Result<(), BlockError> {
        self.writable()?;
        let mut st = self.lock();
        if !st.snaps.is_empty() {
            return Err(self.f.format_err("cannot empty an image that has snapshots"));
        }
        let end = st.size.div_ceil(st.cs) * st.cs;
        st.discard(&self.f, false, 0, end)?;
        st.flush_metadata(&self.f)
    }

    /// Changes the backing file named in the header (no data is copied: `rebase -u`).
    pub fn set_backing(&self, name: Option<&str>, format: Option<&str>) -> Result<(), BlockError> {
        self.writable()?;
        let mut st = self.lock();
        st.flush_metadata(&self.f)?;
        let mut h = st.h.clone();
        h.backing_file = name.map(str::to_string);
        h.backing_format = format.map(str::to_string);
        let raw = h.serialize().map_err(|m| self.f.format_err(m))?;
        let mut buf = vec![0u8; st.cs as usize];
        buf[..raw.len()].copy_from_slice(&raw);
        self.f.write_at(&buf, 0)?;
        self.f.sync()?;
        st.h = h;
        Ok(())
    }

    /// Changes the virtual size. Shrinking drops the data beyond the new end; images with
    /// snapshots can only grow (and version 2 ones not at all, as in QEMU).
    pub fn resize(&self, new_size: u64) -> Result<(), BlockError> {
        self.writable()?;
        let mut st = self.lock();
        st.resize(&self.f, new_size)
    }
}

/// Where the backing file named `name` in the image at `image` lives.
pub fn resolve_backing(image: &Path, name: &str) -> Option<PathBuf> {
    if name.contains("://") || name.starts_with("json:") {
        return None;
    }
    let p = Path::new(name);
    Some(if p.is_absolute() { p.to_owned() } else { image.parent().unwrap_or(Path::new(".")).join(p) })
}

impl State {
    fn lookup(&mut self, f: &ImageFile, ci: u64) -> Result<Cluster, BlockError> {
        let l1i = (ci >> (self.bits - 3)) as usize;
        let l2i = (ci & (self.l2_entries as u64 - 1)) as usize;
        if l1i >= self.l1.len() {
            return Ok(Cluster::Unallocated);
        }
        let l2off = self.l1[l1i] & OFFSET_MASK;
        if l2off == 0 {
            return Ok(Cluster::Unallocated);
        }
        let e = self.l2.get(f, l2off, self.l2_entries)?.e[l2i];
        Ok(Cluster::from_entry(e, self.bits))
    }

    fn read_compressed(&mut self, f: &ImageFile, entry: Cluster) -> Result<&[u8], BlockError> {
        let Cluster::Compressed { offset, sectors } = entry else { unreachable!() };
        let key = offset | sectors << 56;
        if self.comp_cache.as_ref().map(|c| c.0) != Some(key) {
            let len = sectors * 512 - (offset & 511);
            let mut raw = vec![0u8; len as usize];
            f.read_at(&mut raw, offset)?;
            let mut out = vec![0u8; self.cs as usize];
            compress::inflate_exact(&raw, &mut out)
                .map_err(|m| f.format_err(format!("cluster at {offset:#x}: {m}")))?;
            self.comp_cache = Some((key, out));
        }
        Ok(&self.comp_cache.as_ref().unwrap().1)
    }

    fn read(
        &mut self,
        f: &ImageFile,
        backing: Option<&Arc<dyn BlockDevice>>,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<(), BlockError> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let ci = pos >> self.bits;
            let in_off = pos & (self.cs - 1);
            let mut n = ((self.cs - in_off) as usize).min(buf.len() - done);
            let c = self.lookup(f, ci)?;
            match c {
                Cluster::Normal(h) => {
                    // Merge host-contiguous clusters into one read.
                    let mut next = ci + 1;
                    while done + n < buf.len() {
                        if self.lookup(f, next)? != Cluster::Normal(h + (next - ci) * self.cs) {
                            break;
                        }
                        n = (n + self.cs as usize).min(buf.len() - done);
                        next += 1;
                    }
                    f.read_at(&mut buf[done..done + n], h + in_off)?;
                }
                Cluster::Unallocated => {
                    let mut next = ci + 1;
                    while done + n < buf.len() && self.lookup(f, next)? == Cluster::Unallocated {
                        n = (n + self.cs as usize).min(buf.len() - done);
                        next += 1;
                    }
                    read_backing(backing, &mut buf[done..done + n], pos)?;
                }
                Cluster::Zero(_) => buf[done..done + n].fill(0),
                Cluster::Compressed { .. } => {
                    let d = self.read_compressed(f, c)?;
                    buf[done..done + n].copy_from_slice(&d[in_off as usize..in_off as usize + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// The L2 table for L1 index `l1i`, made private to the active L1 (allocated or copied).
    fn l2_for_write(&mut self, f: &ImageFile, l1i: usize) -> Result<u64, BlockError> {
        if l1i >= self.l1.len() {
            return Err(f.format_err("write beyond the L1 table"));
        }
        let e = self.l1[l1i];
        if e & OFLAG_COPIED != 0 {
            return Ok(e & OFFSET_MASK);
        }
        let new = self.rc.alloc(f, 1)?;
        let old = e & OFFSET_MASK;
        let entries =
            if old == 0 { vec![0u64; self.l2_entries] } else { self.l2.get(f, old, self.l2_entries)?.e.clone() };
        self.l2.insert(new, entries);
        if old != 0 {
            self.rc.defer_free(old);
        }
        self.l1[l1i] = new | OFLAG_COPIED;
        self.l1_dirty = true;
        Ok(new)
    }

    /// Writes `data` at `in_off` inside guest cluster `ci`.
    fn write_cluster(
        &mut self,
        f: &ImageFile,
        backing: Option<&Arc<dyn BlockDevice>>,
        ci: u64,
        in_off: u64,
        data: &[u8],
    ) -> Result<(), BlockError> {
        let l1i = (ci >> (self.bits - 3)) as usize;
        let l2i = (ci & (self.l2_entries as u64 - 1)) as usize;
        // Fast path: a cluster we own.
        if l1i < self.l1.len() && self.l1[l1i] & OFLAG_COPIED != 0 {
            let e = self.l2.get(f, self.l1[l1i] & OFFSET_MASK, self.l2_entries)?.e[l2i];
            if e & OFLAG_COPIED != 0 && e & (OFLAG_ZERO | table::OFLAG_COMPRESSED) == 0 {
                return f.write_at(data, (e & OFFSET_MASK) + in_off);
            }
        }
        let l2off = self.l2_for_write(f, l1i)?;
        let e = self.l2.get(f, l2off, self.l2_entries)?.e[l2i];
        let old = Cluster::from_entry(e, self.bits);
        let whole = in_off == 0 && data.len() as u64 == self.cs;
        // Reuse a preallocated zero cluster we own; everything else gets a fresh cluster.
        let (host, fresh) = match old {
            Cluster::Zero(Some(h)) if e & OFLAG_COPIED != 0 => (h, false),
            _ => (self.rc.alloc(f, 1)?, true),
        };
        if whole {
            f.write_at(data, host)?;
        } else {
            let mut buf = vec![0u8; self.cs as usize];
            match old {
                Cluster::Unallocated => read_backing(backing, &mut buf, ci << self.bits)?,
                Cluster::Zero(_) => {}
                Cluster::Normal(h) => f.read_at(&mut buf, h)?,
                Cluster::Compressed { .. } => buf.copy_from_slice(self.read_compressed(f, old)?),
            }
            buf[in_off as usize..in_off as usize + data.len()].copy_from_slice(data);
            f.write_at(&buf, host)?;
        }
        if fresh {
            for h in old.host_clusters(self.bits) {
                self.rc.defer_free(h);
            }
        }
        let t = self.l2.get(f, l2off, self.l2_entries)?;
        t.e[l2i] = host | OFLAG_COPIED;
        t.dirty = true;
        Ok(())
    }

    fn write(
        &mut self,
        f: &ImageFile,
        backing: Option<&Arc<dyn BlockDevice>>,
        buf: &[u8],
        offset: u64,
    ) -> Result<(), BlockError> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let ci = pos >> self.bits;
            let in_off = pos & (self.cs - 1);
            let n = ((self.cs - in_off) as usize).min(buf.len() - done);
            self.write_cluster(f, backing, ci, in_off, &buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn write_compressed(&mut self, f: &ImageFile, ci: u64, c: &[u8]) -> Result<(), BlockError> {
        let l1i = (ci >> (self.bits - 3)) as usize;
        let l2i = (ci & (self.l2_entries as u64 - 1)) as usize;
        let l2off = self.l2_for_write(f, l1i)?;
        let len = c.len() as u64;
        let off = if self.comp_cursor != 0 && (self.comp_cursor & (self.cs - 1)) + len <= self.cs {
            self.rc.add(f, self.comp_cursor >> self.bits, 1)?;
            self.comp_cursor
        } else {
            self.rc.alloc(f, len.div_ceil(self.cs))?
        };
        f.write_at(c, off)?;
        self.comp_cursor = if (off + len) % self.cs == 0 { 0 } else { off + len };
        let t = self.l2.get(f, l2off, self.l2_entries)?;
        let old = Cluster::from_entry(t.e[l2i], self.bits);
        t.e[l2i] = table::compressed_entry(off, len, self.bits);
        t.dirty = true;
        for h in old.host_clusters(self.bits) {
            self.rc.defer_free(h);
        }
        Ok(())
    }

    fn discard(&mut self, f: &ImageFile, has_backing: bool, offset: u64, len: u64) -> Result<(), BlockError> {
        let first = offset.div_ceil(self.cs);
        let end = (offset + len) >> self.bits;
        for ci in first..end {
            let l1i = (ci >> (self.bits - 3)) as usize;
            let l2i = (ci & (self.l2_entries as u64 - 1)) as usize;
            if l1i >= self.l1.len() || self.l1[l1i] & OFFSET_MASK == 0 {
                if has_backing && self.h.version >= 3 {
                    // fall through: the backing file's data must be hidden
                } else {
                    continue;
                }
            }
            let new = if has_backing {
                if self.h.version < 3 {
                    continue; // without zero clusters the old data stays (allowed)
                }
                OFLAG_ZERO
            } else {
                0
            };
            let l2off = self.l2_for_write(f, l1i)?;
            let t = self.l2.get(f, l2off, self.l2_entries)?;
            let old = Cluster::from_entry(t.e[l2i], self.bits);
            if t.e[l2i] == new {
                continue;
            }
            t.e[l2i] = new;
            t.dirty = true;
            for h in old.host_clusters(self.bits) {
                self.rc.defer_free(h);
            }
        }
        Ok(())
    }

    /// Writes dirty L2 tables, then (behind a barrier) a dirty L1.
    fn write_tables(&mut self, f: &ImageFile) -> Result<(), BlockError> {
        self.l2.write_dirty(f)?;
        if self.l1_dirty {
            f.sync()?;
            f.write_at(&table::encode(&self.l1), self.h.l1_table_offset)?;
            self.l1_dirty = false;
        }
        Ok(())
    }

    /// Puts all metadata on disk in crash-safe order (see the module docs).
    pub(crate) fn flush_metadata(&mut self, f: &ImageFile) -> Result<(), BlockError> {
        // 1. New references counted (and guest data written so far) before anything refers to them.
        self.rc.write_dirty_blocks(f)?;
        if self.l2.any_dirty() || self.l1_dirty {
            f.sync()?;
        }
        // 2. Refcount table entries for new refcount blocks.
        if self.rc.write_dirty_table(f)? {
            f.sync()?;
        }
        // 3. L2 tables, then L1.
        self.write_tables(f)?;
        f.sync()?;
        // 4. Dropped references: only now that no table on disk uses them.
        if self.rc.has_pending() {
            let freed = self.rc.apply_pending(f)?;
            if !freed.is_empty() {
                for &h in &freed {
                    self.l2.evict(h);
                }
                self.comp_cache = None;
                self.comp_cursor = 0;
            }
            self.rc.write_dirty_blocks(f)?;
            f.sync()?;
        }
        Ok(())
    }

    /// Replaces the L1 table by one with `entries` entries (synchronously, crash-safe).
    fn grow_l1(&mut self, f: &ImageFile, entries: usize) -> Result<(), BlockError> {
        self.flush_metadata(f)?;
        let mut l1 = self.l1.clone();
        l1.resize(entries, 0);
        let bytes = entries as u64 * 8;
        let off = self.rc.alloc(f, bytes.div_ceil(self.cs))?;
        self.rc.write_dirty_blocks(f)?;
        f.sync()?;
        self.rc.write_dirty_table(f)?;
        let mut raw = table::encode(&l1);
        raw.resize((bytes.div_ceil(self.cs) * self.cs) as usize, 0);
        f.write_at(&raw, off)?;
        f.sync()?;
        let mut hdr = [0u8; 12];
        put32(&mut hdr, 0, entries as u32);
        put64(&mut hdr, 4, off);
        f.write_at(&hdr, OFF_L1)?;
        f.sync()?;
        let old_off = self.h.l1_table_offset;
        let old_clusters = (self.l1.len() as u64 * 8).div_ceil(self.cs);
        self.h.l1_table_offset = off;
        self.h.l1_size = entries as u32;
        self.l1 = l1;
        for c in 0..old_clusters {
            self.rc.add(f, (old_off >> self.bits) + c, -1)?;
        }
        self.rc.write_dirty_blocks(f)?;
        f.sync()
    }

    fn resize(&mut self, f: &ImageFile, new_size: u64) -> Result<(), BlockError> {
        if new_size % 512 != 0 {
            return Err(f.format_err("size must be a multiple of 512 bytes"));
        }
        if !self.snaps.is_empty() && (new_size < self.size || self.h.version < 3) {
            return Err(f.format_err(if self.h.version < 3 {
                "cannot resize a version 2 (compat=0.10) image that has snapshots"
            } else {
                "cannot shrink an image that has snapshots"
            }));
        }
        self.flush_metadata(f)?;
        let need = l1_entries(new_size, self.bits) as usize;
        if new_size < self.size {
            // Drop every cluster past the new end, then the L2 tables that became empty.
            let start = new_size.div_ceil(self.cs) * self.cs;
            let end = self.size.div_ceil(self.cs) * self.cs;
            if end > start {
                self.discard(f, false, start, end - start)?;
            }
            for l1i in need..self.l1.len() {
                let l2off = self.l1[l1i] & OFFSET_MASK;
                if l2off != 0 {
                    self.l1[l1i] = 0;
                    self.l1_dirty = true;
                    self.rc.defer_free(l2off);
                }
            }
            self.flush_metadata(f)?;
        } else if need > self.l1.len() {
            self.grow_l1(f, need)?;
        }
        f.write_at(&new_size.to_be_bytes(), OFF_SIZE)?;
        f.sync()?;
        self.size = new_size;
        self.h.size = new_size;
        Ok(())
    }
}

/// Reads from the backing device; past its end (or without one) the disk reads as zeros.
fn read_backing(backing: Option<&Arc<dyn BlockDevice>>, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
    match backing {
        Some(b) => {
            let bsize = b.size();
            let n = if offset >= bsize { 0 } else { ((bsize - offset) as usize).min(buf.len()) };
            if n > 0 {
                b.read_at(&mut buf[..n], offset)?;
            }
            buf[n..].fill(0);
        }
        None => buf.fill(0),
    }
    Ok(())
}

impl BlockDevice for Qcow2 {
    fn size(&self) -> u64 {
        self.lock().size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        let mut st = self.lock();
        check_range(self.f.path(), offset, buf.len(), st.size)?;
        st.read(&self.f, self.backing.as_ref(), buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        self.writable()?;
        let mut st = self.lock();
        check_range(self.f.path(), offset, buf.len(), st.size)?;
        st.write(&self.f, self.backing.as_ref(), buf, offset)
    }

    fn flush(&self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.lock().flush_metadata(&self.f)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.writable()?;
        let mut st = self.lock();
        check_range(self.f.path(), offset, len as usize, st.size)?;
        st.discard(&self.f, self.backing.is_some(), offset, len)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn as_qcow2(&self) -> Option<&Qcow2> {
        Some(self)
    }
}

impl Drop for Qcow2 {
    fn drop(&mut self) {
        if !self.read_only {
            if let Err(e) = self.lock().flush_metadata(&self.f) {
                tracing::error!("{e}");
            }
        }
    }
}
