//! A two-endpoint network on a virtual clock: every segment goes through the wire encoder and
//! parser, and the link delays, loses, reorders and duplicates segments from a seeded generator.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{
    stack::tcp::{ConnId, Endpoint, Events, Limits, connection::Config},
    wire::tcp::TcpHeader,
};

/// Which way a segment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the client (endpoint A) to the server (endpoint B).
    ToServer,
    /// From the server to the client.
    ToClient,
}

/// A segment on the link.
#[derive(Clone, Debug)]
pub struct Packet {
    pub at: Instant,
    pub dir: Dir,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub bytes: Vec<u8>,
}

impl Packet {
    pub fn header(&self) -> TcpHeader {
        TcpHeader::parse_unchecked(&self.bytes)
            .expect("own segment")
            .0
    }

    pub fn payload_len(&self) -> usize {
        self.bytes.len()
            - TcpHeader::parse_unchecked(&self.bytes)
                .expect("own segment")
                .1
    }
}

/// Faults on the link, each a probability per segment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
}

/// A seeded xorshift generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

type Filter = Box<dyn FnMut(&Packet) -> bool>;
/// Events drained from an endpoint.
pub type EventList = Vec<(ConnId, Events)>;

/// Two endpoints joined by a link.
pub struct Net {
    pub now: Instant,
    pub client: Endpoint,
    pub server: Endpoint,
    pub client_addr: SocketAddr,
    pub server_addr: SocketAddr,
    pub delay: Duration,
    pub faults: Faults,
    pub rng: Rng,
    /// Segments in flight.
    pub link: Vec<Packet>,
    /// Every segment offered to the link, in order.
    pub trace: Vec<Packet>,
    /// Returns true to drop a segment (on top of `faults`).
    pub drop_if: Option<Filter>,
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

impl Net {
    /// A client at 198.18.0.1:40000 and a server listening on 198.18.0.2:80, 1 ms apart.
    pub fn new(config: Config) -> Net {
        Net::with(
            config,
            config,
            addr("198.18.0.1:40000"),
            addr("198.18.0.2:80"),
        )
    }

    pub fn with(
        client_cfg: Config,
        server_cfg: Config,
        client_addr: SocketAddr,
        server_addr: SocketAddr,
    ) -> Net {
        let now = Instant::now();
        let mut server = Endpoint::new(server_cfg, Limits::default(), now);
        server.listen(server_addr, None).expect("listen");
        Net {
            now,
            client: Endpoint::new(client_cfg, Limits::default(), now),
            server,
            client_addr,
            server_addr,
            delay: Duration::from_millis(1),
            faults: Faults::default(),
            rng: Rng::new(1),
            link: Vec::new(),
            trace: Vec::new(),
            drop_if: None,
        }
    }

    /// The client connects; returns its handle.
    pub fn connect(&mut self) -> ConnId {
        self.client
            .connect(self.client_addr, self.server_addr, self.now)
            .expect("connect")
    }

    fn collect(&mut self) {
        let now = self.now;
        let mut out = Vec::new();
        for (ep, dir) in [
            (&mut self.client, Dir::ToServer),
            (&mut self.server, Dir::ToClient),
        ] {
            ep.poll_transmit(now, |src, dst, h, payload| {
                let mut bytes = vec![0u8; h.header_len() + payload[0].len() + payload[1].len()];
                let n = h.emit(&mut bytes).expect("emit");
                bytes[n..n + payload[0].len()].copy_from_slice(payload[0]);
                bytes[n + payload[0].len()..].copy_from_slice(payload[1]);
                out.push(Packet {
                    at: now,
                    dir,
                    src,
                    dst,
                    bytes,
                });
                true
            });
        }
        for mut p in out {
            // No segment outgrows the MSS the peer announced (1460 or 1440) plus a plain
            // 20-byte header and timestamps: SACK blocks must come out of the payload.
            let v6 = p.dst.is_ipv6();
            assert!(
                p.bytes.len() <= 20 + if v6 { 1440 } else { 1460 },
                "a {}-byte segment: {:?}",
                p.bytes.len(),
                p.header()
            );
            self.trace.push(p.clone());
            if self.drop_if.as_mut().is_some_and(|f| f(&p)) || self.rng.chance(self.faults.loss) {
                continue;
            }
            p.at = now + self.delay;
            if self.rng.chance(self.faults.reorder) {
                p.at += self.delay * 3;
            }
            if self.rng.chance(self.faults.duplicate) {
                let mut d = p.clone();
                d.at += self.delay / 2;
                self.link.push(d);
            }
            self.link.push(p);
        }
    }

