//! `cargo xtask bench` ends here: the results of one run of the xdp, udp, sweep, echo, tcp and proxy
//! benchmarks (their `bench/results/*-latest.json`, each with its provenance) merged into one
//! record, `bench/results/<UTC timestamp>.json` (never overwritten), copied to
//! `bench/results/latest.json`, with the headline ratios in one `"ratios"` object; every table in
//! `bench/results/latest.md`, which is also written into README.md between its markers (a test
//! checks they match); and a PNG plot, `bench/results/latest.png`.
//!
//! Only results of one run are merged: the run `cargo xtask bench` names in
//! `NETDEMUX_BENCH_RUN` (or, run by hand, the newest run among the files). A file from another
//! run is left out and said so (its ratios are `null`), and results of one run that disagree on
//! commit, CPU or kernel are refused. Usage: report
use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use plotters::prelude::*;
use serde_json::{Value, json};

mod support;

use support::stats::Fit;

fn read(dir: &std::path::Path, name: &str) -> Option<Value> {
    fs::read_to_string(dir.join(name))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// The README's generated part lies between these lines.
const BEGIN: &str = "<!-- bench/results/latest.md: written by `cargo xtask bench`; do not edit -->";
const END: &str = "<!-- end of bench/results/latest.md -->";

const BENCHES: [&str; 6] = ["xdp", "udp", "sweep", "echo", "tcp", "proxy"];

fn main() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    let files: Vec<(&str, Option<Value>)> = BENCHES
        .iter()
        .map(|b| (*b, read(&dir, &format!("{b}-latest.json"))))
        .collect();
    let run_of = |v: &Value| v["provenance"]["run"].as_str().map(str::to_string);
    let run = match std::env::var(netdemux::testbed::BENCH_RUN_VAR) {
        Ok(r) => r,
        Err(_) => files
            .iter()
            .filter_map(|(_, v)| v.as_ref().and_then(run_of))
            .max()
            .ok_or_else(|| {
                anyhow!(
                    "no benchmark results with a provenance in {}",
                    dir.display()
                )
            })?,
    };
    let mut merged = serde_json::Map::new();
    let mut left_out = Vec::new();
    let mut first: Option<Value> = None;
    for (name, v) in files {
        let Some(v) = v else {
            merged.insert(name.into(), Value::Null);
            continue;
        };
        if run_of(&v).as_deref() != Some(run.as_str()) {
            println!(
                "left out: {name}-latest.json is from run {}, not this run ({run})",
                run_of(&v).unwrap_or_else(|| "unknown (no provenance)".into())
            );
            left_out.push(json!({"benchmark": name, "run": run_of(&v)}));
            merged.insert(name.into(), Value::Null);
            continue;
        }
        let p = &v["provenance"];
        if let Some(f) = &first {
            for k in ["commit", "dirty", "cpu", "cores", "kernel"] {
                if f[k] != p[k] {
                    bail!(
                        "results of run {run} disagree on {k} ({} vs {} in {name}): refusing to merge them",
                        f[k],
                        p[k]
                    );
                }
            }
        } else {
            first = Some(p.clone());
        }
        merged.insert(name.into(), v);
    }
    let Some(provenance) = first else {
        bail!("no results of run {run} in {}", dir.display());
    };
    let get = |b: &str| merged.get(b).filter(|v| !v.is_null());
    let (xdp, udp, sweep, echo, tcp, proxy) = (
        get("xdp"),
        get("udp"),
        get("sweep"),
        get("echo"),
        get("tcp"),
        get("proxy"),
    );
    let ratio = |v: Option<&Value>, path: &[&str]| {
        let mut x = v.cloned().unwrap_or(Value::Null);
        for k in path {
            x = x[*k].clone();
        }
        x
    };
    // Headline ratios: the udp ones from the busy-poll layout (the one to run netdemux in), the
    // other layout's beside them.
    let mut ratios = json!({
        "pinned_layout": ratio(udp, &["ratios", "pinned"]),
        "program_hit_vs_empty": ratio(xdp, &["ratios", "program_hit_vs_empty"]),
        "program_hit_minus_empty_ns": ratio(xdp, &["ratios", "program_hit_minus_empty_ns"]),
        "program_hit_minus_empty_all_rounds_ns": ratio(xdp, &["ratios", "program_hit_minus_empty_all_rounds_ns"]),
        "program_shared_hit_minus_empty_ns": ratio(xdp, &["ratios", "program_shared_hit_minus_empty_ns"]),
        "program_hashed_hit_minus_empty_ns": ratio(xdp, &["ratios", "program_hashed_hit_minus_empty_ns"]),
        "program_hit_minus_redirect_all_ns": ratio(xdp, &["ratios", "program_hit_minus_redirect_all_ns"]),
        "hit_growth_1_to_max": ratio(xdp, &["ratios", "hit_growth_1_to_max"]),
        "program_live_hit_minus_redirect_all_ns": ratio(udp, &["program_live_ns", "hit_minus_redirect_all"]),
        "program_live_parse_minus_redirect_all_ns": ratio(udp, &["program_live_ns", "parse_minus_redirect_all"]),
        "program_live_miss_minus_pass_ns": ratio(udp, &["program_live_ns", "miss_minus_pass"]),
        "echo_p50_vs_kernel": ratio(echo, &["ratios", "echo_p50_vs_kernel"]),
        "echo_p99_vs_kernel": ratio(echo, &["ratios", "echo_p99_vs_kernel"]),
        "echo_p50_vs_kernel_spinning": ratio(echo, &["ratios", "echo_p50_vs_kernel_spinning"]),
        "echo_p99_vs_kernel_spinning": ratio(echo, &["ratios", "echo_p99_vs_kernel_spinning"]),
        "bare_reflector_p50_vs_kernel": ratio(echo, &["ratios", "bare_reflector_p50_vs_kernel"]),
        "bare_reflector_p99_vs_kernel": ratio(echo, &["ratios", "bare_reflector_p99_vs_kernel"]),
        "bare_reflector_p50_vs_kernel_spinning": ratio(echo, &["ratios", "bare_reflector_p50_vs_kernel_spinning"]),
        "bare_reflector_p99_vs_kernel_spinning": ratio(echo, &["ratios", "bare_reflector_p99_vs_kernel_spinning"]),
        "tcp_reqs_vs_kernel": ratio(tcp, &["ratios", "tcp_reqs_vs_kernel"]),
        "tcp_p50_vs_kernel": ratio(tcp, &["ratios", "tcp_p50_vs_kernel"]),
        "tcp_p99_vs_kernel": ratio(tcp, &["ratios", "tcp_p99_vs_kernel"]),
        "tcp_capacity_vs_kernel": ratio(tcp, &["ratios", "tcp_capacity_vs_kernel"]),
        "tcp_reqs_vs_kernel_shared": ratio(tcp, &["ratios", "tcp_reqs_vs_kernel_shared"]),
        "tcp_capacity_vs_kernel_shared": ratio(tcp, &["ratios", "tcp_capacity_vs_kernel_shared"]),
        "proxy_reqs_vs_kernel": ratio(proxy, &["ratios", "proxy_reqs_vs_kernel"]),
        "proxy_p99_vs_kernel": ratio(proxy, &["ratios", "proxy_p99_vs_kernel"]),
        "proxy_bulk_vs_kernel": ratio(proxy, &["ratios", "proxy_bulk_vs_kernel"]),
        "queues_2_vs_1_received": ratio(sweep, &["queues", "ratios", "received"]),
        "queues_2_vs_1_receiving_core_ns": ratio(sweep, &["queues", "ratios", "receiving_core_ns_per_frame"]),
    });
    // Every udp ratio the benchmark declares, under its own name.
    if let Some(o) = ratios.as_object_mut() {
        for &(name, _, _) in &support::UDP_RATIOS {
            o.insert(name.to_string(), ratio(udp, &["ratios", "busy_poll", name]));
        }
    }
    let stamp = provenance["timestamp"]
        .as_str()
        .unwrap_or("unknown")
        .replace(':', "-");
    // How far each udp ratio moved between the repetitions of the busy-poll layout.
    let udp_spreads: serde_json::Map<String, Value> = support::UDP_RATIOS
        .iter()
        .filter_map(|&(name, _, _)| Some((name.to_string(), json!(udp_spread(udp?, name)?))))
        .collect();
    // How far each HTTP ratio moved between its rounds (netdemux against the baseline's round of
    // the same index).
    let http_spreads: serde_json::Map<String, Value> = HTTP_SPREADS
        .iter()
        .filter_map(|&(name, layout, key)| {
            let per_round = tcp?["layouts"][layout]["round_ratios"][key].as_array()?;
            let spread = support::lowest_highest(per_round.iter().filter_map(Value::as_f64))?;
            Some((name.to_string(), json!(spread)))
        })
        .collect();
    // Each udp ratio at equal speed and placement, and how much the placement moves its two
    // sides' rates (see `udp_at_equal`).
    let fits: Vec<(&str, Fit)> = support::UDP_RATIOS
        .iter()
        .filter_map(|&(name, _, _)| Some((name, udp_at_equal(udp?, name)?)))
        .collect();
    let at_equal: serde_json::Map<String, Value> = fits
        .iter()
        .map(|(n, f)| {
            (
                n.to_string(),
                json!({"ratio": f.ratio, "interval_95": f.interval, "covariates": f.covariates(),
                       "per_probe_ns": f.per_probe_ns}),
            )
        })
        .collect();
    let near_gain: serde_json::Map<String, Value> = fits
        .iter()
        .map(|(n, f)| (n.to_string(), json!(f.near_vs_far)))
        .collect();
    // How far the sweep's 1-against-2-queue ratios moved between its rounds.
    let sweep_spreads = json!({
        "queues_2_vs_1_received": ratio(sweep, &["queues", "spreads", "received"]),
        "queues_2_vs_1_receiving_core_ns": ratio(sweep, &["queues", "spreads", "receiving_core_ns_per_frame"]),
    });
    let mut record = json!({
        "run": run, "provenance": provenance, "ratios": ratios, "udp_spreads": udp_spreads,
        "http_spreads": http_spreads, "sweep_spreads": sweep_spreads,
        "udp_at_equal_speed_and_placement": at_equal, "udp_near_vs_far": near_gain,
        "left_out": left_out,
    });
    if let Some(o) = record.as_object_mut() {
        o.extend(merged.clone());
    }
    let text = serde_json::to_string_pretty(&record)? + "\n";
    // A dated record is never overwritten.
    let mut dated = dir.join(format!("{stamp}.json"));
    let mut n = 2;
    while dated.exists() {
        dated = dir.join(format!("{stamp}-{n}.json"));
        n += 1;
    }
    fs::write(&dated, &text).context("write the dated results")?;
    fs::write(dir.join("latest.json"), &text).context("write latest.json")?;

    let md = markdown(&run, &record, [xdp, udp, sweep, echo, tcp, proxy]);
    fs::write(dir.join("latest.md"), &md).context("write latest.md")?;
    embed_in_readme(&dir.join("../../README.md"), &md)?;
    print!("{md}");
    let png = dir.join("latest.png");
    let date = provenance["timestamp"]
        .as_str()
        .unwrap_or("")
        .get(..10)
        .unwrap_or("");
    match plot(&png, date, udp, echo, sweep) {
        Ok(()) => println!(
            "\nresults: {}, latest.json, latest.md (and README.md), latest.png",
            dated.display()
        ),
        Err(e) => {
            println!(
                "\nresults: {}, latest.json, latest.md (and README.md)",
                dated.display()
            );
            eprintln!("no plot: {e:#}");
        }
    }
    Ok(())
}

