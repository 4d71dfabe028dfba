//! Gateway tests: frames in, frames out, no I/O.

use super::*;
use crate::wire::checksum;
use crate::wire::ipv4::{ICMP_ECHO_REPLY, fill_ip_checksum, ip_checksum_ok, l4_checksum};

const GW_MAC: &str = "02:00:00:00:00:01";
const WAN_MAC: &str = "02:00:00:00:00:02";
const NS1_MAC: &str = "02:00:00:00:00:11";
const HOST_MAC: &str = "02:00:00:00:00:99";
const NS1: [u8; 4] = [192, 168, 88, 11];
const GW: [u8; 4] = [192, 168, 88, 1];
const UPLINK: [u8; 4] = [10, 99, 0, 2];
const HOST: [u8; 4] = [10, 99, 0, 1];

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn gateway(wan: bool, nat: bool) -> Gateway {
    Gateway::new(
        GatewayConfig {
            lan_mac: mac(GW_MAC),
            lan_ip: Ipv4Addr::from(GW),
            subnet: "192.168.88.0/24".parse().unwrap(),
            lan_mtu: 1500,
            wan: wan.then(|| WanConfig {
                ifname: "up0".into(),
                mac: mac(WAN_MAC),
                addr: WanAddr::Static(Ipv4Addr::from(UPLINK), 24),
                gw: None,
                mtu: 1500,
            }),
            nat: nat.then(NatConfig::default),
        },
        0,
    )
}

fn eth(dst: &str, src: &str, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&mac(dst).to_bytes());
    f.extend_from_slice(&mac(src).to_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp(op: u16, sha: &str, spa: [u8; 4], tha: &str, tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&mac(sha).to_bytes());
    a.extend_from_slice(&spa);
    a.extend_from_slice(&mac(tha).to_bytes());
    a.extend_from_slice(&tpa);
    a
}

fn ip(proto: u8, src: [u8; 4], dst: [u8; 4], ttl: u8, df: bool, l4: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 20];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    b[4..6].copy_from_slice(&77u16.to_be_bytes());
    if df {
        b[6] = 0x40;
    }
    b[8] = ttl;
    b[9] = proto;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b.extend_from_slice(l4);
    fill_ip_checksum(&mut b, 20);
    if proto == PROTO_ICMP {
        b[22..24].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[20..]);
        b[22..24].copy_from_slice(&c.to_be_bytes());
    }
    b
}

fn echo(src: [u8; 4], dst: [u8; 4], ttl: u8, ty: u8, id: u16) -> Vec<u8> {
    let mut l4 = vec![ty, 0, 0, 0];
    l4.extend_from_slice(&id.to_be_bytes());
    l4.extend_from_slice(&1u16.to_be_bytes());
    l4.extend_from_slice(&[0x42; 32]);
    ip(PROTO_ICMP, src, dst, ttl, false, &l4)
}

fn frames(out: &Outbox) -> Vec<(Egress, Vec<u8>)> {
    (0..out.len())
        .map(|i| (out.get(i).0, out.get(i).1[VNET_HDR_LEN..].to_vec()))
        .collect()
}

#[test]
fn answers_arp_and_ping_for_its_address() {
    let mut g = gateway(false, false);
    let mut out = Outbox::default();
    let req = eth(
        "ff:ff:ff:ff:ff:ff",
        NS1_MAC,
        ETHERTYPE_ARP,
        &arp(1, NS1_MAC, NS1, "00:00:00:00:00:00", GW),
    );
    g.handle_lan(&req, 0, &mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 1, "one ARP reply");
    let (eg, reply) = &f[0];
    assert_eq!(*eg, Egress::Lan);
    assert_eq!(&reply[0..6], &mac(NS1_MAC).to_bytes());
    assert_eq!(ipv4::get16(reply, 20), 2, "ARP reply");
    assert_eq!(&reply[22..28], &mac(GW_MAC).to_bytes());
    assert_eq!(&reply[28..32], &GW);
    // The gateway learned ns1 on the way.
    assert_eq!(g.lan_neigh.get(Ipv4Addr::from(NS1)), Some(mac(NS1_MAC)));

    out.clear();
    g.handle_lan(
        &eth(
            GW_MAC,
            NS1_MAC,
            ETHERTYPE_IPV4,
            &echo(NS1, GW, 64, ICMP_ECHO_REQUEST, 5),
        ),
        1,
        &mut out,
    );
    let f = frames(&out);
    assert_eq!(f.len(), 1, "one echo reply");
    let r = &f[0].1[ETH..];
    assert_eq!(r[20], ICMP_ECHO_REPLY);
    assert_eq!(&r[12..16], &GW);
    assert_eq!(&r[16..20], &NS1);
}

