//! One namespace must not hurt the others: a NAT flood from one port
//! leaves the others able to open flows at once. Root tests.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_nat_flood_from_one_port_leaves_the_others_their_flows() {
    if !root_or_skip("a_nat_flood_from_one_port_leaves_the_others_their_flows") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &["--nat-max", "2000"]);
    assert!(ping(&ns.0[1], WAN_HOST), "{}", d.log());
    // ns0 sends 6000 datagrams to distinct ports: far over its share
    // (a quarter of 2000) and over the whole table.
    let flood = ns_exec(
        &ns.0[0],
        &[
            "python3",
            "-c",
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             for p in range(20000,26000):\n    s.sendto(b'x',('10.99.0.1',p))\n",
        ],
    );
    assert!(flood.status.success(), "{flood:?}");
    let st = d.ctl_json(&["status"]);
    let nat = &st["gateway_port"]["nat"];
    assert!(nat["flows"].as_u64().unwrap() <= 501, "{nat}");
    // (Not all 6000 reach vswitchd: the TAP's queue overflows in the
    // namespace's kernel; enough do to pass the share many times over.)
    assert!(nat["refused_share"].as_u64().unwrap() >= 1000, "{nat}");
    // The other namespace opens a ping flow and a TCP connection at once.
    let t0 = Instant::now();
    assert!(ping(&ns.0[1], WAN_HOST));
    let dir = TempDir::new();
    std::fs::write(dir.0.join("f"), b"hello").unwrap();
    let _srv = http_server(&wan.ns, WAN_HOST, dir.0.to_str().unwrap());
    let t1 = Instant::now();
    let got = ns_exec(
        &ns.0[1],
        &["curl", "-s", "--max-time", "5", "http://10.99.0.1:8080/f"],
    );
    assert_eq!(got.stdout, b"hello", "{got:?}");
    assert!(
        t1.elapsed() + (t1 - t0).min(Duration::from_secs(2)) < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
    assert!(d.log().contains("holds its whole share"), "{}", d.log());
}

/// A server in the wan namespace that pushes a line every 100 ms to the
/// one client it accepts, until the file `argv[1]` exists: then it closes
/// with SO_LINGER 0, a real reset (its exact next sequence number).
const PUSH_SERVER: &str = r#"
import os, socket, struct, sys, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('10.99.0.1', 9000))
l.listen(1)
print('listening', flush=True)
c, peer = l.accept()
i = 0
while not os.path.exists(sys.argv[1]):
    c.sendall(b'line %d\n' % i)
    i += 1
    time.sleep(0.1)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
c.close()
print('reset sent', flush=True)
time.sleep(60)
"#;

/// The client: prints each line it gets, then RESET, EOF or TIMEOUT.
const PUSH_CLIENT: &str = r#"
import socket
s = socket.create_connection(('10.99.0.1', 9000), timeout=10)
print('connected', flush=True)
f = s.makefile('rb')
try:
    while True:
        l = f.readline()
        if not l:
            print('EOF', flush=True)
            break
        print('got', l.decode().strip(), flush=True)
except ConnectionResetError:
    print('RESET', flush=True)
except socket.timeout:
    print('TIMEOUT', flush=True)
"#;

/// A blind attacker beside the server: sniffs one of its data segments
/// (for the translated port and the sequence number), then sends an RST
/// and a FIN from the server's address and port half the sequence space
/// away (as far out of the window as there is), with valid checksums.
const SPOOF_OUT_OF_WINDOW: &str = r#"
import socket, struct, time
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
# ETH_P_ALL: a socket for one protocol does not see what the host sends.
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
cap.bind(('eth0', 0))
cap.settimeout(10)
end = time.time() + 10
while True:
    assert time.time() < end, 'no data segment from the server seen'
    f = cap.recv(65535)
    if f[12:14] != b'\x08\x00':
        continue
    ip = f[14:]
    ihl = (ip[0] & 15) * 4
    tot = struct.unpack('!H', ip[2:4])[0]
    tcp = ip[ihl:]
    if ip[9] != 6 or ip[12:16] != bytes([10, 99, 0, 1]):
        continue
    sport, dport, seq, ack = struct.unpack('!HHII', tcp[:12])
    if sport == 9000 and tot - ihl - (tcp[12] >> 4) * 4 > 0:
        break
