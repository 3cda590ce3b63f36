//! Keeps a generator thread's program in the kernel's XDP dispatcher for the whole run.
//!
//! BPF_PROG_TEST_RUN puts an XDP program into the kernel's XDP dispatcher when a call starts and
//! takes it out when the call ends (`bpf_prog_change_xdp`); each change waits for an RCU grace
//! period (`synchronize_rcu`) — two per call, ~30 ms on the machines measured, while the
//! generator's core idles. A program attached to a device stays in the dispatcher, and then the
//! calls' changes are only reference counts. So the thread attaches its program, in generic
//! mode, to the loopback device of a network namespace of its own, left down: nothing outside
//! sees it and no frame ever runs it. Dropping the [`Anchor`] (or the process dying) closes the
//! namespace's last reference; the kernel then removes the device and, with it, the attachment.

use std::fs::File;

use anyhow::{Context as _, Result};
use aya::programs::{Xdp, XdpMode};
use nix::sched::{CloneFlags, setns, unshare};

/// The loopback device's index in a new network namespace.
const LOOPBACK: u32 = 1;

/// A program held in the XDP dispatcher (see the module's comment): the private namespace,
/// whose loopback device (and so the attachment) lives as long as this reference. The
/// attachment belongs to the program and also ends when the program is dropped.
pub struct Anchor {
    _netns: File,
}

/// Attaches `prog` to the loopback device of a new network namespace, and returns the calling
/// thread to the namespace it was in (where the frames go out), whatever happened.
pub fn hold(prog: &mut Xdp) -> Result<Anchor> {
    let home = File::open("/proc/thread-self/ns/net").context("cannot open this thread's netns")?;
    unshare(CloneFlags::CLONE_NEWNET)
        .context("cannot create a network namespace (needs CAP_SYS_ADMIN)")?;
    let held = File::open("/proc/thread-self/ns/net")
        .context("cannot open the new netns")
        .and_then(|netns| {
            prog.attach_to_if_index(LOOPBACK, XdpMode::Skb)
                .context("cannot attach the program to the new netns's loopback")?;
            Ok(Anchor { _netns: netns })
        });
    setns(&home, CloneFlags::CLONE_NEWNET)
        .context("cannot return to the interface's network namespace")?;
    held
}
