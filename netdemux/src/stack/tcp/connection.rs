//! One TCP connection (RFC 9293), sans-IO: [`Connection::handle_segment`] and
//! [`Connection::handle_timeout`] take input and the time; [`Connection::poll_transmit`] hands
//! out the segments to send; [`Connection::poll_timeout`] says when to call again; the
//! application reads, writes and closes through [`Connection::recv`], [`Connection::send`] and
//! [`Connection::close`] and learns what changed from [`Connection::take_events`].
//!
//! What it does: passive and active open (simultaneous open too); MSS, window scaling and
//! timestamps with PAWS (RFC 7323); SACK as receiver and sender (RFC 2018, loss recovery after
//! RFC 6675 with a FACK-style loss estimate); RTO per RFC 6298 with Karn's rule; fast retransmit
//! and recovery (RFC 5681, NewReno partial ACKs per RFC 6582 when the peer has no SACK); a
//! congestion controller behind a trait; delayed ACKs; Nagle and sender/receiver silly-window
//! avoidance (RFC 1122); zero-window probes; keepalive; RST validation and challenge ACKs
//! (RFC 5961); FIN in every state and TIME_WAIT.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{
    Seq,
    assembler::RecvBuffer,
    congestion::{Algorithm, CongestionControl},
    endpoint::Counters,
    rtt::RttEstimator,
    send_buffer::SendBuffer,
};
use crate::wire::tcp::{Flags, SackBlocks, TcpHeader, TcpOptions, sack_capacity};

/// Settings of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The MSS to announce: the largest segment payload this side can receive (MTU - 40 for
    /// IPv4; IPv6 connections announce 20 bytes less).
    pub mss: u16,
    /// Receive buffer (the largest window), bytes.
    pub recv_buffer: usize,
    /// Send buffer, bytes.
    pub send_buffer: usize,
    /// Out-of-order ranges kept for reassembly.
    pub max_ooo_ranges: usize,
    /// The congestion controller.
    pub congestion: Algorithm,
    /// Disables Nagle's algorithm.
    pub nodelay: bool,
    /// How long an ACK may wait for more data (RFC 1122: < 500 ms; Linux: 40 ms).
    pub delayed_ack: Duration,
    /// Lower bound of the retransmission timeout.
    pub min_rto: Duration,
    /// Retransmissions of a SYN or SYN-ACK before giving up.
    pub syn_retries: u32,
    /// Retransmission timeouts of data before giving up.
    pub max_retries: u32,
    /// Idle time before keepalive probes, or `None` for no keepalive.
    pub keepalive: Option<Duration>,
    /// Interval between keepalive probes.
    pub keepalive_interval: Duration,
    /// Unanswered keepalive probes before giving up.
    pub keepalive_probes: u32,
    /// How long TIME_WAIT lasts (2 MSL).
    pub time_wait: Duration,
    /// How long FIN_WAIT_2 waits for the peer's FIN once this side has closed.
    pub fin_wait2: Duration,
    /// Offer window scaling.
    pub window_scale: bool,
    /// Offer timestamps.
    pub timestamps: bool,
    /// Offer SACK.
    pub sack: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1460,
            recv_buffer: 256 * 1024,
            send_buffer: 256 * 1024,
            max_ooo_ranges: 32,
            congestion: Algorithm::default(),
            nodelay: false,
            delayed_ack: Duration::from_millis(40),
            min_rto: Duration::from_millis(200),
            syn_retries: 6,
            max_retries: 15,
            keepalive: None,
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
            time_wait: Duration::from_secs(60),
            fin_wait2: Duration::from_secs(60),
            window_scale: true,
            timestamps: true,
            sack: true,
        }
    }
}

/// The RFC 9293 states (LISTEN lives in the endpoint's listeners).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// SYN sent, waiting for the peer's SYN.
    SynSent,
    /// SYN received and answered, waiting for the ACK of ours.
    SynReceived,
    /// Open.
    Established,
    /// This side closed; FIN not acknowledged yet.
    FinWait1,
    /// This side's FIN acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer closed; this side has not.
    CloseWait,
    /// Both closed at once; waiting for the ACK of this side's FIN.
    Closing,
    /// The peer closed first, then this side; waiting for the last ACK.
    LastAck,
    /// Both closed; absorbing the peer's retransmissions for 2 MSL.
    TimeWait,
    /// Gone.
    Closed,
}

impl State {
    /// The lower-case name `stats` uses.
    pub fn name(self) -> &'static str {
        match self {
            State::SynSent => "syn-sent",
            State::SynReceived => "syn-received",
            State::Established => "established",
            State::FinWait1 => "fin-wait-1",
            State::FinWait2 => "fin-wait-2",
            State::CloseWait => "close-wait",
            State::Closing => "closing",
            State::LastAck => "last-ack",
            State::TimeWait => "time-wait",
            State::Closed => "closed",
        }
    }
}

/// What changed for the application since it last asked (a set of flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events(pub u8);

impl Events {
    /// The handshake completed.
    pub const CONNECTED: Events = Events(1);
    /// Bytes (or the end of the stream) can be read.
    pub const READABLE: Events = Events(2);
    /// Send-buffer space was freed.
    pub const WRITABLE: Events = Events(4);
    /// The peer closed its side (its FIN arrived in order).
    pub const PEER_CLOSED: Events = Events(8);
    /// The connection ended normally.
    pub const CLOSED: Events = Events(16);
    /// The peer reset the connection (or refused it).
    pub const RESET: Events = Events(32);
    /// The peer stopped answering (retransmissions or keepalive probes exhausted).
    pub const TIMED_OUT: Events = Events(64);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Events {
    type Output = Events;
    fn bitor(self, rhs: Events) -> Events {
        Events(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Events) {
        self.0 |= rhs.0;
    }
}

/// The most SACK blocks the sender's scoreboard keeps.
const SCOREBOARD_RANGES: usize = 32;
/// The least time between two answers to unacceptable bare ACKs.
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// Duplicate ACKs that mean loss (RFC 5681).
const DUP_THRESH: u32 = 3;

/// What the next segment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// A RST: aborting (`seq` = SND.NXT), or answering an unacceptable ACK (`seq` = its ack).
    Rst { seq: Seq, aborting: bool },
    /// SYN or SYN-ACK.
    Syn,
    /// Data (and maybe FIN) from `seq`, `len` bytes; `fin` when the FIN rides along.
    Data { seq: Seq, len: usize, fin: bool },
    /// A segment the peer must answer: seq = SND.UNA - 1, no data (zero-window or keepalive probe).
    Probe,
    /// An ACK only.
    Ack,
}

/// One TCP connection.
#[derive(Debug)]
pub struct Connection {
    state: State,
    local: SocketAddr,
    remote: SocketAddr,
    cfg: Config,

