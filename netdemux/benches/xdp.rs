//! `cargo xtask bench xdp`: the per-packet cost of the demultiplexer, measured in the kernel with
//! BPF_PROG_TEST_RUN (`repeat` runs, the kernel reports the average ns per run), for a hit and a
//! miss at growing binding-table sizes, beside an empty `return XDP_PASS` program measured in the
//! same run and interleaved with it. Each figure is the median of several repetitions.
//!
//! A hit is measured as in service: an AF_XDP socket (bound to a veth queue in a testbed) sits in
//! the XSKMAP, so `bpf_redirect_map` finds it and the program counts a redirect; and over 16
//! bound addresses, each with its own frame, so the figure is not one hot entry. Two kinds of
//! hit: to the only binding on its port (matched through the port entry, no hashing — the
//! common case) and to a port two addresses share (a hash lookup in a table of the given size:
//! the figure the table's growth can move). The direct hit with no socket behind it (the
//! fallback to XDP_PASS) is reported beside them, and so is the program that redirects every
//! frame without looking at it (the bare receivers' program) over the same frames: the hit's
//! cost above it is what the demultiplexing itself costs. A miss goes to a port with nothing
//! bound.
//! Differences to the empty program are reported in ns, with the spread (lowest to highest
//! repetition).
//!
//! Output: a markdown table on stdout and `bench/results/xdp-latest.json`.
//! Usage: xdp [--quick]   (root)

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use netdemux::{
    control::{binding::Binding, maps::DemuxMaps, object},
    testbed::{Testbed, in_netns},
    xsk::{XskConfig, XskSocket},
};
use netdemux_common::program_names;

struct Config {
    sizes: Vec<u32>,
    repeat: u32,
    reps: usize,
}

/// A 64-byte Ethernet/IPv4/UDP frame 198.18.0.1:40000 -> 198.18.0.2:`port`.
fn frame(port: u16) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    let (src, dst) = (
        ([198, 18, 0, 1], 40000).into(),
        ([198, 18, 0, 2], port).into(),
    );
    let n = netdemux::wire::udp::emit(
        &mut f,
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        src,
        dst,
        &[0xab; 22],
    )
    .expect("a 64-byte frame");
    assert_eq!(n, 64);
    f
}

