//! `netdemux run`: attach (or reuse an attachment), bind the services' addresses, open one
//! AF_XDP socket per RX queue, put them in the XSKMAP, and run a worker per queue until told to
//! stop.
//!
//! Shutdown order keeps the NIC working: the sockets leave the XSKMAP first, so matching traffic
//! falls back to the kernel at once; then the workers stop and the sockets close; then the
//! bindings this run added are removed, and the program is detached if this run attached it. A
//! daemon that dies without this (kill -9) still fails open: the kernel removes a closed socket
//! from the XSKMAP itself, and the program's redirect falls back to XDP_PASS.

use std::{
    net::SocketAddr,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use super::{
    control::{self, DaemonReport, QueueReport, ServiceReport},
    worker::{self, WorkerConfig, WorkerStats},
};
use crate::{
    control::{
        attach::{self, ModeRequest},
        binding::Binding,
        state,
    },
    services::{Kind, ServiceTable},
    xsk::{XskConfig, XskSocket, ZeroCopy, nic},
};

/// Everything `netdemux run` is told.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Interface.
    pub iface: String,
    /// XDP mode if this run attaches.
    pub mode: ModeRequest,
    /// Binding table capacity if this run attaches.
    pub max_bindings: u32,
    /// RX queues to serve (all when `None`).
    pub queues: Option<Vec<u32>>,
    /// Require zero-copy.
    pub zero_copy: bool,
    /// Preferred busy polling.
    pub busy_poll: bool,
    /// Spin instead of poll(2).
    pub spin: bool,
    /// CPUs to pin workers to, queue i on `cpus[i % len]`.
    pub cpus: Vec<usize>,
    /// UDP sink addresses.
    pub udp_sinks: Vec<SocketAddr>,
    /// UDP echo addresses.
    pub udp_echoes: Vec<SocketAddr>,
    /// TCP echo addresses.
    pub tcp_echoes: Vec<SocketAddr>,
    /// HTTP responder addresses.
    pub https: Vec<SocketAddr>,
    /// Fault injection on the TCP services' segments (tests).
    pub faults: super::faults::FaultConfig,
    /// UMEM frames per queue.
    pub frames: u32,
    /// RX/TX ring size.
    pub ring_size: u32,
    /// Serve Prometheus metrics on this address.
    pub metrics: Option<SocketAddr>,
    /// Further bindings to hold while running (no service behind them).
    pub bindings: Vec<Binding>,
}

