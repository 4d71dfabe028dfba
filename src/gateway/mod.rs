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
//! * masquerade toward the uplink ([`nat`]), unless `--no-nat`.
//!
//! Every packet the gateway refuses is counted under a [`GwDrop`] reason.

pub mod nat;
pub mod neigh;
pub mod stack;

use crate::switch::Millis;
use crate::wire::MacAddr;
use crate::wire::ipv4::{
    self, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED, Ipv4Hdr, Ipv4Net, PROTO_ICMP,
    PROTO_TCP, PROTO_UDP, icmp_is_error,
};
use crate::wire::vnet::{GSO_ECN, GSO_TCPV4};
use crate::wire::vnet::{VNET_HDR_LEN, VnetHdr};
use nat::{Nat, NatConfig, NatDrop};
use neigh::{NeighCache, Resolve};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{IpCidr, Ipv4Cidr};
use stack::Stack;
use std::net::Ipv4Addr;

const ETH: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
/// ICMP errors quote at most this much so the error fits in 576 bytes.
const ICMP_QUOTE_MAX: usize = 576 - 20 - 8;
/// ICMP errors sent per second at most (a token bucket, like Linux's
/// icmp_ratelimit).
const ICMP_RATE: u32 = 1000;
/// NAT slots swept per poll.
const NAT_SWEEP: usize = 4096;

/// Where a frame from the gateway goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Into the switch, from the gateway port.
    Lan,
    /// Out of the uplink.
    Wan,
}

/// Frames the gateway produced, in one reusable buffer. Each frame is
/// stored behind an all-zero virtio-net header, so it can be written to a
/// port that takes one without another copy.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// (where, offset of the header, frame length)
    frames: Vec<(Egress, usize, usize)>,
}

impl Outbox {
    pub fn push(&mut self, eg: Egress, frame: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; VNET_HDR_LEN]);
        self.buf.extend_from_slice(frame);
        self.frames.push((eg, start, frame.len()));
    }
    /// Pushes a frame behind the given virtio-net header (offload work the
    /// receiver's kernel will do).
    pub fn push_with_hdr(&mut self, eg: Egress, hdr: &VnetHdr, frame: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; VNET_HDR_LEN]);
        hdr.write(&mut self.buf[start..]);
        self.buf.extend_from_slice(frame);
        self.frames.push((eg, start, frame.len()));
    }
    /// The last frame (without its header), for rewriting in place.
    fn last_mut(&mut self) -> &mut [u8] {
        let (_, s, l) = *self.frames.last().expect("outbox not empty");
        &mut self.buf[s + VNET_HDR_LEN..s + VNET_HDR_LEN + l]
    }
    fn last(&self) -> &[u8] {
        let (_, s, l) = *self.frames.last().expect("outbox not empty");
        &self.buf[s + VNET_HDR_LEN..s + VNET_HDR_LEN + l]
    }
    fn pop(&mut self) {
        if let Some((_, s, _)) = self.frames.pop() {
            self.buf.truncate(s);
        }
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    /// Frame `i`, behind its (all-zero) virtio-net header, and where it goes.
    pub fn get(&self, i: usize) -> (Egress, &[u8]) {
        let (eg, s, l) = self.frames[i];
        (eg, &self.buf[s..s + VNET_HDR_LEN + l])
    }
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
    }
}

/// Why the gateway dropped a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GwDrop {
    Malformed,
    BadChecksum,
    /// For a MAC or address that is not the gateway's, or a protocol it
    /// does not route (IPv6).
    NotForUs,
    /// A LAN source outside the subnet, or a LAN source arriving from the
    /// uplink.
    Martian,
    NoRoute,
    TtlExceeded,
    FragNeeded,
    /// Larger than the egress MTU without DF, but with IP options (which
    /// the gateway does not fragment).
    TooBig,
    /// Neighbour resolution failed or its hold queue was full.
    NoNeighbour,
    /// The uplink is not configured (no --uplink, or no address yet).
    NoUplink,
    Nat(NatDrop),
}

impl GwDrop {
    pub const BASE: [GwDrop; 10] = [
        GwDrop::Malformed,
        GwDrop::BadChecksum,
        GwDrop::NotForUs,
        GwDrop::Martian,
        GwDrop::NoRoute,
        GwDrop::TtlExceeded,
        GwDrop::FragNeeded,
        GwDrop::TooBig,
        GwDrop::NoNeighbour,
        GwDrop::NoUplink,
    ];
    pub const COUNT: usize = Self::BASE.len() + NatDrop::ALL.len();

    fn index(self) -> usize {
        match self {
            GwDrop::Nat(n) => {
                Self::BASE.len() + NatDrop::ALL.iter().position(|x| *x == n).unwrap_or(0)
            }
            b => Self::BASE.iter().position(|x| *x == b).unwrap_or(0),
        }
    }

    /// The reason's counter name.
    pub fn name(self) -> &'static str {
        Self::name_of(self.index())
    }

    pub fn name_of(index: usize) -> &'static str {
        if index >= Self::BASE.len() {
            return NatDrop::ALL[index - Self::BASE.len()].name();
        }
        match Self::BASE[index] {
            GwDrop::Malformed => "malformed",
            GwDrop::BadChecksum => "bad_ip_checksum",
            GwDrop::NotForUs => "not_for_us",
            GwDrop::Martian => "martian_source",
            GwDrop::NoRoute => "no_route",
            GwDrop::TtlExceeded => "ttl_exceeded",
            GwDrop::FragNeeded => "frag_needed",
            GwDrop::TooBig => "too_big_options",
            GwDrop::NoNeighbour => "no_neighbour",
            GwDrop::NoUplink => "no_uplink",
            GwDrop::Nat(_) => unreachable!(),
        }
    }
}

