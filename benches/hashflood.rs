//! Hash flooding (issue 13): do the MAC table and the NAT stay flat under
//! keys crafted to collide?
//!
//! Before 744440e, `hash::FastHasher` started from 0: the hash of a key was a
//! fixed, public function, so anyone choosing keys (a namespace choosing
//! source MACs, a namespace choosing the ports and remote addresses of its
//! flows) could compute offline keys that all fall into one probe sequence of
//! the table. Now every hash starts from a secret drawn at process start.
//!
//! This bench rebuilds the old function ([`OldHasher`], checked against
//! `FastHasher` with secret 0), crafts keys whose OLD hash agrees in the low
//! 17 bits (hashbrown's bucket index in a table of up to 2^17 buckets, so
//! also of every smaller one) and in the top 7 bits (hashbrown's control
//! byte, so every probed slot also matches and costs a key comparison), and
//! measures per operation:
//!
//! * the real tables (seeded): `Fdb` lookup / per-frame learn / filling,
//!   `FastMap<u64, u32>` lookup, `Nat` outbound translation of an existing
//!   flow / new-flow setup, each with random keys and with crafted keys
//!   (expected: the same);
//! * for contrast, a std `HashMap` with the old unseeded hasher holding the
//!   same keys (MACs as `u64`, NAT outbound keys as `u128`): what the attack
//!   did before the seed (expected: lookups cost a scan of the whole
//!   cluster). Filling that map with crafted keys is quadratic, so fills
//!   of it are timed outside criterion (printed: best of 3 fills, one fill
//!   for 100k crafted keys); so are first fills of the real tables.
//!
//! Run: `cargo bench --bench hashflood` (figures in BENCHMARKS.md, "Hash
//! flooding"). Crafting the 100k MACs takes a few seconds (an inversion of
//! the finaliser per candidate, 1 in ~2^17 of which is a unicast MAC).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vswitchd::gateway::nat::{Nat, NatConfig};
use vswitchd::hash::{FastHasher, FastMap};
use vswitchd::switch::Fdb;
use vswitchd::wire::MacAddr;
use vswitchd::wire::ipv4::{Ipv4Hdr, fill_ip_checksum, l4_checksum};

const SIZES: [usize; 2] = [10_000, 100_000];
/// Low bits the crafted keys share: hashbrown's bucket index for a table
/// of 2^17 buckets (100k entries at load factor 7/8), hence also for the
/// 2^14 buckets of 10k entries.
const BUCKET_BITS: u32 = 17;
const BUCKET_TARGET: u64 = 0x0_b00b & ((1 << BUCKET_BITS) - 1);
/// hashbrown's control byte: the top 7 bits of the hash.
const TOP7_TARGET: u64 = 0x5a;

const C1: u64 = 0x9e37_79b9_7f4a_7c15;
const C2: u64 = 0xbf58_476d_1ce4_e5b9;

// ---- the old, unseeded hasher (src/hash.rs before 744440e) ---------------

/// A copy of `FastHasher` as it was before seeding: it starts from 0.
#[derive(Default, Clone, Copy)]
struct OldHasher(u64);

impl Hasher for OldHasher {
    #[inline]
    fn finish(&self) -> u64 {
        old_finish(self.0)
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
        self.0 = self.0.wrapping_mul(C1) ^ (v >> 64) as u64;
    }
}

type OldMap<K> = HashMap<K, u32, BuildHasherDefault<OldHasher>>;

#[inline]
fn old_finish(s: u64) -> u64 {
    let mut x = s.wrapping_mul(C1);
    x ^= x >> 29;
    x = x.wrapping_mul(C2);
    x ^ (x >> 32)
}

/// Multiplicative inverse of an odd number modulo 2^64 (Newton).
const fn inv(c: u64) -> u64 {
    let mut x = c;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
        i += 1;
    }
    x
}
const C1_INV: u64 = inv(C1);
const C2_INV: u64 = inv(C2);

/// The state whose old finaliser gives `h` (the finaliser is a bijection).
#[inline]
fn old_finish_inv(h: u64) -> u64 {
    let x2 = h ^ (h >> 32);
    let x1 = x2.wrapping_mul(C2_INV);
    let x0 = x1 ^ (x1 >> 29) ^ (x1 >> 58);
    x0.wrapping_mul(C1_INV)
}

/// The old hash of a `u64` key: the state is the key itself.
fn old_hash_u64(k: u64) -> u64 {
    old_finish(k)
}

/// The old hash of a `u128` key: state = lo * C1 ^ hi.
fn old_hash_u128(k: u128) -> u64 {
    old_finish((k as u64).wrapping_mul(C1) ^ (k >> 64) as u64)
}

