use super::*;

fn mac(n: u64) -> MacAddr {
    // 02:00:xx:xx:xx:xx, locally administered unicast
    MacAddr::from_u64(0x0200_0000_0000 | n)
}

#[test]
fn learn_lookup_refresh() {
    let mut f = Fdb::new(300_000, 16);
    assert_eq!(f.lookup(mac(1), 0), None);
    assert_eq!(f.learn(mac(1), 3, 0), Learned::New { evicted: None });
    assert_eq!(f.lookup(mac(1), 10), Some(3));
    assert_eq!(f.learn(mac(1), 3, 20), Learned::Refreshed);
    assert_eq!(f.len(), 1);
    assert_eq!(f.stats().learned, 1);
    assert_eq!(f.port_len(3), 1);
}

#[test]
fn multicast_and_zero_sources_are_not_learned() {
    let mut f = Fdb::new(1000, 16);
    assert_eq!(f.learn(MacAddr::BROADCAST, 0, 0), Learned::NotLearnable);
    assert_eq!(
        f.learn("01:00:5e:00:00:fb".parse().unwrap(), 0, 0),
        Learned::NotLearnable
    );
    assert_eq!(f.learn(MacAddr::ZERO, 0, 0), Learned::NotLearnable);
    assert!(f.is_empty());
}

#[test]
fn move_counts_and_relists() {
    let mut f = Fdb::new(1000, 16);
    f.learn(mac(1), 0, 0);
    assert_eq!(f.learn(mac(1), 1, 5), Learned::Moved { from: 0 });
    assert_eq!(f.lookup(mac(1), 6), Some(1));
    assert_eq!(f.stats().moved, 1);
    assert_eq!(f.port_len(0), 0);
    assert_eq!(f.port_len(1), 1);
}

#[test]
fn aging_with_warped_clock() {
    let mut f = Fdb::new(1000, 16);
    f.learn(mac(1), 0, 0);
    f.learn(mac(2), 1, 500);
    assert_eq!(f.next_expiry(), Some(1000));
    assert_eq!(f.lookup(mac(1), 999), Some(0));
    // Aged entries are invisible before expire() runs...
    assert_eq!(f.lookup(mac(1), 1000), None);
    assert_eq!(f.entries(1000).len(), 1);
    // ...and expire() removes exactly the aged ones.
    assert_eq!(f.expire(1000), 1);
    assert_eq!(f.len(), 1);
    assert_eq!(f.next_expiry(), Some(1500));
    // A refresh pushes the expiry out.
    f.learn(mac(2), 1, 1400);
    assert_eq!(f.expire(1600), 0);
    assert_eq!(f.expire(2400), 1);
    assert!(f.is_empty());
    assert_eq!(f.stats().expired, 2);
    assert_eq!(f.next_expiry(), None);
}

#[test]
fn static_entries_never_age_or_move() {
    let mut f = Fdb::new(1000, 16);
    f.add_static(mac(9), 2).unwrap();
    assert_eq!(f.learn(mac(9), 0, 10), Learned::Static);
    assert_eq!(f.lookup(mac(9), 1_000_000), Some(2));
    assert_eq!(f.expire(1_000_000), 0);
    assert_eq!(f.flush(None), 0);
    assert_eq!(
        f.entries(5),
        vec![EntryView {
            mac: mac(9),
            port: 2,
            age_ms: None
        }]
    );
    assert!(f.remove(mac(9)));
    assert!(!f.remove(mac(9)));
    assert!(f.is_empty());
    assert_eq!(
        f.add_static(MacAddr::BROADCAST, 0),
        Err(FdbError::NotUnicast(MacAddr::BROADCAST))
    );
}

#[test]
fn static_replaces_dynamic() {
    let mut f = Fdb::new(1000, 16);
    f.learn(mac(1), 0, 0);
    f.add_static(mac(1), 1).unwrap();
    assert_eq!(f.port_len(0), 0);
    assert_eq!(f.lookup(mac(1), 5000), Some(1));
    assert_eq!(f.len(), 1);
}

