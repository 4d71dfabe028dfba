#!/usr/bin/env python3
"""Small traffic peers for the root tests (run inside test namespaces).

  tcp-server ADDR PORT           threaded TCP echo server, listen backlog 1024
  tcp-clients ADDR PORT N        N concurrent connections, each echoes 1 KiB;
                                 prints "ok N" when all N succeeded
  udp-echo ADDR PORT             UDP echo server
  udp-probe ADDR PORT SIZE [nodf]  one datagram of SIZE bytes, expects it
                                 back; nodf: never set Don't Fragment
  udp-refused ADDR PORT          expects ECONNREFUSED on a connected socket
  udp-from SPORT ADDR PORT       udp-probe of 32 bytes from source port SPORT
  udp-silent ADDR PORT SECS      sends one datagram; prints "silent" if nothing
                                 (no reply, no ICMP error) comes back in SECS
  who-server NAME PORT           TCP and UDP on PORT: answers every
                                 connection or datagram with "NAME PEER-IP"
  who-clients ADDR PORT N tcp|udp  N fresh connections (or sockets) one
                                 after another; prints each answer, or
                                 "failed: ..." (2 s timeout each)

Servers print "listening" once bound, so the test can wait for readiness.
Every client has a timeout and exits non-zero on failure.
"""
import socket
import sys
import threading


def tcp_server(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1024)
    print("listening", flush=True)

    def serve(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def tcp_clients(addr, port, n):
    payload = bytes(range(256)) * 4
    ok = []
    lock = threading.Lock()
    socks = []
    for _ in range(n):
        c = socket.socket()
        c.settimeout(20)
        socks.append(c)
    # Connect all first, so all n connections are open at the same time.
    def connect(c):
        try:
            c.connect((addr, port))
        except OSError as e:
            print("connect failed:", e, file=sys.stderr)
    threads = [threading.Thread(target=connect, args=(c,)) for c in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def talk(c):
        try:
            c.sendall(payload)
            got = b""
            while len(got) < len(payload):
                d = c.recv(65536)
                if not d:
                    break
                got += d
            if got == payload:
                with lock:
                    ok.append(1)
        except OSError as e:
            print("exchange failed:", e, file=sys.stderr)
    threads = [threading.Thread(target=talk, args=(c,)) for c in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in socks:
        c.close()
    print("ok", len(ok), flush=True)
    return 0 if len(ok) == n else 1


def udp_echo(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("listening", flush=True)
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(d, a)


def udp_probe(addr, port, size, nodf=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if nodf:
        # IP_MTU_DISCOVER (10) = IP_PMTUDISC_DONT (0)
        s.setsockopt(socket.IPPROTO_IP, 10, 0)
    s.settimeout(5)
    s.connect((addr, port))
    d = bytes((i * 7) & 0xFF for i in range(size))
    s.send(d)
    r = s.recv(65535)
    print("echoed", len(r), r == d, flush=True)
    return 0 if r == d else 1


def udp_refused(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((addr, port))
    s.send(b"anyone?")
    try:
        s.recv(100)
    except ConnectionRefusedError:
        print("ECONNREFUSED", flush=True)
        return 0
    except OSError as e:
        print("unexpected:", e, flush=True)
    return 1


def udp_from(sport, addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.settimeout(5)
    s.connect((addr, port))
    d = b"from %d" % sport
    s.send(d)
    r = s.recv(65535)
    print("echoed", len(r), r == d, flush=True)
    return 0 if r == d else 1


def udp_silent(addr, port, secs):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(secs)
    s.connect((addr, port))
    s.send(b"anyone?")
    try:
        d = s.recv(100)
        print("answered", d, flush=True)
    except socket.timeout:
        print("silent", flush=True)
        return 0
    except ConnectionRefusedError:
        print("ECONNREFUSED", flush=True)
    except OSError as e:
        print("unexpected:", e, flush=True)
    return 1


def who_server(name, port):
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", port))
    t.listen(1024)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))

    def udp():
        while True:
            _, peer = u.recvfrom(2048)
            u.sendto(("%s %s" % (name, peer[0])).encode(), peer)

    threading.Thread(target=udp, daemon=True).start()
    print("listening", flush=True)
    while True:
        c, peer = t.accept()
        with c:
            c.sendall(("%s %s\n" % (name, peer[0])).encode())


def who_clients(addr, port, n, proto):
    for _ in range(n):
        try:
            if proto == "tcp":
                c = socket.create_connection((addr, port), timeout=2)
                with c:
                    line = c.makefile().readline().strip()
            else:
                c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                c.settimeout(2)
                with c:
                    c.sendto(b"who", (addr, port))
                    line = c.recv(2048).decode().strip()
            print(line, flush=True)
        except OSError as e:
            print("failed:", e, flush=True)
    return 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "tcp-server":
        return tcp_server(args[0], int(args[1]))
    if cmd == "tcp-clients":
        return tcp_clients(args[0], int(args[1]), int(args[2]))
    if cmd == "udp-echo":
        return udp_echo(args[0], int(args[1]))
    if cmd == "udp-probe":
        return udp_probe(args[0], int(args[1]), int(args[2]), len(args) > 3 and args[3] == "nodf")
    if cmd == "udp-refused":
        return udp_refused(args[0], int(args[1]))
    if cmd == "udp-from":
        return udp_from(int(args[0]), args[1], int(args[2]))
    if cmd == "udp-silent":
        return udp_silent(args[0], int(args[1]), float(args[2]))
    if cmd == "who-server":
        return who_server(args[0], int(args[1]))
    if cmd == "who-clients":
        return who_clients(args[0], int(args[1]), int(args[2]), args[3])
    print("unknown command", cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
