//! ICMP and ICMPv6 errors about a TCP or UDP packet we sent (RFC 792, RFC 1191, RFC 4443, RFC
//! 8201): which socket sent it, to whom, what went wrong, and the quoted TCP sequence number
//! (RFC 5927: the stack checks it before believing the error).

use std::net::{IpAddr, SocketAddr};

use netdemux_common::{
    FAMILY_V4, PROTO_TCP,
    wire::{
        ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HLEN, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED,
        ICMPV6_DEST_UNREACH, ICMPV6_PACKET_TOO_BIG, ICMPV6_PARAMETER_PROBLEM, ICMPV6_TIME_EXCEEDED,
        IPPROTO_ICMPV6, IPV4_MIN_HLEN, IPV6_HLEN,
    },
};

use super::{Classified, Error, checksum, seq::Seq, source};

/// What an ICMP error says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The path takes packets of at most `mtu` bytes (IPv4 "fragmentation needed and DF set",
    /// IPv6 "packet too big").
    PacketTooBig { mtu: u32 },
    /// The destination cannot be reached: network or host (`hard` false: routes come back),
    /// or port, protocol, or administratively prohibited (`hard` true: RFC 1122 §4.2.3.9).
    Unreachable { hard: bool },
    /// The packet's hop limit ran out on the way.
    TimeExceeded,
    /// A router or the host found a header field it could not process.
    ParameterProblem,
}

/// An ICMP error about a packet one of our sockets sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// The socket that sent the quoted packet (its source).
    pub local: SocketAddr,
    /// Where the quoted packet was going.
    pub remote: SocketAddr,
    /// TCP or UDP.
    pub proto: u8,
    /// What went wrong.
    pub problem: Problem,
    /// The quoted TCP segment's sequence number.
    pub seq: Option<Seq>,
}

impl IcmpError {
    /// Parses and checks (checksum included) the ICMP error in `frame`, which
    /// [`super::classify`] accepted as `c` (with `c.icmp` set).
    pub fn from_classified(frame: &[u8], c: &Classified) -> Result<IcmpError, Error> {
        if !c.icmp {
            return Err(Error::Malformed);
        }
        let message = frame
            .get(c.l4_offset..c.payload_offset + c.payload_len)
            .ok_or(Error::Truncated)?;
        let v4 = c.key.family == FAMILY_V4;
        let start = if v4 {
            0
        } else {
            let from = source(frame, c).ok_or(Error::Malformed)?.ip();
            let to = outer_destination(frame, c).ok_or(Error::Malformed)?;
            checksum::pseudo_header(from, to, IPPROTO_ICMPV6, message.len())
        };
        if !checksum::verifies(start, message) {
            return Err(Error::Checksum);
        }
        let (kind, code) = (message[0], message[1]);
        let field = u32::from_be_bytes([message[4], message[5], message[6], message[7]]);
        let problem = if v4 {
            match (kind, code) {
                (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED) => Problem::PacketTooBig {
                    mtu: field & 0xffff,
                },
                // Network, host, and their "unknown"/"for TOS" variants come and go with routes;
                // protocol, port and "prohibited" ones are the destination's answer.
                (ICMP_DEST_UNREACH, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => {
                    Problem::Unreachable { hard: false }
                }
                (ICMP_DEST_UNREACH, _) => Problem::Unreachable { hard: true },
                (ICMP_TIME_EXCEEDED, _) => Problem::TimeExceeded,
                (ICMP_PARAMETER_PROBLEM, _) => Problem::ParameterProblem,
                _ => return Err(Error::Unsupported),
            }
        } else {
            match (kind, code) {
                (ICMPV6_PACKET_TOO_BIG, _) => Problem::PacketTooBig { mtu: field },
                // No route, beyond the source's scope, address unreachable: soft. Prohibited,
                // port unreachable, policy failure, reject route: hard (Linux's icmpv6_err_convert).
                (ICMPV6_DEST_UNREACH, 0 | 2 | 3) => Problem::Unreachable { hard: false },
                (ICMPV6_DEST_UNREACH, _) => Problem::Unreachable { hard: true },
                (ICMPV6_TIME_EXCEEDED, _) => Problem::TimeExceeded,
                (ICMPV6_PARAMETER_PROBLEM, _) => Problem::ParameterProblem,
                _ => return Err(Error::Unsupported),
            }
        };
        let quoted = &message[ICMP_HLEN..];
        let (hlen, remote_ip): (usize, IpAddr) = if v4 {
            let ip = quoted.get(..IPV4_MIN_HLEN).ok_or(Error::Truncated)?;
            let a: [u8; 4] = ip[16..20].try_into().map_err(|_| Error::Malformed)?;
            (usize::from(ip[0] & 0x0f) * 4, a.into())
        } else {
            let ip = quoted.get(..IPV6_HLEN).ok_or(Error::Truncated)?;
            let a: [u8; 16] = ip[24..40].try_into().map_err(|_| Error::Malformed)?;
            (IPV6_HLEN, a.into())
        };
        let l4 = quoted.get(hlen..hlen + 8).ok_or(Error::Truncated)?;
        let local = c.key.socket_addr().ok_or(Error::Malformed)?;
        let remote = SocketAddr::new(remote_ip, u16::from_be_bytes([l4[2], l4[3]]));
        let seq = (c.key.proto == PROTO_TCP)
            .then(|| Seq(u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])));
        Ok(IcmpError {
            local,
            remote,
            proto: c.key.proto,
            problem,
            seq,
        })
    }
}