/// Parses a queue or CPU list such as `0,2-3`.
pub fn parse_list(s: &str) -> Result<Vec<u32>> {
    let shown = s.escape_debug();
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let bad = || anyhow::anyhow!("'{shown}' is not a list like 0,2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Runs the daemon until `stop` is set (by SIGINT/SIGTERM) or a worker fails.
pub fn run(cfg: &RunConfig, stop: Arc<AtomicBool>) -> Result<()> {
    let iface = cfg.iface.as_str();
    let ifindex = state::ifindex(iface)?;
    let services = Arc::new(ServiceTable::new(&service_list(cfg))?);

    // Attach, or reuse what is attached.
    let attached_here = match state::open(iface) {
        Ok(a) => {
            // Reusing an attachment: its program must be this build's, or the data path could
            // differ from what this daemon expects.
            if a.info.object_hash != crate::control::object::object_hash() {
                bail!(
                    "the XDP program on {iface} was loaded by another netdemux build: run \
                     `netdemux detach --iface {iface}` (its bindings go with it), then run again"
                );
            }
            false
        }
        Err(_) if !state::dir_for(iface)?.exists() => {
            let a = attach::attach(iface, cfg.mode, cfg.max_bindings)?;
            println!(
                "attached to {iface} in {} mode (program {})",
                a.mode, a.program_id
            );
            if let Some(note) = a.note {
                println!("note: {note}");
            }
            true
        }
        Err(e) => return Err(e),
    };
    let (listener, socket_path) = match control::bind(iface) {
        Ok(l) => l,
        Err(e) => {
            if attached_here {
                attach::detach(iface)?;
            }
            return Err(e);
        }
    };
    tracing::info!(iface, attached_here, "daemon starting");
    let result = serve(cfg, ifindex, services, listener, &stop);
    match &result {
        Ok(added) => tracing::info!(iface, bindings_added = added.len(), "daemon stopping"),
        Err(e) => tracing::error!(iface, "daemon failed: {e:#}"),
    }
    control::remove_socket(&socket_path);
    // Tidy bindings and the attachment whatever happened while serving.
    let tidy = tidy_up(
        cfg,
        attached_here,
        result.as_ref().ok().map(|v| v.as_slice()),
    );
    result.and(tidy)
}

/// The serving part; returns the bindings this run added, for [`tidy_up`].
fn serve(
    cfg: &RunConfig,
    ifindex: u32,
    services: Arc<ServiceTable>,
    listener: std::os::unix::net::UnixListener,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<Binding>> {
    let iface = cfg.iface.as_str();
    let mut attachment = state::open(iface)?;
    let skb_mode = state::mode_name(attachment.info.mode) == "skb";
    for w in nic::offload_warnings(iface, skb_mode) {
        tracing::warn!("{w}");
    }

    // Bind the services' addresses (keeping those already bound, e.g. by a run that died).
    let mut added = Vec::new();
    {
        let _lock = attachment.lock()?;
        let existing = attachment.maps.bindings()?;
        let service_bindings = services.services().iter().map(|&(kind, addr)| Binding {
            proto: kind.proto(),
            addr,
        });
        for b in service_bindings.chain(cfg.bindings.iter().copied()) {
            if !existing.contains(&b) && !added.contains(&b) {
                attachment.maps.bind(&b)?;
                added.push(b);
            }
        }
    }

    let available = nic::rx_queues(iface);
    let queues = match &cfg.queues {
        Some(q) => {
            if let Some(bad) = q.iter().find(|&&q| q >= available) {
                bail!(
                    "{iface} has {available} RX queue(s) (0-{}): there is no queue {bad}",
                    available - 1
                );
            }
            q.clone()
        }
        None => (0..available).collect(),
    };
    if queues.iter().any(|&q| q >= netdemux_common::MAX_QUEUES) {
        bail!(
            "netdemux serves RX queues below {}",
            netdemux_common::MAX_QUEUES
        );
    }

    let xcfg = XskConfig {
        frames: cfg.frames,
        ring_size: cfg.ring_size,
        zero_copy: if cfg.zero_copy {
            ZeroCopy::Require
        } else {
            ZeroCopy::Auto
        },
        busy_poll: cfg.busy_poll,
        ..XskConfig::default()
    };
    let mac = nic::mac_address(iface)?;
    let tcp_config = crate::stack::tcp::Config {
        mss: nic::tcp_mss(iface, xcfg.frame_size),
        ..crate::stack::tcp::Config::default()
    };
    let worker_stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut stats = Vec::new();
    let mut installed = Vec::new();
    let started = (|| -> Result<()> {
        for (i, &q) in queues.iter().enumerate() {
            let sock = XskSocket::open(ifindex, q, &xcfg).map_err(|e| {
                if cfg.zero_copy && e.error.raw_os_error() == Some(libc::EOPNOTSUPP) {
                    anyhow::anyhow!(
                        "the driver of {iface} refuses zero-copy AF_XDP on queue {q} (veth and \
                         skb-mode XDP only do copy mode): drop --zero-copy"
                    )
                } else {
                    anyhow::Error::new(e)
                        .context(format!("cannot open an AF_XDP socket on {iface} queue {q}"))
                }
            })?;
            attachment
                .maps
                .xsks
                .set(q, sock.as_fd().as_raw_fd(), 0)
                .with_context(|| format!("cannot install the socket of queue {q} in the XSKMAP"))?;
            installed.push(q);
            let ws = Arc::new(WorkerStats::new(
                q,
                sock.zero_copy(),
                services.services().len(),
            ));
            let wcfg = WorkerConfig {
                spin: cfg.spin,
                cpu: (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]),
                mac,
                tcp: tcp_config,
                tcp_limits: crate::stack::tcp::Limits::default(),
                faults: cfg.faults,
            };
            workers.push(worker::spawn(
                sock,
                services.clone(),
                ws.clone(),
                worker_stop.clone(),
                wcfg,
                None,
            )?);
            stats.push(ws);
        }
        Ok(())
    })();

    // The program's own log records, when the logs ask for them (RUST_LOG=netdemux::xdp=debug).
    let xdp_log_stop = Arc::new(AtomicBool::new(false));
    let xdp_log = match (&started, super::xdp_log::wanted()) {
        (Ok(()), true) => start_xdp_log(&mut attachment, xdp_log_stop.clone()),
        _ => {
            if attachment.info.log != 0 {
                // Left on by a daemon that was killed: nobody reads the records now.
                set_xdp_log(&mut attachment, false);
            }
            None
        }
    };

    let report = {
        let (stats, sinks) = (stats.clone(), services.clone());
        move || build_report(&stats, &sinks)
    };
    let control_stop = Arc::new(AtomicBool::new(false));
    let control = match &started {
        Ok(()) => Some(control::serve(listener, control_stop.clone(), report)?),
        Err(_) => None,
    };
    let metrics = match (&started, cfg.metrics) {
        (Ok(()), Some(addr)) => {
            let maps = crate::control::maps::DemuxMaps::open_pinned(&attachment.dir)?;
            let (stats, services, iface) = (stats.clone(), services.clone(), iface.to_string());
            let render = move || match crate::control::stats::Snapshot::read(&iface, &maps) {
                Ok(snap) => {
                    crate::control::metrics::render(&snap, Some(&build_report(&stats, &services)))
                }
                Err(e) => format!("# netdemux: cannot read the counters: {e:#}\n"),
            };
            Some(super::metrics_http::serve(
                addr,
                control_stop.clone(),
                render,
            )?)
        }
        _ => None,
    };
    if started.is_ok() {
        let modes: Vec<String> = stats
            .iter()
            .map(|s| {
                format!(
                    "{} ({})",
                    s.queue,
                    if s.zero_copy { "zero-copy" } else { "copy" }
                )
            })
            .collect();
        let service_names: Vec<String> = services
            .services()
            .iter()
            .map(|(k, a)| format!("{} {a}", k.name()))
            .collect();
        println!(
            "serving {iface}: queues {}; {}; stats: netdemux stats --iface {iface}",
            modes.join(", "),
            if service_names.is_empty() {
                "no services".to_string()
            } else {
                service_names.join(", ")
            }
        );
        // Wait for a signal, or for a worker to end on its own (an error).
        while !stop.load(Ordering::Relaxed) && workers.iter().all(|w| !w.is_finished()) {
            thread::sleep(Duration::from_millis(50));
        }
    }

    // Shutdown: traffic back to the kernel first, then stop the workers.
    for &q in &installed {
        let _ = attachment.maps.xsks.unset(q);
    }
    tracing::info!(iface, queues = ?installed, "sockets out of the XSKMAP: traffic back to the kernel");
    worker_stop.store(true, Ordering::Relaxed);
    let mut first_error = started.err();
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow::anyhow!("a queue worker panicked"));
            }
        }
    }
    if let Some(h) = xdp_log {
        set_xdp_log(&mut attachment, false);
        xdp_log_stop.store(true, Ordering::Relaxed);
        let _ = h.join();
    }
    control_stop.store(true, Ordering::Relaxed);
    if let Some(c) = control {
        let _ = c.join();
    }
    if let Some(m) = metrics {
        let _ = m.join();
    }
    match first_error {
        None => Ok(added),
        Some(e) => {
            // Still remove what this run bound before reporting the failure.
            let _ = unbind_all(iface, &added);
            Err(e)
        }
    }
}

