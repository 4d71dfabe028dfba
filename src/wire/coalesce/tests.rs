use super::*;
use crate::wire::ipv4::{self, Ipv4Hdr};
use proptest::prelude::*;

const UDP_LEN: usize = ETH + 20 + 4;
const UDP_CSUM: usize = ETH + 20 + 6;
const SRC: [u8; 4] = [192, 168, 88, 11];
const DST: [u8; 4] = [192, 168, 88, 12];

/// A UDP datagram as a namespace's stack hands it to a TAP with offloads:
/// virtio-net header asking for the UDP checksum, IP checksum done.
fn datagram(id: u16, payload: &[u8], partial: bool) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0x12, 2, 0, 0, 0, 0, 0x11, 0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0x10]);
    f.extend_from_slice(&(20 + udp_len).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&DST);
    f.extend_from_slice(&5555u16.to_be_bytes());
    f.extend_from_slice(&9000u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let fr = &mut f[VNET_HDR_LEN..];
    ipv4::fill_ip_checksum(&mut fr[ETH..], 20);
    let pseudo = checksum::pseudo_header_v4(SRC, DST, 17, udp_len);
    if partial {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        }
        .write(&mut f);
        let fr = &mut f[VNET_HDR_LEN..];
        fr[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&(!checksum::finish(pseudo)).to_be_bytes());
    } else {
        let mut c = checksum::finish(checksum::sum(&f[VNET_HDR_LEN + ETH + 20..], pseudo));
        // A sum of 0 is sent as 0xffff (0 means "no checksum").
        if c == 0 {
            c = 0xffff;
        }
        f[VNET_HDR_LEN + UDP_CSUM..VNET_HDR_LEN + UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
    f
}

const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];

