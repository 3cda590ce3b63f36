//! `cargo xtask bench udp`: receive rates under the same offered load, as ratios measured in one
//! run. The load is `netdemux gen` (XDP live frames, 64-byte UDP, 64 flows, as fast as it goes)
//! from the peer namespace; the receivers, interleaved (each ratio's two sides one after the
//! other), 8 repetitions each, median reported:
//!
//! - R0    XDP_DROP on the receiving veth: the ceiling of what arrives;
//! - Rnone no program, a kernel UDP socket read with recvmmsg(64);
//! - R1    netdemux attached, nothing bound: every frame a miss, to the same kernel socket;
//! - R1p   an XDP program that only returns XDP_PASS, the same kernel socket: what any program
//!   costs, so R1/R1p is what the demultiplexer itself adds to a miss;
//! - R2    netdemux run --udp-sink: every frame a hit, counted by the AF_XDP sink;
//! - R3e   netdemux run --udp-echo: every frame a hit and answered in place (answers counted);
//!   the answers go back to the generator's namespace, whose kernel would take each through IP,
//!   a UDP socket lookup and an ICMP error — on the echo's core, as veth hands a frame to its peer
//!   in the sender's context. A tc program there drops them first (`netdemux_tc_drop`), for the
//!   echo and the bare reflector alike: their rows measure the answering, and each sample records
//!   the answers sent that the peer did not accept (`answers_lost`);
//! - R4    R2 with the program attached in skb (generic) mode;
//! - R6    half hits to the sink, half misses to a kernel socket (both counted);
//! - Rbc   the bare consumer: netdemux's AF_XDP socket code behind a program that redirects every
//!   frame, no parsing or lookup, frames only returned — the ceiling for R2;
//! - Rbr   the bare reflector: the same, swapping addresses and ports and transmitting each frame
//!   in place — the ceiling for R3e. `sink / bare consumer` and `echo / bare reflector` are the
//!   demultiplexer's tax, measured in one run with no outside tool;
//! - Rbd   the bare consumer behind the demux program itself (the sink's address bound): splits
//!   that tax into the program's part (`Rbd / Rbc`) and the queue worker's (`R2 / Rbd`);
//! - Rbp   the bare consumer behind the demux program's parsing alone (every TCP/UDP frame
//!   redirected, no lookup, no counter): splits the program's part into reading the headers
//!   (`Rbp / Rbc`), which any demultiplexer pays, and the lookup and counters (`Rbd / Rbp`).
//!
//! Two layouts, interleaved, both with the generator alone on CPU 0 and the receiver on CPU 1:
//! "pinned" (threaded NAPI on the receiving veth, its thread on CPU 1 too; the queue worker waits
//! in poll(2) and so leaves the NAPI thread room) and "busy-poll" (veth's default softirq NAPI;
//! the queue worker runs with `--busy-poll --spin`; veth registers no NAPI instance for the
//! kernel to busy-poll, so it spins on its rings).
//!
//! Every measured sample records where the host had the two vCPUs while it ran: a cache line's
//! round trip between CPU 0 and CPU 1, probed every 100 ms during the sample (`near_share`, the
//! share of probes that found them near; `cross_core_ns`, the median). On the AMD EPYC VM of
//! most runs it is about 90–140 ns near and 430–500 ns far, and the AF_XDP rates move with it
//! (`support::placement`); on the Intel Xeon VM of run 1796241496 it lay at 250–440 ns with no
//! two values.
//!
//! Then the programs' own live cost: each receiver with a native-mode program (R0, R1, R1p, R2,
//! Rbc, Rbp, Rbd) once more per repetition in the busy-poll layout, with the kernel's BPF
//! run-time stats on for this pass only (BPF_ENABLE_STATS: the kernel reads the clock around
//! every run, so these samples are not rate samples), giving ns per run of the program on the
//! live path — where test_run's warm caches do not hold. Results: markdown tables and
//! `bench/results/udp-latest.json`.
//!
//! Every sample also records the machine's speed right before and after it (`speed_ns`, the
//! empty program's ns per run on the generator's core: `support::speed`); the report fits each
//! ratio at equal speed and placement on it (`support::stats::fit_at_equal`). A partial run
//! (`--only`, `--layout`, or `--reps N` other than the usual count) writes no results file; it
//! prints each ratio whose two sides it measured, paired by repetition (the median of the
//! repetitions' ratios with its 95% interval) and by the report's fit (see
//! `support::paired_ratio`). With many repetitions of a few receivers, that settles a ratio the
//! full run's eight leave wide.
//!
//! Usage: udp [--quick] [--only KEY,..] [--layout L] [--reps N]  (root)

