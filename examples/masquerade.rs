//! One idea: what masquerade does to a packet. A UDP datagram from inside is
//! translated on its way out and the reply on its way back, with checksums
//! updated incrementally. Run: `cargo run --example masquerade`.

use std::net::Ipv4Addr;
use vswitchd::gateway::nat::{Nat, NatConfig};
use vswitchd::wire::ipv4::{Ipv4Hdr, fill_ip_checksum, l4_checksum};

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + 5];
    let total = b.len() as u16;
    b[0] = 0x45;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[8] = 64;
    b[9] = 17;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b[20..22].copy_from_slice(&sport.to_be_bytes());
    b[22..24].copy_from_slice(&dport.to_be_bytes());
    b[24..26].copy_from_slice(&13u16.to_be_bytes());
    b[28..33].copy_from_slice(b"hello");
    fill_ip_checksum(&mut b, 20);
    let c = l4_checksum(&b, &Ipv4Hdr::parse(&b).unwrap());
    b[26..28].copy_from_slice(&c.to_be_bytes());
    b
}

fn show(what: &str, b: &[u8]) {
    let h = Ipv4Hdr::parse(b).unwrap();
    println!(
        "{what:>8}: {}:{} -> {}:{}  (UDP checksum {:#06x}, verifies: {})",
        Ipv4Addr::from(h.src),
        u16::from_be_bytes([b[20], b[21]]),
        Ipv4Addr::from(h.dst),
        u16::from_be_bytes([b[22], b[23]]),
        u16::from_be_bytes([b[26], b[27]]),
        l4_checksum(b, &h) == 0
    );
}

fn main() {
    let mut nat = Nat::new(NatConfig::default(), Some(Ipv4Addr::new(10, 99, 0, 2)));
    let mut out = udp([192, 168, 88, 11], [10, 99, 0, 1], 40000, 53);
    show("inside", &out);
    nat.outbound(&mut out, 0).unwrap();
    show("uplink", &out);
    let mut reply = udp([10, 99, 0, 1], [10, 99, 0, 2], 53, 40000);
    show("reply", &reply);
    nat.inbound(&mut reply, 1).unwrap();
    show("inside", &reply);
    for f in nat.flows(1) {
        println!(
            "flow (as conntrack -L): {} {} {} packets={} {} packets={}",
            f.proto, f.state, f.original, f.packets_out, f.reply, f.packets_in
        );
    }
}
