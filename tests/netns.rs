//! Root tests: the real `vswitchd` binary with real namespaces, TAPs,
//! ping, tcpdump and raw frames. Each test has its own namespaces and
//! instance name, so they run in parallel; everything is cleaned up in
//! `Drop`, also when a test fails.

mod common;

use common::*;
use std::time::{Duration, Instant};

const ETH: &str = "eth0";
const BCAST: [u8; 6] = [0xff; 6];

fn addr(n: usize) -> String {
    format!("192.168.88.{}", 11 + n)
}

#[test]
fn every_pair_pings_and_vswitchctl_reports() {
    if !root_or_skip("every_pair_pings_and_vswitchctl_reports") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let d = Daemon::start(&["--ports", &ns.csv()]);

    // The namespace side looks like the seeds' veth setup.
    let a = String::from_utf8_lossy(&ns_exec(&ns.0[0], &["ip", "-4", "addr", "show", ETH]).stdout)
        .into_owned();
    assert!(a.contains("192.168.88.11/24"), "{a}");
    let r = String::from_utf8_lossy(&ns_exec(&ns.0[1], &["ip", "route"]).stdout).into_owned();
    assert!(r.contains("default via 192.168.88.1 dev eth0"), "{r}");
    let lo = String::from_utf8_lossy(&ns_exec(&ns.0[2], &["ip", "link", "show", "lo"]).stdout)
        .into_owned();
    assert!(lo.contains("UP"), "lo is not up: {lo}");

    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                assert!(
                    ping(&ns.0[i], &addr(j)),
                    "{} -> {} failed",
                    ns.0[i],
                    addr(j)
                );
            }
        }
    }

    // Every port's MAC is learned on that port, and is the stable MAC.
    let (rows, fdb) = d.fdb();
    for n in &ns.0 {
        let mac = d.mac_of(n);
        let want = vswitchd::wire::MacAddr::stable_local(&format!("{n}/{ETH}")).to_string();
        assert_eq!(mac, want, "MAC of {n} is not the stable one");
        assert!(
            rows.iter()
                .any(|(m, p, age)| *m == mac && p == n && age.is_some()),
            "{mac} not learned on {n}: {rows:?}"
        );
    }
    assert!(fdb["learned"].as_u64().unwrap() >= 3);
    let p0 = d.port(&ns.0[0]);
    assert!(p0["rx_packets"].as_u64().unwrap() >= 4, "{p0}");
    assert!(p0["tx_bytes"].as_u64().unwrap() > 0, "{p0}");
    assert_eq!(p0["addr"], "192.168.88.11");

    // Static entries: add, show as static, refuse unknown ports, delete.
    let out = d.ctl(&["fdb", "add", "02:11:22:33:44:55", &ns.0[2]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&d.ctl(&["fdb", "show"]).stdout).into_owned();
    assert!(
        text.lines().any(|l| l.contains("02:11:22:33:44:55")
            && l.contains("static")
            && l.contains(&ns.0[2])),
        "{text}"
    );
    let out = d.ctl(&["fdb", "add", "02:11:22:33:44:56", "nosuchport"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port named nosuchport"));
    let out = d.ctl(&["fdb", "add", "ff:ff:ff:ff:ff:ff", &ns.0[0]]);
    assert!(!out.status.success());
    assert!(d.ctl(&["fdb", "del", "02:11:22:33:44:55"]).status.success());
    let out = d.ctl(&["fdb", "del", "02:11:22:33:44:55"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the MAC table"));

    // Flush one port's learned entries. A MAC only this test sends from
    // shows it (the namespace's own MAC may be relearned at once from its
    // IPv6 chatter).
    let extra = "02:aa:bb:cc:dd:0f";
    assert_eq!(
        send_frames(
            &ns.0[0],
            ETH,
            &[frame(BCAST, mac_bytes(extra), 0x88b5, 46)],
            0
        ),
        1
    );
    assert!(wait_until(Duration::from_secs(5), || d
        .fdb()
        .0
        .iter()
        .any(|(m, p, _)| m == extra && *p == ns.0[0])));
    let v = d.ctl_json(&["fdb", "flush", &ns.0[0]]);
    assert!(v["removed"].as_u64().unwrap() >= 2, "{v}");
    let (rows, _) = d.fdb();
    assert!(rows.iter().all(|(m, _, _)| m != extra), "{rows:?}");

    let status = String::from_utf8_lossy(&d.ctl(&["status"]).stdout).into_owned();
    assert!(
        status.contains(&d.name) && status.contains("3 port(s)"),
        "{status}"
    );

    // A clear error for an instance that does not run.
    let out = run(VSWITCHCTL, &["--name", "no-such-instance-x", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no vswitchd instance named no-such-instance-x")
    );
    d.stop();
}

#[test]
fn learned_unicast_is_not_flooded_but_unknown_and_broadcast_are() {
    if !root_or_skip("learned_unicast_is_not_flooded_but_unknown_and_broadcast_are") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    // Learn both ends.
    assert!(ping(&ns.0[0], &addr(1)));
    let mac0 = mac_bytes(&d.mac_of(&ns.0[0]));

    let mut third = Capture::start(&ns.0[2], ETH);
    let mut dest = Capture::start(&ns.0[1], ETH);
    let out = ns_exec(
        &ns.0[0],
        &["ping", "-c", "3", "-i", "0.2", "-W", "3", &addr(1)],
    );
    assert!(out.status.success(), "ping failed during capture");
    let unknown = [0x02, 0xde, 0xad, 0x00, 0x00, 0x01];
    let sent = send_frames(
        &ns.0[0],
        ETH,
        &[
            frame(unknown, mac0, 0x88b5, 46),
            // The marker: a broadcast, sent last, seen by every port.
            frame(BCAST, mac0, 0x88b6, 46),
        ],
        0,
    );
    assert_eq!(sent, 2);
    assert!(
        third.wait_for("0x88b6", Duration::from_secs(10)),
        "{:?}",
        third.seen
    );
    assert!(
        dest.wait_for("0x88b6", Duration::from_secs(10)),
        "{:?}",
        dest.seen
    );

    let echo = "192.168.88.11 > 192.168.88.12: ICMP echo request";
    // Positive control: the destination's capture does see the pings...
    assert!(
        dest.seen.iter().any(|l| l.contains(echo)),
        "{:?}",
        dest.seen
    );
    // ...the third port does not, but it sees unknown unicast and broadcast.
    let third_text = third.seen.join("\n");
    assert!(
        !third_text.contains(echo),
        "unicast leaked to third port:\n{third_text}"
    );
    assert!(!third_text.contains("ICMP echo reply"), "{third_text}");
    assert!(
        third_text.contains("02:de:ad:00:00:01"),
        "unknown unicast not flooded:\n{third_text}"
    );
    assert!(third_text.contains("ff:ff:ff:ff:ff:ff"), "{third_text}");
    d.stop();
}

#[test]
fn learned_entry_ages_out() {
    if !root_or_skip("learned_entry_ages_out") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv(), "--aging", "2"]);
    let src = "02:aa:bb:cc:dd:01";
    let t_sent = Instant::now();
    assert_eq!(
        send_frames(
            &ns.0[0],
            ETH,
            &[frame(BCAST, mac_bytes(src), 0x88b5, 46)],
            0
        ),
        1
    );
    let present = |d: &Daemon| d.fdb().0.iter().any(|(m, p, _)| m == src && *p == ns.0[0]);
    assert!(
        wait_until(Duration::from_secs(5), || present(&d)),
        "never learned"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !present(&d)),
        "entry did not age out: {:?}",
        d.fdb().0
    );
    let gone_after = t_sent.elapsed();
    assert!(
        gone_after >= Duration::from_secs(2),
        "aged out early: {gone_after:?}"
    );
    // README: invisible from the moment it is due; allow the table's
    // refresh grain and a loaded machine, not more: aging + 2 s.
    assert!(
        gone_after <= Duration::from_secs(4),
        "aged out late: {gone_after:?} for --aging 2"
    );
    assert!(d.fdb().1["expired"].as_u64().unwrap() >= 1);
    d.stop();
}

#[test]
fn mac_flood_stays_within_fdb_max_and_others_keep_working() {
    if !root_or_skip("mac_flood_stays_within_fdb_max_and_others_keep_working") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let d = Daemon::start(&["--ports", &ns.csv(), "--fdb-max", "64"]);
    assert!(ping(&ns.0[1], &addr(2)));
    let mac1 = d.mac_of(&ns.0[1]);
    let mac2 = d.mac_of(&ns.0[2]);

    let mut rng = Rng(0x5eed_0001);
    let frames: Vec<Vec<u8>> = (0..5000)
        .map(|_| {
            let r = rng.next().to_be_bytes();
            let src = [(r[0] & 0xfc) | 0x02, r[1], r[2], r[3], r[4], r[5]];
            frame(mac_bytes(&mac1), src, 0x88b5, 46)
        })
        .collect();
    let sent = send_frames(&ns.0[0], ETH, &frames, 50);
    assert!(sent >= 4900, "only {sent} frames sent");
    assert!(
        wait_until(Duration::from_secs(5), || d.port(&ns.0[0])["rx_packets"]
            .as_u64()
            .unwrap()
            >= 4500),
        "switch did not receive the flood: {}",
        d.port(&ns.0[0])
    );
    let (rows, fdb) = d.fdb();
    assert!(fdb["size"].as_u64().unwrap() <= 64, "{fdb}");
    assert!(rows.len() <= 64);
    assert!(fdb["evicted"].as_u64().unwrap() >= 4000, "{fdb}");
    // The other ports' entries were not pushed out.
    assert!(
        rows.iter().any(|(m, p, _)| *m == mac1 && *p == ns.0[1]),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|(m, p, _)| *m == mac2 && *p == ns.0[2]),
        "{rows:?}"
    );
    assert!(ping(&ns.0[1], &addr(2)));
    assert!(ping(&ns.0[2], &addr(1)));
    assert!(ping(&ns.0[0], &addr(1)));
    d.stop();
}

#[test]
fn malformed_and_oversized_frames_are_dropped_and_forwarding_goes_on() {
    if !root_or_skip("malformed_and_oversized_frames_are_dropped_and_forwarding_goes_on") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    let mut rng = Rng(0xbad_f00d);
    let frames: Vec<Vec<u8>> = (0..3000)
        .map(|i| match i % 3 {
            0 => frame(BCAST, [0x01, 0x00, 0x5e, 0, 0, (i % 256) as u8], 0x0800, 46),
            1 => frame(BCAST, [0; 6], 0x0806, 28),
            _ => {
                // Random bytes of random length: junk headers, junk types.
                let len = 14 + (rng.next() % 1500) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            }
        })
        .collect();
    let sent = send_frames(&ns.0[0], ETH, &frames, 20);
    assert_eq!(sent, frames.len(), "the kernel refused some frames");
    // Every frame with a multicast or zero source is counted. The TAP's
    // queue in the kernel may overflow under the burst (counted there as
    // tx_dropped, before vswitchd can see them): those are the only misses.
    let bad = frames
        .iter()
        .filter(|f| f[6] & 1 == 1 || f[6..12] == [0; 6])
        .count() as u64;
    assert!(bad >= 2000);
    let kernel_dropped = || -> u64 {
        let out = ns_exec(
            &ns.0[0],
            &["cat", "/sys/class/net/eth0/statistics/tx_dropped"],
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let counted = || {
        d.port(&ns.0[0])["drops"]["bad_source"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(5), || counted() + kernel_dropped()
            >= bad),
        "bad sources not counted ({bad} sent, {} lost in the kernel): {}",
        kernel_dropped(),
        d.port(&ns.0[0])
    );
    assert!(counted() <= bad, "{}", d.port(&ns.0[0]));
    // Frames longer than MTU + 14: raise the namespace side's MTU so the
    // kernel hands the TAP a 3000-byte frame; the switch (MTU 1500) drops it.
    assert!(
        ns_exec(&ns.0[0], &["ip", "link", "set", ETH, "mtu", "9000"])
            .status
            .success()
    );
    let mac0 = mac_bytes(&d.mac_of(&ns.0[0]));
    assert_eq!(
        send_frames(&ns.0[0], ETH, &[frame(BCAST, mac0, 0x88b5, 3000)], 0),
        1
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            d.port(&ns.0[0])["drops"]["too_big"].as_u64().unwrap_or(0) >= 1
        }),
        "{}",
        d.port(&ns.0[0])
    );
    assert!(
        ns_exec(&ns.0[0], &["ip", "link", "set", ETH, "mtu", "1500"])
            .status
            .success()
    );

    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                assert!(
                    ping(&ns.0[i], &addr(j)),
                    "{} -> {} failed after junk",
                    ns.0[i],
                    addr(j)
                );
            }
        }
    }
    assert!(d.ctl(&["status"]).status.success());
    d.stop();
}

