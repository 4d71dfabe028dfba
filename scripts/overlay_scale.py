#!/usr/bin/env python3
"""Overlay directory at scale: one real vswitchd host against a real etcd
that holds many simulated hosts.

A bench, not a test (not in CI). As root, from the repository, with the
release binaries built:

    python3 scripts/overlay_scale.py                                  # 1,000 hosts x 100 ports
    python3 scripts/overlay_scale.py --hosts 20 --ports-per-host 10   # quick (~30 s)
    python3 scripts/overlay_scale.py --preload 25 --restart-etcd      # see below
    python3 scripts/overlay_scale.py --json                           # figures as JSON

What it does:
 1. Starts its own etcd (/usr/bin/etcd) on 127.0.0.1 with free ports and a
    temporary data dir, and fills it through etcd's v3 JSON gateway (HTTP,
    transactions of 128 puts) with HOSTS simulated hosts x PORTS-PER-HOST
    ports, in vswitchd's key layout (/vswitchd/NET/{network,hosts/VTEP,
    ports/IP}). Each simulated host has its own lease (--sim-ttl, 30 s, so
    they survive the run) kept alive from threads every --keepalive-period
    s (3.33 s: what real hosts do at their TTL of 10 s). No datapath exists
    for them: their VTEPs are loopback addresses 127.1.X.Y where nobody
    listens, so what vswitchd sends them stays on lo.
 2. Starts one real vswitchd (root namespace, --vtep 127.0.0.1, one port
    namespace, --subnet 10.0.0.0/14) and times spawn -> READY=1 (systemd
    notify protocol) and spawn -> `vswitchctl overlay` showing every remote
    port and host. A vswitchd against an empty network first gives the
    baseline RSS (--no-baseline skips it). With --preload K only K ports
    per host exist when it starts; the rest are written while it runs
    (they reach it through its watch), then every later step runs at full
    size.
 3. VmRSS/VmHWM of vswitchd at ready, after growing, at the end.
 4. Propagation: a port added to (then deleted from) a simulated host ->
    time until the datapath forwards to it (polling `vswitchctl trace`, the
    datapath's own decision on a made-up frame, every --poll-ms), then
    until `vswitchctl overlay` counts it. `overlay` is measured too, but it
    is a poor probe at scale: one call costs vswitchd's event loop ~100 ms
    at 1,000 hosts x 100,000 ports (the call times are reported).
 5. A simulated host whose lease (TTL --expiry-ttl, 5 s) is never kept
    alive: time from its expected expiry (grant answer + TTL) until its
    ports are gone (datapath, then count); and a clean leave (lease
    revoked): time until gone.
 6. etcd in steady state: /metrics before and after a --window s window:
    keep-alives/s (gRPC LeaseKeepAlive messages; the gateway opens one
    stream per HTTP keep-alive, so messages minus streams opened is what
    came over long-lived streams, i.e. vswitchd's), leases renewed/s,
    puts/s, raft proposals and WAL fsyncs/s, etcd CPU; and what a real
    network of HOSTS hosts at TTL 10 s would send (HOSTS / 3.33 s).
    `vswitchctl status`: the MAC table (--fdb-max) stays small while the
    remote ports are known.
 With --restart-etcd, at the end: etcd is stopped and started again on
 the same data; vswitchd's reconnect (new lease, the whole snapshot again)
 is timed from its log, with a `vswitchctl status` every 50 ms to show how
 long its event loop is blocked meanwhile.

Safety: every packet stays on loopback (etcd on 127.0.0.1, VTEPs 127.0.0.1
and 127.1.X.Y, a free UDP port for VXLAN). Processes started here are
stopped by PID; the namespace vswitchd creates is checked and deleted if it
is still there; the temporary dir (etcd's data, logs) is removed. Also on
error and Ctrl-C. Exit status 2: vswitchd did not start.
"""
import argparse
import base64
import http.client
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
ETCD = "/usr/bin/etcd"
SUBNET = "10.0.0.0/14"
GATEWAY = "10.0.0.1"
TXN_OPS = 128  # etcd's default --max-txn-ops
PORT_BASE = (10 << 24) | (1 << 16)  # simulated ports from 10.1.0.0 upward
SUBNET_END = (10 << 24) | (3 << 16) | (255 << 8) | 254  # last host of the /14


class Interrupted(Exception):
    pass


def on_sigterm(_sig, _frm):
    raise Interrupted("SIGTERM")


