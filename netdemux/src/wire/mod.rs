//! Packets in userspace: checksums (RFC 1071/1624), [`classify`] (the destination socket
//! address of a frame, as the XDP program finds it), and [`udp`] (parse with checksum checks,
//! emit with checksums filled in).
//!
//! Own code rather than a crate: etherparse and smoltcp::wire both parse well, but the data path
//! needs exactly one pass over borrowed frame bytes that yields the binding key and the payload
//! bounds, and an emitter that writes straight into a UMEM frame; these functions do that with no
//! allocation and no copy beyond the payload, and mirror the XDP program's parser line for line,
//! so kernel and userspace agree on every frame.

pub mod checksum;
mod classify;
pub mod udp;

pub use classify::{Classified, classify, source};
