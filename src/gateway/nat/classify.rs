//! The NAT's one decision: where a packet stands in the table, found
//! without changing anything. [`Nat::classify`] parses the packet once
//! (IPv4 header, fragment, ICMP type, L4 ports, the key) and is used both by
//! translation ([`Nat::outbound`], [`Nat::inbound`]) and by the trace's
//! [`Nat::peek`], so the two cannot disagree.

use super::{Dir, Fit, Nat, NatDrop, Seg, TCP_FIN, TCP_RST, TCP_SYN, frag_key, in_key, out_key};
use crate::switch::Millis;
use crate::wire::ipv4::{
    self, DST, Ipv4Hdr, PROTO_ICMP, PROTO_TCP, PROTO_UDP, get16, icmp_is_error,
};
use std::net::{Ipv4Addr, SocketAddrV4};

/// A flow's two ends as the inside host sees them. ICMP echo uses the
/// identifier as the inside port and 0 as the remote port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub proto: u8,
    pub inside: SocketAddrV4,
    pub remote: SocketAddrV4,
}

/// Where a packet stands in the NAT table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A packet of the live flow in slot `idx`; for TCP, `seg.fit` says
    /// whether it is inside the window (what it may change).
    Flow { idx: u32, seg: Seg },
    /// Outbound with no live flow: translating it creates one for `key`.
    New { key: FlowKey, seg: Seg },
    /// A later fragment of the flow its first fragment recorded.
    Fragment { idx: u32 },
    /// An ICMP error quoting a packet of flow `idx`; the quoted IPv4
    /// header starts at `quoted` (offset in the packet), its L4 header
    /// `quoted_ihl` bytes later.
    IcmpError {
        idx: u32,
        quoted: usize,
        quoted_ihl: usize,
        quoted_proto: u8,
    },
}

/// The L4 "ports" of a packet: (source, destination) for TCP/UDP, (id, 0)
/// for ICMP echo, and the TCP segment ([`Seg::NONE`] otherwise).
pub(super) struct L4 {
    pub sport: u16,
    pub dport: u16,
    pub seg: Seg,
}

pub(super) fn l4(b: &[u8], h: &Ipv4Hdr) -> Result<L4, NatDrop> {
    let at = h.ihl;
    let len = h.total_len - h.ihl;
    match h.proto {
        PROTO_TCP if len >= 20 => Ok(L4 {
            sport: get16(b, at),
            dport: get16(b, at + 2),
            seg: Seg::parse(b, at, len),
        }),
        PROTO_UDP if len >= 8 => Ok(L4 {
            sport: get16(b, at),
            dport: get16(b, at + 2),
            seg: Seg::NONE,
        }),
        PROTO_ICMP if len >= 8 => Ok(L4 {
            sport: get16(b, at + 4),
            dport: 0,
            seg: Seg::NONE,
        }),
        PROTO_TCP | PROTO_UDP | PROTO_ICMP => Err(NatDrop::Malformed),
        _ => Err(NatDrop::Unsupported),
    }
}

