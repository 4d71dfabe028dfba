//! In-memory tests through the whole pipeline, no root: several
//! [`MemPort`]s in a [`Switch`], frames in through `poll_port` (the same code
//! the epoll loop runs), frames out checked per port, counters checked.

use std::net::Ipv4Addr;
use vswitchd::datapath::{PortInfo, Switch};
use vswitchd::gateway::{Gateway, GatewayConfig};
use vswitchd::port::mem::MemPort;
use vswitchd::switch::{DropReason, Fdb, PortId};
use vswitchd::wire::MacAddr;

const MTU: usize = 1500;

struct Rig {
    sw: Switch<MemPort, MemPort>,
    ports: Vec<MemPort>,
    ids: Vec<PortId>,
}

impl Rig {
    fn new(n: usize, aging_ms: u64, fdb_max: usize) -> Rig {
        let gw = Gateway::new(
            GatewayConfig {
                lan_mac: MacAddr::stable_local("gw"),
                lan_ip: Ipv4Addr::new(192, 168, 88, 1),
                subnet: "192.168.88.0/24".parse().unwrap(),
                lan_mtu: MTU,
                wan: None,
                nat: None,
            },
            0,
        );
        let mut sw = Switch::new(Fdb::new(aging_ms, fdb_max), MTU, gw, None);
        let mut ports = Vec::new();
        let mut ids = Vec::new();
        for i in 0..n {
            let p = MemPort::new();
            let name = format!("p{i}");
            ids.push(sw.add_port(
                p.clone(),
                PortInfo {
                    mac: MacAddr::stable_local(&name),
                    name,
                    ifname: "eth0".into(),
                    addr: Ipv4Addr::new(192, 168, 88, 11 + i as u8),
                    prefix_len: 24,
                    security: false,
                },
            ));
            ports.push(p);
        }
        Rig { sw, ports, ids }
    }

    /// Receives `f` on port `i` at `now`; returns which ports got a copy.
    fn send(&mut self, i: usize, f: &[u8], now: u64) -> Vec<usize> {
        self.ports[i].push_rx(f);
        assert_eq!(self.sw.poll_port(self.ids[i], now, 64).unwrap(), 1);
        let mut got = Vec::new();
        for (j, p) in self.ports.iter().enumerate() {
            let tx = p.take_tx();
            assert!(tx.len() <= 1, "port {j} got {} copies", tx.len());
            if let Some(out) = tx.first() {
                assert_eq!(out.as_slice(), f, "frame changed on the way to port {j}");
                got.push(j);
            }
        }
        got
    }