    /// Moves time to the next event (a delivery or a timer) and runs it; false when nothing is
    /// left to happen.
    pub fn step(&mut self) -> bool {
        self.collect();
        let next = [
            self.link.iter().map(|p| p.at).min(),
            self.client.poll_timeout(),
            self.server.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let mut due: Vec<Packet> = Vec::new();
        self.link.retain(|p| {
            if p.at <= now {
                due.push(p.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|p| p.at);
        for p in due {
            let (h, hl) = TcpHeader::parse_unchecked(&p.bytes).expect("own segment");
            let ep = match p.dir {
                Dir::ToServer => &mut self.server,
                Dir::ToClient => &mut self.client,
            };
            ep.input(p.src, p.dst, &h, &p.bytes[hl..], now);
        }
        self.client.handle_timeouts(now);
        self.server.handle_timeouts(now);
        self.collect();
        true
    }

    /// Steps until `done` holds (checked after each step) or `limit` of virtual time passed;
    /// returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now > end || !self.step() {
                return done(self);
            }
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            if !self.step() {
                break;
            }
            // Timers beyond the end are not run.
            if self.link.is_empty()
                && [self.client.poll_timeout(), self.server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .all(|t| t > end)
            {
                break;
            }
        }
        self.now = self.now.max(end);
    }

    /// Accepts the server's next connection.
    pub fn accept(&mut self) -> Option<ConnId> {
        self.server.accept(self.server_addr)
    }

    /// Drains the events of both endpoints: (client's, server's), merged per connection.
    pub fn events(&mut self) -> (EventList, EventList) {
        let mut c = Vec::new();
        while let Some(e) = self.client.poll_event() {
            c.push(e);
        }
        let mut s = Vec::new();
        while let Some(e) = self.server.poll_event() {
            s.push(e);
        }
        (c, s)
    }

    /// Segments of the trace going `dir`.
    pub fn sent(&self, dir: Dir) -> impl Iterator<Item = &Packet> {
        self.trace.iter().filter(move |p| p.dir == dir)
    }
}

/// Moves `data` from `from` to `to` over connections `a` (on `from`) and `b` (on `to`) while
/// also draining `to`; returns the bytes received. Used by the transfer tests.
pub struct Pump {
    pub to_send: Vec<u8>,
    pub sent: usize,
    pub received: Vec<u8>,
}

impl Pump {
    pub fn new(data: Vec<u8>) -> Pump {
        Pump {
            to_send: data,
            sent: 0,
            received: Vec::new(),
        }
    }

    /// Writes what fits on `writer` (of `wep`), reads what arrived on `reader` (of `rep`).
    pub fn pump(
        &mut self,
        wep: &mut Endpoint,
        writer: ConnId,
        rep: &mut Endpoint,
        reader: ConnId,
        now: Instant,
    ) {
        if self.sent < self.to_send.len() {
            let rest = &self.to_send[self.sent..];
            self.sent += wep.with(writer, now, |c, _| c.send(rest)).unwrap_or(0);
        }
        let mut buf = [0u8; 16384];
        loop {
            let n = rep.with(reader, now, |c, _| c.recv(&mut buf)).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&buf[..n]);
        }
    }

    pub fn done(&self) -> bool {
        self.received.len() == self.to_send.len()
    }
}
