//! The `netdemux` command line: read-only nouns (`list`, `stats`, `status`) and state-changing
//! verbs (`attach`, `detach`, `bind`, `unbind`). Every failure is one line on stderr and exit 1.

use std::{
    io::Write as _,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use netdemux_common::DEFAULT_MAX_BINDINGS;

use crate::{
    control::{
        attach::{self, ModeRequest},
        attachment,
        binding::{Binding, parse_socket_addr},
        iface::Interface,
        lock::StateLock,
        netns, privilege,
        stats::{ListEntry, Snapshot},
        veth,
    },
    daemon::{
        self, RunConfig, parse_list,
        proxy::{self, ProxyKind},
    },
    generator::{self, GenConfig, GenProto, GenSender},
    report::{DaemonReport, control_socket, prometheus, table},
    runtime::faults::FaultConfig,
    stack::tcp::MemoryBudget,
};

/// Kernel-bypass packet demultiplexer: packets to bound socket addresses go to AF_XDP sockets,
/// everything else goes to the kernel untouched.
///
/// netdemux attaches an XDP program to an interface. The program looks up the destination
/// (protocol, IP, port) of every TCP and UDP packet in a binding table and redirects matches to
/// the AF_XDP socket of the packet's RX queue; with no socket on that queue, they fall back to
/// the kernel. State is pinned under /sys/fs/bpf/netdemux, so commands work on a running setup.
#[derive(Debug, Parser)]
#[command(
    name = "netdemux",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Run the command in the named network namespace (as `ip -n NAME`), e.g. a test namespace.
    #[arg(long, global = true, value_name = "NAME")]
    pub netns: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The interface a command acts on.
#[derive(Debug, Args)]
pub struct Iface {
    /// Network interface, e.g. eth0.
    #[arg(long, short = 'i', value_name = "IF")]
    pub iface: String,
}

/// A binding on the command line: interface, protocol, socket address.
#[derive(Debug, Args)]
pub struct BindingArgs {
    #[command(flatten)]
    pub iface: Iface,
    /// Transport protocol.
    #[arg(value_name = "udp|tcp")]
    pub proto: String,
    /// Destination address and port: 198.18.0.2:7000, [2001:db8::2]:7000, or a wildcard
    /// 0.0.0.0:PORT / [::]:PORT (an exact address wins over the wildcard).
    #[arg(value_name = "ADDR:PORT")]
    pub addr: String,
}

/// netdemux subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the XDP program and attach it to an interface.
    ///
    /// Prints the mode actually obtained; with --mode auto, native is tried first and a
    /// fallback to skb mode is reported, never silent.
    Attach {
        #[command(flatten)]
        iface: Iface,
        /// XDP mode: native (in the driver), skb (generic), or auto (native, else skb).
        #[arg(long, value_enum, default_value = "auto")]
        mode: ModeRequest,
        /// Capacity of the binding table.
        #[arg(long, default_value_t = DEFAULT_MAX_BINDINGS, value_name = "N")]
        max_bindings: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Replace the attached program with this build's, atomically, keeping the pinned maps
        /// (bindings, counters, sockets): traffic and a running daemon go on undisturbed.
        #[arg(long, conflicts_with_all = ["mode", "max_bindings"])]
        upgrade: bool,
    },
    /// Detach the program from an interface and remove all its pinned state.
    Detach {
        #[command(flatten)]
        iface: Iface,
    },
    /// Steer packets to a socket address to AF_XDP (takes effect immediately).
    ///
    /// With --from FILE, replace the whole binding set with the one in FILE, atomically: the
    /// program switches from the old set to the new one at once, never seeing half of it.
    /// FILE has one binding per line as `list` prints them (`udp 198.18.0.2:7000`); blank lines
    /// and `#` comments are ignored. Counters of bindings in both sets go on.
    Bind {
        #[command(flatten)]
        iface: Iface,
        /// Transport protocol.
        #[arg(value_name = "udp|tcp", required_unless_present = "from")]
        proto: Option<String>,
        /// Destination address and port: 198.18.0.2:7000, [2001:db8::2]:7000, or a wildcard
        /// 0.0.0.0:PORT / [::]:PORT (an exact address wins over the wildcard).
        #[arg(value_name = "ADDR:PORT", required_unless_present = "from")]
        addr: Option<String>,
        /// Replace the whole binding set with the one in FILE (`-` for standard input).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["proto", "addr"])]
        from: Option<std::path::PathBuf>,
        /// With --from: print what changed as JSON.
        #[arg(long, requires = "from")]
        json: bool,
    },
    /// Give packets to a socket address back to the kernel (takes effect immediately).
    Unbind {
        #[command(flatten)]
        binding: BindingArgs,
    },
    /// List the bound socket addresses.
    List {
        #[command(flatten)]
        iface: Iface,
        /// Print a JSON array of {"proto","addr"}.
        #[arg(long)]
        json: bool,
    },
    /// Show verdict and per-binding counters.
    Stats {
        #[command(flatten)]
        iface: Iface,
        /// Print JSON (one object per line with --watch).
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print the counters in Prometheus text format (as `run --metrics` serves them).
        #[arg(long)]
        prometheus: bool,
        /// Print again every SECS seconds, with rates, until interrupted.
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
        /// With --watch: stop after N printouts.
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
    },
    /// Run the data path: an AF_XDP socket and a worker thread per RX queue, and the services.
    ///
    /// Attaches (or reuses the attachment), binds the services' addresses, puts the sockets in
    /// the XSKMAP and serves until SIGINT/SIGTERM. On exit the sockets leave the XSKMAP first, so
    /// traffic falls back to the kernel; then the bindings this run added are removed, and the
    /// program is detached if this run attached it. If the daemon dies, the kernel drops its
    /// sockets from the XSKMAP and traffic falls back to the kernel all the same.
    Run {
        /// Network interface, e.g. eth0 (or in --config).
        #[arg(
            long,
            short = 'i',
            value_name = "IF",
            required_unless_present = "config"
        )]
        iface: Option<String>,
        /// Read the whole run from a TOML file (iface, netns, mode, queues, cpu, busy_poll,
        /// spin, frames, ring_size, metrics, bindings, tcp_memory, tcp_idle_timeout,
        /// neighbour_lifetime, udp_proxy_timeout, [services]
        /// udp_sink / udp_echo / tcp_echo / http / tcp_proxy / udp_proxy); no other
        /// run option may be given with it.
        #[arg(long, value_name = "FILE.toml", conflicts_with_all = [
            "iface", "mode", "max_bindings", "queues", "zero_copy", "busy_poll", "spin", "cpu",
            "udp_sink", "udp_echo", "tcp_echo", "http", "frames", "ring_size", "metrics",
            "tcp_memory", "tcp_idle_timeout", "neighbour_lifetime", "tcp_proxy", "udp_proxy",
            "udp_proxy_timeout",
        ])]
        config: Option<std::path::PathBuf>,
        /// XDP mode, if this run attaches.
        #[arg(long, value_enum, default_value = "auto")]
        mode: ModeRequest,
        /// Capacity of the binding table, if this run attaches.
        #[arg(long, default_value_t = DEFAULT_MAX_BINDINGS, value_name = "N")]
        max_bindings: u32,
        /// RX queues to serve, e.g. 0,2-3 (default: all).
        #[arg(long, value_name = "LIST")]
        queues: Option<String>,
        /// Require zero-copy AF_XDP (fails where the driver has none, e.g. veth).
        #[arg(long)]
        zero_copy: bool,
        /// Preferred busy polling on the sockets (SO_PREFER_BUSY_POLL); workers drive NAPI.
        #[arg(long)]
        busy_poll: bool,
        /// Spin on the RX rings instead of sleeping in poll(2) (uses a full core per queue; share
        /// that core with neither another queue's worker nor the NIC's NAPI thread).
        #[arg(long)]
        spin: bool,
        /// Pin queue workers to CPUs, e.g. 1 or 0-1 (queue i on the i-th CPU of the list).
        #[arg(long, value_name = "LIST")]
        cpu: Option<String>,
        /// Count (and drop) the UDP datagrams sent to ADDR:PORT. Repeatable.
        #[arg(long = "udp-sink", value_name = "ADDR:PORT")]
        udp_sink: Vec<String>,
        /// Answer the UDP datagrams sent to ADDR:PORT with the same payload, from the address
        /// they were sent to (a wildcard address answers from each). Repeatable.
        #[arg(long = "udp-echo", value_name = "ADDR:PORT")]
        udp_echo: Vec<String>,
        /// Accept TCP connections on ADDR:PORT (userspace TCP) and send back every byte each
        /// connection sends; closes after the peer does. Repeatable.
        #[arg(long = "tcp-echo", value_name = "ADDR:PORT")]
        tcp_echo: Vec<String>,
        /// Accept TCP connections on ADDR:PORT and answer HTTP/1.1 GET and HEAD requests with
        /// 200 and a short fixed body, keeping connections alive (for curl and wrk).
        /// Repeatable.
        #[arg(long = "http", value_name = "ADDR:PORT")]
        http: Vec<String>,
        /// Accept TCP connections on LISTEN and relay each to BACKEND (on the link or behind
        /// a router), over the userspace stack both ways: back-pressure, half-close and resets
        /// passed on. E.g. 198.18.0.2:80=198.19.0.7:8080. Repeatable.
        #[arg(long = "tcp-proxy", value_name = "LISTEN=BACKEND")]
        tcp_proxy: Vec<String>,
        /// Relay UDP datagrams sent to LISTEN to BACKEND, a session (and a source port) per
        /// client address, and the backend's answers back to each client from LISTEN.
        /// Repeatable.
        #[arg(long = "udp-proxy", value_name = "LISTEN=BACKEND")]
        udp_proxy: Vec<String>,
        /// End a UDP proxy session after this many quiet seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        udp_proxy_timeout: u64,
        /// Testing only: drop this share (0-1) of the TCP frames the workers receive and send,
        /// from a seeded generator.
        #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
        fault_loss: f64,
        /// Testing only: deliver this share (0-1) of the TCP frames after the next one, in both
        /// directions.
        #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
        fault_reorder: f64,
        /// Seed of the fault injection.
        #[arg(long, value_name = "N", default_value_t = 1)]
        fault_seed: u64,
        /// UMEM frames per queue (power of two).
        #[arg(long, default_value_t = 4096, value_name = "N")]
        frames: u32,
        /// RX/TX ring size per queue (power of two).
        #[arg(long, default_value_t = 2048, value_name = "N")]
        ring_size: u32,
        /// Serve Prometheus metrics on http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464), from
        /// inside the interface's network namespace.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
        /// The most memory the TCP connections' buffers may take, over all queues (e.g. 256M;
        /// default: a sixteenth of the machine's memory, as Linux's tcp_mem). Past three
        /// quarters of it windows stop growing; at it new data that needs room is dropped and
        /// new connections refused (counted: memory_drops, memory_syn_drops).
        #[arg(long, value_name = "SIZE", value_parser = size)]
        tcp_memory: Option<usize>,
        /// Close TCP service connections (--tcp-echo, --http) that had no news for this many
        /// seconds (reset if they hold data nobody read, as Linux's close does).
        #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        tcp_idle_timeout: u64,
        /// How long a peer's MAC address (learned from its traffic or asked of the kernel)
        /// counts as fresh; after it, it is still used while the kernel's route and neighbour
        /// tables are asked again (every 5 s), so a moved gateway is followed.
        #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        neighbour_lifetime: u64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, e.g. `netdemux man > netdemux.1`.
    Man,
    /// Generate traffic at line rate from this host (XDP live frames: no skbs, no sockets).
    ///
    /// Frames are built once per flow (source ports from 1024) and transmitted by the kernel
    /// from a page pool, on the interface given. The count is the offered load; see the
    /// receiver's counters for what arrived. With `--sender packet` they go through a raw
    /// packet socket instead (slower; the kernel spreads the flows over the TX queues).
    Gen {
        #[command(flatten)]
        iface: Iface,
        /// Destination, e.g. 198.18.0.2:7000 or [2001:db8::2]:7000.
        #[arg(long, value_name = "ADDR:PORT")]
        dst: String,
        /// Source address (default: the interface's address of the same family).
        #[arg(long, value_name = "ADDR")]
        src: Option<std::net::IpAddr>,
        /// What to send.
        #[arg(long, value_enum, default_value = "udp")]
        proto: GenProto,
        /// Frame size on the wire in bytes, FCS included, up to 1518 (default: the smallest
        /// valid frame: 64 for IPv4, 66 for IPv6 UDP, 78 for IPv6 TCP SYNs).
        #[arg(long)]
        size: Option<usize>,
        /// Number of flows (distinct source ports).
        #[arg(long, default_value_t = 64)]
        flows: u16,
        /// Fraction of frames sent to --dst; the rest go to --miss-dst.
        #[arg(long, default_value_t = 1.0)]
        hit_ratio: f64,
        /// Destination of the misses (with --hit-ratio below 1).
        #[arg(long, value_name = "ADDR:PORT")]
        miss_dst: Option<String>,
        /// Frames per second over all threads, or max.
        #[arg(long, default_value = "max", value_name = "PPS|max")]
        rate: String,
        /// Seconds to send.
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        duration: f64,
        /// Sending threads, each pinned to its own CPU.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Destination MAC (default: resolved through the kernel's neighbour table).
        #[arg(long, value_name = "MAC")]
        dst_mac: Option<String>,
        /// How frames leave: xdp (live frames, no skbs; on a veth every frame lands on the
        /// peer's RX queue numbered after the sending CPU) or packet (a raw packet socket, an
        /// skb per frame: slower, but the kernel picks each flow's TX queue by its hash, so one
        /// CPU feeds every queue of a multi-queue veth).
        #[arg(long, value_enum, default_value = "xdp")]
        sender: GenSender,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove state left behind by interfaces or namespaces that are gone (`status` shows it as
    /// stale), and by attaches that died half-way. Live attachments are not touched.
    Gc {
        /// Print the removed directories as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show every interface netdemux is attached to, in every network namespace.
    Status {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors), e.g.
/// `RUST_LOG=netdemux=debug netdemux run ...`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Parses the command line, runs it, and turns an error into one line and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`netdemux ... | head`): stop quietly, as other tools do.
        Err(err)
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            let msg = format!("{err:#}");
            // One line: verifier logs and other multi-line causes follow on their own lines.
            let mut lines = msg.lines();
            eprintln!(
                "netdemux: error: {}",
                lines.next().unwrap_or("unknown error")
            );
            for line in lines {
                eprintln!("  {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<()> {
    // Help texts need no privileges.
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "netdemux",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let name = command_name(&cli.command);
    privilege::require(name)?;
    if let Some(ns) = &cli.netns {
        netns::enter(ns)?;
    }
    match cli.command {
        Command::Attach {
            iface,
            json,
            upgrade: true,
            ..
        } => {
            let u = attach::upgrade(&Interface::resolve(&iface.iface)?)?;
            if json {
                print_json(&u)?;
            } else {
                println!(
                    "upgraded {}: program {} replaced by {} on link {}; {} bindings kept",
                    u.iface, u.old_program_id, u.program_id, u.link_id, u.bindings
                );
            }
        }
        Command::Attach {
            iface,
            mode,
            max_bindings,
            json,
            upgrade: false,
        } => {
            let resolved = Interface::resolve(&iface.iface)?;
            let a = attach::attach(&resolved, mode, max_bindings)?;
            if let Some(w) = veth::offload_warning(&resolved) {
                tracing::warn!("{w}");
            }
            if json {
                print_json(&a)?;
            } else {
                println!(
                    "attached to {} in {} mode (program {}, link {}); state in {}",
                    a.iface,
                    a.mode,
                    a.program_id,
                    a.link_id,
                    a.pins.display()
                );
                if let Some(note) = &a.note {
                    println!("note: {note}");
                }
            }
        }
        Command::Detach { iface } => {
            let d = attach::detach(&Interface::resolve(&iface.iface)?)?;
            let what = if d.stale {
                "removed stale state of"
            } else {
                "detached from"
            };
            println!("{what} {}", d.iface);
        }
        Command::Bind {
            iface,
            from: Some(file),
            json,
            ..
        } => {
            let set = read_binding_file(&file)?;
            let iface = Interface::resolve(&iface.iface)?;
            let _lock = StateLock::acquire(&iface)?;
            let mut a = attachment::open(&iface)?;
            let r = a.maps.replace(&set)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "replaced the binding set of {}: {} bindings ({} kept, {} added, {} removed)",
                    a.iface,
                    set.len(),
                    r.kept,
                    r.added,
                    r.removed
                );
            }
        }
        Command::Bind {
            iface, proto, addr, ..
        } => {
            let (Some(proto), Some(addr)) = (proto, addr) else {
                bail!("bind needs udp|tcp and ADDR:PORT, or --from FILE");
            };
            let b = Binding::parse(&proto, &addr)?;
            let iface = Interface::resolve(&iface.iface)?;
            let _lock = StateLock::acquire(&iface)?;
            let mut a = attachment::open(&iface)?;
            a.maps.bind(&b)?;
            println!("bound {b} on {}", a.iface);
        }
        Command::Unbind { binding } => {
            let b = Binding::parse(&binding.proto, &binding.addr)?;
            let iface = Interface::resolve(&binding.iface.iface)?;
            let _lock = StateLock::acquire(&iface)?;
            let mut a = attachment::open(&iface)?;
            a.maps.unbind(&b)?;
            println!("unbound {b} on {}", a.iface);
        }
        Command::List { iface, json } => {
            let a = attachment::open(&Interface::resolve(&iface.iface)?)?;
            let bindings = a.maps.bindings()?;
            if json {
                let entries: Vec<ListEntry> = bindings.iter().map(ListEntry::from).collect();
                print_json(&entries)?;
            } else {
                for b in &bindings {
                    println!("{b}");
                }
            }
        }
        Command::Stats {
            iface,
            json,
            prometheus,
            watch,
            count,
        } => stats(
            &Interface::resolve(&iface.iface)?,
            json,
            prometheus,
            watch,
            count,
        )?,
        Command::Completions { .. } | Command::Man => unreachable!("handled before privileges"),
        Command::Run {
            config: Some(path), ..
        } => {
            let (cfg, netns_name) = daemon::config::load(&path)?;
            if let Some(ns) = netns_name.filter(|_| cli.netns.is_none()) {
                netns::enter(&ns)?;
            }
            run_daemon(cfg)?;
        }
        Command::Run {
            iface,
            config: None,
            mode,
            max_bindings,
            queues,
            zero_copy,
            busy_poll,
            spin,
            cpu,
            udp_sink,
            udp_echo,
            tcp_echo,
            http,
            tcp_proxy,
            udp_proxy,
            udp_proxy_timeout,
            fault_loss,
            fault_reorder,
            fault_seed,
            frames,
            ring_size,
            metrics,
            tcp_memory,
            tcp_idle_timeout,
            neighbour_lifetime,
        } => {
            let addrs = |list: &[String]| -> Result<Vec<std::net::SocketAddr>> {
                list.iter().map(|a| parse_socket_addr(a)).collect()
            };
            let cfg = RunConfig {
                iface: iface.context("--iface is required without --config")?,
                mode,
                max_bindings,
                queues: queues.as_deref().map(parse_list).transpose()?,
                zero_copy,
                busy_poll,
                spin,
                cpus: match cpu.as_deref() {
                    Some(list) => parse_list(list)?.into_iter().map(|c| c as usize).collect(),
                    None => Vec::new(),
                },
                udp_sinks: addrs(&udp_sink)?,
                udp_echoes: addrs(&udp_echo)?,
                tcp_echoes: addrs(&tcp_echo)?,
                https: addrs(&http)?,
                faults: FaultConfig {
                    loss: fault_loss,
                    reorder: fault_reorder,
                    seed: fault_seed,
                },
                frames,
                ring_size,
                metrics,
                bindings: Vec::new(),
                tcp_memory: tcp_memory.unwrap_or_else(MemoryBudget::default_limit),
                tcp_idle_timeout: Duration::from_secs(tcp_idle_timeout),
                neighbour_lifetime: Duration::from_secs(neighbour_lifetime),
                proxies: tcp_proxy
                    .iter()
                    .map(|s| proxy::parse_spec(ProxyKind::Tcp, s))
                    .chain(
                        udp_proxy
                            .iter()
                            .map(|s| proxy::parse_spec(ProxyKind::Udp, s)),
                    )
                    .collect::<Result<_>>()?,
                udp_proxy_timeout: Duration::from_secs(udp_proxy_timeout),
            };
            run_daemon(cfg)?;
        }
        Command::Gen {
            iface,
            dst,
            src,
            proto,
            size,
            flows,
            hit_ratio,
            miss_dst,
            rate,
            duration,
            threads,
            dst_mac,
            sender,
            json,
        } => {
            let rate = match rate.as_str() {
                "max" => None,
                r => match r.parse::<u64>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => bail!(
                        "--rate takes frames per second (a positive number) or max, got '{}'",
                        r.escape_debug()
                    ),
                },
            };
            if !(duration.is_finite() && duration > 0.0) {
                bail!("--duration needs a positive number of seconds");
            }
            let dst = parse_socket_addr(&dst)?;
            let cfg = GenConfig {
                iface: Interface::link(&iface.iface)?,
                dst,
                src,
                proto,
                size: size.unwrap_or_else(|| generator::frames::min_size(proto, dst.is_ipv6())),
                flows,
                hit_ratio,
                miss_dst: miss_dst.as_deref().map(parse_socket_addr).transpose()?,
                rate,
                duration: Duration::from_secs_f64(duration),
                threads,
                dst_mac: dst_mac.as_deref().map(generator::parse_mac).transpose()?,
                sender,
            };
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
                .context("cannot install the SIGINT/SIGTERM handler")?;
            let r = generator::run(&cfg, stop)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "sent {} frames of {} bytes in {:.2} s: {:.3} Mpps, {:.2} Gbit/s ({} to {}, {} threads)",
                    r.packets,
                    r.size,
                    r.duration_s,
                    r.pps / 1e6,
                    r.gbps,
                    r.hits,
                    r.dst,
                    r.threads
                );
                if r.refused > 0 {
                    println!(
                        "{} of them refused by {} (its transmit path full; counted as its tx dropped)",
                        r.refused, r.iface
                    );
                }
            }
        }
        Command::Gc { json } => {
            let removed = attach::gc()?;
            if json {
                print_json(&removed)?;
            } else if removed.is_empty() {
                println!("nothing stale");
            } else {
                for r in &removed {
                    println!("removed {}", r.display());
                }
            }
        }
        Command::Status { json } => {
            let entries = attach::status()?;
            if json {
                print_json(&entries)?;
            } else if entries.is_empty() {
                println!("netdemux is not attached anywhere");
            } else {
                println!(
                    "{:<16}{:<20}{:<8}{:>9}{:>10}  state",
                    "iface", "netns", "mode", "program", "bindings"
                );
                for e in &entries {
                    println!(
                        "{:<16}{:<20}{:<8}{:>9}{:>10}  {}",
                        e.iface, e.netns, e.mode, e.program_id, e.bindings, e.state
                    );
                }
            }
        }
    }
    Ok(())
}

