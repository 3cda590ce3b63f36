//! The send side's bytes: what the application wrote and the peer has not acknowledged yet
//! (sent or not), in a ring that grows on demand up to its limit, charging the memory budget,
//! and gives its memory back when it empties under pressure.

use std::sync::Arc;

use super::memory::MemoryBudget;

/// The smallest ring allocated.
const MIN_RING: usize = 4096;
/// Under memory pressure a ring grows no further than this (a few segments, as Linux clamps
/// its buffers to a few MSS then).
pub const PRESSURE_RING: usize = 8192;

/// Bytes from SND.UNA onwards: first the ones in flight, then the ones not sent yet.
#[derive(Debug)]
pub struct SendBuffer {
    ring: Box<[u8]>,
    head: usize,
    len: usize,
    limit: usize,
    budget: Arc<MemoryBudget>,
}

impl SendBuffer {
    /// A buffer of at most `limit` bytes, charging `budget` as it grows (nothing allocated yet).
    pub fn new(limit: usize, budget: Arc<MemoryBudget>) -> Self {
        SendBuffer {
            ring: Box::new([]),
            head: 0,
            len: 0,
            limit,
            budget,
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated.
    pub fn allocated(&self) -> usize {
        self.ring.len()
    }

    /// How much [`SendBuffer::write`] takes now: room in the ring and what it may still grow
    /// by, within the limit.
    pub fn space(&self) -> usize {
        let growth = self
            .growth_cap()
            .saturating_sub(self.ring.len())
            .min(self.budget.available());
        (self.ring.len() - self.len + growth).min(self.limit - self.len)
    }

    /// The largest ring the budget's state allows.
    fn growth_cap(&self) -> usize {
        if self.budget.under_pressure() {
            self.limit.min(PRESSURE_RING.max(self.ring.len()))
        } else {
            self.limit
        }
    }

    /// Grows the ring to hold `needed` bytes if the limit and the budget allow; true when it
    /// holds them.
    fn reserve(&mut self, needed: usize) -> bool {
        if needed <= self.ring.len() {
            return true;
        }
        let cap = self.growth_cap();
        if needed > cap {
            return false;
        }
        let target = needed
            .next_power_of_two()
            .max(MIN_RING)
            .min(cap)
            .max(needed);
        let grow = |target: usize, budget: &MemoryBudget, current: usize| {
            budget.try_take(target - current).then_some(target)
        };
        let Some(target) = grow(target, &self.budget, self.ring.len())
            .or_else(|| grow(needed, &self.budget, self.ring.len()))
        else {
            return false;
        };
        let mut ring = vec![0u8; target].into_boxed_slice();
        let [a, b] = self.slices(0, self.len);
        ring[..a.len()].copy_from_slice(a);
        ring[a.len()..a.len() + b.len()].copy_from_slice(b);
        // The growth was taken; the old ring's bytes stay charged, now to the new one.
        self.ring = ring;
        self.head = 0;
        true
    }

    /// Appends as much of `bytes` as fits ([`SendBuffer::space`]); returns how much.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.space());
        if n == 0 || !self.reserve(self.len + n) {
            return 0;
        }
        self.copy_in(&bytes[..n]);
        n
    }

    /// Appends all of `bytes`, or nothing (false) when they do not fit.
    pub fn write_all(&mut self, bytes: &[u8]) -> bool {
        if self.len + bytes.len() > self.limit || !self.reserve(self.len + bytes.len()) {
            return false;
        }
        self.copy_in(bytes);
        true
    }

    fn copy_in(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let cap = self.ring.len();
        let at = (self.head + self.len) % cap;
        let first = bytes.len().min(cap - at);
        self.ring[at..at + first].copy_from_slice(&bytes[..first]);
        self.ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.len += bytes.len();
    }

    /// The `len` bytes starting `offset` bytes after SND.UNA, as (up to) two slices; shorter
    /// when fewer bytes are held.
    pub fn slices(&self, offset: usize, len: usize) -> [&[u8]; 2] {
        let end = (offset + len).min(self.len);
        let offset = offset.min(end);
        if offset == end {
            return [&[], &[]];
        }
        let cap = self.ring.len();
        let start = (self.head + offset) % cap;
        let n = end - offset;
        let first = n.min(cap - start);
        [&self.ring[start..start + first], &self.ring[..n - first]]
    }

    /// Drops `n` acknowledged bytes from the front; an emptied ring goes back to the budget
    /// when it is under pressure.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        self.head = (self.head + n) % self.ring.len();
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
            if self.budget.under_pressure() {
                self.release();
            }
        }
    }

    fn release(&mut self) {
        self.budget.give_back(self.ring.len());
        self.ring = Box::new([]);
    }
}

impl Drop for SendBuffer {
    fn drop(&mut self) {
        self.budget.give_back(self.ring.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(s: [&[u8]; 2]) -> Vec<u8> {
        [s[0], s[1]].concat()
    }

    fn unlimited(limit: usize) -> SendBuffer {
        SendBuffer::new(limit, Arc::new(MemoryBudget::unlimited()))
    }

    #[test]
    fn slices_across_the_wrap() {
        let mut b = unlimited(8);
        assert_eq!(b.write(b"abcdef"), 6);
        b.consume(5);
        assert_eq!(b.write(b"ghijklmn"), 7);
        assert_eq!(b.space(), 0);
        assert_eq!(joined(b.slices(0, 8)), b"fghijklm");
        assert_eq!(joined(b.slices(2, 3)), b"hij");
        assert_eq!(joined(b.slices(6, 10)), b"lm");
        assert_eq!(joined(b.slices(9, 1)), b"");
    }

    #[test]
    fn it_grows_on_demand_keeping_the_bytes_and_charges_the_budget() {
        let budget = Arc::new(MemoryBudget::new(1 << 20));
        let mut b = SendBuffer::new(100_000, budget.clone());
        assert_eq!(
            (b.allocated(), budget.used()),
            (0, 0),
            "nothing until written"
        );
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(b.write(&data[..3000]), 3000);
        assert_eq!(b.allocated(), 4096);
        b.consume(1000);
        assert_eq!(b.write(&data[3000..]), 47_000);
        assert_eq!(b.allocated(), 65536);
        assert_eq!(budget.used(), 65536);
        assert_eq!(joined(b.slices(0, 49_000)), &data[1000..]);
        drop(b);
        assert_eq!(budget.used(), 0, "given back");
    }

    #[test]
    fn the_budget_bounds_it_and_write_all_takes_all_or_nothing() {
        let budget = Arc::new(MemoryBudget::new(10_000));
        let mut b = SendBuffer::new(100_000, budget.clone());
        // Past three quarters of the budget the ring stops at a few segments' worth.
        assert!(budget.try_take(8000));
        assert!(b.space() <= 2000);
        assert!(!b.write_all(&[7; 3000]));
        assert_eq!(b.len(), 0);
        assert_eq!(b.write(&[7; 3000]), 2000, "what the budget has left");
        assert_eq!(budget.used(), 10_000);
        b.consume(2000);
        assert_eq!(budget.used(), 8000, "emptied under pressure: given back");
        budget.give_back(8000);
        assert!(b.write_all(&[7; 3000]));
    }
}
