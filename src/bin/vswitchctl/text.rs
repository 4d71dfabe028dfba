//! The text printed without --json that print.rs does not hold: the `show`
//! overview (or its Graphviz picture) and each command's reply, by command.

use crate::cli::{Cmd, FdbCmd, NatCmd, PortCmd, PublishCmd};
use crate::client::{ask, parse};
use crate::print::*;
use vswitchd::control::proto::{
    CountReply, FdbShowReply, NeighRow, PortReport, Request, StatusReply,
};
use vswitchd::gateway::nat::FrontView;

/// `show`: status, ports and (if any) the overlay, in one picture.
pub(super) fn show(name: &str, format: &str, json: bool) -> Result<(), String> {
    let status: StatusReply = parse(ask(name, &Request::Status)?)?;
    let ports: Vec<PortReport> = parse(ask(name, &Request::Ports)?)?;
    let overlay = ask(name, &Request::Overlay).ok();
    if json {
        let v = serde_json::json!({ "status": status, "ports": ports, "overlay": overlay });
        println!("{v}");
        return Ok(());
    }
    let g = &status.gateway_port;
    if format == "dot" {
        println!("graph \"{}\" {{", status.name);
        println!(
            "  label=\"vswitchd {} ({})\"; node [shape=box];",
            status.name, status.subnet
        );
        println!(
            "  switch [shape=ellipse, label=\"switch {}\"];",
            status.name
        );
        println!("  gateway [label=\"gateway\\n{} {}\"];", g.address, g.mac);
        println!("  switch -- gateway;");
        for p in ports.iter().filter(|p| p.info.name != "vxlan") {
            println!(
                "  \"{0}\" [label=\"{0}\\n{1}/{2}\\n{3}\"]; switch -- \"{0}\";",
                p.info.name, p.info.addr, p.info.prefix_len, p.info.mac
            );
        }
        if let Some(u) = &g.uplink {
            println!(
                "  uplink [shape=ellipse, label=\"uplink {} ({})\\n{}\"]; gateway -- uplink;",
                u.ifname,
                u.state,
                u.address.as_deref().unwrap_or("no address")
            );
        }
        if let Some(o) = &overlay {
            println!(
                "  overlay [shape=ellipse, label=\"VXLAN {} VNI {}\\nVTEP {}\"]; switch -- overlay;",
                o["mode"].as_str().unwrap_or(""),
                o["vni"],
                o["vtep"].as_str().unwrap_or("")
            );
            for h in o["hosts"].as_array().into_iter().flatten() {
                let vtep = h["vtep"].as_str().unwrap_or("");
                println!("  \"host {vtep}\" [shape=ellipse]; overlay -- \"host {vtep}\";");
            }
        }
        println!("}}");
        return Ok(());
    }
    println!(
        "vswitchd {} (pid {}, up {} s): subnet {}, MTU {}",
        status.name, status.pid, status.uptime_secs, status.subnet, status.mtu
    );
    println!("  gateway {} {}", g.address, g.mac);
    match &g.uplink {
        Some(u) => println!(
            "  uplink {} ({}), address {}{}",
            u.ifname,
            u.state,
            u.address.as_deref().unwrap_or("none yet"),
            g.nat.as_ref().map_or_else(
                || ", routing without NAT".to_string(),
                |n| format!(", NAT {} of {} flows", n.flows, n.max)
            )
        ),
        None => println!("  no uplink"),
    }
    for p in &ports {
        println!(
            "  port {:<16} {:<8} {} {}/{} {}{}",
            p.info.name,
            p.info.ifname,
            p.info.mac,
            p.info.addr,
            p.info.prefix_len,
            p.state,
            if p.info.security {
                " (port security)"
            } else {
                ""
            }
        );
    }
    if let Some(o) = &overlay {
        println!(
            "  overlay: {} mode, VNI {}, VTEP {}, {} other host(s)",
            o["mode"].as_str().unwrap_or(""),
            o["vni"],
            o["vtep"].as_str().unwrap_or(""),
            o["hosts"].as_array().map_or(0, Vec::len)
        );
    }
    println!(
        "  MAC table {} of {} entries",
        status.fdb.size, status.fdb.max
    );
    Ok(())
}

