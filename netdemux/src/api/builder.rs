//! `StackBuilder`: where an application says which interface (and namespace, queues, mode) a
//! [`Stack`] serves; `build` resolves the interface once and starts the data plane.

use std::{
    sync::{Arc, mpsc},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::stack::{Stack, StackShared};
use crate::{
    control::{attach::ModeRequest, iface::Interface, lock::Role, netns, privilege},
    runtime::dataplane::{self, DataPlaneConfig},
    services::ServiceTable,
};

/// How to build a [`Stack`].
#[derive(Clone, Debug, Default)]
pub struct StackBuilder {
    iface: Option<String>,
    netns: Option<String>,
    queues: Option<Vec<u32>>,
    mode: Option<ModeRequest>,
    neighbour_lifetime: Option<Duration>,
}

impl Stack {
    /// Starts describing a stack.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }
}

impl StackBuilder {
    /// The interface to serve (required).
    pub fn iface(mut self, iface: &str) -> Self {
        self.iface = Some(iface.to_string());
        self
    }

    /// The named network namespace the interface is in (like `ip -n`).
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    /// RX queues to serve (default: all).
    pub fn queues(mut self, queues: &[u32]) -> Self {
        self.queues = Some(queues.to_vec());
        self
    }

    /// XDP mode, if the stack attaches the program (default: native, else skb).
    pub fn mode(mut self, mode: ModeRequest) -> Self {
        self.mode = Some(mode);
        self
    }

    /// How long a peer's MAC address counts as fresh before the kernel's route and neighbour
    /// tables are asked again (default 30 s; a stale one is still used meanwhile).
    pub fn neighbour_lifetime(mut self, lifetime: Duration) -> Self {
        self.neighbour_lifetime = Some(lifetime);
        self
    }

    /// Attaches (or reuses the attachment), opens the AF_XDP sockets and starts the workers.
    /// Setting up takes milliseconds; it runs on a thread of its own (which enters the network
    /// namespace, so the caller's thread never does).
    pub async fn build(self) -> Result<Stack> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("netdemux-setup".into())
            .spawn(move || {
                let _ = tx.send(self.setup());
            })
            .context("cannot start the set-up thread")?;
        rx.recv().context("the set-up thread died")?
    }

    fn setup(self) -> Result<Stack> {
        let name = self.iface.context("Stack::builder() needs .iface(NAME)")?;
        privilege::require("Stack::build")?;
        if let Some(ns) = &self.netns {
            netns::enter(ns)?;
        }
        let iface = Interface::existing(&name)?;
        let cfg = DataPlaneConfig {
            mode: self.mode.unwrap_or(ModeRequest::Auto),
            queues: self.queues,
            application: true,
            ..DataPlaneConfig::default()
        };
        let cfg = DataPlaneConfig {
            neighbour_lifetime: self.neighbour_lifetime.unwrap_or(cfg.neighbour_lifetime),
            ..cfg
        };
        let plane = dataplane::prepare(&iface, cfg, Role::Application)?
            .start(Arc::new(ServiceTable::default()))?;
        Ok(Stack {
            shared: Arc::new(StackShared::new(Arc::new(plane), self.netns)?),
        })
    }
}