use std::{
    fs,
    io::IoSliceMut,
    net::UdpSocket,
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use netdemux::{
    control::object,
    testbed::{Daemon, Testbed, ethtool_sum, in_netns, link_counter, must, queue_sum, ring_drops},
};
use netdemux_common::program_names;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg};
use support::{Bare, BareProgram, Layout, pin_napi, start_bare};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_netdemux");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Receiver {
    XdpDrop,
    KernelNoProgram,
    KernelBehindDemux,
    KernelBehindPass,
    AfXdpSink,
    AfXdpEcho,
    AfXdpSinkSkb,
    Mix,
    BareConsumer,
    BareReflector,
    BareBehindParse,
    BareBehindDemux,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::XdpDrop => "R0 XDP_DROP",
            Receiver::KernelNoProgram => "Rnone kernel UDP recvmmsg, no program",
            Receiver::KernelBehindDemux => "R1 kernel UDP recvmmsg behind netdemux (all misses)",
            Receiver::KernelBehindPass => "R1p kernel UDP recvmmsg behind an XDP_PASS program",
            Receiver::AfXdpSink => "R2 netdemux AF_XDP udp-sink (all hits)",
            Receiver::AfXdpEcho => "R3e netdemux AF_XDP udp-echo (answers sent)",
            Receiver::AfXdpSinkSkb => "R4 R2 with XDP in skb (generic) mode",
            Receiver::Mix => "R6 50/50 hit/miss: sink + kernel socket",
            Receiver::BareConsumer => "Rbc bare AF_XDP consumer (redirect all, return frames)",
            Receiver::BareReflector => "Rbr bare AF_XDP reflector (redirect all, swap, transmit)",
            Receiver::BareBehindParse => {
                "Rbp bare AF_XDP consumer behind the demux program's parsing alone"
            }
            Receiver::BareBehindDemux => "Rbd bare AF_XDP consumer behind the demux program",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Receiver::XdpDrop => "r0_xdp_drop",
            Receiver::KernelNoProgram => "rnone_kernel_recvmmsg",
            Receiver::KernelBehindDemux => "r1_demux_miss_kernel",
            Receiver::KernelBehindPass => "r1p_pass_kernel",
            Receiver::AfXdpSink => "r2_afxdp_sink",
            Receiver::AfXdpEcho => "r3e_afxdp_echo",
            Receiver::AfXdpSinkSkb => "r4_afxdp_sink_skb",
            Receiver::Mix => "r6_mix",
            Receiver::BareConsumer => "rbc_bare_consumer",
            Receiver::BareReflector => "rbr_bare_reflector",
            Receiver::BareBehindParse => "rbp_bare_behind_parse",
            Receiver::BareBehindDemux => "rbd_bare_behind_demux",
        }
    }
}

fn udp_rcvbuf_errors(ns: &str) -> u64 {
    netdemux::testbed::kernel_counters(ns, &["UdpRcvbufErrors"]).unwrap_or_default()
}

/// A kernel UDP socket on 198.18.0.2:`port` in namespace b, read with recvmmsg(64) on CPU 1 —
/// tuned as a fair baseline: SO_REUSEPORT (one socket per queue; the testbed has one), a 32 MiB
/// SO_RCVBUF and one buffer set reused by every call. Not busy-polled: on veth here busy
/// polling (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, as the AF_XDP socket gets) made the kernel
/// receiver slower in the busy-poll layout (1.13 instead of 1.61 Mpps without a program, 0.48
/// instead of 1.61 behind netdemux, in one quick run), so the baseline is its better setting.
fn kernel_reader(
    tb: &Testbed,
    port: u16,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = in_netns(&tb.ns_b, move || {
        let mut set = nix::sched::CpuSet::new();
        let _ = set.set(1);
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn as In, bind, setsockopt, socket, sockopt,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::empty(),
            None,
        )
        .expect("a UDP socket");
        setsockopt(&fd, sockopt::ReusePort, &true).expect("SO_REUSEPORT");
        setsockopt(&fd, sockopt::RcvBufForce, &(32 << 20)).expect("SO_RCVBUFFORCE");
        bind(fd.as_raw_fd(), &In::new(198, 18, 0, 2, port)).expect("bind the kernel receiver");
        let sock = UdpSocket::from(fd);
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut bufs = vec![[0u8; 2048]; 64];
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(64, None);
        while !stop.load(Ordering::Relaxed) {
            // The same 64 buffers every call (only their iovec list is rebuilt: recvmmsg's
            // signature ties it to the call).
            let mut iovs: Vec<[IoSliceMut; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            if let Ok(res) = recvmmsg(
                sock.as_raw_fd(),
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::empty(),
                None,
            ) {
                count.fetch_add(res.count() as u64, Ordering::Relaxed);
            }
        }
    });
    ready_rx.recv().expect("kernel reader ready");
    h
}

