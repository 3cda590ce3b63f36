//! Checks that the process may use BPF and change interfaces, before it tries and half-fails.

use anyhow::{Result, bail};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Fails with a one-line hint unless the process has CAP_NET_ADMIN and CAP_BPF (or CAP_SYS_ADMIN,
/// which implies it). `what` names the command for the message.
pub fn require(what: &str) -> Result<()> {
    let caps = effective_caps();
    let bpf = has(caps, CAP_BPF) || has(caps, CAP_SYS_ADMIN);
    if !(bpf && has(caps, CAP_NET_ADMIN)) {
        bail!(
            "`netdemux {what}` needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo, or grant \
             those capabilities"
        );
    }
    Ok(())
}
