//! The VXLAN overlay in static mode (`--vtep`, `--vxlan-peer`, `--vni`),
//! with real namespaces: against the Linux kernel's own `vxlan` device, and
//! between two vswitchd instances. The underlay is a veth pair per test with
//! its own 10.77.N.0/24; every namespace and interface is removed on drop.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// A host that speaks VXLAN with the kernel: a namespace reached over a
/// veth pair (root end `10.77.N.1`, its end `u0` `10.77.N.2`) with a
/// `vxlan` device (VNI `vni`, port 4789, flooding to `10.77.N.1` with an
/// all-zeros fdb entry) holding `192.168.88.50/24`.
struct KernelVtep {
    ns: String,
    veth: String,
    root_addr: String,
    addr: String,
}

impl KernelVtep {
    fn new(n: u8, vni: u32) -> KernelVtep {
        let k = KernelVtep {
            ns: unique("vk"),
            veth: unique("vv"),
            root_addr: format!("10.77.{n}.1"),
            addr: format!("10.77.{n}.2"),
        };
        let ns = k.ns.as_str();
        let (root_cidr, cidr, vni) = (
            format!("{}/24", k.root_addr),
            format!("{}/24", k.addr),
            vni.to_string(),
        );
        run_ok("ip", &["netns", "add", ns]);
        run_ok(
            "ip",
            &[
                "link", "add", &k.veth, "type", "veth", "peer", "name", "u0", "netns", ns,
            ],
        );
        run_ok("ip", &["addr", "add", &root_cidr, "dev", &k.veth]);
        run_ok("ip", &["link", "set", &k.veth, "up"]);
        for args in [
            vec!["addr", "add", cidr.as_str(), "dev", "u0"],
            vec!["link", "set", "u0", "up"],
            vec!["link", "set", "lo", "up"],
            vec![
                "link",
                "add",
                "vx0",
                "type",
                "vxlan",
                "id",
                vni.as_str(),
                "dstport",
                "4789",
                "local",
                k.addr.as_str(),
                "dev",
                "u0",
            ],
            vec!["addr", "add", "192.168.88.50/24", "dev", "vx0"],
            vec!["link", "set", "vx0", "up"],
        ] {
            let mut a = vec!["-n", ns];
            a.extend(args.iter().copied());
            run_ok("ip", &a);
        }
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "bridge",
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vx0",
                "dst",
                &k.root_addr,
            ],
        );
        k
    }
}

