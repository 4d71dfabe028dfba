//! Masquerade (source NAT) with connection tracking. Pure: IPv4 packets and
//! the time in, packets rewritten in place (or a drop reason) out.
//!
//! What it does, following the checklist of real masquerade:
//!
//! * **Flows** are keyed both ways: outbound by (protocol, inside address,
//!   inside port, remote address, remote port), inbound by (protocol, remote
//!   address, remote port, external port); the external address is the
//!   uplink's. ICMP echo uses the identifier as the port (remote port 0).
//! * **Port allocation** keeps the inside port (or echo identifier) when the
//!   inbound key it would make is free, as Linux does; otherwise it takes a
//!   free one from the configured range, starting at a hashed position. So two
//!   inside hosts pinging the same remote host with the same identifier get
//!   different external identifiers and both get every reply.
//! * **Checksums** are updated incrementally (RFC 1624), the TCP/UDP
//!   pseudo-header included; a UDP checksum of 0 (unused) stays 0.
//! * **State and timeouts**: TCP SYN_SENT / ESTABLISHED / FIN_WAIT /
//!   TIME_WAIT / CLOSED (RST) with the established timeout (default 2 h 4 min,
//!   RFC 5382) and a short transitory one; UDP (default 2 min, RFC 4787); ICMP
//!   (default 30 s). Expired flows are invisible at once and swept a slice at a
//!   time by [`Nat::expire`].
//! * **ICMP errors** about a tracked flow (destination unreachable, time
//!   exceeded, parameter problem, source quench) are translated both ways: the
//!   outer address, the quoted header's address and port, the quoted header's
//!   checksums, and the ICMP checksum.
//! * **Fragments** are tracked by IP identifier, not reassembled: the first
//!   fragment (which carries the L4 header) finds or creates the flow and
//!   records (protocol, source, destination, IP id) -> flow for 30 s; later
//!   fragments only get their address rewritten. A later fragment that arrives
//!   before its first fragment is dropped (`fragment_no_flow`). The records
//!   are shared fairly (`nat/frag.rs`): a source (the inside address
//!   outbound, the remote address inbound) holds at most 1024 and beyond
//!   that loses its own oldest, never another's; a full table (8192 records,
//!   under 1.5 MiB) takes the oldest record of the source holding the most.
//!   Both are counted (`frag_evicted_source_cap`, `frag_evicted_table_full`).
//!   So one namespace flooding incomplete first fragments churns only its
//!   own records.
//! * **Bounded and fair**: one inside address (one port) holds at most
//!   `max_per_inside` flows (`nat_port_share_exceeded` beyond it); a full
//!   table makes room by evicting the oldest flow that never saw a reply
//!   (conntrack's early drop; bounded scan), and a flow that has seen
//!   traffic both ways is never evicted for a newcomer. Only when no such
//!   flow is near the head of the table is a new flow refused (`table_full`).
//! * **TCP tracking a blind packet cannot fool** (`nat/tcp.rs`): a flow
//!   whose first segment is not a SYN is picked up loosely (`PICKED_UP`, a
//!   30-s timeout) until the other end answers; a segment with a wrong
//!   checksum never opens a flow or changes its state (`nat_bad_checksum`).
//!   An RST or a FIN changes a flow only when its sequence number is inside
//!   the window (RFC 5961, as conntrack's `tcp_in_window`): per side the
//!   flow keeps the end of its furthest segment, its largest window and its
//!   window scale (16 bytes a flow); one outside is dropped
//!   (`nat_tcp_out_of_window`) and the flow left as it was. Other segments
//!   outside the window pass but change nothing. A picked-up flow learns
//!   where each side stands from its first segments (the ACK of one side is
//!   where the other stands), its windows read unscaled and widened by the
//!   data seen in flight; an RST or FIN from a side not placed yet is
//!   dropped.
//! * Inbound packets that match no flow are dropped (`no_flow`): nothing from
//!   outside reaches the inside unasked, except a new connection to a
//!   published front end.
//! * **Published ports and service addresses** ([`service`], `--publish`):
//!   a published flow is a masquerade flow opened from the other side. From
//!   outside, the backend is its inside end and its answers leave from the
//!   published port (which masquerade never allocates); the client keeps its
//!   address. From a namespace (hairpin, [`Nat::classify_lan`]) the
//!   destination becomes the backend and the source the gateway (the flow's
//!   `lan` key bit keeps it apart). Backends are chosen round-robin in
//!   `classify`, so trace shows the choice; the front end and backend of a
//!   flow sit beside the table (a flow stays one cache line). A flow from
//!   outside counts as answered only when the client acknowledges exactly the
//!   backend's SYN-ACK (TCP) or speaks again after an answer (UDP); a new
//!   flow never displaces a live one with its keys (`nat_tuple_clash`).
//! * **Bounded memory**: the maps are sized for the table at start and
//!   rebuilt within their bound under churn, the eviction queue compacted at
//!   its bound, so RSS stays flat (BENCHMARKS.md, "Soak").

