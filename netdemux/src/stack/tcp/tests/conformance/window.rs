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

#[test]
fn an_ack_stays_inside_a_window_the_peer_closed_on_data_it_dropped() {
    // The peer kept 1:1001 of four segments, dropped the rest (its receive memory ran out) and
    // closed its window at 1001. Our ACK of its data must carry a sequence number inside that
    // window (1001, not the highest sent, 4001): Linux drops a segment beyond its window
    // without reading its ACK field (BeyondWindow), answers with a duplicate ACK, and its
    // sender waits for our ACK for good — its application blocked on a full send buffer never
    // reads, so its window never opens: both ends wait. As Linux's tcp_acceptable_seq().
    // Found by the TCP proxy test under loss and load (a 20 s stall against a Linux backend).
    open_and(
        r#"
        +0    app write 4000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > P. 3001:4001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1001 win 0
        +.01  < P. 1:101(100) ack 1001 win 0
        +.04  > . 1001:1001(0) ack 101 win 65435
        // A window that opens part of the way: the right edge, 1501.
        +.01  < . 101:101(0) ack 1001 win 500
        +.01  < P. 101:201(100) ack 1001 win 500
        +.04  > . 1501:1501(0) ack 201 win 65335
    "#,
    );
}
