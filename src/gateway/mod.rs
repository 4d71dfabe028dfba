//! The gateway port: the switch's own IPv4 host and router, toward an
//! optional uplink.
//!
//! It sits on the switch as port 0 with its own MAC and the `--gateway`
//! address. Frames in, an [`Outbox`] of frames out (to the LAN, through the
//! switch, or to the uplink); time is a parameter. Inside:
//!
//! * a smoltcp host stack per side ([`stack`]): on the LAN it owns the
//!   gateway address (and the uplink address, so namespaces can ping it),
//!   on the uplink the uplink address; each answers ARP and ICMP echo, the
//!   uplink one runs the DHCPv4 client when asked;
//! * the router (this file): connected LAN subnet, the uplink's subnet and a
//!   default route via the uplink gateway; TTL decrement with an incremental
//!   header checksum; ICMP Time Exceeded, Destination Net Unreachable and
//!   Fragmentation Needed from the gateway's own address; packets without DF
//!   that exceed the egress MTU are fragmented (RFC 791);
//! * neighbour caches for both sides ([`neigh`]), holding a few packets
//!   while an address is resolved;
//! * masquerade toward the uplink ([`nat`]), unless `--no-nat`;
//! * a DNS server for the port names on the gateway address (`dns.rs`),
//!   forwarding the rest upstream from the uplink address, unless
//!   `--no-dns`.
//!
//! Every packet the gateway refuses is counted under a [`GwDrop`] reason.

mod act;
mod classify;
mod dns;
mod drops;
mod icmp;
pub mod nat;
pub mod neigh;
mod offload;
mod outbox;
pub mod stack;
mod trace;
mod uplink;

pub use classify::{Forward, IcmpError, Local, Verdict};
pub use dns::{DnsStats, DnsView};
pub use drops::{GatewayStats, GwDrop};
pub use outbox::{Egress, Outbox};

use crate::switch::Millis;
use crate::wire::MacAddr;
use crate::wire::ipv4::Ipv4Net;
use nat::{Nat, NatConfig};
use neigh::NeighCache;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{IpCidr, Ipv4Cidr};
use stack::Stack;
use std::net::Ipv4Addr;

use crate::wire::ETH_HEADER_LEN as ETH;
use crate::wire::build::{ETHERTYPE_ARP, ETHERTYPE_IPV4};
/// ICMP errors quote at most this much so the error fits in 576 bytes.
const ICMP_QUOTE_MAX: usize = 576 - 20 - 8;
/// ICMP errors sent per second at most (a token bucket, like Linux's
/// icmp_ratelimit).
const ICMP_RATE: u32 = 1000;
/// ICMP errors per second to one destination at most (its own bucket, as
/// Linux's icmp_ratelimit keeps one per peer): one host drawing errors
/// cannot use up another's Time Exceeded or Fragmentation Needed.
const ICMP_RATE_PER_DEST: u32 = 100;
/// Destinations with a bucket at most; beyond, the oldest bucket goes.
const ICMP_DESTS: usize = 1024;
/// The DHCP client's retransmissions: DISCOVER every 2 s while no server
/// answers, REQUEST after 2 s (doubling every 2 tries), as dhclient and
/// systemd-networkd retry within seconds (RFC 2131 §4.1); smoltcp's default
/// waits 10 s, so one lost DISCOVER cost 10 s.
fn dhcp_retry() -> dhcpv4::RetryConfig {
    let mut r = dhcpv4::RetryConfig::default();
    r.discover_timeout = smoltcp::time::Duration::from_secs(2);
    r.initial_request_timeout = smoltcp::time::Duration::from_secs(2);
    r
}

/// NAT slots swept per poll.
const NAT_SWEEP: usize = 4096;

/// How the uplink gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WanAddr {
    Static(Ipv4Addr, u8),
    Dhcp,
}

