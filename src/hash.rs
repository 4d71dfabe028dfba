//! A fast hasher for the integer keys of the MAC table and the NAT
//! (packed MACs in a `u64`, flow tuples in a `u128`).
//!
//! Keys are partly attacker-chosen (any port can send any source MAC, any
//! remote host any port), but every table using this is bounded, and the
//! multiply-xorshift finaliser spreads the structured bits (vendor prefixes,
//! address prefixes), so std's SipHash buys nothing but cost here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

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

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
