//! Output: what the next segment is (RST, SYN, retransmission, new data under the windows and
//! Nagle, probe, ACK), its header and options, and the bookkeeping once it went out.

use std::time::Instant;

use super::{Connection, Events, Plan, State, Transmitted, syn_options};
use crate::{
    stack::tcp::Counters,
    wire::{
        seq::Seq,
        tcp::{Flags, TcpHeader, TcpOptions, sack_capacity},
    },
};

impl Connection {
    /// Hands the segments to send now to `emit`, one call each, until there is nothing more
    /// or `emit` returns false (no room: the segment was not sent and is offered again next
    /// time).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        c: &mut Counters,
        emit: &mut dyn FnMut(&TcpHeader, [&[u8]; 2]) -> bool,
    ) -> Transmitted {
        // Bounded: one call sends at most a window's worth of segments.
        for _ in 0..256 {
            let Some(plan) = self.next_plan() else {
                return Transmitted::Everything;
            };
            let header = self.header_for(plan, now);
            let payload = match plan {
                Plan::Data { seq, len, .. } => self.send.slices(seq - self.snd_una, len),
                _ => [&[][..], &[][..]],
            };
            if !emit(&header, payload) {
                return Transmitted::Refused;
            }
            self.commit(plan, now, c);
        }
        Transmitted::Bounded
    }

    /// True when [`Connection::poll_transmit`] would emit something now.
    pub fn wants_to_transmit(&self) -> bool {
        self.next_plan().is_some()
    }

    pub(super) fn next_plan(&self) -> Option<Plan> {
        if let Some(rst) = self.rst {
            return Some(rst);
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived => {
                let syn_received = self.state == State::SynReceived;
                if self.snd_nxt == self.iss || (syn_received && self.synack_now) {
                    return Some(Plan::Syn);
                }
                // An unacceptable segment in SYN-RECEIVED gets a bare ACK (RFC 9293
                // §3.10.7.4; Linux's tcp_check_req likewise).
                return (syn_received && self.ack_now).then_some(Plan::Ack);
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
            // New data if there is any to send, else the last segment the peer has not
            // SACKed again — if it starts inside the peer's window (else it waits for the
            // window, or the RTO).
            let mss = self.current_mss();
            let end = self.unsacked_tail();
            let last = end - mss.min(end - self.snd_una);
            let seq = last.max(self.snd_una);
            if self.window_admits(seq) {
                return Some(self.data_plan(seq, mss.min(end - last)));
            }
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

    /// True when a segment sent before may go out again from `seq`: it starts inside the
    /// peer's window, or it is the oldest unacknowledged. A peer that closed its window on data
    /// it dropped gets no retransmission beyond it (it would drop it unread); as Linux's
    /// __tcp_retransmit_skb.
    pub(super) fn window_admits(&self, seq: Seq) -> bool {
        seq == self.snd_una || self.window_end().since(seq) > 0
    }

    /// The right edge of the peer's window: SND.UNA + SND.WND.
    fn window_end(&self) -> Seq {
        self.snd_una + self.snd_wnd
    }

    /// A data segment from `seq` of at most `len` bytes, with the FIN if it ends there.
    pub(super) fn data_plan(&self, seq: Seq, len: usize) -> Plan {
        let offset = seq - self.snd_una;
        let len = len.min(self.send.len().saturating_sub(offset));
        let fin = self.fin_at() == Some(seq + len);
        Plan::Data { seq, len, fin }
    }

    /// Payload bytes the next segment may carry: the MSS less the SACK blocks that ride along
    /// (NOP NOP + 8 bytes per block), so no segment outgrows the path's MTU.
    pub(super) fn current_mss(&self) -> usize {
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
    pub(super) fn fin_at(&self) -> Option<Seq> {
        if !self.fin_queued {
            return None;
        }
        Some(self.fin_seq.unwrap_or(self.snd_una + self.send.len()))
    }

    pub(super) fn new_data(&self) -> Option<Plan> {
        // Going back N after a timeout, the peer's SACKed ranges are skipped.
        let (start, sacked_next) = if self.snd_nxt < self.snd_max {
            self.unsacked_from(self.snd_nxt)
        } else {
            (self.snd_nxt, None)
        };
        let offset = start - self.snd_una;
        let unsent = self.send.len().saturating_sub(offset);
        let fin_pending = self.fin_at().is_some_and(|f| start <= f);
        if unsent == 0 {
            return fin_pending.then_some(Plan::Data {
                seq: start,
                len: 0,
                fin: true,
            });
        }
        let peer_room = self.window_end().since(start).max(0) as usize;
        let cc_room = self.cc.window().saturating_sub(self.pipe());
        let room = peer_room.min(cc_room);
        let mss = self.current_mss();
        let mut len = unsent.min(room).min(mss);
        if let Some(sacked) = sacked_next {
            len = len.min(sacked - start);
        }
        if len == 0 {
            return None;
        }
        let flight = self.snd_nxt - self.snd_una;
        let all = len == unsent;
        // RFC 1122 §4.2.3.4 (sender SWS avoidance) with Nagle's rule.
        let send = len == mss
            || (all && (self.cfg.nodelay || flight == 0 || self.fin_queued))
            || (self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2 && flight == 0)
            || start < self.snd_max;
        send.then(|| self.data_plan(start, len))
    }

    /// The sequence number of a segment without data (an ACK, a window update): the highest
    /// sent — after a timeout SND.NXT is the go-back-N pointer, and the peer has seen more than
    /// that — but never beyond the right edge of the peer's window. A peer whose receive memory
    /// ran out drops what we sent past what it acknowledged and closes its window there; a
    /// segment beyond its window it drops unread, ACK field and all (Linux counts it as
    /// BeyondWindow), so our ACKs of its data would never arrive, its sender would wait on
    /// them, its application would never read, and its window never open again. Linux's
    /// tcp_acceptable_seq() makes the same choice.
    fn acceptable_seq(&self) -> Seq {
        let edge = self.window_end();
        if self.snd_max.since(edge) > 0 {
            edge
        } else {
            self.snd_max
        }
    }

    pub(super) fn header_for(&mut self, plan: Plan, now: Instant) -> TcpHeader {
        let mut h = TcpHeader {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: self.acceptable_seq(),
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
                h.window = self.syn_window() as u16;
                let (wscale, sack, ts) = if passive {
                    (self.wscale_enabled, self.sack_enabled, self.ts_enabled)
                } else {
                    (self.cfg.window_scale, self.cfg.sack, self.cfg.timestamps)
                };
                let ts = ts.then(|| (self.tsval(now), if passive { self.ts_recent } else { 0 }));
                h.options = syn_options(&self.cfg, self.local.is_ipv6(), wscale, sack, ts);
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
        h.window = self.window_field();
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
    pub(super) fn advertise(&mut self) -> usize {
        let right = self.rcv_nxt + self.receive_window();
        let step = (self.recv.capacity() / 2).min(self.mss);
        // While holes wait to be filled the window stays put, so the sender's duplicate ACKs
        // stay duplicates (RFC 5681 §2 counts only ACKs that leave the window unchanged).
        let holding = self.recv.ranges() > 0;
        if self.rcv_adv < self.rcv_nxt || (!holding && right.since(self.rcv_adv) >= step as i32) {
            self.rcv_adv = right;
        }
        self.rcv_adv.since(self.rcv_nxt).max(0) as usize
    }

    /// The window field: the window to advertise in units of our scale, rounded up so the
    /// edge never recedes by what truncation would cut (Linux's tcp_select_window aligns the
    /// same way); the edge it announces is what segments are judged by from now on. In
    /// SYN-RECEIVED the SYN-ACK's window is only shifted, as Linux's request socket does.
    fn window_field(&mut self) -> u16 {
        let window = self.advertise();
        let field = if self.state == State::SynReceived {
            window >> self.rcv_shift
        } else {
            window.div_ceil(1 << self.rcv_shift)
        }
        .min(65535);
        self.rcv_adv = self.rcv_adv.max(self.rcv_nxt + (field << self.rcv_shift));
        field as u16
    }

    /// Records that `plan` went out.
    pub(super) fn commit(&mut self, plan: Plan, now: Instant, c: &mut Counters) {
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
                self.synack_now = false;
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
                    self.tlp_end = Some(self.snd_max);
                    self.tlp_retrans = !new_data;
                    self.tlp_seq = seq;
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

    /// What the persist timer sends: the bytes that fit into a small window (RFC 1122
    /// §4.2.3.4 lets the timer override silly-window avoidance), or a probe into a shut one.
    pub(super) fn persist_plan(&self) -> Plan {
        let offset = self.snd_nxt - self.snd_una;
        let unsent = self.send.len().saturating_sub(offset);
        let room = self.window_end().since(self.snd_nxt).max(0) as usize;
        let len = unsent.min(room).min(self.current_mss());
        if len > 0 {
            self.data_plan(self.snd_nxt, len)
        } else {
            Plan::Probe
        }
    }
}
