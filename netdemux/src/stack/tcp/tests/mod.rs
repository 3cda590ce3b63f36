//! Virtual-clock tests of the TCP state machine, grouped by state, and a seeded simulator with
//! loss, reordering and duplication.

mod conformance;
pub(crate) mod script;
mod sim;

use std::time::Duration;

use sim::{Dir, Faults, Net, Pump, Rng, addr};

use super::{
    ConnId, Endpoint, Events, IsnSource, Limits, State, congestion::Algorithm, connection::Config,
};
use crate::wire::tcp::{Flags, TcpHeader};

const SEC: Duration = Duration::from_secs(1);

/// The state of a connection, or of its 4-tuple once TIME_WAIT holds it as a record.
fn state(net: &Net, server: bool, id: ConnId) -> Option<State> {
    let (ep, local, remote) = if server {
        (&net.server, net.server_addr, net.client_addr)
    } else {
        (&net.client, net.client_addr, net.server_addr)
    };
    ep.get(id)
        .map(|c| c.state())
        .or_else(|| ep.state_of(local, remote).filter(|s| *s == State::TimeWait))
}

/// Connects and accepts; returns (client, server) handles.
fn open(net: &mut Net) -> (ConnId, ConnId) {
    let c = net.connect();
    assert!(net.run_until(SEC, |n| n.server.backlog(n.server_addr) == 1));
    let s = net.accept().expect("accepted");
    assert_eq!(state(net, false, c), Some(State::Established));
    assert_eq!(state(net, true, s), Some(State::Established));
    (c, s)
}

/// Sends `data` from the client to the server (or back) and returns what arrived.
fn transfer(net: &mut Net, c: ConnId, s: ConnId, data: &[u8], to_server: bool, limit: Duration) {
    let mut pump = Pump::new(data.to_vec());
    let ok = net.run_until(limit, |n| {
        let now = n.now;
        if to_server {
            pump.pump(&mut n.client, c, &mut n.server, s, now);
        } else {
            pump.pump(&mut n.server, s, &mut n.client, c, now);
        }
        pump.done()
    });
    assert!(
        ok,
        "transfer stalled at {} of {} bytes",
        pump.received.len(),
        data.len()
    );
    assert!(pump.received == data, "bytes differ");
}

fn flags(p: &sim::Packet) -> Flags {
    p.header().flags
}

mod handshake {
    use super::*;

    #[test]
    fn negotiates_mss_window_scale_timestamps_and_sack() {
        let mut net = Net::new(Config::default());
        let (c, s) = open(&mut net);
        let syn = net.sent(Dir::ToServer).next().unwrap().header();
        assert_eq!(syn.flags, Flags::SYN);
        assert_eq!(syn.options.mss, Some(1460));
        assert_eq!(syn.options.window_scale, Some(3));
        assert!(syn.options.sack_permitted);
        assert!(syn.options.timestamps.is_some());
        let synack = net.sent(Dir::ToClient).next().unwrap().header();
        assert_eq!(synack.flags, Flags::SYN | Flags::ACK);
        assert_eq!(synack.ack, syn.seq + 1);
        assert_eq!(
            synack.options.timestamps.unwrap().1,
            syn.options.timestamps.unwrap().0
        );
        // Timestamps take 12 bytes of every segment.
        assert_eq!(net.client.get(c).unwrap().mss(), 1448);
        assert_eq!(net.server.get(s).unwrap().mss(), 1448);
        assert_eq!(net.server.counters.passive_opens, 1);
        assert_eq!(net.client.counters.active_opens, 1);
    }

    #[test]
    fn without_options_falls_back_to_defaults() {
        let plain = Config {
            window_scale: false,
            timestamps: false,
            sack: false,
            ..Config::default()
        };
        let mut net = Net::with(
            plain,
            Config::default(),
            addr("198.18.0.1:40000"),
            addr("198.18.0.2:80"),
        );
        let (c, s) = open(&mut net);
        let synack = net.sent(Dir::ToClient).next().unwrap().header();
        assert_eq!(synack.options.window_scale, None);
        assert!(!synack.options.sack_permitted);
        assert_eq!(synack.options.timestamps, None);
        assert_eq!(net.server.get(s).unwrap().mss(), 1460);
        let data = Rng::new(3).bytes(300_000);
        transfer(&mut net, c, s, &data, true, 10 * SEC);
        // Unscaled, the server's 256 KiB buffer shows as the largest 16-bit window (scaled by
        // 3 it would read 32768).
        assert!(net.sent(Dir::ToClient).any(|p| p.header().window == 65535));
    }

