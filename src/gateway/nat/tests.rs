use super::*;
use crate::wire::ipv4::{fill_ip_checksum, ip_checksum_ok, l4_checksum};

const EXT: [u8; 4] = [10, 99, 0, 2];
const A: [u8; 4] = [192, 168, 88, 11];
const B: [u8; 4] = [192, 168, 88, 12];
const R: [u8; 4] = [10, 99, 0, 1];

fn nat() -> Nat {
    Nat::new(NatConfig::default(), Some(Ipv4Addr::from(EXT)))
}

/// An IPv4 packet around `l4`, L4 checksum left as given (later fragments).
fn raw_ip(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 20 + l4.len()];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    b[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    b[8] = 64;
    b[9] = proto;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b[20..].copy_from_slice(l4);
    fill_ip_checksum(&mut b, 20);
    b
}

/// An IPv4 packet around `l4` (whose checksum field is filled here).
fn ip(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 20 + l4.len()];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    b[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    b[8] = 64;
    b[9] = proto;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b[20..].copy_from_slice(l4);
    fill_ip_checksum(&mut b, 20);
    let h = Ipv4Hdr::parse(&b).unwrap();
    if let Some(off) = ipv4::l4_checksum_offset(proto) {
        let mut c = l4_checksum(&b, &h);
        if proto == PROTO_UDP && c == 0 {
            c = 0xffff; // RFC 768: a computed 0 is sent as all ones
        }
        b[20 + off..22 + off].copy_from_slice(&c.to_be_bytes());
    }
    b
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 8];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(payload);
    ip(PROTO_UDP, src, dst, &l4)
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags;
    l4.extend_from_slice(b"data");
    ip(PROTO_TCP, src, dst, &l4)
}

fn echo(src: [u8; 4], dst: [u8; 4], ty: u8, id: u16) -> Vec<u8> {
    let mut l4 = vec![ty, 0, 0, 0];
    l4.extend_from_slice(&id.to_be_bytes());
    l4.extend_from_slice(&7u16.to_be_bytes());
    l4.extend_from_slice(b"ping-payload");
    ip(PROTO_ICMP, src, dst, &l4)
}

/// A flow's inside end as `ADDR:PORT` (its opener's source).
fn inside(f: &FlowView) -> String {
    let o = f.original;
    format!("{}:{}", o.src, o.sport.or(o.id).unwrap())
}

fn valid(b: &[u8]) -> bool {
    let h = Ipv4Hdr::parse(b).unwrap();
    if !ip_checksum_ok(b, h.ihl) {
        return false;
    }
    if h.is_fragment() {
        return true;
    }
    if h.proto == PROTO_UDP && get16(b, h.ihl + 6) == 0 {
        return true;
    }
    l4_checksum(b, &h) == 0
}

fn src(b: &[u8]) -> [u8; 4] {
    b[12..16].try_into().unwrap()
}
fn dst(b: &[u8]) -> [u8; 4] {
    b[16..20].try_into().unwrap()
}

#[test]
fn udp_out_and_back_keeps_port_and_checksums() {
    let mut n = nat();
    let mut p = udp(A, R, 40000, 53, b"query");
    n.outbound(&mut p, 0).unwrap();
    assert_eq!(src(&p), EXT);
    assert_eq!(get16(&p, 20), 40000, "original port kept when free");
    assert!(valid(&p));
    let mut r = udp(R, EXT, 53, 40000, b"answer");
    n.inbound(&mut r, 10).unwrap();
    assert_eq!(dst(&r), A);
    assert_eq!(get16(&r, 22), 40000);
    assert!(valid(&r));
    assert_eq!(n.len(), 1);
    let f = &n.flows(10)[0];
    let t = |src, dst, sport, dport| Tuple {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
        sport: Some(sport),
        dport: Some(dport),
        id: None,
    };
    assert_eq!(f.original, t(A, R, 40000, 53));
    assert_eq!(f.reply, t(R, EXT, 53, 40000));
    assert_eq!(
        f.original.to_string(),
        "src=192.168.88.11 dst=10.99.0.1 sport=40000 dport=53"
    );
    assert_eq!(f.state, "ASSURED");
}

#[test]
fn port_collision_allocates_another_and_replies_go_home() {
    let mut n = nat();
    let mut pa = udp(A, R, 5000, 7, b"a");
    let mut pb = udp(B, R, 5000, 7, b"b");
    n.outbound(&mut pa, 0).unwrap();
    n.outbound(&mut pb, 0).unwrap();
    let (ea, eb) = (get16(&pa, 20), get16(&pb, 20));
    assert_eq!(ea, 5000);
    assert_ne!(eb, 5000);
    assert!((1024..=65535).contains(&eb));
    assert!(valid(&pb));
    let mut ra = udp(R, EXT, 7, ea, b"ra");
    let mut rb = udp(R, EXT, 7, eb, b"rb");
    n.inbound(&mut rb, 1).unwrap();
    n.inbound(&mut ra, 1).unwrap();
    assert_eq!((dst(&ra), get16(&ra, 22)), (A, 5000));
    assert_eq!((dst(&rb), get16(&rb, 22)), (B, 5000));
    assert!(valid(&ra) && valid(&rb));
    // A different remote endpoint does not collide: B keeps 5000 there.
    let mut pc = udp(B, [10, 99, 0, 9], 5000, 7, b"c");
    n.outbound(&mut pc, 2).unwrap();
    assert_eq!(get16(&pc, 20), 5000);
}

#[test]
fn two_hosts_same_echo_id_both_get_replies() {
    let mut n = nat();
    let mut pa = echo(A, R, ipv4::ICMP_ECHO_REQUEST, 77);
    let mut pb = echo(B, R, ipv4::ICMP_ECHO_REQUEST, 77);
    n.outbound(&mut pa, 0).unwrap();
    n.outbound(&mut pb, 0).unwrap();
    let (ia, ib) = (get16(&pa, 24), get16(&pb, 24));
    assert_eq!(ia, 77);
    assert_ne!(ib, 77);
    assert!(valid(&pa) && valid(&pb));
    let mut ra = echo(R, EXT, ipv4::ICMP_ECHO_REPLY, ia);
    let mut rb = echo(R, EXT, ipv4::ICMP_ECHO_REPLY, ib);
    n.inbound(&mut ra, 1).unwrap();
    n.inbound(&mut rb, 1).unwrap();
    assert_eq!((dst(&ra), get16(&ra, 24)), (A, 77));
    assert_eq!((dst(&rb), get16(&rb, 24)), (B, 77));
    assert!(valid(&ra) && valid(&rb));
}

