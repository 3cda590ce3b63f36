//! The application API: a [`Stack`] on an interface, and [`UdpSocket`]s bound to socket
//! addresses that netdemux steers to it. The futures work on any executor (tokio included);
//! the data path stays on the queue workers, and the bridge to the application is lock-free
//! queues of pooled buffers with wakers — no lock and no allocation per datagram.

pub(crate) mod bridge;
mod stack;
mod udp;

pub use stack::{Stack, StackBuilder};
pub use udp::UdpSocket;
