//! `cargo xtask bench echo`: UDP echo round-trip latency, netdemux `--udp-echo` versus the same
//! echo on a kernel socket, measured in one run.
//!
//! A kernel UDP client in the peer namespace sends one 32-byte datagram and waits for its answer,
//! `n` times, timing each round trip; the first 10% are a discarded warm-up. Three echoes are
//! timed, in 3 rounds each, in a random order per round, and the percentiles (p50, p99, p99.9,
//! max) are taken over all their samples: the kernel's, netdemux's, and the in-repo floor, a
//! bare AF_XDP reflector (the same socket code as a queue worker, no stack: it swaps the
//! addresses and transmits) — its ratio to the kernel's says how much of the round trip any
//! AF_XDP echo on this set-up can take off, the rest being the client's own kernel and veth.
//! All are pinned the same way: the client on CPU 0, the echo (the kernel echo's thread, the
//! worker, the bare reflector) on CPU 1. Default veth layout (no threaded NAPI), 1 queue.
//!
//! Each echo's median is also recorded per round: the rounds' spread is how far apart two echoes'
//! medians can be with nothing between them but the moment they ran.
//!
//! Everything is measured in two modes, every echo alike: *blocking* (the netdemux worker and
//! the bare reflector wait in poll(2), the kernel echo in recv) and *spinning* (the worker runs
//! `--spin`, the bare reflector spins the same way, the kernel echo spins on a non-blocking
//! socket): what a latency-critical service gives a core to. The client
//! blocks in recv in both (it stands for a peer elsewhere).
//!
//! Then open loop: one client thread sends datagrams carrying their send time on a fixed
//! schedule, never waiting for answers, and times the answers as they come. The capacity is the
//! answered rate of the slower echo with that client sending as fast as it can (what this client
//! on one core can drive); both echoes are then loaded at 10, 50 and 90% of it, in a random
//! order, and each load reports p50/p99/p99.9 and the answers missing, beside the losses the
//! kernel and the echo counted on the way (`path_losses`, `against`): datagrams and answers a
//! full socket receive buffer or a veth end dropped, answers the echo could not send.
//! Output: a markdown table and `bench/results/echo-latest.json`. Usage: echo [--quick]  (root)

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use netdemux::{
    test_rng::Xorshift64,
    testbed::{Daemon, Testbed, in_netns, kernel_counters, link, queue_sum, ring_drops},
};

mod support;

use support::{BareProgram, Wait, start_bare};

const BIN: &str = env!("CARGO_BIN_EXE_netdemux");
const DST: &str = "198.18.0.2:7000";

/// Round-trip times in microseconds for `n` ping-pongs from namespace a.
fn ping_pong(tb: &Testbed, n: usize) -> Result<Vec<f64>> {
    in_netns(&tb.ns_a, move || -> Result<Vec<f64>> {
        support::pin(0);
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(DST)?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buf = [0u8; 64];
        let payload = [0x5au8; 32];
        let mut rtts = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            sock.send(&payload)?;
            let len = sock.recv(&mut buf)?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
            if len != payload.len() {
                bail!("wrong answer length {len}");
            }
        }
        Ok(rtts.split_off(n / 10))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("client panicked"))?
}