/// Replaces the README's generated part with `md`.
fn embed_in_readme(path: &std::path::Path, md: &str) -> Result<()> {
    let readme = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
        bail!(
            "{} has no generated part (its markers are missing)",
            path.display()
        );
    };
    let out = format!("{}{BEGIN}\n{md}{}", &readme[..a], &readme[b..]);
    fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

/// The HTTP ratios whose rounds are shown: (the report's name, the layout, the tcp bench's name).
const HTTP_SPREADS: [(&str, &str, &str); 5] = [
    ("tcp_capacity_vs_kernel", "split", "tcp_capacity_vs_kernel"),
    ("tcp_reqs_vs_kernel", "split", "tcp_reqs_vs_kernel"),
    ("tcp_p99_vs_kernel", "split", "tcp_p99_vs_kernel"),
    (
        "tcp_capacity_vs_kernel_shared",
        "shared",
        "tcp_capacity_vs_kernel",
    ),
    ("tcp_reqs_vs_kernel_shared", "shared", "tcp_reqs_vs_kernel"),
];

/// The lowest and highest ratio of one repetition for the `udp` ratio `name` in the busy-poll
/// layout (a repetition measures every receiver once, interleaved, so its two sides pair up).
fn udp_spread(udp: &Value, name: &str) -> Option<[f64; 2]> {
    let &(_, a, b) = support::UDP_RATIOS.iter().find(|r| r.0 == name)?;
    let samples = |k: &str| udp["receivers"][k]["busy_poll"]["samples"].as_array();
    let (a, b) = (samples(a)?, samples(b)?);
    support::lowest_highest(
        a.iter()
            .zip(b)
            .filter_map(|(x, y)| Some(x["received_mpps"].as_f64()? / y["received_mpps"].as_f64()?)),
    )
}

