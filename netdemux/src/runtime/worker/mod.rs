//! A queue worker: owns one AF_XDP socket and its frames, one neighbour cache and one TCP
//! socket set, and runs one loop in phases, the way smoltcp's `poll` does:
//!
//! 1. **maintenance** — completed transmissions back, the application's inbox (datagrams to
//!    send, TCP commands);
//! 2. **ingress** — a batch of received frames, each classified once and dispatched
//!    ([`ingress`]);
//! 3. **egress** — TCP timers, new connections and the applications' reactions, then the
//!    segments that are due, and one flush of the TX ring ([`egress`]);
//! 4. **publish and idle** — counters out to the atomics other threads read, then poll(2)
//!    while nothing happens (so a NAPI thread on the same core is never starved), or a spin.
//!
//! Counters are kept locally and published once per batch; the kernel's socket counters are
//! read every 100 ms.

mod egress;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod ingress;
pub mod stats;
pub mod tcp_sockets;

use std::{
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use self::{
    egress::SegmentOut,
    ingress::Dispatch,
    stats::WorkerStats,
    tcp_sockets::{TcpSetup, TcpSockets},
};
use super::{frames::Frames, resolver::ResolverLink};
use crate::{
    bridge::{Bridge, udp::TxRequest},
    counters::AtomicSet as _,
    report::{QueueCounters, ServiceCounters, WorkerTcpCounters},
    services::ServiceTable,
    stack::neighbour_cache::NeighbourCache,
    xsk::{Batch, XskStats},
};

/// Peers a worker's neighbour cache remembers.
const NEIGHBOURS: usize = 4096;
/// Sends that may wait for the kernel's answer about their peer.
const PENDING_SENDS: usize = 256;
/// How often the kernel's socket counters are read.
const KERNEL_COUNTERS_EVERY: Duration = Duration::from_millis(100);

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Spin on the RX ring instead of waiting in poll(2).
    pub spin: bool,
    /// Pin the worker thread to this CPU.
    pub cpu: Option<usize>,
    /// The interface's MAC address (source of what the worker sends).
    pub mac: [u8; 6],
    /// Its line to the neighbour resolver.
    pub resolver: ResolverLink,
    /// How long a peer's MAC address counts as fresh.
    pub neighbour_lifetime: Duration,
    /// Its TCP sockets.
    pub tcp: TcpSetup,
}

/// A worker's link to the application (`netdemux::Stack`).
pub struct WorkerApplication {
    /// The data plane's bridge.
    pub bridge: Arc<Bridge>,
    /// This worker's index among the bridge's links.
    pub index: usize,
}

/// One queue worker.
pub struct Worker<S> {
    sock: S,
    cfg: WorkerConfig,
    services: Arc<ServiceTable>,
    stats: Arc<WorkerStats>,
    counters: QueueCounters,
    service_counters: Vec<ServiceCounters>,
    tcp_counters: WorkerTcpCounters,
    neighbours: NeighbourCache<TxRequest>,
    tcp: Option<TcpSockets>,
    application: Option<WorkerApplication>,
    last_kernel_read: Instant,
}

/// Starts a worker on `sock` on its own thread. It runs until `stop` is set.
pub fn spawn<S: Frames + Send + 'static>(
    sock: S,
    services: Arc<ServiceTable>,
    stats: Arc<WorkerStats>,
    stop: Arc<AtomicBool>,
    cfg: WorkerConfig,
    application: Option<WorkerApplication>,
) -> Result<thread::JoinHandle<Result<()>>> {
    let queue = sock.queue();
    thread::Builder::new()
        .name(format!("netdemux-q{queue}"))
        .spawn(move || {
            if let Some(cpu) = cfg.cpu {
                let mut set = nix::sched::CpuSet::new();
                set.set(cpu).context("CPU number out of range")?;
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                    .with_context(|| format!("cannot pin queue {queue} to CPU {cpu}"))?;
            }
            tracing::debug!(
                queue,
                zero_copy = sock.zero_copy(),
                ?cfg,
                "queue worker starting"
            );
            let mut worker = Worker::new(sock, services, stats, cfg, application, Instant::now());
            let r = worker.run(&stop);
            match &r {
                Ok(()) => tracing::debug!(queue, "queue worker stopped"),
                Err(e) => tracing::error!(queue, "queue worker failed: {e:#}"),
            }
            r
        })
        .context("cannot start a queue worker thread")
}

