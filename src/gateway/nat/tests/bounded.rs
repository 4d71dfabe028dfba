//! The table's memory stays where its bound puts it under churn: the
//! eviction queue and the two flow maps never outgrow what they were
//! given at start (the soak's RSS steps were these two growing).

use super::*;

fn cfg(max_flows: usize, max_per_inside: usize) -> NatConfig {
    NatConfig {
        max_flows,
        max_per_inside,
        timeouts: NatTimeouts {
            udp: 1_000,
            ..NatTimeouts::default()
        },
        ..NatConfig::default()
    }
}

/// A port churning at its share, never answered, its flows expiring (the
/// soak's UDP churn): the table never fills, so no early drop pops the
/// queue; the queue is compacted at its bound instead of at twice the
/// table, and keeps its first allocation.
#[test]
fn the_eviction_queue_stays_within_its_bound() {
    let mut n = Nat::new(cfg(1024, 256), Some(EXT.into()));
    let cap = n.order.capacity();
    assert!(cap >= order_bound(1024));
    let mut longest = 0;
    for i in 0..200_000u32 {
        let now = i as Millis;
        let _ = n.outbound(&mut udp(A, R, 1024 + (i % 60_000) as u16, 53, b""), now);
        n.expire(now, 64);
        longest = longest.max(n.order.len());
        assert_eq!(n.order.capacity(), cap, "the queue reallocated at {i}");
    }
    assert!(n.stats().created > 40_000, "{:?}", n.stats());
    assert!(longest <= order_bound(1024), "{longest}");
    assert!(longest > 1024, "compacted only at its bound: {longest}");
    // What is left in it still serves a full table: other ports fill it,
    // and a newcomer takes the oldest unreplied flow, one of A's.
    let a_live = n.held_by(A);
    let mut k = 0u16;
    while n.len() < 1024 {
        let port = [192, 168, 88, 20 + (k / 256) as u8];
        n.outbound(&mut udp(port, R, 20_000 + k, 53, b""), 200_000)
            .unwrap();
        k += 1;
    }
    n.outbound(&mut udp([192, 168, 88, 99], R, 9, 53, b""), 200_000)
        .unwrap();
    assert_eq!(n.stats().early_dropped, 1);
    assert_eq!(n.held_by(A), a_live - 1, "A's oldest went first");
}

/// A full table churning through early drop: the maps stay at 2,048
/// buckets. (Left to hashbrown, tombstones use up their room and, a map
/// being over half full, it doubles to 4,096.) Every live flow is still
/// found after the rebuilds.
#[test]
fn flow_maps_never_outgrow_their_bound_under_churn() {
    let mut n = Nat::new(cfg(1024, 1024), Some(EXT.into()));
    let (out0, in0) = (n.out_map.capacity(), n.in_map.capacity());
    assert_eq!(map_buckets(out0), 2048);
    // Two ports, neither near its share: the table is what is full.
    let inside = |i: u32| if i.is_multiple_of(2) { A } else { B };
    let pkt = |i: u32| {
        let (sport, dport) = (1024 + (i % 60_000) as u16, 1 + (i / 60_000) as u16);
        udp(inside(i), R, sport, dport, b"")
    };
    const N: u32 = 300_000;
    for i in 0..N {
        n.outbound(&mut pkt(i), 0).unwrap();
        assert!(n.out_map.capacity() <= out0, "out_map grew at {i}");
        assert!(n.in_map.capacity() <= in0, "in_map grew at {i}");
    }
    assert_eq!(n.len(), 1024);
    assert_eq!(n.stats().early_dropped, (N - 1024) as u64);
    // The newest 1024 are the live ones, each found both ways.
    let created = n.stats().created;
    for i in N - 1024..N {
        let mut b = pkt(i);
        n.outbound(&mut b, 1).unwrap();
        let ext_port = u16::from_be_bytes([b[20], b[21]]);
        let mut back = udp(R, EXT, 1 + (i / 60_000) as u16, ext_port, b"");
        n.inbound(&mut back, 1).unwrap();
        assert_eq!(back[16..20], inside(i), "the reply to {i} went back");
    }
    assert_eq!(n.stats().created, created, "no flow was created again");
}

/// The default table's maps are sized for its bound at start; a larger
/// table's (and its queue) start at the default's size and grow by
/// doubling, as hashbrown would grow them, up to their bound.
#[test]
fn maps_are_presized_up_to_the_cap_then_double() {
    let d = Nat::new(NatConfig::default(), Some(EXT.into()));
    assert!(d.in_map.capacity() >= map_bound(65_536));
    assert_eq!(map_buckets(d.in_map.capacity()), 131_072);
    let mut n = Nat::new(cfg(1_000_000, 1_000_000), Some(EXT.into()));
    assert_eq!(map_buckets(n.out_map.capacity()), 131_072);
    assert_eq!(n.order.capacity(), order_bound(65_536), "not 1M's");
    let mut seen = vec![];
    for i in 0..150_000u32 {
        let r = [10, 99, 1 + (i / 50_000) as u8, 1];
        n.outbound(&mut udp(A, r, 1024 + (i % 50_000) as u16, 53, b""), 0)
            .unwrap();
        let b = map_buckets(n.out_map.capacity());
        if seen.last() != Some(&b) {
            seen.push(b);
        }
    }
    // 150,000 entries: 262,144 buckets, reached by one doubling.
    assert_eq!(seen, [131_072, 262_144]);
    assert_eq!(map_buckets(n.in_map.capacity()), 262_144);
}
