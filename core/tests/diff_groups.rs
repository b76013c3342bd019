//! Differential tests of the interpreter against the oracles, one test per instruction group.
//! Each group runs `VESSEL_DIFF_CASES` (default 2000) cases per CPU mode from fixed seeds
//! (`VESSEL_DIFF_SEED` to vary, `VESSEL_DIFF_REPLAY` to rerun one case). A mismatch prints the
//! listing, the initial state, both final states and the differing fields.
//! `soak` (ignored) runs 50x as many.

mod common;
use common::diff::{cases, run_group, Outcome};
use common::gen::Case;
use common::groups::group;
use common::interp::run_interp;
use common::kvm::skip_kvm;
use common::layout::Mode;

const DEFAULT_CASES: u32 = 2000;

fn check(name: &str, n: u32) {
    if skip_kvm() {
        eprintln!("VESSEL_SKIP_KVM=1: {name} not run");
        return;
    }
    let gr = group(name);
    let modes: &[Mode] = if gr.silicon { &[Mode::Pm32Flat] } else { &Mode::WITH_USER };
    let mut failures = Vec::new();
    let mut total = 0;
    let t = std::time::Instant::now();
    for &mode in modes {
        let mut engine = |c: &Case, img: &[u8]| -> Outcome { run_interp(c, img) };
        let st = run_group(&gr, mode, n, Some(&mut engine));
        eprintln!("{name} {mode:?}: {}", st.summary());
        total += st.cases;
        failures.extend(st.failures.into_iter().take(3));
    }
    eprintln!("{name}: {total} cases in {:?}", t.elapsed());
    assert!(failures.is_empty(), "{name}: {} mismatching cases (first ones):\n{}", failures.len(), failures.join("\n"));
}

macro_rules! group_test {
    ($name:ident $(, $ignore:literal)?) => {
        #[test]
        $(#[ignore = $ignore])?
        fn $name() {
            check(stringify!($name), cases(DEFAULT_CASES));
        }
    };
}

group_test!(alu);
group_test!(shift);
group_test!(shiftd);
group_test!(muldiv);
group_test!(bcd);
group_test!(aam0);
group_test!(bitops);
group_test!(string);
group_test!(xchg);
group_test!(cond);
group_test!(lea);
group_test!(stack);
group_test!(sreg);
group_test!(privileged);
group_test!(x87);
group_test!(misc);

#[test]
#[ignore = "soak: 50x the cases of every group (set VESSEL_DIFF_SEED to explore new ones)"]
fn soak() {
    for g in common::groups::all() {
        check(g.name, cases(DEFAULT_CASES) * 50);
    }
}
