//! TCP sequence numbers: 32-bit, compared modulo 2^32 (RFC 9293 §3.4).

use std::{cmp::Ordering, fmt, ops};

/// A sequence number. Ordering is circular: `a < b` when `b` is less than 2^31 ahead of `a`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// The distance from `earlier` to `self` (negative when `self` is before `earlier`).
    pub fn since(self, earlier: Seq) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }

    /// The later of two sequence numbers.
    pub fn max(self, other: Seq) -> Seq {
        if self >= other { self } else { other }
    }

    /// The earlier of two sequence numbers.
    pub fn min(self, other: Seq) -> Seq {
        if self <= other { self } else { other }
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some(self.since(*other).cmp(&0))
    }
}

impl ops::Add<usize> for Seq {
    type Output = Seq;
    fn add(self, n: usize) -> Seq {
        Seq(self.0.wrapping_add(n as u32))
    }
}

impl ops::AddAssign<usize> for Seq {
    fn add_assign(&mut self, n: usize) {
        *self = *self + n;
    }
}

impl ops::Sub<usize> for Seq {
    type Output = Seq;
    fn sub(self, n: usize) -> Seq {
        Seq(self.0.wrapping_sub(n as u32))
    }
}

impl ops::Sub<Seq> for Seq {
    type Output = usize;
    /// The number of bytes from `rhs` to `self`; `self` must not be before `rhs`.
    fn sub(self, rhs: Seq) -> usize {
        let d = self.since(rhs);
        debug_assert!(d >= 0, "sequence {self} is before {rhs}");
        d.max(0) as usize
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_wrap_around() {
        let a = Seq(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b.0, 9);
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 20);
        assert_eq!(b.since(a), 20);
        assert_eq!(a.since(b), -20);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert_eq!(b - 20usize, a);
    }

    #[test]
    fn half_the_space_ahead_is_later() {
        let a = Seq(5);
        assert!(a + (1 << 31) - 1usize > a);
        assert!(a + (1 << 31) + 1usize < a);
    }
}
