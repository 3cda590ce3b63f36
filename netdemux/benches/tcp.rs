//! `cargo xtask bench tcp`: HTTP/1.1 keep-alive requests per second, CPU time and latency, netdemux
//! `--http` (userspace TCP over AF_XDP) versus kernel-socket servers answering the same 20-byte
//! body: the same responder on tokio with one thread and with a multi-threaded runtime, and nginx
//! (Debian's package, one worker, `return 200`), measured in one run.
//!
//! Every server is confined to CPU 1, as netdemux's worker is (`--cpu 1`); wrk in the peer
//! namespace (1 thread, 64 connections: with 16, neither core was full in the split layout, and
//! the run measured round trips) runs on CPU 0 and drives each for a few seconds; the servers
//! are measured in a random order per round, 5 rounds (3 with `--quick`), and the medians are
//! reported, with each ratio's lowest and highest round: netdemux against the baseline's round
//! of the same index, measured a few seconds apart, so that the machine's drift in speed
//! between rounds moves both sides of a pair alike.
//! Each round records the CPUs' busy share and, from it, the server core's CPU time per request;
//! netdemux rounds also its ring drop and TCP counters; the record holds both veth ends' offload
//! settings. 1 queue; the netdemux worker waits in poll(2).
//!
//! Two layouts, because veth decides where a side's receive path runs:
//! - **shared** (veth's default, no NAPI): a frame is received in its sender's softirq, so the
//!   server's receive path (the kernel's TCP input, or netdemux's XDP program and copy) runs on
//!   the client's core, and the client's on the server's;
//! - **split** (GRO on and TSO off on both ends, so that veth hands every frame to the receiving
//!   end's NAPI; threaded, the client end's thread on CPU 0, the server end's on CPU 1): each
//!   core carries its own side, CPU 0 wrk and the client's kernel TCP, CPU 1 the server with all
//!   of its receive path. The goal's ratios are this layout's.
//!
//! Where the client's core is the fuller one, requests/s measure the client; the servers are
//! compared by requests per second of the server core's time (requests/s over its busy share),
//! and the baseline is the kernel server with the most of them.
//!
//! Output: a markdown table and `bench/results/tcp-latest.json`. Usage: tcp [--quick]  (root)

use std::{fs, path::PathBuf, process::Command, thread, time::Duration};

mod support;

use anyhow::{Context as _, Result, bail};
use netdemux::{
    services::http,
    test_rng::Xorshift64,
    testbed::{Daemon, Testbed, in_netns},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BIN: &str = env!("CARGO_BIN_EXE_netdemux");
const ADDR: &str = "198.18.0.2:8080";
/// wrk's connections (one thread).
const CONNECTIONS: u32 = 64;
/// Rounds per layout (each measures every server once).
const ROUNDS: usize = 5;
const QUICK_ROUNDS: usize = 3;

/// One measured round: (requests/s, p50 µs, p99 µs) and what else was recorded.
type Round = ((f64, f64, f64), serde_json::Value);
/// A layout's rounds by server, and the order of each round.
type Rounds = (Vec<Vec<Round>>, Vec<Vec<&'static str>>);

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

/// Where each side's receive path runs (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Shared,
    Split,
}

impl Layout {
    fn key(self) -> &'static str {
        match self {
            Layout::Shared => "shared",
            Layout::Split => "split",
        }
    }

    /// Sets both veth ends up for this layout.
    fn set_up(self, tb: &Testbed) -> Result<()> {
        // veth hands a frame to its peer's NAPI only when the peer has one (GRO on, or an XDP
        // program) and the sending end does not segment TCP (no TSO: veth_xmit's "eligible for
        // GRO" check); otherwise the frame is received in the sender's softirq. Attaching an
        // XDP program turns TSO off on the peer by itself, so without this the two kinds of
        // server would not be received in the same place.
        let on = if self == Layout::Split { "on" } else { "off" };
        let off = if self == Layout::Split { "off" } else { "on" };
        for (ns, dev) in [(&tb.ns_a, &tb.veth_a), (&tb.ns_b, &tb.veth_b)] {
            netdemux::testbed::must(
                "ip",
                &[
                    "netns", "exec", ns, "ethtool", "-K", dev, "gro", on, "tso", off,
                ],
            )?;
        }
        self.pin(tb)
    }

    /// Pins the NAPI threads (again: a server's start may have re-created them).
    fn pin(self, tb: &Testbed) -> Result<()> {
        if self == Layout::Split {
            support::napi_thread(&tb.ns_a, &tb.veth_a, 0)?;
            support::napi_thread(&tb.ns_b, &tb.veth_b, 1)?;
        }
        Ok(())
    }
}

