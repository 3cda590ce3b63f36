//! Timers: RTO (RFC 6298, with backoff), tail-loss probe (RFC 8985), delayed ACK, persist
//! (zero-window probes), keepalive, TIME_WAIT and FIN_WAIT_2.

use std::time::{Duration, Instant};

use super::{Connection, Events, ORPHAN_RETRIES, State};
use crate::stack::tcp::Counters;

impl Connection {
    /// When [`Connection::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Pairwise, in registers: none is later than any time (booked after every change of a
        // connection, so a few times per segment).
        let earlier = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) => x,
            (None, y) => y,
        };
        let t = earlier(
            earlier(self.rto_at, self.tlp_at),
            earlier(self.delack_at, self.persist_at),
        );
        let t = earlier(t, self.linger_at);
        if self.cfg.keepalive.is_none() {
            return t;
        }
        earlier(t, self.keepalive_at())
    }

    pub(super) fn keepalive_at(&self) -> Option<Instant> {
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
        let sending = [self.rto_at, self.persist_at]
            .into_iter()
            .flatten()
            .any(|t| t <= now);
        if sending && self.orphaned && self.recv.memory_exhausted() {
            // Nobody waits for this data and memory ran out: reset rather than keep trying
            // (Linux's tcp_out_of_resources, TCPAbortOnMemory).
            c.memory_aborts += 1;
            self.abort();
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
            let open = self.recovery.is_none() && self.loss_recover.is_none();
            if self.tlp_end.is_none() && open && self.snd_una != self.snd_max {
                self.tlp_due = true;
                c.tail_loss_probes += 1;
            }
        }
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            // A peer that answers keeps a connection open forever (RFC 1122 §4.2.2.17), one
            // that does not is given up after the retries; an orphan faced with a shut window
            // after a few (Linux's tcp_probe_timer: tcp_retries2, tcp_orphan_retries).
            let given_up = if self.orphaned {
                self.persist_backoffs >= ORPHAN_RETRIES
            } else {
                self.persist_unanswered >= self.cfg.max_retries
            };
            if given_up {
                c.timeouts += 1;
                self.finish(Events::TIMED_OUT);
                return;
            }
            self.probe_now = true;
            self.persist_backoffs += 1;
            self.persist_unanswered += 1;
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

    pub(super) fn on_rto(&mut self, now: Instant, c: &mut Counters) {
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
        self.tlp_end = None;
        // Go back N from SND.UNA, skipping what the peer SACKed: the scoreboard stays (RFC
        // 6675 §5.1 allows it; Linux keeps its SACK marks) — unless the peer reneged on it
        // (the segment at SND.UNA marked SACKed; Linux's tcp_timeout_mark_lost), then it all
        // goes again. Until what was sent before the timeout is acknowledged, no fast recovery
        // (RFC 6582's recover point).
        if self.head_sacked() {
            self.scoreboard.clear();
            c.sack_reneging += 1;
        }
        self.snd_nxt = self.snd_una;
        self.recovery = None;
        if self.is_synchronized() {
            self.loss_recover = Some(self.snd_max);
        }
        self.dupacks = 0;
        self.high_rxt = self.snd_una;
        self.timed = None;
    }

    /// Arms the tail-loss probe: 2 SRTT after the last new data (at least 10 ms; plus a
    /// delayed ACK's worst case with one segment in flight), before the RTO would fire,
    /// outside loss recovery, one probe outstanding at a time. (Linux probes only while
    /// nothing is out of order and leaves the rest to RACK's reordering timer; without RACK,
    /// a probe is what repairs a lost tail that SACKs cannot reveal.)
    pub(super) fn arm_tlp(&mut self, now: Instant) {
        let Some(srtt) = self.rtt.srtt() else { return };
        let recovering = self.recovery.is_some() || self.loss_recover.is_some();
        if self.tlp_end.is_some() || recovering || self.snd_una == self.snd_max {
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

    pub(super) fn arm_persist(&mut self, now: Instant) {
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
}
