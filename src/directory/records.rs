//! The directory's records and keys, and the pure decisions on them: the
//! JSON values stored in etcd, the key names under `/vswitchd/NET/`, which
//! watch event becomes which [`Update`], whether an existing port key counts
//! as ours, and the lowest free address for `claim_free`. No I/O here; the
//! directory thread (`client.rs`) does the talking.

use super::{DirError, Snapshot, Update};
use crate::wire::MacAddr;
use crate::wire::ipv4::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The network's one record, `/vswitchd/NET/network`: written once by the
/// first instance, read by every later one. Not attached to a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// The overlay's subnet, `ADDRESS/PREFIX` (e.g. `192.168.88.0/24`).
    pub subnet: String,
    /// The gateway address every host answers for on its own switch.
    pub gateway: Ipv4Addr,
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The gateway's MAC, the same on every host.
    pub gateway_mac: String,
    /// The inner MTU (1450 on a 1500 underlay).
    pub mtu: usize,
}

/// A host of the network, `/vswitchd/NET/hosts/VTEP`, on the host's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's underlay (VTEP) address, also the key's last part.
    pub vtep: Ipv4Addr,
    /// The host's name (for people reading the directory).
    pub name: String,
}

/// A port and its address claim, `/vswitchd/NET/ports/IP`, on the lease of
/// the host that holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    /// The port's overlay address, also the key's last part.
    pub ip: Ipv4Addr,
    /// The port's MAC (`02:..`).
    pub mac: String,
    /// The VTEP of the host the port is on.
    pub host: Ipv4Addr,
    /// The port's name on that host (`ns01`).
    pub port: String,
}

/// What a key under the network's prefix names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Network,
    Host(Ipv4Addr),
    Port(Ipv4Addr),
}

/// The first host number `claim_free` hands out (.11 in a /24, as the
/// static mode numbers ports from .11).
pub const FIRST_FREE_HOST: u32 = 11;

/// Checks a network name before it becomes part of every key: 1 to 64
/// characters of `A-Z a-z 0-9 . _ -` (no `/`, so one network's prefix is
/// never inside another's).
pub fn check_network_name(name: &str) -> Result<(), DirError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DirError::BadNetworkName {
            name: name.to_string(),
        })
    }
}

/// `/vswitchd/NET/`: every key of the network starts with it.
pub fn prefix(net: &str) -> String {
    format!("/vswitchd/{net}/")
}

pub fn network_key(net: &str) -> String {
    format!("/vswitchd/{net}/network")
}

pub fn host_key(net: &str, vtep: Ipv4Addr) -> String {
    format!("/vswitchd/{net}/hosts/{vtep}")
}

pub fn port_key(net: &str, ip: Ipv4Addr) -> String {
    format!("/vswitchd/{net}/ports/{ip}")
}

/// What `key` names, if it is one of the network's keys (anything else
/// under the prefix is ignored by the caller).
pub fn parse_key(net: &str, key: &[u8]) -> Option<Key> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(prefix(net).as_str())?;
    if rest == "network" {
        return Some(Key::Network);
    }
    let (kind, addr) = rest.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    match kind {
        "hosts" => Some(Key::Host(addr)),
        "ports" => Some(Key::Port(addr)),
        _ => None,
    }
}

fn bad(key: &[u8], error: impl Into<String>) -> DirError {
    DirError::BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        error: error.into(),
    }
}

/// The network record stored at `key`.
pub fn decode_network(key: &[u8], value: &[u8]) -> Result<NetworkRecord, DirError> {
    let rec: NetworkRecord = serde_json::from_slice(value).map_err(|e| bad(key, e.to_string()))?;
    check_network(key, &rec)?;
    Ok(rec)
}

/// Checks a network record (for `key`): a subnet without host bits, the
/// gateway a host address in it, a MAC that parses, a 24-bit VNI, an MTU
/// of at least 68 (RFC 791's minimum).
pub fn check_network(key: &[u8], rec: &NetworkRecord) -> Result<(), DirError> {
    let subnet = rec
        .subnet
        .parse::<Ipv4Net>()
        .map_err(|e| bad(key, format!("subnet: {e}")))?;
    if !subnet.is_usable_host(rec.gateway) {
        return Err(bad(
            key,
            format!("gateway {} is not a host address of {subnet}", rec.gateway),
        ));
    }
    rec.gateway_mac
        .parse::<MacAddr>()
        .map_err(|e| bad(key, format!("gateway_mac: {e}")))?;
    if rec.vni >= 1 << 24 {
        return Err(bad(key, format!("vni {} does not fit 24 bits", rec.vni)));
    }
    if rec.mtu < 68 {
        return Err(bad(key, format!("mtu {} is below 68", rec.mtu)));
    }
    Ok(())
}

