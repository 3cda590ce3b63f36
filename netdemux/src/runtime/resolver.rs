//! The neighbour resolver of a data plane: workers ask it where to send a peer's frames (a
//! peer they have no entry for, or a stale one); it asks the kernel — the route to the peer,
//! then the neighbour entry of its next hop, resolving through ARP/NDP when needed — off the
//! data path, and hands the answer to the worker that asked.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    bridge::{Bridge, link::Answers},
    control::kernel_neighbours,
    stack::neighbour_cache::Resolution,
};

/// Requests waiting for the resolver.
pub const REQUESTS: usize = 256;

/// A request: the destination, the source address it is sent from (for policy routing), and
/// the worker that asks.
type Request = (IpAddr, Option<IpAddr>, usize);
/// How long one request may wait for the kernel's answer.
const RESOLVE_TIMEOUT: Duration = Duration::from_millis(900);

/// A worker's line to the resolver.
#[derive(Clone)]
pub struct ResolverLink {
    requests: SyncSender<Request>,
    /// Where the answers for this worker arrive.
    pub answers: Arc<Answers>,
    index: usize,
}

impl std::fmt::Debug for ResolverLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResolverLink({})", self.index)
    }
}

impl ResolverLink {
    /// Asks about `ip`, sent to from `source`; false when the resolver's queue is full (ask
    /// again later).
    pub fn ask(&self, ip: IpAddr, source: Option<IpAddr>) -> bool {
        !matches!(
            self.requests.try_send((ip, source, self.index)),
            Err(TrySendError::Full(_))
        )
    }
}

/// The workers' answer queues and the request channel, before the resolver runs.
pub struct Lines {
    requests: SyncSender<Request>,
    receiver: Receiver<Request>,
    answers: Vec<Arc<Answers>>,
}

impl Lines {
    /// Lines for workers whose answers arrive in `answers` (one queue per worker, in order).
    pub fn new(answers: Vec<Arc<Answers>>) -> Lines {
        let (requests, receiver) = std::sync::mpsc::sync_channel(REQUESTS);
        Lines {
            requests,
            receiver,
            answers,
        }
    }

    /// Worker `index`'s line.
    pub fn link(&self, index: usize) -> ResolverLink {
        ResolverLink {
            requests: self.requests.clone(),
            answers: self.answers[index].clone(),
            index,
        }
    }

    /// Starts the resolver for interface `ifindex`; it runs until `stop` is set. With a
    /// `bridge`, a worker is woken when its answer arrives (an application's worker may sleep
    /// in poll(2) with sends waiting).
    pub fn spawn(
        self,
        ifindex: u32,
        bridge: Option<Arc<Bridge>>,
        stop: Arc<AtomicBool>,
    ) -> Result<thread::JoinHandle<()>> {
        let Lines {
            requests,
            receiver,
            answers,
        } = self;
        drop(requests);
        thread::Builder::new()
            .name("netdemux-neigh".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (ip, source, worker) =
                        match receiver.recv_timeout(Duration::from_millis(100)) {
                            Ok(request) => request,
                            Err(RecvTimeoutError::Timeout) => continue,
                            // Every worker is gone.
                            Err(RecvTimeoutError::Disconnected) => break,
                        };
                    let answer = kernel_neighbours::resolve(ifindex, ip, source, RESOLVE_TIMEOUT)
                        .unwrap_or(Resolution::Unresolved);
                    if let Some(queue) = answers.get(worker)
                        && queue.push((ip, answer)).is_ok()
                        && let Some(link) = bridge.as_ref().and_then(|b| b.links.get(worker))
                    {
                        link.wake();
                    }
                }
            })
            .context("cannot start the neighbour resolver thread")
    }
}
