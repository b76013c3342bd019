//! Register-level tests of the PIIX3 IDE: the guest side of the protocol driven through
//! `IoDevice`, with real images (temporary raw / qcow2 files) behind the I/O worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vessel_core::block::{open_image, BlockDevice};

use super::*;
use crate::dma::Dma;

struct Rig {
    ide: PiixIde,
    ram: Vec<u8>,
    dma: Dma,
    _dir: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("vessel-ide-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

/// Byte `i` of the test pattern.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

fn medium(path: &std::path::Path, read_only: bool) -> Medium {
    Medium { dev: open_image(path, None, read_only).unwrap(), path: path.into(), format: "raw".into(), read_only, snapshot: false }
}

impl Rig {
    /// A disk of `sectors` at ide0-hd0 (patterned contents) and a CD of `cd_sectors` at ide1-cd0.
    fn new(sectors: u64, cd_sectors: u64) -> Rig {
        let dir = tempdir("rig");
        let disk = dir.0.join("disk.img");
        let data: Vec<u8> = (0..sectors * 512).map(pattern).collect();
        std::fs::write(&disk, data).unwrap();
        let iso = dir.0.join("cd.iso");
        let mut cd = vec![0u8; (cd_sectors * 2048) as usize];
        for (lba, s) in cd.chunks_mut(2048).enumerate() {
            s.fill(lba as u8 ^ 0x5A);
            s[..4].copy_from_slice(&(lba as u32).to_le_bytes());
        }
        std::fs::write(&iso, cd).unwrap();
        let mut ide = PiixIde::new();
        ide.attach_disk(0, medium(&disk, false)).unwrap();
        ide.attach_cdrom(2, Some(medium(&iso, true))).unwrap();
        let mut r = Rig { ide, ram: vec![0; 1 << 20], dma: Dma::new(), _dir: dir };
        // BAR 4 at 0xC000, I/O decoding on (the board would route Region::Bar(4))
        r.ide.config.write(0x20, 4, 0xC000);
        r.ide.config.write(0x04, 2, 0x0005);
        r
    }

    fn disk_path(&self) -> PathBuf {
        self._dir.0.join("disk.img")
    }

    fn inb(&mut self, port: u16) -> u8 {
        let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 };
        self.ide.io_read(&mut ctx, Region::Legacy, port, 1) as u8
    }
    fn inw(&mut self, port: u16) -> u16 {
        let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 };
        self.ide.io_read(&mut ctx, Region::Legacy, port, 2) as u16
    }
    fn outb(&mut self, port: u16, v: u8) {
        let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 };
        self.ide.io_write(&mut ctx, Region::Legacy, port, 1, v as u32);
    }
    fn outw(&mut self, port: u16, v: u16) {
        let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 };
        self.ide.io_write(&mut ctx, Region::Legacy, port, 2, v as u32);
    }
    fn bm_out(&mut self, off: u16, width: u8, v: u32) {
        let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 };
        self.ide.io_write(&mut ctx, Region::Bar(4), off, width, v);
    }
    fn bm_in(&mut self, off: u16) -> u8 {
        let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 };
        self.ide.io_read(&mut ctx, Region::Bar(4), off, 1) as u8
    }
    fn poll(&mut self) {
        let mut ctx = IoCtx { ram: &mut self.ram, dma: &mut self.dma, now_ns: 0 };
        self.ide.poll(&mut ctx)
    }

    /// Poll the alternate status (no IRQ side effect) until BSY clears.
    fn wait(&mut self, base: u16) -> u8 {
        let ctl = if base == 0x1F0 { 0x3F6 } else { 0x376 };
        let t = Instant::now();
        loop {
            self.poll();
            let s = self.inb(ctl);
            if s & 0x80 == 0 {
                return s;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "drive stays busy");
            self.ide.wait_io(Duration::from_millis(1));
        }
    }

    fn irq(&self, line: u16) -> bool {
        self.ide.isa_irq_levels() & (1 << line) != 0
    }

    fn read_words(&mut self, base: u16, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 * n);
        for _ in 0..n {
            v.extend_from_slice(&self.inw(base).to_le_bytes());
        }
        v
    }

    /// LBA28 task file for disk 0.
    fn lba28(&mut self, lba: u32, count: u8) {
        self.outb(0x1F6, 0xE0 | ((lba >> 24) as u8 & 0xF));
        self.outb(0x1F2, count);
        self.outb(0x1F3, lba as u8);
        self.outb(0x1F4, (lba >> 8) as u8);
        self.outb(0x1F5, (lba >> 16) as u8);
    }

    fn identify(&mut self) -> Vec<u16> {
        self.outb(0x1F6, 0xA0);
        self.outb(0x1F7, 0xEC);
        let s = self.wait(0x1F0);
        assert_eq!(s & 0x08, 0x08, "DRQ after IDENTIFY");
        assert!(self.irq(14));
        self.read_words(0x1F0, 256).chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
    }

    /// Send an ATAPI packet to ide1-cd0 with PIO and byte count limit `limit`; returns the
    /// data read and the final status.
    fn packet(&mut self, cdb: &[u8], limit: u16) -> (Vec<u8>, u8) {
        self.outb(0x176, 0xA0);
        self.outb(0x171, 0);
        self.outb(0x174, limit as u8);
        self.outb(0x175, (limit >> 8) as u8);
        self.outb(0x177, 0xA0);
        let s = self.wait(0x170);
        assert_eq!(s & 0x08, 0x08, "DRQ for the packet");
        assert_eq!(self.inb(0x172) & 3, 1, "interrupt reason: C/D");
        let mut p = [0u8; 12];
        p[..cdb.len()].copy_from_slice(cdb);
        for w in p.chunks(2) {
            self.outw(0x170, u16::from_le_bytes([w[0], w[1]]));
        }
        let mut data = Vec::new();
        loop {
            let s = self.wait(0x170);
            assert!(self.irq(15), "ATAPI interrupts at every phase");
            let st = self.inb(0x177);
            assert!(!self.irq(15), "status read clears INTRQ");
            if st & 0x08 == 0 {
                assert_eq!(self.inb(0x172) & 3, 3, "interrupt reason: status");
                return (data, s);
            }
            assert_eq!(self.inb(0x172) & 3, 2, "interrupt reason: data in");
            let n = self.inb(0x174) as usize | (self.inb(0x175) as usize) << 8;
            assert!(n <= limit as usize && n > 0);
            data.extend(self.read_words(0x170, n / 2));
        }
    }
}

