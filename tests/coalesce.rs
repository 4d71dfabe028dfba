//! UDP coalescing through the whole pipeline, in memory (no root): the
//! datagrams of one flow that one `poll_port` sends to a TAP that takes
//! UDP super-frames leave as one write; everything else leaves as it came,
//! and in the order it was decided. (`wire::coalesce` checks the
//! super-frames cut back into the same datagrams.)

mod common;

use common::mem::*;
use vswitchd::datapath::PortCounters;
use vswitchd::switch::DropReason;
use vswitchd::wire::coalesce::GSO_UDP_L4;
use vswitchd::wire::vnet::VNET_HDR_LEN;

#[test]
fn one_flows_datagrams_in_one_poll_are_one_write_to_a_tap_that_takes_them() {
    let mut r = rig();
    let frames: Vec<_> = (0..16u16)
        .map(|i| datagram(1, 500 + i, 4000, &[i as u8; 64]))
        .collect();
    for f in &frames {
        r.ports[0].push_rx(f);
    }
    assert_eq!(r.sw.poll_port(r.ids[0], 1, 16).unwrap(), 16);
    let tx = r.ports[1].take_tx();
    assert_eq!(tx.len(), 1, "one write");
    let h = gso(&tx[0]);
    assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_UDP_L4, 64, 42));
    assert_eq!(tx[0].len(), VNET_HDR_LEN + 42 + 16 * 64);
    for (i, f) in frames.iter().enumerate() {
        let at = VNET_HDR_LEN + 42 + i * 64;
        assert_eq!(tx[0][at..at + 64], f[VNET_HDR_LEN + 42..], "datagram {i}");
    }
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!(
        (c.tx_packets, c.tx_coalesced, c.tx_super_frames),
        (1 + 16, 16, 1)
    );
    assert_eq!(c.tx_bytes, 60 + 16 * (42 + 64));
    assert_eq!(c.drop_total(), 0);
}

#[test]
fn a_tap_without_udp_segmentation_gets_every_datagram_as_it_came() {
    let mut r = rig();
    let frames: Vec<_> = (0..16u16)
        .map(|i| datagram(2, 500 + i, 4000, &[i as u8; 64]))
        .collect();
    for f in &frames {
        r.ports[0].push_rx(f);
    }
    r.sw.poll_port(r.ids[0], 1, 16).unwrap();
    assert_eq!(r.ports[2].take_tx(), frames);
    let c = r.sw.port(r.ids[2]).unwrap().counters;
    assert_eq!(
        (c.tx_packets, c.tx_coalesced, c.tx_super_frames),
        (1 + 16, 0, 0)
    );
}

#[test]
fn frames_leave_in_the_order_they_were_decided() {
    let mut r = rig();
    // a a BROADCAST a | b(other flow) a | a to port 2 | a
    let a = |i: u16| datagram(1, 100 + i, 4000, &[1; 32]);
    let b = datagram(1, 900, 4001, &[2; 32]);
    let mut bcast = vec![0u8; VNET_HDR_LEN];
    bcast.extend_from_slice(&[0xff; 6]);
    bcast.extend_from_slice(&mac(0));
    bcast.extend_from_slice(&[0x88, 0xb5]);
    bcast.extend_from_slice(&[7; 46]);
    let to2 = datagram(2, 7, 4000, &[3; 32]);
    let input = [
        a(0),
        a(1),
        bcast.clone(),
        a(2),
        b.clone(),
        a(3),
        to2.clone(),
        a(4),
    ];
    for f in &input {
        r.ports[0].push_rx(f);
    }
    assert_eq!(r.sw.poll_port(r.ids[0], 1, 16).unwrap(), input.len());
    let tx = r.ports[1].take_tx();
    let shape: Vec<_> = tx
        .iter()
        .map(|w| match gso(w).gso_type {
            GSO_UDP_L4 => format!("run{}", (w.len() - VNET_HDR_LEN - 42) / 32),
            _ if w == &bcast => "bcast".into(),
            _ if w == &b => "b".into(),
            _ => "one".into(),
        })
        .collect();
    // a(2) cannot join a(3): b came between them, so each goes alone.
    assert_eq!(shape, ["run2", "bcast", "one", "b", "one", "one"]);
    assert_eq!(tx[2], a(2));
    assert_eq!(tx[4], a(3));
    assert_eq!(tx[5], a(4));
    assert_eq!(r.ports[2].take_tx(), vec![bcast, to2]);
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!(
        (c.tx_packets, c.tx_coalesced, c.tx_super_frames),
        (1 + 7, 2, 1)
    );
}

#[test]
fn nothing_waits_for_the_next_call() {
    let mut r = rig();
    // A lone datagram read by one poll is written by that poll.
    r.ports[0].push_rx(&datagram(1, 1, 4000, &[9; 10]));
    r.sw.poll_port(r.ids[0], 1, 16).unwrap();
    assert_eq!(r.ports[1].take_tx().len(), 1);
    // inject (tests, benches) too.
    r.sw.inject(r.ids[0], &datagram(1, 2, 4000, &[9; 10]), 2);
    assert_eq!(r.ports[1].take_tx().len(), 1);
}

