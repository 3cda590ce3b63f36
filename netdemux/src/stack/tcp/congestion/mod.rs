//! Congestion control behind a small trait: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).
//! Both start from the initial window of RFC 6928 and grow in slow start by the bytes
//! acknowledged (RFC 3465, L = 2); they differ in congestion avoidance and in how far they back
//! off. Windows are in bytes; time comes only from the `Instant`s passed in, so a test may drive
//! them with a virtual clock. One file per algorithm
//! ([`newreno`], [`cubic`]) beside what they share ([`controller`]).

mod controller;
mod cubic;
mod newreno;
#[cfg(test)]
mod tests;

pub use controller::{Algorithm, CongestionControl, initial_window};
pub use cubic::Cubic;
pub use newreno::NewReno;

impl Algorithm {
    /// A controller of this algorithm for segments of `mss` bytes.
    pub fn build(self, mss: usize) -> Box<dyn CongestionControl> {
        match self {
            Algorithm::Cubic => Box::new(Cubic::new(mss)),
            Algorithm::NewReno => Box::new(NewReno::new(mss)),
        }
    }
}
