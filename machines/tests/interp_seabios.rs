//! Debian's SeaBIOS on the `pc` board with Vessel's interpreter as the CPU: from the reset vector
//! through real mode, the switch to 32-bit protected mode, PCI enumeration, relocation, option
//! ROM scan and the sercon console to "No bootable device" (the same checks as the KVM run in
//! `kvm_seabios.rs`).

use vessel_core::cpu::{Cpu, RunExit};
use vessel_machines::pc::{Pc, PcConfig};
use vessel_machines::serial::SerialSink;

#[test]
fn seabios_boots_on_the_interpreter() {
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
    let mut cpu = Cpu::new();
    let mut done = 0u64;
    while done < 100_000_000 {
        if String::from_utf8_lossy(pc.debugcon_output()).contains("No bootable device") {
            break;
        }
        let before = cpu.instructions_retired();
        let slice = pc.slice_budget().min(100_000);
        let e = cpu.run(&mut pc, slice);
        let ran = cpu.instructions_retired() - before;
        done += ran;
        pc.advance(ran);
        match e {
            RunExit::Halted => assert!(pc.idle(), "halted with no timer armed"),
            RunExit::Shutdown => panic!("triple fault at {:x?}", cpu.state().eip),
            _ => {}
        }
    }
    let log = String::from_utf8_lossy(pc.debugcon_output()).into_owned();
    let serial = String::from_utf8_lossy(pc.serial_output()).into_owned();
    for line in [
        "SeaBIOS (version",
        "Running on QEMU (i440fx)",
        "Found QEMU fw_cfg",
        "qemu/e820: addr 0x0000000000000000 len 0x0000000004000000 [RAM]",
        "Relocating init from",
        "PCI: init bdf=00:00.0 id=8086:1237",
        "PCI: init bdf=00:01.3 id=8086:7113",
        "Using pmtimer, ioport 0xb008",
        "sercon: using ioport 0x3f8",
        "PS2 keyboard initialized",
        "All threads complete.",
        "No bootable device",
    ] {
        assert!(log.contains(line), "SeaBIOS log lacks {line:?}:\n{log}");
    }
    assert!(serial.contains("SeaBIOS (version"), "no banner on COM1:\n{serial}");
    assert_eq!((0..4).map(|n| pc.piix3.pirq_route(n)).collect::<Vec<_>>(), [Some(10), Some(10), Some(11), Some(11)]);
}
