//! The gateway's DNS server, as decisions: a query's bytes and the name
//! table in, an answer's bytes (or "forward it") out. No sockets, no clock;
//! the gateway's glue (`gateway/dns.rs`) does the I/O on its smoltcp
//! stacks, and [`upstream`] keeps the queries sent upstream.
//!
//! What is answered here, authoritatively:
//!
//! * `NAME` and `NAME.DOMAIN` for every port name: an A record with its
//!   address; any other type (AAAA, MX, ...) an empty NOERROR answer at
//!   once. Resolvers send A and AAAA in parallel from one socket; a lost
//!   or late AAAA is the five-second stall well known from Kubernetes, so
//!   it is never forwarded;
//! * any other name under `DOMAIN` (and `DOMAIN` itself, without data), and
//!   single-label names: NXDOMAIN (they are ours, and leaking them upstream
//!   answers nothing better);
//! * PTR for a port's address (`D.C.B.A.in-addr.arpa`) to `NAME.DOMAIN`;
//!   other addresses of the subnet NXDOMAIN.
//!
//! Everything else is forwarded ([`Answer::Forward`]). The wire format is
//! `simple-dns`'s; the only bytes touched by hand are the 16-bit id at the
//! start of the header, which forwarding rewrites.

pub mod upstream;

use crate::wire::ipv4::Ipv4Net;
use simple_dns::rdata::{A, OPT, PTR, RData};
use simple_dns::{
    CLASS, Name, OPCODE, Packet, PacketFlag, QCLASS, QTYPE, RCODE, ResourceRecord, TYPE,
};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// TTL of the local answers (seconds): short, ports come and go.
pub const TTL: u32 = 5;
/// Largest UDP answer without EDNS (RFC 1035).
pub const UDP_MAX: usize = 512;
/// The EDNS UDP size this server offers and accepts at most: 1232, the
/// 2020 DNS flag day's value that avoids IP fragmentation.
pub const EDNS_MAX: u16 = 1232;

/// The DNS server's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The local domain (`--dns-domain`, by default the instance name).
    pub domain: String,
    /// `--dns-upstream`: empty means the uplink's DHCP servers, if any.
    pub upstreams: Vec<Ipv4Addr>,
}

/// The local names: port name -> address, and back.
#[derive(Clone, Debug)]
pub struct Names {
    /// Lowercase, without the trailing dot.
    domain: String,
    subnet: Ipv4Net,
    by_name: BTreeMap<String, Ipv4Addr>,
    by_addr: BTreeMap<Ipv4Addr, String>,
}

impl Names {
    pub fn new(domain: &str, subnet: Ipv4Net) -> Names {
        Names {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            subnet,
            by_name: BTreeMap::new(),
            by_addr: BTreeMap::new(),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Sets (or moves) `name` to `addr`; an address has one name, the last
    /// one set.
    pub fn insert(&mut self, name: &str, addr: Ipv4Addr) {
        let name = name.to_ascii_lowercase();
        self.remove(&name);
        if let Some(old) = self.by_addr.insert(addr, name.clone()) {
            self.by_name.remove(&old);
        }
        self.by_name.insert(name, addr);
    }

    pub fn remove(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if let Some(a) = self.by_name.remove(&name) {
            self.by_addr.remove(&a);
        }
    }

    pub fn get(&self, name: &str) -> Option<Ipv4Addr> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// What the table says about `name` (lowercase, no trailing dot).
    fn lookup(&self, name: &str) -> Lookup {
        let bare = match name.strip_suffix(&self.domain) {
            Some("") => return Lookup::NoData,
            Some(rest) if rest.ends_with('.') => Some(&rest[..rest.len() - 1]),
            _ => None,
        };
        let single = !name.contains('.');
        match bare {
            Some(b) => match self.by_name.get(b) {
                Some(a) => Lookup::Addr(*a),
                None => Lookup::NxDomain,
            },
            None if single => match self.by_name.get(name) {
                Some(a) => Lookup::Addr(*a),
                None => Lookup::NxDomain,
            },
            None => match reverse_v4(name) {
                Some(a) => match self.by_addr.get(&a) {
                    Some(n) => Lookup::Ptr(format!("{n}.{}", self.domain)),
                    None if self.subnet.contains(a) => Lookup::NxDomain,
                    None => Lookup::Forward,
                },
                None => Lookup::Forward,
            },
        }
    }
}

enum Lookup {
    Addr(Ipv4Addr),
    Ptr(String),
    /// The name exists without data of any type (the domain itself).
    NoData,
    NxDomain,
    Forward,
}

/// `D.C.B.A.in-addr.arpa` -> `A.B.C.D`.
fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut o = [0u8; 4];
    let mut n = 0;
    for part in rest.split('.') {
        if n == 4 {
            return None;
        }
        o[3 - n] = part.parse().ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(o))
}

/// How an answer came about, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// From the name table (including NXDOMAIN and empty answers).
    Local,
    /// Refused by this server: malformed, not a query, not implemented,
    /// or no upstream (SERVFAIL).
    Failed,
}

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back.
    Reply(Vec<u8>, Outcome),
    /// Not ours: send it upstream (its id rewritten).
    Forward,
    /// Not a query at all (a response, or shorter than a header): nothing
    /// to answer.
    Ignore,
}

