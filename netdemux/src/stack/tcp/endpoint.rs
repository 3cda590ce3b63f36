//! The TCP connections of one queue worker: a flow table keyed by the 4-tuple (one hash lookup
//! per segment), listeners with a bounded accept backlog and a bounded half-open queue, RSTs for
//! segments that belong to nothing, ISNs per RFC 6528, and one timer heap — sans-IO like the
//! connections it holds.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Seq,
    connection::{self, Config, Connection, Events, Start, State, Transmitted},
    counters::Counters,
    isn::IsnSource,
    memory::MemoryBudget,
    syn_cookie::{self, SynCookies},
    time_wait::{TimeWaits, Verdict},
};
use crate::stack::hash::{ConnIdMap, KeyedMap};
use crate::wire::{
    icmp::Problem,
    tcp::{Flags, TcpHeader, TcpOptions},
};

/// Limits of an endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections in the flow table (all states).
    pub max_connections: usize,
    /// Connections in SYN-RECEIVED per listener.
    pub max_half_open: usize,
    /// Established connections waiting for `accept`, per listener (unless given at `listen`).
    pub max_backlog: usize,
    /// RSTs and TIME_WAIT answers waiting to be sent.
    pub max_pending_resets: usize,
    /// TIME_WAIT records (Linux: tcp_max_tw_buckets); past it a connection skips TIME_WAIT.
    pub max_time_wait: usize,
    /// Answer SYNs with SYN cookies when a listener's half-open queue is full (Linux's
    /// tcp_syncookies=1); off, such SYNs are dropped.
    pub syn_cookies: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16384,
            max_half_open: 256,
            max_backlog: 1024,
            max_pending_resets: 256,
            max_time_wait: 16384,
            syn_cookies: true,
        }
    }
}

/// A connection's handle: stays valid until the connection is removed, never reused after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl std::hash::Hash for ConnId {
    /// One `u64`, what [`ConnIdHasher`](crate::stack::hash::ConnIdHasher) takes in one step.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.to_u64());
    }
}

impl ConnId {
    /// The handle as one number (for atomics shared with an application).
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The handle [`ConnId::to_u64`] made.
    pub fn from_u64(v: u64) -> ConnId {
        ConnId {
            index: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// What became of a segment [`Endpoint::input`] took: whether the address it came from may be
/// trusted for answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// A connection took it as one of its own (in the window, acknowledging what was sent), or
    /// it completed a handshake (a cookie ACK).
    Accepted,
    /// A listener answered it (a SYN): the peer is not proven yet.
    Syn,
    /// Refused, challenged, answered with a RST, or for nothing here.
    Other,
}

/// Why an endpoint refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Something already listens on this address.
    AddressInUse,
    /// The 4-tuple is taken.
    ConnectionExists,
    /// The flow table is full.
    TooManyConnections,
    /// The families of the two addresses differ.
    FamilyMismatch,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::AddressInUse => "address already in use",
            Error::ConnectionExists => "a connection with these addresses exists",
            Error::TooManyConnections => "the flow table is full",
            Error::FamilyMismatch => "the local and remote addresses are of different families",
        })
    }
}

impl std::error::Error for Error {}

#[derive(Debug)]
struct Listener {
    backlog: VecDeque<ConnId>,
    max_backlog: usize,
    half_open: usize,
    /// When this listener last answered with a SYN cookie: ACKs are checked for cookies only
    /// for a while after (Linux's tcp_synq_no_recent_overflow), so a listener that never
    /// needed cookies cannot be entered by a guessed one.
    cookie_sent_at: Option<Instant>,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    conn: Option<Box<Connection>>,
    /// The listener this connection came from, while it is half-open.
    half_open_of: Option<SocketAddr>,
    /// The deadline last pushed to the timer heap.
    scheduled: Option<Instant>,
    /// True while the connection is in the transmit queue.
    queued: bool,
}

type FlowKey = (SocketAddr, SocketAddr);

/// The memory a new connection needs the budget to still have: a few segments each way (or an
/// eighth of a budget smaller than eight times that).
const MEMORY_RESERVE: usize = 64 * 1024;

/// How long after its last cookie a listener accepts cookie ACKs (Linux's
/// TCP_SYNCOOKIE_VALID).
const COOKIES_VALID: Duration = Duration::from_secs(120);

