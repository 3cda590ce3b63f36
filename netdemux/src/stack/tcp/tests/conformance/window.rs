//! The peer's window: zero windows and persist probes, window updates.

use super::open_and;

#[test]
fn a_zero_window_is_probed_with_backoff_until_it_opens() {
    // RFC 9293 §3.8.6.1; the probe is Linux's: SND.UNA - 1, no data. The persist timer starts
    // at the RTO (200 ms here) and doubles.
    open_and(
        r#"
        +.01  < . 1:1(0) ack 1 win 0
        +0    app write 1000
        +.2   > . 0:0(0) ack 1 win 65535
        +.01  < . 1:1(0) ack 1 win 0
        +.39  > . 0:0(0) ack 1 win 65535
        +.01  < . 1:1(0) ack 1 win 65535
        +0    > P. 1:1001(1000) ack 1 win 65535
        +0    expect counter window_probes 2
    "#,
    );
}

#[test]
fn a_window_update_from_an_older_segment_is_ignored() {
    // RFC 9293 §3.10.7.4: the window is taken from a segment only if SND.WL1 < SEG.SEQ, or
    // equal and SND.WL2 =< SEG.ACK.
    open_and(
        r#"
        +.01  < P. 1:101(100) ack 1 win 65535
        +.04  > . 1:1(0) ack 101 win 65435
        // An old segment (seq 1) advertising a zero window: not taken (and, being old, it gets
        // a duplicate ACK).
        +.01  < . 1:1(0) ack 1 win 0
        +0    > . 1:1(0) ack 101 win 65435
        +0    app write 1000
        +0    > P. 1:1001(1000) ack 101 win 65435
    "#,
    );
}

#[test]
fn a_window_opening_after_a_zero_window_sends_at_once() {
    open_and(
        r#"
        +.01  < . 1:1(0) ack 1 win 0
        +0    app write 3000
        +.1   < . 1:1(0) ack 1 win 65535
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > P. 2001:3001(1000) ack 1 win 65535
    "#,
    );
}
