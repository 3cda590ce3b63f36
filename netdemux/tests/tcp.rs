//! The userspace TCP stack against the Linux kernel's as the peer: `netdemux run --http` and
//! `--tcp-echo` in namespace b, curl and std::net sockets in namespace a, over IPv4 and IPv6;
//! bulk transfers checked by SHA-256 with and without injected loss and reordering; many
//! connections, after which the flow tables are empty again; a SYN flood from `netdemux gen`
//! while established connections keep being served. Requires root.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netdemux::test_rng::Xorshift64;

use sha2::{Digest as _, Sha256};
use support::netns::*;

const HTTP4: &str = "198.18.0.2:8080";
const HTTP6: &str = "[2001:db8::2]:8080";
const ECHO4: &str = "198.18.0.2:7001";
const ECHO6: &str = "[2001:db8::2]:7001";

/// The services on both families.
fn services() -> Vec<&'static str> {
    vec![
        "--http",
        HTTP4,
        "--http",
        HTTP6,
        "--tcp-echo",
        ECHO4,
        "--tcp-echo",
        ECHO6,
    ]
}

fn start(tb: &Testbed, extra: &[&str]) -> netdemux::testbed::Daemon {
    let mut args = services();
    args.extend_from_slice(extra);
    netdemux::testbed::Daemon::start(tb, &args).expect("netdemux run comes up")
}

