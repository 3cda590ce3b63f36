//! One data-plane start-up, for the daemon (`netdemux run`) and for the library's `Stack`.
//!
//! Two halves, as in Firedancer's tiles: [`prepare`] does everything that needs privileges —
//! it refuses an interface another daemon serves, attaches the program (or reuses this build's
//! attachment), checks the queues, warns about offloads, and opens one AF_XDP socket per
//! queue — and [`Prepared::start`] runs: it puts the sockets in the XSKMAP and starts a worker
//! per queue, and the neighbour resolver.
//!
//! A guard undoes a half-finished start: whatever fails, the sockets leave the XSKMAP, the
//! workers stop, the bindings this data plane added are removed, and the program is detached
//! if this data plane attached it. Shutdown runs in the same order, so the NIC keeps working:
//! traffic falls back to the kernel first, then the workers stop, then the state goes. A
//! process that dies without it (kill -9) still fails open: the kernel removes a closed socket
//! from the XSKMAP itself, and the program's redirect falls back to XDP_PASS.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use crossbeam_queue::ArrayQueue;

use super::{
    faults::{FaultConfig, Faults, Faulty},
    resolver,
    worker::{
        self, WorkerApplication, WorkerConfig,
        stats::{BusyPoll, WorkerStats},
        tcp_sockets::TcpSetup,
    },
};
use crate::{
    bridge::{Bridge, link::RESOLVED_QUEUE},
    control::{
        attach::{self, Attached, ModeRequest},
        attachment::{self, Attachment},
        binding::Binding,
        iface::Interface,
        lock::{OwnerLock, Role, StateLock},
        object, state, veth,
    },
    counters::AtomicSet as _,
    report::{DaemonReport, ServiceCounters, ServiceReport, TcpMemory},
    services::ServiceTable,
    stack::{
        neighbour_cache,
        tcp::{self, MemoryBudget},
    },
    xsk::{XskConfig, XskSocket, ZeroCopy, nic},
};

/// How a data plane is set up.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// XDP mode, if this data plane attaches the program.
    pub mode: ModeRequest,
    /// Capacity of the binding table, if it attaches.
    pub max_bindings: u32,
    /// RX queues to serve (all when `None`).
    pub queues: Option<Vec<u32>>,
    /// The AF_XDP sockets.
    pub xsk: XskConfig,
    /// Spin on the RX rings instead of poll(2).
    pub spin: bool,
    /// CPUs to pin workers to, queue i on `cpus[i % len]`.
    pub cpus: Vec<usize>,
    /// Fault injection on TCP frames (tests).
    pub faults: FaultConfig,
    /// Serve an application (`Stack`): a bridge to every worker.
    pub application: bool,
    /// The most memory the TCP connections' buffers take, over all queues.
    pub tcp_memory: usize,
    /// Service connections with no news for this long are closed.
    pub tcp_idle_timeout: Duration,
    /// How long a peer's MAC address counts as fresh before the kernel is asked again.
    pub neighbour_lifetime: Duration,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            mode: ModeRequest::Auto,
            max_bindings: netdemux_common::DEFAULT_MAX_BINDINGS,
            queues: None,
            xsk: XskConfig::default(),
            spin: false,
            cpus: Vec::new(),
            faults: FaultConfig::default(),
            application: false,
            tcp_memory: MemoryBudget::default_limit(),
            tcp_idle_timeout: Duration::from_secs(60),
            neighbour_lifetime: neighbour_cache::ENTRY_LIFETIME,
        }
    }
}

impl DataPlaneConfig {
    /// The CPU the worker of the `i`-th served queue is pinned to, if any.
    fn cpu_of(&self, i: usize) -> Option<usize> {
        (!self.cpus.is_empty()).then(|| self.cpus[i % self.cpus.len()])
    }
}

/// What a data plane undoes when it goes: the bindings it added, the attachment it made, and
/// the files it owns (the daemon's control socket); then it gives up the interface.
struct Undo {
    iface: Interface,
    attached_here: bool,
    added: Vec<Binding>,
    /// Removed before the owner lock is released, so they never remove a successor's.
    owned_files: Vec<std::path::PathBuf>,
    done: bool,
    /// Dropped last (field order): the interface is free only once all the above is undone.
    _owner: OwnerLock,
}