def now():
    return time.monotonic()


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def ip_str(n):
    return "%d.%d.%d.%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def vtep_of(h):
    """Simulated host h's VTEP: a loopback address 127.1.X.Y."""
    assert 0 <= h < 250 * 256
    return "127.1.%d.%d" % (h // 250, h % 250 + 1)


def mac_of(i):
    return "02:5c:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def log(msg):
    print("[overlay_scale %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# etcd through its v3 JSON gateway

class EtcdError(Exception):
    pass


class Etcd:
    """etcd's v3 JSON gateway over HTTP/1.1, one kept-alive connection per
    thread. Keys and values are base64; int64 fields come back as strings
    and zero values are left out."""

    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.local.conn = c
        return c

    def _request(self, method, path, body=None):
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request(method, path, body=body,
                          headers={"Content-Type": "application/json"} if body else {})
                r = c.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def call(self, path, body):
        status, data = self._request("POST", path, json.dumps(body).encode())
        try:
            j = json.loads(data)
        except ValueError:
            raise EtcdError("%s: HTTP %d: %r" % (path, status, data[:200]))
        if status != 200 or "error" in j:
            raise EtcdError("%s: HTTP %d: %s" % (path, status, j.get("error", j)))
        return j

    def metrics(self):
        status, data = self._request("GET", "/metrics")
        if status != 200:
            raise EtcdError("/metrics: HTTP %d" % status)
        m = {}
        for line in data.decode().splitlines():
            if not line or line[0] == "#":
                continue
            k, _, v = line.rpartition(" ")
            try:
                m[k] = float(v)
            except ValueError:
                pass
        return m

    def healthy(self):
        try:
            status, data = self._request("GET", "/health")
            return status == 200 and json.loads(data).get("health") == "true"
        except (OSError, ValueError, http.client.HTTPException):
            self.local.conn = None
            return False

    def grant(self, ttl):
        j = self.call("/v3/lease/grant", {"TTL": ttl})
        return int(j["ID"]), int(j.get("TTL", 0))

    def keepalive(self, lease):
        """The TTL etcd gives back: 0 if the lease is gone."""
        j = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(j.get("result", {}).get("TTL", 0))

    def revoke(self, lease):
        self.call("/v3/lease/revoke", {"ID": str(lease)})

    def put(self, key, value, lease=0):
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return self.call("/v3/kv/put", body)

    def delete(self, key):
        return self.call("/v3/kv/deleterange", {"key": b64(key)})

    def txn_put(self, ops):
        """ops: [(key, value, lease)], at most TXN_OPS."""
        assert len(ops) <= TXN_OPS
        puts = []
        for k, v, lease in ops:
            p = {"key": b64(k), "value": b64(v)}
            if lease:
                p["lease"] = str(lease)
            puts.append({"requestPut": p})
        return self.call("/v3/kv/txn", {"success": puts})

    def count(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        j = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "count_only": True})
        return int(j.get("count", 0))


def metric(m, name, **labels):
    """Sum of the series of `name` whose labels include `labels`."""
    total, found = 0.0, False
    want = ['%s="%s"' % kv for kv in labels.items()]
    for k, v in m.items():
        base, _, lab = k.partition("{")
        if base == name and all(w in lab for w in want):
            total += v
            found = True
    return total if found else None


# --------------------------------------------------------------------------
# keeping the simulated hosts' leases alive

class KeepAlive:
    """Renews every lease once per `period`, spread evenly over the period
    (as independent hosts would be), from `threads` threads."""

    def __init__(self, etcd, leases, period, threads):
        self.etcd, self.leases, self.period = etcd, list(leases), period
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.sent = self.failed = self.lost = 0
        self.max_lag = 0.0
        self.lags = []
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(w, threads), daemon=True)
                        for w in range(threads)]
        self.start_t = None

    def start(self):
        self.start_t = now()
        for t in self.threads:
            t.start()

    def stats(self):
        with self.lock:
            return {"sent": self.sent, "failed": self.failed, "lost": self.lost,
                    "max_lag_s": round(self.max_lag, 3)}

    def _run(self, w, nthreads):
        n = len(self.leases)
        mine = [(i * self.period / n, self.leases[i]) for i in range(w, n, nthreads)]
        if not mine:
            return
        cycle = 0
        while not self.stop_ev.is_set():
            for off, lease in mine:
                due = self.start_t + cycle * self.period + off
                wait = due - now()
                if wait > 0 and self.stop_ev.wait(wait):
                    return
                lag = max(0.0, now() - due)
                try:
                    ttl = self.etcd.keepalive(lease)
                    err = None
                except Exception as e:  # counted, reported, keeps going
                    ttl, err = None, str(e)
                with self.lock:
                    self.sent += 1
                    self.max_lag = max(self.max_lag, lag)
                    if err is not None:
                        self.failed += 1
                        if len(self.errors) < 5:
                            self.errors.append(err)
                    elif ttl == 0:
                        self.lost += 1
            cycle += 1

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            if t.is_alive():
                t.join(10)


# --------------------------------------------------------------------------
# processes, namespaces, cleanup

class Cleanup:
    def __init__(self):
        self.procs = []  # (label, Popen), stopped in reverse order
        self.dirs = []
        self.namespaces = []  # namespaces vswitchd will create
        self.keepalive = None
        self.notes = []

    def stop_proc(self, label, p, timeout=15):
        """SIGTERM by PID, then SIGKILL; returns the time it took to exit."""
        if p.poll() is not None:
            return 0.0
        t = now()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.notes.append("%s (pid %d) ignored SIGTERM for %d s: killed" % (label, p.pid, timeout))
            p.kill()
            p.wait(5)
        return now() - t

    def netns_exists(self, ns):
        out = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
        return any(line.split()[0] == ns for line in out.splitlines() if line.strip())

    def drop_netns(self, ns):
        if self.netns_exists(ns):
            self.notes.append("namespace %s was still there after vswitchd stopped: deleted" % ns)
            subprocess.run(["ip", "netns", "del", ns], check=False)

    def run(self):
        if self.keepalive:
            self.keepalive.stop()
        for label, p in reversed(self.procs):
            try:
                self.stop_proc(label, p)
            except Exception as e:
                self.notes.append("stopping %s: %s" % (label, e))
        for ns in self.namespaces:
            self.drop_netns(ns)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


class EtcdProc:
    """Our etcd: 127.0.0.1, free ports, its own data dir; restartable on
    the same ports and data."""

    def __init__(self, cl, tmp):
        self.cl, self.tmp = cl, tmp
        self.data = os.path.join(tmp, "etcd-data")
        self.client = free_port()
        self.peer = free_port()
        while self.peer == self.client:
            self.peer = free_port()
        self.url = "http://127.0.0.1:%d" % self.client
        self.api = Etcd(self.client)
        self.p = None
        self.starts = 0

    def start(self):
        cu, pu = self.url, "http://127.0.0.1:%d" % self.peer
        logf = open(os.path.join(self.tmp, "etcd.log"), "a")
        self.p = subprocess.Popen(
            [ETCD, "--name", "scale", "--data-dir", self.data,
             "--listen-client-urls", cu, "--advertise-client-urls", cu,
             "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
             "--initial-cluster", "scale=" + pu,
             "--initial-cluster-state", "new" if self.starts == 0 else "existing"],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        self.cl.procs.append(("etcd", self.p))
        end = now() + 30
        while not self.api.healthy():
            if self.p.poll() is not None or now() > end:
                raise RuntimeError("etcd did not start; its log: %s" % os.path.join(self.tmp, "etcd.log"))
            time.sleep(0.05)

    def stop(self):
        self.cl.stop_proc("etcd", self.p)


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])  # kB
    except OSError:
        pass
    return out