/// Gateway counters.
#[derive(Clone, Debug, Default)]
pub struct GatewayStats {
    /// Packets routed LAN -> uplink and uplink -> LAN.
    pub routed_out: u64,
    pub routed_in: u64,
    /// Packets routed within the LAN (hairpin through the gateway).
    pub routed_lan: u64,
    /// Frames handed to the gateway's own stacks.
    pub to_stack: u64,
    pub icmp_errors_sent: u64,
    pub icmp_errors_suppressed: u64,
    pub arp_requests_sent: u64,
    /// Packets the gateway fragmented to fit an egress MTU.
    pub fragmented: u64,
    pub drops: [u64; GwDrop::COUNT],
}

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
    /// Events for the log (address gained or lost, NAT table full),
    /// drained by the datapath.
    events: Vec<GwEvent>,
    /// Rate limit for the "NAT table full" event: last time logged, and
    /// refusals since.
    nat_full_logged: Option<Millis>,
    nat_full_since: u64,
}

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GwEvent {
    pub warn: bool,
    pub msg: String,
}

/// At most one "NAT table full" log line per this many milliseconds.
const NAT_FULL_LOG_MS: Millis = 10_000;

/// Why a routed packet cannot go on.
enum Refusal {
    Ttl,
    FragNeeded(usize),
    TooBig(usize),
}

/// Which side a packet arrived on or leaves by.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
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

fn ip4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// The IPv4 header of an Ethernet frame, if sound and its checksum right;
/// otherwise the drop reason. Shared by routing and trace.
fn sound_ipv4(frame: &[u8]) -> Result<Ipv4Hdr, GwDrop> {
    let h = frame
        .get(ETH..)
        .and_then(Ipv4Hdr::parse)
        .ok_or(GwDrop::Malformed)?;
    if !ipv4::ip_checksum_ok(&frame[ETH..], h.ihl) {
        return Err(GwDrop::BadChecksum);
    }
    Ok(h)
}

fn same_net(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    let mask = Ipv4Net {
        addr: a,
        prefix_len,
    }
    .mask();
    (u32::from(a) ^ u32::from(b)) & mask == 0
}

