//! A queue worker: owns one AF_XDP socket and its frames, and runs the receive loop.
//!
//! It waits in poll(2) while its RX ring is empty (so it never starves a NAPI thread on the same
//! core), or spins when asked. Counters are kept locally and published once per batch to
//! atomics that only this worker writes; the kernel's socket counters are read every 100 ms.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use std::{net::IpAddr, os::fd::AsFd as _};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;

use crate::{
    api::bridge::{Registry, TxRequest, WorkerLink},
    services::{Kind, ServiceTable, udp_echo},
    stack::neighbours::{Neighbours, Route},
    wire::{classify, udp},
    xsk::{Verdict, XskSocket, XskStats},
};

/// What a worker needs to serve the application API (`netdemux::Stack`).
pub struct ApiHooks {
    /// The bound sockets.
    pub registry: Arc<ArcSwap<Registry>>,
    /// Datagrams the application sends through this worker.
    pub link: Arc<WorkerLink>,
    /// The interface's MAC address (source of what we send).
    pub mac: [u8; 6],
    /// This worker's index, for the resolver's answers.
    pub index: usize,
    /// Asks the resolver thread for the MAC of an address (the kernel's neighbour table).
    pub resolve: std::sync::mpsc::SyncSender<(IpAddr, usize)>,
    /// The resolver's answers for this worker.
    pub resolved: Arc<ArrayQueue<(IpAddr, Option<[u8; 6]>)>>,
}

/// Counters of one service on one queue.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Datagrams.
    pub packets: AtomicU64,
    /// UDP payload bytes.
    pub bytes: AtomicU64,
    /// Datagrams an echo service did not answer (IP options or extension headers).
    pub unanswered: AtomicU64,
}

/// The published counters of one queue worker (written by that worker only).
#[derive(Debug)]
pub struct WorkerStats {
    /// The RX queue.
    pub queue: u32,
    /// True when the socket runs in zero-copy mode.
    pub zero_copy: bool,
    /// Frames received from the RX ring.
    pub rx: AtomicU64,
    /// Frames posted for transmission.
    pub tx: AtomicU64,
    /// Frames that found the TX ring full and were dropped.
    pub tx_dropped: AtomicU64,
    /// Frames that no service claimed (e.g. unbound between the program's lookup and ours).
    pub unclaimed: AtomicU64,
    /// The kernel's socket counters, as last read.
    pub rx_dropped: AtomicU64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: AtomicU64,
    /// Times the fill ring was empty.
    pub fill_ring_empty: AtomicU64,
    /// Invalid descriptors (fill and TX).
    pub invalid_descs: AtomicU64,
    /// Per-service counters, indexed like the [`ServiceTable`].
    pub services: Box<[ServiceCounters]>,
}

impl WorkerStats {
    /// Zeroed counters for queue `queue` with `services` services.
    pub fn new(queue: u32, zero_copy: bool, services: usize) -> Self {
        WorkerStats {
            queue,
            zero_copy,
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            unclaimed: AtomicU64::new(0),
            rx_dropped: AtomicU64::new(0),
            rx_ring_full: AtomicU64::new(0),
            fill_ring_empty: AtomicU64::new(0),
            invalid_descs: AtomicU64::new(0),
            services: (0..services).map(|_| ServiceCounters::default()).collect(),
        }
    }

    fn publish_kernel(&self, s: &XskStats) {
        self.rx_dropped.store(s.rx_dropped, Ordering::Relaxed);
        self.rx_ring_full.store(s.rx_ring_full, Ordering::Relaxed);
        self.fill_ring_empty
            .store(s.rx_fill_ring_empty, Ordering::Relaxed);
        self.invalid_descs
            .store(s.rx_invalid_descs + s.tx_invalid_descs, Ordering::Relaxed);
    }
}

/// How a worker runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerConfig {
    /// Spin on the RX ring instead of waiting in poll(2).
    pub spin: bool,
    /// Pin the worker thread to this CPU.
    pub cpu: Option<usize>,
}

