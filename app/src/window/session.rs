//! `vessel run` with a window: the machine on the VM engine, the guest window on the main thread.
//!
//! [`run_windowed`] is what `vessel run` calls when the run has a display; a front end that drives
//! the engine itself (the monitor) uses [`GuestWindow`](super::GuestWindow) directly: create it
//! first (main thread), spawn the engine with its `frame_notify()`, then `run()` it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use vessel_core::vm::{Command, StopReason, Vm, VmOptions};
use vessel_machines::pc::machine::Machine;

use super::{Display, GuestWindow, WindowOptions};
use crate::run::RunArgs;

/// Exit status for how the VM stopped, as `vessel run` documents it.
pub fn exit_status(reason: &StopReason) -> i32 {
    match reason {
        StopReason::PowerOff | StopReason::Reset | StopReason::Requested => 0,
        StopReason::DebugExit(c) => *c as i32,
        StopReason::Hung(where_) => {
            eprintln!("vessel: {where_}");
            1
        }
    }
}

/// Run `machine` on the engine and show it in a window until the VM ends or the window closes.
/// `consoles` starts stdin and the monitor on the VM's commander (`run::run` decides which).
pub fn run_windowed(
    a: &RunArgs,
    machine: Machine,
    mut opts: VmOptions,
    consoles: impl FnOnce(&vessel_core::vm::Commander),
) -> Result<i32> {
    let window = GuestWindow::new()?;
    // An interactive guest runs in real time: the VM never races ahead of the wall clock.
    opts.realtime = true;
    let mut vm = Vm::spawn_with_notify(machine, opts, Some(window.frame_notify()));
    let frames = vm.take_frames().expect("fresh VM has its frame reader");
    let events = vm.take_events().expect("fresh VM has its events");
    let commander = vm.commander();
    consoles(&commander);
    let timed_out = Arc::new(AtomicBool::new(false));
    if let Some(t) = a.timeout {
        let (cmd, flag) = (commander.clone(), timed_out.clone());
        std::thread::Builder::new().name("vessel-timeout".into()).spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(t));
            flag.store(true, Ordering::Release);
            let _ = cmd.send(Command::PowerOff);
        })?;
    }
    let wopts = WindowOptions {
        name: a.name.clone(),
        scale: a.scale,
        full_screen: a.full_screen,
        console: None,
    };
    let end = window.run(Display { frames, commander, events }, wopts);
    // the VM thread flushes its sinks and publishes its last frame before it ends
    vm.join();
    let mut end = end?;
    if let Some(p) = &a.screenshot {
        let _ = end.frames.latest();
        let f = end.frames.current();
        if f.width == 0 {
            anyhow::bail!("--screenshot: the guest never showed a screen (-vga none?)");
        }
        crate::screenshot::write_png(p, f)?;
        tracing::info!(path = %p.display(), width = f.width, height = f.height, "screenshot written");
    }
    if timed_out.load(Ordering::Acquire) {
        eprintln!("vessel: timeout after {:.1}s", a.timeout.unwrap_or(0.0));
        return Ok(124);
    }
    Ok(exit_status(&end.reason))
}
