//! The counters in Prometheus text exposition format (version 0.0.4): what `stats --prometheus`
//! prints and what `run --metrics ADDR` serves on `/metrics`.

use std::fmt::Write as _;

use super::stats::Snapshot;
use crate::runtime::control::DaemonReport;

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
    let binding = |b: &super::stats::BindingCounters| {
        format!("{iface},proto=\"{}\",addr=\"{}\"", b.proto, label(&b.addr))
    };
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
    let queue = |q: &crate::runtime::control::QueueReport| {
        format!("{iface},queue=\"{}\",mode=\"{}\"", q.queue, q.mode)
    };
    type QueueField = fn(&crate::runtime::control::QueueReport) -> u64;
    let queue_families: [(&str, &str, QueueField); 8] = [
        (
            "netdemux_queue_rx_total",
            "Frames received from the AF_XDP RX ring.",
            |q| q.rx,
        ),
        (
            "netdemux_queue_rx_dropped_total",
            "Frames the kernel dropped for the socket (no fill buffer).",
            |q| q.rx_dropped,
        ),
        (
            "netdemux_queue_rx_ring_full_total",
            "Frames dropped because the RX ring was full.",
            |q| q.rx_ring_full,
        ),
        (
            "netdemux_queue_fill_ring_empty_total",
            "Times the fill ring was empty.",
            |q| q.fill_ring_empty,
        ),
        (
            "netdemux_queue_invalid_descs_total",
            "Invalid ring descriptors.",
            |q| q.invalid_descs,
        ),
        (
            "netdemux_queue_tx_total",
            "Frames posted for transmission.",
            |q| q.tx,
        ),
        (
            "netdemux_queue_tx_dropped_total",
            "Frames dropped because the TX ring was full.",
            |q| q.tx_dropped,
        ),
        (
            "netdemux_queue_unclaimed_total",
            "Redirected frames no service claimed.",
            |q| q.unclaimed,
        ),
    ];
    for (name, help, field) in queue_families {
        family(
            &mut out,
            name,
            help,
            &d.queues
                .iter()
                .map(|q| (queue(q), field(q)))
                .collect::<Vec<_>>(),
        );
    }
    // TCP: one family per counter, `open` as a gauge.
    let mut tcp_names: Vec<&String> = d.queues.iter().flat_map(|q| q.tcp.keys()).collect();
    tcp_names.sort();
    tcp_names.dedup();
    for name in tcp_names {
        let (metric, kind) = if name == "open" {
            ("netdemux_tcp_open_connections".to_string(), "gauge")
        } else {
            (format!("netdemux_tcp_{name}_total"), "counter")
        };
        let samples: Vec<(String, u64)> = d
            .queues
            .iter()
            .filter_map(|q| q.tcp.get(name).map(|v| (queue(q), *v)))
            .collect();
        typed_family(
            &mut out,
            &metric,
            &format!(
                "TCP stack of the built-in services: {}.",
                name.replace('_', " ")
            ),
            kind,
            &samples,
        );
    }
    let service = |s: &crate::runtime::control::ServiceReport| {
        format!(
            "{iface},kind=\"{}\",addr=\"{}\"",
            label(&s.kind),
            label(&s.addr)
        )
    };
    type ServiceField = fn(&crate::runtime::control::ServiceReport) -> u64;
    let service_families: [(&str, &str, ServiceField); 3] = [
        (
            "netdemux_service_packets_total",
            "Datagrams a built-in service received.",
            |s| s.packets,
        ),
        (
            "netdemux_service_bytes_total",
            "UDP payload bytes a built-in service received.",
            |s| s.bytes,
        ),
        (
            "netdemux_service_unanswered_total",
            "Datagrams an echo did not answer.",
            |s| s.unanswered,
        ),
    ];
    for (name, help, field) in service_families {
        family(
            &mut out,
            name,
            help,
            &d.services
                .iter()
                .map(|s| (service(s), field(s)))
                .collect::<Vec<_>>(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
