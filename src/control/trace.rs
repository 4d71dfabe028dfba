//! `vswitchctl trace`: what the switch would do with a frame, step by step,
//! as `ovs-appctl ofproto/trace` does for Open vSwitch.
//!
//! The frame runs through the datapath's own decision code: [`decide_guarded`] on a
//! copy of the MAC table (so nothing is learned), and the gateway's
//! [`crate::gateway::Gateway::trace_lan`], which takes the same routing,
//! TTL/MTU, NAT and neighbour paths as forwarding through `&self` methods (so
//! no flow is created and nothing is sent).
//!
//! Frames from the uplink (`--uplink`) go through the gateway's
//! [`crate::gateway::Gateway::trace_wan`] the same way.
//!
//! A frame is described in words, e.g.
//! `eth dst=02:00:00:00:00:02 ip dst=10.99.0.1,ttl=1 udp dport=53` or
//! `arp op=request,tpa=192.168.88.1`, or given as `hex 0200...` (colons
//! allowed). Frames are built by [`crate::wire::build`]. Omitted fields take the ingress port's MAC and address,
//! the destination's MAC when the destination is another port or the
//! gateway, TTL 64, and ports 12345 -> 53.

use crate::datapath::{GW_PORT, PortInfo, Switch};
use crate::port::Port;
use crate::reason::Reason;
use crate::switch::{Decision, FloodReason, Learned, Millis, PortId, decide_guarded};
use crate::wire::ipv4::{self, Ipv4Hdr, Ipv4Net, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{MacAddr, build};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A frame description split into sections: keyword -> key=value pairs.
struct Desc {
    sections: HashMap<String, HashMap<String, String>>,
    /// The L3/L4 keyword given (`arp`, `udp`, `tcp`, `icmp`), if any.
    proto: Option<String>,
}

impl Desc {
    fn parse(words: &[&str]) -> Result<Desc, String> {
        let mut d = Desc {
            sections: HashMap::new(),
            proto: None,
        };
        let mut i = 0;
        while i < words.len() {
            let kw = words[i];
            if !matches!(kw, "eth" | "ip" | "arp" | "udp" | "tcp" | "icmp") {
                return Err(format!(
                    "'{kw}': expected eth, arp, ip, udp, tcp, icmp (each with key=value,...) or hex BYTES"
                ));
            }
            if matches!(kw, "arp" | "udp" | "tcp" | "icmp") {
                if d.proto.is_some() {
                    return Err("only one of arp, udp, tcp, icmp".into());
                }
                d.proto = Some(kw.to_string());
            }
            let mut kv = HashMap::new();
            if let Some(next) = words.get(i + 1).filter(|w| w.contains('=')) {
                for pair in next.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("{kw}: '{pair}' is not key=value"))?;
                    kv.insert(k.to_string(), v.to_string());
                }
                i += 1;
            }
            d.sections.insert(kw.to_string(), kv);
            i += 1;
        }
        if d.proto.as_deref() == Some("arp") && d.sections.contains_key("ip") {
            return Err("arp and ip do not go together (ARP has its own spa= and tpa=)".into());
        }
        Ok(d)
    }
    fn get(&self, sec: &str, key: &str) -> Option<&String> {
        self.sections.get(sec).and_then(|m| m.get(key))
    }
    fn num(&self, sec: &str, key: &str, default: u64, max: u64) -> Result<u64, String> {
        match self.get(sec, key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{sec} {key}={v}: not a number up to {max}")),
        }
    }
    fn mac(&self, sec: &str, key: &str) -> Result<Option<MacAddr>, String> {
        self.get(sec, key)
            .map(|v| {
                v.parse::<MacAddr>()
                    .map_err(|e| format!("{sec} {key}: {e}"))
            })
            .transpose()
    }
    fn addr(&self, sec: &str, key: &str) -> Result<Option<Ipv4Addr>, String> {
        self.get(sec, key)
            .map(|v| {
                v.parse::<Ipv4Addr>()
                    .map_err(|_| format!("{sec} {key}={v}: not an IPv4 address"))
            })
            .transpose()
    }
}

/// `hex 0200...` (spaces and colons allowed between bytes).
fn parse_hex(words: &[&str]) -> Result<Vec<u8>, String> {
    let hex: String = words.concat().replace(':', "");
    if !hex.len().is_multiple_of(2) {
        return Err("hex: an odd number of digits".into());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .map_err(|_| format!("hex: '{}' is not a byte", &hex[i..i + 2]))
        })
        .collect()
}

