//! Validation: a parsed [`Cli`] into a [`Config`], and the checks the
//! run-time `port add` path shares with it. Each refusal is a one-line
//! [`ConfigError`] naming the culprit and keyed by the setting at fault.

use super::names::{
    check_dns_domain, check_ifname, check_instance_name, check_log_level, check_netns_name,
    domain_of_instance,
};
use super::{Cli, Config, ConfigError, Ipv4Net, PortSpec, UplinkSpec};
use crate::gateway::WanAddr;
use crate::gateway::nat::{NatConfig, NatTimeouts};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// `ADDR:PORT`, or a bare `PORT` on loopback.
fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, ConfigError> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        ConfigError::opt(
            "metrics",
            format!("--metrics '{s}' is not ADDR:PORT (e.g. 127.0.0.1:9477) or a port"),
        )
    })
}

/// Splits `NS[=ADDR]` and checks the namespace name; the address, if any,
/// is parsed (`192.168.88.20` or `192.168.88.20/24`) but not yet checked
/// against the subnet's hosts.
pub fn parse_port_spec(
    item: &str,
    subnet: Ipv4Net,
) -> Result<(String, Option<Ipv4Addr>), ConfigError> {
    parse_port_spec_as(item, subnet, "")
}

/// [`parse_port_spec`], with `name_prefix` leading a bad namespace name's
/// message (`"--ports: "` at start; nothing for `vswitchctl port add`).
fn parse_port_spec_as(
    item: &str,
    subnet: Ipv4Net,
    name_prefix: &str,
) -> Result<(String, Option<Ipv4Addr>), ConfigError> {
    let (ns, addr) = match item.split_once('=') {
        Some((ns, a)) => (ns, Some(a)),
        None => (item, None),
    };
    check_netns_name(ns).map_err(|e| ConfigError::port(ns, format!("{name_prefix}{e}")))?;
    let addr = addr.map(|a| parse_port_addr(ns, a, subnet)).transpose()?;
    Ok((ns.to_string(), addr))
}

/// Why `addr` cannot be port `ns`'s address, if it cannot: outside the
/// subnet's hosts, the gateway's, or taken by another port.
pub fn check_port_addr(
    ns: &str,
    addr: Ipv4Addr,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    taken: &[(String, Ipv4Addr)],
) -> Result<(), ConfigError> {
    let err = |why: String| {
        Err(ConfigError::port(
            ns,
            format!("port {ns}: address {addr} {why}"),
        ))
    };
    if !subnet.is_usable_host(addr) {
        return err(format!("is not a host address of the subnet {subnet}"));
    }
    if addr == gateway {
        return err("is the gateway's address".into());
    }
    if let Some((other, _)) = taken.iter().find(|(_, a)| *a == addr) {
        return err(format!("is already taken by port {other}"));
    }
    Ok(())
}

/// Parses `192.168.88.20` or `192.168.88.20/24` (the prefix must match the subnet).
fn parse_port_addr(ns: &str, s: &str, subnet: Ipv4Net) -> Result<Ipv4Addr, ConfigError> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| ConfigError::port(ns, format!("port {ns}: '{s}' is not an IPv4 address")))?;
    if let Some(l) = len
        && l.parse::<u8>().ok() != Some(subnet.prefix_len)
    {
        return Err(ConfigError::port(
            ns,
            format!(
                "port {ns}: prefix /{l} differs from the subnet's /{} ({subnet})",
                subnet.prefix_len
            ),
        ));
    }
    Ok(addr)
}

/// Parses `--uplink-addr ADDRESS/PREFIX` (not `dhcp`): a host of its
/// network, and a network apart from the ports' subnet `lan`.
fn parse_uplink_addr(s: &str, lan: Ipv4Net) -> Result<WanAddr, ConfigError> {
    let err = |msg: String| ConfigError::opt("uplink_addr", msg);
    let (a, l) = s.split_once('/').ok_or_else(|| {
        err(format!(
            "--uplink-addr '{s}' is not ADDRESS/PREFIX (e.g. 10.99.0.2/24) or dhcp"
        ))
    })?;
    let a: Ipv4Addr = a
        .parse()
        .map_err(|_| err(format!("--uplink-addr '{s}': '{a}' is not an IPv4 address")))?;
    let l: u8 = l
        .parse()
        .ok()
        .filter(|l| (1..=32).contains(l))
        .ok_or_else(|| err(format!("--uplink-addr '{s}': prefix '{l}' is not 1..32")))?;
    let net = Ipv4Net {
        addr: Ipv4Addr::from(
            u32::from(a)
                & Ipv4Net {
                    addr: a,
                    prefix_len: l,
                }
                .mask(),
        ),
        prefix_len: l,
    };
    if l < 31 && !net.is_usable_host(a) {
        return Err(err(format!(
            "--uplink-addr {s} is not a host address of {net}"
        )));
    }
    let overlap = lan.contains(net.addr) || net.contains(lan.addr);
    if overlap {
        return Err(err(format!(
            "--uplink-addr {s} overlaps the ports' subnet {lan}; the uplink needs another network"
        )));
    }
    Ok(WanAddr::Static(a, l))
}

