//! The XDP program's own log records (aya-log) in the daemon's logs. The program logs only its
//! slow paths (malformed frames, bound frames on a queue without a socket), and only while a
//! daemon has switched logging on in the pinned state (`StateInfo::log`): it does so when
//! `RUST_LOG` enables `netdemux::xdp` at debug level, reads the program's ring buffer on a
//! thread of its own, and switches logging off again when it stops.

use std::{
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use anyhow::{Context as _, Result};
use aya_log::EbpfLogger;

/// The tracing target of the program's records.
pub const TARGET: &str = "netdemux::xdp";

/// Hands the program's records to tracing, under [`TARGET`].
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        match r.level() {
            log::Level::Error => tracing::error!(target: "netdemux::xdp", "{}", r.args()),
            log::Level::Warn => tracing::warn!(target: "netdemux::xdp", "{}", r.args()),
            log::Level::Info => tracing::info!(target: "netdemux::xdp", "{}", r.args()),
            log::Level::Debug => tracing::debug!(target: "netdemux::xdp", "{}", r.args()),
            log::Level::Trace => tracing::trace!(target: "netdemux::xdp", "{}", r.args()),
        }
    }

    fn flush(&self) {}
}

/// True when the logs want the program's records.
pub fn wanted() -> bool {
    tracing::enabled!(target: "netdemux::xdp", tracing::Level::DEBUG)
}

/// Reads the log records of program `program_id` until `stop` is set.
pub fn start(program_id: u32, stop: Arc<AtomicBool>) -> Result<thread::JoinHandle<()>> {
    let mut logger = EbpfLogger::init_from_id_with_logger(program_id, ToTracing)
        .context("cannot open the XDP program's log buffer")?;
    thread::Builder::new()
        .name("netdemux-xdp-log".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut fds = [nix::poll::PollFd::new(
                    logger.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
                logger.flush();
            }
            logger.flush();
        })
        .context("cannot start the XDP log thread")
}
