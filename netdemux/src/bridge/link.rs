//! A worker's inbox from the application: datagrams to send, TCP commands, the kernel's
//! answers about neighbours, and an eventfd that wakes the worker when it sleeps.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crossbeam_queue::ArrayQueue;
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::{
    tcp::{COMMANDS, Command},
    udp::TxRequest,
};
use crate::stack::neighbour_cache::Resolution;

/// The kernel's answers about peers a worker asked for (or an application learned first).
pub type Answers = ArrayQueue<(IpAddr, Resolution)>;

/// Datagrams waiting for a worker to transmit them.
pub const WORKER_TX_QUEUE: usize = 1024;
/// Neighbour answers waiting for a worker.
pub const RESOLVED_QUEUE: usize = 256;

/// One worker's inbox.
pub struct WorkerLink {
    /// Datagrams to send.
    pub tx: ArrayQueue<TxRequest>,
    /// TCP: connects, listens, stream kicks, segments handed over from other workers.
    pub commands: ArrayQueue<Command>,
    /// The kernel's answers about peers this worker asked for (shared with the resolver).
    pub resolved: Arc<Answers>,
    /// Signalled to wake the worker from poll(2).
    pub wake: EventFd,
    /// True while the worker sleeps (or is about to).
    pub sleeping: AtomicBool,
    /// Datagrams the worker sent for the application.
    pub sent: AtomicU64,
    /// Datagrams the worker could not send (no neighbour answer, rings full).
    pub dropped: AtomicU64,
}

impl WorkerLink {
    /// An empty inbox.
    pub fn new() -> std::io::Result<Self> {
        Ok(WorkerLink {
            tx: ArrayQueue::new(WORKER_TX_QUEUE),
            commands: ArrayQueue::new(COMMANDS),
            resolved: Arc::new(ArrayQueue::new(RESOLVED_QUEUE)),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            sleeping: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Application side: hands `req` to the worker, waking it if it sleeps.
    pub fn push(&self, req: TxRequest) -> Result<(), TxRequest> {
        self.tx.push(req)?;
        self.wake_if_sleeping();
        Ok(())
    }

    /// Hands a TCP command to the worker, waking it if it sleeps.
    pub fn command(&self, cmd: Command) -> Result<(), Command> {
        self.commands.push(cmd)?;
        self.wake_if_sleeping();
        Ok(())
    }

    fn wake_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Wakes the worker.
    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Worker side: true when nothing waits in the inbox.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty() && self.resolved.is_empty() && self.commands.is_empty()
    }

    /// Worker side: clears a pending wake-up.
    pub fn clear_wake(&self) {
        let _ = self.wake.read();
    }
}
