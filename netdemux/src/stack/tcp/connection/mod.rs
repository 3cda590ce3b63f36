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
//!
//! This file holds the state and the application's side; the protocol's parts are in
//! [`input`] (segments from the peer), [`output`] (segments to send), [`recovery`] (SACK
//! scoreboard and loss recovery) and [`timers`].

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

mod icmp;
mod input;
mod output;
mod recovery;
mod timers;

use std::sync::Arc;

use super::{
    Seq,
    assembler::RecvBuffer,
    congestion::{Algorithm, CongestionControl},
    memory::MemoryBudget,
    rtt::RttEstimator,
    send_buffer::SendBuffer,
};
use crate::wire::tcp::{TcpHeader, TcpOptions};

/// How [`Connection::poll_transmit`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmitted {
    /// Everything due went out: the connection wants to transmit nothing more until something
    /// changes it.
    Everything,
    /// One call's bound was reached: more may be due.
    Bounded,
    /// `emit` had no room for a segment.
    Refused,
}

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
    /// An ICMP error said the peer cannot be reached (while connecting).
    pub const UNREACHABLE: Events = Events(128);

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

/// What the endpoint gives a new connection.
#[derive(Clone, Debug)]
pub struct Start {
    /// The initial send sequence number (RFC 6528).
    pub iss: Seq,
    /// Now.
    pub now: Instant,
    /// The endpoint's clock origin (timestamps count milliseconds from it).
    pub clock_base: Instant,
    /// This connection's timestamp offset (RFC 7323 §5.4).
    pub ts_offset: u32,
    /// The memory its buffers charge.
    pub budget: Arc<MemoryBudget>,
}

/// The receive window a connection starts with, before autotuning grows it (Linux starts near
/// 64 KiB too).
const INITIAL_WINDOW: usize = 64 * 1024;
/// Unanswered zero-window probes before giving up (Linux's tcp_retries2 applies too).
const ORPHAN_RETRIES: u32 = 8;

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
    /// Our SYN has been acknowledged.
    syn_acked: bool,
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
    /// The window autotuning aims at (Linux's rcvq_space): grows with what the application
    /// reads per round trip, up to the buffer's limit.
    rcv_target: usize,
    /// Bytes the application read since `rcv_mark`.
    rcv_copied: usize,
    /// When the current measurement of the application's reading began.
    rcv_mark: Instant,
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
    /// RFC 8985's TLP.end_seq: SND.MAX when a probe went out, until its episode ends.
    tlp_end: Option<Seq>,
    /// The probe was a retransmission (of the segment starting at `tlp_seq`), not new data.
    tlp_retrans: bool,
    /// Where the retransmitted probe started.
    tlp_seq: Seq,
    /// The segment being timed without timestamps (Karn: never a retransmitted one).
    timed: Option<(Seq, Instant)>,
    retries: u32,
    cc: Box<dyn CongestionControl>,
    dupacks: u32,
    /// In loss recovery until SND.UNA reaches this point.
    recovery: Option<Seq>,
    /// After a retransmission timeout, RFC 6582's recover point (SND.MAX then): until SND.UNA
    /// passes it, duplicate ACKs and SACKs start no fast recovery (Linux's Loss state).
    loss_recover: Option<Seq>,
    /// Everything below this was retransmitted in the current recovery.
    high_rxt: Seq,
    /// SACKed ranges above SND.UNA, sorted and disjoint.
    scoreboard: Vec<(Seq, Seq)>,

    ack_now: bool,
    /// The peer's SYN came again in SYN-RECEIVED: answer with the SYN-ACK again.
    synack_now: bool,
    /// When an unacceptable bare ACK was last answered.
    last_oow_ack: Option<Instant>,
    /// Duplicate ACKs owed: one per out-of-order segment (RFC 5681 §4.2), even when a batch
    /// of them is processed before anything is sent.
    owed_acks: u32,
    unacked_bytes: usize,
    delack_at: Option<Instant>,
    persist_at: Option<Instant>,
    persist_backoffs: u32,
    /// Persist probes the peer has not answered (any ACK answers; Linux's icsk_probes_out).
    persist_unanswered: u32,
    /// The application let go of the connection (closed for good, Linux's orphan): zero-window
    /// probing gives up after [`ORPHAN_RETRIES`].
    orphaned: bool,
    /// The receive buffer's memory cuts already counted.
    memory_cuts: u64,
    probe_now: bool,
    last_heard: Instant,
    keepalive_sent: u32,
    /// TIME_WAIT or FIN_WAIT_2 ends at this time.
    linger_at: Option<Instant>,
    rst: Option<Plan>,
    /// The last ICMP error noted while established (Linux's sk_err_soft).
    soft_error: Option<crate::wire::icmp::Problem>,
    /// Segments taken as this connection's: in the window, acknowledging what was sent (or
    /// the SYN-ACK of our SYN). Where it came from may be trusted.
    accepted_segments: u64,
    events: Events,
}

