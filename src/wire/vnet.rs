//! The virtio-net header (`struct virtio_net_hdr`) that `PACKET_VNET_HDR`
//! sockets and `IFF_VNET_HDR` TAPs put before each frame, and the software
//! fallbacks for what it describes: finishing a checksum the sender left to
//! offload (`NEEDS_CSUM`, the kernel's CHECKSUM_PARTIAL) and cutting a TCP
//! super-frame (`GSO_TCPV4`) into MSS-sized segments.
//!
//! Frames from a veth peer or a local sender usually arrive this way; reading
//! them without the header would hand the router unfinished checksums and
//! 64 KB frames.

use super::checksum;
use super::ipv4::{self, Ipv4Hdr, PROTO_TCP};

pub const VNET_HDR_LEN: usize = 10;
pub const F_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_ECN: u8 = 0x80;

/// A parsed virtio-net header (fields in native byte order, as the kernel
/// writes them for packet sockets on a little- or big-endian host).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        if b.len() < VNET_HDR_LEN {
            return None;
        }
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

/// Why a frame with a virtio-net header could not be made whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetError {
    /// Checksum start/offset or headers outside the frame.
    Malformed,
    /// A GSO type we do not segment (UDP, IPv6).
    UnsupportedGso,
}

/// Finishes a partial checksum in place: the field at `start + offset`
/// holds the pseudo-header sum; the checksum covers `frame[start..]`.
pub fn finish_checksum(frame: &mut [u8], start: usize, offset: usize) -> Result<(), VnetError> {
    let at = start + offset;
    if at + 2 > frame.len() {
        return Err(VnetError::Malformed);
    }
    let mut c = checksum::finish(checksum::sum(&frame[start..], 0));
    // A UDP checksum that computes to 0 is sent as 0xffff (0 = "none").
    if offset == 6 && c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Makes one received frame whole and hands each resulting frame to `emit`:
/// the frame itself when it needs nothing, or with its checksum finished, or
/// its TCP segments (each with finished checksums). `frame` excludes the
/// virtio-net header; `scratch` is reused for segments (no allocation once
/// it has grown).
pub fn complete(
    hdr: &VnetHdr,
    frame: &mut [u8],
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&mut [u8]),
) -> Result<(), VnetError> {
    let gso = hdr.gso_type & !GSO_ECN;
    if gso == GSO_NONE || hdr.gso_size == 0 {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            finish_checksum(frame, hdr.csum_start as usize, hdr.csum_offset as usize)?;
        }
        emit(frame);
        return Ok(());
    }
    if gso != GSO_TCPV4 {
        return Err(VnetError::UnsupportedGso);
    }
    segment_tcpv4(frame, hdr.gso_size as usize, scratch, emit)
}

impl VnetHdr {
    /// Nothing to finish or segment: the frame can go anywhere as it is.
    pub fn is_plain(&self) -> bool {
        self.flags & F_NEEDS_CSUM == 0
            && (self.gso_type & !GSO_ECN == GSO_NONE || self.gso_size == 0)
    }
    /// A segmentation-offload super-frame.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE && self.gso_size != 0
    }
}

/// Like [`complete`], but never modifies `frame` (it may still be sent
/// as it is elsewhere): a checksum is finished on a copy in `copy`, segments
/// are built in `seg`.
pub fn for_each_whole(
    hdr: &VnetHdr,
    frame: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
    mut emit: impl FnMut(&mut [u8]),
) -> Result<(), VnetError> {
    if hdr.is_gso() {
        if hdr.gso_type & !GSO_ECN != GSO_TCPV4 {
            return Err(VnetError::UnsupportedGso);
        }
        return segment_tcpv4(frame, hdr.gso_size as usize, seg, emit);
    }
    copy.clear();
    copy.extend_from_slice(frame);
    if hdr.flags & F_NEEDS_CSUM != 0 {
        finish_checksum(copy, hdr.csum_start as usize, hdr.csum_offset as usize)?;
    }
    emit(copy);
    Ok(())
}