#[test]
fn unsolicited_inbound_is_dropped() {
    let mut n = nat();
    assert_eq!(
        n.inbound(&mut udp(R, EXT, 53, 40000, b"x"), 0),
        Err(NatDrop::NoFlow)
    );
    assert_eq!(
        n.inbound(&mut tcp(R, EXT, 80, 22, TCP_SYN), 0),
        Err(NatDrop::NoFlow)
    );
    assert_eq!(
        n.inbound(&mut echo(R, EXT, ipv4::ICMP_ECHO_REQUEST, 1), 0),
        Err(NatDrop::NoFlow)
    );
    // Not for the external address at all.
    assert_eq!(
        n.inbound(&mut udp(R, A, 53, 40000, b"x"), 0),
        Err(NatDrop::NoFlow)
    );
    let mut gre = ip(47, A, R, &[0; 8]);
    assert_eq!(n.outbound(&mut gre, 0), Err(NatDrop::Unsupported));
    assert_eq!(n.outbound(&mut [0x45, 0, 0], 0), Err(NatDrop::Malformed));
    assert_eq!(n.len(), 0);
}

#[test]
fn no_address_refuses() {
    let mut n = Nat::new(NatConfig::default(), None);
    assert_eq!(
        n.outbound(&mut udp(A, R, 1, 2, b""), 0),
        Err(NatDrop::NoAddress)
    );
}

#[test]
fn udp_and_icmp_timeouts_with_warped_clock() {
    let mut n = nat();
    n.outbound(&mut udp(A, R, 1000, 53, b"q"), 0).unwrap();
    n.outbound(&mut echo(A, R, ipv4::ICMP_ECHO_REQUEST, 9), 0)
        .unwrap();
    // ICMP lives 30 s, UDP 120 s.
    assert!(
        n.inbound(&mut echo(R, EXT, ipv4::ICMP_ECHO_REPLY, 9), 29_999)
            .is_ok()
    );
    assert_eq!(
        n.inbound(&mut echo(R, EXT, ipv4::ICMP_ECHO_REPLY, 9), 29_999 + 30_000),
        Err(NatDrop::NoFlow)
    );
    // The reply at 29.999 s refreshed nothing for UDP: it expires at 120 s.
    assert!(n.inbound(&mut udp(R, EXT, 53, 1000, b"a"), 119_999).is_ok());
    // ...which refreshed it to 119.999 + 120 s.
    assert!(n.inbound(&mut udp(R, EXT, 53, 1000, b"a"), 239_998).is_ok());
    assert_eq!(
        n.inbound(&mut udp(R, EXT, 53, 1000, b"a"), 239_998 + 120_000),
        Err(NatDrop::NoFlow)
    );
}

#[test]
fn tcp_states_and_timeouts() {
    let mut n = nat();
    let t = NatTimeouts::default();
    n.outbound(&mut tcp(A, R, 33000, 80, TCP_SYN), 0).unwrap();
    assert_eq!(n.flows(0)[0].state, "SYN_SENT");
    assert_eq!(n.flows(0)[0].expires_in_secs, t.tcp_transitory / 1000);
    n.inbound(&mut tcp(R, EXT, 80, 33000, TCP_SYN | TCP_ACK), 1)
        .unwrap();
    n.outbound(&mut tcp(A, R, 33000, 80, TCP_ACK), 2).unwrap();
    assert_eq!(n.flows(2)[0].state, "ESTABLISHED");
    // Established lives at least 2 h 4 min (RFC 5382).
    assert!(t.tcp_established >= 7_440_000);
    let late = 2 + t.tcp_established - 1;
    n.inbound(&mut tcp(R, EXT, 80, 33000, TCP_ACK), late)
        .unwrap();
    n.outbound(&mut tcp(A, R, 33000, 80, TCP_FIN | TCP_ACK), late + 1)
        .unwrap();
    assert_eq!(n.flows(late + 1)[0].state, "FIN_WAIT");
    n.inbound(&mut tcp(R, EXT, 80, 33000, TCP_FIN | TCP_ACK), late + 2)
        .unwrap();
    assert_eq!(n.flows(late + 2)[0].state, "TIME_WAIT");
    let gone = late + 2 + t.tcp_transitory;
    assert_eq!(
        n.inbound(&mut tcp(R, EXT, 80, 33000, TCP_ACK), gone),
        Err(NatDrop::NoFlow)
    );

    // RST closes quickly (clock moving on: the flow above is expired and
    // invisible).
    let t0 = gone + 1;
    n.outbound(&mut tcp(A, R, 33001, 80, TCP_SYN), t0).unwrap();
    n.inbound(&mut tcp(R, EXT, 80, 33001, TCP_RST | TCP_ACK), t0 + 1)
        .unwrap();
    assert_eq!(n.flows(t0 + 1).len(), 1);
    assert_eq!(n.flows(t0 + 1)[0].state, "CLOSE");
    assert_eq!(
        n.inbound(&mut tcp(R, EXT, 80, 33001, TCP_ACK), t0 + 1 + t.tcp_closed),
        Err(NatDrop::NoFlow)
    );
}

#[test]
fn expire_sweeps_in_slices() {
    let mut n = nat();
    for p in 0..100u16 {
        n.outbound(&mut udp(A, R, 2000 + p, 53, b""), 0).unwrap();
    }
    assert_eq!(n.len(), 100);
    assert_eq!(n.expire(1_000, 1000), 0);
    // 30 per slice: four slices (30 + 30 + 30 + 10), no more.
    let slices: Vec<usize> = (0..5).map(|_| n.expire(200_000, 30)).collect();
    assert_eq!(slices, [30, 30, 30, 10, 0]);
    assert!(n.is_empty());
    assert_eq!(n.stats().expired, 100);
    // Slots are reused.
    n.outbound(&mut udp(A, R, 9, 53, b""), 200_001).unwrap();
    assert_eq!(n.flows.len(), 100);
}

