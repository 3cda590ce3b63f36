//! The UDP relay: a session per client address, each with a socket of its own on a port the
//! kernel reserves (the backend sees one source port per client, as behind a NAT); the
//! backend's answers go back to the client from the address it wrote to. Sessions end after a
//! quiet spell; the table is bounded.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::UDP_MAX_SESSIONS;
use crate::{Stack, UdpSocket, report::AtomicProxyCounters};

struct Session {
    socket: Arc<UdpSocket>,
    /// Milliseconds since the relay started, at the last datagram either way.
    last: Arc<AtomicU64>,
    replies: tokio::task::JoinHandle<()>,
}

/// A UDP proxy.
pub(super) struct Relay {
    pub stack: Arc<Stack>,
    pub listen: Arc<UdpSocket>,
    pub backend: SocketAddr,
    /// The interface address sessions send from.
    pub source: IpAddr,
    pub counters: Arc<AtomicProxyCounters>,
    pub timeout: Duration,
}

/// Milliseconds since `start`: when a session was last active.
fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Session>>>;

impl Relay {
    /// Relays until the listening socket fails (or the runtime stops).
    pub async fn serve(self) {
        let start = Instant::now();
        let sessions: Sessions = Arc::default();
        tokio::spawn(expire(
            sessions.clone(),
            self.counters.clone(),
            self.timeout,
            start,
        ));
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, client)) = self.listen.recv_from(&mut buf).await else {
                return;
            };
            let now = ms_since(start);
            let known = {
                let map = sessions.lock().unwrap_or_else(|p| p.into_inner());
                map.get(&client).map(|s| {
                    s.last.store(now, Ordering::Relaxed);
                    s.socket.clone()
                })
            };
            let socket = match known {
                Some(s) => s,
                None => match self.open(&sessions, client, start).await {
                    Some(s) => s,
                    None => {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                },
            };
            if socket.send_to(&buf[..n], self.backend).await.is_ok() {
                self.counters.up_datagrams.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .up_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }

    /// A new session for `client`, if the table has room and a port can be had.
    async fn open(
        &self,
        sessions: &Sessions,
        client: SocketAddr,
        start: Instant,
    ) -> Option<Arc<UdpSocket>> {
        if sessions.lock().unwrap_or_else(|p| p.into_inner()).len() >= UDP_MAX_SESSIONS {
            return None;
        }
        let socket = Arc::new(
            self.stack
                .udp_bind(SocketAddr::new(self.source, 0))
                .await
                .ok()?,
        );
        let last = Arc::new(AtomicU64::new(ms_since(start)));
        let replies = tokio::spawn(answer(
            socket.clone(),
            self.listen.clone(),
            (client, self.backend),
            self.counters.clone(),
            (last.clone(), start),
        ));
        sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(
            client,
            Session {
                socket: socket.clone(),
                last,
                replies,
            },
        );
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        Some(socket)
    }
}

/// Passes the backend's answers on a session's socket back to its client.
async fn answer(
    socket: Arc<UdpSocket>,
    listen: Arc<UdpSocket>,
    (client, backend): (SocketAddr, SocketAddr),
    counters: Arc<AtomicProxyCounters>,
    (last, start): (Arc<AtomicU64>, Instant),
) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if from != backend {
            continue;
        }
        last.store(ms_since(start), Ordering::Relaxed);
        if listen.send_to(&buf[..n], client).await.is_ok() {
            counters.down_datagrams.fetch_add(1, Ordering::Relaxed);
            counters.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// Ends sessions quiet for longer than `timeout`, once a second.
async fn expire(
    sessions: Sessions,
    counters: Arc<AtomicProxyCounters>,
    timeout: Duration,
    start: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = ms_since(start);
        let limit = timeout.as_millis() as u64;
        let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| {
            let quiet = now.saturating_sub(s.last.load(Ordering::Relaxed)) >= limit;
            if quiet {
                s.replies.abort();
                counters.expired.fetch_add(1, Ordering::Relaxed);
                counters.active.fetch_sub(1, Ordering::Relaxed);
            }
            !quiet
        });
    }
}
