//! A fast hasher for the integer keys of the MAC table and the NAT
//! (packed MACs in a `u64`, flow tuples in a `u128`).
//!
//! Keys are partly attacker-chosen (any port can send any source MAC, any
//! remote host any port). Every table using this is bounded, and the
//! multiply-xorshift finaliser spreads the structured bits (vendor prefixes,
//! address prefixes); and, as Open vSwitch's mac-learning does with a random
//! basis, every hash starts from a secret drawn at process start
//! ([`SeededState`]), so keys that collide cannot be computed offline
//! against a fixed function. std's SipHash would buy little but cost here.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

/// The process's hash secret: random, drawn once (getrandom(2)).
fn secret() -> u64 {
    static SECRET: OnceLock<u64> = OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut b = [0u8; 8];
        // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        if n == b.len() as isize {
            u64::from_ne_bytes(b)
        } else {
            // No entropy source at all: fall back to the clock and the pid,
            // still not known offline.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ ((std::process::id() as u64) << 32)
        }
    })
}

/// Builds [`FastHasher`]s that start from the process's secret.
#[derive(Clone, Copy)]
pub struct SeededState(u64);

impl Default for SeededState {
    fn default() -> Self {
        SeededState(secret())
    }
}

impl BuildHasher for SeededState {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let mut x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^ (x >> 32)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(29) ^ v;
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.0 = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (v >> 64) as u64;
    }
}

/// A `HashMap` with [`FastHasher`], seeded with the process's secret.
pub type FastMap<K, V> = HashMap<K, V, SeededState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn the_seed_changes_every_hash_and_distinct_keys_never_fully_collide() {
        let (a, b) = (SeededState(1), SeededState(2));
        let keys: Vec<u64> = (0..1000).map(|i| i * 0x0100_0000_0001).collect();
        let ha: Vec<u64> = keys.iter().map(|k| a.hash_one(k)).collect();
        let hb: Vec<u64> = keys.iter().map(|k| b.hash_one(k)).collect();
        assert!(ha.iter().zip(&hb).all(|(x, y)| x != y), "the seed matters");
        let mut uniq = ha.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), keys.len(), "a bijection for one u64 key");
        assert_eq!(SeededState::default().0, SeededState::default().0);
    }
}
