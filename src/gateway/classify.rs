//! The gateway's decision, made without changing anything: a frame from one
//! side and the time in, a [`Verdict`] out. [`Gateway::handle_lan`] and
//! [`Gateway::handle_wan`] act on it; the trace renders it
//! ([`super::trace`]); the offloaded paths ([`super::offload`]) take the
//! same verdict for super-frames. There is no second copy of these checks.

use super::nat::{self, Dir, NatDrop};
use super::{ETH, ETHERTYPE_ARP, ETHERTYPE_IPV4, Gateway, GwDrop, Side, same_net};
use crate::switch::Millis;
use crate::wire::MacAddr;
use crate::wire::ipv4::{self, ICMP_ECHO_REQUEST, Ipv4Hdr, Ipv4Net, PROTO_ICMP, PROTO_UDP};
use crate::wire::vnet::VnetHdr;
use std::net::Ipv4Addr;

/// What the gateway does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not addressed to the gateway on this side (a flooded frame for
    /// another host, or another host's traffic seen by the promiscuous
    /// uplink): left alone, not counted.
    Ignore,
    /// Handed to the side's own smoltcp stack.
    Local { side: Side, why: Local },
    /// Dropped and counted.
    Drop(GwDrop),
    /// Answered with an ICMP error back out of `side` to the sender, then
    /// dropped and counted under `drop`.
    Refuse {
        side: Side,
        error: IcmpError,
        drop: GwDrop,
    },
    /// Routed on.
    Forward(Forward),
}

/// Why a frame goes to the gateway's own stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// ARP: the sender is also learned as a neighbour when on link.
    Arp,
    /// For one of the gateway's own addresses on that side.
    OwnAddress(Ipv4Addr),
    /// A broadcast or multicast packet (or frame).
    Broadcast(Ipv4Addr),
    /// A DHCP reply (UDP to port 68) for the uplink's client.
    DhcpReply,
    /// An echo request to the uplink address that matches no flow.
    EchoRequest,
}

/// The ICMP error a refused packet is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    TimeExceeded,
    NetUnreachable,
    /// Fragmentation Needed, with the next-hop MTU.
    FragNeeded(u16),
}

impl IcmpError {
    /// (type, code, next-hop MTU field).
    pub fn wire(self) -> (u8, u8, u16) {
        match self {
            IcmpError::TimeExceeded => (ipv4::ICMP_TIME_EXCEEDED, 0, 0),
            IcmpError::NetUnreachable => (ipv4::ICMP_DEST_UNREACH, 0, 0),
            IcmpError::FragNeeded(mtu) => (ipv4::ICMP_DEST_UNREACH, 4, mtu),
        }
    }
}

/// A packet the gateway routes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    pub from: Side,
    pub to: Side,
    /// The packet's (sound, checksum-verified) IPv4 header.
    pub ip: Ipv4Hdr,
    pub next_hop: Ipv4Addr,
    /// Whether `next_hop` is a router (the default route), not the
    /// destination itself.
    pub via_router: bool,
    /// Cut into fragments for this egress MTU first (no DF, too big).
    pub fragment: Option<usize>,
    /// The NAT's decision: outbound when `to` is the uplink, inbound when
    /// `from` is, either way for a published flow within the LAN
    /// (hairpin); `None` without NAT.
    pub nat: Option<nat::Class>,
    /// Which way the packet crosses the NAT.
    pub dir: Dir,
}

impl Forward {
    /// Which way the packet crosses the NAT.
    pub fn nat_dir(&self) -> Dir {
        self.dir
    }
}

/// Why a routed packet cannot go on (before choosing the ICMP answer).
enum Refusal {
    Ttl,
    FragNeeded(usize),
    TooBig,
}

/// The IPv4 header of an Ethernet frame, if sound and its checksum right;
/// otherwise the drop reason.
pub(super) fn sound_ipv4(frame: &[u8]) -> Result<Ipv4Hdr, GwDrop> {
    let h = frame
        .get(ETH..)
        .and_then(Ipv4Hdr::parse)
        .ok_or(GwDrop::Malformed)?;
    if !ipv4::ip_checksum_ok(&frame[ETH..], h.ihl) {
        return Err(GwDrop::BadChecksum);
    }
    Ok(h)
}

pub(super) fn is_special(a: Ipv4Addr) -> bool {
    a.is_broadcast() || a.is_multicast() || a.is_unspecified()
}

