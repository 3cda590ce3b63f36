//! Where pinned state lives and how it is found again.
//!
//! Layout: `<bpffs>/netdemux/<netns>/<iface>/{binds,counters,xsks,info,link}` where `<netns>` is
//! `init` for the initial network namespace and `netns-<inode>` for any other, so the same
//! interface name in two namespaces never shares state. A state directory is built under a
//! temporary name and renamed into place, so a reader sees all of it or none of it.
//!
//! `ip netns exec` gives each command a private mount namespace with a fresh `/sys`, whose
//! `/sys/fs/bpf` would vanish with the command. netdemux then pins into the bpffs of the nearest
//! ancestor process outside that mount namespace (through `/proc/<pid>/root`), so state made with
//! `--netns NAME` and state made under `ip netns exec NAME` are the same state; when no such view
//! exists it refuses and says to use `--netns`.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use netdemux_common::{LAYOUT_VERSION, STATE_MAGIC, StateInfo, attach_mode};
use nix::{
    mount::{MsFlags, mount},
    sys::statfs::statfs,
};

use super::{maps::pin_names, sys};

/// `f_type` of a BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where the bpffs is conventionally mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

fn inode(path: &str) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

/// The nearest ancestor process in another mount namespace than ours, if one is visible: the
/// process that ran `ip netns exec` (or `unshare -m`), whose view of the bpffs is the host's.
fn ancestor_in_other_mount_ns() -> Option<u32> {
    let own = fs::read_link("/proc/self/ns/mnt").ok()?;
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..64 {
        if pid <= 1 {
            return None;
        }
        let mnt = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
        if mnt != own {
            return Some(pid);
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the ")" that ends the command name: state, ppid, ...
        let after = &stat[stat.rfind(')')? + 1..];
        pid = after.split_whitespace().nth(1)?.parse().ok()?;
    }
    None
}

/// The directory all netdemux state lives under, mounting the bpffs first if needed.
pub fn root() -> Result<PathBuf> {
    let bpffs = Path::new(BPFFS);
    if let Some(pid) = ancestor_in_other_mount_ns() {
        let host = Path::new("/proc")
            .join(pid.to_string())
            .join("root")
            .join("sys/fs/bpf");
        if is_bpffs(&host) {
            return Ok(host.join("netdemux"));
        }
        if !is_bpffs(bpffs) {
            bail!(
                "this command runs in a private mount namespace (`ip netns exec`?) whose {BPFFS} \
                 would vanish with it: use `netdemux --netns NAME ...` instead, or mount the BPF \
                 filesystem on the host first (mount -t bpf bpf {BPFFS})"
            );
        }
    }
    if !is_bpffs(bpffs) {
        mount(
            Some("bpf"),
            bpffs,
            Some("bpf"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0700"),
        )
        .with_context(|| {
            format!(
                "cannot mount the BPF filesystem on {BPFFS}: run as root, or mount it yourself \
                 (mount -t bpf bpf {BPFFS})"
            )
        })?;
    }
    Ok(bpffs.join("netdemux"))
}

/// Inode of the initial network namespace: a kernel constant (`PROC_NET_INIT_INO`).
const INIT_NET_INODE: u64 = 0xefff_fff9;

/// The folder name of the network namespace with inode `inode`: `init` or `netns-<inode>`.
pub fn netns_key_of(inode: u64) -> String {
    if inode == INIT_NET_INODE {
        "init".to_string()
    } else {
        format!("netns-{inode}")
    }
}

/// The inode of the current network namespace.
pub fn netns_inode() -> Result<u64> {
    inode("/proc/thread-self/ns/net").context("cannot read /proc/thread-self/ns/net")
}

/// Checks an interface name the way the kernel does, since it becomes a path component.
pub fn check_iface_name(iface: &str) -> Result<()> {
    let shown = iface.escape_debug();
    let ok = !iface.is_empty()
        && iface.len() < 16
        && iface != "."
        && iface != ".."
        && !iface.contains(['/', ':', ' ', '\t', '\n']);
    if !ok {
        bail!("'{shown}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
    }
    Ok(())
}

/// The bpffs refuses names with dots (reserved by the kernel), which interface names may have
/// (`eth0.100`): directory names percent-encode `.` and `%`.
pub fn encode_dir_name(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2e")
}

/// Inverse of [`encode_dir_name`]; `None` for names it never produces (e.g. temporary ones).
pub fn decode_dir_name(name: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("%25") => out.push('%'),
            Some("%2e") => out.push('.'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Prefix of a state directory under construction (never produced by [`encode_dir_name`]).
pub const TMP_PREFIX: &str = "%tmp-";

/// Creates `dir` and its parents, root-only.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// The link pinned in `dir` and what the kernel says of it; `None` if there is no readable pin.
pub fn pinned_link(dir: &Path) -> Option<sys::XdpLinkInfo> {
    let fd = sys::obj_get(&dir.join(pin_names::LINK)).ok()?;
    sys::xdp_link_info(&fd).ok()
}

/// The attach mode's name.
pub fn mode_name(mode: u32) -> &'static str {
    match mode {
        attach_mode::NATIVE => "native",
        attach_mode::SKB => "skb",
        _ => "unknown",
    }
}

/// Checks that `info` describes state this build can use.
pub fn check_info(info: &StateInfo, dir: &Path, iface: &str) -> Result<()> {
    if info.magic != STATE_MAGIC {
        bail!(
            "{} holds incomplete or foreign state: run `netdemux detach --iface {iface}`, then attach again",
            dir.display()
        );
    }
    if info.layout_version != LAYOUT_VERSION {
        bail!(
            "the state of {iface} was made by a netdemux with state layout v{} (this build: v{}): \
             run `netdemux detach --iface {iface}`, then attach again",
            info.layout_version,
            LAYOUT_VERSION
        );
    }
    Ok(())
}

/// Every state directory: `(netns folder, interface, path)`, sorted.
pub fn all_dirs() -> Result<Vec<(String, String, PathBuf)>> {
    let root = root()?;
    let mut out = Vec::new();
    let Ok(namespaces) = fs::read_dir(&root) else {
        return Ok(out);
    };
    for ns in namespaces.flatten() {
        let Ok(ifaces) = fs::read_dir(ns.path()) else {
            continue;
        };
        for iface in ifaces.flatten() {
            let Some(name) = decode_dir_name(&iface.file_name().to_string_lossy()) else {
                continue; // an attach in progress, or one that died half-way
            };
            out.push((
                ns.file_name().to_string_lossy().into_owned(),
                name,
                iface.path(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// Names of the named network namespaces (`ip netns add`), keyed by their folder name.
pub fn named_netns() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["/run/netns", "/var/run/netns"] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(meta) = fs::metadata(e.path()) {
                let key = format!("netns-{}", meta.ino());
                let name = e.file_name().to_string_lossy().into_owned();
                if !out.iter().any(|(k, _)| *k == key) {
                    out.push((key, name));
                }
            }
        }
    }
    out
}

/// Removes `dir` if it is empty (used to tidy parents after a detach).
pub fn remove_if_empty(dir: &Path) {
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_have_no_dots_and_round_trip() {
        for name in ["eth0", "eth0.100", "a%b", "%2e", "x.y.z", "veth-Ab_1"] {
            let enc = encode_dir_name(name);
            assert!(!enc.contains('.'), "{enc}");
            assert_eq!(decode_dir_name(&enc).as_deref(), Some(name));
        }
        assert_eq!(decode_dir_name(&format!("{TMP_PREFIX}12-eth0")), None);
    }

    #[test]
    fn interface_names_are_checked_like_the_kernel() {
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            assert!(check_iface_name(bad).is_err(), "{bad:?}");
        }
        for good in ["eth0", "eth0.100", "veth-test_1", "fifteen-chars-x"] {
            assert!(check_iface_name(good).is_ok(), "{good:?}");
        }
    }
}
