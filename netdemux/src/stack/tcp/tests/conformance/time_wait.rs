//! TIME_WAIT as Linux keeps it (tcp_timewait_state_process): a small record per 4-tuple that
//! answers late segments, takes a newer SYN as a new connection, and ends after 60 s.

use super::open_and;

/// Closes actively into TIME_WAIT at +0.03 (our FIN is 1:2, the peer's FIN 1:2).
const INTO_TIME_WAIT: &str = r#"
        +0    app close
        +0    > F. 1:1(0) ack 1 win 65535
        +.01  < . 1:1(0) ack 2 win 65535
        +.01  < F. 1:1(0) ack 2 win 65535
        +0    > . 2:2(0) ack 2 win 65534
        +0    expect state time-wait
"#;

fn time_wait_and(rest: &str) {
    open_and(&format!("{INTO_TIME_WAIT}{rest}"));
}

#[test]
fn a_newer_syn_reopens_time_wait_above_the_old_sequence_space() {
    // RFC 1122 §4.2.2.13 / RFC 6191: the new connection's ISN lies above everything the old
    // one sent; Linux picks the old SND.NXT + 65535 + 2 (tw_snd_nxt + 65537): our SND.NXT was
    // 2 (SYN and FIN), so 65539.
    time_wait_and(
        r#"
        +1    < S 100:100(0) win 65535 <mss 1000>
        +0    > S. 65539:65539(0) ack 101 win 65535 <mss 1000>
        +0    expect state syn-received
    "#,
    );
}

#[test]
fn an_old_syn_in_time_wait_gets_an_ack_not_a_connection() {
    time_wait_and(
        r#"
        +1    < S 0:0(0) win 65535 <mss 1000>
        +0    > . 2:2(0) ack 2 win 65534
        +0    expect state time-wait
    "#,
    );
}

#[test]
fn a_rst_at_the_expected_sequence_ends_time_wait() {
    // Linux's default (tcp_rfc1337 = 0): such a RST ends TIME_WAIT.
    time_wait_and(
        r#"
        +1    < R 2:2(0) win 0
        +0    expect gone
    "#,
    );
}

#[test]
fn a_bare_ack_at_the_expected_sequence_is_silently_taken() {
    // An in-window bare ACK restarts the 60 s and gets no answer.
    time_wait_and(
        r#"
        +30   < . 2:2(0) ack 2 win 65535
        +59.9 expect state time-wait
        +.2   expect gone
    "#,
    );
}

#[test]
fn answers_from_time_wait_are_rate_limited() {
    // Out-of-window segments get an ACK at most every 500 ms (Linux's
    // tcp_timewait_check_oow_rate_limit).
    time_wait_and(
        r#"
        +1    < . 100:100(0) ack 2 win 65535
        +0    > . 2:2(0) ack 2 win 65534
        +.1   < . 100:100(0) ack 2 win 65535
        +.5   < . 100:100(0) ack 2 win 65535
        +0    > . 2:2(0) ack 2 win 65534
    "#,
    );
}
