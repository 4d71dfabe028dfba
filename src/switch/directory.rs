//! The overlay's directory as the switch sees it (directory mode, `--etcd`):
//! which addresses and MACs live on which side, so the forwarding decision
//! can follow it instead of flooding and learning.
//!
//! Rules it adds to [`super::forward`] (all pure, frame + port in):
//! - A MAC of a remote port forwards to the overlay port, whatever the MAC
//!   table says; nothing is learned from frames that come from the overlay
//!   (the directory is authoritative, so a remote host cannot fill our
//!   table).
//! - An ARP request for the address of a remote port is answered here, on
//!   behalf of that port, with its MAC from the directory (ARP suppression,
//!   as Docker's overlay and EVPN do): no broadcast crosses hosts for it.
//!   An ARP request for a local port's address or the gateway's floods to
//!   the local ports only.
//! - The gateway is distributed: every host has one with the same address
//!   and MAC. Its frames never cross the overlay: its broadcasts flood
//!   locally, a unicast from it toward the overlay and a frame from the
//!   overlay with its MAC as the source are dropped (`overlay_gateway`).
//!
//! Remote entries live here, not in the MAC table, so they never compete
//! with learned MACs for `--fdb-max`; they have their own bound.

use super::fdb::PortId;
use crate::hash::FastMap;
use crate::wire::build::{ARP_REQUEST, Arp};
use crate::wire::{ETH_HEADER_LEN, MacAddr, ipv4};
use std::net::Ipv4Addr;

const ETHERTYPE_ARP: u16 = 0x0806;

/// One address in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    mac: MacAddr,
    remote: bool,
}

/// Why an address could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("the directory holds {0} remote ports already")]
    Full(usize),
    #[error("{0} is not a unicast MAC")]
    NotUnicast(MacAddr),
}

/// What the directory says about one frame before the MAC table is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// Nothing special: learn and decide as usual.
    Pass,
    /// An ARP request this switch answers for a remote port.
    Answer(MacAddr),
    /// A broadcast that stays on this host (not into the overlay).
    LocalOnly,
    /// A gateway frame crossing the overlay.
    GatewayCrossing,
}

/// The addresses of the network's ports, on this host and the others.
#[derive(Clone, Debug)]
pub struct Directory {
    overlay: PortId,
    gateway_port: PortId,
    gateway_ip: Ipv4Addr,
    gateway_mac: MacAddr,
    by_ip: FastMap<u32, Entry>,
    /// Remote MACs (packed), with how many addresses use each.
    remote_macs: FastMap<u64, u32>,
    remote: usize,
    max_remote: usize,
}

impl Directory {
    /// A directory for a switch whose overlay port is `overlay` and whose
    /// gateway (address `gateway_ip`, MAC `gateway_mac`) is on
    /// `gateway_port`; at most `max_remote` remote addresses.
    pub fn new(
        overlay: PortId,
        gateway_port: PortId,
        gateway_ip: Ipv4Addr,
        gateway_mac: MacAddr,
        max_remote: usize,
    ) -> Directory {
        Directory {
            overlay,
            gateway_port,
            gateway_ip,
            gateway_mac,
            by_ip: FastMap::default(),
            remote_macs: FastMap::default(),
            remote: 0,
            max_remote,
        }
    }

    pub fn overlay_port(&self) -> PortId {
        self.overlay
    }

    /// Remote addresses held.
    pub fn remote_len(&self) -> usize {
        self.remote
    }

