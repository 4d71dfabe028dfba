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
//!   before its first fragment is dropped (`fragment_no_flow`).
//! * **Bounded**: at `max_flows` new flows are refused (`table_full`) and
//!   existing flows are untouched.
//! * Inbound packets that match no flow are dropped (`no_flow`): nothing from
//!   outside reaches the inside unasked.

use crate::hash::FastMap;
use crate::switch::Millis;
use crate::wire::checksum;
use crate::wire::ipv4::{
    self, DST, Ipv4Hdr, PROTO_ICMP, PROTO_TCP, PROTO_UDP, SRC, get16, icmp_is_error, set_addr,
    set_port,
};
use std::net::Ipv4Addr;

/// How long a fragment-tracking entry lives.
const FRAG_TTL_MS: Millis = 30_000;
/// Most fragment-tracking entries.
const FRAG_MAX: usize = 8192;

/// Flow timeouts in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTimeouts {
    pub tcp_established: Millis,
    /// SYN_SENT, FIN_WAIT, TIME_WAIT.
    pub tcp_transitory: Millis,
    /// After a RST.
    pub tcp_closed: Millis,
    pub udp: Millis,
    pub icmp: Millis,
}

impl Default for NatTimeouts {
    fn default() -> Self {
        NatTimeouts {
            tcp_established: 7_440_000,
            tcp_transitory: 240_000,
            tcp_closed: 10_000,
            udp: 120_000,
            icmp: 30_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    pub max_flows: usize,
    /// External ports for TCP/UDP when the inside port is taken (inclusive).
    pub port_min: u16,
    pub port_max: u16,
    pub timeouts: NatTimeouts,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            max_flows: 65_536,
            port_min: 1024,
            port_max: 65_535,
            timeouts: NatTimeouts::default(),
        }
    }
}

/// Why the NAT refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatDrop {
    /// Not a sane IPv4 packet, or an L4 header too short.
    Malformed,
    /// A protocol the NAT does not translate (only TCP, UDP, ICMP echo and
    /// ICMP errors pass).
    Unsupported,
    /// Inbound, and no flow matches.
    NoFlow,
    /// A new flow, and the table is full.
    TableFull,
    /// No external port free for this remote endpoint.
    PortsExhausted,
    /// A later fragment whose first fragment was not seen.
    FragmentNoFlow,
    /// The uplink has no address yet (DHCP pending).
    NoAddress,
}

impl NatDrop {
    pub const ALL: [NatDrop; 7] = [
        NatDrop::Malformed,
        NatDrop::Unsupported,
        NatDrop::NoFlow,
        NatDrop::TableFull,
        NatDrop::PortsExhausted,
        NatDrop::FragmentNoFlow,
        NatDrop::NoAddress,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            NatDrop::Malformed => "nat_malformed",
            NatDrop::Unsupported => "nat_unsupported",
            NatDrop::NoFlow => "nat_no_flow",
            NatDrop::TableFull => "nat_table_full",
            NatDrop::PortsExhausted => "nat_ports_exhausted",
            NatDrop::FragmentNoFlow => "nat_fragment_no_flow",
            NatDrop::NoAddress => "nat_no_address",
        }
    }
}

/// TCP connection state as the NAT tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
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
    fin_out: bool,
    fin_in: bool,
    replied: bool,
    live: bool,
    generation: u32,
    expires: Millis,
    packets_out: u64,
    packets_in: u64,
}

/// What the NAT would do with a packet ([`Nat::peek_outbound`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    Existing {
        flow: String,
        translated: String,
        expires_in_secs: u64,
    },
    New {
        flow: String,
        translated: String,
    },
    /// A later fragment follows its first fragment's flow.
    LaterFragment,
    /// An ICMP error: its quoted header would be translated too.
    IcmpError,
}

