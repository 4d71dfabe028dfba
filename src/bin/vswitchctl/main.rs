//! `vswitchctl`: talk to a running vswitchd over its control socket.
//! Sends one request, prints the reply as text (or as JSON with `--json`).

use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;
use vswitchd::control::proto::{
    CountReply, FdbShowReply, FdbSummary, NatShowReply, NatSummary, NeighRow, PortReport, Reply,
    Request, StatusReply, socket_path,
};
use vswitchd::gateway::nat::FrontView;
use vswitchd::wire::MacAddr;

mod print;
use print::*;

/// Inspect and steer a running vswitchd instance.
#[derive(Parser, Debug)]
#[command(name = "vswitchctl", version, infer_subcommands = true)]
struct Cli {
    /// Instance to talk to (its socket is /run/vswitchd/NAME.sock).
    #[arg(long, default_value = "vsw0", global = true)]
    name: String,
    /// Print the daemon's reply as JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The running instances (every control socket that answers).
    List,
    /// One overview, like `ovs-vsctl show`: the instance, its subnet and
    /// gateway, the uplink, the ports, the overlay, table sizes.
    Show {
        /// `text`, or `dot` for a Graphviz picture of the topology
        /// (`vswitchctl show --format dot | dot -Tsvg > topo.svg`).
        #[arg(long, default_value = "text", value_parser = ["text", "dot"])]
        format: String,
    },
    /// Instance summary: ports, MAC table size and counters.
    Status,
    /// Ports with interface, MAC, address, state (up, or down while writes
    /// to it fail), MTU and counters.
    Ports,
    /// The MAC table.
    Fdb {
        #[command(subcommand)]
        cmd: FdbCmd,
    },
    /// The NAT (masquerade) flow table.
    Nat {
        #[command(subcommand)]
        cmd: NatCmd,
    },
    /// Published ports and service addresses (DNAT with load balancing).
    Publish {
        #[command(subcommand)]
        cmd: PublishCmd,
    },
    /// Add or remove ports while the switch runs.
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
    /// Stream frames crossing chosen points as pcapng (or pcap).
    ///
    /// Readable by tcpdump -r -, tshark and Wireshark. Without --port,
    /// --uplink or --gateway: every port and the gateway, each frame once.
    /// Each point is a pcapng interface named after it (NS, gateway,
    /// uplink:IFACE): tshark -r FILE -T fields -e frame.interface_name.
    /// A slow reader loses frames (counted in status), never slows the switch.
    Capture {
        /// A port to capture on (repeat for several).
        #[arg(long = "port", value_name = "NS")]
        ports: Vec<String>,
        /// The uplink, as frames are on the wire there (after translation).
        #[arg(long)]
        uplink: bool,
        /// The gateway port (the LAN side of the router).
        #[arg(long)]
        gateway: bool,
        /// Stop after COUNT frames.
        #[arg(short = 'c', value_name = "COUNT")]
        count: Option<u64>,
        /// Write to FILE, or `-` for standard output (not a terminal).
        #[arg(short = 'w', value_name = "FILE|-", default_value = "-")]
        write: String,
        /// Classic pcap (one link, no interface names) instead of pcapng.
        #[arg(long)]
        pcap: bool,
    },
    /// Explain, step by step, what the switch would do with a frame.
    ///
    /// The frame runs through the datapath's own decision code without being
    /// sent and without changing any state. FRAME: `eth src=..,dst=..`
    /// `ip src=..,dst=..,ttl=..,df=1` and one of `udp sport=..,dport=..,len=..`,
    /// `tcp sport=..,dport=..,flags=SA`, `icmp type=..,id=..`; or
    /// `arp op=request|reply,tpa=..,spa=..`; or `hex BYTES` (colons allowed).
    /// Omitted fields come from the port (its MAC and address) and the
    /// destination. Example: trace --port ns01 ip dst=10.99.0.1 udp dport=53
    Trace {
        /// The port the frame arrives on.
        #[arg(
            long,
            value_name = "NS",
            required_unless_present = "uplink",
            conflicts_with = "uplink"
        )]
        port: Option<String>,
        /// The frame arrives on the uplink (from a host there).
        #[arg(long)]
        uplink: bool,
        #[arg(required = true, num_args = 1.., value_name = "FRAME")]
        frame: Vec<String>,
    },
    /// The gateway's routing table.
    Routes,
    /// The gateway's neighbour (ARP) caches, LAN and uplink.
    Neigh,
    /// The VXLAN overlay: mode, VNI, this host's VTEP, the other hosts.
    Overlay,
    /// Change the daemon's log level while it runs (the values of
    /// vswitchd --log-level: error, warn, info, debug, trace, or a filter
    /// such as `info,vswitchd::gateway=debug`).
    LogLevel { level: String },
    /// Watch events as they happen, like `bridge monitor fdb` and
    /// `conntrack -E`: MAC entries learned, moved, aged and evicted, ports
    /// added and removed, NAT flows created and ended, the uplink's address
    /// and a full NAT table. One line each (with --json, one JSON object);
    /// runs until interrupted. A reader too slow loses events, counted in
    /// a `lost` line; the switch never waits for it.
    Monitor,
    /// Print a shell completion script: bash, zsh, fish, elvish or
    /// powershell (for vswitchctl, or with --daemon for vswitchd).
    ///
    /// bash: `vswitchctl completions bash > /etc/bash_completion.d/vswitchctl`;
    /// zsh: into a directory of $fpath as `_vswitchctl`; fish:
    /// `~/.config/fish/completions/vswitchctl.fish`.
    Completions {
        shell: clap_complete::Shell,
        /// The script for vswitchd instead.
        #[arg(long)]
        daemon: bool,
    },
    /// Write the man pages of vswitchd and vswitchctl (section 8, one per
    /// subcommand too) into DIR, e.g. /usr/local/share/man/man8.
    #[command(hide = true)]
    Man { dir: std::path::PathBuf },
}

