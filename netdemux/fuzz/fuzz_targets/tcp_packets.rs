//! Arbitrary bytes as a frame to a TCP socket: `TcpPacket::from_classified` must never panic,
//! what it accepts must lie within the frame, and emitting what it parsed gives a segment that
//! parses to the same header and payload. The first byte asks for the checksums to be made
//! right first, so the parser's later checks are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdemux::wire::{checksum, classify, source, tcp};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, frame)) = data.split_first() else {
        return;
    };
    let mut frame = frame.to_vec();
    if flags & 1 != 0 {
        fix_tcp_checksum(&mut frame);
    }
    let Some(c) = classify(&frame) else {
        return;
    };
    let Ok(p) = tcp::TcpPacket::from_classified(&frame, &c) else {
        return;
    };
    assert!(!c.icmp && c.key.proto == netdemux_common::PROTO_TCP);
    assert!(p.payload_offset + p.payload_len <= frame.len());
    assert!(p.payload_offset >= c.l4_offset + p.header.header_len().min(20));
    let payload = &frame[p.payload_offset..p.payload_offset + p.payload_len];
    let mut out = vec![0u8; payload.len() + 128];
    let n = tcp::emit(
        &mut out,
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        p.src,
        p.dst,
        &p.header,
        [payload, &[]],
    )
    .expect("a parsed segment can be emitted");
    let c2 = classify(&out[..n]).expect("what we emit classifies");
    let again = tcp::TcpPacket::from_classified(&out[..n], &c2).expect("what we emit parses");
    assert_eq!((again.src, again.dst), (p.src, p.dst));
    assert_eq!(
        &out[again.payload_offset..again.payload_offset + again.payload_len],
        payload
    );
    let (h, g) = (p.header, again.header);
    assert_eq!(
        (g.seq, g.ack, g.flags, g.window),
        (h.seq, h.ack, h.flags, h.window)
    );
});

/// Makes the TCP checksum of `frame` right, as far as it classifies.
fn fix_tcp_checksum(frame: &mut [u8]) {
    let Some(c) = classify(frame) else {
        return;
    };
    let (Some(src), Some(dst)) = (source(frame, &c), c.key.socket_addr()) else {
        return;
    };
    let end = (c.payload_offset + c.payload_len).min(frame.len());
    let Some(seg) = frame.get_mut(c.l4_offset..end) else {
        return;
    };
    if seg.len() < 18 {
        return;
    }
    seg[16..18].fill(0);
    let sum = checksum::l4(src.ip(), dst.ip(), netdemux_common::PROTO_TCP, seg);
    seg[16..18].copy_from_slice(&sum.to_be_bytes());
}