#[test]
fn sigterm_removes_taps_and_created_namespaces_only() {
    if !root_or_skip("sigterm_removes_taps_and_created_namespaces_only") {
        return;
    }
    let mut ns = Namespaces::fresh(1);
    let pre = ns.add_existing();
    let created = ns.0[0].clone();
    let mut d = Daemon::start(&["--ports", &format!("{created},{pre}")]);
    assert!(ping(&created, &addr(1)));
    assert!(ns_exec(&pre, &["ip", "link", "show", ETH]).status.success());
    let sock = format!("/run/vswitchd/{}.sock", d.name);
    assert!(std::path::Path::new(&sock).exists());

    let (took, status) = d.terminate();
    assert!(status.success(), "exit status {status}: {}", d.log());
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    assert!(!netns_exists(&created), "created namespace left behind");
    assert!(netns_exists(&pre), "pre-existing namespace was deleted");
    assert!(
        !ns_exec(&pre, &["ip", "link", "show", ETH]).status.success(),
        "TAP left in pre-existing namespace"
    );
    assert!(!std::path::Path::new(&sock).exists(), "socket left behind");
    assert!(!std::path::Path::new(&format!("/run/vswitchd/{}.lock", d.name)).exists());

    // --keep-netns keeps the namespaces it created (the guard deletes them).
    let kept = Namespaces::fresh(1);
    let mut d = Daemon::start(&["--ports", &kept.csv(), "--keep-netns"]);
    let (_, status) = d.terminate();
    assert!(status.success());
    assert!(netns_exists(&kept.0[0]), "--keep-netns did not keep it");
    assert!(
        !ns_exec(&kept.0[0], &["ip", "link", "show", ETH])
            .status
            .success()
    );
}

