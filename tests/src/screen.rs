//! Screens of both emulators: Vessel's `--screenshot` PNGs, QEMU's `screendump` PPMs taken through
//! its monitor when the guest prints a marker, and a pixel comparison of the two.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An RGB image.
#[derive(Clone)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Image {
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Coordinates of every pixel that differs from `other` (same size required).
    pub fn diff(&self, other: &Image) -> Vec<(u32, u32)> {
        assert_eq!((self.width, self.height), (other.width, other.height), "screen size");
        let mut d = Vec::new();
        for y in 0..self.height {
            for x in 0..self.width {
                if self.pixel(x, y) != other.pixel(x, y) {
                    d.push((x, y));
                }
            }
        }
        d
    }

    /// How many pixels are not black.
    pub fn lit(&self) -> usize {
        self.rgb.chunks(3).filter(|p| p != &[0, 0, 0]).count()
    }

    /// How many pixels in these rows are not black.
    pub fn lit_in_rows(&self, rows: std::ops::Range<u32>) -> usize {
        rows.flat_map(|y| (0..self.width).map(move |x| (x, y))).filter(|&(x, y)| self.pixel(x, y) != [0, 0, 0]).count()
    }
}

pub fn write_png(path: &Path, img: &Image) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(f, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&img.rgb).unwrap();
}

pub fn read_png(path: &Path) -> Image {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    Image { width: info.width, height: info.height, rgb: buf }
}

/// Binary PPM (P6, maxval 255) as QEMU's `screendump` writes it.
pub fn read_ppm(path: &Path) -> Image {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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

/// A scratch directory for screen files under `target/`.
pub fn out_dir(name: &str) -> PathBuf {
    let d = crate::repo_root().join("target").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `qemu-system-i386` with `args` (its console on stdout) until the output contains
/// `marker`, wait `settle`, then `screendump` into `ppm` and quit. Returns the console output and
/// when the marker appeared.
pub fn qemu_screendump_at(args: &[&str], marker: &str, settle: Duration, ppm: &Path, timeout: Duration) -> (String, Duration) {
    let sock = ppm.with_extension("monitor.sock");
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(ppm);
    let start = Instant::now();
    let mut child = Command::new("qemu-system-i386")
        .args(["-accel", "tcg", "-no-reboot"])
        .args(args)
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
    while !serial.contains(marker) {
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("QEMU did not print {marker:?} within {timeout:?}: {serial}");
        }
        if stdout.read(&mut byte).unwrap() == 0 {
            panic!("QEMU exited before {marker:?}: {serial}");
        }
        serial.push(byte[0] as char);
    }
    let reached = start.elapsed();
    std::thread::sleep(settle);
    let mut mon = UnixStream::connect(&sock).expect("QEMU monitor");
    mon.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    writeln!(mon, "screendump {}", ppm.display()).unwrap();
    let mut r = BufReader::new(mon.try_clone().unwrap());
    // QEMU writes the file before it answers with the next prompt; wait for a stable size.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    loop {
        assert!(Instant::now() < deadline, "QEMU wrote no screendump");
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let len = std::fs::metadata(ppm).map(|m| m.len()).unwrap_or(0);
        if len > 0 && len == last {
            break;
        }
        last = len;
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = writeln!(mon, "quit");
    let _ = child.wait();
    (serial, reached)
}