#[test]
fn full_table_refuses_new_flows_only() {
    let mut n = Nat::new(
        NatConfig {
            max_flows: 2,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    );
    n.outbound(&mut udp(A, R, 1, 53, b""), 0).unwrap();
    n.outbound(&mut udp(A, R, 2, 53, b""), 0).unwrap();
    // Both answered: none may be evicted for a newcomer.
    n.inbound(&mut udp(R, EXT, 53, 1, b""), 0).unwrap();
    n.inbound(&mut udp(R, EXT, 53, 2, b""), 0).unwrap();
    assert_eq!(
        n.outbound(&mut udp(A, R, 3, 53, b""), 0),
        Err(NatDrop::TableFull)
    );
    assert_eq!(n.stats().refused_full, 1);
    assert!(n.outbound(&mut udp(A, R, 1, 53, b""), 1).is_ok());
    assert!(n.inbound(&mut udp(R, EXT, 53, 2, b""), 1).is_ok());
}

/// An ICMP error from `from` quoting (the first 28 bytes of) `quoted`.
fn icmp_error(from: [u8; 4], to: [u8; 4], ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    icmp_error_quoting(from, to, ty, code, &quoted[..quoted.len().min(28)])
}

/// An ICMP error quoting all of `quoted` (as Linux does, up to 576 bytes).
fn icmp_error_quoting(from: [u8; 4], to: [u8; 4], ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut l4 = vec![ty, code, 0, 0, 0, 0, 0, 0];
    l4.extend_from_slice(quoted);
    ip(PROTO_ICMP, from, to, &l4)
}

#[test]
fn inbound_icmp_errors_are_translated_back() {
    let mut n = nat();
    // B takes port 6000 first so A's flow gets another external port.
    n.outbound(&mut udp(B, R, 6000, 9, b"b"), 0).unwrap();
    let mut p = udp(A, R, 6000, 9, b"probe");
    n.outbound(&mut p, 0).unwrap();
    let ext_port = get16(&p, 20);
    assert_ne!(ext_port, 6000);
    let router = [10, 99, 0, 254];
    for (ty, code) in [(3, 3), (11, 0), (3, 4)] {
        let mut e = icmp_error(router, EXT, ty, code, &p);
        n.inbound(&mut e, 1).unwrap();
        assert_eq!(dst(&e), A);
        assert_eq!(src(&e), router);
        // Quoted header: source is A:6000 again, its checksums right.
        let q = &e[28..];
        assert_eq!(&q[12..16], &A);
        assert_eq!(get16(q, 20), 6000);
        assert!(ip_checksum_ok(q, 20));
        assert!(valid(&e), "outer/ICMP checksum wrong for type {ty}");
    }
    // Quoted UDP checksum is right too (full quote of a small datagram).
    let mut e = icmp_error_quoting(router, EXT, 3, 3, &p);
    n.inbound(&mut e, 1).unwrap();
    assert!(valid(&e));
    let q = e[28..].to_vec();
    let qh = Ipv4Hdr::parse(&q).unwrap();
    assert_eq!(l4_checksum(&q, &qh), 0);
    // An error about a flow that does not exist is dropped.
    let mut other = udp(EXT, R, 1, 9, b"x");
    fill_ip_checksum(&mut other, 20);
    assert_eq!(
        n.inbound(&mut icmp_error(router, EXT, 3, 3, &other), 1),
        Err(NatDrop::NoFlow)
    );
    assert_eq!(n.stats().icmp_errors_translated, 4);
}

#[test]
fn outbound_icmp_errors_are_translated() {
    let mut n = nat();
    n.outbound(&mut udp(B, R, 7000, 9, b"b"), 0).unwrap();
    let mut p = udp(A, R, 7000, 9, b"a");
    n.outbound(&mut p, 0).unwrap();
    let ext_port = get16(&p, 20);
    // The remote answers; A then reports port unreachable about that answer.
    let reply_as_seen_by_a = udp(R, A, 9, 7000, b"r");
    let mut e = icmp_error(A, R, 3, 3, &reply_as_seen_by_a);
    n.outbound(&mut e, 1).unwrap();
    assert_eq!(src(&e), EXT);
    let q = &e[28..];
    assert_eq!(&q[16..20], &EXT);
    assert_eq!(get16(q, 22), ext_port);
    assert!(valid(&e));
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut n = nat();
    // A 3-fragment UDP datagram from A: first carries the UDP header.
    let mut first = udp(A, R, 8000, 9, &[0xab; 64]);
    let set_frag = |b: &mut Vec<u8>, mf: bool, off: usize| {
        let v = (if mf { 0x2000 } else { 0 }) | (off / 8) as u16;
        b[6..8].copy_from_slice(&v.to_be_bytes());
        fill_ip_checksum(b, 20);
    };
    set_frag(&mut first, true, 0);
    let mut later = raw_ip(PROTO_UDP, A, R, &[0xcd; 40]);
    set_frag(&mut later, true, 72);
    let mut last = raw_ip(PROTO_UDP, A, R, &[0xef; 16]);
    set_frag(&mut last, false, 112);

    // A later fragment before the first is refused.
    assert_eq!(
        n.outbound(&mut later.clone(), 0),
        Err(NatDrop::FragmentNoFlow)
    );
    n.outbound(&mut first, 0).unwrap();
    n.outbound(&mut later, 0).unwrap();
    n.outbound(&mut last, 0).unwrap();
    for b in [&first, &later, &last] {
        assert_eq!(src(b), EXT);
        assert!(ip_checksum_ok(b, 20));
    }
    assert_eq!(&later[20..], &[0xcd; 40]);

    // Inbound the same way.
    let mut rfirst = udp(R, EXT, 9, 8000, &[1; 64]);
    set_frag(&mut rfirst, true, 0);
    let mut rlast = raw_ip(PROTO_UDP, R, EXT, &[2; 16]);
    set_frag(&mut rlast, false, 72);
    n.inbound(&mut rfirst, 1).unwrap();
    n.inbound(&mut rlast, 1).unwrap();
    assert_eq!(dst(&rfirst), A);
    assert_eq!(dst(&rlast), A);
    // Fragment entries expire.
    let mut late = raw_ip(PROTO_UDP, R, EXT, &[2; 16]);
    set_frag(&mut late, false, 72);
    assert_eq!(
        n.inbound(&mut late, 1 + FRAG_TTL_MS),
        Err(NatDrop::FragmentNoFlow)
    );
}

#[test]
fn udp_zero_checksum_stays_zero() {
    let mut n = nat();
    n.outbound(&mut udp(B, R, 1, 9, b"b"), 0).unwrap();
    let mut p = udp(A, R, 1, 9, b"nochecksum");
    p[26..28].copy_from_slice(&[0, 0]);
    n.outbound(&mut p, 0).unwrap();
    assert_ne!(get16(&p, 20), 1, "port was translated");
    assert_eq!(get16(&p, 26), 0);
    assert!(valid(&p));
}

#[test]
fn address_change_flushes() {
    let mut n = nat();
    n.outbound(&mut udp(A, R, 1, 9, b""), 0).unwrap();
    n.set_ext_ip(Some(Ipv4Addr::from(EXT)));
    assert_eq!(n.len(), 1);
    n.set_ext_ip(Some(Ipv4Addr::new(10, 99, 0, 3)));
    assert_eq!(n.len(), 0);
}

/// Property: after translation both ways, every checksum equals a full
/// recomputation, for random TCP/UDP/ICMP packets and forced port changes.
#[test]
fn checksums_match_full_recomputation() {
    let mut x = 0xdead_beef_cafe_f00du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut n = nat();
    for i in 0..5_000 {
        let inside = [192, 168, 88, 10 + (rnd() % 4) as u8];
        let remote = [
            (rnd() % 223) as u8 + 1,
            rnd() as u8,
            rnd() as u8,
            rnd() as u8,
        ];
        // Few distinct source ports, so collisions force reallocation.
        let sport = 1000 + (rnd() % 3) as u16;
        let dport = (rnd() % 3) as u16 + 1;
        let payload: Vec<u8> = (0..(rnd() % 300) as usize).map(|_| rnd() as u8).collect();
        let mut p = match i % 3 {
            0 => udp(inside, remote, sport, dport, &payload),
            1 => tcp(inside, remote, sport, dport, TCP_ACK),
            _ => echo(inside, remote, ipv4::ICMP_ECHO_REQUEST, sport),
        };
        let proto = p[9];
        n.outbound(&mut p, i).unwrap();
        assert!(valid(&p), "outbound {i}");
        let (ep, rp) = if proto == PROTO_ICMP {
            (get16(&p, 24), 0)
        } else {
            (get16(&p, 20), dport)
        };
        let mut r = match proto {
            PROTO_UDP => udp(remote, EXT, rp, ep, &payload),
            PROTO_TCP => tcp(remote, EXT, rp, ep, TCP_ACK),
            _ => echo(remote, EXT, ipv4::ICMP_ECHO_REPLY, ep),
        };
        n.inbound(&mut r, i).unwrap();
        assert!(valid(&r), "inbound {i}");
        assert_eq!(dst(&r), inside);
    }
}

#[test]
fn crowded_remote_endpoint_exhausts_cleanly() {
    // A 10-port range: ten flows to one remote endpoint fit, the 11th
    // (whose own port is taken too) is refused, not looped over forever.
    let mut n = Nat::new(
        NatConfig {
            port_min: 2000,
            port_max: 2009,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    );
    let mut used = std::collections::HashSet::new();
    for i in 0..10u8 {
        let mut p = udp([192, 168, 88, 10 + i], R, 2000, 53, b"");
        n.outbound(&mut p, 0).unwrap();
        assert!(used.insert(get16(&p, 20)), "external port reused");
    }
    assert_eq!(
        n.outbound(&mut udp([192, 168, 88, 99], R, 2000, 53, b""), 0),
        Err(NatDrop::PortsExhausted)
    );
}

/// A partial-checksum packet (offload): translate it, then complete the
/// checksum as the kernel would; it must equal a full computation. B holds
/// port 5555 toward both remote endpoints first, so A's flows get another
/// external port: both the address and the port change are checked.
#[test]
fn partial_checksums_complete_correctly_after_translation() {
    let mut n = nat();
    // B takes 5555 toward R:80 (TCP) and R:81 (UDP): A's must move.
    n.outbound(&mut tcp(B, R, 5555, 80, TCP_SYN), 0).unwrap();
    n.outbound(&mut udp(B, R, 5555, 81, b"b"), 0).unwrap();
    let seed_of = |p: &[u8], proto: u8| {
        let h = Ipv4Hdr::parse(p).unwrap();
        !checksum::finish(checksum::pseudo_header_v4(
            h.src,
            h.dst,
            proto,
            (h.total_len - 20) as u16,
        ))
    };
    let mut ext_tcp = 0;
    for (out, proto) in [(true, PROTO_TCP), (false, PROTO_TCP), (true, PROTO_UDP)] {
        let mut p = match (out, proto) {
            (true, PROTO_TCP) => tcp(A, R, 5555, 80, TCP_SYN),
            (false, _) => tcp(R, EXT, 80, ext_tcp, TCP_SYN | TCP_ACK),
            _ => udp(A, R, 5555, 81, b"payload"),
        };
        let off = 20 + ipv4::l4_checksum_offset(proto).unwrap();
        // The sender's seed: the folded, non-inverted pseudo-header sum.
        let seed = seed_of(&p, proto);
        p[off..off + 2].copy_from_slice(&seed.to_be_bytes());
        if out {
            n.outbound_partial(&mut p, 1).unwrap();
            assert_eq!(src(&p), EXT, "source address translated");
            let port = get16(&p, 20);
            assert_ne!(port, 5555, "B holds 5555 toward this endpoint");
            assert!((1024..=65535).contains(&port));
            assert_eq!(
                (dst(&p), get16(&p, 22)),
                (R, if proto == PROTO_TCP { 80 } else { 81 })
            );
            if proto == PROTO_TCP {
                ext_tcp = port;
            }
        } else {
            n.inbound_partial(&mut p, 1).unwrap();
            assert_eq!((dst(&p), get16(&p, 22)), (A, 5555), "back to A's own port");
            assert_eq!((src(&p), get16(&p, 20)), (R, 80));
        }
        assert!(ip_checksum_ok(&p, 20));
        // The field now holds the seed of the translated header.
        assert_eq!(
            get16(&p, off),
            seed_of(&p, proto),
            "seed follows the rewrite"
        );
        // Complete like the kernel: sum from the L4 start, field included.
        let c = checksum::finish(checksum::sum(&p[20..], 0));
        p[off..off + 2].copy_from_slice(&c.to_be_bytes());
        assert!(valid(&p), "out={out} proto={proto}");
    }
    assert_eq!(n.len(), 4);
}

/// TCP and UDP flows with the same ports toward the same endpoint are
/// different flows: each reply finds its own.
#[test]
fn tcp_and_udp_flows_on_the_same_ports_are_apart() {
    let mut n = nat();
    let mut u = udp(A, R, 5000, 53, b"q");
    let mut t = tcp(B, R, 5000, 53, TCP_SYN);
    n.outbound(&mut u, 0).unwrap();
    n.outbound(&mut t, 0).unwrap();
    assert_eq!((get16(&u, 20), get16(&t, 20)), (5000, 5000));
    let mut ru = udp(R, EXT, 53, 5000, b"a");
    let mut rt = tcp(R, EXT, 53, 5000, TCP_SYN | TCP_ACK);
    n.inbound(&mut ru, 1).unwrap();
    n.inbound(&mut rt, 1).unwrap();
    assert_eq!(dst(&ru), A, "UDP reply to the UDP flow's host");
    assert_eq!(dst(&rt), B, "TCP reply to the TCP flow's host");
    assert_eq!(n.len(), 2);
}

/// Packet counters count one per packet each way (`nat show`).
#[test]
fn packet_counters_count_each_packet() {
    let mut n = nat();
    for _ in 0..3 {
        n.outbound(&mut udp(A, R, 7100, 53, b"q"), 0).unwrap();
    }
    for _ in 0..2 {
        n.inbound(&mut udp(R, EXT, 53, 7100, b"a"), 0).unwrap();
    }
    let f = &n.flows(0)[0];
    assert_eq!((f.packets_out, f.packets_in), (3, 2));
    let st = n.stats();
    assert_eq!((st.translated_out, st.translated_in), (3, 2));
}

/// After a reset the flow is closed (10 s): a later FIN does not revive
/// it as a FIN_WAIT flow with the longer transitory timeout.
#[test]
fn a_reset_flow_stays_closed() {
    let mut n = nat();
    n.outbound(&mut tcp(A, R, 7200, 80, TCP_SYN), 0).unwrap();
    n.inbound(&mut tcp(R, EXT, 80, 7200, TCP_SYN | TCP_ACK), 1)
        .unwrap();
    n.outbound(&mut tcp(A, R, 7200, 80, TCP_ACK), 2).unwrap();
    n.inbound(&mut tcp(R, EXT, 80, 7200, TCP_RST), 3).unwrap();
    let closed = n.flows(3)[0].clone();
    n.outbound(&mut tcp(A, R, 7200, 80, TCP_FIN | TCP_ACK), 4)
        .unwrap();
    let f = &n.flows(4)[0];
    assert_eq!(f.state, closed.state, "{f:?}");
    assert!(f.expires_in_secs <= 10, "{f:?}");
}

/// ICMP shorter than its 8-byte header is malformed, both ways, never a
/// read past the end.
#[test]
fn short_icmp_is_malformed() {
    let mut n = nat();
    for ty in [
        ipv4::ICMP_ECHO_REQUEST,
        ipv4::ICMP_ECHO_REPLY,
        ipv4::ICMP_DEST_UNREACH,
    ] {
        let mut p = raw_ip(PROTO_ICMP, A, R, &[ty, 0, 0, 0]);
        assert_eq!(n.outbound(&mut p, 0), Err(NatDrop::Malformed), "type {ty}");
        let mut q = raw_ip(PROTO_ICMP, R, EXT, &[ty, 0, 0, 0]);
        assert!(n.inbound(&mut q, 0).is_err(), "type {ty}");
        assert!(n.peek(&p, Dir::Out, 0).is_err());
    }
    assert_eq!(n.len(), 0);
}

/// Inbound packets for another address never match, even with the ports of
/// a live flow.
#[test]
fn inbound_for_another_address_does_not_match_a_flow() {
    let mut n = nat();
    n.outbound(&mut udp(A, R, 7300, 53, b"q"), 0).unwrap();
    let mut p = udp(R, [10, 99, 0, 9], 53, 7300, b"a");
    assert_eq!(n.inbound(&mut p, 1), Err(NatDrop::NoFlow));
    assert_eq!(dst(&p), [10, 99, 0, 9], "left as it was");
}

/// An ICMP error quoting a translated echo request: the quoted identifier
/// goes back to the inside host's own.
#[test]
fn inbound_error_about_an_echo_restores_the_quoted_identifier() {
    let mut n = nat();
    n.outbound(&mut echo(B, R, ipv4::ICMP_ECHO_REQUEST, 900), 0)
        .unwrap();
    let mut p = echo(A, R, ipv4::ICMP_ECHO_REQUEST, 900);
    n.outbound(&mut p, 0).unwrap();
    let ext_id = get16(&p, 24);
    assert_ne!(ext_id, 900);
    let mut e = icmp_error([10, 99, 0, 254], EXT, 11, 0, &p);
    n.inbound(&mut e, 1).unwrap();
    assert_eq!(dst(&e), A);
    let q = &e[28..];
    assert_eq!(&q[12..16], &A);
    assert_eq!(get16(q, 24), 900, "quoted echo identifier restored");
    assert!(valid(&e));
}

/// A fragment record lives 30 s: a sweep before then keeps it (the later
/// fragments still follow), a sweep after removes it.
#[test]
fn fragment_records_live_until_they_expire() {
    let mut n = nat();
    let set_frag = |b: &mut Vec<u8>, mf: bool, off: usize| {
        let v = (if mf { 0x2000 } else { 0 }) | (off / 8) as u16;
        b[6..8].copy_from_slice(&v.to_be_bytes());
        fill_ip_checksum(b, 20);
    };
    let mut first = udp(A, R, 8100, 9, &[0xab; 64]);
    set_frag(&mut first, true, 0);
    let mut later = raw_ip(PROTO_UDP, A, R, &[0xcd; 40]);
    set_frag(&mut later, false, 72);
    n.outbound(&mut first, 0).unwrap();
    // Sweeps that wrap around (records are swept on each wrap), 1 s on.
    n.expire(1_000, 100_000);
    n.expire(1_000, 100_000);
    assert_eq!(n.frags.len(), 1, "a live record is kept");
    n.outbound(&mut later.clone(), 1_000).unwrap();
    assert!(matches!(
        n.peek(&later, Dir::Out, 1_000),
        Ok(Peek::LaterFragment { .. })
    ));
    n.expire(31_000, 100_000);
    n.expire(31_000, 100_000);
    assert_eq!(n.frags.len(), 0, "an expired record is swept");
    assert_eq!(n.outbound(&mut later, 31_000), Err(NatDrop::FragmentNoFlow));
}

/// Fragmented replies in flight at once: different IP ids from one remote,
/// and the same IP id from two remotes (each picks its own ids): each later
/// fragment follows its own first fragment to its own inside host.
#[test]
fn interleaved_fragmented_replies_go_to_their_own_hosts() {
    const R2: [u8; 4] = [10, 99, 0, 7];
    let mut n = nat();
    n.outbound(&mut udp(A, R, 8200, 9, b"a"), 0).unwrap();
    n.outbound(&mut udp(B, R, 8201, 9, b"b"), 0).unwrap();
    n.outbound(&mut udp(B, R2, 8202, 9, b"c"), 0).unwrap();
    let frag = |b: &mut Vec<u8>, id: u16, mf: bool, off: usize| {
        b[4..6].copy_from_slice(&id.to_be_bytes());
        let v = (if mf { 0x2000 } else { 0 }) | (off / 8) as u16;
        b[6..8].copy_from_slice(&v.to_be_bytes());
        fill_ip_checksum(b, 20);
    };
    let firsts = [(R, 8200, 0x1111), (R, 8201, 0x2222), (R2, 8202, 0x1111)];
    let mut got = Vec::new();
    for (r, port, id) in firsts {
        let mut f = udp(r, EXT, 9, port, &[1; 64]);
        frag(&mut f, id, true, 0);
        n.inbound(&mut f, 1).unwrap();
        got.push(dst(&f));
    }
    // Later fragments, in another order.
    for (r, id) in [(R2, 0x1111), (R, 0x2222), (R, 0x1111)] {
        let mut l = raw_ip(PROTO_UDP, r, EXT, &[3; 16]);
        frag(&mut l, id, false, 72);
        n.inbound(&mut l, 2).unwrap();
        got.push(dst(&l));
    }
    assert_eq!(got, [A, B, B, B, B, A]);
    // An id nobody started: refused.
    let mut lc = raw_ip(PROTO_UDP, R, EXT, &[5; 16]);
    frag(&mut lc, 0x3333, false, 72);
    assert_eq!(n.inbound(&mut lc, 2), Err(NatDrop::FragmentNoFlow));
}

/// `heap_bytes` sums what the table allocated (the benches' bytes/flow).
#[test]
fn heap_bytes_counts_every_structure() {
    let mut n = nat();
    for p in 0..500u16 {
        n.outbound(&mut udp(A, R, 10_000 + p, 53, b""), 0).unwrap();
    }
    n.expire(200_000, 100_000);
    n.outbound(&mut udp(A, R, 9, 53, b""), 200_000).unwrap();
    let bucket = std::mem::size_of::<(u128, u32)>() + 1;
    assert!(n.free.capacity() > 0);
    let want = n.flows.capacity() * std::mem::size_of::<Flow>()
        + (map_buckets(n.out_map.capacity()) + map_buckets(n.in_map.capacity())) * bucket
        + map_buckets(n.per_inside.capacity()) * (std::mem::size_of::<([u8; 4], u32)>() + 1)
        + n.free.capacity() * 4
        + n.order.capacity() * 8;
    assert_eq!(n.heap_bytes(), want);
    // Sized for the default bound (65,536 flows) at start.
    assert_eq!(map_buckets(n.out_map.capacity()), 131_072);
}

/// `peek` (for `vswitchctl trace`) says what the translation would do,
/// changing nothing: new, existing (until the moment it expires), later
/// fragment, ICMP error.
#[test]
fn peeks_match_what_translation_does() {
    let mut n = nat();
    let p = udp(A, R, 7400, 53, b"q");
    assert!(matches!(
        n.peek(&p, Dir::Out, 0),
        Ok(Peek::New { kept: true, .. })
    ));
    assert_eq!(n.len(), 0, "peek creates nothing");
    let mut sent = p.clone();
    n.outbound(&mut sent, 0).unwrap();
    let udp_timeout = NatConfig::default().timeouts.udp;
    let ext = std::net::SocketAddrV4::new(Ipv4Addr::from(EXT), 7400);
    match n.peek(&p, Dir::Out, 1) {
        Ok(Peek::Existing { ext: e, key, .. }) => {
            assert_eq!(e, ext);
            assert_eq!(
                key.inside,
                std::net::SocketAddrV4::new(Ipv4Addr::from(A), 7400)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(n.peek(&p, Dir::Out, udp_timeout), Ok(Peek::New { .. })),
        "expired at its deadline"
    );
    let r = udp(R, EXT, 53, 7400, b"a");
    let inside = n.peek(&r, Dir::In, 1).unwrap().inside();
    assert_eq!(inside, std::net::SocketAddrV4::new(Ipv4Addr::from(A), 7400));
    assert_eq!(n.peek(&r, Dir::In, udp_timeout), Err(NatDrop::NoFlow));
    // An ICMP error quoting what we sent belongs to the flow; one quoting
    // the untranslated packet does not (as translation decides).
    let e = icmp_error([10, 99, 0, 254], EXT, 3, 3, &sent);
    assert!(matches!(n.peek(&e, Dir::In, 1), Ok(Peek::IcmpError { .. })));
    let stray = icmp_error([10, 99, 0, 254], EXT, 3, 3, &p);
    assert_eq!(n.peek(&stray, Dir::In, 1), Err(NatDrop::NoFlow));
    let mut later = raw_ip(PROTO_UDP, A, R, &[0; 16]);
    later[6..8].copy_from_slice(&9u16.to_be_bytes());
    fill_ip_checksum(&mut later, 20);
    // A later fragment whose first was never seen: refused, as translation
    // refuses it (the peek makes the same decision).
    assert_eq!(n.peek(&later, Dir::Out, 1), Err(NatDrop::FragmentNoFlow));
    assert_eq!(
        n.outbound(&mut later.clone(), 1),
        Err(NatDrop::FragmentNoFlow)
    );
    let mut rlater = raw_ip(PROTO_UDP, R, EXT, &[0; 16]);
    rlater[6..8].copy_from_slice(&9u16.to_be_bytes());
    fill_ip_checksum(&mut rlater, 20);
    assert_eq!(n.peek(&rlater, Dir::In, 1), Err(NatDrop::FragmentNoFlow));
}

/// One inside address holds at most its share; the others still get flows.
#[test]
fn one_port_cannot_take_the_table_from_the_others() {
    let mut n = Nat::new(
        NatConfig {
            max_flows: 8,
            max_per_inside: 3,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    );
    for p in 0..3 {
        n.outbound(&mut udp(A, R, 100 + p, 53, b""), 0).unwrap();
    }
    assert_eq!(
        n.outbound(&mut udp(A, R, 200, 53, b""), 0),
        Err(NatDrop::ShareExceeded)
    );
    assert_eq!(n.stats().refused_share, 1);
    // Its existing flows still pass; another host opens flows.
    assert!(n.outbound(&mut udp(A, R, 100, 53, b""), 1).is_ok());
    assert!(n.outbound(&mut udp(B, R, 100, 53, b""), 1).is_ok());
    // Flows that go free the share again.
    n.forget_inside(Ipv4Addr::from(A));
    assert!(n.outbound(&mut udp(A, R, 200, 53, b""), 2).is_ok());
}

/// A full table makes room with the oldest unreplied flow; flows that saw
/// a reply are never evicted for a newcomer.
#[test]
fn a_full_table_evicts_the_oldest_unreplied_flow_only() {
    let mut n = Nat::new(
        NatConfig {
            max_flows: 3,
            max_per_inside: 3,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    );
    n.outbound(&mut udp(A, R, 1, 53, b""), 0).unwrap();
    n.outbound(&mut udp(A, R, 2, 53, b""), 1).unwrap();
    n.outbound(&mut udp(A, R, 3, 53, b""), 2).unwrap();
    // Flow 1 is answered; 2 and 3 are not.
    n.inbound(&mut udp(R, EXT, 53, 1, b""), 3).unwrap();
    n.outbound(&mut udp(B, R, 9, 53, b""), 4).unwrap();
    assert_eq!(n.stats().early_dropped, 1);
    let inside: Vec<String> = n.flows(4).iter().map(inside).collect();
    assert!(
        !inside.iter().any(|i| i.ends_with(":2")),
        "oldest unreplied evicted: {inside:?}"
    );
    assert!(
        inside.iter().any(|i| i.ends_with(":1")),
        "answered flow kept: {inside:?}"
    );
    // Answer everything: then nothing may be evicted, the table is full.
    n.inbound(&mut udp(R, EXT, 53, 3, b""), 5).unwrap();
    n.inbound(&mut udp(R, EXT, 53, 9, b""), 5).unwrap();
    assert_eq!(
        n.outbound(&mut udp(B, R, 10, 53, b""), 6),
        Err(NatDrop::TableFull)
    );
    assert_eq!(n.len(), 3);
}

/// Long-lived answered flows at the head of the table do not hide an
/// unreplied one behind them.
#[test]
fn an_unreplied_flow_behind_many_answered_ones_is_still_found() {
    let mut n = Nat::new(
        NatConfig {
            max_flows: 200,
            max_per_inside: 200,
            ..NatConfig::default()
        },
        Some(Ipv4Addr::from(EXT)),
    );
    for p in 0..199u16 {
        n.outbound(&mut udp(A, R, 1000 + p, 53, b""), 0).unwrap();
        n.inbound(&mut udp(R, EXT, 53, 1000 + p, b""), 0).unwrap();
    }
    n.outbound(&mut udp(A, R, 5000, 53, b""), 1).unwrap();
    assert_eq!(n.len(), 200);
    // Full: the one unreplied flow makes room, nothing else goes.
    n.outbound(&mut udp(B, R, 7, 53, b""), 2).unwrap();
    assert_eq!(n.stats().early_dropped, 1);
    assert!(n.flows(2).iter().all(|f| !inside(f).ends_with(":5000")));
    assert_eq!(
        n.outbound(&mut udp(B, R, 8, 53, b""), 2),
        Ok(()),
        "the newcomer's own flow was unreplied: it makes room in turn"
    );
    n.inbound(&mut udp(R, EXT, 53, 8, b""), 3).unwrap();
    assert_eq!(
        n.outbound(&mut udp(B, R, 9, 53, b""), 3),
        Err(NatDrop::TableFull)
    );
}

/// A segment that is not a SYN opens only a short, loose flow until the
/// other end answers; a wrong checksum opens or changes nothing.
#[test]
fn blind_tcp_segments_open_nothing_long_lived() {
    let mut n = nat();
    let t = NatTimeouts::default();
    n.outbound(&mut tcp(A, R, 40000, 80, TCP_ACK), 0).unwrap();
    let f = &n.flows(0)[0];
    assert_eq!(f.state, "PICKED_UP");
    assert_eq!(f.expires_in_secs, t.tcp_loose / 1000);
    // Unanswered, it is gone after the loose timeout.
    assert_eq!(
        n.inbound(&mut tcp(R, EXT, 80, 40000, TCP_ACK), t.tcp_loose),
        Err(NatDrop::NoFlow)
    );
    // Answered, it is a connection (picked up after a restart, say).
    n.outbound(&mut tcp(A, R, 40001, 80, TCP_ACK), 100_000)
        .unwrap();
    n.inbound(&mut tcp(R, EXT, 80, 40001, TCP_ACK), 100_001)
        .unwrap();
    let f = n
        .flows(100_001)
        .into_iter()
        .find(|f| inside(f).ends_with(":40001"))
        .unwrap();
    assert_eq!(f.state, "ESTABLISHED");
    // A wrong checksum opens nothing.
    let mut bad = tcp(A, R, 40002, 80, TCP_ACK);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(n.outbound(&mut bad, 100_002), Err(NatDrop::BadChecksum));
    assert!(
        n.flows(100_002)
            .iter()
            .all(|f| !inside(f).ends_with(":40002"))
    );
    // ...and a RST with a wrong checksum closes nothing.
    let mut rst = tcp(R, EXT, 80, 40001, TCP_RST);
    let last = rst.len() - 1;
    rst[last] ^= 0xff;
    assert_eq!(n.inbound(&mut rst, 100_003), Err(NatDrop::BadChecksum));
    let f = n
        .flows(100_003)
        .into_iter()
        .find(|f| inside(f).ends_with(":40001"))
        .unwrap();
    assert_eq!(f.state, "ESTABLISHED");
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Udp,
        Tcp,
        Echo,
    }

    fn packet(
        kind: Kind,
        s: [u8; 4],
        d: [u8; 4],
        sp: u16,
        dp: u16,
        pay: &[u8],
        reply: bool,
    ) -> Vec<u8> {
        match kind {
            Kind::Udp => udp(s, d, sp, dp, pay),
            Kind::Tcp => tcp(
                s,
                d,
                sp,
                dp,
                if reply { TCP_SYN | TCP_ACK } else { TCP_SYN },
            ),
            Kind::Echo => echo(
                s,
                d,
                if reply {
                    ipv4::ICMP_ECHO_REPLY
                } else {
                    ipv4::ICMP_ECHO_REQUEST
                },
                sp,
            ),
        }
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![Just(Kind::Udp), Just(Kind::Tcp), Just(Kind::Echo)]
    }

    proptest! {
        /// NAT out then in returns the original: a reply to the translated
        /// packet comes back to the inside host and port, byte for byte what
        /// a reply to the untranslated packet would be; the outbound packet
        /// changes only in source address and port (and checksums), which
        /// verify after every rewrite. Few inside ports, so collisions
        /// force reallocations.
        #[test]
        fn out_then_in_returns_the_original(
            flows in proptest::collection::vec(
                (kind(), 10..14u8, 0..3u16, any::<[u8; 4]>(), 1..4u16,
                 proptest::collection::vec(any::<u8>(), 0..64)),
                1..60),
        ) {
            let mut n = nat();
            for (i, (k, host, sp, remote, dp, pay)) in flows.into_iter().enumerate() {
                let inside = [192, 168, 88, host];
                let remote = [remote[0] % 223 + 1, remote[1], remote[2], remote[3]];
                let sp = 1000 + sp;
                let now = i as Millis;
                let orig = packet(k, inside, remote, sp, dp, &pay, false);
                let mut p = orig.clone();
                n.outbound(&mut p, now).unwrap();
                prop_assert!(valid(&p));
                prop_assert_eq!(src(&p), EXT);
                prop_assert_eq!(dst(&p), remote);
                let (ext, id_at) = match k {
                    Kind::Echo => (get16(&p, 24), 24),
                    _ => (get16(&p, 20), 20),
                };
                // Only source address, port/id and checksums changed.
                let mut same = p.clone();
                same[12..16].copy_from_slice(&inside);
                same[id_at..id_at + 2].copy_from_slice(&sp.to_be_bytes());
                same[10..12].copy_from_slice(&orig[10..12]);
                let coff = 20 + ipv4::l4_checksum_offset(orig[9]).unwrap();
                same[coff..coff + 2].copy_from_slice(&orig[coff..coff + 2]);
                prop_assert_eq!(&same, &orig);
                // A reply to what left comes back as a reply to the original.
                let mut r = match k {
                    Kind::Echo => packet(k, remote, EXT, ext, 0, &pay, true),
                    _ => packet(k, remote, EXT, dp, ext, &pay, true),
                };
                n.inbound(&mut r, now).unwrap();
                let want = match k {
                    Kind::Echo => packet(k, remote, inside, sp, 0, &pay, true),
                    _ => packet(k, remote, inside, dp, sp, &pay, true),
                };
                prop_assert!(valid(&r));
                prop_assert_eq!(r, want);
            }
            // Each (inside, port, remote) flow has its own external port.
            let flows = n.flows(0);
            let mut seen = std::collections::HashSet::new();
            for f in &flows {
                prop_assert!(seen.insert((f.proto.clone(), f.reply)), "{:?}", f);
            }
        }

        /// Any bytes through the NAT both ways, in both modes: no panic, and
        /// whatever it accepts still parses with a valid IP checksum.
        #[test]
        fn any_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..120), partial in any::<bool>()) {
            let mut n = nat();
            if b.len() >= 20 {
                b[0] = 0x45;
                let l = b.len() as u16;
                b[2..4].copy_from_slice(&l.to_be_bytes());
                b[6] &= 0x40;
                b[7] = 0;
                fill_ip_checksum(&mut b, 20);
            }
            let mut c = b.clone();
            let r = if partial { n.outbound_partial(&mut b, 0) } else { n.outbound(&mut b, 0) };
            if r.is_ok() {
                prop_assert!(ip_checksum_ok(&b, 20));
            }
            let r = if partial { n.inbound_partial(&mut c, 0) } else { n.inbound(&mut c, 0) };
            if r.is_ok() {
                prop_assert!(ip_checksum_ok(&c, 20));
            }
        }
    }
}

mod bounded;
mod frags;
mod publish;
mod window;