/// SYN-ACK retransmissions a handshake gets while its listener's half-open queue is at least
/// half full (Linux's reqsk_timer_handler lowers its threshold down to 2).
const SYN_RETRIES_UNDER_PRESSURE: u32 = 2;

/// The TCP connections and listeners of one queue worker.
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    limits: Limits,
    slots: Vec<Slot>,
    free: Vec<u32>,
    flows: KeyedMap<FlowKey, ConnId>,
    listeners: KeyedMap<SocketAddr, Listener>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    transmit: VecDeque<ConnId>,
    events: VecDeque<(ConnId, Events)>,
    /// RSTs and TIME_WAIT's ACKs waiting to be sent.
    control: VecDeque<(SocketAddr, SocketAddr, TcpHeader)>,
    time_waits: TimeWaits,
    /// ISNs and timestamp offsets (shared with the other endpoints of a stack).
    isn: IsnSource,
    cookies: SynCookies,
    /// The memory the connections' buffers charge (shared with other endpoints of a daemon).
    budget: Arc<MemoryBudget>,
    /// Bytes received in order but not read when their connection ended (reset, or closed
    /// while the owner still reads): the owner takes them with
    /// [`Endpoint::take_leftover`] before they are dropped ([`Endpoint::clear_leftovers`]),
    /// as Linux's read returns queued data before a reset's error.
    leftovers: ConnIdMap<ConnId, Vec<u8>>,
    /// What happened so far.
    pub counters: Counters,
}

/// True for the address of one host (not multicast, broadcast or unspecified).
fn unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => netdemux_common::wire::ipv4_unicast(a.octets()),
        IpAddr::V6(a) => !a.is_multicast() && !a.is_unspecified(),
    }
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    let ip: IpAddr = if addr.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, addr.port())
}

impl Endpoint {
    /// An endpoint whose connections use `config`, within `limits`; `now` starts its clocks.
    pub fn new(config: Config, limits: Limits, now: Instant) -> Endpoint {
        Endpoint::with_isn(config, limits, IsnSource::new(now))
    }

    /// Like [`Endpoint::new`], with ISNs, timestamps and their clocks from `isn`: endpoints
    /// given clones of one source pick the same numbers for a 4-tuple.
    pub fn with_isn(config: Config, limits: Limits, isn: IsnSource) -> Endpoint {
        Endpoint {
            config,
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            flows: KeyedMap::default(),
            listeners: KeyedMap::default(),
            timers: BinaryHeap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            control: VecDeque::new(),
            time_waits: TimeWaits::default(),
            isn,
            cookies: SynCookies::default(),
            budget: Arc::new(MemoryBudget::unlimited()),
            leftovers: ConnIdMap::default(),
            counters: Counters::default(),
        }
    }

    /// Makes the connections created from now on charge `budget`.
    pub fn set_memory_budget(&mut self, budget: Arc<MemoryBudget>) {
        self.budget = budget;
    }

    /// What a new connection from `local` to `remote` starts with; `iss` overrides the ISN.
    fn start(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        iss: Option<Seq>,
        now: Instant,
    ) -> Start {
        let (isn, ts_offset) = self.isn(local, remote, now);
        Start {
            iss: iss.unwrap_or(isn),
            now,
            clock_base: self.isn.base(),
            ts_offset,
            budget: self.budget.clone(),
        }
    }

    /// The connection settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True when the flow table has the connection `local` <-> `remote`.
    pub fn has_flow(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.flows.contains_key(&(local, remote))
    }

    /// The state of `local` <-> `remote`: its connection's, TIME_WAIT for a TIME_WAIT record,
    /// `None` for neither.
    pub fn state_of(&self, local: SocketAddr, remote: SocketAddr) -> Option<State> {
        if self.time_waits.contains(local, remote) {
            return Some(State::TimeWait);
        }
        self.flow(local, remote)
            .and_then(|id| self.get(id))
            .map(|c| c.state())
    }

    /// TIME_WAIT records held.
    pub fn time_waits(&self) -> usize {
        self.time_waits.len()
    }

    /// The handle of the connection `local` <-> `remote`, if there is one.
    pub fn flow(&self, local: SocketAddr, remote: SocketAddr) -> Option<ConnId> {
        self.flows.get(&(local, remote)).copied()
    }

