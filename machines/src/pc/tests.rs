//! Board-level tests: drive the `pc` through the `Bus` exactly as SeaBIOS does, without a CPU.

use vessel_core::bus::{Bus, PageKind};

use super::*;

fn bios() -> Vec<u8> {
    // 128 KiB image whose bytes encode their offset, reset vector at the end
    let mut b: Vec<u8> = (0..0x20000u32).map(|i| (i >> 8) as u8 ^ i as u8).collect();
    b[0x1FFF0] = 0xEA;
    b
}

fn pc() -> Pc {
    Pc::new(PcConfig { bios: bios(), ram_size: 64 << 20, serial: SerialSink::Buffer(Vec::new()), ..Default::default() }).unwrap()
}

fn cfg_read(pc: &mut Pc, devfn: u32, reg: u32) -> u32 {
    pc.io_write(0xCF8, 4, 0x8000_0000 | (devfn << 8) | reg);
    pc.io_read(0xCFC, 4)
}

fn cfg_write(pc: &mut Pc, devfn: u32, reg: u32, width: u8, v: u32) {
    pc.io_write(0xCF8, 4, 0x8000_0000 | (devfn << 8) | (reg & !3));
    pc.io_write(0xCFC + (reg & 3) as u16, width, v);
}

#[test]
fn reset_vector_and_isa_bios_alias() {
    let mut pc = pc();
    assert_eq!(pc.mmio_read(0xFFFF_FFF0, 1), 0xEA);
    assert_eq!(pc.page_kind(0xFFFFF), PageKind::Mmio);
    assert_eq!(pc.page_kind(0xF0), PageKind::Mmio);
    assert_eq!(pc.mmio_read(0xFFFF0, 1), 0xEA, "isa-bios shows the top 128 KiB at 0xE0000");
    assert_eq!(pc.mmio_read(0xE0123, 2), pc.mmio_read(0xFFFE_0123, 2));
    assert_eq!(pc.page_kind(0x9F), PageKind::Ram);
    assert_eq!(pc.page_kind((64 << 20 >> 12) - 1), PageKind::Ram);
    assert_eq!(pc.page_kind(64 << 20 >> 12), PageKind::Mmio);
}

#[test]
fn pci_enumeration_sees_the_qemu_chipset() {
    let mut pc = pc();
    assert_eq!(cfg_read(&mut pc, 0x00, 0), 0x1237_8086);
    assert_eq!(cfg_read(&mut pc, 0x08, 0), 0x7000_8086);
    assert_eq!(cfg_read(&mut pc, 0x08, 0x0C) >> 16 & 0xFF, 0x80, "PIIX3 is multi-function");
    assert_eq!(cfg_read(&mut pc, 0x0B, 0), 0x7113_8086);
    assert_eq!(cfg_read(&mut pc, 0x10, 0), 0xFFFF_FFFF, "empty slot");
    // byte access at 0xCFE reads the device id's low byte
    pc.io_write(0xCF8, 4, 0x8000_0000);
    assert_eq!(pc.io_read(0xCFE, 1), 0x37);
    assert_eq!(pc.io_read(0xCF8, 4), 0x8000_0000);
}

#[test]
fn seabios_shadowing_sequence() {
    let mut pc = pc();
    let gen0 = pc.map_generation();
    // make_bios_writable: PAM1..6 = 0x33, PAM0 = 0x30 (dword writes at 0x58/0x5C)
    let d0 = cfg_read(&mut pc, 0, 0x58);
    cfg_write(&mut pc, 0, 0x58, 4, (d0 & 0xFF) | 0x3333_3000);
    cfg_write(&mut pc, 0, 0x5C, 4, 0x3333_3333);
    assert!(pc.map_generation() > gen0);
    assert_eq!(pc.page_kind(0xF0), PageKind::Ram);
    assert_eq!(pc.page_kind(0xC0), PageKind::Ram);
    // shadow RAM starts empty; the BIOS copies itself from the high alias
    let top = pc.mmio_read(0xFFFF_FFF0, 1) as u8;
    pc.ram()[0xFFFF0] = top;
    // make_bios_readonly: PAM0 = 0x10 (read RAM, write to ROM side)
    cfg_write(&mut pc, 0, 0x59, 1, 0x10);
    assert_eq!(pc.page_kind(0xF0), PageKind::RamReadOnly);
    pc.mmio_write(0xFFFF0, 1, 0x00);
    assert_eq!(pc.ram()[0xFFFF0], 0xEA, "writes to read-only shadow are dropped");
    // SMRAM D_OPEN maps the A/B segment to RAM
    cfg_write(&mut pc, 0, 0x72, 1, 0x4A);
    assert_eq!(pc.page_kind(0xA0), PageKind::Ram);
    cfg_write(&mut pc, 0, 0x72, 1, 0x0A);
    assert_eq!(pc.page_kind(0xA0), PageKind::Mmio);
}