    iss: Seq,
    snd_una: Seq,
    snd_nxt: Seq,
    snd_max: Seq,
    snd_wnd: usize,
    max_snd_wnd: usize,
    snd_wl1: Seq,
    snd_wl2: Seq,
    snd_shift: u8,
    send: SendBuffer,
    /// The application closed its side: FIN after the buffered bytes.
    fin_queued: bool,
    /// Where this side's FIN sits, once sent.
    fin_seq: Option<Seq>,

    irs: Seq,
    rcv_nxt: Seq,
    rcv_shift: u8,
    /// The right edge of the window last advertised (never moves left).
    rcv_adv: Seq,
    recv: RecvBuffer,
    /// Where the peer's FIN sits, once seen (maybe before the bytes in front of it).
    peer_fin: Option<Seq>,
    fin_received: bool,

    /// Payload bytes per segment this side sends.
    mss: usize,
    ts_enabled: bool,
    ts_recent: u32,
    ts_offset: u32,
    clock_base: Instant,
    sack_enabled: bool,
    wscale_enabled: bool,

    rtt: RttEstimator,
    rto_at: Option<Instant>,
    /// The tail-loss probe timer (RFC 8985 §7).
    tlp_at: Option<Instant>,
    /// A tail-loss probe is due.
    tlp_due: bool,
    /// A probe went out and no new data was acknowledged since.
    tlp_sent: bool,
    /// The segment being timed without timestamps (Karn: never a retransmitted one).
    timed: Option<(Seq, Instant)>,
    retries: u32,
    cc: Box<dyn CongestionControl>,
    dupacks: u32,
    /// In loss recovery until SND.UNA reaches this point.
    recovery: Option<Seq>,
    /// Everything below this was retransmitted in the current recovery.
    high_rxt: Seq,
    /// SACKed ranges above SND.UNA, sorted and disjoint.
    scoreboard: Vec<(Seq, Seq)>,

    ack_now: bool,
    /// When an unacceptable bare ACK was last answered.
    last_oow_ack: Option<Instant>,
    /// Duplicate ACKs owed: one per out-of-order segment (RFC 5681 §4.2), even when a batch
    /// of them is processed before anything is sent.
    owed_acks: u32,
    unacked_bytes: usize,
    delack_at: Option<Instant>,
    persist_at: Option<Instant>,
    persist_backoffs: u32,
    probe_now: bool,
    last_heard: Instant,
    keepalive_sent: u32,
    /// TIME_WAIT or FIN_WAIT_2 ends at this time.
    linger_at: Option<Instant>,
    rst: Option<Plan>,
    events: Events,
}

/// The window-scale shift that lets a 16-bit field describe `buffer` bytes.
fn shift_for(buffer: usize) -> u8 {
    let mut shift = 0;
    while (buffer >> shift) > 65535 && shift < 14 {
        shift += 1;
    }
    shift
}

impl Connection {
    fn new(
        local: SocketAddr,
        remote: SocketAddr,
        iss: Seq,
        cfg: Config,
        now: Instant,
        clock_base: Instant,
        ts_offset: u32,
    ) -> Connection {
        let mss = usize::from(cfg.mss) - if local.is_ipv6() { 20 } else { 0 };
        Connection {
            state: State::Closed,
            local,
            remote,
            cfg,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: Seq(0),
            snd_wl2: iss,
            snd_shift: 0,
            // A passive open allocates its buffers once the handshake completes, so a SYN
            // flood costs no buffer memory (see `established`).
            send: SendBuffer::new(0),
            fin_queued: false,
            fin_seq: None,
            irs: Seq(0),
            rcv_nxt: Seq(0),
            rcv_shift: 0,
            rcv_adv: Seq(0),
            recv: RecvBuffer::new(0, 0),
            peer_fin: None,
            fin_received: false,
            mss,
            ts_enabled: false,
            ts_recent: 0,
            ts_offset,
            clock_base,
            sack_enabled: false,
            wscale_enabled: false,
            rtt: RttEstimator::new(cfg.min_rto),
            rto_at: None,
            tlp_at: None,
            tlp_due: false,
            tlp_sent: false,
            timed: None,
            retries: 0,
            cc: cfg.congestion.build(mss),
            dupacks: 0,
            recovery: None,
            high_rxt: iss,
            scoreboard: Vec::with_capacity(SCOREBOARD_RANGES),
            ack_now: false,
            last_oow_ack: None,
            owed_acks: 0,
            unacked_bytes: 0,
            delack_at: None,
            persist_at: None,
            persist_backoffs: 0,
            probe_now: false,
            last_heard: now,
            keepalive_sent: 0,
            linger_at: None,
            rst: None,
            events: Events::default(),
        }
    }

    /// An active open to `remote` from `local`: the SYN goes out on the next
    /// [`Connection::poll_transmit`].
    pub fn connect(
        local: SocketAddr,
        remote: SocketAddr,
        iss: Seq,
        cfg: Config,
        now: Instant,
        clock_base: Instant,
        ts_offset: u32,
    ) -> Connection {
        let mut c = Connection::new(local, remote, iss, cfg, now, clock_base, ts_offset);
        c.state = State::SynSent;
        // The application may write before the handshake completes.
        c.allocate_buffers();
        c
    }

    /// A passive open answering `syn` (a SYN without ACK that a listener accepted): the
    /// SYN-ACK goes out on the next [`Connection::poll_transmit`].
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpHeader,
        iss: Seq,
        cfg: Config,
        now: Instant,
        clock_base: Instant,
        ts_offset: u32,
    ) -> Connection {
        let mut c = Connection::new(local, remote, iss, cfg, now, clock_base, ts_offset);
        c.state = State::SynReceived;
        c.irs = syn.seq;
        c.rcv_nxt = syn.seq + 1;
        c.negotiate(syn);
        c
    }

