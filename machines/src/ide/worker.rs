//! The IDE controller's I/O worker: one host thread per controller that performs the disk and
//! CD-ROM reads, writes and flushes, so the CPU thread never waits for a slow image.
//!
//! Protocol: a channel [`IoWorker::submit`]s a [`Request`] that *owns* its data buffer (moved, not
//! copied: the channel's transfer buffer goes to the worker and comes back in the [`Completion`],
//! so steady-state I/O allocates nothing). The device shows BSY while a request is out and picks
//! completions up in `poll` (once per board time slice), on status-register reads (guests that
//! poll BSY see completion as soon as the host did it) and in `wait` (the board waits here instead
//! of skipping virtual time while the CPU is halted on a pending request). Requests are served in
//! submission order, so a write is always on the image before a later read of the same sectors.
//!
//! Each request carries the submitting channel's `generation`; a device reset bumps it, so a
//! completion of a request that was overtaken by a reset is recognised and dropped.
//!
//! Save/restore: [`IoWorker::drain`] blocks until every request out is complete and keeps the
//! completions for the next pick-up. Saving the device drains first and saves the completed
//! buffers as part of the channel state, so a saved machine never refers to I/O that is only
//! half done, and every write the guest issued before the save is on the image.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vessel_core::block::BlockDevice;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

pub struct Request {
    /// Channel index (0 primary, 1 secondary).
    pub chan: u8,
    pub generation: u32,
    pub dev: Arc<dyn BlockDevice>,
    pub op: Op,
    /// Byte offset in the image.
    pub offset: u64,
    /// Read: filled by the worker (its length is the request length). Write: the data.
    pub buf: Vec<u8>,
}

pub struct Completion {
    pub chan: u8,
    pub generation: u32,
    pub buf: Vec<u8>,
    /// `Err` carries the block layer's message (it names the image).
    pub result: Result<(), String>,
}

struct Inbox {
    rx: Receiver<Completion>,
    /// Completions received by `drain`/`wait` and not handed out yet.
    stash: VecDeque<Completion>,
    in_flight: usize,
}

pub struct IoWorker {
    tx: Option<Sender<Request>>,
    inbox: Mutex<Inbox>,
    thread: Option<JoinHandle<()>>,
}

fn serve(req: &mut Request) -> Result<(), String> {
    let r = match req.op {
        Op::Read => req.dev.read_at(&mut req.buf, req.offset),
        Op::Write => req.dev.write_at(&req.buf, req.offset),
        Op::Flush => req.dev.flush(),
    };
    r.map_err(|e| e.to_string())
}

impl IoWorker {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let (ctx, crx) = mpsc::channel::<Completion>();
        let thread = std::thread::Builder::new()
            .name("ide-io".into())
            .spawn(move || {
                while let Ok(mut req) = rx.recv() {
                    let result = serve(&mut req);
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, op = ?req.op, offset = req.offset, "IDE I/O failed");
                    }
                    let done = Completion { chan: req.chan, generation: req.generation, buf: req.buf, result };
                    if ctx.send(done).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the IDE I/O thread");
        IoWorker {
            tx: Some(tx),
            inbox: Mutex::new(Inbox { rx: crx, stash: VecDeque::new(), in_flight: 0 }),
            thread: Some(thread),
        }
    }

    pub fn submit(&self, req: Request) {
        let mut inbox = self.inbox.lock().unwrap();
        inbox.in_flight += 1;
        self.tx.as_ref().expect("worker running").send(req).expect("IDE I/O thread alive");
    }

    /// Requests submitted and not yet handed back by [`IoWorker::take`].
    pub fn outstanding(&self) -> usize {
        let inbox = self.inbox.lock().unwrap();
        inbox.in_flight + inbox.stash.len()
    }

    /// A finished request, if any (never blocks).
    pub fn take(&self) -> Option<Completion> {
        let mut inbox = self.inbox.lock().unwrap();
        if let Some(c) = inbox.stash.pop_front() {
            return Some(c);
        }
        if inbox.in_flight == 0 {
            return None;
        }
        match inbox.rx.try_recv() {
            Ok(c) => {
                inbox.in_flight -= 1;
                Some(c)
            }
            Err(_) => None,
        }
    }

    /// Block up to `max` until a request finishes (it stays available to [`IoWorker::take`]).
    /// Returns false when nothing is outstanding.
    pub fn wait(&self, max: Duration) -> bool {
        let mut inbox = self.inbox.lock().unwrap();
        if !inbox.stash.is_empty() {
            return true;
        }
        if inbox.in_flight == 0 {
            return false;
        }
        match inbox.rx.recv_timeout(max) {
            Ok(c) => {
                inbox.in_flight -= 1;
                inbox.stash.push_back(c);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("IDE I/O thread died"),
        }
        true
    }

    /// Block until every submitted request has finished; completions stay available to `take`.
    pub fn drain(&self) {
        let mut inbox = self.inbox.lock().unwrap();
        while inbox.in_flight > 0 {
            let c = inbox.rx.recv().expect("IDE I/O thread alive");
            inbox.in_flight -= 1;
            inbox.stash.push_back(c);
        }
    }

    /// Drained completions of channel `chan`, for saving (they stay queued).
    pub fn peek_stash<R>(&self, f: impl FnOnce(&VecDeque<Completion>) -> R) -> R {
        let inbox = self.inbox.lock().unwrap();
        f(&inbox.stash)
    }

    /// Forget every queued completion (after a restore replaced the channels' state).
    pub fn discard_stash(&self) {
        self.inbox.lock().unwrap().stash.clear();
    }
}

impl Default for IoWorker {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IoWorker {
    fn drop(&mut self) {
        self.drain();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
