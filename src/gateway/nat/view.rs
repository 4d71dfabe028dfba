//! `vswitchctl nat show`: the live flows as rows, like conntrack's listing:
//! each flow's original direction (as its opener sent it) and its reply
//! direction (as the answer reaches the gateway), with typed fields.

use super::{Nat, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TcpState};
use crate::switch::Millis;
use std::net::Ipv4Addr;

/// One direction of a flow, as conntrack prints it: addresses, and the
/// ports (TCP, UDP) or the echo identifier (ICMP).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// ICMP echo identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
}

impl Tuple {
    fn new(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
        let icmp = proto == PROTO_ICMP;
        Tuple {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            sport: (!icmp).then_some(sport),
            dport: (!icmp).then_some(dport),
            id: icmp.then_some(sport),
        }
    }
}

impl std::fmt::Display for Tuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "src={} dst={}", self.src, self.dst)?;
        if let (Some(s), Some(d)) = (self.sport, self.dport) {
            write!(f, " sport={s} dport={d}")?;
        }
        if let Some(id) = self.id {
            write!(f, " id={id}")?;
        }
        Ok(())
    }
}

/// One row of `nat show`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowView {
    pub proto: String,
    /// As the flow's opener sent it.
    pub original: Tuple,
    /// As the answer reaches the gateway (its destination is the
    /// translated end: the uplink's address, or the gateway's for a
    /// hairpin flow).
    pub reply: Tuple,
    pub state: String,
    pub expires_in_secs: u64,
    /// Packets in the original direction.
    pub packets_out: u64,
    /// Packets in the reply direction.
    pub packets_in: u64,
    /// A published flow: its front end (`80/tcp`, `10.96.0.10:80/tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<String>,
    /// A published flow: the backend's port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// Which flows `nat show` lists (`--proto`, `--inside ADDR`, `--port NS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowFilter {
    pub proto: Option<u8>,
    /// Flows of this namespace address: its own, and those to it as a
    /// backend.
    pub addr: Option<Ipv4Addr>,
}

impl Nat {
    /// The live flows, for `nat show`, sorted.
    pub fn flows(&self, now: Millis) -> Vec<FlowView> {
        let mut v = Vec::new();
        let mut at = 0;
        let all = FlowFilter::default();
        while let Some(next) = self.flows_page(at, usize::MAX, now, &all, |r| v.push(r)) {
            at = next;
        }
        v.sort_by(|a, b| (&a.proto, a.original).cmp(&(&b.proto, b.original)));
        v
    }

    /// Up to `max` live flows that `filter` lets through, from table slot
    /// `from` on, in slot order, to `emit`; returns the slot to go on from,
    /// `None` at the end. For `nat show` in chunks between batches of
    /// frames: flows that come or go meanwhile may or may not be listed,
    /// none twice.
    pub fn flows_page(
        &self,
        from: usize,
        max: usize,
        now: Millis,
        filter: &FlowFilter,
        mut emit: impl FnMut(FlowView),
    ) -> Option<usize> {
        let ext = self.ext_ip.unwrap_or([0; 4]);
        let mut n = 0;
        for (i, f) in self.flows.iter().enumerate().skip(from) {
            if n == max {
                return Some(i);
            }
            if !(f.live && f.expires > now)
                || filter.proto.is_some_and(|p| p != f.proto)
                || filter
                    .addr
                    .is_some_and(|a| a.octets() != f.inside_ip && a.octets() != f.remote_ip)
            {
                continue;
            }
            n += 1;
            let (proto, state) = match f.proto {
                PROTO_TCP => (
                    "tcp",
                    match f.tcp {
                        TcpState::SynSent => "SYN_SENT",
                        TcpState::Loose => "PICKED_UP",
                        TcpState::Established => "ESTABLISHED",
                        TcpState::FinWait => "FIN_WAIT",
                        TcpState::TimeWait => "TIME_WAIT",
                        TcpState::Closed => "CLOSE",
                    },
                ),
                PROTO_UDP => ("udp", if f.replied { "ASSURED" } else { "UNREPLIED" }),
                _ => ("icmp", if f.replied { "REPLIED" } else { "UNREPLIED" }),
            };
            let published = match f.is_published() {
                true => self.published.get(&(i as u32)),
                false => None,
            };
            let (front, backend) = match published {
                Some(p) => {
                    let (a, b) = self.services.names(p.svc.0, p.svc.1);
                    (Some(a), Some(b))
                }
                None => (None, None),
            };
            let t = |s: [u8; 4], sp: u16, d: [u8; 4], dp: u16| Tuple::new(f.proto, s, sp, d, dp);
            let (inside, remote) = ((f.inside_ip, f.inside_port), (f.remote_ip, f.remote_port));
            let (original, reply) = if f.remote_opened {
                // From outside: the client dialled the published port.
                (
                    t(remote.0, remote.1, ext, f.ext_port),
                    t(inside.0, inside.1, remote.0, remote.1),
                )
            } else {
                let (fip, fport) = published.and_then(|p| p.front).unwrap_or(remote);
                let to = if f.lan { self.lan_ip } else { ext };
                let back = if f.proto == PROTO_ICMP {
                    f.ext_port
                } else {
                    remote.1
                };
                (
                    t(inside.0, inside.1, fip, fport),
                    t(remote.0, back, to, f.ext_port),
                )
            };
            emit(FlowView {
                proto: proto.into(),
                original,
                reply,
                state: state.into(),
                expires_in_secs: (f.expires - now).div_ceil(1000),
                packets_out: if f.remote_opened {
                    f.packets_in
                } else {
                    f.packets_out
                },
                packets_in: if f.remote_opened {
                    f.packets_out
                } else {
                    f.packets_in
                },
                front,
                backend,
            });
        }
        None
    }
}