    /// Connections in the flow table.
    pub fn connections(&self) -> usize {
        self.flows.len()
    }

    /// Connections per state, for `stats`.
    pub fn states(&self) -> Vec<(State, usize)> {
        let mut counts: Vec<(State, usize)> = Vec::new();
        for conn in self.slots.iter().filter_map(|s| s.conn.as_ref()) {
            match counts.iter_mut().find(|(s, _)| *s == conn.state()) {
                Some((_, n)) => *n += 1,
                None => counts.push((conn.state(), 1)),
            }
        }
        counts
    }

    /// Accepts connections to `addr` (an unspecified IP listens on every address of its
    /// family), queueing at most `backlog` established ones for [`Endpoint::accept`].
    pub fn listen(&mut self, addr: SocketAddr, backlog: Option<usize>) -> Result<(), Error> {
        if self.listeners.contains_key(&addr) {
            return Err(Error::AddressInUse);
        }
        self.listeners.insert(
            addr,
            Listener {
                backlog: VecDeque::new(),
                max_backlog: backlog.unwrap_or(self.limits.max_backlog).max(1),
                half_open: 0,
                cookie_sent_at: None,
            },
        );
        Ok(())
    }

    /// Stops listening on `addr`; connections waiting in its backlog are reset.
    pub fn unlisten(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(l) = self.listeners.remove(&addr) {
            for id in l.backlog {
                self.with(id, now, |c, _| c.abort());
            }
        }
    }

    /// The next established connection of the listener on `addr`.
    pub fn accept(&mut self, addr: SocketAddr) -> Option<ConnId> {
        let l = self.listeners.get_mut(&addr)?;
        while let Some(id) = l.backlog.pop_front() {
            let alive = self
                .slots
                .get(id.index as usize)
                .is_some_and(|s| s.generation == id.generation && s.conn.is_some());
            if alive {
                return Some(id);
            }
        }
        None
    }

    /// Established connections waiting in the backlog of `addr`.
    pub fn backlog(&self, addr: SocketAddr) -> usize {
        self.listeners.get(&addr).map_or(0, |l| l.backlog.len())
    }

    /// Opens a connection from `local` (a port the caller reserved) to `remote`.
    pub fn connect(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> Result<ConnId, Error> {
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(Error::FamilyMismatch);
        }
        if self.flows.contains_key(&(local, remote)) {
            return Err(Error::ConnectionExists);
        }
        if self.flows.len() >= self.limits.max_connections {
            return Err(Error::TooManyConnections);
        }
        let conn = Connection::connect(
            local,
            remote,
            self.config,
            self.start(local, remote, None, now),
        );
        self.counters.active_opens += 1;
        let id = self.insert(conn, None);
        self.after(id, now);
        Ok(id)
    }

    /// The ISN and timestamp offset of a connection from `local` to `remote` (RFC 6528).
    fn isn(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> (Seq, u32) {
        self.isn.pick(local, remote, now)
    }

    fn insert(&mut self, conn: Connection, half_open_of: Option<SocketAddr>) -> ConnId {
        let key = (conn.local(), conn.remote());
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    half_open_of: None,
                    scheduled: None,
                    queued: false,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.conn = Some(Box::new(conn));
        slot.half_open_of = half_open_of;
        slot.scheduled = None;
        slot.queued = false;
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        self.flows.insert(key, id);
        id
    }

    /// Runs `f` on a connection, then books what changed (events, transmit queue, timers,
    /// removal). Returns `None` when the handle is stale.
    pub fn with<R>(
        &mut self,
        id: ConnId,
        now: Instant,
        f: impl FnOnce(&mut Connection, &mut Counters) -> R,
    ) -> Option<R> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let conn = slot.conn.as_mut()?;
        let r = f(conn, &mut self.counters);
        self.after(id, now);
        Some(r)
    }

    /// Read-only access to a connection.
    pub fn get(&self, id: ConnId) -> Option<&Connection> {
        let slot = self.slots.get(id.index as usize)?;
        (slot.generation == id.generation)
            .then_some(slot.conn.as_deref())
            .flatten()
    }

    /// Books what changed on connection `id`.
    fn after(&mut self, id: ConnId, now: Instant) {
        self.book(id, now, false);
    }

