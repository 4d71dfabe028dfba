//! The `--config` TOML file: read it, fill every option the command line did
//! not give from it, and remember where each value came from ([`Origins`]) so
//! that a refusal can name the file, line and key.

use super::{Cli, ConfigError, Key};
use toml::Spanned;

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
    busy_poll_adaptive: Option<Spanned<u64>>,
    workers: Option<Spanned<u64>>,
    offload: Option<Spanned<bool>>,
    udp_coalesce: Option<Spanned<bool>>,
    port_security: Option<Spanned<bool>>,
    metrics: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    publish: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    port: Vec<Spanned<FilePort>>,
    uplink: Option<FileUplink>,
    nat: Option<FileNat>,
    overlay: Option<FileOverlay>,
    host_port: Option<Spanned<FileHostPort>>,
    dns: Option<FileDns>,
}

/// `host_port = true` (the subnet's last host), `false`, or `"ADDR"`.
#[derive(serde::Deserialize, Clone)]
#[serde(untagged)]
enum FileHostPort {
    On(bool),
    Addr(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDns {
    enabled: Option<Spanned<bool>>,
    upstream: Option<Spanned<Vec<String>>>,
    domain: Option<Spanned<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOverlay {
    vtep: Spanned<String>,
    peers: Option<Spanned<Vec<String>>>,
    vni: Option<Spanned<u32>>,
    port: Option<Spanned<u16>>,
    etcd: Option<Spanned<Vec<String>>>,
    network: Option<Spanned<String>>,
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
    max_per_port: Option<Spanned<usize>>,
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
    /// (option id, "FILE:LINE", the file's key), e.g.
    /// ("uplink_addr", "vsw.toml:6", "uplink.addr").
    opts: Vec<(&'static str, String, &'static str)>,
    /// (namespace, "FILE:LINE" of its `[[port]]`), in file order.
    ports: Vec<(String, String)>,
}

impl Origins {
    /// The error's message; if the file gave the value it is about, led by
    /// the file and line and naming the file's key instead of the flag.
    pub fn locate(&self, err: ConfigError) -> String {
        match &err.key {
            Some(Key::Opt(id)) => {
                if let Some((_, loc, key)) = self.opts.iter().find(|(i, ..)| i == id) {
                    // ConfigError::opt makes sure the message starts with the flag.
                    let flag = Key::flag(id);
                    let rest = err.msg.strip_prefix(flag.as_str()).unwrap_or(&err.msg);
                    return format!("{loc}: {key}{rest}");
                }
            }
            Some(Key::Port(ns)) => {
                // The last of two ports with one name is the duplicate.
                if let Some((_, loc)) = self.ports.iter().rev().find(|(n, _)| n == ns) {
                    let msg = err.msg.strip_prefix("--ports: ").unwrap_or(&err.msg);
                    return format!("{loc}: {msg}");
                }
            }
            None => {}
        }
        err.msg
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
    fn take<T: Clone>(
        &mut self,
        id: &'static str,
        key: &'static str,
        v: &Option<Spanned<T>>,
    ) -> Option<T> {
        let v = v.as_ref()?;
        if self.m.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return None;
        }
        let loc = self.at(v.span());
        self.origins.opts.push((id, loc, key));
        Some(v.get_ref().clone())
    }
}

impl Cli {
    /// Parses the command line and, with `--config`, fills every option the
    /// command line did not give from the file. Errors name the file, line
    /// and key.
    pub fn parse_with_file(m: &clap::ArgMatches) -> Result<(Cli, Origins), ConfigError> {
        use clap::FromArgMatches;
        let mut cli = Cli::from_arg_matches(m).map_err(|e| ConfigError::other(e.to_string()))?;
        let Some(path) = cli.config.clone() else {
            return Ok((cli, Origins::default()));
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::other(format!("cannot read config file {shown}: {e}")))?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            ConfigError::other(format!("{shown}:{line}: {}", e.message().trim()))
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
        take!("busy_poll_adaptive", "busy_poll_adaptive", file.busy_poll_adaptive => cli.busy_poll_adaptive);
        take!("workers", "workers", file.workers => cli.workers);
        if let Some(v) = cx.take("no_offload", "offload", &file.offload) {
            cli.no_offload |= !v;
        }
        if let Some(v) = cx.take("no_udp_coalesce", "udp_coalesce", &file.udp_coalesce) {
            cli.no_udp_coalesce |= !v;
        }
        if let Some(v) = cx.take("port_security", "port_security", &file.port_security) {
            cli.port_security |= v;
        }
        take!("metrics", "metrics", file.metrics => cli.metrics);
        take!("publish", "publish", file.publish => cli.publish);
        take!("log_level", "log_level", file.log_level => cli.log_level);
        if let Some(v) = cx.take("host_port", "host_port", &file.host_port) {
            cli.host_port = match v {
                FileHostPort::On(false) => None,
                FileHostPort::On(true) => Some(None),
                FileHostPort::Addr(a) => Some(Some(a)),
            };
        }
        if cli.ports.is_empty() {
            for p in &file.port {
                let loc = cx.at(p.span());
                let FilePort { netns, addr } = p.get_ref();
                cx.origins.ports.push((netns.clone(), loc));
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
            take!("nat_max_per_port", "nat.max_per_port", n.max_per_port => cli.nat_max_per_port);
            take!("nat_ports", "nat.ports", n.ports => cli.nat_ports);
            take!("nat_tcp_timeout", "nat.tcp_timeout", n.tcp_timeout => cli.nat_tcp_timeout);
            take!("nat_tcp_transitory", "nat.tcp_transitory", n.tcp_transitory => cli.nat_tcp_transitory);
            take!("nat_udp_timeout", "nat.udp_timeout", n.udp_timeout => cli.nat_udp_timeout);
            take!("nat_icmp_timeout", "nat.icmp_timeout", n.icmp_timeout => cli.nat_icmp_timeout);
        }
        if let Some(d) = &file.dns {
            if let Some(v) = cx.take("no_dns", "dns.enabled", &d.enabled) {
                cli.no_dns |= !v;
            }
            take!("dns_upstream", "dns.upstream", d.upstream => cli.dns_upstream);
            take!("dns_domain", "dns.domain", d.domain => cli.dns_domain);
        }
        if let Some(o) = &file.overlay {
            take!("vtep", "overlay.vtep", Some(o.vtep.clone()) => cli.vtep);
            take!("vxlan_peer", "overlay.peers", o.peers => cli.vxlan_peer);
            take!("vni", "overlay.vni", o.vni => cli.vni);
            take!("vxlan_port", "overlay.port", o.port => cli.vxlan_port);
            take!("etcd", "overlay.etcd", o.etcd => cli.etcd);
            take!("network", "overlay.network", o.network => cli.network);
        }
        Ok((cli, cx.origins))
    }
}