/// The `i`-th filler binding: udp 198.18.x.y:(10000 + i % 1000), never the measured ports.
fn filler(i: u32) -> Binding {
    let host = 0x00_12_00_00u32 + 3 + i / 1000; // within 198.18.0.0/15
    let ip = std::net::Ipv4Addr::new(198, (host >> 16) as u8, (host >> 8) as u8, host as u8);
    Binding {
        proto: netdemux::control::binding::Proto::Udp,
        addr: std::net::SocketAddr::new(ip.into(), 10_000 + (i % 1000) as u16),
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_netdemux");
/// Bound addresses whose hits are measured: 198.18.0.2:7000..7016, each the only binding on
/// its port, and 198.18.0.2:7100..7116, each port shared with 198.18.0.3.
const MEASURED: u16 = 16;
/// The first port of the shared ones.
const SHARED: u16 = 7100;

/// The average ns per run of `prog` over `frames`, `repeat` runs in all, split evenly; every run
/// must end in `verdict`.
fn ns_over(prog: &Xdp, frames: &[Vec<u8>], repeat: u32, verdict: u32) -> Result<f64> {
    let each = (repeat / frames.len() as u32).max(1);
    let mut sum = 0.0;
    for f in frames {
        sum += ns_per_run_verdict(prog, f, each, verdict)?;
    }
    Ok(sum / frames.len() as f64)
}

/// A loaded object with the demultiplexer and a table of `size` bindings: the measured ones
/// and fillers (in the hash table only: they are never hit, they only fill it).
fn table(size: u32) -> Result<(aya::Ebpf, DemuxMaps)> {
    let measured = 3 * u32::from(MEASURED);
    let mut ebpf = object::open(size + measured)?;
    let mut maps = DemuxMaps::take(&mut ebpf, None)?;
    object::load_demux(&mut ebpf)?;
    for i in 0..MEASURED {
        maps.bind(&Binding::parse("udp", &format!("198.18.0.2:{}", 7000 + i))?)?;
        for host in [2, 3] {
            maps.bind(&Binding::parse(
                "udp",
                &format!("198.18.0.{host}:{}", SHARED + i),
            )?)?;
        }
    }
    for i in 1..size.saturating_sub(measured - 1) {
        maps.binds[0].insert(filler(i).key(), 0, 0)?;
    }
    Ok((ebpf, maps))
}

fn ns_per_run(prog: &Xdp, data: &[u8], repeat: u32) -> Result<f64> {
    ns_per_run_verdict(prog, data, repeat, 2)
}

fn ns_per_run_verdict(prog: &Xdp, data: &[u8], repeat: u32, verdict: u32) -> Result<f64> {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(data),
            repeat,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    if r.return_value != verdict {
        bail!("unexpected verdict {} (wanted {verdict})", r.return_value);
    }
    Ok(r.duration.as_nanos() as f64)
}

/// The empty program and the demultiplexer of a loaded object.
fn progs(ebpf: &aya::Ebpf) -> Result<(&Xdp, &Xdp)> {
    Ok((
        ebpf.program(program_names::PASS).unwrap().try_into()?,
        ebpf.program(program_names::DEMUX).unwrap().try_into()?,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = if quick {
        Config {
            sizes: vec![16, 1_000, 100_000],
            repeat: 1_000_000,
            reps: 3,
        }
    } else {
        Config {
            sizes: vec![16, 1_000, 100_000, 1_000_000],
            repeat: 5_000_000,
            reps: 5,
        }
    };
    if !nix::unistd::geteuid().is_root() {
        bail!("the XDP benchmark loads BPF programs: run it as root (cargo xtask bench xdp)");
    }
    // One core, so the per-run figures are not averaged across CPUs with different load.
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(1).ok();
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus);

    // An AF_XDP socket on a veth queue, for the XSKMAP of every object (a socket may sit in
    // several maps).
    let tb = Testbed::new("ndx", 1, BIN)?;
    let veth = tb.veth_b.clone();
    let sock = in_netns(&tb.ns_b, move || -> Result<XskSocket> {
        let ifindex = netdemux::control::iface::Interface::link(&veth)?.ifindex()?;
        Ok(XskSocket::open(ifindex, 0, &XskConfig::default())?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("socket thread panicked"))??;
    let sock_fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&sock));

    // One object per table size, so every configuration can be measured interleaved.
    let hit = frame(7000);
    let hits: Vec<Vec<u8>> = (0..MEASURED).map(|i| frame(7000 + i)).collect();
    let shared_hits: Vec<Vec<u8>> = (0..MEASURED).map(|i| frame(SHARED + i)).collect();
    let miss = frame(6999);
    let mut setups = Vec::new();
    for &size in &cfg.sizes {
        let t = Instant::now();
        let (mut ebpf, maps) = table(size)?;
        object::load_program(&mut ebpf, program_names::PASS)?;
        eprintln!(
            "table of {size} bindings filled in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        setups.push((size, ebpf, maps));
    }
    // Objects whose XSKMAP holds the socket: hits are redirected, as in service.
    let mut with_socket = Vec::new();
    for (size, _, _) in &setups {
        let (mut ebpf, mut maps) = table(*size)?;
        object::load_program(&mut ebpf, program_names::REDIRECT_ALL)?;
        maps.xsks.set(0, sock_fd, 0)?;
        with_socket.push((ebpf, maps));
    }
    // Warm-up (discarded): about a second of runs over every configuration.
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < 1.0 {
        for (_, ebpf, _) in &setups {
            let (empty, demux) = progs(ebpf)?;
            ns_per_run(empty, &hit, cfg.repeat / 10)?;
            ns_per_run(demux, &hit, cfg.repeat / 10)?;
            ns_per_run(demux, &miss, cfg.repeat / 10)?;
        }
    }
    let mut samples = vec![(Vec::new(), Vec::new(), Vec::new(), Vec::new()); setups.len()];
    let mut shared_samples = vec![Vec::new(); setups.len()];
    let mut bare_samples = vec![Vec::new(); setups.len()];
    for _ in 0..cfg.reps {
        for (i, (_, ebpf, _)) in setups.iter().enumerate() {
            let (empty, demux) = progs(ebpf)?;
            let redirecting: &Xdp = with_socket[i]
                .0
                .program(program_names::DEMUX)
                .unwrap()
                .try_into()?;
            samples[i].0.push(ns_per_run(empty, &hit, cfg.repeat)?);
            samples[i]
                .1
                .push(ns_over(redirecting, &hits, cfg.repeat, 4)?);
            shared_samples[i].push(ns_over(redirecting, &shared_hits, cfg.repeat, 4)?);
            let bare: &Xdp = with_socket[i]
                .0
                .program(program_names::REDIRECT_ALL)
                .unwrap()
                .try_into()?;
            bare_samples[i].push(ns_over(bare, &hits, cfg.repeat, 4)?);
            samples[i].2.push(ns_per_run(demux, &miss, cfg.repeat)?);
            samples[i].3.push(ns_over(demux, &hits, cfg.repeat, 2)?);
        }
    }

    println!(
        "XDP per-packet cost, BPF_PROG_TEST_RUN repeat={} (median of {}, interleaved), 64-byte UDP/IPv4 frame",
        cfg.repeat, cfg.reps
    );
    println!(
        "\n| bindings | empty (ns) | redirect-all (ns) | hit (ns) | hit, shared port (ns) | hit, no socket (ns) | miss (ns) | hit − empty (ns, spread) | shared − empty (ns) | hit − redirect-all (ns) | miss − empty (ns) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for (i, ((((size, _, _), (e, h, m, hn)), hs), rb)) in setups
        .iter()
        .zip(samples)
        .zip(shared_samples)
        .zip(bare_samples)
        .enumerate()
    {
        let shared_diff = median(hs.iter().zip(&e).map(|(h, e)| h - e).collect());
        let over_bare = median(h.iter().zip(&rb).map(|(h, b)| h - b).collect());
        let rb = median(rb);
        // The difference per repetition (both sides measured back to back), then its median.
        let diffs: Vec<f64> = h.iter().zip(&e).map(|(h, e)| h - e).collect();
        let (lo, hi) = (
            diffs.iter().copied().fold(f64::MAX, f64::min),
            diffs.iter().copied().fold(f64::MIN, f64::max),
        );
        let d = median(diffs);
        let (e, h, m, hn, hs) = (median(e), median(h), median(m), median(hn), median(hs));
        println!(
            "| {size} | {e:.0} | {rb:.0} | {h:.0} | {hs:.0} | {hn:.0} | {m:.0} | {d:.1} ({lo:.0}–{hi:.0}) | {shared_diff:.1} | {over_bare:.1} | {:.1} |",
            m - e
        );
        let redirected = with_socket[i]
            .1
            .binding_stats()?
            .iter()
            .filter(|(b, _)| b.addr.port() >= 7000)
            .map(|(_, s)| s.packets)
            .sum::<u64>();
        rows.push(serde_json::json!({
            "bindings": size, "empty_ns": e, "hit_ns": h, "hit_no_socket_ns": hn, "miss_ns": m,
            "hit_shared_ns": hs, "hit_shared_minus_empty_ns": shared_diff,
            "redirect_all_ns": rb, "hit_minus_redirect_all_ns": over_bare,
            "hit_minus_empty_ns": d, "hit_minus_empty_spread_ns": [lo, hi],
            "hit_vs_empty": h / e, "miss_vs_empty": m / e, "hit_binding_packets": redirected,
        }));
    }
    drop(with_socket);
    drop(sock);
    drop(tb);
    let first = &rows[0];
    let last = &rows[rows.len() - 1];
    let grows = |k: &str| last[k].as_f64().unwrap() / first[k].as_f64().unwrap();
    // The table's size can only move the hashed hit: that is the growth the goal is about.
    let (growth, direct_growth, miss_growth) =
        (grows("hit_shared_ns"), grows("hit_ns"), grows("miss_ns"));
    println!(
        "\nhit cost growth 1 -> {} bindings: shared port {growth:.3}x, only binding on its port \
         {direct_growth:.3}x; miss: {miss_growth:.3}x",
        last["bindings"]
    );

    let out = serde_json::json!({
        "benchmark": "xdp_test_run",
        "quick": quick,
        "provenance": netdemux::testbed::provenance(quick),
        "repeat": cfg.repeat,
        "repetitions": cfg.reps,
        "rows": rows,
        "ratios": {
            "program_hit_vs_empty": first["hit_vs_empty"],
            "program_hit_minus_empty_ns": first["hit_minus_empty_ns"],
            "program_shared_hit_minus_empty_ns": first["hit_shared_minus_empty_ns"],
            "program_hit_minus_redirect_all_ns": first["hit_minus_redirect_all_ns"],
            "hit_growth_1_to_max": growth,
            "direct_hit_growth_1_to_max": direct_growth,
            "miss_growth_1_to_max": miss_growth,
        },
    });
    netdemux::testbed::write_results("xdp", &out)?;
    Ok(())
}
