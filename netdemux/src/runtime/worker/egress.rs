//! Egress: what leaves a worker besides in-place answers — the application's datagrams
//! (addressed through the neighbour cache, waiting for the kernel's answer when a peer is new)
//! and the TCP sockets' segments — built straight into UMEM frames.

use std::{net::SocketAddr, sync::atomic::Ordering, time::Instant};

use super::super::{frames::Frames, resolver::ResolverLink};
use crate::{
    bridge::{WorkerLink, udp::TxRequest},
    stack::neighbour_cache::{NeighbourCache, Route},
    wire::{self, tcp::TcpHeader},
    xsk::socket::BATCH,
};

/// Posts an application datagram to `mac`, then gives its buffer back to its socket. The
/// caller flushes once for all it posted: in copy mode every flush is a sendto(2) that moves up
/// to 32 frames, where one per datagram was a system call each.
fn send_now(
    sock: &mut impl Frames,
    link: &WorkerLink,
    src_mac: [u8; 6],
    mac: [u8; 6],
    req: TxRequest,
) {
    let payload = &req.buf[..req.len];
    let ok = sock.post(|frame| wire::udp::emit(frame, src_mac, mac, req.src, req.dst, payload));
    if ok {
        link.sent.fetch_add(1, Ordering::Relaxed);
    } else {
        link.dropped.fetch_add(1, Ordering::Relaxed);
        req.owner.tx_dropped.fetch_add(1, Ordering::Relaxed);
    }
    let _ = req.owner.tx_free.push(req.buf);
}

/// Drops an application datagram that could not be sent (counted), returning its buffer.
fn drop_request(link: &WorkerLink, req: TxRequest) {
    link.dropped.fetch_add(1, Ordering::Relaxed);
    req.owner.tx_dropped.fetch_add(1, Ordering::Relaxed);
    let _ = req.owner.tx_free.push(req.buf);
}

/// Takes the resolver's answers: what waited for them goes out (or is dropped and counted).
pub(super) fn answers(
    sock: &mut impl Frames,
    link: Option<&WorkerLink>,
    neighbours: &mut NeighbourCache<TxRequest>,
    src_mac: [u8; 6],
    resolver: &ResolverLink,
    now: Instant,
) {
    let mut posted = false;
    while let Some((ip, answer)) = resolver.answers.pop() {
        for sent in neighbours.resolved(ip, answer, now) {
            // Only an application queues sends: there is a link when something waited.
            let Some(link) = link else { continue };
            match sent {
                Ok((mac, req)) => {
                    send_now(sock, link, src_mac, mac, req);
                    posted = true;
                }
                Err(req) => drop_request(link, req),
            }
        }
    }
    if posted {
        sock.flush_tx();
    }
    if let Some(link) = link {
        for req in neighbours.expire(now) {
            drop_request(link, req);
        }
    }
}

/// Moves the application's datagrams to the wire (at most a batch of them per call); new
/// peers, and stale ones, are asked about through `resolver`.
pub(super) fn datagrams(
    sock: &mut impl Frames,
    link: &WorkerLink,
    neighbours: &mut NeighbourCache<TxRequest>,
    src_mac: [u8; 6],
    resolver: &ResolverLink,
    now: Instant,
) {
    let mut posted = false;
    for _ in 0..BATCH {
        let Some(req) = link.tx.pop() else { break };
        let (ip, source) = (req.dst.ip(), Some(req.src.ip()));
        match neighbours.send(ip, req, now) {
            Route::Now(mac, req) => {
                if neighbours.refresh_due(ip, now) {
                    resolver.ask(ip, source);
                }
                send_now(sock, link, src_mac, mac, req);
                posted = true;
            }
            Route::Resolve(ip) => {
                resolver.ask(ip, source);
            }
            Route::Queued => {}
            Route::Dropped(req) => drop_request(link, req),
        }
    }
    if posted {
        sock.flush_tx();
    }
}

