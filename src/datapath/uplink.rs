//! The gateway's side of the switch: what the gateway produced (its
//! outbox) delivered to the ports or the uplink, the uplink read and
//! routed, the gateway's timers and announcements, and the accessors the
//! control plane reads them through.

use super::*;

impl<P: Port, U: Port> Switch<P, U> {
    /// Delivers what the gateway produced: LAN frames through the switch
    /// (as received on the gateway port), uplink frames out of the uplink.
    pub(super) fn flush_outbox(&mut self, now: Millis) {
        let Switch {
            ports,
            fdb,
            mtu,
            outbox,
            uplink,
            gw_counters,
            scratch,
            scratch2,
            captures,
            directory,
            run,
            ..
        } = self;
        let dir = directory.as_ref();
        let overlay = dir.map(Directory::overlay_port);
        // Rare (the gateway's first ARP for a remote port): no allocation
        // unless it happens.
        let mut answers = Vec::new();
        for i in 0..outbox.len() {
            let (eg, whole) = outbox.get(i);
            let frame = &whole[VNET_HDR_LEN..];
            let hdr = VnetHdr::parse(whole).unwrap_or_default();
            match eg {
                Egress::Lan => {
                    gw_counters.rx_packets += 1;
                    gw_counters.rx_bytes += frame.len() as u64;
                    let limit = (!hdr.is_gso()).then_some(*mtu);
                    let decision = decide_in(fdb, dir, frame, GW_PORT, limit, now).decision;
                    if !captures.is_empty() {
                        let at = Point::Port(GW_PORT);
                        record(captures, ports, frame, at, decision, overlay);
                    }
                    match decision {
                        Decision::Unicast(out) => {
                            unicast(ports, run, out, &hdr, whole, scratch, scratch2)
                        }
                        Decision::Flood(_) => {
                            flood(ports, run, GW_PORT, None, whole, scratch, scratch2)
                        }
                        Decision::FloodLocal(_) => {
                            flood(ports, run, GW_PORT, overlay, whole, scratch, scratch2)
                        }
                        // The gateway asked for a remote port: the answer
                        // goes back to it once the outbox is sent.
                        Decision::Answer(mac) => {
                            if let Some(reply) = arp_answer(frame, mac) {
                                answers.push(reply);
                            }
                        }
                        Decision::Drop(r) => gw_counters.drops.add(r),
                    }
                }
                Egress::Wan => {
                    if !captures.is_empty() {
                        captures.record(frame, || std::iter::once(Point::Uplink));
                    }
                    if let Some(u) = uplink.as_mut() {
                        if u.state == LinkState::Up {
                            uplink_send(u, run.enabled, &hdr, whole, scratch, scratch2);
                        } else {
                            u.counters.drops.add(DropReason::UplinkDown);
                        }
                    }
                }
            }
        }
        outbox.clear();
        if !answers.is_empty() {
            self.arp_answered += answers.len() as u64;
            for reply in answers {
                self.gateway.handle_lan(&reply, now, &mut self.outbox);
            }
            self.flush_outbox(now);
        }
    }

    /// Reads and routes up to `budget` frames from the uplink.
    pub fn poll_uplink(&mut self, now: Millis, budget: usize) -> io::Result<usize> {
        let r = self.poll_uplink_frames(now, budget);
        self.flush_tx();
        self.log_gateway_events(now);
        r
    }

    fn poll_uplink_frames(&mut self, now: Millis, budget: usize) -> io::Result<usize> {
        let mut n = 0;
        while n < budget {
            let Switch {
                rx,
                gateway,
                outbox,
                uplink,
                scratch,
                ..
            } = self;
            let Some(u) = uplink.as_mut() else {
                return Ok(n);
            };
            // The uplink reads one frame at a time into the first slot (it
            // is rewritten in place there).
            let buf = rx.buf_mut(0);
            let len = match u.port.recv(buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            n += 1;
            u.counters.rx_packets += 1;
            u.counters.rx_bytes += len as u64;
            let Some(hdr) = VnetHdr::parse(&buf[..len]) else {
                u.counters.drops.add(DropReason::Runt);
                continue;
            };
            let frame = &mut buf[VNET_HDR_LEN..len];
            if frame.len() < crate::wire::ETH_HEADER_LEN {
                u.counters.drops.add(DropReason::Runt);
                continue;
            }
            if !self.captures.is_empty() {
                self.captures
                    .record(frame, || std::iter::once(Point::Uplink));
            }
            if !hdr.is_plain() && gateway.route_offloaded_wan(&hdr, frame, now, outbox) {
                self.flush_outbox(now);
                continue;
            }
            let done = vnet::complete(&hdr, frame, scratch, |seg| {
                gateway.handle_wan(seg, now, outbox)
            });
            if done.is_err() {
                u.counters.drops.add(DropReason::BadOffload);
            }
            self.flush_outbox(now);
        }
        Ok(n)
    }

    /// Runs the gateway's timers; returns when they want to run next.
    pub fn poll_gateway(&mut self, now: Millis) -> Millis {
        let next = self.gateway.poll(now, &mut self.outbox);
        self.log_gateway_events(now);
        self.flush_outbox(now);
        self.flush_tx();
        next
    }

    /// Logs what the gateway reported (address gained or lost, NAT table
    /// full), right after the frame or timer that caused it.
    pub(super) fn log_gateway_events(&mut self, now: Millis) {
        for e in self.gateway.take_events() {
            if e.warn {
                tracing::warn!("{}", e.msg);
            } else {
                tracing::info!("{}", e.msg);
            }
            if self.monitors.on() {
                self.monitors
                    .emit(now, events::Event::Gateway { message: e.msg });
            }
        }
        if self.monitors.on() {
            for f in self.gateway.nat_events() {
                let proto = f.proto.to_string();
                let (original, reply) = (f.original, f.reply);
                self.monitors.emit(
                    now,
                    match f.created {
                        true => events::Event::NatCreated {
                            proto,
                            original,
                            reply,
                        },
                        false => events::Event::NatEnded {
                            proto,
                            original,
                            reply,
                        },
                    },
                );
            }
        }
    }

    /// Sends the gateway's gratuitous ARPs.
    pub fn announce(&mut self, now: Millis) {
        self.gateway.announce(&mut self.outbox);
        self.flush_outbox(now);
        self.flush_tx();
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }
    pub fn gateway_counters(&self) -> &PortCounters {
        &self.gw_counters
    }
    pub fn uplink(&self) -> Option<&UplinkSlot<U>> {
        self.uplink.as_ref()
    }
    /// The uplink, to follow its interface's state (the event loop).
    pub fn uplink_mut(&mut self) -> Option<&mut UplinkSlot<U>> {
        self.uplink.as_mut()
    }
    /// The uplink is up again (or a new interface of its name was opened):
    /// the gateway announces itself there, forgets the neighbours it had
    /// (they may have changed) and asks DHCP again if it uses DHCP.
    pub fn uplink_back(&mut self, now: Millis) {
        self.gateway.uplink_back(&mut self.outbox);
        self.log_gateway_events(now);
        self.flush_outbox(now);
        self.flush_tx();
    }
}
