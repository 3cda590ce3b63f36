//! The demultiplexer attached to a real veth in a network namespace, with the kernel's own
//! stack as the peer. Each test builds and removes its own testbed. Requires root.

mod support;

use std::{
    collections::HashSet,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::netns::*;

/// Sends `n` datagrams `seq:<i>` from namespace `ns` to `dst`, paced so the receiver keeps up.
fn send_udp(ns: &str, dst: SocketAddr, n: u64) -> thread::JoinHandle<()> {
    in_netns(ns, move || {
        let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .unwrap();
        let sock = UdpSocket::bind(bind).unwrap();
        for i in 0..n {
            sock.send_to(format!("seq:{i}").as_bytes(), dst).unwrap();
            if i % 16 == 15 {
                thread::sleep(Duration::from_micros(200));
            }
        }
    })
}

/// A kernel UDP socket in namespace `ns` on `addr`, collecting distinct sequence numbers until it
/// has `want` of them or `timeout` passes. Returns what it got.
fn recv_udp(
    ns: &str,
    addr: SocketAddr,
    want: usize,
    timeout: Duration,
) -> (
    thread::JoinHandle<HashSet<u64>>,
    std::sync::mpsc::Receiver<()>,
) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = in_netns(ns, move || {
        let sock = UdpSocket::bind(addr).unwrap();
        // Room for every datagram of a test, so a slow test thread never overflows the socket.
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20))
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut got = HashSet::new();
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while got.len() < want && Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(i) = text.strip_prefix("seq:").and_then(|s| s.parse().ok()) {
                    got.insert(i);
                }
            }
        }
        got
    });
    (handle, ready_rx)
}

fn binding_packets(stats: &serde_json::Value, proto: &str, addr: &str) -> Option<u64> {
    stats["bindings"]
        .as_array()?
        .iter()
        .find(|b| b["proto"] == proto && b["addr"] == addr)
        .and_then(|b| b["packets"].as_u64())
}

fn verdict(stats: &serde_json::Value, name: &str) -> u64 {
    stats["verdicts"][name].as_u64().unwrap()
}

fn reason(stats: &serde_json::Value, name: &str) -> u64 {
    stats["verdicts"]["pass_reasons"][name].as_u64().unwrap()
}

fn assert_conserved(stats: &serde_json::Value) {
    assert_eq!(
        verdict(stats, "seen"),
        verdict(stats, "passed") + verdict(stats, "redirected") + verdict(stats, "redirect_failed"),
        "seen = passed + redirected + redirect_failed: {stats}"
    );
}

#[test]
fn ping_and_tcp_work_as_before_while_attached_natively() {
    let tb = Testbed::new(1);
    let out = tb.netdemux_ok(&[
        "attach", "--iface", &tb.veth_b, "--mode", "native", "--json",
    ]);
    let attached: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(attached["mode"], "native");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);

    // ICMP echo to B answered by B's kernel.
    must(
        "ip",
        &[
            "netns",
            "exec",
            &tb.ns_a,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "198.18.0.2",
        ],
    );
    must(
        "ip",
        &[
            "netns",
            "exec",
            &tb.ns_a,
            "ping",
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "2001:db8::2",
        ],
    );

    // A TCP connection to a kernel listener in B, both directions, IPv4 and IPv6.
    for ip in [IpAddr::V4(IP_B), IpAddr::V6(IP6_B)] {
        let addr = SocketAddr::new(ip, 9000);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = in_netns(&tb.ns_b, move || {
            let l = TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 100_000];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        ready_rx.recv().unwrap();
        let client = in_netns(&tb.ns_a, move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
            let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            s.write_all(&data).unwrap();
            let mut back = vec![0u8; data.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, data);
        });
        client.join().expect("tcp client");
        server.join().expect("tcp server");
    }

    let stats = tb.stats();
    assert_conserved(&stats);
    assert!(
        reason(&stats, "not_tcp_udp") >= 5,
        "echo requests were seen as ICMP: {stats}"
    );
    assert!(
        reason(&stats, "no_binding") > 0,
        "TCP to an unbound port was passed: {stats}"
    );
    assert_eq!(verdict(&stats, "redirected"), 0);
}

