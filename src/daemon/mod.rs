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

mod directory;
mod ports;
pub mod resolv;

use crate::config::Config;
use crate::control::Instance;
use crate::control::netns::NetnsError;
use crate::control::proto::{RUN_DIR, socket_path};
use crate::control::server::Server;
use crate::datapath::queues::QueueSync;
use crate::datapath::{PortInfo, Switch, UplinkSlot};
use crate::directory::{DirError, Update};
use crate::event_loop::{self, Clock, LoopParts};
use crate::gateway::{Gateway, GatewayConfig, WanConfig};
use crate::port::AnyPort;
use crate::port::raw::{RawError, RawPort};
use crate::port::tap::TapError;
use crate::port::vxlan::{Vxlan, VxlanConfig, VxlanError};
use crate::switch::Fdb;
use crate::wire::MacAddr;
use directory::{claim_ports, join_directory};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use ports::{PortManager, gateway_mac};
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

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
    #[error("--publish: {0}")]
    Publish(String),
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

fn block_signals() -> Result<SignalFd, DaemonError> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block().map_err(DaemonError::Signals)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(DaemonError::Signals)
}

/// Tells systemd (or a test) we are ready, if `NOTIFY_SOCKET` is set.
/// Kept by hand rather than the `sd-notify` crate: it is one datagram on
/// std's `UnixDatagram` (abstract or path socket), which is all that crate
/// would send, and the sandbox's syscall list stays as it was checked.
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
    // The namespaces' ports, then the host's (--host-port).
    let mut opened = Vec::with_capacity(cfg.ports.len() + 1);
    for i in 0..cfg.ports.len() + usize::from(cfg.host_port.is_some()) {
        let port = match (cfg.ports.get(i), cfg.host_port) {
            (Some(spec), _) => manager.open_port(&spec.netns, spec.addr, cfg.port_security),
            (None, Some(addr)) => ports::open_host_port(&cfg, addr),
            (None, None) => unreachable!("counted above"),
        };
        match port {
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
    let mut gateway = Gateway::new(gateway_config(&cfg, lan_mac, uplink.as_ref()), clock.now());
    if let Some(d) = &cfg.dns {
        gateway.enable_dns(d, clock.now());
        tracing::info!(
            "DNS on {}:53 for the port names (domain {}), forwarding the rest to {}",
            cfg.gateway,
            d.domain,
            match (d.upstreams.is_empty(), &cfg.uplink) {
                (_, None) => "nobody (no uplink: SERVFAIL)".to_string(),
                (true, Some(u)) if u.addr == crate::gateway::WanAddr::Dhcp => {
                    "the DNS servers of the uplink's DHCP lease, if any".to_string()
                }
                (true, Some(_)) => {
                    "nobody (a static uplink address and no --dns-upstream: SERVFAIL)".to_string()
                }
                (false, Some(_)) => d
                    .upstreams
                    .iter()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        );
    }
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
    let uplink = uplink.map(|u| {
        let ifname = u.ifname().to_string();
        UplinkSlot::new(u, ifname, clock.now())
    });
    let mut sw = Switch::new(
        Fdb::new(cfg.aging_secs * 1000, cfg.fdb_max),
        cfg.mtu as usize,
        gateway,
        uplink,
    );
    sw.set_udp_coalesce(cfg.udp_coalesce);
    for (tap, info) in opened {
        sw.add_port(AnyPort::Tap(tap), info);
    }
    for spec in &cfg.publish {
        // Checked with the configuration, before anything was created.
        sw.publish(spec).map_err(DaemonError::Publish)?;
        tracing::info!(
            "published {} -> {}",
            spec.front,
            spec.backends
                .iter()
                .map(|b| format!("{}:{}", b.name, b.port))
                .collect::<Vec<_>>()
                .join(", ")
        );
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
    let shared = Arc::new(std::sync::Mutex::new(sw));
    let mut workers = None;
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
        let busy = crate::busy_poll::BusyPoll::new(
            std::time::Duration::from_micros(cfg.busy_poll_us),
            std::time::Duration::from_micros(cfg.busy_poll_adaptive_us),
        );
        // The worker threads start before the sandbox, which covers them.
        if cfg.workers > 1 {
            let n = cfg.workers - 1;
            let sync = Arc::new(QueueSync::new(n).map_err(DaemonError::EventFd)?);
            crate::datapath::queues::lock(&shared).set_queue_sync(Arc::clone(&sync), n);
            workers = Some(
                crate::workers::spawn(&shared, &sync, n, clock, &busy)
                    .map_err(DaemonError::Datapath)?,
            );
            tracing::info!("{} datapath threads: the event loop and {n} workers", n + 1);
        }
        crate::sandbox::enter(cfg.sandbox, cfg.uplink.is_some())?; // capabilities, seccomp: every thread
        notify_ready();
        event_loop::run(
            &shared,
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

    // Teardown: the workers end, then the TAPs go, then namespaces, then
    // the lock.
    if let Some(w) = workers {
        w.stop();
    }
    drop(shared);
    let failures = manager.teardown(cfg.keep_netns);
    drop(lock);
    if failures > 0 {
        tracing::error!("teardown finished with {failures} error(s)");
    } else {
        tracing::info!("stopped");
    }
    result
}
