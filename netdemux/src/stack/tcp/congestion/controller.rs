//! What every controller shares: the [`CongestionControl`] trait the connection drives, the
//! [`Algorithm`] names, RFC 6928's initial window, and [`Base`] — the window, the threshold and
//! slow start, which both algorithms keep alike.

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
pub(super) const ABC_LIMIT: usize = 2;

/// What both controllers keep: the window, the threshold and slow start.
#[derive(Debug)]
pub(super) struct Base {
    pub(super) mss: usize,
    pub(super) cwnd: usize,
    pub(super) ssthresh: usize,
    /// The window was reduced and no new data has been acknowledged since: a timeout now does
    /// not reduce ssthresh again (RFC 5681 §3.1, on repeated retransmissions).
    pub(super) reduced: bool,
}

impl Base {
    pub(super) fn new(mss: usize) -> Self {
        let mss = mss.max(1);
        Base {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            reduced: false,
        }
    }

    pub(super) fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// Whether the window, not the application, limited what was in flight.
    pub(super) fn window_limited(&self, in_flight: usize) -> bool {
        if self.in_slow_start() {
            in_flight.saturating_mul(2) >= self.cwnd
        } else {
            in_flight.saturating_add(self.mss) > self.cwnd
        }
    }

    /// Grows the window by the bytes acknowledged, at most L*MSS and up to ssthresh; returns
    /// the acknowledged bytes left for congestion avoidance (past ssthresh).
    pub(super) fn slow_start(&mut self, acked: usize) -> usize {
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
    pub(super) fn set_ssthresh(&mut self, reduced: usize) {
        self.ssthresh = reduced.max(self.mss.saturating_mul(2));
    }

    /// Takes the new MSS: the untouched initial window becomes the new MSS's initial window,
    /// and the window never falls below one segment.
    pub(super) fn set_mss(&mut self, mss: usize) {
        let mss = mss.max(1);
        if self.ssthresh == usize::MAX && self.cwnd == initial_window(self.mss) {
            self.cwnd = initial_window(mss);
        }
        self.cwnd = self.cwnd.max(mss);
        self.mss = mss;
    }
}