fn word_string(id: &[u16], from: usize, words: usize) -> String {
    id[from..from + words].iter().flat_map(|w| [(w >> 8) as u8 as char, *w as u8 as char]).collect::<String>().trim_end().to_string()
}

#[test]
fn identify_device_contents() {
    let mut r = Rig::new(20000, 16);
    let id = r.identify();
    assert_eq!(id[0], 0x0040);
    assert_eq!(word_string(&id, 10, 10), "QM00001");
    assert_eq!(word_string(&id, 23, 4), "2.5+");
    assert_eq!(word_string(&id, 27, 20), "QEMU HARDDISK");
    // no partition table: 16 heads, 63 sectors, size / 1008 cylinders
    assert_eq!((id[1], id[3], id[6]), (20000 / 1008, 16, 63));
    assert_eq!(id[60] as u32 | (id[61] as u32) << 16, 20000);
    assert_eq!(id[100] as u64 | (id[101] as u64) << 16, 20000);
    assert_eq!(id[83] & (1 << 10), 1 << 10, "LBA48");
    assert_eq!(id[49] & 0x0300, 0x0300, "LBA and DMA");
    assert_eq!(id[47] & 0xFF, 16);
    // SET FEATURES transfer mode MWDMA2 shows in word 63
    r.outb(0x1F1, 0x03);
    r.outb(0x1F2, 0x22);
    r.outb(0x1F7, 0xEF);
    assert_eq!(r.wait(0x1F0) & 0x01, 0);
    let id = r.identify();
    assert_eq!(id[63], 0x0407);
    assert_eq!(id[88] & 0xFF00, 0);
    // the slave position is empty: status 0, commands ignored
    r.outb(0x1F6, 0xB0);
    assert_eq!(r.inb(0x1F7), 0);
    r.outb(0x1F7, 0xEC);
    assert_eq!(r.inb(0x1F7), 0);
    // an unknown command aborts
    r.outb(0x1F6, 0xA0);
    r.outb(0x1F7, 0xFF);
    assert_eq!(r.wait(0x1F0), 0x41);
    assert_eq!(r.inb(0x1F1), 0x04);
}

