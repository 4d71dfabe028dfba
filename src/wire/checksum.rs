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
}
