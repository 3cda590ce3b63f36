//! A testbed of two network namespaces joined by a veth pair, for the tests, the demo and the
//! benchmarks: namespace `a` is the peer (clients and generators), namespace `b` holds the
//! interface netdemux attaches to.
//!
//! Names are unique per process and testbed, so testbeds can coexist; dropping one detaches,
//! deletes both namespaces (which deletes the veth pair) and removes any pins left for them,
//! also when the owner panics. Addresses come from 198.18.0.0/15 and 2001:db8::/32 and exist only
//! inside these namespaces.

use std::{
    ffi::OsStr,
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    thread,
};

use anyhow::{Context as _, Result, bail};
use nix::sched::{CloneFlags, setns};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Address of the peer side (`veth_a`).
pub const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Address of the netdemux side (`veth_b`).
pub const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// IPv6 address of the peer side.
pub const IP6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// IPv6 address of the netdemux side.
pub const IP6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Runs a command and returns its output; fails only if it cannot be started.
pub fn run<S: AsRef<OsStr>>(cmd: &str, args: &[S]) -> Result<Output> {
    Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {cmd}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn must<S: AsRef<OsStr>>(cmd: &str, args: &[S]) -> Result<String> {
    let out = run(cmd, args)?;
    if !out.status.success() {
        let line: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        bail!(
            "`{cmd} {}` failed: {}{}",
            line.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Two namespaces joined by a veth pair, removed on drop.
pub struct Testbed {
    /// The peer namespace.
    pub ns_a: String,
    /// The namespace netdemux works in.
    pub ns_b: String,
    /// The peer's end of the veth pair.
    pub veth_a: String,
    /// netdemux's end of the veth pair.
    pub veth_b: String,
    /// The `netdemux` binary that [`Testbed::netdemux`] runs.
    pub bin: PathBuf,
    ns_b_inode: u64,
}

impl Testbed {
    /// A fresh testbed named `<prefix><unique id>`, whose veth ends have `queues` RX and TX
    /// queues, with IPv4 and IPv6 addresses and resolved neighbours. `bin` is the netdemux binary.
    pub fn new(prefix: &str, queues: u32, bin: impl Into<PathBuf>) -> Result<Testbed> {
        if !nix::unistd::geteuid().is_root() {
            bail!("a testbed creates network namespaces: run as root");
        }
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if prefix.len() + id.len() + 1 > 15 {
            bail!("testbed prefix '{prefix}' too long for an interface name");
        }
        let mut tb = Testbed {
            ns_a: format!("{prefix}{id}a"),
            ns_b: format!("{prefix}{id}b"),
            veth_a: format!("{prefix}{id}A"),
            veth_b: format!("{prefix}{id}B"),
            bin: bin.into(),
            ns_b_inode: 0,
        };
        must("ip", &["netns", "add", &tb.ns_a])?;
        // From here on, Drop removes whatever was made.
        must("ip", &["netns", "add", &tb.ns_b])?;
        tb.ns_b_inode = std::fs::metadata(format!("/run/netns/{}", tb.ns_b))
            .map(|m| m.ino())
            .unwrap_or(0);
        let q = queues.to_string();
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
        )?;
        for (ns, dev, v4, v6) in [
            (&tb.ns_a, &tb.veth_a, "198.18.0.1/24", "2001:db8::1/64"),
            (&tb.ns_b, &tb.veth_b, "198.18.0.2/24", "2001:db8::2/64"),
        ] {
            must("ip", &["-n", ns, "addr", "add", v4, "dev", dev])?;
            must("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"])?;
            must("ip", &["-n", ns, "link", "set", dev, "up"])?;
            must("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        // The peer puts full checksums on the wire, as a NIC does: with TX checksum offload on,
        // the kernel would hand veth frames that carry only the pseudo-header sum.
        must(
            "ip",
            &[
                "netns", "exec", &tb.ns_a, "ethtool", "-K", &tb.veth_a, "tx", "off",
            ],
        )?;
        tb.resolve_neighbours()?;
        Ok(tb)
    }

    /// Makes namespace a's neighbour entries for b's addresses permanent (b's MAC), for
    /// benchmarks whose receivers take every frame, ARP and ND included: a resolved entry that
    /// the kernel probes again while such a receiver runs (namespace a answers the reflector's
    /// frames with ICMP errors) would otherwise fail, and the next load finds no MAC to send
    /// to (a full benchmark run stopped so once).
    pub fn pin_neighbours(&self) -> Result<()> {
        let mac = link(&self.ns_b, &self.veth_b)?["address"]
            .as_str()
            .context("ip -j link shows no address")?
            .to_string();
        for ip in ["198.18.0.2", "2001:db8::2"] {
            must(
                "ip",
                &[
                    "-n",
                    &self.ns_a,
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    &mac,
                    "dev",
                    &self.veth_a,
                    "nud",
                    "permanent",
                ],
            )?;
        }
        Ok(())
    }

    /// Resolves both sides' neighbour entries (ARP and ND), so the first datagrams are not
    /// queued (and, past the kernel's small unresolved queue, dropped) behind resolution.
    pub fn resolve_neighbours(&self) -> Result<()> {
        for (ns, v4, v6) in [
            (&self.ns_a, "198.18.0.2", "2001:db8::2"),
            (&self.ns_b, "198.18.0.1", "2001:db8::1"),
        ] {
            // -w: keep probing (the link may still be coming up) until one reply, up to 5 s.
            must(
                "ip",
                &[
                    "netns", "exec", ns, "ping", "-c", "1", "-i", "0.1", "-w", "5", v4,
                ],
            )?;
            must(
                "ip",
                &[
                    "netns", "exec", ns, "ping", "-6", "-c", "1", "-i", "0.1", "-w", "5", v6,
                ],
            )?;
        }
        Ok(())
    }

    /// Runs `netdemux --netns <ns_b> ARGS`.
    pub fn netdemux(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["--netns", self.ns_b.as_str()];
        full.extend_from_slice(args);
        Command::new(&self.bin)
            .args(&full)
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))
    }

    /// Like [`Self::netdemux`], but the command must succeed; returns stdout.
    pub fn netdemux_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.netdemux(args)?;
        if !out.status.success() {
            bail!(
                "netdemux {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `stats --json` of `veth_b`, parsed.
    pub fn stats(&self) -> Result<serde_json::Value> {
        let out = self.netdemux_ok(&["stats", "--iface", &self.veth_b, "--json"])?;
        serde_json::from_str(&out).context("stats --json is not JSON")
    }

    /// `netdemux gen` from namespace a on `veth_a` with `args` (destination, duration, ...),
    /// its `--json` summary parsed.
    pub fn generate(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut full = vec![
            "--netns",
            &self.ns_a,
            "gen",
            "--iface",
            &self.veth_a,
            "--json",
        ];
        full.extend_from_slice(args);
        let out = Command::new(&self.bin)
            .args(&full)
            .output()
            .with_context(|| format!("cannot run {} gen", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "netdemux gen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("gen --json is not JSON")
    }

    /// Turns IPv6 off on `veth_a`, so that namespace a sends nothing of its own kernel's there
    /// but the odd ARP answer (its router solicitations back off to minutes apart, and would
    /// reach a receiver whose program takes every frame): for an exact count of the
    /// generator's frames.
    pub fn sender_ipv4_only(&self) -> Result<()> {
        must(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns_a,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", self.veth_a),
            ],
        )
        .map(|_| ())
    }

    /// XDP frames `veth_a` could not pass on to its peer (its `xdp_xmit_errors`: the peer's
    /// ring was full) — the generator's frames lost before the receiver's XDP program.
    pub fn veth_refusals(&self) -> Result<u64> {
        ethtool_sum(&self.ns_a, &self.veth_a, "xdp_xmit_errors")
    }

    /// Frames the kernel dropped on `veth_a`'s transmit side (the peer's ring full), from
    /// `ip -s link`: veth's own loss, before any XDP program runs. It counts every frame since
    /// the interface was made, the peer kernel's own ones too.
    pub fn sender_tx_dropped(&self) -> Result<u64> {
        link_counter(&self.ns_a, &self.veth_a, "tx", "dropped")
    }

    /// Where the pins of namespace `b` live.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new("/sys/fs/bpf/netdemux").join(format!("netns-{}", self.ns_b_inode))
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.netdemux(&["detach", "--iface", &self.veth_b]);
        let _ = run("ip", &["netns", "del", &self.ns_a]);
        let _ = run("ip", &["netns", "del", &self.ns_b]);
        if self.ns_b_inode != 0 {
            let _ = std::fs::remove_dir_all(self.pin_dir());
            let _ = std::fs::remove_dir("/sys/fs/bpf/netdemux");
            // A daemon killed in a test leaves its control socket behind.
            let _ = std::fs::remove_dir_all(format!("/run/netdemux/netns-{}", self.ns_b_inode));
            let _ = std::fs::remove_dir("/run/netdemux");
        }
    }
}

/// A `netdemux run` process serving `veth_b` of a testbed; stopped with SIGTERM (then SIGKILL if
/// it does not exit within 10 s) when dropped. A thread reads its stderr as it comes (keeping
/// the first [`STDERR_KEPT`] bytes), so a daemon that logs a lot never blocks on a full pipe.
pub struct Daemon {
    child: Option<std::process::Child>,
    stderr: Option<StderrReader>,
}

/// What a [`Daemon`]'s stderr reader keeps.
pub const STDERR_KEPT: usize = 1 << 20;

/// Reads a child's stderr to its end on a thread of its own.
struct StderrReader {
    text: Arc<Mutex<Vec<u8>>>,
    thread: thread::JoinHandle<()>,
}

impl StderrReader {
    fn spawn(mut from: std::process::ChildStderr) -> StderrReader {
        let text = Arc::new(Mutex::new(Vec::new()));
        let keep = text.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut from, &mut buf) {
                if n == 0 {
                    break;
                }
                let mut kept = keep.lock().unwrap_or_else(|e| e.into_inner());
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        StderrReader { text, thread }
    }

    /// Everything kept, once the child closed its stderr (it exited).
    fn finish(self) -> String {
        let _ = self.thread.join();
        let text = self.text.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&text).into_owned()
    }
}

impl Daemon {
    /// Starts `netdemux --netns <ns_b> run --iface <veth_b> ARGS` and waits until it answers on
    /// its control socket.
    pub fn start(tb: &Testbed, args: &[&str]) -> Result<Daemon> {
        Daemon::start_with_env(tb, args, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env(tb: &Testbed, args: &[&str], env: &[(&str, &str)]) -> Result<Daemon> {
        let mut full = vec![
            "--netns",
            tb.ns_b.as_str(),
            "run",
            "--iface",
            tb.veth_b.as_str(),
        ];
        full.extend_from_slice(args);
        let mut child = Command::new(&tb.bin)
            .args(&full)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start netdemux run")?;
        let stderr = child.stderr.take().map(StderrReader::spawn);
        let mut d = Daemon {
            child: Some(child),
            stderr,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let out = tb.netdemux(&["stats", "--iface", &tb.veth_b, "--json"])?;
            if String::from_utf8_lossy(&out.stdout).contains("\"services\"") {
                return Ok(d);
            }
            if let Some(child) = d.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let err = d
                    .stderr
                    .take()
                    .map(StderrReader::finish)
                    .unwrap_or_default();
                bail!(
                    "netdemux run exited before serving ({status}): {}",
                    err.trim()
                );
            }
            if std::time::Instant::now() > deadline {
                bail!("netdemux run did not come up within 10 s");
            }
            thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)?;
        Ok(())
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 10 s); returns the exit status.
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        let child = self.child.take().context("already stopped")?;
        stop_child(child)
    }

    /// Like [`Daemon::stop`], also returning what the daemon wrote to stderr (its first
    /// [`STDERR_KEPT`] bytes).
    pub fn stop_with_stderr(mut self) -> Result<(std::process::ExitStatus, String)> {
        let child = self.child.take().context("already stopped")?;
        let status = stop_child(child)?;
        let text = self
            .stderr
            .take()
            .map(StderrReader::finish)
            .unwrap_or_default();
        Ok((status, text))
    }

    /// SIGKILL: no cleanup at all, as when a daemon crashes.
    pub fn kill9(mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

fn stop_child(mut child: std::process::Child) -> Result<std::process::ExitStatus> {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Ok(child.wait()?);
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = stop_child(child);
        }
    }
}

/// Runs `f` on a new thread that lives in the named network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into a test namespace");
        f()
    })
}

