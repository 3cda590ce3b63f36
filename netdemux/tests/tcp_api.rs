//! The TCP API (`Stack::tcp_listen`, `Stack::tcp_connect`, `TcpStream` with tokio's
//! `AsyncRead`/`AsyncWrite`) with the kernel's TCP as the peer: an application echo over IPv4
//! and IPv6 that kernel clients check byte for byte; connections from netdemux to kernel
//! listeners, during which the kernel of the netdemux side sends no RST. Requires root.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener as KernelListener, TcpStream as KernelStream},
    sync::Arc,
    time::Duration,
};

use netdemux::test_rng::Xorshift64;

use support::{
    api::{runtime, stack},
    netns::*,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Pseudo-random bytes of length `n` from `seed`.
fn data(seed: u64, n: usize) -> Vec<u8> {
    Xorshift64::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).bytes(n)
}

/// The kernel's count of RSTs sent in namespace `ns`.
fn out_rsts(ns: &str) -> u64 {
    netdemux::testbed::kernel_counters(ns, &["TcpOutRsts"]).unwrap()
}

#[test]
fn an_application_echo_on_tcp_listeners_over_ipv4_and_ipv6() {
    let tb = Arc::new(Testbed::new(2));
    let rt = runtime();
    let stack = rt.block_on(stack(&tb));
    for addr in ["198.18.0.2:9000", "[2001:db8::2]:9000"] {
        let listener = rt
            .block_on(netdemux::TcpListener::bind(&stack, addr.parse().unwrap()))
            .expect("listen");
        assert_eq!(listener.local_addr(), addr.parse().unwrap());
        // The application: echo every connection.
        let server = rt.spawn(async move {
            for _ in 0..3 {
                let (mut s, peer) = listener.accept().await.expect("accept");
                assert_eq!(s.peer_addr(), peer);
                s.set_nodelay(true);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        let n = s.read(&mut buf).await.expect("read");
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).await.expect("write");
                    }
                    s.shutdown().await.unwrap();
                });
            }
        });
        // Three kernel clients, one after another, 1 MB each way.
        let dst: SocketAddr = addr.parse().unwrap();
        in_netns(&tb.ns_a, move || {
            for i in 0..3 {
                let sent = data(i, 1 << 20);
                let mut c = KernelStream::connect_timeout(&dst, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("{dst} connection {i}: {e}"));
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut w = c.try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    w.write_all(&sent).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                    sent
                });
                let mut back = Vec::new();
                c.read_to_end(&mut back)
                    .unwrap_or_else(|e| panic!("{dst} connection {i}: {e}"));
                let sent = writer.join().unwrap();
                assert!(back == sent, "{dst} connection {i}: echo differs");
            }
        })
        .join()
        .unwrap();
        rt.block_on(server).unwrap();
    }
}

#[test]
fn netdemux_connects_to_kernel_listeners_and_the_kernel_sends_no_rst() {
    let tb = Arc::new(Testbed::new(2));
    let rt = runtime();
    let stack = rt.block_on(stack(&tb));
    let rsts_before = out_rsts(&tb.ns_b);
    for addr in ["198.18.0.1:9100", "[2001:db8::1]:9100"] {
        let dst: SocketAddr = addr.parse().unwrap();
        // A kernel server in namespace a: reads everything, answers with its SHA of sorts
        // (the same bytes reversed), then closes.
        let server = in_netns(&tb.ns_a, move || {
            let l = KernelListener::bind(dst).unwrap();
            let mut peers = Vec::new();
            for _ in 0..2 {
                let (mut s, peer) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                got.reverse();
                s.write_all(&got).unwrap();
                peers.push(peer);
            }
            peers
        });
        std::thread::sleep(Duration::from_millis(200));
        let mut locals = Vec::new();
        for i in 0..2u64 {
            let sent = data(10 + i, 300_000);
            let mut s = rt
                .block_on(netdemux::TcpStream::connect(&stack, dst))
                .unwrap_or_else(|e| panic!("connect to {dst}: {e:#}"));
            assert_eq!(s.peer_addr(), dst);
            assert_eq!(s.local_addr().is_ipv4(), dst.is_ipv4());
            locals.push(s.local_addr());
            let back = rt.block_on(async {
                s.write_all(&sent).await.unwrap();
                s.shutdown().await.unwrap();
                let mut back = Vec::new();
                tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut back))
                    .await
                    .expect("answer within 20 s")
                    .unwrap();
                back
            });
            let mut expect = sent.clone();
            expect.reverse();
            assert!(back == expect, "{dst}: answer {i} differs");
        }
        let peers = server.join().unwrap();
        assert_eq!(
            peers, locals,
            "the kernel saw the addresses netdemux reported"
        );
    }
    // The connections' ports were netdemux's: the kernel of namespace b never answered them.
    assert_eq!(
        out_rsts(&tb.ns_b),
        rsts_before,
        "a kernel RST left namespace b"
    );
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let tb = Arc::new(Testbed::new(1));
    let rt = runtime();
    let stack = rt.block_on(stack(&tb));
    let err = rt
        .block_on(stack.tcp_connect("198.18.0.1:9999".parse().unwrap()))
        .err()
        .expect("nothing listens there");
    let io = err
        .chain()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .expect("an io::Error inside");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused, "{err:#}");
}