#[test]
fn full_table_evicts_from_biggest_port_lru_first() {
    let mut f = Fdb::new(1_000_000, 6);
    // Port 0 holds two entries, port 1 holds one.
    f.learn(mac(100), 0, 0);
    f.learn(mac(101), 0, 1);
    f.learn(mac(200), 1, 2);
    // Port 2 floods: it fills the table and then evicts its own entries,
    // oldest first, never port 0's or port 1's.
    for i in 0..1000u64 {
        f.learn(mac(10_000 + i), 2, 10 + i);
        assert!(f.len() <= 6);
    }
    assert_eq!(f.lookup(mac(100), 2000), Some(0));
    assert_eq!(f.lookup(mac(101), 2000), Some(0));
    assert_eq!(f.lookup(mac(200), 2000), Some(1));
    assert_eq!(f.port_len(2), 3);
    // The three most recent flood entries survive.
    for i in 997..1000u64 {
        assert_eq!(f.lookup(mac(10_000 + i), 2000), Some(2));
    }
    assert_eq!(f.stats().evicted, 997);
}

#[test]
fn eviction_prefers_oldest_of_largest_port() {
    let mut f = Fdb::new(1_000_000, 3);
    f.learn(mac(1), 0, 0);
    f.learn(mac(2), 0, 1);
    f.learn(mac(3), 1, 2);
    // Refresh mac(1) (past the 1 s refresh grain) so mac(2) is port 0's
    // LRU entry.
    assert_eq!(f.learn(mac(1), 0, 5_000), Learned::Refreshed);
    assert_eq!(
        f.learn(mac(4), 1, 5_001),
        Learned::New {
            evicted: Some((mac(2), 0))
        }
    );
    assert_eq!(f.lookup(mac(1), 5_002), Some(0));
}

#[test]
fn refresh_within_grain_does_not_move_expiry() {
    // aging 6400 ms -> grain 100 ms.
    let mut f = Fdb::new(6_400, 16);
    f.learn(mac(1), 0, 0);
    f.learn(mac(1), 0, 99);
    assert_eq!(f.next_expiry(), Some(6_400));
    f.learn(mac(1), 0, 100);
    assert_eq!(f.next_expiry(), Some(6_500));
}

#[test]
fn table_full_of_statics_refuses_learning() {
    let mut f = Fdb::new(1000, 2);
    f.add_static(mac(1), 0).unwrap();
    f.add_static(mac(2), 0).unwrap();
    assert_eq!(f.learn(mac(3), 1, 0), Learned::Refused);
    assert_eq!(f.stats().refused, 1);
    assert_eq!(f.add_static(mac(3), 0), Err(FdbError::Full(2)));
}

#[test]
fn flush_by_port_and_forget_port() {
    let mut f = Fdb::new(1000, 16);
    f.learn(mac(1), 0, 0);
    f.learn(mac(2), 1, 0);
    f.learn(mac(3), 1, 0);
    f.add_static(mac(4), 1).unwrap();
    assert_eq!(f.flush(Some(1)), 2);
    assert_eq!(f.lookup(mac(1), 1), Some(0));
    assert_eq!(f.lookup(mac(4), 1), Some(1));
    assert_eq!(f.forget_port(1), 1);
    assert_eq!(f.len(), 1);
    assert_eq!(f.flush(None), 1);
    assert!(f.is_empty());
    // Slots are reused after removal.
    f.learn(mac(5), 0, 0);
    assert_eq!(f.slots.len(), 4);
}

/// Randomised cross-check against a naive model (map + timestamps).
#[test]
fn matches_naive_model() {
    use std::collections::HashMap as Model;
    let mut f = Fdb::new(50, 1_000);
    let mut model: Model<u64, (PortId, Millis)> = Model::new();
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut now = 0;
    for _ in 0..20_000 {
        now += next() % 3;
        let m = next() % 64;
        let p = (next() % 4) as PortId;
        f.learn(mac(m), p, now);
        model.insert(m, (p, now));
        if next() % 10 == 0 {
            f.expire(now);
        }
        let q = next() % 64;
        let want = model.get(&q).filter(|(_, t)| now - t < 50).map(|(p, _)| *p);
        assert_eq!(f.lookup(mac(q), now), want);
    }
    f.expire(now);
    let live = model.values().filter(|(_, t)| now - t < 50).count();
    assert_eq!(f.len(), live);
    let listed: usize = (0..4).map(|p| f.port_len(p)).sum();
    assert_eq!(listed, live);
}