#[test]
fn fw_cfg_tells_ram_size_and_e820() {
    let mut pc = pc();
    pc.io_write(0x510, 2, fw_cfg::RAM_SIZE as u32);
    let mut v = 0u64;
    for i in 0..8 {
        v |= (pc.io_read(0x511, 1) as u64) << (8 * i);
    }
    assert_eq!(v, 64 << 20);
    let e820 = pc.fw_cfg.file("etc/e820").unwrap().to_vec();
    assert_eq!(e820, fw_cfg::e820_entry(0, 64 << 20, 1));
    // CMOS as QEMU fills it: 63 MiB of extended memory, 48 MiB above 16 MiB in 64K units
    for (reg, want) in [(0x17u8, 0x00u8), (0x18, 0xFC), (0x34, 0x00), (0x35, 0x03), (0x15, 0x80), (0x16, 0x02)] {
        pc.io_write(0x70, 1, reg as u32);
        assert_eq!(pc.io_read(0x71, 1) as u8, want, "CMOS {reg:#x}");
    }
}

#[test]
fn pm_timer_runs_on_the_virtual_clock() {
    let mut pc = pc();
    cfg_write(&mut pc, 0x0B, 0x40, 4, 0x601);
    cfg_write(&mut pc, 0x0B, 0x80, 1, 0x01);
    let t0 = pc.io_read(0x608, 4);
    pc.advance(100_000); // 1 ms at 10 ns per instruction
    let t1 = pc.io_read(0x608, 4);
    assert_eq!(t1 - t0, 3579, "3.579545 MHz");
    // S5 power-off
    pc.io_write(0x604, 2, 1 << 13);
    assert_eq!(pc.exit, Some(MachineExit::PowerOff));
}

#[test]
fn pit_irq0_reaches_intr_and_idle_skips_to_it() {
    let mut pc = pc();
    for (port, v) in [(0x20u16, 0x11u8), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00)] {
        pc.io_write(port, 1, v as u32);
    }
    // 18.2 Hz as the BIOS programs it
    pc.io_write(0x43, 1, 0x34);
    pc.io_write(0x40, 1, 0);
    pc.io_write(0x40, 1, 0);
    assert!(!pc.intr_pending());
    let budget = pc.slice_budget();
    assert!(budget <= clock::MAX_SLICE_NS / 10);
    assert!(pc.idle());
    let t = pc.clock.now_ns();
    assert!((54_900_000..54_950_000).contains(&t), "{t}");
    assert!(pc.intr_pending());
    assert_eq!(pc.intr_ack(), 0x08);
    pc.io_write(0x20, 1, 0x20);
    assert!(!pc.intr_pending());
    assert!(pc.idle());
    assert!(pc.intr_pending(), "periodic");
}

#[test]
fn a20_gates_and_debug_ports() {
    let mut pc = pc();
    let g = pc.map_generation();
    pc.io_write(0x92, 1, 0);
    assert_eq!(pc.a20_mask(), !(1 << 20));
    assert!(pc.map_generation() > g);
    pc.io_write(0x64, 1, 0xD1);
    pc.io_write(0x60, 1, 0x03);
    assert_eq!(pc.a20_mask(), u64::MAX);
    for b in b"SeaBIOS" {
        pc.io_write(0x402, 1, *b as u32);
    }
    pc.io_write(0x3F8, 1, b'x' as u32);
    assert_eq!(pc.serial_output(), b"x");
    pc.io_write(0x501, 1, 0x31);
    assert_eq!(pc.exit, Some(MachineExit::DebugExit(0x63)));
}

#[test]
fn cmos_boot_order_as_qemu() {
    let mut pc = pc();
    for (reg, want) in [(0x3Du8, 0x12u8), (0x38, 0x30)] {
        pc.io_write(0x70, 1, 0x80 | reg as u32);
        assert_eq!(pc.io_read(0x71, 1) as u8, want, "CMOS {reg:#x}");
    }
}

