//! PNG screenshots of a display [`Frame`].

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};
use vessel_core::display::Frame;

/// Write `frame` as an 8-bit RGB PNG (the alpha channel of frames is always opaque).
pub fn write_png(path: &Path, frame: &Frame) -> Result<()> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), frame.width, frame.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().with_context(|| format!("write {}", path.display()))?;
    let rgb: Vec<u8> = frame.rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    w.write_image_data(&rgb).with_context(|| format!("write {}", path.display()))?;
    w.finish().with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
