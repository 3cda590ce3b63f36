//! The interface a command acts on, resolved once at the boundary (the CLI, `StackBuilder`,
//! the generator): its name checked the way the kernel checks it, its index if the link exists,
//! the network namespace it was resolved in, and where its pinned state lives. Everything below
//! takes this value instead of a name to check and look up again.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::state;

/// A network interface as found in the current network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    name: String,
    /// Its index, or `None` when no link of that name exists (its state may still, stale).
    ifindex: Option<u32>,
    /// The namespace's folder name under the state root: `init` or `netns-<inode>`.
    netns_key: String,
    /// The namespace's inode.
    netns_inode: u64,
    /// Where its pinned state lives (whether or not there is any); `None` for an interface
    /// resolved only to send on ([`Interface::link`]).
    state_dir: Option<PathBuf>,
}

impl Interface {
    /// Resolves `name` in the calling thread's network namespace. Refuses names the kernel
    /// would refuse; a link that does not exist is not refused here (its state may be left
    /// over): [`Interface::ifindex`] says so when the link is needed.
    pub fn resolve(name: &str) -> Result<Interface> {
        let mut iface = Interface::find(name)?;
        iface.state_dir = Some(
            state::root()?
                .join(&iface.netns_key)
                .join(state::encode_dir_name(name)),
        );
        Ok(iface)
    }

    /// Resolves `name` and requires the link to exist.
    pub fn existing(name: &str) -> Result<Interface> {
        let iface = Interface::resolve(name)?;
        iface.ifindex()?;
        Ok(iface)
    }

    /// Resolves an existing link to send on, without its state (which needs the BPF
    /// filesystem: `netdemux gen` runs where there is none, e.g. under `ip netns exec`).
    pub fn link(name: &str) -> Result<Interface> {
        let iface = Interface::find(name)?;
        iface.ifindex()?;
        Ok(iface)
    }

    fn find(name: &str) -> Result<Interface> {
        state::check_iface_name(name)?;
        let netns_inode = state::netns_inode()?;
        Ok(Interface {
            name: name.to_string(),
            ifindex: nix::net::if_::if_nametoindex(name).ok(),
            netns_key: state::netns_key_of(netns_inode),
            netns_inode,
            state_dir: None,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its index; an error that says how to find the right name when there is no such link.
    pub fn ifindex(&self) -> Result<u32> {
        match self.ifindex {
            Some(i) => Ok(i),
            None => bail!(
                "no interface named '{}' in this network namespace (`ip link` lists them; \
                 --netns NAME selects another namespace)",
                self.name
            ),
        }
    }

    /// True when the link existed when it was resolved.
    pub fn exists(&self) -> bool {
        self.ifindex.is_some()
    }

    /// The namespace's folder name under the state root (`init` or `netns-<inode>`).
    pub fn netns_key(&self) -> &str {
        &self.netns_key
    }

    /// The inode of the network namespace it was resolved in.
    pub fn netns_inode(&self) -> u64 {
        self.netns_inode
    }

    /// Where its pinned state lives.
    pub fn state_dir(&self) -> Result<&Path> {
        match &self.state_dir {
            Some(dir) => Ok(dir),
            None => bail!("{} was resolved without its state", self.name),
        }
    }
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}