#[test]
fn acpi_enable_through_smi_cmd_sets_sci_en() {
    let mut pc = pc();
    cfg_write(&mut pc, 0x0B, 0x40, 4, 0x601);
    cfg_write(&mut pc, 0x0B, 0x80, 1, 0x01);
    assert_eq!(pc.io_read(0x604, 2) & 1, 0);
    pc.io_write(0xB2, 1, 0xF1);
    assert_eq!(pc.io_read(0x604, 2) & 1, 1);
    pc.io_write(0xB2, 1, 0xF0);
    assert_eq!(pc.io_read(0x604, 2) & 1, 0);
}

#[test]
fn floppy_controller_ports_irq6_and_cmos() {
    let mut pc = pc();
    let mut fdc = crate::fdc::Fdc::new();
    fdc.attach(0, None);
    pc.add_fdc(fdc);
    assert_eq!(pc.rtc.cmos[0x10], 0x50, "empty drive A: 2.88M type, as QEMU");
    assert_eq!(pc.rtc.cmos[0x14] & 0xC1, 0x01, "one floppy drive");
    // unmask IRQ 6 (master PIC initialised as SeaBIOS does)
    for (p, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, !0x40u8 as u32)] {
        pc.io_write(p, 1, v);
    }
    assert_eq!(pc.io_read(0x3F4, 1), 0x80, "MSR through the board");
    assert_eq!(pc.io_read(0x3F6, 1), 0xFF, "0x3F6 is not the FDC's");
    pc.io_write(0x3F2, 1, 0x00);
    assert!(!pc.intr_pending());
    pc.io_write(0x3F2, 1, 0x0C);
    assert!(pc.intr_pending(), "reset interrupt on IRQ 6");
    assert_eq!(pc.intr_ack(), 0x08 + 6);
    pc.io_write(0x3F5, 1, 0x08);
    assert_eq!(pc.io_read(0x3F5, 1), 0xC0);
    assert_eq!(pc.io_read(0x3F7, 1) & 0x80, 0x80, "disk change: drive empty");
    // the engine's media interface (monitor `info block`, `change`, `eject`)
    let info = pc.block_info();
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].device.as_str(), info[0].removable, info[0].file.is_none()), ("floppy0", true, true));
    let img = std::env::temp_dir().join(format!("vessel-pc-floppy-{}.img", std::process::id()));
    std::fs::write(&img, vec![0xF6u8; 1_474_560]).unwrap();
    pc.change_media("floppy0", Some(&img)).unwrap();
    assert_eq!(pc.block_info()[0].file.as_deref(), Some(img.as_path()));
    assert!(pc.change_media("floppy1", None).is_err(), "no drive B");
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let e = pc.change_media("floppy0", Some(&img)).unwrap_err().to_string();
    assert!(e.contains(&*img.to_string_lossy()) && e.contains("4096 bytes"), "{e}");
    let _ = std::fs::remove_file(&img);
    pc.change_media("floppy0", None).unwrap();
    assert_eq!(pc.block_info()[0].file, None);
}

/// `system_powerdown`: the power button raises the SCI (IRQ 9) once ACPI mode and PWRBTN_EN are
/// on, and writing 1 to PWRBTN_STS lowers it, as Linux's ACPI driver does.
#[test]
fn power_button_raises_sci_on_irq9() {
    let mut pc = pc();
    cfg_write(&mut pc, 0x0B, 0x40, 4, 0x601);
    cfg_write(&mut pc, 0x0B, 0x80, 1, 1);
    pc.pm.press_power_button();
    pc.update_ext_irqs();
    assert_eq!(pc.io_read(0x600, 2) & 0x100, 0x100, "PWRBTN_STS");
    assert_eq!(pc.pic.chips[1].lines & 0x02, 0, "no SCI before ACPI mode and PWRBTN_EN");
    pc.io_write(0x604, 2, 1); // SCI_EN (what the ACPI enable SMI does)
    pc.io_write(0x602, 2, 0x100); // PWRBTN_EN
    assert_eq!(pc.pic.chips[1].lines & 0x02, 0x02, "SCI asserted");
    pc.io_write(0x600, 2, 0x100); // acknowledge
    assert_eq!(pc.io_read(0x600, 2) & 0x100, 0);
    assert_eq!(pc.pic.chips[1].lines & 0x02, 0, "SCI released");
}
