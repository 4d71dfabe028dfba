//! The switch's port slots: what it knows about each port (name, MAC,
//! address) and the counters it keeps for it, plus the log rate limiter
//! for per-frame events.

use crate::reason::Drops;
use crate::switch::{DropReason, Millis};
use crate::wire::MacAddr;
use crate::wire::coalesce::UdpRun;
use std::net::Ipv4Addr;

/// Static facts about a port, shown by `vswitchctl ports`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PortInfo {
    /// The namespace name; also the port's name.
    pub name: String,
    pub ifname: String,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// Port security: frames must carry this port's MAC and address.
    #[serde(default)]
    pub security: bool,
}

impl PortInfo {
    /// The identity the port's frames must carry, if secured.
    pub fn guard(&self) -> Option<crate::switch::Guard> {
        self.security.then_some(crate::switch::Guard {
            mac: self.mac,
            addr: self.addr,
        })
    }
}

/// Per-port counters. Drops are counted on the port where they happened:
/// ingress for decision drops, egress for transmit drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Of `tx_packets`, datagrams written to the port inside UDP
    /// super-frames, and how many super-frames carried them (one write
    /// each; `wire::coalesce`).
    pub tx_coalesced: u64,
    pub tx_super_frames: u64,
    pub drops: Drops<DropReason, { DropReason::COUNT }>,
    /// The last write to the port failed (not for a full queue) and nothing
    /// has come from it since: a TAP whose interface is down in its
    /// namespace refuses writes (EIO). `vswitchctl ports` says `down`.
    pub tx_failing: bool,
}

impl PortCounters {
    pub fn drop_total(&self) -> u64 {
        self.drops.total()
    }

    /// The port's state as forwarding sees it: `up`, or `down` while
    /// writes to it fail.
    pub fn state(&self) -> &'static str {
        if self.tx_failing { "down" } else { "up" }
    }
}

/// A port in the switch.
pub struct PortSlot<P> {
    pub port: P,
    pub info: PortInfo,
    pub counters: PortCounters,
    /// The kernel refused a UDP super-frame on this port: none are sent.
    pub coalesce_refused: bool,
    /// Unique over the switch's life (ids are reused, serials never): what
    /// a worker checks before it writes a deferred frame to port `id`.
    pub serial: u64,
}

/// Rate limiter for log lines about events that can repeat per frame.
#[derive(Default)]
pub(super) struct LogLimit {
    last: Option<Millis>,
    suppressed: u64,
}

impl LogLimit {
    const INTERVAL_MS: Millis = 10_000;
    /// Whether to log now; returns how many were suppressed since the last.
    pub(super) fn allow(&mut self, now: Millis) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_sub(t) < Self::INTERVAL_MS => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The uplink and its counters.
pub struct UplinkSlot<U> {
    pub port: U,
    pub ifname: String,
    pub counters: PortCounters,
    /// Up, down or gone, and since when (loop time).
    pub state: LinkState,
    pub since: Millis,
    /// UDP datagrams gathered for the uplink, not yet sent (empty between
    /// the switch's calls).
    pub(super) run: UdpRun,
    /// The kernel refused a UDP super-frame on the uplink: none are sent.
    pub coalesce_refused: bool,
}

impl<U> UplinkSlot<U> {
    /// The uplink `port` (named `ifname`), up since `now`.
    pub fn new(port: U, ifname: String, now: Millis) -> Self {
        UplinkSlot {
            port,
            ifname,
            counters: PortCounters::default(),
            state: LinkState::Up,
            since: now,
            run: UdpRun::new(),
            coalesce_refused: false,
        }
    }
}

/// The uplink interface's state, from rtnetlink's announcements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Up with a carrier: frames go out.
    #[default]
    Up,
    /// Down, or no carrier: frames to it are dropped (`uplink_down`).
    Down,
    /// Deleted: frames to it are dropped until an interface of that name
    /// is back, which is then opened again.
    Gone,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Gone => "gone",
        }
    }
}
