//! What the gateway sends on its own behalf: ARP requests (resolution,
//! probes, gratuitous announcements) and ICMP errors with their rate limit.
//! The frames themselves are built by [`crate::wire::build`].

use super::classify::{IcmpError, is_special};
use super::outbox::Outbox;
use super::{ETH, Gateway, ICMP_DESTS, ICMP_QUOTE_MAX, ICMP_RATE, ICMP_RATE_PER_DEST, Side};
use crate::switch::Millis;
use crate::wire::MacAddr;
use crate::wire::build::{self, Arp};
use crate::wire::ipv4::{Ipv4Hdr, PROTO_ICMP, icmp_is_error};
use std::net::Ipv4Addr;

impl Gateway {
    pub(super) fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    /// Sends an ARP request for `target` out of `side`.
    pub(super) fn arp_request(&mut self, side: Side, target: Ipv4Addr, out: &mut Outbox) {
        let Some(sip) = self.side_ip(side) else {
            return;
        };
        let f = Arp::request(self.side_mac(side), sip, target).frame(MacAddr::BROADCAST);
        out.push(side.into(), &f);
        self.stats.arp_requests_sent += 1;
    }

    /// Sends a gratuitous ARP for the side's own address.
    pub(super) fn gratuitous_arp(&mut self, side: Side, out: &mut Outbox) {
        if let Some(ip) = self.side_ip(side) {
            self.arp_request(side, ip, out);
        }
    }

    /// Token buckets: [`ICMP_RATE_PER_DEST`] per second to one destination,
    /// [`ICMP_RATE`] in all; takes a token from both when it allows.
    fn icmp_allowed(&mut self, dest: u32, now: Millis) -> bool {
        if now.saturating_sub(self.icmp_refill) >= 1000 {
            self.icmp_tokens = ICMP_RATE;
            self.icmp_refill = now;
        }
        if self.icmp_tokens == 0 {
            return false;
        }
        if self.icmp_dest.len() >= ICMP_DESTS && !self.icmp_dest.contains_key(&dest) {
            // Buckets a second old are full again anyway: drop them.
            self.icmp_dest
                .retain(|_, (_, t)| now.saturating_sub(*t) < 1000);
            if self.icmp_dest.len() >= ICMP_DESTS {
                return false;
            }
        }
        let b = self
            .icmp_dest
            .entry(dest)
            .or_insert((ICMP_RATE_PER_DEST, now));
        if now.saturating_sub(b.1) >= 1000 {
            *b = (ICMP_RATE_PER_DEST, now);
        }
        if b.0 == 0 {
            return false;
        }
        b.0 -= 1;
        self.icmp_tokens -= 1;
        true
    }

    /// Sends an ICMP error about `frame` (received on `side`) back to its
    /// sender, from the gateway's address on that side. Never about an ICMP
    /// error, a later fragment, or a broadcast/multicast sender (RFC 1122).
    pub(super) fn icmp_error(
        &mut self,
        side: Side,
        frame: &[u8],
        error: IcmpError,
        now: Millis,
        out: &mut Outbox,
    ) {
        let ip = &frame[ETH..];
        let Some(h) = Ipv4Hdr::parse(ip) else { return };
        let Some(src_ip) = self.side_ip(side) else {
            return;
        };
        if !h.has_l4()
            || is_special(Ipv4Addr::from(h.src))
            || !MacAddr::from_slice(&frame[6..12]).is_valid_source()
            || (h.proto == PROTO_ICMP
                && h.total_len > h.ihl
                && (icmp_is_error(ip[h.ihl]) || ip[h.ihl] > 18))
        {
            return;
        }
        if !self.icmp_allowed(u32::from_be_bytes(h.src), now) {
            self.stats.icmp_errors_suppressed += 1;
            return;
        }
        let hdr = build::Ipv4 {
            src: src_ip,
            dst: Ipv4Addr::from(h.src),
            proto: PROTO_ICMP,
            ttl: 64,
            id: self.next_ip_id(),
            dont_frag: false,
        };
        let quote = &ip[..h.total_len.min(ICMP_QUOTE_MAX)];
        let f = build::icmp_error(
            MacAddr::from_slice(&frame[6..12]),
            self.side_mac(side),
            hdr,
            error.wire(),
            quote,
        );
        out.push(side.into(), &f);
        self.stats.icmp_errors_sent += 1;
    }
}
