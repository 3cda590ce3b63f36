//! The TCP side of one queue worker: **one** endpoint (flow table, listeners, timers) whose
//! connections each belong to a built-in service's [`App`] or to an application's stream
//! (bridged to a `TcpStream` through queues of pooled chunks). Segments of an outbound
//! connection that arrive on another queue than its owner's are handed to the owner. Sans-IO
//! like the endpoint: segments in, segments out through a callback.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use crate::{
    bridge::{
        Bridge,
        tcp::{COMMANDS, Chunk, Command, ListenerShared, StreamShared, StreamState},
    },
    services::{Kind, ServiceTable, tcp::App},
    stack::hash::ConnIdMap,
    stack::tcp::{
        Config, ConnId, Counters, Endpoint, Events, IsnSource, Limits, MemoryBudget,
        endpoint::Disposition,
    },
    wire::{
        icmp::IcmpError,
        tcp::{Flags, TcpHeader},
    },
};

/// Who accepts the connections of a listening address.
enum Listener {
    /// A built-in service.
    Service(Kind),
    /// An application's `TcpListener`.
    Application(Arc<ListenerShared>),
}

/// An application's stream, as its worker holds it.
struct Stream {
    shared: Arc<StreamShared>,
    /// A chunk from the application partly written into the connection.
    pending: Option<(Chunk, usize)>,
}

/// Who a connection belongs to.
enum Owner {
    /// A built-in service's application, and when it last had news.
    Service(App, Instant),
    Stream(Stream),
}

/// How often idle service connections are looked for.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

/// The application's side, when this worker serves one (`netdemux::Stack`).
struct Application {
    /// This worker's index among the bridge's links.
    index: usize,
    bridge: Arc<Bridge>,
}

/// The TCP connections and listeners of one worker.
pub struct TcpSockets {
    endpoint: Endpoint,
    listeners: HashMap<SocketAddr, Listener>,
    owners: ConnIdMap<ConnId, Owner>,
    application: Option<Application>,
    /// The services' scratch space (empty without TCP services).
    scratch: Vec<u8>,
    /// Connections accepted in this round (kept to reuse its allocation).
    accepted: Vec<ConnId>,
    /// Service connections idle this long are closed.
    idle_timeout: Duration,
    /// When idle service connections were last looked for.
    last_sweep: Instant,
    /// Service connections closed for idleness.
    idle_closed: u64,
}

/// How a worker's TCP sockets are set up.
#[derive(Clone, Debug)]
pub struct TcpSetup {
    /// Every connection's settings.
    pub config: Config,
    /// The flow table's limits.
    pub limits: Limits,
    /// The memory the buffers charge (shared by every worker of a data plane).
    pub budget: Arc<MemoryBudget>,
    /// Service connections with no news for this long are closed.
    pub idle_timeout: Duration,
    /// ISNs and timestamps (shared by every worker of a data plane, so an outbound connection
    /// picks the same numbers for a 4-tuple whichever worker opens it).
    pub isn: IsnSource,
}

impl TcpSetup {
    /// Linux-like defaults, no memory limit: for tests and tools.
    pub fn unlimited() -> TcpSetup {
        TcpSetup {
            config: Config::default(),
            limits: Limits::default(),
            budget: Arc::new(MemoryBudget::unlimited()),
            idle_timeout: Duration::from_secs(60),
            isn: IsnSource::new(Instant::now()),
        }
    }
}

