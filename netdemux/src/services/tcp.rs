//! The built-in TCP services of one queue worker (`--tcp-echo`, `--http`) on that worker's TCP
//! endpoint: segments in, segments out through a callback, the applications driven by the
//! endpoint's events. No rings and no threads here; the worker feeds it.

use std::{collections::HashMap, net::SocketAddr, time::Instant};

use super::{Kind, ServiceTable, http};
use crate::{
    stack::tcp::{ConnId, Connection, Counters, Endpoint, Events, Limits, connection::Config},
    wire::tcp::TcpHeader,
};

/// What a connection of a service remembers between events.
#[derive(Debug)]
enum App {
    /// Sends back what it reads.
    Echo,
    /// Answers HTTP requests; holds the bytes of an incomplete request head.
    Http { head: Vec<u8> },
}

/// The TCP services of one worker.
#[derive(Debug)]
pub struct TcpServices {
    endpoint: Endpoint,
    listeners: Vec<(SocketAddr, Kind)>,
    apps: HashMap<ConnId, App>,
    scratch: Vec<u8>,
}

impl TcpServices {
    /// The TCP services of `table`, or `None` when it has none.
    pub fn new(table: &ServiceTable, config: Config, limits: Limits, now: Instant) -> Option<Self> {
        let listeners: Vec<(SocketAddr, Kind)> = table
            .services()
            .iter()
            .filter(|(k, _)| k.is_tcp())
            .map(|&(k, a)| (a, k))
            .collect();
        if listeners.is_empty() {
            return None;
        }
        let mut endpoint = Endpoint::new(config, limits, now);
        for &(addr, _) in &listeners {
            // The service table holds each address once.
            let _ = endpoint.listen(addr, None);
        }
        Some(TcpServices {
            endpoint,
            listeners,
            apps: HashMap::new(),
            scratch: vec![0; 64 * 1024],
        })
    }

    /// What the endpoint counted.
    pub fn counters(&self) -> &Counters {
        &self.endpoint.counters
    }

    /// Connections in the flow table.
    pub fn connections(&self) -> usize {
        self.endpoint.connections()
    }

    /// A segment `remote` -> `local` for one of the services.
    pub fn input(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        h: &TcpHeader,
        payload: &[u8],
        now: Instant,
    ) {
        self.endpoint.input(remote, local, h, payload, now);
    }

    /// Runs due timers, accepts new connections and lets the applications act on what
    /// changed.
    pub fn poll(&mut self, now: Instant) {
        self.endpoint.handle_timeouts(now);
        for &(addr, kind) in &self.listeners {
            while let Some(id) = self.endpoint.accept(addr) {
                let app = match kind {
                    Kind::Http => App::Http { head: Vec::new() },
                    _ => App::Echo,
                };
                self.apps.insert(id, app);
            }
        }
        while let Some((id, events)) = self.endpoint.poll_event() {
            let ended = Events::CLOSED.0 | Events::RESET.0 | Events::TIMED_OUT.0;
            if events.0 & ended != 0 {
                self.apps.remove(&id);
                continue;
            }
            let Some(app) = self.apps.get_mut(&id) else {
                continue;
            };
            let scratch = &mut self.scratch;
            self.endpoint.with(id, now, |conn, _| match app {
                App::Echo => echo(conn, scratch),
                App::Http { head } => serve_http(conn, head, scratch),
            });
        }
    }

    /// Hands the segments due to `emit(local, remote, header, payload)`; see
    /// [`Endpoint::poll_transmit`].
    pub fn transmit(
        &mut self,
        now: Instant,
        emit: impl FnMut(SocketAddr, SocketAddr, &TcpHeader, [&[u8]; 2]) -> bool,
    ) {
        self.endpoint.poll_transmit(now, emit);
    }

    /// When [`TcpServices::poll`] must run next for a timer.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }
}

/// Echoes what fits into the send buffer; closes once the peer closed and all was echoed.
fn echo(conn: &mut Connection, scratch: &mut [u8]) {
    loop {
        let n = conn.readable().min(conn.send_space()).min(scratch.len());
        if n == 0 {
            break;
        }
        let got = conn.recv(&mut scratch[..n]);
        let sent = conn.send(&scratch[..got]);
        debug_assert_eq!(sent, got, "send space was checked");
    }
    if conn.read_closed() {
        conn.close();
    }
}