/// The answer to `query` (`tcp`: it came over TCP, so any size fits).
pub fn answer(query: &[u8], names: &Names, tcp: bool) -> Answer {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return Answer::Ignore;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let Ok(q) = Packet::parse(query) else {
        return fail(id, RCODE::FormatError);
    };
    if q.opcode() != OPCODE::StandardQuery {
        return reply_code(&q, RCODE::NotImplemented, Outcome::Failed);
    }
    let [question] = q.questions.as_slice() else {
        return reply_code(&q, RCODE::FormatError, Outcome::Failed);
    };
    let in_class = matches!(question.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY);
    let name = question.qname.to_string().to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    if !in_class {
        return Answer::Forward;
    }
    let limit = if tcp {
        usize::from(u16::MAX)
    } else {
        udp_limit(&q)
    };
    let mut r = reply_to(&q, RCODE::NoError);
    r.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    let qname = question.qname.clone();
    let qtype = question.qtype;
    let wants = |t: TYPE| qtype == QTYPE::TYPE(t) || qtype == QTYPE::ANY;
    match names.lookup(name) {
        Lookup::Forward => return Answer::Forward,
        Lookup::NxDomain => *r.rcode_mut() = RCODE::NameError,
        Lookup::NoData => {}
        Lookup::Addr(a) => {
            if wants(TYPE::A) {
                r.answers.push(ResourceRecord::new(
                    qname,
                    CLASS::IN,
                    TTL,
                    RData::A(A::from(a)),
                ));
            }
        }
        Lookup::Ptr(target) => {
            if wants(TYPE::PTR) {
                let Ok(t) = Name::new(&target) else {
                    return reply_code(&q, RCODE::ServerFailure, Outcome::Failed);
                };
                r.answers.push(ResourceRecord::new(
                    qname,
                    CLASS::IN,
                    TTL,
                    RData::PTR(PTR(t.into_owned())),
                ));
            }
        }
    }
    finish(r, limit, Outcome::Local)
}

/// SERVFAIL for `query` (no upstream, none answered in time, the table of
/// queries upstream full). `None` if it is not a query one can answer.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    match Packet::parse(query) {
        Ok(q) => match reply_code(&q, RCODE::ServerFailure, Outcome::Failed) {
            Answer::Reply(b, _) => Some(b),
            _ => None,
        },
        Err(_) => match fail(id, RCODE::ServerFailure) {
            Answer::Reply(b, _) => Some(b),
            _ => None,
        },
    }
}

/// The largest UDP answer the asker takes: 512, or its EDNS size (at most
/// ours).
fn udp_limit(q: &Packet) -> usize {
    match q.opt() {
        Some(o) => usize::from(o.udp_packet_size.clamp(UDP_MAX as u16, EDNS_MAX)),
        None => UDP_MAX,
    }
}

/// The reply header for `q`: its id, RD copied, RA set, its question, and
/// an OPT record if it had one.
fn reply_to<'a>(q: &Packet<'a>, rcode: RCODE) -> Packet<'a> {
    let mut r = Packet::new_reply(q.id());
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        r.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    r.set_flags(PacketFlag::RECURSION_AVAILABLE);
    *r.rcode_mut() = rcode;
    r.questions = q.questions.clone();
    if q.opt().is_some() {
        *r.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: EDNS_MAX,
            version: 0,
        });
    }
    r
}

fn reply_code(q: &Packet, rcode: RCODE, how: Outcome) -> Answer {
    finish(reply_to(q, rcode), UDP_MAX, how)
}

/// A bare header with `rcode` (for what could not be parsed).
fn fail(id: u16, rcode: RCODE) -> Answer {
    let mut r = Packet::new_reply(id);
    *r.rcode_mut() = rcode;
    match r.build_bytes_vec() {
        Ok(b) => Answer::Reply(b, Outcome::Failed),
        Err(_) => Answer::Ignore,
    }
}

/// The bytes of `r`; over `limit`, the answers are left out and TC set,
/// so the asker retries over TCP.
fn finish(mut r: Packet, limit: usize, how: Outcome) -> Answer {
    let Ok(b) = r.build_bytes_vec_compressed() else {
        return Answer::Ignore;
    };
    if b.len() <= limit {
        return Answer::Reply(b, how);
    }
    r.answers.clear();
    r.set_flags(PacketFlag::TRUNCATION);
    match r.build_bytes_vec_compressed() {
        Ok(b) => Answer::Reply(b, how),
        Err(_) => Answer::Ignore,
    }
}

/// The query as sent upstream: id `id`, and an EDNS size of at most
/// [`EDNS_MAX`] (so the answer comes back unfragmented: the uplink stack
/// does not reassemble, and the LAN stack does not fragment); a query from
/// TCP (`tcp`) asks for that size even without EDNS, as its asker takes any
/// length. Anything that does not parse goes as it came, with the new id.
pub fn for_upstream(query: &[u8], id: u16, tcp: bool) -> Vec<u8> {
    let rebuilt = Packet::parse(query).ok().and_then(|mut q| {
        let size = q.opt().map(|o| o.udp_packet_size);
        match size {
            Some(s) if s > EDNS_MAX => {}
            None if tcp => {}
            _ => return None,
        }
        let opt = q.opt_mut().get_or_insert_with(|| OPT {
            opt_codes: Vec::new(),
            udp_packet_size: EDNS_MAX,
            version: 0,
        });
        opt.udp_packet_size = EDNS_MAX;
        q.set_id(id);
        q.build_bytes_vec_compressed().ok()
    });
    rebuilt.unwrap_or_else(|| {
        let mut m = query.to_vec();
        set_message_id(&mut m, id);
        m
    })
}

/// The id of a DNS message (its first two bytes), if it has a header.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    (msg.len() >= 12).then(|| u16::from_be_bytes([msg[0], msg[1]]))
}

/// Rewrites the id of a DNS message (forwarding gives each query upstream
/// an id of its own and gives the answer the asker's back).
pub fn set_message_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 12 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
