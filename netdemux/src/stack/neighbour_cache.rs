//! Which MAC address to send to: a bounded cache of what the kernel's routes and neighbour
//! table said and what the peers' own accepted traffic confirmed, and a small queue of sends
//! that wait for an answer (sans-IO: the caller asks the kernel and passes the time in).
//!
//! Like the kernel's neighbour states: an entry is fresh for [`ENTRY_LIFETIME`] after it was
//! last confirmed, then stale — still used, while the caller asks the kernel again (at most
//! every [`REFRESH_EVERY`]): traffic never waits, nor is dropped, for age alone. Only a
//! segment a connection accepted (or the kernel's answer) confirms an entry; a datagram or a
//! SYN to a listener only suggests one (kept apart, never overriding a confirmed entry), so a
//! spoofed or out-of-window frame cannot move a peer's traffic. Both tables are bounded and
//! evict the oldest insertion in O(1).

use std::{
    collections::VecDeque,
    net::IpAddr,
    time::{Duration, Instant},
};

use super::hash::KeyedMap;

/// How long an unresolved send waits before it is dropped.
pub const RESOLVE_WAIT: Duration = Duration::from_secs(1);
/// How long a confirmed address counts as fresh (Linux's base_reachable_time is 30 s, its
/// entries go stale after 15-45 s).
pub const ENTRY_LIFETIME: Duration = Duration::from_secs(30);
/// How often a stale entry is asked about again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How finely a peer's confirmations are recorded: another one within this much of the last
/// recorded one changes nothing (Linux records them in jiffies, 4 ms at HZ=250, and writes
/// `neigh->confirmed` only when the jiffy changed).
pub const CONFIRM_GRANULARITY: Duration = Duration::from_millis(1);

/// What asking the kernel about a destination gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Send to this MAC address (the destination's, or its gateway's).
    Mac([u8; 6]),
    /// No route leads there through this interface.
    NoRoute,
    /// The next hop did not answer ARP or neighbour solicitation in time.
    Unresolved,
}

/// Why sends were dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// No route to the destination through this interface.
    pub no_route: u64,
    /// The destination (or its gateway) did not resolve in time, or the queue was full.
    pub unresolved: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: [u8; 6],
    confirmed: Instant,
    /// When the kernel was last asked about this entry.
    asked: Option<Instant>,
}

/// A bounded insertion-ordered map: the oldest key goes first when it is full, in O(1).
#[derive(Debug)]
struct Bounded<V> {
    map: KeyedMap<IpAddr, V>,
    order: VecDeque<IpAddr>,
    capacity: usize,
}

impl<V> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            map: KeyedMap::with_capacity_and_hasher(capacity, Default::default()),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    fn insert(&mut self, ip: IpAddr, v: V) {
        if self.map.insert(ip, v).is_some() {
            return;
        }
        self.order.push_back(ip);
        while self.map.len() > self.capacity {
            // Keys removed since they were inserted are skipped on the way.
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&oldest);
        }
        if self.order.len() > 2 * self.capacity {
            // Removals left stale keys behind: keep the order as short as the map.
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    fn remove(&mut self, ip: &IpAddr) -> Option<V> {
        self.map.remove(ip)
    }
}

/// The peer confirmed last, as its entry says: a burst of frames from one peer, and the
/// answers to it, pay no lookup while it is fresh (as a Linux socket keeps its route and
/// neighbour in a cached `dst_entry` instead of looking them up per packet). It always agrees
/// with the entry: every write to the entry replaces or clears it.
#[derive(Clone, Copy, Debug)]
struct Recent {
    ip: IpAddr,
    mac: [u8; 6],
    /// When the entry's confirmation was recorded, plus [`CONFIRM_GRANULARITY`].
    record_again: Instant,
    /// When the entry goes stale.
    stale: Instant,
}

