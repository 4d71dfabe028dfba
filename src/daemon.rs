//! Start-up and shut-down of a vswitchd instance: everything between a
//! validated [`Config`] and the datapath loop.
//!
//! Start-up order: block SIGINT/SIGTERM (their signalfd is read by the loop),
//! take the instance lock (`/run/vswitchd/NAME.lock`), then for each port
//! open or create its namespace and, on a thread inside it, create the TAP and
//! configure it over netlink; then bind the control socket and report ready.
//! Each step's product is an RAII value (TAP fd, created namespace, socket,
//! lock), so a failure at any step unwinds everything done before it.
//!
//! Shut-down: the TAPs are closed (the kernel removes them), then the
//! namespaces this process created are deleted unless `--keep-netns`; every
//! failure is logged and teardown carries on.

use crate::config::{Config, DirectoryOpts};
use crate::control::Instance;
use crate::control::api::PortControl;
use crate::control::netlink::Netlink;
use crate::control::netns::{Netns, NetnsError};
use crate::control::proto::{RUN_DIR, socket_path};
use crate::control::server::Server;
use crate::datapath::{PortInfo, Switch, UplinkSlot};
use crate::directory::{self, DirConfig, DirError, DirStatus, NetworkRecord, PortRecord, Update};
use crate::event_loop::{self, Clock, LoopParts};
use crate::gateway::{Gateway, GatewayConfig, WanConfig};
use crate::port::AnyPort;
use crate::port::raw::{RawError, RawPort};
use crate::port::tap::{Tap, TapError};
use crate::port::vxlan::{Vxlan, VxlanConfig, VxlanError};
use crate::switch::Fdb;
use crate::wire::MacAddr;
use crate::wire::ipv4::Ipv4Net;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("an instance named {name} is already running (control socket {socket})")]
    AlreadyRunning { name: String, socket: String },
    #[error("cannot take the instance lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot set up signal handling: {0}")]
    Signals(nix::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Uplink(#[from] RawError),
    #[error("namespace {netns}: {step}: {source}")]
    Netlink {
        netns: String,
        step: String,
        source: io::Error,
    },
    #[error("cannot create the control socket {path}: {source}")]
    Control { path: PathBuf, source: io::Error },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("datapath failed: {0}")]
    Datapath(io::Error),
    #[error(transparent)]
    Overlay(#[from] VxlanError),
    #[error("--vtep {0}: no interface in vswitchd's namespace has this address")]
    NoVtep(Ipv4Addr),
    #[error(
        "--mtu {mtu} does not fit the overlay: the underlay {ifname} has MTU {underlay}, and VXLAN adds 50 bytes (at most --mtu {max})"
    )]
    MtuTooBig {
        mtu: u32,
        ifname: String,
        underlay: u32,
        max: u32,
    },
    #[error("overlay directory: {0}")]
    Directory(#[from] DirError),
    #[error(
        "network {network} in etcd has {field} {theirs}, but this host has {ours}: every host of a network must agree (change --{field}, or use another --network)"
    )]
    Contradicts {
        network: String,
        field: &'static str,
        ours: String,
        theirs: String,
    },
    #[error("cannot create the directory's wake-up eventfd: {0}")]
    EventFd(nix::Error),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
}

/// Exclusive lock on an instance name, held for the life of the process.
/// The lock file is removed on drop (while still locked).
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    pub fn acquire(name: &str) -> Result<InstanceLock, DaemonError> {
        let path = PathBuf::from(RUN_DIR).join(format!("{name}.lock"));
        let err = |source: io::Error| DaemonError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(RUN_DIR)
            .map_err(err)?;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .map_err(err)?;
            // SAFETY: flock on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Err(DaemonError::AlreadyRunning {
                        name: name.into(),
                        socket: socket_path(name).display().to_string(),
                    });
                }
                return Err(err(e));
            }
            // The previous holder may have unlinked the file between our open
            // and our flock; then we hold a lock on a dead inode. Retry.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same {
                return Ok(InstanceLock { _file: file, path });
            }
        }
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The namespaces behind the ports, for creating ports at run time,
/// noticing namespaces deleted underneath us, and teardown.
pub struct PortManager {
    cfg: Config,
    namespaces: BTreeMap<String, Netns>,
    /// Directory mode: the etcd client, and the address each port claimed.
    directory: Option<Joined>,
    claims: BTreeMap<String, Ipv4Addr>,
    /// Namespaces a dead instance of this name created (its state file),
    /// not yet taken over.
    inherited: std::collections::BTreeSet<String>,
}

