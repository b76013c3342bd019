//! Image operations behind `vessel img` (create, info, check, convert, commit, rebase, resize,
//! map, snapshot): the logic lives here so that the GTK manager's wizard and the CLI share it;
//! `app/src/img.rs` only parses arguments and prints.
//!
//! Every operation validates all of its arguments (formats, sizes, options, that inputs open)
//! before it creates or changes a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::qcow2::{self, CreateOptions, Qcow2, Status};
use super::{open_image, probe_format, BlockDevice, BlockError, Format};

fn err(path: &Path, msg: impl Into<String>) -> BlockError {
    BlockError::Format { path: path.to_owned(), msg: msg.into() }
}

/// Parses a QEMU-style size: a byte count with an optional k/K, M, G, T, P or E suffix (powers
/// of 1024), decimals allowed with a suffix ("1.5G").
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        'P' => (&s[..s.len() - 1], 1 << 50),
        'E' => (&s[..s.len() - 1], 1 << 60),
        'b' | 'B' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    if mult == 1 || !f.is_finite() || f < 0.0 {
        return None;
    }
    let v = f * mult as f64;
    (v < u64::MAX as f64).then_some(v as u64)
}

/// What `create` makes.
#[derive(Clone, Debug, Default)]
pub struct CreateSpec {
    pub format: String,
    /// `None`: the backing file's size.
    pub size: Option<u64>,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    /// `-o key=value,...` options.
    pub options: Vec<(String, String)>,
}

/// Parses `-o a=b,c=d`.
pub fn parse_options(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => Err(format!("option '{p}' needs a value (key=value)")),
        })
        .collect()
}

