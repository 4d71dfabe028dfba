use super::*;

#[test]
fn a_udp_checksum_that_updates_to_zero_is_sent_as_ffff() {
    // Port 1 -> 0 with checksum 0xfffe: the update computes 0x0000,
    // which in UDP would mean "no checksum".
    let mut b = vec![0u8; 8];
    b[0..2].copy_from_slice(&1u16.to_be_bytes());
    b[6..8].copy_from_slice(&0xfffeu16.to_be_bytes());
    assert_eq!(checksum::update16(0xfffe, 1, 0), 0);
    set_port(&mut b, 0, 0, 6, PROTO_UDP);
    assert_eq!(get16(&b, 6), 0xffff);
    // TCP keeps the computed value.
    let mut t = b.clone();
    t[0..2].copy_from_slice(&1u16.to_be_bytes());
    t[6..8].copy_from_slice(&0xfffeu16.to_be_bytes());
    set_port(&mut t, 0, 0, 6, PROTO_TCP);
    assert_eq!(get16(&t, 6), 0);
}

#[test]
fn partial_seed_is_updated_even_when_it_ends_the_buffer() {
    // IPv4 + a bare UDP header: the checksum field is the last 2 bytes.
    let mut b = vec![0u8; 28];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&28u16.to_be_bytes());
    b[PROTO] = PROTO_UDP;
    b[SRC].copy_from_slice(&[192, 168, 88, 11]);
    b[DST].copy_from_slice(&[10, 99, 0, 1]);
    let seed = |b: &[u8]| {
        let s = checksum::pseudo_header_v4(
            b[12..16].try_into().unwrap(),
            b[16..20].try_into().unwrap(),
            PROTO_UDP,
            8,
        );
        !checksum::finish(s)
    };
    let s0 = seed(&b);
    b[26..28].copy_from_slice(&s0.to_be_bytes());
    set_addr_partial(&mut b, SRC.start, [10, 99, 0, 2], 20, PROTO_UDP);
    assert_eq!(&b[SRC], &[10, 99, 0, 2]);
    assert_eq!(get16(&b, 26), seed(&b), "the pseudo-header seed follows");
}

#[test]
fn parse_takes_trailing_padding_and_refuses_truncation() {
    let mut b = vec![0u8; 60];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&28u16.to_be_bytes());
    // Ethernet padding after the packet: fine, total_len says where it ends.
    let h = Ipv4Hdr::parse(&b).expect("padded packet parses");
    assert_eq!(h.total_len, 28);
    // A buffer shorter than total_len is refused.
    assert!(Ipv4Hdr::parse(&b[..27]).is_none());
    assert!(Ipv4Hdr::parse(&b[..28]).is_some());
    // total_len shorter than the header, or a header under 20 bytes.
    b[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert!(Ipv4Hdr::parse(&b).is_none());
    b[2..4].copy_from_slice(&28u16.to_be_bytes());
    b[0] = 0x44;
    assert!(Ipv4Hdr::parse(&b).is_none());
}

#[test]
fn options_are_walked_and_source_routes_found() {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    assert_eq!(options(&h, 20), Options::Plain);
    // NOP, NOP, record route (7) of 4 bytes, end.
    h.extend_from_slice(&[1, 1, 7, 4, 0, 0, 0, 0]);
    assert_eq!(options(&h, 28), Options::Plain);
    // An option of the shortest length (2 bytes: kind and length).
    let mut two = h[..20].to_vec();
    two.extend_from_slice(&[25, 2, 1, 0]);
    assert_eq!(options(&two, 24), Options::Plain);
    // LSRR and SSRR.
    for kind in [0x83u8, 0x89] {
        let mut l = h[..20].to_vec();
        l.extend_from_slice(&[kind, 7, 4, 10, 0, 0, 1, 0]);
        assert_eq!(options(&l, 28), Options::SourceRoute);
    }
    // A length past the header, or under 2.
    let mut bad = h[..20].to_vec();
    bad.extend_from_slice(&[7, 12, 0, 0]);
    assert_eq!(options(&bad, 24), Options::Malformed);
    bad[21] = 1;
    assert_eq!(options(&bad, 24), Options::Malformed);
    bad[20] = 7;
    bad[21] = 2;
    bad[22] = 7;
    bad[23] = 0;
    assert_eq!(options(&bad, 24), Options::Malformed);
}

#[test]
fn martians() {
    use std::net::Ipv4Addr;
    for m in ["0.1.2.3", "127.0.0.1", "240.0.0.1", "255.255.255.255"] {
        assert!(is_martian(m.parse::<Ipv4Addr>().unwrap()), "{m}");
    }
    for ok in ["10.0.0.1", "192.168.88.11", "224.0.0.1", "8.8.8.8"] {
        assert!(!is_martian(ok.parse::<Ipv4Addr>().unwrap()), "{ok}");
    }
}

