//! Closing: FIN_WAIT, CLOSING, LAST_ACK, TIME_WAIT, and reopening a 4-tuple the peer holds
//! in TIME_WAIT.

use super::*;

#[test]
fn active_close_goes_through_fin_wait_and_time_wait() {
    let mut net = Net::new(Config::default());
    let (c, s) = open(&mut net);
    net.client.with(c, net.now, |c, _| c.close());
    assert_eq!(state(&net, false, c), Some(State::FinWait1));
    assert!(net.run_until(SEC, |n| state(n, false, c) == Some(State::FinWait2)));
    assert_eq!(state(&net, true, s), Some(State::CloseWait));
    let (_, se) = net.events();
    assert!(se.iter().any(|(_, e)| e.contains(Events::PEER_CLOSED)));
    net.server.with(s, net.now, |c, _| c.close());
    assert!(net.run_until(SEC, |n| state(n, false, c) == Some(State::TimeWait)));
    assert!(
        net.run_until(SEC, |n| n.server.get(s).is_none()),
        "LAST_ACK -> CLOSED"
    );
    // TIME_WAIT (a record once the connection has nothing left) lasts 2 MSL.
    let t0 = net.now;
    assert!(net.run_until(120 * SEC, |n| state(n, false, c).is_none()));
    assert!(
        net.now - t0 >= Duration::from_secs(59),
        "{:?}",
        net.now - t0
    );
    // One FIN each way, never a second.
    let fins = |d| {
        net.sent(d)
            .filter(|p| flags(p).contains(Flags::FIN))
            .count()
    };
    assert_eq!((fins(Dir::ToServer), fins(Dir::ToClient)), (1, 1));
    assert_eq!(net.client.connections(), 0);
    assert_eq!(net.server.connections(), 0);
    assert_eq!(net.client.time_waits(), 0);
}

