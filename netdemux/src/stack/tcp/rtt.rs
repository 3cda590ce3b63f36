//! The retransmission timer (RFC 6298): a smoothed round-trip time and its variation from the
//! measurements, the timeout derived from them, and its exponential backoff after timeouts.

use std::time::Duration;

/// The timeout before the first measurement (RFC 6298 §2.1).
pub const INITIAL_RTO: Duration = Duration::from_secs(1);
/// The largest timeout, backoff included (RFC 6298 §2.5: at least 60 s).
pub const MAX_RTO: Duration = Duration::from_secs(60);
/// The clock granularity G (RFC 6298 §2.3).
pub const GRANULARITY: Duration = Duration::from_millis(1);

/// Round-trip time estimate and retransmission timeout (RFC 6298), with exponential backoff.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The timeout without backoff.
    rto: Duration,
    min_rto: Duration,
    backoffs: u32,
    min_rtt: Option<Duration>,
}

impl RttEstimator {
    /// Initial RTO 1 s (RFC 6298 2.1), lower bound `min_rto` (Linux uses 200 ms; netdemux passes
    /// that), upper bound 60 s.
    pub fn new(min_rto: Duration) -> Self {
        let min_rto = min_rto.min(MAX_RTO);
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO.max(min_rto),
            min_rto,
            backoffs: 0,
            min_rtt: None,
        }
    }

    /// A measurement (Karn's rule is the caller's: never from a retransmitted segment).
    /// First sample: SRTT=R, RTTVAR=R/2; later alpha 1/8, beta 1/4; RTO = SRTT + max(G,
    /// 4*RTTVAR) with G = 1 ms; clamp to bounds. Resets the backoff.
    pub fn sample(&mut self, rtt: Duration) {
        let (srtt, rttvar) = match self.srtt {
            None => (rtt, rtt / 2),
            Some(srtt) => Self::smooth(srtt, self.rttvar, rtt),
        };
        self.srtt = Some(srtt);
        self.rttvar = rttvar;
        let rto = srtt.saturating_add(GRANULARITY.max(rttvar.saturating_mul(4)));
        self.rto = rto.max(self.min_rto).min(MAX_RTO);
        self.backoffs = 0;
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
    }

    /// The current timeout, backoff applied (doubling per backoff, capped at the upper bound).
    pub fn rto(&self) -> Duration {
        let factor = 1u32.checked_shl(self.backoffs).unwrap_or(u32::MAX);
        self.rto.saturating_mul(factor).min(MAX_RTO)
    }

    /// Doubles the timeout after a retransmission timeout (RFC 6298 5.5).
    pub fn backoff(&mut self) {
        self.backoffs = self.backoffs.saturating_add(1);
    }

    /// How many times backed off since the last sample.
    pub fn backoffs(&self) -> u32 {
        self.backoffs
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The round-trip time variation (zero before the first measurement).
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The minimum RTT seen (for congestion control).
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// RFC 6298 §2.3: RTTVAR from the old SRTT first, then SRTT; returns both.
    fn smooth(srtt: Duration, rttvar: Duration, rtt: Duration) -> (Duration, Duration) {
        let rttvar = (rttvar - rttvar / 4).saturating_add(srtt.abs_diff(rtt) / 4);
        let srtt = (srtt - srtt / 8).saturating_add(rtt / 8);
        (srtt, rttvar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn before_a_sample_the_timeout_is_one_second() {
        let r = RttEstimator::new(ms(200));
        assert_eq!(r.rto(), Duration::from_secs(1));
        assert_eq!(r.srtt(), None);
        assert_eq!(r.rttvar(), Duration::ZERO);
        assert_eq!(r.min_rtt(), None);
        assert_eq!(
            RttEstimator::new(ms(1500)).rto(),
            ms(1500),
            "min_rto above 1 s"
        );
        assert_eq!(RttEstimator::new(Duration::MAX).rto(), MAX_RTO);
    }

    #[test]
    fn samples_follow_the_rfc_formulas() {
        let mut r = RttEstimator::new(ms(200));
        // R = 100 ms: SRTT = 100, RTTVAR = 50, RTO = 100 + 4*50 = 300.
        r.sample(ms(100));
        assert_eq!(
            (r.srtt(), r.rttvar(), r.rto()),
            (Some(ms(100)), ms(50), ms(300))
        );
        // R = 200 ms: RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5;
        // RTO = 112.5 + 4*62.5 = 362.5.
        r.sample(ms(200));
        assert_eq!(r.rttvar(), us(62_500));
        assert_eq!(r.srtt(), Some(us(112_500)));
        assert_eq!(r.rto(), us(362_500));
        // R = 50 ms: RTTVAR = 3/4*62.5 + 1/4*|112.5-50| = 62.5; SRTT = 7/8*112.5 + 1/8*50
        // = 104.6875; RTO = 104.6875 + 250 = 354.6875.
        r.sample(ms(50));
        assert_eq!(r.rttvar(), us(62_500));
        assert_eq!(r.srtt(), Some(Duration::from_nanos(104_687_500)));
        assert_eq!(r.rto(), Duration::from_nanos(354_687_500));
        assert_eq!(r.min_rtt(), Some(ms(50)));
    }

    #[test]
    fn the_timeout_stays_within_its_bounds() {
        let mut r = RttEstimator::new(ms(200));
        r.sample(us(10));
        assert_eq!(r.rto(), ms(200), "lower bound");
        r.sample(Duration::from_secs(100));
        assert_eq!(r.rto(), MAX_RTO, "upper bound");
        let mut huge = RttEstimator::new(ms(200));
        huge.sample(Duration::MAX);
        huge.sample(Duration::MAX);
        huge.sample(Duration::ZERO);
        assert_eq!(huge.rto(), MAX_RTO);
        assert_eq!(huge.min_rtt(), Some(Duration::ZERO));
    }

    #[test]
    fn the_variation_term_is_at_least_the_clock_granularity() {
        let mut r = RttEstimator::new(Duration::ZERO);
        for _ in 0..100 {
            r.sample(us(10));
        }
        assert_eq!(r.srtt(), Some(us(10)));
        assert!(r.rttvar() * 4 < GRANULARITY);
        assert_eq!(r.rto(), us(10) + GRANULARITY);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_a_sample_resets_it() {
        let mut r = RttEstimator::new(ms(200));
        r.sample(ms(100));
        assert_eq!(r.rto(), ms(300));
        r.backoff();
        assert_eq!((r.rto(), r.backoffs()), (ms(600), 1));
        r.backoff();
        assert_eq!(r.rto(), ms(1200));
        for _ in 0..100 {
            r.backoff();
        }
        assert_eq!(r.rto(), MAX_RTO);
        assert_eq!(r.backoffs(), 102);
        r.sample(ms(100));
        assert_eq!(r.backoffs(), 0);
        assert!(
            r.rto() < ms(300),
            "a steady sample shrinks RTTVAR: {:?}",
            r.rto()
        );
        let mut fresh = RttEstimator::new(ms(200));
        fresh.backoff();
        assert_eq!(
            fresh.rto(),
            Duration::from_secs(2),
            "the initial timeout backs off too"
        );
    }
}