/// A bounded neighbour cache with a pending queue of items of type `T`.
pub struct NeighbourCache<T> {
    confirmed: Bounded<Entry>,
    recent: Option<Recent>,
    suggested: Bounded<[u8; 6]>,
    /// Peers without a confirmed entry that the kernel was asked about, and when.
    asked: Bounded<Instant>,
    lifetime: Duration,
    pending: VecDeque<(IpAddr, Instant, T)>,
    pending_capacity: usize,
    /// Sends dropped, by why.
    pub drops: Drops,
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
    /// A cache of at most `capacity` confirmed entries (and as many suggested ones) and
    /// `pending_capacity` waiting sends; entries are fresh for `lifetime`.
    pub fn new(capacity: usize, pending_capacity: usize, lifetime: Duration) -> Self {
        NeighbourCache {
            confirmed: Bounded::new(capacity),
            recent: None,
            suggested: Bounded::new(capacity),
            asked: Bounded::new(pending_capacity),
            lifetime,
            pending: VecDeque::with_capacity(pending_capacity),
            pending_capacity,
            drops: Drops::default(),
        }
    }

    /// `ip` is at `mac`: the kernel said so, or a frame from there passed the stack's checks
    /// (a valid segment of a known connection).
    pub fn confirm(&mut self, ip: IpAddr, mac: [u8; 6], now: Instant) {
        if self
            .recent
            .is_some_and(|r| r.ip == ip && r.mac == mac && now < r.record_again)
        {
            // The same peer again within the granularity: its entry says so already.
            return;
        }
        self.recent = Some(Recent {
            ip,
            mac,
            record_again: now + CONFIRM_GRANULARITY,
            // A lifetime past the clock's end: never stale, and the entry itself answers.
            stale: now.checked_add(self.lifetime).unwrap_or(now),
        });
        let moved_from = match self.confirmed.map.get_mut(&ip) {
            Some(e) if e.mac == mac => {
                // Once per accepted frame outside a burst: one lookup, no insertion.
                e.confirmed = now;
                e.asked = None;
                return;
            }
            Some(e) => Some(e.mac),
            None => None,
        };
        if let Some(old) = moved_from {
            // The peer's traffic comes from another MAC now: the interface it comes through
            // changed (a gateway's failover or new card). Every peer reached through that
            // interface follows, also the quiet ones that have nothing to send.
            for e in self.confirmed.map.values_mut().filter(|e| e.mac == old) {
                e.mac = mac;
            }
            for m in self.suggested.map.values_mut().filter(|m| **m == old) {
                *m = mac;
            }
        }
        self.suggested.remove(&ip);
        self.confirmed.insert(
            ip,
            Entry {
                mac,
                confirmed: now,
                asked: None,
            },
        );
    }

    /// `ip` may be at `mac` (a frame the stack answered without trusting it: a SYN, a segment
    /// for no connection): used only while nothing confirms an address for `ip`, and never
    /// replacing one (the first suggestion stands until confirmed or evicted).
    pub fn suggest(&mut self, ip: IpAddr, mac: [u8; 6]) {
        if !self.confirmed.map.contains_key(&ip) && !self.suggested.map.contains_key(&ip) {
            self.suggested.insert(ip, mac);
        }
    }

    /// The MAC to send to `ip` now, if any (a stale one too).
    pub fn lookup(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.confirmed
            .map
            .get(&ip)
            .map(|e| e.mac)
            .or_else(|| self.suggested.map.get(&ip).copied())
    }

