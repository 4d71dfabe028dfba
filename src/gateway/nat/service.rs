//! Published ports and service addresses (`--publish`): front ends whose new
//! connections the NAT translates to one of their backends (DNAT), tracked in
//! the same table as masquerade flows.
//!
//! A front end is (protocol, address, port). Without an address it is the
//! uplink's (a NodePort, `docker -p`): clients from outside keep their own
//! source address, so the backend sees the real client. With an address it
//! is a service address (a ClusterIP) that the namespaces reach through the
//! gateway. A namespace reaching any front end (hairpin) also has its source
//! rewritten to the gateway's address, as kube-proxy masquerades hairpin
//! traffic, so the backend's answer comes back through the gateway.
//!
//! Backends are port names with a port number; their addresses follow the
//! ports ([`Services::set_port_addr`]). A new connection goes to the next
//! live backend in turn (**round-robin**, a cursor per front end); a backend
//! whose port is gone is skipped, and its flows end with it. The choice is
//! made in [`super::Nat::classify`] (so `trace` shows it) and the cursor
//! moves only when the flow is created.

use super::peek::proto_name;
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Front ends at most (each a table slot; flows refer to them by slot).
pub const FRONTS_MAX: usize = 1024;
/// Backends per front end at most.
pub const BACKENDS_MAX: usize = 64;

/// The front end of a publish spec: `[ADDR:]PORT[/tcp|/udp]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FrontKey {
    pub proto: u8,
    /// `None`: the uplink's address.
    pub addr: Option<Ipv4Addr>,
    pub port: u16,
}

impl fmt::Display for FrontKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{a}:{}/{}", self.port, proto_name(self.proto)),
            None => write!(f, "{}/{}", self.port, proto_name(self.proto)),
        }
    }
}

/// One backend of a spec: a port (namespace) name and a port number.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendSpec {
    pub name: String,
    pub port: u16,
}

/// A whole `--publish` spec.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishSpec {
    pub front: FrontKey,
    pub backends: Vec<BackendSpec>,
}

fn port_number(s: &str, what: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(0) => Err(format!("{what} 0: ports are 1-65535")),
        Ok(p) if p > 65_535 => Err(format!("{what} {p}: ports are 1-65535")),
        Ok(p) => Ok(p as u16),
        Err(_) => Err(format!("{what} {s:?} is not a number")),
    }
}

/// Parses the front end `[ADDR:]PORT[/tcp|/udp]` (protocol default tcp).
pub fn parse_front(s: &str) -> Result<FrontKey, String> {
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, "tcp")) => (r, PROTO_TCP),
        Some((r, "udp")) => (r, PROTO_UDP),
        Some((_, p)) => return Err(format!("protocol {p:?} in {s:?}: tcp or udp")),
        None => (s, PROTO_TCP),
    };
    let (addr, port) = match rest.rsplit_once(':') {
        Some((a, p)) => {
            let a: Ipv4Addr = a
                .parse()
                .map_err(|_| format!("front-end address {a:?} in {s:?} is not an IPv4 address"))?;
            (Some(a), p)
        }
        None => (None, rest),
    };
    if let Some(a) = addr
        && (a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
    {
        return Err(format!(
            "front-end address {a} in {s:?} cannot be a service address"
        ));
    }
    Ok(FrontKey {
        proto,
        addr,
        port: port_number(port, "front-end port")?,
    })
}

/// Parses `[ADDR:]PORT[/tcp|/udp]=NS:PORT[,NS:PORT...]`. Whether the names
/// are ports and the address is not the gateway's own is checked by whoever
/// knows them.
pub fn parse_spec(s: &str) -> Result<PublishSpec, String> {
    let (front, backs) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected [ADDR:]PORT[/tcp|/udp]=NS:PORT[,NS:PORT...]"))?;
    let front = parse_front(front)?;
    let mut backends = Vec::new();
    for b in backs.split(',') {
        let (name, port) = b
            .rsplit_once(':')
            .ok_or_else(|| format!("backend {b:?} in {s:?}: expected NS:PORT"))?;
        if name.is_empty() {
            return Err(format!("backend {b:?} in {s:?} has no port name"));
        }
        let port = port_number(port, &format!("backend {name} port"))?;
        let be = BackendSpec {
            name: name.to_string(),
            port,
        };
        if backends.contains(&be) {
            return Err(format!("backend {name}:{port} given twice in {s:?}"));
        }
        backends.push(be);
    }
    if backends.len() > BACKENDS_MAX {
        return Err(format!(
            "{s:?} has {} backends; at most {BACKENDS_MAX}",
            backends.len()
        ));
    }
    Ok(PublishSpec { front, backends })
}