impl Undo {
    /// Removes what this data plane added; returns true when it detached the program.
    fn run(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        self.done = true;
        for f in &self.owned_files {
            let _ = std::fs::remove_file(f);
        }
        let lock = StateLock::acquire(&self.iface)?;
        if self.attached_here {
            attach::detach_locked(&lock, &self.iface)?;
            return Ok(true);
        }
        if !self.added.is_empty() {
            let mut a = attachment::open(&self.iface)?;
            for b in &self.added {
                let _ = a.maps.unbind(b);
            }
        }
        Ok(false)
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Err(e) = self.run() {
            tracing::warn!(
                iface = self.iface.name(),
                "cleaning up after the data plane: {e:#}"
            );
        }
    }
}

/// The privileged half done: attached, checked, one socket open per queue.
pub struct Prepared {
    cfg: DataPlaneConfig,
    attachment: Attachment,
    attached: Option<Attached>,
    sockets: Vec<XskSocket>,
    mac: [u8; 6],
    tcp: tcp::Config,
    undo: Undo,
}

/// The privileged set-up of a data plane on `iface` for `role`; see the module's
/// documentation.
pub fn prepare(iface: &Interface, cfg: DataPlaneConfig, role: Role) -> Result<Prepared> {
    let ifindex = iface.ifindex()?;
    // One data plane per interface: a second is refused here, naming the first's pid, before
    // it changes anything.
    let owner = OwnerLock::acquire(iface, role)?;
    let (attachment, attached) = {
        let lock = StateLock::acquire(iface)?;
        attach_or_reuse(&lock, iface, &cfg)?
    };
    let undo = Undo {
        iface: iface.clone(),
        attached_here: attached.is_some(),
        added: Vec::new(),
        owned_files: Vec::new(),
        done: false,
        _owner: owner,
    };
    let skb_mode = state::mode_name(attachment.info.mode) == "skb";
    for w in nic::offload_warnings(iface.name(), skb_mode) {
        tracing::warn!("{w}");
    }
    if let Some(w) = veth::offload_warning(iface) {
        tracing::warn!("{w}");
    }
    let queues = queues(iface, cfg.queues.as_deref())?;
    let mut sockets = Vec::with_capacity(queues.len());
    for q in queues {
        let xsk = if cfg.spin {
            cfg.xsk.spinning()
        } else {
            cfg.xsk
        };
        let sock = XskSocket::open(ifindex, q, &xsk).map_err(|e| {
            if cfg.xsk.zero_copy == ZeroCopy::Require
                && e.error.raw_os_error() == Some(libc::EOPNOTSUPP)
            {
                anyhow::anyhow!(
                    "the driver of {iface} refuses zero-copy AF_XDP on queue {q} (veth and \
                     skb-mode XDP only do copy mode): drop --zero-copy"
                )
            } else {
                anyhow::Error::new(e)
                    .context(format!("cannot open an AF_XDP socket on {iface} queue {q}"))
            }
        })?;
        sockets.push(sock);
    }
    let tcp = tcp::Config {
        mss: nic::tcp_mss(iface.name(), cfg.xsk.rx_room()),
        ..tcp::Config::default()
    };
    Ok(Prepared {
        mac: nic::mac_address(iface.name())?,
        cfg,
        attachment,
        attached,
        sockets,
        tcp,
        undo,
    })
}

/// The warning for `--busy-poll` on queues whose driver registered no NAPI instance for them
/// (veth): the kernel then busy-polls nothing and the option changes nothing.
fn busy_poll_warning(
    iface: &Interface,
    cfg: &DataPlaneConfig,
    queues: &[Arc<WorkerStats>],
) -> Option<String> {
    let without: Vec<String> = queues
        .iter()
        .filter(|s| s.busy_poll == BusyPoll::NoNapi)
        .map(|s| s.queue.to_string())
        .collect();
    (!without.is_empty()).then(|| {
        format!(
            "--busy-poll does nothing on {iface} queue {}: its driver gives the kernel no NAPI \
             instance to poll there (SO_INCOMING_NAPI_ID 0, as on veth), so frames are still \
             received in the kernel's softirq{}",
            without.join(", "),
            if cfg.spin {
                "; the workers spin on their rings (--spin)"
            } else {
                "; add --spin to poll the rings without sleeping"
            }
        )
    })
}

