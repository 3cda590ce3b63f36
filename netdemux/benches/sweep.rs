//! `cargo xtask bench sweep`: the UDP sink under a line-rate load across frame sizes and flow
//! counts, beside the bare AF_XDP consumer (the same socket code behind a redirect-everything
//! program) at every size — the busy-poll layout of `udp`: the generator alone on CPU 0, the
//! receiver on CPU 1, one veth queue. Every row accounts for every frame offered:
//! offered = received + the receiver's drops (RX ring full, no fill buffer) + the frames veth
//! refused to pass on (the sender's `xdp_xmit_errors`), checked per row. Then what a running
//! sink daemon takes in memory: its resident set, its UMEM and the pinned maps (as the kernel
//! charges them). Every sample records where the host had the two vCPUs while it ran
//! (`near_share`, `cross_core_ns`: `support::placement`, as in `udp`).
//!
//! Then 1 against 2 queues on the same CPUs (`queues`): the generator on CPU 0, and on CPU 1
//! everything that receives — the veth queues' NAPI threads (the pinned layout of `udp`) and
//! the sink's queue workers, waiting in poll(2) (two spinning workers on one core would take
//! turns by the scheduler's slices). XDP frames land on the RX queue numbered after the CPU
//! that sent them, so here the generator sends through a packet socket (`gen --sender
//! packet`: an skb per frame, and the kernel spreads the 64 flows over the queues by their
//! hash), into a 1-queue and a 2-queue veth, alternating. Each row gives what the sink
//! received and the receiving core's busy time per frame, and accounts for every frame:
//! offered = received + the socket's drops + the frames veth refused (the generator counts
//! them, from the kernel's answer to each; veth's `tx dropped` must cover that count — it also
//! counts the peer kernel's own frames it could not pass on).
//!
//! Output: a markdown table and `bench/results/sweep-latest.json`. Usage: sweep [--quick] (root)

use std::{
    fs,
    path::Path,
    sync::{Arc, atomic::AtomicU64, atomic::Ordering},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use netdemux::testbed::{Daemon, Testbed, cpu_busy, cpu_times, ring_drops};
use support::{
    BareProgram, Layout, napi_thread, pin_napi,
    placement::{Placement, Watch},
    start_bare,
};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_netdemux");
const DST: &str = "198.18.0.2:7000";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receiver {
    Sink,
    Bare,
}

impl Receiver {
    fn key(self) -> &'static str {
        match self {
            Receiver::Sink => "sink",
            Receiver::Bare => "bare_consumer",
        }
    }
}

/// One load: frame size on the wire and flows (source ports).
#[derive(Clone, Copy, Debug)]
struct Load {
    size: u32,
    flows: u32,
}

/// (received, receiver drops) so far.
fn counts(tb: &Testbed, r: Receiver, bare: Option<(&AtomicU64, &AtomicU64)>) -> Result<(u64, u64)> {
    if let (Receiver::Bare, Some((got, drops))) = (r, bare) {
        return Ok((got.load(Ordering::Relaxed), drops.load(Ordering::Relaxed)));
    }
    let v = tb.stats()?;
    Ok((
        v["services"][0]["packets"].as_u64().unwrap_or(0),
        ring_drops(&v),
    ))
}

fn offer(tb: &Testbed, load: Load, secs: f64) -> Result<serde_json::Value> {
    let (secs, size, flows) = (
        secs.to_string(),
        load.size.to_string(),
        load.flows.to_string(),
    );
    tb.generate(&[
        "--dst",
        DST,
        "--size",
        &size,
        "--flows",
        &flows,
        "--duration",
        &secs,
    ])
}

