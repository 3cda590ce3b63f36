//! `--tcp-proxy LISTEN=BACKEND` and `--udp-proxy LISTEN=BACKEND`: what real deployments run on
//! a userspace stack, built on the public API ([`crate::Stack`]) over the daemon's own data
//! plane — a TCP relay with back-pressure, half-close and resets passed on, and a UDP relay
//! with a session (and a source port) per client address. They run on a small tokio runtime of
//! their own; the bytes move between the queue workers and the relays through the API's
//! lock-free queues.

mod tcp;
mod udp;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{
    Stack,
    control::binding::parse_socket_addr,
    counters::AtomicSet as _,
    report::{AtomicProxyCounters, ProxyReport},
    runtime::dataplane::DataPlane,
    xsk::nic,
};

/// What a proxy relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// TCP connections.
    Tcp,
    /// UDP datagrams.
    Udp,
}

impl ProxyKind {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Tcp => "tcp-proxy",
            ProxyKind::Udp => "udp-proxy",
        }
    }
}

/// One proxy: where it listens, where it forwards to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxySpec {
    /// What it relays.
    pub kind: ProxyKind,
    /// The address clients reach it on (bound through netdemux).
    pub listen: SocketAddr,
    /// Where it forwards to (on the link or behind a router).
    pub backend: SocketAddr,
}

/// Parses `LISTEN=BACKEND`, e.g. `198.18.0.2:80=198.19.0.7:8080`.
pub fn parse_spec(kind: ProxyKind, s: &str) -> Result<ProxySpec> {
    let shown = s.escape_debug();
    let Some((listen, backend)) = s.split_once('=') else {
        bail!(
            "'{shown}' is not LISTEN=BACKEND: write e.g. 198.18.0.2:80=198.19.0.7:8080 \
             (the address clients reach, then the backend's)"
        );
    };
    let listen = parse_socket_addr(listen).context("the address to listen on")?;
    let backend = parse_socket_addr(backend).context("the backend's address")?;
    if backend.ip().is_unspecified() {
        bail!("the backend of '{shown}' needs an address to send to, not a wildcard");
    }
    Ok(ProxySpec {
        kind,
        listen,
        backend,
    })
}

/// How long a UDP session may stay quiet before it ends.
pub const UDP_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Sessions a UDP proxy holds at most.
pub const UDP_MAX_SESSIONS: usize = 4096;
/// How long a TCP proxy waits for its backend to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The running proxies of a daemon.
pub struct Proxies {
    runtime: tokio::runtime::Runtime,
    stack: Arc<Stack>,
    counters: Vec<(ProxySpec, Arc<AtomicProxyCounters>)>,
}

impl Proxies {
    /// Binds every proxy's address on `plane` (which serves an application) and starts
    /// relaying; `udp_timeout` ends quiet UDP sessions.
    pub fn start(
        plane: Arc<DataPlane>,
        netns: Option<String>,
        specs: &[ProxySpec],
        udp_timeout: Duration,
    ) -> Result<Proxies> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("netdemux-proxy")
            .enable_time()
            .build()
            .context("cannot start the proxies' runtime")?;
        let stack = Arc::new(Stack::on_plane(plane, netns)?);
        let mut counters = Vec::new();
        for spec in specs {
            let c = Arc::new(AtomicProxyCounters::default());
            let (stack, c2, spec2) = (stack.clone(), c.clone(), *spec);
            match spec.kind {
                ProxyKind::Tcp => {
                    let listener = runtime
                        .block_on(stack.tcp_listen(spec.listen))
                        .with_context(|| format!("--tcp-proxy {}", spec.listen))?;
                    runtime.spawn(tcp::serve(stack, listener, spec2.backend, c2));
                }
                ProxyKind::Udp => {
                    let socket = runtime
                        .block_on(stack.udp_bind(spec.listen))
                        .with_context(|| format!("--udp-proxy {}", spec.listen))?;
                    let (_, source) = nic::link_addrs(stack.iface(), spec.backend.is_ipv6())?;
                    let source = source.with_context(|| {
                        format!(
                            "--udp-proxy {}: {} has no address of the backend's family to \
                             send from",
                            spec.listen,
                            stack.iface()
                        )
                    })?;
                    let relay = udp::Relay {
                        stack,
                        listen: Arc::new(socket),
                        backend: spec2.backend,
                        source,
                        counters: c2,
                        timeout: udp_timeout,
                    };
                    runtime.spawn(relay.serve());
                }
            }
            counters.push((*spec, c));
        }
        Ok(Proxies {
            runtime,
            stack,
            counters,
        })
    }

    /// What `stats` says of them, read at any time from any thread.
    pub fn reporter(&self) -> impl Fn() -> Vec<ProxyReport> + Send + Sync + 'static {
        let counters = self.counters.clone();
        move || {
            counters
                .iter()
                .map(|(spec, c)| ProxyReport {
                    kind: spec.kind.name().to_string(),
                    listen: spec.listen.to_string(),
                    backend: spec.backend.to_string(),
                    counters: c.load(),
                })
                .collect()
        }
    }

    /// Stops relaying: every connection and session goes (connections are reset), and the
    /// proxies' hold on the data plane with them.
    pub fn stop(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        drop(self.stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_refuse_with_a_hint() {
        let s = parse_spec(ProxyKind::Tcp, "198.18.0.2:80=[2001:db8:1::7]:8080").unwrap();
        assert_eq!(s.listen, "198.18.0.2:80".parse().unwrap());
        assert_eq!(s.backend, "[2001:db8:1::7]:8080".parse().unwrap());
        for (bad, want) in [
            ("198.18.0.2:80", "LISTEN=BACKEND"),
            ("198.18.0.2:80=0.0.0.0:8080", "not a wildcard"),
            ("198.18.0.2=198.19.0.7:8080", "listen on"),
            ("198.18.0.2:80=backend", "backend's address"),
        ] {
            let err = format!("{:#}", parse_spec(ProxyKind::Udp, bad).unwrap_err());
            assert!(err.contains(want), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