    /// [`Endpoint::after`]; `drained` when the connection just sent everything due, so that
    /// whether it wants to transmit need not be worked out again (nothing here changes that:
    /// the persist timer and the receive window's target send nothing by themselves).
    fn book(&mut self, id: ConnId, now: Instant, drained: bool) {
        let slot = &mut self.slots[id.index as usize];
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        conn.check_persist(now);
        conn.tune_receive_window(now);
        let events = conn.take_events();
        let state = conn.state();
        if let Some(listener) = slot.half_open_of
            && state != State::SynReceived
        {
            slot.half_open_of = None;
            if let Some(l) = self.listeners.get_mut(&listener) {
                l.half_open = l.half_open.saturating_sub(1);
                if events.contains(Events::CONNECTED) {
                    l.backlog.push_back(id);
                }
            }
            if events.contains(Events::CONNECTED) {
                self.counters.passive_opens += 1;
            }
        }
        if events.contains(Events::CONNECTED) {
            self.counters.opened += 1;
        }
        if !events.is_empty() {
            self.events.push_back((id, events));
        }
        if conn.is_finished() {
            if conn.readable() > 0 {
                let mut data = vec![0u8; conn.readable()];
                let n = conn.recv(&mut data);
                data.truncate(n);
                self.leftovers.insert(id, data);
            }
            self.remove(id);
            return;
        }
        if state == State::TimeWait && !conn.wants_to_transmit() && conn.readable() == 0 {
            // Done for its owner once it read everything (until then the connection stays, as
            // Linux keeps a closed socket's data readable); a small record keeps TIME_WAIT.
            let record = conn.time_wait_record(now);
            let (local, remote) = (conn.local(), conn.remote());
            self.events.push_back((id, Events::CLOSED));
            self.remove(id);
            if self.time_waits.len() < self.limits.max_time_wait {
                self.time_waits.insert(local, remote, record);
            } else {
                self.counters.time_wait_overflow += 1;
            }
            return;
        }
        debug_assert!(
            !drained || !conn.wants_to_transmit(),
            "drained, yet more is due"
        );
        if !slot.queued && !drained && conn.wants_to_transmit() {
            slot.queued = true;
            self.transmit.push_back(id);
        }
        // Only an earlier deadline is pushed: every ACK moves the RTO later, and a later one is
        // found when the entry already in the heap fires (handle_timeouts books it again) —
        // one heap push and pop per RTO instead of per ACK.
        if let Some(t) = conn.poll_timeout()
            && slot.scheduled.is_none_or(|s| t < s)
        {
            slot.scheduled = Some(t);
            self.timers.push(Reverse((t, id.index, id.generation)));
        }
    }

    fn remove(&mut self, id: ConnId) {
        let slot = &mut self.slots[id.index as usize];
        let Some(conn) = slot.conn.take() else {
            return;
        };
        if let Some(listener) = slot.half_open_of.take()
            && let Some(l) = self.listeners.get_mut(&listener)
        {
            l.half_open = l.half_open.saturating_sub(1);
        }
        slot.generation = slot.generation.wrapping_add(1);
        slot.scheduled = None;
        self.free.push(id.index);
        self.flows.remove(&(conn.local(), conn.remote()));
        self.counters.closed += 1;
    }