/// The `udp` ratio `name` (busy-poll layout) at equal speed and placement
/// ([`support::stats::fit_at_equal`]: both sides' log rates fitted with one intercept each and
/// common slopes on the speed probe and the near share). `None` for results without the near
/// shares; results from before the speed probe are fitted on the placement alone.
fn udp_at_equal(udp: &Value, name: &str) -> Option<Fit> {
    let &(_, a, b) = support::UDP_RATIOS.iter().find(|r| r.0 == name)?;
    let samples = |k: &str| udp["receivers"][k]["busy_poll"]["samples"].as_array();
    support::stats::fit_at_equal(samples(a)?, samples(b)?)
}

/// The echo benchmark's closed- and open-loop tables of one mode (`m`, described by `mode`).
fn echo_tables(md: &mut String, m: &Value, mode: &str) {
    md.push_str(&format!(
        "\nUDP echo round trip, µs, {mode} ({} samples each; client on CPU 0, blocking in recv; echo on CPU 1):\n\n\
         | echo | p50 | p99 | p99.9 | max | p50 by round |\n|---|---:|---:|---:|---:|---|\n",
        m["samples_each"]
    ));
    for (name, key) in [
        ("kernel UDP socket", "kernel_us"),
        ("netdemux --udp-echo", "netdemux_us"),
        ("bare AF_XDP reflector (the floor)", "bare_reflector_us"),
    ] {
        let v = &m[key];
        if v.is_null() {
            continue;
        }
        let rounds = v["p50_by_round"]
            .as_array()
            .map(|r| r.iter().map(|x| num(x, 1)).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "—".into());
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {rounds} |\n",
            num(&v["p50"], 1),
            num(&v["p99"], 1),
            num(&v["p99_9"], 1),
            num(&v["max"], 1)
        ));
    }
    if let Some(loads) = m["open_loop"]["loads"].as_array() {
        md.push_str(&format!(
            "\nOpen loop, {mode} (a client on CPU 0 sends on a fixed schedule and times the answers), at shares of {} datagrams/s, what the slower echo answered with that client sending as fast as it can:\n\n\
             | load | echo | p50 µs | p99 µs | p99.9 µs | missing | counted lost on the way (the echo's own count, each namespace's socket buffers, each veth end) |\n|---:|---|---:|---:|---:|---:|---|\n",
            num(&m["open_loop"]["capacity_pps"], 0)
        ));
        for l in loads {
            for side in ["kernel", "netdemux"] {
                let v = &l[side];
                md.push_str(&format!(
                    "| {}% | {side} | {} | {} | {} | {} of {} | {} |\n",
                    num(&json!(l["share"].as_f64().unwrap_or(0.0) * 100.0), 0),
                    num(&v["p50_us"], 1),
                    num(&v["p99_us"], 1),
                    num(&v["p99_9_us"], 1),
                    v["missing"],
                    v["sent"],
                    support::counted_cell(v)
                ));
            }
        }
    }
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

