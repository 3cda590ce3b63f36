//! The wire-level conformance suite: scripted segment exchanges against one endpoint on a
//! virtual clock (see [`super::script`]), each asserting the exact segments we send. Where
//! Linux's behaviour is the reference, the script says so; the Linux figures are its defaults
//! (6.x: tcp_synack_retries 5, tcp_retries2 15, delayed ACK 40 ms, min RTO 200 ms, initial RTO
//! 1 s, tcp_invalid_ratelimit 500 ms).

mod close;
mod cookies;
mod data;
mod handshake;
mod icmp;
mod listener;
mod memory;
mod options;
mod reset;
mod retransmission;
mod time_wait;
mod window;

use super::script::run;

/// The opening of most scripts: a passive open, MSS 1000 both ways, no other options, a 65535
/// byte receive buffer (the whole window, unscaled).
const OPEN: &str = r#"
        config mss=1000 recv_buffer=65535
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
"#;

/// Runs [`OPEN`], then `rest`.
fn open_and(rest: &str) {
    run(&format!("{OPEN}{rest}"));
}

/// [`OPEN`] with timestamps (peer TSval 100) and SACK.
const OPEN_TS_SACK: &str = r#"
        config mss=1000 recv_buffer=65535
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000,sackOK,TS val 100 ecr 0>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000,sackOK,TS val * ecr 100>
        +.01  < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 110 ecr =>
        +0    app accept
"#;

/// Runs [`OPEN_TS_SACK`], then `rest`.
fn open_ts_sack_and(rest: &str) {
    run(&format!("{OPEN_TS_SACK}{rest}"));
}
