//! `trace` and the datapath agree: a table of frames runs through the
//! trace (which renders the verdict) and then through `handle_*` (which
//! acts on it), and what the trace says matches what the handler did,
//! judged from the counters and the outbox alone.

use super::*;
use crate::wire::build::{self, Arp};
use crate::wire::ipv4::{PROTO_ICMP, PROTO_UDP};

const GW_MAC: u64 = 0x0200_0000_0001;
const WAN_MAC: u64 = 0x0200_0000_0002;
const NS1_MAC: u64 = 0x0200_0000_0011;
const HOST_MAC: u64 = 0x0200_0000_0099;
const NS1: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 11);
const NS2: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 12);
const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 1);
const UPLINK: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const SVC: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn m(v: u64) -> MacAddr {
    MacAddr::from_u64(v)
}

fn gateway() -> Gateway {
    Gateway::new(
        GatewayConfig {
            lan_mac: m(GW_MAC),
            lan_ip: GW,
            subnet: "192.168.88.0/24".parse().unwrap(),
            lan_mtu: 1500,
            wan: Some(WanConfig {
                ifname: "up0".into(),
                mac: m(WAN_MAC),
                addr: WanAddr::Static(UPLINK, 24),
                gw: None,
                mtu: 1400,
            }),
            nat: Some(NatConfig::default()),
        },
        0,
    )
}

struct Pkt {
    dst_mac: u64,
    src_mac: u64,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    df: bool,
    proto: u8,
    l4: Vec<u8>,
}

impl Pkt {
    fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, len: usize) -> Pkt {
        let mut l4 = vec![0u8; 8 + len];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
        Pkt {
            dst_mac: GW_MAC,
            src_mac: NS1_MAC,
            src,
            dst,
            ttl: 64,
            df: false,
            proto: PROTO_UDP,
            l4,
        }
    }
    fn echo(src: Ipv4Addr, dst: Ipv4Addr, ty: u8) -> Pkt {
        let mut l4 = vec![ty, 0, 0, 0, 0, 7, 0, 1];
        l4.extend_from_slice(&[0x42; 16]);
        let c = crate::wire::checksum::checksum(&l4);
        l4[2..4].copy_from_slice(&c.to_be_bytes());
        Pkt {
            proto: PROTO_ICMP,
            l4,
            ..Pkt::udp(src, dst, 0, 0, 0)
        }
    }
    fn macs(self, dst: u64, src: u64) -> Pkt {
        Pkt {
            dst_mac: dst,
            src_mac: src,
            ..self
        }
    }
    fn frame(&self) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + self.l4.len()];
        build::ethernet(
            &mut f,
            m(self.dst_mac),
            m(self.src_mac),
            build::ETHERTYPE_IPV4,
        );
        build::Ipv4 {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            ttl: self.ttl,
            id: 9,
            dont_frag: self.df,
        }
        .write(&mut f[14..], self.l4.len());
        f[34..].copy_from_slice(&self.l4);
        f
    }
}

