//! Attaching the program to an interface, detaching it, and describing every attachment.
//!
//! The program stays attached through a pinned `bpf_link`, not through the process that attached
//! it: removing the link pin is what detaches. An attach that fails at any step removes all it
//! made, so the interface is never left half-configured.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::programs::{ProgramError, XdpMode, links::FdLink};
use netdemux_common::{LAYOUT_VERSION, STATE_MAGIC, StateInfo, attach_mode, map_names};
use serde::Serialize;

use super::{
    attachment,
    iface::Interface,
    lock::StateLock,
    maps::{DemuxMaps, pin_names},
    object, state, sys,
};

/// The attach mode the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeRequest {
    /// Native if the driver supports it, otherwise skb; the result says which.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Skb,
}

/// The outcome of a successful attach.
#[derive(Debug, Serialize)]
pub struct Attached {
    /// Interface.
    pub iface: String,
    /// `native` or `skb`: the mode actually obtained.
    pub mode: &'static str,
    /// Kernel id of the program.
    pub program_id: u32,
    /// Kernel id of the link.
    pub link_id: u32,
    /// Capacity of the binding table.
    pub max_bindings: u32,
    /// Where the pins are.
    pub pins: PathBuf,
    /// Why the mode differs from the one preferred, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Removes a half-built state directory unless disarmed.
struct Cleanup<'a>(Option<&'a Path>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(dir) = self.0 {
            let _ = remove_state(dir);
        }
    }
}

fn attach_error(err: ProgramError, iface: &str, mode: XdpMode) -> anyhow::Error {
    let errno = match &err {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::EBUSY) | Some(libc::EEXIST) => anyhow!(
            "{iface} already has an XDP program that netdemux did not attach (`ip link show dev \
             {iface}` shows it): remove it first (ip link set dev {iface} xdp off)"
        ),
        Some(libc::EOPNOTSUPP) if mode == XdpMode::Driver => anyhow!(
            "the driver of {iface} does not support native XDP: use --mode skb (or --mode auto)"
        ),
        _ => anyhow::Error::new(err).context(format!("cannot attach XDP to {iface}")),
    }
}

/// Loads the program, attaches it to `iface` and pins its maps and link.
pub fn attach(iface: &Interface, request: ModeRequest, max_bindings: u32) -> Result<Attached> {
    let lock = StateLock::acquire(iface)?;
    attach_locked(&lock, iface, request, max_bindings)
}