struct Setup {
    bare: Option<Bare>,
    drop_prog: Option<aya::Ebpf>,
    /// The discard of the answers at the generator's veth (echo and bare reflector).
    discard: Option<aya::Ebpf>,
    daemon: Option<Daemon>,
    reader: Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>,
    kernel_count: Arc<AtomicU64>,
}

fn set_up(tb: &Testbed, r: Receiver, layout: Layout) -> Result<Setup> {
    let kernel_count = Arc::new(AtomicU64::new(0));
    let mut s = Setup {
        bare: None,
        drop_prog: None,
        discard: None,
        daemon: None,
        reader: None,
        kernel_count: kernel_count.clone(),
    };
    match r {
        Receiver::XdpDrop => s.drop_prog = Some(attach_drop(tb)?),
        Receiver::KernelBehindPass => s.drop_prog = Some(attach_floor(tb, program_names::PASS)?),
        Receiver::BareConsumer
        | Receiver::BareReflector
        | Receiver::BareBehindParse
        | Receiver::BareBehindDemux => {
            let kind = (
                r == Receiver::BareReflector,
                match r {
                    Receiver::BareBehindDemux => BareProgram::Demux,
                    Receiver::BareBehindParse => BareProgram::ParseRedirect,
                    _ => BareProgram::RedirectAll,
                },
            );
            // 64-byte frames on the wire: 60 bytes without the FCS.
            s.bare = Some(start_bare(
                tb,
                layout.wait(),
                kind,
                kernel_count.clone(),
                60,
            )?);
        }
        Receiver::KernelNoProgram => {
            must(
                "ip",
                &[
                    "netns", "exec", &tb.ns_b, "ethtool", "-K", &tb.veth_b, "gro", "on",
                ],
            )?;
        }
        Receiver::KernelBehindDemux => {
            tb.netdemux_ok(&["attach", "--iface", &tb.veth_b, "--mode", "native"])?;
        }
        Receiver::AfXdpSink | Receiver::AfXdpEcho | Receiver::AfXdpSinkSkb | Receiver::Mix => {
            if r == Receiver::AfXdpSinkSkb {
                // Generic XDP: veth needs GRO on to keep NAPI for the peer's XDP frames.
                must(
                    "ip",
                    &[
                        "netns", "exec", &tb.ns_b, "ethtool", "-K", &tb.veth_b, "gro", "on",
                    ],
                )?;
                tb.netdemux_ok(&["attach", "--iface", &tb.veth_b, "--mode", "skb"])?;
            }
            let service = if r == Receiver::AfXdpEcho {
                "--udp-echo"
            } else {
                "--udp-sink"
            };
            s.daemon = Some(Daemon::start(
                tb,
                &if layout == Layout::Pinned {
                    vec![service, "198.18.0.2:7000", "--cpu", "1"]
                } else {
                    vec![
                        service,
                        "198.18.0.2:7000",
                        "--cpu",
                        "1",
                        "--busy-poll",
                        "--spin",
                    ]
                },
            )?);
        }
    }
    if answers(r) {
        s.discard = Some(discard_answers(tb)?);
    }
    pin_napi(tb, layout)?;
    if matches!(
        r,
        Receiver::KernelNoProgram
            | Receiver::KernelBehindDemux
            | Receiver::KernelBehindPass
            | Receiver::Mix
    ) {
        let stop = Arc::new(AtomicBool::new(false));
        let port = if r == Receiver::Mix { 7001 } else { 7000 };
        let h = kernel_reader(tb, port, kernel_count, stop.clone());
        s.reader = Some((stop, h));
    }
    Ok(s)
}

