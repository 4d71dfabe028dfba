//! `--publish`: the specs parsed and checked against the ports and the
//! gateway before anything is created (the parsing and the front-end check
//! are the NAT's own, [`crate::gateway::nat::service`], shared with
//! `vswitchctl publish add`).

use super::{ConfigError, PortSpec};
use crate::gateway::nat::PublishSpec;
use crate::gateway::nat::service::{check_front, parse_spec};
use crate::wire::ipv4::Ipv4Net;
use std::net::Ipv4Addr;

/// Every `--publish` spec, checked: backends are ports given at start,
/// each front end once, none on the gateway's address or in the subnet,
/// and the NAT on.
pub(super) fn specs(
    raw: &[String],
    ports: &[PortSpec],
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    nat: bool,
) -> Result<Vec<PublishSpec>, ConfigError> {
    let err = |msg: String| ConfigError::opt("publish", format!("--publish {msg}"));
    if !raw.is_empty() && !nat {
        return Err(err("needs the NAT, which --no-nat turns off".to_string()));
    }
    let mut out: Vec<PublishSpec> = Vec::with_capacity(raw.len());
    for r in raw {
        let s = parse_spec(r).map_err(&err)?;
        check_front(&s.front, subnet, gateway).map_err(&err)?;
        if out.iter().any(|o| o.front == s.front) {
            return Err(err(format!("{r:?}: front end {} is given twice", s.front)));
        }
        if let Some(b) = s
            .backends
            .iter()
            .find(|b| !ports.iter().any(|p| p.netns == b.name))
        {
            return Err(err(format!(
                "{r:?}: backend {}:{} names no port (the ports are {})",
                b.name,
                b.port,
                ports
                    .iter()
                    .map(|p| p.netns.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        out.push(s);
    }
    Ok(out)
}
