//! Unit tests of the command line, the config file and validation.

use super::*;
use crate::gateway::WanAddr;
use clap::Parser;
use std::net::Ipv4Addr;

fn cfg(args: &[&str]) -> Result<Config, String> {
    let mut v = vec!["vswitchd"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v)
        .unwrap()
        .into_config()
        .map_err(String::from)
}

#[test]
fn defaults_follow_the_seeds() {
    let c = cfg(&["--ports", "ns01,ns02"]).unwrap();
    assert_eq!(c.name, "vsw0");
    assert_eq!(c.ifname, "eth0");
    assert_eq!(c.subnet.to_string(), "192.168.88.0/24");
    assert_eq!(c.gateway, Ipv4Addr::new(192, 168, 88, 1));
    assert_eq!(c.aging_secs, 300);
    assert_eq!(c.fdb_max, 8192);
    assert_eq!(c.mtu, 1500);
    assert_eq!(
        c.ports,
        vec![
            PortSpec {
                netns: "ns01".into(),
                addr: Ipv4Addr::new(192, 168, 88, 11),
                explicit: false,
            },
            PortSpec {
                netns: "ns02".into(),
                addr: Ipv4Addr::new(192, 168, 88, 12),
                explicit: false,
            },
        ]
    );
}

#[test]
fn explicit_addresses_and_repeated_flags() {
    let c = cfg(&[
        "--ports",
        "a=192.168.88.50",
        "--ports",
        "b,c=192.168.88.60/24",
    ])
    .unwrap();
    let addrs: Vec<String> = c.ports.iter().map(|p| p.addr.to_string()).collect();
    assert_eq!(addrs, ["192.168.88.50", "192.168.88.12", "192.168.88.60"]);
}

#[test]
fn refusals_name_the_culprit() {
    let cases: &[(&[&str], &str)] = &[
        (&["--ports", "a,a"], "namespace a is listed twice"),
        (&["--ports", "a/b"], "a/b"),
        (&["--ports", ".."], "'..'"),
        (&["--ports", "a,,b"], "cannot be empty"),
        (&["--ports", "a=10.0.0.5"], "port a: address 10.0.0.5"),
        (&["--ports", "a=192.168.88.1"], "gateway"),
        (&["--ports", "a=192.168.88.255"], "192.168.88.255"),
        (
            &["--ports", "a=192.168.88.12,b"],
            "port b: address 192.168.88.12 is already taken by port a",
        ),
        (&["--ports", "a=192.168.88.5/16"], "prefix /16"),
        (&["--ports", "a=300.1.1.1"], "'300.1.1.1'"),
        (
            &[
                "--ports",
                "a,b,c,d,e",
                "--subnet",
                "10.0.0.0/28",
                "--gateway",
                "10.0.0.1",
            ],
            "too small for 5 ports: port e",
        ),
        (&["--ports", "a", "--subnet", "10.0.0.0/31"], "too small"),
        (
            &["--ports", "a", "--subnet", "10.0.0.1/24"],
            "did you mean 10.0.0.0/24",
        ),
        (
            &["--ports", "a", "--ifname", "abcdefghijklmnop"],
            "16 bytes",
        ),
        (
            &["--ports", "a", "--ifname", "a b"],
            "not a valid interface name",
        ),
        (&["--ports", "a", "--name", "../x"], "--name"),
        (
            &["--ports", "a", "--gateway", "10.1.1.1"],
            "--gateway 10.1.1.1",
        ),
        (&["--ports", "a", "--aging", "0"], "--aging"),
        (&["--ports", "a", "--fdb-max", "0"], "--fdb-max"),
        (&["--ports", "a", "--mtu", "10"], "--mtu"),
    ];
    for (args, want) in cases {
        let err = cfg(args).unwrap_err();
        assert!(err.contains(want), "{args:?}: '{err}' lacks '{want}'");
        assert!(
            !err.contains('\n'),
            "{args:?}: error is not one line: {err}"
        );
    }
}

