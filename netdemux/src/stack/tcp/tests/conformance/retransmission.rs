//! Loss and its repair: the RTO and its backoff (RFC 6298), fast retransmit (RFC 5681/6582),
//! SACK recovery (RFC 6675), tail-loss probes (RFC 8985), and what a timeout leaves behind.

use super::open_and;
use crate::stack::tcp::tests::script::run;

/// A passive open with SACK (no timestamps), MSS 1000, a 65535-byte receive buffer.
const OPEN_SACK: &str = r#"
        config mss=1000 recv_buffer=65535
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000,sackOK>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000,sackOK>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
"#;

fn open_sack_and(rest: &str) {
    run(&format!("{OPEN_SACK}{rest}"));
}

#[test]
fn the_rto_retransmits_with_exponential_backoff() {
    // RTO = max(200 ms, SRTT + 4 RTTVAR) after a 10 ms sample; doubled each time (RFC 6298
    // §5.5). One segment in flight: the tail-loss probe would wait for a delayed ACK and
    // comes after the RTO, so it does not fire.
    open_and(
        r#"
        +0    app write 1000
        +0    > P. 1:1001(1000) ack 1 win 65535
        +.2   > P. 1:1001(1000) ack 1 win 65535
        +.4   > P. 1:1001(1000) ack 1 win 65535
        +.8   > P. 1:1001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1001 win 65535
        +0    expect counter rto_expirations 3
        +0    expect counter retransmits 3
    "#,
    );
}

