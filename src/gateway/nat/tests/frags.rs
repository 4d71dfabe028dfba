//! Fragment records shared fairly: per-source caps, a total cap where the
//! largest source pays, timeouts, and honest traffic beside a flood.

use super::frag::Frags;
use super::*;

/// `b` as a fragment: IP id `id`, more-fragments `mf`, offset `off`.
fn frag(mut b: Vec<u8>, id: u16, mf: bool, off: usize) -> Vec<u8> {
    b[4..6].copy_from_slice(&id.to_be_bytes());
    let v = (if mf { 0x2000 } else { 0 }) | (off / 8) as u16;
    b[6..8].copy_from_slice(&v.to_be_bytes());
    fill_ip_checksum(&mut b, 20);
    b
}

/// A first fragment of a UDP datagram `src:sport -> dst:dport`.
fn first(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), id: u16) -> Vec<u8> {
    frag(udp(src, dst, ports.0, ports.1, &[0xab; 64]), id, true, 0)
}

/// A later (last) fragment `src -> dst`.
fn later(src: [u8; 4], dst: [u8; 4], id: u16) -> Vec<u8> {
    frag(raw_ip(PROTO_UDP, src, dst, &[0xcd; 16]), id, false, 72)
}

/// The source key of an inside address (outbound records).
fn out_src(a: [u8; 4]) -> u64 {
    u32::from_be_bytes(a) as u64
}

/// One source flooding incomplete first fragments cannot stop another
/// source's fragmented packets, outbound (inside addresses) or inbound
/// (remote addresses): not those already in flight, not new ones.
#[test]
fn a_fragment_flood_from_one_source_leaves_the_others_theirs() {
    const R2: [u8; 4] = [10, 99, 0, 7];
    let mut n = nat();
    // B's datagram is in flight when A starts flooding.
    n.outbound(&mut first(B, R, (9001, 9), 1), 0).unwrap();
    for id in 0..10_000u16 {
        n.outbound(&mut first(A, R, (9000, 9), id), 1).unwrap();
    }
    assert_eq!(n.frags.held_by(out_src(A)), FRAG_PER_SOURCE);
    assert_eq!(
        n.stats().frag_evicted_source_cap,
        10_000 - FRAG_PER_SOURCE as u64
    );
    let mut l = later(B, R, 1);
    n.outbound(&mut l, 2).unwrap();
    assert_eq!(src(&l), EXT);
    n.outbound(&mut first(B, R, (9001, 9), 2), 2).unwrap();
    n.outbound(&mut later(B, R, 2), 2).unwrap();
    // A's own oldest went; its newest still follow.
    assert_eq!(
        n.outbound(&mut later(A, R, 0), 2),
        Err(NatDrop::FragmentNoFlow)
    );
    n.outbound(&mut later(A, R, 9_999), 2).unwrap();

    // Inbound: R floods fragmented "replies" on A's flow while R2 answers
    // B in fragments.
    n.outbound(&mut udp(B, R2, 9002, 9, b"b"), 3).unwrap();
    n.inbound(&mut first(R2, EXT, (9, 9002), 7), 3).unwrap();
    for id in 0..10_000u16 {
        n.inbound(&mut first(R, EXT, (9, 9000), id), 4).unwrap();
    }
    let mut l = later(R2, EXT, 7);
    n.inbound(&mut l, 5).unwrap();
    assert_eq!(dst(&l), B);
    n.inbound(&mut first(R2, EXT, (9, 9002), 8), 5).unwrap();
    let mut l = later(R2, EXT, 8);
    n.inbound(&mut l, 5).unwrap();
    assert_eq!(dst(&l), B);
    assert_eq!(n.frags.held_by(1 << 32 | out_src(R)), FRAG_PER_SOURCE);
    n.frags.check();
}

