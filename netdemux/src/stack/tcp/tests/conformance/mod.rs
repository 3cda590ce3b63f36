//! The wire-level conformance suite: scripted segment exchanges against one endpoint on a
//! virtual clock (see [`super::script`]), each asserting the exact segments we send. Where
//! Linux's behaviour is the reference, the script says so; the Linux figures are its defaults
//! (6.x: tcp_synack_retries 5, tcp_retries2 15, delayed ACK 40 ms, min RTO 200 ms, initial RTO
//! 1 s, tcp_invalid_ratelimit 500 ms).

mod data;
mod handshake;
