//! The namespaces and TAPs behind the ports (`PortManager`: created at
//! start and at run time, noticed when deleted underneath, taken over after
//! a crash, torn down at exit) and, in the overlay's directory mode, their
//! addresses claimed in etcd one by one (joining is in `directory.rs`).

use super::DaemonError;
use super::directory::Joined;
use super::resolv;
use crate::config::Config;
use crate::control::api::PortControl;
use crate::control::netlink::Netlink;
use crate::control::netns::Netns;
use crate::datapath::PortInfo;
use crate::directory::{DirError, DirStatus, PortRecord, Update};
use crate::port::AnyPort;
use crate::port::tap::Tap;
use crate::state::ResolvConf;
use crate::wire::MacAddr;
use crate::wire::ipv4::Ipv4Net;
use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;

/// The namespaces behind the ports, for creating ports at run time,
/// noticing namespaces deleted underneath us, and teardown.
pub struct PortManager {
    pub(super) cfg: Config,
    namespaces: BTreeMap<String, Netns>,
    /// Directory mode: the etcd client, and the address each port claimed.
    pub(super) directory: Option<Joined>,
    claims: BTreeMap<String, Ipv4Addr>,
    /// Namespaces a dead instance of this name created (its state file),
    /// not yet taken over.
    inherited: std::collections::BTreeSet<String>,
    /// The resolv.conf files this instance wrote, by namespace.
    resolv: BTreeMap<String, ResolvConf>,
    /// Those a dead instance wrote, not yet taken over.
    inherited_resolv: BTreeMap<String, ResolvConf>,
}

impl PortManager {
    pub(super) fn new(cfg: &Config, directory: Option<Joined>) -> PortManager {
        PortManager {
            cfg: cfg.clone(),
            namespaces: BTreeMap::new(),
            directory,
            claims: BTreeMap::new(),
            inherited: Default::default(),
            resolv: BTreeMap::new(),
            inherited_resolv: BTreeMap::new(),
        }
    }

