//! Which MAC address to send to: a bounded cache of what the kernel's neighbour table and the
//! peers' own frames said, and a small queue of sends that wait for an answer (sans-IO: the
//! caller asks the kernel and passes the time in).

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

/// How long an unresolved send waits before it is dropped.
pub const RESOLVE_WAIT: Duration = Duration::from_secs(1);
/// How long a learned address is trusted.
pub const ENTRY_LIFETIME: Duration = Duration::from_secs(60);

/// A bounded neighbour cache with a pending queue of items of type `T`.
pub struct NeighbourCache<T> {
    entries: HashMap<IpAddr, ([u8; 6], Instant)>,
    capacity: usize,
    pending: VecDeque<(IpAddr, Instant, T)>,
    pending_capacity: usize,
    /// Sends dropped because their peer did not resolve in time, or the queue was full.
    pub dropped: u64,
}

/// What [`NeighbourCache::send`] decided.
pub enum Route<T> {
    /// Send now, to this MAC.
    Now([u8; 6], T),
    /// Queued; ask the kernel about this address (first time it is queued).
    Resolve(IpAddr),
    /// Queued behind an earlier send to the same address.
    Queued,
    /// The queue is full: dropped and counted.
    Dropped(T),
}

impl<T> NeighbourCache<T> {
    /// A cache of at most `capacity` entries and `pending_capacity` waiting sends.
    pub fn new(capacity: usize, pending_capacity: usize) -> Self {
        NeighbourCache {
            entries: HashMap::with_capacity(capacity),
            capacity,
            pending: VecDeque::with_capacity(pending_capacity),
            pending_capacity,
            dropped: 0,
        }
    }

    /// Records that `ip` is at `mac` (from a frame it sent, or the kernel's table).
    pub fn learn(&mut self, ip: IpAddr, mac: [u8; 6], now: Instant) {
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.capacity {
            // Full: forget the oldest entry.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(ip, (mac, now));
    }

    /// The MAC of `ip`, if known and fresh.
    pub fn lookup(&self, ip: IpAddr, now: Instant) -> Option<[u8; 6]> {
        self.entries
            .get(&ip)
            .filter(|(_, t)| now.duration_since(*t) < ENTRY_LIFETIME)
            .map(|(m, _)| *m)
    }

    /// Routes a send of `item` to `ip`.
    pub fn send(&mut self, ip: IpAddr, item: T, now: Instant) -> Route<T> {
        if let Some(mac) = self.lookup(ip, now) {
            return Route::Now(mac, item);
        }
        if self.pending.len() >= self.pending_capacity {
            self.dropped += 1;
            return Route::Dropped(item);
        }
        let first = !self.pending.iter().any(|(p, _, _)| *p == ip);
        self.pending.push_back((ip, now + RESOLVE_WAIT, item));
        if first {
            Route::Resolve(ip)
        } else {
            Route::Queued
        }
    }

    /// The kernel answered for `ip`: learns it and returns the sends waiting for it.
    pub fn resolved(
        &mut self,
        ip: IpAddr,
        mac: Option<[u8; 6]>,
        now: Instant,
    ) -> Vec<([u8; 6], T)> {
        let Some(mac) = mac else { return Vec::new() };
        self.learn(ip, mac, now);
        let mut ready = Vec::new();
        let mut rest = VecDeque::with_capacity(self.pending.len());
        for (p, deadline, item) in self.pending.drain(..) {
            if p == ip {
                ready.push((mac, item))
            } else {
                rest.push_back((p, deadline, item))
            }
        }
        self.pending = rest;
        ready
    }

    /// Drops (and counts, and returns) the sends whose wait is over.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut gone = Vec::new();
        while self.pending.front().is_some_and(|(_, d, _)| *d <= now) {
            if let Some((_, _, item)) = self.pending.pop_front() {
                gone.push(item);
            }
        }
        self.dropped += gone.len() as u64;
        gone
    }

    /// Sends waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn known_peers_go_now_unknown_ones_wait_for_the_kernel() {
        let t0 = Instant::now();
        let mut n = NeighbourCache::new(4, 4);
        n.learn(ip("198.18.0.1"), A, t0);
        assert!(matches!(n.send(ip("198.18.0.1"), 1, t0), Route::Now(A, 1)));
        assert!(matches!(n.send(ip("198.18.0.9"), 2, t0), Route::Resolve(_)));
        assert!(matches!(n.send(ip("198.18.0.9"), 3, t0), Route::Queued));
        let ready = n.resolved(ip("198.18.0.9"), Some(A), t0);
        assert_eq!(
            ready.iter().map(|(_, i)| *i).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(n.pending(), 0);
        assert!(matches!(n.send(ip("198.18.0.9"), 4, t0), Route::Now(A, 4)));
    }

    #[test]
    fn unresolved_sends_expire_and_a_full_queue_drops() {
        let t0 = Instant::now();
        let mut n = NeighbourCache::new(4, 2);
        assert!(matches!(
            n.send(ip("2001:db8::9"), 1, t0),
            Route::Resolve(_)
        ));
        assert!(matches!(n.send(ip("2001:db8::9"), 2, t0), Route::Queued));
        assert!(matches!(
            n.send(ip("2001:db8::8"), 3, t0),
            Route::Dropped(3)
        ));
        assert_eq!(
            n.resolved(ip("2001:db8::9"), None, t0).len(),
            0,
            "no answer: still waiting"
        );
        assert!(n.expire(t0 + RESOLVE_WAIT / 2).is_empty());
        assert_eq!(n.expire(t0 + RESOLVE_WAIT), vec![1, 2]);
        assert_eq!(n.dropped, 3);
    }

    #[test]
    fn the_cache_is_bounded_and_entries_age_out() {
        let t0 = Instant::now();
        let mut n: NeighbourCache<()> = NeighbourCache::new(2, 1);
        n.learn(ip("198.18.0.1"), A, t0);
        n.learn(ip("198.18.0.2"), A, t0 + Duration::from_secs(1));
        n.learn(ip("198.18.0.3"), A, t0 + Duration::from_secs(2));
        assert_eq!(
            n.lookup(ip("198.18.0.1"), t0 + Duration::from_secs(2)),
            None,
            "oldest evicted"
        );
        assert_eq!(
            n.lookup(ip("198.18.0.3"), t0 + Duration::from_secs(2)),
            Some(A)
        );
        assert_eq!(
            n.lookup(ip("198.18.0.3"), t0 + ENTRY_LIFETIME * 2),
            None,
            "aged out"
        );
    }
}
