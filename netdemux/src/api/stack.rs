//! `Stack`: netdemux's data path in the application's process, on one interface.

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;

use super::{
    bridge::{Registry, SocketShared, WorkerLink},
    tcp::{BindingGuard, Hold, TcpListener, TcpStream},
    tcp_bridge::{Command, ListenerShared, StreamShared, state as stream_state},
    udp::UdpSocket,
};
use crate::{
    control::{
        attach::{self, ModeRequest},
        binding::{Binding, Proto, parse_socket_addr},
        neigh, netns, object, privilege,
        state::{self, Attachment},
    },
    runtime::{
        control as daemon_control,
        tcp_api::Outbound,
        worker::{self, ApiHooks, WorkerConfig, WorkerStats},
    },
    services::ServiceTable,
    xsk::{XskConfig, XskSocket, nic},
};

/// How to build a [`Stack`].
#[derive(Clone, Debug)]
pub struct StackBuilder {
    iface: Option<String>,
    netns: Option<String>,
    queues: Option<Vec<u32>>,
    mode: ModeRequest,
}

/// netdemux's data path in this process: an AF_XDP socket and a worker thread per RX queue of
/// one interface, serving the [`UdpSocket`]s bound through it. The XDP program is attached if it
/// is not already (and detached again when the stack goes, if it attached it).
///
/// ```no_run
/// # async fn run() -> anyhow::Result<()> {
/// let stack = netdemux::Stack::builder().iface("eth0").build().await?;
/// let sock = stack.udp_bind("198.18.0.2:7000".parse()?).await?;
/// let mut buf = [0u8; 2048];
/// let (n, peer) = sock.recv_from(&mut buf).await?;
/// sock.send_to(&buf[..n], peer).await?;
/// # Ok(()) }
/// ```
pub struct Stack {
    shared: Arc<StackShared>,
}

/// A worker's queue of neighbour answers: (address, its MAC if the kernel found one).
type Answers = ArrayQueue<(IpAddr, Option<[u8; 6]>)>;

pub(crate) struct StackShared {
    pub(super) links: Arc<[Arc<WorkerLink>]>,
    /// Each worker's queue of neighbour answers.
    resolved: Vec<Arc<Answers>>,
    /// Which worker owns each outbound connection's local address.
    outbound: Outbound,
    /// Outbound streams dropped by the application whose connections have not closed yet.
    lingering: Mutex<Vec<(Arc<StreamShared>, Hold)>>,
    /// The next worker to own an outbound connection.
    next_worker: std::sync::atomic::AtomicUsize,
    netns: Option<String>,
    ifindex: u32,
    registry: Arc<ArcSwap<Registry>>,
    attachment: Mutex<Attachment>,
    stop: Arc<AtomicBool>,
    workers: Mutex<Vec<thread::JoinHandle<Result<()>>>>,
    resolver: Mutex<Option<thread::JoinHandle<()>>>,
    installed: Vec<u32>,
    attached_here: bool,
    iface: String,
}

impl Stack {
    /// Starts describing a stack.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            iface: None,
            netns: None,
            queues: None,
            mode: ModeRequest::Auto,
        }
    }

    /// The interface it serves.
    pub fn iface(&self) -> &str {
        &self.shared.iface
    }

    /// Binds a UDP socket on `addr` (a specific address, or the wildcard of a family); datagrams
    /// to it leave the kernel path at once.
    pub async fn udp_bind(&self, addr: SocketAddr) -> Result<UdpSocket> {
        let addr = parse_socket_addr(&addr.to_string())?;
        let binding = Binding {
            proto: Proto::Udp,
            addr,
        };
        let shared = SocketShared::new(addr);
        // The socket is registered before the binding exists, so no datagram finds neither.
        self.shared.registry.rcu(|r| {
            let mut r = Registry::clone(r);
            r.insert(binding.key(), shared.clone());
            r
        });
        let bound = {
            let mut a = self
                .shared
                .attachment
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let _lock = a.lock()?;
            a.maps.bind(&binding)
        };
        if let Err(e) = bound {
            self.shared.forget(&binding);
            return Err(e);
        }
        Ok(UdpSocket {
            shared,
            stack: self.shared.clone(),
            peers: Mutex::new(Default::default()),
        })
    }
}

