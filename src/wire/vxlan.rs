//! VXLAN (RFC 7348) on the wire: the 8-byte header after outer UDP (the
//! kernel writes the outer IPv4 and UDP headers for vswitchd's UDP sockets,
//! and the outer Ethernet header when it routes the packet).
//!
//! ```text
//!  outer IPv4 (20) | outer UDP (8) | flags 0x08, 3 reserved | VNI (24 bits), 1 reserved | inner frame
//! ```
//! 50 bytes of overhead with the outer Ethernet header: a 1500-byte
//! underlay carries 1450-byte inner frames.

use super::ipv4::{self, PROTO_UDP};
use super::{ETH_HEADER_LEN, MacAddr};
use crate::reason::Reason;

/// The IANA port (Linux's default is the same with `dstport 4789`).
pub const DEFAULT_PORT: u16 = 4789;
/// The VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Bytes the tunnel adds on the underlay: outer Ethernet, IPv4, UDP, VXLAN.
pub const OVERHEAD: usize = ETH_HEADER_LEN + 20 + 8 + HEADER_LEN;
/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// Why a datagram received on the VXLAN socket was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VxlanDrop {
    /// Shorter than the VXLAN header plus an Ethernet header.
    Runt,
    /// The I flag is not set (no valid VNI).
    BadFlags,
    /// For another VNI (segment).
    WrongVni,
    /// From an address that is not a configured peer.
    UnknownVtep,
}

impl Reason for VxlanDrop {
    const ALL: &'static [VxlanDrop] = &[
        VxlanDrop::Runt,
        VxlanDrop::BadFlags,
        VxlanDrop::WrongVni,
        VxlanDrop::UnknownVtep,
    ];
    fn name(self) -> &'static str {
        match self {
            VxlanDrop::Runt => "vxlan_runt",
            VxlanDrop::BadFlags => "vxlan_bad_flags",
            VxlanDrop::WrongVni => "vxlan_wrong_vni",
            VxlanDrop::UnknownVtep => "vxlan_unknown_vtep",
        }
    }
}

impl VxlanDrop {
    pub const COUNT: usize = 4;
}

/// The inner frame of a VXLAN datagram (UDP payload) for segment `vni`.
pub fn decap(payload: &[u8], vni: u32) -> Result<&[u8], VxlanDrop> {
    if payload.len() < HEADER_LEN + ETH_HEADER_LEN {
        return Err(VxlanDrop::Runt);
    }
    if payload[0] & 0x08 == 0 {
        return Err(VxlanDrop::BadFlags);
    }
    let got = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
    if got != vni {
        return Err(VxlanDrop::WrongVni);
    }
    Ok(&payload[HEADER_LEN..])
}

/// The VXLAN header for segment `vni`: the I flag and the VNI.
pub fn header(vni: u32) -> [u8; HEADER_LEN] {
    let v = vni.to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// A hash of an inner frame's flow (MACs, and for IPv4 the addresses,
/// protocol and L4 ports): it picks the outer UDP source port, so the
/// underlay's ECMP spreads flows while each flow keeps its path (as Linux
/// does).
pub fn flow_hash(inner: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
    };
    eat(&inner[..inner.len().min(12)]);
    if inner.len() >= ETH_HEADER_LEN + 20 && ipv4::get16(inner, 12) == 0x0800 {
        let ip = &inner[ETH_HEADER_LEN..];
        eat(&ip[9..10]);
        eat(&ip[12..20]);
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ip.len() >= ihl + 4 {
            eat(&ip[ihl..ihl + 4]);
        }
    }
    h
}

