//! UDP coalescing for TAP and uplink writes: consecutive datagrams of one
//! flow, bound for the same TAP (or, through the NAT, for the uplink),
//! leave as one UDP segmentation-offload super-frame
//! (`VIRTIO_NET_HDR_GSO_UDP_L4`, Linux 6.2+), so the namespace's kernel
//! takes them in one `write`, one `tun_get_user` and one pass through IP,
//! and cuts them apart again at the UDP layer (`udp_rcv_segment`) for a
//! socket without `UDP_GRO`. The receiver gets the same datagrams, in the
//! same order. wireguard-go writes to its TUN the same way. On the uplink
//! (a packet socket) the host's kernel cuts the run apart on the way out:
//! the NIC if it segments UDP, else software before the driver; a veth
//! passes it whole to its peer, whose UDP layer cuts it.
//!
//! A run is only what Linux's own GRO would merge, so that cutting it apart
//! gives back exactly the frames that were put in:
//! - Ethernet + IPv4 without options + UDP, not a fragment, or Ethernet +
//!   IPv6 + UDP without extension headers; no padding, no offload work
//!   pending other than the UDP checksum; headers checked (the
//!   IP checksum, a finished UDP checksum and the pseudo-header sum of a
//!   pending one are verified, whatever the header's `DATA_VALID` says:
//!   merging must never turn a corrupted datagram into a valid one);
//! - the same MACs, addresses, ports, TOS, TTL and DF bit (IPv6: traffic
//!   class, flow label and hop limit);
//! - IPv4 identifiers that count up by one (segmentation numbers them so);
//! - payloads of one size; a shorter one ends the run;
//! - at most [`MAX_SEGS`] datagrams and 64 KB.
//!
//! A run of one is written exactly as it came. Pure: bytes in, bytes out.
//!
//! What differs for the receiving namespace: a plain UDP socket sees the
//! same datagrams, but whatever looks at packets before the UDP layer
//! (tcpdump inside the namespace, netfilter packet counters and length
//! matches, raw sockets) sees one packet per run, as it sees TCP
//! super-frames with offloads on; a closed port answers one ICMP error per
//! run. On the uplink the same holds for the host's qdisc, and for
//! tcpdump on the uplink when the device segments itself (a veth, a NIC
//! with UDP segmentation); the wire carries the datagrams. One more
//! difference everywhere: an IPv4 datagram sent with no UDP checksum (0)
//! leaves a run with one. `--no-udp-coalesce` turns it off.

use super::checksum;
use super::ipv4::get16;
use super::vnet::{F_NEEDS_CSUM, VNET_HDR_LEN, VnetHdr};

/// `VIRTIO_NET_HDR_GSO_UDP_L4`.
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the sending side says the checksum was
/// checked (not trusted here).
pub const F_DATA_VALID: u8 = 2;
/// Most datagrams in one super-frame.
pub const MAX_SEGS: u16 = 64;

const ETH: usize = super::ETH_HEADER_LEN;
/// Ethernet + IPv4 (no options) + UDP.
const HDRS: usize = ETH + 20 + 8;
const IP_TOTAL: usize = ETH + 2;
const IP_ID: usize = ETH + 4;
const IP_CSUM: usize = ETH + 10;
/// The same for IPv6 (fixed header only).
const HDRS6: usize = ETH + 40 + 8;
const IP6_PAYLOAD: usize = ETH + 4;

/// The IP version of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// Length of the Ethernet + IP + UDP headers.
    fn hdrs(self) -> usize {
        match self {
            Family::V4 => HDRS,
            Family::V6 => HDRS6,
        }
    }
}

/// What [`UdpRun::push`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The frame is in the run.
    Added,
    /// The frame could start a run but does not join this one: send the
    /// run, then push the frame again.
    Ends,
    /// The frame cannot be coalesced: send the run, then the frame alone.
    Alone,
}

