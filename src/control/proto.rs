//! The control protocol between `vswitchctl` and the daemon: the types on
//! the wire, nothing else (the handler is [`super::api`]).
//!
//! Wire format: the client sends one JSON [`Request`] on one line; the daemon
//! answers with one JSON [`Reply`] and closes the connection (or, for a
//! capture, streams pcap). `vswitchctl --json` prints the reply's `result`
//! as it came.

use crate::datapath::PortInfo;
use crate::gateway::nat::{FlowView, FrontView, NatStats};
use crate::gateway::neigh::NeighView;
use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Directory of control sockets: `/run/vswitchd/NAME.sock`.
pub const RUN_DIR: &str = "/run/vswitchd";

pub fn socket_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(RUN_DIR).join(format!("{name}.sock"))
}

/// A command for the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Ports,
    FdbShow,
    FdbFlush {
        port: Option<String>,
    },
    FdbAdd {
        mac: MacAddr,
        port: String,
    },
    FdbDel {
        mac: MacAddr,
    },
    /// The NAT flows; only those of protocol `proto` (`tcp`, `udp`,
    /// `icmp`) and of a namespace (`port`, by name, or `inside`, by
    /// address: its own flows and those to it as a backend) when given.
    NatShow {
        #[serde(default)]
        proto: Option<String>,
        #[serde(default)]
        port: Option<String>,
        #[serde(default)]
        inside: Option<std::net::Ipv4Addr>,
    },
    NatFlush,
    /// Removes one flow, named by its original direction as `nat show`
    /// lists it (for ICMP, `src` carries the identifier as its port and
    /// `dst` port 0).
    NatDel {
        proto: String,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
    },
    Routes,
    Neigh,
    /// The overlay: mode, VNI, own VTEP, the known hosts.
    Overlay,
    /// `NS[=ADDR]`, as on the command line.
    PortAdd {
        spec: String,
        /// Port security for this port (`None`: as `--port-security`).
        #[serde(default)]
        security: Option<bool>,
    },
    PortDel {
        port: String,
    },
    /// The published ports and service addresses, with their backends and
    /// counters.
    PublishShow,
    /// Publishes a front end: `[ADDR:]PORT[/tcp|/udp]=NS:PORT[,NS:PORT...]`,
    /// as `--publish`.
    PublishAdd {
        spec: String,
    },
    /// Withdraws a front end (`[ADDR:]PORT[/tcp|/udp]`) and ends its flows.
    PublishDel {
        front: String,
    },
    /// A live stream of events, one JSON object per line, until the client
    /// goes (see [`crate::datapath::events::Event`]).
    Monitor,
    /// Sets the log filter (as `--log-level`) while the daemon runs.
    LogLevel {
        level: String,
    },
    /// What the switch would do with a frame received on `port` (or on the
    /// uplink, with `uplink`).
    Trace {
        #[serde(default)]
        port: String,
        #[serde(default)]
        uplink: bool,
        frame: String,
    },
    /// Stream pcapng (or pcap) of the frames crossing these points (no ports and no
    /// flags: every port and the gateway), stopping after `count` frames.
    Capture {
        #[serde(default)]
        ports: Vec<String>,
        #[serde(default)]
        uplink: bool,
        #[serde(default)]
        gateway: bool,
        count: Option<u64>,
        /// Classic pcap instead of pcapng.
        #[serde(default)]
        pcap: bool,
    },
}

/// The daemon's answer: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok<T: Serialize>(v: T) -> Reply {
        Reply {
            ok: true,
            result: Some(serde_json::to_value(v).expect("reply serializes")),
            error: None,
        }
    }
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            result: None,
            error: Some(msg.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    pub name: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub subnet: String,
    pub gateway: String,
    pub mtu: u32,
    pub ports: usize,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: Option<String>,
    /// Live capture sessions and the frames they dropped (slow readers).
    pub captures: usize,
    pub capture_dropped: u64,
    pub fdb: FdbSummary,
    pub gateway_port: GatewayReport,
    /// The DNS server (`None` with `--no-dns`).
    #[serde(default)]
    pub dns: Option<crate::gateway::DnsView>,
    /// Where the heap is (absent from an older daemon).
    #[serde(default)]
    pub memory: MemoryReport,
    /// Frames read by each datapath thread (`--workers`; 0: the event
    /// loop). Absent from an older daemon.
    #[serde(default)]
    pub thread_frames: Vec<u64>,
}