/// This host in the overlay's directory.
pub struct Joined {
    dir: directory::Directory,
    wake: std::sync::Arc<nix::sys::eventfd::EventFd>,
    vtep: Ipv4Addr,
    /// The network's record as etcd holds it.
    record: NetworkRecord,
    /// The other hosts and ports when we joined.
    snapshot: Option<directory::Snapshot>,
}

impl PortManager {
    fn new(cfg: &Config, directory: Option<Joined>) -> PortManager {
        PortManager {
            cfg: cfg.clone(),
            namespaces: BTreeMap::new(),
            directory,
            claims: BTreeMap::new(),
            inherited: Default::default(),
        }
    }

    /// Reads what a dead instance of this name left (its state file):
    /// namespaces it created become ours when a port uses them
    /// ([`PortManager::open_port`]); [`PortManager::drop_unwanted`]
    /// deletes the rest.
    fn inherit(&mut self) {
        if let Some(s) = crate::state::read(&self.cfg.name) {
            tracing::warn!(
                pid = s.pid,
                "instance {} did not exit cleanly; taking over what it created: {}",
                self.cfg.name,
                if s.created_netns.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("namespaces {}", s.created_netns.join(", "))
                }
            );
            self.inherited = s.created_netns.into_iter().collect();
        }
    }

    /// Deletes the namespaces a dead instance created that no port uses
    /// now, and records this instance's state.
    fn drop_unwanted(&mut self) {
        for name in std::mem::take(&mut self.inherited) {
            // (Already gone: nothing to do.)
            if let Ok(mut ns) = Netns::open(&name) {
                ns.adopt();
                match ns.delete() {
                    Ok(()) => tracing::info!(
                        netns = %name,
                        "deleted namespace left by the previous instance (no port uses it now)"
                    ),
                    Err(e) => tracing::error!("{e}"),
                }
            }
        }
        self.save_state();
    }

    /// Rewrites the state file: the namespaces this instance created.
    fn save_state(&self) {
        let state = crate::state::State {
            pid: std::process::id(),
            created_netns: self
                .namespaces
                .iter()
                .filter(|(_, n)| n.created())
                .map(|(name, _)| name.clone())
                .chain(self.inherited.iter().cloned())
                .collect(),
        };
        if let Err(e) = crate::state::write(&self.cfg.name, &state) {
            tracing::warn!(
                "cannot write {}: {e} (a crash would leak the namespaces created)",
                crate::state::path(&self.cfg.name).display()
            );
        }
    }

    /// Claims `addr` (or the lowest free address) for port `ns` in the
    /// directory; the address to use. Without a directory, `addr` as given.
    fn claim_for(
        &mut self,
        ns: &str,
        addr: Option<Ipv4Addr>,
        local: &[Ipv4Addr],
    ) -> Result<Option<Ipv4Addr>, DirError> {
        let Some(j) = &self.directory else {
            return Ok(addr);
        };
        let mac = port_mac(&self.cfg, ns).to_string();
        let ip = match addr {
            Some(ip) => {
                j.dir.claim(PortRecord {
                    ip,
                    mac,
                    host: j.vtep,
                    port: ns.to_string(),
                })?;
                ip
            }
            None => {
                let mut skip = local.to_vec();
                skip.push(self.cfg.gateway);
                j.dir.claim_free(self.cfg.subnet, &skip, ns, &mac)?
            }
        };
        self.claims.insert(ns.to_string(), ip);
        Ok(Some(ip))
    }

    /// Gives back the address port `ns` claimed, if any.
    fn unclaim(&mut self, ns: &str) {
        if let (Some(ip), Some(j)) = (self.claims.remove(ns), &self.directory)
            && let Err(e) = j.dir.release(ip)
        {
            tracing::warn!(port = %ns, "overlay directory: releasing {ip}: {e} (it expires with the lease)");
        }
    }

    /// Opens or creates `ns` and its TAP; on error nothing is left behind
    /// (the namespace, if created here, is deleted as it drops).
    fn open_port(
        &mut self,
        ns_name: &str,
        addr: Ipv4Addr,
        security: bool,
    ) -> Result<(Tap, PortInfo), DaemonError> {
        // A namespace this instance already holds (its port went away when
        // its TAP was deleted underneath, the namespace stayed) is reused:
        // whether vswitchd created it was decided once and moves with the
        // handle. Opening it again would replace that handle, and dropping
        // the old one would delete the namespace under the new port.
        let (mut ns, held_before) = match self.namespaces.remove(ns_name) {
            Some(old) if old.still_named() => (old, true),
            Some(mut gone) => {
                gone.keep(); // deleted underneath: nothing of ours to delete
                (Netns::open_or_create(ns_name)?, false)
            }
            None => (Netns::open_or_create(ns_name)?, false),
        };
        if self.inherited.remove(ns_name) && !ns.created() {
            tracing::info!(netns = %ns_name, "adopting namespace created by the previous instance");
            ns.adopt();
        }
        let created = ns.created();
        let (tap, mac) = match setup_port(&self.cfg, &ns, addr) {
            Ok(v) => v,
            Err(e) => {
                // A namespace held before stays held; a fresh one is
                // dropped here (and deleted if vswitchd created it).
                if held_before {
                    self.namespaces.insert(ns_name.to_string(), ns);
                }
                return Err(e);
            }
        };
        tracing::info!(
            port = %ns_name,
            netns_created = created,
            "port ready: {} {mac} {}/{}",
            self.cfg.ifname,
            addr,
            self.cfg.subnet.prefix_len
        );
        self.namespaces.insert(ns_name.to_string(), ns);
        self.save_state();
        let info = PortInfo {
            name: ns_name.to_string(),
            ifname: self.cfg.ifname.clone(),
            mac,
            addr,
            prefix_len: self.cfg.subnet.prefix_len,
            security,
        };
        Ok((tap, info))
    }

    /// Deletes the namespaces vswitchd created (unless `keep`); returns how
    /// many deletions failed (each is logged).
    fn teardown(&mut self, keep: bool) -> usize {
        let mut failures = 0;
        for (name, mut ns) in std::mem::take(&mut self.namespaces) {
            if !ns.created() {
                continue;
            }
            if keep {
                tracing::info!(netns = %name, "keeping namespace (--keep-netns)");
                ns.keep();
            } else if let Err(e) = ns.delete() {
                tracing::error!("{e}");
                failures += 1;
            }
        }
        // What was created is deleted (or kept on purpose) now: a later
        // start has nothing to take over, unless a failed start left what
        // a dead instance created untouched.
        if self.inherited.is_empty() {
            crate::state::remove(&self.cfg.name);
        } else {
            self.save_state();
        }
        failures
    }
}

