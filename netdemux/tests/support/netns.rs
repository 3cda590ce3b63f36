//! A testbed of two network namespaces joined by a veth pair, made and removed by each test.
//!
//! Names are unique per process and testbed so tests can run in parallel; `Drop` detaches,
//! deletes both namespaces (which deletes the veth pair) and removes any pins left for them,
//! also when the test panics. Addresses come from 198.18.0.0/15 and 2001:db8::/32 and exist only
//! inside these namespaces.

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::unix::fs::MetadataExt as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use nix::sched::{CloneFlags, setns};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The netdemux binary under test.
pub fn netdemux_bin() -> &'static str {
    env!("CARGO_BIN_EXE_netdemux")
}

/// Runs a command, returning its output; panics only if it cannot be started.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command that must succeed.
pub fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces: `a` (the peer, where clients run) and `b` (where netdemux attaches to `veth_b`).
pub struct Testbed {
    pub ns_a: String,
    pub ns_b: String,
    pub veth_a: String,
    pub veth_b: String,
    ns_b_inode: u64,
}

pub const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const IP6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const IP6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

impl Testbed {
    /// A fresh testbed whose veth pair has `queues` RX/TX queues on each side.
    pub fn new(queues: u32) -> Testbed {
        assert!(
            nix::unistd::geteuid().is_root(),
            "network namespace tests need root: run them with `cargo xtask test` as root"
        );
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tb = Testbed {
            ns_a: format!("ndt{id}a"),
            ns_b: format!("ndt{id}b"),
            veth_a: format!("ndv{id}a"),
            veth_b: format!("ndv{id}b"),
            ns_b_inode: 0,
        };
        let q = queues.to_string();
        must("ip", &["netns", "add", &tb.ns_a]);
        must("ip", &["netns", "add", &tb.ns_b]);
        let mut tb = tb;
        tb.ns_b_inode = std::fs::metadata(format!("/run/netns/{}", tb.ns_b))
            .map(|m| m.ino())
            .unwrap_or(0);
        must(
            "ip",
            &[
                "link",
                "add",
                &tb.veth_a,
                "netns",
                &tb.ns_a,
                "numrxqueues",
                &q,
                "numtxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                &tb.veth_b,
                "netns",
                &tb.ns_b,
                "numrxqueues",
                &q,
                "numtxqueues",
                &q,
            ],
        );
        for (ns, dev, v4, v6) in [
            (&tb.ns_a, &tb.veth_a, "198.18.0.1/24", "2001:db8::1/64"),
            (&tb.ns_b, &tb.veth_b, "198.18.0.2/24", "2001:db8::2/64"),
        ] {
            must("ip", &["-n", ns, "addr", "add", v4, "dev", dev]);
            must("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        // A native XDP program on B needs NAPI on the sending side for redirected frames, and
        // GRO on A keeps veth's NAPI active for the return path.
        must(
            "ip",
            &[
                "netns", "exec", &tb.ns_a, "ethtool", "-K", &tb.veth_a, "gro", "on",
            ],
        );
        tb
    }

    /// Runs netdemux with `--netns <ns_b>` and the given arguments.
    pub fn netdemux(&self, args: &[&str]) -> Output {
        let mut full = vec!["--netns", self.ns_b.as_str()];
        full.extend_from_slice(args);
        run(netdemux_bin(), &full)
    }

    /// Like [`Self::netdemux`], but the command must succeed; returns stdout.
    pub fn netdemux_ok(&self, args: &[&str]) -> String {
        let out = self.netdemux(args);
        assert!(
            out.status.success(),
            "netdemux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `stats --json` of veth_b, parsed.
    pub fn stats(&self) -> serde_json::Value {
        let out = self.netdemux_ok(&["stats", "--iface", &self.veth_b, "--json"]);
        serde_json::from_str(&out).expect("stats --json is JSON")
    }

    /// Attaches to veth_b in `mode`.
    pub fn attach(&self, mode: &str) {
        self.netdemux_ok(&["attach", "--iface", &self.veth_b, "--mode", mode]);
    }

    /// Frames the kernel dropped on `veth_a`'s transmit side (peer ring full), per `ip -s link`.
    pub fn sender_tx_dropped(&self) -> u64 {
        let out = must(
            "ip",
            &[
                "-n",
                &self.ns_a,
                "-j",
                "-s",
                "link",
                "show",
                "dev",
                &self.veth_a,
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j is JSON");
        v[0]["stats64"]["tx"]["dropped"]
            .as_u64()
            .expect("tx dropped counter")
    }

    /// Where the pins of netns `b` live.
    pub fn pin_dir(&self) -> String {
        format!("/sys/fs/bpf/netdemux/netns-{}", self.ns_b_inode)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.netdemux(&["detach", "--iface", &self.veth_b]);
        let _ = run("ip", &["netns", "del", &self.ns_a]);
        let _ = run("ip", &["netns", "del", &self.ns_b]);
        if self.ns_b_inode != 0 {
            let _ = std::fs::remove_dir_all(self.pin_dir());
        }
    }
}

/// Runs `f` on a thread that lives in network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}
