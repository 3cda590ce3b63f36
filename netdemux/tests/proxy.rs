//! `--tcp-proxy` and `--udp-proxy` against the kernel: clients in namespace a reach the proxy
//! in namespace b, which reaches its backends on a network behind namespace a (through a as
//! its gateway). Byte-exact bulk transfers both ways (also with injected loss), half-close and
//! resets passed on, a UDP session per client, and the gateway's MAC changing mid-stream.
//! Requires root.

mod support;

use std::{
    collections::HashSet,
    io::{ErrorKind, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd as _,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use netdemux::test_rng::Xorshift64;

use sha2::{Digest as _, Sha256};
use support::netns::*;

fn start(tb: &Testbed, args: &[&str]) -> netdemux::testbed::Daemon {
    netdemux::testbed::Daemon::start(tb, args).expect("netdemux run comes up")
}

/// The counters of proxy `i` from `stats --json`.
fn proxy(tb: &Testbed, i: usize) -> serde_json::Value {
    tb.stats()["proxies"][i].clone()
}

/// A kernel TCP echo on `addr` in namespace a, for every connection, until the test ends.
fn tcp_echo_backend(tb: &Testbed, addr: &'static str) {
    let listener = in_netns(&tb.ns_a, move || TcpListener::bind(addr).unwrap())
        .join()
        .unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = c.shutdown(Shutdown::Write);
            });
        }
    });
}

/// Sends `len` pseudo-random bytes through `dst` from namespace a while reading the echo
/// back; (sha256 sent, sha256 received, seconds). A transfer that stalls fails with what both
/// ends saw: the daemon's queue counters and namespace a's kernel TCP counters that tell a
/// peer's dropped segments apart.
fn bulk(tb: &Testbed, dst: SocketAddr, len: usize) -> ([u8; 32], [u8; 32], f64) {
    match in_netns(&tb.ns_a, move || transfer(dst, len))
        .join()
        .expect("the transfer thread")
    {
        Ok(done) => done,
        Err(e) => {
            let counters: Vec<String> = [
                "TcpExtBeyondWindow",
                "TcpExtTCPToZeroWindowAdv",
                "TcpExtTCPRcvQDrop",
                "TcpExtTCPACKSkippedSeq",
                "TcpRetransSegs",
            ]
            .iter()
            .map(|&n| {
                let v = netdemux::testbed::kernel_counters(&tb.ns_a, &[n]);
                format!(
                    "{n} {}",
                    v.map_or_else(|e| e.to_string(), |v| v.to_string())
                )
            })
            .collect();
            let stats = tb.stats();
            panic!(
                "{dst}: {e}\nqueues: {}\nproxies: {}\nnamespace a: {}",
                stats["queues"],
                stats["proxies"],
                counters.join(", ")
            );
        }
    }
}

fn transfer(dst: SocketAddr, len: usize) -> Result<([u8; 32], [u8; 32], f64), String> {
    let t = Instant::now();
    let s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let data = Xorshift64::new(0x2545_f491_4f6c_dd1d).bytes(len);
    let sent: [u8; 32] = Sha256::digest(&data).into();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut r = s;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| format!("the echo stopped after {got} of {len} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n;
    }
    writer.join().unwrap();
    if got != len {
        return Err(format!(
            "the echo ended after {got} of {len} bytes (FIN too early)"
        ));
    }
    Ok((sent, h.finalize().into(), t.elapsed().as_secs_f64()))
}

#[test]
fn fifty_megabytes_each_way_through_the_tcp_proxy_over_ipv4_and_ipv6() {
    const LEN: usize = 50 << 20;
    let tb = Testbed::new(2);
    backend_network(&tb);
    tcp_echo_backend(&tb, "198.19.0.1:9500");
    tcp_echo_backend(&tb, "[2001:db8:1::1]:9500");
    let _d = start(
        &tb,
        &[
            "--tcp-proxy",
            "198.18.0.2:8500=198.19.0.1:9500",
            "--tcp-proxy",
            "[2001:db8::2]:8500=[2001:db8:1::1]:9500",
        ],
    );
    for (i, dst) in ["198.18.0.2:8500", "[2001:db8::2]:8500"].iter().enumerate() {
        let (sent, got, secs) = bulk(&tb, dst.parse().unwrap(), LEN);
        eprintln!("{dst}: 50 MB each way through the proxy in {secs:.1} s");
        assert_eq!(sent, got, "{dst}: byte-exact");
        let p = proxy(&tb, i);
        assert_eq!(p["accepted"], 1, "{p}");
        assert_eq!(p["up_bytes"], LEN as u64, "{p}");
        assert_eq!(p["down_bytes"], LEN as u64, "{p}");
    }
}

