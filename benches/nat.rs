//! Criterion benches for the NAT: translation per packet (outbound and
//! inbound, existing flow), new-flow setup, and a table of 1M flows (lookup
//! time, bytes per flow, printed once).
//!
//! Run: `cargo bench --bench nat` (figures in BENCHMARKS.md).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;
use vswitchd::gateway::nat::{Nat, NatConfig};
use vswitchd::wire::ipv4::{Ipv4Hdr, fill_ip_checksum, l4_checksum};

const EXT: [u8; 4] = [10, 99, 0, 2];

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + 18];
    b[0] = 0x45;
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b[8] = 64;
    b[9] = 17;
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

fn nat(max: usize) -> Nat {
    Nat::new(
        NatConfig {
            max_flows: max,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    )
}

fn per_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let mut n = nat(65_536);
    let out_tpl = udp([192, 168, 88, 11], [10, 99, 0, 1], 40_000, 53);
    let mut buf = out_tpl.clone();
    n.outbound(&mut buf, 0).unwrap();
    let in_tpl = udp([10, 99, 0, 1], EXT, 53, 40_000);
    g.bench_function("outbound_existing_flow", |b| {
        b.iter(|| {
            buf.copy_from_slice(&out_tpl);
            black_box(n.outbound(black_box(&mut buf), 1)).unwrap()
        })
    });
    g.bench_function("inbound_existing_flow", |b| {
        b.iter(|| {
            buf.copy_from_slice(&in_tpl);
            black_box(n.inbound(black_box(&mut buf), 1)).unwrap()
        })
    });
    let mut fresh = nat(1 << 20);
    let mut k: u32 = 0;
    // A new inside address/port each time, written into the template (the
    // NAT does not verify checksums, it updates them incrementally).
    g.bench_function("new_flow_setup", |b| {
        b.iter(|| {
            k += 1;
            if k.is_multiple_of(500_000) {
                fresh.flush();
            }
            buf.copy_from_slice(&out_tpl);
            buf[12..16].copy_from_slice(&[192, 168, (k >> 16) as u8, (k >> 8) as u8]);
            buf[20..22].copy_from_slice(&(1024 + (k & 0xff) as u16).to_be_bytes());
            // Spread over remote ports, as real traffic is.
            buf[22..24].copy_from_slice(&(1 + (k % 60_000) as u16).to_be_bytes());
            black_box(fresh.outbound(&mut buf, 1)).unwrap()
        })
    });
    g.finish();
}

fn million_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat_1m");
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    const N: u32 = 1_000_000;
    let mut n = nat(N as usize + 1);
    // 1M flows: 1000 inside hosts x 1000 ports, to 100 remote hosts.
    let flow = |i: u32| {
        (
            [10, 1, ((i / 1000) >> 8) as u8, (i / 1000) as u8],
            10_000 + (i % 1000) as u16,
            [10, 99, 1, (i % 100) as u8],
        )
    };
    for i in 0..N {
        let (ip, port, remote) = flow(i);
        n.outbound(&mut udp(ip, remote, port, 53), 0).unwrap();
    }
    eprintln!(
        "nat: {} flows, ~{} heap bytes per flow",
        n.len(),
        n.heap_bytes() / n.len()
    );
    let pkts: Vec<Vec<u8>> = (0..4096u32)
        .map(|j| {
            let (ip, port, remote) = flow(j.wrapping_mul(2_654_435_761) % N);
            udp(ip, remote, port, 53)
        })
        .collect();
    let mut buf = pkts[0].clone();
    let mut j = 0;
    g.bench_function("outbound_lookup_in_1m", |b| {
        b.iter(|| {
            j = (j + 1) % pkts.len();
            buf.copy_from_slice(&pkts[j]);
            black_box(n.outbound(&mut buf, 1)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, per_packet, million_flows);
criterion_main!(benches);
