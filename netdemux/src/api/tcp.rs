//! `TcpListener` and `TcpStream`: TCP on netdemux's userspace stack, with tokio's
//! `AsyncRead`/`AsyncWrite`.

use std::{
    future::poll_fn,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering, mpsc},
    task::{Context, Poll},
    thread,
};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    port,
    stack::{BindingGuard, Hold, Stack, StackShared},
};
use crate::{
    bridge::tcp::{CHUNK, Chunk, Command, ListenerShared, StreamShared, StreamState},
    control::binding::{Binding, Proto, parse_socket_addr},
    stack::neighbour_cache::Resolution,
};

impl Stack {
    /// Listens for TCP connections on `addr` (a specific address, or the wildcard of a
    /// family): SYNs to it leave the kernel path at once and are answered by the userspace
    /// stack on every queue.
    pub async fn tcp_listen(&self, addr: SocketAddr) -> anyhow::Result<TcpListener> {
        let addr = parse_socket_addr(&addr.to_string())?;
        let binding = Binding {
            proto: Proto::Tcp,
            addr,
        };
        let shared = ListenerShared::new(addr);
        let links = &self.shared.bridge.links;
        // The workers listen before the binding exists, so no SYN finds neither.
        for link in links.iter() {
            if link.command(Command::Listen(shared.clone())).is_err() {
                bail!("the queue workers are overloaded with commands: try again");
            }
        }
        if let Err(e) = self.shared.plane.bind(&binding) {
            for link in links.iter() {
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
    pub async fn tcp_connect(&self, remote: SocketAddr) -> anyhow::Result<TcpStream> {
        self.shared.reap();
        let (tx, rx) = mpsc::channel();
        let (netns, iface) = (self.shared.netns.clone(), self.shared.plane.iface().clone());
        thread::Builder::new()
            .name("netdemux-connect".into())
            .spawn(move || {
                let _ = tx.send(port::reserve(netns.as_deref(), &iface, remote));
            })
            .context("cannot start a thread to reserve a port")?;
        let reserved = rx.recv().context("the port reservation thread died")??;
        let local = reserved.local;
        let binding = Binding {
            proto: Proto::Tcp,
            addr: local,
        };
        let links = &self.shared.bridge.links;
        let worker = self.shared.next_worker.fetch_add(1, Ordering::Relaxed) % links.len();
        self.shared.set_outbound(local, Some(worker));
        if let Some(mac) = reserved.peer_mac {
            // The worker learns where to send the SYN before it sends it.
            let _ = links[worker]
                .resolved
                .push((remote.ip(), Resolution::Mac(mac)));
        }
        if let Err(e) = self.shared.plane.bind(&binding) {
            self.shared.set_outbound(local, None);
            return Err(e);
        }
        let shared = StreamShared::new(local, remote, worker);
        let hold = Hold {
            socket: Some(reserved.socket),
            guard: Arc::new(BindingGuard {
                binding,
                stack: Arc::downgrade(&self.shared),
            }),
        };
        let stream = TcpStream::new(shared.clone(), self.shared.clone(), hold);
        if links[worker].command(Command::Connect(shared)).is_err() {
            bail!("the queue workers are overloaded with commands: try again");
        }
        stream
            .established()
            .await
            .with_context(|| format!("cannot connect to {remote}"))?;
        Ok(stream)
    }
}

/// A TCP listener bound through netdemux: connections to its address are accepted by the
/// userspace stack on every queue worker. Dropping it unbinds the address.
pub struct TcpListener {
    shared: Arc<ListenerShared>,
    stack: Arc<StackShared>,
    /// Shared with the streams it accepted: the address stays bound while any of them lives.
    guard: Arc<BindingGuard>,
}

impl TcpListener {
    /// Listens on `addr` through `stack`: [`super::Stack::tcp_listen`].
    pub async fn bind(stack: &Stack, addr: SocketAddr) -> anyhow::Result<TcpListener> {
        stack.tcp_listen(addr).await
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        loop {
            if let Some(s) = self.shared.accepted.pop() {
                let peer = s.peer;
                let hold = Hold {
                    socket: None,
                    guard: self.guard.clone(),
                };
                return Poll::Ready(Ok((TcpStream::new(s, self.stack.clone(), hold), peer)));
            }
            self.shared.waker.register(cx.waker());
            if self.shared.accepted.is_empty() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        // New connections stop; the accepted ones keep the address bound until they close.
        for link in self.stack.bridge.links.iter() {
            let _ = link.command(Command::Unlisten(self.shared.local));
        }
    }
}

/// A TCP connection on netdemux's userspace stack. Reads and writes move pooled chunks
/// between the application and the queue worker that owns the connection.
pub struct TcpStream {
    shared: Arc<StreamShared>,
    stack: Arc<StackShared>,
    hold: Option<Hold>,
    /// A received chunk partly read.
    current: Option<(Chunk, usize)>,
}

fn ended(state: StreamState) -> io::Error {
    match state {
        StreamState::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "the peer stopped answering")
        }
        StreamState::Closed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed")
        }
        StreamState::Unreachable => io::Error::new(
            io::ErrorKind::HostUnreachable,
            "an ICMP error said the peer cannot be reached",
        ),
        _ => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the peer reset the connection",
        ),
    }
}

