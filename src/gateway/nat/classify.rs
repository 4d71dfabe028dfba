//! The NAT's one decision: where a packet stands in the table, found
//! without changing anything. [`Nat::classify`] parses the packet once
//! (IPv4 header, fragment, ICMP type, L4 ports, the key) and is used both by
//! translation ([`Nat::outbound`], [`Nat::inbound`]) and by the trace's
//! [`Nat::peek`], so the two cannot disagree.

use super::service::Pick;
use super::{
    Dir, Fit, Nat, NatDrop, Seg, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, frag_key, in_key, lan_bit,
    out_key,
};
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
    /// A new connection to a published front end: translating it creates
    /// a flow to backend `pick`. `key` is as its opener sees it (`inside`
    /// the opener, `remote` the front end); `lan`: opened from the LAN
    /// (hairpin: the source becomes the gateway's address too).
    Publish {
        key: FlowKey,
        seg: Seg,
        pick: Pick,
        lan: bool,
    },
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

/// The L4 checksum is right (or left for offload: it cannot be checked).
fn sum_ok(b: &[u8], h: &Ipv4Hdr, partial: bool) -> bool {
    partial || ipv4::l4_checksum(b, h) == 0
}

/// A TCP segment that would open a flow (`opens`) or change its state
/// (SYN, FIN, RST) must be what its sender sent.
fn checked(b: &[u8], h: &Ipv4Hdr, p: &L4, partial: bool, opens: bool) -> Result<(), NatDrop> {
    let matters =
        h.proto == PROTO_TCP && (opens || p.seg.flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0);
    if matters && !sum_ok(b, h, partial) {
        Err(NatDrop::BadChecksum)
    } else {
        Ok(())
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
        match dir {
            Dir::Out => {
                let key = out_key(h.proto, h.src, p.sport, h.dst, p.dport);
                match self
                    .out_map
                    .get(&key)
                    .copied()
                    .and_then(|i| self.live(i, now))
                {
                    Some(idx) => self.flow_class(b, &h, &p, idx, dir, partial),
                    None => {
                        self.room_for(h.src, Some(key))?;
                        checked(b, &h, &p, partial, true)?;
                        Ok(Class::New {
                            key: FlowKey {
                                proto: h.proto,
                                inside: sock(h.src, p.sport),
                                remote: sock(h.dst, p.dport),
                            },
                            seg: p.seg,
                        })
                    }
                }
            }
            Dir::In => {
                // Source is the remote end, destination port the external one.
                let (r_port, ext_port) = if h.proto == PROTO_ICMP {
                    (0, p.sport)
                } else {
                    (p.sport, p.dport)
                };
                let found = self
                    .in_map
                    .get(&in_key(h.proto, h.src, r_port, ext_port))
                    .copied()
                    .and_then(|i| self.live(i, now));
                match found {
                    Some(idx) => self.flow_class(b, &h, &p, idx, dir, partial),
                    None => self.publish_class(b, &h, &p, partial, false),
                }
            }
        }
    }

    /// Where a packet from the LAN stands among the published (hairpin)
    /// flows: `None` when it is none of theirs (it goes the usual way: to
    /// the gateway's stack, or routed and masqueraded). `Some((Out, _))`:
    /// from the opener toward a front end; `Some((In, _))`: a backend's
    /// answer to the gateway's address. Changes nothing.
    pub fn classify_lan(
        &self,
        b: &[u8],
        partial: bool,
        now: Millis,
    ) -> Option<Result<(Dir, Class), NatDrop>> {
        let h = Ipv4Hdr::parse(b)?;
        if !matches!(h.proto, PROTO_TCP | PROTO_UDP) || !h.has_l4() {
            return None;
        }
        let b = &b[..h.total_len];
        let p = l4(b, &h).ok()?;
        if h.dst == self.lan_ip {
            let key = in_key(h.proto, h.src, p.sport, p.dport) | lan_bit(true);
            let idx = self
                .in_map
                .get(&key)
                .copied()
                .and_then(|i| self.live(i, now))?;
            return Some(
                self.flow_class(b, &h, &p, idx, Dir::In, partial)
                    .map(|c| (Dir::In, c)),
            );
        }
        let key = out_key(h.proto, h.src, p.sport, h.dst, p.dport);
        if let Some(idx) = self
            .out_map
            .get(&key)
            .copied()
            .and_then(|i| self.live(i, now))
        {
            // A live masquerade flow under this key is not the hairpin's.
            if !self.flows[idx as usize].lan {
                return None;
            }
            return Some(
                self.flow_class(b, &h, &p, idx, Dir::Out, partial)
                    .map(|c| (Dir::Out, c)),
            );
        }
        self.services
            .lookup(h.proto, Ipv4Addr::from(h.dst), p.dport, self.ext_ip())?;
        Some(
            self.room_for(h.src, Some(key))
                .and_then(|()| self.publish_class(b, &h, &p, partial, true))
                .map(|c| (Dir::Out, c)),
        )
    }

    /// A new connection to a published front end (`lan`: from the LAN,
    /// else from outside to the uplink's address): the backend it would go
    /// to; `NoFlow` when the destination is no front end, or a TCP segment
    /// other than a SYN (only a SYN opens a connection from outside).
    fn publish_class(
        &self,
        b: &[u8],
        h: &Ipv4Hdr,
        p: &L4,
        partial: bool,
        lan: bool,
    ) -> Result<Class, NatDrop> {
        if !matches!(h.proto, PROTO_TCP | PROTO_UDP) {
            return Err(NatDrop::NoFlow);
        }
        let slot = self
            .services
            .lookup(h.proto, Ipv4Addr::from(h.dst), p.dport, self.ext_ip())
            .ok_or(NatDrop::NoFlow)?;
        if h.proto == PROTO_TCP && p.seg.flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
            return Err(NatDrop::NoFlow);
        }
        if !lan {
            // The client's share, and room.
            self.room_for(h.src, None)?;
        }
        checked(b, h, p, partial, true)?;
        let pick = self.services.pick(slot).ok_or(NatDrop::NoBackend)?;
        Ok(Class::Publish {
            key: FlowKey {
                proto: h.proto,
                inside: sock(h.src, p.sport),
                remote: sock(h.dst, p.dport),
            },
            seg: p.seg,
            pick,
            lan,
        })
    }

    /// The flow in slot `idx` if it lives at `now`.
    fn live(&self, idx: u32, now: Millis) -> Option<u32> {
        let f = &self.flows[idx as usize];
        (f.live && f.expires > now).then_some(idx)
    }

    /// Whether a new flow opened by `opener` would find room: within its
    /// share, and in the table (by early drop, or in the place of the
    /// expired flow under its out-key `key`).
    fn room_for(&self, opener: [u8; 4], key: Option<u128>) -> Result<(), NatDrop> {
        if self.held_by(opener) >= self.cfg.max_per_inside {
            Err(NatDrop::ShareExceeded)
        } else if self.live >= self.cfg.max_flows
            && !key.is_some_and(|k| self.out_map.contains_key(&k))
            && !self.can_evict()
        {
            Err(NatDrop::TableFull)
        } else {
            Ok(())
        }
    }

    /// A packet of the tracked flow `idx`: for TCP, inside its window or
    /// not (an RST or FIN outside is refused), and with a checksum to trust
    /// before it teaches the flow anything.
    fn flow_class(
        &self,
        b: &[u8],
        h: &Ipv4Hdr,
        p: &L4,
        idx: u32,
        dir: Dir,
        partial: bool,
    ) -> Result<Class, NatDrop> {
        checked(b, h, p, partial, false)?;
        let mut seg = p.seg;
        let f = &self.flows[idx as usize];
        if h.proto == PROTO_TCP {
            seg.fit = f.track.fit(f.tdir(dir), &seg, f.tcp)?;
            if seg.fit != Fit::Ignore
                && seg.flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
                && !sum_ok(b, h, partial)
            {
                seg.fit = Fit::Ignore;
            }
        }
        Ok(Class::Flow { idx, seg })
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
        // Hairpin flows live on the LAN: an error about one is not
        // translated toward the uplink (it would show their mapping there).
        .filter(|&i| self.flows[i as usize].live && !self.flows[i as usize].lan)
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

    /// Where a packet of a hairpin flow goes after translation: the backend
    /// (from the opener, `Out`) or the opener (a backend's answer, `In`).
    pub fn lan_target_of(&self, class: &Class, dir: Dir) -> Ipv4Addr {
        match (*class, dir) {
            (Class::Publish { pick, .. }, _) => *pick.to.ip(),
            (Class::Flow { idx, .. }, Dir::Out) => {
                Ipv4Addr::from(self.flows[idx as usize].remote_ip)
            }
            (Class::Flow { idx, .. }, Dir::In) => {
                Ipv4Addr::from(self.flows[idx as usize].inside_ip)
            }
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The inside address a packet of this class is translated back to
    /// (inbound); `None` for a new flow.
    pub fn inside_of(&self, class: &Class) -> Option<Ipv4Addr> {
        match *class {
            Class::Flow { idx, .. } | Class::Fragment { idx } | Class::IcmpError { idx, .. } => {
                Some(Ipv4Addr::from(self.flows[idx as usize].inside_ip))
            }
            Class::Publish {
                pick, lan: false, ..
            } => Some(*pick.to.ip()),
            Class::New { .. } | Class::Publish { .. } => None,
        }
    }
}
