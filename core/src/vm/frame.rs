//! Screen hand-over from the CPU thread to a front end: a triple buffer of [`Frame`]s.
//!
//! Three frames: the writer's back buffer, the shared middle one (the latest published), and the
//! reader's front buffer. Publishing and taking swap frames under a short lock (the swap moves
//! `Vec` pointers, never pixels), so neither side waits for the other and the reader always gets
//! the newest complete frame.
//!
//! Dirty regions: the display device keeps one canonical frame and reports what changed since its
//! previous refresh. Each buffer remembers what it is *missing* relative to the newest content;
//! publishing copies into the back buffer only the device's dirty region plus what that buffer
//! missed while it was elsewhere (in steady state: the last two dirty regions), never the whole
//! screen. The reader gets, in `Frame::dirty`, the union of everything published since its previous
//! take, so a window can upload just that part of its texture.

use std::sync::{Arc, Mutex};

use crate::display::{Frame, Rect};

/// Region a buffer lacks. `All` after a mode change or before the first full copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stale {
    Clean,
    Part(Rect),
    All,
}

impl Stale {
    fn add(self, d: Option<Rect>) -> Stale {
        match (self, d) {
            (Stale::All, _) | (_, None) => Stale::All,
            (Stale::Clean, Some(r)) => {
                if r.width == 0 || r.height == 0 { Stale::Clean } else { Stale::Part(r) }
            }
            (Stale::Part(a), Some(r)) => Stale::Part(a.union(r)),
        }
    }
}

struct Shared {
    middle: Frame,
    middle_stale: Stale,
    front_stale: Stale,
    /// Published since the reader's last take.
    fresh: bool,
    /// Union of dirty regions published since the reader's last take.
    reader_dirty: Stale,
}

/// The CPU thread's end.
pub struct FrameWriter {
    back: Frame,
    back_stale: Stale,
    shared: Arc<Mutex<Shared>>,
}

/// The front end's end.
pub struct FrameReader {
    front: Frame,
    shared: Arc<Mutex<Shared>>,
}

pub fn frame_channel() -> (FrameWriter, FrameReader) {
    let shared = Arc::new(Mutex::new(Shared {
        middle: Frame::default(),
        middle_stale: Stale::All,
        front_stale: Stale::All,
        fresh: false,
        reader_dirty: Stale::All,
    }));
    (
        FrameWriter { back: Frame::default(), back_stale: Stale::All, shared: shared.clone() },
        FrameReader { front: Frame::default(), shared },
    )
}

fn copy_region(dst: &mut Frame, src: &Frame, r: Rect) {
    let w = src.width as usize;
    let x0 = (r.x as usize).min(w);
    let x1 = (r.x as usize + r.width as usize).min(w);
    let y0 = (r.y as usize).min(src.height as usize);
    let y1 = (r.y as usize + r.height as usize).min(src.height as usize);
    if x0 >= x1 {
        return;
    }
    for y in y0..y1 {
        let a = (y * w + x0) * 4;
        let b = (y * w + x1) * 4;
        dst.rgba[a..b].copy_from_slice(&src.rgba[a..b]);
    }
}

impl FrameWriter {
    /// Publish the device's frame; `src.dirty` is what changed since the previous publish.
    pub fn publish(&mut self, src: &Frame) {
        let mut d = src.dirty;
        if self.back.width != src.width || self.back.height != src.height {
            self.back.resize(src.width, src.height);
            self.back_stale = Stale::All;
        }
        if self.back.mode_generation != src.mode_generation {
            // the reader must see the mode change as a whole-frame update
            d = None;
        }
        self.back.mode_generation = src.mode_generation;
        match self.back_stale.add(d) {
            Stale::Clean => {}
            Stale::Part(r) => copy_region(&mut self.back, src, r),
            Stale::All => self.back.rgba.copy_from_slice(&src.rgba),
        }
        self.back.dirty = d;
        let mut guard = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        std::mem::swap(&mut self.back, &mut s.middle);
        // the old middle lacked `middle_stale` and now also this publish's dirty region
        self.back_stale = s.middle_stale.add(d);
        s.middle_stale = Stale::Clean;
        s.front_stale = s.front_stale.add(d);
        s.reader_dirty = s.reader_dirty.add(d);
        s.fresh = true;
    }
}

