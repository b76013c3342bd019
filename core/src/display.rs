//! What a display device hands to front ends: an RGBA framebuffer and the region that changed.
//!
//! RGBA8 (bytes R, G, B, A=0xFF, rows top to bottom, no padding) because both consumers take it
//! as is: the `pixels` crate's texture in the guest window and PNG screenshots. Display devices
//! (VGA, Cirrus) convert from the guest's mode into this once per refresh; front ends never see
//! guest pixel formats.

use serde::{Deserialize, Serialize};

/// A rectangle in framebuffer pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// The smallest rectangle covering both.
    pub fn union(self, other: Rect) -> Rect {
        if self.width == 0 || self.height == 0 {
            return other;
        }
        if other.width == 0 || other.height == 0 {
            return self;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let r = (self.x + self.width).max(other.x + other.width);
        let b = (self.y + self.height).max(other.y + other.height);
        Rect { x, y, width: r - x, height: b - y }
    }
}

/// One rendered guest screen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// `width * height * 4` bytes of RGBA.
    pub rgba: Vec<u8>,
    /// What changed since the previous frame handed out (`None`: everything, e.g. after a mode
    /// change).
    pub dirty: Option<Rect>,
    /// Counts mode changes, so a front end knows when to resize its window.
    pub mode_generation: u64,
}

impl Frame {
    /// Resize (contents undefined afterwards, whole frame dirty).
    pub fn resize(&mut self, width: u32, height: u32) {
        if self.width != width || self.height != height {
            self.width = width;
            self.height = height;
            self.rgba.resize(width as usize * height as usize * 4, 0);
            self.mode_generation += 1;
            self.dirty = None;
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2], self.rgba[i + 3]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_covers_both_and_ignores_empty() {
        let a = Rect { x: 10, y: 10, width: 5, height: 5 };
        let b = Rect { x: 0, y: 12, width: 3, height: 10 };
        assert_eq!(a.union(b), Rect { x: 0, y: 10, width: 15, height: 12 });
        assert_eq!(Rect::default().union(a), a);
    }
}
