//! Command line -> validated [`Config`].
//!
//! Everything a start can be refused for is checked here, before anything is
//! created, so a refused start leaves nothing behind. Each error is one line
//! naming the culprit.

use crate::control::netns;
use crate::gateway::WanAddr;
use crate::gateway::nat::{NatConfig, NatTimeouts};
use crate::sys::IFNAMSIZ;
use crate::wire::MacAddr;
pub use crate::wire::ipv4::Ipv4Net;
use clap::Parser;
use std::net::Ipv4Addr;
use toml::Spanned;

/// vswitchd: a userspace L2 switch for network namespaces.
///
/// Creates (or uses) one network namespace per port, puts a TAP interface in
/// each with an address from the subnet and a default route via the gateway,
/// and switches Ethernet frames between them with a learning MAC table, as a
/// Linux bridge with a veth pair per namespace would. Inspect and steer the
/// running switch with `vswitchctl`. Must run as root.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "vswitchd",
    version,
    after_help = "Example: vswitchd --ports ns01,ns02\n  ns01 gets 192.168.88.11/24, ns02 192.168.88.12/24, both `default via 192.168.88.1`;\n  then: ip netns exec ns01 ping 192.168.88.12"
)]
pub struct Cli {
    /// Ports, comma separated: NS[=ADDR]. NS is a network namespace name
    /// (created, `ip netns` compatible, if missing; used as it is if it
    /// exists). Without ADDR the n-th port (1-based) gets host 10+n of the
    /// subnet (ns01 -> .11, ns02 -> .12). May be given several times.
    #[arg(long, value_name = "NS[=ADDR],...")]
    pub ports: Vec<String>,

    /// Read settings from a TOML file (see examples/vswitchd.toml); options
    /// given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Instance name; the control socket is /run/vswitchd/NAME.sock.
    #[arg(long, default_value = "vsw0")]
    pub name: String,

    /// Name of the TAP interface created inside each namespace (at most 15 bytes).
    #[arg(long, default_value = "eth0")]
    pub ifname: String,

    /// Subnet the ports' addresses come from.
    #[arg(long, default_value = "192.168.88.0/24")]
    pub subnet: String,

    /// Gateway address: every namespace's default route points at it.
    #[arg(long, default_value = "192.168.88.1")]
    pub gateway: String,

    /// Seconds a learned MAC stays in the table without being seen again.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub aging: u64,

    /// Most entries the MAC table holds. When full, the least recently seen
    /// entry of the port holding the most entries is evicted.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pub fdb_max: usize,

    /// MTU of the TAP interfaces; frames up to MTU+14 bytes (+4 with a VLAN tag) pass.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,

    /// On exit, keep the namespaces vswitchd created (they are deleted otherwise).
    #[arg(long)]
    pub keep_netns: bool,

    /// After handling traffic, keep polling without sleeping for this many
    /// microseconds (0: always sleep; at most 100000). A frame that arrives
    /// while polling is forwarded without a scheduler wake-up, which on a VM
    /// is most of the added latency: a window longer than the gap between
    /// packets (e.g. 10000 for 5 ms pings) brings ping RTT to the kernel's,
    /// at the cost of CPU while traffic flows. Idle switches sleep.
    #[arg(long, default_value_t = 200, value_name = "USECS")]
    pub busy_poll: u64,

    /// Open the TAPs without the virtio-net header and offloads: the kernel
    /// then finishes checksums and segments to the MTU before handing frames
    /// over (slower; for comparison and debugging).
    #[arg(long)]
    pub no_offload: bool,

    /// Uplink: an existing Ethernet interface in vswitchd's own namespace (a
    /// NIC, or one end of a veth pair), taken raw and promiscuous. The
    /// gateway is a separate host there, with its own MAC and address.
    #[arg(long, value_name = "IFACE")]
    pub uplink: Option<String>,

    /// The gateway's own address on the uplink's network (ADDRESS/PREFIX, not
    /// the host's address), or `dhcp` to get one from a DHCP server.
    #[arg(long, value_name = "CIDR|dhcp")]
    pub uplink_addr: Option<String>,

    /// Next hop for the default route on the uplink (DHCP's router is used
    /// when `--uplink-addr dhcp` and this is not given).
    #[arg(long, value_name = "IP")]
    pub uplink_gw: Option<String>,

