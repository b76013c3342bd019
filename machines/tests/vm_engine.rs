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