/// One measurement of `r` under `load`: rates and the frame accounting, and the placement
/// probe's bursts during the load.
fn sample(
    tb: &Testbed,
    r: Receiver,
    load: Load,
    secs: f64,
) -> Result<(serde_json::Value, Vec<f64>)> {
    let got = Arc::new(AtomicU64::new(0));
    let (mut daemon, mut bare) = (None, None);
    match r {
        Receiver::Sink => {
            daemon = Some(Daemon::start(
                tb,
                &["--udp-sink", DST, "--cpu", "1", "--busy-poll", "--spin"],
            )?)
        }
        Receiver::Bare => {
            // The descriptor holds the frame without its FCS.
            bare = Some(start_bare(
                tb,
                Layout::BusyPoll.wait(),
                (false, BareProgram::RedirectAll),
                got.clone(),
                load.size as usize - 4,
            )?)
        }
    }
    pin_napi(tb, Layout::BusyPoll)?;
    let bare_counts = bare.as_ref().map(|b| (&*got, &*b.drops));
    let before = (counts(tb, r, bare_counts)?, tb.veth_refusals()?);
    let watch = Watch::start();
    let g = offer(tb, load, secs);
    let bursts = watch.finish();
    let g = g?;
    // The receiver drains what is in flight.
    thread::sleep(Duration::from_millis(300));
    let after = (counts(tb, r, bare_counts)?, tb.veth_refusals()?);
    let memory = match &daemon {
        Some(d) => Some(memory(tb, d)?),
        None => None,
    };
    if let Some(d) = daemon {
        d.stop()?;
    }
    if let Some(b) = bare {
        b.finish()?;
    }
    let offered = g["packets"].as_u64().unwrap_or(0);
    let duration = g["duration_s"].as_f64().unwrap_or(secs);
    let received = after.0.0 - before.0.0;
    let drops = after.0.1 - before.0.1;
    let refused = after.1 - before.1;
    let mpps = received as f64 / duration / 1e6;
    Ok((
        serde_json::json!({
            "offered": offered,
            "offered_mpps": offered as f64 / duration / 1e6,
            "received": received,
            "received_mpps": mpps,
            "received_gbit_s": mpps * 1e6 * f64::from(load.size) * 8.0 / 1e9,
            "receiver_drops": drops,
            "veth_refusals": refused,
            "accounted": received + drops + refused == offered,
            "memory": memory,
        }),
        bursts,
    ))
}

/// What the sink daemon takes: resident set, UMEM (frames × frame size per queue) and the
/// pinned maps' memory as the kernel charges it (`memlock` in each map's fdinfo).
fn memory(tb: &Testbed, d: &Daemon) -> Result<serde_json::Value> {
    let status = fs::read_to_string(format!("/proc/{}/status", d.pid()))?;
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let umem = {
        let c = netdemux::xsk::XskConfig::default();
        u64::from(c.frames) * u64::from(c.frame_size)
    };
    let mut maps = 0u64;
    let dir = tb.pin_dir().join(&tb.veth_b);
    for (_, file) in netdemux::control::maps::PINNED_MAPS {
        maps += memlock(&dir.join(file))?;
    }
    Ok(serde_json::json!({"rss_bytes": rss_kib * 1024, "umem_bytes": umem, "map_bytes": maps}))
}

