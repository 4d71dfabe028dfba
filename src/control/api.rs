//! The control protocol between `vswitchctl` and the daemon, and the handler
//! that turns a request into a reply against the running [`Switch`].
//!
//! Wire format: the client sends one JSON [`Request`] on one line; the daemon
//! answers with one JSON [`Reply`] and closes the connection. `vswitchctl
//! --json` prints the reply's `result` as it came.

use crate::capture::Point;
use crate::config::{check_port_addr, parse_port_spec};
use crate::control::server::Outcome;
use crate::datapath::{GW_PORT, Instance, PortCounters, PortInfo, Switch};
use crate::gateway::nat::{FlowView, NatStats};
use crate::gateway::neigh::NeighView;
use crate::gateway::{GwDrop, RouteView};
use crate::port::Port;
use crate::switch::{DropReason, FdbStats, Millis};
use crate::wire::MacAddr;
use crate::wire::ipv4::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Directory of control sockets: `/run/vswitchd/NAME.sock`.
pub const RUN_DIR: &str = "/run/vswitchd";

pub fn socket_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(RUN_DIR).join(format!("{name}.sock"))
}

/// A command for the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Ports,
    FdbShow,
    FdbFlush {
        port: Option<String>,
    },
    FdbAdd {
        mac: MacAddr,
        port: String,
    },
    FdbDel {
        mac: MacAddr,
    },
    NatShow,
    NatFlush,
    Routes,
    Neigh,
    /// `NS[=ADDR]`, as on the command line.
    PortAdd {
        spec: String,
    },
    PortDel {
        port: String,
    },
    /// What the switch would do with a frame received on `port` (or on the
    /// uplink, with `uplink`).
    Trace {
        #[serde(default)]
        port: String,
        #[serde(default)]
        uplink: bool,
        frame: String,
    },
    /// Stream pcap of the frames crossing these points (no ports and no
    /// flags: every port and the gateway), stopping after `count` frames.
    Capture {
        #[serde(default)]
        ports: Vec<String>,
        #[serde(default)]
        uplink: bool,
        #[serde(default)]
        gateway: bool,
        count: Option<u64>,
    },
}

/// What the control plane does to ports beyond the switch itself: their
/// namespaces and TAPs. The daemon implements it; the handler decides.
pub trait PortControl<P> {
    /// Creates (or opens) namespace `ns` and its configured TAP with `addr`.
    fn create(&mut self, ns: &str, addr: Ipv4Addr) -> Result<(P, PortInfo), String>;
    /// Lets go of namespace `ns`: deleted if vswitchd created it (unless
    /// `--keep-netns`), left alone otherwise.
    fn release(&mut self, ns: &str);
    /// Namespaces deleted underneath the switch (`ip netns del`) since the
    /// last call.
    fn vanished(&mut self) -> Vec<String>;
    fn subnet(&self) -> Ipv4Net;
    fn gateway(&self) -> Ipv4Addr;
}

