//! `vswitchctl trace` for the gateway: the [`Verdict`] the datapath would
//! act on, in words. Rendering only; every decision is
//! [`Gateway::classify_lan`]'s or [`Gateway::classify_wan`]'s, and the only
//! other state read is what acting would read (neighbour caches, the NAT's
//! description of its own decision).

use super::classify::{Forward, IcmpError, Local, Verdict};
use super::{Gateway, Side, neigh};
use crate::reason::Reason;
use crate::switch::Millis;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

impl Gateway {
    /// What [`Gateway::handle_lan`] would do with `frame`, step by step,
    /// without doing it. `egress_port` names the switch port a LAN MAC is
    /// learned on.
    pub fn trace_lan(
        &self,
        frame: &[u8],
        now: Millis,
        egress_port: impl Fn(MacAddr) -> Option<String>,
    ) -> Vec<String> {
        let v = self.classify_lan(frame, None, now);
        self.render(Side::Lan, v, now, &egress_port)
    }

    /// What [`Gateway::handle_wan`] would do with a frame from the uplink.
    pub fn trace_wan(
        &self,
        frame: &[u8],
        now: Millis,
        egress_port: impl Fn(MacAddr) -> Option<String>,
    ) -> Vec<String> {
        if self.wan.is_none() {
            return vec!["there is no uplink".into()];
        }
        let v = self.classify_wan(frame, None, now);
        self.render(Side::Wan, v, now, &egress_port)
    }

    fn render(
        &self,
        side: Side,
        v: Verdict,
        now: Millis,
        egress_port: &dyn Fn(MacAddr) -> Option<String>,
    ) -> Vec<String> {
        let at = match side {
            Side::Lan => "gateway",
            Side::Wan => "uplink",
        };
        match v {
            Verdict::Ignore => vec![format!(
                "{at}: not addressed to the gateway's MAC on this side: ignored (a frame for another host)"
            )],
            Verdict::Local { why, .. } => vec![format!("{at}: {}", local_text(why))],
            Verdict::Drop(why) => vec![format!("{at}: dropped ({})", why.name())],
            Verdict::Refuse { side, error, drop } => {
                let from = self.side_ip(side).map_or("-".into(), |a| a.to_string());
                let what = match error {
                    IcmpError::TimeExceeded => "ICMP Time Exceeded".to_string(),
                    IcmpError::NetUnreachable => "ICMP Destination Net Unreachable".to_string(),
                    IcmpError::FragNeeded(mtu) => {
                        format!("ICMP Fragmentation Needed (MTU {mtu})")
                    }
                };
                vec![format!(
                    "{at}: would answer {what} from {from}; dropped ({})",
                    drop.name()
                )]
            }
            Verdict::Forward(f) => self.render_forward(&f, now, egress_port),
        }
    }

    fn render_forward(
        &self,
        f: &Forward,
        now: Millis,
        egress_port: &dyn Fn(MacAddr) -> Option<String>,
    ) -> Vec<String> {
        let mut t = Vec::new();
        let dst = Ipv4Addr::from(f.ip.dst);
        let dev = match f.to {
            Side::Lan => format!("lan ({})", self.cfg.subnet),
            Side::Wan => format!(
                "uplink {}",
                self.wan.as_ref().map_or("-", |w| w.cfg.ifname.as_str())
            ),
        };
        let nat_text = match (&f.nat, self.nat.as_ref()) {
            (Some(c), Some(n)) => Some(format!("NAT: {}", n.describe(c, f.nat_dir(), now))),
            _ if f.to == Side::Wan => Some("no NAT (--no-nat): source left as it is".into()),
            _ => None,
        };
        if f.from == Side::Wan {
            t.extend(nat_text.as_ref().map(|n| format!("uplink: {n}")));
        } else {
            let hairpin = f.from == Side::Lan && f.to == Side::Lan && f.nat.is_some();
            let how = if f.via_router {
                format!("default via {}", f.next_hop)
            } else {
                "connected".to_string()
            };
            t.push(match hairpin {
                true => format!(
                    "gateway: to {dst}: a published flow within the LAN (hairpin), on to {}, dev {dev}",
                    f.next_hop
                ),
                false => format!("gateway: route to {dst}: {how}, dev {dev}"),
            });
        }
        let ttl = format!("gateway: TTL {} -> {}", f.ip.ttl, f.ip.ttl - 1);
        t.push(match f.fragment {
            None => ttl,
            Some(mtu) => format!(
                "{ttl}; {} bytes over the egress MTU {mtu} without DF: would be fragmented",
                f.ip.total_len
            ),
        });
        if f.from == Side::Lan {
            t.extend(nat_text.map(|n| format!("gateway: {n}")));
        }
        match self.neighbour(f.to, f.next_hop) {
            Some(mac) => t.push(format!("gateway: next hop {} is at {mac}", f.next_hop)),
            None => t.push(format!(
                "gateway: next hop {} not resolved: would send an ARP request and hold the packet (up to {} per address)",
                f.next_hop,
                neigh::HOLD
            )),
        }
        match f.to {
            Side::Wan => t.push(format!("egress: {dev}")),
            Side::Lan => {
                let to = self
                    .neighbour(Side::Lan, f.next_hop)
                    .and_then(egress_port)
                    .unwrap_or_else(|| "flooded (destination MAC not learned)".into());
                t.push(format!(
                    "egress: into the switch from the gateway port, to {to}"
                ));
            }
        }
        t
    }
}

fn local_text(why: Local) -> String {
    match why {
        Local::Arp => "ARP: the sender is learned as a neighbour if on link; the gateway's smoltcp stack answers requests for its addresses".into(),
        Local::OwnAddress(a) => format!("{a} is the gateway's own address: its smoltcp stack answers (ICMP echo)"),
        Local::Broadcast(a) => format!("{a} is a broadcast or multicast address: the gateway's stack takes it (it answers nothing it does not own)"),
        Local::DhcpReply => "a DHCP reply (UDP port 68): to the gateway's DHCP client".into(),
        Local::EchoRequest => "an echo request for the uplink address: answered by the gateway's stack".into(),
    }
}
