//! Built-in services that run on the queue workers: the UDP sink counts the datagrams of its
//! bindings and drops them; the UDP echo answers each with the same payload, in place; the TCP
//! echo and the HTTP responder run on the worker's userspace TCP endpoint.

pub mod http;
mod table;
pub mod tcp;
pub mod udp_echo;

pub use table::{Kind, ServiceTable};
