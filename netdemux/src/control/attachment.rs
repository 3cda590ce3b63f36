//! An attachment reopened from its pins: the maps, what was recorded when it was made, and
//! its link — refused when the state is missing, from an incompatible build, or left behind by
//! an interface that is gone.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use netdemux_common::StateInfo;

use super::{
    iface::Interface,
    lock::StateLock,
    maps::DemuxMaps,
    state::{check_info, pinned_link},
    sys,
};

/// An attachment reopened from its pins.
pub struct Attachment {
    /// Its state directory.
    pub dir: PathBuf,
    /// The interface it serves.
    pub iface: Interface,
    /// The pinned maps.
    pub maps: DemuxMaps,
    /// What was recorded when it was attached.
    pub info: StateInfo,
    /// The pinned link, as the kernel reports it.
    pub link: Option<sys::XdpLinkInfo>,
}

impl Attachment {
    /// Takes its interface's state lock ([`StateLock`]), held until dropped: serialises
    /// changes of the binding table (and its port counts) with every other state change.
    pub fn lock(&self) -> Result<StateLock> {
        StateLock::acquire(&self.iface)
    }
}

/// True when `iface`'s state directory provably belongs to an interface that is gone or was
/// replaced: it holds this build's layout, and its pinned link is not attached to the
/// interface of that name now (or there is none).
pub fn proven_stale(iface: &Interface) -> bool {
    let Ok(dir) = iface.state_dir() else {
        return false;
    };
    if !dir.exists() {
        return false;
    }
    let Ok(maps) = DemuxMaps::open_pinned(dir) else {
        return false;
    };
    let Ok(info) = maps.read_info() else {
        return false;
    };
    if check_info(&info, dir, iface.name()).is_err() {
        return false;
    }
    let current = iface.ifindex().ok();
    let live = pinned_link(dir).is_some_and(|l| l.ifindex != 0 && Some(l.ifindex) == current);
    !live || current != Some(info.ifindex)
}

/// Reopens the attachment of `iface`, refusing state that is missing, from an incompatible
/// build, or left behind by an interface that is gone.
pub fn open(iface: &Interface) -> Result<Attachment> {
    let dir = iface.state_dir()?;
    if !dir.exists() {
        iface.ifindex()?; // say "no such interface" first if that is the real problem
        bail!(
            "netdemux is not attached to {iface} in this network namespace: run \
             `netdemux attach --iface {iface}` first (`netdemux status` lists attachments)"
        );
    }
    let maps = DemuxMaps::open_pinned(dir).with_context(|| {
        format!("the state of {iface} is damaged: run `netdemux detach --iface {iface}`, then attach again")
    })?;
    let info = maps.read_info()?;
    check_info(&info, dir, iface.name())?;
    let link = pinned_link(dir);
    let current = iface.ifindex().ok();
    let live = link.is_some_and(|l| l.ifindex != 0 && Some(l.ifindex) == current);
    if !live || current != Some(info.ifindex) {
        bail!(
            "the state of {iface} is stale (the interface it was attached to is gone or was \
             replaced): run `netdemux detach --iface {iface}` to remove it, then attach again"
        );
    }
    Ok(Attachment {
        dir: dir.to_path_buf(),
        iface: iface.clone(),
        maps,
        info,
        link,
    })
}
