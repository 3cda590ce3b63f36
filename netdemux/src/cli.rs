//! The `netdemux` command line: read-only nouns (`list`, `stats`, `status`) and state-changing
//! verbs (`attach`, `detach`, `bind`, `unbind`). Every failure is one line on stderr and exit 1.

use std::{
    io::Write as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use netdemux_common::DEFAULT_MAX_BINDINGS;

use crate::control::{
    attach::{self, ModeRequest},
    binding::Binding,
    netns, privilege, state,
    stats::{ListEntry, Snapshot},
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
    },
    /// Detach the program from an interface and remove all its pinned state.
    Detach {
        #[command(flatten)]
        iface: Iface,
    },
    /// Steer packets to a socket address to AF_XDP (takes effect immediately).
    Bind {
        #[command(flatten)]
        binding: BindingArgs,
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
        #[arg(long)]
        json: bool,
        /// Print again every SECS seconds, with rates, until interrupted.
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
        /// With --watch: stop after N printouts.
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
    },
    /// Show every interface netdemux is attached to, in every network namespace.
    Status {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the command line, runs it, and turns an error into one line and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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
    let name = command_name(&cli.command);
    privilege::require(name)?;
    if let Some(ns) = &cli.netns {
        netns::enter(ns)?;
    }
    match cli.command {
        Command::Attach {
            iface,
            mode,
            max_bindings,
            json,
        } => {
            let a = attach::attach(&iface.iface, mode, max_bindings)?;
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
            let d = attach::detach(&iface.iface)?;
            let what = if d.stale {
                "removed stale state of"
            } else {
                "detached from"
            };
            println!("{what} {}", d.iface);
        }
        Command::Bind { binding } => {
            let b = Binding::parse(&binding.proto, &binding.addr)?;
            let mut a = state::open(&binding.iface.iface)?;
            let _lock = a.lock()?;
            a.maps.bind(&b)?;
            println!("bound {b} on {}", a.iface);
        }
        Command::Unbind { binding } => {
            let b = Binding::parse(&binding.proto, &binding.addr)?;
            let mut a = state::open(&binding.iface.iface)?;
            let _lock = a.lock()?;
            a.maps.unbind(&b)?;
            println!("unbound {b} on {}", a.iface);
        }
        Command::List { iface, json } => {
            let a = state::open(&iface.iface)?;
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
            watch,
            count,
        } => stats(&iface.iface, json, watch, count)?,
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

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Attach { .. } => "attach",
        Command::Detach { .. } => "detach",
        Command::Bind { .. } => "bind",
        Command::Unbind { .. } => "unbind",
        Command::List { .. } => "list",
        Command::Stats { .. } => "stats",
        Command::Status { .. } => "status",
    }
}

fn stats(iface: &str, json: bool, watch: Option<f64>, count: Option<u64>) -> Result<()> {
    let a = state::open(iface)?;
    let Some(every) = watch else {
        let snap = Snapshot::read(iface, &a.maps)?;
        if json {
            print_json(&snap)?;
        } else {
            print!("{}", snap.render(None));
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
        let snap = Snapshot::read(iface, &a.maps)
            .with_context(|| format!("the state of {iface} went away (detached?)"))?;
        if json {
            print_json(&snap)?;
        } else {
            let prev = previous.as_ref().map(|(s, t)| (s, now.duration_since(*t)));
            println!("{}", snap.render(prev));
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
