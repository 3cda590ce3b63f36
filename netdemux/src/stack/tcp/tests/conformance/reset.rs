//! RST and SYN validation (RFC 5961), challenge ACKs and their rate limit, old ACKs.

use super::open_and;

#[test]
fn a_rst_with_the_exact_sequence_resets() {
    open_and(
        r#"
        +.01  < R 1:1(0) win 0
        +0    expect gone
        +0    expect event reset
        +0    expect counter resets_received 1
    "#,
    );
}

#[test]
fn a_rst_inside_the_window_gets_a_challenge_ack() {
    // RFC 5961 §3.2.
    open_and(
        r#"
        +.01  < R 1001:1001(0) win 0
        +0    > . 1:1(0) ack 1 win 65535
        +0    expect state established
        +0    expect counter challenge_acks 1
    "#,
    );
}

#[test]
fn a_rst_outside_the_window_is_dropped_without_answer() {
    open_and(
        r#"
        +.01  < R 100001:100001(0) win 0
        +0    expect state established
    "#,
    );
}

#[test]
fn a_syn_on_an_established_connection_gets_a_challenge_ack() {
    // RFC 5961 §4.2.
    open_and(
        r#"
        +.01  < S 500:500(0) win 65535 <mss 1000>
        +0    > . 1:1(0) ack 1 win 65535
        +0    expect state established
        +0    expect counter challenge_acks 1
    "#,
    );
}

#[test]
fn challenge_acks_are_rate_limited() {
    // RFC 5961 §7; Linux allows one per 500 ms per connection (tcp_invalid_ratelimit), the
    // same clock that limits answers to out-of-window segments.
    open_and(
        r#"
        +.01  < R 1001:1001(0) win 0
        +0    > . 1:1(0) ack 1 win 65535
        +.1   < R 2001:2001(0) win 0
        +.1   < S 500:500(0) win 65535 <mss 1000>
        +.4   < R 3001:3001(0) win 0
        +0    > . 1:1(0) ack 1 win 65535
        +0    expect counter challenge_acks 2
    "#,
    );
}

#[test]
fn data_with_an_ack_older_than_the_largest_window_is_refused() {
    // RFC 5961 §5.2: SEG.ACK must be at least SND.UNA - MAX.SND.WND (65535 here); otherwise a
    // challenge ACK, and the data is dropped (Linux's tcp_ack returns "too old").
    open_and(
        r#"
        +.01  < P. 1:101(100) ack 4294897296 win 65535
        +0    > . 1:1(0) ack 1 win 65535
        +0    expect readable 0
        +0    expect counter challenge_acks 1
    "#,
    );
}

#[test]
fn data_with_an_old_ack_inside_the_largest_window_is_taken() {
    open_and(
        r#"
        +0    app write 1000
        +0    > P. 1:1001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1001 win 65535
        +.01  < P. 1:101(100) ack 501 win 65535
        +0    expect readable 100
        +.04  > . 1001:1001(0) ack 101 win 65435
    "#,
    );
}

#[test]
fn out_of_window_acks_are_answered_at_most_every_half_second() {
    // Linux's tcp_oow_rate_limited: pure ACKs (and SYNs) outside the window get a duplicate
    // ACK at most every 500 ms; segments with data always do.
    open_and(
        r#"
        +.01  < . 100001:100001(0) ack 1 win 65535
        +0    > . 1:1(0) ack 1 win 65535
        +.1   < . 100001:100001(0) ack 1 win 65535
        +0    < . 100001:100101(100) ack 1 win 65535
        +0    > . 1:1(0) ack 1 win 65535
        +.5   < . 100001:100001(0) ack 1 win 65535
        +0    > . 1:1(0) ack 1 win 65535
    "#,
    );
}

#[test]
fn syn_sent_takes_a_rst_only_with_an_acceptable_ack() {
    // RFC 9293 §3.10.7.3: in SYN-SENT a RST counts only if its ACK acknowledges our SYN.
    super::super::script::run(
        r#"
        +0    app connect
        +0    > S 0:0(0) win 65535 <...>
        +.01  < R 0:0(0) win 0
        +0    expect state syn-sent
        +.01  < R. 0:0(0) ack 1 win 0
        +0    expect gone
        +0    expect event reset
    "#,
    );
}

#[test]
fn syn_sent_answers_an_unacceptable_ack_with_rst() {
    super::super::script::run(
        r#"
        +0    app connect
        +0    > S 0:0(0) win 65535 <...>
        +.01  < S. 0:0(0) ack 77 win 65535 <mss 1000>
        +0    > R 77:77(0) win 0
        +0    expect state syn-sent
    "#,
    );
}

#[test]
fn a_rst_after_the_peers_fin_ends_the_connection_closed_not_reset() {
    // The peer's side was complete: what it sent is read to its end (Linux: SOCK_DONE makes
    // read return 0 before a later reset's error), so the application sees a close.
    open_and(
        r#"
        +0    < F. 1:1(0) ack 1 win 65535
        +0    > . 1:1(0) ack 2 win 65534
        +.01  < R 2:2(0) win 0
        +0    expect gone
        +0    expect event closed
        +0    expect counter resets_received 1
    "#,
    );
}