/// Whether front end `f` may be published on a gateway at `gateway` on
/// `subnet`: a service address is neither the gateway's own nor inside the
/// subnet (the namespaces would ask ARP for it, not route it).
pub fn check_front(
    f: &FrontKey,
    subnet: crate::wire::ipv4::Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<(), String> {
    match f.addr {
        Some(a) if a == gateway => Err(format!("{f}: {a} is the gateway's own address")),
        Some(a) if subnet.contains(a) => Err(format!(
            "{f}: service address {a} is inside the subnet {subnet}: the namespaces would ask ARP for it instead of going through the gateway"
        )),
        _ => Ok(()),
    }
}

#[derive(Clone, Debug)]
pub(super) struct Backend {
    pub spec: BackendSpec,
    /// The port's address while the port is there.
    pub ip: Option<Ipv4Addr>,
    pub connections: u64,
    pub packets: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Front {
    pub key: FrontKey,
    pub backends: Vec<Backend>,
    /// The backend the next connection tries first.
    pub next: usize,
}

/// One backend, as `publish show` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendView {
    pub name: String,
    pub port: u16,
    /// `None`: the port is not there (out of the rotation).
    pub addr: Option<Ipv4Addr>,
    pub connections: u64,
    pub packets: u64,
}

/// One front end, as `publish show` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrontView {
    pub front: String,
    /// The address it answers on now (the uplink's, for a published port;
    /// `None` while the uplink has none).
    pub addr: Option<Ipv4Addr>,
    pub port: u16,
    pub proto: String,
    pub backends: Vec<BackendView>,
}

/// A chosen backend: front slot, backend index, and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub front: u16,
    pub backend: u16,
    pub to: SocketAddrV4,
}

/// The front ends, in stable slots.
#[derive(Default, Debug)]
pub struct Services {
    pub(super) fronts: Vec<Option<Front>>,
}

impl Services {
    pub fn is_empty(&self) -> bool {
        self.fronts.iter().all(Option::is_none)
    }

