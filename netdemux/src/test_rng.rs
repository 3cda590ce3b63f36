//! Xorshift generators for the unit tests' seeded pseudo-random inputs (Marsaglia, 2003): one
//! copy for every test that wants bytes that are arbitrary but the same on every run.

/// 64-bit xorshift (shifts 13, 7, 17).
pub struct Xorshift64(u64);

impl Xorshift64 {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Xorshift64(seed)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
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
    pub fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}