#[test]
fn uplink_options() {
    let c = cfg(&[
        "--ports",
        "a",
        "--uplink",
        "veth0",
        "--uplink-addr",
        "10.99.0.2/24",
        "--uplink-gw",
        "10.99.0.1",
    ])
    .unwrap();
    let u = c.uplink.unwrap();
    assert_eq!(u.addr, WanAddr::Static(Ipv4Addr::new(10, 99, 0, 2), 24));
    assert_eq!(u.gw, Some(Ipv4Addr::new(10, 99, 0, 1)));
    assert_eq!(c.nat.unwrap().max_flows, 65_536);
    let c = cfg(&[
        "--ports",
        "a",
        "--uplink",
        "veth0",
        "--uplink-addr",
        "dhcp",
        "--no-nat",
    ])
    .unwrap();
    assert_eq!(c.uplink.unwrap().addr, WanAddr::Dhcp);
    assert!(c.nat.is_none());
    let cases: &[(&[&str], &str)] = &[
        (
            &["--ports", "a", "--uplink-addr", "dhcp"],
            "--uplink-addr needs --uplink",
        ),
        (
            &["--ports", "a", "--uplink", "veth0"],
            "needs --uplink-addr",
        ),
        (
            &[
                "--ports",
                "a",
                "--uplink",
                "veth0",
                "--uplink-addr",
                "10.99.0.2",
            ],
            "ADDRESS/PREFIX",
        ),
        (
            &[
                "--ports",
                "a",
                "--uplink",
                "veth0",
                "--uplink-addr",
                "192.168.88.200/24",
            ],
            "overlaps",
        ),
        (
            &[
                "--ports",
                "a",
                "--uplink",
                "veth0",
                "--uplink-addr",
                "10.99.0.0/24",
            ],
            "not a host address",
        ),
        (
            &[
                "--ports",
                "a",
                "--uplink",
                "veth0",
                "--uplink-addr",
                "10.99.0.2/24",
                "--uplink-gw",
                "10.98.0.1",
            ],
            "--uplink-gw 10.98.0.1",
        ),
        (
            &[
                "--ports",
                "a",
                "--uplink",
                "veth0",
                "--uplink-addr",
                "10.99.0.2/24",
                "--uplink-mac",
                "ff:ff:ff:ff:ff:ff",
            ],
            "--uplink-mac",
        ),
        (
            &[
                "--ports",
                "a",
                "--uplink",
                "this-is-too-long-x",
                "--uplink-addr",
                "dhcp",
            ],
            "--uplink",
        ),
        (&["--ports", "a", "--nat-ports", "2000-1000"], "--nat-ports"),
        (&["--ports", "a", "--nat-max", "0"], "--nat-max"),
        (
            &["--ports", "a", "--nat-udp-timeout", "0"],
            "--nat-udp-timeout",
        ),
    ];
    for (args, want) in cases {
        let err = cfg(args).unwrap_err();
        assert!(err.contains(want), "{args:?}: '{err}' lacks '{want}'");
    }
}

