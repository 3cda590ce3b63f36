//! UDP between a queue worker and the application: per socket, a queue of received datagrams
//! and two pools of buffers; per send, a request that carries its buffer back to its socket.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

/// Largest UDP payload a socket carries (the rest of a 4 KiB frame is headers and headroom).
pub const MAX_PAYLOAD: usize = 2048;
/// Datagrams a socket queues for the application; more are dropped and counted.
pub const RX_QUEUE: usize = 1024;
/// Datagrams a socket may have on their way to the wire.
pub const TX_BUFFERS: usize = 512;

/// A received datagram.
pub struct RxDatagram {
    pub buf: Box<[u8]>,
    pub len: usize,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// A datagram to send; its buffer goes back to `owner` once the frame is built.
pub struct TxRequest {
    pub buf: Box<[u8]>,
    pub len: usize,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub owner: Arc<SocketShared>,
}

/// One socket, as both sides see it.
pub struct SocketShared {
    pub local: SocketAddr,
    pub rx: ArrayQueue<RxDatagram>,
    pub rx_free: ArrayQueue<Box<[u8]>>,
    pub tx_free: ArrayQueue<Box<[u8]>>,
    pub rx_waker: AtomicWaker,
    pub rx_dropped: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub checksum_errors: AtomicU64,
}

impl SocketShared {
    pub fn new(local: SocketAddr) -> Arc<Self> {
        let pool = |n: usize| {
            let q = ArrayQueue::new(n);
            for _ in 0..n {
                let _ = q.push(vec![0u8; MAX_PAYLOAD].into_boxed_slice());
            }
            q
        };
        Arc::new(SocketShared {
            local,
            rx: ArrayQueue::new(RX_QUEUE),
            rx_free: pool(RX_QUEUE),
            tx_free: pool(TX_BUFFERS),
            rx_waker: AtomicWaker::new(),
            rx_dropped: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            checksum_errors: AtomicU64::new(0),
        })
    }

    /// Worker side: queues a datagram for the application, or counts the drop.
    pub fn deliver(&self, payload: &[u8], peer: SocketAddr, local: SocketAddr) {
        let Some(mut buf) = (payload.len() <= MAX_PAYLOAD)
            .then(|| self.rx_free.pop())
            .flatten()
        else {
            self.rx_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        buf[..payload.len()].copy_from_slice(payload);
        let d = RxDatagram {
            buf,
            len: payload.len(),
            peer,
            local,
        };
        if let Err(d) = self.rx.push(d) {
            let _ = self.rx_free.push(d.buf);
            self.rx_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.rx_waker.wake();
    }
}

/// Bound sockets by binding key; replaced whole (read-copy-update) when one is added or removed.
pub type Registry = crate::key_map::KeyMap<Arc<SocketShared>>;
