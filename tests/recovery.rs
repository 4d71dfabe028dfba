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

/// dnsmasq for the wan host's network, leases in `dir`.
fn dnsmasq(wan: &WanHost, dir: &TempDir) -> Background {
    let leases = dir.0.join("leases").to_string_lossy().into_owned();
    let pidfile = dir.0.join("pid").to_string_lossy().into_owned();
    Background::start(
        &wan.ns,
        &[
            "dnsmasq",
            "--no-daemon",
            "--log-dhcp",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0,1h",
            "--dhcp-option=option:router,10.99.0.1",
            &format!("--dhcp-leasefile={leases}"),
            &format!("--pid-file={pidfile}"),
        ],
        "DHCP, IP range",
    )
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
