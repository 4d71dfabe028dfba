//! The gateway's DNS server with real namespaces and the real resolver
//! (`getent`, through the resolv.conf vswitchd writes): port names, the
//! domain, PTR, no AAAA stall, forwarding to an upstream dnsmasq in a wan
//! namespace (given, or from the DHCP lease), failing fast, the resolv.conf
//! files' life. Root tests; traffic only to namespaces they create.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Removes `/etc/netns/NS` on drop (a test that put a file there itself).
struct EtcNetns(String);

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

fn resolv_conf(ns: &str) -> Option<String> {
    std::fs::read_to_string(format!("/etc/netns/{ns}/resolv.conf")).ok()
}

/// `getent ARGS...` inside `ns`: (success, stdout, how long it took).
fn getent(ns: &str, args: &[&str]) -> (bool, String, Duration) {
    let mut v = vec!["getent"];
    v.extend_from_slice(args);
    let t0 = Instant::now();
    let out = ns_exec(ns, &v);
    (out.status.success(), stdout(&out), t0.elapsed())
}

/// Asks the gateway for the A record of `name` over TCP from `ns` (Python,
/// as `dig +tcp` is not installed): the first answer's address, or the
/// error.
fn tcp_query(ns: &str, name: &str) -> String {
    let py = format!(
        "import socket,struct\n\
         name=b''.join(bytes([len(l)])+l for l in b'{name}'.split(b'.'))+b'\\0'\n\
         q=struct.pack('>HHHHHH',7,0x100,1,0,0,0)+name+struct.pack('>HH',1,1)\n\
         s=socket.create_connection(('192.168.88.1',53),timeout=3)\n\
         s.sendall(struct.pack('>H',len(q))+q)\n\
         n=struct.unpack('>H',s.recv(2))[0]\n\
         r=b''\n\
         while len(r)<n: r+=s.recv(n-len(r))\n\
         i=12+len(name)+4\n\
         i+=2 if r[i]&0xc0 else r.index(0,i)+1-i\n\
         t,c,ttl,l=struct.unpack('>HHIH',r[i:i+10])\n\
         print(socket.inet_ntoa(r[i+10:i+14]) if struct.unpack('>H',r[6:8])[0] and t==1 else 'rcode %d' % (r[3]&15))\n"
    );
    let out = ns_exec(ns, &["python3", "-c", &py]);
    format!(
        "{}{}",
        stdout(&out).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[test]
fn port_names_resolve_in_the_namespaces_fast() {
    if !root_or_skip("port_names_resolve_in_the_namespaces_fast") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let (a, b) = (ns.0[0].as_str(), ns.0[1].as_str());
    let domain = unique("dom");
    let d = Daemon::start(&["--ports", &ns.csv(), "--dns-domain", &domain]);

    // What vswitchd wrote for each namespace.
    for n in [a, b] {
        let text = resolv_conf(n).unwrap_or_else(|| panic!("no resolv.conf for {n}: {}", d.log()));
        assert!(text.contains("nameserver 192.168.88.1\n"), "{text}");
        assert!(text.contains(&format!("search {domain}\n")), "{text}");
    }

    // Bare, and in the domain; from the other namespace.
    let (ok, out, _) = getent(a, &["hosts", b]);
    assert!(
        ok && out.starts_with("192.168.88.12 "),
        "{out}\n{}",
        d.log()
    );
    let (ok, out, _) = getent(b, &["hosts", &format!("{a}.{domain}")]);
    assert!(ok && out.starts_with("192.168.88.11 "), "{out}");

    // A and AAAA at once: the empty AAAA answer comes at once too, so no
    // resolver timeout (seconds) is waited out.
    let (ok, out, took) = getent(a, &["ahosts", b]);
    assert!(ok && out.contains("192.168.88.12"), "{out}");
    assert!(took < Duration::from_secs(1), "getent ahosts took {took:?}");

    // PTR for a port's address.
    let (ok, out, _) = getent(a, &["hosts", "192.168.88.12"]);
    assert!(ok && out.contains(&format!("{b}.{domain}")), "{out}");

    // No uplink, so no upstream: another name fails at once (SERVFAIL for
    // it, NXDOMAIN for it within the domain).
    let (ok, _, took) = getent(a, &["hosts", "nosuch.example"]);
    assert!(!ok);
    assert!(took < Duration::from_secs(3), "failing took {took:?}");

    // Over TCP too (what a resolver does after a truncated answer).
    assert_eq!(tcp_query(a, b), "192.168.88.12");

    // The counters.
    let s = d.ctl_json(&["status"]);
    let dns = &s["dns"];
    assert_eq!(dns["domain"], domain.as_str(), "{s}");
    assert!(dns["stats"]["local"].as_u64().unwrap() >= 5, "{s}");
    assert!(dns["stats"]["failed"].as_u64().unwrap() >= 1, "{s}");

    // A port added later is a name too, and has its file; one deleted
    // loses both.
    let c = unique("vt");
    let _c_ns = Namespaces(vec![c.clone()]);
    let out = d.ctl(&["port", "add", &c]);
    assert!(out.status.success(), "{out:?}");
    assert!(resolv_conf(&c).is_some());
    let (ok, out, _) = getent(a, &["hosts", &c]);
    assert!(ok && out.starts_with("192.168.88."), "{out}");
    let out = d.ctl(&["port", "del", &c]);
    assert!(out.status.success(), "{out:?}");
    assert!(resolv_conf(&c).is_none());
    let (ok, _, _) = getent(a, &["hosts", &c]);
    assert!(!ok);

    d.stop();
    for n in [a, b] {
        assert!(resolv_conf(n).is_none(), "{n}'s resolv.conf left behind");
        assert!(!std::path::Path::new(&format!("/etc/netns/{n}")).exists());
    }
}

/// dnsmasq on the wan host: DHCP for the uplink (naming itself as DNS
/// server) and DNS on port 53 that knows one name only.
fn upstream_dnsmasq(wan: &WanHost, dir: &TempDir) -> Background {
    let leases = dir.0.join("leases").to_string_lossy().into_owned();
    let pidfile = dir.0.join("pid").to_string_lossy().into_owned();
    Background::start(
        &wan.ns,
        &[
            "dnsmasq",
            "--no-daemon",
            "--log-queries",
            "--log-dhcp",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--interface=eth0",
            "--bind-interfaces",
            "--address=/upstream-only.test/10.99.7.7",
            "--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0,1h",
            "--dhcp-option=option:router,10.99.0.1",
            "--dhcp-option=option:dns-server,10.99.0.1",
            &format!("--dhcp-leasefile={leases}"),
            &format!("--pid-file={pidfile}"),
        ],
        "DHCP, IP range",
    )
}

#[test]
fn other_names_are_forwarded_upstream_through_the_uplink() {
    if !root_or_skip("other_names_are_forwarded_upstream_through_the_uplink") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let dir = TempDir::new();
    let _dnsmasq = upstream_dnsmasq(&wan, &dir);
    let d = start_with_uplink(&ns, &wan, &["--dns-upstream", WAN_HOST]);
    let a = ns.0[0].as_str();

    let (ok, out, _) = getent(a, &["hosts", "upstream-only.test"]);
    assert!(ok && out.starts_with("10.99.7.7 "), "{out}\n{}", d.log());
    // A query over TCP goes upstream too (over UDP).
    assert_eq!(tcp_query(a, "upstream-only.test"), "10.99.7.7");
    // Its own name still answered here.
    let (ok, out, _) = getent(a, &["hosts", a]);
    assert!(ok && out.starts_with("192.168.88.11 "), "{out}");
    // dnsmasq knows nothing else: an unknown name fails, quickly.
    let (ok, _, took) = getent(a, &["hosts", "nosuch.test"]);
    assert!(!ok);
    assert!(took < Duration::from_secs(3), "failing took {took:?}");

    let s = d.ctl_json(&["status"]);
    assert_eq!(s["dns"]["upstreams"][0], WAN_HOST, "{s}");
    assert_eq!(s["dns"]["upstream_source"], "static", "{s}");
    assert!(s["dns"]["stats"]["forwarded"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["dns"]["stats"]["upstream_answers"].as_u64().unwrap() >= 1,
        "{s}"
    );
    d.stop();
    assert!(resolv_conf(a).is_none());
}

#[test]
fn without_dns_upstream_the_dhcp_lease_names_the_server() {
    if !root_or_skip("without_dns_upstream_the_dhcp_lease_names_the_server") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let dir = TempDir::new();
    let _dnsmasq = upstream_dnsmasq(&wan, &dir);
    let d = Daemon::start(&[
        "--ports",
        &ns.csv(),
        "--uplink",
        &wan.uplink,
        "--uplink-addr",
        "dhcp",
    ]);
    let a = ns.0[0].as_str();
    let from_dhcp = wait_until(Duration::from_secs(10), || {
        d.ctl_json(&["status"])["dns"]["upstream_source"] == "dhcp"
    });
    assert!(from_dhcp, "{}\n{}", d.ctl_json(&["status"]), d.log());
    let (ok, out, _) = getent(a, &["hosts", "upstream-only.test"]);
    assert!(ok && out.starts_with("10.99.7.7 "), "{out}\n{}", d.log());
    d.stop();
}

#[test]
fn an_existing_resolv_conf_is_left_alone() {
    if !root_or_skip("an_existing_resolv_conf_is_left_alone") {
        return;
    }
    let mut ns = Namespaces::default();
    let n = ns.add_existing();
    let _etc = EtcNetns(n.clone());
    std::fs::create_dir_all(format!("/etc/netns/{n}")).unwrap();
    let mine = "nameserver 10.1.2.3\n";
    std::fs::write(format!("/etc/netns/{n}/resolv.conf"), mine).unwrap();
    let d = Daemon::start(&["--ports", &ns.csv()]);
    assert_eq!(resolv_conf(&n).as_deref(), Some(mine));
    assert!(
        d.log().contains("exists already: left alone"),
        "{}",
        d.log()
    );
    d.stop();
    assert_eq!(resolv_conf(&n).as_deref(), Some(mine));
}

#[test]
fn no_dns_writes_nothing() {
    if !root_or_skip("no_dns_writes_nothing") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let d = Daemon::start(&["--ports", &ns.csv(), "--no-dns"]);
    assert!(resolv_conf(&ns.0[0]).is_none());
    assert!(d.ctl_json(&["status"])["dns"].is_null());
    d.stop();
}

#[test]
fn a_restart_after_a_crash_takes_over_or_removes_the_files() {
    if !root_or_skip("a_restart_after_a_crash_takes_over_or_removes_the_files") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let (a, b) = (ns.0[0].clone(), ns.0[1].clone());
    let _guards = (EtcNetns(a.clone()), EtcNetns(b.clone()));
    let name = unique("t");
    let mut d = Daemon::start_named(&name, &["--ports", &ns.csv()]);
    assert!(resolv_conf(&a).is_some() && resolv_conf(&b).is_some());
    d.kill9();
    assert!(resolv_conf(&a).is_some(), "a crash removes nothing");
    // The next start keeps only `a`: its file is taken over (not "left
    // alone"), b's removed.
    let d = Daemon::start_named(&name, &["--ports", &a, "--dns-domain", "again"]);
    let text = resolv_conf(&a).unwrap();
    assert!(text.contains("search again\n"), "{text}\n{}", d.log());
    assert!(resolv_conf(&b).is_none(), "{}", d.log());
    let (ok, out, _) = getent(&a, &["hosts", &format!("{a}.again")]);
    assert!(ok && out.starts_with("192.168.88.11 "), "{out}");
    d.stop();
    assert!(resolv_conf(&a).is_none());
}
