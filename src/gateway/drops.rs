//! Why the gateway drops a packet, and its counters: one reason per drop,
//! one counter per reason, indexed the same way everywhere (status,
//! metrics, tests).

use super::nat::NatDrop;
use crate::reason::{Drops, Reason};

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
    /// To an address no router forwards to: 0/8, 127/8, 240/4.
    MartianDestination,
    /// With a loose or strict source route option (LSRR, SSRR).
    SourceRoute,
    /// With IP options whose lengths do not add up.
    BadOptions,
    /// An echo request to a broadcast address, from the uplink.
    BroadcastEcho,
    Nat(NatDrop),
}

impl Reason for GwDrop {
    const ALL: &'static [GwDrop] = &[
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
        GwDrop::MartianDestination,
        GwDrop::SourceRoute,
        GwDrop::BadOptions,
        GwDrop::BroadcastEcho,
        GwDrop::Nat(NatDrop::Malformed),
        GwDrop::Nat(NatDrop::Unsupported),
        GwDrop::Nat(NatDrop::NoFlow),
        GwDrop::Nat(NatDrop::TableFull),
        GwDrop::Nat(NatDrop::PortsExhausted),
        GwDrop::Nat(NatDrop::FragmentNoFlow),
        GwDrop::Nat(NatDrop::NoAddress),
        GwDrop::Nat(NatDrop::ShareExceeded),
        GwDrop::Nat(NatDrop::BadChecksum),
        GwDrop::Nat(NatDrop::OutOfWindow),
        GwDrop::Nat(NatDrop::NoBackend),
        GwDrop::Nat(NatDrop::Clash),
    ];

    fn name(self) -> &'static str {
        match self {
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
            GwDrop::MartianDestination => "martian_destination",
            GwDrop::SourceRoute => "source_route",
            GwDrop::BadOptions => "bad_ip_options",
            GwDrop::BroadcastEcho => "echo_to_broadcast",
            GwDrop::Nat(n) => n.name(),
        }
    }
}

impl GwDrop {
    /// How many reasons there are (the size of [`GatewayStats::drops`]).
    pub const COUNT: usize = 26;
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
    pub drops: Drops<GwDrop, { GwDrop::COUNT }>,
}
