//! `--udp-sink ADDR:PORT`: counts the datagrams sent to a binding, and drops them.

use std::{collections::HashMap, net::SocketAddr};

use netdemux_common::BindKey;

use crate::control::binding::{Binding, Proto};

/// The sinks of a daemon: which binding key belongs to which sink. Shared read-only by all
/// queue workers; lookups allocate nothing.
#[derive(Debug, Default)]
pub struct SinkTable {
    index: HashMap<BindKey, usize>,
    addrs: Vec<SocketAddr>,
}

impl SinkTable {
    /// A table of UDP sinks on `addrs` (exact or wildcard addresses).
    pub fn new(addrs: &[SocketAddr]) -> SinkTable {
        let mut t = SinkTable::default();
        for &addr in addrs {
            if t.addrs.contains(&addr) {
                continue;
            }
            let key = Binding {
                proto: Proto::Udp,
                addr,
            }
            .key();
            t.index.insert(key, t.addrs.len());
            t.addrs.push(addr);
        }
        t
    }

    /// The sinks' addresses, by index.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The sink a destination belongs to: the exact address first, then its family's wildcard,
    /// as the XDP program decides.
    pub fn find(&self, key: &BindKey) -> Option<usize> {
        self.index
            .get(key)
            .or_else(|| self.index.get(&key.wildcard()))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_wildcard_and_families_stay_apart() {
        let t = SinkTable::new(&[
            "0.0.0.0:53".parse().unwrap(),
            "198.18.0.2:53".parse().unwrap(),
        ]);
        let key = |p: &str, a: &str| Binding::parse(p, a).unwrap().key();
        assert_eq!(t.find(&key("udp", "198.18.0.2:53")), Some(1));
        assert_eq!(t.find(&key("udp", "198.18.0.9:53")), Some(0));
        assert_eq!(t.find(&key("udp", "[2001:db8::2]:53")), None);
        assert_eq!(t.find(&key("tcp", "198.18.0.2:53")), None);
        assert_eq!(t.find(&key("udp", "198.18.0.2:54")), None);
    }
}