/// The warning for `--spin` workers pinned two or more to one CPU: they take turns at the
/// scheduler's pace, and a queue whose worker waits for its turn drops what arrives once its
/// fill ring runs out (the socket counts it: `rx_dropped`, `fill_ring_empty`).
fn shared_spin_warning(cfg: &DataPlaneConfig, queues: &[Arc<WorkerStats>]) -> Option<String> {
    if !cfg.spin {
        return None;
    }
    let mut on_cpu: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, s) in queues.iter().enumerate() {
        if let Some(cpu) = cfg.cpu_of(i) {
            on_cpu.entry(cpu).or_default().push(s.queue.to_string());
        }
    }
    let shared: Vec<String> = on_cpu
        .iter()
        .filter(|(_, q)| q.len() > 1)
        .map(|(cpu, q)| format!("queues {} on CPU {cpu}", q.join(", ")))
        .collect();
    (!shared.is_empty()).then(|| {
        format!(
            "--spin with {}: spinning workers that share a CPU take turns at the scheduler's \
             pace, and a queue whose worker waits drops what arrives once its fill ring runs \
             out (counted in its rx_dropped); give each queue a CPU of its own in --cpu, or \
             leave out --spin",
            shared.join("; ")
        )
    })
}

/// Reuses the attachment of `iface` if this build made it, or attaches.
fn attach_or_reuse(
    lock: &StateLock,
    iface: &Interface,
    cfg: &DataPlaneConfig,
) -> Result<(Attachment, Option<Attached>)> {
    attach::remove_if_stale_locked(lock, iface)?;
    match attachment::open(iface) {
        Ok(a) => {
            // Reusing an attachment: its program must be this build's, or the data path could
            // differ from what the workers expect.
            if a.info.object_hash != object::object_hash() {
                bail!(
                    "the XDP program on {iface} was loaded by another netdemux build: run \
                     `netdemux detach --iface {iface}` (its bindings go with it), then run again"
                );
            }
            Ok((a, None))
        }
        Err(_) if !iface.state_dir()?.exists() => {
            let attached = attach::attach_locked(lock, iface, cfg.mode, cfg.max_bindings)?;
            match attachment::open(iface) {
                Ok(a) => Ok((a, Some(attached))),
                Err(e) => {
                    let _ = attach::detach_locked(lock, iface);
                    Err(e)
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// The RX queues to serve: all of `iface`'s, or those asked for, which must exist.
fn queues(iface: &Interface, asked: Option<&[u32]>) -> Result<Vec<u32>> {
    let available = nic::rx_queues(iface.name());
    let queues = match asked {
        Some(q) => {
            if let Some(bad) = q.iter().find(|&&q| q >= available) {
                bail!(
                    "{iface} has {available} RX queue(s) (0-{}): there is no queue {bad}",
                    available - 1
                );
            }
            q.to_vec()
        }
        None => (0..available).collect(),
    };
    if queues.iter().any(|&q| q >= netdemux_common::MAX_QUEUES) {
        bail!(
            "netdemux serves RX queues below {}",
            netdemux_common::MAX_QUEUES
        );
    }
    Ok(queues)
}

impl Prepared {
    /// The attachment this data plane made, if it made one (else it reuses one).
    pub fn attached(&self) -> Option<&Attached> {
        self.attached.as_ref()
    }

    /// Removes `path` when the data plane goes, before it gives up the interface (the daemon's
    /// control socket: removed after the owner lock, it could be a successor's).
    pub fn own_file(&mut self, path: std::path::PathBuf) {
        self.undo.owned_files.push(path);
    }

    /// Binds `bindings` for as long as the data plane runs (those already bound, e.g. by a run
    /// that died, are kept and left bound).
    pub fn hold(&mut self, bindings: impl IntoIterator<Item = Binding>) -> Result<()> {
        let _lock = self.attachment.lock()?;
        let existing = self.attachment.maps.bindings()?;
        for b in bindings {
            if !existing.contains(&b) && !self.undo.added.contains(&b) {
                self.attachment.maps.bind(&b)?;
                self.undo.added.push(b);
            }
        }
        Ok(())
    }

    /// Installs the sockets and starts the workers serving `services`.
    pub fn start(self, services: Arc<ServiceTable>) -> Result<DataPlane> {
        let Prepared {
            cfg,
            attachment,
            attached: _,
            sockets,
            mac,
            tcp,
            undo,
        } = self;
        let bridge = cfg
            .application
            .then(|| Bridge::new(sockets.len()))
            .transpose()?;
        let answers = (0..sockets.len())
            .map(|i| match &bridge {
                Some(b) => b.links[i].resolved.clone(),
                None => Arc::new(ArrayQueue::new(RESOLVED_QUEUE)),
            })
            .collect();
        let lines = resolver::Lines::new(answers);
        // TCP is reported with TCP services, and for an application (the API has TCP).
        let reports_tcp = cfg.application || services.services().iter().any(|(k, _)| k.is_tcp());
        let budget = Arc::new(MemoryBudget::new(cfg.tcp_memory));
        let mut plane = DataPlane {
            iface: undo.iface.clone(),
            attachment: Mutex::new(attachment),
            stats: Vec::new(),
            services: services.clone(),
            budget: reports_tcp.then(|| budget.clone()),
            workers: Vec::new(),
            installed: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            bridge: bridge.clone(),
            resolver: None,
            stopped: false,
            undo,
        };
        let isn = tcp::IsnSource::new(Instant::now());
        for (i, sock) in sockets.into_iter().enumerate() {
            let q = sock.queue();
            plane
                .attachment()
                .maps
                .xsks
                .set(q, sock.as_fd().as_raw_fd(), 0)
                .with_context(|| format!("cannot install the socket of queue {q} in the XSKMAP"))?;
            plane.installed.push(q);
            let stats = Arc::new(WorkerStats::new(
                q,
                sock.zero_copy(),
                BusyPoll::of(cfg.xsk.busy_poll, sock.napi_id()),
                services.services().len(),
                reports_tcp,
            ));
            plane.stats.push(stats.clone());
            let wcfg = WorkerConfig {
                spin: cfg.spin,
                cpu: cfg.cpu_of(i),
                mac,
                resolver: lines.link(i),
                neighbour_lifetime: cfg.neighbour_lifetime,
                tcp: TcpSetup {
                    config: tcp,
                    limits: tcp::Limits::default(),
                    budget: budget.clone(),
                    idle_timeout: cfg.tcp_idle_timeout,
                    isn: isn.clone(),
                },
            };
            let application = bridge.as_ref().map(|b| WorkerApplication {
                bridge: b.clone(),
                index: i,
            });
            let (stop, services) = (plane.stop.clone(), services.clone());
            let handle = match Faults::new(cfg.faults) {
                Some(f) => {
                    let sock = Faulty::new(sock, f, cfg.xsk.frame_size as usize);
                    worker::spawn(sock, services, stats, stop, wcfg, application)?
                }
                None => worker::spawn(sock, services, stats, stop, wcfg, application)?,
            };
            plane.workers.push(handle);
        }
        if let Some(w) = busy_poll_warning(&plane.iface, &cfg, &plane.stats) {
            tracing::warn!("{w}");
        }
        if let Some(w) = shared_spin_warning(&cfg, &plane.stats) {
            tracing::warn!("{w}");
        }
        let ifindex = plane.iface.ifindex()?;
        let stop = plane.stop.clone();
        plane.resolver = Some(lines.spawn(ifindex, bridge, stop)?);
        Ok(plane)
    }
}

/// A running data plane: a worker per queue, until [`DataPlane::stop`] or drop.
pub struct DataPlane {
    iface: Interface,
    attachment: Mutex<Attachment>,
    stats: Vec<Arc<WorkerStats>>,
    services: Arc<ServiceTable>,
    /// The TCP buffers' budget, reported when there are TCP services.
    budget: Option<Arc<MemoryBudget>>,
    workers: Vec<thread::JoinHandle<Result<()>>>,
    installed: Vec<u32>,
    stop: Arc<AtomicBool>,
    bridge: Option<Arc<Bridge>>,
    resolver: Option<thread::JoinHandle<()>>,
    stopped: bool,
    undo: Undo,
}

impl DataPlane {
    /// The interface it serves.
    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    /// The bridge to the workers, when it serves an application.
    pub fn bridge(&self) -> Option<&Arc<Bridge>> {
        self.bridge.as_ref()
    }

    /// The workers' published counters, one per queue.
    pub fn queues(&self) -> &[Arc<WorkerStats>] {
        &self.stats
    }

    /// The pinned state (binding table, XSKMAP, info), locked for this process's threads.
    pub fn attachment(&self) -> MutexGuard<'_, Attachment> {
        self.attachment.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `binding` to the demux table.
    pub fn bind(&self, binding: &Binding) -> Result<()> {
        let mut a = self.attachment();
        let _lock = a.lock()?;
        a.maps.bind(binding)
    }

    /// Removes `binding` from the demux table (already gone is fine).
    pub fn unbind(&self, binding: &Binding) {
        let mut a = self.attachment();
        if let Ok(_lock) = a.lock() {
            let _ = a.maps.unbind(binding);
        }
    }

    /// A function that reports the counters, for threads that outlive no data plane.
    pub fn reporter(&self) -> impl Fn() -> DaemonReport + Send + 'static {
        let (stats, services) = (self.stats.clone(), self.services.clone());
        let budget = self.budget.clone();
        move || report(&stats, &services, budget.as_deref())
    }

    /// True when a worker ended on its own (it failed: [`DataPlane::stop`] says why).
    pub fn worker_ended(&self) -> bool {
        self.workers.iter().any(|w| w.is_finished())
    }

    /// Stops serving: the sockets leave the XSKMAP (traffic goes back to the kernel at once),
    /// then the workers and the resolver stop. Returns the first worker's error, if any.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        {
            let mut a = self.attachment();
            for &q in &self.installed {
                let _ = a.maps.xsks.unset(q);
            }
        }
        tracing::info!(
            iface = self.iface.name(),
            queues = ?self.installed,
            "sockets out of the XSKMAP: traffic back to the kernel"
        );
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = &self.bridge {
            for link in b.links.iter() {
                link.wake();
            }
        }
        let mut first_error = None;
        for w in self.workers.drain(..) {
            let error = match w.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => anyhow::anyhow!("a queue worker panicked"),
            };
            first_error.get_or_insert(error);
        }
        if let Some(r) = self.resolver.take() {
            let _ = r.join();
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops (if not yet) and removes what this data plane added: its bindings, or the whole
    /// attachment if it made it. Returns true when it detached the program.
    pub fn finish(mut self) -> Result<bool> {
        let stopped = self.stop();
        let detached = self.undo.run();
        stopped.and(detached)
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(iface = self.iface.name(), "the data plane stopped: {e:#}");
        }
        // `undo` drops next and removes what this data plane added.
    }
}

/// The daemon's report: every queue's counters, and every service's summed over queues.
fn report(
    stats: &[Arc<WorkerStats>],
    services: &ServiceTable,
    budget: Option<&MemoryBudget>,
) -> DaemonReport {
    let services = services
        .services()
        .iter()
        .enumerate()
        .map(|(i, (kind, addr))| {
            let mut counters = ServiceCounters::default();
            for s in stats {
                counters.add(&s.services[i].load());
            }
            ServiceReport {
                kind: kind.name().to_string(),
                addr: addr.to_string(),
                counters,
            }
        })
        .collect();
    DaemonReport {
        pid: std::process::id(),
        queues: stats.iter().map(|s| s.report()).collect(),
        services,
        tcp_memory: budget.map(|b| TcpMemory {
            used: b.used() as u64,
            limit: b.limit() as u64,
        }),
        proxies: Vec::new(),
    }
}
