//! Runs the `pc` board with KVM as the CPU (no in-kernel irqchip: every port, MMIO access and
//! interrupt goes through the board), so device models can be checked against real firmware
//! independently of Vessel's interpreter. Time is the host clock here. Shared by
//! `tests/kvm_seabios.rs` and `examples/kvm_board.rs`.

use std::time::{Duration, Instant};

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::{Kvm, VcpuExit};
use vessel_core::bus::{Bus, PageKind};
use vessel_machines::pc::Pc;

const KVM_INTERRUPT: libc::c_ulong = 0x4004_AE86;

/// Run until `stop` says so or `wall` has passed; returns a one-line summary.
pub fn run_on_kvm(pc: &mut Pc, wall: Duration, mut stop: impl FnMut(&Pc) -> bool) -> String {
    let kvm = Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    vm.set_tss_address(0xFFFB_D000).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    let supported = kvm.get_supported_cpuid(80).unwrap();
    // hide the KVM paravirt leaves: the firmware must see the machine as on QEMU TCG
    let entries: Vec<_> =
        supported.as_slice().iter().copied().filter(|e| !(0x4000_0000..0x4000_0100).contains(&e.function)).collect();
    let mut cpuid = kvm_bindings::CpuId::from_entries(&entries).unwrap();
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.edx &= !(1 << 9); // no local APIC: the board's PIC drives INTR
            e.ecx &= !((1 << 21) | (1 << 30) | (1 << 31)); // no x2APIC, RDRAND, hypervisor bit
        }
    }
    vcpu.set_cpuid2(&cpuid).unwrap();

    let ram_len = pc.ram_mut().len() as u64;
    let ram_ptr = pc.ram_mut().as_mut_ptr() as u64;
    let bios_len = pc.bios().len() as u64;
    let bios_ptr = pc.bios().as_ptr() as u64;
    let set = |slot: u32, gpa: u64, size: u64, host: u64, ro: bool| unsafe {
        let r = vm.set_user_memory_region(kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host,
            flags: if ro { KVM_MEM_READONLY } else { 0 },
        });
        // deleting a slot that does not exist fails; nothing else may
        assert!(r.is_ok() || size == 0, "slot {slot} at {gpa:#x}: {r:?}");
    };
    set(0, 0, 0xA0000, ram_ptr, false);
    set(1, 0x100000, ram_len - 0x100000, ram_ptr + 0x100000, false);
    set(2, (1 << 32) - bios_len, bios_len, bios_ptr, true);
    // 0xC0000-0xFFFFF in 16 KiB segments following the PAM registers
    let mut generation = u64::MAX;
    let remap = |pc: &Pc| {
        for seg in 0..16u64 {
            let gpa = 0xC0000 + seg * 0x4000;
            let slot = 3 + seg as u32;
            set(slot, gpa, 0, 0, false);
            match pc.page_kind(gpa >> 12) {
                PageKind::Ram => set(slot, gpa, 0x4000, ram_ptr + gpa, false),
                PageKind::RamReadOnly => set(slot, gpa, 0x4000, ram_ptr + gpa, true),
                PageKind::Mmio if gpa >= 0xE0000 => {
                    set(slot, gpa, 0x4000, bios_ptr + bios_len - (0x100000 - gpa), true)
                }
                PageKind::Mmio => {}
            }
        }
    };

    let vcpu_fd = std::os::fd::AsRawFd::as_raw_fd(&vcpu);
    // A 1 ms interval timer kicks the vCPU out of KVM_RUN (EINTR) so timer interrupts get injected
    // even when the guest spins without touching I/O.
    extern "C" fn nop(_: libc::c_int) {}
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = nop as *const () as usize;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let t = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 1000 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 1000 },
        };
        libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
    }
    let start = Instant::now();
    let mut exits = 0u64;
    while start.elapsed() < wall && !stop(pc) {
        if pc.map_generation() != generation {
            generation = pc.map_generation();
            remap(pc);
        }
        // time: host clock
        let now = start.elapsed().as_nanos() as u64;
        pc.clock.skip_to(now);
        pc.advance(0);
        {
            let run = vcpu.get_kvm_run();
            if pc.intr_pending() {
                if run.ready_for_interrupt_injection != 0 && run.if_flag != 0 {
                    let v = pc.intr_ack() as u32;
                    let r = unsafe { libc::ioctl(vcpu_fd, KVM_INTERRUPT, &v) };
                    assert_eq!(r, 0);
                    run.request_interrupt_window = 0;
                } else {
                    run.request_interrupt_window = 1;
                }
            } else {
                run.request_interrupt_window = 0;
            }
        }
        exits += 1;
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                let v = pc.io_read(port, data.len() as u8);
                data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut b = [0u8; 4];
                b[..data.len()].copy_from_slice(data);
                pc.io_write(port, data.len() as u8, u32::from_le_bytes(b));
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                let v = pc.mmio_read(addr, data.len() as u8);
                let n = data.len();
                data.copy_from_slice(&v.to_le_bytes()[..n]);
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let mut b = [0u8; 8];
                b[..data.len()].copy_from_slice(data);
                pc.mmio_write(addr, data.len() as u8, u64::from_le_bytes(b));
            }
            Ok(VcpuExit::Hlt) => {
                if !pc.intr_pending() {
                    match pc.next_event_ns() {
                        Some(t) => {
                            let now = start.elapsed().as_nanos() as u64;
                            if t > now {
                                std::thread::sleep(Duration::from_nanos(t - now));
                            }
                        }
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }
            Ok(VcpuExit::IrqWindowOpen) => {}
            Ok(VcpuExit::Shutdown) => {
                eprintln!("\n[kvm_board] shutdown (triple fault)");
                break;
            }
            Ok(e) => {
                eprintln!("\n[kvm_board] unexpected exit {e:?}");
                let run = vcpu.get_kvm_run();
                let int = unsafe { run.__bindgen_anon_1.internal };
                eprintln!("[kvm_board] internal suberror {} data {:x?}", int.suberror, &int.data[..int.ndata.min(8) as usize]);
                break;
            }
            Err(e) if e.errno() == libc::EINTR => {}
            Err(e) => {
                eprintln!("\n[kvm_board] run error {e}");
                break;
            }
        }
        if let Some(x) = pc.exit.take() {
            eprintln!("\n[kvm_board] machine exit {x:?}");
            break;
        }
    }
    pc.flush();
    let regs = vcpu.get_regs().unwrap();
    let sregs = vcpu.get_sregs().unwrap();
    let rip = regs.rip as usize;
    if rip + 16 < pc.ram_mut().len() {
        eprintln!("[kvm_board] bytes at rip: {:02x?}", &pc.ram_mut()[rip..rip + 16]);
    }
    eprintln!("[kvm_board] regs {regs:x?}");
    let report = format!("{exits} exits, cs:rip {:04x}:{:08x}, POST {:#x}", sregs.cs.selector, regs.rip, pc.post_code);
    eprintln!("\n[kvm_board] {report}");
    report
}
