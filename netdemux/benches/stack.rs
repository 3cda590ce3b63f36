//! `cargo bench -p netdemux --bench stack`: the queue worker's own cost per HTTP request, in
//! memory, without a network or a system call: a profiling aid for the code the `tcp` bench's
//! server core runs besides the kernel (not part of `cargo xtask bench`, which compares whole
//! systems).
//!
//! 64 keep-alive connections, as the `tcp` bench's wrk drives; each round of the worker's loop
//! gets the next requests of 5 of them in one batch (what a worker saw per batch in that bench);
//! 200,000 requests per repetition, 7 repetitions; prints each repetition's ns per request and
//! the median. With `--udp`, datagrams to the UDP echo instead, as the `udp` bench's generator
//! sends them (64-byte frames, 64 flows), 64 per batch (the socket's batch): the worker's cost
//! per echoed datagram, for the `udp` bench's echo against the bare reflector; `--batch N` gives
//! the worker N datagrams per round instead (a worker that keeps up sees a few: the cost of its
//! round then weighs on each datagram). Time is noisy on
//! a shared VM; for counts that repeat within a few percent (timers fire by the clock and the
//! tables' hash keys are random, so not exactly), run one repetition under callgrind:
//! `valgrind --tool=callgrind target/release/deps/stack-* --reps 1`.
//! Usage: stack [--udp [--batch N]] [--reps N] [--requests N]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use netdemux::runtime::worker::fuzzing::{http_keepalive, udp_echo};

const CONNECTIONS: u16 = 64;
const PER_ROUND: usize = 5;

fn main() -> Result<()> {
    let (mut reps, mut requests, mut udp) = (7usize, 200_000usize, false);
    let mut batch = netdemux::xsk::socket::BATCH;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--reps" => reps = value("--reps")?.max(1),
            "--requests" => requests = value("--requests")?.max(1),
            "--udp" => udp = true,
            "--batch" => {
                batch = value("--batch")?;
                let max = netdemux::xsk::socket::BATCH;
                if !(1..=max).contains(&batch) {
                    bail!("--batch takes 1 to {max} (the socket's batch), not {batch}");
                }
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => {
                bail!(
                    "unknown argument {other}: usage: stack [--udp [--batch N]] [--reps N] \
                     [--requests N]"
                )
            }
        }
    }
    let (what, median) = if udp {
        const FLOWS: u16 = 64;
        println!(
            "UDP echo through the queue worker in memory: {FLOWS} flows, {batch} datagrams per \
             batch, {requests} datagrams per repetition"
        );
        let median = repetitions(reps, "datagram", || {
            let e = udp_echo(FLOWS, requests, batch);
            (e.worker_time, e.answered, e.rounds)
        });
        ("datagrams", median)
    } else {
        println!(
            "HTTP keep-alive through the queue worker in memory: {CONNECTIONS} connections, \
             {PER_ROUND} requests per batch, {requests} requests per repetition"
        );
        let median = repetitions(reps, "request", || {
            let k = http_keepalive(CONNECTIONS, requests, PER_ROUND);
            (k.worker_time, k.answered, k.rounds)
        });
        ("requests", median)
    };
    println!(
        "median: {median:.1} ns per {} ({:.0} {what} per worker-core second)",
        &what[..what.len() - 1],
        Duration::from_secs(1).as_nanos() as f64 / median
    );
    Ok(())
}

/// Runs `once` (worker time, units answered, rounds) `reps` times, prints each repetition's ns
/// per `unit`, and returns their median.
fn repetitions(reps: usize, unit: &str, once: impl Fn() -> (Duration, usize, usize)) -> f64 {
    let mut per_unit = Vec::new();
    for rep in 0..reps {
        let (time, answered, rounds) = once();
        let ns = time.as_nanos() as f64 / answered as f64;
        println!(
            "  repetition {}: {ns:.1} ns per {unit} ({answered} in {rounds} rounds, {:.1} ms)",
            rep + 1,
            time.as_secs_f64() * 1e3
        );
        per_unit.push(ns);
    }
    per_unit.sort_by(f64::total_cmp);
    per_unit[per_unit.len() / 2]
}