impl Stack {
    /// Listens for TCP connections on `addr` (a specific address, or the wildcard of a
    /// family): SYNs to it leave the kernel path at once and are answered by the userspace
    /// stack on every queue.
    pub async fn tcp_listen(&self, addr: SocketAddr) -> Result<TcpListener> {
        let addr = parse_socket_addr(&addr.to_string())?;
        let binding = Binding {
            proto: Proto::Tcp,
            addr,
        };
        let shared = ListenerShared::new(addr);
        // The workers listen before the binding exists, so no SYN finds neither.
        for link in self.shared.links.iter() {
            if link.command(Command::Listen(shared.clone())).is_err() {
                bail!("the queue workers are overloaded with commands: try again");
            }
        }
        let bound = self.shared.bind(&binding);
        if let Err(e) = bound {
            for link in self.shared.links.iter() {
                let _ = link.command(Command::Unlisten(addr));
            }
            return Err(e);
        }
        Ok(TcpListener {
            shared,
            stack: self.shared.clone(),
            guard: Arc::new(BindingGuard {
                binding,
                stack: Arc::downgrade(&self.shared),
            }),
        })
    }

    /// Opens a TCP connection to `remote` from the interface's address of the same family and
    /// a port the kernel reserves for it (a bound kernel socket holds it, so the kernel never
    /// gives it to anyone else); the port is steered to netdemux while the connection lives.
    pub async fn tcp_connect(&self, remote: SocketAddr) -> Result<TcpStream> {
        self.shared.reap();
        let (tx, rx) = mpsc::channel();
        let (netns, iface, ifindex) = (
            self.shared.netns.clone(),
            self.shared.iface.clone(),
            self.shared.ifindex,
        );
        thread::Builder::new()
            .name("netdemux-connect".into())
            .spawn(move || {
                let _ = tx.send(reserve(netns, &iface, ifindex, remote));
            })
            .context("cannot start a thread to reserve a port")?;
        let (socket, local, mac) = rx.recv().context("the port reservation thread died")??;
        let binding = Binding {
            proto: Proto::Tcp,
            addr: local,
        };
        let n = self.shared.links.len();
        let worker = self.shared.next_worker.fetch_add(1, Ordering::Relaxed) % n;
        self.shared.outbound.rcu(|m| {
            let mut m = std::collections::HashMap::clone(m);
            m.insert(local, worker);
            m
        });
        if let Some(mac) = mac {
            // The worker learns where to send the SYN before it sends it.
            let _ = self.shared.resolved[worker].push((remote.ip(), Some(mac)));
        }
        if let Err(e) = self.shared.bind(&binding) {
            self.shared.forget_outbound(local);
            return Err(e);
        }
        let shared = StreamShared::new(local, remote, worker);
        let hold = Hold {
            socket: Some(socket),
            guard: Arc::new(BindingGuard {
                binding,
                stack: Arc::downgrade(&self.shared),
            }),
        };
        let stream = TcpStream::new(shared.clone(), self.shared.clone(), hold);
        if self.shared.links[worker]
            .command(Command::Connect(shared))
            .is_err()
        {
            bail!("the queue workers are overloaded with commands: try again");
        }
        stream
            .established()
            .await
            .with_context(|| format!("cannot connect to {remote}"))?;
        Ok(stream)
    }
}

/// Reserves a local port for a connection to `remote` (in the interface's namespace): the
/// interface's address of `remote`'s family, a kernel socket bound to an ephemeral port on
/// it, and the MAC address of `remote` (or its gateway) if the kernel knows or finds it.
fn reserve(
    netns: Option<String>,
    iface: &str,
    ifindex: u32,
    remote: SocketAddr,
) -> Result<(std::os::fd::OwnedFd, SocketAddr, Option<[u8; 6]>)> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, bind,
        getsockname, socket,
    };
    if let Some(ns) = &netns {
        netns::enter(ns)?;
    }
    let (_, ip) = nic::link_addrs(iface, remote.is_ipv6())?;
    let ip = ip.with_context(|| {
        format!(
            "{iface} has no {} address to connect from",
            if remote.is_ipv6() { "IPv6" } else { "IPv4" }
        )
    })?;
    let family = if remote.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot open a socket to reserve a port")?;
    let any_port = SocketAddr::new(ip, 0);
    match any_port {
        SocketAddr::V4(a) => bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(a)),
    }
    .with_context(|| format!("cannot reserve a port on {ip}"))?;
    let bound: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .context("cannot read the reserved port")?;
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .context("the reserved address has no port")?;
    let mac = neigh::resolve(ifindex, remote.ip(), Duration::from_millis(900)).ok();
    Ok((fd, SocketAddr::new(ip, port), mac))
}