/// Creates an image. Like `qemu-img create`, an existing file is replaced, but only once every
/// argument has been checked.
pub fn create(path: &Path, spec: &CreateSpec) -> Result<(), BlockError> {
    let fmt = Format::from_name(&spec.format).ok_or_else(|| err(path, format!("unknown format '{}'", spec.format)))?;
    if !fmt.writable() {
        return Err(err(path, format!("{} images can be read and converted but not created; use qcow2 or raw", fmt.name())));
    }
    let mut backing_file = spec.backing_file.clone();
    let mut backing_format = spec.backing_format.clone();
    let mut o = CreateOptions::default();
    for (k, v) in &spec.options {
        let bad = || err(path, format!("invalid value '{v}' for option '{k}'"));
        match (fmt, k.as_str()) {
            (Format::Qcow2, "cluster_size") => {
                let cs = parse_size(v).filter(|c| c.is_power_of_two() && (512..=2 << 20).contains(c)).ok_or_else(bad)?;
                o.cluster_bits = cs.trailing_zeros();
            }
            (Format::Qcow2, "compat") => {
                o.version = match v.as_str() {
                    "0.10" | "v2" => 2,
                    "1.1" | "v3" => 3,
                    _ => return Err(bad()),
                }
            }
            (Format::Qcow2, "refcount_bits") => {
                o.refcount_bits = v.parse().ok().filter(|b: &u32| b.is_power_of_two() && *b <= 64).ok_or_else(bad)?;
            }
            (Format::Qcow2, "lazy_refcounts") => {
                if v != "off" {
                    return Err(err(path, "lazy_refcounts=on is not supported (refcounts are always kept exact)"));
                }
            }
            (Format::Qcow2, "backing_file") => backing_file = Some(v.clone()),
            (Format::Qcow2, "backing_fmt") => backing_format = Some(v.clone()),
            (_, "preallocation") if v == "off" => {}
            _ => return Err(err(path, format!("option '{k}' is not supported for {} images", fmt.name()))),
        }
    }
    if o.version == 2 && o.refcount_bits != 16 {
        return Err(err(path, "compat=0.10 images support only refcount_bits=16"));
    }
    if backing_file.is_some() && fmt != Format::Qcow2 {
        return Err(err(path, format!("{} images cannot have a backing file", fmt.name())));
    }
    if let Some(bf) = &backing_format {
        if Format::from_name(bf).is_none() && !matches!(bf.as_str(), "vmdk" | "vpc" | "qcow") {
            return Err(err(path, format!("unknown backing format '{bf}'")));
        }
        if backing_file.is_none() {
            return Err(err(path, "a backing format (-F) needs a backing file (-b)"));
        }
    }
    // The backing file must open (relative names are relative to the new image).
    let backing_size = match &backing_file {
        Some(name) => {
            let bpath = qcow2::resolve_backing(path, name)
                .ok_or_else(|| err(path, format!("unsupported backing file name '{name}'")))?;
            let b = open_image(&bpath, backing_format.as_deref(), true)?;
            if backing_format.is_none() {
                backing_format = Some(probe_format(&bpath)?.name().to_string());
            }
            Some(b.size())
        }
        None => None,
    };
    let size = spec
        .size
        .or(backing_size)
        .ok_or_else(|| err(path, "an image size is required (or a backing file to take it from)"))?;
    o.size = size;
    o.backing_file = backing_file;
    o.backing_format = backing_format;
    if fmt == Format::Qcow2 && size % 512 != 0 {
        return Err(err(path, "qcow2 image size must be a multiple of 512 bytes"));
    }
    if path.is_dir() {
        return Err(err(path, "is a directory"));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(err(path, format!("directory {} does not exist", parent.display())));
        }
    }
    match fmt {
        Format::Raw => {
            let f = std::fs::File::create(path).map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
            f.set_len(size).map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
        }
        _ => {
            if path.exists() {
                std::fs::remove_file(path).map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
            }
            Qcow2::create(path, &o)?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    pub filename: String,
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_filename_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format_specific: Option<qcow2::Qcow2Info>,
}

fn format_of(path: &Path, format: Option<&str>) -> Result<Format, BlockError> {
    match format {
        Some(n) => Format::from_name(n).ok_or_else(|| err(path, format!("unknown format '{n}'"))),
        None => probe_format(path),
    }
}

pub fn info(path: &Path, format: Option<&str>) -> Result<ImageInfo, BlockError> {
    let fmt = format_of(path, format)?;
    let meta = std::fs::metadata(path).map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
    let actual_size = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    let mut i = ImageInfo {
        filename: path.display().to_string(),
        format: fmt.name().into(),
        virtual_size: 0,
        actual_size,
        cluster_size: None,
        backing_filename: None,
        backing_filename_format: None,
        format_specific: None,
    };
    if fmt == Format::Qcow2 {
        let q = Qcow2::open_with_backing(path, true, None)?;
        let qi = q.info();
        i.virtual_size = q.size();
        i.cluster_size = Some(qi.cluster_size);
        i.backing_filename = qi.backing_file.clone();
        i.backing_filename_format = qi.backing_format.clone();
        i.format_specific = Some(qi);
    } else {
        i.virtual_size = open_image(path, Some(fmt.name()), true)?.size();
    }
    Ok(i)
}

/// `qemu-img info`-style text.
pub fn info_text(i: &ImageInfo) -> String {
    let mut s = format!(
        "image: {}\nfile format: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\n",
        i.filename,
        i.format,
        human(i.virtual_size),
        i.virtual_size,
        human(i.actual_size)
    );
    if let Some(cs) = i.cluster_size {
        s += &format!("cluster_size: {cs}\n");
    }
    if let Some(b) = &i.backing_filename {
        s += &format!("backing file: {b}\n");
    }
    if let Some(b) = &i.backing_filename_format {
        s += &format!("backing file format: {b}\n");
    }
    if let Some(q) = &i.format_specific {
        if !q.snapshots.is_empty() {
            s += "Snapshot list:\n";
            s += &snapshot_table(&q.snapshots);
        }
        s += &format!(
            "Format specific information:\n    compat: {}\n    compression type: {}\n    lazy refcounts: {}\n    refcount bits: {}\n    corrupt: {}\n",
            if q.version == 2 { "0.10" } else { "1.1" },
            q.compression_type,
            q.lazy_refcounts,
            q.refcount_bits,
            q.corrupt
        );
    }
    s
}

pub fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", units[u]).replace(".000 ", " ")
    }
}

