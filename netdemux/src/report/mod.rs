//! What a running data plane reports, and to whom: the counters of each queue worker and each
//! built-in service — each declared once here, with [`crate::counters!`] — the [`DaemonReport`]
//! that the daemon's [`control_socket`] hands to `netdemux stats`, and the two ways of showing
//! it: the text [`table`] and the [`prometheus`] exposition.

pub mod control_socket;
pub mod prometheus;
pub mod table;

use serde::{Deserialize, Serialize};

use crate::stack::tcp;

crate::counters! {
    /// The counters of one queue worker's AF_XDP socket.
    pub struct QueueCounters / AtomicQueueCounters {
        /// Frames received from the AF_XDP RX ring.
        rx: counter [table],
        /// Frames the kernel dropped for the socket (RX ring full, no fill buffer).
        rx_dropped: counter [table],
        /// Frames dropped because the RX ring was full.
        rx_ring_full: counter [table],
        /// Times the fill ring was empty when a frame arrived.
        fill_ring_empty: counter [table],
        /// Invalid descriptors in the fill and TX rings (the kernel's count).
        invalid_descs: counter [table],
        /// RX descriptors whose bytes did not lie within one UMEM frame (never from a correct
        /// kernel): skipped.
        rx_bad_descs: counter,
        /// In-place answers longer than the frame received, refused (a bug in an answerer:
        /// sending them would leak bytes of an older packet).
        tx_bad_lengths: counter,
        /// Frames put on the TX ring: answers written in place (the UDP echo), TCP segments and
        /// the application's datagrams.
        tx: counter [table],
        /// In-place answers dropped because the TX ring was full.
        tx_dropped: counter,
        /// Redirected frames no service or socket claimed (e.g. unbound between the program's
        /// lookup and the worker's, or broadcast and multicast frames only a wildcard binding
        /// would take).
        unclaimed: counter,
        /// Sends dropped because no route leads to their destination through this interface.
        no_route: counter,
        /// Sends dropped because their destination (or its gateway) did not resolve to a MAC
        /// address in time (a TCP segment is sent again by its timers).
        unresolved: counter,
        /// Frames to another host's MAC address (a NIC in promiscuous mode, a switch flooding):
        /// dropped, as the kernel drops them.
        other_host: counter,
        /// IPv4 packets whose header checksum was wrong (dropped before anything reads them,
        /// as the kernel drops them).
        ip_checksum_errors: counter,
        /// TCP segments and datagrams for sockets whose TCP/UDP checksum was wrong (dropped).
        checksum_errors: counter,
        /// Of those, the ones whose checksum field held only the pseudo-header sum: a sender
        /// offloading TX checksums (a veth peer, by default) — fixed on the sending side with
        /// `ethtool -K PEER tx off`.
        checksum_partial: counter,
        /// ICMP errors about a UDP datagram sent from here: counted, not reported to the socket
        /// (Linux reports them only to connected UDP sockets).
        icmp_udp: counter,
        /// ICMP errors whose checksum or quote did not check out.
        icmp_malformed: counter,
    }
}

crate::counters! {
    /// The counters of one built-in service on one queue (or summed over queues).
    pub struct ServiceCounters / AtomicServiceCounters {
        /// Datagrams or segments the service received.
        packets: counter [table],
        /// Their payload bytes.
        bytes: counter [table],
        /// Datagrams an echo did not answer (IP options or extension headers, a broadcast or
        /// multicast address, or an echo-loop port).
        unanswered: counter,
    }
}

crate::counters! {
    /// What a queue worker counts about TCP besides the stack's own [`tcp::Counters`].
    pub struct WorkerTcpCounters / AtomicWorkerTcpCounters {
        /// TCP connections in the worker's flow table.
        open: gauge(open_connections) [table],
        /// 4-tuples in TIME_WAIT (small records, not connections).
        time_wait: gauge(time_wait_records),
        /// TCP segments dropped before the stack: bad checksum or header.
        bad_segments: counter,
        /// Service connections closed after the idle timeout.
        idle_closed: counter,
        /// TCP frames the fault injection dropped (tests only).
        faults_dropped: counter,
        /// TCP frames the fault injection delivered late (tests only).
        faults_reordered: counter,
    }
}