/// wrk, with the CPUs' busy share over the run and the server core's CPU time per request.
fn measured(tb: &Testbed, layout: Layout, seconds: u32) -> Result<Round> {
    layout.pin(tb)?;
    let before = netdemux::testbed::cpu_times();
    let r = wrk(tb, seconds)?;
    let busy = netdemux::testbed::cpu_busy(&before, &netdemux::testbed::cpu_times());
    let server_busy = busy.get(1).copied().unwrap_or(0.0);
    Ok((
        r,
        serde_json::json!({
            "cpu_busy": busy,
            "server_cpu_us_per_request": server_busy / r.0.max(1.0) * 1e6,
        }),
    ))
}

/// One wrk run: (requests/s, p50 µs, p99 µs).
fn wrk(tb: &Testbed, seconds: u32) -> Result<(f64, f64, f64)> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &tb.ns_a, "taskset", "-c", "0", "wrk", "-t1",
        ])
        .arg(format!("-c{CONNECTIONS}"))
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

/// A kernel responder in namespace b, answering like `--http`: tokio on one thread, or on
/// `threads` worker threads, all on CPU 1.
fn kernel_server(
    tb: &Testbed,
    threads: usize,
) -> (tokio::sync::oneshot::Sender<()>, thread::JoinHandle<()>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = in_netns(&tb.ns_b, move || {
        support::pin(1);
        let rt = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .on_thread_start(|| support::pin(1))
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

/// The median, 0 for no values (a server a partial run skipped).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The median of one recorded figure over rounds.
fn median_of(v: &[Round], key: &str) -> f64 {
    let mut c: Vec<f64> = v.iter().filter_map(|(_, e)| e[key].as_f64()).collect();
    median(&mut c)
}

const SERVERS: [&str; 4] = ["tokio_1", "tokio_mt", "nginx", "netdemux"];

/// `rounds` rounds of every server in `layout`, in a random order per round:
/// the rounds by server, and the orders.
fn rounds_in(
    tb: &Testbed,
    layout: Layout,
    (rounds, seconds): (usize, u32),
    random: &mut Xorshift64,
    only: Option<&str>,
) -> Result<Rounds> {
    layout.set_up(tb)?;
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); SERVERS.len()];
    let mut orders = Vec::new();
    for _ in 0..rounds {
        let mut order: Vec<usize> = (0..SERVERS.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, random.below(i + 1));
        }
        orders.push(order.iter().map(|&i| SERVERS[i]).collect::<Vec<_>>());
        for i in order {
            if only.is_some_and(|o| !o.split(',').any(|k| k == SERVERS[i])) {
                continue;
            }
            let round = match SERVERS[i] {
                "tokio_1" | "tokio_mt" => {
                    let threads = if SERVERS[i] == "tokio_1" { 1 } else { 2 };
                    let (stop, h) = kernel_server(tb, threads);
                    let k = measured(tb, layout, seconds);
                    let _ = stop.send(());
                    let _ = h.join();
                    k?
                }
                "nginx" => {
                    let n = Nginx::start(tb)?;
                    let k = measured(tb, layout, seconds);
                    drop(n);
                    k?
                }
                _ => {
                    let d = Daemon::start(tb, &["--http", ADDR, "--cpu", "1"])?;
                    thread::sleep(Duration::from_millis(100));
                    let o = measured(tb, layout, seconds);
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
    Ok((results, orders))
}

/// One layout's summary: every server's medians, the best kernel server, the ratios.
fn summary(
    layout: Layout,
    mut results: Vec<Vec<Round>>,
    orders: Vec<Vec<&str>>,
) -> serde_json::Value {
    let ours = results.pop().unwrap_or_default();
    let col = |v: &[Round], i: usize| {
        let mut c: Vec<f64> = v.iter().map(|(r, _)| [r.0, r.1, r.2][i]).collect();
        median(&mut c)
    };
    // The baseline is the most efficient kernel server of the run: the most requests per second
    // of its core's time (where the client's core is the full one, requests/s measure the
    // client, not the server).
    // Requests per second of the server core's time: the reciprocal of its CPU time per request
    // (the median's reciprocal is the reciprocals' median: an odd number of rounds).
    let capacity = |v: &[Round]| {
        let us = median_of(v, "server_cpu_us_per_request");
        if us > 0.0 { 1e6 / us } else { 0.0 }
    };
    let best = (0..results.len())
        .max_by(|&a, &b| capacity(&results[a]).total_cmp(&capacity(&results[b])))
        .unwrap_or(0);
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
    let side = |v: &[Round]| {
        let busy = |cpu: usize| {
            let mut c: Vec<f64> = v
                .iter()
                .filter_map(|(_, e)| e["cpu_busy"][cpu].as_f64())
                .collect();
            median(&mut c)
        };
        serde_json::json!({
            "requests_per_s": col(v, 0), "p50_us": col(v, 1), "p99_us": col(v, 2),
            "server_cpu_us_per_request": median_of(v, "server_cpu_us_per_request"),
            "requests_per_server_core_s": capacity(v),
            "client_core_busy": busy(0), "server_core_busy": busy(1),
            "rounds": rounds(v),
        })
    };
    let mut kernels = serde_json::Map::new();
    for (i, name) in SERVERS[..SERVERS.len() - 1].iter().enumerate() {
        kernels.insert(name.to_string(), side(&results[i]));
    }
    let (kernel, netdemux) = (side(&results[best]), side(&ours));
    let r =
        |k: &str| netdemux[k].as_f64().unwrap_or(0.0) / kernel[k].as_f64().unwrap_or(1.0).max(1e-9);
    let ratios = serde_json::json!({
        "tcp_reqs_vs_kernel": r("requests_per_s"),
        "tcp_p50_vs_kernel": r("p50_us"),
        "tcp_p99_vs_kernel": r("p99_us"),
        "tcp_capacity_vs_kernel": r("requests_per_server_core_s"),
    });
    // Each ratio round by round: netdemux's round against the baseline's round of the same index
    // (the rounds are in step: a failed round ends the run).
    let paired = |of: fn(&Round) -> f64| -> Vec<f64> {
        ours.iter()
            .zip(&results[best])
            .map(|(o, k)| of(o) / of(k))
            .filter(|r| r.is_finite())
            .collect()
    };
    let capacity_of: fn(&Round) -> f64 =
        |(_, e)| 1e6 / e["server_cpu_us_per_request"].as_f64().unwrap_or(f64::NAN);
    let round_ratios = serde_json::json!({
        "tcp_reqs_vs_kernel": paired(|((rps, _, _), _)| *rps),
        "tcp_p50_vs_kernel": paired(|((_, p50, _), _)| *p50),
        "tcp_p99_vs_kernel": paired(|((_, _, p99), _)| *p99),
        "tcp_capacity_vs_kernel": paired(capacity_of),
    });
    serde_json::json!({
        "layout": layout.key(),
        "orders": orders,
        "kernel_best": SERVERS[best],
        "kernel_servers": kernels,
        "kernel": kernel,
        "netdemux": netdemux,
        "ratios": ratios,
        "round_ratios": round_ratios,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only SERVER,SERVER` and `--layout shared|split` narrow a run (for profiling; no
    // results file then).
    let (only, only_layout) = (
        support::flag_value(&args, "--only"),
        support::flag_value(&args, "--layout"),
    );
    let (rounds, seconds) = if quick {
        (QUICK_ROUNDS, 2)
    } else {
        (ROUNDS, 5)
    };
    if !nix::unistd::geteuid().is_root() {
        bail!("the TCP benchmark creates namespaces: run it as root");
    }
    let tb = Testbed::new("ndh", 1, BIN)?;
    let mut random = support::clock_seeded();
    let mut layouts = serde_json::Map::new();
    let mut settings = serde_json::Map::new();
    for layout in [Layout::Shared, Layout::Split] {
        if only_layout.as_deref().is_some_and(|l| l != layout.key()) {
            continue;
        }
        let (results, orders) =
            rounds_in(&tb, layout, (rounds, seconds), &mut random, only.as_deref())?;
        settings.insert(layout.key().into(), offloads(&tb));
        layouts.insert(layout.key().into(), summary(layout, results, orders));
    }
    drop(tb);
    println!(
        "HTTP/1.1 keep-alive GET, wrk -t1 -c{CONNECTIONS} on CPU 0 in the peer namespace, servers on CPU 1, medians of {rounds} × {seconds} s\n"
    );
    for (name, l) in &layouts {
        println!("layout {name}: best kernel server {}\n", l["kernel_best"]);
        println!(
            "| responder | requests/s | p50 (µs) | p99 (µs) | server core µs/request | requests per server-core s | client core busy | server core busy |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let row = |label: &str, v: &serde_json::Value| {
            println!(
                "| {label} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} |",
                v["requests_per_s"].as_f64().unwrap_or(0.0),
                v["p50_us"].as_f64().unwrap_or(0.0),
                v["p99_us"].as_f64().unwrap_or(0.0),
                v["server_cpu_us_per_request"].as_f64().unwrap_or(0.0),
                v["requests_per_server_core_s"].as_f64().unwrap_or(0.0),
                v["client_core_busy"].as_f64().unwrap_or(0.0),
                v["server_core_busy"].as_f64().unwrap_or(0.0),
            )
        };
        for (k, v) in l["kernel_servers"].as_object().into_iter().flatten() {
            row(&format!("kernel TCP, {k}"), v);
        }
        row(
            "netdemux --http (userspace TCP, AF_XDP copy mode)",
            &l["netdemux"],
        );
        if l["kernel"]["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0
            && l["netdemux"]["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0
        {
            println!("\nratios: {}", l["ratios"]);
            println!("ratios round by round: {}\n", l["round_ratios"]);
        } else {
            println!("\n(no ratios: netdemux or every kernel server was left out)\n");
        }
    }
    if only.is_some() || only_layout.is_some() {
        println!("(a partial run: no results file)");
        return Ok(());
    }
    let mut ratios = layouts["split"]["ratios"].clone();
    for k in ["tcp_reqs_vs_kernel", "tcp_capacity_vs_kernel"] {
        ratios[format!("{k}_shared")] = layouts["shared"]["ratios"][k].clone();
    }
    let out = serde_json::json!({
        "benchmark": "http_keepalive",
        "quick": quick,
        "provenance": netdemux::testbed::provenance(quick),
        "seconds_each": seconds,
        "rounds": rounds,
        "connections": CONNECTIONS,
        "offloads": settings,
        "pinning": "wrk on CPU 0; every server (tokio's threads, nginx, netdemux's worker) on CPU 1; in the split layout the client end's NAPI thread on CPU 0, the server end's on CPU 1",
        "layouts": layouts,
        "ratios": ratios,
    });
    netdemux::testbed::write_results("tcp", &out)?;
    Ok(())
}