/// The `memlock` the kernel reports for the map pinned at `path`.
fn memlock(path: &Path) -> Result<u64> {
    use std::os::fd::AsRawFd as _;
    let fd = netdemux::control::sys::obj_get(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// One measurement of the sink on `tb` (a 1- or 2-queue veth) with every receiving thread on
/// CPU 1 and the packet-socket generator on CPU 0 (see the module's notes).
fn queue_sample(tb: &Testbed, secs: f64) -> Result<serde_json::Value> {
    let daemon = Daemon::start(tb, &["--udp-sink", DST, "--cpu", "1"])?;
    napi_thread(&tb.ns_b, &tb.veth_b, 1)?;
    let per_queue = |v: &serde_json::Value| -> Vec<u64> {
        v["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|q| q["rx"].as_u64().unwrap_or(0))
            .collect()
    };
    let read = || -> Result<(Vec<u64>, u64)> {
        let v = tb.stats()?;
        Ok((per_queue(&v), ring_drops(&v)))
    };
    let (before, dropped_before) = (read()?, tb.sender_tx_dropped()?);
    let (cpu_before, wall) = (cpu_times(), std::time::Instant::now());
    let g = tb.generate(&[
        "--dst",
        DST,
        "--size",
        "64",
        "--flows",
        "64",
        "--duration",
        &secs.to_string(),
        "--sender",
        "packet",
    ]);
    // The receiver drains what is in flight.
    thread::sleep(Duration::from_millis(300));
    let (busy, wall) = (cpu_busy(&cpu_before, &cpu_times()), wall.elapsed());
    let (after, dropped_after) = (read()?, tb.sender_tx_dropped()?);
    daemon.stop()?;
    let g = g?;
    let offered = g["packets"].as_u64().unwrap_or(0);
    let duration = g["duration_s"].as_f64().unwrap_or(secs);
    let queues: Vec<u64> = after.0.iter().zip(&before.0).map(|(a, b)| a - b).collect();
    let received: u64 = queues.iter().sum();
    let drops = after.1 - before.1;
    let refused = dropped_after - dropped_before;
    let gen_refused = g["refused"].as_u64().unwrap_or(0);
    let core_ns = busy.get(1).copied().unwrap_or(0.0) * wall.as_secs_f64() * 1e9;
    Ok(serde_json::json!({
        "offered": offered,
        "offered_mpps": offered as f64 / duration / 1e6,
        "received": received,
        "received_mpps": received as f64 / duration / 1e6,
        "received_per_queue": queues,
        "receiver_drops": drops,
        "veth_refusals": refused,
        "generator_refused": gen_refused,
        // The generator's count of its refused frames balances the equation; veth's own count
        // must cover it (it also counts the peer kernel's frames it could not pass on: a run
        // once had veth count one frame more than the generator, and every frame balanced).
        "accounted": received + drops + gen_refused == offered && refused >= gen_refused,
        "receiving_core_busy": busy.get(1),
        "receiving_core_ns_per_frame": core_ns / received.max(1) as f64,
    }))
}

/// The `queues` part: `reps` rounds of the 1-queue and the 2-queue veth, their order
/// alternating from round to round; the medians, and each round's 2-queue / 1-queue ratios.
fn queues(reps: usize, secs: f64) -> Result<serde_json::Value> {
    let beds = [Testbed::new("ndq", 1, BIN)?, Testbed::new("ndq", 2, BIN)?];
    for tb in &beds {
        tb.pin_neighbours()?;
        // Only the generator's frames, for exact accounting (see `main`).
        tb.sender_ipv4_only()?;
    }
    // Warm-up, discarded.
    queue_sample(&beds[0], 1.0)?;
    let mut samples: [Vec<serde_json::Value>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..reps {
        let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let s = queue_sample(&beds[i], secs)?;
            eprintln!("queues rep {} {} queue(s) {s}", rep + 1, i + 1);
            samples[i].push(s);
        }
    }
    drop(beds);
    let paired = |k: &str| -> Vec<f64> {
        samples[1]
            .iter()
            .zip(&samples[0])
            .filter_map(|(two, one)| Some(two[k].as_f64()? / one[k].as_f64()?))
            .collect()
    };
    let spread = |v: Vec<f64>| serde_json::json!(support::lowest_highest(v.into_iter()));
    let ratio = |k: &str| median_by(&samples[1], k) / median_by(&samples[0], k);
    let rows: Vec<serde_json::Value> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "queues": i + 1,
                "offered_mpps": median_by(s, "offered_mpps"),
                "received_mpps": median_by(s, "received_mpps"),
                "receiving_core_ns_per_frame": median_by(s, "receiving_core_ns_per_frame"),
                "receiving_core_busy": median_by(s, "receiving_core_busy"),
                "accounted": s.iter().all(|x| x["accounted"] == true),
                "samples": s,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "layout": "pinned",
        "sender": "packet",
        "repetitions": reps,
        "rows": rows,
        "ratios": {
            "received": ratio("received_mpps"),
            "receiving_core_ns_per_frame": ratio("receiving_core_ns_per_frame"),
        },
        "spreads": {
            "received": spread(paired("received_mpps")),
            "receiving_core_ns_per_frame": spread(paired("receiving_core_ns_per_frame")),
        },
    }))
}

