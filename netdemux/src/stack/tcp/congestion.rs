//! Congestion control behind a small trait: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).
//! Both start from the initial window of RFC 6928 and grow in slow start by the bytes
//! acknowledged (RFC 3465, L = 2); they differ in congestion avoidance and in how far they back
//! off. Windows are in bytes; time comes only from the `Instant`s passed in, so a test may drive
//! them with a virtual clock.

use std::{
    fmt,
    str::FromStr,
    time::{Duration, Instant},
};

/// Which congestion controller a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// CUBIC (RFC 9438), the default as in Linux.
    #[default]
    Cubic,
    /// NewReno (RFC 5681, RFC 6582).
    NewReno,
}

impl Algorithm {
    /// The name used in configuration: "cubic" or "newreno".
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Cubic => "cubic",
            Algorithm::NewReno => "newreno",
        }
    }

    /// A controller of this algorithm for segments of `mss` bytes.
    pub fn build(self, mss: usize) -> Box<dyn CongestionControl> {
        match self {
            Algorithm::Cubic => Box::new(Cubic::new(mss)),
            Algorithm::NewReno => Box::new(NewReno::new(mss)),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(Algorithm::Cubic),
            "newreno" => Ok(Algorithm::NewReno),
            _ => Err(format!(
                "unknown congestion control {s:?} (expected \"cubic\" or \"newreno\")"
            )),
        }
    }
}

/// What the connection tells its congestion controller. Window sizes in bytes.
pub trait CongestionControl: Send + fmt::Debug {
    /// The congestion window.
    fn window(&self) -> usize;
    /// The slow-start threshold (usize::MAX until the first congestion event).
    fn ssthresh(&self) -> usize;
    /// `acked` bytes of new data were cumulatively acknowledged outside loss recovery;
    /// `rtt` a valid sample from this ACK if any; `in_flight` bytes outstanding before the ACK.
    /// The window grows only while it limits the sender (RFC 9438 §5.8): in slow start when at
    /// least half of it was in flight, in congestion avoidance when less than an MSS was unused.
    fn on_ack(
        &mut self,
        acked: usize,
        rtt: Option<Duration>,
        min_rtt: Option<Duration>,
        in_flight: usize,
        now: Instant,
    );
    /// Loss detected by duplicate ACKs or SACK (entering fast recovery): reduce ssthresh and the
    /// window (RFC 5681 3.2 step 2 / RFC 9438 4.6).
    fn on_congestion_event(&mut self, in_flight: usize, now: Instant);
    /// A retransmission timeout: ssthresh as for a congestion event (unless already in a
    /// just-started recovery), window = 1 MSS (RFC 5681 3.1 loss window).
    fn on_retransmission_timeout(&mut self, in_flight: usize, now: Instant);
    /// The MSS changed (after the handshake).
    fn set_mss(&mut self, mss: usize);
    /// The algorithm's name.
    fn name(&self) -> &'static str;
}

/// The initial window for segments of `mss` bytes: min(10*MSS, max(2*MSS, 14600)) (RFC 6928).
pub fn initial_window(mss: usize) -> usize {
    mss.saturating_mul(10).min(mss.saturating_mul(2).max(14600))
}

/// RFC 3465's limit L: slow start counts at most this many MSS per ACK.
const ABC_LIMIT: usize = 2;

/// What both controllers keep: the window, the threshold and slow start.
#[derive(Debug)]
struct Base {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// The window was reduced and no new data has been acknowledged since: a timeout now does
    /// not reduce ssthresh again (RFC 5681 §3.1, on repeated retransmissions).
    reduced: bool,
}

impl Base {
    fn new(mss: usize) -> Self {
        let mss = mss.max(1);
        Base {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            reduced: false,
        }
    }

    fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// Whether the window, not the application, limited what was in flight.
    fn window_limited(&self, in_flight: usize) -> bool {
        if self.in_slow_start() {
            in_flight.saturating_mul(2) >= self.cwnd
        } else {
            in_flight.saturating_add(self.mss) > self.cwnd
        }
    }

    /// Grows the window by the bytes acknowledged, at most L*MSS and up to ssthresh; returns
    /// the acknowledged bytes left for congestion avoidance (past ssthresh).
    fn slow_start(&mut self, acked: usize) -> usize {
        let room = self.ssthresh.saturating_sub(self.cwnd);
        let grow = acked.min(ABC_LIMIT.saturating_mul(self.mss));
        if grow < room {
            self.cwnd += grow;
            0
        } else {
            self.cwnd = self.ssthresh;
            acked - room
        }
    }

