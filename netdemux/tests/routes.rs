//! Real networks: peers behind a router, neighbours that go stale, and frames that lie about
//! where they come from. Namespace a is the gateway to a network of its own (198.19.0.0/24 and
//! 2001:db8:1::/64 on its loopback); namespace b, netdemux's, reaches it only through a. The
//! kernel's sockets in namespace a are the peers. Requires root.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener as KernelListener, TcpStream as KernelStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use support::{
    api::{runtime, stack},
    netns::*,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[test]
fn a_stack_reaches_udp_and_tcp_peers_behind_a_gateway() {
    let tb = Testbed::new(1);
    backend_network(&tb);
    // The peers: a UDP echo and a TCP echo in namespace a, on the network behind it.
    let peers = in_netns(&tb.ns_a, || {
        let mut out = Vec::new();
        for addr in ["198.19.0.1:9000", "[2001:db8:1::1]:9000"] {
            let u = UdpSocket::bind(addr).unwrap();
            let t = KernelListener::bind(addr).unwrap();
            out.push((u, t));
        }
        out
    })
    .join()
    .unwrap();
    let mut servers = Vec::new();
    for (u, t) in peers {
        servers.push(thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = u.recv_from(&mut buf).unwrap();
            u.send_to(&buf[..n], from).unwrap();
        }));
        servers.push(thread::spawn(move || {
            let (mut s, _) = t.accept().unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            s.write_all(&buf[..n]).unwrap();
        }));
    }
    let rt = runtime();
    let stack = rt.block_on(stack(&tb));
    for (local, peer) in [
        ("198.18.0.2:7400", "198.19.0.1:9000"),
        ("[2001:db8::2]:7400", "[2001:db8:1::1]:9000"),
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        rt.block_on(async {
            let u = stack.udp_bind(local.parse().unwrap()).await.unwrap();
            u.send_to(b"over the router", peer).await.unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = tokio::time::timeout(Duration::from_secs(3), u.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("UDP to {peer}: no answer through the gateway"))
                .unwrap();
            assert_eq!((&buf[..n], from), (&b"over the router"[..], peer));
            let mut s = tokio::time::timeout(Duration::from_secs(5), stack.tcp_connect(peer))
                .await
                .unwrap_or_else(|_| panic!("TCP to {peer}: no answer through the gateway"))
                .unwrap();
            s.write_all(b"hello backend").await.unwrap();
            let mut back = [0u8; 13];
            tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut back))
                .await
                .expect("TCP echo through the gateway")
                .unwrap();
            assert_eq!(&back, b"hello backend");
        });
    }
    for s in servers {
        s.join().unwrap();
    }
}

#[test]
fn a_connection_quiet_for_longer_than_the_neighbour_lifetime_sends_at_once() {
    // The stack's entry for its peer goes stale after 1 s; the application writes after 3 s
    // of silence. The stale entry is used while the kernel is asked again: the bytes arrive
    // at once, not after retransmissions (nor never).
    let tb = Testbed::new(1);
    let listener = in_netns(&tb.ns_a, || {
        KernelListener::bind("198.18.0.1:9100").unwrap()
    })
    .join()
    .unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut first = [0u8; 5];
        s.read_exact(&mut first).unwrap();
        let mut second = [0u8; 5];
        s.read_exact(&mut second).unwrap();
        (first, second, Instant::now())
    });
    let rt = runtime();
    let stack = rt.block_on(async {
        netdemux::Stack::builder()
            .iface(&tb.veth_b)
            .netns(&tb.ns_b)
            .neighbour_lifetime(Duration::from_secs(1))
            .build()
            .await
            .expect("the stack comes up")
    });
    let written = rt.block_on(async {
        let mut s = stack
            .tcp_connect("198.18.0.1:9100".parse().unwrap())
            .await
            .unwrap();
        s.write_all(b"first").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        s.write_all(b"later").await.unwrap();
        let at = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(s);
        at
    });
    let (first, second, arrived) = peer.join().expect("both writes arrived");
    assert_eq!((&first, &second), (b"first", b"later"));
    let took = arrived.saturating_duration_since(written);
    eprintln!(
        "after {:?} of silence the write arrived in {took:?}",
        Duration::from_secs(3)
    );
    assert!(took < Duration::from_millis(150), "took {took:?}");
}

