//! What the NIC says about itself before AF_XDP sockets go on it: its number of RX queues and the
//! receive offloads that interfere with AF_XDP (ethtool ioctls, in the current network namespace).

use std::{io, net::IpAddr, os::fd::AsRawFd as _};

use anyhow::{Context as _, Result};

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ifreq`: the interface name, then one arm of its union (`T`), padded beyond the
/// kernel's 40 bytes.
#[repr(C)]
struct IfReq<T> {
    name: [u8; 16],
    arm: T,
    _pad: [u8; 24],
}

/// Runs the interface ioctl `request` on `iface` with `arm` as the union's value (in the
/// current network namespace); returns the union's value after it.
fn ifreq_ioctl<T: Copy>(iface: &str, request: libc::c_ulong, arm: T) -> io::Result<T> {
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut req = IfReq {
        name: [0; 16],
        arm,
        _pad: [0; 24],
    };
    let bytes = iface.as_bytes();
    if bytes.len() >= req.name.len() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: an interface ioctl with a valid, NUL-terminated ifreq larger than the kernel's;
    // the callers pass the arm the request reads and writes (for SIOCETHTOOL a pointer to a
    // live ethtool command struct of the layout its command number implies).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req as *mut IfReq<T>) };
    if rc == 0 {
        Ok(req.arm)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ethtool<T>(iface: &str, cmd: &mut T) -> io::Result<()> {
    ifreq_ioctl(
        iface,
        libc::SIOCETHTOOL,
        (cmd as *mut T).cast::<libc::c_void>(),
    )
    .map(|_| ())
}

/// The MTU of `iface` in the current network namespace (SIOCGIFMTU: /sys/class/net shows the
/// namespace /sys was mounted in, which a process that entered another one with setns(2) —
/// `--netns` — does not see).
pub fn mtu(iface: &str) -> io::Result<u32> {
    ifreq_ioctl(iface, libc::SIOCGIFMTU, 0 as libc::c_int).map(|m| m as u32)
}

/// Number of RX queues of `iface` (RX-only plus combined channels); 1 when the driver does not
/// report channels.
pub fn rx_queues(iface: &str) -> u32 {
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count.
    let mut ch = [0u32; 9];
    ch[0] = ETHTOOL_GCHANNELS;
    match ethtool(iface, &mut ch) {
        Ok(()) => (ch[5] + ch[8]).max(1),
        Err(_) => 1,
    }
}

/// The name of `iface`'s driver (`veth`, `ice`, ...), if it reports one.
pub fn driver(iface: &str) -> Option<String> {
    // struct ethtool_drvinfo: cmd, then driver[32], ... (196 bytes in all).
    let mut info = [0u32; 49];
    info[0] = ETHTOOL_GDRVINFO;
    ethtool(iface, &mut info).ok()?;
    let bytes: Vec<u8> = info[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// Whether `iface` offloads the TCP/UDP checksums of what it sends (`ethtool -K IF tx`).
pub fn tx_checksum(iface: &str) -> Option<bool> {
    let mut v = [ETHTOOL_GTXCSUM, 0u32];
    ethtool(iface, &mut v).ok().map(|()| v[1] != 0)
}

/// Receive offloads that matter to AF_XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Generic receive offload (`ethtool -K IF gro`), if the driver reports it.
    pub gro: Option<bool>,
    /// Large receive offload (`ethtool -K IF lro`), if the driver reports it.
    pub lro: Option<bool>,
}

/// Reads the GRO and LRO settings of `iface`.
pub fn offloads(iface: &str) -> Offloads {
    let mut gro = [ETHTOOL_GGRO, 0u32];
    let mut flags = [ETHTOOL_GFLAGS, 0u32];
    Offloads {
        gro: ethtool(iface, &mut gro).ok().map(|()| gro[1] != 0),
        lro: ethtool(iface, &mut flags)
            .ok()
            .map(|()| flags[1] & ETH_FLAG_LRO != 0),
    }
}

/// Warnings for offload settings that break or bypass AF_XDP in the given XDP mode, each with
/// the command that fixes it.
pub fn offload_warnings(iface: &str, skb_mode: bool) -> Vec<String> {
    let o = offloads(iface);
    let mut out = Vec::new();
    if o.lro == Some(true) {
        out.push(format!(
            "LRO is on for {iface}: the NIC merges segments before XDP sees them, so merged \
             frames cannot be steered (fix: ethtool -K {iface} lro off)"
        ));
    }
    if skb_mode && o.gro == Some(true) {
        out.push(format!(
            "GRO is on for {iface} and XDP runs in skb mode, after GRO: merged TCP/UDP segments \
             reach the program as one oversized frame (fix: ethtool -K {iface} gro off, or use \
             native mode)"
        ));
    }
    out
}

/// The MAC address of `iface`, and its first global address of the given family.
pub fn link_addrs(iface: &str, v6: bool) -> Result<([u8; 6], Option<IpAddr>)> {
    let mut mac = None;
    let mut ip = None;
    for a in nix::ifaddrs::getifaddrs().context("cannot list interface addresses")? {
        if a.interface_name != iface {
            continue;
        }
        let Some(addr) = a.address else { continue };
        if let Some(link) = addr.as_link_addr() {
            mac = link.addr();
        } else if let (Some(sin), false) = (addr.as_sockaddr_in(), v6) {
            ip.get_or_insert(IpAddr::V4(sin.ip()));
        } else if let (Some(sin6), true) = (addr.as_sockaddr_in6(), v6) {
            let a6 = sin6.ip();
            if a6.segments()[0] & 0xffc0 != 0xfe80 {
                ip.get_or_insert(IpAddr::V6(a6));
            }
        }
    }
    Ok((
        mac.with_context(|| format!("{iface} has no MAC address"))?,
        ip,
    ))
}

/// The MAC address of `iface`.
pub fn mac_address(iface: &str) -> Result<[u8; 6]> {
    Ok(link_addrs(iface, false)?.0)
}

/// The MSS the TCP services announce on `iface`: its MTU less 40 bytes of IPv4 and TCP
/// headers, no more than a received packet of `rx_room` bytes holds (`XskConfig::rx_room`;
/// IPv6 connections announce 20 bytes less).
pub fn tcp_mss(iface: &str, rx_room: u32) -> u16 {
    let mtu = mtu(iface).unwrap_or(1500);
    // Ethernet, two VLAN tags, and the largest IPv6 + TCP headers must fit in a frame.
    let frame_limit = rx_room.saturating_sub(14 + 8 + 40 + 60) + 40;
    (mtu.min(frame_limit).clamp(576, 65535) - 40) as u16
}
