//! Packets in userspace: [`checksum`] (RFC 1071/1624), and [`classify`], which finds the destination socket address
//! of a frame the way the XDP program does, so a service can tell which binding a redirected
//! frame belongs to. Slices and bounds checks only: no allocation, no panics on any input.

pub mod checksum;
mod classify;

pub use classify::{Classified, classify, source};
