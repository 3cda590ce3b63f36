//! The statistics of the `udp` ratios: one fit at equal speed and placement, used by the full
//! run's report and by a partial run alike, and the paired median's interval. Plain functions
//! of the samples' JSON (no benchmark code), so `tests/bench_stats.rs` includes this file and
//! checks them on samples it makes.

use serde_json::Value;

/// A ratio of two receivers' rates fitted at equal speed and placement (see [`fit_at_equal`]).
#[derive(Clone, Debug)]
pub struct Fit {
    pub ratio: f64,
    /// Its 95% interval (none without a degree of freedom left).
    pub interval: Option<[f64; 2]>,
    /// The factor on both sides' rates from all far to all near (none where the placement
    /// barely varied and no slope was fitted).
    pub near_vs_far: Option<f64>,
    /// The factor on both sides' rates per ns of the speed probe (none where the samples have
    /// no probe or it did not vary).
    pub per_probe_ns: Option<f64>,
}

impl Fit {
    /// The covariates the fit used, by name.
    pub fn covariates(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.per_probe_ns.is_some() {
            c.push("speed");
        }
        if self.near_vs_far.is_some() {
            c.push("placement");
        }
        c
    }
}

/// The least within-side sum of squares of the samples' near shares that identifies a slope:
/// two all-far samples of eight on one side give 1.5; one of eight samples a twentieth short of
/// all near (run 1796241496's bare consumer) 0.002.
pub const MIN_PLACEMENT_SPREAD: f64 = 0.5;

/// The ratio of side `a`'s rates to side `b`'s (received Mpps) at equal speed and placement:
/// both sides' log rates by least squares, with one intercept each and common slopes on the
/// sample's speed probe (`speed_ns`, the mean of the probe before and after it) and on its near
/// share (`near_share`); the ratio is the difference of the intercepts, with its 95% interval
/// from the fit's standard error and Student's t. A covariate the samples do not all record
/// (results from before the speed probe) or that did not vary within the sides is left out;
/// the near share also where it barely varied (less than [`MIN_PLACEMENT_SPREAD`]): one or two
/// samples off by a few bursts would set its slope. With neither, the ratio is that of the
/// sides' geometric means. `None` for samples without rates or near shares, or an empty side.
pub fn fit_at_equal(a: &[Value], b: &[Value]) -> Option<Fit> {
    let speed = |s: &Value| -> Option<f64> {
        let probe = s["speed_ns"].as_array().filter(|p| !p.is_empty())?;
        Some(probe.iter().map(Value::as_f64).sum::<Option<f64>>()? / probe.len() as f64)
    };
    // Rows: [side a, side b, speed, near share] and the log rate.
    let row = |s: &Value, side: f64| -> Option<([f64; 4], f64)> {
        let rate = s["received_mpps"].as_f64().filter(|&r| r > 0.0)?;
        Some((
            [
                side,
                1.0 - side,
                speed(s).unwrap_or(f64::NAN),
                s["near_share"].as_f64()?,
            ],
            rate.ln(),
        ))
    };
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let rows: Vec<([f64; 4], f64)> = a
        .iter()
        .map(|s| row(s, 1.0))
        .chain(b.iter().map(|s| row(s, 0.0)))
        .collect::<Option<_>>()?;
    // Each covariate's sum of squares within the sides (about each side's mean).
    let within = |i: usize| -> f64 {
        [1.0, 0.0]
            .iter()
            .map(|&side| {
                let v: Vec<f64> = rows
                    .iter()
                    .filter(|(x, _)| x[0] == side)
                    .map(|(x, _)| x[i])
                    .collect();
                let m = v.iter().sum::<f64>() / v.len() as f64;
                v.iter().map(|x| (x - m).powi(2)).sum::<f64>()
            })
            .sum()
    };
    let speed_used = rows.iter().all(|(x, _)| x[2].is_finite()) && within(2) > 1e-12;
    let near_used = within(3) >= MIN_PLACEMENT_SPREAD;
    let keep: Vec<usize> = [0, 1]
        .into_iter()
        .chain(speed_used.then_some(2))
        .chain(near_used.then_some(3))
        .collect();
    let k = keep.len();
    let mut xtx = vec![vec![0.0; k]; k];
    let mut xty = vec![0.0; k];
    for (x, y) in &rows {
        for (i, &p) in keep.iter().enumerate() {
            xty[i] += x[p] * y;
            for (j, &q) in keep.iter().enumerate() {
                xtx[i][j] += x[p] * x[q];
            }
        }
    }
    let inverse = invert(xtx)?;
    let beta: Vec<f64> = (0..k)
        .map(|i| (0..k).map(|j| inverse[i][j] * xty[j]).sum())
        .collect();
    let rss: f64 = rows
        .iter()
        .map(|(x, y)| {
            let fit: f64 = keep.iter().zip(&beta).map(|(&p, b)| b * x[p]).sum();
            (y - fit).powi(2)
        })
        .sum();
    let diff = beta[0] - beta[1];
    let dof = rows.len().saturating_sub(k);
    let interval = (dof > 0).then(|| {
        let var = rss / dof as f64;
        let se = (var * (inverse[0][0] + inverse[1][1] - 2.0 * inverse[0][1]))
            .max(0.0)
            .sqrt();
        let t = t_975(dof);
        [(diff - t * se).exp(), (diff + t * se).exp()]
    });
    let slope = |p: usize| keep.iter().position(|&q| q == p).map(|i| beta[i].exp());
    Some(Fit {
        ratio: diff.exp(),
        interval,
        near_vs_far: slope(3),
        per_probe_ns: slope(2),
    })
}

