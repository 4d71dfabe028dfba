//! The overlay's directory against a real etcd (`tests/common/etcd.rs`):
//! hosts sharing a network record, exclusive address claims, updates
//! between hosts, a host stopping cleanly or dying (its lease expiring),
//! etcd lost and back, and etcd absent at start. Each test runs its own
//! etcd on free ports, with its own network name, so they run side by side.

mod common;

use common::etcd::{Etcd, etcd_or_skip, free_port};
use common::unique;
use std::net::Ipv4Addr;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};
use vswitchd::directory::{
    DirConfig, DirError, Directory, HostRecord, NetworkRecord, PortRecord, Snapshot, Update,
};
use vswitchd::wire::ipv4::Ipv4Net;

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);

fn lan(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 88, n)
}

fn subnet() -> Ipv4Net {
    "192.168.88.0/24".parse().unwrap()
}

fn network(vni: u32) -> NetworkRecord {
    NetworkRecord {
        subnet: "192.168.88.0/24".into(),
        gateway: lan(1),
        vni,
        gateway_mac: "02:00:00:00:00:01".into(),
        mtu: 1450,
    }
}

fn port(ip: Ipv4Addr, host: Ipv4Addr, name: &str) -> PortRecord {
    PortRecord {
        ip,
        mac: format!("02:00:00:00:00:{:02x}", ip.octets()[3]),
        host,
        port: name.into(),
    }
}

fn config(etcd: &Etcd, net: &str, vtep: Ipv4Addr, ttl_secs: i64) -> DirConfig {
    let mut cfg = DirConfig::new(
        vec![etcd.url()],
        net,
        vtep,
        &format!("host{}", vtep.octets()[3]),
    );
    cfg.ttl_secs = ttl_secs;
    cfg.connect_timeout = Duration::from_secs(1);
    cfg
}

/// A directory client as the daemon holds it: its wake closure signals a
/// channel the test waits on; every update drained is kept in `seen`.
struct Host {
    dir: Directory,
    woken: Receiver<()>,
    seen: Vec<Update>,
}

fn start(cfg: DirConfig, want: NetworkRecord) -> (Host, NetworkRecord, Snapshot) {
    // The directory thread's log, shown with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("vswitchd=debug")
        .try_init();
    let (tx, woken) = channel();
    let (dir, net, snap) = Directory::start(
        cfg,
        want,
        Box::new(move || {
            let _ = tx.send(());
        }),
    )
    .unwrap_or_else(|e| panic!("directory start: {e}"));
    let host = Host {
        dir,
        woken,
        seen: Vec::new(),
    };
    (host, net, snap)
}

impl Host {
    /// Waits up to `within` for an update `pred` accepts (only updates not
    /// drained before); returns how long it took. Panics with all seen.
    fn wait_for(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Update) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        let deadline = t0 + within;
        loop {
            while let Some(u) = self.dir.try_recv() {
                let hit = pred(&u);
                self.seen.push(u);
                if hit {
                    return t0.elapsed();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no {what} within {within:?}; seen: {:#?}", self.seen);
            }
            let _ = self.woken.recv_timeout(left);
        }
    }

    /// Everything queued within `d` (waiting the whole time).
    fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            while let Some(u) = self.dir.try_recv() {
                self.seen.push(u);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let _ = self.woken.recv_timeout(left);
        }
    }

    fn count(&self, pred: impl Fn(&Update) -> bool) -> usize {
        self.seen.iter().filter(|u| pred(u)).count()
    }

    /// No update ever names this host's own VTEP.
    fn saw_nothing_of_its_own(&self, own: Ipv4Addr) {
        for u in &self.seen {
            let ours = match u {
                Update::HostUp(h) => h.vtep == own,
                Update::HostDown(v) => *v == own,
                Update::PortUp(p) => p.host == own,
                Update::Resync(s) => {
                    s.hosts.iter().any(|h| h.vtep == own) || s.ports.iter().any(|p| p.host == own)
                }
                _ => false,
            };
            assert!(!ours, "an update about this host itself: {u:?}");
        }
    }
}

