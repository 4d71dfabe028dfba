//! The gateway port: the switch's own IPv4 host and router.

pub mod nat;
pub mod neigh;