fn tear_down(tb: &Testbed, r: Receiver, s: Setup) -> Result<()> {
    if let Some(b) = s.bare {
        b.finish()?;
    }
    if let Some((stop, h)) = s.reader {
        stop.store(true, Ordering::Relaxed);
        let _ = h.join();
    }
    if let Some(d) = s.daemon {
        d.stop()?;
    }
    drop(s.drop_prog);
    drop(s.discard);
    match r {
        Receiver::XdpDrop | Receiver::KernelBehindPass => {}
        Receiver::KernelNoProgram => {
            must(
                "ip",
                &[
                    "netns", "exec", &tb.ns_b, "ethtool", "-K", &tb.veth_b, "gro", "off",
                ],
            )?;
        }
        Receiver::KernelBehindDemux => {
            tb.netdemux_ok(&["detach", "--iface", &tb.veth_b])?;
        }
        Receiver::AfXdpSink
        | Receiver::AfXdpEcho
        | Receiver::Mix
        | Receiver::BareConsumer
        | Receiver::BareReflector
        | Receiver::BareBehindParse
        | Receiver::BareBehindDemux => {}
        Receiver::AfXdpSinkSkb => {
            tb.netdemux_ok(&["detach", "--iface", &tb.veth_b])?;
            must(
                "ip",
                &[
                    "netns", "exec", &tb.ns_b, "ethtool", "-K", &tb.veth_b, "gro", "off",
                ],
            )?;
        }
    }
    Ok(())
}

/// True for the receivers that answer every frame (their count is of answers sent).
fn answers(r: Receiver) -> bool {
    matches!(r, Receiver::AfXdpEcho | Receiver::BareReflector)
}

/// Attaches the object's `netdemux_tc_drop` at the tc ingress hook of the generator's veth, from
/// a thread inside namespace a: the answers are dropped there, before IP, so neither the echo
/// nor the bare reflector pays for the generator's kernel looking up a UDP socket and sending an
/// ICMP error (veth delivers to its peer in the sender's softirq, on the answering core).
/// Dropping the returned object detaches it.
fn discard_answers(tb: &Testbed) -> Result<aya::Ebpf> {
    let veth = tb.veth_a.clone();
    attached_in(&tb.ns_a, move |ebpf| {
        let prog: &mut aya::programs::SchedClassifier = ebpf
            .program_mut(program_names::TC_DROP)
            .with_context(|| format!("no program {} in the object", program_names::TC_DROP))?
            .try_into()?;
        prog.load()?;
        prog.attach(&veth, aya::programs::TcAttachType::Ingress)
            .with_context(|| format!("attach {} to {veth}", program_names::TC_DROP))?;
        Ok(())
    })
}

/// The answers that have reached the generator's veth (its receive count: veth counts a frame
/// its peer accepted; one refused for a full backlog is counted as a drop instead).
fn answers_arrived(tb: &Testbed) -> Result<u64> {
    link_counter(&tb.ns_a, &tb.veth_a, "rx", "packets")
}

/// What the receiver has counted so far.
fn received(tb: &Testbed, r: Receiver, s: &Setup) -> Result<u64> {
    Ok(match r {
        Receiver::XdpDrop => ethtool_sum(&tb.ns_b, &tb.veth_b, "xdp_drops").unwrap_or(0),
        Receiver::KernelNoProgram
        | Receiver::KernelBehindDemux
        | Receiver::KernelBehindPass
        | Receiver::BareConsumer
        | Receiver::BareReflector
        | Receiver::BareBehindParse
        | Receiver::BareBehindDemux => s.kernel_count.load(Ordering::Relaxed),
        Receiver::AfXdpSink | Receiver::AfXdpSinkSkb | Receiver::Mix => {
            let sunk = tb.stats()?["services"][0]["packets"].as_u64().unwrap_or(0);
            // The mix counts what both receivers got: the sink's hits, the kernel's misses.
            sunk + if r == Receiver::Mix {
                s.kernel_count.load(Ordering::Relaxed)
            } else {
                0
            }
        }
        Receiver::AfXdpEcho => queue_sum(&tb.stats()?, "tx"),
    })
}