/// The host record at `key` (whose last part is `vtep`): valid JSON that
/// names the same VTEP as its key.
pub fn decode_host(key: &[u8], vtep: Ipv4Addr, value: &[u8]) -> Result<HostRecord, DirError> {
    let rec: HostRecord = serde_json::from_slice(value).map_err(|e| bad(key, e.to_string()))?;
    if rec.vtep != vtep {
        return Err(bad(key, format!("names VTEP {} under its key", rec.vtep)));
    }
    Ok(rec)
}

/// The port record at `key` (whose last part is `ip`): valid JSON, the same
/// address as its key, a MAC that parses.
pub fn decode_port(key: &[u8], ip: Ipv4Addr, value: &[u8]) -> Result<PortRecord, DirError> {
    let rec: PortRecord = serde_json::from_slice(value).map_err(|e| bad(key, e.to_string()))?;
    if rec.ip != ip {
        return Err(bad(key, format!("names address {} under its key", rec.ip)));
    }
    rec.mac
        .parse::<MacAddr>()
        .map_err(|e| bad(key, format!("mac: {e}")))?;
    Ok(rec)
}

/// The JSON stored for a record (these types always serialize).
pub fn encode<T: Serialize>(rec: &T) -> Vec<u8> {
    serde_json::to_vec(rec).unwrap_or_default()
}

/// Whether an existing port record is a re-registration of `claim` (the
/// same host and port name: ours, perhaps from our previous lease) rather
/// than another port's.
pub fn is_ours(existing: &PortRecord, claim: &PortRecord) -> bool {
    existing.host == claim.host && existing.port == claim.port
}

