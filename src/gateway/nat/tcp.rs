//! TCP tracking a blind packet cannot fool: the states of a flow and the
//! window check that guards them. An RST or a FIN changes a flow only when
//! its sequence number is inside the window (RFC 5961's "exact or in
//! window", as Linux conntrack's `tcp_in_window` checks it); one outside it
//! is dropped (`nat_tcp_out_of_window`) and the flow is left as it was.
//!
//! Per side of a flow ([`Track`], 16 bytes) the NAT remembers the end of
//! the furthest segment it sent (`end`, sequence number plus length), the
//! largest window it advertised (`win`, in units of its window scale) and
//! that scale. A segment from side S is in the window when it lies within
//! the largest window W of the receiver R around S's end:
//! `seq <= end[S] + W` and `seq + len >= end[S] - W - 1` (an RST's own
//! `seq` for the latter). A legitimate segment always does: S never sends
//! past R's acknowledgement plus its window, and R has not acknowledged
//! more than S sent. A blind RST hits with a chance of about 2W / 2^32.
//!
//! [`Track::fit`] is the decision (made by [`super::Nat::classify`], shown by
//! trace), [`Track::learn`] the memory (by translation):
//!
//! * **Only what fits teaches.** A segment in the window advances the
//!   sender's end, its largest window, and (its ACK) the receiver's end
//!   when the receiver sent more than the NAT learned; a segment outside it
//!   is forwarded but changes nothing (no state, no learning, no reply
//!   seen), so a blind data segment cannot move the window for a later RST.
//!   A TCP segment with a wrong checksum teaches nothing either.
//! * **The handshake.** The inside host's SYN starts the flow; an answer
//!   (SYN-ACK, or an RST refusing the connection) must acknowledge that SYN
//!   (RFC 793; up to a SYN's worth of data beyond it, for TCP Fast Open).
//!   Window scaling counts only when both SYNs carry the option (RFC 7323);
//!   a SYN's own window is never scaled.
//! * **A new connection on an old flow.** A SYN from the inside host on a
//!   flow in SYN_SENT, TIME_WAIT or CLOSE starts the tracking again (a
//!   port reused, a SYN retried with another sequence number).
//! * **Flows picked up mid-stream** (no SYN seen, `PICKED_UP`) have no
//!   history and no negotiated scale. Their first segment tells where both
//!   sides stand: the sender's sequence number and, in its ACK, the next
//!   sequence number it expects from the other side (what an RST from
//!   there must carry, exactly). Their windows are read unscaled (a lower
//!   bound of the real ones, so the check is tighter, never looser) and
//!   widened by evidence: the data a side is seen to have in flight fits
//!   the receiver's real window, and when it exceeds the unscaled reading
//!   the inferred scale rises (never past the real one); when the NAT
//!   missed data (picked up behind data in flight, the receiver then
//!   acknowledges more than it saw) the window doubles, until the segments
//!   fit again. An RST or FIN from a side nothing has placed yet (no ACK
//!   seen from the other side) is not trusted: dropped. The first data
//!   segment from such a side places it.

use super::{Dir, NatDrop, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpState};
use crate::wire::ipv4::get16;

/// The largest window TCP can advertise (65535 << 14): also how far an
/// ACK or the data in flight may reach and still be taken as evidence.
const MAX_WIN: u32 = 0xffff << 14;
/// How much data a SYN may carry (TCP Fast Open) and be acknowledged
/// with it: an answer's ACK may lie this far behind the SYN's end.
const SYN_DATA_MAX: u32 = 0xffff;

// Per-side flags.
/// A segment from this side was learned (its `win` holds).
const SEEN: u8 = 0x01;
/// Its `end` holds (from its own segment, or from the other side's ACK).
const END: u8 = 0x02;
/// It sent a SYN.
const SYN: u8 = 0x04;
/// Its SYN offered window scaling (`shift` holds the offer).
const WSCALE: u8 = 0x08;
/// No handshake in sight: `shift` is inferred from evidence.
const INFERRED: u8 = 0x10;
/// It sent a FIN (in the window).
const FIN: u8 = 0x20;

