//! The Internet checksum (RFC 1071): IPv4 header, and the UDP/TCP checksum over the IPv4 or IPv6
//! pseudo-header; incremental update (RFC 1624) for rewriting a 16-bit field.

use std::net::IpAddr;

use netdemux_common::wire::IPV4_MIN_HLEN;

/// One's complement sum of `data` (big-endian 16-bit words, an odd last byte padded with zero),
/// added to `start`, folded to 16 bits (0 only when everything summed is 0) and not inverted.
///
/// Eight bytes at a time: the sum does not depend on byte order (RFC 1071 §2 B), so the words
/// are added as the machine reads them, each 64-bit load split into two 32-bit halves that a
/// 64-bit accumulator holds without overflow (independent adds, which the compiler turns into
/// vector code; a 64-bit add with its carry added back is one serial chain, 1.6× slower over
/// 1460 bytes here), and only the folded result is swapped to network order. Every TCP segment
/// is summed twice (checked on receipt, computed on sending).
pub fn sum(start: u32, data: &[u8]) -> u32 {
    sum_inline(start, data)
}

/// [`sum`] of a length known when compiling: the loop unrolled and the tail's pieces chosen
/// then (an IPv4 header without options: five 32-bit adds, where the loop's set-up and its
/// tail cost as much as the sum).
#[inline]
pub fn sum_fixed<const N: usize>(start: u32, data: &[u8; N]) -> u32 {
    sum_inline(start, data)
}

#[inline(always)]
fn sum_inline(start: u32, data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut add = |w: u64| acc += (w & 0xffff_ffff) + (w >> 32);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        add(u64::from_ne_bytes(w));
    }
    // The last 0–7 bytes, zero-padded to eight: a zero byte adds nothing, and an odd last byte
    // keeps its place (the high half of its big-endian word). Copied in pieces of 4, 2 and 1
    // bytes: a copy of a length known only at run time is a call to memcpy.
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        let mut at = 0;
        if rest.len() & 4 != 0 {
            w[..4].copy_from_slice(&rest[..4]);
            at = 4;
        }
        if rest.len() & 2 != 0 {
            w[at..at + 2].copy_from_slice(&rest[at..at + 2]);
            at += 2;
        }
        if rest.len() & 1 != 0 {
            w[at] = rest[at];
        }
        add(u64::from_ne_bytes(w));
    }
    let native = fold64(acc) as u16;
    fold64(start as u64 + u16::from_be(native) as u64)
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Folds a sum to 16 bits and inverts it: the value that goes into a checksum field.
pub fn finish(acc: u32) -> u16 {
    !(fold64(acc as u64) as u16)
}

/// The IPv4 header checksum of `header` (whose checksum field must be zero).
pub fn ipv4_header(header: &[u8]) -> u16 {
    finish(sum(0, header))
}

/// The pseudo-header sum for `src` -> `dst`, protocol `proto`, L4 length `len`.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum(sum(0, &s.octets()), &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum(sum(0, &s.octets()), &d.octets()),
        _ => panic!("pseudo-header over mixed address families"),
    };
    let len = len as u32;
    fold64(acc as u64 + proto as u64 + (len >> 16) as u64 + (len & 0xffff) as u64)
}

/// The UDP or TCP checksum of `segment` (header with a zero checksum field, then payload). For
/// UDP a computed 0 is sent as 0xffff (RFC 768: 0 means "no checksum").
pub fn l4(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    l4_finish(
        proto,
        sum(pseudo_header(src, dst, proto, segment.len()), segment),
    )
}

/// The checksum to send for a UDP or TCP segment whose sum, pseudo-header included and checksum
/// field zero, is `acc` (see [`l4`]).
pub fn l4_finish(proto: u8, acc: u32) -> u16 {
    let c = finish(acc);
    if proto == netdemux_common::PROTO_UDP && c == 0 {
        0xffff
    } else {
        c
    }
}

/// The checksum after one 16-bit word it covers changed from `old` to `new` (RFC 1624, eqn. 3).
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    finish(sum(0, &[]) + (!check) as u32 + (!old) as u32 + new as u32)
}

/// True when the 16-bit checksum field at `field` of `segment` holds only the pseudo-header
/// sum: what a sender with TX checksum offload hands to its device to finish (a veth peer's
/// frames, by default), rather than a damaged checksum.
pub fn is_partial(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8], field: usize) -> bool {
    let Some(got) = segment.get(field..field + 2) else {
        return false;
    };
    let partial = !finish(pseudo_header(src, dst, proto, segment.len()));
    u16::from_be_bytes([got[0], got[1]]) == partial
}

/// True when `data` (checksum field included) sums to all ones: the checksum is correct.
pub fn verifies(start: u32, data: &[u8]) -> bool {
    finish(sum(start, data)) == 0
}

