//! One namespace must not hurt the others (a NAT flood, bare and
//! bad-checksum ACKs, blind RSTs, fragment floods, TTL=1 floods), and
//! nothing Linux would drop leaves by the uplink. Root tests.

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
    // (Not all 6000 reach vswitchd: the TAP's queue overflows in the
    // namespace's kernel, more so on a loaded machine; the flood is sent
    // again, up to three times, until enough did.)
    let mut st = serde_json::Value::Null;
    for _ in 0..3 {
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
        st = d.ctl_json(&["status"]);
        if st["gateway_port"]["nat"]["refused_share"].as_u64().unwrap() >= 1000 {
            break;
        }
    }
    let nat = &st["gateway_port"]["nat"];
    assert!(nat["flows"].as_u64().unwrap() <= 501, "{nat}");
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
    // And a UDP exchange (an echo server on the wan host), within 2 s.
    let _echo = Background::start(
        &wan.ns,
        &[
            "python3",
            "-u",
            "-c",
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('10.99.0.1',7007))\n\
             print('ready')\n\
             while True:\n    d,a=s.recvfrom(100)\n    s.sendto(d,a)\n",
        ],
        "ready",
    );
    let t2 = Instant::now();
    let udp = ns_exec(
        &ns.0[1],
        &[
            "python3",
            "-c",
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.settimeout(2)\n\
             s.sendto(b'hello',('10.99.0.1',7007))\n\
             print(s.recvfrom(100)[0].decode())\n",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&udp.stdout).trim(),
        "hello",
        "{udp:?}"
    );
    assert!(
        t2.elapsed() < Duration::from_secs(2),
        "UDP took {:?}",
        t2.elapsed()
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

/// At least `min` gateway drops counted as `name`.
fn assert_drop(d: &Daemon, name: &str, min: u64) {
    let n = gw_drop(d, name);
    assert!(n >= min, "{n} {name} drops: {}", d.ctl_json(&["status"]));
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
        .find(|f| f["original"]["dst"] == "10.99.0.1" && f["original"]["dport"] == 9000)
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
        .find(|f| f["original"]["dst"] == "10.99.0.1" && f["original"]["dport"] == 9000)
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
            .find(|f| f["original"]["dst"] == "10.99.0.1" && f["original"]["dport"] == 8080)
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

/// Raw frames from a namespace to the gateway (its MAC from `status`).
mod raw {
    use std::net::Ipv4Addr;
    use vswitchd::wire::MacAddr;
    use vswitchd::wire::build::{self, Ipv4};

    /// A wan host, vswitchd with `ns` and that uplink (checked with a
    /// ping), the gateway's MAC and the first port's.
    pub fn rig(ns: &super::Namespaces) -> (super::WanHost, super::Daemon, MacAddr, MacAddr) {
        let wan = super::WanHost::new();
        let d = super::start_with_uplink(ns, &wan, &[]);
        assert!(super::ping(&ns.0[0], super::WAN_HOST), "{}", d.log());
        let gw = gw_mac(&d);
        let me = d.mac_of(&ns.0[0]).parse().unwrap();
        (wan, d, gw, me)
    }

    pub fn gw_mac(d: &super::Daemon) -> MacAddr {
        d.ctl_json(&["status"])["gateway_port"]["mac"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// An IPv4 frame from `src_mac`/`src` to `dst` through the gateway.
    pub fn ip(
        gw: MacAddr,
        src_mac: MacAddr,
        src: &str,
        dst: &str,
        proto: u8,
        ttl: u8,
        l4: &[u8],
    ) -> Vec<u8> {
        let ip = Ipv4 {
            src: src.parse::<Ipv4Addr>().unwrap(),
            dst: dst.parse::<Ipv4Addr>().unwrap(),
            proto,
            ttl,
            id: 99,
            dont_frag: false,
        };
        build::ipv4_frame(gw, src_mac, ip, l4)
    }

    /// A UDP header and payload (checksum filled by `ip`).
    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut l4 = vec![0u8; 8];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(payload);
        l4
    }

    /// A bare TCP ACK (no SYN ever sent for it).
    pub fn ack(sport: u16, dport: u16) -> Vec<u8> {
        let mut l4 = vec![0u8; 20];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4[4..8].copy_from_slice(&7_000u32.to_be_bytes());
        l4[8..12].copy_from_slice(&9_000u32.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = 0x10;
        l4[14..16].copy_from_slice(&64_000u16.to_be_bytes());
        l4
    }
}

/// Bare ACKs (never a SYN) are only picked up for a short while, never
/// ESTABLISHED for hours; ACKs with a bad checksum open no flow at all.
#[test]
fn bare_and_bad_checksum_acks_create_no_long_lived_flow() {
    if !root_or_skip("bare_and_bad_checksum_acks_create_no_long_lived_flow") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let (_wan, d, gw, me) = raw::rig(&ns);
    let acks: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            raw::ip(
                gw,
                me,
                "192.168.88.11",
                WAN_HOST,
                6,
                64,
                &raw::ack(30_000 + i, 80),
            )
        })
        .collect();
    assert_eq!(send_frames(&ns.0[0], "eth0", &acks, 50), 200);
    let mut bad: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            raw::ip(
                gw,
                me,
                "192.168.88.11",
                WAN_HOST,
                6,
                64,
                &raw::ack(40_000 + i, 80),
            )
        })
        .collect();
    for f in &mut bad {
        f[14 + 20 + 16] ^= 0x55; // the TCP checksum
    }
    assert_eq!(send_frames(&ns.0[0], "eth0", &bad, 50), 100);
    let flows = || {
        let v = d.ctl_json(&["nat", "show"]);
        v["flows"].as_array().unwrap().clone()
    };
    assert!(
        wait_until(Duration::from_secs(3), || flows()
            .iter()
            .filter(|f| f["proto"] == "tcp")
            .count()
            >= 150),
        "{:?}",
        flows().len()
    );
    let tcp: Vec<serde_json::Value> = flows()
        .into_iter()
        .filter(|f| f["proto"] == "tcp")
        .collect();
    // Only the 200 good ones, none ESTABLISHED, none for more than 30 s.
    assert!(tcp.len() <= 200, "{} TCP flows", tcp.len());
    for f in &tcp {
        // Picked up loosely, or closed by the wan host's RST answer.
        assert!(f["state"] == "PICKED_UP" || f["state"] == "CLOSE", "{f}");
        assert!(f["expires_in_secs"].as_u64().unwrap() <= 30, "{f}");
        let port = f["original"]["sport"].as_u64().unwrap() as u16;
        assert!(
            (30_000..30_200).contains(&port),
            "a bad-checksum ACK opened {f}"
        );
    }
    assert_drop(&d, "nat_bad_checksum", 90);
    d.stop();
}

/// What Linux drops never leaves by the uplink: sources that are the
/// gateway's own or the subnet's broadcast, destinations in 0/8, 127/8,
/// 240/4, source-routed (LSRR) packets. A marker that may leave shows the
/// capture saw everything before it.
#[test]
fn martians_and_source_routes_from_the_lan_never_reach_the_uplink() {
    if !root_or_skip("martians_and_source_routes_from_the_lan_never_reach_the_uplink") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let (wan, d, gw, me) = raw::rig(&ns);
    let u = raw::udp(5000, 9, b"martian");
    let mut frames = vec![
        raw::ip(gw, me, "192.168.88.1", WAN_HOST, 17, 64, &u),
        raw::ip(gw, me, "192.168.88.255", WAN_HOST, 17, 64, &u),
        raw::ip(gw, me, "192.168.88.11", "127.0.0.1", 17, 64, &u),
        raw::ip(gw, me, "192.168.88.11", "240.0.0.1", 17, 64, &u),
        raw::ip(gw, me, "192.168.88.11", "0.1.2.3", 17, 64, &u),
    ];
    // LSRR (option 0x83) via the wan host: header grows by 8 bytes.
    let mut lsrr = raw::ip(gw, me, "192.168.88.11", WAN_HOST, 17, 64, &u);
    let opt = [0x83u8, 7, 4, 10, 99, 0, 1, 0];
    lsrr.splice(34..34, opt);
    lsrr[14] = 0x47;
    let total = (lsrr.len() - 14) as u16;
    lsrr[16..18].copy_from_slice(&total.to_be_bytes());
    vswitchd::wire::ipv4::fill_ip_checksum(&mut lsrr[14..], 28);
    frames.push(lsrr);
    let mut cap = Capture::start(&wan.ns, "eth0");
    assert_eq!(send_frames(&ns.0[0], "eth0", &frames, 0), frames.len());
    // The marker: a datagram that may leave, sent after them.
    let marker = raw::ip(
        gw,
        me,
        "192.168.88.11",
        WAN_HOST,
        17,
        64,
        &raw::udp(5001, 4242, b"marker"),
    );
    assert_eq!(send_frames(&ns.0[0], "eth0", &[marker], 0), 1);
    assert!(
        cap.wait_for(".4242:", Duration::from_secs(5)),
        "{:?}",
        cap.seen
    );
    let leaked: Vec<&String> = cap
        .seen
        .iter()
        .filter(|l| {
            l.contains("127.0.0.1")
                || l.contains("240.0.0.1")
                || l.contains("0.1.2.3")
                || l.contains(".5000 >")
                || l.contains("LSRR")
        })
        .collect();
    assert!(leaked.is_empty(), "on the uplink: {leaked:?}");
    assert_drop(&d, "martian_source", 2);
    assert_drop(&d, "martian_destination", 3);
    assert_drop(&d, "source_route", 1);
    d.stop();
}

/// A TTL=1 flood from one namespace does not use up another's Time
/// Exceeded answers (per-destination buckets).
#[test]
fn a_ttl_flood_from_one_port_leaves_the_others_their_time_exceeded() {
    if !root_or_skip("a_ttl_flood_from_one_port_leaves_the_others_their_time_exceeded") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let (_wan, d, gw, me) = raw::rig(&ns);
    let flood: Vec<Vec<u8>> = (0..3000u16)
        .map(|i| {
            raw::ip(
                gw,
                me,
                "192.168.88.11",
                WAN_HOST,
                17,
                1,
                &raw::udp(20_000 + i, 33434, b"x"),
            )
        })
        .collect();
    let flooder = {
        let ns = ns.0[0].clone();
        std::thread::spawn(move || {
            let mut n = 0;
            for _ in 0..3 {
                n += send_frames(&ns, "eth0", &flood, 100);
            }
            n
        })
    };
    let out = ns_exec(
        &ns.0[1],
        &[
            "ping", "-n", "-t", "1", "-c", "10", "-i", "0.1", "-W", "1", WAN_HOST,
        ],
    );
    let sent = flooder.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let answered = text
        .lines()
        .filter(|l| l.contains("Time to live exceeded"))
        .count();
    assert!(sent >= 3000, "the flood sent only {sent}");
    assert!(
        answered >= 9,
        "{answered} of 10 Time Exceeded during the flood:\n{text}"
    );
    assert_drop(&d, "ttl_exceeded", 1000);
    d.stop();
}
