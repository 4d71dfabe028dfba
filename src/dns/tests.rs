use super::upstream::{Refused, Upstream};
use super::*;
use simple_dns::Question;

fn names() -> Names {
    let mut n = Names::new("vsw1", "192.168.88.0/24".parse().unwrap());
    n.insert("ns01", Ipv4Addr::new(192, 168, 88, 11));
    n.insert("ns02", Ipv4Addr::new(192, 168, 88, 12));
    n
}

fn query(name: &str, t: TYPE, edns: Option<u16>) -> Vec<u8> {
    let mut q = Packet::new_query(0x1234);
    q.set_flags(PacketFlag::RECURSION_DESIRED);
    q.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(t),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    if let Some(size) = edns {
        *q.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: size,
            version: 0,
        });
    }
    q.build_bytes_vec().unwrap()
}

fn reply(a: Answer) -> Vec<u8> {
    match a {
        Answer::Reply(b, Outcome::Local) => b,
        other => panic!("expected a local reply, got {other:?}"),
    }
}

fn addrs(p: &Packet) -> Vec<Ipv4Addr> {
    p.answers
        .iter()
        .filter_map(|r| match &r.rdata {
            RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_record_for_a_port_bare_and_in_the_domain_any_case() {
    let n = names();
    for name in ["ns02", "ns02.vsw1", "NS02.VSW1.", "Ns02"] {
        let b = reply(answer(&query(name, TYPE::A, None), &n, false));
        let p = Packet::parse(&b).unwrap();
        assert_eq!(p.id(), 0x1234, "{name}");
        assert!(p.has_flags(PacketFlag::RESPONSE | PacketFlag::AUTHORITATIVE_ANSWER));
        assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
        assert_eq!(p.rcode(), RCODE::NoError);
        assert_eq!(addrs(&p), vec![Ipv4Addr::new(192, 168, 88, 12)], "{name}");
        assert_eq!(p.questions.len(), 1);
        assert_eq!(p.answers[0].ttl, TTL);
    }
}

#[test]
fn other_types_of_a_port_name_get_an_empty_answer_at_once() {
    let n = names();
    for t in [TYPE::AAAA, TYPE::MX, TYPE::TXT, TYPE::SRV] {
        let b = reply(answer(&query("ns01.vsw1", t, None), &n, false));
        let p = Packet::parse(&b).unwrap();
        assert_eq!(p.rcode(), RCODE::NoError, "{t:?}");
        assert!(p.answers.is_empty(), "{t:?}");
        assert!(p.has_flags(PacketFlag::AUTHORITATIVE_ANSWER));
    }
}

#[test]
fn unknown_names_in_the_domain_and_single_labels_are_nxdomain_here() {
    let n = names();
    for name in ["nosuch.vsw1", "nosuch", "a.b.vsw1"] {
        let b = reply(answer(&query(name, TYPE::A, None), &n, false));
        assert_eq!(
            Packet::parse(&b).unwrap().rcode(),
            RCODE::NameError,
            "{name}"
        );
    }
    // The domain itself exists, without data.
    let b = reply(answer(&query("vsw1", TYPE::A, None), &n, false));
    let p = Packet::parse(&b).unwrap();
    assert_eq!(p.rcode(), RCODE::NoError);
    assert!(p.answers.is_empty());
}

#[test]
fn other_names_are_forwarded() {
    let n = names();
    for name in [
        "example.com",
        "upstream-only.test",
        "ns02.other",
        "vsw1x.com",
    ] {
        assert_eq!(
            answer(&query(name, TYPE::A, None), &n, false),
            Answer::Forward,
            "{name}"
        );
    }
    // Outside the subnet, reverse lookups go upstream too.
    assert_eq!(
        answer(&query("8.8.8.8.in-addr.arpa", TYPE::PTR, None), &n, false),
        Answer::Forward
    );
}

#[test]
fn ptr_for_a_port_address_and_nxdomain_for_the_rest_of_the_subnet() {
    let n = names();
    let b = reply(answer(
        &query("11.88.168.192.in-addr.arpa", TYPE::PTR, None),
        &n,
        false,
    ));
    let p = Packet::parse(&b).unwrap();
    assert_eq!(p.rcode(), RCODE::NoError);
    match &p.answers[..] {
        [r] => match &r.rdata {
            RData::PTR(PTR(t)) => assert_eq!(t.to_string(), "ns01.vsw1"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    let b = reply(answer(
        &query("99.88.168.192.in-addr.arpa", TYPE::PTR, None),
        &n,
        false,
    ));
    assert_eq!(Packet::parse(&b).unwrap().rcode(), RCODE::NameError);
    assert_eq!(reverse_v4("1.2.3.4.5.in-addr.arpa"), None);
    assert_eq!(reverse_v4("x.2.3.4.in-addr.arpa"), None);
    assert_eq!(reverse_v4("256.2.3.4.in-addr.arpa"), None);
}

#[test]
fn the_table_follows_ports_coming_and_going() {
    let mut n = names();
    n.remove("ns02");
    assert_eq!(
        Packet::parse(&reply(answer(&query("ns02", TYPE::A, None), &n, false)))
            .unwrap()
            .rcode(),
        RCODE::NameError
    );
    // An address moved to another name loses its old name.
    n.insert("web", Ipv4Addr::new(192, 168, 88, 11));
    assert_eq!(n.get("ns01"), None);
    assert_eq!(n.get("WEB"), Some(Ipv4Addr::new(192, 168, 88, 11)));
    assert_eq!(n.len(), 1);
}

#[test]
fn edns_is_answered_with_edns_and_long_answers_are_truncated() {
    let n = names();
    let b = reply(answer(&query("ns01", TYPE::A, Some(4096)), &n, false));
    let p = Packet::parse(&b).unwrap();
    assert_eq!(p.opt().map(|o| o.udp_packet_size), Some(EDNS_MAX));
    // Over the limit: no answers and TC, so the asker retries over TCP.
    let mut r = Packet::new_reply(9);
    for _ in 0..40 {
        r.answers.push(ResourceRecord::new(
            Name::new_unchecked("x"),
            CLASS::IN,
            TTL,
            RData::A(A { address: 1 }),
        ));
    }
    let Answer::Reply(b, _) = finish(r, UDP_MAX, Outcome::Local) else {
        panic!()
    };
    let p = Packet::parse(&b).unwrap();
    assert!(p.has_flags(PacketFlag::TRUNCATION));
    assert!(p.answers.is_empty());
}

#[test]
fn garbage_never_panics_and_is_refused_or_ignored() {
    let n = names();
    assert_eq!(answer(&[], &n, false), Answer::Ignore);
    assert_eq!(answer(&[0; 11], &n, false), Answer::Ignore);
    // A response is not a query.
    let mut resp = query("ns01", TYPE::A, None);
    resp[2] |= 0x80;
    assert_eq!(answer(&resp, &n, false), Answer::Ignore);
    // A header claiming a question that is not there: FORMERR.
    let mut bad = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a'];
    match answer(&bad, &n, false) {
        Answer::Reply(b, Outcome::Failed) => {
            let p = Packet::parse(&b).unwrap();
            assert_eq!(p.id(), 0xabcd);
            assert_eq!(p.rcode(), RCODE::FormatError);
        }
        other => panic!("{other:?}"),
    }
    // Every truncation and byte flip of a real query: no panic.
    let q = query("ns02.vsw1", TYPE::A, Some(1232));
    for i in 0..q.len() {
        let _ = answer(&q[..i], &n, false);
        for bit in 0..8 {
            let mut f = q.clone();
            f[i] ^= 1 << bit;
            let _ = answer(&f, &n, false);
            let _ = servfail(&f);
        }
    }
    bad.truncate(12);
    bad[5] = 0; // no question at all
    assert!(matches!(
        answer(&bad, &n, false),
        Answer::Reply(_, Outcome::Failed)
    ));
}

#[test]
fn servfail_keeps_id_and_question() {
    let b = servfail(&query("example.com", TYPE::A, None)).unwrap();
    let p = Packet::parse(&b).unwrap();
    assert_eq!(p.id(), 0x1234);
    assert_eq!(p.rcode(), RCODE::ServerFailure);
    assert_eq!(p.questions[0].qname.to_string(), "example.com");
    assert_eq!(servfail(&[1, 2, 3]), None);
}

#[test]
fn ids_are_rewritten_and_read_back() {
    let mut q = query("example.com", TYPE::A, None);
    assert_eq!(message_id(&q), Some(0x1234));
    set_message_id(&mut q, 0xbeef);
    assert_eq!(Packet::parse(&q).unwrap().id(), 0xbeef);
    assert_eq!(message_id(&q[..5]), None);
}

#[test]
fn upstream_answers_match_by_id_server_and_port() {
    let s = Ipv4Addr::new(10, 99, 0, 1);
    let mut u: Upstream<&str> = Upstream::new(8, 2000, 42);
    let id = u.insert("c1", 0x1111, s, b"q1", 1000).unwrap();
    assert_eq!(u.take(id, Ipv4Addr::new(10, 99, 0, 2), 53), None);
    assert_eq!(u.take(id, s, 5353), None);
    assert_eq!(u.take(id.wrapping_add(1), s, 53), None);
    let p = u.take(id, s, 53).unwrap();
    assert_eq!(
        (p.client, p.client_id, p.query.as_slice()),
        ("c1", 0x1111, &b"q1"[..])
    );
    assert_eq!(u.take(id, s, 53), None, "an answer is taken once");
    assert!(u.is_empty());
}

#[test]
fn upstream_table_is_bounded_and_ids_unique() {
    let s = Ipv4Addr::new(10, 99, 0, 1);
    let mut u: Upstream<u32> = Upstream::new(300, 2000, 7);
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..300 {
        ids.insert(u.insert(i, 1, s, b"q", 0).unwrap());
    }
    assert_eq!(ids.len(), 300);
    assert_eq!(u.insert(300, 1, s, b"q", 0), Err(Refused::Full));
    assert_eq!(u.len(), 300);
}

#[test]
fn upstream_queries_time_out_at_their_deadline() {
    let s = Ipv4Addr::new(10, 99, 0, 1);
    let mut u: Upstream<u32> = Upstream::new(8, 2000, 7);
    let a = u.insert(1, 1, s, b"q", 1000).unwrap();
    u.insert(2, 2, s, b"q", 1500).unwrap();
    assert_eq!(u.next_deadline(), Some(3000));
    assert!(u.expire(2999).is_empty());
    let late = u.expire(3000);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].client, 1);
    assert_eq!(u.take(a, s, 53), None, "a timed-out query takes no answer");
    assert_eq!(u.next_deadline(), Some(3500));
    u.forget(|c| *c == 2);
    assert!(u.is_empty());
    assert_eq!(u.next_deadline(), None);
}

#[test]
fn queries_upstream_get_their_id_and_an_edns_size_that_does_not_fragment() {
    let size = |m: &[u8]| Packet::parse(m).unwrap().opt().map(|o| o.udp_packet_size);
    // Plain UDP: unchanged but for the id.
    let q = query("example.com", TYPE::A, None);
    let up = for_upstream(&q, 0x4242, false);
    assert_eq!(&up[2..], &q[2..]);
    assert_eq!(message_id(&up), Some(0x4242));
    // A large EDNS size is brought down; a small one kept.
    let up = for_upstream(&query("example.com", TYPE::A, Some(4096)), 1, false);
    assert_eq!(size(&up), Some(EDNS_MAX));
    assert_eq!(
        Packet::parse(&up).unwrap().questions[0].qname.to_string(),
        "example.com"
    );
    let q = query("example.com", TYPE::A, Some(800));
    assert_eq!(&for_upstream(&q, 1, false)[2..], &q[2..]);
    // From TCP: EDNS added, so the upstream may answer up to 1232 bytes.
    let up = for_upstream(&query("example.com", TYPE::A, None), 9, true);
    assert_eq!(size(&up), Some(EDNS_MAX));
    assert_eq!(message_id(&up), Some(9));
    // Garbage goes as it is, with the id.
    assert_eq!(for_upstream(&[1; 14], 0x0102, false)[..2], [1, 2]);
}
