//! Port security (`--port-security`, or per port with `port add
//! --port-security`): a port may only send frames that carry its own
//! identity, as OVN's `port_security` and libvirt's `clean-traffic` filter
//! do. vswitchd gave the port its MAC and its IPv4 address, so it knows
//! both:
//!
//! - the source MAC must be the port's own;
//! - an IPv4 packet's source must be the port's address, or 0.0.0.0 (a
//!   DHCP client before it has an address);
//! - an ARP packet's sender MAC must be the port's, and its sender address
//!   the port's or 0.0.0.0 (an ARP probe, RFC 5227).
//!
//! One 802.1Q or 802.1ad tag is looked through. Other protocols (IPv6, whose
//! addresses vswitchd does not assign) are checked by source MAC only.
//! Anything else is dropped with the reason `spoofed_source` before the
//! switch learns from it, so a spoofer can neither poison the MAC table nor
//! the neighbours' caches.

use crate::wire::{ETH_HEADER_LEN, ETHERTYPE_QINQ, ETHERTYPE_VLAN, MacAddr, VLAN_TAG_LEN, ipv4};
use std::net::Ipv4Addr;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

/// The identity a secured port must send with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
}

impl Guard {
    /// Whether `frame` (at least an Ethernet header long) may leave this
    /// port into the switch.
    pub fn allows(&self, frame: &[u8]) -> bool {
        if MacAddr::from_slice(&frame[6..12]) != self.mac {
            return false;
        }
        let mut at = ETH_HEADER_LEN;
        let mut ethertype = ipv4::get16(frame, 12);
        if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
            if frame.len() < ETH_HEADER_LEN + VLAN_TAG_LEN {
                return false;
            }
            ethertype = ipv4::get16(frame, 16);
            at += VLAN_TAG_LEN;
        }
        let own = |a: &[u8]| a == self.addr.octets() || a == [0, 0, 0, 0];
        match ethertype {
            ETHERTYPE_IPV4 => frame.get(at + 12..at + 16).is_some_and(own),
            ETHERTYPE_ARP => match frame.get(at + 8..at + 18) {
                Some(a) => MacAddr::from_slice(&a[0..6]) == self.mac && own(&a[6..10]),
                None => false,
            },
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::{self, Arp};

    fn guard() -> Guard {
        Guard {
            mac: "02:00:00:00:00:11".parse().unwrap(),
            addr: Ipv4Addr::new(192, 168, 88, 11),
        }
    }
    fn ipv4_from(mac: MacAddr, src: Ipv4Addr) -> Vec<u8> {
        let ip = build::Ipv4 {
            src,
            dst: Ipv4Addr::new(192, 168, 88, 1),
            proto: ipv4::PROTO_UDP,
            ttl: 64,
            id: 1,
            dont_frag: false,
        };
        build::ipv4_frame(MacAddr::BROADCAST, mac, ip, &[0; 8])
    }

    #[test]
    fn own_identity_passes_and_others_do_not() {
        let g = guard();
        let other: MacAddr = "02:00:00:00:00:12".parse().unwrap();
        assert!(g.allows(&ipv4_from(g.mac, g.addr)));
        assert!(g.allows(&ipv4_from(g.mac, Ipv4Addr::UNSPECIFIED)), "DHCP");
        assert!(!g.allows(&ipv4_from(other, g.addr)), "another MAC");
        assert!(
            !g.allows(&ipv4_from(g.mac, Ipv4Addr::new(192, 168, 88, 12))),
            "another address"
        );
        // ARP: sender MAC and address.
        let own = Arp::request(g.mac, g.addr, Ipv4Addr::new(192, 168, 88, 1));
        assert!(g.allows(&own.frame(MacAddr::BROADCAST)));
        let probe = Arp::request(g.mac, Ipv4Addr::UNSPECIFIED, g.addr);
        assert!(g.allows(&probe.frame(MacAddr::BROADCAST)), "ARP probe");
        let claim = Arp::request(
            g.mac,
            Ipv4Addr::new(192, 168, 88, 12),
            Ipv4Addr::new(192, 168, 88, 12),
        );
        assert!(
            !g.allows(&claim.frame(MacAddr::BROADCAST)),
            "gratuitous ARP for another"
        );
        let mut sha = own.frame(MacAddr::BROADCAST);
        sha[22..28].copy_from_slice(&other.to_bytes());
        assert!(!g.allows(&sha), "ARP sender MAC of another");
        // Truncated IPv4 or ARP is not let through unchecked.
        assert!(!g.allows(&ipv4_from(g.mac, g.addr)[..20]));
        assert!(!g.allows(&own.frame(MacAddr::BROADCAST)[..30]));
    }

    #[test]
    fn tags_are_looked_through_and_other_protocols_checked_by_mac() {
        let g = guard();
        let tag = |f: Vec<u8>| {
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
            t.extend_from_slice(&f[12..]);
            t
        };
        assert!(g.allows(&tag(ipv4_from(g.mac, g.addr))));
        assert!(!g.allows(&tag(ipv4_from(g.mac, Ipv4Addr::new(10, 0, 0, 1)))));
        let mut v6 = ipv4_from(g.mac, g.addr);
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert!(g.allows(&v6));
        v6[6] ^= 0x04;
        assert!(!g.allows(&v6));
    }
}
