//! A real etcd (Debian's `etcd-server`, `/usr/bin/etcd`) for the directory
//! tests: one single-member cluster per test on 127.0.0.1, on ports picked
//! free by the kernel, with its own data directory. It can be stopped and
//! started again on the same data and ports (etcd lost and back). Dropping
//! it kills the process (by PID) and removes the data; never panics.

use super::{TempDir, stop_child, unique, wait_child};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";
/// How long etcd may take to answer `/health` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Whether the etcd tests may run: skipped (saying so) with
/// `VSWITCHD_SKIP_ROOT_TESTS=1`, as the root tests are (they need a system
/// package, `etcd-server`, the way those need root); otherwise etcd must
/// be installed.
pub fn etcd_or_skip(test: &str) -> bool {
    if std::env::var("VSWITCHD_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: needs {ETCD} (VSWITCHD_SKIP_ROOT_TESTS=1)");
        return false;
    }
    assert!(
        std::path::Path::new(ETCD).exists(),
        "{test} needs {ETCD} (apt-get install etcd-server), or set VSWITCHD_SKIP_ROOT_TESTS=1 to skip"
    );
    true
}

/// A port nothing listens on right now (the kernel's pick, released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// One etcd member, running unless [`Etcd::stop`]ped.
pub struct Etcd {
    name: String,
    /// Where it runs: a namespace (`nsenter --net`) and an address there,
    /// or the root namespace's 127.0.0.1.
    netns: Option<String>,
    ip: Ipv4Addr,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    /// Starts a fresh etcd and waits until it answers `/health`. Panics
    /// (with etcd's log) if it does not within 20 s.
    pub fn new() -> Etcd {
        // Both ports picked while both listeners are open, so they differ;
        // another process could take one before etcd binds it: then try
        // again with new ones.
        let mut last = String::new();
        for _ in 0..3 {
            let (c, p) = {
                let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                (
                    a.local_addr().unwrap().port(),
                    b.local_addr().unwrap().port(),
                )
            };
            let mut e = Etcd {
                name: unique("etcd"),
                netns: None,
                ip: Ipv4Addr::LOCALHOST,
                dir: TempDir::new(),
                client_port: c,
                peer_port: p,
                child: None,
            };
            match e.try_start() {
                Ok(()) => return e,
                Err(log) => last = log,
            }
        }
        panic!("etcd did not start (three tries): {last}");
    }

    /// Starts a fresh etcd inside namespace `netns` on `ip` (ports 2379
    /// and 2380: the namespace is the test's own), for hosts simulated as
    /// namespaces to reach over their underlay.
    pub fn start_in(netns: &str, ip: &str) -> Etcd {
        let mut e = Etcd {
            name: unique("etcd"),
            netns: Some(netns.to_string()),
            ip: ip.parse().expect("an IPv4 address"),
            dir: TempDir::new(),
            client_port: 2379,
            peer_port: 2380,
            child: None,
        };
        if let Err(log) = e.try_start() {
            panic!("etcd did not start in {netns}: {log}");
        }
        e
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    /// Starts it again, on the same data directory and ports.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        if let Err(log) = self.try_start() {
            panic!("etcd did not start again: {log}");
        }
    }

    /// Stops it: SIGTERM (by PID), then waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// etcd's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("etcd.log")).unwrap_or_default()
    }

    fn try_start(&mut self) -> Result<(), String> {
        let peer = format!("http://{}:{}", self.ip, self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.0.join("etcd.log"))
            .map_err(|e| format!("etcd log: {e}"))?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(ETCD);
                c
            }
            None => Command::new(ETCD),
        };
        let child = cmd
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.0.join("data"))
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .arg("--initial-cluster")
            .arg(format!("{}={peer}", self.name))
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {ETCD}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if self.healthy() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(st) = exited {
                self.child = None;
                return Err(format!("etcd exited ({st}): {}", self.log()));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("etcd not healthy within 20 s: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /health` answers `"health":"true"` (the member has a leader).
    fn healthy(&self) -> bool {
        if let Some(ns) = &self.netns {
            let url = format!("{}/health", self.url());
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "curl", "-s", "-m", "1", &url])
                .output();
            return out
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"health\":\"true\""));
        }
        let addr = SocketAddr::from((self.ip, self.client_port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.contains("\"health\":\"true\"")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            wait_child(&mut child, Duration::from_secs(5));
        }
        // The data directory goes with `self.dir`.
    }
}