/// Checks the sizes, installs the signal handler and runs the daemon until SIGINT/SIGTERM.
fn run_daemon(cfg: RunConfig) -> Result<()> {
    let iface = Interface::existing(&cfg.iface)?;
    for (what, n) in [("--frames", cfg.frames), ("--ring-size", cfg.ring_size)] {
        if !n.is_power_of_two() || !(64..=65536).contains(&n) {
            bail!("{what} must be a power of two between 64 and 65536, got {n}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("cannot install the SIGINT/SIGTERM handler")?;
    daemon::run(&iface, &cfg, stop)
}

/// Reads a binding set: one `PROTO ADDR:PORT` per line, `#` comments, blank lines ignored.
/// Errors name the file and line.
fn read_binding_file(path: &std::path::Path) -> Result<Vec<Binding>> {
    let shown = path.display().to_string().escape_debug().to_string();
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the binding set from standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?
    };
    let mut set = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(proto), Some(addr), None) = (words.next(), words.next(), words.next()) else {
            bail!(
                "{shown}:{}: expected `udp|tcp ADDR:PORT`, found '{}'",
                n + 1,
                line.escape_debug()
            );
        };
        set.push(Binding::parse(proto, addr).with_context(|| format!("{shown}:{}", n + 1))?);
    }
    Ok(set)
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Attach { .. } => "attach",
        Command::Detach { .. } => "detach",
        Command::Bind { .. } => "bind",
        Command::Unbind { .. } => "unbind",
        Command::List { .. } => "list",
        Command::Stats { .. } => "stats",
        Command::Status { .. } => "status",
        Command::Run { .. } => "run",
        Command::Gen { .. } => "gen",
        Command::Gc { .. } => "gc",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
}

