//! The data plane, table-driven (katran style): every case is a frame, the verdict the program
//! must return and the exact counter deltas it must leave, run through BPF_PROG_TEST_RUN on the
//! real program in the kernel. No interface is needed. Requires root.
//!
//! No AF_XDP socket is installed here, so a match falls back to the kernel: the verdict is
//! XDP_PASS and the counter that moves is `redirect_failed`, together with the binding's own
//! packet and byte counters. (The redirect path with a socket is covered by the AF_XDP tests.)

mod support;

use aya::programs::{TestRun as _, TestRunOptions};
use netdemux::{
    control::{binding::Binding, maps::DemuxMaps, object},
    services::{Kind, ServiceTable},
    test_rng::Xorshift64,
};
use netdemux_common::{BindStats, Counter};
use support::frames::*;

const XDP_PASS: u32 = 2;
const DST4: [u8; 4] = [198, 18, 0, 2];
const OTHER4: [u8; 4] = [198, 18, 0, 9];

/// The binding table every case runs against.
const BINDINGS: &[(&str, &str)] = &[
    ("udp", "198.18.0.2:7000"),
    ("udp", "0.0.0.0:53"),
    ("udp", "198.18.0.2:53"),
    ("tcp", "198.18.0.2:80"),
    ("udp", "[2001:db8::2]:7000"),
    ("tcp", "[2001:db8::2]:443"),
    ("tcp", "[::]:8080"),
    ("tcp", "[2001:db8::2]:8080"),
    ("udp", "239.1.2.3:5000"),
    // Alone on its port and family: matched through the port entry, without the hash.
    ("udp", "0.0.0.0:5353"),
];

/// What a case expects: a match of the given binding, or a pass for the given reason.
enum Want {
    Hit(&'static str, &'static str),
    Pass(Counter),
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    want: Want,
}

fn case(name: &'static str, frame: Vec<u8>, want: Want) -> Case {
    Case { name, frame, want }
}

use Want::{Hit, Pass};

fn udp4_frame_with_payload(n: usize) -> Vec<u8> {
    cat(&[
        &eth(&[], ETH_IPV4),
        &ipv4(UDP, DST4, 0, 0, &udp_with_payload(7000, n)),
    ])
}

