//! `vessel img` end to end: each verb against `qemu-img` as the oracle, and invalid arguments
//! that must leave the disk untouched.

use std::path::Path;
use std::process::Command;

fn vessel(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vessel"))
        .arg("img")
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (s, o) = vessel(dir, args);
    assert!(s, "vessel img {args:?}:\n{o}");
    o
}

fn qemu(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).current_dir(dir).output().unwrap();
    let o = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd} {args:?}:\n{o}");
    o
}

fn clean(dir: &Path, f: &str) {
    let o = qemu(dir, "qemu-img", &["check", f]);
    assert!(o.contains("No errors were found"), "{f}: {o}");
}

#[test]
fn img_verbs_agree_with_qemu_img() {
    let dir = std::env::temp_dir().join(format!("vessel-imgcli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.as_path();
    // create: base, overlay on it, 3 layers.
    ok(d, &["create", "-f", "qcow2", "base.qcow2", "32M"]);
    qemu(d, "qemu-io", &["-c", "write -P 0x61 0 4M", "base.qcow2"]);
    ok(d, &["create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2"]);
    qemu(d, "qemu-io", &["-c", "write -P 0x62 1M 1M", "mid.qcow2"]);
    ok(d, &["create", "-f", "qcow2", "-o", "cluster_size=4096,compat=0.10", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2"]);
    qemu(d, "qemu-io", &["-c", "write -P 0x63 1536k 8k", "top.qcow2"]);
    for f in ["base.qcow2", "mid.qcow2", "top.qcow2"] {
        clean(d, f);
    }
    let qi = qemu(d, "qemu-img", &["info", "--output=json", "top.qcow2"]);
    assert!(qi.contains("\"backing-filename\": \"mid.qcow2\"") && qi.contains("\"cluster-size\": 4096"), "{qi}");
    // info: JSON with the same facts as qemu-img's.
    let vi = ok(d, &["info", "--output", "json", "top.qcow2"]);
    assert!(vi.contains("\"virtual-size\": 33554432") && vi.contains("\"backing-filename\": \"mid.qcow2\""), "{vi}");
    // map: identical to qemu-img map --output=json, apart from whitespace.
    let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let vm = ok(d, &["map", "--output", "json", "top.qcow2"]);
    let qm = qemu(d, "qemu-img", &["map", "--output=json", "top.qcow2"]);
    assert_eq!(strip(&vm), strip(&qm));
    // convert (flattening, compressed and plain) and compare.
    ok(d, &["convert", "-c", "-O", "qcow2", "top.qcow2", "flat.qcow2"]);
    ok(d, &["convert", "-f", "qcow2", "-O", "raw", "top.qcow2", "flat.raw"]);
    clean(d, "flat.qcow2");
    qemu(d, "qemu-img", &["compare", "top.qcow2", "flat.qcow2"]);
    qemu(d, "qemu-img", &["compare", "-F", "raw", "top.qcow2", "flat.raw"]);
    // snapshot create/list/apply/delete.
    ok(d, &["snapshot", "-c", "before", "top.qcow2"]);
    qemu(d, "qemu-io", &["-c", "write -P 0x64 0 64k", "top.qcow2"]);
    assert!(qemu(d, "qemu-img", &["snapshot", "-l", "top.qcow2"]).contains("before"));
    assert!(ok(d, &["snapshot", "-l", "top.qcow2"]).contains("before"));
    ok(d, &["snapshot", "-a", "before", "top.qcow2"]);
    qemu(d, "qemu-img", &["compare", "top.qcow2", "flat.raw"]);
    ok(d, &["snapshot", "-d", "before", "top.qcow2"]);
    clean(d, "top.qcow2");
    // rebase (safe) onto base directly: same content, mid no longer needed.
    ok(d, &["rebase", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"]);
    qemu(d, "qemu-img", &["compare", "top.qcow2", "flat.raw"]);
    assert!(qemu(d, "qemu-img", &["info", "top.qcow2"]).contains("backing file: base.qcow2"));
    clean(d, "top.qcow2");
    // commit into base: base then holds the whole disk.
    ok(d, &["commit", "top.qcow2"]);
    qemu(d, "qemu-img", &["compare", "base.qcow2", "flat.raw"]);
    clean(d, "base.qcow2");
    clean(d, "top.qcow2");
    // resize.
    ok(d, &["resize", "base.qcow2", "+16M"]);
    assert!(qemu(d, "qemu-img", &["info", "base.qcow2"]).contains("48 MiB"));
    clean(d, "base.qcow2");
    // check: vessel's verdict matches qemu-img's on a clean image.
    assert!(ok(d, &["check", "base.qcow2"]).contains("No errors were found"));

    // Invalid arguments: an error naming the file and nothing on disk changes.
    let before: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    for (args, needle) in [
        (&["create", "-f", "qcow2", "-o", "cluster_size=3000", "new.qcow2", "1G"][..], "new.qcow2"),
        (&["create", "-f", "qcow2", "base.qcow2", "12Q"][..], "base.qcow2"),
        (&["create", "-f", "qcow2", "-b", "missing.img", "new.qcow2"][..], "missing.img"),
        (&["create", "-f", "qcow2", "-o", "compat=0.10,refcount_bits=8", "base.qcow2", "1M"][..], "base.qcow2"),
        (&["create", "-f", "nosuchfmt", "base.qcow2", "1M"][..], "base.qcow2"),
        (&["resize", "base.qcow2", "1M"][..], "base.qcow2"),
        (&["resize", "base.qcow2", "+1Q"][..], "base.qcow2"),
        (&["convert", "-O", "qcow2", "missing.img", "out.qcow2"][..], "missing.img"),
        (&["convert", "-c", "-O", "raw", "base.qcow2", "out.raw"][..], "out.raw"),
        (&["snapshot", "-a", "nosuch", "base.qcow2"][..], "base.qcow2"),
        (&["snapshot", "-c", "x", "flat.raw"][..], "flat.raw"),
        (&["commit", "base.qcow2"][..], "base.qcow2"),
        (&["rebase", "-b", "missing.img", "top.qcow2"][..], "missing.img"),
    ] {
        let (s, o) = vessel(d, args);
        assert!(!s, "{args:?} should fail");
        assert!(o.contains(needle), "{args:?}: error does not name {needle}:\n{o}");
    }
    let after: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    assert!(before == after, "a failed command changed files");
    std::fs::remove_dir_all(&dir).unwrap();
}