/// Finishes an inner TCP/UDP checksum left for offload. A peer on the same
/// machine (the kernel's vxlan device over a veth, as in the tests) hands
/// over the inner packet with its L4 checksum field holding only the
/// pseudo-header sum (CHECKSUM_PARTIAL), which a UDP socket cannot tell us.
/// When the checksum does not verify, this computes it as the NIC would
/// have and keeps the result only if it then verifies (the field held
/// exactly the pseudo-header sum); a packet damaged otherwise is left as it
/// was, for the receiver to drop. Returns whether it finished one.
pub fn finish_inner_checksum(frame: &mut [u8]) -> bool {
    if frame.len() < ETH_HEADER_LEN + 20 || ipv4::get16(frame, 12) != 0x0800 {
        return false;
    }
    let ip = &mut frame[ETH_HEADER_LEN..];
    let Some(h) = ipv4::Ipv4Hdr::parse(ip) else {
        return false;
    };
    let Some(off) = ipv4::l4_checksum_offset(h.proto).filter(|_| h.proto != ipv4::PROTO_ICMP)
    else {
        return false;
    };
    let at = h.ihl + off;
    if h.is_fragment() || h.total_len < at + 2 {
        return false;
    }
    let old = [ip[at], ip[at + 1]];
    if (h.proto == PROTO_UDP && old == [0, 0]) || ipv4::l4_checksum(ip, &h) == 0 {
        return false;
    }
    let done = super::vnet::finish_checksum(&mut ip[..h.total_len], h.ihl, off).is_ok()
        && ipv4::l4_checksum(ip, &h) == 0;
    if !done {
        ip[at..at + 2].copy_from_slice(&old);
    }
    done
}

