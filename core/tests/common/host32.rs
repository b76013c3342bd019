//! A second oracle: the host CPU itself, running 32-bit code natively in compatibility mode.
//!
//! On this host kind KVM runs non-paged guests in its software instruction emulator (see
//! docs/status/cpu-diff.md), which lacks DAA/AAA/AAS. Linux x86-64 keeps a 32-bit user code
//! segment (selector 0x23), so a 64-bit test process can far-jump into 32-bit code placed below
//! 4 GiB, run a short fault-free snippet on real silicon and jump back (selector 0x33). Only for
//! snippets that cannot fault (a fault would be a signal in the test process).

const USER32_CS: u8 = 0x23;
const USER64_CS: u8 = 0x33;
const SIZE: usize = 0x10000;
const CTX: usize = 0x800;
const ENTRY32: usize = 0x100;
const STACK_TOP: usize = 0xf000;
// ctx layout (u32 each): in[0..9] = eax ecx edx ebx esp ebp esi edi eflags; out[9..18]; then
// saved rsp (u64) at +0x60, low stack (u64) at +0x68.
const SAVED_RSP: usize = 0x60;
const LOW_STACK: usize = 0x68;

pub struct Host32 {
    mem: *mut u8,
    code_len: usize,
    low: *mut u8,
    low_end: usize,
    /// Linear address of the register-saving epilogue of the last generated entry code.
    epilogue: usize,
    low_code: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs32 {
    pub gpr: [u32; 8],
    pub eflags: u32,
}

impl Host32 {
    pub fn new() -> Host32 {
        // SAFETY: a fresh private RWX mapping below 2 GiB, owned by this value.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED, "mmap MAP_32BIT");
        let mem = mem as *mut u8;
        let base = mem as usize;
        assert!(base + SIZE < 1 << 31);
        let ctx = (base + CTX) as u32;
        let mut h = Host32 { mem, code_len: 0, low: std::ptr::null_mut(), low_end: 0, epilogue: 0, low_code: Vec::new() };
        // 64-bit entry stub at offset 0: fn(ctx: *mut u8) (sysv64)
        let mut s: Vec<u8> = vec![0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57];
        s.extend([0x48, 0x89, 0xa7]);
        s.extend((SAVED_RSP as u32).to_le_bytes()); // mov [rdi+SAVED_RSP], rsp
        s.extend([0x48, 0x8b, 0xa7]);
        s.extend((LOW_STACK as u32).to_le_bytes()); // mov rsp, [rdi+LOW_STACK]
        s.extend([0x6a, USER32_CS, 0x68]);
        s.extend(((base + ENTRY32) as u32).to_le_bytes()); // push 0x23; push entry32
        s.extend([0x48, 0xcb]); // retfq
        let ret64 = s.len();
        s.extend([0x48, 0xbf]);
        s.extend((ctx as u64).to_le_bytes()); // mov rdi, ctx
        s.extend([0x48, 0x8b, 0xa7]);
        s.extend((SAVED_RSP as u32).to_le_bytes()); // mov rsp, [rdi+SAVED_RSP]
        s.extend([0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3]);
        assert!(s.len() < ENTRY32);
        h.bytes_mut()[..s.len()].copy_from_slice(&s);
        h.bytes_mut()[CTX + LOW_STACK..CTX + LOW_STACK + 8].copy_from_slice(&((base + STACK_TOP) as u64).to_le_bytes());
        h.code_len = ret64; // remember where ret64 is
        h
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: our mapping of SIZE bytes.
        unsafe { std::slice::from_raw_parts_mut(self.mem, SIZE) }
    }

    /// Run `code` (32-bit, fault-free, no stack use beyond a few KiB, no control transfer out)
    /// with `input` registers (ESP is replaced by a scratch stack); returns the registers after it.
    pub fn run(&mut self, code: &[u8], input: &Regs32) -> Regs32 {
        self.run_inner(Some(code), input)
    }

    /// Run `code` placed at linear 0x8000 inside the guest-identical low mapping (see
    /// [`Host32::map_low`], which the caller fills with the guest's RAM image first).
    pub fn run_low(&mut self, code: &[u8], input: &Regs32) -> Regs32 {
        self.low_code = code.to_vec();
        self.run_inner(None, input)
    }