impl Cli {
    fn uplink_spec(&self, lan: Ipv4Net) -> Result<Option<UplinkSpec>, ConfigError> {
        let Some(ifname) = self.uplink.clone() else {
            for (set, id) in [
                (self.uplink_addr.is_some(), "uplink_addr"),
                (self.uplink_gw.is_some(), "uplink_gw"),
                (self.uplink_mac.is_some(), "uplink_mac"),
            ] {
                if set {
                    let flag = super::Key::flag(id);
                    return Err(ConfigError::opt(id, format!("{flag} needs --uplink IFACE")));
                }
            }
            return Ok(None);
        };
        check_ifname("uplink", &ifname)?;
        let addr = match self.uplink_addr.as_deref() {
            None => {
                return Err(ConfigError::opt(
                    "uplink",
                    format!(
                        "--uplink {ifname} needs --uplink-addr ADDRESS/PREFIX (the gateway's own address there) or --uplink-addr dhcp"
                    ),
                ));
            }
            Some("dhcp") => WanAddr::Dhcp,
            Some(s) => parse_uplink_addr(s, lan)?,
        };
        let gw = match &self.uplink_gw {
            None => None,
            Some(g) => {
                let err = |msg: String| ConfigError::opt("uplink_gw", msg);
                let g: Ipv4Addr = g
                    .parse()
                    .map_err(|_| err(format!("--uplink-gw '{g}' is not an IPv4 address")))?;
                if let WanAddr::Static(a, l) = addr {
                    let mask = Ipv4Net {
                        addr: a,
                        prefix_len: l,
                    }
                    .mask();
                    if g == a || (u32::from(g) ^ u32::from(a)) & mask != 0 {
                        return Err(err(format!(
                            "--uplink-gw {g} is not another host of the uplink's network {a}/{l}"
                        )));
                    }
                }
                Some(g)
            }
        };
        let mac = match &self.uplink_mac {
            None => None,
            Some(m) => {
                let err = |msg: String| ConfigError::opt("uplink_mac", msg);
                let m: MacAddr = m.parse().map_err(|e| err(format!("--uplink-mac: {e}")))?;
                if !m.is_valid_source() {
                    return Err(err(format!("--uplink-mac {m} is not a unicast MAC")));
                }
                Some(m)
            }
        };
        Ok(Some(UplinkSpec {
            ifname,
            addr,
            gw,
            mac,
        }))
    }