use crate::hash::FastMap;
pub use crate::reason::Reason;
use crate::switch::Millis;
use crate::wire::ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use std::collections::VecDeque;
use std::net::Ipv4Addr;

mod classify;
mod config;
mod fair;
mod frag;
mod peek;
pub mod service;
mod table;
mod tcp;
mod translate;
mod view;

pub use classify::{Class, FlowKey};
pub use config::{NatConfig, NatDrop, NatTimeouts};
pub use peek::Peek;
pub use service::{FrontKey, FrontView, Pick, PublishSpec, Services};
pub use tcp::{Fit, Seg};
pub use view::{FlowFilter, FlowView, Tuple};

#[cfg(test)]
use frag::{FRAG_BYTES_MAX, FRAG_MAX, FRAG_PER_SOURCE, FRAG_TTL_MS};

/// TCP connection state as the NAT tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    /// Picked up mid-stream, no answer seen yet.
    Loose,
    Established,
    FinWait,
    TimeWait,
    Closed,
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    proto: u8,
    inside_ip: [u8; 4],
    inside_port: u16,
    remote_ip: [u8; 4],
    remote_port: u16,
    ext_port: u16,
    tcp: TcpState,
    /// Sequence numbers and windows (TCP).
    track: tcp::Track,
    replied: bool,
    live: bool,
    generation: u32,
    expires: Millis,
    packets_out: u64,
    packets_in: u64,
    /// The flow lives on the LAN both ways (hairpin to a published front
    /// end): its translated address is the gateway's own, not the
    /// uplink's, and its front end is in [`Nat::published`].
    lan: bool,
    /// Opened by the remote end (a client from outside reaching a published
    /// port): the backend is `inside`, the client `remote`.
    remote_opened: bool,
}

/// What a published flow has beyond a masquerade one, kept beside the table
/// so a flow stays one cache line.
#[derive(Clone, Copy, Debug)]
struct Published {
    /// Opened from the LAN (hairpin): the front end the inside host
    /// addressed; its packets go to `remote` (the backend) and the answers
    /// come back from the front end.
    front: Option<([u8; 4], u16)>,
    /// (front-end slot, backend index).
    svc: (u16, u16),
}

impl Flow {
    /// Direction relative to who opened the flow (what TCP tracking reads:
    /// `Out` is the opener's).
    fn tdir(&self, dir: Dir) -> Dir {
        match (self.remote_opened, dir) {
            (false, d) => d,
            (true, Dir::Out) => Dir::In,
            (true, Dir::In) => Dir::Out,
        }
    }

    /// The address whose share of the table the flow takes: its opener's.
    fn share_key(&self) -> [u8; 4] {
        if self.remote_opened {
            self.remote_ip
        } else {
            self.inside_ip
        }
    }

    /// Its out-key; `front`: the front end of a hairpin flow.
    fn out_key(&self, front: Option<([u8; 4], u16)>) -> u128 {
        let (r_ip, r_port) = front.unwrap_or((self.remote_ip, self.remote_port));
        out_key(self.proto, self.inside_ip, self.inside_port, r_ip, r_port)
    }

    fn is_published(&self) -> bool {
        self.lan || self.remote_opened
    }

    fn in_key(&self) -> u128 {
        in_key(self.proto, self.remote_ip, self.remote_port, self.ext_port) | lan_bit(self.lan)
    }
}

/// What a new flow is made of ([`Nat::create`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct NewFlow {
    proto: u8,
    inside: ([u8; 4], u16),
    remote: ([u8; 4], u16),
    /// A fixed external port (a published port); `None`: allocated.
    ext_port: Option<u16>,
    front: Option<([u8; 4], u16)>,
    lan: bool,
    remote_opened: bool,
    svc: Option<Pick>,
}

