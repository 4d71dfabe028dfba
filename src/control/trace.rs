//! `vswitchctl trace`: what the switch would do with a frame, step by step,
//! as `ovs-appctl ofproto/trace` does for Open vSwitch.
//!
//! The frame runs through the datapath's own decision code: [`decide`] on a
//! copy of the MAC table (so nothing is learned), and the gateway's
//! [`crate::gateway::Gateway::trace_lan`], which takes the same routing,
//! TTL/MTU, NAT and neighbour paths as forwarding through `&self` methods (so
//! no flow is created and nothing is sent).
//!
//! Frames from the uplink (`--uplink`) go through the gateway's
//! [`crate::gateway::Gateway::trace_wan`] the same way.
//!
//! A frame is described in words, e.g.
//! `eth dst=02:00:00:00:00:02 ip dst=10.99.0.1,ttl=1 udp dport=53`, or given
//! as `hex 0200...`. Omitted fields take the ingress port's MAC and address,
//! the destination's MAC when the destination is another port or the
//! gateway, TTL 64, and ports 12345 -> 53.

use crate::datapath::{GW_PORT, PortInfo, Switch};
use crate::port::Port;
use crate::switch::{Decision, FloodReason, Learned, Millis, PortId, decide};
use crate::wire::MacAddr;
use crate::wire::ipv4::{self, Ipv4Hdr, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use std::collections::HashMap;
use std::net::Ipv4Addr;

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
        let hex: String = words[1..].concat();
        if !hex.len().is_multiple_of(2) {
            return Err("hex: an odd number of digits".into());
        }
        return (0..hex.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&hex[i..i + 2], 16)
                    .map_err(|_| format!("hex: '{}' is not a byte", &hex[i..i + 2]))
            })
            .collect();
    }
    // Sections: keyword followed by an optional key=value,... token.
    let mut sections: HashMap<&str, HashMap<String, String>> = HashMap::new();
    let mut l4 = None;
    let mut i = 0;
    while i < words.len() {
        let kw = words[i];
        if !matches!(kw, "eth" | "ip" | "udp" | "tcp" | "icmp") {
            return Err(format!(
                "'{kw}': expected eth, ip, udp, tcp, icmp (each with key=value,...) or hex BYTES"
            ));
        }
        if matches!(kw, "udp" | "tcp" | "icmp") {
            if l4.is_some() {
                return Err("only one of udp, tcp, icmp".into());
            }
            l4 = Some(kw);
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
        sections.insert(kw, kv);
        i += 1;
    }
    let get = |sec: &str, key: &str| sections.get(sec).and_then(|m| m.get(key)).cloned();
    let num = |sec: &str, key: &str, default: u64, max: u64| -> Result<u64, String> {
        match get(sec, key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{sec} {key}={v}: not a number up to {max}")),
        }
    };
    let mac = |sec: &str, key: &str| -> Result<Option<MacAddr>, String> {
        get(sec, key)
            .map(|v| {
                v.parse::<MacAddr>()
                    .map_err(|e| format!("{sec} {key}: {e}"))
            })
            .transpose()
    };
    let addr = |key: &str| -> Result<Option<Ipv4Addr>, String> {
        get("ip", key)
            .map(|v| {
                v.parse::<Ipv4Addr>()
                    .map_err(|_| format!("ip {key}={v}: not an IPv4 address"))
            })
            .transpose()
    };
    let has_ip = sections.contains_key("ip") || l4.is_some();
    let src_mac = mac("eth", "src")?.unwrap_or(ingress.mac);
    let mut frame = Vec::with_capacity(128);
    if !has_ip {
        let dst = mac("eth", "dst")?.unwrap_or(MacAddr::BROADCAST);
        let ty = match get("eth", "type") {
            None => 0x88b5,
            Some(t) => u16::from_str_radix(t.trim_start_matches("0x"), 16)
                .map_err(|_| format!("eth type={t}: not a hex ethertype"))?,
        };
        frame.extend_from_slice(&dst.to_bytes());
        frame.extend_from_slice(&src_mac.to_bytes());
        frame.extend_from_slice(&ty.to_be_bytes());
        frame.resize(60, 0);
        return Ok(frame);
    }
    let src = addr("src")?.unwrap_or(ingress.addr);
    let dst = addr("dst")?.ok_or("ip dst=ADDRESS is needed")?;
    let dst_mac = match mac("eth", "dst")?.or(to_mac) {
        Some(m) => m,
        None => {
            let net = Ipv4Addr::from(u32::from(ingress.addr) & prefix_mask(ingress.prefix_len));
            let on_link = u32::from(dst) & prefix_mask(ingress.prefix_len) == u32::from(net);
            if !on_link || dst == sw.gateway().lan_ip() {
                sw.gateway().mac()
            } else {
                sw.ports()
                    .find(|(_, s)| s.info.addr == dst)
                    .map(|(_, s)| s.info.mac)
                    .ok_or_else(|| format!("no port has {dst}: give its MAC with eth dst=MAC"))?
            }
        }
    };
    let proto = match l4 {
        Some("tcp") => PROTO_TCP,
        Some("icmp") => PROTO_ICMP,
        _ => PROTO_UDP,
    };
    let sec = l4.unwrap_or("udp");
    let payload = num(sec, "len", 18, 9000)? as usize;
    let mut l4b = Vec::new();
    match proto {
        PROTO_TCP => {
            l4b.resize(20, 0);
            l4b[0..2].copy_from_slice(&(num(sec, "sport", 12345, 65535)? as u16).to_be_bytes());
            l4b[2..4].copy_from_slice(&(num(sec, "dport", 80, 65535)? as u16).to_be_bytes());
            l4b[12] = 5 << 4;
            let flags = get(sec, "flags").unwrap_or_else(|| "S".into());
            for c in flags.chars() {
                l4b[13] |= match c.to_ascii_uppercase() {
                    'F' => 0x01,
                    'S' => 0x02,
                    'R' => 0x04,
                    'P' => 0x08,
                    'A' => 0x10,
                    _ => return Err(format!("tcp flags={flags}: use letters of FSRPA")),
                };
            }
        }
        PROTO_ICMP => {
            l4b.resize(8, 0);
            l4b[0] = num(sec, "type", 8, 255)? as u8;
            l4b[4..6].copy_from_slice(&(num(sec, "id", 4242, 65535)? as u16).to_be_bytes());
            l4b[6..8].copy_from_slice(&(num(sec, "seq", 1, 65535)? as u16).to_be_bytes());
        }
        _ => {
            l4b.resize(8, 0);
            l4b[0..2].copy_from_slice(&(num(sec, "sport", 12345, 65535)? as u16).to_be_bytes());
            l4b[2..4].copy_from_slice(&(num(sec, "dport", 53, 65535)? as u16).to_be_bytes());
            l4b[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        }
    }
    l4b.resize(l4b.len() + payload, 0x5a);
    let total = 20 + l4b.len();
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    if num("ip", "df", 0, 1)? == 1 {
        ip[6] = 0x40;
    }
    ip[8] = num("ip", "ttl", 64, 255)? as u8;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    ip.extend_from_slice(&l4b);
    ipv4::fill_ip_checksum(&mut ip, 20);
    let h = Ipv4Hdr::parse(&ip).expect("built header");
    if let Some(off) = ipv4::l4_checksum_offset(proto) {
        let c = ipv4::l4_checksum(&ip, &h);
        ip[20 + off..22 + off].copy_from_slice(&c.to_be_bytes());
    }
    frame.extend_from_slice(&dst_mac.to_bytes());
    frame.extend_from_slice(&src_mac.to_bytes());
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&ip);
    Ok(frame)
}

