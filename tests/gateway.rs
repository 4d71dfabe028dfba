//! Root tests of the gateway: real namespaces, a 'wan' test host in its own
//! namespace behind a veth pair whose root end is vswitchd's `--uplink`, and
//! real traffic (ping, curl, Python peers, tcpdump, dnsmasq). Traffic only
//! goes to addresses inside the namespaces each test creates.

mod common;

use common::*;
use std::time::Duration;

fn start(ns: &Namespaces, wan: &WanHost, extra: &[&str]) -> Daemon {
    start_with_uplink(ns, wan, extra)
}

#[test]
fn gateway_answers_and_masquerade_hides_the_inside() {
    if !root_or_skip("gateway_answers_and_masquerade_hides_the_inside") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let wan = WanHost::new();
    let d = start(&ns, &wan, &[]);

    assert!(
        ping(&ns.0[0], "192.168.88.1"),
        "gateway does not answer ping"
    );
    assert!(
        ping(&ns.0[1], UPLINK_ADDR),
        "uplink address does not answer from inside"
    );
    assert!(
        ping(&wan.ns, UPLINK_ADDR),
        "uplink address does not answer from the wan"
    );

    let mut cap = Capture::start(&wan.ns, "eth0");
    // Two namespaces ping the wan host with the same ICMP identifier at the
    // same time: both must get every reply.
    let a = std::thread::spawn({
        let n = ns.0[0].clone();
        move || {
            ns_exec(
                &n,
                &[
                    "ping", "-e", "4242", "-c", "10", "-i", "0.05", "-W", "3", WAN_HOST,
                ],
            )
        }
    });
    let b = std::thread::spawn({
        let n = ns.0[1].clone();
        move || {
            ns_exec(
                &n,
                &[
                    "ping", "-e", "4242", "-c", "10", "-i", "0.05", "-W", "3", WAN_HOST,
                ],
            )
        }
    });
    for (who, out) in [("first", a.join().unwrap()), ("second", b.join().unwrap())] {
        let text = stdout(&out);
        assert!(
            text.contains("10 packets transmitted, 10 received"),
            "{who} namespace lost replies:\n{text}"
        );
    }
    // Marker: a UDP datagram to a closed port, sent last.
    let out = ns_exec(
        &ns.0[0],
        &["python3", &netpeer(), "udp-refused", WAN_HOST, "9999"],
    );
    assert!(stdout(&out).contains("ECONNREFUSED"), "{}", stdout(&out));
    assert!(
        cap.wait_for(".9999: UDP", Duration::from_secs(10)),
        "{:?}",
        cap.seen
    );
    let text = cap.seen.join("\n");
    assert!(
        text.contains("10.99.0.2 > 10.99.0.1: ICMP echo request"),
        "{text}"
    );
    assert!(
        !text.contains("192.168.88."),
        "an inside address leaked to the wan:\n{text}"
    );

    // The NAT table shows both echo flows with distinct identifiers.
    let nat = d.ctl_json(&["nat", "show"]);
    let icmp: Vec<&serde_json::Value> = nat["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["proto"] == "icmp" && f["original"]["id"] == 4242)
        .collect();
    assert_eq!(icmp.len(), 2, "{nat}");
    assert_ne!(icmp[0]["reply"]["id"], icmp[1]["reply"]["id"]);
    let text = stdout(&d.ctl(&["nat", "show"]));
    assert!(
        text.contains("dst=10.99.0.2 id=4242") && text.contains("REPLIED"),
        "{text}"
    );

    let routes = stdout(&d.ctl(&["routes"]));
    assert!(routes.contains("default via 10.99.0.1"), "{routes}");
    let neigh = stdout(&d.ctl(&["neigh"]));
    assert!(
        neigh.contains("10.99.0.1") && neigh.contains("REACHABLE"),
        "{neigh}"
    );

    let flushed = d.ctl_json(&["nat", "flush"]);
    assert!(flushed["removed"].as_u64().unwrap() >= 3, "{flushed}");
    assert_eq!(
        d.ctl_json(&["nat", "show"])["flows"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    d.stop();
}

#[test]
fn unsolicited_traffic_from_outside_does_not_get_in() {
    if !root_or_skip("unsolicited_traffic_from_outside_does_not_get_in") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start(&ns, &wan, &[]);
    let mut cap = Capture::start(&ns.0[0], "eth0");
    // The wan host tries the inside directly (via the gateway's uplink MAC,
    // as a route through it would) and the uplink address on a closed port.
    run_ok(
        "ip",
        &[
            "-n",
            &wan.ns,
            "route",
            "add",
            "192.168.88.0/24",
            "via",
            UPLINK_ADDR,
        ],
    );
    let out = ns_exec(
        &wan.ns,
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "192.168.88.11"],
    );
    assert!(
        stdout(&out).contains("2 packets transmitted, 0 received"),
        "the inside answered an outside ping:\n{}",
        stdout(&out)
    );
    // Nothing answers unsolicited UDP to the uplink address: no datagram,
    // and no port-unreachable either (that would tell a scanner we exist).
    let out = ns_exec(
        &wan.ns,
        &[
            "python3",
            &netpeer(),
            "udp-silent",
            UPLINK_ADDR,
            "5353",
            "1",
        ],
    );
    assert!(stdout(&out).contains("silent"), "{}", stdout(&out));
    // Marker from the inside: the gateway's own ping reply.
    assert!(ping(&ns.0[0], "192.168.88.1"));
    assert!(cap.wait_for(
        "192.168.88.1 > 192.168.88.11: ICMP echo reply",
        Duration::from_secs(10)
    ));
    let text = cap.seen.join("\n");
    assert!(
        !text.contains("10.99.0.1"),
        "outside traffic reached the inside:\n{text}"
    );
    let st = d.ctl_json(&["status"]);
    let drops = &st["gateway_port"]["drops"];
    // The datagram to the uplink address matched no flow; the pings to an
    // inside address were not for the gateway at all.
    assert_eq!(drops["nat_no_flow"].as_u64(), Some(1), "{st}");
    assert_eq!(drops["not_for_us"].as_u64(), Some(2), "{st}");
    assert_eq!(st["gateway_port"]["routed_in"].as_u64(), Some(0), "{st}");
    d.stop();
}

#[test]
fn tcp_download_and_concurrent_connections_through_nat() {
    if !root_or_skip("tcp_download_and_concurrent_connections_through_nat") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start(&ns, &wan, &[]);
    let dir = TempDir::new();
    let data: Vec<u8> = {
        let mut r = Rng(0xfeed_beef);
        (0..20_000_000).map(|_| r.next() as u8).collect()
    };
    std::fs::write(dir.0.join("big.bin"), &data).unwrap();
    let dir_s = dir.0.to_string_lossy().into_owned();
    let _http = http_server(&wan.ns, WAN_HOST, &dir_s);
    let got = dir.0.join("got.bin");
    let got_s = got.to_string_lossy().into_owned();
    let out = ns_exec(
        &ns.0[0],
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            &got_s,
            "http://10.99.0.1:8080/big.bin",
        ],
    );
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = std::fs::read(&got).unwrap();
    assert_eq!(received.len(), data.len());
    assert!(received == data, "download differs from the original");

    let _echo = Background::start(
        &wan.ns,
        &["python3", "-u", &netpeer(), "tcp-server", WAN_HOST, "7000"],
        "listening",
    );
    let out = ns_exec(
        &ns.0[0],
        &[
            "python3",
            &netpeer(),
            "tcp-clients",
            WAN_HOST,
            "7000",
            "150",
        ],
    );
    assert!(
        stdout(&out).contains("ok 150"),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop();
}

#[test]
fn udp_echo_fragments_refusal_and_ttl() {
    if !root_or_skip("udp_echo_fragments_refusal_and_ttl") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start(&ns, &wan, &[]);
    let _echo = Background::start(
        &wan.ns,
        &["python3", "-u", &netpeer(), "udp-echo", WAN_HOST, "7007"],
        "listening",
    );
    for size in ["32", "4000"] {
        let out = ns_exec(
            &ns.0[0],
            &["python3", &netpeer(), "udp-probe", WAN_HOST, "7007", size],
        );
        assert!(
            stdout(&out).contains(&format!("echoed {size} True")),
            "UDP {size}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ns_exec(
        &ns.0[0],
        &["python3", &netpeer(), "udp-refused", WAN_HOST, "7008"],
    );
    assert!(stdout(&out).contains("ECONNREFUSED"), "{}", stdout(&out));
    assert!(
        d.ctl_json(&["status"])["gateway_port"]["nat"]["icmp_errors_translated"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // A TTL-1 probe draws Time Exceeded from the gateway.
    let out = ns_exec(
        &ns.0[0],
        &["ping", "-c", "1", "-t", "1", "-W", "2", WAN_HOST],
    );
    let text = stdout(&out);
    assert!(
        text.contains("From 192.168.88.1") && text.contains("Time to live exceeded"),
        "{text}"
    );
    d.stop();
}

#[test]
fn uplink_address_from_dhcp() {
    if !root_or_skip("uplink_address_from_dhcp") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let dir = TempDir::new();
    let _dnsmasq = dnsmasq(&wan, &dir);
    let d = Daemon::start(&[
        "--ports",
        &ns.csv(),
        "--uplink",
        &wan.uplink,
        "--uplink-addr",
        "dhcp",
    ]);
    let addr = |d: &Daemon| {
        d.ctl_json(&["status"])["gateway_port"]["uplink"]["address"]
            .as_str()
            .map(str::to_string)
    };
    // dnsmasq answers at once; smoltcp's client discovers right away: a
    // lease within 5 s is what a user would wait.
    let t0 = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || addr(&d).is_some()),
        "no DHCP lease within 5 s: {}",
        d.log()
    );
    eprintln!("DHCP lease after {:?}", t0.elapsed());
    let a = addr(&d).unwrap();
    assert!(a.starts_with("10.99.0.1") && a.ends_with("/24"), "{a}");
    let last: u8 = a
        .trim_end_matches("/24")
        .rsplit('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=150).contains(&last), "{a}");
    let routes = stdout(&d.ctl(&["routes"]));
    assert!(
        routes.contains("default via 10.99.0.1"),
        "router from DHCP: {routes}"
    );
    assert!(
        ping(&ns.0[0], WAN_HOST),
        "no traffic through the DHCP address"
    );
    assert!(
        d.log().contains("uplink address gained by DHCP"),
        "{}",
        d.log()
    );
    d.stop();
}

#[test]
fn bad_uplink_is_refused_before_anything_is_created() {
    if !root_or_skip("bad_uplink_is_refused_before_anything_is_created") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let out = run(
        VSWITCHD,
        &[
            "--name",
            &unique("r"),
            "--ports",
            &ns.csv(),
            "--uplink",
            "nosuchif0",
            "--uplink-addr",
            "10.99.0.2/24",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("uplink nosuchif0"), "{err}");
    assert!(!netns_exists(&ns.0[0]));
}

/// Serves `path` from the wan host and returns what `curl | sha256sum` saw
/// in namespace `ns`, plus the file's own sha256.
fn download_digest(ns: &str, wan: &WanHost, dir: &TempDir, name: &str) -> (String, String) {
    let dir_s = dir.0.to_string_lossy().into_owned();
    let _http = http_server(&wan.ns, WAN_HOST, &dir_s);
    let want = run_ok("sha256sum", &[&dir.0.join(name).to_string_lossy()]);
    let cmd = format!("curl -sS --max-time 300 http://{WAN_HOST}:8080/{name} | sha256sum");
    let out = ns_exec(ns, &["sh", "-c", &cmd]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        stdout(&out)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
        want.split_whitespace().next().unwrap().to_string(),
    )
}

#[test]
fn without_offloads_everything_still_works() {
    if !root_or_skip("without_offloads_everything_still_works") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let wan = WanHost::new();
    let d = start(&ns, &wan, &["--no-offload"]);
    assert!(ping(&ns.0[0], "192.168.88.12"));
    assert!(ping(&ns.0[1], WAN_HOST));
    let dir = TempDir::new();
    write_pattern(&dir.0.join("8m.bin"), 8 << 20);
    // Without offloads the TAPs carry MTU-sized frames only: the namespace
    // receives nothing longer than MTU + 14 (with offloads the same download
    // arrives as super-frames: tests/bulk.rs).
    let pcap = dir.0.join("ns.pcap");
    let mut dump = tcpdump_to_file(&ns.0[0], "eth0", 400, &pcap);
    let (got, want) = download_digest(&ns.0[0], &wan, &dir, "8m.bin");
    assert_eq!(got, want);
    assert!(
        dump.wait(Duration::from_secs(5))
            .is_some_and(|s| s.success()),
        "tcpdump did not see 400 frames"
    );
    let lens = pcap_frame_lengths(&std::fs::read(&pcap).unwrap());
    assert_eq!(lens.len(), 400);
    let max = lens.iter().max().copied().unwrap();
    assert!(
        max <= 1514,
        "a {max}-byte frame reached the namespace with --no-offload"
    );
    assert!(max >= 1400, "full-size segments expected, largest {max}");
    d.stop();
}

#[test]
fn larger_lan_mtu_fragments_without_df_and_refuses_with_df() {
    if !root_or_skip("larger_lan_mtu_fragments_without_df_and_refuses_with_df") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start(&ns, &wan, &["--mtu", "9000"]);
    let _echo = Background::start(
        &wan.ns,
        &["python3", "-u", &netpeer(), "udp-echo", WAN_HOST, "7009"],
        "listening",
    );
    // 4000 bytes fit the namespace's MTU; the gateway fragments them for the
    // 1500-byte uplink, and the wan host's fragmented reply comes back.
    let out = ns_exec(
        &ns.0[0],
        &[
            "python3",
            &netpeer(),
            "udp-probe",
            WAN_HOST,
            "7009",
            "4000",
            "nodf",
        ],
    );
    assert!(
        stdout(&out).contains("echoed 4000 True"),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly one datagram was cut (the reply's fragments come back whole
    // from the wan host and are routed one by one, not cut again).
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["gateway_port"]["fragmented"].as_u64(), Some(1), "{st}");
    // With DF, path MTU discovery gets Fragmentation Needed with the MTU.
    let out = ns_exec(
        &ns.0[0],
        &[
            "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "3000", WAN_HOST,
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains("From 192.168.88.1") && text.contains("mtu = 1500"),
        "{text}"
    );
    d.stop();
}
