//! The `vswitchd` command line: the clap definition of every option, with
//! its help text and default. Reading a `--config` file is in
//! [`super::file`], checking the values in [`super::validate`].

use clap::Parser;

/// vswitchd: a userspace L2 switch for network namespaces.
///
/// Creates (or uses) one network namespace per port, puts a TAP interface in
/// each with an address from the subnet and a default route via the gateway,
/// and switches Ethernet frames between them with a learning MAC table, as a
/// Linux bridge with a veth pair per namespace would. Inspect and steer the
/// running switch with `vswitchctl`. Must run as root.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "vswitchd",
    version,
    after_help = "Example: vswitchd --ports ns01,ns02\n  ns01 gets 192.168.88.11/24, ns02 192.168.88.12/24, both `default via 192.168.88.1`;\n  then: ip netns exec ns01 ping 192.168.88.12"
)]
pub struct Cli {
    /// Ports, comma separated: NS[=ADDR]. NS is a network namespace name
    /// (created, `ip netns` compatible, if missing; used as it is if it
    /// exists). Without ADDR the n-th port (1-based) gets host 10+n of the
    /// subnet (ns01 -> .11, ns02 -> .12). May be given several times.
    #[arg(long, value_name = "NS[=ADDR],...")]
    pub ports: Vec<String>,

    /// Read settings from a TOML file (see examples/vswitchd.toml); options
    /// given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Instance name; the control socket is /run/vswitchd/NAME.sock.
    #[arg(long, default_value = "vsw0")]
    pub name: String,

    /// Name of the TAP interface created inside each namespace (at most 15 bytes).
    #[arg(long, default_value = "eth0")]
    pub ifname: String,

    /// Subnet the ports' addresses come from.
    #[arg(long, default_value = "192.168.88.0/24")]
    pub subnet: String,

    /// Gateway address: every namespace's default route points at it.
    /// Default: the first host of --subnet (192.168.88.1).
    #[arg(long)]
    pub gateway: Option<String>,

    /// Seconds a learned MAC stays in the table without being seen again.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub aging: u64,

    /// Most entries the MAC table holds. When full, the least recently seen
    /// entry of the port holding the most entries is evicted.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pub fdb_max: usize,

    /// MTU of the TAP interfaces; frames up to MTU+14 bytes (+4 with a VLAN
    /// tag) pass. Default 1500; with the overlay (--vtep), the underlay
    /// interface's MTU minus the 50 bytes VXLAN adds (1450 on a 1500
    /// underlay, 8950 on jumbo frames).
    #[arg(long)]
    pub mtu: Option<u32>,

    /// On exit, keep the namespaces vswitchd created (they are deleted otherwise).
    #[arg(long)]
    pub keep_netns: bool,

    /// After handling traffic, keep polling without sleeping for this many
    /// microseconds (0: always sleep; at most 100000). A frame that arrives
    /// while polling is forwarded without a scheduler wake-up, which on a VM
    /// is most of the added latency: a window longer than the gap between
    /// packets (e.g. 10000 for 5 ms pings) brings ping RTT to the kernel's,
    /// at the cost of CPU while traffic flows. Idle switches sleep.
    #[arg(long, default_value_t = 200, value_name = "USECS")]
    pub busy_poll: u64,

    /// Also keep polling through short, steady gaps between packets: when
    /// 1.5 times the longest of the last 4 gaps fits in MAX_USECS, poll
    /// that long after traffic (pings every 5 ms then cost no wake-up).
    /// One longer gap falls back to --busy-poll. 0 turns it off; at most
    /// 100000. Costs up to a core while such traffic lasts (the default
    /// covers gaps up to 6.6 ms); an idle switch sleeps.
    #[arg(long, default_value_t = 10_000, value_name = "MAX_USECS")]
    pub busy_poll_adaptive: u64,

    /// Datapath threads (1..64). With N > 1 every TAP is a multi-queue
    /// device with N queues: the kernel spreads the namespaces' flows over
    /// them by flow hash, and N-1 worker threads read and write queues
    /// 1..N-1 (the event loop keeps queue 0, the uplink, the overlay and
    /// the control socket). The reads and writes, most of the datapath's
    /// CPU, then run on several cores at once; the switching decisions
    /// (MAC table, NAT, gateway) stay one at a time under one lock.
    /// Flows are spread, not packets: one flow uses one queue.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: u64,