/// A kernel UDP echo on DST in namespace b until `stop`: blocking in recv, or, `spin`, spinning
/// on a non-blocking socket. Counts in `unsent` the answers its socket refused (a full send
/// buffer: the spinning echo's non-blocking send fails instead of waiting).
fn kernel_echo(
    tb: &Testbed,
    spin: bool,
    stop: Arc<AtomicBool>,
    unsent: Arc<AtomicU64>,
) -> thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = in_netns(&tb.ns_b, move || {
        support::pin(1);
        let sock = UdpSocket::bind(DST).expect("bind the kernel echo");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock.set_nonblocking(spin).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf)
                && sock.send_to(&buf[..n], from).is_err()
            {
                unsent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    ready_rx.recv().expect("kernel echo ready");
    h
}

/// One open-loop load from namespace a: a 32-byte datagram (sequence number, send time) every
/// 1/`rate` s for `secs` (`rate` 0: as fast as the client goes), answers timed as they arrive,
/// one thread on CPU 0 spinning on a non-blocking socket. Returns the round trips in µs, the
/// datagrams sent and the seconds the sending took.
fn open_loop(tb: &Testbed, rate: f64, secs: f64) -> Result<(Vec<f64>, u64, f64)> {
    in_netns(&tb.ns_a, move || -> Result<(Vec<f64>, u64, f64)> {
        support::pin(0);
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(DST)?;
        sock.set_nonblocking(true)?;
        let (base, mut sent, mut rtts) = (Instant::now(), 0u64, Vec::new());
        let mut buf = [0u8; 64];
        let mut payload = [0u8; 32];
        let mut drain = |rtts: &mut Vec<f64>| {
            while let Ok(n) = sock.recv(&mut buf) {
                if n == 32 {
                    let t = u64::from_ne_bytes(buf[8..16].try_into().unwrap());
                    rtts.push((base.elapsed().as_nanos() as u64 - t) as f64 / 1e3);
                }
            }
        };
        let end = Duration::from_secs_f64(secs);
        loop {
            let now = base.elapsed();
            if now >= end {
                break;
            }
            let due = rate == 0.0 || now.as_secs_f64() * rate >= sent as f64;
            if due {
                payload[..8].copy_from_slice(&sent.to_ne_bytes());
                payload[8..16].copy_from_slice(&(now.as_nanos() as u64).to_ne_bytes());
                if sock.send(&payload).is_ok() {
                    sent += 1;
                }
            }
            drain(&mut rtts);
        }
        let took = base.elapsed().as_secs_f64();
        // Answers still in flight.
        let last = Instant::now();
        while last.elapsed() < Duration::from_millis(200) {
            drain(&mut rtts);
        }
        Ok((rtts, sent, took))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("open-loop client panicked"))?
}

/// An echo the client is timed against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The same echo on a kernel UDP socket.
    Kernel,
    /// `run --udp-echo`.
    Netdemux,
    /// The in-repo floor: the bare reflector (the queue worker's AF_XDP socket code, no stack:
    /// it swaps the addresses and transmits) behind the demultiplexer's parsing alone, which
    /// redirects every UDP frame and leaves the rest (ARP) to the kernel.
    Bare,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Side::Kernel => "kernel_us",
            Side::Netdemux => "netdemux_us",
            Side::Bare => "bare_reflector_us",
        }
    }
}

/// Runs `f` against one echo, blocking or (`spin`) spinning; with what `f` returns, the
/// datagrams the echo itself counted as lost while it ran (the kernel echo: answers its socket
/// refused; netdemux: its socket's drops, in-place answers a full TX ring dropped, answers with
/// no route or neighbour; the bare reflector: its socket's drops).
fn against<T>(
    tb: &Testbed,
    side: Side,
    spin: bool,
    f: impl FnOnce() -> Result<T>,
) -> Result<(T, u64)> {
    match side {
        Side::Kernel => {
            let (stop, unsent) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicU64::new(0)),
            );
            let h = kernel_echo(tb, spin, stop.clone(), unsent.clone());
            let r = f();
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
            Ok((r?, unsent.load(Ordering::Relaxed)))
        }
        Side::Netdemux => {
            let mut args = vec!["--udp-echo", DST, "--cpu", "1"];
            if spin {
                args.push("--spin");
            }
            let d = Daemon::start(tb, &args)?;
            let r = f();
            // The daemon counts from its start: its losses are the counters as it ends.
            let lost = tb.stats().map(|v| {
                ring_drops(&v)
                    + ["tx_dropped", "no_route", "unresolved"]
                        .iter()
                        .map(|c| queue_sum(&v, c))
                        .sum::<u64>()
            });
            d.stop()?;
            Ok((r?, lost?))
        }
        Side::Bare => {
            let wait = if spin { Wait::Spin } else { Wait::Poll };
            // The client's frame: Ethernet, IPv4 and UDP headers and the 32-byte payload.
            let count = Arc::new(AtomicU64::new(0));
            let bare = start_bare(tb, wait, (true, BareProgram::ParseRedirect), count, 74)?;
            let r = f();
            let lost = bare.drops.load(Ordering::Relaxed);
            bare.finish()?;
            Ok((r?, lost))
        }
    }
}

