//! Built-in services that run on the queue workers: the UDP sink counts the datagrams of its
//! bindings and drops them; the UDP echo answers each with the same payload, in place.

mod table;
pub mod udp_echo;

pub use table::{KeyHasher, KeyMap, Kind, ServiceTable};