/// The in-key bit of flows that live on the LAN (their external address is
/// the gateway's, not the uplink's).
fn lan_bit(lan: bool) -> u128 {
    (lan as u128) << 80
}

/// Table-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatStats {
    pub created: u64,
    pub expired: u64,
    pub refused_full: u64,
    /// New flows refused because their inside address had its share.
    #[serde(default)]
    pub refused_share: u64,
    /// Unreplied flows evicted to make room in a full table.
    #[serde(default)]
    pub early_dropped: u64,
    pub translated_out: u64,
    pub translated_in: u64,
    pub icmp_errors_translated: u64,
    /// Fragment records a source at its cap lost (its own oldest).
    #[serde(default)]
    pub frag_evicted_source_cap: u64,
    /// Fragment records lost to a full table (the oldest of the source
    /// holding the most).
    #[serde(default)]
    pub frag_evicted_table_full: u64,
}

fn out_key(proto: u8, in_ip: [u8; 4], in_port: u16, r_ip: [u8; 4], r_port: u16) -> u128 {
    (proto as u128) << 96
        | (u32::from_be_bytes(in_ip) as u128) << 64
        | (in_port as u128) << 48
        | (u32::from_be_bytes(r_ip) as u128) << 16
        | r_port as u128
}

fn in_key(proto: u8, r_ip: [u8; 4], r_port: u16, ext_port: u16) -> u128 {
    (proto as u128) << 64
        | (u32::from_be_bytes(r_ip) as u128) << 32
        | (r_port as u128) << 16
        | ext_port as u128
}

fn frag_key(proto: u8, src: [u8; 4], dst: [u8; 4], id: u16) -> u128 {
    (proto as u128) << 80
        | (u32::from_be_bytes(src) as u128) << 48
        | (u32::from_be_bytes(dst) as u128) << 16
        | id as u128
}

/// Entries the eviction queue holds at most: the live unreplied flows (at
/// most `max_flows`) and the stale entries of answered or removed flows,
/// dropped when it reaches this.
const fn order_bound(max_flows: usize) -> usize {
    max_flows + max_flows / 4 + 64
}

/// The capacity a flow map is kept at: its bound (`max_flows`) and a
/// quarter more, so a rebuild leaves room for a quarter of the table's
/// worth of inserts before the next.
const fn map_bound(max_flows: usize) -> usize {
    max_flows + max_flows / 4 + 16
}

/// Up to this many flows (the default) the maps and the eviction queue are
/// sized for their bound at start (131,072 buckets, 4.3 MB, a map; 656 KB
/// the queue); a larger table's start at this size and grow by doubling:
/// the maps up to their bound, the queue to at most twice its own. (So a
/// large `--nat-max` reserves nothing much before its flows come.)
const PRESIZE_FLOWS: usize = 65_536;
const MAP_PRESIZE_MAX: usize = map_bound(PRESIZE_FLOWS);

/// Inserts into a flow map without letting it outgrow `bound`. Removing
/// flows leaves tombstones that use up the map's room for growth; when
/// none is left hashbrown rehashes in place only if the map is at most
/// half full, and otherwise doubles it, even though most of what fills it
/// is tombstones, so a table churning above half its buckets would double
/// its maps once more than its bound needs. Here a map out of room is
/// rebuilt instead: at twice its entries, at least its size at start, at
/// most `bound` (this costs O(capacity) once per a quarter of the bound's
/// inserts at worst).
fn insert_bounded(map: &mut FastMap<u128, u32>, key: u128, idx: u32, bound: usize) {
    if map.len() >= map.capacity() && !map.contains_key(&key) {
        // Twice the entries of a full map is twice its buckets.
        let want = (2 * map.len())
            .clamp(bound.min(MAP_PRESIZE_MAX), bound)
            .max(map.len() + 1);
        let mut fresh = FastMap::with_capacity_and_hasher(want, *map.hasher());
        fresh.extend(map.drain());
        *map = fresh;
    }
    map.insert(key, idx);
}

