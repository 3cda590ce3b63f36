//! What a second operator at the console or a client on the network can do (issue: security
//! review): two daemons started together, `gc` beside a live attachment of another build, a
//! metrics client that trickles bytes, datagrams whose IPv4 header checksum is wrong, IPv6
//! routing headers still in transit, and spoofed sources against a wildcard socket. Requires
//! root.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use support::netns::*;

/// `netdemux --netns <ns_b> run --iface <veth_b> ARGS`, not waited for.
fn spawn_run(tb: &Testbed, args: &[&str]) -> Child {
    Command::new(netdemux_bin())
        .args(["--netns", &tb.ns_b, "run", "--iface", &tb.veth_b])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netdemux run starts")
}

/// Waits up to `limit` for `child` to exit; its status and stderr, or `None` if it runs on.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            return Some((status, err));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// SIGTERM and wait (SIGKILL after 10 s).
fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if wait_exit(&mut child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn two_runs_started_together_one_serves_one_is_refused_naming_it_and_its_socket_answers() {
    let tb = Testbed::new(1);
    for round in 0..4 {
        let mut a = spawn_run(&tb, &["--udp-sink", "198.18.0.2:7000"]);
        let mut b = spawn_run(&tb, &["--udp-sink", "198.18.0.2:7000"]);
        // One of them exits (refused); wait for it.
        let deadline = Instant::now() + Duration::from_secs(15);
        let (loser, winner, err) = loop {
            if let Some((status, err)) = wait_exit(&mut a, Duration::from_millis(50)) {
                assert_eq!(status.code(), Some(1), "round {round}: {err}");
                break (a, b, err);
            }
            if let Some((status, err)) = wait_exit(&mut b, Duration::from_millis(50)) {
                assert_eq!(status.code(), Some(1), "round {round}: {err}");
                break (b, a, err);
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: both runs still run"
            );
        };
        drop(loser);
        let pid = winner.id();
        assert!(
            err.contains("already serves") && err.contains(&format!("pid {pid}")),
            "round {round}: the refusal names the daemon that serves: {err}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "round {round}: one line: {err}"
        );
        // The survivor still answers on its control socket, and serves.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stats = loop {
            let out = tb.netdemux(&["stats", "--iface", &tb.veth_b, "--json"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("\"services\"") {
                break serde_json::from_str::<serde_json::Value>(&text).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the survivor's control socket does not answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(stats["daemon_pid"], pid, "round {round}: {stats}");
        stop(winner);
        assert!(!tb.pin_dir().exists(), "round {round}: state left behind");
    }
}

#[test]
fn gc_leaves_a_live_attachment_of_another_layout_alone() {
    let tb = Testbed::new(1);
    tb.attach("native");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);
    // Pretend another build, with another state layout, attached (its daemon may be running).
    tb.rewrite_info(|i| i.layout_version += 1);

    let removed = tb.netdemux_ok(&["gc", "--json"]);
    let removed: Vec<String> = serde_json::from_str(&removed).unwrap();
    let ours = tb.pin_dir().join(&tb.veth_b);
    assert!(
        !removed.iter().any(|r| std::path::Path::new(r) == ours),
        "gc removed a live attachment: {removed:?}"
    );
    assert!(ours.exists());
    let entry = tb.status_entry().expect("status lists it");
    assert_eq!(entry["state"], "foreign", "{entry}");
    // Its program still runs: the binding still redirects (nobody consumes, so it is counted
    // as redirected to a queue without a socket and falls back to the kernel).
    let out = tb.netdemux(&["detach", "--iface", &tb.veth_b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ours.exists());
}

/// Starts a daemon with a sink and the metrics endpoint on 127.0.0.1:9466 in namespace b.
fn metrics_daemon(tb: &Testbed) -> netdemux::testbed::Daemon {
    netdemux::testbed::Daemon::start(
        tb,
        &[
            "--udp-sink",
            "198.18.0.2:7000",
            "--metrics",
            "127.0.0.1:9466",
        ],
    )
    .expect("netdemux run comes up")
}

/// One scrape from namespace b; the answer's status line, or the error.
fn scrape(tb: &Testbed) -> Result<String, String> {
    in_netns(&tb.ns_b, || {
        let mut s = TcpStream::connect("127.0.0.1:9466").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
        let mut r = String::new();
        s.read_to_string(&mut r).map_err(|e| e.to_string())?;
        Ok(r.lines().next().unwrap_or("").to_string())
    })
    .join()
    .unwrap()
}

/// Clients in namespace b that each send a request one byte a second, for up to `secs`;
/// each returns how long the server kept it.
fn trickling_clients(tb: &Testbed, n: usize, secs: u64) -> Vec<thread::JoinHandle<Duration>> {
    (0..n)
        .map(|_| {
            in_netns(&tb.ns_b, move || {
                let start = Instant::now();
                let mut s = TcpStream::connect("127.0.0.1:9466").unwrap();
                for b in b"GET /metrics HTTP/1.1\r\nHost: slow\r\n".iter().cycle() {
                    if s.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(secs) {
                        break;
                    }
                    // A closed connection shows as EOF (or a reset) on a short read.
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let mut buf = [0u8; 256];
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                start.elapsed()
            })
        })
        .collect()
}

#[test]
fn a_trickling_metrics_client_is_cut_off_while_scrapes_and_shutdown_stay_prompt() {
    let tb = Testbed::new(1);
    let daemon = metrics_daemon(&tb);
    let slow = trickling_clients(&tb, 3, 30);
    thread::sleep(Duration::from_millis(1500));
    // Scrapes are answered while the slow clients hold their connections.
    for _ in 0..3 {
        let status = scrape(&tb);
        assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"), "{status:?}");
    }
    // And each slow client is cut off at the deadline, long before it would stop by itself.
    for h in slow {
        let held = h.join().unwrap();
        assert!(
            held < Duration::from_secs(15),
            "a client sending a byte a second was kept {held:?}"
        );
    }
    // Shutdown does not wait for a client in the middle of a request.
    let _slow = trickling_clients(&tb, 2, 30);
    thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    let status = daemon.stop().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} on a metrics client",
        asked.elapsed()
    );
    assert!(!tb.pin_dir().exists());
}

#[test]
fn many_metrics_clients_at_once_are_bounded_and_the_endpoint_recovers() {
    let tb = Testbed::new(1);
    let _daemon = metrics_daemon(&tb);
    // More idle connections than the endpoint serves at once: the surplus is closed at once,
    // and once the deadline has passed, scrapes are answered again.
    let idle = in_netns(&tb.ns_b, || {
        (0..64)
            .filter_map(|_| TcpStream::connect("127.0.0.1:9466").ok())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(idle.len(), 64);
    thread::sleep(Duration::from_secs(6));
    let status = scrape(&tb);
    assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"), "{status:?}");
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock) => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 64, "every idle connection was closed by the server");
}

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = must("ip", &["-n", ns, "-br", "link", "show", dev]);
    let text = out
        .split_whitespace()
        .nth(2)
        .expect("ip -br link shows the MAC");
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

/// The MAC addresses of namespace a's and b's veth ends.
fn macs(tb: &Testbed) -> ([u8; 6], [u8; 6]) {
    (mac_of(&tb.ns_a, &tb.veth_a), mac_of(&tb.ns_b, &tb.veth_b))
}

/// A UDP datagram from namespace a's veth end to `dst`, every checksum right.
fn datagram(macs: ([u8; 6], [u8; 6]), src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 2048];
    let n = netdemux::wire::udp::emit(
        &mut f,
        macs.0,
        macs.1,
        src.parse().unwrap(),
        dst.parse().unwrap(),
        payload,
    )
    .unwrap();
    f.truncate(n);
    f
}

/// Sends `frames` as they are from namespace a's veth end (an AF_PACKET socket in Python:
/// no checksum or header is touched on the way).
fn send_raw(tb: &Testbed, frames: &[Vec<u8>]) {
    use std::io::Write as _;
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('{dev}', 0))\n\
         for line in sys.stdin:\n    s.send(bytes.fromhex(line.strip()))\n",
        dev = tb.veth_a
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &tb.ns_a, "/usr/bin/python3", "-c", &script])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        for f in frames {
            let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(stdin, "{hex}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "raw send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sink_packets(stats: &serde_json::Value, addr: &str) -> u64 {
    stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["addr"] == addr)
        .map(|s| s["packets"].as_u64().unwrap())
        .unwrap()
}

#[test]
fn bad_ipv4_header_checksums_are_dropped_and_routing_headers_in_transit_go_to_the_kernel() {
    let tb = Testbed::new(1);
    let _daemon = netdemux::testbed::Daemon::start(
        &tb,
        &[
            "--udp-echo",
            "198.18.0.2:7000",
            "--udp-sink",
            "198.18.0.2:9000",
            "--udp-sink",
            "[2001:db8::2]:9000",
        ],
    )
    .unwrap();
    // The echo answers the datagram whose header checks out, and only that one.
    let peer: std::net::SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let echo_peer = QuietReceiver::start(&tb.ns_a, peer, None, Vec::new(), |got, d, _| {
        got.push(d.to_vec());
    });
    let m = macs(&tb);
    let corrupt = |mut f: Vec<u8>| {
        f[24] ^= 0x5a; // the IPv4 header checksum
        f
    };
    let mut frames = vec![
        corrupt(datagram(m, "198.18.0.1:40000", "198.18.0.2:7000", b"bad")),
        datagram(m, "198.18.0.1:40000", "198.18.0.2:7000", b"good"),
    ];
    for i in 0..5u8 {
        frames.push(corrupt(datagram(
            m,
            "198.18.0.1:40001",
            "198.18.0.2:9000",
            &[i],
        )));
    }
    for i in 0..3u8 {
        frames.push(datagram(m, "198.18.0.1:40001", "198.18.0.2:9000", &[i]));
    }
    // IPv6 with a segment routing header: segments left (not here yet), and none left.
    for segments_left in [1u8, 2, 0] {
        let mut f = datagram(m, "[2001:db8::1]:40002", "[2001:db8::2]:9000", b"srh");
        let mut srh = vec![17u8, 2, 4, segments_left, 0, 0, 0, 0];
        srh.extend_from_slice(&[0u8; 16]); // one segment
        f[20] = 43; // next header: routing
        let plen = u16::from_be_bytes([f[18], f[19]]) + srh.len() as u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        f.splice(54..54, srh);
        frames.push(f);
    }
    send_raw(&tb, &frames);
    let answers = echo_peer.finish();
    assert_eq!(answers, vec![b"good".to_vec()]);
    let stats = tb.stats();
    assert_eq!(queue_sum(&stats, "ip_checksum_errors"), 6, "{stats}");
    assert_eq!(sink_packets(&stats, "198.18.0.2:9000"), 3, "{stats}");
    assert_eq!(
        stats["verdicts"]["pass_reasons"]["in_transit"], 2,
        "{stats}"
    );
    assert_eq!(sink_packets(&stats, "[2001:db8::2]:9000"), 1, "{stats}");
}

/// An echo that, asked with "poke ADDR", also writes "hello" first to ADDR: the application
/// writing to a peer before the peer writes again.
async fn poke_echo(sock: netdemux::UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
        if let Some(addr) = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.strip_prefix("poke "))
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        {
            sock.send_to(b"hello", addr).await.unwrap();
        }
        let _ = sock.send_to(&buf[..n], peer).await;
    }
}