/// Starts the worker of `sock` on its own thread. It runs until `stop` is set.
pub fn spawn(
    mut sock: XskSocket,
    services: Arc<ServiceTable>,
    stats: Arc<WorkerStats>,
    stop: Arc<AtomicBool>,
    cfg: WorkerConfig,
    api: Option<ApiHooks>,
) -> Result<thread::JoinHandle<Result<()>>> {
    let name = format!("netdemux-q{}", sock.queue());
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(cpu) = cfg.cpu {
                let mut set = nix::sched::CpuSet::new();
                set.set(cpu).context("CPU number out of range")?;
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                    .with_context(|| format!("cannot pin queue {} to CPU {cpu}", sock.queue()))?;
            }
            tracing::debug!(
                queue = sock.queue(),
                zero_copy = sock.zero_copy(),
                ?cfg,
                "queue worker starting"
            );
            let r = run(&mut sock, &services, &stats, &stop, cfg, api.as_ref());
            match &r {
                Ok(()) => tracing::debug!(queue = sock.queue(), "queue worker stopped"),
                Err(e) => tracing::error!(queue = sock.queue(), "queue worker failed: {e:#}"),
            }
            r
        })
        .context("cannot start a queue worker thread")
}

/// Transmits an application datagram to `mac`, then gives its buffer back to its socket.
fn send_now(sock: &mut XskSocket, api: &ApiHooks, mac: [u8; 6], req: TxRequest) {
    let payload = &req.buf[..req.len];
    let ok = sock.transmit(|frame| udp::emit(frame, api.mac, mac, req.src, req.dst, payload));
    if ok {
        api.link.sent.fetch_add(1, Ordering::Relaxed);
    } else {
        api.link.dropped.fetch_add(1, Ordering::Relaxed);
        req.owner.tx_dropped.fetch_add(1, Ordering::Relaxed);
    }
    let _ = req.owner.tx_free.push(req.buf);
}

/// Drops an application datagram that could not be sent (counted), returning its buffer.
fn drop_request(api: &ApiHooks, req: TxRequest) {
    api.link.dropped.fetch_add(1, Ordering::Relaxed);
    req.owner.tx_dropped.fetch_add(1, Ordering::Relaxed);
    let _ = req.owner.tx_free.push(req.buf);
}

/// Moves the application's datagrams to the wire: resolver answers first, then expired waits,
/// then new requests (at most a batch of them per call).
fn serve_api(sock: &mut XskSocket, api: &ApiHooks, neigh: &mut Neighbours<TxRequest>) {
    let now = Instant::now();
    while let Some((ip, mac)) = api.resolved.pop() {
        for (mac, req) in neigh.resolved(ip, mac, now) {
            send_now(sock, api, mac, req);
        }
    }
    for req in neigh.expire(now) {
        drop_request(api, req);
    }
    for _ in 0..crate::xsk::socket::BATCH {
        let Some(req) = api.link.tx.pop() else { break };
        match neigh.send(req.dst.ip(), req, now) {
            Route::Now(mac, req) => send_now(sock, api, mac, req),
            Route::Resolve(ip) => {
                let _ = api.resolve.try_send((ip, api.index));
            }
            Route::Queued => {}
            Route::Dropped(req) => drop_request(api, req),
        }
    }
}

