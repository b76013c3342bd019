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
