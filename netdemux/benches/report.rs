//! `cargo xtask bench` ends here: the results of the xdp, udp and echo benchmarks (their
//! `bench/results/*-latest.json`) merged into one dated record, `bench/results/<UTC date>.json`,
//! copied to `bench/results/latest.json`, with the headline ratios in one `"ratios"` object and a
//! markdown table, `bench/results/latest.md`. A ratio whose benchmark has not run is `null`
//! (`tcp_reqs_vs_kernel` until TCP exists). Usage: report
use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

fn read(dir: &std::path::Path, name: &str) -> Option<Value> {
    fs::read_to_string(dir.join(name))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// Today's UTC date as YYYY-MM-DD (civil from days, Howard Hinnant's algorithm).
fn utc_date() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn main() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    let (xdp, udp, echo) = (
        read(&dir, "xdp-latest.json"),
        read(&dir, "udp-latest.json"),
        read(&dir, "echo-latest.json"),
    );
    // Headline ratios: the udp ones from the busy-poll layout (the one to run netdemux in), the
    // other layout's beside them.
    let udp_ratio = |layout: &str, k: &str| {
        udp.as_ref()
            .map(|u| u["ratios"][layout][k].clone())
            .unwrap_or(Value::Null)
    };
    let ratios = json!({
        "hit_vs_drop": udp_ratio("busy_poll", "hit_vs_drop"),
        "stack_vs_kernel_udp": udp_ratio("busy_poll", "stack_vs_kernel_udp"),
        "miss_tax": udp_ratio("busy_poll", "miss_tax"),
        "tcp_reqs_vs_kernel": Value::Null,
        "program_hit_vs_empty": xdp.as_ref().map(|x| x["ratios"]["program_hit_vs_empty"].clone()).unwrap_or(Value::Null),
        "echo_p50_vs_kernel": echo.as_ref().map(|e| e["ratios"]["echo_p50_vs_kernel"].clone()).unwrap_or(Value::Null),
        "echo_p99_vs_kernel": echo.as_ref().map(|e| e["ratios"]["echo_p99_vs_kernel"].clone()).unwrap_or(Value::Null),
        "pinned_layout": udp.as_ref().map(|u| u["ratios"]["pinned"].clone()).unwrap_or(Value::Null),
    });
    let date = utc_date();
    let record = json!({ "date": date, "ratios": ratios, "xdp": xdp, "udp": udp, "echo": echo });
    let text = serde_json::to_string_pretty(&record)? + "\n";
    fs::write(dir.join(format!("{date}.json")), &text).context("write the dated results")?;
    fs::write(dir.join("latest.json"), &text).context("write latest.json")?;

    let f = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "—".into())
    };
    let mut md =
        format!("# netdemux benchmarks, {date}\n\n| ratio | goal | measured |\n|---|---|---:|\n");
    for (name, goal, value) in [
        (
            "AF_XDP sink / XDP_DROP (busy-poll layout)",
            "≥ 0.90",
            &ratios["hit_vs_drop"],
        ),
        (
            "AF_XDP sink / kernel recvmmsg (busy-poll layout)",
            "≥ 8",
            &ratios["stack_vs_kernel_udp"],
        ),
        (
            "AF_XDP sink / kernel recvmmsg (pinned layout)",
            "≥ 8",
            &ratios["pinned_layout"]["stack_vs_kernel_udp"],
        ),
        (
            "miss tax: kernel behind netdemux / kernel alone",
            "≥ 0.97",
            &ratios["miss_tax"],
        ),
        (
            "program hit / empty XDP program",
            "≤ 2.2",
            &ratios["program_hit_vs_empty"],
        ),
        (
            "echo round trip p50 / kernel echo",
            "≤ 1",
            &ratios["echo_p50_vs_kernel"],
        ),
        (
            "echo round trip p99 / kernel echo",
            "≤ 1",
            &ratios["echo_p99_vs_kernel"],
        ),
        (
            "TCP requests/s / kernel",
            "≥ 1.5",
            &ratios["tcp_reqs_vs_kernel"],
        ),
    ] {
        md.push_str(&format!("| {name} | {goal} | {} |\n", f(value)));
    }
    if let Some(u) = &udp {
        md.push_str("\n| receiver (Mpps) | pinned | busy-poll |\n|---|---:|---:|\n");
        if let Some(rows) = u["receivers"].as_object() {
            for (key, r) in rows {
                md.push_str(&format!(
                    "| {key} | {} | {} |\n",
                    f(&r["pinned"]["received_mpps"]),
                    f(&r["busy_poll"]["received_mpps"])
                ));
            }
        }
    }
    fs::write(dir.join("latest.md"), &md).context("write latest.md")?;
    print!("{md}");
    println!("\nresults: bench/results/{date}.json, latest.json, latest.md");
    Ok(())
}
