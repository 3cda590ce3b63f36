//! CUBIC (RFC 9438).

use std::time::{Duration, Instant};

use super::controller::{Algorithm, Base, CongestionControl};

/// CUBIC's C, in MSS per second cubed (RFC 9438 §5).
pub(super) const C: f64 = 0.4;
/// CUBIC's multiplicative decrease factor beta_cubic (RFC 9438 §4.6).
const BETA: f64 = 0.7;
/// The Reno-friendly additive increase alpha_cubic = 3 * (1 - beta) / (1 + beta) (§4.3).
pub(super) const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// CUBIC's window (RFC 9438): after a loss it follows a cubic function of the time since,
/// concave back up to the window where the loss happened, then convex beyond it, but never
/// slower than the Reno estimate.
#[derive(Debug)]
pub struct Cubic {
    base: Base,
    /// The fraction of a byte the window has grown beyond `base.cwnd`, in [0, 1).
    carry: f64,
    /// W_max in bytes: the window before the last reduction, fast convergence applied.
    pub(super) w_max: Option<f64>,
    /// cwnd_prior in bytes: the window when ssthresh was last set (0 before that).
    cwnd_prior: f64,
    /// The current congestion avoidance stage, from its first ACK.
    pub(super) epoch: Option<Epoch>,
    /// The window was last reduced by a timeout (RFC 9438 §4.8 for the next stage).
    after_timeout: bool,
    /// Since when the application, not the window, has limited the sender.
    app_limited_since: Option<Instant>,
    /// The smoothed RTT of the samples seen, for W_cubic(t + RTT).
    srtt: Option<Duration>,
}

/// A congestion avoidance stage (RFC 9438 §4.2): its curve is fixed when it starts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Epoch {
    /// When the stage started, shifted forward by time spent application-limited.
    pub(super) start: Instant,
    /// K in seconds: when W_cubic returns to `w_max`.
    pub(super) k: f64,
    /// W_max for this stage, in bytes.
    pub(super) w_max: f64,
    /// W_est, the Reno-friendly estimate, in bytes.
    w_est: f64,
}

impl Cubic {
    /// A controller for segments of `mss` bytes, at the initial window.
    pub fn new(mss: usize) -> Self {
        Cubic {
            base: Base::new(mss),
            carry: 0.0,
            w_max: None,
            cwnd_prior: 0.0,
            epoch: None,
            after_timeout: false,
            app_limited_since: None,
            srtt: None,
        }
    }

    /// The window with its fraction, in bytes.
    fn cwnd(&self) -> f64 {
        self.base.cwnd as f64 + self.carry
    }

    /// Sets the window in bytes (at least one MSS).
    pub(super) fn set_cwnd(&mut self, bytes: f64) {
        let bytes = bytes.max(self.base.mss as f64);
        self.base.cwnd = bytes as usize;
        self.carry = (bytes - self.base.cwnd as f64).clamp(0.0, 1.0);
    }

    /// Smooths the RTT samples as RFC 6298 does (the RTT that RFC 9438 §4.2 asks for).
    fn observe_rtt(&mut self, rtt: Option<Duration>) {
        if let Some(rtt) = rtt {
            self.srtt = Some(match self.srtt {
                Some(s) => (s - s / 8).saturating_add(rtt / 8),
                None => rtt,
            });
        }
    }

    /// Multiplicative decrease (RFC 9438 §4.6, fast convergence §4.7): W_max, cwnd_prior and
    /// ssthresh = beta * FlightSize, at least 2 MSS.
    fn reduce(&mut self, in_flight: usize) {
        let cwnd = self.cwnd();
        self.w_max = Some(match self.w_max {
            Some(w_max) if cwnd < w_max => cwnd * (1.0 + BETA) / 2.0,
            _ => cwnd,
        });
        self.cwnd_prior = cwnd;
        self.base
            .set_ssthresh(in_flight / 10 * 7 + in_flight % 10 * 7 / 10);
        self.base.reduced = true;
    }

