//! The userspace stack, sans-IO: what to put on the wire and what to remember, given inputs and
//! the time. It knows nothing of rings, threads or tokio.

pub mod hash;
pub mod neighbour_cache;
pub mod tcp;
