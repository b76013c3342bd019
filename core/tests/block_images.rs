//! Disk images against the oracle: `qemu-img`/`qemu-io` create and fill images that Vessel must
//! read back byte for byte, and images Vessel writes must pass `qemu-img check` with no errors
//! and no leaks and match their expected content under `qemu-img compare`.

use std::path::{Path, PathBuf};
use std::process::Command;

use vessel_core::block::qcow2::{CreateOptions, Qcow2};
use vessel_core::block::{open_image, BlockDevice};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vessel-blk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{text}");
    text
}

fn qemu_img(args: &[&str]) -> String {
    run("qemu-img", args)
}

/// `qemu-img check`: must report no errors and no leaks.
fn assert_clean(img: &Path) {
    let out = Command::new("qemu-img").args(["check", "-f", "qcow2"]).arg(img).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("No errors were found"), "qemu-img check {img:?}:\n{text}");
}

/// The whole guest-visible content as QEMU sees it.
fn qemu_content(img: &Path, fmt: &str) -> Vec<u8> {
    let raw = img.with_extension("qemu.raw");
    qemu_img(&["convert", "-f", fmt, "-O", "raw", img.to_str().unwrap(), raw.to_str().unwrap()]);
    let v = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    v
}

fn vessel_content(d: &dyn BlockDevice) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    for (i, chunk) in v.chunks_mut(1 << 20).enumerate() {
        d.read_at(chunk, (i as u64) << 20).unwrap();
    }
    v
}

/// `qemu-img compare` of the image against a raw file holding `expect`.
fn assert_compare(img: &Path, expect: &[u8]) {
    let raw = img.with_extension("expect.raw");
    std::fs::write(&raw, expect).unwrap();
    qemu_img(&["compare", "-f", "raw", "-F", "qcow2", raw.to_str().unwrap(), img.to_str().unwrap()]);
    std::fs::remove_file(&raw).unwrap();
}

fn qemu_io(img: &Path, fmt: &str, cmds: &[String]) {
    let mut args = vec!["-f".to_string(), fmt.to_string()];
    for c in cmds {
        args.push("-c".into());
        args.push(c.clone());
    }
    args.push(img.to_str().unwrap().into());
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    run("qemu-io", &a);
}

/// Random writes through Vessel (unaligned, spanning clusters) against an in-memory model.
fn random_writes(d: &dyn BlockDevice, model: &mut [u8], rng: &mut Rng, n: usize, max_len: u64) {
    for _ in 0..n {
        let len = 1 + rng.below(max_len);
        let off = rng.below(model.len() as u64 - len);
        let byte = rng.next() as u8;
        let buf: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
        d.write_at(&buf, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&buf);
        if rng.below(8) == 0 {
            let mut r = vec![0u8; len as usize];
            d.read_at(&mut r, off).unwrap();
            assert_eq!(r, buf);
        }
    }
}

