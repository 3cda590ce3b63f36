//! `netdemux run`: AF_XDP sockets on every RX queue of a 2-queue veth, with the kernel's UDP
//! stack as the sender. Counts must be exact, a killed daemon must leave the NIC working, and a
//! consumer that falls behind must have its drops counted. Requires root.

mod support;

use std::{
    collections::HashSet,
    net::{SocketAddr, UdpSocket},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::netns::*;

/// The library's daemon handle, with the tests' conventions (panics instead of errors).
struct Daemon(netdemux::testbed::Daemon);

impl Daemon {
    fn start(tb: &Testbed, args: &[&str]) -> Daemon {
        Daemon(netdemux::testbed::Daemon::start(tb, args).expect("netdemux run comes up"))
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        self.0.signal(sig).unwrap();
    }

    fn stop(self) -> std::process::ExitStatus {
        self.0.stop().unwrap()
    }

    fn kill9(self) {
        self.0.kill9().unwrap();
    }
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `netdemux bind --from FILE` on the daemon's veth, with `extra` flags: replaces the whole
/// binding set with the file's.
fn bind_from(tb: &Testbed, file: &std::path::Path, extra: &[&str]) -> String {
    let file = file.to_str().unwrap();
    let mut args = vec!["bind", "--iface", &tb.veth_b, "--from", file];
    args.extend_from_slice(extra);
    tb.netdemux_ok(&args)
}

fn sink_packets(stats: &serde_json::Value) -> u64 {
    stats["services"]
        .as_array()
        .map(|s| s.iter().map(|x| u(&x["packets"])).sum())
        .unwrap_or(0)
}

/// Sends `n` datagrams to `dst` from `sockets` sockets (so many source ports, so RSS spreads
/// them over the queues), paced so a healthy receiver keeps up.
fn send_spread(ns: &str, dst: SocketAddr, n: u64, sockets: usize) -> thread::JoinHandle<()> {
    send_paced(ns, dst, n, sockets, 16, Duration::from_micros(200))
}

/// [`send_spread`] with its own pace: a pause of `pause` after every `burst` datagrams.
fn send_paced(
    ns: &str,
    dst: SocketAddr,
    n: u64,
    sockets: usize,
    burst: u64,
    pause: Duration,
) -> thread::JoinHandle<()> {
    in_netns(ns, move || {
        let socks: Vec<UdpSocket> = (0..sockets)
            .map(|_| UdpSocket::bind("0.0.0.0:0").unwrap())
            .collect();
        for i in 0..n {
            socks[i as usize % sockets]
                .send_to(format!("seq:{i}").as_bytes(), dst)
                .unwrap();
            if i % burst == burst - 1 {
                thread::sleep(pause);
            }
        }
    })
}

/// Polls `stats --json` until `done` holds or `secs` pass; returns the last stats.
fn wait_stats(
    tb: &Testbed,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = tb.stats();
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_sink_counts_every_datagram_over_two_queues_and_the_kernel_keeps_the_rest() {
    let tb = Testbed::new(2);
    let daemon = Daemon::start(&tb, &["--udp-sink", "198.18.0.2:7000"]);
    let n = 20_000u64;
    let drops_before = tb.sender_tx_dropped();
    send_spread(&tb.ns_a, SocketAddr::from((IP_B, 7000)), n, 64)
        .join()
        .unwrap();
    let dropped = tb.sender_tx_dropped() - drops_before; // veth's own, before XDP
    let stats = wait_stats(&tb, 5, |s| {
        sink_packets(s) + dropped >= n && queue_sum(s, "rx") == sink_packets(s)
    });

    let got = sink_packets(&stats);
    tb.assert_covered("the sink", n, got, dropped, &stats.to_string());
    assert!(dropped * 20 <= n, "veth dropped {dropped}");
    assert_eq!(
        queue_sum(&stats, "rx"),
        got,
        "per-queue rx sums to the sink's count"
    );
    for q in stats["queues"].as_array().unwrap() {
        assert!(
            u(&q["rx"]) > 0,
            "RSS spread the flows over both queues: {stats}"
        );
        assert_eq!(q["mode"], "copy");
    }
    assert_eq!(queue_sum(&stats, "rx_dropped"), 0, "{stats}");
    assert_eq!(queue_sum(&stats, "rx_ring_full"), 0);
    assert_eq!(queue_sum(&stats, "unclaimed"), 0);
    assert_eq!(
        u(&stats["verdicts"]["redirected"]),
        got,
        "every redirected frame reached the sink"
    );
    assert_eq!(u(&stats["bindings"][0]["packets"]), got);

    // Unbound traffic on the same address still reaches a kernel socket, in full.
    let m = 2_000u64;
    let addr = SocketAddr::from((IP_B, 7001));
    let receiver = QuietReceiver::start(
        &tb.ns_b,
        addr,
        Some(8 << 20),
        HashSet::new(),
        |got, d, _| {
            got.insert(d.to_vec());
        },
    );
    let drops_before = tb.sender_tx_dropped();
    send_spread(&tb.ns_a, addr, m, 16).join().unwrap();
    let got_kernel = receiver.finish().len() as u64;
    let dropped = tb.sender_tx_dropped() - drops_before;
    tb.assert_covered("the kernel socket", m, got_kernel, dropped, "");
    assert!(daemon.stop().success(), "clean exit on SIGTERM");
    // This run attached, so its exit detached: nothing of netdemux is left.
    assert!(!tb.pin_dir().exists());
    let link = must("ip", &["-n", &tb.ns_b, "link", "show", &tb.veth_b]);
    assert!(!link.contains("xdp"), "{link}");
}

#[test]
fn a_killed_daemon_fails_open_and_a_new_one_takes_the_traffic_back() {
    let tb = Testbed::new(2);
    // A kernel socket on the same address: it gets the datagrams only when AF_XDP does not.
    let kernel_count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = {
        let (kernel_count, stop) = (kernel_count.clone(), stop.clone());
        in_netns(&tb.ns_b, move || {
            let sock = UdpSocket::bind("198.18.0.2:7000").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    kernel_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    ready_rx.recv().unwrap();
    let first = Daemon::start(&tb, &["--udp-sink", "198.18.0.2:7000"]);
    let sender = {
        let stop = stop.clone();
        in_netns(&tb.ns_a, move || {
            let socks: Vec<UdpSocket> = (0..8)
                .map(|_| UdpSocket::bind("0.0.0.0:0").unwrap())
                .collect();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = socks[i % socks.len()].send_to(b"x", (IP_B, 7000));
                i += 1;
                thread::sleep(Duration::from_micros(250));
            }
        })
    };
    let s = wait_stats(&tb, 5, |s| sink_packets(s) > 200);
    assert!(sink_packets(&s) > 200, "the daemon receives: {s}");
    assert_eq!(
        kernel_count.load(Ordering::Relaxed),
        0,
        "while it runs, the kernel gets none"
    );

    first.kill9();
    let killed_at = Instant::now();
    while kernel_count.load(Ordering::Relaxed) < 100 && killed_at.elapsed() < Duration::from_secs(5)
    {
        thread::sleep(Duration::from_millis(5));
    }
    let fallback = killed_at.elapsed();
    assert!(
        kernel_count.load(Ordering::Relaxed) >= 100,
        "the kernel socket receives after kill -9"
    );
    assert!(
        fallback < Duration::from_secs(2),
        "fell back in {fallback:?}"
    );
    let s = tb.stats();
    assert!(s.get("queues").is_none(), "no daemon answers any more: {s}");
    assert!(
        u(&s["verdicts"]["redirect_failed"]) > 0,
        "matches fell back: {s}"
    );

    // A new daemon reuses the attachment and the binding, and takes the traffic back.
    let second = Daemon::start(&tb, &["--udp-sink", "198.18.0.2:7000"]);
    let s = wait_stats(&tb, 5, |s| sink_packets(s) > 200);
    assert!(sink_packets(&s) > 200, "the new daemon receives: {s}");
    let k1 = kernel_count.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(300));
    let k2 = kernel_count.load(Ordering::Relaxed);
    assert_eq!(k1, k2, "the kernel gets nothing once the new daemon serves");
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    receiver.join().unwrap();
    assert!(second.stop().success());
    // The second run did not attach, so the attachment (made by the first) stays.
    let list = tb.netdemux_ok(&["list", "--iface", &tb.veth_b]);
    assert_eq!(list, "udp 198.18.0.2:7000\n");
}

#[test]
fn a_consumer_that_falls_behind_has_every_drop_counted() {
    let tb = Testbed::new(1);
    let daemon = Daemon::start(
        &tb,
        &[
            "--udp-sink",
            "198.18.0.2:7000",
            "--frames",
            "64",
            "--ring-size",
            "64",
        ],
    );
    // Freeze the daemon: its rings fill and the kernel must count what it cannot deliver.
    daemon.signal(nix::sys::signal::Signal::SIGSTOP);
    send_spread(&tb.ns_a, SocketAddr::from((IP_B, 7000)), 3_000, 8)
        .join()
        .unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGCONT);
    let stats = wait_stats(&tb, 5, |s| {
        u(&s["verdicts"]["redirected"]) == sink_packets(s) + queue_sum(s, "rx_dropped")
            && queue_sum(s, "rx_dropped") > 0
    });
    let redirected = u(&stats["verdicts"]["redirected"]);
    let delivered = sink_packets(&stats);
    let dropped = queue_sum(&stats, "rx_dropped");
    assert!(dropped > 0, "a frozen consumer drops: {stats}");
    assert!(
        queue_sum(&stats, "rx_ring_full") + queue_sum(&stats, "fill_ring_empty") > 0,
        "the reason is counted: {stats}"
    );
    assert_eq!(
        redirected,
        delivered + dropped,
        "redirected = delivered + counted drops: {stats}"
    );
    // 64 frames, of which 1/8 are kept back for transmitting: 56 wait in the fill ring.
    assert!(
        delivered >= 56,
        "what fit in the rings was delivered: {stats}"
    );
    drop(daemon);
}

#[test]
fn run_refuses_bad_setups_and_leaves_nothing() {
    let tb = Testbed::new(2);
    let v = tb.veth_b.as_str();
    for (args, want) in [
        (
            vec![
                "run",
                "--iface",
                v,
                "--zero-copy",
                "--udp-sink",
                "198.18.0.2:7000",
            ],
            "drop --zero-copy",
        ),
        (
            vec!["run", "--iface", v, "--queues", "0,5"],
            "has 2 RX queue(s)",
        ),
        (vec!["run", "--iface", v, "--frames", "100"], "power of two"),
        (
            vec!["run", "--iface", v, "--udp-sink", "198.18.0.2:0"],
            "port 0",
        ),
        (vec!["run", "--iface", v, "--queues", "x"], "not a list"),
    ] {
        let out = tb.netdemux(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
        assert!(!tb.pin_dir().exists(), "{args:?} left state behind");
    }
    // A second daemon on the same interface is refused while the first runs.
    let first = Daemon::start(&tb, &["--udp-sink", "198.18.0.2:7000"]);
    let out = tb.netdemux(&["run", "--iface", v, "--udp-sink", "198.18.0.2:7001"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serves"));
    assert_eq!(
        tb.netdemux_ok(&["list", "--iface", v]),
        "udp 198.18.0.2:7000\n"
    );
    drop(first);
}

/// `--busy-poll` where the driver registered no NAPI instance for the queue (veth): the kernel
/// busy-polls nothing for the socket (its SO_INCOMING_NAPI_ID stays 0, and a profile of a
/// busy-polling worker shows no NAPI code on its core). The daemon says so at start-up and
/// reports it per queue, where it used to leave the option looking effective.
#[test]
fn busy_poll_without_a_napi_instance_is_reported() {
    let tb = Testbed::new(1);
    let args = ["--udp-sink", "198.18.0.2:7000", "--busy-poll"];
    let daemon = netdemux::testbed::Daemon::start(&tb, &args).unwrap();
    let stats = tb.stats();
    assert_eq!(stats["queues"][0]["busy_poll"], "no-napi", "{stats}");
    let (status, stderr) = daemon.stop_with_stderr().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("--busy-poll does nothing on") && stderr.contains("queue 0"),
        "{stderr}"
    );
    let daemon = netdemux::testbed::Daemon::start(&tb, &args[..2]).unwrap();
    assert_eq!(tb.stats()["queues"][0]["busy_poll"], "off");
    let (_, stderr) = daemon.stop_with_stderr().unwrap();
    assert!(
        !stderr.contains("--busy-poll"),
        "no warning without it: {stderr}"
    );
}

#[test]
fn run_warns_about_gro_in_skb_mode_and_reports_copy_mode() {
    let tb = Testbed::new(1);
    must(
        "ip",
        &[
            "netns", "exec", &tb.ns_b, "ethtool", "-K", &tb.veth_b, "gro", "on",
        ],
    );
    let child = Command::new(netdemux_bin())
        .env("RUST_LOG", "netdemux=info")
        .args([
            "--netns",
            &tb.ns_b,
            "run",
            "--iface",
            &tb.veth_b,
            "--mode",
            "skb",
            "--udp-sink",
            "198.18.0.2:7000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let up = || {
        let out = tb.netdemux(&["stats", "--iface", &tb.veth_b, "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("\"queues\"")
    };
    while Instant::now() < deadline && !up() {
        thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("daemon starting") && stderr.contains("traffic back to the kernel"),
        "lifecycle logged at info: {stderr}"
    );
    assert!(
        stderr.contains("GRO is on") && stderr.contains("gro off"),
        "warning with the fix: {stderr}"
    );
    assert!(
        stdout.contains("in skb mode") && stdout.contains("queues 0 (copy)"),
        "{stdout}"
    );
}

#[test]
fn spinning_busy_polling_pinned_workers_receive_too() {
    let tb = Testbed::new(2);
    // Both queues' spinning workers on CPU 1: they take turns at the scheduler's pace, so a
    // worker waiting for its turn may find its fill ring empty (a loop of these tests here
    // once dropped 308 of 3000 so); the daemon says so at start-up, and every datagram is
    // received or counted.
    let daemon = netdemux::testbed::Daemon::start(
        &tb,
        &[
            "--udp-sink",
            "198.18.0.2:7000",
            "--spin",
            "--busy-poll",
            "--cpu",
            "1",
            "--queues",
            "0-1",
        ],
    )
    .expect("netdemux run comes up");
    let n = 3_000u64;
    let drops_before = tb.sender_tx_dropped();
    send_spread(&tb.ns_a, SocketAddr::from((IP_B, 7000)), n, 32)
        .join()
        .unwrap();
    let dropped = tb.sender_tx_dropped() - drops_before;
    // What the program redirected: received, or dropped by a socket and counted by it.
    let taken = |s: &serde_json::Value| {
        sink_packets(s) + queue_sum(s, "rx_dropped") + queue_sum(s, "rx_ring_full")
    };
    let stats = wait_stats(&tb, 5, |s| taken(s) + dropped >= n);
    let what = "received or counted by the sockets";
    tb.assert_covered(what, n, taken(&stats), dropped, &stats.to_string());
    for q in stats["queues"].as_array().unwrap() {
        assert!(u(&q["rx"]) > 0, "each spinning worker received: {stats}");
    }
    let (status, log) = daemon.stop_with_stderr().unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("--spin with queues 0, 1 on CPU 1") && log.contains("a CPU of its own"),
        "the shared CPU is named, with the fix: {log}"
    );
}

#[test]
fn run_refuses_an_attachment_made_by_another_build() {
    let tb = Testbed::new(1);
    tb.attach("native");
    // Pretend another build attached: rewrite the recorded object hash.
    tb.rewrite_info(|i| i.object_hash ^= 1);
    let out = tb.netdemux(&[
        "run",
        "--iface",
        &tb.veth_b,
        "--udp-sink",
        "198.18.0.2:7000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another netdemux build"), "{err}");
    assert_eq!(
        tb.netdemux_ok(&["list", "--iface", &tb.veth_b]),
        "",
        "nothing was bound"
    );
}

/// A sender in namespace a streaming small datagrams to one address from eight sockets
/// until it is stopped, counting what it sent.
struct SteadySender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: thread::JoinHandle<()>,
    /// veth_a's drop counter when the sender started.
    drops_at_start: u64,
}

impl SteadySender {
    fn start(tb: &Testbed, dst: SocketAddr) -> SteadySender {
        let drops_at_start = tb.sender_tx_dropped();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, sent) = (stop.clone(), sent.clone());
            in_netns(&tb.ns_a, move || {
                let socks: Vec<UdpSocket> = (0..8)
                    .map(|_| UdpSocket::bind("0.0.0.0:0").unwrap())
                    .collect();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    socks[i % 8].send_to(b"steady", dst).unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    if i.is_multiple_of(16) {
                        thread::sleep(Duration::from_micros(300));
                    }
                }
            })
        };
        SteadySender {
            stop,
            sent,
            handle,
            drops_at_start,
        }
    }

    /// Datagrams sent so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the sender and asserts that every datagram it sent reached the sink or is
    /// covered by the drops veth counted while it ran ([`Testbed::assert_covered`]); returns
    /// the final statistics.
    fn stop_and_account(self, tb: &Testbed, what: &str) -> serde_json::Value {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap();
        let n = self.sent.load(Ordering::Relaxed);
        let dropped = tb.sender_tx_dropped() - self.drops_at_start;
        let stats = wait_stats(tb, 5, |s| sink_packets(s) + dropped >= n);
        tb.assert_covered(what, n, sink_packets(&stats), dropped, &stats.to_string());
        stats
    }
}

#[test]
fn a_thousand_bind_unbind_cycles_do_not_disturb_a_binding_that_stays() {
    let tb = Testbed::new(2);
    let daemon = Daemon::start(&tb, &["--udp-sink", "0.0.0.0:7000"]);
    let sender = SteadySender::start(&tb, SocketAddr::from((IP_B, 7000)));
    // Churn from inside namespace b through the library: an exact binding on the steady
    // binding's own port (its port count goes 1 -> 2 -> 1), and bindings on other ports.
    while sender.sent() < 200 {
        thread::sleep(Duration::from_millis(5));
    }
    let sent_at_start = sender.sent();
    let veth = tb.veth_b.clone();
    let churn = in_netns(&tb.ns_b, move || {
        let iface = netdemux::control::iface::Interface::resolve(&veth).unwrap();
        let mut a = netdemux::control::attachment::open(&iface).unwrap();
        let same_port =
            netdemux::control::binding::Binding::parse("udp", "198.18.0.9:7000").unwrap();
        for i in 0..1000u16 {
            let other = netdemux::control::binding::Binding::parse(
                if i % 2 == 0 { "udp" } else { "tcp" },
                &format!("198.18.0.2:{}", 20_000 + i),
            )
            .unwrap();
            let _lock = a.lock().unwrap();
            a.maps.bind(&same_port).unwrap();
            a.maps.bind(&other).unwrap();
            a.maps.unbind(&same_port).unwrap();
            a.maps.unbind(&other).unwrap();
        }
    });
    churn.join().expect("1000 cycles");
    let during = sender.sent() - sent_at_start;
    sender.stop_and_account(&tb, "the steady binding lost nothing");
    assert!(
        during > 50,
        "the sender ran during the churn ({during} datagrams)"
    );
    assert_eq!(
        tb.netdemux_ok(&["list", "--iface", &tb.veth_b]),
        "udp 0.0.0.0:7000\n",
        "only it remains"
    );
    assert!(daemon.stop().success());
}

#[test]
fn upgrading_the_program_under_traffic_keeps_bindings_counters_and_every_datagram() {
    let tb = Testbed::new(2);
    tb.attach("native");
    let daemon = Daemon::start(&tb, &["--udp-sink", "198.18.0.2:7000"]);
    let sender = SteadySender::start(&tb, SocketAddr::from((IP_B, 7000)));
    // A whole-set replacement first, so the program runs on binding set 1 and set 0 still
    // holds the set before it: the new program must read the set in use, not start on set 0.
    let file = std::env::temp_dir().join(format!("netdemux-upgrade-set-{}", std::process::id()));
    std::fs::write(&file, "udp 198.18.0.2:7000\nudp 198.18.0.2:7001\n").unwrap();
    let replaced = bind_from(&tb, &file, &[]);
    std::fs::remove_file(&file).unwrap();
    assert!(replaced.contains("1 added"), "{replaced}");
    let before = wait_stats(&tb, 5, |s| sink_packets(s) > 500);
    let counted_before = u(&before["bindings"][0]["packets"]);
    let out = tb.netdemux_ok(&["attach", "--iface", &tb.veth_b, "--upgrade", "--json"]);
    let up: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(
        up["program_id"], up["old_program_id"],
        "a new program runs: {up}"
    );
    assert_eq!(up["bindings"], 2);
    assert_eq!(
        tb.netdemux_ok(&["list", "--iface", &tb.veth_b]),
        "udp 198.18.0.2:7000\nudp 198.18.0.2:7001\n",
        "the replaced set is still the one in use"
    );
    thread::sleep(Duration::from_millis(300));
    let after = sender.stop_and_account(&tb, "nothing lost across the upgrade");
    assert!(
        u(&after["bindings"][0]["packets"]) > counted_before,
        "counters kept counting, not reset"
    );
    let entry = tb.status_entry().unwrap();
    assert_eq!(entry["program_id"], up["program_id"]);
    assert_eq!(entry["state"], "attached");
    assert!(daemon.stop().success());
}

#[test]
fn pinned_state_and_the_control_socket_are_root_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let tb = Testbed::new(1);
    let _daemon = Daemon::start(&tb, &["--udp-sink", "198.18.0.2:7000"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tb.pin_dir().join(&tb.veth_b);
    assert_eq!(mode(&tb.pin_dir()), 0o700);
    assert_eq!(mode(&dir), 0o700);
    for pin in ["binds", "counters", "xsks", "info", "ports", "link"] {
        assert_eq!(
            mode(&dir.join(pin)) & 0o077,
            0,
            "{pin} is not readable by others"
        );
    }
    let sock = std::path::Path::new("/run/netdemux")
        .join(tb.pin_dir().file_name().unwrap())
        .join(format!("{}.sock", tb.veth_b));
    assert_eq!(mode(&sock), 0o600, "{}", sock.display());
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
}

/// Parses Prometheus text format into `name{labels}` -> value.
fn parse_prometheus(text: &str) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(series.starts_with("netdemux_"), "{line}");
        let value: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a counter value: {line}"));
        assert!(
            out.insert(series.to_string(), value).is_none(),
            "duplicate series {series}"
        );
    }
    out
}

fn series_value(m: &std::collections::HashMap<String, u64>, name: &str, label: &str) -> u64 {
    let hits: Vec<_> = m
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(label))
        .collect();
    assert_eq!(hits.len(), 1, "{name} with {label}: {hits:?}");
    *hits[0].1
}