/// [`attach`], with `iface`'s state lock held.
pub fn attach_locked(
    lock: &StateLock,
    iface: &Interface,
    request: ModeRequest,
    max_bindings: u32,
) -> Result<Attached> {
    if max_bindings == 0 {
        bail!("--max-bindings must be at least 1");
    }
    let ifindex = iface.ifindex()?;
    remove_if_stale_locked(lock, iface)?;
    let final_dir = iface.state_dir()?;
    if final_dir.exists() {
        return Err(match attachment::open(iface) {
            Ok(a) => anyhow!(
                "netdemux is already attached to {iface} ({} mode, program {}): use it as it is, \
                 or `netdemux detach --iface {iface}` first",
                state::mode_name(a.info.mode),
                a.link.map(|l| l.prog_id).unwrap_or(0)
            ),
            Err(e) => e,
        });
    }
    let parent = final_dir
        .parent()
        .context("state directory has no parent")?;
    state::create_dir(parent)?;
    let tmp = parent.join(format!(
        "{}{}-{}",
        state::TMP_PREFIX,
        std::process::id(),
        state::encode_dir_name(iface.name())
    ));
    let _ = fs::remove_dir_all(&tmp);
    state::create_dir(&tmp)?;
    let mut cleanup = Cleanup(Some(&tmp));

    let mut ebpf = object::open(max_bindings)?;
    let mut maps = DemuxMaps::take(&mut ebpf, Some(&tmp))?;
    let program = object::load_demux(&mut ebpf)?;

    let modes: &[XdpMode] = match request {
        ModeRequest::Auto => &[XdpMode::Driver, XdpMode::Skb],
        ModeRequest::Native => &[XdpMode::Driver],
        ModeRequest::Skb => &[XdpMode::Skb],
    };
    let mut note = None;
    let mut attached = None;
    for &mode in modes {
        match program.attach_to_if_index(ifindex, mode) {
            Ok(id) => {
                attached = Some((id, mode));
                break;
            }
            Err(e) => {
                let err = attach_error(e, iface.name(), mode);
                if request == ModeRequest::Auto && mode == XdpMode::Driver {
                    note = Some(format!(
                        "native mode refused ({err:#}); attached in skb mode"
                    ));
                    continue;
                }
                return Err(err);
            }
        }
    }
    let (link_id, mode) = attached.context("no attach mode was tried")?;
    let link = program.take_link(link_id)?;
    let link: FdLink = link.try_into().map_err(|_| {
        anyhow!("this kernel attached {iface} without a bpf_link, which netdemux needs to pin")
    })?;
    let pinned = link
        .pin(tmp.join(pin_names::LINK))
        .with_context(|| format!("cannot pin the XDP link in {}", tmp.display()))?;
    drop(pinned); // the pin keeps the link (and so the attachment) alive

    let info = StateInfo {
        magic: STATE_MAGIC,
        layout_version: LAYOUT_VERSION,
        ifindex,
        mode: if mode == XdpMode::Driver {
            attach_mode::NATIVE
        } else {
            attach_mode::SKB
        },
        netns_inode: iface.netns_inode(),
        object_hash: object::object_hash(),
        max_bindings,
        log: 0,
    };
    maps.write_info(&info)?;
    let link = state::pinned_link(&tmp).context("the pinned XDP link cannot be read back")?;
    fs::rename(&tmp, final_dir)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), final_dir.display()))?;
    cleanup.0 = None;
    tracing::info!(
        iface = iface.name(),
        mode = state::mode_name(info.mode),
        program = link.prog_id,
        "attached"
    );
    Ok(Attached {
        iface: iface.name().to_string(),
        mode: state::mode_name(info.mode),
        program_id: link.prog_id,
        link_id: link.id,
        max_bindings,
        pins: final_dir.to_path_buf(),
        note,
    })
}

/// The outcome of a successful upgrade.
#[derive(Debug, Serialize)]
pub struct Upgraded {
    /// Interface.
    pub iface: String,
    /// The program that ran before.
    pub old_program_id: u32,
    /// The program that runs now.
    pub program_id: u32,
    /// The link, unchanged.
    pub link_id: u32,
    /// Bindings kept.
    pub bindings: usize,
}

/// Replaces the attached program with this build's, atomically (`bpf_link_update`): the pinned
/// maps — bindings, counters, XSKMAP — are reused as they are, so traffic and a running daemon
/// go on undisturbed. Refused for state of another layout version.
pub fn upgrade(iface: &Interface) -> Result<Upgraded> {
    let _lock = StateLock::acquire(iface)?;
    let a = attachment::open(iface)?;
    let old = a.link.context("the attachment has no readable link")?;
    let bindings = a.maps.bindings()?.len();
    let mut loader = aya::EbpfLoader::new();
    let pins: Vec<(&str, PathBuf)> = crate::control::maps::PINNED_MAPS
        .into_iter()
        .map(|(name, file)| (name, a.dir.join(file)))
        .collect();
    for (name, path) in &pins {
        loader.map_pin_path(name, path.as_path());
    }
    object::sized(&mut loader, a.info.max_bindings);
    // Loading writes the object's global data into the reused `.bss` map: give it the binding
    // set in use, so the running program never sees the selector move (the lock keeps it put).
    let active = a.maps.active_set()? as u32;
    loader.override_global(map_names::ACTIVE_SYMBOL, &active, true);
    let mut ebpf = loader
        .load(object::OBJECT)
        .context("cannot load this build's eBPF object onto the pinned maps")?;
    let program = object::load_demux(&mut ebpf)?;
    let pinned = aya::programs::links::PinnedLink::from_pin(a.dir.join(pin_names::LINK))
        .context("cannot open the pinned XDP link")?;
    let link = aya::programs::xdp::XdpLink::try_from(FdLink::from(pinned))
        .context("the pinned link is not an XDP link")?;
    program
        .attach_to_link(link)
        .with_context(|| format!("cannot replace the program on {iface}"))?;
    let mut maps = a.maps;
    let mut info = a.info;
    info.object_hash = object::object_hash();
    maps.write_info(&info)?;
    let now = state::pinned_link(&a.dir).context("the pinned link cannot be read back")?;
    Ok(Upgraded {
        iface: iface.name().to_string(),
        old_program_id: old.prog_id,
        program_id: now.prog_id,
        link_id: now.id,
        bindings,
    })
}

