//! `cargo xtask bench proxy`: `run --tcp-proxy` (userspace TCP over AF_XDP on both sides of
//! the relay) versus the same relay on kernel sockets (tokio, one thread, `copy_bidirectional`),
//! measured in one run: HTTP/1.1 keep-alive requests per second and latency through each proxy
//! to one backend, and bulk throughput (bytes sent through the proxy to a backend that counts
//! them).
//!
//! Namespace a holds the clients (wrk, a bulk sender) and, on a network behind it, the
//! backends (tokio, the same answer bytes as `--http`; a counting sink); the proxies are in
//! namespace b and reach the backends through a as their gateway. The two proxies are measured
//! alternately, 3 rounds each; medians are reported. Default veth layout, 1 queue.
//! Output: a markdown table and `bench/results/proxy-latest.json`. Usage: proxy [--quick]
//! (root)

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use netdemux::{
    services::http,
    testbed::{Daemon, Testbed, in_netns, must},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BIN: &str = env!("CARGO_BIN_EXE_netdemux");
/// Where clients reach either proxy (one at a time).
const HTTP_PROXY: &str = "198.18.0.2:8080";
const BULK_PROXY: &str = "198.18.0.2:8090";
/// The backends behind namespace a.
const HTTP_BACKEND: &str = "198.19.0.1:9080";
const BULK_BACKEND: &str = "198.19.0.1:9090";

/// One measured round: requests/s, p50 µs, p99 µs, bulk Gbit/s.
type Round = [f64; 4];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The backends on a network behind namespace a, routed from b through a: a tokio HTTP
/// responder answering like `--http`, and a sink that reads a connection to its end and
/// answers with the count. They run until the process ends.
fn backends(tb: &Testbed) -> Result<()> {
    must(
        "ip",
        &["-n", &tb.ns_a, "addr", "add", "198.19.0.1/24", "dev", "lo"],
    )?;
    must(
        "ip",
        &[
            "-n",
            &tb.ns_b,
            "route",
            "add",
            "198.19.0.0/24",
            "via",
            "198.18.0.1",
        ],
    )?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    in_netns(&tb.ns_a, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let web = tokio::net::TcpListener::bind(HTTP_BACKEND).await.unwrap();
            let sink = tokio::net::TcpListener::bind(BULK_BACKEND).await.unwrap();
            ready_tx.send(()).unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = sink.accept().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 1 << 16];
                        let mut n = 0u64;
                        while let Ok(k) = s.read(&mut buf).await {
                            if k == 0 {
                                break;
                            }
                            n += k as u64;
                        }
                        let _ = s.write_all(&n.to_be_bytes()).await;
                    });
                }
            });
            while let Ok((mut s, _)) = web.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let mut head = Vec::with_capacity(4096);
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some((end, a)) = http::next_request(&head) {
                            if s.write_all(&a.bytes).await.is_err() || a.close {
                                return;
                            }
                            head.drain(..end);
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
    });
    ready_rx.recv().context("the backends did not come up")?;
    Ok(())
}

/// The kernel proxy: tokio on one thread in namespace b, both relays.
fn kernel_proxy(tb: &Testbed) -> (tokio::sync::oneshot::Sender<()>, thread::JoinHandle<()>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = in_netns(&tb.ns_b, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for (listen, backend) in [(HTTP_PROXY, HTTP_BACKEND), (BULK_PROXY, BULK_BACKEND)] {
                let l = tokio::net::TcpListener::bind(listen).await.expect("bind");
                tasks.push(tokio::spawn(async move {
                    while let Ok((mut c, _)) = l.accept().await {
                        tokio::spawn(async move {
                            let Ok(mut b) = tokio::net::TcpStream::connect(backend).await else {
                                return;
                            };
                            let _ = c.set_nodelay(true);
                            let _ = b.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                        });
                    }
                }));
            }
            ready_tx.send(()).unwrap();
            let _ = stop_rx.await;
            for t in tasks {
                t.abort();
            }
        });
    });
    ready_rx.recv().expect("kernel proxy ready");
    (stop_tx, h)
}

