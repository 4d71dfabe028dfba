//! Criterion benches for the pure core and the in-memory pipeline:
//! MAC-table lookup and learn at 1k / 100k / 1M entries (and bytes per
//! entry, printed once per size), the forwarding decision, and whole frames
//! through `Switch` with in-memory ports (frames per second), and the UDP
//! coalescer (`wire::coalesce`: 16 datagrams gathered and one super-frame
//! made, per datagram).
//!
//! Run: `cargo bench --bench switch` (figures in BENCHMARKS.md).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;
use vswitchd::datapath::{PortInfo, Switch};
use vswitchd::gateway::{Gateway, GatewayConfig};
use vswitchd::port::mem::MemPort;
use vswitchd::switch::{Fdb, decide};
use vswitchd::wire::MacAddr;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Distinct unicast MACs spread like real ones (random low bits).
fn macs(n: usize) -> Vec<MacAddr> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            MacAddr::from_u64((x & 0xfcff_ffff_ffff) | 0x0200_0000_0000)
        })
        .collect()
}

fn filled(n: usize) -> (Fdb, Vec<MacAddr>) {
    let ms = macs(n);
    let mut f = Fdb::new(u64::MAX / 4, n * 2);
    for (i, m) in ms.iter().enumerate() {
        f.learn(*m, (i % 16) as u16, 0);
    }
    (f, ms)
}

fn fdb_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    for &n in &SIZES {
        let (mut f, ms) = filled(n);
        eprintln!(
            "fdb size {n}: {} entries, ~{} heap bytes per entry",
            f.len(),
            f.heap_bytes() / f.len()
        );
        g.throughput(Throughput::Elements(1));
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("lookup_hit", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 7919) % ms.len();
                black_box(f.lookup(black_box(ms[i]), 1))
            })
        });
        // Same MAC, same port, within the refresh grain: the per-frame case.
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("learn_known", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 7919) % ms.len();
                black_box(f.learn(black_box(ms[i]), (i % 16) as u16, 0))
            })
        });
        // Past the grain: re-timestamp and relink in the port's LRU list.
        let mut i = 0usize;
        let mut now = 0u64;
        g.bench_with_input(BenchmarkId::new("learn_refresh_relink", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 7919) % ms.len();
                now += 1_000_000;
                black_box(f.learn(black_box(ms[i]), (i % 16) as u16, now))
            })
        });
        // New MACs at a full table: every learn evicts (the MAC-flood case).
        let mut full = Fdb::new(u64::MAX / 4, n);
        for (i, m) in ms.iter().enumerate() {
            full.learn(*m, (i % 16) as u16, 0);
        }
        let mut k = 0u64;
        g.bench_with_input(BenchmarkId::new("learn_new_evicting", n), &n, |b, _| {
            b.iter(|| {
                k += 1;
                black_box(full.learn(MacAddr::from_u64(0x0600_0000_0000 | k), 3, k))
            })
        });
    }
    g.finish();
}

fn eth(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst.to_bytes());
    f[6..12].copy_from_slice(&src.to_bytes());
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

fn decide_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    g.measurement_time(Duration::from_secs(3));
    let (mut f, ms) = filled(1_000);
    let known = eth(ms[1], ms[0]);
    let bcast = eth(MacAddr::BROADCAST, ms[0]);
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide_known_unicast_1k", |b| {
        b.iter(|| black_box(decide(&mut f, black_box(&known), 0, Some(1500), 1)))
    });
    g.bench_function("decide_broadcast_1k", |b| {
        b.iter(|| black_box(decide(&mut f, black_box(&bcast), 0, Some(1500), 1)))
    });
    g.finish();
}

/// The gateway of the pipeline benches (no uplink).
fn bench_gateway() -> Gateway {
    Gateway::new(
        GatewayConfig {
            lan_mac: MacAddr::stable_local("gw"),
            lan_ip: Ipv4Addr::new(10, 0, 0, 254),
            subnet: "10.0.0.0/24".parse().unwrap(),
            lan_mtu: 1500,
            wan: None,
            nat: None,
        },
        0,
    )
}

