//! The uplink's DHCP client over a whole lease's life, time warped: the
//! lease is applied as soon as its ACK arrives, renewed at T1 (unicast to
//! the server) without the address ever being dropped, and lost at expiry
//! when no server answers, after which the gateway has no route out (ns1
//! gets net unreachable, counted `no_route`) and starts over with a
//! DISCOVER. A scripted server answers in the test.

use super::outbox::Egress;
use super::*;
use crate::wire::build::{self, Arp};
use crate::wire::ipv4::ICMP_ECHO_REQUEST;
use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};

const GW_MAC: &str = "02:00:00:00:00:01";
const WAN_MAC: &str = "02:00:00:00:00:02";
const SERVER_MAC: &str = "02:00:00:00:00:53";
const NS1_MAC: &str = "02:00:00:00:00:11";
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const LEASED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 50);
const NS1: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 11);
/// The lease the server grants: T1 is 60 s, T2 105 s.
const LEASE_S: u32 = 120;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn gateway() -> Gateway {
    Gateway::new(
        GatewayConfig {
            lan_mac: mac(GW_MAC),
            lan_ip: Ipv4Addr::new(192, 168, 88, 1),
            subnet: "192.168.88.0/24".parse().unwrap(),
            lan_mtu: 1500,
            wan: Some(WanConfig {
                ifname: "up0".into(),
                mac: mac(WAN_MAC),
                addr: WanAddr::Dhcp,
                gw: None,
                mtu: 1500,
            }),
            nat: Some(NatConfig::default()),
        },
        0,
    )
}

/// What the gateway sent to the uplink, without the vnet header.
fn wan_frames(out: &Outbox) -> Vec<Vec<u8>> {
    (0..out.len())
        .filter(|&i| out.get(i).0 == Egress::Wan)
        .map(|i| out.get(i).1[VNET_HDR_LEN..].to_vec())
        .collect()
}