/// The reporting accessors say what the table was built with and what
/// it holds (`vswitchctl fdb show` and the metrics print them).
#[test]
fn accessors_report_configuration_and_contents() {
    let f = Fdb::new(300_000, 8192);
    assert_eq!(f.aging_ms(), 300_000);
    assert_eq!(f.max_entries(), 8192);
    assert!(f.is_empty());
    assert_eq!(f.len(), 0);
    assert_eq!(Fdb::new(2_000, 0).max_entries(), 1, "at least 1");
    assert_eq!(Fdb::new(2_000, 7).max_entries(), 7);
    let mut f = Fdb::new(2_000, 8);
    f.learn(mac(1), 3, 0);
    assert!(!f.is_empty());
    assert_eq!(f.len(), 1);
    assert_eq!(f.port_len(3), 1);
    assert_eq!(f.port_len(2), 0);
    assert_eq!(f.port_len(99), 0, "a port never seen");
}

/// `heap_bytes` is the sum of what each structure has allocated.
#[test]
fn heap_bytes_counts_every_structure() {
    let mut f = Fdb::new(1000, 10_000);
    assert_eq!(f.heap_bytes(), 0, "nothing allocated yet");
    for i in 0..1000 {
        f.learn(mac(i + 1), (i % 5) as PortId, 0);
    }
    for i in 0..10 {
        f.remove(mac(i + 1));
    }
    let entry = std::mem::size_of::<Entry>();
    let list = std::mem::size_of::<PortList>();
    let bucket = std::mem::size_of::<(u64, u32)>() + 1;
    assert!(f.free.capacity() > 0 && f.lists.capacity() >= 5);
    let want = f.slots.capacity() * entry
        + f.map.capacity() * bucket
        + f.free.capacity() * 4
        + f.lists.capacity() * list;
    assert_eq!(f.heap_bytes(), want);
    // And a plausible figure per entry (the benches print it).
    let per = f.heap_bytes() / f.len();
    assert!((30..200).contains(&per), "{per} bytes per entry");
}

/// `forget_port` removes that port's entries, static ones included, and
/// nothing of any other port (static or not).
#[test]
fn forget_port_keeps_other_ports_statics() {
    let mut f = Fdb::new(1000, 16);
    f.add_static(mac(1), 0).unwrap();
    f.learn(mac(2), 0, 0);
    f.add_static(mac(3), 1).unwrap();
    f.learn(mac(4), 1, 0);
    f.learn(mac(5), 1, 0);
    assert_eq!(f.forget_port(1), 3);
    assert_eq!(f.lookup(mac(1), 1), Some(0));
    assert_eq!(f.lookup(mac(2), 1), Some(0));
    assert_eq!(f.lookup(mac(3), 1), None);
    assert_eq!(f.len(), 2);
    assert_eq!(f.port_len(1), 0);
}

/// A port whose list exists but is empty (its only entry became static)
/// is never chosen for eviction: a table full of statics refuses.
#[test]
fn eviction_skips_ports_with_no_dynamic_entries() {
    let mut f = Fdb::new(1000, 2);
    f.learn(mac(1), 1, 0);
    f.add_static(mac(1), 1).unwrap();
    f.add_static(mac(2), 0).unwrap();
    assert_eq!(f.port_len(1), 0);
    assert_eq!(f.learn(mac(3), 2, 0), Learned::Refused);
    assert_eq!(f.stats().evicted, 0);
    assert_eq!(f.len(), 2);
}

