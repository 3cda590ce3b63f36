//! Closing: FIN in every state, TIME_WAIT, FIN_WAIT_2, aborts.

use super::open_and;

#[test]
fn active_close_through_fin_wait_and_time_wait() {
    // Linux keeps TIME_WAIT 60 s (TCP_TIMEWAIT_LEN).
    open_and(
        r#"
        +0    app close
        +0    > F. 1:1(0) ack 1 win 65535
        +0    expect state fin-wait-1
        +.01  < . 1:1(0) ack 2 win 65535
        +0    expect state fin-wait-2
        +.01  < F. 1:1(0) ack 2 win 65535
        // The FIN takes a sequence number and no buffer: the window's edge stays put.
        +0    > . 2:2(0) ack 2 win 65534
        +0    expect state time-wait
        +59.9 expect state time-wait
        +.2   expect gone
    "#,
    );
}

#[test]
fn passive_close_through_close_wait_and_last_ack() {
    open_and(
        r#"
        +.01  < F. 1:1(0) ack 1 win 65535
        +0    > . 1:1(0) ack 2 win 65534
        +0    expect state close-wait
        +0    expect event peer_closed
        +.01  app close
        +0    > F. 1:1(0) ack 2 win 65534
        +0    expect state last-ack
        +.01  < . 2:2(0) ack 2 win 65535
        +0    expect gone
        +0    expect event closed
    "#,
    );
}

#[test]
fn simultaneous_close_goes_through_closing() {
    open_and(
        r#"
        +0    app close
        +0    > F. 1:1(0) ack 1 win 65535
        +0    < F. 1:1(0) ack 1 win 65535
        +0    > . 2:2(0) ack 2 win 65534
        +0    expect state closing
        +.01  < . 2:2(0) ack 2 win 65535
        +0    expect state time-wait
    "#,
    );
}

#[test]
fn a_fin_after_data_is_acknowledged_with_the_data() {
    open_and(
        r#"
        +.01  < FP. 1:101(100) ack 1 win 65535
        +0    > . 1:1(0) ack 102 win 65434
        +0    expect readable 100
        +0    expect state close-wait
    "#,
    );
}

#[test]
fn a_fin_ahead_of_missing_data_waits_for_it() {
    open_and(
        r#"
        +.01  < F. 101:101(0) ack 1 win 65535
        +0    > . 1:1(0) ack 1 win 65535
        +0    expect state established
        +.01  < . 1:101(100) ack 1 win 65535
        +0    > . 1:1(0) ack 102 win 65434
        +0    expect state close-wait
    "#,
    );
}

#[test]
fn time_wait_acknowledges_a_retransmitted_fin_and_starts_over() {
    open_and(
        r#"
        +0    app close
        +0    > F. 1:1(0) ack 1 win 65535
        +.01  < F. 1:1(0) ack 2 win 65535
        +0    > . 2:2(0) ack 2 win 65534
        +30   < F. 1:1(0) ack 2 win 65535
        +0    > . 2:2(0) ack 2 win 65534
        // The 60 s begin again from the retransmitted FIN.
        +59.9 expect state time-wait
        +.2   expect gone
    "#,
    );
}

#[test]
fn fin_wait_2_ends_after_a_minute_of_silence() {
    // Linux: tcp_fin_timeout 60 s.
    open_and(
        r#"
        +0    app close
        +0    > F. 1:1(0) ack 1 win 65535
        +.01  < . 1:1(0) ack 2 win 65535
        +59.9 expect state fin-wait-2
        +.2   expect gone
    "#,
    );
}

#[test]
fn the_fin_waits_behind_unsent_data() {
    open_and(
        r#"
        +0    app write 100
        +0    > P. 1:101(100) ack 1 win 65535
        +0    app write 50
        // Nagle holds a small segment while data is in flight, but not the last one with the
        // FIN (Linux's tcp_nagle_test exempts the final FIN too).
        +0    app close
        +0    > FP. 101:151(50) ack 1 win 65535
    "#,
    );
}

#[test]
fn abort_sends_rst_ack_and_forgets_the_connection() {
    open_and(
        r#"
        +0    app abort
        +0    > R. 1:1(0) ack 1 win 0
        +0    expect gone
        +0    expect counter resets_sent 1
    "#,
    );
}

#[test]
fn data_after_the_peers_fin_is_not_taken() {
    // RFC 9293 §3.10.7.4 (seventh step): text after a FIN is ignored in CLOSE-WAIT.
    open_and(
        r#"
        +.01  < F. 1:1(0) ack 1 win 65535
        +0    > . 1:1(0) ack 2 win 65534
        +.01  < . 2:102(100) ack 1 win 65535
        +0    > . 1:1(0) ack 2 win 65534
        +0    expect readable 0
    "#,
    );
}

#[test]
fn close_in_syn_sent_ends_at_once() {
    super::super::script::run(
        r#"
        +0    app connect
        +0    > S 0:0(0) win 65535 <...>
        +0    app close
        +0    expect gone
    "#,
    );
}
