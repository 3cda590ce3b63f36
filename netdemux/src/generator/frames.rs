//! Frame templates for the generator: Ethernet + IPv4/IPv6 + UDP (or a TCP SYN), with correct
//! checksums, padded to the requested size.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, bail};
use netdemux_common::wire::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, TCP_MIN_HLEN, UDP_HLEN};

use crate::wire::{
    self,
    seq::Seq,
    tcp::{Flags, TcpHeader},
};

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
    let l3 = if v6 { IPV6_HLEN } else { IPV4_MIN_HLEN };
    let l4 = match proto {
        GenProto::Udp => UDP_HLEN,
        GenProto::TcpSyn => TCP_MIN_HLEN,
    };
    (ETH_HLEN + l3 + l4 + FCS_LEN).max(64)
}

/// Bytes of the Ethernet frame check sequence, which the NIC adds.
const FCS_LEN: usize = 4;

/// A frame from `src_ip:sport` to `dst`, `size` bytes on the wire including the FCS (which the
/// NIC adds, so the template is `size - 4` bytes), written by `wire`'s emitters.
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
    let len = size - FCS_LEN;
    let mut f = vec![0u8; len];
    let src = SocketAddr::new(src_ip, sport);
    let written = match proto {
        GenProto::Udp => {
            let l3 = if v6 { IPV6_HLEN } else { IPV4_MIN_HLEN };
            let payload = vec![0x5a; len - ETH_HLEN - l3 - UDP_HLEN];
            wire::udp::emit(&mut f, macs.src, macs.dst, src, dst, &payload)
        }
        GenProto::TcpSyn => {
            let syn = TcpHeader {
                src_port: sport,
                dst_port: dst.port(),
                seq: Seq(0x1000_0000u32.wrapping_add(u32::from(sport))),
                flags: Flags::SYN,
                window: 0xfaf0,
                ..TcpHeader::default()
            };
            // A SYN carries no payload: what the size asks beyond the header is Ethernet
            // padding after the IP datagram (zeros), outside the checksum.
            wire::tcp::emit(&mut f, macs.src, macs.dst, src, dst, &syn, [&[], &[]])
        }
    };
    written.context("the frame does not fit its size")?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use netdemux_common::{PROTO_TCP, PROTO_UDP};

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
                verifies(pseudo_header(src, dst.ip(), PROTO_UDP, seg.len()), seg),
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
        assert_eq!(c.key.proto, PROTO_TCP);
        assert_eq!(f[14 + 20 + 13], 0x02, "SYN flag");
        assert_eq!(
            &f[14 + 20 + 4..14 + 20 + 8],
            &0x1000_9c40u32.to_be_bytes(),
            "seq"
        );
        assert_eq!(f[14 + 20 + 12], 0x50, "no options");
        assert!(verifies(
            pseudo_header(src, dst.ip(), PROTO_TCP, 20),
            &f[34..54]
        ));
        assert!(f[54..].iter().all(|&b| b == 0), "Ethernet padding");
    }
}