    /// Processes a segment `remote` -> `local` (checksummed already).
    pub fn input(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        h: &TcpHeader,
        payload: &[u8],
        now: Instant,
    ) -> Disposition {
        if !unicast(local.ip()) || !unicast(remote.ip()) {
            // TCP is between two hosts: never answered, never a connection (RFC 1122
            // §4.2.3.10; Linux's tcp_v4_rcv drops what is not PACKET_HOST).
            self.counters.not_unicast += 1;
            return Disposition::Other;
        }
        let mut reopen = None;
        if self.time_waits.contains(local, remote) {
            let (control, counters, max) = (
                &mut self.control,
                &mut self.counters,
                self.limits.max_pending_resets,
            );
            let verdict = self.time_waits.input(
                local,
                remote,
                h,
                payload.len(),
                self.config.time_wait,
                self.isn.base(),
                now,
                &mut |answer| {
                    if control.len() < max {
                        control.push_back((local, remote, answer));
                    } else {
                        counters.resets_suppressed += 1;
                    }
                },
            );
            match verdict {
                Verdict::Done => return Disposition::Other,
                // A new incarnation (RFC 6191), above the old sequence space.
                Verdict::Reopen(isn) => reopen = Some(isn),
            }
        }
        let syn_only = h.flags.contains(Flags::SYN) && !h.flags.contains(Flags::ACK);
        if let Some(&id) = self.flows.get(&(local, remote)) {
            let accepted = self.with(id, now, |c, counters| {
                let before = c.accepted_segments();
                c.handle_segment(h, payload, now, counters);
                c.accepted_segments() > before
            });
            return match accepted {
                Some(true) => Disposition::Accepted,
                _ => Disposition::Other,
            };
        }
        if h.flags.contains(Flags::RST) {
            return Disposition::Other;
        }
        let listener = if self.listeners.contains_key(&local) {
            Some(local)
        } else {
            Some(unspecified(local)).filter(|a| self.listeners.contains_key(a))
        };
        if let Some(listener) = listener {
            if syn_only {
                // Linux drops SYN+FIN at a listener (no SYN-ACK, no RST).
                let answered = !h.flags.contains(Flags::FIN)
                    && self.on_syn(listener, remote, local, h, reopen, now);
                return if answered {
                    Disposition::Syn
                } else {
                    Disposition::Other
                };
            }
            let ack_only = h.flags.contains(Flags::ACK) && !h.flags.contains(Flags::SYN);
            if ack_only {
                match self.on_cookie_ack(listener, remote, local, h, payload, now) {
                    Some(true) => return Disposition::Accepted,
                    Some(false) => return Disposition::Other,
                    None => {}
                }
            }
        }
        self.reset_reply(remote, local, h, payload.len());
        Disposition::Other
    }

