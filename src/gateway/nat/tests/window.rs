//! TCP window tracking: an RST or FIN changes a flow only inside its
//! window; outside it is dropped and the flow is left as it was.

use super::*;

/// A TCP segment with sequence numbers, window, `opts` (padded with
/// end-of-options to 4 bytes) and `payload` bytes.
#[allow(clippy::too_many_arguments)]
fn seg(
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &[u8],
    payload: usize,
) -> Vec<u8> {
    let olen = opts.len().div_ceil(4) * 4;
    let mut l4 = vec![0u8; 20 + olen];
    l4[0..2].copy_from_slice(&ports.0.to_be_bytes());
    l4[2..4].copy_from_slice(&ports.1.to_be_bytes());
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[8..12].copy_from_slice(&ack.to_be_bytes());
    l4[12] = (((20 + olen) / 4) << 4) as u8;
    l4[13] = flags;
    l4[14..16].copy_from_slice(&win.to_be_bytes());
    l4[20..20 + opts.len()].copy_from_slice(opts);
    l4.resize(20 + olen + payload, 0x61);
    ip(PROTO_TCP, src, dst, &l4)
}

/// MSS 1460, SACK permitted, then a window scale option when `ws`.
fn syn_opts(ws: Option<u8>) -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2];
    if let Some(s) = ws {
        o.extend_from_slice(&[1, 3, 3, s]);
    }
    o
}

/// One connection A:port -> R:80 through the NAT: its external port and
/// each end's next sequence number (0 the inside host, 1 the remote).
struct Conn {
    port: u16,
    ext: u16,
    next: [u32; 2],
    /// The windows each end advertises after its SYN (raw field).
    win: [u16; 2],
}

impl Conn {
    /// A segment from the inside host with its own sequence number.
    fn out_seg(&self, flags: u8, seq: u32, len: usize) -> Vec<u8> {
        seg(
            A,
            R,
            (self.port, 80),
            flags,
            seq,
            self.next[1],
            self.win[0],
            &[],
            len,
        )
    }
    /// A segment from the remote end with sequence number `seq`.
    fn in_seg(&self, flags: u8, seq: u32, len: usize) -> Vec<u8> {
        seg(
            R,
            EXT,
            (80, self.ext),
            flags,
            seq,
            self.next[0],
            self.win[1],
            &[],
            len,
        )
    }
    /// The inside host sends `len` bytes (and `flags`) at its next sequence
    /// number; on success the number moves on.
    fn out(&mut self, n: &mut Nat, flags: u8, len: usize, now: Millis) -> Result<(), NatDrop> {
        n.outbound(&mut self.out_seg(flags, self.next[0], len), now)?;
        self.next[0] = self.next[0].wrapping_add(len as u32 + (flags & TCP_FIN != 0) as u32);
        Ok(())
    }
    fn inb(&mut self, n: &mut Nat, flags: u8, len: usize, now: Millis) -> Result<(), NatDrop> {
        n.inbound(&mut self.in_seg(flags, self.next[1], len), now)?;
        self.next[1] = self.next[1].wrapping_add(len as u32 + (flags & TCP_FIN != 0) as u32);
        Ok(())
    }
    fn state(&self, n: &Nat, now: Millis) -> FlowView {
        n.flows(now)
            .into_iter()
            .find(|f| inside(f).ends_with(&format!(":{}", self.port)))
            .expect("flow")
    }
}

/// The three-way handshake with initial sequence numbers `isn`, window
/// scale offers `ws`, the SYNs' windows `syn_win` and the later ones `win`.
fn handshake(
    n: &mut Nat,
    port: u16,
    isn: [u32; 2],
    ws: [Option<u8>; 2],
    syn_win: [u16; 2],
    win: [u16; 2],
    now: Millis,
) -> Conn {
    let opts = syn_opts(ws[0]);
    let mut syn = seg(A, R, (port, 80), TCP_SYN, isn[0], 0, syn_win[0], &opts, 0);
    n.outbound(&mut syn, now).unwrap();
    let ext = get16(&syn, 20);
    let mut c = Conn {
        port,
        ext,
        next: [isn[0].wrapping_add(1), isn[1].wrapping_add(1)],
        win,
    };
    let mut synack = seg(
        R,
        EXT,
        (80, ext),
        TCP_SYN | TCP_ACK,
        isn[1],
        c.next[0],
        syn_win[1],
        &syn_opts(ws[1]),
        0,
    );
    n.inbound(&mut synack, now).unwrap();
    c.out(n, TCP_ACK, 0, now).unwrap();
    assert_eq!(c.state(n, now).state, "ESTABLISHED");
    c
}