#[test]
fn second_host_reads_the_network_record_and_claims_are_exclusive() {
    if !etcd_or_skip("second_host_reads_the_network_record_and_claims_are_exclusive") {
        return;
    }
    let etcd = Etcd::new();
    let net = unique("net");
    let (mut a, net_a, snap_a) = start(config(&etcd, &net, A, 10), network(1));
    assert_eq!(net_a, network(1), "the first host writes its record");
    assert_eq!(snap_a, Snapshot::default(), "nothing but itself yet");
    let st = a.dir.status();
    assert!(
        st.connected && st.lease_id != 0 && st.ttl_secs == 10,
        "{st:?}"
    );
    assert_eq!(
        (st.endpoint.as_str(), st.network.as_str()),
        (etcd.url().as_str(), net.as_str())
    );

    let (b, net_b, snap_b) = start(config(&etcd, &net, B, 10), network(2));
    assert_eq!(
        net_b,
        network(1),
        "the second host gets the stored record, not its own"
    );
    assert_eq!(
        snap_b.hosts,
        vec![HostRecord {
            vtep: A,
            name: "host1".into()
        }]
    );
    a.wait_for(
        Duration::from_secs(1),
        "HostUp(B)",
        |u| matches!(u, Update::HostUp(h) if h.vtep == B && h.name == "host2"),
    );

    a.dir.claim(port(lan(21), A, "ns01")).unwrap();
    let e = b.dir.claim(port(lan(21), B, "ns07")).unwrap_err();
    assert!(
        matches!(&e, DirError::Held { ip, port, host } if *ip == lan(21) && port == "ns01" && *host == A),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("192.168.88.21") && msg.contains("ns01") && msg.contains("10.77.0.1"),
        "{msg}"
    );
    // The same host and port again is a re-registration, not a conflict.
    a.dir.claim(port(lan(21), A, "ns01")).unwrap();
    // Claims this host may not make.
    for (bad, why) in [
        (port(lan(22), B, "ns02"), "another host's VTEP"),
        (
            port(Ipv4Addr::new(10, 0, 0, 5), A, "ns02"),
            "outside the subnet",
        ),
        (port(lan(1), A, "ns02"), "the gateway"),
        (port(lan(255), A, "ns02"), "the broadcast address"),
        (
            PortRecord {
                mac: "nonsense".into(),
                ..port(lan(22), A, "ns02")
            },
            "a bad MAC",
        ),
    ] {
        let e = a.dir.claim(bad).unwrap_err();
        assert!(matches!(e, DirError::BadClaim { .. }), "{why}: {e:?}");
    }
    // Several endpoints: the one that answers is used.
    let mut cfg = config(&etcd, &net, C, 10);
    cfg.endpoints = vec![format!("http://127.0.0.1:{}", free_port()), etcd.url()];
    let (c, _, snap) = start(cfg, network(1));
    assert_eq!(c.dir.status().endpoint, etcd.url());
    assert_eq!(snap.ports, vec![port(lan(21), A, "ns01")]);
    drop((b, c));
    a.saw_nothing_of_its_own(A);
}

#[test]
fn claim_free_numbers_across_hosts_and_hosts_see_each_other_come_and_go() {
    if !etcd_or_skip("claim_free_numbers_across_hosts_and_hosts_see_each_other_come_and_go") {
        return;
    }
    let etcd = Etcd::new();
    let net = unique("net");
    let (mut a, _, _) = start(config(&etcd, &net, A, 10), network(1));
    let (mut b, _, snap) = start(config(&etcd, &net, B, 10), network(1));
    assert_eq!(snap.hosts.len(), 1);

    let ip_a = a
        .dir
        .claim_free(subnet(), &[], "ns01", "02:00:00:00:0a:01")
        .unwrap();
    assert_eq!(ip_a, lan(11));
    let ip_b = b
        .dir
        .claim_free(subnet(), &[], "ns01", "02:00:00:00:0b:01")
        .unwrap();
    let claimed = Instant::now();
    assert_eq!(ip_b, lan(12), "the next host gets the next address");
    // Addresses the caller uses locally are skipped.
    let skipped = a
        .dir
        .claim_free(subnet(), &[lan(13)], "ns02", "02:00:00:00:0a:02")
        .unwrap();
    assert_eq!(skipped, lan(14));

    a.wait_for(
        Duration::from_secs(1),
        "PortUp(B's port)",
        |u| matches!(u, Update::PortUp(p) if p.ip == lan(12) && p.host == B && p.port == "ns01"),
    );
    assert!(
        claimed.elapsed() < Duration::from_secs(1),
        "B's port seen in {:?}",
        claimed.elapsed()
    );
    b.wait_for(
        Duration::from_secs(1),
        "PortUp(A's ns02)",
        |u| matches!(u, Update::PortUp(p) if p.ip == lan(14) && p.host == A),
    );

    // Released: gone for the others, and free again.
    a.dir.release(lan(14)).unwrap();
    b.wait_for(Duration::from_secs(1), "PortDown(.14)", |u| {
        *u == Update::PortDown(lan(14))
    });
    assert_eq!(
        a.dir
            .claim_free(subnet(), &[], "ns03", "02:00:00:00:0a:03")
            .unwrap(),
        lan(13)
    );

    // B stops cleanly: its lease is revoked, A sees it go at once.
    let t0 = Instant::now();
    drop(b);
    a.wait_for(Duration::from_secs(2), "HostDown(B)", |u| {
        *u == Update::HostDown(B)
    });
    a.wait_for(Duration::from_secs(2), "PortDown(B's port)", |u| {
        *u == Update::PortDown(lan(12))
    });
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "B gone after {:?}",
        t0.elapsed()
    );
    a.saw_nothing_of_its_own(A);
}

