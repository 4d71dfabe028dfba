//! The control handler: a request ([`super::proto`]) in, a reply out,
//! against the running [`Switch`], through its command methods only. One
//! small function per request; runtime port add/del through the
//! [`PortControl`] the daemon implements.

use super::Instance;
use super::proto::*;
use super::reports::{nat_summary, remote_macs, report, status, summary};
use super::server::Outcome;
use super::trace;
use super::views::{self, ViewKind, Views};
use crate::capture::{Format, Point};
use crate::config::{check_port_addr, parse_port_spec};
use crate::datapath::{GW_PORT, PortInfo, Switch};
use crate::gateway::RouteView;
use crate::gateway::nat::FrontView;
use crate::port::Port;
use crate::port::vxlan::DirectoryView;
use crate::switch::{Millis, PortId};
use crate::wire::MacAddr;
use crate::wire::ipv4::Ipv4Net;
use std::net::Ipv4Addr;

/// What the control plane does to ports beyond the switch itself: their
/// namespaces and TAPs. The daemon implements it; the handler decides.
pub trait PortControl<P> {
    /// Creates (or opens) namespace `ns` and its configured TAP with `addr`,
    /// port security as `security` says (`None`: the daemon's default).
    fn create(
        &mut self,
        ns: &str,
        addr: Ipv4Addr,
        security: Option<bool>,
    ) -> Result<(P, PortInfo), String>;
    /// Lets go of namespace `ns`: deleted if vswitchd created it (unless
    /// `--keep-netns`), left alone otherwise.
    fn release(&mut self, ns: &str);
    /// Namespaces deleted underneath the switch (`ip netns del`) since the
    /// last call.
    fn vanished(&mut self) -> Vec<String>;
    fn subnet(&self) -> Ipv4Net;
    fn gateway(&self) -> Ipv4Addr;
    /// Directory mode: claims an address for port `ns` in the directory
    /// (`addr`, or the lowest free one, not one of `local`), before the
    /// port is created; `Ok(None)` without a directory (the caller picks).
    fn claim(
        &mut self,
        _ns: &str,
        _addr: Option<Ipv4Addr>,
        _local: &[Ipv4Addr],
    ) -> Result<Option<Ipv4Addr>, String> {
        Ok(None)
    }
    /// Directory mode: etcd and the lease, for `vswitchctl overlay`.
    fn directory_status(&self) -> Option<crate::directory::DirStatus> {
        None
    }
    /// Directory mode: the fd that becomes readable when updates wait.
    fn directory_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
    /// Directory mode: the updates waiting (the fd is drained).
    fn directory_updates(&mut self) -> Vec<crate::directory::Update> {
        Vec::new()
    }
}