def cpu_secs(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


class Vswitchd:
    def __init__(self, cl, tmp, name, ns, network, etcd_url, vxlan_port, log_level):
        self.cl, self.name, self.ns, self.network = cl, name, ns, network
        self.log_path = os.path.join(tmp, name + ".log")
        self.sock_path = os.path.join(tmp, name + ".notify")
        self.argv = [os.path.join(BIN, "vswitchd"), "--name", name, "--ports", ns,
                     "--vtep", "127.0.0.1", "--vxlan-port", str(vxlan_port),
                     "--etcd", etcd_url, "--network", network, "--subnet", SUBNET,
                     "--log-level", log_level]
        self.p = None

    def start(self, timeout):
        """Spawns it and waits for READY=1; returns seconds from spawn."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(self.sock_path)
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        env.pop("RUST_LOG", None)
        logf = open(self.log_path, "w")
        self.cl.namespaces.append(self.ns)
        t0 = now()
        self.p = subprocess.Popen(self.argv, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.t0 = t0
        self.cl.procs.append(("vswitchd " + self.name, self.p))
        try:
            while True:
                left = t0 + timeout - now()
                if left <= 0:
                    raise RuntimeError("vswitchd %s: no READY=1 within %d s" % (self.name, timeout))
                r, _, _ = select.select([s], [], [], min(left, 0.2))
                if r:
                    msg = s.recv(4096)
                    if b"READY=1" in msg:
                        return now() - t0
                if self.p.poll() is not None:
                    raise RuntimeError("vswitchd %s exited with %d before READY=1; last log lines:\n%s"
                                       % (self.name, self.p.returncode, self.log_tail()))
        finally:
            s.close()

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_lines(self, *levels):
        try:
            with open(self.log_path, errors="replace") as f:
                return [l.rstrip() for l in f if any(lv in l for lv in levels)]
        except OSError:
            return []

    def ctl(self, *args):
        t = now()
        r = subprocess.run([os.path.join(BIN, "vswitchctl"), "--name", self.name, "--json", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        dt = now() - t
        if r.returncode != 0:
            raise RuntimeError("vswitchctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return json.loads(r.stdout), dt

    def overlay(self):
        """(remote_ports, hosts, whole reply, seconds the call took)."""
        j, dt = self.ctl("overlay")
        return j["directory"]["remote_ports"], len(j["hosts"]), j, dt

    def counts(self):
        """((remote_ports, hosts), seconds the call took): `vswitchctl overlay`."""
        ports, hosts, _, dt = self.overlay()
        return (ports, hosts), dt

    def forwards_to_overlay(self, mac, ip):
        """(whether the datapath sends a unicast to `mac` to the overlay as
        a remote port's, seconds the call took): `vswitchctl trace`, which
        runs the datapath's decision code on a made-up frame from our port
        without sending it or changing any state."""
        j, dt = self.ctl("trace", "--port", self.ns, "eth", "dst=" + mac, "ip", "dst=" + ip,
                         "udp", "dport=9")
        return any("remote port" in step for step in j["steps"]), dt

    def stop(self):
        """SIGTERM; (seconds to exit, exit code, namespace left behind)."""
        dt = self.cl.stop_proc("vswitchd " + self.name, self.p)
        left = self.cl.netns_exists(self.ns)
        self.cl.drop_netns(self.ns)
        return dt, self.p.returncode, left


class Poller:
    """Polls a probe every `interval` s until `cond(value)`; remembers how
    long each call took and the achieved interval between polls."""

    def __init__(self, interval):
        self.interval = interval
        self.call_times, self.gaps = {}, {}
        self.polls = 0

    def until(self, kind, probe, cond, timeout, what):
        end = now() + timeout
        last = None
        self.polls = 0
        while True:
            self.polls += 1
            start = now()
            if last is not None:
                self.gaps.setdefault(kind, []).append(start - last)
            last = start
            value, dt = probe()
            self.call_times.setdefault(kind, []).append(dt)
            if cond(value):
                return now(), value
            if now() > end:
                raise RuntimeError("timed out (%d s) waiting for %s: %r" % (timeout, what, value))
            rest = self.interval - (now() - start)
            if rest > 0:
                time.sleep(rest)


class StallMonitor:
    """Calls `vswitchctl status` every `interval` s from a thread: a slow
    answer means vswitchd's event loop (which also forwards frames) was
    busy for that long."""

    def __init__(self, vsw, interval=0.02):
        self.vsw, self.interval = vsw, interval
        self.times, self.starts = [], []
        self.errors = 0
        self.ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.ev.is_set():
            try:
                t = now()
                self.times.append(self.vsw.ctl("status")[1])
                self.starts.append(t)
            except Exception:
                self.errors += 1
            self.ev.wait(self.interval)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.ev.set()
        self.t.join(90)

    def summary(self, ref=None):
        out = {"calls": len(self.times), "errors": self.errors,
               "median_ms": ms(med(self.times)),
               "max_ms": ms(max(self.times)) if self.times else None,
               "over_100ms": sum(1 for t in self.times if t > 0.1)}
        if ref is not None and self.times:
            i = self.times.index(max(self.times))
            out["max_started_after_ref_s"] = round(self.starts[i] - ref, 2)
        return out


# --------------------------------------------------------------------------
# the simulated network

class SimNet:
    def __init__(self, etcd, net, hosts, pph):
        self.etcd, self.net, self.hosts, self.pph = etcd, net, hosts, pph
        self.prefix = "/vswitchd/%s/" % net
        self.leases = {}  # host index -> lease
        self.next_ip = PORT_BASE + hosts * pph  # addresses for extra ports

    def network_record(self):
        rec = {"subnet": SUBNET, "gateway": GATEWAY, "vni": 1,
               "gateway_mac": "02:5c:ff:00:00:01", "mtu": 1450}
        self.etcd.put(self.prefix + "network", json.dumps(rec, separators=(",", ":")))

    def host_kv(self, h):
        rec = {"vtep": vtep_of(h), "name": "sim%d" % h}
        return self.prefix + "hosts/" + vtep_of(h), json.dumps(rec, separators=(",", ":"))

    def port_kv(self, h, ip, idx, port):
        rec = {"ip": ip_str(ip), "mac": mac_of(idx), "host": vtep_of(h), "port": port}
        return self.prefix + "ports/" + ip_str(ip), json.dumps(rec, separators=(",", ":"))

    def grant_all(self, ttl, threads):
        ids = [None] * self.hosts

        def work(w):
            for h in range(w, self.hosts, threads):
                ids[h], got = self.etcd.grant(ttl)
                if got != ttl:
                    raise EtcdError("lease granted with TTL %d, asked %d" % (got, ttl))
        run_threads(work, threads)
        self.leases = dict(enumerate(ids))

    def load_ports(self, threads, first=0, last=None, host_keys=True):
        """Host keys and ports first..last-1 of every host, on their
        host's lease, in transactions of TXN_OPS puts; returns (txns,
        keys)."""
        last = self.pph if last is None else last
        ops = []
        for h in range(self.hosts):
            lease = self.leases[h]
            if host_keys:
                k, v = self.host_kv(h)
                ops.append((k, v, lease))
            for p in range(first, last):
                idx = h * self.pph + p
                k, v = self.port_kv(h, PORT_BASE + idx, idx, "p%d" % p)
                ops.append((k, v, lease))
        chunks = [ops[i:i + TXN_OPS] for i in range(0, len(ops), TXN_OPS)]

        def work(w):
            for c in chunks[w::threads]:
                self.etcd.txn_put(c)
        run_threads(work, threads)
        return len(chunks), len(ops)

    def extra_ip(self):
        ip = self.next_ip
        self.next_ip += 1
        if ip > SUBNET_END:
            raise RuntimeError("out of addresses in %s" % SUBNET)
        return ip

    def add_host(self, h, lease, nports):
        """A whole host (key + nports ports) on `lease`, in one or more txns."""
        ops = [self.host_kv(h) + (lease,)]
        for p in range(nports):
            ip = self.extra_ip()
            ops.append(self.port_kv(h, ip, ip - PORT_BASE, "e%d" % p) + (lease,))
        for i in range(0, len(ops), TXN_OPS):
            self.etcd.txn_put(ops[i:i + TXN_OPS])


def run_threads(fn, n):
    errors = []

    def wrap(w):
        try:
            fn(w)
        except Exception as e:
            errors.append(e)
    ts = [threading.Thread(target=wrap, args=(w,), daemon=True) for w in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        while t.is_alive():
            t.join(0.5)
    if errors:
        raise errors[0]


def med(xs):
    return statistics.median(xs) if xs else None


def ms(x):
    return None if x is None else round(x * 1000, 1)


# --------------------------------------------------------------------------
# the run

def run(args, cl, R):
    tag = "scl%d" % (os.getpid() % 100000)
    net = tag
    tmp = tempfile.mkdtemp(prefix="overlay_scale.")
    cl.dirs.append(tmp)
    for b in ("vswitchd", "vswitchctl"):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            raise RuntimeError("%s/%s is missing: cargo build --release" % (BIN, b))
    for ns in (tag, tag + "b"):
        if cl.netns_exists(ns):
            raise RuntimeError("namespace %s exists already; not touching it" % ns)
    total = args.hosts * args.ports_per_host
    extra = args.repeat + (args.expiry_runs * 2 + 2) * args.ports_per_host
    if PORT_BASE + total + extra > SUBNET_END or args.hosts + 100 > 250 * 256:
        raise RuntimeError("too many hosts/ports for %s and 127.1.0.0/16" % SUBNET)
    R["config"] = {"hosts": args.hosts, "ports_per_host": args.ports_per_host,
                   "remote_ports": total, "sim_ttl_s": args.sim_ttl,
                   "keepalive_period_s": args.keepalive_period, "network": net,
                   "subnet": SUBNET, "poll_ms": args.poll_ms, "cpus": os.cpu_count(),
                   "loadavg_at_start": os.getloadavg()[0]}

    log("starting etcd (127.0.0.1, data dir in %s)" % tmp)
    ep = EtcdProc(cl, tmp)
    ep.start()
    etcd, etcd_url = ep.api, ep.url
    R["config"]["etcd"] = etcd_url
    vxlan_port = free_port(socket.SOCK_DGRAM)

    # (1) load
    sim = SimNet(etcd, net, args.hosts, args.ports_per_host)
    sim.network_record()
    log("granting %d leases (TTL %d s)" % (args.hosts, args.sim_ttl))
    t = now()
    sim.grant_all(args.sim_ttl, args.load_threads)
    t_grant = now() - t
    ka = KeepAlive(etcd, [sim.leases[h] for h in range(args.hosts)], args.keepalive_period,
                   args.keepalive_threads)
    cl.keepalive = ka
    ka.start()
    pre = args.ports_per_host if args.preload is None else args.preload
    start_total = args.hosts * pre
    log("loading %d host keys + %d port keys in txns of %d puts" % (args.hosts, start_total, TXN_OPS))
    t2 = now()
    ntxn, nops = sim.load_ports(args.load_threads, 0, pre)
    t_put = now() - t2
    n = etcd.count(sim.prefix + "ports/")
    if n != start_total:
        raise RuntimeError("etcd holds %d port keys, expected %d" % (n, start_total))
    m = etcd.metrics()
    R["load"] = {"leases_s": round(t_grant, 2), "puts_s": round(t_put, 2),
                 "total_s": round(t_grant + t_put, 2), "txns": ntxn, "keys": nops,
                 "keys_per_s": round(nops / t_put), "threads": args.load_threads,
                 "etcd_db_bytes": metric(m, "etcd_mvcc_db_total_size_in_bytes"),
                 "etcd_rss_bytes": metric(m, "process_resident_memory_bytes")}
    log("loaded in %.1f s (leases %.1f s, keys %.1f s)" % (t_grant + t_put, t_grant, t_put))

    # (2, 3) baseline, then the real host
    if not args.no_baseline:
        log("baseline: vswitchd against an empty network")
        b = Vswitchd(cl, tmp, tag + "b", tag + "b", net + "-empty", etcd_url, vxlan_port,
                 args.vswitchd_log_level)
        ready = b.start(args.ready_timeout)
        time.sleep(0.5)
        st = proc_status(b.p.pid)
        dt, rc, left = b.stop()
        R["baseline"] = {"ready_s": round(ready, 3), "rss_kb": st.get("VmRSS"),
                         "hwm_kb": st.get("VmHWM"), "stop_s": round(dt, 2), "exit": rc,
                         "netns_left": left}
    vsw = Vswitchd(cl, tmp, tag, tag, net, etcd_url, vxlan_port,
                 args.vswitchd_log_level)
    log("starting vswitchd: %s" % " ".join(vsw.argv))
    R["vswitchd_argv"] = " ".join(vsw.argv)
    try:
        ready = vsw.start(args.ready_timeout)
    except RuntimeError as e:
        R["vswitchd_error"] = str(e)
        R["vswitchd_log_tail"] = vsw.log_tail(30)
        log("vswitchd FAILED: %s" % e)
        # a refused start must leave nothing behind: no host key, no namespace
        R["vswitchd_failed_left"] = {
            "own_host_key": etcd.count(sim.prefix + "hosts/127.0.0.1"),
            "netns": cl.netns_exists(vsw.ns)}
        steady_state(args, etcd, ka, None, R)
        return 2
    st_ready = proc_status(vsw.p.pid)
    cpu_ready = cpu_secs(vsw.p.pid)
    poll = Poller(args.poll_ms / 1000.0)
    t_full, (ports, hosts) = poll.until("overlay", vsw.counts,
                                        lambda v: v[0] >= start_total and v[1] >= args.hosts,
                                        args.wait_timeout, "every remote port")
    R["start"] = {"ready_s": round(ready, 3), "all_known_s": round(t_full - vsw.t0, 3),
                  "remote_ports": ports, "hosts": hosts, "cpu_s_to_ready": cpu_ready,
                  "rss_kb_ready": st_ready.get("VmRSS"), "hwm_kb_ready": st_ready.get("VmHWM")}
    log("ready in %.2f s, all %d ports known %.2f s after spawn" % (ready, ports, t_full - vsw.t0))

    if start_total < total:
        # the rest of the ports while vswitchd runs: they come through its
        # watch, one event each
        log("growing the network while vswitchd runs: %d -> %d ports" % (start_total, total))
        # no `overlay` call while it grows (each costs the loop ~100 ms at
        # this size): the status monitor alone, then the last port through
        # trace, then the count
        grow = Poller(args.poll_ms / 1000.0)
        last = PORT_BASE + total - 1
        with StallMonitor(vsw) as mon:
            t0 = now()
            g_txn, g_keys = sim.load_ports(args.load_threads, pre, args.ports_per_host, False)
            t_loaded = now()
            grow.until("trace", lambda: vsw.forwards_to_overlay(mac_of(last - PORT_BASE), ip_str(last)),
                       bool, args.wait_timeout, "the last port of the grown network")
        grow.interval = 0.2
        t_all, (ports, hosts) = grow.until("overlay", vsw.counts, lambda v: v[0] >= total,
                                           args.wait_timeout * 5, "the grown network")
        st = proc_status(vsw.p.pid)
        R["grow"] = {"from_ports": start_total, "to_ports": total, "txns": g_txn,
                     "keys": g_keys, "load_s": round(t_loaded - t0, 2),
                     "all_known_s": round(t_all - t0, 2),
                     "after_last_put_s": round(t_all - t_loaded, 2),
                     "status_monitor": mon.summary(),
                     "rss_kb": st.get("VmRSS"), "hwm_kb": st.get("VmHWM")}
        log("grown: all %d known %.2f s after the first put" % (ports, t_all - t0))

    # what the probes cost; a status call while an overlay call is served
    # shows whether the event loop is blocked meanwhile
    calls = [vsw.overlay()[3] for _ in range(5)]
    scalls = [vsw.ctl("status")[1] for _ in range(5)]
    tcalls = [vsw.forwards_to_overlay(mac_of(0), ip_str(PORT_BASE))[1] for _ in range(5)]
    during = []
    for _ in range(3):
        bg = subprocess.Popen([os.path.join(BIN, "vswitchctl"), "--name", vsw.name, "--json",
                               "overlay"], stdout=subprocess.DEVNULL)
        time.sleep(0.010)
        during.append(vsw.ctl("status")[1])
        bg.wait(60)
    c0 = cpu_secs(vsw.p.pid)
    for _ in range(10):
        vsw.overlay()
    c1 = cpu_secs(vsw.p.pid)
    R["ctl"] = {"overlay_call_ms_median": ms(med(calls)), "overlay_call_ms_max": ms(max(calls)),
                "overlay_call_vswitchd_cpu_ms": round((c1 - c0) * 100, 1),
                "status_call_ms_median": ms(med(scalls)),
                "status_call_during_overlay_ms_median": ms(med(during)),
                "trace_call_ms_median": ms(med(tcalls))}

    # fdb: remote ports do not use the MAC table
    status, _ = vsw.ctl("status")
    R["fdb"] = {"size": status["fdb"]["size"], "max": status["fdb"]["max"],
                "refused": status["fdb"]["refused"], "evicted": status["fdb"]["evicted"],
                "remote_ports": ports}

    def dp(mac, ip):
        return lambda: vsw.forwards_to_overlay(mac, ip)

    # (4) propagation: a port added / removed on a simulated host; first
    # the datapath's decision (trace), then `overlay`'s count
    log("propagation: %d ports added and removed on simulated hosts" % args.repeat)
    P = {"add_dp": [], "add_ov": [], "del_dp": [], "del_ov": [], "put": [], "add_dp_polls": []}
    for k in range(args.repeat):
        h = (k * 7919) % args.hosts
        ip = sim.extra_ip()
        key, val = sim.port_kv(h, ip, ip - PORT_BASE, "new%d" % k)
        mac = mac_of(ip - PORT_BASE)
        (base, _), _ = vsw.counts()
        t0 = now()
        etcd.put(key, val, sim.leases[h])
        P["put"].append(now() - t0)
        t1, _ = poll.until("trace", dp(mac, ip_str(ip)), bool, args.wait_timeout, "the new port")
        P["add_dp"].append(t1 - t0)
        P["add_dp_polls"].append(poll.polls)
        t2, _ = poll.until("overlay", vsw.counts, lambda v: v[0] == base + 1, args.wait_timeout,
                           "the new port counted")
        P["add_ov"].append(t2 - t0)
        time.sleep(0.2)
        t0 = now()
        etcd.delete(key)
        t1, _ = poll.until("trace", dp(mac, ip_str(ip)), lambda v: not v, args.wait_timeout,
                           "the port gone")
        P["del_dp"].append(t1 - t0)
        t2, _ = poll.until("overlay", vsw.counts, lambda v: v[0] == base, args.wait_timeout,
                           "the port gone from the count")
        P["del_ov"].append(t2 - t0)
        time.sleep(0.2)
    R["propagation"] = {"runs": args.repeat, "etcd_put_ms_median": ms(med(P["put"])),
                        "trace_polls_to_see_add": P["add_dp_polls"]}
    for k in ("add_dp", "add_ov", "del_dp", "del_ov"):
        R["propagation"][k + "_ms"] = [ms(x) for x in P[k]]
        R["propagation"][k + "_ms_median"] = ms(med(P[k]))
        R["propagation"][k + "_ms_max"] = ms(max(P[k]))

    # (5) a host whose lease expires; a host that leaves cleanly. The
    # datapath check uses the host's last port (deleted with the lease, in
    # the same revision as the host key and the others).
    log("host lease expiry (TTL %d s, %d ports) x %d, clean leave x %d"
        % (args.expiry_ttl, args.ports_per_host, args.expiry_runs, args.expiry_runs))
    H = {k: [] for k in ("join_dp", "join_ov", "expiry_dp", "expiry_ov", "leave_dp", "leave_ov")}
    hidx = args.hosts + 10
    for leaving in (False, True):
        for r in range(args.expiry_runs):
            (base_p, base_h), _ = vsw.counts()
            lease, ttl = etcd.grant(args.sim_ttl if leaving else args.expiry_ttl)
            t_granted = t_send = now()
            sim.add_host(hidx, lease, args.ports_per_host)
            last = sim.next_ip - 1
            probe = dp(mac_of(last - PORT_BASE), ip_str(last))
            back = (base_p + args.ports_per_host, base_h + 1)
            t1, _ = poll.until("trace", probe, bool, args.wait_timeout, "the new host's port")
            t2, _ = poll.until("overlay", vsw.counts, lambda v: v == back, args.wait_timeout,
                               "the new host's ports counted")
            if not leaving:
                H["join_dp"].append(t1 - t_send)
                H["join_ov"].append(t2 - t_send)
                t0 = t_granted + ttl  # expected expiry
                limit = ttl + args.wait_timeout
            else:
                t0 = now()
                etcd.revoke(lease)
                limit = args.wait_timeout
            t1, _ = poll.until("trace", probe, lambda v: not v, limit, "the host's port gone")
            t2, _ = poll.until("overlay", vsw.counts, lambda v: v == (base_p, base_h),
                               args.wait_timeout, "the host gone from the count")
            key = "leave" if leaving else "expiry"
            H[key + "_dp"].append(t1 - t0)
            H[key + "_ov"].append(t2 - t0)
            hidx += 1
    R["host_events"] = {"ports_per_host": args.ports_per_host, "expiry_ttl_s": args.expiry_ttl}
    for k, v in H.items():
        R["host_events"][k + "_ms"] = [ms(x) for x in v]
    R["poll"] = {"interval_ms": args.poll_ms}
    for kind in poll.call_times:
        R["poll"][kind + "_call_ms_median"] = ms(med(poll.call_times[kind]))
        R["poll"][kind + "_gap_ms_median"] = ms(med(poll.gaps.get(kind, [])))

    # (6) steady state
    steady_state(args, etcd, ka, vsw, R)

    status, _ = vsw.ctl("status")
    ports, hosts, ov, _ = vsw.overlay()
    st_end = proc_status(vsw.p.pid)
    R["end"] = {"rss_kb": st_end.get("VmRSS"), "hwm_kb": st_end.get("VmHWM"),
                "cpu_s": cpu_secs(vsw.p.pid), "remote_ports": ports, "hosts": hosts,
                "fdb_size": status["fdb"]["size"], "fdb_max": status["fdb"]["max"],
                "vxlan_tx_to_sim_hosts": sum(h.get("tx_packets", 0) for h in ov["hosts"]),
                "vxlan_drops": ov.get("drops"), "arp_answered": ov["directory"]["arp_answered"],
                "connected": ov["directory"]["connected"]}
    full_rss = R["grow"]["rss_kb"] if "grow" in R else st_ready.get("VmRSS")
    if "baseline" in R and full_rss and R["baseline"].get("rss_kb"):
        R["end"]["rss_bytes_per_remote_port"] = round(
            (full_rss - R["baseline"]["rss_kb"]) * 1024 / max(total, 1))

    if args.restart_etcd:
        restart_etcd(args, ep, vsw, total, R)

    # stop: vswitchd revokes its lease and deletes its namespace
    own_host_key = sim.prefix + "hosts/127.0.0.1"
    before = etcd.count(own_host_key)
    dt, rc, left = vsw.stop()
    R["stop"] = {"stop_s": round(dt, 2), "exit": rc, "netns_left_behind": left,
                 "own_host_key_before": before, "own_host_key_after": etcd.count(own_host_key)}
    R["vswitchd_warnings"] = vsw.log_lines("WARN", "ERROR")[:20]
    return 0


def restart_etcd(args, ep, vsw, total, R):
    """Stops etcd and starts it again on the same data: vswitchd loses it,
    reconnects (new lease, its keys again, the whole snapshot: a Resync).
    Watched through vswitchd's log (free for it) and a `status` call every
    50 ms (how long its event loop is blocked), not through `overlay` calls,
    which cost its loop ~100 ms each at 100,000 ports."""
    log("restarting etcd: vswitchd must reconnect and resync %d ports" % total)
    out = {}
    pos = os.path.getsize(vsw.log_path)

    def wait_log(text, timeout):
        end = now() + timeout
        while now() < end:
            with open(vsw.log_path, errors="replace") as f:
                f.seek(pos)
                for line in f:
                    if text in line:
                        return now(), line.rstrip()
            time.sleep(0.02)
        return None, None
    with StallMonitor(vsw, 0.05) as mon:
        t0 = now()
        ep.stop()
        t_lost, _ = wait_log("lost etcd", 30)
        out["lost_logged_s"] = None if t_lost is None else round(t_lost - t0, 2)
        ep.start()
        t_up = now()
        c_up = cpu_secs(vsw.p.pid)
        m_up = ep.api.metrics()
        out["etcd_down_s"] = round(t_up - t0, 2)
        t_back, line = wait_log("etcd back at", args.wait_timeout)
        t_end = t_back if t_back is not None else now()
        c_end = cpu_secs(vsw.p.pid)
        m_end = ep.api.metrics()
        # what vswitchd's attempts cost etcd (the simulated hosts' keep-alives
        # do not put or grant)
        for k, name in (("puts", "etcd_mvcc_put_total"), ("deletes", "etcd_mvcc_delete_total"),
                        ("leases_granted", "etcd_debugging_lease_granted_total"),
                        ("leases_revoked", "etcd_debugging_lease_revoked_total"),
                        ("range_requests", "etcd_mvcc_range_total")):
            a, b = metric(m_up, name), metric(m_end, name)
            out["etcd_" + k] = None if a is None or b is None else b - a
        out["vswitchd_cpu_pct_while_reconnecting"] = round((c_end - c_up) / (t_end - t_up) * 100, 1)
        if t_back is not None:
            out["back_logged_after_etcd_up_s"] = round(t_back - t_up, 2)
            time.sleep(3)  # the Resync is applied on the loop right after
        else:
            out["not_back_after_s"] = args.wait_timeout
    ports, hosts, j, _ = vsw.overlay()
    out["after"] = {"connected": j["directory"]["connected"], "remote_ports": ports, "hosts": hosts}
    out["status_monitor"] = mon.summary(t_back)
    with open(vsw.log_path, errors="replace") as f:
        f.seek(pos)
        lines = [l.rstrip() for l in f]
    out["log_lines"] = len(lines)
    out["log_first"] = lines[:3]
    still = [l for l in lines if "still unreachable" in l]
    out["still_unreachable_lines"] = len(still)
    out["still_unreachable_last"] = still[-1] if still else None
    R["etcd_restart"] = out


def steady_state(args, etcd, ka, vsw, R):
    log("steady state: %d s window" % args.window)
    pid = vsw.p.pid if vsw else None
    m0, k0, t0 = etcd.metrics(), ka.stats(), now()
    c0 = cpu_secs(pid) if pid else None
    time.sleep(args.window)
    m1, k1, t1 = etcd.metrics(), ka.stats(), now()
    c1 = cpu_secs(pid) if pid else None
    dt = t1 - t0

    def rate(name, **lab):
        a, b = metric(m0, name, **lab), metric(m1, name, **lab)
        return None if a is None or b is None else round((b - a) / dt, 2)
    ka_msgs = rate("grpc_server_msg_received_total", grpc_method="LeaseKeepAlive")
    ka_streams = rate("grpc_server_started_total", grpc_method="LeaseKeepAlive")
    real_rate = args.hosts / (10 / 3)
    etcd_cpu = rate("process_cpu_seconds_total")
    R["steady"] = {
        "window_s": round(dt, 1),
        "keepalive_msgs_per_s": ka_msgs,
        "keepalive_streams_opened_per_s": ka_streams,
        "keepalive_on_long_streams_per_s":
            None if ka_msgs is None or ka_streams is None else round(ka_msgs - ka_streams, 2),
        "leases_renewed_per_s": rate("etcd_debugging_lease_renewed_total"),
        "puts_per_s": rate("etcd_mvcc_put_total"),
        "proposals_committed_per_s": rate("etcd_server_proposals_committed_total"),
        "wal_fsyncs_per_s": rate("etcd_disk_wal_fsync_duration_seconds_count"),
        "etcd_cpu_pct": None if etcd_cpu is None else round(etcd_cpu * 100, 1),
        "etcd_rss_bytes": metric(m1, "process_resident_memory_bytes"),
        "sim_keepalives_sent_per_s": round((k1["sent"] - k0["sent"]) / dt, 1),
        "sim_keepalive": k1,
        "sim_keepalive_errors": ka.errors[:3],
        "vswitchd_cpu_pct": None if c0 is None or c1 is None else round((c1 - c0) / dt * 100, 2),
        "real_network_keepalives_per_s_ttl10": round(real_rate, 1),
    }


# --------------------------------------------------------------------------
# report

def table(R):
    rows = []

    def row(k, v):
        rows.append((k, "" if v is None else str(v)))
    c = R.get("config", {})
    row("simulated hosts x ports", "%s x %s = %s remote ports" % (c.get("hosts"), c.get("ports_per_host"), c.get("remote_ports")))
    if "load" in R:
        L = R["load"]
        row("(1) load: leases / keys / total (s)", "%s / %s / %s" % (L["leases_s"], L["puts_s"], L["total_s"]))
        row("(1) keys, txns, keys/s", "%s, %s, %s" % (L["keys"], L["txns"], L["keys_per_s"]))
        row("(1) etcd db / RSS after load (MB)", "%.1f / %.1f" % ((L["etcd_db_bytes"] or 0) / 1e6, (L["etcd_rss_bytes"] or 0) / 1e6))
    if "vswitchd_error" in R:
        lines = [l for l in R["vswitchd_error"].splitlines() if l.strip()]
        row("(2) vswitchd", "FAILED: " + lines[-1][:160])
    if "vswitchd_failed_left" in R:
        row("(2) after the failed start: own host key, netns left", "%s, %s" % (
            R["vswitchd_failed_left"]["own_host_key"], R["vswitchd_failed_left"]["netns"]))
    if "baseline" in R:
        B = R["baseline"]
        row("baseline (empty network): ready s / RSS MB", "%s / %.1f" % (B["ready_s"], (B["rss_kb"] or 0) / 1024))
    if "start" in R:
        S = R["start"]
        row("(2) spawn -> READY=1 (s)", S["ready_s"])
        row("(2) spawn -> overlay shows all ports+hosts (s)", "%s (%s ports, %s hosts)" % (S["all_known_s"], S["remote_ports"], S["hosts"]))
        row("(2) vswitchd CPU to ready (s)", S["cpu_s_to_ready"])
        row("(3) RSS at ready / peak (MB)", "%.1f / %.1f" % (S["rss_kb_ready"] / 1024, S["hwm_kb_ready"] / 1024))
    if "grow" in R:
        G = R["grow"]
        row("grow while running: %s -> %s ports: puts done / all known (s)" % (G["from_ports"], G["to_ports"]),
            "%s / %s" % (G["load_s"], G["all_known_s"]))
        row("grow: status call latency median / max (ms)", "%s / %s" % (G["status_monitor"]["median_ms"], G["status_monitor"]["max_ms"]))
        row("(3) RSS after growth / peak (MB)", "%.1f / %.1f" % (G["rss_kb"] / 1024, G["hwm_kb"] / 1024))
    if "end" in R:
        E = R["end"]
        row("(3) RSS at end / peak (MB)", "%.1f / %.1f" % (E["rss_kb"] / 1024, E["hwm_kb"] / 1024))
        if "rss_bytes_per_remote_port" in E:
            row("(3) RSS per remote port (B, vs baseline)", E["rss_bytes_per_remote_port"])
    if "ctl" in R:
        C = R["ctl"]
        row("vswitchctl overlay call (ms, median/max)", "%s / %s" % (C["overlay_call_ms_median"], C["overlay_call_ms_max"]))
        row("  vswitchd CPU per overlay call (ms)", C["overlay_call_vswitchd_cpu_ms"])
        row("vswitchctl status call: alone / during an overlay call (ms)", "%s / %s" % (C["status_call_ms_median"], C["status_call_during_overlay_ms_median"]))
        row("vswitchctl trace call (ms, median)", C["trace_call_ms_median"])
    if "propagation" in R:
        P = R["propagation"]
        row("(4) port added -> datapath (trace) (ms, median/max)", "%s / %s" % (P["add_dp_ms_median"], P["add_dp_ms_max"]))
        row("(4) port added -> overlay count (ms, median/max)", "%s / %s" % (P["add_ov_ms_median"], P["add_ov_ms_max"]))
        row("(4) port deleted -> datapath (trace) (ms, median/max)", "%s / %s" % (P["del_dp_ms_median"], P["del_dp_ms_max"]))
        row("(4) port deleted -> overlay count (ms, median/max)", "%s / %s" % (P["del_ov_ms_median"], P["del_ov_ms_max"]))
        row("(4) etcd put RTT (ms, median)", P["etcd_put_ms_median"])
    if "poll" in R:
        Q = R["poll"]
        row("poll: trace call / gap, overlay call / gap (ms, median)", "%s / %s, %s / %s" % (
            Q.get("trace_call_ms_median"), Q.get("trace_gap_ms_median"), Q.get("overlay_call_ms_median"), Q.get("overlay_gap_ms_median")))
    if "host_events" in R:
        H = R["host_events"]
        n = H["ports_per_host"]
        row("(5) host + %d ports joined -> datapath / count (ms)" % n, "%s / %s" % (H["join_dp_ms"], H["join_ov_ms"]))
        row("(5) lease expiry (TTL %d s): gone after expected, datapath / count (ms)" % H["expiry_ttl_s"], "%s / %s" % (H["expiry_dp_ms"], H["expiry_ov_ms"]))
        row("(5) clean leave (revoke) -> gone, datapath / count (ms)", "%s / %s" % (H["leave_dp_ms"], H["leave_ov_ms"]))
    if "steady" in R:
        T = R["steady"]
        row("(6) keep-alives/s (gRPC LeaseKeepAlive msgs)", T["keepalive_msgs_per_s"])
        row("(6)   of which on long-lived streams (vswitchd)", T["keepalive_on_long_streams_per_s"])
        row("(6) leases renewed/s", T["leases_renewed_per_s"])
        row("(6) puts/s, proposals/s, WAL fsyncs/s", "%s, %s, %s" % (T["puts_per_s"], T["proposals_committed_per_s"], T["wal_fsyncs_per_s"]))
        row("(6) etcd CPU (% of a core)", T["etcd_cpu_pct"])
        row("(6) vswitchd CPU idle (% of a core)", T["vswitchd_cpu_pct"])
        row("(6) a real network at TTL 10 s: keep-alives/s", T["real_network_keepalives_per_s_ttl10"])
        row("(6) sim keep-alive: sent/failed/lost, max lag s", "%s/%s/%s, %s" % (T["sim_keepalive"]["sent"], T["sim_keepalive"]["failed"], T["sim_keepalive"]["lost"], T["sim_keepalive"]["max_lag_s"]))
    if "fdb" in R:
        F = R["fdb"]
        row("fdb (MAC table) size / --fdb-max with remote ports", "%s / %s with %s remote" % (F["size"], F["max"], F["remote_ports"]))
    if "end" in R:
        row("VXLAN datagrams sent to simulated VTEPs (lo)", R["end"]["vxlan_tx_to_sim_hosts"])
    if "etcd_restart" in R:
        X = R["etcd_restart"]
        row("etcd restart: down (s) / vswitchd back after etcd up (s)",
            "%s / %s" % (X.get("etcd_down_s"), X.get("back_logged_after_etcd_up_s", "NOT BACK within %s s" % X.get("not_back_after_s"))))
        row("etcd restart: afterwards connected, ports, hosts", "%s, %s, %s" % (X["after"]["connected"], X["after"]["remote_ports"], X["after"]["hosts"]))
        row("etcd restart: vswitchd CPU while reconnecting (% of a core)", X["vswitchd_cpu_pct_while_reconnecting"])
        row("etcd restart: status call latency median / max (ms)", "%s / %s" % (X["status_monitor"]["median_ms"], X["status_monitor"]["max_ms"]))
    if "stop" in R:
        S = R["stop"]
        row("vswitchd stop (s), exit, netns left, own host key after",
            "%s, %s, %s, %s" % (S["stop_s"], S["exit"], S["netns_left_behind"], S["own_host_key_after"]))
    w = max(len(k) for k, _ in rows)
    out = ["| %s | %s |" % ("metric".ljust(w), "value"), "|%s|---|" % ("-" * (w + 2))]
    out += ["| %s | %s |" % (k.ljust(w), v) for k, v in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--ports-per-host", type=int, default=100)
    ap.add_argument("--sim-ttl", type=int, default=30, help="simulated hosts' lease TTL (s)")
    ap.add_argument("--keepalive-period", type=float, default=10 / 3,
                    help="seconds between two keep-alives of one simulated host (default 3.33: TTL 10 / 3)")
    ap.add_argument("--keepalive-threads", type=int, default=4)
    ap.add_argument("--load-threads", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5, help="propagation runs")
    ap.add_argument("--expiry-ttl", type=int, default=5)
    ap.add_argument("--expiry-runs", type=int, default=2)
    ap.add_argument("--window", type=int, default=20, help="steady-state window (s)")
    ap.add_argument("--poll-ms", type=float, default=10)
    ap.add_argument("--ready-timeout", type=int, default=300)
    ap.add_argument("--wait-timeout", type=int, default=60)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--vswitchd-log-level", default="info,vswitchd::directory::client=debug",
                    help="vswitchd's --log-level (default: info, and the directory client's debug "
                         "lines, which say why a reconnect fails)")
    ap.add_argument("--preload", type=int, metavar="K",
                    help="load only K ports per host before vswitchd starts, the rest while it runs "
                         "(through its watch)")
    ap.add_argument("--restart-etcd", action="store_true",
                    help="at the end, restart etcd (same data) and time vswitchd's reconnect and resync")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (vswitchd creates a namespace and a TAP)")
    if args.preload is not None and not 0 < args.preload <= args.ports_per_host:
        sys.exit("--preload must be 1..--ports-per-host")
    if args.keepalive_period >= args.sim_ttl:
        sys.exit("--keepalive-period must be below --sim-ttl")
    signal.signal(signal.SIGTERM, on_sigterm)
    cl = Cleanup()
    R = {}
    rc = 1
    try:
        rc = run(args, cl, R)
    except (KeyboardInterrupt, Interrupted):
        log("interrupted: cleaning up")
        R["error"] = "interrupted"
        rc = 130
    except Exception as e:
        log("error: %s" % e)
        R["error"] = str(e)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cl.run()
        R["cleanup_notes"] = cl.notes
    if args.json:
        print(json.dumps(R, indent=2))
    else:
        print(table(R))
        for key in ("error", "vswitchd_error", "vswitchd_log_tail"):
            if R.get(key):
                print("\n%s:\n%s" % (key, R[key]))
        if R.get("vswitchd_warnings"):
            print("\nvswitchd warnings/errors:\n" + "\n".join(R["vswitchd_warnings"]))
        if cl.notes:
            print("\ncleanup: " + "; ".join(cl.notes))
    return rc


if __name__ == "__main__":
    sys.exit(main())
