//! The worker's side of the application's TCP streams and listeners: a TCP endpoint per queue
//! worker whose connections are bridged to [`crate::api::TcpStream`]s through queues of pooled
//! chunks. Segments of an outbound connection that arrive on another queue than its owner's are
//! handed to the owner.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use arc_swap::ArcSwap;

use crate::{
    api::{
        bridge::WorkerLink,
        tcp_bridge::{Chunk, Command, ListenerShared, StreamShared, state},
    },
    stack::tcp::{ConnId, Endpoint, Events, Limits, connection::Config},
    wire::tcp::{Flags, TcpHeader},
};

/// Which worker owns the connection of each local address an outbound connection uses.
pub type Outbound = Arc<ArcSwap<HashMap<SocketAddr, usize>>>;

struct Stream {
    shared: Arc<StreamShared>,
    /// A chunk from the application partly written into the connection.
    pending: Option<(Chunk, usize)>,
}

/// The application's TCP on one worker.
pub struct ApiTcp {
    endpoint: Endpoint,
    streams: HashMap<ConnId, Stream>,
    listeners: HashMap<SocketAddr, Arc<ListenerShared>>,
    index: usize,
    outbound: Outbound,
    links: Arc<[Arc<WorkerLink>]>,
    /// Connections accepted in this round (kept to reuse its allocation).
    accepted: Vec<ConnId>,
}

impl ApiTcp {
    /// The TCP side of worker `index` of `links`.
    pub fn new(
        index: usize,
        links: Arc<[Arc<WorkerLink>]>,
        outbound: Outbound,
        config: Config,
        now: Instant,
    ) -> ApiTcp {
        ApiTcp {
            endpoint: Endpoint::new(config, Limits::default(), now),
            streams: HashMap::new(),
            listeners: HashMap::new(),
            index,
            outbound,
            links,
            accepted: Vec::new(),
        }
    }

    /// The endpoint (for counters and transmission).
    pub fn endpoint(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// A checked segment `remote` -> `local`; `segment` is its TCP header and payload.
    pub fn input(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        h: &TcpHeader,
        payload: &[u8],
        segment: &[u8],
        now: Instant,
    ) {
        let syn_only = h.flags.contains(Flags::SYN) && !h.flags.contains(Flags::ACK);
        if !syn_only && !self.endpoint.has_flow(local, remote) {
            let owner = self.outbound.load().get(&local).copied();
            if let Some(owner) = owner.filter(|&o| o != self.index) {
                let cmd = Command::Segment(remote, local, segment.to_vec());
                if let Some(link) = self.links.get(owner) {
                    let _ = link.command(cmd);
                }
                return;
            }
        }
        self.endpoint.input(remote, local, h, payload, now);
    }

    /// Carries out what the application asked for.
    pub fn commands(&mut self, link: &WorkerLink, now: Instant) {
        for _ in 0..crate::api::tcp_bridge::COMMANDS {
            let Some(cmd) = link.commands.pop() else {
                break;
            };
            match cmd {
                Command::Connect(shared) => self.connect(shared, now),
                Command::Listen(l) => {
                    if self.endpoint.listen(l.local, None).is_ok() {
                        self.listeners.insert(l.local, l);
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
            }
        }
    }

    fn connect(&mut self, shared: Arc<StreamShared>, now: Instant) {
        match self.endpoint.connect(shared.local, shared.peer, now) {
            Ok(id) => {
                shared.conn.store(id.to_u64(), Ordering::Release);
                self.streams.insert(
                    id,
                    Stream {
                        shared,
                        pending: None,
                    },
                );
            }
            Err(_) => shared.set_state(state::RESET),
        }
    }

    /// Runs timers, hands new connections to their listeners and moves bytes where events
    /// say they can go.
    pub fn serve(&mut self, now: Instant) {
        self.endpoint.handle_timeouts(now);
        let mut accepted = std::mem::take(&mut self.accepted);
        for l in self.listeners.values() {
            while let Some(id) = self.endpoint.accept(l.local) {
                let Some(conn) = self.endpoint.get(id) else {
                    continue;
                };
                let shared = StreamShared::new(conn.local(), conn.remote(), self.index);
                shared.conn.store(id.to_u64(), Ordering::Release);
                shared.state.store(state::OPEN, Ordering::Release);
                if l.accepted.push(shared.clone()).is_err() {
                    // The application does not accept fast enough.
                    self.endpoint.with(id, now, |c, _| c.abort());
                    continue;
                }
                l.waker.wake();
                self.streams.insert(
                    id,
                    Stream {
                        shared,
                        pending: None,
                    },
                );
                accepted.push(id);
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
                (Events::RESET, state::RESET),
                (Events::TIMED_OUT, state::TIMED_OUT),
                (Events::CLOSED, state::CLOSED),
            ]
            .into_iter()
            .find(|(e, _)| events.contains(*e));
            if events.contains(Events::CONNECTED)
                && let Some(s) = self.streams.get(&id)
            {
                s.shared.set_state(state::OPEN);
            }
            if let Some((_, st)) = ended {
                if let Some(s) = self.streams.remove(&id) {
                    if st == state::CLOSED {
                        s.shared.read_eof.store(true, Ordering::Release);
                    }
                    s.shared.set_state(st);
                }
                continue;
            }
            self.pump(id, now);
        }
    }

    /// Moves bytes between connection `id` and its stream's queues.
    fn pump(&mut self, id: ConnId, now: Instant) {
        let Some(stream) = self.streams.get_mut(&id) else {
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
            let closing = shared.write_shutdown.load(Ordering::Acquire)
                || shared.dropped.load(Ordering::Acquire);
            if closing && pending.is_none() && shared.tx.is_empty() {
                conn.close();
            }
        });
    }

    /// When [`ApiTcp::serve`] must run next for a timer.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }
}
