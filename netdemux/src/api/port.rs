//! A local port for an outbound TCP connection, reserved the way the kernel would give one: a
//! kernel socket bound to an ephemeral port on the interface's address holds it, so the kernel
//! never hands it to anyone else while netdemux's connection uses it.

use std::{
    net::SocketAddr,
    os::fd::{AsRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    control::{
        iface::Interface,
        kernel_neighbours::{self, Resolution},
        netns,
    },
    xsk::nic,
};

/// A reserved local port, and what the kernel knew of the peer.
pub(super) struct Reserved {
    /// Held, not read: while it is open the kernel keeps the port.
    pub socket: OwnedFd,
    /// The interface's address of the peer's family, and the port.
    pub local: SocketAddr,
    /// The MAC address of the peer (or its gateway), if the kernel knows or finds it.
    pub peer_mac: Option<[u8; 6]>,
}

/// Reserves a UDP port on `ip` in the named network namespace `netns` (entered by the calling
/// thread): the kernel picks a free one, and the returned socket keeps it from others.
pub(super) fn reserve_udp(
    netns: Option<&str>,
    ip: std::net::IpAddr,
) -> Result<std::net::UdpSocket> {
    if let Some(ns) = netns {
        netns::enter(ns)?;
    }
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("cannot reserve a UDP port on {ip}"))
}

/// Reserves a local port on `iface` for a connection to `remote`, in the named network
/// namespace `netns` (entered by the calling thread).
pub(super) fn reserve(
    netns: Option<&str>,
    iface: &Interface,
    remote: SocketAddr,
) -> Result<Reserved> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, bind,
        getsockname, socket,
    };
    if let Some(ns) = netns {
        netns::enter(ns)?;
    }
    let (_, ip) = nic::link_addrs(iface.name(), remote.is_ipv6())?;
    let ip = ip.with_context(|| {
        format!(
            "{iface} has no {} address to connect from",
            if remote.is_ipv6() { "IPv6" } else { "IPv4" }
        )
    })?;
    let family = if remote.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .context("cannot open a socket to reserve a port")?;
    match SocketAddr::new(ip, 0) {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    }
    .with_context(|| format!("cannot reserve a port on {ip}"))?;
    let bound: SockaddrStorage =
        getsockname(fd.as_raw_fd()).context("cannot read the reserved port")?;
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .context("the reserved address has no port")?;
    let peer_mac = match kernel_neighbours::resolve(
        iface.ifindex()?,
        remote.ip(),
        Some(ip),
        Duration::from_millis(900),
    )? {
        Resolution::Mac(mac) => Some(mac),
        Resolution::NoRoute => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NetworkUnreachable,
                format!("no route to {} through {}", remote.ip(), iface.name()),
            )
            .into());
        }
        // The worker asks again before the SYN's retransmissions run out.
        Resolution::Unresolved => None,
    };
    Ok(Reserved {
        socket: fd,
        local: SocketAddr::new(ip, port),
        peer_mac,
    })
}
