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

use netdemux::test_rng::{Xorshift32, Xorshift64};

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
    let mut x = Xorshift32::new(seq.wrapping_mul(2_654_435_761) | 1);
    let mut p: Vec<u8> = (0..len).map(|_| x.next() as u8).collect();
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

/// `netdemux run` arguments: the echo on port 7000 of both of veth_b's addresses.
const ECHO_V4_V6: &[&str] = &[
    "--udp-echo",
    "198.18.0.2:7000",
    "--udp-echo",
    "[2001:db8::2]:7000",
];

#[test]
fn kernel_sockets_get_every_payload_back_over_ipv4_and_ipv6() {
    let tb = Testbed::new(2);
    let _d = Daemon::start(&tb, ECHO_V4_V6);
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
    let _d = Daemon::start(&tb, ECHO_V4_V6);
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
    let _d = Daemon::start(&tb, ECHO_V4_V6);
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
    tb.add_second_address();
    let _d = Daemon::start(&tb, &["--udp-echo", "0.0.0.0:7100"]);
    for ip in ["198.18.0.2", "198.18.0.3"] {
        let dst = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 7100);
        assert_eq!(ping_pong(&tb, dst, 200), 200, "{dst}");
    }
}

#[test]
fn a_storm_of_random_and_truncated_frames_disturbs_nothing() {
    use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp};
    let tb = Testbed::new(1);
    let _d = Daemon::start(&tb, &["--udp-echo", "198.18.0.2:7000"]);
    let before = tb.stats();
    // A client that checks its answers while the storm runs.
    let dst: SocketAddr = "198.18.0.2:7000".parse().unwrap();
    let client = {
        in_netns(&tb.ns_a, move || {
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0u8; 2048];
            let (mut good, mut lost) = (0u32, 0u32);
            for seq in 0..3000u32 {
                let p = payload(seq);
                sock.send_to(&p, dst).unwrap();
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        assert_eq!(from, dst);
                        assert_eq!(&buf[..n], &p[..], "answer {seq} intact during the storm");
                        good += 1;
                    }
                    Err(_) => lost += 1, // a veth drop under the flood (counted by the kernel)
                }
            }
            (good, lost)
        })
    };
    // The storm: random bytes of random lengths, and truncated copies of a valid datagram to
    // the echo, each template sent 2,000 times through XDP live frames from namespace a.
    let veth_a = tb.veth_a.clone();
    let storm = in_netns(&tb.ns_a, move || {
        let ifindex = netdemux::control::iface::Interface::link(&veth_a)
            .and_then(|i| i.ifindex())
            .unwrap();
        let mut ebpf = netdemux::control::object::open(1).unwrap();
        let prog: &mut Xdp =
            netdemux::control::object::load_program(&mut ebpf, netdemux_common::program_names::GEN)
                .unwrap();
        let mut x = Xorshift64::new(0x0123_4567_89ab_cdef);
        let mut rnd = || x.next();
        let valid = {
            let mut f = vec![0xffu8; 12];
            f.extend_from_slice(&[
                0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0,
                2,
            ]);
            f.extend_from_slice(&[0, 9, 0x1b, 0x58, 0, 20, 0, 0]);
            f.extend_from_slice(&[0x5a; 12]);
            f
        };
        let mut sent = 0u64;
        for t in 0..100 {
            let frame: Vec<u8> = if t % 2 == 0 {
                (0..14 + (rnd() % 1400) as usize)
                    .map(|_| rnd() as u8)
                    .collect()
            } else {
                valid[..14 + (rnd() % (valid.len() as u64 - 14)) as usize].to_vec()
            };
            let mut ctx = [0u8; 24];
            ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
            prog.test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat: 2000,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..Default::default()
            })
            .unwrap();
            sent += 2000;
        }
        sent
    });
    let flooded = storm.join().unwrap();
    let (good, lost) = client.join().unwrap();
    assert!(
        good >= 2900,
        "the client was answered ({good} answered, {lost} lost)"
    );
    let after = tb.stats();
    assert!(after.get("queues").is_some(), "the daemon is still up");
    let n = |s: &serde_json::Value, k: &str| s["verdicts"][k].as_u64().unwrap();
    let seen = n(&after, "seen") - n(&before, "seen");
    assert_eq!(
        n(&after, "seen"),
        n(&after, "passed") + n(&after, "redirected") + n(&after, "redirect_failed")
    );
    let malformed = after["verdicts"]["pass_reasons"]["malformed"]
        .as_u64()
        .unwrap();
    assert!(
        malformed >= 90_000,
        "the truncated half of the storm was malformed: {after}"
    );
    assert!(
        seen >= flooded * 9 / 10,
        "the program saw the storm ({seen} of {flooded} offered)"
    );
    let answered: u64 = after["services"][0]["packets"].as_u64().unwrap();
    eprintln!(
        "storm: {flooded} offered, {seen} seen, {malformed} malformed; client {good} answered, {lost} lost"
    );
    assert_eq!(u64::from(good) + u64::from(lost), 3000);
    assert!(answered >= u64::from(good), "{after}");
}

/// Datagrams whose UDP checksum is wrong get no answer, as the kernel's socket would never see
/// them (udp_lib_checksum_complete): answering would send the damage back under a checksum that
/// vouches for it. Sent with scapy (Debian's python3-scapy) from namespace a, 20 damaged and 20
/// right ones interleaved, from a port where a kernel socket waits for the answers.
#[test]
fn datagrams_with_a_wrong_checksum_get_no_answer() {
    let tb = Testbed::new(1);
    let _d = Daemon::start(&tb, &["--udp-echo", "198.18.0.2:7000"]);
    let from: SocketAddr = "0.0.0.0:40123".parse().unwrap();
    let answers = QuietReceiver::start(&tb.ns_a, from, None, Vec::new(), |got, d, _| {
        got.push(String::from_utf8_lossy(d).into_owned());
    });
    // 0x1234 is no datagram's right checksum here (each right one is printed and checked).
    let script = "from scapy.all import IP, UDP, send, raw\n\
         for i in range(20):\n\
         \x20   good = IP(dst='198.18.0.2')/UDP(sport=40123, dport=7000)/('good-%02d' % i)\n\
         \x20   assert IP(raw(good))[UDP].chksum != 0x1234\n\
         \x20   send(good, verbose=False)\n\
         \x20   send(IP(dst='198.18.0.2')/UDP(sport=40123, dport=7000, chksum=0x1234)/('bad-%02d' % i), verbose=False)\n";
    scapy(&tb.ns_a, script);
    let mut got = answers.finish();
    got.sort();
    let good: Vec<String> = (0..20).map(|i| format!("good-{i:02}")).collect();
    assert_eq!(got, good, "every right datagram answered, no damaged one");
    let stats = tb.stats();
    assert_eq!(stats["services"][0]["unanswered"].as_u64(), Some(20));
    assert_eq!(queue_sum(&stats, "checksum_errors"), 20, "{stats}");
}