#[test]
fn a_full_queue_drops_every_datagram_of_the_run_and_counts_each() {
    let mut r = rig();
    r.ports[1].0.borrow_mut().tx_full = true;
    for i in 0..8u16 {
        r.ports[0].push_rx(&datagram(1, 40 + i, 4000, &[1; 100]));
    }
    r.sw.poll_port(r.ids[0], 1, 16).unwrap();
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!(c.tx_packets, 1);
    assert_eq!(
        c.drops[vswitchd::switch::DropReason::TxQueueFull as usize],
        8
    );
}

#[test]
fn a_port_whose_kernel_refuses_a_super_frame_gets_datagrams_one_by_one() {
    let mut r = rig();
    r.ports[1].0.borrow_mut().refuse_gso = true;
    let burst = |r: &mut Rig, first: u16| {
        for i in 0..4u16 {
            r.ports[0].push_rx(&datagram(1, first + i, 4000, &[1; 50]));
        }
        r.sw.poll_port(r.ids[0], 1, 16).unwrap();
    };
    burst(&mut r, 10);
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!(
        c.drops[vswitchd::switch::DropReason::BadOffload as usize],
        4
    );
    assert!(!c.tx_failing, "the port is not down");
    assert!(r.ports[1].take_tx().is_empty());
    // From now on each datagram is written alone.
    burst(&mut r, 20);
    assert_eq!(r.ports[1].take_tx().len(), 4);
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!((c.tx_packets, c.tx_super_frames), (1 + 4, 0));
}

#[test]
fn turned_off_every_datagram_goes_alone() {
    let mut r = rig();
    r.sw.set_udp_coalesce(false);
    let frames: Vec<_> = (0..8u16)
        .map(|i| datagram(1, 70 + i, 4000, &[2; 64]))
        .collect();
    for f in &frames {
        r.ports[0].push_rx(f);
    }
    r.sw.poll_port(r.ids[0], 1, 16).unwrap();
    assert_eq!(r.ports[1].take_tx(), frames);
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!((c.tx_coalesced, c.tx_super_frames), (0, 0));
    // And on again.
    r.sw.set_udp_coalesce(true);
    for f in &frames {
        r.ports[0].push_rx(f);
    }
    r.sw.poll_port(r.ids[0], 1, 16).unwrap();
    assert_eq!(r.ports[1].take_tx().len(), 1);
}

/// Port 0's datagrams to the wan host, `n` of them from id `first`.
fn to_wan(sw_port: &vswitchd::port::mem::MemPort, first: u16, n: u16) -> Vec<Vec<u8>> {
    let gw = vswitchd::wire::MacAddr::stable_local("gw").to_bytes();
    let frames: Vec<_> = (0..n)
        .map(|i| datagram_to(gw, WAN_HOST, first + i, 4000, &[i as u8; 64]))
        .collect();
    for f in &frames {
        sw_port.push_rx(f);
    }
    frames
}

#[test]
fn one_flows_datagrams_to_the_wan_are_one_send_on_an_uplink_that_takes_them() {
    let (mut sw, p, id, up) = uplink_rig(true);
    let frames = to_wan(&p, 500, 16);
    assert_eq!(sw.poll_port(id, 1, 16).unwrap(), 16);
    let tx = up.take_tx();
    assert_eq!(tx.len(), 1, "one send");
    let h = gso(&tx[0]);
    assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_UDP_L4, 64, 42));
    let f = &tx[0][VNET_HDR_LEN..];
    assert_eq!(f[..6], WAN_HOST_MAC, "to the next hop");
    assert_eq!(f[26..30], [10, 99, 0, 2], "translated");
    for (i, d) in frames.iter().enumerate() {
        let at = 42 + i * 64;
        assert_eq!(f[at..at + 64], d[VNET_HDR_LEN + 42..], "datagram {i}");
    }
    let c = sw.uplink().unwrap().counters;
    assert_eq!(
        (c.tx_packets, c.tx_coalesced, c.tx_super_frames),
        (16, 16, 1)
    );
    assert_eq!(c.tx_bytes, 16 * (42 + 64));
    assert_eq!(c.drop_total(), 0);
}

#[test]
fn an_uplink_without_udp_segmentation_or_with_coalescing_off_gets_every_datagram_alone() {
    let (mut sw, p, id, up) = uplink_rig(false);
    to_wan(&p, 500, 8);
    sw.poll_port(id, 1, 16).unwrap();
    assert_eq!(up.take_tx().len(), 8);
    let (mut sw, p, id, up) = uplink_rig(true);
    sw.set_udp_coalesce(false);
    to_wan(&p, 500, 8);
    sw.poll_port(id, 1, 16).unwrap();
    assert_eq!(up.take_tx().len(), 8);
    let c = sw.uplink().unwrap().counters;
    assert_eq!((c.tx_packets, c.tx_super_frames), (8, 0));
}

