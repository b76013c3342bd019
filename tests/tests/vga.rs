//! VGA output against QEMU's: SeaBIOS and SeaVGABIOS (Cirrus) boot to the boot menu prompt on
//! `vessel run --screenshot` and on `qemu-system-i386` (screendump through the monitor); the two
//! text screens, rendered with the font the VGA BIOS loaded, are compared pixel by pixel.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vessel_tests::screen::{out_dir, qemu_screendump_at, read_png, read_ppm};
use vessel_tests::{vessel_binary, SEABIOS};

/// Command line shared by both emulators: Cirrus VGA, serial console, boot menu prompt held for
/// a minute so both screens are taken at the same point.
fn args() -> Vec<&'static str> {
    vec!["-bios", SEABIOS, "-nographic", "-vga", "cirrus", "-nic", "none", "-m", "64", "-boot", "menu=on,splash-time=60000"]
}

const MARKERS: [&str; 2] = ["SeaBIOS (version", "Press ESC for boot menu"];

fn vessel_screenshot(png: &Path) -> (String, Duration) {
    let start = Instant::now();
    let out = Command::new(vessel_binary())
        .arg("run")
        .args(args())
        .args(["-no-reboot", "--realtime", "--timeout", "8", "--screenshot"])
        .arg(png)
        .stdin(Stdio::null())
        .output()
        .expect("run vessel");
    let serial = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(124), "vessel should run until --timeout: {}", String::from_utf8_lossy(&out.stderr));
    (serial, start.elapsed())
}

#[test]
fn seabios_text_screen_matches_qemu() {
    let dir = out_dir("vga-test");
    let png = dir.join("vessel-seabios.png");
    let ppm = dir.join("qemu-seabios.ppm");
    // let SeaBIOS finish the line, then dump the screen
    let (q_serial, q_time) = qemu_screendump_at(&args(), MARKERS[1], Duration::from_millis(1500), &ppm, Duration::from_secs(60));
    let (v_serial, v_time) = vessel_screenshot(&png);
    for m in MARKERS {
        assert!(q_serial.contains(m), "QEMU serial lacks {m:?}");
        assert!(v_serial.contains(m), "vessel serial lacks {m:?}: {v_serial}");
    }
    println!("boot menu prompt on serial: qemu-system-i386 {:.2}s, vessel run (whole run with --realtime) {:.2}s",
        q_time.as_secs_f64(), v_time.as_secs_f64());
    let q = read_ppm(&ppm);
    let v = read_png(&png);
    assert_eq!((v.width, v.height), (q.width, q.height), "screen size");
    assert_eq!((v.width, v.height), (720, 400), "80x25 text with 9x16 cells");
    // the screen shows text: a good share of non-black pixels in the banner row
    let lit = (0..720).flat_map(|x| (0..16).map(move |y| (x, y))).filter(|&(x, y)| v.pixel(x, y) != [0, 0, 0]).count();
    assert!(lit > 500, "banner row has only {lit} lit pixels");
    let diff = v.diff(&q);
    println!("pixels differing from QEMU's screendump: {} of {}", diff.len(), v.width * v.height);
    // The only allowed difference is the blinking cursor (its phase at dump time is arbitrary):
    // everything that differs must lie inside one 9x16 character cell.
    if let (Some(x0), Some(x1), Some(y0), Some(y1)) = (
        diff.iter().map(|d| d.0).min(),
        diff.iter().map(|d| d.0).max(),
        diff.iter().map(|d| d.1).min(),
        diff.iter().map(|d| d.1).max(),
    ) {
        println!("difference bounding box: x {x0}..={x1}, y {y0}..={y1}");
        assert!(x0 / 9 == x1 / 9 && y0 / 16 == y1 / 16, "differences outside the cursor cell: {} pixels", diff.len());
    }
}

/// GRUB from the El Torito CD (tests/guests/out/grub-rescue.iso): its menu on the VGA text screen.
fn grub_args(iso: &str) -> Vec<&str> {
    vec!["-bios", SEABIOS, "-nographic", "-vga", "cirrus", "-nic", "none", "-m", "64", "-cdrom", iso, "-boot", "d"]
}

#[test]
fn grub_menu_screen_from_cdrom_matches_qemu() {
    let iso = vessel_tests::guest("grub-rescue.iso");
    let dir = out_dir("vga-test");
    let png = dir.join("vessel-grub.png");
    let ppm = dir.join("qemu-grub.ppm");
    let marker = "Vessel GRUB test entry";
    let (q_serial, q_time) = qemu_screendump_at(&grub_args(&iso), marker, Duration::from_millis(1500), &ppm, Duration::from_secs(60));
    let start = Instant::now();
    let out = Command::new(vessel_binary())
        .arg("run")
        .args(grub_args(&iso))
        .args(["-no-reboot", "--realtime", "--timeout", "12", "--screenshot"])
        .arg(&png)
        .stdin(Stdio::null())
        .output()
        .expect("run vessel");
    let v_serial = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(124), "vessel should run until --timeout: {}", String::from_utf8_lossy(&out.stderr));
    assert!(q_serial.contains(marker));
    assert!(v_serial.contains(marker), "vessel: GRUB menu not on serial: {v_serial}");
    println!("GRUB menu on serial: qemu-system-i386 {:.2}s; vessel run (whole run with --realtime) {:.2}s",
        q_time.as_secs_f64(), start.elapsed().as_secs_f64());
    let q = read_ppm(&ppm);
    let v = read_png(&png);
    assert_eq!((v.width, v.height), (720, 400), "GRUB's console is 80x25 VGA text");
    assert!(v.lit() > 5_000, "the menu screen is nearly empty ({} lit pixels)", v.lit());
    let diff = v.diff(&q);
    println!("pixels differing from QEMU's screendump: {} of {}", diff.len(), v.width * v.height);
    // GRUB counts down its timeout ("... executed automatically in 27s.") on one text row; the two
    // screens are taken at different seconds, so that row may differ. Nothing else may.
    let rows: std::collections::BTreeSet<u32> = diff.iter().map(|d| d.1 / 16).collect();
    println!("text rows that differ: {rows:?}");
    assert!(rows.len() <= 1, "differences on text rows {rows:?}, not just the countdown");
}
