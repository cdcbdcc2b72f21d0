//! A fast hasher for the model's integer keys (block addresses, stack ids),
//! which are looked up once or twice per event.
//!
//! The standard library's SipHash resists hash flooding, at about 20 ns per
//! key; it was a tenth of `memtally report`'s time. Keys here come from a
//! trace the user recorded, so flooding is not a threat worth that price.
//! One 64x64->128-bit multiply, folded, mixes every input bit into the low
//! bits (hashbrown picks buckets with them) and the high bits (its tags):
//! addresses, whose low four bits are always zero, spread evenly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by integers, with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Multiply-fold hashing of integer keys.
#[derive(Clone, Copy, Default)]
pub struct IdHasher(u64);

/// An odd constant with well-spread bits (2^64 divided by the golden ratio).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn fold(x: u64) -> u64 {
    let p = u128::from(x) * u128::from(K);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by integer keys; correct for any key all the same.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = fold(self.0.rotate_left(5) ^ n);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_addresses_spread_over_low_bits() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let mut buckets = [0u32; 64];
        for i in 0..64 * 1024u64 {
            let h = build.hash_one(0x7f00_0000_0000 + i * 16);
            buckets[(h & 63) as usize] += 1;
        }
        // 1024 per bucket if perfectly even.
        assert!(
            buckets.iter().all(|&n| (768..=1280).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn maps_work() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000 {
            m.insert(i * 16, i);
        }
        assert!((0..10_000).all(|i| m[&(i * 16)] == i));
    }
}