/// Runs vswitchd expecting a refusal: non-zero exit, one stderr line that
/// contains `culprit`, and none of `names` exists afterwards.
fn refused(args: &[&str], culprit: &str, names: &[String]) {
    let name = unique("r");
    let mut v = vec!["--name", name.as_str()];
    v.extend_from_slice(args);
    let out = run(VSWITCHD, &v);
    refused_output(&out, args, culprit);
    for n in names {
        assert!(!netns_exists(n), "{args:?}: namespace {n} left behind");
    }
    assert!(!std::path::Path::new(&format!("/run/vswitchd/{name}.sock")).exists());
    assert!(!std::path::Path::new(&format!("/run/vswitchd/{name}.lock")).exists());
}

fn refused_output(out: &std::process::Output, args: &[&str], culprit: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one error line:\n{err}");
    assert!(
        lines[0].contains(culprit),
        "{args:?}: '{}' lacks '{culprit}'",
        lines[0]
    );
}

#[test]
fn refused_starts_leave_nothing_behind() {
    if !root_or_skip("refused_starts_leave_nothing_behind") {
        return;
    }
    let ns = Namespaces::fresh(5);
    let n = &ns.0;
    let all = n.clone();
    refused(&["--ports", &format!("{},a/b", n[0])], "a/b", &all);
    refused(&["--ports", &format!("{},..", n[0])], "'..'", &all);
    refused(
        &["--ports", &format!("{},{}", n[0], n[0])],
        "listed twice",
        &all,
    );
    refused(
        &["--ports", &format!("{}=10.9.9.9", n[0])],
        "10.9.9.9",
        &all,
    );
    refused(
        &["--ports", &format!("{}=192.168.88.1", n[0])],
        "gateway",
        &all,
    );
    refused(
        &[
            "--ports",
            &format!("{}=192.168.88.20,{}=192.168.88.20", n[0], n[1]),
        ],
        "already taken",
        &all,
    );
    refused(
        &[
            "--ports",
            &n.join(","),
            "--subnet",
            "10.0.0.0/28",
            "--gateway",
            "10.0.0.1",
        ],
        "too small",
        &all,
    );
    refused(
        &["--ports", &n[0], "--ifname", "sixteen-bytes-xx"],
        "sixteen-bytes-xx",
        &all,
    );
    // An unknown log level used to silence all logging; now it is refused.
    refused(
        &["--ports", &n[0], "--log-level", "verbose"],
        "--log-level 'verbose': use error, warn, info, debug or trace",
        &all,
    );
    refused(
        &["--ports", &n[0], "--host-port", "192.168.88.11"],
        "--host-port 192.168.88.11",
        &all,
    );

    // Not root.
    let out = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            VSWITCHD,
            "--ports",
            &n[0],
        ],
    );
    refused_output(&out, &["(as nobody)"], "root");
    assert!(!netns_exists(&n[0]));

    // A name already running: refused, and the running one keeps working.
    let running = Daemon::start(&["--ports", &format!("{},{}", n[0], n[1])]);
    let out = run(VSWITCHD, &["--name", &running.name, "--ports", &n[2]]);
    refused_output(&out, &["(same name)"], "already running");
    assert!(!netns_exists(&n[2]));
    assert!(running.ctl(&["status"]).status.success());
    assert!(ping(&n[0], &addr(1)));
    running.stop();
}

