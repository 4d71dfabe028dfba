//! The datapath: the only place that moves frames.
//!
//! [`Switch`] owns the ports, the MAC table, the per-port counters, the
//! gateway and one receive ring ([`FrameRing`]). [`Switch::poll_port`]
//! reads a batch of frames from a port ([`Port::recv_batch`], up to a
//! budget), asks the pure core ([`crate::switch::decide`]) where each goes,
//! and writes it there; frames for the gateway go through its
//! classify-then-act handlers and come back in its outbox. It is generic
//! over [`Port`], so the in-memory tests and benches run exactly this code
//! with [`crate::port::mem::MemPort`].
//!
//! The loop that calls it is [`crate::event_loop`]; the control plane
//! changes the switch only through its command methods (`fdb_flush`,
//! `nat_flush`, `capture_start`...). No allocation per frame: the ring is
//! allocated once, flooding writes the same buffer to each port, and UDP
//! datagrams bound for one TAP gather in one 64 KB buffer allocated with
//! the switch (`tx::TxRun`), those for the uplink in one of the uplink's
//! (`UplinkSlot`), each written as one super-frame before the call that
//! gathered them returns.
//!
//! Files: this one (the switch, its ports and the per-frame `forward`),
//! `uplink.rs` (the gateway's outbox, the uplink, the gateway's timers),
//! `threads.rs` (a worker's batch, `--workers`), `tx.rs` (sending,
//! flooding, UDP runs, a worker's deferred batch), `ports.rs` (per-port
//! facts and counters), `queues.rs` (what the switch shares with workers),
//! `events.rs` (`vswitchctl monitor`).

pub mod events;
mod ports;
pub mod queues;
mod threads;
mod tx;
mod uplink;

use ports::LogLimit;
pub use ports::{LinkState, PortCounters, PortInfo, PortSlot, UplinkSlot};
pub use tx::{TxBatch, TxFail, TxFailed, TxItem};
use tx::{TxRun, flood, flush_run, flush_uplink_run, log_learning, record, unicast, uplink_send};

use crate::capture::{Captures, Format, Point, Session};
use crate::gateway::{Egress, Gateway, Outbox};
use crate::port::{FrameRing, Port};
use crate::switch::directory::{Directory, arp_answer};
use crate::switch::fdb::FdbError;
use crate::switch::{Decision, DropReason, Fdb, Millis, PortId, decide_guarded, decide_in};
use crate::wire::MacAddr;
use crate::wire::vnet::{self, VNET_HDR_LEN, VnetHdr};
use std::io;

/// Frames read from one port per wake-up before moving on to the next. With
/// offloads a frame may be a 64 KB super-frame, so this bounds what a ping
/// from another port waits behind: 16 instead of 64 took the worst ping
/// under a saturating TCP flow from 2.7-5.2 ms to 1.6-2.9 ms with no
/// throughput change beyond noise (BENCHMARKS.md, "Latency under load").
pub const RX_BUDGET: usize = 16;
/// Frames read from a port in one [`Port::recv_batch`].
pub const RX_BATCH: usize = 8;
/// Size of each frame buffer: a virtio-net header plus the largest
/// super-frame a TAP can hand over (64 KB of IP plus headers), with room.
pub const FRAME_BUF: usize = 128 * 1024;

/// The switch: ports, the gateway (port 0), the uplink, the MAC table,
/// counters, and the frame buffers.
pub struct Switch<P, U = P> {
    /// Slot 0 is the gateway's and always `None` here.
    ports: Vec<Option<PortSlot<P>>>,
    fdb: Fdb,
    mtu: usize,
    /// The receive ring: one batch of frames from one port at a time.
    rx: FrameRing,
    gateway: Gateway,
    /// Counters of the gateway port as the switch sees it.
    gw_counters: PortCounters,
    outbox: Outbox,
    uplink: Option<UplinkSlot<U>>,
    /// Ports added since the event loop last registered their fds.
    new_ports: Vec<PortId>,
    /// Live capture sessions (`vswitchctl capture`).
    captures: Captures,
    /// Live event streams (`vswitchctl monitor`).
    monitors: events::Monitors,
    /// The latest time the loop passed in (for events of commands that
    /// take none).
    last_now: Millis,
    /// Reused for finishing checksums and segmenting super-frames.
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
    evict_log: LogLimit,
    /// The overlay's directory (directory mode only).
    directory: Option<Directory>,
    /// ARP requests answered from the directory.
    arp_answered: u64,
    /// UDP datagrams gathered for one TAP, written as one super-frame
    /// before the public call that gathered them returns.
    run: TxRun,
    /// Shared with the worker threads (`--workers` > 1).
    queues: Option<std::sync::Arc<queues::QueueSync>>,
    /// Frames forwarded by each datapath thread (0: the event loop).
    thread_frames: Vec<u64>,
    /// The serial of the last port added.
    last_serial: u64,
}

