//! UDP datagrams in Ethernet frames: [`UdpRepr::parse`] checks one (headers, then the checksum)
//! and [`emit`] writes one straight into a frame with every checksum filled in.

use std::net::SocketAddr;

use super::{
    Error, checksum,
    classify::{Classified, classify, source},
    ip::emit_headers,
};
use netdemux_common::PROTO_UDP;

/// A parsed UDP datagram: who sent it, to whom, and where its payload is in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Offset of the payload in the frame.
    pub payload_offset: usize,
    /// Length of the payload.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parses and checks the UDP datagram in `frame`.
    pub fn parse(frame: &[u8]) -> Result<UdpRepr, Error> {
        let c = classify(frame).ok_or(Error::Malformed)?;
        Self::from_classified(frame, &c)
    }

    /// Like [`UdpRepr::parse`], for a frame already classified as `c`.
    pub fn from_classified(frame: &[u8], c: &Classified) -> Result<UdpRepr, Error> {
        if c.key.proto != PROTO_UDP || c.icmp {
            return Err(Error::Malformed);
        }
        let src = source(frame, c).ok_or(Error::Malformed)?;
        let dst = c.key.socket_addr().ok_or(Error::Malformed)?;
        let seg = frame
            .get(c.l4_offset..c.payload_offset + c.payload_len)
            .ok_or(Error::Malformed)?;
        if u16::from_be_bytes([seg[4], seg[5]]) as usize != seg.len() {
            return Err(Error::Malformed);
        }
        let sum = u16::from_be_bytes([seg[6], seg[7]]);
        let ok = if sum == 0 {
            // RFC 768: zero means "no checksum" over IPv4; RFC 8200: mandatory over IPv6.
            src.is_ipv4()
        } else {
            checksum::verifies(
                checksum::pseudo_header(src.ip(), dst.ip(), PROTO_UDP, seg.len()),
                seg,
            )
        };
        if !ok {
            return Err(Error::Checksum);
        }
        Ok(UdpRepr {
            src,
            dst,
            payload_offset: c.payload_offset,
            payload_len: c.payload_len,
        })
    }
}

