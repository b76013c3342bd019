//! VGA output against QEMU's: SeaBIOS and SeaVGABIOS (Cirrus) boot to the boot menu prompt on
//! `vessel run --screenshot` and on `qemu-system-i386` (screendump through the monitor); the two
//! text screens, rendered with the font the VGA BIOS loaded, are compared pixel by pixel.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vessel_tests::{vessel_binary, SEABIOS};

/// An RGB image.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Image {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

fn read_png(path: &Path) -> Image {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    Image { width: info.width, height: info.height, rgb: buf }
}

/// Binary PPM (P6, maxval 255) as QEMU's `screendump` writes it.
fn read_ppm(path: &Path) -> Image {
    let data = std::fs::read(path).unwrap();
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while data[i].is_ascii_whitespace() {
            i += 1;
        }
        let s = i;
        while !data[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&data[s..i]).into_owned());
    }
    assert_eq!(fields[0], "P6");
    assert_eq!(fields[3], "255");
    let (width, height) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let rgb = data[i + 1..].to_vec();
    assert_eq!(rgb.len(), (width * height * 3) as usize);
    Image { width, height, rgb }
}

fn out_dir() -> PathBuf {
    let d = vessel_tests::repo_root().join("target/vga-test");
    std::fs::create_dir_all(&d).unwrap();
    d
}

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

fn qemu_screendump(ppm: &Path) -> (String, Duration) {
    let sock = out_dir().join("qemu-monitor.sock");
    let _ = std::fs::remove_file(&sock);
    let start = Instant::now();
    let mut child = Command::new("qemu-system-i386")
        .args(["-accel", "tcg", "-no-reboot"])
        .args(args())
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-system-i386");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut serial = String::new();
    let mut byte = [0u8; 1];
    while !serial.contains(MARKERS[1]) {
        assert!(start.elapsed() < Duration::from_secs(60), "QEMU did not reach the boot menu: {serial}");
        if stdout.read(&mut byte).unwrap() == 0 {
            panic!("QEMU exited: {serial}");
        }
        serial.push(byte[0] as char);
    }
    let reached = start.elapsed();
    // let SeaBIOS finish the line, then dump the screen
    std::thread::sleep(Duration::from_millis(1500));
    let mut mon = UnixStream::connect(&sock).expect("QEMU monitor");
    mon.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = std::fs::remove_file(ppm);
    writeln!(mon, "screendump {}", ppm.display()).unwrap();
    let mut r = BufReader::new(mon.try_clone().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ppm.exists() || std::fs::metadata(ppm).map(|m| m.len()).unwrap_or(0) < 720 * 400 * 3 {
        assert!(Instant::now() < deadline, "no screendump");
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = writeln!(mon, "quit");
    let _ = child.wait();
    (serial, reached)
}

#[test]
fn seabios_text_screen_matches_qemu() {
    let dir = out_dir();
    let png = dir.join("vessel-seabios.png");
    let ppm = dir.join("qemu-seabios.ppm");
    let (q_serial, q_time) = qemu_screendump(&ppm);
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
    let mut diff = Vec::new();
    for y in 0..v.height {
        for x in 0..v.width {
            if v.pixel(x, y) != q.pixel(x, y) {
                diff.push((x, y));
            }
        }
    }
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
