//! Egress: what leaves a worker besides in-place answers — the application's datagrams
//! (addressed through the neighbour cache, waiting for the kernel's answer when a peer is new)
//! and the TCP sockets' segments — built straight into UMEM frames.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{atomic::Ordering, mpsc::SyncSender},
    time::Instant,
};

use super::super::frames::Frames;
use crate::{
    bridge::{WorkerLink, udp::TxRequest},
    stack::neighbour_cache::{NeighbourCache, Route},
    wire::{self, tcp::TcpHeader},
    xsk::socket::BATCH,
};

/// Transmits an application datagram to `mac`, then gives its buffer back to its socket.
fn send_now(
    sock: &mut impl Frames,
    link: &WorkerLink,
    src_mac: [u8; 6],
    mac: [u8; 6],
    req: TxRequest,
) {
    let payload = &req.buf[..req.len];
    let ok = sock.transmit(|frame| wire::udp::emit(frame, src_mac, mac, req.src, req.dst, payload));
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

/// Moves the application's datagrams to the wire: the kernel's neighbour answers first, then
/// expired waits, then new requests (at most a batch of them per call). New peers are asked
/// about through `resolve` (worker `index`).
#[allow(clippy::too_many_arguments)]
pub(super) fn datagrams(
    sock: &mut impl Frames,
    link: &WorkerLink,
    neighbours: &mut NeighbourCache<TxRequest>,
    src_mac: [u8; 6],
    resolve: &SyncSender<(IpAddr, usize)>,
    index: usize,
    now: Instant,
) {
    while let Some((ip, mac)) = link.resolved.pop() {
        for (mac, req) in neighbours.resolved(ip, mac, now) {
            send_now(sock, link, src_mac, mac, req);
        }
    }
    for req in neighbours.expire(now) {
        drop_request(link, req);
    }
    for _ in 0..BATCH {
        let Some(req) = link.tx.pop() else { break };
        match neighbours.send(req.dst.ip(), req, now) {
            Route::Now(mac, req) => send_now(sock, link, src_mac, mac, req),
            Route::Resolve(ip) => {
                let _ = resolve.try_send((ip, index));
            }
            Route::Queued => {}
            Route::Dropped(req) => drop_request(link, req),
        }
    }
}

/// Where a worker's TCP segments go: the TX ring, to the MAC the neighbour cache has.
pub(super) struct SegmentOut<'a, S> {
    pub sock: &'a mut S,
    pub neighbours: &'a NeighbourCache<TxRequest>,
    pub src_mac: [u8; 6],
    /// Segments not sent for want of the peer's MAC address.
    pub no_neighbour: &'a mut u64,
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
        let Some(peer) = self.neighbours.lookup(remote.ip(), self.now) else {
            // Counted; the connection's timers send it again.
            *self.no_neighbour += 1;
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
