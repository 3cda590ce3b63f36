//! The receive buffer: a ring holding the in-order bytes the application has not read yet, and,
//! in the space after them (the receive window), the pieces that arrived out of order (RFC 9293
//! §3.10.7.4), as a bounded list of ranges reported by SACK (RFC 2018). The ring grows on
//! demand up to the buffer's limit, charging the memory budget (under pressure only to a few
//! segments' worth), and goes back to the budget when it empties under pressure; bytes that
//! find no room are not stored (counted as memory cuts).

use std::{fmt, sync::Arc};

use super::{memory::MemoryBudget, send_buffer::PRESSURE_RING};

/// The smallest ring allocated.
const MIN_RING: usize = 4096;

/// The receive side's bytes: a ring holding the contiguous data the application has not read
/// yet, followed by out-of-order pieces waiting for the gap before them.
pub struct RecvBuffer {
    ring: Box<[u8]>,
    /// The most bytes it holds (the window when nothing waits).
    limit: usize,
    budget: Arc<MemoryBudget>,
    /// Inserts cut short because the ring could not grow.
    memory_cuts: u64,
    /// Ring index of the first readable byte.
    head: usize,
    /// Contiguous bytes ready for the application.
    readable: usize,
    /// Stream position (bytes ever made contiguous, wrapping) of the end of the contiguous data.
    end: u64,
    /// Out-of-order ranges: sorted, disjoint, never touching each other or the contiguous end.
    held: Vec<Held>,
    max_ranges: usize,
    /// The last change stamp handed out; a larger stamp is a more recent change.
    stamp: u64,
}

/// Why an out-of-order piece was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Keeping it would need more out-of-order ranges than allowed.
    TooManyRanges,
    /// The memory budget has no room for it.
    NoMemory,
}

/// An out-of-order range, in stream positions, with the stamp of its last change.
#[derive(Clone, Copy, Debug)]
struct Held {
    start: u64,
    end: u64,
    stamp: u64,
}

impl RecvBuffer {
    /// A buffer of at most `capacity` bytes keeping at most `max_ranges` out-of-order ranges
    /// (e.g. 32), with no memory budget to answer to.
    pub fn new(capacity: usize, max_ranges: usize) -> Self {
        Self::with_budget(capacity, max_ranges, Arc::new(MemoryBudget::unlimited()))
    }

    /// A buffer of at most `capacity` bytes charging `budget` as it grows (nothing allocated
    /// yet).
    pub fn with_budget(capacity: usize, max_ranges: usize, budget: Arc<MemoryBudget>) -> Self {
        // Ranges are at least a byte long with gaps between them and before the first: no more
        // than capacity / 2 fit in the window, whatever `max_ranges` says.
        let max_ranges = max_ranges.min(capacity / 2);
        RecvBuffer {
            ring: Box::new([]),
            limit: capacity,
            budget,
            memory_cuts: 0,
            head: 0,
            readable: 0,
            end: 0,
            held: Vec::with_capacity(max_ranges),
            max_ranges,
            stamp: 0,
        }
    }

    /// The most bytes it holds.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// Bytes allocated.
    pub fn allocated(&self) -> usize {
        self.ring.len()
    }

    /// Inserts cut short (or refused) because the memory budget had no room.
    pub fn memory_cuts(&self) -> u64 {
        self.memory_cuts
    }

    /// True when the memory budget is under pressure (windows stop growing).
    pub fn under_pressure(&self) -> bool {
        self.budget.under_pressure()
    }

    /// True when the budget it charges is all but used up (less than a sixteenth left).
    pub fn memory_exhausted(&self) -> bool {
        let b = &self.budget;
        b.nearly_exhausted(b.limit() / 16)
    }

    /// Contiguous bytes ready for the application.
    pub fn readable(&self) -> usize {
        self.readable
    }

    /// Bytes that may still arrive after the contiguous data: capacity - readable (the most
    /// window to advertise).
    pub fn window(&self) -> usize {
        self.limit - self.readable
    }