#[derive(Clone, Debug)]
pub struct WanConfig {
    pub ifname: String,
    pub mac: MacAddr,
    pub addr: WanAddr,
    /// Next hop for the default route (DHCP supplies one when `Dhcp`).
    pub gw: Option<Ipv4Addr>,
    pub mtu: usize,
}

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub lan_mac: MacAddr,
    pub lan_ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub lan_mtu: usize,
    pub wan: Option<WanConfig>,
    /// `None`: route without translation (`--no-nat`).
    pub nat: Option<NatConfig>,
}

/// One row of `vswitchctl routes`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RouteView {
    pub destination: String,
    pub via: Option<Ipv4Addr>,
    pub dev: String,
    pub src: Option<Ipv4Addr>,
}

struct Wan {
    cfg: WanConfig,
    stack: Stack,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    addr: Option<(Ipv4Addr, u8)>,
    gw: Option<Ipv4Addr>,
    neigh: NeighCache,
}

pub struct Gateway {
    cfg: GatewayConfig,
    lan: Stack,
    lan_sockets: SocketSet<'static>,
    lan_neigh: NeighCache,
    wan: Option<Wan>,
    nat: Option<Nat>,
    stats: GatewayStats,
    ip_id: u16,
    icmp_tokens: u32,
    icmp_refill: Millis,
    /// Per destination: (tokens left, when refilled).
    icmp_dest: crate::hash::FastMap<u32, (u32, Millis)>,
    /// Events for the log (address gained or lost, NAT table full),
    /// drained by the datapath.
    events: Vec<GwEvent>,
    /// Rate limit for the "NAT table full" event: last time logged, and
    /// refusals since.
    nat_full_logged: Option<Millis>,
    nat_full_since: u64,
    /// The DNS server ([`Gateway::enable_dns`]; `None` with `--no-dns`).
    dns: Option<dns::Dns>,
}

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GwEvent {
    pub warn: bool,
    pub msg: String,
}

/// At most one "NAT table full" log line per this many milliseconds.
const NAT_FULL_LOG_MS: Millis = 10_000;

/// Which side a packet arrived on or leaves by.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Lan,
    Wan,
}

impl From<Side> for Egress {
    fn from(s: Side) -> Egress {
        match s {
            Side::Lan => Egress::Lan,
            Side::Wan => Egress::Wan,
        }
    }
}

fn same_net(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    Ipv4Net::of(a, prefix_len).contains(b)
}