/// The shares of a queue row's frames by queue, in its median round by received rate: "0.45 /
/// 0.55", or "1" for one queue.
fn queue_split(row: &Value) -> String {
    let mut rounds: Vec<&Value> = row["samples"].as_array().into_iter().flatten().collect();
    rounds.sort_by(|a, b| {
        let rate = |v: &Value| v["received_mpps"].as_f64().unwrap_or(0.0);
        rate(a).total_cmp(&rate(b))
    });
    let Some(median) = rounds.get(rounds.len() / 2) else {
        return "—".into();
    };
    let per: Vec<f64> = median["received_per_queue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    let total: f64 = per.iter().sum();
    if per.len() < 2 || total == 0.0 {
        return "1".into();
    }
    per.iter()
        .map(|q| format!("{:.2}", q / total))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Every table of the run, with its provenance: the run's record and each benchmark's results,
/// in [`BENCHES`] order.
fn markdown(run: &str, record: &Value, benches: [Option<&Value>; 6]) -> String {
    let [xdp, udp, sweep, echo, tcp, proxy] = benches;
    let p = &record["provenance"];
    let ratios = &record["ratios"];
    let mut md = format!(
        "Run {run}: commit {}{}, {} ({} cores), Linux {}{}.\n\n",
        p["commit"]
            .as_str()
            .map(|c| &c[..c.len().min(12)])
            .unwrap_or("unknown"),
        if p["dirty"].as_bool() == Some(false) {
            ""
        } else {
            " (with local changes)"
        },
        p["cpu"].as_str().unwrap_or("unknown CPU"),
        p["cores"],
        p["kernel"].as_str().unwrap_or("?"),
        if p["quick"].as_bool() == Some(true) {
            ", quick"
        } else {
            ""
        },
    );
    if let Some(l) = record["left_out"].as_array().filter(|l| !l.is_empty()) {
        let names: Vec<&str> = l.iter().filter_map(|x| x["benchmark"].as_str()).collect();
        md.push_str(&format!("Not in this run: {}.\n\n", names.join(", ")));
    }
    md.push_str(
        "| ratio | goal | measured (udp and HTTP: the lowest–highest repetition in brackets, HTTP's round by round) | udp: at equal speed and vCPU placement (95% interval) |\n|---|---|---:|---:|\n",
    );
    for (name, goal, key) in [
        (
            "AF_XDP sink / bare AF_XDP consumer (busy-poll)",
            "≥ 0.95",
            "sink_vs_bare_consumer",
        ),
        (
            "… of it the program: bare consumer behind the demux program / bare consumer",
            "—",
            "demux_program_tax",
        ),
        (
            "… of the program's part, reading the headers: bare consumer behind the demux \
             program's parsing alone / bare consumer",
            "—",
            "header_read_tax",
        ),
        (
            "… of the program's part, the lookup and counters: bare consumer behind the demux \
             program / behind its parsing alone",
            "—",
            "lookup_tax",
        ),
        (
            "… of it the queue worker: AF_XDP sink / bare consumer behind the demux program",
            "—",
            "queue_worker_tax",
        ),
        (
            "AF_XDP echo / bare AF_XDP reflector (busy-poll)",
            "≥ 0.95",
            "echo_vs_bare_reflector",
        ),
        ("AF_XDP sink / XDP_DROP (busy-poll)", "—", "hit_vs_drop"),
        (
            "AF_XDP sink / kernel recvmmsg (busy-poll)",
            "—",
            "stack_vs_kernel_udp",
        ),
        (
            "AF_XDP sink, 2 queues / 1 queue, received (one core receives both: the pinned \
             layout, the generator through a packet socket)",
            "—",
            "queues_2_vs_1_received",
        ),
        (
            "… the receiving core's time per frame, 2 queues / 1 queue",
            "—",
            "queues_2_vs_1_receiving_core_ns",
        ),
        (
            "miss tax: kernel behind netdemux / kernel alone (busy-poll)",
            "≥ 0.97",
            "miss_tax",
        ),
        (
            "miss tax: kernel behind netdemux / behind an XDP_PASS program (busy-poll)",
            "≥ 0.97",
            "miss_tax_vs_pass_program",
        ),
        (
            "program hit − empty program, ns (test_run, the rounds at full speed or all when too \
             few were: the xdp table says which; the only binding on its port)",
            "≤ 25",
            "program_hit_minus_empty_ns",
        ),
        (
            "… the same over all rounds, whatever the machine's speed",
            "—",
            "program_hit_minus_empty_all_rounds_ns",
        ),
        (
            "program hit − empty program, ns (test_run; a port two addresses share: the second lane)",
            "≤ 25",
            "program_shared_hit_minus_empty_ns",
        ),
        (
            "program hit − empty program, ns (test_run; a binding with no lane, five on its port: the hash lookup)",
            "—",
            "program_hashed_hit_minus_empty_ns",
        ),
        (
            "program hit − redirect-everything program, ns (test_run; what demultiplexing adds)",
            "—",
            "program_hit_minus_redirect_all_ns",
        ),
        (
            "program hit − redirect-everything program, ns (live, busy-poll; the kernel's BPF run-time stats)",
            "—",
            "program_live_hit_minus_redirect_all_ns",
        ),
        (
            "… of it reading the headers: parsing-alone program − redirect-everything program, ns (live)",
            "—",
            "program_live_parse_minus_redirect_all_ns",
        ),
        (
            "program miss − XDP_PASS program, ns (live, busy-poll, in front of a kernel socket)",
            "—",
            "program_live_miss_minus_pass_ns",
        ),
        (
            "program hit cost, 1 → most bindings (a binding with no lane: the hash lookup)",
            "≤ 1.15",
            "hit_growth_1_to_max",
        ),
        (
            "echo round trip p50 / kernel echo (both blocking)",
            "≤ 0.8",
            "echo_p50_vs_kernel",
        ),
        (
            "echo round trip p99 / kernel echo (both blocking)",
            "≤ 0.8",
            "echo_p99_vs_kernel",
        ),
        (
            "echo round trip p50 / kernel echo (both spinning)",
            "≤ 0.8",
            "echo_p50_vs_kernel_spinning",
        ),
        (
            "echo round trip p99 / kernel echo (both spinning)",
            "≤ 0.8",
            "echo_p99_vs_kernel_spinning",
        ),
        (
            "… the floor, a bare AF_XDP reflector: its round trip p50 / kernel echo (both blocking)",
            "—",
            "bare_reflector_p50_vs_kernel",
        ),
        (
            "… the floor, a bare AF_XDP reflector: its round trip p99 / kernel echo (both blocking)",
            "—",
            "bare_reflector_p99_vs_kernel",
        ),
        (
            "… the floor, a bare AF_XDP reflector: its round trip p50 / kernel echo (both spinning)",
            "—",
            "bare_reflector_p50_vs_kernel_spinning",
        ),
        (
            "… the floor, a bare AF_XDP reflector: its round trip p99 / kernel echo (both spinning)",
            "—",
            "bare_reflector_p99_vs_kernel_spinning",
        ),
        (
            "HTTP requests per server-core second / best kernel server's (split layout)",
            "≥ 1.5",
            "tcp_capacity_vs_kernel",
        ),
        (
            "HTTP requests/s / best kernel server (split layout; the client's core is the fuller one)",
            "—",
            "tcp_reqs_vs_kernel",
        ),
        (
            "HTTP p99 / best kernel server (split layout)",
            "≤ 1",
            "tcp_p99_vs_kernel",
        ),
        (
            "HTTP requests per server-core second / best kernel server's (veth's default layout)",
            "—",
            "tcp_capacity_vs_kernel_shared",
        ),
        (
            "HTTP requests/s / best kernel server (veth's default layout)",
            "—",
            "tcp_reqs_vs_kernel_shared",
        ),
        (
            "TCP proxy requests/s / kernel relay",
            "—",
            "proxy_reqs_vs_kernel",
        ),
        ("TCP proxy p99 / kernel relay", "—", "proxy_p99_vs_kernel"),
        ("TCP proxy bulk / kernel relay", "—", "proxy_bulk_vs_kernel"),
    ] {
        let spreads = [
            &record["udp_spreads"][key],
            &record["http_spreads"][key],
            &record["sweep_spreads"][key],
        ];
        let spread = match spreads.iter().find_map(|s| s.as_array()).map(Vec::as_slice) {
            Some([lo, hi]) => format!(" ({}–{})", num(lo, 2), num(hi, 2)),
            _ => String::new(),
        };
        let fit = &record["udp_at_equal_speed_and_placement"][key];
        let mut equal = match fit["interval_95"].as_array().map(Vec::as_slice) {
            Some([lo, hi]) => format!("{} ({}–{})", num(&fit["ratio"], 2), num(lo, 2), num(hi, 2)),
            _ => num(&fit["ratio"], 2),
        };
        // Say which covariates a fit left out (one that did not vary, or a run without the probe).
        if let Some(c) = fit["covariates"].as_array() {
            let has = |n: &str| c.iter().any(|x| x == n);
            equal += match (has("speed"), has("placement")) {
                (true, true) => "",
                (true, false) => ", speed only",
                (false, true) => ", placement only",
                (false, false) => ", geometric means",
            };
        }
        md.push_str(&format!(
            "| {name} | {goal} | {}{spread} | {equal} |\n",
            num(&ratios[key], 2)
        ));
    }
    if let Some(x) = xdp {
        md.push_str(
            "\nXDP program, BPF_PROG_TEST_RUN, ns per run (medians over interleaved rounds at the machine's full speed: \
             the rounds whose empty-program runs took at most 1.25× its 10th percentile, or all rounds when under a quarter did):\n\n\
             | bindings | full-speed rounds | empty | redirect-all | hit | hit, shared port | hit, no lane | miss | hit − empty | shared − empty | no lane − empty | miss − empty | hit − empty, all rounds |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in x["rows"].as_array().into_iter().flatten() {
            let sp = &r["speed"];
            let full = match (sp["full_speed_rounds"].as_u64(), sp["rounds"].as_u64()) {
                (Some(f), Some(n)) if sp["all_rounds_count"] == true => {
                    format!("{f}/{n} (all counted)")
                }
                (Some(f), Some(n)) => format!("{f}/{n}"),
                _ => "—".into(),
            };
            md.push_str(&format!(
                "| {} | {full} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r["bindings"],
                num(&r["empty_ns"], 1),
                num(&r["redirect_all_ns"], 1),
                num(&r["hit_ns"], 1),
                num(&r["hit_shared_ns"], 1),
                num(&r["hit_hashed_ns"], 1),
                num(&r["miss_ns"], 1),
                // The differences as the bench took them, within each round (the goals' figures
                // too), not the difference of the columns' medians.
                num(&r["hit_minus_empty_ns"], 1),
                num(&r["hit_shared_minus_empty_ns"], 1),
                num(&r["hit_hashed_minus_empty_ns"], 1),
                num(&r["miss_minus_empty_ns"], 1),
                num(&r["hit_minus_empty_all_rounds_ns"], 1),
            ));
        }
    }
    if let Some(u) = udp {
        md.push_str(
            "\nUDP receive, Mpps (offered → received, median; generator alone on CPU 0, receiver on CPU 1; in brackets the CPU time of both cores per frame received):\n\n\
             | receiver | pinned | busy-poll |\n|---|---:|---:|\n",
        );
        for (key, r) in u["receivers"].as_object().into_iter().flatten() {
            let cell = |l: &str| {
                format!(
                    "{} → {} ({} ns)",
                    num(&r[l]["offered_mpps"], 2),
                    num(&r[l]["received_mpps"], 2),
                    num(&r[l]["cpu_ns_per_frame"], 0)
                )
            };
            md.push_str(&format!(
                "| {key} | {} | {} |\n",
                cell("pinned"),
                cell("busy_poll")
            ));
        }
    }
    if let Some(times) = udp.and_then(|u| u["program_time"].as_object()) {
        md.push_str(
            "\nXDP program time on the live path (busy-poll layout; the kernel's BPF run-time stats, \
             which read the clock around every run — in every figure alike; median ns per run):\n\n\
             | receiver | program | ns per run |\n|---|---|---:|\n",
        );
        for (key, t) in times {
            md.push_str(&format!(
                "| {key} | {} | {} |\n",
                t["program"].as_str().unwrap_or("?"),
                num(&t["ns_per_run"], 1)
            ));
        }
    }
    if let Some(sw) = sweep {
        md.push_str(&format!(
            "\nLoad sweep (busy-poll layout, 1 queue), median of {}; each row checks offered = received + receiver drops + veth refusals in every repetition:\n\n\
             | receiver | frame B | flows | offered Mpps | received Mpps | Gbit/s | every frame accounted |\n|---|---:|---:|---:|---:|---:|---|\n",
            sw["repetitions"]
        ));
        for r in sw["rows"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r["receiver"].as_str().unwrap_or("?").replace('_', " "),
                r["frame_bytes"],
                r["flows"],
                num(&r["offered_mpps"], 2),
                num(&r["received_mpps"], 2),
                num(&r["received_gbit_s"], 2),
                if r["accounted"] == true { "yes" } else { "no" }
            ));
        }
        let mib = |k: &str| {
            num(
                &json!(sw["memory"][k].as_f64().unwrap_or(0.0) / 1048576.0),
                1,
            )
        };
        md.push_str(&format!(
            "\nA running sink daemon (one queue): resident {} MiB, UMEM {} MiB, pinned maps {} MiB (as the kernel charges them).\n",
            mib("rss_bytes"),
            mib("umem_bytes"),
            mib("map_bytes")
        ));
        if let Some(q) = sw["queues"].as_object() {
            md.push_str(&format!(
                "\n1 against 2 queues on the same CPUs (the sink; `gen --sender packet` on CPU 0, through the kernel's transmit path, which spreads the 64 flows over the queues; on CPU 1 the queues' NAPI threads and the sink's workers, in poll(2)), median of {}, the order alternating; each row checks offered = received + socket drops + veth refusals in every repetition:\n\n\
                 | queues | offered Mpps | received Mpps | received per queue (median round) | receiving core busy | receiving core ns per frame | every frame accounted |\n|---:|---:|---:|---|---:|---:|---|\n",
                q["repetitions"]
            ));
            for r in q["rows"].as_array().into_iter().flatten() {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    r["queues"],
                    num(&r["offered_mpps"], 3),
                    num(&r["received_mpps"], 3),
                    queue_split(r),
                    num(&r["receiving_core_busy"], 2),
                    num(&r["receiving_core_ns_per_frame"], 0),
                    if r["accounted"] == true { "yes" } else { "no" }
                ));
            }
        }
    }
    if let Some(e) = echo {
        let mode = |m: &str| e["modes"][m].as_str().unwrap_or(m).to_string();
        echo_tables(&mut md, e, &mode("blocking"));
        if !e["spinning"].is_null() {
            echo_tables(&mut md, &e["spinning"], &mode("spinning"));
        }
    }
    if let Some(t) = tcp {
        let row = |v: &Value| {
            format!(
                "{} | {} | {} | {} | {} | {} | {}",
                num(&v["requests_per_s"], 0),
                num(&v["p50_us"], 0),
                num(&v["p99_us"], 0),
                num(&v["server_cpu_us_per_request"], 2),
                num(&v["requests_per_server_core_s"], 0),
                num(&v["client_core_busy"], 2),
                num(&v["server_core_busy"], 2)
            )
        };
        md.push_str(&format!(
            "\nHTTP keep-alive (wrk -t1 -c{} on CPU 0, every server on CPU 1), median of {} rounds in random orders, in two layouts: *split*, each side's receive path on its own core (GRO on and TSO off on both veth ends, threaded NAPI, the client end's thread on CPU 0, the server end's on CPU 1; the goal's layout), and *shared*, veth's default (a side receives in its sender's softirq, so each side's receive path runs on the other's core). Where the client's core is the fuller one, requests/s measure the client; requests per second of the server core's time compare the servers. Ratios against the kernel server with the most requests per server-core second in the layout:\n",
            t["connections"], t["rounds"]
        ));
        for (name, l) in t["layouts"].as_object().into_iter().flatten().rev() {
            md.push_str(&format!(
                "\n{name} (best kernel server: {}):\n\n| responder | requests/s | p50 µs | p99 µs | server core µs per request | requests per server-core second | client core busy | server core busy |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
                l["kernel_best"].as_str().unwrap_or("?")
            ));
            for (server, v) in l["kernel_servers"].as_object().into_iter().flatten() {
                md.push_str(&format!("| kernel TCP, {server} | {} |\n", row(v)));
            }
            md.push_str(&format!("| netdemux --http | {} |\n", row(&l["netdemux"])));
        }
    }
    if let Some(x) = proxy {
        let row = |k: &str| {
            format!(
                "{} | {} | {} | {}",
                num(&x[k]["requests_per_s"], 0),
                num(&x[k]["p50_us"], 0),
                num(&x[k]["p99_us"], 0),
                num(&x[k]["bulk_gbps"], 2)
            )
        };
        md.push_str(&format!(
            "\nTCP proxy (wrk -t1 -c16 and a 256 MB transfer), median of {} rounds:\n\n| proxy | requests/s | p50 µs | p99 µs | bulk Gbit/s |\n|---|---:|---:|---:|---:|\n\
             | kernel relay, tokio (1 thread) | {} |\n| netdemux --tcp-proxy | {} |\n",
            x["rounds"], row("kernel"), row("netdemux")
        ));
    }
    md
}

