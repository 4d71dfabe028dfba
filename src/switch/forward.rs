//! The forwarding decision: one frame, its ingress port and the time in,
//! a [`Decision`] out. Pure: no I/O, no clock, no allocation.
//!
//! Order of checks (each failure is a named [`DropReason`]):
//! 1. the frame holds an Ethernet header (`Runt`), and is not longer than
//!    MTU + 14 bytes, + 4 when it carries an 802.1Q/802.1ad tag (`TooBig`);
//! 2. the source is a unicast, non-zero MAC (`BadSource`), as the Linux
//!    bridge requires; it is learned on the ingress port;
//! 3. broadcast and multicast destinations flood; a known unicast goes to
//!    its port, unless that is the ingress port (`SameSegment`: the
//!    destination is on the segment the frame came from); an unknown
//!    unicast floods. Flooding never includes the ingress port.
//!
//! A secured port's frames are checked first ([`decide_guarded`], see
//! [`super::security`]).
//!
//! In the overlay's directory mode, [`decide_in`] also follows the
//! [`Directory`] (see there): remote MACs go to the overlay port, ARP for
//! remote addresses is answered, gateway frames stay on their host.

use super::directory::{Directory, Steer};
use super::fdb::{Fdb, Learned, Millis, PortId};
use super::security::Guard;
pub use crate::reason::Reason;
use crate::wire::{ETH_HEADER_LEN, ETHERTYPE_QINQ, ETHERTYPE_VLAN, MacAddr, VLAN_TAG_LEN};
use smoltcp::wire::EthernetFrame;

/// Why a frame was dropped. Every drop in the datapath has one of these and a
/// counter (per port, indexed by `reason as usize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt = 0,
    /// Longer than MTU + header (+ tag).
    TooBig,
    /// Source MAC is multicast, broadcast or all-zero.
    BadSource,
    /// Destination is learned on the ingress port itself.
    SameSegment,
    /// The egress port's queue was full (the write would block).
    TxQueueFull,
    /// The egress port's write failed.
    TxError,
    /// An uplink frame whose offload header (checksum start, GSO) could not
    /// be honoured.
    BadOffload,
    /// A frame of the distributed gateway that would cross the overlay
    /// (directory mode: every host has its own gateway).
    OverlayGateway,
    /// From a secured port, with a source MAC or IPv4/ARP sender that is
    /// not the port's own (`--port-security`).
    SpoofedSource,
    /// To the uplink while its interface is down or gone.
    UplinkDown,
}

impl DropReason {
    pub const COUNT: usize = 10;
}

impl Reason for DropReason {
    const ALL: &'static [DropReason] = &[
        DropReason::Runt,
        DropReason::TooBig,
        DropReason::BadSource,
        DropReason::SameSegment,
        DropReason::TxQueueFull,
        DropReason::TxError,
        DropReason::BadOffload,
        DropReason::OverlayGateway,
        DropReason::SpoofedSource,
        DropReason::UplinkDown,
    ];

    /// Stable snake_case name used in `vswitchctl` output and JSON.
    fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::TooBig => "too_big",
            DropReason::BadSource => "bad_source",
            DropReason::SameSegment => "same_segment",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::TxError => "tx_error",
            DropReason::BadOffload => "bad_offload",
            DropReason::OverlayGateway => "overlay_gateway",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::UplinkDown => "uplink_down",
        }
    }

    /// The discriminant: free on the per-frame path.
    fn index(self) -> usize {
        self as usize
    }
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// To this one port.
    Unicast(PortId),
    /// To every port but the ingress port.
    Flood(FloodReason),
    /// To every port but the ingress port and the overlay (directory mode:
    /// a broadcast the hosts need not see).
    FloodLocal(FloodReason),
    /// Answered by the switch: an ARP reply on behalf of the remote port
    /// with this MAC goes back out of the ingress port (directory mode).
    Answer(MacAddr),
    /// Nowhere.
    Drop(DropReason),
}

