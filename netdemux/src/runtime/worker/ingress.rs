//! Ingress: one received frame to where it belongs, in one classification. A built-in UDP
//! service answers or counts it in place; a TCP segment goes to the worker's TCP sockets (a
//! service's or the application's); a UDP datagram to an application's socket. What nothing
//! claims is counted.

use std::{sync::atomic::Ordering, time::Instant};

use netdemux_common::{BindKey, FAMILY_V4, PROTO_TCP};

use super::tcp_sockets::TcpSockets;
use crate::{
    bridge::udp::{Registry, TxRequest},
    report::{QueueCounters, ServiceCounters, WorkerTcpCounters},
    services::{Kind, ServiceTable, udp_echo},
    stack::{neighbour_cache::NeighbourCache, tcp::endpoint::Disposition},
    wire::{self, checksum, classify, icmp::IcmpError, tcp::TcpPacket, udp::UdpRepr},
    xsk::Verdict,
};

/// What one frame may touch: the worker's tables and its local counters.
pub(super) struct Dispatch<'a> {
    /// The interface's MAC address.
    pub mac: [u8; 6],
    pub services: &'a ServiceTable,
    pub service_counters: &'a mut [ServiceCounters],
    pub counters: &'a mut QueueCounters,
    pub tcp_counters: &'a mut WorkerTcpCounters,
    pub neighbours: &'a mut NeighbourCache<TxRequest>,
    pub tcp: Option<&'a mut TcpSockets>,
    /// The application's UDP sockets, when this worker serves an application.
    pub sockets: Option<&'a Registry>,
    pub now: Instant,
    /// The batch's last service lookup, (destination, unicast) -> service: a batch's frames
    /// mostly go to one destination, so most of them skip hashing the key.
    pub last_service: Option<ServiceLookup>,
}

/// A service lookup: destination, unicast, and the service found (index, kind).
pub(super) type ServiceLookup = (BindKey, bool, Option<(usize, Kind)>);

/// The source MAC address of a frame.
fn source_mac(frame: &[u8]) -> [u8; 6] {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[6..12]);
    mac
}

