//! The oracle: one KVM vCPU with a flat slot of guest RAM, run from a given [`State`] until HLT.
//!
//! The VM and vCPU are created once per test thread and reused for every case (creating a VM costs
//! milliseconds; a case costs microseconds). Exceptions are observed by the test's own IVT/IDT
//! pointing at HLT stubs (see `layout.rs`), so the run always ends in a HLT exit unless the guest
//! triple-faults or touches something that is not RAM.

use super::state::{Dt, Seg, State};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Hlt,
    /// Triple fault.
    Shutdown,
    /// The guest touched a physical address outside RAM (the generator's fault; never compared).
    Mmio(u64),
    /// KVM could not run the guest (an entry failure or its instruction emulator gave up).
    Error(String),
    /// More than the allowed number of I/O exits: the guest is looping.
    TooManyExits,
}

pub struct KvmRunner {
    /// Wall-clock deadline (ms since the epoch) of the current run, 0 when idle; a watchdog thread
    /// kicks the vCPU thread out of KVM_RUN with SIGUSR1 when it passes (a looping guest).
    deadline: std::sync::Arc<std::sync::atomic::AtomicU64>,
    _kvm: Kvm,
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: *mut u8,
    size: usize,
    /// Every OUT the guest did in the last run: (port, width, value).
    pub io_writes: Vec<(u16, u8, u32)>,
}

/// Why KVM is unusable, with the instruction to skip the suite deliberately.
pub fn kvm_unavailable(e: impl std::fmt::Display) -> ! {
    panic!(
        "KVM oracle unavailable ({e}): the differential CPU tests need /dev/kvm (read/write). \
         Set VESSEL_SKIP_KVM=1 to skip them explicitly."
    )
}

/// True when the caller asked to skip KVM-based tests (VESSEL_SKIP_KVM=1).
pub fn skip_kvm() -> bool {
    std::env::var("VESSEL_SKIP_KVM").map(|v| v == "1").unwrap_or(false)
}