/// What a packet of a tracked flow may do to it: part of
/// [`super::Nat::classify`]'s decision, acted on by translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// In the window (or not TCP): the flow learns from it and its flags
    /// move the state.
    Learn,
    /// A SYN from the inside host for a new connection on a flow whose old
    /// one is over or never answered: tracking starts again from it.
    Restart,
    /// Outside the window, or a checksum that cannot be trusted: forwarded,
    /// but the flow learns nothing and keeps its state.
    Ignore,
}

/// The TCP header fields the tracking reads ([`Seg::NONE`] for UDP and
/// ICMP), and what the segment may do ([`Fit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// The sequence space it takes: payload, plus one for a SYN and a FIN.
    pub len: u32,
    /// The window scale option (SYN only), at most 14.
    pub wscale: Option<u8>,
    pub fit: Fit,
}

impl Seg {
    pub const NONE: Seg = Seg {
        flags: 0,
        seq: 0,
        ack: 0,
        win: 0,
        len: 0,
        wscale: None,
        fit: Fit::Learn,
    };

    /// The segment whose TCP header starts at `at` in `b`, `l4_len` bytes
    /// of TCP (at least 20).
    pub(super) fn parse(b: &[u8], at: usize, l4_len: usize) -> Seg {
        let flags = b[at + 13];
        let doff = ((b[at + 12] >> 4) as usize * 4).clamp(20, l4_len);
        let syn = flags & TCP_SYN != 0;
        Seg {
            flags,
            seq: u32::from_be_bytes(b[at + 4..at + 8].try_into().expect("4 bytes")),
            ack: u32::from_be_bytes(b[at + 8..at + 12].try_into().expect("4 bytes")),
            win: get16(b, at + 14),
            len: (l4_len - doff) as u32 + syn as u32 + (flags & TCP_FIN != 0) as u32,
            wscale: if syn {
                wscale(&b[at + 20..at + doff])
            } else {
                None
            },
            fit: Fit::Learn,
        }
    }
}

/// The window scale option among TCP options `o`, capped at 14 (RFC 7323).
fn wscale(o: &[u8]) -> Option<u8> {
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let l = *o.get(i + 1)? as usize;
                if l < 2 || i + l > o.len() {
                    return None;
                }
                if kind == 3 && l == 3 {
                    return Some(o[i + 2].min(14));
                }
                i += l;
            }
        }
    }
    None
}

/// `a` comes before `b` in sequence space (modulo 2^32).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// `v` in units of `2^shift`, rounded up.
fn units(v: u32, shift: u32) -> u32 {
    v.div_ceil(1 << shift)
}

/// Which side sends: 0 the inside host (outbound), 1 the remote end.
fn side(dir: Dir) -> (usize, usize) {
    match dir {
        Dir::Out => (0, 1),
        Dir::In => (1, 0),
    }
}

/// A TCP flow's sequence memory: 16 bytes per flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Track {
    /// Per side: the end of its furthest segment (sequence number plus
    /// length).
    end: [u32; 2],
    /// Per side: the largest window it advertised, in units of its scale.
    win: [u16; 2],
    /// Per side: its window scale (offered, then agreed or inferred).
    shift: [u8; 2],
    flags: [u8; 2],
}

impl Track {
    /// Whether side `dir` sent a SYN the tracking took.
    pub(super) fn saw_syn(&self, dir: Dir) -> bool {
        self.flags[side(dir).0] & SYN != 0
    }

    /// Whether `ack` acknowledges exactly all that side `dir` sent (its
    /// SYN, in a handshake).
    pub(super) fn acks_all_of(&self, dir: Dir, ack: u32) -> bool {
        self.end[side(dir).0] == ack
    }

    /// Whether side `dir` sent a FIN the window let through.
    pub(super) fn fin(&self, dir: Dir) -> bool {
        self.flags[side(dir).0] & FIN != 0
    }