/// Answers every complete request head that arrived, as long as the answers fit.
fn serve_http(conn: &mut Connection, head: &mut Vec<u8>, scratch: &mut [u8]) {
    loop {
        if let Some(end) = http::head_end(head) {
            let answer = http::answer(&head[..end]);
            if conn.send_space() < answer.bytes.len() {
                return; // Wait for WRITABLE.
            }
            conn.send(&answer.bytes);
            head.drain(..end);
            if answer.close {
                conn.close();
                return;
            }
            continue;
        }
        if head.len() >= http::MAX_HEAD {
            conn.send(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\
                  Connection: close\r\n\r\n",
            );
            conn.close();
            return;
        }
        let room = (http::MAX_HEAD - head.len()).min(scratch.len());
        let n = conn.recv(&mut scratch[..room]);
        if n == 0 {
            break;
        }
        head.extend_from_slice(&scratch[..n]);
    }
    if conn.read_closed() {
        conn.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{services::ServiceTable, wire::tcp::Flags};

    /// A client endpoint talking to the services through a lossless virtual link.
    struct Pair {
        now: Instant,
        services: TcpServices,
        client: Endpoint,
    }

    impl Pair {
        fn new(kind: Kind) -> Pair {
            let now = Instant::now();
            let table = ServiceTable::new(&[(kind, "198.18.0.2:80".parse().unwrap())]).unwrap();
            Pair {
                now,
                services: TcpServices::new(&table, Config::default(), Limits::default(), now)
                    .unwrap(),
                client: Endpoint::new(Config::default(), Limits::default(), now),
            }
        }

        fn step(&mut self) {
            self.now += Duration::from_millis(1);
            let now = self.now;
            let mut to_server = Vec::new();
            self.client.poll_transmit(now, |l, r, h, p| {
                to_server.push((l, r, *h, [p[0], p[1]].concat()));
                true
            });
            for (l, r, h, p) in to_server {
                self.services.input(l, r, &h, &p, now);
            }
            self.services.poll(now);
            let mut to_client = Vec::new();
            self.services.transmit(now, |l, r, h, p| {
                to_client.push((l, r, *h, [p[0], p[1]].concat()));
                true
            });
            for (l, r, h, p) in to_client {
                self.client.input(l, r, &h, &p, now);
            }
            self.client.handle_timeouts(now);
        }

        fn exchange(&mut self, request: &[u8], close: bool) -> Vec<u8> {
            let c = self
                .client
                .connect(
                    "198.18.0.1:40000".parse().unwrap(),
                    "198.18.0.2:80".parse().unwrap(),
                    self.now,
                )
                .unwrap();
            let mut sent = 0;
            let mut got = Vec::new();
            for _ in 0..2000 {
                self.step();
                let now = self.now;
                self.client.with(c, now, |conn, _| {
                    sent += conn.send(&request[sent..]);
                    if sent == request.len() && close {
                        conn.close();
                    }
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = conn.recv(&mut buf);
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                });
                if self.client.get(c).is_none_or(|c| c.read_closed()) {
                    break;
                }
            }
            got
        }
    }

    #[test]
    fn echo_returns_every_byte_and_closes_after_the_peer() {
        let mut p = Pair::new(Kind::TcpEcho);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let got = p.exchange(&data, true);
        assert!(got == data, "{} of {} bytes echoed", got.len(), data.len());
        for _ in 0..100 {
            p.step();
        }
        assert_eq!(
            p.services.connections(),
            0,
            "the service side is closed (LAST_ACK done)"
        );
        assert!(p.services.apps.is_empty());
    }

    #[test]
    fn http_answers_pipelined_requests_then_closes_on_request() {
        let mut p = Pair::new(Kind::Http);
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nConnection: close\r\n\r\n";
        let got = String::from_utf8(p.exchange(req, false)).unwrap();
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
        assert!(got.ends_with("hello from netdemux\n"));
    }

    #[test]
    fn an_oversized_head_is_refused() {
        let mut p = Pair::new(Kind::Http);
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        req.extend(std::iter::repeat_n(b'a', 10_000));
        let got = String::from_utf8(p.exchange(&req, false)).unwrap();
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    }

    #[test]
    fn a_segment_to_a_port_of_no_service_gets_rst() {
        let mut p = Pair::new(Kind::TcpEcho);
        let h = TcpHeader {
            src_port: 40000,
            dst_port: 81,
            flags: Flags::SYN,
            window: 1000,
            ..TcpHeader::default()
        };
        p.services.input(
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:81".parse().unwrap(),
            &h,
            b"",
            p.now,
        );
        let mut out = Vec::new();
        p.services.transmit(p.now, |_, _, h, _| {
            out.push(h.flags);
            true
        });
        assert_eq!(out, vec![Flags::RST | Flags::ACK]);
    }
}
