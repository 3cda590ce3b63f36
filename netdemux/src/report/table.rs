//! The daemon's part of `netdemux stats` as text: a row per queue, a line per service and a row
//! per queue of TCP counters, each with the counters their declarations mark `[table]`.

use std::fmt::Write as _;

use super::{DaemonReport, QueueCounters, WorkerTcpCounters};
use crate::{counters::CounterSet, stack::tcp};

/// The `[table]` counters of `set`: (name, value).
fn shown<S: CounterSet>(set: &S) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    set.each()
        .filter(|(f, _)| f.in_table)
        .map(|(f, v)| (f.name, v))
}

/// The names of the `[table]` counters of `S`.
fn columns<S: CounterSet>() -> impl Iterator<Item = &'static str> {
    S::FIELDS.iter().filter(|f| f.in_table).map(|f| f.name)
}

/// A column as wide as its name, at least 10.
fn width(name: &str) -> usize {
    name.len().max(10) + 2
}

/// The daemon's queue, service and TCP tables, or nothing when no daemon runs.
pub fn render(daemon: Option<&DaemonReport>) -> String {
    let Some(d) = daemon else {
        return String::new();
    };
    let mut out = String::new();
    let _ = writeln!(out, "\ndaemon pid {}", d.pid);
    let _ = write!(out, "{:<6}{:<10}", "queue", "mode");
    for name in columns::<QueueCounters>() {
        let _ = write!(out, "{name:>w$}", w = width(name));
    }
    let _ = writeln!(out);
    for q in &d.queues {
        let _ = write!(out, "{:<6}{:<10}", q.queue, q.mode);
        for (name, v) in shown(&q.counters) {
            let _ = write!(out, "{v:>w$}", w = width(name));
        }
        let _ = writeln!(out);
    }
    for s in &d.services {
        let _ = write!(out, "{:<10}{:<42}", s.kind, s.addr);
        for (name, v) in shown(&s.counters) {
            let _ = write!(out, "{v:>14} {name}");
        }
        let _ = writeln!(out);
    }
    if let Some(m) = &d.tcp_memory {
        let _ = write!(out, "\ntcp memory");
        for (name, v) in shown(m) {
            let _ = write!(out, "  {name} {v}");
        }
        let _ = writeln!(out);
    }
    if d.queues.iter().any(|q| q.tcp.is_some()) {
        let _ = write!(out, "\n{:<6}", "tcp");
        for name in columns::<WorkerTcpCounters>().chain(columns::<tcp::Counters>()) {
            let _ = write!(out, "{name:>16}");
        }
        let _ = writeln!(out);
        for q in &d.queues {
            let Some(t) = &q.tcp else { continue };
            let _ = write!(out, "{:<6}", q.queue);
            for (_, v) in shown(&t.worker).chain(shown(&t.stack)) {
                let _ = write!(out, "{v:>16}");
            }
            let _ = writeln!(out);
        }
    }
    out
}
