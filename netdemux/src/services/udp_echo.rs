//! `--udp-echo ADDR:PORT`: answers each datagram with the same payload, from the address it was
//! sent to, to the MAC, address and port it came from.
//!
//! The answer is the received frame, rewritten in place: Ethernet, IP and UDP source and
//! destination swapped, which leaves both checksums valid (each sums the same words in another
//! order). The UDP checksum is checked first, as the kernel checks it before a socket sees the
//! datagram: a datagram whose checksum is wrong is not answered (an echo must not send damaged
//! bytes back under a checksum that vouches for them). Two received checksums are answered with
//! a computed one: 0 over IPv4 (the sender computed none, RFC 768), and the pseudo-header sum a
//! sender using checksum offload hands over (the kernel on veth does) for hardware to finish.
//! The frame goes back out without a copy.

use netdemux_common::{
    PROTO_UDP,
    wire::{IPV4_MIN_HLEN, IPV6_HLEN, UDP_HLEN, ipv4_unicast, ipv6_unicast},
};

use std::net::IpAddr;

use crate::wire::{Classified, checksum};

/// Source ports never answered: an echo there would start a loop between two echo services
/// (7 echo, 19 chargen; 0 is no port at all).
const LOOP_PORTS: [u16; 3] = [0, 7, 19];

/// Why a datagram got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Not one to answer: IP options or extension headers, a group address, a loop port, a
    /// length that does not add up.
    Declined,
    /// Its UDP checksum is wrong (or, over IPv6, missing).
    Checksum,
}

/// Rewrites `frame`, a UDP datagram as classified in `c`, into its answer and returns the length
/// to transmit; the frame is left untouched when it gets no answer: IPv4 options or IPv6
/// extension headers (whose echo would carry source routes or options back unchanged), a
/// broadcast or multicast destination or source (RFC 1122 §3.2.2 and §4.1.3.6: one datagram must
/// not draw answers from a whole network), the loop ports as source, or a wrong checksum.
pub fn reply_in_place(frame: &mut [u8], c: &Classified) -> Result<u32, Unanswered> {
    use Unanswered::Declined;
    if c.ip_extras || !c.unicast || c.icmp {
        return Err(Declined);
    }
    let answer_len = frame.len() as u32;
    let (l3, l4) = (c.l3_offset, c.l4_offset);
    // Split where the UDP header starts: Ethernet and IP before, the datagram after. Each field
    // is then a fixed-size piece of one of them, so the bounds are checked here, once. The
    // addresses, source then destination, end where the UDP header starts in both families (no
    // options or extension headers here).
    let (head, rest) = frame.split_at_mut_checked(l4).ok_or(Declined)?;
    let datagram = rest.get_mut(..c.payload_len + UDP_HLEN).ok_or(Declined)?;
    let (eth, ip) = head.split_first_chunk_mut::<12>().ok_or(Declined)?;
    match l4.checked_sub(l3) {
        Some(IPV4_MIN_HLEN) => {
            let (_, addrs) = ip.split_last_chunk_mut::<8>().ok_or(Declined)?;
            let (src, dst) = pair::<4>(addrs).ok_or(Declined)?;
            if !ipv4_unicast(*src) {
                return Err(Declined);
            }
            answer(eth, src, dst, datagram)?;
        }
        Some(IPV6_HLEN) => {
            let (_, addrs) = ip.split_last_chunk_mut::<32>().ok_or(Declined)?;
            let (src, dst) = pair::<16>(addrs).ok_or(Declined)?;
            if !ipv6_unicast(src[0]) {
                return Err(Declined);
            }
            answer(eth, src, dst, datagram)?;
        }
        _ => return Err(Declined),
    }
    Ok(answer_len)
}

