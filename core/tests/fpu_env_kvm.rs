//! FNSTENV/FLDENV/FNSAVE/FRSTOR layouts in every CPU mode, against the real CPU through KVM.
//!
//! The in-crate host tests (`cpu/fpu/tests.rs`) run in long mode, where the real-mode layouts and
//! the stored CS/DS selectors cannot be observed. Here the same x87 sequence runs on a KVM vCPU in
//! real mode, 16-bit protected mode and 32-bit protected mode (flat and based segments) and on
//! [`FpuState`]; every stored environment/state image must match byte for byte, including the
//! instruction pointer, opcode and operand pointer fields.

mod common;
use common::kvm::{skip_kvm, Exit, KvmRunner};
use common::layout::*;
use common::rng::Rng;
use common::state::*;
use vessel_core::cpu::fpu::float::F80;
use vessel_core::cpu::fpu::{FpuContext, FpuMemory, FpuOutcome, FpuState, MemFault};

/// Data accesses through DS: `offset` is translated with the DS base (limits are not the point).
struct DsMem<'a> {
    mem: &'a mut [u8],
    base: u32,
}

impl FpuMemory for DsMem<'_> {
    fn read(&mut self, off: u32, buf: &mut [u8]) -> Result<(), MemFault> {
        let a = (self.base + off) as usize;
        buf.copy_from_slice(&self.mem[a..a + buf.len()]);
        Ok(())
    }
    fn write(&mut self, off: u32, data: &[u8]) -> Result<(), MemFault> {
        let a = (self.base + off) as usize;
        self.mem[a..a + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// One x87 instruction as both bytes and an `execute` call.
struct Insn {
    eip: u32,
    op32: bool,
    esc: u8,
    modrm: u8,
    ea: Option<u32>,
}

struct Prog {
    code32: bool,
    eip0: u32,
    code: Vec<u8>,
    insns: Vec<Insn>,
}

impl Prog {
    fn eip(&self) -> u32 {
        self.eip0 + self.code.len() as u32
    }
    fn reg(&mut self, esc: u8, modrm: u8) {
        let eip = self.eip();
        self.code.extend_from_slice(&[0xD8 + esc, modrm]);
        self.insns.push(Insn { eip, op32: self.code32, esc, modrm, ea: None });
    }
    /// `[disp]` memory form; `size_prefix` flips the operand size (the 14/94 vs 28/108-byte layouts).
    fn mem(&mut self, size_prefix: bool, esc: u8, reg: u8, disp: u32) {
        let eip = self.eip();
        if size_prefix {
            self.code.push(0x66);
        }
        if self.code32 {
            let modrm = (reg << 3) | 5;
            self.code.extend_from_slice(&[0xD8 + esc, modrm]);
            self.code.extend_from_slice(&disp.to_le_bytes());
            self.insns.push(Insn { eip, op32: !size_prefix, esc, modrm, ea: Some(disp) });
        } else {
            let modrm = (reg << 3) | 6;
            self.code.extend_from_slice(&[0xD8 + esc, modrm]);
            self.code.extend_from_slice(&(disp as u16).to_le_bytes());
            self.insns.push(Insn { eip, op32: size_prefix, esc, modrm, ea: Some(disp) });
        }
    }
}

#[test]
fn fpu_env_layouts_every_mode_kvm() {
    if skip_kvm() {
        return;
    }
    let mut k = KvmRunner::new(MEM_SIZE);
    let mut rng = Rng::new(0xF9);
    for mode in Mode::ALL {
        let st0 = initial_state(mode);
        let w = data_window(mode, DS);
        let d = w.lo; // our data area: DS offsets d .. d + 0x800
        for case in 0..64 {
            let mut p = Prog { code32: mode.code32(), eip0: st0.eip, code: Vec::new(), insns: Vec::new() };
            p.reg(3, 0xE3); // fninit
            p.mem(false, 1, 5, d); // fldcw
            for i in 0..rng.below(4) {
                p.mem(false, 3, 5, d + 0x10 + 0x10 * (i % 2)); // fld m80
            }
            // one random arithmetic op with an m32/m64 operand (sets FOP/FDP)
            let esc = rng.pick(&[0u8, 4]);
            p.mem(false, esc, rng.below(8) as u8, d + 0x30 + 8 * rng.below(8));
            if rng.chance(1, 2) {
                p.reg(1, 0xC9); // fxch st1: last instruction without a memory operand
            }
            let alt = true;
            p.mem(false, 1, 6, d + 0x100); // fnstenv (default size)
            p.mem(alt, 1, 6, d + 0x120); // fnstenv (other size)
            p.mem(false, 1, 4, d + 0x100); // fldenv
            p.mem(false, 5, 6, d + 0x200); // fnsave (then FNINIT)
            p.mem(false, 5, 4, d + 0x200); // frstor
            p.mem(alt, 5, 6, d + 0x300); // fnsave, other size
            p.mem(alt, 5, 4, d + 0x300); // frstor
            p.mem(false, 5, 6, d + 0x400); // fnsave

            let mut img = base_image(mode, &mut rng);
            let ds = st0.seg[DS].base as usize;
            let cw: u16 = 0x7F | (rng.below(4) as u16) << 8 | (rng.below(4) as u16) << 10;
            img[ds + d as usize..][..2].copy_from_slice(&cw.to_le_bytes());
            for i in 0..2 {
                let v = F80::new(rng.chance(1, 2), (0x3FFF - 20 + rng.below(40)) as u16, rng.next_u64() | 1 << 63);
                img[ds + (d + 0x10 + 0x10 * i) as usize..][..10].copy_from_slice(&v.to_bytes());
            }
            for i in 0..8u32 {
                let v = 0x3FF0_0000_0000_0000u64 + (rng.next_u64() >> 20);
                img[ds + (d + 0x30 + 8 * i) as usize..][..8].copy_from_slice(&v.to_le_bytes());
            }
            let lin = (st0.seg[CS].base + st0.eip) as usize;
            img[lin..lin + p.code.len()].copy_from_slice(&p.code);
            img[lin + p.code.len()] = 0xF4;

            let (exit, _) = k.run(&st0, &img);
            if case == 0 && matches!(exit, Exit::Error(_)) {
                // Hosts whose KVM runs this mode through its instruction emulator (kvm-pvm: the
                // legacy modes) cannot execute x87 there.
                eprintln!("KVM cannot execute x87 in {mode:?} here ({exit:?}): layouts not differential-tested");
                break;
            }
            assert_eq!(exit, Exit::Hlt, "{mode:?} case {case}");
            let host = k.mem()[ds + d as usize + 0x100..ds + d as usize + 0x500].to_vec();

            let mut emu_img = img.clone();
            let mut s = FpuState::new();
            for i in &p.insns {
                let ctx = FpuContext {
                    op32: i.op32,
                    protected: mode.protected(),
                    cs: st0.seg[CS].selector,
                    eip: i.eip,
                    ds: st0.seg[DS].selector,
                    eflags: 2,
                };
                let mut m = DsMem { mem: &mut emu_img, base: st0.seg[DS].base };
                assert_eq!(s.execute(i.esc, i.modrm, i.ea, &mut m, &ctx), FpuOutcome::Done);
            }
            let emu = &emu_img[ds + d as usize + 0x100..ds + d as usize + 0x500];
            if host[..] != emu[..] {
                let diffs: Vec<String> = host
                    .iter()
                    .zip(emu.iter())
                    .enumerate()
                    .filter(|(_, (h, e))| h != e)
                    .take(24)
                    .map(|(i, (h, e))| format!("DS:{:#x}: kvm {h:02x} emu {e:02x}", d as usize + 0x100 + i))
                    .collect();
                panic!("{mode:?} case {case}: images differ\n{}", diffs.join("\n"));
            }
        }
    }
}
