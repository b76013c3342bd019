//! Linux's own Cirrus drivers on Vessel's CL-GD5446 against QEMU's, on the same guest:
//! Debian's 6.1 kernel with the initramfs `initrd-fb.cpio.gz` (tests/guests/build.sh) loads the
//! DRM driver `cirrus` (mode setting, linear framebuffer, 1024x768x16 through fbdev emulation) or
//! the fbdev driver `cirrusfb` (its own mode programming, and the BitBLT engine for console fills
//! and glyph colour expansion), draws the same coloured, scrolled console on the framebuffer and
//! prints `VESSEL-FB-DONE`. QEMU's screen is dumped through its monitor at that marker; Vessel's
//! run ends when the guest writes isa-debug-exit a few seconds later and `--screenshot` saves the
//! screen. The framebuffer description Linux reports and the screens must be identical.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vessel_tests::screen::{out_dir, qemu_screendump_at, read_png, read_ppm};
use vessel_tests::{guest, vessel_binary};

/// Linux boots through ~6 G instructions on the interpreter; QEMU takes seconds.
const TIMEOUT: Duration = Duration::from_secs(900);

fn args(driver: &str) -> Vec<String> {
    vec![
        "-nographic".into(), "-vga".into(), "cirrus".into(), "-nic".into(), "none".into(), "-m".into(), "128".into(),
        "-kernel".into(), guest("vmlinuz-686"), "-initrd".into(), guest("initrd-fb.cpio.gz"),
        "-append".into(), format!("console=ttyS0 panic=-1 vessel.fb={driver}"),
    ]
}

/// The `VESSEL-FB name=... size=... bpp=... mode=...` line the guest prints.
fn fb_line(serial: &str) -> String {
    serial.lines().find(|l| l.starts_with("VESSEL-FB ")).map(|l| l.trim().to_string()).unwrap_or_default()
}

fn check_driver(driver: &str, expect_name: &str) {
    let a = args(driver);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let dir = out_dir("linux-fb-test");
    let ppm = dir.join(format!("qemu-{driver}.ppm"));
    let png = dir.join(format!("vessel-{driver}.png"));

    let (q_serial, q_time) = qemu_screendump_at(&a, "VESSEL-FB-DONE", Duration::ZERO, &ppm, TIMEOUT);
    println!("qemu-system-i386: VESSEL-FB-DONE at {:.1}s; {}", q_time.as_secs_f64(), fb_line(&q_serial));

    let start = Instant::now();
    let out = Command::new(vessel_binary())
        .arg("run")
        .arg("-no-reboot")
        .args(&a)
        .arg("--timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .arg("--screenshot")
        .arg(&png)
        .stdin(Stdio::null())
        .output()
        .expect("run vessel");
    let v_serial = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("          vessel: run ended after {:.1}s; {}", start.elapsed().as_secs_f64(), fb_line(&v_serial));
    let tail = |s: &str| s.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect::<String>();
    assert!(v_serial.contains("VESSEL-FB-DONE"), "vessel: guest did not finish drawing:\n{}", tail(&v_serial));
    assert_eq!(out.status.code(), Some(3), "vessel should end on the guest's isa-debug-exit write of 1");

    assert!(fb_line(&q_serial).contains(&format!("name={expect_name} ")), "QEMU: {}", fb_line(&q_serial));
    assert!(!v_serial.contains("VESSEL-INSMOD-FAILED"), "a module did not load on Vessel");
    assert_eq!(fb_line(&v_serial), fb_line(&q_serial), "the framebuffer Linux set up");

    let q = read_ppm(&ppm);
    let v = read_png(&png);
    assert_eq!((v.width, v.height), (q.width, q.height), "screen size");
    assert!(q.lit() > 20_000, "QEMU's screen is nearly black ({} lit pixels): the test draws nothing", q.lit());
    let diff = v.diff(&q);
    println!("{driver}: {}x{}, {} lit pixels, {} pixels differ from QEMU's screendump", v.width, v.height, v.lit(), diff.len());
    assert!(diff.is_empty(), "{} pixels differ, first at {:?} (vessel {:?}, qemu {:?}); screens in {}",
        diff.len(), diff[0], v.pixel(diff[0].0, diff[0].1), q.pixel(diff[0].0, diff[0].1), dir.display());
}

#[test]
fn linux_drm_cirrus_console_matches_qemu() {
    check_driver("drm", "cirrusdrmfb");
}

#[test]
fn linux_cirrusfb_console_with_blitter_matches_qemu() {
    check_driver("fbdev", "CL");
}