/// Sends one TCP segment from namespace a with a forged source MAC (scapy, Debian's
/// python3-scapy).
fn forge(tb: &Testbed, src_mac: &str, sport: u16, dport: u16, seq: u32) {
    let script = format!(
        "from scapy.all import Ether, IP, TCP, sendp\n\
         sendp(Ether(src='{src_mac}', dst='{dst}')/IP(src='198.18.0.1', dst='198.18.0.2')/\
         TCP(sport={sport}, dport={dport}, flags='A', seq={seq}, ack=1)/b'x'*8, \
         iface='{iface}', verbose=False)\n",
        dst = mac_of(&tb.ns_b, &tb.veth_b),
        iface = tb.veth_a,
    );
    scapy(&tb.ns_a, &script);
}

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> String {
    let out = must("ip", &["-n", ns, "-br", "link", "show", dev]);
    out.split_whitespace()
        .nth(2)
        .expect("ip -br link shows the MAC")
        .to_string()
}

#[test]
fn a_segment_outside_the_window_from_another_mac_does_not_move_the_replies() {
    // An application pushes data after a forged segment (right 4-tuple and checksum, sequence
    // number far outside the window, another MAC) arrived: the data still goes to the client.
    // Had the forged frame moved the client's entry, nothing the client sends would repair it
    // before the data is lost.
    let tb = Testbed::new(1);
    let rt = runtime();
    let stack = rt.block_on(stack(&tb));
    let listener = rt
        .block_on(netdemux::TcpListener::bind(
            &stack,
            "198.18.0.2:9200".parse().unwrap(),
        ))
        .unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let app = rt.spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        tokio::task::spawn_blocking(move || wait.recv().unwrap())
            .await
            .unwrap();
        s.write_all(b"pushed").await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let client = in_netns(&tb.ns_a, || {
        let mut s = KernelStream::connect_timeout(
            &"198.18.0.2:9200".parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        s.write_all(b"hello").unwrap();
        s
    })
    .join()
    .unwrap();
    thread::sleep(Duration::from_millis(100));
    let sport = client.local_addr().unwrap().port();
    forge(&tb, "02:66:66:66:66:66", sport, 9200, 0x8000_0000);
    thread::sleep(Duration::from_millis(100));
    go.send(()).unwrap();
    let mut client = client;
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut pushed = [0u8; 6];
    client
        .read_exact(&mut pushed)
        .expect("the pushed data reached the client, not the forger");
    assert_eq!(&pushed, b"pushed");
    rt.block_on(app).unwrap();
}

#[test]
fn a_veth_peer_that_offloads_tx_checksums_is_named_with_its_fix() {
    // Containers' veth pairs offload TX checksums by default: the kernel hands netdemux frames
    // with only the pseudo-header sum in them. Off (as the testbed sets it): not a word.
    const ECHO: &str = "198.18.0.2:7001";
    let tb = Testbed::new(1);
    let warning = format!("ip netns exec {} ethtool -K {} tx off", tb.ns_a, tb.veth_a);
    let d = netdemux::testbed::Daemon::start(&tb, &["--tcp-echo", ECHO]).unwrap();
    let (_, quiet) = d.stop_with_stderr().unwrap();
    assert!(!quiet.contains("TX checksums"), "{quiet}");
    must(
        "ip",
        &[
            "netns", "exec", &tb.ns_a, "ethtool", "-K", &tb.veth_a, "tx", "on",
        ],
    );
    let d = netdemux::testbed::Daemon::start(&tb, &["--tcp-echo", ECHO]).unwrap();
    // The kernel's SYNs carry partial checksums: dropped, counted as such.
    let refused = in_netns(&tb.ns_a, || {
        KernelStream::connect_timeout(&ECHO.parse().unwrap(), Duration::from_millis(1500)).is_err()
    })
    .join()
    .unwrap();
    let stats = tb.stats();
    let q = &stats["queues"][0];
    let (_, said) = d.stop_with_stderr().unwrap();
    eprintln!("{said}");
    assert!(refused, "a partial checksum got through");
    assert!(q["checksum_partial"].as_u64().unwrap() >= 1, "{q}");
    assert_eq!(q["checksum_partial"], q["checksum_errors"], "{q}");
    assert_eq!(
        said.matches(&warning).count(),
        1,
        "one warning, with the fix: {said}"
    );
    assert_eq!(
        said.matches("partial TCP/UDP checksums").count(),
        1,
        "{said}"
    );
}