    fn drops(&self, i: usize, r: DropReason) -> u64 {
        self.sw.port(self.ids[i]).unwrap().counters.drops[r as usize]
    }
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0xa5; 14 + len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

const BCAST: [u8; 6] = [0xff; 6];

#[test]
fn flood_learn_then_unicast_only_to_owner() {
    let mut r = Rig::new(4, 300_000, 1024);
    // Broadcast from 0 reaches everyone but 0.
    assert_eq!(r.send(0, &frame(BCAST, mac(0), 46), 0), vec![1, 2, 3]);
    // Unknown unicast floods too.
    assert_eq!(r.send(1, &frame(mac(9), mac(1), 46), 1), vec![0, 2, 3]);
    // Now 0 and 1 are known: unicast goes only to the owner.
    assert_eq!(r.send(1, &frame(mac(0), mac(1), 46), 2), vec![0]);
    assert_eq!(r.send(0, &frame(mac(1), mac(0), 46), 3), vec![1]);
    // Multicast floods regardless.
    let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    assert_eq!(r.send(2, &frame(mcast, mac(2), 46), 4), vec![0, 1, 3]);

    let c0 = r.sw.port(r.ids[0]).unwrap().counters;
    assert_eq!(c0.rx_packets, 2);
    assert_eq!(c0.rx_bytes, 2 * 60);
    assert_eq!(c0.tx_packets, 3);
    // Three learned MACs plus the gateway's static entry.
    assert_eq!(r.sw.fdb().len(), 4);
}

#[test]
fn drops_have_reasons_and_counters() {
    let mut r = Rig::new(3, 300_000, 1024);
    // Runt.
    assert!(r.send(0, &[0xff; 13], 0).is_empty());
    assert_eq!(r.drops(0, DropReason::Runt), 1);
    // Too big: MTU + 14 passes, +1 does not.
    assert_eq!(r.send(0, &frame(BCAST, mac(0), MTU), 0), vec![1, 2]);
    assert!(r.send(0, &frame(BCAST, mac(0), MTU + 1), 0).is_empty());
    assert_eq!(r.drops(0, DropReason::TooBig), 1);
    // Bad source.
    assert!(r.send(1, &frame(mac(0), BCAST, 46), 0).is_empty());
    assert!(r.send(1, &frame(mac(0), [0; 6], 46), 0).is_empty());
    assert_eq!(r.drops(1, DropReason::BadSource), 2);
    // Destination on the ingress segment.
    r.send(2, &frame(BCAST, mac(20), 46), 0);
    assert!(r.send(2, &frame(mac(20), mac(21), 46), 0).is_empty());
    assert_eq!(r.drops(2, DropReason::SameSegment), 1);
    // A full egress queue is counted on the egress port.
    r.ports[1].0.borrow_mut().tx_full = true;
    assert_eq!(r.send(0, &frame(BCAST, mac(0), 46), 0), vec![2]);
    assert_eq!(r.drops(1, DropReason::TxQueueFull), 1);
}

#[test]
fn moves_aging_and_port_removal() {
    let mut r = Rig::new(3, 1_000, 1024);
    r.send(0, &frame(BCAST, mac(7), 46), 0);
    assert_eq!(r.send(1, &frame(mac(7), mac(1), 46), 10), vec![0]);
    // mac(7) moves to port 2.
    r.send(2, &frame(BCAST, mac(7), 46), 20);
    assert_eq!(r.sw.fdb().stats().moved, 1);
    assert_eq!(r.send(1, &frame(mac(7), mac(1), 46), 30), vec![2]);
    // Past the aging time it is unknown again: flooded.
    assert_eq!(r.send(1, &frame(mac(7), mac(1), 46), 1_020), vec![0, 2]);
    // Removing a port forgets its entries, static ones too.
    r.sw.fdb_add_static(MacAddr::from_bytes(mac(8)), r.ids[2])
        .unwrap();
    r.send(2, &frame(BCAST, mac(9), 46), 1_100);
    r.sw.remove_port(r.ids[2]).unwrap();
    assert_eq!(r.sw.fdb().lookup(MacAddr::from_bytes(mac(8)), 1_100), None);
    assert_eq!(r.sw.fdb().lookup(MacAddr::from_bytes(mac(9)), 1_100), None);
    // ...and floods skip it.
    r.ports.remove(2);
    r.ids.remove(2);
    assert_eq!(r.send(0, &frame(BCAST, mac(0), 46), 1_200), vec![1]);
}

#[test]
fn port_removal_forgets_the_gateways_neighbours_at_its_mac() {
    let mut r = Rig::new(2, 300_000, 1024);
    let p0 = MacAddr::stable_local("p0");
    let second = Ipv4Addr::new(192, 168, 88, 78);
    let gw = Ipv4Addr::new(192, 168, 88, 1);
    // Port 0 also uses an address of its own choosing; the gateway learns it
    // from its ARP request.
    let arp = vswitchd::wire::build::Arp::request(p0, second, gw).frame(MacAddr::BROADCAST);
    r.ports[0].push_rx(&arp);
    r.sw.poll_port(r.ids[0], 10, 64).unwrap();
    let at_p0 = |sw: &Switch<MemPort, MemPort>| {
        sw.gateway()
            .neighbours(20)
            .into_iter()
            .filter(|(_, n)| n.mac == Some(p0))
            .map(|(_, n)| n.ip)
            .collect::<Vec<_>>()
    };
    assert_eq!(at_p0(&r.sw), vec![Ipv4Addr::new(192, 168, 88, 11), second]);
    r.sw.remove_port(r.ids[0]).unwrap();
    assert!(
        at_p0(&r.sw).is_empty(),
        "{:?}",
        r.sw.gateway().neighbours(20)
    );
    // The other port's pinned entry stays.
    assert!(
        r.sw.gateway()
            .neighbours(20)
            .iter()
            .any(|(_, n)| n.ip == Ipv4Addr::new(192, 168, 88, 12))
    );
}

#[test]
fn flood_from_one_port_does_not_evict_others() {
    let mut r = Rig::new(3, 300_000, 32);
    r.send(1, &frame(BCAST, mac(1), 46), 0);
    r.send(2, &frame(BCAST, mac(2), 46), 0);
    for i in 0..10_000u32 {
        let b = i.to_be_bytes();
        r.send(
            0,
            &frame(mac(1), [0x06, 0x01, b[0], b[1], b[2], b[3]], 46),
            1 + i as u64,
        );
    }
    assert!(r.sw.fdb().len() <= 32);
    assert_eq!(r.send(1, &frame(mac(2), mac(1), 46), 20_000), vec![2]);
    assert_eq!(r.send(2, &frame(mac(1), mac(2), 46), 20_001), vec![1]);
}

#[test]
fn poll_respects_budget_and_random_junk_never_panics() {
    let mut r = Rig::new(3, 300_000, 256);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let n = 20_000;
    let mut junk = Vec::new();
    for _ in 0..n {
        let len = (rnd() % 1600) as usize;
        let f: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        r.ports[0].push_rx(&f);
        junk.push(f);
    }
    let mut read = 0;
    let mut rounds = 0;
    loop {
        let got = r.sw.poll_port(r.ids[0], rounds, 64).unwrap();
        assert!(got <= 64);
        if got == 0 {
            break;
        }
        read += got;
        rounds += 1;
    }
    assert_eq!(read, n);
    assert_eq!(rounds as usize, n.div_ceil(64), "64 frames per poll");
    let c = r.sw.port(r.ids[0]).unwrap().counters;
    assert_eq!(c.rx_packets, n as u64);
    // Every frame was dropped for its reason or forwarded: exactly one.
    // Nothing is learned on ports 1 and 2, so whatever passes floods to
    // both: each port's copies count the forwarded frames.
    let forwarded = r.ports[1].take_tx().len() as u64;
    assert_eq!(r.ports[2].take_tx().len() as u64, forwarded);
    let (runts, too_big, bad_src) = junk.iter().fold((0, 0, 0), |(a, b, c), f| {
        if f.len() < 14 {
            (a + 1, b, c)
        } else if f.len()
            > MTU
                + 14
                + if matches!(&f[12..14], [0x81, 0x00] | [0x88, 0xa8]) {
                    4
                } else {
                    0
                }
        {
            (a, b + 1, c)
        } else if f[6] & 1 == 1 || f[6..12] == [0; 6] {
            (a, b, c + 1)
        } else {
            (a, b, c)
        }
    });
    assert_eq!(r.drops(0, DropReason::Runt), runts);
    assert_eq!(r.drops(0, DropReason::TooBig), too_big);
    assert_eq!(r.drops(0, DropReason::BadSource), bad_src);
    assert!(runts > 0 && too_big > 0 && bad_src > 0 && forwarded > 0);
    assert_eq!(c.drop_total() + forwarded, n as u64);
    assert!(r.sw.fdb().len() <= 256);
}

/// A TCP super-frame (virtio-net GSO header, partial checksum) from a port
/// with offloads reaches another offload port unchanged, and a port without
/// offloads as MTU-sized segments with finished checksums: never dropped.
#[test]
fn super_frames_pass_whole_or_are_segmented_never_dropped() {
    use vswitchd::wire::checksum;
    use vswitchd::wire::ipv4::{Ipv4Hdr, fill_ip_checksum, l4_checksum};
    use vswitchd::wire::vnet::{F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, VnetHdr};

    let mut r = Rig::new(3, 300_000, 1024);
    r.ports[0].0.borrow_mut().vnet = true;
    r.ports[1].0.borrow_mut().vnet = true; // port 2 has no offloads
    // Learn nothing: the frame floods to both.
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let mut f = frame(BCAST, mac(0), 0);
    f.truncate(14);
    let mut ip = vec![0u8; 40];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[192, 168, 88, 11]);
    ip[16..20].copy_from_slice(&[192, 168, 88, 12]);
    ip[20..22].copy_from_slice(&1234u16.to_be_bytes());
    ip[22..24].copy_from_slice(&80u16.to_be_bytes());
    ip[32] = 5 << 4;
    ip[33] = 0x18;
    fill_ip_checksum(&mut ip, 20);
    let seed = !checksum::finish(checksum::pseudo_header_v4(
        [192, 168, 88, 11],
        [192, 168, 88, 12],
        6,
        (20 + payload.len()) as u16,
    ));
    ip[36..38].copy_from_slice(&seed.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&payload);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut whole = vec![0u8; VNET_HDR_LEN];
    hdr.write(&mut whole);
    whole.extend_from_slice(&f);
    r.ports[0].push_rx(&whole);
    assert_eq!(r.sw.poll_port(r.ids[0], 0, 64).unwrap(), 1);

