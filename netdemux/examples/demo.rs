//! The netdemux demo (`cargo xtask demo`): a veth testbed in two network namespaces, the XDP
//! program attached in native mode, bindings made live, real kernel traffic from the peer
//! namespace, a live counter table every second, a summary that checks every answer, and a
//! clean teardown (also on Ctrl-C). Exits 0 only if every check passed.
//!
//! No AF_XDP socket runs yet, so matched packets show up as `redirect_failed` and fall back to
//! the kernel, which must still receive all of them.
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
use netdemux::testbed::{IP_B, IP6_B, Testbed, in_netns};

const UDP_RATE_PPS: u64 = 1000;

struct Flow {
    name: &'static str,
    dst: SocketAddr,
    bound: bool,
    sent: Arc<AtomicU64>,
    received: thread::JoinHandle<HashSet<u64>>,
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

/// A kernel UDP socket in namespace b collecting the sequence numbers it receives until `stop`.
fn kernel_udp_receiver(
    tb: &Testbed,
    dst: SocketAddr,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<HashSet<u64>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = in_netns(&tb.ns_b, move || {
        let sock = UdpSocket::bind(dst).expect("bind the kernel receiver");
        let _ =
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20));
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut got = HashSet::new();
        let mut buf = [0u8; 2048];
        let mut idle_since_stop = None;
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if let Some(seq) = std::str::from_utf8(&buf[..n])
                        .ok()
                        .and_then(|s| s.strip_prefix("seq:"))
                        .and_then(|s| s.parse().ok())
                    {
                        got.insert(seq);
                    }
                }
                Err(_) if stop.load(Ordering::Relaxed) => {
                    // Drain stragglers for a moment after the senders stop.
                    let since = *idle_since_stop.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(300) {
                        return got;
                    }
                }
                Err(_) => {}
            }
        }
    });
    ready_rx.recv().expect("receiver ready");
    handle
}

