//! The DNS server through the gateway's frame handlers, time warped: a
//! query from a namespace is answered from the name table; another is
//! forwarded upstream from the uplink address with an id of its own, and
//! the upstream's answer goes back with the asker's id (one from anyone
//! else is stray); an upstream silent for 2 s, and having no uplink at all,
//! give SERVFAIL.

use super::outbox::Egress;
use super::*;
use crate::dns::DnsConfig;
use crate::wire::build::{self, Arp};
use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, RCODE, TYPE, rdata::RData};

const GW_MAC: &str = "02:00:00:00:00:01";
const WAN_MAC: &str = "02:00:00:00:00:02";
const UP_MAC: &str = "02:00:00:00:00:53";
const NS1_MAC: &str = "02:00:00:00:00:11";
const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 1);
const NS1: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 11);
const UPLINK: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn gateway(uplink: bool, now: Millis) -> Gateway {
    let mut g = Gateway::new(
        GatewayConfig {
            lan_mac: mac(GW_MAC),
            lan_ip: GW,
            subnet: "192.168.88.0/24".parse().unwrap(),
            lan_mtu: 1500,
            wan: uplink.then(|| WanConfig {
                ifname: "up0".into(),
                mac: mac(WAN_MAC),
                addr: WanAddr::Static(UPLINK, 24),
                gw: Some(UPSTREAM),
                mtu: 1500,
            }),
            nat: Some(NatConfig::default()),
        },
        now,
    );
    g.enable_dns(
        &DnsConfig {
            domain: "vsw".into(),
            upstreams: vec![UPSTREAM],
        },
        now,
    );
    g.dns_set_name("ns1", NS1);
    let mut out = Outbox::default();
    // ns1 introduces itself (the LAN stack learns its MAC), the upstream
    // host too on the uplink.
    let arp = Arp::request(mac(NS1_MAC), NS1, GW).frame(MacAddr::BROADCAST);
    g.handle_lan(&arp, now, &mut out);
    if uplink {
        let arp = Arp::request(mac(UP_MAC), UPSTREAM, UPLINK).frame(MacAddr::BROADCAST);
        g.handle_wan(&arp, now, &mut out);
    }
    g
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 8];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(payload);
    l4
}

fn frame(src: Ipv4Addr, dst: Ipv4Addr, smac: &str, dmac: &str, l4: &[u8]) -> Vec<u8> {
    let ip = build::Ipv4 {
        src,
        dst,
        proto: PROTO_UDP,
        ttl: 64,
        id: 1,
        dont_frag: true,
    };
    build::ipv4_frame(mac(dmac), mac(smac), ip, l4)
}

fn query(id: u16, name: &str, t: TYPE) -> Vec<u8> {
    let mut q = Packet::new_query(id);
    q.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(t),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    q.build_bytes_vec().unwrap()
}

/// The UDP datagrams the gateway sent out of `eg`: (src, dst, sport,
/// dport, payload).
fn udp_out(out: &Outbox, eg: Egress) -> Vec<(Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>)> {
    (0..out.len())
        .filter(|&i| out.get(i).0 == eg)
        .filter_map(|i| {
            let f = &out.get(i).1[VNET_HDR_LEN..];
            let h = Ipv4Hdr::parse(&f[ETH..])?;
            if h.proto != PROTO_UDP || ipv4::get16(f, 12) != ETHERTYPE_IPV4 {
                return None;
            }
            let ip = &f[ETH..];
            assert_eq!(ipv4::l4_checksum(ip, &h), 0, "UDP checksum");
            let l4 = &ip[h.ihl..h.total_len];
            Some((
                h.src.into(),
                h.dst.into(),
                ipv4::get16(l4, 0),
                ipv4::get16(l4, 2),
                l4[8..].to_vec(),
            ))
        })
        .collect()
}

fn ask(g: &mut Gateway, q: &[u8], now: Millis) -> Outbox {
    let mut out = Outbox::default();
    let f = frame(NS1, GW, NS1_MAC, GW_MAC, &udp(40000, 53, q));
    g.handle_lan(&f, now, &mut out);
    out
}

#[test]
fn port_names_are_answered_by_the_gateway() {
    let mut g = gateway(true, 1000);
    let out = ask(&mut g, &query(0x1111, "ns1.vsw", TYPE::A), 1001);
    let lan = udp_out(&out, Egress::Lan);
    let [(src, dst, sport, dport, msg)] = &lan[..] else {
        panic!("{lan:?}")
    };
    assert_eq!((*src, *dst, *sport, *dport), (GW, NS1, 53, 40000));
    let p = Packet::parse(msg).unwrap();
    assert_eq!(p.id(), 0x1111);
    assert!(matches!(&p.answers[0].rdata, RData::A(a) if Ipv4Addr::from(a.address) == NS1));
    // AAAA: empty, at once, nothing upstream.
    let out = ask(&mut g, &query(0x2222, "ns1", TYPE::AAAA), 1002);
    assert!(udp_out(&out, Egress::Wan).is_empty());
    let lan = udp_out(&out, Egress::Lan);
    let p = Packet::parse(&lan[0].4).unwrap();
    assert_eq!(
        (p.id(), p.rcode(), p.answers.len()),
        (0x2222, RCODE::NoError, 0)
    );
    // A name taken out of the table is NXDOMAIN.
    g.dns_remove_name("ns1");
    let out = ask(&mut g, &query(0x3333, "ns1", TYPE::A), 1003);
    let lan = udp_out(&out, Egress::Lan);
    let p = Packet::parse(&lan[0].4).unwrap();
    assert_eq!(p.rcode(), RCODE::NameError);
    assert_eq!(g.dns_view().unwrap().stats.local, 3);
}

