//! A snapshot of the counters in the shape the CLI prints (`stats --json`), and its text table.

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;
use netdemux_common::Counter;
use serde::Serialize;

use super::{
    binding::{Binding, Proto},
    maps::{DemuxMaps, Verdicts},
};
use crate::counters::CounterSet;

crate::counters! {
    /// Frames passed to the kernel, by reason: the program's `Counter::PASS_REASONS`, in order.
    pub struct PassReasons / AtomicPassReasons {
        /// Not IPv4 or IPv6.
        not_ip: counter [table],
        /// IP, but not TCP or UDP.
        not_tcp_udp: counter [table],
        /// TCP or UDP to an unbound socket address.
        no_binding: counter [table],
        /// IP fragments.
        fragment: counter [table],
        /// Truncated or malformed headers.
        malformed: counter [table],
        /// IPv6 packets whose routing header has segments left (not here yet).
        in_transit: counter,
    }
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
        let mut pass_reasons = PassReasons::default();
        for (i, (counter, _)) in Counter::PASS_REASONS.iter().enumerate() {
            *pass_reasons.get_mut(i) = v.get(*counter);
        }
        VerdictStats {
            seen: v.seen(),
            passed: v.passed(),
            redirected: v.get(Counter::Redirected),
            redirect_failed: v.get(Counter::RedirectFailed),
            pass_reasons,
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
        let mut rows: Vec<(String, u64, Option<u64>)> = vec![
            ("seen".into(), v.seen, prev_v.map(|p| p.seen)),
            (
                "redirected".into(),
                v.redirected,
                prev_v.map(|p| p.redirected),
            ),
            (
                "redirect_failed".into(),
                v.redirect_failed,
                prev_v.map(|p| p.redirect_failed),
            ),
            ("passed".into(), v.passed, prev_v.map(|p| p.passed)),
        ];
        for (i, (field, value)) in v.pass_reasons.each().enumerate() {
            let before = prev_v.map(|p| p.pass_reasons.get(i));
            rows.push((format!("  {}", field.name), value, before));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_reasons_are_the_programs_in_its_order() {
        let ours: Vec<&str> = PassReasons::FIELDS.iter().map(|f| f.name).collect();
        let program: Vec<&str> = Counter::PASS_REASONS.iter().map(|(_, n)| *n).collect();
        assert_eq!(ours, program);
    }
}