/// `monitor`: the daemon's event lines, as they come, printed for a person
/// (or passed on as they are with --json) until the daemon or the reader
/// goes.
fn monitor(name: &str, json: bool) -> Result<(), String> {
    use std::io::BufRead;
    use vswitchd::datapath::events::Event;
    let mut s = connect(name)?;
    let mut line = serde_json::to_vec(&Request::Monitor).expect("request serializes");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("cannot send to {}: {e}", socket_path(name).display()))?;
    let mut out = std::io::stdout().lock();
    for l in std::io::BufReader::new(s).lines() {
        let l = l.map_err(|e| format!("event stream: {e}"))?;
        let text = if json {
            l
        } else {
            let v: serde_json::Value =
                serde_json::from_str(&l).map_err(|e| format!("bad event {l:?}: {e}"))?;
            if v.get("ok") == Some(&serde_json::Value::Bool(false)) {
                return Err(v["error"].as_str().unwrap_or("monitor refused").to_string());
            }
            let at = v["at_ms"].as_u64().unwrap_or(0);
            let e: Event =
                serde_json::from_value(v).map_err(|e| format!("bad event {l:?}: {e}"))?;
            format!("{:>9.3} {}", at as f64 / 1000.0, describe_event(&e))
        };
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            return Ok(()); // the reader went (a closed pipe)
        }
    }
    Ok(())
}

/// `completions` and `man`: made from the command-line definitions, no
/// daemon involved.
fn local_command(cmd: &Cmd) -> Option<Result<(), String>> {
    use clap::CommandFactory;
    match cmd {
        Cmd::Completions { shell, daemon } => {
            let (mut c, name) = if *daemon {
                (vswitchd::config::Cli::command(), "vswitchd")
            } else {
                (Cli::command(), "vswitchctl")
            };
            clap_complete::generate(*shell, &mut c, name, &mut std::io::stdout());
            Some(Ok(()))
        }
        Cmd::Man { dir } => Some(write_man_pages(dir)),
        _ => None,
    }
}

