//! The control plane: loading and attaching the XDP program, its pinned state, and the binding
//! table and counters that the CLI reads and changes while traffic flows.

pub mod attach;
pub mod attachment;
pub mod binding;
pub mod iface;
pub mod kernel_neighbours;
pub mod kernel_routes;
pub mod lock;
pub mod maps;
pub mod netlink;
pub mod netns;
pub mod object;
pub mod privilege;
pub mod state;
pub mod stats;
pub mod sys;
pub mod veth;
