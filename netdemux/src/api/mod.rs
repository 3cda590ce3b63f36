//! The application API: a [`Stack`] on an interface, [`UdpSocket`]s bound to socket addresses
//! that netdemux steers to it, and TCP: [`TcpListener`]s and [`TcpStream`]s (tokio
//! `AsyncRead`/`AsyncWrite`) on the userspace TCP stack. The futures work on any executor (tokio
//! included); the data path stays on the queue workers, and the bridge to the application
//! ([`crate::bridge`]) is lock-free queues of pooled buffers with wakers — no lock and no
//! allocation per datagram.
//!
//! [`stack`] holds what the sockets share; [`builder`] starts a stack; [`udp`] and [`tcp`] are
//! the sockets; [`port`] reserves outbound ports.

mod builder;
mod peer_memory;
mod port;
mod stack;
mod tcp;
mod udp;

pub use builder::StackBuilder;
pub use stack::Stack;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
