//! Initial sequence numbers (RFC 6528: a 4 µs clock plus a keyed hash of the 4-tuple) and
//! timestamp offsets (RFC 7323 §5.4: the same hash, so the same 4-tuple always gets the same
//! offset). One source serves every queue worker of a stack: a new connection on a 4-tuple the
//! peer still holds in TIME_WAIT then starts beyond the old one in sequence and time, whichever
//! worker opened either, and the peer takes its SYN (RFC 6191) instead of answering it with
//! the old connection's ACK — as Linux, whose secret is one per boot.

use std::{
    hash::{BuildHasher, RandomState},
    net::SocketAddr,
    time::Instant,
};

use super::Seq;

/// The secret and the clock ISNs and timestamps are made from; clones share both.
#[derive(Clone, Debug)]
pub struct IsnSource {
    key: RandomState,
    base: Instant,
}

impl IsnSource {
    /// A new secret, with clocks counting from `now`.
    pub fn new(now: Instant) -> IsnSource {
        IsnSource {
            key: RandomState::new(),
            base: now,
        }
    }

    /// When the clocks started (timestamps and SYN cookies' minutes count from it).
    pub fn base(&self) -> Instant {
        self.base
    }

    /// The ISN for a connection from `local` to `remote` opened at `now`, and the offset of
    /// its timestamps.
    pub fn pick(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> (Seq, u32) {
        let f = self.key.hash_one((local, remote));
        let m = (now.saturating_duration_since(self.base).as_micros() / 4) as u32;
        (Seq(m.wrapping_add(f as u32)), (f >> 32) as u32)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn clones_agree_and_the_isn_follows_the_clock() {
        let t0 = Instant::now();
        let (a, b) = (IsnSource::new(t0), IsnSource::new(t0));
        let (l, r) = (
            "198.18.0.2:40001".parse().unwrap(),
            "198.19.0.1:9700".parse().unwrap(),
        );
        let shared = a.clone();
        assert_eq!(a.pick(l, r, t0), shared.pick(l, r, t0));
        // Two secrets pick unrelated numbers (what each worker had when it made its own).
        assert_ne!(a.pick(l, r, t0), b.pick(l, r, t0));
        // 1 ms later: 250 ticks of 4 µs further, the same timestamp offset.
        let (isn, off) = a.pick(l, r, t0);
        let later = shared.pick(l, r, t0 + Duration::from_millis(1));
        assert_eq!(later, (isn + 250, off));
        // Another 4-tuple, another number.
        let other = "198.18.0.2:40002".parse().unwrap();
        assert_ne!(a.pick(other, r, t0).0, isn);
    }
}