#[test]
fn the_tcp_proxy_carries_fifty_megabytes_with_two_percent_loss_and_reordering() {
    const LEN: usize = 50 << 20;
    let tb = Testbed::new(1);
    backend_network(&tb);
    tcp_echo_backend(&tb, "198.19.0.1:9500");
    let _d = start(
        &tb,
        &[
            "--tcp-proxy",
            "198.18.0.2:8500=198.19.0.1:9500",
            "--fault-loss",
            "0.02",
            "--fault-reorder",
            "0.02",
        ],
    );
    let (sent, got, secs) = bulk(&tb, "198.18.0.2:8500".parse().unwrap(), LEN);
    let stats = tb.stats();
    let tcp = &stats["queues"][0]["tcp"];
    eprintln!(
        "50 MB each way with loss in {secs:.1} s; faults dropped {}, retransmits {}",
        tcp["faults_dropped"], tcp["retransmits"]
    );
    assert_eq!(sent, got, "byte-exact");
    assert!(tcp["faults_dropped"].as_u64().unwrap() > 1000);
}

#[test]
fn half_close_and_resets_pass_through_the_tcp_proxy() {
    let tb = Testbed::new(1);
    backend_network(&tb);
    // The backend reads to the end, answers with what it counted, and closes; or, asked for
    // it, resets the connection.
    let listener = in_netns(&tb.ns_a, || TcpListener::bind("198.19.0.1:9600").unwrap())
        .join()
        .unwrap();
    let backend = thread::spawn(move || {
        for _ in 0..2 {
            let (mut c, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got)
                .unwrap_or_else(|e| panic!("backend read: {e}"));
            if got == b"reset me" {
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                nix::sys::socket::setsockopt(
                    &c.as_fd(),
                    nix::sys::socket::sockopt::Linger,
                    &linger,
                )
                .unwrap();
                drop(c);
                continue;
            }
            c.write_all(format!("got {} bytes", got.len()).as_bytes())
                .unwrap();
        }
    });
    let _d = start(
        &tb,
        &[
            "--tcp-proxy",
            "198.18.0.2:8600=198.19.0.1:9600",
            "--tcp-proxy",
            "198.18.0.2:8601=198.19.0.1:9601",
        ],
    );
    let dst: SocketAddr = "198.18.0.2:8600".parse().unwrap();
    in_netns(&tb.ns_a, move || {
        // Half-close: the client's FIN reaches the backend, which still answers.
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&[7u8; 100_000]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .expect("the answer after our FIN");
        assert_eq!(answer, "got 100000 bytes");
        // Reset: the backend's RST reaches the client as a RST.
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"reset me").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut buf = [0u8; 16];
        let err = s
            .read(&mut buf)
            .expect_err("the backend's reset is passed on");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    })
    .join()
    .unwrap();
    backend.join().unwrap();
    let p = proxy(&tb, 0);
    assert_eq!(p["accepted"], 2, "{p}");
    assert_eq!(p["resets"], 1, "{p}");
    // A backend nobody listens on: the client is reset at once, and it is counted.
    let refused: SocketAddr = "198.18.0.2:8601".parse().unwrap();
    in_netns(&tb.ns_a, move || {
        // The reset may come so soon that connect_timeout already finds it (SO_ERROR) after the
        // handshake; otherwise the first read does.
        let err = match TcpStream::connect_timeout(&refused, Duration::from_secs(5)) {
            Err(e) => e,
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 16];
                s.read(&mut buf)
                    .expect_err("reset when the backend refuses")
            }
        };
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    })
    .join()
    .unwrap();
    assert_eq!(proxy(&tb, 1)["failed"], 1);
}

#[test]
fn ten_thousand_datagrams_from_fifty_clients_through_the_udp_proxy_each_answered_to_its_sender() {
    const CLIENTS: usize = 50;
    const EACH: usize = 200;
    let tb = Testbed::new(1);
    backend_network(&tb);
    // The backend echoes, and notes the source addresses it sees.
    let backend = in_netns(&tb.ns_a, || UdpSocket::bind("198.19.0.1:5301").unwrap())
        .join()
        .unwrap();
    let sources = Arc::new(Mutex::new(HashSet::new()));
    {
        let sources = sources.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = backend.recv_from(&mut buf) {
                sources.lock().unwrap().insert(from);
                let _ = backend.send_to(&buf[..n], from);
            }
        });
    }
    let _d = start(&tb, &["--udp-proxy", "198.18.0.2:5300=198.19.0.1:5301"]);
    let listen: SocketAddr = "198.18.0.2:5300".parse().unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            in_netns(&tb.ns_a, move || {
                let u = UdpSocket::bind("198.18.0.1:0").unwrap();
                // Long enough for a loaded machine: an answer that came after a short timeout
                // would be read as the next datagram's.
                u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut lost = 0;
                for i in 0..EACH {
                    let msg = format!("client {c} datagram {i}");
                    u.send_to(msg.as_bytes(), listen).unwrap();
                    let mut buf = [0u8; 64];
                    match u.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            assert_eq!(from, listen, "answered from the proxy's address");
                            assert_eq!(&buf[..n], msg.as_bytes(), "client {c}: its own answer");
                        }
                        Err(_) => lost += 1,
                    }
                }
                lost
            })
        })
        .collect();
    let lost: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let p = proxy(&tb, 0);
    eprintln!("{p}");
    assert_eq!(lost, 0, "every datagram answered");
    assert_eq!(p["accepted"], CLIENTS as u64, "a session per client: {p}");
    assert_eq!(p["up_datagrams"], (CLIENTS * EACH) as u64, "{p}");
    assert_eq!(p["down_datagrams"], (CLIENTS * EACH) as u64, "{p}");
    assert_eq!(
        sources.lock().unwrap().len(),
        CLIENTS,
        "the backend sees a source port per client"
    );
}