impl TcpStream {
    fn new(shared: Arc<StreamShared>, stack: Arc<StackShared>, hold: Hold) -> TcpStream {
        TcpStream {
            shared,
            stack,
            hold: Some(hold),
            current: None,
        }
    }

    /// Waits until an outbound connection is established (or refused).
    async fn established(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let s = self.shared.state();
            if s != StreamState::Connecting {
                return Poll::Ready(s);
            }
            self.shared.write_waker.register(cx.waker());
            match self.shared.state() {
                StreamState::Connecting => Poll::Pending,
                s => Poll::Ready(s),
            }
        })
        .await;
        match self.shared.state() {
            StreamState::Open => Ok(()),
            StreamState::Reset => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the peer refused the connection",
            )),
            s => Err(ended(s)),
        }
    }

    /// Connects to `remote` through `stack`: [`super::Stack::tcp_connect`].
    pub async fn connect(stack: &Stack, remote: SocketAddr) -> anyhow::Result<TcpStream> {
        stack.tcp_connect(remote).await
    }

    /// This side's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Disables (true) or enables Nagle's algorithm.
    pub fn set_nodelay(&self, nodelay: bool) {
        self.shared.nodelay.store(nodelay, Ordering::Relaxed);
        self.kick();
    }

    /// Resets the connection: a RST goes to the peer at once, and what was not sent is
    /// dropped (a proxy passes on a reset this way).
    pub fn abort(&self) {
        self.shared.abort.store(true, Ordering::Release);
        self.kick();
    }

    /// Closes the writing side: a FIN follows what was written.
    pub fn shutdown_write(&self) {
        self.shared.write_shutdown.store(true, Ordering::Release);
        self.kick();
    }

    /// Tells the owning worker that something changed.
    fn kick(&self) {
        if let Some(link) = self.stack.bridge.links.get(self.shared.worker) {
            let _ = link.command(Command::Kick(self.shared.clone()));
        }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some((chunk, offset)) = this.current.as_mut() {
                let n = (chunk.len - *offset).min(buf.remaining());
                buf.put_slice(&chunk.buf[*offset..*offset + n]);
                *offset += n;
                if *offset == chunk.len
                    && let Some((chunk, _)) = this.current.take()
                {
                    let _ = this.shared.rx_free.push(chunk.buf);
                    // Room to receive: the worker may move more bytes.
                    this.kick();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(chunk) = this.shared.rx.pop() {
                this.current = Some((chunk, 0));
                continue;
            }
            // Nothing queued: the end, an error, or wait.
            let eof = this.shared.read_eof.load(Ordering::Acquire);
            let st = this.shared.state();
            if st.has_ended() {
                // What arrived before the end is read first (Linux reads queued data before
                // a reset's error too).
                if let Some(chunk) = this.shared.pop_late() {
                    this.current = Some((chunk, 0));
                    continue;
                }
            }
            if eof && this.shared.rx.is_empty() && this.shared.late_is_empty() {
                return Poll::Ready(Ok(()));
            }
            if matches!(
                st,
                StreamState::Reset | StreamState::TimedOut | StreamState::Unreachable
            ) {
                return Poll::Ready(Err(ended(st)));
            }
            this.shared.read_waker.register(cx.waker());
            if this.shared.rx.is_empty()
                && !this.shared.read_eof.load(Ordering::Acquire)
                && this.shared.state() == st
            {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shared.write_shutdown.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the writing side is shut down",
            )));
        }
        loop {
            let st = self.shared.state();
            if st != StreamState::Open && st != StreamState::Connecting {
                return Poll::Ready(Err(ended(st)));
            }
            if data.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if let Some(mut buf) = self.shared.tx_free.pop() {
                let n = data.len().min(CHUNK);
                buf[..n].copy_from_slice(&data[..n]);
                // A free buffer means a free slot: the queues have the same size.
                let _ = self.shared.tx.push(Chunk { buf, len: n });
                self.kick();
                return Poll::Ready(Ok(n));
            }
            self.shared.write_waker.register(cx.waker());
            if self.shared.tx_free.is_empty() {
                return Poll::Pending;
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_write();
        Poll::Ready(Ok(()))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::Release);
        self.kick();
        if let Some(hold) = self.hold.take() {
            // The address stays bound (and the port reserved) until the connection has closed.
            self.stack.linger(self.shared.clone(), hold);
        }
    }
}