    /// The shift that scales the windows of side `d`.
    fn shift(&self, d: usize) -> u32 {
        let agreed = self.flags[0] & self.flags[1] & WSCALE != 0;
        if self.flags[d] & INFERRED != 0 || agreed {
            self.shift[d] as u32
        } else {
            0
        }
    }

    /// The largest window side `d` advertised, in bytes (0 before
    /// anything was learned from it).
    fn window(&self, d: usize) -> u32 {
        if self.flags[d] & SEEN == 0 {
            0
        } else {
            (self.win[d] as u32) << self.shift(d)
        }
    }

    /// What a segment crossing in direction `dir` may do to a flow in
    /// `state`; `Err(OutOfWindow)` for an RST or FIN outside the window.
    pub(super) fn fit(&self, dir: Dir, seg: &Seg, state: TcpState) -> Result<Fit, NatDrop> {
        let (s, r) = side(dir);
        let f = seg.flags;
        let strict = f & (TCP_RST | TCP_FIN) != 0;
        let outside = if strict {
            Err(NatDrop::OutOfWindow)
        } else {
            Ok(Fit::Ignore)
        };
        if s == 0
            && f & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
            && matches!(
                state,
                TcpState::SynSent | TcpState::TimeWait | TcpState::Closed
            )
        {
            return Ok(Fit::Restart);
        }
        if self.flags[s] & END == 0 {
            if self.flags[r] & SYN != 0 {
                // Only an answer to the SYN: it acknowledges the SYN.
                let acks_syn = f & TCP_ACK != 0
                    && !after(seg.ack, self.end[r])
                    && self.end[r].wrapping_sub(seg.ack) <= SYN_DATA_MAX;
                return match acks_syn && f & (TCP_SYN | TCP_RST) != 0 {
                    true => Ok(Fit::Learn),
                    false => outside,
                };
            }
            // Picked up, and nothing places this side yet: its data does,
            // its RST or FIN is not trusted.
            return if strict { outside } else { Ok(Fit::Learn) };
        }
        let w = self.window(r);
        let end = self.end[s];
        let low = if f & TCP_RST != 0 {
            seg.seq
        } else {
            seg.seq.wrapping_add(seg.len)
        };
        let fits = !after(seg.seq, end.wrapping_add(w))
            && !before(low, end.wrapping_sub(w).wrapping_sub(1));
        if fits { Ok(Fit::Learn) } else { outside }
    }

    /// Learns from a segment [`Track::fit`] let teach (`Learn`, or
    /// `Restart` on a fresh `Track`).
    pub(super) fn learn(&mut self, dir: Dir, seg: &Seg) {
        let (s, r) = side(dir);
        let syn = seg.flags & TCP_SYN != 0;
        let seg_end = seg.seq.wrapping_add(seg.len);
        let win = seg.win as u32;
        if self.flags[s] & SEEN == 0 {
            let first = if syn {
                self.flags[s] |= SYN;
                if let Some(ws) = seg.wscale {
                    self.flags[s] |= WSCALE;
                    self.shift[s] = ws;
                }
                if self.flags[r] & SYN != 0 && self.flags[0] & self.flags[1] & WSCALE != 0 {
                    // Scaling agreed: the SYNs' windows (bytes) in units.
                    let rs = self.shift[r] as u32;
                    self.win[r] = units(self.win[r] as u32, rs).max(1) as u16;
                    units(win, self.shift[s] as u32)
                } else {
                    win
                }
            } else {
                // Picked up: no scale in sight for either side.
                for d in [s, r] {
                    if self.flags[d] & INFERRED == 0 {
                        self.flags[d] |= INFERRED;
                        self.shift[d] = 0;
                    }
                }
                win
            };
            if self.flags[r] & INFERRED != 0 && self.flags[s] & INFERRED == 0 {
                // The other side was picked up: no agreed scale here either.
                self.flags[s] |= INFERRED;
                self.shift[s] = 0;
            }
            if self.flags[s] & END == 0 || after(seg_end, self.end[s]) {
                self.end[s] = seg_end;
            }
            self.flags[s] |= SEEN | END;
            self.win[s] = first.max(1) as u16;
        } else {
            if after(seg_end, self.end[s]) {
                self.end[s] = seg_end;
            }
            // A SYN's window is in bytes, the others in units.
            let w = if syn { units(win, self.shift(s)) } else { win };
            self.win[s] = self.win[s].max(w as u16);
        }
        if seg.flags & TCP_FIN != 0 {
            self.flags[s] |= FIN;
        }
        if seg.flags & TCP_ACK != 0 {
            self.learn_ack(s, r, seg.ack);
        }
    }