#[test]
fn prometheus_metrics_match_the_json_counters() {
    let tb = Testbed::new(2);
    let _daemon = Daemon::start(
        &tb,
        &[
            "--udp-sink",
            "198.18.0.2:7000",
            "--metrics",
            "127.0.0.1:9464",
        ],
    );
    send_spread(&tb.ns_a, SocketAddr::from((IP_B, 7000)), 500, 8)
        .join()
        .unwrap();
    send_spread(&tb.ns_a, SocketAddr::from((IP_B, 7001)), 100, 2)
        .join()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let json = tb.stats();
    // Scraped over HTTP from inside the namespace, as Prometheus would.
    let (body, not_found) = in_netns(&tb.ns_b, || {
        use std::io::{Read as _, Write as _};
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:9464").unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        };
        (get("/metrics"), get("/other"))
    })
    .join()
    .unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200 OK\r\n") && body.contains("text/plain; version=0.0.4"),
        "{body}"
    );
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    let scraped = parse_prometheus(body.split("\r\n\r\n").nth(1).unwrap());
    let printed =
        parse_prometheus(&tb.netdemux_ok(&["stats", "--iface", &tb.veth_b, "--prometheus"]));
    for m in [&scraped, &printed] {
        assert_eq!(
            series_value(m, "netdemux_frames_total", "verdict=\"redirected\""),
            u(&json["verdicts"]["redirected"])
        );
        assert_eq!(
            series_value(m, "netdemux_passed_total", "reason=\"no_binding\""),
            u(&json["verdicts"]["pass_reasons"]["no_binding"])
        );
        assert_eq!(
            series_value(
                m,
                "netdemux_binding_packets_total",
                "addr=\"198.18.0.2:7000\""
            ),
            u(&json["bindings"][0]["packets"])
        );
        assert_eq!(
            series_value(m, "netdemux_service_packets_total", "kind=\"udp-sink\""),
            sink_packets(&json)
        );
        assert_eq!(
            m.iter()
                .filter(|(k, _)| k.starts_with("netdemux_queue_rx_total{"))
                .map(|(_, v)| v)
                .sum::<u64>(),
            queue_sum(&json, "rx")
        );
    }
    assert!(sink_packets(&json) >= 450, "{json}");
}

