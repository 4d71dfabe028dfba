//! The command line of `vswitchctl` (clap): the global options and every
//! command and subcommand; their doc comments are the --help text.

use clap::{Parser, Subcommand};
use vswitchd::wire::MacAddr;

/// Inspect and steer a running vswitchd instance.
#[derive(Parser, Debug)]
#[command(name = "vswitchctl", version, infer_subcommands = true)]
pub(super) struct Cli {
    /// Instance to talk to (its socket is /run/vswitchd/NAME.sock).
    #[arg(long, default_value = "vsw0", global = true)]
    pub(super) name: String,
    /// Print the daemon's reply as JSON, for scripts.
    #[arg(long, global = true)]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(super) enum Cmd {
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
        /// The frame, as words (see above): e.g. `ip dst=10.99.0.1 udp
        /// dport=53`. Needs --port or --uplink.
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

#[derive(Subcommand, Debug)]
pub(super) enum PortCmd {
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
pub(super) enum PublishCmd {
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
pub(super) enum NatCmd {
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
pub(super) enum FdbCmd {
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
