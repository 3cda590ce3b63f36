//! The library's testbed with the tests' conventions: panics instead of errors, and the
//! `netdemux` binary under test.

use std::{
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

#[allow(unused_imports)]
pub use netdemux::testbed::{IP_B, IP6_B, in_netns};

/// The netdemux binary under test.
pub fn netdemux_bin() -> &'static str {
    env!("CARGO_BIN_EXE_netdemux")
}

/// Runs a command, returning its output; panics only if it cannot be started.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    netdemux::testbed::run(cmd, args).unwrap()
}

/// Runs a command that must succeed; returns its stdout.
pub fn must(cmd: &str, args: &[&str]) -> String {
    netdemux::testbed::must(cmd, args).unwrap()
}

/// Runs a python3 script with scapy (Debian's python3-scapy) in namespace `ns`; panics with its
/// errors if it fails.
#[allow(dead_code)]
pub fn scapy(ns: &str, script: &str) {
    let out = run(
        "ip",
        &["netns", "exec", ns, "/usr/bin/python3", "-c", script],
    );
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A kernel UDP socket bound in a test namespace, receiving on a thread of its own until
/// [`QuietReceiver::finish`] says the sender is done and 500 ms then pass without a datagram
/// (or 30 s pass). A sender on a loaded machine may start late or pause: a plain read timeout
/// once ended a receiver with 0 of the generator's 12288 frames (most likely before the first
/// one came), in a loop of the tests run twice at once.
#[allow(dead_code, reason = "not every test file has a kernel receiver")]
pub struct QuietReceiver<T> {
    sent: Arc<AtomicBool>,
    handle: thread::JoinHandle<T>,
}

#[allow(dead_code, reason = "not every test file has a kernel receiver")]
impl<T: Send + 'static> QuietReceiver<T> {
    /// Binds `addr` in namespace `ns` (forcing a receive buffer of `rcvbuf` bytes, if given)
    /// and returns once it is bound; `each` gets `state`, every datagram and its source.
    pub fn start(
        ns: &str,
        addr: SocketAddr,
        rcvbuf: Option<usize>,
        mut state: T,
        mut each: impl FnMut(&mut T, &[u8], SocketAddr) + Send + 'static,
    ) -> QuietReceiver<T> {
        let sent = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let done = sent.clone();
        let handle = in_netns(ns, move || {
            let sock = UdpSocket::bind(addr).unwrap();
            if let Some(bytes) = rcvbuf {
                nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &bytes)
                    .unwrap();
            }
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            // The later of the last datagram and the moment the sender was seen done.
            let (mut last, mut sender_done) = (Instant::now(), false);
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        each(&mut state, &buf[..n], from);
                        last = Instant::now();
                    }
                    Err(_) if !sender_done => {
                        if done.load(Ordering::Acquire) {
                            (last, sender_done) = (Instant::now(), true);
                        }
                    }
                    Err(_) if last.elapsed() >= Duration::from_millis(500) => break,
                    Err(_) => {}
                }
            }
            state
        });
        ready_rx.recv().unwrap();
        QuietReceiver { sent, handle }
    }

    /// Says the sender is done; returns the state once the socket has been quiet.
    pub fn finish(self) -> T {
        self.sent.store(true, Ordering::Release);
        self.handle.join().unwrap()
    }
}

/// A testbed (see `netdemux::testbed`) whose helpers panic on failure.
pub struct Testbed(netdemux::testbed::Testbed);