fn from_file(toml: &str, args: &[&str]) -> Result<Config, String> {
    use clap::CommandFactory;
    let dir = std::env::temp_dir().join(format!("vswitchd-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One file per call: tests run in parallel, and two files of the same
    // length used to share a name.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("t{n}.toml"));
    std::fs::write(&path, toml).unwrap();
    let mut v = vec![
        "vswitchd".to_string(),
        "--config".into(),
        path.display().to_string(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    let m = Cli::command().try_get_matches_from(v).unwrap();
    let r = Cli::parse_with_file(&m)
        .map_err(String::from)
        .and_then(|(cli, o)| cli.into_config().map_err(|e| o.locate(e)));
    let _ = std::fs::remove_file(&path);
    r.map_err(|e| e.replace(&path.display().to_string(), "FILE"))
}

#[test]
fn config_file_says_what_the_command_line_says() {
    let c = from_file(
        r#"
name = "lab"
subnet = "10.7.0.0/24"
gateway = "10.7.0.1"
aging = 60
fdb_max = 100

[[port]]
netns = "a"

[[port]]
netns = "b"
addr = "10.7.0.50"

[uplink]
ifname = "up0"
addr = "10.99.0.2/24"
gw = "10.99.0.1"

[nat]
max = 1000
udp_timeout = 300
"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.name, "lab");
    assert_eq!(c.aging_secs, 60);
    assert_eq!(c.ports[0].addr, Ipv4Addr::new(10, 7, 0, 11));
    assert_eq!(c.ports[1].addr, Ipv4Addr::new(10, 7, 0, 50));
    assert_eq!(c.uplink.as_ref().unwrap().ifname, "up0");
    let nat = c.nat.unwrap();
    assert_eq!(nat.max_flows, 1000);
    assert_eq!(nat.timeouts.udp, 300_000);
}

#[test]
fn command_line_overrides_the_file() {
    let c = from_file(
        "name = \"lab\"\naging = 60\n[[port]]\nnetns = \"a\"\n",
        &["--aging", "90", "--ports", "x,y"],
    )
    .unwrap();
    assert_eq!(c.name, "lab");
    assert_eq!(c.aging_secs, 90);
    let names: Vec<&str> = c.ports.iter().map(|p| p.netns.as_str()).collect();
    assert_eq!(names, ["x", "y"]);
}

#[test]
fn bad_config_files_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "aging = 60\nsubnet = \"10.0.0.1/24\"\n",
            "FILE:2: subnet '10.0.0.1/24' has host bits",
        ),
        (
            "[[port]]\nnetns = \"a\"\n\n[[port]]\nnetns = \"b\"\naddr = \"1.2.3.4\"\n",
            "FILE:4: port b",
        ),
        (
            "[[port]]\nnetns = \"a\"\n[[port]]\nnetns = \"a\"\n",
            "FILE:3: namespace a is listed twice",
        ),
        ("aging = \"soon\"\n", "FILE:1:"),
        ("[[port]]\nnetns = \"a\"\nbogus = 1\n", "FILE:3:"),
        (
            "[[port]]\nnetns = \"a\"\n[uplink]\nifname = \"up0\"\naddr = \"10.9.9.9\"\n",
            "FILE:5: uplink.addr",
        ),
        ("mtu = 5\n[[port]]\nnetns = \"a\"\n", "FILE:1: mtu 5"),
        ("name = [\n", "FILE:"),
        // Located by the port's key although the message names no "port a/b".
        (
            "[[port]]\nnetns = \"a/b\"\n",
            "FILE:1: namespace name 'a/b'",
        ),
        (
            "subnet = \"10.0.0.0/28\"\ngateway = \"10.0.0.1\"\n[[port]]\nnetns = \"a\"\n\
             [[port]]\nnetns = \"b\"\n[[port]]\nnetns = \"c\"\n[[port]]\nnetns = \"d\"\n\
             [[port]]\nnetns = \"e\"\n",
            "FILE:1: subnet 10.0.0.0/28 is too small for 5 ports: port e",
        ),
    ];
    for (toml, want) in cases {
        let err = from_file(toml, &[]).unwrap_err();
        assert!(err.contains(want), "{toml:?}: '{err}' lacks '{want}'");
        assert!(!err.contains('\n'), "{err}");
    }
    assert!(from_file("", &[]).unwrap_err().contains("no ports"));
}

#[test]
fn subnet_small_but_sufficient() {
    // /28 has hosts 1..14: one port gets .11, which fits.
    let c = cfg(&[
        "--ports",
        "a",
        "--subnet",
        "10.0.0.0/28",
        "--gateway",
        "10.0.0.1",
    ])
    .unwrap();
    assert_eq!(c.ports[0].addr, Ipv4Addr::new(10, 0, 0, 11));
}

#[test]
fn errors_carry_the_key_of_the_setting_at_fault() {
    let err = |args: &[&str]| {
        let mut v = vec!["vswitchd"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().into_config().unwrap_err()
    };
    let e = err(&["--ports", "a", "--mtu", "10"]);
    assert_eq!(e.key, Some(Key::Opt("mtu")));
    assert_eq!(e.to_string(), "--mtu 10 must be 68..65521");
    let e = err(&["--ports", "a=192.168.88.12,b"]);
    assert_eq!(e.key, Some(Key::Port("b".into())));
    let e = err(&["--ports", "a", "--uplink", "up0", "--uplink-addr", "x"]);
    assert_eq!(e.key, Some(Key::Opt("uplink_addr")));
    assert_eq!(err(&[]).key, None);
    // The run-time `port add` path gets the plain message, no "--ports: ".
    let e = parse_port_spec("a/b", "10.0.0.0/24".parse().unwrap()).unwrap_err();
    assert_eq!(
        String::from(e),
        "namespace name 'a/b' contains '/' or NUL, which ip netns refuses"
    );
}

#[test]
fn namespace_names() {
    use super::names::check_netns_name as check_name;
    assert!(check_name("ns01").is_ok());
    assert!(check_name("a.b-c_d").is_ok());
    for bad in ["", ".", "..", "a/b", "/"] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
    assert!(check_name(&"x".repeat(254)).is_ok());
    assert!(check_name(&"x".repeat(255)).is_err());
}

#[test]
fn overlay_options_are_checked() {
    let c = cfg(&[
        "--ports",
        "a",
        "--vtep",
        "10.0.0.1",
        "--vxlan-peer",
        "10.0.0.2",
        "--vxlan-peer",
        "10.0.0.3",
        "--vni",
        "42",
    ])
    .unwrap();
    let o = c.overlay.expect("overlay");
    assert_eq!(o.vtep, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(o.peers.len(), 2);
    assert_eq!((o.vni, o.port), (42, 4789));
    assert!(!c.mtu_given);
    assert!(cfg(&["--ports", "a"]).unwrap().overlay.is_none());
    let base = ["--ports", "a", "--vtep", "10.0.0.1"];
    for (extra, want) in [
        (&[][..], "--vtep without --vxlan-peer"),
        (
            &["--vxlan-peer", "10.0.0.1"][..],
            "--vxlan-peer 10.0.0.1 is this host's own --vtep",
        ),
        (
            &["--vxlan-peer", "10.0.0.2", "--vxlan-peer", "10.0.0.2"][..],
            "--vxlan-peer 10.0.0.2 is given twice",
        ),
        (
            &["--vxlan-peer", "nope"][..],
            "--vxlan-peer nope: not an IPv4 address",
        ),
        (
            &["--vxlan-peer", "10.0.0.2", "--vni", "0"][..],
            "--vni 0 must be 1..16777215",
        ),
        (
            &["--vxlan-peer", "10.0.0.2", "--vni", "16777216"][..],
            "--vni 16777216 must be 1..16777215",
        ),
        (
            &["--vxlan-peer", "10.0.0.2", "--vxlan-port", "0"][..],
            "--vxlan-port 0",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let e = cfg(&args).unwrap_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
    }
    let e = cfg(&["--ports", "a", "--vxlan-peer", "10.0.0.2"]).unwrap_err();
    assert!(e.starts_with("--vxlan-peer needs --vtep"), "{e}");
    let e = cfg(&[
        "--ports",
        "a",
        "--vtep",
        "192.168.88.5",
        "--vxlan-peer",
        "10.0.0.2",
    ])
    .unwrap_err();
    assert!(e.contains("inside --subnet"), "{e}");
    let c = cfg(&["--ports", "a", "--mtu", "1400"]).unwrap();
    assert!(c.mtu_given && c.mtu == 1400);
}

#[test]
fn directory_mode_options_are_checked() {
    let c = cfg(&[
        "--name",
        "hosta",
        "--ports",
        "a,b=192.168.88.30",
        "--vtep",
        "10.0.0.1",
        "--etcd",
        "10.0.0.9:2379,http://10.0.0.8:2379",
    ])
    .unwrap();
    let d = c.directory.expect("directory");
    assert_eq!(
        d.endpoints,
        ["http://10.0.0.9:2379", "http://10.0.0.8:2379"]
    );
    assert_eq!(
        d.network, "hosta",
        "the network defaults to the instance name"
    );
    let o = c.overlay.unwrap();
    assert!(o.directory && o.peers.is_empty());
    assert!(!c.ports[0].explicit && c.ports[1].explicit);
    let base = ["--ports", "a", "--vtep", "10.0.0.1"];
    for (extra, want) in [
        (
            &["--etcd", "http://10.0.0.9:2379", "--vxlan-peer", "10.0.0.2"][..],
            "--vxlan-peer is for static mode",
        ),
        (
            &["--etcd", "10.0.0.9"][..],
            "--etcd 10.0.0.9: not an endpoint",
        ),
        (
            &["--etcd", "http://x:2379/v3"][..],
            "--etcd http://x:2379/v3: not an endpoint",
        ),
        (
            &["--etcd", "x:2379", "--network", "a b"][..],
            "--network \"a b\": 1 to 64",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let e = cfg(&args).unwrap_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
    }
    let e = cfg(&["--ports", "a", "--etcd", "x:2379"]).unwrap_err();
    assert!(e.starts_with("--etcd needs --vtep"), "{e}");
    let e = cfg(&["--ports", "a", "--network", "blue"]).unwrap_err();
    assert!(e.starts_with("--network names a network in etcd"), "{e}");
}

#[test]
fn gateway_defaults_to_the_first_host_and_log_levels_are_checked() {
    let c = cfg(&["--ports", "a=10.0.0.2", "--subnet", "10.0.0.0/30"]).unwrap();
    assert_eq!(c.gateway, Ipv4Addr::new(10, 0, 0, 1));
    let c = cfg(&["--ports", "a", "--subnet", "10.1.2.0/24"]).unwrap();
    assert_eq!(c.gateway, Ipv4Addr::new(10, 1, 2, 1));
    for ok in [
        "info",
        "DEBUG",
        "warn,vswitchd=trace",
        "vswitchd::gateway=debug",
        "off",
    ] {
        assert!(cfg(&["--ports", "a", "--log-level", ok]).is_ok(), "{ok}");
    }
    for bad in ["verbose", "", "vswitchd", "info,loud"] {
        let e = cfg(&["--ports", "a", "--log-level", bad]).unwrap_err();
        assert!(e.starts_with("--log-level"), "{bad}: {e}");
    }
}

#[test]
fn host_port_defaults_to_the_last_host_and_is_checked() {
    assert_eq!(
        cfg(&["--ports", "a"]).unwrap().host_port,
        None,
        "off by default"
    );
    let c = cfg(&["--ports", "a", "--host-port"]).unwrap();
    assert_eq!(c.host_port, Some(Ipv4Addr::new(192, 168, 88, 254)));
    let c = cfg(&["--ports", "a", "--subnet", "10.0.0.0/28", "--host-port"]).unwrap();
    assert_eq!(c.host_port, Some(Ipv4Addr::new(10, 0, 0, 14)));
    let c = cfg(&["--ports", "a", "--host-port", "192.168.88.9"]).unwrap();
    assert_eq!(c.host_port, Some(Ipv4Addr::new(192, 168, 88, 9)));
    // The flag may come before others without taking them as its value.
    let c = cfg(&["--host-port", "--ports", "a"]).unwrap();
    assert_eq!(c.host_port, Some(Ipv4Addr::new(192, 168, 88, 254)));
    for (args, want) in [
        (
            &["--host-port", "nonsense"][..],
            "--host-port 'nonsense' is not an IPv4",
        ),
        (
            &["--host-port", "10.1.1.1"],
            "--host-port 10.1.1.1 is not a host address",
        ),
        (
            &["--host-port", "192.168.88.1"],
            "--host-port 192.168.88.1 is not a host",
        ),
        (
            &["--host-port", "192.168.88.255"],
            "--host-port 192.168.88.255 is not",
        ),
        (
            &["--host-port", "192.168.88.11"],
            "--host-port 192.168.88.11 (TAP vsw0) collides with port a",
        ),
        (
            &["--host-port", "--name", "a-very-long-instance"],
            "--host-port names its TAP after the instance",
        ),
    ] {
        let mut v = vec!["--ports", "a"];
        v.extend_from_slice(args);
        let e = cfg(&v).unwrap_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
    }
    // A port namespace of the instance's name would share the TAP's name.
    let e = cfg(&["--ports", "vsw0", "--host-port"]).unwrap_err();
    assert!(e.contains("collides with port vsw0"), "{e}");
    // The config file: true, false or an address.
    let c = from_file("host_port = true\n[[port]]\nnetns = \"a\"\n", &[]).unwrap();
    assert_eq!(c.host_port, Some(Ipv4Addr::new(192, 168, 88, 254)));
    let c = from_file("host_port = false\n[[port]]\nnetns = \"a\"\n", &[]).unwrap();
    assert_eq!(c.host_port, None);
    let c = from_file(
        "host_port = \"192.168.88.3\"\n[[port]]\nnetns = \"a\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.host_port, Some(Ipv4Addr::new(192, 168, 88, 3)));
    let e = from_file(
        "host_port = \"192.168.88.1\"\n[[port]]\nnetns = \"a\"\n",
        &[],
    )
    .unwrap_err();
    assert!(e.starts_with("FILE:1: host_port 192.168.88.1"), "{e}");
}

#[test]
fn dns_options() {
    let c = cfg(&["--ports", "a"]).unwrap();
    let d = c.dns.unwrap();
    assert_eq!(d.domain, "vsw0");
    assert!(d.upstreams.is_empty());
    let c = cfg(&[
        "--ports",
        "a",
        "--dns-upstream",
        "10.0.0.53,10.0.0.54",
        "--dns-upstream",
        "10.0.0.53",
        "--dns-domain",
        "Lab.Example.",
    ])
    .unwrap();
    let d = c.dns.unwrap();
    assert_eq!(d.domain, "lab.example");
    assert_eq!(
        d.upstreams,
        [Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 54)]
    );
    assert!(cfg(&["--ports", "a", "--no-dns"]).unwrap().dns.is_none());
    // An instance name that is no domain still gives one.
    let c = cfg(&["--ports", "a", "--name", "my_sw..x"]).unwrap();
    assert_eq!(c.dns.unwrap().domain, "my-sw.x");
    assert_eq!(names::domain_of_instance("___"), "vswitchd");
    for (args, culprit) in [
        (
            &["--dns-upstream", "10.0.0.300"][..],
            "--dns-upstream '10.0.0.300'",
        ),
        (
            &["--dns-upstream", "127.0.0.1"][..],
            "--dns-upstream 127.0.0.1",
        ),
        (&["--dns-domain", "a_b"][..], "--dns-domain 'a_b'"),
        (&["--dns-domain=-a.b"][..], "--dns-domain '-a.b'"),
        (&["--dns-domain", "x.in-addr.arpa"][..], "--dns-domain"),
        (&["--dns-domain", ""][..], "--dns-domain ''"),
    ] {
        let mut v = vec!["--ports", "a"];
        v.extend_from_slice(args);
        let e = cfg(&v).unwrap_err();
        assert!(e.starts_with(culprit), "{args:?}: {e}");
    }
}