    let to_offload = r.ports[1].take_tx();
    assert_eq!(
        to_offload,
        vec![whole.clone()],
        "offload port gets the super-frame as is"
    );
    let segs = r.ports[2].take_tx();
    assert_eq!(segs.len(), payload.len().div_ceil(1448));
    let mut got = Vec::new();
    for s in &segs {
        assert!(s.len() <= 1514, "segment larger than the MTU");
        let h = Ipv4Hdr::parse(&s[14..]).unwrap();
        assert_eq!(l4_checksum(&s[14..], &h), 0, "segment checksum");
        got.extend_from_slice(&s[14 + 40..14 + h.total_len]);
    }
    assert_eq!(got, payload);
    let c = r.sw.port(r.ids[0]).unwrap().counters;
    assert_eq!(c.drop_total(), 0);
}

/// A port whose writes fail (not a full queue: an error), for `tx_error`.
struct Failing {
    inner: MemPort,
    fail: std::rc::Rc<std::cell::Cell<bool>>,
}

impl vswitchd::port::Port for Failing {
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.recv(buf)
    }
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        if self.fail.get() {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.send(frame)
    }
}

/// A write that fails is counted as `tx_error` on the egress port; the
/// other ports still get the frame.
#[test]
fn a_failing_write_is_a_tx_error_on_that_port() {
    let gw = Gateway::new(
        GatewayConfig {
            lan_mac: MacAddr::stable_local("gw"),
            lan_ip: Ipv4Addr::new(192, 168, 88, 1),
            subnet: "192.168.88.0/24".parse().unwrap(),
            lan_mtu: MTU,
            wan: None,
            nat: None,
        },
        0,
    );
    let mut sw: Switch<Failing, MemPort> = Switch::new(Fdb::new(300_000, 64), MTU, gw, None);
    let mut mems = Vec::new();
    let mut flags = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = MemPort::new();
        let fail = std::rc::Rc::new(std::cell::Cell::new(false));
        let name = format!("f{i}");
        ids.push(sw.add_port(
            Failing {
                inner: m.clone(),
                fail: fail.clone(),
            },
            PortInfo {
                mac: MacAddr::stable_local(&name),
                name,
                ifname: "eth0".into(),
                addr: Ipv4Addr::new(192, 168, 88, 11 + i as u8),
                prefix_len: 24,
                security: false,
            },
        ));
        mems.push(m);
        flags.push(fail);
    }
    flags[1].set(true);
    mems[0].push_rx(&frame(BCAST, mac(1), 46));
    assert_eq!(sw.poll_port(ids[0], 0, 64).unwrap(), 1);
    assert_eq!(mems[2].take_tx().len(), 1, "the healthy port got it");
    assert!(mems[1].take_tx().is_empty());
    let c1 = sw.port(ids[1]).unwrap().counters;
    assert_eq!(c1.drops[DropReason::TxError as usize], 1);
    assert_eq!(c1.drops[DropReason::TxQueueFull as usize], 0);
    assert_eq!(c1.tx_packets, 0);
    assert_eq!(c1.state(), "down", "writes fail: shown as down");
    assert_eq!(sw.port(ids[2]).unwrap().counters.tx_packets, 1);
    assert_eq!(sw.port(ids[2]).unwrap().counters.state(), "up");
    // Unicast to the failing port: counted the same way.
    mems[1].push_rx(&frame(BCAST, mac(2), 46));
    sw.poll_port(ids[1], 1, 64).unwrap();
    assert_eq!(
        sw.port(ids[1]).unwrap().counters.state(),
        "up",
        "a frame from it: up again"
    );
    mems[0].push_rx(&frame(mac(2), mac(1), 46));
    sw.poll_port(ids[0], 2, 64).unwrap();
    assert_eq!(
        sw.port(ids[1]).unwrap().counters.drops[DropReason::TxError as usize],
        2
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of frames between 4 ports (sources from a small set,
        /// so they learn, move and collide): each frame is received once,
        /// then forwarded (to exactly the ports the rules name, each copy
        /// unchanged, never back to its ingress) or dropped with one reason.
        #[test]
        fn each_frame_is_forwarded_or_dropped_exactly_once(
            frames in proptest::collection::vec(
                (0..4usize, 0..8u8, 0..8u8,
                 prop_oneof![Just(0x0800u16), Just(0x8100), Just(0x88a8), Just(0x0806)],
                 prop_oneof![8 => 46..200usize, 1 => 0..14usize, 1 => 1495..1510usize]),
                1..80),
        ) {
            let mut r = Rig::new(4, 300_000, 1024);
            let mut owner: std::collections::HashMap<u8, usize> = Default::default();
            for (i, (port, d, s, et, len)) in frames.into_iter().enumerate() {
                // MAC numbers: 0 broadcast, 1 multicast, 2 zero, others unicast.
                let m = |n: u8| match n {
                    0 => BCAST,
                    1 => [0x01, 0x00, 0x5e, 0, 0, 1],
                    2 => [0; 6],
                    n => mac(n),
                };
                let mut f = frame(m(d), m(s), len.saturating_sub(14));
                f.truncate(len);
                if f.len() >= 14 {
                    f[12..14].copy_from_slice(&et.to_be_bytes());
                }
                let before: Vec<_> = r.ids.iter().map(|id| r.sw.port(*id).unwrap().counters).collect();
                let got = r.send(port, &f, i as u64);
                let after: Vec<_> = r.ids.iter().map(|id| r.sw.port(*id).unwrap().counters).collect();
                prop_assert_eq!(after[port].rx_packets, before[port].rx_packets + 1);
                let dropped = after[port].drop_total() - before[port].drop_total();
                let tagged = et == 0x8100 || et == 0x88a8;
                let expect: Option<Vec<usize>> = if f.len() < 14
                    || f.len() > MTU + 14 + if tagged { 4 } else { 0 }
                    || s <= 2
                {
                    None
                } else {
                    owner.insert(s, port);
                    match d {
                        0 | 1 => Some((0..4).filter(|&p| p != port).collect()),
                        2 => Some((0..4).filter(|&p| p != port).collect()),
                        d => match owner.get(&d) {
                            Some(&p) if p == port => None,
                            Some(&p) => Some(vec![p]),
                            None => Some((0..4).filter(|&p| p != port).collect()),
                        },
                    }
                };
                match expect {
                    None => {
                        prop_assert_eq!(dropped, 1, "frame {} not dropped once", i);
                        prop_assert!(got.is_empty());
                    }
                    Some(ports) => {
                        prop_assert_eq!(dropped, 0);
                        prop_assert_eq!(&got, &ports, "frame {}", i);
                        for p in &ports {
                            prop_assert_eq!(after[*p].tx_packets, before[*p].tx_packets + 1);
                        }
                    }
                }
            }
        }
    }
}

