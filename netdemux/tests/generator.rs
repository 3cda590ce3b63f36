//! `netdemux gen` against the kernel's own UDP stack: every generated frame must pass the kernel's
//! checksum checks (the program rewrites the source port and fixes the checksum per frame), all
//! flows must appear, and the hit ratio must hold. Requires root.

mod support;

use std::{collections::HashSet, net::SocketAddr, thread, time::Duration};

use support::netns::*;

/// `netdemux --netns <ns_a> gen --iface <veth_a>`, then `args`.
fn gen_args<'a>(tb: &'a Testbed, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec![
        "--netns",
        tb.ns_a.as_str(),
        "gen",
        "--iface",
        tb.veth_a.as_str(),
    ];
    full.extend_from_slice(args);
    full
}

/// Runs `netdemux --netns <ns_a> gen ...` and returns its JSON report.
fn gen_from_a(tb: &Testbed, args: &[&str]) -> serde_json::Value {
    let mut full = gen_args(tb, &["--json"]);
    full.extend_from_slice(args);
    let out = run(netdemux_bin(), &full);
    assert!(
        out.status.success(),
        "gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gen --json is JSON")
}

/// XDP frames veth could not transmit to the peer (its ring full), per `ethtool -S`.
fn xmit_errors(tb: &Testbed) -> u64 {
    must(
        "ip",
        &["netns", "exec", &tb.ns_a, "ethtool", "-S", &tb.veth_a],
    )
    .lines()
    .filter(|l| l.contains("xdp_xmit_errors"))
    .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
    .sum()
}

/// A kernel socket on `addr` in namespace b that counts the datagrams and their source ports.
fn count_flows(tb: &Testbed, addr: SocketAddr) -> QuietReceiver<(u64, HashSet<u16>)> {
    QuietReceiver::start(
        &tb.ns_b,
        addr,
        Some(32 << 20),
        (0u64, HashSet::new()),
        |(n, ports), _, from| {
            *n += 1;
            ports.insert(from.port());
        },
    )
}

fn udp_csum_errors(tb: &Testbed) -> u64 {
    netdemux::testbed::kernel_counters(&tb.ns_b, &["UdpInCsumErrors", "Udp6InCsumErrors"]).unwrap()
}

#[test]
fn generated_frames_pass_the_kernels_checksums_and_cover_every_flow() {
    let tb = Testbed::new(1);
    tb.attach("native"); // a native program keeps veth's NAPI on for the XDP_TX'd frames
    // IPv6 without --size: the smallest valid frame (66 bytes), not a refusal.
    for (dst, size, want) in [
        ("198.18.0.2:9100", Some("64"), 64),
        ("[2001:db8::2]:9100", Some("128"), 128),
        ("[2001:db8::2]:9100", None, 66),
    ] {
        let addr: SocketAddr = dst.parse().unwrap();
        let rx = count_flows(&tb, addr);
        let errors_before = xmit_errors(&tb);
        let mut args = vec![
            "--dst",
            dst,
            "--flows",
            "16",
            "--rate",
            "20000",
            "--duration",
            "1",
        ];
        if let Some(size) = size {
            args.extend(["--size", size]);
        }
        let report = gen_from_a(&tb, &args);
        assert_eq!(report["size"], want, "{dst}");
        assert_eq!(report["anchored_threads"], 1, "{dst}: {report}");
        let sent = report["packets"].as_u64().unwrap();
        let (got, ports) = rx.finish();
        let lost = xmit_errors(&tb) - errors_before;
        assert!(sent >= 4096, "{dst}: sent {sent}");
        assert_eq!(
            got + lost,
            sent,
            "{dst}: received {got}, veth refused {lost}, sent {sent}"
        );
        assert_eq!(
            udp_csum_errors(&tb),
            0,
            "{dst}: the kernel found bad checksums"
        );
        let want: HashSet<u16> = (1024..1040).collect();
        assert_eq!(ports, want, "{dst}: all 16 flows, source ports 1024-1039");
    }
}

/// `ethtool -S` of `veth_b`: the frames each RX queue's NAPI ran the XDP program on.
fn per_queue_xdp_packets(tb: &Testbed) -> Vec<u64> {
    let out = must(
        "ip",
        &["netns", "exec", &tb.ns_b, "ethtool", "-S", &tb.veth_b],
    );
    let mut q: Vec<(u32, u64)> = out
        .lines()
        .filter_map(|l| {
            let (name, v) = l.split_once(':')?;
            let n = name.trim().strip_prefix("rx_queue_")?;
            let (i, field) = n.split_once('_')?;
            (field == "xdp_packets").then_some((i.parse().ok()?, v.trim().parse().ok()?))
        })
        .collect();
    q.sort_unstable();
    q.into_iter().map(|(_, v)| v).collect()
}

