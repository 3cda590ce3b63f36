//! `Stack`: netdemux's data path in the application's process, on one interface — a data plane
//! that serves an application, and what its sockets share: the bindings they hold and the
//! outbound ports still in use.

use std::{
    net::SocketAddr,
    os::fd::OwnedFd,
    sync::{Arc, Mutex, Weak, atomic::AtomicUsize},
};

use anyhow::Result;

use crate::{
    bridge::{Bridge, tcp::StreamShared, udp::Registry},
    control::binding::{Binding, Proto},
    runtime::dataplane::DataPlane,
};

/// netdemux's data path in this process: an AF_XDP socket and a worker thread per RX queue of
/// one interface, serving the [`crate::UdpSocket`]s, [`crate::TcpListener`]s and
/// [`crate::TcpStream`]s made through it. The XDP program is attached if it is not already
/// (and detached again when the stack goes, if it attached it).
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
    pub(super) shared: Arc<StackShared>,
}

/// What a stack's sockets share.
pub(crate) struct StackShared {
    pub(super) plane: Arc<DataPlane>,
    pub(super) bridge: Arc<Bridge>,
    /// Outbound streams dropped by the application whose connections have not closed yet.
    lingering: Mutex<Vec<(Arc<StreamShared>, Hold)>>,
    /// The next worker to own an outbound connection.
    pub(super) next_worker: AtomicUsize,
    /// The named network namespace of the interface, if any.
    pub(super) netns: Option<String>,
}

impl Stack {
    /// The interface it serves.
    pub fn iface(&self) -> &str {
        self.shared.plane.iface().name()
    }

    /// A stack on a data plane that serves an application and is shared with its owner (a
    /// daemon whose services include some built on this API). The data plane stops when the
    /// last of them lets go.
    pub(crate) fn on_plane(plane: Arc<DataPlane>, netns: Option<String>) -> Result<Stack> {
        Ok(Stack {
            shared: Arc::new(StackShared::new(plane, netns)?),
        })
    }
}

/// A binding that is removed when the last holder lets go.
pub(super) struct BindingGuard {
    pub(super) binding: Binding,
    pub(super) stack: Weak<StackShared>,
}

impl Drop for BindingGuard {
    fn drop(&mut self) {
        if let Some(stack) = self.stack.upgrade() {
            stack.plane.unbind(&self.binding);
        }
    }
}

/// What a stream holds while its connection lives (even after the application dropped it):
/// the binding that steers its packets to netdemux, and for an outbound stream the kernel
/// socket that keeps its port from the kernel.
pub(super) struct Hold {
    /// Held, not read: while it is open the kernel keeps the port.
    pub(super) socket: Option<OwnedFd>,
    pub(super) guard: Arc<BindingGuard>,
}

impl StackShared {
    /// A stack's shared part, on a data plane that serves an application.
    pub(super) fn new(plane: Arc<DataPlane>, netns: Option<String>) -> Result<StackShared> {
        let bridge = plane
            .bridge()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the data plane serves no application"))?;
        Ok(StackShared {
            plane,
            bridge,
            lingering: Mutex::new(Vec::new()),
            next_worker: AtomicUsize::new(0),
            netns,
        })
    }

    /// Changes the bound UDP sockets (read-copy-update: workers never wait).
    pub(super) fn update_sockets(&self, f: impl Fn(&mut Registry)) {
        self.bridge.sockets.rcu(|r| {
            let mut r = Registry::clone(r);
            f(&mut r);
            r
        });
    }

    /// Records (`Some(worker)`) or forgets (`None`) which worker owns an outbound connection's
    /// local address.
    pub(super) fn set_outbound(&self, local: SocketAddr, worker: Option<usize>) {
        self.bridge.outbound.rcu(|m| {
            let mut m = std::collections::HashMap::clone(m);
            match worker {
                Some(w) => m.insert(local, w),
                None => m.remove(&local),
            };
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
    pub(super) fn reap(&self) {
        let done: Vec<(Arc<StreamShared>, Hold)> = {
            let mut l = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
            let (done, keep) = l.drain(..).partition(|(s, _)| s.state().has_ended());
            *l = keep;
            done
        };
        for (s, hold) in done {
            if hold.socket.is_some() {
                self.set_outbound(s.local, None);
            }
            // The guard unbinds when its last holder goes.
            drop(hold);
        }
    }

    /// A UDP socket went away: unbind its address, then forget it.
    pub(super) fn unregister_udp(&self, addr: SocketAddr) {
        let binding = Binding {
            proto: Proto::Udp,
            addr,
        };
        self.plane.unbind(&binding);
        self.update_sockets(|r| {
            r.remove(&binding.key());
        });
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
            self.plane.unbind(&hold.guard.binding);
        }
        // The data plane drops next: traffic back to the kernel, workers stopped, and the
        // program detached if this stack attached it.
    }
}
