//! Root tests of `vswitchctl capture`: pcapng read back by tcpdump and
//! (interface names) tshark, classic pcap with --pcap, the
//! uplink view after translation, and a reader that never reads.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `tcpdump -r FILE FILTER` once the file shows `want` lines matching the
/// filter (the capture writes as frames arrive), or panics after 10 s.
fn read_until(file: &std::path::Path, filter: &str, want: usize) -> String {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        let out = run("tcpdump", &["-nn", "-r", &file.to_string_lossy(), filter]);
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        last.lines().count() >= want
    });
    assert!(ok, "capture never showed {want} '{filter}' frames:\n{last}");
    last
}

fn stop(mut c: std::process::Child) {
    stop_child(&mut c);
}

fn capture(d: &Daemon, args: &[&str], file: &std::path::Path) -> std::process::Child {
    let file = file.to_string_lossy().into_owned();
    let mut v = vec!["--name", d.name.as_str(), "capture"];
    v.extend_from_slice(args);
    v.extend_from_slice(&["-w", &file]);
    Command::new(VSWITCHCTL).args(&v).spawn().unwrap()
}

fn sessions(d: &Daemon) -> u64 {
    d.ctl_json(&["status"])["captures"].as_u64().unwrap_or(0)
}

#[test]
fn capture_of_a_ping_reads_back_in_tcpdump() {
    if !root_or_skip("capture_of_a_ping_reads_back_in_tcpdump") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    assert!(ping(&ns.0[0], "192.168.88.12")); // learn, resolve ARP
    let dir = TempDir::new();
    let file = dir.0.join("ping.pcap");
    let cap = capture(&d, &["--port", &ns.0[1]], &file);
    assert!(wait_until(Duration::from_secs(10), || sessions(&d) == 1));
    let out = ns_exec(
        &ns.0[0],
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.88.12"],
    );
    assert!(out.status.success());
    // The namespaces' own IPv6 chatter may be in the capture too; the
    // ICMP view must be exactly the two pings.
    let text = read_until(&file, "icmp", 4);
    stop(cap);
    assert!(
        text.contains("192.168.88.11 > 192.168.88.12: ICMP echo request"),
        "{text}"
    );
    assert!(
        text.contains("192.168.88.12 > 192.168.88.11: ICMP echo reply"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(wait_until(Duration::from_secs(10), || sessions(&d) == 0));

    // -c COUNT: the daemon ends the stream after COUNT frames, whatever they are.
    let counted = dir.0.join("counted.pcap");
    let mut cap = capture(&d, &["--port", &ns.0[1], "-c", "3"], &counted);
    assert!(wait_until(Duration::from_secs(10), || sessions(&d) == 1));
    let _ = ns_exec(
        &ns.0[0],
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.88.12"],
    );
    assert!(
        wait_child(&mut cap, Duration::from_secs(5)).is_some_and(|s| s.success()),
        "capture did not end after 3 frames"
    );
    let out = run("tcpdump", &["-nn", "-r", &counted.to_string_lossy()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);

    // A bad port name is a clear error, not a pcap.
    let out = run(
        VSWITCHCTL,
        &[
            "--name",
            &d.name,
            "capture",
            "--port",
            "nope",
            "-w",
            &file.to_string_lossy(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port named nope"));
    d.stop();
}

#[test]
fn uplink_capture_shows_the_translated_source() {
    if !root_or_skip("uplink_capture_shows_the_translated_source") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    assert!(ping(&ns.0[0], WAN_HOST));
    let dir = TempDir::new();
    let inside = dir.0.join("inside.pcap");
    let outside = dir.0.join("outside.pcap");
    let port_flag = format!("--port={}", ns.0[0]);
    let caps = [
        capture(&d, &[port_flag.as_str()], &inside),
        capture(&d, &["--uplink"], &outside),
    ];
    assert!(wait_until(Duration::from_secs(10), || sessions(&d) == 2));
    assert!(ping(&ns.0[0], WAN_HOST));
    let inside = read_until(&inside, "icmp", 2);
    let outside = read_until(&outside, "icmp", 2);
    for c in caps {
        stop(c);
    }
    assert!(
        inside.contains("192.168.88.11 > 10.99.0.1: ICMP echo request"),
        "{inside}"
    );
    assert!(
        outside.contains("10.99.0.2 > 10.99.0.1: ICMP echo request"),
        "{outside}"
    );
    assert!(!outside.contains("192.168.88."), "{outside}");
    d.stop();
}

#[test]
fn a_reader_that_never_reads_does_not_slow_forwarding() {
    if !root_or_skip("a_reader_that_never_reads_does_not_slow_forwarding") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv(), "--metrics", "127.0.0.1:0"]);
    // ~12 MB of echo traffic: more than the session buffer and the pipes.
    let flood = || {
        let t0 = std::time::Instant::now();
        let out = ns_exec(
            &ns.0[0],
            &[
                "ping",
                "-f",
                "-c",
                "4000",
                "-s",
                "1400",
                "-W",
                "2",
                "192.168.88.12",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("4000 packets transmitted, 4000 received"),
            "{text}"
        );
        t0.elapsed()
    };
    let alone = flood();
    // A capture whose output pipe nobody reads.
    let mut stuck = Command::new(VSWITCHCTL)
        .args(["--name", &d.name, "capture"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["status"])["captures"].as_u64() == Some(1)
    }));
    let stalled = flood();
    // A stalled reader costs at most copying into its (full) buffer: the
    // same flood may not take much longer (2x plus scheduling noise).
    eprintln!("4000 flood pings: {alone:?} alone, {stalled:?} with a stuck reader");
    assert!(
        stalled < alone * 2 + Duration::from_millis(500),
        "a stuck capture slowed forwarding: {alone:?} -> {stalled:?}"
    );
    let st = d.ctl_json(&["status"]);
    assert!(st["capture_dropped"].as_u64().unwrap() > 0, "{st}");
    stop_child(&mut stuck);
    // The session ends when its reader is gone.
    assert!(wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["status"])["captures"].as_u64() == Some(0)
    }));
    // The metric keeps the ended session's drops (a counter never goes back).
    let addr = d.ctl_json(&["status"])["metrics"]
        .as_str()
        .unwrap()
        .to_string();
    let text = run_ok(
        "curl",
        &["-sS", "--max-time", "10", &format!("http://{addr}/metrics")],
    );
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vswitchd_capture_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no capture_dropped_total in:\n{text}"));
    assert!(dropped > 0, "{text}");
    d.stop();
}

