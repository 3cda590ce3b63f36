//! IPv4 and IPv6 headers: parse (IPv4 options and IPv6 extension headers skipped, fragments and
//! bad IPv4 header checksums refused) and emit (no options; IPv4 with its checksum, DF for TCP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netdemux_common::wire::{
    ETH_P_IPV4, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
    IPPROTO_ROUTING, IPV4_FRAG_MASK, IPV4_MIN_HLEN, IPV6_HLEN, MAX_IPV6_EXT_HEADERS,
};

use super::{Error, checksum};

/// An IP header, either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRepr {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The upper-layer protocol (after any IPv6 extension headers).
    pub protocol: u8,
    /// Length of the upper-layer data.
    pub payload_len: usize,
    /// TTL or hop limit.
    pub hop_limit: u8,
}

fn get(b: &[u8], at: usize) -> Result<u8, Error> {
    b.get(at).copied().ok_or(Error::Truncated)
}

fn be16(b: &[u8], at: usize) -> Result<u16, Error> {
    Ok(u16::from_be_bytes([get(b, at)?, get(b, at + 1)?]))
}

impl IpRepr {
    /// Parses the IP header at the start of `packet`; returns it and the offset of the upper
    /// layer. Bytes after the datagram (Ethernet padding) are ignored.
    pub fn parse(packet: &[u8]) -> Result<(IpRepr, usize), Error> {
        match get(packet, 0)? >> 4 {
            4 => {
                let ihl = ((get(packet, 0)? & 0x0f) as usize) * 4;
                let header = packet
                    .get(..ihl.max(IPV4_MIN_HLEN))
                    .ok_or(Error::Truncated)?;
                let total = be16(packet, 2)? as usize;
                if ihl < IPV4_MIN_HLEN || total < ihl {
                    return Err(Error::Malformed);
                }
                if total > packet.len() {
                    return Err(Error::Truncated);
                }
                if be16(packet, 6)? & IPV4_FRAG_MASK != 0 {
                    return Err(Error::Unsupported); // a fragment
                }
                if !checksum::verifies(0, header) {
                    return Err(Error::Checksum);
                }
                let a = |at: usize| {
                    Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3])
                };
                let r = IpRepr {
                    src: a(12).into(),
                    dst: a(16).into(),
                    protocol: header[9],
                    payload_len: total - ihl,
                    hop_limit: header[8],
                };
                Ok((r, ihl))
            }
            6 => {
                let header = packet.get(..IPV6_HLEN).ok_or(Error::Truncated)?;
                let end = IPV6_HLEN + be16(header, 4)? as usize;
                if end > packet.len() {
                    return Err(Error::Truncated);
                }
                let mut next = header[6];
                let mut off = IPV6_HLEN;
                for _ in 0..MAX_IPV6_EXT_HEADERS {
                    let len = match next {
                        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                            (get(packet, off + 1)? as usize + 1) * 8
                        }
                        IPPROTO_AH => (get(packet, off + 1)? as usize + 2) * 4,
                        IPPROTO_FRAGMENT => return Err(Error::Unsupported), // a fragment
                        _ => break,
                    };
                    next = get(packet, off)?;
                    off += len;
                    if off > end {
                        return Err(Error::Malformed);
                    }
                }
                let addr = |at: usize| -> Result<Ipv6Addr, Error> {
                    let o: [u8; 16] = header[at..at + 16]
                        .try_into()
                        .map_err(|_| Error::Truncated)?;
                    Ok(o.into())
                };
                let r = IpRepr {
                    src: addr(8)?.into(),
                    dst: addr(24)?.into(),
                    protocol: next,
                    payload_len: end - off,
                    hop_limit: header[7],
                };
                Ok((r, off))
            }
            _ => Err(Error::Malformed),
        }
    }

    /// Length of the header [`IpRepr::emit`] writes.
    pub fn header_len(&self) -> usize {
        if self.src.is_ipv4() {
            IPV4_MIN_HLEN
        } else {
            IPV6_HLEN
        }
    }

    /// The ethertype of this family.
    pub fn ethertype(&self) -> u16 {
        if self.src.is_ipv4() {
            ETH_P_IPV4
        } else {
            ETH_P_IPV6
        }
    }

    /// Writes the header at the start of `buf` (IPv4: DF for TCP only); returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.header_len();
        let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = u16::try_from(20 + self.payload_len).map_err(|_| Error::Malformed)?;
                out[0] = 0x45;
                out[1] = 0;
                out[2..4].copy_from_slice(&total.to_be_bytes());
                if self.protocol == netdemux_common::PROTO_TCP {
                    // DF: TCP finds the path's MTU (RFC 1191; the stack lowers its MSS on an
                    // ICMP "fragmentation needed").
                    out[4..6].copy_from_slice(&[0, 0]);
                    out[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
                } else {
                    // Without path-MTU discovery a datagram too big for a link must be
                    // fragmented by the router there, which needs an ID that differs between
                    // datagrams in flight (RFC 6864).
                    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    out[4..6].copy_from_slice(&id.to_be_bytes());
                    out[6..8].copy_from_slice(&[0, 0]);
                }
                out[8] = self.hop_limit;
                out[9] = self.protocol;
                out[10..12].copy_from_slice(&[0, 0]);
                out[12..16].copy_from_slice(&s.octets());
                out[16..20].copy_from_slice(&d.octets());
                let c = checksum::ipv4_header(out);
                out[10..12].copy_from_slice(&c.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let plen = u16::try_from(self.payload_len).map_err(|_| Error::Malformed)?;
                out[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
                out[4..6].copy_from_slice(&plen.to_be_bytes());
                out[6] = self.protocol;
                out[7] = self.hop_limit;
                out[8..24].copy_from_slice(&s.octets());
                out[24..40].copy_from_slice(&d.octets());
            }
            _ => return Err(Error::Malformed),
        }
        Ok(len)
    }
}