    #[test]
    fn ipv6_announces_the_smaller_mss() {
        let cfg = Config::default();
        let mut net = Net::with(
            cfg,
            cfg,
            addr("[2001:db8::1]:40000"),
            addr("[2001:db8::2]:80"),
        );
        let (c, _) = open(&mut net);
        let syn = net.sent(Dir::ToServer).next().unwrap().header();
        assert_eq!(syn.options.mss, Some(1440));
        assert_eq!(net.client.get(c).unwrap().mss(), 1428);
    }

    #[test]
    fn lost_syn_and_syn_ack_are_retransmitted() {
        let mut net = Net::new(Config::default());
        let mut dropped = [false; 2];
        net.drop_if = Some(Box::new(move |p| {
            let first = &mut dropped[usize::from(p.dir == Dir::ToClient)];
            if p.header().flags.contains(Flags::SYN) && !*first {
                *first = true;
                return true;
            }
            false
        }));
        let c = net.connect();
        assert!(net.run_until(10 * SEC, |n| n.server.backlog(n.server_addr) == 1));
        assert_eq!(state(&net, false, c), Some(State::Established));
        assert!(net.client.counters.retransmits >= 1);
        let syns = net
            .sent(Dir::ToServer)
            .filter(|p| flags(p) == Flags::SYN)
            .count();
        let syn_acks = net
            .sent(Dir::ToClient)
            .filter(|p| flags(p) == Flags::SYN | Flags::ACK);
        // The client's second SYN makes the server answer again at once.
        // The first SYN-ACK's own timer (1 s) beats the client's second SYN timer (2 s).
        assert_eq!(syns, 2);
        assert_eq!(syn_acks.count(), 2);
    }

    #[test]
    fn syn_to_a_silent_peer_times_out_after_the_retries() {
        let mut net = Net::new(Config {
            syn_retries: 3,
            ..Config::default()
        });
        net.drop_if = Some(Box::new(|_| true));
        let c = net.connect();
        assert!(net.run_until(120 * SEC, |n| n.client.get(c).is_none()));
        let (events, _) = net.events();
        assert!(events.iter().any(|(_, e)| e.contains(Events::TIMED_OUT)));
        assert_eq!(net.sent(Dir::ToServer).count(), 4);
        // Exponential backoff: 1 s, 2 s, 4 s, 8 s.
        let times: Vec<_> = net.sent(Dir::ToServer).map(|p| p.at).collect();
        for (w, expect) in times.windows(2).zip([1, 2, 4]) {
            assert_eq!((w[1] - w[0]).as_secs(), expect);
        }
        assert_eq!(net.client.connections(), 0);
    }

    #[test]
    fn simultaneous_open_establishes_both_sides() {
        let mut net = Net::new(Config::default());
        let a = net.connect();
        let b = net
            .server
            .connect(net.server_addr, net.client_addr, net.now)
            .unwrap();
        assert!(net.run_until(5 * SEC, |n| {
            state(n, false, a) == Some(State::Established)
                && state(n, true, b) == Some(State::Established)
        }));
        let data = Rng::new(5).bytes(10_000);
        transfer(&mut net, a, b, &data, true, 5 * SEC);
    }

    #[test]
    fn a_port_without_listener_answers_rst() {
        let mut net = Net::new(Config::default());
        net.server_addr = addr("198.18.0.2:81");
        let c = net.connect();
        assert!(net.run_until(5 * SEC, |n| n.client.get(c).is_none()));
        let (events, _) = net.events();
        assert!(events.iter().any(|(_, e)| e.contains(Events::RESET)));
        let rst = net.sent(Dir::ToClient).next().unwrap().header();
        assert_eq!(rst.flags, Flags::RST | Flags::ACK);
        assert_eq!(net.server.counters.resets_sent, 1);
        assert_eq!(net.client.counters.resets_received, 1);
    }

    /// The server endpoint again, with `limits`.
    fn server_with(net: &mut Net, limits: Limits, backlog: Option<usize>) {
        net.server = Endpoint::new(*net.server.config(), limits, net.now);
        net.server.listen(net.server_addr, backlog).unwrap();
    }

    #[test]
    fn half_open_and_backlog_limits_drop_syns_and_count() {
        let mut net = Net::new(Config::default());
        let no_cookies = Limits {
            syn_cookies: false,
            ..Limits::default()
        };
        server_with(&mut net, no_cookies, Some(2));
        let mut clients = Vec::new();
        for port in 0..4 {
            let local = addr(&format!("198.18.0.1:{}", 41000 + port));
            clients.push(net.client.connect(local, net.server_addr, net.now).unwrap());
        }
        net.run_for(SEC / 2);
        assert_eq!(net.server.backlog(net.server_addr), 2);
        // Two half-open connections filled the backlog's room (Linux: the SYN queue is as
        // long as the backlog): the other two SYNs were dropped.
        assert_eq!(net.server.counters.half_open_drops, 2);
        // Accepting makes room: the retransmitted SYNs get in.
        assert!(net.accept().is_some() && net.accept().is_some());
        assert!(net.run_until(5 * SEC, |n| n.server.backlog(n.server_addr) == 2));
        assert!(net.accept().is_some() && net.accept().is_some());
        for c in clients {
            assert_eq!(state(&net, false, c), Some(State::Established));
        }
    }