/// The outcome of a successful detach.
#[derive(Debug, Serialize)]
pub struct Detached {
    /// Interface.
    pub iface: String,
    /// The link that was removed, if one was still pinned.
    pub link_id: Option<u32>,
    /// True when the state was stale (the interface it served was gone).
    pub stale: bool,
}

/// Detaches from `iface` and removes every pin (also of state whose interface is gone).
pub fn detach(iface: &Interface) -> Result<Detached> {
    let lock = StateLock::acquire(iface)?;
    detach_locked(&lock, iface)
}

/// [`detach`], with `iface`'s state lock held.
pub fn detach_locked(_lock: &StateLock, iface: &Interface) -> Result<Detached> {
    let dir = iface.state_dir()?;
    if !dir.exists() {
        bail!(
            "netdemux is not attached to {iface} in this network namespace: nothing to detach \
             (`netdemux status` lists attachments)"
        );
    }
    let link = state::pinned_link(dir);
    let stale = attachment::open(iface).is_err();
    remove_state(dir)?;
    if let Some(link) = link {
        wait_link_gone(link.id, iface.name())?;
    }
    tracing::info!(iface = iface.name(), stale, "detached");
    Ok(Detached {
        iface: iface.name().to_string(),
        link_id: link.map(|l| l.id),
        stale,
    })
}

/// Removes `iface`'s state when it provably belongs to an interface that is gone or was
/// replaced (a container's veth deleted and made again), saying so in one line; `iface`'s state
/// lock is held. True when it did.
pub fn remove_if_stale_locked(_lock: &StateLock, iface: &Interface) -> Result<bool> {
    if !attachment::proven_stale(iface) {
        return Ok(false);
    }
    remove_state(iface.state_dir()?)?;
    tracing::warn!(
        "removed the stale state of {iface}: the interface it was attached to is gone or was \
         replaced"
    );
    Ok(true)
}

/// Removes a state directory and then its parents if they became empty.
pub fn remove_state(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    if let Some(ns) = dir.parent() {
        state::remove_if_empty(ns);
        if let Some(root) = ns.parent() {
            state::remove_if_empty(root);
        }
    }
    Ok(())
}

/// Waits until the kernel has freed link `id` (it does so shortly after its last reference goes).
fn wait_link_gone(id: u32, iface: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match sys::link_by_id(id) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
            _ if Instant::now() >= deadline => bail!(
                "the pins of {iface} are removed, but its XDP link {id} is still held open by a \
                 running process (a `netdemux run` daemon?): stop that process to detach"
            ),
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Removes every state directory that is provably stale — its link is gone or no longer on an
/// interface (the interface or its namespace went), each checked again under its state lock —
/// and half-built ones left by attaches that died. A live attachment is never touched, not
/// even one made by another netdemux build (`detach` removes that).
pub fn gc() -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for (ns_key, iface, dir) in state::all_dirs()? {
        let _lock = StateLock::acquire_in(&ns_key, &iface)?;
        if dir.exists() && liveness(&dir) == Liveness::Stale {
            remove_state(&dir)?;
            removed.push(dir);
        }
    }
    // Directories of attaches in progress whose process is gone, a while ago.
    let root = state::root()?;
    if let Ok(namespaces) = fs::read_dir(&root) {
        for ns in namespaces.flatten() {
            let Ok(entries) = fs::read_dir(ns.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(state::TMP_PREFIX) else {
                    continue;
                };
                let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                let gone = pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
                // An attach takes well under a second; one from a process in another PID
                // namespace is not in our /proc, so age is the proof there.
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > TMP_STALE_AFTER));
                if gone && old {
                    remove_state(&e.path())?;
                    removed.push(e.path());
                }
            }
        }
    }
    Ok(removed)
}

