//! Command line (and `--config` file) -> validated [`Config`].
//!
//! The flow, in the order `main` runs it:
//! 1. [`cli`]: clap parses the command line into [`Cli`], one field per
//!    option, each with its help text and default;
//! 2. [`file`]: with `--config FILE`, [`Cli::parse_with_file`] fills every
//!    option the command line did not give from the TOML file and records
//!    where each value came from ([`Origins`]);
//! 3. [`validate`]: [`Cli::into_config`] checks every value and builds the
//!    [`Config`] the daemon runs from.
//!
//! Everything a start can be refused for is checked here, before anything is
//! created, so a refused start leaves nothing behind. Each error is one line
//! naming the culprit.

mod cli;
mod file;
#[cfg(test)]
mod tests;
mod validate;

pub use crate::wire::ipv4::Ipv4Net;
pub use cli::Cli;
pub use file::Origins;
pub use validate::{check_ifname, check_instance_name, check_port_addr, parse_port_spec};

use crate::gateway::WanAddr;
use crate::gateway::nat::NatConfig;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

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
