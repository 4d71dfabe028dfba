//! The gateway's own presence on each side: its addresses (the uplink's
//! static or from DHCP, also an alias on the LAN stack), the routing table
//! and neighbour views, gratuitous ARP, and the timers ([`Gateway::poll`]):
//! smoltcp's stacks, neighbour probes, the DHCP client, the NAT sweep.

use super::outbox::{Egress, Outbox};
use super::{Gateway, NAT_SWEEP, RouteView, Side, neigh};
use crate::switch::Millis;
use crate::wire::ipv4::Ipv4Net;
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{IpCidr, Ipv4Cidr};
use std::net::Ipv4Addr;

impl Gateway {
    /// The uplink address is also an address of the LAN stack, so
    /// namespaces can ping it.
    pub(super) fn set_lan_alias(&mut self, a: Option<Ipv4Addr>) {
        let lan_cidr = IpCidr::Ipv4(Ipv4Cidr::new(self.cfg.lan_ip, self.cfg.subnet.prefix_len));
        self.lan.iface.update_ip_addrs(|v| {
            v.clear();
            let _ = v.push(lan_cidr);
            if let Some(a) = a {
                let _ = v.push(IpCidr::Ipv4(Ipv4Cidr::new(a, 32)));
            }
        });
    }

    /// The routing table, for `vswitchctl routes`.
    pub fn routes(&self) -> Vec<RouteView> {
        let mut v = vec![RouteView {
            destination: self.cfg.subnet.to_string(),
            via: None,
            dev: "lan".into(),
            src: Some(self.cfg.lan_ip),
        }];
        if let Some(w) = &self.wan
            && let Some((a, l)) = w.addr
        {
            let net = Ipv4Net::of(a, l);
            v.push(RouteView {
                destination: net.to_string(),
                via: None,
                dev: format!("uplink {}", w.cfg.ifname),
                src: Some(a),
            });
            if let Some(gw) = w.gw {
                v.push(RouteView {
                    destination: "default".into(),
                    via: Some(gw),
                    dev: format!("uplink {}", w.cfg.ifname),
                    src: Some(a),
                });
            }
        }
        v
    }

    pub fn neighbours(&self, now: Millis) -> Vec<(String, neigh::NeighView)> {
        let mut v: Vec<_> = self
            .lan_neigh
            .entries(now)
            .into_iter()
            .map(|n| ("lan".to_string(), n))
            .collect();
        if let Some(w) = &self.wan {
            v.extend(
                w.neigh
                    .entries(now)
                    .into_iter()
                    .map(|n| ("uplink".to_string(), n)),
            );
        }
        v
    }

    /// Runs the gateway's timers: the stacks (ARP, DHCP), neighbour probes,
    /// a slice of the NAT sweep. Returns when it wants to run next.
    pub fn poll(&mut self, now: Millis, out: &mut Outbox) -> Millis {
        self.lan
            .poll(now, &mut self.lan_sockets, |f| out.push(Egress::Lan, f));
        let mut probes = Vec::new();
        self.lan_neigh.poll(now, |ip| probes.push((Side::Lan, ip)));
        if let Some(w) = self.wan.as_mut() {
            w.stack
                .poll(now, &mut w.sockets, |f| out.push(Egress::Wan, f));
            w.neigh.poll(now, |ip| probes.push((Side::Wan, ip)));
        }
        for (side, ip) in probes {
            self.arp_request(side, ip, out);
        }
        self.take_dhcp_event(out);
        if let Some(n) = self.nat.as_mut() {
            n.expire(now, NAT_SWEEP);
        }
        self.dns_serve(now, out);
        let mut next = now + 1000;
        if let Some(t) = self.dns_next() {
            next = next.min(t);
        }
        if let Some(t) = self.lan.poll_at(now, &self.lan_sockets) {
            next = next.min(t);
        }
        if let Some(w) = self.wan.as_mut() {
            if let Some(t) = w.stack.poll_at(now, &w.sockets) {
                next = next.min(t);
            }
            if let Some(t) = w.neigh.next_poll() {
                next = next.min(t);
            }
        }
        if let Some(t) = self.lan_neigh.next_poll() {
            next = next.min(t);
        }
        next.max(now)
    }