    /// Port security on every port: a port may only send frames with its
    /// own MAC as source and its own IPv4 address as IPv4/ARP sender (or
    /// 0.0.0.0: DHCP, ARP probes); others are dropped (`spoofed_source`),
    /// as OVN's port_security does. Off by default, like a Linux bridge:
    /// a namespace that runs its own bridge, VMs or a router behind its
    /// port sends with other addresses. `port add --port-security` secures
    /// one port.
    #[arg(long)]
    pub port_security: bool,

    /// Open the TAPs without the virtio-net header and offloads: the kernel
    /// then finishes checksums and segments to the MTU before handing frames
    /// over (slower; for comparison and debugging).
    #[arg(long)]
    pub no_offload: bool,

    /// Write each UDP datagram to a namespace's TAP, and to the uplink, on
    /// its own. By default consecutive datagrams of one flow read in one
    /// batch leave in one write, as a UDP segmentation-offload frame the
    /// namespace's kernel cuts back at its UDP layer (Linux 6.2+; sockets
    /// see the same datagrams, tcpdump and netfilter inside the namespace
    /// see one packet per run); runs through the NAT leave the uplink in
    /// one send each, cut apart by the kernel on the way out.
    #[arg(long)]
    pub no_udp_coalesce: bool,

    /// Uplink: an existing Ethernet interface in vswitchd's own namespace (a
    /// NIC, or one end of a veth pair), taken raw and promiscuous. The
    /// gateway is a separate host there, with its own MAC and address.
    #[arg(long, value_name = "IFACE")]
    pub uplink: Option<String>,

    /// The gateway's own address on the uplink's network (ADDRESS/PREFIX, not
    /// the host's address), or `dhcp` to get one from a DHCP server.
    #[arg(long, value_name = "CIDR|dhcp")]
    pub uplink_addr: Option<String>,

    /// Next hop for the default route on the uplink (DHCP's router is used
    /// when `--uplink-addr dhcp` and this is not given).
    #[arg(long, value_name = "IP")]
    pub uplink_gw: Option<String>,

    /// The gateway's MAC on the uplink (default: a stable, locally
    /// administered MAC derived from the instance and interface names).
    #[arg(long, value_name = "MAC")]
    pub uplink_mac: Option<String>,

    /// Most NAT flows. When the table is full, the oldest flow that never
    /// saw a reply makes room (as conntrack's early drop); flows that have
    /// seen traffic both ways are never evicted for a newcomer.
    #[arg(long, default_value_t = 65_536, value_name = "N")]
    pub nat_max: usize,

    /// Most NAT flows one port (one inside address) may hold, so one
    /// namespace cannot take the table from the others. Default: a quarter
    /// of --nat-max.
    #[arg(long, value_name = "N")]
    pub nat_max_per_port: Option<usize>,

    /// Route without address translation (the outside routes the subnet back).
    #[arg(long)]
    pub no_nat: bool,

    /// Publish a port or a service address, load-balanced over namespaces
    /// (repeatable): `[ADDR:]PORT[/tcp|/udp]=NS:PORT[,NS:PORT...]`
    /// (protocol default tcp). Without ADDR the front end is the uplink's
    /// address, like `docker -p` or a NodePort: clients outside keep their
    /// own address, so the backend sees them. With ADDR it is a service
    /// address (like a ClusterIP, outside the subnet) that the namespaces
    /// reach through the gateway. A new connection goes to the next backend
    /// whose port is there (round-robin) and stays with it; a namespace
    /// reaching a front end also gets its source rewritten to the gateway
    /// (hairpin). Example: --publish 8080=ns01:80,ns02:80 --publish
    /// 10.96.0.10:53/udp=ns03:53. See also `vswitchctl publish`.
    #[arg(long, value_name = "SPEC")]
    pub publish: Vec<String>,

    /// External ports for TCP/UDP when a flow's own port is taken.
    #[arg(long, default_value = "1024-65535", value_name = "MIN-MAX")]
    pub nat_ports: String,

    /// Seconds an established TCP flow lives idle (RFC 5382: at least 7440).
    #[arg(long, default_value_t = 7440, value_name = "SECS")]
    pub nat_tcp_timeout: u64,