const NO_SCALE: [Option<u8>; 2] = [None, None];

#[test]
fn an_in_window_rst_closes_the_flow() {
    let mut n = nat();
    let t = NatTimeouts::default();
    let mut c = handshake(
        &mut n,
        41000,
        [1000, 5_000_000],
        NO_SCALE,
        [65535; 2],
        [65535; 2],
        0,
    );
    c.inb(&mut n, TCP_ACK, 1400, 1).unwrap();
    c.out(&mut n, TCP_ACK, 0, 2).unwrap();
    // The exact next sequence number.
    n.inbound(&mut c.in_seg(TCP_RST, c.next[1], 0), 3).unwrap();
    let f = c.state(&n, 3);
    assert_eq!(f.state, "CLOSE");
    assert_eq!(f.expires_in_secs, t.tcp_closed / 1000);
    // In the window but not exact: a second connection, reset by the
    // inside host 30000 bytes ahead of what it sent.
    let mut d = handshake(&mut n, 41001, [7, 9], NO_SCALE, [65535; 2], [65535; 2], 10);
    d.out(&mut n, TCP_ACK, 100, 11).unwrap();
    let seq = d.next[0].wrapping_add(30_000);
    n.outbound(&mut d.out_seg(TCP_RST | TCP_ACK, seq, 0), 12)
        .unwrap();
    assert_eq!(d.state(&n, 12).state, "CLOSE");
}

/// A blind RST from either side, ahead of or behind the window: dropped
/// (`nat_tcp_out_of_window`), and the flow keeps its state, its timeout
/// (not refreshed) and its counters; the peek refuses it the same way.
#[test]
fn an_out_of_window_rst_from_either_side_is_dropped_and_changes_nothing() {
    let mut n = nat();
    let mut c = handshake(
        &mut n,
        41100,
        [1000, 5_000_000],
        NO_SCALE,
        [65535; 2],
        [65535; 2],
        0,
    );
    c.inb(&mut n, TCP_ACK, 1400, 1).unwrap();
    c.out(&mut n, TCP_ACK, 0, 2).unwrap();
    let before = c.state(&n, 2);
    let deadline = 2 + NatTimeouts::default().tcp_established;
    let far = [
        70_000u32,
        1 << 20,
        1 << 31,
        (1u32 << 31) + 1,
        0u32.wrapping_sub(70_000),
    ];
    for (i, d) in far.into_iter().enumerate() {
        let now = 1000 * (i as Millis + 3);
        let rst = c.in_seg(TCP_RST, c.next[1].wrapping_add(d), 0);
        assert_eq!(n.peek(&rst, Dir::In, now), Err(NatDrop::OutOfWindow));
        assert_eq!(
            n.inbound(&mut rst.clone(), now),
            Err(NatDrop::OutOfWindow),
            "in {d}"
        );
        let rst = c.out_seg(TCP_RST | TCP_ACK, c.next[0].wrapping_add(d), 0);
        assert_eq!(
            n.outbound(&mut rst.clone(), now),
            Err(NatDrop::OutOfWindow),
            "out {d}"
        );
        let f = c.state(&n, now);
        assert_eq!(f.state, "ESTABLISHED");
        assert_eq!(
            (f.packets_out, f.packets_in),
            (before.packets_out, before.packets_in)
        );
        assert_eq!(
            f.expires_in_secs,
            (deadline - now).div_ceil(1000),
            "timeout not refreshed"
        );
    }
    // The connection goes on, and a real reset still ends it.
    c.inb(&mut n, TCP_ACK, 100, 10_000).unwrap();
    n.inbound(&mut c.in_seg(TCP_RST, c.next[1], 0), 10_001)
        .unwrap();
    assert_eq!(c.state(&n, 10_001).state, "CLOSE");
}

#[test]
fn a_fin_outside_the_window_is_dropped_inside_it_closes() {
    let mut n = nat();
    let mut c = handshake(
        &mut n,
        41200,
        [77, 0x8000_0000],
        NO_SCALE,
        [65535; 2],
        [65535; 2],
        0,
    );
    let fin = TCP_FIN | TCP_ACK;
    let bad = c.in_seg(fin, c.next[1].wrapping_add(200_000), 0);
    assert_eq!(n.inbound(&mut bad.clone(), 1), Err(NatDrop::OutOfWindow));
    let bad = c.out_seg(fin, c.next[0].wrapping_sub(200_000), 0);
    assert_eq!(n.outbound(&mut bad.clone(), 1), Err(NatDrop::OutOfWindow));
    assert_eq!(c.state(&n, 1).state, "ESTABLISHED");
    c.inb(&mut n, fin, 10, 2).unwrap();
    assert_eq!(c.state(&n, 2).state, "FIN_WAIT");
    // A retransmitted FIN (one behind) is still in the window.
    let again = c.in_seg(fin, c.next[1].wrapping_sub(11), 10);
    n.inbound(&mut again.clone(), 3).unwrap();
    c.out(&mut n, fin, 0, 4).unwrap();
    assert_eq!(c.state(&n, 4).state, "TIME_WAIT");
}

