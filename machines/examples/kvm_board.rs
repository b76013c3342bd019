//! Diagnostic: run the `pc` board with KVM as the CPU (no in-kernel irqchip: every port, MMIO
//! access and interrupt goes through the board), so device models can be checked against real
//! firmware independently of Vessel's interpreter. Time is the host clock here.
//!
//! `cargo run -p vessel-machines --example kvm_board -- /usr/share/seabios/bios.bin [seconds]`
//! prints SeaBIOS's debug console (0x402) and COM1 output.

use std::time::Duration;

use vessel_machines::pc::{Pc, PcConfig};
use vessel_machines::serial::SerialSink;

#[path = "../tests/kvm/mod.rs"]
mod kvm;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bios = std::fs::read(args.get(1).map(String::as_str).unwrap_or("/usr/share/seabios/bios.bin")).unwrap();
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let mut pc = Pc::new(PcConfig {
        ram_size: std::env::var("MEM").ok().and_then(|m| m.parse::<u64>().ok()).unwrap_or(64) << 20,
        bios,
        graphics: false,
        serial: SerialSink::Stdout,
        debugcon: SerialSink::Writer(Box::new(std::io::stderr())),
        // KERNEL=bzImage [INITRD=file] [APPEND=cmdline]: boot Linux through linuxboot_dma.bin
        linux: std::env::var("KERNEL").ok().map(|k| vessel_machines::pc::LinuxBoot {
            kernel: std::fs::read(k).unwrap(),
            initrd: std::env::var("INITRD").ok().map(|p| std::fs::read(p).unwrap()),
            cmdline: std::env::var("APPEND").unwrap_or_default(),
            option_rom: std::fs::read("/usr/share/qemu/linuxboot_dma.bin").unwrap(),
        }),
        ..Default::default()
    })
    .unwrap();
    kvm::run_on_kvm(&mut pc, Duration::from_secs_f64(secs), |_| false);
}
