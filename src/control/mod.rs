//! The control plane: named network namespaces ([`netns`]), interface
//! configuration over rtnetlink ([`netlink`]), and the control socket
//! ([`api`] for the protocol and its handler, [`server`] for the socket).

pub mod api;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod server;
pub mod trace;
