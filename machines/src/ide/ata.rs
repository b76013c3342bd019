//! ATA hard disk: geometry, IDENTIFY DEVICE data and the register conventions of the ATA
//! command set (CHS / LBA28 / LBA48 addressing). The command flow lives in `channel.rs`.
//!
//! Geometry follows QEMU's guess (`hd_geometry_guess`) so the CMOS, the BIOS's int 13h view and
//! IDENTIFY words 1/3/6 agree with QEMU for the same image: if the MBR has a partition whose end
//! head is not 0, its end head + 1 and end sector give heads and sectors per track (cylinders =
//! size / (heads * sectors), 1..=16383); with more than 16 heads, or without such a partition,
//! the physical geometry is 16 heads, 63 sectors and size / (16 * 63) cylinders (2..=16383).

use serde::{Deserialize, Serialize};

pub const SECTOR: usize = 512;
/// Sectors per DRQ block READ/WRITE MULTIPLE allows (IDENTIFY word 47), as QEMU.
pub const MAX_MULT: u16 = 16;

/// BIOS translation (CMOS 0x39, two bits per drive), as QEMU's `BIOS_ATA_TRANSLATION_*` - 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Translation {
    None = 0,
    Lba = 1,
    Large = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
    pub translation: Translation,
}

fn chs_for_size(total: u64) -> (u16, u8, u8) {
    let c = (total / (16 * 63)).clamp(2, 16383);
    (c as u16, 16, 63)
}

/// Geometry of a disk of `total` sectors whose first sector is `mbr` (QEMU's guess).
pub fn guess_geometry(total: u64, mbr: &[u8; 512]) -> Geometry {
    let lchs = (mbr[510] == 0x55 && mbr[511] == 0xAA)
        .then(|| {
            (0..4).find_map(|i| {
                let p = &mbr[0x1BE + 16 * i..0x1BE + 16 * (i + 1)];
                let nr = u32::from_le_bytes(p[12..16].try_into().unwrap());
                let end_head = p[5];
                if nr == 0 || end_head == 0 {
                    return None;
                }
                let heads = end_head as u64 + 1;
                let secs = (p[6] & 63) as u64;
                if secs == 0 {
                    return None;
                }
                let cyls = total / (heads * secs);
                (1..=16383).contains(&cyls).then_some((cyls as u16, heads as u32, secs as u8))
            })
        })
        .flatten();
    match lchs {
        None => {
            let (c, h, s) = chs_for_size(total);
            let t = if c <= 1024 { Translation::None } else { Translation::Lba };
            Geometry { cylinders: c, heads: h, sectors: s, translation: t }
        }
        Some((_, h, _)) if h > 16 => {
            let (c, h, s) = chs_for_size(total);
            let t = if c as u32 * h as u32 <= 131072 { Translation::Large } else { Translation::Lba };
            Geometry { cylinders: c, heads: h, sectors: s, translation: t }
        }
        Some((c, h, s)) => Geometry { cylinders: c, heads: h as u8, sectors: s, translation: Translation::None },
    }
}

/// ATA string: `len` bytes, space padded, two characters per word with the first in the high
/// byte (IDENTIFY's byte order).
pub fn put_string(id: &mut [u16], word: usize, len: usize, s: &str) {
    let b: Vec<u8> = s.bytes().chain(std::iter::repeat(b' ')).take(len).collect();
    for i in 0..len / 2 {
        id[word + i] = (b[2 * i] as u16) << 8 | b[2 * i + 1] as u16;
    }
}

/// Firmware revision both drive kinds report (QEMU's `hw_version` for current machine types).
pub const FIRMWARE: &str = "2.5+";

/// Transfer mode chosen with SET FEATURES 03h (for IDENTIFY words 62/63/88).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum XferMode {
    #[default]
    Pio,
    Mwdma(u8),
    Udma(u8),
}

impl XferMode {
    /// From the SET FEATURES 03h sector count value. `None`: not a mode the drive has.
    pub fn from_setting(v: u8) -> Option<XferMode> {
        match v >> 3 {
            0 | 1 => Some(XferMode::Pio), // PIO default / PIO n (flow control)
            4 if v & 7 <= 2 => Some(XferMode::Mwdma(v & 7)),
            8 if v & 7 <= 5 => Some(XferMode::Udma(v & 7)),
            2 if v & 7 <= 2 => Some(XferMode::Pio), // single-word DMA: accepted, reported as not selected
            _ => None,
        }
    }

