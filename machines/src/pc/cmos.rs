//! CMOS contents the way QEMU's `pc_cmos_init` fills them (SeaBIOS reads RAM size and boot order
//! from here when fw_cfg does not say otherwise).

use crate::rtc::Rtc;

pub fn fill(rtc: &mut Rtc, ram: u64, cpus: u16, boot_order: &str) {
    let c = &mut rtc.cmos;
    // base memory: 640 KiB
    c[0x15] = 0x80;
    c[0x16] = 0x02;
    // extended memory above 1 MiB in KiB, saturating at 65535
    let ext = ((ram / 1024).saturating_sub(1024)).min(65535) as u16;
    c[0x17] = ext as u8;
    c[0x18] = (ext >> 8) as u8;
    c[0x30] = ext as u8;
    c[0x31] = (ext >> 8) as u8;
    // memory above 16 MiB in 64 KiB units
    let above16 = (ram.saturating_sub(16 << 20) / 65536).min(65535) as u16;
    c[0x34] = above16 as u8;
    c[0x35] = (above16 >> 8) as u8;
    // memory above 4 GiB (none on this board)
    c[0x5B] = 0;
    c[0x5C] = 0;
    c[0x5D] = 0;
    c[0x5F] = cpus.saturating_sub(1) as u8;
    // equipment byte: FPU present, PS/2 mouse; floppy bits are set when a drive is attached
    c[0x14] = 0x02 | 0x04;
    // boot devices: 1 floppy, 2 disk, 3 CD-ROM, 4 network
    let dev = |ch: u8| match ch {
        b'a' => 1u8,
        b'c' => 2,
        b'd' => 3,
        b'n' => 4,
        _ => 0,
    };
    let b: Vec<u8> = boot_order.bytes().map(dev).chain(std::iter::repeat(0)).take(3).collect();
    c[0x3D] = b[0] | (b[1] << 4);
    c[0x38] = b[2] << 4; // bit 0 clear: check the floppy boot signature (QEMU default)
}

/// Floppy drive types (byte 0x10: drive A in the high nibble; 2 = 1.2M, 4 = 1.44M, 5 = 2.88M)
/// and the equipment byte's floppy bits (bit 0: drives present, bits 6-7: count - 1), as QEMU's
/// `pc_cmos_init_floppy`.
pub fn set_floppy(rtc: &mut Rtc, types: u8, drives: usize) {
    let c = &mut rtc.cmos;
    c[0x10] = types;
    c[0x14] = (c[0x14] & !0xC1)
        | match drives {
            0 => 0,
            1 => 0x01,
            _ => 0x41,
        };
}

/// IDE hard disks as QEMU's `pc_cmos_init_late` records them: 0x12 drive types (0xF0 / 0x0F
/// for ide0-hd0 / ide0-hd1: "type 47, see 0x19/0x1A"), 0x19/0x1A = 47, the user-defined type
/// blocks at 0x1B (hd0) and 0x24 (hd1) with the physical geometry, and 0x39 the BIOS
/// translation of all four IDE positions (2 bits each: 0 none, 1 LBA, 2 large).
pub fn fill_ide(rtc: &mut Rtc, disks: &[Option<crate::ide::ata::Geometry>; 4]) {
    let c = &mut rtc.cmos;
    let mut types = 0u8;
    for (unit, (type_ofs, info)) in [(0x19usize, 0x1Busize), (0x1A, 0x24)].into_iter().enumerate() {
        let Some(g) = disks[unit] else { continue };
        types |= if unit == 0 { 0xF0 } else { 0x0F };
        c[type_ofs] = 47;
        c[info] = g.cylinders as u8;
        c[info + 1] = (g.cylinders >> 8) as u8;
        c[info + 2] = g.heads;
        c[info + 3] = 0xFF; // write precompensation: none
        c[info + 4] = 0xFF;
        c[info + 5] = 0xC0 | (((g.heads > 8) as u8) << 3);
        c[info + 6] = g.cylinders as u8; // landing zone
        c[info + 7] = (g.cylinders >> 8) as u8;
        c[info + 8] = g.sectors;
    }
    c[0x12] = types;
    let mut trans = 0u8;
    for (i, g) in disks.iter().enumerate() {
        if let Some(g) = g {
            trans |= (g.translation as u8) << (2 * i);
        }
    }
    c[0x39] = trans;
}

impl super::Pc {
    /// Record the IDE hard disks (index 0..=3) in the CMOS, as QEMU does.
    pub fn set_ide_cmos(&mut self, disks: &[Option<crate::ide::ata::Geometry>; 4]) {
        fill_ide(&mut self.rtc, disks);
    }
}
