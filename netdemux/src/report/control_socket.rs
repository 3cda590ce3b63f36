//! The daemon's control socket: `/run/netdemux/<netns>/<iface>.sock` (root-only). A client
//! connects and reads one JSON line with the live per-queue and per-service counters; that is
//! how `netdemux stats` of a running daemon shows them.

use std::{
    fs,
    io::{BufRead as _, BufReader, ErrorKind, Write as _},
    os::unix::{
        fs::PermissionsExt as _,
        net::{UnixListener, UnixStream},
    },
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::DaemonReport;
use crate::control::{iface::Interface, lock};

/// Where the control socket of `iface` is (beside its locks).
pub fn socket_path(iface: &Interface) -> PathBuf {
    lock::lock_path(iface.netns_key(), iface.name(), "sock")
}

/// Asks the daemon serving `iface` for its counters; `None` when no daemon runs.
pub fn query(iface: &Interface) -> Result<Option<DaemonReport>> {
    let path = socket_path(iface);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot reach {}", path.display())),
    };
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .with_context(|| format!("no answer from the daemon at {}", path.display()))?;
    let report = serde_json::from_str(&line)
        .with_context(|| format!("the daemon at {} answered something else", path.display()))?;
    Ok(Some(report))
}

/// Binds the control socket of `iface`, replacing a socket file left by a daemon that died.
/// Only the holder of `iface`'s owner lock may call it ([`crate::control::lock::OwnerLock`]):
/// that is what makes the replacing safe.
pub fn bind(iface: &Interface) -> Result<(UnixListener, PathBuf)> {
    let path = socket_path(iface);
    let dir = path.parent().context("socket path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(lock::RUN_DIR, fs::Permissions::from_mode(0o700)).ok();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok();
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok((listener, path))
}

/// Answers every connection with `report()` as one JSON line, until `stop` is set.
pub fn serve(
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    report: impl Fn() -> DaemonReport + Send + 'static,
) -> Result<thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    thread::Builder::new()
        .name("netdemux-control".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                        if let Ok(mut text) = serde_json::to_string(&report()) {
                            text.push('\n');
                            let _ = conn.write_all(text.as_bytes());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .context("cannot start the control thread")
}