/// Student's t, 97.5th percentile, for `dof` degrees of freedom: exact to three decimals up to
/// ten, then the Cornish–Fisher expansion in 1/dof (2.225 for ten against 2.228 exact, 2.042 for
/// thirty, 1.99 for eighty).
pub fn t_975(dof: usize) -> f64 {
    const T: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    if dof <= 10 {
        return T[dof.max(1) - 1];
    }
    let (z, n) = (1.959_964_f64, dof as f64);
    z + (z.powi(3) + z) / (4.0 * n)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
}

/// The inverse of a small square matrix (Gauss–Jordan with partial pivoting); `None` when it
/// is singular.
pub fn invert(mut m: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for c in 0..n {
        let p = (c..n).max_by(|&x, &y| m[x][c].abs().total_cmp(&m[y][c].abs()))?;
        if m[p][c].abs() < 1e-12 {
            return None;
        }
        m.swap(c, p);
        inv.swap(c, p);
        let d = m[c][c];
        for j in 0..n {
            m[c][j] /= d;
            inv[c][j] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = m[r][c];
                for j in 0..n {
                    m[r][j] -= f * m[c][j];
                    inv[r][j] -= f * inv[c][j];
                }
            }
        }
    }
    Some(inv)
}

/// The median of `v` and, from six values on, a 95% interval for it, distribution-free: the
/// order statistics of ranks n/2 ∓ 0.98·√n, as a sign test takes them (for eight values, the
/// lowest and the highest). `None` for no values.
pub fn median_interval(v: &[f64]) -> Option<(f64, Option<[f64; 2]>)> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    if n < 6 {
        return Some((median, None));
    }
    let half = 0.98 * (n as f64).sqrt();
    // 1-based ranks floor(n/2 - half) and ceil(n/2 + 1 + half), as 0-based indices.
    let lo = ((n as f64 / 2.0 - half).floor() as usize).clamp(1, n) - 1;
    let hi = ((n as f64 / 2.0 + 1.0 + half).ceil() as usize).clamp(1, n) - 1;
    Some((median, Some([v[lo], v[hi]])))
}