/// The gateway's port id.
pub const GW_PORT: PortId = 0;

impl<P: Port, U: Port> Switch<P, U> {
    /// A switch whose port 0 is `gateway` (its MAC is pinned there as a
    /// static entry), with an optional uplink.
    pub fn new(mut fdb: Fdb, mtu: usize, gateway: Gateway, uplink: Option<UplinkSlot<U>>) -> Self {
        fdb.add_static(gateway.mac(), GW_PORT)
            .expect("an empty table takes the gateway's unicast MAC");
        let mut captures = Captures::default();
        captures.name(Point::Port(GW_PORT), "gateway");
        if let Some(u) = &uplink {
            captures.name(Point::Uplink, format!("uplink:{}", u.ifname));
        }
        Switch {
            ports: vec![None],
            fdb,
            mtu,
            rx: FrameRing::new(RX_BATCH, FRAME_BUF),
            gateway,
            gw_counters: PortCounters::default(),
            outbox: Outbox::default(),
            uplink,
            new_ports: Vec::new(),
            captures,
            scratch: Vec::with_capacity(FRAME_BUF),
            scratch2: Vec::with_capacity(FRAME_BUF),
            evict_log: LogLimit::default(),
            directory: None,
            arp_answered: 0,
            monitors: events::Monitors::default(),
            last_now: 0,
            run: TxRun::new(true),
            queues: None,
            thread_frames: vec![0],
            last_serial: 0,
        }
    }

    /// Adds a port; returns its id (the lowest free slot above the gateway's).
    pub fn add_port(&mut self, port: P, info: PortInfo) -> PortId {
        // vswitchd gave the port its address and MAC: the gateway's
        // neighbour entry for it is fixed, whatever ARP others send.
        self.gateway.pin_inside(info.addr, info.mac);
        self.gateway.port_addr(&info.name, Some(info.addr));
        if self.monitors.on() {
            let (port, addr) = (info.name.clone(), info.addr);
            self.monitors
                .emit(self.last_now, events::Event::PortAdded { port, addr });
        }
        // Its name answers DNS (when the address is on the subnet).
        self.gateway.dns_set_name(&info.name, info.addr);
        if let Some(d) = self.directory.as_mut() {
            // A local port's address: ARP for it stays on this host.
            let _ = d.insert(info.addr, info.mac, false);
        }
        let name = info.name.clone();
        self.last_serial += 1;
        let slot = Some(PortSlot {
            port,
            info,
            counters: PortCounters::default(),
            coalesce_refused: false,
            serial: self.last_serial,
        });
        let id = match self.ports.iter().skip(1).position(Option::is_none) {
            Some(i) => {
                self.ports[i + 1] = slot;
                (i + 1) as PortId
            }
            None => {
                self.ports.push(slot);
                (self.ports.len() - 1) as PortId
            }
        };
        self.new_ports.push(id);
        self.captures.name(Point::Port(id), name);
        if let Some(q) = &self.queues {
            q.changed();
        }
        id
    }

    /// Publishes a front end over backend ports (by name). Refused, with
    /// nothing changed, when a backend names no port (or see
    /// [`Gateway::publish`](crate::gateway::Gateway::publish)).
    pub fn publish(&mut self, spec: &crate::gateway::nat::PublishSpec) -> Result<(), String> {
        let addr_of = |name: &str| {
            self.ports
                .iter()
                .flatten()
                .find(|s| s.info.name == name)
                .map(|s| s.info.addr)
        };
        if let Some(b) = spec.backends.iter().find(|b| addr_of(&b.name).is_none()) {
            return Err(format!(
                "backend {}:{}: no port {:?}",
                b.name, b.port, b.name
            ));
        }
        let addrs: Vec<(String, std::net::Ipv4Addr)> = spec
            .backends
            .iter()
            .filter_map(|b| addr_of(&b.name).map(|a| (b.name.clone(), a)))
            .collect();
        let r = self.gateway.publish(spec, |n| {
            addrs.iter().find(|(name, _)| name == n).map(|&(_, a)| a)
        });
        // The first front end may have made the NAT table: a monitor already
        // watching hears of its flows too.
        self.gateway.nat_watch(self.monitors.on());
        r
    }

