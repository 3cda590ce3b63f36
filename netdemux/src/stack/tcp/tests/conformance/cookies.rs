//! SYN cookies (RFC 4987 §3.6), as Linux makes them (tcp_syncookies=1): a listener whose
//! half-open queue is full answers with a SYN-ACK whose sequence number is a cookie and keeps
//! nothing; the ACK that brings the cookie back makes the connection. With `max_half_open=0`
//! every SYN is answered with a cookie.

use crate::stack::tcp::tests::script::run;

#[test]
fn a_full_half_open_queue_answers_with_a_cookie_and_keeps_nothing() {
    run(r#"
        config mss=1000 recv_buffer=65535
        limits max_half_open=1
        +0    app listen
        +0    < S 0:0(0) win 65535 port 40001 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40001 <mss 1000>
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +0    expect counter syncookies_sent 1
        +0    expect connections 1
        +.01  < . 1:1(0) ack 1 win 65535
        +0    expect counter syncookies_ok 1
        +0    expect connections 2
        +0    app accept
        +0    expect state established
        +0    < P. 1:101(100) ack 1 win 65535
        +0    app write 100
        +0    > P. 1:101(100) ack 101 win 65435
    "#);
}

#[test]
fn the_cookie_keeps_the_peer_mss_rounded_down_to_a_table_entry() {
    // Linux's msstab: 536, 1300, 1440, 1460. A peer offering 1400 gets segments of 1300.
    run(r#"
        config mss=1460 recv_buffer=65535
        limits max_half_open=0
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1400>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    app write 3000
        +0    > . 1:1301(1300) ack 1 win 65535
        +0    > . 1301:2601(1300) ack 1 win 65535
        +.01  < . 1:1(0) ack 2601 win 65535
        +0    > P. 2601:3001(400) ack 1 win 65535
    "#);
}

#[test]
fn with_timestamps_the_cookie_keeps_window_scale_and_sack() {
    // The SYN-ACK's TSval carries the peer's window scale (7) and SACK-permitted in its low
    // six bits; the ACK's TSecr brings them back. The peer's window of 10 is 1280 bytes, and
    // data past a hole is SACKed (the ACK echoes the timestamp of the last in-order segment,
    // RFC 7323 §4.3).
    run(r#"
        config mss=1460 recv_buffer=262144
        limits max_half_open=0
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>
        +.01  < . 1:1(0) ack 1 win 10 <nop,nop,TS val 110 ecr =>
        +0    expect counter syncookies_ok 1
        +0    app accept
        +0    app write 1280
        +0    > P. 1:1281(1280) ack 1 win 8192 <nop,nop,TS val * ecr 110>
        +.01  < . 1001:2001(1000) ack 1281 win 10 <nop,nop,TS val 120 ecr =>
        +0    > . 1281:1281(0) ack 1 win 8192 <nop,nop,TS val * ecr 110,nop,nop,sack 1001:2001>
    "#);
}

#[test]
fn without_timestamps_a_cookie_connection_has_no_window_scale_or_sack() {
    // Nowhere to keep them: Linux clears both options when it answers with a cookie and the
    // SYN had no timestamps.
    run(r#"
        config mss=1000 recv_buffer=262144
        limits max_half_open=0
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000,sackOK,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    expect state established
    "#);
}

#[test]
fn a_wrong_cookie_gets_a_reset_and_is_counted() {
    run(r#"
        config mss=1000 recv_buffer=65535
        limits max_half_open=0
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 100001 win 65535
        +0    > R 100001:100001(0) win 0
        +0    expect counter syncookies_failed 1
        +0    expect connections 0
    "#);
}

#[test]
fn a_cookie_is_good_until_two_minutes_after_the_one_it_was_made_in() {
    // Linux's MAX_SYNCOOKIE_AGE: made in minute 0, still good in minute 2, not in minute 3.
    // A SYN at +130 s keeps the listener taking cookies (it takes them only for two minutes
    // after its last one, Linux's TCP_SYNCOOKIE_VALID).
    run(r#"
        config mss=1000 recv_buffer=65535
        limits max_half_open=0
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +0    < S 0:0(0) win 65535 port 40001 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40001 <mss 1000>
        +130  < S 0:0(0) win 65535 port 40002 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40002 <mss 1000>
        +49   < . 1:1(0) ack 1 win 65535 port 40001
        +0    expect counter syncookies_ok 1
        +2    < . 1:1(0) ack 1 win 65535
        +0    > R 1:1(0) win 0
        +0    expect counter syncookies_failed 1
    "#);
}

#[test]
fn a_listener_that_sent_no_cookie_lately_takes_none() {
    // Linux's tcp_synq_no_recent_overflow: without a recent cookie, an ACK for no connection
    // is not checked as one (a guessed cookie cannot open a connection) and gets a RST.
    run(r#"
        config mss=1000 recv_buffer=65535
        +0    app listen
        +0    < . 1:1(0) ack 1 win 65535
        +0    > R 1:1(0) win 0
        +0    expect counter syncookies_failed 0
        +0    expect connections 0
    "#);
}

#[test]
fn a_full_accept_backlog_drops_syns_even_with_cookies() {
    // A connection would have nowhere to wait (Linux: sk_acceptq_is_full, ListenOverflows).
    run(r#"
        config mss=1000 recv_buffer=65535
        +0    app listen backlog 1
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    < S 0:0(0) win 65535 port 40001 <mss 1000>
        +0    expect counter backlog_drops 1
        +0    expect counter syncookies_sent 0
    "#);
}

#[test]
fn a_cookie_ack_finding_the_backlog_full_is_dropped_and_taken_when_sent_again() {
    // Linux's tcp_v4_syn_recv_sock drops it likewise: the peer, established, sends its data
    // again, and that segment brings the cookie back once there is room.
    run(r#"
        config mss=1000 recv_buffer=65535
        limits max_half_open=0
        +0    app listen backlog 1
        +0    < S 0:0(0) win 65535 port 40001 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40001 <mss 1000>
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535 port 40001
        +0    < P. 1:101(100) ack 1 win 65535
        +0    expect counter backlog_drops 1
        +0    expect connections 1
        +0    app accept
        +.2   < P. 1:101(100) ack 1 win 65535
        +0    expect counter syncookies_ok 3
        +0    app accept
        +0    expect readable 100
        +.04  > . 1:1(0) ack 101 win 65435
    "#);
}

#[test]
fn under_pressure_handshakes_get_fewer_syn_ack_retries() {
    // Linux's reqsk_timer_handler: with the half-open queue at least half full, a SYN-ACK is
    // retransmitted twice (1 s, 3 s), not five times, before the handshake is given up.
    run(r#"
        config mss=1000 recv_buffer=65535
        limits max_half_open=4
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +0    < S 0:0(0) win 65535 port 40001 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40001 <mss 1000>
        +1    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40001 <mss 1000>
        +2    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40001 <mss 1000>
        +4    expect connections 0
        +0    expect counter timeouts 2
    "#);
}
