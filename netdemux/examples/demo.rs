//! The netdemux demo (`cargo xtask demo`): a veth testbed in two network namespaces; the XDP
//! program attached in native mode and two UDP socket addresses bound; `netdemux run` answering
//! them from AF_XDP sockets (`--udp-echo`, IPv4 and IPv6) and serving a TCP echo and HTTP on its
//! userspace TCP stack (IPv4 and IPv6); real clients in the peer namespace (kernel sockets,
//! socat, curl) checking every answer, while UDP to an unbound port, TCP to the kernel and ping
//! keep going to the kernel untouched; a live counter table every second; a summary that checks every answer and
//! every counter; and a clean teardown (also on Ctrl-C). Exits 0 only if every check passed.
//!
//! Usage: demo [--duration SECS]   (default 10; needs root)

use std::{
    collections::HashSet,
    io::{IsTerminal as _, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use netdemux::testbed::{Daemon, IP_B, IP6_B, Testbed, in_netns};

/// Counters of one client, shared with the summary.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    good: AtomicU64,
    bad: AtomicU64,
}

impl Tally {
    fn get(&self) -> (u64, u64, u64) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (l(&self.sent), l(&self.good), l(&self.bad))
    }
}

fn parse_duration() -> Result<u64> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(10),
        [flag, secs] if flag == "--duration" => match secs.parse::<u64>() {
            Ok(s) if s > 0 => Ok(s),
            _ => bail!("--duration needs a whole number of seconds (at least 1), got '{secs}'"),
        },
        _ => bail!("usage: demo [--duration SECS]"),
    }
}

fn netdemux_binary() -> Result<std::path::PathBuf> {
    // The demo is built next to the binary: target/<profile>/examples/demo -> target/<profile>/netdemux
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("netdemux"))
        .context("cannot locate the netdemux binary")?;
    if !bin.exists() {
        bail!(
            "{} is missing: build it first (cargo build -p netdemux)",
            bin.display()
        );
    }
    Ok(bin)
}

fn show(tb: &Testbed, args: &[&str]) -> Result<()> {
    println!("$ netdemux --netns {} {}", tb.ns_b, args.join(" "));
    print!("{}", tb.netdemux_ok(args)?);
    Ok(())
}

/// A client in namespace a that sends a numbered datagram to `dst`, waits for the answer and
/// checks it (same payload, from `dst`), about 500 times a second, until `stop`.
fn echo_client(
    tb: &Testbed,
    dst: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> thread::JoinHandle<()> {
    in_netns(&tb.ns_a, move || {
        let any: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .unwrap();
        let sock = UdpSocket::bind(any).expect("bind the echo client");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let payload = format!("seq:{seq} {}", "·".repeat((seq % 64) as usize));
            seq += 1;
            if sock.send_to(payload.as_bytes(), dst).is_err() {
                tally.bad.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            tally.sent.fetch_add(1, Ordering::Relaxed);
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if from == dst && &buf[..n] == payload.as_bytes() => {
                    tally.good.fetch_add(1, Ordering::Relaxed)
                }
                _ => tally.bad.fetch_add(1, Ordering::Relaxed),
            };
            thread::sleep(Duration::from_millis(2));
        }
    })
}

/// UDP to an unbound port: a sender in namespace a, a kernel socket in namespace b counting the
/// distinct datagrams it receives.
fn kernel_udp_flow(
    tb: &Testbed,
    dst: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Result<thread::JoinHandle<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_rx, tally_rx) = (stop.clone(), tally.clone());
    let receiver = in_netns(&tb.ns_b, move || {
        let sock = UdpSocket::bind(dst).expect("bind the kernel receiver");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut seen = HashSet::new();
        let mut buf = [0u8; 2048];
        let mut quiet_since = None;
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if seen.insert(buf[..n].to_vec()) {
                        tally_rx.good.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) if stop_rx.load(Ordering::Relaxed) => {
                    if quiet_since.get_or_insert_with(Instant::now).elapsed()
                        > Duration::from_millis(300)
                    {
                        return;
                    }
                }
                Err(_) => {}
            }
        }
    });
    ready_rx.recv()?;
    in_netns(&tb.ns_a, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if sock.send_to(format!("seq:{seq}").as_bytes(), dst).is_ok() {
                tally.sent.fetch_add(1, Ordering::Relaxed);
            }
            seq += 1;
            thread::sleep(Duration::from_millis(2));
        }
    });
    Ok(receiver)
}

