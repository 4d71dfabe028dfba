//! Acting on the gateway's [`Verdict`]: the frame handlers the datapath
//! calls. Each classifies first ([`super::classify`]), then does exactly
//! what the verdict says: hand the frame to a stack, count a drop, answer
//! with an ICMP error, or copy it into the outbox, decrement the TTL,
//! translate it and send it to its next hop (resolving it first).

use super::classify::{Forward, Local, Verdict};
use super::nat::NatDrop;
use super::neigh::Resolve;
use super::outbox::{Egress, Outbox};
use super::{ETH, Gateway, GwDrop, Side, same_net};
use crate::switch::Millis;
use crate::wire::MacAddr;
use crate::wire::build::Arp;
use crate::wire::ipv4;
use crate::wire::vnet::VnetHdr;
use std::net::Ipv4Addr;

impl Gateway {
    /// A frame from the switch that the gateway port receives (addressed to
    /// its MAC, or flooded).
    pub fn handle_lan(&mut self, frame: &[u8], now: Millis, out: &mut Outbox) {
        let v = self.classify_lan(frame, None, now);
        self.act(v, frame, None, now, out);
    }

    /// A (whole, checksummed, MTU-sized) frame from the uplink.
    pub fn handle_wan(&mut self, frame: &[u8], now: Millis, out: &mut Outbox) {
        let v = self.classify_wan(frame, None, now);
        self.act(v, frame, None, now, out);
    }