fn median_by(v: &[serde_json::Value], k: &str) -> f64 {
    let mut x: Vec<f64> = v.iter().filter_map(|s| s[k].as_f64()).collect();
    x.sort_by(f64::total_cmp);
    x.get(x.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, reps) = if quick { (1.0, 1) } else { (2.0, 3) };
    if !nix::unistd::geteuid().is_root() {
        bail!("the sweep creates namespaces and loads BPF programs: run it as root");
    }
    let sizes: &[u32] = if quick {
        &[64, 512, 1518]
    } else {
        &[64, 128, 256, 512, 1024, 1518]
    };
    let mut rows: Vec<(Receiver, Load)> = Vec::new();
    for &size in sizes {
        for r in [Receiver::Sink, Receiver::Bare] {
            rows.push((r, Load { size, flows: 64 }));
        }
    }
    for flows in [1, 4096] {
        rows.push((Receiver::Sink, Load { size: 64, flows }));
    }
    let tb = Testbed::new("nds", 1, BIN)?;
    tb.pin_neighbours()?;
    // The generator's frames are to be the only ones offered, for the accounting to be exact:
    // the peer's own IPv6 (router solicitations, backing off to minutes apart) would reach the
    // bare consumer, whose program takes every frame, and a full ring drops them with the rest
    // (a row once counted two frames more than the generator sent). The sweep is IPv4 only.
    tb.sender_ipv4_only()?;
    let mut samples: Vec<Vec<serde_json::Value>> = vec![Vec::new(); rows.len()];
    // Where the host has the two vCPUs, recorded with every sample, as in `udp`.
    let mut placement = Placement::new();
    // Warm-up, discarded; then the rows interleaved, `reps` rounds.
    sample(
        &tb,
        Receiver::Sink,
        Load {
            size: 64,
            flows: 64,
        },
        1.0,
    )?;
    for rep in 1..=reps {
        for (i, &(r, load)) in rows.iter().enumerate() {
            let (mut s, bursts) = sample(&tb, r, load, secs)?;
            placement.record(&bursts, &mut s);
            eprintln!(
                "rep {rep} {:<14} {:>5} B {:>5} flows {s}",
                r.key(),
                load.size,
                load.flows
            );
            samples[i].push(s);
        }
    }
    drop(tb);
    let queue_reps = if quick { 1 } else { 5 };
    let queues = queues(queue_reps, secs)?;

    println!(
        "Load sweep: netdemux gen on CPU 0, receiver on CPU 1 (busy-poll), 1 veth queue; median of {reps}\n"
    );
    println!(
        "| receiver | frame B | flows | offered Mpps | received Mpps | Gbit/s | every frame accounted |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let mut out_rows = Vec::new();
    let mut unaccounted = 0;
    for ((r, load), s) in rows.iter().zip(&samples) {
        let all = s.iter().all(|x| x["accounted"] == true);
        unaccounted += usize::from(!all);
        let (o, m, g) = (
            median_by(s, "offered_mpps"),
            median_by(s, "received_mpps"),
            median_by(s, "received_gbit_s"),
        );
        println!(
            "| {} | {} | {} | {o:.2} | {m:.2} | {g:.2} | {} |",
            r.key(),
            load.size,
            load.flows,
            if all { "yes" } else { "NO" }
        );
        out_rows.push(serde_json::json!({
            "receiver": r.key(), "frame_bytes": load.size, "flows": load.flows,
            "offered_mpps": o, "received_mpps": m, "received_gbit_s": g,
            "accounted": all, "samples": s,
        }));
    }
    let memory = samples[0]
        .iter()
        .find_map(|s| s["memory"].as_object().cloned())
        .map(serde_json::Value::Object)
        .unwrap_or(serde_json::Value::Null);
    println!("\nsink daemon memory: {memory}");
    println!("{}", placement.report());
    println!(
        "\n1 against 2 queues on the same CPUs: gen --sender packet on CPU 0; NAPI threads and sink workers (poll) on CPU 1; median of {queue_reps}\n"
    );
    println!(
        "| queues | offered Mpps | received Mpps | receiving core ns per frame | every frame accounted |"
    );
    println!("|---:|---:|---:|---:|---|");
    for r in queues["rows"].as_array().into_iter().flatten() {
        let all = r["accounted"] == true;
        unaccounted += usize::from(!all);
        println!(
            "| {} | {:.3} | {:.3} | {:.0} | {} |",
            r["queues"],
            r["offered_mpps"].as_f64().unwrap_or(0.0),
            r["received_mpps"].as_f64().unwrap_or(0.0),
            r["receiving_core_ns_per_frame"].as_f64().unwrap_or(0.0),
            if all { "yes" } else { "NO" }
        );
    }
    println!(
        "2 queues / 1 queue: received {:.2}, receiving core ns per frame {:.2}",
        queues["ratios"]["received"].as_f64().unwrap_or(0.0),
        queues["ratios"]["receiving_core_ns_per_frame"]
            .as_f64()
            .unwrap_or(0.0)
    );
    let out = serde_json::json!({
        "benchmark": "sweep",
        "quick": quick,
        "provenance": netdemux::testbed::provenance(quick),
        "seconds_per_sample": secs,
        "repetitions": reps,
        "rows": out_rows,
        "memory": memory,
        "placement": placement.summary(),
        "queues": queues,
    });
    netdemux::testbed::write_results("sweep", &out)?;
    if unaccounted > 0 {
        bail!("{unaccounted} rows did not account for every frame offered (see the samples)");
    }
    Ok(())
}