fn sock(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

impl Nat {
    /// Where packet `b` (exactly an IPv4 packet, or longer) stands, crossing
    /// the NAT in direction `dir` at time `now`; or why the NAT refuses it.
    /// Changes nothing: an expired flow counts as absent.
    /// `partial`: the L4 checksum is left for offload (it cannot be
    /// checked).
    pub fn classify(
        &self,
        b: &[u8],
        dir: Dir,
        partial: bool,
        now: Millis,
    ) -> Result<Class, NatDrop> {
        let ext = self.ext_ip.ok_or(NatDrop::NoAddress)?;
        if dir == Dir::In && b.len() >= 20 && b[DST] != ext {
            return Err(NatDrop::NoFlow);
        }
        let h = Ipv4Hdr::parse(b).ok_or(NatDrop::Malformed)?;
        let b = &b[..h.total_len];
        if !h.has_l4() {
            let idx = self
                .frag_lookup(frag_key(h.proto, h.src, h.dst, h.id), now)
                .ok_or(NatDrop::FragmentNoFlow)?;
            return Ok(Class::Fragment { idx });
        }
        if h.proto == PROTO_ICMP && h.total_len - h.ihl >= 8 {
            let t = b[h.ihl];
            if icmp_is_error(t) {
                return self.classify_icmp_error(b, &h, dir, ext);
            }
            let expected = match dir {
                Dir::Out => ipv4::ICMP_ECHO_REQUEST,
                Dir::In => ipv4::ICMP_ECHO_REPLY,
            };
            if t != expected {
                return Err(match dir {
                    Dir::Out => NatDrop::Unsupported,
                    Dir::In => NatDrop::NoFlow,
                });
            }
        }
        let p = l4(b, &h)?;
        // A TCP segment that would open a flow or change its state must be
        // what its sender sent.
        let sum_ok = || partial || ipv4::l4_checksum(b, &h) == 0;
        let checked = |opens: bool| {
            let matters =
                h.proto == PROTO_TCP && (opens || p.seg.flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0);
            if matters && !sum_ok() {
                Err(NatDrop::BadChecksum)
            } else {
                Ok(())
            }
        };
        // A segment of a tracked TCP flow: inside its window or not (an
        // RST or FIN outside is refused), and with a checksum to trust
        // before it teaches the flow anything.
        let flow = |idx: u32| {
            checked(false)?;
            let mut seg = p.seg;
            let f = &self.flows[idx as usize];
            if h.proto == PROTO_TCP {
                seg.fit = f.track.fit(dir, &seg, f.tcp)?;
                if seg.fit != Fit::Ignore
                    && seg.flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
                    && !sum_ok()
                {
                    seg.fit = Fit::Ignore;
                }
            }
            Ok(Class::Flow { idx, seg })
        };
        let live = |idx: u32| {
            let f = &self.flows[idx as usize];
            (f.live && f.expires > now).then_some(idx)
        };
        match dir {
            Dir::Out => {
                let key = out_key(h.proto, h.src, p.sport, h.dst, p.dport);
                match self.out_map.get(&key).copied().and_then(live) {
                    Some(idx) => flow(idx),
                    None if self.held_by(h.src) >= self.cfg.max_per_inside => {
                        Err(NatDrop::ShareExceeded)
                    }
                    None if self.live >= self.cfg.max_flows
                        && !self.out_map.contains_key(&key)
                        && !self.can_evict() =>
                    {
                        Err(NatDrop::TableFull)
                    }
                    None => checked(true).map(|()| Class::New {
                        key: FlowKey {
                            proto: h.proto,
                            inside: sock(h.src, p.sport),
                            remote: sock(h.dst, p.dport),
                        },
                        seg: p.seg,
                    }),
                }
            }
            Dir::In => {
                // Source is the remote end, destination port the external one.
                let (r_port, ext_port) = if h.proto == PROTO_ICMP {
                    (0, p.sport)
                } else {
                    (p.sport, p.dport)
                };
                let idx = self
                    .in_map
                    .get(&in_key(h.proto, h.src, r_port, ext_port))
                    .copied()
                    .and_then(live)
                    .ok_or(NatDrop::NoFlow)?;
                flow(idx)
            }
        }
    }

    /// An ICMP error about a tracked flow. Inbound: the quoted packet is one
    /// we sent (source = external address and port). Outbound: the quoted
    /// packet is one the inside host received (destination = its address
    /// and port).
    fn classify_icmp_error(
        &self,
        b: &[u8],
        h: &Ipv4Hdr,
        dir: Dir,
        ext: [u8; 4],
    ) -> Result<Class, NatDrop> {
        let e = h.ihl + 8;
        if b.len() < e + 20 || b[e] >> 4 != 4 {
            return Err(NatDrop::Malformed);
        }
        let eihl = ((b[e] & 0x0f) as usize) * 4;
        let el4 = e + eihl;
        if eihl < 20 || b.len() < el4 + 8 {
            return Err(NatDrop::Malformed);
        }
        let eproto = b[e + 9];
        let esrc: [u8; 4] = b[e + 12..e + 16].try_into().expect("4 bytes");
        let edst: [u8; 4] = b[e + 16..e + 20].try_into().expect("4 bytes");
        let (eport_s, eport_d) = match eproto {
            PROTO_TCP | PROTO_UDP => (get16(b, el4), get16(b, el4 + 2)),
            PROTO_ICMP => (get16(b, el4 + 4), 0),
            _ => return Err(NatDrop::Unsupported),
        };
        let idx = match dir {
            Dir::In => {
                if esrc != ext {
                    return Err(NatDrop::NoFlow);
                }
                let r_port = if eproto == PROTO_ICMP { 0 } else { eport_d };
                self.in_map
                    .get(&in_key(eproto, edst, r_port, eport_s))
                    .copied()
            }
            Dir::Out => {
                // Quoted: remote -> inside host.
                let (in_port, r_port) = if eproto == PROTO_ICMP {
                    (eport_s, 0)
                } else {
                    (eport_d, eport_s)
                };
                self.out_map
                    .get(&out_key(eproto, edst, in_port, esrc, r_port))
                    .copied()
            }
        }
        .filter(|&i| self.flows[i as usize].live)
        .ok_or(NatDrop::NoFlow)?;
        Ok(Class::IcmpError {
            idx,
            quoted: e,
            quoted_ihl: eihl,
            quoted_proto: eproto,
        })
    }

    /// The fragment-tracking record of a later fragment, if its flow lives.
    pub(super) fn frag_lookup(&self, key: u128, now: Millis) -> Option<u32> {
        let (idx, generation) = self.frags.get(key, now)?;
        let f = self.flows.get(idx as usize)?;
        (f.live && f.generation == generation).then_some(idx)
    }

    /// The key of the flow in slot `idx` (as the inside host sees it).
    pub fn key_of(&self, idx: u32) -> FlowKey {
        let f = &self.flows[idx as usize];
        FlowKey {
            proto: f.proto,
            inside: sock(f.inside_ip, f.inside_port),
            remote: sock(f.remote_ip, f.remote_port),
        }
    }

    /// The external port of the flow in slot `idx`.
    pub fn ext_port_of(&self, idx: u32) -> u16 {
        self.flows[idx as usize].ext_port
    }

    /// The inside address a packet of this class is translated back to
    /// (inbound); `None` for a new flow.
    pub fn inside_of(&self, class: &Class) -> Option<Ipv4Addr> {
        match *class {
            Class::Flow { idx, .. } | Class::Fragment { idx } | Class::IcmpError { idx, .. } => {
                Some(Ipv4Addr::from(self.flows[idx as usize].inside_ip))
            }
            Class::New { .. } => None,
        }
    }
}