impl std::fmt::Display for Peek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peek::Existing {
                flow,
                translated,
                expires_in_secs,
            } => write!(
                f,
                "existing flow {flow}, translated to {translated} ({expires_in_secs} s left)"
            ),
            Peek::New { flow, translated } => {
                write!(
                    f,
                    "new flow {flow} would be created, translated to {translated}"
                )
            }
            Peek::LaterFragment => write!(f, "a later fragment: follows its first fragment's flow"),
            Peek::IcmpError => write!(
                f,
                "an ICMP error: translated with the quoted header if it belongs to a flow"
            ),
        }
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        _ => "icmp",
    }
}

/// Table-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatStats {
    pub created: u64,
    pub expired: u64,
    pub refused_full: u64,
    pub translated_out: u64,
    pub translated_in: u64,
    pub icmp_errors_translated: u64,
}

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

/// The L4 "ports" of a packet: (source, destination) for TCP/UDP, (id, 0)
/// for ICMP echo.
struct L4 {
    sport: u16,
    dport: u16,
    /// TCP flags (0 for UDP and ICMP).
    tcp_flags: u8,
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
    frags: FastMap<u128, (u32, u32, Millis)>,
    live: usize,
    sweep: usize,
    alloc_seed: u64,
    stats: NatStats,
}

enum Dir {
    Out,
    In,
}

impl Nat {
    pub fn new(cfg: NatConfig, ext_ip: Option<Ipv4Addr>) -> Nat {
        Nat {
            cfg,
            ext_ip: ext_ip.map(|a| a.octets()),
            flows: Vec::new(),
            free: Vec::new(),
            out_map: FastMap::default(),
            in_map: FastMap::default(),
            frags: FastMap::default(),
            live: 0,
            sweep: 0,
            alloc_seed: 0x243f_6a88_85a3_08d3,
            stats: NatStats::default(),
        }
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

    /// Approximate heap bytes (for the bytes-per-flow bench figure).
    pub fn heap_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(u128, u32)>() + 1;
        self.flows.capacity() * std::mem::size_of::<Flow>()
            + (self.out_map.capacity() + self.in_map.capacity()) * bucket
            + self.free.capacity() * 4
    }

    /// Removes every flow.
    pub fn flush(&mut self) -> usize {
        let n = self.live;
        self.flows.clear();
        self.free.clear();
        self.out_map.clear();
        self.in_map.clear();
        self.frags.clear();
        self.live = 0;
        self.sweep = 0;
        n
    }

    /// Removes the flows of one inside address (its port went away).
    pub fn forget_inside(&mut self, ip: Ipv4Addr) -> usize {
        let ip = ip.octets();
        let idxs: Vec<u32> = (0..self.flows.len() as u32)
            .filter(|&i| {
                let f = &self.flows[i as usize];
                f.live && f.inside_ip == ip
            })
            .collect();
        for &i in &idxs {
            self.remove(i);
        }
        idxs.len()
    }

    fn timeout_of(&self, f: &Flow) -> Millis {
        let t = &self.cfg.timeouts;
        match f.proto {
            PROTO_TCP => match f.tcp {
                TcpState::Established => t.tcp_established,
                TcpState::Closed => t.tcp_closed,
                _ => t.tcp_transitory,
            },
            PROTO_UDP => t.udp,
            _ => t.icmp,
        }
    }

    fn remove(&mut self, idx: u32) {
        let f = self.flows[idx as usize];
        if !f.live {
            return;
        }
        self.out_map.remove(&out_key(
            f.proto,
            f.inside_ip,
            f.inside_port,
            f.remote_ip,
            f.remote_port,
        ));
        self.in_map
            .remove(&in_key(f.proto, f.remote_ip, f.remote_port, f.ext_port));
        self.flows[idx as usize].live = false;
        self.free.push(idx);
        self.live -= 1;
    }

    /// Sweeps up to `budget` slots for expired flows (and expired fragment
    /// entries when the sweep wraps). Returns how many flows were removed.
    pub fn expire(&mut self, now: Millis, budget: usize) -> usize {
        let mut removed = 0;
        let n = self.flows.len();
        for _ in 0..budget.min(n) {
            if self.sweep >= n {
                self.sweep = 0;
                self.frags.retain(|_, (_, _, exp)| *exp > now);
            }
            let i = self.sweep;
            self.sweep += 1;
            let f = &self.flows[i];
            if f.live && f.expires <= now {
                self.remove(i as u32);
                removed += 1;
            }
        }
        self.stats.expired += removed as u64;
        removed
    }

