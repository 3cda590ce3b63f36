//! NewReno (RFC 5681, RFC 6582) with RFC 3465 byte counting.

use std::time::{Duration, Instant};

use super::controller::{Algorithm, Base, CongestionControl};

/// NewReno's window: halved on loss, one MSS more per window acknowledged (RFC 5681, RFC 3465
/// byte counting).
#[derive(Debug)]
pub struct NewReno {
    base: Base,
    /// Bytes acknowledged in congestion avoidance since the window last grew.
    counted: usize,
}

impl NewReno {
    /// A controller for segments of `mss` bytes, at the initial window.
    pub fn new(mss: usize) -> Self {
        NewReno {
            base: Base::new(mss),
            counted: 0,
        }
    }

    /// Congestion avoidance: one MSS per window's worth of bytes acknowledged.
    fn avoid_congestion(&mut self, acked: usize) {
        let cwnd = self.base.cwnd.max(1);
        self.counted = self.counted.saturating_add(acked);
        let windows = self.counted / cwnd;
        self.counted -= windows * cwnd;
        let grow = windows.saturating_mul(self.base.mss);
        self.base.cwnd = self.base.cwnd.saturating_add(grow);
    }

    /// ssthresh = max(FlightSize / 2, 2*MSS) (RFC 5681 equation 4).
    fn reduce(&mut self, in_flight: usize) {
        self.base.set_ssthresh(in_flight / 2);
        self.base.reduced = true;
        self.counted = 0;
    }
}

impl CongestionControl for NewReno {
    fn window(&self) -> usize {
        self.base.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.base.ssthresh
    }

    fn on_ack(
        &mut self,
        acked: usize,
        _rtt: Option<Duration>,
        _min_rtt: Option<Duration>,
        in_flight: usize,
        _now: Instant,
    ) {
        if acked == 0 {
            return;
        }
        self.base.reduced = false;
        if !self.base.window_limited(in_flight) {
            return;
        }
        let acked = if self.base.in_slow_start() {
            self.base.slow_start(acked)
        } else {
            acked
        };
        if acked > 0 {
            self.avoid_congestion(acked);
        }
    }

    fn on_congestion_event(&mut self, in_flight: usize, _now: Instant) {
        self.reduce(in_flight);
        self.base.cwnd = self.base.ssthresh;
    }

    fn on_retransmission_timeout(&mut self, in_flight: usize, _now: Instant) {
        if !self.base.reduced {
            self.reduce(in_flight);
        }
        self.counted = 0;
        self.base.cwnd = self.base.mss;
    }

    fn set_mss(&mut self, mss: usize) {
        self.base.set_mss(mss);
    }

    fn name(&self) -> &'static str {
        Algorithm::NewReno.name()
    }
}
