//! ICMP errors about our segments, as Linux takes them (tcp_v4_err, tcp_v6_err, tcp_req_err):
//! only for a sequence number in flight (RFC 5927 §4.1); "fragmentation needed" / "packet too
//! big" lowers the MSS and sends what was in flight again (RFC 1191, RFC 8201); other errors
//! end a connection still opening, and are only noted once it is established (RFC 1122
//! §4.2.3.9).

use super::open_and;
use crate::stack::tcp::tests::script::run;

#[test]
fn a_smaller_path_mtu_resends_what_was_in_flight_in_the_new_size() {
    // MTU 1000: 1000 - 20 (IPv4) - 20 (TCP) = 960 bytes a segment. Not a congestion signal:
    // all of it goes again at once, and the window keeps its 10 segments (Linux's
    // tcp_sync_mss leaves snd_cwnd, counted in segments, alone).
    open_and(
        r#"
        +0    app write 3000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > P. 2001:3001(1000) ack 1 win 65535
        +.005 < icmp too_big 1000 seq 1
        +0    > . 1:961(960) ack 1 win 65535
        +0    > . 961:1921(960) ack 1 win 65535
        +0    > . 1921:2881(960) ack 1 win 65535
        +0    > P. 2881:3001(120) ack 1 win 65535
        +0    expect counter pmtu_reductions 1
        +0    expect cwnd >= 9600
        +.01  < . 1:1(0) ack 3001 win 65535
        +0    app write 1000
        +0    > . 3001:3961(960) ack 1 win 65535
    "#,
    );
}

#[test]
fn a_path_mtu_error_for_data_not_in_flight_is_ignored() {
    // RFC 5927 §4.1: a blind attacker does not know what is in flight.
    open_and(
        r#"
        +0    app write 1000
        +0    > P. 1:1001(1000) ack 1 win 65535
        +.005 < icmp too_big 600 seq 5001
        +.005 < . 1:1(0) ack 1001 win 65535
        +0    < icmp too_big 600 seq 1
        +0    expect counter icmp_out_of_window 2
        +0    expect counter pmtu_reductions 0
        +0    app write 1000
        +0    > P. 1001:2001(1000) ack 1 win 65535
    "#,
    );
}

#[test]
fn the_path_mtu_is_never_believed_below_552_nor_raised() {
    // Linux's ip_rt_min_pmtu: a report of 68 is taken as 552, MSS 512; a larger one later
    // changes nothing (raising needs probing, RFC 4821).
    open_and(
        r#"
        +0    app write 1000
        +0    > P. 1:1001(1000) ack 1 win 65535
        +.005 < icmp too_big 68 seq 1
        +0    > . 1:513(512) ack 1 win 65535
        +0    > P. 513:1001(488) ack 1 win 65535
        +0    < icmp too_big 1500 seq 1
        +0    expect counter pmtu_reductions 1
    "#,
    );
}

#[test]
fn with_timestamps_the_option_bytes_come_off_the_new_mss() {
    // 1000 - 20 - 20 - 12 = 948.
    run(r#"
        config mss=1000 recv_buffer=65535
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000,TS val 100 ecr 0>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000,TS val * ecr 100>
        +.01  < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 110 ecr =>
        +0    app accept
        +0    app write 1000
        +0    > . 1:989(988) ack 1 win 65535 <...>
        +.005 < icmp too_big 1000 seq 1
        +0    > . 1:949(948) ack 1 win 65535 <...>
        +0    > P. 949:1001(52) ack 1 win 65535 <...>
    "#);
}

#[test]
fn ipv6_never_goes_below_1280() {
    // RFC 8200's minimum link MTU: 1280 - 40 - 20 = 1220.
    run(r#"
        family v6
        config mss=1460 recv_buffer=65535
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1440>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1440>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    app write 1440
        +0    > P. 1:1441(1440) ack 1 win 65535
        +.005 < icmp too_big 1000 seq 1
        +0    > . 1:1221(1220) ack 1 win 65535
        +0    > P. 1221:1441(220) ack 1 win 65535
    "#);
}

#[test]
fn an_unreachable_peer_ends_a_connect() {
    // Linux's tcp_v4_err in SYN-SENT: the error is reported and the socket closed.
    run(r#"
        config mss=1000
        +0    app connect
        +0    > S 0:0(0) win 65535 <...>
        +.1   < icmp unreachable hard seq 0
        +0    expect gone
        +0    expect event unreachable
    "#);
}

#[test]
fn an_established_connection_only_notes_an_unreachable() {
    // A soft error (RFC 1122 §4.2.3.9): routes come back, the retransmissions go on.
    open_and(
        r#"
        +0    app write 1000
        +0    > P. 1:1001(1000) ack 1 win 65535
        +.05  < icmp unreachable seq 1
        +0    < icmp unreachable hard seq 1
        +0    expect state established
        +0    expect counter icmp_errors 2
        +.15  > P. 1:1001(1000) ack 1 win 65535
    "#,
    );
}

#[test]
fn a_half_open_connection_dropped_by_a_network_error_keeps_nothing() {
    // Linux's tcp_req_err: net/host unreachable, time exceeded and parameter problem drop the
    // request; port unreachable does not.
    run(r#"
        config mss=1000
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.1   < icmp unreachable hard seq 0
        +0    expect state syn-received
        +0    < icmp time_exceeded seq 1
        +0    expect counter icmp_out_of_window 1
        +0    < icmp time_exceeded seq 0
        +0    expect gone
        +0    expect connections 0
    "#);
}
