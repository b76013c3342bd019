//! Cross-check of the oracles: on this host KVM runs our guests in its instruction emulator, so
//! register-only, fault-free cases are also run natively on the host CPU (32-bit compatibility
//! mode, `common::host32`) and both must agree on every GPR (but ESP) and every defined flag.
//! This measures how far the KVM oracle can be trusted for the value/flag semantics.

mod common;
use common::diff::{case_seed, cases, first_seed, run_kvm, with_image, End};
use common::groups::{all, make_case_with};
use common::host32::{Host32, Regs32};
use common::kvm::skip_kvm;
use common::layout::Mode;
use common::state::*;

#[test]
fn kvm_emulator_agrees_with_silicon() {
    if skip_kvm() {
        return;
    }
    let mut host = Host32::new();
    let n = cases(1500);
    let mut report = Vec::new();
    let mut total = 0;
    for gr in all() {
        // only groups whose register-only cases are plain user-mode code (no stack, strings,
        // selector loads, privileged instructions; the host-oracle groups are not KVM's)
        if !matches!(gr.name, "alu" | "shift" | "shiftd" | "muldiv" | "bitops" | "xchg" | "cond" | "lea" | "misc") {
            continue;
        }
        let mode = Mode::Pm32Flat;
        let mut ran = 0;
        let mut bad = 0;
        with_image(mode, |img| {
            for i in 0..n {
                let case = make_case_with(&gr, mode, case_seed(first_seed(), gr.name, mode, i), img, false);
                let text = case.listing.join("\n");
                // could fault (a signal on the host) or touch memory: not for the host run
                if text.contains("div") || text.contains("near16") || text.contains("aam 0x0") || text.contains("xlat") || text.contains("moffs") {
                    continue;
                }
                let k = run_kvm(&case, img);
                if k.end != End::Hlt || common::layout::fault_of(mode, &k.state).is_some() {
                    continue;
                }
                let code = &case.code[..case.code.len() - 1]; // without the HLT
                let o = host.run(code, &Regs32 { gpr: case.init.gpr, eflags: case.init.eflags });
                ran += 1;
                let mask = !case.undef_end & (ARITH | DF);
                let mut diffs = Vec::new();
                for r in 0..8 {
                    if r != ESP && k.state.gpr[r] != o.gpr[r] {
                        diffs.push(format!("{}: kvm {:08x} silicon {:08x}", GPR_NAMES[r], k.state.gpr[r], o.gpr[r]));
                    }
                }
                if (k.state.eflags ^ o.eflags) & mask != 0 {
                    diffs.push(format!("eflags: kvm [{}] silicon [{}]", flag_string(k.state.eflags & mask), flag_string(o.eflags & mask)));
                }
                if !diffs.is_empty() {
                    bad += 1;
                    if report.len() < 10 {
                        report.push(format!("group {} seed {:#x}\n{}\ninit\n{}\n{}", gr.name, case.seed, text, case.init, diffs.join("\n")));
                    }
                }
            }
        });
        eprintln!("{:>7}: {ran} fault-free register cases, {bad} disagree", gr.name);
        total += bad;
    }
    assert!(total == 0, "KVM and the host CPU disagree in {total} cases:\n{}", report.join("\n\n"));
}