    /// The minute SYN cookies are made in.
    fn minute(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.isn.base()).as_secs() / 60) as u32
    }

    /// Answers a SYN with a cookie SYN-ACK and keeps nothing; false when too many answers
    /// wait already.
    fn send_cookie(
        &mut self,
        listener: SocketAddr,
        remote: SocketAddr,
        local: SocketAddr,
        syn: &TcpHeader,
        now: Instant,
    ) -> bool {
        if self.control.len() >= self.limits.max_pending_resets {
            self.counters.half_open_drops += 1;
            return false;
        }
        let o = &syn.options;
        let cookie = self
            .cookies
            .make(local, remote, syn.seq, o.mss, self.minute(now));
        let (_, ts_offset) = self.isn(local, remote, now);
        // Without timestamps there is nowhere to keep the window scale and SACK: a cookie
        // connection then has neither (Linux clears them likewise).
        let ts = (self.config.timestamps && o.timestamps.is_some()).then_some(());
        let wscale = ts.is_some() && self.config.window_scale && o.window_scale.is_some();
        let sack = ts.is_some() && self.config.sack && o.sack_permitted;
        let timestamps = o.timestamps.filter(|_| ts.is_some()).map(|(tsval, _)| {
            let ours = connection::timestamp(self.isn.base(), ts_offset, now);
            let kept = o.window_scale.filter(|_| wscale);
            (syn_cookie::encode_timestamp(ours, kept, sack), tsval)
        });
        let synack = TcpHeader {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: cookie,
            ack: syn.seq + 1,
            flags: Flags::SYN | Flags::ACK,
            window: self.config.recv_buffer.min(65535) as u16,
            options: connection::syn_options(
                &self.config,
                local.is_ipv6(),
                wscale,
                sack,
                timestamps,
            ),
        };
        self.control.push_back((local, remote, synack));
        self.counters.syncookies_sent += 1;
        if let Some(l) = self.listeners.get_mut(&listener) {
            l.cookie_sent_at = Some(now);
        }
        true
    }

    /// An ACK for no connection at a listener: if it brings back a valid cookie, the
    /// connection its SYN asked for is made and the ACK processed (`Some(true)`), or, without
    /// room for it, dropped (`Some(false)`). `None` when it was no cookie ACK (it gets a RST).
    fn on_cookie_ack(
        &mut self,
        listener: SocketAddr,
        remote: SocketAddr,
        local: SocketAddr,
        h: &TcpHeader,
        payload: &[u8],
        now: Instant,
    ) -> Option<bool> {
        let l = self.listeners.get(&listener)?;
        if l.cookie_sent_at
            .is_none_or(|t| now.saturating_duration_since(t) > COOKIES_VALID)
        {
            return None;
        }
        let (peer_isn, cookie) = (h.seq - 1, h.ack - 1);
        let mss = self
            .cookies
            .check(local, remote, peer_isn, cookie, self.minute(now));
        // Options we would not have offered make the cookie invalid (Linux's
        // cookie_timestamp_decode).
        let options = match h.options.timestamps {
            Some((_, tsecr)) if self.config.timestamps => Some(syn_cookie::decode_timestamp(tsecr))
                .filter(|(ws, sack)| {
                    (ws.is_none() || self.config.window_scale) && (!sack || self.config.sack)
                }),
            Some(_) => None,
            None => Some((None, false)),
        };
        let (Some(mss), Some((window_scale, sack_permitted))) = (mss, options) else {
            self.counters.syncookies_failed += 1;
            return None;
        };
        self.counters.syncookies_ok += 1;
        // The ACK is taken but the connection may still have no room; the peer sends again.
        if l.backlog.len() >= l.max_backlog {
            self.counters.backlog_drops += 1;
            return Some(false);
        }
        if self.flows.len() >= self.limits.max_connections {
            self.counters.flow_table_full += 1;
            return Some(false);
        }
        if self.no_memory_for_a_connection() {
            self.counters.memory_syn_drops += 1;
            return Some(false);
        }
        let syn = TcpHeader {
            seq: peer_isn,
            ack: Seq(0),
            flags: Flags::SYN,
            options: TcpOptions {
                mss: Some(mss),
                window_scale,
                sack_permitted,
                timestamps: h.options.timestamps.map(|(tsval, _)| (tsval, 0)),
                ..TcpOptions::default()
            },
            ..*h
        };
        let start = self.start(local, remote, Some(cookie), now);
        let conn = Connection::from_cookie(local, remote, &syn, self.config, start);
        if let Some(l) = self.listeners.get_mut(&listener) {
            l.half_open += 1;
        }
        let id = self.insert(conn, Some(listener));
        self.with(id, now, |c, counters| {
            c.handle_segment(h, payload, now, counters)
        });
        Some(true)
    }

    /// True when the memory budget has too little left for another connection's buffers.
    fn no_memory_for_a_connection(&self) -> bool {
        self.budget
            .nearly_exhausted(MEMORY_RESERVE.min(self.budget.limit() / 8))
    }

    /// A SYN for `listener`; `isn` is the ISN a TIME_WAIT reopen chose. True when it was
    /// answered (a half-open connection, or a cookie).
    fn on_syn(
        &mut self,
        listener: SocketAddr,
        remote: SocketAddr,
        local: SocketAddr,
        syn: &TcpHeader,
        isn: Option<Seq>,
        now: Instant,
    ) -> bool {
        let Some(l) = self.listeners.get(&listener) else {
            return false;
        };
        if l.backlog.len() >= l.max_backlog {
            // Nobody accepts: a connection would have nowhere to wait (Linux drops too).
            self.counters.backlog_drops += 1;
            return false;
        }
        if l.half_open >= self.limits.max_half_open
            || l.backlog.len() + l.half_open >= l.max_backlog
        {
            if self.limits.syn_cookies {
                return self.send_cookie(listener, remote, local, syn, now);
            }
            self.counters.half_open_drops += 1;
            return false;
        }
        if self.flows.len() >= self.limits.max_connections {
            self.counters.flow_table_full += 1;
            return false;
        }
        if self.no_memory_for_a_connection() {
            // No memory for another connection's buffers.
            self.counters.memory_syn_drops += 1;
            return false;
        }
        if let Some(l) = self.listeners.get_mut(&listener) {
            l.half_open += 1;
        }
        let start = self.start(local, remote, isn, now);
        let conn = Connection::accept(local, remote, syn, self.config, start);
        let id = self.insert(conn, Some(listener));
        self.after(id, now);
        true
    }

    /// An ICMP error about a segment `local` sent to `remote` with sequence number `seq`.
    pub fn icmp_error(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        problem: Problem,
        seq: Seq,
        now: Instant,
    ) {
        match self.flows.get(&(local, remote)) {
            Some(&id) => {
                self.with(id, now, |c, counters| {
                    c.handle_icmp(problem, seq, now, counters)
                });
            }
            None => self.counters.icmp_out_of_window += 1,
        }
    }

    /// RFC 9293 §3.10.7.1: a segment for no connection gets a RST (never one for a RST).
    fn reset_reply(&mut self, remote: SocketAddr, local: SocketAddr, h: &TcpHeader, len: usize) {
        if self.control.len() >= self.limits.max_pending_resets {
            self.counters.resets_suppressed += 1;
            return;
        }
        let mut rst = TcpHeader {
            src_port: local.port(),
            dst_port: remote.port(),
            options: TcpOptions::default(),
            ..TcpHeader::default()
        };
        if h.flags.contains(Flags::ACK) {
            rst.seq = h.ack;
            rst.flags = Flags::RST;
        } else {
            rst.ack = h.seq
                + len
                + usize::from(h.flags.contains(Flags::SYN))
                + usize::from(h.flags.contains(Flags::FIN));
            rst.flags = Flags::RST | Flags::ACK;
        }
        self.control.push_back((local, remote, rst));
    }

    /// When to run [`Endpoint::handle_timeouts`] next: no later than any connection's
    /// deadline (possibly earlier, when a deadline moved later since it was booked).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let mut next = None;
        while let Some(&Reverse((t, index, generation))) = self.timers.peek() {
            let current = self
                .slots
                .get(index as usize)
                .is_some_and(|s| s.generation == generation && s.scheduled == Some(t));
            if current {
                next = Some(t);
                break;
            }
            self.timers.pop();
        }
        [next, self.time_waits.next_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeouts(&mut self, now: Instant) {
        self.time_waits.expire(now);
        while let Some(&Reverse((t, index, generation))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let slot = &mut self.slots[index as usize];
            if slot.generation != generation || slot.scheduled != Some(t) {
                continue;
            }
            slot.scheduled = None;
            let pressed = slot
                .half_open_of
                .and_then(|l| self.listeners.get(&l))
                .is_some_and(|l| 2 * l.half_open >= self.limits.max_half_open.min(l.max_backlog));
            let id = ConnId { index, generation };
            self.with(id, now, |c, counters| {
                if pressed && c.state() == State::SynReceived {
                    c.limit_syn_retries(SYN_RETRIES_UNDER_PRESSURE);
                }
                c.handle_timeout(now, counters)
            });
        }
    }

    /// Hands every segment due to `emit(local, remote, header, payload)` until there is no
    /// more or `emit` returns false (no room; the rest waits for the next call).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        mut emit: impl FnMut(SocketAddr, SocketAddr, &TcpHeader, [&[u8]; 2]) -> bool,
    ) {
        while let Some(&(local, remote, h)) = self.control.front() {
            if !emit(local, remote, &h, [&[], &[]]) {
                return;
            }
            self.control.pop_front();
            if h.flags.contains(Flags::RST) {
                self.counters.resets_sent += 1;
            }
        }
        while let Some(id) = self.transmit.pop_front() {
            let slot = &mut self.slots[id.index as usize];
            if slot.generation != id.generation {
                continue;
            }
            slot.queued = false;
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            let (local, remote) = (conn.local(), conn.remote());
            let sent = conn.poll_transmit(now, &mut self.counters, &mut |h, p| {
                emit(local, remote, h, p)
            });
            self.book(id, now, sent == Transmitted::Everything);
            if sent == Transmitted::Refused {
                // Out of room: this connection goes first next time.
                let slot = &mut self.slots[id.index as usize];
                if slot.generation == id.generation && slot.queued {
                    if let Some(pos) = self.transmit.iter().rposition(|x| *x == id) {
                        self.transmit.remove(pos);
                    }
                    self.transmit.push_front(id);
                }
                return;
            }
        }
    }

    /// What connection `id` had received but not been read when it ended (see the field).
    pub fn take_leftover(&mut self, id: ConnId) -> Option<Vec<u8>> {
        self.leftovers.remove(&id)
    }

    /// Drops the leftovers nobody took.
    pub fn clear_leftovers(&mut self) {
        self.leftovers.clear();
    }

    /// The next (connection, what changed) for the application.
    pub fn poll_event(&mut self) -> Option<(ConnId, Events)> {
        self.events.pop_front()
    }
}
