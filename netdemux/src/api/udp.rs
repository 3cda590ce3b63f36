//! `UdpSocket`: a UDP socket on a socket address that netdemux steers to the stack.

use std::{
    future::poll_fn,
    hash::{Hash as _, Hasher as _},
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::Ordering},
    task::{Context, Poll},
};

use anyhow::Context as _;

use super::{
    peer_memory::PeerMemory,
    port,
    stack::{Stack, StackShared},
};
use crate::{
    bridge::udp::{MAX_PAYLOAD, SocketShared, TxRequest},
    control::binding::{Binding, Proto, parse_socket_addr},
};

/// Peers remembered by a wildcard socket to answer from the right address (least recently
/// heard-from forgotten first).
const PEER_MEMORY: usize = 4096;

/// A UDP socket bound through netdemux: datagrams to its address arrive over AF_XDP, datagrams
/// it sends leave through the AF_XDP TX rings. Dropping it unbinds the address.
pub struct UdpSocket {
    shared: Arc<SocketShared>,
    stack: Arc<StackShared>,
    /// For a wildcard socket: the local address each peer last wrote to, so the answer leaves
    /// from it. Touched by the application only, never by the data path.
    peers: Mutex<PeerMemory>,
    /// For a socket bound to port 0: the kernel socket that keeps the port it was given.
    _reserved: Option<std::net::UdpSocket>,
}

impl Stack {
    /// Binds a UDP socket on `addr` (a specific address, or the wildcard of a family); datagrams
    /// to it leave the kernel path at once. Port 0 takes a port the kernel reserves for it (a
    /// bound kernel socket holds it while the socket lives).
    pub async fn udp_bind(&self, addr: SocketAddr) -> anyhow::Result<UdpSocket> {
        let (addr, reserved) = if addr.port() == 0 {
            let (tx, rx) = std::sync::mpsc::channel();
            let netns = self.shared.netns.clone();
            std::thread::Builder::new()
                .name("netdemux-reserve".into())
                .spawn(move || {
                    let _ = tx.send(port::reserve_udp(netns.as_deref(), addr.ip()));
                })
                .context("cannot start a thread to reserve a port")?;
            let socket = rx.recv().context("the port reservation thread died")??;
            (socket.local_addr()?, Some(socket))
        } else {
            (addr, None)
        };
        let addr = parse_socket_addr(&addr.to_string())?;
        let binding = Binding {
            proto: Proto::Udp,
            addr,
        };
        let shared = SocketShared::new(addr);
        // The socket is registered before the binding exists, so no datagram finds neither.
        self.shared.update_sockets(|r| {
            r.insert(binding.key(), shared.clone());
        });
        if let Err(e) = self.shared.plane.bind(&binding) {
            self.shared.update_sockets(|r| {
                r.remove(&binding.key());
            });
            return Err(e);
        }
        Ok(UdpSocket {
            shared,
            stack: self.shared.clone(),
            peers: Mutex::new(PeerMemory::new(PEER_MEMORY)),
            _reserved: reserved,
        })
    }
}

impl UdpSocket {
    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Datagrams dropped because the socket's receive queue was full (or too large).
    pub fn rx_dropped(&self) -> u64 {
        self.shared.rx_dropped.load(Ordering::Relaxed)
    }

    /// Datagrams dropped because their UDP checksum did not verify.
    pub fn checksum_errors(&self) -> u64 {
        self.shared.checksum_errors.load(Ordering::Relaxed)
    }

    /// Datagrams the stack could not send (no neighbour answer in time, rings full).
    pub fn tx_dropped(&self) -> u64 {
        self.shared.tx_dropped.load(Ordering::Relaxed)
    }

    /// Receives a datagram into `buf` (truncating it if `buf` is shorter) and its sender.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            if let Some(d) = self.shared.rx.pop() {
                let n = d.len.min(buf.len());
                buf[..n].copy_from_slice(&d.buf[..n]);
                if self.shared.local.ip().is_unspecified() {
                    let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
                    peers.heard(d.peer, d.local.ip());
                }
                let peer = d.peer;
                let _ = self.shared.rx_free.push(d.buf);
                return Poll::Ready(Ok((n, peer)));
            }
            self.shared.rx_waker.register(cx.waker());
            if self.shared.rx.is_empty() {
                return Poll::Pending;
            }
        }
    }

    /// Receives a datagram into `buf` and its sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// The address a datagram to `target` leaves from.
    fn source_for(&self, target: SocketAddr) -> io::Result<SocketAddr> {
        let local = self.shared.local;
        if local.is_ipv4() != target.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target's address family differs from the socket's",
            ));
        }
        if !local.ip().is_unspecified() {
            return Ok(local);
        }
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match peers.local_for(&target) {
            Some(ip) => Ok(SocketAddr::new(ip, local.port())),
            None => Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "a wildcard socket answers from an address peers wrote to, and nobody has                      written yet (bind to an address to send to {target} first)"
                ),
            )),
        }
    }

    /// Sends `buf` to `target`. Pending while the socket's send buffers or the worker's queue
    /// are full.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        if buf.len() > MAX_PAYLOAD {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram larger than 2048 bytes",
            )));
        }
        let src = match self.source_for(target) {
            Ok(s) => s,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let Some(mut b) = self.shared.tx_free.pop() else {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        b[..buf.len()].copy_from_slice(buf);
        let req = TxRequest {
            buf: b,
            len: buf.len(),
            src,
            dst: target,
            owner: self.shared.clone(),
        };
        // One worker per peer keeps its datagrams in order.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        target.hash(&mut h);
        let links = &self.stack.bridge.links;
        let link = &links[h.finish() as usize % links.len()];
        match link.push(req) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(req) => {
                let _ = self.shared.tx_free.push(req.buf);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    /// Sends `buf` to `target`; returns the bytes sent.
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        poll_fn(|cx| self.poll_send_to(cx, buf, target)).await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.unregister_udp(self.shared.local);
    }
}
