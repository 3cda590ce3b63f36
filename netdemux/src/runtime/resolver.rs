//! The neighbour resolver of a data plane that serves an application: workers ask it for the
//! MAC address of a peer they have no entry for; it asks the kernel's neighbour table (which
//! resolves through ARP/NDP when needed), off the data path, and hands the answer to the worker
//! that asked.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{bridge::Bridge, control::kernel_neighbours};

/// Requests waiting for the resolver: (address, worker index).
pub const REQUESTS: usize = 256;
/// How long one request may wait for the kernel's answer.
const RESOLVE_TIMEOUT: Duration = Duration::from_millis(900);

/// Starts the resolver for interface `ifindex`; it runs until `stop` is set.
pub fn spawn(
    ifindex: u32,
    bridge: Arc<Bridge>,
    requests: Receiver<(IpAddr, usize)>,
    stop: Arc<AtomicBool>,
) -> Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("netdemux-neigh".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((ip, worker)) = requests.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                let mac = kernel_neighbours::resolve(ifindex, ip, RESOLVE_TIMEOUT).ok();
                if let Some(link) = bridge.links.get(worker) {
                    link.resolved(ip, mac);
                }
            }
        })
        .context("cannot start the neighbour resolver thread")
}
