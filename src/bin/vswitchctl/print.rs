//! How `vswitchctl` shows the daemon's replies to a person: the tables and
//! summaries of `status`, `ports`, `nat show`, `publish`, `overlay` and the
//! monitor's events (with `--json` the replies are printed as they came).

use crate::client::parse;
use vswitchd::control::proto::{FdbSummary, NatShowReply, NatSummary, PortReport, StatusReply};
use vswitchd::gateway::nat::FrontView;

pub(super) fn describe_event(e: &vswitchd::datapath::events::Event) -> String {
    use vswitchd::datapath::events::Event;
    match e {
        Event::Monitoring { instance } => format!("monitoring {instance} (Ctrl-C stops)"),
        Event::MacLearned { mac, port } => format!("mac {mac} learned on {port}"),
        Event::MacMoved { mac, from, to } => format!("mac {mac} moved from {from} to {to}"),
        Event::MacAged { mac, port } => format!("mac {mac} aged out on {port}"),
        Event::MacEvicted { mac, port } => format!("mac {mac} evicted from {port} (table full)"),
        Event::PortAdded { port, addr } => format!("port {port} added ({addr})"),
        Event::PortRemoved { port } => format!("port {port} removed"),
        Event::NatCreated {
            proto,
            original,
            reply,
        } => format!("[NEW] {proto} {original} {reply}"),
        Event::NatEnded {
            proto,
            original,
            reply,
        } => format!("[DESTROY] {proto} {original} {reply}"),
        Event::Gateway { message } => format!("gateway: {message}"),
        Event::Lost { events } => format!("{events} events lost (this reader was too slow)"),
    }
}

pub(super) fn print_summary(s: &FdbSummary) {
    println!(
        "MAC table: {} of {} entries, aging {} s; learned {}, expired {}, evicted {}, moved {}, refused {}",
        s.size, s.max, s.aging_secs, s.learned, s.expired, s.evicted, s.moved, s.refused
    );
}

pub(super) fn print_nat_summary(s: &NatSummary) {
    println!(
        "NAT: {} of {} flows; created {}, expired {}, refused (table full) {}, translated out {} in {}, ICMP errors {}",
        s.flows,
        s.max,
        s.stats.created,
        s.stats.expired,
        s.stats.refused_full,
        s.stats.translated_out,
        s.stats.translated_in,
        s.stats.icmp_errors_translated
    );
}

/// `overlay`: the mode, VNI, own VTEP, then one line per remote host.
pub(super) fn print_overlay(result: serde_json::Value) -> Result<(), String> {
    let o: vswitchd::port::vxlan::OverlayView = parse(result)?;
    println!(
        "overlay: {} mode, VNI {}, VTEP {} (UDP {})",
        o.mode, o.vni, o.vtep, o.port
    );
    if let Some(d) = &o.directory {
        println!(
            "directory: network {} in etcd {} ({}), lease {:x} TTL {} s; {} remote ports, {} ARP requests answered",
            d.network,
            d.endpoint,
            if d.connected {
                "connected"
            } else {
                "LOST: retrying, forwarding with the last known directory"
            },
            d.lease_id,
            d.ttl_secs,
            d.remote_ports,
            d.arp_answered
        );
    }
    let rows = o
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.vtep.to_string(),
                h.name.as_deref().unwrap_or("-").to_string(),
                h.macs.to_string(),
                h.rx_packets.to_string(),
                h.tx_packets.to_string(),
                h.last_seen_secs
                    .map_or_else(|| "never".to_string(), |s| format!("{s}s ago")),
            ]
        })
        .collect();
    let header = [
        "HOST (VTEP)",
        "NAME",
        "MACS",
        "RX_PKTS",
        "TX_PKTS",
        "LAST_SEEN",
    ];
    print_table(&header, &[2, 3, 4, 5], rows);
    let drops: Vec<String> = o
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !drops.is_empty() {
        println!("drops: {}", drops.join(" "));
    }
    Ok(())
}