fn pipeline_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.measurement_time(Duration::from_secs(3));
    let mut sw: Switch<MemPort, MemPort> =
        Switch::new(Fdb::new(300_000, 8192), 1500, bench_gateway(), None);
    let mut ids = Vec::new();
    let mut port_macs = Vec::new();
    for i in 0..4 {
        let p = MemPort::default(); // keep_tx = false: count, do not store
        let name = format!("p{i}");
        let mac = MacAddr::stable_local(&name);
        port_macs.push(mac);
        ids.push(sw.add_port(
            p,
            PortInfo {
                name,
                ifname: "eth0".into(),
                mac,
                addr: Ipv4Addr::new(10, 0, 0, 1 + i as u8),
                prefix_len: 24,
                security: false,
            },
        ));
    }
    // Learn every port's MAC.
    for (i, m) in port_macs.iter().enumerate() {
        sw.inject(ids[i], &eth(MacAddr::BROADCAST, *m), 0);
    }
    for (label, len) in [("unicast_64B", 64usize), ("unicast_1514B", 1514)] {
        let mut frames = Vec::new();
        for i in 0..4 {
            let mut f = eth(port_macs[(i + 1) % 4], port_macs[i]);
            f.resize(len, 0);
            frames.push(f);
        }
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function(label, |b| {
            b.iter(|| {
                for (i, f) in frames.iter().enumerate() {
                    sw.inject(ids[i], black_box(f), 1);
                }
            })
        });
    }
    let flood = eth(MacAddr::BROADCAST, port_macs[0]);
    g.throughput(Throughput::Elements(1));
    g.bench_function("broadcast_to_3_ports", |b| {
        b.iter(|| sw.inject(ids[0], black_box(&flood), 1))
    });
    // A worker's batch (`--workers`): 8 frames of 64 bytes read from one
    // port's queue, forwarded under the switch with what goes to other
    // two-queue ports deferred into its TxBatch (one copy more per frame).
    let mut wsw: Switch<MemPort, MemPort> =
        Switch::new(Fdb::new(300_000, 8192), 1500, bench_gateway(), None);
    wsw.set_queue_sync(
        std::sync::Arc::new(vswitchd::datapath::queues::QueueSync::new(1).unwrap()),
        1,
    );
    let mut wids = Vec::new();
    for (i, m) in port_macs.iter().enumerate() {
        let p = MemPort::default();
        p.0.borrow_mut().queues = 2;
        wids.push(wsw.add_port(
            p,
            PortInfo {
                name: format!("p{i}"),
                ifname: "eth0".into(),
                mac: *m,
                addr: Ipv4Addr::new(10, 0, 0, 1 + i as u8),
                prefix_len: 24,
                security: false,
            },
        ));
        wsw.inject(wids[i], &eth(MacAddr::BROADCAST, *m), 0);
    }
    let mut frame = eth(port_macs[1], port_macs[0]);
    frame.resize(64, 0);
    let mut ring = vswitchd::port::FrameRing::new(8, vswitchd::datapath::FRAME_BUF);
    let mut batch = vswitchd::datapath::TxBatch::new(1);
    g.throughput(Throughput::Elements(8));
    g.bench_function("worker_batch_8x64B", |b| {
        b.iter(|| {
            ring.clear();
            for _ in 0..8 {
                ring.put(black_box(&frame));
            }
            batch.clear();
            wsw.forward_ring(wids[0], &mut ring, &mut batch, 1)
        })
    });
    g.finish();
}

/// 16 datagrams of 64 bytes, as a namespace hands them over (checksum left
/// to offload), gathered into one run and made a super-frame.
fn coalesce_bench(c: &mut Criterion) {
    use vswitchd::wire::checksum;
    use vswitchd::wire::coalesce::UdpRun;
    use vswitchd::wire::ipv4::fill_ip_checksum;
    use vswitchd::wire::vnet::{F_NEEDS_CSUM, VNET_HDR_LEN, VnetHdr};
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..VnetHdr::default()
    };
    let frames: Vec<Vec<u8>> = (0..16u16)
        .map(|i| {
            let mut f = vec![0u8; VNET_HDR_LEN];
            hdr.write(&mut f);
            f.extend_from_slice(&[
                2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 92,
            ]);
            f.extend_from_slice(&i.to_be_bytes());
            f.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            f.extend_from_slice(&[0x13, 0x88, 0x14, 0x51, 0, 72]);
            let pseudo = checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 72);
            f.extend_from_slice(&(!checksum::finish(pseudo)).to_be_bytes());
            f.extend_from_slice(&[0x5a; 64]);
            fill_ip_checksum(&mut f[VNET_HDR_LEN + 14..], 20);
            f
        })
        .collect();
    let mut run = UdpRun::new();
    let mut g = c.benchmark_group("coalesce");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("push_take_16x64B", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(run.push(&hdr, black_box(f)));
            }
            black_box(run.take().map(|(w, n, _)| (w.len(), n)))
        })
    });
    assert_eq!(run.segs(), 0);
    g.finish();
}

criterion_group!(
    benches,
    fdb_benches,
    decide_bench,
    pipeline_bench,
    coalesce_bench
);
criterion_main!(benches);
