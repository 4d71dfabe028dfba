#!/usr/bin/env python3
"""End-to-end benchmark: the Linux kernel against vswitchd, same topology,
same run, same machine.

(a) kernel: a "host" namespace with a Linux bridge br01 (192.168.88.1/24),
    a veth pair per namespace (.11, .12), ip_forward and
    `iptables -t nat -A POSTROUTING -s 192.168.88.0/24 -o up0 -j MASQUERADE`
    toward a wan test namespace (10.99.0.1) over a veth uplink, as in the
    seeds (the host role is a namespace too, so the machine's own netfilter
    and routes are never touched);
(b) vswitchd: two ports and --uplink to a wan test namespace over a veth.

Measured with iperf3 and ping: namespace-to-namespace TCP, namespace-to-wan
TCP through NAT, 64-byte UDP packets per second received, ping RTT (average
and worst), plus vswitchd's CPU time and peak RSS. Prints a table with the
kernel, vswitchd and the ratio.

Usage (as root, from the repository):  python3 scripts/e2e_bench.py [--time SECS]
Needs: iperf3, iptables, ping, ip (apt-get install -y iperf3 iptables
iputils-ping iproute2). Builds vswitchd in release mode first.
Everything created is removed at exit, also on failure or Ctrl-C.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "e%d" % (os.getpid() % 100000)


def sh(*cmd, check=True, capture=False, timeout=120):
    r = subprocess.run(cmd, check=False, timeout=timeout,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout if capture else r.returncode


def nsx(ns, *cmd, **kw):
    return sh("ip", "netns", "exec", ns, *cmd, **kw)


class Cleanup:
    def __init__(self):
        self.namespaces = []
        self.links = []
        self.procs = []

    def ns(self, name):
        sh("ip", "netns", "del", name, check=False)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        return name

    def run(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        for l in self.links:
            sh("ip", "link", "del", l, check=False)
        for n in self.namespaces:
            sh("ip", "netns", "del", n, check=False)


def wait_listening(ns, port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        out = nsx(ns, "ss", "-Hltun", "sport = :%d" % port, capture=True, check=False) or ""
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError("iperf3 server in %s did not listen" % ns)


def iperf(cl, server_ns, client_ns, addr, secs, extra=()):
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", "5201"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cl.procs.append(srv)
    wait_listening(server_ns, 5201)
    out = nsx(client_ns, "iperf3", "-c", addr, "-p", "5201", "-t", str(secs), "-J", *extra,
              capture=True, timeout=secs + 60)
    srv.wait(30)
    return json.loads(out)


def tcp_gbps(cl, sns, cns, addr, secs):
    j = iperf(cl, sns, cns, addr, secs)
    return j["end"]["sum_received"]["bits_per_second"] / 1e9


def udp_pps(cl, sns, cns, addr, secs):
    j = iperf(cl, sns, cns, addr, secs, ("-u", "-b", "0", "-l", "64"))
    s = j["end"]["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"]


def ping_rtt(ns, addr, count=300):
    out = nsx(ns, "ping", "-q", "-c", str(count), "-i", "0.005", addr, capture=True, timeout=60)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
    loss = re.search(r"([\d.]+)% packet loss", out)
    if not m:
        raise RuntimeError("ping output: " + out)
    return float(m.group(2)), float(m.group(3)), float(loss.group(1))


def measure(cl, a, b, b_addr, wan, secs):
    r = {}
    r["ns->ns TCP (Gbit/s)"] = tcp_gbps(cl, b, a, b_addr, secs)
    r["ns->wan TCP via NAT (Gbit/s)"] = tcp_gbps(cl, wan, a, "10.99.0.1", secs)
    r["64B UDP ns->ns (kpps received)"] = udp_pps(cl, b, a, b_addr, secs) / 1e3
    avg, worst, loss = ping_rtt(a, b_addr)
    r["ping ns->ns avg (ms)"] = avg
    r["ping ns->ns worst (ms)"] = worst
    avg, worst, loss2 = ping_rtt(a, "10.99.0.1")
    r["ping ns->wan avg (ms)"] = avg
    r["ping ns->wan worst (ms)"] = worst
    r["ping loss (%)"] = max(loss, loss2)
    return r


def kernel_topology(cl):
    h, a, b, w = (cl.ns(TAG + s) for s in ("kh", "ka", "kb", "kw"))
    sh("ip", "-n", h, "link", "add", "br01", "type", "bridge")
    sh("ip", "-n", h, "addr", "add", "192.168.88.1/24", "dev", "br01")
    sh("ip", "-n", h, "link", "set", "br01", "up")
    for ns, host in ((a, 11), (b, 12)):
        v = "v" + ns[-2:]
        sh("ip", "-n", h, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", h, "link", "set", v, "master", "br01", "up")
        sh("ip", "-n", ns, "addr", "add", "192.168.88.%d/24" % host, "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "192.168.88.1")
    sh("ip", "-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", w)
    sh("ip", "-n", h, "addr", "add", "10.99.0.2/24", "dev", "up0")
    sh("ip", "-n", h, "link", "set", "up0", "up")
    sh("ip", "-n", h, "link", "set", "lo", "up")
    sh("ip", "-n", w, "addr", "add", "10.99.0.1/24", "dev", "eth0")
    sh("ip", "-n", w, "link", "set", "eth0", "up")
    sh("ip", "-n", w, "link", "set", "lo", "up")
    nsx(h, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    nsx(h, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.168.88.0/24", "-o", "up0",
        "-j", "MASQUERADE")
    return a, b, w


def vswitchd_topology(cl, binary, extra):
    a, b = TAG + "va", TAG + "vb"
    for n in (a, b):
        sh("ip", "netns", "del", n, check=False)
        cl.namespaces.append(n)
    w = cl.ns(TAG + "vw")
    up = TAG + "up"
    sh("ip", "link", "del", up, check=False)
    sh("ip", "link", "add", up, "type", "veth", "peer", "name", "eth0", "netns", w)
    cl.links.append(up)
    sh("ip", "link", "set", up, "up")
    sh("ip", "-n", w, "addr", "add", "10.99.0.1/24", "dev", "eth0")
    sh("ip", "-n", w, "link", "set", "eth0", "up")
    sh("ip", "-n", w, "link", "set", "lo", "up")
    tmp = tempfile.mkdtemp()
    sock_path = os.path.join(tmp, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, RUST_LOG="warn")
    p = subprocess.Popen([binary, "--name", TAG, "--ports", "%s,%s" % (a, b), "--uplink", up,
                          "--uplink-addr", "10.99.0.2/24", "--uplink-gw", "10.99.0.1"] + extra,
                         env=env, stderr=subprocess.PIPE, text=True)
    cl.procs.append(p)
    msg = s.recv(64)
    if not msg.startswith(b"READY=1"):
        raise RuntimeError("vswitchd not ready")
    return a, b, w, p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=int, default=5, help="seconds per iperf3 run (default 5)")
    ap.add_argument("--binary", help="vswitchd binary (default: build target/release/vswitchd)")
    ap.add_argument("--vswitchd-args", default="", help="extra vswitchd options, e.g. '--busy-poll 0'")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("e2e_bench: must run as root (it creates namespaces)")
    binary = args.binary
    if not binary:
        sh("cargo", "build", "--release", "--quiet", "--bin", "vswitchd", timeout=1800)
        binary = os.path.join(ROOT, "target", "release", "vswitchd")
    cl = Cleanup()
    try:
        a, b, w = kernel_topology(cl)
        kernel = measure(cl, a, b, "192.168.88.12", w, args.time)
        a, b, w, p = vswitchd_topology(cl, binary, args.vswitchd_args.split())
        cpu0, t0 = cpu_seconds(p.pid), time.time()
        vsw = measure(cl, a, b, "192.168.88.12", w, args.time)
        cpu = cpu_seconds(p.pid) - cpu0
        wall = time.time() - t0
        rss = peak_rss_mb(p.pid)
    finally:
        cl.run()
    print()
    print("| metric | kernel | vswitchd | vswitchd / kernel |")
    print("|---|---:|---:|---:|")
    for k in kernel:
        kv, vv = kernel[k], vsw[k]
        ratio = (vv / kv) if kv else float("nan")
        print("| %s | %.3f | %.3f | %.2fx |" % (k, kv, vv, ratio))
    print("| vswitchd CPU time over the run (s) | | %.1f (of %.0f s wall, %.0f%%) | |" % (cpu, wall, 100 * cpu / wall))
    print("| vswitchd peak RSS (MB) | | %.1f | |" % rss)
    print()
    print("machine: %d cores, %s; kernel %s; iperf3 -t %d" % (
        os.cpu_count(), open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip(),
        os.uname().release, args.time))


if __name__ == "__main__":
    main()
