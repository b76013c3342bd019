//! QEMU's firmware configuration device ("fw_cfg"): selector port 0x510 (16-bit), data port 0x511
//! (8-bit), DMA interface at 0x514 (big-endian 64-bit address of a `FWCfgDmaAccess`, the write of
//! the low half at 0x518 starts it). SeaBIOS reads the machine description from it exactly as on
//! QEMU: signature, RAM size, CPU count, boot order, `etc/e820`, option ROMs in `genroms/`, and the
//! Linux kernel/initrd/command line for `linuxboot_dma.bin`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const PORT_SELECTOR: u16 = 0x510;
pub const PORT_DATA: u16 = 0x511;
pub const PORT_DMA: u16 = 0x514;

pub const SIGNATURE: u16 = 0x00;
pub const ID: u16 = 0x01;
pub const UUID: u16 = 0x02;
pub const RAM_SIZE: u16 = 0x03;
pub const NOGRAPHIC: u16 = 0x04;
pub const NB_CPUS: u16 = 0x05;
pub const MACHINE_ID: u16 = 0x06;
pub const KERNEL_ADDR: u16 = 0x07;
pub const KERNEL_SIZE: u16 = 0x08;
pub const KERNEL_CMDLINE: u16 = 0x09;
pub const INITRD_ADDR: u16 = 0x0a;
pub const INITRD_SIZE: u16 = 0x0b;
pub const BOOT_DEVICE: u16 = 0x0c;
pub const NUMA: u16 = 0x0d;
pub const BOOT_MENU: u16 = 0x0e;
pub const MAX_CPUS: u16 = 0x0f;
pub const KERNEL_ENTRY: u16 = 0x10;
pub const KERNEL_DATA: u16 = 0x11;
pub const INITRD_DATA: u16 = 0x12;
pub const CMDLINE_ADDR: u16 = 0x13;
pub const CMDLINE_SIZE: u16 = 0x14;
pub const CMDLINE_DATA: u16 = 0x15;
pub const SETUP_ADDR: u16 = 0x16;
pub const SETUP_SIZE: u16 = 0x17;
pub const SETUP_DATA: u16 = 0x18;
pub const FILE_DIR: u16 = 0x19;
pub const FILE_FIRST: u16 = 0x20;
pub const IRQ0_OVERRIDE: u16 = 0x8002;

const DMA_ERROR: u32 = 0x01;
const DMA_READ: u32 = 0x02;
const DMA_SKIP: u32 = 0x04;
const DMA_SELECT: u32 = 0x08;
const DMA_WRITE: u32 = 0x10;

/// "QEMU CFG" as the big-endian value read from the DMA port.
pub const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwCfg {
    /// Item contents by selector (files get selectors from 0x20 in name order).
    pub items: BTreeMap<u16, Vec<u8>>,
    pub files: BTreeMap<String, u16>,
    pub selector: u16,
    pub offset: u32,
    /// DMA address high half as written.
    pub dma_high: u32,
}

impl FwCfg {
    pub fn new() -> Self {
        let mut f = FwCfg::default();
        f.add(SIGNATURE, b"QEMU".to_vec());
        f.add(ID, 3u32.to_le_bytes().to_vec()); // traditional interface + DMA
        f
    }

    pub fn add(&mut self, sel: u16, data: Vec<u8>) {
        self.items.insert(sel, data);
        if sel != FILE_DIR {
            self.rebuild_dir();
        }
    }

    pub fn add_u16(&mut self, sel: u16, v: u16) {
        self.add(sel, v.to_le_bytes().to_vec())
    }
    pub fn add_u32(&mut self, sel: u16, v: u32) {
        self.add(sel, v.to_le_bytes().to_vec())
    }
    pub fn add_u64(&mut self, sel: u16, v: u64) {
        self.add(sel, v.to_le_bytes().to_vec())
    }

