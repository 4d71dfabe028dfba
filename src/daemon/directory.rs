//! The overlay's directory mode at start-up: joining the network in etcd
//! (its record, this host's agreement with it) and claiming the ports'
//! addresses there before they are created.

use super::DaemonError;
use super::ports::{PortManager, gateway_mac};
use crate::config::{Config, DirectoryOpts};
use crate::directory::{self, DirConfig, DirError, NetworkRecord};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// This host in the overlay's directory.
pub struct Joined {
    pub(super) dir: directory::Directory,
    pub(super) wake: std::sync::Arc<nix::sys::eventfd::EventFd>,
    pub(super) vtep: Ipv4Addr,
    /// The network's record as etcd holds it.
    pub(super) record: NetworkRecord,
    /// The other hosts and ports when we joined.
    pub(super) snapshot: Option<directory::Snapshot>,
}

/// Joins the network in etcd: connects, creates or reads the network's
/// record and checks this host agrees with it (adopting its MTU when
/// `--mtu` was not given, and its gateway MAC). Nothing is left in etcd if
/// it fails (the lease is revoked as the client drops).
pub(super) fn join_directory(
    cfg: &mut Config,
    opts: &DirectoryOpts,
    vtep: Ipv4Addr,
    vni: u32,
) -> Result<Joined, DaemonError> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let wake = std::sync::Arc::new(
        EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(DaemonError::EventFd)?,
    );
    let waker = wake.clone();
    let want = NetworkRecord {
        subnet: cfg.subnet.to_string(),
        gateway: cfg.gateway,
        vni,
        gateway_mac: gateway_mac(cfg).to_string(),
        mtu: cfg.mtu as usize,
    };
    let (dir, record, snapshot) = directory::Directory::start(
        DirConfig::new(opts.endpoints.clone(), &opts.network, vtep, &cfg.name),
        want.clone(),
        Box::new(move || {
            let _ = waker.write(1);
        }),
    )?;
    let contradicts = |field: &'static str, ours: String, theirs: String| {
        Err(DaemonError::Contradicts {
            network: opts.network.clone(),
            field,
            ours,
            theirs,
        })
    };
    if record.subnet != want.subnet {
        return contradicts("subnet", want.subnet, record.subnet);
    }
    if record.gateway != want.gateway {
        return contradicts(
            "gateway",
            want.gateway.to_string(),
            record.gateway.to_string(),
        );
    }
    if record.vni != want.vni {
        return contradicts("vni", want.vni.to_string(), record.vni.to_string());
    }
    if record.mtu != want.mtu && (cfg.mtu_given || record.mtu > want.mtu) {
        // Without --mtu, a smaller network MTU is adopted; a larger one
        // does not fit this host's underlay.
        return contradicts("mtu", want.mtu.to_string(), record.mtu.to_string());
    }
    cfg.mtu = record.mtu as u32;
    if record.gateway_mac.parse::<MacAddr>().is_err() {
        return Err(DirError::BadRecord {
            key: directory::network_key(&opts.network),
            error: format!("gateway_mac {:?} is not a MAC", record.gateway_mac),
        }
        .into());
    }
    tracing::info!(
        network = %opts.network,
        hosts = snapshot.hosts.len(),
        ports = snapshot.ports.len(),
        "overlay directory: joined in etcd {} (gateway {} {}, MTU {})",
        opts.endpoints.join(","),
        record.gateway,
        record.gateway_mac,
        record.mtu
    );
    Ok(Joined {
        dir,
        wake,
        vtep,
        record,
        snapshot: Some(snapshot),
    })
}

/// Claims every port's address in the directory: explicit ones first (so
/// a default never takes an address the command line names), then the
/// lowest free ones for the rest. Each spec gets the address claimed.
pub(super) fn claim_ports(manager: &mut PortManager, cfg: &mut Config) -> Result<(), DaemonError> {
    let explicit: Vec<Ipv4Addr> = cfg
        .ports
        .iter()
        .filter(|p| p.explicit)
        .map(|p| p.addr)
        .collect();
    for spec in cfg.ports.iter().filter(|p| p.explicit) {
        manager.claim_for(&spec.netns, Some(spec.addr), &explicit)?;
    }
    let mut local = explicit;
    for spec in cfg.ports.iter_mut().filter(|p| !p.explicit) {
        if let Some(a) = manager.claim_for(&spec.netns, None, &local)? {
            spec.addr = a;
            local.push(a);
        }
    }
    manager.cfg.ports = cfg.ports.clone();
    Ok(())
}
