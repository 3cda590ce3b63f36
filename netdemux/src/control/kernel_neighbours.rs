//! The kernel's neighbour table (ARP and NDP), read over rtnetlink: the kernel keeps owning
//! address resolution for the interface, and netdemux asks it for a peer's MAC address.

use std::{
    net::{IpAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};
use std::os::fd::AsRawFd as _;

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT: states with a usable link-layer address.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The MAC address the kernel has for `ip` on interface `ifindex`, if it has a usable one.
pub fn lookup(ifindex: u32, ip: IpAddr) -> Result<Option<[u8; 6]>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .context("cannot open an rtnetlink socket")?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("cannot bind the rtnetlink socket")?;
    let family = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    // nlmsghdr (16 bytes) + ndmsg (12 bytes).
    let mut req = Vec::with_capacity(28);
    req.extend_from_slice(&28u32.to_ne_bytes());
    req.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(&[family, 0, 0, 0]);
    req.extend_from_slice(&0i32.to_ne_bytes()); // any interface
    req.extend_from_slice(&[0u8; 4]); // state, flags, type
    send(fd.as_raw_fd(), &req, MsgFlags::empty()).context("rtnetlink send")?;

    let want: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut found = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).context("rtnetlink recv")?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32_at(&buf, off).unwrap_or(0) as usize;
            let kind = u16_at(&buf, off + 4).unwrap_or(0);
            if len < 16 || off + len > n {
                bail!("malformed rtnetlink answer");
            }
            match kind {
                NLMSG_DONE => return Ok(found),
                NLMSG_ERROR => bail!("the kernel refused the neighbour dump"),
                RTM_NEWNEIGH => {
                    let msg = &buf[off + 16..off + len];
                    if let Some(mac) = parse_neigh(msg, ifindex, &want) {
                        found = Some(mac);
                    }
                }
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

/// The MAC of one RTM_NEWNEIGH message body if it is a usable entry for `want` on `ifindex`.
fn parse_neigh(msg: &[u8], ifindex: u32, want: &[u8]) -> Option<[u8; 6]> {
    let msg_ifindex = u32_at(msg, 4)?;
    let state = u16_at(msg, 8)?;
    if msg_ifindex != ifindex || state & NUD_USABLE == 0 {
        return None;
    }
    let (mut dst, mut mac) = (None, None);
    let mut off = 12;
    while off + 4 <= msg.len() {
        let len = u16_at(msg, off)? as usize;
        let kind = u16_at(msg, off + 2)?;
        if len < 4 || off + len > msg.len() {
            return None;
        }
        let data = &msg[off + 4..off + len];
        match kind {
            NDA_DST => dst = Some(data),
            NDA_LLADDR if data.len() == 6 => {
                mac = Some([data[0], data[1], data[2], data[3], data[4], data[5]])
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    (dst? == want).then_some(mac?)
}

/// The MAC address of `ip` on `ifindex`, asking the kernel to resolve it (by sending one
/// datagram to the discard port) when it is not in the table yet; waits up to `timeout`.
pub fn resolve(ifindex: u32, ip: IpAddr, timeout: Duration) -> Result<[u8; 6]> {
    if let Some(mac) = lookup(ifindex, ip)? {
        return Ok(mac);
    }
    let any: IpAddr = if ip.is_ipv4() {
        [0, 0, 0, 0].into()
    } else {
        [0u16; 8].into()
    };
    if let Ok(sock) = UdpSocket::bind((any, 0)) {
        let _ = sock.send_to(b"", (ip, 9));
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(mac) = lookup(ifindex, ip)? {
            return Ok(mac);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the kernel could not resolve {ip} to a MAC address on this interface (no ARP/ND answer)")
}
