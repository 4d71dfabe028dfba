//! Root tests of runtime port changes: `vswitchctl port add/del`, and a
//! namespace deleted underneath a running switch.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn port_add_then_ping_port_del_then_gone() {
    if !root_or_skip("port_add_then_ping_port_del_then_gone") {
        return;
    }
    let mut ns = Namespaces::fresh(2);
    let pre = ns.add_existing();
    let d = Daemon::start(&["--ports", &ns.0[0]]);

    // A created namespace gets the lowest free address (.12).
    let added = d.ctl_json(&["port", "add", &ns.0[1]]);
    assert_eq!(added["addr"], "192.168.88.12", "{added}");
    assert!(netns_exists(&ns.0[1]));
    assert!(
        ping(&ns.0[1], "192.168.88.11"),
        "new port cannot reach the first"
    );
    assert!(ping(&ns.0[0], "192.168.88.12"));
    assert!(
        ping(&ns.0[1], "192.168.88.1"),
        "new port cannot reach the gateway"
    );

    // An existing namespace with an explicit address.
    let out = d.ctl(&["port", "add", &format!("{pre}=192.168.88.77")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("192.168.88.77"));
    assert!(ping(&pre, "192.168.88.11"));

    // Refusals: a port twice, a taken address, a bad name.
    let fresh = unique("vz");
    ns.0.push(fresh.clone()); // deleted on drop if it were created
    let fresh_taken = format!("{fresh}=192.168.88.77");
    for (args, want) in [
        (vec!["port", "add", ns.0[1].as_str()], "already a port"),
        (vec!["port", "add", fresh_taken.as_str()], "already taken"),
        (vec!["port", "add", "a/b"], "a/b"),
        (
            vec!["port", "del", "nosuchport"],
            "no port named nosuchport",
        ),
    ] {
        let out = d.ctl(&args);
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!netns_exists(&fresh));

    // port del: the created namespace and the MAC entries go.
    let mac1 = d.mac_of(&ns.0[1]);
    assert!(d.fdb().0.iter().any(|(m, _, _)| *m == mac1));
    let out = d.ctl(&["port", "del", &ns.0[1]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!netns_exists(&ns.0[1]), "created namespace not deleted");
    assert!(
        d.fdb()
            .0
            .iter()
            .all(|(m, p, _)| *m != mac1 && *p != ns.0[1])
    );
    // ...an existing one stays, without our TAP.
    assert!(d.ctl(&["port", "del", &pre]).status.success());
    assert!(netns_exists(&pre));
    assert!(
        !ns_exec(&pre, &["ip", "link", "show", "eth0"])
            .status
            .success()
    );
    let ports = d.ctl_json(&["ports"]);
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
    assert!(ping(&ns.0[0], "192.168.88.1"));
    d.stop();
}

#[test]
fn namespace_deleted_underneath_takes_its_port_down_cleanly() {
    if !root_or_skip("namespace_deleted_underneath_takes_its_port_down_cleanly") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    assert!(ping(&ns.0[2], "192.168.88.11"));
    run_ok("ip", &["netns", "del", &ns.0[2]]);
    let gone = wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["ports"])
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != ns.0[2].as_str())
    });
    assert!(gone, "port of the deleted namespace still listed");
    assert!(
        d.log()
            .contains(&format!("namespace {} was deleted", ns.0[2])),
        "{}",
        d.log()
    );
    assert!(
        ping(&ns.0[0], "192.168.88.12"),
        "the others stopped working"
    );
    assert!(ping(&ns.0[1], "192.168.88.11"));
    d.stop();
}

