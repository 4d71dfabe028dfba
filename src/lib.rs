//! vswitchd: a userspace virtual switch for network namespaces.
//!
//! A frame's path through the crate, top to bottom:
//! - [`port`]: where frames come from and go to (TAP devices, in-memory doubles);
//! - [`wire`]: views of the bytes;
//! - [`switch`]: the pure core, MAC table and forwarding decision;
//! - [`datapath`]: the one loop that does packet I/O and keeps the counters;
//! - [`control`]: namespaces, netlink, and the control socket;
//! - [`config`] and [`daemon`]: from the command line to a running instance.

pub mod busy_poll;
pub mod capture;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod directory;
pub mod dns;
pub mod event_loop;
pub mod gateway;
pub mod hash;
pub mod overlay;
pub mod port;
pub mod reason;
pub mod sandbox;
pub mod state;
pub mod switch;
pub mod sys;
pub mod wire;
pub mod workers;
