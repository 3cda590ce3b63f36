//! Building Ethernet frames byte by byte for the data-plane fixtures.
//!
//! The XDP program does not verify checksums, so these frames carry zero checksums; everything
//! the program parses (lengths, versions, flags, next-header chains) is laid out as on the wire.
#![allow(dead_code)]

// The numbers both parsers use, from the one table they share (not every test uses each).
#[allow(unused_imports)]
pub use netdemux_common::{
    PROTO_TCP as TCP, PROTO_UDP as UDP,
    wire::{
        ETH_P_8021AD as VLAN_8021AD, ETH_P_8021Q as VLAN_8021Q, ETH_P_IPV4 as ETH_IPV4,
        ETH_P_IPV6 as ETH_IPV6, IPPROTO_AH as AH, IPPROTO_DSTOPTS as DSTOPTS,
        IPPROTO_FRAGMENT as FRAGMENT, IPPROTO_HOPOPTS as HOPOPTS, IPPROTO_ROUTING as ROUTING,
        MAX_L4_OFFSET,
    },
};

// Numbers the parsers never look for (they pass such frames on).
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_LLDP: u16 = 0x88cc;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const NO_NEXT: u8 = 59;

pub const SRC4: [u8; 4] = [198, 18, 0, 1];
pub const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// `2001:db8::N`.
pub fn v6(n: u8) -> [u8; 16] {
    let mut a = SRC6;
    a[15] = n;
    a
}

/// Ethernet header with `tags` VLAN TPIDs (outermost first) before `ethertype`.
pub fn eth(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes()); // TCI: VLAN id
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An L4 header: UDP (8 bytes) or TCP (20 bytes, SYN), source port 40000.
pub fn l4(proto: u8, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    match proto {
        UDP => {
            h.extend_from_slice(&8u16.to_be_bytes()); // length, patched by callers with payload
            h.extend_from_slice(&[0, 0]);
        }
        TCP => {
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // seq, ack
            h.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]); // doff 5, SYN, window
        }
        _ => h.extend_from_slice(&[8, 0, 0, 0]), // e.g. ICMP echo: type, code, checksum
    }
    h
}

/// IPv4 header (with `options` bytes of NOP options) carrying `payload`.
pub fn ipv4(proto: u8, dst: [u8; 4], options: usize, frag: u16, payload: &[u8]) -> Vec<u8> {
    assert!(options.is_multiple_of(4) && options <= 40);
    let ihl = 5 + options / 4;
    let total = ihl * 4 + payload.len();
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&SRC4);
    h.extend_from_slice(&dst);
    h.extend(std::iter::repeat_n(1u8, options)); // NOP options
    h.extend_from_slice(payload);
    h
}

/// IPv6 header with `next` and `dst`, carrying `payload` (extension headers included).
pub fn ipv6(next: u8, dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&SRC6);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// An IPv6 extension header of `kind` whose next header is `next`, `units` 8-byte units past the
/// first 8 (AH: sized in its own 4-byte units, `units` + 2 of them... see RFC 4302).
pub fn ext(kind: u8, next: u8, units: u8) -> Vec<u8> {
    let len = match kind {
        AH => (units as usize + 2) * 4,
        FRAGMENT => 8,
        _ => (units as usize + 1) * 8,
    };
    let mut h = vec![0u8; len];
    h[0] = next;
    h[1] = if kind == FRAGMENT { 0 } else { units };
    if kind == HOPOPTS || kind == DSTOPTS {
        // PadN option filling the rest of the header.
        h[2] = 1;
        h[3] = (len - 4) as u8;
    }
    h
}

/// A segment routing header (RFC 8754, type 4) with one segment whose next header is `next`
/// and `segments_left` segments still to visit.
pub fn routing(next: u8, segments_left: u8) -> Vec<u8> {
    let mut h = ext(ROUTING, next, 2);
    h[2] = 4;
    h[3] = segments_left;
    h
}

/// Concatenates byte strings.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A UDP payload of `n` bytes behind a UDP header (length field set).
pub fn udp_with_payload(dport: u16, n: usize) -> Vec<u8> {
    let mut h = l4(UDP, dport);
    h[4..6].copy_from_slice(&((8 + n) as u16).to_be_bytes());
    h.extend(std::iter::repeat_n(0xab, n));
    h
}

/// A complete IPv4 frame to `dst:dport` over `proto`, untagged.
pub fn v4(proto: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
    cat(&[
        &eth(&[], ETH_IPV4),
        &ipv4(proto, dst, 0, 0, &l4(proto, dport)),
    ])
}

/// A complete IPv6 frame to `dst:dport` over `proto`, untagged, no extension headers.
pub fn v6_frame(proto: u8, dst: [u8; 16], dport: u16) -> Vec<u8> {
    cat(&[&eth(&[], ETH_IPV6), &ipv6(proto, dst, &l4(proto, dport))])
}

/// An ARP request for 198.18.0.2.
pub fn arp() -> Vec<u8> {
    let mut f = eth(&[], ETH_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0x02, 0, 0, 0, 1]);
    f.extend_from_slice(&SRC4);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[198, 18, 0, 2]);
    f
}