src, dst = bytes([10, 99, 0, 1]), bytes([10, 99, 0, 2])
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for flags in (0x04, 0x11):
    t = struct.pack('!HHIIBBHHH', 9000, dport, (seq + 0x80000000) & 0xffffffff, ack, 5 << 4, flags, 512, 0, 0)
    c = csum(src + dst + struct.pack('!BBH', 0, 6, len(t)) + t)
    t = t[:16] + struct.pack('!H', c) + t[18:]
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(t), 0x4242, 0x4000, 64, 6, 0, src, dst)
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    raw.sendto(h + t, ('10.99.0.2', 0))
print('spoofed', dport, seq, flush=True)
"#;

/// Lines the client printed within `d`.
fn lines_within(b: &Background, d: Duration) -> Vec<String> {
    let end = Instant::now() + d;
    let mut v = Vec::new();
    while let Ok(l) = b
        .lines
        .recv_timeout(end.saturating_duration_since(Instant::now()))
    {
        v.push(l);
    }
    v
}

fn gw_drop(d: &Daemon, name: &str) -> u64 {
    d.ctl_json(&["status"])["gateway_port"]["drops"][name]
        .as_u64()
        .unwrap_or(0)
}

/// A server push through the NAT survives a blind RST and FIN spoofed from
/// the wan side outside the window: both dropped and counted
/// (`nat_tcp_out_of_window`), the flow still ESTABLISHED, the client still
/// getting lines. The server's own reset (in the window) then ends it.
#[test]
fn a_blind_reset_from_the_wan_side_does_not_end_a_connection() {
    if !root_or_skip("a_blind_reset_from_the_wan_side_does_not_end_a_connection") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    let dir = TempDir::new();
    let flag = dir.0.join("reset");
    let flag_s = flag.to_str().unwrap();
    let _server = Background::start(
        &wan.ns,
        &["python3", "-u", "-c", PUSH_SERVER, flag_s],
        "listening",
    );
    let client = Background::start(&ns.0[0], &["python3", "-u", "-c", PUSH_CLIENT], "connected");
    let got = lines_within(&client, Duration::from_millis(500));
    assert!(got.iter().any(|l| l.starts_with("got")), "{got:?}");
    assert_eq!(gw_drop(&d, "nat_tcp_out_of_window"), 0);

    let spoof = ns_exec(&wan.ns, &["python3", "-c", SPOOF_OUT_OF_WINDOW]);
    assert!(spoof.status.success(), "{spoof:?}");
    assert!(
        wait_until(Duration::from_secs(5), || gw_drop(
            &d,
            "nat_tcp_out_of_window"
        ) >= 2),
        "{}",
        d.ctl_json(&["status"])["gateway_port"]
    );
    // The client goes on: lines keep coming, no reset, no end.
    let after = lines_within(&client, Duration::from_millis(1500));
    assert!(
        after.iter().filter(|l| l.starts_with("got")).count() >= 5,
        "{after:?}"
    );
    assert!(after.iter().all(|l| l.starts_with("got")), "{after:?}");
    let flows = d.ctl_json(&["nat", "show"]);
    let flow = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["remote"] == "10.99.0.1:9000")
        .cloned()
        .unwrap_or_else(|| panic!("{flows}"));
    assert_eq!(flow["state"], "ESTABLISHED", "{flow}");
    let spoofed = gw_drop(&d, "nat_tcp_out_of_window");

    // The server's own reset: exact, in the window. It ends the connection
    // and closes the flow.
    std::fs::write(&flag, b"").unwrap();
    let end = lines_within(&client, Duration::from_secs(3));
    assert!(end.iter().any(|l| l == "RESET"), "{end:?}");
    let flows = d.ctl_json(&["nat", "show"]);
    let state = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["remote"] == "10.99.0.1:9000")
        .map(|f| f["state"].clone());
    assert_eq!(state, Some("CLOSE".into()), "{flows}");
    assert_eq!(gw_drop(&d, "nat_tcp_out_of_window"), spoofed);

    // Honest bulk traffic never trips the check: a 20 MB download (scaled
    // windows, offloaded super-frames) arrives whole and its FINs close
    // the flow (TIME_WAIT), with no segment refused.
    let files = TempDir::new();
    write_pattern(&files.0.join("big"), 20 << 20);
    let _http = http_server(&wan.ns, WAN_HOST, files.0.to_str().unwrap());
    let got = ns_exec(
        &ns.0[0],
        &[
            "curl",
            "-s",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "http://10.99.0.1:8080/big",
        ],
    );
    assert_eq!(stdout(&got), (20 << 20).to_string(), "{got:?}");
    let http_state = || {
        d.ctl_json(&["nat", "show"])["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["remote"] == "10.99.0.1:8080")
            .map(|f| f["state"].as_str().unwrap_or("").to_string())
    };
    assert!(
        wait_until(Duration::from_secs(5), || http_state().as_deref()
            == Some("TIME_WAIT")),
        "{:?}",
        http_state()
    );
    assert_eq!(gw_drop(&d, "nat_tcp_out_of_window"), spoofed);
    d.stop();
}