    /// The gateway's MAC on the uplink (default: a stable, locally
    /// administered MAC derived from the instance and interface names).
    #[arg(long, value_name = "MAC")]
    pub uplink_mac: Option<String>,

    /// Most NAT flows; new flows beyond it are refused (existing ones stay).
    #[arg(long, default_value_t = 65_536, value_name = "N")]
    pub nat_max: usize,

    /// Route without address translation (the outside routes the subnet back).
    #[arg(long)]
    pub no_nat: bool,

    /// External ports for TCP/UDP when a flow's own port is taken.
    #[arg(long, default_value = "1024-65535", value_name = "MIN-MAX")]
    pub nat_ports: String,

    /// Seconds an established TCP flow lives idle (RFC 5382: at least 7440).
    #[arg(long, default_value_t = 7440, value_name = "SECS")]
    pub nat_tcp_timeout: u64,

    /// Seconds for TCP flows opening or closing (SYN, FIN, TIME-WAIT).
    #[arg(long, default_value_t = 240, value_name = "SECS")]
    pub nat_tcp_transitory: u64,

    /// Seconds a UDP flow lives idle (RFC 4787: at least 120).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub nat_udp_timeout: u64,

    /// Seconds an ICMP echo flow lives idle.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub nat_icmp_timeout: u64,

    /// Serve Prometheus metrics over HTTP on ADDR:PORT (a bare PORT means
    /// 127.0.0.1:PORT). Off by default.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,

    /// Log level (error, warn, info, debug, trace) or a tracing filter;
    /// RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// The uplink part of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkSpec {
    pub ifname: String,
    pub addr: WanAddr,
    pub gw: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
}

/// A `--config` file. Keys are the long options' names with `_` for `-`;
/// ports, uplink and NAT settings are tables.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<Spanned<String>>,
    ifname: Option<Spanned<String>>,
    subnet: Option<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    aging: Option<Spanned<u64>>,
    fdb_max: Option<Spanned<usize>>,
    mtu: Option<Spanned<u32>>,
    keep_netns: Option<Spanned<bool>>,
    busy_poll: Option<Spanned<u64>>,
    offload: Option<Spanned<bool>>,
    metrics: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    #[serde(default)]
    port: Vec<Spanned<FilePort>>,
    uplink: Option<FileUplink>,
    nat: Option<FileNat>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePort {
    netns: String,
    addr: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUplink {
    ifname: Spanned<String>,
    addr: Option<Spanned<String>>,
    gw: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNat {
    enabled: Option<Spanned<bool>>,
    max: Option<Spanned<usize>>,
    ports: Option<Spanned<String>>,
    tcp_timeout: Option<Spanned<u64>>,
    tcp_transitory: Option<Spanned<u64>>,
    udp_timeout: Option<Spanned<u64>>,
    icmp_timeout: Option<Spanned<u64>>,
}

/// Where the values a config file gave came from, to point errors at the
/// file, line and key.
#[derive(Default, Debug)]
pub struct Origins {
    /// (text the validation error names, e.g. "--subnet" or "port ns01",
    ///  what to say instead, "FILE:LINE: subnet")
    entries: Vec<(String, String, String)>,
}

impl Origins {
    /// Rewrites a validation error about a value from the file so it names
    /// the file, line and key.
    pub fn locate(&self, err: String) -> String {
        // The last entry first: of two ports with one name, the second is
        // the duplicate.
        for (needle, loc, key) in self.entries.iter().rev() {
            // A whole word: "--uplink" must not match "--uplink-addr".
            let whole = err.match_indices(needle.as_str()).any(|(i, _)| {
                err[i + needle.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'))
            });
            if whole {
                let msg = err.replacen(needle.as_str(), key, 1);
                return format!("{loc}: {}", msg.trim_start_matches("--ports: "));
            }
        }
        err
    }
}

struct FileCtx<'a> {
    m: &'a clap::ArgMatches,
    path: String,
    text: &'a str,
    origins: Origins,
}

impl FileCtx<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }
    fn at(&self, span: std::ops::Range<usize>) -> String {
        format!("{}:{}", self.path, self.line(span))
    }
    /// The file's value for option `id` unless the command line gave one.
    fn take<T: Clone>(&mut self, id: &str, key: &str, v: &Option<Spanned<T>>) -> Option<T> {
        let v = v.as_ref()?;
        if self.m.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return None;
        }
        let loc = self.at(v.span());
        self.origins
            .entries
            .push((format!("--{}", id.replace('_', "-")), loc, key.to_string()));
        Some(v.get_ref().clone())
    }
}