/// Builds the frame a description asks for (see the module docs).
/// `to_mac`, when given, is the default destination MAC (frames from the
/// uplink go to the gateway's uplink MAC).
pub fn build_frame<P: Port, U: Port>(
    desc: &str,
    ingress: &PortInfo,
    to_mac: Option<MacAddr>,
    sw: &Switch<P, U>,
) -> Result<Vec<u8>, String> {
    let words: Vec<&str> = desc.split_whitespace().collect();
    if words.first() == Some(&"hex") {
        return parse_hex(&words[1..]);
    }
    let d = Desc::parse(&words)?;
    let src_mac = d.mac("eth", "src")?.unwrap_or(ingress.mac);
    let proto = d.proto.as_deref();
    if proto == Some("arp") {
        return arp_frame(&d, ingress, src_mac, sw);
    }
    if !d.sections.contains_key("ip") && proto.is_none() {
        let dst = d.mac("eth", "dst")?.unwrap_or(MacAddr::BROADCAST);
        let ty = match d.get("eth", "type") {
            None => 0x88b5,
            Some(t) => u16::from_str_radix(t.trim_start_matches("0x"), 16)
                .map_err(|_| format!("eth type={t}: not a hex ethertype"))?,
        };
        let mut frame = vec![0u8; 60];
        build::ethernet(&mut frame, dst, src_mac, ty);
        return Ok(frame);
    }
    let src = d.addr("ip", "src")?.unwrap_or(ingress.addr);
    let dst = d.addr("ip", "dst")?.ok_or("ip dst=ADDRESS is needed")?;
    let dst_mac = match d.mac("eth", "dst")?.or(to_mac) {
        Some(m) => m,
        None => {
            let net = Ipv4Net::of(ingress.addr, ingress.prefix_len);
            if !net.contains(dst) {
                sw.gateway().mac()
            } else {
                owner_mac(sw, dst)
                    .ok_or_else(|| format!("no port has {dst}: give its MAC with eth dst=MAC"))?
            }
        }
    };
    let (proto, l4) = l4_bytes(&d)?;
    let ip = build::Ipv4 {
        src,
        dst,
        proto,
        ttl: d.num("ip", "ttl", 64, 255)? as u8,
        id: 0,
        dont_frag: d.num("ip", "df", 0, 1)? == 1,
    };
    Ok(build::ipv4_frame(dst_mac, src_mac, ip, &l4))
}

/// The MAC of the port or gateway that has `addr` on the LAN, if any.
fn owner_mac<P: Port, U: Port>(sw: &Switch<P, U>, addr: Ipv4Addr) -> Option<MacAddr> {
    if addr == sw.gateway().lan_ip() {
        return Some(sw.gateway().mac());
    }
    sw.ports()
        .find(|(_, s)| s.info.addr == addr)
        .map(|(_, s)| s.info.mac)
}

/// `arp op=request|reply,spa=..,tpa=..,tha=..`: from the ingress port by
/// default; a reply goes to the owner of `tpa` (a port or the gateway)
/// unless `tha=` says otherwise.
fn arp_frame<P: Port, U: Port>(
    d: &Desc,
    ingress: &PortInfo,
    src_mac: MacAddr,
    sw: &Switch<P, U>,
) -> Result<Vec<u8>, String> {
    let op = match d.get("arp", "op").map(String::as_str) {
        None | Some("request") | Some("1") => build::ARP_REQUEST,
        Some("reply") | Some("2") => build::ARP_REPLY,
        Some(o) => return Err(format!("arp op={o}: request or reply")),
    };
    let tpa = d.addr("arp", "tpa")?.ok_or("arp tpa=ADDRESS is needed")?;
    let tha = match d.mac("arp", "tha")? {
        Some(m) => m,
        None if op == build::ARP_REPLY => owner_mac(sw, tpa).unwrap_or(MacAddr::ZERO),
        None => MacAddr::ZERO,
    };
    let arp = build::Arp {
        op,
        sha: src_mac,
        spa: d.addr("arp", "spa")?.unwrap_or(ingress.addr),
        tha,
        tpa,
    };
    let dst = match d.mac("eth", "dst")? {
        Some(m) => m,
        None if op == build::ARP_REPLY && tha != MacAddr::ZERO => tha,
        None => MacAddr::BROADCAST,
    };
    Ok(arp.frame(dst).to_vec())
}

