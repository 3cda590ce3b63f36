//! The TCP relay: one connection to the backend per accepted connection, bytes copied both
//! ways with back-pressure (each side reads only as fast as the other takes), a FIN passed on
//! as a FIN (half-close), a reset as a reset.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::CONNECT_TIMEOUT;
use crate::{Stack, TcpListener, TcpStream, report::AtomicProxyCounters};

/// Accepts connections until the listener goes, relaying each to `backend`.
pub(super) async fn serve(
    stack: Arc<Stack>,
    listener: TcpListener,
    backend: SocketAddr,
    c: Arc<AtomicProxyCounters>,
) {
    while let Ok((client, _)) = listener.accept().await {
        c.accepted.fetch_add(1, Ordering::Relaxed);
        c.active.fetch_add(1, Ordering::Relaxed);
        let (stack, c) = (stack.clone(), c.clone());
        tokio::spawn(async move {
            relay(&stack, client, backend, &c).await;
            c.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn relay(
    stack: &Stack,
    client: TcpStream,
    backend: SocketAddr,
    c: &Arc<AtomicProxyCounters>,
) {
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, stack.tcp_connect(backend)).await {
        Ok(Ok(s)) => s,
        _ => {
            // The client learns at once: a reset, as a kernel proxy's would be.
            c.failed.fetch_add(1, Ordering::Relaxed);
            client.abort();
            return;
        }
    };
    // What one side sends goes on at once; Nagle would hold the tail of every answer.
    client.set_nodelay(true);
    server.set_nodelay(true);
    let mut up = Counted {
        inner: client,
        counters: c.clone(),
        upstream: true,
    };
    let mut down = Counted {
        inner: server,
        counters: c.clone(),
        upstream: false,
    };
    if tokio::io::copy_bidirectional(&mut up, &mut down)
        .await
        .is_err()
    {
        // One side was reset (or failed): so is the other.
        c.resets.fetch_add(1, Ordering::Relaxed);
        up.inner.abort();
        down.inner.abort();
    }
}

/// A stream whose reads are counted as the proxy's up (from clients) or down bytes.
struct Counted {
    inner: TcpStream,
    counters: Arc<AtomicProxyCounters>,
    upstream: bool,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let counter = if self.upstream {
                &self.counters.up_bytes
            } else {
                &self.counters.down_bytes
            };
            counter.fetch_add(n, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
