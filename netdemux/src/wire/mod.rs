//! Packets in userspace: checksums (RFC 1071/1624); [`classify`] (the destination socket address
//! of a frame, as the XDP program finds it: the data path's single pass); and per-layer
//! representations with checked parse and emit — [`ethernet::EthernetRepr`], [`ip::IpRepr`],
//! [`udp::UdpRepr`] (with checksum checks) and [`udp::emit`]; [`tcp::TcpHeader`] (with the
//! options netdemux uses, and [`seq::Seq`] numbers), [`tcp::TcpPacket`] and [`tcp::emit`] likewise for TCP.
//!
//! Own code rather than a crate: etherparse and smoltcp::wire both parse well, but the data path
//! needs exactly one pass over borrowed frame bytes that yields the binding key and the payload
//! bounds, and an emitter that writes straight into a UMEM frame; these functions do that with no
//! allocation and no copy beyond the payload, and mirror the XDP program's parser line for line,
//! so kernel and userspace agree on every frame.

pub mod checksum;
mod classify;
pub mod ethernet;
pub mod icmp;
pub mod ip;
pub mod seq;
pub mod tcp;
pub mod udp;

/// Why bytes are not an acceptable header or packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its headers say (or than a header).
    Truncated,
    /// A field holds what the protocol does not allow.
    Malformed,
    /// A checksum does not verify (or a mandatory one is missing).
    Checksum,
    /// Valid, but not handled here (e.g. a fragment).
    Unsupported,
}

pub use classify::{Classified, classify, source};
