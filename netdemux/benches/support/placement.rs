//! Where the host has put the VM's two vCPUs while a sample runs: the round trip of a cache line
//! between a thread on CPU 0 and one on CPU 1. On the AMD EPYC VM of these runs it takes two
//! values, about 90–140 ns (near) and about 430–500 ns (far; now and then 30 ns, one core's two
//! hardware threads). With both cores idle it flips every 0.2–1.6 s; under load it can hold for
//! seconds (one quick run probed by hand stayed far through its samples), and in the full runs
//! most samples ran on one placement from start to end. A rate whose work crosses the two cores
//! (an AF_XDP receiver on CPU 1 behind the XDP program on CPU 0) moves with it, so a probe
//! before a sample says little and every sample records how much of its own time ran near.
//!
//! So the probe runs *during* the sample: every [`EVERY`], a burst of [`BURST`] round trips
//! whose median is the burst's figure (a thread preempted mid-burst lengthens a few round
//! trips, not the median). A burst is 256 round trips of 0.1–0.5 µs, at most about a tenth of
//! a millisecond on each core; the CPU 0 side yields while it waits for CPU 1's thread to be
//! scheduled, so it does not spin the generator off its core.

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// Round trips per burst.
const BURST: u64 = 256;
/// Time between bursts.
pub const EVERY: Duration = Duration::from_millis(100);
/// Never called far below this (ns): two placements closer than this are one.
const FLOOR_NS: f64 = 300.0;
/// A wait for the other side this long (spinning) makes the waiting side yield its core.
const SPIN_BEFORE_YIELD: Duration = Duration::from_micros(20);

/// The line and the CPU 1 side's start signal, shared by one watch's two threads.
struct Shared {
    line: AtomicU64,
    /// The value the next burst starts after, `None` while the CPU 1 side waits for one.
    start: Mutex<Option<u64>>,
    go: Condvar,
    stop: AtomicBool,
}

impl Shared {
    /// Spins until the line holds `v`; yields the core after [`SPIN_BEFORE_YIELD`]. False when
    /// the watch is stopped first.
    fn wait_for(&self, v: u64) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                if self.line.load(Ordering::Acquire) == v {
                    return true;
                }
                std::hint::spin_loop();
            }
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if start.elapsed() >= SPIN_BEFORE_YIELD {
                thread::yield_now();
            }
        }
    }
}

/// The CPU 1 side: answers each burst, then sleeps until the next.
fn pong(s: &Shared) {
    super::pin(1);
    loop {
        let base = {
            let mut start = s.start.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(b) = start.take() {
                    break b;
                }
                start = s.go.wait(start).unwrap_or_else(|e| e.into_inner());
            }
        };
        for i in 0..BURST {
            if !s.wait_for(base + 2 * i + 1) {
                return;
            }
            s.line.store(base + 2 * i + 2, Ordering::Release);
        }
    }
}

/// The CPU 0 side: one burst, its median round trip in ns (`None` when stopped mid-burst).
fn ping(s: &Shared, base: u64) -> Option<f64> {
    *s.start.lock().unwrap_or_else(|e| e.into_inner()) = Some(base);
    s.go.notify_one();
    let mut trips = Vec::with_capacity(BURST as usize);
    for i in 0..BURST {
        let t = Instant::now();
        s.line.store(base + 2 * i + 1, Ordering::Release);
        if !s.wait_for(base + 2 * i + 2) {
            return None;
        }
        trips.push(t.elapsed().as_nanos() as f64);
    }
    trips.sort_by(f64::total_cmp);
    Some(trips[trips.len() / 2])
}

/// A probe running beside a sample: a burst every [`EVERY`] until [`Watch::finish`].
pub struct Watch {
    shared: Arc<Shared>,
    handle: thread::JoinHandle<Vec<f64>>,
    pong: thread::JoinHandle<()>,
}

impl Watch {
    /// Starts the two threads.
    pub fn start() -> Watch {
        let shared = Arc::new(Shared {
            line: AtomicU64::new(0),
            start: Mutex::new(None),
            go: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let pong = thread::spawn(move || pong(&s));
        let s = shared.clone();
        let handle = thread::spawn(move || {
            super::pin(0);
            let mut medians = Vec::new();
            let mut base = 0;
            while !s.stop.load(Ordering::Relaxed) {
                match ping(&s, base) {
                    Some(m) => medians.push(m),
                    None => break,
                }
                base += 2 * BURST;
                thread::sleep(EVERY);
            }
            medians
        });
        Watch {
            shared,
            handle,
            pong,
        }
    }

    /// Stops the probe: the median round trip of each burst, ns.
    pub fn finish(self) -> Vec<f64> {
        self.shared.stop.store(true, Ordering::Relaxed);
        {
            let _start = self.shared.start.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.go.notify_all();
        }
        let medians = self.handle.join().unwrap_or_default();
        let _ = self.pong.join();
        medians
    }
}

/// Whether a burst says the two cores are near, given the shortest burst seen at idle: within
/// 1.5 times it, and never short of [`FLOOR_NS`] (on a machine whose cores are always as far
/// apart, every burst is near).
fn is_near(ns: f64, shortest: f64) -> bool {
    ns <= FLOOR_NS.max(1.5 * shortest)
}

/// The run's shortest round trip at idle (against which a burst is near or far), and what the
/// measured samples saw of the placement.
#[derive(Debug)]
pub struct Placement {
    shortest: f64,
    /// Each measured sample's share of near bursts.
    shares: Vec<f64>,
}

impl Placement {
    /// Probes for three seconds with both cores idle, so that a run which starts on the far
    /// placement does not take it for the near one.
    pub fn new() -> Placement {
        let watch = Watch::start();
        thread::sleep(Duration::from_secs(3));
        let shortest = watch.finish().into_iter().fold(f64::INFINITY, f64::min);
        Placement {
            shortest,
            shares: Vec::new(),
        }
    }

    /// Records a sample's bursts in it: `near_share` (the share of its bursts that were near),
    /// `cross_core_ns` (their median) and `cross_core_bursts`.
    pub fn record(&mut self, medians: &[f64], sample: &mut serde_json::Value) {
        let near = medians
            .iter()
            .filter(|&&m| is_near(m, self.shortest))
            .count();
        let share = near as f64 / medians.len().max(1) as f64;
        self.shares.push(share);
        let mut sorted = medians.to_vec();
        sorted.sort_by(f64::total_cmp);
        sample["near_share"] = share.into();
        sample["cross_core_ns"] = sorted.get(sorted.len() / 2).copied().into();
        sample["cross_core_bursts"] = medians.len().into();
    }

    /// The run's summary for its results file.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "shortest_round_trip_ns": self.shortest,
            "samples": self.shares.len(),
            "mean_near_share": self.mean_share(),
            "samples_mostly_near": self.mostly_near(),
        })
    }

    fn mean_share(&self) -> f64 {
        self.shares.iter().sum::<f64>() / self.shares.len().max(1) as f64
    }

    /// Samples that ran near more than half of their time.
    fn mostly_near(&self) -> usize {
        self.shares.iter().filter(|&&s| s > 0.5).count()
    }

    /// The run's summary in one line.
    pub fn report(&self) -> String {
        format!(
            "vCPU placement: shortest cross-core round trip at idle {:.0} ns; the {} samples ran \
             near {:.0}% of their time on average ({} of them more than half of it)",
            self.shortest,
            self.shares.len(),
            100.0 * self.mean_share(),
            self.mostly_near()
        )
    }
}