    /// Stores `data` that starts `offset` bytes after the end of the contiguous data (0 = in
    /// order). Bytes beyond the window are cut off; bytes already held are rewritten harmlessly
    /// (same data). Returns how many bytes became contiguous (how far rcv_nxt advances), or Err
    /// when the piece is out of order and keeping it would need more than max_ranges ranges
    /// (nothing is stored then). An in-order piece (offset 0) is always accepted (it may merge
    /// ranges, never needs a new one).
    pub fn insert(&mut self, offset: usize, data: &[u8]) -> Result<usize, Refused> {
        let window = self.window();
        if offset >= window || data.is_empty() {
            return Ok(0);
        }
        let data = &data[..data.len().min(window - offset)];
        let needed = self.readable + offset + data.len();
        if needed > self.ring.len() && !self.reserve(needed) {
            // What fits in the ring as it is, the rest is cut (the peer sends it again).
            self.memory_cuts += 1;
            let room = self.ring.len() - self.readable;
            if offset >= room {
                return if offset == 0 {
                    Ok(0)
                } else {
                    Err(Refused::NoMemory)
                };
            }
            let data = &data[..data.len().min(room - offset)];
            return self.store(offset, data);
        }
        self.store(offset, data)
    }

    fn store(&mut self, offset: usize, data: &[u8]) -> Result<usize, Refused> {
        if offset == 0 {
            Ok(self.insert_in_order(data))
        } else {
            self.insert_out_of_order(offset, data).map(|()| 0)
        }
    }

    /// Grows the ring to hold `needed` bytes after the head if the limit and the budget allow
    /// (under pressure only to a few segments' worth); true when it does.
    fn reserve(&mut self, needed: usize) -> bool {
        let cap = if self.budget.under_pressure() {
            self.limit.min(PRESSURE_RING.max(self.ring.len()))
        } else {
            self.limit
        };
        if needed > cap {
            return false;
        }
        let current = self.ring.len();
        let target = needed
            .next_power_of_two()
            .max(MIN_RING)
            .min(cap)
            .max(needed);
        let Some(target) = [target, needed]
            .into_iter()
            .find(|&t| self.budget.try_take(t - current))
        else {
            return false;
        };
        // Everything up to the end of the last held range moves to the front of the new ring.
        let extent = self.readable + self.held.last().map_or(0, |h| self.offset(h.end));
        let mut ring = vec![0u8; target].into_boxed_slice();
        if current > 0 {
            let first = extent.min(current - self.head);
            ring[..first].copy_from_slice(&self.ring[self.head..self.head + first]);
            ring[first..extent].copy_from_slice(&self.ring[..extent - first]);
        }
        // The growth was taken; the old ring's bytes stay charged, now to the new one.
        self.ring = ring;
        self.head = 0;
        true
    }

