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