/// `(frame.interface_name, ip.src)` of the ICMP frames in a pcapng file, as
/// tshark reads them, once there are `want` (or panics after 10 s).
fn tshark_icmp(file: &std::path::Path, want: usize) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        let out = run(
            "tshark",
            &[
                "-r",
                &file.to_string_lossy(),
                "-Y",
                "icmp",
                "-T",
                "fields",
                "-e",
                "frame.interface_name",
                "-e",
                "ip.src",
            ],
        );
        rows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .collect();
        rows.len() >= want
    });
    assert!(ok, "tshark never showed {want} ICMP frames: {rows:?}");
    rows
}

#[test]
fn pcapng_names_each_capture_point_for_tshark() {
    if !root_or_skip("pcapng_names_each_capture_point_for_tshark") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    assert!(ping(&ns.0[0], WAN_HOST)); // resolve ARP on both sides
    let dir = TempDir::new();
    // `-w -` streams: the port and the uplink into one file through stdout.
    let both = dir.0.join("both.pcapng");
    let mut streamed = Command::new(VSWITCHCTL)
        .args(["--name", &d.name, "capture", "--port", &ns.0[0], "--uplink"])
        .args(["-w", "-"])
        .stdout(std::fs::File::create(&both).unwrap())
        .spawn()
        .unwrap();
    // Every port and the gateway: each frame at its ingress.
    let all = dir.0.join("all.pcapng");
    let every = capture(&d, &[], &all);
    assert!(wait_until(Duration::from_secs(10), || sessions(&d) == 2));
    assert!(ping(&ns.0[0], WAN_HOST));
    let uplink = format!("uplink:{}", wan.uplink);
    let got = tshark_icmp(&both, 4);
    let want = [
        (ns.0[0].as_str(), "192.168.88.11"),
        (uplink.as_str(), UPLINK_ADDR),
        (uplink.as_str(), WAN_HOST),
        (ns.0[0].as_str(), WAN_HOST),
    ];
    assert_eq!(
        got,
        want.map(|(i, s)| (i.to_string(), s.to_string())).to_vec(),
        "the echo out and back, each where it was"
    );
    let got = tshark_icmp(&all, 2);
    let want = [(ns.0[0].as_str(), "192.168.88.11"), ("gateway", WAN_HOST)];
    assert_eq!(
        got,
        want.map(|(i, s)| (i.to_string(), s.to_string())).to_vec()
    );
    stop_child(&mut streamed);
    stop(every);

    // --pcap: classic pcap, which tcpdump reads and which has no names.
    let classic = dir.0.join("classic.pcap");
    let c = capture(&d, &["--pcap", "--uplink"], &classic);
    assert!(wait_until(Duration::from_secs(10), || sessions(&d) == 1));
    assert!(ping(&ns.0[0], WAN_HOST));
    let text = read_until(&classic, "icmp", 2);
    stop(c);
    assert!(
        text.contains("10.99.0.2 > 10.99.0.1: ICMP echo request"),
        "{text}"
    );
    let magic = std::fs::read(&classic).unwrap();
    assert_eq!(
        &magic[0..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "classic pcap magic"
    );
    d.stop();
}
