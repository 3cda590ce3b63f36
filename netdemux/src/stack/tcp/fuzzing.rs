//! Arbitrary segments against a connection in each state: the body of the `tcp_segments` fuzz
//! target, and of a seeded test that runs it in CI. Two endpoints are joined in memory; the
//! first bytes choose how far they go (handshake, data, close from either side); the rest is
//! a script of segments (with sequence and acknowledgement numbers near the ones the
//! connection expects, so they reach deep into its state machine), timer jumps and
//! application calls, ICMP errors; with or without SYN cookies for every SYN and a small
//! memory budget. Nothing may panic, and every segment either side sends must be well-formed
//! and fit the MSS.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use std::sync::Arc;

use super::{Config, Endpoint, Limits, MemoryBudget, Seq};
use crate::wire::{
    icmp::Problem,
    tcp::{Flags, SackBlocks, TcpHeader, TcpOptions},
};

struct Side {
    ep: Endpoint,
    addr: SocketAddr,
    /// The last segment this side sent (sequence, acknowledgement).
    last: (Seq, Seq),
}

/// Delivers what `from` has to send to `to`, checking each segment; false when nothing moved.
fn deliver(from: &mut Side, to: &mut Side, now: Instant) -> bool {
    let mut out = Vec::new();
    from.ep.poll_transmit(now, |_, _, h, p| {
        let len = p[0].len() + p[1].len();
        assert!(
            h.header_len() + len <= 20 + 1460,
            "a segment outgrows the MSS"
        );
        out.push((*h, [p[0], p[1]].concat()));
        true
    });
    let moved = !out.is_empty();
    for (h, payload) in out {
        from.last = (h.seq, h.ack);
        to.ep.input(from.addr, to.addr, &h, &payload, now);
    }
    moved
}

/// Moves every pending segment between the two sides (a few rounds).
fn exchange(a: &mut Side, b: &mut Side, now: Instant) {
    for _ in 0..8 {
        let ab = deliver(a, b, now);
        let ba = deliver(b, a, now);
        if !ab && !ba {
            break;
        }
    }
}