#[test]
fn vessel_written_images_pass_qemu_check() {
    let dir = tmpdir("written");
    let cases: &[(u32, u32, u32)] = &[
        // (version, cluster_bits, refcount_bits)
        (3, 16, 16),
        (2, 16, 16),
        (3, 9, 16),
        (3, 12, 1),
        (3, 12, 8),
        (3, 9, 64),
        (3, 21, 16),
        (2, 12, 16),
    ];
    for (k, &(version, cluster_bits, refcount_bits)) in cases.iter().enumerate() {
        let img = dir.join(format!("w{k}.qcow2"));
        let size = 24u64 << 20;
        let o = CreateOptions { size, version, cluster_bits, refcount_bits, ..Default::default() };
        Qcow2::create(&img, &o).unwrap();
        assert_clean(&img);
        let mut model = vec![0u8; size as usize];
        let mut rng = Rng(0x9e37_79b9 + k as u64);
        {
            let q = Qcow2::open(&img, false).unwrap();
            random_writes(&q, &mut model, &mut rng, 300, 200_000);
            q.flush().unwrap();
            assert_eq!(vessel_content(&q), model, "case {k}");
        }
        assert_clean(&img);
        assert_compare(&img, &model);
        let info = qemu_img(&["info", img.to_str().unwrap()]);
        assert!(info.contains(&format!("cluster_size: {}", 1 << cluster_bits)), "{info}");
        let compat = if version == 2 { "compat: 0.10" } else { "compat: 1.1" };
        assert!(info.contains(compat), "{info}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn qemu_created_images_read_back() {
    let dir = tmpdir("created");
    let opts = [
        "compat=1.1",
        "compat=0.10",
        "cluster_size=512",
        "cluster_size=4096,refcount_bits=1",
        "cluster_size=2M",
        "refcount_bits=64",
        "lazy_refcounts=off,preallocation=metadata",
        "preallocation=falloc",
        "cluster_size=16384,refcount_bits=8",
        "lazy_refcounts=on",
    ];
    for (k, o) in opts.iter().enumerate() {
        let img = dir.join(format!("q{k}.qcow2"));
        qemu_img(&["create", "-q", "-f", "qcow2", "-o", o, img.to_str().unwrap(), "9M"]);
        let mut rng = Rng(77 + k as u64);
        let mut cmds = Vec::new();
        for _ in 0..40 {
            let len = 512 * (1 + rng.below(300));
            let off = 512 * rng.below((9 << 20) / 512 - len / 512);
            cmds.push(format!("write -P {} {off} {len}", rng.below(255) + 1));
        }
        if !o.contains("0.10") {
            cmds.push("write -z 65536 131072".into());
        }
        cmds.push("discard 1048576 65536".into());
        qemu_io(&img, "qcow2", &cmds);
        let expect = qemu_content(&img, "qcow2");
        let d = open_image(&img, None, true).unwrap();
        assert_eq!(vessel_content(&*d), expect, "options {o}");
        // And writable: write through Vessel, then QEMU must agree and find it clean.
        let mut model = expect.clone();
        {
            let q = Qcow2::open(&img, false).unwrap();
            random_writes(&q, &mut model, &mut rng, 50, 100_000);
        }
        assert_clean(&img);
        assert_compare(&img, &model);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn qemu_backing_chain_snapshots_and_compression_read_back() {
    let dir = tmpdir("chain");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    // base (raw) <- mid (qcow2 v2) <- top (qcow2 v3), each with its own writes.
    qemu_img(&["create", "-q", "-f", "raw", &p("base.raw"), "8M"]);
    qemu_io(&dir.join("base.raw"), "raw", &["write -P 0x11 0 8M".into()]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw", &p("mid.qcow2")]);
    qemu_io(&dir.join("mid.qcow2"), "qcow2", &["write -P 0x22 1M 2M".into(), "write -P 0x23 5000 3000".into()]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", &p("top.qcow2"), "10M"]);
    qemu_io(&dir.join("top.qcow2"), "qcow2", &["write -P 0x33 2M 64k".into(), "write -z 6M 512k".into()]);
    let top = dir.join("top.qcow2");
    // Internal snapshot, then more writes after it.
    qemu_img(&["snapshot", "-c", "first", &p("top.qcow2")]);
    let at_first = qemu_content(&top, "qcow2");
    qemu_io(&top, "qcow2", &["write -P 0x44 1536k 1M".into(), "write -P 0x45 9M 100k".into()]);
    qemu_img(&["snapshot", "-c", "second", &p("top.qcow2")]);
    qemu_io(&top, "qcow2", &["write -P 0x46 0 4k".into()]);
    let now = qemu_content(&top, "qcow2");
    let d = open_image(&top, None, true).unwrap();
    assert_eq!(d.size(), 10 << 20);
    assert_eq!(vessel_content(&*d), now);
    drop(d);
    // Compressed copy made by QEMU.
    qemu_img(&["convert", "-q", "-c", "-O", "qcow2", &p("top.qcow2"), &p("comp.qcow2")]);
    let d = open_image(&dir.join("comp.qcow2"), Some("qcow2"), true).unwrap();
    assert_eq!(vessel_content(&*d), now);
    drop(d);
    // Vessel lists QEMU's snapshots and rolls back to the first one as QEMU would.
    std::fs::copy(&top, dir.join("qtop.qcow2")).unwrap();
    qemu_img(&["snapshot", "-a", "first", &p("qtop.qcow2")]);
    assert_eq!(qemu_content(&dir.join("qtop.qcow2"), "qcow2"), at_first);
    {
        let q = Qcow2::open(&top, false).unwrap();
        let names: Vec<String> = q.snapshots().iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["first", "second"]);
        q.snapshot_apply("first").unwrap();
        assert_eq!(vessel_content(&q), at_first);
    }
    assert_clean(&top);
    assert_compare(&top, &at_first);
    // Deleting QEMU's snapshots through Vessel leaves a clean image that QEMU agrees on.
    {
        let q = Qcow2::open(&top, false).unwrap();
        q.snapshot_delete("second").unwrap();
        q.snapshot_delete("1").unwrap();
        assert!(q.snapshots().is_empty());
    }
    assert_clean(&top);
    assert_compare(&top, &at_first);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vessel_snapshots_and_compression_agree_with_qemu() {
    let dir = tmpdir("vsnap");
    let img = dir.join("s.qcow2");
    let size = 6u64 << 20;
    Qcow2::create(&img, &CreateOptions { size, cluster_bits: 12, ..Default::default() }).unwrap();
    let mut rng = Rng(4242);
    let mut model = vec![0u8; size as usize];
    let mut saved = Vec::new();
    {
        let q = Qcow2::open(&img, false).unwrap();
        for s in 0..3 {
            random_writes(&q, &mut model, &mut rng, 60, 50_000);
            q.snapshot_create(&format!("snap{s}")).unwrap();
            saved.push(model.clone());
        }
        random_writes(&q, &mut model, &mut rng, 60, 50_000);
        q.discard(1 << 20, 1 << 20).unwrap();
        model[1 << 20..2 << 20].fill(0);
        q.flush().unwrap();
    }
    assert_clean(&img);
    assert_compare(&img, &model);
    let list = qemu_img(&["snapshot", "-l", img.to_str().unwrap()]);
    for s in 0..3 {
        assert!(list.contains(&format!("snap{s}")), "{list}");
    }
    // QEMU rolls a copy back to snap1; Vessel must see exactly what we saved then.
    let copy = dir.join("c.qcow2");
    std::fs::copy(&img, &copy).unwrap();
    qemu_img(&["snapshot", "-a", "snap1", copy.to_str().unwrap()]);
    assert_eq!(qemu_content(&copy, "qcow2"), saved[1]);
    {
        let q = Qcow2::open(&img, false).unwrap();
        q.snapshot_apply("snap1").unwrap();
        assert_eq!(vessel_content(&q), saved[1]);
        q.snapshot_delete("snap0").unwrap();
        random_writes(&q, &mut saved[1], &mut rng, 40, 50_000);
    }
    assert_clean(&img);
    assert_compare(&img, &saved[1]);
    // Compressed clusters written by Vessel read back by QEMU.
    let cimg = dir.join("comp.qcow2");
    Qcow2::create(&cimg, &CreateOptions { size, ..Default::default() }).unwrap();
    {
        let q = Qcow2::open(&cimg, false).unwrap();
        let cs = q.cluster_size() as usize;
        for (i, chunk) in saved[1].chunks(cs).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                q.write_compressed(i as u64, chunk).unwrap();
            }
        }
        q.flush().unwrap();
        assert_eq!(vessel_content(&q), saved[1]);
    }
    assert_clean(&cimg);
    assert_compare(&cimg, &saved[1]);
    // Really stored compressed: far smaller than the data and reported so.
    let q = Qcow2::open(&cimg, true).unwrap();
    assert_eq!(q.cluster_status(0).unwrap(), vessel_core::block::qcow2::Status::Compressed);
    let used = saved[1].chunks(65536).filter(|c| c.iter().any(|&b| b != 0)).count() as u64 * 65536;
    assert!(std::fs::metadata(&cimg).unwrap().len() < used / 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Random operations (writes, reads, flushes, snapshot create/apply/delete, reopen, overlays)
/// against an in-memory model of every layer.
#[test]
fn random_operations_match_model() {
    let dir = tmpdir("prop");
    for seed in 1..=6u64 {
        let mut rng = Rng(seed * 0x1234_5678_9abc);
        let size = (2 + rng.below(6)) << 20;
        let cluster_bits = [9, 12, 16][rng.below(3) as usize];
        let version = 2 + rng.below(2) as u32;
        let base = dir.join(format!("b{seed}.qcow2"));
        Qcow2::create(&base, &CreateOptions { size, cluster_bits, version, ..Default::default() }).unwrap();
        let mut model = vec![0u8; size as usize];
        let mut snaps: Vec<(String, Vec<u8>)> = Vec::new();
        let mut q = Qcow2::open(&base, false).unwrap();
        for step in 0..250 {
            match rng.below(20) {
                0..=11 => random_writes(&q, &mut model, &mut rng, 1, 3 << cluster_bits),
                12 | 13 => {
                    let len = 1 + rng.below(200_000.min(size - 1));
                    let off = rng.below(size - len);
                    let mut b = vec![0u8; len as usize];
                    q.read_at(&mut b, off).unwrap();
                    assert_eq!(b, model[off as usize..(off + len) as usize], "seed {seed} step {step}");
                }
                14 => q.flush().unwrap(),
                15 if snaps.len() < 4 => {
                    let name = format!("s{step}");
                    q.snapshot_create(&name).unwrap();
                    snaps.push((name, model.clone()));
                }
                16 if !snaps.is_empty() => {
                    let (name, m) = &snaps[rng.below(snaps.len() as u64) as usize];
                    q.snapshot_apply(name).unwrap();
                    model = m.clone();
                }
                17 if !snaps.is_empty() => {
                    let (name, _) = snaps.remove(rng.below(snaps.len() as u64) as usize);
                    q.snapshot_delete(&name).unwrap();
                }
                18 => {
                    drop(q);
                    q = Qcow2::open(&base, false).unwrap();
                }
                _ => {
                    let len = 1 + rng.below(1 << 18);
                    let off = rng.below(size - len);
                    q.discard(off, len).unwrap();
                    // Discard without backing: whole clusters read as zeros afterwards.
                    let cs = 1u64 << cluster_bits;
                    let (a, b) = (off.div_ceil(cs) * cs, (off + len) / cs * cs);
                    if b > a {
                        model[a as usize..b as usize].fill(0);
                    }
                }
            }
        }
        assert_eq!(vessel_content(&q), model, "seed {seed}");
        drop(q);
        assert_clean(&base);
        assert_compare(&base, &model);
        for (name, m) in &snaps {
            let copy = dir.join("copy.qcow2");
            std::fs::copy(&base, &copy).unwrap();
            qemu_img(&["snapshot", "-a", name, copy.to_str().unwrap()]);
            assert_eq!(&qemu_content(&copy, "qcow2"), m, "seed {seed} snapshot {name}");
        }
        // Two overlay layers on top, each with its own writes; the layers below stay intact.
        let mid = dir.join(format!("m{seed}.qcow2"));
        let top = dir.join(format!("t{seed}.qcow2"));
        let below = model.clone();
        for (layer, bname) in [(&mid, "b"), (&top, "m")] {
            let backing = format!("{bname}{seed}.qcow2");
            let o = CreateOptions {
                size,
                cluster_bits: [9, 12, 16][rng.below(3) as usize],
                backing_file: Some(backing),
                backing_format: Some("qcow2".into()),
                ..Default::default()
            };
            Qcow2::create(layer, &o).unwrap();
            let q = Qcow2::open(layer, false).unwrap();
            assert_eq!(vessel_content(&q), model);
            random_writes(&q, &mut model, &mut rng, 80, 3 << cluster_bits);
            let len = 1 + rng.below(1 << 18);
            let off = rng.below(size - len);
            q.discard(off, len).unwrap();
            let cs = q.cluster_size();
            let (a, b) = (off.div_ceil(cs) * cs, (off + len) / cs * cs);
            if b > a && q.info().version == 3 {
                model[a as usize..b as usize].fill(0);
            }
            let mut buf = vec![0u8; size as usize];
            q.read_at(&mut buf, 0).unwrap();
            assert_eq!(buf, model, "seed {seed} overlay");
        }
        assert_clean(&mid);
        assert_clean(&top);
        assert_eq!(qemu_content(&top, "qcow2"), model);
        assert_eq!(qemu_content(&base, "qcow2"), below);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Read-only imports: images QEMU writes in vmdk (monolithicSparse, streamOptimized), vpc
/// (dynamic, fixed) and qcow v1 read back with QEMU's content, and convert to a clean qcow2.
#[test]
fn imported_formats_read_like_qemu() {
    let dir = tmpdir("import");
    let src = dir.join("src.raw");
    qemu_img(&["create", "-q", "-f", "raw", src.to_str().unwrap(), "20M"]);
    let mut rng = Rng(99);
    let mut cmds = Vec::new();
    for _ in 0..30 {
        let len = 512 * (1 + rng.below(400));
        let off = 512 * rng.below((20 << 20) / 512 - len / 512);
        cmds.push(format!("write -P {} {off} {len}", 1 + rng.below(254)));
    }
    qemu_io(&src, "raw", &cmds);
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        ("vmdk", &["-o", "subformat=monolithicSparse"], None),
        ("vmdk", &["-o", "subformat=streamOptimized"], None),
        ("vpc", &["-o", "subformat=dynamic"], None),
        ("vpc", &["-o", "subformat=fixed"], Some("vpc")),
        ("vpc", &["-o", "subformat=dynamic,force_size=on"], None),
        ("qcow", &[], None),
    ];
    for (k, (fmt, opts, open_fmt)) in cases.iter().enumerate() {
        let img = dir.join(format!("i{k}.{fmt}"));
        let mut args = vec!["convert", "-q", "-O", fmt];
        args.extend_from_slice(opts);
        args.push(src.to_str().unwrap());
        args.push(img.to_str().unwrap());
        qemu_img(&args);
        let expect = qemu_content(&img, fmt);
        let d = open_image(&img, *open_fmt, true).unwrap();
        assert_eq!(d.size() as usize, expect.len(), "{fmt} {opts:?}: size");
        assert!(vessel_content(&*d) == expect, "{fmt} {opts:?}: content differs from QEMU's");
        assert!(open_image(&img, *open_fmt, false).is_err(), "{fmt} must be read-only");
        let out = dir.join(format!("i{k}.qcow2"));
        vessel_core::block::ops::convert(&img, Some(fmt), &out, "qcow2", false, &[], &mut |_, _| {}).unwrap();
        assert_clean(&out);
        assert_compare(&out, &expect);
    }
    // A qcow v1 overlay on a raw base, as `qemu-img create -f qcow -b` makes it.
    let ov = dir.join("ov.qcow");
    qemu_img(&["create", "-q", "-f", "qcow", "-b", "src.raw", "-F", "raw", ov.to_str().unwrap()]);
    qemu_io(&ov, "qcow", &["write -P 0x77 3M 70k".into()]);
    let d = open_image(&ov, None, true).unwrap();
    assert!(vessel_content(&*d) == qemu_content(&ov, "qcow"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// QEMU with lazy refcounts crashing mid-way (qemu-io `abort`) leaves the dirty bit and stale
/// refcounts; Vessel repairs them on a writable open, as QEMU would, without losing data.
#[test]
fn dirty_lazy_refcount_image_is_repaired_on_open() {
    let dir = tmpdir("dirty");
    let img = dir.join("d.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4096", img.to_str().unwrap(), "4M"]);
    let st = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5c 0 1M", "-c", "write -P 0x5d 2M 300k", "-c", "abort"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(!st.status.success(), "qemu-io abort should kill qemu-io");
    let bad = Command::new("qemu-img").args(["check", "-f", "qcow2"]).arg(&img).output().unwrap();
    assert!(!bad.status.success(), "the crashed image should not check clean");
    let expect = qemu_content(&img, "qcow2");
    assert!(expect[..1 << 20].iter().all(|&b| b == 0x5c));
    {
        let q = Qcow2::open(&img, false).unwrap();
        assert_eq!(vessel_content(&q), expect);
    }
    assert_clean(&img);
    assert_compare(&img, &expect);
    std::fs::remove_dir_all(&dir).unwrap();
}