/// Receiver-side losses the kernel counted (ring full, socket buffer full).
fn receiver_drops(tb: &Testbed, r: Receiver, s: &Setup) -> Result<u64> {
    Ok(match r {
        Receiver::XdpDrop => 0,
        Receiver::BareConsumer
        | Receiver::BareReflector
        | Receiver::BareBehindParse
        | Receiver::BareBehindDemux => s
            .bare
            .as_ref()
            .map_or(0, |b| b.drops.load(Ordering::Relaxed)),
        Receiver::KernelNoProgram | Receiver::KernelBehindDemux | Receiver::KernelBehindPass => {
            udp_rcvbuf_errors(&tb.ns_b)
        }
        Receiver::AfXdpSink | Receiver::AfXdpEcho | Receiver::AfXdpSinkSkb | Receiver::Mix => {
            let v = tb.stats()?;
            let kernel = if r == Receiver::Mix {
                udp_rcvbuf_errors(&tb.ns_b)
            } else {
                0
            };
            kernel + ring_drops(&v)
        }
    })
}

/// Attaches the embedded object's `netdemux_drop` program in native mode to `veth_b`, from a
/// thread inside namespace b; dropping the returned object detaches it.
fn attach_drop(tb: &Testbed) -> Result<aya::Ebpf> {
    attach_floor(tb, program_names::DROP)
}

/// Attaches one of the object's floor programs (`netdemux_drop`, `netdemux_pass`) in native mode
/// to `veth_b`; dropping the returned object detaches it.
fn attach_floor(tb: &Testbed, name: &'static str) -> Result<aya::Ebpf> {
    let veth = tb.veth_b.clone();
    attached_in(&tb.ns_b, move |ebpf| {
        let prog = object::load_program(ebpf, name)?;
        let ifindex = netdemux::control::iface::Interface::link(&veth)?.ifindex()?;
        prog.attach_to_if_index(ifindex, aya::programs::XdpMode::Driver)?;
        Ok(())
    })
}

/// The embedded object, opened and given to `attach` on a thread inside namespace `ns` (where
/// interface names resolve); dropping the returned object detaches what `attach` attached.
fn attached_in(
    ns: &str,
    attach: impl FnOnce(&mut aya::Ebpf) -> Result<()> + Send + 'static,
) -> Result<aya::Ebpf> {
    in_netns(ns, move || -> Result<aya::Ebpf> {
        let mut ebpf = object::open(1)?;
        attach(&mut ebpf)?;
        Ok(ebpf)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("attach thread panicked"))?
}

/// The XDP program a receiver runs on the receiving veth (by name), for the live program-time
/// pass; `None` for a receiver without one or with the program in skb mode.
fn program_of(r: Receiver) -> Option<&'static str> {
    match r {
        Receiver::XdpDrop => Some(program_names::DROP),
        Receiver::KernelBehindPass => Some(program_names::PASS),
        Receiver::KernelBehindDemux | Receiver::AfXdpSink | Receiver::BareBehindDemux => {
            Some(program_names::DEMUX)
        }
        Receiver::BareConsumer => Some(program_names::REDIRECT_ALL),
        Receiver::BareBehindParse => Some(program_names::PARSE_REDIRECT),
        _ => None,
    }
}

/// Run time and run count of every loaded program named `name` (as the kernel keeps it: its
/// first 15 bytes), by program id.
fn program_runs(name: &str) -> Result<std::collections::HashMap<u32, (u64, u64)>> {
    let kept = &name[..name.len().min(15)];
    let mut out = std::collections::HashMap::new();
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info.name_as_str() == Some(kept) {
            out.insert(
                info.id(),
                (info.run_time().as_nanos() as u64, info.run_count()),
            );
        }
    }
    Ok(out)
}

/// The live cost of receiver `r`'s XDP program, with the kernel's own accounting on (the
/// caller holds BPF_ENABLE_STATS: the kernel reads the clock around every run), over `secs` of
/// load, in ns per run of the program that ran most. The clock reads are in every program's
/// figure alike, so the differences between programs are what it measures. Returns (ns per
/// run, runs).
fn program_time(tb: &Testbed, r: Receiver, name: &str, secs: f64) -> Result<(f64, u64)> {
    let s = set_up(tb, r, Layout::BusyPoll)?;
    let before = program_runs(name)?;
    let load = offer_load(tb, secs, false);
    let after = program_runs(name)?;
    tear_down(tb, r, s)?;
    load?;
    let (time, runs) = after
        .iter()
        .map(|(id, &(t, n))| {
            let (t0, n0) = before.get(id).copied().unwrap_or_default();
            (t - t0, n - n0)
        })
        .max_by_key(|&(_, n)| n)
        .unwrap_or_default();
    if runs == 0 {
        bail!("{}: no run of {name} counted", r.name());
    }
    Ok((time as f64 / runs as f64, runs))
}