impl TcpSockets {
    /// The TCP side of a worker serving the TCP services of `services` and, with
    /// `application` = (index, bridge), the application's streams; `None` when there is
    /// neither.
    pub fn new(
        services: &ServiceTable,
        setup: TcpSetup,
        application: Option<(usize, Arc<Bridge>)>,
        now: Instant,
    ) -> Option<TcpSockets> {
        let mut endpoint = Endpoint::with_isn(setup.config, setup.limits, setup.isn);
        endpoint.set_memory_budget(setup.budget);
        let mut listeners = HashMap::new();
        for &(kind, addr) in services.services() {
            // The service table holds each address once.
            if kind.is_tcp() && endpoint.listen(addr, None).is_ok() {
                listeners.insert(addr, Listener::Service(kind));
            }
        }
        if listeners.is_empty() && application.is_none() {
            return None;
        }
        let scratch = if listeners.is_empty() {
            Vec::new()
        } else {
            vec![0; crate::services::tcp::SCRATCH]
        };
        Some(TcpSockets {
            endpoint,
            listeners,
            owners: ConnIdMap::default(),
            application: application.map(|(index, bridge)| Application { index, bridge }),
            scratch,
            accepted: Vec::new(),
            idle_timeout: setup.idle_timeout,
            last_sweep: now,
            idle_closed: 0,
        })
    }

    /// Service connections closed for idleness.
    pub fn idle_closed(&self) -> u64 {
        self.idle_closed
    }

    /// Closes the service connections that had no news for the idle timeout: reset if they
    /// hold unread data, else closed as an orphan (probing a shut window gives up soon).
    fn close_idle(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < IDLE_SWEEP {
            return;
        }
        self.last_sweep = now;
        let idle: Vec<ConnId> = self
            .owners
            .iter()
            .filter_map(|(&id, owner)| match owner {
                Owner::Service(_, last)
                    if now.saturating_duration_since(*last) >= self.idle_timeout =>
                {
                    Some(id)
                }
                _ => None,
            })
            .collect();
        for id in idle {
            self.endpoint.with(id, now, |c, _| {
                if c.readable() > 0 {
                    // Closing with data unread resets the connection (RFC 2525 §2.17, as
                    // Linux's tcp_close does): its buffers go at once.
                    c.abort();
                } else {
                    c.close();
                    c.set_orphaned();
                }
            });
            // The service is done with it; the stack finishes the close on its own.
            self.owners.remove(&id);
            self.idle_closed += 1;
        }
    }

    /// What the endpoint counted.
    pub fn counters(&self) -> &Counters {
        &self.endpoint.counters
    }

    /// Connections in the flow table.
    pub fn connections(&self) -> usize {
        self.endpoint.connections()
    }

    /// 4-tuples in TIME_WAIT.
    pub fn time_waits(&self) -> usize {
        self.endpoint.time_waits()
    }

    /// A checked segment `remote` -> `local`; `segment` is its TCP header and payload. Says
    /// whether the stack took it as a connection's own.
    pub fn input(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        h: &TcpHeader,
        payload: &[u8],
        segment: &[u8],
        now: Instant,
    ) -> Disposition {
        let syn_only = h.flags.contains(Flags::SYN) && !h.flags.contains(Flags::ACK);
        if !syn_only
            && self.forward(local, remote, || {
                Command::Segment(remote, local, segment.to_vec())
            })
        {
            return Disposition::Other;
        }
        self.endpoint.input(remote, local, h, payload, now)
    }

    /// An ICMP error about a segment one of these connections sent.
    pub fn icmp(&mut self, e: &IcmpError, now: Instant) {
        let Some(seq) = e.seq else {
            return;
        };
        if self.forward(e.local, e.remote, || Command::Icmp(*e)) {
            return;
        }
        self.endpoint
            .icmp_error(e.local, e.remote, e.problem, seq, now);
    }

    /// Hands what `command` makes to the worker that owns `local` <-> `remote` when that is an
    /// outbound connection of another worker (its peer's flow hashed to this queue). True when
    /// it did.
    fn forward(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        command: impl FnOnce() -> Command,
    ) -> bool {
        let Some(app) = &self.application else {
            return false;
        };
        if self.endpoint.has_flow(local, remote) {
            return false;
        }
        let owner = app.bridge.outbound.load().get(&local).copied();
        let Some(owner) = owner.filter(|&o| o != app.index) else {
            return false;
        };
        if let Some(link) = app.bridge.links.get(owner) {
            let _ = link.command(command());
        }
        true
    }

