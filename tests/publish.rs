//! Root tests of published ports and service addresses (`--publish`,
//! `vswitchctl publish`): a 'wan' test host reaches a port published on the
//! uplink's address, a namespace reaches a service address and its own
//! published port (hairpin), connections spread over the backends, and the
//! backends see who called. Traffic only goes to addresses inside the
//! namespaces each test creates.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SVC: &str = "10.96.0.10";
const GATEWAY: &str = "192.168.88.1";

/// `who-clients` from `ns` to `addr:port`, `n` times: answers per backend
/// name, and every caller address the backends saw. Panics on a failure.
fn who(
    ns: &str,
    addr: &str,
    port: u16,
    n: usize,
    proto: &str,
) -> (BTreeMap<String, usize>, Vec<String>) {
    let out = ns_exec(
        ns,
        &[
            "python3",
            &netpeer(),
            "who-clients",
            addr,
            &port.to_string(),
            &n.to_string(),
            proto,
        ],
    );
    let text = stdout(&out);
    let mut per = BTreeMap::new();
    let mut callers = Vec::new();
    for line in text.lines() {
        let (name, peer) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{proto} {addr}:{port} from {ns}: {line:?} in {text}"));
        assert!(name != "failed:", "{proto} {addr}:{port} from {ns}: {line}");
        *per.entry(name.to_string()).or_insert(0) += 1;
        callers.push(peer.to_string());
    }
    assert_eq!(
        per.values().sum::<usize>(),
        n,
        "{proto} {addr}:{port}: {text}"
    );
    (per, callers)
}

fn servers(ns: &Namespaces, names: &[usize]) -> Vec<Background> {
    names
        .iter()
        .map(|&i| {
            Background::start(
                &ns.0[i],
                &[
                    "python3",
                    "-u",
                    &netpeer(),
                    "who-server",
                    &format!("b{i}"),
                    "80",
                ],
                "listening",
            )
        })
        .collect()
}

