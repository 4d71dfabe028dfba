//! Things that go away and come back, and the metrics endpoint's answers to
//! what it does not serve. Root tests with real namespaces.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn a_port_whose_tap_was_deleted_can_be_added_again_and_stays() {
    if !root_or_skip("a_port_whose_tap_was_deleted_can_be_added_again_and_stays") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    let victim = ns.0[0].as_str();
    // The TAP is deleted inside its namespace: the port goes, the
    // namespace (which vswitchd created) stays.
    run_ok("ip", &["-n", victim, "link", "del", "eth0"]);
    let gone = wait_until(Duration::from_secs(5), || {
        d.ctl_json(&["ports"])
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["name"] != victim))
    });
    assert!(gone, "port not removed: {}", d.ctl_json(&["ports"]));
    assert!(netns_exists(victim));

    // Added again: it stays, forwards, and its namespace is not deleted.
    let out = d.ctl(&["port", "add", victim]);
    assert!(out.status.success(), "{out:?}");
    assert!(ping(victim, "192.168.88.12"), "{}", d.log());
    // The old bug removed it within a second; give it two timer rounds.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(netns_exists(victim), "namespace deleted: {}", d.log());
    assert!(
        d.ctl_json(&["ports"])
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == victim),
        "{}",
        d.log()
    );
    assert!(ping(victim, "192.168.88.1"));
    assert!(
        !d.log().contains("was deleted (ip netns del)"),
        "{}",
        d.log()
    );
    // At exit the namespace vswitchd created is deleted as before.
    drop(d);
    assert!(!netns_exists(victim));
}

#[test]
fn metrics_answer_404_and_405_for_what_they_do_not_serve() {
    if !root_or_skip("metrics_answer_404_and_405_for_what_they_do_not_serve") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let d = Daemon::start(&["--ports", &ns.csv(), "--metrics", "0"]);
    let st = d.ctl_json(&["status"]);
    let addr = st["metrics"].as_str().expect("metrics address").to_string();
    let code = |args: &[&str]| {
        let url = format!("http://{addr}{}", args[0]);
        let mut a = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ];
        a.extend_from_slice(&args[1..]);
        a.push(&url);
        String::from_utf8(run("curl", &a).stdout).unwrap()
    };
    assert_eq!(code(&["/metrics"]), "200");
    assert_eq!(code(&["/"]), "200");
    assert_eq!(code(&["/nope"]), "404");
    assert_eq!(code(&["/metrics", "-X", "POST"]), "405");
    assert_eq!(code(&["/metrics", "-X", "DELETE"]), "405");
}