#[test]
fn spoofed_sources_do_not_make_a_wildcard_socket_forget_how_to_answer() {
    let tb = std::sync::Arc::new(Testbed::new(1));
    tb.add_second_address();
    let rt = support::api::runtime();
    let stack = rt.block_on(support::api::stack(&tb));
    let sock = rt
        .block_on(stack.udp_bind("0.0.0.0:7200".parse().unwrap()))
        .unwrap();
    rt.spawn(poke_echo(sock));
    // A peer that wrote once, to the second address, before the flood.
    let quiet = in_netns(&tb.ns_a, || {
        let s = std::net::UdpSocket::bind("198.18.0.1:41000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(b"hi", "198.18.0.3:7200").unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"hi"[..], "198.18.0.3:7200".parse().unwrap())
        );
        // Then, after the flood, the application writes to it first.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (n, from) = s
            .recv_from(&mut buf)
            .expect("the application's hello arrives");
        (buf[..n].to_vec(), from)
    });
    thread::sleep(Duration::from_millis(300));
    // 10,000 datagrams from as many spoofed sources (198.19.0.0/16, no route back).
    let m = macs(&tb);
    let frames: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| {
            let src = format!("198.19.{}.{}:{}", i >> 8, i & 255, 1024 + i % 50_000);
            datagram(m, &src, "198.18.0.2:7200", b"spoof")
        })
        .collect();
    let (tb2, live) = (
        tb.clone(),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
    );
    // A live peer talks to the second address all along; every answer must come from it.
    let talker = {
        let live = live.clone();
        in_netns(&tb.ns_a, move || {
            let s = std::net::UdpSocket::bind("198.18.0.1:42000").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut buf = [0u8; 64];
            let mut answered = 0;
            while live.load(std::sync::atomic::Ordering::Relaxed) {
                // The socket's queue may be full of spoofed datagrams: a ping can be dropped
                // (as a full SO_RCVBUF drops it in Linux), but every answer is from .3.
                s.send_to(b"ping", "198.18.0.3:7200").unwrap();
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    assert_eq!(
                        (&buf[..n], from),
                        (&b"ping"[..], "198.18.0.3:7200".parse().unwrap())
                    );
                    answered += 1;
                }
                thread::sleep(Duration::from_millis(5));
            }
            s.send_to(b"poke 198.18.0.1:41000", "198.18.0.3:7200")
                .unwrap();
            answered
        })
    };
    send_raw(&tb2, &frames);
    thread::sleep(Duration::from_millis(1500));
    live.store(false, std::sync::atomic::Ordering::Relaxed);
    let answered = talker.join().unwrap();
    assert!(answered > 0);
    let (hello, from) = quiet.join().unwrap();
    assert_eq!(hello, b"hello");
    assert!(
        from.is_ipv4() && from.port() == 7200,
        "the forgotten peer is answered from a local address of its family: {from}"
    );
    drop(rt);
    drop(stack);
}

