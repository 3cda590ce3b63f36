//! `TcpListener` and `TcpStream`: TCP on netdemux's userspace stack, with tokio's
//! `AsyncRead`/`AsyncWrite`.

use std::{
    future::poll_fn,
    io,
    net::SocketAddr,
    os::fd::OwnedFd,
    pin::Pin,
    sync::{Arc, Weak, atomic::Ordering},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    stack::StackShared,
    tcp_bridge::{CHUNK, Chunk, Command, ListenerShared, StreamShared, state},
};
use crate::control::binding::Binding;

/// A TCP listener bound through netdemux: connections to its address are accepted by the
/// userspace stack on every queue worker. Dropping it unbinds the address.
pub struct TcpListener {
    pub(super) shared: Arc<ListenerShared>,
    pub(super) stack: Arc<StackShared>,
    /// Shared with the streams it accepted: the address stays bound while any of them lives.
    pub(super) guard: Arc<BindingGuard>,
}

impl TcpListener {
    /// Listens on `addr` through `stack`: [`super::Stack::tcp_listen`].
    pub async fn bind(stack: &super::Stack, addr: SocketAddr) -> anyhow::Result<TcpListener> {
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
        for link in self.stack.links.iter() {
            let _ = link.command(Command::Unlisten(self.shared.local));
        }
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
            stack.unbind(&self.binding);
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

/// A TCP connection on netdemux's userspace stack. Reads and writes move pooled chunks
/// between the application and the queue worker that owns the connection.
pub struct TcpStream {
    shared: Arc<StreamShared>,
    stack: Arc<StackShared>,
    hold: Option<Hold>,
    /// A received chunk partly read.
    current: Option<(Chunk, usize)>,
}

fn ended(state: u8) -> io::Error {
    match state {
        state::TIMED_OUT => io::Error::new(io::ErrorKind::TimedOut, "the peer stopped answering"),
        state::CLOSED => io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed"),
        _ => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the peer reset the connection",
        ),
    }
}

impl TcpStream {
    pub(super) fn new(shared: Arc<StreamShared>, stack: Arc<StackShared>, hold: Hold) -> TcpStream {
        TcpStream {
            shared,
            stack,
            hold: Some(hold),
            current: None,
        }
    }

    /// Waits until an outbound connection is established (or refused).
    pub(super) async fn established(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let s = self.shared.state();
            if s != state::CONNECTING {
                return Poll::Ready(s);
            }
            self.shared.write_waker.register(cx.waker());
            match self.shared.state() {
                state::CONNECTING => Poll::Pending,
                s => Poll::Ready(s),
            }
        })
        .await;
        match self.shared.state() {
            state::OPEN => Ok(()),
            state::RESET => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the peer refused the connection",
            )),
            s => Err(ended(s)),
        }
    }

    /// Connects to `remote` through `stack`: [`super::Stack::tcp_connect`].
    pub async fn connect(stack: &super::Stack, remote: SocketAddr) -> anyhow::Result<TcpStream> {
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

    /// Closes the writing side: a FIN follows what was written.
    pub fn shutdown_write(&self) {
        self.shared.write_shutdown.store(true, Ordering::Release);
        self.kick();
    }

    /// Tells the owning worker that something changed.
    fn kick(&self) {
        if let Some(link) = self.stack.links.get(self.shared.worker) {
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
            if eof && this.shared.rx.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if st == state::RESET || st == state::TIMED_OUT {
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
            if st != state::OPEN && st != state::CONNECTING {
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