/// A kernel TCP echo on `addr` in namespace b, and a client in namespace a that connects, sends
/// a line and checks the echo every 100 ms.
fn kernel_tcp_flow(
    tb: &Testbed,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Result<thread::JoinHandle<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    in_netns(&tb.ns_b, move || {
        let listener = TcpListener::bind(addr).expect("bind the kernel TCP echo");
        ready_tx.send(()).unwrap();
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 256];
            if let Ok(n) = conn.read(&mut buf) {
                let _ = conn.write_all(&buf[..n]);
            }
        }
    });
    ready_rx.recv()?;
    Ok(tcp_echo_client(tb, addr, stop, tally))
}

/// A network behind namespace a — 198.19.0.0/24 on its loopback, which namespace b reaches
/// through a — with a kernel TCP echo (198.19.0.1:9500) and UDP echo (198.19.0.1:5301) on it.
fn backends(tb: &Testbed) -> Result<()> {
    use netdemux::testbed::must;
    must(
        "ip",
        &["-n", &tb.ns_a, "addr", "add", "198.19.0.1/24", "dev", "lo"],
    )?;
    must(
        "ip",
        &[
            "-n",
            &tb.ns_b,
            "route",
            "add",
            "198.19.0.0/24",
            "via",
            "198.18.0.1",
        ],
    )?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    in_netns(&tb.ns_a, move || {
        let listener = TcpListener::bind("198.19.0.1:9500").expect("bind the TCP backend");
        let udp = UdpSocket::bind("198.19.0.1:5301").expect("bind the UDP backend");
        ready_tx.send(()).unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 256];
            if let Ok(n) = conn.read(&mut buf) {
                let _ = conn.write_all(&buf[..n]);
            }
        }
    });
    ready_rx.recv()?;
    Ok(())
}

/// A client in namespace a that connects to the TCP echo at `addr`, sends a line, closes its
/// side and checks the echo, every 100 ms.
fn tcp_echo_client(
    tb: &Testbed,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> thread::JoinHandle<()> {
    in_netns(&tb.ns_a, move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let msg = format!("hello {i}");
            i += 1;
            tally.sent.fetch_add(1, Ordering::Relaxed);
            let echoed = (|| -> std::io::Result<bool> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(msg.as_bytes())?;
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back)?;
                Ok(back == msg.as_bytes())
            })();
            match echoed {
                Ok(true) => tally.good.fetch_add(1, Ordering::Relaxed),
                _ => tally.bad.fetch_add(1, Ordering::Relaxed),
            };
            thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Runs `cmd` in namespace a every 200 ms, feeding it `input(i)` and counting an answer equal
/// to `expect(i)` as good (socat and curl as clients).
fn command_client(
    tb: &Testbed,
    cmd: Vec<String>,
    input: fn(u64) -> String,
    expect: fn(u64) -> String,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> thread::JoinHandle<()> {
    let ns = tb.ns_a.clone();
    thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tally.sent.fetch_add(1, Ordering::Relaxed);
            let run = || -> std::io::Result<String> {
                let mut child = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns])
                    .args(&cmd)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()?;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(input(i).as_bytes())?;
                }
                let out = child.wait_with_output()?;
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            };
            match run() {
                Ok(answer) if answer == expect(i) => tally.good.fetch_add(1, Ordering::Relaxed),
                _ => tally.bad.fetch_add(1, Ordering::Relaxed),
            };
            i += 1;
            thread::sleep(Duration::from_millis(200));
        }
    })
}

