//! A binding: the socket address `(protocol, IP, port)` whose packets netdemux takes from the
//! kernel, its text forms (`udp 198.18.0.2:7000`, `tcp [2001:db8::2]:80`) and its map key.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use anyhow::{Result, bail};
use netdemux_common::{BindKey, PROTO_TCP, PROTO_UDP};
use serde::Serialize;

/// Transport protocol of a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The IANA protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => PROTO_TCP,
            Proto::Udp => PROTO_UDP,
        }
    }

    /// The lowercase name (`tcp`, `udp`).
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Proto {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let shown = s.escape_debug();
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => bail!("unknown protocol '{shown}': use udp or tcp"),
        }
    }
}

/// Parses `ADDR:PORT` the way the CLI accepts it: `198.18.0.2:7000`, `[2001:db8::2]:7000`, or a
/// wildcard `0.0.0.0:53` / `[::]:53`. Port 0 and IPv4-mapped IPv6 addresses are refused.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr> {
    // User input is echoed escaped, so a refusal stays one line whatever was typed.
    let shown = s.escape_debug();
    let addr = match SocketAddr::from_str(s.trim()) {
        Ok(addr) => addr,
        Err(_) => {
            match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => {
                    bail!("'{shown}' has no port: write ADDR:PORT, e.g. 198.18.0.2:7000")
                }
                Ok(IpAddr::V6(_)) => bail!(
                    "'{shown}' has no port: an IPv6 socket address is written [ADDR]:PORT, \
                     e.g. [2001:db8::2]:7000"
                ),
                Err(_) => {}
            }
            bail!(
                "'{shown}' is not a socket address: write ADDR:PORT, e.g. 198.18.0.2:7000, \
                 [2001:db8::2]:7000, 0.0.0.0:53 or [::]:53"
            )
        }
    };
    if addr.port() == 0 {
        bail!(
            "port 0 in '{shown}' cannot be bound: give the port the service listens on (1-65535)"
        );
    }
    if let SocketAddr::V6(v6) = addr {
        if let Some(v4) = v6.ip().to_ipv4_mapped() {
            bail!(
                "'{shown}' is an IPv4-mapped IPv6 address, which never appears on the wire: \
                 bind {v4}:{} instead",
                v6.port()
            );
        }
        if v6.scope_id() != 0 || v6.flowinfo() != 0 {
            bail!("'{shown}': scope ids and flow labels are not part of a binding; drop them");
        }
    }
    Ok(addr)
}

/// A bound socket address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Binding {
    /// Transport protocol.
    pub proto: Proto,
    /// Destination address and port; the unspecified address is the wildcard of its family.
    pub addr: SocketAddr,
}

impl Binding {
    /// A binding from its CLI words, e.g. `("udp", "198.18.0.2:7000")`.
    pub fn parse(proto: &str, addr: &str) -> Result<Self> {
        let b = Binding {
            proto: proto.parse()?,
            addr: parse_socket_addr(addr)?,
        };
        let group = match b.addr.ip() {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_multicast(),
        };
        if b.proto == Proto::Tcp && group {
            bail!(
                "'{}' is a broadcast or multicast address: TCP connects two hosts; bind UDP \
                 there, or TCP on a host address",
                b.addr
            );
        }
        Ok(b)
    }

    /// The key the XDP program looks up.
    pub fn key(&self) -> BindKey {
        BindKey::from_socket_addr(self.proto.number(), self.addr)
    }

    /// The binding a map key stands for; `None` for a key no netdemux build would write.
    pub fn from_key(key: &BindKey) -> Option<Self> {
        let proto = match key.proto {
            PROTO_TCP => Proto::Tcp,
            PROTO_UDP => Proto::Udp,
            _ => return None,
        };
        Some(Binding {
            proto,
            addr: key.socket_addr()?,
        })
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto, self.addr)
    }
}

