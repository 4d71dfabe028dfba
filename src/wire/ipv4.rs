//! Minimal IPv4/TCP/UDP/ICMP field access for the router and the NAT, which
//! rewrite packets in place. Offsets are named constants; [`Ipv4Hdr::parse`]
//! checks everything a later access relies on, so nothing that came from a
//! port can index out of bounds.

use super::checksum;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const TTL: usize = 8;
pub const PROTO: usize = 9;
pub const CHECKSUM: usize = 10;
pub const SRC: std::ops::Range<usize> = 12..16;
pub const DST: std::ops::Range<usize> = 16..20;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_SOURCE_QUENCH: u8 = 4;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;

/// Whether an ICMP type is an error that quotes the offending packet.
pub fn icmp_is_error(t: u8) -> bool {
    matches!(
        t,
        ICMP_DEST_UNREACH | ICMP_SOURCE_QUENCH | ICMP_TIME_EXCEEDED | ICMP_PARAM_PROBLEM
    )
}

/// Validated facts about an IPv4 header at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Hdr {
    pub ihl: usize,
    /// Total length from the header (<= buffer length).
    pub total_len: usize,
    pub proto: u8,
    pub ttl: u8,
    pub id: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes.
    pub frag_offset: usize,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4Hdr {
    /// Parses and checks a header; `None` if it is not a sane IPv4 header
    /// or the buffer is shorter than the header's total length.
    pub fn parse(b: &[u8]) -> Option<Ipv4Hdr> {
        if b.len() < 20 || b[0] >> 4 != 4 {
            return None;
        }
        let ihl = ((b[0] & 0x0f) as usize) * 4;
        let total_len = u16::from_be_bytes([b[2], b[3]]) as usize;
        if ihl < 20 || total_len < ihl || total_len > b.len() {
            return None;
        }
        let ff = u16::from_be_bytes([b[6], b[7]]);
        Some(Ipv4Hdr {
            ihl,
            total_len,
            proto: b[PROTO],
            ttl: b[TTL],
            id: u16::from_be_bytes([b[4], b[5]]),
            dont_frag: ff & 0x4000 != 0,
            more_frags: ff & 0x2000 != 0,
            frag_offset: ((ff & 0x1fff) as usize) * 8,
            src: [b[12], b[13], b[14], b[15]],
            dst: [b[16], b[17], b[18], b[19]],
        })
    }

    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// Whether the L4 header is in this packet (not a later fragment).
    pub fn has_l4(&self) -> bool {
        self.frag_offset == 0
    }
}

/// What the options of an IPv4 header hold, as far as a router cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Options {
    /// None, or only options a router passes on.
    Plain,
    /// Loose or strict source routing (LSRR, SSRR), which Linux drops by
    /// default (`accept_source_route=0`).
    SourceRoute,
    /// An option whose length runs past the header, or is below 2.
    Malformed,
}

/// Walks the options of the header at the start of `b` (`ihl` bytes).
pub fn options(b: &[u8], ihl: usize) -> Options {
    let opts = &b[20.min(ihl)..ihl.min(b.len())];
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,  // end of options
            1 => i += 1, // no-operation
            kind => {
                let Some(&len) = opts.get(i + 1) else {
                    return Options::Malformed;
                };
                let len = len as usize;
                if len < 2 || i + len > opts.len() {
                    return Options::Malformed;
                }
                if matches!(kind, 0x83 | 0x89) {
                    return Options::SourceRoute;
                }
                i += len;
            }
        }
    }
    Options::Plain
}

/// Addresses no packet may come from or go to on a router: `0.0.0.0/8`,
/// `127.0.0.0/8`, `240.0.0.0/4` (RFC 1812 §5.3.7, §4.2.2.11), and the
/// limited broadcast; multicast only as a destination.
pub fn is_martian(a: std::net::Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 0 || o[0] == 127 || o[0] >= 240
}