/// On veth, XDP frames land on the RX queue numbered after the sending CPU: from one CPU, all
/// on one queue. `--sender packet` goes through the kernel's transmit path, which spreads the
/// flows over the queues by their hash, so one CPU feeds both queues of a 2-queue veth. Either
/// way every frame offered is matched by the program or counted as refused by veth (the packet
/// socket's refusals are veth's `tx dropped`, and the generator reports them); and the kernel
/// takes the packet socket's frames with good checksums, every flow's.
#[test]
fn the_packet_sender_feeds_every_queue_from_one_cpu() {
    let tb = Testbed::new(2);
    tb.attach("native");
    // Only the generator's frames reach the program.
    tb.sender_ipv4_only().unwrap();
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:9300"]);
    let mut matched_before = 0;
    for sender in ["xdp", "packet"] {
        let (queues_before, refused_before, xmit_before) = (
            per_queue_xdp_packets(&tb),
            tb.sender_tx_dropped(),
            xmit_errors(&tb),
        );
        // gen's only thread runs on CPU 0.
        let report = gen_from_a(
            &tb,
            &[
                "--dst",
                "198.18.0.2:9300",
                "--flows",
                "64",
                "--rate",
                "20000",
                "--duration",
                "1",
                "--sender",
                sender,
            ],
        );
        thread::sleep(Duration::from_millis(200));
        assert_eq!(report["sender"], sender, "{report}");
        let sent = report["packets"].as_u64().unwrap();
        let queues: Vec<u64> = per_queue_xdp_packets(&tb)
            .iter()
            .zip(&queues_before)
            .map(|(a, b)| a - b)
            .collect();
        // XDP frames veth refuses are its `xdp_xmit_errors`. The packet socket's are in its
        // `tx dropped`, which may also hold a frame of the peer kernel's own: the generator's
        // count (the kernel's answer to each frame) balances, and veth's must cover it.
        let refused = if sender == "xdp" {
            xmit_errors(&tb) - xmit_before
        } else {
            let counted = report["refused"].as_u64().unwrap();
            let dropped = tb.sender_tx_dropped() - refused_before;
            assert!(
                dropped >= counted,
                "veth dropped {dropped} < refused {counted}"
            );
            counted
        };
        let matched = tb.stats()["bindings"][0]["packets"].as_u64().unwrap();
        assert!(sent >= 4096, "{sender}: sent {sent}");
        assert_eq!(
            matched - matched_before + refused,
            sent,
            "{sender}: matched {matched} (before {matched_before}) + refused {refused} = sent {sent}"
        );
        matched_before = matched;
        assert_eq!(queues.len(), 2, "{queues:?}");
        if sender == "xdp" {
            assert_eq!(
                queues[1], 0,
                "xdp frames from CPU 0 reach queue 0 only: {queues:?}"
            );
        } else {
            // 64 flows hashed over two queues: each gets some (all on one: p = 2^-63).
            assert!(
                queues.iter().all(|&q| q > sent / 10),
                "the flows spread over both queues: {queues:?} of {sent}"
            );
        }
    }
    // The kernel's own socket on an unbound port: good checksums, every flow.
    let addr: SocketAddr = "198.18.0.2:9301".parse().unwrap();
    let rx = count_flows(&tb, addr);
    let dropped_before = tb.sender_tx_dropped();
    let report = gen_from_a(
        &tb,
        &[
            "--dst",
            "198.18.0.2:9301",
            "--flows",
            "16",
            "--size",
            "200",
            "--rate",
            "20000",
            "--duration",
            "1",
            "--sender",
            "packet",
        ],
    );
    let (got, ports) = rx.finish();
    let sent = report["packets"].as_u64().unwrap();
    let refused = report["refused"].as_u64().unwrap();
    assert!(
        tb.sender_tx_dropped() - dropped_before >= refused,
        "{report}"
    );
    assert_eq!(got + refused, sent, "received {got}, refused {refused}");
    assert_eq!(udp_csum_errors(&tb), 0, "the kernel found bad checksums");
    let want: HashSet<u16> = (1024..1040).collect();
    assert_eq!(ports, want, "all 16 flows, source ports 1024-1039");
}

