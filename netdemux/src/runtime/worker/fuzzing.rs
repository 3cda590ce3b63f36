//! A queue worker over an in-memory ring, fed frames from arbitrary bytes: the body of the
//! `worker_frames` fuzz target, and of a seeded test that runs it in CI. The worker serves a
//! UDP echo and sink and a TCP echo and HTTP service, over IPv4 and IPv6, as a daemon's would;
//! every frame goes through the same per-frame dispatch as on a NIC (classification, header
//! checks, services, ICMP errors, the TCP sockets), and a full round of the loop runs after
//! each batch. Nothing may panic, every frame the worker sends must parse back as a frame it
//! could have sent, and the counters must account for every frame received.
//!
//! Input: a sequence of chunks `[flags, len_hi, len_lo, bytes...]`. The flags choose what
//! the bytes become: a raw frame; one of a few valid frames (to the services, an ICMP error
//! quoting a segment the worker sent) with the bytes XORed in; the peer's answer to the last
//! TCP segment the worker sent, with the bytes as its payload (so connections get established
//! and requests reach the HTTP service); and whether the checksums are fixed up afterwards.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use crossbeam_queue::ArrayQueue;

use super::{Worker, WorkerConfig, stats::WorkerStats, tcp_sockets::TcpSetup};
use crate::{
    bridge::link::RESOLVED_QUEUE,
    runtime::{frames::fake::FakeFrames, resolver},
    services::{Kind, ServiceTable},
    stack::neighbour_cache::Resolution,
    wire::{self, checksum, classify, tcp::TcpPacket},
    xsk::Batch,
};

const LOCAL_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn v4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, last], port))
}

fn v6(last: u16, port: u16) -> SocketAddr {
    SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, last], port))
}

/// The services the worker serves.
fn services() -> ServiceTable {
    ServiceTable::new(&[
        (Kind::UdpEcho, v4(2, 7000)),
        (Kind::UdpSink, v4(2, 9000)),
        (Kind::UdpEcho, v6(2, 7000)),
        (Kind::TcpEcho, v4(2, 7)),
        (Kind::Http, SocketAddr::from(([0, 0, 0, 0], 80))),
        (Kind::Http, v6(2, 80)),
    ])
    .expect("the fuzzing services are valid")
}