#[test]
fn routes_through_nat_with_arp_resolution_and_back() {
    let mut g = gateway(true, true);
    let mut out = Outbox::default();
    let p = echo(NS1, HOST, 64, ICMP_ECHO_REQUEST, 42);
    g.handle_lan(&eth(GW_MAC, NS1_MAC, ETHERTYPE_IPV4, &p), 0, &mut out);
    // Held while the host is resolved: only an ARP request goes out.
    let f = frames(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, Egress::Wan);
    assert_eq!(ipv4::get16(&f[0].1, 12), ETHERTYPE_ARP);
    assert_eq!(&f[0].1[28..32], &UPLINK, "asks from the uplink address");
    assert_eq!(&f[0].1[38..42], &HOST);

    // The reply releases the held, translated packet.
    out.clear();
    let rep = eth(
        WAN_MAC,
        HOST_MAC,
        ETHERTYPE_ARP,
        &arp(2, HOST_MAC, HOST, WAN_MAC, UPLINK),
    );
    g.handle_wan(&rep, 1, &mut out);
    let f = frames(&out);
    let (eg, fw) = f
        .iter()
        .find(|(_, fr)| ipv4::get16(fr, 12) == ETHERTYPE_IPV4)
        .unwrap();
    assert_eq!(*eg, Egress::Wan);
    assert_eq!(&fw[0..6], &mac(HOST_MAC).to_bytes());
    assert_eq!(&fw[6..12], &mac(WAN_MAC).to_bytes());
    let o = &fw[ETH..];
    assert_eq!(&o[12..16], &UPLINK, "source translated");
    assert_eq!(o[8], 63, "TTL decremented");
    assert!(ip_checksum_ok(o, 20));
    assert_eq!(l4_checksum(o, &Ipv4Hdr::parse(o).unwrap()), 0);
    assert_eq!(g.stats().routed_out, 1);

    // The echo reply comes back to ns1 (whose MAC the gateway does not know
    // yet: held, ARP on the LAN, then released).
    out.clear();
    let back = echo(HOST, UPLINK, 64, ICMP_ECHO_REPLY, 42);
    g.handle_wan(&eth(WAN_MAC, HOST_MAC, ETHERTYPE_IPV4, &back), 2, &mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, Egress::Lan);
    assert_eq!(&f[0].1[38..42], &NS1, "ARP for ns1 on the LAN");
    out.clear();
    g.handle_lan(
        &eth(
            GW_MAC,
            NS1_MAC,
            ETHERTYPE_ARP,
            &arp(2, NS1_MAC, NS1, GW_MAC, GW),
        ),
        3,
        &mut out,
    );
    let f = frames(&out);
    let (_, fw) = f
        .iter()
        .find(|(_, fr)| ipv4::get16(fr, 12) == ETHERTYPE_IPV4)
        .unwrap();
    assert_eq!(&fw[0..6], &mac(NS1_MAC).to_bytes());
    let o = &fw[ETH..];
    assert_eq!(&o[16..20], &NS1, "destination translated back");
    assert_eq!(ipv4::get16(o, 24), 42);
    assert_eq!(l4_checksum(o, &Ipv4Hdr::parse(o).unwrap()), 0);
    assert_eq!(g.stats().routed_in, 1);
}