#[test]
fn a_dhcp_server_that_comes_late_gives_a_lease_within_seconds_and_it_is_used_at_once() {
    if !root_or_skip(
        "a_dhcp_server_that_comes_late_gives_a_lease_within_seconds_and_it_is_used_at_once",
    ) {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let dir = TempDir::new();
    let started = std::time::Instant::now();
    let d = Daemon::start(&[
        "--ports",
        &ns.csv(),
        "--uplink",
        &wan.uplink,
        "--uplink-addr",
        "dhcp",
    ]);
    // The server starts after vswitchd: its first DISCOVER went unanswered.
    let _dnsmasq = dnsmasq(&wan, &dir);
    let has_lease = || {
        d.ctl_json(&["status"])["gateway_port"]["uplink"]["address"]
            .as_str()
            .is_some()
    };
    assert!(
        wait_until(Duration::from_secs(10), has_lease),
        "no lease: {}",
        d.log()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "lease after {took:?}: {}",
        d.log()
    );
    // Used at once: a ping through the NAT right away gets its answer.
    assert!(ping(&ns.0[0], WAN_HOST), "{}", d.log());
    let log = d.log();
    assert!(log.contains("uplink address gained by DHCP"), "{log}");
    assert!(!log.contains("lost"), "a loss that did not happen: {log}");
}

#[test]
fn idle_and_oversized_control_clients_neither_stall_nor_evict_a_capture() {
    if !root_or_skip("idle_and_oversized_control_clients_neither_stall_nor_evict_a_capture") {
        return;
    }
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    let sock = format!("/run/vswitchd/{}.sock", d.name);
    // A capture stream, written to a file.
    let dir = TempDir::new();
    let pcap = dir.0.join("c.pcap");
    let mut capture = std::process::Command::new(VSWITCHCTL)
        .args(["--name", &d.name, "capture", "-w"])
        .arg(&pcap)
        .spawn()
        .unwrap();
    let size = || std::fs::metadata(&pcap).map_or(0, |m| m.len());
    assert!(
        wait_until(Duration::from_secs(5), || size() >= 24),
        "no pcap header"
    );
    // 500 idle connections, and one client sending a 10 MB line.
    let idle: Vec<UnixStream> = (0..500)
        .filter_map(|_| UnixStream::connect(&sock).ok())
        .collect();
    assert!(idle.len() >= 64, "only {} connections", idle.len());
    let mut big = UnixStream::connect(&sock).unwrap();
    big.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let line = vec![b'x'; 10 << 20];
    let _ = big.write_all(&line); // the server stops reading at 64 KiB
    // Forwarding and other clients are unaffected; the capture keeps writing.
    let before = size();
    assert!(ping(&ns.0[0], "192.168.88.12"));
    assert!(d.ctl(&["status"]).status.success());
    assert!(
        wait_until(Duration::from_secs(5), || size() > before),
        "capture stalled"
    );
    assert!(capture.try_wait().unwrap().is_none(), "capture was ended");
    // Memory stays bounded (the 10 MB never sat in the daemon).
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(rss_kb < 64 * 1024, "RSS {rss_kb} kB");
    // A silent connection is closed after the idle timeout (10 s).
    let mut probe = UnixStream::connect(&sock).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut b = [0u8; 16];
    let n = probe.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close the idle connection");
    assert!(
        t0.elapsed() < Duration::from_secs(13),
        "closed after {:?}",
        t0.elapsed()
    );
    assert!(capture.try_wait().unwrap().is_none(), "capture was ended");
    drop(idle);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(capture.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = capture.wait();
}

#[test]
fn a_non_root_vswitchctl_is_refused_with_a_reason() {
    if !root_or_skip("a_non_root_vswitchctl_is_refused_with_a_reason") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    let out = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            VSWITCHCTL,
            "--name",
            &d.name,
            "status",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && err.contains("run vswitchctl as root"),
        "{err}"
    );
    assert!(d.ctl(&["status"]).status.success());
}

#[test]
fn after_kill_9_a_restart_takes_over_what_the_dead_instance_created() {
    if !root_or_skip("after_kill_9_a_restart_takes_over_what_the_dead_instance_created") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let name = unique("kr");
    let mut d1 = Daemon::start_named(&name, &["--ports", &ns.csv()]);
    let state = format!("/run/vswitchd/{name}.state");
    let written = std::fs::read_to_string(&state).unwrap();
    assert!(
        written.contains(&ns.0[0]) && written.contains(&ns.0[1]),
        "{written}"
    );
    d1.kill9();
    assert!(netns_exists(&ns.0[0]) && netns_exists(&ns.0[1]));
    // The same name again, with only the first port: that namespace is
    // adopted, the other one (no port uses it) deleted at once.
    let d2 = Daemon::start_named(&name, &["--ports", &ns.0[0]]);
    assert!(!netns_exists(&ns.0[1]), "{}", d2.log());
    assert!(ping(&ns.0[0], "192.168.88.1"), "{}", d2.log());
    assert!(d2.log().contains("did not exit cleanly"), "{}", d2.log());
    d2.stop();
    // Its clean exit deletes the adopted namespace and the state file.
    assert!(!netns_exists(&ns.0[0]));
    assert!(!std::path::Path::new(&state).exists());
}

#[test]
fn an_uplink_deleted_and_created_again_is_taken_back_with_the_nat_table() {
    if !root_or_skip("an_uplink_deleted_and_created_again_is_taken_back_with_the_nat_table") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    let state = || {
        let st = d.ctl_json(&["status"]);
        st["gateway_port"]["uplink"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(), "up");
    assert!(ping(&ns.0[0], WAN_HOST), "{}", d.log());
    let flows = d.ctl_json(&["status"])["gateway_port"]["nat"]["flows"].clone();

    // Down and up again.
    run_ok("ip", &["link", "set", &wan.uplink, "down"]);
    assert!(
        wait_until(Duration::from_secs(2), || state() == "down"),
        "{}",
        d.log()
    );
    assert!(!ping(&ns.0[0], WAN_HOST));
    let st = d.ctl_json(&["status"]);
    assert!(
        st["gateway_port"]["uplink"]["drops"]["uplink_down"].as_u64() >= Some(1),
        "{st}"
    );
    run_ok("ip", &["link", "set", &wan.uplink, "up"]);
    assert!(
        wait_until(Duration::from_secs(5), || state() == "up"),
        "{}",
        d.log()
    );
    assert!(wait_until(Duration::from_secs(10), || ping(
        &ns.0[0], WAN_HOST
    )));

    // Deleted, then created again with the same name and peer.
    run_ok("ip", &["link", "del", &wan.uplink]);
    assert!(
        wait_until(Duration::from_secs(2), || state() == "gone"),
        "{}",
        d.log()
    );
    run_ok(
        "ip",
        &[
            "link",
            "add",
            &wan.uplink,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &wan.ns,
        ],
    );
    run_ok(
        "ip",
        &["-n", &wan.ns, "addr", "add", "10.99.0.1/24", "dev", "eth0"],
    );
    run_ok("ip", &["-n", &wan.ns, "link", "set", "eth0", "up"]);
    run_ok("ip", &["link", "set", &wan.uplink, "up"]);
    let t0 = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || ping(&ns.0[0], WAN_HOST)),
        "{}",
        d.log()
    );
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert_eq!(state(), "up");
    // The NAT table was not flushed on the way (the ping's flow is there).
    assert!(
        d.ctl_json(&["status"])["gateway_port"]["nat"]["flows"].as_u64() >= flows.as_u64(),
        "{}",
        d.log()
    );
    let log = d.log();
    assert_eq!(
        log.matches("was deleted; frames to it are dropped").count(),
        1,
        "{log}"
    );
    assert!(log.contains("is up again"), "{log}");
    d.stop();
}
