//! What the TCP stack of one worker counts: every connection and the endpoint add to one set.

crate::counters! {
    /// What the TCP stack of one worker counted.
    pub struct Counters / AtomicCounters {
        /// Connections that reached ESTABLISHED (either side opened).
        opened: counter [table],
        /// Connections accepted from listeners (handshakes completed).
        passive_opens: counter,
        /// Connections this side opened (`connect`).
        active_opens: counter,
        /// Connections removed from the flow table.
        closed: counter [table],
        /// Segments sent again (RTO, fast retransmit, recovery).
        retransmits: counter [table],
        /// Retransmission timeouts.
        rto_expirations: counter,
        /// Loss recoveries entered by duplicate ACKs or SACK.
        fast_retransmits: counter,
        /// Times the peer acknowledged up to data it had SACKed but not past it (it dropped
        /// what it SACKed, RFC 2018 §8): the SACKs were forgotten and the data sent again.
        sack_reneging: counter,
        /// Tail-loss probes sent (RFC 8985).
        tail_loss_probes: counter,
        /// Segments that arrived ahead of a gap.
        out_of_order: counter [table],
        /// Out-of-order segments dropped because the reassembly limit was reached.
        out_of_order_dropped: counter,
        /// RSTs sent.
        resets_sent: counter [table],
        /// Valid RSTs received.
        resets_received: counter [table],
        /// Challenge ACKs sent for in-window RSTs and SYNs (RFC 5961).
        challenge_acks: counter,
        /// Segments rejected by PAWS (RFC 7323).
        paws_rejected: counter,
        /// SYNs dropped because a listener's accept backlog was full.
        backlog_drops: counter [table],
        /// SYNs dropped because a listener's half-open queue was full (SYN cookies off).
        half_open_drops: counter [table],
        /// SYN-ACKs sent as SYN cookies (the half-open queue was full).
        syncookies_sent: counter [table],
        /// ACKs that brought back a valid cookie and became connections.
        syncookies_ok: counter [table],
        /// ACKs to a listener that had sent cookies whose cookie was not valid.
        syncookies_failed: counter [table],
        /// SYNs dropped because the flow table was full.
        flow_table_full: counter,
        /// Zero-window probes sent.
        window_probes: counter,
        /// Keepalive probes sent.
        keepalive_probes: counter,
        /// Connections given up (retransmissions or keepalives unanswered).
        timeouts: counter,
        /// RSTs not sent because too many were waiting.
        resets_suppressed: counter,
        /// Connections that skipped TIME_WAIT because its table was full.
        time_wait_overflow: counter,
        /// Segments to or from a broadcast or multicast address: dropped (RFC 1122 §4.2.3.10).
        not_unicast: counter,
        /// ICMP errors about a segment in flight, taken (RFC 5927).
        icmp_errors: counter,
        /// ICMP errors quoting a sequence number not in flight, or for no connection: ignored.
        icmp_out_of_window: counter,
        /// Path-MTU reductions (ICMP "fragmentation needed" / "packet too big").
        pmtu_reductions: counter,
        /// Segments (or parts of them) not stored because the memory budget had no room.
        memory_drops: counter,
        /// SYNs dropped because the memory budget was nearly used up.
        memory_syn_drops: counter,
        /// Orphans (closed by their owner, data still to send) reset because the memory budget
        /// was all but used up.
        memory_aborts: counter,
    }
}
