//! The DNS server's sockets: the glue between the gateway's smoltcp stacks
//! and the pure decisions of [`crate::dns`].
//!
//! * On the LAN stack, a UDP socket on port 53 and a few TCP sockets
//!   listening on port 53 (for answers too long for UDP; bounded: at most
//!   [`TCP_SLOTS`] connections, each closed after [`TCP_IDLE_MS`] idle);
//! * on the uplink stack, one UDP socket on a fixed high port: queries
//!   forwarded upstream leave from the uplink address, and their answers
//!   come back to it ([`Gateway::is_dns_answer`] tells the classifier).
//!
//! [`Gateway::dns_serve`] runs right after a frame reached a stack and from
//! the timers: it answers what the sockets hold, forwards, matches the
//! upstream answers, times out the queries nobody answered (SERVFAIL), and
//! polls the stacks so the answers leave at once.

use super::outbox::{Egress, Outbox};
use super::{ETH, Gateway};
use crate::dns::upstream::Upstream;
use crate::dns::{self, Answer, DnsConfig, Names, Outcome};
use crate::switch::Millis;
use crate::wire::ipv4::{self, Ipv4Hdr, Ipv4Net, PROTO_UDP};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::net::Ipv4Addr;

/// TCP connections served at once.
pub const TCP_SLOTS: usize = 4;
/// A TCP connection idle this long is closed.
pub const TCP_IDLE_MS: Millis = 10_000;
/// Queries waiting for an upstream answer at most.
pub const UPSTREAM_MAX: usize = 256;
/// How long an upstream has to answer before the asker gets SERVFAIL:
/// shorter than a stub resolver's own timeout (glibc: 5 s), so it hears
/// a failure rather than nothing.
pub const UPSTREAM_TIMEOUT_MS: Millis = 2_000;
/// Queries (UDP) buffered on each socket.
const UDP_PACKETS: usize = 64;
/// Bytes of queries or answers a TCP connection buffers at most.
const TCP_BUF: usize = 16 * 1024;

/// Who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Udp {
        from: IpEndpoint,
        to: Option<IpAddress>,
    },
    /// A TCP slot, in the connection it had (`gen`) when it asked.
    Tcp { slot: usize, generation: u32 },
}

struct TcpSlot {
    handle: SocketHandle,
    generation: u32,
    /// Received bytes not yet a whole message.
    inbuf: Vec<u8>,
    /// Length-prefixed answers not yet taken by the socket.
    outbuf: Vec<u8>,
    last: Millis,
}

/// The DNS counters (`vswitchctl status`, metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsStats {
    /// Queries answered from the name table (A, PTR, empty, NXDOMAIN).
    pub local: u64,
    /// Queries sent upstream.
    pub forwarded: u64,
    /// Upstream answers given back to the asker.
    pub upstream_answers: u64,
    /// Queries answered with an error by this server: malformed (FORMERR),
    /// not implemented, no upstream, the upstream table full or an
    /// upstream silent for too long (SERVFAIL).
    pub failed: u64,
    /// Of those, upstream queries that timed out.
    pub timeouts: u64,
    /// Queries or answers dropped: a socket buffer full, a TCP connection
    /// gone before its answer, an answer too long for its connection.
    pub dropped: u64,
    /// Datagrams on the upstream port that answer nothing we asked (wrong
    /// id, server or port, or too late).
    pub stray: u64,
}

/// The DNS state for `vswitchctl status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsView {
    pub domain: String,
    /// The upstreams in use (`--dns-upstream`, else the DHCP servers).
    pub upstreams: Vec<Ipv4Addr>,
    /// Where they come from: "static", "dhcp" or "none".
    pub upstream_source: String,
    pub names: usize,
    pub waiting: usize,
    pub stats: DnsStats,
}

pub(super) struct Dns {
    names: Names,
    static_up: Vec<Ipv4Addr>,
    dhcp_up: Vec<Ipv4Addr>,
    /// Which upstream queries go to; moves on when one times out.
    next_up: usize,
    udp: SocketHandle,
    tcp: Vec<TcpSlot>,
    /// The uplink socket and its port.
    wan: Option<(SocketHandle, u16)>,
    pending: Upstream<Client>,
    stats: DnsStats,
    buf: Vec<u8>,
}

fn udp_socket() -> udp::Socket<'static> {
    let meta = || vec![udp::PacketMetadata::EMPTY; UDP_PACKETS];
    udp::Socket::new(
        udp::PacketBuffer::new(meta(), vec![0; 64 * 1024]),
        udp::PacketBuffer::new(meta(), vec![0; 64 * 1024]),
    )
}