pub fn snapshot_table(snaps: &[qcow2::snapshot::SnapshotInfo]) -> String {
    let mut s = format!("{:<4} {:<20} {:>11} {:>19} {:>15}\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK");
    for sn in snaps {
        let secs = sn.vm_clock_nsec / 1_000_000_000;
        s += &format!(
            "{:<4} {:<20} {:>11} {:>19} {:>02}:{:02}:{:02}.{:03}\n",
            sn.id,
            sn.name,
            human(sn.vm_state_size),
            sn.date_sec,
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            sn.vm_clock_nsec / 1_000_000 % 1000
        );
    }
    s
}

pub fn open_qcow2(path: &Path, format: Option<&str>, read_only: bool, what: &str) -> Result<Qcow2, BlockError> {
    if format_of(path, format)? != Format::Qcow2 {
        return Err(err(path, format!("{what} needs a qcow2 image")));
    }
    Qcow2::open(path, read_only)
}

pub fn check(path: &Path, format: Option<&str>, repair: bool) -> Result<qcow2::check::CheckReport, BlockError> {
    let q = open_qcow2(path, format, !repair, "check")?;
    q.check(repair)
}

pub fn check_text(r: &qcow2::check::CheckReport) -> String {
    let mut s = String::new();
    for m in &r.messages {
        s += m;
        s.push('\n');
    }
    if r.leaks_fixed + r.corruptions_fixed > 0 {
        s += &format!(
            "The following inconsistencies were found and repaired:\n\n    {} leaked clusters\n    {} corruptions\n\n",
            r.leaks_fixed, r.corruptions_fixed
        );
    }
    if r.corruptions == 0 && r.leaks == 0 {
        s += "No errors were found on the image.\n";
    } else {
        if r.corruptions > 0 {
            s += &format!(
                "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n",
                r.corruptions
            );
        }
        if r.leaks > 0 {
            s += &format!(
                "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
                r.leaks
            );
        }
    }
    let pct = |a: u64| if r.total_clusters > 0 { 100.0 * a as f64 / r.total_clusters as f64 } else { 0.0 };
    s += &format!(
        "{}/{} = {:.2}% allocated, {:.2}% compressed clusters\nImage end offset: {}\n",
        r.allocated_clusters,
        r.total_clusters,
        pct(r.allocated_clusters),
        pct(r.compressed_clusters),
        r.image_end_offset
    );
    s
}