#[test]
fn ttl_expiry_draws_time_exceeded_from_the_gateway() {
    let mut g = gateway(true, true);
    let mut out = Outbox::default();
    let p = echo(NS1, HOST, 1, ICMP_ECHO_REQUEST, 1);
    g.handle_lan(&eth(GW_MAC, NS1_MAC, ETHERTYPE_IPV4, &p), 0, &mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 1);
    let (eg, e) = &f[0];
    assert_eq!(*eg, Egress::Lan);
    assert_eq!(&e[0..6], &mac(NS1_MAC).to_bytes());
    let o = &e[ETH..];
    assert_eq!(&o[12..16], &GW);
    assert_eq!(&o[16..20], &NS1);
    assert_eq!((o[20], o[21]), (ICMP_TIME_EXCEEDED, 0));
    assert_eq!(&o[28..48], &p[..20], "quotes the offending header");
    assert!(ip_checksum_ok(o, 20));
    assert_eq!(checksum::checksum(&o[20..]), 0);
    assert_eq!(g.stats().drops[GwDrop::TtlExceeded.index()], 1);
}

#[test]
fn no_route_and_fragmentation_needed() {
    // No uplink gateway: 8.8.8.8 has no route.
    let mut g = gateway(true, true);
    let mut out = Outbox::default();
    let p = echo(NS1, [8, 8, 8, 8], 64, ICMP_ECHO_REQUEST, 1);
    g.handle_lan(&eth(GW_MAC, NS1_MAC, ETHERTYPE_IPV4, &p), 0, &mut out);
    let f = frames(&out);
    let o = &f[0].1[ETH..];
    assert_eq!((o[20], o[21]), (ICMP_DEST_UNREACH, 0));
    assert_eq!(g.stats().drops[GwDrop::NoRoute.index()], 1);

    // LAN MTU 9000, uplink 1500: a 4000-byte DF packet draws Frag Needed.
    let mut cfg = g.cfg.clone();
    cfg.lan_mtu = 9000;
    let mut g = Gateway::new(cfg, 0);
    out.clear();
    let big = ip(PROTO_UDP, NS1, HOST, 64, true, &[0u8; 3980]);
    g.handle_lan(&eth(GW_MAC, NS1_MAC, ETHERTYPE_IPV4, &big), 0, &mut out);
    let f = frames(&out);
    let o = &f[0].1[ETH..];
    assert_eq!((o[20], o[21]), (ICMP_DEST_UNREACH, 4));
    assert_eq!(ipv4::get16(o, 26), 1500, "next-hop MTU");
    // Without DF it is translated, then fragmented to the uplink's MTU.
    out.clear();
    g.handle_wan(
        &eth(
            WAN_MAC,
            HOST_MAC,
            ETHERTYPE_ARP,
            &arp(2, HOST_MAC, HOST, WAN_MAC, UPLINK),
        ),
        0,
        &mut out,
    );
    out.clear();
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&5000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&7u16.to_be_bytes());
    udp[4..6].copy_from_slice(&3980u16.to_be_bytes());
    udp.resize(3980, 0x77);
    let big = ip(PROTO_UDP, NS1, HOST, 64, false, &udp);
    g.handle_lan(&eth(GW_MAC, NS1_MAC, ETHERTYPE_IPV4, &big), 0, &mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 3, "three fragments");
    let mut data = vec![0u8; 3980];
    for (eg, fr) in &f {
        assert_eq!(*eg, Egress::Wan);
        let h = Ipv4Hdr::parse(&fr[ETH..]).unwrap();
        assert!(h.total_len <= 1500);
        assert_eq!(
            &fr[ETH + 12..ETH + 16],
            &UPLINK,
            "translated before fragmenting"
        );
        assert!(ip_checksum_ok(&fr[ETH..], 20));
        data[h.frag_offset..h.frag_offset + h.total_len - 20]
            .copy_from_slice(&fr[ETH + 20..ETH + h.total_len]);
    }
    assert_eq!(&data[8..], &udp[8..], "payload intact");
    assert_eq!(g.stats().fragmented, 1);
}