/// The answer to `datagram` from `src` to `dst` (addresses of `A` bytes: 4 or 16), with the
/// Ethernet destination and source in `eth`, written in place.
#[inline(always)]
fn answer<const A: usize>(
    eth: &mut [u8; 12],
    src: &mut [u8; A],
    dst: &mut [u8; A],
    datagram: &mut [u8],
) -> Result<(), Unanswered> {
    use Unanswered::{Checksum, Declined};
    let (macs, udp) = (pair::<6>(eth), datagram.first_chunk::<UDP_HLEN>());
    let (Some((mac_dst, mac_src)), Some(&udp)) = (macs, udp) else {
        return Err(Declined);
    };
    let src_port = u16::from_be_bytes([udp[0], udp[1]]);
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if LOOP_PORTS.contains(&src_port) || mac_src[0] & 1 != 0 || udp_len != datagram.len() {
        return Err(Declined);
    }
    let received = u16::from_be_bytes([udp[6], udp[7]]);
    // One sum over the pseudo-header and the datagram (the addresses' part unrolled, their
    // length being fixed). The swap below only reorders the words it covers, so it is also the
    // answer's sum: with the received checksum field taken out of it, the sum a new checksum is
    // made of.
    let pseudo = checksum::sum_fixed(
        checksum::sum_fixed(u32::from(PROTO_UDP) + udp_len as u32, src),
        dst,
    );
    let total = checksum::sum(pseudo, datagram);
    // True: the received checksum is complete and right, and stays right after the swap.
    let keep = if received == 0 {
        // No checksum: allowed over IPv4 only (RFC 8200 §8.1 for IPv6).
        if A != 4 {
            return Err(Checksum);
        }
        false
    } else if checksum::finish(total) == 0 {
        true
    } else if partial_offload(src, dst, datagram) {
        false
    } else {
        return Err(Checksum);
    };
    std::mem::swap(mac_dst, mac_src);
    std::mem::swap(src, dst);
    // The ports: the datagram's first four bytes (it holds at least its 8-byte header).
    if let Some((sport, dport)) = datagram.get_mut(..4).and_then(pair::<2>) {
        std::mem::swap(sport, dport);
    }
    if !keep {
        // Taking a word out of a one's-complement sum is adding its complement.
        let sum = checksum::l4_finish(PROTO_UDP, total + u32::from(!received));
        datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(())
}

/// `bytes` as its two halves of `N` bytes each (`None` unless it holds exactly `2 * N`).
#[inline(always)]
fn pair<const N: usize>(bytes: &mut [u8]) -> Option<(&mut [u8; N], &mut [u8; N])> {
    let (a, b) = bytes.split_at_mut_checked(N)?;
    Some((a.try_into().ok()?, b.try_into().ok()?))
}

/// True when `datagram`, from `src` to `dst`, carries only its pseudo-header sum, as a sender
/// with checksum offload hands it to its device (see [`checksum::is_partial`]). Only a datagram
/// whose checksum is not right asks.
fn partial_offload(src: &[u8], dst: &[u8], datagram: &[u8]) -> bool {
    let ip = |a: &[u8]| -> Option<IpAddr> {
        match a.len() {
            4 => <[u8; 4]>::try_from(a).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(a).ok().map(IpAddr::from),
            _ => None,
        }
    };
    let (Some(src), Some(dst)) = (ip(src), ip(dst)) else {
        return false;
    };
    checksum::is_partial(src, dst, PROTO_UDP, datagram, 6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        checksum::{pseudo_header, verifies},
        classify,
    };

    /// A UDP datagram over IPv4 as the kernel sent it in the tests' namespace (checksums set).
    fn kernel_udp4() -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
        let mut ip = vec![
            0x45, 0, 0, 33, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        let c = crate::wire::checksum::ipv4_header(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut udp = vec![
            0x9c, 0x40, 0x1b, 0x58, 0, 13, 0, 0, b'h', b'e', b'l', b'l', b'o',
        ];
        let ck =
            crate::wire::checksum::l4([198, 18, 0, 1].into(), [198, 18, 0, 2].into(), 17, &udp);
        udp[6..8].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&udp);
        f
    }

    #[test]
    fn the_answer_is_addressed_back_and_its_checksums_still_verify() {
        let mut f = kernel_udp4();
        let c = classify(&f).unwrap();
        assert_eq!(reply_in_place(&mut f, &c), Ok(f.len() as u32));
        assert_eq!(&f[0..6], &[0x02, 0, 0, 0, 0, 0x01], "to the sender's MAC");
        assert_eq!(
            &f[26..30],
            &[198, 18, 0, 2],
            "from the address it was sent to"
        );
        assert_eq!(&f[30..34], &[198, 18, 0, 1]);
        assert_eq!(
            u16::from_be_bytes([f[34], f[35]]),
            7000,
            "from the bound port"
        );
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 40000);
        assert_eq!(&f[42..], b"hello");
        assert!(verifies(0, &f[14..34]), "IPv4 header checksum");
        let ph = pseudo_header([198, 18, 0, 2].into(), [198, 18, 0, 1].into(), 17, 13);
        assert!(verifies(ph, &f[34..]), "UDP checksum");
    }

    #[test]
    fn a_partial_offload_checksum_becomes_a_full_one() {
        let mut f = kernel_udp4();
        // What a sender with checksum offload hands over: only the pseudo-header sum.
        let partial = !crate::wire::checksum::finish(pseudo_header(
            [198, 18, 0, 1].into(),
            [198, 18, 0, 2].into(),
            17,
            13,
        ));
        f[40..42].copy_from_slice(&partial.to_be_bytes());
        let c = classify(&f).unwrap();
        reply_in_place(&mut f, &c).unwrap();
        let ph = pseudo_header([198, 18, 0, 2].into(), [198, 18, 0, 1].into(), 17, 13);
        assert!(verifies(ph, &f[34..]), "UDP checksum of the answer");
    }

    #[test]
    fn ipv6_answers_verify_too() {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 10, 17,
            64,
        ];
        let (a, b): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        f.extend_from_slice(&a.octets());
        f.extend_from_slice(&b.octets());
        let mut udp = vec![0x9c, 0x40, 0x1b, 0x58, 0, 10, 0, 0, b'h', b'i'];
        let ck = crate::wire::checksum::l4(a.into(), b.into(), 17, &udp);
        udp[6..8].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&udp);
        let c = classify(&f).unwrap();
        reply_in_place(&mut f, &c).unwrap();
        assert_eq!(&f[22..38], &b.octets(), "from the address it was sent to");
        let ph = pseudo_header(b.into(), a.into(), 17, 10);
        assert!(verifies(ph, &f[54..]));
        // Over IPv6 a checksum is mandatory (RFC 8200 §8.1): 0 is a wrong one.
        f[60..62].fill(0);
        let c = classify(&f).unwrap();
        let before = f.clone();
        assert_eq!(reply_in_place(&mut f, &c), Err(Unanswered::Checksum));
        assert_eq!(f, before, "untouched");
    }

    #[test]
    fn a_damaged_datagram_is_not_answered() {
        // The kernel drops it before a socket reads it (udp_lib_checksum_complete); an echo
        // that answered would send the damage back under a checksum of its own.
        for at in [42, 45, 36] {
            let mut f = kernel_udp4();
            f[at] ^= 0x20;
            let c = classify(&f).unwrap();
            let before = f.clone();
            assert_eq!(
                reply_in_place(&mut f, &c),
                Err(Unanswered::Checksum),
                "byte {at} flipped"
            );
            assert_eq!(f, before, "untouched");
        }
    }

    #[test]
    fn an_ipv4_datagram_without_checksum_gets_one_back() {
        let mut f = kernel_udp4();
        f[40..42].fill(0);
        let c = classify(&f).unwrap();
        reply_in_place(&mut f, &c).unwrap();
        let ph = pseudo_header([198, 18, 0, 2].into(), [198, 18, 0, 1].into(), 17, 13);
        assert_ne!(&f[40..42], &[0, 0]);
        assert!(verifies(ph, &f[34..]), "UDP checksum of the answer");
    }

    #[test]
    fn a_right_checksum_is_kept_as_it_is() {
        // Swapping addresses and ports reorders the words the sum covers: nothing to compute.
        let mut f = kernel_udp4();
        let received = [f[40], f[41]];
        let c = classify(&f).unwrap();
        reply_in_place(&mut f, &c).unwrap();
        assert_eq!([f[40], f[41]], received);
    }

    #[test]
    fn options_are_not_echoed() {
        let mut f = kernel_udp4();
        let c = classify(&f).unwrap();
        let c = Classified {
            ip_extras: true,
            ..c
        };
        let before = f.clone();
        assert_eq!(reply_in_place(&mut f, &c), Err(Unanswered::Declined));
        assert_eq!(f, before, "untouched");
    }

    #[test]
    fn broadcast_multicast_and_loop_ports_are_not_echoed() {
        // Each change must leave the frame unanswered and untouched.
        let fix_ip = |f: &mut Vec<u8>| {
            f[24..26].fill(0);
            let c = crate::wire::checksum::ipv4_header(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        };
        type Change<'a> = &'a dyn Fn(&mut Vec<u8>);
        let cases: [(&str, Change); 6] = [
            ("link-layer broadcast", &|f| f[0..6].fill(0xff)),
            ("limited broadcast", &|f| {
                f[30..34].fill(255);
                fix_ip(f)
            }),
            ("multicast group", &|f| {
                f[30..34].copy_from_slice(&[239, 1, 2, 3]);
                fix_ip(f)
            }),
            ("multicast source", &|f| {
                f[26..30].copy_from_slice(&[224, 0, 0, 1]);
                fix_ip(f)
            }),
            ("from the echo port", &|f| {
                f[34..36].copy_from_slice(&7u16.to_be_bytes())
            }),
            ("from chargen", &|f| {
                f[34..36].copy_from_slice(&19u16.to_be_bytes())
            }),
        ];
        for (why, change) in cases {
            let mut f = kernel_udp4();
            change(&mut f);
            let Some(c) = classify(&f) else {
                panic!("{why}: does not classify");
            };
            let before = f.clone();
            assert_eq!(
                reply_in_place(&mut f, &c),
                Err(Unanswered::Declined),
                "{why}"
            );
            assert_eq!(f, before, "{why}: untouched");
        }
    }
}