/// Copies `input` into a new image `output`, flattening any backing chain. Zero clusters stay
/// unallocated; with `compress`, qcow2 clusters are stored deflated. `progress(done, total)` is
/// called as bytes are processed.
pub fn convert(
    input: &Path,
    in_fmt: Option<&str>,
    output: &Path,
    out_fmt: &str,
    compress: bool,
    options: &[(String, String)],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BlockError> {
    let of = Format::from_name(out_fmt).ok_or_else(|| err(output, format!("unknown output format '{out_fmt}'")))?;
    if compress && of != Format::Qcow2 {
        return Err(err(output, "compression (-c) needs qcow2 output"));
    }
    if input == output || (output.exists() && same_file(input, output)) {
        return Err(err(output, "output is the input image"));
    }
    let src = open_image(input, in_fmt, true)?;
    let size = src.size();
    let spec = CreateSpec {
        format: out_fmt.into(),
        size: Some(if of == Format::Qcow2 { size.div_ceil(512) * 512 } else { size }),
        options: options.to_vec(),
        ..Default::default()
    };
    create(output, &spec)?;
    let dst: Arc<dyn BlockDevice> = open_image(output, Some(out_fmt), false)?;
    let q = if compress { Some(Qcow2::open(output, false)?) } else { None };
    let cs = q.as_ref().map(|q| q.cluster_size()).unwrap_or(64 << 10);
    let chunk = cs.max(1 << 20) / cs * cs;
    let mut buf = vec![0u8; chunk as usize];
    let mut off = 0;
    while off < size {
        let n = chunk.min(size - off) as usize;
        src.read_at(&mut buf[..n], off)?;
        for (i, c) in buf[..n].chunks(cs as usize).enumerate() {
            if c.iter().all(|&b| b == 0) {
                continue;
            }
            let pos = off + i as u64 * cs;
            match &q {
                Some(q) if c.len() as u64 == cs => q.write_compressed(pos / cs, c)?,
                Some(q) => q.write_at(c, pos)?,
                None => dst.write_at(c, pos)?,
            }
        }
        off += n as u64;
        progress(off, size);
    }
    if let Some(q) = &q {
        q.flush()?;
    }
    dst.flush()?;
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The backing file of a qcow2 image as a path, with its format.
fn backing_of(path: &Path, q: &Qcow2) -> Result<Option<(PathBuf, Option<String>)>, BlockError> {
    let i = q.info();
    match i.backing_file {
        None => Ok(None),
        Some(name) => {
            let p = qcow2::resolve_backing(path, &name)
                .ok_or_else(|| err(path, format!("unsupported backing file name '{name}'")))?;
            Ok(Some((p, i.backing_format)))
        }
    }
}

/// Writes every cluster the overlay holds into its backing file, then empties the overlay
/// (unless `keep`).
pub fn commit(path: &Path, format: Option<&str>, keep: bool) -> Result<(), BlockError> {
    let top = open_qcow2(path, format, false, "commit")?;
    let (bpath, bfmt) = backing_of(path, &top)?.ok_or_else(|| err(path, "image has no backing file to commit to"))?;
    if !top.snapshots().is_empty() && !keep {
        return Err(err(path, "cannot empty an image with internal snapshots after commit; use -d"));
    }
    let base = open_image(&bpath, bfmt.as_deref(), false)?;
    if top.size() > base.size() {
        return Err(err(&bpath, format!("backing file is smaller ({}) than the image ({}); resize it first", base.size(), top.size())));
    }
    drop(top);
    let top = Qcow2::open_with_backing(path, false, None)?;
    let cs = top.cluster_size();
    let mut buf = vec![0u8; cs as usize];
    let size = top.size();
    for ci in 0..size.div_ceil(cs) {
        if top.cluster_status(ci)? == Status::Backing {
            continue;
        }
        let off = ci * cs;
        let n = cs.min(size - off) as usize;
        top.read_at(&mut buf[..n], off)?;
        base.write_at(&buf[..n], off)?;
    }
    base.flush()?;
    if !keep {
        top.make_empty()?;
    }
    Ok(())
}

/// Points an overlay at a new backing file. Safe mode (the default) first copies into the
/// overlay every cluster where the old and new backing files differ, so the guest sees the same
/// disk; `unsafe_` only rewrites the name. `new_backing` None removes the backing file.
pub fn rebase(
    path: &Path,
    format: Option<&str>,
    new_backing: Option<&str>,
    new_format: Option<&str>,
    unsafe_: bool,
) -> Result<(), BlockError> {
    let probe = open_qcow2(path, format, true, "rebase")?;
    let old = backing_of(path, &probe)?;
    drop(probe);
    let mut new_format = new_format.map(str::to_string);
    let new_dev = match new_backing {
        Some(name) => {
            let p = qcow2::resolve_backing(path, name).ok_or_else(|| err(path, format!("unsupported backing file name '{name}'")))?;
            let d = open_image(&p, new_format.as_deref(), true)?;
            if new_format.is_none() {
                new_format = Some(probe_format(&p)?.name().into());
            }
            Some(d)
        }
        None => None,
    };
    if !unsafe_ {
        let old_dev = match &old {
            Some((p, f)) => Some(open_image(p, f.as_deref(), true)?),
            None => None,
        };
        let top = Qcow2::open_with_backing(path, false, None)?;
        let cs = top.cluster_size();
        let size = top.size();
        let mut a = vec![0u8; cs as usize];
        let mut b = vec![0u8; cs as usize];
        let read = |d: &Option<Arc<dyn BlockDevice>>, buf: &mut [u8], off: u64| -> Result<(), BlockError> {
            buf.fill(0);
            if let Some(d) = d {
                let n = (d.size().saturating_sub(off) as usize).min(buf.len());
                if n > 0 {
                    d.read_at(&mut buf[..n], off)?;
                }
            }
            Ok(())
        };
        for ci in 0..size.div_ceil(cs) {
            if top.cluster_status(ci)? != Status::Backing {
                continue;
            }
            let off = ci * cs;
            let n = cs.min(size - off) as usize;
            read(&old_dev, &mut a[..n], off)?;
            read(&new_dev, &mut b[..n], off)?;
            if a[..n] != b[..n] {
                top.write_at(&a[..n], off)?;
            }
        }
        top.flush()?;
        top.set_backing(new_backing, new_format.as_deref())?;
    } else {
        let top = Qcow2::open_with_backing(path, false, None)?;
        top.set_backing(new_backing, new_format.as_deref())?;
    }
    Ok(())
}

/// `resize FILE [+-]SIZE`. Shrinking needs `shrink` (as `qemu-img resize --shrink`).
pub fn resize(path: &Path, format: Option<&str>, spec: &str, shrink: bool) -> Result<u64, BlockError> {
    let fmt = format_of(path, format)?;
    let dev = open_image(path, Some(fmt.name()), true)?;
    let cur = dev.size();
    drop(dev);
    let bad = || err(path, format!("invalid size '{spec}'"));
    let new = if let Some(d) = spec.strip_prefix('+') {
        cur.checked_add(parse_size(d).ok_or_else(bad)?).ok_or_else(bad)?
    } else if let Some(d) = spec.strip_prefix('-') {
        cur.checked_sub(parse_size(d).ok_or_else(bad)?).ok_or_else(bad)?
    } else {
        parse_size(spec).ok_or_else(bad)?
    };
    if new < cur && !shrink {
        return Err(err(path, "shrinking loses data; pass --shrink to confirm"));
    }
    match fmt {
        Format::Raw => {
            let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
            f.set_len(new).map_err(|source| BlockError::Io { path: path.to_owned(), source })?;
        }
        _ => Qcow2::open_with_backing(path, false, None)?.resize(new)?,
    }
    Ok(new)
}

/// One run of `map` output (as `qemu-img map --output=json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapEntry {
    pub start: u64,
    pub length: u64,
    pub depth: u32,
    pub present: bool,
    pub zero: bool,
    pub data: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip)]
    pub file: String,
}

