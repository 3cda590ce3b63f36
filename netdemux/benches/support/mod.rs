//! What the benchmarks share: the two receiving layouts of the UDP ones, the veth NAPI
//! placement, command-line flags, a random order, and the bare AF_XDP receivers (the in-repo
//! ceiling a demultiplexing receiver is measured against).
#![allow(dead_code, reason = "each benchmark uses a part of it")]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Result, bail};
use netdemux::{
    control::object,
    test_rng::Xorshift64,
    testbed::{Testbed, in_netns, must},
};
use netdemux_common::program_names;

pub mod placement;
pub mod speed;
pub mod stats;

/// The `udp` benchmark's ratios, by name: (numerator, denominator) receivers, each a rate
/// received in the same layout. The report takes each one's spread from the repetitions.
pub const UDP_RATIOS: [(&str, &str, &str); 13] = [
    ("hit_vs_drop", "r2_afxdp_sink", "r0_xdp_drop"),
    (
        "stack_vs_kernel_udp",
        "r2_afxdp_sink",
        "rnone_kernel_recvmmsg",
    ),
    ("miss_tax", "r1_demux_miss_kernel", "rnone_kernel_recvmmsg"),
    (
        "miss_tax_vs_pass_program",
        "r1_demux_miss_kernel",
        "r1p_pass_kernel",
    ),
    (
        "echo_vs_kernel_udp",
        "r3e_afxdp_echo",
        "rnone_kernel_recvmmsg",
    ),
    ("skb_mode_vs_native", "r4_afxdp_sink_skb", "r2_afxdp_sink"),
    ("mix_vs_kernel_udp", "r6_mix", "rnone_kernel_recvmmsg"),
    (
        "sink_vs_bare_consumer",
        "r2_afxdp_sink",
        "rbc_bare_consumer",
    ),
    (
        "echo_vs_bare_reflector",
        "r3e_afxdp_echo",
        "rbr_bare_reflector",
    ),
    (
        "demux_program_tax",
        "rbd_bare_behind_demux",
        "rbc_bare_consumer",
    ),
    (
        "header_read_tax",
        "rbp_bare_behind_parse",
        "rbc_bare_consumer",
    ),
    (
        "lookup_tax",
        "rbd_bare_behind_demux",
        "rbp_bare_behind_parse",
    ),
    ("queue_worker_tax", "r2_afxdp_sink", "rbd_bare_behind_demux"),
];

/// The ratio of two receivers' rates (received Mpps), two ways. Paired by repetition
/// (`a[i] / b[i]`, samples taken one right after the other): the median of the pairs' ratios
/// with a 95% interval for it ([`stats::median_interval`]). And fitted at equal speed and
/// placement ([`stats::fit_at_equal`], the report's fit), with its 95% interval. One line.
pub fn paired_ratio(a: &[serde_json::Value], b: &[serde_json::Value]) -> String {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(a, b)| {
            let (x, y) = (a["received_mpps"].as_f64()?, b["received_mpps"].as_f64()?);
            (y > 0.0).then(|| x / y)
        })
        .collect();
    let paired = match stats::median_interval(&ratios) {
        Some((m, Some([lo, hi]))) => format!("{m:.3} ({lo:.3}–{hi:.3})"),
        Some((m, None)) => format!("{m:.3}"),
        None => "-".into(),
    };
    let fitted = match stats::fit_at_equal(a, b) {
        Some(f) => {
            let on = match f.covariates().as_slice() {
                [] => "geometric means: neither speed nor placement varied".to_string(),
                c => format!("at equal {}", c.join(" and ")),
            };
            match f.interval {
                Some([lo, hi]) => format!("{:.3} ({lo:.3}–{hi:.3}) {on}", f.ratio),
                None => format!("{:.3} {on}", f.ratio),
            }
        }
        None => "- fitted".into(),
    };
    format!(
        "{paired} paired over {} repetitions; {fitted}",
        ratios.len(),
    )
}

/// An echo open-loop row's counted losses (`echo`'s `counted_by_place`): their total and, after
/// it, each place that lost any; `—` for results from before they were counted.
pub fn counted_cell(v: &serde_json::Value) -> String {
    let Some(by_place) = v["counted_by_place"].as_object() else {
        return "—".into();
    };
    let lost = |n: &serde_json::Value| n.as_u64().unwrap_or(0);
    let total: u64 = by_place.values().map(lost).sum();
    let places: Vec<String> = by_place
        .iter()
        .filter(|(_, n)| lost(n) > 0)
        .map(|(place, n)| format!("{} {n}", place.replace('_', " ")))
        .collect();
    if places.is_empty() {
        total.to_string()
    } else {
        format!("{total} ({})", places.join(", "))
    }
}

