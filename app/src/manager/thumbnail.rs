//! The last screen of a VM: `<vm_dir>/screen.ppm` (or `.png`), written by the VM's `screendump`
//! while it runs and kept after it stops, shown as the thumbnail in the library.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// 8-bit RGB pixels, rows top to bottom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Read a binary PPM (P6, maxval 255: what QEMU's and Vessel's `screendump` write) or a PNG.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if data.starts_with(b"\x89PNG") {
        return read_png(&data).with_context(|| format!("{}: bad PNG", path.display()));
    }
    parse_ppm(&data).with_context(|| format!("{}: bad PPM", path.display()))
}

pub fn parse_ppm(data: &[u8]) -> Result<RgbImage> {
    if !data.starts_with(b"P6") {
        bail!("not a binary PPM (P6)");
    }
    // three header numbers after the magic, separated by whitespace, '#' comments allowed
    let mut pos = 2;
    let mut nums = [0u32; 3];
    for n in &mut nums {
        loop {
            while pos < data.len() && data[pos].is_ascii_whitespace() {
                pos += 1;
            }
            if pos < data.len() && data[pos] == b'#' {
                while pos < data.len() && data[pos] != b'\n' {
                    pos += 1;
                }
                continue;
            }
            break;
        }
        let start = pos;
        while pos < data.len() && data[pos].is_ascii_digit() {
            pos += 1;
        }
        *n = std::str::from_utf8(&data[start..pos])?.parse().context("header number")?;
    }
    pos += 1; // the single whitespace byte before the pixels
    let [width, height, maxval] = nums;
    if maxval != 255 {
        bail!("maxval {maxval} (only 255 is supported)");
    }
    let len = width as usize * height as usize * 3;
    let Some(px) = data.get(pos..pos + len) else { bail!("{width}x{height}: pixel data truncated") };
    Ok(RgbImage { width, height, rgb: px.to_vec() })
}

fn read_png(data: &[u8]) -> Result<RgbImage> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(data));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = dec.read_info()?;
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf)?;
    let (w, h) = (info.width, info.height);
    let ch = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        c => bail!("unsupported colour type {c:?}"),
    };
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    for px in buf[..info.buffer_size()].chunks_exact(ch) {
        match ch {
            1 | 2 => rgb.extend_from_slice(&[px[0]; 3]),
            _ => rgb.extend_from_slice(&px[..3]),
        }
    }
    Ok(RgbImage { width: w, height: h, rgb })
}

/// Box-filtered downscale so the image fits `max_w` x `max_h` (never enlarged).
pub fn scale_to_fit(img: &RgbImage, max_w: u32, max_h: u32) -> RgbImage {
    let f = (max_w as f64 / img.width as f64).min(max_h as f64 / img.height as f64).min(1.0);
    let (w, h) = (((img.width as f64 * f).round() as u32).max(1), ((img.height as f64 * f).round() as u32).max(1));
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h {
        let (y0, y1) = (y * img.height / h, ((y + 1) * img.height / h).max(y * img.height / h + 1));
        for x in 0..w {
            let (x0, x1) = (x * img.width / w, ((x + 1) * img.width / w).max(x * img.width / w + 1));
            let mut sum = [0u32; 3];
            for sy in y0..y1 {
                for sx in x0..x1 {
                    let i = (sy as usize * img.width as usize + sx as usize) * 3;
                    for c in 0..3 {
                        sum[c] += img.rgb[i + c] as u32;
                    }
                }
            }
            let n = (y1 - y0) * (x1 - x0);
            rgb.extend(sum.iter().map(|s| (s / n) as u8));
        }
    }
    RgbImage { width: w, height: h, rgb }
}

/// A GDK texture of the image (for `gtk::Picture`).
pub fn to_texture(img: &RgbImage) -> relm4::gtk::gdk::Texture {
    use relm4::gtk::{gdk, glib};
    let bytes = glib::Bytes::from(&img.rgb[..]);
    gdk::MemoryTexture::new(img.width as i32, img.height as i32, gdk::MemoryFormat::R8g8b8, &bytes, img.width as usize * 3)
        .into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ppm_with_comment() {
        let mut d = b"P6\n# made by hand\n2 1\n255\n".to_vec();
        d.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let i = super::parse_ppm(&d).unwrap();
        assert_eq!((i.width, i.height, i.rgb), (2, 1, vec![1, 2, 3, 4, 5, 6]));
        assert!(super::parse_ppm(b"P6 4 4 255\n\0\0").is_err());
    }

    #[test]
    fn downscale_averages() {
        // 4x2: left half black, right half white -> 2x1: black, white; 720x400 -> 160x89
        let mut rgb = Vec::new();
        for _ in 0..2 {
            rgb.extend_from_slice(&[0; 6]);
            rgb.extend_from_slice(&[255; 6]);
        }
        let s = super::scale_to_fit(&super::RgbImage { width: 4, height: 2, rgb }, 2, 2);
        assert_eq!((s.width, s.height, s.rgb), (2, 1, vec![0, 0, 0, 255, 255, 255]));
        let big = super::RgbImage { width: 720, height: 400, rgb: vec![7; 720 * 400 * 3] };
        let s = super::scale_to_fit(&big, 160, 120);
        assert_eq!((s.width, s.height), (160, 89));
        assert!(s.rgb.iter().all(|&v| v == 7));
    }
}