#[test]
fn the_hit_ratio_holds() {
    let tb = Testbed::new(1);
    tb.attach("native");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:9200"]);
    let before = tb.stats();
    let report = gen_from_a(
        &tb,
        &[
            "--dst",
            "198.18.0.2:9200",
            "--miss-dst",
            "198.18.0.2:9201",
            "--hit-ratio",
            "0.25",
            "--rate",
            "40000",
            "--duration",
            "1",
        ],
    );
    let (sent, hits) = (
        report["packets"].as_u64().unwrap(),
        report["hits"].as_u64().unwrap(),
    );
    assert!((hits as f64 / sent as f64 - 0.25).abs() < 0.01, "{report}");
    thread::sleep(Duration::from_millis(200));
    let after = tb.stats();
    let matched = after["bindings"][0]["packets"].as_u64().unwrap();
    let misses = after["verdicts"]["pass_reasons"]["no_binding"]
        .as_u64()
        .unwrap()
        - before["verdicts"]["pass_reasons"]["no_binding"]
            .as_u64()
            .unwrap();
    let lost = xmit_errors(&tb);
    assert_eq!(
        matched + misses + lost,
        sent,
        "hits {matched} + misses {misses} + refused {lost}: {after}"
    );
    assert!(
        matched <= hits && hits - matched <= lost,
        "{report} vs {after}"
    );
}

/// The XDP links a process holds, from its file descriptors' fdinfo: (link id, ifindex).
fn xdp_links(pid: u32) -> Vec<(u64, u64)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut links = Vec::new();
    for fd in fds.flatten() {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if info.contains("link_type:\txdp")
            && let (Some(id), Some(ifindex)) = (field("link_id:"), field("ifindex:"))
        {
            links.push((id, ifindex));
        }
    }
    links.sort();
    links
}

#[test]
fn each_thread_keeps_its_program_attached_apart_and_a_killed_generator_leaves_nothing() {
    // Each sending thread holds its program in the kernel's XDP dispatcher by attaching it to
    // the loopback device (ifindex 1) of a namespace of its own — not to the test's devices —
    // and the kernel removes those attachments with the process, even when it is killed.
    let tb = Testbed::new(1);
    let mut child = std::process::Command::new(netdemux_bin())
        .args(gen_args(
            &tb,
            &[
                "--dst",
                "198.18.0.2:9300",
                "--rate",
                "20000",
                "--threads",
                "2",
                "--duration",
                "30",
            ],
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gen starts");
    let mut links = Vec::new();
    for _ in 0..100 {
        links = xdp_links(child.id());
        if links.len() == 2 {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let on_veth_a = must("ip", &["-n", &tb.ns_a, "link", "show", &tb.veth_a]);
    assert!(
        !on_veth_a.contains("xdp"),
        "nothing attached to the generator's interface"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert_eq!(links.len(), 2, "one attachment per thread: {links:?}");
    assert!(links.iter().all(|&(_, ifindex)| ifindex == 1), "{links:?}");
    let gone = |id: u64| {
        !run("bpftool", &["link", "show", "id", &id.to_string()])
            .status
            .success()
    };
    let mut left = links.clone();
    for _ in 0..100 {
        left.retain(|&(id, _)| !gone(id));
        if left.is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        left.is_empty(),
        "attachments outlived the process: {left:?}"
    );
}

#[test]
fn gen_refuses_bad_input() {
    let tb = Testbed::new(1);
    for (args, want) in [
        (
            vec!["--dst", "198.18.0.2:9100", "--size", "40"],
            "out of range",
        ),
        (
            vec!["--dst", "[2001:db8::2]:9100", "--size", "64"],
            "out of range",
        ),
        (
            vec!["--dst", "198.18.0.2:9100", "--hit-ratio", "0.5"],
            "needs --miss-dst",
        ),
        (
            vec!["--dst", "198.18.0.2:9100", "--rate", "fast"],
            "--rate takes",
        ),
        (
            vec!["--dst", "198.18.0.2:9100", "--flows", "0"],
            "--flows must be",
        ),
        (
            vec!["--dst", "198.18.0.2:9100", "--dst-mac", "zz"],
            "not a MAC address",
        ),
        (
            vec![
                "--dst",
                "198.18.0.2:9100",
                "--miss-dst",
                "[2001:db8::2]:1",
                "--hit-ratio",
                "0.5",
            ],
            "different address families",
        ),
    ] {
        let out = run(netdemux_bin(), &gen_args(&tb, &args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