    /// Adopts what the peer's SYN offered.
    fn negotiate(&mut self, syn: &TcpHeader) {
        let o = &syn.options;
        let default_mss = if self.remote.is_ipv6() { 1220 } else { 536 };
        let peer_mss = usize::from(o.mss.unwrap_or(default_mss)).max(64);
        self.ts_enabled = self.cfg.timestamps && o.timestamps.is_some();
        if let Some((tsval, _)) = o.timestamps {
            self.ts_recent = tsval;
        }
        self.sack_enabled = self.cfg.sack && o.sack_permitted;
        self.wscale_enabled = self.cfg.window_scale && o.window_scale.is_some();
        if self.wscale_enabled {
            self.snd_shift = o.window_scale.unwrap_or(0).min(14);
            self.rcv_shift = shift_for(self.cfg.recv_buffer);
        }
        let ours = usize::from(self.cfg.mss) - if self.local.is_ipv6() { 20 } else { 0 };
        self.mss = peer_mss.min(ours) - if self.ts_enabled { 12 } else { 0 };
        self.cc.set_mss(self.mss);
        // The window in a SYN is never scaled.
        self.snd_wnd = usize::from(syn.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = syn.seq;
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// This side's address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Payload bytes per segment this side sends.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// The congestion window, bytes.
    pub fn congestion_window(&self) -> usize {
        self.cc.window()
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Bytes waiting for the application.
    pub fn readable(&self) -> usize {
        self.recv.readable()
    }

    /// True when the peer closed and every byte before its FIN was read.
    pub fn read_closed(&self) -> bool {
        self.recv.readable() == 0
            && (self.fin_received || matches!(self.state, State::Closed | State::TimeWait))
    }

    /// Room in the send buffer (0 once this side closed or the connection ended).
    pub fn send_space(&self) -> usize {
        if self.fin_queued || !self.can_send() {
            0
        } else {
            self.send.space()
        }
    }

    /// A one-line account of the sequence space and timers, for logs and test failures.
    pub fn summary(&self) -> String {
        format!(
            "{} una={} nxt={} max={} wnd={} cwnd={} pipe={} buf={} fin={:?} rcv_nxt={} \
             readable={} ranges={} recovery={:?} high_rxt={} dupacks={} rto_at={:?} \
             persist={:?} retries={}",
            self.state.name(),
            self.snd_una,
            self.snd_nxt,
            self.snd_max,
            self.snd_wnd,
            self.cc.window(),
            self.pipe(),
            self.send.len(),
            self.fin_seq,
            self.rcv_nxt,
            self.recv.readable(),
            self.recv.ranges(),
            self.recovery,
            self.high_rxt,
            self.dupacks,
            self.rto_at
                .map(|t| t.saturating_duration_since(self.clock_base)),
            self.persist_at
                .map(|t| t.saturating_duration_since(self.clock_base)),
            self.retries,
        )
    }

    /// Bytes written and not acknowledged yet.
    pub fn unacknowledged(&self) -> usize {
        self.send.len()
    }

    fn can_send(&self) -> bool {
        matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        )
    }

    /// Disables (true) or enables Nagle's algorithm.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.cfg.nodelay = nodelay;
    }

    /// Queues bytes to send; returns how many fit (0 when closed for sending).
    pub fn send(&mut self, bytes: &[u8]) -> usize {
        if self.fin_queued || !self.can_send() {
            return 0;
        }
        self.send.write(bytes)
    }

    /// Moves readable bytes into `out`; returns how many.
    pub fn recv(&mut self, out: &mut [u8]) -> usize {
        let n = self.recv.read(out);
        self.after_read(n);
        n
    }

    /// The readable bytes as (up to) two slices, left in place.
    pub fn peek(&self) -> (&[u8], &[u8]) {
        self.recv.peek()
    }

    /// Frees `n` readable bytes after a [`Connection::peek`].
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.recv.readable());
        self.recv.consume(n);
        self.after_read(n);
    }

    /// Sends a window update when reading opened the window enough to matter.
    fn after_read(&mut self, n: usize) {
        if n == 0 || !self.is_synchronized() {
            return;
        }
        let right = self.rcv_nxt + self.recv.window();
        let grown = right.since(self.rcv_adv).max(0) as usize;
        if grown >= (2 * self.mss).min(self.recv.capacity() / 2) {
            self.ack_now = true;
        }
    }

    /// Closes this side: a FIN follows the bytes already written.
    pub fn close(&mut self) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::SynSent => self.finish(Events::CLOSED),
            State::SynReceived => self.fin_queued = true,
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Resets the connection: a RST goes out (when synchronized) and the connection ends.
    pub fn abort(&mut self) {
        if self.state == State::Closed {
            return;
        }
        if self.is_synchronized() || self.state == State::SynReceived {
            self.rst = Some(Plan::Rst {
                seq: self.snd_max,
                aborting: true,
            });
        }
        self.finish(Events::CLOSED);
    }

    /// What changed since the last call.
    pub fn take_events(&mut self) -> Events {
        std::mem::take(&mut self.events)
    }

    /// True once the connection ended and has nothing left to send.
    pub fn is_finished(&self) -> bool {
        self.state == State::Closed && self.rst.is_none()
    }

    fn is_synchronized(&self) -> bool {
        !matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Closed
        )
    }

    /// Ends the connection with `why`.
    fn finish(&mut self, why: Events) {
        self.state = State::Closed;
        self.events |= why;
        self.rto_at = None;
        self.tlp_at = None;
        self.delack_at = None;
        self.persist_at = None;
        self.linger_at = None;
    }

    fn tsval(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.clock_base).as_millis() as u32)
            .wrapping_add(self.ts_offset)
    }

    // ----- input -----

    /// Processes a segment from the peer (already checksummed and addressed to this
    /// connection).
    pub fn handle_segment(
        &mut self,
        h: &TcpHeader,
        payload: &[u8],
        now: Instant,
        c: &mut Counters,
    ) {
        match self.state {
            State::Closed => return,
            State::SynSent => return self.on_syn_sent(h, now, c),
            _ => {}
        }
        let stripped;
        let h = if self.state == State::SynReceived
            && h.flags.contains(Flags::SYN)
            && h.seq == self.irs
        {
            // The peer's SYN again: alone, it asks for our SYN-ACK again; with an ACK (a
            // simultaneous open), its ACK counts.
            if !h.flags.contains(Flags::ACK) {
                self.ack_now = true;
                return;
            }
            stripped = TcpHeader {
                seq: h.seq + 1,
                flags: Flags(h.flags.0 & !Flags::SYN.0),
                ..*h
            };
            &stripped
        } else {
            h
        };
        let rst = h.flags.contains(Flags::RST);
        let syn = h.flags.contains(Flags::SYN);
        let fin = h.flags.contains(Flags::FIN);
        let seg_len = payload.len() + usize::from(syn) + usize::from(fin);
        // PAWS (RFC 7323 §5): an older timestamp is an old duplicate.
        if self.ts_enabled
            && !rst
            && let Some((tsval, _)) = h.options.timestamps
            && (tsval.wrapping_sub(self.ts_recent) as i32) < 0
        {
            c.paws_rejected += 1;
            self.ack_now = true;
            return;
        }
        if !self.acceptable(h.seq, seg_len) {
            // Answered with an ACK, except RSTs; bare ACKs at most every 500 ms, so two sides
            // that disagree cannot keep each other busy (Linux's tcp_invalid_ratelimit).
            let bare = seg_len == 0;
            let recently = self
                .last_oow_ack
                .is_some_and(|t| now.saturating_duration_since(t) < OOW_ACK_INTERVAL);
            if !(rst || (bare && recently)) {
                self.ack_now = true;
                if bare {
                    self.last_oow_ack = Some(now);
                }
            }
            if self.state == State::TimeWait && fin {
                self.linger_at = Some(now + self.cfg.time_wait);
            }
            return;
        }
        self.last_heard = now;
        self.keepalive_sent = 0;
        if self.state == State::FinWait2 {
            // FIN_WAIT_2 ends only when the peer goes quiet for that long.
            self.linger_at = Some(now + self.cfg.fin_wait2);
        }
        if rst {
            // RFC 5961 §3: only the exact next sequence number resets; others get a challenge.
            if h.seq == self.rcv_nxt {
                c.resets_received += 1;
                self.finish(Events::RESET);
            } else {
                c.challenge_acks += 1;
                self.ack_now = true;
            }
            return;
        }
        if syn {
            // RFC 5961 §4: a SYN inside the window is answered with a challenge ACK.
            c.challenge_acks += 1;
            self.ack_now = true;
            return;
        }
        if !h.flags.contains(Flags::ACK) {
            return;
        }
        if self.state == State::SynReceived {
            if h.ack <= self.snd_una || h.ack > self.snd_max {
                self.rst = Some(Plan::Rst {
                    seq: h.ack,
                    aborting: false,
                });
                return;
            }
            self.established(now);
        }
        if h.ack > self.snd_max {
            // Acknowledges something never sent (RFC 9293 §3.10.7.4).
            self.ack_now = true;
            return;
        }
        self.process_ack(h, payload.len(), now, c);
        if self.fin_seq.is_some_and(|f| self.snd_una > f) {
            match self.state {
                State::FinWait1 => {
                    self.state = State::FinWait2;
                    self.linger_at = Some(now + self.cfg.fin_wait2);
                }
                State::Closing => self.enter_time_wait(now),
                State::LastAck => {
                    self.finish(Events::CLOSED);
                    return;
                }
                _ => {}
            }
        }
        if !payload.is_empty() {
            if matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            ) {
                self.receive_data(h.seq, payload, now, c);
            } else {
                self.ack_now = true;
            }
        }
        if fin && self.peer_fin.is_none() {
            self.peer_fin = Some(h.seq + payload.len());
        }
        self.check_peer_fin(now);
    }

    /// Whether a segment is acceptable, as Linux decides it (`tcp_sequence`): it must not lie
    /// wholly before RCV.NXT and must start at or before the window's right edge. RFC 9293's
    /// stricter table drops the ACKs of segments that arrive while the window is shut, which
    /// the RFC itself says to make allowance for; here their ACKs count and any data beyond the
    /// window is cut off by the receive buffer.
    fn acceptable(&self, seq: Seq, len: usize) -> bool {
        let wnd = self
            .recv
            .window()
            .max(self.rcv_adv.since(self.rcv_nxt).max(0) as usize);
        let starts_in_time = seq.since(self.rcv_nxt) <= wnd as i32;
        let not_old = if len == 0 {
            seq >= self.rcv_nxt
        } else {
            seq + len > self.rcv_nxt
        };
        starts_in_time && not_old
    }

    fn on_syn_sent(&mut self, h: &TcpHeader, now: Instant, c: &mut Counters) {
        let has_ack = h.flags.contains(Flags::ACK);
        let ack_ok = has_ack && h.ack > self.iss && h.ack <= self.snd_max;
        if has_ack && !ack_ok {
            if !h.flags.contains(Flags::RST) {
                self.rst = Some(Plan::Rst {
                    seq: h.ack,
                    aborting: false,
                });
            }
            return;
        }
        if h.flags.contains(Flags::RST) {
            if ack_ok {
                c.resets_received += 1;
                self.finish(Events::RESET);
            }
            return;
        }
        if !h.flags.contains(Flags::SYN) {
            return;
        }
        self.irs = h.seq;
        self.rcv_nxt = h.seq + 1;
        self.negotiate(h);
        self.last_heard = now;
        if ack_ok {
            self.snd_wl2 = h.ack;
            let sample = self.rtt_sample(h, now);
            if let Some(rtt) = sample {
                self.rtt.sample(rtt);
            }
            self.snd_una = h.ack;
            self.established(now);
            self.ack_now = true;
        } else {
            // Simultaneous open: answer with SYN-ACK (same ISS).
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
        }
    }

    /// Gives the connection its send and receive buffers (once).
    fn allocate_buffers(&mut self) {
        if self.recv.capacity() == 0 {
            self.recv = RecvBuffer::new(self.cfg.recv_buffer, self.cfg.max_ooo_ranges);
        }
        if self.send.space() == 0 && self.send.is_empty() {
            self.send = SendBuffer::new(self.cfg.send_buffer);
        }
    }

    fn established(&mut self, now: Instant) {
        self.allocate_buffers();
        self.state = if self.fin_queued {
            State::FinWait1
        } else {
            State::Established
        };
        self.retries = 0;
        self.rcv_adv = self.rcv_nxt;
        self.events |= Events::CONNECTED | Events::WRITABLE;
        if self.snd_una == self.snd_max {
            self.rto_at = None;
        }
        self.last_heard = now;
    }

    fn rtt_sample(&mut self, h: &TcpHeader, now: Instant) -> Option<Duration> {
        if let Some((seq, sent)) = self.timed
            && h.ack > seq
        {
            self.timed = None;
            return Some(now.saturating_duration_since(sent));
        }
        if self.ts_enabled
            && let Some((_, tsecr)) = h.options.timestamps
        {
            let ms = self.tsval(now).wrapping_sub(tsecr);
            if tsecr != 0 && ms < 1 << 31 {
                return Some(Duration::from_millis(u64::from(ms)));
            }
        }
        None
    }

    fn process_ack(&mut self, h: &TcpHeader, payload_len: usize, now: Instant, c: &mut Counters) {
        if self.ts_enabled
            && h.seq <= self.rcv_nxt
            && let Some((tsval, _)) = h.options.timestamps
        {
            self.ts_recent = tsval;
        }
        let new_wnd = usize::from(h.window) << self.snd_shift;
        let flight_before = self.snd_max - self.snd_una;
        if self.sack_enabled {
            self.update_scoreboard(&h.options.sack, h.ack);
        }
        if h.ack > self.snd_una {
            let acked = h.ack - self.snd_una;
            let mut data = acked;
            if self.snd_una == self.iss {
                data -= 1; // our SYN
            }
            if self.fin_seq.is_some_and(|f| h.ack > f) {
                data -= 1; // our FIN
            }
            let space_before = self.send.space();
            self.send.consume(data);
            self.snd_una = h.ack;
            if self.snd_nxt < h.ack {
                self.snd_nxt = h.ack;
            }
            let sample = self.rtt_sample(h, now);
            if let Some(rtt) = sample {
                self.rtt.sample(rtt);
            }
            self.retries = 0;
            self.persist_backoffs = 0;
            match self.recovery {
                Some(point) if h.ack >= point => {
                    self.recovery = None;
                    self.dupacks = 0;
                }
                Some(_) => {
                    // Partial ACK (RFC 6582): the next hole is retransmitted at once.
                    self.high_rxt = self.high_rxt.max(self.snd_una);
                    self.dupacks = 0;
                }
                None => {
                    self.dupacks = 0;
                    self.cc
                        .on_ack(data, sample, self.rtt.min_rtt(), flight_before, now);
                }
            }
            self.rto_at = (self.snd_una != self.snd_max).then(|| now + self.rtt.rto());
            self.tlp_sent = false;
            self.tlp_at = None;
            self.arm_tlp(now);
            if self.send.space() > space_before && self.can_send() && !self.fin_queued {
                self.events |= Events::WRITABLE;
            }
        } else if h.ack == self.snd_una
            && payload_len == 0
            && !h.flags.contains(Flags::FIN)
            && new_wnd == self.snd_wnd
            && self.snd_max != self.snd_una
        {
            // A duplicate ACK (RFC 5681 §2).
            self.dupacks += 1;
        }
        // Window update (RFC 9293 §3.10.7.4), only from newer segments.
        if self.snd_wl1 < h.seq || (self.snd_wl1 == h.seq && self.snd_wl2 <= h.ack) {
            self.snd_wnd = new_wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(new_wnd);
            self.snd_wl1 = h.seq;
            self.snd_wl2 = h.ack;
            if new_wnd > 0 {
                self.persist_at = None;
            }
        }
        // After a tail-loss probe, a SACK means the segments before it were lost.
        let probed = self.tlp_sent && self.sack_enabled && !self.scoreboard.is_empty();
        if self.recovery.is_none() && self.is_synchronized() && (self.loss_detected() || probed) {
            self.tlp_at = None;
            self.recovery = Some(self.snd_max);
            self.cc
                .on_congestion_event(self.snd_max - self.snd_una, now);
            self.high_rxt = self.snd_una;
            self.timed = None;
            c.fast_retransmits += 1;
        }
    }

    /// RFC 6675 §5's trigger: DupThresh duplicate ACKs, or more than (DupThresh - 1) * MSS
    /// SACKed above SND.UNA.
    fn loss_detected(&self) -> bool {
        self.snd_max != self.snd_una
            && (self.dupacks >= DUP_THRESH
                || (self.sack_enabled
                    && self.sacked_bytes() > (DUP_THRESH as usize - 1) * self.mss))
    }

    fn update_scoreboard(&mut self, blocks: &SackBlocks, ack: Seq) {
        let una = ack.max(self.snd_una);
        self.scoreboard.retain_mut(|r| {
            r.0 = r.0.max(una);
            r.1 > r.0
        });
        for &(left, right) in blocks.as_slice() {
            // Only what lies above the cumulative ACK and was sent (D-SACKs fall out here).
            let left = left.max(una);
            let right = right.min(self.snd_max);
            if right <= left {
                continue;
            }
            self.add_sacked(left, right);
        }
    }

    fn add_sacked(&mut self, mut left: Seq, mut right: Seq) {
        let mut i = 0;
        while i < self.scoreboard.len() {
            let (l, r) = self.scoreboard[i];
            if r < left {
                i += 1;
            } else if l > right {
                break;
            } else {
                left = left.min(l);
                right = right.max(r);
                self.scoreboard.remove(i);
            }
        }
        if self.scoreboard.len() < SCOREBOARD_RANGES {
            self.scoreboard.insert(i, (left, right));
        }
    }

    fn sacked_bytes(&self) -> usize {
        if self.sack_enabled {
            self.scoreboard.iter().map(|&(l, r)| r - l).sum()
        } else {
            (self.dupacks as usize * self.mss).min(self.snd_max - self.snd_una)
        }
    }

    fn receive_data(&mut self, seq: Seq, payload: &[u8], now: Instant, c: &mut Counters) {
        let (seq, data) = if seq < self.rcv_nxt {
            let skip = self.rcv_nxt - seq;
            if skip >= payload.len() {
                self.ack_now = true;
                return;
            }
            (self.rcv_nxt, &payload[skip..])
        } else {
            (seq, payload)
        };
        let offset = seq - self.rcv_nxt;
        if offset + data.len() > self.recv.window() {
            // Some of it lies beyond the window: tell the sender where the window is.
            self.ack_now = true;
        }
        let had_gaps = self.recv.ranges() > 0;
        match self.recv.insert(offset, data) {
            Ok(advanced) => {
                if offset > 0 {
                    c.out_of_order += 1;
                    self.owed_acks = (self.owed_acks + 1).min(64);
                }
                if advanced > 0 {
                    self.rcv_nxt += advanced;
                    self.events |= Events::READABLE;
                    if had_gaps {
                        // A hole filled: tell the sender at once (RFC 5681 §4.2).
                        self.ack_now = true;
                    }
                    self.unacked_bytes += advanced;
                    if self.unacked_bytes >= 2 * self.mss {
                        self.ack_now = true;
                    } else if self.delack_at.is_none() {
                        self.delack_at = Some(now + self.cfg.delayed_ack);
                    }
                }
            }
            Err(_) => {
                c.out_of_order_dropped += 1;
                self.ack_now = true;
            }
        }
    }

    fn check_peer_fin(&mut self, now: Instant) {
        if self.fin_received || self.peer_fin != Some(self.rcv_nxt) {
            return;
        }
        self.fin_received = true;
        self.rcv_nxt += 1;
        self.ack_now = true;
        self.events |= Events::PEER_CLOSED | Events::READABLE;
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                if self.fin_seq.is_some_and(|f| self.snd_una > f) {
                    self.enter_time_wait(now);
                } else {
                    self.state = State::Closing;
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.linger_at = Some(now + self.cfg.time_wait);
        self.rto_at = None;
        self.persist_at = None;
        self.delack_at = None;
    }

    /// True when a new SYN from the peer may end this TIME_WAIT and start a new connection
    /// (RFC 6191: its timestamp, or else its sequence number, is newer).
    pub fn accepts_reopen(&self, syn: &TcpHeader) -> bool {
        if self.state != State::TimeWait {
            return false;
        }
        match (self.ts_enabled, syn.options.timestamps) {
            (true, Some((tsval, _))) => (tsval.wrapping_sub(self.ts_recent) as i32) > 0,
            _ => syn.seq > self.rcv_nxt,
        }
    }

    // ----- timers -----

    /// When [`Connection::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.rto_at,
            self.tlp_at,
            self.delack_at,
            self.persist_at,
            self.linger_at,
            self.keepalive_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn keepalive_at(&self) -> Option<Instant> {
        let idle = self.cfg.keepalive?;
        let quiet = matches!(self.state, State::Established | State::CloseWait)
            && self.snd_una == self.snd_max
            && self.rto_at.is_none();
        quiet.then(|| self.last_heard + idle + self.cfg.keepalive_interval * self.keepalive_sent)
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, c: &mut Counters) {
        if self.linger_at.is_some_and(|t| t <= now) {
            self.finish(Events::CLOSED);
            return;
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.on_rto(now, c);
            if self.state == State::Closed {
                return;
            }
        }
        if self.tlp_at.is_some_and(|t| t <= now) {
            self.tlp_at = None;
            if !self.tlp_sent && self.recovery.is_none() && self.snd_una != self.snd_max {
                self.tlp_due = true;
                c.tail_loss_probes += 1;
            }
        }
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.probe_now = true;
            self.persist_backoffs += 1;
            self.persist_at = None;
            c.window_probes += 1;
        }
        if self.keepalive_at().is_some_and(|t| t <= now) {
            if self.keepalive_sent >= self.cfg.keepalive_probes {
                c.timeouts += 1;
                self.finish(Events::TIMED_OUT);
                return;
            }
            self.keepalive_sent += 1;
            self.probe_now = true;
            c.keepalive_probes += 1;
        }
    }

    fn on_rto(&mut self, now: Instant, c: &mut Counters) {
        self.rto_at = None;
        self.retries += 1;
        let limit = if self.is_synchronized() {
            self.cfg.max_retries
        } else {
            self.cfg.syn_retries
        };
        if self.retries > limit {
            c.timeouts += 1;
            self.finish(Events::TIMED_OUT);
            return;
        }
        c.rto_expirations += 1;
        self.rtt.backoff();
        if self.is_synchronized() {
            self.cc
                .on_retransmission_timeout(self.snd_max - self.snd_una, now);
        }
        self.tlp_at = None;
        self.tlp_due = false;
        // Go back N: everything from SND.UNA is sent again, the scoreboard is forgotten.
        self.snd_nxt = self.snd_una;
        self.recovery = None;
        self.dupacks = 0;
        self.scoreboard.clear();
        self.high_rxt = self.snd_una;
        self.timed = None;
    }

    // ----- output -----

    /// Hands the segments to send now to `emit`, one call each, until there is nothing more
    /// or `emit` returns false (no room: the segment was not sent and is offered again next
    /// time). Returns false when `emit` refused one.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        c: &mut Counters,
        emit: &mut dyn FnMut(&TcpHeader, [&[u8]; 2]) -> bool,
    ) -> bool {
        // Bounded: one call sends at most a window's worth of segments.
        for _ in 0..256 {
            let Some(plan) = self.next_plan() else {
                return true;
            };
            let header = self.header_for(plan, now);
            let payload = match plan {
                Plan::Data { seq, len, .. } => self.send.slices(seq - self.snd_una, len),
                _ => [&[][..], &[][..]],
            };
            if !emit(&header, payload) {
                return false;
            }
            self.commit(plan, now, c);
        }
        true
    }

    /// True when [`Connection::poll_transmit`] would emit something now.
    pub fn wants_to_transmit(&self) -> bool {
        self.next_plan().is_some()
    }

    fn next_plan(&self) -> Option<Plan> {
        if let Some(rst) = self.rst {
            return Some(rst);
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived => {
                let resend = self.state == State::SynReceived && self.ack_now;
                return (self.snd_nxt == self.iss || resend).then_some(Plan::Syn);
            }
            _ => {}
        }
        if let Some(plan) = self.retransmission() {
            return Some(plan);
        }
        if let Some(plan) = self.new_data() {
            return Some(plan);
        }
        if self.tlp_due {
            // New data if there is any to send, else the last segment again.
            let mss = self.current_mss();
            let last = self.snd_max - mss.min(self.snd_max - self.snd_una);
            return Some(self.data_plan(last.max(self.snd_una), mss));
        }
        if self.probe_now {
            return Some(if self.keepalive_sent > 0 {
                Plan::Probe
            } else {
                self.persist_plan()
            });
        }
        (self.ack_now || self.owed_acks > 0).then_some(Plan::Ack)
    }

    /// Bytes in flight as RFC 6675's `pipe` estimates them.
    fn pipe(&self) -> usize {
        let flight = self.snd_nxt - self.snd_una;
        if self.recovery.is_none() {
            return flight;
        }
        flight.saturating_sub(self.sacked_bytes() + self.lost_unretransmitted())
    }

    /// True when recovery follows the peer's SACK blocks (else NewReno's one hole at a time).
    fn uses_scoreboard(&self) -> bool {
        self.sack_enabled && !self.scoreboard.is_empty()
    }

    /// Holes the sender believes lost and has not retransmitted in this recovery.
    fn lost_unretransmitted(&self) -> usize {
        if !self.uses_scoreboard() {
            return if self.high_rxt <= self.snd_una {
                self.mss.min(self.snd_nxt - self.snd_una)
            } else {
                0
            };
        }
        let mut lost = 0;
        let mut at = self.snd_una;
        for &(l, r) in &self.scoreboard {
            let from = at.max(self.high_rxt);
            if l > from {
                lost += l - from;
            }
            at = r;
        }
        lost
    }

    /// The next hole to retransmit in loss recovery: (seq, len) bounded by the MSS and the
    /// next SACKed range.
    fn next_hole(&self) -> Option<(Seq, usize)> {
        let start = self.high_rxt.max(self.snd_una);
        let mss = self.current_mss();
        if !self.uses_scoreboard() {
            return (self.high_rxt <= self.snd_una && self.snd_nxt > self.snd_una)
                .then(|| (self.snd_una, mss.min(self.snd_nxt - self.snd_una)));
        }
        let mut at = self.snd_una;
        for &(l, r) in &self.scoreboard {
            let from = at.max(start);
            if l > from {
                return Some((from, mss.min(l - from)));
            }
            at = r;
        }
        None
    }

    fn retransmission(&self) -> Option<Plan> {
        self.recovery?;
        let (seq, len) = self.next_hole()?;
        let first = self.high_rxt <= self.snd_una;
        if !first && self.pipe() + len > self.cc.window() {
            return None;
        }
        Some(self.data_plan(seq, len))
    }

    /// A data segment from `seq` of at most `len` bytes, with the FIN if it ends there.
    fn data_plan(&self, seq: Seq, len: usize) -> Plan {
        let offset = seq - self.snd_una;
        let len = len.min(self.send.len().saturating_sub(offset));
        let fin = self.fin_at() == Some(seq + len);
        Plan::Data { seq, len, fin }
    }

    /// Payload bytes the next segment may carry: the MSS less the SACK blocks that ride along
    /// (NOP NOP + 8 bytes per block), so no segment outgrows the path's MTU.
    fn current_mss(&self) -> usize {
        if !self.sack_enabled || self.recv.ranges() == 0 {
            return self.mss;
        }
        let options = TcpOptions {
            timestamps: self.ts_enabled.then_some((0, 0)),
            ..TcpOptions::default()
        };
        let blocks = self.recv.ranges().min(sack_capacity(&options));
        self.mss.saturating_sub(4 + 8 * blocks).max(1)
    }

    /// Where this side's FIN goes: after the last byte written, once the application closed.
    fn fin_at(&self) -> Option<Seq> {
        if !self.fin_queued {
            return None;
        }
        Some(self.fin_seq.unwrap_or(self.snd_una + self.send.len()))
    }

    fn new_data(&self) -> Option<Plan> {
        let offset = self.snd_nxt - self.snd_una;
        let unsent = self.send.len().saturating_sub(offset);
        let fin_pending = self.fin_at().is_some_and(|f| self.snd_nxt <= f);
        if unsent == 0 {
            return fin_pending.then_some(Plan::Data {
                seq: self.snd_nxt,
                len: 0,
                fin: true,
            });
        }
        let peer_room = (self.snd_una + self.snd_wnd).since(self.snd_nxt).max(0) as usize;
        let cc_room = self.cc.window().saturating_sub(self.pipe());
        let room = peer_room.min(cc_room);
        let mss = self.current_mss();
        let len = unsent.min(room).min(mss);
        if len == 0 {
            return None;
        }
        let flight = self.snd_nxt - self.snd_una;
        let all = len == unsent;
        // RFC 1122 §4.2.3.4 (sender SWS avoidance) with Nagle's rule.
        let send = len == mss
            || (all && (self.cfg.nodelay || flight == 0 || self.fin_queued))
            || (self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2 && flight == 0)
            || self.snd_nxt < self.snd_max;
        send.then(|| self.data_plan(self.snd_nxt, len))
    }

    fn header_for(&mut self, plan: Plan, now: Instant) -> TcpHeader {
        // Segments without data carry the highest sequence number sent: after a timeout
        // SND.NXT is the go-back-N pointer, and the peer has seen more than that.
        let mut h = TcpHeader {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: self.snd_max,
            ack: self.rcv_nxt,
            flags: Flags::ACK,
            window: 0,
            options: TcpOptions::default(),
        };
        match plan {
            Plan::Rst { seq, aborting } => {
                h.seq = seq;
                h.flags = if aborting {
                    Flags::RST | Flags::ACK
                } else {
                    Flags::RST
                };
                if !aborting {
                    h.ack = Seq(0);
                }
                return h;
            }
            Plan::Syn => {
                h.seq = self.iss;
                h.flags = if self.state == State::SynReceived {
                    Flags::SYN | Flags::ACK
                } else {
                    Flags::SYN
                };
                if self.state == State::SynSent {
                    h.ack = Seq(0);
                }
                let passive = self.state == State::SynReceived;
                h.window = self.cfg.recv_buffer.min(65535) as u16;
                let o = &mut h.options;
                o.mss = Some(self.cfg.mss - if self.local.is_ipv6() { 20 } else { 0 });
                if (passive && self.wscale_enabled) || (!passive && self.cfg.window_scale) {
                    o.window_scale = Some(shift_for(self.cfg.recv_buffer));
                }
                o.sack_permitted = (passive && self.sack_enabled) || (!passive && self.cfg.sack);
                if (passive && self.ts_enabled) || (!passive && self.cfg.timestamps) {
                    o.timestamps =
                        Some((self.tsval(now), if passive { self.ts_recent } else { 0 }));
                }
                return h;
            }
            Plan::Data { seq, len, fin } => {
                h.seq = seq;
                if fin {
                    h.flags |= Flags::FIN;
                }
                if len > 0 && seq + len == self.snd_una + self.send.len() {
                    h.flags |= Flags::PSH;
                }
            }
            Plan::Probe => h.seq = self.snd_una - 1,
            Plan::Ack => {}
        }
        h.window = (self.advertise() >> self.rcv_shift).min(65535) as u16;
        if self.ts_enabled {
            h.options.timestamps = Some((self.tsval(now), self.ts_recent));
        }
        if self.sack_enabled && self.recv.ranges() > 0 {
            let mut ranges = [(0usize, 0usize); 4];
            let n = self.recv.sack_ranges(&mut ranges);
            let cap = sack_capacity(&h.options);
            for &(l, r) in &ranges[..n.min(cap)] {
                h.options.sack.push(self.rcv_nxt + l, self.rcv_nxt + r);
            }
        }
        h
    }

    /// The window to advertise, moving the right edge only in steps worth announcing
    /// (RFC 1122 receiver SWS avoidance) and never to the left.
    fn advertise(&mut self) -> usize {
        let right = self.rcv_nxt + self.recv.window();
        let step = (self.recv.capacity() / 2).min(self.mss);
        // While holes wait to be filled the window stays put, so the sender's duplicate ACKs
        // stay duplicates (RFC 5681 §2 counts only ACKs that leave the window unchanged).
        let holding = self.recv.ranges() > 0;
        if self.rcv_adv < self.rcv_nxt || (!holding && right.since(self.rcv_adv) >= step as i32) {
            self.rcv_adv = right;
        }
        self.rcv_adv.since(self.rcv_nxt).max(0) as usize
    }

    /// Records that `plan` went out.
    fn commit(&mut self, plan: Plan, now: Instant, c: &mut Counters) {
        match plan {
            Plan::Rst { aborting, .. } => {
                self.rst = None;
                c.resets_sent += 1;
                if aborting {
                    self.finish(Events::default());
                }
                return;
            }
            Plan::Syn => {
                if self.snd_max != self.iss {
                    c.retransmits += 1;
                    self.timed = None;
                } else {
                    self.timed = Some((self.iss, now));
                }
                self.snd_nxt = self.iss + 1;
                self.snd_max = self.snd_max.max(self.snd_nxt);
                self.rto_at.get_or_insert(now + self.rtt.rto());
            }
            Plan::Data { seq, len, fin } => {
                let end = seq + len + usize::from(fin);
                if seq < self.snd_max {
                    c.retransmits += 1;
                    if self.timed.is_some_and(|(t, _)| t >= seq) {
                        self.timed = None;
                    }
                } else if self.timed.is_none() {
                    self.timed = Some((seq, now));
                }
                if fin {
                    self.fin_seq = Some(seq + len);
                }
                if self.recovery.is_some() && seq < self.snd_nxt {
                    self.high_rxt = self.high_rxt.max(end);
                } else {
                    self.snd_nxt = self.snd_nxt.max(end);
                }
                let new_data = end > self.snd_max;
                self.snd_max = self.snd_max.max(end);
                self.rto_at.get_or_insert(now + self.rtt.rto());
                self.probe_now = false;
                if self.tlp_due {
                    self.tlp_due = false;
                    self.tlp_sent = true;
                } else if new_data {
                    self.arm_tlp(now);
                }
            }
            Plan::Probe => {
                self.probe_now = false;
                if self.snd_wnd == 0 && self.send.len() > self.snd_nxt - self.snd_una {
                    self.arm_persist(now);
                }
            }
            Plan::Ack => {}
        }
        self.ack_now = false;
        self.owed_acks = self.owed_acks.saturating_sub(1);
        self.delack_at = None;
        self.unacked_bytes = 0;
    }

    /// Arms the tail-loss probe: 2 SRTT after the last new data (at least 10 ms; plus a
    /// delayed ACK's worst case with one segment in flight), before the RTO would fire,
    /// outside loss recovery, once per tail.
    fn arm_tlp(&mut self, now: Instant) {
        let Some(srtt) = self.rtt.srtt() else { return };
        if self.tlp_sent || self.recovery.is_some() || self.snd_una == self.snd_max {
            return;
        }
        // With one segment in flight the receiver may be delaying its ACK (RFC 8985 §7.2).
        let flight = self.snd_max - self.snd_una;
        let delack = if flight <= self.mss {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        };
        let at = now + (srtt * 2 + delack).max(Duration::from_millis(10));
        if self.rto_at.is_none_or(|rto| at < rto) {
            self.tlp_at = Some(at);
        }
    }

    fn arm_persist(&mut self, now: Instant) {
        let wait =
            (self.rtt.rto() * (1 << self.persist_backoffs.min(6))).min(Duration::from_secs(60));
        self.persist_at = Some(now + wait);
    }

    /// Arms the persist timer when data waits, nothing is in flight, and the peer's window is
    /// shut or too small for silly-window avoidance to send into.
    pub fn check_persist(&mut self, now: Instant) {
        let waiting = self.send.len() > self.snd_nxt - self.snd_una;
        if self.is_synchronized()
            && waiting
            && self.snd_nxt == self.snd_una
            && self.persist_at.is_none()
            && self.rto_at.is_none()
            && self.new_data().is_none()
        {
            self.arm_persist(now);
        }
    }

    /// What the persist timer sends: the bytes that fit into a small window (RFC 1122
    /// §4.2.3.4 lets the timer override silly-window avoidance), or a probe into a shut one.
    fn persist_plan(&self) -> Plan {
        let offset = self.snd_nxt - self.snd_una;
        let unsent = self.send.len().saturating_sub(offset);
        let room = (self.snd_una + self.snd_wnd).since(self.snd_nxt).max(0) as usize;
        let len = unsent.min(room).min(self.current_mss());
        if len > 0 {
            self.data_plan(self.snd_nxt, len)
        } else {
            Plan::Probe
        }
    }
}