fn main() -> ExitCode {
    match demo() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<bool> {
    let duration = parse_duration()?;
    let bin = netdemux_binary()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        ctrlc::set_handler(move || interrupted.store(true, Ordering::Relaxed))
            .context("cannot install the Ctrl-C handler")?;
    }

    println!("== testbed: two network namespaces joined by a 2-queue veth pair");
    let tb = Testbed::new("ndd", 2, &bin)?;
    println!(
        "   {} ({}: 198.18.0.1, 2001:db8::1) <-> {} ({}: 198.18.0.2, 2001:db8::2)\n",
        tb.ns_a, tb.veth_a, tb.ns_b, tb.veth_b
    );

    println!(
        "== attach the XDP program and bind two UDP socket addresses, while the kernel keeps the rest"
    );
    show(&tb, &["attach", "--iface", &tb.veth_b, "--mode", "native"])?;
    for addr in ["198.18.0.2:7000", "[2001:db8::2]:7000"] {
        show(&tb, &["bind", "--iface", &tb.veth_b, "udp", addr])?;
    }
    println!(
        "\n== a network behind namespace a (198.19.0.0/24 on its loopback, routed through it) with\n   kernel echoes: the backends of two proxies"
    );
    backends(&tb)?;
    println!("\n== serve them from AF_XDP sockets, one per RX queue");
    let echo_args = [
        "--udp-echo",
        "198.18.0.2:7000",
        "--udp-echo",
        "[2001:db8::2]:7000",
        "--udp-sink",
        "198.18.0.2:9000",
        "--tcp-echo",
        "198.18.0.2:7100",
        "--tcp-echo",
        "[2001:db8::2]:7100",
        "--http",
        "198.18.0.2:8000",
        "--http",
        "[2001:db8::2]:8000",
        "--tcp-proxy",
        "198.18.0.2:8500=198.19.0.1:9500",
        "--udp-proxy",
        "198.18.0.2:5300=198.19.0.1:5301",
    ];
    println!(
        "$ netdemux --netns {} run --iface {} {}",
        tb.ns_b,
        tb.veth_b,
        echo_args.join(" ")
    );
    let daemon = Daemon::start(&tb, &echo_args)?;
    println!("   running (pid {})\n", daemon.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<(String, Arc<Tally>)> = [
        "udp 198.18.0.2:7000 (netdemux echo)",
        "udp [2001:db8::2]:7000 (netdemux echo)",
        "udp 198.18.0.2:7001 (not bound: kernel socket)",
        "tcp 198.18.0.2:8080 (not bound: kernel echo)",
        "tcp 198.18.0.2:7100 (netdemux tcp-echo, kernel client)",
        "tcp [2001:db8::2]:7100 (netdemux tcp-echo, socat)",
        "http 198.18.0.2:8000 (netdemux http, curl)",
        "http [2001:db8::2]:8000 (netdemux http, curl)",
        "tcp 198.18.0.2:8500 (netdemux tcp-proxy to a kernel echo behind a gateway)",
        "udp 198.18.0.2:5300 (netdemux udp-proxy to a kernel echo behind a gateway)",
    ]
    .iter()
    .map(|n| (n.to_string(), Arc::new(Tally::default())))
    .collect();
    let mut clients = vec![
        echo_client(
            &tb,
            SocketAddr::new(IpAddr::V4(IP_B), 7000),
            stop.clone(),
            tallies[0].1.clone(),
        ),
        echo_client(
            &tb,
            SocketAddr::new(IpAddr::V6(IP6_B), 7000),
            stop.clone(),
            tallies[1].1.clone(),
        ),
    ];
    let receiver = kernel_udp_flow(
        &tb,
        SocketAddr::new(IpAddr::V4(IP_B), 7001),
        stop.clone(),
        tallies[2].1.clone(),
    )?;
    clients.push(kernel_tcp_flow(
        &tb,
        SocketAddr::new(IpAddr::V4(IP_B), 8080),
        stop.clone(),
        tallies[3].1.clone(),
    )?);
    clients.push(tcp_echo_client(
        &tb,
        SocketAddr::new(IpAddr::V4(IP_B), 7100),
        stop.clone(),
        tallies[4].1.clone(),
    ));
    let words = |v: &[&str]| v.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    clients.push(command_client(
        &tb,
        words(&["socat", "-t", "2", "-", "TCP6:[2001:db8::2]:7100"]),
        |i| format!("hello over socat {i}\n"),
        |i| format!("hello over socat {i}\n"),
        stop.clone(),
        tallies[5].1.clone(),
    ));
    for (k, url) in [
        (6, "http://198.18.0.2:8000/"),
        (7, "http://[2001:db8::2]:8000/index.html"),
    ] {
        clients.push(command_client(
            &tb,
            words(&["curl", "-s", "--max-time", "2", url]),
            |_| String::new(),
            |_| "hello from netdemux\n".to_string(),
            stop.clone(),
            tallies[k].1.clone(),
        ));
    }
    clients.push(tcp_echo_client(
        &tb,
        "198.18.0.2:8500".parse()?,
        stop.clone(),
        tallies[8].1.clone(),
    ));
    clients.push(echo_client(
        &tb,
        "198.18.0.2:5300".parse()?,
        stop.clone(),
        tallies[9].1.clone(),
    ));
    let mut ping = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &tb.ns_a,
            "ping",
            "-q",
            "-i",
            "0.2",
            "-w",
            &duration.to_string(),
            "198.18.0.2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start ping")?;

    println!(
        "== traffic: UDP and TCP echo clients and curl on IPv4 and IPv6, UDP to an unbound port, TCP to a kernel echo, both proxies, ping"
    );
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let mut second = 0;
    while second < duration && !interrupted.load(Ordering::Relaxed) {
        let next = Duration::from_secs(second + 1);
        thread::sleep(next.saturating_sub(start.elapsed()));
        second += 1;
        let table = tb.netdemux_ok(&["stats", "--iface", &tb.veth_b])?;
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        let answered = tallies[0].1.get().1 + tallies[1].1.get().1;
        println!("-- netdemux demo [{second:>3}/{duration} s]  echoes answered {answered} --");
        println!("{table}");
        std::io::stdout().flush()?;
    }
    if interrupted.load(Ordering::Relaxed) {
        println!("interrupted: stopping traffic and cleaning up");
        let _ = ping.kill();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let _ = receiver.join();
    let ping_out = ping.wait_with_output().ok();
    thread::sleep(Duration::from_millis(100));

    // A line-rate burst into the sink: XDP live frames from the peer namespace.
    println!(
        "\n== a line-rate burst from netdemux gen (1 s at full speed) into the udp-sink: more than one\n   queue worker in copy mode can take, so some frames are dropped, and every one is counted"
    );
    let gen_args = ["--dst", "198.18.0.2:9000", "--duration", "1"];
    println!(
        "$ netdemux --netns {} gen --iface {} {} --json",
        tb.ns_a,
        tb.veth_a,
        gen_args.join(" ")
    );
    let burst = tb.generate(&gen_args)?;
    let offered = burst["packets"].as_u64().unwrap_or(0);
    println!(
        "   offered {offered} frames at {:.2} Mpps",
        burst["pps"].as_f64().unwrap_or(0.0) / 1e6
    );
    thread::sleep(Duration::from_millis(300));
    let xmit_errors = tb.veth_refusals()?;

    // Summary and checks.
    let stats = tb.stats()?;
    let veth_drops = tb.sender_tx_dropped()?;
    let mut ok = true;
    let mut check = |what: String, pass: bool| {
        println!("  [{}] {what}", if pass { " ok " } else { "FAIL" });
        ok &= pass;
    };
    println!("== summary");
    for (i, (name, t)) in tallies.iter().enumerate() {
        let (sent, good, bad) = t.get();
        match i {
            0 | 1 => check(
                format!("{name}: {sent} sent, {good} answered correctly, {bad} wrong or missing"),
                sent > 0 && good == sent && bad == 0,
            ),
            2 => check(
                format!(
                    "{name}: {sent} sent, {good} received, {veth_drops} dropped by veth before XDP"
                ),
                good > 0 && good + veth_drops >= sent,
            ),
            _ => check(
                format!("{name}: {good} of {sent} correct"),
                good > 0 && bad == 0,
            ),
        }
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let queue_sum = |field| netdemux::testbed::queue_sum(&stats, field);
    let services_sum = |kind: &str, field: &str| -> u64 {
        stats["services"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter(|x| x["kind"] == kind)
                    .map(|x| n(&x[field]))
                    .sum()
            })
            .unwrap_or(0)
    };
    let service = |kind: &str| services_sum(kind, "packets");
    // The queues' `tx` counts every frame sent (TCP segments too): the echoes' answers are the
    // datagrams they took less the ones they did not answer.
    let (echo_served, sunk) = (service("udp-echo"), service("udp-sink"));
    let answered = echo_served - services_sum("udp-echo", "unanswered");
    let ring_drops = netdemux::testbed::ring_drops(&stats);
    let tcp_segments = service("tcp-echo") + service("http");
    let tcp = |name: &str| -> u64 {
        stats["queues"]
            .as_array()
            .map(|q| q.iter().map(|x| n(&x["tcp"][name])).sum())
            .unwrap_or(0)
    };
    check(
        format!(
            "the TCP services: {} connections opened, {} closed, {} open now, {} segments received, {} resets sent",
            tcp("opened"),
            tcp("closed"),
            tcp("open"),
            tcp_segments,
            tcp("resets_sent")
        ),
        tcp("opened") > 0 && tcp("open") == 0 && tcp("resets_sent") == 0,
    );
    let echoed = tallies[0].1.get().0 + tallies[1].1.get().0;
    check(
        format!(
            "the echo services got {echo_served} datagrams and sent {answered} answers; the clients sent {echoed}"
        ),
        echo_served == echoed && answered == echoed,
    );
    check(
        format!(
            "the burst: {offered} offered = {sunk} counted by the sink + {ring_drops} ring drops + {xmit_errors} veth refusals"
        ),
        offered > 0 && sunk + ring_drops + xmit_errors == offered,
    );
    let served = echo_served + sunk + tcp_segments;
    let v = &stats["verdicts"];
    check(
        format!(
            "conservation: seen {} = passed {} + redirected {} + redirect_failed {}",
            n(&v["seen"]),
            n(&v["passed"]),
            n(&v["redirected"]),
            n(&v["redirect_failed"])
        ),
        n(&v["seen"]) == n(&v["passed"]) + n(&v["redirected"]) + n(&v["redirect_failed"]),
    );
    let (received, unclaimed) = (queue_sum("rx"), queue_sum("unclaimed"));
    check(
        format!(
            "every redirected frame reached a queue worker or a counted drop: {} = {received} + {ring_drops}; of those, {served} to the built-in services, the rest to the proxies, {unclaimed} unclaimed",
            n(&v["redirected"])
        ),
        n(&v["redirected"]) == received + ring_drops && unclaimed == 0 && served < received,
    );
    for p in stats["proxies"].as_array().into_iter().flatten() {
        check(
            format!(
                "{} {} -> {}: {} accepted, {} failed, {} resets, {} bytes up, {} down",
                p["kind"].as_str().unwrap_or(""),
                p["listen"].as_str().unwrap_or(""),
                p["backend"].as_str().unwrap_or(""),
                n(&p["accepted"]),
                n(&p["failed"]),
                n(&p["resets"]),
                n(&p["up_bytes"]),
                n(&p["down_bytes"])
            ),
            n(&p["accepted"]) > 0 && n(&p["failed"]) == 0 && n(&p["resets"]) == 0,
        );
    }
    let ping_summary = ping_out
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("transmitted"))
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    check(
        format!("ping 198.18.0.2: {ping_summary}"),
        ping_summary.contains(" 0% packet loss"),
    );

    println!("== teardown");
    println!(
        "$ kill -TERM {}  (the sockets leave the XSKMAP first: traffic falls back to the kernel)",
        daemon.pid()
    );
    let status = daemon.stop()?;
    check(
        format!("the daemon exited cleanly ({status})"),
        status.success(),
    );
    show(&tb, &["detach", "--iface", &tb.veth_b])?;
    drop(tb);
    println!("   namespaces and veth pair removed");
    println!("{}", if ok { "demo OK" } else { "demo FAILED" });
    Ok(ok)
}
