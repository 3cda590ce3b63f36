//! `--netns NAME`: run a command against a named network namespace, like `ip -n NAME`.
//!
//! Only the network namespace is switched (setns on this thread, before anything else runs);
//! the mount namespace stays the host's, so pins go to the host's bpffs and outlive the command.

use std::fs::File;

use anyhow::{Context as _, Result, bail};
use nix::sched::{CloneFlags, setns};

/// Moves the calling thread into the named network namespace `name`.
pub fn enter(name: &str) -> Result<()> {
    let shown = name.escape_debug();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("'{shown}' is not a network namespace name (`ip netns list` shows them)");
    }
    let file = ["/run/netns", "/var/run/netns"]
        .iter()
        .find_map(|dir| File::open(format!("{dir}/{name}")).ok());
    let Some(file) = file else {
        bail!("no network namespace named '{shown}' (`ip netns list` shows them)");
    };
    setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| {
        format!("cannot enter network namespace '{shown}': run as root (CAP_SYS_ADMIN)")
    })
}
