//! What a second operator at the console or a client on the network can do (issue: security
//! review): two daemons started together, `gc` beside a live attachment of another build, a
//! metrics client that trickles bytes, datagrams whose IPv4 header checksum is wrong, IPv6
//! routing headers still in transit, and spoofed sources against a wildcard socket. Requires
//! root.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use support::netns::*;

/// `netdemux --netns <ns_b> run --iface <veth_b> ARGS`, not waited for.
fn spawn_run(tb: &Testbed, args: &[&str]) -> Child {
    Command::new(netdemux_bin())
        .args(["--netns", &tb.ns_b, "run", "--iface", &tb.veth_b])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netdemux run starts")
}

/// Waits up to `limit` for `child` to exit; its status and stderr, or `None` if it runs on.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            return Some((status, err));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// SIGTERM and wait (SIGKILL after 10 s).
fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if wait_exit(&mut child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn two_runs_started_together_one_serves_one_is_refused_naming_it_and_its_socket_answers() {
    let tb = Testbed::new(1);
    for round in 0..4 {
        let mut a = spawn_run(&tb, &["--udp-sink", "198.18.0.2:7000"]);
        let mut b = spawn_run(&tb, &["--udp-sink", "198.18.0.2:7000"]);
        // One of them exits (refused); wait for it.
        let deadline = Instant::now() + Duration::from_secs(15);
        let (loser, winner, err) = loop {
            if let Some((status, err)) = wait_exit(&mut a, Duration::from_millis(50)) {
                assert_eq!(status.code(), Some(1), "round {round}: {err}");
                break (a, b, err);
            }
            if let Some((status, err)) = wait_exit(&mut b, Duration::from_millis(50)) {
                assert_eq!(status.code(), Some(1), "round {round}: {err}");
                break (b, a, err);
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: both runs still run"
            );
        };
        drop(loser);
        let pid = winner.id();
        assert!(
            err.contains("already serves") && err.contains(&format!("pid {pid}")),
            "round {round}: the refusal names the daemon that serves: {err}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "round {round}: one line: {err}"
        );
        // The survivor still answers on its control socket, and serves.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stats = loop {
            let out = tb.netdemux(&["stats", "--iface", &tb.veth_b, "--json"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("\"services\"") {
                break serde_json::from_str::<serde_json::Value>(&text).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the survivor's control socket does not answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(stats["daemon_pid"], pid, "round {round}: {stats}");
        stop(winner);
        assert!(!tb.pin_dir().exists(), "round {round}: state left behind");
    }
}

#[test]
fn gc_leaves_a_live_attachment_of_another_layout_alone() {
    let tb = Testbed::new(1);
    tb.attach("native");
    tb.netdemux_ok(&["bind", "--iface", &tb.veth_b, "udp", "198.18.0.2:7000"]);
    // Pretend another build, with another state layout, attached (its daemon may be running).
    let info_pin = tb.pin_dir().join(&tb.veth_b).join("info");
    let data = aya::maps::MapData::from_pin(&info_pin).unwrap();
    let mut info: aya::maps::Array<_, netdemux_common::StateInfo> =
        aya::maps::Map::from_map_data(data)
            .unwrap()
            .try_into()
            .unwrap();
    let mut v = info.get(&0, 0).unwrap();
    v.layout_version += 1;
    info.set(0, v, 0).unwrap();

    let removed = tb.netdemux_ok(&["gc", "--json"]);
    let removed: Vec<String> = serde_json::from_str(&removed).unwrap();
    let ours = tb.pin_dir().join(&tb.veth_b);
    assert!(
        !removed.iter().any(|r| std::path::Path::new(r) == ours),
        "gc removed a live attachment: {removed:?}"
    );
    assert!(ours.exists());
    let entry = tb.status_entry().expect("status lists it");
    assert_eq!(entry["state"], "foreign", "{entry}");
    // Its program still runs: the binding still redirects (nobody consumes, so it is counted
    // as redirected to a queue without a socket and falls back to the kernel).
    let out = tb.netdemux(&["detach", "--iface", &tb.veth_b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ours.exists());
}

/// Starts a daemon with a sink and the metrics endpoint on 127.0.0.1:9466 in namespace b.
fn metrics_daemon(tb: &Testbed) -> netdemux::testbed::Daemon {
    netdemux::testbed::Daemon::start(
        tb,
        &[
            "--udp-sink",
            "198.18.0.2:7000",
            "--metrics",
            "127.0.0.1:9466",
        ],
    )
    .expect("netdemux run comes up")
}

/// One scrape from namespace b; the answer's status line, or the error.
fn scrape(tb: &Testbed) -> Result<String, String> {
    in_netns(&tb.ns_b, || {
        let mut s = TcpStream::connect("127.0.0.1:9466").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
        let mut r = String::new();
        s.read_to_string(&mut r).map_err(|e| e.to_string())?;
        Ok(r.lines().next().unwrap_or("").to_string())
    })
    .join()
    .unwrap()
}

/// Clients in namespace b that each send a request one byte a second, for up to `secs`;
/// each returns how long the server kept it.
fn trickling_clients(tb: &Testbed, n: usize, secs: u64) -> Vec<thread::JoinHandle<Duration>> {
    (0..n)
        .map(|_| {
            in_netns(&tb.ns_b, move || {
                let start = Instant::now();
                let mut s = TcpStream::connect("127.0.0.1:9466").unwrap();
                for b in b"GET /metrics HTTP/1.1\r\nHost: slow\r\n".iter().cycle() {
                    if s.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(secs) {
                        break;
                    }
                    // A closed connection shows as EOF (or a reset) on a short read.
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let mut buf = [0u8; 256];
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                start.elapsed()
            })
        })
        .collect()
}

#[test]
fn a_trickling_metrics_client_is_cut_off_while_scrapes_and_shutdown_stay_prompt() {
    let tb = Testbed::new(1);
    let daemon = metrics_daemon(&tb);
    let slow = trickling_clients(&tb, 3, 30);
    thread::sleep(Duration::from_millis(1500));
    // Scrapes are answered while the slow clients hold their connections.
    for _ in 0..3 {
        let status = scrape(&tb);
        assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"), "{status:?}");
    }
    // And each slow client is cut off at the deadline, long before it would stop by itself.
    for h in slow {
        let held = h.join().unwrap();
        assert!(
            held < Duration::from_secs(15),
            "a client sending a byte a second was kept {held:?}"
        );
    }
    // Shutdown does not wait for a client in the middle of a request.
    let _slow = trickling_clients(&tb, 2, 30);
    thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    let status = daemon.stop().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} on a metrics client",
        asked.elapsed()
    );
    assert!(!tb.pin_dir().exists());
}

#[test]
fn many_metrics_clients_at_once_are_bounded_and_the_endpoint_recovers() {
    let tb = Testbed::new(1);
    let _daemon = metrics_daemon(&tb);
    // More idle connections than the endpoint serves at once: the surplus is closed at once,
    // and once the deadline has passed, scrapes are answered again.
    let idle = in_netns(&tb.ns_b, || {
        (0..64)
            .filter_map(|_| TcpStream::connect("127.0.0.1:9466").ok())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(idle.len(), 64);
    thread::sleep(Duration::from_secs(6));
    let status = scrape(&tb);
    assert_eq!(status.as_deref(), Ok("HTTP/1.1 200 OK"), "{status:?}");
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock) => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 64, "every idle connection was closed by the server");
}
