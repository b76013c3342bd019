//! The engine API (`vessel_core::vm::Vm`) driving a real `pc` machine running Debian's SeaBIOS:
//! serial output arrives as events, pause/resume/reset/quit do what they say, and a saved machine
//! state restores into a fresh machine that carries on.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vessel_core::vm::{Command, Event, Reply, RunState, StopReason, Vm, VmOptions};
use vessel_machines::pc::machine::Machine;
use vessel_machines::pc::{Pc, PcConfig};
use vessel_machines::serial::SerialSink;

const BANNER: &str = "SeaBIOS (version";

fn seabios_machine() -> Machine {
    let bios = std::fs::read("/usr/share/seabios/bios.bin").expect("seabios installed (scripts/setup-debian)");
    let pc = Pc::new(PcConfig {
        ram_size: 32 << 20,
        bios,
        graphics: false,
        serial: SerialSink::Buffer(Vec::new()),
        ..Default::default()
    })
    .unwrap();
    Machine::new(pc)
}

/// Collects serial text and other events until `pred` holds or the deadline passes.
struct Watch {
    rx: Receiver<Event>,
    serial: String,
    events: Vec<Event>,
}

impl Watch {
    fn until(&mut self, what: &str, secs: u64, pred: impl Fn(&Watch) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !pred(self) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}; serial so far:\n{}\nevents: {:?}", self.serial, self.events);
            match self.rx.recv_timeout(left) {
                Ok(Event::Serial(b)) => self.serial.push_str(&String::from_utf8_lossy(&b)),
                Ok(e) => self.events.push(e),
                Err(_) => {}
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            match e {
                Event::Serial(b) => self.serial.push_str(&String::from_utf8_lossy(&b)),
                e => self.events.push(e),
            }
        }
    }
}

#[test]
fn vm_runs_seabios_pause_resume_reset_quit() {
    let mut vm = Vm::spawn(seabios_machine(), VmOptions::default());
    let mut w = Watch { rx: vm.take_events().unwrap(), serial: String::new(), events: Vec::new() };
    w.until("the SeaBIOS banner", 120, |w| w.serial.contains(BANNER));
    assert_eq!(w.events.first(), Some(&Event::StateChanged(RunState::Running)));

    // pause: the state says so and the machine stops executing
    assert_eq!(vm.request(Command::Pause).unwrap(), Reply::Done);
    let s1 = vm.status().unwrap();
    assert_eq!(s1.state, RunState::Paused);
    std::thread::sleep(Duration::from_millis(300));
    let s2 = vm.status().unwrap();
    assert_eq!(s1.instructions, s2.instructions, "no instructions while paused");
    assert_eq!(s1.virtual_ns, s2.virtual_ns, "no virtual time while paused");
    w.until("the Paused event", 5, |w| w.events.contains(&Event::StateChanged(RunState::Paused)));

    // resume: it runs again
    vm.request(Command::Resume).unwrap();
    assert_eq!(vm.status().unwrap().state, RunState::Running);
    let t0 = Instant::now();
    while vm.status().unwrap().instructions == s2.instructions {
        assert!(t0.elapsed() < Duration::from_secs(10), "no progress after resume");
        std::thread::sleep(Duration::from_millis(10));
    }

    // reset: SeaBIOS starts over and prints its banner a second time
    w.drain();
    let banners = w.serial.matches(BANNER).count();
    vm.request(Command::Reset).unwrap();
    w.until("the banner after reset", 120, |w| w.serial.matches(BANNER).count() > banners);
    assert!(w.events.contains(&Event::Reset));

    // quit: the VM ends with the requested reason and the thread finishes
    vm.request(Command::Quit).unwrap();
    w.until("Exited", 10, |w| w.events.iter().any(|e| matches!(e, Event::Exited(_))));
    assert!(w.events.contains(&Event::Exited(StopReason::Requested)));
    assert!(w.events.contains(&Event::StateChanged(RunState::Shutdown(StopReason::Requested))));
    vm.join();
}