crate::counters! {
    /// The memory the TCP connections' buffers take, over all queues (the budget's state).
    pub struct TcpMemory / AtomicTcpMemory {
        /// Bytes the buffers take now.
        used: gauge(used_bytes) [table],
        /// The most they may take (`run --tcp-memory`).
        limit: gauge(limit_bytes) [table],
    }
}

crate::counters! {
    /// The counters of one proxy (`--tcp-proxy`, `--udp-proxy`).
    pub struct ProxyCounters / AtomicProxyCounters {
        /// Connections accepted (TCP) or sessions opened, one per client address (UDP).
        accepted: counter [table],
        /// Connections or sessions open now.
        active: gauge(active_sessions) [table],
        /// Connections whose backend could not be reached, datagrams dropped because no
        /// session could be opened (table full, no port).
        failed: counter [table],
        /// TCP connections ended by a reset from either side (passed on to the other).
        resets: counter,
        /// UDP sessions ended by the idle timeout.
        expired: counter,
        /// Payload bytes from clients to the backend.
        up_bytes: counter [table],
        /// Payload bytes from the backend to clients.
        down_bytes: counter [table],
        /// Datagrams from clients to the backend (UDP).
        up_datagrams: counter,
        /// Datagrams from the backend to clients (UDP).
        down_datagrams: counter,
    }
}

/// The TCP counters of one queue: the worker's and its stack's, in one JSON object.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TcpReport {
    /// The worker's.
    #[serde(flatten)]
    pub worker: WorkerTcpCounters,
    /// The stack's.
    #[serde(flatten)]
    pub stack: tcp::Counters,
}

/// Counters of one RX queue.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueReport {
    /// RX queue index.
    pub queue: u32,
    /// `copy` or `zero-copy`.
    pub mode: String,
    /// `off`, `on`, or `no-napi`: asked for, but the kernel has no NAPI instance to busy-poll
    /// for the queue (veth), so it does nothing there.
    #[serde(default)]
    pub busy_poll: String,
    /// The socket's counters.
    #[serde(flatten)]
    pub counters: QueueCounters,
    /// The TCP counters; absent without TCP services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpReport>,
}

/// Counters of one service binding, summed over queues.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceReport {
    /// `udp-sink`, `udp-echo`, `tcp-echo` or `http`.
    pub kind: String,
    /// `ADDR:PORT`.
    pub addr: String,
    /// Its counters.
    #[serde(flatten)]
    pub counters: ServiceCounters,
}

/// Counters of one proxy.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyReport {
    /// `tcp-proxy` or `udp-proxy`.
    pub kind: String,
    /// The address it listens on.
    pub listen: String,
    /// Where it forwards to.
    pub backend: String,
    /// Its counters.
    #[serde(flatten)]
    pub counters: ProxyCounters,
}

/// What the daemon reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonReport {
    /// The daemon's process id.
    pub pid: u32,
    /// Per-queue counters.
    pub queues: Vec<QueueReport>,
    /// Per-service counters.
    pub services: Vec<ServiceReport>,
    /// The TCP buffers' memory; absent without TCP services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_memory: Option<TcpMemory>,
    /// Per-proxy counters; absent without proxies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<ProxyReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_keeps_its_shape() {
        let mut q = QueueReport {
            queue: 1,
            mode: "copy".into(),
            ..Default::default()
        };
        q.counters.rx = 5;
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(v["rx"], 5, "queue counters sit beside queue and mode: {v}");
        assert!(v.get("tcp").is_none(), "no tcp object without TCP services");
        q.tcp = Some(TcpReport::default());
        q.tcp.as_mut().unwrap().worker.open = 2;
        q.tcp.as_mut().unwrap().stack.opened = 3;
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(
            (v["tcp"]["open"].as_u64(), v["tcp"]["opened"].as_u64()),
            (Some(2), Some(3))
        );
        let back: QueueReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, q);
    }
}
