//! The CPU thread: runs time slices, applies commands between them, publishes frames and events.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use super::{
    snapshot, Command, Envelope, Event, FrameWriter, Machine, Query, Reply, RunState, Slice, Status, StopReason,
    VmError, VmOptions,
};

/// Commands are looked at after this much wall time of running (keeps input latency low
/// without a channel poll per slice).
const COMMAND_POLL: Duration = Duration::from_millis(2);
/// How long an idle (halted, nothing scheduled) machine sleeps waiting for a command.
const IDLE_WAIT: Duration = Duration::from_millis(5);

struct Runner<M: Machine> {
    m: M,
    opts: VmOptions,
    events: Sender<Event>,
    frames: FrameWriter,
    notify: Option<Box<dyn Fn() + Send>>,
    paused: bool,
    stop: Option<StopReason>,
    serial_in: Vec<u8>,
    serial_out: Vec<u8>,
    last_refresh: Instant,
    refresh: Duration,
    /// Wall-clock instant corresponding to virtual time 0 (for `realtime`), moved forward
    /// by the time spent paused.
    epoch: Instant,
    paused_at: Option<Instant>,
}

pub(super) fn run<M: Machine>(
    m: M,
    opts: VmOptions,
    rx: Receiver<Envelope>,
    events: Sender<Event>,
    frames: FrameWriter,
    notify: Option<Box<dyn Fn() + Send>>,
) {
    let now = Instant::now();
    let mut r = Runner {
        m,
        paused: opts.start_paused,
        refresh: Duration::from_millis(opts.refresh_ms.unwrap_or(16)),
        opts,
        events,
        frames,
        notify,
        stop: None,
        serial_in: Vec::new(),
        serial_out: Vec::new(),
        last_refresh: now,
        epoch: now,
        paused_at: None,
    };
    if r.paused {
        r.paused_at = Some(now);
    }
    r.emit(Event::StateChanged(r.state()));
    r.main_loop(&rx);
    r.m.flush();
    r.drain_serial();
    r.refresh_display();
    let reason = r.stop.clone().unwrap_or(StopReason::Requested);
    let wall_s = now.elapsed().as_secs_f64();
    tracing::info!(
        ?reason,
        instructions = r.m.instructions(),
        virtual_ms = r.m.virtual_ns() / 1_000_000,
        wall_s,
        mips = r.m.instructions() as f64 / wall_s / 1e6,
        "VM stopped"
    );
    r.emit(Event::StateChanged(RunState::Shutdown(reason.clone())));
    r.emit(Event::Exited(reason));
    // Answer whatever is still queued so no requester blocks forever.
    while let Ok(env) = rx.try_recv() {
        match env {
            Envelope::Cmd(_, Some(reply)) => {
                let _ = reply.send(Err(VmError::Gone));
            }
            Envelope::Query(Query::Status, reply) => {
                let _ = reply.send(Ok(Reply::Status(r.status())));
            }
            Envelope::Query(_, reply) => {
                let _ = reply.send(Err(VmError::Gone));
            }
            _ => {}
        }
    }
}

impl<M: Machine> Runner<M> {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn state(&self) -> RunState {
        match (&self.stop, self.paused) {
            (Some(r), _) => RunState::Shutdown(r.clone()),
            (None, true) => RunState::Paused,
            (None, false) => RunState::Running,
        }
    }

    fn status(&self) -> Status {
        Status { state: self.state(), virtual_ns: self.m.virtual_ns(), instructions: self.m.instructions() }
    }