impl PortControl<AnyPort> for PortManager {
    fn create(
        &mut self,
        ns: &str,
        addr: Ipv4Addr,
        security: Option<bool>,
    ) -> Result<(AnyPort, PortInfo), String> {
        let security = security.unwrap_or(self.cfg.port_security);
        self.open_port(ns, addr, security)
            .map(|(tap, info)| (AnyPort::Tap(tap), info))
            .map_err(|e| {
                // Nothing half-done: a claimed address goes back.
                self.unclaim(ns);
                e.to_string()
            })
    }

    fn release(&mut self, ns: &str) {
        self.unclaim(ns);
        if let Some(mut n) = self.namespaces.remove(ns) {
            if !n.created() {
                return;
            }
            if self.cfg.keep_netns || !n.still_named() {
                n.keep();
            } else if let Err(e) = n.delete() {
                tracing::error!("{e}");
            }
            self.save_state();
        }
    }

    fn vanished(&mut self) -> Vec<String> {
        self.namespaces
            .iter()
            .filter(|(_, n)| !n.still_named())
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn subnet(&self) -> Ipv4Net {
        self.cfg.subnet
    }

    fn gateway(&self) -> Ipv4Addr {
        self.cfg.gateway
    }

    fn claim(
        &mut self,
        ns: &str,
        addr: Option<Ipv4Addr>,
        local: &[Ipv4Addr],
    ) -> Result<Option<Ipv4Addr>, String> {
        if self.directory.is_none() {
            return Ok(None);
        }
        self.claim_for(ns, addr, local).map_err(|e| e.to_string())
    }

    fn directory_status(&self) -> Option<DirStatus> {
        self.directory.as_ref().map(|j| j.dir.status())
    }

    fn directory_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.directory.as_ref().map(|j| j.wake.as_fd())
    }

