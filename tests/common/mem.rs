//! The in-memory rigs of the pipeline tests that need no root: a switch
//! over three `MemPort`s, one with an uplink and NAT, and a UDP datagram
//! builder.

use std::net::Ipv4Addr;
use vswitchd::datapath::{PortInfo, Switch, UplinkSlot};
use vswitchd::gateway::nat::NatConfig;
use vswitchd::gateway::{Gateway, GatewayConfig, WanAddr, WanConfig};
use vswitchd::port::mem::MemPort;
use vswitchd::switch::{Fdb, PortId};
use vswitchd::wire::MacAddr;
use vswitchd::wire::checksum;
use vswitchd::wire::ipv4::fill_ip_checksum;
use vswitchd::wire::vnet::{F_NEEDS_CSUM, VNET_HDR_LEN, VnetHdr};

pub struct Rig {
    pub sw: Switch<MemPort, MemPort>,
    pub ports: Vec<MemPort>,
    pub ids: Vec<PortId>,
}

pub fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// The gateway at 192.168.88.1, with `wan` (and NAT toward it) or none.
fn gateway(wan: Option<WanConfig>) -> Gateway {
    let nat = wan.is_some().then(NatConfig::default);
    let cfg = GatewayConfig {
        lan_mac: MacAddr::stable_local("gw"),
        lan_ip: Ipv4Addr::new(192, 168, 88, 1),
        subnet: "192.168.88.0/24".parse().unwrap(),
        lan_mtu: 1500,
        wan,
        nat,
    };
    Gateway::new(cfg, 0)
}

/// Port 0 sends; port 1 takes super-frames; port 2 has offloads but not
/// that one (an older kernel).
pub fn rig() -> Rig {
    let mut sw = Switch::new(Fdb::new(300_000, 1024), 1500, gateway(None), None);
    let (mut ports, mut ids) = (Vec::new(), Vec::new());
    for i in 0..3u8 {
        let p = MemPort::new();
        p.0.borrow_mut().vnet = true;
        p.0.borrow_mut().uso = i == 1;
        let name = format!("p{i}");
        ids.push(sw.add_port(
            p.clone(),
            PortInfo {
                mac: MacAddr::from_slice(&mac(i)),
                name,
                ifname: "eth0".into(),
                addr: Ipv4Addr::new(192, 168, 88, 11 + i),
                prefix_len: 24,
                security: false,
            },
        ));
        ports.push(p);
    }
    let mut r = Rig { sw, ports, ids };
    // Teach the table where ports 1 and 2 are (each one's broadcast is
    // the other's first tx_packet: tests count from 1).
    for i in 1..3 {
        let mut hello = vec![0u8; VNET_HDR_LEN];
        hello.extend_from_slice(&[0xff; 6]);
        hello.extend_from_slice(&mac(i as u8));
        hello.extend_from_slice(&[0x88, 0xb5]);
        hello.extend_from_slice(&[0; 46]);
        r.ports[i].push_rx(&hello);
        r.sw.poll_port(r.ids[i], 0, 64).unwrap();
    }
    for p in &r.ports {
        p.take_tx();
    }
    r
}

/// A datagram from port 0's host as its stack hands it over (checksum
/// left to offload), to port `to`'s host.
pub fn datagram(to: u8, id: u16, sport: u16, payload: &[u8]) -> Vec<u8> {
    datagram_to(mac(to), [192, 168, 88, 11 + to], id, sport, payload)
}

/// The same to any address, sent to `dst_mac` (the gateway's, for a host
/// beyond it).
pub fn datagram_to(dst_mac: [u8; 6], dst: [u8; 4], id: u16, sport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let src = [192, 168, 88, 11];
    let mut f = vec![0u8; VNET_HDR_LEN];
    VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..VnetHdr::default()
    }
    .write(&mut f);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&mac(0));
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&(20 + udp_len).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    let pseudo = !checksum::finish(checksum::pseudo_header_v4(src, dst, 17, udp_len));
    f.extend_from_slice(&pseudo.to_be_bytes());
    f.extend_from_slice(payload);
    fill_ip_checksum(&mut f[VNET_HDR_LEN + 14..], 20);
    f
}

/// The wan side of [`uplink_rig`]: the host at 10.99.0.1 (the next hop,
/// already resolved) and the uplink's port.
pub const WAN_HOST: [u8; 4] = [10, 99, 0, 1];
pub const WAN_HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 1];
const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 2];

/// A switch with one port (port 0's host) and an uplink (`MemPort`, with
/// virtio-net headers; `uso`: it takes UDP super-frames) with NAT toward
/// [`WAN_HOST`], whose MAC the gateway has learned. Returns the switch,
/// the port, its id and the uplink.
pub fn uplink_rig(uso: bool) -> (Switch<MemPort, MemPort>, MemPort, PortId, MemPort) {
    let gw = gateway(Some(WanConfig {
        ifname: "up0".into(),
        mac: MacAddr::from_slice(&UPLINK_MAC),
        addr: WanAddr::Static(Ipv4Addr::new(10, 99, 0, 2), 24),
        gw: Some(Ipv4Addr::from(WAN_HOST)),
        mtu: 1500,
    }));
    let up = MemPort::new();
    up.0.borrow_mut().vnet = true;
    up.0.borrow_mut().uso = uso;
    let uplink = UplinkSlot::new(up.clone(), "up0".into(), 0);
    let mut sw = Switch::new(Fdb::new(300_000, 1024), 1500, gw, Some(uplink));
    let p = MemPort::new();
    p.0.borrow_mut().vnet = true;
    let id = sw.add_port(
        p.clone(),
        PortInfo {
            mac: MacAddr::from_slice(&mac(0)),
            name: "p0".into(),
            ifname: "eth0".into(),
            addr: Ipv4Addr::new(192, 168, 88, 11),
            prefix_len: 24,
            security: false,
        },
    );
    // The wan host answers for itself (an ARP reply the gateway takes).
    let mut arp = vec![0u8; VNET_HDR_LEN];
    arp.extend_from_slice(&UPLINK_MAC);
    arp.extend_from_slice(&WAN_HOST_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    arp.extend_from_slice(&WAN_HOST_MAC);
    arp.extend_from_slice(&WAN_HOST);
    arp.extend_from_slice(&UPLINK_MAC);
    arp.extend_from_slice(&[10, 99, 0, 2]);
    up.push_rx(&arp);
    sw.poll_uplink(0, 64).unwrap();
    up.take_tx();
    (sw, p, id, up)
}

pub fn gso(whole: &[u8]) -> VnetHdr {
    VnetHdr::parse(whole).unwrap()
}
