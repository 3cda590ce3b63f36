//! netdemux: a kernel-bypass packet demultiplexer.
//!
//! Packets whose destination socket address (protocol, IP, port) is bound are steered by an XDP
//! program to AF_XDP sockets; everything else reaches the kernel untouched. The layers, from
//! the bottom (each imports only those below it; `ARCHITECTURE.md` at the repository's root
//! has the whole picture and the path of a frame):
//!
//! - [`counters`], [`key_map`]: small tools every layer uses.
//! - [`wire`] (packets), [`xsk`] (AF_XDP rings): bytes and rings.
//! - [`stack`] (sans-IO UDP/TCP state), [`control`] (the XDP program, its pinned state, the
//!   kernel's tables): protocols and the control plane.
//! - [`services`] (built-in echo, sink, HTTP), [`bridge`] (worker ↔ application queues),
//!   [`report`] (counters, the daemon's report and how it is shown).
//! - [`runtime`]: the data plane — one start-up, one worker loop per RX queue.
//! - [`api`] (`Stack` and its sockets), [`daemon`] (`netdemux run`), [`generator`].
//! - [`cli`]: the `netdemux` command.

pub use api::{Stack, StackBuilder, TcpListener, TcpStream, UdpSocket};

pub mod counters;
pub mod key_map;
#[cfg(any(test, feature = "testbed"))]
pub mod test_rng;

pub mod wire;
pub mod xsk;

pub mod control;
pub mod stack;

pub mod bridge;
pub mod report;
pub mod services;

pub mod runtime;

pub mod api;
pub mod daemon;
pub mod generator;

pub mod cli;

#[cfg(feature = "testbed")]
pub mod testbed;
