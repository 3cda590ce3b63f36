//! The locks that keep two operators (or two daemons) from interleaving their changes to one
//! interface's state, as files under `/run/netdemux/<netns>/`, beside the control socket:
//!
//! - [`StateLock`] (`<iface>.lock`, blocking): held around every change of the pinned state —
//!   attach, detach, upgrade, gc, bind, unbind, and a data plane's set-up and removal. The
//!   bpffs holds no regular files, and a state directory comes and goes with its attachment, so
//!   the lock cannot live there.
//! - [`OwnerLock`] (`<iface>.owner`, never waits): held by the one data plane serving an
//!   interface (a `netdemux run` daemon or an application's `Stack`) for as long as it runs; it
//!   holds that process's pid and role, so a second one is refused with both. Only the owner
//!   binds and removes the control socket, so a refused daemon cannot unlink the live one's.
//!
//! Both are `flock(2)` locks: the kernel drops them when their process dies, however it dies,
//! so a lock file left behind never blocks anyone. A holder unlinks its file before it unlocks;
//! a process that locked a file unlinked meanwhile sees another inode at the path and retries.

use std::{
    fs,
    io::{Read as _, Seek as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use super::{iface::Interface, state};

/// Where the locks and control sockets of a network namespace's interfaces are.
pub const RUN_DIR: &str = "/run/netdemux";

/// The path of `iface`'s lock file with this extension, in the namespace folder `netns_key`.
pub fn lock_path(netns_key: &str, iface: &str, ext: &str) -> PathBuf {
    Path::new(RUN_DIR)
        .join(netns_key)
        .join(format!("{}.{ext}", state::encode_dir_name(iface)))
}

/// A locked file that is unlinked before it is unlocked.
struct LockFile {
    path: PathBuf,
    file: Flock<fs::File>,
}

impl LockFile {
    /// Locks `path` (creating it); `None` when `wait` is false and another process holds it,
    /// with that holder's file open for reading what it wrote.
    fn acquire(path: &Path, wait: bool) -> Result<Result<LockFile, fs::File>> {
        let dir = path.parent().context("a lock path has no parent")?;
        for attempt in 0..1000 {
            // A holder leaving removes the folder when it is empty: making it may race that.
            if let Err(e) = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
            {
                use std::io::ErrorKind::{AlreadyExists, NotFound};
                if attempt < 999 && matches!(e.kind(), NotFound | AlreadyExists) {
                    continue;
                }
                return Err(e).with_context(|| format!("cannot create {}", dir.display()));
            }
            let file = match fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
            {
                Ok(f) => f,
                // A holder removed the folder as it left: make it again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot open {}", path.display()));
                }
            };
            let arg = if wait {
                FlockArg::LockExclusive
            } else {
                FlockArg::LockExclusiveNonblock
            };
            let file = match Flock::lock(file, arg) {
                Ok(f) => f,
                Err((file, Errno::EWOULDBLOCK)) => return Ok(Err(file)),
                Err((_, e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            };
            // The holder before us may have unlinked this inode between our open and lock.
            let ours = file.metadata()?;
            if fs::metadata(path).is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev()) {
                return Ok(Ok(LockFile {
                    path: path.to_path_buf(),
                    file,
                }));
            }
        }
        bail!("cannot lock {}: it keeps being replaced", path.display())
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Still locked: nobody else can have replaced the file at this path.
        let _ = fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir);
            let _ = fs::remove_dir(RUN_DIR);
        }
        // `file` drops next, which unlocks.
    }
}

/// The lock around changes of one interface's pinned state; released on drop.
pub struct StateLock(#[allow(dead_code)] LockFile);

impl StateLock {
    /// Waits for and takes the state lock of `iface`.
    pub fn acquire(iface: &Interface) -> Result<StateLock> {
        StateLock::acquire_in(iface.netns_key(), iface.name())
    }

    /// The same for an interface known by its namespace folder and name (`gc`, `status`).
    pub fn acquire_in(netns_key: &str, iface: &str) -> Result<StateLock> {
        match LockFile::acquire(&lock_path(netns_key, iface, "lock"), true)? {
            Ok(l) => Ok(StateLock(l)),
            Err(_) => bail!("the state lock of {iface} was refused"),
        }
    }
}

/// What serves an interface: a daemon or an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `netdemux run`.
    Daemon,
    /// A program using the library's `Stack`.
    Application,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Daemon => "daemon",
            Role::Application => "application",
        }
    }
}

/// The lock of the one data plane serving an interface; released on drop.
pub struct OwnerLock(#[allow(dead_code)] LockFile);

impl OwnerLock {
    /// Takes `iface`'s owner lock for `role`, or refuses in one line naming the process that
    /// holds it.
    pub fn acquire(iface: &Interface, role: Role) -> Result<OwnerLock> {
        let path = lock_path(iface.netns_key(), iface.name(), "owner");
        match LockFile::acquire(&path, false)? {
            Ok(mut l) => {
                let f = &mut *l.file;
                f.set_len(0)?;
                f.rewind()?;
                writeln!(f, "{} {}", std::process::id(), role.name())?;
                Ok(OwnerLock(l))
            }
            Err(holder) => {
                let (pid, role) = read_owner(holder);
                match (pid, role.as_deref()) {
                    (Some(pid), Some("application")) => bail!(
                        "an application (pid {pid}) already serves {iface} with netdemux: stop \
                         it first"
                    ),
                    (Some(pid), _) => bail!(
                        "a netdemux daemon (pid {pid}) already serves {iface}: stop it first \
                         (kill {pid})"
                    ),
                    (None, _) => bail!(
                        "another netdemux process is starting to serve {iface}: stop it first"
                    ),
                }
            }
        }
    }
}

/// The pid and role a holder wrote; it writes them right after it locks, so wait a little.
fn read_owner(mut file: fs::File) -> (Option<u32>, Option<String>) {
    for _ in 0..50 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() && text.ends_with('\n') {
            let mut words = text.split_whitespace();
            let pid = words.next().and_then(|p| p.parse().ok());
            return (pid, words.next().map(str::to_string));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicU32, Ordering},
        },
        thread,
    };

    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("netdemux-lock-test-{}", std::process::id()))
            .join(name)
    }

    #[test]
    fn a_second_holder_waits_or_is_refused_and_the_file_goes_with_the_holder() {
        let path = temp_path("a.owner");
        let first = LockFile::acquire(&path, false).unwrap().ok().unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        assert!(LockFile::acquire(&path, false).unwrap().is_err());
        drop(first);
        assert!(!path.exists(), "the holder unlinks its file");
        let again = LockFile::acquire(&path, false).unwrap();
        assert!(again.is_ok());
    }

    #[test]
    fn holders_never_overlap_while_files_are_unlinked_and_made_again() {
        let path = temp_path("b.lock");
        let (inside, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, inside, most) = (path.clone(), inside.clone(), most.clone());
                thread::spawn(move || {
                    for _ in 0..200 {
                        let l = LockFile::acquire(&path, true).unwrap().ok().unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(l);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
    }
}