    fn dns_config(&self, subnet: Ipv4Net) -> Result<Option<crate::dns::DnsConfig>, ConfigError> {
        if self.no_dns {
            return Ok(None);
        }
        let mut upstreams = Vec::new();
        for u in &self.dns_upstream {
            let ip: Ipv4Addr = u.trim().parse().map_err(|_| {
                ConfigError::opt(
                    "dns_upstream",
                    format!("--dns-upstream '{u}' is not an IPv4 address"),
                )
            })?;
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
                return Err(ConfigError::opt(
                    "dns_upstream",
                    format!(
                        "--dns-upstream {ip}: not a server's address (unspecified, loopback, broadcast or multicast)"
                    ),
                ));
            }
            if subnet.contains(ip) {
                return Err(ConfigError::opt(
                    "dns_upstream",
                    format!(
                        "--dns-upstream {ip} is inside --subnet {subnet}: upstreams are asked through the uplink"
                    ),
                ));
            }
            if !upstreams.contains(&ip) {
                upstreams.push(ip);
            }
        }
        let domain = match &self.dns_domain {
            Some(d) => {
                let domain = d.trim_end_matches('.').to_ascii_lowercase();
                check_dns_domain(&domain).map_err(|why| {
                    ConfigError::opt("dns_domain", format!("--dns-domain '{d}': {why}"))
                })?;
                domain
            }
            None => domain_of_instance(&self.name),
        };
        Ok(Some(crate::dns::DnsConfig { domain, upstreams }))
    }

    fn nat_config(&self) -> Result<Option<NatConfig>, ConfigError> {
        if self.no_nat {
            return Ok(None);
        }
        if self.nat_max == 0 || self.nat_max > 16_000_000 {
            return Err(ConfigError::opt(
                "nat_max",
                format!("--nat-max {} must be 1..16000000", self.nat_max),
            ));
        }
        let bad_range = || {
            ConfigError::opt(
                "nat_ports",
                format!(
                    "--nat-ports '{}' is not MIN-MAX within 1-65535",
                    self.nat_ports
                ),
            )
        };
        let (lo, hi) = self.nat_ports.split_once('-').ok_or_else(bad_range)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad_range())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad_range())?;
        if lo == 0 || lo > hi {
            return Err(bad_range());
        }
        for (v, id) in [
            (self.nat_tcp_timeout, "nat_tcp_timeout"),
            (self.nat_tcp_transitory, "nat_tcp_transitory"),
            (self.nat_udp_timeout, "nat_udp_timeout"),
            (self.nat_icmp_timeout, "nat_icmp_timeout"),
        ] {
            if v == 0 || v > 10_000_000 {
                let flag = super::Key::flag(id);
                return Err(ConfigError::opt(
                    id,
                    format!("{flag} {v} must be 1..10000000 seconds"),
                ));
            }
        }
        let per_port = self.nat_max_per_port.unwrap_or(self.nat_max.div_ceil(4));
        if per_port == 0 || per_port > self.nat_max {
            return Err(ConfigError::opt(
                "nat_max_per_port",
                format!(
                    "--nat-max-per-port {per_port} must be 1..{} (--nat-max)",
                    self.nat_max
                ),
            ));
        }
        Ok(Some(NatConfig {
            max_flows: self.nat_max,
            max_per_inside: per_port,
            port_min: lo,
            port_max: hi,
            timeouts: NatTimeouts {
                tcp_established: self.nat_tcp_timeout * 1000,
                tcp_transitory: self.nat_tcp_transitory * 1000,
                tcp_closed: 10_000,
                tcp_loose: 30_000,
                udp: self.nat_udp_timeout * 1000,
                icmp: self.nat_icmp_timeout * 1000,
            },
        }))
    }

    /// The `--ports` items, each with its address: given, or host 10+n of
    /// the subnet for the n-th item; no name or address twice.
    fn port_specs(&self, subnet: Ipv4Net, gateway: Ipv4Addr) -> Result<Vec<PortSpec>, ConfigError> {
        let items: Vec<&str> = self
            .ports
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .collect();
        let mut ports: Vec<PortSpec> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let (ns, addr) = parse_port_spec_as(item, subnet, "--ports: ")?;
            if ports.iter().any(|p| p.netns == ns) {
                return Err(ConfigError::port(
                    &ns,
                    format!("--ports: namespace {ns} is listed twice"),
                ));
            }
            let addr_given = addr.is_some();
            let addr = match addr {
                Some(a) => a,
                None => subnet.host(10 + i as u32 + 1).ok_or_else(|| {
                    ConfigError::opt(
                        "subnet",
                        format!(
                            "--subnet {subnet} is too small for {} ports: port {ns} (number {}) would get host {} (give it an address with {ns}=ADDR or use a larger subnet)",
                            items.len(),
                            i + 1,
                            11 + i
                        ),
                    )
                })?,
            };
            let taken: Vec<(String, Ipv4Addr)> =
                ports.iter().map(|p| (p.netns.clone(), p.addr)).collect();
            check_port_addr(&ns, addr, subnet, gateway, &taken)?;
            ports.push(PortSpec {
                netns: ns,
                addr,
                explicit: addr_given,
            });
        }
        // An explicit address later in the list may collide with an earlier
        // default one; the loop above catches that in either order.
        if ports.is_empty() {
            return Err(ConfigError::other(
                "no ports: give --ports NS[,NS...] (or [[port]] entries in the --config file)",
            ));
        }
        if ports.len() > u16::MAX as usize - 1 {
            return Err(ConfigError::other("--ports: too many ports"));
        }
        Ok(ports)
    }

    /// `--host-port [ADDR]`: the address (the subnet's last host by
    /// default), not the gateway's or a port's; the TAP takes the
    /// instance's name, so that must fit an interface name.
    fn host_port(
        &self,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
        ports: &[PortSpec],
    ) -> Result<Option<Ipv4Addr>, ConfigError> {
        let Some(given) = &self.host_port else {
            return Ok(None);
        };
        let err = |msg: String| ConfigError::opt("host_port", format!("--host-port {msg}"));
        if self.name.len() > 15 {
            return Err(err(format!(
                "names its TAP after the instance: --name {} is {} bytes, an interface name at most 15",
                self.name,
                self.name.len()
            )));
        }
        if !self.etcd.is_empty() {
            return Err(err(
                "and --etcd do not go together (its address would not be claimed in the directory)"
                    .into(),
            ));
        }
        let addr = match given {
            Some(a) => a
                .parse()
                .map_err(|_| err(format!("'{a}' is not an IPv4 address")))?,
            None => Ipv4Addr::from(u32::from(subnet.broadcast()) - 1),
        };
        if !subnet.is_usable_host(addr) || addr == gateway {
            return Err(err(format!(
                "{addr} is not a host address of the subnet {subnet} other than the gateway's"
            )));
        }
        if let Some(p) = ports
            .iter()
            .find(|p| p.addr == addr || p.netns == self.name)
        {
            return Err(err(format!(
                "{addr} (TAP {}) collides with port {} ({})",
                self.name, p.netns, p.addr
            )));
        }
        Ok(Some(addr))
    }

    /// Validates the command line into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        check_instance_name(&self.name)?;
        check_ifname("ifname", &self.ifname)?;
        let subnet: Ipv4Net = self
            .subnet
            .parse()
            .map_err(|e| ConfigError::opt("subnet", format!("--subnet {e}")))?;
        if subnet.prefix_len > 30 {
            return Err(ConfigError::opt(
                "subnet",
                format!(
                    "--subnet {subnet} is too small: it has no room for a gateway and a port (use /30 or larger)"
                ),
            ));
        }
        let gateway: Ipv4Addr = match &self.gateway {
            None => subnet
                .host(1)
                .expect("a /30 or larger subnet has a first host"),
            Some(g) => g.parse().map_err(|_| {
                ConfigError::opt("gateway", format!("--gateway '{g}' is not an IPv4 address"))
            })?,
        };
        check_log_level(&self.log_level)?;
        if !subnet.is_usable_host(gateway) {
            return Err(ConfigError::opt(
                "gateway",
                format!("--gateway {gateway} is not a host address of the subnet {subnet}"),
            ));
        }
        let mtu = self.mtu.unwrap_or(1500);
        for (bad, id, msg) in [
            (
                self.aging == 0 || self.aging > 1_000_000,
                "aging",
                format!("--aging {} must be 1..1000000 seconds", self.aging),
            ),
            (
                self.fdb_max == 0 || self.fdb_max > 16_000_000,
                "fdb_max",
                format!("--fdb-max {} must be 1..16000000", self.fdb_max),
            ),
            (
                self.busy_poll > 100_000,
                "busy_poll",
                format!(
                    "--busy-poll {} must be 0..100000 microseconds",
                    self.busy_poll
                ),
            ),
            (
                !(1..=64).contains(&self.workers),
                "workers",
                format!("--workers {} must be 1..64", self.workers),
            ),
            (
                self.busy_poll_adaptive > 100_000,
                "busy_poll_adaptive",
                format!(
                    "--busy-poll-adaptive {} must be 0..100000 microseconds",
                    self.busy_poll_adaptive
                ),
            ),
            (
                !(68..=65521).contains(&mtu),
                "mtu",
                format!("--mtu {mtu} must be 68..65521"),
            ),
        ] {
            if bad {
                return Err(ConfigError::opt(id, msg));
            }
        }
        let ports = self.port_specs(subnet, gateway)?;
        let metrics = match &self.metrics {
            None => None,
            Some(m) => Some(parse_metrics_addr(m)?),
        };
        let uplink = self.uplink_spec(subnet)?;
        let nat = self.nat_config()?;
        let publish = super::publish::specs(&self.publish, &ports, subnet, gateway, nat.is_some())?;
        let overlay = self.overlay_config(subnet)?;
        let directory = self.directory_opts()?;
        let host_port = self.host_port(subnet, gateway, &ports)?;
        let dns = self.dns_config(subnet)?;
        Ok(Config {
            host_port,
            dns,
            overlay,
            directory,
            mtu_given: self.mtu.is_some(),
            uplink,
            nat,
            publish,
            name: self.name,
            ifname: self.ifname,
            subnet,
            gateway,
            aging_secs: self.aging,
            fdb_max: self.fdb_max,
            mtu,
            keep_netns: self.keep_netns,
            offload: !self.no_offload,
            udp_coalesce: !self.no_udp_coalesce,
            port_security: self.port_security,
            sandbox: !self.no_sandbox,
            busy_poll_us: self.busy_poll,
            busy_poll_adaptive_us: self.busy_poll_adaptive,
            workers: self.workers as usize,
            metrics,
            ports,
        })
    }
}
