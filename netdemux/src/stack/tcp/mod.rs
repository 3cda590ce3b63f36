//! TCP, sans-IO (RFC 9293): a connection state machine per flow ([`connection`]), a flow table
//! with listeners per queue worker ([`endpoint`]), and their parts — sequence numbers,
//! reassembly, RTT estimation and congestion control. Input is a segment and the time; output
//! is segments to send, events for the application, and the next deadline.

pub mod assembler;
pub mod congestion;
pub mod connection;
pub mod counters;
pub mod endpoint;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod isn;
pub mod memory;
pub mod rtt;
pub mod send_buffer;
pub mod syn_cookie;
pub mod time_wait;

#[cfg(test)]
mod tests;

pub use crate::wire::seq::Seq;
pub use connection::{Config, Connection, Events, State};
pub use counters::{AtomicCounters, Counters};
pub use endpoint::{ConnId, Endpoint, Limits};
pub use isn::IsnSource;
pub use memory::MemoryBudget;
