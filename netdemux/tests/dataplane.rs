//! The data plane's start-up guard, in a test binary of its own: it counts this process's
//! queue-worker threads, which no other test may start meanwhile. Requires root.

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