impl Cli {
    /// Parses the command line and, with `--config`, fills every option the
    /// command line did not give from the file. Errors name the file, line
    /// and key.
    pub fn parse_with_file(m: &clap::ArgMatches) -> Result<(Cli, Origins), String> {
        use clap::FromArgMatches;
        let mut cli = Cli::from_arg_matches(m).map_err(|e| e.to_string())?;
        let Some(path) = cli.config.clone() else {
            return Ok((cli, Origins::default()));
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read config file {shown}: {e}"))?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            format!("{shown}:{line}: {}", e.message().trim())
        })?;
        let mut cx = FileCtx {
            m,
            path: shown,
            text: &text,
            origins: Origins::default(),
        };
        // take!(option id, file key, file value => field): the file's value
        // unless the command line gave the option.
        macro_rules! take {
            ($id:literal, $key:literal, $v:expr => $dst:expr) => {
                if let Some(v) = cx.take($id, $key, &$v) {
                    $dst = v.into();
                }
            };
        }
        take!("name", "name", file.name => cli.name);
        take!("ifname", "ifname", file.ifname => cli.ifname);
        take!("subnet", "subnet", file.subnet => cli.subnet);
        take!("gateway", "gateway", file.gateway => cli.gateway);
        take!("aging", "aging", file.aging => cli.aging);
        take!("fdb_max", "fdb_max", file.fdb_max => cli.fdb_max);
        take!("mtu", "mtu", file.mtu => cli.mtu);
        if let Some(v) = cx.take("keep_netns", "keep_netns", &file.keep_netns) {
            cli.keep_netns |= v;
        }
        take!("busy_poll", "busy_poll", file.busy_poll => cli.busy_poll);
        if let Some(v) = cx.take("no_offload", "offload", &file.offload) {
            cli.no_offload |= !v;
        }
        take!("metrics", "metrics", file.metrics => cli.metrics);
        take!("log_level", "log_level", file.log_level => cli.log_level);
        if cli.ports.is_empty() {
            for p in &file.port {
                let loc = cx.at(p.span());
                let FilePort { netns, addr } = p.get_ref();
                cx.origins.entries.push((
                    format!("port {netns}"),
                    loc.clone(),
                    format!("port {netns}"),
                ));
                cx.origins.entries.push((
                    format!("namespace {netns}"),
                    loc,
                    format!("namespace {netns}"),
                ));
                cli.ports.push(match addr {
                    Some(a) => format!("{netns}={a}"),
                    None => netns.clone(),
                });
            }
        }
        if let Some(u) = &file.uplink {
            take!("uplink", "uplink.ifname", Some(u.ifname.clone()) => cli.uplink);
            take!("uplink_addr", "uplink.addr", u.addr => cli.uplink_addr);
            take!("uplink_gw", "uplink.gw", u.gw => cli.uplink_gw);
            take!("uplink_mac", "uplink.mac", u.mac => cli.uplink_mac);
        }
        if let Some(n) = &file.nat {
            if let Some(v) = cx.take("no_nat", "nat.enabled", &n.enabled) {
                cli.no_nat |= !v;
            }
            take!("nat_max", "nat.max", n.max => cli.nat_max);
            take!("nat_ports", "nat.ports", n.ports => cli.nat_ports);
            take!("nat_tcp_timeout", "nat.tcp_timeout", n.tcp_timeout => cli.nat_tcp_timeout);
            take!("nat_tcp_transitory", "nat.tcp_transitory", n.tcp_transitory => cli.nat_tcp_transitory);
            take!("nat_udp_timeout", "nat.udp_timeout", n.udp_timeout => cli.nat_udp_timeout);
            take!("nat_icmp_timeout", "nat.icmp_timeout", n.icmp_timeout => cli.nat_icmp_timeout);
        }
        Ok((cli, cx.origins))
    }
}