/// Per-CPU (total, idle) jiffies from /proc/stat, for [`cpu_busy`].
pub fn cpu_times() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let idle = v.get(3).unwrap_or(&0) + v.get(4).unwrap_or(&0);
            (v.iter().take(8).sum::<u64>(), idle)
        })
        .collect()
}

/// The busy share of each CPU between two [`cpu_times`] readings.
pub fn cpu_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let total = a.0.saturating_sub(b.0).max(1) as f64;
            1.0 - a.1.saturating_sub(b.1) as f64 / total
        })
        .collect()
}

/// The time now in UTC, as `YYYY-MM-DDTHH:MM:SSZ` (civil from days, Howard Hinnant's algorithm).
pub fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The environment variable `cargo xtask bench` sets to one id for all of a run's benchmarks.
pub const BENCH_RUN_VAR: &str = "NETDEMUX_BENCH_RUN";

/// A counter summed over the queues of `stats --json` (panics when a queue lacks it: the
/// report's shape changed).
pub fn queue_sum(stats: &serde_json::Value, field: &str) -> u64 {
    stats["queues"]
        .as_array()
        .map(|q| {
            q.iter()
                .map(|x| {
                    x[field]
                        .as_u64()
                        .unwrap_or_else(|| panic!("{field} is not a number: {x}"))
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The frames the AF_XDP sockets of `stats --json` dropped (RX ring full, or for another reason),
/// summed over the queues.
pub fn ring_drops(stats: &serde_json::Value) -> u64 {
    queue_sum(stats, "rx_dropped") + queue_sum(stats, "rx_ring_full")
}

/// `dev` in namespace `ns` as `ip -j -s link show` gives it: its attributes and counters.
pub fn link(ns: &str, dev: &str) -> Result<serde_json::Value> {
    let out = must("ip", &["-n", ns, "-j", "-s", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -j is not JSON")?;
    Ok(v[0].clone())
}

/// One of `dev`'s counters from `ip -s link`: `dir` is `rx` or `tx`, `name` e.g. `packets`.
pub fn link_counter(ns: &str, dev: &str, dir: &str, name: &str) -> Result<u64> {
    link(ns, dev)?["stats64"][dir][name]
        .as_u64()
        .with_context(|| format!("ip -s -j shows no {dir} {name} counter for {dev}"))
}

/// A per-queue counter of `dev` in namespace `ns` (`ethtool -S`: `rx_queue_N_FIELD` or
/// `tx_queue_N_FIELD`), summed over its queues.
pub fn ethtool_sum(ns: &str, dev: &str, field: &str) -> Result<u64> {
    let suffix = format!("_{field}:");
    Ok(must("ip", &["netns", "exec", ns, "ethtool", "-S", dev])?
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("rx_queue_") || l.starts_with("tx_queue_"))
        .filter(|l| l.contains(&suffix))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
        .sum())
}

/// The kernel's SNMP counters `names` in namespace `ns` (`nstat -az`, e.g. `TcpInSegs`),
/// summed; a name the kernel does not have counts 0.
pub fn kernel_counters(ns: &str, names: &[&str]) -> Result<u64> {
    let mut args = vec!["netns", "exec", ns, "nstat", "-az"];
    args.extend_from_slice(names);
    Ok(must("ip", &args)?
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            names
                .contains(&name)
                .then(|| w.next()?.parse::<u64>().ok())?
        })
        .sum())
}

/// Writes a benchmark's results to `bench/results/<name>-latest.json` and says where.
pub fn write_results(name: &str, results: &serde_json::Value) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}-latest.json"));
    std::fs::write(&path, serde_json::to_string_pretty(results)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(path)
}

/// What a benchmark result was measured with and on: the run it belongs to (`cargo xtask bench`
/// gives all of a run's benchmarks one id; a benchmark run by itself is a run of its own), the
/// commit and whether the tree differed from it (results files aside), the CPU, its cores, the
/// kernel, the quick flag and when. The report merges only results of one run.
pub fn provenance(quick: bool) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let timestamp = utc_timestamp();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "run": std::env::var(BENCH_RUN_VAR).unwrap_or_else(|_| timestamp.clone()),
        "commit": git(&["rev-parse", "HEAD"]),
        "dirty": git(&["status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"])
            .map(|s| !s.is_empty()),
        "cpu": cpu,
        // The machine's, not this process's (benchmarks pin themselves to one CPU).
        "cores": std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
            .unwrap_or(0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "quick": quick,
        "timestamp": timestamp,
    })
}
