//! UDP datagrams written straight into a frame: Ethernet, IPv4 or IPv6, UDP, with every
//! checksum filled in.

use std::net::{IpAddr, SocketAddr};

use crate::wire::checksum;

/// Bytes of headers in front of the payload for this family (Ethernet + IP + UDP).
pub const fn header_len(v6: bool) -> usize {
    14 + if v6 { 40 } else { 20 } + 8
}

/// Writes a datagram `src` -> `dst` carrying `payload` into `frame`; returns its length, or
/// `None` if it does not fit or the families differ.
pub fn emit(
    frame: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Option<usize> {
    let v6 = dst.is_ipv6();
    if src.is_ipv6() != v6 {
        return None;
    }
    let l4 = header_len(v6) - 8;
    let len = header_len(v6) + payload.len();
    let udp_len = 8 + payload.len();
    if len > frame.len() || udp_len > u16::MAX as usize {
        return None;
    }
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut frame[14..34];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = 64;
            ip[9] = 17;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum::ipv4_header(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let ip = &mut frame[14..54];
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
        }
        _ => return None,
    }
    let seg = &mut frame[l4..len];
    seg[0..2].copy_from_slice(&src.port().to_be_bytes());
    seg[2..4].copy_from_slice(&dst.port().to_be_bytes());
    seg[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    seg[6..8].copy_from_slice(&[0, 0]);
    seg[8..].copy_from_slice(payload);
    let c = checksum::l4(src.ip(), dst.ip(), 17, seg);
    seg[6..8].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        checksum::{pseudo_header, verifies},
        classify,
    };

    #[test]
    fn emitted_datagrams_classify_and_verify() {
        for (src, dst) in [
            ("198.18.0.2:7000", "198.18.0.1:40000"),
            ("[2001:db8::2]:7000", "[2001:db8::1]:40000"),
        ] {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let mut frame = [0u8; 256];
            let n = emit(
                &mut frame,
                [2, 0, 0, 0, 0, 2],
                [2, 0, 0, 0, 0, 1],
                src,
                dst,
                b"hello",
            )
            .unwrap();
            let f = &frame[..n];
            let c = classify(f).expect("parses");
            assert_eq!(c.key.port(), 40000);
            assert_eq!(
                &f[c.payload_offset..c.payload_offset + c.payload_len],
                b"hello"
            );
            let seg = &f[c.l4_offset..];
            assert!(
                verifies(pseudo_header(src.ip(), dst.ip(), 17, seg.len()), seg),
                "{dst}"
            );
            if src.is_ipv4() {
                assert!(verifies(0, &f[14..34]));
            }
        }
    }

    #[test]
    fn refuses_what_does_not_fit_or_mixes_families() {
        let (v4, v6): (SocketAddr, SocketAddr) = (
            "198.18.0.2:1".parse().unwrap(),
            "[2001:db8::1]:1".parse().unwrap(),
        );
        assert_eq!(emit(&mut [0u8; 40], [0; 6], [0; 6], v4, v4, b"x"), None);
        assert_eq!(emit(&mut [0u8; 400], [0; 6], [0; 6], v4, v6, b"x"), None);
        assert_eq!(emit(&mut [0u8; 43], [0; 6], [0; 6], v4, v4, b"x"), Some(43));
    }
}
