//! The machine's speed beside each rate sample: the empty XDP program (`return XDP_PASS`) run
//! with BPF_PROG_TEST_RUN on the generator's core right before and right after the sample, in
//! ns per run. On the Intel VM of these runs the host now and then slows a vCPU for seconds
//! (the xdp bench's empty program 7 -> 13 ns, and the udp bench's rates switch between two
//! levels about 1.4x apart from one sample to the next); a ratio whose two samples ran at
//! different speeds measures the host. With the probe, the report and a partial `udp` run fit
//! each ratio at equal speed (`support::stats::fit_at_equal`).
//!
//! The probe sees the speed at a sample's two ends, not a slowdown that starts and ends inside
//! it. The fit uses the generator's core only; `udp` also records a probe of the receiver's
//! core (`speed_receiver_ns`, the echo's bottleneck), outside the sample's window like the
//! other: it shares that core with a spinning worker for its few calls, test_run's clock stops
//! where the kernel reschedules between runs, and the fastest of the calls counts.

use std::{
    sync::mpsc::{self, Receiver, Sender},
    thread,
};

use anyhow::{Context as _, Result, anyhow};
use aya::programs::{TestRun as _, TestRunOptions};
use netdemux::control::object;
use netdemux_common::program_names;

/// Runs per call (about half a millisecond at full speed) and calls per probe (the fastest
/// counts: a call the scheduler or an interrupt cut into says nothing about the host).
const RUNS: u32 = 50_000;
const CALLS: usize = 3;

/// A thread pinned to one CPU with the empty program loaded, timing it on request.
pub struct SpeedProbe {
    ask: Sender<()>,
    answer: Receiver<Result<f64>>,
}

impl SpeedProbe {
    /// Loads the embedded object's empty program on a thread pinned to `cpu`.
    pub fn start(cpu: usize) -> Result<SpeedProbe> {
        let (ask, asked) = mpsc::channel::<()>();
        let (answer_tx, answer) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel::<Result<()>>();
        thread::Builder::new()
            .name("speed-probe".into())
            .spawn(move || {
                super::pin(cpu);
                let mut ebpf = match object::open(1) {
                    Ok(e) => e,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let prog = match object::load_program(&mut ebpf, program_names::PASS) {
                    Ok(p) => p,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let _ = ready_tx.send(Ok(()));
                // A 64-byte frame: the program does not read it.
                let frame = [0u8; 64];
                while asked.recv().is_ok() {
                    let fastest = (0..CALLS)
                        .map(|_| {
                            prog.test_run(TestRunOptions {
                                data_in: Some(&frame),
                                repeat: RUNS,
                                ..Default::default()
                            })
                            .map(|r| r.duration.as_nanos() as f64)
                            .context("BPF_PROG_TEST_RUN of the empty program")
                        })
                        .try_fold(f64::INFINITY, |m, ns| ns.map(|ns| m.min(ns)));
                    if answer_tx.send(fastest).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the speed probe's thread")?;
        ready
            .recv()
            .map_err(|_| anyhow!("the speed probe's thread ended before it was ready"))??;
        Ok(SpeedProbe { ask, answer })
    }

    /// The empty program's ns per run, now (the fastest of a few calls).
    pub fn ns(&self) -> Result<f64> {
        self.ask
            .send(())
            .map_err(|_| anyhow!("the speed probe's thread has ended"))?;
        self.answer
            .recv()
            .map_err(|_| anyhow!("the speed probe's thread has ended"))?
    }
}