/// Cuts an Ethernet + IPv4 + TCP super-frame into segments of at most `mss`
/// payload bytes: IP total length, id (+1 per segment) and checksum, TCP
/// sequence number, flags (FIN/PSH on the last segment only, CWR on the first
/// only) and checksum are set for each.
pub fn segment_tcpv4(
    frame: &[u8],
    mss: usize,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&mut [u8]),
) -> Result<(), VnetError> {
    const ETH: usize = super::ETH_HEADER_LEN;
    if frame.len() < ETH + 20 || mss == 0 {
        return Err(VnetError::Malformed);
    }
    let ip = &frame[ETH..];
    // The super-frame's total length may be stale (> 64K wraps); rely on
    // the frame length instead, so parse a copy of the header with it fixed.
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl + 20 || ip[ipv4::PROTO] != PROTO_TCP {
        return Err(VnetError::Malformed);
    }
    let thl = ((ip[ihl + 12] >> 4) as usize) * 4;
    if thl < 20 || ip.len() < ihl + thl {
        return Err(VnetError::Malformed);
    }
    let hdrs = ETH + ihl + thl;
    let payload = &frame[hdrs..];
    let seq0 = u32::from_be_bytes(ip[ihl + 4..ihl + 8].try_into().unwrap());
    let id0 = ipv4::get16(ip, 4);
    let flags0 = ip[ihl + 13];
    let n = payload.len().div_ceil(mss).max(1);
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        scratch.clear();
        scratch.extend_from_slice(&frame[..hdrs]);
        scratch.extend_from_slice(chunk);
        let s = &mut scratch[..];
        let ipb = &mut s[ETH..];
        let total = ihl + thl + chunk.len();
        ipb[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ipb[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        ipv4::fill_ip_checksum(ipb, ihl);
        let seq = seq0.wrapping_add((i * mss) as u32);
        ipb[ihl + 4..ihl + 8].copy_from_slice(&seq.to_be_bytes());
        let mut fl = flags0;
        if i + 1 < n {
            fl &= !(0x01 | 0x08); // FIN, PSH only on the last
        }
        if i > 0 {
            fl &= !0x80; // CWR only on the first
        }
        ipb[ihl + 13] = fl;
        ipb[ihl + 16..ihl + 18].copy_from_slice(&[0, 0]);
        let h = Ipv4Hdr::parse(ipb).ok_or(VnetError::Malformed)?;
        let c = ipv4::l4_checksum(ipb, &h);
        ipb[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
        emit(s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// eth + ip + tcp(20) + payload, checksums left as a sender with
    /// offload would (TCP field = pseudo-header sum, not inverted).
    fn super_frame(payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((40 + payload.len()).min(65535) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&100u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = PROTO_TCP;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        ip[20..22].copy_from_slice(&80u16.to_be_bytes());
        ip[22..24].copy_from_slice(&5555u16.to_be_bytes());
        ip[24..28].copy_from_slice(&1_000u32.to_be_bytes());
        ip[32] = 5 << 4;
        ip[33] = flags;
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn for_each_whole_passes_plain_frames_as_they_are_and_knows_gso_types() {
        let f = super_frame(&[7u8; 3000], 0x18);
        let (mut copy, mut seg) = (Vec::new(), Vec::new());
        // A plain header: the frame as it is, not "finished".
        let mut got = Vec::new();
        for_each_whole(&VnetHdr::default(), &f, &mut copy, &mut seg, |x| {
            got.push(x.to_vec())
        })
        .unwrap();
        assert_eq!(got, vec![f.clone()]);
        // TCP GSO with the ECN bit is segmented; another GSO type is refused.
        let mut h = VnetHdr {
            gso_type: GSO_TCPV4 | GSO_ECN,
            gso_size: 1000,
            hdr_len: 54,
            ..VnetHdr::default()
        };
        let mut n = 0;
        for_each_whole(&h, &f, &mut copy, &mut seg, |_| n += 1).unwrap();
        assert_eq!(n, 3);
        h.gso_type = 3; // UDP fragmentation offload
        assert!(matches!(
            for_each_whole(&h, &f, &mut copy, &mut seg, |_| {}),
            Err(VnetError::UnsupportedGso)
        ));
    }

    #[test]
    fn header_kinds_and_complete() {
        let plain = VnetHdr::default();
        assert!(plain.is_plain() && !plain.is_gso());
        let csum = VnetHdr {
            flags: F_NEEDS_CSUM,
            ..plain
        };
        assert!(!csum.is_plain() && !csum.is_gso());
        let gso = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1000,
            ..plain
        };
        assert!(!gso.is_plain() && gso.is_gso());
        // The ECN bit alone, or a GSO type with size 0, is no segmentation.
        let ecn_only = VnetHdr {
            gso_type: GSO_ECN,
            gso_size: 1000,
            ..plain
        };
        assert!(ecn_only.is_plain() && !ecn_only.is_gso());
        let no_size = VnetHdr {
            gso_type: GSO_TCPV4,
            ..plain
        };
        assert!(no_size.is_plain() && !no_size.is_gso());
        // complete(): TCP GSO with ECN is segmented, UDP GSO refused.
        let mut f = super_frame(&[3u8; 2500], 0x10);
        let mut scratch = Vec::new();
        let mut n = 0;
        let ecn = VnetHdr {
            gso_type: GSO_TCPV4 | GSO_ECN,
            ..gso
        };
        complete(&ecn, &mut f, &mut scratch, |_| n += 1).unwrap();
        assert_eq!(n, 3);
        let udp = VnetHdr { gso_type: 3, ..gso };
        assert!(matches!(
            complete(&udp, &mut f, &mut scratch, |_| {}),
            Err(VnetError::UnsupportedGso)
        ));
    }

    #[test]
    fn a_checksum_field_may_end_the_frame_but_not_pass_it() {
        let mut f = vec![0x11u8; 10];
        // Field at 8..10 (holding the seed): the last two bytes.
        let want = crate::wire::checksum::checksum(&f);
        finish_checksum(&mut f, 0, 8).unwrap();
        assert_eq!(u16::from_be_bytes([f[8], f[9]]), want);
        let mut g = vec![0x11u8; 10];
        assert!(matches!(
            finish_checksum(&mut g, 0, 9),
            Err(VnetError::Malformed)
        ));
    }

    #[test]
    fn segmenting_refuses_what_is_not_a_sound_tcp_over_ipv4_frame() {
        let good = super_frame(&[1u8; 2000], 0x10);
        let mut seg = Vec::new();
        let refused = |f: &[u8], seg: &mut Vec<u8>| {
            matches!(
                segment_tcpv4(f, 500, seg, |_| {}),
                Err(VnetError::Malformed)
            )
        };
        assert!(!refused(&good, &mut seg));
        assert!(
            refused(&good[..33], &mut seg),
            "shorter than Ethernet + IPv4"
        );
        let mut v6 = good.clone();
        v6[14] = 0x65;
        assert!(refused(&v6, &mut seg), "IP version 6");
        let mut short_ihl = good.clone();
        short_ihl[14] = 0x44;
        assert!(refused(&short_ihl, &mut seg), "IHL 16");
        assert!(refused(&good[..14 + 20 + 19], &mut seg), "TCP header cut");
        let mut udp = good.clone();
        udp[14 + 9] = 17;
        assert!(refused(&udp, &mut seg), "not TCP");
        let mut short_thl = good.clone();
        short_thl[14 + 20 + 12] = 4 << 4;
        assert!(refused(&short_thl, &mut seg), "TCP header length 16");
        let mut long_thl = good[..14 + 20 + 20].to_vec();
        long_thl[14 + 20 + 12] = 8 << 4;
        assert!(refused(&long_thl, &mut seg), "options past the end");
        assert!(matches!(
            segment_tcpv4(&good, 0, &mut seg, |_| {}),
            Err(VnetError::Malformed)
        ));
    }

    #[test]
    fn segments_carry_the_payload_in_order_with_valid_checksums() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let f = super_frame(&payload, 0x18 | 0x01); // PSH ACK FIN
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        let mut segs = 0;
        segment_tcpv4(&f, 1448, &mut scratch, |s| {
            let ip = &s[14..];
            let h = Ipv4Hdr::parse(ip).unwrap();
            assert!(ipv4::ip_checksum_ok(ip, 20));
            assert_eq!(ipv4::l4_checksum(ip, &h), 0);
            assert!(s.len() <= 14 + 40 + 1448);
            let seq = u32::from_be_bytes(ip[24..28].try_into().unwrap());
            assert_eq!(seq as usize, 1_000 + got.len());
            let last = got.len() + (h.total_len - 40) == payload.len();
            assert_eq!(ip[33] & 0x09 != 0, last, "FIN/PSH only on the last");
            assert_eq!(h.id, 100 + segs);
            got.extend_from_slice(&ip[40..h.total_len]);
            segs += 1;
        })
        .unwrap();
        assert_eq!(segs, 7);
        assert_eq!(got, payload);
    }

    #[test]
    fn needs_csum_is_finished() {
        let payload = b"hello world";
        let mut f = super_frame(payload, 0x10);
        // Seed the TCP checksum with the pseudo-header sum, as the kernel does.
        let ps = checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], PROTO_TCP, 31);
        let folded = !checksum::finish(ps);
        f[14 + 36..14 + 38].copy_from_slice(&folded.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_NONE,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        let mut scratch = Vec::new();
        let mut n = 0;
        complete(&hdr, &mut f, &mut scratch, |s| {
            let ip = &s[14..];
            let h = Ipv4Hdr::parse(ip).unwrap();
            assert_eq!(ipv4::l4_checksum(ip, &h), 0);
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn header_roundtrip_and_bad_input() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; 10];
        h.write(&mut b);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(VnetHdr::parse(&b[..9]), None);
        let mut scratch = Vec::new();
        assert_eq!(
            segment_tcpv4(&[0u8; 20], 1000, &mut scratch, |_| {}),
            Err(VnetError::Malformed)
        );
        let mut short = vec![0u8; 30];
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 28,
            csum_offset: 16,
            ..Default::default()
        };
        assert_eq!(
            complete(&bad, &mut short, &mut scratch, |_| {}),
            Err(VnetError::Malformed)
        );
        let udp = VnetHdr {
            gso_type: 5,
            gso_size: 1000,
            ..Default::default()
        };
        assert_eq!(
            complete(&udp, &mut short, &mut scratch, |_| {}),
            Err(VnetError::UnsupportedGso)
        );
    }

    #[test]
    fn a_plain_frame_is_emitted_untouched() {
        // No NEEDS_CSUM flag: the checksum fields (here, at offset 0) are
        // never touched.
        let mut f = super_frame(&[1, 2, 3], 0x18);
        let want = f.clone();
        let mut got = Vec::new();
        complete(&VnetHdr::default(), &mut f, &mut Vec::new(), |s| {
            got.push(s.to_vec())
        })
        .unwrap();
        assert_eq!(got, vec![want]);
    }

    #[test]
    fn small_super_frames_are_cut_and_other_versions_refused() {
        // A 10-byte payload behind 40 bytes of headers still segments.
        let f = super_frame(&[7; 10], 0x18);
        let mut n = 0;
        segment_tcpv4(&f, 4, &mut Vec::new(), |s| {
            n += 1;
            assert!(s.len() <= 14 + 40 + 4);
        })
        .unwrap();
        assert_eq!(n, 3);
        // Not IPv4 (version 6 in the first nibble), whatever the rest says.
        let mut v6 = f.clone();
        v6[14] = 0x65;
        assert_eq!(
            segment_tcpv4(&v6, 4, &mut Vec::new(), |_| {}),
            Err(VnetError::Malformed)
        );
    }

    #[test]
    fn gso_of_size_zero_is_a_whole_frame_and_short_tcp_is_refused() {
        // A GSO type with gso_size 0 asks for no segmentation.
        let mut f = super_frame(&[1, 2, 3], 0x18);
        let want = f.clone();
        let hdr = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 0,
            ..VnetHdr::default()
        };
        let mut got = Vec::new();
        complete(&hdr, &mut f, &mut Vec::new(), |s| got.push(s.to_vec())).unwrap();
        assert_eq!(got, vec![want]);
        // An IP header followed by 10 bytes: no TCP header to cut by.
        let short = super_frame(&[], 0x18)[..14 + 20 + 10].to_vec();
        assert_eq!(
            segment_tcpv4(&short, 100, &mut Vec::new(), |_| {}),
            Err(VnetError::Malformed)
        );
    }

    #[test]
    fn cwr_stays_on_the_first_segment_only() {
        let f = super_frame(&[5; 30], 0x80 | 0x18);
        let mut flags = Vec::new();
        segment_tcpv4(&f, 10, &mut Vec::new(), |s| flags.push(s[14 + 20 + 13])).unwrap();
        assert_eq!(flags.len(), 3);
        assert_eq!(flags[0] & 0x80, 0x80, "CWR on the first");
        assert!(flags[1..].iter().all(|f| f & 0x80 == 0), "{flags:?}");
    }

    #[test]
    fn a_udp_sum_of_zero_is_sent_as_ffff_and_edge_lengths_are_handled() {
        // Bytes summing to 0xffff: the checksum computes to 0.
        let mut udp = [0xff, 0xff, 0, 0, 0, 0, 0, 0];
        finish_checksum(&mut udp, 0, 6).unwrap();
        assert_eq!(&udp[6..8], &[0xff, 0xff], "UDP: 0 would mean none");
        let mut tcp = [0u8; 18];
        tcp[0..2].copy_from_slice(&[0xff, 0xff]);
        finish_checksum(&mut tcp, 0, 16).unwrap();
        assert_eq!(&tcp[16..18], &[0, 0], "TCP keeps 0");
        // Shorter than Ethernet + IPv4 headers: refused, no panic.
        assert_eq!(
            segment_tcpv4(&[0u8; 10], 100, &mut Vec::new(), |_| {}),
            Err(VnetError::Malformed)
        );
        // Headers and no payload at all: one segment, the headers.
        let f = super_frame(&[], 0x11);
        let mut segs = Vec::new();
        segment_tcpv4(&f, 100, &mut Vec::new(), |s| segs.push(s.len())).unwrap();
        assert_eq!(segs, vec![14 + 40]);
    }
}
