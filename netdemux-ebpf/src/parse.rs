//! Bounds-checked parsing of a frame down to the destination socket address.
//!
//! Every read goes through [`Frame::bytes`], which checks the read against the end of the packet,
//! the way the verifier demands. Offsets that depend on packet contents (IPv4 IHL, IPv6
//! extension header lengths) are clamped to [`MAX_L4_OFFSET`] so the verifier can bound them.
//! The result is either the key to look up or the reason the frame goes to the kernel.
//!
//! An ICMP or ICMPv6 error quoting a TCP/UDP packet is looked up by the quoted packet's
//! *source* socket address: the error is about a packet a bound socket sent, so it goes where
//! that socket lives.

use netdemux_common::{
    BindKey, Counter, FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP,
    wire::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ICMP_HLEN, IPPROTO_AH,
        IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6,
        IPPROTO_ROUTING, IPV4_FRAG_MASK, IPV4_MIN_HLEN, IPV6_HLEN, MAX_IPV6_EXT_HEADERS,
        MAX_L4_OFFSET, MAX_VLAN_TAGS, TCP_MIN_HLEN, UDP_HLEN, VLAN_TAG_LEN, icmp_error,
        ipv4_unicast, ipv6_unicast, mac_unicast,
    },
};

/// A frame between `start` and `end`, the packet pointers of the XDP context.
pub struct Frame {
    start: usize,
    end: usize,
}

impl Frame {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// `N` bytes at `off`, or `None` when they run past the end of the frame.
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<&[u8; N]> {
        if self.start + off + N > self.end {
            return None;
        }
        // SAFETY: the N bytes at start+off lie inside the packet (checked just above); the
        // packet is readable for the whole program run and [u8; N] has alignment 1.
        Some(unsafe { &*((self.start + off) as *const [u8; N]) })
    }

    /// True when the frame holds at least `off` bytes.
    #[inline(always)]
    fn holds(&self, off: usize) -> bool {
        self.start + off <= self.end
    }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Whether a frame is for one host, worked out when asked: only a wildcard binding needs to
/// know (RFC 1122 never answers broadcast or multicast TCP, and a wildcard service must not
/// either), so a hit on an exact binding, and a miss on a port with nothing bound, never pay for
/// it.
#[derive(Clone, Copy)]
pub struct Destination {
    /// The first byte of the destination MAC (its group bit).
    mac0: u8,
    /// The first word of the destination IP address, in memory order.
    ip0: u32,
    v4: bool,
}

impl Destination {
    #[inline(always)]
    fn v4(mac0: u8, ip0: u32) -> Self {
        Destination {
            mac0,
            ip0,
            v4: true,
        }
    }

    #[inline(always)]
    fn v6(mac0: u8, ip0: u32) -> Self {
        Destination {
            mac0,
            ip0,
            v4: false,
        }
    }

    /// True when neither the link nor the IP destination is a group (or IPv4 broadcast).
    #[inline(always)]
    pub fn unicast(self) -> bool {
        let ip = if self.v4 {
            ipv4_unicast(self.ip0.to_ne_bytes())
        } else {
            ipv6_unicast(self.ip0.to_ne_bytes()[0])
        };
        ip && mac_unicast(self.mac0)
    }
}

/// What a program does with a frame's binding key.
pub trait OnKey {
    type Out;
    /// Called with the key of the frame's destination and the destination itself, which says
    /// whether a wildcard binding may take the frame ([`Destination::unicast`]).
    /// Implementations are `#[inline(always)]`: a closure could not be, and LLVM made one into
    /// a function whose key went through the stack.
    fn on_key(&self, key: BindKey, to: Destination) -> Self::Out;
}

/// `then.on_key` on the binding key of `frame`'s destination, or the pass reason when there is
/// none. `then` is inlined once per address family, so each copy knows its family as a
/// constant: an IPv4 lookup carries one address word, not four, and keeps it in a register.
#[inline(always)]
pub fn classify<T: OnKey>(frame: &Frame, then: &T) -> Result<T::Out, Counter> {
    let (ethertype, l3, mac0) = ethernet(frame)?;
    match ethertype {
        ETH_P_IPV4 => {
            let (key, ip0) = ipv4(frame, l3)?;
            Ok(then.on_key(key, Destination::v4(mac0, ip0)))
        }
        ETH_P_IPV6 => {
            let (key, ip0) = ipv6(frame, l3)?;
            Ok(then.on_key(key, Destination::v6(mac0, ip0)))
        }
        _ => Err(Counter::PassNotIp),
    }
}

/// Ethertype after up to [`MAX_VLAN_TAGS`] VLAN tags, the offset of the L3 header, and the
/// first byte of the destination MAC (its group bit).
#[inline(always)]
fn ethernet(frame: &Frame) -> Result<(u16, usize, u8), Counter> {
    let eth: &[u8; ETH_HLEN] = frame.bytes(0).ok_or(Counter::PassMalformed)?;
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // Tag: TCI (2 bytes), then the encapsulated ethertype.
        let tag: &[u8; VLAN_TAG_LEN] = frame.bytes(off).ok_or(Counter::PassMalformed)?;
        ethertype = be16([tag[2], tag[3]]);
        off += VLAN_TAG_LEN;
    }
    Ok((ethertype, off, eth[0]))
}

