//! The published counters of one queue worker: atomic mirrors of the sets declared in
//! [`crate::report`], written by that worker only, read by the daemon's report.

use crate::{
    counters::AtomicSet as _,
    report::{
        AtomicQueueCounters, AtomicServiceCounters, AtomicWorkerTcpCounters, QueueReport, TcpReport,
    },
    stack::tcp::AtomicCounters,
};

/// The published counters of one queue worker.
#[derive(Debug)]
pub struct WorkerStats {
    /// The RX queue.
    pub queue: u32,
    /// True when the socket runs in zero-copy mode.
    pub zero_copy: bool,
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
    pub fn new(queue: u32, zero_copy: bool, services: usize, reports_tcp: bool) -> Self {
        WorkerStats {
            queue,
            zero_copy,
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
            counters: self.counters.load(),
            tcp: self.reports_tcp.then(|| TcpReport {
                worker: self.tcp_worker.load(),
                stack: self.tcp_stack.load(),
            }),
        }
    }
}
