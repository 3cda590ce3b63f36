//! The kernel's routing table, asked over rtnetlink (`RTM_GETROUTE`, as `ip route get` does):
//! where a packet to an address leaves — which interface, and through which gateway.

use std::net::IpAddr;

use anyhow::Result;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
};

use super::netlink::{Refusal, request};

/// Where the kernel sends a packet to some destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The interface it leaves through.
    pub ifindex: u32,
    /// The gateway it goes to; `None` for a destination on the link.
    pub gateway: Option<IpAddr>,
}

impl NextHop {
    /// The address whose link-layer address a packet to `dst` is sent to.
    pub fn neighbour(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

/// The route the kernel would use for a packet to `dst` (from `source`, when given: policy
/// routing may depend on it); `None` when there is none a packet could take (no route, or an
/// unreachable, blackhole or prohibit one). A source the kernel does not have as its own
/// (netdemux may serve addresses only it knows) is dropped from the question.
pub fn next_hop(dst: IpAddr, source: Option<IpAddr>) -> Result<Option<NextHop>> {
    match ask(dst, source)? {
        None if source.is_some() => ask(dst, None),
        found => Ok(found),
    }
}

fn ask(dst: IpAddr, source: Option<IpAddr>) -> Result<Option<NextHop>> {
    let mut msg = RouteMessage::default();
    let (family, bits) = if dst.is_ipv4() {
        (AddressFamily::Inet, 32)
    } else {
        (AddressFamily::Inet6, 128)
    };
    msg.header.address_family = family;
    msg.header.destination_prefix_length = bits;
    msg.attributes.push(RouteAttribute::Destination(dst.into()));
    if let Some(src) = source.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
        msg.header.source_prefix_length = bits;
        msg.attributes.push(RouteAttribute::Source(src.into()));
    }
    let answers = match request(RouteNetlinkMessage::GetRoute(msg), false) {
        Ok(a) => a,
        // ENETUNREACH, EHOSTUNREACH, EACCES (prohibit), EINVAL: no way there.
        Err(Refusal::Kernel(_)) => return Ok(None),
        Err(Refusal::Other(e)) => return Err(e),
    };
    for answer in answers {
        let RouteNetlinkMessage::NewRoute(route) = answer else {
            continue;
        };
        if route.header.kind != RouteType::Unicast {
            return Ok(None);
        }
        let (mut ifindex, mut gateway) = (None, None);
        for a in &route.attributes {
            match a {
                RouteAttribute::Oif(i) => ifindex = Some(*i),
                RouteAttribute::Gateway(g) => gateway = ip(g),
                _ => {}
            }
        }
        return Ok(ifindex.map(|ifindex| NextHop { ifindex, gateway }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_address_is_no_next_hop() {
        // Needs no privileges: 127.0.0.1 is delivered locally (a `local` route, or no route
        // with lo down), never sent anywhere.
        assert_eq!(next_hop("127.0.0.1".parse().unwrap(), None).unwrap(), None);
    }

    #[test]
    fn the_neighbour_is_the_gateway_or_the_destination() {
        let dst: IpAddr = "198.19.0.7".parse().unwrap();
        let via = NextHop {
            ifindex: 2,
            gateway: Some("198.18.0.1".parse().unwrap()),
        };
        assert_eq!(via.neighbour(dst), "198.18.0.1".parse::<IpAddr>().unwrap());
        let on_link = NextHop {
            ifindex: 2,
            gateway: None,
        };
        assert_eq!(on_link.neighbour(dst), dst);
    }
}