/// A timestamp value (RFC 7323): milliseconds since `clock_base`, plus the connection's
/// `offset`.
pub(crate) fn timestamp(clock_base: Instant, offset: u32, now: Instant) -> u32 {
    (now.saturating_duration_since(clock_base).as_millis() as u32).wrapping_add(offset)
}

/// The options of a SYN or SYN-ACK: our MSS, and the window scale, SACK-permitted and
/// timestamps where offered (a SYN-ACK offers only what the SYN did).
pub(crate) fn syn_options(
    cfg: &Config,
    ipv6: bool,
    wscale: bool,
    sack: bool,
    timestamps: Option<(u32, u32)>,
) -> TcpOptions {
    TcpOptions {
        mss: Some(cfg.mss - if ipv6 { 20 } else { 0 }),
        window_scale: wscale.then(|| shift_for(cfg.recv_buffer)),
        sack_permitted: sack,
        timestamps,
        ..TcpOptions::default()
    }
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
    fn new(local: SocketAddr, remote: SocketAddr, cfg: Config, start: Start) -> Connection {
        let Start {
            iss,
            now,
            clock_base,
            ts_offset,
            budget,
        } = start;
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
            // Buffers allocate as bytes arrive or are written, so a handshake (or a SYN
            // flood) costs no buffer memory.
            send: SendBuffer::new(cfg.send_buffer, budget.clone()),
            syn_acked: false,
            fin_queued: false,
            fin_seq: None,
            irs: Seq(0),
            rcv_nxt: Seq(0),
            rcv_shift: 0,
            rcv_adv: Seq(0),
            recv: RecvBuffer::with_budget(cfg.recv_buffer, cfg.max_ooo_ranges, budget),
            rcv_target: cfg.recv_buffer.min(INITIAL_WINDOW),
            rcv_copied: 0,
            rcv_mark: now,
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
            tlp_end: None,
            tlp_retrans: false,
            tlp_seq: iss,
            timed: None,
            retries: 0,
            cc: cfg.congestion.build(mss),
            dupacks: 0,
            recovery: None,
            loss_recover: None,
            high_rxt: iss,
            scoreboard: Vec::with_capacity(SCOREBOARD_RANGES),
            ack_now: false,
            synack_now: false,
            last_oow_ack: None,
            owed_acks: 0,
            unacked_bytes: 0,
            delack_at: None,
            persist_at: None,
            persist_backoffs: 0,
            persist_unanswered: 0,
            orphaned: false,
            memory_cuts: 0,
            probe_now: false,
            last_heard: now,
            keepalive_sent: 0,
            linger_at: None,
            rst: None,
            soft_error: None,
            accepted_segments: 0,
            events: Events::default(),
        }
    }

    /// An active open to `remote` from `local`: the SYN goes out on the next
    /// [`Connection::poll_transmit`].
    pub fn connect(local: SocketAddr, remote: SocketAddr, cfg: Config, start: Start) -> Connection {
        let mut c = Connection::new(local, remote, cfg, start);
        c.state = State::SynSent;
        c
    }

    /// A passive open answering `syn` (a SYN without ACK that a listener accepted): the
    /// SYN-ACK goes out on the next [`Connection::poll_transmit`].
    pub fn accept(
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpHeader,
        cfg: Config,
        start: Start,
    ) -> Connection {
        let mut c = Connection::new(local, remote, cfg, start);
        c.state = State::SynReceived;
        c.irs = syn.seq;
        c.rcv_nxt = syn.seq + 1;
        c.negotiate(syn);
        c.rcv_adv = c.rcv_nxt + c.syn_window();
        c
    }

    /// A passive open whose SYN-ACK went out as a SYN cookie: `syn` is the SYN the cookie ACK
    /// stands for (its options what the cookie kept), `start.iss` the cookie. The connection
    /// waits in SYN-RECEIVED for that ACK, as if it had sent the SYN-ACK itself.
    pub fn from_cookie(
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpHeader,
        cfg: Config,
        start: Start,
    ) -> Connection {
        let now = start.now;
        let mut c = Connection::accept(local, remote, syn, cfg, start);
        c.snd_nxt = c.iss + 1;
        c.snd_max = c.snd_nxt;
        // Should the ACK that made it not complete the handshake (PAWS, say), the SYN-ACK is
        // sent again and the handshake times out like any other.
        c.rto_at = Some(now + c.rtt.rto());
        c
    }

    /// Gives up a handshake after at most `n` retransmitted SYN-ACKs (a listener under
    /// pressure shortens them, as Linux's reqsk_timer_handler does).
    pub fn limit_syn_retries(&mut self, n: u32) {
        self.cfg.syn_retries = self.cfg.syn_retries.min(n);
    }

    /// The window our SYN or SYN-ACK offers (never scaled, RFC 7323 §2.2).
    fn syn_window(&self) -> usize {
        self.cfg.recv_buffer.min(65535)
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

    /// Segments taken as this connection's so far (see the field).
    pub fn accepted_segments(&self) -> u64 {
        self.accepted_segments
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

    /// Queues all of `bytes`, or nothing (false) when they do not fit now (a whole answer,
    /// never half of one).
    pub fn send_all(&mut self, bytes: &[u8]) -> bool {
        !self.fin_queued && self.can_send() && self.send.write_all(bytes)
    }

    /// The application let go of the connection for good (Linux's orphan): probing a shut
    /// window gives up after a few tries instead of waiting for the peer forever.
    pub fn set_orphaned(&mut self) {
        self.orphaned = true;
    }

    /// The window to offer now: what autotuning aims at less what waits for the application,
    /// within the buffer's limit; under memory pressure no more than the room already
    /// allocated, or four segments (Linux clamps rcv_ssthresh to 4 MSS then).
    pub fn receive_window(&self) -> usize {
        let readable = self.recv.readable();
        let window = self
            .rcv_target
            .min(self.recv.capacity())
            .saturating_sub(readable);
        if self.recv.under_pressure() {
            let room = self.recv.allocated().saturating_sub(readable);
            return window.min(room.max(4 * self.mss));
        }
        window
    }

    /// Receive-window autotuning (Linux's tcp_rcv_space_adjust): once per round trip, if the
    /// application read more than ever before in one, the window aims at twice that plus room
    /// for the sender's slow start (16 segments), up to the buffer's limit.
    pub fn tune_receive_window(&mut self, now: Instant) {
        let round = self
            .rtt
            .srtt()
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_millis(1));
        // Not yet a round since the mark (and a mark past the clock's end never is).
        if self.rcv_mark.checked_add(round).is_none_or(|due| now < due) {
            return;
        }
        let copied = std::mem::take(&mut self.rcv_copied);
        self.rcv_mark = now;
        let want = 2 * copied + 16 * self.mss;
        if want > self.rcv_target && !self.recv.under_pressure() {
            self.rcv_target = want.min(self.recv.capacity());
        }
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

    /// Sends a window update when reading opened the window enough to matter — not once the
    /// peer's FIN arrived: it sends no more, and an ACK to a peer that has closed draws a RST
    /// (Linux's tcp_cleanup_rbuf likewise stops after RCV_SHUTDOWN).
    fn after_read(&mut self, n: usize) {
        self.rcv_copied += n;
        if n == 0 || !self.is_synchronized() || self.fin_received {
            return;
        }
        let right = self.rcv_nxt + self.receive_window();
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
        timestamp(self.clock_base, self.ts_offset, now)
    }
}
