//! `cargo xtask bench tcp`: HTTP/1.1 keep-alive requests per second and latency, netdemux
//! `--http` (userspace TCP over AF_XDP) versus the same responder on kernel sockets (tokio, one
//! thread, the same answer bytes), measured in one run.
//!
//! wrk in the peer namespace (1 thread, 16 connections) drives each responder for a few
//! seconds; the two are measured alternately, 3 rounds each, and the medians are reported.
//! Each round records the CPUs' busy share; netdemux rounds also its ring drop and TCP
//! counters; the record holds both veth ends' offload settings.
//! Default veth layout (no threaded NAPI), 1 queue; the netdemux worker waits in poll(2).
//! Output: a markdown table and `bench/results/tcp-latest.json`. Usage: tcp [--quick]  (root)

use std::{fs, path::PathBuf, process::Command, thread, time::Duration};

use anyhow::{Context as _, Result, bail};
use netdemux::{
    services::http,
    testbed::{Daemon, Testbed, in_netns},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BIN: &str = env!("CARGO_BIN_EXE_netdemux");
const ADDR: &str = "198.18.0.2:8080";

/// One measured round: (requests/s, p50 µs, p99 µs) and what else was recorded.
type Round = ((f64, f64, f64), serde_json::Value);

/// The offload settings of both veth ends, as ethtool shows them.
fn offloads(tb: &Testbed) -> serde_json::Value {
    let read = |ns: &str, dev: &str| -> serde_json::Value {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ethtool", "-k", dev])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut m = serde_json::Map::new();
        for l in out.lines() {
            let l = l.trim();
            for key in [
                "generic-receive-offload",
                "tcp-segmentation-offload",
                "tx-checksumming",
                "rx-checksumming",
            ] {
                if let Some(v) = l.strip_prefix(&format!("{key}: ")) {
                    m.insert(key.into(), v.split_whitespace().next().unwrap_or("").into());
                }
            }
        }
        m.into()
    };
    serde_json::json!({
        "client_side": read(&tb.ns_a, &tb.veth_a),
        "server_side": read(&tb.ns_b, &tb.veth_b),
    })
}

/// wrk, with the CPUs' busy share over the run.
fn measured(tb: &Testbed, seconds: u32) -> Result<Round> {
    let before = netdemux::testbed::cpu_times();
    let r = wrk(tb, seconds)?;
    let busy = netdemux::testbed::cpu_busy(&before, &netdemux::testbed::cpu_times());
    Ok((r, serde_json::json!({"cpu_busy": busy})))
}

/// One wrk run: (requests/s, p50 µs, p99 µs).
fn wrk(tb: &Testbed, seconds: u32) -> Result<(f64, f64, f64)> {
    let out = Command::new("ip")
        .args(["netns", "exec", &tb.ns_a, "wrk", "-t1", "-c16"])
        .arg(format!("-d{seconds}s"))
        .args(["--latency", &format!("http://{ADDR}/")])
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
        .and_then(|v| v.trim().parse().ok())
        .context("wrk printed no Requests/sec")?;
    let pct = |p: &str| -> Result<f64> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(p))
            .with_context(|| format!("wrk printed no {p} latency"))?;
        let v = line.split_whitespace().nth(1).context("latency value")?;
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

/// The kernel responder: tokio on one thread in namespace b, answering like `--http`.
fn kernel_server(tb: &Testbed) -> (tokio::sync::oneshot::Sender<()>, thread::JoinHandle<()>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = in_netns(&tb.ns_b, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(ADDR).await.expect("bind");
            ready_tx.send(()).unwrap();
            let serve = async {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    tokio::spawn(async move {
                        let mut head = Vec::with_capacity(4096);
                        let mut buf = [0u8; 4096];
                        loop {
                            while let Some(end) = http::head_end(&head) {
                                let a = http::answer(&head[..end]);
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
            };
            tokio::select! {
                _ = serve => {}
                _ = stop_rx => {}
            }
        });
    });
    ready_rx.recv().expect("kernel responder ready");
    (stop_tx, h)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 2 } else { 5 };
    if !nix::unistd::geteuid().is_root() {
        bail!("the TCP benchmark creates namespaces: run it as root");
    }
    let tb = Testbed::new("ndh", 1, BIN)?;
    let settings = offloads(&tb);
    let (mut kernel, mut ours): (Vec<Round>, Vec<Round>) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (stop, h) = kernel_server(&tb);
        let k = measured(&tb, seconds);
        let _ = stop.send(());
        let _ = h.join();
        kernel.push(k?);

        let d = Daemon::start(&tb, &["--http", ADDR])?;
        thread::sleep(Duration::from_millis(100));
        let o = measured(&tb, seconds);
        // The daemon's ring drop counters and TCP counters for this round.
        let stats = tb.stats()?;
        d.stop()?;
        let (r, mut extra) = o?;
        extra["queues"] = stats["queues"].clone();
        ours.push((r, extra));
    }
    drop(tb);
    let col = |v: &[Round], i: usize| {
        let mut c: Vec<f64> = v.iter().map(|(r, _)| [r.0, r.1, r.2][i]).collect();
        median(&mut c)
    };
    let rounds = |v: &[Round]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|((rps, p50, p99), extra)| {
                let mut o =
                    serde_json::json!({"requests_per_s": rps, "p50_us": p50, "p99_us": p99});
                if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
                    o.extend(e.clone());
                }
                o
            })
            .collect()
    };
    let (krps, k50, k99) = (col(&kernel, 0), col(&kernel, 1), col(&kernel, 2));
    let (orps, o50, o99) = (col(&ours, 0), col(&ours, 1), col(&ours, 2));
    println!(
        "HTTP/1.1 keep-alive GET, wrk -t1 -c16 in the peer namespace, medians of 3 × {seconds} s\n"
    );
    println!("| responder | requests/s | p50 (µs) | p99 (µs) |");
    println!("|---|---:|---:|---:|");
    println!("| kernel TCP, tokio (1 thread) | {krps:.0} | {k50:.0} | {k99:.0} |");
    println!(
        "| netdemux --http (userspace TCP, AF_XDP copy mode) | {orps:.0} | {o50:.0} | {o99:.0} |"
    );
    println!(
        "\nratios netdemux/kernel: requests/s {:.2}, p50 {:.2}, p99 {:.2}",
        orps / krps,
        o50 / k50,
        o99 / k99
    );
    let out = serde_json::json!({
        "benchmark": "http_keepalive",
        "quick": quick,
        "provenance": netdemux::testbed::provenance(quick),
        "seconds_each": seconds,
        "rounds": 3,
        "offloads": settings,
        "kernel": {"requests_per_s": krps, "p50_us": k50, "p99_us": k99, "rounds": rounds(&kernel)},
        "netdemux": {"requests_per_s": orps, "p50_us": o50, "p99_us": o99, "rounds": rounds(&ours)},
        "ratios": {
            "tcp_reqs_vs_kernel": orps / krps,
            "tcp_p50_vs_kernel": o50 / k50,
            "tcp_p99_vs_kernel": o99 / k99,
        },
    });
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    fs::create_dir_all(&dir)?;
    let path = dir.join("tcp-latest.json");
    fs::write(&path, serde_json::to_string_pretty(&out)? + "\n")?;
    println!("results: {}", path.display());
    Ok(())
}