/// Switches the program's logging on or off in the pinned state.
fn set_xdp_log(attachment: &mut state::Attachment, on: bool) {
    let mut info = attachment.info;
    info.log = u32::from(on);
    if let Err(e) = attachment.maps.write_info(&info) {
        tracing::warn!("cannot switch the XDP program's logging: {e:#}");
    }
}

/// Starts reading the program's log records and switches its logging on.
fn start_xdp_log(
    attachment: &mut state::Attachment,
    stop: Arc<AtomicBool>,
) -> Option<thread::JoinHandle<()>> {
    let id = attachment.link.as_ref()?.prog_id;
    match super::xdp_log::start(id, stop) {
        Ok(h) => {
            set_xdp_log(attachment, true);
            tracing::info!(
                program = id,
                "XDP program log records go to target netdemux::xdp"
            );
            Some(h)
        }
        Err(e) => {
            tracing::warn!("no XDP program logs: {e:#}");
            None
        }
    }
}

fn unbind_all(iface: &str, bindings: &[Binding]) -> Result<()> {
    if bindings.is_empty() {
        return Ok(());
    }
    let mut a = state::open(iface)?;
    let _lock = a.lock()?;
    for b in bindings {
        let _ = a.maps.unbind(b);
    }
    Ok(())
}

fn tidy_up(cfg: &RunConfig, attached_here: bool, added: Option<&[Binding]>) -> Result<()> {
    if attached_here {
        attach::detach(&cfg.iface)?;
        println!("detached from {}", cfg.iface);
    } else if let Some(added) = added {
        unbind_all(&cfg.iface, added)?;
    }
    Ok(())
}