/// The key of an IPv4 packet at `off`, and the first word of its destination address.
#[inline(always)]
fn ipv4(frame: &Frame, off: usize) -> Result<(BindKey, u32), Counter> {
    let ip: &[u8; IPV4_MIN_HLEN] = frame.bytes(off).ok_or(Counter::PassMalformed)?;
    if ip[0] >> 4 != 4 {
        return Err(Counter::PassMalformed);
    }
    let ihl = ((ip[0] & 0x0f) as usize) << 2;
    if ihl < IPV4_MIN_HLEN {
        return Err(Counter::PassMalformed);
    }
    let total_len = be16([ip[2], ip[3]]) as usize;
    // The datagram must hold its own header and fit in the frame (Ethernet may pad beyond it).
    if total_len < ihl || !frame.holds(off + total_len) {
        return Err(Counter::PassMalformed);
    }
    if half(ip, 6) & IPV4_FRAG_MASK.to_be() != 0 {
        return Err(Counter::PassFragment);
    }
    let proto = ip[9];
    let l4 = off + ihl;
    let dst = word(ip, 16);
    if proto == IPPROTO_ICMP {
        return Ok((icmp4(frame, l4, off + total_len)?, dst));
    }
    let port = l4_dst_port(frame, proto, l4, off + total_len)?;
    let key = BindKey {
        addr: [dst, 0, 0, 0],
        port,
        proto,
        family: FAMILY_V4,
    };
    Ok((key, dst))
}

/// The key of the socket whose packet an ICMP error at `l4` quotes: the quoted IPv4 header's
/// source address and its TCP/UDP source port.
#[inline(always)]
fn icmp4(frame: &Frame, l4: usize, ip_end: usize) -> Result<BindKey, Counter> {
    let icmp: &[u8; ICMP_HLEN] = frame.bytes(l4).ok_or(Counter::PassMalformed)?;
    if !icmp_error(IPPROTO_ICMP, icmp[0]) {
        return Err(Counter::PassNotTcpUdp);
    }
    let inner = l4 + ICMP_HLEN;
    if inner > MAX_L4_OFFSET {
        return Err(Counter::PassMalformed);
    }
    let ip: &[u8; IPV4_MIN_HLEN] = frame.bytes(inner).ok_or(Counter::PassMalformed)?;
    let ihl = ((ip[0] & 0x0f) as usize) << 2;
    if ip[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return Err(Counter::PassMalformed);
    }
    if be16([ip[6], ip[7]]) & 0x1fff != 0 {
        // A later fragment quoted: no ports to go by.
        return Err(Counter::PassNotTcpUdp);
    }
    let port = quoted_src_port(frame, ip[9], inner + ihl, ip_end)?;
    Ok(BindKey {
        addr: [word(ip, 12), 0, 0, 0],
        port,
        proto: ip[9],
        family: FAMILY_V4,
    })
}

/// The key of the socket whose packet an ICMPv6 error at `l4` quotes (the quoted header's
/// source; TCP or UDP right behind it, as the socket sent it).
#[inline(always)]
fn icmp6(frame: &Frame, l4: usize, ip_end: usize) -> Result<BindKey, Counter> {
    let icmp: &[u8; ICMP_HLEN] = frame.bytes(l4).ok_or(Counter::PassMalformed)?;
    if !icmp_error(IPPROTO_ICMPV6, icmp[0]) {
        return Err(Counter::PassNotTcpUdp);
    }
    let inner = l4 + ICMP_HLEN;
    if inner > MAX_L4_OFFSET {
        return Err(Counter::PassMalformed);
    }
    let ip: &[u8; IPV6_HLEN] = frame.bytes(inner).ok_or(Counter::PassMalformed)?;
    if ip[0] >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    let port = quoted_src_port(frame, ip[6], inner + IPV6_HLEN, ip_end)?;
    Ok(BindKey {
        addr: [word(ip, 8), word(ip, 12), word(ip, 16), word(ip, 20)],
        port,
        proto: ip[6],
        family: FAMILY_V6,
    })
}