fn udp_sender(tb: &Testbed, dst: SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    in_netns(&tb.ns_a, move || {
        let any: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .unwrap();
        let sock = UdpSocket::bind(any).unwrap();
        let start = Instant::now();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // Paced: the target count grows with time; send up to it in small bursts.
            let due = start.elapsed().as_millis() as u64 * UDP_RATE_PPS / 1000;
            while seq < due {
                if sock.send_to(format!("seq:{seq}").as_bytes(), dst).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
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

    println!("== attach and bind, while the kernel keeps serving everything else");
    show(&tb, &["attach", "--iface", &tb.veth_b, "--mode", "native"])?;
    for (proto, addr) in [
        ("udp", "198.18.0.2:7000"),
        ("udp", "[2001:db8::2]:7000"),
        ("tcp", "198.18.0.2:8080"),
    ] {
        show(&tb, &["bind", "--iface", &tb.veth_b, proto, addr])?;
    }
    show(&tb, &["list", "--iface", &tb.veth_b])?;
    println!();

    // Kernel services in namespace b, clients in namespace a.
    let stop = Arc::new(AtomicBool::new(false));
    let mut flows = Vec::new();
    for (name, dst, bound) in [
        (
            "udp 198.18.0.2:7000 (bound)",
            SocketAddr::new(IpAddr::V4(IP_B), 7000),
            true,
        ),
        (
            "udp [2001:db8::2]:7000 (bound)",
            SocketAddr::new(IpAddr::V6(IP6_B), 7000),
            true,
        ),
        (
            "udp 198.18.0.2:7001 (not bound)",
            SocketAddr::new(IpAddr::V4(IP_B), 7001),
            false,
        ),
    ] {
        let received = kernel_udp_receiver(&tb, dst, stop.clone());
        let sent = Arc::new(AtomicU64::new(0));
        udp_sender(&tb, dst, stop.clone(), sent.clone());
        flows.push(Flow {
            name,
            dst,
            bound,
            sent,
            received,
        });
    }
    let tcp_addr = SocketAddr::new(IpAddr::V4(IP_B), 8080);
    let (tcp_ok, tcp_bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    in_netns(&tb.ns_b, move || {
        let listener = TcpListener::bind(tcp_addr).expect("bind the kernel TCP echo");
        ready_tx.send(()).unwrap();
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = [0u8; 256];
            if let Ok(n) = conn.read(&mut buf) {
                let _ = conn.write_all(&buf[..n]);
            }
        }
    });
    ready_rx.recv()?;
    let tcp_client = {
        let (stop, ok, bad) = (stop.clone(), tcp_ok.clone(), tcp_bad.clone());
        in_netns(&tb.ns_a, move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let msg = format!("hello {i}");
                let echoed = (|| -> std::io::Result<bool> {
                    let mut s = TcpStream::connect_timeout(&tcp_addr, Duration::from_secs(2))?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.write_all(msg.as_bytes())?;
                    let mut back = vec![0u8; msg.len()];
                    s.read_exact(&mut back)?;
                    Ok(back == msg.as_bytes())
                })();
                match echoed {
                    Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let ping = std::process::Command::new("ip")
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
        "== traffic: {UDP_RATE_PPS} datagrams/s per UDP flow, a TCP echo every 100 ms, ping every 200 ms"
    );
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let mut second = 0;
    while second < duration && !interrupted.load(Ordering::Relaxed) {
        thread::sleep(
            Duration::from_secs(1)
                .saturating_sub(start.elapsed().saturating_sub(Duration::from_secs(second))),
        );
        second += 1;
        let table = tb.netdemux_ok(&["stats", "--iface", &tb.veth_b])?;
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        let sent: u64 = flows.iter().map(|f| f.sent.load(Ordering::Relaxed)).sum();
        println!(
            "-- netdemux demo [{second:>3}/{duration} s]  datagrams sent {sent}, tcp echoes {} --",
            tcp_ok.load(Ordering::Relaxed)
        );
        println!("{table}");
        std::io::stdout().flush()?;
    }
    if interrupted.load(Ordering::Relaxed) {
        println!("interrupted: stopping traffic and cleaning up");
    }

    stop.store(true, Ordering::Relaxed);
    let _ = tcp_client.join();
    let mut ping = ping;
    if interrupted.load(Ordering::Relaxed) {
        let _ = ping.kill();
    }
    let ping_out = ping.wait_with_output().ok();
    thread::sleep(Duration::from_millis(100));

    // Summary and checks.
    let stats = tb.stats()?;
    let veth_drops = tb.sender_tx_dropped()?;
    let mut ok = true;
    let mut check = |what: String, pass: bool| {
        println!("  [{}] {what}", if pass { " ok " } else { "FAIL" });
        ok &= pass;
    };
    println!(
        "== summary (veth dropped {veth_drops} frames on the sender before XDP, counted by the kernel)"
    );
    let mut sent_total = 0;
    let mut received_total = 0;
    for f in flows {
        let sent = f.sent.load(Ordering::Relaxed);
        let got = f.received.join().map(|s| s.len() as u64).unwrap_or(0);
        sent_total += sent;
        received_total += got;
        let counted = stats["bindings"]
            .as_array()
            .and_then(|b| {
                b.iter().find(|b| {
                    format!(
                        "{} {}",
                        b["proto"].as_str().unwrap_or(""),
                        b["addr"].as_str().unwrap_or("")
                    ) == format!("udp {}", f.dst)
                })
            })
            .and_then(|b| b["packets"].as_u64());
        match (f.bound, counted) {
            (true, Some(c)) => check(
                format!(
                    "{}: sent {sent}, the kernel received {got}, netdemux matched {c} (all fell back to the kernel)",
                    f.name
                ),
                c == got && got > 0,
            ),
            (true, None) => check(format!("{}: binding missing from stats", f.name), false),
            (false, _) => check(
                format!(
                    "{}: sent {sent}, the kernel received {got}, not matched",
                    f.name
                ),
                got > 0,
            ),
        }
    }
    check(
        format!(
            "every datagram arrived or was a counted veth drop: {received_total} + {veth_drops} = {sent_total}"
        ),
        received_total + veth_drops == sent_total,
    );
    let (tcp_good, tcp_fail) = (
        tcp_ok.load(Ordering::Relaxed),
        tcp_bad.load(Ordering::Relaxed),
    );
    check(
        format!(
            "tcp 198.18.0.2:8080 (bound, no socket): {tcp_good} echoes correct, {tcp_fail} failed"
        ),
        tcp_good > 0 && tcp_fail == 0,
    );
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
    let v = &stats["verdicts"];
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    check(
        format!(
            "conservation: seen {} = passed {} + redirected {} + redirect_failed {}",
            n("seen"),
            n("passed"),
            n("redirected"),
            n("redirect_failed")
        ),
        n("seen") == n("passed") + n("redirected") + n("redirect_failed"),
    );

    println!("== teardown");
    show(&tb, &["detach", "--iface", &tb.veth_b])?;
    drop(tb);
    println!("   namespaces and veth pair removed");
    println!("{}", if ok { "demo OK" } else { "demo FAILED" });
    Ok(ok)
}
