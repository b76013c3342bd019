//! The VM engine front ends talk to: a machine running on its own thread, driven by commands and
//! reporting events over channels, with the screen handed over through a triple buffer.
//!
//! ```text
//!   front end (CLI, window, monitor)            CPU thread ("vessel-cpu")
//!   ───────────────────────────────             ──────────────────────────
//!   Vm::send / Vm::request ── Command ─────────▶ between time slices: apply
//!   Vm::events()  ◀──────────────────── Event ── state changes, serial bytes, power-off, errors
//!   FrameReader::latest ◀─ triple buffer ─────── display refresh (~60 Hz wall clock)
//! ```
//!
//! Why one CPU thread that also advances the devices: the board's devices run on the machine's
//! *virtual* clock (see `machines::pc::clock`), so they are brought up to date between CPU time
//! slices on the same thread, deterministically and without locks on the hot path. Work that must
//! not block the CPU (disk I/O, audio mixing, networking) belongs to worker threads owned by the
//! devices themselves (the block layer's I/O worker); the engine does not need to know about them.
//!
//! This module is generic over [`Machine`] so `core` does not depend on any board; `vessel-machines`
//! implements it for the `pc` machine.

mod frame;
mod input;
pub mod snapshot;
mod thread;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

pub use frame::{FrameReader, FrameWriter, frame_channel};
pub use input::{InputEvent, MouseButtons, PAUSE, PRINT_SCREEN};
pub use snapshot::SnapshotEntry;

use crate::block::BlockDevice;
use crate::cpu::CpuState;
use crate::display::Frame;

/// What one call of [`Machine::run_slice`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slice {
    /// Instructions ran.
    Ran,
    /// The guest reset the machine, which restarted.
    Reset,
    /// Halted, nothing scheduled: only outside input (a command) can wake the machine.
    Idle,
    /// The machine stopped for good (until reset).
    Stopped(StopReason),
}

/// Why a machine stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// isa-debug-exit: the process exit status QEMU would use.
    DebugExit(u32),
    /// The guest reset and resets were not allowed (`-no-reboot`).
    Reset,
    /// Halted with interrupts off; the text says where.
    Hung(String),
    /// The front end asked for it ([`Command::PowerOff`] / [`Command::Quit`]).
    Requested,
}

/// Information about one removable or fixed drive, for `info block`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Device name used by `change`/`eject` (e.g. `ide0-hd0`, `ide1-cd0`, `floppy0`).
    pub device: String,
    pub removable: bool,
    /// Image file, `None` when the drive is empty.
    pub file: Option<PathBuf>,
    pub format: Option<String>,
    pub read_only: bool,
}

/// Everything the engine needs from a machine. Implemented by `vessel_machines::pc::machine::Machine`.
///
/// All methods are called on the CPU thread between time slices.
pub trait Machine: Send + 'static {
    /// Run one time slice (a few microseconds to a few milliseconds of virtual time).
    fn run_slice(&mut self) -> Slice;
    /// Hard reset (as the reset button): CPU and devices to power-on state, RAM kept.
    fn reset(&mut self);
    /// Virtual time since power-on, in nanoseconds.
    fn virtual_ns(&self) -> u64;
    /// Instructions executed since power-on.
    fn instructions(&self) -> u64;
    /// Offer bytes to COM1's receiver; returns how many it took (0 when its FIFO is full).
    fn serial_input(&mut self, data: &[u8]) -> usize;
    /// Move what the guest wrote to COM1 since the last call into `out` (only when COM1 is
    /// routed to the engine, i.e. an in-memory sink).
    fn take_serial_output(&mut self, out: &mut Vec<u8>);
    /// Keyboard/mouse input.
    fn input(&mut self, ev: &InputEvent);
    /// Refresh the display and return the machine's current frame, whose `dirty` says what
    /// changed since the previous call (`None` = everything). `None` if there is no display.
    fn refresh_display(&mut self) -> Option<&mut Frame> {
        None
    }
    /// Drives for `info block`.
    fn block_info(&self) -> Vec<BlockInfo> {
        Vec::new()
    }
    /// Insert a medium (`Some(path)`) or eject (`None`) on a removable drive.
    fn change_media(&mut self, device: &str, _path: Option<&std::path::Path>) -> Result<(), VmError> {
        Err(VmError::NoDevice(device.to_string()))
    }
    /// Serialize the whole machine (CPU, devices, RAM) for [`Command::SaveState`].
    fn save_state(&mut self, _out: &mut dyn std::io::Write) -> Result<(), VmError> {
        Err(VmError::Unsupported("saving machine state"))
    }
    /// Replace the machine's state with one written by `save_state`.
    fn restore_state(&mut self, _input: &mut dyn std::io::Read) -> Result<(), VmError> {
        Err(VmError::Unsupported("restoring machine state"))
    }
    /// Flush output sinks (serial files, disks' write caches). Called on pause, stop and savevm.
    fn flush(&mut self) {}
    /// Push buffered console output (serial and debug-console files, stdout) to the OS, so
    /// whoever watches them sees it promptly. Cheap (no disks); the engine calls it about every
    /// display refresh interval and whenever the guest goes idle.
    fn flush_output(&mut self) {}
    /// The (first) CPU's registers, for the monitor's `info registers`.
    fn cpu_state(&self) -> Option<CpuState> {
        None
    }
    /// Every disk image attached to the machine, for `savevm`/`loadvm` (which snapshot each
    /// writable one together with the machine state, see [`snapshot`]).
    fn disks(&self) -> Vec<VmDisk> {
        Vec::new()
    }
    /// Press the ACPI power button (QEMU `system_powerdown`).
    fn power_button(&mut self) -> Result<(), VmError> {
        Err(VmError::Unsupported("the ACPI power button"))
    }
}