    fn main_loop(&mut self, rx: &Receiver<Envelope>) {
        loop {
            // Commands: block while paused or idle, otherwise just drain.
            match rx.try_recv() {
                Ok(env) => {
                    self.handle(env);
                    if self.stop.is_some() {
                        return;
                    }
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    // every handle dropped: nobody can control or watch this VM
                    self.stop = Some(StopReason::Requested);
                    return;
                }
                Err(TryRecvError::Empty) => {}
            }
            if self.paused {
                self.periodic(true);
                match rx.recv_timeout(self.refresh) {
                    Ok(env) => self.handle(env),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.stop = Some(StopReason::Requested);
                    }
                }
                if self.stop.is_some() {
                    return;
                }
                continue;
            }
            let idle = self.run_for(COMMAND_POLL);
            if self.stop.is_some() {
                return;
            }
            self.periodic(false);
            if idle {
                // the guest waits for input: whatever it printed last (a shell prompt without
                // a newline) must be visible now
                self.m.flush_output();
                match rx.recv_timeout(IDLE_WAIT) {
                    Ok(env) => self.handle(env),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => self.stop = Some(StopReason::Requested),
                }
                if self.stop.is_some() {
                    return;
                }
            }
        }
    }

    /// Run slices for about `budget` of wall time. Returns true when the machine went idle.
    fn run_for(&mut self, budget: Duration) -> bool {
        // Real time: an idle guest skips virtual time ahead to its next timer in one slice, so
        // check before every slice and wait (briefly, to keep commands and refreshes flowing)
        // while the guest is ahead of the wall clock.
        if self.opts.realtime {
            let ahead = self.ahead_of_wall();
            if ahead > Duration::from_millis(2) {
                std::thread::sleep(ahead.min(Duration::from_millis(8)));
                return false;
            }
        }
        let start = Instant::now();
        let mut n = 0u32;
        loop {
            self.feed_serial();
            match self.m.run_slice() {
                Slice::Ran => {}
                Slice::Reset => self.emit(Event::Reset),
                Slice::Idle => return true,
                Slice::Stopped(r) => {
                    self.stop = Some(r);
                    return false;
                }
            }
            n += 1;
            if self.opts.realtime && self.ahead_of_wall() > Duration::from_millis(2) {
                break;
            }
            // Instant::now is cheap but not free; slices are microseconds long.
            if n % 16 == 0 && start.elapsed() >= budget {
                break;
            }
        }
        false
    }

    /// How far virtual time is ahead of the wall clock (zero when behind).
    fn ahead_of_wall(&self) -> Duration {
        let wall = self.epoch.elapsed().as_nanos() as u64;
        Duration::from_nanos(self.m.virtual_ns().saturating_sub(wall))
    }

    /// Serial output events and display refresh.
    fn periodic(&mut self, paused: bool) {
        self.drain_serial();
        if self.last_refresh.elapsed() >= self.refresh {
            self.last_refresh = Instant::now();
            self.m.flush_output();
            if !paused {
                self.refresh_display();
            }
        }
    }

    fn drain_serial(&mut self) {
        self.m.take_serial_output(&mut self.serial_out);
        if !self.serial_out.is_empty() {
            let data = std::mem::take(&mut self.serial_out);
            self.emit(Event::Serial(data));
        }
    }

    fn feed_serial(&mut self) {
        if !self.serial_in.is_empty() {
            let n = self.m.serial_input(&self.serial_in);
            self.serial_in.drain(..n);
        }
    }

    fn refresh_display(&mut self) {
        if let Some(f) = self.m.refresh_display() {
            if f.width == 0 || f.height == 0 {
                return;
            }
            if f.dirty.is_some_and(|d| d.width == 0 || d.height == 0) {
                return;
            }
            self.frames.publish(f);
            if let Some(n) = &self.notify {
                n();
            }
        }
    }

    /// A copy of the current screen (refreshed and published like a periodic refresh, so the
    /// front end's dirty tracking stays complete).
    fn screen(&mut self) -> Option<std::sync::Arc<crate::display::Frame>> {
        let f = self.m.refresh_display()?;
        let copy = std::sync::Arc::new(f.clone());
        let changed = f.width > 0 && f.height > 0 && !f.dirty.is_some_and(|d| d.width == 0 || d.height == 0);
        if changed {
            self.frames.publish(f);
            if let Some(n) = &self.notify {
                n();
            }
        }
        Some(copy)
    }

    /// After the virtual clock jumped (loadvm): realtime pacing starts from the restored time.
    fn rebase_epoch(&mut self) {
        let v = Duration::from_nanos(self.m.virtual_ns());
        self.epoch = Instant::now().checked_sub(v).unwrap_or_else(Instant::now);
        if self.paused {
            self.paused_at = Some(Instant::now());
        }
    }

    fn set_paused(&mut self, p: bool) {
        if p == self.paused {
            return;
        }
        self.paused = p;
        if p {
            self.paused_at = Some(Instant::now());
            self.m.flush();
        } else if let Some(t) = self.paused_at.take() {
            self.epoch += t.elapsed();
        }
        self.emit(Event::StateChanged(self.state()));
    }

    fn handle(&mut self, env: Envelope) {
        match env {
            Envelope::Query(q, reply) => {
                let r = match q {
                    Query::Status => Ok(Reply::Status(self.status())),
                    Query::Block => Ok(Reply::Block(self.m.block_info())),
                    Query::Registers => match self.m.cpu_state() {
                        Some(s) => Ok(Reply::Registers(Box::new(s))),
                        None => Err(VmError::Unsupported("reading CPU registers")),
                    },
                    Query::Screen => Ok(Reply::Screen(self.screen())),
                    Query::Snapshots => {
                        snapshot::list(&self.m, self.opts.state_dir.as_deref()).map(Reply::Snapshots)
                    }
                };
                let _ = reply.send(r);
            }
            Envelope::Cmd(cmd, reply) => {
                let res = self.apply(cmd);
                match reply {
                    Some(tx) => {
                        let _ = tx.send(res);
                    }
                    None => {
                        if let Err(e) = res {
                            self.emit(Event::Error(e.to_string()));
                        }
                    }
                }
            }
        }
    }

    fn apply(&mut self, cmd: Command) -> Result<Reply, VmError> {
        match cmd {
            Command::Pause => self.set_paused(true),
            Command::Resume => self.set_paused(false),
            Command::Reset => {
                self.m.reset();
                self.emit(Event::Reset);
            }
            Command::PowerOff | Command::Quit => {
                self.stop = Some(StopReason::Requested);
            }
            Command::Input(ev) => self.m.input(&ev),
            Command::SerialInput(data) => {
                self.serial_in.extend(data);
                self.feed_serial();
            }
            Command::ChangeMedia { device, path } => self.m.change_media(&device, path.as_deref())?,
            Command::SaveState(path) => {
                let tmp = path.with_extension("partial");
                let f = std::fs::File::create(&tmp).map_err(|e| VmError::io(&tmp, e))?;
                let mut w = std::io::BufWriter::new(f);
                self.m.save_state(&mut w)?;
                use std::io::Write;
                w.flush().map_err(|e| VmError::io(&tmp, e))?;
                w.get_ref().sync_all().map_err(|e| VmError::io(&tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| VmError::io(&path, e))?;
            }
            Command::LoadState(path) => {
                let f = std::fs::File::open(&path).map_err(|e| VmError::io(&path, e))?;
                self.m.restore_state(&mut std::io::BufReader::new(f))?;
                self.rebase_epoch();
                // the guest's screen is whatever the restored device shows: full refresh
                self.refresh_display();
            }
            Command::SaveVm(name) => {
                snapshot::save(&mut self.m, self.opts.state_dir.as_deref(), &name)?;
            }
            Command::LoadVm(name) => {
                snapshot::load(&mut self.m, self.opts.state_dir.as_deref(), &name)?;
                self.rebase_epoch();
                self.refresh_display();
            }
            Command::DelVm(name) => snapshot::delete(&mut self.m, self.opts.state_dir.as_deref(), &name)?,
            Command::PowerButton => self.m.power_button()?,
        }
        Ok(Reply::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{InputEvent, Vm};
    use super::*;

    /// A guest that halts with a timer due 50 ms ahead, over and over: each slice skips 50 ms of
    /// virtual time in no wall time (what an idle PC does).
    struct Sleeper {
        ns: u64,
    }

    impl Machine for Sleeper {
        fn run_slice(&mut self) -> Slice {
            self.ns += 50_000_000;
            Slice::Ran
        }
        fn reset(&mut self) {}
        fn virtual_ns(&self) -> u64 {
            self.ns
        }
        fn instructions(&self) -> u64 {
            0
        }
        fn serial_input(&mut self, _: &[u8]) -> usize {
            0
        }
        fn take_serial_output(&mut self, _: &mut Vec<u8>) {}
        fn input(&mut self, _: &InputEvent) {}
    }

    #[test]
    fn realtime_keeps_an_idle_guest_at_wall_clock_speed() {
        let start = Instant::now();
        let vm = Vm::spawn(Sleeper { ns: 0 }, VmOptions { realtime: true, ..VmOptions::default() });
        std::thread::sleep(Duration::from_millis(400));
        let virt = Duration::from_nanos(vm.status().unwrap().virtual_ns);
        let wall = start.elapsed();
        // at most one slice (50 ms) ahead, and not stalled
        assert!(virt <= wall + Duration::from_millis(60), "virtual {virt:?} ran ahead of wall {wall:?}");
        assert!(virt >= Duration::from_millis(200), "virtual {virt:?} stalled (wall {wall:?})");

        let fast = Vm::spawn(Sleeper { ns: 0 }, VmOptions::default());
        std::thread::sleep(Duration::from_millis(100));
        let virt = Duration::from_nanos(fast.status().unwrap().virtual_ns);
        assert!(virt > Duration::from_secs(5), "without realtime idle time is skipped ({virt:?})");
    }
}