    #[test]
    fn a_listener_without_room_for_half_open_connections_serves_through_syn_cookies() {
        // Every SYN answered with a cookie: the connection exists only once the ACK brings it
        // back, with the MSS, window scale, SACK and timestamps its SYN offered.
        let mut net = Net::new(Config::default());
        let cookies_only = Limits {
            max_half_open: 0,
            ..Limits::default()
        };
        server_with(&mut net, cookies_only, None);
        let (c, s) = open(&mut net);
        assert_eq!(net.server.counters.syncookies_sent, 1);
        assert_eq!(net.server.counters.syncookies_ok, 1);
        assert_eq!(net.server.counters.passive_opens, 1);
        let conn = net.server.get(s).unwrap();
        assert_eq!(conn.mss(), 1460 - 12, "{}", conn.summary());
        // A lost segment each way is repaired by SACK, and 1 MB needs a scaled window.
        let mut n = 0;
        net.drop_if = Some(Box::new(move |p| {
            n += usize::from(p.payload_len() > 0);
            n == 40 || n == 900
        }));
        let data = Rng::new(3).bytes(1 << 20);
        transfer(&mut net, c, s, &data, true, 10 * SEC);
        transfer(&mut net, c, s, &data, false, 10 * SEC);
        assert_eq!(net.server.counters.rto_expirations, 0);
        assert_eq!(net.client.counters.rto_expirations, 0);
    }

    #[test]
    fn broadcast_and_multicast_segments_get_no_answer_and_make_no_connection() {
        // RFC 1122 §4.2.3.10: a SYN to a multicast or broadcast address is dropped silently,
        // as is anything from such an address (Linux drops what is not for this host).
        let mut net = Net::new(Config::default());
        let any = addr("0.0.0.0:80");
        server_with(&mut net, Limits::default(), None);
        net.server.listen(any, None).unwrap();
        let syn = TcpHeader {
            src_port: 40000,
            dst_port: 80,
            seq: crate::wire::seq::Seq(1),
            flags: Flags::SYN,
            window: 65535,
            ..TcpHeader::default()
        };
        let ack = TcpHeader {
            flags: Flags::ACK,
            ..syn
        };
        let unicast_peer = addr("198.18.0.1:40000");
        for (from, to, h) in [
            (unicast_peer, addr("224.0.0.1:80"), syn),
            (unicast_peer, addr("255.255.255.255:80"), syn),
            (unicast_peer, addr("239.1.2.3:80"), ack),
            (addr("224.0.0.5:40000"), addr("198.18.0.2:80"), syn),
            (addr("0.0.0.0:40000"), addr("198.18.0.2:80"), syn),
            (addr("[2001:db8::1]:40000"), addr("[ff02::1]:80"), syn),
        ] {
            net.server.input(from, to, &h, &[], net.now);
        }
        let mut sent = 0;
        net.server.poll_transmit(net.now, |_, _, _, _| {
            sent += 1;
            true
        });
        assert_eq!(sent, 0, "no SYN-ACK, no RST");
        assert_eq!(net.server.connections(), 0);
        assert_eq!(net.server.counters.not_unicast, 6);
    }

    #[test]
    fn an_ack_for_an_unknown_connection_gets_rst_with_its_sequence() {
        let mut net = Net::new(Config::default());
        let h = TcpHeader {
            src_port: 40000,
            dst_port: 80,
            seq: super::super::Seq(1000),
            ack: super::super::Seq(777),
            flags: Flags::ACK,
            window: 100,
            ..TcpHeader::default()
        };
        net.server
            .input(net.client_addr, net.server_addr, &h, b"xyz", net.now);
        let mut out = Vec::new();
        net.server.poll_transmit(net.now, |_, _, h, _| {
            out.push(*h);
            true
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].flags, Flags::RST);
        assert_eq!(out[0].seq.0, 777);
        // Never a RST for a RST.
        let rst = TcpHeader {
            flags: Flags::RST,
            ..h
        };
        net.server
            .input(net.client_addr, net.server_addr, &rst, b"", net.now);
        net.server
            .poll_transmit(net.now, |_, _, _, _| panic!("answered a RST"));
    }
}

mod transfer {
    use super::*;