#[test]
fn bound_datagrams_are_counted_and_fall_back_to_the_kernel_without_a_socket() {
    let tb = Testbed::new(2);
    tb.attach("native");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "[2001:db8::2]:7000"]);
    let before = tb.stats();

    let mut received = Vec::new();
    for (dst, n) in [
        (SocketAddr::new(IpAddr::V4(IP_B), 7000), 2000u64),
        (SocketAddr::new(IpAddr::V6(IP6_B), 7000), 1000u64),
        // Unbound port on the same address: the kernel gets it, counted as no_binding.
        (SocketAddr::new(IpAddr::V4(IP_B), 7001), 500u64),
    ] {
        let dropped_before = tb.sender_tx_dropped();
        let (rx, ready) = recv_udp(&tb.ns_b, dst, n as usize, Duration::from_secs(5));
        ready.recv().unwrap();
        send_udp(&tb.ns_a, dst, n).join().unwrap();
        let got = rx.join().unwrap().len() as u64;
        // veth itself may drop on the sender when the peer's XDP ring is full (NAPI deferred
        // under load); the kernel counts those. Everything else must arrive.
        let dropped = tb.sender_tx_dropped() - dropped_before;
        tb.assert_covered(&dst.to_string(), n, got, dropped, "");
        assert!(dropped * 10 <= n, "{dst}: veth dropped {dropped} of {n}");
        received.push(got);
    }

    let after = tb.stats();
    assert_conserved(&after);
    // Every frame the program matched reached the kernel socket: netdemux lost none.
    assert_eq!(
        binding_packets(&after, "udp", "198.18.0.2:7000"),
        Some(received[0])
    );
    assert_eq!(
        binding_packets(&after, "udp", "[2001:db8::2]:7000"),
        Some(received[1])
    );
    assert_eq!(
        verdict(&after, "redirect_failed") - verdict(&before, "redirect_failed"),
        received[0] + received[1],
        "every match found no AF_XDP socket and fell back: {after}"
    );
    assert!(reason(&after, "no_binding") - reason(&before, "no_binding") >= received[2]);
}