    /// Looks up a live, unexpired flow; an expired one is removed on sight.
    fn get(&mut self, map_out: bool, key: u128, now: Millis) -> Option<u32> {
        let idx = *if map_out {
            self.out_map.get(&key)
        } else {
            self.in_map.get(&key)
        }?;
        if self.flows[idx as usize].expires <= now {
            self.remove(idx);
            self.stats.expired += 1;
            return None;
        }
        Some(idx)
    }

    /// Keeps `want` if the inbound key it makes is free; otherwise tries up
    /// to `ALLOC_TRIES` random ports of the range (Linux bounds its search
    /// the same way), so a crowded remote endpoint costs bounded work.
    fn alloc_port(&mut self, proto: u8, r_ip: [u8; 4], r_port: u16, want: u16) -> Option<u16> {
        const ALLOC_TRIES: u32 = 128;
        let free = |s: &Self, p: u16| !s.in_map.contains_key(&in_key(proto, r_ip, r_port, p));
        if free(self, want) {
            return Some(want);
        }
        let (lo, hi) = if proto == PROTO_ICMP {
            (0u32, 65_535u32)
        } else {
            (self.cfg.port_min as u32, self.cfg.port_max as u32)
        };
        let n = hi - lo + 1;
        for _ in 0..ALLOC_TRIES.min(n) {
            self.alloc_seed = self
                .alloc_seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(
                    1_442_695_040_888_963_407 ^ (want as u64) ^ (u32::from_be_bytes(r_ip) as u64),
                );
            let p = (lo + ((self.alloc_seed >> 33) as u32 % n)) as u16;
            if free(self, p) {
                return Some(p);
            }
        }
        // A small range: finish with a full scan so no free port is missed.
        if n <= ALLOC_TRIES * 4 {
            return (lo..=hi).map(|p| p as u16).find(|&p| free(self, p));
        }
        None
    }

