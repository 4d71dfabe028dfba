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
TCP through NAT, 64-byte UDP packets per second received (namespace to
namespace, and through the NAT both ways), ping RTT (average
and worst), latency under load (a third namespace pinging the wan host
through the NAT while iperf3 saturates the first two), plus vswitchd's CPU
time and peak RSS. Prints a table with the
kernel, vswitchd and the ratio.

With --overlay it measures instead TCP between namespaces on two "hosts"
over VXLAN: (a) the kernel, each host a namespace with a bridge, a vxlan
device (VNI 42, flooding to the other host) and a veth to its namespace; (b)
vswitchd, one instance per host namespace (started with nsenter --net, the
way the overlay tests simulate hosts) with --vtep/--vxlan-peer. The two
hosts are joined by a veth underlay (10.77.0.1, 10.77.0.2, MTU 1500).

With --peers it also runs Open vSwitch's userspace datapath (its own
database and run directory, datapath_type=netdev, tap ports moved into the
namespaces, the NORMAL action) and VDE 2 (vde_switch -t with two taps) on
the same two-namespace topology, and prints a table of the L2 figures with
the ratio of vswitchd to the better of the two (for pings, lower is better:
a ratio under 1 means vswitchd is faster).

With --afxdp-probe BINARY it also runs scripts/probes/afxdp_fwd.c, a
two-port forwarder over AF_XDP sockets on veths (issue 11's "AF_XDP on a
veth pair" direction), in the peers' table: an upper bound for an AF_XDP
port type, not a switch (so not counted as the best peer). Needs
apt-get install -y libxdp-dev libbpf-dev ethtool.

With --workers-curve 1,2 it measures instead the aggregate of 8 parallel
flows between two namespaces (iperf3 -P 8: TCP, and 64-byte UDP), on the
kernel bridge and on vswitchd with each --workers count given, with
vswitchd's CPU time: the curve of more datapath threads.

Usage (as root, from the repository):  python3 scripts/e2e_bench.py [--time SECS] [--peers] [--afxdp-probe BIN] [--overlay] [--workers-curve 1,2]
Needs: iperf3, iptables, ping, ip (apt-get install -y iperf3 iptables
iputils-ping iproute2); with --peers also apt-get install -y
openvswitch-switch vde2 (the bench starts its own ovsdb-server and
ovs-vswitchd; no system service is needed). Builds vswitchd in release mode first.
Everything created is removed at exit, also on failure or Ctrl-C.
"""
import argparse
import json
import os
import re
import shutil
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
        self.dirs = []

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
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


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


def udp_pps(cl, sns, cns, addr, secs, extra=()):
    j = iperf(cl, sns, cns, addr, secs, ("-u", "-b", "0", "-l", "64") + tuple(extra))
    s = j["end"]["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"]


def ping_rtt(ns, addr, count=300):
    out = nsx(ns, "ping", "-q", "-c", str(count), "-i", "0.005", addr, capture=True, timeout=60)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
    loss = re.search(r"([\d.]+)% packet loss", out)
    if not m:
        raise RuntimeError("ping output: " + out)
    return float(m.group(2)), float(m.group(3)), float(loss.group(1))


def loaded_ping(cl, a, b, b_addr, c, secs):
    """Latency under load: while iperf3 saturates a -> b (TCP), a third
    namespace c pings the wan host through the NAT. Returns (avg, worst,
    loss) in ms/%."""
    srv = subprocess.Popen(["ip", "netns", "exec", b, "iperf3", "-s", "-1", "-p", "5202"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cl.procs.append(srv)
    wait_listening(b, 5202)
    cli = subprocess.Popen(["ip", "netns", "exec", a, "iperf3", "-c", b_addr, "-p", "5202",
                            "-t", str(secs + 2)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cl.procs.append(cli)
    time.sleep(1)  # the bulk flow reaches its rate (a bench's ramp, not a readiness wait)
    r = ping_rtt(c, "10.99.0.1", count=int(secs * 100))
    cli.wait(secs + 60)
    srv.wait(30)
    return r


def measure(cl, a, b, b_addr, wan, secs, c=None):
    r = {}
    r["ns->ns TCP (Gbit/s)"] = tcp_gbps(cl, b, a, b_addr, secs)
    r["ns->wan TCP via NAT (Gbit/s)"] = tcp_gbps(cl, wan, a, "10.99.0.1", secs)
    r["64B UDP ns->ns (kpps received)"] = udp_pps(cl, b, a, b_addr, secs) / 1e3
    r["64B UDP ns->wan via NAT (kpps received)"] = udp_pps(cl, wan, a, "10.99.0.1", secs) / 1e3
    r["64B UDP wan->ns via NAT (kpps received)"] = udp_pps(cl, wan, a, "10.99.0.1", secs, ("-R",)) / 1e3
    avg, worst, loss = ping_rtt(a, b_addr)
    r["ping ns->ns avg (ms)"] = avg
    r["ping ns->ns worst (ms)"] = worst
    avg, worst, loss2 = ping_rtt(a, "10.99.0.1")
    r["ping ns->wan avg (ms)"] = avg
    r["ping ns->wan worst (ms)"] = worst
    r["ping loss (%)"] = max(loss, loss2)
    if c is not None:
        avg, worst, loss3 = loaded_ping(cl, a, b, b_addr, c, secs)
        r["ping 3rd ns->wan under ns->ns TCP load avg (ms)"] = avg
        r["ping 3rd ns->wan under ns->ns TCP load worst (ms)"] = worst
        r["ping loss (%)"] = max(r["ping loss (%)"], loss3)
    return r


def kernel_topology(cl):
    h, a, b, c, w = (cl.ns(TAG + s) for s in ("kh", "ka", "kb", "kc", "kw"))
    sh("ip", "-n", h, "link", "add", "br01", "type", "bridge")
    sh("ip", "-n", h, "addr", "add", "192.168.88.1/24", "dev", "br01")
    sh("ip", "-n", h, "link", "set", "br01", "up")
    for ns, host in ((a, 11), (b, 12), (c, 13)):
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
    return a, b, c, w


def vswitchd_topology(cl, binary, extra):
    a, b, c = TAG + "va", TAG + "vb", TAG + "vc"
    for n in (a, b, c):
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
    p = start_vswitchd(cl, [binary, "--name", TAG, "--ports", "%s,%s,%s" % (a, b, c), "--uplink", up,
                            "--uplink-addr", "10.99.0.2/24", "--uplink-gw", "10.99.0.1"] + extra)
    return a, b, c, w, p


def put_tap_in(tap, ns, host):
    """Moves the tap interface `tap` (opened by a userspace switch) into
    namespace `ns` as its 192.168.88.`host`/24."""
    sh("ip", "link", "set", tap, "netns", ns)
    sh("ip", "-n", ns, "addr", "add", "192.168.88.%d/24" % host, "dev", tap)
    sh("ip", "-n", ns, "link", "set", tap, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")


def wait_path(path, what, deadline=10.0):
    end = time.time() + deadline
    while not os.path.exists(path):
        if time.time() > end:
            raise RuntimeError("%s did not appear: %s" % (what, path))
        time.sleep(0.05)


def ovs_topology(cl):
    """Open vSwitch's userspace datapath (datapath_type=netdev) with two
    tap ports moved into two namespaces, the NORMAL action (a learning
    switch). Its own database and run directory, started by hand."""
    d = tempfile.mkdtemp(prefix="ovs-bench")
    cl.dirs.append(d)
    db, sock = os.path.join(d, "conf.db"), os.path.join(d, "db.sock")
    sh("ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema")
    env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d)
    cl.procs.append(subprocess.Popen(
        ["ovsdb-server", db, "--remote=punix:" + sock, "--unixctl=" + os.path.join(d, "db.ctl"),
         "--no-chdir"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_path(sock, "ovsdb-server's socket")
    vsctl = lambda *a: sh("ovs-vsctl", "--db=unix:" + sock, *a)
    vsctl("--no-wait", "init")
    cl.procs.append(subprocess.Popen(
        ["ovs-vswitchd", "unix:" + sock, "--unixctl=" + os.path.join(d, "vswitchd.ctl"),
         "--no-chdir"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    br = TAG + "ob"
    # The netdev datapath leaves persistent taps behind: the bridge's own
    # and "ovs-netdev" (this one only if this run made it).
    if not os.path.exists("/sys/class/net/ovs-netdev"):
        cl.links.append("ovs-netdev")
    cl.links.append(br)
    vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    a, b = cl.ns(TAG + "oa"), cl.ns(TAG + "ob2")
    for ns, host, tap in ((a, 11, TAG + "ot1"), (b, 12, TAG + "ot2")):
        vsctl("add-port", br, tap, "--", "set", "Interface", tap, "type=tap")
        wait_path("/sys/class/net/" + tap, "OVS tap " + tap)
        put_tap_in(tap, ns, host)
    return a, b


def vde_topology(cl):
    """VDE 2: vde_switch with two tap interfaces (-t) moved into two
    namespaces."""
    d = tempfile.mkdtemp(prefix="vde-bench")
    cl.dirs.append(d)
    t1, t2 = TAG + "dt1", TAG + "dt2"
    cl.procs.append(subprocess.Popen(
        ["vde_switch", "-s", os.path.join(d, "sw"), "-t", t1, "-t", t2],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    a, b = cl.ns(TAG + "da"), cl.ns(TAG + "db")
    for ns, host, tap in ((a, 11, t1), (b, 12, t2)):
        wait_path("/sys/class/net/" + tap, "VDE tap " + tap)
        put_tap_in(tap, ns, host)
    return a, b


def afxdp_topology(cl, probe):
    """The AF_XDP probe (scripts/probes/afxdp_fwd.c): a switch namespace
    with one veth pair per namespace (one queue each, so libxdp's program
    sees every frame on queue 0), the probe copying frames between the two
    AF_XDP sockets. The namespaces' transmit checksum offload is turned off:
    a veth's CHECKSUM_PARTIAL frames would reach the socket with their
    checksum unfilled (an AF_XDP socket has no checksum offload)."""
    s, a, b = cl.ns(TAG + "xs"), cl.ns(TAG + "xa"), cl.ns(TAG + "xb")
    for ns, host, port in ((a, 11, "pa"), (b, 12, "pb")):
        sh("ip", "-n", s, "link", "add", port, "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
           "peer", "name", "eth0", "numtxqueues", "1", "numrxqueues", "1", "netns", ns)
        sh("ip", "-n", s, "link", "set", port, "up")
        sh("ip", "-n", ns, "addr", "add", "192.168.88.%d/24" % host, "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        nsx(ns, "ethtool", "-K", "eth0", "tx", "off")
    p = subprocess.Popen(["ip", "netns", "exec", s, probe, "pa", "pb"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    cl.procs.append(p)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError("the AF_XDP probe %s did not start (as root? libxdp installed?)" % probe)
    return a, b


def peer_measure(cl, a, b, secs):
    """What a plain L2 switch can be compared on: ns->ns TCP, 64-byte UDP
    and ping."""
    r = {}
    r["ns->ns TCP (Gbit/s)"] = tcp_gbps(cl, b, a, "192.168.88.12", secs)
    r["64B UDP ns->ns (kpps received)"] = udp_pps(cl, b, a, "192.168.88.12", secs) / 1e3
    avg, worst, _ = ping_rtt(a, "192.168.88.12")
    r["ping ns->ns avg (ms)"] = avg
    r["ping ns->ns worst (ms)"] = worst
    return r


def start_vswitchd(cl, argv):
    """Starts vswitchd (argv) and waits for its READY=1 (NOTIFY_SOCKET)."""
    sock_path = os.path.join(tempfile.mkdtemp(), "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, RUST_LOG="warn")
    p = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    cl.procs.append(p)
    if not s.recv(64).startswith(b"READY=1"):
        raise RuntimeError("vswitchd not ready: %s" % " ".join(argv))
    return p


def overlay_hosts(cl, prefix):
    """Two host namespaces joined by a veth underlay 10.77.0.1 <-> .2."""
    ha, hb = cl.ns(TAG + prefix + "ha"), cl.ns(TAG + prefix + "hb")
    sh("ip", "-n", ha, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", hb)
    for h, addr in ((ha, "10.77.0.1/24"), (hb, "10.77.0.2/24")):
        sh("ip", "-n", h, "addr", "add", addr, "dev", "u0")
        sh("ip", "-n", h, "link", "set", "u0", "up")
        sh("ip", "-n", h, "link", "set", "lo", "up")
    return ha, hb


def kernel_overlay(cl):
    ha, hb = overlay_hosts(cl, "k")
    a, b = cl.ns(TAG + "koa"), cl.ns(TAG + "kob")
    for h, ns, local, peer, host in ((ha, a, "10.77.0.1", "10.77.0.2", 11),
                                     (hb, b, "10.77.0.2", "10.77.0.1", 12)):
        sh("ip", "-n", h, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", h, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
           "local", local, "dev", "u0")
        nsx(h, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", peer)
        sh("ip", "-n", h, "link", "add", "v0", "type", "veth", "peer", "name", "eth0", "netns", ns)
        for l in ("vx0", "v0"):
            sh("ip", "-n", h, "link", "set", l, "master", "br0", "up")
        sh("ip", "-n", h, "link", "set", "br0", "up")
        # The namespace's MTU leaves room for VXLAN, as vswitchd's TAPs do.
        sh("ip", "-n", ns, "link", "set", "eth0", "mtu", "1450", "up")
        sh("ip", "-n", ns, "addr", "add", "192.168.88.%d/24" % host, "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    return a, b


def vswitchd_overlay(cl, binary, extra):
    ha, hb = overlay_hosts(cl, "v")
    a, b = TAG + "voa", TAG + "vob"
    procs = []
    for h, ns, local, peer, spec in ((ha, a, "10.77.0.1", "10.77.0.2", a),
                                     (hb, b, "10.77.0.2", "10.77.0.1", b + "=192.168.88.12")):
        sh("ip", "netns", "del", ns, check=False)
        cl.namespaces.append(ns)
        procs.append(start_vswitchd(cl, ["nsenter", "--net=/run/netns/" + h, binary, "--name", h,
                                         "--ports", spec, "--vtep", local, "--vxlan-peer", peer]
                                    + extra))
    return a, b, procs


def overlay_main(args, binary):
    cl = Cleanup()
    try:
        a, b = kernel_overlay(cl)
        kernel = {"overlay TCP a->b (Gbit/s)": tcp_gbps(cl, b, a, "192.168.88.12", args.time),
                  "overlay TCP b->a (Gbit/s)": tcp_gbps(cl, a, b, "192.168.88.11", args.time)}
        kernel["overlay ping avg (ms)"] = ping_rtt(a, "192.168.88.12")[0]
        cl.run()
        cl = Cleanup()
        a, b, procs = vswitchd_overlay(cl, binary, args.vswitchd_args.split())
        vsw = {"overlay TCP a->b (Gbit/s)": tcp_gbps(cl, b, a, "192.168.88.12", args.time),
               "overlay TCP b->a (Gbit/s)": tcp_gbps(cl, a, b, "192.168.88.11", args.time)}
        vsw["overlay ping avg (ms)"] = ping_rtt(a, "192.168.88.12")[0]
        rss = max(peak_rss_mb(p.pid) for p in procs)
    finally:
        cl.run()
    print()
    print("| metric (two hosts over VXLAN) | kernel (bridge + vxlan) | vswitchd | vswitchd / kernel |")
    print("|---|---:|---:|---:|")
    for k in kernel:
        kv, vv = kernel[k], vsw[k]
        print("| %s | %.3f | %.3f | %.2fx |" % (k, kv, vv, (vv / kv) if kv else float("nan")))
    print("| vswitchd peak RSS per host (MB) | | %.1f | |" % rss)


def workers_main(args, binary):
    counts = [int(n) for n in args.workers_curve.split(",")]
    flows = ("-P", "8")

    def aggregate(cl, a, b):
        tcp = iperf(cl, b, a, "192.168.88.12", args.time, flows)["end"]["sum_received"]
        udp = iperf(cl, b, a, "192.168.88.12", args.time, ("-u", "-b", "0", "-l", "64") + flows)
        u = udp["end"]["sum"]
        return tcp["bits_per_second"] / 1e9, (u["packets"] - u["lost_packets"]) / u["seconds"] / 1e3

    rows = []
    cl = Cleanup()
    try:
        a, b, _, _ = kernel_topology(cl)
        rows.append(("kernel bridge",) + aggregate(cl, a, b) + (None,))
        cl.run()
        for n in counts:
            cl = Cleanup()
            a, b = TAG + "wa", TAG + "wb"
            for ns in (a, b):
                sh("ip", "netns", "del", ns, check=False)
                cl.namespaces.append(ns)
            p = start_vswitchd(cl, [binary, "--name", TAG, "--ports", "%s,%s" % (a, b),
                                    "--workers", str(n)] + args.vswitchd_args.split())
            cpu0, t0 = cpu_seconds(p.pid), time.time()
            tcp, udp = aggregate(cl, a, b)
            cpu = (cpu_seconds(p.pid) - cpu0) / (time.time() - t0)
            rows.append(("vswitchd --workers %d" % n, tcp, udp, cpu))
            cl.run()
    finally:
        cl.run()
    k_tcp, k_udp = rows[0][1], rows[0][2]
    print()
    print("| 8 flows ns->ns | TCP Gbit/s | / kernel | 64B UDP kpps received | / kernel | vswitchd CPU (cores) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, tcp, udp, cpu in rows:
        print("| %s | %.2f | %.2fx | %.1f | %.2fx | %s |" % (
            name, tcp, tcp / k_tcp, udp, udp / k_udp, "" if cpu is None else "%.2f" % cpu))
    print()
    print("machine: %d cores; kernel %s; iperf3 -P 8 -t %d" % (os.cpu_count(), os.uname().release, args.time))


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
    ap.add_argument("--peers", action="store_true",
                    help="also Open vSwitch (userspace, tap ports) and VDE in the same run "
                         "(apt-get install -y openvswitch-switch vde2)")
    ap.add_argument("--afxdp-probe", metavar="BINARY",
                    help="also the AF_XDP probe (a two-port forwarder, not a switch: "
                         "cc -O2 -o afxdp_fwd scripts/probes/afxdp_fwd.c -lxdp -lbpf) in the peers' table")
    ap.add_argument("--overlay", action="store_true",
                    help="measure two hosts over VXLAN (kernel bridge + vxlan vs vswitchd) instead")
    ap.add_argument("--workers-curve", metavar="N,N,...",
                    help="measure 8 parallel flows on the kernel and on vswitchd --workers N for each N instead")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("e2e_bench: must run as root (it creates namespaces)")
    binary = args.binary
    if not binary:
        sh("cargo", "build", "--release", "--quiet", "--bin", "vswitchd", timeout=1800)
        binary = os.path.join(ROOT, "target", "release", "vswitchd")
    if args.overlay:
        return overlay_main(args, binary)
    if args.workers_curve:
        return workers_main(args, binary)
    cl = Cleanup()
    try:
        a, b, c, w = kernel_topology(cl)
        kernel = measure(cl, a, b, "192.168.88.12", w, args.time, c)
        a, b, c, w, p = vswitchd_topology(cl, binary, args.vswitchd_args.split())
        cpu0, t0 = cpu_seconds(p.pid), time.time()
        vsw = measure(cl, a, b, "192.168.88.12", w, args.time, c)
        cpu = cpu_seconds(p.pid) - cpu0
        wall = time.time() - t0
        rss = peak_rss_mb(p.pid)
        peers = {}
        topologies = []
        if args.peers:
            topologies += [("Open vSwitch", ovs_topology), ("VDE", vde_topology)]
        if args.afxdp_probe:
            probe = os.path.abspath(args.afxdp_probe)
            topologies.append(("AF_XDP probe", lambda cl: afxdp_topology(cl, probe)))
        if topologies:
            cl.run()
            for name, topo in topologies:
                cl = Cleanup()
                try:
                    a, b = topo(cl)
                    peers[name] = peer_measure(cl, a, b, args.time)
                finally:
                    cl.run()
    finally:
        cl.run()
    if peers:
        print()
        names = list(peers)
        print("| metric | kernel | vswitchd | " + " | ".join(names) + " | vswitchd / best peer |")
        print("|---|---:|---:|" + "---:|" * len(names) + "---:|")
        # The best peer is the better switch: the AF_XDP probe is not one.
        switches = [n for n in names if n in ("Open vSwitch", "VDE")]
        for k in next(iter(peers.values())):
            vals = [peers[n][k] for n in names]
            sw = [peers[n][k] for n in switches]
            best = (min(sw) if "ping" in k else max(sw)) if sw else 0
            print("| %s | %.3f | %.3f | %s | %s |" % (
                k, kernel[k], vsw[k], " | ".join("%.3f" % v for v in vals),
                ("%.2fx" % (vsw[k] / best)) if best else "n/a"))
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