/// Adds the record at (`key`, `value`) to a snapshot, unless it is this
/// host's own (`own` VTEP) or not a host or port key. A record that does
/// not decode is returned as the error (the caller logs it and goes on).
pub fn add_to_snapshot(
    snap: &mut Snapshot,
    net: &str,
    own: Ipv4Addr,
    key: &[u8],
    value: &[u8],
) -> Result<(), DirError> {
    match parse_key(net, key) {
        Some(Key::Host(vtep)) if vtep != own => snap.hosts.push(decode_host(key, vtep, value)?),
        Some(Key::Port(ip)) => {
            let rec = decode_port(key, ip, value)?;
            if rec.host != own {
                snap.ports.push(rec);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The update a watch event on `key` means, if any. `put` tells a put from
/// a delete; `value` is the new value of a put; `prev` the value before a
/// delete (when etcd still had it). This host's own keys (`own` VTEP) give
/// none; so do the network key and keys that are not the network's.
pub fn event_update(
    net: &str,
    own: Ipv4Addr,
    put: bool,
    key: &[u8],
    value: &[u8],
    prev: Option<&[u8]>,
) -> Result<Option<Update>, DirError> {
    Ok(match (parse_key(net, key), put) {
        (Some(Key::Host(vtep)), _) if vtep == own => None,
        (Some(Key::Host(vtep)), true) => Some(Update::HostUp(decode_host(key, vtep, value)?)),
        (Some(Key::Host(vtep)), false) => Some(Update::HostDown(vtep)),
        (Some(Key::Port(ip)), true) => {
            let rec = decode_port(key, ip, value)?;
            (rec.host != own).then_some(Update::PortUp(rec))
        }
        (Some(Key::Port(ip)), false) => {
            // Ours if the value before the delete says so; without it (a
            // compacted or bad previous value) the delete is reported.
            let mine = prev
                .and_then(|p| decode_port(key, ip, p).ok())
                .is_some_and(|r| r.host == own);
            (!mine).then_some(Update::PortDown(ip))
        }
        _ => None,
    })
}

/// The lowest usable host address of `subnet` from host number
/// [`FIRST_FREE_HOST`] upward that is neither `taken` nor in `skip`.
pub fn first_free(
    subnet: Ipv4Net,
    taken: &BTreeSet<Ipv4Addr>,
    skip: &[Ipv4Addr],
) -> Option<Ipv4Addr> {
    (FIRST_FREE_HOST..)
        .map_while(|n| subnet.host(n))
        .find(|a| !taken.contains(a) && !skip.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn port(addr: &str, host: &str, name: &str) -> PortRecord {
        PortRecord {
            ip: ip(addr),
            mac: "02:00:00:00:00:11".into(),
            host: ip(host),
            port: name.into(),
        }
    }

    #[test]
    fn records_are_the_documented_json() {
        let net = NetworkRecord {
            subnet: "192.168.88.0/24".into(),
            gateway: ip("192.168.88.1"),
            vni: 1,
            gateway_mac: "02:00:00:00:00:01".into(),
            mtu: 1450,
        };
        assert_eq!(
            String::from_utf8(encode(&net)).unwrap(),
            r#"{"subnet":"192.168.88.0/24","gateway":"192.168.88.1","vni":1,"gateway_mac":"02:00:00:00:00:01","mtu":1450}"#
        );
        let host = HostRecord {
            vtep: ip("10.77.0.1"),
            name: "hosta".into(),
        };
        assert_eq!(
            String::from_utf8(encode(&host)).unwrap(),
            r#"{"vtep":"10.77.0.1","name":"hosta"}"#
        );
        let p = port("192.168.88.11", "10.77.0.1", "ns01");
        assert_eq!(
            String::from_utf8(encode(&p)).unwrap(),
            r#"{"ip":"192.168.88.11","mac":"02:00:00:00:00:11","host":"10.77.0.1","port":"ns01"}"#
        );
        let k = network_key("n");
        assert_eq!(decode_network(k.as_bytes(), &encode(&net)).unwrap(), net);
        let k = host_key("n", host.vtep);
        assert_eq!(
            decode_host(k.as_bytes(), host.vtep, &encode(&host)).unwrap(),
            host
        );
        let k = port_key("n", p.ip);
        assert_eq!(decode_port(k.as_bytes(), p.ip, &encode(&p)).unwrap(), p);
    }

    #[test]
    fn bad_records_name_their_key_and_fault() {
        let k = port_key("n", ip("192.168.88.12"));
        let p = port("192.168.88.11", "10.77.0.1", "ns01");
        let e = decode_port(k.as_bytes(), ip("192.168.88.12"), &encode(&p)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/vswitchd/n/ports/192.168.88.12"), "{msg}");
        assert!(msg.contains("192.168.88.11"), "{msg}");
        let e = decode_port(k.as_bytes(), ip("192.168.88.12"), b"{not json").unwrap_err();
        assert!(e.to_string().contains("/vswitchd/n/ports/"), "{e}");
        let mut bad_mac = port("192.168.88.12", "10.77.0.1", "ns01");
        bad_mac.mac = "zz".into();
        let e = decode_port(k.as_bytes(), bad_mac.ip, &encode(&bad_mac)).unwrap_err();
        assert!(e.to_string().contains("mac"), "{e}");
        let hk = host_key("n", ip("10.77.0.2"));
        let h = HostRecord {
            vtep: ip("10.77.0.1"),
            name: "a".into(),
        };
        assert!(decode_host(hk.as_bytes(), ip("10.77.0.2"), &encode(&h)).is_err());
        let nk = network_key("n");
        let e = decode_network(
            nk.as_bytes(),
            br#"{"subnet":"192.168.88.1/24","gateway":"192.168.88.1","vni":1,"gateway_mac":"02:00:00:00:00:01","mtu":1450}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("subnet"), "{e}");
    }

    #[test]
    fn keys_name_and_parse() {
        assert_eq!(prefix("blue"), "/vswitchd/blue/");
        assert_eq!(network_key("blue"), "/vswitchd/blue/network");
        assert_eq!(
            host_key("blue", ip("10.77.0.1")),
            "/vswitchd/blue/hosts/10.77.0.1"
        );
        assert_eq!(
            port_key("blue", ip("192.168.88.11")),
            "/vswitchd/blue/ports/192.168.88.11"
        );
        let p = |k: &str| parse_key("blue", k.as_bytes());
        assert_eq!(p("/vswitchd/blue/network"), Some(Key::Network));
        assert_eq!(
            p("/vswitchd/blue/hosts/10.77.0.1"),
            Some(Key::Host(ip("10.77.0.1")))
        );
        assert_eq!(
            p("/vswitchd/blue/ports/192.168.88.11"),
            Some(Key::Port(ip("192.168.88.11")))
        );
        assert_eq!(p("/vswitchd/blue/ports/x"), None);
        assert_eq!(p("/vswitchd/blue/other/10.0.0.1"), None);
        assert_eq!(p("/vswitchd/bluegreen/network"), None);
        assert_eq!(p("/vswitchd/blue/hosts/10.77.0.1/x"), None);
        assert!(check_network_name("blue-1.a_b").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            let e = check_network_name(bad).unwrap_err();
            assert!(e.to_string().contains("network name"), "{e}");
        }
    }

    #[test]
    fn events_become_updates_and_ours_are_left_out() {
        let own = ip("10.77.0.1");
        let other = ip("10.77.0.2");
        let h = HostRecord {
            vtep: other,
            name: "b".into(),
        };
        let hk = host_key("n", other);
        let ev = |put, k: &str, v: &[u8], prev: Option<&[u8]>| {
            event_update("n", own, put, k.as_bytes(), v, prev).unwrap()
        };
        assert_eq!(
            ev(true, &hk, &encode(&h), None),
            Some(Update::HostUp(h.clone()))
        );
        assert_eq!(ev(false, &hk, b"", None), Some(Update::HostDown(other)));
        assert_eq!(ev(false, &host_key("n", own), b"", None), None);
        let theirs = port("192.168.88.12", "10.77.0.2", "ns01");
        let mine = port("192.168.88.11", "10.77.0.1", "ns01");
        let tk = port_key("n", theirs.ip);
        let mk = port_key("n", mine.ip);
        assert_eq!(
            ev(true, &tk, &encode(&theirs), None),
            Some(Update::PortUp(theirs.clone()))
        );
        assert_eq!(ev(true, &mk, &encode(&mine), None), None);
        assert_eq!(
            ev(false, &tk, b"", Some(&encode(&theirs))),
            Some(Update::PortDown(theirs.ip))
        );
        assert_eq!(ev(false, &mk, b"", Some(&encode(&mine))), None);
        // Without the previous value a delete is reported.
        assert_eq!(ev(false, &mk, b"", None), Some(Update::PortDown(mine.ip)));
        assert_eq!(ev(true, &network_key("n"), b"{}", None), None);
        assert!(event_update("n", own, true, tk.as_bytes(), b"[]", None).is_err());
    }

    #[test]
    fn snapshot_leaves_out_our_own_and_the_network() {
        let own = ip("10.77.0.1");
        let mut s = Snapshot::default();
        let h = HostRecord {
            vtep: ip("10.77.0.2"),
            name: "b".into(),
        };
        let me = HostRecord {
            vtep: own,
            name: "a".into(),
        };
        let theirs = port("192.168.88.12", "10.77.0.2", "ns01");
        let mine = port("192.168.88.11", "10.77.0.1", "ns01");
        for (k, v) in [
            (host_key("n", h.vtep), encode(&h)),
            (host_key("n", own), encode(&me)),
            (port_key("n", theirs.ip), encode(&theirs)),
            (port_key("n", mine.ip), encode(&mine)),
            (network_key("n"), b"{}".to_vec()),
        ] {
            add_to_snapshot(&mut s, "n", own, k.as_bytes(), &v).unwrap();
        }
        assert_eq!(s.hosts, vec![h]);
        assert_eq!(s.ports, vec![theirs]);
    }

    #[test]
    fn is_ours_is_same_host_and_port() {
        let a = port("192.168.88.11", "10.77.0.1", "ns01");
        let mut b = a.clone();
        b.mac = "02:00:00:00:00:99".into();
        assert!(is_ours(&a, &b));
        b.port = "ns02".into();
        assert!(!is_ours(&a, &b));
        let c = port("192.168.88.11", "10.77.0.2", "ns01");
        assert!(!is_ours(&a, &c));
    }

    #[test]
    fn first_free_starts_at_the_eleventh_host_and_skips() {
        let net: Ipv4Net = "192.168.88.0/24".parse().unwrap();
        let none = BTreeSet::new();
        assert_eq!(first_free(net, &none, &[]), Some(ip("192.168.88.11")));
        let taken: BTreeSet<_> = [ip("192.168.88.11"), ip("192.168.88.13")].into();
        assert_eq!(first_free(net, &taken, &[]), Some(ip("192.168.88.12")));
        assert_eq!(
            first_free(net, &taken, &[ip("192.168.88.12")]),
            Some(ip("192.168.88.14"))
        );
        // Up to .254, never the broadcast address; then none.
        let all: BTreeSet<_> = (11..=253).map(|n| net.host(n).unwrap()).collect();
        assert_eq!(first_free(net, &all, &[]), Some(ip("192.168.88.254")));
        let all: BTreeSet<_> = (11..=254).map(|n| net.host(n).unwrap()).collect();
        assert_eq!(first_free(net, &all, &[]), None);
        // A subnet too small to have an 11th host.
        let tiny: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        assert_eq!(first_free(tiny, &none, &[]), None);
    }
}