/// Reads little-endian numbers off the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// Runs one script (see the module documentation).
pub fn run(data: &[u8]) {
    let mut s = Script(data);
    let setup = s.byte().unwrap_or(0);
    let mut now = Instant::now();
    let config = Config {
        recv_buffer: 16 * 1024,
        send_buffer: 16 * 1024,
        max_ooo_ranges: 4,
        keepalive: (setup & 0x80 != 0).then(|| Duration::from_secs(5)),
        sack: setup & 0x40 == 0,
        timestamps: setup & 0x20 == 0,
        ..Config::default()
    };
    let limits = Limits {
        max_connections: 8,
        // Every SYN answered with a cookie, or none.
        max_half_open: if setup & 0x10 != 0 { 0 } else { 4 },
        max_backlog: 4,
        max_pending_resets: 8,
        max_time_wait: 4,
        syn_cookies: true,
    };
    let client_addr: SocketAddr = "198.18.0.1:40000".parse().expect("literal");
    let server_addr: SocketAddr = "198.18.0.2:80".parse().expect("literal");
    let mut client = Side {
        ep: Endpoint::new(config, limits, now),
        addr: client_addr,
        last: (Seq(0), Seq(0)),
    };
    let mut server = Side {
        ep: Endpoint::new(config, limits, now),
        addr: server_addr,
        last: (Seq(0), Seq(0)),
    };
    if setup & 0x08 != 0 {
        // A budget a few connections use up: windows shrink, data and SYNs are refused.
        server
            .ep
            .set_memory_budget(Arc::new(MemoryBudget::new(64 * 1024)));
    }
    let _ = server.ep.listen(server_addr, Some(4));
    // How far the connection goes before the script: 0 none (a listener only), 1 SYN sent,
    // 2 established, 3 data both ways, 4 client closed, 5 server closed, 6 both closed.
    let stage = setup & 7;
    let mut c = None;
    let mut sconn = None;
    if stage >= 1 {
        c = client.ep.connect(client_addr, server_addr, now).ok();
        if stage == 1 {
            let mut syn = Vec::new();
            client.ep.poll_transmit(now, |_, _, h, _| {
                syn.push(*h);
                true
            });
            if let Some(h) = syn.first() {
                client.last = (h.seq, h.ack);
            }
        } else {
            exchange(&mut client, &mut server, now);
            sconn = server.ep.accept(server_addr);
        }
    }
    if let (true, Some(cid), Some(sid)) = (stage >= 3, c, sconn) {
        client.ep.with(cid, now, |conn, _| conn.send(&[1u8; 5000]));
        server.ep.with(sid, now, |conn, _| conn.send(&[2u8; 3000]));
        exchange(&mut client, &mut server, now);
        if stage == 4 || stage == 6 {
            client.ep.with(cid, now, |conn, _| conn.close());
        }
        if stage >= 5 {
            server.ep.with(sid, now, |conn, _| conn.close());
        }
        exchange(&mut client, &mut server, now);
    }
    // The script: segments from the client's address to the server, timer jumps and calls.
    let mut buf = [0u8; 4096];
    while let Some(op) = s.byte() {
        match op % 8 {
            0..=3 => {
                let (Some(flags), Some(dseq), Some(dack), Some(window)) =
                    (s.byte(), s.u16(), s.u16(), s.u16())
                else {
                    break;
                };
                let len = usize::from(s.byte().unwrap_or(0)) * 8;
                let payload = s.bytes(len).to_vec();
                // Near what the server expects: the client's last sequence and
                // acknowledgement, moved by a signed 16-bit offset.
                let seq = Seq(client.last.0.0.wrapping_add(i32::from(dseq as i16) as u32));
                let ack = Seq(server.last.0.0.wrapping_add(i32::from(dack as i16) as u32));
                let mut options = TcpOptions::default();
                if op & 4 != 0 {
                    options.timestamps = Some((s.u32().unwrap_or(0), s.u32().unwrap_or(0)));
                    let mut sack = SackBlocks::default();
                    let l = ack + usize::from(s.u16().unwrap_or(0));
                    sack.push(l, l + usize::from(s.u16().unwrap_or(0)));
                    options.sack = sack;
                }
                let h = TcpHeader {
                    src_port: client_addr.port(),
                    dst_port: server_addr.port(),
                    seq,
                    ack,
                    flags: Flags(flags),
                    window,
                    options,
                };
                server.ep.input(client_addr, server_addr, &h, &payload, now);
            }
            4 => now += Duration::from_millis(u64::from(s.byte().unwrap_or(0)) * 20),
            5 => {
                if let Some(sid) = sconn {
                    let n = usize::from(s.u16().unwrap_or(0)) % 4096;
                    server.ep.with(sid, now, |conn, _| conn.send(&buf[..n]));
                }
            }
            6 => {
                if let Some(sid) = sconn {
                    server.ep.with(sid, now, |conn, _| conn.recv(&mut buf));
                }
            }
            _ => {
                let what = s.byte().unwrap_or(0);
                if what % 5 >= 3 {
                    // An ICMP error about a segment the server sent, near what it sent last.
                    let problem = match s.byte().unwrap_or(0) % 4 {
                        0 => Problem::PacketTooBig {
                            mtu: u32::from(s.u16().unwrap_or(0)),
                        },
                        1 => Problem::Unreachable {
                            hard: what & 0x80 != 0,
                        },
                        2 => Problem::TimeExceeded,
                        _ => Problem::ParameterProblem,
                    };
                    let dseq = s.u16().unwrap_or(0) as i16;
                    let seq = Seq(server.last.0.0.wrapping_add(i32::from(dseq) as u32));
                    server
                        .ep
                        .icmp_error(server_addr, client_addr, problem, seq, now);
                } else if let Some(sid) = sconn {
                    match what % 5 {
                        0 => server.ep.with(sid, now, |conn, _| conn.close()),
                        1 => server.ep.with(sid, now, |conn, _| conn.abort()),
                        _ => server.ep.with(sid, now, |conn, _| conn.set_nodelay(true)),
                    };
                }
            }
        }
        server.ep.handle_timeouts(now);
        client.ep.handle_timeouts(now);
        exchange(&mut client, &mut server, now);
        while server.ep.poll_event().is_some() {}
        while client.ep.poll_event().is_some() {}
        assert!(
            server.ep.connections() <= 8,
            "the flow table keeps its limit"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeded_scripts_never_panic() {
        let mut x = crate::test_rng::Xorshift64::new(0x2545_f491_4f6c_dd1d);
        for i in 0..20000 {
            let len = 1 + (i * 37) % 400;
            let data: Vec<u8> = (0..len).map(|_| x.next() as u8).collect();
            super::run(&data);
        }
    }
}