/// One port of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub netns: String,
    pub addr: Ipv4Addr,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub ifname: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub aging_secs: u64,
    pub fdb_max: usize,
    pub mtu: u32,
    pub keep_netns: bool,
    /// TAPs with virtio-net header, checksum and TCP segmentation offload.
    pub offload: bool,
    /// Busy-poll window after traffic, microseconds.
    pub busy_poll_us: u64,
    /// Prometheus endpoint.
    pub metrics: Option<std::net::SocketAddr>,
    pub ports: Vec<PortSpec>,
    pub uplink: Option<UplinkSpec>,
    /// `None` with `--no-nat`.
    pub nat: Option<NatConfig>,
}

/// Checks an interface name as the kernel's `dev_valid_name` does.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("--ifname: an interface name cannot be empty".into());
    }
    if name.len() >= IFNAMSIZ {
        return Err(format!(
            "--ifname '{name}' is {} bytes; interface names are at most {} bytes",
            name.len(),
            IFNAMSIZ - 1
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(format!(
            "--ifname '{name}' is not a valid interface name (no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

/// Checks an instance name: it becomes a file name under /run/vswitchd.
pub fn check_instance_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--name '{name}' is not a valid instance name (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')"
        ))
    }
}

/// `ADDR:PORT`, or a bare `PORT` on loopback.
fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("--metrics '{s}' is not ADDR:PORT (e.g. 127.0.0.1:9477) or a port"))
}

/// Splits `NS[=ADDR]` and checks the namespace name; the address, if any,
/// is parsed (`192.168.88.20` or `192.168.88.20/24`) but not yet checked
/// against the subnet's hosts.
pub fn parse_port_spec(item: &str, subnet: Ipv4Net) -> Result<(String, Option<Ipv4Addr>), String> {
    let (ns, addr) = match item.split_once('=') {
        Some((ns, a)) => (ns, Some(a)),
        None => (item, None),
    };
    netns::check_name(ns)?;
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
) -> Result<(), String> {
    if !subnet.is_usable_host(addr) {
        return Err(format!(
            "port {ns}: address {addr} is not a host address of the subnet {subnet}"
        ));
    }
    if addr == gateway {
        return Err(format!(
            "port {ns}: address {addr} is the gateway's address"
        ));
    }
    if let Some((other, _)) = taken.iter().find(|(_, a)| *a == addr) {
        return Err(format!(
            "port {ns}: address {addr} is already taken by port {other}"
        ));
    }
    Ok(())
}

/// Parses `192.168.88.20` or `192.168.88.20/24` (the prefix must match the subnet).
fn parse_port_addr(ns: &str, s: &str, subnet: Ipv4Net) -> Result<Ipv4Addr, String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("port {ns}: '{s}' is not an IPv4 address"))?;
    if let Some(l) = len
        && l.parse::<u8>().ok() != Some(subnet.prefix_len)
    {
        return Err(format!(
            "port {ns}: prefix /{l} differs from the subnet's /{} ({subnet})",
            subnet.prefix_len
        ));
    }
    Ok(addr)
}