#[test]
fn fragments_reassemble_to_the_original() {
    let payload: Vec<u8> = (0..3980u32).map(|i| (i * 13) as u8).collect();
    let mut f = vec![0u8; 14 + 20];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[14 + 2..14 + 4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    f[14 + 4..14 + 6].copy_from_slice(&777u16.to_be_bytes());
    f[14 + 8] = 63;
    f[14 + 9] = PROTO_UDP;
    f.extend_from_slice(&payload);
    fill_ip_checksum(&mut f[14..], 20);
    let mut got = vec![0u8; payload.len()];
    let mut n = 0;
    let mut seen_last = false;
    assert!(fragment_frame(&f, 1500, |frag| {
        let h = Ipv4Hdr::parse(&frag[14..]).unwrap();
        assert!(h.total_len <= 1500);
        assert!(ip_checksum_ok(&frag[14..], 20));
        assert_eq!(h.id, 777);
        assert_eq!(h.ttl, 63);
        let data = &frag[14 + 20..14 + h.total_len];
        got[h.frag_offset..h.frag_offset + data.len()].copy_from_slice(data);
        seen_last |= !h.more_frags;
        n += 1;
    }));
    assert_eq!(n, 3);
    assert!(seen_last);
    assert_eq!(got, payload);
    // DF: refused.
    f[14 + 6] = 0x40;
    fill_ip_checksum(&mut f[14..], 20);
    assert!(!fragment_frame(&f, 1500, |_| panic!("emitted")));
}

/// A UDP packet 192.168.88.11:40000 -> 10.99.0.1:53, 5 bytes "hello".
fn udp_packet() -> Vec<u8> {
    let mut b = vec![0u8; 33];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&33u16.to_be_bytes());
    b[8] = 64;
    b[9] = PROTO_UDP;
    b[12..16].copy_from_slice(&[192, 168, 88, 11]);
    b[16..20].copy_from_slice(&[10, 99, 0, 1]);
    b[20..22].copy_from_slice(&40000u16.to_be_bytes());
    b[22..24].copy_from_slice(&53u16.to_be_bytes());
    b[24..26].copy_from_slice(&13u16.to_be_bytes());
    b[28..33].copy_from_slice(b"hello");
    fill_ip_checksum(&mut b, 20);
    b
}

/// The L4 checksum against a sum written out by hand (pseudo-header +
/// UDP header + data), and zero once written in.
#[test]
fn l4_checksum_of_a_known_packet() {
    let mut b = udp_packet();
    let h = Ipv4Hdr::parse(&b).unwrap();
    let words: u32 = 0xc0a8 + 0x580b + 0x0a63 + 0x0001 + 17 + 13 // pseudo-header
        + 40000 + 53 + 13 // ports, length (checksum 0)
        + 0x6865 + 0x6c6c + 0x6f00; // "hello", padded
    let want = crate::wire::checksum::finish(words);
    assert_eq!(l4_checksum(&b, &h), want);
    assert_ne!(want, 0);
    b[26..28].copy_from_slice(&want.to_be_bytes());
    assert_eq!(l4_checksum(&b, &h), 0);
}

/// Rewriting a port keeps the checksum right; a checksum field past the
/// end of a truncated buffer is left alone (no read past the end).
#[test]
fn set_port_updates_or_skips_the_checksum() {
    let mut b = udp_packet();
    let h = Ipv4Hdr::parse(&b).unwrap();
    let c = l4_checksum(&b, &h);
    b[26..28].copy_from_slice(&c.to_be_bytes());
    set_port(&mut b, 20, 1234, 26, PROTO_UDP);
    assert_eq!(get16(&b, 20), 1234);
    assert_eq!(l4_checksum(&b, &h), 0);
    // UDP checksum 0 (unused) stays 0.
    b[26..28].copy_from_slice(&[0, 0]);
    set_port(&mut b, 20, 999, 26, PROTO_UDP);
    assert_eq!(get16(&b, 26), 0);
    // Only the ports are there: the field at 26 is past the end.
    let mut short = b[..24].to_vec();
    set_port(&mut short, 20, 4321, 26, PROTO_UDP);
    assert_eq!(get16(&short, 20), 4321);
    let mut edge = b[..27].to_vec();
    set_port(&mut edge, 20, 4322, 26, PROTO_UDP);
    assert_eq!(get16(&edge, 20), 4322);
}