impl<S: Frames> Worker<S> {
    /// A worker on `sock` serving `services` and, when given, an application.
    pub fn new(
        sock: S,
        services: Arc<ServiceTable>,
        stats: Arc<WorkerStats>,
        cfg: WorkerConfig,
        application: Option<WorkerApplication>,
        now: Instant,
    ) -> Self {
        let tcp = TcpSockets::new(
            &services,
            cfg.tcp.clone(),
            application.as_ref().map(|a| (a.index, a.bridge.clone())),
            now,
        );
        let neighbours = NeighbourCache::new(NEIGHBOURS, PENDING_SENDS, cfg.neighbour_lifetime);
        Worker {
            sock,
            cfg,
            service_counters: vec![ServiceCounters::default(); services.services().len()],
            services,
            stats,
            counters: QueueCounters::default(),
            tcp_counters: WorkerTcpCounters::default(),
            neighbours,
            tcp,
            application,
            last_kernel_read: now,
        }
    }

    /// Runs the loop until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.maintain(now);
            let batch = self.ingress(now);
            let wait_for = self.egress();
            self.publish(&batch);
            self.idle(&batch, wait_for, now)?;
        }
        self.read_kernel_counters();
        Ok(())
    }

    /// Phase 1: transmitted frames back; the application's datagrams and TCP commands.
    fn maintain(&mut self, now: Instant) {
        self.sock.complete();
        let link = self
            .application
            .as_ref()
            .map(|app| &app.bridge.links[app.index]);
        egress::answers(
            &mut self.sock,
            link,
            &mut self.neighbours,
            self.cfg.mac,
            &self.cfg.resolver,
            now,
        );
        if let Some(link) = link {
            egress::datagrams(
                &mut self.sock,
                link,
                &mut self.neighbours,
                self.cfg.mac,
                &self.cfg.resolver,
                now,
            );
        }
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.commands(now);
        }
    }

    /// Phase 2: one batch of received frames.
    fn ingress(&mut self, now: Instant) -> Batch {
        let sockets = self.application.as_ref().map(|a| a.bridge.sockets.load());
        let mut dispatch = Dispatch {
            mac: self.cfg.mac,
            services: &self.services,
            service_counters: &mut self.service_counters,
            counters: &mut self.counters,
            tcp_counters: &mut self.tcp_counters,
            neighbours: &mut self.neighbours,
            tcp: self.tcp.as_mut(),
            sockets: sockets.as_ref().map(|s| &***s),
            now,
            last_service: None,
        };
        let batch = self.sock.receive(|frame| dispatch.frame(frame));
        self.counters.rx += batch.rx as u64;
        self.counters.tx_dropped += batch.tx_dropped as u64;
        self.counters.rx_bad_descs += batch.bad_descs as u64;
        self.counters.tx_bad_lengths += batch.bad_lengths as u64;
        batch
    }

    /// Phase 3: TCP timers and reactions, the segments due, one flush. Returns how long the
    /// worker may sleep.
    fn egress(&mut self) -> Duration {
        let mut wait_for = Duration::from_millis(100);
        let Some(tcp) = self.tcp.as_mut() else {
            return wait_for;
        };
        // After the batch: timers see the time the segments were answered at.
        let now = Instant::now();
        tcp.poll(now);
        let mut out = SegmentOut {
            sock: &mut self.sock,
            neighbours: &mut self.neighbours,
            resolver: &self.cfg.resolver,
            src_mac: self.cfg.mac,
            now,
        };
        tcp.transmit(now, |local, remote, h, payload| {
            out.emit(local, remote, h, payload)
        });
        if out.finish() {
            // The kernel pushed back: come back soon to kick the TX ring again.
            wait_for = Duration::from_millis(1);
        }
        if let Some(t) = tcp.poll_timeout() {
            wait_for = wait_for.min(t.saturating_duration_since(Instant::now()));
        }
        wait_for
    }

    /// Phase 4a: counters out to the atomics (the TCP ones every round, the rest after a batch).
    fn publish(&mut self, batch: &Batch) {
        if let Some(tcp) = &self.tcp {
            self.tcp_counters.open = tcp.connections() as u64;
            self.tcp_counters.time_wait = tcp.time_waits() as u64;
            self.tcp_counters.idle_closed = tcp.idle_closed();
            if let Some((dropped, reordered)) = self.sock.faults() {
                self.tcp_counters.faults_dropped = dropped;
                self.tcp_counters.faults_reordered = reordered;
            }
            self.stats.tcp_stack.store(tcp.counters());
            self.stats.tcp_worker.store(&self.tcp_counters);
        }
        let drops = self.neighbours.drops;
        // Sends without a received frame (TCP timers, the application's datagrams) count too.
        let sent = (drops.no_route, drops.unresolved, self.sock.posted());
        let changed = sent
            != (
                self.counters.no_route,
                self.counters.unresolved,
                self.counters.tx,
            );
        (
            self.counters.no_route,
            self.counters.unresolved,
            self.counters.tx,
        ) = sent;
        if batch.rx > 0 || changed {
            self.stats.counters.store(&self.counters);
            for (local, published) in self.service_counters.iter().zip(&self.stats.services) {
                published.store(local);
            }
        }
    }

    /// Phase 4b: after an empty round, waits for frames or the application (or spins); reads
    /// the kernel's counters every [`KERNEL_COUNTERS_EVERY`], as of the round's start `now` (one
    /// clock read per round: a spinning worker's rounds are short enough for a second to show).
    fn idle(&mut self, batch: &Batch, wait_for: Duration, now: Instant) -> Result<()> {
        if batch.rx == 0 {
            self.wait(wait_for)
                .with_context(|| format!("poll on queue {} failed", self.sock.queue()))?;
        }
        if now.saturating_duration_since(self.last_kernel_read) >= KERNEL_COUNTERS_EVERY {
            self.read_kernel_counters();
        }
        Ok(())
    }

    /// Waits up to `wait_for` for a frame or, with an application, for its next request.
    fn wait(&mut self, mut wait_for: Duration) -> std::io::Result<()> {
        if self.cfg.spin {
            self.sock.kick();
            return Ok(());
        }
        let Some(app) = &self.application else {
            if !wait_for.is_zero() {
                self.sock.wait(None, wait_for)?;
            }
            return Ok(());
        };
        let link = &app.bridge.links[app.index];
        link.sleeping.store(true, Ordering::SeqCst);
        let waited = if link.is_empty() {
            if self.neighbours.pending() > 0 {
                wait_for = wait_for.min(Duration::from_millis(10));
            }
            self.sock
                .wait(Some(link.wake.as_fd()), wait_for)
                .map(|_| ())
        } else {
            Ok(())
        };
        link.sleeping.store(false, Ordering::SeqCst);
        link.clear_wake();
        waited
    }

    /// The kernel's socket counters, into the published ones.
    fn read_kernel_counters(&mut self) {
        if let Ok(s) = self.sock.stats() {
            self.take_kernel_counters(&s);
            self.stats.counters.store(&self.counters);
        }
        self.last_kernel_read = Instant::now();
    }

    fn take_kernel_counters(&mut self, s: &XskStats) {
        self.counters.rx_dropped = s.rx_dropped;
        self.counters.rx_ring_full = s.rx_ring_full;
        self.counters.fill_ring_empty = s.rx_fill_ring_empty;
        self.counters.invalid_descs = s.rx_invalid_descs + s.tx_invalid_descs;
    }
}
