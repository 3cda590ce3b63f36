//! Input: a segment from the peer — acceptance, RST/SYN validation (RFC 5961), PAWS, the
//! handshake's last steps, ACK processing (RTT samples, window updates, entering recovery),
//! data into the reassembly buffer, and the peer's FIN.

use std::time::{Duration, Instant};

use super::{Connection, Events, OOW_ACK_INTERVAL, Plan, State};
use crate::{
    stack::tcp::{Counters, assembler::Refused, time_wait},
    wire::{
        seq::Seq,
        tcp::{Flags, SackBlocks, TcpHeader},
    },
};

impl Connection {
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
                self.synack_now = true;
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
            if !self.answer_rate_limited(payload.is_empty() || syn, now) {
                self.ack_now = true;
            }
            return;
        }
        if !self.acceptable(h.seq, seg_len) {
            if !rst && !syn && self.old_duplicate(h) {
                // A retransmission of what already arrived: the peer's, where it is now (a
                // gateway that changed its MAC resends from the new one).
                self.accepted_segments += 1;
            }
            // Answered with an ACK, except RSTs; pure ACKs and SYNs at most every 500 ms, so
            // two sides that disagree cannot keep each other busy.
            if !rst && !self.answer_rate_limited(seg_len == 0 || syn, now) {
                self.ack_now = true;
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
                // After the peer's FIN its side was complete: reading ends as it would have
                // (Linux: SOCK_DONE makes read return 0 before a later reset's error), and the
                // connection ends closed, not reset.
                self.finish(if self.fin_received {
                    Events::CLOSED
                } else {
                    Events::RESET
                });
            } else {
                self.challenge_ack(now, c);
            }
            return;
        }
        if syn {
            // RFC 5961 §4: a SYN inside the window is answered with a challenge ACK.
            self.challenge_ack(now, c);
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
        if h.ack < self.snd_una - self.max_snd_wnd {
            // RFC 5961 §5.2: an ACK older than the largest window the peer ever offered is a
            // blind injection, not a late segment: challenge, and drop its data.
            self.challenge_ack(now, c);
            return;
        }
        // In the window, acknowledging what was sent: a segment of this connection.
        self.accepted_segments += 1;
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
            let at = h.seq + payload.len();
            self.peer_fin = Some(at);
            if at > self.rcv_nxt {
                // Ahead of missing data: an out-of-order segment, acknowledged at once (RFC
                // 5681 §4.2), so the sender learns of the hole.
                self.ack_now = true;
            }
        }
        self.check_peer_fin(now);
    }

    /// Linux's `tcp_oow_rate_limited`: true (skip the answer) when `limited` — the segment is a
    /// pure ACK or a SYN, not data — and an answer of this kind went out less than 500 ms ago
    /// (`tcp_invalid_ratelimit`); otherwise the answer goes, and limited ones are timed.
    fn answer_rate_limited(&mut self, limited: bool, now: Instant) -> bool {
        if !limited {
            return false;
        }
        let recently = self
            .last_oow_ack
            .is_some_and(|t| now.saturating_duration_since(t) < OOW_ACK_INTERVAL);
        if !recently {
            self.last_oow_ack = Some(now);
        }
        recently
    }

    /// A challenge ACK (RFC 5961), at most one per 500 ms on the clock the other answers share
    /// (RFC 5961 §7; Linux's `tcp_send_challenge_ack`).
    fn challenge_ack(&mut self, now: Instant, c: &mut Counters) {
        if !self.answer_rate_limited(true, now) {
            c.challenge_acks += 1;
            self.ack_now = true;
        }
    }

    /// Whether a segment is acceptable, as Linux decides it (`tcp_sequence`): it must not lie
    /// wholly before RCV.NXT and must start at or before the window's right edge. RFC 9293's
    /// stricter table drops the ACKs of segments that arrive while the window is shut, which
    /// the RFC itself says to make allowance for; here their ACKs count and any data beyond the
    /// window is cut off by the receive buffer.
    pub(super) fn acceptable(&self, seq: Seq, len: usize) -> bool {
        let wnd = self
            .receive_window()
            .max(self.rcv_adv.since(self.rcv_nxt).max(0) as usize);
        let starts_in_time = seq.since(self.rcv_nxt) <= wnd as i32;
        let not_old = if len == 0 {
            seq >= self.rcv_nxt
        } else {
            seq + len > self.rcv_nxt
        };
        starts_in_time && not_old
    }

    /// True for a segment that starts less than a window below RCV.NXT and acknowledges what
    /// was sent (RFC 5961's acceptable ACK range): an old duplicate, which only the peer (or
    /// someone on its path) can produce.
    fn old_duplicate(&self, h: &TcpHeader) -> bool {
        let wnd = self.receive_window().max(65535) as i32;
        let behind = self.rcv_nxt.since(h.seq);
        let ack_ok = h.flags.contains(Flags::ACK)
            && h.ack <= self.snd_max
            && h.ack >= self.snd_una - self.max_snd_wnd;
        (0..=wnd).contains(&behind) && ack_ok
    }

    pub(super) fn on_syn_sent(&mut self, h: &TcpHeader, now: Instant, c: &mut Counters) {
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
        // The right edge of the window our SYN offered.
        self.rcv_adv = self.rcv_nxt + self.syn_window();
        self.last_heard = now;
        if ack_ok {
            self.accepted_segments += 1;
            self.snd_wl2 = h.ack;
            let sample = self.rtt_sample(h, now);
            if let Some(rtt) = sample {
                self.rtt.sample(rtt);
            }
            self.snd_una = h.ack;
            self.syn_acked = true;
            self.established(now);
            self.ack_now = true;
        } else {
            // Simultaneous open: answer with SYN-ACK (same ISS).
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
        }
    }

    pub(super) fn established(&mut self, now: Instant) {
        self.state = if self.fin_queued {
            State::FinWait1
        } else {
            State::Established
        };
        self.retries = 0;
        // The edge the SYN or SYN-ACK offered stays: a window never shrinks (RFC 9293 §3.8.6).
        self.rcv_adv = self.rcv_adv.max(self.rcv_nxt);
        self.events |= Events::CONNECTED | Events::WRITABLE;
        if self.snd_una == self.snd_max {
            self.rto_at = None;
        }
        self.last_heard = now;
    }

    pub(super) fn rtt_sample(&mut self, h: &TcpHeader, now: Instant) -> Option<Duration> {
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

    pub(super) fn process_ack(
        &mut self,
        h: &TcpHeader,
        payload_len: usize,
        now: Instant,
        c: &mut Counters,
    ) {
        if self.ts_enabled
            && h.seq <= self.rcv_nxt
            && let Some((tsval, _)) = h.options.timestamps
        {
            self.ts_recent = tsval;
        }
        // Any ACK answers the persist probes (Linux resets icsk_probes_out).
        self.persist_unanswered = 0;
        let new_wnd = usize::from(h.window) << self.snd_shift;
        let flight_before = self.snd_max - self.snd_una;
        let una_before = self.snd_una;
        let sacked_before = self.sacked_bytes();
        let dsack = self
            .sack_enabled
            .then(|| dsack(&h.options.sack, h.ack))
            .flatten();
        if self.sack_enabled {
            self.update_scoreboard(&h.options.sack, h.ack);
        }
        if h.ack > self.snd_una {
            let acked = h.ack - self.snd_una;
            let mut data = acked;
            if !self.syn_acked {
                // Our SYN: once. (SND.UNA == ISS says nothing after 2^32 bytes.)
                data -= 1;
                self.syn_acked = true;
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
            if self.loss_recover.is_some_and(|point| self.snd_una >= point) {
                self.loss_recover = None;
            }
            self.rto_at = (self.snd_una != self.snd_max).then(|| now + self.rtt.rto());
            if self.head_sacked() {
                // The peer acknowledged up to data it had SACKed, not past it: it dropped what
                // it SACKed (RFC 2018 §8 lets it; Linux prunes its out-of-order queue when its
                // receive memory runs out). Skipping that data would leave a hole only the
                // peer sees. As Linux's tcp_check_sack_reneging: the timeout comes soon, and
                // forgets the SACKs.
                let soon = self.rtt.srtt().unwrap_or_default() / 16;
                self.rto_at = Some(now + soon.max(Duration::from_millis(10)));
            }
            self.tlp_at = None;
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
        let news = h.ack > una_before || self.sacked_bytes() > sacked_before;
        self.tlp_episode(h.ack, dsack, news, flight_before, now);
        // After a tail-loss probe, a SACK means the segments before it were lost.
        let probed = self.tlp_end.is_some() && self.sack_enabled && !self.scoreboard.is_empty();
        let open = self.recovery.is_none() && self.loss_recover.is_none();
        if open && self.is_synchronized() && (self.loss_detected() || probed) {
            self.tlp_at = None;
            self.recovery = Some(self.snd_max);
            self.cc
                .on_congestion_event(self.snd_max - self.snd_una, now);
            self.high_rxt = self.snd_una;
            self.timed = None;
            c.fast_retransmits += 1;
        }
        if h.ack > una_before {
            self.arm_tlp(now);
        }
    }

    /// RFC 8985 §7.4.2 (Linux's tcp_process_tlp_ack): once the ACKs reach the probe's end,
    /// decide whether it repaired a loss. `dsack` is the ACK's D-SACK block, `news` whether
    /// it acknowledged or SACKed anything new.
    fn tlp_episode(
        &mut self,
        ack: Seq,
        dsack: Option<(Seq, Seq)>,
        news: bool,
        flight: usize,
        now: Instant,
    ) {
        let Some(end) = self.tlp_end else { return };
        if ack < end {
            return;
        }
        let probe_dsacked = dsack.is_some_and(|(l, r)| l <= self.tlp_seq && r > self.tlp_seq);
        if !self.tlp_retrans || probe_dsacked {
            // New data probed, or the original and the probe both arrived: no loss.
            self.tlp_end = None;
        } else if ack > end {
            // The probe's ACK came without a D-SACK of the original: the original was lost
            // and the probe repaired it. That is a congestion signal.
            self.cc.on_congestion_event(flight, now);
            self.tlp_end = None;
        } else if !news {
            // A pure duplicate ACK: the original and the probe both arrived.
            self.tlp_end = None;
        }
    }

    pub(super) fn receive_data(
        &mut self,
        seq: Seq,
        payload: &[u8],
        now: Instant,
        c: &mut Counters,
    ) {
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
        // What we offered: no more is stored, however much room the buffer's limit has.
        let room = (self.rcv_adv.since(self.rcv_nxt).max(0) as usize).max(self.receive_window());
        if offset + data.len() > room {
            // Some of it lies beyond the window: tell the sender where the window is.
            self.ack_now = true;
        }
        let data = &data[..data.len().min(room.saturating_sub(offset))];
        let had_gaps = self.recv.ranges() > 0;
        let inserted = self.recv.insert(offset, data);
        if self.recv.memory_cuts() > self.memory_cuts {
            // The memory budget had no room: what was cut comes again; say where we are.
            c.memory_drops += self.recv.memory_cuts() - self.memory_cuts;
            self.memory_cuts = self.recv.memory_cuts();
            self.ack_now = true;
        }
        match inserted {
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
            Err(Refused::NoMemory) => {}
            Err(Refused::TooManyRanges) => {
                c.out_of_order_dropped += 1;
                self.ack_now = true;
            }
        }
    }

    pub(super) fn check_peer_fin(&mut self, now: Instant) {
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

    pub(super) fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.linger_at = Some(now + self.cfg.time_wait);
        self.rto_at = None;
        self.persist_at = None;
        self.delack_at = None;
    }

    /// What TIME_WAIT keeps of this connection (in TIME_WAIT): the endpoint moves it to its
    /// TIME_WAIT table and lets the connection and its buffers go.
    pub fn time_wait_record(&self, now: Instant) -> time_wait::Record {
        let window = self.rcv_adv.since(self.rcv_nxt).max(0) as usize;
        time_wait::Record {
            snd_nxt: self.snd_max,
            rcv_nxt: self.rcv_nxt,
            window: (window >> self.rcv_shift).min(65535) as u16,
            timestamps: self.ts_enabled.then_some((self.ts_recent, self.ts_offset)),
            expires: self.linger_at.unwrap_or(now + self.cfg.time_wait),
            last_ack: self.last_oow_ack,
        }
    }
}

/// The D-SACK block of an ACK, if it has one (RFC 2883 §4): the first block lies below the
/// cumulative ACK, or inside the second block.
fn dsack(blocks: &SackBlocks, ack: Seq) -> Option<(Seq, Seq)> {
    let b = blocks.as_slice();
    let &(l, r) = b.first()?;
    let inside_second = b.get(1).is_some_and(|&(l2, r2)| l >= l2 && r <= r2);
    (r <= ack || inside_second).then_some((l, r))
}
