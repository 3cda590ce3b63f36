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

pub(crate) struct StackShared {
    pub(super) links: Vec<Arc<WorkerLink>>,
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

impl StackShared {
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
        // Traffic back to the kernel first, then stop the workers.
        let mut a = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        for &q in &self.installed {
            let _ = a.maps.xsks.unset(q);
        }
        self.stop.store(true, Ordering::Relaxed);
        for link in &self.links {
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
    let mut links = Vec::new();
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
        let link = WorkerLink::new()?;
        let resolved = Arc::new(ArrayQueue::new(256));
        let hooks = ApiHooks {
            registry: registry.clone(),
            link: link.clone(),
            mac,
            index: i,
            resolve: resolve_tx.clone(),
            resolved: resolved.clone(),
        };
        let stats = Arc::new(WorkerStats::new(q, sock.zero_copy(), 0));
        workers.push(worker::spawn(
            sock,
            services.clone(),
            stats,
            stop.clone(),
            WorkerConfig::default(),
            Some(hooks),
        )?);
        links.push(link);
        answers.push(resolved);
    }
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