    /// Adds (or replaces) a named file.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) {
        assert!(name.len() < 56);
        let sel = match self.files.get(name) {
            Some(s) => *s,
            None => {
                // QEMU keeps the directory sorted by name; selectors follow insertion order
                let s = FILE_FIRST + self.files.len() as u16;
                self.files.insert(name.to_string(), s);
                s
            }
        };
        self.add(sel, data);
    }

    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).and_then(|s| self.items.get(s)).map(|v| v.as_slice())
    }

    fn rebuild_dir(&mut self) {
        let mut d = Vec::with_capacity(4 + 64 * self.files.len());
        d.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (name, sel) in &self.files {
            let len = self.items.get(sel).map_or(0, |v| v.len()) as u32;
            d.extend_from_slice(&len.to_be_bytes());
            d.extend_from_slice(&sel.to_be_bytes());
            d.extend_from_slice(&0u16.to_be_bytes());
            let mut n = [0u8; 56];
            n[..name.len()].copy_from_slice(name.as_bytes());
            d.extend_from_slice(&n);
        }
        self.items.insert(FILE_DIR, d);
    }

    fn select(&mut self, sel: u16) {
        self.selector = sel;
        self.offset = 0;
    }

    fn read_byte(&mut self) -> u8 {
        let b = self.items.get(&self.selector).and_then(|v| v.get(self.offset as usize)).copied();
        match b {
            Some(b) => {
                self.offset += 1;
                b
            }
            None => 0,
        }
    }

    pub fn io_read(&mut self, port: u16, width: u8) -> u32 {
        match port {
            PORT_DATA => {
                let mut v = 0u32;
                for i in 0..width.min(4) {
                    v |= (self.read_byte() as u32) << (8 * i);
                }
                v
            }
            // signature readable from the DMA register, big-endian
            0x514..=0x51B => {
                let sig = DMA_SIGNATURE.to_be_bytes();
                let off = (port - 0x514) as usize;
                let mut v = 0u32;
                for i in 0..width as usize {
                    v |= (*sig.get(off + i).unwrap_or(&0) as u32) << (8 * i);
                }
                v
            }
            _ => 0,
        }
    }

    /// Port write; the DMA kick (low half at 0x518) runs the transfer against `ram`.
    pub fn io_write(&mut self, port: u16, width: u8, value: u32, ram: &mut [u8]) {
        match (port, width) {
            (PORT_SELECTOR, _) => self.select(value as u16),
            (0x514, 4) => self.dma_high = u32::from_be(value),
            (0x518, 4) => {
                let addr = ((self.dma_high as u64) << 32) | u32::from_be(value) as u64;
                self.dma_high = 0;
                self.run_dma(addr, ram);
            }
            _ => {}
        }
    }

    /// Executes one `FWCfgDmaAccess { be32 control; be32 length; be64 address; }` at `desc`.
    pub fn run_dma(&mut self, desc: u64, ram: &mut [u8]) {
        let d = desc as usize;
        if d + 16 > ram.len() {
            return;
        }
        let rd32 = |ram: &[u8], o: usize| u32::from_be_bytes(ram[o..o + 4].try_into().unwrap());
        let mut control = rd32(ram, d);
        let len = rd32(ram, d + 4) as usize;
        let addr = u64::from_be_bytes(ram[d + 8..d + 16].try_into().unwrap()) as usize;
        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let mut status = 0;
        if control & DMA_READ != 0 {
            if addr.checked_add(len).is_none_or(|e| e > ram.len()) {
                status = DMA_ERROR;
            } else {
                for i in 0..len {
                    ram[addr + i] = self.read_byte();
                }
            }
        } else if control & DMA_SKIP != 0 {
            self.offset = self.offset.saturating_add(len as u32);
        } else if control & DMA_WRITE != 0 {
            // writable items are not supported (QEMU only allows a few); report an error
            status = DMA_ERROR;
        }
        control = status;
        ram[d..d + 4].copy_from_slice(&control.to_be_bytes());
    }
}

/// One `etc/e820` entry.
pub fn e820_entry(addr: u64, len: u64, kind: u32) -> [u8; 20] {
    let mut e = [0u8; 20];
    e[0..8].copy_from_slice(&addr.to_le_bytes());
    e[8..16].copy_from_slice(&len.to_le_bytes());
    e[16..20].copy_from_slice(&kind.to_le_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_and_file_dir_via_ports() {
        let mut f = FwCfg::new();
        f.add_file("etc/e820", e820_entry(0, 0x100_0000, 1).to_vec());
        f.add_file("bootorder", b"/rom@genroms/linuxboot_dma.bin\n".to_vec());
        let mut ram = vec![0u8; 0x1000];
        f.io_write(PORT_SELECTOR, 2, SIGNATURE as u32, &mut ram);
        let sig: Vec<u8> = (0..4).map(|_| f.io_read(PORT_DATA, 1) as u8).collect();
        assert_eq!(sig, b"QEMU");
        f.io_write(PORT_SELECTOR, 2, FILE_DIR as u32, &mut ram);
        let dir: Vec<u8> = (0..4 + 2 * 64).map(|_| f.io_read(PORT_DATA, 1) as u8).collect();
        assert_eq!(u32::from_be_bytes(dir[0..4].try_into().unwrap()), 2);
        // sorted by name: "bootorder" first
        assert_eq!(&dir[12..21], b"bootorder");
        assert_eq!(u16::from_be_bytes([dir[68 + 4], dir[68 + 5]]), FILE_FIRST);
        assert_eq!(u32::from_be_bytes(dir[68..72].try_into().unwrap()), 20);
    }

    #[test]
    fn dma_read_with_select() {
        let mut f = FwCfg::new();
        f.add_u64(RAM_SIZE, 0x0800_0000);
        let mut ram = vec![0u8; 0x1000];
        // descriptor at 0x100: select RAM_SIZE + read 8 bytes to 0x200
        let ctl = ((RAM_SIZE as u32) << 16) | DMA_SELECT | DMA_READ;
        ram[0x100..0x104].copy_from_slice(&ctl.to_be_bytes());
        ram[0x104..0x108].copy_from_slice(&8u32.to_be_bytes());
        ram[0x108..0x110].copy_from_slice(&0x200u64.to_be_bytes());
        assert_eq!(f.io_read(0x514, 4), u32::from_le_bytes(*b"QEMU"));
        f.io_write(0x514, 4, 0, &mut ram);
        f.io_write(0x518, 4, 0x100u32.to_be(), &mut ram);
        assert_eq!(&ram[0x100..0x104], &[0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(ram[0x200..0x208].try_into().unwrap()), 0x0800_0000);
    }
}
