//! Any bytes as an Ethernet frame, through every parser of `netdemux::wire` (ICMP errors
//! included) and the echo's in-place rewrite: none may panic, what one parser accepts the
//! others must agree on, and every answer the echo makes carries a UDP checksum that verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdemux::{
    services::udp_echo,
    wire::{
        checksum, classify, ethernet::EthernetRepr, icmp::IcmpError, ip::IpRepr, source, tcp, udp,
    },
};

fuzz_target!(|data: &[u8]| {
    let c = classify(data);
    let _ = EthernetRepr::parse(data);
    if let Ok((_, l3)) = EthernetRepr::parse(data) {
        let _ = IpRepr::parse(&data[l3..]);
    }
    if let Some(c) = c {
        assert!(
            source(data, &c).is_some(),
            "a classified frame has a source"
        );
        assert!(c.payload_offset + c.payload_len <= data.len());
        let mut copy = data.to_vec();
        if let Ok(len) = udp_echo::reply_in_place(&mut copy, &c) {
            assert!(len as usize <= copy.len());
            assert!(
                !c.icmp && c.unicast,
                "the echo answers only unicast datagrams"
            );
            let (from, to) = (c.key.socket_addr().unwrap(), source(data, &c).unwrap());
            let segment = &copy[c.l4_offset..c.payload_offset + c.payload_len];
            let ph = checksum::pseudo_header(from.ip(), to.ip(), 17, segment.len());
            assert!(checksum::verifies(ph, segment), "the answer's UDP checksum");
        }
        if let Ok(e) = IcmpError::from_classified(data, &c) {
            assert!(c.icmp, "an ICMP error from a frame classified as TCP/UDP");
            assert_eq!(
                Some(e.local),
                c.key.socket_addr(),
                "the error names the bound socket"
            );
        }
        if c.icmp {
            assert!(tcp::TcpPacket::from_classified(data, &c).is_err());
            assert!(udp::UdpRepr::from_classified(data, &c).is_err());
        }
    }
    if let Ok(r) = udp::UdpRepr::parse(data) {
        assert!(c.is_some(), "UdpRepr accepted what classify refused");
        // Emitting what was parsed and parsing it again gives the same datagram.
        let payload = &data[r.payload_offset..r.payload_offset + r.payload_len];
        let mut out = vec![0u8; payload.len() + 64];
        let n = udp::emit(
            &mut out,
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            r.src,
            r.dst,
            payload,
        )
        .expect("a parsed datagram can be emitted");
        let again = udp::UdpRepr::parse(&out[..n]).expect("what we emit parses");
        assert_eq!(
            (again.src, again.dst, again.payload_len),
            (r.src, r.dst, r.payload_len)
        );
    }
});
