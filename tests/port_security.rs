//! Port security and pinned neighbours, as a hostile tenant would try them:
//! a namespace claiming another port's MAC or address (gratuitous ARP,
//! spoofed IPv4 source, spoofed source MAC). Root tests.

mod common;

use common::*;
use std::net::Ipv4Addr;
use vswitchd::wire::MacAddr;
use vswitchd::wire::build::{self, ARP_REPLY, Arp};

/// A gratuitous ARP from `mac` claiming `addr`, broadcast.
fn garp(mac: &str, addr: &str) -> Vec<u8> {
    let mac: MacAddr = mac.parse().unwrap();
    let addr: Ipv4Addr = addr.parse().unwrap();
    Arp {
        op: ARP_REPLY,
        sha: mac,
        spa: addr,
        tha: MacAddr::BROADCAST,
        tpa: addr,
    }
    .frame(MacAddr::BROADCAST)
    .to_vec()
}

/// A UDP datagram from `mac`/`src` to the gateway.
fn udp_from(mac: &str, src: &str) -> Vec<u8> {
    let ip = build::Ipv4 {
        src: src.parse().unwrap(),
        dst: Ipv4Addr::new(192, 168, 88, 1),
        proto: 17,
        ttl: 64,
        id: 7,
        dont_frag: false,
    };
    build::ipv4_frame(MacAddr::BROADCAST, mac.parse().unwrap(), ip, &[0; 12])
}

fn spoofed(d: &Daemon, ns: &str) -> u64 {
    d.port(ns)["drops"]["spoofed_source"].as_u64().unwrap_or(0)
}

/// The MAC ns `who` has for `addr` (after pinging it).
fn neigh_mac(who: &str, addr: &str) -> String {
    let out = run_ok("ip", &["-n", who, "neigh", "show", addr]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_secured_port_cannot_claim_another_ports_identity() {
    if !root_or_skip("a_secured_port_cannot_claim_another_ports_identity") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let d = Daemon::start(&["--ports", &ns.csv(), "--port-security"]);
    let (attacker, victim, other) = (&ns.0[0], &ns.0[1], &ns.0[2]);
    let (a_mac, v_mac) = (d.mac_of(attacker), d.mac_of(victim));
    assert!(ping(other, "192.168.88.12"));
    assert_eq!(neigh_mac(other, "192.168.88.12"), v_mac);

    // A gratuitous ARP claiming the victim's address, from the attacker's
    // own MAC; a datagram with the victim's address; one with the
    // victim's MAC as source; each dropped and counted at the attacker's
    // port, none learned.
    let frames = vec![
        garp(&a_mac, "192.168.88.12"),
        udp_from(&a_mac, "192.168.88.12"),
        udp_from(&v_mac, "192.168.88.11"),
        garp(&v_mac, "192.168.88.12"),
    ];
    assert_eq!(send_frames(attacker, "eth0", &frames, 0), 4);
    assert!(
        wait_until(std::time::Duration::from_secs(2), || spoofed(&d, attacker)
            == 4),
        "{}",
        d.port(attacker)
    );
    // Nothing changed: the victim's MAC is still learned on the victim's
    // port, the others still reach the victim, their caches untouched,
    // the gateway's entry pinned.
    let (rows, _) = d.fdb();
    assert!(
        rows.iter().any(|r| r.0 == v_mac && r.1 == *victim),
        "{rows:?}"
    );
    assert_eq!(neigh_mac(other, "192.168.88.12"), v_mac);
    assert!(ping(other, "192.168.88.12"));
    let neigh = stdout(&d.ctl(&["neigh"]));
    assert!(
        neigh
            .lines()
            .any(|l| l.contains("192.168.88.12") && l.contains(&v_mac) && l.contains("PERMANENT")),
        "{neigh}"
    );
    // Its own traffic passes, and trace shows the same decision.
    assert!(ping(attacker, "192.168.88.13"));
    let eth = format!("src={v_mac},dst=ff:ff:ff:ff:ff:ff");
    let t = stdout(&d.ctl(&["trace", "--port", attacker, "eth", &eth]));
    assert!(t.contains("spoofed_source"), "{t}");
    d.stop();
}

#[test]
fn without_port_security_neighbours_stay_pinned_and_one_port_can_be_secured() {
    if !root_or_skip("without_port_security_neighbours_stay_pinned_and_one_port_can_be_secured") {
        return;
    }
    let mut ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    let (attacker, victim) = (&ns.0[0], &ns.0[1]);
    let (a_mac, v_mac) = (d.mac_of(attacker), d.mac_of(victim));
    // Off by default: the frame passes, but the gateway's entry for the
    // victim is pinned, so the gateway still sends to the victim.
    assert_eq!(
        send_frames(attacker, "eth0", &[garp(&a_mac, "192.168.88.12")], 0),
        1
    );
    assert_eq!(spoofed(&d, attacker), 0);
    assert!(ping(victim, "192.168.88.1"));
    let neigh = stdout(&d.ctl(&["neigh"]));
    assert!(
        neigh
            .lines()
            .any(|l| l.contains("192.168.88.12") && l.contains(&v_mac)),
        "{neigh}"
    );
    // One port added with --port-security: its spoofs are dropped.
    let third = ns.add_existing();
    let out = d.ctl(&["port", "add", &third, "--port-security"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.port(&third)["security"], true);
    let t_mac = d.mac_of(&third);
    assert_eq!(
        send_frames(&third, "eth0", &[udp_from(&t_mac, "192.168.88.12")], 0),
        1
    );
    assert!(
        wait_until(std::time::Duration::from_secs(2), || spoofed(&d, &third)
            == 1),
        "{}",
        d.port(&third)
    );
    assert!(ping(&third, "192.168.88.12"));
    d.stop();
}