    /// A threshold for a congestion event: `reduced` bytes, at least 2 MSS.
    fn set_ssthresh(&mut self, reduced: usize) {
        self.ssthresh = reduced.max(self.mss.saturating_mul(2));
    }

    /// Takes the new MSS: the untouched initial window becomes the new MSS's initial window,
    /// and the window never falls below one segment.
    fn set_mss(&mut self, mss: usize) {
        let mss = mss.max(1);
        if self.ssthresh == usize::MAX && self.cwnd == initial_window(self.mss) {
            self.cwnd = initial_window(mss);
        }
        self.cwnd = self.cwnd.max(mss);
        self.mss = mss;
    }
}

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

/// CUBIC's C, in MSS per second cubed (RFC 9438 §5).
const C: f64 = 0.4;
/// CUBIC's multiplicative decrease factor beta_cubic (RFC 9438 §4.6).
const BETA: f64 = 0.7;
/// The Reno-friendly additive increase alpha_cubic = 3 * (1 - beta) / (1 + beta) (§4.3).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// CUBIC's window (RFC 9438): after a loss it follows a cubic function of the time since,
/// concave back up to the window where the loss happened, then convex beyond it, but never
/// slower than the Reno estimate.
#[derive(Debug)]
pub struct Cubic {
    base: Base,
    /// The fraction of a byte the window has grown beyond `base.cwnd`, in [0, 1).
    carry: f64,
    /// W_max in bytes: the window before the last reduction, fast convergence applied.
    w_max: Option<f64>,
    /// cwnd_prior in bytes: the window when ssthresh was last set (0 before that).
    cwnd_prior: f64,
    /// The current congestion avoidance stage, from its first ACK.
    epoch: Option<Epoch>,
    /// The window was last reduced by a timeout (RFC 9438 §4.8 for the next stage).
    after_timeout: bool,
    /// Since when the application, not the window, has limited the sender.
    app_limited_since: Option<Instant>,
    /// The smoothed RTT of the samples seen, for W_cubic(t + RTT).
    srtt: Option<Duration>,
}