/// The daemon's answer: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok<T: Serialize>(v: T) -> Reply {
        Reply {
            ok: true,
            result: Some(serde_json::to_value(v).expect("reply serializes")),
            error: None,
        }
    }
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            result: None,
            error: Some(msg.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    pub name: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub subnet: String,
    pub gateway: String,
    pub mtu: u32,
    pub ports: usize,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: Option<String>,
    /// Live capture sessions and the frames they dropped (slow readers).
    pub captures: usize,
    pub capture_dropped: u64,
    pub fdb: FdbSummary,
    pub gateway_port: GatewayReport,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayReport {
    pub mac: MacAddr,
    pub address: String,
    pub uplink: Option<UplinkReport>,
    pub nat: Option<NatSummary>,
    pub routed_out: u64,
    pub routed_in: u64,
    pub routed_lan: u64,
    pub to_stack: u64,
    pub icmp_errors_sent: u64,
    pub arp_requests_sent: u64,
    pub fragmented: u64,
    /// Gateway drops by reason (non-zero only).
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UplinkReport {
    pub ifname: String,
    pub mac: MacAddr,
    /// `null` while DHCP has not given one.
    pub address: Option<String>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatSummary {
    pub flows: usize,
    pub max: usize,
    #[serde(flatten)]
    pub stats: NatStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatShowReply {
    pub flows: Vec<FlowView>,
    pub summary: Option<NatSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeighRow {
    pub dev: String,
    #[serde(flatten)]
    pub entry: NeighView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbSummary {
    pub size: usize,
    pub max: usize,
    pub aging_secs: u64,
    pub learned: u64,
    pub expired: u64,
    pub evicted: u64,
    pub moved: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortReport {
    #[serde(flatten)]
    pub info: PortInfo,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Drops by reason (only reasons with a non-zero count).
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbRow {
    pub port: String,
    pub mac: MacAddr,
    /// Seconds since last seen; `null` for static entries.
    pub age: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbShowReply {
    pub entries: Vec<FdbRow>,
    #[serde(flatten)]
    pub summary: FdbSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceReply {
    /// The frame traced, as hex.
    pub frame: String,
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountReply {
    pub removed: usize,
}

fn drops_map(c: &PortCounters) -> BTreeMap<String, u64> {
    DropReason::ALL
        .iter()
        .filter(|r| c.drops[**r as usize] > 0)
        .map(|r| (r.name().to_string(), c.drops[*r as usize]))
        .collect()
}

fn nat_summary<P: Port, U: Port>(sw: &Switch<P, U>) -> Option<NatSummary> {
    sw.gateway().nat().map(|n| NatSummary {
        flows: n.len(),
        max: n.config().max_flows,
        stats: n.stats(),
    })
}

fn gateway_report<P: Port, U: Port>(sw: &Switch<P, U>) -> GatewayReport {
    let g = sw.gateway();
    let st = g.stats();
    let mut drops: BTreeMap<String, u64> = (0..GwDrop::COUNT)
        .filter(|&i| st.drops[i] > 0)
        .map(|i| (GwDrop::name_of(i).to_string(), st.drops[i]))
        .collect();
    for (k, v) in drops_map(sw.gateway_counters()) {
        *drops.entry(k).or_default() += v;
    }
    GatewayReport {
        mac: g.mac(),
        address: g.lan_ip().to_string(),
        uplink: sw.uplink().map(|u| UplinkReport {
            ifname: u.ifname.clone(),
            mac: g.wan_mac().unwrap_or_default(),
            address: g.wan_addr().map(|(a, l)| format!("{a}/{l}")),
            rx_packets: u.counters.rx_packets,
            rx_bytes: u.counters.rx_bytes,
            tx_packets: u.counters.tx_packets,
            tx_bytes: u.counters.tx_bytes,
            drops: drops_map(&u.counters),
        }),
        nat: nat_summary(sw),
        routed_out: st.routed_out,
        routed_in: st.routed_in,
        routed_lan: st.routed_lan,
        to_stack: st.to_stack,
        icmp_errors_sent: st.icmp_errors_sent,
        arp_requests_sent: st.arp_requests_sent,
        fragmented: st.fragmented,
        drops,
    }
}

fn summary<P: Port, U: Port>(sw: &Switch<P, U>) -> FdbSummary {
    let f = sw.fdb();
    let FdbStats {
        learned,
        expired,
        evicted,
        moved,
        refused,
    } = f.stats();
    FdbSummary {
        size: f.len(),
        max: f.max_entries(),
        aging_secs: f.aging_ms() / 1000,
        learned,
        expired,
        evicted,
        moved,
        refused,
    }
}

fn report(info: &PortInfo, c: &PortCounters) -> PortReport {
    PortReport {
        info: info.clone(),
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        drops: drops_map(c),
    }
}

/// Executes `req` against the switch at time `now`.
/// Adds a port at run time (`vswitchctl port add NS[=ADDR]`): same rules as
/// at start; without an address, the lowest free host from .11 up.
fn port_add<P: Port, U: Port>(
    spec: &str,
    sw: &mut Switch<P, U>,
    ports: &mut dyn PortControl<P>,
) -> Result<PortReport, String> {
    let subnet = ports.subnet();
    let gateway = ports.gateway();
    let (ns, addr) = parse_port_spec(spec, subnet)?;
    if sw.port_by_name(&ns).is_some() {
        return Err(format!("namespace {ns} is already a port"));
    }
    let taken: Vec<(String, Ipv4Addr)> = sw
        .ports()
        .map(|(_, s)| (s.info.name.clone(), s.info.addr))
        .collect();
    let addr = match addr {
        Some(a) => a,
        None => (11..)
            .map_while(|n| subnet.host(n))
            .find(|a| *a != gateway && taken.iter().all(|(_, t)| t != a))
            .ok_or_else(|| format!("no free address left in {subnet} for port {ns}"))?,
    };
    check_port_addr(&ns, addr, subnet, gateway, &taken)?;
    let (port, info) = ports.create(&ns, addr)?;
    let id = sw.add_port(port, info);
    let slot = sw.port(id).expect("just added");
    tracing::info!(port = %ns, "port added: {} {} {}", slot.info.ifname, slot.info.mac, addr);
    Ok(report(&slot.info, &slot.counters))
}

/// Removes a port (`vswitchctl port del NS`, or its namespace vanished):
/// its TAP, MAC entries and NAT flows go; its namespace is released.
pub fn port_del<P: Port, U: Port>(
    name: &str,
    sw: &mut Switch<P, U>,
    ports: &mut dyn PortControl<P>,
) -> Result<(), String> {
    let id = sw
        .port_by_name(name)
        .ok_or_else(|| format!("no port named {name}"))?;
    drop(sw.remove_port(id));
    ports.release(name);
    Ok(())
}

/// One request line in, one reply line out (the control socket's protocol);
/// a capture request turns connection `token` into a pcap stream instead.
pub fn handle_bytes<P: Port, U: Port>(
    req: &[u8],
    token: u64,
    sw: &mut Switch<P, U>,
    inst: &Instance,
    ports: &mut dyn PortControl<P>,
    now: Millis,
) -> Outcome {
    let reply = match serde_json::from_slice::<Request>(req) {
        Ok(Request::Capture {
            ports: names,
            uplink,
            gateway,
            count,
        }) => match start_capture(sw, token, &names, uplink, gateway, count) {
            Ok(()) => return Outcome::Stream,
            Err(e) => Reply::err(e),
        },
        Ok(req) => handle(req, sw, inst, ports, now),
        Err(e) => Reply::err(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&reply).expect("reply serializes");
    out.push(b'\n');
    Outcome::Reply(out)
}

fn start_capture<P: Port, U: Port>(
    sw: &mut Switch<P, U>,
    token: u64,
    names: &[String],
    uplink: bool,
    gateway: bool,
    count: Option<u64>,
) -> Result<(), String> {
    let mut points = Vec::new();
    for n in names {
        let id = sw
            .port_by_name(n)
            .ok_or_else(|| format!("no port named {n}"))?;
        points.push(Point::Port(id));
    }
    if gateway {
        points.push(Point::Port(GW_PORT));
    }
    if uplink {
        if sw.uplink().is_none() {
            return Err("there is no uplink to capture on (start vswitchd with --uplink)".into());
        }
        points.push(Point::Uplink);
    }
    if count == Some(0) {
        return Err("-c 0 would capture nothing".into());
    }
    tracing::info!(?points, ?count, "capture started");
    sw.captures_mut().start(token, points, count);
    Ok(())
}

pub fn handle<P: Port, U: Port>(
    req: Request,
    sw: &mut Switch<P, U>,
    inst: &Instance,
    ports: &mut dyn PortControl<P>,
    now: Millis,
) -> Reply {
    // Keep what is shown consistent with what forwarding sees.
    sw.fdb_mut().expire(now);
    let port_id = |sw: &Switch<P, U>, name: &str| {
        sw.port_by_name(name)
            .ok_or_else(|| Reply::err(format!("no port named {name}")))
    };
    match req {
        Request::Status => Reply::ok(StatusReply {
            name: inst.name.clone(),
            pid: std::process::id(),
            uptime_secs: inst.started.elapsed().map_or(0, |d| d.as_secs()),
            subnet: inst.subnet.clone(),
            gateway: inst.gateway.to_string(),
            mtu: inst.mtu,
            ports: sw.ports().count(),
            metrics: inst.metrics.map(|a| a.to_string()),
            captures: sw.captures().tokens().len(),
            capture_dropped: sw.captures().dropped(),
            fdb: summary(sw),
            gateway_port: gateway_report(sw),
        }),
        Request::Ports => Reply::ok(
            sw.ports()
                .map(|(_, s)| report(&s.info, &s.counters))
                .collect::<Vec<_>>(),
        ),
        Request::FdbShow => {
            let entries = sw
                .fdb()
                .entries(now)
                .into_iter()
                .map(|e| FdbRow {
                    port: if e.port == GW_PORT {
                        "gateway".to_string()
                    } else {
                        sw.port(e.port)
                            .map_or_else(|| format!("#{}", e.port), |s| s.info.name.clone())
                    },
                    mac: e.mac,
                    age: e.age_ms.map(|a| a / 1000),
                })
                .collect();
            Reply::ok(FdbShowReply {
                entries,
                summary: summary(sw),
            })
        }
        Request::FdbFlush { port } => {
            let id = match port.as_deref().map(|p| port_id(sw, p)).transpose() {
                Ok(id) => id,
                Err(r) => return r,
            };
            let removed = sw.fdb_mut().flush(id);
            Reply::ok(CountReply { removed })
        }
        Request::FdbAdd { mac, port } => {
            let id = match port_id(sw, &port) {
                Ok(id) => id,
                Err(r) => return r,
            };
            match sw.fdb_mut().add_static(mac, id) {
                Ok(()) => Reply::ok(CountReply { removed: 0 }),
                Err(e) => Reply::err(e.to_string()),
            }
        }
        Request::FdbDel { mac } if mac == sw.gateway().mac() => Reply::err(format!(
            "{mac} is the gateway's own MAC; it cannot be removed"
        )),
        Request::FdbDel { mac } => {
            if sw.fdb_mut().remove(mac) {
                Reply::ok(CountReply { removed: 1 })
            } else {
                Reply::err(format!("{mac} is not in the MAC table"))
            }
        }
        Request::NatShow => Reply::ok(NatShowReply {
            flows: sw.gateway().nat().map(|n| n.flows(now)).unwrap_or_default(),
            summary: nat_summary(sw),
        }),
        Request::NatFlush => match sw.gateway_mut().nat_mut() {
            Some(n) => Reply::ok(CountReply { removed: n.flush() }),
            None => Reply::err("NAT is off (no --uplink, or --no-nat)"),
        },
        Request::Routes => Reply::ok::<Vec<RouteView>>(sw.gateway().routes()),
        Request::PortAdd { spec } => match port_add(&spec, sw, ports) {
            Ok(r) => Reply::ok(r),
            Err(e) => Reply::err(e),
        },
        Request::Capture { .. } => Reply::err("capture is only available as a stream"),
        Request::Trace {
            port,
            uplink,
            frame,
        } => {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            if uplink {
                let Some(wmac) = sw.gateway().wan_mac() else {
                    return Reply::err("there is no uplink (start vswitchd with --uplink)");
                };
                let (addr, prefix_len) = sw
                    .gateway()
                    .wan_addr()
                    .unwrap_or((Ipv4Addr::UNSPECIFIED, 32));
                // A remote host on the uplink: the default source.
                let remote = PortInfo {
                    name: "uplink".into(),
                    ifname: String::new(),
                    mac: "02:00:00:00:00:99".parse().expect("literal MAC"),
                    addr: sw
                        .gateway()
                        .routes()
                        .iter()
                        .find_map(|r| r.via)
                        .unwrap_or(addr),
                    prefix_len,
                };
                return match crate::control::trace::build_frame(&frame, &remote, Some(wmac), sw) {
                    Ok(bytes) => Reply::ok(TraceReply {
                        frame: hex(&bytes),
                        steps: crate::control::trace::trace_uplink(sw, &bytes, now),
                    }),
                    Err(e) => Reply::err(format!("frame description: {e}")),
                };
            }
            let id = match port_id(sw, &port) {
                Ok(id) => id,
                Err(r) => return r,
            };
            let info = sw.port(id).expect("found above").info.clone();
            match crate::control::trace::build_frame(&frame, &info, None, sw) {
                Ok(bytes) => Reply::ok(TraceReply {
                    frame: hex(&bytes),
                    steps: crate::control::trace::trace(sw, id, &bytes, inst.mtu as usize, now),
                }),
                Err(e) => Reply::err(format!("frame description: {e}")),
            }
        }
        Request::PortDel { port } => match port_del(&port, sw, ports) {
            Ok(()) => {
                tracing::info!(port = %port, "port removed");
                Reply::ok(CountReply { removed: 1 })
            }
            Err(e) => Reply::err(e),
        },
        Request::Neigh => Reply::ok(
            sw.gateway()
                .neighbours(now)
                .into_iter()
                .map(|(dev, entry)| NeighRow { dev, entry })
                .collect::<Vec<_>>(),
        ),
    }
}