#[test]
fn pio_write_and_read_sectors() {
    let mut r = Rig::new(4096, 16);
    // WRITE SECTORS: 3 sectors at LBA 100
    r.lba28(100, 3);
    r.outb(0x1F7, 0x30);
    let data: Vec<u8> = (0..1536u32).map(|i| (i * 7 + 3) as u8).collect();
    for (blk, chunk) in data.chunks(512).enumerate() {
        let s = r.wait(0x1F0);
        assert_eq!(s & 0x08, 0x08, "DRQ for block {blk}");
        assert_eq!(r.irq(14), blk > 0, "the first block has no interrupt");
        r.inb(0x1F7);
        for w in chunk.chunks(2) {
            r.outw(0x1F0, u16::from_le_bytes([w[0], w[1]]));
        }
    }
    assert_eq!(r.wait(0x1F0), 0x50);
    assert!(r.irq(14));
    // the address registers point at the last sector written
    assert_eq!(r.inb(0x1F3), 102);
    r.ide.flush();
    let file = std::fs::read(r.disk_path()).unwrap();
    assert_eq!(&file[100 * 512..103 * 512], &data[..]);
    assert_eq!(file[99 * 512 + 511], pattern(99 * 512 + 511), "neighbours untouched");
    // READ SECTORS back (with a block boundary) and a neighbour
    r.lba28(99, 5);
    r.outb(0x1F7, 0x20);
    let mut got = Vec::new();
    for _ in 0..5 {
        let s = r.wait(0x1F0);
        assert_eq!(s & 0x08, 0x08);
        assert!(r.irq(14), "an interrupt per block");
        r.inb(0x1F7);
        got.extend(r.read_words(0x1F0, 256));
    }
    assert_eq!(r.wait(0x1F0), 0x50);
    assert_eq!(&got[..], &file[99 * 512..104 * 512]);
    // READ MULTIPLE with 4-sector blocks: 2 interrupts for 6 sectors
    r.outb(0x1F2, 4);
    r.outb(0x1F7, 0xC6);
    r.wait(0x1F0);
    r.lba28(0, 6);
    r.outb(0x1F7, 0xC4);
    let mut got = Vec::new();
    for words in [1024, 512] {
        assert_eq!(r.wait(0x1F0) & 0x08, 0x08);
        r.inb(0x1F7);
        got.extend(r.read_words(0x1F0, words));
    }
    assert_eq!(r.wait(0x1F0), 0x50);
    assert_eq!(&got[..], &file[..6 * 512]);
    // out of range: IDNF
    r.lba28(4095, 2);
    r.outb(0x1F7, 0x20);
    assert_eq!(r.wait(0x1F0), 0x41);
    assert_eq!(r.inb(0x1F1), 0x10);
}

