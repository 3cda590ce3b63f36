//! Options on established connections: timestamps and PAWS (RFC 7323), SACK blocks (RFC 2018),
//! window scaling.

use super::open_ts_sack_and;
use crate::stack::tcp::tests::script::run;

#[test]
fn paws_drops_a_segment_with_an_older_timestamp() {
    // RFC 7323 §5.3: an older TSval is an old duplicate: dropped, answered with an ACK.
    open_ts_sack_and(
        r#"
        +.01  < P. 1:101(100) ack 1 win 65535 <nop,nop,TS val 50 ecr =>
        +0    > . 1:1(0) ack 1 win 65535 <nop,nop,TS val * ecr 110>
        +0    expect readable 0
        +0    expect counter paws_rejected 1
    "#,
    );
}

#[test]
fn answers_to_pure_acks_failing_paws_are_rate_limited() {
    // Linux: tcp_validate_incoming answers a PAWS failure through tcp_oow_rate_limited.
    open_ts_sack_and(
        r#"
        +.01  < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 50 ecr =>
        +0    > . 1:1(0) ack 1 win 65535 <nop,nop,TS val * ecr 110>
        +.1   < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 50 ecr =>
        +0    expect counter paws_rejected 2
    "#,
    );
}

#[test]
fn ts_recent_follows_in_order_segments_only() {
    // RFC 7323 §4.3: TS.Recent takes SEG.TSval only when SEG.SEQ <= Last.ACK.sent.
    open_ts_sack_and(
        r#"
        +.01  < . 1001:2001(1000) ack 1 win 65535 <nop,nop,TS val 130 ecr =>
        +0    > . 1:1(0) ack 1 win 65535 <nop,nop,TS val * ecr 110,nop,nop,sack 1001:2001>
        +.01  < . 1:1001(1000) ack 1 win 65535 <nop,nop,TS val 140 ecr =>
        +0    > . 1:1(0) ack 2001 win 63535 <nop,nop,TS val * ecr 140>
    "#,
    );
}

#[test]
fn sack_blocks_report_the_most_recent_range_first() {
    // RFC 2018 §4: the first block holds the most recently received segment.
    open_ts_sack_and(
        r#"
        +.01  < . 2001:3001(1000) ack 1 win 65535 <nop,nop,TS val 120 ecr =>
        +0    > . 1:1(0) ack 1 win 65535 <nop,nop,TS val * ecr 110,nop,nop,sack 2001:3001>
        +0    < . 4001:5001(1000) ack 1 win 65535 <nop,nop,TS val 120 ecr =>
        +0    > . 1:1(0) ack 1 win 65535 <nop,nop,TS val * ecr 110,nop,nop,sack 4001:5001 2001:3001>
        +0    < . 3001:4001(1000) ack 1 win 65535 <nop,nop,TS val 120 ecr =>
        +0    > . 1:1(0) ack 1 win 65535 <nop,nop,TS val * ecr 110,nop,nop,sack 2001:5001>
        +0    < . 1:2001(2000) ack 1 win 65535 <nop,nop,TS val 130 ecr =>
        +0    > . 1:1(0) ack 5001 win 60535 <nop,nop,TS val * ecr 130>
    "#,
    );
}

/// A passive open with window scaling both ways: the peer's shift 7, ours 3 (a 256 KiB
/// buffer, whose window starts at 64 KiB and grows with the reading).
const OPEN_WSCALE: &str = r#"
        config mss=1000
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000,nop,wscale 3>
        +.01  < . 1:1(0) ack 1 win 512
        +0    app accept
"#;

#[test]
fn the_peers_window_is_scaled_by_its_shift() {
    run(&format!(
        "{OPEN_WSCALE}{}",
        r#"
        // 40 << 7 = 5120 bytes: five segments fit.
        +.01  < . 1:1(0) ack 1 win 40
        +0    app write 8000
        +0    > . 1:1001(1000) ack 1 win 8192
        +0    > . 1001:2001(1000) ack 1 win 8192
        +0    > . 2001:3001(1000) ack 1 win 8192
        +0    > . 3001:4001(1000) ack 1 win 8192
        +0    > . 4001:5001(1000) ack 1 win 8192
    "#
    ));
}

#[test]
fn a_scaled_window_is_rounded_up_so_its_edge_never_recedes() {
    // The window starts at 64 KiB: 65536 - 1001 = 64535 bytes left, 8066.9 units of 8.
    // Truncated to 8066 the edge would move 7 bytes left; Linux rounds up
    // (tcp_select_window: ALIGN(cur_win, 1 << rcv_wscale)).
    run(&format!(
        "{OPEN_WSCALE}{}",
        r#"
        +.01  < P. 1:1002(1001) ack 1 win 512
        +.04  > . 1:1(0) ack 1002 win 8067
    "#
    ));
}