    /// Seconds for TCP flows opening or closing (SYN, FIN, TIME-WAIT).
    #[arg(long, default_value_t = 240, value_name = "SECS")]
    pub nat_tcp_transitory: u64,

    /// Seconds a UDP flow lives idle (RFC 4787: at least 120).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub nat_udp_timeout: u64,

    /// Seconds an ICMP echo flow lives idle.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub nat_icmp_timeout: u64,

    /// Overlay: this host's underlay address (an address of vswitchd's own
    /// namespace). The VXLAN UDP socket binds there, and other hosts send
    /// to it. Needs --vxlan-peer (static mode) or --etcd (directory mode).
    #[arg(long, value_name = "ADDR")]
    pub vtep: Option<String>,

    /// Overlay, static mode: another host's VTEP address (repeatable).
    /// Broadcast, multicast and unknown unicast are sent to every peer
    /// (head-end replication) and remote MACs are learned from what arrives,
    /// as the Linux vxlan device does with `bridge fdb append
    /// 00:00:00:00:00:00 dev vx0 dst PEER`. Datagrams from other addresses
    /// are dropped.
    #[arg(long = "vxlan-peer", value_name = "ADDR")]
    pub vxlan_peer: Vec<String>,

    /// Overlay, directory mode: etcd endpoints (URL[,URL...], e.g.
    /// http://10.77.0.9:2379). Hosts and ports are kept in etcd under
    /// /vswitchd/NETWORK/: each host sees the others' ports as they come
    /// and go, addresses are unique across hosts, ARP for a remote port is
    /// answered locally, and every host runs the gateway with the same
    /// address and MAC. Needs --vtep; replaces --vxlan-peer.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,

    /// Overlay, directory mode: the network's name in etcd (default: the
    /// instance name, --name). Hosts with the same name form one segment.
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// Overlay: the VXLAN network identifier (1..16777215); frames of other
    /// VNIs are dropped and counted.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub vni: u32,

    /// Overlay: the UDP port VXLAN uses on every host (IANA: 4789).
    #[arg(long, default_value_t = 4789, value_name = "PORT")]
    pub vxlan_port: u16,

    /// DNS: the servers the gateway forwards names it does not know to
    /// (IPv4 addresses, comma-separated). Queries leave through the uplink
    /// from the uplink address. Default: the DNS servers the uplink's DHCP
    /// lease names; without either (or without an uplink) such names fail
    /// at once (SERVFAIL).
    #[arg(long, value_name = "IP[,IP...]", value_delimiter = ',')]
    pub dns_upstream: Vec<String>,

    /// DNS: the domain of the port names (default: the instance name,
    /// --name). The gateway answers A for `NAME` and `NAME.DOMAIN` of every
    /// port and PTR for their addresses; each port namespace gets
    /// /etc/netns/NS/resolv.conf (`nameserver` the gateway, `search
    /// DOMAIN`), which `ip netns exec` puts over /etc/resolv.conf.
    #[arg(long, value_name = "NAME")]
    pub dns_domain: Option<String>,

    /// No DNS server on the gateway, and no resolv.conf files written.
    #[arg(long)]
    pub no_dns: bool,

    /// Serve Prometheus metrics over HTTP on ADDR:PORT (a bare PORT means
    /// 127.0.0.1:PORT). Off by default.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,

    /// Do not sandbox the running daemon (for debugging): keep every
    /// capability, no seccomp filter, no no_new_privs. By default, once
    /// everything is open, vswitchd keeps only CAP_NET_ADMIN and
    /// CAP_SYS_ADMIN and allows only the system calls it uses, on every
    /// thread.
    #[arg(long)]
    pub no_sandbox: bool,

    /// Log level: error, warn, info, debug or trace, or a tracing filter
    /// such as `vswitchd=debug` (anything else is refused); RUST_LOG
    /// overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Put the host on the segment, as br01 does: a TAP named after the
    /// instance in vswitchd's own namespace, a port of the switch, with ADDR
    /// (default: the subnet's last host, 192.168.88.254), so the host's
    /// route to the subnet goes to it and the host reaches the namespaces.
    /// Off by default.
    #[arg(long, value_name = "ADDR", num_args = 0..=1)]
    pub host_port: Option<Option<String>>,
}