#[test]
fn chs_addressing_and_nien() {
    let mut r = Rig::new(20000, 16);
    // cylinder 3, head 5, sector 7 (16 heads x 63 sectors)
    r.outb(0x3F6, 0x02); // nIEN
    r.outb(0x1F6, 0xA0 | 5);
    r.outb(0x1F2, 1);
    r.outb(0x1F3, 7);
    r.outb(0x1F4, 3);
    r.outb(0x1F5, 0);
    r.outb(0x1F7, 0x20);
    assert_eq!(r.wait(0x1F0) & 0x08, 0x08);
    assert!(!r.irq(14), "nIEN masks INTRQ");
    let got = r.read_words(0x1F0, 256);
    let lba = (3 * 16 + 5) * 63 + 6u64;
    let want: Vec<u8> = (lba * 512..(lba + 1) * 512).map(pattern).collect();
    assert_eq!(got, want);
    // sector 0 is not a CHS address
    r.outb(0x1F3, 0);
    r.outb(0x1F7, 0x20);
    assert_eq!(r.wait(0x1F0) & 0x01, 0x01);
}

#[test]
fn lba48_beyond_128_gib() {
    let dir = tempdir("lba48");
    let path = dir.0.join("big.img");
    let total: u64 = (1 << 28) + 4096; // past the LBA28 limit
    std::fs::File::create(&path).unwrap().set_len(total * 512).unwrap();
    let mut r = Rig::new(8, 16);
    r.ide = PiixIde::new();
    r.ide.config.write(0x20, 4, 0xC000);
    r.ide.config.write(0x04, 2, 0x0005);
    r.ide.attach_disk(0, medium(&path, false)).unwrap();
    let id = r.identify();
    assert_eq!(id[60] as u32 | (id[61] as u32) << 16, 0x0FFF_FFFF, "LBA28 capacity saturates");
    let cap = (0..4).fold(0u64, |a, i| a | (id[100 + i] as u64) << (16 * i));
    assert_eq!(cap, total);
    let lba: u64 = (1 << 28) + 5;
    let set48 = |r: &mut Rig, lba: u64, count: u16| {
        r.outb(0x1F6, 0x40);
        for (hi, lo) in [(count >> 8, count & 0xFF)] {
            r.outb(0x1F2, hi as u8);
            r.outb(0x1F2, lo as u8);
        }
        for (i, port) in [0x1F3u16, 0x1F4, 0x1F5].into_iter().enumerate() {
            r.outb(port, (lba >> (24 + 8 * i)) as u8);
            r.outb(port, (lba >> (8 * i)) as u8);
        }
    };
    set48(&mut r, lba, 1);
    r.outb(0x1F7, 0x34); // WRITE SECTORS EXT
    assert_eq!(r.wait(0x1F0) & 0x08, 0x08);
    for i in 0..256u16 {
        r.outw(0x1F0, i.wrapping_mul(0x0101) ^ 0xA55A);
    }
    assert_eq!(r.wait(0x1F0), 0x50);
    r.ide.flush();
    let dev = open_image(&path, Some("raw"), true).unwrap();
    let mut b = [0u8; 4];
    dev.read_at(&mut b, lba * 512).unwrap();
    assert_eq!(b, [0x5A, 0xA5, 0x5B, 0xA4]);
    // READ NATIVE MAX ADDRESS EXT: last sector, read back through HOB
    r.outb(0x1F6, 0x40);
    r.outb(0x1F7, 0x27);
    r.wait(0x1F0);
    let mut max = 0u64;
    for (i, port) in [0x1F3u16, 0x1F4, 0x1F5].into_iter().enumerate() {
        max |= (r.inb(port) as u64) << (8 * i);
    }
    r.outb(0x3F6, 0x80);
    for (i, port) in [0x1F3u16, 0x1F4, 0x1F5].into_iter().enumerate() {
        max |= (r.inb(port) as u64) << (24 + 8 * i);
    }
    r.outb(0x3F6, 0x00);
    assert_eq!(max, total - 1);
    // a sector past the end is IDNF
    set48(&mut r, total, 1);
    r.outb(0x1F7, 0x24);
    assert_eq!(r.wait(0x1F0), 0x41);
    assert_eq!(r.inb(0x1F1), 0x10);
}

