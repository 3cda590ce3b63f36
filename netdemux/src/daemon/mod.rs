//! `netdemux run`: the data plane ([`crate::runtime::dataplane`]) with the built-in services,
//! a control socket through which `netdemux stats` reads the live counters, optionally a
//! Prometheus endpoint ([`metrics_http`]) and the XDP program's own log records ([`xdp_log`]),
//! until SIGINT/SIGTERM. The whole run can come from a TOML file ([`config`]).
//!
//! Shutdown order keeps the NIC working: the sockets leave the XSKMAP first, so matching traffic
//! falls back to the kernel at once; then the workers stop and the sockets close; then the
//! bindings this run added are removed, and the program is detached if this run attached it.

pub mod config;
pub mod metrics_http;
pub mod proxy;
pub mod xdp_log;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::Result;

use crate::{
    control::{
        attach::ModeRequest, attachment::Attachment, binding::Binding, iface::Interface,
        lock::Role, maps::DemuxMaps, stats::Snapshot,
    },
    report::{ProxyReport, control_socket, prometheus},
    runtime::{
        dataplane::{self, DataPlane, DataPlaneConfig},
        faults::FaultConfig,
        worker::stats::BusyPoll,
    },
    services::{Kind, ServiceTable},
    xsk::{XskConfig, ZeroCopy},
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
    /// Fault injection on TCP frames (tests).
    pub faults: FaultConfig,
    /// UMEM frames per queue.
    pub frames: u32,
    /// RX/TX ring size.
    pub ring_size: u32,
    /// Serve Prometheus metrics on this address.
    pub metrics: Option<SocketAddr>,
    /// Further bindings to hold while running (no service behind them).
    pub bindings: Vec<Binding>,
    /// The most memory the TCP connections' buffers take (bytes).
    pub tcp_memory: usize,
    /// TCP service connections with no news for this long are closed.
    pub tcp_idle_timeout: Duration,
    /// How long a peer's MAC address counts as fresh.
    pub neighbour_lifetime: Duration,
    /// TCP and UDP proxies.
    pub proxies: Vec<proxy::ProxySpec>,
    /// How long a UDP proxy session may stay quiet.
    pub udp_proxy_timeout: Duration,
}

/// Parses a size such as `65536`, `512K`, `64M` or `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize> {
    let shown = s.escape_debug();
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => anyhow::bail!("'{shown}' is not a size: write bytes or K/M/G, e.g. 64M"),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("'{shown}' is not a size: write bytes or K/M/G, e.g. 64M"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| anyhow::anyhow!("'{shown}' is not a size between 1 byte and 2^64"))
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

/// Runs the daemon on `iface` until `stop` is set (by SIGINT/SIGTERM) or a worker fails.
pub fn run(iface: &Interface, cfg: &RunConfig, stop: Arc<AtomicBool>) -> Result<()> {
    let services = Arc::new(ServiceTable::new(&service_list(cfg))?);
    let mut prepared = dataplane::prepare(iface, dataplane_config(cfg), Role::Daemon)?;
    if let Some(a) = prepared.attached() {
        println!(
            "attached to {iface} in {} mode (program {})",
            a.mode, a.program_id
        );
        if let Some(note) = &a.note {
            println!("note: {note}");
        }
    }
    // The owner lock is held (prepare): no other daemon binds or removes this socket.
    let (listener, socket_path) = control_socket::bind(iface)?;
    prepared.own_file(socket_path);
    tracing::info!(
        iface = iface.name(),
        attached_here = prepared.attached().is_some(),
        "daemon starting"
    );
    let service_bindings = services.services().iter().map(|&(kind, addr)| Binding {
        proto: kind.proto(),
        addr,
    });
    let started = prepared
        .hold(service_bindings.chain(cfg.bindings.iter().copied()))
        .and_then(|()| prepared.start(services.clone()));
    let result = match started {
        Ok(plane) => serve(plane, cfg, &services, listener, &stop),
        Err(e) => Err(e),
    };
    match &result {
        Ok(()) => tracing::info!(iface = iface.name(), "daemon stopped"),
        Err(e) => tracing::error!(iface = iface.name(), "daemon failed: {e:#}"),
    }
    result
}

