//! UDP between two namespaces through real TAPs, and from a namespace
//! through the NAT out of a real uplink (an `AF_PACKET` socket), where the
//! switch writes runs of datagrams as super-frames (`wire::coalesce`):
//! every datagram that arrives is intact, they arrive in the order they
//! were sent, and the counters show runs were written. Root test.

mod common;

use common::*;

/// Receives until the end marker (or 5 s of silence) and prints
/// `count in_order corrupt`.
const RECEIVER: &str = r#"
import socket, struct, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
s.bind((addr, 7000))
s.settimeout(5)
print("ready", flush=True)
count = corrupt = 0
last = -1
in_order = True
while True:
    try:
        d = s.recv(65535)
    except socket.timeout:
        break
    if d == b"end":
        break
    seq, = struct.unpack("!I", d[:4])
    if d[4:] != bytes([seq % 251]) * (len(d) - 4) or len(d) != 4 + [60, 60, 60, 1400, 0, 60, 7][seq % 7]:
        corrupt += 1
    if seq <= last:
        in_order = False
    last = seq
    count += 1
print(count, in_order, corrupt, flush=True)
"#;

/// Sends N datagrams in bursts (of 200, or the third argument; sizes cycle
/// so runs end and start), then the end marker.
const SENDER: &str = r#"
import socket, struct, sys, time
n, addr = int(sys.argv[1]), sys.argv[2]
burst = int(sys.argv[3]) if len(sys.argv) > 3 else 200
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((addr, 7000))
for seq in range(n):
    size = [60, 60, 60, 1400, 0, 60, 7][seq % 7]
    s.send(struct.pack("!I", seq) + bytes([seq % 251]) * size)
    if seq % burst == burst - 1:
        time.sleep(0.002)
time.sleep(0.2)
for _ in range(3):
    s.send(b"end")
"#;

/// Sends 20,000 datagrams from the first namespace to the second through
/// a daemon started with `args`, over IPv4 or IPv6 (the switch carries
/// IPv6 between ports at layer 2); returns (received, the receiving port's
/// tx_coalesced, its tx_super_frames).
fn send_through(args: &[&str], v6: bool) -> (usize, u64, u64) {
    let ns = Namespaces::fresh(2);
    let csv = ns.csv();
    let mut all = vec!["--ports", &csv];
    all.extend_from_slice(args);
    let d = Daemon::start(&all);
    assert!(ping(&ns.0[0], "192.168.88.12"));
    let to = if v6 { "fd00:88::12" } else { "192.168.88.12" };
    if v6 {
        for (n, a) in [(&ns.0[0], "fd00:88::11/64"), (&ns.0[1], "fd00:88::12/64")] {
            run_ok("ip", &["-n", n, "addr", "add", a, "dev", "eth0", "nodad"]);
        }
        let out = ns_exec(&ns.0[0], &["ping", "-c", "1", "-W", "2", to]);
        assert!(out.status.success(), "no IPv6 path: {out:?}");
    }
    let n = 20_000;
    let f = python_pair(
        &ns.0[1],
        RECEIVER,
        &[to],
        &ns.0[0],
        SENDER,
        &[&n.to_string(), to],
    );
    let (count, in_order, corrupt): (usize, &str, usize) =
        (f[0].parse().unwrap(), &f[1], f[2].parse().unwrap());
    eprintln!("{args:?}: received {count} of {n}");
    assert_eq!(corrupt, 0, "datagrams changed on the way");
    assert_eq!(in_order, "True", "datagrams reordered");
    // Nothing is lost on an idle machine; a loaded one may overflow the
    // sender's TAP queue now and then, never more than a few bursts.
    assert!(count >= n * 9 / 10, "only {count} of {n} arrived");
    let port = d.port(&ns.0[1]);
    eprintln!("port: {port}");
    let get = |k: &str| port[k].as_u64().unwrap();
    (count, get("tx_coalesced"), get("tx_super_frames"))
}