impl Dns {
    pub(super) fn new(
        cfg: &DnsConfig,
        subnet: Ipv4Net,
        lan: &mut SocketSet<'static>,
        wan: Option<&mut SocketSet<'static>>,
        seed: u64,
        now: Millis,
    ) -> Dns {
        let mut u = udp_socket();
        let _ = u.bind(53);
        let udp = lan.add(u);
        let tcp = (0..TCP_SLOTS)
            .map(|_| {
                let mut t = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0u8; 4096]),
                    tcp::SocketBuffer::new(vec![0u8; 8192]),
                );
                let _ = t.listen(53);
                TcpSlot {
                    handle: lan.add(t),
                    generation: 0,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    last: now,
                }
            })
            .collect();
        // A fixed port in the upper half of the ephemeral range, from the
        // instance's seed: the NAT hands out ports from 1024 up, keeping a
        // namespace's own source port when free, so a clash needs a flow
        // to the same upstream from that very port (then the NAT's flow
        // wins and our query times out).
        let wan = wan.map(|s| {
            let port = 57_344 + (seed % 8192) as u16;
            let mut u = udp_socket();
            let _ = u.bind(port);
            (s.add(u), port)
        });
        Dns {
            names: Names::new(&cfg.domain, subnet),
            static_up: cfg.upstreams.clone(),
            dhcp_up: Vec::new(),
            next_up: 0,
            udp,
            tcp,
            wan,
            pending: Upstream::new(UPSTREAM_MAX, UPSTREAM_TIMEOUT_MS, seed as u32 ^ 0xd115),
            stats: DnsStats::default(),
            buf: vec![0; 64 * 1024],
        }
    }

    fn upstreams(&self) -> (&[Ipv4Addr], &'static str) {
        if !self.static_up.is_empty() {
            (&self.static_up, "static")
        } else if !self.dhcp_up.is_empty() {
            (&self.dhcp_up, "dhcp")
        } else {
            (&[], "none")
        }
    }
}

/// Where answers go: the LAN sockets and the DNS state, borrowed apart.
struct Io<'a> {
    d: &'a mut Dns,
    lan: &'a mut SocketSet<'static>,
    /// The uplink's sockets, when it has an address to send from.
    wan: Option<&'a mut SocketSet<'static>>,
    now: Millis,
}

impl Io<'_> {
    fn deliver(&mut self, client: Client, msg: &[u8]) {
        match client {
            Client::Udp { from, to } => {
                let mut meta = udp::UdpMetadata::from(from);
                meta.local_address = to;
                let s = self.lan.get_mut::<udp::Socket>(self.d.udp);
                if s.send_slice(msg, meta).is_err() {
                    self.d.stats.dropped += 1;
                }
            }
            Client::Tcp { slot, generation } => {
                let Some(t) = self.d.tcp.get_mut(slot) else {
                    return;
                };
                let Ok(len) = u16::try_from(msg.len()) else {
                    self.d.stats.dropped += 1;
                    return;
                };
                if t.generation != generation || t.outbuf.len() + msg.len() + 2 > TCP_BUF {
                    self.d.stats.dropped += 1;
                    return;
                }
                t.outbuf.extend_from_slice(&len.to_be_bytes());
                t.outbuf.extend_from_slice(msg);
            }
        }
    }

    /// Answers or forwards one query.
    fn query(&mut self, client: Client, q: &[u8]) {
        let tcp = matches!(client, Client::Tcp { .. });
        match dns::answer(q, &self.d.names, tcp) {
            Answer::Ignore => self.d.stats.dropped += 1,
            Answer::Reply(b, how) => {
                match how {
                    Outcome::Local => self.d.stats.local += 1,
                    Outcome::Failed => self.d.stats.failed += 1,
                }
                self.deliver(client, &b);
            }
            Answer::Forward => self.forward(client, q),
        }
    }

    fn servfail(&mut self, client: Client, q: &[u8]) {
        self.d.stats.failed += 1;
        if let Some(b) = dns::servfail(q) {
            self.deliver(client, &b);
        }
    }

    fn forward(&mut self, client: Client, q: &[u8]) {
        let (ups, _) = self.d.upstreams();
        let (Some(wan), Some((sock, _)), false) = (self.wan.as_mut(), self.d.wan, ups.is_empty())
        else {
            return self.servfail(client, q);
        };
        let server = ups[self.d.next_up % ups.len()];
        let Some(client_id) = dns::message_id(q) else {
            return self.servfail(client, q);
        };
        let Ok(id) = self
            .d
            .pending
            .insert(client, client_id, server, q, self.now)
        else {
            return self.servfail(client, q);
        };
        let tcp = matches!(client, Client::Tcp { .. });
        let msg = dns::for_upstream(q, id, tcp);
        let s = wan.get_mut::<udp::Socket>(sock);
        if s.send_slice(&msg, (IpAddress::Ipv4(server), 53)).is_err() {
            self.d.pending.take(id, server, 53);
            return self.servfail(client, q);
        }
        self.d.stats.forwarded += 1;
    }
}

