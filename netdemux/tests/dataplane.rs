//! The data plane's start-up guard and its socket's TX flush, in a test binary of its own: the
//! guard's test counts this process's queue-worker threads, which no other test may start
//! meanwhile. Requires root.

mod support;

use support::{
    api::{runtime, stack},
    netns::*,
};

/// Threads of this process named as queue workers.
fn queue_worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.starts_with("netdemux-q"))
        })
        .count()
}

/// The start-up guard: a stack that cannot serve its second queue (something else holds it)
/// fails with the reason and leaves nothing behind — no worker thread, no attachment it made,
/// no XDP program on the interface. (Before one start-up served the daemon and the library,
/// the library left queue 0's worker running and its socket in the XSKMAP.)
#[test]
fn a_stack_that_cannot_serve_every_queue_leaves_nothing_behind() {
    let tb = Testbed::new(2);
    let veth = tb.veth_b.clone();
    let blocker = in_netns(&tb.ns_b, move || {
        let ifindex = netdemux::control::iface::Interface::link(&veth)
            .and_then(|i| i.ifindex())
            .unwrap();
        netdemux::xsk::XskSocket::open(ifindex, 1, &netdemux::xsk::XskConfig::default())
            .expect("an AF_XDP socket of our own on queue 1")
    })
    .join()
    .unwrap();
    let rt = runtime();
    let built = rt.block_on(
        netdemux::Stack::builder()
            .iface(&tb.veth_b)
            .netns(&tb.ns_b)
            .build(),
    );
    let err = format!(
        "{:#}",
        built.err().expect("queue 1 is taken: the stack is refused")
    );
    assert!(err.contains("queue 1"), "{err}");
    assert_eq!(queue_worker_threads(), 0, "no worker left running");
    assert!(
        !tb.pin_dir().exists(),
        "the attachment the stack made is gone"
    );
    let link = must("ip", &["-n", &tb.ns_b, "link", "show", &tb.veth_b]);
    assert!(!link.contains("xdp"), "no XDP program left: {link}");
    drop(blocker);
    // With queue 1 free again, the same stack comes up (a thread takes its name once it runs).
    let stack = rt.block_on(stack(&tb));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while queue_worker_threads() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(queue_worker_threads(), 2);
    drop(stack);
    assert_eq!(queue_worker_threads(), 0);
}

/// Packets `dev` in namespace `ns` has sent, from `ip -s link`.
fn tx_packets(ns: &str, dev: &str) -> u64 {
    netdemux::testbed::link_counter(ns, dev, "tx", "packets").unwrap()
}

/// In copy mode one sendto(2) transmits at most 32 frames (the kernel's TX_BATCH_SIZE) and
/// returns EAGAIN when more wait, though it took 32: a flush goes on while the kernel takes
/// frames. Before, a flush of 100 posted frames sent 32 and left 68 in the ring until something
/// kicked it again (a spinning worker's answers waited for the next request to arrive).
#[test]
fn one_flush_sends_every_posted_frame() {
    const FRAMES: u64 = 100;
    let tb = Testbed::new(1);
    let before = tx_packets(&tb.ns_b, &tb.veth_b);
    let veth = tb.veth_b.clone();
    let still_waiting = in_netns(&tb.ns_b, move || {
        let ifindex = netdemux::control::iface::Interface::link(&veth)
            .and_then(|i| i.ifindex())
            .unwrap();
        let mut sock =
            netdemux::xsk::XskSocket::open(ifindex, 0, &netdemux::xsk::XskConfig::default())
                .expect("an AF_XDP socket on queue 0");
        assert!(!sock.zero_copy(), "veth runs AF_XDP in copy mode");
        for _ in 0..FRAMES {
            // Broadcast, a local experimental EtherType (0x88b5): the peer counts and drops it.
            let posted = sock.post(|f| {
                f[..60].fill(0);
                f[..6].fill(0xff);
                f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xbe, 0xef]);
                f[12..14].copy_from_slice(&[0x88, 0xb5]);
                Some(60)
            });
            assert!(posted, "room for {FRAMES} frames in the TX ring");
        }
        sock.flush_tx()
    })
    .join()
    .unwrap();
    let sent = tx_packets(&tb.ns_b, &tb.veth_b) - before;
    assert!(
        !still_waiting,
        "frames left in the TX ring after one flush ({sent} of {FRAMES} sent)"
    );
    // The namespace's kernel may send a frame of its own meanwhile (IPv6 neighbour discovery).
    assert!(sent >= FRAMES, "{sent} of {FRAMES} frames sent");
}

/// A spinning consumer's socket keeps half a ring of frames in the fill ring, one that sleeps
/// every idle frame but the TX reserve (see `XskConfig::spinning`: the kernel then copies into
/// recently used frames; a spinning sink received ~20% more on veth).
#[test]
fn a_spinning_socket_keeps_half_a_ring_in_the_fill_ring() {
    let tb = Testbed::new(1);
    let veth = tb.veth_b.clone();
    let (sleeping, spinning) = in_netns(&tb.ns_b, move || {
        let ifindex = netdemux::control::iface::Interface::link(&veth)
            .and_then(|i| i.ifindex())
            .unwrap();
        let cfg = netdemux::xsk::XskConfig::default();
        let queued = |cfg: &netdemux::xsk::XskConfig| {
            netdemux::xsk::XskSocket::open(ifindex, 0, cfg)
                .expect("an AF_XDP socket on queue 0")
                .fill_queued()
        };
        (queued(&cfg), queued(&cfg.spinning()))
    })
    .join()
    .unwrap();
    assert_eq!(sleeping, 4096 - 4096 / 8, "every frame but the TX reserve");
    assert_eq!(spinning, 2048 / 2, "half a ring");
}
