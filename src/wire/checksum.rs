//! Internet checksums: full computation (RFC 1071) and incremental update
//! (RFC 1624, `HC' = ~(~HC + ~m + m')`), used by the router (TTL) and the NAT
//! (addresses, ports, identifiers; the TCP/UDP pseudo-header included).

/// One's-complement sum of `data` (big-endian 16-bit words, odd byte padded),
/// added to `initial`, not folded or inverted.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [b] = chunks.remainder() {
        acc += (*b as u64) << 8;
    }
    fold64(acc)
}

#[inline]
fn fold64(mut acc: u64) -> u32 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Folds a sum to 16 bits and inverts it: the checksum field value.
#[inline]
pub fn finish(acc: u32) -> u16 {
    !(fold64(acc as u64) as u16)
}

/// Checksum of `data` (e.g. an IPv4 header with its checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// The TCP/UDP pseudo-header sum for IPv4.
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u32 {
    let mut acc = sum(&src, 0);
    acc = sum(&dst, acc);
    acc += proto as u32 + l4_len as u32;
    acc
}

/// The TCP/UDP pseudo-header sum for IPv6 (RFC 8200 section 8.1): the
/// addresses are the 32 bytes from the source address on.
pub fn pseudo_header_v6(addrs: &[u8], next_header: u8, l4_len: u32) -> u32 {
    sum(addrs, 0) + (l4_len >> 16) + (l4_len & 0xffff) + next_header as u32
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word changes from `old` to `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = (!check as u32) + (!old as u32 & 0xffff) + new as u32;
    !(fold64(acc as u64) as u16)
}

/// The checksum after a 32-bit value (an IPv4 address) changes.
#[inline]
pub fn update32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let c = update16(
        check,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    update16(
        c,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum 0xddf2, checksum 0x220d.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold64(sum(&d, 0) as u64), 0xddf2);
        assert_eq!(checksum(&d), 0x220d);
    }

    #[test]
    fn incremental_matches_full_recomputation() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = 2 + (rnd() % 64) as usize * 2;
            let mut d: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            let c = checksum(&d);
            let at = (rnd() as usize % (len / 2)) * 2;
            let old = u16::from_be_bytes([d[at], d[at + 1]]);
            let new = rnd() as u16;
            d[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let inc = update16(c, old, new);
            let full = checksum(&d);
            // 0x0000 and 0xffff are the same value in one's complement.
            assert!(
                inc == full || (inc ^ full) == 0xffff && (inc == 0 || full == 0),
                "{inc:04x} vs {full:04x}"
            );
        }
    }

    /// An odd trailing byte is the high half of a zero-padded word.
    #[test]
    fn odd_length_pads_the_last_byte_high() {
        assert_eq!(sum(&[0x12], 0), 0x1200);
        assert_eq!(sum(&[0xab, 0xcd, 0x12], 5), 0xabcd + 0x1200 + 5);
        assert_eq!(checksum(&[1, 2, 3]), checksum(&[1, 2, 3, 0]));
        // Carries are folded back in.
        assert_eq!(sum(&[0xff, 0xff, 0xff, 0xff], 0), 0xffff);
        assert_eq!(
            sum(&[0x80, 0x00], 0xffff_0000),
            0x8000,
            "0x1_7fff folds to 0x8000"
        );
        assert_eq!(finish(0x1_fffe), 0);
    }

    #[test]
    fn pseudo_header_of_a_known_packet() {
        // 192.168.88.11 -> 10.99.0.1, UDP, 13 bytes:
        // c0a8 + 580b + 0a63 + 0001 + 0011 + 000d
        let want = 0xc0a8 + 0x580b + 0x0a63 + 0x0001 + 17 + 13;
        let got = pseudo_header_v4([192, 168, 88, 11], [10, 99, 0, 1], 17, 13);
        assert_eq!(fold64(got as u64), fold64(want));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A buffer with its checksum written in verifies (sums to
            /// 0xffff), whatever its length.
            #[test]
            fn written_checksum_verifies(mut d in proptest::collection::vec(any::<u8>(), 2..300), at in any::<usize>()) {
                let at = (at % (d.len() / 2)) * 2;
                d[at] = 0;
                d[at + 1] = 0;
                let c = checksum(&d);
                d[at..at + 2].copy_from_slice(&c.to_be_bytes());
                prop_assert_eq!(fold64(sum(&d, 0) as u64), 0xffff);
                prop_assert_eq!(checksum(&d), 0);
            }

            /// RFC 1624 updates equal full recomputation, for 16- and
            /// 32-bit fields (0x0000 and 0xffff being the same number).
            #[test]
            fn updates_match_recomputation(
                mut d in proptest::collection::vec(any::<u8>(), 8..200),
                at in any::<usize>(),
                new in any::<[u8; 4]>(),
            ) {
                let words = d.len() / 2;
                let at = (at % (words - 1)) * 2;
                let c = checksum(&d);
                let old: [u8; 4] = d[at..at + 4].try_into().unwrap();
                d[at..at + 4].copy_from_slice(&new);
                let full = checksum(&d);
                let inc = update32(c, old, new);
                prop_assert!(inc == full || (inc ^ full) == 0xffff && (inc == 0 || full == 0),
                    "{:04x} vs {:04x}", inc, full);
                // The 16-bit form, on the first half only.
                let c2 = update16(c, u16::from_be_bytes([old[0], old[1]]), u16::from_be_bytes([new[0], new[1]]));
                d[at + 2..at + 4].copy_from_slice(&old[2..4]);
                let full2 = checksum(&d);
                prop_assert!(c2 == full2 || (c2 ^ full2) == 0xffff && (c2 == 0 || full2 == 0));
            }

            /// The sum is the naive big-endian word sum, folded.
            #[test]
            fn sum_is_the_folded_word_sum(d in proptest::collection::vec(any::<u8>(), 0..300), init in any::<u16>()) {
                let mut naive: u64 = init as u64;
                for (i, b) in d.iter().enumerate() {
                    naive += if i % 2 == 0 { (*b as u64) << 8 } else { *b as u64 };
                }
                while naive > 0xffff {
                    naive = (naive & 0xffff) + (naive >> 16);
                }
                prop_assert_eq!(sum(&d, init as u32) as u64, naive);
            }
        }
    }
}
