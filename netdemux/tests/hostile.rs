//! The userspace TCP stack against peers that misbehave, with the Linux kernel as the honest
//! peer: a flood of SYNs from spoofed sources that never answer while new clients connect;
//! thousands of connections that send and never read, against the daemon's memory budget;
//! broadcast frames to wildcard services; a path whose MTU shrinks behind a router. Requires
//! root.

mod support;

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};
use support::netns::*;

const HTTP4: &str = "198.18.0.2:8080";
const ECHO4: &str = "198.18.0.2:7001";

fn start(tb: &Testbed, args: &[&str]) -> netdemux::testbed::Daemon {
    netdemux::testbed::Daemon::start(tb, args).expect("netdemux run comes up")
}

/// One HTTP GET on a new connection; the time it took.
fn get(dst: SocketAddr) -> Result<Duration, String> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if !answer.starts_with("HTTP/1.1 200") || !answer.ends_with("hello from netdemux\n") {
        return Err(format!("answer: {answer:?}"));
    }
    Ok(t.elapsed())
}

/// `netdemux gen` from namespace a; its JSON summary.
fn generate(tb: &Testbed, args: &[&str]) -> serde_json::Value {
    let out = Command::new(netdemux_bin())
        .args(["--netns", &tb.ns_a, "gen", "--iface", &tb.veth_a, "--json"])
        .args(args)
        .output()
        .expect("netdemux gen runs");
    assert!(
        out.status.success(),
        "gen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gen --json")
}

#[test]
fn ten_thousand_spoofed_syns_do_not_lock_new_clients_out() {
    // The attack of issue 13: SYNs from addresses that never answer (198.19.0.1 is nobody's:
    // the SYN-ACKs go nowhere). Before SYN cookies, 256 of them filled the half-open queue
    // and every new client waited for them to time out.
    let tb = Testbed::new(1);
    let _d = start(&tb, &["--http", HTTP4]);
    let clients = in_netns(&tb.ns_a, || {
        thread::sleep(Duration::from_millis(300));
        let end = Instant::now() + Duration::from_millis(1800);
        let mut took = Vec::new();
        while Instant::now() < end {
            took.push(get(HTTP4.parse().unwrap()));
            thread::sleep(Duration::from_millis(20));
        }
        took
    });
    let flood = generate(
        &tb,
        &[
            "--dst",
            HTTP4,
            "--src",
            "198.19.0.1",
            "--proto",
            "tcp-syn",
            "--flows",
            "4096",
            "--rate",
            "5000",
            "--duration",
            "2",
        ],
    );
    let took = clients.join().expect("the clients ran");
    let sent = flood["packets"].as_u64().expect("gen counts packets");
    let stats = tb.stats();
    let cookies = tcp_sum(&stats, "syncookies_sent");
    let cookie_clients = tcp_sum(&stats, "syncookies_ok");
    let failed: Vec<_> = took.iter().filter_map(|r| r.as_ref().err()).collect();
    let slowest = took.iter().filter_map(|r| r.as_ref().ok()).max();
    eprintln!(
        "{sent} spoofed SYNs; {} clients served during the flood, slowest {slowest:?}; \
         {cookies} cookies sent, {cookie_clients} came back",
        took.len() - failed.len()
    );
    assert!(sent >= 9_000, "the flood sent {sent} SYNs");
    assert!(took.len() >= 20, "{} clients tried", took.len());
    assert!(failed.is_empty(), "clients failed: {failed:?}");
    assert!(cookies > 5_000, "cookies sent: {cookies}");
    assert!(cookie_clients > 0, "clients got in through cookies");
    // Locked out, every client would wait for its SYN's retransmission (a second at least);
    // served through cookies, they do not. One of them may still lose a segment on the way
    // while the file's other tests load both cores (a clean-clone CI run saw one client of 38
    // take 1.03 s), so the bound is on the clients that waited, not on the slowest.
    let waited = took
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|t| *t >= Duration::from_millis(900)))
        .count();
    assert!(
        waited * 10 <= took.len(),
        "{waited} of {} clients waited for a SYN retransmission (slowest {slowest:?}); queue \
         drops: {}",
        took.len(),
        stats["queues"][0]["rx_dropped"]
    );
    assert_eq!(tcp_sum(&stats, "half_open_drops"), 0);
}

