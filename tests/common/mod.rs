//! Shared harness for the root tests: unique names, namespace guards, the
//! real `vswitchd` binary started with a readiness signal, raw frame
//! injection from inside a namespace, captures, and `vswitchctl` calls.
//!
//! Safety rules these helpers enforce: names are unique per process and call
//! (so tests run side by side and after a crash), every namespace a test
//! may have caused is deleted in `Drop` (also when the test fails), the
//! daemon and tcpdump are stopped by PID, and traffic only goes to addresses
//! inside the test's own namespaces.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod etcd;
pub mod mem;

pub const VSWITCHD: &str = env!("CARGO_BIN_EXE_vswitchd");
pub const VSWITCHCTL: &str = env!("CARGO_BIN_EXE_vswitchctl");

/// Whether root tests may run. Without root they fail loudly, unless
/// `VSWITCHD_SKIP_ROOT_TESTS=1` asks to skip them (then they say so).
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("VSWITCHD_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: needs root (VSWITCHD_SKIP_ROOT_TESTS=1)");
        return false;
    }
    panic!("{test} needs root (run the tests as root, or set VSWITCHD_SKIP_ROOT_TESTS=1 to skip)");
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `{prefix}{pid}x{n}`, short
/// enough for an interface or instance name.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 1_000_000)
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