    /// The slot of front end `key`, if published.
    pub fn find(&self, key: &FrontKey) -> Option<u16> {
        self.fronts
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.key == *key))
            .map(|i| i as u16)
    }

    /// The front end a packet to `dst:port` (protocol `proto`) reaches;
    /// `uplink` is the uplink's address now.
    pub fn lookup(
        &self,
        proto: u8,
        dst: Ipv4Addr,
        port: u16,
        uplink: Option<Ipv4Addr>,
    ) -> Option<u16> {
        self.fronts
            .iter()
            .position(|f| {
                f.as_ref().is_some_and(|f| {
                    f.key.proto == proto
                        && f.key.port == port
                        && match f.key.addr {
                            Some(a) => a == dst,
                            None => Some(dst) == uplink,
                        }
                })
            })
            .map(|i| i as u16)
    }

    /// Whether `port` of `proto` is published on the uplink's address (so
    /// masquerade never allocates it).
    pub fn on_uplink(&self, proto: u8, port: u16, uplink: Option<Ipv4Addr>) -> bool {
        self.fronts.iter().flatten().any(|f| {
            f.key.proto == proto
                && f.key.port == port
                && (f.key.addr.is_none() || f.key.addr == uplink)
        })
    }

    /// The backend the next connection to front `slot` goes to: the first
    /// live one from the cursor on.
    pub fn pick(&self, slot: u16) -> Option<Pick> {
        let f = self.fronts.get(slot as usize)?.as_ref()?;
        let n = f.backends.len();
        (0..n).find_map(|k| {
            let i = (f.next + k) % n;
            let b = &f.backends[i];
            b.ip.map(|ip| Pick {
                front: slot,
                backend: i as u16,
                to: SocketAddrV4::new(ip, b.spec.port),
            })
        })
    }

    /// A connection went to `p`: counts it and moves the cursor past it.
    pub(super) fn chose(&mut self, p: Pick) {
        if let Some(Some(f)) = self.fronts.get_mut(p.front as usize) {
            // `pick` takes it modulo the backends.
            f.next = p.backend as usize + 1;
            if let Some(b) = f.backends.get_mut(p.backend as usize) {
                b.connections += 1;
            }
        }
    }

    pub(super) fn count_packet(&mut self, front: u16, backend: u16) {
        if let Some(Some(f)) = self.fronts.get_mut(front as usize)
            && let Some(b) = f.backends.get_mut(backend as usize)
        {
            b.packets += 1;
        }
    }

    /// Adds a front end; `addr_of` gives a backend port's address now.
    pub fn add(
        &mut self,
        spec: &PublishSpec,
        addr_of: impl Fn(&str) -> Option<Ipv4Addr>,
    ) -> Result<u16, String> {
        if self.find(&spec.front).is_some() {
            return Err(format!("{} is published already", spec.front));
        }
        let front = Front {
            key: spec.front,
            backends: spec
                .backends
                .iter()
                .map(|b| Backend {
                    spec: b.clone(),
                    ip: addr_of(&b.name),
                    connections: 0,
                    packets: 0,
                })
                .collect(),
            next: 0,
        };
        let slot = match self.fronts.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.fronts.len() < FRONTS_MAX => {
                self.fronts.push(None);
                self.fronts.len() - 1
            }
            None => return Err(format!("at most {FRONTS_MAX} front ends")),
        };
        self.fronts[slot] = Some(front);
        Ok(slot as u16)
    }

    /// Removes front end `key`; returns its slot.
    pub fn remove(&mut self, key: &FrontKey) -> Option<u16> {
        let slot = self.find(key)?;
        self.fronts[slot as usize] = None;
        Some(slot)
    }

    /// Port `name` now has address `ip` (`None`: it is gone): its backends
    /// join or leave the rotation.
    pub fn set_port_addr(&mut self, name: &str, ip: Option<Ipv4Addr>) {
        for f in self.fronts.iter_mut().flatten() {
            for b in f.backends.iter_mut().filter(|b| b.spec.name == name) {
                b.ip = ip;
            }
        }
    }

    /// The front end and backend names of a pick (for trace and views).
    pub fn names(&self, front: u16, backend: u16) -> (String, String) {
        match self.fronts.get(front as usize) {
            Some(Some(f)) => (
                f.key.to_string(),
                f.backends
                    .get(backend as usize)
                    .map_or_else(|| "?".into(), |b| b.spec.name.clone()),
            ),
            _ => ("?".into(), "?".into()),
        }
    }

    /// Every front end, for `publish show`.
    pub fn view(&self, uplink: Option<Ipv4Addr>) -> Vec<FrontView> {
        self.fronts
            .iter()
            .flatten()
            .map(|f| FrontView {
                front: f.key.to_string(),
                addr: f.key.addr.or(uplink),
                port: f.key.port,
                proto: proto_name(f.key.proto).into(),
                backends: f
                    .backends
                    .iter()
                    .map(|b| BackendView {
                        name: b.spec.name.clone(),
                        port: b.spec.port,
                        addr: b.ip,
                        connections: b.connections,
                        packets: b.packets,
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_name_the_culprit() {
        let s = parse_spec("8080=ns01:80,ns02:80").unwrap();
        assert_eq!(
            s.front,
            FrontKey {
                proto: PROTO_TCP,
                addr: None,
                port: 8080
            }
        );
        assert_eq!(s.backends.len(), 2);
        assert_eq!(s.backends[1].name, "ns02");
        let s = parse_spec("10.96.0.10:53/udp=dns:5353").unwrap();
        assert_eq!(s.front.addr, Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(s.front.proto, PROTO_UDP);
        assert_eq!(s.front.to_string(), "10.96.0.10:53/udp");
        for (bad, says) in [
            ("0=ns01:80", "front-end port 0"),
            ("70000=ns01:80", "front-end port 70000"),
            ("80=ns01:0", "backend ns01 port 0"),
            ("80=ns01:65536", "backend ns01 port 65536"),
            ("80/sctp=ns01:80", "\"sctp\""),
            ("80=ns01", "expected NS:PORT"),
            ("80", "expected [ADDR:]PORT"),
            ("1.2.3:80=ns01:80", "not an IPv4 address"),
            ("0.0.0.0:80=ns01:80", "cannot be a service address"),
            ("80=ns01:80,ns01:80", "given twice"),
            ("80=:80", "no port name"),
        ] {
            let e = parse_spec(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn edges_of_the_spec_and_the_front_end_checks() {
        let s = parse_spec("65535/udp=a:65535").unwrap();
        assert_eq!((s.front.port, s.backends[0].port), (65_535, 65_535));
        for bad in [
            "255.255.255.255:80",
            "224.0.0.1:80",
            "127.0.0.1:80",
            "0.0.0.0:80",
        ] {
            let e = parse_front(bad).unwrap_err();
            assert!(e.contains("cannot be a service address"), "{bad}: {e}");
        }
        let many = |n: usize| {
            let b: Vec<String> = (0..n).map(|i| format!("n{i}:80")).collect();
            format!("80={}", b.join(","))
        };
        assert_eq!(
            parse_spec(&many(BACKENDS_MAX)).unwrap().backends.len(),
            BACKENDS_MAX
        );
        let e = parse_spec(&many(BACKENDS_MAX + 1)).unwrap_err();
        assert!(e.contains("at most 64"), "{e}");
        let net: crate::wire::ipv4::Ipv4Net = "192.168.88.0/24".parse().unwrap();
        let gw = Ipv4Addr::new(192, 168, 88, 1);
        let check = |f: &str| check_front(&parse_front(f).unwrap(), net, gw);
        assert!(check("10.96.0.10:80").is_ok());
        assert!(check("80").is_ok());
        assert!(
            check("192.168.88.1:80")
                .unwrap_err()
                .contains("gateway's own")
        );
        assert!(
            check("192.168.88.50:80")
                .unwrap_err()
                .contains("inside the subnet")
        );
    }

    #[test]
    fn at_most_fronts_max_front_ends_and_a_freed_slot_is_reused() {
        let mut s = Services::default();
        for p in 1..=FRONTS_MAX as u16 {
            s.add(&parse_spec(&format!("{p}=a:80")).unwrap(), |_| None)
                .unwrap();
        }
        let e = s
            .add(&parse_spec("2000=a:80").unwrap(), |_| None)
            .unwrap_err();
        assert!(e.contains("at most 1024"), "{e}");
        assert_eq!(s.remove(&parse_front("7").unwrap()), Some(6));
        assert_eq!(s.add(&parse_spec("2000=a:80").unwrap(), |_| None), Ok(6));
    }

    fn two() -> Services {
        let mut s = Services::default();
        let spec = parse_spec("80=a:8080,b:8080").unwrap();
        s.add(&spec, |n| match n {
            "a" => Some(Ipv4Addr::new(10, 0, 0, 11)),
            "b" => Some(Ipv4Addr::new(10, 0, 0, 12)),
            _ => None,
        })
        .unwrap();
        s
    }

    #[test]
    fn round_robin_over_live_backends() {
        let mut s = two();
        let mut got = Vec::new();
        for _ in 0..4 {
            let p = s.pick(0).unwrap();
            got.push(p.to.ip().octets()[3]);
            s.chose(p);
        }
        assert_eq!(got, [11, 12, 11, 12]);
        // b's port goes: everything to a; it comes back: in turn again.
        s.set_port_addr("b", None);
        for _ in 0..3 {
            let p = s.pick(0).unwrap();
            assert_eq!(p.to.ip().octets()[3], 11);
            s.chose(p);
        }
        s.set_port_addr("b", Some(Ipv4Addr::new(10, 0, 0, 12)));
        let p = s.pick(0).unwrap();
        assert_eq!(p.to.ip().octets()[3], 12);
        s.set_port_addr("a", None);
        s.set_port_addr("b", None);
        assert_eq!(s.pick(0), None, "no live backend, no pick");
        let v = s.view(None);
        assert_eq!(v[0].backends[0].connections, 5);
        assert_eq!(v[0].backends[1].connections, 2);
    }

    #[test]
    fn lookup_follows_the_uplink_address_and_twice_is_refused() {
        let mut s = two();
        let up = Some(Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(
            s.lookup(PROTO_TCP, Ipv4Addr::new(10, 99, 0, 2), 80, up),
            Some(0)
        );
        assert_eq!(
            s.lookup(PROTO_UDP, Ipv4Addr::new(10, 99, 0, 2), 80, up),
            None
        );
        assert_eq!(
            s.lookup(PROTO_TCP, Ipv4Addr::new(10, 99, 0, 2), 80, None),
            None
        );
        assert!(s.on_uplink(PROTO_TCP, 80, up));
        assert!(!s.on_uplink(PROTO_UDP, 80, up));
        assert!(!s.on_uplink(PROTO_TCP, 81, up));
        assert!(!s.is_empty());
        // An explicit address that is the uplink's is on it too; another is
        // a service address, not on the uplink.
        let mut t = Services::default();
        t.add(&parse_spec("10.99.0.2:443=c:1").unwrap(), |_| None)
            .unwrap();
        assert!(t.on_uplink(PROTO_TCP, 443, up));
        assert!(!t.on_uplink(PROTO_TCP, 443, Some(Ipv4Addr::new(10, 99, 0, 9))));
        let e = s.add(&parse_spec("80=c:1").unwrap(), |_| None).unwrap_err();
        assert!(e.contains("80/tcp is published already"), "{e}");
        assert_eq!(s.remove(&parse_front("80").unwrap()), Some(0));
        assert!(s.is_empty());
    }
}
