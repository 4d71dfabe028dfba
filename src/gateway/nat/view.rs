//! `vswitchctl nat show`: the live flows as rows, like conntrack's listing.

use super::{Nat, PROTO_TCP, PROTO_UDP, TcpState};
use crate::switch::Millis;
use std::net::Ipv4Addr;

/// One row of `nat show`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowView {
    pub proto: String,
    pub inside: String,
    pub translated: String,
    pub remote: String,
    pub state: String,
    pub expires_in_secs: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    /// A published flow: its front end (`80/tcp`, `10.96.0.10:80/tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<String>,
    /// A published flow: the backend's port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl Nat {
    /// The live flows, for `nat show`, sorted.
    pub fn flows(&self, now: Millis) -> Vec<FlowView> {
        let mut v = Vec::new();
        let mut at = 0;
        while let Some(next) = self.flows_page(at, usize::MAX, now, |r| v.push(r)) {
            at = next;
        }
        v.sort_by(|a, b| (&a.proto, &a.inside, &a.remote).cmp(&(&b.proto, &b.inside, &b.remote)));
        v
    }

    /// Up to `max` live flows from table slot `from` on, in slot order, to
    /// `emit`; returns the slot to go on from, `None` at the end. For
    /// `nat show` in chunks between batches of frames: flows that come or
    /// go meanwhile may or may not be listed, none twice.
    pub fn flows_page(
        &self,
        from: usize,
        max: usize,
        now: Millis,
        mut emit: impl FnMut(FlowView),
    ) -> Option<usize> {
        let ext = self.ext_ip.map(Ipv4Addr::from);
        let ext = ext.map_or_else(|| "-".to_string(), |a| a.to_string());
        let gw = Ipv4Addr::from(self.lan_ip).to_string();
        let mut n = 0;
        for (i, f) in self.flows.iter().enumerate().skip(from) {
            if n == max {
                return Some(i);
            }
            if !(f.live && f.expires > now) {
                continue;
            }
            n += 1;
            emit({
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
                let ip = |a: [u8; 4]| Ipv4Addr::from(a).to_string();
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
                FlowView {
                    proto: proto.into(),
                    inside: format!("{}:{}", ip(f.inside_ip), f.inside_port),
                    translated: format!("{}:{}", if f.lan { &gw } else { &ext }, f.ext_port),
                    remote: format!("{}:{}", ip(f.remote_ip), f.remote_port),
                    state: state.into(),
                    expires_in_secs: (f.expires - now).div_ceil(1000),
                    packets_out: f.packets_out,
                    packets_in: f.packets_in,
                    front,
                    backend,
                }
            });
        }
        None
    }
}