    fn directory_updates(&mut self) -> Vec<Update> {
        let Some(j) = &self.directory else {
            return Vec::new();
        };
        let _ = j.wake.read(); // reset the counter (non-blocking)
        std::iter::from_fn(|| j.dir.try_recv()).collect()
    }
}

/// A port's MAC: stable across restarts; with the overlay's directory it
/// also depends on the host (two hosts may both have a namespace `ns01`).
fn port_mac(cfg: &Config, ns: &str) -> MacAddr {
    match (&cfg.directory, &cfg.overlay) {
        (Some(_), Some(o)) => MacAddr::stable_local(&format!("{}/{ns}/{}", o.vtep, cfg.ifname)),
        _ => MacAddr::stable_local(&format!("{ns}/{}", cfg.ifname)),
    }
}

/// The gateway's MAC on the LAN: the network's (every host the same) in
/// directory mode, else stable per instance.
fn gateway_mac(cfg: &Config) -> MacAddr {
    MacAddr::stable_local(&format!("vswitchd/{}/gateway", cfg.name))
}

/// Joins the network in etcd: connects, creates or reads the network's
/// record and checks this host agrees with it (adopting its MTU when
/// `--mtu` was not given, and its gateway MAC). Nothing is left in etcd if
/// it fails (the lease is revoked as the client drops).
fn join_directory(
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

/// Creates and configures the TAP of one port inside `ns`.
fn setup_port(cfg: &Config, ns: &Netns, addr: Ipv4Addr) -> Result<(Tap, MacAddr), DaemonError> {
    let netns = ns.name().to_string();
    let mac = port_mac(cfg, &netns);
    ns.run(|| -> Result<(Tap, MacAddr), DaemonError> {
        let nl_err = |step: String| {
            let netns = netns.clone();
            move |source: io::Error| DaemonError::Netlink {
                netns,
                step,
                source,
            }
        };
        let tap = Tap::create_here(&cfg.ifname, &netns, cfg.offload)?;
        let mut nl = Netlink::open().map_err(nl_err("open netlink socket".into()))?;
        let lo = Netlink::link_index("lo").map_err(nl_err("find lo".into()))?;
        nl.set_link(lo, None, None)
            .map_err(nl_err("set lo up".into()))?;
        let idx =
            Netlink::link_index(&cfg.ifname).map_err(nl_err(format!("find {}", cfg.ifname)))?;
        nl.set_link(idx, Some(mac), Some(cfg.mtu))
            .map_err(nl_err(format!(
                "set {} up with MAC {mac} and MTU {}",
                cfg.ifname, cfg.mtu
            )))?;
        nl.add_address(idx, addr, cfg.subnet.prefix_len)
            .map_err(nl_err(format!(
                "add address {addr}/{} to {}",
                cfg.subnet.prefix_len, cfg.ifname
            )))?;
        match nl.add_default_route(cfg.gateway, idx) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(
                    netns = %netns,
                    "namespace already has a default route; left as it is (not via {})",
                    cfg.gateway
                );
            }
            Err(e) => {
                return Err(nl_err(format!("add default route via {}", cfg.gateway))(e));
            }
        }
        Ok((tap, mac))
    })?
}

fn block_signals() -> Result<SignalFd, DaemonError> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block().map_err(DaemonError::Signals)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(DaemonError::Signals)
}

/// Tells systemd (or a test) we are ready, if `NOTIFY_SOCKET` is set.
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let addr = if let Some(abs) = target.strip_prefix('@') {
        SocketAddr::from_abstract_name(abs.as_bytes())
    } else {
        SocketAddr::from_pathname(&target)
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(b"READY=1\n", &a));
    if let Err(e) = sent {
        tracing::warn!("cannot notify {target}: {e}");
    }
}

/// The gateway's configuration: its stable MACs and addresses.
fn gateway_config(cfg: &Config, lan_mac: MacAddr, uplink: Option<&RawPort>) -> GatewayConfig {
    GatewayConfig {
        lan_mac,
        lan_ip: cfg.gateway,
        subnet: cfg.subnet,
        lan_mtu: cfg.mtu as usize,
        wan: cfg.uplink.as_ref().zip(uplink).map(|(u, raw)| WanConfig {
            ifname: u.ifname.clone(),
            mac: u.mac.unwrap_or_else(|| {
                MacAddr::stable_local(&format!("vswitchd/{}/uplink/{}", cfg.name, u.ifname))
            }),
            addr: u.addr,
            gw: u.gw,
            mtu: raw.mtu(),
        }),
        nat: cfg.nat,
    }
}

