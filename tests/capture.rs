//! Root tests of `vswitchctl capture`: pcap read back by tcpdump, the
//! uplink view after translation, and a reader that never reads.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn tcpdump_read(file: &std::path::Path) -> String {
    let out = run("tcpdump", &["-nn", "-r", &file.to_string_lossy()]);
    assert!(
        out.status.success(),
        "tcpdump -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    let file_s = file.to_string_lossy().into_owned();
    // Four frames on port 2: the echo requests and replies of two pings.
    let mut cap = Command::new(VSWITCHCTL)
        .args([
            "--name", &d.name, "capture", "--port", &ns.0[1], "-c", "4", "-w", &file_s,
        ])
        .spawn()
        .unwrap();
    // The session exists once status counts it.
    assert!(wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["status"])["captures"].as_u64() == Some(1)
    }));
    let out = ns_exec(
        &ns.0[0],
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.88.12"],
    );
    assert!(out.status.success());
    assert!(
        cap.wait().unwrap().success(),
        "capture did not end after 4 frames"
    );
    let text = tcpdump_read(&file);
    assert!(
        text.contains("192.168.88.11 > 192.168.88.12: ICMP echo request"),
        "{text}"
    );
    assert!(
        text.contains("192.168.88.12 > 192.168.88.11: ICMP echo reply"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    // A bad port name is a clear error, not a pcap.
    let out = run(
        VSWITCHCTL,
        &[
            "--name", &d.name, "capture", "--port", "nope", "-w", &file_s,
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port named nope"));
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
    let mut caps = Vec::new();
    for (flag, file) in [
        (format!("--port={}", ns.0[0]), &inside),
        ("--uplink".to_string(), &outside),
    ] {
        caps.push(
            Command::new(VSWITCHCTL)
                .args([
                    "--name",
                    &d.name,
                    "capture",
                    &flag,
                    "-c",
                    "2",
                    "-w",
                    &file.to_string_lossy(),
                ])
                .spawn()
                .unwrap(),
        );
    }
    assert!(wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["status"])["captures"].as_u64() == Some(2)
    }));
    assert!(ping(&ns.0[0], WAN_HOST));
    for mut c in caps {
        assert!(c.wait().unwrap().success());
    }
    let (inside, outside) = (tcpdump_read(&inside), tcpdump_read(&outside));
    assert!(
        inside.contains("192.168.88.11 > 10.99.0.1: ICMP echo request"),
        "{inside}"
    );
    assert!(
        outside.contains("10.99.0.2 > 10.99.0.1: ICMP echo request"),
        "{outside}"
    );
    assert!(!outside.contains("192.168.88."), "{outside}");
}

#[test]
fn a_reader_that_never_reads_does_not_slow_forwarding() {
    if !root_or_skip("a_reader_that_never_reads_does_not_slow_forwarding") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    // A capture whose output pipe nobody reads.
    let mut stuck = Command::new(VSWITCHCTL)
        .args(["--name", &d.name, "capture"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["status"])["captures"].as_u64() == Some(1)
    }));
    // ~12 MB of echo traffic: more than the session buffer and the pipes.
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
    let st = d.ctl_json(&["status"]);
    assert!(st["capture_dropped"].as_u64().unwrap() > 0, "{st}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stuck.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = stuck.wait();
    // The session ends when its reader is gone.
    assert!(wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["status"])["captures"].as_u64() == Some(0)
    }));
}