/// The data plane's part of a run's configuration.
fn dataplane_config(cfg: &RunConfig) -> DataPlaneConfig {
    DataPlaneConfig {
        mode: cfg.mode,
        max_bindings: cfg.max_bindings,
        queues: cfg.queues.clone(),
        xsk: XskConfig {
            frames: cfg.frames,
            ring_size: cfg.ring_size,
            zero_copy: if cfg.zero_copy {
                ZeroCopy::Require
            } else {
                ZeroCopy::Auto
            },
            busy_poll: cfg.busy_poll,
            ..XskConfig::default()
        },
        spin: cfg.spin,
        cpus: cfg.cpus.clone(),
        faults: cfg.faults,
        // The proxies are built on the application API.
        application: !cfg.proxies.is_empty(),
        tcp_memory: cfg.tcp_memory,
        tcp_idle_timeout: cfg.tcp_idle_timeout,
        neighbour_lifetime: cfg.neighbour_lifetime,
    }
}

/// Serves until `stop` is set or a worker fails, then shuts down in order (the proxies first:
/// their connections are reset while the workers still run).
fn serve(
    plane: DataPlane,
    cfg: &RunConfig,
    services: &ServiceTable,
    listener: std::os::unix::net::UnixListener,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    let plane = Arc::new(plane);
    let proxies = if cfg.proxies.is_empty() {
        None
    } else {
        Some(proxy::Proxies::start(
            plane.clone(),
            None,
            &cfg.proxies,
            cfg.udp_proxy_timeout,
        )?)
    };
    let proxy_report = proxies.as_ref().map(|p| p.reporter());
    let result = serve_plane(&plane, cfg, services, listener, stop, proxy_report);
    if let Some(p) = proxies {
        p.stop();
    }
    let Ok(plane) = Arc::try_unwrap(plane) else {
        anyhow::bail!("the data plane is still in use after the proxies stopped");
    };
    let (threads, threads_stop, xdp_log) = result?;
    finish(plane, threads, threads_stop, xdp_log)
}

type Threads = Result<Vec<thread::JoinHandle<()>>>;
/// The thread reading the program's log records, and its stop flag.
type XdpLog = (Option<thread::JoinHandle<()>>, Arc<AtomicBool>);

/// Starts the threads beside the workers and serves until `stop` or a worker ends. Returns
/// the threads, their stop flag and the log reader, for [`finish`].
fn serve_plane(
    plane: &DataPlane,
    cfg: &RunConfig,
    services: &ServiceTable,
    listener: std::os::unix::net::UnixListener,
    stop: &Arc<AtomicBool>,
    proxies: Option<impl Fn() -> Vec<ProxyReport> + Send + Sync + 'static>,
) -> Result<(Threads, Arc<AtomicBool>, XdpLog)> {
    let iface = plane.iface().clone();
    // The program's own log records, when the logs ask for them (RUST_LOG=netdemux::xdp=debug).
    let xdp_log_stop = Arc::new(AtomicBool::new(false));
    let xdp_log = if xdp_log::wanted() {
        start_xdp_log(&mut plane.attachment(), xdp_log_stop.clone())
    } else {
        let mut a = plane.attachment();
        if a.info.log != 0 {
            // Left on by a daemon that was killed: nobody reads the records now.
            set_xdp_log(&mut a, false);
        }
        None
    };
    let threads_stop = Arc::new(AtomicBool::new(false));
    let threads = start_threads(plane, cfg, listener, &threads_stop, proxies);
    if threads.is_ok() {
        let modes: Vec<String> = plane
            .queues()
            .iter()
            .map(|s| match s.busy_poll {
                BusyPoll::Off => format!("{} ({})", s.queue, s.mode()),
                b => format!("{} ({}, busy-poll {})", s.queue, s.mode(), b.name()),
            })
            .collect();
        let mut names: Vec<String> = services
            .services()
            .iter()
            .map(|(k, a)| format!("{} {a}", k.name()))
            .collect();
        names.extend(
            cfg.proxies
                .iter()
                .map(|p| format!("{} {} -> {}", p.kind.name(), p.listen, p.backend)),
        );
        println!(
            "serving {iface}: queues {}; {}; stats: netdemux stats --iface {iface}",
            modes.join(", "),
            if names.is_empty() {
                "no services".to_string()
            } else {
                names.join(", ")
            }
        );
        // Wait for a signal, or for a worker to end on its own (an error).
        while !stop.load(Ordering::Relaxed) && !plane.worker_ended() {
            thread::sleep(Duration::from_millis(50));
        }
    }
    Ok((threads, threads_stop, (xdp_log, xdp_log_stop)))
}

