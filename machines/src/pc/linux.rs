//! `-kernel/-initrd/-append`: lay a bzImage out in fw_cfg the way QEMU's `x86_load_linux` does,
//! for Debian's `linuxboot_dma.bin` option ROM (which SeaBIOS runs first through `bootorder`).

use super::LinuxBoot;
use crate::fw_cfg::{self, FwCfg};

/// Bytes reserved at the top of RAM for ACPI tables, kept free of the initrd (as QEMU).
const ACPI_DATA_SIZE: u64 = 0x20000 + 0x8000;

fn rd16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn wr16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes())
}
fn wr32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes())
}

pub fn load(f: &mut FwCfg, l: &LinuxBoot, ram: u64) -> Result<(), String> {
    let k = &l.kernel;
    if k.len() < 0x1000 || &k[0x202..0x206] != b"HdrS" {
        return Err("not a Linux bzImage (no HdrS header)".into());
    }
    let protocol = rd16(k, 0x206);
    if protocol < 0x200 {
        return Err(format!("boot protocol {protocol:#x} too old"));
    }
    let loaded_high = k[0x211] & 1 != 0;
    let cmdline_size = l.cmdline.len() as u32 + 1;
    let (real_addr, cmdline_addr, prot_addr) = if !loaded_high {
        (0x90000u32, 0x9A000 - cmdline_size, 0x10000u32)
    } else if protocol < 0x202 {
        (0x90000, 0x9A000 - cmdline_size, 0x100000)
    } else {
        (0x10000, 0x20000, 0x100000)
    };
    let mut initrd_max = if protocol >= 0x203 { rd32(k, 0x22C) as u64 } else { 0x37FF_FFFF };
    if initrd_max >= ram - ACPI_DATA_SIZE {
        initrd_max = ram - ACPI_DATA_SIZE - 1;
    }
    let mut setup_sects = k[0x1F1] as usize;
    if setup_sects == 0 {
        setup_sects = 4;
    }
    let setup_size = (setup_sects + 1) * 512;
    if setup_size > k.len() {
        return Err("setup larger than the kernel file".into());
    }
    let mut setup = k[..setup_size].to_vec();
    if protocol >= 0x202 {
        wr32(&mut setup, 0x228, cmdline_addr);
    } else {
        wr16(&mut setup, 0x20, 0xA33F);
        wr16(&mut setup, 0x22, (cmdline_addr - real_addr) as u16);
    }
    setup[0x210] = 0xB0; // type_of_loader: QEMU
    if protocol >= 0x201 {
        setup[0x211] |= 0x80; // CAN_USE_HEAP
        wr16(&mut setup, 0x224, (cmdline_addr - real_addr - 0x200) as u16);
    }
    if let Some(initrd) = &l.initrd {
        if protocol < 0x200 {
            return Err("kernel too old for an initrd".into());
        }
        let size = initrd.len() as u64;
        if size >= initrd_max {
            return Err(format!("initrd of {size} bytes does not fit below {initrd_max:#x}"));
        }
        let addr = (initrd_max - size) & !4095;
        f.add_u32(fw_cfg::INITRD_ADDR, addr as u32);
        f.add_u32(fw_cfg::INITRD_SIZE, size as u32);
        f.add(fw_cfg::INITRD_DATA, initrd.clone());
        wr32(&mut setup, 0x218, addr as u32);
        wr32(&mut setup, 0x21C, size as u32);
    }
    let mut cmdline = l.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    f.add_u32(fw_cfg::CMDLINE_ADDR, cmdline_addr);
    f.add_u32(fw_cfg::CMDLINE_SIZE, cmdline.len() as u32);
    f.add(fw_cfg::CMDLINE_DATA, cmdline);
    let kernel = k[setup_size..].to_vec();
    f.add_u32(fw_cfg::KERNEL_ADDR, prot_addr);
    f.add_u32(fw_cfg::KERNEL_SIZE, kernel.len() as u32);
    f.add(fw_cfg::KERNEL_DATA, kernel);
    f.add_u32(fw_cfg::SETUP_ADDR, real_addr);
    f.add_u32(fw_cfg::SETUP_SIZE, setup.len() as u32);
    f.add(fw_cfg::SETUP_DATA, setup);
    f.add_file("genroms/linuxboot_dma.bin", l.option_rom.clone());
    f.add_file("bootorder", b"/rom@genroms/linuxboot_dma.bin\0".to_vec());
    Ok(())
}