/// The TCP counters of queue `q` from `stats --json`.
fn tcp_counter(tb: &Testbed, q: usize, name: &str) -> u64 {
    tb.stats()["queues"][q]["tcp"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats --json has queues[{q}].tcp.{name}"))
}

/// Sum of a TCP counter over all queues.
fn tcp_total(tb: &Testbed, name: &str) -> u64 {
    let stats = tb.stats();
    stats["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["tcp"][name].as_u64().expect("tcp counter"))
        .sum()
}

/// Waits up to `limit` for every queue's flow table to be empty.
fn flow_tables_empty(tb: &Testbed, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if tcp_total(tb, "open") == 0 {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

fn curl(tb: &Testbed, args: &[&str]) -> std::process::Output {
    let mut full = vec![
        "netns",
        "exec",
        tb.ns_a.as_str(),
        "curl",
        "-sS",
        "--max-time",
        "10",
    ];
    full.extend_from_slice(args);
    Command::new("ip").args(&full).output().expect("curl runs")
}

#[test]
fn curl_gets_answers_over_ipv4_and_ipv6_on_kept_alive_connections() {
    let tb = Testbed::new(2);
    let _d = start(&tb, &[]);
    for url in [
        "http://198.18.0.2:8080/",
        "http://[2001:db8::2]:8080/index.html",
    ] {
        // Three requests; curl reuses one connection for all of them.
        let out = curl(&tb, &["-v", url, url, url]);
        let body = String::from_utf8_lossy(&out.stdout);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "curl {url}: {log}");
        assert_eq!(body, "hello from netdemux\n".repeat(3), "{log}");
        assert!(log.contains("< HTTP/1.1 200 OK"), "{log}");
        assert_eq!(
            log.matches("Connected to").count(),
            1,
            "one connection for three requests: {log}"
        );
    }
    // curl closed its connections first; netdemux followed (no TIME_WAIT on this side).
    assert!(
        flow_tables_empty(&tb, Duration::from_secs(5)),
        "connections closed"
    );
    // Every segment the kernel in namespace a received came from the workers, and each is in
    // their `tx` count (it once counted only in-place UDP answers, and showed 0 here).
    thread::sleep(Duration::from_millis(200));
    let sent = netdemux::testbed::queue_sum(&tb.stats(), "tx");
    let received = netdemux::testbed::kernel_counters(&tb.ns_a, &["TcpInSegs"]).unwrap();
    assert_eq!(sent, received, "frames sent");
    // A method other than GET/HEAD is refused, and the connection closed.
    let out = curl(
        &tb,
        &[
            "-X",
            "POST",
            "-d",
            "x",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://198.18.0.2:8080/",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
    assert_eq!(tcp_total(&tb, "opened"), 3);
}

/// Sends `len` pseudo-random bytes to the echo at `dst` from namespace a while reading the
/// echo back; returns (sha256 sent, sha256 received, bytes received, seconds).
fn echo_bulk(tb: &Testbed, dst: SocketAddr, len: usize) -> ([u8; 32], [u8; 32], usize, f64) {
    in_netns(&tb.ns_a, move || {
        let stream = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let started = Instant::now();
        let sender = thread::spawn(move || {
            let mut hash = Sha256::new();
            let mut x = Xorshift64::new(0x9e37_79b9_7f4a_7c15);
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = chunk.len().min(len - sent);
                x.fill(&mut chunk[..n]);
                writer.write_all(&chunk[..n]).expect("write to the echo");
                hash.update(&chunk[..n]);
                sent += n;
            }
            writer.shutdown(Shutdown::Write).unwrap();
            <[u8; 32]>::from(hash.finalize())
        });
        let mut reader = stream;
        let mut hash = Sha256::new();
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hash.update(&buf[..n]);
                    got += n;
                }
                Err(e) => panic!("reading the echo after {got} of {len} bytes: {e}"),
            }
        }
        let secs = started.elapsed().as_secs_f64();
        (sender.join().unwrap(), hash.finalize().into(), got, secs)
    })
    .join()
    .unwrap()
}

#[test]
fn fifty_megabytes_each_way_through_the_echo_over_ipv4_and_ipv6() {
    let tb = Testbed::new(1);
    let _d = start(&tb, &[]);
    for dst in [ECHO4, ECHO6] {
        let (sent, got, n, secs) = echo_bulk(&tb, dst.parse().unwrap(), 50 << 20);
        assert_eq!(n, 50 << 20, "{dst}: every byte came back");
        assert_eq!(sent, got, "{dst}: SHA-256 of what came back");
        eprintln!("{dst}: 50 MB each way in {secs:.2} s");
    }
    assert!(flow_tables_empty(&tb, Duration::from_secs(5)));
    assert_eq!(tcp_counter(&tb, 0, "resets_sent"), 0);
}

/// A link whose MTU (9000, jumbo frames) is larger than a UMEM frame: the MSS netdemux announces
/// must keep the peer's segments within what a socket can receive — a 4 KiB frame less the
/// kernel's 256 bytes of headroom. Two bugs this found: the MTU was read from /sys/class/net,
/// which under `--netns` shows the namespace /sys was mounted in, so the MSS fell back to a
/// 1500-byte MTU's (segment size 1448 here); with the MTU read right, the MSS allowed for the
/// whole 4 KiB frame (3974), the kernel dropped the peer's full-size segments as too long for a
/// frame and the transfer stalled on the first one.
#[test]
fn a_jumbo_frame_link_carries_a_transfer_in_segments_a_frame_holds() {
    let tb = Testbed::new(1);
    for (ns, dev) in [(&tb.ns_a, &tb.veth_a), (&tb.ns_b, &tb.veth_b)] {
        must("ip", &["-n", ns, "link", "set", dev, "mtu", "9000"]);
    }
    let _d = start(&tb, &[]);
    // The peer's segment size (TCP_MAXSEG: the MSS netdemux announced, less options): larger
    // than a 1500-byte MTU allows, and a full segment with its Ethernet, IPv4 and TCP headers
    // fits in a frame's 3840 bytes.
    let maxseg = in_netns(&tb.ns_a, || {
        let s = TcpStream::connect_timeout(&ECHO4.parse().unwrap(), Duration::from_secs(5))
            .expect("connect");
        nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::TcpMaxSeg).unwrap()
    })
    .join()
    .unwrap() as usize;
    assert!(
        maxseg > 1460 && 14 + 20 + 20 + maxseg <= 4096 - 256,
        "segment size {maxseg}"
    );
    for dst in [ECHO4, ECHO6] {
        let (sent, got, n, _) = echo_bulk(&tb, dst.parse().unwrap(), 4 << 20);
        assert_eq!(n, 4 << 20, "{dst}: every byte came back");
        assert_eq!(sent, got, "{dst}: SHA-256 of what came back");
    }
    let stats = tb.stats();
    let dropped = stats["queues"][0]["rx_dropped"].as_u64();
    assert_eq!(
        dropped,
        Some(0),
        "frames too long for a UMEM frame: {stats}"
    );
}