    fn create(
        &mut self,
        proto: u8,
        inside_ip: [u8; 4],
        inside_port: u16,
        remote_ip: [u8; 4],
        remote_port: u16,
        now: Millis,
    ) -> Result<u32, NatDrop> {
        if self.live >= self.cfg.max_flows {
            self.stats.refused_full += 1;
            return Err(NatDrop::TableFull);
        }
        let ext_port = self
            .alloc_port(proto, remote_ip, remote_port, inside_port)
            .ok_or(NatDrop::PortsExhausted)?;
        let mut f = Flow {
            proto,
            inside_ip,
            inside_port,
            remote_ip,
            remote_port,
            ext_port,
            tcp: TcpState::SynSent,
            fin_out: false,
            fin_in: false,
            replied: false,
            live: true,
            generation: 0,
            expires: now,
            packets_out: 0,
            packets_in: 0,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                f.generation = self.flows[i as usize].generation.wrapping_add(1);
                self.flows[i as usize] = f;
                i
            }
            None => {
                self.flows.push(f);
                (self.flows.len() - 1) as u32
            }
        };
        self.out_map.insert(
            out_key(proto, inside_ip, inside_port, remote_ip, remote_port),
            idx,
        );
        self.in_map
            .insert(in_key(proto, remote_ip, remote_port, ext_port), idx);
        self.live += 1;
        self.stats.created += 1;
        Ok(idx)
    }

    /// Advances TCP state and the expiry after a packet in direction `dir`.
    fn touch(&mut self, idx: u32, dir: Dir, tcp_flags: u8, now: Millis) {
        let f = &mut self.flows[idx as usize];
        match dir {
            Dir::Out => f.packets_out += 1,
            Dir::In => {
                f.packets_in += 1;
                f.replied = true;
            }
        }
        if f.proto == PROTO_TCP {
            if tcp_flags & TCP_RST != 0 {
                f.tcp = TcpState::Closed;
            } else {
                if tcp_flags & TCP_FIN != 0 {
                    match dir {
                        Dir::Out => f.fin_out = true,
                        Dir::In => f.fin_in = true,
                    }
                }
                f.tcp = match f.tcp {
                    TcpState::Closed if tcp_flags & TCP_SYN != 0 => TcpState::SynSent,
                    TcpState::Closed => TcpState::Closed,
                    _ if f.fin_out && f.fin_in => TcpState::TimeWait,
                    _ if f.fin_out || f.fin_in => TcpState::FinWait,
                    TcpState::SynSent
                        if matches!(dir, Dir::In)
                            && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK =>
                    {
                        TcpState::Established
                    }
                    // Picked up mid-stream (e.g. after a restart): no SYN.
                    TcpState::SynSent if f.packets_out == 1 && tcp_flags & TCP_SYN == 0 => {
                        TcpState::Established
                    }
                    s => s,
                };
            }
        }
        let t = self.timeout_of(&self.flows[idx as usize]);
        self.flows[idx as usize].expires = now + t;
    }

    fn l4(b: &[u8], h: &Ipv4Hdr) -> Result<L4, NatDrop> {
        let l4 = h.ihl;
        let len = h.total_len - h.ihl;
        match h.proto {
            PROTO_TCP if len >= 20 => Ok(L4 {
                sport: get16(b, l4),
                dport: get16(b, l4 + 2),
                tcp_flags: b[l4 + 13],
            }),
            PROTO_UDP if len >= 8 => Ok(L4 {
                sport: get16(b, l4),
                dport: get16(b, l4 + 2),
                tcp_flags: 0,
            }),
            PROTO_ICMP if len >= 8 => Ok(L4 {
                sport: get16(b, l4 + 4),
                dport: 0,
                tcp_flags: 0,
            }),
            PROTO_TCP | PROTO_UDP | PROTO_ICMP => Err(NatDrop::Malformed),
            _ => Err(NatDrop::Unsupported),
        }
    }

    fn frag_record(&mut self, key: u128, idx: u32, now: Millis) {
        if self.frags.len() >= FRAG_MAX {
            self.frags.retain(|_, (_, _, exp)| *exp > now);
            if self.frags.len() >= FRAG_MAX {
                return;
            }
        }
        let generation = self.flows[idx as usize].generation;
        self.frags.insert(key, (idx, generation, now + FRAG_TTL_MS));
    }

    fn frag_lookup(&self, key: u128, now: Millis) -> Option<u32> {
        let &(idx, generation, exp) = self.frags.get(&key)?;
        let f = self.flows.get(idx as usize)?;
        (exp > now && f.live && f.generation == generation).then_some(idx)
    }

    /// Translates a packet going out of the uplink: the source becomes the
    /// external address and port. `b` is exactly the IPv4 packet.
    pub fn outbound(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.outbound_with(b, now, false)
    }

    /// [`Nat::outbound`] for a TCP/UDP packet whose L4 checksum is left for
    /// offload (a virtio-net `NEEDS_CSUM` frame or super-frame): the
    /// checksum field holds the pseudo-header sum, so only the address change
    /// is folded into it; the port change is covered when the checksum is
    /// completed (by the kernel or by segmentation).
    pub fn outbound_partial(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.outbound_with(b, now, true)
    }

    /// [`Nat::inbound`] for a packet whose L4 checksum is left for offload.
    pub fn inbound_partial(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.inbound_with(b, now, true)
    }

    fn outbound_with(&mut self, b: &mut [u8], now: Millis, partial: bool) -> Result<(), NatDrop> {
        let ext = self.ext_ip.ok_or(NatDrop::NoAddress)?;
        let h = Ipv4Hdr::parse(b).ok_or(NatDrop::Malformed)?;
        let b = &mut b[..h.total_len];
        if !h.has_l4() {
            self.frag_lookup(frag_key(h.proto, h.src, h.dst, h.id), now)
                .ok_or(NatDrop::FragmentNoFlow)?;
            set_addr(b, SRC.start, ext, None);
            self.stats.translated_out += 1;
            return Ok(());
        }
        if h.proto == PROTO_ICMP && h.total_len - h.ihl >= 8 {
            let t = b[h.ihl];
            if icmp_is_error(t) {
                return self.icmp_error(b, &h, Dir::Out, ext, now);
            }
            if t != ipv4::ICMP_ECHO_REQUEST {
                return Err(NatDrop::Unsupported);
            }
        }
        let l4 = Self::l4(b, &h)?;
        let key = out_key(h.proto, h.src, l4.sport, h.dst, l4.dport);
        let idx = match self.get(true, key, now) {
            Some(i) => i,
            None => self.create(h.proto, h.src, l4.sport, h.dst, l4.dport, now)?,
        };
        self.touch(idx, Dir::Out, l4.tcp_flags, now);
        let ext_port = self.flows[idx as usize].ext_port;
        if partial && h.proto != PROTO_ICMP {
            ipv4::set_addr_partial(b, SRC.start, ext, h.ihl, h.proto);
            b[h.ihl..h.ihl + 2].copy_from_slice(&ext_port.to_be_bytes());
        } else {
            set_addr(b, SRC.start, ext, Some((h.ihl, h.proto)));
            if ext_port != l4.sport {
                let (at, csum) = if h.proto == PROTO_ICMP {
                    (h.ihl + 4, h.ihl + 2)
                } else {
                    (
                        h.ihl,
                        h.ihl + ipv4::l4_checksum_offset(h.proto).unwrap_or(0),
                    )
                };
                set_port(b, at, ext_port, csum, h.proto);
            }
        }
        if h.more_frags {
            self.frag_record(frag_key(h.proto, h.src, h.dst, h.id), idx, now);
        }
        self.stats.translated_out += 1;
        Ok(())
    }

    /// Translates a packet that came in on the uplink for the external
    /// address: the destination becomes the inside host and port.
    pub fn inbound(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.inbound_with(b, now, false)
    }

    fn inbound_with(&mut self, b: &mut [u8], now: Millis, partial: bool) -> Result<(), NatDrop> {
        let ext = self.ext_ip.ok_or(NatDrop::NoAddress)?;
        if b.len() >= 20 && b[DST] != ext {
            return Err(NatDrop::NoFlow);
        }
        let h = Ipv4Hdr::parse(b).ok_or(NatDrop::Malformed)?;
        let b = &mut b[..h.total_len];
        if !h.has_l4() {
            let idx = self
                .frag_lookup(frag_key(h.proto, h.src, h.dst, h.id), now)
                .ok_or(NatDrop::FragmentNoFlow)?;
            let inside = self.flows[idx as usize].inside_ip;
            set_addr(b, DST.start, inside, None);
            self.stats.translated_in += 1;
            return Ok(());
        }
        if h.proto == PROTO_ICMP && h.total_len - h.ihl >= 8 {
            let t = b[h.ihl];
            if icmp_is_error(t) {
                return self.icmp_error(b, &h, Dir::In, ext, now);
            }
            if t != ipv4::ICMP_ECHO_REPLY {
                return Err(NatDrop::NoFlow);
            }
        }
        let l4 = Self::l4(b, &h)?;
        // Inbound: source is the remote end, destination port the external one.
        let (r_port, ext_port) = if h.proto == PROTO_ICMP {
            (0, l4.sport)
        } else {
            (l4.sport, l4.dport)
        };
        let idx = self
            .get(false, in_key(h.proto, h.src, r_port, ext_port), now)
            .ok_or(NatDrop::NoFlow)?;
        self.touch(idx, Dir::In, l4.tcp_flags, now);
        let f = self.flows[idx as usize];
        if partial && h.proto != PROTO_ICMP {
            ipv4::set_addr_partial(b, DST.start, f.inside_ip, h.ihl, h.proto);
            b[h.ihl + 2..h.ihl + 4].copy_from_slice(&f.inside_port.to_be_bytes());
        } else {
            set_addr(b, DST.start, f.inside_ip, Some((h.ihl, h.proto)));
        }
        if !partial && f.inside_port != ext_port {
            let (at, csum) = if h.proto == PROTO_ICMP {
                (h.ihl + 4, h.ihl + 2)
            } else {
                (
                    h.ihl + 2,
                    h.ihl + ipv4::l4_checksum_offset(h.proto).unwrap_or(0),
                )
            };
            set_port(b, at, f.inside_port, csum, h.proto);
        }
        if h.more_frags {
            self.frag_record(frag_key(h.proto, h.src, h.dst, h.id), idx, now);
        }
        self.stats.translated_in += 1;
        Ok(())
    }

    /// Translates an ICMP error about a tracked flow. Inbound: the quoted
    /// packet is one we sent (source = external address and port). Outbound:
    /// the quoted packet is one the inside host received (destination = its
    /// address and port).
    fn icmp_error(
        &mut self,
        b: &mut [u8],
        h: &Ipv4Hdr,
        dir: Dir,
        ext: [u8; 4],
        _now: Millis,
    ) -> Result<(), NatDrop> {
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
        let esrc: [u8; 4] = b[e + 12..e + 16].try_into().unwrap();
        let edst: [u8; 4] = b[e + 16..e + 20].try_into().unwrap();
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
        .filter(|&i| self.flows[i as usize].live)
        .ok_or(NatDrop::NoFlow)?;
        let f = self.flows[idx as usize];
        let quoted = &mut b[e..];
        let qcsum = ipv4::l4_checksum_offset(eproto).map(|o| eihl + o);
        let (addr_at, new_addr, port_at, new_port) = match dir {
            Dir::In => (
                SRC.start,
                f.inside_ip,
                if eproto == PROTO_ICMP { eihl + 4 } else { eihl },
                f.inside_port,
            ),
            Dir::Out => (
                DST.start,
                ext,
                if eproto == PROTO_ICMP {
                    eihl + 4
                } else {
                    eihl + 2
                },
                f.ext_port,
            ),
        };
        set_addr(quoted, addr_at, new_addr, Some((eihl, eproto)));
        if let Some(c) = qcsum {
            set_port(quoted, port_at, new_port, c, eproto);
        } else {
            quoted[port_at..port_at + 2].copy_from_slice(&new_port.to_be_bytes());
        }
        match dir {
            Dir::In => set_addr(b, DST.start, f.inside_ip, None),
            Dir::Out => set_addr(b, SRC.start, ext, None),
        }
        // The ICMP checksum covers the quoted packet: recompute it.
        let l4 = h.ihl;
        b[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[l4..h.total_len]);
        b[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        self.stats.icmp_errors_translated += 1;
        Ok(())
    }

    /// What [`Nat::outbound`] would do with packet `b`, without doing it:
    /// the existing flow it belongs to, or the flow it would create.
    pub fn peek_outbound(&self, b: &[u8], now: Millis) -> Result<Peek, NatDrop> {
        let ext = self.ext_ip.ok_or(NatDrop::NoAddress)?;
        let h = Ipv4Hdr::parse(b).ok_or(NatDrop::Malformed)?;
        if !h.has_l4() {
            return Ok(Peek::LaterFragment);
        }
        if h.proto == PROTO_ICMP && h.total_len - h.ihl >= 8 {
            let t = b[h.ihl];
            if icmp_is_error(t) {
                return Ok(Peek::IcmpError);
            }
            if t != ipv4::ICMP_ECHO_REQUEST {
                return Err(NatDrop::Unsupported);
            }
        }
        let l4 = Self::l4(b, &h)?;
        let ip = |a: [u8; 4]| Ipv4Addr::from(a);
        let flow = format!(
            "{} {}:{} -> {}:{}",
            proto_name(h.proto),
            ip(h.src),
            l4.sport,
            ip(h.dst),
            l4.dport
        );
        let key = out_key(h.proto, h.src, l4.sport, h.dst, l4.dport);
        if let Some(&idx) = self.out_map.get(&key) {
            let f = &self.flows[idx as usize];
            if f.live && f.expires > now {
                return Ok(Peek::Existing {
                    flow,
                    translated: format!("{}:{}", ip(ext), f.ext_port),
                    expires_in_secs: (f.expires - now).div_ceil(1000),
                });
            }
        }
        if self.live >= self.cfg.max_flows {
            return Err(NatDrop::TableFull);
        }
        let kept = !self
            .in_map
            .contains_key(&in_key(h.proto, h.dst, l4.dport, l4.sport));
        Ok(Peek::New {
            flow,
            translated: if kept {
                format!("{}:{} (port kept)", ip(ext), l4.sport)
            } else {
                format!(
                    "{}:<a free port of {}-{}> ({} is taken for that remote end)",
                    ip(ext),
                    self.cfg.port_min,
                    self.cfg.port_max,
                    l4.sport
                )
            },
        })
    }

    /// What [`Nat::inbound`] would do with packet `b`, without doing it: the
    /// flow it belongs to (and where it is translated to), or `NoFlow`.
    pub fn peek_inbound(&self, b: &[u8], now: Millis) -> Result<Peek, NatDrop> {
        let ext = self.ext_ip.ok_or(NatDrop::NoAddress)?;
        let h = Ipv4Hdr::parse(b).ok_or(NatDrop::Malformed)?;
        if h.dst != ext {
            return Err(NatDrop::NoFlow);
        }
        if !h.has_l4() {
            return Ok(Peek::LaterFragment);
        }
        if h.proto == PROTO_ICMP && h.total_len - h.ihl >= 8 {
            let t = b[h.ihl];
            if icmp_is_error(t) {
                return Ok(Peek::IcmpError);
            }
            if t != ipv4::ICMP_ECHO_REPLY {
                return Err(NatDrop::NoFlow);
            }
        }
        let l4 = Self::l4(b, &h)?;
        let (r_port, ext_port) = if h.proto == PROTO_ICMP {
            (0, l4.sport)
        } else {
            (l4.sport, l4.dport)
        };
        let idx = *self
            .in_map
            .get(&in_key(h.proto, h.src, r_port, ext_port))
            .ok_or(NatDrop::NoFlow)?;
        let f = &self.flows[idx as usize];
        if !f.live || f.expires <= now {
            return Err(NatDrop::NoFlow);
        }
        let ip = |a: [u8; 4]| Ipv4Addr::from(a);
        Ok(Peek::Existing {
            flow: format!(
                "{} {}:{} -> {}:{}",
                proto_name(h.proto),
                ip(h.src),
                r_port,
                ip(ext),
                ext_port
            ),
            translated: format!("{}:{}", ip(f.inside_ip), f.inside_port),
            expires_in_secs: (f.expires - now).div_ceil(1000),
        })
    }

    /// The live flows, for `nat show`.
    pub fn flows(&self, now: Millis) -> Vec<FlowView> {
        let ext = self.ext_ip.map(Ipv4Addr::from);
        let ext = ext.map_or_else(|| "-".to_string(), |a| a.to_string());
        let mut v: Vec<FlowView> = self
            .flows
            .iter()
            .filter(|f| f.live && f.expires > now)
            .map(|f| {
                let (proto, state) = match f.proto {
                    PROTO_TCP => (
                        "tcp",
                        match f.tcp {
                            TcpState::SynSent => "SYN_SENT",
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
                FlowView {
                    proto: proto.into(),
                    inside: format!("{}:{}", ip(f.inside_ip), f.inside_port),
                    translated: format!("{ext}:{}", f.ext_port),
                    remote: format!("{}:{}", ip(f.remote_ip), f.remote_port),
                    state: state.into(),
                    expires_in_secs: (f.expires - now).div_ceil(1000),
                    packets_out: f.packets_out,
                    packets_in: f.packets_in,
                }
            })
            .collect();
        v.sort_by(|a, b| (&a.proto, &a.inside, &a.remote).cmp(&(&b.proto, &b.inside, &b.remote)));
        v
    }
}

#[cfg(test)]
mod tests;
