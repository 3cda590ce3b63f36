//! `cargo xtask bench` ends here: the results of the xdp, udp, echo and tcp benchmarks (their
//! `bench/results/*-latest.json`) merged into one dated record, `bench/results/<UTC date>.json`,
//! copied to `bench/results/latest.json`, with the headline ratios in one `"ratios"` object and a
//! markdown table, `bench/results/latest.md`, and a PNG plot, `bench/results/latest.png`
//! (Mpps per receiver in both layouts; echo latency percentiles). A ratio whose benchmark has not
//! run is `null`. Usage: report
use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result, anyhow};
use plotters::prelude::*;
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
    let (xdp, udp, echo, tcp) = (
        read(&dir, "xdp-latest.json"),
        read(&dir, "udp-latest.json"),
        read(&dir, "echo-latest.json"),
        read(&dir, "tcp-latest.json"),
    );
    let proxy = read(&dir, "proxy-latest.json");
    let proxy_ratio = |k: &str| {
        proxy
            .as_ref()
            .map(|p| p["ratios"][k].clone())
            .unwrap_or(Value::Null)
    };
    let tcp_ratio = |k: &str| {
        tcp.as_ref()
            .map(|t| t["ratios"][k].clone())
            .unwrap_or(Value::Null)
    };
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
        "tcp_reqs_vs_kernel": tcp_ratio("tcp_reqs_vs_kernel"),
        "tcp_p50_vs_kernel": tcp_ratio("tcp_p50_vs_kernel"),
        "tcp_p99_vs_kernel": tcp_ratio("tcp_p99_vs_kernel"),
        "program_hit_vs_empty": xdp.as_ref().map(|x| x["ratios"]["program_hit_vs_empty"].clone()).unwrap_or(Value::Null),
        "echo_p50_vs_kernel": echo.as_ref().map(|e| e["ratios"]["echo_p50_vs_kernel"].clone()).unwrap_or(Value::Null),
        "echo_p99_vs_kernel": echo.as_ref().map(|e| e["ratios"]["echo_p99_vs_kernel"].clone()).unwrap_or(Value::Null),
        "pinned_layout": udp.as_ref().map(|u| u["ratios"]["pinned"].clone()).unwrap_or(Value::Null),
        "proxy_reqs_vs_kernel": proxy_ratio("proxy_reqs_vs_kernel"),
        "proxy_p99_vs_kernel": proxy_ratio("proxy_p99_vs_kernel"),
        "proxy_bulk_vs_kernel": proxy_ratio("proxy_bulk_vs_kernel"),
    });
    let date = utc_date();
    let record = json!({
        "date": date, "ratios": ratios, "xdp": xdp, "udp": udp, "echo": echo, "tcp": tcp,
        "proxy": proxy,
    });
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
            "HTTP keep-alive requests/s / kernel (tokio)",
            "≥ 1.5",
            &ratios["tcp_reqs_vs_kernel"],
        ),
        (
            "HTTP request latency p99 / kernel (tokio)",
            "≤ 1",
            &ratios["tcp_p99_vs_kernel"],
        ),
        (
            "TCP proxy requests/s / kernel proxy (tokio)",
            "≥ 1",
            &ratios["proxy_reqs_vs_kernel"],
        ),
        (
            "TCP proxy request latency p99 / kernel proxy (tokio)",
            "≤ 1",
            &ratios["proxy_p99_vs_kernel"],
        ),
        (
            "TCP proxy bulk throughput / kernel proxy (tokio)",
            "≥ 1",
            &ratios["proxy_bulk_vs_kernel"],
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
    let png = dir.join("latest.png");
    match plot(&png, &date, udp.as_ref(), echo.as_ref()) {
        Ok(()) => {
            println!("\nresults: bench/results/{date}.json, latest.json, latest.md, latest.png")
        }
        Err(e) => {
            println!("\nresults: bench/results/{date}.json, latest.json, latest.md");
            eprintln!("no plot: {e:#}");
        }
    }
    Ok(())
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

/// Left: received Mpps per receiver, pinned and busy-poll layouts side by side. Right: echo round
/// trip p50/p99, kernel and netdemux.
fn plot(
    path: &std::path::Path,
    date: &str,
    udp: Option<&Value>,
    echo: Option<&Value>,
) -> Result<()> {
    register_font()?;
    let draw_err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let (left, right) = root.split_horizontally(800);
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
                    (k.clone(), [m("pinned"), m("busy_poll")])
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