#[test]
fn the_proxy_follows_the_gateway_to_its_new_mac_mid_stream() {
    // Namespace a is both the clients' host and the backends' gateway: its MAC changes while
    // a transfer runs. Segments to the old MAC are lost; the first ones the proxy accepts
    // from the new MAC move its traffic there, and the transfer completes.
    const LEN: usize = 20 << 20;
    let tb = Testbed::new(1);
    backend_network(&tb);
    tcp_echo_backend(&tb, "198.19.0.1:9500");
    let _d = start(&tb, &["--tcp-proxy", "198.18.0.2:8500=198.19.0.1:9500"]);
    let (ns, dev) = (tb.ns_a.clone(), tb.veth_a.clone());
    let mover = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        must(
            "ip",
            &[
                "-n",
                &ns,
                "link",
                "set",
                "dev",
                &dev,
                "address",
                "02:aa:bb:cc:dd:01",
            ],
        );
    });
    let (sent, got, secs) = bulk(&tb, "198.18.0.2:8500".parse().unwrap(), LEN);
    mover.join().unwrap();
    eprintln!("20 MB each way across a MAC change in {secs:.1} s");
    assert_eq!(sent, got, "byte-exact");
}

/// Linux picks ISNs from a clock and a hash of the 4-tuple, and timestamps from a clock, so a
/// new connection on a 4-tuple the peer still holds in TIME_WAIT starts beyond the old one and
/// the peer takes its SYN (RFC 6191; Linux's tcp_timewait_state_process). Here namespace b's
/// ephemeral range is one port, so every upstream connection of the proxy reuses it, to a
/// backend that closes first (its side of each 4-tuple waits in TIME_WAIT); the upstream
/// connections go to the two queue workers in turn, so the workers must agree on ISNs and
/// timestamps. When each worker had its own secret and clock, the backend's TIME_WAIT answered
/// about every other SYN with its old ACK, the proxy reset it and sent its SYN again a second
/// later: a RST and a retransmission each (first seen as a rare demo failure, when the kernel
/// happened to hand out a port twice).
#[test]
fn the_tcp_proxy_reopens_one_port_past_the_backends_time_wait_from_either_queue() {
    const PORT: u16 = 40_001;
    const ROUNDS: u64 = 8;
    let tb = Testbed::new(2);
    backend_network(&tb);
    must(
        "ip",
        &[
            "netns",
            "exec",
            &tb.ns_b,
            "sysctl",
            "-qw",
            &format!("net.ipv4.ip_local_port_range={PORT} {PORT}"),
        ],
    );
    // The backend answers one line and closes first.
    let listener = in_netns(&tb.ns_a, || TcpListener::bind("198.19.0.1:9700").unwrap())
        .join()
        .unwrap();
    let backend = thread::spawn(move || {
        (0..ROUNDS)
            .map(|_| {
                let (mut s, peer) = listener.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut line = [0u8; 8];
                s.read_exact(&mut line).unwrap();
                s.write_all(&line).unwrap();
                peer
            })
            .collect::<Vec<_>>()
    });
    let _d = start(&tb, &["--tcp-proxy", "198.18.0.2:8500=198.19.0.1:9700"]);
    let dst: SocketAddr = "198.18.0.2:8500".parse().unwrap();
    for i in 0..ROUNDS {
        // The port is free for the next upstream connection once the last one has closed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while tcp_sum(&tb.stats(), "open") > 0 {
            assert!(
                Instant::now() < deadline,
                "round {i}: a connection stays open"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let line = format!("line {i:03}");
        let back = in_netns(&tb.ns_a, move || {
            let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(line.as_bytes()).unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).expect("the answer");
            back == line.as_bytes()
        })
        .join()
        .unwrap();
        assert!(back, "round {i}: the answer differs");
    }
    let peers = backend.join().unwrap();
    assert!(peers.iter().all(|p| p.port() == PORT), "{peers:?}");
    let stats = tb.stats();
    let p = &stats["proxies"][0];
    assert_eq!(
        (p["accepted"].as_u64(), p["failed"].as_u64()),
        (Some(ROUNDS), Some(0)),
        "{p}"
    );
    assert_eq!(
        (
            tcp_sum(&stats, "resets_sent"),
            tcp_sum(&stats, "retransmits")
        ),
        (0, 0),
        "a SYN met the backend's TIME_WAIT: {stats}"
    );
}