    #[test]
    fn megabytes_both_ways_arrive_exactly() {
        let mut net = Net::new(Config::default());
        let (c, s) = open(&mut net);
        let up = Rng::new(11).bytes(3_000_000);
        let down = Rng::new(12).bytes(3_000_000);
        transfer(&mut net, c, s, &up, true, 30 * SEC);
        transfer(&mut net, c, s, &down, false, 30 * SEC);
        assert_eq!(net.client.counters.retransmits, 0);
        assert_eq!(net.server.counters.retransmits, 0);
    }

    #[test]
    fn window_scaling_keeps_more_than_64k_in_flight() {
        let mut net = Net::new(Config::default());
        net.delay = Duration::from_millis(20);
        let (c, s) = open(&mut net);
        let data = Rng::new(13).bytes(4_000_000);
        transfer(&mut net, c, s, &data, true, 30 * SEC);
        let most = net
            .sent(Dir::ToClient)
            .map(|p| usize::from(p.header().window) << 3)
            .max()
            .unwrap();
        assert!(most > 65535, "largest window {most}");
        assert!(net.client.get(c).unwrap().congestion_window() > 65535);
    }

    #[test]
    fn a_connection_past_one_visits_bound_is_visited_again_in_the_same_call() {
        // A connection sends at most 256 segments a visit (fairness between connections); one
        // that has more due goes to the back of the queue and the same poll_transmit sends the
        // rest. Small segments (the server announces an MSS of 100) make a window of more than
        // 256 of them.
        let small = Config {
            mss: 100,
            ..Config::default()
        };
        let mut net = Net::with(
            Config::default(),
            small,
            addr("198.18.0.1:40000"),
            addr("198.18.0.2:80"),
        );
        let (c, s) = open(&mut net);
        transfer(&mut net, c, s, &Rng::new(14).bytes(2 << 20), true, 60 * SEC);
        let conn = net.client.get(c).unwrap();
        let segments = conn.congestion_window() / conn.mss();
        assert!(segments > 300, "a window of {segments} segments");
        let data = Rng::new(15).bytes(200 << 10);
        let now = net.now;
        net.client.with(c, now, |c, _| c.send(&data)).unwrap();
        let mut calls = Vec::new();
        for _ in 0..2 {
            let mut n = 0;
            net.client.poll_transmit(now, |_, _, _, _| {
                n += 1;
                true
            });
            calls.push(n);
        }
        assert!(
            calls[0] > 256,
            "one call sends all the window allows: {calls:?}"
        );
        assert_eq!(calls[1], 0, "nothing was left behind: {calls:?}");
    }

    #[test]
    fn nagle_holds_small_writes_while_data_is_in_flight() {
        for nodelay in [false, true] {
            let mut net = Net::new(Config::default());
            let (c, _) = open(&mut net);
            net.client.with(c, net.now, |c, _| c.set_nodelay(nodelay));
            let before = net.sent(Dir::ToServer).count();
            for _ in 0..5 {
                net.client.with(c, net.now, |c, _| c.send(b"ab"));
                net.step();
            }
            let small = net.sent(Dir::ToServer).count() - before;
            if nodelay {
                assert_eq!(small, 5, "nodelay sends every write");
            } else {
                assert!(small < 5, "Nagle coalesces ({small} segments)");
            }
        }
    }

    #[test]
    fn delayed_ack_waits_for_a_second_segment_or_the_timer() {
        let mut net = Net::new(Config::default());
        let (c, _) = open(&mut net);
        let before = net.sent(Dir::ToClient).count();
        net.client.with(c, net.now, |c, _| c.send(b"one"));
        // The ACK does not come with the next delivery, but when the delayed-ACK timer runs.
        net.run_for(Duration::from_millis(5));
        assert_eq!(net.sent(Dir::ToClient).count(), before);
        net.run_for(Duration::from_millis(50));
        assert_eq!(net.sent(Dir::ToClient).count(), before + 1);
        // Two full segments are acknowledged at once.
        let data = vec![7u8; 2 * 1448];
        net.client.with(c, net.now, |c, _| c.send(&data));
        let t0 = net.now;
        net.run_for(Duration::from_millis(5));
        let acks: Vec<_> = net.sent(Dir::ToClient).filter(|p| p.at > t0).collect();
        assert_eq!(acks.len(), 1);
        assert!(acks[0].at - t0 <= Duration::from_millis(2));
    }
}

mod retransmission {
    use super::*;