#[test]
fn unsolicited_and_martian_inbound_are_dropped() {
    let mut g = gateway(true, true);
    let mut out = Outbox::default();
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&53u16.to_be_bytes());
    udp[2..4].copy_from_slice(&40000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&8u16.to_be_bytes());
    let p = ip(PROTO_UDP, HOST, UPLINK, 64, false, &udp);
    g.handle_wan(&eth(WAN_MAC, HOST_MAC, ETHERTYPE_IPV4, &p), 0, &mut out);
    assert!(out.is_empty());
    assert_eq!(g.stats().drops[GwDrop::Nat(NatDrop::NoFlow).index()], 1);
    let m = ip(PROTO_UDP, NS1, UPLINK, 64, false, &udp);
    g.handle_wan(&eth(WAN_MAC, HOST_MAC, ETHERTYPE_IPV4, &m), 0, &mut out);
    assert_eq!(g.stats().drops[GwDrop::Martian.index()], 1);
    // Pings to the uplink address are answered by the gateway itself (the
    // host ARPs for it first, as a real host does).
    let req = eth(
        "ff:ff:ff:ff:ff:ff",
        HOST_MAC,
        ETHERTYPE_ARP,
        &arp(1, HOST_MAC, HOST, "00:00:00:00:00:00", UPLINK),
    );
    g.handle_wan(&req, 0, &mut out);
    let e = echo(HOST, UPLINK, 64, ICMP_ECHO_REQUEST, 3);
    g.handle_wan(&eth(WAN_MAC, HOST_MAC, ETHERTYPE_IPV4, &e), 0, &mut out);
    let f = frames(&out);
    assert!(f.iter().any(|(eg, fr)| *eg == Egress::Wan
        && ipv4::get16(fr, 12) == ETHERTYPE_IPV4
        && fr[ETH + 20] == ICMP_ECHO_REPLY));
}

#[test]
fn gratuitous_arp_on_announce() {
    let mut g = gateway(true, true);
    let mut out = Outbox::default();
    g.announce(&mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 2);
    for (eg, fr) in &f {
        let own = if *eg == Egress::Lan { GW } else { UPLINK };
        assert_eq!(&fr[0..6], &[0xff; 6]);
        assert_eq!(&fr[28..32], &own);
        assert_eq!(&fr[38..42], &own);
    }
}

#[test]
fn junk_never_panics() {
    let mut g = gateway(true, true);
    let mut out = Outbox::default();
    let mut x = 0x1357_9bdf_2468_ace0u64;
    for i in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 200) as usize;
        let mut f: Vec<u8> = (0..len).map(|k| (x >> (k % 56)) as u8).collect();
        if f.len() >= 14 {
            f[0..6].copy_from_slice(&mac(if i % 2 == 0 { GW_MAC } else { WAN_MAC }).to_bytes());
            if i % 3 == 0 {
                f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                if f.len() > 14 {
                    f[14] = 0x45;
                }
            }
        }
        g.handle_lan(&f, i, &mut out);
        g.handle_wan(&f, i, &mut out);
        out.clear();
    }
}

#[test]
fn nat_table_full_is_counted_and_logged_at_a_limited_rate() {
    let mut cfg = gateway(true, true).cfg.clone();
    cfg.nat = Some(NatConfig {
        max_flows: 1,
        ..NatConfig::default()
    });
    let mut g = Gateway::new(cfg, 0);
    let mut out = Outbox::default();
    // Resolve the wan host first so translated packets go straight out.
    g.handle_wan(
        &eth(
            WAN_MAC,
            HOST_MAC,
            ETHERTYPE_ARP,
            &arp(2, HOST_MAC, HOST, WAN_MAC, UPLINK),
        ),
        0,
        &mut out,
    );
    for id in 0..50u16 {
        let p = echo(NS1, HOST, 64, ICMP_ECHO_REQUEST, id);
        g.handle_lan(
            &eth(GW_MAC, NS1_MAC, ETHERTYPE_IPV4, &p),
            id as u64,
            &mut out,
        );
    }
    assert_eq!(g.stats().drops[GwDrop::Nat(NatDrop::TableFull).index()], 49);
    let ev = g.take_events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(ev[0].warn && ev[0].msg.contains("NAT table full"));
    // Ten seconds later the next refusal is logged, with the count.
    let p = echo(NS1, HOST, 64, ICMP_ECHO_REQUEST, 999);
    g.handle_lan(&eth(GW_MAC, NS1_MAC, ETHERTYPE_IPV4, &p), 20_000, &mut out);
    let ev = g.take_events();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].msg.contains("refused 49"), "{ev:?}");
}