/// One run of datagrams being gathered for one TAP (or the uplink).
pub struct UdpRun {
    /// Virtio-net header + the first frame + the later payloads.
    buf: Vec<u8>,
    segs: u16,
    family: Family,
    mss: u16,
    next_id: u16,
    closed: bool,
    /// The frames' own lengths, summed (what the port counters count).
    bytes: u64,
}

impl Default for UdpRun {
    fn default() -> Self {
        UdpRun::new()
    }
}

impl UdpRun {
    /// Allocates the run's buffer once (64 KB).
    pub fn new() -> UdpRun {
        UdpRun {
            buf: Vec::with_capacity(VNET_HDR_LEN + ETH + 65535),
            segs: 0,
            family: Family::V4,
            mss: 0,
            next_id: 0,
            closed: false,
            bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segs == 0
    }

    /// Datagrams in the run.
    pub fn segs(&self) -> u16 {
        self.segs
    }

    /// Adds `whole` (virtio-net header + frame) to the run, or says why not.
    pub fn push(&mut self, hdr: &VnetHdr, whole: &[u8]) -> Push {
        let Some(frame) = whole.get(VNET_HDR_LEN..) else {
            return Push::Alone;
        };
        let Some((family, payload)) = eligible(hdr, frame) else {
            return Push::Alone;
        };
        if self.segs == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(whole);
            self.segs = 1;
            self.family = family;
            self.mss = payload;
            self.next_id = get16(frame, IP_ID).wrapping_add(1);
            self.closed = false;
            self.bytes = frame.len() as u64;
            return Push::Added;
        }
        if family != self.family || !self.joins(frame, payload) {
            return Push::Ends;
        }
        self.buf.extend_from_slice(&frame[family.hdrs()..]);
        self.segs += 1;
        self.next_id = self.next_id.wrapping_add(1);
        self.closed = payload < self.mss;
        self.bytes += frame.len() as u64;
        Push::Added
    }

    fn joins(&self, frame: &[u8], payload: u16) -> bool {
        let first = &self.buf[VNET_HDR_LEN..];
        if self.closed || self.segs >= MAX_SEGS || payload > self.mss || frame[..12] != first[..12]
        {
            return false;
        }
        match self.family {
            // TOS; flags and fragment field, TTL, protocol; addresses and
            // ports; the identifier in sequence; the total under 64 KB.
            Family::V4 => {
                first.len() - ETH + payload as usize <= 65535
                    && get16(frame, IP_ID) == self.next_id
                    && frame[ETH + 1] == first[ETH + 1]
                    && frame[ETH + 6..ETH + 10] == first[ETH + 6..ETH + 10]
                    && frame[ETH + 12..ETH + 24] == first[ETH + 12..ETH + 24]
            }
            // Version, traffic class and flow label; next header and hop
            // limit, addresses and ports; the payload under 64 KB.
            Family::V6 => {
                first.len() - ETH - 40 + payload as usize <= 65535
                    && frame[ETH..ETH + 4] == first[ETH..ETH + 4]
                    && frame[ETH + 6..ETH + 44] == first[ETH + 6..ETH + 44]
            }
        }
    }

