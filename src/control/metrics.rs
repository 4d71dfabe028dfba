//! Prometheus text exposition of the switch's counters, served by the
//! optional `--metrics` HTTP endpoint: per-port counters and drops by
//! reason, the MAC table, the gateway, the uplink, the NAT and the DNS
//! server.

use crate::control::Instance;
use crate::datapath::{PortCounters, Switch};
use crate::port::Port;
use crate::reason::Reason;
use std::fmt::Write;

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP vswitchd_{name} {help}");
        let _ = writeln!(self.0, "# TYPE vswitchd_{name} {kind}");
    }
    fn val(&mut self, name: &str, labels: &str, v: u64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "vswitchd_{name} {v}");
        } else {
            let _ = writeln!(self.0, "vswitchd_{name}{{{labels}}} {v}");
        }
    }
}

/// Escapes a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics in Prometheus text format.
///
/// Long on purpose (~170 lines): one flat list of metric families in the
/// order they are exposed, each a few lines; split up, the list a reader
/// checks against the README would be scattered.
pub fn render<P: Port, U: Port>(sw: &Switch<P, U>, inst: &Instance) -> String {
    let mut o = Out(String::with_capacity(8192));
    o.head(
        "info",
        "gauge",
        "Always 1; the instance's name and vswitchd's version as labels.",
    );
    o.val(
        "info",
        &format!(
            "instance=\"{}\",version=\"{}\"",
            esc(&inst.name),
            env!("CARGO_PKG_VERSION")
        ),
        1,
    );
    let mut ports: Vec<(String, PortCounters)> = sw
        .ports()
        .map(|(_, s)| (format!("port=\"{}\"", esc(&s.info.name)), s.counters))
        .collect();
    ports.push(("port=\"gateway\"".into(), *sw.gateway_counters()));
    if let Some(u) = sw.uplink() {
        ports.push((format!("port=\"uplink:{}\"", esc(&u.ifname)), u.counters));
    }
    type Series = (&'static str, &'static str, fn(&PortCounters) -> u64);
    let per_port: [Series; 6] = [
        (
            "port_rx_packets_total",
            "Frames received from a port.",
            |c| c.rx_packets,
        ),
        ("port_rx_bytes_total", "Bytes received from a port.", |c| {
            c.rx_bytes
        }),
        ("port_tx_packets_total", "Frames sent to a port.", |c| {
            c.tx_packets
        }),
        ("port_tx_bytes_total", "Bytes sent to a port.", |c| {
            c.tx_bytes
        }),
        (
            "port_tx_coalesced_total",
            "Of the frames sent to a port, UDP datagrams written together in super-frames.",
            |c| c.tx_coalesced,
        ),
        (
            "port_tx_super_frames_total",
            "UDP super-frames written to a port (one write each).",
            |c| c.tx_super_frames,
        ),
    ];
    for (name, help, get) in per_port {
        o.head(name, "counter", help);
        for (l, c) in &ports {
            o.val(name, l, get(c));
        }
    }
    o.head(
        "port_drops_total",
        "counter",
        "Frames dropped at a port, by reason.",
    );
    for (l, c) in &ports {
        for (r, n) in c.drops.iter() {
            o.val(
                "port_drops_total",
                &format!("{l},reason=\"{}\"", r.name()),
                n,
            );
        }
    }
    o.head(
        "datapath_thread_frames_total",
        "counter",
        "Frames read from the ports' queues by each datapath thread (0: the event loop, queue 0; k: worker k, queue k; --workers).",
    );
    for (k, n) in sw.thread_frames().iter().enumerate() {
        o.val(
            "datapath_thread_frames_total",
            &format!("thread=\"{k}\""),
            *n,
        );
    }

    let f = sw.fdb();
    let st = f.stats();
    o.head("fdb_entries", "gauge", "Entries in the MAC table.");
    o.val("fdb_entries", "", f.len() as u64);
    o.head(
        "fdb_max_entries",
        "gauge",
        "Size limit of the MAC table (--fdb-max).",
    );
    o.val("fdb_max_entries", "", f.max_entries() as u64);
    for (name, help, v) in [
        ("fdb_learned_total", "MACs learned.", st.learned),
        ("fdb_expired_total", "Entries aged out.", st.expired),
        (
            "fdb_evicted_total",
            "Entries evicted from a full table.",
            st.evicted,
        ),
        (
            "fdb_moved_total",
            "MACs that moved to another port.",
            st.moved,
        ),
        (
            "fdb_refused_total",
            "Learning refused (table full of static entries).",
            st.refused,
        ),
    ] {
        o.head(name, "counter", help);
        o.val(name, "", v);
    }

    let g = sw.gateway();
    let gs = g.stats();
    o.head(
        "gateway_routed_total",
        "counter",
        "Packets routed by the gateway, by direction.",
    );
    o.val("gateway_routed_total", "direction=\"out\"", gs.routed_out);
    o.val("gateway_routed_total", "direction=\"in\"", gs.routed_in);
    o.val("gateway_routed_total", "direction=\"lan\"", gs.routed_lan);
    o.head(
        "gateway_icmp_errors_sent_total",
        "counter",
        "ICMP errors the gateway sent.",
    );
    o.val("gateway_icmp_errors_sent_total", "", gs.icmp_errors_sent);
    o.head(
        "gateway_drops_total",
        "counter",
        "Packets the gateway dropped, by reason.",
    );
    for (r, n) in gs.drops.iter() {
        o.val(
            "gateway_drops_total",
            &format!("reason=\"{}\"", r.name()),
            n,
        );
    }
    o.head(
        "uplink_has_address",
        "gauge",
        "1 when the uplink has an address.",
    );
    o.val("uplink_has_address", "", g.wan_addr().is_some() as u64);
    if let Some(u) = sw.uplink() {
        o.head(
            "uplink_up",
            "gauge",
            "1 while the uplink interface is up with a carrier; 0 while down or deleted (see the state label).",
        );
        let label = format!("state=\"{}\"", u.state.name());
        o.val(
            "uplink_up",
            &label,
            (u.state == crate::datapath::LinkState::Up) as u64,
        );
    }

    if let Some(n) = g.nat() {
        let ns = n.stats();
        o.head("nat_flows", "gauge", "NAT flows in the table.");
        o.val("nat_flows", "", n.len() as u64);
        o.head(
            "nat_max_flows",
            "gauge",
            "Size limit of the NAT table (--nat-max).",
        );
        o.val("nat_max_flows", "", n.config().max_flows as u64);
        for (name, help, v) in [
            ("nat_flows_created_total", "NAT flows created.", ns.created),
            (
                "nat_flows_expired_total",
                "NAT flows timed out.",
                ns.expired,
            ),
            (
                "nat_refused_full_total",
                "New flows refused because the table was full.",
                ns.refused_full,
            ),
            (
                "nat_translated_out_total",
                "Packets translated outbound.",
                ns.translated_out,
            ),
            (
                "nat_translated_in_total",
                "Packets translated inbound.",
                ns.translated_in,
            ),
            (
                "nat_icmp_errors_translated_total",
                "ICMP errors translated.",
                ns.icmp_errors_translated,
            ),
            (
                "nat_frag_evicted_source_cap_total",
                "Fragment records a source lost to its own newer ones (its cap).",
                ns.frag_evicted_source_cap,
            ),
            (
                "nat_frag_evicted_table_full_total",
                "Fragment records the largest holder lost to a full table.",
                ns.frag_evicted_table_full,
            ),
        ] {
            o.head(name, "counter", help);
            o.val(name, "", v);
        }
    }
    if let Some(d) = g.dns_view() {
        let t = &d.stats;
        o.head(
            "dns_queries_total",
            "counter",
            "DNS queries the gateway took, by result: answered from the port names (local), sent upstream (forwarded), answered with an error (failed: malformed, no upstream, upstream table full or silent), dropped.",
        );
        for (result, v) in [
            ("local", t.local),
            ("forwarded", t.forwarded),
            ("failed", t.failed),
            ("dropped", t.dropped),
        ] {
            o.val("dns_queries_total", &format!("result=\"{result}\""), v);
        }
        for (name, help, v) in [
            (
                "dns_upstream_answers_total",
                "Upstream DNS answers given back to the asker.",
                t.upstream_answers,
            ),
            (
                "dns_upstream_timeouts_total",
                "Queries no upstream answered in time (SERVFAIL).",
                t.timeouts,
            ),
            (
                "dns_stray_answers_total",
                "Datagrams on the upstream port that answer nothing asked.",
                t.stray,
            ),
        ] {
            o.head(name, "counter", help);
            o.val(name, "", v);
        }
        o.head(
            "dns_upstream_waiting",
            "gauge",
            "DNS queries waiting for an upstream answer.",
        );
        o.val("dns_upstream_waiting", "", d.waiting as u64);
        o.head("dns_names", "gauge", "Port names the DNS server answers.");
        o.val("dns_names", "", d.names as u64);
    }
    let fronts = g.publish_view();
    if !fronts.is_empty() {
        for (name, help, conns) in [
            (
                "publish_connections_total",
                "New connections to a published front end, per backend.",
                true,
            ),
            (
                "publish_packets_total",
                "Packets of published flows (both ways), per backend.",
                false,
            ),
        ] {
            o.head(name, "counter", help);
            for f in &fronts {
                for b in &f.backends {
                    let label = format!("front=\"{}\",backend=\"{}:{}\"", f.front, b.name, b.port);
                    o.val(name, &label, if conns { b.connections } else { b.packets });
                }
            }
        }
    }
    let c = sw.captures();
    o.head("capture_sessions", "gauge", "Live capture sessions.");
    o.val("capture_sessions", "", c.tokens().len() as u64);
    o.head(
        "capture_dropped_total",
        "counter",
        "Frames left out of captures because their reader was behind (every session since start).",
    );
    o.val("capture_dropped_total", "", c.dropped_total());
    o.head(
        "uptime_seconds",
        "gauge",
        "Seconds since the instance started.",
    );
    o.val(
        "uptime_seconds",
        "",
        inst.started.elapsed().map_or(0, |d| d.as_secs()),
    );
    o.0
}

/// The whole HTTP/1.0 response to a request head: the metrics for
/// `GET /metrics` (or `/`, and `HEAD` of either), 405 for another method,
/// 404 for another path.
pub fn http_response<P: Port, U: Port>(
    request: &[u8],
    sw: &Switch<P, U>,
    inst: &Instance,
) -> Vec<u8> {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => ("200 OK", render(sw, inst)),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "not found: the metrics are at /metrics\n".into(),
        ),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".into()),
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut r = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        r.extend_from_slice(body.as_bytes());
    }
    r
}