#[test]
fn bind_and_unbind_take_effect_while_a_sender_runs() {
    let tb = Testbed::new(1);
    tb.attach("native");
    // A binding that stays the whole time, on another port: it must count every one of its frames.
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7100"]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sent_steady = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent, sent_steady) = (stop.clone(), sent.clone(), sent_steady.clone());
        in_netns(&tb.ns_a, move || {
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sock.send_to(format!("seq:{i}").as_bytes(), (IP_B, 7000))
                    .unwrap();
                sock.send_to(b"steady", (IP_B, 7100)).unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                sent_steady.fetch_add(1, Ordering::Relaxed);
                i += 1;
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let wait_for_traffic = || {
        let start = sent.load(Ordering::Relaxed);
        while sent.load(Ordering::Relaxed) < start + 200 {
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for_traffic();
    // The window in which a frame may match: from before the bind command starts to after the
    // unbind command returns (a command takes effect before its process has exited, and the
    // sender keeps going meanwhile: reading the count after `bind` returned made the window
    // too short by what was sent while the process exited).
    let sent_before_bind = sent.load(Ordering::Relaxed);
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);
    wait_for_traffic();
    let mid = tb.stats();
    tb.netdemux_ok(&["unbind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);
    let sent_after_unbind = sent.load(Ordering::Relaxed);
    wait_for_traffic();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    thread::sleep(Duration::from_millis(100));
    let end = tb.stats();
    let total = sent.load(Ordering::Relaxed);

    let matched = binding_packets(&mid, "udp", "198.18.0.2:7000").unwrap();
    assert!(matched >= 200, "frames sent after bind matched it: {mid}");
    let window = sent_after_unbind - sent_before_bind;
    assert!(
        matched <= window + 5,
        "frames sent before the bind did not match: {matched} vs \
         {sent_before_bind}..{sent_after_unbind}"
    );
    assert_eq!(
        binding_packets(&end, "udp", "198.18.0.2:7000"),
        None,
        "unbound: {end}"
    );
    assert!(
        reason(&end, "no_binding") >= total - window - 5,
        "frames outside the bound window went to the kernel as no_binding: {end}"
    );
    let steady = binding_packets(&end, "udp", "198.18.0.2:7100").unwrap();
    let sent_steady = sent_steady.load(Ordering::Relaxed);
    let dropped = tb.sender_tx_dropped(); // veth ring-full drops, counted by the kernel
    assert!(
        steady <= sent_steady && steady + dropped >= sent_steady,
        "the untouched binding counted every frame that reached the program: {steady} of \
         {sent_steady} ({dropped} dropped by veth): {end}"
    );
    assert_conserved(&end);
}

#[test]
fn detach_leaves_nothing_behind() {
    let tb = Testbed::new(1);
    tb.attach("native");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "tcp", "[::]:443"]);
    let link = must("ip", &["-n", &tb.ns_b, "link", "show", &tb.veth_b]);
    assert!(link.contains("prog/xdp"), "attached: {link}");
    assert!(std::path::Path::new(&tb.pin_dir()).exists());

    let out = tb.netdemux_ok(&["detach", "--iface", &tb.veth_b]);
    assert!(out.contains("detached from"), "{out}");
    let link = must("ip", &["-n", &tb.ns_b, "link", "show", &tb.veth_b]);
    assert!(!link.contains("xdp"), "no program left: {link}");
    assert!(
        !std::path::Path::new(&tb.pin_dir()).exists(),
        "no pins left"
    );
    assert_eq!(tb.status_entry(), None, "status no longer lists it");
    // Re-attaching after a detach works and starts from an empty table.
    tb.attach("native");
    let list = tb.netdemux_ok(&["list", "--iface", &tb.veth_b, "--json"]);
    assert_eq!(list.trim(), "[]");
}

#[test]
fn skb_mode_is_reported_and_works() {
    let tb = Testbed::new(1);
    let out = tb.netdemux_ok(&["attach", "--iface", &tb.veth_b, "--mode", "skb", "--json"]);
    let attached: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(attached["mode"], "skb");
    let link = must("ip", &["-n", &tb.ns_b, "link", "show", &tb.veth_b]);
    assert!(link.contains("xdpgeneric"), "{link}");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);
    let dst = SocketAddr::new(IpAddr::V4(IP_B), 7000);
    let (rx, ready) = recv_udp(&tb.ns_b, dst, 300, Duration::from_secs(5));
    ready.recv().unwrap();
    send_udp(&tb.ns_a, dst, 300).join().unwrap();
    assert_eq!(rx.join().unwrap().len(), 300);
    let stats = tb.stats();
    assert_eq!(binding_packets(&stats, "udp", "198.18.0.2:7000"), Some(300));
    let entry = tb.status_entry().expect("status lists the attachment");
    assert_eq!(entry["mode"], "skb");
    assert_eq!(entry["state"], "attached");
    assert_eq!(entry["bindings"], 1);
}

#[test]
fn ip_netns_exec_and_netns_flag_see_the_same_state() {
    let tb = Testbed::new(1);
    let bin = netdemux_bin();
    // Attach under `ip netns exec` (a private mount namespace), then read it back with --netns.
    must(
        "ip",
        &[
            "netns", "exec", &tb.ns_b, bin, "attach", "--iface", &tb.veth_b,
        ],
    );
    must(
        "ip",
        &[
            "netns",
            "exec",
            &tb.ns_b,
            bin,
            "bind",
            "--iface",
            &tb.veth_b,
            "udp",
            "198.18.0.2:53",
        ],
    );
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "tcp", "198.18.0.2:80"]);
    let via_flag = tb.netdemux_ok(&["list", "--iface", &tb.veth_b]);
    let via_exec = must(
        "ip",
        &[
            "netns", "exec", &tb.ns_b, bin, "list", "--iface", &tb.veth_b,
        ],
    );
    assert_eq!(via_flag, via_exec);
    assert_eq!(via_flag, "tcp 198.18.0.2:80\nudp 198.18.0.2:53\n");
    must(
        "ip",
        &[
            "netns", "exec", &tb.ns_b, bin, "detach", "--iface", &tb.veth_b,
        ],
    );
    assert!(!std::path::Path::new(&tb.pin_dir()).exists());
}