impl Dispatch<'_> {
    /// What becomes of one received frame.
    pub fn frame(&mut self, frame: &mut [u8]) -> Verdict {
        // A frame to another host's MAC (a NIC in promiscuous mode, a switch flooding) is not
        // ours to answer: the kernel drops it too (PACKET_OTHERHOST, in ip_rcv_core).
        if frame
            .get(..6)
            .is_some_and(|dst| dst[0] & 1 == 0 && dst != self.mac)
        {
            self.counters.other_host += 1;
            return Verdict::Recycle;
        }
        let Some(c) = classify(frame) else {
            self.counters.unclaimed += 1;
            return Verdict::Recycle;
        };
        // The kernel drops an IPv4 packet whose header checksum is wrong before anything
        // reads it (ip_rcv_core); so does every service and socket here.
        if c.key.family == FAMILY_V4
            && !checksum::ipv4_header_verifies(&frame[c.l3_offset..c.l4_offset])
        {
            self.counters.ip_checksum_errors += 1;
            return Verdict::Recycle;
        }
        if c.icmp {
            return self.icmp(frame, &c);
        }
        if let Some((i, kind)) = self.service(&c.key, c.unicast) {
            let counters = &mut self.service_counters[i];
            counters.packets += 1;
            counters.bytes += c.payload_len as u64;
            return match kind {
                Kind::UdpSink => Verdict::Recycle,
                Kind::UdpEcho => match udp_echo::reply_in_place(frame, &c) {
                    Ok(len) => Verdict::Transmit(len),
                    Err(why) => {
                        counters.unanswered += 1;
                        if why == udp_echo::Unanswered::Checksum {
                            self.counters.checksum_errors += 1;
                        }
                        Verdict::Recycle
                    }
                },
                Kind::TcpEcho | Kind::Http => self.tcp_segment(frame, &c),
            };
        }
        if c.key.proto == PROTO_TCP {
            // The application's TCP: its listeners, streams, and RSTs for the rest. Never for
            // a broadcast or multicast frame (RFC 1122 §4.2.3.10).
            if self.tcp.is_none() || self.sockets.is_none() || !c.unicast {
                self.counters.unclaimed += 1;
                return Verdict::Recycle;
            }
            return self.tcp_segment(frame, &c);
        }
        self.datagram(frame, &c)
    }

    /// The service `key` belongs to ([`ServiceTable::find`]), through the batch's last lookup.
    fn service(&mut self, key: &BindKey, unicast: bool) -> Option<(usize, Kind)> {
        if let Some((k, u, found)) = self.last_service
            && k == *key
            && u == unicast
        {
            return found;
        }
        let found = self.services.find(key, unicast);
        self.last_service = Some((*key, unicast, found));
        found
    }

    /// An ICMP error about a packet sent from here: to the TCP connection it concerns, or
    /// counted for UDP.
    fn icmp(&mut self, frame: &[u8], c: &wire::Classified) -> Verdict {
        match IcmpError::from_classified(frame, c) {
            Ok(e) if e.proto == PROTO_TCP => {
                if let Some(tcp) = self.tcp.as_deref_mut() {
                    tcp.icmp(&e, self.now);
                }
            }
            Ok(_) => self.counters.icmp_udp += 1,
            Err(_) => self.counters.icmp_malformed += 1,
        }
        Verdict::Recycle
    }

    /// A TCP segment for the worker's TCP sockets.
    fn tcp_segment(&mut self, frame: &[u8], c: &wire::Classified) -> Verdict {
        let Some(tcp) = self.tcp.as_deref_mut() else {
            return Verdict::Recycle;
        };
        if !c.unicast {
            // A wildcard service never answers a broadcast or multicast segment (RFC 1122).
            self.counters.unclaimed += 1;
            return Verdict::Recycle;
        }
        match TcpPacket::from_classified(frame, c) {
            Ok(p) => {
                let segment = &frame[c.l4_offset..p.payload_offset + p.payload_len];
                let payload = &segment[segment.len() - p.payload_len..];
                let taken = tcp.input(p.src, p.dst, &p.header, payload, segment, self.now);
                // Answers go back to the MAC the segment came from once the stack took it as a
                // connection's own; any other segment (a SYN, one answered with a RST) only
                // suggests it, which never moves a peer the stack already knows.
                let mac = source_mac(frame);
                match taken {
                    Disposition::Accepted => self.neighbours.confirm(p.src.ip(), mac, self.now),
                    Disposition::Syn | Disposition::Other => {
                        self.neighbours.suggest(p.src.ip(), mac)
                    }
                }
            }
            Err(wire::Error::Checksum) => self.checksum_error(frame, c, 16),
            Err(_) => self.tcp_counters.bad_segments += 1,
        }
        Verdict::Recycle
    }

    /// Counts a TCP segment or datagram whose checksum (at `field` of its L4 header) was wrong,
    /// and says once per queue when it looks like a sender's unfinished offload.
    fn checksum_error(&mut self, frame: &[u8], c: &wire::Classified, field: usize) {
        self.counters.checksum_errors += 1;
        let (Some(src), Some(dst)) = (wire::source(frame, c), c.key.socket_addr()) else {
            return;
        };
        let Some(segment) = frame.get(c.l4_offset..c.payload_offset + c.payload_len) else {
            return;
        };
        if checksum::is_partial(src.ip(), dst.ip(), c.key.proto, segment, field) {
            self.counters.checksum_partial += 1;
            if self.counters.checksum_partial == 1 {
                tracing::warn!(
                    "frames from {} carry partial TCP/UDP checksums: the sender offloads TX \
                     checksums (a veth peer does by default) and netdemux drops them; fix it on \
                     the sending side: ethtool -K <its interface> tx off",
                    src.ip()
                );
            }
        }
    }

    /// A UDP datagram for an application's socket.
    fn datagram(&mut self, frame: &[u8], c: &wire::Classified) -> Verdict {
        let wildcard = c.key.wildcard();
        let socket = self.sockets.and_then(|r| {
            r.get(&c.key)
                .or_else(|| c.unicast.then(|| r.get(&wildcard)).flatten())
        });
        let Some(socket) = socket else {
            self.counters.unclaimed += 1;
            return Verdict::Recycle;
        };
        match UdpRepr::from_classified(frame, c) {
            Ok(r) => {
                let payload = &frame[r.payload_offset..r.payload_offset + r.payload_len];
                socket.deliver(payload, r.src, r.dst);
                // A datagram proves nothing about its sender (anyone on the link can write any
                // source address): it only suggests where answers go, as a SYN does, and never
                // moves a peer the stack knows. Linux does not confirm a neighbour from a
                // received datagram either (only from forward progress, or MSG_CONFIRM).
                self.neighbours.suggest(r.src.ip(), source_mac(frame));
            }
            Err(wire::Error::Checksum) => {
                socket.checksum_errors.fetch_add(1, Ordering::Relaxed);
                self.checksum_error(frame, c, 6);
            }
            Err(_) => self.counters.unclaimed += 1,
        }
        Verdict::Recycle
    }
}