/// The losses the kernel counts on the echo's path, by place: datagrams a full socket receive
/// buffer dropped in each namespace (`UdpRcvbufErrors`: the client's socket, the kernel echo's),
/// and frames each veth end dropped (`ip -s link`, received and sent: a full peer ring or
/// backlog). Totals since the namespaces were made: the open loop takes their differences.
fn path_losses(tb: &Testbed) -> Result<[(&'static str, u64); 4]> {
    let socket = |ns: &str| kernel_counters(ns, &["UdpRcvbufErrors"]);
    let veth = |ns: &str, dev: &str| -> Result<u64> {
        let l = link(ns, dev)?;
        Ok(["rx", "tx"]
            .iter()
            .filter_map(|d| l["stats64"][d]["dropped"].as_u64())
            .sum())
    };
    Ok([
        ("client_socket", socket(&tb.ns_a)?),
        ("echo_namespace_sockets", socket(&tb.ns_b)?),
        ("veth_client_end", veth(&tb.ns_a, &tb.veth_a)?),
        ("veth_echo_end", veth(&tb.ns_b, &tb.veth_b)?),
    ])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 3_000 } else { 20_000 };
    if !nix::unistd::geteuid().is_root() {
        bail!("the echo benchmark creates namespaces: run it as root");
    }
    let tb = Testbed::new("nde", 1, BIN)?;
    // A random order per round (xorshift seeded from the clock), recorded in the results.
    let mut random = support::clock_seeded();
    let blocking = measure(&tb, false, n, quick, &mut random)?;
    let spinning = measure(&tb, true, n, quick, &mut random)?;
    drop(tb);
    let ratio = |m: &serde_json::Value, side: Side, p: &str| {
        m[side.key()][p].as_f64().unwrap_or(f64::NAN)
            / m["kernel_us"][p].as_f64().unwrap_or(f64::NAN)
    };
    // The bare reflector's: how far below the kernel's round trip an AF_XDP echo gets here at
    // all, the floor the goal's ratios are read against.
    let (ours, bare) = (Side::Netdemux, Side::Bare);
    let ratios = serde_json::json!({
        "echo_p50_vs_kernel": ratio(&blocking, ours, "p50"),
        "echo_p99_vs_kernel": ratio(&blocking, ours, "p99"),
        "echo_p50_vs_kernel_spinning": ratio(&spinning, ours, "p50"),
        "echo_p99_vs_kernel_spinning": ratio(&spinning, ours, "p99"),
        "bare_reflector_p50_vs_kernel": ratio(&blocking, bare, "p50"),
        "bare_reflector_p99_vs_kernel": ratio(&blocking, bare, "p99"),
        "bare_reflector_p50_vs_kernel_spinning": ratio(&spinning, bare, "p50"),
        "bare_reflector_p99_vs_kernel_spinning": ratio(&spinning, bare, "p99"),
    });
    // The blocking mode's figures at the top level, the spinning mode's under "spinning"; the
    // report titles each mode's tables with its line in "modes".
    let mut out = blocking;
    out["benchmark"] = "udp_echo_latency".into();
    out["quick"] = quick.into();
    out["provenance"] = netdemux::testbed::provenance(quick);
    out["pinning"] =
        "client on CPU 0; the kernel echo's thread, the netdemux worker and the bare reflector on CPU 1".into();
    out["modes"] = serde_json::json!({
        "blocking": "both blocking: the netdemux worker in poll(2), the kernel echo in recv",
        "spinning": "both spinning: the netdemux worker --spin, the kernel echo on a non-blocking socket",
    });
    out["ratios"] = ratios;
    out["spinning"] = spinning;
    println!("\nratios netdemux/kernel: {}", out["ratios"]);
    netdemux::testbed::write_results("echo", &out)?;
    Ok(())
}