impl Gateway {
    /// A gateway; its gratuitous ARP (and DHCP discovery) come out of the
    /// first [`Gateway::poll`].
    pub fn new(cfg: GatewayConfig, now: Millis) -> Gateway {
        let seed = cfg.lan_mac.as_u64() ^ 0x5eed;
        let mut lan = Stack::new(cfg.lan_mac, cfg.lan_mtu, seed, now);
        lan.iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(Ipv4Cidr::new(
                cfg.lan_ip,
                cfg.subnet.prefix_len,
            )));
        });
        let wan = cfg.wan.clone().map(|w| {
            let mut stack = Stack::new(w.mac, w.mtu, seed ^ 0xa5a5, now);
            let mut sockets = SocketSet::new(Vec::new());
            let dhcp = (w.addr == WanAddr::Dhcp).then(|| {
                let mut d = dhcpv4::Socket::new();
                d.set_retry_config(dhcp_retry());
                sockets.add(d)
            });
            let addr = match w.addr {
                WanAddr::Static(a, l) => Some((a, l)),
                WanAddr::Dhcp => None,
            };
            if let Some((a, l)) = addr {
                stack.iface.update_ip_addrs(|v| {
                    let _ = v.push(IpCidr::Ipv4(Ipv4Cidr::new(a, l)));
                });
                if let Some(gw) = w.gw {
                    let _ = stack.iface.routes_mut().add_default_ipv4_route(gw);
                }
            }
            Wan {
                gw: w.gw,
                cfg: w,
                stack,
                sockets,
                dhcp,
                addr,
                neigh: NeighCache::new(),
            }
        });
        let ext = wan.as_ref().and_then(|w| w.addr.map(|a| a.0));
        let nat = match (&wan, cfg.nat) {
            (Some(_), Some(nc)) => {
                let mut n = Nat::new(nc, ext);
                n.set_lan_ip(cfg.lan_ip);
                Some(n)
            }
            _ => None,
        };
        let mut g = Gateway {
            cfg,
            lan,
            lan_sockets: SocketSet::new(Vec::new()),
            lan_neigh: NeighCache::new(),
            wan,
            nat,
            stats: GatewayStats::default(),
            ip_id: (seed as u16) | 1,
            icmp_tokens: ICMP_RATE,
            icmp_refill: now,
            icmp_dest: Default::default(),
            events: Vec::new(),
            nat_full_logged: None,
            nat_full_since: 0,
            dns: None,
        };
        if let Some(a) = ext {
            g.set_lan_alias(Some(a));
        }
        g
    }

    pub fn mac(&self) -> MacAddr {
        self.cfg.lan_mac
    }
    pub fn lan_ip(&self) -> Ipv4Addr {
        self.cfg.lan_ip
    }
    pub fn wan_mac(&self) -> Option<MacAddr> {
        self.wan.as_ref().map(|w| w.cfg.mac)
    }
    pub fn wan_addr(&self) -> Option<(Ipv4Addr, u8)> {
        self.wan.as_ref().and_then(|w| w.addr)
    }
    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }
    pub fn nat(&self) -> Option<&Nat> {
        self.nat.as_ref()
    }
    pub fn nat_mut(&mut self) -> Option<&mut Nat> {
        self.nat.as_mut()
    }
    pub fn take_events(&mut self) -> Vec<GwEvent> {
        std::mem::take(&mut self.events)
    }

    fn event(&mut self, warn: bool, msg: String) {
        self.events.push(GwEvent { warn, msg });
    }

    /// Counts a new flow refused for want of room (`who`: the inside
    /// address, when it was refused for holding its whole share) and logs
    /// it at most every 10 s.
    fn nat_full(&mut self, now: Millis, who: Option<Ipv4Addr>) {
        self.nat_full_since += 1;
        let due = self
            .nat_full_logged
            .is_none_or(|t| now.saturating_sub(t) >= NAT_FULL_LOG_MS);
        if due {
            let cfg = self.nat.as_ref().map(|n| *n.config()).unwrap_or_default();
            let n = std::mem::take(&mut self.nat_full_since);
            self.nat_full_logged = Some(now);
            let msg = match who {
                None => format!(
                    "NAT table full ({} flows, none unreplied to make room): refused {n} new flow(s); existing flows are untouched",
                    cfg.max_flows
                ),
                Some(ip) => format!(
                    "NAT: the port at {ip} holds its whole share ({} flows, --nat-max-per-port): refused {n} new flow(s) since the last report",
                    cfg.max_per_inside
                ),
            };
            self.event(true, msg);
        }
    }

    fn drop(&mut self, why: GwDrop) {
        self.stats.drops.add(why);
    }

    /// Pins a port's assigned address to its MAC in the gateway's
    /// neighbour cache (see [`neigh::NeighCache::pin`]).
    pub fn pin_inside(&mut self, ip: Ipv4Addr, mac: MacAddr) {
        if self.cfg.subnet.contains(ip) && ip != self.cfg.lan_ip && mac.is_valid_source() {
            // Packets held while it was unresolved are dropped: its port
            // was not there when they came.
            drop(self.lan_neigh.pin(ip, mac));
        }
    }

    /// Publishes a front end (`--publish`, `publish add`); `addr_of` gives
    /// a backend port's address. Refused, changing nothing, for a front end
    /// on the gateway's own address or inside the subnet, one published
    /// already, or with `--no-nat`. Without an uplink the NAT table is made
    /// for it (service addresses work without one).
    pub fn publish(
        &mut self,
        spec: &nat::PublishSpec,
        addr_of: impl Fn(&str) -> Option<Ipv4Addr>,
    ) -> Result<(), String> {
        let Some(nc) = self.cfg.nat else {
            return Err("publishing needs the NAT: it is off (--no-nat)".into());
        };
        nat::service::check_front(&spec.front, self.cfg.subnet, self.cfg.lan_ip)?;
        let lan_ip = self.cfg.lan_ip;
        let ext = self.wan_addr().map(|a| a.0);
        self.nat
            .get_or_insert_with(|| {
                let mut n = Nat::new(nc, ext);
                n.set_lan_ip(lan_ip);
                n
            })
            .publish(spec, addr_of)
    }

    /// Withdraws a front end and ends its flows.
    pub fn unpublish(&mut self, key: &nat::FrontKey) -> Result<usize, String> {
        self.nat
            .as_mut()
            .and_then(|n| n.unpublish(key))
            .ok_or_else(|| format!("{key} is not published"))
    }

    /// Keeps the NAT's flow events while someone watches.
    pub fn nat_watch(&mut self, on: bool) {
        if let Some(n) = self.nat.as_mut() {
            n.set_watch(on);
        }
    }

    /// The NAT flows created and ended since the last call (while watched).
    pub fn nat_events(&mut self) -> Vec<nat::FlowEvent> {
        self.nat
            .as_mut()
            .map(|n| n.take_events())
            .unwrap_or_default()
    }

    /// `publish show`.
    pub fn publish_view(&self) -> Vec<nat::FrontView> {
        self.nat
            .as_ref()
            .map_or_else(Vec::new, |n| n.publish_view())
    }

    /// Port `name` is there with address `ip` (`None`: gone): backends on
    /// it join or leave the rotation.
    pub fn port_addr(&mut self, name: &str, ip: Option<Ipv4Addr>) {
        if let Some(n) = self.nat.as_mut() {
            n.set_port_addr(name, ip);
        }
    }

    /// Forgets the LAN neighbour and NAT flows of an inside address.
    pub fn forget_inside(&mut self, ip: Ipv4Addr) {
        self.lan_neigh.forget(ip);
        if let Some(n) = self.nat.as_mut() {
            n.forget_inside(ip);
        }
    }

    /// Forgets every LAN neighbour entry at `mac` (a removed port's), so
    /// none stays REACHABLE after its address moves to another port.
    pub fn forget_lan_mac(&mut self, mac: MacAddr) -> usize {
        self.lan_neigh.forget_mac(mac)
    }

    pub(crate) fn side_mac(&self, s: Side) -> MacAddr {
        match s {
            Side::Lan => self.cfg.lan_mac,
            Side::Wan => self.wan.as_ref().map_or(MacAddr::ZERO, |w| w.cfg.mac),
        }
    }

    pub(crate) fn side_ip(&self, s: Side) -> Option<Ipv4Addr> {
        match s {
            Side::Lan => Some(self.cfg.lan_ip),
            Side::Wan => self.wan.as_ref().and_then(|w| w.addr.map(|a| a.0)),
        }
    }

    pub(crate) fn side_mtu(&self, s: Side) -> usize {
        match s {
            Side::Lan => self.cfg.lan_mtu,
            Side::Wan => self.wan.as_ref().map_or(0, |w| w.cfg.mtu),
        }
    }
}

// The tests below use `super::*` for the wire helpers they build frames
// with.
#[cfg(test)]
use crate::reason::Reason;
#[cfg(test)]
use crate::wire::{
    ipv4::{
        self, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED, Ipv4Hdr, PROTO_ICMP,
        PROTO_TCP, PROTO_UDP,
    },
    vnet::{VNET_HDR_LEN, VnetHdr},
};
#[cfg(test)]
use nat::NatDrop;

#[cfg(test)]
mod agree_tests;
#[cfg(test)]
mod dhcp_tests;
#[cfg(test)]
mod dns_tests;
#[cfg(test)]
mod tests;
