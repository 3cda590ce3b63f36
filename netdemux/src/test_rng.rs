//! Xorshift generators for seeded pseudo-random inputs (Marsaglia, 2003): one copy for every
//! unit test, integration test and benchmark (feature `testbed`) that wants values that are
//! arbitrary but the same on every run.

/// 64-bit xorshift (shifts 13, 7, 17).
pub struct Xorshift64(u64);

impl Xorshift64 {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Xorshift64(seed)
    }

    /// The next value.
    #[allow(
        clippy::should_implement_trait,
        reason = "an endless generator: an Iterator's Option would only be unwrapped"
    )]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `out` filled with the low bytes of the next values.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next() as u8;
        }
    }

    /// The low bytes of the next `n` values.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// 32-bit xorshift (shifts 13, 17, 5).
pub struct Xorshift32(u32);

impl Xorshift32 {
    /// A generator from a non-zero seed.
    pub fn new(seed: u32) -> Self {
        Xorshift32(seed)
    }

    /// The next value.
    #[allow(
        clippy::should_implement_trait,
        reason = "an endless generator: an Iterator's Option would only be unwrapped"
    )]
    pub fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}
