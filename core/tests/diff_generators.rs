//! The generators themselves, on KVM only: every case of every group must stay inside RAM and end
//! in HLT (possibly after an exception), so the differential tests never compare a broken run.

mod common;
use common::diff::{cases, run_group};
use common::groups::all;
use common::kvm::skip_kvm;
use common::layout::Mode;

#[test]
fn generated_cases_run_on_kvm() {
    if skip_kvm() {
        return;
    }
    let n = cases(200);
    let mut bad = Vec::new();
    for gr in all().into_iter().filter(|g| !g.silicon) {
        for mode in Mode::WITH_USER {
            let st = run_group(&gr, mode, n, None);
            eprintln!("{:>7} {:?}: {}", gr.name, mode, st.summary());
            bad.extend(st.failures.into_iter().take(2));
        }
    }
    assert!(bad.is_empty(), "{} broken cases, first ones:\n{}", bad.len(), bad.join("\n"));
}
