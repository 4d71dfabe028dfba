//! Validation of the overlay options (`--vtep`, `--vxlan-peer`, `--vni`,
//! `--vxlan-port`, `--etcd`, `--network`): part of turning a [`Cli`] into a
//! [`super::Config`], apart from the rest of [`super::validate`].

use super::{Cli, ConfigError, DirectoryOpts, Ipv4Net};
use crate::port::vxlan::VxlanConfig;
use crate::wire::vxlan;
use std::net::Ipv4Addr;

impl Cli {
    /// `--vtep`, `--vxlan-peer`, `--vni`, `--vxlan-port` into the overlay's
    /// configuration (static mode), or `None` without `--vtep`.
    pub(super) fn overlay_config(
        &self,
        subnet: Ipv4Net,
    ) -> Result<Option<VxlanConfig>, ConfigError> {
        let Some(vtep) = &self.vtep else {
            if !self.vxlan_peer.is_empty() {
                return Err(ConfigError::opt(
                    "vxlan_peer",
                    "--vxlan-peer needs --vtep (this host's underlay address)",
                ));
            }
            return Ok(None);
        };
        let vtep: Ipv4Addr = vtep
            .parse()
            .map_err(|_| ConfigError::opt("vtep", format!("--vtep {vtep}: not an IPv4 address")))?;
        if vtep.is_unspecified() || vtep.is_multicast() || vtep.is_broadcast() {
            return Err(ConfigError::opt(
                "vtep",
                format!("--vtep {vtep}: must be a unicast address of this host"),
            ));
        }
        if subnet.contains(vtep) {
            return Err(ConfigError::opt(
                "vtep",
                format!(
                    "--vtep {vtep} is inside --subnet {subnet}: the underlay address must be outside the overlay's subnet"
                ),
            ));
        }
        if !(1..=vxlan::VNI_MAX).contains(&self.vni) {
            return Err(ConfigError::opt(
                "vni",
                format!("--vni {} must be 1..{}", self.vni, vxlan::VNI_MAX),
            ));
        }
        if self.vxlan_port == 0 {
            return Err(ConfigError::opt(
                "vxlan_port",
                "--vxlan-port 0 is not a port",
            ));
        }
        let directory = !self.etcd.is_empty();
        if directory && !self.vxlan_peer.is_empty() {
            return Err(ConfigError::opt(
                "vxlan_peer",
                "--vxlan-peer is for static mode: with --etcd the directory lists the hosts",
            ));
        }
        if !directory && self.vxlan_peer.is_empty() {
            return Err(ConfigError::opt(
                "vtep",
                "--vtep without --vxlan-peer or --etcd: give the other hosts' VTEP addresses (static mode) or etcd's URL (directory mode)",
            ));
        }
        let mut peers: Vec<Ipv4Addr> = Vec::new();
        for p in &self.vxlan_peer {
            let a: Ipv4Addr = p.parse().map_err(|_| {
                ConfigError::opt(
                    "vxlan_peer",
                    format!("--vxlan-peer {p}: not an IPv4 address"),
                )
            })?;
            let why = if a == vtep {
                Some("is this host's own --vtep")
            } else if peers.contains(&a) {
                Some("is given twice")
            } else if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                Some("is not a unicast address")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError::opt(
                    "vxlan_peer",
                    format!("--vxlan-peer {a} {why}"),
                ));
            }
            peers.push(a);
        }
        Ok(Some(VxlanConfig {
            vtep,
            port: self.vxlan_port,
            vni: self.vni,
            peers,
            directory,
        }))
    }

    /// `--etcd` and `--network`: checked only for form here (reaching
    /// etcd is the daemon's business).
    pub(super) fn directory_opts(&self) -> Result<Option<DirectoryOpts>, ConfigError> {
        if self.etcd.is_empty() {
            if self.network.is_some() {
                return Err(ConfigError::opt(
                    "network",
                    "--network names a network in etcd: it needs --etcd",
                ));
            }
            return Ok(None);
        }
        if self.vtep.is_none() {
            return Err(ConfigError::opt(
                "etcd",
                "--etcd needs --vtep (this host's underlay address)",
            ));
        }
        let mut endpoints = Vec::new();
        for e in &self.etcd {
            let e = e.trim();
            let hostport = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .unwrap_or(e);
            let ok = match hostport.rsplit_once(':') {
                Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0),
                None => false,
            };
            if !ok || hostport.contains('/') {
                return Err(ConfigError::opt(
                    "etcd",
                    format!(
                        "--etcd {e}: not an endpoint (give http://HOST:PORT, e.g. http://10.77.0.9:2379)"
                    ),
                ));
            }
            endpoints.push(if e.contains("://") {
                e.to_string()
            } else {
                format!("http://{e}")
            });
        }
        let network = self.network.clone().unwrap_or_else(|| self.name.clone());
        let good = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if network.is_empty() || network.len() > 64 || !network.chars().all(good) {
            return Err(ConfigError::opt(
                "network",
                format!("--network {network:?}: 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
        Ok(Some(DirectoryOpts { endpoints, network }))
    }
}