#[test]
fn time_wait_acknowledges_a_retransmitted_fin() {
    let mut net = Net::new(Config::default());
    let (c, s) = open(&mut net);
    net.client.with(c, net.now, |c, _| c.close());
    net.run_for(SEC / 10);
    net.server.with(s, net.now, |c, _| c.close());
    // The client's last ACK is lost: the server sends its FIN again.
    let mut dropped = false;
    net.drop_if = Some(Box::new(move |p| {
        if p.dir == Dir::ToServer && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    assert!(net.run_until(10 * SEC, |n| n.server.get(s).is_none()));
    assert_eq!(state(&net, false, c), Some(State::TimeWait));
    assert_eq!(net.server.counters.retransmits, 1);
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut net = Net::new(Config::default());
    let (c, s) = open(&mut net);
    net.client.with(c, net.now, |c, _| c.close());
    net.server.with(s, net.now, |c, _| c.close());
    net.step();
    net.step();
    let seen_closing = [state(&net, false, c), state(&net, true, s)]
        .iter()
        .any(|st| *st == Some(State::Closing) || *st == Some(State::TimeWait));
    assert!(seen_closing);
    assert!(net.run_until(SEC, |n| {
        state(n, false, c) == Some(State::TimeWait) && state(n, true, s) == Some(State::TimeWait)
    }));
}

#[test]
fn close_after_data_delivers_everything_before_the_fin() {
    let mut net = Net::new(Config::default());
    let (c, s) = open(&mut net);
    let data = Rng::new(31).bytes(500_000);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut closed = false;
    assert!(net.run_until(20 * SEC, |n| {
        if sent < data.len() {
            sent += n
                .client
                .with(c, n.now, |c, _| c.send(&data[sent..]))
                .unwrap();
        } else if !closed {
            n.client.with(c, n.now, |c, _| c.close());
            closed = true;
        }
        let mut buf = [0u8; 65536];
        let k = n.server.with(s, n.now, |c, _| c.recv(&mut buf)).unwrap();
        got.extend_from_slice(&buf[..k]);
        n.server.get(s).unwrap().read_closed()
    }));
    assert!(got == data);
}

#[test]
fn close_in_syn_sent_ends_at_once() {
    let mut net = Net::new(Config::default());
    net.drop_if = Some(Box::new(|_| true));
    let c = net.connect();
    net.step();
    net.client.with(c, net.now, |c, _| c.close());
    assert!(net.client.get(c).is_none());
}

#[test]
fn close_in_syn_received_sends_fin_after_the_handshake() {
    let mut net = Net::new(Config::default());
    let c = net.connect();
    net.step(); // SYN delivered, SYN-ACK on the way
    let s = {
        let id = net.server.accept(net.server_addr);
        assert!(id.is_none(), "not established yet");
        net.run_until(SEC, |n| n.server.backlog(n.server_addr) == 1);
        net.accept().unwrap()
    };
    net.server.with(s, net.now, |c, _| c.close());
    assert!(net.run_until(SEC, |n| state(n, false, c) == Some(State::CloseWait)));
}

#[test]
fn abort_sends_rst_and_the_peer_sees_a_reset() {
    let mut net = Net::new(Config::default());
    let (c, s) = open(&mut net);
    net.server.with(s, net.now, |c, _| c.abort());
    assert!(net.server.get(s).is_none() || net.run_until(SEC, |n| n.server.get(s).is_none()));
    assert!(net.run_until(SEC, |n| n.client.get(c).is_none()));
    let (ce, _) = net.events();
    assert!(ce.iter().any(|(_, e)| e.contains(Events::RESET)));
    assert_eq!(net.server.counters.resets_sent, 1);
}

#[test]
fn fin_wait_2_gives_up_when_the_peer_never_closes() {
    let mut net = Net::new(Config::default());
    let (c, _) = open(&mut net);
    net.client.with(c, net.now, |c, _| c.close());
    assert!(net.run_until(SEC, |n| state(n, false, c) == Some(State::FinWait2)));
    assert!(net.run_until(120 * SEC, |n| n.client.get(c).is_none()));
}

/// The server closes first, the client after: the server's side holds the 4-tuple in
/// TIME_WAIT, the client's is gone.
fn server_closes_first(net: &mut Net, c: ConnId, s: ConnId) {
    net.server.with(s, net.now, |c, _| c.close());
    net.run_for(SEC / 10);
    net.client.with(c, net.now, |c, _| c.close());
    assert!(net.run_until(SEC, |n| {
        state(n, true, s) == Some(State::TimeWait) && n.client.get(c).is_none()
    }));
}

#[test]
fn a_new_syn_reopens_a_connection_in_time_wait() {
    let mut net = Net::new(Config::default());
    let (c, s) = open(&mut net);
    server_closes_first(&mut net, c, s);
    // The client opens a new connection with the same addresses.
    let id = net
        .client
        .connect(net.client_addr, net.server_addr, net.now);
    assert!(id.is_ok(), "the client's side is gone");
    assert!(net.run_until(SEC, |n| n.server.backlog(n.server_addr) == 1));
    assert!(net.server.counters.passive_opens == 2);
}

/// The queue workers of a stack each have an endpoint, and outbound connections go to them
/// in turn; the peer (closing first) holds each 4-tuple in TIME_WAIT. Endpoints sharing one
/// ISN source open every connection past the last one; with a secret each, the ISNs and
/// timestamps of one worker trail the other's, and every other SYN would be answered with
/// the old connection's ACK, reset and sent again a second later (RFC 6191, as Linux).
#[test]
fn workers_sharing_an_isn_source_reopen_the_peers_time_wait_in_turn() {
    let mut net = Net::new(Config::default());
    let isn = IsnSource::new(net.now);
    net.client = Endpoint::with_isn(Config::default(), Limits::default(), isn.clone());
    let mut other = Endpoint::with_isn(Config::default(), Limits::default(), isn);
    for round in 1..=6 {
        let (c, s) = open(&mut net);
        server_closes_first(&mut net, c, s);
        assert_eq!(net.server.counters.passive_opens, round);
        // The next connection comes from the other worker.
        std::mem::swap(&mut net.client, &mut other);
    }
    for ep in [&net.client, &other] {
        assert_eq!(
            (ep.counters.resets_sent, ep.counters.retransmits),
            (0, 0),
            "a SYN met the TIME_WAIT"
        );
    }
}