/// A target old hash: the fixed bucket and control bits, `m` in between.
#[inline]
fn target(m: u64) -> u64 {
    (TOP7_TARGET << 57) | (m << BUCKET_BITS) | BUCKET_TARGET
}

fn collides(h: u64) -> bool {
    h & ((1 << BUCKET_BITS) - 1) == BUCKET_TARGET && h >> 57 == TOP7_TARGET
}

// ---- keys ---------------------------------------------------------------

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Random unicast MACs (as `benches/switch.rs` makes them).
fn random_macs(n: usize) -> Vec<u64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| (xorshift(&mut x) & 0xfcff_ffff_ffff) | 0x0200_0000_0000)
        .collect()
}

/// `n` unicast MACs whose old hash lands on one bucket with one control
/// byte: invert the finaliser for every target hash and keep the preimages
/// that fit in 48 bits with the group bit clear (about 1 in 2^17). The
/// targets' middle bits are split between threads.
fn crafted_macs(n: usize) -> Vec<u64> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per = n.div_ceil(threads);
    let span = 1u64 << (64 - 7 - BUCKET_BITS); // middle bits
    let mut out: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads as u64)
            .map(|t| {
                s.spawn(move || {
                    let mut v = Vec::with_capacity(per);
                    let mut m = t * (span / threads as u64);
                    while v.len() < per {
                        let k = old_finish_inv(target(m));
                        if k >> 48 == 0 && (k >> 40) & 1 == 0 && k != 0 {
                            v.push(k);
                        }
                        m += 1;
                    }
                    v
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    out.truncate(n);
    out
}

const IN_IP: [u8; 4] = [192, 168, 88, 11];
const EXT: [u8; 4] = [10, 99, 0, 2];
const UDP: u8 = 17;

/// The NAT's outbound key (a copy of `gateway::nat::out_key`).
fn out_key(proto: u8, in_ip: [u8; 4], in_port: u16, r_ip: [u8; 4], r_port: u16) -> u128 {
    (proto as u128) << 96
        | (u32::from_be_bytes(in_ip) as u128) << 64
        | (in_port as u128) << 48
        | (u32::from_be_bytes(r_ip) as u128) << 16
        | r_port as u128
}

/// A UDP flow of the inside host `IN_IP`: (inside port, remote ip, remote port).
type Flow = (u16, [u8; 4], u16);

/// The flow whose outbound key has low 64 bits `lo`, if it is a plausible
/// one (ports not 0, a unicast remote address outside 0/8, 127/8).
fn flow_of(lo: u64) -> Option<Flow> {
    let (in_port, r_ip, r_port) = (
        (lo >> 48) as u16,
        ((lo >> 16) as u32).to_be_bytes(),
        lo as u16,
    );
    (in_port != 0 && r_port != 0 && (1..224).contains(&r_ip[0]) && r_ip[0] != 127 && r_ip != EXT)
        .then_some((in_port, r_ip, r_port))
}

fn random_flows(n: usize) -> Vec<Flow> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut seen = std::collections::HashSet::new();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        if let Some(f) = flow_of(xorshift(&mut x))
            && seen.insert(f)
        {
            v.push(f);
        }
    }
    v
}

/// Flows of one inside host whose outbound key's old hash lands on one
/// bucket with one control byte. The inside host chooses 64 bits of the key
/// (its port, the remote address and port), exactly the low word: solve
/// lo * C1 ^ hi = finaliser^-1(target) for lo. No search needed beyond
/// skipping implausible flows.
fn crafted_flows(n: usize) -> Vec<Flow> {
    let hi = (out_key(UDP, IN_IP, 0, [0; 4], 0) >> 64) as u64;
    let mut v = Vec::with_capacity(n);
    let mut m = 0u64;
    while v.len() < n {
        let lo = (old_finish_inv(target(m)) ^ hi).wrapping_mul(C1_INV);
        if let Some(f) = flow_of(lo) {
            v.push(f);
        }
        m += 1;
    }
    v
}

fn flow_key(f: &Flow) -> u128 {
    out_key(UDP, IN_IP, f.0, f.1, f.2)
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + 18];
    b[0] = 0x45;
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b[8] = 64;
    b[9] = UDP;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b[20..22].copy_from_slice(&sport.to_be_bytes());
    b[22..24].copy_from_slice(&dport.to_be_bytes());
    b[24..26].copy_from_slice(&(len - 20).to_be_bytes());
    fill_ip_checksum(&mut b, 20);
    let h = Ipv4Hdr::parse(&b).unwrap();
    let c = l4_checksum(&b, &h);
    b[26..28].copy_from_slice(&c.to_be_bytes());
    b
}

