//! The send side's bytes: what the application wrote and the peer has not acknowledged yet
//! (sent or not), in a ring of fixed capacity.

use std::collections::VecDeque;

/// Bytes from SND.UNA onwards: first the ones in flight, then the ones not sent yet.
#[derive(Debug)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    capacity: usize,
}

impl SendBuffer {
    /// A buffer of `capacity` bytes (allocated now, never grown).
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            data: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Room for more bytes.
    pub fn space(&self) -> usize {
        self.capacity - self.data.len()
    }

    /// Appends as much of `bytes` as fits; returns how much.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.space());
        self.data.extend(&bytes[..n]);
        n
    }

    /// The `len` bytes starting `offset` bytes after SND.UNA, as (up to) two slices; shorter
    /// when fewer bytes are held.
    pub fn slices(&self, offset: usize, len: usize) -> [&[u8]; 2] {
        let (a, b) = self.data.as_slices();
        let end = (offset + len).min(self.data.len());
        let offset = offset.min(end);
        if end <= a.len() {
            [&a[offset..end], &[]]
        } else if offset >= a.len() {
            [&b[offset - a.len()..end - a.len()], &[]]
        } else {
            [&a[offset..], &b[..end - a.len()]]
        }
    }

    /// Drops `n` acknowledged bytes from the front.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(s: [&[u8]; 2]) -> Vec<u8> {
        [s[0], s[1]].concat()
    }

    #[test]
    fn slices_across_the_wrap() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.write(b"abcdef"), 6);
        b.consume(5);
        assert_eq!(b.write(b"ghijklmn"), 7);
        assert_eq!(b.space(), 0);
        assert_eq!(joined(b.slices(0, 8)), b"fghijklm");
        assert_eq!(joined(b.slices(2, 3)), b"hij");
        assert_eq!(joined(b.slices(6, 10)), b"lm");
        assert_eq!(joined(b.slices(9, 1)), b"");
    }
}