/// The buckets a std (hashbrown) map of `capacity` has: 7/8 of them fill
/// (all but one below 8). Tombstones of removed entries lower `capacity`
/// until the next rehash, so this can read low.
fn map_buckets(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        1..8 => (capacity + 1).next_power_of_two(),
        _ => (capacity * 8 / 7).next_power_of_two(),
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The masquerade table.
pub struct Nat {
    cfg: NatConfig,
    ext_ip: Option<[u8; 4]>,
    flows: Vec<Flow>,
    free: Vec<u32>,
    out_map: FastMap<u128, u32>,
    in_map: FastMap<u128, u32>,
    frags: frag::Frags,
    live: usize,
    sweep: usize,
    alloc_seed: u64,
    stats: NatStats,
    /// Live flows per inside address.
    per_inside: FastMap<[u8; 4], u32>,
    /// (slot, generation) of flows created unreplied, oldest first: where a
    /// full table finds the flow to evict. Entries of flows that have since
    /// been answered or removed are skipped and dropped as they come up.
    order: VecDeque<(u32, u32)>,
    /// Live flows that never saw a reply (evictable for a newcomer).
    unreplied: usize,
    /// The gateway's LAN address: the translated source of hairpin flows.
    lan_ip: [u8; 4],
    /// Published ports and service addresses.
    services: Services,
    /// Per slot of a published flow: its front end and backend.
    published: FastMap<u32, Published>,
    /// Flows created and ended since the last [`Nat::take_events`], kept
    /// only while someone watches (`vswitchctl monitor`).
    watch: Option<Vec<FlowEvent>>,
}

/// A flow created (`created`) or ended, for `vswitchctl monitor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    pub created: bool,
    pub proto: &'static str,
    pub original: Tuple,
    pub reply: Tuple,
}

/// Which way a packet crosses the NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the inside toward the uplink (source translated).
    Out,
    /// From the uplink toward the inside (destination translated back).
    In,
}

impl Nat {
    /// The maps and the eviction queue are sized for their bound at once
    /// (up to `PRESIZE_FLOWS`): their memory is what it will be from the
    /// first flows on, not a step up an hour later.
    pub fn new(cfg: NatConfig, ext_ip: Option<Ipv4Addr>) -> Nat {
        let presize = map_bound(cfg.max_flows).min(MAP_PRESIZE_MAX);
        Nat {
            cfg,
            ext_ip: ext_ip.map(|a| a.octets()),
            flows: Vec::new(),
            free: Vec::new(),
            out_map: FastMap::with_capacity_and_hasher(presize, Default::default()),
            in_map: FastMap::with_capacity_and_hasher(presize, Default::default()),
            frags: frag::Frags::default(),
            live: 0,
            sweep: 0,
            alloc_seed: 0x243f_6a88_85a3_08d3,
            stats: NatStats::default(),
            per_inside: FastMap::default(),
            order: VecDeque::with_capacity(order_bound(cfg.max_flows.min(PRESIZE_FLOWS))),
            unreplied: 0,
            lan_ip: [0; 4],
            services: Services::default(),
            published: FastMap::default(),
            watch: None,
        }
    }

    /// Starts or stops keeping [`FlowEvent`]s.
    pub fn set_watch(&mut self, on: bool) {
        if on != self.watch.is_some() {
            self.watch = on.then(Vec::new);
        }
    }

