//! `netdemux gen`: a line-rate traffic generator, two ways out.
//!
//! By default (`--sender xdp`) each thread runs the `netdemux_gen` program through
//! BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: the kernel builds `repeat` frames from a
//! template in a page pool, the program gives each the next source port of the flow range
//! (fixing the checksum), and XDP_TX transmits it on the interface named as the ingress device,
//! in batches, without skbs. One template per destination is built up front; hits and misses
//! alternate per call in the proportion of the hit ratio. On a veth, such frames land on the
//! peer's RX queue numbered after the sending CPU.
//!
//! `--sender packet` ([`packet_sender`]) sends a frame per flow, built up front, through a raw
//! packet socket instead: an skb per frame, slower, but the device's TX queue is picked by the
//! kernel as for any socket's traffic — on a multi-queue veth by each flow's hash, so one CPU
//! feeds every queue.
//!
//! The count reported is the offered load (with the packet socket, the frames the device
//! refused included, and counted apart); a receiver that cannot keep up shows its drops on its
//! own side.

mod anchor;
pub mod frames;
mod packet_sender;
mod progress;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    maps::Array,
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};
use netdemux_common::{
    GenSettings, map_names, program_names,
    wire::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN},
};
use serde::Serialize;

use crate::{
    control::{
        iface::Interface,
        kernel_neighbours::{self, Resolution},
        object,
    },
    xsk::nic,
};
pub use frames::GenProto;
use frames::Macs;

/// Most frames per BPF_PROG_TEST_RUN call. Each call costs a fixed ~1 ms of kernel set-up and
/// tear-down (a page pool per call; ~30 ms more without the [`anchor`]) on the machines
/// measured, so calls are as large as the duration and rate allow: up to this many frames, or
/// ~10 ms worth at a set `--rate` (see [`burst`]).
const MAX_BURST: u32 = 1 << 20;
/// Fewest frames per call.
const MIN_BURST: u32 = 4096;
/// First source port of the flows.
const BASE_PORT: u16 = 1024;
/// Frames the kernel handles per batch inside a call.
const BATCH: u32 = 64;

/// How frames leave the host (named in `--json` as `--sender` takes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GenSender {
    /// XDP live frames (BPF_PROG_TEST_RUN): no skbs, the fastest; on a veth every frame lands
    /// on the peer's RX queue numbered after the sending CPU.
    Xdp,
    /// A raw packet socket through the kernel's transmit path: an skb per frame, slower; the
    /// kernel picks the TX queue by each flow's hash, so one CPU feeds every queue of a
    /// multi-queue veth.
    Packet,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Sending interface.
    pub iface: Interface,
    /// Destination of the hits.
    pub dst: SocketAddr,
    /// Source address (default: the interface's first address of the destination's family).
    pub src: Option<IpAddr>,
    /// UDP or TCP SYN.
    pub proto: GenProto,
    /// Frame size on the wire, FCS included.
    pub size: usize,
    /// Distinct source ports (flows), starting at 1024.
    pub flows: u16,
    /// Fraction of frames sent to `dst`; the rest go to `miss_dst`.
    pub hit_ratio: f64,
    /// Destination of the misses.
    pub miss_dst: Option<SocketAddr>,
    /// Frames per second over all threads; `None` for as fast as possible.
    pub rate: Option<u64>,
    /// How long to send.
    pub duration: Duration,
    /// Sending threads (each pinned to its own CPU).
    pub threads: usize,
    /// Destination MAC; by default the kernel's neighbour entry for the destination.
    pub dst_mac: Option<[u8; 6]>,
    /// How frames leave.
    pub sender: GenSender,
}

