//! ICMP errors about this connection's segments, as Linux takes them (tcp_v4_err,
//! tcp_v6_err): believed only for a sequence number in flight (RFC 5927 §4.1); a smaller path
//! MTU lowers the MSS and sends what was in flight again in the new size (RFC 1191, RFC 8201;
//! Linux's tcp_simple_retransmit, without a congestion response); any other error ends a
//! connection still opening and is only noted (a soft error, RFC 1122 §4.2.3.9) once it is
//! established.

use std::time::Instant;

use super::{Connection, Events, State};
use crate::{stack::tcp::Counters, wire::icmp::Problem, wire::seq::Seq};

/// The smallest path MTUs believed: Linux's ip_rt_min_pmtu for IPv4 (552), the IPv6 minimum
/// link MTU (RFC 8200). A report below is taken as this much.
const MIN_PMTU_V4: u32 = 552;
const MIN_PMTU_V6: u32 = 1280;

impl Connection {
    /// An ICMP error quoting our segment with sequence number `seq`.
    pub fn handle_icmp(&mut self, problem: Problem, seq: Seq, now: Instant, c: &mut Counters) {
        let opening = matches!(self.state, State::SynSent | State::SynReceived);
        let in_flight = if opening {
            seq == self.iss
        } else {
            seq >= self.snd_una && seq < self.snd_max
        };
        if !in_flight || self.state == State::Closed {
            c.icmp_out_of_window += 1;
            return;
        }
        c.icmp_errors += 1;
        match problem {
            Problem::PacketTooBig { mtu } => self.path_mtu(mtu, now, c),
            _ if self.state == State::SynSent => {
                // The destination cannot be reached: the connect fails (Linux: ECONNREFUSED,
                // EHOSTUNREACH...).
                self.finish(Events::UNREACHABLE);
            }
            Problem::Unreachable { hard: true } if self.state == State::SynReceived => {
                // Linux's tcp_req_err keeps the request for these.
            }
            _ if self.state == State::SynReceived => {
                // Linux's tcp_req_err: the half-open connection is dropped quietly.
                self.finish(Events::default());
            }
            _ => self.soft_error = Some(problem),
        }
    }

    /// The last ICMP error an established connection noted (Linux's sk_err_soft).
    pub fn soft_error(&self) -> Option<Problem> {
        self.soft_error
    }

    fn path_mtu(&mut self, mtu: u32, now: Instant, c: &mut Counters) {
        if !self.is_synchronized() {
            // A SYN is small; the MSS is settled when the handshake completes.
            return;
        }
        let (floor, headers) = if self.remote.is_ipv6() {
            (MIN_PMTU_V6, 40 + 20)
        } else {
            (MIN_PMTU_V4, 20 + 20)
        };
        let options = if self.ts_enabled { 12 } else { 0 };
        let mss = mtu.max(floor) as usize - headers - options;
        if mss >= self.mss {
            // Only ever lowered: raising it again would need probing (RFC 4821).
            return;
        }
        self.mss = mss;
        self.cc.set_mss(mss);
        c.pmtu_reductions += 1;
        if self.snd_max > self.snd_una {
            // Everything in flight went out too big for the path: send it again, cut to the
            // new size. Not a congestion signal: the window stays.
            self.snd_nxt = self.snd_una;
            self.high_rxt = self.snd_una;
            self.timed = None;
            self.tlp_at = None;
            self.rto_at = Some(now + self.rtt.rto());
        }
    }
}