fn stats(
    iface: &Interface,
    json: bool,
    prometheus: bool,
    watch: Option<f64>,
    count: Option<u64>,
) -> Result<()> {
    let a = attachment::open(iface)?;
    let name = iface.name();
    let Some(every) = watch else {
        let snap = Snapshot::read(name, &a.maps)?;
        let daemon = control_socket::query(iface)?;
        if prometheus {
            print!("{}", prometheus::render(&snap, daemon.as_ref()));
        } else if json {
            print_json(&with_daemon(&snap, daemon.as_ref())?)?;
        } else {
            print!("{}{}", snap.render(None), table::render(daemon.as_ref()));
        }
        return Ok(());
    };
    if !(every.is_finite() && every > 0.0) {
        bail!("--watch needs a positive number of seconds, e.g. --watch 1");
    }
    let every = Duration::from_secs_f64(every);
    let mut previous: Option<(Snapshot, Instant)> = None;
    let mut printed = 0u64;
    loop {
        let now = Instant::now();
        let snap = Snapshot::read(name, &a.maps)
            .with_context(|| format!("the state of {iface} went away (detached?)"))?;
        let daemon = control_socket::query(iface).ok().flatten();
        if json {
            print_json(&with_daemon(&snap, daemon.as_ref())?)?;
        } else {
            let prev = previous.as_ref().map(|(s, t)| (s, now.duration_since(*t)));
            println!("{}{}", snap.render(prev), table::render(daemon.as_ref()));
        }
        std::io::stdout().flush()?;
        printed += 1;
        if count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
        previous = Some((snap, now));
        std::thread::sleep(every);
    }
}

/// A size such as 64M, for clap.
fn size(s: &str) -> std::result::Result<usize, String> {
    daemon::parse_size(s).map_err(|e| e.to_string())
}

/// A share between 0 and 1, for clap.
fn share(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!(
            "'{}' is not a share between 0 and 1, e.g. 0.02",
            s.escape_debug()
        )),
    }
}

/// The snapshot as JSON, with the daemon's `queues`, `services`, `tcp_memory` and `proxies`
/// when one runs.
fn with_daemon(snap: &Snapshot, daemon: Option<&DaemonReport>) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(snap)?;
    if let (Some(d), Some(obj)) = (daemon, v.as_object_mut()) {
        obj.insert("daemon_pid".into(), d.pid.into());
        obj.insert("queues".into(), serde_json::to_value(&d.queues)?);
        obj.insert("services".into(), serde_json::to_value(&d.services)?);
        if let Some(m) = &d.tcp_memory {
            obj.insert("tcp_memory".into(), serde_json::to_value(m)?);
        }
        if !d.proxies.is_empty() {
            obj.insert("proxies".into(), serde_json::to_value(&d.proxies)?);
        }
    }
    Ok(v)
}