fn offer_load(tb: &Testbed, secs: f64, mix: bool) -> Result<serde_json::Value> {
    let secs = secs.to_string();
    let mut args = vec!["--dst", "198.18.0.2:7000", "--duration", &secs];
    if mix {
        args.extend(["--hit-ratio", "0.5", "--miss-dst", "198.18.0.2:7001"]);
    }
    tb.generate(&args)
}

/// Repetitions of a full run (the report's) and of a quick one.
const FULL_REPS: usize = 8;
const QUICK_REPS: usize = 2;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only KEY,KEY` and `--layout pinned|busy_poll` narrow a run (for profiling; the report
    // wants the whole table).
    let only = support::flag_value(&args, "--only");
    let only_layout = support::flag_value(&args, "--layout");
    // Eight two-second repetitions in a full run: the placement of the vCPUs mostly holds for
    // a whole sample, so the fit at equal placement (see `report`) was expected to gain from
    // more samples more than from longer ones. It did not narrow: five of three seconds left
    // 95% intervals of ±8–11% (run 1796229566), eight of two ±11–13% (run 1796232025).
    let secs = 2.0;
    let usual_reps = if quick { QUICK_REPS } else { FULL_REPS };
    let mut reps = usual_reps;
    // `--reps N`: more repetitions for a partial run that settles a few ratios (the full run's
    // report wants its usual eight).
    if let Some(n) = support::flag_value(&args, "--reps") {
        reps = match n.parse::<usize>() {
            Ok(n) if (1..=200).contains(&n) => n,
            _ => bail!("--reps takes a count from 1 to 200, not {n}"),
        };
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the UDP benchmark creates namespaces and loads BPF programs: run it as root");
    }
    let tb = Testbed::new("ndb", 1, BIN)?;
    tb.pin_neighbours()?;
    // Where the host has the two vCPUs, recorded with every sample (see `support::placement`).
    let mut placement = support::placement::Placement::new();
    // The machine's speed on the generator's core before and after each sample (see
    // `support::speed`).
    let speed = support::speed::SpeedProbe::start(0)?;
    // The same on the receiver's core: recorded beside each sample, not fitted on (to learn
    // whether it tells the echo's levels apart, whose bottleneck is that core).
    let speed_receiver = support::speed::SpeedProbe::start(1)?;
    // The two sides of each ratio measured one right after the other in every repetition (the
    // sink with the bare consumers, the echo with the bare reflector, the miss with its two
    // baselines): a drift of the VM's speed over tens of seconds moves both sides alike.
    let receivers = [
        Receiver::XdpDrop,
        Receiver::KernelNoProgram,
        Receiver::KernelBehindDemux,
        Receiver::KernelBehindPass,
        Receiver::AfXdpSink,
        Receiver::BareConsumer,
        Receiver::BareBehindDemux,
        Receiver::BareBehindParse,
        Receiver::AfXdpEcho,
        Receiver::BareReflector,
        Receiver::AfXdpSinkSkb,
        Receiver::Mix,
    ];
    let receivers: Vec<Receiver> = receivers
        .into_iter()
        .filter(|r| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|k| r.key().starts_with(k)))
        })
        .collect();
    let layouts: Vec<Layout> = [Layout::Pinned, Layout::BusyPoll]
        .into_iter()
        .filter(|l| only_layout.as_deref().is_none_or(|o| o == l.key()))
        .collect();
    let partial = only.is_some() || only_layout.is_some() || reps != usual_reps;
    let mut samples: Vec<Vec<Vec<serde_json::Value>>> =
        vec![vec![Vec::new(); receivers.len()]; layouts.len()];
    for rep in 0..=reps {
        for (l, &layout) in layouts.iter().enumerate() {
            for (i, &r) in receivers.iter().enumerate() {
                let s = set_up(&tb, r, layout)?;
                if rep == 0 {
                    // Warm-up round, discarded.
                    offer_load(&tb, 1.0, r == Receiver::Mix)?;
                    tear_down(&tb, r, s)?;
                    continue;
                }
                // The speed probes lie outside the window of the CPU times (their test_run
                // calls busy each core for a millisecond or two).
                let speed_before = speed.ns()?;
                let speed_receiver_before = speed_receiver.ns()?;
                let arrived_before = if answers(r) { answers_arrived(&tb)? } else { 0 };
                let (before, drops_before, cpu_before) = (
                    received(&tb, r, &s)?,
                    receiver_drops(&tb, r, &s)?,
                    netdemux::testbed::cpu_times(),
                );
                let watch = support::placement::Watch::start();
                let g = offer_load(&tb, secs, r == Receiver::Mix);
                let bursts = watch.finish();
                let g = g?;
                thread::sleep(Duration::from_millis(300));
                let (after, drops_after, cpu_after) = (
                    received(&tb, r, &s)?,
                    receiver_drops(&tb, r, &s)?,
                    netdemux::testbed::cpu_times(),
                );
                let speed_after = speed.ns()?;
                let speed_receiver_after = speed_receiver.ns()?;
                let arrived = if answers(r) {
                    answers_arrived(&tb)? - arrived_before
                } else {
                    0
                };
                let duration = g["duration_s"].as_f64().unwrap_or(secs);
                let rate = (after - before) as f64 / duration;
                // CPU time of both cores per frame received: a cost that a saturated
                // generator's cap does not hide.
                let busy = netdemux::testbed::cpu_busy(&cpu_before, &cpu_after);
                let cpu_ns = busy.iter().sum::<f64>() * (duration + 0.3) * 1e9
                    / (after - before).max(1) as f64;
                let mut sample = serde_json::json!({
                    "cpu_ns_per_frame": cpu_ns,
                    "offered_mpps": g["pps"].as_f64().unwrap_or(0.0) / 1e6,
                    "received_mpps": rate / 1e6,
                    "receiver_drops": drops_after - drops_before,
                    "cpu_busy": busy,
                    "speed_ns": [speed_before, speed_after],
                    "speed_receiver_ns": [speed_receiver_before, speed_receiver_after],
                });
                if answers(r) {
                    // Sent but never at the peer (veth refused them: its backlog was full).
                    sample["answers_lost"] = (after - before).saturating_sub(arrived).into();
                }
                tear_down(&tb, r, s)?;
                placement.record(&bursts, &mut sample);
                eprintln!("rep {rep} {:<9} {:<52} {sample}", layout.key(), r.name());
                samples[l][i].push(sample);
            }
        }
    }
    // The programs' live cost (busy-poll layout): the receivers with a native-mode program,
    // interleaved, one sample each per repetition, the kernel's run-time stats on for this pass
    // only (after every rate sample). A kernel without BPF_ENABLE_STATS (before 5.8) skips the
    // pass, and says so; the rates stand on their own.
    let stats = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => Some(fd),
        Err(e) => {
            eprintln!("live program time skipped: the kernel's BPF run-time stats: {e}");
            None
        }
    };
    let timed: Vec<(Receiver, &str)> = if stats.is_some() && layouts.contains(&Layout::BusyPoll) {
        receivers
            .iter()
            .filter_map(|&r| Some((r, program_of(r)?)))
            .collect()
    } else {
        Vec::new()
    };
    let mut times: Vec<Vec<(f64, u64)>> = vec![Vec::new(); timed.len()];
    // At most a full run's passes: a long partial run is for the rates.
    for _ in 0..reps.min(FULL_REPS) {
        for (i, &(r, name)) in timed.iter().enumerate() {
            let t = program_time(&tb, r, name, secs.min(2.0))?;
            eprintln!(
                "program time {:<52} {name}: {:.1} ns per run ({} runs)",
                r.name(),
                t.0,
                t.1
            );
            times[i].push(t);
        }
    }
    drop(stats);
    drop(tb);

    let median = |v: &[serde_json::Value], k: &str| -> f64 {
        let mut x: Vec<f64> = v.iter().filter_map(|s| s[k].as_f64()).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!(
        "Receive rate under the same offered load: netdemux gen alone on CPU 0, 64-byte UDP, 1 veth"
    );
    println!(
        "queue, receiver on CPU 1; median of {reps}, interleaved. pinned: threaded NAPI on CPU 1, worker"
    );
    println!("in poll(2). busy-poll: softirq NAPI, worker --busy-poll --spin.\n");
    println!(
        "| receiver | pinned: offered | pinned: received | busy-poll: offered | busy-poll: received |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut rows = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    let mut rate = std::collections::HashMap::new();
    for (i, r) in receivers.iter().enumerate() {
        let mut cells = Vec::new();
        let mut per_layout = serde_json::Map::new();
        for (l, layout) in layouts.iter().enumerate() {
            let (o, m, c) = (
                median(&samples[l][i], "offered_mpps"),
                median(&samples[l][i], "received_mpps"),
                median(&samples[l][i], "cpu_ns_per_frame"),
            );
            cells.push(format!("{o:.2} | {m:.2}"));
            rate.insert((layout.key(), r.key()), m);
            per_layout.insert(
                layout.key().to_string(),
                serde_json::json!({"offered_mpps": o, "received_mpps": m, "cpu_ns_per_frame": c, "samples": samples[l][i]}),
            );
        }
        println!("| {} | {} |", r.name(), cells.join(" | "));
        rows.insert(r.key().to_string(), serde_json::Value::Object(per_layout));
    }
    let mut program_time = serde_json::Map::new();
    if !timed.is_empty() {
        println!(
            "\nXDP program time on the live path (busy-poll layout; the kernel's BPF run-time \
             stats, ns per run, median of {}):\n",
            reps.min(FULL_REPS)
        );
        println!("| receiver | program | ns per run | runs per sample |");
        println!("|---|---|---:|---:|");
    }
    for (&(r, name), t) in timed.iter().zip(&times) {
        let mut ns: Vec<f64> = t.iter().map(|s| s.0).collect();
        ns.sort_by(f64::total_cmp);
        let (m, runs) = (ns[ns.len() / 2], t.iter().map(|s| s.1).min().unwrap_or(0));
        println!("| {} | {name} | {m:.1} | {runs} |", r.name());
        program_time.insert(
            r.key().to_string(),
            serde_json::json!({"program": name, "ns_per_run": m, "samples_ns": ns, "min_runs": runs}),
        );
    }
    // What each part of the demux program costs live, over the program that redirects every
    // frame unread (and, for a miss, over the one that passes every frame).
    let live = |a: &str, b: &str| -> Option<f64> {
        Some(
            program_time.get(a)?["ns_per_run"].as_f64()?
                - program_time.get(b)?["ns_per_run"].as_f64()?,
        )
    };
    let program_live_ns = serde_json::json!({
        "hit_minus_redirect_all": live("rbd_bare_behind_demux", "rbc_bare_consumer"),
        "parse_minus_redirect_all": live("rbp_bare_behind_parse", "rbc_bare_consumer"),
        "hit_minus_parse": live("rbd_bare_behind_demux", "rbp_bare_behind_parse"),
        "sink_hit_minus_redirect_all": live("r2_afxdp_sink", "rbc_bare_consumer"),
        "miss_minus_pass": live("r1_demux_miss_kernel", "r1p_pass_kernel"),
    });
    if !timed.is_empty() {
        println!("\nlive program ns: {program_live_ns}");
    }
    let placement_summary = placement.summary();
    println!("\n{}", placement.report());
    if partial {
        println!();
        for (l, layout) in layouts.iter().enumerate() {
            let of = |key: &str| {
                let i = receivers.iter().position(|r| r.key() == key)?;
                Some(&samples[l][i])
            };
            for &(name, a, b) in &support::UDP_RATIOS {
                if let (Some(a), Some(b)) = (of(a), of(b)) {
                    let ratio = support::paired_ratio(a, b);
                    println!("{} {name}: {ratio}", layout.key());
                }
            }
        }
        println!("(a partial run: no results file)");
        return Ok(());
    }
    for &layout in &layouts {
        let ratio = |a: &str, b: &str| rate[&(layout.key(), a)] / rate[&(layout.key(), b)];
        let of_layout: serde_json::Map<String, serde_json::Value> = support::UDP_RATIOS
            .iter()
            .map(|&(name, a, b)| (name.to_string(), serde_json::json!(ratio(a, b))))
            .collect();
        ratios.insert(
            layout.key().to_string(),
            serde_json::Value::Object(of_layout),
        );
    }
    println!("\nratios: {}", serde_json::Value::Object(ratios.clone()));
    let out = serde_json::json!({
        "benchmark": "udp_receive",
        "quick": quick,
        "provenance": netdemux::testbed::provenance(quick),
        "seconds_per_sample": secs,
        "repetitions": reps,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "layouts": {
            "pinned": "1-queue veth; threaded NAPI and the receiver on CPU 1; generator on CPU 0; GRO on for Rnone only",
            "busy_poll": "1-queue veth; softirq NAPI; receiver on CPU 1 (AF_XDP worker busy-polling and spinning); generator on CPU 0",
        },
        "receivers": rows,
        "ratios": ratios,
        "program_time": program_time,
        "program_live_ns": program_live_ns,
        "placement": placement_summary,
    });
    netdemux::testbed::write_results("udp", &out)?;
    Ok(())
}
