//! The daemon (`netdemux run`): one worker thread per RX queue moving frames from its AF_XDP
//! socket to the services, and a control socket through which the CLI reads the counters.

pub mod config;
pub mod control;
pub mod daemon;
pub mod faults;
pub mod metrics_http;
pub mod tcp_api;
pub mod worker;
pub mod xdp_log;
