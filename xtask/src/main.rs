//! netdemux developer tasks. Run from the workspace root as `cargo xtask <task>`:
//!
//! - `setup`: install what a fresh machine lacks (Debian packages, nightly rust-src, bpf-linker)
//! - `build`: release build of `netdemux` (the XDP program is embedded by its build script)
//! - `test`:  setup, then fmt check, clippy -D warnings, a compile check of the fuzz targets,
//!   unit tests, BPF_PROG_TEST_RUN fixtures, netns integration tests, and a short demo run
//!   (needs root)
//! - `demo [--duration SECS]`: setup, build, and the demo on a veth testbed (needs root)
//! - `bench [xdp|udp|echo|tcp|all] [--quick]`: setup, then the benchmarks (needs root)
//! - `fuzz [--seconds N]`: the cargo-fuzz targets in netdemux/fuzz, N seconds each (not in CI)
//! - `man`: the man page, written to target/man/netdemux.1

mod cmd;
mod setup;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <setup | build | test | demo [--duration SECS] | bench [xdp|udp|sweep|echo|tcp|proxy|all] [--quick]>";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = std::env::set_current_dir(workspace_root()) {
        eprintln!("xtask: cannot enter the workspace root: {e}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[&str]) -> Result<()> {
    match args {
        ["setup"] => setup::setup(),
        ["build"] => {
            setup::setup()?;
            cmd::run("cargo", &["build", "--release", "-p", "netdemux"])
        }
        ["test"] => test(),
        ["demo", rest @ ..] => demo(rest),
        ["bench", rest @ ..] => bench(rest),
        ["fuzz", rest @ ..] => fuzz(rest),
        ["man"] => man(),
        ["help" | "--help" | "-h"] | [] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown task {args:?}\n{USAGE}"),
    }
}

fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "`cargo xtask {what}` loads BPF programs and creates network namespaces: run it as root"
        );
    }
    Ok(())
}

fn test() -> Result<()> {
    require_root("test")?;
    setup::setup()?;
    println!("== cargo fmt --check");
    cmd::run("cargo", &["fmt", "--all", "--check"])?;
    println!("== cargo clippy -D warnings (userspace, then the eBPF crate for its BPF target)");
    cmd::run(
        "cargo",
        &["clippy", "--all-targets", "--", "-D", "warnings"],
    )?;
    cmd::run(
        "cargo",
        &[
            "+nightly",
            "clippy",
            "-q",
            "-p",
            "netdemux-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--target-dir",
            "target/ebpf-clippy",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    println!("== the fuzz targets compile (their own workspace; `cargo xtask fuzz` runs them)");
    cmd::run(
        "cargo",
        &[
            "check",
            "-q",
            "--manifest-path",
            "netdemux/fuzz/Cargo.toml",
            "--bins",
        ],
    )?;
    println!("== cargo test (unit, BPF_PROG_TEST_RUN fixtures, netns integration, CLI)");
    let (passed, failed) = cmd::run_counting_tests("cargo", &["test"])?;
    println!("== demo (short)");
    cmd::run(
        "cargo",
        &[
            "run",
            "-q",
            "-p",
            "netdemux",
            "--example",
            "demo",
            "--",
            "--duration",
            "3",
        ],
    )?;
    println!("\nall checks green: fmt, clippy, tests, demo");
    println!("{passed} passed, {failed} failed");
    Ok(())
}

fn demo(rest: &[&str]) -> Result<()> {
    require_root("demo")?;
    let duration = match rest {
        [] => "10",
        ["--duration", secs] => secs,
        _ => bail!("usage: cargo xtask demo [--duration SECS]"),
    };
    setup::setup()?;
    cmd::run(
        "cargo",
        &[
            "build",
            "--release",
            "-q",
            "-p",
            "netdemux",
            "--bins",
            "--examples",
        ],
    )?;
    cmd::run("target/release/examples/demo", &["--duration", duration])
}

/// Writes the man page to target/man/netdemux.1 (from the CLI definition, via the binary).
fn man() -> Result<()> {
    setup::setup()?;
    cmd::run(
        "cargo",
        &["build", "-q", "-p", "netdemux", "--bin", "netdemux"],
    )?;
    let page = cmd::stdout("target/debug/netdemux", &["man"])?;
    std::fs::create_dir_all("target/man")?;
    std::fs::write("target/man/netdemux.1", page)?;
    println!("wrote target/man/netdemux.1 (man ./target/man/netdemux.1)");
    Ok(())
}

/// Fuzz targets in netdemux/fuzz, each run for the given time (not part of `test`).
const FUZZ_TARGETS: [&str; 7] = [
    "wire_frames",
    "addresses",
    "tcp_segments",
    "tcp_packets",
    "http_requests",
    "neighbour_cache",
    "worker_frames",
];

fn fuzz(rest: &[&str]) -> Result<()> {
    let seconds = match rest {
        [] => "60",
        ["--seconds", s] if s.parse::<u32>().is_ok_and(|n| n > 0) => s,
        _ => bail!("usage: cargo xtask fuzz [--seconds N]  (per target)"),
    };
    setup::setup()?;
    if !cmd::output("cargo", &["+nightly", "fuzz", "--version"]).is_ok_and(|o| o.status.success()) {
        cmd::run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    for target in FUZZ_TARGETS {
        println!("== fuzz {target} for {seconds} s");
        cmd::run(
            "cargo",
            &[
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                "netdemux/fuzz",
                target,
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
            ],
        )?;
    }
    Ok(())
}

/// The benchmarks `cargo xtask bench` runs, in order.
const BENCHES: [&str; 6] = ["xdp", "udp", "sweep", "echo", "tcp", "proxy"];

fn bench(rest: &[&str]) -> Result<()> {
    require_root("bench")?;
    let mut quick = false;
    let mut which: Vec<&str> = Vec::new();
    for arg in rest {
        match *arg {
            "--quick" => quick = true,
            "xdp" | "udp" | "sweep" | "echo" | "tcp" | "proxy" => which.push(arg),
            "all" => which.extend(BENCHES),
            other => bail!(
                "unknown benchmark '{other}' (available: {}, all)",
                BENCHES.join(", ")
            ),
        }
    }
    if which.is_empty() {
        which.extend(BENCHES);
    }
    setup::setup()?;
    // One id for all of this run's results: the report merges only those.
    let run = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        std::process::id()
    );
    let env = [("NETDEMUX_BENCH_RUN", run.as_str())];
    for bench in which {
        let mut args = vec!["bench", "-q", "-p", "netdemux", "--bench", bench, "--"];
        if quick {
            args.push("--quick");
        }
        cmd::run_env("cargo", &args, &env)?;
    }
    // One dated record of this run, with the headline ratios, the tables (also into README.md)
    // and a plot.
    cmd::run_env(
        "cargo",
        &["bench", "-q", "-p", "netdemux", "--bench", "report"],
        &env,
    )
}