/// `gc` removes every stale state on the machine: the tests that make stale state on purpose
/// and the one that runs `gc` take turns.
static STALE_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn state_of_a_vanished_interface_is_reported_stale_and_removable() {
    let _turn = STALE_STATE.lock().unwrap_or_else(|p| p.into_inner());
    let tb = Testbed::new(1);
    tb.attach("native");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);
    // The interface goes away (a container's veth deleted); its pins stay behind.
    must("ip", &["-n", &tb.ns_b, "link", "del", &tb.veth_b]);
    let entry = tb.status_entry().expect("status lists the leftover state");
    assert_eq!(entry["state"], "stale");
    // A new interface with the same name must not inherit the old state.
    must(
        "ip",
        &[
            "-n", &tb.ns_b, "link", "add", &tb.veth_b, "type", "veth", "peer", "name", "ndstale0",
        ],
    );
    let out = tb.netdemux(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7001"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stale"), "{err}");
    let out = tb.netdemux_ok(&["detach", "--iface", &tb.veth_b]);
    assert!(out.contains("stale"), "{out}");
    assert!(!std::path::Path::new(&tb.pin_dir()).exists());
    tb.attach("native");
    // Gone again: `attach` and `run` remove what is provably stale, with one line, and go on.
    for (i, args) in [
        vec!["attach", "--iface", &tb.veth_b, "--mode", "native"],
        vec![
            "run",
            "--iface",
            &tb.veth_b,
            "--udp-sink",
            "198.18.0.2:7000",
        ],
    ]
    .into_iter()
    .enumerate()
    {
        must("ip", &["-n", &tb.ns_b, "link", "del", &tb.veth_b]);
        let peer = format!("ndstale{}", i + 1);
        must(
            "ip",
            &[
                "-n", &tb.ns_b, "link", "add", &tb.veth_b, "type", "veth", "peer", "name", &peer,
            ],
        );
        must("ip", &["-n", &tb.ns_b, "link", "set", &tb.veth_b, "up"]);
        let err = if args[0] == "run" {
            let d =
                netdemux::testbed::Daemon::start(&tb, &args[3..]).expect("run over stale state");
            let (status, err) = d.stop_with_stderr().unwrap();
            assert!(status.success(), "{err}");
            err
        } else {
            let out = tb.netdemux(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let notice: Vec<&str> = err.lines().filter(|l| l.contains("stale state")).collect();
        assert_eq!(notice.len(), 1, "one line says so: {err}");
    }
}

#[test]
fn gc_removes_stale_state_and_leaves_live_attachments() {
    let _turn = STALE_STATE.lock().unwrap_or_else(|p| p.into_inner());
    let gone = Testbed::new(1);
    let live = Testbed::new(1);
    gone.attach("native");
    live.attach("native");
    // A whole namespace goes away with its interface (a container stopped).
    must("ip", &["-n", &gone.ns_b, "link", "del", &gone.veth_b]);
    let out = run(netdemux_bin(), &["gc", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let gone_dir = gone.pin_dir().join(&gone.veth_b);
    assert!(
        removed.iter().any(|r| std::path::Path::new(r) == gone_dir),
        "{removed:?}"
    );
    assert!(!gone_dir.exists());
    assert!(
        live.pin_dir().join(&live.veth_b).exists(),
        "the live attachment stays"
    );
    assert_eq!(live.netdemux_ok(&["list", "--iface", &live.veth_b]), "");
}