/// A congestion avoidance stage (RFC 9438 §4.2): its curve is fixed when it starts.
#[derive(Clone, Copy, Debug)]
struct Epoch {
    /// When the stage started, shifted forward by time spent application-limited.
    start: Instant,
    /// K in seconds: when W_cubic returns to `w_max`.
    k: f64,
    /// W_max for this stage, in bytes.
    w_max: f64,
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
    fn set_cwnd(&mut self, bytes: f64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1460;

    /// A virtual clock and the ACK clock of a sender that always fills its window.
    struct Path {
        base: Instant,
        elapsed: Duration,
        rtt: Duration,
    }

    impl Path {
        fn new(rtt: Duration) -> Self {
            Path {
                base: Instant::now(),
                elapsed: Duration::ZERO,
                rtt,
            }
        }

        fn now(&self) -> Instant {
            self.base + self.elapsed
        }

        /// One round trip: the window in flight, acknowledged one MSS at a time, spread evenly
        /// over the RTT.
        fn round(&mut self, cc: &mut dyn CongestionControl) {
            let acks = (cc.window() / MSS).max(1) as u32;
            let begin = self.elapsed;
            for i in 1..=acks {
                self.elapsed = begin + self.rtt * i / acks;
                let in_flight = cc.window();
                cc.on_ack(MSS, Some(self.rtt), Some(self.rtt), in_flight, self.now());
            }
        }

        /// Seconds from `then` to now.
        fn since(&self, then: Instant) -> f64 {
            self.now().duration_since(then).as_secs_f64()
        }

        /// Rounds until the window reaches `bytes`.
        fn grow_to(&mut self, cc: &mut dyn CongestionControl, bytes: usize) {
            while cc.window() < bytes {
                self.round(cc);
            }
        }

        /// A loss with the whole window in flight.
        fn loss(&mut self, cc: &mut dyn CongestionControl) {
            let in_flight = cc.window();
            cc.on_congestion_event(in_flight, self.now());
        }
    }

    fn both() -> [Box<dyn CongestionControl>; 2] {
        [Algorithm::Cubic.build(MSS), Algorithm::NewReno.build(MSS)]
    }

    fn segments(bytes: usize) -> f64 {
        bytes as f64 / MSS as f64
    }

    #[test]
    fn the_initial_window_follows_rfc_6928() {
        assert_eq!(initial_window(1460), 14600);
        assert_eq!(initial_window(536), 5360);
        assert_eq!(initial_window(1000), 10000);
        assert_eq!(initial_window(9000), 18000);
        assert_eq!(initial_window(usize::MAX), usize::MAX);
        for cc in both() {
            assert_eq!(cc.window(), 14600);
            assert_eq!(cc.ssthresh(), usize::MAX);
        }
    }

    #[test]
    fn slow_start_doubles_per_rtt() {
        for mut cc in both() {
            let mut path = Path::new(Duration::from_millis(50));
            for round in 1..=5 {
                path.round(cc.as_mut());
                assert_eq!(cc.window(), 14600 << round, "{}", cc.name());
            }
        }
    }

    #[test]
    fn slow_start_counts_at_most_two_mss_per_ack() {
        for mut cc in both() {
            let now = Instant::now();
            cc.on_ack(10 * MSS, None, None, 14600, now);
            assert_eq!(cc.window(), 14600 + 2 * MSS, "{}", cc.name());
            cc.on_ack(100, None, None, cc.window(), now);
            assert_eq!(cc.window(), 14600 + 2 * MSS + 100, "{}", cc.name());
        }
    }

    #[test]
    fn an_application_limited_sender_does_not_grow_the_window() {
        for mut cc in both() {
            let now = Instant::now();
            cc.on_ack(MSS, None, None, 2 * MSS, now);
            assert_eq!(cc.window(), 14600, "{}", cc.name());
            cc.on_ack(0, None, None, 14600, now);
            assert_eq!(cc.window(), 14600, "{}", cc.name());
        }
    }

    #[test]
    fn newreno_adds_one_mss_per_rtt_in_congestion_avoidance() {
        let mut cc = NewReno::new(MSS);
        let mut path = Path::new(Duration::from_millis(20));
        path.grow_to(&mut cc, 40 * MSS);
        path.loss(&mut cc);
        let start = cc.window();
        assert_eq!(start, cc.ssthresh());
        for round in 1..=30 {
            path.round(&mut cc);
            assert_eq!(cc.window(), start + round * MSS);
        }
    }

    #[test]
    fn a_congestion_event_halves_newreno_and_takes_cubic_to_0_7() {
        let now = Instant::now();
        let mut reno = NewReno::new(MSS);
        reno.on_congestion_event(100 * MSS, now);
        assert_eq!((reno.ssthresh(), reno.window()), (50 * MSS, 50 * MSS));
        let mut cubic = Cubic::new(MSS);
        cubic.on_congestion_event(100 * MSS, now);
        assert_eq!((cubic.ssthresh(), cubic.window()), (70 * MSS, 70 * MSS));
        // Never below 2 MSS.
        for mut cc in both() {
            cc.on_congestion_event(MSS, now);
            assert_eq!(
                (cc.ssthresh(), cc.window()),
                (2 * MSS, 2 * MSS),
                "{}",
                cc.name()
            );
        }
    }

    /// The window `t` seconds into the stage that a loss at `w_max` segments, with `cwnd_epoch`
    /// segments after it, started: RFC 9438 equation 1, in segments.
    fn w_cubic(t: f64, w_max: f64, cwnd_epoch: f64) -> f64 {
        let k = ((w_max - cwnd_epoch) / C).cbrt();
        C * (t - k).powi(3) + w_max
    }

    #[test]
    fn cubic_climbs_back_to_w_max_at_k_then_probes_beyond() {
        let mut cc = Cubic::new(MSS);
        let rtt = Duration::from_millis(100);
        let mut path = Path::new(rtt);
        path.grow_to(&mut cc, 150 * MSS);
        let w_max = segments(cc.window());
        path.loss(&mut cc);
        let cwnd_epoch = segments(cc.window());
        assert!((cwnd_epoch - 0.7 * w_max).abs() < 0.01);
        let k = ((w_max - cwnd_epoch) / C).cbrt();
        path.round(&mut cc);
        let epoch = cc.epoch.expect("the first ACK starts the stage");
        assert!((epoch.k - k).abs() < 1e-9);
        let mut at = Vec::new();
        for fraction in [0.5, 1.0, 1.5, 2.0] {
            while path.since(epoch.start) < fraction * k {
                path.round(&mut cc);
            }
            let t = path.since(epoch.start);
            let expected = w_cubic(t, w_max, cwnd_epoch);
            let got = segments(cc.window());
            assert!(
                (got - expected).abs() <= 0.02 * expected,
                "at {fraction} K = {t:.2} s: {got:.1} segments, formula {expected:.1}"
            );
            at.push(got);
        }
        assert!(
            (at[1] - w_max).abs() <= 0.02 * w_max,
            "back to W_max near K"
        );
        assert!(at[0] - cwnd_epoch > at[1] - at[0], "concave before K");
        assert!(at[3] - at[2] > at[2] - at[1], "convex after K");
        assert!(at[3] > w_max * 1.2, "beyond W_max");
    }

    #[test]
    fn cubic_is_at_least_as_fast_as_reno_on_short_rtts() {
        let rtt = Duration::from_millis(1);
        let mut cubic = Cubic::new(MSS);
        let mut reno = NewReno::new(MSS);
        let mut delivered = [0.0; 2];
        for (i, cc) in [&mut cubic as &mut dyn CongestionControl, &mut reno]
            .into_iter()
            .enumerate()
        {
            let mut path = Path::new(rtt);
            path.grow_to(cc, 40 * MSS);
            // A loss whenever the window reaches 40 segments (a full queue), for 2000 RTTs.
            for _ in 0..2000 {
                if cc.window() >= 40 * MSS {
                    path.loss(cc);
                }
                delivered[i] += segments(cc.window());
                path.round(cc);
            }
        }
        assert!(
            delivered[0] >= delivered[1],
            "cubic {} segments, reno {}",
            delivered[0],
            delivered[1]
        );

        // In the Reno-friendly region the window follows W_est: alpha_cubic per RTT.
        let mut cc = Cubic::new(MSS);
        let mut path = Path::new(rtt);
        path.grow_to(&mut cc, 40 * MSS);
        path.loss(&mut cc);
        let start = segments(cc.window());
        for _ in 0..10 {
            path.round(&mut cc);
        }
        let grown = segments(cc.window()) - start;
        assert!(
            (grown - 10.0 * ALPHA).abs() < 0.5,
            "grew {grown:.2} segments in 10 RTTs"
        );
    }

    #[test]
    fn cubic_does_not_count_application_limited_time() {
        let mut cc = Cubic::new(MSS);
        let rtt = Duration::from_millis(50);
        let mut path = Path::new(rtt);
        path.grow_to(&mut cc, 100 * MSS);
        path.loss(&mut cc);
        path.round(&mut cc);
        let before = cc.window();
        for _ in 0..1000 {
            path.elapsed += rtt;
            cc.on_ack(MSS, Some(rtt), Some(rtt), MSS, path.now());
        }
        assert_eq!(cc.window(), before);
        path.round(&mut cc);
        assert!(
            cc.window() < before + before / 20,
            "50 s idle did not count: {before} -> {}",
            cc.window()
        );
    }

    #[test]
    fn a_timeout_drops_to_one_mss_and_slow_start_returns_to_ssthresh() {
        for mut cc in both() {
            let mut path = Path::new(Duration::from_millis(10));
            path.grow_to(cc.as_mut(), 40 * MSS);
            let window = cc.window();
            cc.on_retransmission_timeout(window, path.now());
            assert_eq!(cc.window(), MSS, "{}", cc.name());
            let ssthresh = cc.ssthresh();
            let expected = if cc.name() == "cubic" {
                window * 7 / 10
            } else {
                window / 2
            };
            assert_eq!(ssthresh, expected, "{}", cc.name());
            // A second timeout before any ACK keeps ssthresh (RFC 5681 §3.1).
            cc.on_retransmission_timeout(MSS, path.now());
            assert_eq!(
                (cc.window(), cc.ssthresh()),
                (MSS, ssthresh),
                "{}",
                cc.name()
            );
            let mut rounds = 0;
            while cc.window() < ssthresh {
                let before = cc.window();
                path.round(cc.as_mut());
                assert!(
                    cc.window() == 2 * before || cc.window() >= ssthresh,
                    "{}",
                    cc.name()
                );
                rounds += 1;
            }
            assert!(rounds <= 6, "{}", cc.name());
            assert!(
                cc.window() < ssthresh + MSS,
                "{}: slow start stops at ssthresh",
                cc.name()
            );
            for _ in 0..20 {
                path.round(cc.as_mut());
            }
            assert!(
                cc.window() > ssthresh + 5 * MSS,
                "{}: then avoidance grows it",
                cc.name()
            );
        }
    }

    #[test]
    fn a_timeout_just_after_a_congestion_event_keeps_its_ssthresh() {
        for mut cc in both() {
            let now = Instant::now();
            cc.on_congestion_event(100 * MSS, now);
            let ssthresh = cc.ssthresh();
            cc.on_retransmission_timeout(cc.window(), now);
            assert_eq!(
                (cc.window(), cc.ssthresh()),
                (MSS, ssthresh),
                "{}",
                cc.name()
            );
            cc.on_ack(MSS, None, None, MSS, now);
            cc.on_retransmission_timeout(2 * MSS, now);
            assert_eq!(
                cc.ssthresh(),
                2 * MSS,
                "{}: an ACK ended that recovery",
                cc.name()
            );
        }
    }

    #[test]
    fn cubic_after_a_timeout_probes_from_where_avoidance_starts() {
        let mut cc = Cubic::new(MSS);
        let rtt = Duration::from_millis(100);
        let mut path = Path::new(rtt);
        path.grow_to(&mut cc, 100 * MSS);
        let window = cc.window();
        cc.on_retransmission_timeout(window, path.now());
        let ssthresh = cc.ssthresh();
        path.grow_to(&mut cc, ssthresh + 1);
        let epoch = cc.epoch.expect("avoidance has started");
        let cwnd_epoch = segments(cc.ssthresh());
        assert_eq!((epoch.k, epoch.w_max), (0.0, cc.ssthresh() as f64));
        // K = 0 and W_max = cwnd_epoch: convex from the start, W_cubic(t) = cwnd_epoch + C t^3
        // (after the Reno-friendly estimate leads for the first seconds).
        for _ in 0..60 {
            path.round(&mut cc);
        }
        let t = path.since(epoch.start);
        let expected = w_cubic(t, cwnd_epoch, cwnd_epoch);
        let got = segments(cc.window());
        assert!(
            (got - expected).abs() < 0.03 * expected,
            "{got:.1} vs {expected:.1}"
        );
    }

    #[test]
    fn fast_convergence_lowers_w_max_after_a_smaller_peak() {
        let now = Instant::now();
        let mut cc = Cubic::new(MSS);
        cc.on_congestion_event(100 * MSS, now); // W_max = the initial window, 10 segments
        cc.set_cwnd(100.0 * MSS as f64);
        cc.on_congestion_event(100 * MSS, now);
        assert_eq!(cc.w_max, Some(100.0 * MSS as f64));
        cc.set_cwnd(80.0 * MSS as f64);
        cc.on_congestion_event(80 * MSS, now);
        let w_max = cc.w_max.unwrap_or(0.0);
        assert!((w_max - 80.0 * MSS as f64 * 0.85).abs() < 1e-6, "{w_max}");
    }

    #[test]
    fn set_mss_rescales_the_initial_window_only() {
        for mut cc in both() {
            let mut small = Algorithm::NewReno.build(536);
            assert_eq!(small.window(), 5360);
            small.set_mss(MSS);
            assert_eq!(small.window(), 14600);
            cc.set_mss(536);
            assert_eq!(cc.window(), 5360, "{}", cc.name());
            let now = Instant::now();
            cc.on_ack(536, None, None, cc.window(), now);
            cc.set_mss(MSS);
            assert_eq!(
                cc.window(),
                5360 + 536,
                "{}: a grown window is kept",
                cc.name()
            );
            cc.on_congestion_event(0, now);
            assert_eq!(cc.ssthresh(), 2 * MSS, "{}", cc.name());
            cc.on_retransmission_timeout(0, now);
            assert_eq!(cc.window(), MSS, "{}", cc.name());
            cc.set_mss(9000);
            assert_eq!(cc.window(), 9000, "{}: at least one segment", cc.name());
            cc.set_mss(0);
            cc.on_ack(usize::MAX, None, None, usize::MAX, now);
            cc.on_ack(usize::MAX, None, None, usize::MAX, now);
            assert!(cc.window() > 0, "{}", cc.name());
        }
    }

    #[test]
    fn algorithms_parse_and_name_themselves() {
        assert_eq!("cubic".parse(), Ok(Algorithm::Cubic));
        assert_eq!("newreno".parse(), Ok(Algorithm::NewReno));
        let err = "bbr".parse::<Algorithm>().unwrap_err();
        assert!(err.contains("bbr") && !err.contains('\n'), "{err}");
        assert_eq!(Algorithm::default(), Algorithm::Cubic);
        for a in [Algorithm::Cubic, Algorithm::NewReno] {
            assert_eq!(a.name().parse(), Ok(a));
            assert_eq!(a.to_string(), a.name());
            assert_eq!(a.build(MSS).name(), a.name());
        }
    }
}