    /// Copies up to out.len() readable bytes into `out` and frees them; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let (first, second) = self.peek();
        let n = out.len().min(first.len() + second.len());
        let from_first = n.min(first.len());
        out[..from_first].copy_from_slice(&first[..from_first]);
        out[from_first..n].copy_from_slice(&second[..n - from_first]);
        self.consume(n);
        n
    }

    /// The readable bytes as (up to) two slices, without freeing them.
    pub fn peek(&self) -> (&[u8], &[u8]) {
        let first = self.readable.min(self.ring.len() - self.head);
        (
            &self.ring[self.head..self.head + first],
            &self.ring[..self.readable - first],
        )
    }

    /// Frees `n` readable bytes (n <= readable(); more frees all of them).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.readable);
        self.head = self.wrap(self.head + n);
        self.readable -= n;
        if self.readable == 0 && self.held.is_empty() {
            self.head = 0;
            if self.budget.under_pressure() {
                self.budget.give_back(self.ring.len());
                self.ring = Box::new([]);
            }
        }
    }

    /// Number of out-of-order ranges held.
    pub fn ranges(&self) -> usize {
        self.held.len()
    }

    /// Bytes held out of order.
    pub fn out_of_order_bytes(&self) -> usize {
        self.held
            .iter()
            .map(|h| self.offset(h.end) - self.offset(h.start))
            .sum()
    }

    /// The held out-of-order ranges as (start, end) offsets from the end of the contiguous data,
    /// written into `out` in SACK order (RFC 2018 §4: first the range containing the most
    /// recently inserted out-of-order piece, then the others most-recently-changed first);
    /// returns how many were written.
    pub fn sack_ranges(&self, out: &mut [(usize, usize)]) -> usize {
        let mut written = 0;
        let mut older_than = u64::MAX;
        for slot in out.iter_mut() {
            let Some(h) = self
                .held
                .iter()
                .filter(|h| h.stamp < older_than)
                .max_by_key(|h| h.stamp)
            else {
                break;
            };
            *slot = (self.offset(h.start), self.offset(h.end));
            older_than = h.stamp;
            written += 1;
        }
        written
    }

    /// Stores an in-order piece (within the window) and absorbs the held ranges it reaches;
    /// returns how far the contiguous data grew.
    fn insert_in_order(&mut self, data: &[u8]) -> usize {
        self.write(0, data);
        let mut grown = data.len();
        let mut absorbed = 0;
        for h in &self.held {
            if self.offset(h.start) > grown {
                break;
            }
            grown = grown.max(self.offset(h.end));
            absorbed += 1;
        }
        self.held.drain(..absorbed);
        self.readable += grown;
        self.end = self.end.wrapping_add(grown as u64);
        grown
    }

    /// Stores an out-of-order piece (offset > 0, within the window), merging it with the held
    /// ranges it overlaps or touches, unless that would need too many ranges.
    fn insert_out_of_order(&mut self, offset: usize, data: &[u8]) -> Result<(), Refused> {
        let end = offset + data.len();
        let first = self
            .held
            .iter()
            .take_while(|h| self.offset(h.end) < offset)
            .count();
        let merged = self.held[first..]
            .iter()
            .take_while(|h| self.offset(h.start) <= end)
            .count();
        if self.held.len() - merged + 1 > self.max_ranges {
            return Err(Refused::TooManyRanges);
        }
        self.write(offset, data);
        let last = first + merged;
        let mut range = (offset, end);
        if merged > 0 {
            range.0 = range.0.min(self.offset(self.held[first].start));
            range.1 = range.1.max(self.offset(self.held[last - 1].end));
        }
        let held = Held {
            start: self.position(range.0),
            end: self.position(range.1),
            stamp: self.next_stamp(),
        };
        if merged > 0 {
            self.held[first] = held;
            self.held.drain(first + 1..last);
        } else {
            self.held.insert(first, held);
        }
        Ok(())
    }

    /// Copies `data` into the ring at `offset` bytes after the contiguous data (within the
    /// window).
    fn write(&mut self, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let at = self.wrap(self.wrap(self.head + self.readable) + offset);
        let first = data.len().min(self.ring.len() - at);
        self.ring[at..at + first].copy_from_slice(&data[..first]);
        self.ring[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// The ring index for an index below twice the capacity.
    fn wrap(&self, index: usize) -> usize {
        if index >= self.ring.len() {
            index - self.ring.len()
        } else {
            index
        }
    }

    /// The offset of a stream position after the contiguous end.
    fn offset(&self, position: u64) -> usize {
        position.wrapping_sub(self.end) as usize
    }

    /// The stream position `offset` bytes after the contiguous end.
    fn position(&self, offset: usize) -> u64 {
        self.end.wrapping_add(offset as u64)
    }

    /// A stamp newer than every one handed out before.
    fn next_stamp(&mut self) -> u64 {
        self.stamp = self.stamp.wrapping_add(1);
        self.stamp
    }
}

impl Drop for RecvBuffer {
    fn drop(&mut self) {
        self.budget.give_back(self.ring.len());
    }
}

impl fmt::Debug for RecvBuffer {
    /// The counts, not the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuffer")
            .field("capacity", &self.capacity())
            .field("readable", &self.readable)
            .field("ranges", &self.held.len())
            .field("out_of_order_bytes", &self.out_of_order_bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64) for the randomised tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// A number in `lo..=hi`.
        fn range(&mut self, lo: usize, hi: usize) -> usize {
            lo + (self.next() % (hi - lo + 1) as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.range(0, i));
            }
        }
    }

    fn read_all(b: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0; b.readable()];
        let n = b.read(&mut out);
        out.truncate(n);
        out
    }

    fn sacks(b: &RecvBuffer) -> Vec<(usize, usize)> {
        let mut out = [(0, 0); 8];
        let n = b.sack_ranges(&mut out);
        out[..n].to_vec()
    }

    #[test]
    fn in_order_pieces_become_readable() {
        let mut b = RecvBuffer::new(64, 4);
        assert_eq!(b.capacity(), 64);
        assert_eq!(b.insert(0, b"hello "), Ok(6));
        assert_eq!(b.insert(0, b"world"), Ok(5));
        assert_eq!(b.readable(), 11);
        assert_eq!(b.window(), 53);
        assert_eq!(b.insert(0, b""), Ok(0));
        assert_eq!(read_all(&mut b), b"hello world");
        assert_eq!(b.window(), 64);
        assert_eq!(b.ranges(), 0);
        assert_eq!(
            format!("{b:?}"),
            "RecvBuffer { capacity: 64, readable: 0, ranges: 0, out_of_order_bytes: 0 }"
        );
    }

    #[test]
    fn gaps_are_filled_in_every_order() {
        let data: Vec<u8> = (0..40).collect();
        let pieces = [(0, 10), (10, 17), (17, 30), (30, 40)];
        let mut order = [0, 1, 2, 3];
        // Every permutation of four pieces (Heap's algorithm, iteratively).
        let mut c = [0; 4];
        let check = |order: &[usize; 4]| {
            let mut b = RecvBuffer::new(64, 4);
            let mut end = 0;
            for &i in order {
                let (s, e) = pieces[i];
                let offset = s - end;
                end += b.insert(offset, &data[s..e]).unwrap();
            }
            assert_eq!(end, 40, "order {order:?}");
            assert_eq!(read_all(&mut b), data, "order {order:?}");
            assert_eq!(b.ranges(), 0);
            assert_eq!(b.out_of_order_bytes(), 0);
        };
        check(&order);
        let mut i = 0;
        while i < 4 {
            if c[i] < i {
                order.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
                check(&order);
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
    }

    #[test]
    fn shuffled_overlapping_duplicated_pieces_reassemble() {
        let mut refused = 0;
        for seed in 1..=8 {
            let mut rng = Rng(seed);
            let data = rng.bytes(64 * 1024);
            // Pieces that cover everything, plus duplicates and pieces straddling their borders.
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < data.len() {
                let e = (at + rng.range(1, 300)).min(data.len());
                pieces.push((at, e));
                at = e;
            }
            for _ in 0..pieces.len() / 2 {
                let s = rng.range(0, data.len() - 1);
                pieces.push((s, (s + rng.range(1, 1000)).min(data.len())));
            }
            rng.shuffle(&mut pieces);
            let mut b = RecvBuffer::new(data.len(), 32);
            let mut end = 0;
            // Refused pieces come again later, as retransmissions would.
            while end < data.len() {
                let mut retry = Vec::new();
                for &(s, e) in &pieces {
                    if e <= end {
                        continue;
                    }
                    let s2 = s.max(end);
                    match b.insert(s2 - end, &data[s2..e]) {
                        Ok(n) => end += n,
                        Err(Refused::TooManyRanges) => {
                            assert!(s2 > end, "in order is never refused");
                            assert_eq!(b.ranges(), 32);
                            refused += 1;
                            retry.push((s, e));
                        }
                        Err(Refused::NoMemory) => unreachable!("no budget here"),
                    }
                    assert!(b.ranges() <= 32);
                }
                pieces = retry;
            }
            assert_eq!(b.readable(), data.len());
            assert_eq!(b.ranges(), 0);
            assert_eq!(read_all(&mut b), data, "seed {seed}");
        }
        assert!(refused > 0, "the range limit was exercised");
    }

    #[test]
    fn bytes_beyond_the_window_are_cut_off() {
        let stream = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut b = RecvBuffer::new(16, 4);
        assert_eq!(b.insert(10, &stream[10..20]), Ok(0));
        assert_eq!(b.out_of_order_bytes(), 6, "kept up to the window's end");
        assert_eq!(b.insert(16, &stream[16..18]), Ok(0));
        assert_eq!(b.insert(99, b"zz"), Ok(0));
        assert_eq!(b.ranges(), 1);
        assert_eq!(b.insert(0, &stream[..18]), Ok(16));
        assert_eq!(b.window(), 0);
        assert_eq!(b.insert(0, &stream[16..20]), Ok(0));
        assert_eq!(read_all(&mut b), &stream[..16]);
        assert_eq!(b.insert(0, &stream[16..20]), Ok(4));
        assert_eq!(read_all(&mut b), &stream[16..20]);
    }

    #[test]
    fn too_many_ranges_are_refused_but_in_order_data_is_not() {
        let mut b = RecvBuffer::new(100, 2);
        assert_eq!(b.insert(10, b"aa"), Ok(0));
        assert_eq!(b.insert(20, b"bb"), Ok(0));
        assert_eq!(b.insert(30, b"cc"), Err(Refused::TooManyRanges));
        assert_eq!(b.out_of_order_bytes(), 4, "nothing stored");
        assert_eq!(sacks(&b), vec![(20, 22), (10, 12)]);
        // Pieces that need no new range are kept: inside, extending, or bridging two ranges.
        assert_eq!(b.insert(10, b"a"), Ok(0));
        assert_eq!(b.insert(22, b"bbb"), Ok(0));
        assert_eq!(b.insert(12, b"xxxxxxxx"), Ok(0));
        assert_eq!(b.ranges(), 1);
        assert_eq!(sacks(&b), vec![(10, 25)]);
        assert_eq!(b.insert(30, b"cc"), Ok(0));
        assert_eq!(b.insert(40, b"dd"), Err(Refused::TooManyRanges));
        assert_eq!(b.insert(0, b"0123456789"), Ok(25));
        assert_eq!(b.ranges(), 1);
        assert_eq!(sacks(&b), vec![(5, 7)]);

        let mut none = RecvBuffer::new(10, 0);
        assert_eq!(none.insert(1, b"x"), Err(Refused::TooManyRanges));
        assert_eq!(none.insert(0, b"x"), Ok(1));
    }

    #[test]
    fn sack_ranges_come_most_recent_first() {
        let mut b = RecvBuffer::new(100, 8);
        b.insert(10, b"a").unwrap();
        b.insert(30, b"b").unwrap();
        b.insert(50, b"c").unwrap();
        assert_eq!(sacks(&b), vec![(50, 51), (30, 31), (10, 11)]);
        b.insert(11, b"a").unwrap();
        assert_eq!(sacks(&b), vec![(10, 12), (50, 51), (30, 31)]);
        b.insert(30, b"b").unwrap();
        assert_eq!(
            sacks(&b),
            vec![(30, 31), (10, 12), (50, 51)],
            "a duplicate is the most recent piece too"
        );
        let mut two = [(0, 0); 2];
        assert_eq!(b.sack_ranges(&mut two), 2);
        assert_eq!(two, [(30, 31), (10, 12)]);
        // Filling the first gap: the offsets move down, the order stays.
        assert_eq!(b.insert(0, &[0; 10]), Ok(12));
        assert_eq!(sacks(&b), vec![(18, 19), (38, 39)]);
        assert_eq!(b.out_of_order_bytes(), 2);
        assert_eq!(b.sack_ranges(&mut []), 0);
    }

    #[test]
    fn the_ring_wraps_around() {
        let mut b = RecvBuffer::new(8, 4);
        assert_eq!(b.insert(0, b"abcdef"), Ok(6));
        let mut out = [0; 5];
        assert_eq!(b.read(&mut out), 5);
        assert_eq!(&out, b"abcde");
        assert_eq!(b.window(), 7);
        // Out of order across the end of the ring, then the gap before it.
        assert_eq!(b.insert(3, b"ijk"), Ok(0));
        assert_eq!(
            b.insert(0, b"ghXX"),
            Ok(6),
            "rewrites the held 'i' with 'X'"
        );
        assert_eq!(b.peek(), (&b"fgh"[..], &b"XXjk"[..]));
        b.consume(2);
        assert_eq!(b.peek(), (&b"h"[..], &b"XXjk"[..]));
        b.consume(100);
        assert_eq!(b.readable(), 0);
        assert_eq!(b.peek(), (&b""[..], &b""[..]));
        assert_eq!(b.read(&mut out), 0);
    }

    #[test]
    fn a_zero_capacity_buffer_takes_nothing() {
        let mut b = RecvBuffer::new(0, 4);
        assert_eq!(b.window(), 0);
        assert_eq!(b.insert(0, b"x"), Ok(0));
        assert_eq!(b.insert(3, b"x"), Ok(0));
        assert_eq!(b.read(&mut [0; 4]), 0);
        b.consume(1);
        assert_eq!(b.peek(), (&b""[..], &b""[..]));
    }

    /// Reading interleaved with inserting through a small ring, checked against a plain model:
    /// which stream bytes are held, and so which ranges and SACK blocks there must be.
    #[test]
    fn reading_interleaved_with_inserting_matches_a_model() {
        for seed in 1..=4 {
            let mut rng = Rng(seed * 7919);
            let data = rng.bytes(200_000);
            let (capacity, max_ranges) = (4096, 6);
            let mut b = RecvBuffer::new(capacity, max_ranges);
            let mut held = vec![false; data.len()]; // the model: stream bytes stored out of order
            let (mut end, mut read) = (0, 0); // stream positions
            let mut got = Vec::with_capacity(data.len());
            let mut refused = 0;
            while read < data.len() {
                if rng.range(0, 3) == 0 {
                    let mut out = vec![0; rng.range(0, 3000)];
                    let n = b.read(&mut out);
                    assert_eq!(n, out.len().min(end - read));
                    got.extend_from_slice(&out[..n]);
                    read += n;
                    continue;
                }
                let s = end + rng.range(0, 5000).saturating_sub(1000);
                let e = (s + rng.range(1, 400)).min(data.len());
                if s >= e {
                    continue;
                }
                let window_end = read + capacity;
                let cut = e.min(window_end).max(s);
                let would_hold = runs(&held, (s, cut), end, window_end);
                let result = b.insert(s - end, &data[s..e]);
                if s > end && would_hold.len() > max_ranges {
                    assert_eq!(result, Err(Refused::TooManyRanges));
                    refused += 1;
                } else {
                    for h in &mut held[s..cut] {
                        *h = true;
                    }
                    let mut grown = 0;
                    while end + grown < data.len() && held[end + grown] {
                        held[end + grown] = false;
                        grown += 1;
                    }
                    assert_eq!(result, Ok(grown));
                    end += grown;
                }
                let runs = runs(&held, (0, 0), end, window_end);
                assert_eq!(b.ranges(), runs.len());
                assert_eq!(b.readable(), end - read);
                assert_eq!(b.window(), capacity - (end - read));
                assert_eq!(
                    b.out_of_order_bytes(),
                    held[end..window_end.min(data.len())]
                        .iter()
                        .filter(|h| **h)
                        .count()
                );
                let mut blocks = sacks(&b);
                if s > end && s < cut && result.is_ok() {
                    let (first_start, first_end) = blocks[0];
                    assert!(first_start <= s - end && e.min(window_end) - end <= first_end);
                }
                blocks.sort();
                let expected: Vec<_> = runs
                    .iter()
                    .take(8)
                    .map(|&(a, z)| (a - end, z - end))
                    .collect();
                if runs.len() <= 8 {
                    assert_eq!(blocks, expected);
                }
            }
            assert_eq!(got, data, "seed {seed}");
            assert!(refused > 0, "seed {seed}: the range limit was exercised");
        }
    }

    /// The maximal runs of held bytes in `from..to`, as stream positions, counting the bytes
    /// of `piece` as held too.
    fn runs(held: &[bool], piece: (usize, usize), from: usize, to: usize) -> Vec<(usize, usize)> {
        let to = to.min(held.len());
        let is_held = |i: usize| held[i] || (piece.0..piece.1).contains(&i);
        let mut out = Vec::new();
        let mut i = from;
        while i < to {
            if is_held(i) {
                let start = i;
                while i < to && is_held(i) {
                    i += 1;
                }
                out.push((start, i));
            } else {
                i += 1;
            }
        }
        out
    }
}