#[inline]
pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Recomputes the IPv4 header checksum of `b[..ihl]`.
pub fn fill_ip_checksum(b: &mut [u8], ihl: usize) {
    b[CHECKSUM..CHECKSUM + 2].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&b[..ihl]);
    b[CHECKSUM..CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether the IPv4 header checksum of `b[..ihl]` is right.
pub fn ip_checksum_ok(b: &[u8], ihl: usize) -> bool {
    checksum::finish(checksum::sum(&b[..ihl], 0)) == 0
}

/// Decrements the TTL, updating the header checksum incrementally.
pub fn decrement_ttl(b: &mut [u8]) {
    let old = get16(b, TTL);
    b[TTL] -= 1;
    let new = get16(b, TTL);
    let c = get16(b, CHECKSUM);
    b[CHECKSUM..CHECKSUM + 2].copy_from_slice(&checksum::update16(c, old, new).to_be_bytes());
}

/// Offset of the L4 checksum field within the L4 header, if the protocol has
/// one we maintain.
pub fn l4_checksum_offset(proto: u8) -> Option<usize> {
    match proto {
        PROTO_TCP => Some(16),
        PROTO_UDP => Some(6),
        PROTO_ICMP => Some(2),
        _ => None,
    }
}

/// Replaces an IPv4 address field (`SRC` or `DST` at `at`) and keeps the IP
/// header checksum and, when `l4` is the offset of an unfragmented-or-first
/// TCP/UDP header, the L4 checksum (pseudo-header) right.
pub fn set_addr(b: &mut [u8], at: usize, new: [u8; 4], l4: Option<(usize, u8)>) {
    let old = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    b[at..at + 4].copy_from_slice(&new);
    let c = get16(b, CHECKSUM);
    b[CHECKSUM..CHECKSUM + 2].copy_from_slice(&checksum::update32(c, old, new).to_be_bytes());
    if let Some((off, proto)) = l4 {
        let csum_at = match proto {
            PROTO_TCP => off + 16,
            PROTO_UDP => off + 6,
            _ => return, // ICMP has no pseudo-header
        };
        if csum_at + 2 > b.len() {
            return;
        }
        let ck = get16(b, csum_at);
        if proto == PROTO_UDP && ck == 0 {
            return; // UDP without checksum stays without
        }
        let mut n = checksum::update32(ck, old, new);
        if proto == PROTO_UDP && n == 0 {
            n = 0xffff;
        }
        b[csum_at..csum_at + 2].copy_from_slice(&n.to_be_bytes());
    }
}

/// Like [`set_addr`] for a packet whose L4 checksum was left for offload
/// (CHECKSUM_PARTIAL): the field holds the pseudo-header sum, not inverted,
/// so it is updated as a plain sum; the IP header checksum as usual.
pub fn set_addr_partial(b: &mut [u8], at: usize, new: [u8; 4], l4_off: usize, proto: u8) {
    let old = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    set_addr(b, at, new, None);
    let Some(off) = l4_checksum_offset(proto) else {
        return;
    };
    let csum_at = l4_off + off;
    if proto == PROTO_ICMP || csum_at + 2 > b.len() {
        return;
    }
    let seed = get16(b, csum_at);
    let n = !checksum::update32(!seed, old, new);
    b[csum_at..csum_at + 2].copy_from_slice(&n.to_be_bytes());
}

/// Sets a TCP/UDP port (or ICMP echo id) at `b[at..at+2]`, keeping the L4
/// checksum at `csum_at` right (UDP checksum 0 = unused stays 0).
pub fn set_port(b: &mut [u8], at: usize, v: u16, csum_at: usize, proto: u8) {
    let old = get16(b, at);
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    if csum_at + 2 > b.len() {
        return;
    }
    let ck = get16(b, csum_at);
    if proto == PROTO_UDP && ck == 0 {
        return;
    }
    let mut n = checksum::update16(ck, old, v);
    if proto == PROTO_UDP && n == 0 {
        n = 0xffff;
    }
    b[csum_at..csum_at + 2].copy_from_slice(&n.to_be_bytes());
}

/// Full L4 checksum of an unfragmented TCP/UDP/ICMP packet `b` (IPv4 header
/// included), for tests and for completing offloaded checksums.
pub fn l4_checksum(b: &[u8], h: &Ipv4Hdr) -> u16 {
    let l4 = &b[h.ihl..h.total_len];
    let init = if h.proto == PROTO_ICMP {
        0
    } else {
        checksum::pseudo_header_v4(h.src, h.dst, h.proto, l4.len() as u16)
    };
    checksum::finish(checksum::sum(l4, init))
}

/// An IPv4 network: address and prefix length, host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Net {
    /// The network `addr/prefix_len` belongs to (host bits cleared).
    pub fn of(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Net {
        let mask = Ipv4Net { addr, prefix_len }.mask();
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix_len,
        }
    }
    /// The netmask as a number (the one prefix-to-mask helper).
    pub fn mask(self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len as u32)
        }
    }
    pub fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.addr)
    }
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    /// Host number `n` of the network (`n` = 1 is the first usable host),
    /// if it is a usable host address.
    pub fn host(self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - self.prefix_len as u32);
        if n == 0 || (n as u64) >= size - 1 {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.addr) + n))
    }
    /// Whether `a` is in the network and neither its network nor broadcast
    /// address.
    pub fn is_usable_host(self, a: Ipv4Addr) -> bool {
        self.contains(a) && a != self.addr && a != self.broadcast()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| {
            format!("'{s}' is not a subnet (expected ADDRESS/PREFIX, e.g. 192.168.88.0/24)")
        })?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("'{s}': '{a}' is not an IPv4 address"))?;
        let prefix_len: u8 = l
            .parse()
            .ok()
            .filter(|&l| l <= 32)
            .ok_or_else(|| format!("'{s}': prefix length '{l}' is not 0..32"))?;
        let net = Ipv4Net { addr, prefix_len };
        let host_bits = u32::from(addr) & !net.mask();
        if host_bits != 0 {
            let base = Ipv4Addr::from(u32::from(addr) & net.mask());
            return Err(format!(
                "'{s}' has host bits set (did you mean {base}/{prefix_len}?)"
            ));
        }
        Ok(net)
    }
}