impl Gateway {
    /// The decision for a frame the gateway port receives from the switch.
    /// `offload` is the virtio-net header of a frame that still carries
    /// offload work (its segments, not the frame, must fit the egress MTU).
    pub fn classify_lan(&self, frame: &[u8], offload: Option<&VnetHdr>, now: Millis) -> Verdict {
        if frame.len() < ETH {
            return Verdict::Drop(GwDrop::Malformed);
        }
        let dst = MacAddr::from_slice(&frame[0..6]);
        let to_us = dst == self.cfg.lan_mac;
        if !to_us && dst != MacAddr::BROADCAST {
            return Verdict::Ignore;
        }
        match ipv4::get16(frame, 12) {
            ETHERTYPE_ARP => Verdict::Local {
                side: Side::Lan,
                why: Local::Arp,
            },
            ETHERTYPE_IPV4 if to_us => match sound_ipv4(frame) {
                Ok(h) => self.classify_lan_ip(frame, h, offload, now),
                Err(why) => Verdict::Drop(why),
            },
            ETHERTYPE_IPV4 => Verdict::Local {
                side: Side::Lan,
                why: Local::Broadcast(Ipv4Addr::BROADCAST),
            },
            _ if to_us => Verdict::Drop(GwDrop::NotForUs),
            _ => Verdict::Ignore,
        }
    }

    fn classify_lan_ip(
        &self,
        frame: &[u8],
        h: Ipv4Hdr,
        offload: Option<&VnetHdr>,
        now: Millis,
    ) -> Verdict {
        let dst = Ipv4Addr::from(h.dst);
        let src = Ipv4Addr::from(h.src);
        if let Some(v) = self.classify_hairpin(frame, &h, offload, now) {
            return v;
        }
        if self.is_local_lan(dst) {
            let why = if is_special(dst) || dst == self.cfg.subnet.broadcast() {
                Local::Broadcast(dst)
            } else if !self.cfg.subnet.contains(src) {
                // A spoofed outside source would draw the stack's answer
                // (an RST, an echo reply) toward that outside host.
                return Verdict::Drop(GwDrop::Martian);
            } else {
                Local::OwnAddress(dst)
            };
            return Verdict::Local {
                side: Side::Lan,
                why,
            };
        }
        if ipv4::is_martian(dst) {
            return Verdict::Drop(GwDrop::MartianDestination);
        }
        // Linux's rp_filter and martian checks: only the subnet's own hosts
        // may send through the gateway (not the gateway's, the network's or
        // the broadcast address).
        let net = self.cfg.subnet;
        if !net.contains(src) || src == self.cfg.lan_ip || src == net.addr || src == net.broadcast()
        {
            return Verdict::Drop(GwDrop::Martian);
        }
        if let Some(drop) = options_drop(frame, &h) {
            return Verdict::Drop(drop);
        }
        let Some((to, next_hop)) = self.route(dst) else {
            return Verdict::Refuse {
                side: Side::Lan,
                error: IcmpError::NetUnreachable,
                drop: GwDrop::NoRoute,
            };
        };
        if to == Side::Wan && self.wan_addr().is_none() {
            return Verdict::Drop(GwDrop::NoUplink);
        }
        let fragment = match self.forward_check(to, &h, frame, offload) {
            Ok(f) => f,
            Err(r) => return refused(Side::Lan, r),
        };
        let nat = match (to, self.nat.as_ref()) {
            (Side::Wan, Some(n)) => match n.classify(
                &frame[ETH..ETH + h.total_len],
                Dir::Out,
                offload.is_some_and(|v| !v.is_plain()),
                now,
            ) {
                Ok(c) => Some(c),
                Err(e) => return Verdict::Drop(GwDrop::Nat(e)),
            },
            _ => None,
        };
        Verdict::Forward(Forward {
            from: Side::Lan,
            to,
            ip: h,
            next_hop,
            via_router: next_hop != dst,
            fragment,
            nat,
            dir: Dir::Out,
        })
    }