/// One page per command and subcommand (`vswitchctl-fdb-show.8`...).
fn write_man_pages(dir: &std::path::Path) -> Result<(), String> {
    use clap::CommandFactory;
    fn walk(cmd: clap::Command, name: String, dir: &std::path::Path) -> Result<(), String> {
        let cmd = cmd.name(name.clone());
        let path = dir.join(format!("{name}.8"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section("8")
            .render(&mut out)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", path.display());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    walk(vswitchd::config::Cli::command(), "vswitchd".into(), dir)?;
    walk(Cli::command(), "vswitchctl".into(), dir)
}

#[derive(Subcommand, Debug)]
enum PortCmd {
    /// Add a port: NS[=ADDR], created or existing namespace, as at start
    /// (without ADDR: the lowest free host from .11 up).
    Add {
        spec: String,
        /// Port security for this port: only its own MAC and address may
        /// send (default: as the daemon's --port-security).
        #[arg(long, conflicts_with = "no_port_security")]
        port_security: bool,
        /// No port security for this port, whatever --port-security says.
        #[arg(long)]
        no_port_security: bool,
    },
    /// Remove a port: its TAP, MAC entries and NAT flows go; a namespace
    /// vswitchd created is deleted (unless --keep-netns).
    Del { port: String },
}

#[derive(Subcommand, Debug)]
enum PublishCmd {
    /// Front ends, their backends (port, address, connections, packets).
    Show,
    /// Publish a front end, as vswitchd --publish:
    /// `[ADDR:]PORT[/tcp|/udp]=NS:PORT[,NS:PORT...]`. Without ADDR the
    /// front end is the uplink's address (like docker -p); with ADDR a
    /// service address the namespaces reach through the gateway (like a
    /// Kubernetes ClusterIP). New connections go to the backends in turn.
    Add { spec: String },
    /// Withdraw a front end (`[ADDR:]PORT[/tcp|/udp]`); its flows end.
    Del { front: String },
}

#[derive(Subcommand, Debug)]
enum NatCmd {
    /// One line per flow, like conntrack -L: protocol, state, seconds left,
    /// the original direction (as its opener sent it) and the reply
    /// direction (as the answer reaches the gateway), packets each way.
    Show {
        /// Only flows of this protocol.
        #[arg(long, value_parser = ["tcp", "udp", "icmp"])]
        proto: Option<String>,
        /// Only flows of this port (namespace): its own, and those to it as
        /// a published backend.
        #[arg(long, value_name = "NS", conflicts_with = "inside")]
        port: Option<String>,
        /// Only flows of this inside address (like --port, by address).
        #[arg(long, value_name = "ADDR")]
        inside: Option<std::net::Ipv4Addr>,
    },
    /// Remove one flow, by its original direction as nat show lists it:
    /// `nat del tcp 192.168.88.11:51056 10.99.0.1:8080` (for icmp, the
    /// identifier as the source port and 0 as the destination port:
    /// `nat del icmp 192.168.88.11:21216 10.99.0.1:0`).
    Del {
        #[arg(value_parser = ["tcp", "udp", "icmp"])]
        proto: String,
        /// The original source, ADDR:PORT.
        src: std::net::SocketAddrV4,
        /// The original destination, ADDR:PORT.
        dst: std::net::SocketAddrV4,
    },
    /// Remove every flow.
    Flush,
}

#[derive(Subcommand, Debug)]
enum FdbCmd {
    /// List entries (port, MAC, age in seconds or `static`) and table counters.
    Show {
        /// Only the entries of this port.
        #[arg(long, value_name = "NS")]
        port: Option<String>,
    },
    /// Remove learned entries, of one port or all; static entries stay.
    Flush { port: Option<String> },
    /// Add a static entry: MAC always goes to PORT (never ages, never moves).
    Add { mac: MacAddr, port: String },
    /// Remove the entry for MAC (static or learned).
    Del { mac: MacAddr },
}

/// Connects to instance `name`'s control socket, with an error that says
/// what to do.
fn connect(name: &str) -> Result<UnixStream, String> {
    let path = socket_path(name);
    UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            let running = running_instances();
            format!(
                "no vswitchd instance named {name} is running ({}: {e}); {}",
                path.display(),
                if running.is_empty() {
                    "none is running".to_string()
                } else {
                    format!("running: {} (pick one with --name)", running.join(", "))
                }
            )
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied on {}: the control socket is root's (mode 0600, and the daemon accepts only uid 0); run vswitchctl as root",
            path.display()
        ),
        _ => format!("cannot connect to {}: {e}", path.display()),
    })
}

