//! Root test of `vswitchctl monitor`: a ping produces learned events for
//! both namespaces' MACs, a ping through the NAT a flow created, and
//! `port del` a port removed, each as it happens.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `vswitchctl monitor --json` of `d`, its lines on a channel; killed by
/// PID on drop.
struct Monitor {
    child: std::process::Child,
    lines: mpsc::Receiver<serde_json::Value>,
    /// Events received but not asked for yet.
    backlog: std::cell::RefCell<Vec<serde_json::Value>>,
}

impl Monitor {
    fn start(d: &Daemon) -> Monitor {
        let mut child = Command::new(VSWITCHCTL)
            .args(["--name", &d.name, "--json", "monitor"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vswitchctl monitor");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let m = Monitor {
            child,
            lines,
            backlog: Default::default(),
        };
        let first = m.next(Duration::from_secs(5)).expect("the monitoring line");
        assert_eq!(first["event"], "monitoring", "{first}");
        m
    }

    fn next(&self, within: Duration) -> Option<serde_json::Value> {
        self.lines.recv_timeout(within).ok()
    }

    /// Waits up to `within` for an event that `want` accepts, looking first
    /// at the events earlier calls passed over (they stay for later calls:
    /// two events may come in either order). The events seen are returned
    /// on failure.
    fn expect(
        &self,
        within: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, Vec<serde_json::Value>> {
        let mut backlog = self.backlog.borrow_mut();
        if let Some(i) = backlog.iter().position(&want) {
            return Ok(backlog.remove(i));
        }
        let end = Instant::now() + within;
        while let Some(v) = self.next(end.saturating_duration_since(Instant::now())) {
            if want(&v) {
                return Ok(v);
            }
            backlog.push(v);
        }
        Err(backlog.clone())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

#[test]
fn monitor_shows_learning_nat_flows_and_ports_as_they_happen() {
    if !root_or_skip("monitor_shows_learning_nat_flows_and_ports_as_they_happen") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    let m = Monitor::start(&d);
    let (mac0, mac1) = (d.mac_of(&ns.0[0]), d.mac_of(&ns.0[1]));
    // The namespaces' MACs were learned at start (IPv6 DAD, router
    // solicitations): forget them so the ping teaches them again.
    assert!(d.ctl(&["fdb", "flush"]).status.success());
    assert!(ping(&ns.0[0], "192.168.88.12"));
    for (mac, port) in [(&mac0, &ns.0[0]), (&mac1, &ns.0[1])] {
        let e = m
            .expect(Duration::from_secs(3), |v| {
                v["event"] == "mac_learned" && v["mac"] == mac.as_str()
            })
            .unwrap_or_else(|seen| panic!("no mac_learned for {mac}: {seen:?}"));
        assert_eq!(e["port"], port.as_str(), "{e}");
    }
    assert!(ping(&ns.0[0], WAN_HOST));
    let e = m
        .expect(Duration::from_secs(3), |v| v["event"] == "nat_created")
        .unwrap_or_else(|seen| panic!("no nat_created: {seen:?}"));
    assert_eq!(e["proto"], "icmp", "{e}");
    assert_eq!(e["original"]["src"], "192.168.88.11", "{e}");
    assert_eq!(e["reply"]["dst"], UPLINK_ADDR, "{e}");
    assert!(d.ctl(&["port", "del", &ns.0[1]]).status.success());
    m.expect(Duration::from_secs(3), |v| {
        v["event"] == "port_removed" && v["port"] == ns.0[1].as_str()
    })
    .unwrap_or_else(|seen| panic!("no port_removed: {seen:?}"));
    // The text form, for a person.
    let out = Command::new("timeout")
        .args(["1", VSWITCHCTL, "--name", &d.name, "monitor"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("monitoring"), "{out:?}");
    drop(m);
    // The daemon is fine once the watcher is gone.
    assert!(ping(&ns.0[0], "192.168.88.1"));
}

/// For learners: at `trace` each frame's decision is logged, at `debug`
/// the MACs learned and the gateway's verdicts; at `info` neither.
#[test]
fn debug_and_trace_levels_log_each_decision() {
    if !root_or_skip("debug_and_trace_levels_log_each_decision") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv()]);
    assert!(ping(&ns.0[0], "192.168.88.12"));
    assert!(!d.log().contains("decision="), "trace lines at info");
    assert!(d.ctl(&["log-level", "trace"]).status.success());
    assert!(d.ctl(&["fdb", "flush"]).status.success());
    assert!(ping(&ns.0[0], "192.168.88.1"));
    let found = wait_until(Duration::from_secs(3), || {
        let log = d.log();
        log.contains("decision=Unicast")
            && log.contains("MAC learned")
            && log.contains("gateway verdict=Local")
    });
    assert!(found, "{}", d.log());
}
