//! Running commands, with their name in every error.

use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};

/// A command line for messages.
pub fn line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command with inherited stdio; fails if it does not succeed.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    run_env(program, args, &[])
}

/// [`run`] with extra environment variables.
pub fn run_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot start `{}`", line(program, args)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", line(program, args));
    }
    Ok(())
}

/// Runs a command and captures its output, whatever its exit status.
pub fn output(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", line(program, args)))
}

/// Runs a command that must succeed and returns its stdout.
pub fn stdout(program: &str, args: &[&str]) -> Result<String> {
    let out = output(program, args)?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            line(program, args),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