    #[test]
    fn rto_retransmits_with_backoff_then_recovers() {
        let mut net = Net::new(Config::default());
        let (c, s) = open(&mut net);
        let mut drop = 3;
        net.drop_if = Some(Box::new(move |p| {
            if p.dir == Dir::ToServer && p.payload_len() > 0 && drop > 0 {
                drop -= 1;
                return true;
            }
            false
        }));
        transfer(&mut net, c, s, b"hello", true, 10 * SEC);
        let tries: Vec<_> = net
            .sent(Dir::ToServer)
            .filter(|p| p.payload_len() > 0)
            .map(|p| p.at)
            .collect();
        assert_eq!(tries.len(), 4);
        let gaps: Vec<_> = tries.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps[1] >= gaps[0] * 2 - Duration::from_millis(1),
            "{gaps:?}"
        );
        assert!(
            gaps[2] >= gaps[1] * 2 - Duration::from_millis(1),
            "{gaps:?}"
        );
        assert_eq!(net.client.counters.rto_expirations, 3);
    }

    #[test]
    fn gives_up_after_the_retry_limit() {
        let mut net = Net::new(Config {
            max_retries: 4,
            ..Config::default()
        });
        let (c, _) = open(&mut net);
        net.drop_if = Some(Box::new(|p| p.dir == Dir::ToServer));
        net.client.with(c, net.now, |c, _| c.send(b"lost"));
        assert!(net.run_until(300 * SEC, |n| n.client.get(c).is_none()));
        assert_eq!(net.client.counters.timeouts, 1);
        let (events, _) = net.events();
        assert!(events.iter().any(|(_, e)| e.contains(Events::TIMED_OUT)));
    }

    fn one_lost_segment(sack: bool) -> Net {
        let cfg = Config {
            sack,
            ..Config::default()
        };
        let mut net = Net::new(cfg);
        let (c, s) = open(&mut net);
        // Open the congestion window first.
        transfer(&mut net, c, s, &Rng::new(1).bytes(200_000), true, 10 * SEC);
        let mut dropped = false;
        net.drop_if = Some(Box::new(move |p| {
            if p.dir == Dir::ToServer && p.payload_len() > 0 && !dropped {
                dropped = true;
                return true;
            }
            false
        }));
        transfer(&mut net, c, s, &Rng::new(2).bytes(100_000), true, 10 * SEC);
        net
    }

    #[test]
    fn three_duplicate_acks_retransmit_without_waiting_for_the_timer() {
        let net = one_lost_segment(false);
        assert_eq!(net.client.counters.fast_retransmits, 1);
        assert_eq!(net.client.counters.rto_expirations, 0);
        assert_eq!(net.client.counters.retransmits, 1);
        assert!(net.server.counters.out_of_order >= 3);
    }

    #[test]
    fn sack_recovery_sends_only_the_holes() {
        let cfg = Config::default();
        let mut net = Net::new(cfg);
        let (c, s) = open(&mut net);
        transfer(&mut net, c, s, &Rng::new(1).bytes(300_000), true, 10 * SEC);
        // Drop three separate segments of the next flight.
        let mut n = 0;
        net.drop_if = Some(Box::new(move |p| {
            if p.dir == Dir::ToServer && p.payload_len() > 0 {
                n += 1;
                return [3, 6, 9].contains(&n);
            }
            false
        }));
        let t0 = net.now;
        transfer(&mut net, c, s, &Rng::new(2).bytes(60_000), true, 10 * SEC);
        assert_eq!(net.client.counters.rto_expirations, 0);
        assert_eq!(net.client.counters.fast_retransmits, 1);
        assert_eq!(
            net.client.counters.retransmits, 3,
            "exactly the three holes"
        );
        // The receiver reported them with SACK blocks.
        assert!(
            net.sent(Dir::ToClient)
                .filter(|p| p.at >= t0)
                .any(|p| p.header().options.sack.len() >= 2)
        );
    }

    #[test]
    fn a_lost_tail_is_repaired_by_a_probe_not_a_timeout() {
        let mut net = Net::new(Config::default());
        let (c, s) = open(&mut net);
        transfer(&mut net, c, s, &Rng::new(1).bytes(200_000), true, 10 * SEC);
        // The last two segments of the next write are lost: no duplicate ACK can follow them.
        let mut n = 0;
        net.drop_if = Some(Box::new(move |p| {
            if p.dir == Dir::ToServer && p.payload_len() > 0 {
                n += 1;
                return n == 9 || n == 10;
            }
            false
        }));
        let t0 = net.now;
        transfer(
            &mut net,
            c,
            s,
            &Rng::new(4).bytes(10 * 1448),
            true,
            10 * SEC,
        );
        assert_eq!(net.client.counters.tail_loss_probes, 1);
        assert_eq!(net.client.counters.rto_expirations, 0);
        assert!(
            net.now - t0 < Duration::from_millis(100),
            "{:?}",
            net.now - t0
        );
    }

    #[test]
    fn newreno_partial_acks_repair_several_losses_in_one_window() {
        let cfg = Config {
            sack: false,
            congestion: Algorithm::NewReno,
            ..Config::default()
        };
        let mut net = Net::new(cfg);
        let (c, s) = open(&mut net);
        transfer(&mut net, c, s, &Rng::new(1).bytes(300_000), true, 10 * SEC);
        let mut n = 0;
        net.drop_if = Some(Box::new(move |p| {
            if p.dir == Dir::ToServer && p.payload_len() > 0 {
                n += 1;
                return [3, 6].contains(&n);
            }
            false
        }));
        transfer(&mut net, c, s, &Rng::new(2).bytes(60_000), true, 10 * SEC);
        assert_eq!(net.client.counters.rto_expirations, 0);
        assert_eq!(net.client.counters.retransmits, 2);
    }
}

