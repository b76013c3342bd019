//! Runs generated cases on the oracle (KVM) and on the interpreter and compares the outcomes.

use super::gen::Case;
use super::groups::{make_case, Group};
use super::kvm::{Exit, KvmRunner};
use super::layout::*;
use super::rng::Rng;
use super::state::*;
use std::cell::RefCell;
use std::fmt::Write as _;

/// Cases per mode for a group: `VESSEL_DIFF_CASES` or the given default.
pub fn cases(default: u32) -> u32 {
    std::env::var("VESSEL_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// First case seed: `VESSEL_DIFF_SEED` or a fixed default (so CI is reproducible).
pub fn first_seed() -> u64 {
    std::env::var("VESSEL_DIFF_SEED")
        .ok()
        .and_then(|v| if let Some(h) = v.strip_prefix("0x") { u64::from_str_radix(h, 16).ok() } else { v.parse().ok() })
        .unwrap_or(0x5eed_0000)
}

/// `VESSEL_DIFF_REPLAY=<case seed>`: run only that case (in every mode of the selected test).
pub fn replay_seed() -> Option<u64> {
    std::env::var("VESSEL_DIFF_REPLAY")
        .ok()
        .and_then(|v| if let Some(h) = v.strip_prefix("0x") { u64::from_str_radix(h, 16).ok() } else { v.parse().ok() })
}

/// Seed of case `i` of `group` in `mode`: unique per group/mode, printed on failure.
pub fn case_seed(base: u64, group: &str, mode: Mode, i: u32) -> u64 {
    let h = group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    base.wrapping_add(h.rotate_left(17)).wrapping_add((mode as u64) << 40).wrapping_add(i as u64)
}

thread_local! {
    static KVM: RefCell<Option<KvmRunner>> = const { RefCell::new(None) };
    static IMAGES: RefCell<Vec<(Mode, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// The base RAM image of `mode` (deterministic: the same on every run and machine).
pub fn with_image<R>(mode: Mode, f: impl FnOnce(&[u8]) -> R) -> R {
    IMAGES.with(|imgs| {
        let mut imgs = imgs.borrow_mut();
        if !imgs.iter().any(|(m, _)| *m == mode) {
            let img = base_image(mode, &mut Rng::new(0xba5e_0000 + mode as u64));
            imgs.push((mode, img));
        }
        let (_, img) = imgs.iter().find(|(m, _)| *m == mode).unwrap();
        f(img)
    })
}

pub fn with_kvm<R>(f: impl FnOnce(&mut KvmRunner) -> R) -> R {
    KVM.with(|k| {
        let mut k = k.borrow_mut();
        let k = k.get_or_insert_with(|| KvmRunner::new(MEM_SIZE));
        f(k)
    })
}

/// How a run ended, for either engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Hlt,
    Shutdown,
    Other(String),
}

pub struct Outcome {
    pub end: End,
    pub state: State,
    pub mem: Vec<u8>,
    /// Port writes in order: (port, width in bytes, value).
    pub io_writes: Vec<(u16, u8, u32)>,
}

/// Run `case` on KVM. Returns the outcome with RAM copied out.
pub fn run_kvm(case: &Case, image: &[u8]) -> Outcome {
    with_kvm(|k| {
        let at = case.code_linear();
        let (exit, state) = k.run_patched(&case.init, image, &[(at, &case.code)]);
        let end = match exit {
            Exit::Hlt => End::Hlt,
            Exit::Shutdown => End::Shutdown,
            other => End::Other(format!("{other:?}")),
        };
        (end, state, k.mem().to_vec(), k.io_writes.clone())
    })
    .into_outcome()
}

trait IntoOutcome {
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for (End, State, Vec<u8>, Vec<(u16, u8, u32)>) {
    fn into_outcome(self) -> Outcome {
        let (end, state, mem, io_writes) = self;
        if end != End::Hlt {
            // An exit we did not complete (MMIO, emulation failure, shutdown) leaves KVM mid-
            // instruction: start the next case on a fresh VM.
            KVM.with(|k| *k.borrow_mut() = None);
        }
        Outcome { end, state, mem, io_writes }
    }
}

/// One host-CPU runner per process: its low mapping sits at fixed addresses, so test threads take
/// turns.
struct SharedHost(Option<super::host32::Host32>);
// SAFETY: the runner's raw pointers are its own mappings; the mutex serialises every use.
unsafe impl Send for SharedHost {}
static HOST: std::sync::Mutex<SharedHost> = std::sync::Mutex::new(SharedHost(None));

/// Run a register-only, fault-free 32-bit flat case natively on the host CPU.
pub fn run_silicon(case: &Case, image: &[u8]) -> Outcome {
    assert_eq!(case.mode, Mode::Pm32Flat, "the host oracle runs 32-bit flat code only");
    {
        let mut guard = HOST.lock().unwrap_or_else(|e| e.into_inner());
        let h = guard.0.get_or_insert_with(super::host32::Host32::new);
        // RAM at the guest's own addresses; code at 0x8000 (the HLT replaced by the way back)
        let mut mem = case_image(case, image);
        h.map_low(MEM_SIZE).copy_from_slice(&mem[0x1000..]);
        let code = &case.code[..case.code.len() - 1];
        let o = h.run_low(code, &super::host32::Regs32 { gpr: case.init.gpr, eflags: case.init.eflags });
        let at = case.code_linear() as usize;
        let code_area = at..at + case.code.len() + 5;
        let saved: Vec<u8> = mem[code_area.clone()].to_vec();
        mem[0x1000..].copy_from_slice(h.map_low(MEM_SIZE));
        mem[code_area].copy_from_slice(&saved);
        let mut state = case.init.clone();
        state.gpr = o.gpr;
        state.eflags = (case.init.eflags & !(ARITH | DF)) | (o.eflags & (ARITH | DF));
        state.eip = case.init.eip + case.code.len() as u32;
        Outcome { end: End::Hlt, state, mem, io_writes: Vec::new() }
    }
}

/// The image with the case's code in place (what the interpreter's bus starts with).
pub fn case_image(case: &Case, image: &[u8]) -> Vec<u8> {
    let mut m = image.to_vec();
    let at = case.code_linear() as usize;
    m[at..at + case.code.len()].copy_from_slice(&case.code);
    m
}

/// Compare two outcomes under the case's undefined-flag masks. `None` when they agree.
pub fn compare(case: &Case, kvm: &Outcome, emu: &Outcome) -> Option<String> {
    let mut diffs = String::new();
    if kvm.end != emu.end {
        let _ = writeln!(diffs, "  end: kvm {:?}, interpreter {:?}", kvm.end, emu.end);
    }
    let fault = fault_of(case.mode, &kvm.state);
    let fmask = !(if fault.is_some() || kvm.end != End::Hlt { case.undef_ever } else { case.undef_end });
    let (a, b) = (&kvm.state, &emu.state);
    for r in 0..8 {
        if a.gpr[r] != b.gpr[r] {
            let _ = writeln!(diffs, "  {}: kvm {:08x}, interpreter {:08x}", GPR_NAMES[r], a.gpr[r], b.gpr[r]);
        }
    }
    if a.eip != b.eip {
        let _ = writeln!(diffs, "  eip: kvm {:08x}, interpreter {:08x}", a.eip, b.eip);
    }
    if (a.eflags ^ b.eflags) & fmask != 0 {
        let _ = writeln!(
            diffs,
            "  eflags: kvm {:08x} [{}], interpreter {:08x} [{}] (masked undefined: [{}])",
            a.eflags,
            flag_string(a.eflags),
            b.eflags,
            flag_string(b.eflags),
            flag_string(!fmask)
        );
    }
    for r in 0..6 {
        if !seg_eq(&a.seg[r], &b.seg[r]) {
            let _ = writeln!(diffs, "  {}: kvm {:?}, interpreter {:?}", SEG_NAMES[r], a.seg[r], b.seg[r]);
        }
    }
    for (n, x, y) in [("cr0", a.cr0, b.cr0), ("cr2", a.cr2, b.cr2), ("cr3", a.cr3, b.cr3), ("cr4", a.cr4, b.cr4)] {
        if x != y {
            let _ = writeln!(diffs, "  {n}: kvm {x:08x}, interpreter {y:08x}");
        }
    }
    if a.cr0 == b.cr0 && kvm.io_writes != emu.io_writes {
        let _ = writeln!(diffs, "  port writes: kvm {:x?}, interpreter {:x?}", kvm.io_writes, emu.io_writes);
    }
    // Memory, with the EFLAGS image of an exception frame masked like EFLAGS itself.
    let mut masked: Vec<(usize, u8)> = Vec::new();
    if let Some(f) = fault {
        let at = f.frame as usize + if f.frame32 { 8 + if f.has_error_code { 4 } else { 0 } } else { 4 };
        let m = (!fmask).to_le_bytes();
        for i in 0..(if f.frame32 { 4 } else { 2 }) {
            masked.push((at + i, m[i]));
        }
    }
    let mut shown = 0;
    if kvm.mem != emu.mem {
        for (i, (x, y)) in kvm.mem.iter().zip(emu.mem.iter()).enumerate() {
            if x != y {
                let ignore = masked.iter().find(|(at, _)| *at == i).map(|(_, m)| *m).unwrap_or(0);
                if (x ^ y) & !ignore != 0 {
                    if shown < 16 {
                        let _ = writeln!(diffs, "  mem[{i:#07x}]: kvm {x:02x}, interpreter {y:02x}");
                    }
                    shown += 1;
                }
            }
        }
        if shown > 16 {
            let _ = writeln!(diffs, "  ... {} differing bytes in all", shown);
        }
    }
    if diffs.is_empty() {
        None
    } else {
        Some(report(case, kvm, Some(emu), &diffs))
    }
}

/// Unusable segments compare by selector only (their hidden parts are not architectural).
fn seg_eq(a: &Seg, b: &Seg) -> bool {
    if !a.valid && !b.valid {
        return a.selector == b.selector;
    }
    a == b
}

pub fn describe_end(case: &Case, o: &Outcome) -> String {
    match fault_of(case.mode, &o.state) {
        Some(f) => {
            let rd = |at: u32, n: usize| -> u32 {
                let mut v = 0u32;
                for i in (0..n).rev() {
                    v = v << 8 | *o.mem.get(at as usize + i).unwrap_or(&0) as u32;
                }
                v
            };
            if f.frame32 {
                let (err, ret) = if f.has_error_code { (Some(rd(f.frame, 4)), f.frame + 4) } else { (None, f.frame) };
                format!(
                    "exception {} (error code {:?}) at {:04x}:{:08x}, cr2 {:08x}",
                    f.vector,
                    err,
                    rd(ret + 4, 2),
                    rd(ret, 4),
                    o.state.cr2
                )
            } else {
                format!("exception {} at {:04x}:{:04x}", f.vector, rd(f.frame + 2, 2), rd(f.frame, 2))
            }
        }
        None => format!("{:?}", o.end),
    }
}

pub fn report(case: &Case, kvm: &Outcome, emu: Option<&Outcome>, diffs: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "=== MISMATCH group {} mode {:?} seed {:#x} ===", case.group, case.mode, case.seed);
    let _ = writeln!(
        s,
        "reproduce: VESSEL_DIFF_REPLAY={:#x} cargo test --release -p vessel-core --test diff_groups -- --exact {} --nocapture",
        case.seed, case.group
    );
    let _ = writeln!(s, "code at {:#x} (linear); generator's text | iced-x86:", case.code_linear());
    let offs: Vec<usize> = case
        .listing
        .iter()
        .filter_map(|l| usize::from_str_radix(l.trim_start().split(':').next()?, 16).ok())
        .chain(std::iter::once(case.code.len()))
        .collect();
    for (i, l) in case.listing.iter().enumerate() {
        let (a, b) = (offs[i], offs[i + 1].max(offs[i]));
        let ip = case.init.eip.wrapping_add(a as u32);
        let iced = vessel_core::cpu::disasm::disassemble(&case.code[a..b], case.mode.code32(), ip);
        let _ = writeln!(s, "  {l:<75} | {iced}");
    }
    let _ = writeln!(s, "undefined flags masked: at end [{}], ever [{}]", flag_string(case.undef_end), flag_string(case.undef_ever));
    let _ = writeln!(s, "--- initial state\n{}", case.init);
    let _ = writeln!(s, "--- KVM: {}\n{}", describe_end(case, kvm), kvm.state);
    if let Some(e) = emu {
        let _ = writeln!(s, "--- interpreter: {}\n{}", describe_end(case, e), e.state);
    }
    let _ = writeln!(s, "--- differences\n{diffs}");
    s
}

/// Find the first instruction after which the engines disagree: rerun prefixes of the sequence
/// (each followed by HLT) and report the shortest one that mismatches.
pub fn bisect(case: &Case, img: &[u8], silicon: bool, e: &mut dyn FnMut(&Case, &[u8]) -> Outcome) -> String {
    let offs: Vec<usize> = case
        .listing
        .iter()
        .filter_map(|l| usize::from_str_radix(l.trim_start().split(':').next()?, 16).ok())
        .collect();
    for (k, &end) in offs.iter().enumerate().skip(1) {
        let mut c = case.clone();
        c.code = case.code[..end].to_vec();
        c.code.push(0xf4);
        c.listing = case.listing[..k].to_vec();
        c.undef_end = case.undef_ever;
        let kv = if silicon { run_silicon(&c, img) } else { run_kvm(&c, img) };
        let o = e(&c, img);
        if compare(&c, &kv, &o).is_some() {
            return format!("--- first disagreement after instruction {k} of the sequence: {}\n", case.listing[k - 1].trim());
        }
    }
    String::new()
}

/// Statistics of a group run.
#[derive(Default, Debug)]
pub struct Stats {
    pub cases: u32,
    pub faults: [u32; 32],
    pub failures: Vec<String>,
}

impl Stats {
    pub fn summary(&self) -> String {
        let f: Vec<String> = self.faults.iter().enumerate().filter(|(_, n)| **n > 0).map(|(v, n)| format!("#{v}:{n}")).collect();
        format!("{} cases, {} mismatches, faults [{}]", self.cases, self.failures.len(), f.join(" "))
    }
}

/// Run the cases of `gr` in `mode` with `engine` (None = KVM only: checks the generator keeps the
/// guest inside RAM and always reaches HLT).
pub fn run_group(gr: &Group, mode: Mode, n: u32, mut engine: Option<&mut dyn FnMut(&Case, &[u8]) -> Outcome>) -> Stats {
    let base = first_seed();
    let mut st = Stats::default();
    let replay = replay_seed();
    let n = if replay.is_some() { 1 } else { n };
    with_image(mode, |img| {
        for i in 0..n {
            let seed = replay.unwrap_or_else(|| case_seed(base, gr.name, mode, i));
            let case = make_case(gr, mode, seed, img);
            let k = if gr.silicon { run_silicon(&case, img) } else { run_kvm(&case, img) };
            st.cases += 1;
            if let Some(f) = fault_of(mode, &k.state) {
                st.faults[f.vector as usize] += 1;
            }
            if k.end != End::Hlt {
                st.failures.push(report(&case, &k, None, "  the oracle did not reach HLT (generator or host problem)\n"));
                continue;
            }
            if let Some(e) = engine.as_mut() {
                let o = e(&case, img);
                if let Some(r) = compare(&case, &k, &o) {
                    let first = bisect(&case, img, gr.silicon, &mut **e);
                    st.failures.push(format!("{r}{first}"));
                }
            }
            if st.failures.len() >= 20 {
                break;
            }
        }
    });
    st
}
