//! The control plane: named network namespaces ([`netns`]), interface
//! configuration over rtnetlink ([`netlink`]), and the control socket
//! ([`api`] for the protocol and its handler, with the reports it answers
//! with in `reports.rs`, [`server`] for the socket).

pub mod api;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod proto;
mod reports;
pub mod server;
pub mod trace;
pub mod views;

use std::net::Ipv4Addr;

/// Static facts about the running instance, for `vswitchctl status`.
#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    pub started: std::time::SystemTime,
    /// The metrics endpoint's bound address.
    pub metrics: Option<std::net::SocketAddr>,
    /// Changes the log filter at run time (`vswitchctl log-level`).
    pub log: Option<LogControl>,
}

/// A function that sets the log filter, or says why it cannot.
pub type SetLogLevel = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// Sets the running daemon's log filter (a checked `--log-level` value).
#[derive(Clone)]
pub struct LogControl(pub std::sync::Arc<SetLogLevel>);

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogControl")
    }
}
