//! Memory: buffers that grow with what they hold, windows that follow the reader (autotuning),
//! and a budget that shrinks windows, drops data and refuses connections instead of growing
//! past it; zero-window probing that gives up.

use super::open_and;
use crate::stack::tcp::tests::script::run;

#[test]
fn nothing_is_allocated_before_data() {
    open_and(
        r#"
        +0    expect memory <= 0
        +.01  < P. 1:101(100) ack 1 win 65535
        +0    expect memory <= 4096
        +0    app read 100
        +.04  > . 1:1(0) ack 101 win 65435
    "#,
    );
}

#[test]
fn at_the_limit_data_is_dropped_and_connections_refused_until_memory_frees() {
    // A 32 KiB budget. 20000 unread bytes take a 32 KiB ring: the whole budget. The next
    // 20000 find room for 12768 only: the rest is dropped and counted, the ACK says how far
    // it got. A new connection is refused while nothing is left; reading frees the ring (the
    // budget is under pressure) and new connections are taken again.
    run(r#"
        memory 32768
        config mss=1000 recv_buffer=65535
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +.01  < . 1:20001(20000) ack 1 win 65535
        +0    > . 1:1(0) ack 20001 win 45535
        +0    < . 20001:40001(20000) ack 1 win 65535
        +0    > . 1:1(0) ack 32769 win 32767
        +0    expect counter memory_drops 1
        +0    expect memory <= 32768
        +0    < S 0:0(0) win 65535 port 40001 <mss 1000>
        +0    expect counter memory_syn_drops 1
        +.01  app read 32768
        +0    > . 1:1(0) ack 32769 win 65535
        +0    expect memory <= 0
        +0    < S 0:0(0) win 65535 port 40001 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 port 40001 <mss 1000>
    "#);
}

#[test]
fn under_pressure_the_window_grows_no_further_than_memory_held() {
    // 60000 bytes of budget: past 45000 it is under pressure. 40000 unread bytes take a
    // 64 KiB ring? No: the ring would pass the budget, so it takes exactly what it needs; from
    // then on the window offered is what the ring already holds room for (at least 4 MSS).
    run(r#"
        memory 60000
        config mss=1000 recv_buffer=65535
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    expect rwnd = 65535
        +.01  < . 1:50001(50000) ack 1 win 65535
        +0    > . 1:1(0) ack 50001 win 15535
        +0    expect memory <= 50000
        +0    expect rwnd = 4000
    "#);
}

#[test]
fn the_window_grows_with_what_the_application_reads() {
    // Linux's tcp_rcv_space_adjust: once per round trip (10 ms here), a reader that took more
    // than ever before makes the window aim at twice that plus 16 segments.
    run(r#"
        config mss=1000
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000,nop,wscale 3>
        +.01  < . 1:1(0) ack 1 win 512
        +0    app accept
        +0    expect rwnd = 65536
        +.01  < . 1:40001(40000) ack 1 win 512
        +0    > . 1:1(0) ack 40001 win 3192
        +0    app read 40000
        +0    > . 1:1(0) ack 40001 win 8192
        +.011 < . 40001:40001(0) ack 1 win 512
        +0    expect rwnd = 96000
    "#);
}

#[test]
fn zero_window_probes_the_peer_never_answers_give_up() {
    // Linux's tcp_probe_timer: after tcp_retries2 unanswered probes (3 here), the connection
    // is given up.
    run(r#"
        config mss=1000 recv_buffer=65535 max_retries=3
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 0
        +0    app accept
        +0    app write 1000
        +.2   > . 0:0(0) ack 1 win 65535
        +.4   > . 0:0(0) ack 1 win 65535
        +.8   > . 0:0(0) ack 1 win 65535
        +1.6  expect gone
        +0    expect event timed_out
    "#);
}

#[test]
fn a_peer_that_answers_keeps_the_connection_open() {
    // RFC 1122 §4.2.2.17: as long as the receiver answers the probes, the sender stays.
    run(r#"
        config mss=1000 recv_buffer=65535 max_retries=2
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 0
        +0    app accept
        +0    app write 1000
        +.2   > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +.4   > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +.8   > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +1.6  > . 0:0(0) ack 1 win 65535
        +0    expect state established
    "#);
}

#[test]
fn an_orphan_facing_a_shut_window_gives_up_after_eight_probes() {
    // Linux's tcp_orphan_retries (0 means 8): once the application let go, a peer answering
    // with a zero window forever does not keep the connection. The interval doubles from the
    // RTO up to 64 times it.
    open_and(
        r#"
        +.01  < . 1:1(0) ack 1 win 0
        +0    app write 1000
        +0    app close
        +0    app orphan
        +.2   > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +.4   > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +.8   > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +1.6  > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +3.2  > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +6.4  > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +12.8 > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +12.8 > . 0:0(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 0
        +12.8 expect gone
        +0    expect event timed_out
    "#,
    );
}
