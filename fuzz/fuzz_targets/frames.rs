//! Any bytes as a frame from a port and from the uplink: the switching
//! decision, the gateway (router, NAT, smoltcp stacks) and the virtio-net
//! completion must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use vswitchd::gateway::nat::NatConfig;
use vswitchd::gateway::{Gateway, GatewayConfig, Outbox, WanAddr, WanConfig};
use vswitchd::switch::{Fdb, decide};
use vswitchd::wire::MacAddr;
use vswitchd::wire::vnet::{self, VNET_HDR_LEN, VnetHdr};

fuzz_target!(|data: &[u8]| {
    let mut fdb = Fdb::new(300_000, 64);
    let _ = decide(&mut fdb, data, 1, Some(1500), 0);
    let _ = decide(&mut fdb, data, 2, None, 1);

    let mut g = Gateway::new(
        GatewayConfig {
            lan_mac: "02:00:00:00:00:01".parse::<MacAddr>().unwrap(),
            lan_ip: Ipv4Addr::new(192, 168, 88, 1),
            subnet: "192.168.88.0/24".parse().unwrap(),
            lan_mtu: 1500,
            wan: Some(WanConfig {
                ifname: "up0".into(),
                mac: "02:00:00:00:00:02".parse().unwrap(),
                addr: WanAddr::Static(Ipv4Addr::new(10, 99, 0, 2), 24),
                gw: Some(Ipv4Addr::new(10, 99, 0, 1)),
                mtu: 1500,
            }),
            nat: Some(NatConfig::default()),
        },
        0,
    );
    let mut out = Outbox::default();
    let mut f = data.to_vec();
    if f.len() >= 6 {
        // Half the inputs addressed to the gateway, so they get past the MAC check.
        if data[0] & 1 == 0 {
            f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        }
    }
    g.handle_lan(&f, 1, &mut out);
    if f.len() >= 6 {
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    }
    g.handle_wan(&f, 2, &mut out);
    g.poll(3, &mut out);

    // The same bytes as virtio-net header + frame.
    if data.len() >= VNET_HDR_LEN {
        let hdr = VnetHdr::parse(data).unwrap();
        let mut frame = data[VNET_HDR_LEN..].to_vec();
        let mut scratch = Vec::new();
        let mut copy = Vec::new();
        let _ = vnet::for_each_whole(&hdr, &frame, &mut copy, &mut scratch, |_| {});
        let _ = vnet::complete(&hdr, &mut frame, &mut scratch, |_| {});
        let _ = g.route_offloaded_lan(&hdr, &frame, 4, &mut out);
        let _ = g.route_offloaded_wan(&hdr, &frame, 4, &mut out);
    }
});