/// The peer's SYN: MSS, window scaling and SACK, as a Linux client's.
fn peer_syn() -> wire::tcp::TcpHeader {
    wire::tcp::TcpHeader {
        seq: wire::seq::Seq(1000),
        flags: wire::tcp::Flags::SYN,
        window: 65535,
        options: wire::tcp::TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A frame from the peer to one of the services (`which` picks), checksums right.
fn template(which: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 2048];
    let (src4, src6) = (v4(1, 40000), v6(1, 40000));
    let syn = peer_syn();
    let udp = |f: &mut [u8], src, dst| wire::udp::emit(f, PEER_MAC, LOCAL_MAC, src, dst, payload);
    let tcp = |f: &mut [u8], src, dst| {
        wire::tcp::emit(f, PEER_MAC, LOCAL_MAC, src, dst, &syn, [payload, &[]])
    };
    let n = match which % 7 {
        0 => udp(&mut f, src4, v4(2, 7000)),
        1 => udp(&mut f, src4, v4(2, 9000)),
        2 => udp(&mut f, src6, v6(2, 7000)),
        3 => tcp(&mut f, src4, v4(2, 7)),
        4 => tcp(&mut f, src4, v4(2, 80)),
        5 => tcp(&mut f, src6, v6(2, 80)),
        _ => {
            // A router's "fragmentation needed" about a segment from the HTTP service.
            let mut quoted = vec![0u8; 128];
            let q = wire::tcp::emit(
                &mut quoted,
                LOCAL_MAC,
                PEER_MAC,
                v4(2, 80),
                src4,
                &syn,
                [&[], &[]],
            )
            .unwrap_or(14);
            let reporter = IpAddr::from([198, 18, 0, 254]);
            wire::icmp::emit_error(&mut f, reporter, 3, 4, 1280, &quoted[14..q]).ok()
        }
    };
    f.truncate(n.unwrap_or(0));
    f
}

/// The peer's answer to `sent` (a segment the worker sent), carrying `payload`.
fn answer(sent: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let c = classify(sent)?;
    let p = TcpPacket::from_classified(sent, &c).ok()?;
    let h = p.header;
    let mut advance = p.payload_len;
    if h.flags.contains(wire::tcp::Flags::SYN) || h.flags.contains(wire::tcp::Flags::FIN) {
        advance += 1;
    }
    let reply = wire::tcp::TcpHeader {
        seq: h.ack,
        ack: h.seq + advance,
        flags: wire::tcp::Flags(wire::tcp::Flags::ACK.0 | wire::tcp::Flags::PSH.0),
        window: 65535,
        ..Default::default()
    };
    let mut f = vec![0u8; 2048];
    let n = wire::tcp::emit(
        &mut f,
        PEER_MAC,
        LOCAL_MAC,
        p.dst,
        p.src,
        &reply,
        [payload, &[]],
    )?;
    f.truncate(n);
    Some(f)
}

/// Sets the IPv4 header checksum and the TCP/UDP/ICMP checksum of `frame` to what they
/// should be (as far as it classifies).
fn fix_checksums(frame: &mut [u8]) {
    let Some(c) = classify(frame) else {
        return;
    };
    if c.l3_offset + 20 <= c.l4_offset && frame[c.l3_offset] >> 4 == 4 {
        frame[c.l3_offset + 10..c.l3_offset + 12].fill(0);
        let sum = checksum::ipv4_header(&frame[c.l3_offset..c.l4_offset]);
        frame[c.l3_offset + 10..c.l3_offset + 12].copy_from_slice(&sum.to_be_bytes());
    }
    let (Some(src), Some(dst)) = (wire::source(frame, &c), c.key.socket_addr()) else {
        return;
    };
    let end = (c.payload_offset + c.payload_len).min(frame.len());
    let (field, proto, v4) = match (c.icmp, c.key.proto) {
        (true, _) if dst.is_ipv4() => (2, 0, true),
        (true, _) => (2, 58, false),
        (false, p) if p == netdemux_common::PROTO_TCP => (16, p, false),
        (false, p) => (6, p, false),
    };
    let Some(seg) = frame.get_mut(c.l4_offset..end) else {
        return;
    };
    if seg.len() < field + 2 {
        return;
    }
    seg[field..field + 2].fill(0);
    let sum = if v4 {
        checksum::finish(checksum::sum(0, seg))
    } else {
        // The ICMPv6 error is to the quoted packet's source: our address, the frame's
        // destination, which `dst` (the quoted source) is.
        checksum::l4(src.ip(), dst.ip(), proto, seg)
    };
    seg[field..field + 2].copy_from_slice(&sum.to_be_bytes());
}

/// What a run sent.
#[derive(Debug, Default)]
pub struct Sent {
    /// Frames.
    pub frames: usize,
    /// TCP payload bytes.
    pub tcp_payload: usize,
}

impl Sent {
    fn count(&mut self, frame: &[u8]) {
        self.frames += 1;
        self.tcp_payload += check_sent(frame);
    }
}

/// A worker over an in-memory ring serving [`services`], as a daemon's would, and the queue
/// its resolver answers arrive on.
fn worker() -> (Worker<FakeFrames>, Arc<ArrayQueue<(IpAddr, Resolution)>>) {
    worker_serving(services())
}

/// A worker serving `services` (with TCP sockets only if one of them is a TCP service).
fn worker_serving(
    services: ServiceTable,
) -> (Worker<FakeFrames>, Arc<ArrayQueue<(IpAddr, Resolution)>>) {
    let stats = Arc::new(WorkerStats::new(
        0,
        false,
        super::stats::BusyPoll::Off,
        6,
        true,
    ));
    let answers = Arc::new(ArrayQueue::new(RESOLVED_QUEUE));
    let lines = resolver::Lines::new(vec![answers.clone()]);
    let cfg = WorkerConfig {
        spin: true,
        cpu: None,
        mac: LOCAL_MAC,
        resolver: lines.link(0),
        neighbour_lifetime: std::time::Duration::from_secs(30),
        tcp: TcpSetup::unlimited(),
    };
    let services = Arc::new(services);
    let w = Worker::new(
        FakeFrames::default(),
        services,
        stats,
        cfg,
        None,
        Instant::now(),
    );
    (w, answers)
}

/// Runs the worker on the frames `data` describes; see the module's documentation.
pub fn run(data: &[u8]) -> Sent {
    let (mut w, answers) = worker();
    let (mut received, mut rest) = (0u64, data);
    let mut out = Sent::default();
    let mut last_tcp: Option<Vec<u8>> = None;
    while rest.len() >= 3 {
        let flags = rest[0];
        let len = (usize::from(rest[1]) << 8 | usize::from(rest[2])) % 2048;
        let take = len.min(rest.len() - 3);
        let bytes = &rest[3..3 + take];
        rest = &rest[3 + take..];
        let mut frame = match flags & 3 {
            0 => bytes.to_vec(),
            1 => {
                let (which, overlay) = bytes.split_first().unwrap_or((&0, &[]));
                let mut f = template(*which, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                // The overlay's first byte says where it starts.
                let (at, overlay) = overlay.split_first().unwrap_or((&0, &[]));
                for (i, b) in overlay.iter().enumerate() {
                    if let Some(x) = f.get_mut(usize::from(*at) + i) {
                        *x ^= b;
                    }
                }
                f
            }
            _ => match last_tcp.as_deref().and_then(|s| answer(s, bytes)) {
                Some(f) => f,
                None => template(4, bytes),
            },
        };
        if flags & 4 != 0 {
            fix_checksums(&mut frame);
        }
        // The resolver's answers, as the kernel would give them: the peers are on the link.
        for ip in [
            v4(1, 0).ip(),
            v6(1, 0).ip(),
            IpAddr::from([198, 18, 0, 254]),
        ] {
            let _ = answers.push((ip, Resolution::Mac(PEER_MAC)));
        }
        w.sock.rx.push_back(frame);
        received += 1;
        if flags & 8 == 0 && !rest.is_empty() {
            continue; // batch it with the next one
        }
        round(&mut w);
        for sent in w.sock.sent.drain(..) {
            out.count(&sent);
            if classify(&sent).is_some_and(|c| c.key.proto == netdemux_common::PROTO_TCP) {
                last_tcp = Some(sent);
            }
        }
    }
    round(&mut w);
    for sent in w.sock.sent.drain(..) {
        out.count(&sent);
    }
    assert_eq!(w.counters.rx, received, "every frame received is counted");
    out
}

/// One round of the worker's loop, as `run` does it (no waiting).
#[inline(never)]
fn round(w: &mut Worker<FakeFrames>) {
    let now = Instant::now();
    w.maintain(now);
    let mut batch = Batch::default();
    loop {
        let b = w.ingress(now);
        batch.rx += b.rx;
        if b.rx == 0 {
            break;
        }
    }
    w.egress();
    w.publish(&batch);
}

/// The request [`http_keepalive`]'s clients send.
pub const KEEPALIVE_REQUEST: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nUser-Agent: wrk\r\n\r\n";

/// What [`http_keepalive`] measured.
#[derive(Debug, Default)]
pub struct Keepalive {
    /// Requests answered (each answer checked: one segment with the whole response).
    pub answered: usize,
    /// Time spent in the worker's rounds (not in building the clients' frames).
    pub worker_time: std::time::Duration,
    /// Rounds of the worker's loop.
    pub rounds: usize,
    /// Frames the worker sent, handshakes included.
    pub frames: usize,
}

/// HTTP/1.1 keep-alive clients against the worker's HTTP service, in memory, as wrk drives a
/// server: `conns` connections from the peer (their handshakes first, not timed), each with one
/// request outstanding; every round of the loop gets the next requests of `per_round`
/// connections in one batch, each request carrying the ACK of that connection's last answer.
/// Stops after `requests` answers. Only the worker's rounds are timed, so the result is the
/// worker's own cost per request (its TCP, HTTP and per-frame code) without the socket's system
/// calls. Panics if an answer is missing or is not the whole response in one segment.
pub fn http_keepalive(conns: u16, requests: usize, per_round: usize) -> Keepalive {
    let (mut w, answers) = worker();
    let _ = answers.push((v4(1, 0).ip(), Resolution::Mac(PEER_MAC)));
    let expected = crate::services::http::next_request(KEEPALIVE_REQUEST)
        .expect("a whole head")
        .1
        .bytes
        .len();
    let mut out = Keepalive::default();
    let port = |i: u16| 40000 + i;
    let syn = peer_syn();
    for i in 0..conns {
        let mut f = vec![0u8; 128];
        let n = wire::tcp::emit(
            &mut f,
            PEER_MAC,
            LOCAL_MAC,
            v4(1, port(i)),
            v4(2, 80),
            &syn,
            [&[], &[]],
        )
        .expect("a SYN fits 128 bytes");
        f.truncate(n);
        w.sock.rx.push_back(f);
    }
    // The worker's last segment on each connection (the SYN-ACK, then each answer), and the
    // connections whose answer came back, in order: the next to send a request.
    let mut last: Vec<Option<Vec<u8>>> = vec![None; usize::from(conns)];
    let mut ready = std::collections::VecDeque::new();
    let mut spare = Vec::new();
    let mut take_sent = |w: &mut Worker<FakeFrames>,
                         last: &mut Vec<Option<Vec<u8>>>,
                         ready: &mut std::collections::VecDeque<usize>,
                         out: &mut Keepalive,
                         timed: bool| {
        for sent in w.sock.sent.drain(..) {
            out.frames += 1;
            let c = classify(&sent).expect("the worker sends frames that classify");
            let p = TcpPacket::from_classified(&sent, &c).expect("and segments that check out");
            let i = usize::from(p.dst.port() - 40000);
            let syn_ack = p.header.flags.contains(wire::tcp::Flags::SYN);
            if p.payload_len == 0 && !syn_ack {
                spare.push(sent);
                continue; // a pure ACK: the answer follows
            }
            if timed {
                assert_eq!(p.payload_len, expected, "one segment with the whole answer");
                out.answered += 1;
            }
            spare.extend(last[i].replace(sent));
            ready.push_back(i);
        }
        // Back to the socket at a UMEM frame's size, outside the timed rounds.
        for mut f in spare.drain(..) {
            f.resize(4096, 0);
            w.sock.spare.push(f);
        }
    };
    round(&mut w);
    take_sent(&mut w, &mut last, &mut ready, &mut out, false);
    assert_eq!(ready.len(), usize::from(conns), "every SYN answered");
    while out.answered < requests {
        for _ in 0..per_round.min(ready.len()) {
            let i = ready.pop_front().expect("counted above");
            let seg = last[i]
                .as_deref()
                .expect("a ready connection has a last segment");
            let f = answer(seg, KEEPALIVE_REQUEST).expect("the answer to a segment it sent");
            w.sock.rx.push_back(f);
        }
        assert!(
            !w.sock.rx.is_empty(),
            "no connection left with an answer to reply to"
        );
        let start = Instant::now();
        round(&mut w);
        out.worker_time += start.elapsed();
        out.rounds += 1;
        take_sent(&mut w, &mut last, &mut ready, &mut out, true);
    }
    out
}

/// What [`udp_echo`] measured.
#[derive(Debug, Default)]
pub struct Echoed {
    /// Datagrams answered (each answer checked: to the sender, with its payload, its checksums
    /// right).
    pub answered: usize,
    /// Time spent in the worker's rounds (not in building the peers' frames).
    pub worker_time: std::time::Duration,
    /// Rounds of the worker's loop.
    pub rounds: usize,
}

/// Datagrams from `flows` peers to the worker's UDP echo, in memory, as the `udp` bench's
/// generator sends them (64-byte frames, one source port per flow): every round of the loop
/// gets `per_round` of them in one batch. Stops after `datagrams` answers. Only the worker's
/// rounds are timed, so the result is the worker's own cost per datagram (classification,
/// header checks, the service, the answer in place) without the socket's system calls. Panics
/// if an answer is missing or is not the echo of its datagram.
pub fn udp_echo(flows: u16, datagrams: usize, per_round: usize) -> Echoed {
    // Answers go back in place, to the MAC they came from: no resolver answers needed. Only
    // the echo, as `run --udp-echo` serves it: no TCP sockets, so no TCP work in a round.
    let echo = ServiceTable::new(&[(Kind::UdpEcho, v4(2, 7000))]).expect("a valid service");
    let (mut w, _) = worker_serving(echo);
    let payload = [0xab; 18];
    let frames: Vec<Vec<u8>> = (0..flows)
        .map(|i| {
            let mut f = vec![0u8; 4096];
            let n = wire::udp::emit(
                &mut f,
                PEER_MAC,
                LOCAL_MAC,
                v4(1, 40000 + i),
                v4(2, 7000),
                &payload,
            )
            .expect("a datagram fits a frame");
            f.truncate(n);
            f
        })
        .collect();
    let mut out = Echoed::default();
    let mut next = 0usize;
    while out.answered < datagrams {
        for _ in 0..per_round {
            let mut f = frames[next % frames.len()].clone();
            f.reserve_exact(4096 - f.len());
            w.sock.rx.push_back(f);
            next += 1;
        }
        let start = Instant::now();
        round(&mut w);
        out.worker_time += start.elapsed();
        out.rounds += 1;
        assert_eq!(
            w.sock.sent.len(),
            per_round,
            "every datagram of the batch answered in its round"
        );
        for sent in w.sock.sent.drain(..) {
            check_sent(&sent);
            let c = classify(&sent).expect("the worker sends frames that classify");
            assert_eq!(
                (c.key.proto, c.key.port(), &sent[c.l4_offset + 8..]),
                (
                    netdemux_common::PROTO_UDP,
                    40000 + (out.answered % frames.len()) as u16,
                    &payload[..]
                ),
                "each datagram's echo, in order"
            );
            out.answered += 1;
        }
    }
    out
}

/// Checks a frame the worker sent — from the local MAC, a TCP/UDP packet that parses, its
/// checksums right — and returns its TCP payload length.
fn check_sent(frame: &[u8]) -> usize {
    assert!(frame.len() <= 4096, "a frame longer than a UMEM frame");
    assert_eq!(&frame[6..12], &LOCAL_MAC, "sent from another MAC");
    let c = classify(frame).expect("every frame the worker sends classifies");
    if frame[c.l3_offset] >> 4 == 4 {
        assert!(
            checksum::verifies(0, &frame[c.l3_offset..c.l4_offset]),
            "IPv4 header checksum of a frame sent"
        );
    }
    if c.key.proto == netdemux_common::PROTO_TCP {
        let p = TcpPacket::from_classified(frame, &c).expect("every TCP segment sent checks out");
        return p.payload_len;
    }
    wire::udp::UdpRepr::from_classified(frame, &c).expect("every datagram sent checks out");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz body on a few thousand pseudo-random inputs built to reach deep (valid
    /// frames, answers to the worker's segments, fixed checksums), so CI runs it too.
    #[test]
    fn seeded_inputs_run_clean() {
        let mut rng = crate::test_rng::Xorshift64::new(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next();
        for _ in 0..300 {
            let mut data = Vec::new();
            for _ in 0..(next() % 24) {
                let flags = (next() % 16) as u8 | if next() % 2 == 0 { 4 } else { 0 };
                let len = (next() % 96) as usize;
                data.push(flags);
                data.extend_from_slice(&(len as u16).to_be_bytes());
                data.extend((0..len).map(|_| next() as u8));
            }
            run(&data);
        }
    }

    /// Found by the fuzz target: a datagram to the echo but to another host's MAC was answered,
    /// from that MAC. The kernel drops such frames (PACKET_OTHERHOST); so does the worker now.
    #[test]
    fn a_frame_to_another_hosts_mac_is_not_answered() {
        let crash = [0x31, 0xb3, 0, 0, 0, 2];
        assert_eq!(run(&crash).frames, 0);
        // The same datagram to the right MAC is answered.
        assert_eq!(run(&[0x31, 0, 1, 0]).frames, 1);
    }

    /// One batch to two services in turn: each frame reaches its own (the batch remembers its
    /// last service lookup, by destination).
    #[test]
    fn a_batch_to_two_services_reaches_each() {
        // Template 0 is a datagram to the echo, template 1 one to the sink; no flush flag, so
        // each run's frames are one batch.
        let (echo, sink) = ([1u8, 0, 1, 0], [1u8, 0, 1, 1]);
        assert_eq!(run(&[echo, sink, echo, sink, echo].concat()).frames, 3);
        assert_eq!(run(&[sink, echo, sink, sink, echo].concat()).frames, 2);
    }

    /// The keep-alive workload answers every request of every connection with the whole
    /// response, in as many rounds as its batches need.
    #[test]
    fn keepalive_clients_get_every_answer() {
        let k = http_keepalive(16, 200, 5);
        assert!(k.answered >= 200, "{k:?}");
        // 16 handshakes, then one segment per answer.
        assert_eq!(k.frames, 16 + k.answered, "{k:?}");
        assert_eq!(k.rounds, k.answered.div_ceil(5), "{k:?}");
    }

    /// The echo workload answers every datagram of every flow, in order, one batch per round.
    #[test]
    fn every_echoed_datagram_comes_back() {
        let e = udp_echo(4, 200, 8);
        assert_eq!((e.answered, e.rounds), (200, 25), "{e:?}");
    }

    /// A handshake and a request through the worker: the seeded path reaches the HTTP service.
    #[test]
    fn a_request_after_a_handshake_is_answered() {
        let mut data = vec![1 | 4 | 8, 0, 1, 4]; // template 4: a SYN to the HTTP service
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        data.extend_from_slice(&[2 | 8, 0, req.len() as u8]);
        data.extend_from_slice(req);
        let sent = run(&data);
        let (_, answer) = crate::services::http::next_request(req).expect("a whole head");
        assert_eq!(sent.tcp_payload, answer.bytes.len(), "{sent:?}");
    }
}
