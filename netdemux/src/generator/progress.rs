//! The generator's live rate line. Frames are counted when a BPF_PROG_TEST_RUN call returns, up
//! to a million at a time (a few hundred milliseconds on a veth), so a rate over the last
//! wall-clock second jumps between whole calls: a steady 2.5 Mpps printed as 2.09, 3.14, 2.09.
//! The rate is taken over the calls that ended since the last line instead, from the end of the
//! first to the end of the last.
//! The same tally gives the run's total.

use std::{sync::Mutex, time::Duration};

/// Frames sent by the calls that have returned, and when the last of them returned (since the
/// generator started).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub frames: u64,
    pub at: Duration,
}

/// The threads' calls, tallied as they return.
#[derive(Debug, Default)]
pub struct Progress(Mutex<Tally>);

impl Progress {
    /// A call that sent `frames` returned at `at`.
    pub fn record(&self, frames: u64, at: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.frames += frames;
        t.at = t.at.max(at);
    }

    /// The tally now.
    pub fn tally(&self) -> Tally {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frames per second between two tallies; `None` when no call returned in between.
pub fn rate(earlier: Tally, later: Tally) -> Option<f64> {
    (later.at > earlier.at).then(|| {
        later.frames.saturating_sub(earlier.frames) as f64 / (later.at - earlier.at).as_secs_f64()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steady calls of a million frames every 0.4 s, read once a second: every line says
    /// 2.5 Mpps. A rate over each wall-clock second said 2, 3, 2, 3 (two calls, then three).
    #[test]
    fn steady_calls_read_as_a_steady_rate() {
        let p = Progress::default();
        let mut last = p.tally();
        let mut rates = Vec::new();
        let mut wall_second = Vec::new();
        let mut last_frames = 0;
        let mut call_end = Duration::ZERO;
        for second in 1..=6u64 {
            loop {
                let next = call_end + Duration::from_millis(400);
                if next > Duration::from_secs(second) {
                    break;
                }
                call_end = next;
                p.record(1 << 20, call_end);
            }
            let now = p.tally();
            rates.push(rate(last, now).unwrap());
            wall_second.push(now.frames - last_frames);
            last_frames = now.frames;
            last = now;
        }
        for r in &rates {
            assert!(
                (r / (2.5 * f64::from(1 << 20)) - 1.0).abs() < 1e-9,
                "{rates:?}"
            );
        }
        assert_ne!(
            wall_second[1], wall_second[2],
            "the naive rate jumps: {wall_second:?}"
        );
        // No call in between: no line rather than a zero.
        assert_eq!(rate(last, p.tally()), None);
    }

    #[test]
    fn threads_add_up_and_the_latest_return_counts() {
        let p = Progress::default();
        p.record(100, Duration::from_millis(300));
        p.record(50, Duration::from_millis(200));
        assert_eq!(
            p.tally(),
            Tally {
                frames: 150,
                at: Duration::from_millis(300)
            }
        );
    }
}