/// The lowest and highest of `v`, or `None` when it is empty.
pub fn lowest_highest(v: impl Iterator<Item = f64> + Clone) -> Option<[f64; 2]> {
    Some([v.clone().reduce(f64::min)?, v.reduce(f64::max)?])
}

/// Pins the calling thread to `cpu` (best effort).
pub fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Xorshift seeded from the clock: the random orders the benchmarks measure their sides in.
pub fn clock_seeded() -> Xorshift64 {
    Xorshift64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 | 1)
            .unwrap_or(1),
    )
}

/// Where the receiving side runs (both have the generator alone on CPU 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Threaded NAPI pinned to CPU 1 with the receiver; the queue worker waits in poll(2).
    Pinned,
    /// veth's default NAPI (softirq); the queue worker on CPU 1 busy-polls and spins.
    BusyPoll,
}

impl Layout {
    pub fn key(self) -> &'static str {
        match self {
            Layout::Pinned => "pinned",
            Layout::BusyPoll => "busy_poll",
        }
    }

    /// How a receiver waits in this layout.
    pub fn wait(self) -> Wait {
        match self {
            Layout::Pinned => Wait::Poll,
            Layout::BusyPoll => Wait::BusyPoll,
        }
    }
}

/// How a bare receiver waits for frames: as a queue worker does by default, with `--spin`, or
/// with `--busy-poll --spin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// poll(2).
    Poll,
    /// A spin on the rings (a syscall only when the kernel asks for a wakeup).
    Spin,
    /// A spin with a busy-poll kick each empty round.
    BusyPoll,
}

/// The value after `flag` on a benchmark's command line (`--only KEY,KEY`).
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The pinned layout: threaded NAPI on the receiving veth, its thread pinned to CPU 1 (the
/// generator pins itself to CPU 0); the busy-poll layout: NAPI back to softirq. veth has NAPI
/// only while an XDP program or GRO is on, so this follows each set-up.
pub fn pin_napi(tb: &Testbed, layout: Layout) -> Result<()> {
    if layout == Layout::Pinned {
        napi_thread(&tb.ns_b, &tb.veth_b, 1)
    } else {
        must(
            "ip",
            &[
                "netns",
                "exec",
                &tb.ns_b,
                "sh",
                "-c",
                &format!("echo 0 > /sys/class/net/{}/threaded", tb.veth_b),
            ],
        )
        .map(|_| ())
    }
}

/// Threaded NAPI on `dev` (in namespace `ns`), its threads pinned to `cpu`. Call it again after
/// anything that re-creates the device's NAPI (attaching the first XDP program).
pub fn napi_thread(ns: &str, dev: &str, cpu: usize) -> Result<()> {
    must(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{dev}/threaded"),
        ],
    )?;
    thread::sleep(Duration::from_millis(50));
    // The kernel names the threads napi/<device>-<id>, cut to 15 characters: a device name of
    // up to 10 stays whole, so the threads of the two veth ends cannot be mixed up.
    if dev.len() > 10 {
        bail!("device name {dev} too long to find its NAPI threads by name");
    }
    let prefix = format!("napi/{dev}");
    let ps = must("ps", &["-eo", "pid,comm"])?;
    let mut pinned = 0;
    for line in ps.lines() {
        let mut it = line.split_whitespace();
        let (Some(pid), Some(comm)) = (it.next(), it.next()) else {
            continue;
        };
        if comm
            .strip_prefix(&prefix)
            .is_some_and(|r| r.starts_with('-') || r.is_empty())
        {
            must("taskset", &["-p", "-c", &cpu.to_string(), pid])?;
            pinned += 1;
        }
    }
    if pinned == 0 {
        bail!("no NAPI thread found for {dev}");
    }
    Ok(())
}

/// The program in front of a bare receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareProgram {
    /// Every frame redirected unread.
    RedirectAll,
    /// The demultiplexer's parsing, then every TCP/UDP frame redirected: no lookup, no counter.
    ParseRedirect,
    /// The demultiplexer itself, with the sink's address bound.
    Demux,
}

/// A bare receiver: a [`BareProgram`] attached to veth_b and one AF_XDP socket on queue 0,
/// served on CPU 1 by the same socket code as a queue worker, waiting the same way.
pub struct Bare {
    pub stop: Arc<AtomicBool>,
    pub handle: thread::JoinHandle<Result<()>>,
    /// The socket's drops (RX ring full, no fill buffer), as of a recent idle moment.
    pub drops: Arc<AtomicU64>,
}

impl Bare {
    /// Stops the receiver and waits for it.
    pub fn finish(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("bare receiver panicked"))?
    }
}

