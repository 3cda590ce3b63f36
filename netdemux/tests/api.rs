//! The application API (`netdemux::Stack`, `UdpSocket`) on a tokio runtime, with the kernel's UDP
//! stack as the peer: answers over IPv4, IPv6 and a wildcard binding, sends to a peer that has not
//! written first (resolved through the kernel's neighbour table), and a send to a peer that never
//! answers ARP (dropped after the wait, and counted). Requires root.

mod support;

use std::{
    net::{SocketAddr, UdpSocket as KernelUdp},
    sync::Arc,
    time::Duration,
};

use support::{
    api::{runtime, stack},
    netns::*,
};

/// Sequential round trips from namespace a: each answer must come from `dst` with the payload.
fn round_trips(tb: &Testbed, dst: SocketAddr, n: u32) -> u32 {
    in_netns(&tb.ns_a, move || {
        let any: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .unwrap();
        let sock = KernelUdp::bind(any).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 2048];
        let mut good = 0;
        for i in 0..n {
            let payload = format!("datagram {i} {}", "z".repeat(i as usize % 700));
            sock.send_to(payload.as_bytes(), dst).unwrap();
            let (len, from) = sock
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{dst}: no answer to {i}: {e}"));
            assert_eq!(from, dst, "answer {i} from the bound address");
            assert_eq!(&buf[..len], payload.as_bytes(), "payload {i}");
            good += 1;
        }
        good
    })
    .join()
    .unwrap()
}

#[test]
fn an_application_echo_answers_over_ipv4_ipv6_and_a_wildcard() {
    let tb = Arc::new(Testbed::new(2));
    tb.add_second_address();
    let rt = runtime();
    let stack = rt.block_on(stack(&tb));
    for addr in ["198.18.0.2:7000", "[2001:db8::2]:7000", "0.0.0.0:7100"] {
        let sock = rt.block_on(stack.udp_bind(addr.parse().unwrap())).unwrap();
        rt.spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
                sock.send_to(&buf[..n], peer).await.unwrap();
            }
        });
    }
    let list = tb.netdemux_ok(&["list", "--iface", &tb.veth_b]);
    assert_eq!(
        list,
        "udp 0.0.0.0:7100\nudp 198.18.0.2:7000\nudp [2001:db8::2]:7000\n"
    );
    for (dst, n) in [
        ("198.18.0.2:7000", 2000),
        ("[2001:db8::2]:7000", 2000),
        ("198.18.0.2:7100", 200),
        ("198.18.0.3:7100", 200),
    ] {
        assert_eq!(round_trips(&tb, dst.parse().unwrap(), n), n, "{dst}");
    }
    let stats = tb.stats();
    assert_eq!(stats["verdicts"]["redirected"], 4400, "{stats}");
    // Dropping the runtime drops the sockets (their bindings go) and then the stack, which
    // attached the program and so detaches it.
    drop(rt);
    drop(stack);
    assert!(
        !tb.pin_dir().exists(),
        "the stack detached what it attached"
    );
}

#[test]
fn an_application_sends_first_to_a_new_peer_and_unresolvable_peers_are_counted() {
    let tb = Testbed::new(1);
    // Forget what the testbed's priming taught namespace b about a, so resolution is real.
    must("ip", &["-n", &tb.ns_b, "neigh", "flush", "dev", &tb.veth_b]);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = in_netns(&tb.ns_a, move || {
        let sock = KernelUdp::bind("198.18.0.1:9999").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    });
    ready_rx.recv().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let stack = stack(&tb).await;
        let sock = stack
            .udp_bind("198.18.0.2:7200".parse().unwrap())
            .await
            .unwrap();
        sock.send_to(b"hello first", "198.18.0.1:9999".parse().unwrap())
            .await
            .unwrap();
        // Nobody has 198.18.0.99: the send waits for ARP, then is dropped and counted.
        sock.send_to(b"to nobody", "198.18.0.99:9999".parse().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(sock.tx_dropped(), 1, "the unresolvable send is counted");
    });
    let (payload, from) = listener.join().unwrap();
    assert_eq!(payload, b"hello first");
    assert_eq!(from, "198.18.0.2:7200".parse::<SocketAddr>().unwrap());
}

#[test]
fn datagrams_with_bad_checksums_are_counted_and_not_delivered() {
    let tb = Testbed::new(1);
    let rt = runtime();
    let stack = rt.block_on(stack(&tb));
    let sock = rt
        .block_on(stack.udp_bind("198.18.0.2:7300".parse().unwrap()))
        .unwrap();
    let send = |payload: &'static [u8]| {
        in_netns(&tb.ns_a, move || {
            KernelUdp::bind("0.0.0.0:0")
                .unwrap()
                .send_to(payload, "198.18.0.2:7300")
                .unwrap();
        })
        .join()
        .unwrap();
    };
    // With TX checksum offload on, the kernel leaves the checksum for hardware veth does not have.
    must(
        "ip",
        &[
            "netns", "exec", &tb.ns_a, "ethtool", "-K", &tb.veth_a, "tx", "on",
        ],
    );
    send(b"partial checksum");
    must(
        "ip",
        &[
            "netns", "exec", &tb.ns_a, "ethtool", "-K", &tb.veth_a, "tx", "off",
        ],
    );
    send(b"full checksum");
    let mut buf = [0u8; 64];
    let (n, _) = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
        })
        .expect("the good datagram arrives")
        .unwrap();
    assert_eq!(&buf[..n], b"full checksum", "the bad one was not delivered");
    assert_eq!(sock.checksum_errors(), 1);
    drop(sock);
    drop(stack);
}