/// Shutdown: traffic back to the kernel first, then the workers, then the threads beside
/// them; then the bindings this run added, or the attachment it made.
fn finish(
    mut plane: DataPlane,
    threads: Threads,
    threads_stop: Arc<AtomicBool>,
    (xdp_log, xdp_log_stop): XdpLog,
) -> Result<()> {
    let iface = plane.iface().clone();
    let stopped = plane.stop();
    if let Some(h) = xdp_log {
        set_xdp_log(&mut plane.attachment(), false);
        xdp_log_stop.store(true, Ordering::Relaxed);
        let _ = h.join();
    }
    threads_stop.store(true, Ordering::Relaxed);
    let threads = threads.map(|handles| {
        for h in handles {
            let _ = h.join();
        }
    });
    let detached = plane.finish();
    if let Ok(true) = detached {
        println!("detached from {iface}");
    }
    stopped.and(threads).and(detached.map(|_| ()))
}

/// The control socket's thread and, with `--metrics`, the metrics endpoint's.
fn start_threads(
    plane: &DataPlane,
    cfg: &RunConfig,
    listener: std::os::unix::net::UnixListener,
    stop: &Arc<AtomicBool>,
    proxies: Option<impl Fn() -> Vec<ProxyReport> + Send + Sync + 'static>,
) -> Result<Vec<thread::JoinHandle<()>>> {
    let (base, proxies) = (plane.reporter(), proxies.map(Arc::new));
    let reporter = move || {
        let mut r = base();
        if let Some(p) = &proxies {
            r.proxies = p();
        }
        r
    };
    let reporter = Arc::new(reporter);
    let report = {
        let r = reporter.clone();
        move || r()
    };
    let mut handles = vec![control_socket::serve(listener, stop.clone(), report)?];
    if let Some(addr) = cfg.metrics {
        let maps = DemuxMaps::open_pinned(&plane.attachment().dir)?;
        let (report, name) = (reporter.clone(), plane.iface().name().to_string());
        let render = move || match Snapshot::read(&name, &maps) {
            Ok(snap) => prometheus::render(&snap, Some(&report())),
            Err(e) => format!("# netdemux: cannot read the counters: {e:#}\n"),
        };
        handles.push(metrics_http::serve(addr, stop.clone(), render)?);
    }
    Ok(handles)
}

/// Switches the program's logging on or off in the pinned state.
fn set_xdp_log(attachment: &mut Attachment, on: bool) {
    let mut info = attachment.info;
    info.log = u32::from(on);
    if let Err(e) = attachment.maps.write_info(&info) {
        tracing::warn!("cannot switch the XDP program's logging: {e:#}");
    }
}

/// Starts reading the program's log records and switches its logging on.
fn start_xdp_log(
    attachment: &mut Attachment,
    stop: Arc<AtomicBool>,
) -> Option<thread::JoinHandle<()>> {
    let id = attachment.link.as_ref()?.prog_id;
    match xdp_log::start(id, stop) {
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

/// The services a run was given, sinks first.
fn service_list(cfg: &RunConfig) -> Vec<(Kind, SocketAddr)> {
    let sinks = cfg.udp_sinks.iter().map(|&a| (Kind::UdpSink, a));
    sinks
        .chain(cfg.udp_echoes.iter().map(|&a| (Kind::UdpEcho, a)))
        .chain(cfg.tcp_echoes.iter().map(|&a| (Kind::TcpEcho, a)))
        .chain(cfg.https.iter().map(|&a| (Kind::Http, a)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("3mb").unwrap(), 3 << 20);
        for bad in ["", "0", "M", "12X", "-1", "1.5G", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

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