/// Swaps the Ethernet addresses, the IPv4 addresses and the UDP ports of a 64-byte-class frame
/// in place (the checksums stay right: both sums are symmetric); its length, or 0 to recycle.
pub fn reflect(f: &mut [u8]) -> u32 {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] {
        return 0;
    }
    // (one field, the other, their length): MACs, IPv4 addresses, UDP ports.
    for (a, b, n) in [(0, 6, 6), (26, 30, 4), (34, 36, 2)] {
        for i in 0..n {
            f.swap(a + i, b + i);
        }
    }
    f.len() as u32
}

pub fn start_bare(
    tb: &Testbed,
    wait: Wait,
    (reflector, program): (bool, BareProgram),
    count: Arc<AtomicU64>,
    frame_len: usize,
) -> Result<Bare> {
    use netdemux::xsk::{Verdict, XskConfig, XskSocket};
    let (stop, veth) = (Arc::new(AtomicBool::new(false)), tb.veth_b.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    let drops = Arc::new(AtomicU64::new(0));
    let drops2 = drops.clone();
    let handle = in_netns(&tb.ns_b, move || -> Result<()> {
        let set_up = || -> Result<(aya::Ebpf, XskSocket)> {
            let mut ebpf = object::open(1)?;
            let mut maps = netdemux::control::maps::DemuxMaps::take(&mut ebpf, None)?;
            let ifindex = netdemux::control::iface::Interface::link(&veth)?.ifindex()?;
            // Configured as a queue worker that waits this way.
            let cfg = match wait {
                Wait::BusyPoll => XskConfig {
                    busy_poll: true,
                    ..XskConfig::default()
                }
                .spinning(),
                Wait::Spin => XskConfig::default().spinning(),
                Wait::Poll => XskConfig::default(),
            };
            let sock = XskSocket::open(ifindex, 0, &cfg)?;
            maps.xsks.set(
                0,
                std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&sock)),
                0,
            )?;
            let prog = match program {
                BareProgram::Demux => {
                    maps.bind(&netdemux::control::binding::Binding {
                        proto: netdemux::control::binding::Proto::Udp,
                        addr: "198.18.0.2:7000".parse()?,
                    })?;
                    object::load_program(&mut ebpf, program_names::DEMUX)?
                }
                BareProgram::ParseRedirect => {
                    object::load_program(&mut ebpf, program_names::PARSE_REDIRECT)?
                }
                BareProgram::RedirectAll => {
                    object::load_program(&mut ebpf, program_names::REDIRECT_ALL)?
                }
            };
            prog.attach_to_if_index(ifindex, aya::programs::XdpMode::Driver)?;
            drop(maps);
            Ok((ebpf, sock))
        };
        let (ebpf, mut sock) = match set_up() {
            Ok(x) => {
                ready_tx.send(Ok(())).ok();
                x
            }
            Err(e) => {
                ready_tx.send(Err(format!("{e:#}"))).ok();
                return Err(e);
            }
        };
        let mut cpus = nix::sched::CpuSet::new();
        cpus.set(1)?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus)?;
        let mut idle = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            sock.complete();
            // Frames of another length than the generator's (the peer's neighbour discovery: the
            // redirect-all program takes everything) are not counted; told apart by the
            // descriptor's length alone, so the frame's bytes stay untouched.
            let mut other = 0u64;
            let b = sock.receive(|f| {
                other += u64::from(f.len() != frame_len);
                if reflector {
                    match reflect(f) {
                        0 => Verdict::Recycle,
                        n => Verdict::Transmit(n),
                    }
                } else {
                    Verdict::Recycle
                }
            });
            let counted = if reflector {
                b.tx as u64
            } else {
                b.rx as u64 - other
            };
            count.fetch_add(counted, Ordering::Relaxed);
            if b.rx == 0 {
                // The kernel's drop counts now and then while idle: a syscall per idle spin
                // would slow the busy-poll kicks that take NAPI work off the generator's core.
                idle = idle.wrapping_add(1);
                if (idle.is_multiple_of(1024) || wait == Wait::Poll)
                    && let Ok(st) = sock.stats()
                {
                    drops2.store(st.rx_dropped + st.rx_ring_full, Ordering::Relaxed);
                }
                // As a queue worker idles: a spin with a kick (a syscall only where the kick
                // needs one), or poll(2).
                if wait == Wait::Poll {
                    sock.wait(Duration::from_millis(100))?;
                } else {
                    sock.kick();
                }
            }
        }
        drop(sock);
        drop(ebpf);
        Ok(())
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Bare {
            stop,
            handle,
            drops,
        }),
        Ok(Err(e)) => bail!("bare receiver: {e}"),
        Err(_) => bail!("bare receiver thread died"),
    }
}