/// The sender's datagrams to the wan host, through the NAT and out of the
/// uplink, with `args`; returns the uplink's status. With `software`, the
/// uplink veth has no checksum or UDP segmentation offload, so the host's
/// kernel cuts each run apart and fills in every checksum before the wan
/// host (which then checks them) sees it; else the veth passes runs whole.
fn send_to_wan(args: &[&str], software: bool) -> serde_json::Value {
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    if software {
        run_ok(
            "ethtool",
            &["-K", &wan.uplink, "tx", "off", "tx-udp-segmentation", "off"],
        );
    }
    let d = start_with_uplink(&ns, &wan, args);
    assert!(ping(&ns.0[0], WAN_HOST), "no path to the wan host");
    let n = 20_000;
    let f = python_pair(
        &wan.ns,
        RECEIVER,
        &[WAN_HOST],
        &ns.0[0],
        SENDER,
        // Bursts of 50: the sender's TAP queue (1000 frames) must not
        // overflow while two such tests share two CPUs; what is lost there
        // never reaches the switch.
        &[&n.to_string(), WAN_HOST, "50"],
    );
    let (count, in_order, corrupt): (usize, &str, usize) =
        (f[0].parse().unwrap(), &f[1], f[2].parse().unwrap());
    let up = d.ctl_json(&["status"])["gateway_port"]["uplink"].clone();
    eprintln!("{args:?}: received {count} of {n} on the wan; uplink: {up}");
    eprintln!("sender's port: {}", d.port(&ns.0[0]));
    assert_eq!(corrupt, 0, "datagrams changed on the way");
    assert_eq!(in_order, "True", "datagrams reordered");
    assert!(count >= n * 9 / 10, "only {count} of {n} arrived");
    // Every datagram sent is counted once, alone or in a run: no fewer
    // than arrived, no more than the switch read from the sender.
    let sent = up["tx_packets"].as_u64().unwrap();
    let read = d.port(&ns.0[0])["rx_packets"].as_u64().unwrap();
    assert!(
        sent >= count as u64 && sent <= read,
        "the uplink counted {sent} sent: {count} arrived, {read} read"
    );
    up
}

#[test]
fn udp_through_the_nat_arrives_intact_and_in_order_and_runs_leave_whole() {
    if !root_or_skip("udp_through_the_nat_arrives_intact_and_in_order_and_runs_leave_whole") {
        return;
    }
    for software in [false, true] {
        runs_leave_the_uplink_whole(software);
    }
}

fn runs_leave_the_uplink_whole(software: bool) {
    let up = send_to_wan(&[], software);
    let (coalesced, supers) = (
        up["tx_coalesced"].as_u64().unwrap(),
        up["tx_super_frames"].as_u64().unwrap(),
    );
    assert!(
        supers > 0 && coalesced >= 2 * supers,
        "no run left the uplink whole: {up}"
    );
    assert_eq!(up["drops"].get("bad_offload"), None, "refused: {up}");
}

#[test]
fn no_udp_coalesce_sends_every_datagram_alone_to_the_uplink() {
    if !root_or_skip("no_udp_coalesce_sends_every_datagram_alone_to_the_uplink") {
        return;
    }
    let up = send_to_wan(&["--no-udp-coalesce"], false);
    assert_eq!(
        (up["tx_coalesced"].as_u64(), up["tx_super_frames"].as_u64()),
        (Some(0), Some(0))
    );
}

/// Runs written whole: some super-frames, each of at least two datagrams.
fn runs_written_whole(v6: bool) {
    let (_, coalesced, supers) = send_through(&[], v6);
    assert!(
        supers > 0 && coalesced >= 2 * supers,
        "no run was written whole"
    );
}

#[test]
fn udp_datagrams_arrive_intact_and_in_order_and_runs_are_written_whole() {
    if root_or_skip("udp_datagrams_arrive_intact_and_in_order_and_runs_are_written_whole") {
        runs_written_whole(false);
    }
}

#[test]
fn udp_over_ipv6_arrives_intact_and_in_order_and_runs_are_written_whole() {
    if root_or_skip("udp_over_ipv6_arrives_intact_and_in_order_and_runs_are_written_whole") {
        runs_written_whole(true);
    }
}

#[test]
fn no_udp_coalesce_writes_every_datagram_alone() {
    if !root_or_skip("no_udp_coalesce_writes_every_datagram_alone") {
        return;
    }
    let (_, coalesced, supers) = send_through(&["--no-udp-coalesce"], false);
    assert_eq!((coalesced, supers), (0, 0));
}
