//! The controllers on a virtual clock: slow start, congestion avoidance, events and timeouts,
//! each checked against the RFC's numbers.

use std::time::{Duration, Instant};

use super::{
    cubic::{ALPHA, C},
    *,
};

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
