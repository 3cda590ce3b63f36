//! A snapshot of the counters in the shape the CLI prints (`stats --json`), and its text table.

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;
use netdemux_common::Counter;
use serde::Serialize;

use super::{
    binding::{Binding, Proto},
    maps::{DemuxMaps, Verdicts},
};

/// Frames passed to the kernel, by reason.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PassReasons {
    /// Not IPv4 or IPv6.
    pub not_ip: u64,
    /// IP, but not TCP or UDP.
    pub not_tcp_udp: u64,
    /// TCP or UDP to an unbound socket address.
    pub no_binding: u64,
    /// IP fragments.
    pub fragment: u64,
    /// Truncated or malformed headers.
    pub malformed: u64,
}

/// The verdict counters as printed.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VerdictStats {
    /// Frames the program ran on.
    pub seen: u64,
    /// Frames passed to the kernel (sum of `pass_reasons`).
    pub passed: u64,
    /// Frames redirected to an AF_XDP socket.
    pub redirected: u64,
    /// Frames that matched a binding but found no AF_XDP socket on their queue (passed on).
    pub redirect_failed: u64,
    /// Why frames were passed.
    pub pass_reasons: PassReasons,
}

impl From<&Verdicts> for VerdictStats {
    fn from(v: &Verdicts) -> Self {
        VerdictStats {
            seen: v.get(Counter::Seen),
            passed: v.passed(),
            redirected: v.get(Counter::Redirected),
            redirect_failed: v.get(Counter::RedirectFailed),
            pass_reasons: PassReasons {
                not_ip: v.get(Counter::PassNotIp),
                not_tcp_udp: v.get(Counter::PassNotTcpUdp),
                no_binding: v.get(Counter::PassNoBinding),
                fragment: v.get(Counter::PassFragment),
                malformed: v.get(Counter::PassMalformed),
            },
        }
    }
}

/// One binding's counters as printed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BindingCounters {
    /// `udp` or `tcp`.
    pub proto: Proto,
    /// `ADDR:PORT` as `list` prints it.
    pub addr: String,
    /// Frames that matched.
    pub packets: u64,
    /// Their bytes, Ethernet header included.
    pub bytes: u64,
}

/// Everything `stats` prints.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// Interface.
    pub iface: String,
    /// Verdict counters.
    pub verdicts: VerdictStats,
    /// Per-binding counters.
    pub bindings: Vec<BindingCounters>,
}

impl Snapshot {
    /// Reads every counter of `maps`.
    pub fn read(iface: &str, maps: &DemuxMaps) -> Result<Snapshot> {
        let bindings = maps
            .binding_stats()?
            .into_iter()
            .map(|(b, s)| BindingCounters {
                proto: b.proto,
                addr: b.addr.to_string(),
                packets: s.packets,
                bytes: s.bytes,
            })
            .collect();
        let verdicts = VerdictStats::from(&maps.verdicts()?);
        Ok(Snapshot {
            iface: iface.to_string(),
            verdicts,
            bindings,
        })
    }

    /// A text table; with `previous` and the time since it, rates per second as well.
    pub fn render(&self, previous: Option<(&Snapshot, Duration)>) -> String {
        let secs = previous.map(|(_, d)| d.as_secs_f64().max(1e-3));
        let rate = |now: u64, before: Option<u64>| -> String {
            match (secs, before) {
                (Some(s), Some(b)) => format!("{:>12.0}/s", now.saturating_sub(b) as f64 / s),
                _ => String::new(),
            }
        };
        let prev_v = previous.map(|(p, _)| p.verdicts);
        let v = &self.verdicts;
        let mut out = String::new();
        let _ = writeln!(out, "netdemux on {}", self.iface);
        let rows: [(&str, u64, Option<u64>); 9] = [
            ("seen", v.seen, prev_v.map(|p| p.seen)),
            ("redirected", v.redirected, prev_v.map(|p| p.redirected)),
            (
                "redirect_failed",
                v.redirect_failed,
                prev_v.map(|p| p.redirect_failed),
            ),
            ("passed", v.passed, prev_v.map(|p| p.passed)),
            (
                "  not_ip",
                v.pass_reasons.not_ip,
                prev_v.map(|p| p.pass_reasons.not_ip),
            ),
            (
                "  not_tcp_udp",
                v.pass_reasons.not_tcp_udp,
                prev_v.map(|p| p.pass_reasons.not_tcp_udp),
            ),
            (
                "  no_binding",
                v.pass_reasons.no_binding,
                prev_v.map(|p| p.pass_reasons.no_binding),
            ),
            (
                "  fragment",
                v.pass_reasons.fragment,
                prev_v.map(|p| p.pass_reasons.fragment),
            ),
            (
                "  malformed",
                v.pass_reasons.malformed,
                prev_v.map(|p| p.pass_reasons.malformed),
            ),
        ];
        let _ = writeln!(out, "{:<18}{:>14}", "verdict", "frames");
        for (name, value, before) in rows {
            let _ = writeln!(out, "{name:<18}{value:>14}{}", rate(value, before));
        }
        let _ = writeln!(out);
        if self.bindings.is_empty() {
            let _ = writeln!(
                out,
                "no bindings (add one: netdemux bind --iface {} udp ADDR:PORT)",
                self.iface
            );
            return out;
        }
        let _ = writeln!(
            out,
            "{:<6}{:<42}{:>14}{:>16}",
            "proto", "address", "packets", "bytes"
        );
        for b in &self.bindings {
            let before = previous.and_then(|(p, _)| {
                p.bindings
                    .iter()
                    .find(|x| x.proto == b.proto && x.addr == b.addr)
                    .map(|x| x.packets)
            });
            let _ = writeln!(
                out,
                "{:<6}{:<42}{:>14}{:>16}{}",
                b.proto.name(),
                b.addr,
                b.packets,
                b.bytes,
                rate(b.packets, before)
            );
        }
        out
    }
}

/// The bindings as `list --json` prints them.
#[derive(Clone, Debug, Serialize)]
pub struct ListEntry {
    /// `udp` or `tcp`.
    pub proto: Proto,
    /// `ADDR:PORT`.
    pub addr: String,
}

impl From<&Binding> for ListEntry {
    fn from(b: &Binding) -> Self {
        ListEntry {
            proto: b.proto,
            addr: b.addr.to_string(),
        }
    }
}