/// Heap bytes: the bounded tables' own figures (from their capacities) and
/// the allocator's, to tell a table filling to its bound from memory the
/// allocator holds (`malloc_*` are `null` without glibc).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryReport {
    /// The NAT: flows, both maps, the eviction queue, fragment records.
    pub nat: usize,
    /// The MAC table.
    pub fdb: usize,
    /// Allocated and not freed (arenas and mmapped chunks).
    pub malloc_in_use: Option<usize>,
    /// Freed but kept by the allocator (not returned to the system).
    pub malloc_free: Option<usize>,
    /// Of `malloc_in_use`, the chunks mmapped on their own.
    pub malloc_mmapped: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayReport {
    pub mac: MacAddr,
    pub address: String,
    pub uplink: Option<UplinkReport>,
    pub nat: Option<NatSummary>,
    /// Published ports and service addresses, with per-backend counters.
    #[serde(default)]
    pub published: Vec<FrontView>,
    pub routed_out: u64,
    pub routed_in: u64,
    pub routed_lan: u64,
    pub to_stack: u64,
    pub icmp_errors_sent: u64,
    pub arp_requests_sent: u64,
    pub fragmented: u64,
    /// Gateway drops by reason (non-zero only).
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UplinkReport {
    pub ifname: String,
    /// `up`, `down` (no carrier, or set down) or `gone` (deleted).
    #[serde(default)]
    pub state: String,
    /// Seconds in that state.
    #[serde(default)]
    pub state_secs: u64,
    pub mac: MacAddr,
    /// `null` while DHCP has not given one.
    pub address: Option<String>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Of `tx_packets`: UDP datagrams sent in super-frames, and the
    /// super-frames (one send each) that carried them.
    #[serde(default)]
    pub tx_coalesced: u64,
    #[serde(default)]
    pub tx_super_frames: u64,
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatSummary {
    pub flows: usize,
    pub max: usize,
    #[serde(flatten)]
    pub stats: NatStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatShowReply {
    pub flows: Vec<FlowView>,
    pub summary: Option<NatSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeighRow {
    pub dev: String,
    #[serde(flatten)]
    pub entry: NeighView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbSummary {
    pub size: usize,
    pub max: usize,
    pub aging_secs: u64,
    pub learned: u64,
    pub expired: u64,
    pub evicted: u64,
    pub moved: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortReport {
    #[serde(flatten)]
    pub info: PortInfo,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Of `tx_packets`: UDP datagrams that went in super-frames, and the
    /// super-frames (one write each) that carried them.
    #[serde(default)]
    pub tx_coalesced: u64,
    #[serde(default)]
    pub tx_super_frames: u64,
    /// Drops by reason (only reasons with a non-zero count).
    pub drops: BTreeMap<String, u64>,
    /// The TAP's MTU (the switch's `--mtu`).
    #[serde(default)]
    pub mtu: u32,
    /// `up`, or `down` while writes to the port fail (its interface is
    /// down in the namespace).
    #[serde(default)]
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbRow {
    pub port: String,
    pub mac: MacAddr,
    /// Seconds since last seen; `null` for static entries.
    pub age: Option<u64>,
    /// For an entry on the overlay port: the remote host's VTEP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbShowReply {
    pub entries: Vec<FdbRow>,
    #[serde(flatten)]
    pub summary: FdbSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceReply {
    /// The frame traced, as hex.
    pub frame: String,
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountReply {
    pub removed: usize,
}