/// The result of one request, or the daemon's error.
fn ask(name: &str, req: &Request) -> Result<serde_json::Value, String> {
    let r = call(name, req)?;
    if !r.ok {
        return Err(r.error.unwrap_or_default());
    }
    Ok(r.result.unwrap_or_default())
}

/// `show`: status, ports and (if any) the overlay, in one picture.
fn show(name: &str, format: &str, json: bool) -> Result<(), String> {
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

/// Instances whose control socket accepts a connection, by name.
fn running_instances() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(vswitchd::control::proto::RUN_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".sock").map(str::to_string))
        .filter(|n| UnixStream::connect(socket_path(n)).is_ok())
        .collect();
    v.sort();
    v
}

/// `list`: each running instance with its subnet, ports and uptime.
fn list(json: bool) -> Result<(), String> {
    let mut rows = Vec::new();
    for name in running_instances() {
        match call(&name, &Request::Status) {
            Ok(r) if r.ok => rows.push((name, r.result.unwrap_or_default())),
            Ok(r) => rows.push((
                name,
                serde_json::json!({ "error": r.error.unwrap_or_default() }),
            )),
            Err(e) => rows.push((name, serde_json::json!({ "error": e }))),
        }
    }
    if json {
        let v: serde_json::Map<String, serde_json::Value> = rows.into_iter().collect();
        println!("{}", serde_json::Value::Object(v));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no vswitchd instance is running");
        return Ok(());
    }
    let rows = rows
        .into_iter()
        .map(
            |(name, st)| match serde_json::from_value::<StatusReply>(st.clone()) {
                Ok(s) => vec![
                    name,
                    s.subnet,
                    s.ports.to_string(),
                    format!("{}s", s.uptime_secs),
                ],
                Err(_) => vec![
                    name,
                    format!("({})", st["error"].as_str().unwrap_or("?")),
                    String::new(),
                    String::new(),
                ],
            },
        )
        .collect();
    print_table(&["NAME", "SUBNET", "PORTS", "UPTIME"], &[2, 3], rows);
    Ok(())
}

fn call(name: &str, req: &Request) -> Result<Reply, String> {
    let path = socket_path(name);
    let mut s = connect(name)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("cannot send to {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("no reply from {}: {e}", path.display()))?;
    serde_json::from_slice(&buf).map_err(|e| format!("bad reply from {}: {e}", path.display()))
}

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("unexpected reply: {e}"))
}