/// Where a worker's TCP segments go: the TX ring, to the MAC the neighbour cache has (a
/// stale one too, while the resolver is asked again).
pub(super) struct SegmentOut<'a, S> {
    pub sock: &'a mut S,
    pub neighbours: &'a mut NeighbourCache<TxRequest>,
    pub resolver: &'a ResolverLink,
    pub src_mac: [u8; 6],
    pub now: Instant,
}

impl<S: Frames> SegmentOut<'_, S> {
    /// Posts one segment; false when the ring is full (the segment waits).
    pub fn emit(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        h: &TcpHeader,
        payload: [&[u8]; 2],
    ) -> bool {
        let ip = remote.ip();
        let (peer, ask) = self.neighbours.next_hop(ip, self.now);
        if ask {
            self.resolver.ask(ip, Some(local.ip()));
        }
        let Some(peer) = peer else {
            // Counted; the connection's timers send it again once the resolver answered.
            self.neighbours.drops.unresolved += 1;
            return true;
        };
        let mac = self.src_mac;
        self.sock
            .post(|frame| wire::tcp::emit(frame, mac, peer, local, remote, h, payload))
    }

    /// Sends what was posted; true when frames still wait in the TX ring.
    pub fn finish(self) -> bool {
        self.sock.flush_tx()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use crossbeam_queue::ArrayQueue;

    use super::*;
    use crate::{
        bridge::udp::SocketShared,
        runtime::{frames::fake::FakeFrames, resolver::Lines},
        stack::neighbour_cache::Resolution,
    };

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    /// Queues `n` datagrams from `owner` to the peer at 198.18.0.1.
    fn queue(link: &WorkerLink, owner: &Arc<SocketShared>, n: u16) {
        for i in 0..n {
            let mut buf = owner.tx_free.pop().expect("a free buffer");
            buf[..4].copy_from_slice(b"dns?");
            let req = TxRequest {
                buf,
                len: 4,
                src: owner.local,
                dst: SocketAddr::from(([198, 18, 0, 1], 40000 + i)),
                owner: owner.clone(),
            };
            assert!(link.tx.push(req).is_ok());
        }
    }

    /// An application's datagrams leave with one flush per worker round, both those that
    /// waited for the peer's MAC and those sent to a known one: in copy mode a flush is one
    /// sendto(2) per 32 frames, where each datagram used to be a system call of its own.
    #[test]
    fn an_applications_datagrams_leave_with_one_flush_per_round() {
        let resolved = Arc::new(ArrayQueue::new(16));
        let lines = Lines::new(vec![resolved.clone()]);
        let resolver = lines.link(0);
        let link = WorkerLink::new().unwrap();
        let owner = SocketShared::new(SocketAddr::from(([198, 18, 0, 2], 53)));
        let mut neighbours = NeighbourCache::new(16, 64, Duration::from_secs(30));
        let mut sock = FakeFrames::default();
        let now = Instant::now();

        // A new peer: the datagrams wait for its MAC, then go out together.
        queue(&link, &owner, 10);
        datagrams(&mut sock, &link, &mut neighbours, MAC, &resolver, now);
        assert_eq!(
            sock.sent.len() + sock.posted.len(),
            0,
            "waiting for the peer's MAC"
        );
        let peer = std::net::IpAddr::from([198, 18, 0, 1]);
        assert!(resolved.push((peer, Resolution::Mac(PEER_MAC))).is_ok());
        answers(&mut sock, Some(&link), &mut neighbours, MAC, &resolver, now);
        assert_eq!((sock.sent.len(), sock.flushes), (10, 1));

        // A known peer: a round's datagrams, one flush.
        queue(&link, &owner, 20);
        datagrams(&mut sock, &link, &mut neighbours, MAC, &resolver, now);
        assert_eq!((sock.sent.len(), sock.flushes), (30, 2));
        assert!(sock.posted.is_empty(), "nothing left unflushed");
        assert_eq!(link.sent.load(Ordering::Relaxed), 30);
    }
}