impl Gateway {
    /// Starts the DNS server (`--no-dns` does not call this): its sockets
    /// on the LAN stack and, with an uplink, on the uplink stack.
    pub fn enable_dns(&mut self, cfg: &DnsConfig, now: Millis) {
        let seed = self.cfg.lan_mac.as_u64() ^ 0xd15;
        self.dns = Some(Dns::new(
            cfg,
            self.cfg.subnet,
            &mut self.lan_sockets,
            self.wan.as_mut().map(|w| &mut w.sockets),
            seed,
            now,
        ));
    }

    /// Whether an uplink frame is an upstream's answer to the DNS socket
    /// (UDP from port 53 of an upstream in use, to the DNS port). Only
    /// asked about what the NAT has no flow for.
    pub(super) fn is_dns_answer(&self, frame: &[u8], h: &Ipv4Hdr) -> bool {
        let Some(d) = &self.dns else { return false };
        let Some((_, port)) = d.wan else { return false };
        let l4 = ETH + h.ihl;
        h.proto == PROTO_UDP
            && h.has_l4()
            && frame.len() >= l4 + 8
            && ipv4::get16(frame, l4) == 53
            && ipv4::get16(frame, l4 + 2) == port
            && d.upstreams().0.contains(&Ipv4Addr::from(h.src))
    }

    /// Sets (or moves) a port's name in the DNS table.
    pub fn dns_set_name(&mut self, name: &str, addr: Ipv4Addr) {
        if let Some(d) = self.dns.as_mut()
            && self.cfg.subnet.contains(addr)
        {
            d.names.insert(name, addr);
        }
    }

    /// Takes a port's name out of the DNS table.
    pub fn dns_remove_name(&mut self, name: &str) {
        if let Some(d) = self.dns.as_mut() {
            d.names.remove(name);
        }
    }

    /// The uplink's DHCP lease named these DNS servers (used when no
    /// `--dns-upstream` is given).
    pub(super) fn dns_set_dhcp_servers(&mut self, servers: Vec<Ipv4Addr>) {
        if let Some(d) = self.dns.as_mut() {
            d.dhcp_up = servers;
        }
    }

    /// The DNS state for `vswitchctl status`; `None` with `--no-dns`.
    pub fn dns_view(&self) -> Option<DnsView> {
        let d = self.dns.as_ref()?;
        let (ups, source) = d.upstreams();
        Some(DnsView {
            domain: d.names.domain().to_string(),
            upstreams: ups.to_vec(),
            upstream_source: source.to_string(),
            names: d.names.len(),
            waiting: d.pending.len(),
            stats: d.stats.clone(),
        })
    }