fn prefix_mask(l: u8) -> u32 {
    if l == 0 {
        0
    } else {
        u32::MAX << (32 - l as u32)
    }
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
    let l3 = match Ipv4Hdr::parse(&frame[14..]).filter(|_| ty == 0x0800) {
        Some(h) => format!(
            "IPv4 {} > {} proto {} ttl {}",
            Ipv4Addr::from(h.src),
            Ipv4Addr::from(h.dst),
            h.proto,
            h.ttl
        ),
        None => format!("ethertype {ty:#06x}"),
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
    let v = decide(&mut fdb, frame, in_port, Some(mtu), now);
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
            "MAC table: source {src} already on port {}: refreshed",
            name(in_port)
        )),
        Some(Learned::Moved { from }) => t.push(format!(
            "MAC table: source {src} is learned on port {}: would move to port {} (counted as a move)",
            name(from),
            name(in_port)
        )),
        Some(Learned::Static) => t.push(format!(
            "MAC table: source {src} is a static entry: left as it is"
        )),
        Some(Learned::Refused) => {
            t.push("MAC table: full of static entries: source not learned".into())
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
        Decision::Drop(r) => t.push(format!("decision: dropped ({})", r.name())),
        Decision::Unicast(GW_PORT) => {
            t.push(format!(
                "decision: destination {dst} is the gateway's MAC (static entry): to the gateway port"
            ));
            t.extend(sw.gateway().trace_lan(frame, now, egress_of));
        }
        Decision::Unicast(p) => {
            t.push(format!(
                "decision: destination {dst} learned on port {}: unicast",
                name(p)
            ));
            t.push(format!("egress: port {}", name(p)));
        }
        Decision::Flood(why) => {
            let why = match why {
                FloodReason::Broadcast => "broadcast",
                FloodReason::Multicast => "multicast",
                FloodReason::UnknownUnicast => "unknown unicast (destination not learned)",
            };
            t.push(format!("decision: flood, {why}"));
            let mut to = others;
            if in_port != GW_PORT {
                to.push("gateway (its stack answers ARP/ping for its own addresses)".into());
            }
            t.push(format!("egress: {}", to.join(", ")));
        }
    }
    t
}