    /// IDENTIFY words 63 and 88 with the supported modes and the selected one.
    pub fn words(self) -> (u16, u16) {
        match self {
            XferMode::Pio => (0x07, 0x3F),
            XferMode::Mwdma(n) => (0x07 | (1 << (8 + n)), 0x3F),
            XferMode::Udma(n) => (0x07, 0x3F | (1 << (8 + n))),
        }
    }
}

/// IDENTIFY DEVICE for a disk of `total` sectors (the layout QEMU's `ide-hd` reports).
pub fn identify_disk(total: u64, geo: &Geometry, serial: &str, model: &str, mult: u16, mode: XferMode, write_cache: bool) -> [u16; 256] {
    let mut id = [0u16; 256];
    let (c, h, s) = (geo.cylinders as u16, geo.heads as u16, geo.sectors as u16);
    id[0] = 0x0040; // fixed disk
    id[1] = c;
    id[3] = h;
    id[4] = 512 * s;
    id[5] = 512;
    id[6] = s;
    put_string(&mut id, 10, 20, serial);
    id[20] = 3; // buffer type
    id[21] = 512; // cache size in sectors
    id[22] = 4; // ECC bytes
    put_string(&mut id, 23, 8, FIRMWARE);
    put_string(&mut id, 27, 40, model);
    id[47] = 0x8000 | MAX_MULT;
    id[48] = 1; // dword I/O
    id[49] = (1 << 11) | (1 << 9) | (1 << 8); // IORDY, LBA, DMA
    id[51] = 0x200;
    id[52] = 0x200;
    id[53] = 1 | (1 << 1) | (1 << 2); // words 54-58, 64-70 and 88 valid
    id[54] = c;
    id[55] = h;
    id[56] = s;
    let chs = c as u32 * h as u32 * s as u32;
    id[57] = chs as u16;
    id[58] = (chs >> 16) as u16;
    if mult != 0 {
        id[59] = 0x100 | mult;
    }
    let lba28 = total.min(0x0FFF_FFFF) as u32;
    id[60] = lba28 as u16;
    id[61] = (lba28 >> 16) as u16;
    let (w63, w88) = mode.words();
    id[62] = 0x07;
    id[63] = w63;
    id[64] = 0x03; // PIO 3 and 4
    id[65] = 120;
    id[66] = 120;
    id[67] = 120;
    id[68] = 120;
    id[80] = 0xF0; // ATA-4 .. ATA-7
    id[81] = 0x16;
    id[82] = (1 << 14) | (1 << 5); // NOP, write cache
    id[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10); // FLUSH CACHE EXT, FLUSH CACHE, LBA48
    id[84] = 1 << 14;
    id[85] = (1 << 14) | if write_cache { 1 << 5 } else { 0 };
    id[86] = (1 << 13) | (1 << 12) | (1 << 10);
    id[87] = 1 << 14;
    id[88] = w88;
    id[93] = 1 | (1 << 14) | 0x2000; // hardware reset result, 80-conductor cable
    for i in 0..4 {
        id[100 + i] = (total >> (16 * i)) as u16;
    }
    id
}

/// IDENTIFY PACKET DEVICE for the CD-ROM.
pub fn identify_cdrom(serial: &str, model: &str, mode: XferMode) -> [u16; 256] {
    let mut id = [0u16; 256];
    // ATAPI, CD-ROM, removable, accelerated DRQ, 12-byte packets
    id[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
    put_string(&mut id, 10, 20, serial);
    id[20] = 3;
    id[21] = 512;
    id[22] = 4;
    put_string(&mut id, 23, 8, FIRMWARE);
    put_string(&mut id, 27, 40, model);
    id[48] = 1;
    id[49] = (1 << 9) | (1 << 8); // LBA, DMA
    id[53] = 7;
    let (w63, w88) = mode.words();
    id[62] = 7;
    id[63] = w63;
    id[64] = 3;
    id[65] = 0xB4;
    id[66] = 0xB4;
    id[67] = 0x12C;
    id[68] = 0xB4;
    id[71] = 30;
    id[72] = 30;
    id[80] = 0x1E; // ATA/ATAPI-1 .. 4
    id[88] = w88;
    id
}

pub fn to_bytes(id: &[u16; 256]) -> Vec<u8> {
    id.iter().flat_map(|w| w.to_le_bytes()).collect()
}