/// Where each part of the guest disk comes from, through the whole backing chain.
pub fn map(path: &Path, format: Option<&str>) -> Result<Vec<MapEntry>, BlockError> {
    // The chain, top first: each qcow2 layer without its backing, the last maybe raw.
    enum Layer {
        Q(Qcow2),
        Raw(u64),
        Other(u64),
    }
    let mut layers = Vec::new();
    let mut files = Vec::new();
    let mut cur = Some((path.to_owned(), format.map(str::to_string)));
    while let Some((p, f)) = cur.take() {
        if layers.len() > 64 {
            return Err(err(path, "backing chain is longer than 64 images"));
        }
        let fmt = format_of(&p, f.as_deref())?;
        files.push(p.display().to_string());
        match fmt {
            Format::Qcow2 => {
                let q = Qcow2::open_with_backing(&p, true, None)?;
                cur = backing_of(&p, &q)?;
                layers.push(Layer::Q(q));
            }
            Format::Raw => layers.push(Layer::Raw(std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0))),
            _ => layers.push(Layer::Other(open_image(&p, Some(fmt.name()), true)?.size())),
        }
    }
    let size = match &layers[0] {
        Layer::Q(q) => q.size(),
        Layer::Raw(s) | Layer::Other(s) => *s,
    };
    let cs = match &layers[0] {
        Layer::Q(q) => q.cluster_size(),
        _ => 64 << 10,
    };
    let mut out: Vec<MapEntry> = Vec::new();
    let mut off = 0;
    while off < size {
        let len = cs.min(size - off);
        let mut e = MapEntry { start: off, length: len, depth: 0, present: false, zero: true, data: false, offset: None, file: String::new() };
        for (d, l) in layers.iter().enumerate() {
            e.depth = d as u32;
            match l {
                Layer::Q(q) => {
                    let lcs = q.cluster_size();
                    if off >= q.size() {
                        break;
                    }
                    match q.cluster_status(off / lcs)? {
                        Status::Backing => continue,
                        Status::Zero => {
                            e.present = true;
                        }
                        Status::Data(h) => {
                            (e.present, e.zero, e.data, e.offset) = (true, false, true, Some(h + off % lcs));
                        }
                        Status::Compressed => (e.present, e.zero, e.data) = (true, false, true),
                    }
                    e.file = files[d].clone();
                    break;
                }
                Layer::Raw(s) | Layer::Other(s) => {
                    if off < *s {
                        (e.present, e.zero, e.data) = (true, false, true);
                        if matches!(l, Layer::Raw(_)) {
                            e.offset = Some(off);
                        }
                        e.file = files[d].clone();
                    }
                    break;
                }
            }
        }
        if !e.present {
            e.depth = layers.len() as u32 - 1;
        }
        match out.last_mut() {
            Some(p)
                if p.depth == e.depth
                    && p.present == e.present
                    && p.zero == e.zero
                    && p.data == e.data
                    && p.file == e.file
                    && match (p.offset, e.offset) {
                        (None, None) => true,
                        (Some(a), Some(b)) => a + p.length == b,
                        _ => false,
                    } =>
            {
                p.length += e.length
            }
            _ => out.push(e),
        }
        off += len;
    }
    Ok(out)
}