/// Splits the IPv4 packet in an Ethernet `frame` into fragments of at most
/// `mtu` bytes of IP (RFC 791) and hands each fragment frame to `emit`.
/// Returns false (emitting nothing) for a packet that may not or cannot be
/// fragmented here: DF set, IP options present, or an MTU below 28.
pub fn fragment_frame(frame: &[u8], mtu: usize, mut emit: impl FnMut(&[u8])) -> bool {
    const ETH: usize = super::ETH_HEADER_LEN;
    let Some(h) = frame.get(ETH..).and_then(Ipv4Hdr::parse) else {
        return false;
    };
    let chunk = (mtu.saturating_sub(20) / 8) * 8;
    if h.dont_frag || h.ihl != 20 || chunk == 0 {
        return false;
    }
    let payload = &frame[ETH + 20..ETH + h.total_len];
    let mut buf = Vec::with_capacity(ETH + 20 + chunk);
    for (i, part) in payload.chunks(chunk).enumerate() {
        buf.clear();
        buf.extend_from_slice(&frame[..ETH + 20]);
        buf.extend_from_slice(part);
        let last = (i + 1) * chunk >= payload.len();
        let more = !last || h.more_frags;
        let offset = (h.frag_offset + i * chunk) / 8;
        let ff = (if more { 0x2000 } else { 0 }) | (offset as u16 & 0x1fff);
        let ip = &mut buf[ETH..];
        ip[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&ff.to_be_bytes());
        fill_ip_checksum(ip, 20);
        emit(&buf);
    }
    true
}

#[cfg(test)]
mod tests;