/// PRD table at 0x1000: 512 bytes at 0x2000, 1024 bytes at 0x3000 (EOT).
fn prd_table(r: &mut Rig) {
    let prd: [(u32, u32); 2] = [(0x2000, 512), (0x3000, 1024 | 0x8000_0000)];
    for (i, (a, c)) in prd.iter().enumerate() {
        r.ram[0x1000 + 8 * i..0x1000 + 8 * i + 4].copy_from_slice(&a.to_le_bytes());
        r.ram[0x1004 + 8 * i..0x1004 + 8 * i + 4].copy_from_slice(&c.to_le_bytes());
    }
    r.bm_out(4, 4, 0x1000);
}

#[test]
fn dma_read_and_write_through_prd_table() {
    let mut r = Rig::new(4096, 16);
    prd_table(&mut r);
    // READ DMA of 3 sectors at 10, bus master started after the command (Linux's order)
    r.bm_out(0, 1, 0x08); // to memory
    r.lba28(10, 3);
    r.outb(0x1F7, 0xC8);
    r.bm_out(0, 1, 0x09);
    let t = Instant::now();
    while !r.irq(14) {
        r.poll();
        r.ide.wait_io(Duration::from_millis(1));
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(r.bm_in(2) & 0x07, 0x04, "interrupt set, active clear");
    assert_eq!(r.inb(0x1F7), 0x50);
    let want: Vec<u8> = (10 * 512..13 * 512).map(pattern).collect();
    assert_eq!(&r.ram[0x2000..0x2200], &want[..512]);
    assert_eq!(&r.ram[0x3000..0x3400], &want[512..]);
    r.bm_out(0, 1, 0x00);
    r.bm_out(2, 1, 0x04); // clear interrupt
    assert_eq!(r.bm_in(2) & 0x04, 0);
    // WRITE DMA from RAM, bus master started first
    for i in 0..512 {
        r.ram[0x2000 + i] = (i as u8) ^ 0x33;
    }
    for i in 0..1024 {
        r.ram[0x3000 + i] = (i as u8) ^ 0xCC;
    }
    r.bm_out(0, 1, 0x01);
    r.lba28(2000, 3);
    r.outb(0x1F7, 0xCA);
    let t = Instant::now();
    while !r.irq(14) {
        r.poll();
        r.ide.wait_io(Duration::from_millis(1));
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(r.inb(0x1F7), 0x50);
    // FLUSH CACHE, then the image has it
    r.outb(0x1F7, 0xE7);
    assert_eq!(r.wait(0x1F0), 0x50);
    let file = std::fs::read(r.disk_path()).unwrap();
    assert_eq!(&file[2000 * 512..2000 * 512 + 512], &r.ram[0x2000..0x2200]);
    assert_eq!(&file[2001 * 512..2003 * 512], &r.ram[0x3000..0x3400]);
    // a PRD table shorter than the transfer: error in both status registers
    r.bm_out(0, 1, 0x00);
    r.bm_out(2, 1, 0x06);
    r.bm_out(0, 1, 0x08);
    r.lba28(0, 4);
    r.outb(0x1F7, 0xC8);
    r.bm_out(0, 1, 0x09);
    let s = r.wait(0x1F0);
    assert_eq!(s & 0x01, 0x01);
    assert_eq!(r.bm_in(2) & 0x07, 0x06);
}

#[test]
fn qcow2_disk_behind_the_worker() {
    let dir = tempdir("qcow2");
    let path = dir.0.join("d.qcow2");
    vessel_core::block::Qcow2::create(&path, &vessel_core::block::qcow2::CreateOptions { size: 8 << 20, ..Default::default() }).unwrap();
    let mut r = Rig::new(8, 16);
    r.ide = PiixIde::new();
    let m = Medium { dev: open_image(&path, None, false).unwrap(), path: path.clone(), format: "qcow2".into(), read_only: false, snapshot: false };
    r.ide.attach_disk(0, m).unwrap();
    r.lba28(5000, 1);
    r.outb(0x1F7, 0x30);
    r.wait(0x1F0);
    for i in 0..256u16 {
        r.outw(0x1F0, i);
    }
    assert_eq!(r.wait(0x1F0), 0x50);
    r.ide.flush();
    drop(r);
    let dev: Arc<dyn BlockDevice> = open_image(&path, None, true).unwrap();
    let mut b = [0u8; 6];
    dev.read_at(&mut b, 5000 * 512).unwrap();
    assert_eq!(b, [0, 0, 1, 0, 2, 0]);
}

#[test]
fn atapi_identify_signature_and_read10() {
    let mut r = Rig::new(64, 100);
    // software reset of channel 1: the CD shows the ATAPI signature, status 0
    r.outb(0x376, 0x04);
    r.outb(0x376, 0x00);
    assert_eq!((r.inb(0x174), r.inb(0x175)), (0x14, 0xEB));
    assert_eq!(r.inb(0x177), 0x00);
    // IDENTIFY DEVICE aborts, IDENTIFY PACKET DEVICE answers
    r.outb(0x176, 0xA0);
    r.outb(0x177, 0xEC);
    assert_eq!(r.wait(0x170) & 0x01, 0x01);
    assert_eq!((r.inb(0x174), r.inb(0x175)), (0x14, 0xEB));
    r.outb(0x177, 0xA1);
    assert_eq!(r.wait(0x170) & 0x08, 0x08);
    let id: Vec<u16> = r.read_words(0x170, 256).chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!((id[0] >> 8) & 0x1F, 5, "CD-ROM device type");
    assert_eq!(id[0] >> 14, 2, "ATAPI");
    assert_eq!(word_string(&id, 27, 20), "QEMU DVD-ROM");
    assert_eq!(word_string(&id, 10, 10), "QM00003");
    // READ(10) of LBA 7, 2 sectors, 2048-byte DRQ blocks
    let (data, status) = r.packet(&[0x28, 0, 0, 0, 0, 7, 0, 0, 2], 2048);
    assert_eq!(status & 0x01, 0);
    assert_eq!(data.len(), 4096);
    assert_eq!(&data[..4], &7u32.to_le_bytes());
    assert_eq!(&data[2048..2052], &8u32.to_le_bytes());
    assert_eq!(data[100], 7 ^ 0x5A);
    // READ CAPACITY
    let (cap, _) = r.packet(&[0x25], 0xFFFE);
    assert_eq!(cap, [0, 0, 0, 99, 0, 0, 8, 0]);
    // READ TOC format 0: track 1 at 0, lead-out at 100
    let (toc, _) = r.packet(&[0x43, 0, 0, 0, 0, 0, 0, 0, 100], 0xFFFE);
    assert_eq!(toc, [0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x16, 0xAA, 0, 0, 0, 0, 100]);
    // INQUIRY
    let (inq, _) = r.packet(&[0x12, 0, 0, 0, 36], 0xFFFE);
    assert_eq!(inq[0], 5);
    assert_eq!(&inq[8..28], b"QEMU    QEMU DVD-ROM");
    // past the end: ILLEGAL REQUEST / LBA out of range
    let (_, status) = r.packet(&[0x28, 0, 0, 0, 0, 99, 0, 0, 2], 2048);
    assert_eq!(status & 0x01, 0x01);
    assert_eq!(r.inb(0x171) >> 4, 5);
    let (sense, _) = r.packet(&[0x03, 0, 0, 0, 18], 0xFFFE);
    assert_eq!((sense[2], sense[12]), (5, 0x21));
}

#[test]
fn atapi_dma_read() {
    let mut r = Rig::new(64, 100);
    let prd: [(u32, u32); 1] = [(0x4000, 6144 | 0x8000_0000)];
    r.ram[0x1800..0x1804].copy_from_slice(&prd[0].0.to_le_bytes());
    r.ram[0x1804..0x1808].copy_from_slice(&prd[0].1.to_le_bytes());
    r.bm_out(8 + 4, 4, 0x1800);
    r.bm_out(8, 1, 0x08);
    r.outb(0x176, 0xA0);
    r.outb(0x171, 0x01); // DMA
    r.outb(0x177, 0xA0);
    assert_eq!(r.wait(0x170) & 0x08, 0x08);
    let cdb = [0x28u8, 0, 0, 0, 0, 40, 0, 0, 3, 0, 0, 0];
    for w in cdb.chunks(2) {
        r.outw(0x170, u16::from_le_bytes([w[0], w[1]]));
    }
    r.bm_out(8, 1, 0x09);
    let t = Instant::now();
    while !r.irq(15) {
        r.poll();
        r.ide.wait_io(Duration::from_millis(1));
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(r.bm_in(10) & 0x05, 0x04);
    assert_eq!(r.inb(0x177), 0x50);
    assert_eq!(r.inb(0x172) & 3, 3);
    for i in 0..3u32 {
        let a = 0x4000 + 2048 * i as usize;
        assert_eq!(&r.ram[a..a + 4], &(40 + i).to_le_bytes());
    }
}

#[test]
fn sense_after_eject_and_media_change() {
    let mut r = Rig::new(64, 100);
    let (_, s) = r.packet(&[0x00], 0xFFFE);
    assert_eq!(s & 0x01, 0, "TEST UNIT READY with a medium");
    let infos = r.ide.drives();
    assert_eq!(infos.iter().map(|b| b.device.as_str()).collect::<Vec<_>>(), ["ide0-hd0", "ide1-cd0"]);
    // the guest locks the tray: the monitor cannot eject
    r.packet(&[0x1E, 0, 0, 0, 1], 0xFFFE);
    assert!(r.ide.change_media("ide1-cd0", None).unwrap().is_err());
    let (ev, _) = r.packet(&[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8], 0xFFFE);
    assert_eq!(ev[4], 1, "eject request event");
    r.packet(&[0x1E, 0, 0, 0, 0], 0xFFFE);
    r.ide.change_media("ide1-cd0", None).unwrap().unwrap();
    assert!(r.ide.drives()[1].file.is_none());
    let (_, s) = r.packet(&[0x00], 0xFFFE);
    assert_eq!(s & 0x01, 0x01);
    assert_eq!(r.inb(0x171) >> 4, 2, "NOT READY");
    let (sense, _) = r.packet(&[0x03, 0, 0, 0, 18], 0xFFFE);
    assert_eq!((sense[2], sense[12], sense[13]), (2, 0x3A, 2), "medium not present, tray open");
    // insert: NOT READY once, then UNIT ATTENTION until REQUEST SENSE, then ready
    let iso = r._dir.0.join("cd.iso");
    r.ide.change_media("ide1-cd0", Some(&iso)).unwrap().unwrap();
    let (ev, _) = r.packet(&[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8], 0xFFFE);
    assert_eq!((ev[2], ev[4], ev[5]), (4, 2, 2), "new media event, media present");
    r.packet(&[0x00], 0xFFFE);
    let (sense, _) = r.packet(&[0x03, 0, 0, 0, 18], 0xFFFE);
    assert_eq!((sense[2], sense[12]), (2, 0x3A));
    r.packet(&[0x00], 0xFFFE);
    let (_, s) = r.packet(&[0x25], 0xFFFE);
    assert_eq!(s & 0x01, 0x01, "unit attention stays until REQUEST SENSE");
    let (sense, _) = r.packet(&[0x03, 0, 0, 0, 18], 0xFFFE);
    assert_eq!((sense[2], sense[12]), (6, 0x28));
    let (_, s) = r.packet(&[0x00], 0xFFFE);
    assert_eq!(s & 0x01, 0);
    // the guest ejects through START STOP UNIT
    r.packet(&[0x1B, 0, 0, 0, 0x02], 0xFFFE);
    let (_, s) = r.packet(&[0x00], 0xFFFE);
    assert_eq!(s & 0x01, 0x01);
    assert!(r.ide.change_media("ide0-hd0", None).unwrap().is_err(), "a hard disk is not removable");
    assert!(r.ide.change_media("ide1-cd1", None).is_none());
}

#[test]
fn save_and_restore_in_the_middle_of_a_read() {
    let mut r = Rig::new(4096, 16);
    r.lba28(300, 2);
    r.outb(0x1F7, 0x20);
    r.wait(0x1F0);
    let first = r.read_words(0x1F0, 100);
    let state = r.ide.save_state().unwrap();
    // a fresh controller with the same drives continues the transfer
    let disk = r.disk_path();
    let iso = r._dir.0.join("cd.iso");
    let mut ide = PiixIde::new();
    ide.attach_disk(0, medium(&disk, false)).unwrap();
    ide.attach_cdrom(2, Some(medium(&iso, true))).unwrap();
    ide.restore_state(&state).unwrap();
    r.ide = ide;
    let mut got = first;
    got.extend(r.read_words(0x1F0, 156));
    r.wait(0x1F0);
    got.extend(r.read_words(0x1F0, 256));
    assert_eq!(r.wait(0x1F0), 0x50);
    let want: Vec<u8> = (300 * 512..302 * 512).map(pattern).collect();
    assert_eq!(got, want);
    // saving while a request is out: it is drained and completed after the restore
    r.lba28(1000, 1);
    r.outb(0x1F7, 0x20);
    let state = r.ide.save_state().unwrap();
    let mut ide = PiixIde::new();
    ide.attach_disk(0, medium(&disk, false)).unwrap();
    ide.attach_cdrom(2, Some(medium(&iso, true))).unwrap();
    ide.restore_state(&state).unwrap();
    r.ide = ide;
    assert_eq!(r.wait(0x1F0) & 0x08, 0x08);
    let want: Vec<u8> = (1000 * 512..1001 * 512).map(pattern).collect();
    assert_eq!(r.read_words(0x1F0, 256), want);
    // a machine with other drives refuses the state
    let mut other = PiixIde::new();
    other.attach_cdrom(0, None).unwrap();
    assert!(other.restore_state(&state).is_err());
}

#[test]
fn geometry_guess_as_qemu() {
    let mut mbr = [0u8; 512];
    assert_eq!(ata::guess_geometry(131072, &mbr).heads, 16);
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    // a partition ending at head 254, sector 63 (255-head BIOS geometry): LARGE translation
    let p = 0x1BE;
    mbr[p + 5] = 254;
    mbr[p + 6] = 63;
    mbr[p + 12..p + 16].copy_from_slice(&129024u32.to_le_bytes());
    let g = ata::guess_geometry(131072, &mbr);
    assert_eq!((g.cylinders, g.heads, g.sectors, g.translation), (130, 16, 63, ata::Translation::Large));
    // a partition ending at head 3, sector 32: used as the physical geometry
    mbr[p + 5] = 3;
    mbr[p + 6] = 32;
    let g = ata::guess_geometry(131072, &mbr);
    assert_eq!((g.cylinders, g.heads, g.sectors, g.translation), (1024, 4, 32, ata::Translation::None));
    // big disks without a partition table: LBA translation
    let g = ata::guess_geometry(16 << 21, &[0u8; 512]);
    assert_eq!((g.cylinders, g.translation), (16383, ata::Translation::Lba));
}

#[test]
fn cmos_as_qemu() {
    let mut rtc = crate::rtc::Rtc::new(0);
    let g = ata::Geometry { cylinders: 130, heads: 16, sectors: 63, translation: ata::Translation::Large };
    crate::pc::cmos::fill_ide(&mut rtc, &[Some(g), None, None, Some(ata::Geometry { translation: ata::Translation::Lba, ..g })]);
    let c = &rtc.cmos;
    assert_eq!(c[0x12], 0xF0);
    assert_eq!(c[0x19], 47);
    assert_eq!(&c[0x1B..0x24], &[130, 0, 16, 0xFF, 0xFF, 0xC8, 130, 0, 63]);
    assert_eq!(c[0x39], 0b01_00_00_10);
}