pub(super) fn print_text(cmd: &Cmd, result: serde_json::Value) -> Result<(), String> {
    match cmd {
        Cmd::Status => print_status(result)?,
        Cmd::Nat {
            cmd: NatCmd::Show { .. },
        } => print_nat(result)?,
        Cmd::Nat {
            cmd: NatCmd::Del { proto, src, dst },
        } => {
            let _: CountReply = parse(result)?;
            println!("deleted the {proto} flow {src} -> {dst}");
        }
        Cmd::Nat { cmd: NatCmd::Flush } => {
            let r: CountReply = parse(result)?;
            println!("flushed {} NAT flows", r.removed);
        }
        Cmd::Publish {
            cmd: PublishCmd::Show,
        } => {
            let fronts: Vec<FrontView> = parse(result)?;
            if fronts.is_empty() {
                println!("nothing published (vswitchd --publish, or vswitchctl publish add)");
            }
            print_fronts(&fronts);
        }
        Cmd::Publish {
            cmd: PublishCmd::Add { .. },
        } => {
            let f: FrontView = parse(result)?;
            print!("published ");
            print_fronts(std::slice::from_ref(&f));
        }
        Cmd::Publish {
            cmd: PublishCmd::Del { front },
        } => {
            let r: CountReply = parse(result)?;
            println!("{front} withdrawn; {} flow(s) ended", r.removed);
        }
        Cmd::Port {
            cmd: PortCmd::Add { .. },
        } => {
            let p: PortReport = parse(result)?;
            println!(
                "port {} added: {} {} {}/{}",
                p.info.name, p.info.ifname, p.info.mac, p.info.addr, p.info.prefix_len
            );
        }
        Cmd::Port {
            cmd: PortCmd::Del { port },
        } => println!("port {port} removed"),
        Cmd::Capture { .. } | Cmd::List | Cmd::Show { .. } | Cmd::Monitor => {}
        Cmd::Completions { .. } | Cmd::Man { .. } => {}
        Cmd::Trace { .. } => {
            let r: vswitchd::control::proto::TraceReply = parse(result)?;
            for (i, s) in r.steps.iter().enumerate() {
                println!("{:>2}. {s}", i + 1);
            }
        }
        Cmd::Routes => {
            let routes: Vec<vswitchd::gateway::RouteView> = parse(result)?;
            for r in &routes {
                let via = r.via.map_or_else(String::new, |v| format!(" via {v}"));
                let src = r.src.map_or_else(String::new, |v| format!(" src {v}"));
                println!("{}{via} dev {}{src}", r.destination, r.dev);
            }
        }
        Cmd::Overlay => print_overlay(result)?,
        Cmd::LogLevel { level } => println!("log level set to {level}"),
        Cmd::Neigh => {
            let rows: Vec<NeighRow> = parse(result)?;
            let rows = rows
                .iter()
                .map(|n| {
                    vec![
                        n.dev.clone(),
                        n.entry.ip.to_string(),
                        n.entry
                            .mac
                            .map_or_else(|| "-".to_string(), |m| m.to_string()),
                        n.entry.state.clone(),
                        n.entry
                            .confirmed_secs_ago
                            .map_or_else(|| "-".to_string(), |s| format!("{s}s ago")),
                    ]
                })
                .collect();
            print_table(&["DEV", "ADDRESS", "MAC", "STATE", "CONFIRMED"], &[4], rows);
        }
        Cmd::Ports => print_ports(result)?,
        Cmd::Fdb {
            cmd: FdbCmd::Show { port },
        } => {
            let mut r: FdbShowReply = parse(result)?;
            if let Some(p) = port {
                r.entries.retain(|e| &e.port == p);
            }
            // The daemon streams rows in table order.
            r.entries
                .sort_by(|a, b| (&a.port, a.mac).cmp(&(&b.port, b.mac)));
            let rows = r
                .entries
                .iter()
                .map(|e| {
                    let age = e
                        .age
                        .map_or_else(|| "static".to_string(), |a| a.to_string());
                    let vtep = e.vtep.map_or_else(String::new, |v| format!("dst {v}"));
                    vec![e.port.clone(), e.mac.to_string(), age, vtep]
                })
                .collect();
            print_table(&["PORT", "MAC", "AGE", ""], &[2], rows);
            print_summary(&r.summary);
        }
        Cmd::Fdb {
            cmd: FdbCmd::Flush { port },
        } => {
            let r: CountReply = parse(result)?;
            match port {
                Some(p) => println!("flushed {} learned entries of port {p}", r.removed),
                None => println!("flushed {} learned entries", r.removed),
            }
        }
        Cmd::Fdb {
            cmd: FdbCmd::Add { mac, port },
        } => println!("static entry {mac} -> {port} added"),
        Cmd::Fdb {
            cmd: FdbCmd::Del { mac },
        } => println!("entry {mac} removed"),
    }
    Ok(())
}
