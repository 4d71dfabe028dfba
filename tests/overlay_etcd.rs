//! The overlay in directory mode (`--etcd`), with a real etcd and hosts
//! simulated as namespaces: each host is a namespace on an underlay bridge
//! (in a namespace of its own, with etcd on it), and each host's vswitchd
//! runs inside its host namespace with `nsenter --net` (not `ip netns
//! exec`, whose private mount namespace would hide the port namespaces it
//! creates). Everything is deleted on drop, also when a test fails.

mod common;

use common::etcd::Etcd;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// An underlay: a bridge in namespace `ns` holding `10.78.0.254/24`, and
/// one namespace per host plugged into it, host i holding `10.78.0.i/24`
/// on its `eth0`.
struct Underlay {
    ns: String,
    hosts: Vec<String>,
}

const ETCD_ADDR: &str = "10.78.0.254";

impl Underlay {
    fn new(n: usize) -> Underlay {
        let mut u = Underlay {
            ns: unique("ul"),
            hosts: Vec::new(),
        };
        let ul = u.ns.clone();
        run_ok("ip", &["netns", "add", &ul]);
        run_ok("ip", &["-n", &ul, "link", "set", "lo", "up"]);
        run_ok("ip", &["-n", &ul, "link", "add", "br0", "type", "bridge"]);
        run_ok(
            "ip",
            &["-n", &ul, "addr", "add", "10.78.0.254/24", "dev", "br0"],
        );
        run_ok("ip", &["-n", &ul, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let h = unique("hh");
            run_ok("ip", &["netns", "add", &h]);
            u.hosts.push(h.clone());
            let port = format!("p{i}");
            run_ok(
                "ip",
                &[
                    "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &h,
                ],
            );
            run_ok(
                "ip",
                &["-n", &ul, "link", "set", &port, "master", "br0", "up"],
            );
            let addr = format!("10.78.0.{i}/24");
            run_ok("ip", &["-n", &h, "addr", "add", &addr, "dev", "eth0"]);
            run_ok("ip", &["-n", &h, "link", "set", "eth0", "up"]);
            run_ok("ip", &["-n", &h, "link", "set", "lo", "up"]);
        }
        u
    }

    fn vtep(i: usize) -> String {
        format!("10.78.0.{i}")
    }

    /// vswitchd for host `i` (1-based) in its namespace, in directory mode
    /// on `network`, plus `args`.
    fn start(&self, i: usize, network: &str, args: &[&str]) -> Daemon {
        let vtep = Self::vtep(i);
        let etcd = format!("http://{ETCD_ADDR}:2379");
        let mut v = vec!["--vtep", &vtep, "--etcd", &etcd, "--network", network];
        v.extend_from_slice(args);
        Daemon::start_in(&self.hosts[i - 1], &unique("h"), &v)
    }

    /// The same, expected to fail: its exit status and log.
    fn refused(
        &self,
        i: usize,
        network: &str,
        args: &[&str],
    ) -> (std::process::ExitStatus, String) {
        let vtep = Self::vtep(i);
        let etcd = format!("http://{ETCD_ADDR}:2379");
        let net = format!("--net=/run/netns/{}", self.hosts[i - 1]);
        let out = Command::new("nsenter")
            .arg(&net)
            .arg(VSWITCHD)
            .args(["--name", &unique("h")])
            .args(["--vtep", &vtep, "--etcd", &etcd, "--network", network])
            .args(args)
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain(std::iter::once(&self.ns)) {
            let _ = Command::new("ip").args(["netns", "del", h]).output();
        }
    }
}

/// `vswitchctl overlay --json` of `d`.
fn overlay(d: &Daemon) -> serde_json::Value {
    d.ctl_json(&["overlay"])
}

fn hosts_of(d: &Daemon) -> Vec<String> {
    overlay(d)["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["vtep"].as_str().unwrap().to_string())
        .collect()
}

fn addr_of(d: &Daemon, ns: &str) -> String {
    d.port(ns)["addr"].as_str().unwrap().to_string()
}

#[test]
fn three_hosts_are_one_segment_with_etcd_as_the_directory() {
    if !root_or_skip("three_hosts_are_one_segment_with_etcd_as_the_directory") {
        return;
    }
    let u = Underlay::new(3);
    let _etcd = Etcd::start_in(&u.ns, ETCD_ADDR);
    let net = unique("n");
    let p1 = Namespaces::fresh(2);
    let p2 = Namespaces::fresh(1);
    let p3 = Namespaces::fresh(1);
    let h1 = u.start(1, &net, &["--ports", &p1.csv()]);
    let h2 = u.start(2, &net, &["--ports", &p2.csv()]);
    let p3_spec = format!("{}=192.168.88.30", p3.0[0]);
    let mut h3 = u.start(3, &net, &["--ports", &p3_spec]);

    // Addresses are unique across hosts: host 2's first port gets the
    // lowest address host 1 did not claim.
    assert_eq!(addr_of(&h1, &p1.0[0]), "192.168.88.11");
    assert_eq!(addr_of(&h1, &p1.0[1]), "192.168.88.12");
    assert_eq!(addr_of(&h2, &p2.0[0]), "192.168.88.13");
    assert_eq!(addr_of(&h3, &p3.0[0]), "192.168.88.30");

    // Every pair of hosts, both ways (the directory reaches each host
    // within a moment of the claim: allow it 5 s).
    assert!(
        wait_until(Duration::from_secs(5), || hosts_of(&h1).len() == 2
            && hosts_of(&h2).len() == 2
            && hosts_of(&h3).len() == 2),
        "{}",
        overlay(&h1)
    );
    for (from, to) in [
        (&p1.0[0], "192.168.88.13"),
        (&p1.0[1], "192.168.88.30"),
        (&p2.0[0], "192.168.88.11"),
        (&p2.0[0], "192.168.88.30"),
        (&p3.0[0], "192.168.88.12"),
        (&p3.0[0], "192.168.88.13"),
    ] {
        assert!(ping(from, to), "{from} -> {to}: {}\n{}", h1.log(), h2.log());
    }
    // The gateway is on every host, with one address and one MAC.
    for p in [&p1.0[0], &p2.0[0], &p3.0[0]] {
        assert!(ping(p, "192.168.88.1"), "{p} -> gateway");
    }
    let gw_macs: Vec<String> = [&h1, &h2, &h3]
        .iter()
        .map(|h| {
            let st = h.ctl_json(&["status"]);
            st["gateway_port"]["mac"]
                .as_str()
                .unwrap_or_else(|| panic!("no gateway MAC in {st}"))
                .to_string()
        })
        .collect();
    assert!(gw_macs.iter().all(|m| *m == gw_macs[0]), "{gw_macs:?}");
    // Remote ports are in fdb show, with their host's VTEP.
    let (rows, all) = h1.fdb();
    let h2_mac = h2.mac_of(&p2.0[0]);
    assert!(
        rows.iter().any(|r| r.0 == h2_mac && r.1 == "vxlan"),
        "{all}"
    );
    let row = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == h2_mac.as_str())
        .unwrap();
    assert_eq!(row["vtep"], "10.78.0.2");
    // ARP for remote ports was answered locally.
    assert!(overlay(&h1)["directory"]["arp_answered"].as_u64().unwrap() >= 1);
    assert_eq!(overlay(&h1)["directory"]["connected"], true);
    assert_eq!(overlay(&h1)["mode"], "directory");

    // Host 3's underlay sees nothing of a conversation between hosts 1
    // and 2, ARP included: flush the neighbours, talk, then send host 3 a
    // marker; nothing between hosts 1 and 2 may show up before it (host 3's
    // own multicast, IPv6 neighbour discovery for one, goes everywhere).
    run_ok("ip", &["-n", &p1.0[0], "neigh", "flush", "all"]);
    run_ok("ip", &["-n", &p2.0[0], "neigh", "flush", "all"]);
    let mut cap = Capture::start(&u.hosts[2], "eth0");
    assert!(ping(&p1.0[0], "192.168.88.13"));
    assert!(ping(&p2.0[0], "192.168.88.11"));
    assert!(ping(&p1.0[0], "192.168.88.30"));
    assert!(
        cap.wait_for("> 192.168.88.30: ICMP echo request", Duration::from_secs(5)),
        "{:?}",
        cap.seen
    );
    let leaked: Vec<&String> = cap
        .seen
        .iter()
        .filter(|l| {
            // The inner frames (tcpdump decodes them on the line after
            // the VXLAN header's): anything about host 2's port, ARP
            // included.
            l.contains("192.168.88.13") || (l.contains("10.78.0.1.") && l.contains("10.78.0.2."))
        })
        .collect();
    assert!(leaked.is_empty(), "host 3 saw: {leaked:?}");
    drop(cap);

    // An address held on another host is refused, naming the holder, and
    // nothing is left of the attempt.
    let mut extra = Namespaces::fresh(1);
    let spec = format!("{}=192.168.88.11", extra.0[0]);
    let out = h2.ctl(&["port", "add", &spec]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&p1.0[0]) && err.contains("10.78.0.1"), "{err}");
    assert!(!netns_exists(&extra.0[0]));
    // A free one works, and the others reach it.
    let spec = format!("{}=192.168.88.40", extra.0[0]);
    let out = h2.ctl(&["port", "add", &spec]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ping(&p1.0[0], "192.168.88.40"), "{}", h1.log());
    extra.0.clear(); // deleted with host 2's ports

