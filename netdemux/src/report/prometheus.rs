//! The counters in Prometheus text exposition format (version 0.0.4): what `stats --prometheus`
//! prints and what `run --metrics ADDR` serves on `/metrics`.

use std::fmt::Write as _;

use super::{
    DaemonReport, ProxyCounters, QueueCounters, QueueReport, ServiceCounters, WorkerTcpCounters,
};
use crate::{
    control::stats::{BindingCounters, Snapshot},
    counters::{CounterSet, Kind},
    stack::tcp,
};

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One counter family: HELP and TYPE lines, then its samples.
fn family(out: &mut String, name: &str, help: &str, samples: &[(String, u64)]) {
    typed_family(out, name, help, "counter", samples);
}

/// One family of type `kind` (counter or gauge).
fn typed_family(out: &mut String, name: &str, help: &str, kind: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Renders the counters of `snap` (and of the daemon, when one runs).
pub fn render(snap: &Snapshot, daemon: Option<&DaemonReport>) -> String {
    let iface = format!("iface=\"{}\"", label(&snap.iface));
    let v = &snap.verdicts;
    let mut out = String::new();
    family(
        &mut out,
        "netdemux_frames_seen_total",
        "Frames the XDP program ran on.",
        &[(iface.clone(), v.seen)],
    );
    family(
        &mut out,
        "netdemux_frames_total",
        "Frames by verdict: redirected to AF_XDP, matched but no socket on the queue (passed), or passed.",
        &[
            (format!("{iface},verdict=\"redirected\""), v.redirected),
            (
                format!("{iface},verdict=\"redirect_failed\""),
                v.redirect_failed,
            ),
            (format!("{iface},verdict=\"passed\""), v.passed),
        ],
    );
    let r = &v.pass_reasons;
    family(
        &mut out,
        "netdemux_passed_total",
        "Frames passed to the kernel, by reason.",
        &[
            ("not_ip", r.not_ip),
            ("not_tcp_udp", r.not_tcp_udp),
            ("no_binding", r.no_binding),
            ("fragment", r.fragment),
            ("malformed", r.malformed),
        ]
        .map(|(reason, n)| (format!("{iface},reason=\"{reason}\""), n)),
    );
    let binding =
        |b: &BindingCounters| format!("{iface},proto=\"{}\",addr=\"{}\"", b.proto, label(&b.addr));
    family(
        &mut out,
        "netdemux_binding_packets_total",
        "Frames that matched a binding.",
        &snap
            .bindings
            .iter()
            .map(|b| (binding(b), b.packets))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "netdemux_binding_bytes_total",
        "Bytes of the frames that matched a binding, Ethernet header included.",
        &snap
            .bindings
            .iter()
            .map(|b| (binding(b), b.bytes))
            .collect::<Vec<_>>(),
    );
    let Some(d) = daemon else {
        return out;
    };
    let queue = |q: &QueueReport| format!("{iface},queue=\"{}\",mode=\"{}\"", q.queue, q.mode);
    let queues: Vec<(String, QueueCounters)> =
        d.queues.iter().map(|q| (queue(q), q.counters)).collect();
    families(&mut out, "netdemux_queue", &queues);
    let with_tcp = || d.queues.iter().filter_map(|q| Some((queue(q), q.tcp?)));
    let tcp_worker: Vec<(String, WorkerTcpCounters)> =
        with_tcp().map(|(l, t)| (l, t.worker)).collect();
    let tcp_stack: Vec<(String, tcp::Counters)> = with_tcp().map(|(l, t)| (l, t.stack)).collect();
    families(&mut out, "netdemux_tcp", &tcp_worker);
    families(&mut out, "netdemux_tcp", &tcp_stack);
    let services: Vec<(String, ServiceCounters)> = d
        .services
        .iter()
        .map(|s| {
            let labels = format!(
                "{iface},kind=\"{}\",addr=\"{}\"",
                label(&s.kind),
                label(&s.addr)
            );
            (labels, s.counters)
        })
        .collect();
    families(&mut out, "netdemux_service", &services);
    if let Some(m) = d.tcp_memory {
        families(&mut out, "netdemux_tcp_memory", &[(iface.clone(), m)]);
    }
    let proxies: Vec<(String, ProxyCounters)> = d
        .proxies
        .iter()
        .map(|p| {
            let labels = format!(
                "{iface},kind=\"{}\",listen=\"{}\",backend=\"{}\"",
                label(&p.kind),
                label(&p.listen),
                label(&p.backend)
            );
            (labels, p.counters)
        })
        .collect();
    families(&mut out, "netdemux_proxy", &proxies);
    out
}

/// One family per counter of the set `S`, named `PREFIX_METRIC_total` (counters) or
/// `PREFIX_METRIC` (gauges), with a sample per row; nothing when there are no rows.
fn families<S: CounterSet>(out: &mut String, prefix: &str, rows: &[(String, S)]) {
    if rows.is_empty() {
        return;
    }
    for (i, field) in S::FIELDS.iter().enumerate() {
        let (name, kind) = match field.kind {
            Kind::Counter => (format!("{prefix}_{}_total", field.metric), "counter"),
            Kind::Gauge => (format!("{prefix}_{}", field.metric), "gauge"),
        };
        let samples: Vec<(String, u64)> = rows.iter().map(|(l, s)| (l.clone(), s.get(i))).collect();
        typed_family(out, &name, field.help(), kind, &samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