    /// Withdraws a front end; returns how many flows ended with it.
    pub fn unpublish(&mut self, key: &crate::gateway::nat::FrontKey) -> Result<usize, String> {
        self.gateway.unpublish(key)
    }

    /// Ports added since the last call (the event loop registers them).
    pub fn take_new_ports(&mut self) -> Vec<PortId> {
        std::mem::take(&mut self.new_ports)
    }

    /// Removes a port, every MAC entry on it, the NAT flows of its address
    /// and the gateway's neighbour entries for its address and its MAC.
    pub fn remove_port(&mut self, id: PortId) -> Option<PortSlot<P>> {
        if id == GW_PORT {
            return None;
        }
        self.flush_tx();
        let mut slot = self.ports.get_mut(id as usize)?.take()?;
        if let Some(q) = &self.queues {
            // The workers take their fds anew; its queues close once none
            // is reading or writing one.
            q.changed();
            let _closing = q.closing();
            slot.port.close_queues();
        }
        self.fdb.forget_port(id);
        self.gateway.port_addr(&slot.info.name, None);
        if self.monitors.on() {
            let port = slot.info.name.clone();
            self.monitors
                .emit(self.last_now, events::Event::PortRemoved { port });
        }
        self.gateway.forget_inside(slot.info.addr);
        self.gateway.forget_lan_mac(slot.info.mac);
        self.gateway.dns_remove_name(&slot.info.name);
        if let Some(d) = self.directory.as_mut()
            && d.mac_of(slot.info.addr).is_some_and(|(_, remote)| !remote)
        {
            d.remove(slot.info.addr);
        }
        Some(slot)
    }
    pub fn port(&self, id: PortId) -> Option<&PortSlot<P>> {
        self.ports.get(id as usize)?.as_ref()
    }