/// The source MAC of an inner frame (which `decap` made sure is there).
pub fn inner_source(inner: &[u8]) -> MacAddr {
    MacAddr::from_slice(&inner[6..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn inner() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        f
    }

    #[test]
    fn the_tunnel_costs_50_bytes() {
        // 1500-byte underlay -> 1450-byte inner MTU, as Linux's vxlan.
        assert_eq!(OVERHEAD, 50);
    }

    #[test]
    fn header_then_decap_gives_the_frame_back() {
        let f = inner();
        let mut p = header(42).to_vec();
        // The I flag, VNI 42, reserved bytes zero.
        assert_eq!(p, [0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(header(0x12_3456)[4..7], [0x12, 0x34, 0x56]);
        p.extend_from_slice(&f);
        assert_eq!(decap(&p, 42), Ok(&f[..]));
        assert_eq!(inner_source(&f), MacAddr::from_bytes([2, 0, 0, 0, 0, 9]));
    }

    #[test]
    fn bad_datagrams_are_refused_with_a_reason() {
        let f = inner();
        let mut p = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
        p.extend_from_slice(&f);
        assert_eq!(decap(&p, 7), Ok(&f[..]));
        assert_eq!(decap(&p, 8), Err(VxlanDrop::WrongVni));
        assert_eq!(decap(&p[..HEADER_LEN + 13], 7), Err(VxlanDrop::Runt));
        assert_eq!(decap(&[], 7), Err(VxlanDrop::Runt));
        p[0] = 0;
        assert_eq!(decap(&p, 7), Err(VxlanDrop::BadFlags));
    }

    #[test]
    fn partial_inner_checksums_are_finished_and_damage_is_not_hidden() {
        use crate::wire::build;
        let src = Ipv4Addr::new(192, 168, 88, 50);
        let dst = Ipv4Addr::new(192, 168, 88, 11);
        let ip = build::Ipv4 {
            src,
            dst,
            proto: ipv4::PROTO_TCP,
            ttl: 64,
            id: 1,
            dont_frag: true,
        };
        let mut tcp = vec![0u8; 20 + 100];
        tcp[12] = 5 << 4;
        tcp[13] = 0x12;
        tcp[20..].fill(0x5a);
        let whole = build::ipv4_frame(MacAddr::BROADCAST, MacAddr::ZERO, ip, &tcp);
        let at = ETH_HEADER_LEN + 20 + 16;
        // A whole frame is left alone.
        let mut f = whole.clone();
        assert!(!finish_inner_checksum(&mut f));
        assert_eq!(f, whole);
        // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
        let mut partial = whole.clone();
        let seed = crate::wire::checksum::pseudo_header_v4(
            src.octets(),
            dst.octets(),
            ipv4::PROTO_TCP,
            120,
        );
        let folded = !crate::wire::checksum::finish(seed);
        partial[at..at + 2].copy_from_slice(&folded.to_be_bytes());
        assert!(finish_inner_checksum(&mut partial));
        assert_eq!(partial, whole);
        // A damaged payload is not "repaired".
        let mut bad = whole.clone();
        bad[ETH_HEADER_LEN + 60] ^= 1;
        let before = bad.clone();
        assert!(!finish_inner_checksum(&mut bad));
        assert_eq!(bad, before);
    }

    #[test]
    fn the_l4_ports_are_part_of_the_flow() {
        use crate::wire::build;
        let ip = build::Ipv4 {
            src: Ipv4Addr::new(192, 168, 88, 11),
            dst: Ipv4Addr::new(192, 168, 88, 50),
            proto: ipv4::PROTO_TCP,
            ttl: 64,
            id: 1,
            dont_frag: true,
        };
        let spread: std::collections::HashSet<u32> = (0..64u16)
            .map(|p| {
                let mut tcp = vec![0u8; 20];
                tcp[0..2].copy_from_slice(&(40000 + p).to_be_bytes());
                tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
                tcp[12] = 5 << 4;
                let f = build::ipv4_frame(MacAddr::BROADCAST, MacAddr::ZERO, ip, &tcp);
                flow_hash(&f) % 8
            })
            .collect();
        assert_eq!(spread.len(), 8, "64 source ports use all 8 send sockets");
    }

    #[test]
    fn partial_udp_is_finished_zero_udp_and_cut_fields_left_alone() {
        use crate::wire::build;
        let (src, dst) = (
            Ipv4Addr::new(192, 168, 88, 50),
            Ipv4Addr::new(192, 168, 88, 11),
        );
        let ip = build::Ipv4 {
            src,
            dst,
            proto: PROTO_UDP,
            ttl: 64,
            id: 1,
            dont_frag: false,
        };
        let mut udp = vec![0u8; 8 + 30];
        udp[0..2].copy_from_slice(&53u16.to_be_bytes());
        udp[2..4].copy_from_slice(&5353u16.to_be_bytes());
        udp[4..6].copy_from_slice(&38u16.to_be_bytes());
        udp[8..].fill(0x33);
        let whole = build::ipv4_frame(MacAddr::BROADCAST, MacAddr::ZERO, ip, &udp);
        let at = ETH_HEADER_LEN + 20 + 6;
        let seed =
            crate::wire::checksum::pseudo_header_v4(src.octets(), dst.octets(), PROTO_UDP, 38);
        let mut partial = whole.clone();
        partial[at..at + 2].copy_from_slice(&(!crate::wire::checksum::finish(seed)).to_be_bytes());
        assert!(finish_inner_checksum(&mut partial));
        assert_eq!(partial, whole);
        // An empty datagram: the checksum field ends the packet.
        let mut e = vec![0u8; 8];
        e[0..2].copy_from_slice(&53u16.to_be_bytes());
        e[2..4].copy_from_slice(&5353u16.to_be_bytes());
        e[4..6].copy_from_slice(&8u16.to_be_bytes());
        let empty = build::ipv4_frame(MacAddr::BROADCAST, MacAddr::ZERO, ip, &e);
        let eseed =
            crate::wire::checksum::pseudo_header_v4(src.octets(), dst.octets(), PROTO_UDP, 8);
        let mut epart = empty.clone();
        epart[at..at + 2].copy_from_slice(&(!crate::wire::checksum::finish(eseed)).to_be_bytes());
        assert!(finish_inner_checksum(&mut epart));
        assert_eq!(epart, empty);
        // UDP without a checksum (0) stays so.
        let mut none = whole.clone();
        none[at..at + 2].fill(0);
        assert!(!finish_inner_checksum(&mut none));
        assert_eq!(&none[at..at + 2], &[0, 0]);
        // A packet whose total length ends inside the checksum field.
        let mut cut = partial.clone();
        cut[at..at + 2].copy_from_slice(&[0x12, 0x34]);
        let total = (20 + 7) as u16;
        cut[ETH_HEADER_LEN + 2..ETH_HEADER_LEN + 4].copy_from_slice(&total.to_be_bytes());
        ipv4::fill_ip_checksum(&mut cut[ETH_HEADER_LEN..], 20);
        let before = cut.clone();
        assert!(!finish_inner_checksum(&mut cut));
        assert_eq!(cut, before);
    }

    #[test]
    fn flows_hash_apart_and_each_flow_stays() {
        let mut a = inner();
        let h = flow_hash(&a);
        assert_eq!(h, flow_hash(&a), "stable");
        let spread: std::collections::HashSet<u32> = (0..64u8)
            .map(|i| {
                a[11] = i;
                flow_hash(&a) % 8
            })
            .collect();
        assert_eq!(spread.len(), 8, "64 flows use all 8 send sockets");
        assert_eq!(flow_hash(&a[..3]), flow_hash(&a[..3]));
        // An IPv4 header with nothing after it: hashed, no read past it.
        let mut bare = vec![0u8; ETH_HEADER_LEN + 20];
        bare[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        bare[ETH_HEADER_LEN] = 0x45;
        let _ = flow_hash(&bare);
    }

    #[test]
    fn a_truncated_inner_header_is_left_alone() {
        use crate::wire::build;
        let ip = build::Ipv4 {
            src: Ipv4Addr::new(192, 168, 88, 50),
            dst: Ipv4Addr::new(192, 168, 88, 11),
            proto: ipv4::PROTO_UDP,
            ttl: 64,
            id: 1,
            dont_frag: false,
        };
        // IP says 27 bytes (a UDP header cut before its checksum), the
        // frame holds more: the field is outside the packet.
        let mut f = build::ipv4_frame(MacAddr::BROADCAST, MacAddr::ZERO, ip, &[0x11; 40]);
        f[ETH_HEADER_LEN + 2..ETH_HEADER_LEN + 4].copy_from_slice(&27u16.to_be_bytes());
        crate::wire::ipv4::fill_ip_checksum(&mut f[ETH_HEADER_LEN..], 20);
        let before = f.clone();
        assert!(!finish_inner_checksum(&mut f));
        assert_eq!(f, before);
    }

    #[test]
    fn only_whole_ipv4_udp_tcp_with_a_partial_sum_is_finished() {
        use crate::wire::build;
        let (src, dst) = (
            Ipv4Addr::new(192, 168, 88, 50),
            Ipv4Addr::new(192, 168, 88, 11),
        );
        let ip = build::Ipv4 {
            src,
            dst,
            proto: PROTO_UDP,
            ttl: 64,
            id: 1,
            dont_frag: false,
        };
        let udp = |csum: [u8; 2]| {
            let mut l4 = vec![0u8; 8 + 20];
            l4[0..2].copy_from_slice(&1000u16.to_be_bytes());
            l4[2..4].copy_from_slice(&2000u16.to_be_bytes());
            l4[4..6].copy_from_slice(&28u16.to_be_bytes());
            let mut f = build::ipv4_frame(MacAddr::BROADCAST, MacAddr::ZERO, ip, &l4);
            f[ETH_HEADER_LEN + 26..ETH_HEADER_LEN + 28].copy_from_slice(&csum);
            f
        };
        // UDP without a checksum (0): nothing to finish.
        let mut f = udp([0, 0]);
        let before = f.clone();
        assert!(!finish_inner_checksum(&mut f));
        assert_eq!(f, before);
        // A partial sum, but in a fragment, or behind another ethertype.
        let seed =
            crate::wire::checksum::pseudo_header_v4(src.octets(), dst.octets(), PROTO_UDP, 28);
        let partial = (!crate::wire::checksum::finish(seed)).to_be_bytes();
        let mut frag = udp(partial);
        frag[ETH_HEADER_LEN + 6] |= 0x20; // more fragments
        ipv4::fill_ip_checksum(&mut frag[ETH_HEADER_LEN..], 20);
        let before = frag.clone();
        assert!(!finish_inner_checksum(&mut frag));
        assert_eq!(frag, before);
        let mut v6 = udp(partial);
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        let before = v6.clone();
        assert!(!finish_inner_checksum(&mut v6));
        assert_eq!(v6, before);
        // The same partial sum in a whole IPv4 datagram is finished.
        let mut ok = udp(partial);
        assert!(finish_inner_checksum(&mut ok));
    }

    #[test]
    fn the_shortest_datagram_is_a_header_and_a_bare_ethernet_header() {
        let mut d = header(7).to_vec();
        d.extend_from_slice(&[0xab; ETH_HEADER_LEN]);
        assert_eq!(decap(&d, 7), Ok(&[0xab; ETH_HEADER_LEN][..]));
        assert_eq!(decap(&d[..d.len() - 1], 7), Err(VxlanDrop::Runt));
        // Shorter than an Ethernet header: nothing to finish, no panic.
        assert!(!finish_inner_checksum(&mut [0u8; 10]));
    }
}