/// The first of the usual sans-serif TrueType fonts present (Debian: fonts-dejavu-core, which
/// `cargo xtask setup` installs), registered for plotters' glyph renderer.
fn register_font() -> Result<()> {
    const FONTS: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let bytes = FONTS
        .iter()
        .find_map(|p| fs::read(p).ok())
        .ok_or_else(|| anyhow!("no TrueType font found (apt-get install fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("the font file is not a TrueType font"))
}

/// Top left: received Mpps per receiver, pinned and busy-poll layouts side by side. Top right:
/// echo round trip p50/p99, kernel and netdemux. Below: the sweep's received Mpps per frame
/// size, the sink beside the bare consumer.
fn plot(
    path: &std::path::Path,
    date: &str,
    udp: Option<&Value>,
    echo: Option<&Value>,
    sweep: Option<&Value>,
) -> Result<()> {
    register_font()?;
    let draw_err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let (top, bottom) = root.split_vertically(520);
    let (left, right) = top.split_horizontally(800);
    let layouts = [
        ("pinned", RGBColor(70, 110, 180)),
        ("busy_poll", RGBColor(230, 140, 40)),
    ];

    let rows: Vec<(String, [f64; 2])> = udp
        .and_then(|u| u["receivers"].as_object())
        .map(|rs| {
            rs.iter()
                .map(|(k, r)| {
                    let m = |l: &str| r[l]["received_mpps"].as_f64().unwrap_or(0.0);
                    // The short key (r0, r2, rbc, ...): the table beside names them.
                    let short = k.split('_').next().unwrap_or(k);
                    (short.to_string(), [m("pinned"), m("busy_poll")])
                })
                .collect()
        })
        .unwrap_or_default();
    bars(
        &left,
        &format!("UDP receive, Mpps ({date})"),
        &rows,
        &layouts,
    )
    .map_err(|e| draw_err(&e))?;

    let us = |side: &str, p: &str| echo.and_then(|e| e[side][p].as_f64()).unwrap_or(0.0);
    let lat = vec![
        (
            "p50".to_string(),
            [us("kernel_us", "p50"), us("netdemux_us", "p50")],
        ),
        (
            "p99".to_string(),
            [us("kernel_us", "p99"), us("netdemux_us", "p99")],
        ),
    ];
    bars(
        &right,
        "UDP echo round trip, µs",
        &lat,
        &[
            ("kernel", RGBColor(150, 150, 150)),
            ("netdemux", RGBColor(40, 150, 90)),
        ],
    )
    .map_err(|e| draw_err(&e))?;

    let rows = sweep.and_then(|s| s["rows"].as_array());
    let at = |receiver: &str, size: &Value| {
        rows.into_iter()
            .flatten()
            .find(|r| r["receiver"] == receiver && r["frame_bytes"] == *size && r["flows"] == 64)
            .and_then(|r| r["received_mpps"].as_f64())
            .unwrap_or(0.0)
    };
    let sizes: Vec<(String, [f64; 2])> = rows
        .into_iter()
        .flatten()
        .filter(|r| r["receiver"] == "sink" && r["flows"] == 64)
        .map(|r| {
            let size = &r["frame_bytes"];
            (
                format!("{size} B"),
                [at("sink", size), at("bare_consumer", size)],
            )
        })
        .collect();
    bars(
        &bottom,
        "Load sweep (busy-poll): received Mpps by frame size",
        &sizes,
        &[
            ("netdemux sink", RGBColor(40, 150, 90)),
            ("bare consumer", RGBColor(150, 150, 150)),
        ],
    )
    .map_err(|e| draw_err(&e))?;
    root.present().map_err(|e| draw_err(&e))
}

/// A grouped bar chart: one group per row, one bar per series, with a legend.
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    rows: &[(String, [f64; 2])],
    series: &[(&str, RGBColor); 2],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let top = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        * 1.15
        + 1e-9;
    let n = rows.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..n, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            match rows.get(i) {
                Some((name, _)) if (x - i as f64 - 0.5).abs() < 1e-6 => name.replace('_', " "),
                _ => String::new(),
            }
        })
        .x_label_style(("sans-serif", 12))
        .draw()?;
    for (s, (name, color)) in series.iter().enumerate() {
        let color = *color;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
                let x0 = i as f64 + 0.1 + 0.4 * s as f64;
                Rectangle::new([(x0, 0.0), (x0 + 0.4, v[s])], color.filled())
            }))?
            .label(name.replace('_', "-"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
}