/// Found in review: a datagram to a socket confirmed its source MAC, so one datagram with a
/// peer's address from another MAC on the link moved that peer: what the application then
/// sent to the peer went to the other MAC (and veth's peer dropped it as another host's). A
/// datagram now only suggests a MAC (as a SYN does), and Linux does not confirm a neighbour
/// from a received datagram either.
#[test]
fn a_datagram_from_another_mac_does_not_move_a_peer() {
    let tb = std::sync::Arc::new(Testbed::new(1));
    // A second peer address, whose datagrams say nothing about 198.18.0.1.
    let ip = Command::new("ip")
        .args([
            "-n",
            &tb.ns_a,
            "addr",
            "add",
            "198.18.0.4/24",
            "dev",
            &tb.veth_a,
        ])
        .status()
        .unwrap();
    assert!(ip.success());
    let rt = support::api::runtime();
    let stack = rt.block_on(support::api::stack(&tb));
    let sock = rt
        .block_on(stack.udp_bind("198.18.0.2:7300".parse().unwrap()))
        .unwrap();
    rt.spawn(poke_echo(sock));
    // The peer writes once and is answered, then waits for the application to write first.
    let peer = in_netns(&tb.ns_a, || {
        let s = std::net::UdpSocket::bind("198.18.0.1:43000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(b"hi", "198.18.0.2:7300").unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).expect("the echo answers");
        assert_eq!(&buf[..n], b"hi");
        let (n, from) = s
            .recv_from(&mut buf)
            .expect("the application's hello reaches the peer's own MAC");
        (buf[..n].to_vec(), from)
    });
    thread::sleep(Duration::from_millis(500));
    // A datagram with the peer's address from a MAC that is not the peer's.
    let m = macs(&tb);
    let other = [0x02, 0, 0, 0, 0, 0x66];
    send_raw(
        &tb,
        &[datagram(
            (other, m.1),
            "198.18.0.1:43001",
            "198.18.0.2:7300",
            b"x",
        )],
    );
    thread::sleep(Duration::from_millis(300));
    // Another address asks the application to write to the peer.
    in_netns(&tb.ns_a, || {
        let s = std::net::UdpSocket::bind("198.18.0.4:43002").unwrap();
        s.send_to(b"poke 198.18.0.1:43000", "198.18.0.2:7300")
            .unwrap();
    })
    .join()
    .unwrap();
    let (hello, from) = peer.join().unwrap();
    assert_eq!(
        (&hello[..], from),
        (&b"hello"[..], "198.18.0.2:7300".parse().unwrap())
    );
    drop(rt);
    drop(stack);
}