impl std::ops::Deref for Testbed {
    type Target = netdemux::testbed::Testbed;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Testbed {
    /// A fresh testbed with `queues` queues per veth end.
    pub fn new(queues: u32) -> Testbed {
        Testbed(netdemux::testbed::Testbed::new("ndt", queues, netdemux_bin()).expect("testbed"))
    }

    /// `netdemux --netns <ns_b> ARGS`.
    pub fn netdemux(&self, args: &[&str]) -> Output {
        self.0.netdemux(args).unwrap()
    }

    /// Like [`Self::netdemux`], but it must succeed; returns stdout.
    pub fn netdemux_ok(&self, args: &[&str]) -> String {
        self.0.netdemux_ok(args).unwrap()
    }

    /// `stats --json`, parsed.
    pub fn stats(&self) -> serde_json::Value {
        self.0.stats().unwrap()
    }

    /// Attaches to veth_b in `mode`.
    pub fn attach(&self, mode: &str) {
        self.netdemux_ok(&["attach", "--iface", &self.veth_b, "--mode", mode]);
    }

    /// veth's own transmit drops on the peer side.
    pub fn sender_tx_dropped(&self) -> u64 {
        self.0.sender_tx_dropped().unwrap()
    }

    /// Asserts that `got` of the `sent` datagrams arrived and that veth's count of the frames
    /// it dropped meanwhile, `dropped`, covers the rest; a failure shows `stats` and the
    /// kernel's counters. Covered, not equal: the counter is the interface's, so it also counts
    /// frames of the peer kernel's own that veth could not pass on. The equation failed so in
    /// CI and in a loop of the daemon tests here: every datagram received, and one drop
    /// counted (the count was then read from the testbed's creation on).
    #[allow(dead_code, reason = "not every test file sends datagrams through veth")]
    pub fn assert_covered(&self, what: &str, sent: u64, got: u64, dropped: u64, stats: &str) {
        if got > sent || sent - got > dropped {
            panic!(
                "{what}: sent {sent}, got {got}, veth dropped {dropped}: {stats}{}",
                self.kernel_counters()
            );
        }
    }

    /// The kernel's counters on the way from namespace a's sockets to veth_b: both veth ends'
    /// link and driver counters and both namespaces' IP and UDP counters.
    fn kernel_counters(&self) -> String {
        let mut out = String::new();
        for (ns, dev) in [(&self.ns_a, &self.veth_a), (&self.ns_b, &self.veth_b)] {
            for cmd in [
                vec!["ip", "-n", ns, "-s", "-s", "link", "show", dev],
                vec!["ip", "netns", "exec", ns, "ethtool", "-S", dev],
                vec!["ip", "netns", "exec", ns, "nstat", "-as", "Ip*", "Udp*"],
            ] {
                let o = run(cmd[0], &cmd[1..]);
                let text = String::from_utf8_lossy(&o.stdout);
                out += &format!("\n$ {}\n{text}", cmd.join(" "));
            }
        }
        out
    }

    /// Gives veth_b a second IPv4 address, 198.18.0.3/24, and waits until
    /// namespace a reaches it (so its neighbour entry exists).
    pub fn add_second_address(&self) {
        let (ns_a, ns_b, dev) = (&self.ns_a, &self.ns_b, &self.veth_b);
        must(
            "ip",
            &["-n", ns_b, "addr", "add", "198.18.0.3/24", "dev", dev],
        );
        must(
            "ip",
            &[
                "netns",
                "exec",
                ns_a,
                "ping",
                "-c",
                "1",
                "-w",
                "5",
                "198.18.0.3",
            ],
        );
    }

    /// Namespace b's entry in `netdemux status --json` (run from the root namespace), if any.
    pub fn status_entry(&self) -> Option<serde_json::Value> {
        let out = run(netdemux_bin(), &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
        status
            .as_array()
            .expect("status --json is a list")
            .iter()
            .find(|e| e["netns"] == self.ns_b.as_str())
            .cloned()
    }

    /// Where the pins of namespace b live.
    pub fn pin_dir(&self) -> PathBuf {
        self.0.pin_dir()
    }

    /// Rewrites the state record pinned for veth_b with `change` (to pretend another build, or
    /// another state layout, made it).
    pub fn rewrite_info(&self, change: impl FnOnce(&mut netdemux_common::StateInfo)) {
        let pin = self.pin_dir().join(&self.veth_b).join("info");
        let data = aya::maps::MapData::from_pin(&pin).unwrap();
        let mut info: aya::maps::Array<_, netdemux_common::StateInfo> =
            aya::maps::Map::from_map_data(data)
                .unwrap()
                .try_into()
                .unwrap();
        let mut v = info.get(&0, 0).unwrap();
        change(&mut v);
        info.set(0, v, 0).unwrap();
    }
}

#[allow(unused_imports, reason = "not every test file sums queue counters")]
pub use netdemux::testbed::queue_sum;

/// A TCP counter (`queues[].tcp.NAME`) summed over the queues of `stats --json`.
pub fn tcp_sum(stats: &serde_json::Value, name: &str) -> u64 {
    stats["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| {
            q["tcp"][name]
                .as_u64()
                .unwrap_or_else(|| panic!("tcp counter {name} in {q}"))
        })
        .sum()
}

/// Gives namespace a a network behind it (198.19.0.0/24 and 2001:db8:1::/64 on its loopback),
/// routed from namespace b through a: peers there are reached only through a gateway.
pub fn backend_network(tb: &Testbed) {
    let (a, b) = (tb.ns_a.as_str(), tb.ns_b.as_str());
    must(
        "ip",
        &["-n", a, "addr", "add", "198.19.0.1/24", "dev", "lo"],
    );
    must(
        "ip",
        &["-n", a, "addr", "add", "2001:db8:1::1/64", "dev", "lo"],
    );
    must(
        "ip",
        &[
            "-n",
            b,
            "route",
            "add",
            "198.19.0.0/24",
            "via",
            "198.18.0.1",
        ],
    );
    must(
        "ip",
        &[
            "-n",
            b,
            "route",
            "add",
            "2001:db8:1::/64",
            "via",
            "2001:db8::1",
        ],
    );
}