    /// Where a frame to `ip` goes now (a stale entry too), and whether the kernel should be
    /// asked about it ([`NeighbourCache::refresh_due`]) — in one lookup for a known peer.
    pub fn next_hop(&mut self, ip: IpAddr, now: Instant) -> (Option<[u8; 6]>, bool) {
        if let Some(r) = self.recent
            && r.ip == ip
            && now < r.stale
        {
            // Fresh, so nothing to ask: the entry would answer the same.
            return (Some(r.mac), false);
        }
        let lifetime = self.lifetime;
        if let Some(e) = self.confirmed.map.get_mut(&ip) {
            let ask = now.saturating_duration_since(e.confirmed) >= lifetime
                && e.asked
                    .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH_EVERY);
            if ask {
                e.asked = Some(now);
                self.recent = None;
            }
            return (Some(e.mac), ask);
        }
        (
            self.suggested.map.get(&ip).copied(),
            self.ask_unknown(ip, now),
        )
    }

    /// True (and noted) when nothing asked the kernel about the unconfirmed `ip` in the last
    /// [`RESOLVE_WAIT`].
    fn ask_unknown(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self
            .asked
            .map
            .get(&ip)
            .is_some_and(|t| now.saturating_duration_since(*t) < RESOLVE_WAIT)
        {
            return false;
        }
        self.asked.insert(ip, now);
        true
    }

    /// True when the kernel should be asked about `ip` now: it has no confirmed entry, or a
    /// stale one not asked about in the last [`REFRESH_EVERY`]. Marks it asked.
    pub fn refresh_due(&mut self, ip: IpAddr, now: Instant) -> bool {
        let lifetime = self.lifetime;
        match self.confirmed.map.get_mut(&ip) {
            Some(e) => {
                let stale = now.saturating_duration_since(e.confirmed) >= lifetime;
                let asked_lately = e
                    .asked
                    .is_some_and(|t| now.saturating_duration_since(t) < REFRESH_EVERY);
                if stale && !asked_lately {
                    e.asked = Some(now);
                    self.recent = None;
                    return true;
                }
                false
            }
            None => self.ask_unknown(ip, now),
        }
    }

    /// Routes a send of `item` to `ip`.
    pub fn send(&mut self, ip: IpAddr, item: T, now: Instant) -> Route<T> {
        if let Some(mac) = self.lookup(ip) {
            return Route::Now(mac, item);
        }
        if self.pending.len() >= self.pending_capacity {
            self.drops.unresolved += 1;
            return Route::Dropped(item);
        }
        let first = !self.pending.iter().any(|(p, _, _)| *p == ip);
        self.pending.push_back((ip, now + RESOLVE_WAIT, item));
        if first && self.ask_unknown(ip, now) {
            Route::Resolve(ip)
        } else {
            Route::Queued
        }
    }

    /// The kernel answered for `ip`. With a MAC: learned, and the sends waiting for it are
    /// returned as `Ok`. Without: they are dropped, counted, and returned as `Err`; a stale
    /// entry stays in use (the route or neighbour may come back).
    pub fn resolved(
        &mut self,
        ip: IpAddr,
        answer: Resolution,
        now: Instant,
    ) -> Vec<Result<([u8; 6], T), T>> {
        self.asked.remove(&ip);
        if let Resolution::Mac(mac) = answer {
            self.confirm(ip, mac, now);
        }
        let mut out = Vec::new();
        let mut rest = VecDeque::with_capacity(self.pending.len());
        for (p, deadline, item) in self.pending.drain(..) {
            if p != ip {
                rest.push_back((p, deadline, item));
                continue;
            }
            out.push(match answer {
                Resolution::Mac(mac) => Ok((mac, item)),
                Resolution::NoRoute => {
                    self.drops.no_route += 1;
                    Err(item)
                }
                Resolution::Unresolved => {
                    self.drops.unresolved += 1;
                    Err(item)
                }
            });
        }
        self.pending = rest;
        out
    }

    /// Drops (and counts, and returns) the sends whose wait is over.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut gone = Vec::new();
        while self.pending.front().is_some_and(|(_, d, _)| *d <= now) {
            if let Some((_, _, item)) = self.pending.pop_front() {
                gone.push(item);
            }
        }
        self.drops.unresolved += gone.len() as u64;
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
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const LIFE: Duration = ENTRY_LIFETIME;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn known_peers_go_now_unknown_ones_wait_for_the_kernel() {
        let t0 = Instant::now();
        let mut n = NeighbourCache::new(4, 4, LIFE);
        n.confirm(ip("198.18.0.1"), A, t0);
        assert!(matches!(n.send(ip("198.18.0.1"), 1, t0), Route::Now(A, 1)));
        assert!(matches!(n.send(ip("198.18.0.9"), 2, t0), Route::Resolve(_)));
        assert!(matches!(n.send(ip("198.18.0.9"), 3, t0), Route::Queued));
        let ready: Vec<_> = n
            .resolved(ip("198.18.0.9"), Resolution::Mac(A), t0)
            .into_iter()
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(ready, vec![2, 3]);
        assert_eq!(n.pending(), 0);
        assert!(matches!(n.send(ip("198.18.0.9"), 4, t0), Route::Now(A, 4)));
    }

    #[test]
    fn unresolved_sends_expire_and_a_full_queue_drops() {
        let t0 = Instant::now();
        let mut n = NeighbourCache::new(4, 2, LIFE);
        assert!(matches!(
            n.send(ip("2001:db8::9"), 1, t0),
            Route::Resolve(_)
        ));
        assert!(matches!(n.send(ip("2001:db8::9"), 2, t0), Route::Queued));
        assert!(matches!(
            n.send(ip("2001:db8::8"), 3, t0),
            Route::Dropped(3)
        ));
        assert!(n.expire(t0 + RESOLVE_WAIT / 2).is_empty());
        assert_eq!(n.expire(t0 + RESOLVE_WAIT), vec![1, 2]);
        assert_eq!(n.drops.unresolved, 3);
    }

    #[test]
    fn no_route_and_no_answer_drop_what_waits_and_say_why() {
        let t0 = Instant::now();
        let mut n = NeighbourCache::new(4, 4, LIFE);
        n.send(ip("198.19.0.1"), 1, t0);
        n.send(ip("198.19.0.2"), 2, t0);
        let gone = n.resolved(ip("198.19.0.1"), Resolution::NoRoute, t0);
        assert!(matches!(gone.as_slice(), [Err(1)]));
        let gone = n.resolved(ip("198.19.0.2"), Resolution::Unresolved, t0);
        assert!(matches!(gone.as_slice(), [Err(2)]));
        assert_eq!(
            n.drops,
            Drops {
                no_route: 1,
                unresolved: 1
            }
        );
    }

    #[test]
    fn a_stale_entry_is_still_used_and_asked_about_again_now_and_then() {
        let t0 = Instant::now();
        let mut n: NeighbourCache<u8> = NeighbourCache::new(4, 4, LIFE);
        let peer = ip("198.18.0.1");
        n.confirm(peer, A, t0);
        assert!(!n.refresh_due(peer, t0 + LIFE / 2), "fresh");
        let stale = t0 + LIFE * 3;
        assert_eq!(n.lookup(peer), Some(A), "never dropped for age alone");
        assert!(matches!(n.send(peer, 1, stale), Route::Now(A, 1)));
        assert!(n.refresh_due(peer, stale));
        assert!(
            !n.refresh_due(peer, stale + REFRESH_EVERY / 2),
            "asked lately"
        );
        assert!(n.refresh_due(peer, stale + REFRESH_EVERY));
        // The kernel says the gateway moved: traffic follows at once.
        n.resolved(peer, Resolution::Mac(B), stale + REFRESH_EVERY);
        assert_eq!(n.lookup(peer), Some(B));
        assert!(!n.refresh_due(peer, stale + REFRESH_EVERY));
        // An answer without a MAC leaves the old entry in use.
        n.resolved(peer, Resolution::Unresolved, stale + REFRESH_EVERY);
        assert_eq!(n.lookup(peer), Some(B));
    }

    #[test]
    fn confirmations_closer_than_the_granularity_are_recorded_once() {
        // As Linux records them in jiffies: the entry stays stale from the first of them.
        let t0 = Instant::now();
        let mut n: NeighbourCache<u8> = NeighbourCache::new(4, 4, LIFE);
        let peer = ip("198.18.0.1");
        n.confirm(peer, A, t0);
        n.confirm(peer, A, t0 + CONFIRM_GRANULARITY / 2);
        assert_eq!(n.next_hop(peer, t0 + LIFE), (Some(A), true));
        n.confirm(peer, A, t0 + LIFE + CONFIRM_GRANULARITY / 2);
        n.confirm(peer, A, t0 + LIFE + CONFIRM_GRANULARITY * 2);
        assert_eq!(
            n.next_hop(peer, t0 + LIFE * 2 + CONFIRM_GRANULARITY),
            (Some(A), false),
            "recorded again once the granularity passed"
        );
        // Another MAC is recorded at once, however soon.
        let later = t0 + LIFE * 2 + CONFIRM_GRANULARITY;
        n.confirm(peer, B, later);
        assert_eq!(n.next_hop(peer, later), (Some(B), false));
    }

    #[test]
    fn when_a_peer_moves_to_another_mac_every_peer_behind_the_old_one_follows() {
        // Two peers behind one gateway (MAC A); one of them talks from B now (the gateway's
        // failover): the quiet one is sent to B too. A peer elsewhere (MAC C) stays.
        let t0 = Instant::now();
        let mut n: NeighbourCache<()> = NeighbourCache::new(8, 1, LIFE);
        const C: [u8; 6] = [2, 0, 0, 0, 0, 3];
        n.confirm(ip("198.19.0.1"), A, t0);
        n.confirm(ip("198.19.0.2"), A, t0);
        n.confirm(ip("198.18.0.9"), C, t0);
        n.confirm(ip("198.19.0.1"), B, t0);
        assert_eq!(n.lookup(ip("198.19.0.2")), Some(B));
        assert_eq!(n.lookup(ip("198.18.0.9")), Some(C));
    }

    #[test]
    fn an_unknown_peer_is_asked_about_once_per_wait() {
        let t0 = Instant::now();
        let mut n: NeighbourCache<u8> = NeighbourCache::new(4, 4, LIFE);
        let peer = ip("198.19.0.7");
        assert_eq!(n.next_hop(peer, t0), (None, true));
        assert_eq!(n.next_hop(peer, t0), (None, false), "asked already");
        assert!(
            matches!(n.send(peer, 1, t0), Route::Queued),
            "waits for that answer"
        );
        assert_eq!(n.next_hop(peer, t0 + RESOLVE_WAIT), (None, true));
        n.resolved(peer, Resolution::Mac(A), t0 + RESOLVE_WAIT);
        assert_eq!(n.next_hop(peer, t0 + RESOLVE_WAIT), (Some(A), false));
    }

    #[test]
    fn a_suggestion_never_overrides_a_confirmed_entry() {
        let t0 = Instant::now();
        let mut n: NeighbourCache<()> = NeighbourCache::new(4, 1, LIFE);
        n.confirm(ip("198.18.0.1"), A, t0);
        n.suggest(ip("198.18.0.1"), B);
        assert_eq!(n.lookup(ip("198.18.0.1")), Some(A));
        n.suggest(ip("198.18.0.2"), B);
        assert_eq!(n.lookup(ip("198.18.0.2")), Some(B), "better than nothing");
        n.suggest(ip("198.18.0.2"), A);
        assert_eq!(
            n.lookup(ip("198.18.0.2")),
            Some(B),
            "the first suggestion stands"
        );
        n.confirm(ip("198.18.0.2"), A, t0);
        assert_eq!(n.lookup(ip("198.18.0.2")), Some(A));
    }

    #[test]
    fn both_tables_are_bounded_and_evict_the_oldest() {
        let t0 = Instant::now();
        let mut n: NeighbourCache<()> = NeighbourCache::new(2, 1, LIFE);
        n.confirm(ip("198.18.0.1"), A, t0);
        n.confirm(ip("198.18.0.2"), A, t0);
        n.confirm(ip("198.18.0.1"), A, t0); // refreshed, not a new key
        n.confirm(ip("198.18.0.3"), A, t0);
        assert_eq!(
            n.lookup(ip("198.18.0.1")),
            None,
            "the oldest insertion went"
        );
        assert_eq!(n.lookup(ip("198.18.0.2")), Some(A));
        assert_eq!(n.lookup(ip("198.18.0.3")), Some(A));
        // A flood of suggestions (spoofed SYNs) cannot push out confirmed peers.
        for i in 0..1000u16 {
            let [hi, lo] = i.to_be_bytes();
            n.suggest(IpAddr::from([198, 19, hi, lo]), B);
        }
        assert_eq!(n.lookup(ip("198.18.0.2")), Some(A));
        assert_eq!(n.suggested.map.len(), 2);
        assert!(n.suggested.order.len() <= 4);
    }
}