mod window {
    use super::*;

    #[test]
    fn zero_window_is_probed_and_transfer_resumes_when_the_reader_reads() {
        let cfg = Config {
            recv_buffer: 16 * 1024,
            ..Config::default()
        };
        let mut net = Net::new(cfg);
        let (c, s) = open(&mut net);
        let data = Rng::new(21).bytes(100_000);
        let mut sent = 0;
        // The server does not read: the window closes.
        net.run_until(3 * SEC, |n| {
            sent += n
                .client
                .with(c, n.now, |c, _| c.send(&data[sent..]))
                .unwrap();
            false
        });
        assert_eq!(net.server.get(s).unwrap().readable(), 16 * 1024);
        assert!(net.sent(Dir::ToClient).any(|p| p.header().window == 0));
        assert!(
            net.client.counters.window_probes >= 2,
            "probes while the window is shut"
        );
        assert_eq!(net.client.counters.rto_expirations, 0);
        // Now the server reads everything.
        let mut got = Vec::new();
        assert!(net.run_until(30 * SEC, |n| {
            sent += n
                .client
                .with(c, n.now, |c, _| c.send(&data[sent..]))
                .unwrap();
            let mut buf = [0u8; 4096];
            let k = n.server.with(s, n.now, |c, _| c.recv(&mut buf)).unwrap();
            got.extend_from_slice(&buf[..k]);
            got.len() == data.len()
        }));
        assert!(got == data);
    }
}

mod close;

mod reset {
    use super::*;

    fn inject(net: &mut Net, to_server: bool, h: TcpHeader) {
        let now = net.now;
        if to_server {
            net.server
                .input(net.client_addr, net.server_addr, &h, b"", now);
        } else {
            net.client
                .input(net.server_addr, net.client_addr, &h, b"", now);
        }
    }

    fn last_from_client(net: &mut Net) -> TcpHeader {
        net.run_for(Duration::from_millis(5));
        net.sent(Dir::ToServer).last().unwrap().header()
    }

    #[test]
    fn rst_with_the_exact_sequence_resets_others_get_a_challenge_ack() {
        let mut net = Net::new(Config::default());
        let (c, s) = open(&mut net);
        let from_client = last_from_client(&mut net);
        let rcv_nxt = from_client.ack;
        let base = TcpHeader {
            src_port: 80,
            dst_port: 40000,
            flags: Flags::RST,
            ..TcpHeader::default()
        };
        inject(
            &mut net,
            false,
            TcpHeader {
                seq: rcv_nxt + 10,
                ..base
            },
        );
        assert_eq!(net.client.counters.challenge_acks, 1);
        assert_eq!(state(&net, false, c), Some(State::Established));
        let challenge = last_from_client(&mut net);
        assert_eq!(challenge.flags, Flags::ACK);
        assert_eq!(challenge.ack, rcv_nxt);
        // Far outside the window: ignored (a plain ACK, no reset).
        inject(
            &mut net,
            false,
            TcpHeader {
                seq: rcv_nxt + 1_000_000_000,
                ..base
            },
        );
        assert_eq!(state(&net, false, c), Some(State::Established));
        inject(
            &mut net,
            false,
            TcpHeader {
                seq: rcv_nxt,
                ..base
            },
        );
        assert_eq!(net.client.get(c).map(|c| c.state()), None);
        assert_eq!(net.client.counters.resets_received, 1);
        let _ = s;
    }

    #[test]
    fn syn_on_an_established_connection_gets_a_challenge_ack() {
        let mut net = Net::new(Config::default());
        let (c, _) = open(&mut net);
        let rcv_nxt = last_from_client(&mut net).ack;
        inject(
            &mut net,
            false,
            TcpHeader {
                src_port: 80,
                dst_port: 40000,
                seq: rcv_nxt + 5,
                flags: Flags::SYN,
                window: 1000,
                ..TcpHeader::default()
            },
        );
        assert_eq!(state(&net, false, c), Some(State::Established));
        assert_eq!(net.client.counters.challenge_acks, 1);
    }