#[test]
fn subnet_alone_puts_the_gateway_on_its_first_host() {
    if !root_or_skip("subnet_alone_puts_the_gateway_on_its_first_host") {
        return;
    }
    // Once refused: the gateway stayed 192.168.88.1, outside 10.0.0.0/30.
    let ns = Namespaces::fresh(1);
    let port = format!("{}=10.0.0.2", ns.0[0]);
    let d = Daemon::start(&["--ports", &port, "--subnet", "10.0.0.0/30"]);
    assert_eq!(d.ctl_json(&["status"])["gateway"], "10.0.0.1");
    assert!(ping(&ns.0[0], "10.0.0.1"));
    d.stop();
}

#[test]
fn failure_halfway_rolls_back() {
    if !root_or_skip("failure_halfway_rolls_back") {
        return;
    }
    let mut ns = Namespaces::fresh(1);
    let pre = ns.add_existing();
    // The second port's namespace already has an interface named eth0.
    // (a veth pair: this kernel has no dummy driver).
    assert!(
        ns_exec(
            &pre,
            &[
                "ip", "link", "add", ETH, "type", "veth", "peer", "name", "eth0p"
            ]
        )
        .status
        .success()
    );
    let name = unique("r");
    let out = run(
        VSWITCHD,
        &["--name", &name, "--ports", &format!("{},{pre}", ns.0[0])],
    );
    refused_output(&out, &["(eth0 exists)"], &pre);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert!(!netns_exists(&ns.0[0]), "first namespace not rolled back");
    assert!(netns_exists(&pre));
    assert!(
        ns_exec(&pre, &["ip", "link", "show", ETH]).status.success(),
        "their eth0 was touched"
    );
    assert!(!std::path::Path::new(&format!("/run/vswitchd/{name}.sock")).exists());
}