/// VmRSS of `pid`, bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn two_thousand_connections_that_never_read_stay_within_the_memory_budget() {
    const CONNS: usize = 2000;
    const EACH: usize = 512 * 1024;
    const BUDGET: u64 = 32 << 20;
    let tb = Testbed::new(1);
    let d = start(
        &tb,
        &[
            "--tcp-echo",
            ECHO4,
            "--tcp-memory",
            "32M",
            "--tcp-idle-timeout",
            "3",
        ],
    );
    let pid = d.pid();
    let before = rss(pid);
    // Each connection sends 512 KiB and never reads what the echo sends back: the echo's send
    // buffer fills, it stops taking more, and its receive buffer fills in turn.
    let hogs = in_netns(&tb.ns_a, || {
        let mut conns: Vec<(TcpStream, usize)> = (0..CONNS)
            .map(|i| {
                let s = TcpStream::connect_timeout(&ECHO4.parse().unwrap(), Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("hog {i}: {e}"));
                s.set_nonblocking(true).unwrap();
                (s, 0)
            })
            .collect();
        let chunk = vec![0x5a; 64 * 1024];
        let end = Instant::now() + Duration::from_secs(6);
        let mut stuck_rounds = 0;
        while Instant::now() < end && stuck_rounds < 20 {
            let mut moved = 0;
            for (s, sent) in conns.iter_mut().filter(|(_, n)| *n < EACH) {
                match s.write(&chunk[..(EACH - *sent).min(chunk.len())]) {
                    Ok(n) => {
                        *sent += n;
                        moved += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // Idle for the timeout with data unread: the echo reset it. Done.
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                        ) =>
                    {
                        *sent = EACH;
                    }
                    Err(e) => panic!("a hog's write: {e}"),
                }
            }
            stuck_rounds = if moved == 0 { stuck_rounds + 1 } else { 0 };
            thread::sleep(Duration::from_millis(50));
        }
        let sent: usize = conns.iter().map(|(_, n)| n).sum();
        (conns, sent)
    });
    let mut peak_rss = before;
    let mut peak_used = 0;
    let (conns, sent) = loop {
        let report = tb.stats();
        peak_used = peak_used.max(report["tcp_memory"]["used"].as_u64().expect("tcp_memory"));
        peak_rss = peak_rss.max(rss(pid));
        if hogs.is_finished() {
            break hogs.join().expect("the hogs connected and sent");
        }
        thread::sleep(Duration::from_millis(200));
    };
    let stats = tb.stats();
    let growth = peak_rss.saturating_sub(before);
    eprintln!(
        "{CONNS} hogs handed their kernels {} MiB; daemon RSS {} -> peak {} MiB (+{} MiB), \
         budget used at most {} of {} MiB; memory_drops {}, memory_syn_drops {}",
        sent >> 20,
        before >> 20,
        peak_rss >> 20,
        growth >> 20,
        peak_used >> 20,
        BUDGET >> 20,
        tcp_sum(&stats, "memory_drops"),
        tcp_sum(&stats, "memory_syn_drops"),
    );
    assert!(sent > 100 << 20, "the hogs sent {} MiB", sent >> 20);
    assert!(peak_used <= BUDGET, "the buffers took {peak_used} bytes");
    // The buffers, plus what per-connection state and the allocator add around them.
    assert!(
        growth < BUDGET + (16 << 20),
        "the daemon grew by {} MiB",
        growth >> 20
    );
    // The hogs go idle: the echo lets them go (unread data: reset; else closed) and the
    // memory comes back. The idle timer is 3 s, but on 2 busy cores the last of 2,000 may take
    // well past that to be noticed (a clean-clone CI run saw 1,776 by 15 s): up to 30 s.
    let end = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = tb.stats();
        let idle = tcp_sum(&stats, "idle_closed");
        if idle >= CONNS as u64 * 9 / 10 || Instant::now() > end {
            break stats;
        }
        thread::sleep(Duration::from_millis(250));
    };
    let used = stats["tcp_memory"]["used"].as_u64().unwrap();
    eprintln!(
        "idle_closed {}, memory_aborts {}, budget used {} KiB after",
        tcp_sum(&stats, "idle_closed"),
        tcp_sum(&stats, "memory_aborts"),
        used >> 10
    );
    assert!(tcp_sum(&stats, "idle_closed") >= CONNS as u64 * 9 / 10);
    // What is left are orphans whose data the peer's shut window still holds back (they give
    // up after their probes, as Linux's do, or are reset if memory runs out): room remains.
    assert!(used < BUDGET * 7 / 8, "{used} bytes still held");
    // A new client is served at once.
    let served = in_netns(&tb.ns_a, move || {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&ECHO4.parse().unwrap(), Duration::from_secs(5))
            .expect("a new connection after the hogs");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"still here").unwrap();
        let mut back = [0u8; 10];
        s.read_exact(&mut back).expect("the echo answers");
        assert_eq!(&back, b"still here");
        drop(conns);
        t.elapsed()
    })
    .join()
    .unwrap();
    eprintln!("a new client was served in {served:?}");
    assert!(served < Duration::from_millis(900), "no SYN was dropped");
}