    /// Starts a congestion avoidance stage at the current window (RFC 9438 §4.2; after a
    /// timeout §4.8: W_max is the current window, so K = 0).
    fn start_epoch(&mut self, now: Instant) -> Epoch {
        let cwnd = self.cwnd();
        let w_max = match self.w_max {
            Some(w_max) if !self.after_timeout => w_max,
            _ => cwnd,
        };
        self.w_max = Some(w_max);
        self.after_timeout = false;
        let mss = self.base.mss as f64;
        Epoch {
            start: now,
            k: ((w_max - cwnd) / mss / C).cbrt(),
            w_max,
            w_est: cwnd,
        }
    }

    /// W_cubic(t) = C*(t-K)^3 + W_max, in bytes (RFC 9438 §4.2 equation 1).
    fn w_cubic(&self, epoch: &Epoch, t: f64) -> f64 {
        C * (t - epoch.k).powi(3) * self.base.mss as f64 + epoch.w_max
    }

    /// Congestion avoidance for `acked` bytes (RFC 9438 §4.3-4.5); `min_rtt` stands in for the
    /// smoothed RTT until there is one.
    fn avoid_congestion(&mut self, acked: usize, min_rtt: Option<Duration>, now: Instant) {
        let mut epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.start_epoch(now),
        };
        let (cwnd, acked, mss) = (self.cwnd(), acked as f64, self.base.mss as f64);
        let alpha = if epoch.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA
        };
        epoch.w_est += alpha * acked * mss / cwnd;
        let t = now.saturating_duration_since(epoch.start).as_secs_f64();
        let next = if self.w_cubic(&epoch, t) < epoch.w_est {
            epoch.w_est.max(cwnd)
        } else {
            let rtt = self.srtt.or(min_rtt).unwrap_or_default().as_secs_f64();
            let target = self.w_cubic(&epoch, t + rtt).max(cwnd).min(1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * acked
        };
        self.epoch = Some(epoch);
        self.set_cwnd(next);
    }

    /// The sender is limited by the window again: the time it was not does not count into t
    /// (RFC 9438 §5.8).
    fn resume(&mut self, now: Instant) {
        if let (Some(since), Some(epoch)) = (self.app_limited_since.take(), self.epoch.as_mut()) {
            let idle = now.saturating_duration_since(since);
            epoch.start = epoch.start.checked_add(idle).unwrap_or(epoch.start);
        }
    }
}

impl CongestionControl for Cubic {
    fn window(&self) -> usize {
        self.base.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.base.ssthresh
    }

    fn on_ack(
        &mut self,
        acked: usize,
        rtt: Option<Duration>,
        min_rtt: Option<Duration>,
        in_flight: usize,
        now: Instant,
    ) {
        self.observe_rtt(rtt);
        if acked == 0 {
            return;
        }
        self.base.reduced = false;
        if !self.base.window_limited(in_flight) {
            self.app_limited_since.get_or_insert(now);
            return;
        }
        self.resume(now);
        let acked = if self.base.in_slow_start() {
            self.base.slow_start(acked)
        } else {
            acked
        };
        if acked > 0 {
            self.avoid_congestion(acked, min_rtt, now);
        }
    }

    fn on_congestion_event(&mut self, in_flight: usize, _now: Instant) {
        self.reduce(in_flight);
        self.set_cwnd(self.base.ssthresh as f64);
        self.epoch = None;
        self.after_timeout = false;
        self.app_limited_since = None;
    }

    fn on_retransmission_timeout(&mut self, in_flight: usize, _now: Instant) {
        if !self.base.reduced {
            self.reduce(in_flight);
        }
        self.set_cwnd(self.base.mss as f64);
        self.epoch = None;
        self.after_timeout = true;
        self.app_limited_since = None;
    }

    fn set_mss(&mut self, mss: usize) {
        self.base.set_mss(mss);
    }

    fn name(&self) -> &'static str {
        Algorithm::Cubic.name()
    }
}