/// How long a half-built state directory whose process is gone is left alone.
const TMP_STALE_AFTER: Duration = Duration::from_secs(60);

/// What a state directory is, as far as its pins prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// This build's layout, its link on the interface it recorded.
    Attached,
    /// Its link is on an interface, but the state is another build's (or unreadable to this
    /// one): live, and not ours to remove unasked.
    Foreign,
    /// Its link is gone, or on no interface (the interface or its namespace was deleted), or
    /// on another interface than the one it recorded.
    Stale,
}

impl Liveness {
    /// The name `status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Attached => "attached",
            Liveness::Foreign => "foreign",
            Liveness::Stale => "stale",
        }
    }
}

/// What the pins in `dir` prove about it.
pub fn liveness(dir: &Path) -> Liveness {
    let Some(link) = state::pinned_link(dir).filter(|l| l.ifindex != 0) else {
        return Liveness::Stale;
    };
    let info = DemuxMaps::open_pinned(dir)
        .ok()
        .and_then(|m| m.read_info().ok());
    match info {
        Some(info) if state::check_info(&info, dir, "").is_ok() => {
            if info.ifindex == link.ifindex {
                Liveness::Attached
            } else {
                Liveness::Stale
            }
        }
        _ => Liveness::Foreign,
    }
}

/// One attachment as `status` reports it.
#[derive(Debug, Serialize)]
pub struct StatusEntry {
    /// Interface name.
    pub iface: String,
    /// `init`, the name of a named namespace, or `netns-<inode>`.
    pub netns: String,
    /// Interface index recorded at attach time.
    pub ifindex: u32,
    /// `native` or `skb`.
    pub mode: &'static str,
    /// Program id (0 if the link is gone).
    pub program_id: u32,
    /// Link id (0 if the link is gone).
    pub link_id: u32,
    /// Number of bindings.
    pub bindings: usize,
    /// Capacity of the binding table.
    pub max_bindings: u32,
    /// `attached`; `stale` when the interface it served is gone; `foreign` when it is live
    /// but made by another netdemux build (see [`Liveness`]).
    pub state: &'static str,
    /// Where the pins are.
    pub pins: PathBuf,
}

/// Every attachment in every network namespace.
pub fn status() -> Result<Vec<StatusEntry>> {
    let names = state::named_netns();
    let mut out = Vec::new();
    for (ns_key, iface, dir) in state::all_dirs()? {
        let netns = names
            .iter()
            .find(|(k, _)| *k == ns_key)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| ns_key.clone());
        let link = state::pinned_link(&dir);
        let maps = DemuxMaps::open_pinned(&dir).ok();
        let info = maps
            .as_ref()
            .and_then(|m| m.read_info().ok())
            .unwrap_or_default();
        out.push(StatusEntry {
            iface,
            netns,
            ifindex: info.ifindex,
            mode: state::mode_name(info.mode),
            program_id: link.map(|l| l.prog_id).unwrap_or(0),
            link_id: link.map(|l| l.id).unwrap_or(0),
            bindings: maps
                .as_ref()
                .and_then(|m| m.bindings().ok())
                .map(|b| b.len())
                .unwrap_or(0),
            max_bindings: info.max_bindings,
            state: liveness(&dir).name(),
            pins: dir,
        });
    }
    Ok(out)
}