#[test]
fn broadcast_syns_and_datagrams_to_wildcard_services_get_no_answer() {
    // RFC 1122: a wildcard service answers one host, never a whole network.
    let tb = Testbed::new(1);
    let _d = start(
        &tb,
        &["--http", "0.0.0.0:8080", "--udp-echo", "0.0.0.0:7000"],
    );
    let verdicts = |tb: &Testbed| {
        let out = tb.netdemux_ok(&["stats", "--iface", &tb.veth_b, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v
    };
    let before = verdicts(&tb);
    for (proto, dst) in [
        ("tcp-syn", "198.18.0.255:8080"),
        ("udp", "198.18.0.255:7000"),
    ] {
        let g = generate(
            &tb,
            &[
                "--dst",
                dst,
                "--dst-mac",
                "ff:ff:ff:ff:ff:ff",
                "--proto",
                proto,
                "--rate",
                "200",
                "--duration",
                "1",
            ],
        );
        assert!(g["packets"].as_u64().unwrap() >= 100, "{g}");
    }
    thread::sleep(Duration::from_millis(300));
    let after = verdicts(&tb);
    let stats = tb.stats();
    eprintln!("before: {before}\nafter: {after}");
    for service in stats["services"].as_array().expect("services") {
        assert_eq!(service["packets"], 0, "no service saw a frame: {service}");
    }
    assert_eq!(stats["queues"][0]["tx"], 0, "nothing answered");
    assert_eq!(tcp_sum(&stats, "opened"), 0);
    assert_eq!(tcp_sum(&stats, "syncookies_sent"), 0);
    // The same services still answer their own host.
    in_netns(&tb.ns_a, || {
        get("198.18.0.2:8080".parse().unwrap()).expect("unicast HTTP");
        let u = std::net::UdpSocket::bind("198.18.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        u.send_to(b"ping", "198.18.0.2:7000").unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = u.recv_from(&mut buf).expect("unicast echo");
        assert_eq!(&buf[..n], b"ping");
    })
    .join()
    .unwrap();
}

/// A third namespace behind namespace a, reached through a link whose route MTU is `mtu`:
/// namespace a forwards, and tells senders of bigger packets with DF set (ICMP
/// "fragmentation needed"). Removed on drop.
struct BehindRouter {
    ns: String,
}

impl BehindRouter {
    fn new(tb: &Testbed, mtu: u32) -> BehindRouter {
        let ns = format!("{}c", tb.ns_a.trim_end_matches('a'));
        let (va, vc) = (format!("{ns}A"), format!("{ns}C"));
        must("ip", &["netns", "add", &ns]);
        let r = BehindRouter { ns: ns.clone() };
        let a = tb.ns_a.as_str();
        must(
            "ip",
            &[
                "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vc, "netns", &ns,
            ],
        );
        must("ip", &["-n", a, "addr", "add", "198.19.0.1/24", "dev", &va]);
        must(
            "ip",
            &["-n", &ns, "addr", "add", "198.19.0.2/24", "dev", &vc],
        );
        for (n, dev) in [(a, va.as_str()), (ns.as_str(), vc.as_str())] {
            must("ip", &["-n", n, "link", "set", dev, "up"]);
        }
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        let mtu = mtu.to_string();
        must(
            "ip",
            &[
                "-n",
                a,
                "route",
                "replace",
                "198.19.0.0/24",
                "dev",
                &va,
                "mtu",
                "lock",
                &mtu,
            ],
        );
        must(
            "ip",
            &["-n", &ns, "route", "add", "default", "via", "198.19.0.1"],
        );
        must(
            "ip",
            &[
                "-n",
                tb.ns_b.as_str(),
                "route",
                "add",
                "198.19.0.0/24",
                "via",
                "198.18.0.1",
            ],
        );
        must(
            "ip",
            &["netns", "exec", a, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        );
        // Full checksums on the wire from the client, as from a NIC.
        must(
            "ip",
            &["netns", "exec", &ns, "ethtool", "-K", &vc, "tx", "off"],
        );
        r
    }
}

impl Drop for BehindRouter {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

#[test]
fn a_path_mtu_drop_behind_a_router_and_the_transfer_goes_on_in_smaller_segments() {
    const LEN: usize = 4 << 20;
    let tb = Testbed::new(1);
    let _d = start(&tb, &["--tcp-echo", ECHO4]);
    let behind = BehindRouter::new(&tb, 1280);
    // The client behind the router offers MSS 1460 (its own link is 1500): the echo's first
    // full segments are too big for the 1280-byte hop, and namespace a says so.
    let (sent, got, n) = in_netns(&behind.ns, || {
        let s = TcpStream::connect_timeout(&ECHO4.parse().unwrap(), Duration::from_secs(5))
            .expect("connect through the router");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4099) as u8).collect();
        let sent = Sha256::digest(&data);
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || w.write_all(&data).expect("write"));
        let mut r = s;
        let mut got = Vec::with_capacity(LEN);
        let mut buf = vec![0u8; 1 << 16];
        while got.len() < LEN {
            let n = r.read(&mut buf).expect("the echo keeps coming");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        (sent, Sha256::digest(&got), got.len())
    })
    .join()
    .expect("the transfer completed");
    let stats = tb.stats();
    let reductions = tcp_sum(&stats, "pmtu_reductions");
    eprintln!(
        "{n} bytes echoed through a 1280-byte hop; pmtu_reductions {reductions}, icmp_errors {}",
        tcp_sum(&stats, "icmp_errors")
    );
    assert_eq!(n, LEN);
    assert_eq!(sent, got, "the echo is exact");
    assert!(reductions >= 1, "the ICMP reached the connection");
}