/// Executes `req` against the switch at time `now`.
/// Adds a port at run time (`vswitchctl port add NS[=ADDR]`): same rules as
/// at start; without an address, the lowest free host from .11 up.
fn port_add<P: Port, U: Port>(
    spec: &str,
    security: Option<bool>,
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
    if let Some(a) = addr {
        check_port_addr(&ns, a, subnet, gateway, &taken)?;
    }
    let local: Vec<Ipv4Addr> = taken.iter().map(|(_, a)| *a).collect();
    let claimed = ports.claim(&ns, addr, &local)?;
    let addr = match claimed.or(addr) {
        Some(a) => a,
        None => (11..)
            .map_while(|n| subnet.host(n))
            .find(|a| *a != gateway && taken.iter().all(|(_, t)| t != a))
            .ok_or_else(|| format!("no free address left in {subnet} for port {ns}"))?,
    };
    check_port_addr(&ns, addr, subnet, gateway, &taken)?;
    let (port, info) = ports.create(&ns, addr, security)?;
    let id = sw.add_port(port, info);
    let slot = sw.port(id).expect("just added");
    tracing::info!(port = %ns, "port added: {} {} {}", slot.info.ifname, slot.info.mac, addr);
    Ok(report(&slot.info, &slot.counters, sw.mtu() as u32))
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
    if sw.port(id).is_some_and(|s| s.port.overlay().is_some()) {
        return Err(format!(
            "{name} is the overlay's port; it goes with the overlay (--vtep)"
        ));
    }
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
    views: &mut Views,
) -> Outcome {
    let reply = match serde_json::from_slice::<Request>(req) {
        Ok(Request::Capture {
            ports: names,
            uplink,
            gateway,
            count,
            pcap,
        }) => match start_capture(sw, token, &names, uplink, gateway, count, pcap) {
            Ok(()) => return Outcome::Stream,
            Err(e) => Reply::err(e),
        },
        Ok(Request::Monitor) => {
            sw.fdb_expire(now);
            sw.monitor_start(token, &inst.name);
            return Outcome::Stream;
        }
        // Views of whole tables are streamed a chunk per turn of the loop.
        Ok(Request::NatShow {
            proto,
            port,
            inside,
        }) => match nat_filter(sw, proto.as_deref(), port.as_deref(), inside) {
            Ok(filter) => {
                sw.fdb_expire(now);
                let summary = serde_json::json!({ "summary": nat_summary(sw) });
                views.start(
                    token,
                    ViewKind::Nat(filter),
                    views::head(&summary, "flows"),
                    Vec::new(),
                );
                return Outcome::Stream;
            }
            Err(e) => Reply::err(e),
        },
        Ok(Request::FdbShow) => {
            sw.fdb_expire(now);
            let summary = serde_json::to_value(summary(sw)).expect("summary serializes");
            let head = views::head(&summary, "entries");
            views.start(token, ViewKind::Fdb, head, remote_macs(sw));
            return Outcome::Stream;
        }
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
    pcap: bool,
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
    tracing::info!(?points, ?count, pcap, "capture started");
    let format = if pcap { Format::Pcap } else { Format::PcapNg };
    sw.capture_start(token, points, count, format);
    Ok(())
}

/// Executes `req` against the switch at time `now`: one small handler per
/// request.
pub fn handle<P: Port, U: Port>(
    req: Request,
    sw: &mut Switch<P, U>,
    inst: &Instance,
    ports: &mut dyn PortControl<P>,
    now: Millis,
) -> Reply {
    // Keep what is shown consistent with what forwarding sees.
    sw.fdb_expire(now);
    let r = match req {
        Request::Status => Ok(Reply::ok(status(sw, inst, now))),
        Request::LogLevel { level } => set_log_level(inst, &level).map(Reply::ok),
        // Streamed by `handle_bytes` (see `views`); never reach here.
        Request::NatShow { .. } | Request::FdbShow => Err("a view is streamed".to_string()),
        Request::NatDel { proto, src, dst } => nat_del(sw, &proto, src, dst).map(Reply::ok),
        Request::Ports => Ok(Reply::ok(
            sw.ports()
                .map(|(_, s)| report(&s.info, &s.counters, sw.mtu() as u32))
                .collect::<Vec<_>>(),
        )),
        Request::FdbFlush { port } => fdb_flush(sw, port.as_deref()),
        Request::FdbAdd { mac, port } => fdb_add(sw, mac, &port),
        Request::FdbDel { mac } => fdb_del(sw, mac),
        Request::NatFlush => sw
            .nat_flush()
            .map(|removed| Reply::ok(CountReply { removed }))
            .ok_or_else(|| "NAT is off (no --uplink, or --no-nat)".to_string()),
        Request::Routes => Ok(Reply::ok::<Vec<RouteView>>(sw.gateway().routes())),
        Request::Neigh => Ok(Reply::ok(
            sw.gateway()
                .neighbours(now)
                .into_iter()
                .map(|(dev, entry)| NeighRow { dev, entry })
                .collect::<Vec<_>>(),
        )),
        Request::Overlay => sw
            .ports()
            .find_map(|(_, s)| s.port.overlay())
            .map(|mut v| {
                v.directory = ports.directory_status().map(|d| DirectoryView {
                    network: d.network,
                    endpoint: d.endpoint,
                    connected: d.connected,
                    lease_id: d.lease_id,
                    ttl_secs: d.ttl_secs,
                    remote_ports: sw.directory().map_or(0, |d| d.remote_len()),
                    arp_answered: sw.arp_answered(),
                });
                Reply::ok(v)
            })
            .ok_or_else(|| {
                "there is no overlay (start vswitchd with --vtep and --vxlan-peer or --etcd)".into()
            }),
        Request::PortAdd { spec, security } => port_add(&spec, security, sw, ports).map(Reply::ok),
        Request::PortDel { port } => port_del(&port, sw, ports).map(|()| {
            tracing::info!(port = %port, "port removed");
            Reply::ok(CountReply { removed: 1 })
        }),
        Request::Trace {
            port,
            uplink,
            frame,
        } => trace(sw, inst, &port, uplink, &frame, now).map(Reply::ok),
        Request::Capture { .. } => Err("capture is only available as a stream".into()),
        Request::Monitor => Err("monitor is only available as a stream".into()),
        Request::PublishShow => Ok(Reply::ok(sw.gateway().publish_view())),
        Request::PublishAdd { spec } => publish_add(sw, &spec).map(Reply::ok),
        Request::PublishDel { front } => publish_del(sw, &front).map(Reply::ok),
    };
    r.unwrap_or_else(Reply::err)
}

fn proto_number(p: &str) -> Result<u8, String> {
    match p {
        "tcp" => Ok(crate::wire::ipv4::PROTO_TCP),
        "udp" => Ok(crate::wire::ipv4::PROTO_UDP),
        "icmp" => Ok(crate::wire::ipv4::PROTO_ICMP),
        _ => Err(format!("protocol {p:?}: tcp, udp or icmp")),
    }
}

/// `nat show`'s filter: a protocol, and a namespace by port name or address.
fn nat_filter<P: Port, U: Port>(
    sw: &Switch<P, U>,
    proto: Option<&str>,
    port: Option<&str>,
    inside: Option<Ipv4Addr>,
) -> Result<crate::gateway::nat::FlowFilter, String> {
    let addr = match (port, inside) {
        (Some(_), Some(_)) => return Err("give --port or --inside, not both".into()),
        (Some(name), None) => Some(
            sw.port(port_id(sw, name)?)
                .map(|s| s.info.addr)
                .ok_or_else(|| format!("no port named {name}"))?,
        ),
        (None, a) => a,
    };
    Ok(crate::gateway::nat::FlowFilter {
        proto: proto.map(proto_number).transpose()?,
        addr,
    })
}

fn nat_del<P: Port, U: Port>(
    sw: &mut Switch<P, U>,
    proto: &str,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
) -> Result<CountReply, String> {
    let p = proto_number(proto)?;
    let found = sw
        .nat_delete(p, src, dst)
        .ok_or("NAT is off (no --uplink, or --no-nat)")?;
    if found {
        tracing::info!(%src, %dst, proto, "NAT flow deleted");
        Ok(CountReply { removed: 1 })
    } else {
        Err(format!(
            "no {proto} flow from {src} to {dst} (as nat show lists its original direction)"
        ))
    }
}

fn publish_add<P: Port, U: Port>(sw: &mut Switch<P, U>, spec: &str) -> Result<FrontView, String> {
    let s = crate::gateway::nat::service::parse_spec(spec)?;
    sw.publish(&s)?;
    tracing::info!(front = %s.front, "published");
    let front = s.front.to_string();
    sw.gateway()
        .publish_view()
        .into_iter()
        .find(|f| f.front == front)
        .ok_or_else(|| format!("{front}: published but not listed"))
}

fn publish_del<P: Port, U: Port>(sw: &mut Switch<P, U>, front: &str) -> Result<CountReply, String> {
    let key = crate::gateway::nat::service::parse_front(front)?;
    let removed = sw.unpublish(&key)?;
    tracing::info!(front = %key, flows = removed, "unpublished");
    Ok(CountReply { removed })
}

fn port_id<P: Port, U: Port>(sw: &Switch<P, U>, name: &str) -> Result<PortId, String> {
    sw.port_by_name(name)
        .ok_or_else(|| format!("no port named {name}"))
}

/// `vswitchctl log-level LEVEL`: the same values as `--log-level`.
fn set_log_level(inst: &Instance, level: &str) -> Result<String, String> {
    crate::config::check_log_level(level).map_err(|e| e.to_string())?;
    let log = inst
        .log
        .as_ref()
        .ok_or("this instance cannot change its log level")?;
    (log.0)(level)?;
    tracing::info!("log level set to {level}");
    Ok(level.to_string())
}

fn fdb_flush<P: Port, U: Port>(sw: &mut Switch<P, U>, port: Option<&str>) -> Result<Reply, String> {
    let id = port.map(|p| port_id(sw, p)).transpose()?;
    let removed = sw.fdb_flush(id);
    Ok(Reply::ok(CountReply { removed }))
}

fn fdb_add<P: Port, U: Port>(
    sw: &mut Switch<P, U>,
    mac: MacAddr,
    port: &str,
) -> Result<Reply, String> {
    let id = port_id(sw, port)?;
    sw.fdb_add_static(mac, id).map_err(|e| e.to_string())?;
    Ok(Reply::ok(CountReply { removed: 0 }))
}

fn fdb_del<P: Port, U: Port>(sw: &mut Switch<P, U>, mac: MacAddr) -> Result<Reply, String> {
    if mac == sw.gateway().mac() {
        return Err(format!(
            "{mac} is the gateway's own MAC; it cannot be removed"
        ));
    }
    if !sw.fdb_remove(mac) {
        return Err(format!("{mac} is not in the MAC table"));
    }
    Ok(Reply::ok(CountReply { removed: 1 }))
}

/// `vswitchctl trace`: builds the described frame as if sent from `port` (or
/// from a remote host on the uplink) and renders the datapath's decision.
fn trace<P: Port, U: Port>(
    sw: &Switch<P, U>,
    inst: &Instance,
    port: &str,
    uplink: bool,
    frame: &str,
    now: Millis,
) -> Result<TraceReply, String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let built = |r: Result<Vec<u8>, String>| r.map_err(|e| format!("frame description: {e}"));
    if uplink {
        let Some(wmac) = sw.gateway().wan_mac() else {
            return Err("there is no uplink (start vswitchd with --uplink)".into());
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
            security: false,
        };
        let bytes = built(trace::build_frame(frame, &remote, Some(wmac), sw))?;
        return Ok(TraceReply {
            frame: hex(&bytes),
            steps: trace::trace_uplink(sw, &bytes, now),
        });
    }
    let id = port_id(sw, port)?;
    let info = sw.port(id).expect("found above").info.clone();
    let bytes = built(trace::build_frame(frame, &info, None, sw))?;
    Ok(TraceReply {
        frame: hex(&bytes),
        steps: trace::trace(sw, id, &bytes, inst.mtu as usize, now),
    })
}