#[test]
fn metrics_endpoint_answers_with_counters() {
    if !root_or_skip("metrics_endpoint_answers_with_counters") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv(), "--metrics", "127.0.0.1:0"]);
    let addr = d.ctl_json(&["status"])["metrics"]
        .as_str()
        .expect("status names the metrics address")
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(ping(&ns.0[0], "192.168.88.12"));
    // Three frames with a broadcast source: dropped as bad_source.
    let bad = frame([0xff; 6], [0xff; 6], 0x0800, 46);
    assert_eq!(
        send_frames(&ns.0[0], "eth0", &[bad.clone(), bad.clone(), bad], 0),
        3
    );
    assert!(wait_until(
        Duration::from_secs(5),
        || d.port(&ns.0[0])["drops"]["bad_source"].as_u64() == Some(3)
    ));
    let out = run(
        "curl",
        &["-sS", "--max-time", "10", &format!("http://{addr}/metrics")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |series: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let rx = value(&format!(
        "vswitchd_port_rx_packets_total{{port=\"{}\"}}",
        ns.0[0]
    ));
    assert!(rx >= 2, "rx {rx}");
    assert!(
        value(&format!(
            "vswitchd_port_tx_packets_total{{port=\"{}\"}}",
            ns.0[1]
        )) >= 2
    );
    assert!(value("vswitchd_fdb_entries") >= 3);
    assert!(value("vswitchd_fdb_learned_total") >= 2);
    assert!(text.contains("# TYPE vswitchd_port_drops_total counter"));
    assert_eq!(
        value(&format!(
            "vswitchd_port_drops_total{{port=\"{}\",reason=\"bad_source\"}}",
            ns.0[0]
        )),
        3
    );
    assert_eq!(
        value(&format!(
            "vswitchd_port_drops_total{{port=\"{}\",reason=\"bad_source\"}}",
            ns.0[1]
        )),
        0
    );
    d.stop();
}

#[test]
fn metrics_address_in_use_is_refused_before_anything_is_created() {
    if !root_or_skip("metrics_address_in_use_is_refused_before_anything_is_created") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run(
        VSWITCHD,
        &[
            "--name",
            &unique("r"),
            "--ports",
            &ns.csv(),
            "--metrics",
            &addr,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}")),
        "{err}"
    );
    assert!(!netns_exists(&ns.0[0]));
}

#[test]
fn config_file_starts_the_same_topology_and_bad_files_are_refused() {
    if !root_or_skip("config_file_starts_the_same_topology_and_bad_files_are_refused") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let dir = TempDir::new();
    let file = dir.0.join("vsw.toml");
    std::fs::write(
        &file,
        format!(
            "subnet = \"10.77.0.0/24\"\ngateway = \"10.77.0.1\"\naging = 120\n\n\
             [[port]]\nnetns = \"{}\"\n\n[[port]]\nnetns = \"{}\"\naddr = \"10.77.0.99\"\n",
            ns.0[0], ns.0[1]
        ),
    )
    .unwrap();
    let d = Daemon::start(&["--config", &file.to_string_lossy()]);
    let ports = d.ctl_json(&["ports"]);
    let addrs: Vec<&str> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["addr"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["10.77.0.11", "10.77.0.99"]);
    assert_eq!(d.ctl_json(&["status"])["fdb"]["aging_secs"], 120);
    assert!(ping(&ns.0[0], "10.77.0.99"));
    assert!(
        ping(&ns.0[1], "10.77.0.1"),
        "gateway from the file does not answer"
    );
    d.stop();

    // A bad file: refused with file:line, nothing created.
    let fresh = Namespaces::fresh(1);
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[[port]]\nnetns = \"{}\"\n\n[uplink]\nifname = \"up0\"\naddr = \"nonsense\"\n",
            fresh.0[0]
        ),
    )
    .unwrap();
    let out = run(
        VSWITCHD,
        &["--name", &unique("r"), "--config", &bad.to_string_lossy()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:6: uplink.addr", bad.display())),
        "{err}"
    );
    assert!(!netns_exists(&fresh.0[0]));
}