fn nat(n: usize) -> Nat {
    Nat::new(
        NatConfig {
            max_flows: 2 * n,
            max_per_inside: 2 * n,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    )
}

// ---- the benches ----------------------------------------------------------

struct Keys {
    macs: [(&'static str, Vec<u64>); 2],
    flows: [(&'static str, Vec<Flow>); 2],
}

fn keys() -> Keys {
    let n = *SIZES.iter().max().unwrap();
    // The local copy is the old hasher: FastHasher with secret 0.
    let old = BuildHasherDefault::<OldHasher>::default();
    let zero = BuildHasherDefault::<FastHasher>::default();
    for k in [1u64, 0x0200_0000_0001, 0xdead_beef_cafe] {
        assert_eq!(old.hash_one(k), zero.hash_one(k));
        assert_eq!(old.hash_one(k), old_hash_u64(k));
        let w = (k as u128) << 64 | (k as u128 * 77);
        assert_eq!(old.hash_one(w), zero.hash_one(w));
        assert_eq!(old.hash_one(w), old_hash_u128(w));
    }
    let t = Instant::now();
    let cm = crafted_macs(n);
    eprintln!(
        "crafted {} MACs in {:.1} s",
        cm.len(),
        t.elapsed().as_secs_f64()
    );
    let cf = crafted_flows(n);
    assert!(cm.iter().all(|&k| collides(old_hash_u64(k))));
    assert!(cf.iter().all(|f| collides(old_hash_u128(flow_key(f)))));
    let mut u = cm.clone();
    u.sort_unstable();
    u.dedup();
    assert_eq!(u.len(), n);
    let k = Keys {
        macs: [("random", random_macs(n)), ("crafted", cm)],
        flows: [("random", random_flows(n)), ("crafted", cf)],
    };
    // Where the keys land, independent of timing: buckets of a 2^17-bucket
    // table used, and the most keys on one bucket, under each hasher.
    let seeded = *FastMap::<u64, u32>::default().hasher();
    for (kind, ms) in &k.macs {
        let (ob, om) = spread(ms.iter().map(|&m| old.hash_one(m)));
        let (sb, sm) = spread(ms.iter().map(|&m| seeded.hash_one(m)));
        eprintln!(
            "{n} {kind} MACs: old hash {ob} buckets (most on one: {om}); \
             seeded {sb} buckets (most on one: {sm})"
        );
    }
    for (kind, fs) in &k.flows {
        let (ob, om) = spread(fs.iter().map(|f| old.hash_one(flow_key(f))));
        let (sb, sm) = spread(fs.iter().map(|f| seeded.hash_one(flow_key(f))));
        eprintln!(
            "{n} {kind} NAT keys: old hash {ob} buckets (most on one: {om}); \
             seeded {sb} buckets (most on one: {sm})"
        );
    }
    k
}

/// Distinct bucket indices (low `BUCKET_BITS`) and the largest count on one.
fn spread(hashes: impl Iterator<Item = u64>) -> (usize, usize) {
    let mut c: HashMap<u64, usize> = HashMap::new();
    for h in hashes {
        *c.entry(h & ((1 << BUCKET_BITS) - 1)).or_default() += 1;
    }
    (c.len(), c.values().copied().max().unwrap_or(0))
}

/// Learn all `keys` into a fresh `Fdb`; time per learn.
fn fill_fdb(keys: &[u64]) -> (Fdb, Duration) {
    let mut f = Fdb::new(u64::MAX / 4, keys.len() * 2);
    let t = Instant::now();
    for (i, &k) in keys.iter().enumerate() {
        black_box(f.learn(MacAddr::from_u64(k), (i % 16) as u16, 0));
    }
    let d = t.elapsed();
    (f, d)
}

fn fill_old<K: std::hash::Hash + Eq + Copy>(keys: &[K]) -> (OldMap<K>, Duration) {
    let mut m = OldMap::default();
    let t = Instant::now();
    for (i, &k) in keys.iter().enumerate() {
        m.insert(k, i as u32);
    }
    let d = t.elapsed();
    (m, d)
}

fn packets(flows: &[Flow]) -> Vec<Vec<u8>> {
    flows
        .iter()
        .map(|&(p, r, rp)| udp(IN_IP, r, p, rp))
        .collect()
}

fn fill_nat(pkts: &[Vec<u8>]) -> (Nat, Duration) {
    let mut n = nat(pkts.len());
    let mut buf = pkts[0].clone();
    let t = Instant::now();
    for p in pkts {
        buf.copy_from_slice(p);
        n.outbound(&mut buf, 0).unwrap();
    }
    let d = t.elapsed();
    (n, d)
}

/// The fastest of `reps` fills (the first one also pays page faults on fresh
/// memory), and its table.
fn best_of<T>(reps: usize, mut fill: impl FnMut() -> (T, Duration)) -> (T, Duration) {
    let mut best = fill();
    for _ in 1..reps {
        let next = fill();
        if next.1 < best.1 {
            best = next;
        }
    }
    best
}

/// Fills of the old map: one when quadratic and large (tens of seconds).
fn old_reps(kind: &str, n: usize) -> usize {
    if kind == "crafted" && n > 10_000 {
        1
    } else {
        3
    }
}

fn per_op(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn hashflood(c: &mut Criterion) {
    let k = keys();
    let mut g = c.benchmark_group("hashflood");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1));
    for &n in &SIZES {
        for (kind, all) in &k.macs {
            let ms = &all[..n];
            // The real MAC table (seeded).
            let (mut f, d) = best_of(3, || fill_fdb(ms));
            eprintln!(
                "fill Fdb, {kind} MACs, {n}: {:.0} ns/learn (best of 3 fills)",
                per_op(d, n)
            );
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(format!("fdb_lookup/{kind}"), n), |b| {
                b.iter(|| {
                    i = (i + 7919) % n;
                    black_box(f.lookup(black_box(MacAddr::from_u64(ms[i])), 1))
                })
            });
            let mut i = 0usize;
            g.bench_function(
                BenchmarkId::new(format!("fdb_learn_known/{kind}"), n),
                |b| {
                    b.iter(|| {
                        i = (i + 7919) % n;
                        black_box(f.learn(black_box(MacAddr::from_u64(ms[i])), (i % 16) as u16, 0))
                    })
                },
            );
            // The seeded map on its own, to compare hashers like for like.
            let mut fm: FastMap<u64, u32> = FastMap::default();
            for (j, &m) in ms.iter().enumerate() {
                fm.insert(m, j as u32);
            }
            let mut i = 0usize;
            g.bench_function(
                BenchmarkId::new(format!("seeded_map_lookup/{kind}"), n),
                |b| {
                    b.iter(|| {
                        i = (i + 7919) % n;
                        black_box(fm.get(black_box(&ms[i])))
                    })
                },
            );
            // The old unseeded hasher: what the attack did.
            let r = old_reps(kind, n);
            let (om, d) = best_of(r, || fill_old(ms));
            eprintln!(
                "fill OLD map, {kind} MACs, {n}: {:.0} ns/insert (best of {r} fills)",
                per_op(d, n)
            );
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(format!("old_map_lookup/{kind}"), n), |b| {
                b.iter(|| {
                    i = (i + 7919) % n;
                    black_box(om.get(black_box(&ms[i])))
                })
            });
        }
        for (kind, all) in &k.flows {
            let fl = &all[..n];
            let pkts = packets(fl);
            // The real NAT (seeded).
            let (mut nt, d) = best_of(3, || fill_nat(&pkts));
            assert_eq!(nt.len(), n);
            eprintln!(
                "fill Nat, {kind} flows, {n}: {:.0} ns/new flow (best of 3 fills)",
                per_op(d, n)
            );
            let mut buf = pkts[0].clone();
            let mut i = 0usize;
            g.bench_function(
                BenchmarkId::new(format!("nat_outbound_existing/{kind}"), n),
                |b| {
                    b.iter(|| {
                        i = (i + 7919) % n;
                        buf.copy_from_slice(&pkts[i]);
                        black_box(nt.outbound(black_box(&mut buf), 1)).unwrap()
                    })
                },
            );
            // The old hasher over the NAT's outbound keys.
            let keys: Vec<u128> = fl.iter().map(flow_key).collect();
            let r = old_reps(kind, n);
            let (om, d) = best_of(r, || fill_old(&keys));
            eprintln!(
                "fill OLD map, {kind} NAT keys, {n}: {:.0} ns/insert (best of {r} fills)",
                per_op(d, n)
            );
            let mut i = 0usize;
            g.bench_function(
                BenchmarkId::new(format!("old_map_nat_lookup/{kind}"), n),
                |b| {
                    b.iter(|| {
                        i = (i + 7919) % n;
                        black_box(om.get(black_box(&keys[i])))
                    })
                },
            );
        }
    }
    g.finish();

    // Filling a table, as a port flooding new source MACs (or a namespace
    // opening flows) does. Criterion times whole fills (construction and
    // drop excluded); throughput is per key, so divide the time by n.
    let mut g = c.benchmark_group("hashflood_fill");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(10);
    for &n in &SIZES {
        g.throughput(Throughput::Elements(n as u64));
        for (kind, all) in &k.macs {
            let ms = &all[..n];
            g.bench_function(BenchmarkId::new(format!("fdb_fill/{kind}"), n), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| fill_fdb(ms).1).sum())
            });
        }
        for (kind, all) in &k.flows {
            let pkts = packets(&all[..n]);
            g.bench_function(BenchmarkId::new(format!("nat_fill/{kind}"), n), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| fill_nat(&pkts).1).sum())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, hashflood);
criterion_main!(benches);
