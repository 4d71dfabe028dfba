//! Command line (and `--config` file) -> validated [`Config`].
//!
//! The flow, in the order `main` runs it:
//! 1. `cli.rs`: clap parses the command line into [`Cli`], one field per
//!    option, each with its help text and default;
//! 2. `file.rs`: with `--config FILE`, [`Cli::parse_with_file`] fills every
//!    option the command line did not give from the TOML file and records
//!    where each value came from ([`Origins`]);
//! 3. `validate.rs`: [`Cli::into_config`] checks every value and builds the
//!    [`Config`] the daemon runs from; the checks of names and words that
//!    the run-time paths share (`port add`, `log-level`) are in `names.rs`.
//!
//! Everything a start can be refused for is checked here, before anything is
//! created, so a refused start leaves nothing behind. Each refusal is a
//! [`ConfigError`]: one line naming the culprit, plus the [`Key`] of the
//! setting it is about, by which [`Origins::locate`] finds the file and line
//! that gave a bad value.

mod cli;
mod file;
mod names;
mod overlay;
mod publish;
#[cfg(test)]
mod tests;
mod validate;

pub use crate::wire::ipv4::Ipv4Net;
pub use cli::Cli;
pub use file::Origins;
pub use names::{check_ifname, check_instance_name, check_log_level};
pub use validate::{check_port_addr, parse_port_spec};

use crate::gateway::WanAddr;
use crate::gateway::nat::NatConfig;
use crate::port::vxlan::VxlanConfig;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// The setting a [`ConfigError`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// A command-line option by its clap id (`"subnet"`, `"uplink_addr"`);
    /// the message starts with its flag (`--subnet`, `--uplink-addr`).
    Opt(&'static str),
    /// The port of this namespace (`--ports` item or `[[port]]` entry).
    Port(String),
}

impl Key {
    /// The command-line flag of an option key: `uplink_addr` -> `--uplink-addr`.
    pub fn flag(id: &str) -> String {
        format!("--{}", id.replace('_', "-"))
    }
}

/// Why a configuration is refused.
///
/// `Display` is the one-line message as the command line reads it, e.g.
/// `--mtu 10 must be 68..65521`. With a `--config` file, [`Origins::locate`]
/// turns it into `FILE:LINE: mtu 10 must be 68..65521` by looking `key` up
/// among the values the file gave.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ConfigError {
    /// The setting at fault; `None` when no single one is (no ports at all,
    /// an unreadable file, a TOML syntax error that names its own line).
    pub key: Option<Key>,
    /// The message as the command line reads it.
    pub msg: String,
}

impl ConfigError {
    /// An error about option `id`; `msg` starts with its flag.
    pub fn opt(id: &'static str, msg: impl Into<String>) -> Self {
        let msg = msg.into();
        debug_assert!(
            msg.starts_with(&Key::flag(id)),
            "'{msg}' does not start with the flag of {id}"
        );
        Self {
            key: Some(Key::Opt(id)),
            msg,
        }
    }
    /// An error about the port of namespace `ns`.
    pub fn port(ns: &str, msg: impl Into<String>) -> Self {
        Self {
            key: Some(Key::Port(ns.to_string())),
            msg: msg.into(),
        }
    }
    /// An error about no single setting.
    pub fn other(msg: impl Into<String>) -> Self {
        Self {
            key: None,
            msg: msg.into(),
        }
    }
}

/// For the run-time `port add` path, whose errors are plain strings: the
/// message, as the command line reads it.
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.msg
    }
}

/// The uplink part of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkSpec {
    pub ifname: String,
    pub addr: WanAddr,
    pub gw: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
}

/// One port of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub netns: String,
    pub addr: Ipv4Addr,
    /// Whether the address was given (`NS=ADDR`); a default one is only a
    /// wish in directory mode, where the directory hands out free ones.
    pub explicit: bool,
}

/// The overlay's directory (`--etcd`, `--network`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryOpts {
    pub endpoints: Vec<String>,
    pub network: String,
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
    /// Whether `--mtu` was given (with the overlay, the default follows the
    /// underlay).
    pub mtu_given: bool,
    pub keep_netns: bool,
    /// TAPs with virtio-net header, checksum and TCP segmentation offload.
    pub offload: bool,
    /// UDP runs written to TAPs and the uplink as one super-frame
    /// (`--no-udp-coalesce`).
    pub udp_coalesce: bool,
    /// `--port-security` on every port given at start.
    pub port_security: bool,
    /// Busy-poll window after traffic, microseconds.
    pub busy_poll_us: u64,
    /// Longest adaptive busy-poll window, microseconds (0: off).
    pub busy_poll_adaptive_us: u64,
    /// Datapath threads; TAPs get this many queues (`--workers`).
    pub workers: usize,
    /// Prometheus endpoint.
    pub metrics: Option<std::net::SocketAddr>,
    pub ports: Vec<PortSpec>,
    pub uplink: Option<UplinkSpec>,
    /// `None` with `--no-nat`.
    pub nat: Option<NatConfig>,
    /// `--publish`: front ends and their backends (checked: ports that
    /// exist, front ends once, not the gateway's address).
    pub publish: Vec<crate::gateway::nat::PublishSpec>,
    /// The VXLAN overlay (`--vtep`, `--vxlan-peer`, `--vni`, `--vxlan-port`).
    pub overlay: Option<VxlanConfig>,
    /// Directory mode of the overlay.
    pub directory: Option<DirectoryOpts>,
    /// The DNS server (`--dns-domain`, `--dns-upstream`); `None` with
    /// `--no-dns`.
    pub dns: Option<crate::dns::DnsConfig>,
    /// Capabilities, no_new_privs and seccomp after start-up (see
    /// [`crate::sandbox`]); false with `--no-sandbox`.
    pub sandbox: bool,
    /// `--host-port`: the host's own address on the segment, through a TAP
    /// named after the instance in vswitchd's namespace.
    pub host_port: Option<Ipv4Addr>,
}