/// Sequence numbers wrap at 2^32: data across the wrap moves the window
/// with it, and the checks hold on both sides of it.
#[test]
fn sequence_numbers_wrap_around() {
    let mut n = nat();
    let isn = [0xffff_ff00, 0xffff_f000];
    let mut c = handshake(&mut n, 41300, isn, NO_SCALE, [8192; 2], [8192; 2], 0);
    for i in 0..10 {
        c.inb(&mut n, TCP_ACK, 1000, 1 + i).unwrap();
        c.out(&mut n, TCP_ACK, 500, 1 + i).unwrap();
    }
    assert!(c.next[0] < 0x2000 && c.next[1] < 0x2000, "{:x?}", c.next);
    // Behind the wrap by more than the window, ahead by more: refused.
    for d in [0u32.wrapping_sub(20_000), 20_000] {
        let mut r = c.in_seg(TCP_RST, c.next[1].wrapping_add(d), 0);
        assert_eq!(n.inbound(&mut r, 20), Err(NatDrop::OutOfWindow));
    }
    // Just before the wrap, within the window of where it stands now.
    let mut r = c.out_seg(TCP_RST, c.next[0].wrapping_sub(5000), 0);
    n.outbound(&mut r, 21).unwrap();
    assert_eq!(c.state(&n, 21).state, "CLOSE");
}

/// Window scaling counts when both SYNs offer it: a window field of 502
/// is 502 << 7 (64 KiB), and an RST 50000 bytes ahead is inside it. When
/// only one side offers it, the same field is 502 bytes and the RST is
/// outside. A SYN's own window is never scaled.
#[test]
fn window_scaling_from_the_syn_options() {
    let mut n = nat();
    let scaled = [Some(7), Some(7)];
    let syn_win = [64240, 65160];
    let mut c = handshake(&mut n, 41400, [100, 200], scaled, syn_win, [502; 2], 0);
    c.out(&mut n, TCP_ACK, 0, 1).unwrap();
    let rst = |c: &Conn, d: u32| c.out_seg(TCP_RST, c.next[0].wrapping_add(d), 0);
    assert_eq!(
        n.outbound(&mut rst(&c, 70_000), 2),
        Err(NatDrop::OutOfWindow)
    );
    n.outbound(&mut rst(&c, 50_000), 2).unwrap();
    assert_eq!(c.state(&n, 2).state, "CLOSE");

    for (port, ws) in [(41401, [Some(7), None]), (41402, [None, Some(7)])] {
        let mut c = handshake(&mut n, port, [100, 200], ws, [502; 2], [502; 2], 3);
        c.inb(&mut n, TCP_ACK, 0, 4).unwrap();
        assert_eq!(
            n.outbound(&mut rst(&c, 50_000), 5),
            Err(NatDrop::OutOfWindow),
            "{ws:?}"
        );
        n.outbound(&mut rst(&c, 400), 5).unwrap();
    }

    // SYN windows 64240 and 65160 with scale 7 are 502 and 510 units, not
    // 64240 << 7: later windows of 1 unit leave them the largest.
    let mut c = handshake(&mut n, 41403, [100, 200], scaled, syn_win, [1; 2], 6);
    c.inb(&mut n, TCP_ACK, 0, 7).unwrap();
    let rst = |c: &Conn, d: u32| c.in_seg(TCP_RST, c.next[1].wrapping_add(d), 0);
    assert_eq!(
        n.inbound(&mut rst(&c, 1 << 20), 8),
        Err(NatDrop::OutOfWindow)
    );
    assert_eq!(
        n.inbound(&mut rst(&c, 64_300), 8),
        Err(NatDrop::OutOfWindow)
    );
    n.inbound(&mut rst(&c, 64_000), 8).unwrap();
}