/// wrk through the proxy: (requests/s, p50 µs, p99 µs).
fn wrk(tb: &Testbed, seconds: u32) -> Result<(f64, f64, f64)> {
    let out = Command::new("ip")
        .args(["netns", "exec", &tb.ns_a, "wrk", "-t1", "-c16"])
        .arg(format!("-d{seconds}s"))
        .args(["--latency", &format!("http://{HTTP_PROXY}/")])
        .output()
        .context("run wrk (cargo xtask setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!(
            "wrk failed or saw errors:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("wrk printed no Requests/sec")?;
    let pct = |p: &str| -> Result<f64> {
        let v = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(str::trim)
            .with_context(|| format!("wrk printed no {p} latency"))?;
        let (num, scale) = if let Some(x) = v.strip_suffix("us") {
            (x, 1.0)
        } else if let Some(x) = v.strip_suffix("ms") {
            (x, 1e3)
        } else if let Some(x) = v.strip_suffix('s') {
            (x, 1e6)
        } else {
            bail!("latency unit in '{v}'")
        };
        Ok(num.parse::<f64>()? * scale)
    };
    Ok((rps, pct("50%")?, pct("99%")?))
}

/// `bytes` sent through the bulk proxy until the sink confirms them all: Gbit/s.
fn bulk(tb: &Testbed, bytes: usize) -> Result<f64> {
    in_netns(&tb.ns_a, move || -> Result<f64> {
        let dst: SocketAddr = BULK_PROXY.parse()?;
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let chunk = vec![0x5au8; 1 << 16];
        let t = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n])?;
            left -= n;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        let mut count = [0u8; 8];
        s.read_exact(&mut count)?;
        let secs = t.elapsed().as_secs_f64();
        if u64::from_be_bytes(count) != bytes as u64 {
            bail!(
                "the sink counted {} of {bytes} bytes",
                u64::from_be_bytes(count)
            );
        }
        Ok(bytes as f64 * 8.0 / secs / 1e9)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the bulk client died"))?
}

fn round(tb: &Testbed, seconds: u32, bytes: usize) -> Result<Round> {
    let (rps, p50, p99) = wrk(tb, seconds)?;
    let gbps = bulk(tb, bytes)?;
    Ok([rps, p50, p99, gbps])
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (seconds, bytes) = if quick { (2, 64 << 20) } else { (5, 256 << 20) };
    if !nix::unistd::geteuid().is_root() {
        bail!("the proxy benchmark creates namespaces: run it as root");
    }
    let tb = Testbed::new("ndx", 1, BIN)?;
    backends(&tb)?;
    let (mut kernel, mut ours): (Vec<Round>, Vec<Round>) = (Vec::new(), Vec::new());
    let mut counters = Vec::new();
    for _ in 0..3 {
        let (stop, h) = kernel_proxy(&tb);
        let k = round(&tb, seconds, bytes);
        let _ = stop.send(());
        let _ = h.join();
        kernel.push(k?);

        let d = Daemon::start(
            &tb,
            &[
                "--tcp-proxy",
                &format!("{HTTP_PROXY}={HTTP_BACKEND}"),
                "--tcp-proxy",
                &format!("{BULK_PROXY}={BULK_BACKEND}"),
            ],
        )?;
        thread::sleep(Duration::from_millis(100));
        let o = round(&tb, seconds, bytes);
        let stats = tb.stats()?;
        d.stop()?;
        ours.push(o?);
        counters.push(serde_json::json!({
            "proxies": stats["proxies"],
            "queues": stats["queues"],
        }));
    }
    drop(tb);
    let col = |v: &[Round], i: usize| {
        let mut c: Vec<f64> = v.iter().map(|r| r[i]).collect();
        median(&mut c)
    };
    let k: Vec<f64> = (0..4).map(|i| col(&kernel, i)).collect();
    let o: Vec<f64> = (0..4).map(|i| col(&ours, i)).collect();
    println!(
        "TCP proxy to a backend behind a gateway: wrk -t1 -c16 (HTTP keep-alive) and {} MB bulk, medians of 3 rounds\n",
        bytes >> 20
    );
    println!("| proxy | requests/s | p50 (µs) | p99 (µs) | bulk (Gbit/s) |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| kernel sockets, tokio (1 thread) | {:.0} | {:.0} | {:.0} | {:.2} |",
        k[0], k[1], k[2], k[3]
    );
    println!(
        "| netdemux --tcp-proxy (userspace TCP, AF_XDP copy mode) | {:.0} | {:.0} | {:.0} | {:.2} |",
        o[0], o[1], o[2], o[3]
    );
    let ratios = serde_json::json!({
        "proxy_reqs_vs_kernel": o[0] / k[0],
        "proxy_p50_vs_kernel": o[1] / k[1],
        "proxy_p99_vs_kernel": o[2] / k[2],
        "proxy_bulk_vs_kernel": o[3] / k[3],
    });
    println!("\nratios netdemux/kernel: {ratios}");
    let rounds = |v: &[Round]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|r| {
                serde_json::json!({
                    "requests_per_s": r[0], "p50_us": r[1], "p99_us": r[2], "bulk_gbps": r[3]
                })
            })
            .collect()
    };
    let out = serde_json::json!({
        "benchmark": "tcp_proxy",
        "quick": quick,
        "provenance": netdemux::testbed::provenance(quick),
        "seconds_each": seconds,
        "bulk_bytes": bytes,
        "rounds": 3,
        "kernel": {"requests_per_s": k[0], "p50_us": k[1], "p99_us": k[2], "bulk_gbps": k[3], "rounds": rounds(&kernel)},
        "netdemux": {"requests_per_s": o[0], "p50_us": o[1], "p99_us": o[2], "bulk_gbps": o[3], "rounds": rounds(&ours), "counters": counters},
        "ratios": ratios,
    });
    netdemux::testbed::write_results("proxy", &out)?;
    Ok(())
}
