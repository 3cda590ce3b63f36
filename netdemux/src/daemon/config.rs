//! `netdemux run --config FILE.toml`: the whole run described in a file.
//!
//! ```toml
//! iface = "eth0"
//! netns = "edge"                 # optional: a named network namespace
//! mode = "native"                # auto | native | skb
//! queues = "0-3"                 # optional: default all
//! cpu = "2-5"                    # optional: pin queue workers
//! busy_poll = true
//! metrics = "127.0.0.1:9464"
//! tcp_memory = "256M"            # optional: the TCP buffers' budget (default 1/16 of memory)
//! tcp_idle_timeout = 60          # optional: seconds before idle TCP service connections close
//! neighbour_lifetime = 30        # optional: seconds a peer's MAC address counts as fresh
//! udp_proxy_timeout = 60         # optional: seconds before a quiet UDP proxy session ends
//! bindings = ["tcp 198.18.0.2:443"]   # bound while it runs, no service behind them
//!
//! [services]
//! udp_echo = ["198.18.0.2:7", "[2001:db8::2]:7"]
//! udp_sink = ["0.0.0.0:9000"]
//! tcp_echo = ["198.18.0.2:7"]
//! http = ["198.18.0.2:80", "[2001:db8::2]:80"]
//! tcp_proxy = ["198.18.0.2:443=198.19.0.7:8443"]
//! udp_proxy = ["198.18.0.2:53=198.19.0.53:53"]
//! ```
//!
//! Unknown keys, wrong types and bad addresses are refused with the file's line number, in one
//! line. The file only describes: nothing in it can make netdemux run a command or read another
//! file.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::{
    RunConfig, parse_list, parse_size,
    proxy::{ProxyKind, ProxySpec, parse_spec},
};
use crate::{
    control::{
        attach::ModeRequest,
        binding::{Binding, parse_socket_addr},
    },
    stack::tcp::MemoryBudget,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    iface: String,
    netns: Option<String>,
    mode: Option<String>,
    max_bindings: Option<u32>,
    queues: Option<String>,
    cpu: Option<String>,
    zero_copy: Option<bool>,
    busy_poll: Option<bool>,
    spin: Option<bool>,
    frames: Option<u32>,
    ring_size: Option<u32>,
    metrics: Option<String>,
    bindings: Option<Vec<String>>,
    tcp_memory: Option<String>,
    tcp_idle_timeout: Option<u64>,
    neighbour_lifetime: Option<u64>,
    udp_proxy_timeout: Option<u64>,
    services: Option<Services>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Services {
    udp_sink: Option<Vec<String>>,
    udp_echo: Option<Vec<String>>,
    tcp_echo: Option<Vec<String>>,
    http: Option<Vec<String>>,
    tcp_proxy: Option<Vec<String>>,
    udp_proxy: Option<Vec<String>>,
}

/// The 1-based line of byte offset `at` in `text`.
fn line_at(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The line on which the quoted string `value` first appears, for errors found after parsing.
fn line_of(text: &str, value: &str) -> usize {
    text.find(&format!("\"{value}\""))
        .or_else(|| text.find(value))
        .map(|at| line_at(text, at))
        .unwrap_or(0)
}

/// Reads a run configuration; returns it and the network namespace it names, if any.
pub fn load(path: &Path) -> Result<(RunConfig, Option<String>)> {
    let shown = path.display().to_string().escape_debug().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    parse(&text, &shown)
}

/// Parses a run configuration read from `name`.
pub fn parse(text: &str, name: &str) -> Result<(RunConfig, Option<String>)> {
    let file: RunFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_at(text, s.start)).unwrap_or(0);
        anyhow::anyhow!("{name}:{line}: {}", e.message().replace('\n', " "))
    })?;
    let at = |value: &str| format!("{name}:{}", line_of(text, value));
    let addrs = |list: &Option<Vec<String>>| -> Result<Vec<SocketAddr>> {
        list.iter()
            .flatten()
            .map(|a| parse_socket_addr(a).with_context(|| at(a)))
            .collect()
    };
    let mode = match file.mode.as_deref() {
        None | Some("auto") => ModeRequest::Auto,
        Some("native") => ModeRequest::Native,
        Some("skb") => ModeRequest::Skb,
        Some(other) => bail!(
            "{}: mode must be auto, native or skb, not '{}'",
            at(other),
            other.escape_debug()
        ),
    };
    let services = file.services.unwrap_or_default();
    let mut bindings = Vec::new();
    for b in file.bindings.iter().flatten() {
        let mut words = b.split_whitespace();
        let (Some(proto), Some(addr), None) = (words.next(), words.next(), words.next()) else {
            bail!(
                "{}: a binding is written \"udp|tcp ADDR:PORT\", not '{}'",
                at(b),
                b.escape_debug()
            );
        };
        bindings.push(Binding::parse(proto, addr).with_context(|| at(b))?);
    }
    let cfg = RunConfig {
        iface: file.iface,
        mode,
        max_bindings: file
            .max_bindings
            .unwrap_or(netdemux_common::DEFAULT_MAX_BINDINGS),
        queues: file
            .queues
            .as_deref()
            .map(|q| parse_list(q).with_context(|| at(q)))
            .transpose()?,
        zero_copy: file.zero_copy.unwrap_or(false),
        busy_poll: file.busy_poll.unwrap_or(false),
        spin: file.spin.unwrap_or(false),
        cpus: match file.cpu.as_deref() {
            Some(c) => parse_list(c)
                .with_context(|| at(c))?
                .into_iter()
                .map(|c| c as usize)
                .collect(),
            None => Vec::new(),
        },
        udp_sinks: addrs(&services.udp_sink)?,
        udp_echoes: addrs(&services.udp_echo)?,
        tcp_echoes: addrs(&services.tcp_echo)?,
        https: addrs(&services.http)?,
        faults: Default::default(),
        frames: file.frames.unwrap_or(4096),
        ring_size: file.ring_size.unwrap_or(2048),
        metrics: file
            .metrics
            .as_deref()
            .map(|m| {
                m.parse::<SocketAddr>().map_err(|_| {
                    anyhow::anyhow!("{}: metrics must be ADDR:PORT, e.g. 127.0.0.1:9464", at(m))
                })
            })
            .transpose()?,
        bindings,
        tcp_memory: match file.tcp_memory.as_deref() {
            Some(m) => parse_size(m).with_context(|| at(m))?,
            None => MemoryBudget::default_limit(),
        },
        tcp_idle_timeout: Duration::from_secs(file.tcp_idle_timeout.unwrap_or(60).max(1)),
        neighbour_lifetime: Duration::from_secs(file.neighbour_lifetime.unwrap_or(30).max(1)),
        proxies: {
            let specs = |kind, list: &Option<Vec<String>>| -> Result<Vec<ProxySpec>> {
                list.iter()
                    .flatten()
                    .map(|s| parse_spec(kind, s).with_context(|| at(s)))
                    .collect()
            };
            let mut all = specs(ProxyKind::Tcp, &services.tcp_proxy)?;
            all.extend(specs(ProxyKind::Udp, &services.udp_proxy)?);
            all
        },
        udp_proxy_timeout: Duration::from_secs(file.udp_proxy_timeout.unwrap_or(60).max(1)),
    };
    Ok((cfg, file.netns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
iface = "eth0"
netns = "edge"
mode = "native"
queues = "0,2-3"
busy_poll = true
metrics = "127.0.0.1:9464"
bindings = ["tcp 198.18.0.2:443"]
neighbour_lifetime = 10
udp_proxy_timeout = 20

[services]
udp_echo = ["198.18.0.2:7", "[2001:db8::2]:7"]
udp_sink = ["0.0.0.0:9000"]
tcp_echo = ["198.18.0.2:7"]
http = ["198.18.0.2:80", "[2001:db8::2]:80"]
tcp_proxy = ["198.18.0.2:8443=198.19.0.7:443"]
udp_proxy = ["198.18.0.2:53=[2001:db8:1::53]:53"]
"#;

    #[test]
    fn a_full_file() {
        let (cfg, netns) = parse(GOOD, "run.toml").unwrap();
        assert_eq!(cfg.iface, "eth0");
        assert_eq!(netns.as_deref(), Some("edge"));
        assert_eq!(cfg.mode, ModeRequest::Native);
        assert_eq!(cfg.queues, Some(vec![0, 2, 3]));
        assert!(cfg.busy_poll && !cfg.spin);
        assert_eq!(cfg.udp_echoes.len(), 2);
        assert_eq!(cfg.udp_sinks, vec!["0.0.0.0:9000".parse().unwrap()]);
        assert_eq!(cfg.tcp_echoes, vec!["198.18.0.2:7".parse().unwrap()]);
        assert_eq!(cfg.https.len(), 2);
        assert_eq!(
            cfg.bindings,
            vec![Binding::parse("tcp", "198.18.0.2:443").unwrap()]
        );
        assert_eq!(cfg.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(cfg.neighbour_lifetime, Duration::from_secs(10));
        assert_eq!(cfg.udp_proxy_timeout, Duration::from_secs(20));
        let proxies: Vec<(ProxyKind, String, String)> = cfg
            .proxies
            .iter()
            .map(|p| (p.kind, p.listen.to_string(), p.backend.to_string()))
            .collect();
        assert_eq!(
            proxies,
            vec![
                (
                    ProxyKind::Tcp,
                    "198.18.0.2:8443".into(),
                    "198.19.0.7:443".into()
                ),
                (
                    ProxyKind::Udp,
                    "198.18.0.2:53".into(),
                    "[2001:db8:1::53]:53".into()
                ),
            ]
        );
    }

    #[test]
    fn bad_files_are_refused_with_their_line_in_one_line() {
        let cases = [
            (
                "iface = \"eth0\"\ncolour = \"blue\"\n",
                "run.toml:2:",
                "unknown field",
            ),
            (
                "iface = \"eth0\"\nspin = \"yes\"\n",
                "run.toml:2:",
                "invalid type",
            ),
            (
                "iface = \"eth0\"\n\n[services]\nudp_echo = [\"198.18.0.2\"]\n",
                "run.toml:4:",
                "has no port",
            ),
            (
                "iface = \"eth0\"\n[services]\nudp_sink = [\"0.0.0.0:0\"]\n",
                "run.toml:3:",
                "port 0",
            ),
            (
                "iface = \"eth0\"\n[services]\ntcp_proxy = [\"198.18.0.2:80\"]\n",
                "run.toml:3:",
                "LISTEN=BACKEND",
            ),
            (
                "iface = \"eth0\"\n[services]\ntcp_sink = []\n",
                "run.toml:3:",
                "unknown field",
            ),
            (
                "iface = \"eth0\"\nmode = \"turbo\"\n",
                "run.toml:2:",
                "auto, native or skb",
            ),
            (
                "iface = \"eth0\"\nqueues = \"1-\"\n",
                "run.toml:2:",
                "not a list",
            ),
            (
                "iface = \"eth0\"\nbindings = [\"udp\"]\n",
                "run.toml:2:",
                "udp|tcp ADDR:PORT",
            ),
            (
                "iface = \"eth0\"\nmetrics = \"localhost\"\n",
                "run.toml:2:",
                "metrics must be",
            ),
            ("mode = \"skb\"\n", "run.toml:", "missing field `iface`"),
            (
                "iface = \"eth0\"\niface = \"eth1\"\n",
                "run.toml:2:",
                "duplicate",
            ),
        ];
        for (text, at, want) in cases {
            let err = format!("{:#}", parse(text, "run.toml").unwrap_err());
            assert!(err.starts_with(at), "{text:?}: {err}");
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }
}