/// Writes a datagram `src` -> `dst` carrying `payload` into `frame` (Ethernet, IP, UDP, all
/// checksums filled in); returns its length, or `None` if it does not fit or the families differ.
pub fn emit(
    frame: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Option<usize> {
    let l4_len = 8 + payload.len();
    let l4 = emit_headers(
        frame,
        src_mac,
        dst_mac,
        src.ip(),
        dst.ip(),
        PROTO_UDP,
        l4_len,
    )?;
    let len = l4 + l4_len;
    let seg = frame.get_mut(l4..len)?;
    seg[0..2].copy_from_slice(&src.port().to_be_bytes());
    seg[2..4].copy_from_slice(&dst.port().to_be_bytes());
    seg[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    seg[6..8].copy_from_slice(&[0, 0]);
    seg[8..].copy_from_slice(payload);
    let c = checksum::l4(src.ip(), dst.ip(), PROTO_UDP, seg);
    seg[6..8].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{pseudo_header, verifies};

    /// Frames captured from the kernel (tcpdump on a veth in a test namespace; the sender had
    /// TX checksum offload off, as a NIC would put them on the wire).
    const KERNEL_UDP4: [u8; 47] = [
        0x7a, 0xa3, 0x51, 0x07, 0x79, 0x67, 0xe2, 0xaf, 0xf6, 0x78, 0x1a, 0xc4, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x21, 0xc4, 0xeb, 0x40, 0x00, 0x40, 0x11, 0xe9, 0xb8, 0xc6, 0x12, 0x00, 0x01,
        0xc6, 0x12, 0x00, 0x02, 0x9c, 0x40, 0x1b, 0x58, 0x00, 0x0d, 0x78, 0x41, 0x68, 0x65, 0x6c,
        0x6c, 0x6f,
    ];
    const KERNEL_UDP6: [u8; 68] = [
        0x7a, 0xa3, 0x51, 0x07, 0x79, 0x67, 0xe2, 0xaf, 0xf6, 0x78, 0x1a, 0xc4, 0x86, 0xdd, 0x60,
        0x0c, 0xaa, 0xe0, 0x00, 0x0e, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x9c, 0x41, 0x1b, 0x58, 0x00, 0x0e,
        0xa8, 0xbb, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x36,
    ];
    /// An odd-length payload ("odd").
    const KERNEL_UDP4_ODD: [u8; 45] = [
        0x7a, 0xa3, 0x51, 0x07, 0x79, 0x67, 0xe2, 0xaf, 0xf6, 0x78, 0x1a, 0xc4, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x1f, 0x1b, 0xf4, 0x40, 0x00, 0x40, 0x11, 0x92, 0xb2, 0xc6, 0x12, 0x00, 0x01,
        0xc6, 0x12, 0x00, 0x02, 0x9c, 0x42, 0x1b, 0x59, 0x00, 0x0b, 0xe8, 0xaf, 0x6f, 0x64, 0x64,
    ];

    #[test]
    fn parses_the_kernels_own_datagrams() {
        for (frame, src, dst, payload) in [
            (
                &KERNEL_UDP4[..],
                "198.18.0.1:40000",
                "198.18.0.2:7000",
                &b"hello"[..],
            ),
            (
                &KERNEL_UDP6[..],
                "[2001:db8::1]:40001",
                "[2001:db8::2]:7000",
                &b"hello6"[..],
            ),
            (
                &KERNEL_UDP4_ODD[..],
                "198.18.0.1:40002",
                "198.18.0.2:7001",
                &b"odd"[..],
            ),
        ] {
            let r = UdpRepr::parse(frame).unwrap();
            assert_eq!(r.src, src.parse().unwrap());
            assert_eq!(r.dst, dst.parse().unwrap());
            assert_eq!(
                &frame[r.payload_offset..r.payload_offset + r.payload_len],
                payload
            );
        }
    }

    #[test]
    fn emit_reproduces_the_kernels_udp_segment_and_addresses() {
        for (frame, l4) in [(&KERNEL_UDP4[..], 34), (&KERNEL_UDP6[..], 54)] {
            let r = UdpRepr::parse(frame).unwrap();
            let payload = &frame[r.payload_offset..r.payload_offset + r.payload_len];
            let (mut dst_mac, mut src_mac) = ([0u8; 6], [0u8; 6]);
            dst_mac.copy_from_slice(&frame[0..6]);
            src_mac.copy_from_slice(&frame[6..12]);
            let mut out = [0u8; 128];
            let n = emit(&mut out, src_mac, dst_mac, r.src, r.dst, payload).unwrap();
            assert_eq!(n, frame.len());
            assert_eq!(&out[..14], &frame[..14], "Ethernet header");
            assert_eq!(
                &out[l4..n],
                &frame[l4..],
                "UDP header, checksum and payload"
            );
            assert_eq!(UdpRepr::parse(&out[..n]).unwrap(), r);
        }
    }

    #[test]
    fn bad_and_missing_checksums() {
        let mut f = KERNEL_UDP4;
        f[44] ^= 0x20; // one payload bit
        assert_eq!(UdpRepr::parse(&f), Err(Error::Checksum));
        let mut f = KERNEL_UDP4;
        f[40..42].fill(0); // no checksum: allowed over IPv4
        assert!(UdpRepr::parse(&f).is_ok());
        let mut f = KERNEL_UDP6;
        f[60..62].fill(0); // not allowed over IPv6
        assert_eq!(UdpRepr::parse(&f), Err(Error::Checksum));
    }

    #[test]
    fn truncated_and_garbage_frames_are_errors_not_panics() {
        for cut in 0..KERNEL_UDP6.len() {
            assert!(UdpRepr::parse(&KERNEL_UDP6[..cut]).is_err(), "cut at {cut}");
        }
        let mut rng = crate::test_rng::Xorshift32::new(0x9e37_79b9);
        for _ in 0..20_000 {
            let mut f = KERNEL_UDP4.to_vec();
            for _ in 0..3 {
                let x = rng.next();
                let i = x as usize % f.len();
                f[i] = (x >> 9) as u8;
            }
            let _ = UdpRepr::parse(&f);
        }
        let mut f = KERNEL_UDP4;
        f[38..40].copy_from_slice(&100u16.to_be_bytes()); // UDP length beyond the datagram
        assert_eq!(UdpRepr::parse(&f), Err(Error::Malformed));
    }

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
                verifies(pseudo_header(src.ip(), dst.ip(), PROTO_UDP, seg.len()), seg),
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