/// Directory mode (the overlay's `--etcd`): port 2 plays the overlay.
#[test]
fn directory_answers_arp_steers_remote_macs_and_keeps_gateway_frames_home() {
    use vswitchd::switch::Directory;
    use vswitchd::wire::build::{ARP_REPLY, Arp};
    let mut r = Rig::new(3, 300_000, 100);
    let overlay = r.ids[2];
    let gw_mac = r.sw.gateway().mac();
    let remote_ip = Ipv4Addr::new(192, 168, 88, 21);
    let remote_mac = MacAddr::from_bytes(mac(21));
    let mut dir = Directory::new(overlay, 0, Ipv4Addr::new(192, 168, 88, 1), gw_mac, 10);
    dir.insert(remote_ip, remote_mac, true).unwrap();
    dir.insert(
        Ipv4Addr::new(192, 168, 88, 12),
        MacAddr::from_bytes(mac(2)),
        false,
    )
    .unwrap();
    r.sw.set_directory(dir);
    let a = MacAddr::from_bytes(mac(1));

    // ARP for the remote port: answered to the asker, nothing else moves.
    let req = Arp::request(a, Ipv4Addr::new(192, 168, 88, 11), remote_ip).frame(MacAddr::BROADCAST);
    r.ports[0].push_rx(&req);
    r.sw.poll_port(r.ids[0], 0, 64).unwrap();
    let got = r.ports[0].take_tx();
    assert_eq!(got.len(), 1);
    let rep = Arp::parse(&got[0][14..]).unwrap();
    assert_eq!(
        (rep.op, rep.sha, rep.spa),
        (ARP_REPLY, remote_mac, remote_ip)
    );
    assert_eq!(&got[0][0..6], &mac(1));
    assert!(r.ports[1].take_tx().is_empty() && r.ports[2].take_tx().is_empty());
    assert_eq!(r.sw.arp_answered(), 1);

    // ARP for a local port: local flood only, not into the overlay.
    let req = Arp::request(
        a,
        Ipv4Addr::new(192, 168, 88, 11),
        Ipv4Addr::new(192, 168, 88, 12),
    )
    .frame(MacAddr::BROADCAST);
    assert_eq!(r.send(0, &req, 1), vec![1]);
    // Unknown addresses still flood everywhere (the overlay too).
    let req = Arp::request(
        a,
        Ipv4Addr::new(192, 168, 88, 11),
        Ipv4Addr::new(192, 168, 88, 99),
    )
    .frame(MacAddr::BROADCAST);
    assert_eq!(r.send(0, &req, 2), vec![1, 2]);

    // A remote MAC goes to the overlay only, though never learned there.
    assert_eq!(r.send(0, &frame(mac(21), mac(1), 46), 3), vec![2]);
    // What comes from the overlay is not learned.
    assert_eq!(r.send(2, &frame(mac(1), mac(21), 46), 4), vec![0]);
    assert_eq!(r.send(2, &frame(mac(1), mac(33), 46), 5), vec![0]);
    assert_eq!(r.sw.fdb().lookup(MacAddr::from_bytes(mac(33)), 5), None);
    // Another host's gateway never reaches us through the overlay.
    assert!(
        r.send(2, &frame(mac(1), gw_mac.to_bytes(), 46), 6)
            .is_empty()
    );
    assert_eq!(r.drops(2, DropReason::OverlayGateway), 1);
}