fn is_special(a: Ipv4Addr) -> bool {
    a.is_broadcast() || a.is_multicast() || a.is_unspecified()
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
            let dhcp = (w.addr == WanAddr::Dhcp).then(|| sockets.add(dhcpv4::Socket::new()));
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
            (Some(_), Some(nc)) => Some(Nat::new(nc, ext)),
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
            events: Vec::new(),
            nat_full_logged: None,
            nat_full_since: 0,
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

    /// Counts a refused new flow and logs it at most every 10 s.
    fn nat_full(&mut self, now: Millis) {
        self.nat_full_since += 1;
        let due = self
            .nat_full_logged
            .is_none_or(|t| now.saturating_sub(t) >= NAT_FULL_LOG_MS);
        if due {
            let max = self.nat.as_ref().map_or(0, |n| n.config().max_flows);
            let n = std::mem::take(&mut self.nat_full_since);
            self.nat_full_logged = Some(now);
            self.event(
                true,
                format!("NAT table full ({max} flows): refused {n} new flow(s); existing flows are untouched"),
            );
        }
    }

    fn drop(&mut self, why: GwDrop) {
        self.stats.drops[why.index()] += 1;
    }

    /// The uplink address is also an address of the LAN stack, so
    /// namespaces can ping it.
    fn set_lan_alias(&mut self, a: Option<Ipv4Addr>) {
        let lan_cidr = IpCidr::Ipv4(Ipv4Cidr::new(self.cfg.lan_ip, self.cfg.subnet.prefix_len));
        self.lan.iface.update_ip_addrs(|v| {
            v.clear();
            let _ = v.push(lan_cidr);
            if let Some(a) = a {
                let _ = v.push(IpCidr::Ipv4(Ipv4Cidr::new(a, 32)));
            }
        });
    }

    /// Whether a packet from the LAN to `dst` is for the gateway's own stack
    /// (its addresses, or a broadcast/multicast), not to be routed. Shared by
    /// forwarding, offloaded forwarding and trace.
    fn is_local_lan(&self, dst: Ipv4Addr) -> bool {
        dst == self.cfg.lan_ip
            || Some(dst) == self.wan_addr().map(|a| a.0)
            || is_special(dst)
            || dst == self.cfg.subnet.broadcast()
    }

    /// The routing table, for `vswitchctl routes`.
    pub fn routes(&self) -> Vec<RouteView> {
        let mut v = vec![RouteView {
            destination: self.cfg.subnet.to_string(),
            via: None,
            dev: "lan".into(),
            src: Some(self.cfg.lan_ip),
        }];
        if let Some(w) = &self.wan
            && let Some((a, l)) = w.addr
        {
            let mask = Ipv4Net {
                addr: a,
                prefix_len: l,
            }
            .mask();
            let net = Ipv4Net {
                addr: Ipv4Addr::from(u32::from(a) & mask),
                prefix_len: l,
            };
            v.push(RouteView {
                destination: net.to_string(),
                via: None,
                dev: format!("uplink {}", w.cfg.ifname),
                src: Some(a),
            });
            if let Some(gw) = w.gw {
                v.push(RouteView {
                    destination: "default".into(),
                    via: Some(gw),
                    dev: format!("uplink {}", w.cfg.ifname),
                    src: Some(a),
                });
            }
        }
        v
    }

    pub fn neighbours(&self, now: Millis) -> Vec<(String, neigh::NeighView)> {
        let mut v: Vec<_> = self
            .lan_neigh
            .entries(now)
            .into_iter()
            .map(|n| ("lan".to_string(), n))
            .collect();
        if let Some(w) = &self.wan {
            v.extend(
                w.neigh
                    .entries(now)
                    .into_iter()
                    .map(|n| ("uplink".to_string(), n)),
            );
        }
        v
    }

    /// Forgets the LAN neighbour and NAT flows of an inside address.
    pub fn forget_inside(&mut self, ip: Ipv4Addr) {
        if let Some(n) = self.nat.as_mut() {
            n.forget_inside(ip);
        }
    }

    /// Where a packet to `dst` goes: side and next hop.
    fn route(&self, dst: Ipv4Addr) -> Option<(Side, Ipv4Addr)> {
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

    fn side_mac(&self, s: Side) -> MacAddr {
        match s {
            Side::Lan => self.cfg.lan_mac,
            Side::Wan => self.wan.as_ref().map_or(MacAddr::ZERO, |w| w.cfg.mac),
        }
    }

    fn side_ip(&self, s: Side) -> Option<Ipv4Addr> {
        match s {
            Side::Lan => Some(self.cfg.lan_ip),
            Side::Wan => self.wan.as_ref().and_then(|w| w.addr.map(|a| a.0)),
        }
    }

    fn side_mtu(&self, s: Side) -> usize {
        match s {
            Side::Lan => self.cfg.lan_mtu,
            Side::Wan => self.wan.as_ref().map_or(0, |w| w.cfg.mtu),
        }
    }

    // ---- input ------------------------------------------------------------

    /// A frame from the switch that the gateway port receives (addressed to
    /// its MAC, or flooded).
    pub fn handle_lan(&mut self, frame: &[u8], now: Millis, out: &mut Outbox) {
        if frame.len() < ETH {
            return self.drop(GwDrop::Malformed);
        }
        let dst = MacAddr::from_slice(&frame[0..6]);
        let to_us = dst == self.cfg.lan_mac;
        if !to_us && dst != MacAddr::BROADCAST {
            return; // a flooded frame for someone else
        }
        match ipv4::get16(frame, 12) {
            ETHERTYPE_ARP => {
                self.snoop_arp(Side::Lan, frame, now, out);
                self.deliver_local(Side::Lan, frame, now, out);
            }
            ETHERTYPE_IPV4 if to_us => self.ip_from_lan(frame, now, out),
            ETHERTYPE_IPV4 => self.deliver_local(Side::Lan, frame, now, out),
            _ if to_us => self.drop(GwDrop::NotForUs),
            _ => {}
        }
    }

    /// A (whole, checksummed, MTU-sized) frame from the uplink.
    pub fn handle_wan(&mut self, frame: &[u8], now: Millis, out: &mut Outbox) {
        let Some(wmac) = self.wan_mac() else { return };
        if frame.len() < ETH {
            return self.drop(GwDrop::Malformed);
        }
        let dst = MacAddr::from_slice(&frame[0..6]);
        if dst != wmac && dst != MacAddr::BROADCAST {
            return; // promiscuous: traffic between other hosts
        }
        match ipv4::get16(frame, 12) {
            ETHERTYPE_ARP => {
                self.snoop_arp(Side::Wan, frame, now, out);
                self.deliver_local(Side::Wan, frame, now, out);
            }
            ETHERTYPE_IPV4 => self.ip_from_wan(frame, now, out),
            _ if dst == wmac => self.drop(GwDrop::NotForUs),
            _ => {}
        }
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
            }
        }
    }

    /// Learns the sender of an ARP packet (request or reply) if it is on the
    /// side's subnet, and sends whatever was waiting for it.
    fn snoop_arp(&mut self, side: Side, frame: &[u8], now: Millis, out: &mut Outbox) {
        let a = &frame[ETH..];
        if a.len() < 28
            || ipv4::get16(a, 0) != 1
            || ipv4::get16(a, 2) != ETHERTYPE_IPV4
            || a[4] != 6
            || a[5] != 4
        {
            return self.drop(GwDrop::Malformed);
        }
        let sha = MacAddr::from_slice(&a[8..14]);
        let spa = ip4(&a[14..18]);
        let on_link = match side {
            Side::Lan => self.cfg.subnet.contains(spa),
            Side::Wan => self.wan_addr().is_some_and(|(ip, l)| same_net(ip, spa, l)),
        };
        if !on_link || spa.is_unspecified() {
            return;
        }
        let held = match side {
            Side::Lan => self.lan_neigh.learn(spa, sha, now),
            Side::Wan => match self.wan.as_mut() {
                Some(w) => w.neigh.learn(spa, sha, now),
                None => return,
            },
        };
        for mut f in held {
            f[0..6].copy_from_slice(&sha.to_bytes());
            out.push(side.into(), &f);
        }
    }

    /// The frame's IPv4 header if it is sound and its checksum right;
    /// otherwise the drop is counted.
    fn checked_ipv4(&mut self, frame: &[u8]) -> Option<Ipv4Hdr> {
        sound_ipv4(frame).map_err(|why| self.drop(why)).ok()
    }

    fn ip_from_lan(&mut self, frame: &[u8], now: Millis, out: &mut Outbox) {
        let Some(h) = self.checked_ipv4(frame) else {
            return;
        };
        let dst = Ipv4Addr::from(h.dst);
        let src = Ipv4Addr::from(h.src);
        let wan_ip = self.wan_addr().map(|a| a.0);
        if self.is_local_lan(dst) {
            return self.deliver_local(Side::Lan, frame, now, out);
        }
        if !self.cfg.subnet.contains(src) {
            return self.drop(GwDrop::Martian);
        }
        let Some((side, next_hop)) = self.route(dst) else {
            self.icmp_error(Side::Lan, frame, ICMP_DEST_UNREACH, 0, 0, now, out);
            return self.drop(GwDrop::NoRoute);
        };
        if side == Side::Wan && wan_ip.is_none() {
            return self.drop(GwDrop::NoUplink);
        }
        let Some(frag) = self.check_ttl_mtu(Side::Lan, side, frame, &h, now, out) else {
            return;
        };
        self.forward_from_lan(
            side,
            next_hop,
            None,
            frag,
            &frame[..ETH + h.total_len],
            now,
            out,
        );
    }

    /// The common tail of LAN routing: copies the frame into the outbox
    /// (behind `hdr` when it carries offload work), decrements the TTL,
    /// translates toward the uplink, and sends it to the next hop.
    #[allow(clippy::too_many_arguments)]
    fn forward_from_lan(
        &mut self,
        side: Side,
        next_hop: Ipv4Addr,
        hdr: Option<&VnetHdr>,
        frag: Option<usize>,
        frame: &[u8],
        now: Millis,
        out: &mut Outbox,
    ) {
        match hdr {
            Some(hdr) => out.push_with_hdr(side.into(), hdr, frame),
            None => out.push(side.into(), frame),
        }
        let f = out.last_mut();
        ipv4::decrement_ttl(&mut f[ETH..]);
        if side == Side::Wan {
            if let Some(nat) = self.nat.as_mut() {
                let done = if hdr.is_some() {
                    nat.outbound_partial(&mut f[ETH..], now)
                } else {
                    nat.outbound(&mut f[ETH..], now)
                };
                if let Err(e) = done {
                    out.pop();
                    if e == NatDrop::TableFull {
                        self.nat_full(now);
                    }
                    return self.drop(GwDrop::Nat(e));
                }
            }
            self.stats.routed_out += 1;
        } else {
            self.stats.routed_lan += 1;
        }
        self.send_maybe_fragmented(side, next_hop, frag, now, out);
    }

    /// Routes a LAN frame that still carries offload work (a partial
    /// checksum, or a TCP super-frame) without finishing it, so it leaves
    /// the uplink as one frame and the kernel there does the work. Returns
    /// false, having changed nothing, when the frame must be made whole
    /// first (for the gateway's own stack, an ICMP error, a neighbour still
    /// to resolve, an egress MTU too small for its segments...).
    pub fn route_offloaded_lan(
        &mut self,
        hdr: &VnetHdr,
        frame: &[u8],
        now: Millis,
        out: &mut Outbox,
    ) -> bool {
        if frame.len() < ETH || MacAddr::from_slice(&frame[0..6]) != self.cfg.lan_mac {
            return false;
        }
        let Some(h) = self.offload_candidate(hdr, frame) else {
            return false;
        };
        let dst = Ipv4Addr::from(h.dst);
        let wan_ip = self.wan_addr().map(|a| a.0);
        if self.is_local_lan(dst) || !self.cfg.subnet.contains(Ipv4Addr::from(h.src)) {
            return false;
        }
        let Some((side, next_hop)) = self.route(dst) else {
            return false;
        };
        if (side == Side::Wan && wan_ip.is_none())
            || !self.fits(hdr, frame, &h, side)
            || self.neighbour(side, next_hop).is_none()
        {
            return false;
        }
        self.forward_from_lan(
            side,
            next_hop,
            Some(hdr),
            None,
            &frame[..ETH + h.total_len],
            now,
            out,
        );
        true
    }

    /// The uplink twin of [`Gateway::route_offloaded_lan`]: a super-frame
    /// (or partial-checksum frame) for the uplink address is translated back
    /// and handed to the LAN as one frame.
    pub fn route_offloaded_wan(
        &mut self,
        hdr: &VnetHdr,
        frame: &[u8],
        now: Millis,
        out: &mut Outbox,
    ) -> bool {
        let Some(wmac) = self.wan_mac() else {
            return false;
        };
        if frame.len() < ETH || MacAddr::from_slice(&frame[0..6]) != wmac || self.nat.is_none() {
            return false;
        }
        let Some(h) = self.offload_candidate(hdr, frame) else {
            return false;
        };
        let wan_ip = self.wan_addr().map(|a| a.0);
        if Some(Ipv4Addr::from(h.dst)) != wan_ip
            || self.cfg.subnet.contains(Ipv4Addr::from(h.src))
            || !self.fits(hdr, frame, &h, Side::Lan)
        {
            return false;
        }
        out.push_with_hdr(Egress::Lan, hdr, &frame[..ETH + h.total_len]);
        let nat = self.nat.as_mut().expect("checked above");
        if let Err(e) = nat.inbound_partial(&mut out.last_mut()[ETH..], now) {
            out.pop();
            self.drop(GwDrop::Nat(e));
            return true;
        }
        let inside = ip4(&out.last_mut()[ETH + 16..ETH + 20]);
        if !self.cfg.subnet.contains(inside) || self.lan_neigh.get(inside).is_none() {
            // Resolve (and hold) on the ordinary path, with whole frames.
            out.pop();
            return false;
        }
        ipv4::decrement_ttl(&mut out.last_mut()[ETH..]);
        self.stats.routed_in += 1;
        self.send_resolved(Side::Lan, inside, now, out);
        true
    }

    /// An unfragmented TCP (or, without GSO, UDP) IPv4 frame with a sound
    /// header, a TTL to spare and offload work that we know how to pass on.
    fn offload_candidate(&self, hdr: &VnetHdr, frame: &[u8]) -> Option<Ipv4Hdr> {
        if ipv4::get16(frame, 12) != ETHERTYPE_IPV4 {
            return None;
        }
        let h = Ipv4Hdr::parse(&frame[ETH..])?;
        let proto_ok = match h.proto {
            PROTO_TCP => !hdr.is_gso() || hdr.gso_type & !GSO_ECN == GSO_TCPV4,
            PROTO_UDP => !hdr.is_gso(),
            _ => false,
        };
        (proto_ok && !h.is_fragment() && h.ttl > 1 && ipv4::ip_checksum_ok(&frame[ETH..], h.ihl))
            .then_some(h)
    }

    /// Whether the frame (or each of its segments) fits the egress MTU.
    fn fits(&self, hdr: &VnetHdr, frame: &[u8], h: &Ipv4Hdr, side: Side) -> bool {
        let mtu = self.side_mtu(side);
        if !hdr.is_gso() {
            return h.total_len <= mtu;
        }
        let l4 = ETH + h.ihl;
        if frame.len() < l4 + 20 {
            return false;
        }
        let thl = ((frame[l4 + 12] >> 4) as usize) * 4;
        h.ihl + thl + hdr.gso_size as usize <= mtu
    }

    fn neighbour(&self, side: Side, ip: Ipv4Addr) -> Option<MacAddr> {
        match side {
            Side::Lan => self.lan_neigh.get(ip),
            Side::Wan => self.wan.as_ref().and_then(|w| w.neigh.get(ip)),
        }
    }

    fn ip_from_wan(&mut self, frame: &[u8], now: Millis, out: &mut Outbox) {
        let Some(h) = self.checked_ipv4(frame) else {
            return;
        };
        let dst = Ipv4Addr::from(h.dst);
        let wan_ip = self.wan_addr().map(|a| a.0);
        let l4 = ETH + h.ihl;
        let dhcp_reply = h.proto == PROTO_UDP
            && h.has_l4()
            && frame.len() >= l4 + 4
            && ipv4::get16(frame, l4 + 2) == 68;
        if dhcp_reply || (is_special(dst) && Some(dst) != wan_ip) {
            return self.deliver_local(Side::Wan, frame, now, out);
        }
        if self.cfg.subnet.contains(Ipv4Addr::from(h.src)) {
            return self.drop(GwDrop::Martian);
        }
        if Some(dst) == wan_ip {
            let Some(nat) = self.nat.as_mut() else {
                return self.deliver_local(Side::Wan, frame, now, out);
            };
            out.push(Egress::Lan, &frame[..ETH + h.total_len]);
            match nat.inbound(&mut out.last_mut()[ETH..], now) {
                Ok(()) => {}
                Err(NatDrop::NoFlow) => {
                    out.pop();
                    // Unsolicited: only what the gateway itself answers
                    // (echo requests to its address) goes to its stack.
                    let echo = h.proto == PROTO_ICMP
                        && h.has_l4()
                        && frame.len() > l4
                        && frame[l4] == ICMP_ECHO_REQUEST;
                    if echo {
                        return self.deliver_local(Side::Wan, frame, now, out);
                    }
                    return self.drop(GwDrop::Nat(NatDrop::NoFlow));
                }
                Err(e) => {
                    out.pop();
                    return self.drop(GwDrop::Nat(e));
                }
            }
            let inside = ip4(&out.last_mut()[ETH + 16..ETH + 20]);
            let frag = match self.forward_check(Side::Lan, &h) {
                Ok(frag) => frag,
                Err(_) => {
                    // Take the translated copy back; the error goes to the
                    // sender, about what it sent.
                    out.pop();
                    self.check_ttl_mtu(Side::Wan, Side::Lan, frame, &h, now, out);
                    return;
                }
            };
            let f = out.last_mut();
            ipv4::decrement_ttl(&mut f[ETH..]);
            self.stats.routed_in += 1;
            return self.send_maybe_fragmented(Side::Lan, inside, frag, now, out);
        }
        if self.nat.is_none() && self.cfg.subnet.contains(dst) {
            // --no-nat: the outside routes the subnet to us.
            let Some(frag) = self.check_ttl_mtu(Side::Wan, Side::Lan, frame, &h, now, out) else {
                return;
            };
            out.push(Egress::Lan, &frame[..ETH + h.total_len]);
            ipv4::decrement_ttl(&mut out.last_mut()[ETH..]);
            self.stats.routed_in += 1;
            return self.send_maybe_fragmented(Side::Lan, dst, frag, now, out);
        }
        self.drop(GwDrop::NotForUs)
    }

    /// TTL and egress-MTU checks before forwarding; sends the ICMP error
    /// back out of `from` and returns false when the packet cannot go on.
    /// Whether a packet may be forwarded toward `to`: TTL left, and either
    /// fits the egress MTU (`Ok(None)`) or may be fragmented to it
    /// (`Ok(Some(mtu))`). Shared by forwarding and trace.
    fn forward_check(&self, to: Side, h: &Ipv4Hdr) -> Result<Option<usize>, Refusal> {
        if h.ttl <= 1 {
            return Err(Refusal::Ttl);
        }
        let mtu = self.side_mtu(to);
        if h.total_len <= mtu {
            return Ok(None);
        }
        if h.dont_frag {
            Err(Refusal::FragNeeded(mtu))
        } else if h.ihl != 20 {
            Err(Refusal::TooBig(mtu))
        } else {
            Ok(Some(mtu))
        }
    }

    fn check_ttl_mtu(
        &mut self,
        from: Side,
        to: Side,
        frame: &[u8],
        h: &Ipv4Hdr,
        now: Millis,
        out: &mut Outbox,
    ) -> Option<Option<usize>> {
        match self.forward_check(to, h) {
            Ok(frag) => Some(frag),
            Err(Refusal::Ttl) => {
                self.icmp_error(from, frame, ICMP_TIME_EXCEEDED, 0, 0, now, out);
                self.drop(GwDrop::TtlExceeded);
                None
            }
            Err(Refusal::FragNeeded(mtu)) => {
                self.icmp_error(from, frame, ICMP_DEST_UNREACH, 4, mtu as u16, now, out);
                self.drop(GwDrop::FragNeeded);
                None
            }
            Err(Refusal::TooBig(_)) => {
                self.drop(GwDrop::TooBig);
                None
            }
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

    /// What [`Gateway::handle_wan`] would do with a frame from the uplink,
    /// step by step, without doing it (the uplink twin of
    /// [`Gateway::trace_lan`]).
    pub fn trace_wan(
        &self,
        frame: &[u8],
        now: Millis,
        egress_port: impl Fn(MacAddr) -> Option<String>,
    ) -> Vec<String> {
        let mut t = Vec::new();
        let Some(wmac) = self.wan_mac() else {
            t.push("there is no uplink".into());
            return t;
        };
        if frame.len() < ETH + 20 || ipv4::get16(frame, 12) != ETHERTYPE_IPV4 {
            t.push("uplink: not IPv4; only the gateway's uplink stack looks at it (ARP)".into());
            return t;
        }
        let dst_mac = MacAddr::from_slice(&frame[0..6]);
        if dst_mac != wmac && dst_mac != MacAddr::BROADCAST {
            t.push(format!(
                "uplink: for {dst_mac}, not the gateway's uplink MAC {wmac}: ignored (promiscuous capture of other hosts' traffic)"
            ));
            return t;
        }
        let h = match sound_ipv4(frame) {
            Ok(h) => h,
            Err(why) => {
                t.push(format!("uplink: bad IPv4 header: dropped ({})", why.name()));
                return t;
            }
        };
        let (src, dst) = (Ipv4Addr::from(h.src), Ipv4Addr::from(h.dst));
        let wan_ip = self.wan_addr().map(|a| a.0);
        if self.cfg.subnet.contains(src) {
            t.push(format!(
                "uplink: source {src} is inside {}: dropped (martian_source)",
                self.cfg.subnet
            ));
            return t;
        }
        if Some(dst) != wan_ip {
            let routed = self.nat.is_none() && self.cfg.subnet.contains(dst);
            t.push(if routed {
                format!("uplink: {dst} is inside and NAT is off: routed to the LAN")
            } else {
                format!("uplink: {dst} is not the uplink address: dropped (not_for_us)")
            });
            return t;
        }
        let Some(nat) = self.nat.as_ref() else {
            t.push(format!(
                "uplink: for the uplink address {dst}, NAT off: the gateway's own stack"
            ));
            return t;
        };
        let inside = match nat.peek_inbound(&frame[ETH..ETH + h.total_len], now) {
            Ok(p) => {
                t.push(format!("uplink: NAT: {p}"));
                match p {
                    nat::Peek::Existing { ref translated, .. } => translated
                        .split(':')
                        .next()
                        .and_then(|a| a.parse::<Ipv4Addr>().ok()),
                    _ => None,
                }
            }
            Err(NatDrop::NoFlow) => {
                let echo = h.proto == PROTO_ICMP && frame[ETH + h.ihl] == ICMP_ECHO_REQUEST;
                t.push(if echo {
                    "uplink: an echo request for the uplink address: answered by the gateway's stack"
                        .to_string()
                } else {
                    "uplink: no flow matches: dropped (nat_no_flow); nothing from outside gets in unasked"
                        .to_string()
                });
                return t;
            }
            Err(e) => {
                t.push(format!("uplink: NAT refuses it: dropped ({})", e.name()));
                return t;
            }
        };
        let Some(inside) = inside else {
            return t;
        };
        match self.forward_check(Side::Lan, &h) {
            Ok(None) => t.push(format!("gateway: TTL {} -> {}", h.ttl, h.ttl - 1)),
            Ok(Some(mtu)) => t.push(format!(
                "gateway: TTL {} -> {}; over the LAN MTU {mtu}: would be fragmented",
                h.ttl,
                h.ttl - 1
            )),
            Err(_) => {
                t.push(format!(
                    "gateway: TTL {} or size {}: would answer the sender with an ICMP error; dropped",
                    h.ttl, h.total_len
                ));
                return t;
            }
        }
        match self.lan_neigh.get(inside) {
            Some(mac) => {
                let to = egress_port(mac).unwrap_or_else(|| "flooded (MAC not learned)".into());
                t.push(format!("gateway: {inside} is at {mac}"));
                t.push(format!("egress: into the switch from the gateway port, to {to}"));
            }
            None => t.push(format!(
                "gateway: {inside} not resolved: would send an ARP request on the LAN and hold the packet"
            )),
        }
        t
    }

    /// What [`Gateway::handle_lan`] would do with an IPv4 frame addressed
    /// to the gateway, step by step, without doing it (no state changes, no
    /// output): local delivery or the route, TTL, the NAT mapping that would
    /// be used or created, the next hop and the egress. `egress_port` names
    /// the switch port a LAN destination MAC is learned on.
    pub fn trace_lan(
        &self,
        frame: &[u8],
        now: Millis,
        egress_port: impl Fn(MacAddr) -> Option<String>,
    ) -> Vec<String> {
        let mut t = Vec::new();
        if frame.len() < ETH || ipv4::get16(frame, 12) != ETHERTYPE_IPV4 {
            t.push("gateway: not IPv4; only its own stack looks at it (ARP)".into());
            return t;
        }
        let h = match sound_ipv4(frame) {
            Ok(h) => h,
            Err(why) => {
                t.push(format!(
                    "gateway: bad IPv4 header: dropped ({})",
                    why.name()
                ));
                return t;
            }
        };
        let dst = Ipv4Addr::from(h.dst);
        let src = Ipv4Addr::from(h.src);
        let wan_ip = self.wan_addr().map(|a| a.0);
        if self.is_local_lan(dst) {
            t.push(format!(
                "gateway: {dst} is the gateway's own (or a broadcast) address: its smoltcp stack answers (ARP, ICMP echo)"
            ));
            return t;
        }
        if !self.cfg.subnet.contains(src) {
            t.push(format!(
                "gateway: source {src} is outside {}: dropped (martian_source)",
                self.cfg.subnet
            ));
            return t;
        }
        let Some((side, next_hop)) = self.route(dst) else {
            t.push(format!(
                "gateway: no route to {dst}: would answer ICMP Destination Net Unreachable from {}; dropped (no_route)",
                self.cfg.lan_ip
            ));
            return t;
        };
        let how = if next_hop == dst {
            "connected".to_string()
        } else {
            format!("default via {next_hop}")
        };
        let dev = match side {
            Side::Lan => format!("lan ({})", self.cfg.subnet),
            Side::Wan => format!(
                "uplink {}",
                self.wan.as_ref().map_or("-", |w| w.cfg.ifname.as_str())
            ),
        };
        t.push(format!("gateway: route to {dst}: {how}, dev {dev}"));
        if side == Side::Wan && wan_ip.is_none() {
            t.push("gateway: the uplink has no address yet: dropped (no_uplink)".into());
            return t;
        }
        match self.forward_check(side, &h) {
            Ok(None) => t.push(format!("gateway: TTL {} -> {}", h.ttl, h.ttl - 1)),
            Ok(Some(mtu)) => t.push(format!(
                "gateway: TTL {} -> {}; {} bytes over the egress MTU {mtu} without DF: would be fragmented",
                h.ttl,
                h.ttl - 1,
                h.total_len
            )),
            Err(Refusal::Ttl) => {
                t.push(format!(
                    "gateway: TTL {}: would answer ICMP Time Exceeded from {}; dropped (ttl_exceeded)",
                    h.ttl, self.cfg.lan_ip
                ));
                return t;
            }
            Err(Refusal::FragNeeded(mtu)) => {
                t.push(format!(
                    "gateway: {} bytes with DF over the egress MTU {mtu}: would answer ICMP Fragmentation Needed (MTU {mtu}); dropped (frag_needed)",
                    h.total_len
                ));
                return t;
            }
            Err(Refusal::TooBig(mtu)) => {
                t.push(format!(
                    "gateway: {} bytes over the egress MTU {mtu}, with IP options: not fragmented here; dropped (too_big_options)",
                    h.total_len
                ));
                return t;
            }
        }
        if side == Side::Wan {
            match self.nat.as_ref() {
                None => t.push("gateway: no NAT (--no-nat): source left as it is".into()),
                Some(nat) => match nat.peek_outbound(&frame[ETH..ETH + h.total_len], now) {
                    Ok(p) => t.push(format!("gateway: NAT: {p}")),
                    Err(e) => {
                        t.push(format!("gateway: NAT refuses it: dropped ({})", e.name()));
                        return t;
                    }
                },
            }
        }
        match self.neighbour(side, next_hop) {
            Some(mac) => t.push(format!("gateway: next hop {next_hop} is at {mac}")),
            None => t.push(format!(
                "gateway: next hop {next_hop} not resolved: would send an ARP request and hold the packet (up to {} per address)",
                neigh::HOLD
            )),
        }
        match side {
            Side::Wan => t.push(format!("egress: {dev}")),
            Side::Lan => {
                let to = self
                    .lan_neigh
                    .get(next_hop)
                    .and_then(&egress_port)
                    .unwrap_or_else(|| "flooded (destination MAC not learned)".into());
                t.push(format!(
                    "egress: back into the switch from the gateway port, to {to}"
                ));
            }
        }
        t
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

    fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    /// Sends an ARP request for `target` out of `side`.
    fn arp_request(&mut self, side: Side, target: Ipv4Addr, out: &mut Outbox) {
        let Some(sip) = self.side_ip(side) else {
            return;
        };
        let mac = self.side_mac(side);
        let mut f = [0u8; 42];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&mac.to_bytes());
        f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&mac.to_bytes());
        f[28..32].copy_from_slice(&sip.octets());
        f[38..42].copy_from_slice(&target.octets());
        out.push(side.into(), &f);
        self.stats.arp_requests_sent += 1;
    }

    /// Sends a gratuitous ARP for the side's own address.
    fn gratuitous_arp(&mut self, side: Side, out: &mut Outbox) {
        if let Some(ip) = self.side_ip(side) {
            self.arp_request(side, ip, out);
        }
    }

    /// Sends an ICMP error about `frame` (received on `side`) back to its
    /// sender, from the gateway's address on that side. Never about an ICMP
    /// error, a later fragment, or a broadcast/multicast sender (RFC 1122).
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        side: Side,
        frame: &[u8],
        ty: u8,
        code: u8,
        mtu: u16,
        now: Millis,
        out: &mut Outbox,
    ) {
        let ip = &frame[ETH..];
        let Some(h) = Ipv4Hdr::parse(ip) else { return };
        let Some(src_ip) = self.side_ip(side) else {
            return;
        };
        if !h.has_l4()
            || is_special(Ipv4Addr::from(h.src))
            || !MacAddr::from_slice(&frame[6..12]).is_valid_source()
            || (h.proto == PROTO_ICMP
                && h.total_len > h.ihl
                && (icmp_is_error(ip[h.ihl]) || ip[h.ihl] > 18))
        {
            return;
        }
        // Token bucket: ICMP_RATE per second.
        if now.saturating_sub(self.icmp_refill) >= 1000 {
            self.icmp_tokens = ICMP_RATE;
            self.icmp_refill = now;
        }
        if self.icmp_tokens == 0 {
            self.stats.icmp_errors_suppressed += 1;
            return;
        }
        self.icmp_tokens -= 1;
        let quote = &ip[..h.total_len.min(ICMP_QUOTE_MAX)];
        let total = 20 + 8 + quote.len();
        let id = self.next_ip_id();
        let smac = self.side_mac(side);
        let mut f = vec![0u8; ETH + total];
        f[0..6].copy_from_slice(&frame[6..12]);
        f[6..12].copy_from_slice(&smac.to_bytes());
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let o = &mut f[ETH..];
        o[0] = 0x45;
        o[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        o[4..6].copy_from_slice(&id.to_be_bytes());
        o[8] = 64;
        o[9] = PROTO_ICMP;
        o[12..16].copy_from_slice(&src_ip.octets());
        o[16..20].copy_from_slice(&h.src);
        ipv4::fill_ip_checksum(o, 20);
        o[20] = ty;
        o[21] = code;
        o[26..28].copy_from_slice(&mtu.to_be_bytes());
        o[28..].copy_from_slice(quote);
        let c = crate::wire::checksum::checksum(&o[20..]);
        o[22..24].copy_from_slice(&c.to_be_bytes());
        out.push(side.into(), &f);
        self.stats.icmp_errors_sent += 1;
    }

    // ---- timers -----------------------------------------------------------

    /// Runs the gateway's timers: the stacks (ARP, DHCP), neighbour probes,
    /// a slice of the NAT sweep. Returns when it wants to run next.
    pub fn poll(&mut self, now: Millis, out: &mut Outbox) -> Millis {
        self.lan
            .poll(now, &mut self.lan_sockets, |f| out.push(Egress::Lan, f));
        let mut probes = Vec::new();
        self.lan_neigh.poll(now, |ip| probes.push((Side::Lan, ip)));
        let mut dhcp_event = None;
        if let Some(w) = self.wan.as_mut() {
            w.stack
                .poll(now, &mut w.sockets, |f| out.push(Egress::Wan, f));
            w.neigh.poll(now, |ip| probes.push((Side::Wan, ip)));
            if let Some(h) = w.dhcp {
                dhcp_event = match w.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
                    Some(dhcpv4::Event::Configured(c)) => Some(Some((
                        c.address.address(),
                        c.address.prefix_len(),
                        c.router,
                    ))),
                    Some(dhcpv4::Event::Deconfigured) => Some(None),
                    None => None,
                };
            }
        }
        for (side, ip) in probes {
            self.arp_request(side, ip, out);
        }
        if let Some(ev) = dhcp_event {
            self.apply_dhcp(ev, out);
        }
        if let Some(n) = self.nat.as_mut() {
            n.expire(now, NAT_SWEEP);
        }
        let mut next = now + 1000;
        if let Some(t) = self.lan.poll_at(now, &self.lan_sockets) {
            next = next.min(t);
        }
        if let Some(w) = self.wan.as_mut() {
            if let Some(t) = w.stack.poll_at(now, &w.sockets) {
                next = next.min(t);
            }
            if let Some(t) = w.neigh.next_poll() {
                next = next.min(t);
            }
        }
        if let Some(t) = self.lan_neigh.next_poll() {
            next = next.min(t);
        }
        next.max(now)
    }

    /// Announces the gateway: gratuitous ARP on the LAN (and the uplink).
    pub fn announce(&mut self, out: &mut Outbox) {
        self.gratuitous_arp(Side::Lan, out);
        self.gratuitous_arp(Side::Wan, out);
    }

    fn apply_dhcp(&mut self, ev: Option<(Ipv4Addr, u8, Option<Ipv4Addr>)>, out: &mut Outbox) {
        let Some(w) = self.wan.as_mut() else { return };
        match ev {
            Some((a, l, router)) => {
                w.stack.iface.update_ip_addrs(|v| {
                    v.clear();
                    let _ = v.push(IpCidr::Ipv4(Ipv4Cidr::new(a, l)));
                });
                let gw = router.or(w.cfg.gw);
                w.stack.iface.routes_mut().remove_default_ipv4_route();
                if let Some(gw) = gw {
                    let _ = w.stack.iface.routes_mut().add_default_ipv4_route(gw);
                }
                w.addr = Some((a, l));
                w.gw = gw;
                let msg = format!(
                    "uplink address gained by DHCP: {a}/{l}, router {}",
                    gw.map_or("none".to_string(), |g| g.to_string())
                );
                self.event(false, msg);
                if let Some(n) = self.nat.as_mut() {
                    n.set_ext_ip(Some(a));
                }
                self.set_lan_alias(Some(a));
                self.gratuitous_arp(Side::Wan, out);
            }
            None => {
                w.stack.iface.update_ip_addrs(|v| v.clear());
                w.stack.iface.routes_mut().remove_default_ipv4_route();
                let old = w.addr.take();
                w.gw = None;
                w.neigh.flush();
                let msg = format!(
                    "uplink address lost (DHCP lease ended): {}",
                    old.map_or("-".to_string(), |(a, l)| format!("{a}/{l}"))
                );
                self.event(true, msg);
                if let Some(n) = self.nat.as_mut() {
                    n.set_ext_ip(None);
                }
                self.set_lan_alias(None);
            }
        }
    }
}

#[cfg(test)]
mod tests;