    /// A packet from a namespace that belongs to a published flow within
    /// the LAN (hairpin): to a front end (a service address, or the
    /// uplink's address), or a backend's answer to the gateway's address.
    /// `None`: none of theirs.
    fn classify_hairpin(
        &self,
        frame: &[u8],
        h: &Ipv4Hdr,
        offload: Option<&VnetHdr>,
        now: Millis,
    ) -> Option<Verdict> {
        let n = self.nat.as_ref()?;
        let partial = offload.is_some_and(|v| !v.is_plain());
        let (dir, class) = match n.classify_lan(&frame[ETH..ETH + h.total_len], partial, now)? {
            Ok(c) => c,
            Err(e) => return Some(Verdict::Drop(GwDrop::Nat(e))),
        };
        let net = self.cfg.subnet;
        let src = Ipv4Addr::from(h.src);
        if !net.contains(src) || src == self.cfg.lan_ip || src == net.addr || src == net.broadcast()
        {
            return Some(Verdict::Drop(GwDrop::Martian));
        }
        if let Some(drop) = options_drop(frame, h) {
            return Some(Verdict::Drop(drop));
        }
        let fragment = match self.forward_check(Side::Lan, h, frame, offload) {
            Ok(f) => f,
            Err(r) => return Some(refused(Side::Lan, r)),
        };
        let next_hop = n.lan_target_of(&class, dir);
        Some(Verdict::Forward(Forward {
            from: Side::Lan,
            to: Side::Lan,
            ip: *h,
            next_hop,
            via_router: false,
            fragment,
            nat: Some(class),
            dir,
        }))
    }

    /// The decision for a frame from the uplink.
    pub fn classify_wan(&self, frame: &[u8], offload: Option<&VnetHdr>, now: Millis) -> Verdict {
        let Some(wmac) = self.wan_mac() else {
            return Verdict::Ignore;
        };
        if frame.len() < ETH {
            return Verdict::Drop(GwDrop::Malformed);
        }
        let dst = MacAddr::from_slice(&frame[0..6]);
        if dst != wmac && dst != MacAddr::BROADCAST {
            return Verdict::Ignore;
        }
        match ipv4::get16(frame, 12) {
            ETHERTYPE_ARP => Verdict::Local {
                side: Side::Wan,
                why: Local::Arp,
            },
            ETHERTYPE_IPV4 => match sound_ipv4(frame) {
                Ok(h) => self.classify_wan_ip(frame, h, offload, now),
                Err(why) => Verdict::Drop(why),
            },
            _ if dst == wmac => Verdict::Drop(GwDrop::NotForUs),
            _ => Verdict::Ignore,
        }
    }

    fn classify_wan_ip(
        &self,
        frame: &[u8],
        h: Ipv4Hdr,
        offload: Option<&VnetHdr>,
        now: Millis,
    ) -> Verdict {
        let dst = Ipv4Addr::from(h.dst);
        let wan_ip = self.wan_addr().map(|a| a.0);
        let l4 = ETH + h.ihl;
        let local = |why| Verdict::Local {
            side: Side::Wan,
            why,
        };
        let src = Ipv4Addr::from(h.src);
        if ipv4::is_martian(src) || src.is_multicast() {
            // Nothing from such a source is taken, and so the stack never
            // answers toward one.
            return Verdict::Drop(GwDrop::Martian);
        }
        let dhcp_reply = h.proto == PROTO_UDP
            && h.has_l4()
            && frame.len() >= l4 + 4
            && ipv4::get16(frame, l4 + 2) == 68;
        if dhcp_reply {
            return local(Local::DhcpReply);
        }
        let echo = h.proto == PROTO_ICMP
            && h.has_l4()
            && frame.len() > l4
            && frame[l4] == ICMP_ECHO_REQUEST;
        let uplink_bcast = self
            .wan_addr()
            .is_some_and(|(a, l)| Ipv4Net::of(a, l).broadcast() == dst && l < 31);
        if echo && (is_special(dst) || uplink_bcast) {
            return Verdict::Drop(GwDrop::BroadcastEcho); // icmp_echo_ignore_broadcasts
        }
        if is_special(dst) && Some(dst) != wan_ip {
            return local(Local::Broadcast(dst));
        }
        if self.cfg.subnet.contains(Ipv4Addr::from(h.src)) {
            return Verdict::Drop(GwDrop::Martian);
        }
        let (next_hop, nat) = if Some(dst) == wan_ip {
            let Some(n) = self.nat.as_ref() else {
                return local(Local::OwnAddress(dst));
            };
            let partial = offload.is_some_and(|v| !v.is_plain());
            match n.classify(&frame[ETH..ETH + h.total_len], Dir::In, partial, now) {
                Ok(c) => (n.inside_of(&c).unwrap_or(dst), Some(c)),
                Err(NatDrop::NoFlow) => {
                    // Unsolicited: only what the gateway itself answers
                    // (echo requests to its address) goes to its stack.
                    if echo {
                        return local(Local::EchoRequest);
                    }
                    // An upstream's answer to the DNS server.
                    if self.is_dns_answer(frame, &h) {
                        return local(Local::OwnAddress(dst));
                    }
                    return Verdict::Drop(GwDrop::Nat(NatDrop::NoFlow));
                }
                Err(e) => return Verdict::Drop(GwDrop::Nat(e)),
            }
        } else if self.nat.is_none() && self.cfg.subnet.contains(dst) {
            // --no-nat: the outside routes the subnet to us.
            (dst, None)
        } else {
            return Verdict::Drop(GwDrop::NotForUs);
        };
        if let Some(drop) = options_drop(frame, &h) {
            return Verdict::Drop(drop);
        }
        let fragment = match self.forward_check(Side::Lan, &h, frame, offload) {
            Ok(f) => f,
            Err(r) => return refused(Side::Wan, r),
        };
        Verdict::Forward(Forward {
            from: Side::Wan,
            to: Side::Lan,
            ip: h,
            next_hop,
            via_router: false,
            fragment,
            nat,
            dir: Dir::In,
        })
    }

