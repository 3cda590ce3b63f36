//! Where the host has put the VM's two vCPUs, as the benchmarks see it: the round trip of a cache
//! line between CPU 0 and CPU 1. On the AMD EPYC VM of these runs it flips, every few seconds,
//! between about 110 ns and about 480 ns when both cores are idle (two placements on the host,
//! near and far), and a rate whose work crosses the two cores — an AF_XDP receiver on CPU 1
//! behind the XDP program on CPU 0 — moves with it: two-second sink samples gave 2.09–2.26 Mpps
//! with the round trip near before and after, 1.61–1.89 with it far. So a sample starts only once
//! the round trip is near (waiting for it a bounded time), and records the round trip before it
//! and after it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// Round trips per probe: a few milliseconds.
const ROUNDS: u64 = 20_000;
/// Never called far below this (ns): two placements closer than this are one.
const FLOOR_NS: f64 = 300.0;
/// The longest wait for a near placement before a sample starts anyway.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The mean round trip, ns, of a cache line bounced between a thread on CPU 0 and one on CPU 1
/// (both otherwise idle: probe between samples, not during one).
pub fn round_trip_ns() -> f64 {
    let line = Arc::new(AtomicU64::new(0));
    let other = line.clone();
    let pong = thread::spawn(move || {
        super::pin(1);
        for i in 0..ROUNDS {
            while other.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.store(2 * i + 2, Ordering::Release);
        }
    });
    // On a thread of its own, pinned, so the caller's affinity is left alone.
    thread::spawn(move || {
        super::pin(0);
        let start = Instant::now();
        for i in 0..ROUNDS {
            line.store(2 * i + 1, Ordering::Release);
            while line.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / ROUNDS as f64;
        let _ = pong.join();
        ns
    })
    .join()
    .unwrap_or(f64::NAN)
}

/// Whether a probe says the two cores are near, given the shortest round trip of the run so far:
/// within 1.5 times it, and never short of [`FLOOR_NS`] (on a machine whose cores are always as
/// far apart, every probe is near).
fn is_near(ns: f64, shortest: f64) -> bool {
    ns <= FLOOR_NS.max(1.5 * shortest)
}

/// The run's shortest round trip, against which a probe is near or far.
#[derive(Debug)]
pub struct Placement {
    shortest: f64,
}

impl Placement {
    /// Probes every 200 ms for three seconds, so that a run which starts on the far placement
    /// does not take it for the near one.
    pub fn new() -> Placement {
        let mut p = Placement {
            shortest: f64::INFINITY,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            p.probe();
            thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// One probe, remembered.
    pub fn probe(&mut self) -> f64 {
        let ns = round_trip_ns();
        if ns.is_finite() {
            self.shortest = self.shortest.min(ns);
        }
        ns
    }

    /// Waits until a probe says near (at most [`MAX_WAIT`]): the last probe and the wait.
    pub fn wait_near(&mut self) -> (f64, Duration) {
        let start = Instant::now();
        loop {
            let ns = self.probe();
            if self.near(ns) || start.elapsed() >= MAX_WAIT {
                return (ns, start.elapsed());
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The shortest round trip of the run, ns.
    pub fn shortest(&self) -> f64 {
        self.shortest
    }

    /// Whether `ns` is near by this run's probes.
    pub fn near(&self, ns: f64) -> bool {
        is_near(ns, self.shortest)
    }
}
