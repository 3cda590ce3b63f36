//! The published counters of one queue worker: atomic mirrors of the sets declared in
//! [`crate::report`], written by that worker only, read by the daemon's report.

use crate::{
    counters::AtomicSet as _,
    report::{
        AtomicQueueCounters, AtomicServiceCounters, AtomicWorkerTcpCounters, QueueReport, TcpReport,
    },
    stack::tcp::AtomicCounters,
};

/// Busy polling of one queue's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyPoll {
    /// Not asked for.
    Off,
    /// Asked for, and the kernel has the queue's NAPI instance to poll.
    On,
    /// Asked for, but the driver registered no NAPI instance for the queue (veth does not):
    /// the socket options are set and change nothing.
    NoNapi,
}

impl BusyPoll {
    /// What the kernel does for a socket opened with `asked` (busy polling requested) whose
    /// SO_INCOMING_NAPI_ID reads `napi_id` (0: none; an error counts as none).
    pub fn of(asked: bool, napi_id: std::io::Result<u32>) -> BusyPoll {
        match (asked, napi_id) {
            (false, _) => BusyPoll::Off,
            (true, Ok(id)) if id != 0 => BusyPoll::On,
            (true, _) => BusyPoll::NoNapi,
        }
    }

    /// `off`, `on` or `no-napi`, as reported.
    pub fn name(self) -> &'static str {
        match self {
            BusyPoll::Off => "off",
            BusyPoll::On => "on",
            BusyPoll::NoNapi => "no-napi",
        }
    }
}

/// The published counters of one queue worker.
#[derive(Debug)]
pub struct WorkerStats {
    /// The RX queue.
    pub queue: u32,
    /// True when the socket runs in zero-copy mode.
    pub zero_copy: bool,
    /// Busy polling on the socket, as the kernel does it.
    pub busy_poll: BusyPoll,
    /// The socket's counters.
    pub counters: AtomicQueueCounters,
    /// Per-service counters, indexed like the `ServiceTable`.
    pub services: Box<[AtomicServiceCounters]>,
    /// The worker's TCP counters.
    pub tcp_worker: AtomicWorkerTcpCounters,
    /// The TCP stack's counters.
    pub tcp_stack: AtomicCounters,
    /// True when the report carries the TCP counters (the worker runs TCP services).
    pub reports_tcp: bool,
}

impl WorkerStats {
    /// Zeroed counters for queue `queue` with `services` services.
    pub fn new(
        queue: u32,
        zero_copy: bool,
        busy_poll: BusyPoll,
        services: usize,
        reports_tcp: bool,
    ) -> Self {
        WorkerStats {
            queue,
            zero_copy,
            busy_poll,
            counters: AtomicQueueCounters::default(),
            services: (0..services)
                .map(|_| AtomicServiceCounters::default())
                .collect(),
            tcp_worker: AtomicWorkerTcpCounters::default(),
            tcp_stack: AtomicCounters::default(),
            reports_tcp,
        }
    }

    /// `copy` or `zero-copy`.
    pub fn mode(&self) -> &'static str {
        if self.zero_copy { "zero-copy" } else { "copy" }
    }

    /// The queue's report.
    pub fn report(&self) -> QueueReport {
        QueueReport {
            queue: self.queue,
            mode: self.mode().to_string(),
            busy_poll: self.busy_poll.name().to_string(),
            counters: self.counters.load(),
            tcp: self.reports_tcp.then(|| TcpReport {
                worker: self.tcp_worker.load(),
                stack: self.tcp_stack.load(),
            }),
        }
    }
}