impl KvmRunner {
    pub fn new(size: usize) -> KvmRunner {
        let kvm = Kvm::new().unwrap_or_else(|e| kvm_unavailable(e));
        let vm = kvm.create_vm().unwrap_or_else(|e| kvm_unavailable(e));
        // Only needed when the host lacks unrestricted guest support; harmless otherwise.
        let _ = vm.set_tss_address(0xfffb_d000);
        let _ = vm.set_identity_map_address(0xfffb_c000);
        // SAFETY: anonymous private mapping of `size` bytes, owned by this runner until drop.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED, "mmap guest memory");
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: size as u64,
            userspace_addr: mem as u64,
        };
        // SAFETY: the region is a valid mapping that lives as long as the VM (both dropped together).
        unsafe { vm.set_user_memory_region(region) }.unwrap_or_else(|e| kvm_unavailable(e));
        let vcpu = vm.create_vcpu(0).unwrap_or_else(|e| kvm_unavailable(e));
        if let Ok(cpuid) = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES) {
            let _ = vcpu.set_cpuid2(&cpuid);
        }
        let deadline = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        start_watchdog(&deadline);
        KvmRunner { deadline, _kvm: kvm, _vm: vm, vcpu, mem: mem as *mut u8, size, io_writes: Vec::new() }
    }

    pub fn mem(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes and only the (stopped) vCPU writes it concurrently.
        unsafe { std::slice::from_raw_parts(self.mem, self.size) }
    }

    pub fn mem_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; the vCPU is not running while we hold `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.mem, self.size) }
    }

    /// Load `image` into guest RAM and `init` into the vCPU, run until HLT, return the exit and the
    /// final state. Guest RAM afterwards is in [`KvmRunner::mem`].
    pub fn run(&mut self, init: &State, image: &[u8]) -> (Exit, State) {
        self.run_patched(init, image, &[])
    }

    /// As [`KvmRunner::run`], with `patches` (physical address, bytes) written over the image.
    pub fn run_patched(&mut self, init: &State, image: &[u8], patches: &[(u32, &[u8])]) -> (Exit, State) {
        assert!(image.len() <= self.size);
        self.mem_mut()[..image.len()].copy_from_slice(image);
        for (at, bytes) in patches {
            self.mem_mut()[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        }
        self.set_state(init);
        self.io_writes.clear();
        let mut exit = Exit::TooManyExits;
        self.deadline.store(now_ms() + 2000, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..10_000 {
            let r = self.vcpu.run();
            if matches!(&r, Err(e) if e.errno() == libc::EINTR) {
                exit = Exit::Error("guest still running after 2 s (watchdog)".into());
                break;
            }
            match r {
                Ok(VcpuExit::Hlt) => {
                    exit = Exit::Hlt;
                    break;
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    let mut v = [0u8; 4];
                    v[..data.len()].copy_from_slice(data);
                    self.io_writes.push((port, data.len() as u8, u32::from_le_bytes(v)));
                }
                Ok(VcpuExit::IoIn(_, data)) => data.fill(0xff),
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    data.fill(0xff);
                    exit = Exit::Mmio(addr);
                    break;
                }
                Ok(VcpuExit::MmioWrite(addr, _)) => {
                    exit = Exit::Mmio(addr);
                    break;
                }
                Ok(VcpuExit::Shutdown) => {
                    exit = Exit::Shutdown;
                    break;
                }
                Ok(other) => {
                    exit = Exit::Error(format!("{other:?}"));
                    break;
                }
                Err(e) => {
                    exit = Exit::Error(format!("KVM_RUN: {e}"));
                    break;
                }
            }
        }
        self.deadline.store(0, std::sync::atomic::Ordering::SeqCst);
        (exit, self.get_state())
    }

    pub fn set_state(&mut self, s: &State) {
        let regs = kvm_regs {
            rax: s.gpr[0] as u64,
            rcx: s.gpr[1] as u64,
            rdx: s.gpr[2] as u64,
            rbx: s.gpr[3] as u64,
            rsp: s.gpr[4] as u64,
            rbp: s.gpr[5] as u64,
            rsi: s.gpr[6] as u64,
            rdi: s.gpr[7] as u64,
            rip: s.eip as u64,
            rflags: (s.eflags | 2) as u64,
            ..Default::default()
        };
        let mut sregs = self.vcpu.get_sregs().expect("KVM_GET_SREGS");
        sregs.es = to_kvm_seg(&s.seg[0]);
        sregs.cs = to_kvm_seg(&s.seg[1]);
        sregs.ss = to_kvm_seg(&s.seg[2]);
        sregs.ds = to_kvm_seg(&s.seg[3]);
        sregs.fs = to_kvm_seg(&s.seg[4]);
        sregs.gs = to_kvm_seg(&s.seg[5]);
        sregs.ldt = to_kvm_seg(&s.ldtr);
        sregs.tr = to_kvm_seg(&s.tr);
        sregs.gdt.base = s.gdtr.base as u64;
        sregs.gdt.limit = s.gdtr.limit;
        sregs.idt.base = s.idtr.base as u64;
        sregs.idt.limit = s.idtr.limit;
        sregs.cr0 = s.cr0 as u64;
        sregs.cr2 = s.cr2 as u64;
        sregs.cr3 = s.cr3 as u64;
        sregs.cr4 = s.cr4 as u64;
        sregs.efer = 0;
        sregs.interrupt_bitmap = [0; 4];
        self.vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
        self.vcpu.set_regs(&regs).expect("KVM_SET_REGS");
    }

    pub fn get_state(&self) -> State {
        let r = self.vcpu.get_regs().expect("KVM_GET_REGS");
        let s = self.vcpu.get_sregs().expect("KVM_GET_SREGS");
        State {
            gpr: [r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi].map(|v| v as u32),
            eip: r.rip as u32,
            eflags: r.rflags as u32,
            seg: [&s.es, &s.cs, &s.ss, &s.ds, &s.fs, &s.gs].map(from_kvm_seg),
            ldtr: from_kvm_seg(&s.ldt),
            tr: from_kvm_seg(&s.tr),
            gdtr: Dt { base: s.gdt.base as u32, limit: s.gdt.limit },
            idtr: Dt { base: s.idt.base as u32, limit: s.idt.limit },
            cr0: s.cr0 as u32,
            cr2: s.cr2 as u32,
            cr3: s.cr3 as u32,
            cr4: s.cr4 as u32,
        }
    }
}

impl Drop for KvmRunner {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; the VM fd is closed after this (field drop order) but
        // KVM holds its own reference to the pages until then.
        unsafe { libc::munmap(self.mem as *mut libc::c_void, self.size) };
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// One watchdog per runner: signals the runner's thread when its deadline passes; exits when the
/// runner is dropped.
fn start_watchdog(deadline: &std::sync::Arc<std::sync::atomic::AtomicU64>) {
    // SAFETY: installing a no-op handler without SA_RESTART so KVM_RUN returns EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    // SAFETY: pthread_self of the thread that will run the vCPU (runners are thread-local).
    let target = unsafe { libc::pthread_self() } as usize;
    let weak = std::sync::Arc::downgrade(deadline);
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Some(d) = weak.upgrade() else { return };
        let t = d.load(std::sync::atomic::Ordering::SeqCst);
        if t != 0 && now_ms() > t {
            // SAFETY: the target thread owns the runner, which is alive (we hold a strong ref).
            unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR1) };
        }
    });
}

pub fn to_kvm_seg(s: &Seg) -> kvm_segment {
    let a = s.access;
    kvm_segment {
        base: s.base as u64,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xf) as u8,
        s: ((a >> 4) & 1) as u8,
        dpl: ((a >> 5) & 3) as u8,
        present: ((a >> 7) & 1) as u8,
        avl: ((a >> 12) & 1) as u8,
        l: ((a >> 13) & 1) as u8,
        db: ((a >> 14) & 1) as u8,
        g: ((a >> 15) & 1) as u8,
        unusable: (!s.valid) as u8,
        padding: 0,
    }
}

pub fn from_kvm_seg(k: &kvm_segment) -> Seg {
    let access = (k.type_ as u16 & 0xf)
        | (k.s as u16 & 1) << 4
        | (k.dpl as u16 & 3) << 5
        | (k.present as u16 & 1) << 7
        | (k.avl as u16 & 1) << 12
        | (k.l as u16 & 1) << 13
        | (k.db as u16 & 1) << 14
        | (k.g as u16 & 1) << 15;
    Seg { selector: k.selector, base: k.base as u32, limit: k.limit, access, valid: k.unusable == 0 }
}