/// The services a run was given, sinks first.
fn service_list(cfg: &RunConfig) -> Vec<(Kind, SocketAddr)> {
    let sinks = cfg.udp_sinks.iter().map(|&a| (Kind::UdpSink, a));
    sinks
        .chain(cfg.udp_echoes.iter().map(|&a| (Kind::UdpEcho, a)))
        .chain(cfg.tcp_echoes.iter().map(|&a| (Kind::TcpEcho, a)))
        .chain(cfg.https.iter().map(|&a| (Kind::Http, a)))
        .collect()
}

fn build_report(stats: &[Arc<WorkerStats>], sinks: &ServiceTable) -> DaemonReport {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let has_tcp = sinks.services().iter().any(|(k, _)| k.is_tcp());
    let queues = stats
        .iter()
        .map(|s| QueueReport {
            queue: s.queue,
            mode: if s.zero_copy { "zero-copy" } else { "copy" }.to_string(),
            rx: load(&s.rx),
            rx_dropped: load(&s.rx_dropped),
            rx_ring_full: load(&s.rx_ring_full),
            fill_ring_empty: load(&s.fill_ring_empty),
            invalid_descs: load(&s.invalid_descs),
            tx: load(&s.tx),
            tx_dropped: load(&s.tx_dropped),
            unclaimed: load(&s.unclaimed),
            tcp: if has_tcp {
                s.tcp_report()
            } else {
                Default::default()
            },
        })
        .collect();
    let services = sinks
        .services()
        .iter()
        .enumerate()
        .map(|(i, (kind, addr))| ServiceReport {
            kind: kind.name().to_string(),
            addr: addr.to_string(),
            packets: stats.iter().map(|s| load(&s.services[i].packets)).sum(),
            bytes: stats.iter().map(|s| load(&s.services[i].bytes)).sum(),
            unanswered: stats.iter().map(|s| load(&s.services[i].unanswered)).sum(),
        })
        .collect();
    DaemonReport {
        pid: std::process::id(),
        queues,
        services,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_lists() {
        assert_eq!(parse_list("0").unwrap(), vec![0]);
        assert_eq!(parse_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_list("3,1,1-2").unwrap(), vec![1, 2, 3]);
        for bad in ["", "a", "1-", "3-1", "-1", "0,,1", "0-100000"] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
    }
}
