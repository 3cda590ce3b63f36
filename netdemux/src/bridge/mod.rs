//! What the queue workers and the application share, below both: lock-free queues of pooled
//! buffers with wakers, no lock and no allocation per datagram or chunk. [`udp`] carries
//! datagrams, [`tcp`] stream bytes, listener backlogs and commands; [`link`] is each worker's
//! inbox; [`Bridge`] ties them together for one data plane.

pub mod link;
pub mod tcp;
pub mod udp;

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use arc_swap::ArcSwap;

pub use link::WorkerLink;

/// The application side of one data plane, as its workers see it.
pub struct Bridge {
    /// Each worker's inbox, by worker index.
    pub links: Box<[WorkerLink]>,
    /// The bound UDP sockets.
    pub sockets: ArcSwap<udp::Registry>,
    /// Which worker owns each outbound TCP connection's local address (segments that land on
    /// another queue are handed to it).
    pub outbound: ArcSwap<HashMap<SocketAddr, usize>>,
}

impl Bridge {
    /// A bridge to `workers` workers.
    pub fn new(workers: usize) -> std::io::Result<Arc<Bridge>> {
        Ok(Arc::new(Bridge {
            links: (0..workers)
                .map(|_| WorkerLink::new())
                .collect::<std::io::Result<_>>()?,
            sockets: ArcSwap::from_pointee(udp::Registry::default()),
            outbound: ArcSwap::from_pointee(HashMap::new()),
        }))
    }
}