/// What was sent.
#[derive(Clone, Debug, Serialize)]
pub struct GenReport {
    /// Interface.
    pub iface: String,
    /// Hit destination.
    pub dst: String,
    /// `udp` or `tcp-syn`.
    pub proto: &'static str,
    /// Frame size, FCS included.
    pub size: usize,
    /// Flows.
    pub flows: u16,
    /// Threads.
    pub threads: usize,
    /// Hit ratio.
    pub hit_ratio: f64,
    /// Seconds sent for.
    pub duration_s: f64,
    /// Frames processed by the program (offered).
    pub packets: u64,
    /// Of which to the hit destination.
    pub hits: u64,
    /// How the frames left.
    pub sender: GenSender,
    /// Of the frames offered, those the device refused to take (`packet` only: veth counts
    /// them as its `tx dropped`; XDP frames it refuses are its `xdp_xmit_errors`).
    pub refused: u64,
    /// Threads whose program stayed in the kernel's XDP dispatcher for the run (see `anchor`).
    pub anchored_threads: u64,
    /// Frames per second.
    pub pps: f64,
    /// Line rate of those frames, Gbit/s (frame bytes, no preamble or gap).
    pub gbps: f64,
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let shown = s.escape_debug();
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        bail!("'{shown}' is not a MAC address like 02:00:00:00:00:01");
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| {
            anyhow::anyhow!("'{shown}' is not a MAC address like 02:00:00:00:00:01")
        })?;
    }
    Ok(mac)
}

/// Frames per call: at a set rate ~10 ms worth (~100 ms when each call waits for the kernel's
/// RCU, see [`anchor`]: the wait is paid per call), else as many as allowed.
fn burst(per_thread_rate: Option<f64>, anchored: bool) -> u32 {
    let worth = if anchored { 0.01 } else { 0.1 };
    match per_thread_rate {
        Some(r) => ((r * worth) as u32).clamp(MIN_BURST, MAX_BURST),
        None => MAX_BURST,
    }
}