impl FrameReader {
    /// The newest frame if one was published since the last call. Its `dirty` covers every
    /// change since the frame this reader previously returned (`None`: redraw everything).
    pub fn latest(&mut self) -> Option<&Frame> {
        let mut guard = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        if !s.fresh {
            return None;
        }
        std::mem::swap(&mut self.front, &mut s.middle);
        std::mem::swap(&mut s.front_stale, &mut s.middle_stale);
        self.front.dirty = match s.reader_dirty {
            Stale::All => None,
            Stale::Part(r) => Some(r),
            Stale::Clean => Some(Rect::default()),
        };
        s.reader_dirty = Stale::Clean;
        s.fresh = false;
        drop(guard);
        Some(&self.front)
    }

    /// The frame last returned by [`FrameReader::latest`] (empty before the first one).
    pub fn current(&self) -> &Frame {
        &self.front
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, v: u8) -> Frame {
        let mut f = Frame::default();
        f.resize(w, h);
        f.rgba.fill(v);
        f
    }

    fn paint(f: &mut Frame, r: Rect, v: u8) {
        for y in r.y..r.y + r.height {
            for x in r.x..r.x + r.width {
                let i = ((y * f.width + x) * 4) as usize;
                f.rgba[i..i + 4].fill(v);
            }
        }
        f.dirty = Some(r);
    }

    /// Random paints, random interleaving of publishes and takes: whatever the reader takes equals
    /// the device frame at the time of the last publish, and the dirty hints cover every change.
    #[test]
    fn reader_always_sees_the_newest_complete_frame() {
        let (mut w, mut r) = frame_channel();
        let mut dev = frame(64, 48, 1);
        dev.dirty = None;
        w.publish(&dev);
        let mut view = r.latest().unwrap().clone(); // what a window would hold
        assert_eq!(view.rgba, dev.rgba);
        let mut seed = 0x1234_5678u32;
        let mut rnd = |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed % n
        };
        let mut published = dev.clone();
        for step in 0..2000 {
            if rnd(7) == 0 {
                let x = rnd(60);
                let y = rnd(44);
                let rect = Rect { x, y, width: 1 + rnd(64 - x), height: 1 + rnd(48 - y) };
                paint(&mut dev, rect, (step % 251) as u8);
                w.publish(&dev);
                published = dev.clone();
            } else if rnd(3) == 0 {
                let x = rnd(60);
                let y = rnd(44);
                let rect = Rect { x, y, width: 1 + rnd(4), height: 1 + rnd(4) };
                paint(&mut dev, rect, (step % 13) as u8);
                w.publish(&dev);
                published = dev.clone();
            }
            if rnd(4) == 0 {
                if let Some(f) = r.latest() {
                    assert_eq!(f.rgba, published.rgba, "step {step}: taken frame is complete and newest");
                    // a window applying only the dirty region ends up with the same picture
                    match f.dirty {
                        None => view.rgba.copy_from_slice(&f.rgba),
                        Some(d) => copy_region(&mut view, f, d),
                    }
                    assert_eq!(view.rgba, f.rgba, "step {step}: dirty hint covers every change");
                }
            }
        }
    }

    #[test]
    fn mode_change_is_a_full_update() {
        let (mut w, mut r) = frame_channel();
        let mut dev = frame(8, 8, 3);
        w.publish(&dev);
        r.latest().unwrap();
        dev.resize(16, 4);
        dev.rgba.fill(9);
        dev.dirty = Some(Rect { x: 0, y: 0, width: 1, height: 1 });
        w.publish(&dev);
        let f = r.latest().unwrap();
        assert_eq!((f.width, f.height, f.dirty), (16, 4, None));
        assert!(f.rgba.iter().all(|&b| b == 9));
        assert!(r.latest().is_none(), "nothing new");
    }
}