/// `frame` with IP options `opts` (a multiple of 4 bytes) after its header.
fn with_options(frame: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut f = frame[..34].to_vec();
    f.extend_from_slice(opts);
    f.extend_from_slice(&frame[34..]);
    let ip = &mut f[14..];
    ip[0] = 0x40 | ((20 + opts.len()) / 4) as u8;
    let total = (ip.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    crate::wire::ipv4::fill_ip_checksum(ip, 20 + opts.len());
    f
}

/// One row: what it is, which side it arrives on, the frame, the outcome.
type Row = (&'static str, (Side, Vec<u8>), Outcome);

/// What happened, as read from the counters and the outbox.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Nothing,
    Stack,
    Dropped(&'static str),
    Refused(&'static str),
    Routed,
}

fn observed(before: &GatewayStats, after: &GatewayStats) -> Outcome {
    let dropped = GwDrop::ALL
        .iter()
        .find(|&&r| after.drops.get(r) > before.drops.get(r))
        .map(|r| r.name());
    let answered = after.icmp_errors_sent + after.icmp_errors_suppressed
        > before.icmp_errors_sent + before.icmp_errors_suppressed;
    let routed = after.routed_in + after.routed_out + after.routed_lan
        > before.routed_in + before.routed_out + before.routed_lan;
    match dropped {
        Some(n) if answered => Outcome::Refused(n),
        Some(n) => Outcome::Dropped(n),
        None if routed => Outcome::Routed,
        None if after.to_stack > before.to_stack => Outcome::Stack,
        None => Outcome::Nothing,
    }
}

fn told(trace: &[String]) -> Outcome {
    let last = trace.last().expect("a trace has steps");
    if let Some(name) = GwDrop::ALL
        .iter()
        .map(|d| d.name())
        .find(|n| last.ends_with(&format!("dropped ({n})")))
    {
        return if last.contains("would answer ICMP") {
            Outcome::Refused(name)
        } else {
            Outcome::Dropped(name)
        };
    }
    if last.starts_with("egress:") {
        Outcome::Routed
    } else if last.contains("stack") || last.contains("DHCP client") {
        Outcome::Stack
    } else if last.contains("ignored") {
        Outcome::Nothing
    } else {
        panic!("trace says nothing recognisable: {trace:?}")
    }
}

#[test]
fn trace_and_handle_agree_on_every_kind_of_frame() {
    let mut g = gateway();
    for spec in ["5353/udp=ns01:53", "10.96.0.10:53/udp=ns01:53"] {
        let spec = nat::service::parse_spec(spec).unwrap();
        g.publish(&spec, |_| Some(NS1)).unwrap();
    }
    let mut out = Outbox::default();
    let now = 10;
    // Neighbours known on both sides, so routed frames leave at once.
    let lan_arp = Arp::request(m(NS1_MAC), NS1, GW).frame(m(GW_MAC));
    g.handle_lan(&lan_arp, now, &mut out);
    let wan_arp = Arp::request(m(HOST_MAC), HOST, UPLINK).frame(m(WAN_MAC));
    g.handle_wan(&wan_arp, now, &mut out);

    let mut bad_sum = Pkt::udp(NS1, HOST, 1, 2, 0).frame();
    bad_sum[14 + 10] ^= 0xff;
    let mut ipv6 = Pkt::udp(NS1, HOST, 1, 2, 0).frame();
    ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let dhcp_reply = Pkt::udp(HOST, Ipv4Addr::BROADCAST, 67, 68, 300)
        .macs(u64::MAX >> 16, HOST_MAC)
        .frame();
    let lan = |p: Pkt| (Side::Lan, p.frame());
    let wan = |p: Pkt| (Side::Wan, p.macs(WAN_MAC, HOST_MAC).frame());
    let table: Vec<Row> = vec![
        (
            "ARP request for the gateway",
            (Side::Lan, lan_arp.to_vec()),
            Outcome::Stack,
        ),
        (
            "ping the gateway",
            lan(Pkt::echo(NS1, GW, 8)),
            Outcome::Stack,
        ),
        (
            "a frame for another host",
            lan(Pkt::udp(NS1, NS2, 1, 2, 0).macs(0x0200_0000_0012, NS1_MAC)),
            Outcome::Nothing,
        ),
        (
            "bad IP checksum",
            (Side::Lan, bad_sum),
            Outcome::Dropped("bad_ip_checksum"),
        ),
        (
            "IPv6 to the gateway MAC",
            (Side::Lan, ipv6),
            Outcome::Dropped("not_for_us"),
        ),
        (
            "martian source from the LAN",
            lan(Pkt::udp(Ipv4Addr::new(10, 1, 1, 1), HOST, 1, 2, 0)),
            Outcome::Dropped("martian_source"),
        ),
        (
            "no route",
            lan(Pkt::udp(NS1, Ipv4Addr::new(8, 8, 8, 8), 1, 2, 0)),
            Outcome::Refused("no_route"),
        ),
        (
            "TTL 1",
            lan(Pkt {
                ttl: 1,
                ..Pkt::udp(NS1, HOST, 1, 2, 0)
            }),
            Outcome::Refused("ttl_exceeded"),
        ),
        (
            "DF and over the uplink MTU",
            lan(Pkt {
                df: true,
                ..Pkt::udp(NS1, HOST, 1, 2, 1450)
            }),
            Outcome::Refused("frag_needed"),
        ),
        (
            "no DF and over the uplink MTU: fragmented",
            lan(Pkt::udp(NS1, HOST, 3, 4, 1450)),
            Outcome::Routed,
        ),
        (
            "new flow to the uplink",
            lan(Pkt::udp(NS1, HOST, 40000, 53, 10)),
            Outcome::Routed,
        ),
        (
            "hairpin-to-be: a LAN address through the gateway",
            lan(Pkt::udp(NS1, NS1, 5, 6, 0)),
            Outcome::Routed,
        ),
        (
            "known flow, the reply",
            wan(Pkt::udp(HOST, UPLINK, 53, 40000, 10)),
            Outcome::Routed,
        ),
        (
            "unknown flow from outside",
            wan(Pkt::udp(HOST, UPLINK, 53, 40001, 10)),
            Outcome::Dropped("nat_no_flow"),
        ),
        (
            "new connection from outside to a published port",
            wan(Pkt::udp(HOST, UPLINK, 4000, 5353, 10)),
            Outcome::Routed,
        ),
        (
            "a namespace to a service address (hairpin)",
            lan(Pkt::udp(NS2, SVC, 4001, 53, 10)),
            Outcome::Routed,
        ),
        (
            "the backend's answer to the gateway (hairpin)",
            lan(Pkt::udp(NS1, GW, 53, 4001, 10)),
            Outcome::Routed,
        ),
        (
            "a namespace to the uplink's published port (hairpin)",
            lan(Pkt::udp(NS2, UPLINK, 4002, 5353, 10)),
            Outcome::Routed,
        ),
        (
            "a service address, a port not published",
            lan(Pkt::udp(NS1, SVC, 4003, 54, 10)),
            Outcome::Refused("no_route"),
        ),
        (
            "echo request to the uplink address",
            wan(Pkt::echo(HOST, UPLINK, 8)),
            Outcome::Stack,
        ),
        (
            "martian source from the uplink",
            wan(Pkt::udp(NS2, UPLINK, 53, 40000, 0)),
            Outcome::Dropped("martian_source"),
        ),
        (
            "TTL 1 on a known flow from outside",
            wan(Pkt {
                ttl: 1,
                ..Pkt::udp(HOST, UPLINK, 53, 40000, 10)
            }),
            Outcome::Refused("ttl_exceeded"),
        ),
        (
            "subnet broadcast from the uplink",
            wan(Pkt::udp(HOST, Ipv4Addr::new(10, 99, 0, 255), 1, 2, 0)),
            Outcome::Dropped("not_for_us"),
        ),
        (
            "DHCP reply from the uplink",
            (Side::Wan, dhcp_reply),
            Outcome::Stack,
        ),
        (
            "to 127.0.0.1 from the LAN",
            lan(Pkt::udp(NS1, Ipv4Addr::new(127, 0, 0, 1), 1, 2, 0)),
            Outcome::Dropped("martian_destination"),
        ),
        (
            "to 240.0.0.1 from the LAN",
            lan(Pkt::udp(NS1, Ipv4Addr::new(240, 0, 0, 1), 1, 2, 0)),
            Outcome::Dropped("martian_destination"),
        ),
        (
            "from the gateway's own address",
            lan(Pkt::udp(GW, HOST, 1, 2, 0)),
            Outcome::Dropped("martian_source"),
        ),
        (
            "from the subnet's broadcast address",
            lan(Pkt::udp(Ipv4Addr::new(192, 168, 88, 255), HOST, 1, 2, 0)),
            Outcome::Dropped("martian_source"),
        ),
        (
            "a spoofed outside source to the gateway itself",
            lan(Pkt::udp(HOST, GW, 1, 2, 0)),
            Outcome::Dropped("martian_source"),
        ),
        (
            "loose source route from the LAN",
            (
                Side::Lan,
                with_options(
                    &Pkt::udp(NS1, HOST, 7, 8, 0).frame(),
                    &[0x83, 7, 4, 10, 99, 0, 1, 0],
                ),
            ),
            Outcome::Dropped("source_route"),
        ),
        (
            "malformed options from the LAN",
            (
                Side::Lan,
                with_options(&Pkt::udp(NS1, HOST, 7, 8, 0).frame(), &[7, 9, 0, 0]),
            ),
            Outcome::Dropped("bad_ip_options"),
        ),
        (
            "record-route option from the LAN is forwarded",
            (
                Side::Lan,
                with_options(
                    &Pkt::udp(NS1, HOST, 9, 10, 0).frame(),
                    &[1, 7, 3, 4, 0, 0, 0, 0],
                ),
            ),
            Outcome::Routed,
        ),
        (
            "echo request to 255.255.255.255 from the uplink",
            (
                Side::Wan,
                Pkt::echo(HOST, Ipv4Addr::BROADCAST, 8)
                    .macs(u64::MAX >> 16, HOST_MAC)
                    .frame(),
            ),
            Outcome::Dropped("echo_to_broadcast"),
        ),
        (
            "echo request to the uplink subnet's broadcast",
            wan(Pkt::echo(HOST, Ipv4Addr::new(10, 99, 0, 255), 8)),
            Outcome::Dropped("echo_to_broadcast"),
        ),
        (
            "from 127.0.0.1 on the uplink",
            wan(Pkt::echo(Ipv4Addr::new(127, 0, 0, 1), UPLINK, 8)),
            Outcome::Dropped("martian_source"),
        ),
        (
            "another host's traffic on the uplink",
            (
                Side::Wan,
                Pkt::udp(HOST, Ipv4Addr::new(10, 99, 0, 7), 1, 2, 0)
                    .macs(0x0200_0000_0077, HOST_MAC)
                    .frame(),
            ),
            Outcome::Nothing,
        ),
    ];
    for (what, (side, frame), want) in table {
        let egress = |_: MacAddr| Some("port ns01".to_string());
        let t = match side {
            Side::Lan => g.trace_lan(&frame, now, egress),
            Side::Wan => g.trace_wan(&frame, now, egress),
        };
        let before = g.stats().clone();
        out.clear();
        match side {
            Side::Lan => g.handle_lan(&frame, now, &mut out),
            Side::Wan => g.handle_wan(&frame, now, &mut out),
        }
        let did = observed(&before, g.stats());
        assert_eq!(
            told(&t),
            did,
            "{what}: trace {t:?} but the datapath did {did:?}"
        );
        assert_eq!(did, want, "{what}: {t:?}");
        if did == Outcome::Routed {
            assert!(!out.is_empty(), "{what}: routed but nothing sent");
        }
    }
}

#[test]
fn forgetting_an_inside_address_drops_its_neighbour_entry_and_flows() {
    let mut g = gateway();
    let mut out = Outbox::default();
    g.handle_lan(
        &Arp::request(m(NS1_MAC), NS1, GW).frame(m(GW_MAC)),
        1,
        &mut out,
    );
    g.handle_wan(
        &Arp::request(m(HOST_MAC), HOST, UPLINK).frame(m(WAN_MAC)),
        1,
        &mut out,
    );
    g.handle_lan(&Pkt::udp(NS1, HOST, 40000, 53, 1).frame(), 2, &mut out);
    assert!(g.neighbours(2).iter().any(|(_, n)| n.ip == NS1));
    assert_eq!(g.nat().unwrap().len(), 1);
    g.forget_inside(NS1);
    assert!(g.neighbours(2).iter().all(|(_, n)| n.ip != NS1));
    assert!(g.nat().unwrap().is_empty());
}

#[test]
fn a_pinned_neighbour_is_not_moved_by_arp_and_the_gateway_keeps_no_entry_for_itself() {
    let mut g = gateway();
    let mut out = Outbox::default();
    g.pin_inside(NS2, m(0x0200_0000_0012));
    // A gratuitous ARP from another MAC claims NS2's address...
    let spoof = Arp::request(m(NS1_MAC), NS2, NS2).frame(MacAddr::BROADCAST);
    g.handle_lan(&spoof, 1, &mut out);
    // ...and one claims the gateway's own.
    let own = Arp::request(m(NS1_MAC), GW, GW).frame(MacAddr::BROADCAST);
    g.handle_lan(&own, 1, &mut out);
    let n = g.neighbours(1);
    let ns2 = n.iter().find(|(_, e)| e.ip == NS2).expect("pinned entry");
    assert_eq!(ns2.1.mac, Some(m(0x0200_0000_0012)));
    assert_eq!(ns2.1.state, "PERMANENT");
    assert!(n.iter().all(|(_, e)| e.ip != GW), "{n:?}");
    // Traffic routed to NS2 goes to its real MAC.
    out.clear();
    g.handle_lan(&Pkt::udp(NS1, NS2, 1, 2, 0).frame(), 2, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        &out.get(0).1[crate::wire::vnet::VNET_HDR_LEN..][0..6],
        &m(0x0200_0000_0012).to_bytes()
    );
}