#[cfg(test)]
mod tests {
    use netdemux_common::{FAMILY_V4, FAMILY_V6};

    use super::*;

    #[test]
    fn parses_v4_v6_and_wildcards() {
        for (proto, text) in [
            ("udp", "198.18.0.2:7000"),
            ("tcp", "[2001:db8::2]:80"),
            ("udp", "0.0.0.0:53"),
            ("udp", "[::]:53"),
        ] {
            let b = Binding::parse(proto, text).unwrap();
            assert_eq!(b.addr.to_string(), text);
            assert_eq!(b.proto.name(), proto);
        }
    }

    #[test]
    fn key_round_trips_and_is_network_order() {
        let b = Binding::parse("udp", "198.18.0.2:7000").unwrap();
        let key = b.key();
        // The key's memory is what the XDP program builds from the wire: network order.
        assert_eq!(key.port.to_ne_bytes(), [0x1b, 0x58]);
        assert_eq!(key.port(), 7000);
        let octets = key.addr_octets();
        assert_eq!(&octets[..4], &[198, 18, 0, 2]);
        assert!(octets[4..].iter().all(|&x| x == 0));
        assert_eq!(key.addr[0].to_ne_bytes(), [198, 18, 0, 2]);
        assert_eq!((key.proto, key.family), (PROTO_UDP, FAMILY_V4));
        assert_eq!(Binding::from_key(&key), Some(b));

        let b6 = Binding::parse("tcp", "[2001:db8::2]:443").unwrap();
        assert_eq!(Binding::from_key(&b6.key()), Some(b6));
        assert_eq!(b6.key().family, FAMILY_V6);
    }

    #[test]
    fn wildcard_key_is_the_wildcard_of_the_exact_key() {
        let exact = Binding::parse("udp", "198.18.0.2:53").unwrap().key();
        let wild = Binding::parse("udp", "0.0.0.0:53").unwrap().key();
        assert_eq!(exact.wildcard(), wild);
        let exact6 = Binding::parse("udp", "[2001:db8::1]:53").unwrap().key();
        assert_ne!(exact6.wildcard(), wild, "v4 and v6 wildcards are distinct");
    }

    #[test]
    fn refuses_bad_input_with_a_hint() {
        let cases = [
            ("udp", "198.18.0.2", "no port"),
            ("udp", "198.18.0.2:0", "port 0"),
            ("udp", "198.18.0.2:70000", "not a socket address"),
            ("udp", "hello:53", "not a socket address"),
            ("udp", "[::ffff:198.18.0.2]:53", "IPv4-mapped"),
            ("icmp", "198.18.0.2:53", "unknown protocol"),
            ("udp", "", "not a socket address"),
            // Found by the fuzzer: a newline in the input made the refusal two lines.
            ("udp", "\n", "not a socket address"),
            ("udp\n", "198.18.0.2:1", "unknown protocol"),
            ("udp", "198.18.0.2\n:1", "not a socket address"),
            ("tcp", "239.1.2.3:80", "multicast"),
            ("tcp", "255.255.255.255:80", "broadcast"),
            ("tcp", "[ff02::1]:80", "multicast"),
        ];
        for (proto, addr, want) in cases {
            let err = Binding::parse(proto, addr).unwrap_err().to_string();
            assert!(err.contains(want), "{proto} {addr}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn udp_may_bind_a_multicast_group() {
        assert!(Binding::parse("udp", "239.1.2.3:5000").is_ok());
        assert!(Binding::parse("udp", "[ff15::1]:5000").is_ok());
    }

    #[test]
    fn from_key_refuses_foreign_keys() {
        let mut key = Binding::parse("udp", "198.18.0.2:53").unwrap().key();
        key.proto = 1;
        assert_eq!(Binding::from_key(&key), None);
        key.proto = PROTO_UDP;
        key.addr[2] = 1;
        assert_eq!(Binding::from_key(&key), None);
    }
}
