//! The destination socket address of an Ethernet frame (VLAN, IPv4 with options, IPv6 with
//! extension headers, TCP/UDP), mirroring `netdemux-ebpf/src/parse.rs` — and, for an ICMP or
//! ICMPv6 error quoting a TCP/UDP packet, the quoted packet's source, as the program sees it.

use netdemux_common::{
    BindKey, FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP,
    wire::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ICMP_HLEN, IPPROTO_AH,
        IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING,
        IPV4_FRAG_MASK, IPV4_MIN_HLEN, IPV6_HLEN, MAX_IPV6_EXT_HEADERS, MAX_L4_OFFSET,
        MAX_VLAN_TAGS, TCP_MIN_HLEN, UDP_HLEN, VLAN_TAG_LEN, icmp_error, ipv4_unicast,
        ipv6_unicast, mac_unicast,
    },
};

/// What [`classify`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The binding-table key of the destination (of an ICMP error: the quoted packet's source).
    pub key: BindKey,
    /// Offset of the IP header (after any VLAN tags).
    pub l3_offset: usize,
    /// Offset of the TCP/UDP header (of an ICMP error: the ICMP header).
    pub l4_offset: usize,
    /// True when the IP header carries options (IPv4) or extension headers (IPv6).
    pub ip_extras: bool,
    /// Offset of the L4 payload in the frame (of an ICMP error: the quoted packet).
    pub payload_offset: usize,
    /// Length of the L4 payload, as the IP header (and the UDP header) give it.
    pub payload_len: usize,
    /// The frame is for one host (link and IP destination): wildcard bindings take only these.
    pub unicast: bool,
    /// The frame is an ICMP or ICMPv6 error about a packet `key` sent.
    pub icmp: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The destination of `frame`, or `None` for anything that is not an unfragmented, well-formed
/// TCP or UDP packet over IPv4 or IPv6 (or an ICMP error quoting one). It accepts what the XDP
/// program redirects, and refuses besides a TCP header whose data offset runs past the IP
/// payload (the program looks no further than the ports).
pub fn classify(frame: &[u8]) -> Option<Classified> {
    let mut ethertype = be16(frame, 12)?;
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(frame, off + 2)?;
        off += VLAN_TAG_LEN;
    }
    let l3 = off;
    let (addr, family, proto, l4, ip_end, ip_unicast) = match ethertype {
        ETH_P_IPV4 => {
            let ip = frame.get(off..off + IPV4_MIN_HLEN)?;
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let total = be16(ip, 2)? as usize;
            if ip[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || total < ihl || off + total > frame.len() {
                return None;
            }
            if be16(ip, 6)? & IPV4_FRAG_MASK != 0 {
                return None; // fragment
            }
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&ip[16..20]);
            let unicast = ipv4_unicast([ip[16], ip[17], ip[18], ip[19]]);
            (addr, FAMILY_V4, ip[9], off + ihl, off + total, unicast)
        }
        ETH_P_IPV6 => {
            let ip = frame.get(off..off + IPV6_HLEN)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            let ip_end = off + IPV6_HLEN + be16(ip, 4)? as usize;
            if ip_end > frame.len() {
                return None;
            }
            let mut next = ip[6];
            let mut l4 = off + IPV6_HLEN;
            for _ in 0..MAX_IPV6_EXT_HEADERS {
                let len = match next {
                    PROTO_TCP | PROTO_UDP | IPPROTO_ICMPV6 => break,
                    // Segments left: not at its final destination (the program passes it).
                    IPPROTO_ROUTING if *frame.get(l4 + 3)? != 0 => return None,
                    IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                        frame.get(l4 + 3)?;
                        (*frame.get(l4 + 1)? as usize + 1) * 8
                    }
                    IPPROTO_AH => (*frame.get(l4 + 1)? as usize + 2) * 4,
                    _ => return None, // fragment, ESP, ...
                };
                next = *frame.get(l4)?;
                l4 += len;
                if l4 > MAX_L4_OFFSET || l4 > ip_end {
                    return None;
                }
            }
            let mut addr = [0u8; 16];
            addr.copy_from_slice(&ip[24..40]);
            (addr, FAMILY_V6, next, l4, ip_end, ipv6_unicast(ip[24]))
        }
        _ => return None,
    };
    let plain = if family == FAMILY_V4 {
        IPV4_MIN_HLEN
    } else {
        IPV6_HLEN
    };
    let unicast = ip_unicast && mac_unicast(*frame.first()?);
    if proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 {
        let key = quoted_source(frame, proto, l4, ip_end)?;
        return Some(Classified {
            key,
            l3_offset: l3,
            l4_offset: l4,
            ip_extras: l4 - l3 != plain,
            payload_offset: l4 + ICMP_HLEN,
            payload_len: ip_end - (l4 + ICMP_HLEN),
            unicast,
            icmp: true,
        });
    }
    let (hlen, payload_offset) = match proto {
        PROTO_UDP => (UDP_HLEN, l4 + UDP_HLEN),
        PROTO_TCP => {
            let doff = ((*frame.get(l4 + 12)? >> 4) as usize) * 4;
            (TCP_MIN_HLEN, l4 + doff.max(TCP_MIN_HLEN))
        }
        _ => return None,
    };
    if l4 > MAX_L4_OFFSET || l4 + hlen > ip_end || payload_offset > ip_end {
        return None;
    }
    let port = be16(frame, l4 + 2)?;
    Some(Classified {
        key: BindKey::new(addr, port, proto, family),
        l3_offset: l3,
        l4_offset: l4,
        ip_extras: l4 - l3 != plain,
        payload_offset,
        payload_len: ip_end - payload_offset,
        unicast,
        icmp: false,
    })
}