fn run(
    sock: &mut XskSocket,
    services: &ServiceTable,
    stats: &WorkerStats,
    stop: &AtomicBool,
    cfg: WorkerConfig,
    api: Option<&ApiHooks>,
) -> Result<()> {
    let n_services = services.services().len();
    let (mut packets, mut bytes, mut unanswered) = (
        vec![0u64; n_services],
        vec![0u64; n_services],
        vec![0u64; n_services],
    );
    let mut neigh: Neighbours<TxRequest> = Neighbours::new(4096, 256);
    let mut last_kernel_read = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        sock.complete();
        if let Some(api) = api {
            serve_api(sock, api, &mut neigh);
        }
        let registry = api.map(|a| a.registry.load());
        let mut unclaimed = 0u64;
        let now = Instant::now();
        let batch = sock.receive(|frame| {
            let Some(c) = classify(frame) else {
                unclaimed += 1;
                return Verdict::Recycle;
            };
            let Some((i, kind)) = services.find(&c.key) else {
                // An application socket?
                let socket = registry
                    .as_ref()
                    .and_then(|r| r.get(&c.key).or_else(|| r.get(&c.key.wildcard())));
                let Some(socket) = socket else {
                    unclaimed += 1;
                    return Verdict::Recycle;
                };
                match udp::UdpRepr::from_classified(frame, &c) {
                    Ok(r) => {
                        let payload = &frame[r.payload_offset..r.payload_offset + r.payload_len];
                        socket.deliver(payload, r.src, r.dst);
                        // Answers go back to the MAC the datagram came from.
                        let mut mac = [0u8; 6];
                        mac.copy_from_slice(&frame[6..12]);
                        neigh.learn(r.src.ip(), mac, now);
                    }
                    Err(crate::wire::Error::Checksum) => {
                        socket.checksum_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => unclaimed += 1,
                }
                return Verdict::Recycle;
            };
            packets[i] += 1;
            bytes[i] += c.payload_len as u64;
            match kind {
                Kind::UdpSink => Verdict::Recycle,
                Kind::UdpEcho => match udp_echo::reply_in_place(frame, &c) {
                    Some(len) => Verdict::Transmit(len),
                    None => {
                        unanswered[i] += 1;
                        Verdict::Recycle
                    }
                },
            }
        });
        drop(registry);
        if batch.rx > 0 {
            stats.rx.fetch_add(batch.rx as u64, Ordering::Relaxed);
            if batch.tx > 0 {
                stats.tx.fetch_add(batch.tx as u64, Ordering::Relaxed);
            }
            if batch.tx_dropped > 0 {
                stats
                    .tx_dropped
                    .fetch_add(batch.tx_dropped as u64, Ordering::Relaxed);
            }
            if unclaimed > 0 {
                stats.unclaimed.fetch_add(unclaimed, Ordering::Relaxed);
            }
            for (i, c) in stats.services.iter().enumerate() {
                if packets[i] > 0 {
                    c.packets.fetch_add(packets[i], Ordering::Relaxed);
                    c.bytes.fetch_add(bytes[i], Ordering::Relaxed);
                    c.unanswered.fetch_add(unanswered[i], Ordering::Relaxed);
                    (packets[i], bytes[i], unanswered[i]) = (0, 0, 0);
                }
            }
        } else if cfg.spin {
            sock.kick();
        } else if let Some(api) = api {
            // Sleep until a frame arrives or the application has something to send.
            api.link.sleeping.store(true, Ordering::SeqCst);
            if api.link.tx.is_empty() && api.resolved.is_empty() {
                let timeout = if neigh.pending() > 0 {
                    Duration::from_millis(10)
                } else {
                    Duration::from_millis(100)
                };
                sock.wait_with(api.link.wake.as_fd(), timeout)
                    .with_context(|| format!("poll on queue {} failed", sock.queue()))?;
            }
            api.link.sleeping.store(false, Ordering::SeqCst);
            api.link.clear_wake();
        } else {
            sock.wait(Duration::from_millis(100))
                .with_context(|| format!("poll on queue {} failed", sock.queue()))?;
        }
        if last_kernel_read.elapsed() >= Duration::from_millis(100) {
            if let Ok(s) = sock.stats() {
                stats.publish_kernel(&s);
            }
            last_kernel_read = Instant::now();
        }
    }
    if let Ok(s) = sock.stats() {
        stats.publish_kernel(&s);
    }
    Ok(())
}
