//! netdemux: a kernel-bypass packet demultiplexer.
//!
//! Packets whose destination socket address (protocol, IP, port) is bound are steered by an XDP
//! program to AF_XDP sockets; everything else reaches the kernel untouched. This crate holds the
//! control plane ([`control`]) and the command line ([`cli`]). See DESIGN.md for the full picture.

pub use api::{Stack, StackBuilder, TcpListener, TcpStream, UdpSocket};

pub mod api;
pub mod cli;
pub mod control;
pub mod generator;
pub mod runtime;
pub mod services;
pub mod stack;
pub mod testbed;
pub mod wire;
pub mod xsk;