#[test]
fn published_ports_and_service_addresses_spread_over_the_backends() {
    if !root_or_skip("published_ports_and_service_addresses_spread_over_the_backends") {
        return;
    }
    let ns = Namespaces::fresh(3);
    let wan = WanHost::new();
    let (b0, b1) = (ns.0[0].clone(), ns.0[1].clone());
    let tcp = format!("8080={b0}:80,{b1}:80");
    let udp = format!("8053/udp={b0}:80,{b1}:80");
    let svc = format!("{SVC}:80={b0}:80,{b1}:80");
    let svc_udp = format!("{SVC}:53/udp={b0}:80,{b1}:80");
    let d = start_with_uplink(
        &ns,
        &wan,
        &[
            "--publish",
            &tcp,
            "--publish",
            &udp,
            "--publish",
            &svc,
            "--publish",
            &svc_udp,
        ],
    );
    let _servers = servers(&ns, &[0, 1]);

    // From outside, to the uplink's address: both backends, each at least
    // 10 of 40, and each sees the wan host's own address.
    for (port, proto) in [(8080, "tcp"), (8053, "udp")] {
        let (per, callers) = who(&wan.ns, UPLINK_ADDR, port, 40, proto);
        assert!(
            per.values().all(|&n| n >= 10) && per.len() == 2,
            "{proto}: {per:?}"
        );
        assert!(
            callers.iter().all(|c| c == WAN_HOST),
            "{proto}: {callers:?}"
        );
    }
    // From a third namespace, to the service address (TCP and UDP): both
    // backends; the source is the gateway's (hairpin masquerade).
    for (port, proto) in [(80, "tcp"), (53, "udp")] {
        let (per, callers) = who(&ns.0[2], SVC, port, 40, proto);
        assert!(
            per.values().all(|&n| n >= 10) && per.len() == 2,
            "{proto}: {per:?}"
        );
        assert!(callers.iter().all(|c| c == GATEWAY), "{proto}: {callers:?}");
    }
    // A backend reaching its own published port (hairpin): answers, also
    // from itself.
    let (per, _) = who(&b0, UPLINK_ADDR, 8080, 10, "tcp");
    assert!(per.get("b0").is_some_and(|&n| n >= 3), "{per:?}");
    let (per, _) = who(&b0, UPLINK_ADDR, 8053, 10, "udp");
    assert!(per.get("b0").is_some_and(|&n| n >= 3), "{per:?}");

    // The views: flows with their front end and backend; per-backend
    // counters in publish show, status and metrics.
    let keep = Background::start(
        &wan.ns,
        &[
            "python3",
            "-u",
            "-c",
            &format!(
                "import socket,time; c=socket.create_connection(('{UPLINK_ADDR}',8080)); print('connected', flush=True); time.sleep(30)"
            ),
        ],
        "connected",
    );
    let flows = d.ctl_json(&["nat", "show"]);
    let published: Vec<&serde_json::Value> = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["front"] == "8080/tcp" && f["original"]["src"] == WAN_HOST)
        .collect();
    assert!(!published.is_empty(), "{flows}");
    assert!(
        published
            .iter()
            .all(|f| f["backend"] == b0.as_str() || f["backend"] == b1.as_str())
    );
    let text = stdout(&d.ctl(&["nat", "show"]));
    assert!(text.contains("published 8080/tcp ->"), "{text}");
    // Filters: a port's flows, its own and those to it as a backend.
    let b1_flows = d.ctl_json(&["nat", "show", "--port", &b1, "--proto", "tcp"]);
    let rows = b1_flows["flows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{b1_flows}");
    for f in rows {
        let ends = [
            &f["original"]["src"],
            &f["original"]["dst"],
            &f["reply"]["src"],
        ];
        assert!(
            ends.iter().any(|a| *a == "192.168.88.12") && f["proto"] == "tcp",
            "{f}"
        );
    }
    // nat del of one connection, by its original direction.
    let open = published[0];
    let src = format!("{WAN_HOST}:{}", open["original"]["sport"]);
    let out = d.ctl(&["nat", "del", "tcp", &src, &format!("{UPLINK_ADDR}:8080")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = d.ctl_json(&["nat", "show", "--inside", WAN_HOST]);
    assert!(
        after["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["original"]["src"] != WAN_HOST
                || f["original"]["sport"] != open["original"]["sport"]),
        "{after}"
    );
    let out = d.ctl(&["nat", "del", "tcp", &src, &format!("{UPLINK_ADDR}:8080")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no tcp flow"));
    drop(keep);
    let show = d.ctl_json(&["publish", "show"]);
    let front = show
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["front"] == "8080/tcp")
        .unwrap()
        .clone();
    let conns: u64 = front["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["connections"].as_u64().unwrap())
        .sum();
    assert!(conns >= 50, "{front}");
    let status = d.ctl_json(&["status"]);
    assert_eq!(
        status["gateway_port"]["published"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "{status}"
    );

    // trace shows the choice the datapath would make.
    let out = d.ctl(&[
        "trace",
        "--uplink",
        "ip",
        "src=10.99.0.1,dst=10.99.0.2",
        "tcp",
        "sport=5555,dport=8080,flags=S",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("to published 8080/tcp: backend"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.ctl(&[
        "trace",
        "--port",
        &ns.0[2],
        "ip",
        &format!("dst={SVC}"),
        "udp",
        "sport=5555,dport=53",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("source to the gateway 192.168.88.1 (hairpin)"),
        "{text}"
    );

    // Withdrawn: the port no longer answers; published again with one
    // backend: everything goes there.
    assert!(d.ctl(&["publish", "del", "8080"]).status.success());
    let t = Instant::now();
    let out = ns_exec(
        &wan.ns,
        &[
            "python3",
            &netpeer(),
            "who-clients",
            UPLINK_ADDR,
            "8080",
            "1",
            "tcp",
        ],
    );
    assert!(stdout(&out).starts_with("failed:"), "{}", stdout(&out));
    assert!(t.elapsed() < Duration::from_secs(5));
    let one = format!("8080={b1}:80");
    let out = d.ctl(&["publish", "add", &one]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (per, _) = who(&wan.ns, UPLINK_ADDR, 8080, 10, "tcp");
    assert_eq!(per.get("b1"), Some(&10), "{per:?}");

    // Refused, naming the culprit, and nothing changed.
    let before = d.ctl_json(&["publish", "show"]);
    for (spec, says) in [
        ("9090=nosuchns:80", "nosuchns"),
        ("8080=x:80", "published already"),
        ("192.168.88.1:80=x:80", "gateway's own address"),
        ("9090=x:0", "port 0"),
    ] {
        let spec = spec.replace("=x:", &format!("={b0}:"));
        let out = d.ctl(&["publish", "add", &spec]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{spec}: {err}");
    }
    assert_eq!(d.ctl_json(&["publish", "show"]), before);

    // A backend's port goes: out of the rotation.
    assert!(d.ctl(&["port", "del", &b1]).status.success());
    let show = d.ctl_json(&["publish", "show"]);
    let f = show
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["front"] == format!("{SVC}:80/tcp"))
        .unwrap()
        .clone();
    assert!(
        f["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["addr"].is_null()),
        "{f}"
    );
    let (per, _) = who(&ns.0[2], SVC, 80, 6, "tcp");
    assert_eq!(per.get("b0"), Some(&6), "{per:?}");
}

#[test]
fn a_bad_publish_spec_is_refused_before_anything_is_created() {
    if !root_or_skip("a_bad_publish_spec_is_refused_before_anything_is_created") {
        return;
    }
    let ns = Namespaces::fresh(1);
    // vswitchd with `publish` as its --publish options: its stderr, and
    // that it refused to start.
    let start = |publish: &[&str]| {
        let name = unique("vpb");
        let csv = ns.csv();
        let mut args = vec!["--name", name.as_str(), "--ports", csv.as_str()];
        for p in publish {
            args.extend(["--publish", p]);
        }
        let out = run(VSWITCHD, &args);
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            !out.status.success(),
        )
    };
    for (spec, says) in [
        ("80=nosuchns:80".to_string(), "nosuchns"),
        (format!("80={}:70000", ns.0[0]), "70000"),
        (
            format!("192.168.88.1:80={}:80", ns.0[0]),
            "gateway's own address",
        ),
        (
            format!("192.168.88.50:80={}:80", ns.0[0]),
            "inside the subnet",
        ),
    ] {
        let (err, refused) = start(&[&spec]);
        assert!(refused, "{spec} accepted");
        assert!(
            err.contains("--publish") && err.contains(says),
            "{spec}: {err}"
        );
        assert!(!netns_exists(&ns.0[0]), "{spec}: a namespace was created");
    }
    let twice = format!("80={}:80", ns.0[0]);
    let (err, refused) = start(&[&twice, &twice]);
    assert!(refused && err.contains("given twice"), "{err}");
    let out = run(
        VSWITCHD,
        &[
            "--name",
            &unique("vpb"),
            "--ports",
            &ns.csv(),
            "--no-nat",
            "--publish",
            &twice,
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-nat"));
}
