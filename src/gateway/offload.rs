//! The offloaded paths: TCP super-frames and partial-checksum frames routed
//! whole through the gateway (and the NAT), so they leave as one frame and
//! the kernel on the far side does the segmentation and checksums. They take
//! the same [`Verdict`] as whole frames; only a verdict that can be carried
//! out on the frame as it is (forward, no fragmenting, neighbour known) is
//! acted on here. Anything else returns false, having changed nothing, and
//! the datapath makes the frame whole and hands it to the ordinary path.

use super::classify::Verdict;
use super::outbox::Outbox;
use super::{ETH, ETHERTYPE_IPV4, Gateway, GwDrop, Side};
use crate::switch::Millis;
use crate::wire::MacAddr;
use crate::wire::ipv4::{self, Ipv4Hdr, PROTO_TCP, PROTO_UDP};
use crate::wire::vnet::{GSO_ECN, GSO_TCPV4, VnetHdr};

impl Gateway {
    /// Routes a LAN frame that still carries offload work (a partial
    /// checksum, or a TCP super-frame) without finishing it. Returns false,
    /// having changed nothing, when the frame must be made whole first (for
    /// the gateway's own stack, an ICMP error, a neighbour still to
    /// resolve, an egress MTU too small for its segments...).
    pub fn route_offloaded_lan(
        &mut self,
        hdr: &VnetHdr,
        frame: &[u8],
        now: Millis,
        out: &mut Outbox,
    ) -> bool {
        if frame.len() < ETH || MacAddr::from_slice(&frame[0..6]) != self.cfg.lan_mac {
            return false;
        }
        self.route_offloaded(Side::Lan, hdr, frame, now, out)
    }

    /// The uplink twin of [`Gateway::route_offloaded_lan`]: a super-frame
    /// (or partial-checksum frame) for the uplink address is translated back
    /// and handed to the LAN as one frame.
    pub fn route_offloaded_wan(
        &mut self,
        hdr: &VnetHdr,
        frame: &[u8],
        now: Millis,
        out: &mut Outbox,
    ) -> bool {
        let Some(wmac) = self.wan_mac() else {
            return false;
        };
        if frame.len() < ETH || MacAddr::from_slice(&frame[0..6]) != wmac || self.nat.is_none() {
            return false;
        }
        self.route_offloaded(Side::Wan, hdr, frame, now, out)
    }

    fn route_offloaded(
        &mut self,
        from: Side,
        hdr: &VnetHdr,
        frame: &[u8],
        now: Millis,
        out: &mut Outbox,
    ) -> bool {
        if !self.offload_candidate(hdr, frame) {
            return false;
        }
        let v = match from {
            Side::Lan => self.classify_lan(frame, Some(hdr), now),
            Side::Wan => self.classify_wan(frame, Some(hdr), now),
        };
        let carry_out = match &v {
            Verdict::Forward(f) => {
                f.fragment.is_none()
                    && (f.to == Side::Wan || self.cfg.subnet.contains(f.next_hop))
                    && (from == Side::Lan || f.nat.is_some())
                    && self.neighbour(f.to, f.next_hop).is_some()
            }
            // A NAT refusal is the same for the whole frame as for each of
            // its segments: count it once.
            Verdict::Drop(GwDrop::Nat(_)) => true,
            _ => false,
        };
        if carry_out {
            self.act(v, frame, Some(hdr), now, out);
        }
        carry_out
    }

    /// An unfragmented TCP (or, without GSO, UDP) IPv4 frame with a sound
    /// header, a TTL to spare and offload work that we know how to pass on.
    fn offload_candidate(&self, hdr: &VnetHdr, frame: &[u8]) -> bool {
        if frame.len() < ETH || ipv4::get16(frame, 12) != ETHERTYPE_IPV4 {
            return false;
        }
        let Some(h) = Ipv4Hdr::parse(&frame[ETH..]) else {
            return false;
        };
        let proto_ok = match h.proto {
            PROTO_TCP => !hdr.is_gso() || hdr.gso_type & !GSO_ECN == GSO_TCPV4,
            PROTO_UDP => !hdr.is_gso(),
            _ => false,
        };
        proto_ok && !h.is_fragment() && h.ttl > 1 && ipv4::ip_checksum_ok(&frame[ETH..], h.ihl)
    }
}