fn del_netns(name: &str) {
    if netns_exists(name) {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
    // What vswitchd wrote for it (the resolv.conf of its DNS server) stays
    // when a test kills the daemon with -9 and never restarts it, as it
    // would for a real crash until the next start: the name is the test's.
    let etc = std::path::Path::new("/etc/netns").join(name);
    if etc.exists() {
        let _ = std::fs::remove_dir_all(etc);
    }
}

/// Namespaces a test owns. Everything listed is deleted on drop, whoever
/// created it (the test with `ip netns add`, or the daemon).
#[derive(Default)]
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    /// Reserves `n` fresh names (deleting stale ones left by a crashed run).
    pub fn fresh(n: usize) -> Self {
        let v: Vec<String> = (0..n).map(|_| unique("vt")).collect();
        for name in &v {
            del_netns(name);
        }
        Namespaces(v)
    }
    /// Creates a namespace with `ip netns add` (a pre-existing one, from
    /// the daemon's point of view) and takes ownership of it.
    pub fn add_existing(&mut self) -> String {
        let name = unique("vp");
        del_netns(&name);
        self.0.push(name.clone());
        run_ok("ip", &["netns", "add", &name]);
        name
    }
    pub fn csv(&self) -> String {
        self.0.join(",")
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            del_netns(n);
        }
    }
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args` inside namespace `ns` (`ip netns exec`).
pub fn ns_exec(ns: &str, args: &[&str]) -> Output {
    let mut v = vec!["netns", "exec", ns];
    v.extend_from_slice(args);
    run("ip", &v)
}

/// One ping from `ns` to `addr`; true if it was answered.
pub fn ping(ns: &str, addr: &str) -> bool {
    ns_exec(ns, &["ping", "-c", "1", "-W", "3", addr])
        .status
        .success()
}

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(unique("vswitchd-test-"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running vswitchd, stopped (SIGTERM, by PID) on drop.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    dir: TempDir,
}

impl Daemon {
    /// Starts `vswitchd --name NAME ARGS...` and waits for its READY=1 on a
    /// NOTIFY_SOCKET (the systemd readiness protocol). Panics with the
    /// daemon's log if it exits or is not ready within 30 s.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_named(&unique("t"), args)
    }

    pub fn start_named(name: &str, args: &[&str]) -> Daemon {
        Self::start_inside(None, name, args)
    }

    /// Starts vswitchd inside network namespace `netns` (a simulated host),
    /// with `nsenter --net`: unlike `ip netns exec` it keeps the mount
    /// namespace, so the port namespaces it creates are everyone's.
    pub fn start_in(netns: &str, name: &str, args: &[&str]) -> Daemon {
        Self::start_inside(Some(netns), name, args)
    }

    fn start_inside(netns: Option<&str>, name: &str, args: &[&str]) -> Daemon {
        let dir = TempDir::new();
        let sock_path = dir.0.join("notify");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log = File::create(dir.0.join("log")).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(VSWITCHD);
                c
            }
            None => Command::new(VSWITCHD),
        };
        let child = cmd
            .args(["--name", name])
            .args(args)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vswitchd");
        let mut d = Daemon {
            name: name.to_string(),
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 256];
        loop {
            if let Ok(n) = sock.recv(&mut buf)
                && buf[..n].starts_with(b"READY=1")
            {
                return d;
            }
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                d.child = None;
                panic!("vswitchd exited before ready ({st}): {}", d.log());
            }
            if Instant::now() > deadline {
                panic!("vswitchd not ready within 30 s: {}", d.log());
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("log")).unwrap_or_default()
    }

    /// `vswitchctl --name NAME ARGS...`
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut v = vec!["--name", self.name.as_str()];
        v.extend_from_slice(args);
        run(VSWITCHCTL, &v)
    }

    /// `vswitchctl --json ...`, parsed; panics if the call fails.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut v = vec!["--json"];
        v.extend_from_slice(args);
        let out = self.ctl(&v);
        assert!(
            out.status.success(),
            "vswitchctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("vswitchctl --json prints JSON")
    }

    /// The `ports` entry of port `ns`.
    pub fn port(&self, ns: &str) -> serde_json::Value {
        self.ctl_json(&["ports"])
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == ns)
            .cloned()
            .unwrap_or_else(|| panic!("no port {ns}"))
    }

    pub fn mac_of(&self, ns: &str) -> String {
        self.port(ns)["mac"].as_str().unwrap().to_string()
    }

    /// `fdb show`: rows of (MAC, port, age) and the whole reply.
    pub fn fdb(&self) -> (Vec<(String, String, Option<u64>)>, serde_json::Value) {
        let v = self.ctl_json(&["fdb", "show"]);
        let rows = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["mac"].as_str().unwrap().to_string(),
                    e["port"].as_str().unwrap().to_string(),
                    e["age"].as_u64(),
                )
            })
            .collect();
        (rows, v)
    }

    /// Sends `sig` and waits up to 10 s for the exit (then SIGKILL); returns
    /// how long the exit took and the status. Never panics (Drop uses it).
    fn signal_and_wait(
        &mut self,
        sig: nix::sys::signal::Signal,
    ) -> Result<(Duration, std::process::ExitStatus), String> {
        let Some(mut child) = self.child.take() else {
            return Err("daemon already stopped".into());
        };
        let t0 = Instant::now();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
        let deadline = t0 + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Ok((t0.elapsed(), st)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("vswitchd did not exit within 10 s of {sig}"));
                }
            }
        }
    }

    /// `kill -9` (by PID), as a crash: nothing is cleaned up by vswitchd.
    /// Its stale control socket and lock file are removed here.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ext in ["sock", "lock"] {
            let _ = std::fs::remove_file(format!("/run/vswitchd/{}.{ext}", self.name));
        }
    }

    /// Sends SIGTERM and waits; returns how long the exit took and the status.
    pub fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        self.signal_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `sig` (SIGTERM or SIGINT) and waits; panics if it does not exit.
    pub fn signal_with(
        &mut self,
        sig: nix::sys::signal::Signal,
    ) -> (Duration, std::process::ExitStatus) {
        match self.signal_and_wait(sig) {
            Ok(v) => v,
            Err(e) => panic!("{e}: {}", self.log()),
        }
    }

    /// The end of every test that started a daemon: SIGTERM, and the exit
    /// must be what a user expects: within 2 s, status 0, and no panic or
    /// error in the log (a panic at shutdown fails the test here).
    pub fn stop(mut self) {
        let (took, st) = self.terminate();
        let log = self.log();
        assert!(st.success(), "vswitchd exited with {st}: {log}");
        assert!(took < Duration::from_secs(2), "exit took {took:?}: {log}");
        assert!(!log.contains("panicked"), "vswitchd panicked: {log}");
        assert!(!log.contains(" ERROR "), "vswitchd logged an error: {log}");
    }
}

impl Drop for Daemon {
    /// Cleanup only (a test that ends normally calls [`Daemon::stop`]):
    /// never panics, so a failing test cannot abort the binary here and
    /// leave other tests' namespaces behind.
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(e) = self.signal_and_wait(nix::sys::signal::Signal::SIGTERM)
        {
            eprintln!("{e}");
        }
    }
}

/// Runs a pair of Python programs: `receiver` (with `rx_args`) in
/// namespace `rx_ns`, which prints `ready` once it listens and then one
/// result line, and, once it is ready, `sender` (with `tx_args`) in
/// `tx_ns`, which must succeed. Returns the words of the result line.
pub fn python_pair(
    rx_ns: &str,
    receiver: &str,
    rx_args: &[&str],
    tx_ns: &str,
    sender: &str,
    tx_args: &[&str],
) -> Vec<String> {
    let mut rx = Command::new("ip")
        .args(["netns", "exec", rx_ns, "python3", "-c", receiver])
        .args(rx_args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(rx.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let mut v = vec!["python3", "-c", sender];
    v.extend_from_slice(tx_args);
    let tx = ns_exec(tx_ns, &v);
    assert!(
        tx.status.success(),
        "{}",
        String::from_utf8_lossy(&tx.stderr)
    );
    let result = lines.next().unwrap().unwrap();
    let _ = wait_child(&mut rx, Duration::from_secs(10));
    result.split_whitespace().map(String::from).collect()
}

/// Waits for `child` up to `timeout`, killing it (by PID) if it is still
/// running then. Returns its status, or None if it had to be killed.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// SIGTERM to `child` (by PID), then [`wait_child`] up to 5 s. Never panics.
pub fn stop_child(child: &mut Child) -> Option<std::process::ExitStatus> {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_child(child, Duration::from_secs(5))
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes. Only for
/// state that has no event to wait on (table contents, counters, aging).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends raw Ethernet frames out of `ifname` inside namespace `ns`
/// (AF_PACKET, from a thread that entered the namespace). Returns how many
/// the kernel accepted. `pace_every`: pause 1 ms after that many frames so
/// the TAP's queue (500 frames) does not overflow; 0 for no pauses.
pub fn send_frames(ns: &str, ifname: &str, frames: &[Vec<u8>], pace_every: usize) -> usize {
    let file = File::open(format!("/run/netns/{ns}")).unwrap();
    vswitchd::control::netns::in_netns(&file, ns, || {
        let idx = nix::net::if_::if_nametoindex(ifname).expect("interface in namespace");
        // SAFETY: plain socket(2) call; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: an all-zero sockaddr_ll is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = idx as i32;
        sll.sll_halen = 6;
        let mut sent = 0;
        for (i, f) in frames.iter().enumerate() {
            // SAFETY: `f` and `sll` are valid for the lengths given.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc >= 0 {
                sent += 1;
            }
            if pace_every > 0 && i % pace_every == pace_every - 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // SAFETY: fd is ours and open.
        unsafe { libc::close(fd) };
        sent
    })
    .expect("enter namespace")
}

/// A frame: dst, src, ethertype, then `len` payload bytes.
pub fn frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.resize(14 + len, 0x5a);
    f
}

pub fn mac_bytes(s: &str) -> [u8; 6] {
    s.parse::<vswitchd::wire::MacAddr>().unwrap().to_bytes()
}

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `tcpdump -l -nn -e -i IFNAME` inside `ns`, its lines collected on a
/// thread. `start` returns once tcpdump says it is listening.
pub struct Capture {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Capture {
    pub fn start(ns: &str, ifname: &str) -> Capture {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-l", "-nn", "-e", "-i", ifname,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpdump");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("listening on")
                    && let Some(r) = ready.take()
                {
                    let _ = r.send(());
                }
            }
        });
        let mut cap = Capture {
            child,
            lines: rx,
            seen: Vec::new(),
        };
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            stop_child(&mut cap.child);
            panic!("tcpdump in {ns} did not start listening");
        }
        cap
    }

    /// Collects lines until one contains `marker` (true) or `timeout` passes.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(marker);
                    self.seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A 'wan' test host: its own namespace, reached through a veth pair whose
/// root-namespace end (`uplink`) is vswitchd's `--uplink`. The host has
/// 10.99.0.1/24 on its `eth0`. Everything is deleted on drop.
pub struct WanHost {
    pub ns: String,
    pub uplink: String,
}

pub const WAN_HOST: &str = "10.99.0.1";
pub const UPLINK_ADDR: &str = "10.99.0.2";

impl WanHost {
    pub fn new() -> WanHost {
        let ns = unique("vw");
        let uplink = unique("vu");
        del_netns(&ns);
        let _ = Command::new("ip").args(["link", "del", &uplink]).output();
        let w = WanHost { ns, uplink };
        run_ok("ip", &["netns", "add", &w.ns]);
        run_ok(
            "ip",
            &[
                "link", "add", &w.uplink, "type", "veth", "peer", "name", "eth0", "netns", &w.ns,
            ],
        );
        run_ok(
            "ip",
            &["-n", &w.ns, "addr", "add", "10.99.0.1/24", "dev", "eth0"],
        );
        run_ok("ip", &["-n", &w.ns, "link", "set", "eth0", "up"]);
        run_ok("ip", &["-n", &w.ns, "link", "set", "lo", "up"]);
        run_ok("ip", &["link", "set", &w.uplink, "up"]);
        w
    }
}

impl Drop for WanHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.uplink])
            .output();
        del_netns(&self.ns);
    }
}

/// Starts vswitchd with `ports` and `wan` as its uplink (the gateway at
/// 10.99.0.2/24, default route via the wan host), plus `extra` options.
pub fn start_with_uplink(ports: &Namespaces, wan: &WanHost, extra: &[&str]) -> Daemon {
    let csv = ports.csv();
    let mut args = vec![
        "--ports",
        csv.as_str(),
        "--uplink",
        wan.uplink.as_str(),
        "--uplink-addr",
        "10.99.0.2/24",
        "--uplink-gw",
        WAN_HOST,
    ];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

/// A background program in a namespace, started with `ip netns exec` and
/// ready once a line of its output contains the ready marker; killed by PID
/// on drop.
pub struct Background {
    child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Background {
    pub fn start(ns: &str, args: &[&str], ready: &str) -> Background {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn background program");
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let b = Background { child, lines: rx };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match b.lines.recv_timeout(left) {
                Ok(l) if l.contains(ready) => return b,
                Ok(l) => seen.push(l),
                Err(_) => panic!("{args:?} in {ns} not ready: {seen:?}"),
            }
        }
    }
}

impl Background {
    /// Waits up to `timeout` for the program to exit by itself (then stops
    /// it); its status, or None if it had to be stopped.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, timeout)
    }
}

/// `tcpdump -c COUNT -s 128 -w FILE -i IFNAME` inside `ns`: the first
/// `count` frames as that namespace's kernel saw them (original lengths
/// kept), ready once tcpdump listens.
pub fn tcpdump_to_file(ns: &str, ifname: &str, count: usize, file: &std::path::Path) -> Background {
    let n = count.to_string();
    let f = file.to_string_lossy().into_owned();
    Background::start(
        ns,
        &[
            "tcpdump", "-c", &n, "-s", "128", "-w", &f, "-i", ifname, "tcp",
        ],
        "listening on",
    )
}

impl Drop for Background {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Path of the Python traffic peers.
pub fn netpeer() -> String {
    format!("{}/tests/tools/netpeer.py", env!("CARGO_MANIFEST_DIR"))
}

/// The original lengths of the frames in a pcapng or pcap file (microsecond pcap,
/// either byte order), in file order.
pub fn pcap_frame_lengths(bytes: &[u8]) -> Vec<u32> {
    // pcapng (vswitchctl capture's default), read with the crate that wrote it.
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        use pcap_file::pcapng::{Block, PcapNgReader};
        let mut r = PcapNgReader::new(bytes).expect("a pcapng section header");
        let mut v = Vec::new();
        while let Some(block) = r.next_block() {
            if let Block::EnhancedPacket(p) = block.expect("a well-formed pcapng block") {
                v.push(p.original_len);
            }
        }
        return v;
    }
    assert!(bytes.len() >= 24, "no pcap header ({} bytes)", bytes.len());
    let le = bytes[0..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |i: usize| {
        let b: [u8; 4] = bytes[i..i + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut v = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let incl = u32_at(at + 8) as usize;
        v.push(u32_at(at + 12));
        at += 16 + incl;
    }
    v
}

/// `vswitchctl capture ARGS -w FILE` running in the background.
pub fn start_capture(d: &Daemon, args: &[&str], file: &std::path::Path) -> Child {
    let file = file.to_string_lossy().into_owned();
    let mut v = vec!["--name", d.name.as_str(), "capture"];
    v.extend_from_slice(args);
    v.extend_from_slice(&["-w", &file]);
    let c = Command::new(VSWITCHCTL).args(&v).spawn().unwrap();
    assert!(
        wait_until(
            Duration::from_secs(5),
            || d.ctl_json(&["status"])["captures"].as_u64().unwrap_or(0) >= 1
        ),
        "capture session did not start"
    );
    c
}

/// dnsmasq for the wan host's network, leases in `dir`.
pub fn dnsmasq(wan: &WanHost, dir: &TempDir) -> Background {
    let leases = dir.0.join("leases").to_string_lossy().into_owned();
    let pidfile = dir.0.join("pid").to_string_lossy().into_owned();
    Background::start(
        &wan.ns,
        &[
            "dnsmasq",
            "--no-daemon",
            "--log-dhcp",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0,1h",
            "--dhcp-option=option:router,10.99.0.1",
            &format!("--dhcp-leasefile={leases}"),
            &format!("--pid-file={pidfile}"),
        ],
        "DHCP, IP range",
    )
}

/// Writes `bytes` of a seeded pseudo-random pattern to `path`.
pub fn write_pattern(path: &std::path::Path, bytes: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut r = Rng(0x1234_5678);
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for c in chunk.chunks_exact_mut(8) {
            c.copy_from_slice(&r.next().to_le_bytes());
        }
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

/// A command's standard output as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Serves `dir` over HTTP on `addr`:8080 inside `ns`.
pub fn http_server(ns: &str, addr: &str, dir: &str) -> Background {
    Background::start(
        ns,
        &[
            "python3",
            "-u",
            "-m",
            "http.server",
            "8080",
            "--bind",
            addr,
            "--directory",
            dir,
        ],
        "Serving HTTP",
    )
}
