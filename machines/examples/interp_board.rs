//! Diagnostic: run the `pc` board on Vessel's interpreter (no KVM) and print SeaBIOS's debug
//! console (0x402) and COM1 output.
//!
//! `cargo run --release -p vessel-machines --example interp_board -- /usr/share/seabios/bios.bin [Minstr]`
//! `KERNEL=bzImage [INITRD=..] [APPEND=..]` boots Linux through linuxboot_dma.bin.
//! `RUST_LOG=vessel::cpu::trace=trace` traces every instruction (very verbose).

use vessel_core::cpu::{Cpu, RunExit};
use vessel_machines::pc::{Pc, PcConfig};
use vessel_machines::serial::SerialSink;

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().collect();
    let bios = std::fs::read(args.get(1).map(String::as_str).unwrap_or("/usr/share/seabios/bios.bin")).unwrap();
    let budget: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200) * 1_000_000;
    let mut pc = Pc::new(PcConfig {
        ram_size: 64 << 20,
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
    let mut cpu = Cpu::new();
    let t = std::time::Instant::now();
    let mut done = 0u64;
    while done < budget {
        let before = cpu.instructions_retired();
        let slice = pc.slice_budget().min(100_000);
        let e = cpu.run(&mut pc, slice);
        let ran = cpu.instructions_retired() - before;
        done += ran;
        pc.advance(ran);
        match e {
            RunExit::Halted => {
                if !pc.idle() {
                    eprintln!("halted with no timer armed");
                    break;
                }
            }
            RunExit::Shutdown => {
                eprintln!("triple fault");
                break;
            }
            _ => {}
        }
    }
    let s = cpu.state();
    eprintln!(
        "\n{} instructions in {:.2?} ({:.1} M/s); cs:eip={:04x}:{:08x}",
        done,
        t.elapsed(),
        done as f64 / t.elapsed().as_secs_f64() / 1e6,
        s.seg[1].selector,
        s.eip
    );
}