    /// Side `s` acknowledges `ack` of side `r`'s data.
    fn learn_ack(&mut self, s: usize, r: usize, ack: u32) {
        if self.flags[r] & END == 0 {
            // Where the other side stands: what s expects from it next.
            self.end[r] = ack;
            self.flags[r] |= END;
            return;
        }
        let ahead = ack.wrapping_sub(self.end[r]);
        if after(ack, self.end[r]) {
            // r sent more than the NAT learned (segments it saw outside
            // the window it knew): catch up. Picked up, that window was
            // read too small: double it.
            if ahead <= MAX_WIN {
                self.end[r] = ack;
                if self.flags[s] & INFERRED != 0 {
                    self.widen(s, ahead.max(self.window(s).saturating_mul(2)));
                }
            }
            return;
        }
        // r's data in flight toward s fits s's real window.
        let in_flight = self.end[r].wrapping_sub(ack);
        if in_flight <= MAX_WIN && in_flight > self.window(s) {
            self.widen(s, in_flight);
        }
    }

    /// Side `s`'s real window is at least `bytes`: its largest window
    /// grows to it, and an inferred scale rises as far as that needs.
    fn widen(&mut self, s: usize, bytes: u32) {
        let bytes = bytes.min(MAX_WIN);
        if self.flags[s] & INFERRED != 0 {
            while bytes >> self.shift[s] > 0xffff && self.shift[s] < 14 {
                self.shift[s] += 1;
                self.win[s] = units(self.win[s] as u32, 1) as u16;
            }
        }
        let w = units(bytes, self.shift(s)).min(0xffff) as u16;
        self.win[s] = self.win[s].max(w);
    }
}

impl super::Flow {
    /// Advances the TCP state after a segment in direction `dir` that
    /// [`Track::fit`] let change it (`Learn` or `Restart`).
    pub(super) fn advance(&mut self, dir: Dir, seg: &Seg) {
        if seg.fit == Fit::Restart {
            self.track = Track::default();
            self.tcp = TcpState::SynSent;
        }
        self.track.learn(dir, seg);
        let flags = seg.flags;
        let (fin_out, fin_in) = (self.track.fin(Dir::Out), self.track.fin(Dir::In));
        self.tcp = match self.tcp {
            _ if flags & TCP_RST != 0 => TcpState::Closed,
            TcpState::Closed => TcpState::Closed,
            _ if fin_out && fin_in => TcpState::TimeWait,
            _ if fin_out || fin_in => TcpState::FinWait,
            TcpState::SynSent
                if dir == Dir::In
                    && flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
                    && !self.remote_opened =>
            {
                TcpState::Established
            }
            // A connection from outside (to a published port) is
            // established when its opener acknowledges the SYN-ACK: the
            // three-way handshake, as conntrack's SYN_RECV -> ESTABLISHED.
            TcpState::SynSent
                if self.remote_opened
                    && dir == Dir::Out
                    && flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_ACK
                    && self.track.saw_syn(Dir::In)
                    && self.track.acks_all_of(Dir::In, seg.ack) =>
            {
                TcpState::Established
            }
            // Picked up mid-stream (e.g. after a restart): no SYN. Loose
            // until the other end answers.
            TcpState::SynSent
                if !self.remote_opened && self.packets_out == 1 && flags & TCP_SYN == 0 =>
            {
                TcpState::Loose
            }
            TcpState::Loose if dir == Dir::In => TcpState::Established,
            s => s,
        };
    }
}