/// Arbitrary sequences of what the data path and the resolver do to a cache — frames that
/// confirm or suggest addresses from many sources and MACs, sends, the kernel's answers, time
/// passing — with its invariants checked after each step: the body of the `neighbour_cache`
/// fuzz target, and of a seeded test that runs it in CI.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing {
    use std::{
        collections::HashSet,
        net::{IpAddr, Ipv4Addr, Ipv6Addr},
        time::{Duration, Instant},
    };

    use super::{NeighbourCache, Resolution, Route};

    const CAPACITY: usize = 64;
    const PENDING: usize = 16;
    const LIFETIME: Duration = Duration::from_secs(30);

    /// Runs the operations `data` describes; see the module's documentation.
    pub fn run(data: &[u8]) {
        let start = Instant::now();
        let mut now = start;
        let mut cache = NeighbourCache::new(CAPACITY, PENDING, LIFETIME);
        // Every send is an item with a number; each comes back exactly once.
        let (mut next_item, mut open) = (0u64, HashSet::new());
        let mut last = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let settle = |open: &mut HashSet<u64>, item: u64| {
            assert!(open.remove(&item), "send {item} came back twice");
        };
        for op in data.chunks(4) {
            let [code, a, b, c] = [
                op[0],
                *op.get(1).unwrap_or(&0),
                *op.get(2).unwrap_or(&0),
                *op.get(3).unwrap_or(&0),
            ];
            // Sources from a pool large enough to overflow the tables, both families; or the
            // last one again (bursts from one peer).
            let ip = if a & 0x40 != 0 {
                last
            } else if a & 0x80 == 0 {
                IpAddr::V4(Ipv4Addr::new(198, 18, a, b))
            } else {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    u16::from(a & 0x7f),
                    u16::from(b),
                ))
            };
            last = ip;
            let mac = [2, 0, 0, 0, 0, c % 8];
            match code % 8 {
                0 => cache.confirm(ip, mac, now),
                1 => cache.suggest(ip, mac),
                2 => {
                    let item = next_item;
                    next_item += 1;
                    open.insert(item);
                    match cache.send(ip, item, now) {
                        Route::Now(m, i) => {
                            assert_eq!(Some(m), cache.lookup(ip));
                            settle(&mut open, i);
                        }
                        Route::Dropped(i) => settle(&mut open, i),
                        Route::Resolve(_) | Route::Queued => {}
                    }
                }
                3 => {
                    let answer = match c % 3 {
                        0 => Resolution::Mac(mac),
                        1 => Resolution::NoRoute,
                        _ => Resolution::Unresolved,
                    };
                    for r in cache.resolved(ip, answer, now) {
                        match r {
                            Ok((m, i)) => {
                                assert_eq!(Resolution::Mac(m), answer);
                                settle(&mut open, i);
                            }
                            Err(i) => settle(&mut open, i),
                        }
                    }
                    if answer == Resolution::Mac(mac) {
                        assert_eq!(cache.lookup(ip), Some(mac), "a resolved address is used");
                    }
                }
                4 => {
                    for i in cache.expire(now) {
                        settle(&mut open, i);
                    }
                }
                5 => {
                    // What the entry says, asked before next_hop marks it.
                    let due = cache.confirmed.map.get(&ip).map(|e| {
                        now.saturating_duration_since(e.confirmed) >= LIFETIME
                            && e.asked.is_none_or(|t| {
                                now.saturating_duration_since(t) >= super::REFRESH_EVERY
                            })
                    });
                    let (m, ask) = cache.next_hop(ip, now);
                    assert_eq!(m, cache.lookup(ip));
                    if let Some(due) = due {
                        assert_eq!(ask, due, "the peer confirmed last answers as its entry");
                    }
                }
                6 => {
                    let _ = cache.refresh_due(ip, now);
                }
                _ => now += Duration::from_millis(u64::from(b) * 256 + u64::from(c)),
            }
            if let Some(r) = cache.recent {
                let e = cache.confirmed.map.get(&r.ip);
                let e = e.expect("the peer confirmed last has an entry");
                assert_eq!(e.mac, r.mac);
                assert_eq!(e.asked, None);
                assert_eq!(Some(r.stale), e.confirmed.checked_add(LIFETIME));
            }
            assert!(cache.confirmed.map.len() <= CAPACITY);
            assert!(cache.suggested.map.len() <= CAPACITY);
            assert!(cache.asked.map.len() <= PENDING.max(1));
            assert!(cache.confirmed.order.len() <= 2 * CAPACITY + 1);
            assert!(cache.pending() <= PENDING);
            assert_eq!(cache.pending(), open.len(), "a send was lost or made up");
        }
        // Everything still waiting goes once its wait is over.
        for i in cache.expire(now + super::RESOLVE_WAIT) {
            settle(&mut open, i);
        }
        assert!(open.is_empty(), "sends never came back: {open:?}");
    }

    #[test]
    fn seeded_operations_keep_the_invariants() {
        let mut x = crate::test_rng::Xorshift64::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..200 {
            let data: Vec<u8> = (0..2048).map(|_| x.next() as u8).collect();
            run(&data);
        }
    }
}
