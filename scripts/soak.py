#!/usr/bin/env python3
"""Soak test (issue 13): vswitchd under mixed traffic for minutes, watching
its memory and CPU.

Topology (all names unique to this run, so it never collides with tests or
other runs on the machine):
  * vswitchd with 3 ports (namespaces it creates, subnet 192.168.98.0/24)
    and an uplink: the root end of a veth pair whose other end is eth0 of a
    'wan' test namespace with 10.98.0.1/24; the gateway is 10.98.0.2/24 on
    the uplink, default route via 10.98.0.1 (as tests/common/mod.rs
    WanHost + start_with_uplink do, on another subnet).

Traffic, for --minutes (default 10), all of it to addresses inside these
namespaces:
  * TCP ns1 <-> ns2 both ways (iperf3 --bidir if installed, else a Python
    sender/receiver pair), paced at --tcp-rate per direction;
  * a ping flood ns3 -> wan host through the NAT (-i 0.002, or ping -f with
    --ping-flood);
  * NAT flow churn: UDP from ns2 to the wan host, a new source port every 256
    datagrams and destination ports cycling over --udp-ports ports, at
    --udp-rate datagrams/s (nearly every datagram a new flow);
  * MAC churn: raw frames with random source MACs from ns1 (AF_PACKET in
    `ip netns exec`) to ns2's MAC, at --mac-rate frames/s;
  * `vswitchctl status`, `ports`, `fdb show`, `nat show` every second;
  * a capture switched on and off every 30 s
    (`vswitchctl capture -c 1000 -w /dev/null`).

Every --sample seconds (10) it reads vswitchd's VmRSS (/proc/PID/status),
CPU time (utime+stime, /proc/PID/stat), open fds and the heap figures of
`vswitchctl status` (the NAT's and the MAC table's own bytes, malloc's bytes
in use and free-but-held), and prints a table row; at the end: RSS first/last/max, whether RSS is flat (last <= the first
sample after the warm-up + 10%), CPU %, traffic figures, control-call
failures, and the warnings and errors in vswitchd's log (kept in the run's
directory under /tmp). --json prints one JSON document on stdout instead
(the table goes to stderr).

Run as root, from anywhere: python3 scripts/soak.py [--minutes 10] [--json]
Builds nothing: uses target/release/vswitchd and vswitchctl (--vswitchd,
--vswitchctl). Needs ip, ping; iperf3 optional. Processes it started are
stopped by PID; every namespace and interface it created is deleted, also
on error, Ctrl-C or SIGTERM.
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "sk%d" % os.getpid()
WAN_ADDR = "10.98.0.1"
UPLINK_CIDR = "10.98.0.2/24"
SUBNET = "192.168.98.0/24"
CLK_TCK = os.sysconf("SC_CLK_TCK")

OUT = sys.stdout


def log(msg):
    print(msg, file=OUT, flush=True)


def sh(*cmd, check=True, timeout=60):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


def netns_exists(name):
    return os.path.exists(os.path.join("/run/netns", name))


def link_exists(name):
    return os.path.exists(os.path.join("/sys/class/net", name))


# ---- traffic programs run inside namespaces (python3 -c) -----------------

UDP_CHURN = r"""
import socket, sys, time
dst, rate, secs, nports = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
t0 = time.time(); end = t0 + secs; sent = errors = 0; s = None
while True:
    now = time.time()
    if now >= end:
        break
    due = int((now - t0) * rate)
    while sent < due:
        if sent % 256 == 0:
            if s: s.close()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.sendto(b"soak" * 8, (dst, 1024 + sent % nports))
        except OSError:
            errors += 1
        sent += 1
    time.sleep(0.005)
print("sent %d errors %d" % (sent, errors), flush=True)
"""

MAC_CHURN = r"""
import random, socket, sys, time
ifname, dst, rate, secs = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
rnd = random.Random()
t0 = time.time(); end = t0 + secs; sent = errors = 0
pad = bytes(46)
while True:
    now = time.time()
    if now >= end:
        break
    due = int((now - t0) * rate)
    while sent < due:
        src = bytes([(rnd.randrange(256) & 0xfc) | 0x02]) + rnd.randbytes(5)
        try:
            s.send(dst + src + b"\x88\xb5" + pad)  # local experimental ethertype
        except OSError:
            errors += 1
        sent += 1
    time.sleep(0.005)