/// `next_expiry` is the oldest dynamic entry's last sighting + aging.
#[test]
fn next_expiry_is_the_oldest_entry_plus_aging() {
    let mut f = Fdb::new(1000, 16);
    assert_eq!(f.next_expiry(), None);
    f.add_static(mac(9), 0).unwrap();
    assert_eq!(f.next_expiry(), None, "statics never expire");
    f.learn(mac(1), 0, 50);
    f.learn(mac(2), 1, 20);
    f.learn(mac(3), 1, 70);
    assert_eq!(f.next_expiry(), Some(1020));
    assert_eq!(f.expire(1019), 0);
    assert_eq!(f.expire(1020), 1);
    assert_eq!(f.stats().expired, 1);
    assert_eq!(f.next_expiry(), Some(1050));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Learn(u64, PortId),
        Static(u64, PortId),
        Remove(u64),
        Flush(Option<PortId>),
        Forget(PortId),
        Expire,
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (1..40u64, 0..4 as PortId).prop_map(|(m, p)| Op::Learn(m, p)),
            1 => (1..40u64, 0..4 as PortId).prop_map(|(m, p)| Op::Static(m, p)),
            1 => (1..40u64).prop_map(Op::Remove),
            1 => proptest::option::of(0..4 as PortId).prop_map(Op::Flush),
            1 => (0..4 as PortId).prop_map(Op::Forget),
            1 => Just(Op::Expire),
            3 => (0..400u64).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Against a naive model (with a table large enough never to
        /// evict): every lookup, every count and `entries` agree.
        #[test]
        fn table_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
            use std::collections::HashMap;
            let aging = 1000;
            let mut f = Fdb::new(aging, 1000);
            // mac -> (port, last_seen, static)
            let mut m: HashMap<u64, (PortId, Millis, bool)> = HashMap::new();
            let mut now = 0;
            let live = |e: &(PortId, Millis, bool), now: Millis| e.2 || now - e.1 < aging;
            for o in ops {
                match o {
                    Op::Learn(x, p) => {
                        let r = f.learn(mac(x), p, now);
                        match m.get(&x).copied() {
                            Some((_, _, true)) => prop_assert_eq!(r, Learned::Static),
                            Some((q, t, false)) if q == p => {
                                prop_assert_eq!(r, Learned::Refreshed);
                                // refreshed at the table's grain (<= aging/64)
                                if now - t >= f.refresh_ms { m.insert(x, (p, now, false)); }
                            }
                            Some((q, _, false)) => {
                                prop_assert_eq!(r, Learned::Moved { from: q });
                                m.insert(x, (p, now, false));
                            }
                            None => {
                                prop_assert_eq!(r, Learned::New { evicted: None });
                                m.insert(x, (p, now, false));
                            }
                        }
                    }
                    Op::Static(x, p) => {
                        f.add_static(mac(x), p).unwrap();
                        m.insert(x, (p, 0, true));
                    }
                    Op::Remove(x) => prop_assert_eq!(f.remove(mac(x)), m.remove(&x).is_some()),
                    Op::Flush(p) => {
                        let before = m.len();
                        m.retain(|_, e| e.2 || p.is_some_and(|p| e.0 != p));
                        prop_assert_eq!(f.flush(p), before - m.len());
                    }
                    Op::Forget(p) => {
                        let before = m.len();
                        m.retain(|_, e| e.0 != p);
                        prop_assert_eq!(f.forget_port(p), before - m.len());
                    }
                    Op::Expire => {
                        let before = m.len();
                        m.retain(|_, e| live(e, now));
                        prop_assert_eq!(f.expire(now), before - m.len());
                    }
                    Op::Tick(d) => now += d,
                }
                prop_assert_eq!(f.len(), m.len());
                prop_assert_eq!(f.is_empty(), m.is_empty());
                // Internal bookkeeping: the static count (unread
                // outside the table today) stays true.
                prop_assert_eq!(f.statics, m.values().filter(|e| e.2).count());
                for p in 0..4 {
                    prop_assert_eq!(f.port_len(p), m.values().filter(|e| !e.2 && e.0 == p).count());
                }
                for x in 1..40 {
                    let want = m.get(&x).filter(|e| live(e, now)).map(|e| e.0);
                    prop_assert_eq!(f.lookup(mac(x), now), want);
                }
                let mut want: Vec<(u64, PortId, Option<Millis>)> = m
                    .iter()
                    .filter(|(_, e)| live(e, now))
                    .map(|(x, e)| (*x, e.0, (!e.2).then(|| now - e.1)))
                    .collect();
                want.sort_by_key(|w| (w.1, w.0));
                let got: Vec<(u64, PortId, Option<Millis>)> = f
                    .entries(now)
                    .iter()
                    .map(|v| (v.mac.as_u64() & 0xff_ffff, v.port, v.age_ms))
                    .collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