#[test]
fn other_names_go_upstream_and_the_answer_comes_back() {
    let mut g = gateway(true, 1000);
    let out = ask(&mut g, &query(0xabcd, "example.com", TYPE::A), 1001);
    assert!(udp_out(&out, Egress::Lan).is_empty());
    let wan = udp_out(&out, Egress::Wan);
    let [(src, dst, sport, dport, msg)] = &wan[..] else {
        panic!("{wan:?}")
    };
    assert_eq!((*src, *dst, *dport), (UPLINK, UPSTREAM, 53));
    let up_id = crate::dns::message_id(msg).unwrap();
    // The upstream's answer: from the wrong port first (stray), then right.
    let mut answer = Packet::parse(msg).unwrap().into_reply();
    answer.answers.push(simple_dns::ResourceRecord::new(
        Name::new_unchecked("example.com"),
        CLASS::IN,
        60,
        RData::A(simple_dns::rdata::A {
            address: 0x5db8d822,
        }),
    ));
    answer.set_id(up_id);
    let bytes = answer.build_bytes_vec().unwrap();
    let mut out = Outbox::default();
    let f = frame(
        UPSTREAM,
        UPLINK,
        UP_MAC,
        WAN_MAC,
        &udp(5353, *sport, &bytes),
    );
    g.handle_wan(&f, 1002, &mut out);
    assert!(udp_out(&out, Egress::Lan).is_empty());
    let f = frame(UPSTREAM, UPLINK, UP_MAC, WAN_MAC, &udp(53, *sport, &bytes));
    g.handle_wan(&f, 1003, &mut out);
    let lan = udp_out(&out, Egress::Lan);
    let [(src, dst, _, dport, msg)] = &lan[..] else {
        panic!("{lan:?}")
    };
    assert_eq!((*src, *dst, *dport), (GW, NS1, 40000));
    let p = Packet::parse(msg).unwrap();
    assert_eq!(p.id(), 0xabcd);
    assert_eq!(p.answers.len(), 1);
    let s = g.dns_view().unwrap();
    assert_eq!((s.stats.forwarded, s.stats.upstream_answers), (1, 1));
    assert_eq!(s.waiting, 0);
    // The wrong-port datagram was not taken for an answer (the NAT has no
    // flow for it either: dropped there).
    assert_eq!(s.stats.stray, 0);
}

#[test]
fn a_silent_upstream_gives_servfail_after_the_timeout() {
    let mut g = gateway(true, 1000);
    let out = ask(&mut g, &query(0x0707, "example.com", TYPE::A), 1001);
    assert_eq!(udp_out(&out, Egress::Wan).len(), 1);
    let mut out = Outbox::default();
    let next = g.poll(1500, &mut out);
    assert!(next <= 1001 + 2000, "the deadline wakes the loop: {next}");
    assert!(udp_out(&out, Egress::Lan).is_empty());
    g.poll(1001 + 2000, &mut out);
    let lan = udp_out(&out, Egress::Lan);
    let p = Packet::parse(&lan[0].4).unwrap();
    assert_eq!((p.id(), p.rcode()), (0x0707, RCODE::ServerFailure));
    let s = g.dns_view().unwrap();
    assert_eq!((s.stats.failed, s.stats.timeouts, s.waiting), (1, 1, 0));
}

#[test]
fn without_an_uplink_other_names_fail_at_once() {
    let mut g = gateway(false, 1000);
    let out = ask(&mut g, &query(0x0808, "example.com", TYPE::A), 1001);
    let lan = udp_out(&out, Egress::Lan);
    let p = Packet::parse(&lan[0].4).unwrap();
    assert_eq!((p.id(), p.rcode()), (0x0808, RCODE::ServerFailure));
    assert_eq!(g.dns_view().unwrap().stats.failed, 1);
}

#[test]
fn a_query_to_a_broadcast_address_is_not_answered() {
    let mut g = gateway(true, 1000);
    for bcast in [Ipv4Addr::new(192, 168, 88, 255), Ipv4Addr::BROADCAST] {
        let mut out = Outbox::default();
        let q = query(0x0909, "ns1", TYPE::A);
        let f = frame(
            NS1,
            bcast,
            NS1_MAC,
            "ff:ff:ff:ff:ff:ff",
            &udp(40000, 53, &q),
        );
        g.handle_lan(&f, 1001, &mut out);
        assert!(udp_out(&out, Egress::Lan).is_empty(), "{bcast}");
    }
    let s = g.dns_view().unwrap().stats;
    assert_eq!(
        (s.local, s.dropped),
        (0, 2),
        "taken by the socket, then dropped"
    );
}