/// The L4 header and payload a description asks for (UDP by default).
fn l4_bytes(d: &Desc) -> Result<(u8, Vec<u8>), String> {
    let sec = d.proto.as_deref().unwrap_or("udp");
    let payload = d.num(sec, "len", 18, 9000)? as usize;
    let port = |key, default| -> Result<[u8; 2], String> {
        Ok((d.num(sec, key, default, 65535)? as u16).to_be_bytes())
    };
    let (proto, mut l4) = match sec {
        "tcp" => {
            let mut b = vec![0u8; 20];
            b[0..2].copy_from_slice(&port("sport", 12345)?);
            b[2..4].copy_from_slice(&port("dport", 80)?);
            b[12] = 5 << 4;
            let flags = d.get(sec, "flags").map_or("S", String::as_str);
            for c in flags.chars() {
                b[13] |= match c.to_ascii_uppercase() {
                    'F' => 0x01,
                    'S' => 0x02,
                    'R' => 0x04,
                    'P' => 0x08,
                    'A' => 0x10,
                    _ => return Err(format!("tcp flags={flags}: use letters of FSRPA")),
                };
            }
            (PROTO_TCP, b)
        }
        "icmp" => {
            let mut b = vec![0u8; 8];
            b[0] = d.num(sec, "type", 8, 255)? as u8;
            b[4..6].copy_from_slice(&port("id", 4242)?);
            b[6..8].copy_from_slice(&port("seq", 1)?);
            (PROTO_ICMP, b)
        }
        _ => {
            let mut b = vec![0u8; 8];
            b[0..2].copy_from_slice(&port("sport", 12345)?);
            b[2..4].copy_from_slice(&port("dport", 53)?);
            b[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
            (PROTO_UDP, b)
        }
    };
    l4.resize(l4.len() + payload, 0x5a);
    Ok((proto, l4))
}

fn summary(frame: &[u8]) -> String {
    if frame.len() < 14 {
        return format!("{} bytes (shorter than an Ethernet header)", frame.len());
    }
    let (dst, src) = (
        MacAddr::from_slice(&frame[0..6]),
        MacAddr::from_slice(&frame[6..12]),
    );
    let ty = ipv4::get16(frame, 12);
    let arp = build::Arp::parse(&frame[14..]).filter(|_| ty == build::ETHERTYPE_ARP);
    let l3 = match (Ipv4Hdr::parse(&frame[14..]).filter(|_| ty == 0x0800), arp) {
        (Some(h), _) => format!(
            "IPv4 {} > {} proto {} ttl {}",
            Ipv4Addr::from(h.src),
            Ipv4Addr::from(h.dst),
            h.proto,
            h.ttl
        ),
        (_, Some(a)) if a.op == build::ARP_REQUEST => {
            format!("ARP request who-has {} tell {} ({})", a.tpa, a.spa, a.sha)
        }
        (_, Some(a)) => format!("ARP reply {} is-at {} (to {})", a.spa, a.sha, a.tpa),
        _ => format!("ethertype {ty:#06x}"),
    };
    format!("{} bytes, {src} > {dst}, {l3}", frame.len())
}

/// Traces `frame` as if received on the uplink at `now`.
pub fn trace_uplink<P: Port, U: Port>(sw: &Switch<P, U>, frame: &[u8], now: Millis) -> Vec<String> {
    let name = |p: PortId| -> String {
        if p == GW_PORT {
            return "gateway".into();
        }
        sw.port(p)
            .map_or_else(|| format!("#{p}"), |s| s.info.name.clone())
    };
    let mut t = vec![format!("ingress: uplink: {}", summary(frame))];
    let egress_of = |m: MacAddr| sw.fdb().lookup(m, now).map(|p| format!("port {}", name(p)));
    t.extend(sw.gateway().trace_wan(frame, now, egress_of));
    t
}

/// Traces `frame` as if received on port `in_port` at `now`.
pub fn trace<P: Port, U: Port>(
    sw: &Switch<P, U>,
    in_port: PortId,
    frame: &[u8],
    mtu: usize,
    now: Millis,
) -> Vec<String> {
    let name = |p: PortId| -> String {
        if p == GW_PORT {
            return "gateway".into();
        }
        sw.port(p)
            .map_or_else(|| format!("#{p}"), |s| s.info.name.clone())
    };
    let mut t = vec![format!(
        "ingress: port {}: {}",
        name(in_port),
        summary(frame)
    )];
    // The datapath's decision, on a copy of the table: nothing is learned.
    let mut fdb = sw.fdb().clone();
    let guard = sw.port(in_port).and_then(|s| s.info.guard());
    let v = decide_guarded(
        &mut fdb,
        sw.directory(),
        guard.as_ref(),
        frame,
        in_port,
        Some(mtu),
        now,
    );
    let src = if frame.len() >= 12 {
        MacAddr::from_slice(&frame[6..12]).to_string()
    } else {
        "-".into()
    };
    match v.learned {
        Some(Learned::New { evicted }) => t.push(format!(
            "MAC table: source {src} is new: would be learned on port {}{}",
            name(in_port),
            evicted.map_or(String::new(), |(m, p)| format!(
                " (table full: would evict {m} of port {})",
                name(p)
            ))
        )),
        Some(Learned::Refreshed) => t.push(format!(
            "MAC table: source {src} already on port {}: its age would be refreshed",
            name(in_port)
        )),
        Some(Learned::Moved { from }) => t.push(format!(
            "MAC table: source {src} is learned on port {}: would move to port {} (counted as a move)",
            name(from),
            name(in_port)
        )),
        Some(Learned::Static) => t.push(format!(
            "MAC table: source {src} is a static entry: would be left as it is"
        )),
        Some(Learned::Refused) => {
            t.push("MAC table: full of static entries: source would not be learned".into())
        }
        Some(Learned::NotLearnable) | None => {}
    }
    let dst = if frame.len() >= 6 {
        MacAddr::from_slice(&frame[0..6]).to_string()
    } else {
        "-".into()
    };
    let others: Vec<String> = sw
        .ports()
        .filter(|(id, _)| *id != in_port)
        .map(|(id, _)| name(id))
        .collect();
    let egress_of = |m: MacAddr| sw.fdb().lookup(m, now).map(|p| format!("port {}", name(p)));
    match v.decision {
        Decision::Drop(r) => t.push(format!("decision: would be dropped ({})", r.name())),
        Decision::Unicast(GW_PORT) => {
            t.push(format!(
                "decision: destination {dst} is the gateway's MAC (static entry): to the gateway port"
            ));
            t.extend(sw.gateway().trace_lan(frame, now, egress_of));
        }
        Decision::Unicast(p) if sw.directory().is_some_and(|d| d.overlay_port() == p) => {
            t.push(format!(
                "decision: destination {dst} is a remote port's (directory): to the overlay"
            ));
            t.push(format!("egress: port {}", name(p)));
        }
        Decision::Unicast(p) => {
            t.push(format!(
                "decision: destination {dst} learned on port {}: unicast",
                name(p)
            ));
            t.push(format!("egress: port {}", name(p)));
        }
        Decision::Answer(mac) => {
            t.push(format!(
                "decision: ARP request for a remote port's address: answered from the directory ({mac}), nothing crosses the overlay"
            ));
            t.push(format!("egress: the reply, port {}", name(in_port)));
        }
        Decision::Flood(why) | Decision::FloodLocal(why) => {
            let local = matches!(v.decision, Decision::FloodLocal(_));
            let why = match why {
                FloodReason::Broadcast => "broadcast",
                FloodReason::Multicast => "multicast",
                FloodReason::UnknownUnicast => "unknown unicast (destination not learned)",
            };
            t.push(format!(
                "decision: flood, {why}{}",
                if local {
                    " (on this host only: the directory knows the address, or it is the gateway's)"
                } else {
                    ""
                }
            ));
            let overlay = sw.directory().map(|d| name(d.overlay_port()));
            let mut to: Vec<String> = others
                .into_iter()
                .filter(|n| !local || Some(n) != overlay.as_ref())
                .collect();
            if in_port != GW_PORT {
                // The gateway port gets its copy too: what it does with it.
                t.extend(sw.gateway().trace_lan(frame, now, egress_of));
                to.push("gateway".into());
            }
            t.push(format!("egress: {}", to.join(", ")));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{Gateway, GatewayConfig};
    use crate::port::mem::MemPort;
    use crate::switch::Fdb;

    const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 1);

    fn info(name: &str, host: u8) -> PortInfo {
        PortInfo {
            name: name.into(),
            ifname: "eth0".into(),
            mac: MacAddr::stable_local(name),
            addr: Ipv4Addr::new(192, 168, 88, host),
            prefix_len: 24,
            security: false,
        }
    }

    /// A switch with ports ns01 (.11) and ns02 (.12) and the gateway .1.
    fn switch() -> (Switch<MemPort, MemPort>, PortId) {
        let gw = Gateway::new(
            GatewayConfig {
                lan_mac: MacAddr::stable_local("gw"),
                lan_ip: GW,
                subnet: "192.168.88.0/24".parse().unwrap(),
                lan_mtu: 1500,
                wan: None,
                nat: None,
            },
            0,
        );
        let mut sw = Switch::new(Fdb::new(300_000, 64), 1500, gw, None);
        let id = sw.add_port(MemPort::new(), info("ns01", 11));
        sw.add_port(MemPort::new(), info("ns02", 12));
        (sw, id)
    }

    fn build(sw: &Switch<MemPort, MemPort>, id: PortId, desc: &str) -> Result<Vec<u8>, String> {
        build_frame(desc, &sw.port(id).unwrap().info, None, sw)
    }

    #[test]
    fn hex_with_or_without_colons_is_the_same_frame() {
        let plain = parse_hex(&["ffffffffffff0200", "00000001", "0806"]).unwrap();
        let colons = parse_hex(&["ff:ff:ff:ff:ff:ff:02:00:00:00:00:01:08:06"]).unwrap();
        assert_eq!(plain, colons);
        assert_eq!(plain.len(), 14);
        assert!(parse_hex(&["ff:f"]).unwrap_err().contains("odd"));
        assert!(parse_hex(&["zz"]).unwrap_err().contains("'zz'"));
    }

    #[test]
    fn arp_request_and_reply_are_built_from_the_ports_facts() {
        let (sw, id) = switch();
        let ns01 = MacAddr::stable_local("ns01");
        let f = build(&sw, id, "arp op=request,tpa=192.168.88.1").unwrap();
        assert_eq!(ipv4::get16(&f, 12), build::ETHERTYPE_ARP);
        assert_eq!(MacAddr::from_slice(&f[0..6]), MacAddr::BROADCAST);
        let a = build::Arp::parse(&f[14..]).unwrap();
        assert_eq!(
            (a.op, a.sha, a.spa, a.tpa),
            (
                build::ARP_REQUEST,
                ns01,
                Ipv4Addr::new(192, 168, 88, 11),
                GW
            )
        );
        // A reply goes to the owner of tpa; spa= is taken as given.
        let f = build(&sw, id, "arp op=reply,spa=192.168.88.50,tpa=192.168.88.12").unwrap();
        let a = build::Arp::parse(&f[14..]).unwrap();
        let ns02 = MacAddr::stable_local("ns02");
        assert_eq!(MacAddr::from_slice(&f[0..6]), ns02);
        assert_eq!(
            (a.op, a.spa, a.tha, a.tpa),
            (
                build::ARP_REPLY,
                Ipv4Addr::new(192, 168, 88, 50),
                ns02,
                Ipv4Addr::new(192, 168, 88, 12)
            )
        );
        assert!(build(&sw, id, "arp op=ask,tpa=192.168.88.1").is_err());
        assert!(
            build(&sw, id, "arp op=request")
                .unwrap_err()
                .contains("tpa")
        );
    }

    #[test]
    fn arp_is_decoded_and_the_trace_claims_no_change() {
        let (sw, id) = switch();
        let f = build(&sw, id, "arp tpa=192.168.88.1").unwrap();
        let t = trace(&sw, id, &f, 1500, 0);
        assert!(
            t[0].contains("ARP request who-has 192.168.88.1 tell 192.168.88.11"),
            "{t:?}"
        );
        assert!(t.iter().any(|l| l.contains("would be learned")), "{t:?}");
        assert!(t.iter().any(|l| l.starts_with("gateway: ARP")), "{t:?}");
        // The same frame as colon-separated hex: decoded the same way.
        let hex: Vec<String> = f.iter().map(|b| format!("{b:02x}")).collect();
        let again = build(&sw, id, &format!("hex {}", hex.join(":"))).unwrap();
        assert_eq!(again, f);
        assert_eq!(trace(&sw, id, &again, 1500, 0), t);
        // A reply is decoded too.
        let f = build(&sw, id, "arp op=reply,tpa=192.168.88.12").unwrap();
        let t = trace(&sw, id, &f, 1500, 0);
        assert!(t[0].contains("ARP reply 192.168.88.11 is-at"), "{t:?}");
        // Nothing in any trace says a change happened.
        for desc in [
            "arp tpa=192.168.88.1",
            "ip dst=192.168.88.12",
            "ip dst=192.168.88.1 icmp",
            "ip dst=10.9.9.9",
        ] {
            let f = build(&sw, id, desc).unwrap();
            for line in trace(&sw, id, &f, 1500, 0) {
                for claim in [" is learned", " refreshed", " answers", "dropped ("] {
                    assert!(
                        !line.contains(claim) || line.contains("would"),
                        "{desc}: '{line}' claims a change"
                    );
                }
            }
        }
        assert_eq!(
            sw.fdb().len(),
            1,
            "nothing learned: only the gateway's entry"
        );
    }
}
