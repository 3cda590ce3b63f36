//! Hashers of the stack's per-packet tables.
//!
//! Peers choose the keys of the flow, TIME_WAIT and neighbour tables, so those keep std's keyed
//! SipHash (`RandomState`, a random key per table: a peer cannot aim at one bucket, as Linux keys
//! its established table's jhash with a boot-time secret). [`Gathered`] feeds it a key in one
//! write: a pair of socket addresses is six small writes (ten for IPv6), each paying SipHash's
//! per-call buffering, where one write of the same bytes costs a few compressions. Connection handles are
//! the stack's own numbers, not a peer's: [`ConnIdHasher`] multiplies them instead.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher, RandomState},
};

/// A table keyed by peers' addresses.
pub type KeyedMap<K, V> = HashMap<K, V, OneWrite>;

/// Bytes [`Gathered`] holds before it feeds SipHash (two IPv6 socket addresses, with
/// discriminants, flow labels and scope ids, take 68).
const GATHER: usize = 80;

/// std's keyed SipHash, fed each key in one write ([`Gathered`]).
#[derive(Clone, Debug, Default)]
pub struct OneWrite(RandomState);

impl BuildHasher for OneWrite {
    type Hasher = Gathered;

    fn build_hasher(&self) -> Gathered {
        Gathered {
            inner: self.0.build_hasher(),
            buf: [0; GATHER],
            len: 0,
        }
    }
}

/// Gathers a key's writes and hashes them at [`Hasher::finish`] in one write. A key longer than
/// the buffer goes to SipHash in pieces: equal keys still make equal writes, so equal hashes.
pub struct Gathered {
    inner: DefaultHasher,
    buf: [u8; GATHER],
    len: usize,
}

impl Hasher for Gathered {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        self.inner.write(&self.buf[..self.len]);
        self.inner.write(bytes);
        self.len = 0;
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.inner.clone();
        h.write(&self.buf[..self.len]);
        h.finish()
    }
}

/// A table keyed by connection handles.
pub type ConnIdMap<K, V> = HashMap<K, V, BuildHasherDefault<ConnIdHasher>>;

/// Hashes a handle's one `u64` by a multiply (Fibonacci hashing) and a rotation, so both the low
/// bits (the bucket) and the high bits (hashbrown's tag) depend on every bit of it.
#[derive(Default)]
pub struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        hash::Hash,
        net::{SocketAddr, SocketAddrV6},
    };

    use super::*;

    /// The bytes a key's `Hash` writes, in order.
    fn bytes_of(k: impl Hash) -> Vec<u8> {
        struct Record(Vec<u8>);
        impl Hasher for Record {
            fn write(&mut self, b: &[u8]) {
                self.0.extend_from_slice(b);
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let mut r = Record(Vec::new());
        k.hash(&mut r);
        r.0
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A gathered key hashes as one write of its bytes to the table's SipHash; equal keys hash
    /// equal and others apart, also past the buffer; two tables get different keys.
    #[test]
    fn gathered_keys_hash_as_their_bytes() {
        let b = OneWrite::default();
        let v4 = (addr("198.18.0.2:80"), addr("198.18.0.1:40000"));
        let mut direct = b.0.build_hasher();
        direct.write(&bytes_of(v4));
        assert_eq!(b.hash_one(v4), direct.finish());
        assert_ne!(b.hash_one(v4), b.hash_one((v4.0, addr("198.18.0.1:40001"))));
        // Three IPv6 socket addresses with flow labels and scope ids: past the buffer.
        let a6 = |flow| {
            SocketAddr::V6(SocketAddrV6::new(
                "2001:db8::1".parse().unwrap(),
                1,
                flow,
                3,
            ))
        };
        let long = (a6(7), a6(7), a6(7));
        assert!(bytes_of(long).len() > GATHER);
        assert_eq!(b.hash_one(long), b.hash_one(long));
        assert_ne!(b.hash_one(long), b.hash_one((a6(7), a6(7), a6(8))));
        assert_ne!(b.hash_one(v4), OneWrite::default().hash_one(v4));
    }

    /// Consecutive handles spread over buckets and tags.
    #[test]
    fn handles_spread() {
        let build = BuildHasherDefault::<ConnIdHasher>::default();
        let hashes: Vec<u64> = (0u64..1024).map(|i| build.hash_one(i | 7 << 32)).collect();
        let buckets: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(buckets.len() > 600, "{}", buckets.len());
        assert_eq!(tags.len(), 128);
    }
}