/// Closed and open loop against both echoes in one mode (`spin`); prints the tables and returns
/// the figures.
fn measure(
    tb: &Testbed,
    spin: bool,
    n: usize,
    quick: bool,
    random: &mut Xorshift64,
) -> Result<serde_json::Value> {
    let mode = if spin { "spinning" } else { "blocking" };
    // Each echo's samples, and its median in each round.
    let mut samples: [(Side, Vec<f64>, Vec<f64>); 3] = [
        (Side::Kernel, Vec::new(), Vec::new()),
        (Side::Netdemux, Vec::new(), Vec::new()),
        (Side::Bare, Vec::new(), Vec::new()),
    ];
    let mut order = Vec::new();
    for _ in 0..3 {
        // A random order of the three (Fisher-Yates).
        let mut sides = [Side::Kernel, Side::Netdemux, Side::Bare];
        for i in (1..sides.len()).rev() {
            sides.swap(i, random.below(i + 1));
        }
        order.push(
            sides
                .iter()
                .map(|s| format!("{s:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(", "),
        );
        for side in sides {
            let (mut r, _) = against(tb, side, spin, || ping_pong(tb, n))?;
            r.sort_by(f64::total_cmp);
            if let Some((_, v, rounds)) = samples.iter_mut().find(|(s, ..)| *s == side) {
                rounds.push(percentile(&r, 0.5));
                v.extend(r);
            }
        }
    }
    // Open loop: the capacity this client drives, then 10/50/90% of it on both echoes.
    let secs = if quick { 1.0 } else { 2.0 };
    let mut capacity = f64::MAX;
    for side in [Side::Kernel, Side::Netdemux] {
        let ((rtts, _, took), _) = against(tb, side, spin, || open_loop(tb, 0.0, secs))?;
        capacity = capacity.min(rtts.len() as f64 / took);
    }
    let mut loads = Vec::new();
    for share in [0.1, 0.5, 0.9] {
        let rate = share * capacity;
        let mut sides = [Side::Kernel, Side::Netdemux];
        if random.next().is_multiple_of(2) {
            sides.reverse();
        }
        let mut load = serde_json::json!({"share": share, "rate_pps": rate});
        for side in sides {
            let before = path_losses(tb)?;
            let ((mut rtts, sent, _), echo_lost) =
                against(tb, side, spin, || open_loop(tb, rate, secs))?;
            let after = path_losses(tb)?;
            rtts.sort_by(f64::total_cmp);
            let missing = sent.saturating_sub(rtts.len() as u64);
            // Where the missing went, as counted: the echo's own count and the kernel's.
            let mut counted = serde_json::Map::new();
            counted.insert("echo".into(), echo_lost.into());
            for ((place, b), (_, a)) in before.iter().zip(&after) {
                counted.insert((*place).into(), a.saturating_sub(*b).into());
            }
            let p = |q: f64| {
                if rtts.is_empty() {
                    0.0
                } else {
                    percentile(&rtts, q)
                }
            };
            load[if side == Side::Kernel {
                "kernel"
            } else {
                "netdemux"
            }] = serde_json::json!({
                "sent": sent, "missing": missing,
                "counted_by_place": counted,
                "p50_us": p(0.5), "p99_us": p(0.99), "p99_9_us": p(0.999),
            });
        }
        loads.push(load);
    }
    println!(
        "Open loop, {mode}, capacity {:.0} datagrams/s (the slower echo, this client as fast as it goes):\n",
        capacity
    );
    println!("| load | echo | p50 (µs) | p99 (µs) | p99.9 (µs) | missing | counted lost |");
    println!("|---:|---|---:|---:|---:|---:|---|");
    for l in &loads {
        for side in ["kernel", "netdemux"] {
            let v = &l[side];
            println!(
                "| {:.0}% | {side} | {:.1} | {:.1} | {:.1} | {} of {} | {} |",
                l["share"].as_f64().unwrap_or(0.0) * 100.0,
                v["p50_us"].as_f64().unwrap_or(0.0),
                v["p99_us"].as_f64().unwrap_or(0.0),
                v["p99_9_us"].as_f64().unwrap_or(0.0),
                v["missing"],
                v["sent"],
                support::counted_cell(v)
            );
        }
    }
    println!();
    let mut result = serde_json::json!({
        "samples_each": samples[0].1.len(),
        "order": order,
        "open_loop": {"capacity_pps": capacity, "seconds_per_load": secs, "loads": loads},
    });
    println!(
        "UDP echo round trip, {mode}, 32-byte payload, kernel client in the peer namespace ({} samples each)\n",
        samples[0].1.len()
    );
    println!("| echo | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | p50 by round (µs) |");
    println!("|---|---:|---:|---:|---:|---|");
    for (side, v, rounds) in &mut samples {
        v.sort_by(f64::total_cmp);
        let (p50, p99, p999) = (
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 0.999),
        );
        let max = v.last().copied().unwrap_or(0.0);
        let name = match side {
            Side::Kernel => "kernel UDP socket",
            Side::Netdemux => "netdemux --udp-echo",
            Side::Bare => "bare AF_XDP reflector",
        };
        let by_round: Vec<String> = rounds.iter().map(|x| format!("{x:.1}")).collect();
        println!(
            "| {name} | {p50:.1} | {p99:.1} | {p999:.1} | {max:.1} | {} |",
            by_round.join(", ")
        );
        result[side.key()] = serde_json::json!({
            "p50": p50, "p99": p99, "p99_9": p999, "max": max, "p50_by_round": rounds,
        });
    }
    let r = |side: &str, p: &str| {
        result[side][p].as_f64().unwrap_or(f64::NAN)
            / result["kernel_us"][p].as_f64().unwrap_or(f64::NAN)
    };
    println!(
        "\nratios to the kernel echo, {mode}: netdemux p50 {:.2}, p99 {:.2}; bare reflector p50 {:.2}, p99 {:.2}\n",
        r("netdemux_us", "p50"),
        r("netdemux_us", "p99"),
        r("bare_reflector_us", "p50"),
        r("bare_reflector_us", "p99"),
    );
    Ok(result)
}
