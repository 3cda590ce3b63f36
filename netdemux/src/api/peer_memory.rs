//! What a wildcard `UdpSocket` remembers of its peers: the local address each one last wrote
//! to, so the answer leaves from it (as Linux answers from the address a datagram came to when
//! the application asks with `IP_PKTINFO`). Bounded, least recently heard-from forgotten first,
//! so a flood of spoofed sources pushes out only peers that went quiet; a peer forgotten is
//! answered from the local address of the socket's family that was written to last.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
};

/// A bounded least-recently-used map from peer to local address, O(1) per datagram (amortised):
/// each touch appends to the order with a new stamp, and eviction skips the stamps that are no
/// longer a peer's latest.
#[derive(Debug)]
pub struct PeerMemory {
    peers: HashMap<SocketAddr, (IpAddr, u64)>,
    order: VecDeque<(SocketAddr, u64)>,
    capacity: usize,
    stamp: u64,
    /// The local address written to last, by any peer.
    last_local: Option<IpAddr>,
}

impl PeerMemory {
    /// Remembers up to `capacity` peers.
    pub fn new(capacity: usize) -> Self {
        PeerMemory {
            peers: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            stamp: 0,
            last_local: None,
        }
    }

    /// `peer` wrote to `local` just now.
    pub fn heard(&mut self, peer: SocketAddr, local: IpAddr) {
        self.stamp += 1;
        self.last_local = Some(local);
        self.peers.insert(peer, (local, self.stamp));
        self.order.push_back((peer, self.stamp));
        while self.peers.len() > self.capacity {
            let Some((oldest, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.peers.get(&oldest).is_some_and(|&(_, s)| s == stamp) {
                self.peers.remove(&oldest);
            }
        }
        if self.order.len() > 2 * self.capacity {
            // Touches left old stamps behind: keep the order as short as the map.
            let peers = &self.peers;
            self.order
                .retain(|(p, s)| peers.get(p).is_some_and(|&(_, latest)| latest == *s));
        }
    }

    /// The local address to answer `peer` from: the one it wrote to, or for a peer forgotten
    /// (or never heard from), the one written to last; `None` before anyone wrote.
    pub fn local_for(&self, peer: &SocketAddr) -> Option<IpAddr> {
        self.peers
            .get(peer)
            .map(|&(local, _)| local)
            .or(self.last_local)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn peer(i: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc613_0000 + i)), 5000)
    }

    const LOCAL_A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const LOCAL_B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));

    #[test]
    fn a_flood_of_new_sources_forgets_only_the_quiet_peers() {
        let mut m = PeerMemory::new(64);
        m.heard(peer(1), LOCAL_B); // a real peer that keeps talking, to the second address
        m.heard(peer(2), LOCAL_B); // one that goes quiet
        for i in 0..10_000 {
            m.heard(peer(100 + i), LOCAL_A);
            if i % 32 == 0 {
                m.heard(peer(1), LOCAL_B);
            }
        }
        assert_eq!(m.peers.len(), 64);
        assert_eq!(
            m.local_for(&peer(1)),
            Some(LOCAL_B),
            "the live peer is kept"
        );
        // The quiet one is forgotten (the old code cleared everyone at 4,097): it is answered
        // from the address written to last, of the same family.
        assert!(!m.peers.contains_key(&peer(2)));
        assert_eq!(m.local_for(&peer(2)), Some(LOCAL_A));
        assert!(m.order.len() <= 2 * 64 + 1, "the order stays bounded");
    }

    #[test]
    fn least_recently_heard_goes_first() {
        let mut m = PeerMemory::new(2);
        m.heard(peer(1), LOCAL_A);
        m.heard(peer(2), LOCAL_B);
        m.heard(peer(1), LOCAL_A); // 2 is now the least recent
        m.heard(peer(3), LOCAL_A);
        assert!(m.peers.contains_key(&peer(1)));
        assert!(!m.peers.contains_key(&peer(2)));
        assert!(m.peers.contains_key(&peer(3)));
        assert_eq!(PeerMemory::new(4).local_for(&peer(9)), None);
    }
}