/// The handshake: an answer must acknowledge the SYN. A SYN-ACK that does
/// not is forwarded but establishes nothing; an RST that does not is
/// dropped; one that does (connection refused) closes the flow.
#[test]
fn answers_to_a_syn_must_acknowledge_it() {
    let mut n = nat();
    let port = 41500;
    let mut syn = seg(
        A,
        R,
        (port, 80),
        TCP_SYN,
        1000,
        0,
        64240,
        &syn_opts(None),
        0,
    );
    n.outbound(&mut syn, 0).unwrap();
    let ext = get16(&syn, 20);
    let answer = |flags: u8, ack: u32| seg(R, EXT, (80, ext), flags, 9, ack, 100, &[], 0);
    n.inbound(&mut answer(TCP_SYN | TCP_ACK, 5000), 1).unwrap();
    assert_eq!(n.flows(1)[0].state, "SYN_SENT");
    assert_eq!(
        n.inbound(&mut answer(TCP_RST | TCP_ACK, 5000), 2),
        Err(NatDrop::OutOfWindow)
    );
    assert_eq!(
        n.inbound(&mut answer(TCP_RST, 1001), 2),
        Err(NatDrop::OutOfWindow),
        "no ACK: nothing acknowledged"
    );
    n.inbound(&mut answer(TCP_RST | TCP_ACK, 1001), 3).unwrap();
    assert_eq!(n.flows(3)[0].state, "CLOSE");
}

/// A new SYN on a flow in TIME_WAIT (the port reused) starts the tracking
/// again from its own sequence number.
#[test]
fn a_new_syn_on_a_finished_flow_starts_again() {
    let mut n = nat();
    let mut c = handshake(&mut n, 41600, [10, 20], NO_SCALE, [65535; 2], [65535; 2], 0);
    c.out(&mut n, TCP_FIN | TCP_ACK, 0, 1).unwrap();
    c.inb(&mut n, TCP_FIN | TCP_ACK, 0, 2).unwrap();
    assert_eq!(c.state(&n, 2).state, "TIME_WAIT");
    let mut d = handshake(
        &mut n,
        41600,
        [3_000_000_000, 40],
        NO_SCALE,
        [65535; 2],
        [65535; 2],
        3,
    );
    assert_eq!(d.ext, c.ext, "the same flow");
    d.out(&mut n, TCP_ACK, 10, 4).unwrap();
    n.inbound(&mut d.in_seg(TCP_RST, d.next[1], 0), 5).unwrap();
    assert_eq!(d.state(&n, 5).state, "CLOSE");
    assert_eq!(n.len(), 1);
}

/// A segment outside the window, or with a wrong checksum, is forwarded but
/// teaches nothing: the RST that would fit the end it claims is still
/// refused.
#[test]
fn segments_that_do_not_fit_teach_nothing() {
    let mut n = nat();
    let mut c = handshake(&mut n, 41700, [10, 20], NO_SCALE, [1000; 2], [1000; 2], 0);
    // 500 KB ahead: forwarded (a data segment is never dropped for it).
    let far = c.next[1].wrapping_add(500_000);
    let mut d = c.in_seg(TCP_ACK, far, 100);
    assert!(matches!(
        n.peek(&d, Dir::In, 1),
        Ok(Peek::Existing {
            fit: Fit::Ignore,
            ..
        })
    ));
    let text = n.peek(&d, Dir::In, 1).unwrap().to_string();
    assert!(text.contains("outside the window"), "{text}");
    n.inbound(&mut d, 1).unwrap();
    assert_eq!(dst(&d), A, "forwarded");
    let rst = c.in_seg(TCP_RST, far.wrapping_add(100), 0);
    assert_eq!(n.inbound(&mut rst.clone(), 2), Err(NatDrop::OutOfWindow));
    // In the window with a wrong checksum: forwarded, not learned.
    let mut bad = c.in_seg(TCP_ACK, c.next[1], 900);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    n.inbound(&mut bad, 3).unwrap();
    let rst = c.in_seg(TCP_RST, c.next[1].wrapping_add(1900), 0);
    assert_eq!(n.inbound(&mut rst.clone(), 4), Err(NatDrop::OutOfWindow));
    // The same segment intact is learned: the RST then fits.
    c.inb(&mut n, TCP_ACK, 900, 5).unwrap();
    n.inbound(&mut rst.clone(), 6).unwrap();
    assert_eq!(c.state(&n, 6).state, "CLOSE");
}