fn qemu(cmd: &str, args: &[&str]) -> String {
    let o = std::process::Command::new(cmd).args(args).output().expect("qemu tools (scripts/setup-debian)");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{cmd} {args:?}: {text}");
    text
}

/// savevm/loadvm with a disk: the machine state and a qcow2 snapshot of the (writable) floppy are
/// taken together, `qemu-img` sees the snapshot, a write after savevm is rolled back by loadvm,
/// the image stays clean; a writable raw disk makes savevm fail, naming the drive, before
/// anything is written.
#[test]
fn savevm_snapshots_the_disks_with_the_machine() {
    use vessel_machines::fdc::{Fdc, Media};
    let dir = std::env::temp_dir().join(format!("vessel-vmsnap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("fd.qcow2");
    let img_s = img.to_str().unwrap();
    qemu("qemu-img", &["create", "-q", "-f", "qcow2", img_s, "1440K"]);
    qemu("qemu-io", &["-c", "write -P 0x11 0 4k", img_s]);
    let raw = dir.join("fd.img");
    std::fs::write(&raw, vec![0u8; 1440 << 10]).unwrap();
    let states = dir.join("states");

    let machine = |path: &std::path::Path, fmt: &str| {
        let media = Media::open(path, Some(fmt), false).unwrap();
        let image = media.image.clone();
        let mut m = seabios_machine();
        let mut fdc = Fdc::new();
        fdc.attach(0, Some(media));
        m.pc.add_fdc(fdc);
        (m, image)
    };
    let opts = VmOptions { state_dir: Some(states.clone()), ..Default::default() };

    // raw and writable: refused up front
    let (m, _) = machine(&raw, "raw");
    let vm = Vm::spawn(m, opts.clone());
    let e = vm.request(Command::SaveVm("s1".into())).unwrap_err().to_string();
    assert!(e.contains("drive floppy0") && e.contains("fd.img") && e.contains("qcow2"), "{e}");
    assert!(!states.join("s1.vmstate").exists());
    assert_eq!(vm.status().unwrap().state, RunState::Running, "a refused savevm leaves the VM running");
    drop(vm);

    let (m, image) = machine(&img, "qcow2");
    let mut vm = Vm::spawn(m, opts);
    let mut w = Watch { rx: vm.take_events().unwrap(), serial: String::new(), events: Vec::new() };
    w.until("the SeaBIOS banner", 120, |w| w.serial.contains(BANNER));
    vm.request(Command::Pause).unwrap();
    let before = vm.status().unwrap();
    vm.request(Command::SaveVm("s1".into())).unwrap();
    assert!(states.join("s1.vmstate").exists());
    let list = qemu("qemu-img", &["snapshot", "-U", "-l", img_s]);
    assert!(list.lines().any(|l| l.split_whitespace().nth(1) == Some("s1")), "qemu-img does not see s1:\n{list}");
    let snaps = vm.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!((snaps[0].name.as_str(), snaps[0].disks.as_slice()), ("s1", &["floppy0".to_string()][..]));

    // the disk and the machine move on ...
    vm.request(Command::Resume).unwrap();
    image.write_at(&[0x22; 4096], 0).unwrap();
    image.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_ne!(vm.status().unwrap().instructions, before.instructions);
    // ... and loadvm brings both back
    vm.request(Command::Pause).unwrap();
    vm.request(Command::LoadVm("s1".into())).unwrap();
    let after = vm.status().unwrap();
    assert_eq!((after.instructions, after.virtual_ns), (before.instructions, before.virtual_ns));
    let mut buf = [0u8; 4096];
    image.read_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0x11), "loadvm did not revert the disk");
    vm.request(Command::Resume).unwrap();
    vm.request(Command::DelVm("s1".into())).unwrap();
    assert!(vm.snapshots().unwrap().is_empty());
    vm.request(Command::Quit).unwrap();
    vm.join();
    drop(image);
    let check = qemu("qemu-img", &["check", img_s]);
    assert!(check.contains("No errors were found"), "{check}");
    assert!(!qemu("qemu-img", &["snapshot", "-l", img_s]).contains("s1"));
    qemu("qemu-io", &["-c", "read -P 0x11 0 4k", img_s]);
}