#[test]
fn an_uplink_whose_kernel_refuses_a_super_frame_gets_datagrams_one_by_one() {
    let (mut sw, p, id, up) = uplink_rig(true);
    up.0.borrow_mut().refuse_gso = true;
    to_wan(&p, 10, 4);
    sw.poll_port(id, 1, 16).unwrap();
    let c = sw.uplink().unwrap().counters;
    assert_eq!(
        c.drops[vswitchd::switch::DropReason::BadOffload as usize],
        4
    );
    assert!(!c.tx_failing, "the uplink is not down");
    assert!(up.take_tx().is_empty());
    to_wan(&p, 20, 4);
    sw.poll_port(id, 1, 16).unwrap();
    assert_eq!(up.take_tx().len(), 4);
    let c = sw.uplink().unwrap().counters;
    assert_eq!((c.tx_packets, c.tx_super_frames), (4, 0));
}

/// An echo request from port 0's host to the wan host (it never joins a
/// run).
fn echo_to_wan(id: u16) -> Vec<u8> {
    use vswitchd::wire::{checksum, ipv4::fill_ip_checksum};
    let gw = vswitchd::wire::MacAddr::stable_local("gw").to_bytes();
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&gw);
    f.extend_from_slice(&mac(0));
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28]);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, 1, 0, 0, 192, 168, 88, 11]);
    f.extend_from_slice(&WAN_HOST);
    let mut icmp = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    fill_ip_checksum(&mut f[VNET_HDR_LEN + 14..], 20);
    f
}

#[test]
fn frames_to_the_wan_leave_in_the_order_they_were_decided() {
    let (mut sw, p, id, up) = uplink_rig(true);
    let gw = vswitchd::wire::MacAddr::stable_local("gw").to_bytes();
    let a = |n: u16, b: u8| datagram_to(gw, WAN_HOST, 100 + n, 4000, &[b; 64]);
    let b1 = datagram_to(gw, WAN_HOST, 200, 4001, &[3; 64]);
    // A1 A2 (a run), B1 (another flow ends it), A3 (ends B's), an echo
    // request (alone, ends A's), A4.
    for f in [a(0, 1), a(1, 2), b1, a(2, 4), echo_to_wan(7), a(3, 5)] {
        p.push_rx(&f);
    }
    assert_eq!(sw.poll_port(id, 1, 16).unwrap(), 6);
    let tx = up.take_tx();
    let payloads: Vec<Vec<u8>> = tx.iter().map(|f| f[VNET_HDR_LEN + 42..].to_vec()).collect();
    assert_eq!(tx.len(), 5, "{payloads:?}");
    assert_eq!(payloads[0], [[1u8; 64], [2; 64]].concat(), "A1 A2 in one");
    assert_eq!(gso(&tx[0]).gso_type, GSO_UDP_L4);
    assert_eq!(payloads[1], [3; 64], "then B1");
    assert_eq!(payloads[2], [4; 64], "then A3");
    assert_eq!(tx[3][VNET_HDR_LEN + 23], 1, "then the echo request");
    assert_eq!(payloads[4], [5; 64], "then A4");
    let c = sw.uplink().unwrap().counters;
    assert_eq!((c.tx_packets, c.tx_super_frames), (6, 1));
}

/// `n` datagrams to the wan while the uplink's sends fail with `errno`,
/// then 4 more once they succeed: the uplink's counters after the failure
/// and at the end, and what was sent after it.
fn fail_then_send(errno: i32, n: u16) -> (PortCounters, PortCounters, Vec<Vec<u8>>) {
    let (mut sw, p, id, up) = uplink_rig(true);
    up.0.borrow_mut().tx_errno = errno;
    to_wan(&p, 10, n);
    sw.poll_port(id, 1, 16).unwrap();
    let failed = sw.uplink().unwrap().counters;
    up.0.borrow_mut().tx_errno = 0;
    to_wan(&p, 20, 4);
    sw.poll_port(id, 1, 16).unwrap();
    (failed, sw.uplink().unwrap().counters, up.take_tx())
}

#[test]
fn a_run_that_fails_to_send_is_a_tx_error_for_each_datagram_and_runs_go_on() {
    let (c, end, tx) = fail_then_send(libc::EIO, 4);
    assert_eq!(c.drops[DropReason::TxError as usize], 4);
    assert_eq!(c.drops[DropReason::BadOffload as usize], 0);
    assert!(c.tx_failing, "the uplink's writes fail");
    assert_eq!(tx.len(), 1, "still one send per run");
    assert_eq!(gso(&tx[0]).gso_type, GSO_UDP_L4);
    assert_eq!((end.tx_packets, end.tx_super_frames), (4, 1));
    assert!(!end.tx_failing);
}

#[test]
fn a_lone_datagram_refused_with_einval_is_a_tx_error_not_a_refused_run() {
    let (c, _, tx) = fail_then_send(libc::EINVAL, 1);
    assert_eq!(c.drops[DropReason::TxError as usize], 1);
    assert_eq!(c.drops[DropReason::BadOffload as usize], 0);
    assert_eq!(tx.len(), 1, "runs are still sent whole");
}
