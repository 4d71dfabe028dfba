//! The reports the control handler answers with, built from the running
//! [`Switch`]: `status` (the MAC table's summary, the gateway and its
//! uplink, the NAT, memory), a port's counters, and the rows of `fdb show`.

use super::Instance;
use super::proto::*;
use crate::datapath::{GW_PORT, PortCounters, PortInfo, Switch};
use crate::port::Port;
use crate::switch::fdb::EntryView;
use crate::switch::{FdbStats, Millis};
use crate::wire::MacAddr;
use std::collections::BTreeMap;

pub(super) fn drops_map(c: &PortCounters) -> BTreeMap<String, u64> {
    c.drops.nonzero().map(|(n, v)| (n.to_string(), v)).collect()
}

pub(super) fn nat_summary<P: Port, U: Port>(sw: &Switch<P, U>) -> Option<NatSummary> {
    sw.gateway().nat().map(|n| NatSummary {
        flows: n.len(),
        max: n.config().max_flows,
        stats: n.stats(),
    })
}

pub(super) fn gateway_report<P: Port, U: Port>(sw: &Switch<P, U>, now: Millis) -> GatewayReport {
    let g = sw.gateway();
    let st = g.stats();
    let mut drops: BTreeMap<String, u64> = st
        .drops
        .nonzero()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    for (k, v) in drops_map(sw.gateway_counters()) {
        *drops.entry(k).or_default() += v;
    }
    GatewayReport {
        mac: g.mac(),
        address: g.lan_ip().to_string(),
        uplink: sw.uplink().map(|u| UplinkReport {
            ifname: u.ifname.clone(),
            state: u.state.name().to_string(),
            state_secs: now.saturating_sub(u.since) / 1000,
            mac: g.wan_mac().unwrap_or_default(),
            address: g.wan_addr().map(|(a, l)| format!("{a}/{l}")),
            rx_packets: u.counters.rx_packets,
            rx_bytes: u.counters.rx_bytes,
            tx_packets: u.counters.tx_packets,
            tx_bytes: u.counters.tx_bytes,
            tx_coalesced: u.counters.tx_coalesced,
            tx_super_frames: u.counters.tx_super_frames,
            drops: drops_map(&u.counters),
        }),
        nat: nat_summary(sw),
        published: g.publish_view(),
        routed_out: st.routed_out,
        routed_in: st.routed_in,
        routed_lan: st.routed_lan,
        to_stack: st.to_stack,
        icmp_errors_sent: st.icmp_errors_sent,
        arp_requests_sent: st.arp_requests_sent,
        fragmented: st.fragmented,
        drops,
    }
}

pub(super) fn summary<P: Port, U: Port>(sw: &Switch<P, U>) -> FdbSummary {
    let f = sw.fdb();
    let FdbStats {
        learned,
        expired,
        evicted,
        moved,
        refused,
    } = f.stats();
    FdbSummary {
        size: f.len(),
        max: f.max_entries(),
        aging_secs: f.aging_ms() / 1000,
        learned,
        expired,
        evicted,
        moved,
        refused,
    }
}

pub(super) fn report(info: &PortInfo, c: &PortCounters, mtu: u32) -> PortReport {
    PortReport {
        info: info.clone(),
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        tx_coalesced: c.tx_coalesced,
        tx_super_frames: c.tx_super_frames,
        drops: drops_map(c),
        mtu,
        state: c.state().into(),
    }
}

pub(super) fn status<P: Port, U: Port>(
    sw: &Switch<P, U>,
    inst: &Instance,
    now: Millis,
) -> StatusReply {
    StatusReply {
        name: inst.name.clone(),
        pid: std::process::id(),
        uptime_secs: inst.started.elapsed().map_or(0, |d| d.as_secs()),
        subnet: inst.subnet.clone(),
        gateway: inst.gateway.to_string(),
        mtu: inst.mtu,
        ports: sw.ports().count(),
        metrics: inst.metrics.map(|a| a.to_string()),
        captures: sw.captures().tokens().len(),
        capture_dropped: sw.captures().dropped(),
        fdb: summary(sw),
        gateway_port: gateway_report(sw, now),
        dns: sw.gateway().dns_view(),
        memory: memory(sw),
        thread_frames: sw.thread_frames().to_vec(),
    }
}

/// The tables' heap figures and the allocator's (glibc's `mallinfo2`).
pub(super) fn memory<P: Port, U: Port>(sw: &Switch<P, U>) -> MemoryReport {
    let mut m = MemoryReport {
        nat: sw.gateway().nat().map_or(0, |n| n.heap_bytes()),
        fdb: sw.fdb().heap_bytes(),
        ..MemoryReport::default()
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's state (under its
        // locks) and returns a plain struct.
        let mi = unsafe { libc::mallinfo2() };
        m.malloc_in_use = Some(mi.uordblks + mi.hblkhd);
        m.malloc_free = Some(mi.fordblks);
        m.malloc_mmapped = Some(mi.hblkhd);
    }
    m
}

/// One `fdb show` row of a MAC table entry.
pub(super) fn fdb_row<P: Port, U: Port>(sw: &Switch<P, U>, e: &EntryView) -> FdbRow {
    FdbRow {
        port: if e.port == GW_PORT {
            "gateway".to_string()
        } else {
            sw.port(e.port)
                .map_or_else(|| format!("#{}", e.port), |s| s.info.name.clone())
        },
        mac: e.mac,
        age: e.age_ms.map(|a| a / 1000),
        vtep: sw.port(e.port).and_then(|s| s.port.vtep_of(e.mac)),
    }
}

/// One `fdb show` row of a remote port from the overlay's directory (not
/// in the MAC table): a static entry on the overlay port, with its VTEP.
pub(super) fn remote_row<P: Port, U: Port>(sw: &Switch<P, U>, mac: MacAddr) -> FdbRow {
    let overlay = sw.directory().and_then(|d| sw.port(d.overlay_port()));
    FdbRow {
        port: overlay.map_or_else(|| "overlay".to_string(), |s| s.info.name.clone()),
        mac,
        age: None,
        vtep: overlay.and_then(|s| s.port.vtep_of(mac)),
    }
}

/// The directory's remote MACs, each once.
pub(super) fn remote_macs<P: Port, U: Port>(sw: &Switch<P, U>) -> Vec<MacAddr> {
    let mut macs: Vec<MacAddr> = sw
        .directory()
        .map(|d| d.remote_entries().map(|(_, m)| m).collect())
        .unwrap_or_default();
    macs.sort_unstable();
    macs.dedup();
    macs
}