    /// Map [0x1000, `end`) at the same addresses the guest uses (fixed, must be free).
    pub fn map_low(&mut self, end: usize) -> &mut [u8] {
        if self.low.is_null() {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
            let p = unsafe {
                libc::mmap(
                    0x1000 as *mut libc::c_void,
                    end - 0x1000,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            assert_eq!(p as usize, 0x1000, "cannot map low memory at 0x1000 (vm.mmap_min_addr?)");
            self.low = p as *mut u8;
            self.low_end = end;
        }
        // SAFETY: our mapping of [0x1000, low_end).
        unsafe { std::slice::from_raw_parts_mut(self.low, self.low_end - 0x1000) }
    }

    /// `jmp rel32` bytes that, placed at linear `at`, return to the register-saving epilogue.
    fn exit_jump(&self, at: u32) -> [u8; 5] {
        let target = self.epilogue as u32;
        let rel = target.wrapping_sub(at + 5);
        let b = rel.to_le_bytes();
        [0xe9, b[0], b[1], b[2], b[3]]
    }

    fn run_inner(&mut self, code: Option<&[u8]>, input: &Regs32) -> Regs32 {
        let base = self.mem as usize;
        let ret64 = self.code_len;
        let ctx = (base + CTX) as u32;
        let f = |i: usize| ctx + 4 * i as u32;
        let mut c: Vec<u8> = vec![0x16, 0x1f, 0x16, 0x07]; // push ss; pop ds; push ss; pop es
        // Flags are loaded on the scratch stack; then ESP takes the caller's value exactly (the
        // snippet must not use the stack), so instructions reading ESP see the same value.
        c.extend([0xff, 0x35]);
        c.extend(f(8).to_le_bytes()); // push dword [in_eflags]
        c.push(0x9d); // popf
        c.extend([0x8b, 0x25]);
        c.extend(f(4).to_le_bytes()); // mov esp, [in_esp]
        for r in [0u8, 1, 2, 3, 5, 6, 7] {
            c.extend([0x8b, 0x05 | r << 3]);
            c.extend(f(r as usize).to_le_bytes());
        }
        match code {
            Some(code) => c.extend_from_slice(code),
            None => {
                // jmp 0x8000 (the guest-identical code location)
                let at = (base + ENTRY32 + c.len()) as u32;
                let rel = 0x8000u32.wrapping_sub(at + 5).to_le_bytes();
                c.extend([0xe9, rel[0], rel[1], rel[2], rel[3]]);
            }
        }
        self.epilogue = base + ENTRY32 + c.len();
        for r in 0..8u8 {
            c.extend([0x89, 0x05 | r << 3]);
            c.extend(f(9 + r as usize).to_le_bytes());
        }
        c.extend([0x8b, 0x25]);
        c.extend(f(18).to_le_bytes()); // mov esp, [scratch esp]
        c.push(0x9c); // pushf
        c.extend([0x8f, 0x05]);
        c.extend(f(17).to_le_bytes()); // pop dword [out_eflags]
        c.push(0xfc); // cld (the 64-bit ABI wants DF clear)
        c.push(0xea);
        c.extend(((base + ret64) as u32).to_le_bytes());
        c.extend([USER64_CS, 0]); // ljmp 0x33:ret64
        assert!(ENTRY32 + c.len() < CTX);
        if code.is_none() {
            let lc = std::mem::take(&mut self.low_code);
            let jump = self.exit_jump(0x8000 + lc.len() as u32);
            let low = self.map_low(self.low_end);
            let at = 0x8000 - 0x1000;
            low[at..at + lc.len()].copy_from_slice(&lc);
            low[at + lc.len()..at + lc.len() + 5].copy_from_slice(&jump);
        }
        let mem = self.bytes_mut();
        mem[ENTRY32..ENTRY32 + c.len()].copy_from_slice(&c);
        let mut inp = *input;
        let scratch = (base + STACK_TOP - 0x1000) as u32;
        mem[CTX + 72..CTX + 76].copy_from_slice(&scratch.to_le_bytes());
        inp.eflags = (inp.eflags & 0x0cd5) | 2; // arithmetic flags and DF only
        for i in 0..8 {
            mem[CTX + 4 * i..CTX + 4 * i + 4].copy_from_slice(&inp.gpr[i].to_le_bytes());
        }
        mem[CTX + 32..CTX + 36].copy_from_slice(&inp.eflags.to_le_bytes());
        // SAFETY: the stub saves/restores every callee-saved register and RSP, runs only the code
        // we just wrote, and returns like a sysv64 function.
        unsafe {
            let entry: extern "sysv64" fn(*mut u8) = std::mem::transmute(self.mem);
            entry(self.mem.add(CTX));
        }
        let mem = self.bytes_mut();
        let rd = |i: usize| u32::from_le_bytes(mem[CTX + 4 * i..CTX + 4 * i + 4].try_into().unwrap());
        let mut out = Regs32::default();
        for i in 0..8 {
            out.gpr[i] = rd(9 + i);
        }
        out.eflags = rd(17);
        out
    }
}

impl Drop for Host32 {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.mem as *mut libc::c_void, SIZE) };
        if !self.low.is_null() {
            // SAFETY: our own low mapping.
            unsafe { libc::munmap(self.low as *mut libc::c_void, self.low_end - 0x1000) };
        }
    }
}