/// True when the IPv4 header `header` (checksum field included) is correct; the usual 20 bytes
/// through [`sum_fixed`].
pub fn ipv4_header_verifies(header: &[u8]) -> bool {
    match <&[u8; IPV4_MIN_HLEN]>::try_from(header) {
        Ok(h) => finish(sum_fixed(0, h)) == 0,
        Err(_) => verifies(0, header),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header captured from the kernel (198.18.0.1 -> 198.18.0.2, UDP, DF).
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x21, 0x9c, 0x6e, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 198, 18, 0, 1, 198,
        18, 0, 2,
    ];

    #[test]
    fn ipv4_header_checksum_verifies() {
        let mut h = IPV4_HEADER;
        let c = ipv4_header(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(0, &h));
        h[15] ^= 1;
        assert!(!verifies(0, &h));
    }

    /// RFC 1071's definition, a big-endian 16-bit word at a time: what [`sum`] must equal.
    fn sum_by_words(start: u32, data: &[u8]) -> u32 {
        let mut acc = start as u64;
        let mut words = data.chunks(2);
        for w in &mut words {
            acc += (w[0] as u64) << 8 | w.get(1).copied().unwrap_or(0) as u64;
        }
        fold64(acc)
    }

    #[test]
    fn the_eight_byte_sum_equals_the_word_by_word_definition() {
        // Every length up to 1600 (each remainder of 8, odd and even), at every start offset
        // of an 8-byte chunk, with sums that carry (bytes near 0xff) and starts up to u32::MAX.
        let mut rng = crate::test_rng::Xorshift64::new(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.next();
        let bytes: Vec<u8> = (0..1700)
            .map(|i| if i % 3 == 0 { 0xff } else { next() as u8 })
            .collect();
        for len in 0..1600 {
            for offset in 0..8 {
                let data = &bytes[offset..offset + len];
                let start = match len % 4 {
                    0 => 0,
                    1 => next() as u32 & 0xffff,
                    2 => u32::MAX,
                    _ => next() as u32,
                };
                assert_eq!(
                    sum(start, data),
                    sum_by_words(start, data),
                    "length {len} at offset {offset}, start {start:#x}"
                );
            }
        }
        assert_eq!(sum(0, &[]), 0);
        assert_eq!(sum(0, &[0; 64]), 0, "0 only when everything summed is 0");
        assert_eq!(sum(0, &[0xff; 64]), 0xffff, "all ones stays all ones");
    }

    #[test]
    fn the_fixed_length_sum_equals_the_definition() {
        let mut rng = crate::test_rng::Xorshift64::new(0x9e37_79b9_7f4a_7c15);
        for round in 0..2000 {
            let mut h = [0u8; 20];
            rng.fill(&mut h);
            if round % 4 == 0 {
                h.iter_mut().step_by(3).for_each(|b| *b = 0xff);
            }
            let start = rng.next() as u32;
            assert_eq!(sum_fixed(start, &h), sum_by_words(start, &h), "{h:?}");
            let odd: &[u8; 7] = h[..7].try_into().unwrap();
            assert_eq!(sum_fixed(start, odd), sum_by_words(start, odd), "{odd:?}");
        }
    }

    #[test]
    fn an_ipv4_header_verifies_with_and_without_options() {
        let mut h = IPV4_HEADER;
        let c = ipv4_header(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_header_verifies(&h));
        // Every bit of the 20 bytes matters.
        for bit in 0..160 {
            let mut bad = h;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!ipv4_header_verifies(&bad), "bit {bit} flipped");
        }
        // With 4 bytes of options (the general path).
        let mut o = IPV4_HEADER.to_vec();
        o[0] = 0x46;
        o[10..12].fill(0);
        o.extend_from_slice(&[1, 1, 1, 0]);
        let c = ipv4_header(&o);
        o[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_header_verifies(&o));
        o[21] ^= 1;
        assert!(!ipv4_header_verifies(&o));
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(sum(0, &[0x12]), 0x1200);
        assert_eq!(sum(0, &[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn udp_over_ipv6_checksum_verifies_and_zero_becomes_ffff() {
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let dst: IpAddr = "2001:db8::2".parse().unwrap();
        let mut seg = vec![
            0x9c, 0x40, 0x1b, 0x58, 0x00, 0x0d, 0, 0, b'h', b'e', b'l', b'l', b'o',
        ];
        let c = l4(src, dst, 17, &seg);
        seg[6..8].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(pseudo_header(src, dst, 17, seg.len()), &seg));
        assert_ne!(c, 0, "UDP never sends a zero checksum it computed");
    }

    #[test]
    fn incremental_update_matches_recomputation() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let dst: IpAddr = "198.18.0.2".parse().unwrap();
        let mut seg = vec![0x9c, 0x40, 0x1b, 0x58, 0x00, 0x0a, 0, 0, 1, 2];
        let c = l4(src, dst, 17, &seg);
        for port in [0u16, 1, 40001, 65535] {
            let mut s2 = seg.clone();
            s2[0..2].copy_from_slice(&port.to_be_bytes());
            let full = l4(src, dst, 17, &s2);
            let inc = update(c, 0x9c40, port);
            // Both are valid encodings of the same sum (0x0000 and 0xffff are equal in one's
            // complement); compare what a receiver checks.
            s2[6..8].copy_from_slice(&inc.to_be_bytes());
            assert!(
                verifies(pseudo_header(src, dst, 17, s2.len()), &s2),
                "port {port}: {inc:#x} vs {full:#x}"
            );
        }
        seg[6..8].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(pseudo_header(src, dst, 17, seg.len()), &seg));
    }
}
