//! The `udp` benchmark's statistics (`benches/support/stats.rs`, included here as it is): the
//! fit at equal speed and placement that the report and a partial run print, and the paired
//! median's interval, checked on samples made with known effects. No root needed.

#[path = "../benches/support/stats.rs"]
#[allow(dead_code, reason = "the benchmarks use all of it, these tests a part")]
mod stats;

use serde_json::{Value, json};
use stats::{fit_at_equal, median_interval, t_975};

/// A sample of `rate` Mpps, its speed probe (`None`: a result from before the probe) and near
/// share.
fn sample(rate: f64, speed: Option<f64>, near: f64) -> Value {
    match speed {
        Some(ns) => json!({"received_mpps": rate, "speed_ns": [ns, ns], "near_share": near}),
        None => json!({"received_mpps": rate, "near_share": near}),
    }
}

/// A small deterministic disturbance (±1%), so the fit has residuals to estimate its error from.
fn wobble(i: usize) -> f64 {
    1.0 + 0.01 * ((i * 7919 % 13) as f64 / 6.0 - 1.0)
}

/// Rates that fall 4% per ns of the probe and 1.3x from all far to all near, around a true
/// ratio of 0.9: side a met the slow host more often than side b.
fn sides(with_probe: bool) -> (Vec<Value>, Vec<Value>) {
    let rate = |base: f64, ns: f64, near: f64, i: usize| {
        base * (-0.04 * ns).exp() * 1.3f64.powf(near) * wobble(i)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..40 {
        // Side a slow (13 ns) in three repetitions of four, side b in one of four.
        let ns_a = if i % 4 == 0 { 9.0 } else { 13.0 };
        let ns_b = if i % 4 == 3 { 13.0 } else { 9.0 };
        let near = if i % 5 == 0 { 0.0 } else { 1.0 };
        let probe = |ns: f64| with_probe.then_some(ns);
        a.push(sample(rate(4.5, ns_a, near, i), probe(ns_a), near));
        b.push(sample(rate(5.0, ns_b, near, i + 17), probe(ns_b), near));
    }
    (a, b)
}

#[test]
fn the_fit_takes_the_speed_out_of_a_ratio_whose_sides_met_different_speeds() {
    let (a, b) = sides(true);
    let fit = fit_at_equal(&a, &b).expect("a fit");
    assert!((fit.ratio - 0.9).abs() < 0.01, "{fit:?}");
    let [lo, hi] = fit.interval.expect("an interval");
    assert!(lo < 0.9 && 0.9 < hi && hi - lo < 0.05, "{fit:?}");
    assert_eq!(fit.covariates(), ["speed", "placement"]);
    let per_ns = fit.per_probe_ns.expect("a speed slope");
    assert!((per_ns - (-0.04f64).exp()).abs() < 0.005, "{fit:?}");
    let near = fit.near_vs_far.expect("a placement slope");
    assert!((near - 1.3).abs() < 0.02, "{fit:?}");
    // Without the probe the same rates give the geometric means' ratio, off by the speeds:
    // side a ran 2 ns slower on average, 8% (what the probe is for).
    let (a, b) = sides(false);
    let blind = fit_at_equal(&a, &b).expect("a fit");
    assert_eq!(blind.covariates(), ["placement"]);
    assert!(
        (blind.ratio - 0.9 * (-0.04f64 * 2.0).exp()).abs() < 0.01,
        "{blind:?}"
    );
}

#[test]
fn a_placement_that_barely_varied_gets_no_slope() {
    // One sample of eight a twentieth short of all near, its rate far off: a slope fitted on it
    // would swing the ratio; without one the ratio is the geometric means'.
    let a: Vec<Value> = (0..8)
        .map(|i| {
            sample(
                if i == 0 { 2.0 } else { 4.0 },
                None,
                if i == 0 { 0.95 } else { 1.0 },
            )
        })
        .collect();
    let b: Vec<Value> = (0..8).map(|_| sample(5.0, None, 1.0)).collect();
    let fit = fit_at_equal(&a, &b).expect("a fit");
    assert!(fit.covariates().is_empty(), "{fit:?}");
    let geometric = (2.0f64.ln() + 7.0 * 4.0f64.ln()) / 8.0 - 5.0f64.ln();
    assert!((fit.ratio - geometric.exp()).abs() < 1e-9, "{fit:?}");
}

#[test]
fn the_fit_refuses_samples_it_cannot_use() {
    let good: Vec<Value> = (0..4)
        .map(|i| sample(4.0, Some(9.0 + f64::from(i)), 1.0))
        .collect();
    assert!(fit_at_equal(&[], &good).is_none());
    let no_rate = vec![json!({"near_share": 1.0}); 4];
    assert!(fit_at_equal(&no_rate, &good).is_none());
    let no_share = vec![json!({"received_mpps": 4.0}); 4];
    assert!(fit_at_equal(&no_share, &good).is_none());
    // One side with the probe and one without: the speed is left out, not half-used.
    let old = vec![sample(4.0, None, 1.0); 4];
    let fit = fit_at_equal(&old, &good).expect("a fit on the rest");
    assert_eq!(fit.per_probe_ns, None);
}

#[test]
fn students_t_matches_the_tables() {
    for (dof, t) in [
        (1, 12.706),
        (10, 2.228),
        (12, 2.179),
        (30, 2.042),
        (76, 1.992),
    ] {
        assert!((t_975(dof) - t).abs() < 0.004, "t({dof}) = {}", t_975(dof));
    }
    assert!((t_975(100_000) - 1.960).abs() < 0.001);
}

#[test]
fn the_medians_interval_is_from_the_order_statistics() {
    assert_eq!(median_interval(&[]), None);
    assert_eq!(median_interval(&[3.0, 1.0, 2.0]), Some((2.0, None)));
    // Eight values: the 95% interval of the median spans the lowest to the highest.
    let eight = [5.0, 1.0, 8.0, 3.0, 2.0, 7.0, 4.0, 6.0];
    assert_eq!(median_interval(&eight), Some((4.5, Some([1.0, 8.0]))));
    // Forty: ranks 13 and 28 (1-based).
    let forty: Vec<f64> = (1..=40).rev().map(f64::from).collect();
    assert_eq!(median_interval(&forty), Some((20.5, Some([13.0, 28.0]))));
}
