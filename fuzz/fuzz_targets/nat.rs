//! Any bytes as an IPv4 packet through the NAT both ways (and partial
//! checksum mode): never a panic, and a packet the NAT accepts outbound
//! keeps its length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use vswitchd::gateway::nat::{Dir, Nat, NatConfig};

fuzz_target!(|data: &[u8]| {
    let mut nat = Nat::new(
        NatConfig {
            max_flows: 16,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::new(10, 99, 0, 2)),
    );
    let mut b = data.to_vec();
    if nat.outbound(&mut b, 0).is_ok() {
        assert_eq!(b.len(), data.len());
    }
    let _ = nat.peek(data, Dir::Out, 1);
    let _ = nat.peek(data, Dir::In, 1);
    let mut b = data.to_vec();
    let _ = nat.inbound(&mut b, 1);
    let mut b = data.to_vec();
    let _ = nat.outbound_partial(&mut b, 2);
    let mut b = data.to_vec();
    let _ = nat.inbound_partial(&mut b, 2);
    nat.expire(1_000_000_000, 64);
});