    /// Ends the run: the one frame to write (the frame itself for a run of
    /// one, else the super-frame), with the datagram count and their bytes.
    /// The run is empty afterwards.
    pub fn take(&mut self) -> Option<(&[u8], u16, u64)> {
        if self.segs == 0 {
            return None;
        }
        let segs = std::mem::take(&mut self.segs);
        if segs > 1 {
            let family = self.family;
            let f = &mut self.buf[VNET_HDR_LEN..];
            let l3 = family.hdrs() - ETH - 8;
            let udp_len = (f.len() - ETH - l3) as u16;
            let pseudo = match family {
                Family::V4 => {
                    let ip_total = udp_len + 20;
                    f[IP_TOTAL..IP_TOTAL + 2].copy_from_slice(&ip_total.to_be_bytes());
                    f[IP_CSUM..IP_CSUM + 2].copy_from_slice(&[0, 0]);
                    let c = checksum::checksum(&f[ETH..ETH + 20]);
                    f[IP_CSUM..IP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
                    let ip = |at: usize| [f[at], f[at + 1], f[at + 2], f[at + 3]];
                    checksum::pseudo_header_v4(ip(ETH + 12), ip(ETH + 16), 17, udp_len)
                }
                Family::V6 => {
                    f[IP6_PAYLOAD..IP6_PAYLOAD + 2].copy_from_slice(&udp_len.to_be_bytes());
                    checksum::pseudo_header_v6(&f[ETH + 8..ETH + 40], 17, udp_len as u32)
                }
            };
            let udp = ETH + l3;
            f[udp + 4..udp + 6].copy_from_slice(&udp_len.to_be_bytes());
            // A partial checksum holds the pseudo-header sum, not inverted;
            // segmentation adjusts it for each datagram's length.
            let partial = !checksum::finish(pseudo);
            f[udp + 6..udp + 8].copy_from_slice(&partial.to_be_bytes());
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_UDP_L4,
                hdr_len: family.hdrs() as u16,
                gso_size: self.mss,
                csum_start: udp as u16,
                csum_offset: 6,
            }
            .write(&mut self.buf);
        }
        Some((&self.buf, segs, self.bytes))
    }
}

/// The IP version and payload length of a frame that may be coalesced
/// (see the module header), or `None`.
fn eligible(hdr: &VnetHdr, f: &[u8]) -> Option<(Family, u16)> {
    // Any GSO type, even with a zero size, is left for the kernel to judge.
    if hdr.gso_type != 0 || f.len() < HDRS {
        return None;
    }
    let (family, udp, pseudo) = match (f[12], f[13], f[ETH]) {
        (0x08, 0x00, 0x45) => {
            let ip_total = get16(f, IP_TOTAL) as usize;
            if get16(f, ETH + 6) & 0x3fff != 0
                || f[ETH + 9] != 17
                || ip_total != f.len() - ETH
                || checksum::finish(checksum::sum(&f[ETH..ETH + 20], 0)) != 0
            {
                return None;
            }
            let ip = |at: usize| [f[at], f[at + 1], f[at + 2], f[at + 3]];
            let len = (ip_total - 20) as u16;
            let pseudo = checksum::pseudo_header_v4(ip(ETH + 12), ip(ETH + 16), 17, len);
            (Family::V4, ETH + 20, pseudo)
        }
        (0x86, 0xdd, v) if v >> 4 == 6 => {
            if f.len() < HDRS6
                || f[ETH + 6] != 17
                || get16(f, IP6_PAYLOAD) as usize != f.len() - ETH - 40
            {
                return None;
            }
            let len = (f.len() - ETH - 40) as u32;
            (
                Family::V6,
                ETH + 40,
                checksum::pseudo_header_v6(&f[ETH + 8..ETH + 40], 17, len),
            )
        }
        _ => return None,
    };
    let udp_len = get16(f, udp + 4) as usize;
    if udp_len != f.len() - udp || udp_len <= 8 {
        return None;
    }
    let check = get16(f, udp + 6);
    let csum_ok = if hdr.flags & F_NEEDS_CSUM != 0 {
        // The field must hold this datagram's own pseudo-header sum, as
        // the kernel leaves it: merging must not correct a wrong one.
        hdr.csum_start as usize == udp && hdr.csum_offset == 6 && check == !checksum::finish(pseudo)
    } else if check == 0 {
        // No checksum: allowed over IPv4; over IPv6 the receiver drops it.
        family == Family::V4
    } else {
        // DATA_VALID is not trusted: written alone, the frame would be
        // checked again by the receiving kernel (a TAP write ignores that
        // flag), so it is checked here.
        checksum::finish(checksum::sum(&f[udp..], pseudo)) == 0
    };
    csum_ok.then_some((family, (udp_len - 8) as u16))
}

#[cfg(test)]
mod tests;
