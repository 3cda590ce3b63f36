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

use super::faults::{Fate, FaultConfig, Faults};
use crate::{
    api::bridge::{Registry, TxRequest, WorkerLink},
    services::{Kind, ServiceTable, tcp::TcpServices, udp_echo},
    stack::{
        neighbours::{Neighbours, Route},
        tcp,
    },
    wire::{
        classify,
        tcp::{TcpHeader, TcpPacket},
        udp,
    },
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
    /// Every worker's inbox (TCP segments are handed to the worker that owns their
    /// connection).
    pub links: Arc<[Arc<WorkerLink>]>,
    /// Which worker owns each outbound connection's local address.
    pub outbound: super::tcp_api::Outbound,
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
    /// The TCP endpoint's counters, in [`tcp::Counters::fields`] order.
    pub tcp: [AtomicU64; tcp::endpoint::COUNTERS],
    /// TCP connections in the flow table.
    pub tcp_open: AtomicU64,
    /// TCP segments dropped before the stack: bad checksum or header.
    pub tcp_bad_segments: AtomicU64,
    /// TCP segments not sent because the peer's MAC address was unknown.
    pub tcp_no_neighbour: AtomicU64,
    /// TCP segments the fault injection dropped / reordered.
    pub faults_dropped: AtomicU64,
    /// See `faults_dropped`.
    pub faults_reordered: AtomicU64,
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
            tcp: std::array::from_fn(|_| AtomicU64::new(0)),
            tcp_open: AtomicU64::new(0),
            tcp_bad_segments: AtomicU64::new(0),
            tcp_no_neighbour: AtomicU64::new(0),
            faults_dropped: AtomicU64::new(0),
            faults_reordered: AtomicU64::new(0),
        }
    }

    /// The TCP counters by name (empty when the worker has no TCP service).
    pub fn tcp_report(&self) -> std::collections::BTreeMap<String, u64> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = std::collections::BTreeMap::new();
        let names = tcp::Counters::default().fields().map(|(name, _)| name);
        for (name, value) in names.iter().zip(&self.tcp) {
            out.insert(name.to_string(), load(value));
        }
        out.insert("open".into(), load(&self.tcp_open));
        out.insert("bad_segments".into(), load(&self.tcp_bad_segments));
        out.insert("no_neighbour".into(), load(&self.tcp_no_neighbour));
        out.insert("faults_dropped".into(), load(&self.faults_dropped));
        out.insert("faults_reordered".into(), load(&self.faults_reordered));
        out
    }

    fn publish_tcp(&self, tcp: &TcpServices, faults: Option<&Faults>) {
        for ((_, value), slot) in tcp.counters().fields().iter().zip(&self.tcp) {
            slot.store(*value, Ordering::Relaxed);
        }
        self.tcp_open
            .store(tcp.connections() as u64, Ordering::Relaxed);
        if let Some(f) = faults {
            self.faults_dropped.store(f.dropped, Ordering::Relaxed);
            self.faults_reordered.store(f.reordered, Ordering::Relaxed);
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
    /// The interface's MAC address (source of the TCP services' segments).
    pub mac: [u8; 6],
    /// Settings of the TCP services' connections.
    pub tcp: tcp::Config,
    /// Limits of the TCP services' flow table.
    pub tcp_limits: tcp::Limits,
    /// Fault injection on the TCP services' segments (tests only).
    pub faults: FaultConfig,
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

/// TCP segments the fault injection holds back, one per direction.
#[derive(Default)]
struct Held {
    /// A received segment: (remote, local, TCP header and payload).
    rx: Option<(std::net::SocketAddr, std::net::SocketAddr, Vec<u8>)>,
    /// A frame to send.
    tx: Option<Vec<u8>>,
}

/// The TCP side of a worker: the services, the fault injection and what it holds.
struct TcpSide {
    services: TcpServices,
    faults: Option<Faults>,
    held: Held,
    bad_segments: u64,
    no_neighbour: u64,
}

impl TcpSide {
    /// A checked segment for the services, through the fault injection.
    fn receive(&mut self, p: &TcpPacket, segment: &[u8], now: Instant) {
        let fate = self.faults.as_mut().map_or(Fate::Pass, Faults::fate);
        match fate {
            Fate::Drop => return,
            Fate::Hold if self.held.rx.is_none() => {
                self.held.rx = Some((p.src, p.dst, segment.to_vec()));
                return;
            }
            _ => {}
        }
        let payload = &segment[segment.len() - p.payload_len..];
        self.services.input(p.src, p.dst, &p.header, payload, now);
        self.release_rx(now);
    }

    /// Delivers the held received segment, if any.
    fn release_rx(&mut self, now: Instant) {
        if let Some((remote, local, seg)) = self.held.rx.take()
            && let Ok((h, len)) = TcpHeader::parse_unchecked(&seg)
        {
            self.services.input(remote, local, &h, &seg[len..], now);
        }
    }

    /// Lets the services act, then sends what they have; true when frames still wait in the
    /// TX ring (the kernel pushed back).
    fn serve(
        &mut self,
        sock: &mut XskSocket,
        neigh: &Neighbours<TxRequest>,
        mac: [u8; 6],
        now: Instant,
    ) -> bool {
        self.services.poll(now);
        let TcpSide {
            services,
            faults,
            held,
            no_neighbour,
            ..
        } = self;
        let mut out = SegmentOut {
            sock,
            neigh,
            mac,
            faults: faults.as_mut(),
            held,
            no_neighbour,
            now,
        };
        services.transmit(now, |local, remote, h, payload| {
            out.emit(local, remote, h, payload)
        });
        out.finish()
    }
}

/// Where a worker's TCP segments go: the TX ring, through the fault injection.
struct SegmentOut<'a> {
    sock: &'a mut XskSocket,
    neigh: &'a Neighbours<TxRequest>,
    mac: [u8; 6],
    faults: Option<&'a mut Faults>,
    held: &'a mut Held,
    no_neighbour: &'a mut u64,
    now: Instant,
}

impl SegmentOut<'_> {
    /// Posts one segment; false when the ring is full (the segment waits).
    fn emit(
        &mut self,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        h: &TcpHeader,
        payload: [&[u8]; 2],
    ) -> bool {
        let Some(peer) = self.neigh.lookup(remote.ip(), self.now) else {
            // Counted; the connection's timers send it again.
            *self.no_neighbour += 1;
            return true;
        };
        let mac = self.mac;
        let write =
            |frame: &mut [u8]| crate::wire::tcp::emit(frame, mac, peer, local, remote, h, payload);
        match self.faults.as_mut().map_or(Fate::Pass, |f| f.fate()) {
            Fate::Drop => return true,
            Fate::Hold if self.held.tx.is_none() => {
                let mut frame = vec![0u8; 2048];
                if let Some(len) = write(&mut frame) {
                    frame.truncate(len);
                    self.held.tx = Some(frame);
                }
                return true;
            }
            _ => {}
        }
        if !self.sock.post(write) {
            return false;
        }
        release_tx(self.sock, self.held);
        true
    }

    /// Sends what was posted (a segment held back goes after the others of this burst, not
    /// later); true when frames still wait in the TX ring.
    fn finish(self) -> bool {
        release_tx(self.sock, self.held);
        self.sock.flush_tx()
    }
}