/// A disk image a drive of the machine uses.
#[derive(Clone)]
pub struct VmDisk {
    /// Drive name, as in [`BlockInfo::device`].
    pub device: String,
    /// Image file (for messages).
    pub path: PathBuf,
    pub image: Arc<dyn BlockDevice>,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("no such device: {0}")]
    NoDevice(String),
    #[error("{0} is not supported by this machine")]
    Unsupported(&'static str),
    #[error("{0}")]
    Failed(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("machine state: {0}")]
    State(String),
    #[error("the VM has exited")]
    Gone,
}

impl VmError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VmError::Io { path: path.into(), source }
    }
}

/// Run state, as the monitor's `info status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Running,
    Paused,
    /// The machine stopped; the VM thread has ended.
    Shutdown(StopReason),
}

impl RunState {
    /// QEMU's words for `info status`.
    pub fn describe(&self) -> String {
        match self {
            RunState::Running => "running".into(),
            RunState::Paused => "paused".into(),
            RunState::Shutdown(r) => format!("shutdown ({r:?})"),
        }
    }
}

/// Commands from front ends. Applied between time slices, in order.
#[derive(Clone, Debug)]
pub enum Command {
    Pause,
    Resume,
    /// Hard reset (the reset button).
    Reset,
    /// Pull the plug: the VM ends with [`StopReason::Requested`].
    PowerOff,
    Input(InputEvent),
    /// Bytes typed on the serial console.
    SerialInput(Vec<u8>),
    /// Insert (`Some`) or eject (`None`) removable media.
    ChangeMedia { device: String, path: Option<PathBuf> },
    /// Write the machine state (CPU, devices, RAM) to a file.
    SaveState(PathBuf),
    /// Load a state written by `SaveState` (the VM keeps its run state: paused stays paused).
    LoadState(PathBuf),
    /// Same as `PowerOff`; kept separate so front ends can tell "user quit" in logs.
    Quit,
    /// `savevm NAME`: snapshot every writable disk and save the machine state (see [`snapshot`]).
    SaveVm(String),
    /// `loadvm NAME`: roll the disks and the machine back to snapshot NAME.
    LoadVm(String),
    /// `delvm NAME`.
    DelVm(String),
    /// ACPI power button press.
    PowerButton,
}

/// Answers to [`Vm::request`].
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Done,
    Status(Status),
    Block(Vec<BlockInfo>),
    Registers(Box<CpuState>),
    /// The current screen (`None`: the machine has no display).
    Screen(Option<Arc<Frame>>),
    Snapshots(Vec<SnapshotEntry>),
}

/// Snapshot of the VM for `info status` and title bars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: RunState,
    pub virtual_ns: u64,
    pub instructions: u64,
}

/// Events to front ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    StateChanged(RunState),
    /// Bytes the guest wrote to COM1.
    Serial(Vec<u8>),
    /// The machine reset (guest-initiated or [`Command::Reset`]).
    Reset,
    /// The VM ended; no more events follow.
    Exited(StopReason),
    /// A command failed (asynchronous sends only; requests get the error as their reply).
    Error(String),
}

/// Requests the CPU thread answers.
#[derive(Clone, Debug)]
pub(crate) enum Query {
    Status,
    Block,
    Registers,
    Screen,
    Snapshots,
}

pub(crate) enum Envelope {
    Cmd(Command, Option<Sender<Result<Reply, VmError>>>),
    Query(Query, Sender<Result<Reply, VmError>>),
}

/// How a VM runs.
#[derive(Clone, Debug, Default)]
pub struct VmOptions {
    /// Start paused (QEMU `-S`).
    pub start_paused: bool,
    /// Never let virtual time run ahead of wall-clock time (sleep instead).
    pub realtime: bool,
    /// Display refresh interval (default 16 ms).
    pub refresh_ms: Option<u64>,
    /// Where `savevm` keeps machine states (`NAME.vmstate` + `NAME.meta`); `None`: savevm is
    /// refused.
    pub state_dir: Option<PathBuf>,
}

/// A running virtual machine: a handle to its CPU thread.
///
/// Dropping the handle powers the VM off and joins the thread.
pub struct Vm {
    cmd: Commander,
    events: Option<Receiver<Event>>,
    frames: Option<FrameReader>,
    thread: Option<JoinHandle<()>>,
}

