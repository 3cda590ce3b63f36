//! Tables keyed by binding keys on the per-frame path, with a hasher cheaper than SipHash.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use netdemux_common::BindKey;

/// A multiplicative hasher for binding keys on the per-frame path. Only for tables whose keys
/// the operator chose (services, bound sockets): their size is fixed, so crafted lookups cannot
/// degrade them. Tables keyed by what the network sends keep SipHash.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by binding keys, with [`KeyHasher`].
pub type KeyMap<V> = HashMap<BindKey, V, BuildHasherDefault<KeyHasher>>;
