//! AF_XDP: the UMEM, the four rings and one socket per RX queue; and the generator's raw packet
//! socket (`packet`). Every `unsafe` block of the userspace data path lives in this module, each
//! with its `// SAFETY:` argument.
//!
//! The rings are written here rather than taken from a crate: the one that works on this kernel
//! (xdpilone) is EUPL-1.2, which does not fit an MIT project, and the ring protocol is small.

pub mod nic;
pub mod packet;
pub mod ring;
pub mod socket;
pub mod umem;

pub use socket::{Batch, Verdict, XskConfig, XskError, XskSocket, XskStats, ZeroCopy};