impl Vm {
    /// Move `machine` onto a new CPU thread and start it.
    pub fn spawn<M: Machine>(machine: M, opts: VmOptions) -> Vm {
        Self::spawn_with_notify(machine, opts, None)
    }

    /// As [`Vm::spawn`]; `frame_notify` is called (on the CPU thread) after each new frame is
    /// published, e.g. to wake a window's event loop.
    pub fn spawn_with_notify<M: Machine>(
        machine: M,
        opts: VmOptions,
        frame_notify: Option<Box<dyn Fn() + Send>>,
    ) -> Vm {
        let (tx, rx) = mpsc::channel();
        let (etx, erx) = mpsc::channel();
        let (fw, fr) = frame_channel();
        let thread = std::thread::Builder::new()
            .name("vessel-cpu".into())
            .spawn(move || thread::run(machine, opts, rx, etx, fw, frame_notify))
            .expect("spawn the CPU thread");
        Vm { cmd: Commander { tx }, events: Some(erx), frames: Some(fr), thread: Some(thread) }
    }

    /// Queue a command; failures come back as [`Event::Error`].
    pub fn send(&self, cmd: Command) -> Result<(), VmError> {
        self.cmd.send(cmd)
    }

    /// Apply a command and wait until it has been applied.
    pub fn request(&self, cmd: Command) -> Result<Reply, VmError> {
        self.cmd.request(cmd)
    }

    pub fn status(&self) -> Result<Status, VmError> {
        self.cmd.status()
    }

    pub fn block_info(&self) -> Result<Vec<BlockInfo>, VmError> {
        self.cmd.block_info()
    }

    pub fn registers(&self) -> Result<Option<CpuState>, VmError> {
        self.cmd.registers()
    }

    pub fn screen(&self) -> Result<Option<Arc<Frame>>, VmError> {
        self.cmd.screen()
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotEntry>, VmError> {
        self.cmd.snapshots()
    }

    /// The event stream (can be taken once, e.g. by the front end's event loop).
    pub fn take_events(&mut self) -> Option<Receiver<Event>> {
        self.events.take()
    }

    /// The frame consumer (can be taken once, e.g. by the window).
    pub fn take_frames(&mut self) -> Option<FrameReader> {
        self.frames.take()
    }

    /// A cheap clonable handle that sends commands from other threads (input, monitor, window).
    pub fn commander(&self) -> Commander {
        self.cmd.clone()
    }

    /// Wait for the CPU thread to end (after power-off, quit, or the guest stopping).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.cmd.send(Command::PowerOff);
            let _ = t.join();
        }
    }
}

/// A clonable sender of commands.
#[derive(Clone)]
pub struct Commander {
    tx: Sender<Envelope>,
}

impl Commander {
    pub fn send(&self, cmd: Command) -> Result<(), VmError> {
        self.tx.send(Envelope::Cmd(cmd, None)).map_err(|_| VmError::Gone)
    }

    pub fn request(&self, cmd: Command) -> Result<Reply, VmError> {
        let (rtx, rrx) = mpsc::channel();
        self.tx.send(Envelope::Cmd(cmd, Some(rtx))).map_err(|_| VmError::Gone)?;
        rrx.recv().map_err(|_| VmError::Gone)?
    }

    fn query(&self, q: Query) -> Result<Reply, VmError> {
        let (rtx, rrx) = mpsc::channel();
        self.tx.send(Envelope::Query(q, rtx)).map_err(|_| VmError::Gone)?;
        rrx.recv().map_err(|_| VmError::Gone)?
    }

    pub fn status(&self) -> Result<Status, VmError> {
        match self.query(Query::Status)? {
            Reply::Status(s) => Ok(s),
            r => Err(VmError::Failed(format!("unexpected reply {r:?}"))),
        }
    }

    pub fn block_info(&self) -> Result<Vec<BlockInfo>, VmError> {
        match self.query(Query::Block)? {
            Reply::Block(b) => Ok(b),
            r => Err(VmError::Failed(format!("unexpected reply {r:?}"))),
        }
    }

    /// The CPU registers (`None` if the machine does not expose them).
    pub fn registers(&self) -> Result<Option<CpuState>, VmError> {
        match self.query(Query::Registers) {
            Ok(Reply::Registers(s)) => Ok(Some(*s)),
            Err(VmError::Unsupported(_)) => Ok(None),
            Ok(r) => Err(VmError::Failed(format!("unexpected reply {r:?}"))),
            Err(e) => Err(e),
        }
    }

    /// The screen as it is now (refreshed first).
    pub fn screen(&self) -> Result<Option<Arc<Frame>>, VmError> {
        match self.query(Query::Screen)? {
            Reply::Screen(f) => Ok(f),
            r => Err(VmError::Failed(format!("unexpected reply {r:?}"))),
        }
    }

    /// Saved snapshots (`info snapshots`).
    pub fn snapshots(&self) -> Result<Vec<SnapshotEntry>, VmError> {
        match self.query(Query::Snapshots)? {
            Reply::Snapshots(s) => Ok(s),
            r => Err(VmError::Failed(format!("unexpected reply {r:?}"))),
        }
    }
}

