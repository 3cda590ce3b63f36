//! The other end of a veth pair, as containers have them: when it offloads TX checksums (the
//! default), the kernel hands its TCP and UDP frames over with only the pseudo-header sum in
//! the checksum field — fine for the kernel's own stack, which knows, but not for an AF_XDP
//! consumer, which sees a wrong checksum. netdemux finds the peer (rtnetlink: `IFLA_LINK`, and
//! `IFLA_LINK_NETNSID` matched against the named namespaces) and says how to fix it.

use std::{fs, os::fd::AsRawFd as _, thread};

use anyhow::Result;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage},
    nsid::{NsidAttribute, NsidMessage},
};

use super::{
    iface::Interface,
    netlink::{Refusal, request},
    netns,
};
use crate::xsk::nic;

/// The peer of a veth interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethPeer {
    /// Its name, when netdemux can see it.
    pub name: Option<String>,
    /// The named network namespace it is in (`ip netns`); `None` when it is in this one, or
    /// in one without a name (then `name` is `None` too).
    pub netns: Option<String>,
    /// Whether it offloads TX checksums, when netdemux can see it.
    pub tx_checksum: Option<bool>,
}

/// `(peer ifindex, peer namespace id)` from `RTM_GETLINK` for `ifindex`.
fn link_of(ifindex: u32) -> Result<Option<(u32, Option<i32>)>> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    let answers = match request(RouteNetlinkMessage::GetLink(msg), false) {
        Ok(a) => a,
        Err(Refusal::Kernel(_)) => return Ok(None),
        Err(Refusal::Other(e)) => return Err(e),
    };
    for a in answers {
        let RouteNetlinkMessage::NewLink(link) = a else {
            continue;
        };
        let (mut peer, mut nsid) = (None, None);
        for attr in link.attributes {
            match attr {
                LinkAttribute::Link(i) => peer = Some(i),
                LinkAttribute::LinkNetNsId(id) => nsid = Some(id),
                _ => {}
            }
        }
        return Ok(peer.map(|p| (p, nsid)));
    }
    Ok(None)
}

/// The name of interface `ifindex` in the current namespace.
fn name_of(ifindex: u32) -> Option<String> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    let answers = request(RouteNetlinkMessage::GetLink(msg), false).ok()?;
    answers.into_iter().find_map(|a| match a {
        RouteNetlinkMessage::NewLink(link) => {
            link.attributes.into_iter().find_map(|attr| match attr {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        }
        _ => None,
    })
}

/// The named namespace (`/run/netns/NAME`) that this namespace knows by `nsid`.
fn named_namespace(nsid: i32) -> Option<String> {
    for entry in fs::read_dir("/run/netns").ok()?.flatten() {
        let Ok(file) = fs::File::open(entry.path()) else {
            continue;
        };
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(file.as_raw_fd() as u32));
        let Ok(answers) = request(RouteNetlinkMessage::GetNsId(msg), false) else {
            continue;
        };
        let id = answers.into_iter().find_map(|a| match a {
            RouteNetlinkMessage::NewNsId(m) => {
                m.attributes.into_iter().find_map(|attr| match attr {
                    NsidAttribute::Id(id) => Some(id),
                    _ => None,
                })
            }
            _ => None,
        });
        if id == Some(nsid) {
            return Some(entry.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The peer of `iface`, if `iface` is a veth.
pub fn peer(iface: &Interface) -> Result<Option<VethPeer>> {
    if nic::driver(iface.name()).as_deref() != Some("veth") {
        return Ok(None);
    }
    let Some((peer_index, nsid)) = link_of(iface.ifindex()?)? else {
        return Ok(None);
    };
    let Some(nsid) = nsid else {
        let name = name_of(peer_index);
        let tx_checksum = name.as_deref().and_then(nic::tx_checksum);
        return Ok(Some(VethPeer {
            name,
            netns: None,
            tx_checksum,
        }));
    };
    let Some(ns) = named_namespace(nsid) else {
        return Ok(Some(VethPeer {
            name: None,
            netns: None,
            tx_checksum: None,
        }));
    };
    // Looked at from inside its namespace, on a thread of its own (this one stays here).
    let inside = ns.clone();
    let seen = thread::spawn(move || {
        netns::enter(&inside).ok()?;
        let name = name_of(peer_index)?;
        let tx = nic::tx_checksum(&name);
        Some((name, tx))
    })
    .join()
    .ok()
    .flatten();
    Ok(Some(VethPeer {
        name: seen.as_ref().map(|(n, _)| n.clone()),
        netns: Some(ns),
        tx_checksum: seen.and_then(|(_, tx)| tx),
    }))
}

/// The warning for `iface` when it is a veth whose visible peer offloads TX checksums, with
/// the command that fixes it.
pub fn offload_warning(iface: &Interface) -> Option<String> {
    let p = peer(iface).ok()??;
    if p.tx_checksum != Some(true) {
        return None;
    }
    let name = p.name?;
    let fix = match &p.netns {
        Some(ns) => format!("ip netns exec {ns} ethtool -K {name} tx off"),
        None => format!("ethtool -K {name} tx off"),
    };
    let place = match &p.netns {
        Some(ns) => format!("{name} in namespace {ns}"),
        None => name.clone(),
    };
    Some(format!(
        "the veth peer of {iface} ({place}) offloads TX checksums: its TCP and UDP frames \
         arrive with partial checksums, which netdemux cannot check and drops (counted as \
         checksum_partial) (fix: {fix})"
    ))
}
