//! What the NAT would do with a packet, for `vswitchctl trace`: the same
//! [`Nat::classify`] the datapath acts on, described with typed endpoints.

use super::{Class, Dir, Fit, FlowKey, Nat, NatDrop};
use crate::switch::Millis;
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

pub(super) fn proto_name(p: u8) -> &'static str {
    match p {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        _ => "icmp",
    }
}

/// What translating a packet would do ([`Nat::peek`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    /// A packet of an existing flow; `ext` is its external end. `fit`: a
    /// TCP segment inside the window (`Learn`), outside it (`Ignore`:
    /// forwarded, changes nothing), or a SYN starting the flow again.
    Existing {
        dir: Dir,
        key: FlowKey,
        ext: SocketAddrV4,
        expires_in_secs: u64,
        fit: Fit,
    },
    /// A new flow would be created. `kept`: the inside port stays (the
    /// inbound key it makes is free); otherwise a free port of the range.
    New {
        key: FlowKey,
        ext_ip: Ipv4Addr,
        kept: bool,
        range: (u16, u16),
    },
    /// A new connection to a published front end would go to a backend
    /// (round-robin over the live ones). `lan`: from a namespace (hairpin:
    /// the source becomes `gateway` too).
    Publish {
        key: FlowKey,
        front: String,
        backend: String,
        to: SocketAddrV4,
        lan: bool,
        gateway: Ipv4Addr,
    },
    /// A later fragment follows its first fragment's flow.
    LaterFragment { key: FlowKey },
    /// An ICMP error about a flow: its quoted header is translated too.
    IcmpError { key: FlowKey },
}

impl Peek {
    /// The inside end the packet is (or would be) translated to or from.
    pub fn inside(&self) -> SocketAddrV4 {
        match self {
            Peek::Existing { key, .. }
            | Peek::New { key, .. }
            | Peek::LaterFragment { key }
            | Peek::IcmpError { key } => key.inside,
            Peek::Publish { to, .. } => *to,
        }
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            proto_name(self.proto),
            self.inside,
            self.remote
        )
    }
}

impl fmt::Display for Peek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tcp = |fit: &Fit| match fit {
            Fit::Learn => "",
            Fit::Ignore => {
                "; TCP segment outside the window (or with a wrong checksum): forwarded, changes nothing"
            }
            Fit::Restart => "; a SYN for a new connection: the flow starts again",
        };
        match self {
            Peek::Existing {
                dir: Dir::Out,
                key,
                ext,
                expires_in_secs,
                fit,
            } => write!(
                f,
                "existing flow {key}, translated to {ext} ({expires_in_secs} s left){}",
                tcp(fit)
            ),
            Peek::Existing {
                dir: Dir::In,
                key,
                ext,
                expires_in_secs,
                fit,
            } => write!(
                f,
                "existing flow {} {} -> {ext}, translated to {} ({expires_in_secs} s left){}",
                proto_name(key.proto),
                key.remote,
                key.inside,
                tcp(fit)
            ),
            Peek::New {
                key,
                ext_ip,
                kept: true,
                ..
            } => write!(
                f,
                "new flow {key} would be created, translated to {ext_ip}:{} (port kept)",
                key.inside.port()
            ),
            Peek::New {
                key,
                ext_ip,
                kept: false,
                range: (lo, hi),
            } => write!(
                f,
                "new flow {key} would be created, translated to {ext_ip}:<a free port of {lo}-{hi}> ({} is taken for that remote end)",
                key.inside.port()
            ),
            Peek::Publish {
                key,
                front,
                backend,
                to,
                lan,
                gateway,
            } => {
                write!(
                    f,
                    "new connection {key} to published {front}: backend {backend} ({to}), the next live one in turn (round-robin); destination rewritten to {to}"
                )?;
                if *lan {
                    write!(f, ", source to the gateway {gateway} (hairpin)")?;
                }
                Ok(())
            }
            Peek::LaterFragment { key } => write!(
                f,
                "a later fragment of flow {key}: follows its first fragment's translation"
            ),
            Peek::IcmpError { key } => write!(
                f,
                "an ICMP error about flow {key}: translated with its quoted header"
            ),
        }
    }
}

impl Nat {
    /// What translating packet `b` in direction `dir` would do, without
    /// doing it: [`Nat::classify`], described.
    pub fn peek(&self, b: &[u8], dir: Dir, now: Millis) -> Result<Peek, NatDrop> {
        let class = self.classify(b, dir, false, now)?;
        Ok(self.describe(&class, dir, now))
    }

    /// A [`Class`] in words and typed endpoints.
    pub fn describe(&self, class: &Class, dir: Dir, now: Millis) -> Peek {
        match *class {
            Class::Flow { idx, seg } => {
                let f = &self.flows[idx as usize];
                let ext_ip = self.ext_ip.map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from);
                Peek::Existing {
                    dir,
                    key: self.key_of(idx),
                    ext: SocketAddrV4::new(ext_ip, f.ext_port),
                    expires_in_secs: f.expires.saturating_sub(now).div_ceil(1000),
                    fit: seg.fit,
                }
            }
            Class::New { key, .. } => {
                let kept = !self.in_map.contains_key(&super::in_key(
                    key.proto,
                    key.remote.ip().octets(),
                    key.remote.port(),
                    key.inside.port(),
                ));
                Peek::New {
                    key,
                    ext_ip: self.ext_ip.map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from),
                    kept,
                    range: (self.cfg.port_min, self.cfg.port_max),
                }
            }
            Class::Publish { key, pick, lan, .. } => {
                let (front, backend) = self.services.names(pick.front, pick.backend);
                Peek::Publish {
                    key,
                    front,
                    backend,
                    to: pick.to,
                    lan,
                    gateway: Ipv4Addr::from(self.lan_ip),
                }
            }
            Class::Fragment { idx } => Peek::LaterFragment {
                key: self.key_of(idx),
            },
            Class::IcmpError { idx, .. } => Peek::IcmpError {
                key: self.key_of(idx),
            },
        }
    }
}
