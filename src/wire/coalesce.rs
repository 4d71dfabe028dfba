//! UDP coalescing for TAP writes: consecutive datagrams of one flow, bound
//! for the same TAP, leave as one UDP segmentation-offload super-frame
//! (`VIRTIO_NET_HDR_GSO_UDP_L4`, Linux 6.2+), so the namespace's kernel
//! takes them in one `write`, one `tun_get_user` and one pass through IP,
//! and cuts them apart again at the UDP layer (`udp_rcv_segment`) for a
//! socket without `UDP_GRO`. The receiver gets the same datagrams, in the
//! same order. wireguard-go writes to its TUN the same way.
//!
//! A run is only what Linux's own GRO would merge, so that cutting it apart
//! gives back exactly the frames that were put in:
//! - Ethernet + IPv4 without options + UDP, not a fragment, no padding, no
//!   offload work pending other than the UDP checksum; headers checked (the
//!   IP checksum, a finished UDP checksum and the pseudo-header sum of a
//!   pending one are verified, whatever the header's `DATA_VALID` says:
//!   merging must never turn a corrupted datagram into a valid one);
//! - the same MACs, addresses, ports, TOS, TTL and DF bit;
//! - IP identifiers that count up by one (segmentation numbers them so);
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
//! run. `--no-udp-coalesce` turns it off.

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
const UDP_LEN: usize = ETH + 20 + 4;
const UDP_CSUM: usize = ETH + 20 + 6;

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

/// One run of datagrams being gathered for one TAP.
pub struct UdpRun {
    /// Virtio-net header + the first frame + the later payloads.
    buf: Vec<u8>,
    segs: u16,
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
        let Some(payload) = eligible(hdr, frame) else {
            return Push::Alone;
        };
        if self.segs == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(whole);
            self.segs = 1;
            self.mss = payload;
            self.next_id = get16(frame, IP_ID).wrapping_add(1);
            self.closed = false;
            self.bytes = frame.len() as u64;
            return Push::Added;
        }
        if !self.joins(frame, payload) {
            return Push::Ends;
        }
        self.buf.extend_from_slice(&frame[HDRS..]);
        self.segs += 1;
        self.next_id = self.next_id.wrapping_add(1);
        self.closed = payload < self.mss;
        self.bytes += frame.len() as u64;
        Push::Added
    }

    fn joins(&self, frame: &[u8], payload: u16) -> bool {
        let first = &self.buf[VNET_HDR_LEN..];
        let ip_total = first.len() - ETH + payload as usize;
        !self.closed
            && self.segs < MAX_SEGS
            && payload <= self.mss
            && ip_total <= 65535
            && get16(frame, IP_ID) == self.next_id
            // MACs; then TOS; flags and fragment field, TTL, protocol;
            // addresses and ports.
            && frame[..12] == first[..12]
            && frame[ETH + 1] == first[ETH + 1]
            && frame[ETH + 6..ETH + 10] == first[ETH + 6..ETH + 10]
            && frame[ETH + 12..ETH + 24] == first[ETH + 12..ETH + 24]
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
            let f = &mut self.buf[VNET_HDR_LEN..];
            let ip_total = (f.len() - ETH) as u16;
            let udp_len = ip_total - 20;
            f[IP_TOTAL..IP_TOTAL + 2].copy_from_slice(&ip_total.to_be_bytes());
            f[IP_CSUM..IP_CSUM + 2].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[ETH..ETH + 20]);
            f[IP_CSUM..IP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            f[UDP_LEN..UDP_LEN + 2].copy_from_slice(&udp_len.to_be_bytes());
            // A partial checksum holds the pseudo-header sum, not inverted;
            // segmentation adjusts it for each datagram's length.
            let ip = |at: usize| [f[at], f[at + 1], f[at + 2], f[at + 3]];
            let pseudo = checksum::pseudo_header_v4(ip(ETH + 12), ip(ETH + 16), 17, udp_len);
            let partial = !checksum::finish(pseudo);
            f[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&partial.to_be_bytes());
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_UDP_L4,
                hdr_len: HDRS as u16,
                gso_size: self.mss,
                csum_start: (ETH + 20) as u16,
                csum_offset: 6,
            }
            .write(&mut self.buf);
        }
        Some((&self.buf, segs, self.bytes))
    }
}

/// The payload length of a frame that may be coalesced (see the module
/// header), or `None`.
fn eligible(hdr: &VnetHdr, f: &[u8]) -> Option<u16> {
    // Any GSO type, even with a zero size, is left for the kernel to judge.
    if f.len() < HDRS
        || hdr.gso_type != 0
        || f[12..14] != [0x08, 0x00]
        || f[ETH] != 0x45
        || get16(f, ETH + 6) & 0x3fff != 0
        || f[ETH + 9] != 17
    {
        return None;
    }
    let ip_total = get16(f, IP_TOTAL) as usize;
    let udp_len = get16(f, UDP_LEN) as usize;
    if ip_total != f.len() - ETH || udp_len != ip_total - 20 || udp_len <= 8 {
        return None;
    }
    if checksum::finish(checksum::sum(&f[ETH..ETH + 20], 0)) != 0 {
        return None;
    }
    let ip = |at: usize| [f[at], f[at + 1], f[at + 2], f[at + 3]];
    let pseudo = checksum::pseudo_header_v4(ip(ETH + 12), ip(ETH + 16), 17, udp_len as u16);
    let csum_ok = if hdr.flags & F_NEEDS_CSUM != 0 {
        // The field must hold this datagram's own pseudo-header sum, as
        // the kernel leaves it: merging must not correct a wrong one.
        hdr.csum_start as usize == ETH + 20
            && hdr.csum_offset == 6
            && get16(f, UDP_CSUM) == !checksum::finish(pseudo)
    } else {
        // DATA_VALID is not trusted: written alone, the frame would be
        // checked again by the receiving kernel (a TAP write ignores that
        // flag), so it is checked here.
        get16(f, UDP_CSUM) == 0 || checksum::finish(checksum::sum(&f[ETH + 20..], pseudo)) == 0
    };
    csum_ok.then_some((udp_len - 8) as u16)
}

#[cfg(test)]
mod tests;
