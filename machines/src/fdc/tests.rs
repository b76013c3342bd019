//! Command-protocol tests: the controller driven through its ports the way SeaBIOS and Linux
//! drive it, with a real raw image file behind the drive and the board's i8237 doing DMA.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::dma::Dma;

const IMG_144: u64 = 1_474_560;

struct Rig {
    fdc: Fdc,
    ram: Vec<u8>,
    dma: Dma,
    path: PathBuf,
}

/// Byte `i` of the test image: differs per sector and per offset.
fn pattern(i: u64) -> u8 {
    ((i / 512) as u8).wrapping_mul(7) ^ (i as u8) ^ ((i / 512 >> 8) as u8)
}

fn image(size: u64) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "vessel-fdc-{}-{}.img",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let data: Vec<u8> = (0..size).map(pattern).collect();
    std::fs::write(&p, data).unwrap();
    p
}

impl Rig {
    fn new() -> Rig {
        Self::with(IMG_144, false)
    }

    fn with(size: u64, read_only: bool) -> Rig {
        let path = image(size);
        let mut fdc = Fdc::new();
        fdc.attach(0, Some(Media::open(&path, Some("raw"), read_only).unwrap()));
        Rig { fdc, ram: vec![0; 1 << 20], dma: Dma::new(), path }
    }