impl StackShared {
    /// Adds `binding` to the demux table.
    fn bind(&self, binding: &Binding) -> Result<()> {
        let mut a = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        let _lock = a.lock()?;
        a.maps.bind(binding)
    }

    /// Removes `binding` from the demux table.
    pub(super) fn unbind(&self, binding: &Binding) {
        let mut a = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(_lock) = a.lock() {
            let _ = a.maps.unbind(binding);
        }
    }

    fn forget_outbound(&self, local: SocketAddr) {
        self.outbound.rcu(|m| {
            let mut m = std::collections::HashMap::clone(m);
            m.remove(&local);
            m
        });
    }

    /// Keeps an outbound stream's port until its connection has closed.
    pub(super) fn linger(&self, stream: Arc<StreamShared>, hold: Hold) {
        self.lingering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((stream, hold));
        self.reap();
    }

    /// Releases the ports of outbound connections that have closed.
    fn reap(&self) {
        let done: Vec<(Arc<StreamShared>, Hold)> = {
            let mut l = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
            let (done, keep) = l
                .drain(..)
                .partition(|(s, _)| s.state() > stream_state::OPEN);
            *l = keep;
            done
        };
        for (s, hold) in done {
            if hold.socket.is_some() {
                self.forget_outbound(s.local);
            }
            // The guard unbinds when its last holder goes.
            drop(hold);
        }
    }

    fn forget(&self, binding: &Binding) {
        self.registry.rcu(|r| {
            let mut r = Registry::clone(r);
            r.remove(&binding.key());
            r
        });
    }

    /// A socket went away: unbind its address, then forget it.
    pub(super) fn unregister(&self, addr: SocketAddr) {
        let binding = Binding {
            proto: Proto::Udp,
            addr,
        };
        {
            let mut a = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(_lock) = a.lock() {
                let _ = a.maps.unbind(&binding);
            }
        }
        self.forget(&binding);
    }
}

impl Drop for StackShared {
    fn drop(&mut self) {
        // Guards cannot reach a stack that is going: unbind what they held here.
        for (_, hold) in self
            .lingering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            self.unbind(&hold.guard.binding);
        }
        // Traffic back to the kernel first, then stop the workers.
        let mut a = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        for &q in &self.installed {
            let _ = a.maps.xsks.unset(q);
        }
        self.stop.store(true, Ordering::Relaxed);
        for link in self.links.iter() {
            let _ = link.wake.write(1);
        }
        for w in self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = w.join();
        }
        if let Some(r) = self
            .resolver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = r.join();
        }
        if self.attached_here {
            // Removing the pins releases the link: the program detaches.
            let _ = attach::remove_state(&a.dir);
        }
    }
}

impl StackBuilder {
    /// The interface to serve (required).
    pub fn iface(mut self, iface: &str) -> Self {
        self.iface = Some(iface.to_string());
        self
    }

    /// The named network namespace the interface is in (like `ip -n`).
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    /// RX queues to serve (default: all).
    pub fn queues(mut self, queues: &[u32]) -> Self {
        self.queues = Some(queues.to_vec());
        self
    }

    /// XDP mode, if the stack attaches the program.
    pub fn mode(mut self, mode: ModeRequest) -> Self {
        self.mode = mode;
        self
    }

    /// Attaches (or reuses the attachment), opens the AF_XDP sockets and starts the workers.
    /// Setting up takes milliseconds; it runs on a thread of its own (which enters the network
    /// namespace, so the caller's thread never does).
    pub async fn build(self) -> Result<Stack> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("netdemux-setup".into())
            .spawn(move || {
                let _ = tx.send(setup(self));
            })
            .context("cannot start the set-up thread")?;
        rx.recv().context("the set-up thread died")?
    }
}