    /// `(id, slot)` for every port, in id order.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortSlot<P>)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as PortId, s)))
    }

    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.ports()
            .find(|(_, s)| s.info.name == name)
            .map(|(id, _)| id)
    }

    /// The ports' MTU (`--mtu`): longer frames are dropped as `too_big`.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// The overlay's directory, in directory mode.
    pub fn directory(&self) -> Option<&Directory> {
        self.directory.as_ref()
    }

    /// ARP requests the switch answered from the directory.
    pub fn arp_answered(&self) -> u64 {
        self.arp_answered
    }

    /// The port itself, to change it (the overlay's peers).
    pub fn port_mut(&mut self, id: PortId) -> Option<&mut P> {
        Some(&mut self.ports.get_mut(id as usize)?.as_mut()?.port)
    }

    // ---- commands (the control plane's only way to change the engine) ----

    /// Expires aged MAC entries (the timers do it too; views call it first
    /// so what they show is what forwarding sees).
    pub fn fdb_expire(&mut self, now: Millis) {
        self.last_now = now;
        if !self.monitors.on() {
            self.fdb.expire(now);
            return;
        }
        let mut aged = Vec::new();
        self.fdb
            .expire_each(now, |mac, port| aged.push((mac, port)));
        for (mac, port) in aged {
            let port = tx::port_name(&self.ports, port).to_string();
            self.monitors
                .emit(now, events::Event::MacAged { mac, port });
        }
    }

    /// Starts an event stream for the control connection `token`.
    pub fn monitor_start(&mut self, token: u64, instance: &str) {
        self.monitors.start(token, instance);
        self.gateway.nat_watch(true);
    }

    /// Ends the event stream of `token`.
    pub fn monitor_end(&mut self, token: u64) {
        self.monitors.end(token);
        self.gateway.nat_watch(self.monitors.on());
    }

    /// Whether an event stream is open.
    pub fn monitoring(&self) -> bool {
        self.monitors.on()
    }

    pub fn monitor_tokens(&self) -> Vec<u64> {
        self.monitors.tokens()
    }

    /// The event bytes waiting for `token`.
    pub fn monitor_pending(&mut self, token: u64) -> Option<&mut std::collections::VecDeque<u8>> {
        self.monitors.pending(token)
    }
    /// Removes the learned entries of one port, or of all; returns how many.
    pub fn fdb_flush(&mut self, port: Option<PortId>) -> usize {
        self.fdb.flush(port)
    }
    /// Adds a static MAC entry on `port`.
    pub fn fdb_add_static(&mut self, mac: MacAddr, port: PortId) -> Result<(), FdbError> {
        self.fdb.add_static(mac, port)
    }
    /// Switches to directory mode: forwarding follows `dir` from now on.
    /// The ports already there enter it as local.
    pub fn set_directory(&mut self, mut dir: Directory) {
        for (id, s) in self.ports() {
            // (The overlay port's own entry has no MAC: skip it.)
            if id != dir.overlay_port() {
                let _ = dir.insert(s.info.addr, s.info.mac, false);
            }
        }
        self.directory = Some(dir);
    }
    /// The directory, to apply an update.
    pub fn directory_mut(&mut self) -> Option<&mut Directory> {
        self.directory.as_mut()
    }
    /// Removes one MAC entry; whether it was there.
    pub fn fdb_remove(&mut self, mac: MacAddr) -> bool {
        self.fdb.remove(mac)
    }
    /// Removes every NAT flow; `None` when NAT is off.
    /// Removes one NAT flow by its original direction (see
    /// [`crate::gateway::nat::Nat::delete`]); `None` without NAT.
    pub fn nat_delete(
        &mut self,
        proto: u8,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
    ) -> Option<bool> {
        self.gateway.nat_mut().map(|n| n.delete(proto, src, dst))
    }

    pub fn nat_flush(&mut self) -> Option<usize> {
        self.gateway.nat_mut().map(|n| n.flush())
    }
    /// Starts a capture session streamed to control connection `token`.
    pub fn capture_start(
        &mut self,
        token: u64,
        points: Vec<Point>,
        count: Option<u64>,
        format: Format,
    ) {
        self.captures.start(token, points, count, format);
    }
    /// The capture session of `token`, to drain what it recorded.
    pub fn capture_session(&mut self, token: u64) -> Option<&mut Session> {
        self.captures.get_mut(token)
    }
    /// Ends a capture session.
    pub fn capture_end(&mut self, token: u64) -> Option<Session> {
        self.captures.end(token)
    }

    /// Reads and forwards up to `budget` frames from port `id`, a batch
    /// ([`RX_BATCH`]) at a time. Returns how many were read; `Err` only for
    /// a read error other than "no frame".
    pub fn poll_port(&mut self, id: PortId, now: Millis, budget: usize) -> io::Result<usize> {
        let r = self.poll_port_frames(id, now, budget);
        self.flush_tx();
        // What the gateway reported meanwhile (NAT table full, flows
        // created for the monitor), right after the frames that caused it.
        self.log_gateway_events(now);
        r
    }

    /// Turns UDP coalescing for TAP and uplink writes on or off
    /// (`--no-udp-coalesce`).
    pub fn set_udp_coalesce(&mut self, on: bool) {
        self.flush_tx();
        self.run.enabled = on;
    }

    /// Writes the pending UDP runs, the TAPs' and the uplink's (every
    /// public call that transmits ends with it, so nothing waits for the
    /// next batch).
    fn flush_tx(&mut self) {
        flush_run(&mut self.ports, &mut self.run);
        if let Some(u) = self.uplink.as_mut() {
            flush_uplink_run(u);
        }
    }

    fn poll_port_frames(&mut self, id: PortId, now: Millis, budget: usize) -> io::Result<usize> {
        let mut n = 0;
        while n < budget {
            let Some(Some(slot)) = self.ports.get_mut(id as usize) else {
                return Ok(n);
            };
            let got = slot.port.recv_batch(&mut self.rx, budget - n)?;
            for _ in 0..self.rx.runts() {
                slot.counters.drops.add(DropReason::Runt);
            }
            n += got;
            self.thread_frames[0] += self.rx.len() as u64;
            for i in 0..self.rx.len() {
                self.forward(id, i, now);
            }
            if got < RX_BATCH.min(budget) {
                break; // the port is empty
            }
        }
        Ok(n)
    }

    /// Forwards one frame as if it had been received on `id` (tests, benches).
    pub fn inject(&mut self, id: PortId, frame: &[u8], now: Millis) {
        self.rx.clear();
        if let Some(i) = self.rx.put(frame) {
            self.forward(id, i, now);
        }
        self.flush_tx();
    }

    /// Decide, then act, for the frame in receive slot `rx_slot`.
    fn forward(&mut self, in_port: PortId, rx_slot: usize, now: Millis) {
        let len = self.rx.get(rx_slot).len() - VNET_HDR_LEN;
        let guard = {
            let Some(Some(slot)) = self.ports.get_mut(in_port as usize) else {
                return;
            };
            slot.counters.rx_packets += 1;
            slot.counters.rx_bytes += len as u64;
            slot.counters.tx_failing = false;
            slot.info.guard()
        };
        let Switch {
            ports,
            fdb,
            mtu,
            rx,
            gateway,
            gw_counters,
            outbox,
            evict_log,
            scratch,
            scratch2,
            captures,
            directory,
            arp_answered,
            monitors,
            run,
            ..
        } = self;
        let whole = rx.get(rx_slot);
        let frame = &whole[VNET_HDR_LEN..];
        let hdr = VnetHdr::parse(whole).unwrap_or_default();
        // A super-frame's size was bounded per segment by its sender.
        let limit = (!hdr.is_gso()).then_some(*mtu);
        let dir = directory.as_ref();
        let verdict = decide_guarded(fdb, dir, guard.as_ref(), frame, in_port, limit, now);
        log_learning(ports, fdb, evict_log, verdict.learned, frame, in_port, now);
        // For learners (--log-level trace): each frame's decision, as
        // decided. A disabled level costs one cached check.
        tracing::trace!(
            port = tx::port_name(ports, in_port),
            src = ?frame.get(6..12).map(MacAddr::from_slice),
            dst = ?frame.get(0..6).map(MacAddr::from_slice),
            len = frame.len(),
            decision = ?verdict.decision,
            learned = ?verdict.learned,
            "frame"
        );
        if monitors.on() {
            tx::learning_events(monitors, ports, verdict.learned, frame, in_port, now);
        }
        let overlay = dir.map(Directory::overlay_port);
        if !captures.is_empty() {
            record(
                captures,
                ports,
                frame,
                Point::Port(in_port),
                verdict.decision,
                overlay,
            );
        }
        let mut to_gateway = false;
        match verdict.decision {
            Decision::Drop(reason) => {
                if let Some(Some(slot)) = ports.get_mut(in_port as usize) {
                    slot.counters.drops.add(reason);
                }
            }
            Decision::Unicast(GW_PORT) => to_gateway = true,
            Decision::Unicast(out) => unicast(ports, run, out, &hdr, whole, scratch, scratch2),
            Decision::Flood(_) => {
                flood(ports, run, in_port, None, whole, scratch, scratch2);
                to_gateway = true;
            }
            Decision::FloodLocal(_) => {
                flood(ports, run, in_port, overlay, whole, scratch, scratch2);
                to_gateway = true;
            }
            Decision::Answer(mac) => {
                *arp_answered += 1;
                if let Some(reply) = arp_answer(frame, mac) {
                    // A plain frame behind an empty virtio-net header.
                    let mut out = [0u8; VNET_HDR_LEN + crate::wire::build::ARP_FRAME_LEN];
                    out[VNET_HDR_LEN..].copy_from_slice(&reply);
                    if !captures.is_empty() {
                        captures.record(&reply, || std::iter::once(Point::Port(in_port)));
                    }
                    if in_port == GW_PORT {
                        gateway.handle_lan(&reply, now, outbox);
                    } else {
                        let plain = VnetHdr::default();
                        unicast(ports, run, in_port, &plain, &out, scratch, scratch2);
                    }
                }
            }
        }
        if to_gateway {
            gw_counters.tx_packets += 1;
            gw_counters.tx_bytes += len as u64;
            if hdr.is_plain() {
                gateway.handle_lan(frame, now, outbox);
            } else if gateway.route_offloaded_lan(&hdr, frame, now, outbox) {
                // Routed as one frame; the uplink's kernel does the work.
            } else {
                // The gateway takes whole frames: finish or segment first.
                let done = vnet::for_each_whole(&hdr, frame, scratch, scratch2, |f| {
                    gateway.handle_lan(f, now, outbox)
                });
                if done.is_err() {
                    gw_counters.drops.add(DropReason::BadOffload);
                }
            }
        }
        if !self.outbox.is_empty() {
            self.flush_outbox(now);
        }
    }

    pub fn captures(&self) -> &Captures {
        &self.captures
    }
}