    /// Whether a packet from the LAN to `dst` is for the gateway's own stack
    /// (its addresses, or a broadcast/multicast), not to be routed.
    pub(super) fn is_local_lan(&self, dst: Ipv4Addr) -> bool {
        dst == self.cfg.lan_ip
            || Some(dst) == self.wan_addr().map(|a| a.0)
            || is_special(dst)
            || dst == self.cfg.subnet.broadcast()
    }

    /// Where a packet to `dst` goes: side and next hop.
    pub(super) fn route(&self, dst: Ipv4Addr) -> Option<(Side, Ipv4Addr)> {
        if self.cfg.subnet.contains(dst) {
            return Some((Side::Lan, dst));
        }
        let w = self.wan.as_ref()?;
        let (a, l) = w.addr?;
        if same_net(a, dst, l) {
            return Some((Side::Wan, dst));
        }
        w.gw.map(|gw| (Side::Wan, gw))
    }

    /// Whether a packet may be forwarded toward `to`: TTL left, and either
    /// fits the egress MTU (`Ok(None)`) or may be fragmented to it
    /// (`Ok(Some(mtu))`). A frame with offload work fits when each of its
    /// segments does.
    fn forward_check(
        &self,
        to: Side,
        h: &Ipv4Hdr,
        frame: &[u8],
        offload: Option<&VnetHdr>,
    ) -> Result<Option<usize>, Refusal> {
        if h.ttl <= 1 {
            return Err(Refusal::Ttl);
        }
        let mtu = self.side_mtu(to);
        if let Some(hdr) = offload.filter(|v| v.is_gso()) {
            let l4 = ETH + h.ihl;
            let fits = frame.len() >= l4 + 20 && {
                let thl = ((frame[l4 + 12] >> 4) as usize) * 4;
                h.ihl + thl + hdr.gso_size as usize <= mtu
            };
            return if fits {
                Ok(None)
            } else {
                Err(Refusal::FragNeeded(mtu))
            };
        }
        if h.total_len <= mtu {
            return Ok(None);
        }
        if h.dont_frag {
            Err(Refusal::FragNeeded(mtu))
        } else if h.ihl != 20 {
            Err(Refusal::TooBig)
        } else {
            Ok(Some(mtu))
        }
    }
}

/// Options a router refuses to forward with: source routes
/// (`accept_source_route=0`) and malformed ones.
fn options_drop(frame: &[u8], h: &Ipv4Hdr) -> Option<GwDrop> {
    if h.ihl == 20 {
        return None;
    }
    match ipv4::options(&frame[ETH..], h.ihl) {
        ipv4::Options::Plain => None,
        ipv4::Options::SourceRoute => Some(GwDrop::SourceRoute),
        ipv4::Options::Malformed => Some(GwDrop::BadOptions),
    }
}

fn refused(side: Side, r: Refusal) -> Verdict {
    let (error, drop) = match r {
        Refusal::Ttl => (IcmpError::TimeExceeded, GwDrop::TtlExceeded),
        Refusal::FragNeeded(mtu) => (IcmpError::FragNeeded(mtu as u16), GwDrop::FragNeeded),
        Refusal::TooBig => return Verdict::Drop(GwDrop::TooBig),
    };
    Verdict::Refuse { side, error, drop }
}
