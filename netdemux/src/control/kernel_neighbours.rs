//! The kernel's neighbour table (ARP and NDP), read over rtnetlink: the kernel keeps owning
//! address resolution for the interface, and netdemux asks it where to send — through the
//! route's gateway for a destination off the link, as the kernel itself would.

use std::{
    net::{IpAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::Result;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};

use super::{
    kernel_routes,
    netlink::{Refusal, request},
};
pub use crate::stack::neighbour_cache::Resolution;

/// True for entry states with a link-layer address worth sending to.
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Noarp
            | NeighbourState::Permanent
    )
}

/// The MAC address the kernel has for `ip` on interface `ifindex`, if it has a usable one.
pub fn lookup(ifindex: u32, ip: IpAddr) -> Result<Option<[u8; 6]>> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let answers = match request(RouteNetlinkMessage::GetNeighbour(msg), true) {
        Ok(a) => a,
        Err(Refusal::Kernel(e)) => return Err(e.into()),
        Err(Refusal::Other(e)) => return Err(e),
    };
    for answer in answers {
        let RouteNetlinkMessage::NewNeighbour(n) = answer else {
            continue;
        };
        if n.header.ifindex != ifindex || !usable(n.header.state) {
            continue;
        }
        let (mut dst, mut mac) = (None, None);
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    dst = Some(IpAddr::from(*v4))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    dst = Some(IpAddr::from(*v6))
                }
                NeighbourAttribute::LinkLocalAddress(l) if l.len() == 6 => {
                    mac = Some([l[0], l[1], l[2], l[3], l[4], l[5]])
                }
                _ => {}
            }
        }
        if dst == Some(ip)
            && let Some(mac) = mac
        {
            return Ok(Some(mac));
        }
    }
    Ok(None)
}

/// Where to send a packet to `dst` (from `source`, when known) on interface `ifindex`: the
/// route's next hop, resolved to a MAC address — asking the kernel to resolve it (by sending it
/// one datagram to the discard port) when its table has no entry yet, and waiting up to
/// `timeout`.
pub fn resolve(
    ifindex: u32,
    dst: IpAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<Resolution> {
    let Some(hop) = kernel_routes::next_hop(dst, source)? else {
        return Ok(Resolution::NoRoute);
    };
    if hop.ifindex != ifindex {
        return Ok(Resolution::NoRoute);
    }
    let next = hop.neighbour(dst);
    if let Some(mac) = lookup(ifindex, next)? {
        return Ok(Resolution::Mac(mac));
    }
    let any: IpAddr = if dst.is_ipv4() {
        [0, 0, 0, 0].into()
    } else {
        [0u16; 8].into()
    };
    if let Ok(sock) = UdpSocket::bind((any, 0)) {
        let _ = sock.send_to(b"", (dst, 9));
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(mac) = lookup(ifindex, next)? {
            return Ok(Resolution::Mac(mac));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Resolution::Unresolved)
}
