//! One namespace must not hurt the others: a NAT flood from one port
//! leaves the others able to open flows at once. Root tests.

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
    let st = d.ctl_json(&["status"]);
    let nat = &st["gateway_port"]["nat"];
    assert!(nat["flows"].as_u64().unwrap() <= 501, "{nat}");
    // (Not all 6000 reach vswitchd: the TAP's queue overflows in the
    // namespace's kernel; enough do to pass the share many times over.)
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
    assert!(d.log().contains("holds its whole share"), "{}", d.log());
}
