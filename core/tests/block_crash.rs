//! Crash consistency: a child process writes to a qcow2 image (random 4 KiB writes, discards,
//! periodic flushes, each acknowledged flush logged) and is killed with SIGKILL at a random
//! moment, many times over the same image. After every kill `qemu-img check` must find no
//! corruption (leaked clusters are allowed), QEMU and Vessel must read the same disk, and every
//! block must hold what it held at the last acknowledged flush or a value written after it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vessel_core::block::qcow2::{CreateOptions, Qcow2};
use vessel_core::block::BlockDevice;

const SIZE: u64 = 32 << 20;
const BLOCK: u64 = 4096;
/// Writes land in the first 8 MiB so that blocks are overwritten often.
const HOT_BLOCKS: u64 = (8 << 20) / BLOCK;
const MAX_OPS: u64 = 400_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Op `i` of a run: (block, fill byte; 0 = discard of that block), flush after every 16th.
fn ops(seed: u64) -> impl Iterator<Item = (u64, u8)> {
    let mut r = Rng(seed | 1);
    (0..MAX_OPS).map(move |_| {
        let b = r.next() % HOT_BLOCKS;
        let v = r.next() as u8;
        let v = if r.next() % 50 == 0 { 0 } else { v | 1 };
        (b, v)
    })
}

/// The child: runs ops until killed.
fn child(img: &Path, log: &Path, seed: u64) {
    let q = Qcow2::open(img, false).unwrap();
    let mut logf = std::fs::OpenOptions::new().append(true).create(true).open(log).unwrap();
    let buf_for = |v: u8| vec![v; BLOCK as usize];
    for (i, (b, v)) in ops(seed).enumerate() {
        if v == 0 {
            // Free the clusters (where the block covers whole ones), then write zeros so the
            // block reads as zeros whatever the cluster size.
            q.discard(b * BLOCK, BLOCK).unwrap();
        }
        q.write_at(&buf_for(v), b * BLOCK).unwrap();
        if i % 16 == 15 {
            q.flush().unwrap();
            writeln!(logf, "{}", i + 1).unwrap();
            logf.sync_data().unwrap();
        }
    }
}

#[test]
fn crash_child() {
    // Entry point of the child process (does nothing in a normal test run).
    if let (Some(img), Some(log), Some(seed)) = (
        std::env::var_os("VESSEL_CRASH_IMG"),
        std::env::var_os("VESSEL_CRASH_LOG"),
        std::env::var("VESSEL_CRASH_SEED").ok(),
    ) {
        child(Path::new(&img), Path::new(&log), seed.parse().unwrap());
    }
}

fn read_all(d: &dyn BlockDevice) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(&mut v, 0).unwrap();
    v
}

#[test]
fn kill9_mid_write_never_corrupts() {
    let dir = std::env::temp_dir().join(format!("vessel-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0xc0ffee);
    let mut total_leaks = 0;
    for (k, &(cluster_bits, version)) in [(16u32, 3u32), (12, 2), (9, 3)].iter().enumerate() {
        let img = dir.join(format!("c{k}.qcow2"));
        Qcow2::create(&img, &CreateOptions { size: SIZE, cluster_bits, version, ..Default::default() }).unwrap();
        for round in 0..6 {
            let before = read_all(&Qcow2::open(&img, true).unwrap());
            let log = dir.join("log");
            let _ = std::fs::remove_file(&log);
            let seed = rng.next();
            let mut c = Command::new(&exe)
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env("VESSEL_CRASH_IMG", &img)
                .env("VESSEL_CRASH_LOG", &log)
                .env("VESSEL_CRASH_SEED", seed.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(30 + rng.next() % 400));
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
            // 1. No corruption according to QEMU (exit 0 = clean, 3 = leaks only).
            let out = Command::new("qemu-img").args(["check", "--output=json"]).arg(&img).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            let code = out.status.code().unwrap_or(-1);
            assert!(code == 0 || code == 3, "cluster_bits {cluster_bits} round {round}: qemu-img check exit {code}:\n{text}");
            assert!(!text.contains("\"corruptions\""), "{text}");
            if let Some(p) = text.find("\"leaks\": ") {
                total_leaks += text[p + 9..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<u64>().unwrap();
            }
            // 2. QEMU and Vessel read the same disk.
            let raw = dir.join("qemu.raw");
            let st = Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(&img).arg(&raw).status().unwrap();
            assert!(st.success());
            let q = std::fs::read(&raw).unwrap();
            let v = read_all(&Qcow2::open(&img, true).unwrap());
            assert!(q == v, "QEMU and Vessel disagree after kill (round {round})");
            // 3. Flushed data survived; later blocks hold a value written after the flush.
            let flushed: u64 = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .last()
                .map(|l| l.parse().unwrap())
                .unwrap_or(0);
            let mut state: Vec<u8> = (0..HOT_BLOCKS).map(|b| before[(b * BLOCK) as usize]).collect();
            let mut later: Vec<Vec<u8>> = vec![Vec::new(); HOT_BLOCKS as usize];
            for (i, (b, val)) in ops(seed).enumerate() {
                if (i as u64) < flushed {
                    state[b as usize] = val;
                } else {
                    later[b as usize].push(val);
                }
            }
            for b in 0..HOT_BLOCKS as usize {
                let blk = &v[b * BLOCK as usize..(b + 1) * BLOCK as usize];
                let ok = (blk.iter().all(|&x| x == state[b]))
                    || later[b].iter().any(|&val| blk.iter().all(|&x| x == val));
                assert!(ok, "block {b} lost flushed data (flushed ops {flushed}, round {round})");
            }
            assert!(v[(HOT_BLOCKS * BLOCK) as usize..].iter().all(|&x| x == 0));
            eprintln!("cluster_bits {cluster_bits} round {round}: {flushed} ops flushed, check exit {code}");
        }
        // Vessel's own check agrees with QEMU's and repairs the leaks.
        let q = Qcow2::open(&img, false).unwrap();
        let r = q.check(true).unwrap();
        assert_eq!(r.corruptions, 0, "{:?}", r.messages);
        assert_eq!(r.leaks, 0);
        drop(q);
        let out = Command::new("qemu-img").arg("check").arg(&img).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    eprintln!("total leaked clusters reported by qemu-img check: {total_leaks}");
    std::fs::remove_dir_all(&dir).unwrap();
}