/// The same over IPv6 (fixed header only; the flow label is 0x12345).
fn datagram6(payload: &[u8], partial: bool) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0x12, 2, 0, 0, 0, 0, 0x11, 0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&SRC6);
    f.extend_from_slice(&DST6);
    f.extend_from_slice(&5555u16.to_be_bytes());
    f.extend_from_slice(&9000u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let pseudo = checksum::pseudo_header_v6(
        &f[VNET_HDR_LEN + ETH + 8..VNET_HDR_LEN + ETH + 40],
        17,
        udp_len as u32,
    );
    let at = VNET_HDR_LEN + HDRS6 - 2;
    if partial {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 54,
            csum_offset: 6,
            ..VnetHdr::default()
        }
        .write(&mut f);
        f[at..at + 2].copy_from_slice(&(!checksum::finish(pseudo)).to_be_bytes());
    } else {
        let mut c = checksum::finish(checksum::sum(&f[VNET_HDR_LEN + ETH + 40..], pseudo));
        if c == 0 {
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    f
}

fn hdr(whole: &[u8]) -> VnetHdr {
    VnetHdr::parse(whole).unwrap()
}

/// The frame as the receiver sees it: checksum finished, no header.
fn finished(whole: &[u8]) -> Vec<u8> {
    let h = hdr(whole);
    let mut f = whole[VNET_HDR_LEN..].to_vec();
    if h.flags & F_NEEDS_CSUM != 0 {
        crate::wire::vnet::finish_checksum(&mut f, h.csum_start as usize, 6).unwrap();
    }
    f
}

/// What Linux does with the super-frame for a socket without UDP_GRO
/// (`__udp_gso_segment` after `inet_gso_segment`): headers copied, IP total
/// length, id (+1 per datagram) and checksum, UDP length and checksum set
/// for each `gso_size` piece.
fn kernel_segments(whole: &[u8]) -> Vec<Vec<u8>> {
    let h = hdr(whole);
    if h.gso_type != GSO_UDP_L4 {
        return vec![finished(whole)];
    }
    if whole[VNET_HDR_LEN + 12] == 0x86 {
        return kernel_segments6(whole);
    }
    assert_eq!(h.flags, F_NEEDS_CSUM);
    assert_eq!((h.hdr_len, h.csum_start, h.csum_offset), (42, 34, 6));
    let f = &whole[VNET_HDR_LEN..];
    let first_id = get16(f, IP_ID);
    // The super-frame's own headers must be valid: IP checks them first.
    assert!(ipv4::ip_checksum_ok(&f[ETH..], 20));
    assert_eq!(get16(f, IP_TOTAL) as usize, f.len() - ETH);
    assert_eq!(get16(f, UDP_LEN) as usize, f.len() - ETH - 20);
    let pseudo = checksum::pseudo_header_v4(SRC, DST, 17, get16(f, UDP_LEN));
    assert_eq!(get16(f, UDP_CSUM), !checksum::finish(pseudo));
    f[HDRS..]
        .chunks(h.gso_size as usize)
        .enumerate()
        .map(|(i, p)| {
            let mut s = f[..HDRS].to_vec();
            s.extend_from_slice(p);
            let ip_total = (s.len() - ETH) as u16;
            s[IP_TOTAL..IP_TOTAL + 2].copy_from_slice(&ip_total.to_be_bytes());
            s[IP_ID..IP_ID + 2].copy_from_slice(&first_id.wrapping_add(i as u16).to_be_bytes());
            ipv4::fill_ip_checksum(&mut s[ETH..], 20);
            s[UDP_LEN..UDP_LEN + 2].copy_from_slice(&(ip_total - 20).to_be_bytes());
            s[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&[0, 0]);
            let h = Ipv4Hdr::parse(&s[ETH..]).unwrap();
            let mut c = ipv4::l4_checksum(&s[ETH..], &h);
            if c == 0 {
                c = 0xffff;
            }
            s[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            s
        })
        .collect()
}

/// `__udp_gso_segment` over IPv6: payload length, UDP length and checksum
/// per piece.
fn kernel_segments6(whole: &[u8]) -> Vec<Vec<u8>> {
    let h = hdr(whole);
    assert_eq!(h.flags, F_NEEDS_CSUM);
    assert_eq!((h.hdr_len, h.csum_start, h.csum_offset), (62, 54, 6));
    let f = &whole[VNET_HDR_LEN..];
    let udp_len = get16(f, HDRS6 - 4);
    assert_eq!(get16(f, IP6_PAYLOAD), udp_len);
    assert_eq!(udp_len as usize, f.len() - ETH - 40);
    let pseudo = checksum::pseudo_header_v6(&f[ETH + 8..ETH + 40], 17, udp_len as u32);
    assert_eq!(get16(f, HDRS6 - 2), !checksum::finish(pseudo));
    f[HDRS6..]
        .chunks(h.gso_size as usize)
        .map(|p| {
            let mut s = f[..HDRS6].to_vec();
            s.extend_from_slice(p);
            let len = (8 + p.len()) as u16;
            s[IP6_PAYLOAD..IP6_PAYLOAD + 2].copy_from_slice(&len.to_be_bytes());
            s[HDRS6 - 4..HDRS6 - 2].copy_from_slice(&len.to_be_bytes());
            s[HDRS6 - 2..HDRS6].copy_from_slice(&[0, 0]);
            let ps = checksum::pseudo_header_v6(&s[ETH + 8..ETH + 40], 17, len as u32);
            let mut c = checksum::finish(checksum::sum(&s[ETH + 40..], ps));
            if c == 0 {
                c = 0xffff;
            }
            s[HDRS6 - 2..HDRS6].copy_from_slice(&c.to_be_bytes());
            s
        })
        .collect()
}

/// Pushes frames through a run the way the datapath does (send the run on
/// `Ends`/`Alone`, the frame alone on `Alone`), and returns what was written.
fn run_all(frames: &[Vec<u8>]) -> Vec<(Vec<u8>, u16)> {
    let mut run = UdpRun::new();
    let mut out = Vec::new();
    let flush = |run: &mut UdpRun, out: &mut Vec<(Vec<u8>, u16)>| {
        if let Some((w, n, _)) = run.take() {
            out.push((w.to_vec(), n));
        }
    };
    for f in frames {
        match run.push(&hdr(f), f) {
            Push::Added => {}
            Push::Ends => {
                flush(&mut run, &mut out);
                assert_eq!(run.push(&hdr(f), f), Push::Added);
            }
            Push::Alone => {
                flush(&mut run, &mut out);
                out.push((f.clone(), 1));
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

fn received(writes: &[(Vec<u8>, u16)]) -> Vec<Vec<u8>> {
    writes
        .iter()
        .flat_map(|(w, _)| kernel_segments(w))
        .collect()
}

#[test]
fn a_run_of_equal_datagrams_is_one_super_frame_that_cuts_back_into_them() {
    let frames: Vec<_> = (0..16u16)
        .map(|i| datagram(100 + i, &[i as u8; 64], true))
        .collect();
    let writes = run_all(&frames);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].1, 16);
    let want: Vec<_> = frames.iter().map(|f| finished(f)).collect();
    assert_eq!(received(&writes), want);
}

#[test]
fn a_run_of_one_is_written_exactly_as_it_came() {
    let f = datagram(7, b"hello", true);
    let writes = run_all(std::slice::from_ref(&f));
    assert_eq!(writes, vec![(f, 1)]);
}

#[test]
fn a_shorter_datagram_ends_the_run_and_a_longer_one_starts_the_next() {
    let frames = vec![
        datagram(1, &[1; 100], false),
        datagram(2, &[2; 100], false),
        datagram(3, &[3; 40], false),
        datagram(4, &[4; 100], false),
        datagram(5, &[5; 200], false),
    ];
    let writes = run_all(&frames);
    let counts: Vec<_> = writes.iter().map(|w| w.1).collect();
    assert_eq!(counts, vec![3, 1, 1]);
    let want: Vec<_> = frames.iter().map(|f| finished(f)).collect();
    assert_eq!(received(&writes), want);
}

#[test]
fn what_segmentation_would_change_is_never_merged() {
    let base = datagram(10, &[0; 64], true);
    let with = |at: usize, v: u8| {
        let mut f = datagram(11, &[0; 64], true);
        f[VNET_HDR_LEN + at] = v;
        ipv4::fill_ip_checksum(&mut f[VNET_HDR_LEN + ETH..], 20);
        f
    };
    let cases = [
        ("another destination MAC", with(5, 0x13)),
        ("another source MAC", with(11, 0x10)),
        ("another TOS", with(ETH + 1, 0)),
        ("DF cleared", with(ETH + 6, 0)),
        ("another TTL", with(ETH + 8, 63)),
        ("another source address", with(ETH + 15, 99)),
        ("another destination address", with(ETH + 19, 99)),
        ("another source port", with(ETH + 21, 1)),
        ("another destination port", with(ETH + 23, 1)),
        (
            "an identifier out of sequence",
            datagram(12, &[0; 64], true),
        ),
        ("the same identifier", datagram(10, &[0; 64], true)),
    ];
    for (what, f) in cases {
        let writes = run_all(&[base.clone(), f.clone()]);
        assert_eq!(writes.len(), 2, "{what} was merged");
        assert_eq!(
            received(&writes),
            vec![finished(&base), finished(&f)],
            "{what}"
        );
    }
}

#[test]
fn frames_that_are_not_plain_udp_over_ipv4_go_alone() {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut frag = datagram(1, &[0; 64], false);
    frag[VNET_HDR_LEN + ETH + 6] |= 0x20; // MF
    ipv4::fill_ip_checksum(&mut frag[VNET_HDR_LEN + ETH..], 20);
    cases.push(("a fragment", frag));
    let mut tcp = datagram(1, &[0; 64], false);
    tcp[VNET_HDR_LEN + ETH + 9] = 6;
    ipv4::fill_ip_checksum(&mut tcp[VNET_HDR_LEN + ETH..], 20);
    cases.push(("TCP", tcp));
    let mut bad_ip = datagram(1, &[0; 64], false);
    bad_ip[VNET_HDR_LEN + IP_CSUM] ^= 1;
    cases.push(("a bad IP checksum", bad_ip));
    let mut bad_udp = datagram(1, &[0; 64], false);
    bad_udp[VNET_HDR_LEN + HDRS] ^= 1;
    cases.push(("a bad UDP checksum", bad_udp));
    let mut padded = datagram(1, &[0; 4], false);
    padded.extend_from_slice(&[0; 14]);
    cases.push(("Ethernet padding", padded));
    let mut gso = datagram(1, &[0; 64], true);
    VnetHdr {
        gso_type: GSO_UDP_L4,
        gso_size: 32,
        ..hdr(&gso)
    }
    .write(&mut gso);
    cases.push(("already a super-frame", gso));
    let mut other_csum = datagram(1, &[0; 64], true);
    VnetHdr {
        csum_offset: 16,
        ..hdr(&other_csum)
    }
    .write(&mut other_csum);
    cases.push(("a checksum elsewhere", other_csum));
    let mut opts = datagram(1, &[0; 64], false);
    opts[VNET_HDR_LEN + ETH] = 0x46;
    cases.push(("IP options", opts));
    cases.push((
        "a runt",
        datagram(1, &[0; 64], false)[..VNET_HDR_LEN + 40].to_vec(),
    ));
    let mut empty = datagram(1, &[], false);
    empty.truncate(VNET_HDR_LEN + HDRS);
    cases.push(("an empty datagram", empty));
    for (what, f) in cases {
        let mut run = UdpRun::new();
        assert_eq!(run.push(&hdr(&f), &f), Push::Alone, "{what}");
        assert!(run.is_empty(), "{what}");
    }
}

#[test]
fn no_udp_checksum_and_a_checked_one_may_join() {
    let mut none = datagram(2, &[1; 64], false);
    none[VNET_HDR_LEN + UDP_CSUM..VNET_HDR_LEN + UDP_CSUM + 2].copy_from_slice(&[0, 0]);
    let mut valid = datagram(3, &[2; 64], false);
    VnetHdr {
        flags: F_DATA_VALID,
        ..VnetHdr::default()
    }
    .write(&mut valid);
    let frames = vec![datagram(1, &[0; 64], true), none, valid];
    let writes = run_all(&frames);
    assert_eq!(writes.len(), 1);
    let got = received(&writes);
    assert_eq!(got[0], finished(&frames[0]));
    // The datagram sent without a checksum arrives with one: same data.
    assert_eq!(got[1][HDRS..], frames[1][VNET_HDR_LEN + HDRS..]);
    assert_eq!(got[2], finished(&frames[2]));
}

/// A header's word is never taken for the checksum: a datagram whose
/// checksum is wrong goes alone, so the receiving kernel drops it.
#[test]
fn a_wrong_checksum_is_never_laundered() {
    let mut valid_flag = datagram(1, &[5; 64], false);
    valid_flag[VNET_HDR_LEN + HDRS] ^= 0x40;
    VnetHdr {
        flags: F_DATA_VALID,
        ..VnetHdr::default()
    }
    .write(&mut valid_flag);
    let mut bad_seed = datagram(1, &[5; 64], true);
    bad_seed[VNET_HDR_LEN + UDP_CSUM] ^= 1;
    let mut zero_size_gso = datagram(1, &[5; 64], true);
    zero_size_gso[1] = 1; // gso_type TCPV4, gso_size 0
    for (what, f) in [
        ("DATA_VALID over a bad checksum", valid_flag),
        ("a wrong pseudo-header sum", bad_seed),
        ("a GSO type with size 0", zero_size_gso),
    ] {
        let mut run = UdpRun::new();
        assert_eq!(run.push(&hdr(&f), &f), Push::Alone, "{what}");
    }
}

#[test]
fn runs_stop_at_the_segment_and_size_bounds() {
    let frames: Vec<_> = (0..(MAX_SEGS + 3))
        .map(|i| datagram(i, &[0; 8], true))
        .collect();
    let counts: Vec<_> = run_all(&frames).iter().map(|w| w.1).collect();
    assert_eq!(counts, vec![MAX_SEGS, 3]);
    // 1472-byte datagrams: 44 fill 64 KB (20 + 8 + 44 * 1472 = 64796).
    let big: Vec<_> = (0..50u16).map(|i| datagram(i, &[7; 1472], true)).collect();
    let writes = run_all(&big);
    assert_eq!(writes.iter().map(|w| w.1).collect::<Vec<_>>(), vec![44, 6]);
    let want: Vec<_> = big.iter().map(|f| finished(f)).collect();
    assert_eq!(received(&writes), want);
}

#[test]
fn the_identifier_may_wrap() {
    let frames = vec![
        datagram(0xffff, &[1; 30], true),
        datagram(0, &[2; 30], true),
    ];
    let writes = run_all(&frames);
    assert_eq!(writes.len(), 1);
    let want: Vec<_> = frames.iter().map(|f| finished(f)).collect();
    assert_eq!(received(&writes), want);
}

proptest! {
    /// Whatever the sequence, the receiver gets back exactly the frames
    /// that went in, in order, and no run breaks the rules.
    #[test]
    fn the_receiver_always_gets_the_same_datagrams(
        spec in proptest::collection::vec((0u16..4, 1usize..200, any::<bool>(), any::<u8>()), 1..80)
    ) {
        let mut id = 0u16;
        let frames: Vec<_> = spec
            .iter()
            .map(|&(gap, len, partial, fill)| {
                id = id.wrapping_add(gap);
                datagram(id, &vec![fill; len], partial)
            })
            .collect();
        let writes = run_all(&frames);
        let want: Vec<_> = frames.iter().map(|f| finished(f)).collect();
        prop_assert_eq!(received(&writes), want);
        prop_assert_eq!(writes.iter().map(|w| w.1 as usize).sum::<usize>(), frames.len());
    }
}

#[test]
fn ipv6_runs_cut_back_into_the_same_datagrams_and_never_mix_with_ipv4() {
    let mut frames: Vec<_> = (0..10u8)
        .map(|i| datagram6(&[i; 100], i % 2 == 0))
        .collect();
    frames.push(datagram6(&[9; 30], true));
    frames.push(datagram(1, &[1; 100], true));
    frames.push(datagram(2, &[2; 100], true));
    frames.push(datagram6(&[3; 100], true));
    let writes = run_all(&frames);
    assert_eq!(
        writes.iter().map(|w| w.1).collect::<Vec<_>>(),
        vec![11, 2, 1]
    );
    let want: Vec<_> = frames.iter().map(|f| finished(f)).collect();
    assert_eq!(received(&writes), want);
}

#[test]
fn ipv6_refuses_what_segmentation_would_change() {
    let base = datagram6(&[0; 64], true);
    let with = |at: usize, v: u8| {
        let mut f = datagram6(&[0; 64], true);
        f[VNET_HDR_LEN + at] = v;
        f
    };
    for (what, f) in [
        ("another traffic class", with(ETH, 0x61)),
        ("another flow label", with(ETH + 3, 0x46)),
        ("another hop limit", with(ETH + 7, 63)),
    ] {
        let writes = run_all(&[base.clone(), f.clone()]);
        assert_eq!(writes.len(), 2, "{what} was merged");
    }
    let mut ext = datagram6(&[0; 64], false);
    ext[VNET_HDR_LEN + ETH + 6] = 0; // a hop-by-hop header first
    let mut zero = datagram6(&[0; 64], false);
    let at = VNET_HDR_LEN + HDRS6 - 2;
    zero[at..at + 2].copy_from_slice(&[0, 0]);
    let mut bad = datagram6(&[0; 64], false);
    bad[VNET_HDR_LEN + HDRS6] ^= 1;
    for (what, f) in [
        ("an extension header", ext),
        ("no checksum over IPv6", zero),
        ("a bad checksum", bad),
    ] {
        let mut run = UdpRun::new();
        assert_eq!(run.push(&hdr(&f), &f), Push::Alone, "{what}");
    }
}

proptest! {
    #[test]
    fn mixed_families_always_arrive_as_sent(
        spec in proptest::collection::vec((any::<bool>(), 1usize..300, any::<bool>(), any::<u8>()), 1..60)
    ) {
        let mut id = 0u16;
        let frames: Vec<_> = spec
            .iter()
            .map(|&(v6, len, partial, fill)| {
                id = id.wrapping_add(1);
                if v6 { datagram6(&vec![fill; len], partial) } else { datagram(id, &vec![fill; len], partial) }
            })
            .collect();
        let writes = run_all(&frames);
        let want: Vec<_> = frames.iter().map(|f| finished(f)).collect();
        prop_assert_eq!(received(&writes), want);
    }
}