fn cases() -> Vec<Case> {
    let hit_udp4 = Hit("udp", "198.18.0.2:7000");
    let mut c = vec![
        // --- IPv4 hits and misses
        case("udp4 exact hit", v4(UDP, DST4, 7000), hit_udp4),
        case(
            "udp4 other port",
            v4(UDP, DST4, 7001),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp4 other address",
            v4(UDP, OTHER4, 7000),
            Pass(Counter::PassNoBinding),
        ),
        case("tcp4 hit", v4(TCP, DST4, 80), Hit("tcp", "198.18.0.2:80")),
        case(
            "tcp4 to a udp-only port",
            v4(TCP, DST4, 7000),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp4 port 0",
            v4(UDP, DST4, 0),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp4 wildcard hit",
            v4(UDP, OTHER4, 53),
            Hit("udp", "0.0.0.0:53"),
        ),
        case(
            "udp4 exact beats wildcard",
            v4(UDP, DST4, 53),
            Hit("udp", "198.18.0.2:53"),
        ),
        case(
            "udp4 with payload and ethernet padding",
            {
                let mut f = udp4_frame_with_payload(2);
                f.resize(60, 0); // minimum Ethernet frame: padding past the IP total length
                f
            },
            Hit("udp", "198.18.0.2:7000"),
        ),
        case(
            "udp4 1400-byte payload",
            udp4_frame_with_payload(1400),
            Hit("udp", "198.18.0.2:7000"),
        ),
        // --- IPv6 hits and misses
        case(
            "udp6 hit",
            v6_frame(UDP, v6(2), 7000),
            Hit("udp", "[2001:db8::2]:7000"),
        ),
        case(
            "tcp6 hit",
            v6_frame(TCP, v6(2), 443),
            Hit("tcp", "[2001:db8::2]:443"),
        ),
        case(
            "tcp6 other port",
            v6_frame(TCP, v6(2), 444),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "tcp6 wildcard hit",
            v6_frame(TCP, v6(9), 8080),
            Hit("tcp", "[::]:8080"),
        ),
        case(
            "tcp6 exact beats wildcard",
            v6_frame(TCP, v6(2), 8080),
            Hit("tcp", "[2001:db8::2]:8080"),
        ),
        case(
            "udp6 does not match the v4 wildcard",
            v6_frame(UDP, v6(2), 53),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "tcp4 does not match the v6 wildcard",
            v4(TCP, DST4, 8080),
            Pass(Counter::PassNoBinding),
        ),
        // --- VLAN
        case(
            "802.1Q udp4 hit",
            cat(&[
                &eth(&[VLAN_8021Q], ETH_IPV4),
                &ipv4(UDP, DST4, 0, 0, &l4(UDP, 7000)),
            ]),
            Hit("udp", "198.18.0.2:7000"),
        ),
        case(
            "QinQ (802.1ad + 802.1Q) udp4 hit",
            cat(&[
                &eth(&[VLAN_8021AD, VLAN_8021Q], ETH_IPV4),
                &ipv4(UDP, DST4, 0, 0, &l4(UDP, 7000)),
            ]),
            Hit("udp", "198.18.0.2:7000"),
        ),
        case(
            "QinQ tcp6 hit",
            cat(&[
                &eth(&[VLAN_8021AD, VLAN_8021Q], ETH_IPV6),
                &ipv6(TCP, v6(2), &l4(TCP, 443)),
            ]),
            Hit("tcp", "[2001:db8::2]:443"),
        ),
        case(
            "three VLAN tags (deeper than parsed)",
            cat(&[
                &eth(&[VLAN_8021AD, VLAN_8021Q, VLAN_8021Q], ETH_IPV4),
                &ipv4(UDP, DST4, 0, 0, &l4(UDP, 7000)),
            ]),
            Pass(Counter::PassNotIp),
        ),
        case(
            "VLAN tag truncated",
            eth(&[], VLAN_8021Q).into_iter().chain([0, 100]).collect(),
            Pass(Counter::PassMalformed),
        ),
        // --- IPv4 header variants
        case(
            "udp4 with 4 bytes of options",
            cat(&[&eth(&[], ETH_IPV4), &ipv4(UDP, DST4, 4, 0, &l4(UDP, 7000))]),
            Hit("udp", "198.18.0.2:7000"),
        ),
        case(
            "udp4 with 40 bytes of options (IHL 15)",
            cat(&[&eth(&[], ETH_IPV4), &ipv4(UDP, DST4, 40, 0, &l4(UDP, 7000))]),
            Hit("udp", "198.18.0.2:7000"),
        ),
        case(
            "tcp4 with options behind QinQ, wildcard-free hit",
            cat(&[
                &eth(&[VLAN_8021AD, VLAN_8021Q], ETH_IPV4),
                &ipv4(TCP, DST4, 12, 0, &l4(TCP, 80)),
            ]),
            Hit("tcp", "198.18.0.2:80"),
        ),
        case(
            "udp4 don't-fragment set is not a fragment",
            cat(&[
                &eth(&[], ETH_IPV4),
                &ipv4(UDP, DST4, 0, 0x4000, &l4(UDP, 7000)),
            ]),
            Hit("udp", "198.18.0.2:7000"),
        ),
        case(
            "udp4 first fragment (MF)",
            cat(&[
                &eth(&[], ETH_IPV4),
                &ipv4(UDP, DST4, 0, 0x2000, &l4(UDP, 7000)),
            ]),
            Pass(Counter::PassFragment),
        ),
        case(
            "udp4 later fragment (offset)",
            cat(&[
                &eth(&[], ETH_IPV4),
                &ipv4(UDP, DST4, 0, 0x00b9, &l4(UDP, 7000)),
            ]),
            Pass(Counter::PassFragment),
        ),
        case("icmp4", v4(ICMP, DST4, 0), Pass(Counter::PassNotTcpUdp)),
        case(
            "udp-lite4 (136)",
            v4(136, DST4, 7000),
            Pass(Counter::PassNotTcpUdp),
        ),
        // --- IPv6 extension headers
        case(
            "udp6 behind hop-by-hop",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(
                    HOPOPTS,
                    v6(2),
                    &cat(&[&ext(HOPOPTS, UDP, 0), &l4(UDP, 7000)]),
                ),
            ]),
            Hit("udp", "[2001:db8::2]:7000"),
        ),
        case(
            "tcp6 behind hop-by-hop, routing, destination options",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(
                    HOPOPTS,
                    v6(2),
                    &cat(&[
                        &ext(HOPOPTS, ROUTING, 1),
                        &ext(ROUTING, DSTOPTS, 2),
                        &ext(DSTOPTS, TCP, 0),
                        &l4(TCP, 443),
                    ]),
                ),
            ]),
            Hit("tcp", "[2001:db8::2]:443"),
        ),
        case(
            "udp6 behind a routing header with segments left (RFC 8200: not here yet)",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(ROUTING, v6(2), &cat(&[&routing(UDP, 2), &l4(UDP, 7000)])),
            ]),
            Pass(Counter::PassInTransit),
        ),
        case(
            "tcp6 behind hop-by-hop, then a routing header with one segment left",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(
                    HOPOPTS,
                    v6(2),
                    &cat(&[&ext(HOPOPTS, ROUTING, 0), &routing(TCP, 1), &l4(TCP, 443)]),
                ),
            ]),
            Pass(Counter::PassInTransit),
        ),
        case(
            "udp6 behind a routing header whose segments are all done",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(ROUTING, v6(2), &cat(&[&routing(UDP, 0), &l4(UDP, 7000)])),
            ]),
            Hit("udp", "[2001:db8::2]:7000"),
        ),
        case(
            "udp6 behind AH",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(AH, v6(2), &cat(&[&ext(AH, UDP, 4), &l4(UDP, 7000)])),
            ]),
            Hit("udp", "[2001:db8::2]:7000"),
        ),
        case(
            "udp6 fragment header",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(
                    FRAGMENT,
                    v6(2),
                    &cat(&[&ext(FRAGMENT, UDP, 0), &l4(UDP, 7000)]),
                ),
            ]),
            Pass(Counter::PassFragment),
        ),
        case(
            "udp6 destination options then fragment",
            cat(&[
                &eth(&[], ETH_IPV6),
                &ipv6(
                    DSTOPTS,
                    v6(2),
                    &cat(&[
                        &ext(DSTOPTS, FRAGMENT, 0),
                        &ext(FRAGMENT, UDP, 0),
                        &l4(UDP, 7000),
                    ]),
                ),
            ]),
            Pass(Counter::PassFragment),
        ),
        case(
            "ipv6 chain of 9 extension headers",
            {
                let mut chain = Vec::new();
                for _ in 0..8 {
                    chain.extend(ext(DSTOPTS, DSTOPTS, 0));
                }
                chain.extend(ext(DSTOPTS, UDP, 0));
                chain.extend(l4(UDP, 7000));
                cat(&[&eth(&[], ETH_IPV6), &ipv6(DSTOPTS, v6(2), &chain)])
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv6 transport header beyond the parsers' offset bound",
            {
                // Two destination-options headers of 512 bytes: the UDP header starts at
                // 14 + 40 + 1024, past MAX_L4_OFFSET, inside the frame.
                let mut chain = ext(DSTOPTS, DSTOPTS, 63);
                chain.extend(ext(DSTOPTS, UDP, 63));
                chain.extend(l4(UDP, 7000));
                const { assert!(14 + 40 + 1024 > MAX_L4_OFFSET) };
                cat(&[&eth(&[], ETH_IPV6), &ipv6(DSTOPTS, v6(2), &chain)])
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv6 chain of 8 extension headers (the most parsed)",
            {
                let mut chain = Vec::new();
                for _ in 0..7 {
                    chain.extend(ext(DSTOPTS, DSTOPTS, 0));
                }
                chain.extend(ext(DSTOPTS, UDP, 0));
                chain.extend(l4(UDP, 7000));
                cat(&[&eth(&[], ETH_IPV6), &ipv6(DSTOPTS, v6(2), &chain)])
            },
            Hit("udp", "[2001:db8::2]:7000"),
        ),
        case(
            "ipv6 extension header runs past the payload",
            {
                let mut f = cat(&[
                    &eth(&[], ETH_IPV6),
                    &ipv6(HOPOPTS, v6(2), &ext(HOPOPTS, UDP, 0)),
                ]);
                f[14 + 40 + 1] = 4; // claims 40 bytes, carries 8
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "icmpv6",
            v6_frame(ICMPV6, v6(2), 0),
            Pass(Counter::PassNotTcpUdp),
        ),
        case(
            "ipv6 no next header",
            cat(&[&eth(&[], ETH_IPV6), &ipv6(NO_NEXT, v6(2), &[])]),
            Pass(Counter::PassNotTcpUdp),
        ),
        // --- not IP
        case("arp", arp(), Pass(Counter::PassNotIp)),
        case(
            "lldp",
            cat(&[&eth(&[], ETH_LLDP), &[0u8; 46]]),
            Pass(Counter::PassNotIp),
        ),
        // --- malformed IP
        case(
            "ipv4 IHL 4",
            {
                let mut f = v4(UDP, DST4, 7000);
                f[14] = 0x44;
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv4 header with version 6",
            {
                let mut f = v4(UDP, DST4, 7000);
                f[14] = 0x65;
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv4 total length beyond the frame",
            {
                let mut f = v4(UDP, DST4, 7000);
                f[16..18].copy_from_slice(&200u16.to_be_bytes());
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv4 total length below the header length",
            {
                let mut f = v4(UDP, DST4, 7000);
                f[16..18].copy_from_slice(&12u16.to_be_bytes());
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv4 total length cuts the UDP header",
            {
                let mut f = v4(UDP, DST4, 7000);
                f[16..18].copy_from_slice(&24u16.to_be_bytes());
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv6 payload length beyond the frame",
            {
                let mut f = v6_frame(UDP, v6(2), 7000);
                f[18..20].copy_from_slice(&100u16.to_be_bytes());
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv6 payload length cuts the TCP header",
            {
                let mut f = v6_frame(TCP, v6(2), 443);
                f[18..20].copy_from_slice(&12u16.to_be_bytes());
                f
            },
            Pass(Counter::PassMalformed),
        ),
        case(
            "ipv6 header with version 4",
            {
                let mut f = v6_frame(UDP, v6(2), 7000);
                f[14] = 0x40;
                f
            },
            Pass(Counter::PassMalformed),
        ),
    ];

    // --- a wildcard alone on its port (the port entry's direct match, no hash lookup)
    c.extend([
        case(
            "udp4 unicast to a lone wildcard",
            v4(UDP, OTHER4, 5353),
            Hit("udp", "0.0.0.0:5353"),
        ),
        case(
            "udp4 limited broadcast to a lone wildcard",
            v4(UDP, [255, 255, 255, 255], 5353),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp4 link-layer broadcast to a lone wildcard",
            broadcast_mac(v4(UDP, DST4, 5353)),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp6 to an IPv4 wildcard's port",
            v6_frame(UDP, v6(2), 5353),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "tcp4 to a udp wildcard's port",
            v4(TCP, DST4, 5353),
            Pass(Counter::PassNoBinding),
        ),
    ]);

    // --- broadcast and multicast: exact bindings only (RFC 1122: no wildcard service answers)
    c.extend([
        case(
            "udp4 link-layer broadcast to a wildcard",
            broadcast_mac(v4(UDP, OTHER4, 53)),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp4 link-layer broadcast to an exact binding",
            broadcast_mac(v4(UDP, DST4, 7000)),
            hit_udp4_exact(),
        ),
        case(
            "udp4 limited broadcast to a wildcard",
            v4(UDP, [255, 255, 255, 255], 53),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp4 multicast to a wildcard",
            v4(UDP, [239, 1, 2, 3], 53),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "udp4 multicast group bound exactly",
            v4(UDP, [239, 1, 2, 3], 5000),
            Hit("udp", "239.1.2.3:5000"),
        ),
        case(
            "tcp6 multicast to a wildcard",
            v6_frame(
                TCP,
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                8080,
            ),
            Pass(Counter::PassNoBinding),
        ),
    ]);
    // --- ICMP errors: to the socket whose packet they quote
    c.extend([
        case(
            "icmp4 frag needed quoting a bound tcp socket",
            icmp4_error(3, 4, DST4, TCP, 80, 8),
            Hit("tcp", "198.18.0.2:80"),
        ),
        case(
            "icmp4 port unreachable quoting a wildcard udp socket",
            icmp4_error(3, 3, OTHER4, UDP, 53, 8),
            Hit("udp", "0.0.0.0:53"),
        ),
        case(
            "icmp4 time exceeded quoting an unbound socket",
            icmp4_error(11, 0, DST4, TCP, 81, 8),
            Pass(Counter::PassNoBinding),
        ),
        case(
            "icmp4 error quoting only 4 bytes of transport",
            icmp4_error(3, 4, DST4, TCP, 80, 4),
            Pass(Counter::PassMalformed),
        ),
        case(
            "icmp4 error quoting an ICMP packet",
            icmp4_error(3, 1, DST4, ICMP, 80, 8),
            Pass(Counter::PassNotTcpUdp),
        ),
        case(
            "icmp4 redirect (not an error about a socket)",
            icmp4_error(5, 1, DST4, TCP, 80, 8),
            Pass(Counter::PassNotTcpUdp),
        ),
        case(
            "icmpv6 packet too big quoting a bound tcp socket",
            icmp6_error(2, v6(2), TCP, 443),
            Hit("tcp", "[2001:db8::2]:443"),
        ),
        case(
            "icmpv6 echo request",
            icmp6_error(128, v6(2), TCP, 443),
            Pass(Counter::PassNotTcpUdp),
        ),
    ]);

    // Truncation at every header boundary (and one byte short of it): malformed, never a hit.
    let full_udp4 = v4(UDP, DST4, 7000);
    for cut in [14, 14 + 19, 14 + 20, 14 + 27] {
        c.push(case(
            "udp4 truncated",
            full_udp4[..cut].to_vec(),
            Pass(Counter::PassMalformed),
        ));
    }
    let full_tcp4 = v4(TCP, DST4, 80);
    for cut in [14 + 20 + 4, 14 + 20 + 19] {
        c.push(case(
            "tcp4 truncated",
            full_tcp4[..cut].to_vec(),
            Pass(Counter::PassMalformed),
        ));
    }
    let full_udp6 = v6_frame(UDP, v6(2), 7000);
    for cut in [14 + 39, 14 + 40, 14 + 47] {
        c.push(case(
            "udp6 truncated",
            full_udp6[..cut].to_vec(),
            Pass(Counter::PassMalformed),
        ));
    }
    let vlan_udp4 = cat(&[
        &eth(&[VLAN_8021Q], ETH_IPV4),
        &ipv4(UDP, DST4, 0, 0, &l4(UDP, 7000)),
    ]);
    c.push(case(
        "vlan udp4 truncated in the IPv4 header",
        vlan_udp4[..18 + 10].to_vec(),
        Pass(Counter::PassMalformed),
    ));
    c
}

fn hit_udp4_exact() -> Want {
    Hit("udp", "198.18.0.2:7000")
}

/// `frame` sent to the link-layer broadcast address.
fn broadcast_mac(mut frame: Vec<u8>) -> Vec<u8> {
    frame[..6].fill(0xff);
    frame
}

/// An ICMP error from a router (198.18.0.1) to `src`, quoting a packet `src`:`sport` ->
/// 198.19.0.7:40000 over `proto`, with `l4_bytes` of its transport header.
fn icmp4_error(
    kind: u8,
    code: u8,
    src: [u8; 4],
    proto: u8,
    sport: u16,
    l4_bytes: usize,
) -> Vec<u8> {
    let mut quoted = vec![0x45, 0, 0, 48, 0, 0, 0x40, 0, 63, proto, 0, 0];
    quoted.extend_from_slice(&src);
    quoted.extend_from_slice(&[198, 19, 0, 7]);
    let mut l4 = sport.to_be_bytes().to_vec();
    l4.extend_from_slice(&40000u16.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 1]);
    quoted.extend_from_slice(&l4[..l4_bytes]);
    let mut icmp = vec![kind, code, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&quoted);
    cat(&[&eth(&[], ETH_IPV4), &ipv4(ICMP, src, 0, 0, &icmp)])
}

/// An ICMPv6 message of `kind` to `src`, quoting a packet `src`:`sport` -> 2001:db8:1::7.
fn icmp6_error(kind: u8, src: [u8; 16], proto: u8, sport: u16) -> Vec<u8> {
    let mut quoted = vec![0x60, 0, 0, 0, 0, 20, proto, 63];
    quoted.extend_from_slice(&src);
    quoted.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    quoted.extend_from_slice(&sport.to_be_bytes());
    quoted.extend_from_slice(&[0x9c, 0x40, 0, 0, 0, 1]);
    let mut icmp = vec![kind, 0, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted);
    cat(&[&eth(&[], ETH_IPV6), &ipv6(ICMPV6, src, &icmp)])
}

struct Harness {
    ebpf: aya::Ebpf,
    maps: DemuxMaps,
}

impl Harness {
    fn new() -> Harness {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the data-plane fixtures load BPF programs: run them as root (cargo xtask test does)"
        );
        let mut ebpf = object::open(1024).expect("load object");
        let mut maps = DemuxMaps::take(&mut ebpf, None).expect("maps");
        object::load_demux(&mut ebpf).expect("the verifier accepts the program");
        for (proto, addr) in BINDINGS {
            maps.bind(&Binding::parse(proto, addr).unwrap()).unwrap();
        }
        Harness { ebpf, maps }
    }

    fn run(&self, frame: &[u8]) -> u32 {
        let prog: &aya::programs::Xdp = self
            .ebpf
            .program(netdemux_common::program_names::DEMUX)
            .unwrap()
            .try_into()
            .unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
    }

    fn binding_counts(&self) -> Vec<(Binding, BindStats)> {
        self.maps.binding_stats().unwrap()
    }
}

#[test]
fn fixture_table() {
    let h = Harness::new();
    let cases = cases();
    assert!(cases.len() >= 40, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let before = h.maps.verdicts().unwrap();
        let bind_before = h.binding_counts();
        let verdict = h.run(&c.frame);
        let delta = h.maps.verdicts().unwrap().since(&before);
        let bind_after = h.binding_counts();

        let (want_counter, want_binding) = match &c.want {
            Hit(p, a) => (Counter::RedirectFailed, Some(Binding::parse(p, a).unwrap())),
            Pass(reason) => (*reason, None),
        };
        let mut want = [0u64; Counter::COUNT as usize];
        want[want_counter as usize] = 1;

        let mut moved = Vec::new();
        for ((b, before), (_, after)) in bind_before.iter().zip(&bind_after) {
            if after.packets != before.packets || after.bytes != before.bytes {
                moved.push((
                    *b,
                    after.packets - before.packets,
                    after.bytes - before.bytes,
                ));
            }
        }
        let want_moved: Vec<_> = want_binding
            .iter()
            .map(|b| (*b, 1u64, c.frame.len() as u64))
            .collect();

        if verdict != XDP_PASS || delta.slots != want || moved != want_moved {
            failures.push(format!(
                "{}: verdict {verdict}, counters {:?} (want {:?}), bindings moved {:?} (want {:?})",
                c.name, delta.slots, want, moved, want_moved
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Conservation over the whole run: one slot per frame (seen, the slots' sum, is the number
    // of frames), and the pass reasons and the two redirect verdicts are every slot there is.
    let v = h.maps.verdicts().unwrap();
    assert_eq!(v.seen(), cases.len() as u64);
    assert_eq!(
        v.seen(),
        v.passed() + v.get(Counter::Redirected) + v.get(Counter::RedirectFailed)
    );
}

/// The same table through userspace's single pass (`wire::classify`, then the exact-then-
/// wildcard lookup the workers do): the claim that the classifier mirrors the XDP parser,
/// tested. A frame the program redirects must classify to the binding it hit; a frame passed
/// for want of a binding must classify to a key that finds none; every other pass (not IP, not
/// TCP/UDP, fragment, malformed) must not classify at all. No kernel needed.
#[test]
fn fixture_table_through_the_userspace_classifier() {
    let services: Vec<(Kind, std::net::SocketAddr)> = BINDINGS
        .iter()
        .map(|(p, a)| {
            let b = Binding::parse(p, a).unwrap();
            let kind = if *p == "udp" {
                Kind::UdpSink
            } else {
                Kind::TcpEcho
            };
            (kind, b.addr)
        })
        .collect();
    let table = ServiceTable::new(&services).unwrap();
    let cases = cases();
    let mut failures = Vec::new();
    for c in &cases {
        let classified = netdemux::wire::classify(&c.frame);
        let found = classified
            .and_then(|k| table.find(&k.key, k.unicast))
            .map(|(i, kind)| Binding {
                proto: kind.proto(),
                addr: table.services()[i].1,
            });
        let ok = match &c.want {
            Hit(p, a) => found == Some(Binding::parse(p, a).unwrap()),
            Pass(Counter::PassNoBinding) => classified.is_some() && found.is_none(),
            Pass(_) => classified.is_none(),
        };
        if !ok {
            failures.push(format!(
                "{}: classified {:?}, found {:?}",
                c.name,
                classified.map(|k| k.key),
                found
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree with the XDP program:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn unbind_takes_effect_on_the_next_frame() {
    let mut h = Harness::new();
    let frame = v4(UDP, DST4, 7000);
    let before = h.maps.verdicts().unwrap();
    h.run(&frame);
    h.maps
        .unbind(&Binding::parse("udp", "198.18.0.2:7000").unwrap())
        .unwrap();
    h.run(&frame);
    h.maps
        .bind(&Binding::parse("udp", "198.18.0.2:7000").unwrap())
        .unwrap();
    h.run(&frame);
    let d = h.maps.verdicts().unwrap().since(&before);
    assert_eq!(d.seen(), 3);
    assert_eq!(d.get(Counter::RedirectFailed), 2);
    assert_eq!(d.get(Counter::PassNoBinding), 1);
    // Counters start again from zero for a binding that was removed and added back.
    let stats = h.binding_counts();
    let (_, s) = stats
        .iter()
        .find(|(b, _)| b.addr.to_string() == "198.18.0.2:7000")
        .unwrap();
    assert_eq!(s.packets, 1);
}

#[test]
fn exact_binding_removed_falls_back_to_wildcard() {
    let mut h = Harness::new();
    let frame = v4(UDP, DST4, 53);
    h.run(&frame);
    h.maps
        .unbind(&Binding::parse("udp", "198.18.0.2:53").unwrap())
        .unwrap();
    h.run(&frame);
    let stats = h.binding_counts();
    let count = |a: &str| {
        stats
            .iter()
            .find(|(b, _)| b.addr.to_string() == a)
            .map(|(_, s)| s.packets)
    };
    assert_eq!(count("0.0.0.0:53"), Some(1));
    assert_eq!(count("198.18.0.2:53"), None);
}

#[test]
fn duplicate_bind_and_absent_unbind_change_nothing() {
    let mut h = Harness::new();
    let b = Binding::parse("udp", "198.18.0.2:7000").unwrap();
    let before = h.maps.bindings().unwrap();
    let err = h.maps.bind(&b).unwrap_err().to_string();
    assert!(err.contains("already bound"), "{err}");
    let absent = Binding::parse("udp", "198.18.0.2:9999").unwrap();
    let err = h.maps.unbind(&absent).unwrap_err().to_string();
    assert!(err.contains("not bound"), "{err}");
    assert_eq!(h.maps.bindings().unwrap(), before);
}

#[test]
fn full_table_is_refused_and_left_intact() {
    let mut ebpf = object::open(2).expect("load object");
    let mut maps = DemuxMaps::take(&mut ebpf, None).unwrap();
    maps.bind(&Binding::parse("udp", "198.18.0.2:1").unwrap())
        .unwrap();
    maps.bind(&Binding::parse("udp", "198.18.0.2:2").unwrap())
        .unwrap();
    let err = maps
        .bind(&Binding::parse("udp", "198.18.0.2:3").unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("table is full (2 entries)"), "{err}");
    assert_eq!(maps.bindings().unwrap().len(), 2);
}

/// A binding from its protocol and address.
fn b(proto: &str, addr: &str) -> Binding {
    Binding::parse(proto, addr).unwrap()
}

/// The packets counted for `binding`.
fn packets_of(h: &Harness, binding: &str) -> Option<u64> {
    let b = Binding::parse("udp", binding).unwrap();
    h.binding_counts()
        .into_iter()
        .find(|(x, _)| *x == b)
        .map(|(_, s)| s.packets)
}

/// Takes `binding`'s key out of the active set's hash map behind the port map's back, runs
/// `frame`, and puts the key back: what the program does with the hash lookup unable to find
/// the binding.
fn run_without_hash_key(h: &mut Harness, binding: &str, frame: &[u8]) {
    let set = h.maps.active_set().unwrap();
    let key = b("udp", binding).key();
    let index = h.maps.binds[set].get(&key, 0).unwrap();
    h.maps.binds[set].remove(&key).unwrap();
    h.run(frame);
    h.maps.binds[set].insert(key, index, 0).unwrap();
}

#[test]
fn port_entries_match_bindings_in_their_lanes_and_the_rest_by_hash() {
    use netdemux_common::{FAMILY_V4, FAMILY_V6, LANES};
    let mut h = Harness::new();
    let (slot4, slot6) = (
        netdemux_common::port_slot(17, 7000, FAMILY_V4).unwrap(),
        netdemux_common::port_slot(17, 7000, FAMILY_V6).unwrap(),
    );
    // IPv4 and IPv6 bindings of port 7000 have an entry each, each binding in lane 0.
    let (e4, e6) = (
        h.maps.port_entry(slot4).unwrap(),
        h.maps.port_entry(slot6).unwrap(),
    );
    assert_eq!((e4.count, e4.hashed, e6.count, e6.hashed), (1, 0, 1, 0));
    assert!(e4.lane(0).is_some() && e6.lane(0).is_some() && e4.lane(0) != e6.lane(0));
    // A refused duplicate leaves the entry as it was.
    assert!(h.maps.bind(&b("udp", "198.18.0.2:7000")).is_err());
    assert_eq!(h.maps.port_entry(slot4).unwrap(), e4);

    // Three more IPv4 addresses on the port, one the wildcard: each takes a lane.
    let lanes = [
        "198.18.0.2:7000",
        "198.18.0.3:7000",
        "0.0.0.0:7000",
        "198.18.0.4:7000",
    ];
    assert_eq!(lanes.len(), LANES);
    for a in &lanes[1..] {
        h.maps.bind(&b("udp", a)).unwrap();
    }
    let full = h.maps.port_entry(slot4).unwrap();
    assert_eq!((full.count, full.hashed), (4, 0));
    assert!((0..LANES).all(|l| full.lane(l).is_some()));
    // The lanes alone decide: each address is delivered to its own binding, another address
    // to the wildcard, with the hash map unable to find any of them.
    let frames = [
        v4(UDP, DST4, 7000),
        v4(UDP, [198, 18, 0, 3], 7000),
        v4(UDP, OTHER4, 7000),
        v4(UDP, [198, 18, 0, 4], 7000),
    ];
    let before = h.maps.verdicts().unwrap();
    for (a, frame) in lanes.iter().zip(&frames) {
        run_without_hash_key(&mut h, a, frame);
        assert_eq!(packets_of(&h, a), Some(1), "{a}");
    }
    let d = h.maps.verdicts().unwrap().since(&before);
    assert_eq!(d.get(Counter::RedirectFailed), 4);

    // A fifth has no lane: the port is hashed, and that binding is found through the hash
    // only (without its key, its frame goes to the wildcard's lane).
    h.maps.bind(&b("udp", "198.18.0.5:7000")).unwrap();
    let hashed = h.maps.port_entry(slot4).unwrap();
    assert_eq!((hashed.count, hashed.hashed), (5, 1));
    assert_eq!((hashed.index, hashed.addr), (full.index, full.addr));
    let fifth = v4(UDP, [198, 18, 0, 5], 7000);
    h.run(&fifth);
    assert_eq!(packets_of(&h, "198.18.0.5:7000"), Some(1));
    run_without_hash_key(&mut h, "198.18.0.5:7000", &fifth);
    assert_eq!(packets_of(&h, "198.18.0.5:7000"), Some(1));
    assert_eq!(packets_of(&h, "0.0.0.0:7000"), Some(2));
    // An exact binding without a lane still comes before the wildcard's lane: with its key
    // there, the fifth's frame went to it above, not to the wildcard.

    // A lane's binding leaves: its lane is emptied, the fifth stays hashed; its address now
    // goes to the wildcard.
    h.maps.unbind(&b("udp", "198.18.0.3:7000")).unwrap();
    let e = h.maps.port_entry(slot4).unwrap();
    assert_eq!((e.count, e.hashed, e.lane(1)), (4, 1, None));
    h.run(&frames[1]);
    assert_eq!(packets_of(&h, "0.0.0.0:7000"), Some(3));

    // Replacing the set gives the bindings lanes afresh: the fifth takes the free one, and the
    // counters carry over exactly (each binding keeps its counter index).
    let set = h.maps.bindings().unwrap();
    h.maps.replace(&set).unwrap();
    let e = h.maps.port_entry(slot4).unwrap();
    assert_eq!((e.count, e.hashed), (4, 0));
    run_without_hash_key(&mut h, "198.18.0.5:7000", &fifth);
    assert_eq!(packets_of(&h, "198.18.0.5:7000"), Some(2));
    // With the fifth and the wildcard gone, an unbound address misses.
    h.maps.unbind(&b("udp", "198.18.0.5:7000")).unwrap();
    h.maps.unbind(&b("udp", "0.0.0.0:7000")).unwrap();
    let before = h.maps.verdicts().unwrap();
    h.run(&frames[1]);
    h.run(&frames[2]);
    let d = h.maps.verdicts().unwrap().since(&before);
    assert_eq!(d.get(Counter::PassNoBinding), 2);

    // An IPv6 port has one lane: a second IPv6 binding is hashed, and found.
    h.maps.bind(&b("udp", "[2001:db8::3]:7000")).unwrap();
    let e6 = h.maps.port_entry(slot6).unwrap();
    assert_eq!((e6.count, e6.hashed), (2, 1));
    h.run(&v6_frame(UDP, v6(3), 7000));
    assert_eq!(packets_of(&h, "[2001:db8::3]:7000"), Some(1));

    // A counter index given back and handed out again starts from zero.
    for a in ["198.18.0.2:7000", "198.18.0.4:7000"] {
        h.maps.unbind(&b("udp", a)).unwrap();
    }
    assert_eq!(
        h.maps.port_entry(slot4).unwrap(),
        netdemux_common::PortEntry::EMPTY
    );
    h.maps.bind(&b("udp", "198.18.0.4:7001")).unwrap();
    assert_eq!(packets_of(&h, "198.18.0.4:7001"), Some(0));

    // A binding written behind the port map's back is not seen: the entry gates the lookup.
    let set = h.maps.active_set().unwrap();
    h.maps.binds[set]
        .insert(b("udp", "198.18.0.2:7000").key(), 0, 0)
        .unwrap();
    let before = h.maps.verdicts().unwrap();
    h.run(&v4(UDP, DST4, 7000));
    let d = h.maps.verdicts().unwrap().since(&before);
    assert_eq!(d.get(Counter::PassNoBinding), 1);
}

#[test]
fn random_and_mutated_frames_always_get_a_counted_verdict() {
    let h = Harness::new();
    let seeds: Vec<Vec<u8>> = cases().into_iter().map(|c| c.frame).collect();
    // Seeded, so a failing case can be replayed.
    let mut rng = Xorshift64::new(0x5eed_cafe_f00d_0001);
    let before = h.maps.verdicts().unwrap();
    let mut runs = 0u64;
    for i in 0..12_000 {
        let frame: Vec<u8> = match i % 3 {
            // Pure noise of any length the test harness accepts (14 bytes up to a page).
            0 => (0..14 + rng.below(1500))
                .map(|_| rng.next() as u8)
                .collect(),
            // A valid fixture with a few bytes changed.
            1 => {
                let mut f = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(f.len());
                    f[at] = rng.next() as u8;
                }
                f
            }
            // A valid fixture cut short or padded with noise.
            _ => {
                let mut f = seeds[rng.below(seeds.len())].clone();
                if rng.below(2) == 0 {
                    f.truncate(14.max(rng.below(f.len() + 1)));
                } else {
                    f.extend((0..rng.below(64)).map(|_| rng.next() as u8));
                }
                f
            }
        };
        let verdict = h.run(&frame);
        assert!(
            verdict == XDP_PASS || verdict == 4,
            "frame {i}: verdict {verdict} for {frame:02x?}"
        );
        runs += 1;
    }
    let d = h.maps.verdicts().unwrap().since(&before);
    assert_eq!(d.seen(), runs, "every frame was counted once");
    assert_eq!(
        d.seen(),
        d.passed() + d.get(Counter::Redirected) + d.get(Counter::RedirectFailed),
        "the pass reasons and the redirect verdicts cover every slot: {:?}",
        d.slots
    );
    assert!(
        d.get(Counter::PassMalformed) > 1000,
        "the noise was mostly malformed: {:?}",
        d.slots
    );
}

#[test]
fn replacing_the_binding_set_switches_at_once_and_keeps_counters_of_kept_bindings() {
    let mut h = Harness::new();
    h.run(&v4(UDP, DST4, 7000));
    h.run(&v4(UDP, DST4, 7000));
    let r = h
        .maps
        .replace(&[b("udp", "198.18.0.2:7000"), b("udp", "198.18.0.2:9999")])
        .unwrap();
    assert_eq!((r.kept, r.added, r.removed), (1, 1, BINDINGS.len() - 1));
    assert_eq!(
        h.maps.bindings().unwrap(),
        vec![b("udp", "198.18.0.2:7000"), b("udp", "198.18.0.2:9999")]
    );
    let before = h.maps.verdicts().unwrap();
    h.run(&v4(UDP, DST4, 7000)); // kept
    h.run(&v4(UDP, DST4, 9999)); // added
    h.run(&v4(TCP, DST4, 80)); // removed
    h.run(&v4(UDP, OTHER4, 53)); // removed wildcard
    let d = h.maps.verdicts().unwrap().since(&before);
    assert_eq!(d.get(Counter::RedirectFailed), 2, "{:?}", d.slots);
    assert_eq!(d.get(Counter::PassNoBinding), 2, "{:?}", d.slots);
    let kept = h
        .binding_counts()
        .into_iter()
        .find(|(x, _)| *x == b("udp", "198.18.0.2:7000"))
        .unwrap()
        .1;
    assert_eq!(kept.packets, 3, "the kept binding's counter went on from 2");
    // And back: the set that was replaced earlier is emptied first, nothing of it leaks back.
    h.maps.replace(&[b("tcp", "[2001:db8::2]:443")]).unwrap();
    assert_eq!(
        h.maps.bindings().unwrap(),
        vec![b("tcp", "[2001:db8::2]:443")]
    );
    let before = h.maps.verdicts().unwrap();
    h.run(&v4(UDP, DST4, 7000));
    h.run(&v6_frame(TCP, v6(2), 443));
    let d = h.maps.verdicts().unwrap().since(&before);
    assert_eq!(
        (
            d.get(Counter::PassNoBinding),
            d.get(Counter::RedirectFailed)
        ),
        (1, 1),
        "{:?}",
        d.slots
    );
    // Incremental changes go to the set in use.
    h.maps.bind(&b("udp", "198.18.0.2:7000")).unwrap();
    assert_eq!(h.maps.bindings().unwrap().len(), 2);
    let slot = netdemux_common::port_slot(17, 7000, netdemux_common::FAMILY_V4).unwrap();
    assert_eq!(h.maps.port_count(slot).unwrap(), 1);
}