    /// Carries out what the application asked for (at most a queue's worth per call).
    pub fn commands(&mut self, now: Instant) {
        let Some(app) = &self.application else {
            return;
        };
        let bridge = app.bridge.clone();
        let link = &bridge.links[app.index];
        for _ in 0..COMMANDS {
            let Some(cmd) = link.commands.pop() else {
                break;
            };
            self.command(cmd, now);
        }
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Connect(shared) => self.connect(shared, now),
            Command::Listen(l) => {
                if self.endpoint.listen(l.local, None).is_ok() {
                    self.listeners.insert(l.local, Listener::Application(l));
                }
            }
            Command::Unlisten(addr) => {
                self.endpoint.unlisten(addr, now);
                self.listeners.remove(&addr);
            }
            Command::Kick(shared) => {
                let id = shared.conn.load(Ordering::Acquire);
                if id != u64::MAX {
                    self.pump(ConnId::from_u64(id), now);
                }
            }
            Command::Segment(remote, local, seg) => {
                if let Ok((h, len)) = TcpHeader::parse_unchecked(&seg) {
                    self.endpoint.input(remote, local, &h, &seg[len..], now);
                }
            }
            Command::Icmp(e) => {
                if let Some(seq) = e.seq {
                    self.endpoint
                        .icmp_error(e.local, e.remote, e.problem, seq, now);
                }
            }
        }
    }

    fn connect(&mut self, shared: Arc<StreamShared>, now: Instant) {
        match self.endpoint.connect(shared.local, shared.peer, now) {
            Ok(id) => {
                shared.conn.store(id.to_u64(), Ordering::Release);
                let stream = Stream {
                    shared,
                    pending: None,
                };
                self.owners.insert(id, Owner::Stream(stream));
            }
            Err(_) => shared.set_state(StreamState::Reset),
        }
    }

    /// Runs due timers, hands new connections to their owners and lets the owners act on
    /// what changed.
    pub fn poll(&mut self, now: Instant) {
        self.endpoint.handle_timeouts(now);
        self.close_idle(now);
        let mut accepted = std::mem::take(&mut self.accepted);
        for (&addr, listener) in &self.listeners {
            while let Some(id) = self.endpoint.accept(addr) {
                match listener {
                    Listener::Service(kind) => {
                        if let Some(app) = App::for_kind(*kind) {
                            self.owners.insert(id, Owner::Service(app, now));
                        }
                    }
                    Listener::Application(l) => {
                        let Some(conn) = self.endpoint.get(id) else {
                            continue;
                        };
                        let index = self.application.as_ref().map_or(0, |a| a.index);
                        let shared = StreamShared::new(conn.local(), conn.remote(), index);
                        shared.conn.store(id.to_u64(), Ordering::Release);
                        shared.set_state(StreamState::Open);
                        if l.accepted.push(shared.clone()).is_err() {
                            // The application does not accept fast enough.
                            self.endpoint.with(id, now, |c, _| c.abort());
                            continue;
                        }
                        l.waker.wake();
                        let stream = Stream {
                            shared,
                            pending: None,
                        };
                        self.owners.insert(id, Owner::Stream(stream));
                        accepted.push(id);
                    }
                }
            }
        }
        // Bytes may have come with the handshake.
        for &id in &accepted {
            self.pump(id, now);
        }
        accepted.clear();
        self.accepted = accepted;
        while let Some((id, events)) = self.endpoint.poll_event() {
            let ended = [
                (Events::RESET, StreamState::Reset),
                (Events::TIMED_OUT, StreamState::TimedOut),
                (Events::UNREACHABLE, StreamState::Unreachable),
                (Events::CLOSED, StreamState::Closed),
            ]
            .into_iter()
            .find(|(e, _)| events.contains(*e));
            match self.owners.get_mut(&id) {
                None => {}
                Some(Owner::Service(app, last)) => {
                    if ended.is_some() {
                        self.owners.remove(&id);
                        continue;
                    }
                    *last = now;
                    let scratch = &mut self.scratch;
                    self.endpoint
                        .with(id, now, |conn, _| app.on_ready(conn, scratch));
                }
                Some(Owner::Stream(s)) => {
                    if events.contains(Events::CONNECTED) {
                        s.shared.set_state(StreamState::Open);
                    }
                    if ended.is_some()
                        && let Some(data) = self.endpoint.take_leftover(id)
                    {
                        s.shared.push_late(&data);
                    }
                    if let Some((_, state)) = ended {
                        if state == StreamState::Closed {
                            s.shared.read_eof.store(true, Ordering::Release);
                        }
                        s.shared.set_state(state);
                        self.owners.remove(&id);
                        continue;
                    }
                    self.pump(id, now);
                }
            }
        }
        // What ended connections left and no stream took (a service's, an orphan's) goes.
        self.endpoint.clear_leftovers();
    }

    /// Moves bytes between connection `id` and its stream's queues.
    fn pump(&mut self, id: ConnId, now: Instant) {
        let Some(Owner::Stream(stream)) = self.owners.get_mut(&id) else {
            return;
        };
        let shared = stream.shared.clone();
        let pending = &mut stream.pending;
        self.endpoint.with(id, now, |conn, _| {
            conn.set_nodelay(shared.nodelay.load(Ordering::Relaxed));
            // Application -> connection.
            let mut freed = false;
            loop {
                if pending.is_none() {
                    *pending = shared.tx.pop().map(|c| (c, 0));
                }
                let Some((chunk, offset)) = pending.as_mut() else {
                    break;
                };
                *offset += conn.send(&chunk.buf[*offset..chunk.len]);
                if *offset < chunk.len {
                    break;
                }
                if let Some((chunk, _)) = pending.take() {
                    let _ = shared.tx_free.push(chunk.buf);
                    freed = true;
                }
            }
            if freed {
                shared.write_waker.wake();
            }
            // Connection -> application.
            let mut delivered = false;
            while conn.readable() > 0 {
                let Some(mut buf) = shared.rx_free.pop() else {
                    break;
                };
                let len = conn.recv(&mut buf);
                let _ = shared.rx.push(Chunk { buf, len });
                delivered = true;
            }
            if conn.read_closed() && !shared.read_eof.load(Ordering::Acquire) {
                shared.read_eof.store(true, Ordering::Release);
                delivered = true;
            }
            if delivered {
                shared.read_waker.wake();
            }
            if shared.abort.load(Ordering::Acquire) {
                conn.abort();
                return;
            }
            let dropped = shared.dropped.load(Ordering::Acquire);
            let closing = shared.write_shutdown.load(Ordering::Acquire) || dropped;
            if closing && pending.is_none() && shared.tx.is_empty() {
                conn.close();
                if dropped {
                    conn.set_orphaned();
                }
            }
        });
    }

    /// Hands the segments due to `emit(local, remote, header, payload)`; see
    /// [`Endpoint::poll_transmit`].
    pub fn transmit(
        &mut self,
        now: Instant,
        emit: impl FnMut(SocketAddr, SocketAddr, &TcpHeader, [&[u8]; 2]) -> bool,
    ) {
        self.endpoint.poll_transmit(now, emit);
    }

    /// When [`TcpSockets::poll`] must run next for a timer (or the idle sweep).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let sweep = (!self.owners.is_empty()).then(|| self.last_sweep + IDLE_SWEEP);
        [self.endpoint.poll_timeout(), sweep]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A client endpoint talking to a worker's TCP services through a lossless virtual link.
    struct Pair {
        now: Instant,
        services: TcpSockets,
        client: Endpoint,
    }

    impl Pair {
        fn new(kind: Kind) -> Pair {
            let now = Instant::now();
            let table = ServiceTable::new(&[(kind, "198.18.0.2:80".parse().unwrap())]).unwrap();
            Pair {
                now,
                services: TcpSockets::new(&table, TcpSetup::unlimited(), None, now).unwrap(),
                client: Endpoint::new(Config::default(), Limits::default(), now),
            }
        }

        fn step(&mut self) {
            self.now += Duration::from_millis(1);
            let now = self.now;
            let mut to_server = Vec::new();
            self.client.poll_transmit(now, |l, r, h, p| {
                to_server.push((l, r, *h, [p[0], p[1]].concat()));
                true
            });
            for (l, r, h, p) in to_server {
                self.services.input(l, r, &h, &p, &[], now);
            }
            self.services.poll(now);
            let mut to_client = Vec::new();
            self.services.transmit(now, |l, r, h, p| {
                to_client.push((l, r, *h, [p[0], p[1]].concat()));
                true
            });
            for (l, r, h, p) in to_client {
                self.client.input(l, r, &h, &p, now);
            }
            self.client.handle_timeouts(now);
        }

        fn exchange(&mut self, request: &[u8], close: bool) -> Vec<u8> {
            let c = self
                .client
                .connect(
                    "198.18.0.1:40000".parse().unwrap(),
                    "198.18.0.2:80".parse().unwrap(),
                    self.now,
                )
                .unwrap();
            let mut sent = 0;
            let mut got = Vec::new();
            for _ in 0..2000 {
                self.step();
                let now = self.now;
                self.client.with(c, now, |conn, _| {
                    sent += conn.send(&request[sent..]);
                    if sent == request.len() && close {
                        conn.close();
                    }
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = conn.recv(&mut buf);
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                });
                if self.client.get(c).is_none_or(|c| c.read_closed()) {
                    break;
                }
            }
            got
        }
    }

    #[test]
    fn echo_returns_every_byte_and_closes_after_the_peer() {
        let mut p = Pair::new(Kind::TcpEcho);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let got = p.exchange(&data, true);
        assert!(got == data, "{} of {} bytes echoed", got.len(), data.len());
        for _ in 0..100 {
            p.step();
        }
        assert_eq!(
            p.services.connections(),
            0,
            "the service side is closed (LAST_ACK done)"
        );
        assert!(p.services.owners.is_empty());
    }

    #[test]
    fn http_answers_pipelined_requests_then_closes_on_request() {
        let mut p = Pair::new(Kind::Http);
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nConnection: close\r\n\r\n";
        let got = String::from_utf8(p.exchange(req, false)).unwrap();
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
        assert!(got.ends_with("hello from netdemux\n"));
    }

    /// A head longer than a segment arrives in pieces and is gathered before it is answered;
    /// the whole heads after it are answered where they lie.
    #[test]
    fn http_answers_a_head_that_arrives_in_pieces() {
        let mut p = Pair::new(Kind::Http);
        let mut req = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 4000));
        req.extend_from_slice(b"\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n");
        req.extend_from_slice(b"Connection: close\r\n\r\n");
        let got = String::from_utf8(p.exchange(&req, false)).unwrap();
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");
        assert_eq!(got.matches("Connection: close").count(), 1, "{got}");
    }

    #[test]
    fn an_oversized_head_is_refused() {
        let mut p = Pair::new(Kind::Http);
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        req.extend(std::iter::repeat_n(b'a', 10_000));
        let got = String::from_utf8(p.exchange(&req, false)).unwrap();
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    }

    #[test]
    fn a_segment_to_a_port_of_no_service_gets_rst() {
        let mut p = Pair::new(Kind::TcpEcho);
        let h = TcpHeader {
            src_port: 40000,
            dst_port: 81,
            flags: Flags::SYN,
            window: 1000,
            ..TcpHeader::default()
        };
        p.services.input(
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:81".parse().unwrap(),
            &h,
            b"",
            &[],
            p.now,
        );
        let mut out = Vec::new();
        p.services.transmit(p.now, |_, _, h, _| {
            out.push(h.flags);
            true
        });
        assert_eq!(out, vec![Flags::RST | Flags::ACK]);
    }
}