fn trace(d: &Daemon, port: &str, frame: &[&str]) -> Vec<String> {
    let mut args = vec!["trace", "--port", port];
    args.extend_from_slice(frame);
    let v = d.ctl_json(&args);
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn trace_explains_unicast_flood_and_a_routed_nat_frame() {
    if !root_or_skip("trace_explains_unicast_flood_and_a_routed_nat_frame") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    assert!(ping(&ns.0[0], "192.168.88.12"));
    assert!(ping(&ns.0[0], WAN_HOST));

    let t = trace(
        &d,
        &ns.0[0],
        &["ip", "dst=192.168.88.12", "udp", "dport=53"],
    );
    assert!(
        t.iter()
            .any(|s| s.contains(&format!("learned on port {}: unicast", ns.0[1]))),
        "{t:?}"
    );
    assert_eq!(t.last().unwrap(), &format!("egress: port {}", ns.0[1]));

    let t = trace(
        &d,
        &ns.0[0],
        &["eth", "dst=02:00:00:00:99:99", "ip", "dst=192.168.88.77"],
    );
    assert!(
        t.iter().any(|s| s.contains("flood, unknown unicast")),
        "{t:?}"
    );
    assert!(
        t.last().unwrap().contains(&ns.0[1]) && t.last().unwrap().contains(&ns.0[2]),
        "{t:?}"
    );

    let t = trace(
        &d,
        &ns.0[0],
        &["ip", "dst=10.99.0.1", "udp", "sport=40000,dport=53"],
    );
    let text = t.join("\n");
    for want in [
        "to the gateway port",
        "route to 10.99.0.1: connected, dev uplink",
        "TTL 64 -> 63",
        "new flow udp 192.168.88.11:40000 -> 10.99.0.1:53 would be created, translated to 10.99.0.2:40000",
        "next hop 10.99.0.1 is at",
        "egress: uplink",
    ] {
        assert!(text.contains(want), "missing '{want}' in:\n{text}");
    }
    let t = trace(&d, &ns.0[1], &["ip", "dst=10.99.0.1,ttl=1", "udp"]);
    assert!(t.last().unwrap().contains("Time Exceeded"), "{t:?}");

    // From the uplink: the reply to the ping above finds its flow and goes
    // to the first port; an unsolicited datagram does not get in.
    let flows = d.ctl_json(&["nat", "show"]);
    let echo = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["proto"] == "icmp")
        .expect("the ping's flow")
        .clone();
    let id = echo["reply"]["id"].as_u64().unwrap().to_string();
    let v = d.ctl_json(&[
        "trace",
        "--uplink",
        "ip",
        "dst=10.99.0.2",
        "icmp",
        &format!("type=0,id={id}"),
    ]);
    let text = v["steps"].to_string();
    assert!(text.contains("translated to 192.168.88.11:"), "{text}");
    assert!(text.contains(&format!("to port {}", ns.0[0])), "{text}");
    let v = d.ctl_json(&[
        "trace",
        "--uplink",
        "ip",
        "dst=10.99.0.2",
        "udp",
        "sport=53,dport=40001",
    ]);
    assert!(v["steps"].to_string().contains("nat_no_flow"), "{v}");

    // Nothing was learned or created by tracing: a new source MAC is only
    // "would be learned", and the traced NAT flow does not exist.
    let t = trace(
        &d,
        &ns.0[0],
        &["eth", "src=02:00:00:00:77:77", "ip", "dst=192.168.88.12"],
    );
    assert!(
        t.iter()
            .any(|s| s.contains("02:00:00:00:77:77 is new: would be learned")),
        "{t:?}"
    );
    assert!(d.fdb().0.iter().all(|(m, _, _)| m != "02:00:00:00:77:77"));
    let flows = d.ctl_json(&["nat", "show"]);
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["original"]["sport"] != 40000),
        "{flows}"
    );
    let out = d.ctl(&["trace", "--port", &ns.0[0], "nonsense"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("frame description"));
    d.stop();
}

#[test]
fn list_abbreviations_fdb_port_filter_and_a_not_running_error_that_helps() {
    if !root_or_skip("list_abbreviations_fdb_port_filter_and_a_not_running_error_that_helps") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    assert!(ping(&ns.0[0], "192.168.88.12"));
    let list = run_ok(VSWITCHCTL, &["list"]);
    assert!(list.lines().any(|l| l.starts_with(&d.name)), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(VSWITCHCTL, &["--json", "list"])).unwrap();
    assert_eq!(json[&d.name]["ports"], 2, "{json}");
    // Abbreviated verbs, as clap infers them.
    assert!(stdout(&d.ctl(&["stat"])).contains("192.168.88.0/24"));
    // fdb show --port: only that port's rows.
    let out = stdout(&d.ctl(&["fdb", "show", "--port", &ns.0[0]]));
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(':'))
        .filter(|l| !l.starts_with("MAC table"))
        .collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|l| l.starts_with(&ns.0[0])),
        "{out}"
    );
    // show: one overview, as text and as a Graphviz graph.
    let show = stdout(&d.ctl(&["show"]));
    assert!(show.contains("gateway 192.168.88.1"), "{show}");
    for n in &ns.0 {
        assert!(
            show.lines()
                .any(|l| l.trim_start().starts_with(&format!("port {n}"))),
            "{show}"
        );
    }
    let dot = stdout(&d.ctl(&["show", "--format", "dot"]));
    assert!(
        dot.starts_with("graph ") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    assert!(dot.contains(&format!("switch -- \"{}\"", ns.0[1])), "{dot}");
    // The log level at run time: debug events appear, a bad level is
    // refused and changes nothing.
    let out = d.ctl(&["log-level", "debug"]);
    assert!(out.status.success(), "{out:?}");
    let bad = d.ctl(&["log-level", "verbose"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--log-level"),
        "{bad:?}"
    );
    assert!(d.log().contains("log level set to debug"), "{}", d.log());
    assert!(stdout(&d.ctl(&["log-level", "info"])).contains("log level set to info"));
    // An instance that is not running: the error names the ones that are.
    let bad = run(VSWITCHCTL, &["--name", "nosuchinst", "status"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("no vswitchd instance named nosuchinst") && err.contains(&d.name),
        "{err}"
    );
    d.stop();
}
