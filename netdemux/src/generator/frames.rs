//! Frame templates for the generator: Ethernet + IPv4/IPv6 + UDP (or a TCP SYN), with correct
//! checksums, padded to the requested size.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Result, bail};

use crate::wire::checksum;

/// What the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GenProto {
    /// UDP datagrams.
    Udp,
    /// TCP SYNs (a connection attempt per frame).
    TcpSyn,
}

/// Ethernet addresses of a frame.
#[derive(Clone, Copy, Debug)]
pub struct Macs {
    /// Source MAC (the sending interface).
    pub src: [u8; 6],
    /// Destination MAC (the peer).
    pub dst: [u8; 6],
}

/// Smallest `--size` (Ethernet frame including the 4-byte FCS) for a protocol and family.
pub fn min_size(proto: GenProto, v6: bool) -> usize {
    let l3 = if v6 { 40 } else { 20 };
    let l4 = match proto {
        GenProto::Udp => 8,
        GenProto::TcpSyn => 20,
    };
    (14 + l3 + l4 + 4).max(64)
}

/// A frame from `src_ip:sport` to `dst`, `size` bytes on the wire including the FCS (which the
/// NIC adds, so the template is `size - 4` bytes).
pub fn build(
    proto: GenProto,
    macs: Macs,
    src_ip: IpAddr,
    sport: u16,
    dst: SocketAddr,
    size: usize,
) -> Result<Vec<u8>> {
    if src_ip.is_ipv4() != dst.is_ipv4() {
        bail!("source {src_ip} and destination {dst} are of different address families");
    }
    let v6 = dst.is_ipv6();
    if size < min_size(proto, v6) || size > 1518 {
        bail!(
            "--size {size} out of range: {}-1518 bytes for this protocol and family",
            min_size(proto, v6)
        );
    }
    let len = size - 4;
    let l3_len = if v6 { 40 } else { 20 };
    let l4_len = len - 14 - l3_len;
    let (proto_num, mut l4) = match proto {
        GenProto::Udp => {
            let mut h = Vec::with_capacity(l4_len);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
            h.extend_from_slice(&(l4_len as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            h.resize(l4_len, 0x5a);
            (17u8, h)
        }
        GenProto::TcpSyn => {
            let mut h = Vec::with_capacity(l4_len);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
            h.extend_from_slice(&0x1000_0000u32.wrapping_add(sport as u32).to_be_bytes()); // seq
            h.extend_from_slice(&0u32.to_be_bytes()); // ack
            h.extend_from_slice(&[0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]); // doff 5, SYN, window
            // A SYN carries no payload: what the size asks beyond the header is Ethernet
            // padding after the IP datagram, outside the checksum.
            (6u8, h)
        }
    };
    let ck = checksum::l4(src_ip, dst.ip(), proto_num, &l4);
    let at = if proto_num == 17 { 6 } else { 16 };
    l4[at..at + 2].copy_from_slice(&ck.to_be_bytes());

    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&macs.dst);
    f.extend_from_slice(&macs.src);
    match (src_ip, dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = (20 + l4.len()) as u16;
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto_num, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum::ipv4_header(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto_num, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!("families checked above"),
    }
    f.extend_from_slice(&l4);
    f.resize(len, 0);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{checksum::pseudo_header, checksum::verifies, classify};

    const MACS: Macs = Macs {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
    };

    #[test]
    fn udp_frames_classify_and_verify() {
        for (src, dst, size) in [
            ("198.18.0.1", "198.18.0.2:7000", 64),
            ("198.18.0.1", "198.18.0.2:7000", 1518),
            ("2001:db8::1", "[2001:db8::2]:7000", 66),
            ("2001:db8::1", "[2001:db8::2]:7000", 512),
        ] {
            let src: IpAddr = src.parse().unwrap();
            let dst: SocketAddr = dst.parse().unwrap();
            let f = build(GenProto::Udp, MACS, src, 40001, dst, size).unwrap();
            assert_eq!(f.len(), size - 4);
            let c = classify(&f).expect("classifies");
            assert_eq!(c.key.port(), 7000);
            let l4 = c.payload_offset - 8;
            let seg = &f[l4..c.payload_offset + c.payload_len];
            assert!(
                verifies(pseudo_header(src, dst.ip(), 17, seg.len()), seg),
                "{dst} {size}"
            );
            if src.is_ipv4() {
                assert!(verifies(0, &f[14..34]), "IPv4 header checksum");
            }
        }
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::2]:1".parse().unwrap();
        assert!(build(GenProto::Udp, MACS, src, 1, dst, 64).is_err());
        assert!(build(GenProto::Udp, MACS, src, 1, dst, 1519).is_err());
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        assert!(
            build(GenProto::Udp, MACS, v4, 1, dst, 100).is_err(),
            "mixed families"
        );
    }

    #[test]
    fn tcp_syn_is_a_syn() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let dst: SocketAddr = "198.18.0.2:80".parse().unwrap();
        let f = build(GenProto::TcpSyn, MACS, src, 40000, dst, 64).unwrap();
        let c = classify(&f).unwrap();
        assert_eq!(c.key.proto, 6);
        assert_eq!(f[14 + 20 + 13], 0x02, "SYN flag");
        assert!(verifies(pseudo_header(src, dst.ip(), 6, 20), &f[34..54]));
    }
}