fn print_text(cmd: &Cmd, result: serde_json::Value) -> Result<(), String> {
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

/// Streams a capture to a file or standard output until the daemon ends it
/// (count reached) or the output goes away.
fn capture(name: &str, req: &Request, write: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    if write == "-" && std::io::stdout().is_terminal() {
        return Err(
            "refusing to write pcap to a terminal: use -w FILE, or pipe into tcpdump -r -".into(),
        );
    }
    let mut s = connect(name)?;
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("cannot send to {}: {e}", socket_path(name).display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    let n = s.read(&mut buf).map_err(|e| format!("no reply: {e}"))?;
    if n > 0 && buf[0] == b'{' {
        let mut all = buf[..n].to_vec();
        let _ = s.read_to_end(&mut all);
        let reply: Reply = serde_json::from_slice(&all).map_err(|e| format!("bad reply: {e}"))?;
        return Err(reply.error.unwrap_or_else(|| "capture refused".into()));
    }
    let mut out: Box<dyn Write> = if write == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(write).map_err(|e| format!("cannot create {write}: {e}"))?)
    };
    let mut chunk = &buf[..n];
    loop {
        if chunk.is_empty() {
            break;
        }
        match out.write_all(chunk).and_then(|_| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("cannot write {write}: {e}")),
        }
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("capture stream: {e}"))?;
        chunk = &buf[..n];
    }
    Ok(())
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our
    // output goes away (`vswitchctl fdb show | head -1`) instead of
    // panicking on EPIPE: restore the default action of SIGPIPE.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Some(r) = local_command(&cli.cmd) {
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Show { format } = &cli.cmd {
        return match show(&cli.name, format, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::List = cli.cmd {
        return match list(cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Capture {
        ports,
        uplink,
        gateway,
        count,
        write,
        pcap,
    } = &cli.cmd
    {
        let req = Request::Capture {
            ports: ports.clone(),
            uplink: *uplink,
            gateway: *gateway,
            count: *count,
            pcap: *pcap,
        };
        return match capture(&cli.name, &req, write) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Monitor = &cli.cmd {
        return match monitor(&cli.name, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let req = match &cli.cmd {
        Cmd::Status => Request::Status,
        Cmd::Ports => Request::Ports,
        Cmd::Fdb { cmd } => match cmd {
            FdbCmd::Show { .. } => Request::FdbShow,
            FdbCmd::Flush { port } => Request::FdbFlush { port: port.clone() },
            FdbCmd::Add { mac, port } => Request::FdbAdd {
                mac: *mac,
                port: port.clone(),
            },
            FdbCmd::Del { mac } => Request::FdbDel { mac: *mac },
        },
        Cmd::Nat {
            cmd:
                NatCmd::Show {
                    proto,
                    port,
                    inside,
                },
        } => Request::NatShow {
            proto: proto.clone(),
            port: port.clone(),
            inside: *inside,
        },
        Cmd::Nat {
            cmd: NatCmd::Del { proto, src, dst },
        } => Request::NatDel {
            proto: proto.clone(),
            src: *src,
            dst: *dst,
        },
        Cmd::Nat { cmd: NatCmd::Flush } => Request::NatFlush,
        Cmd::Publish { cmd } => match cmd {
            PublishCmd::Show => Request::PublishShow,
            PublishCmd::Add { spec } => Request::PublishAdd { spec: spec.clone() },
            PublishCmd::Del { front } => Request::PublishDel {
                front: front.clone(),
            },
        },
        Cmd::Routes => Request::Routes,
        Cmd::Capture { .. } | Cmd::List | Cmd::Show { .. } | Cmd::Monitor => {
            unreachable!("handled above")
        }
        Cmd::Completions { .. } | Cmd::Man { .. } => unreachable!("handled above"),
        Cmd::Trace {
            port,
            uplink,
            frame,
        } => Request::Trace {
            port: port.clone().unwrap_or_default(),
            uplink: *uplink,
            frame: frame.join(" "),
        },
        Cmd::Port {
            cmd:
                PortCmd::Add {
                    spec,
                    port_security,
                    no_port_security,
                },
        } => Request::PortAdd {
            spec: spec.clone(),
            security: match (port_security, no_port_security) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        },
        Cmd::Port {
            cmd: PortCmd::Del { port },
        } => Request::PortDel { port: port.clone() },
        Cmd::Neigh => Request::Neigh,
        Cmd::Overlay => Request::Overlay,
        Cmd::LogLevel { level } => Request::LogLevel {
            level: level.clone(),
        },
    };
    let reply = match call(&cli.name, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vswitchctl: error: {e}");
            return ExitCode::from(1);
        }
    };
    if !reply.ok {
        eprintln!(
            "vswitchctl: error: {}",
            reply
                .error
                .as_deref()
                .unwrap_or("the daemon refused the request")
        );
        return ExitCode::from(1);
    }
    let result = reply.result.unwrap_or(serde_json::Value::Null);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&result).expect("json"));
        return ExitCode::SUCCESS;
    }
    match print_text(&cli.cmd, result) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchctl: error: {e}");
            ExitCode::from(1)
        }
    }
}