    // kill -9 of host 3: gone from the others within the lease TTL (10 s)
    // plus the watch; the rest keep working.
    let t0 = Instant::now();
    h3.kill9();
    assert!(
        wait_until(Duration::from_secs(20), || !hosts_of(&h1)
            .contains(&Underlay::vtep(3))
            && !hosts_of(&h2).contains(&Underlay::vtep(3))),
        "{}",
        overlay(&h1)
    );
    let gone = t0.elapsed();
    assert!(gone < Duration::from_secs(20), "took {gone:?}");
    assert!(!ping(&p1.0[0], "192.168.88.30"));
    assert!(ping(&p1.0[0], "192.168.88.13"));
    assert!(ping(&p2.0[0], "192.168.88.12"));
    h2.stop();
    h1.stop();
}

#[test]
fn etcd_lost_and_back_and_refusals() {
    if !root_or_skip("etcd_lost_and_back_and_refusals") {
        return;
    }
    let u = Underlay::new(3);
    let mut etcd = Etcd::start_in(&u.ns, ETCD_ADDR);
    let net = unique("n");
    let p1 = Namespaces::fresh(1);
    let p2 = Namespaces::fresh(2);
    let h1 = u.start(1, &net, &["--ports", &p1.csv()]);
    let h2 = u.start(2, &net, &["--ports", &p2.0[0]]);

    // A host that contradicts the network's record is refused, naming the
    // field and both values; nothing is left behind.
    let p3 = Namespaces::fresh(1);
    let (st, log) = u.refused(3, &net, &["--ports", &p3.0[0], "--subnet", "10.50.0.0/24"]);
    assert!(!st.success());
    assert!(
        log.contains("subnet") && log.contains("10.50.0.0/24") && log.contains("192.168.88.0/24"),
        "{log}"
    );
    assert!(!netns_exists(&p3.0[0]));

    assert!(
        wait_until(Duration::from_secs(5), || ping(&p1.0[0], "192.168.88.12")),
        "{}",
        h1.log()
    );
    // etcd goes: forwarding goes on with what is known.
    etcd.stop();
    assert!(
        wait_until(
            Duration::from_secs(15),
            || overlay(&h1)["directory"]["connected"] == false
        ),
        "{}",
        overlay(&h1)
    );
    assert!(ping(&p1.0[0], "192.168.88.12"));
    assert!(ping(&p2.0[0], "192.168.88.11"));
    // A new host cannot start without etcd: a clear error, quickly.
    let t0 = Instant::now();
    let (st, log) = u.refused(3, &net, &["--ports", &p3.0[0]]);
    assert!(!st.success());
    assert!(log.contains("etcd") && log.contains(ETCD_ADDR), "{log}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(!netns_exists(&p3.0[0]));

    // etcd back: both hosts register again; a new port on host 2 is
    // reachable from host 1.
    etcd.start();
    assert!(
        wait_until(
            Duration::from_secs(20),
            || overlay(&h1)["directory"]["connected"] == true
                && overlay(&h2)["directory"]["connected"] == true
        ),
        "{}\n{}",
        h1.log(),
        h2.log()
    );
    let out = h2.ctl(&["port", "add", &p2.0[1]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = addr_of(&h2, &p2.0[1]);
    assert!(
        wait_until(Duration::from_secs(5), || ping(&p1.0[0], &addr)),
        "{addr}: {}",
        h1.log()
    );
    h2.stop();
    h1.stop();
}