/// The source port of the quoted TCP/UDP header at `l4` (an ICMP error quotes at least its
/// first 8 bytes), as a [`BindKey`] holds it.
#[inline(always)]
fn quoted_src_port(frame: &Frame, proto: u8, l4: usize, ip_end: usize) -> Result<u16, Counter> {
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(Counter::PassNotTcpUdp);
    }
    if l4 > MAX_L4_OFFSET {
        return Err(Counter::PassMalformed);
    }
    // The packet check first: after the IP-length check LLVM would drop it as implied, and
    // the verifier cannot follow that reasoning.
    let ports: &[u8; 8] = frame.bytes(l4).ok_or(Counter::PassMalformed)?;
    if l4 + 8 > ip_end {
        return Err(Counter::PassMalformed);
    }
    Ok(u16::from_ne_bytes([ports[0], ports[1]]))
}

/// The key of an IPv6 packet at `off`, and the first word of its destination address.
#[inline(always)]
fn ipv6(frame: &Frame, off: usize) -> Result<(BindKey, u32), Counter> {
    let ip: &[u8; IPV6_HLEN] = frame.bytes(off).ok_or(Counter::PassMalformed)?;
    if ip[0] >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    let payload_len = be16([ip[4], ip[5]]) as usize;
    let ip_end = off + IPV6_HLEN + payload_len;
    if !frame.holds(ip_end) {
        return Err(Counter::PassMalformed);
    }
    let addr = [word(ip, 24), word(ip, 28), word(ip, 32), word(ip, 36)];

    let mut next = ip[6];
    let mut l4 = off + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            PROTO_TCP | PROTO_UDP | IPPROTO_ICMPV6 => break,
            IPPROTO_FRAGMENT => return Err(Counter::PassFragment),
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                // Every one of them is at least 8 bytes long; the routing header's fourth
                // byte is Segments Left.
                let ext: &[u8; 4] = frame.bytes(l4).ok_or(Counter::PassMalformed)?;
                if next == IPPROTO_ROUTING && ext[3] != 0 {
                    return Err(Counter::PassInTransit);
                }
                let units = ext[1] as usize;
                let len = if next == IPPROTO_AH {
                    // RFC 4302: AH's length is in 4-octet units, minus 2.
                    (units + 2) << 2
                } else {
                    // RFC 8200: length in 8-octet units, not counting the first 8.
                    (units + 1) << 3
                };
                next = ext[0];
                len
            }
            _ => return Err(Counter::PassNotTcpUdp),
        };
        l4 += len;
        if l4 > MAX_L4_OFFSET || l4 > ip_end {
            return Err(Counter::PassMalformed);
        }
    }
    match next {
        PROTO_TCP | PROTO_UDP => {}
        IPPROTO_ICMPV6 => return Ok((icmp6(frame, l4, ip_end)?, addr[0])),
        // Still inside a chain longer than we walk.
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            return Err(Counter::PassMalformed);
        }
        _ => return Err(Counter::PassNotTcpUdp),
    }
    let port = l4_dst_port(frame, next, l4, ip_end)?;
    let key = BindKey {
        addr,
        port,
        proto: next,
        family: FAMILY_V6,
    };
    Ok((key, addr[0]))
}

/// Four bytes at `at` as a word whose memory holds them in order (a [`BindKey`] address word),
/// read with one load (see `build.rs`: misaligned loads are allowed).
#[inline(always)]
fn word<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    let bytes: &[u8; 4] = b[at..at + 4].try_into().unwrap_or(&[0; 4]);
    // SAFETY: `bytes` is 4 readable bytes; read_unaligned needs no alignment.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<u32>()) }
}

/// Two bytes at `at` in memory order, read with one load (compare with `x.to_be()`).
#[inline(always)]
fn half<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    let bytes: &[u8; 2] = b[at..at + 2].try_into().unwrap_or(&[0; 2]);
    // SAFETY: `bytes` is 2 readable bytes; read_unaligned needs no alignment.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<u16>()) }
}

/// Destination port of the TCP or UDP header at `l4`, which must end within `ip_end`: two
/// bytes in network order, as a [`BindKey`] holds them.
#[inline(always)]
fn l4_dst_port(frame: &Frame, proto: u8, l4: usize, ip_end: usize) -> Result<u16, Counter> {
    let hlen = match proto {
        PROTO_UDP => UDP_HLEN,
        PROTO_TCP => TCP_MIN_HLEN,
        _ => return Err(Counter::PassNotTcpUdp),
    };
    if l4 > MAX_L4_OFFSET || l4 + hlen > ip_end {
        return Err(Counter::PassMalformed);
    }
    let hdr: &[u8; 4] = frame.bytes(l4).ok_or(Counter::PassMalformed)?;
    if !frame.holds(l4 + hlen) {
        return Err(Counter::PassMalformed);
    }
    Ok(u16::from_ne_bytes([hdr[2], hdr[3]]))
}