fn setup(b: StackBuilder) -> Result<Stack> {
    let iface = b.iface.context("Stack::builder() needs .iface(NAME)")?;
    privilege::require("Stack::build")?;
    if let Some(ns) = &b.netns {
        netns::enter(ns)?;
    }
    let ifindex = state::ifindex(&iface)?;
    if daemon_control::query(&iface)?.is_some() {
        bail!("a `netdemux run` daemon already serves {iface}: stop it first");
    }
    let attached_here = match state::open(&iface) {
        Ok(a) => {
            if a.info.object_hash != object::object_hash() {
                bail!(
                    "the XDP program on {iface} was loaded by another netdemux build: detach it first"
                );
            }
            false
        }
        Err(_) if !state::dir_for(&iface)?.exists() => {
            attach::attach(&iface, b.mode, netdemux_common::DEFAULT_MAX_BINDINGS)?;
            true
        }
        Err(e) => return Err(e),
    };
    let mut attachment = state::open(&iface)?;
    let mac = nic::mac_address(&iface)?;
    let available = nic::rx_queues(&iface);
    let queues = match b.queues {
        Some(q) => {
            if let Some(bad) = q.iter().find(|&&q| q >= available) {
                bail!("{iface} has {available} RX queue(s): there is no queue {bad}");
            }
            q
        }
        None => (0..available).collect(),
    };

    let registry = Arc::new(ArcSwap::from_pointee(Registry::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let services = Arc::new(ServiceTable::default());
    let (resolve_tx, resolve_rx) = mpsc::sync_channel::<(IpAddr, usize)>(256);
    let links: Arc<[Arc<WorkerLink>]> = queues
        .iter()
        .map(|_| WorkerLink::new())
        .collect::<std::io::Result<Vec<_>>>()?
        .into();
    let outbound: Outbound = Arc::new(ArcSwap::from_pointee(Default::default()));
    let tcp_config = crate::stack::tcp::Config {
        mss: nic::tcp_mss(&iface, XskConfig::default().frame_size),
        ..crate::stack::tcp::Config::default()
    };
    let mut answers = Vec::new();
    let mut workers = Vec::new();
    let mut installed = Vec::new();
    for (i, &q) in queues.iter().enumerate() {
        let sock = XskSocket::open(ifindex, q, &XskConfig::default())
            .with_context(|| format!("cannot open an AF_XDP socket on {iface} queue {q}"))?;
        attachment
            .maps
            .xsks
            .set(q, sock.as_fd().as_raw_fd(), 0)
            .with_context(|| format!("cannot install the socket of queue {q}"))?;
        installed.push(q);
        let link = links[i].clone();
        let resolved = Arc::new(ArrayQueue::new(256));
        let hooks = ApiHooks {
            registry: registry.clone(),
            link: link.clone(),
            mac,
            index: i,
            resolve: resolve_tx.clone(),
            resolved: resolved.clone(),
            links: links.clone(),
            outbound: outbound.clone(),
        };
        let stats = Arc::new(WorkerStats::new(q, sock.zero_copy(), 0));
        workers.push(worker::spawn(
            sock,
            services.clone(),
            stats,
            stop.clone(),
            WorkerConfig {
                mac,
                tcp: tcp_config,
                ..WorkerConfig::default()
            },
            Some(hooks),
        )?);
        answers.push(resolved);
    }
    let resolved_queues = answers.clone();
    drop(resolve_tx);
    // Resolves new peers through the kernel's neighbour table, off the data path.
    let resolver = {
        let (links, stop) = (links.clone(), stop.clone());
        thread::Builder::new()
            .name("netdemux-neigh".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((ip, worker)) = resolve_rx.recv_timeout(Duration::from_millis(100))
                    else {
                        continue;
                    };
                    let mac = neigh::resolve(ifindex, ip, Duration::from_millis(900)).ok();
                    if answers[worker].push((ip, mac)).is_ok() {
                        let _ = links[worker].wake.write(1);
                    }
                }
            })?
    };
    Ok(Stack {
        shared: Arc::new(StackShared {
            links,
            resolved: resolved_queues,
            outbound,
            lingering: Mutex::new(Vec::new()),
            next_worker: std::sync::atomic::AtomicUsize::new(0),
            netns: b.netns.clone(),
            ifindex,
            registry,
            attachment: Mutex::new(attachment),
            stop,
            workers: Mutex::new(workers),
            resolver: Mutex::new(Some(resolver)),
            installed,
            attached_here,
            iface,
        }),
    })
}
