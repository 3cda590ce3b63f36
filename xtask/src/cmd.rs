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

/// Runs a `cargo test`-style command, echoing its stdout, and returns the totals of its
/// `test result:` lines as (passed, failed). Fails if the command fails.
pub fn run_counting_tests(program: &str, args: &[&str]) -> Result<(u64, u64)> {
    use std::io::{BufRead as _, BufReader};
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", line(program, args)))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for l in BufReader::new(out).lines() {
            let l = l?;
            println!("{l}");
            if let Some(rest) = l.strip_prefix("test result: ") {
                for part in rest.split(['.', ';']) {
                    let mut words = part.split_whitespace();
                    if let (Some(n), Some(what)) = (words.next(), words.next()) {
                        match (n.parse::<u64>(), what) {
                            (Ok(n), "passed") => passed += n,
                            (Ok(n), "failed") => failed += n,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}): {passed} passed, {failed} failed",
            line(program, args)
        );
    }
    Ok((passed, failed))
}