/// One namespace floods incomplete first fragments (UDP, distinct IP ids,
/// from a raw socket, toward an address the wan host drops without
/// reassembling); meanwhile the other namespace's fragmented pings (3000
/// bytes, three fragments each way) all get their replies: the flood only
/// churns its own fragment records.
#[test]
fn a_fragment_flood_from_one_port_leaves_the_others_their_fragments() {
    if !root_or_skip("a_fragment_flood_from_one_port_leaves_the_others_their_fragments") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    assert!(ping(&ns.0[1], WAN_HOST), "{}", d.log());
    let flood = Background::start(
        &ns.0[0],
        &[
            "python3",
            "-u",
            "-c",
            "import socket, struct, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n\
             dst = socket.inet_aton('198.51.100.1')\n\
             end = time.time() + 8\n\
             i = 0\n\
             while time.time() < end:\n    \
                 i += 1\n    \
                 udp = struct.pack('!HHHH', 40000, 9999, 1480, 0) + b'x' * 64\n    \
                 ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i % 65535 + 1, 0x2000, 64, 17, 0, bytes(4), dst)\n    \
                 s.sendto(ip + udp, ('198.51.100.1', 0))\n    \
                 if i % 5 == 0:\n        time.sleep(0.001)\n    \
                 if i == 2000:\n        print('flooding', flush=True)\n\
             print('sent', i, flush=True)\n",
        ],
        "flooding",
    );
    let nat = || d.ctl_json(&["status"])["gateway_port"]["nat"].clone();
    assert!(
        wait_until(Duration::from_secs(10), || nat()["frag_evicted_source_cap"]
            .as_u64()
            .unwrap_or(0)
            > 0),
        "{}",
        nat()
    );
    let out = ns_exec(
        &ns.0[1],
        &[
            "ping", "-s", "3000", "-c", "5", "-i", "0.2", "-w", "10", WAN_HOST,
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", nat());
    assert!(text.contains("5 received"), "{text}");
    let n = nat();
    assert!(n["frag_evicted_source_cap"].as_u64().unwrap() > 0, "{n}");
    assert_eq!(n["frag_evicted_table_full"].as_u64(), Some(0), "{n}");
    assert_eq!(gw_drop(&d, "nat_fragment_no_flow"), 0);
    drop(flood);
    d.stop();
}