    /// The uplink came back (up again, or a new interface of its name):
    /// neighbours there are forgotten (they may have changed) and the
    /// gateway announces itself there. The address stays, and so does the
    /// NAT table: a DHCP lease is kept and renewed as usual (as RFC 2131
    /// clients keep a lease across a carrier loss); restarting DHCP would
    /// drop the address for a moment and every flow with it. A server that
    /// no longer knows the lease lets it end, and a new one is asked for.
    pub fn uplink_back(&mut self, out: &mut Outbox) {
        let Some(w) = self.wan.as_mut() else { return };
        w.neigh.flush();
        self.gratuitous_arp(Side::Wan, out);
    }

    /// Announces the gateway: gratuitous ARP on the LAN (and the uplink).
    pub fn announce(&mut self, out: &mut Outbox) {
        self.gratuitous_arp(Side::Lan, out);
        self.gratuitous_arp(Side::Wan, out);
    }

    /// Applies what the DHCP client reports, if anything: called by the
    /// timers and right after a frame reached the uplink stack, so a lease
    /// is used as soon as its ACK is processed.
    pub(super) fn take_dhcp_event(&mut self, out: &mut Outbox) {
        let Some(w) = self.wan.as_mut() else { return };
        let Some(h) = w.dhcp else { return };
        let ev = match w.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            Some(dhcpv4::Event::Configured(c)) => {
                let dns: Vec<Ipv4Addr> = c.dns_servers.iter().copied().collect();
                Some((c.address.address(), c.address.prefix_len(), c.router, dns))
            }
            Some(dhcpv4::Event::Deconfigured) => None,
            None => return,
        };
        let ev = ev.map(|(a, l, router, dns)| {
            self.dns_set_dhcp_servers(dns);
            (a, l, router)
        });
        self.apply_dhcp(ev, out);
    }

    fn apply_dhcp(&mut self, ev: Option<(Ipv4Addr, u8, Option<Ipv4Addr>)>, out: &mut Outbox) {
        let Some(w) = self.wan.as_mut() else { return };
        match ev {
            Some((a, l, router)) => {
                w.stack.iface.update_ip_addrs(|v| {
                    v.clear();
                    let _ = v.push(IpCidr::Ipv4(Ipv4Cidr::new(a, l)));
                });
                let gw = router.or(w.cfg.gw);
                w.stack.iface.routes_mut().remove_default_ipv4_route();
                if let Some(gw) = gw {
                    let _ = w.stack.iface.routes_mut().add_default_ipv4_route(gw);
                }
                w.addr = Some((a, l));
                w.gw = gw;
                let msg = format!(
                    "uplink address gained by DHCP: {a}/{l}, router {}",
                    gw.map_or("none".to_string(), |g| g.to_string())
                );
                self.event(false, msg);
                if let Some(n) = self.nat.as_mut() {
                    n.set_ext_ip(Some(a));
                }
                self.set_lan_alias(Some(a));
                self.gratuitous_arp(Side::Wan, out);
            }
            // smoltcp reports "deconfigured" when its client starts: only a
            // lease that existed can be lost.
            None if w.addr.is_none() => {}
            None => {
                self.dns_set_dhcp_servers(Vec::new());
                let Some(w) = self.wan.as_mut() else { return };
                w.stack.iface.update_ip_addrs(|v| v.clear());
                w.stack.iface.routes_mut().remove_default_ipv4_route();
                let old = w.addr.take();
                w.gw = None;
                w.neigh.flush();
                let msg = format!(
                    "uplink address lost (DHCP lease ended): {}",
                    old.map_or("-".to_string(), |(a, l)| format!("{a}/{l}"))
                );
                self.event(true, msg);
                if let Some(n) = self.nat.as_mut() {
                    n.set_ext_ip(None);
                }
                self.set_lan_alias(None);
            }
        }
    }
}