/// The key of the socket that sent the packet an ICMP error at `l4` quotes: the quoted
/// header's source address and TCP/UDP source port (a quoted IPv6 packet with TCP/UDP right
/// behind its header; a quoted IPv4 packet not a later fragment).
fn quoted_source(frame: &[u8], proto: u8, l4: usize, ip_end: usize) -> Option<BindKey> {
    if !icmp_error(proto, *frame.get(l4)?) || l4 + ICMP_HLEN > ip_end {
        return None;
    }
    let inner = l4 + ICMP_HLEN;
    if inner > MAX_L4_OFFSET {
        return None;
    }
    let (addr, family, quoted, inner_l4) = if proto == IPPROTO_ICMP {
        let ip = frame.get(inner..inner + IPV4_MIN_HLEN)?;
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ip[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || be16(ip, 6)? & 0x1fff != 0 {
            return None;
        }
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&ip[12..16]);
        (addr, FAMILY_V4, ip[9], inner + ihl)
    } else {
        let ip = frame.get(inner..inner + IPV6_HLEN)?;
        if ip[0] >> 4 != 6 {
            return None;
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&ip[8..24]);
        (addr, FAMILY_V6, ip[6], inner + IPV6_HLEN)
    };
    if (quoted != PROTO_TCP && quoted != PROTO_UDP)
        || inner_l4 > MAX_L4_OFFSET
        || inner_l4 + 8 > ip_end
    {
        return None;
    }
    Some(BindKey::new(addr, be16(frame, inner_l4)?, quoted, family))
}

/// The source socket address of a frame that [`classify`] accepted as `c`.
pub fn source(frame: &[u8], c: &Classified) -> Option<std::net::SocketAddr> {
    let ip: std::net::IpAddr = if c.key.family == FAMILY_V4 {
        let a: [u8; 4] = frame
            .get(c.l3_offset + 12..c.l3_offset + 16)?
            .try_into()
            .ok()?;
        a.into()
    } else {
        let a: [u8; 16] = frame
            .get(c.l3_offset + 8..c.l3_offset + 24)?
            .try_into()
            .ok()?;
        a.into()
    };
    Some(std::net::SocketAddr::new(ip, be16(frame, c.l4_offset)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram 198.18.0.1:40000 -> `dst`:`port`.
    fn udp4(dst: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        let src = "198.18.0.1:40000".parse().unwrap();
        let dst = std::net::SocketAddr::from((dst, port));
        let n = crate::wire::udp::emit(&mut f, [0; 6], [0; 6], src, dst, payload).unwrap();
        f.truncate(n);
        f
    }

    #[test]
    fn finds_the_binding_key_and_payload() {
        let f = udp4([198, 18, 0, 2], 7000, b"hello");
        let c = classify(&f).unwrap();
        assert_eq!(source(&f, &c), Some("198.18.0.1:40000".parse().unwrap()));
        assert_eq!(
            c.key,
            BindKey::from_socket_addr(PROTO_UDP, "198.18.0.2:7000".parse().unwrap())
        );
        assert_eq!(
            &f[c.payload_offset..c.payload_offset + c.payload_len],
            b"hello"
        );
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut f = udp4([198, 18, 0, 2], 7000, b"hi");
        f.resize(60, 0);
        assert_eq!(classify(&f).unwrap().payload_len, 2);
    }

    #[test]
    fn every_truncation_and_garbage_is_refused_without_panic() {
        let f = udp4([198, 18, 0, 2], 7000, b"payload");
        for cut in 0..f.len() - 7 {
            assert_eq!(classify(&f[..cut]), None, "cut at {cut}");
        }
        let mut rng = crate::test_rng::Xorshift32::new(0x1234_5678);
        for _ in 0..20_000 {
            let mut g = f.clone();
            for _ in 0..4 {
                let x = rng.next();
                let i = x as usize % g.len();
                g[i] = (x >> 8) as u8;
            }
            let _ = classify(&g);
        }
    }

    #[test]
    fn fragments_are_refused() {
        let mut f = udp4([198, 18, 0, 2], 7000, b"x");
        f[20] = 0x20; // MF
        assert_eq!(classify(&f), None);
    }
}
