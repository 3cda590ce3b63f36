//! What a queue worker and the application share about TCP: per stream, two queues of pooled
//! byte chunks (one each way), wakers and a few atomics; per listener, a queue of accepted
//! streams. No lock on the data path: the worker fills chunks from the connection's receive
//! buffer and drains chunks into its send buffer; the application does the rest.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

/// Bytes per chunk.
pub const CHUNK: usize = 16 * 1024;
/// Chunks per direction and stream (so 256 KiB in flight between the worker and the
/// application each way, on top of the connection's own buffers).
pub const CHUNKS: usize = 16;
/// Accepted streams a listener queues for `accept`.
pub const ACCEPT_QUEUE: usize = 1024;
/// Commands and stream kicks a worker queues.
pub const COMMANDS: usize = 4096;

/// A chunk of stream bytes.
pub struct Chunk {
    pub buf: Box<[u8]>,
    pub len: usize,
}

/// Where a stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamState {
    /// The handshake has not completed.
    Connecting = 0,
    /// Open.
    Open = 1,
    /// Ended normally.
    Closed = 2,
    /// Reset by the peer (or refused).
    Reset = 3,
    /// The peer stopped answering.
    TimedOut = 4,
    /// An ICMP error said the peer cannot be reached (while connecting).
    Unreachable = 5,
}

impl StreamState {
    fn from_u8(v: u8) -> StreamState {
        match v {
            0 => StreamState::Connecting,
            1 => StreamState::Open,
            2 => StreamState::Closed,
            3 => StreamState::Reset,
            4 => StreamState::TimedOut,
            _ => StreamState::Unreachable,
        }
    }

    /// True once the connection has ended (closed, reset, timed out or unreachable).
    pub fn has_ended(self) -> bool {
        !matches!(self, StreamState::Connecting | StreamState::Open)
    }
}

/// One stream, as both sides see it.
pub struct StreamShared {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The owning worker.
    pub worker: usize,
    /// The worker's handle of the connection (`ConnId::to_u64`), `u64::MAX` until known.
    pub conn: AtomicU64,
    pub rx: ArrayQueue<Chunk>,
    /// Bytes that arrived before the connection ended but found no room in `rx`: read after
    /// it, before the end is reported.
    pub late: std::sync::Mutex<std::collections::VecDeque<Chunk>>,
    pub rx_free: ArrayQueue<Box<[u8]>>,
    pub tx: ArrayQueue<Chunk>,
    pub tx_free: ArrayQueue<Box<[u8]>>,
    pub read_waker: AtomicWaker,
    pub write_waker: AtomicWaker,
    /// A [`StreamState`]; read and written through [`StreamShared::state`] and
    /// [`StreamShared::set_state`].
    state: AtomicU8,
    /// The peer closed and every byte before its FIN is in `rx`.
    pub read_eof: AtomicBool,
    /// The application shut its side down: FIN after what is in `tx`.
    pub write_shutdown: AtomicBool,
    /// The application dropped the stream.
    pub dropped: AtomicBool,
    /// The application asked for the connection to be reset.
    pub abort: AtomicBool,
    /// The application asked for Nagle off (true) or on.
    pub nodelay: AtomicBool,
}

impl StreamShared {
    /// Queues bytes the worker could not hand over before the connection ended.
    pub fn push_late(&self, data: &[u8]) {
        let mut late = self.late.lock().unwrap_or_else(|p| p.into_inner());
        for piece in data.chunks(CHUNK) {
            let mut buf = vec![0u8; CHUNK].into_boxed_slice();
            buf[..piece.len()].copy_from_slice(piece);
            late.push_back(Chunk {
                buf,
                len: piece.len(),
            });
        }
    }

    /// The next late chunk, if any.
    pub fn pop_late(&self) -> Option<Chunk> {
        self.late
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// True when no late chunk waits.
    pub fn late_is_empty(&self) -> bool {
        self.late
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// A stream between `local` and `peer`, served by worker `worker`.
    pub fn new(local: SocketAddr, peer: SocketAddr, worker: usize) -> Arc<StreamShared> {
        let pool = || {
            let q = ArrayQueue::new(CHUNKS);
            for _ in 0..CHUNKS {
                let _ = q.push(vec![0u8; CHUNK].into_boxed_slice());
            }
            q
        };
        Arc::new(StreamShared {
            local,
            peer,
            worker,
            conn: AtomicU64::new(u64::MAX),
            rx: ArrayQueue::new(CHUNKS),
            late: std::sync::Mutex::new(std::collections::VecDeque::new()),
            rx_free: pool(),
            tx: ArrayQueue::new(CHUNKS),
            tx_free: pool(),
            read_waker: AtomicWaker::new(),
            write_waker: AtomicWaker::new(),
            state: AtomicU8::new(StreamState::Connecting as u8),
            read_eof: AtomicBool::new(false),
            write_shutdown: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            nodelay: AtomicBool::new(false),
        })
    }

    /// The stream's state.
    pub fn state(&self) -> StreamState {
        StreamState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Worker side: records a new state and wakes both directions.
    pub fn set_state(&self, s: StreamState) {
        self.state.store(s as u8, Ordering::Release);
        self.read_waker.wake();
        self.write_waker.wake();
    }
}

/// One listener, as both sides see it.
pub struct ListenerShared {
    pub local: SocketAddr,
    pub accepted: ArrayQueue<Arc<StreamShared>>,
    pub waker: AtomicWaker,
}

impl ListenerShared {
    /// A listener on `local`.
    pub fn new(local: SocketAddr) -> Arc<ListenerShared> {
        Arc::new(ListenerShared {
            local,
            accepted: ArrayQueue::new(ACCEPT_QUEUE),
            waker: AtomicWaker::new(),
        })
    }
}

/// What the application asks a worker to do.
pub enum Command {
    /// Open a connection (the local port is reserved and bound already).
    Connect(Arc<StreamShared>),
    /// Accept connections on the listener's address.
    Listen(Arc<ListenerShared>),
    /// Stop accepting on this address.
    Unlisten(SocketAddr),
    /// Something changed on this stream (bytes to send, room to receive, shutdown, drop).
    Kick(Arc<StreamShared>),
    /// A segment another worker received for a connection this worker owns:
    /// (remote, local, TCP header and payload).
    Segment(SocketAddr, SocketAddr, Vec<u8>),
    /// An ICMP error another worker received about a connection this worker owns.
    Icmp(crate::wire::icmp::IcmpError),
}
