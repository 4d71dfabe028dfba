//! The NAT's settings (table size, per-inside share, port range,
//! timeouts) and the reasons it refuses a packet.

use super::*;

/// Flow timeouts in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTimeouts {
    pub tcp_established: Millis,
    /// SYN_SENT, FIN_WAIT, TIME_WAIT.
    pub tcp_transitory: Millis,
    /// After a RST.
    pub tcp_closed: Millis,
    /// A TCP flow picked up mid-stream (its first segment was not a SYN),
    /// until the other end answers: short, so segments that open nothing
    /// (a flood of bare ACKs) do not hold the table (conntrack's loose
    /// pick-up, with its unreplied timeout).
    pub tcp_loose: Millis,
    pub udp: Millis,
    pub icmp: Millis,
}

impl Default for NatTimeouts {
    fn default() -> Self {
        NatTimeouts {
            tcp_established: 7_440_000,
            tcp_transitory: 240_000,
            tcp_closed: 10_000,
            tcp_loose: 30_000,
            udp: 120_000,
            icmp: 30_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    pub max_flows: usize,
    /// Most flows one inside address (one port) may hold: its share of the
    /// table, so one namespace cannot take every flow from the others.
    pub max_per_inside: usize,
    /// External ports for TCP/UDP when the inside port is taken (inclusive).
    pub port_min: u16,
    pub port_max: u16,
    pub timeouts: NatTimeouts,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            max_flows: 65_536,
            max_per_inside: 16_384,
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
    /// A new flow, and its inside address holds its whole share of the
    /// table (`--nat-max-per-port`).
    ShareExceeded,
    /// A TCP segment that would open or change a flow (any new flow; SYN,
    /// FIN, RST) with a wrong checksum: it changes nothing.
    BadChecksum,
    /// A TCP RST or FIN whose sequence number is outside its flow's window
    /// (a blind reset): it changes nothing.
    OutOfWindow,
    /// A new connection to a published front end none of whose backends'
    /// ports is there.
    NoBackend,
    /// A new flow whose translation would take the keys of a live flow
    /// (e.g. a client reaching two published ports with one source port
    /// that land on one backend port): refused, the live flow kept, as
    /// conntrack drops on a tuple clash.
    Clash,
}

impl Reason for NatDrop {
    const ALL: &'static [NatDrop] = &[
        NatDrop::Malformed,
        NatDrop::Unsupported,
        NatDrop::NoFlow,
        NatDrop::TableFull,
        NatDrop::PortsExhausted,
        NatDrop::FragmentNoFlow,
        NatDrop::NoAddress,
        NatDrop::ShareExceeded,
        NatDrop::BadChecksum,
        NatDrop::OutOfWindow,
        NatDrop::NoBackend,
        NatDrop::Clash,
    ];
    fn name(self) -> &'static str {
        match self {
            NatDrop::Malformed => "nat_malformed",
            NatDrop::Unsupported => "nat_unsupported",
            NatDrop::NoFlow => "nat_no_flow",
            NatDrop::TableFull => "nat_table_full",
            NatDrop::PortsExhausted => "nat_ports_exhausted",
            NatDrop::FragmentNoFlow => "nat_fragment_no_flow",
            NatDrop::NoAddress => "nat_no_address",
            NatDrop::ShareExceeded => "nat_port_share_exceeded",
            NatDrop::BadChecksum => "nat_bad_checksum",
            NatDrop::OutOfWindow => "nat_tcp_out_of_window",
            NatDrop::NoBackend => "nat_no_backend",
            NatDrop::Clash => "nat_tuple_clash",
        }
    }
}
