//! Building frames: the one place that writes Ethernet, ARP, IPv4 and ICMP
//! headers from scratch. The gateway's own ARP requests and ICMP errors,
//! the trace's frame descriptions and the tests use it, so a field gets
//! written one way everywhere. Checksums are filled in.

use super::ipv4::{self, PROTO_ICMP};
use super::{ETH_HEADER_LEN, MacAddr};
use std::net::Ipv4Addr;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// An Ethernet frame carrying ARP for IPv4 over Ethernet.
pub const ARP_FRAME_LEN: usize = ETH_HEADER_LEN + 28;
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// Writes an Ethernet header at the start of `f`.
pub fn ethernet(f: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    f[0..6].copy_from_slice(&dst.to_bytes());
    f[6..12].copy_from_slice(&src.to_bytes());
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// The fields of an ARP packet (IPv4 over Ethernet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

impl Arp {
    /// A request from `sha`/`spa` for `tpa` (target MAC zero).
    pub fn request(sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Arp {
        Arp {
            op: ARP_REQUEST,
            sha,
            spa,
            tha: MacAddr::ZERO,
            tpa,
        }
    }

    /// The whole frame, from `sha` to `dst`.
    pub fn frame(&self, dst: MacAddr) -> [u8; ARP_FRAME_LEN] {
        let mut f = [0u8; ARP_FRAME_LEN];
        ethernet(&mut f, dst, self.sha, ETHERTYPE_ARP);
        let a = &mut f[ETH_HEADER_LEN..];
        a[0..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
        a[6..8].copy_from_slice(&self.op.to_be_bytes());
        a[8..14].copy_from_slice(&self.sha.to_bytes());
        a[14..18].copy_from_slice(&self.spa.octets());
        a[18..24].copy_from_slice(&self.tha.to_bytes());
        a[24..28].copy_from_slice(&self.tpa.octets());
        f
    }

    /// Reads an ARP packet (after the Ethernet header); `None` unless it is
    /// IPv4 over Ethernet and long enough.
    pub fn parse(a: &[u8]) -> Option<Arp> {
        if a.len() < 28 || a[0..6] != [0, 1, 8, 0, 6, 4] {
            return None;
        }
        let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        Some(Arp {
            op: ipv4::get16(a, 6),
            sha: MacAddr::from_slice(&a[8..14]),
            spa: ip(&a[14..18]),
            tha: MacAddr::from_slice(&a[18..24]),
            tpa: ip(&a[24..28]),
        })
    }
}

/// The fields of a plain (option-less) IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub id: u16,
    pub dont_frag: bool,
}

impl Ipv4 {
    /// Writes the 20-byte header, for `payload_len` bytes after it, with
    /// its checksum.
    pub fn write(&self, b: &mut [u8], payload_len: usize) {
        b[..20].fill(0);
        b[0] = 0x45;
        b[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
        b[4..6].copy_from_slice(&self.id.to_be_bytes());
        if self.dont_frag {
            b[6] = 0x40;
        }
        b[ipv4::TTL] = self.ttl;
        b[ipv4::PROTO] = self.proto;
        b[ipv4::SRC].copy_from_slice(&self.src.octets());
        b[ipv4::DST].copy_from_slice(&self.dst.octets());
        ipv4::fill_ip_checksum(b, 20);
    }
}

/// A whole IPv4 frame: Ethernet to `dst_mac`, header `ip`, then `l4` (a
/// TCP, UDP or ICMP header and payload) whose checksum is filled in.
pub fn ipv4_frame(dst_mac: MacAddr, src_mac: MacAddr, ip: Ipv4, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HEADER_LEN + 20 + l4.len()];
    ethernet(&mut f, dst_mac, src_mac, ETHERTYPE_IPV4);
    let b = &mut f[ETH_HEADER_LEN..];
    ip.write(b, l4.len());
    b[20..].copy_from_slice(l4);
    if let (Some(off), Some(h)) = (ipv4::l4_checksum_offset(ip.proto), ipv4::Ipv4Hdr::parse(b))
        && l4.len() >= off + 2
    {
        b[20 + off..22 + off].fill(0);
        let c = ipv4::l4_checksum(b, &h);
        b[20 + off..22 + off].copy_from_slice(&c.to_be_bytes());
    }
    f
}

/// An ICMP error frame quoting `quote` (the offending packet's start):
/// Ethernet to `dst_mac`, IPv4 `ip` (its `proto` is set to ICMP), ICMP
/// `ty`/`code` with `mtu` in the next-hop MTU field (0 unless Fragmentation
/// Needed), checksums filled.
pub fn icmp_error(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    ip: Ipv4,
    (ty, code, mtu): (u8, u8, u16),
    quote: &[u8],
) -> Vec<u8> {
    let icmp_len = 8 + quote.len();
    let mut f = vec![0u8; ETH_HEADER_LEN + 20 + icmp_len];
    ethernet(&mut f, dst_mac, src_mac, ETHERTYPE_IPV4);
    let o = &mut f[ETH_HEADER_LEN..];
    Ipv4 {
        proto: PROTO_ICMP,
        ..ip
    }
    .write(o, icmp_len);
    let m = &mut o[20..];
    m[0] = ty;
    m[1] = code;
    m[6..8].copy_from_slice(&mtu.to_be_bytes());
    m[8..].copy_from_slice(quote);
    let c = super::checksum::checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_frame_roundtrips_and_is_well_formed() {
        let a = Arp::request(
            MacAddr::from_u64(0x0200_0000_0001),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        let f = a.frame(MacAddr::BROADCAST);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(ipv4::get16(&f, 12), ETHERTYPE_ARP);
        assert_eq!(Arp::parse(&f[14..]), Some(a));
        // smoltcp reads the same thing.
        let p = smoltcp::wire::ArpPacket::new_checked(&f[14..]).unwrap();
        let r = smoltcp::wire::ArpRepr::parse(&p).unwrap();
        let smoltcp::wire::ArpRepr::EthernetIpv4 {
            operation,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = r
        else {
            panic!("not Ethernet/IPv4: {r:?}")
        };
        assert_eq!(operation, smoltcp::wire::ArpOperation::Request);
        assert_eq!(source_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(target_protocol_addr, Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn arp_parse_takes_padded_frames_and_refuses_short_or_foreign_ones() {
        let a = Arp::request(
            MacAddr::from_u64(0x0200_0000_0001),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        let f = a.frame(MacAddr::BROADCAST);
        // On the wire an ARP frame is padded to 60 bytes: 46 after Ethernet.
        let mut padded = f[14..].to_vec();
        padded.resize(46, 0);
        assert_eq!(Arp::parse(&padded), Some(a));
        assert_eq!(Arp::parse(&f[14..41]), None, "27 bytes");
        let mut other = f[14..].to_vec();
        other[2] = 0x86; // protocol type not IPv4
        assert_eq!(Arp::parse(&other), None);
    }

    #[test]
    fn icmp_error_checksums_verify() {
        let quote = [0x45u8; 28];
        let ip = Ipv4 {
            src: Ipv4Addr::new(192, 168, 88, 1),
            dst: Ipv4Addr::new(192, 168, 88, 11),
            proto: 0,
            ttl: 64,
            id: 7,
            dont_frag: false,
        };
        let f = icmp_error(MacAddr::BROADCAST, MacAddr::ZERO, ip, (3, 4, 1400), &quote);
        assert_eq!(f.len(), 14 + 20 + 8 + 28);
        assert!(ipv4::ip_checksum_ok(&f[14..], 20));
        assert_eq!(f[14 + ipv4::PROTO], PROTO_ICMP);
        assert_eq!(super::super::checksum::checksum(&f[34..]), 0);
        assert_eq!(ipv4::get16(&f, 34 + 6), 1400);
    }

    #[test]
    fn arp_frames_are_42_bytes_and_short_l4_is_left_alone() {
        let a = Arp::request(
            MacAddr::from_bytes([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        assert_eq!(a.frame(MacAddr::BROADCAST).len(), 42);
        // A UDP "header" too short to hold the checksum field: copied as
        // it is, no checksum written, no panic.
        let ip = Ipv4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            proto: ipv4::PROTO_UDP,
            ttl: 64,
            id: 1,
            dont_frag: false,
        };
        let f = ipv4_frame(MacAddr::BROADCAST, MacAddr::ZERO, ip, &[9; 7]);
        assert_eq!(f.len(), 14 + 20 + 7);
        assert_eq!(&f[34..], &[9; 7]);
    }
}
