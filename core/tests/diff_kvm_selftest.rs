//! Self-tests of the KVM oracle itself: it must run code in every mode and report real results,
//! independent of the interpreter.

mod common;
use common::kvm::{skip_kvm, Exit, KvmRunner};
use common::layout::*;
use common::rng::Rng;
use common::state::*;

fn run(mode: Mode, code: &[u8], setup: impl Fn(&mut State)) -> (Exit, State, Vec<u8>) {
    let mut rng = Rng::new(1);
    let mut img = base_image(mode, &mut rng);
    let mut st = initial_state(mode);
    let lin = (st.seg[CS].base + st.eip) as usize;
    img[lin..lin + code.len()].copy_from_slice(code);
    img[lin + code.len()] = 0xf4;
    st.gpr[ESP] = 0x7000 - st.seg[SS].base;
    setup(&mut st);
    let mut k = KvmRunner::new(MEM_SIZE);
    let (exit, end) = k.run(&st, &img);
    (exit, end, k.mem().to_vec())
}

#[test]
fn kvm_add_in_every_mode() {
    if skip_kvm() {
        return;
    }
    for mode in Mode::ALL {
        // add eax, ebx (66-prefixed in 16-bit code)
        let code: &[u8] = if mode.code32() { &[0x01, 0xd8] } else { &[0x66, 0x01, 0xd8] };
        let (exit, end, _) = run(mode, code, |s| {
            s.gpr[EAX] = 0x8000_0001;
            s.gpr[EBX] = 0x8000_0002;
        });
        assert_eq!(exit, Exit::Hlt, "{mode:?}");
        assert_eq!(end.gpr[EAX], 0x0000_0003, "{mode:?}");
        assert_eq!(end.eflags & ARITH, CF | OF | PF, "{mode:?}: {}", flag_string(end.eflags));
        let start = initial_state(mode);
        if mode == Mode::Pm32User {
            // HLT at CPL 3 is #GP(0)
            assert_eq!(fault_of(mode, &end).map(|f| f.vector), Some(13), "{mode:?}");
        } else {
            assert_eq!(end.eip, start.eip + code.len() as u32 + 1, "{mode:?}");
        }
    }
}

#[test]
fn kvm_faults_reach_stubs() {
    if skip_kvm() {
        return;
    }
    for mode in Mode::ALL {
        // div ecx with ecx = 0 -> #DE
        let code: &[u8] = if mode.code32() { &[0xf7, 0xf1] } else { &[0x66, 0xf7, 0xf1] };
        let (exit, end, mem) = run(mode, code, |s| s.gpr[ECX] = 0);
        assert_eq!(exit, Exit::Hlt, "{mode:?}");
        let f = fault_of(mode, &end).unwrap_or_else(|| panic!("{mode:?}: no fault\n{end}"));
        assert_eq!(f.vector, 0, "{mode:?}");
        let start = initial_state(mode);
        let ret = if f.frame32 {
            u32::from_le_bytes(mem[f.frame as usize..f.frame as usize + 4].try_into().unwrap())
        } else {
            u16::from_le_bytes(mem[f.frame as usize..f.frame as usize + 2].try_into().unwrap()) as u32
        };
        assert_eq!(ret, start.eip, "{mode:?}: return address is the faulting instruction");
    }
}

/// Legacy 32-bit paging under KVM: real VMX/SVM hosts run it; kvm-pvm (this CI host kind) shuts the
/// vCPU down. When it works, a write to a not-present page must give #PF(2) with CR2.
#[test]
fn kvm_legacy_paging() {
    if skip_kvm() {
        return;
    }
    let (exit, end, mem) = run(Mode::Pm32Paging, &[0x89, 0x03], |s| s.gpr[EBX] = NP_PAGE1 + 0x10);
    if exit == Exit::Shutdown && end.eip == initial_state(Mode::Pm32Paging).eip {
        eprintln!("KVM here cannot run legacy paging (kvm-pvm?): paging is not differential-tested");
        return;
    }
    assert_eq!(exit, Exit::Hlt);
    let f = fault_of(Mode::Pm32Paging, &end).expect("fault");
    assert_eq!(f.vector, 14);
    assert_eq!(end.cr2, NP_PAGE1 + 0x10);
    let err = u32::from_le_bytes(mem[f.frame as usize..f.frame as usize + 4].try_into().unwrap());
    assert_eq!(err, 2, "error code: write, not present, supervisor");
}