/// The table holds at most FRAG_MAX records; when it is full, the source
/// holding the most loses its oldest, never a small source. Its memory
/// stays under FRAG_BYTES_MAX, also with as many sources as records.
#[test]
fn fragment_caps_hold_and_the_largest_source_pays() {
    let mut n = nat();
    const V: [u8; 4] = [192, 168, 88, 99];
    for id in 0..3 {
        n.outbound(&mut first(V, R, (7, 9), id), 0).unwrap();
    }
    // Ten sources, each over its cap: more than the table holds.
    for k in 0..10u8 {
        let s = [192, 168, 88, 20 + k];
        for id in 0..1100u16 {
            n.outbound(&mut first(s, R, (7, 9), id), 1).unwrap();
        }
    }
    n.frags.check();
    assert_eq!(n.frags.len(), FRAG_MAX);
    assert!(n.stats().frag_evicted_table_full > 0);
    assert!(n.stats().frag_evicted_source_cap > 0);
    for k in 0..10u8 {
        assert!(n.frags.held_by(out_src([192, 168, 88, 20 + k])) <= FRAG_PER_SOURCE);
    }
    assert_eq!(n.frags.held_by(out_src(V)), 3, "the small source kept all");
    for id in 0..3 {
        n.outbound(&mut later(V, R, id), 2).unwrap();
    }
    assert!(
        n.frags.heap_bytes() <= FRAG_BYTES_MAX,
        "{}",
        n.frags.heap_bytes()
    );

    // As many sources as records (the most memory): still bounded, and a
    // full table of one-record sources takes the oldest.
    let mut n = Nat::new(
        NatConfig {
            max_flows: 20_000,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    );
    for i in 0..(FRAG_MAX as u32 + 500) {
        let s = [10, 1, (i >> 8) as u8, i as u8];
        n.outbound(&mut first(s, R, (7, 9), 1), 1).unwrap();
    }
    n.frags.check();
    assert_eq!(n.frags.len(), FRAG_MAX);
    assert_eq!(n.stats().frag_evicted_table_full, 500);
    assert!(
        n.frags.heap_bytes() <= FRAG_BYTES_MAX,
        "{}",
        n.frags.heap_bytes()
    );
}

/// Records live FRAG_TTL_MS; expired ones make room without counting as
/// evictions, and the sweep removes them all.
#[test]
fn fragment_records_expire_and_make_room() {
    let mut n = nat();
    for id in 0..FRAG_PER_SOURCE as u16 {
        n.outbound(&mut first(A, R, (9000, 9), id), 0).unwrap();
    }
    n.outbound(&mut later(A, R, 5), FRAG_TTL_MS - 1).unwrap();
    assert_eq!(
        n.outbound(&mut later(A, R, 6), FRAG_TTL_MS),
        Err(NatDrop::FragmentNoFlow)
    );
    // At its cap, but all expired: the new record takes their place.
    n.outbound(&mut first(A, R, (9000, 9), 60_000), FRAG_TTL_MS)
        .unwrap();
    assert_eq!(n.frags.held_by(out_src(A)), 1);
    assert_eq!(n.stats().frag_evicted_source_cap, 0);
    n.outbound(&mut first(B, R, (9000, 9), 1), FRAG_TTL_MS)
        .unwrap();
    n.frags.check();
    n.expire(2 * FRAG_TTL_MS, 1_000);
    n.expire(2 * FRAG_TTL_MS, 1_000);
    assert_eq!(n.frags.len(), 0);
    n.frags.check();
    // A record whose id comes again is refreshed, not duplicated.
    n.outbound(&mut first(A, R, (9000, 9), 1), 0).unwrap();
    n.outbound(&mut first(A, R, (9000, 9), 1), FRAG_TTL_MS - 1)
        .unwrap();
    assert_eq!(n.frags.len(), 1);
    n.outbound(&mut later(A, R, 1), 2 * FRAG_TTL_MS - 2)
        .unwrap();
}

/// Honest traffic beside a flood loses nothing: 50 MB as 8000-byte UDP
/// datagrams (each a first fragment and five later ones) from A, every
/// later fragment translated, while B floods incomplete first fragments
/// and C, D, ... hold their shares.
#[test]
fn an_honest_fragmented_transfer_loses_nothing_beside_a_flood() {
    let mut n = nat();
    let mut flood_id = 0u16;
    let datagrams = 50_000_000 / 8000;
    for d in 0..datagrams {
        let now = d as Millis; // 1000 datagrams a second
        let id = d as u16; // wraps: ids are reused after 65536
        n.outbound(&mut first(A, R, (9000, 9), id), now).unwrap();
        for k in 0..3 {
            flood_id = flood_id.wrapping_add(1);
            n.outbound(&mut first(B, R, (9001, 9), flood_id), now)
                .unwrap();
            let other = [192, 168, 88, 30 + k];
            n.outbound(&mut first(other, R, (9002, 9), flood_id), now)
                .unwrap();
        }
        for off in 1..6 {
            let mut l = frag(raw_ip(PROTO_UDP, A, R, &[0; 1480]), id, off < 5, off * 1480);
            n.outbound(&mut l, now)
                .unwrap_or_else(|e| panic!("datagram {d}: {e:?}"));
        }
    }
    assert!(n.stats().frag_evicted_source_cap > 0);
    n.frags.check();
}

/// Random records, sweeps and clock: the bookkeeping (lists, counts, the
/// order by count and its bounds) stays consistent, and the caps hold.
#[test]
fn fragment_bookkeeping_stays_consistent() {
    let mut f = Frags::default();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut now = 0;
    for i in 0..60_000u32 {
        now += rnd() % 3;
        // Skewed sources: a few heavy, many light.
        let source = match rnd() % 10 {
            0..=5 => rnd() % 3,
            _ => 3 + rnd() % 40,
        };
        let key = (source as u128) << 64 | (rnd() % 4000) as u128;
        f.record(key, source, i, 0, now);
        if rnd() % 5000 == 0 {
            f.sweep(now);
        }
        if i % 2000 == 0 {
            f.check();
            for s in 0..43 {
                assert!(f.held_by(s) <= FRAG_PER_SOURCE);
            }
        }
        assert_eq!(f.get(key, now), Some((i, 0)));
    }
    f.check();
    f.sweep(now + FRAG_TTL_MS);
    assert_eq!(f.len(), 0);
    f.check();
}