#[test]
fn the_connection_times_out_after_the_retries() {
    // Linux gives up after tcp_retries2 (15) timeouts; here 2.
    run(r#"
        config mss=1000 max_retries=2
        +0    app listen
        +0    < S 0:0(0) win 65535 <mss 1000>
        +0    > S. 0:0(0) ack 1 win 65535 <mss 1000>
        +.01  < . 1:1(0) ack 1 win 65535
        +0    app accept
        +0    app write 1000
        +0    > P. 1:1001(1000) ack 1 win 65535
        +.2   > P. 1:1001(1000) ack 1 win 65535
        +.4   > P. 1:1001(1000) ack 1 win 65535
        +.8   expect gone
        +0    expect event timed_out
        +0    expect counter timeouts 1
    "#);
}

#[test]
fn three_duplicate_acks_retransmit_at_once() {
    // RFC 5681 §3.2, NewReno (RFC 6582) without SACK.
    open_and(
        r#"
        +0    app write 5000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > . 3001:4001(1000) ack 1 win 65535
        +0    > P. 4001:5001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 65535
        +0    < . 1:1(0) ack 1 win 65535
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    expect counter fast_retransmits 1
        +.01  < . 1:1(0) ack 5001 win 65535
        +0    expect cwnd <= 4000
    "#,
    );
}

#[test]
fn sack_recovery_retransmits_only_the_holes() {
    // RFC 6675: segments 1 and 3 lost; the SACKed ones are never sent again.
    open_sack_and(
        r#"
        +0    app write 6000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > . 3001:4001(1000) ack 1 win 65535
        +0    > . 4001:5001(1000) ack 1 win 65535
        +0    > P. 5001:6001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1 win 65535 <sack 1001:2001>
        +0    < . 1:1(0) ack 1 win 65535 <sack 3001:4001 1001:2001>
        +0    < . 1:1(0) ack 1 win 65535 <sack 3001:5001 1001:2001>
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    expect counter fast_retransmits 1
        +0    < . 1:1(0) ack 1 win 65535 <sack 3001:6001 1001:2001>
        +.01  < . 1:1(0) ack 6001 win 65535
        +0    expect counter retransmits 2
    "#,
    );
}

#[test]
fn sack_recovery_retransmits_no_hole_beyond_the_peer_window() {
    // As above, but the third duplicate ACK shrinks the window to 2000 (right edge 2001): the
    // hole at 2001 waits until the window takes it — a peer drops a segment beyond its window
    // unread. The oldest unacknowledged segment may always go (Linux's __tcp_retransmit_skb).
    open_sack_and(
        r#"
        +0    app write 6000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > . 3001:4001(1000) ack 1 win 65535
        +0    > . 4001:5001(1000) ack 1 win 65535
        +0    > P. 5001:6001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1 win 65535 <sack 1001:2001>
        +0    < . 1:1(0) ack 1 win 65535 <sack 3001:4001 1001:2001>
        +0    < . 1:1(0) ack 1 win 2000 <sack 3001:5001 1001:2001>
        +0    > . 1:1001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 2001 win 2000 <sack 3001:5001>
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    expect counter retransmits 2
    "#,
    );
}

#[test]
fn sacked_data_the_peer_then_drops_is_sent_again() {
    // The peer SACKs 1001:2001, then acknowledges 1001 and not past it: it dropped what it
    // SACKed (reneging, RFC 2018 §8; Linux prunes its out-of-order queue when its receive
    // memory runs out). As Linux (tcp_check_sack_reneging, tcp_timeout_mark_lost): a timeout
    // after max(SRTT/16, 10 ms) forgets the SACKs, and 1001:2001 goes again — kept, it would
    // be skipped for good.
    open_sack_and(
        r#"
        +0    app write 3000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > P. 2001:3001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1 win 65535 <sack 1001:2001>
        +.005 < . 1:1(0) ack 1001 win 65535
        +.01  > . 1001:2001(1000) ack 1 win 65535
        +0    expect counter sack_reneging 1
        +.01  < . 1:1(0) ack 2001 win 65535
        +0    > P. 2001:3001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 3001 win 65535
    "#,
    );
}

/// Ten segments, the whole initial window, from +0.01.
const TEN: &str = r#"
        +0    app write 10000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > . 3001:4001(1000) ack 1 win 65535
        +0    > . 4001:5001(1000) ack 1 win 65535
        +0    > . 5001:6001(1000) ack 1 win 65535
        +0    > . 6001:7001(1000) ack 1 win 65535
        +0    > . 7001:8001(1000) ack 1 win 65535
        +0    > . 8001:9001(1000) ack 1 win 65535
        +0    > P. 9001:10001(1000) ack 1 win 65535
"#;

fn open_sack_ten_and(rest: &str) {
    run(&format!("{OPEN_SACK}{TEN}{rest}"));
}

#[test]
fn after_a_timeout_late_duplicate_acks_start_no_fast_recovery() {
    // RFC 6582 §3.2 (the recover point after a timeout): SACKs of segments sent before the
    // timeout start no fast recovery; the window stays at the loss window (1 MSS, RFC 5681
    // §3.1) and grows by slow start, instead of jumping to 0.7 of the old flight and
    // bursting. (The tail-loss probe goes first, 2 SRTT after the burst.)
    open_sack_ten_and(
        r#"
        +.02  > P. 9001:10001(1000) ack 1 win 65535
        +.18  > . 1:1001(1000) ack 1 win 65535
        +0    expect cwnd <= 1000
        +.01  < . 1:1(0) ack 1 win 65535 <sack 1001:4001>
        +0    < . 1:1(0) ack 1 win 65535 <sack 1001:7001>
        +0    < . 1:1(0) ack 1 win 65535 <sack 1001:10001>
        +0    expect cwnd <= 1000
        +0    expect counter fast_retransmits 0
        +.01  < . 1:1(0) ack 10001 win 65535
        +0    expect cwnd <= 3000
    "#,
    );
}

#[test]
fn after_a_timeout_sacked_data_is_not_sent_again() {
    // The scoreboard outlives the timeout (RFC 6675 §5.1 allows keeping it; Linux keeps its
    // SACK marks): going back to SND.UNA, what the peer SACKed is skipped. Segments 1 and 3
    // lost; 2 and 4 SACKed (too little for fast retransmit). The tail-loss probe resends the
    // highest segment not SACKed (3), and is lost too.
    open_sack_and(
        r#"
        +0    app write 4000
        +0    > . 1:1001(1000) ack 1 win 65535
        +0    > . 1001:2001(1000) ack 1 win 65535
        +0    > . 2001:3001(1000) ack 1 win 65535
        +0    > P. 3001:4001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 1 win 65535 <sack 1001:2001>
        +0    < . 1:1(0) ack 1 win 65535 <sack 3001:4001 1001:2001>
        +.01  > . 2001:3001(1000) ack 1 win 65535
        +.18  > . 1:1001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 2001 win 65535 <sack 3001:4001>
        +0    > . 2001:3001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 4001 win 65535
        +0    expect counter retransmits 3
    "#,
    );
}

#[test]
fn a_tail_loss_probe_sends_the_last_segment_again() {
    // RFC 8985 §7: 2 SRTT (20 ms) after the last ACK, with two segments still out.
    open_sack_ten_and(
        r#"
        +.01  < . 1:1(0) ack 8001 win 65535
        +.02  > P. 9001:10001(1000) ack 1 win 65535
        +0    expect counter tail_loss_probes 1
    "#,
    );
}

#[test]
fn a_loss_repaired_by_a_tail_loss_probe_reduces_the_window() {
    // RFC 8985 §7.4.2 (Linux's tcp_process_tlp_ack): an ACK beyond the probe's end without a
    // D-SACK of the probed segment means the original was lost: CUBIC takes the window to
    // 0.7 of 12000.
    open_sack_ten_and(
        r#"
        +.01  < . 1:1(0) ack 8001 win 65535
        +0    expect cwnd >= 12000
        +.02  > P. 9001:10001(1000) ack 1 win 65535
        +0    app write 1000
        +0    > P. 10001:11001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 11001 win 65535
        +0    expect cwnd <= 8400
    "#,
    );
}

#[test]
fn a_probe_the_peer_did_not_need_changes_nothing() {
    // The same, but a D-SACK says the original had arrived (RFC 2883): no loss, the window
    // stays.
    open_sack_ten_and(
        r#"
        +.01  < . 1:1(0) ack 8001 win 65535
        +.02  > P. 9001:10001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 10001 win 65535
        +0    < . 1:1(0) ack 10001 win 65535 <sack 9001:10001>
        +0    app write 1000
        +0    > P. 10001:11001(1000) ack 1 win 65535
        +.01  < . 1:1(0) ack 11001 win 65535
        +0    expect cwnd >= 12000
    "#,
    );
}