/// Claims every port's address in the directory: explicit ones first (so
/// a default never takes an address the command line names), then the
/// lowest free ones for the rest. Each spec gets the address claimed.
fn claim_ports(manager: &mut PortManager, cfg: &mut Config) -> Result<(), DaemonError> {
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

/// The TAP MTU with the overlay: `--mtu` if given and it fits the
/// underlay, else the underlay interface's MTU minus VXLAN's 50 bytes.
fn overlay_mtu(cfg: &Config, o: &VxlanConfig) -> Result<u32, DaemonError> {
    let ifname = crate::sys::interface_with_addr(o.vtep).ok_or(DaemonError::NoVtep(o.vtep))?;
    let underlay = crate::sys::interface_mtu(&ifname).map_err(|_| DaemonError::NoVtep(o.vtep))?;
    let max = underlay.saturating_sub(crate::wire::vxlan::OVERHEAD as u32);
    if cfg.mtu_given && cfg.mtu > max {
        return Err(DaemonError::MtuTooBig {
            mtu: cfg.mtu,
            ifname,
            underlay,
            max,
        });
    }
    Ok(if cfg.mtu_given { cfg.mtu } else { max })
}

/// How the overlay port shows in `vswitchctl ports` and `fdb show`.
fn overlay_port_info(o: &VxlanConfig) -> PortInfo {
    PortInfo {
        name: OVERLAY_PORT.to_string(),
        ifname: format!("vni{}", o.vni),
        mac: MacAddr::ZERO,
        addr: o.vtep,
        prefix_len: 32,
        security: false,
    }
}

/// The overlay port's name.
pub const OVERLAY_PORT: &str = "vxlan";

/// Runs an instance until SIGINT/SIGTERM. Returns after a full teardown.
///
/// Long on purpose (~115 lines): start-up is one sequence of steps in the
/// order they must happen (lock, metrics address, uplink, namespaces and
/// TAPs, control socket, readiness), each undone by RAII if a later one
/// fails; reading it top to bottom is the point.
pub fn run(cfg: Config, log: Option<crate::control::LogControl>) -> Result<(), DaemonError> {
    // Before any thread exists, so every thread inherits the mask.
    let signals = block_signals()?;
    let lock = InstanceLock::acquire(&cfg.name)?;
    // The uplink first: opening it changes nothing, so a bad --uplink is
    // refused before any namespace exists.
    let uplink = match &cfg.uplink {
        Some(u) => Some(RawPort::open(&u.ifname)?),
        None => None,
    };

    // The overlay too: its socket and the MTU it allows, before any
    // namespace exists.
    let mut cfg = cfg;
    if let Some(o) = &cfg.overlay {
        cfg.mtu = overlay_mtu(&cfg, o)?;
    }
    // Directory mode: join the network in etcd (which may lower the MTU to
    // the network's), before any namespace exists: a refusal leaves nothing.
    let joined = match (&cfg.directory, &cfg.overlay) {
        (Some(d), Some(o)) => {
            let (d, vtep, vni) = (d.clone(), o.vtep, o.vni);
            Some(join_directory(&mut cfg, &d, vtep, vni)?)
        }
        _ => None,
    };
    let overlay = match &cfg.overlay {
        Some(o) => Some(Vxlan::open(o.clone(), cfg.mtu as usize)?),
        None => None,
    };
    let lan_mac = joined
        .as_ref()
        .and_then(|j| j.record.gateway_mac.parse().ok())
        .unwrap_or_else(|| gateway_mac(&cfg));

    // Metrics next: a busy address is refused before any namespace exists.
    let mut metrics = match cfg.metrics {
        Some(a) => Some(
            Server::bind_http(a, event_loop::TOKEN_METRICS_BASE)
                .map_err(|source| DaemonError::Metrics { addr: a, source })?,
        ),
        None => None,
    };

    // On error, every port opened so far is dropped with `manager` and
    // `opened`: TAPs closed, created namespaces deleted.
    let mut manager = PortManager::new(&cfg, joined);
    manager.inherit();
    if manager.directory.is_some() {
        claim_ports(&mut manager, &mut cfg)?;
    }
    let mut opened = Vec::with_capacity(cfg.ports.len());
    for spec in &cfg.ports {
        match manager.open_port(&spec.netns, spec.addr, cfg.port_security) {
            Ok(p) => opened.push(p),
            Err(e) => {
                // A failed start removes what it created, --keep-netns or not.
                drop(opened);
                manager.teardown(false);
                return Err(e);
            }
        }
    }
    manager.drop_unwanted();

    let clock = Clock::new();
    let gateway = Gateway::new(gateway_config(&cfg, lan_mac, uplink.as_ref()), clock.now());
    tracing::info!(
        mac = %gateway.mac(),
        "gateway {} on the switch{}",
        cfg.gateway,
        match (&cfg.uplink, &cfg.nat) {
            (Some(u), Some(_)) => format!(", masquerading toward uplink {}", u.ifname),
            (Some(u), None) => format!(", routing toward uplink {} without NAT", u.ifname),
            (None, _) => String::new(),
        }
    );
    let uplink = uplink.map(|u| UplinkSlot {
        ifname: u.ifname().to_string(),
        port: u,
        counters: Default::default(),
        state: crate::datapath::LinkState::Up,
        since: clock.now(),
    });
    let mut sw = Switch::new(
        Fdb::new(cfg.aging_secs * 1000, cfg.fdb_max),
        cfg.mtu as usize,
        gateway,
        uplink,
    );
    for (tap, info) in opened {
        sw.add_port(AnyPort::Tap(tap), info);
    }
    if let (Some(v), Some(o)) = (overlay, &cfg.overlay) {
        tracing::info!(
            vni = o.vni,
            "overlay: VXLAN on {}:{}, peers {}",
            o.vtep,
            o.port,
            if o.directory {
                "from the directory".to_string()
            } else {
                o.peers
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        let id = sw.add_port(AnyPort::Vxlan(Box::new(v)), overlay_port_info(o));
        if let Some(j) = manager.directory.as_mut() {
            sw.set_directory(crate::overlay::directory_for(id, cfg.gateway, lan_mac));
            let mut stats = crate::overlay::SyncStats::default();
            if let Some(s) = j.snapshot.take() {
                crate::overlay::apply(&mut sw, Update::Resync(s), &mut stats);
            }
        }
    }
    let sock = socket_path(&cfg.name);
    let result = (|| {
        let mut control =
            Server::bind_unix(&sock, event_loop::TOKEN_CLIENT_BASE).map_err(|source| {
                DaemonError::Control {
                    path: sock.clone(),
                    source,
                }
            })?;
        let instance = Instance {
            name: cfg.name.clone(),
            subnet: cfg.subnet.to_string(),
            gateway: cfg.gateway,
            mtu: cfg.mtu,
            started: std::time::SystemTime::now(),
            metrics: metrics.as_ref().and_then(|m| m.local_addr()),
            log: log.clone(),
        };
        if let Some(a) = instance.metrics {
            tracing::info!("Prometheus metrics on http://{a}/metrics");
        }
        tracing::info!(
            name = %cfg.name,
            ports = cfg.ports.len(),
            socket = %sock.display(),
            "vswitchd ready: switching between {}",
            cfg.ports.iter().map(|p| p.netns.as_str()).collect::<Vec<_>>().join(", ")
        );
        crate::sandbox::enter(cfg.sandbox, cfg.uplink.is_some())?; // capabilities, seccomp: every thread
        notify_ready();
        let busy = std::time::Duration::from_micros(cfg.busy_poll_us);
        event_loop::run(
            &mut sw,
            LoopParts {
                control: &mut control,
                metrics: metrics.as_mut(),
                port_ctl: &mut manager,
                signals: &signals,
                instance: &instance,
                clock: &clock,
                busy_poll: busy,
            },
        )
        .map_err(DaemonError::Datapath)
    })();

    // Teardown: TAPs first, then namespaces, then the lock.
    drop(sw);
    let failures = manager.teardown(cfg.keep_netns);
    drop(lock);
    if failures > 0 {
        tracing::error!("teardown finished with {failures} error(s)");
    } else {
        tracing::info!("stopped");
    }
    result
}
