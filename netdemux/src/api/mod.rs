//! The application API: a [`Stack`] on an interface, [`UdpSocket`]s bound to socket addresses
//! that netdemux steers to it, and TCP: [`TcpListener`]s and [`TcpStream`]s (tokio
//! `AsyncRead`/`AsyncWrite`) on the userspace TCP stack. The futures work on any executor (tokio included);
//! the data path stays on the queue workers, and the bridge to the application is lock-free
//! queues of pooled buffers with wakers — no lock and no allocation per datagram.

pub(crate) mod bridge;
mod stack;
mod tcp;
pub(crate) mod tcp_bridge;
mod udp;

pub use stack::{Stack, StackBuilder};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
