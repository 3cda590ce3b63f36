//! `cargo xtask setup`: installs what a fresh machine lacks, skipping what is present.
//!
//! Steps (each named in its failure message, with the command to run by hand):
//! 1. Debian packages: LLVM 22 for bpf-linker, and the tools the tests and demo use.
//! 2. The nightly toolchain's `rust-src` (the eBPF crate builds `core` itself).
//! 3. `bpf-linker` 0.13.0 built against LLVM 22.

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Debian packages the build, tests and demo need.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "iputils-ping",
    "ethtool",
    "socat",
    // The generator test asks the kernel whether an XDP link is gone.
    "bpftool",
    // The TCP tests' and benchmark's clients, and crafted frames (scapy).
    "curl",
    "python3-scapy",
    "wrk",
    // The HTTP benchmark's nginx baseline.
    "nginx-light",
    "procps",
    // The font of the benchmark report's plot.
    "fonts-dejavu-core",
];
const BPF_LINKER_VERSION: &str = "0.13.0";

fn step(name: &str, manual: &str, f: impl FnOnce() -> Result<bool>) -> Result<()> {
    match f() {
        Ok(true) => {
            println!("setup: {name}: installed");
            Ok(())
        }
        Ok(false) => {
            println!("setup: {name}: present");
            Ok(())
        }
        Err(e) => bail!("setup step '{name}' failed: {e:#}\n  to do it by hand: {manual}"),
    }
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !cmd::output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

/// Runs every step.
pub fn setup() -> Result<()> {
    let missing = missing_packages();
    let apt_manual = format!(
        "apt-get update && apt-get install -y {}",
        PACKAGES.join(" ")
    );
    step("debian packages", &apt_manual, || {
        if missing.is_empty() {
            return Ok(false);
        }
        if !nix::unistd::geteuid().is_root() {
            bail!("missing {}, and installing needs root", missing.join(" "));
        }
        cmd::run_env(
            "apt-get",
            &["update", "-q"],
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(missing.iter().copied());
        cmd::run_env("apt-get", &args, &[("DEBIAN_FRONTEND", "noninteractive")])?;
        Ok(true)
    })?;

    step(
        "nightly rust-src",
        "rustup component add rust-src --toolchain nightly",
        || {
            let installed = cmd::stdout(
                "rustup",
                &["component", "list", "--toolchain", "nightly", "--installed"],
            )
            .context("is the nightly toolchain installed? (rustup toolchain list)")?;
            if installed.lines().any(|l| l.starts_with("rust-src")) {
                return Ok(false);
            }
            cmd::run(
                "rustup",
                &["component", "add", "rust-src", "--toolchain", "nightly"],
            )?;
            Ok(true)
        },
    )?;

    let linker_manual = format!(
        "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@{BPF_LINKER_VERSION} --locked \
         --no-default-features --features llvm-22"
    );
    step("bpf-linker", &linker_manual, || {
        let version = cmd::output("bpf-linker", &["--version"]).ok();
        if version.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        {
            return Ok(false);
        }
        cmd::run_env(
            "cargo",
            &[
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ],
            &[("LLVM_PREFIX", "/usr/lib/llvm-22")],
        )?;
        Ok(true)
    })?;
    Ok(())
}
