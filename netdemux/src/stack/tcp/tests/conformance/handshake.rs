//! Opening: passive and active, options, retransmitted SYNs and SYN-ACKs, refusals.

use crate::stack::tcp::tests::script::run;

#[test]
fn passive_open_with_every_option() {
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>
        +.01  < . 1:1(0) ack 1 win 257 <nop,nop,TS val 110 ecr =>
        +0    app accept
        +0    expect state established
        +0    expect counter passive_opens 1
    "#);
}

#[test]
#[should_panic(expected = "window differ")]
fn the_runner_fails_a_wrong_expectation() {
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65534 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>
    "#);
}

#[test]
#[should_panic(expected = "unexpected segment")]
fn the_runner_fails_an_unexpected_segment() {
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460>
        +0    app listen
    "#);
}

#[test]
fn passive_open_without_options_uses_the_defaults() {
    // No MSS from the peer: 536 (RFC 9293 §3.7.1); no window scaling, SACK or timestamps.
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 8192
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +.01  < . 1:1(0) ack 1 win 8192
        +0    app accept
        +0    app write 1000
        +0    > . 1:537(536) ack 1 win 65535
        // Nagle: the small rest waits for the ACK of what is in flight.
        +.01  < . 1:1(0) ack 537 win 8192
        +0    > P. 537:1001(464) ack 1 win 65535
    "#);
}

#[test]
fn active_open() {
    run(r#"
        +0    app connect
        +0    > S 0:0(0) win 65535 <mss 1460,sackOK,TS val * ecr 0,nop,wscale 3>
        +.02  < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 200 ecr =,nop,wscale 7>
        // Autotuning starts the window at 64 KiB (8192 << 3), as Linux starts near it.
        +0    > . 1:1(0) ack 1 win 8192 <nop,nop,TS val * ecr 200>
        +0    expect state established
        +0    expect event connected
    "#);
}

#[test]
fn active_open_retransmits_the_syn_with_backoff() {
    // RFC 6298: initial RTO 1 s, doubled per retransmission.
    run(r#"
        config syn_retries=3
        +0    app connect
        +0    > S 0:0(0) win 65535 <...>
        +1    > S 0:0(0) win 65535 <...>
        +2    > S 0:0(0) win 65535 <...>
        +4    > S 0:0(0) win 65535 <...>
        +8    expect gone
        +0    expect event timed_out
    "#);
}

#[test]
fn syn_ack_is_retransmitted_then_the_half_open_connection_is_dropped() {
    run(r#"
        config syn_retries=2
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +1    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +2    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +4    expect gone
    "#);
}

#[test]
fn a_retransmitted_syn_gets_the_syn_ack_again_at_once() {
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +.5   < S 0:0(0) win 65535 <mss 1460>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
    "#);
}

#[test]
fn data_on_a_syn_is_not_acknowledged() {
    // No TCP Fast Open: the SYN's payload is dropped and the peer sends it again (Linux
    // without TFO does the same).
    run(r#"
        +0    app listen
        +0    < S 0:10(10) win 65535 <mss 1460>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
    "#);
}

#[test]
fn a_bad_ack_in_syn_received_is_answered_with_rst() {
    // RFC 9293 §3.10.7.4: an unacceptable ACK in SYN-RECEIVED gets <SEQ=SEG.ACK><CTL=RST>.
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +.01  < . 1:1(0) ack 1000 win 65535
        +0    > R 1000:1000(0) win 0
        +0    expect state syn-received
    "#);
}

#[test]
fn rst_in_syn_received_removes_the_half_open_connection() {
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +.01  < R 1:1(0) win 0
        +0    expect gone
        +0    expect counter resets_received 1
    "#);
}

#[test]
fn a_syn_to_a_port_without_listener_gets_rst_ack() {
    run(r#"
        +0    < S 0:0(0) win 65535 <mss 1460>
        +0    > R. 0:0(0) ack 1 win 0
        +0    expect counter resets_sent 1
    "#);
}

#[test]
fn an_ack_for_no_connection_gets_rst_with_its_ack_as_seq() {
    run(r#"
        +0    < . 100:100(0) ack 5000 win 65535
        +0    > R 5000:5000(0) win 0
    "#);
}

#[test]
fn a_rst_for_no_connection_is_not_answered() {
    run(r#"
        +0    < R 100:100(0) win 0
        +0    < R. 100:100(0) ack 5 win 0
    "#);
}

#[test]
fn ipv6_announces_the_smaller_mss() {
    run(r#"
        family v6
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1440>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1440>
    "#);
}

#[test]
fn the_smaller_mss_of_the_two_sizes_our_segments() {
    run(r#"
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 600>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    app write 1000
        +0    > . 1:601(600) ack 1 win 65535
        +.01  < . 1:1(0) ack 601 win 65535
        +0    > P. 601:1001(400) ack 1 win 65535
    "#);
}

#[test]
fn simultaneous_open() {
    // RFC 9293 §3.5 figure 7: both SYNs cross; each side answers with SYN-ACK.
    run(r#"
        +0    app connect
        +0    > S 0:0(0) win 65535 <mss 1460,sackOK,TS val * ecr 0,nop,wscale 3>
        +.01  < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 300 ecr 0,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val * ecr 300,nop,wscale 3>
        +.01  < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 310 ecr =,nop,wscale 7>
        +0    expect state established
    "#);
}

#[test]
fn without_syn_cookies_a_full_half_open_queue_drops_new_syns_and_counts() {
    run(r#"
        limits max_half_open=1 syn_cookies=0
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460>
        +0    < S 0:0(0) win 65535 port 40001 <mss 1460>
        +0    expect counter half_open_drops 1
    "#);
}

#[test]
fn syn_received_judges_segments_by_the_window_of_its_syn_ack() {
    // The acceptance window in SYN-RECEIVED is the one the SYN-ACK offered (65535 here). An
    // unacceptable segment gets a bare ACK and changes nothing (RFC 9293 §3.10.7.4; Linux's
    // tcp_check_req answers with an ACK too, window scaled as the SYN-ACK announced).
    run(r#"
        peer isn=4026531840
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1460,nop,wscale 7>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 3>
        +.01  < . 1000001:1000001(0) ack 1 win 65535
        +0    > . 1:1(0) ack 1 win 8191
        +0    expect state syn-received
        +.01  < . 1:1(0) ack 1 win 65535
        +0    expect state established
    "#);
}