/// A DHCP message the client sent: (message type, transaction id,
/// IPv4 destination, client address field).
fn client_dhcp(f: &[u8]) -> Option<(DhcpMessageType, u32, Ipv4Addr, Ipv4Addr)> {
    if ipv4::get16(f, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let b = &f[ETH..];
    let h = Ipv4Hdr::parse(b)?;
    let udp = &b[h.ihl..];
    if h.proto != PROTO_UDP || ipv4::get16(udp, 2) != 67 {
        return None;
    }
    let p = DhcpPacket::new_checked(&udp[8..]).ok()?;
    let r = DhcpRepr::parse(&p).ok()?;
    Some((r.message_type, r.transaction_id, h.dst.into(), r.client_ip))
}

/// The server's answer of type `ty` to transaction `xid`.
fn server_reply(ty: DhcpMessageType, xid: u32) -> Vec<u8> {
    let r = DhcpRepr {
        message_type: ty,
        transaction_id: xid,
        secs: 0,
        client_hardware_address: smoltcp::wire::EthernetAddress(mac(WAN_MAC).to_bytes()),
        client_ip: Ipv4Addr::UNSPECIFIED,
        your_ip: LEASED,
        server_ip: SERVER,
        router: Some(SERVER),
        subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(SERVER),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(LEASE_S),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut l4 = vec![0u8; 8 + r.buffer_len()];
    l4[0..2].copy_from_slice(&67u16.to_be_bytes());
    l4[2..4].copy_from_slice(&68u16.to_be_bytes());
    let len = l4.len() as u16;
    l4[4..6].copy_from_slice(&len.to_be_bytes());
    r.emit(&mut DhcpPacket::new_unchecked(&mut l4[8..]))
        .unwrap();
    let ip = build::Ipv4 {
        src: SERVER,
        dst: LEASED,
        proto: PROTO_UDP,
        ttl: 64,
        id: 1,
        dont_frag: false,
    };
    build::ipv4_frame(mac(WAN_MAC), mac(SERVER_MAC), ip, &l4)
}

/// The scripted server: answers ARP for its address and every DHCP
/// message the gateway sent (DISCOVER with OFFER, REQUEST with ACK) while
/// `answering`; returns the DHCP messages it saw.
struct Server {
    answering: bool,
    seen: Vec<(Millis, DhcpMessageType, Ipv4Addr, Ipv4Addr)>,
}

impl Server {
    fn serve(&mut self, g: &mut Gateway, out: &mut Outbox, now: Millis) {
        for _ in 0..8 {
            let sent = wan_frames(out);
            out.clear();
            if sent.is_empty() {
                return;
            }
            for f in sent {
                if let Some((ty, xid, dst, ciaddr)) = client_dhcp(&f) {
                    self.seen.push((now, ty, dst, ciaddr));
                    let answer = match ty {
                        DhcpMessageType::Discover => DhcpMessageType::Offer,
                        DhcpMessageType::Request => DhcpMessageType::Ack,
                        _ => continue,
                    };
                    if self.answering {
                        g.handle_wan(&server_reply(answer, xid), now, out);
                    }
                } else if ipv4::get16(&f, 12) == ETHERTYPE_ARP
                    && let Some(a) = Arp::parse(&f[ETH..])
                    && a.tpa == SERVER
                    && self.answering
                {
                    let reply = Arp {
                        op: 2,
                        sha: mac(SERVER_MAC),
                        spa: SERVER,
                        tha: a.sha,
                        tpa: a.spa,
                    };
                    g.handle_wan(&reply.frame(a.sha), now, out);
                }
            }
        }
        panic!("the DHCP exchange did not settle");
    }

    /// Runs the gateway's timers from `from` to `to` in 500-ms steps,
    /// serving what it sends.
    fn run(&mut self, g: &mut Gateway, from: Millis, to: Millis) {
        let mut out = Outbox::default();
        let mut now = from;
        while now <= to {
            g.poll(now, &mut out);
            self.serve(g, &mut out, now);
            now += 500;
        }
    }

    fn requests_between(&self, from: Millis, to: Millis) -> Vec<(Millis, Ipv4Addr, Ipv4Addr)> {
        self.seen
            .iter()
            .filter(|s| s.1 == DhcpMessageType::Request && s.0 >= from && s.0 <= to)
            .map(|s| (s.0, s.2, s.3))
            .collect()
    }
}

/// An echo request from ns1 to the server, through the gateway: true when
/// it left on the uplink translated to `LEASED` (the server's MAC is known
/// by then).
fn routes_out(g: &mut Gateway, now: Millis) -> bool {
    let mut l4 = vec![ICMP_ECHO_REQUEST, 0, 0, 0, 0, 7, 0, 1];
    l4.extend_from_slice(&[0x42; 16]);
    let ip = build::Ipv4 {
        src: NS1,
        dst: SERVER,
        proto: PROTO_ICMP,
        ttl: 64,
        id: 9,
        dont_frag: false,
    };
    let f = build::ipv4_frame(mac(GW_MAC), mac(NS1_MAC), ip, &l4);
    let mut out = Outbox::default();
    g.handle_lan(&f, now, &mut out);
    // Held while the server's MAC is resolved: answer the ARP request.
    for _ in 0..2 {
        let sent = wan_frames(&out);
        out.clear();
        for o in &sent {
            if ipv4::get16(o, 12) == ETHERTYPE_IPV4
                && o[ETH + 9] == PROTO_ICMP
                && o[ETH + 12..ETH + 16] == LEASED.octets()
            {
                return true;
            }
            if ipv4::get16(o, 12) == ETHERTYPE_ARP
                && let Some(a) = Arp::parse(&o[ETH..])
                && a.tpa == SERVER
            {
                let reply = Arp {
                    op: 2,
                    sha: mac(SERVER_MAC),
                    spa: SERVER,
                    tha: a.sha,
                    tpa: a.spa,
                };
                g.handle_wan(&reply.frame(a.sha), now, &mut out);
            }
        }
    }
    false
}

fn events(g: &mut Gateway) -> Vec<String> {
    g.take_events().into_iter().map(|e| e.msg).collect()
}

#[test]
fn lease_is_applied_renewed_at_t1_and_lost_at_expiry() {
    let mut g = gateway();
    let mut s = Server {
        answering: true,
        seen: Vec::new(),
    };

    // Bound within the first poll's exchange: DISCOVER, OFFER, REQUEST, ACK.
    s.run(&mut g, 0, 0);
    assert_eq!(g.wan_addr(), Some((LEASED, 24)));
    assert_eq!(g.nat.as_ref().unwrap().ext_ip(), Some(LEASED));
    let ev = events(&mut g);
    assert!(
        ev.iter()
            .any(|m| m == "uplink address gained by DHCP: 10.99.0.50/24, router 10.99.0.1"),
        "{ev:?}"
    );
    assert!(routes_out(&mut g, 1), "routes out with the leased address");

    // Renewal: nothing before T1 (60 s), then a REQUEST unicast to the
    // server from the leased address, answered; the address is never
    // dropped in between and no event is logged.
    s.run(&mut g, 500, 59_500);
    assert!(s.requests_between(500, 59_500).is_empty(), "{:?}", s.seen);
    s.run(&mut g, 60_000, 61_000);
    let renew = s.requests_between(60_000, 61_000);
    assert_eq!(renew.len(), 1, "{:?}", s.seen);
    assert_eq!(renew[0].1, SERVER, "renewal is unicast to the server");
    assert_eq!(renew[0].2, LEASED, "renewal names the leased address");
    assert_eq!(g.wan_addr(), Some((LEASED, 24)));
    let ev = events(&mut g);
    assert!(!ev.iter().any(|m| m.contains("lost")), "{ev:?}");
    assert!(routes_out(&mut g, 61_000));

    // The server goes away: the client retries (renewing, then rebinding
    // by broadcast) and the lease, renewed at about 60 s, ends 120 s
    // later; the address is dropped then, not before, and not much later.
    s.answering = false;
    s.run(&mut g, 61_500, 179_500);
    assert_eq!(
        g.wan_addr(),
        Some((LEASED, 24)),
        "still leased before expiry"
    );
    assert!(
        s.requests_between(61_500, 179_500)
            .iter()
            .any(|r| r.1 == Ipv4Addr::BROADCAST),
        "rebinding broadcasts: {:?}",
        s.seen
    );
    s.run(&mut g, 180_000, 182_000);
    assert_eq!(g.wan_addr(), None, "lease lost at expiry");
    assert_eq!(g.nat.as_ref().unwrap().ext_ip(), None);
    let ev = events(&mut g);
    assert!(
        ev.iter()
            .any(|m| m == "uplink address lost (DHCP lease ended): 10.99.0.50/24"),
        "{ev:?}"
    );
    assert!(g.routes().iter().all(|r| r.destination != "default"));
    let before = g.stats().drops[GwDrop::NoRoute.index()];
    assert!(!routes_out(&mut g, 182_000));
    assert_eq!(g.stats().drops[GwDrop::NoRoute.index()], before + 1);
    // And it starts over: a DISCOVER went out after the loss.
    assert!(
        s.seen
            .iter()
            .any(|x| x.0 >= 180_000 && x.1 == DhcpMessageType::Discover),
        "{:?}",
        s.seen
    );

    // A server that comes back gives the address back within one retry.
    s.answering = true;
    s.run(&mut g, 182_500, 185_000);
    assert_eq!(g.wan_addr(), Some((LEASED, 24)));
    assert!(routes_out(&mut g, 185_000));
}