/// The IPv4 identification of the next datagram sent without DF.
static NEXT_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);

/// Writes an untagged Ethernet header and an IP header (hop limit 64) for `l4_len` bytes of
/// `protocol` from `src` to `dst` at the start of `frame`; returns where the L4 header goes,
/// or `None` if the headers do not fit or the families differ.
pub fn emit_headers(
    frame: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    l4_len: usize,
) -> Option<usize> {
    if src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    let ip = IpRepr {
        src,
        dst,
        protocol,
        payload_len: l4_len,
        hop_limit: 64,
    };
    let eth = super::ethernet::EthernetRepr {
        dst: dst_mac,
        src: src_mac,
        vlans: [None, None],
        ethertype: ip.ethertype(),
    };
    let l3 = eth.emit(frame).ok()?;
    Some(l3 + ip.emit(frame.get_mut(l3..)?).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks() {
        for (src, dst) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let r = IpRepr {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                protocol: 17,
                payload_len: 8,
                hop_limit: 64,
            };
            let mut buf = [0u8; 64];
            let n = r.emit(&mut buf).unwrap();
            assert_eq!(IpRepr::parse(&buf[..n + 8]).unwrap(), (r, n));
            assert_eq!(
                IpRepr::parse(&buf[..n + 7]),
                Err(Error::Truncated),
                "payload shorter than declared"
            );
        }
        let r = IpRepr {
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            protocol: 6,
            payload_len: 0,
            hop_limit: 64,
        };
        let mut buf = [0u8; 20];
        r.emit(&mut buf).unwrap();
        buf[8] = 1; // TTL changed, checksum not
        assert_eq!(IpRepr::parse(&buf), Err(Error::Checksum));
        let mixed = IpRepr {
            dst: "2001:db8::2".parse().unwrap(),
            ..r
        };
        assert_eq!(mixed.emit(&mut [0u8; 40]), Err(Error::Malformed));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = crate::test_rng::Xorshift32::new(0x1234_5678);
        for len in 0..80 {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len).map(|_| x.next() as u8).collect();
                let _ = IpRepr::parse(&buf);
            }
        }
    }
}
