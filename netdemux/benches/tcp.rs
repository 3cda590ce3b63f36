//! `cargo xtask bench tcp`: HTTP/1.1 keep-alive requests per second and latency, netdemux
//! `--http` (userspace TCP over AF_XDP) versus kernel-socket servers answering the same 20-byte
//! body: the same responder on tokio with one thread and with a multi-threaded runtime, and nginx
//! (Debian's package, one worker, `return 200`), measured in one run.
//!
//! Every server is confined to CPU 1, as netdemux's worker is (`--cpu 1`); wrk in the peer
//! namespace (1 thread, 16 connections) runs on CPU 0 and drives each for a few seconds; the
//! servers are measured in a random order per round, 3 rounds, and the medians are reported.
//! The ratios are taken against the best kernel server of the run.
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
        .args([
            "netns", "exec", &tb.ns_a, "taskset", "-c", "0", "wrk", "-t1", "-c16",
        ])
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

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// A kernel responder in namespace b, answering like `--http`: tokio on one thread, or on
/// `threads` worker threads, all on CPU 1.
fn kernel_server(
    tb: &Testbed,
    threads: usize,
) -> (tokio::sync::oneshot::Sender<()>, thread::JoinHandle<()>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = in_netns(&tb.ns_b, move || {
        pin(1);
        let rt = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .on_thread_start(|| pin(1))
                .enable_all()
                .build()
        }
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

/// nginx in namespace b on CPU 1, one worker, answering every request with the same body as
/// `--http`; stopped (and its files removed) when the guard drops.
struct Nginx {
    child: std::process::Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(tb: &Testbed) -> Result<Nginx> {
        let dir = std::env::temp_dir().join(format!("netdemux-bench-nginx-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let body = String::from_utf8_lossy(http::BODY).replace('\n', "\\n");
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
             error_log {d}/error.log; events {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 1000000; default_type text/plain;\n\
             client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
             uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{ listen {ADDR}; location / {{ return 200 \"{body}\"; }} }} }}\n",
            d = dir.display()
        );
        fs::write(dir.join("nginx.conf"), conf)?;
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("nginx is not installed (cargo xtask setup installs it)")?;
        let child = Command::new("ip")
            .args(["netns", "exec", &tb.ns_b, "taskset", "-c", "1", nginx, "-c"])
            .arg(dir.join("nginx.conf"))
            .args(["-p"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start nginx")?;
        let n = Nginx { child, dir };
        // Ready when it answers.
        for _ in 0..100 {
            let ok = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &tb.ns_a,
                    "curl",
                    "-sf",
                    &format!("http://{ADDR}/"),
                ])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout == http::BODY);
            if ok {
                return Ok(n);
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "nginx did not answer with the body within 5 s (see {})",
            n.dir.display()
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
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
    // The servers, measured in a random order per round (xorshift seeded from the clock).
    const SERVERS: [&str; 4] = ["tokio_1", "tokio_mt", "nginx", "netdemux"];
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); SERVERS.len()];
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 | 1)
        .unwrap_or(1);
    let mut orders = Vec::new();
    for _ in 0..3 {
        let mut order: Vec<usize> = (0..SERVERS.len()).collect();
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        orders.push(order.iter().map(|&i| SERVERS[i]).collect::<Vec<_>>());
        for i in order {
            let round = match SERVERS[i] {
                "tokio_1" | "tokio_mt" => {
                    let threads = if SERVERS[i] == "tokio_1" { 1 } else { 2 };
                    let (stop, h) = kernel_server(&tb, threads);
                    let k = measured(&tb, seconds);
                    let _ = stop.send(());
                    let _ = h.join();
                    k?
                }
                "nginx" => {
                    let n = Nginx::start(&tb)?;
                    let k = measured(&tb, seconds);
                    drop(n);
                    k?
                }
                _ => {
                    let d = Daemon::start(&tb, &["--http", ADDR, "--cpu", "1"])?;
                    thread::sleep(Duration::from_millis(100));
                    let o = measured(&tb, seconds);
                    // The daemon's ring drop counters and TCP counters for this round.
                    let stats = tb.stats()?;
                    d.stop()?;
                    let (r, mut extra) = o?;
                    extra["queues"] = stats["queues"].clone();
                    (r, extra)
                }
            };
            results[i].push(round);
        }
    }
    let ours = results.pop().unwrap_or_default();
    // The best kernel server of the run (by median requests/s) is the baseline.
    let best = (0..results.len())
        .max_by(|&a, &b| {
            let m = |v: &[Round]| {
                let mut c: Vec<f64> = v.iter().map(|(r, _)| r.0).collect();
                median(&mut c)
            };
            m(&results[a]).total_cmp(&m(&results[b]))
        })
        .unwrap_or(0);
    let kernel = results[best].clone();
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
        "HTTP/1.1 keep-alive GET, wrk -t1 -c16 on CPU 0 in the peer namespace, servers on CPU 1, medians of 3 × {seconds} s\n"
    );
    println!("| responder | requests/s | p50 (µs) | p99 (µs) |");
    println!("|---|---:|---:|---:|");
    let mut kernels = serde_json::Map::new();
    for (i, name) in SERVERS[..SERVERS.len() - 1].iter().enumerate() {
        let (r, p50, p99) = (
            col(&results[i], 0),
            col(&results[i], 1),
            col(&results[i], 2),
        );
        println!("| kernel TCP, {name} | {r:.0} | {p50:.0} | {p99:.0} |");
        kernels.insert(
            name.to_string(),
            serde_json::json!({"requests_per_s": r, "p50_us": p50, "p99_us": p99, "rounds": rounds(&results[i])}),
        );
    }
    println!(
        "| netdemux --http (userspace TCP, AF_XDP copy mode) | {orps:.0} | {o50:.0} | {o99:.0} |"
    );
    println!(
        "\nratios netdemux/best kernel server ({}): requests/s {:.2}, p50 {:.2}, p99 {:.2}",
        SERVERS[best],
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
        "orders": orders,
        "pinning": "wrk on CPU 0; every server (tokio's threads, nginx, netdemux's worker) on CPU 1",
        "kernel_best": SERVERS[best],
        "kernel_servers": kernels,
        "kernel": {"requests_per_s": krps, "p50_us": k50, "p99_us": k99, "rounds": rounds(&kernel)},
        "netdemux": {"requests_per_s": orps, "p50_us": o50, "p99_us": o99, "rounds": rounds(&ours)},
        "ratios": {
            "tcp_reqs_vs_kernel": orps / krps,
            "tcp_p50_vs_kernel": o50 / k50,
            "tcp_p99_vs_kernel": o99 / k99,
        },
    });
    netdemux::testbed::write_results("tcp", &out)?;
    Ok(())
}