    #[test]
    fn rst_during_syn_received_removes_the_half_open_connection() {
        let mut net = Net::new(Config::default());
        let mut syn = None;
        net.drop_if = Some(Box::new(|p| p.dir == Dir::ToClient));
        let c = net.connect();
        net.run_for(Duration::from_millis(5));
        for p in net.sent(Dir::ToServer) {
            syn = Some(p.header());
        }
        let syn = syn.unwrap();
        assert_eq!(net.server.connections(), 1);
        inject(
            &mut net,
            true,
            TcpHeader {
                seq: syn.seq + 1,
                flags: Flags::RST,
                ..syn
            },
        );
        assert_eq!(net.server.connections(), 0);
        let _ = c;
    }
}

mod keepalive {
    use super::*;

    #[test]
    fn idle_connection_is_probed_and_dropped_when_the_peer_is_gone() {
        let cfg = Config {
            keepalive: Some(Duration::from_secs(10)),
            keepalive_interval: Duration::from_secs(2),
            keepalive_probes: 3,
            ..Config::default()
        };
        let mut net = Net::new(cfg);
        let (c, s) = open(&mut net);
        // While the peer answers, probes keep the connection.
        net.run_for(Duration::from_secs(25));
        assert!(net.client.counters.keepalive_probes >= 2);
        assert_eq!(state(&net, false, c), Some(State::Established));
        // The peer vanishes.
        net.drop_if = Some(Box::new(|p| p.dir == Dir::ToClient));
        assert!(net.run_until(60 * SEC, |n| n.client.get(c).is_none()));
        assert_eq!(net.client.counters.timeouts, 1);
        let _ = s;
    }
}

mod simulator {
    use super::*;

    /// Transfers both ways over a link with loss, reordering and duplication, then closes;
    /// checks every byte and that both flow tables end empty.
    fn run(seed: u64, faults: Faults, cfg: Config, size: usize) {
        let mut net = Net::new(cfg);
        net.rng = Rng::new(seed);
        net.faults = faults;
        let c = net.connect();
        assert!(
            net.run_until(60 * SEC, |n| n.server.backlog(n.server_addr) == 1),
            "seed {seed}: no handshake"
        );
        let s = net.accept().unwrap();
        let up = Rng::new(seed + 100).bytes(size);
        let down = Rng::new(seed + 200).bytes(size);
        let mut a = Pump::new(up.clone());
        let mut b = Pump::new(down.clone());
        let (mut c_closed, mut s_closed) = (false, false);
        let ok = net.run_until(600 * SEC, |n| {
            let now = n.now;
            a.pump(&mut n.client, c, &mut n.server, s, now);
            b.pump(&mut n.server, s, &mut n.client, c, now);
            if a.sent == up.len() && !c_closed {
                n.client.with(c, now, |c, _| c.close());
                c_closed = true;
            }
            if b.sent == down.len() && !s_closed {
                n.server.with(s, now, |c, _| c.close());
                s_closed = true;
            }
            a.done() && b.done()
        });
        if !ok {
            // The last segments, to see how it got stuck.
            for p in net.trace.iter().rev().take(40).rev() {
                let h = p.header();
                eprintln!(
                    "{:?} {:?} {:?} seq {} ack {} win {} len {} ts {:?}",
                    p.at - net.trace[0].at,
                    p.dir,
                    h.flags,
                    h.seq,
                    h.ack,
                    h.window,
                    p.payload_len(),
                    h.options.timestamps
                );
            }
        }
        assert!(
            ok,
            "seed {seed}: stalled at {}/{} up, {}/{} down\nclient {:?}\nserver {:?}\n{:?}\n{:?}",
            a.received.len(),
            size,
            b.received.len(),
            size,
            net.client.get(c).map(|c| c.summary()),
            net.server.get(s).map(|c| c.summary()),
            net.client.counters,
            net.server.counters,
        );
        assert!(a.received == up, "seed {seed}: upstream bytes differ");
        assert!(b.received == down, "seed {seed}: downstream bytes differ");
        net.faults = Faults::default();
        assert!(
            net.run_until(300 * SEC, |n| n.client.connections() == 0
                && n.server.connections() == 0),
            "seed {seed}: flow tables not empty: {:?} / {:?}",
            net.client.states(),
            net.server.states()
        );
    }

    #[test]
    fn loss_reordering_and_duplication_never_corrupt_the_stream() {
        let faults = Faults {
            loss: 0.03,
            reorder: 0.05,
            duplicate: 0.02,
        };
        for seed in 1..=100 {
            run(seed, faults, Config::default(), 200_000);
        }
    }

    #[test]
    fn heavy_loss_without_sack_or_timestamps_still_completes() {
        let cfg = Config {
            sack: false,
            timestamps: false,
            congestion: Algorithm::NewReno,
            ..Config::default()
        };
        let faults = Faults {
            loss: 0.10,
            reorder: 0.10,
            duplicate: 0.05,
        };
        for seed in 1..=50 {
            run(seed, faults, cfg, 100_000);
        }
    }

