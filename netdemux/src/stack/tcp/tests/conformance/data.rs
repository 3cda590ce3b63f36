//! Data both ways: acknowledgment (immediate, delayed, duplicate, SACK), the receive window and
//! its updates, Nagle, the initial window.

use super::open_and;
use crate::stack::tcp::tests::script::run;

#[test]
fn every_second_full_segment_is_acknowledged_at_once() {
    // RFC 5681 §4.2 / RFC 1122: an ACK for at least every second full-sized segment.
    open_and(
        r#"
        +.01  < . 1:1001(1000) ack 1 win 65535
        +0    < . 1001:2001(1000) ack 1 win 65535
        +0    > . 1:1(0) ack 2001 win 63535
    "#,
    );
}

#[test]
fn a_lone_segment_is_acknowledged_after_the_delayed_ack_timer() {
    // Linux: 40 ms (TCP_DELACK_MIN).
    open_and(
        r#"
        +.01  < P. 1:101(100) ack 1 win 65535
        +.04  > . 1:1(0) ack 101 win 65435
    "#,
    );
}

#[test]
fn an_out_of_order_segment_is_acknowledged_at_once_and_the_hole_fill_too() {
    open_and(
        r#"
        +.01  < . 1001:2001(1000) ack 1 win 65535
        +0    > . 1:1(0) ack 1 win 65535
        +.01  < . 1:1001(1000) ack 1 win 65535
        +0    > . 1:1(0) ack 2001 win 63535
        +0    expect counter out_of_order 1
    "#,
    );
}

#[test]
fn a_segment_already_received_gets_an_immediate_duplicate_ack() {
    open_and(
        r#"
        +.01  < P. 1:101(100) ack 1 win 65535
        +.04  > . 1:1(0) ack 101 win 65435
        +.01  < P. 1:101(100) ack 1 win 65535
        +0    > . 1:1(0) ack 101 win 65435
    "#,
    );
}

#[test]
fn unread_data_shrinks_the_window_and_reading_reopens_it() {
    open_and(
        r#"
        +.01  < . 1:1001(1000) ack 1 win 65535
        +0    < . 1001:2001(1000) ack 1 win 65535
        +0    > . 1:1(0) ack 2001 win 63535
        +0    expect readable 2000
        // Reading frees 2000 bytes, two MSS: worth a window update at once.
        +.01  app read 2000
        +0    > . 1:1(0) ack 2001 win 65535
    "#,
    );
}

#[test]
fn the_initial_window_is_ten_segments() {
    // RFC 6928: min(10 * MSS, max(2 * MSS, 14600)).
    open_and(
        r#"
        +0    app write 12000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > . 3001:4001(1000) ack 1 win 65535
        +0    > . 4001:5001(1000) ack 1 win 65535
        +0    > . 5001:6001(1000) ack 1 win 65535
        +0    > . 6001:7001(1000) ack 1 win 65535
        +0    > . 7001:8001(1000) ack 1 win 65535
        +0    > . 8001:9001(1000) ack 1 win 65535
        +0    > . 9001:10001(1000) ack 1 win 65535
        // Slow start: each ACK of 2000 bytes opens room for two more segments (before the
        // tail-loss probe's 2 SRTT = 20 ms are up).
        +.015 < . 1:1(0) ack 2001 win 65535
        +0    > . 10001:11001(1000) ack 1 win 65535
        +0    > P. 11001:12001(1000) ack 1 win 65535
    "#,
    );
}

#[test]
fn the_peers_window_bounds_what_is_sent() {
    open_and(
        r#"
        +.01  < . 1:1(0) ack 1 win 2500
        +0    app write 5000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        // 500 bytes of window left: less than an MSS and less than half the largest window
        // seen, so silly-window avoidance waits (RFC 1122 §4.2.3.4).
        +.015 < . 1:1(0) ack 2001 win 3000
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > . 3001:4001(1000) ack 1 win 65535
        +0    > P. 4001:5001(1000) ack 1 win 65535
    "#,
    );
}

#[test]
fn without_nagle_small_writes_go_at_once() {
    run(r#"
        config mss=1000 recv_buffer=65535 nodelay=on
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    app write 10
        +0    > P. 1:11(10) ack 1 win 65535
        +0    app write 10
        +0    > P. 11:21(10) ack 1 win 65535
    "#);
}

#[test]
fn with_nagle_a_second_small_write_waits_for_the_ack() {
    open_and(
        r#"
        +0    app write 10
        +0    > P. 1:11(10) ack 1 win 65535
        +0    app write 10
        +0    app write 10
        +.02  < . 1:1(0) ack 11 win 65535
        +0    > P. 11:31(20) ack 1 win 65535
    "#,
    );
}

#[test]
fn an_ack_for_data_never_sent_is_answered_and_ignored() {
    // RFC 9293 §3.10.7.4: SEG.ACK > SND.NXT: send an ACK, drop the segment.
    open_and(
        r#"
        +0    app write 100
        +0    > P. 1:101(100) ack 1 win 65535
        +.01  < . 1:1(0) ack 5000 win 65535
        +0    > . 101:101(0) ack 1 win 65535
    "#,
    );
}

#[test]
fn data_beyond_the_window_is_cut_and_the_window_repeated() {
    run(r#"
        config mss=1000 recv_buffer=4000
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 4000 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    < . 1:3001(3000) ack 1 win 65535
        +0    > . 1:1(0) ack 3001 win 1000
        +0    < . 3001:5001(2000) ack 1 win 65535
        +0    > . 1:1(0) ack 4001 win 0
        +0    expect readable 4000
    "#);
}