/// Sends until `cfg.duration` passes or `stop` is set; prints the rate every second on stderr.
pub fn run(cfg: &GenConfig, stop: Arc<AtomicBool>) -> Result<GenReport> {
    if cfg.threads == 0 || cfg.threads > 64 {
        bail!("--threads must be between 1 and 64");
    }
    if cfg.flows == 0 || cfg.flows > 4096 {
        bail!("--flows must be between 1 and 4096");
    }
    if !(0.0..=1.0).contains(&cfg.hit_ratio) {
        bail!("--hit-ratio must be between 0.0 and 1.0");
    }
    if cfg.hit_ratio < 1.0 && cfg.miss_dst.is_none() {
        bail!("--hit-ratio below 1 needs --miss-dst ADDR:PORT for the misses");
    }
    if let Some(miss) = cfg.miss_dst
        && miss.is_ipv4() != cfg.dst.is_ipv4()
    {
        bail!(
            "--miss-dst {miss} and --dst {} are of different address families",
            cfg.dst
        );
    }
    let ifindex = cfg.iface.ifindex()?;
    let (src_mac, if_ip) = nic::link_addrs(cfg.iface.name(), cfg.dst.is_ipv6())?;
    let src_ip = cfg.src.or(if_ip).with_context(|| {
        format!(
            "{} has no {} address: give one with --src",
            cfg.iface,
            if cfg.dst.is_ipv6() { "IPv6" } else { "IPv4" }
        )
    })?;
    let dst_mac = match cfg.dst_mac {
        Some(m) => m,
        None => match kernel_neighbours::resolve(
            ifindex,
            cfg.dst.ip(),
            // The source may be made up (--src): the way out does not depend on it.
            None,
            Duration::from_secs(2),
        )? {
            Resolution::Mac(m) => m,
            Resolution::NoRoute => bail!(
                "no route to {} through {} (give the next hop's MAC with --dst-mac)",
                cfg.dst.ip(),
                cfg.iface
            ),
            Resolution::Unresolved => bail!(
                "no MAC address for {} or its gateway: no ARP/ND answer (give one with --dst-mac)",
                cfg.dst.ip()
            ),
        },
    };
    let macs = Macs {
        src: src_mac,
        dst: dst_mac,
    };
    // One template per destination; the program gives each frame its own source port.
    let hit_frame = Arc::new(frames::build(
        cfg.proto, macs, src_ip, BASE_PORT, cfg.dst, cfg.size,
    )?);
    let miss_frame = Arc::new(match cfg.miss_dst {
        Some(m) => frames::build(cfg.proto, macs, src_ip, BASE_PORT, m, cfg.size)?,
        None => Vec::new(),
    });
    let l4 = (ETH_HLEN
        + if cfg.dst.is_ipv6() {
            IPV6_HLEN
        } else {
            IPV4_MIN_HLEN
        }) as u32;
    let settings = GenSettings {
        flows: cfg.flows as u32,
        base_port: BASE_PORT as u32,
        sport_offset: l4,
        csum_offset: l4 + if cfg.proto == GenProto::Udp { 6 } else { 16 },
    };

    // The packet socket sends a frame per flow, each with its own source port and checksums.
    let flow_frames = match cfg.sender {
        GenSender::Xdp => None,
        GenSender::Packet => {
            let build = |dst: Option<SocketAddr>| -> Result<Vec<Vec<u8>>> {
                let Some(dst) = dst else {
                    return Ok(Vec::new());
                };
                (0..cfg.flows)
                    .map(|i| frames::build(cfg.proto, macs, src_ip, BASE_PORT + i, dst, cfg.size))
                    .collect()
            };
            Some(Arc::new(packet_sender::FlowFrames {
                hits: build(Some(cfg.dst))?,
                misses: build(cfg.miss_dst)?,
            }))
        }
    };

    let start = Instant::now();
    let shared = Arc::new(Shared {
        progress: progress::Progress::default(),
        hit_count: AtomicU64::new(0),
        anchored: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        stop,
        start,
        deadline: start + cfg.duration,
    });
    let cpus = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut workers = Vec::new();
    for t in 0..cfg.threads {
        let (hit_frame, miss_frame, flow_frames, shared) = (
            hit_frame.clone(),
            miss_frame.clone(),
            flow_frames.clone(),
            shared.clone(),
        );
        let per_thread_rate = cfg.rate.map(|r| r as f64 / cfg.threads as f64);
        let ratio = cfg.hit_ratio;
        workers.push(
            thread::Builder::new()
                .name(format!("netdemux-gen{t}"))
                .spawn(move || -> Result<()> {
                    let mut set = nix::sched::CpuSet::new();
                    let _ = set.set(t % cpus);
                    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                    match &flow_frames {
                        Some(frames) => {
                            packet_sender::send(ifindex, frames, ratio, per_thread_rate, &shared)
                        }
                        None => live_frames(
                            t,
                            ifindex,
                            settings,
                            [&hit_frame, &miss_frame],
                            ratio,
                            per_thread_rate,
                            &shared,
                        ),
                    }
                })?,
        );
    }
    // A line a second, its rate over the calls that returned since the line before (see
    // `progress`).
    let (mut last, mut printed) = (shared.progress.tally(), Instant::now());
    while workers.iter().any(|w| !w.is_finished()) {
        thread::sleep(Duration::from_millis(100));
        if printed.elapsed() >= Duration::from_secs(1) {
            let now = shared.progress.tally();
            if let Some(pps) = progress::rate(last, now) {
                eprintln!(
                    "gen: {:>8.3} Mpps   total {:>12} frames",
                    pps / 1e6,
                    now.frames
                );
                last = now;
            }
            printed = Instant::now();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
    }
    let packets = shared.progress.tally().frames;
    let pps = packets as f64 / elapsed;
    Ok(GenReport {
        iface: cfg.iface.name().to_string(),
        dst: cfg.dst.to_string(),
        proto: match cfg.proto {
            GenProto::Udp => "udp",
            GenProto::TcpSyn => "tcp-syn",
        },
        size: cfg.size,
        flows: cfg.flows,
        threads: cfg.threads,
        hit_ratio: cfg.hit_ratio,
        duration_s: elapsed,
        packets,
        hits: shared.hit_count.load(Ordering::Relaxed),
        sender: cfg.sender,
        refused: shared.refused.load(Ordering::Relaxed),
        anchored_threads: shared.anchored.load(Ordering::Relaxed),
        pps,
        gbps: pps * cfg.size as f64 * 8.0 / 1e9,
    })
}

/// What the sending threads share.
#[derive(Debug)]
struct Shared {
    /// Frames offered, as calls return.
    progress: progress::Progress,
    /// Of them, to the hit destination.
    hit_count: AtomicU64,
    /// Threads whose program is anchored (see `anchor`).
    anchored: AtomicU64,
    /// Frames the device refused (packet socket).
    refused: AtomicU64,
    /// Set on SIGINT/SIGTERM.
    stop: Arc<AtomicBool>,
    /// When the generator started.
    start: Instant,
    /// When the threads stop.
    deadline: Instant,
}

/// One thread's sending loop with XDP live frames (see the module's notes): the embedded
/// object's generator program, run through BPF_PROG_TEST_RUN in calls of up to a million
/// frames, `[hit, miss]` templates in the proportion of the hit ratio.
fn live_frames(
    t: usize,
    ifindex: u32,
    settings: GenSettings,
    [hit_frame, miss_frame]: [&[u8]; 2],
    ratio: f64,
    per_thread_rate: Option<f64>,
    shared: &Shared,
) -> Result<()> {
    let mut ebpf = object::open(1)?;
    let mut gen_settings: Array<_, GenSettings> = ebpf
        .take_map(map_names::GEN_SETTINGS)
        .context("the embedded object has no generator settings map")?
        .try_into()?;
    gen_settings.set(0, settings, 0)?;
    let prog: &mut Xdp = object::load_program(&mut ebpf, program_names::GEN)?;
    // Kept for the thread's whole run (see `anchor`); without it each call waits twice for the
    // kernel's RCU, and frames still go out.
    let anchor = match anchor::hold(prog) {
        Ok(a) => {
            shared.anchored.fetch_add(1, Ordering::Relaxed);
            Some(a)
        }
        Err(e) if t == 0 => {
            eprintln!("gen: each call waits for the kernel's RCU twice: {e:#}");
            None
        }
        Err(_) => None,
    };
    let burst = burst(per_thread_rate, anchor.is_some());
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
    // The kernel wants data = 0 and data_end = the frame's length.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(hit_frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let began = Instant::now();
    let mut mine = 0u64;
    while Instant::now() < shared.deadline && !shared.stop.load(Ordering::Relaxed) {
        // Shrink the call so it ends about when the duration does (measured pace).
        let mut call = burst;
        if mine > 0 {
            let per_frame = began.elapsed().as_secs_f64() / mine as f64;
            let left = shared
                .deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64();
            call = ((left / per_frame) as u32).clamp(MIN_BURST, burst);
        }
        // Hits and misses in the proportion of the hit ratio, in whole frames.
        let hit_part = (call as f64 * ratio).round() as u32;
        for (frame, repeat, hit) in [
            (hit_frame, hit_part, true),
            (miss_frame, call - hit_part, false),
        ] {
            if repeat == 0 {
                continue;
            }
            prog.test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN in live-frames mode failed")?;
            mine += repeat as u64;
            shared
                .progress
                .record(repeat as u64, shared.start.elapsed());
            if hit {
                shared.hit_count.fetch_add(repeat as u64, Ordering::Relaxed);
            }
        }
        pace(mine, per_thread_rate, began);
    }
    Ok(())
}

/// At a set rate, sleeps until `sent` frames are due since `began`.
fn pace(sent: u64, per_thread_rate: Option<f64>, began: Instant) {
    if let Some(r) = per_thread_rate {
        let due = Duration::from_secs_f64(sent as f64 / r);
        let elapsed = began.elapsed();
        if due > elapsed {
            thread::sleep(due - elapsed);
        }
    }
}