impl Drop for KernelVtep {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Downloads `path` from `server` (an HTTP server at `addr`:8080 in
/// namespace `server_ns`) into namespace `client_ns` and returns the bytes.
fn fetch(client_ns: &str, url: &str) -> Vec<u8> {
    let out = ns_exec(client_ns, &["curl", "-s", "--max-time", "20", url]);
    assert!(out.status.success(), "curl {url} from {client_ns}: {out:?}");
    out.stdout
}

/// vswitchd with the ports `ns`, on VNI 42, peering with `k`.
fn start_against(k: &KernelVtep, ns: &Namespaces) -> Daemon {
    Daemon::start(&[
        "--ports",
        &ns.csv(),
        "--vtep",
        &k.root_addr,
        "--vxlan-peer",
        &k.addr,
        "--vni",
        "42",
    ])
}

#[test]
fn kernel_vxlan_device_and_vswitchd_share_one_segment() {
    if !root_or_skip("kernel_vxlan_device_and_vswitchd_share_one_segment") {
        return;
    }
    let k = KernelVtep::new(1, 42);
    let ns = Namespaces::fresh(1);
    let d = start_against(&k, &ns);
    // The TAP MTU leaves room for VXLAN on the 1500-byte underlay.
    let link = run_ok("ip", &["-n", &ns.0[0], "link", "show", "eth0"]);
    assert!(link.contains("mtu 1450"), "{link}");

    // Both ways, and tcpdump on the underlay decodes VXLAN with VNI 42.
    let mut cap = Capture::start(&k.ns, "u0");
    assert!(ping(&ns.0[0], "192.168.88.50"), "{}", d.log());
    assert!(ping(&k.ns, "192.168.88.11"), "{}", d.log());
    assert!(
        cap.wait_for("vni 42", Duration::from_secs(5)),
        "{:?}",
        cap.seen
    );

    // The kernel host's MAC is learned on the overlay port with its VTEP.
    let fdb = d.ctl_json(&["fdb", "show"]);
    let remote = fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["port"] == "vxlan")
        .unwrap_or_else(|| panic!("no entry on the overlay port: {fdb}"));
    assert_eq!(remote["vtep"], k.addr.as_str(), "{fdb}");
    let ov = d.ctl_json(&["overlay"]);
    assert_eq!(ov["vni"], 42);
    assert_eq!(ov["hosts"][0]["vtep"], k.addr.as_str(), "{ov}");
    assert!(ov["hosts"][0]["rx_packets"].as_u64().unwrap() >= 2, "{ov}");
    assert!(ov["hosts"][0]["macs"].as_u64().unwrap() >= 1, "{ov}");

    // TCP both ways with full-size segments (the kernel hands over
    // super-frames; they must arrive whole and byte-identical).
    let dir = TempDir::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(dir.0.join("f.bin"), &data).unwrap();
    let dir_s = dir.0.to_str().unwrap();
    {
        let _srv = http_server(&k.ns, "192.168.88.50", dir_s);
        let got = fetch(&ns.0[0], "http://192.168.88.50:8080/f.bin");
        assert!(got == data, "kernel -> vswitchd: {} bytes", got.len());
    }
    {
        let _srv = http_server(&ns.0[0], "192.168.88.11", dir_s);
        let got = fetch(&k.ns, "http://192.168.88.11:8080/f.bin");
        assert!(got == data, "vswitchd -> kernel: {} bytes", got.len());
    }
}

#[test]
fn another_vni_is_dropped_and_counted_and_a_too_big_mtu_is_refused() {
    if !root_or_skip("another_vni_is_dropped_and_counted_and_a_too_big_mtu_is_refused") {
        return;
    }
    let k = KernelVtep::new(2, 43);
    let ns = Namespaces::fresh(1);
    // An MTU the underlay cannot carry is refused before anything exists.
    let out = Command::new(VSWITCHD)
        .args(["--name", &unique("t"), "--ports", &ns.csv()])
        .args([
            "--vtep",
            &k.root_addr,
            "--vxlan-peer",
            &k.addr,
            "--mtu",
            "1480",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--mtu 1480")
            && err.contains("MTU 1500")
            && err.contains("at most --mtu 1450"),
        "{err}"
    );
    assert!(
        !netns_exists(&ns.0[0]),
        "a refused start created {}",
        ns.0[0]
    );

    let d = start_against(&k, &ns);
    // The kernel host is on VNI 43: its frames are dropped, counted.
    let _ = ns_exec(
        &k.ns,
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "192.168.88.11"],
    );
    let ok = wait_until(Duration::from_secs(5), || {
        d.ctl_json(&["overlay"])["drops"]["vxlan_wrong_vni"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    assert!(ok, "{}", d.ctl_json(&["overlay"]));
    assert!(!ping(&ns.0[0], "192.168.88.50"));
}

#[test]
fn two_vswitchd_hosts_are_one_segment() {
    if !root_or_skip("two_vswitchd_hosts_are_one_segment") {
        return;
    }
    // The underlay: a veth pair, both ends in this namespace (10.77.3.1 and
    // 10.77.3.2), one VTEP each.
    let (a_if, b_if) = (unique("va"), unique("vb"));
    struct Link(String);
    impl Drop for Link {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    run_ok(
        "ip",
        &["link", "add", &a_if, "type", "veth", "peer", "name", &b_if],
    );
    let _link = Link(a_if.clone());
    run_ok("ip", &["addr", "add", "10.77.3.1/24", "dev", &a_if]);
    run_ok("ip", &["addr", "add", "10.77.3.2/24", "dev", &b_if]);
    run_ok("ip", &["link", "set", &a_if, "up"]);
    run_ok("ip", &["link", "set", &b_if, "up"]);
    let a = Namespaces::fresh(2);
    let b = Namespaces::fresh(1);
    let _da = Daemon::start(&[
        "--ports",
        &a.csv(),
        "--vtep",
        "10.77.3.1",
        "--vxlan-peer",
        "10.77.3.2",
    ]);
    let b_port = format!("{}=192.168.88.21", b.0[0]);
    let _db = Daemon::start(&[
        "--ports",
        &b_port,
        "--vtep",
        "10.77.3.2",
        "--vxlan-peer",
        "10.77.3.1",
    ]);
    assert!(ping(&a.0[0], "192.168.88.21"));
    assert!(ping(&a.0[1], "192.168.88.21"));
    assert!(ping(&b.0[0], "192.168.88.12"));
    assert!(ping(&a.0[0], "192.168.88.12"), "local traffic still local");
}