    /// Reads what a dead instance of this name left (its state file):
    /// namespaces it created become ours when a port uses them
    /// ([`PortManager::open_port`]); [`PortManager::drop_unwanted`]
    /// deletes the rest.
    pub(super) fn inherit(&mut self) {
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
            self.inherited_resolv = s
                .resolv_conf
                .into_iter()
                .map(|r| (r.netns.clone(), r))
                .collect();
        }
    }

    /// Deletes the namespaces a dead instance created that no port uses
    /// now, and records this instance's state.
    pub(super) fn drop_unwanted(&mut self) {
        for (ns, r) in std::mem::take(&mut self.inherited_resolv) {
            resolv::remove(&self.cfg.name, &r);
            tracing::info!(netns = %ns, "removed the resolv.conf the previous instance wrote (no port uses it now)");
        }
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
            resolv_conf: self
                .resolv
                .values()
                .chain(self.inherited_resolv.values())
                .cloned()
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
    pub(super) fn claim_for(
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
    pub(super) fn open_port(
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
        self.write_resolv(ns_name);
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

    /// Writes `/etc/netns/NS/resolv.conf` for port `ns` (with DNS on),
    /// unless a file is there that this instance did not write before a
    /// crash; see [`resolv`].
    fn write_resolv(&mut self, ns: &str) {
        let Some(dns) = &self.cfg.dns else { return };
        if self.resolv.contains_key(ns) {
            return;
        }
        let text = resolv::contents(&self.cfg.name, self.cfg.gateway, &dns.domain);
        let shown = resolv::path(ns);
        if let Some(r) = self.inherited_resolv.remove(ns)
            && resolv::is_ours(&self.cfg.name, ns)
        {
            match resolv::rewrite(ns, &text) {
                Ok(()) => {
                    tracing::info!(port = %ns, "taking over {} from the previous instance", shown.display());
                    self.resolv.insert(ns.to_string(), r);
                }
                Err(e) => tracing::warn!(port = %ns, "cannot rewrite {}: {e}", shown.display()),
            }
            return;
        }
        match resolv::write(ns, &text) {
            Ok(Some(dir_created)) => {
                tracing::info!(port = %ns, "wrote {} (nameserver {}, search {})", shown.display(), self.cfg.gateway, dns.domain);
                self.resolv.insert(
                    ns.to_string(),
                    ResolvConf {
                        netns: ns.to_string(),
                        dir_created,
                    },
                );
            }
            Ok(None) => tracing::info!(
                port = %ns,
                "{} exists already: left alone (the namespace's resolver may not ask the gateway)",
                shown.display()
            ),
            Err(e) => {
                tracing::warn!(port = %ns, "cannot write {}: {e} (names resolve only as the host's resolv.conf says)", shown.display())
            }
        }
    }

    /// Removes the resolv.conf written for port `ns`, if any.
    fn remove_resolv(&mut self, ns: &str) {
        if let Some(r) = self.resolv.remove(ns) {
            resolv::remove(&self.cfg.name, &r);
        }
    }

    /// Deletes the namespaces vswitchd created (unless `keep`); returns how
    /// many deletions failed (each is logged).
    pub(super) fn teardown(&mut self, keep: bool) -> usize {
        let mut failures = 0;
        // What was written for the ports goes, --keep-netns or not.
        let written: Vec<String> = self.resolv.keys().cloned().collect();
        for ns in written {
            self.remove_resolv(&ns);
        }
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
        if self.inherited.is_empty() && self.inherited_resolv.is_empty() {
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
        if self.resolv.contains_key(ns) {
            self.remove_resolv(ns);
            self.save_state();
        }
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
pub(super) fn gateway_mac(cfg: &Config) -> MacAddr {
    MacAddr::stable_local(&format!("vswitchd/{}/gateway", cfg.name))
}

/// A netlink step's error, naming the namespace and the step.
fn nl_err(netns: &str, step: String) -> impl FnOnce(io::Error) -> DaemonError {
    let netns = netns.to_string();
    move |source| DaemonError::Netlink {
        netns,
        step,
        source,
    }
}

/// Creates TAP `ifname` in the calling thread's namespace and brings it up
/// with `mac`, the MTU and `addr` on the subnet (which also gives that
/// namespace its route to the subnet through the TAP). Returns the TAP, a
/// netlink socket there and the TAP's index.
fn configure_tap(
    cfg: &Config,
    netns: &str,
    ifname: &str,
    mac: MacAddr,
    addr: Ipv4Addr,
) -> Result<(Tap, Netlink, u32), DaemonError> {
    let tap = Tap::create_here(ifname, netns, cfg.offload, cfg.workers)?;
    let mut nl = Netlink::open().map_err(nl_err(netns, "open netlink socket".into()))?;
    let idx = Netlink::link_index(ifname).map_err(nl_err(netns, format!("find {ifname}")))?;
    nl.set_link(idx, Some(mac), Some(cfg.mtu)).map_err(nl_err(
        netns,
        format!("set {ifname} up with MAC {mac} and MTU {}", cfg.mtu),
    ))?;
    nl.add_address(idx, addr, cfg.subnet.prefix_len)
        .map_err(nl_err(
            netns,
            format!("add address {addr}/{} to {ifname}", cfg.subnet.prefix_len),
        ))?;
    Ok((tap, nl, idx))
}

/// `--host-port`: the host on the segment, as br01 puts it there. A TAP
/// named after the instance in vswitchd's own namespace, with `addr`: the
/// host's route to the subnet goes through it, into the switch.
pub(super) fn open_host_port(cfg: &Config, addr: Ipv4Addr) -> Result<(Tap, PortInfo), DaemonError> {
    let mac = MacAddr::stable_local(&format!("vswitchd/{}/host", cfg.name));
    let (tap, _, _) = configure_tap(cfg, "of vswitchd (--host-port)", &cfg.name, mac, addr)?;
    tracing::info!(
        port = %cfg.name,
        "host port ready: TAP {} {mac} {addr}/{} in vswitchd's own namespace",
        cfg.name,
        cfg.subnet.prefix_len
    );
    let info = PortInfo {
        name: cfg.name.clone(),
        ifname: cfg.name.clone(),
        mac,
        addr,
        prefix_len: cfg.subnet.prefix_len,
        security: cfg.port_security,
    };
    Ok((tap, info))
}

/// Creates and configures the TAP of one port inside `ns`.
fn setup_port(cfg: &Config, ns: &Netns, addr: Ipv4Addr) -> Result<(Tap, MacAddr), DaemonError> {
    let netns = ns.name().to_string();
    let mac = port_mac(cfg, &netns);
    ns.run(|| -> Result<(Tap, MacAddr), DaemonError> {
        let (tap, mut nl, idx) = configure_tap(cfg, &netns, &cfg.ifname, mac, addr)?;
        let lo = Netlink::link_index("lo").map_err(nl_err(&netns, "find lo".into()))?;
        nl.set_link(lo, None, None)
            .map_err(nl_err(&netns, "set lo up".into()))?;
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
                return Err(nl_err(
                    &netns,
                    format!("add default route via {}", cfg.gateway),
                )(e));
            }
        }
        Ok((tap, mac))
    })?
}