impl Cli {
    fn uplink_spec(&self, lan: Ipv4Net) -> Result<Option<UplinkSpec>, String> {
        let Some(ifname) = self.uplink.clone() else {
            for (set, flag) in [
                (self.uplink_addr.is_some(), "--uplink-addr"),
                (self.uplink_gw.is_some(), "--uplink-gw"),
                (self.uplink_mac.is_some(), "--uplink-mac"),
            ] {
                if set {
                    return Err(format!("{flag} needs --uplink IFACE"));
                }
            }
            return Ok(None);
        };
        check_ifname(&ifname).map_err(|e| e.replace("--ifname", "--uplink"))?;
        let addr = match self.uplink_addr.as_deref() {
            None => {
                return Err(format!(
                    "--uplink {ifname} needs --uplink-addr ADDRESS/PREFIX (the gateway's own address there) or --uplink-addr dhcp"
                ));
            }
            Some("dhcp") => WanAddr::Dhcp,
            Some(s) => {
                let (a, l) = s.split_once('/').ok_or_else(|| {
                    format!("--uplink-addr '{s}' is not ADDRESS/PREFIX (e.g. 10.99.0.2/24) or dhcp")
                })?;
                let a: Ipv4Addr = a
                    .parse()
                    .map_err(|_| format!("--uplink-addr '{s}': '{a}' is not an IPv4 address"))?;
                let l: u8 = l
                    .parse()
                    .ok()
                    .filter(|l| (1..=32).contains(l))
                    .ok_or_else(|| format!("--uplink-addr '{s}': prefix '{l}' is not 1..32"))?;
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
                    return Err(format!("--uplink-addr {s} is not a host address of {net}"));
                }
                let overlap = lan.contains(net.addr) || net.contains(lan.addr);
                if overlap {
                    return Err(format!(
                        "--uplink-addr {s} overlaps the ports' subnet {lan}; the uplink needs another network"
                    ));
                }
                WanAddr::Static(a, l)
            }
        };
        let gw = match &self.uplink_gw {
            None => None,
            Some(g) => {
                let g: Ipv4Addr = g
                    .parse()
                    .map_err(|_| format!("--uplink-gw '{g}' is not an IPv4 address"))?;
                if let WanAddr::Static(a, l) = addr {
                    let mask = Ipv4Net {
                        addr: a,
                        prefix_len: l,
                    }
                    .mask();
                    if g == a || (u32::from(g) ^ u32::from(a)) & mask != 0 {
                        return Err(format!(
                            "--uplink-gw {g} is not another host of the uplink's network {a}/{l}"
                        ));
                    }
                }
                Some(g)
            }
        };
        let mac = match &self.uplink_mac {
            None => None,
            Some(m) => {
                let m: MacAddr = m.parse().map_err(|e| format!("--uplink-mac: {e}"))?;
                if !m.is_valid_source() {
                    return Err(format!("--uplink-mac {m} is not a unicast MAC"));
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

    fn nat_config(&self) -> Result<Option<NatConfig>, String> {
        if self.no_nat {
            return Ok(None);
        }
        if self.nat_max == 0 || self.nat_max > 16_000_000 {
            return Err(format!("--nat-max {} must be 1..16000000", self.nat_max));
        }
        let bad_range = || {
            format!(
                "--nat-ports '{}' is not MIN-MAX within 1-65535",
                self.nat_ports
            )
        };
        let (lo, hi) = self.nat_ports.split_once('-').ok_or_else(bad_range)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad_range())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad_range())?;
        if lo == 0 || lo > hi {
            return Err(bad_range());
        }
        for (v, flag) in [
            (self.nat_tcp_timeout, "--nat-tcp-timeout"),
            (self.nat_tcp_transitory, "--nat-tcp-transitory"),
            (self.nat_udp_timeout, "--nat-udp-timeout"),
            (self.nat_icmp_timeout, "--nat-icmp-timeout"),
        ] {
            if v == 0 || v > 10_000_000 {
                return Err(format!("{flag} {v} must be 1..10000000 seconds"));
            }
        }
        Ok(Some(NatConfig {
            max_flows: self.nat_max,
            port_min: lo,
            port_max: hi,
            timeouts: NatTimeouts {
                tcp_established: self.nat_tcp_timeout * 1000,
                tcp_transitory: self.nat_tcp_transitory * 1000,
                tcp_closed: 10_000,
                udp: self.nat_udp_timeout * 1000,
                icmp: self.nat_icmp_timeout * 1000,
            },
        }))
    }

    /// Validates the command line into a [`Config`].
    pub fn into_config(self) -> Result<Config, String> {
        check_instance_name(&self.name)?;
        check_ifname(&self.ifname)?;
        let subnet: Ipv4Net = self.subnet.parse().map_err(|e| format!("--subnet {e}"))?;
        if subnet.prefix_len > 30 {
            return Err(format!(
                "--subnet {subnet} is too small: it has no room for a gateway and a port (use /30 or larger)"
            ));
        }
        let gateway: Ipv4Addr = self
            .gateway
            .parse()
            .map_err(|_| format!("--gateway '{}' is not an IPv4 address", self.gateway))?;
        if !subnet.is_usable_host(gateway) {
            return Err(format!(
                "--gateway {gateway} is not a host address of the subnet {subnet}"
            ));
        }
        if self.aging == 0 || self.aging > 1_000_000 {
            return Err(format!("--aging {} must be 1..1000000 seconds", self.aging));
        }
        if self.fdb_max == 0 || self.fdb_max > 16_000_000 {
            return Err(format!("--fdb-max {} must be 1..16000000", self.fdb_max));
        }
        if self.busy_poll > 100_000 {
            return Err(format!(
                "--busy-poll {} must be 0..100000 microseconds",
                self.busy_poll
            ));
        }
        if !(68..=65521).contains(&self.mtu) {
            return Err(format!("--mtu {} must be 68..65521", self.mtu));
        }

        let items: Vec<&str> = self
            .ports
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .collect();
        let mut ports: Vec<PortSpec> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let (ns, addr) = parse_port_spec(item, subnet).map_err(|e| {
                if e.starts_with("port ") {
                    e
                } else {
                    format!("--ports: {e}")
                }
            })?;
            if ports.iter().any(|p| p.netns == ns) {
                return Err(format!("--ports: namespace {ns} is listed twice"));
            }
            let addr = match addr {
                Some(a) => a,
                None => subnet.host(10 + i as u32 + 1).ok_or_else(|| {
                    format!(
                        "--subnet {subnet} is too small for {} ports: port {ns} (number {}) would get host {} (give it an address with {ns}=ADDR or use a larger subnet)",
                        items.len(),
                        i + 1,
                        11 + i
                    )
                })?,
            };
            let taken: Vec<(String, Ipv4Addr)> =
                ports.iter().map(|p| (p.netns.clone(), p.addr)).collect();
            check_port_addr(&ns, addr, subnet, gateway, &taken)?;
            ports.push(PortSpec { netns: ns, addr });
        }
        // An explicit address later in the list may collide with an earlier
        // default one; the loop above catches that in either order.
        if ports.is_empty() {
            return Err(
                "no ports: give --ports NS[,NS...] (or [[port]] entries in the --config file)"
                    .into(),
            );
        }
        if ports.len() > u16::MAX as usize - 1 {
            return Err("--ports: too many ports".into());
        }
        let metrics = match &self.metrics {
            None => None,
            Some(m) => Some(parse_metrics_addr(m)?),
        };
        let uplink = self.uplink_spec(subnet)?;
        let nat = self.nat_config()?;
        Ok(Config {
            uplink,
            nat,
            name: self.name,
            ifname: self.ifname,
            subnet,
            gateway,
            aging_secs: self.aging,
            fdb_max: self.fdb_max,
            mtu: self.mtu,
            keep_netns: self.keep_netns,
            offload: !self.no_offload,
            busy_poll_us: self.busy_poll,
            metrics,
            ports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["vswitchd"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().into_config()
    }

    #[test]
    fn defaults_follow_the_seeds() {
        let c = cfg(&["--ports", "ns01,ns02"]).unwrap();
        assert_eq!(c.name, "vsw0");
        assert_eq!(c.ifname, "eth0");
        assert_eq!(c.subnet.to_string(), "192.168.88.0/24");
        assert_eq!(c.gateway, Ipv4Addr::new(192, 168, 88, 1));
        assert_eq!(c.aging_secs, 300);
        assert_eq!(c.fdb_max, 8192);
        assert_eq!(c.mtu, 1500);
        assert_eq!(
            c.ports,
            vec![
                PortSpec {
                    netns: "ns01".into(),
                    addr: Ipv4Addr::new(192, 168, 88, 11)
                },
                PortSpec {
                    netns: "ns02".into(),
                    addr: Ipv4Addr::new(192, 168, 88, 12)
                },
            ]
        );
    }

    #[test]
    fn explicit_addresses_and_repeated_flags() {
        let c = cfg(&[
            "--ports",
            "a=192.168.88.50",
            "--ports",
            "b,c=192.168.88.60/24",
        ])
        .unwrap();
        let addrs: Vec<String> = c.ports.iter().map(|p| p.addr.to_string()).collect();
        assert_eq!(addrs, ["192.168.88.50", "192.168.88.12", "192.168.88.60"]);
    }

    #[test]
    fn refusals_name_the_culprit() {
        let cases: &[(&[&str], &str)] = &[
            (&["--ports", "a,a"], "namespace a is listed twice"),
            (&["--ports", "a/b"], "a/b"),
            (&["--ports", ".."], "'..'"),
            (&["--ports", "a,,b"], "cannot be empty"),
            (&["--ports", "a=10.0.0.5"], "port a: address 10.0.0.5"),
            (&["--ports", "a=192.168.88.1"], "gateway"),
            (&["--ports", "a=192.168.88.255"], "192.168.88.255"),
            (
                &["--ports", "a=192.168.88.12,b"],
                "port b: address 192.168.88.12 is already taken by port a",
            ),
            (&["--ports", "a=192.168.88.5/16"], "prefix /16"),
            (&["--ports", "a=300.1.1.1"], "'300.1.1.1'"),
            (
                &[
                    "--ports",
                    "a,b,c,d,e",
                    "--subnet",
                    "10.0.0.0/28",
                    "--gateway",
                    "10.0.0.1",
                ],
                "too small for 5 ports: port e",
            ),
            (&["--ports", "a", "--subnet", "10.0.0.0/31"], "too small"),
            (
                &["--ports", "a", "--subnet", "10.0.0.1/24"],
                "did you mean 10.0.0.0/24",
            ),
            (
                &["--ports", "a", "--ifname", "abcdefghijklmnop"],
                "16 bytes",
            ),
            (
                &["--ports", "a", "--ifname", "a b"],
                "not a valid interface name",
            ),
            (&["--ports", "a", "--name", "../x"], "--name"),
            (
                &["--ports", "a", "--gateway", "10.1.1.1"],
                "--gateway 10.1.1.1",
            ),
            (&["--ports", "a", "--aging", "0"], "--aging"),
            (&["--ports", "a", "--fdb-max", "0"], "--fdb-max"),
            (&["--ports", "a", "--mtu", "10"], "--mtu"),
        ];
        for (args, want) in cases {
            let err = cfg(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: '{err}' lacks '{want}'");
            assert!(
                !err.contains('\n'),
                "{args:?}: error is not one line: {err}"
            );
        }
    }

    #[test]
    fn uplink_options() {
        let c = cfg(&[
            "--ports",
            "a",
            "--uplink",
            "veth0",
            "--uplink-addr",
            "10.99.0.2/24",
            "--uplink-gw",
            "10.99.0.1",
        ])
        .unwrap();
        let u = c.uplink.unwrap();
        assert_eq!(u.addr, WanAddr::Static(Ipv4Addr::new(10, 99, 0, 2), 24));
        assert_eq!(u.gw, Some(Ipv4Addr::new(10, 99, 0, 1)));
        assert_eq!(c.nat.unwrap().max_flows, 65_536);
        let c = cfg(&[
            "--ports",
            "a",
            "--uplink",
            "veth0",
            "--uplink-addr",
            "dhcp",
            "--no-nat",
        ])
        .unwrap();
        assert_eq!(c.uplink.unwrap().addr, WanAddr::Dhcp);
        assert!(c.nat.is_none());
        let cases: &[(&[&str], &str)] = &[
            (
                &["--ports", "a", "--uplink-addr", "dhcp"],
                "--uplink-addr needs --uplink",
            ),
            (
                &["--ports", "a", "--uplink", "veth0"],
                "needs --uplink-addr",
            ),
            (
                &[
                    "--ports",
                    "a",
                    "--uplink",
                    "veth0",
                    "--uplink-addr",
                    "10.99.0.2",
                ],
                "ADDRESS/PREFIX",
            ),
            (
                &[
                    "--ports",
                    "a",
                    "--uplink",
                    "veth0",
                    "--uplink-addr",
                    "192.168.88.200/24",
                ],
                "overlaps",
            ),
            (
                &[
                    "--ports",
                    "a",
                    "--uplink",
                    "veth0",
                    "--uplink-addr",
                    "10.99.0.0/24",
                ],
                "not a host address",
            ),
            (
                &[
                    "--ports",
                    "a",
                    "--uplink",
                    "veth0",
                    "--uplink-addr",
                    "10.99.0.2/24",
                    "--uplink-gw",
                    "10.98.0.1",
                ],
                "--uplink-gw 10.98.0.1",
            ),
            (
                &[
                    "--ports",
                    "a",
                    "--uplink",
                    "veth0",
                    "--uplink-addr",
                    "10.99.0.2/24",
                    "--uplink-mac",
                    "ff:ff:ff:ff:ff:ff",
                ],
                "--uplink-mac",
            ),
            (
                &[
                    "--ports",
                    "a",
                    "--uplink",
                    "this-is-too-long-x",
                    "--uplink-addr",
                    "dhcp",
                ],
                "--uplink",
            ),
            (&["--ports", "a", "--nat-ports", "2000-1000"], "--nat-ports"),
            (&["--ports", "a", "--nat-max", "0"], "--nat-max"),
            (
                &["--ports", "a", "--nat-udp-timeout", "0"],
                "--nat-udp-timeout",
            ),
        ];
        for (args, want) in cases {
            let err = cfg(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: '{err}' lacks '{want}'");
        }
    }

    fn from_file(toml: &str, args: &[&str]) -> Result<Config, String> {
        use clap::CommandFactory;
        let dir = std::env::temp_dir().join(format!("vswitchd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("t{}.toml", toml.len()));
        std::fs::write(&path, toml).unwrap();
        let mut v = vec![
            "vswitchd".to_string(),
            "--config".into(),
            path.display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        let m = Cli::command().try_get_matches_from(v).unwrap();
        let r = Cli::parse_with_file(&m)
            .and_then(|(cli, o)| cli.into_config().map_err(|e| o.locate(e)));
        let _ = std::fs::remove_file(&path);
        r.map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn config_file_says_what_the_command_line_says() {
        let c = from_file(
            r#"
name = "lab"
subnet = "10.7.0.0/24"
gateway = "10.7.0.1"
aging = 60
fdb_max = 100

[[port]]
netns = "a"

[[port]]
netns = "b"
addr = "10.7.0.50"

[uplink]
ifname = "up0"
addr = "10.99.0.2/24"
gw = "10.99.0.1"

[nat]
max = 1000
udp_timeout = 300
"#,
            &[],
        )
        .unwrap();
        assert_eq!(c.name, "lab");
        assert_eq!(c.aging_secs, 60);
        assert_eq!(c.ports[0].addr, Ipv4Addr::new(10, 7, 0, 11));
        assert_eq!(c.ports[1].addr, Ipv4Addr::new(10, 7, 0, 50));
        assert_eq!(c.uplink.as_ref().unwrap().ifname, "up0");
        let nat = c.nat.unwrap();
        assert_eq!(nat.max_flows, 1000);
        assert_eq!(nat.timeouts.udp, 300_000);
    }

    #[test]
    fn command_line_overrides_the_file() {
        let c = from_file(
            "name = \"lab\"\naging = 60\n[[port]]\nnetns = \"a\"\n",
            &["--aging", "90", "--ports", "x,y"],
        )
        .unwrap();
        assert_eq!(c.name, "lab");
        assert_eq!(c.aging_secs, 90);
        let names: Vec<&str> = c.ports.iter().map(|p| p.netns.as_str()).collect();
        assert_eq!(names, ["x", "y"]);
    }

    #[test]
    fn bad_config_files_name_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "aging = 60\nsubnet = \"10.0.0.1/24\"\n",
                "FILE:2: subnet '10.0.0.1/24' has host bits",
            ),
            (
                "[[port]]\nnetns = \"a\"\n\n[[port]]\nnetns = \"b\"\naddr = \"1.2.3.4\"\n",
                "FILE:4: port b",
            ),
            (
                "[[port]]\nnetns = \"a\"\n[[port]]\nnetns = \"a\"\n",
                "FILE:3: namespace a is listed twice",
            ),
            ("aging = \"soon\"\n", "FILE:1:"),
            ("[[port]]\nnetns = \"a\"\nbogus = 1\n", "FILE:3:"),
            (
                "[[port]]\nnetns = \"a\"\n[uplink]\nifname = \"up0\"\naddr = \"10.9.9.9\"\n",
                "FILE:5: uplink.addr",
            ),
            ("mtu = 5\n[[port]]\nnetns = \"a\"\n", "FILE:1: mtu 5"),
            ("name = [\n", "FILE:"),
        ];
        for (toml, want) in cases {
            let err = from_file(toml, &[]).unwrap_err();
            assert!(err.contains(want), "{toml:?}: '{err}' lacks '{want}'");
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(from_file("", &[]).unwrap_err().contains("no ports"));
    }

    #[test]
    fn subnet_small_but_sufficient() {
        // /28 has hosts 1..14: one port gets .11, which fits.
        let c = cfg(&[
            "--ports",
            "a",
            "--subnet",
            "10.0.0.0/28",
            "--gateway",
            "10.0.0.1",
        ])
        .unwrap();
        assert_eq!(c.ports[0].addr, Ipv4Addr::new(10, 0, 0, 11));
    }
}