#[test]
fn fifty_megabytes_each_way_with_two_percent_loss_and_reordering() {
    // One queue: a kernel sender on veth picks a new TX queue (so a new RX queue here) when
    // it rethinks its hash after a timeout; a NIC's RSS would keep the flow on its queue.
    let tb = Testbed::new(1);
    let _d = start(
        &tb,
        &[
            "--fault-loss",
            "0.02",
            "--fault-reorder",
            "0.02",
            "--fault-seed",
            "7",
        ],
    );
    for dst in [ECHO4, ECHO6] {
        let (sent, got, n, secs) = echo_bulk(&tb, dst.parse().unwrap(), 50 << 20);
        assert_eq!(n, 50 << 20, "{dst}: every byte came back");
        assert_eq!(sent, got, "{dst}: SHA-256 of what came back");
        eprintln!("{dst}: 50 MB each way with loss in {secs:.2} s");
    }
    let stats = tb.stats();
    let tcp = &stats["queues"][0]["tcp"];
    eprintln!("tcp counters: {tcp}");
    assert!(
        tcp["faults_dropped"].as_u64().unwrap() > 1000,
        "loss was injected"
    );
    assert!(
        tcp["faults_reordered"].as_u64().unwrap() > 1000,
        "reordering was injected"
    );
    assert!(
        tcp["retransmits"].as_u64().unwrap() > 0,
        "netdemux repaired its losses"
    );
    assert!(tcp["out_of_order"].as_u64().unwrap() > 0);
    assert!(flow_tables_empty(&tb, Duration::from_secs(10)));
}

/// One short exchange with the echo at `dst`.
fn exchange(dst: SocketAddr, i: usize) {
    let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let msg = format!("connection {i} says hello");
    s.write_all(msg.as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = String::new();
    s.read_to_string(&mut back)
        .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    assert_eq!(back, msg, "connection {i}");
}

#[test]
fn thousand_sequential_and_two_hundred_concurrent_connections_leave_no_flow() {
    let tb = Testbed::new(2);
    let _d = start(&tb, &[]);
    in_netns(&tb.ns_a, || {
        for i in 0..1000 {
            let dst = if i % 2 == 0 { ECHO4 } else { ECHO6 };
            exchange(dst.parse().unwrap(), i);
        }
    })
    .join()
    .unwrap();
    assert!(
        flow_tables_empty(&tb, Duration::from_secs(5)),
        "after 1000 sequential"
    );
    assert_eq!(tcp_total(&tb, "opened"), 1000);
    assert_eq!(tcp_total(&tb, "closed"), 1000);
    // The same counters in Prometheus format, parsed: one series per queue.
    let prom = tb.netdemux_ok(&["stats", "--iface", &tb.veth_b, "--prometheus"]);
    let series = |name: &str| -> Vec<u64> {
        prom.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let opened = series("netdemux_tcp_opened_total");
    assert_eq!(opened.len(), 2, "one series per queue:\n{prom}");
    assert_eq!(opened.iter().sum::<u64>(), 1000);
    assert_eq!(series("netdemux_tcp_open_connections"), vec![0, 0]);
    assert!(prom.contains("# TYPE netdemux_tcp_open_connections gauge"));
    in_netns(&tb.ns_a, || {
        // 200 connections open at once, then all exchange and close.
        let streams: Vec<TcpStream> = (0..200)
            .map(|i| {
                let dst: SocketAddr = if i % 2 == 0 { ECHO4 } else { ECHO6 }.parse().unwrap();
                TcpStream::connect_timeout(&dst, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("concurrent connection {i}: {e}"))
            })
            .collect();
        let workers: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let msg = vec![(i % 251) as u8; 1000 + i * 37];
                    s.write_all(&msg).unwrap();
                    s.shutdown(Shutdown::Write).unwrap();
                    let mut back = Vec::new();
                    s.read_to_end(&mut back).unwrap();
                    assert!(back == msg, "concurrent connection {i}");
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a concurrent connection");
        }
    })
    .join()
    .unwrap();
    assert!(
        flow_tables_empty(&tb, Duration::from_secs(5)),
        "after 200 concurrent"
    );
    assert_eq!(tcp_total(&tb, "opened"), 1200);
    assert_eq!(
        tcp_total(&tb, "backlog_drops") + tcp_total(&tb, "half_open_drops"),
        0
    );
}

#[test]
fn a_connection_the_daemon_does_not_know_is_reset_by_netdemux() {
    let tb = Testbed::new(1);
    let d = start(&tb, &[]);
    // A connection to the echo, idle while the daemon restarts (and forgets it).
    let client = in_netns(&tb.ns_a, || {
        let mut s = TcpStream::connect_timeout(&ECHO4.parse().unwrap(), Duration::from_secs(5))
            .expect("connect");
        s.write_all(b"before").unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).unwrap();
        s
    })
    .join()
    .unwrap();
    d.stop().expect("daemon stops");
    let _d = start(&tb, &[]);
    assert_eq!(tcp_counter(&tb, 0, "resets_sent"), 0);
    // The next segment reaches the new daemon, which has no such connection: RST.
    let err = in_netns(&tb.ns_a, move || {
        let mut s = client;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"after").unwrap();
        let mut buf = [0u8; 16];
        s.read(&mut buf).expect_err("the connection is reset")
    })
    .join()
    .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(tcp_counter(&tb, 0, "resets_sent"), 1);
    // A port nobody serves is still the kernel's: refused, as without netdemux.
    in_netns(&tb.ns_a, || {
        let e =
            TcpStream::connect_timeout(&"198.18.0.2:7002".parse().unwrap(), Duration::from_secs(5))
                .expect_err("nothing listens on 7002");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    })
    .join()
    .unwrap();
}