    fn ctx(&mut self) -> (&mut Fdc, IoCtx<'_>) {
        (&mut self.fdc, IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 })
    }

    fn out(&mut self, port: u16, v: u8) {
        let (f, mut c) = self.ctx();
        f.io_write(&mut c, Region::Legacy, port, 1, v as u32);
    }

    fn inb(&mut self, port: u16) -> u8 {
        let (f, mut c) = self.ctx();
        f.io_read(&mut c, Region::Legacy, port, 1) as u8
    }

    fn poll(&mut self) {
        let (f, mut c) = self.ctx();
        f.poll(&mut c);
    }

    fn msr(&mut self) -> u8 {
        self.inb(0x3F4)
    }

    fn irq(&self) -> bool {
        self.fdc.isa_irq_levels() & (1 << 6) != 0
    }

    /// Send a command the way SeaBIOS's floppy_pio does: wait for RQM, refuse DIO.
    fn cmd(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let m = self.msr();
            assert_eq!(m & 0xC0, 0x80, "MSR {m:#x} before command byte {b:#x} of {bytes:x?}");
            self.out(0x3F5, b);
        }
    }

    fn result(&mut self) -> Vec<u8> {
        let mut r = Vec::new();
        while self.msr() & 0xC0 == 0xC0 {
            r.push(self.inb(0x3F5));
            assert!(r.len() <= 16);
        }
        assert_eq!(self.msr() & 0xF0, 0x80, "back in the command phase");
        r
    }

    fn sense(&mut self) -> Vec<u8> {
        self.cmd(&[0x08]);
        self.result()
    }

    /// Program DMA channel 2 like SeaBIOS's floppy_cmd (mode 0x46 read / 0x4A write).
    fn dma(&mut self, addr: u32, len: u32, to_memory: bool) {
        let end = len - 1;
        let d = &mut self.dma;
        d.io_write(0x0A, 0x06);
        d.io_write(0x0C, 0);
        d.io_write(0x04, addr as u8);
        d.io_write(0x04, (addr >> 8) as u8);
        d.io_write(0x0C, 0);
        d.io_write(0x05, end as u8);
        d.io_write(0x05, (end >> 8) as u8);
        d.io_write(0x0B, if to_memory { 0x46 } else { 0x4A });
        d.io_write(0x81, (addr >> 16) as u8);
        d.io_write(0x0A, 0x02);
    }

    fn file(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lba(c: u64, h: u64, r: u64) -> u64 {
    ((c * 2 + h) * 18 + r - 1) * 512
}

#[test]
fn reset_raises_irq_and_four_sense_interrupts() {
    let mut t = Rig::new();
    assert_eq!(t.msr(), 0x80, "power-on: idle");
    t.out(0x3F2, 0x00);
    assert_eq!(t.msr(), 0, "held in reset");
    assert!(!t.irq());
    t.out(0x3F2, 0x0C);
    assert!(t.irq(), "reset done interrupt");
    assert_eq!(t.inb(0x3F0) & 0x80, 0x80, "SRA INTPEND");
    for d in 0..4u8 {
        assert_eq!(t.sense(), vec![0xC0 | d, 0], "polling drive {d}");
        assert!(!t.irq());
    }
    assert_eq!(t.sense(), vec![0x80], "nothing pending: invalid");
    // DOR bit 3 gates the interrupt line
    t.out(0x3F2, 0x00);
    t.out(0x3F2, 0x04);
    assert!(!t.irq(), "gated by DOR bit 3");
    t.out(0x3F2, 0x0C);
    assert!(t.irq(), "pending interrupt appears when the gate opens");
    // DSR software reset; another command ends the polling reports
    for _ in 0..4 {
        t.sense();
    }
    t.out(0x3F4, 0x80);
    assert!(t.irq());
    assert_eq!(t.sense(), vec![0xC0, 0]);
    t.cmd(&[0x07, 0x00]);
    assert_eq!(t.sense(), vec![0x20, 0], "the recalibration, not drive 1's polling");
    assert_eq!(t.sense(), vec![0x80]);
}

#[test]
fn identification_specify_configure_lock_dumpreg() {
    let mut t = Rig::new();
    t.cmd(&[0x10]);
    assert_eq!(t.result(), vec![0x90], "VERSION: 82077/82078");
    t.cmd(&[0x18]);
    assert_eq!(t.result(), vec![0x41], "PART ID");
    t.cmd(&[0x03, 0xAF, 0x02]);
    assert_eq!(t.msr(), 0x80, "SPECIFY has no result phase");
    assert!(!t.irq(), "and no interrupt");
    t.cmd(&[0x13, 0x00, 0x57, 0x05]);
    assert_eq!(t.msr(), 0x80);
    t.cmd(&[0x12, 0x83]);
    t.cmd(&[0x0E]);
    let d = t.result();
    assert_eq!(d, vec![0, 0, 0, 0, 0xAF, 0x02, 0, 0x03, 0x57, 0x05]);
    // CONFIGURE is reset by a reset unless locked
    t.out(0x3F4, 0x80);
    t.cmd(&[0x0E]);
    assert_eq!(t.result()[8..], [0x20, 0x00]);
    t.cmd(&[0x13, 0x00, 0x57, 0x05]);
    t.cmd(&[0x94]);
    assert_eq!(t.result(), vec![0x10], "LOCK");
    t.out(0x3F4, 0x80);
    t.cmd(&[0x0E]);
    let d = t.result();
    assert_eq!(d[7] & 0x80, 0x80);
    assert_eq!(d[8..], [0x57, 0x05], "kept across reset while locked");
    t.cmd(&[0x14]);
    assert_eq!(t.result(), vec![0x00], "UNLOCK");
    // invalid opcodes
    for op in [0x00, 0x01, 0x0B, 0x17, 0x1F] {
        t.cmd(&[op]);
        assert_eq!(t.result(), vec![0x80], "opcode {op:#x}");
    }
}

#[test]
fn recalibrate_seek_sense_drive_status() {
    let mut t = Rig::new();
    t.cmd(&[0x0F, 0x04, 40]);
    assert!(t.irq());
    assert_eq!(t.msr(), 0x81, "drive 0 busy until SENSE INTERRUPT");
    assert_eq!(t.sense(), vec![0x24, 40], "SE, head 1, PCN 40");
    assert!(!t.irq());
    t.cmd(&[0x04, 0x00]);
    assert_eq!(t.result(), vec![0x28], "ST3: ready, two-sided, not track 0");
    t.cmd(&[0xCF, 0x00, 5]);
    assert_eq!(t.sense(), vec![0x20, 45], "relative seek inwards");
    t.cmd(&[0x8F, 0x00, 10]);
    assert_eq!(t.sense(), vec![0x20, 35], "relative seek outwards");
    t.cmd(&[0x07, 0x00]);
    assert_eq!(t.msr() & 0xF0, 0x80, "RECALIBRATE: no result phase");
    assert_eq!(t.sense(), vec![0x20, 0]);
    t.cmd(&[0x04, 0x00]);
    assert_eq!(t.result(), vec![0x38], "track 0");
    // drive 1 is not installed: no track 0 signal
    t.cmd(&[0x07, 0x01]);
    assert_eq!(t.sense(), vec![0x71, 0], "abnormal, seek end, equipment check");
}

fn read_cmd(t: &mut Rig, op: u8, c: u8, h: u8, r: u8, eot: u8) {
    t.cmd(&[op, h << 2, c, h, r, 2, eot, 0x1B, 0xFF]);
}

#[test]
fn read_data_dma_matches_image() {
    let mut t = Rig::new();
    t.dma(0x2_0000, 3 * 512, true);
    t.cmd(&[0x0F, 0x04, 5]);
    t.sense();
    read_cmd(&mut t, 0xE6, 5, 1, 4, 18);
    assert!(t.irq(), "completion interrupt");
    let r = t.result();
    assert!(!t.irq(), "cleared by the result read");
    assert_eq!(r, vec![0x04, 0, 0, 5, 1, 7, 2], "normal end at terminal count, next sector 7");
    let img = t.file();
    let off = lba(5, 1, 4) as usize;
    assert_eq!(&t.ram[0x2_0000..0x2_0000 + 1536], &img[off..off + 1536]);
    assert_eq!(t.ram[0x2_0000 + 1536], 0, "nothing past the DMA count");
    assert_eq!(t.dma.io_read(0x08).unwrap() & 4, 4, "DMA terminal count");
}

#[test]
fn read_multitrack_and_end_of_track_results() {
    let mut t = Rig::new();
    // head 0 sectors 17-18, then head 1 sectors 1-2 (MT)
    t.dma(0x1_0000, 4 * 512, true);
    read_cmd(&mut t, 0xE6, 2, 0, 17, 18);
    assert_eq!(t.result(), vec![0x24, 0, 0, 2, 1, 3, 2], "ended on head 1, next R=3 (SE: implied seek)");
    let img = t.file();
    assert_eq!(&t.ram[0x1_0000..0x1_0400], &img[lba(2, 0, 17) as usize..lba(2, 0, 17) as usize + 1024]);
    assert_eq!(&t.ram[0x1_0400..0x1_0800], &img[lba(2, 1, 1) as usize..lba(2, 1, 1) as usize + 1024]);
    // terminal count exactly at EOT of head 1 with MT: next cylinder, head 0, sector 1
    t.dma(0x1_0000, 2 * 512, true);
    read_cmd(&mut t, 0xE6, 2, 1, 17, 18);
    assert_eq!(t.result(), vec![0x04, 0, 0, 3, 0, 1, 2]);
    // without MT, TC at EOT of head 0: next cylinder, same head
    t.dma(0x1_0000, 512, true);
    read_cmd(&mut t, 0x66, 2, 0, 18, 18);
    assert_eq!(t.result(), vec![0x00, 0, 0, 3, 0, 1, 2]);
    // EOT before the DMA count runs out: abnormal, end of cylinder, C/H/R of the last sector
    t.dma(0x1_0000, 8 * 512, true);
    read_cmd(&mut t, 0x66, 2, 0, 16, 18);
    assert_eq!(t.result(), vec![0x40, 0x80, 0, 2, 0, 18, 2]);
    // a sector that does not exist
    t.dma(0x1_0000, 512, true);
    read_cmd(&mut t, 0xE6, 2, 0, 19, 19);
    assert_eq!(t.result(), vec![0x40, 0x04, 0, 2, 0, 19, 2], "no data");
    // H in the ID differs from the head bit
    t.dma(0x1_0000, 512, true);
    t.cmd(&[0xE6, 0x00, 2, 1, 1, 2, 18, 0x1B, 0xFF]);
    assert_eq!(t.result()[..2], [0x40, 0x04]);
    // wrong data rate for the medium (1.44M needs 500 kb/s)
    t.out(0x3F7, 0x02);
    t.dma(0x1_0000, 512, true);
    read_cmd(&mut t, 0xE6, 2, 0, 1, 18);
    assert_eq!(t.result()[..2], [0x40, 0x01], "missing address mark");
    t.out(0x3F7, 0x00);
}

#[test]
fn write_data_dma_changes_image() {
    let mut t = Rig::new();
    for i in 0..1024 {
        t.ram[0x3000 + i] = (i as u8) ^ 0xA5;
    }
    t.dma(0x3000, 1024, false);
    read_cmd(&mut t, 0xC5, 79, 1, 18, 18); // MT at the last sector of the disk
    assert_eq!(t.result(), vec![0x64, 0x80, 0, 79, 1, 18, 2], "end of cylinder before terminal count");
    let img = t.file();
    let off = lba(79, 1, 18) as usize;
    assert_eq!(&img[off..off + 512], &t.ram[0x3000..0x3200]);
    // a write in the middle
    t.dma(0x3000, 1024, false);
    read_cmd(&mut t, 0xC5, 10, 0, 3, 18);
    assert_eq!(t.result(), vec![0x20, 0, 0, 10, 0, 5, 2]);
    let img = t.file();
    let off = lba(10, 0, 3) as usize;
    assert_eq!(&img[off..off + 1024], &t.ram[0x3000..0x3400]);
    assert_eq!(img[off + 1024], pattern((off + 1024) as u64), "next sector untouched");
    // and it reads back through the controller
    t.ram[0x8000..0x8400].fill(0);
    t.dma(0x8000, 1024, true);
    read_cmd(&mut t, 0xE6, 10, 0, 3, 18);
    t.result();
    assert_eq!(t.ram[0x8000..0x8400], t.ram[0x3000..0x3400].to_vec()[..]);
}

#[test]
fn write_protected_and_no_media() {
    let mut t = Rig::with(IMG_144, true);
    t.dma(0x3000, 512, false);
    read_cmd(&mut t, 0xC5, 0, 0, 1, 18);
    assert_eq!(t.result(), vec![0x40, 0x02, 0, 0, 0, 1, 2], "NW");
    t.cmd(&[0x04, 0x00]);
    assert_eq!(t.result()[0] & 0x40, 0x40, "ST3 WP");
    assert_eq!(t.file(), (0..IMG_144).map(pattern).collect::<Vec<_>>(), "image unchanged");
    t.fdc.set_media(0, None).unwrap();
    t.dma(0x3000, 512, true);
    read_cmd(&mut t, 0xE6, 0, 0, 1, 18);
    assert_eq!(t.result()[..2], [0x40, 0x01], "no medium: missing address mark");
    t.cmd(&[0x4A, 0x00]);
    assert_eq!(t.result()[..2], [0x40, 0x01]);
}

#[test]
fn read_id_and_data_rates() {
    let mut t = Rig::new();
    t.cmd(&[0x0F, 0x00, 3]);
    t.sense();
    t.cmd(&[0x4A, 0x04]);
    assert!(t.irq());
    let r = t.result();
    assert_eq!(r[..5], [0x04, 0, 0, 3, 1]);
    assert!((1..=18).contains(&r[5]));
    assert_eq!(r[6], 2);
    // SeaBIOS media sense: 720K image answers only at 250 kb/s
    let mut t = Rig::with(737_280, false);
    t.out(0x3F7, 0x00);
    t.cmd(&[0x4A, 0x00]);
    assert_eq!(t.result()[0] & 0xC0, 0x40);
    t.out(0x3F7, 0x02);
    t.cmd(&[0x4A, 0x00]);
    assert_eq!(t.result()[0] & 0xC0, 0x00);
    t.dma(0, 9 * 512, true);
    read_cmd(&mut t, 0xE6, 0, 1, 1, 9);
    assert_eq!(t.result(), vec![0x04, 0, 0, 1, 0, 1, 2]);
    let img = t.file();
    assert_eq!(&t.ram[..9 * 512], &img[9 * 512..18 * 512]);
}

#[test]
fn disk_change_line() {
    let mut t = Rig::new();
    assert_eq!(t.inb(0x3F7) & 0x80, 0x80, "active at power-on");
    t.cmd(&[0x0F, 0x00, 0]);
    t.sense();
    assert_eq!(t.inb(0x3F7) & 0x80, 0x80, "no step, no clear");
    t.cmd(&[0x0F, 0x00, 1]);
    t.sense();
    assert_eq!(t.inb(0x3F7) & 0x80, 0, "cleared by a step with a disk in");
    let m = Media::open(&t.path, Some("raw"), false).unwrap();
    t.fdc.set_media(0, None).unwrap();
    assert_eq!(t.inb(0x3F7) & 0x80, 0x80, "ejected");
    t.cmd(&[0x07, 0x00]);
    t.sense();
    assert_eq!(t.inb(0x3F7) & 0x80, 0x80, "stays while empty");
    t.fdc.set_media(0, Some(m)).unwrap();
    assert_eq!(t.inb(0x3F7) & 0x80, 0x80, "inserted");
    t.cmd(&[0x0F, 0x00, 1]);
    t.sense();
    assert_eq!(t.inb(0x3F7) & 0x80, 0);
    // through the IoDevice media interface, as the monitor's change/eject do
    assert!(t.fdc.change_media("floppy1", None).is_none(), "no drive 1");
    t.fdc.change_media("floppy0", None).unwrap().unwrap();
    assert_eq!(t.inb(0x3F7) & 0x80, 0x80);
    assert_eq!(t.fdc.drives()[0].file, None);
    let p = t.path.clone();
    t.fdc.change_media("floppy0", Some(&p)).unwrap().unwrap();
    assert_eq!(t.fdc.drives()[0].file.as_deref(), Some(p.as_path()));
    let bad = image(1000);
    let e = t.fdc.change_media("floppy0", Some(&bad)).unwrap().unwrap_err().to_string();
    assert!(e.contains("1000 bytes"), "{e}");
    let _ = std::fs::remove_file(bad);
}

#[test]
fn non_dma_read_and_write() {
    let mut t = Rig::new();
    t.cmd(&[0x03, 0xAF, 0x03]); // ND = 1
    read_cmd(&mut t, 0x66, 1, 0, 16, 18);
    let mut got = Vec::new();
    while t.msr() & 0xE0 == 0xE0 {
        // RQM, DIO, NDMA: a byte to read; the interrupt is an edge per byte
        t.poll();
        assert!(t.irq());
        got.push(t.inb(0x3F5));
        assert!(!t.irq());
    }
    let img = t.file();
    let off = lba(1, 0, 16) as usize;
    assert_eq!(got, img[off..off + 3 * 512].to_vec(), "sectors 16-18");
    t.poll();
    assert!(t.irq(), "result phase interrupt");
    assert_eq!(t.result(), vec![0x60, 0x80, 0, 1, 0, 18, 2], "no TC without DMA: end of cylinder");

    read_cmd(&mut t, 0x45, 7, 0, 1, 2);
    let mut n = 0;
    while t.msr() & 0xE0 == 0xA0 {
        t.out(0x3F5, (n % 251) as u8);
        n += 1;
    }
    assert_eq!(n, 1024);
    assert_eq!(t.result(), vec![0x60, 0x80, 0, 7, 0, 2, 2]);
    let img = t.file();
    let off = lba(7, 0, 1) as usize;
    assert!(img[off..off + 1024].iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(img[off + 1024], pattern((off + 1024) as u64));
}

#[test]
fn format_track_verify_read_track_read_deleted() {
    let mut t = Rig::new();
    // FORMAT cylinder 4 head 1 with filler 0xF6: IDs through DMA (4 bytes per sector)
    for r in 0..18u8 {
        t.ram[0x500 + 4 * r as usize..][..4].copy_from_slice(&[4, 1, r + 1, 2]);
    }
    t.cmd(&[0x0F, 0x04, 4]);
    t.sense();
    t.dma(0x500, 18 * 4, false);
    t.cmd(&[0x4D, 0x04, 2, 18, 0x54, 0xF6]);
    let r = t.result();
    assert_eq!(r[..3], [0x04, 0, 0]);
    let img = t.file();
    assert!(img[lba(4, 1, 1) as usize..lba(5, 0, 1) as usize].iter().all(|&b| b == 0xF6));
    assert_eq!(img[lba(4, 0, 18) as usize], pattern(lba(4, 0, 18)), "other head untouched");
    assert_eq!(img[lba(5, 0, 1) as usize], pattern(lba(5, 0, 1)));
    // VERIFY with EC=1 and a count of 5 sectors
    t.cmd(&[0xF6, 0x80, 3, 0, 1, 2, 18, 0x1B, 5]);
    assert_eq!(t.result(), vec![0x20, 0, 0, 3, 0, 6, 2], "implied seek: SE");
    // READ TRACK from the index: sector 1 on, 2 sectors by DMA count
    t.dma(0x4000, 1024, true);
    t.cmd(&[0x42, 0x00, 6, 0, 9, 2, 18, 0x1B, 0xFF]);
    assert_eq!(t.result()[..3], [0x20, 0, 0]);
    let img = t.file();
    assert_eq!(&t.ram[0x4000..0x4400], &img[lba(6, 0, 1) as usize..lba(6, 0, 3) as usize]);
    // READ DELETED on normal data: control mark, one sector, then stop
    t.dma(0x4000, 4096, true);
    t.cmd(&[0x4C, 0x00, 6, 0, 5, 2, 18, 0x1B, 0xFF]);
    assert_eq!(t.result(), vec![0x00, 0, 0x40, 6, 0, 6, 2]);
}

#[test]
fn dma_waits_for_channel_and_state_round_trip() {
    let mut t = Rig::new();
    read_cmd(&mut t, 0xE6, 0, 0, 1, 18);
    assert_eq!(t.msr(), 0x10, "execution, waiting for DMA");
    t.poll();
    assert!(!t.irq());
    let saved = t.fdc.save_state().unwrap();
    t.dma(0x6000, 512, true);
    t.poll();
    assert!(t.irq());
    assert_eq!(t.result(), vec![0x00, 0, 0, 0, 0, 2, 2]);
    assert_eq!(&t.ram[0x6000..0x6200], &t.file()[..512]);
    // restoring the saved state resumes the waiting command
    t.fdc.restore_state(&saved).unwrap();
    assert_eq!(t.msr(), 0x10);
    t.ram[0x6000..0x6200].fill(0);
    t.dma(0x6000, 512, true);
    t.poll();
    assert_eq!(t.result()[0], 0x00);
    assert_eq!(&t.ram[0x6000..0x6200], &t.file()[..512]);
    assert!(t.fdc.restore_state(b"garbage").is_err());
}

#[test]
fn cmos_types_and_drives() {
    let t = Rig::new();
    assert_eq!(t.fdc.cmos_drive_types(), 0x40, "1.44M drive 0, no drive 1");
    let mut f = Fdc::new();
    f.attach(0, None);
    f.attach(1, Some(Media::open(&t.path, None, true).unwrap()));
    assert_eq!(f.cmos_drive_types(), 0x54, "empty drive = 2.88M (QEMU's fallback)");
    let d = f.drives();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].device, "floppy0");
    assert!(d[1].read_only && d[1].removable);
    assert_eq!(d[1].format.as_deref(), Some("raw"));
}
