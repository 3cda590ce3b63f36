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
    for p in &d.proxies {
        let _ = write!(
            out,
            "{:<10}{:<42}",
            p.kind,
            format!("{} -> {}", p.listen, p.backend)
        );
        for (name, v) in shown(&p.counters) {
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
            let _ = write!(out, "{name:>w$}", w = width(name));
        }
        let _ = writeln!(out);
        for q in &d.queues {
            let Some(t) = &q.tcp else { continue };
            let _ = write!(out, "{:<6}", q.queue);
            for (name, v) in shown(&t.worker).chain(shown(&t.stack)) {
                let _ = write!(out, "{v:>w$}", w = width(name));
            }
            let _ = writeln!(out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{QueueReport, TcpReport};

    #[test]
    fn every_column_keeps_its_name_apart_and_its_value_under_it() {
        let mut q = QueueReport {
            queue: 0,
            mode: "copy".into(),
            ..Default::default()
        };
        let mut tcp = TcpReport::default();
        tcp.stack.syncookies_failed = 123_456_789_012;
        q.tcp = Some(tcp);
        let d = DaemonReport {
            pid: 1,
            queues: vec![q],
            services: Vec::new(),
            tcp_memory: None,
            proxies: Vec::new(),
        };
        let text = render(Some(&d));
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("tcp ")).unwrap();
        let names: Vec<&str> = lines[header].split_whitespace().skip(1).collect();
        let want: Vec<&str> = columns::<WorkerTcpCounters>()
            .chain(columns::<tcp::Counters>())
            .collect();
        assert_eq!(names, want, "{text}");
        // Right-aligned: each value ends where its name ends.
        let row = lines[header + 1];
        let end = lines[header].find("syncookies_failed").unwrap() + "syncookies_failed".len();
        assert_eq!(&row[end - 12..end], "123456789012", "{text}");
        assert_eq!(lines[header].len(), row.len(), "{text}");
    }
}