    #[test]
    fn small_buffers_and_few_reassembly_ranges_still_complete() {
        let cfg = Config {
            recv_buffer: 8 * 1024,
            send_buffer: 4 * 1024,
            max_ooo_ranges: 2,
            ..Config::default()
        };
        let faults = Faults {
            loss: 0.05,
            reorder: 0.2,
            duplicate: 0.05,
        };
        for seed in 1..=50 {
            run(seed, faults, cfg, 100_000);
        }
    }
}

mod sequence_space {
    use std::time::Instant;

    use super::*;
    use crate::{
        stack::tcp::{Endpoint, Limits},
        wire::{seq::Seq, tcp::TcpOptions},
    };

    /// The byte at stream offset `i`: a pattern with period 251, so a shift shows.
    fn byte(i: u64) -> u8 {
        (i % 251) as u8
    }

    #[test]
    fn more_than_four_gigabytes_stay_exact_when_an_ack_lands_on_the_isn() {
        // SND.UNA passes the ISS again after 2^32 - 1 bytes. An ACK that lands there must not
        // be taken for the ACK of the SYN (which once subtracted a byte and shifted the
        // stream). The peer acknowledges every segment, and once exactly at the ISS.
        let cfg = Config {
            mss: 65000,
            send_buffer: 4 << 20,
            window_scale: true,
            timestamps: false,
            sack: false,
            ..Config::default()
        };
        let t0 = Instant::now();
        let mut now = t0;
        let mut ep = Endpoint::new(cfg, Limits::default(), t0);
        let (local, remote) = (addr("198.18.0.2:80"), addr("198.18.0.1:40000"));
        ep.listen(local, None).unwrap();
        let peer_isn = Seq(7);
        let syn = TcpHeader {
            src_port: 40000,
            dst_port: 80,
            seq: peer_isn,
            flags: Flags::SYN,
            window: 65535,
            options: TcpOptions {
                mss: Some(65000),
                window_scale: Some(14),
                ..TcpOptions::default()
            },
            ..TcpHeader::default()
        };
        ep.input(remote, local, &syn, &[], now);
        // Each segment: its header, its length, and its first bytes (enough to see a shift).
        let mut sent: Vec<(TcpHeader, usize, Vec<u8>)> = Vec::new();
        let collect = |ep: &mut Endpoint, now| {
            let mut out = Vec::new();
            ep.poll_transmit(now, |_, _, h, p| {
                let head: Vec<u8> = p[0].iter().chain(p[1]).take(16).copied().collect();
                out.push((*h, p[0].len() + p[1].len(), head));
                true
            });
            out
        };
        sent.extend(collect(&mut ep, now));
        let iss = sent[0].0.seq;
        let ack = |a: Seq| TcpHeader {
            src_port: 40000,
            dst_port: 80,
            seq: peer_isn + 1,
            ack: a,
            flags: Flags::ACK,
            window: 65535,
            ..TcpHeader::default()
        };
        ep.input(remote, local, &ack(iss + 1), &[], now);
        let id = ep.accept(local).expect("accepted");
        let pattern: Vec<u8> = (0..(1u64 << 20) + 251).map(byte).collect();
        let total: u64 = (1 << 32) + (8 << 20);
        let (mut written, mut checked) = (0u64, 0u64);
        while checked < total {
            now += Duration::from_millis(1);
            // The application keeps the send buffer full.
            while written < total {
                let from = (written % 251) as usize;
                let n = ep
                    .with(id, now, |c, _| c.send(&pattern[from..from + (1 << 20)]))
                    .expect("open");
                if n == 0 {
                    break;
                }
                written += n as u64;
            }
            let segments = collect(&mut ep, now);
            assert!(
                !segments.is_empty(),
                "stalled at {checked} of {total} bytes"
            );
            for (h, len, head) in segments {
                let offset = u64::from(h.seq.since(iss + 1) as u32);
                assert_eq!(
                    offset,
                    checked % (1 << 32),
                    "segments in order, none repeated"
                );
                let want: Vec<u8> = (checked..checked + head.len() as u64).map(byte).collect();
                assert_eq!(head, want, "bytes at offset {checked}");
                let end = checked + len as u64;
                // Exactly at the ISS, once, when a segment spans it.
                if checked < (1 << 32) - 1 && end > (1 << 32) - 1 {
                    ep.input(remote, local, &ack(iss), &[], now);
                }
                ep.input(remote, local, &ack(h.seq + len), &[], now);
                checked = end;
            }
        }
        assert!(ep.get(id).is_some_and(|c| c.state() == State::Established));
    }
}