/// A flow picked up mid-stream: its first segment places the inside host
/// (its sequence number) and the remote (the ACK: what the inside host
/// expects next, exactly what a real RST from there carries).
#[test]
fn a_picked_up_flow_learns_from_its_first_segments() {
    let mut n = nat();
    let (s_next, c_next) = (0x4000_0000u32, 0x1234_5678u32);
    let mut c = Conn {
        port: 41800,
        ext: 41800,
        next: [c_next, s_next],
        win: [1000, 1000],
    };
    c.out(&mut n, TCP_ACK, 100, 0).unwrap();
    assert_eq!(c.state(&n, 0).state, "PICKED_UP");
    // Blind: refused; exact: closes.
    let rst = |seq: u32| seg(R, EXT, (80, 41800), TCP_RST, seq, 0, 0, &[], 0);
    assert_eq!(
        n.inbound(&mut rst(s_next.wrapping_add(100_000)), 1),
        Err(NatDrop::OutOfWindow)
    );
    assert_eq!(c.state(&n, 1).state, "PICKED_UP");
    n.inbound(&mut rst(s_next), 2).unwrap();
    assert_eq!(c.state(&n, 2).state, "CLOSE");

    // The windows are read unscaled, then widened by the data in flight:
    // the remote sends 200 KB in order, the inside host acknowledges
    // 50 KB of it: 150 KB in flight fit its real window.
    let mut c = Conn {
        port: 41801,
        ext: 41801,
        next: [c_next, s_next],
        win: [1000, 1000],
    };
    c.out(&mut n, TCP_ACK, 0, 10).unwrap();
    for i in 0..200 {
        c.inb(&mut n, TCP_ACK, 1000, 11 + i).unwrap();
    }
    assert_eq!(c.state(&n, 300).state, "ESTABLISHED");
    let rst = |c: &Conn, d: u32| c.in_seg(TCP_RST, c.next[1].wrapping_add(d), 0);
    assert_eq!(
        n.inbound(&mut rst(&c, 100_000), 300),
        Err(NatDrop::OutOfWindow),
        "a 1000-byte window"
    );
    let mut ack = seg(
        A,
        R,
        (41801, 80),
        TCP_ACK,
        c.next[0],
        s_next.wrapping_add(50_000),
        1000,
        &[],
        0,
    );
    n.outbound(&mut ack, 301).unwrap();
    n.inbound(&mut rst(&c, 100_000), 302).unwrap();
    assert_eq!(c.state(&n, 302).state, "CLOSE");

    // A first segment without ACK places nobody on the other side: an RST
    // from there is not trusted until its data places it.
    let c = Conn {
        port: 41802,
        ext: 41802,
        next: [c_next, s_next],
        win: [1000, 1000],
    };
    n.outbound(&mut c.out_seg(0, c_next, 10), 400).unwrap();
    let rst = seg(R, EXT, (80, 41802), TCP_RST, s_next, 0, 0, &[], 0);
    assert_eq!(n.inbound(&mut rst.clone(), 401), Err(NatDrop::OutOfWindow));
    let mut data = seg(
        R,
        EXT,
        (80, 41802),
        TCP_ACK,
        s_next.wrapping_sub(10),
        c_next + 10,
        1000,
        &[],
        10,
    );
    n.inbound(&mut data, 402).unwrap();
    n.inbound(&mut rst.clone(), 403).unwrap();
    assert_eq!(c.state(&n, 403).state, "CLOSE");
}

/// Picked up behind 60 KB in flight (the remote's window is scaled, the
/// NAT reads it as 1000 bytes): the remote's segments miss the window at
/// first, the inside host's ACKs show the NAT missed data and the window
/// doubles until they fit; the remote's FIN then passes.
#[test]
fn a_picked_up_flow_behind_data_in_flight_catches_up() {
    let mut n = nat();
    let acked = 0x7000_0000u32;
    let mut c = Conn {
        port: 41900,
        ext: 41900,
        next: [5000, acked],
        win: [1000, 1000],
    };
    c.out(&mut n, TCP_ACK, 0, 0).unwrap();
    c.next[1] = acked.wrapping_add(60_000);
    let fin = c.in_seg(TCP_FIN | TCP_ACK, c.next[1].wrapping_add(14_000), 0);
    assert_eq!(n.peek(&fin, Dir::In, 1), Err(NatDrop::OutOfWindow));
    for i in 0..10 {
        c.inb(&mut n, TCP_ACK, 1400, 1 + i).unwrap();
        let ack = c.next[1].wrapping_sub(60_000);
        let mut a = seg(A, R, (41900, 80), TCP_ACK, c.next[0], ack, 1000, &[], 0);
        n.outbound(&mut a, 1 + i).unwrap();
    }
    n.inbound(&mut fin.clone(), 20).unwrap();
    assert_eq!(c.state(&n, 20).state, "FIN_WAIT");
}

/// The per-flow memory the tracking adds stays small: 16 bytes (holding
/// the two FIN flags the flow had), a flow from 48 bytes to 64, one cache
/// line.
#[test]
fn a_flow_stays_within_a_cache_line() {
    assert_eq!(std::mem::size_of::<tcp::Track>(), 16);
    assert_eq!(std::mem::size_of::<Flow>(), 64);
}