#[test]
fn replacing_the_binding_set_under_traffic_loses_nothing_of_a_binding_kept() {
    let tb = Testbed::new(2);
    let daemon = Daemon::start(&tb, &["--udp-sink", "198.18.0.2:7000"]);
    let sender = SteadySender::start(&tb, SocketAddr::from((IP_B, 7000)));
    while sender.sent() < 200 {
        thread::sleep(Duration::from_millis(5));
    }
    // 100 whole-set replacements, each keeping udp 198.18.0.2:7000 and changing the rest.
    let dir = std::env::temp_dir().join(format!("netdemux-sets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..100u16 {
        let file = dir.join(format!("set{}", i % 2));
        let mut text = String::from("# a binding set\nudp 198.18.0.2:7000\n\n");
        for j in 0..20u16 {
            text.push_str(&format!(
                "{} [2001:db8::2]:{}  # churn\n",
                if j % 2 == 0 { "udp" } else { "tcp" },
                30_000 + i * 20 + j
            ));
        }
        std::fs::write(&file, text).unwrap();
        let out = bind_from(&tb, &file, &["--json"]);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["kept"], 1, "{out}");
        assert_eq!(r["added"], 20);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let stats = sender.stop_and_account(&tb, "the kept binding lost nothing");
    let binding = stats["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == "198.18.0.2:7000")
        .unwrap()
        .clone();
    // Its counter is carried across each switch, less what the program counted in the old set
    // between the copy and the switch (microseconds): at most a few per switch.
    let counted = u(&binding["packets"]);
    let delivered = sink_packets(&stats);
    assert!(
        counted <= delivered && counted + 5 * 100 >= delivered,
        "counter {counted} of {delivered} delivered"
    );
    assert_eq!(stats["bindings"].as_array().unwrap().len(), 21);
    assert!(daemon.stop().success());
}

#[test]
fn a_daemon_runs_from_a_config_file_that_names_its_namespace() {
    let tb = Testbed::new(2);
    let dir = std::env::temp_dir().join(format!("netdemux-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.toml");
    std::fs::write(
        &file,
        format!(
            "# the run, in a file\niface = \"{}\"\nnetns = \"{}\"\nbindings = [\"tcp 198.18.0.2:443\"]\n\n[services]\nudp_echo = [\"198.18.0.2:7000\"]\n",
            tb.veth_b, tb.ns_b
        ),
    )
    .unwrap();
    // No --netns on the command line: the file says where.
    let child = Command::new(netdemux_bin())
        .args(["run", "--config", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut child = scopeguard(child);
    let stats = wait_stats_when_up(&tb);
    assert_eq!(stats["services"][0]["kind"], "udp-echo", "{stats}");
    assert_eq!(
        tb.netdemux_ok(&["list", "--iface", &tb.veth_b]),
        "tcp 198.18.0.2:443\nudp 198.18.0.2:7000\n"
    );
    let answered = in_netns(&tb.ns_a, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 64];
        (0..50)
            .filter(|_| {
                s.send_to(b"configured", (IP_B, 7000)).unwrap();
                s.recv_from(&mut buf)
                    .is_ok_and(|(n, _)| &buf[..n] == b"configured")
            })
            .count()
    })
    .join()
    .unwrap();
    assert_eq!(answered, 50);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.0.take().unwrap().wait().unwrap().success());
    assert!(
        !tb.pin_dir().exists(),
        "the run attached, so its exit detached"
    );
    // Options and a config file do not mix.
    let out = run(
        netdemux_bin(),
        &["run", "--config", file.to_str().unwrap(), "--iface", "eth0"],
    );
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Kills the child if the test fails before it is taken.
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn scopeguard(child: std::process::Child) -> ChildGuard {
    ChildGuard(Some(child))
}

fn wait_stats_when_up(tb: &Testbed) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = tb.netdemux(&["stats", "--iface", &tb.veth_b, "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if v.get("services").is_some() {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the configured daemon did not come up"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_programs_log_records_reach_the_daemons_logs_only_when_asked_for() {
    let tb = Testbed::new(2);
    let dst = SocketAddr::from((IP_B, 7000));
    // Queue 1 has no socket: its bound frames are passed, a slow path the program logs.
    let args = ["--udp-sink", "198.18.0.2:7000", "--queues", "0"];
    let quiet = netdemux::testbed::Daemon::start(&tb, &args).expect("daemon");
    send_spread(&tb.ns_a, dst, 200, 16).join().unwrap();
    let stats = wait_stats(&tb, 5, |s| u(&s["verdicts"]["redirect_failed"]) > 0);
    assert!(u(&stats["verdicts"]["redirect_failed"]) > 0, "{stats}");
    let (_, quiet_log) = quiet.stop_with_stderr().unwrap();
    assert!(!quiet_log.contains("has no AF_XDP socket"), "{quiet_log}");

    let loud = netdemux::testbed::Daemon::start_with_env(
        &tb,
        &args,
        &[("RUST_LOG", "warn,netdemux::xdp=debug")],
    )
    .expect("daemon");
    let before = tb.stats();
    let failed_before = u(&before["verdicts"]["redirect_failed"]);
    // Paced (8 frames a millisecond) so the program's log buffer keeps up: about 2000 frames
    // on queue 1, a record each — some 250 KB of log, more than a pipe holds (64 KiB). The
    // testbed reads the daemon's stderr as it comes; it once read it only at the end, and a
    // daemon with more to say blocked on the full pipe (and could not stop within 10 s).
    // veth puts each sending socket's frames on one queue, by the socket's hash: 64 sockets
    // make fewer than 16 on queue 1 unlikely (16 once put only 3 there: 750 frames), and a
    // batch more, at most two, makes up for it.
    let (mut stats, mut failed) = (before.clone(), 0);
    for batch in 1..=3u64 {
        send_paced(&tb.ns_a, dst, 4000, 64, 8, Duration::from_millis(1))
            .join()
            .unwrap();
        let seen = u(&before["verdicts"]["seen"]) + batch * 4000;
        stats = wait_stats(&tb, 5, |s| u(&s["verdicts"]["seen"]) >= seen);
        failed = u(&stats["verdicts"]["redirect_failed"]) - failed_before;
        if failed >= 1000 {
            break;
        }
    }
    assert!(
        failed >= 1000,
        "frames on the queue without a socket: {stats}"
    );
    thread::sleep(Duration::from_millis(300));
    let (status, log) = loud.stop_with_stderr().unwrap();
    let tail = log.get(log.len().saturating_sub(2000)..).unwrap_or(&log);
    assert!(status.success(), "{status}: {tail}");
    let records = log
        .lines()
        .filter(|l| l.contains("netdemux::xdp") && l.contains("has no AF_XDP socket there"))
        .count() as u64;
    assert!(
        records * 2 >= failed,
        "{records} of the program's records for {failed} frames in the daemon's log ({} bytes)",
        log.len()
    );
}