    /// Addresses held (local and remote).
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Records that `ip` is a port with `mac`, on another host (`remote`)
    /// or this one. Replaces what was there for `ip`.
    pub fn insert(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        remote: bool,
    ) -> Result<(), DirectoryError> {
        if !mac.is_valid_source() {
            return Err(DirectoryError::NotUnicast(mac));
        }
        let replacing_remote = self.by_ip.get(&ip.to_bits()).is_some_and(|e| e.remote);
        if remote && !replacing_remote && self.remote >= self.max_remote {
            return Err(DirectoryError::Full(self.max_remote));
        }
        self.remove(ip);
        self.by_ip.insert(ip.to_bits(), Entry { mac, remote });
        if remote {
            self.remote += 1;
            *self.remote_macs.entry(mac.as_u64()).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Forgets `ip`; returns the MAC it had.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<MacAddr> {
        let e = self.by_ip.remove(&ip.to_bits())?;
        if e.remote {
            self.remote -= 1;
            if let Some(n) = self.remote_macs.get_mut(&e.mac.as_u64()) {
                *n -= 1;
                if *n == 0 {
                    self.remote_macs.remove(&e.mac.as_u64());
                }
            }
        }
        Some(e.mac)
    }

    /// The remote ports: (address, MAC).
    pub fn remote_entries(&self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.by_ip
            .iter()
            .filter(|(_, e)| e.remote)
            .map(|(&ip, e)| (Ipv4Addr::from_bits(ip), e.mac))
    }

    /// Whether `mac` is a remote port's.
    #[inline]
    pub fn is_remote_mac(&self, mac: MacAddr) -> bool {
        !self.remote_macs.is_empty() && self.remote_macs.contains_key(&mac.as_u64())
    }

    /// The MAC of `ip` if the directory has it.
    pub fn mac_of(&self, ip: Ipv4Addr) -> Option<(MacAddr, bool)> {
        self.by_ip.get(&ip.to_bits()).map(|e| (e.mac, e.remote))
    }

    /// Whether frames received on `port` are learned in the MAC table.
    #[inline]
    pub fn learns_on(&self, port: PortId) -> bool {
        port != self.overlay
    }

    /// What the directory says about `frame` (a whole Ethernet frame whose
    /// source the caller already checked) received on `in_port`.
    pub fn steer(&self, frame: &[u8], in_port: PortId) -> Steer {
        let src = MacAddr::from_slice(&frame[6..12]);
        if in_port == self.overlay {
            return if src == self.gateway_mac {
                Steer::GatewayCrossing
            } else {
                Steer::Pass
            };
        }
        let dst = MacAddr::from_slice(&frame[0..6]);
        if dst != MacAddr::BROADCAST || ipv4::get16(frame, 12) != ETHERTYPE_ARP {
            return Steer::Pass;
        }
        let Some(a) = Arp::parse(&frame[ETH_HEADER_LEN..]) else {
            return Steer::Pass;
        };
        if a.op != ARP_REQUEST {
            return Steer::Pass;
        }
        if a.tpa == self.gateway_ip {
            return Steer::LocalOnly;
        }
        match self.mac_of(a.tpa) {
            Some((mac, true)) => Steer::Answer(mac),
            Some((_, false)) => Steer::LocalOnly,
            None => Steer::Pass,
        }
    }

    /// Whether a flood from `in_port` stays off the overlay (the gateway's
    /// broadcasts stay on their host).
    #[inline]
    pub fn floods_locally(&self, in_port: PortId) -> bool {
        in_port == self.gateway_port
    }

    /// Whether a unicast from `in_port` to `out` would carry a gateway frame
    /// into the overlay.
    #[inline]
    pub fn gateway_crossing(&self, in_port: PortId, out: PortId) -> bool {
        in_port == self.gateway_port && out == self.overlay
    }
}

/// The ARP reply `mac` gives (through this switch) to `request`, a whole
/// ARP request frame: the answer a port with that address would send.
pub fn arp_answer(request: &[u8], mac: MacAddr) -> Option<[u8; crate::wire::build::ARP_FRAME_LEN]> {
    let a = Arp::parse(request.get(ETH_HEADER_LEN..)?)?;
    let reply = Arp {
        op: crate::wire::build::ARP_REPLY,
        sha: mac,
        spa: a.tpa,
        tha: a.sha,
        tpa: a.spa,
    };
    Some(reply.frame(a.sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVERLAY: PortId = 9;
    const GW: PortId = 0;
    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn dir() -> Directory {
        let mut d = Directory::new(OVERLAY, GW, ip("192.168.88.1"), mac("02:00:00:00:00:01"), 2);
        d.insert(ip("192.168.88.21"), mac("02:00:00:00:00:21"), true)
            .unwrap();
        d.insert(ip("192.168.88.11"), mac("02:00:00:00:00:11"), false)
            .unwrap();
        d
    }
    fn arp_request(from: &str, spa: &str, tpa: &str) -> Vec<u8> {
        Arp::request(mac(from), ip(spa), ip(tpa))
            .frame(MacAddr::BROADCAST)
            .to_vec()
    }

    #[test]
    fn arp_for_a_remote_port_is_answered_with_its_mac() {
        let d = dir();
        let req = arp_request("02:00:00:00:00:11", "192.168.88.11", "192.168.88.21");
        assert_eq!(d.steer(&req, 3), Steer::Answer(mac("02:00:00:00:00:21")));
        let rep = arp_answer(&req, mac("02:00:00:00:00:21")).unwrap();
        let a = Arp::parse(&rep[ETH_HEADER_LEN..]).unwrap();
        assert_eq!(&rep[0..6], &mac("02:00:00:00:00:11").to_bytes());
        assert_eq!(&rep[6..12], &mac("02:00:00:00:00:21").to_bytes());
        assert_eq!(a.op, crate::wire::build::ARP_REPLY);
        assert_eq!(
            (a.sha, a.spa),
            (mac("02:00:00:00:00:21"), ip("192.168.88.21"))
        );
        assert_eq!(
            (a.tha, a.tpa),
            (mac("02:00:00:00:00:11"), ip("192.168.88.11"))
        );
    }

    #[test]
    fn arp_for_local_or_gateway_stays_local_and_unknown_passes() {
        let d = dir();
        let f = |t| arp_request("02:00:00:00:00:11", "192.168.88.11", t);
        assert_eq!(d.steer(&f("192.168.88.1"), 3), Steer::LocalOnly);
        assert_eq!(d.steer(&f("192.168.88.11"), 3), Steer::LocalOnly);
        assert_eq!(d.steer(&f("192.168.88.99"), 3), Steer::Pass);
        // The same request from the overlay is not ours to answer.
        assert_eq!(d.steer(&f("192.168.88.21"), OVERLAY), Steer::Pass);
        // A reply, or a unicast request, is not steered.
        let mut rep = f("192.168.88.21");
        rep[21] = 2;
        assert_eq!(d.steer(&rep, 3), Steer::Pass);
        let mut uni = f("192.168.88.21");
        uni[0..6].copy_from_slice(&mac("02:00:00:00:00:21").to_bytes());
        assert_eq!(d.steer(&uni, 3), Steer::Pass);
    }

    #[test]
    fn gateway_frames_do_not_cross() {
        let d = dir();
        let mut f = arp_request("02:00:00:00:00:01", "192.168.88.1", "192.168.88.99");
        assert_eq!(d.steer(&f, OVERLAY), Steer::GatewayCrossing);
        f[6..12].copy_from_slice(&mac("02:00:00:00:00:21").to_bytes());
        assert_eq!(d.steer(&f, OVERLAY), Steer::Pass);
        assert!(d.floods_locally(GW) && !d.floods_locally(3));
        assert!(d.gateway_crossing(GW, OVERLAY));
        assert!(!d.gateway_crossing(3, OVERLAY) && !d.gateway_crossing(GW, 3));
        assert!(!d.learns_on(OVERLAY) && d.learns_on(3));
    }

    #[test]
    fn remote_entries_are_bounded_and_counted_by_mac() {
        let mut d = dir();
        assert!(d.is_remote_mac(mac("02:00:00:00:00:21")));
        assert!(!d.is_remote_mac(mac("02:00:00:00:00:11")));
        // Two addresses behind one MAC: the MAC stays remote until both go.
        d.insert(ip("192.168.88.22"), mac("02:00:00:00:00:21"), true)
            .unwrap();
        assert_eq!(d.remote_len(), 2);
        assert_eq!(
            d.insert(ip("192.168.88.23"), mac("02:00:00:00:00:23"), true),
            Err(DirectoryError::Full(2))
        );
        // Replacing a remote entry is not growth.
        d.insert(ip("192.168.88.22"), mac("02:00:00:00:00:22"), true)
            .unwrap();
        assert!(d.is_remote_mac(mac("02:00:00:00:00:22")));
        assert_eq!(
            d.remove(ip("192.168.88.21")),
            Some(mac("02:00:00:00:00:21"))
        );
        assert!(!d.is_remote_mac(mac("02:00:00:00:00:21")));
        assert_eq!(d.remote_len(), 1);
        assert_eq!(d.len(), 2);
        assert_eq!(d.remove(ip("192.168.88.21")), None);
        assert_eq!(
            d.insert(ip("192.168.88.30"), MacAddr::BROADCAST, true),
            Err(DirectoryError::NotUnicast(MacAddr::BROADCAST))
        );
        // A local address moving to a remote host counts as remote.
        d.insert(ip("192.168.88.11"), mac("02:00:00:00:00:31"), true)
            .unwrap();
        assert_eq!(
            d.mac_of(ip("192.168.88.11")),
            Some((mac("02:00:00:00:00:31"), true))
        );
        assert_eq!(d.remote_len(), 2);
    }
}