#[test]
fn partial_address_rewrite_leaves_icmp_and_short_packets_alone() {
    // ICMP has no pseudo-header: only the address and the IP checksum
    // change.
    let mut b = vec![0u8; 28];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&28u16.to_be_bytes());
    b[9] = PROTO_ICMP;
    b[12..16].copy_from_slice(&[10, 0, 0, 1]);
    b[22..24].copy_from_slice(&[0x12, 0x34]);
    fill_ip_checksum(&mut b, 20);
    set_addr_partial(&mut b, 12, [10, 0, 0, 9], 20, PROTO_ICMP);
    assert_eq!(&b[12..16], &[10, 0, 0, 9]);
    assert_eq!(&b[22..24], &[0x12, 0x34]);
    assert!(ip_checksum_ok(&b, 20));
    // A TCP packet cut inside its checksum field (at 36..38): no
    // panic, address set, nothing else touched.
    let mut t = vec![0u8; 20 + 17];
    t[0] = 0x45;
    t[9] = PROTO_TCP;
    set_addr_partial(&mut t, 12, [10, 0, 0, 9], 20, PROTO_TCP);
    assert_eq!(&t[12..16], &[10, 0, 0, 9]);
    assert_eq!(&t[20..], &[0; 17]);
}

#[test]
fn a_udp_checksum_that_an_address_change_makes_zero_is_sent_as_ffff() {
    let (old, new) = ([10, 0, 0, 1], [10, 0, 0, 9]);
    // The field value that the incremental update turns into 0.
    let seed = (1..=0xffffu16)
        .find(|&c| checksum::update32(c, old, new) == 0)
        .expect("some checksum updates to zero");
    let mut b = vec![0u8; 28];
    b[0] = 0x45;
    b[9] = PROTO_UDP;
    b[12..16].copy_from_slice(&old);
    b[26..28].copy_from_slice(&seed.to_be_bytes());
    set_addr(&mut b, 12, new, Some((20, PROTO_UDP)));
    assert_eq!(get16(&b, 26), 0xffff, "0 would mean no checksum");
    // TCP has no such rule: 0 stays 0.
    b[9] = PROTO_TCP;
    b[12..16].copy_from_slice(&old);
    let mut t = vec![0u8; 40];
    t[..20].copy_from_slice(&b[..20]);
    t[36..38].copy_from_slice(&seed.to_be_bytes());
    set_addr(&mut t, 12, new, Some((20, PROTO_TCP)));
    assert_eq!(get16(&t, 36), 0);
}

#[test]
fn a_bare_header_parses_and_an_option_may_fill_the_option_area() {
    // Total length = header length: no payload, still a packet.
    let mut b = vec![0u8; 24];
    b[0] = 0x46;
    b[2..4].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(
        Ipv4Hdr::parse(&b).map(|h| (h.ihl, h.total_len)),
        Some((24, 24))
    );
    // The shortest packet there is: a 20-byte header, nothing else.
    let mut h20 = [0u8; 20];
    h20[0] = 0x45;
    h20[2..4].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(Ipv4Hdr::parse(&h20).map(|h| h.total_len), Some(20));
    // Router alert (kind 0x94, length 4) exactly fills the 4 option bytes.
    b[20..24].copy_from_slice(&[0x94, 4, 0, 0]);
    assert_eq!(options(&b, 24), Options::Plain);
    // One byte longer than the area: malformed.
    b[21] = 5;
    assert_eq!(options(&b, 24), Options::Malformed);
}

#[test]
fn set_addr_on_a_packet_cut_inside_its_checksum_and_no_fragmenting_with_df() {
    // TCP cut inside its checksum field (36..38): address set, the rest
    // untouched, no panic.
    let mut t = vec![0u8; 20 + 17];
    t[0] = 0x45;
    t[9] = PROTO_TCP;
    set_addr(&mut t, 12, [10, 0, 0, 9], Some((20, PROTO_TCP)));
    assert_eq!(&t[12..16], &[10, 0, 0, 9]);
    assert_eq!(&t[20..], &[0; 17]);
    // DF set: never fragmented, whatever the MTU.
    let mut f = vec![0u8; 14 + 20 + 1000];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&1020u16.to_be_bytes());
    f[20] = 0x40; // DF
    f[23] = PROTO_UDP;
    fill_ip_checksum(&mut f[14..], 20);
    let mut n = 0;
    assert!(!fragment_frame(&f, 576, |_| n += 1));
    assert_eq!(n, 0);
    // Options (IHL 6), no DF: not fragmented here either (per-fragment
    // option copying is not done).
    let mut o = vec![0u8; 14 + 24 + 1000];
    o[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    o[14] = 0x46;
    o[16..18].copy_from_slice(&1024u16.to_be_bytes());
    o[23] = PROTO_UDP;
    o[34..38].copy_from_slice(&[1, 1, 1, 0]); // NOPs, end
    fill_ip_checksum(&mut o[14..], 24);
    assert!(!fragment_frame(&o, 576, |_| n += 1));
    assert_eq!(n, 0);
}