#[test]
fn a_syn_flood_leaves_established_connections_served() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let tb = Testbed::new(1);
    let _d = start(&tb, &[]);
    // Three established connections that keep exchanging through the flood.
    let stop = Arc::new(AtomicBool::new(false));
    let conns = {
        let stop = stop.clone();
        in_netns(&tb.ns_a, move || {
            let mut conns: Vec<TcpStream> = (0..3)
                .map(|_| {
                    let s =
                        TcpStream::connect_timeout(&ECHO4.parse().unwrap(), Duration::from_secs(5))
                            .expect("connect before the flood");
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s
                })
                .collect();
            let (mut rounds, mut slowest) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                for (i, s) in conns.iter_mut().enumerate() {
                    let msg = [(rounds % 251) as u8; 100];
                    let t = Instant::now();
                    s.write_all(&msg).expect("write during the flood");
                    let mut back = [0u8; 100];
                    s.read_exact(&mut back)
                        .unwrap_or_else(|e| panic!("connection {i} during the flood: {e}"));
                    assert_eq!(back, msg);
                    slowest = slowest.max(t.elapsed());
                }
                rounds += 1;
            }
            (rounds, slowest)
        })
    };
    thread::sleep(Duration::from_millis(300));
    let out = Command::new(netdemux_bin())
        .args([
            "--netns", &tb.ns_a, "gen", "--iface", &tb.veth_a, "--dst", ECHO4,
        ])
        .args([
            "--proto",
            "tcp-syn",
            "--flows",
            "4096",
            "--duration",
            "2",
            "--json",
        ])
        .output()
        .expect("netdemux gen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flood: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pps = flood["pps"].as_f64().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (rounds, slowest) = conns
        .join()
        .expect("the established connections were served");
    eprintln!("flood {pps:.0} SYN/s; {rounds} rounds on 3 connections, slowest {slowest:?}");
    assert!(pps >= 100_000.0, "the flood offered {pps:.0} SYN/s");
    assert!(
        rounds > 10,
        "the established connections kept exchanging ({rounds} rounds)"
    );
    let stats = tb.stats();
    let tcp = &stats["queues"][0]["tcp"];
    eprintln!("tcp counters: {tcp}");
    assert!(
        tcp["syncookies_sent"].as_u64().unwrap() > 0,
        "the half-open queue stayed bounded: the rest got cookies"
    );
    assert!(
        tcp["resets_received"].as_u64().unwrap() > 0,
        "the peer reset the SYN-ACKs it never asked for"
    );
}