/// The destination address of the frame's outer IP header.
fn outer_destination(frame: &[u8], c: &Classified) -> Option<IpAddr> {
    let l3 = c.l3_offset;
    Some(if c.key.family == FAMILY_V4 {
        let a: [u8; 4] = frame.get(l3 + 16..l3 + 20)?.try_into().ok()?;
        a.into()
    } else {
        let a: [u8; 16] = frame.get(l3 + 24..l3 + 40)?.try_into().ok()?;
        a.into()
    })
}

/// Builds an ICMP error frame about `quoted` (an IP packet as we sent it), from `reporter` to
/// the quoted packet's source: what a router on the path would send. For tests and the
/// generator.
pub fn emit_error(
    buf: &mut [u8],
    reporter: IpAddr,
    kind: u8,
    code: u8,
    field: u32,
    quoted: &[u8],
) -> Result<usize, Error> {
    use netdemux_common::wire::{ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP};
    let v4 = quoted.first().ok_or(Error::Truncated)? >> 4 == 4;
    let to: IpAddr = if v4 {
        let a: [u8; 4] = quoted
            .get(12..16)
            .ok_or(Error::Truncated)?
            .try_into()
            .unwrap_or_default();
        a.into()
    } else {
        let a: [u8; 16] = quoted
            .get(8..24)
            .ok_or(Error::Truncated)?
            .try_into()
            .unwrap_or_default();
        a.into()
    };
    if v4 != reporter.is_ipv4() {
        return Err(Error::Malformed);
    }
    // RFC 1812 §4.3.2.3 / RFC 4443 §2.4(c): as much of the packet as fits in 576 / 1280 bytes.
    let max = if v4 { 576 - 20 - 8 } else { 1280 - 40 - 8 };
    let quoted = &quoted[..quoted.len().min(max)];
    let ip_len = if v4 { IPV4_MIN_HLEN } else { IPV6_HLEN };
    let icmp_len = ICMP_HLEN + quoted.len();
    let total = ETH_HLEN + ip_len + icmp_len;
    let frame = buf.get_mut(..total).ok_or(Error::Truncated)?;
    frame.fill(0);
    frame[12..14].copy_from_slice(&(if v4 { ETH_P_IPV4 } else { ETH_P_IPV6 }).to_be_bytes());
    let ip = &mut frame[ETH_HLEN..ETH_HLEN + ip_len];
    match (reporter, to) {
        (IpAddr::V4(r), IpAddr::V4(t)) => {
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((ip_len + icmp_len) as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = IPPROTO_ICMP;
            ip[12..16].copy_from_slice(&r.octets());
            ip[16..20].copy_from_slice(&t.octets());
            let c = checksum::ipv4_header(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(r), IpAddr::V6(t)) => {
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
            ip[6] = IPPROTO_ICMPV6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&r.octets());
            ip[24..40].copy_from_slice(&t.octets());
        }
        _ => return Err(Error::Malformed),
    }
    let icmp = &mut frame[ETH_HLEN + ip_len..];
    icmp[0] = kind;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&field.to_be_bytes());
    icmp[ICMP_HLEN..].copy_from_slice(quoted);
    let start = if v4 {
        0
    } else {
        checksum::pseudo_header(reporter, to, IPPROTO_ICMPV6, icmp.len())
    };
    let c = checksum::finish(checksum::sum(start, icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{classify, tcp};

    /// A TCP segment 198.18.0.2:80 -> 198.18.0.1:40000 as we would send it (IP packet only).
    fn segment(src: &str, dst: &str) -> Vec<u8> {
        let mut f = vec![0u8; 256];
        let h = tcp::TcpHeader {
            src_port: src.parse::<SocketAddr>().unwrap().port(),
            dst_port: dst.parse::<SocketAddr>().unwrap().port(),
            seq: Seq(123_456),
            flags: tcp::Flags::ACK,
            window: 100,
            ..tcp::TcpHeader::default()
        };
        let n = tcp::emit(
            &mut f,
            [0; 6],
            [0; 6],
            src.parse().unwrap(),
            dst.parse().unwrap(),
            &h,
            [&[1u8; 100], &[]],
        )
        .unwrap();
        f[14..n].to_vec()
    }

    #[test]
    fn a_frag_needed_about_our_segment_names_our_socket_the_peer_and_the_mtu() {
        let quoted = segment("198.18.0.2:80", "198.19.0.1:40000");
        let mut f = [0u8; 600];
        let n = emit_error(&mut f, "198.18.0.1".parse().unwrap(), 3, 4, 1400, &quoted).unwrap();
        let c = classify(&f[..n]).unwrap();
        assert!(c.icmp && c.unicast);
        assert_eq!(c.key.socket_addr(), Some("198.18.0.2:80".parse().unwrap()));
        let e = IcmpError::from_classified(&f[..n], &c).unwrap();
        assert_eq!(e.local, "198.18.0.2:80".parse().unwrap());
        assert_eq!(e.remote, "198.19.0.1:40000".parse().unwrap());
        assert_eq!(e.problem, Problem::PacketTooBig { mtu: 1400 });
        assert_eq!(e.seq, Some(Seq(123_456)));
        // A flipped bit: the checksum catches it.
        f[n - 1] ^= 1;
        assert_eq!(
            IcmpError::from_classified(&f[..n], &c),
            Err(Error::Checksum)
        );
    }

    #[test]
    fn icmpv6_errors_parse_with_their_pseudo_header() {
        let quoted = segment("[2001:db8::2]:443", "[2001:db8:1::9]:5000");
        let mut f = [0u8; 1400];
        for (kind, code, want) in [
            (2, 0, Problem::PacketTooBig { mtu: 1280 }),
            (1, 4, Problem::Unreachable { hard: true }),
            (1, 3, Problem::Unreachable { hard: false }),
            (3, 0, Problem::TimeExceeded),
        ] {
            let n = emit_error(
                &mut f,
                "2001:db8::1".parse().unwrap(),
                kind,
                code,
                1280,
                &quoted,
            )
            .unwrap();
            let c = classify(&f[..n]).unwrap();
            let e = IcmpError::from_classified(&f[..n], &c).unwrap();
            assert_eq!(e.problem, want);
            assert_eq!(e.local, "[2001:db8::2]:443".parse().unwrap());
            assert_eq!(e.remote, "[2001:db8:1::9]:5000".parse().unwrap());
        }
    }

    #[test]
    fn other_icmp_and_short_quotes_are_not_errors_about_a_socket() {
        let quoted = segment("198.18.0.2:80", "198.19.0.1:40000");
        let mut f = [0u8; 600];
        // Echo request: not an error.
        let n = emit_error(&mut f, "198.18.0.1".parse().unwrap(), 8, 0, 0, &quoted).unwrap();
        assert_eq!(classify(&f[..n]), None);
        // A quote shorter than the IP header and 8 bytes of TCP.
        let n = emit_error(
            &mut f,
            "198.18.0.1".parse().unwrap(),
            3,
            1,
            0,
            &quoted[..27],
        )
        .unwrap();
        assert_eq!(classify(&f[..n]), None);
        // Every truncation of a good one is refused without a panic.
        let n = emit_error(&mut f, "198.18.0.1".parse().unwrap(), 3, 4, 1400, &quoted).unwrap();
        for cut in 0..n {
            if let Some(c) = classify(&f[..cut]) {
                let _ = IcmpError::from_classified(&f[..cut], &c);
            }
        }
    }
}
