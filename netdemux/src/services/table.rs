//! Which binding belongs to which service. Shared read-only by all queue workers; lookups
//! allocate nothing.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use netdemux_common::BindKey;

use crate::{
    control::binding::{Binding, Proto},
    key_map::KeyMap,
};

/// A built-in service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Counts and drops (`--udp-sink`).
    UdpSink,
    /// Answers with the same payload (`--udp-echo`).
    UdpEcho,
    /// Sends back the bytes of each TCP connection (`--tcp-echo`).
    TcpEcho,
    /// Answers HTTP/1.1 GETs with a short fixed body (`--http`).
    Http,
}

impl Kind {
    /// The name `stats` prints.
    pub fn name(self) -> &'static str {
        match self {
            Kind::UdpSink => "udp-sink",
            Kind::UdpEcho => "udp-echo",
            Kind::TcpEcho => "tcp-echo",
            Kind::Http => "http",
        }
    }

    /// True for the services that speak TCP.
    pub fn is_tcp(self) -> bool {
        matches!(self, Kind::TcpEcho | Kind::Http)
    }

    /// The protocol of the service's binding.
    pub fn proto(self) -> Proto {
        if self.is_tcp() {
            Proto::Tcp
        } else {
            Proto::Udp
        }
    }
}

/// The services of a daemon, indexed by binding key.
#[derive(Debug, Default)]
pub struct ServiceTable {
    index: KeyMap<usize>,
    services: Vec<(Kind, SocketAddr)>,
}

impl ServiceTable {
    /// A table of the given services; an address may belong to one service only.
    pub fn new(services: &[(Kind, SocketAddr)]) -> Result<ServiceTable> {
        let mut t = ServiceTable::default();
        for &(kind, addr) in services {
            let key = Binding {
                proto: kind.proto(),
                addr,
            }
            .key();
            if let Some(&i) = t.index.get(&key) {
                if t.services[i].0 == kind {
                    continue;
                }
                bail!(
                    "{addr} is given to two services ({} and {})",
                    t.services[i].0.name(),
                    kind.name()
                );
            }
            t.index.insert(key, t.services.len());
            t.services.push((kind, addr));
        }
        Ok(t)
    }

    /// The services, by index.
    pub fn services(&self) -> &[(Kind, SocketAddr)] {
        &self.services
    }

    /// The service a destination belongs to: the exact address first, then its family's
    /// wildcard if the frame is `unicast`, as the XDP program decides.
    pub fn find(&self, key: &BindKey, unicast: bool) -> Option<(usize, Kind)> {
        let wildcard = || unicast.then(|| self.index.get(&key.wildcard())).flatten();
        let i = *self.index.get(key).or_else(wildcard)?;
        Some((i, self.services[i].0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_families_stay_apart() {
        let t = ServiceTable::new(&[
            (Kind::UdpSink, addr("0.0.0.0:53")),
            (Kind::UdpEcho, addr("198.18.0.2:53")),
        ])
        .unwrap();
        let key = |p: &str, a: &str| Binding::parse(p, a).unwrap().key();
        assert_eq!(
            t.find(&key("udp", "198.18.0.2:53"), true),
            Some((1, Kind::UdpEcho))
        );
        assert_eq!(
            t.find(&key("udp", "198.18.0.9:53"), true),
            Some((0, Kind::UdpSink))
        );
        assert_eq!(t.find(&key("udp", "[2001:db8::2]:53"), true), None);
        assert_eq!(t.find(&key("tcp", "198.18.0.2:53"), true), None);
        assert_eq!(t.find(&key("udp", "198.18.0.2:54"), true), None);
        // A broadcast or multicast frame: only an exact binding takes it.
        assert_eq!(t.find(&key("udp", "198.18.0.9:53"), false), None);
        assert_eq!(
            t.find(&key("udp", "198.18.0.2:53"), false),
            Some((1, Kind::UdpEcho))
        );
    }

    #[test]
    fn one_address_one_service() {
        let a = addr("198.18.0.2:7");
        assert!(ServiceTable::new(&[(Kind::UdpSink, a), (Kind::UdpEcho, a)]).is_err());
        assert_eq!(
            ServiceTable::new(&[(Kind::UdpEcho, a), (Kind::UdpEcho, a)])
                .unwrap()
                .services()
                .len(),
            1
        );
    }
}