/// Why a frame was flooded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodReason {
    Broadcast,
    Multicast,
    UnknownUnicast,
}

/// A decision plus what learning did with the source, for counters and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub learned: Option<Learned>,
}

impl Verdict {
    const fn drop(r: DropReason) -> Self {
        Verdict {
            decision: Decision::Drop(r),
            learned: None,
        }
    }
}

/// Largest frame accepted for a given MTU: header + MTU, + one VLAN tag
/// when the frame is tagged.
#[inline]
pub fn max_frame_len(mtu: usize, tagged: bool) -> usize {
    mtu + ETH_HEADER_LEN + if tagged { VLAN_TAG_LEN } else { 0 }
}

/// Decides where `frame`, received on `in_port` at `now`, goes; learns its
/// source in `fdb` on the way. `mtu` is `None` for a segmentation-offload
/// super-frame, whose size the sender's kernel already bounded per segment.
#[inline]
pub fn decide(
    fdb: &mut Fdb,
    frame: &[u8],
    in_port: PortId,
    mtu: Option<usize>,
    now: Millis,
) -> Verdict {
    decide_in(fdb, None, frame, in_port, mtu, now)
}

/// [`decide_in`] for a frame from a port that may be secured: with a
/// `guard`, a frame that does not carry the port's own identity is dropped
/// (`SpoofedSource`) before anything is learned from it.
#[inline]
pub fn decide_guarded(
    fdb: &mut Fdb,
    dir: Option<&Directory>,
    guard: Option<&Guard>,
    frame: &[u8],
    in_port: PortId,
    mtu: Option<usize>,
    now: Millis,
) -> Verdict {
    if let Some(g) = guard
        && frame.len() >= ETH_HEADER_LEN
        && !g.allows(frame)
    {
        return Verdict::drop(DropReason::SpoofedSource);
    }
    decide_in(fdb, dir, frame, in_port, mtu, now)
}