    /// The flows created and ended since the last call.
    pub fn take_events(&mut self) -> Vec<FlowEvent> {
        self.watch.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn flow_event(&mut self, idx: u32, created: bool) {
        if self.watch.is_some() {
            let (original, reply) = self.tuples(idx as usize);
            let proto = peek::proto_name(self.flows[idx as usize].proto);
            if let Some(w) = self.watch.as_mut().filter(|w| w.len() < 4096) {
                w.push(FlowEvent {
                    created,
                    proto,
                    original,
                    reply,
                });
            }
        }
    }

    /// The front end a hairpin flow's inside host addressed.
    fn front_of(&self, idx: u32) -> Option<([u8; 4], u16)> {
        match self.flows[idx as usize].lan {
            true => self.published.get(&idx).and_then(|p| p.front),
            false => None,
        }
    }

    /// The gateway's LAN address (hairpin flows are translated to it).
    pub fn set_lan_ip(&mut self, ip: Ipv4Addr) {
        self.lan_ip = ip.octets();
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Publishes a front end; `addr_of` gives a backend port's address.
    pub fn publish(
        &mut self,
        spec: &PublishSpec,
        addr_of: impl Fn(&str) -> Option<Ipv4Addr>,
    ) -> Result<(), String> {
        self.services.add(spec, addr_of).map(|_| ())
    }

    /// Withdraws a front end and ends its flows; `None` if not published.
    pub fn unpublish(&mut self, key: &FrontKey) -> Option<usize> {
        let slot = self.services.remove(key)?;
        let idxs: Vec<u32> = self
            .published
            .iter()
            .filter(|(_, p)| p.svc.0 == slot)
            .map(|(&i, _)| i)
            .collect();
        for &i in &idxs {
            self.remove(i);
        }
        Some(idxs.len())
    }

    /// Port `name` has address `ip` now (`None`: gone): the backends on it
    /// join or leave the rotation.
    pub fn set_port_addr(&mut self, name: &str, ip: Option<Ipv4Addr>) {
        self.services.set_port_addr(name, ip);
    }

    /// `publish show`.
    pub fn publish_view(&self) -> Vec<FrontView> {
        self.services.view(self.ext_ip())
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }
    pub fn stats(&self) -> NatStats {
        self.stats
    }
    /// Flows in the table (some may have expired but not been swept).
    pub fn len(&self) -> usize {
        self.live
    }
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
    pub fn ext_ip(&self) -> Option<Ipv4Addr> {
        self.ext_ip.map(Ipv4Addr::from)
    }

    /// Sets the external address; a change flushes every flow (their
    /// mappings are meaningless under another address).
    pub fn set_ext_ip(&mut self, ip: Option<Ipv4Addr>) {
        let ip = ip.map(|a| a.octets());
        if ip != self.ext_ip {
            self.flush();
            self.ext_ip = ip;
        }
    }

    /// Approximate heap bytes (the bytes-per-flow bench figure, `status`):
    /// the flow slab, the maps' buckets, the free list, the eviction queue
    /// and the fragment records.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.flows.capacity() * size_of::<Flow>()
            + (map_buckets(self.out_map.capacity()) + map_buckets(self.in_map.capacity()))
                * (size_of::<(u128, u32)>() + 1)
            + map_buckets(self.per_inside.capacity()) * (size_of::<([u8; 4], u32)>() + 1)
            + self.free.capacity() * 4
            + self.order.capacity() * size_of::<(u32, u32)>()
            + map_buckets(self.published.capacity()) * (size_of::<(u32, Published)>() + 1)
            + self.frags.heap_bytes()
    }

    /// Counts a packet the NAT refused (for the table-wide counters); called
    /// once per refusal by whoever acts on it.
    pub fn count_refusal(&mut self, e: NatDrop) {
        match e {
            NatDrop::TableFull => self.stats.refused_full += 1,
            NatDrop::ShareExceeded => self.stats.refused_share += 1,
            _ => {}
        }
    }

    /// Removes every flow.
    pub fn flush(&mut self) -> usize {
        let n = self.live;
        self.flows.clear();
        self.free.clear();
        self.out_map.clear();
        self.in_map.clear();
        self.frags.clear();
        self.per_inside.clear();
        self.order.clear();
        self.published.clear();
        self.unreplied = 0;
        self.live = 0;
        self.sweep = 0;
        n
    }

    /// Removes the live flow whose original direction (as `nat show` lists
    /// it: its opener's packets) is `proto` from `src` to `dst` (for ICMP
    /// echo the port is the identifier, and `dst`'s port 0). Returns
    /// whether there was one.
    pub fn delete(
        &mut self,
        proto: u8,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
    ) -> bool {
        let (s, d) = (src.ip().octets(), dst.ip().octets());
        let by_out = self
            .out_map
            .get(&out_key(proto, s, src.port(), d, dst.port()))
            .copied()
            .filter(|&i| !self.flows[i as usize].remote_opened);
        let by_in = || {
            self.in_map
                .get(&in_key(proto, s, src.port(), dst.port()))
                .copied()
                .filter(|&i| self.flows[i as usize].remote_opened && Some(d) == self.ext_ip)
        };
        match by_out.or_else(by_in) {
            Some(i) if self.flows[i as usize].live => {
                self.remove(i);
                true
            }
            _ => false,
        }
    }

    /// Removes the flows of one inside address (its port went away): its
    /// own, and the hairpin flows to it as a backend.
    pub fn forget_inside(&mut self, ip: Ipv4Addr) -> usize {
        let ip = ip.octets();
        self.remove_where(|f| f.inside_ip == ip || (f.lan && f.remote_ip == ip))
    }
}

// The tests below use `super::*` for the wire helpers they build packets
// with.
#[cfg(test)]
use crate::wire::{
    checksum,
    ipv4::{self, Ipv4Hdr, get16},
};

#[cfg(test)]
mod tests;
