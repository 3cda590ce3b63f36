//! Fault injection for tests (`netdemux run --fault-loss/--fault-reorder`): a seeded share of
//! the TCP segments of the built-in services is dropped, and another share held back and
//! delivered after the next one (reordered), in both directions. Off unless asked for.

/// How much to disturb.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Share of segments dropped, 0.0-1.0.
    pub loss: f64,
    /// Share of segments delivered after the next one, 0.0-1.0.
    pub reorder: f64,
    /// Seed of the generator.
    pub seed: u64,
}

impl FaultConfig {
    /// True when nothing is disturbed.
    pub fn is_off(&self) -> bool {
        self.loss <= 0.0 && self.reorder <= 0.0
    }
}

/// What happens to one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Goes through.
    Pass,
    /// Is dropped.
    Drop,
    /// Is held and goes after the next segment.
    Hold,
}

/// A seeded decider.
#[derive(Debug)]
pub struct Faults {
    cfg: FaultConfig,
    state: u64,
    /// Segments dropped.
    pub dropped: u64,
    /// Segments held back.
    pub reordered: u64,
}

impl Faults {
    /// Faults as configured, or `None` when off.
    pub fn new(cfg: FaultConfig) -> Option<Faults> {
        (!cfg.is_off()).then(|| Faults {
            cfg,
            state: cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            dropped: 0,
            reordered: 0,
        })
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        ((self.state >> 11) as f64) / ((1u64 << 53) as f64)
    }

    /// The fate of the next segment.
    pub fn fate(&mut self) -> Fate {
        let x = self.uniform();
        if x < self.cfg.loss {
            self.dropped += 1;
            Fate::Drop
        } else if x < self.cfg.loss + self.cfg.reorder {
            self.reordered += 1;
            Fate::Hold
        } else {
            Fate::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_come_out_as_configured() {
        assert!(Faults::new(FaultConfig::default()).is_none());
        let mut f = Faults::new(FaultConfig {
            loss: 0.02,
            reorder: 0.03,
            seed: 7,
        })
        .unwrap();
        let fates: Vec<Fate> = (0..100_000).map(|_| f.fate()).collect();
        let share = |fate| fates.iter().filter(|&&x| x == fate).count() as f64 / 1e5;
        assert!((share(Fate::Drop) - 0.02).abs() < 0.003);
        assert!((share(Fate::Hold) - 0.03).abs() < 0.003);
        assert_eq!(
            f.dropped as usize + f.reordered as usize,
            fates.len() - fates.iter().filter(|&&x| x == Fate::Pass).count()
        );
    }
}
