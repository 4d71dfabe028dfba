//! Root test of `--host-port`: the host on the segment, as with br01. The
//! daemon runs in a namespace of its own (the test's "host"), so the host
//! port's TAP and route never touch the real host's.

mod common;

use common::*;

#[test]
fn host_port_routes_the_subnet_to_its_tap_and_the_host_reaches_the_namespaces() {
    if !root_or_skip("host_port_routes_the_subnet_to_its_tap_and_the_host_reaches_the_namespaces") {
        return;
    }
    let mut ns = Namespaces::fresh(2);
    let host = ns.add_existing();
    run_ok("ip", &["-n", &host, "link", "set", "lo", "up"]);
    let name = unique("h");
    assert!(name.len() <= 15, "{name}");
    let ports = format!("{},{}", ns.0[0], ns.0[1]);
    let d = Daemon::start_in(&host, &name, &["--ports", &ports, "--host-port"]);

    // The host's route to a namespace goes to the TAP named after the
    // instance, before any packet is sent.
    let route = run_ok("ip", &["-n", &host, "route", "get", "192.168.88.11"]);
    assert!(
        route.contains(&format!("dev {name} ")) && route.contains("src 192.168.88.254"),
        "{route}"
    );
    // Then the host reaches the namespaces, and they reach the host.
    assert!(
        ping(&host, "192.168.88.11"),
        "host -> ns01 through the switch"
    );
    assert!(ping(&ns.0[1], "192.168.88.254"), "ns02 -> host");
    // A port of the switch like the others.
    let list = d.ctl_json(&["ports"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name.as_str())
        .unwrap_or_else(|| panic!("no host port in {list}"));
    assert_eq!(row["addr"], "192.168.88.254", "{row}");
    assert_eq!(row["ifname"], name.as_str(), "{row}");
    assert!(row["rx_packets"].as_u64().unwrap() >= 2, "{row}");
    // Its MAC is learned in the MAC table like any port's.
    assert!(
        d.fdb().0.iter().any(|(_, p, _)| *p == name),
        "{:?}",
        d.fdb().0
    );

    // Stopped: the TAP, and with it the route, are gone.
    d.stop();
    assert!(
        !run("ip", &["-n", &host, "link", "show", &name])
            .status
            .success(),
        "TAP {name} left behind"
    );
}
