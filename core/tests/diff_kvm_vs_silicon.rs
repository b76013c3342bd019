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
    let n = cases(1000);
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

/// The same with memory operands: the host maps [0x1000, 1 MiB) at the guest's own addresses
/// (stack, data, code at 0x8000), so flat 32-bit cases with memory operands, string ops and stack
/// ops run unchanged on the host CPU; registers (ESP too), defined flags and the data/stack
/// memory must match KVM.
#[test]
fn kvm_emulator_agrees_with_silicon_on_memory() {
    use common::diff::case_image;
    use common::groups::make_case;
    use common::layout::*;
    if skip_kvm() {
        return;
    }
    let mut host = Host32::new();
    host.map_low(MEM_SIZE);
    let n = cases(1000);
    let mut report = Vec::new();
    let mut total = 0;
    for gr in all() {
        if !matches!(gr.name, "alu" | "shift" | "shiftd" | "muldiv" | "bitops" | "xchg" | "cond" | "lea" | "misc" | "string" | "stack") {
            continue;
        }
        let mode = Mode::Pm32Flat;
        let (mut ran, mut bad) = (0, 0);
        with_image(mode, |img| {
            for i in 0..n {
                let case = make_case(&gr, mode, case_seed(first_seed(), gr.name, mode, i), img);
                let text = case.listing.join("\n");
                // host FS/GS are null selectors, host segment registers hold other selectors,
                // faults would be signals, POPF could set AC (alignment checks at CPL 3)
                if ["div", "near16", "fs:", "gs:", "push es", "push cs", "push ss", "push ds", "push fs", "push gs", "ud2", "lock", "(src fs", "(src gs", "popf"]
                    .iter()
                    .any(|p| text.contains(p))
                {
                    continue;
                }
                let k = run_kvm(&case, img);
                if k.end != End::Hlt || fault_of(mode, &k.state).is_some() {
                    continue;
                }
                if std::env::var("VESSEL_DIFF_TRACE").is_ok() {
                    eprintln!("{} {:#x}\n{text}", gr.name, case.seed);
                }
                let image = case_image(&case, img);
                host.map_low(MEM_SIZE).copy_from_slice(&image[0x1000..]);
                let o = host.run_low(&case.code[..case.code.len() - 1], &Regs32 { gpr: case.init.gpr, eflags: case.init.eflags });
                ran += 1;
                let mask = !case.undef_end & (ARITH | DF);
                let mut diffs = Vec::new();
                for r in 0..8 {
                    if k.state.gpr[r] != o.gpr[r] {
                        diffs.push(format!("{}: kvm {:08x} silicon {:08x}", GPR_NAMES[r], k.state.gpr[r], o.gpr[r]));
                    }
                }
                if (k.state.eflags ^ o.eflags) & mask != 0 {
                    diffs.push(format!("eflags: kvm [{}] silicon [{}]", flag_string(k.state.eflags & mask), flag_string(o.eflags & mask)));
                }
                let low = host.map_low(MEM_SIZE);
                for (lo, hi) in [(STACK_LO, STACK_HI), (DATA_LO, DATA_HI)] {
                    // (the host's own pushes below its ESP are not the guest's: compare above ESP
                    // only in the stack area, where the guest's frame ends)
                    let lo = if lo == STACK_LO { lo.max(k.state.gpr[ESP].min(o.gpr[ESP])) } else { lo };
                    for a in lo..hi {
                        let (x, y) = (k.mem[a as usize], low[a as usize - 0x1000]);
                        if x != y {
                            diffs.push(format!("mem[{a:#x}]: kvm {x:02x} silicon {y:02x}"));
                            break;
                        }
                    }
                }
                if !diffs.is_empty() {
                    bad += 1;
                    if report.len() < 10 {
                        report.push(format!("group {} seed {:#x}\n{}\ninit\n{}\n{}", gr.name, case.seed, text, case.init, diffs.join("\n")));
                    }
                }
            }
        });
        eprintln!("{:>7}: {ran} fault-free memory cases, {bad} disagree", gr.name);
        total += bad;
    }
    assert!(total == 0, "KVM and the host CPU disagree in {total} cases:\n{}", report.join("\n\n"));
}