print("sent %d errors %d" % (sent, errors), flush=True)
"""

TCP_SINK = r"""
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(8)
def drain(c):
    while c.recv(1 << 16):
        pass
while True:
    c, _ = srv.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"""

TCP_SOURCE = r"""
import socket, sys, time
dst, port, rate, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
c = socket.create_connection((dst, port), timeout=10)
buf = bytes(1 << 16); t0 = time.time(); end = t0 + secs; sent = 0
while time.time() < end:
    if sent * 8 > (time.time() - t0) * rate:
        time.sleep(0.002); continue
    c.sendall(buf); sent += len(buf)
print("bytes %d gbps %.3f" % (sent, sent * 8 / secs / 1e9), flush=True)
"""


def last_json(text):
    """The last JSON document in `text` (iperf3 -J appends one per run)."""
    dec, i, last = json.JSONDecoder(), 0, {}
    while True:
        i = text.find("{", i)
        if i < 0:
            return last
        try:
            last, end = dec.raw_decode(text, i)
            i = end
        except ValueError:
            i += 1


def parse_rate(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG]?)", s)
    if not m:
        raise argparse.ArgumentTypeError("rate like 500M or 1G")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]


class Worker:
    """A traffic program, restarted if it stops before the end."""

    def __init__(self, name, argv, logdir, secs):
        """`argv(secs)`: the command line for a run of `secs` seconds."""
        self.name, self.argv = name, argv
        self.out_path = os.path.join(logdir, name + ".out")
        self.proc = None
        self.runs = []  # (exit code, last lines of output) of runs that ended early
        self.start(secs)

    def start(self, secs):
        with open(self.out_path, "a") as out:
            self.proc = subprocess.Popen(self.argv(int(secs)), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def output(self):
        try:
            with open(self.out_path) as f:
                return f.read()
        except OSError:
            return ""


class Soak:
    def __init__(self, args):
        self.a = args
        self.dir = tempfile.mkdtemp(prefix="vswitchd-soak-%s-" % TAG)
        self.name = TAG
        self.ports = [TAG + s for s in "abc"]
        self.wan = TAG + "w"
        self.uplink = TAG + "u"
        self.created_ns = []
        self.created_links = []
        self.workers = []
        self.vswitchd = None
        self.vlog = os.path.join(self.dir, "vswitchd.log")
        self.others = []  # other Popen objects (capture)
        self.ctl_calls = collections.Counter()
        self.ctl_fail = collections.Counter()
        self.ctl_errors = []
        self.ctl_max_ms = 0.0
        self.captures = {"started": 0, "ok": 0, "failed": 0, "killed": 0}
        self.samples = []

    # ---- setup ----------------------------------------------------------

    def setup(self):
        for n in self.ports + [self.wan]:
            if netns_exists(n):
                raise RuntimeError("namespace %s exists already (not ours): refusing" % n)
        if link_exists(self.uplink):
            raise RuntimeError("interface %s exists already (not ours): refusing" % self.uplink)
        sh("ip", "netns", "add", self.wan)
        self.created_ns.append(self.wan)
        sh("ip", "link", "add", self.uplink, "type", "veth", "peer", "name", "eth0",
           "netns", self.wan)
        self.created_links.append(self.uplink)
        sh("ip", "-n", self.wan, "addr", "add", WAN_ADDR + "/24", "dev", "eth0")
        sh("ip", "-n", self.wan, "link", "set", "eth0", "up")
        sh("ip", "-n", self.wan, "link", "set", "lo", "up")
        sh("ip", "link", "set", self.uplink, "up")
        # vswitchd creates the port namespaces; they are ours to delete too.
        self.created_ns.extend(self.ports)
        sock_path = os.path.join(self.dir, "notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(sock_path)
        s.settimeout(30)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        env.pop("RUST_LOG", None)
        argv = [self.a.vswitchd, "--name", self.name, "--ports", ",".join(self.ports),
                "--subnet", SUBNET, "--uplink", self.uplink, "--uplink-addr", UPLINK_CIDR,
                "--uplink-gw", WAN_ADDR] + self.a.vswitchd_args.split()
        with open(self.vlog, "w") as lf:
            self.vswitchd = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=lf,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            msg = s.recv(64)
        except socket.timeout:
            msg = b""
        s.close()
        if not msg.startswith(b"READY=1"):
            raise RuntimeError("vswitchd not ready within 30 s; log:\n" + self.read_log())
        ports = self.ctl_json("ports")
        self.addr, self.mac = {}, {}
        for p in ports:
            self.addr[p["name"]] = str(p.get("addr") or p.get("address")).split("/")[0]
            self.mac[p["name"]] = p["mac"]
        for ns in self.ports:  # traffic is possible
            if sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "3", WAN_ADDR,
                  check=False).returncode != 0:
                raise RuntimeError("%s cannot reach the wan host through vswitchd" % ns)

    # ---- control calls ----------------------------------------------------

    def ctl(self, *args, timeout=20):
        argv = [self.a.vswitchctl, "--name", self.name] + list(args)
        t = time.monotonic()
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=timeout)
            rc, out, err = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired:
            rc, out, err = -1, "", "timed out after %d s" % timeout
        ms = (time.monotonic() - t) * 1e3
        key = " ".join(a for a in args if a != "--json")
        self.ctl_calls[key] += 1
        self.ctl_max_ms = max(self.ctl_max_ms, ms)
        if rc != 0:
            self.ctl_fail[key] += 1
            if len(self.ctl_errors) < 20:
                self.ctl_errors.append("%s: rc %d: %s" % (key, rc, err.strip()[:300]))
        return rc, out

    def ctl_json(self, *args):
        rc, out = self.ctl("--json", *args)
        if rc != 0:
            raise RuntimeError("vswitchctl %s failed: %s" % (" ".join(args), self.ctl_errors[-1]))
        return json.loads(out)

    # ---- traffic ------------------------------------------------------------

    def nsx(self, ns, *argv):
        return ["ip", "netns", "exec", ns] + list(argv)

    def start_traffic(self, secs):
        a, b, c = self.ports
        py = sys.executable or "python3"
        self.iperf = shutil.which("iperf3") is not None and not self.a.no_iperf
        rate = self.a.tcp_rate
        W = lambda name, argv: self.workers.append(Worker(name, argv, self.dir, secs))
        if self.iperf:
            W("tcp-server", lambda _: self.nsx(b, "iperf3", "-s", "-p", "5201"))
            self.wait_listening(b, 5201)
            W("tcp", lambda t: self.nsx(a, "iperf3", "-c", self.addr[b], "-p", "5201", "--bidir",
                                        "-b", "%d" % rate, "-t", str(t), "-J"))
        else:
            W("tcp-server", lambda _: self.nsx(b, py, "-c", TCP_SINK, "5201"))
            W("tcp-server-rev", lambda _: self.nsx(a, py, "-c", TCP_SINK, "5201"))
            self.wait_listening(b, 5201)
            self.wait_listening(a, 5201)
            W("tcp", lambda t: self.nsx(a, py, "-c", TCP_SOURCE, self.addr[b], "5201", str(rate),
                                        str(t)))
            W("tcp-rev", lambda t: self.nsx(b, py, "-c", TCP_SOURCE, self.addr[a], "5201",
                                            str(rate), str(t)))
        flood = ["-f"] if self.a.ping_flood else ["-i", "0.002"]
        W("ping", lambda t: self.nsx(c, "ping", "-q", "-w", str(t), *flood, WAN_ADDR))
        W("udp-churn", lambda t: self.nsx(b, py, "-c", UDP_CHURN, WAN_ADDR, str(self.a.udp_rate),
                                          str(t), str(self.a.udp_ports)))
        W("mac-churn", lambda t: self.nsx(a, py, "-c", MAC_CHURN, "eth0", self.mac[b],
                                          str(self.a.mac_rate), str(t)))

    def wait_listening(self, ns, port, secs=10):
        end = time.time() + secs
        while time.time() < end:
            r = sh("ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :%d" % port, check=False)
            if r.stdout.strip():
                return
            time.sleep(0.1)
        raise RuntimeError("nothing listens on port %d in %s" % (port, ns))

    def supervise(self, remaining):
        """Restarts a traffic program that stopped early (recording why)."""
        for w in self.workers:
            if w.proc.poll() is None or remaining < 5 or len(w.runs) >= 20:
                continue
            tail = w.output().strip().splitlines()[-3:]
            w.runs.append((w.proc.returncode, tail))
            w.start(remaining)

    def capture_tick(self, now, last):
        cap = getattr(self, "cap", None)
        if cap is not None and cap.poll() is None and now - self.cap_t > 25:
            cap.kill()
            cap.wait()
            self.captures["killed"] += 1
            self.cap = cap = None
        if cap is not None and cap.poll() is not None:
            self.captures["ok" if cap.returncode == 0 else "failed"] += 1
            if cap.returncode != 0 and len(self.ctl_errors) < 20:
                self.ctl_errors.append("capture: rc %d: %s" % (cap.returncode,
                                                               cap.stderr.read().strip()[:300]))
            self.cap = cap = None
        if cap is None and now - last >= 30:
            self.cap = subprocess.Popen([self.a.vswitchctl, "--name", self.name, "capture",
                                         "-c", "1000", "-w", "/dev/null"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True,
                                        start_new_session=True)
            self.cap_t = now
            self.captures["started"] += 1
            return now
        return last

    # ---- sampling -------------------------------------------------------------

    def sample(self, t, status):
        pid = self.vswitchd.pid
        with open("/proc/%d/status" % pid) as f:
            st = f.read()
        rss = int(re.search(r"^VmRSS:\s+(\d+) kB", st, re.M).group(1))
        hwm = int(re.search(r"^VmHWM:\s+(\d+) kB", st, re.M).group(1))
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        fds = len(os.listdir("/proc/%d/fd" % pid))
        gw = (status or {}).get("gateway_port") or {}
        nat = gw.get("nat") or {}
        fdb = (status or {}).get("fdb") or {}
        mem = (status or {}).get("memory") or {}
        s = {"t": round(t, 1), "rss_kb": rss, "hwm_kb": hwm, "cpu_ticks": ticks, "fds": fds,
             "fdb": fdb.get("size"), "fdb_evicted": fdb.get("evicted"),
             "nat_flows": nat.get("flows"), "nat_created": nat.get("created"),
             "nat_refused_share": nat.get("refused_share"),
             "ctl_failures": sum(self.ctl_fail.values()),
             # Heap bytes by the daemon's own account (`status` memory).
             "heap_nat": mem.get("nat"), "heap_fdb": mem.get("fdb"),
             "malloc_in_use": mem.get("malloc_in_use"), "malloc_free": mem.get("malloc_free")}
        prev = self.samples[-1] if self.samples else None
        if prev:
            s["cpu_pct"] = round(100.0 * (ticks - prev["cpu_ticks"]) / CLK_TCK / (t - prev["t"]), 1)
        else:
            s["cpu_pct"] = None
        self.samples.append(s)
        if len(self.samples) == 1:
            log("%7s %9s %6s %5s %6s %8s %7s %9s %7s %8s %8s %8s %8s" % (
                "t (s)", "RSS (MB)", "CPU %", "fds", "fdb", "evicted", "nat", "nat new",
                "ctl err", "nat MB", "fdb MB", "malloc", "free"))
        mb = lambda b: "-" if b is None else "%.2f" % (b / 1048576)
        log("%7.0f %9.1f %6s %5d %6s %8s %7s %9s %7d %8s %8s %8s %8s" % (
            t, rss / 1024, "-" if s["cpu_pct"] is None else "%.1f" % s["cpu_pct"], fds,
            s["fdb"], s["fdb_evicted"], s["nat_flows"], s["nat_created"], s["ctl_failures"],
            mb(s["heap_nat"]), mb(s["heap_fdb"]), mb(s["malloc_in_use"]),
            mb(s["malloc_free"])))

    # ---- the run --------------------------------------------------------------

    def run(self):
        secs = self.a.minutes * 60
        self.setup()
        log("soak %s: vswitchd pid %d, ports %s, wan %s via %s; %d s; log %s" % (
            self.name, self.vswitchd.pid, ",".join(self.ports), self.wan, self.uplink, secs,
            self.vlog))
        self.t_start = time.monotonic()
        self.load0 = os.getloadavg()[0]
        self.start_traffic(secs)
        next_sample = 0.0
        last_cap = -25.0  # first capture after 5 s
        status = None
        while True:
            t = time.monotonic() - self.t_start
            if self.vswitchd.poll() is not None:
                raise RuntimeError("vswitchd exited (%s) during the soak; log:\n%s" % (
                    self.vswitchd.returncode, self.read_log()[-3000:]))
            rc, out = self.ctl("--json", "status")
            if rc == 0:
                try:
                    status = json.loads(out)
                except ValueError:
                    pass
            self.ctl("ports")
            self.ctl("fdb", "show")
            self.ctl("nat", "show")
            last_cap = self.capture_tick(t, last_cap)
            if t >= next_sample:
                self.sample(t, status)
                next_sample += self.a.sample
            if t >= secs:
                break
            self.supervise(secs - t)
            time.sleep(max(0.0, 1.0 - ((time.monotonic() - self.t_start) - t)))
        self.final_status = status
        self.wall = time.monotonic() - self.t_start

    def finish_traffic(self):
        """Waits a little for the timed programs to print their summaries."""
        end = time.time() + 15
        for w in self.workers:
            if w.name.startswith("tcp-server"):
                continue
            while w.proc.poll() is None and time.time() < end:
                time.sleep(0.2)

    def read_log(self):
        try:
            with open(self.vlog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def report(self):
        s = self.samples
        warm = min(self.a.warmup, self.a.minutes * 60 / 2)
        base = next((x for x in s if x["t"] >= warm), s[-1])
        first, last = s[0], s[-1]
        rss_max = max(x["rss_kb"] for x in s)
        flat = last["rss_kb"] <= base["rss_kb"] * 1.10
        cpu_total = 100.0 * (last["cpu_ticks"] - first["cpu_ticks"]) / CLK_TCK / max(
            last["t"] - first["t"], 1e-9)
        cpu_max = max((x["cpu_pct"] for x in s if x["cpu_pct"] is not None), default=None)
        r = {
            "instance": self.name, "minutes": self.a.minutes, "wall_s": round(self.wall, 1),
            "machine": "%d CPUs; 1-min load average %.1f at the start, %.1f at the end" % (
                os.cpu_count(), self.load0, os.getloadavg()[0]),
            "rss_mb": {"first": round(first["rss_kb"] / 1024, 2),
                       "after_warmup": round(base["rss_kb"] / 1024, 2),
                       "warmup_s": warm, "last": round(last["rss_kb"] / 1024, 2),
                       "max": round(rss_max / 1024, 2),
                       "min_after_warmup": round(min(x["rss_kb"] for x in s
                                                     if x["t"] >= base["t"]) / 1024, 2),
                       "peak_vmhwm": round(last["hwm_kb"] / 1024, 2)},
            "rss_flat": flat,
            "cpu_pct_of_one_core": {"mean": round(cpu_total, 1), "max_interval": cpu_max},
            "fds": {"first": first["fds"], "last": last["fds"]},
        }
        # Traffic figures.
        traffic = {}
        for w in self.workers:
            out = w.output()
            if w.name == "tcp" and self.iperf:
                try:
                    j = last_json(out)
                    e = j.get("end", {})
                    traffic["tcp_a_to_b_gbps"] = round(
                        e["sum_received"]["bits_per_second"] / 1e9, 3)
                    traffic["tcp_b_to_a_gbps"] = round(
                        e["sum_received_bidir_reverse"]["bits_per_second"] / 1e9, 3)
                except (ValueError, KeyError):
                    traffic["tcp"] = "no iperf3 summary (see %s)" % w.out_path
            elif w.name in ("tcp", "tcp-rev"):
                m = re.findall(r"gbps ([\d.]+)", out)
                traffic[w.name + "_gbps"] = float(m[-1]) if m else None
            elif w.name == "ping":
                m = re.findall(r"(\d+) packets transmitted, (\d+) received.*?([\d.]+)% packet loss",
                               out)
                if m:
                    tx, rx, loss = m[-1]
                    traffic["ping"] = {"transmitted": int(tx), "received": int(rx),
                                       "loss_pct": float(loss)}
                rtt = re.findall(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
                if rtt and "ping" in traffic:
                    traffic["ping"]["rtt_ms_min_avg_max"] = [float(x) for x in rtt[-1]]
            elif w.name in ("udp-churn", "mac-churn"):
                m = re.findall(r"sent (\d+) errors (\d+)", out)
                traffic[w.name] = {"sent": sum(int(a) for a, _ in m),
                                   "send_errors": sum(int(b) for _, b in m)}
            if w.runs and not w.name.startswith("tcp-server"):
                traffic.setdefault("restarts", {})[w.name] = [
                    {"rc": rc, "tail": tail} for rc, tail in w.runs]
        r["traffic"] = traffic
        st = self.final_status or {}
        r["fdb"] = st.get("fdb")
        r["nat"] = (st.get("gateway_port") or {}).get("nat")
        r["gateway_drops"] = (st.get("gateway_port") or {}).get("drops")
        r["control"] = {"calls": sum(self.ctl_calls.values()),
                        "failures": dict(self.ctl_fail), "max_ms": round(self.ctl_max_ms),
                        "errors": self.ctl_errors, "captures": self.captures}
        r["samples"] = [{k: v for k, v in x.items() if k != "cpu_ticks"} for x in s]
        return r

    def report_log(self, r):
        text = self.read_log()
        lines = text.splitlines()
        bad = [l for l in lines if re.search(r"\b(WARN|ERROR)\b", l)]
        def shape(l):  # the message without time, numbers, MACs, names
            l = re.sub(r"\x1b\[[0-9;]*m", "", l)
            l = re.sub(r"^\S+\s+", "", l).replace(TAG, "TAG")
            l = re.sub(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", "MAC", l)
            return re.sub(r"\d+", "N", l)[:200]
        kinds = collections.Counter(shape(l) for l in bad)
        r["vswitchd_log"] = {"path": self.vlog, "lines": len(lines),
                             "warn": sum(1 for l in bad if "WARN" in l),
                             "error": sum(1 for l in bad if "ERROR" in l),
                             "most_common": kinds.most_common(8)}

    # ---- cleanup ------------------------------------------------------------

    def stop_vswitchd(self):
        p = self.vswitchd
        if p is None or p.poll() is not None:
            return None
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return {"exit": "killed after 10 s"}
        return {"exit_code": p.returncode, "exit_s": round(time.monotonic() - t, 2)}

    def cleanup(self):
        procs = [w.proc for w in self.workers] + [getattr(self, "cap", None)]
        for p in procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in procs:
            if p is None:
                continue
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        stop = self.stop_vswitchd()
        for l in self.created_links:
            if link_exists(l):
                sh("ip", "link", "del", l, check=False)
        for n in self.created_ns:
            if netns_exists(n):
                sh("ip", "netns", "del", n, check=False)
        # The daemon removes these itself on a clean exit.
        for ext in ("sock", "lock", "state"):
            path = "/run/vswitchd/%s.%s" % (self.name, ext)
            if os.path.exists(path) and (self.vswitchd is None or self.vswitchd.poll() is not None):
                os.remove(path)
        left = [n for n in self.created_ns if netns_exists(n)] + [
            l for l in self.created_links if link_exists(l)]
        return stop, left


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vswitchd", default=os.path.join(ROOT, "target/release/vswitchd"))
    ap.add_argument("--vswitchctl", default=os.path.join(ROOT, "target/release/vswitchctl"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples (10)")
    ap.add_argument("--warmup", type=float, default=120,
                    help="seconds before the RSS baseline sample (120; at most half the run)")
    ap.add_argument("--tcp-rate", type=parse_rate, default=parse_rate("1G"),
                    help="TCP bits/s per direction (1G)")
    ap.add_argument("--udp-rate", type=int, default=1000, help="UDP churn datagrams/s (1000)")
    ap.add_argument("--udp-ports", type=int, default=30000,
                    help="destination ports the UDP churn cycles over (30000)")
    ap.add_argument("--mac-rate", type=int, default=1000, help="MAC churn frames/s (1000)")
    ap.add_argument("--ping-flood", action="store_true", help="ping -f instead of -i 0.002")
    ap.add_argument("--no-iperf", action="store_true", help="Python TCP even if iperf3 exists")
    ap.add_argument("--vswitchd-args", default="", help="extra vswitchd options")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak.py needs root")
    for b in (a.vswitchd, a.vswitchctl):
        if not os.access(b, os.X_OK):
            sys.exit("%s not found (build with cargo build --release)" % b)
    if a.json:
        OUT = sys.stderr

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    soak = Soak(a)
    result, err = None, None
    try:
        soak.run()
        soak.finish_traffic()
        result = soak.report()
    except KeyboardInterrupt:
        err = "interrupted"
    except Exception as e:  # reported after cleanup
        err = "%s: %s" % (type(e).__name__, e)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # cleanup runs to the end
        stop, left = soak.cleanup()
    if result is None:
        result = {"error": err}
        if soak.samples:
            result["samples"] = soak.samples
    result["vswitchd_stop"] = stop
    result["left_behind"] = left
    soak.report_log(result)
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print_summary(result)
    sys.exit(1 if err or left else 0)


def print_summary(r):
    if "error" in r:
        log("\nFAILED: %s" % r["error"])
    else:
        m = r["rss_mb"]
        log("\nvswitchd over %.1f min (%s):" % (r["minutes"], r["machine"]))
        log("  RSS MB: first %.2f, after %.0f s warm-up %.2f, last %.2f, max %.2f, min after"
            " warm-up %.2f, peak (VmHWM) %.2f -> %s" % (
            m["first"], m["warmup_s"], m["after_warmup"], m["last"], m["max"],
            m["min_after_warmup"], m["peak_vmhwm"],
            "flat" if r["rss_flat"] else "NOT FLAT (last > warm-up sample + 10%)"))
        c = r["cpu_pct_of_one_core"]
        log("  CPU: %.1f%% of one core on average, max %s%% over one sample interval" % (
            c["mean"], c["max_interval"]))
        log("  fds: %d -> %d" % (r["fds"]["first"], r["fds"]["last"]))
        log("  traffic: %s" % json.dumps(r["traffic"]))
        log("  fdb: %s" % json.dumps(r["fdb"]))
        log("  nat: %s" % json.dumps(r["nat"]))
        log("  gateway drops: %s" % json.dumps(r["gateway_drops"]))
        ctl = r["control"]
        log("  vswitchctl: %d calls, failures %s, slowest %d ms, captures %s" % (
            ctl["calls"], ctl["failures"] or "none", ctl["max_ms"], ctl["captures"]))
        for e in ctl["errors"]:
            log("    " + e)
    log("  vswitchd stop: %s" % r.get("vswitchd_stop"))
    vl = r["vswitchd_log"]
    log("  vswitchd log: %d lines, %d WARN, %d ERROR (%s)" % (vl["lines"], vl["warn"],
                                                             vl["error"], vl["path"]))
    for line, n in vl["most_common"]:
        log("    %5d x %s" % (n, line))
    log("  left behind: %s" % (r["left_behind"] or "nothing"))


if __name__ == "__main__":
    main()
