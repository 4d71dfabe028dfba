//! Directory mode: applies what the directory in etcd reports
//! ([`crate::directory::Update`]) to the running switch, between batches of
//! frames, on the event loop's thread.
//!
//! A remote port becomes two things at once: an entry of the switch's
//! [`Directory`] (its MAC forwards to the overlay, ARP for its address is
//! answered locally, also to the gateway) and a remote MAC of the VXLAN
//! endpoint (sent to its host's VTEP only). A host becomes a peer of the
//! endpoint (broadcasts reach it). Each goes when the directory says so, or
//! all at once on a resync. Nothing goes into the gateway's neighbour
//! table: it never sends to a remote port (its frames stay on their host).

use crate::datapath::Switch;
use crate::directory::{HostRecord, PortRecord, Snapshot, Update};
use crate::port::Port;
use crate::switch::Directory;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// What the overlay's state looks like from the loop: whether etcd is
/// reachable (for `vswitchctl overlay`), counted changes.
#[derive(Clone, Debug, Default)]
pub struct SyncStats {
    pub updates: u64,
    pub resyncs: u64,
    /// Records that could not be used (a bad MAC, a full directory).
    pub rejected: u64,
}

/// Applies one update to `sw` (whose overlay port is the directory's).
pub fn apply<P: Port, U: Port>(sw: &mut Switch<P, U>, u: Update, stats: &mut SyncStats) {
    stats.updates += 1;
    match u {
        Update::HostUp(h) => host_up(sw, &h),
        Update::HostDown(vtep) => host_down(sw, vtep),
        Update::PortUp(p) => {
            if !port_up(sw, &p) {
                stats.rejected += 1;
            }
        }
        Update::PortDown(ip) => port_down(sw, ip),
        Update::Lost { error } => {
            tracing::warn!(
                "overlay directory lost ({error}): forwarding goes on with what is known"
            );
        }
        Update::Back => tracing::info!("overlay directory back: registered again"),
        Update::Resync(s) => {
            stats.resyncs += 1;
            stats.rejected += resync(sw, &s) as u64;
        }
    }
}

fn vxlan<P: Port, U: Port>(sw: &mut Switch<P, U>) -> Option<&mut crate::port::vxlan::Vxlan> {
    let id = sw.directory()?.overlay_port();
    sw.port_mut(id)?.vxlan_mut()
}

fn host_up<P: Port, U: Port>(sw: &mut Switch<P, U>, h: &HostRecord) {
    if let Some(v) = vxlan(sw)
        && v.add_host(h.vtep, Some(&h.name))
    {
        tracing::info!(host = %h.name, "overlay: host {} joined", h.vtep);
    }
}

fn host_down<P: Port, U: Port>(sw: &mut Switch<P, U>, vtep: Ipv4Addr) {
    if let Some(v) = vxlan(sw) {
        v.remove_host(vtep);
    }
    // Its ports' keys went with its lease; each comes as PortDown too, but
    // do not wait for them: nothing may point at a host that is gone.
    let gone: Vec<Ipv4Addr> = remote_ips_on(sw, vtep);
    for ip in gone {
        port_down(sw, ip);
    }
    tracing::info!("overlay: host {vtep} left");
}

/// Remote addresses recorded behind `vtep`.
fn remote_ips_on<P: Port, U: Port>(sw: &mut Switch<P, U>, vtep: Ipv4Addr) -> Vec<Ipv4Addr> {
    let Some(d) = sw.directory() else {
        return Vec::new();
    };
    let ids: Vec<(Ipv4Addr, MacAddr)> = d.remote_entries().collect();
    let Some(v) = vxlan(sw) else {
        return Vec::new();
    };
    ids.into_iter()
        .filter(|(_, mac)| v.vtep_of(*mac).is_none_or(|t| t == vtep))
        .map(|(ip, _)| ip)
        .collect()
}

/// Adds a remote port; false if the record is unusable.
fn port_up<P: Port, U: Port>(sw: &mut Switch<P, U>, p: &PortRecord) -> bool {
    let Ok(mac) = p.mac.parse::<MacAddr>() else {
        tracing::warn!(port = %p.port, "overlay: port {} of host {} has a bad MAC {:?}; ignored", p.ip, p.host, p.mac);
        return false;
    };
    let Some(d) = sw.directory_mut() else {
        return false;
    };
    if let Some((old, _)) = d.mac_of(p.ip)
        && old != mac
    {
        port_down(sw, p.ip);
    }
    let Some(d) = sw.directory_mut() else {
        return false;
    };
    if let Err(e) = d.insert(p.ip, mac, true) {
        tracing::warn!(port = %p.port, "overlay: port {} of host {}: {e}; ignored", p.ip, p.host);
        return false;
    }
    if let Some(v) = vxlan(sw) {
        v.set_remote(mac, p.host);
    }
    tracing::debug!(port = %p.port, "overlay: port {} {mac} on host {}", p.ip, p.host);
    true
}

fn port_down<P: Port, U: Port>(sw: &mut Switch<P, U>, ip: Ipv4Addr) {
    let Some(d) = sw.directory_mut() else { return };
    if !d.mac_of(ip).is_some_and(|(_, remote)| remote) {
        return;
    }
    let Some(mac) = d.remove(ip) else { return };
    let still_used = d.is_remote_mac(mac);
    if !still_used && let Some(v) = vxlan(sw) {
        v.remove_remote(mac);
    }
}

/// Replaces everything remote with `s`; returns the records rejected.
fn resync<P: Port, U: Port>(sw: &mut Switch<P, U>, s: &Snapshot) -> usize {
    // Sets, not scans: a resync of 100,000 ports must not be quadratic
    // (it runs on the datapath's thread).
    let wanted: std::collections::HashSet<Ipv4Addr> = s.ports.iter().map(|p| p.ip).collect();
    let known: Vec<(Ipv4Addr, MacAddr)> = sw
        .directory()
        .map(|d| d.remote_entries().collect())
        .unwrap_or_default();
    for (ip, _) in known {
        if !wanted.contains(&ip) {
            port_down(sw, ip);
        }
    }
    if let Some(v) = vxlan(sw) {
        let hosts: Vec<Ipv4Addr> = v.hosts().collect();
        let wanted: std::collections::HashSet<Ipv4Addr> = s.hosts.iter().map(|h| h.vtep).collect();
        for h in hosts {
            if !wanted.contains(&h) {
                v.remove_host(h);
            }
        }
        for h in &s.hosts {
            v.add_host(h.vtep, Some(&h.name));
        }
    }
    s.ports.iter().filter(|p| !port_up(sw, p)).count()
}

/// The switch's directory for an overlay on port `overlay`.
pub fn directory_for(
    overlay: crate::switch::PortId,
    gateway_ip: Ipv4Addr,
    gateway_mac: MacAddr,
) -> Directory {
    Directory::new(
        overlay,
        crate::datapath::GW_PORT,
        gateway_ip,
        gateway_mac,
        MAX_REMOTE_PORTS,
    )
}

/// Remote ports the directory holds at most (the scale target is 100,000;
/// they do not count toward `--fdb-max`).
pub const MAX_REMOTE_PORTS: usize = 1_000_000;