    /// Does what `v` says with `frame` (behind `offload` when it still
    /// carries offload work).
    pub(super) fn act(
        &mut self,
        v: Verdict,
        frame: &[u8],
        offload: Option<&VnetHdr>,
        now: Millis,
        out: &mut Outbox,
    ) {
        // For learners (--log-level debug): the gateway's decision, as
        // decided (a disabled level costs one cached check).
        if !matches!(v, Verdict::Ignore) {
            tracing::debug!(verdict = ?v, "gateway");
        }
        match v {
            Verdict::Ignore => {}
            Verdict::Local { side, why } => {
                if why == Local::Arp {
                    self.snoop_arp(side, frame, now, out);
                }
                self.deliver_local(side, frame, now, out);
            }
            Verdict::Drop(why) => {
                if let (GwDrop::Nat(e), Some(nat)) = (why, self.nat.as_mut()) {
                    nat.count_refusal(e);
                    match e {
                        NatDrop::TableFull => self.nat_full(now, None),
                        NatDrop::ShareExceeded => {
                            let src = frame
                                .get(ETH + 12..ETH + 16)
                                .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]));
                            self.nat_full(now, src);
                        }
                        _ => {}
                    }
                }
                self.drop(why)
            }
            Verdict::Refuse { side, error, drop } => {
                self.icmp_error(side, frame, error, now, out);
                self.drop(drop);
            }
            Verdict::Forward(f) => self.forward(&f, frame, offload, now, out),
        }
    }

    /// Routes a packet as `f` says: copies it into the outbox (behind
    /// `offload`), decrements the TTL, translates it, and sends it to the
    /// next hop (fragmented first if `f` says so).
    fn forward(
        &mut self,
        f: &Forward,
        frame: &[u8],
        offload: Option<&VnetHdr>,
        now: Millis,
        out: &mut Outbox,
    ) {
        let pkt = &frame[..ETH + f.ip.total_len];
        match offload {
            Some(hdr) => out.push_with_hdr(f.to.into(), hdr, pkt),
            None => out.push(f.to.into(), pkt),
        }
        ipv4::decrement_ttl(&mut out.last_mut()[ETH..]);
        if let (Some(class), Some(nat)) = (f.nat, self.nat.as_mut()) {
            let b = &mut out.last_mut()[ETH..];
            if let Err(e) = nat.translate(b, f.nat_dir(), class, offload.is_some(), now) {
                out.pop();
                return self.act(Verdict::Drop(GwDrop::Nat(e)), frame, None, now, out);
            }
        }
        match (f.from, f.to) {
            (_, Side::Wan) => self.stats.routed_out += 1,
            (Side::Wan, Side::Lan) => self.stats.routed_in += 1,
            (Side::Lan, Side::Lan) => self.stats.routed_lan += 1,
        }
        self.send_maybe_fragmented(f.to, f.next_hop, f.fragment, now, out);
    }

    fn deliver_local(&mut self, side: Side, frame: &[u8], now: Millis, out: &mut Outbox) {
        self.stats.to_stack += 1;
        match side {
            Side::Lan => self.lan.input(frame, now, &mut self.lan_sockets, |f| {
                out.push(Egress::Lan, f)
            }),
            Side::Wan => {
                if let Some(w) = self.wan.as_mut() {
                    w.stack
                        .input(frame, now, &mut w.sockets, |f| out.push(Egress::Wan, f));
                }
                self.take_dhcp_event(out);
            }
        }
        self.dns_serve(now, out);
    }

    /// Learns the sender of an ARP packet (request or reply) if it is on the
    /// side's subnet, and sends whatever was waiting for it.
    fn snoop_arp(&mut self, side: Side, frame: &[u8], now: Millis, out: &mut Outbox) {
        let Some(a) = Arp::parse(&frame[ETH..]) else {
            return self.drop(GwDrop::Malformed);
        };
        let on_link = match side {
            Side::Lan => self.cfg.subnet.contains(a.spa),
            Side::Wan => self
                .wan_addr()
                .is_some_and(|(ip, l)| same_net(ip, a.spa, l)),
        };
        // The gateway's own addresses are never neighbours (a claim to
        // one is a spoof or a conflict, not a next hop).
        let own = Some(a.spa) == self.side_ip(side) || Some(a.spa) == self.wan_addr().map(|w| w.0);
        if !on_link || a.spa.is_unspecified() || own {
            return;
        }
        let held = match side {
            Side::Lan => self.lan_neigh.learn(a.spa, a.sha, now),
            Side::Wan => match self.wan.as_mut() {
                Some(w) => w.neigh.learn(a.spa, a.sha, now),
                None => return,
            },
        };
        for mut f in held {
            f[0..6].copy_from_slice(&a.sha.to_bytes());
            out.push(side.into(), &f);
        }
    }

    /// Sends the last outbox frame to `next_hop`, cut into fragments first
    /// when `frag` gives an MTU it exceeds.
    fn send_maybe_fragmented(
        &mut self,
        side: Side,
        next_hop: Ipv4Addr,
        frag: Option<usize>,
        now: Millis,
        out: &mut Outbox,
    ) {
        let Some(mtu) = frag else {
            return self.send_resolved(side, next_hop, now, out);
        };
        let whole = out.last().to_vec();
        out.pop();
        let mut pieces = Vec::new();
        ipv4::fragment_frame(&whole, mtu, |f| pieces.push(f.to_vec()));
        self.stats.fragmented += 1;
        for p in pieces {
            out.push(side.into(), &p);
            self.send_resolved(side, next_hop, now, out);
        }
    }

    /// Completes the last outbox frame (source MAC, destination MAC from the
    /// neighbour cache) or holds it while `next_hop` is resolved.
    fn send_resolved(&mut self, side: Side, next_hop: Ipv4Addr, now: Millis, out: &mut Outbox) {
        let smac = self.side_mac(side);
        out.last_mut()[6..12].copy_from_slice(&smac.to_bytes());
        let cache = match side {
            Side::Lan => &mut self.lan_neigh,
            Side::Wan => match self.wan.as_mut() {
                Some(w) => &mut w.neigh,
                None => {
                    out.pop();
                    return self.drop(GwDrop::NoUplink);
                }
            },
        };
        let r = cache.resolve(next_hop, now, || out.last().to_vec());
        match r {
            Resolve::Known { mac, probe } => {
                out.last_mut()[0..6].copy_from_slice(&mac.to_bytes());
                if probe {
                    self.arp_request(side, next_hop, out);
                }
            }
            Resolve::Held { probe } => {
                out.pop();
                if probe {
                    self.arp_request(side, next_hop, out);
                }
            }
            Resolve::Dropped => {
                out.pop();
                self.drop(GwDrop::NoNeighbour);
            }
        }
    }

    pub(super) fn neighbour(&self, side: Side, ip: Ipv4Addr) -> Option<MacAddr> {
        match side {
            Side::Lan => self.lan_neigh.get(ip),
            Side::Wan => self.wan.as_ref().and_then(|w| w.neigh.get(ip)),
        }
    }
}