#[test]
fn a_host_that_dies_disappears_when_its_lease_expires() {
    if !etcd_or_skip("a_host_that_dies_disappears_when_its_lease_expires") {
        return;
    }
    let etcd = Etcd::new();
    let net = unique("net");
    let (mut a, _, _) = start(config(&etcd, &net, A, 10), network(1));
    let ttl = 2;
    let (b, _, _) = start(config(&etcd, &net, B, ttl), network(1));
    assert_eq!(
        b.dir
            .claim_free(subnet(), &[], "ns01", "02:00:00:00:0b:01")
            .unwrap(),
        lan(11)
    );
    a.wait_for(
        Duration::from_secs(1),
        "PortUp(B's port)",
        |u| matches!(u, Update::PortUp(p) if p.ip == lan(11)),
    );

    // Killed: no revoke, no more keep-alives.
    let t0 = Instant::now();
    b.dir.abandon();
    let bound = Duration::from_secs(ttl as u64 + 5);
    a.wait_for(bound, "HostDown(B)", |u| *u == Update::HostDown(B));
    a.wait_for(bound, "PortDown(B's port)", |u| {
        *u == Update::PortDown(lan(11))
    });
    let took = t0.elapsed();
    assert!(took < bound, "B gone after {took:?}");
    // Its keys went with the lease, not with a revoke.
    assert!(took > Duration::from_secs(1), "B gone after only {took:?}");
}

#[test]
fn etcd_lost_and_back_reregisters_our_ports() {
    if !etcd_or_skip("etcd_lost_and_back_reregisters_our_ports") {
        return;
    }
    let mut etcd = Etcd::new();
    let net = unique("net");
    let (mut a, _, _) = start(config(&etcd, &net, A, 3), network(1));
    a.dir.claim(port(lan(11), A, "ns01")).unwrap();
    assert_eq!(
        a.dir
            .claim_free(subnet(), &[], "ns02", "02:00:00:00:0a:02")
            .unwrap(),
        lan(12)
    );
    a.dir.claim(port(lan(20), A, "ns09")).unwrap();
    let lease = a.dir.status().lease_id;

    etcd.stop();
    a.wait_for(Duration::from_secs(5), "Lost", |u| {
        matches!(u, Update::Lost { .. })
    });
    assert!(!a.dir.status().connected);
    // The caller is never held up: claims fail at once, releases forget.
    let t0 = Instant::now();
    let e = a.dir.claim(port(lan(13), A, "ns03")).unwrap_err();
    assert!(matches!(e, DirError::NotConnected { .. }), "{e:?}");
    assert!(e.to_string().contains(&etcd.url()), "{e}");
    let e = a
        .dir
        .claim_free(subnet(), &[], "ns03", "02:00:00:00:0a:03")
        .unwrap_err();
    assert!(matches!(e, DirError::NotConnected { .. }), "{e:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    // Released while etcd is away: its key goes with the old lease.
    a.dir.release(lan(20)).unwrap();
    // Several retries pass; Lost is queued once.
    a.drain_for(Duration::from_secs(2));

    etcd.start();
    a.wait_for(Duration::from_secs(15), "Back", |u| *u == Update::Back);
    a.wait_for(Duration::from_secs(2), "Resync", |u| {
        matches!(u, Update::Resync(_))
    });
    assert_eq!(
        a.count(|u| matches!(u, Update::Lost { .. })),
        1,
        "{:#?}",
        a.seen
    );
    let st = a.dir.status();
    assert!(st.connected && st.lease_id != lease, "{st:?}");

    // A fresh host sees A and both its ports, not the released one (the
    // old lease was revoked: these are on the new one).
    let (_c, _, snap) = start(config(&etcd, &net, C, 10), network(1));
    assert_eq!(
        snap.hosts,
        vec![HostRecord {
            vtep: A,
            name: "host1".into()
        }]
    );
    let mut ports: Vec<_> = snap
        .ports
        .iter()
        .map(|p| (p.ip, p.host, p.port.as_str()))
        .collect();
    ports.sort();
    assert_eq!(ports, vec![(lan(11), A, "ns01"), (lan(12), A, "ns02")]);
    // And claims work again.
    assert_eq!(
        a.dir
            .claim_free(subnet(), &[], "ns03", "02:00:00:00:0a:03")
            .unwrap(),
        lan(13)
    );
    a.saw_nothing_of_its_own(A);
}

#[test]
fn start_without_etcd_is_an_error_in_bounded_time() {
    if !etcd_or_skip("start_without_etcd_is_an_error_in_bounded_time") {
        return;
    }
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut cfg = DirConfig::new(vec![url.clone()], &unique("net"), A, "hosta");
    cfg.connect_timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let e = Directory::start(cfg.clone(), network(1), Box::new(|| {}))
        .err()
        .expect("start with no etcd fails");
    let took = t0.elapsed();
    assert!(matches!(e, DirError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(
        took < cfg.connect_timeout + Duration::from_secs(2),
        "took {took:?}"
    );

    // Refused before any connection: a name that cannot be a key part.
    cfg.network = "a/b".into();
    let e = Directory::start(cfg, network(1), Box::new(|| {}))
        .err()
        .expect("bad name");
    assert!(matches!(e, DirError::BadNetworkName { .. }), "{e:?}");
}