/// Sends the frame the fault injection held back, if any.
fn release_tx(sock: &mut XskSocket, held: &mut Held) {
    if let Some(frame) = held.tx.take() {
        let copy = |out: &mut [u8]| {
            out.get_mut(..frame.len())?.copy_from_slice(&frame);
            Some(frame.len())
        };
        let _ = sock.post(copy);
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
    let mut tcp =
        TcpServices::new(services, cfg.tcp, cfg.tcp_limits, Instant::now()).map(|s| TcpSide {
            services: s,
            faults: Faults::new(cfg.faults),
            held: Held::default(),
            bad_segments: 0,
            no_neighbour: 0,
        });
    let mut api_tcp = api.map(|a| {
        super::tcp_api::ApiTcp::new(
            a.index,
            a.links.clone(),
            a.outbound.clone(),
            cfg.tcp,
            Instant::now(),
        )
    });
    let (mut api_held, mut api_no_neighbour) = (Held::default(), 0u64);
    let mut last_kernel_read = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        sock.complete();
        if let Some(api) = api {
            serve_api(sock, api, &mut neigh);
        }
        if let (Some(api), Some(at)) = (api, api_tcp.as_mut()) {
            at.commands(&api.link, Instant::now());
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
                if c.key.proto == netdemux_common::PROTO_TCP {
                    // The application's TCP: its listeners, streams, and RSTs for the rest.
                    let Some(at) = api_tcp.as_mut() else {
                        unclaimed += 1;
                        return Verdict::Recycle;
                    };
                    if let Ok(p) = TcpPacket::from_classified(frame, &c) {
                        let mut mac = [0u8; 6];
                        mac.copy_from_slice(&frame[6..12]);
                        if neigh.lookup(p.src.ip(), now) != Some(mac) {
                            // A lookup per segment; an insert only when the peer is new (or
                            // moved, or its entry aged out).
                            neigh.learn(p.src.ip(), mac, now);
                        }
                        let segment = &frame[c.l4_offset..p.payload_offset + p.payload_len];
                        let payload = &segment[segment.len() - p.payload_len..];
                        at.input(p.src, p.dst, &p.header, payload, segment, now);
                    } else {
                        unclaimed += 1;
                    }
                    return Verdict::Recycle;
                }
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
                Kind::TcpEcho | Kind::Http => {
                    let Some(side) = tcp.as_mut() else {
                        return Verdict::Recycle;
                    };
                    match TcpPacket::from_classified(frame, &c) {
                        Ok(p) => {
                            // Answers go back to the MAC the segment came from.
                            let mut mac = [0u8; 6];
                            mac.copy_from_slice(&frame[6..12]);
                            if neigh.lookup(p.src.ip(), now) != Some(mac) {
                                // A lookup per segment; an insert only when the peer is new (or
                                // moved, or its entry aged out).
                                neigh.learn(p.src.ip(), mac, now);
                            }
                            let segment = &frame[c.l4_offset..p.payload_offset + p.payload_len];
                            side.receive(&p, segment, now);
                        }
                        Err(_) => side.bad_segments += 1,
                    }
                    Verdict::Recycle
                }
            }
        });
        drop(registry);
        let mut wait_for = Duration::from_millis(100);
        if let Some(side) = tcp.as_mut() {
            let now = Instant::now();
            if batch.rx == 0 {
                side.release_rx(now);
            }
            if side.serve(sock, &neigh, cfg.mac, now) {
                // The kernel pushed back: come back soon to kick the TX ring again.
                wait_for = Duration::from_millis(1);
            }
            if let Some(t) = side.services.poll_timeout() {
                wait_for = wait_for.min(t.saturating_duration_since(Instant::now()));
            }
            stats.publish_tcp(&side.services, side.faults.as_ref());
            stats
                .tcp_bad_segments
                .store(side.bad_segments, Ordering::Relaxed);
            stats
                .tcp_no_neighbour
                .store(side.no_neighbour, Ordering::Relaxed);
        }
        if let Some(at) = api_tcp.as_mut() {
            let now = Instant::now();
            at.serve(now);
            let mut out = SegmentOut {
                sock,
                neigh: &neigh,
                mac: cfg.mac,
                faults: None,
                held: &mut api_held,
                no_neighbour: &mut api_no_neighbour,
                now,
            };
            at.endpoint()
                .poll_transmit(now, |local, remote, h, payload| {
                    out.emit(local, remote, h, payload)
                });
            if out.finish() {
                wait_for = Duration::from_millis(1);
            }
            if let Some(t) = at.poll_timeout() {
                wait_for = wait_for.min(t.saturating_duration_since(Instant::now()));
            }
        }
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
            if api.link.tx.is_empty() && api.resolved.is_empty() && api.link.commands.is_empty() {
                if neigh.pending() > 0 {
                    wait_for = wait_for.min(Duration::from_millis(10));
                }
                sock.wait_with(api.link.wake.as_fd(), wait_for)
                    .with_context(|| format!("poll on queue {} failed", sock.queue()))?;
            }
            api.link.sleeping.store(false, Ordering::SeqCst);
            api.link.clear_wake();
        } else if !wait_for.is_zero() {
            sock.wait(wait_for)
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
