//! `netdemux run --udp-echo` against the kernel's UDP stack and socat in the peer namespace:
//! every payload comes back intact, from the address it was sent to, over IPv4 and IPv6; the
//! kernel still answers unbound ports. Requires root.

mod support;

use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, UdpSocket},
    process::{Command, Stdio},
    time::Duration,
};

use support::netns::*;

/// `netdemux run` in namespace b until dropped.
struct Daemon(#[allow(dead_code)] netdemux::testbed::Daemon);

impl Daemon {
    fn start(tb: &Testbed, args: &[&str]) -> Daemon {
        Daemon(netdemux::testbed::Daemon::start(tb, args).expect("netdemux run comes up"))
    }
}

/// A payload that differs per sequence number in content and length (1..=1400 bytes).
fn payload(seq: u32) -> Vec<u8> {
    let len = 1 + (seq as usize * 7919) % 1400;
    let mut x = seq.wrapping_mul(2_654_435_761) | 1;
    let mut p: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    p[..4.min(len)].copy_from_slice(&seq.to_be_bytes()[..4.min(len)]);
    p
}

/// Sends `n` datagrams one at a time from four sockets (four flows) in namespace a to `dst`;
/// each answer must come from `dst` with exactly the payload sent. Returns how many came back.
fn ping_pong(tb: &Testbed, dst: SocketAddr, n: u32) -> u32 {
    in_netns(&tb.ns_a, move || {
        let any: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .unwrap();
        let socks: Vec<UdpSocket> = (0..4)
            .map(|_| {
                let s = UdpSocket::bind(any).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                s
            })
            .collect();
        let mut good = 0;
        let mut buf = vec![0u8; 2048];
        for seq in 0..n {
            let sock = &socks[seq as usize % socks.len()];
            let p = payload(seq);
            sock.send_to(&p, dst).unwrap();
            match sock.recv_from(&mut buf) {
                Ok((len, from)) => {
                    assert_eq!(from, dst, "answer {seq} from the address it was sent to");
                    assert_eq!(&buf[..len], &p[..], "payload {seq} intact");
                    good += 1;
                }
                Err(e) => panic!("no answer to datagram {seq} ({} bytes): {e}", p.len()),
            }
        }
        good
    })
    .join()
    .unwrap()
}

#[test]
fn kernel_sockets_get_every_payload_back_over_ipv4_and_ipv6() {
    let tb = Testbed::new(2);
    let _d = Daemon::start(
        &tb,
        &[
            "--udp-echo",
            "198.18.0.2:7000",
            "--udp-echo",
            "[2001:db8::2]:7000",
        ],
    );
    for dst in ["198.18.0.2:7000", "[2001:db8::2]:7000"] {
        let dst: SocketAddr = dst.parse().unwrap();
        assert_eq!(ping_pong(&tb, dst, 10_000), 10_000, "{dst}");
    }
    let stats = tb.stats();
    let answered: u64 = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["tx"].as_u64().unwrap())
        .sum();
    assert_eq!(answered, 20_000, "{stats}");
    for s in stats["services"].as_array().unwrap() {
        assert_eq!(s["kind"], "udp-echo");
        assert_eq!(s["packets"], 10_000);
        assert_eq!(s["unanswered"], 0);
    }
}

#[test]
fn socat_gets_its_lines_back() {
    let tb = Testbed::new(1);
    let _d = Daemon::start(
        &tb,
        &[
            "--udp-echo",
            "198.18.0.2:7000",
            "--udp-echo",
            "[2001:db8::2]:7000",
        ],
    );
    for (i, dst) in ["UDP4:198.18.0.2:7000", "UDP6:[2001:db8::2]:7000"]
        .iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let line = format!("socat line {i}: {}\n", "x".repeat(i * 37));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &tb.ns_a, "socat", "-t", "0.3", "-", dst])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), line, "{dst}");
    }
}

#[test]
fn the_kernel_still_answers_unbound_ports_with_icmp_unreachable() {
    let tb = Testbed::new(1);
    let _d = Daemon::start(
        &tb,
        &[
            "--udp-echo",
            "198.18.0.2:7000",
            "--udp-echo",
            "[2001:db8::2]:7000",
        ],
    );
    for dst in ["198.18.0.2:7999", "[2001:db8::2]:7999"] {
        let dst: SocketAddr = dst.parse().unwrap();
        let err = in_netns(&tb.ns_a, move || {
            let any: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .unwrap();
            let s = UdpSocket::bind(any).unwrap();
            s.connect(dst).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send(b"anyone?").unwrap();
            s.recv(&mut [0u8; 64]).unwrap_err().kind()
        })
        .join()
        .unwrap();
        assert_eq!(
            err,
            ErrorKind::ConnectionRefused,
            "{dst}: ICMP port unreachable from the kernel"
        );
    }
}

#[test]
fn a_wildcard_echo_answers_from_each_address() {
    let tb = Testbed::new(1);
    must(
        "ip",
        &[
            "-n",
            &tb.ns_b,
            "addr",
            "add",
            "198.18.0.3/24",
            "dev",
            &tb.veth_b,
        ],
    );
    must(
        "ip",
        &[
            "netns",
            "exec",
            &tb.ns_a,
            "ping",
            "-c",
            "1",
            "-w",
            "5",
            "198.18.0.3",
        ],
    );
    let _d = Daemon::start(&tb, &["--udp-echo", "0.0.0.0:7100"]);
    for ip in ["198.18.0.2", "198.18.0.3"] {
        let dst = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 7100);
        assert_eq!(ping_pong(&tb, dst, 200), 200, "{dst}");
    }
}
