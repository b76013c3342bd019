//! Debian's SeaBIOS on the `pc` board with KVM as the CPU: checks the device models against the
//! real firmware independently of Vessel's interpreter (the interpreter's own boot test is
//! `tests/seabios.rs`). Needs /dev/kvm (present on the CI machines).

use std::time::Duration;

use vessel_machines::pc::{Pc, PcConfig};
use vessel_machines::serial::SerialSink;

mod kvm;

#[test]
fn seabios_initialises_the_board_under_kvm() {
    let bios = std::fs::read("/usr/share/seabios/bios.bin").expect("seabios installed (scripts/setup-debian)");
    let mut pc = Pc::new(PcConfig {
        ram_size: 64 << 20,
        bios,
        graphics: false,
        serial: SerialSink::Buffer(Vec::new()),
        debugcon: SerialSink::Buffer(Vec::new()),
        ..Default::default()
    })
    .unwrap();
    let report = kvm::run_on_kvm(&mut pc, Duration::from_secs(30), |pc| {
        String::from_utf8_lossy(pc.debugcon_output()).contains("No bootable device")
    });
    let log = String::from_utf8_lossy(pc.debugcon_output()).into_owned();
    let serial = String::from_utf8_lossy(pc.serial_output()).into_owned();
    println!("{report}");
    for line in [
        "SeaBIOS (version",
        "Running on QEMU (i440fx)",
        "Found QEMU fw_cfg",
        "QEMU fw_cfg DMA interface supported",
        "qemu/e820: addr 0x0000000000000000 len 0x0000000004000000 [RAM]",
        "PCI: init bdf=00:00.0 id=8086:1237",
        "PCI: init bdf=00:01.0 id=8086:7000",
        "PIIX3/PIIX4 init: elcr=00 0c",
        "PCI: init bdf=00:01.3 id=8086:7113",
        "Using pmtimer, ioport 0xb008",
        "sercon: using ioport 0x3f8",
        "Found 1 serial ports",
        "PS2 keyboard initialized",
        "No bootable device",
    ] {
        assert!(log.contains(line), "SeaBIOS log lacks {line:?}:\n{log}");
    }
    assert!(serial.contains("SeaBIOS (version"), "no banner on COM1:\n{serial}");
    // the PIIX3 PIRQ routing SeaBIOS programs (10, 10, 11, 11) is what the board decodes
    assert_eq!((0..4).map(|n| pc.piix3.pirq_route(n)).collect::<Vec<_>>(), [Some(10), Some(10), Some(11), Some(11)]);
}