pub fn map_text(m: &[MapEntry]) -> String {
    let mut s = format!("{:<20}{:<20}{:<20}{}\n", "Offset", "Length", "Mapped to", "File");
    for e in m.iter().filter(|e| e.data) {
        if let Some(o) = e.offset {
            s += &format!("{:<#20x}{:<#20x}{:<#20x}{}\n", e.start, e.length, o, e.file);
        }
    }
    s
}

/// `vessel img bench` results in MiB/s.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub seq_write_mbs: f64,
    pub seq_read_mbs: f64,
    pub rand_write_mbs: f64,
    pub rand_read_mbs: f64,
}

/// The 4 KiB pattern: one request every `BENCH_STEP` bytes, wrapping (the same walk
/// `qemu-img bench -s 4096 -S 1052672` does, so the two can be compared).
pub const BENCH_STEP: u64 = (1 << 20) + 4096;
pub const BENCH_SEQ_BUF: u64 = 64 << 10;

/// Sequential 64 KiB and scattered 4 KiB writes then reads over the first `bytes` of `dev`
/// (writes end with a flush, included in the time).
pub fn bench(dev: &dyn BlockDevice, bytes: u64) -> Result<BenchResult, BlockError> {
    let mbs = |n: u64, t: std::time::Duration| n as f64 / (1 << 20) as f64 / t.as_secs_f64();
    let mut buf = vec![0u8; BENCH_SEQ_BUF as usize];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 7 + 1) as u8;
    }
    let n = bytes / BENCH_SEQ_BUF;
    let t = std::time::Instant::now();
    for i in 0..n {
        dev.write_at(&buf, i * BENCH_SEQ_BUF)?;
    }
    dev.flush()?;
    let seq_write_mbs = mbs(n * BENCH_SEQ_BUF, t.elapsed());
    let t = std::time::Instant::now();
    for i in 0..n {
        dev.read_at(&mut buf, i * BENCH_SEQ_BUF)?;
    }
    let seq_read_mbs = mbs(n * BENCH_SEQ_BUF, t.elapsed());
    let count = bytes / 4096 / 4;
    let walk = |mut f: Box<dyn FnMut(u64) -> Result<(), BlockError> + '_>| -> Result<(), BlockError> {
        let mut off = 0u64;
        for _ in 0..count {
            f(off)?;
            off = (off + BENCH_STEP) % (bytes - 4096);
        }
        Ok(())
    };
    let small = vec![0x5au8; 4096];
    let t = std::time::Instant::now();
    walk(Box::new(|o| dev.write_at(&small, o)))?;
    dev.flush()?;
    let rand_write_mbs = mbs(count * 4096, t.elapsed());
    let mut rbuf = vec![0u8; 4096];
    let t = std::time::Instant::now();
    walk(Box::new(|o| dev.read_at(&mut rbuf, o)))?;
    let rand_read_mbs = mbs(count * 4096, t.elapsed());
    Ok(BenchResult { seq_write_mbs, seq_read_mbs, rand_write_mbs, rand_read_mbs })
}
