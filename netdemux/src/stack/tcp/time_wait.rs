//! TIME_WAIT as a small record per 4-tuple, not the connection and its buffers, as Linux keeps
//! it (`tcp_timewait_state_process`): it answers late segments with an ACK (at most every
//! 500 ms), takes a newer SYN as a new connection whose ISN lies above the old sequence space,
//! ends on a RST at the expected sequence number, and expires 60 s after the last sign of the
//! peer. The table has its own cap (Linux's `tcp_max_tw_buckets`): past it a closing
//! connection skips TIME_WAIT, counted.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::stack::hash::KeyedMap;
use crate::wire::{
    seq::Seq,
    tcp::{Flags, TcpHeader, TcpOptions},
};

/// What a TIME_WAIT record remembers of its connection.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Our next sequence number (after our FIN).
    pub snd_nxt: Seq,
    /// The peer's next sequence number (after its FIN).
    pub rcv_nxt: Seq,
    /// The window field we last sent.
    pub window: u16,
    /// Timestamps: (TS.Recent, our clock's offset), if the connection used them.
    pub timestamps: Option<(u32, u32)>,
    /// When the record ends.
    pub expires: Instant,
    /// When an ACK last went out (for the 500 ms limit).
    pub last_ack: Option<Instant>,
}

/// What to do with a segment for a TIME_WAIT 4-tuple.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more (answered or not, as the record decided).
    Done,
    /// A newer SYN: the record is gone; open a new connection with this ISN.
    Reopen(Seq),
}

type Key = (SocketAddr, SocketAddr);

/// The TIME_WAIT records of one endpoint.
#[derive(Debug, Default)]
pub struct TimeWaits {
    records: KeyedMap<Key, Record>,
    /// Expiry times in the order they were set (a later reset leaves a stale entry behind).
    order: VecDeque<(Instant, Key)>,
}

/// How long answers from a record are at least apart (Linux's tcp_invalid_ratelimit).
const ANSWER_INTERVAL: Duration = Duration::from_millis(500);

impl TimeWaits {
    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// True when `local` <-> `remote` is in TIME_WAIT.
    pub fn contains(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.records.contains_key(&(local, remote))
    }

    /// Puts `local` <-> `remote` in TIME_WAIT until `record.expires`.
    pub fn insert(&mut self, local: SocketAddr, remote: SocketAddr, record: Record) {
        self.order.push_back((record.expires, (local, remote)));
        self.records.insert((local, remote), record);
    }

    /// The earliest expiry (perhaps a stale one: [`TimeWaits::expire`] then finds nothing).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(t, _)| *t)
    }

    /// Ends the records whose time is up.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.order.front() {
            if t > now {
                break;
            }
            self.order.pop_front();
            if self.records.get(&key).is_some_and(|r| r.expires <= now) {
                self.records.remove(&key);
            }
        }
    }

    /// A segment `remote` -> `local` for a record: answers go to `answer`.
    #[allow(clippy::too_many_arguments)]
    pub fn input(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        h: &TcpHeader,
        payload_len: usize,
        time_wait: Duration,
        clock_base: Instant,
        now: Instant,
        answer: &mut impl FnMut(TcpHeader),
    ) -> Verdict {
        let key = (local, remote);
        let Some(r) = self.records.get_mut(&key) else {
            return Verdict::Done;
        };
        let (rst, syn, ack) = (
            h.flags.contains(Flags::RST),
            h.flags.contains(Flags::SYN),
            h.flags.contains(Flags::ACK),
        );
        let tsval = h.options.timestamps.map(|(v, _)| v);
        let paws_reject = matches!(
            (r.timestamps, tsval),
            (Some((recent, _)), Some(v)) if (v.wrapping_sub(recent) as i32) < 0
        ) && !rst;
        let bare = payload_len == 0 && !syn && !h.flags.contains(Flags::FIN);
        if !paws_reject && h.seq == r.rcv_nxt && (bare || rst) {
            // In window: a RST ends TIME_WAIT (tcp_rfc1337 = 0); a bare ACK restarts it.
            if rst {
                self.records.remove(&key);
                return Verdict::Done;
            }
            r.expires = now + time_wait;
            self.order.push_back((r.expires, key));
            if let (Some((recent, _)), Some(v)) = (&mut r.timestamps, tsval) {
                *recent = v;
            }
            return Verdict::Done;
        }
        let newer = h.seq > r.rcv_nxt
            || matches!((r.timestamps, tsval), (Some((recent, _)), Some(v)) if (v.wrapping_sub(recent) as i32) > 0);
        if syn && !rst && !ack && !paws_reject && newer {
            let isn = r.snd_nxt + 65537;
            self.records.remove(&key);
            return Verdict::Reopen(isn);
        }
        if rst {
            return Verdict::Done;
        }
        if paws_reject || ack {
            r.expires = now + time_wait;
            self.order.push_back((r.expires, key));
        }
        // Out of window: an ACK, at most every 500 ms.
        if r.last_ack
            .is_some_and(|t| now.saturating_duration_since(t) < ANSWER_INTERVAL)
        {
            return Verdict::Done;
        }
        r.last_ack = Some(now);
        let timestamps = r.timestamps.map(|(recent, offset)| {
            let val =
                (now.saturating_duration_since(clock_base).as_millis() as u32).wrapping_add(offset);
            (val, recent)
        });
        answer(TcpHeader {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: r.snd_nxt,
            ack: r.rcv_nxt,
            flags: Flags::ACK,
            window: r.window,
            options: TcpOptions {
                timestamps,
                ..TcpOptions::default()
            },
        });
        Verdict::Done
    }
}