/// `status`: the instance, the MAC table, the gateway and its uplink.
pub(super) fn print_status(result: serde_json::Value) -> Result<(), String> {
    let s: StatusReply = parse(result)?;
    println!(
        "instance {} (pid {}), up {} s",
        s.name, s.pid, s.uptime_secs
    );
    println!(
        "subnet {}, gateway {}, mtu {}, {} port(s)",
        s.subnet, s.gateway, s.mtu, s.ports
    );
    print_summary(&s.fdb);
    if s.thread_frames.len() > 1 {
        let parts: Vec<String> = s
            .thread_frames
            .iter()
            .enumerate()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!(
            "datapath threads {} (--workers), frames read by each: {}",
            s.thread_frames.len(),
            parts.join(" ")
        );
    }
    let g = &s.gateway_port;
    println!(
        "gateway {} {}: routed out {}, in {}, within LAN {}; to its own stack {}; ICMP errors sent {}; ARP requests {}",
        g.address,
        g.mac,
        g.routed_out,
        g.routed_in,
        g.routed_lan,
        g.to_stack,
        g.icmp_errors_sent,
        g.arp_requests_sent
    );
    if !g.drops.is_empty() {
        let parts: Vec<String> = g.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("    drops: {}", parts.join(" "));
    }
    match &g.uplink {
        Some(u) => {
            println!(
                "uplink {} ({} for {} s) {} address {}: rx {} pkts {} bytes, tx {} pkts {} bytes",
                u.ifname,
                u.state,
                u.state_secs,
                u.mac,
                u.address.as_deref().unwrap_or("(none yet)"),
                u.rx_packets,
                u.rx_bytes,
                u.tx_packets,
                u.tx_bytes
            );
            if !u.drops.is_empty() {
                let parts: Vec<String> = u.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("    drops: {}", parts.join(" "));
            }
        }
        None => println!("no uplink"),
    }
    match &g.nat {
        Some(n) => print_nat_summary(n),
        None => println!("NAT off"),
    }
    match &s.dns {
        Some(d) => {
            let ups: Vec<String> = d.upstreams.iter().map(|u| u.to_string()).collect();
            println!(
                "DNS on {}:53, domain {}, {} name(s); upstream {} ({}), {} waiting",
                s.gateway,
                d.domain,
                d.names,
                if ups.is_empty() {
                    "none".to_string()
                } else {
                    ups.join(", ")
                },
                d.upstream_source,
                d.waiting
            );
            let t = &d.stats;
            println!(
                "    queries answered locally {}, forwarded {} ({} answered), failed {} ({} upstream timeouts), dropped {}, stray answers {}",
                t.local, t.forwarded, t.upstream_answers, t.failed, t.timeouts, t.dropped, t.stray
            );
        }
        None => println!("DNS off"),
    }
    if !g.published.is_empty() {
        println!("published:");
        print_fronts(&g.published);
    }
    let m = &s.memory;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    print!(
        "heap: NAT {:.1} MiB, MAC table {:.1} MiB",
        mib(m.nat),
        mib(m.fdb)
    );
    if let (Some(used), Some(free)) = (m.malloc_in_use, m.malloc_free) {
        print!(
            "; malloc in use {:.1} MiB, free held {:.1} MiB",
            mib(used),
            mib(free)
        );
    }
    println!();
    Ok(())
}

/// Front ends, each with its backends.
pub(super) fn print_fronts(fronts: &[FrontView]) {
    for f in fronts {
        let at = f.addr.map_or_else(
            || "(uplink has no address yet)".to_string(),
            |a| format!("{a}:{}", f.port),
        );
        println!("{} -> {}", f.front, at);
        for b in &f.backends {
            let addr = b.addr.map_or_else(
                || "gone (out of the rotation)".to_string(),
                |a| format!("{a}:{}", b.port),
            );
            println!(
                "    {:<16} {:<24} connections {:>8} packets {:>10}",
                format!("{}:{}", b.name, b.port),
                addr,
                b.connections,
                b.packets
            );
        }
    }
}

/// `nat show`: one line per flow, like `conntrack -L` (protocol, state,
/// seconds left, the original then the reply direction, packets each way),
/// then the table summary.
pub(super) fn print_nat(result: serde_json::Value) -> Result<(), String> {
    let mut r: NatShowReply = parse(result)?;
    // The daemon streams rows in table order.
    r.flows
        .sort_by(|a, b| (&a.proto, a.original).cmp(&(&b.proto, b.original)));
    for f in &r.flows {
        let published = match (&f.front, &f.backend) {
            (Some(fr), Some(be)) => format!(" [published {fr} -> {be}]"),
            _ => String::new(),
        };
        println!(
            "{:<4} {:<11} {:>5}s {} packets={} {} packets={}{published}",
            f.proto, f.state, f.expires_in_secs, f.original, f.packets_out, f.reply, f.packets_in
        );
    }
    match &r.summary {
        Some(s) => print_nat_summary(s),
        None => println!("NAT off"),
    }
    Ok(())
}

/// A table as `ip` and `docker` print them (comfy-table): a header row, no
/// borders, each column as wide as its widest cell, two spaces between
/// columns; the columns numbered in `right` (numbers) are right-aligned.
/// Returns the lines: the header, then one per row.
pub(super) fn table(header: &[&str], right: &[usize], rows: Vec<Vec<String>>) -> Vec<String> {
    use comfy_table::{CellAlignment, Table, presets::NOTHING};
    let mut t = Table::new();
    t.load_style(NOTHING).set_header(header.to_vec());
    t.add_rows(rows);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, 2));
        if right.contains(&i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.lines().map(|l| l.trim_end().to_string()).collect()
}

/// Prints [`table`]'s lines.
pub(super) fn print_table(header: &[&str], right: &[usize], rows: Vec<Vec<String>>) {
    for line in table(header, right, rows) {
        println!("{line}");
    }
}

/// `ports`: one line per port with its counters.
pub(super) fn print_ports(result: serde_json::Value) -> Result<(), String> {
    let ports: Vec<PortReport> = parse(result)?;
    let rows = ports
        .iter()
        .map(|p| {
            vec![
                p.info.name.clone(),
                p.info.ifname.clone(),
                p.info.mac.to_string(),
                format!("{}/{}", p.info.addr, p.info.prefix_len),
                p.state.clone(),
                p.mtu.to_string(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                p.drops.values().sum::<u64>().to_string(),
            ]
        })
        .collect();
    let header = [
        "PORT", "IFACE", "MAC", "ADDRESS", "STATE", "MTU", "RX_PKTS", "RX_BYTES", "TX_PKTS",
        "TX_BYTES", "DROPS",
    ];
    let mut lines = table(&header, &[5, 6, 7, 8, 9, 10], rows).into_iter();
    println!("{}", lines.next().unwrap_or_default());
    for (p, line) in ports.iter().zip(lines) {
        println!("{line}");
        if p.info.security {
            println!(
                "    port security: only {} / {} may send",
                p.info.mac, p.info.addr
            );
        }
        if !p.drops.is_empty() {
            let parts: Vec<String> = p.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("    drops: {}", parts.join(" "));
        }
    }
    Ok(())
}