    /// When the DNS server wants to run next (an upstream deadline, a TCP
    /// connection's idle limit).
    pub(super) fn dns_next(&self) -> Option<Millis> {
        let d = self.dns.as_ref()?;
        let idle = d.tcp.iter().map(|t| t.last + TCP_IDLE_MS).min();
        match (d.pending.next_deadline(), idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Serves what the DNS sockets hold (see the module's doc).
    pub(super) fn dns_serve(&mut self, now: Millis, out: &mut Outbox) {
        let Some(d) = self.dns.as_mut() else { return };
        let has_addr = self.wan.as_ref().is_some_and(|w| w.addr.is_some());
        let lan_iface = &self.lan.iface;
        let mut io = Io {
            d,
            lan: &mut self.lan_sockets,
            wan: self
                .wan
                .as_mut()
                .filter(|_| has_addr)
                .map(|w| &mut w.sockets),
            now,
        };
        let mut busy = false;
        // Queries over UDP.
        loop {
            let s = io.lan.get_mut::<udp::Socket>(io.d.udp);
            let Ok((n, meta)) = s.recv_slice(&mut io.d.buf) else {
                break;
            };
            busy = true;
            // Only queries to one of the gateway's own addresses: an answer
            // to a broadcast query would leave from the broadcast address.
            let own = meta.local_address.is_some_and(|a| lan_iface.has_ip_addr(a));
            if !own {
                io.d.stats.dropped += 1;
                continue;
            }
            let client = Client::Udp {
                from: meta.endpoint,
                to: meta.local_address,
            };
            let q = io.d.buf[..n].to_vec();
            io.query(client, &q);
        }
        // Upstream answers.
        let mut answers = Vec::new();
        if let (Some((sock, _)), Some(wan)) = (io.d.wan, io.wan.as_mut()) {
            let s = wan.get_mut::<udp::Socket>(sock);
            while let Ok((n, meta)) = s.recv_slice(&mut io.d.buf) {
                busy = true;
                let IpAddress::Ipv4(from) = meta.endpoint.addr;
                let found = dns::message_id(&io.d.buf[..n])
                    .and_then(|id| io.d.pending.take(id, from, meta.endpoint.port));
                let Some(p) = found else {
                    io.d.stats.stray += 1;
                    continue;
                };
                let mut msg = io.d.buf[..n].to_vec();
                dns::set_message_id(&mut msg, p.client_id);
                io.d.stats.upstream_answers += 1;
                answers.push((p.client, msg));
            }
        }
        for (client, msg) in answers {
            io.deliver(client, &msg);
        }
        // Upstreams that did not answer in time.
        for p in io.d.pending.expire(now) {
            busy = true;
            io.d.stats.timeouts += 1;
            io.d.next_up = io.d.next_up.wrapping_add(1);
            io.servfail(p.client, &p.query);
        }
        // Queries over TCP, and the answers waiting for their connection
        // (last: upstream answers and SERVFAILs above go out now).
        for i in 0..io.d.tcp.len() {
            busy |= serve_tcp(&mut io, i);
        }
        if busy {
            self.lan
                .poll(now, &mut self.lan_sockets, |f| out.push(Egress::Lan, f));
            if let Some(w) = self.wan.as_mut() {
                w.stack
                    .poll(now, &mut w.sockets, |f| out.push(Egress::Wan, f));
            }
        }
    }
}

/// One TCP slot: (re)listen, read whole messages and answer them, write
/// what is waiting, close when done or idle. Whether anything happened.
fn serve_tcp(io: &mut Io, i: usize) -> bool {
    let now = io.now;
    let slot = &mut io.d.tcp[i];
    let s = io.lan.get_mut::<tcp::Socket>(slot.handle);
    if !s.is_open() {
        // Closed (or never opened): a new connection is a new generation.
        let _ = s.listen(53);
        slot.generation = slot.generation.wrapping_add(1);
        slot.inbuf.clear();
        slot.outbuf.clear();
        slot.last = now;
        return false;
    }
    if s.is_listening() {
        slot.last = now;
        return false;
    }
    if s.state() == tcp::State::TimeWait {
        // Closed both ways: the slot is free for the next connection now,
        // not after TIME-WAIT (the client, who closed last, keeps none).
        s.abort();
        return true;
    }
    let mut busy = false;
    let mut chunk = [0u8; 2048];
    while s.can_recv() {
        let Ok(n) = s.recv_slice(&mut chunk) else {
            break;
        };
        if n == 0 {
            break;
        }
        busy = true;
        slot.last = now;
        if slot.inbuf.len() + n > TCP_BUF {
            s.abort();
            io.d.stats.dropped += 1;
            return true;
        }
        slot.inbuf.extend_from_slice(&chunk[..n]);
    }
    let generation = slot.generation;
    let mut msgs = Vec::new();
    while slot.inbuf.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([slot.inbuf[0], slot.inbuf[1]]));
        if slot.inbuf.len() < 2 + len {
            break;
        }
        msgs.push(slot.inbuf[2..2 + len].to_vec());
        slot.inbuf.drain(..2 + len);
    }
    for m in msgs {
        io.query(
            Client::Tcp {
                slot: i,
                generation,
            },
            &m,
        );
    }
    let slot = &mut io.d.tcp[i];
    let s = io.lan.get_mut::<tcp::Socket>(slot.handle);
    if !slot.outbuf.is_empty()
        && s.can_send()
        && let Ok(n) = s.send_slice(&slot.outbuf)
    {
        slot.outbuf.drain(..n);
        busy = true;
    }
    let waiting = io.d.pending.any(|c| {
        *c == Client::Tcp {
            slot: i,
            generation,
        }
    });
    let slot = &mut io.d.tcp[i];
    let s = io.lan.get_mut::<tcp::Socket>(slot.handle);
    if !s.may_recv() && slot.outbuf.is_empty() && !waiting && s.state() == tcp::State::CloseWait {
        s.close();
        busy = true;
    } else if now.saturating_sub(slot.last) >= TCP_IDLE_MS {
        s.abort();
        io.d.stats.dropped += usize::from(waiting) as u64;
        busy = true;
    }
    busy
}