/// [`decide`], following the overlay's directory when there is one.
#[inline]
pub fn decide_in(
    fdb: &mut Fdb,
    dir: Option<&Directory>,
    frame: &[u8],
    in_port: PortId,
    mtu: Option<usize>,
    now: Millis,
) -> Verdict {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Verdict::drop(DropReason::Runt);
    };
    let ethertype = u16::from(eth.ethertype());
    let tagged = ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ;
    if mtu.is_some_and(|mtu| frame.len() > max_frame_len(mtu, tagged)) {
        return Verdict::drop(DropReason::TooBig);
    }
    let src = MacAddr::from_slice(eth.src_addr().as_bytes());
    if !src.is_valid_source() {
        return Verdict::drop(DropReason::BadSource);
    }
    let steer = dir.map_or(Steer::Pass, |d| d.steer(frame, in_port));
    if steer == Steer::GatewayCrossing {
        return Verdict::drop(DropReason::OverlayGateway);
    }
    let learned = match dir {
        Some(d) if !d.learns_on(in_port) => None,
        _ => Some(fdb.learn(src, in_port, now)),
    };
    let dst = MacAddr::from_slice(eth.dst_addr().as_bytes());
    if let Some(d) = dir {
        let decision = match steer {
            Steer::Answer(mac) => Some(Decision::Answer(mac)),
            Steer::LocalOnly => Some(Decision::FloodLocal(FloodReason::Broadcast)),
            _ if d.is_remote_mac(dst) => Some(if in_port == d.overlay_port() {
                Decision::Drop(DropReason::SameSegment)
            } else if d.gateway_crossing(in_port, d.overlay_port()) {
                Decision::Drop(DropReason::OverlayGateway)
            } else {
                Decision::Unicast(d.overlay_port())
            }),
            _ => None,
        };
        if let Some(decision) = decision {
            return Verdict { decision, learned };
        }
    }
    let decision = if dst == MacAddr::BROADCAST {
        Decision::Flood(FloodReason::Broadcast)
    } else if dst.is_multicast() {
        Decision::Flood(FloodReason::Multicast)
    } else {
        match fdb.lookup(dst, now) {
            Some(p) if p == in_port => Decision::Drop(DropReason::SameSegment),
            Some(p) => Decision::Unicast(p),
            None => Decision::Flood(FloodReason::UnknownUnicast),
        }
    };
    let decision = match (decision, dir) {
        (Decision::Flood(r), Some(d)) if d.floods_locally(in_port) => Decision::FloodLocal(r),
        (Decision::Unicast(out), Some(d)) if d.gateway_crossing(in_port, out) => {
            Decision::Drop(DropReason::OverlayGateway)
        }
        (d, _) => d,
    };
    Verdict { decision, learned }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: &str, src: &str, ethertype: u16, payload: usize) -> Vec<u8> {
        // Pre-filled with junk so a field we forget to write shows up.
        let mut f = vec![0xa5; 14 + payload];
        f[0..6].copy_from_slice(&dst.parse::<MacAddr>().unwrap().to_bytes());
        f[6..12].copy_from_slice(&src.parse::<MacAddr>().unwrap().to_bytes());
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f
    }
    const A: &str = "02:00:00:00:00:0a";
    const B: &str = "02:00:00:00:00:0b";
    const BC: &str = "ff:ff:ff:ff:ff:ff";

    #[test]
    fn directory_mode_keeps_gateway_floods_home_and_drops_gateway_unicast_to_overlay() {
        let gw = "02:00:00:00:00:01";
        let mut d = Directory::new(
            9,
            0,
            "192.168.88.1".parse().unwrap(),
            gw.parse().unwrap(),
            4,
        );
        d.insert("192.168.88.21".parse().unwrap(), B.parse().unwrap(), true)
            .unwrap();
        let mut fdb = Fdb::new(300_000, 100);
        let v = decide_in(
            &mut fdb,
            Some(&d),
            &frame(BC, gw, 0x0806, 28),
            0,
            Some(1500),
            0,
        );
        assert_eq!(v.decision, Decision::FloodLocal(FloodReason::Broadcast));
        let v = decide_in(
            &mut fdb,
            Some(&d),
            &frame(A, gw, 0x0800, 46),
            0,
            Some(1500),
            0,
        );
        assert_eq!(
            v.decision,
            Decision::FloodLocal(FloodReason::UnknownUnicast)
        );
        let v = decide_in(
            &mut fdb,
            Some(&d),
            &frame(B, gw, 0x0800, 46),
            0,
            Some(1500),
            0,
        );
        assert_eq!(v.decision, Decision::Drop(DropReason::OverlayGateway));
        // From a port: the remote MAC goes to the overlay; from the overlay
        // itself it would go back where it came from.
        let v = decide_in(
            &mut fdb,
            Some(&d),
            &frame(B, A, 0x0800, 46),
            3,
            Some(1500),
            0,
        );
        assert_eq!(v.decision, Decision::Unicast(9));
        let v = decide_in(
            &mut fdb,
            Some(&d),
            &frame(B, A, 0x0800, 46),
            9,
            Some(1500),
            0,
        );
        assert_eq!(v.decision, Decision::Drop(DropReason::SameSegment));
        assert_eq!(v.learned, None, "nothing is learned from the overlay");
        // A learned or static entry toward the overlay from the gateway.
        fdb.add_static(A.parse().unwrap(), 9).unwrap();
        let v = decide_in(
            &mut fdb,
            Some(&d),
            &frame(A, gw, 0x0800, 46),
            0,
            Some(1500),
            0,
        );
        assert_eq!(v.decision, Decision::Drop(DropReason::OverlayGateway));
    }

    #[test]
    fn unknown_then_known_unicast() {
        let mut fdb = Fdb::new(300_000, 100);
        let v = decide(&mut fdb, &frame(B, A, 0x0800, 46), 0, Some(1500), 0);
        assert_eq!(v.decision, Decision::Flood(FloodReason::UnknownUnicast));
        assert_eq!(v.learned, Some(Learned::New { evicted: None }));
        let v = decide(&mut fdb, &frame(A, B, 0x0800, 46), 1, Some(1500), 1);
        assert_eq!(v.decision, Decision::Unicast(0));
        let v = decide(&mut fdb, &frame(B, A, 0x0800, 46), 0, Some(1500), 2);
        assert_eq!(v.decision, Decision::Unicast(1));
        assert_eq!(v.learned, Some(Learned::Refreshed));
    }

    #[test]
    fn broadcast_and_multicast_flood() {
        let mut fdb = Fdb::new(300_000, 100);
        // Even a learned "destination" of a multicast address cannot exist,
        // and broadcast always floods.
        assert_eq!(
            decide(&mut fdb, &frame(BC, A, 0x0806, 28), 0, Some(1500), 0).decision,
            Decision::Flood(FloodReason::Broadcast)
        );
        assert_eq!(
            decide(
                &mut fdb,
                &frame("33:33:00:00:00:01", A, 0x86dd, 40),
                0,
                Some(1500),
                0
            )
            .decision,
            Decision::Flood(FloodReason::Multicast)
        );
    }

    #[test]
    fn destination_on_ingress_port_is_dropped() {
        let mut fdb = Fdb::new(300_000, 100);
        decide(&mut fdb, &frame(BC, B, 0x0806, 28), 0, Some(1500), 0);
        let v = decide(&mut fdb, &frame(B, A, 0x0800, 46), 0, Some(1500), 1);
        assert_eq!(v.decision, Decision::Drop(DropReason::SameSegment));
    }

    #[test]
    fn runts_bad_sources_and_sizes() {
        let mut fdb = Fdb::new(300_000, 100);
        for len in 0..14 {
            let junk = vec![0xffu8; len];
            assert_eq!(
                decide(&mut fdb, &junk, 0, Some(1500), 0).decision,
                Decision::Drop(DropReason::Runt)
            );
        }
        // A bare header is a valid (if empty) frame.
        assert_eq!(
            decide(&mut fdb, &frame(BC, A, 0x0800, 0), 0, Some(1500), 0).decision,
            Decision::Flood(FloodReason::Broadcast)
        );
        for src in [BC, "01:00:5e:00:00:01", "00:00:00:00:00:00"] {
            assert_eq!(
                decide(&mut fdb, &frame(B, src, 0x0800, 46), 0, Some(1500), 0).decision,
                Decision::Drop(DropReason::BadSource)
            );
        }
        // MTU + 14 passes, one more byte does not; a tag buys 4 bytes.
        assert!(matches!(
            decide(&mut fdb, &frame(B, A, 0x0800, 1500), 0, Some(1500), 0).decision,
            Decision::Flood(_)
        ));
        assert_eq!(
            decide(&mut fdb, &frame(B, A, 0x0800, 1501), 0, Some(1500), 0).decision,
            Decision::Drop(DropReason::TooBig)
        );
        assert!(matches!(
            decide(&mut fdb, &frame(B, A, 0x8100, 1504), 0, Some(1500), 0).decision,
            Decision::Flood(_)
        ));
        assert_eq!(
            decide(&mut fdb, &frame(B, A, 0x8100, 1505), 0, Some(1500), 0).decision,
            Decision::Drop(DropReason::TooBig)
        );
        // Nothing invalid was learned.
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn reason_names_are_unique_and_indexed() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    /// An 802.1ad (QinQ) outer tag buys the same 4 bytes as 802.1Q; any
    /// other ethertype does not; a super-frame (`mtu` None) has no limit.
    #[test]
    fn qinq_tag_allowance_and_super_frames() {
        let mut fdb = Fdb::new(300_000, 100);
        assert!(matches!(
            decide(&mut fdb, &frame(B, A, 0x88a8, 1504), 0, Some(1500), 0).decision,
            Decision::Flood(_)
        ));
        assert_eq!(
            decide(&mut fdb, &frame(B, A, 0x88a8, 1505), 0, Some(1500), 0).decision,
            Decision::Drop(DropReason::TooBig)
        );
        assert_eq!(
            decide(&mut fdb, &frame(B, A, 0x86dd, 1504), 0, Some(1500), 0).decision,
            Decision::Drop(DropReason::TooBig)
        );
        assert_eq!(max_frame_len(9000, false), 9014);
        assert_eq!(max_frame_len(9000, true), 9018);
        assert!(matches!(
            decide(&mut fdb, &frame(B, A, 0x0800, 65_000), 0, None, 0).decision,
            Decision::Flood(_)
        ));
        // A too-big frame is refused before its source is learned.
        let mut fdb = Fdb::new(300_000, 100);
        let v = decide(&mut fdb, &frame(B, A, 0x0800, 1501), 0, Some(1500), 0);
        assert_eq!(v.learned, None);
        assert!(fdb.is_empty());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any frame on any port: the verdict follows the documented
            /// rules in order (runt, size, source, then destination), and a
            /// source is learned exactly when the frame passed the first three.
            #[test]
            fn verdict_follows_the_rules(
                frames in proptest::collection::vec(
                    (0..4 as PortId,
                     prop_oneof![Just(0u8), Just(1), Just(0xff), any::<u8>()],
                     0..6u64,
                     prop_oneof![Just(0u8), Just(1), Just(0xff), any::<u8>()],
                     0..6u64,
                     prop_oneof![Just(0x0800u16), Just(0x8100), Just(0x88a8), any::<u16>()],
                     prop_oneof![0..20usize, 1490..1510usize]),
                    1..60),
            ) {
                let mut fdb = Fdb::new(300_000, 1000);
                for (port, d0, dn, s0, sn, et, len) in frames {
                    let mk = |b0: u8, n: u64| {
                        let mut m = MacAddr::from_u64(0x0200_0000_0000 | n).to_bytes();
                        if b0 != 0 { m[0] = b0; }
                        m
                    };
                    let (dst, src) = (mk(d0, dn), mk(s0, sn));
                    let mut f = vec![0x5a; len];
                    for (i, b) in dst.iter().chain(src.iter()).chain(et.to_be_bytes().iter()).enumerate() {
                        if i < len { f[i] = *b; }
                    }
                    let dmac = MacAddr::from_bytes(dst);
                    let smac = MacAddr::from_bytes(src);
                    let before = fdb.lookup(dmac, 0);
                    let v = decide(&mut fdb, &f, port, Some(1480), 0);
                    let tagged = et == 0x8100 || et == 0x88a8;
                    let want = if len < 14 {
                        Decision::Drop(DropReason::Runt)
                    } else if len > 1480 + 14 + if tagged { 4 } else { 0 } {
                        Decision::Drop(DropReason::TooBig)
                    } else if smac.is_multicast() || smac.is_zero() {
                        Decision::Drop(DropReason::BadSource)
                    } else if dmac == MacAddr::BROADCAST {
                        Decision::Flood(FloodReason::Broadcast)
                    } else if dmac.is_multicast() {
                        Decision::Flood(FloodReason::Multicast)
                    } else {
                        // The lookup happens after learning the source.
                        let owner = if dmac == smac { Some(port) } else { before };
                        match owner {
                            Some(p) if p == port => Decision::Drop(DropReason::SameSegment),
                            Some(p) => Decision::Unicast(p),
                            None => Decision::Flood(FloodReason::UnknownUnicast),
                        }
                    };
                    prop_assert_eq!(v.decision, want);
                    let passed = !matches!(want, Decision::Drop(DropReason::Runt | DropReason::TooBig | DropReason::BadSource));
                    prop_assert_eq!(v.learned.is_some(), passed);
                    if passed {
                        prop_assert_eq!(fdb.lookup(smac, 0), Some(port));
                    }
                }
            }
        }
    }
}
