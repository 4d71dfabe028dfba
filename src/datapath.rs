//! The datapath: the only place that moves frames.
//!
//! [`Switch`] owns the ports, the MAC table, the per-port counters and one
//! frame buffer. [`Switch::poll_port`] reads up to a budget of frames from a
//! port, asks the pure core ([`crate::switch::decide`]) where each goes, and
//! writes it there. It is generic over [`Port`], so the in-memory tests and
//! benches run exactly this code with [`crate::port::mem::MemPort`].
//!
//! [`run`] is the event loop for real TAP ports: one thread, epoll over the
//! TAP fds, the control socket and a signalfd; level-triggered, with a
//! bounded number of frames per port per wake-up so one busy port cannot
//! starve the others or the control socket. The loop wakes at least when the
//! next MAC entry is due to expire. No allocation per frame: the buffer is
//! allocated once, flooding writes the same buffer to each port.

use crate::control::server::ControlServer;
use crate::port::Port;
use crate::switch::{Decision, DropReason, Fdb, Learned, Millis, PortId, decide};
use crate::wire::MacAddr;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signalfd::SignalFd;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::Instant;

/// Frames read from one port per wake-up before moving on to the next.
pub const RX_BUDGET: usize = 64;
/// Size of the frame buffer: the largest frame a TAP can hand us.
pub const FRAME_BUF: usize = 65_536;

/// Static facts about a port, shown by `vswitchctl ports`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PortInfo {
    /// The namespace name; also the port's name.
    pub name: String,
    pub ifname: String,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// Per-port counters. Drops are counted on the port where they happened:
/// ingress for decision drops, egress for transmit drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl PortCounters {
    pub fn drop_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// A port in the switch.
pub struct PortSlot<P> {
    pub port: P,
    pub info: PortInfo,
    pub counters: PortCounters,
}

/// Rate limiter for log lines about events that can repeat per frame.
#[derive(Default)]
struct LogLimit {
    last: Option<Millis>,
    suppressed: u64,
}

impl LogLimit {
    const INTERVAL_MS: Millis = 10_000;
    /// Whether to log now; returns how many were suppressed since the last.
    fn allow(&mut self, now: Millis) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_sub(t) < Self::INTERVAL_MS => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The switch: ports, MAC table, counters, and the frame buffer.
pub struct Switch<P> {
    ports: Vec<Option<PortSlot<P>>>,
    fdb: Fdb,
    mtu: usize,
    buf: Box<[u8]>,
    evict_log: LogLimit,
}

impl<P: Port> Switch<P> {
    pub fn new(fdb: Fdb, mtu: usize) -> Self {
        Switch {
            ports: Vec::new(),
            fdb,
            mtu,
            buf: vec![0u8; FRAME_BUF].into_boxed_slice(),
            evict_log: LogLimit::default(),
        }
    }

    /// Adds a port; returns its id (the lowest free slot).
    pub fn add_port(&mut self, port: P, info: PortInfo) -> PortId {
        let slot = Some(PortSlot {
            port,
            info,
            counters: PortCounters::default(),
        });
        match self.ports.iter().position(Option::is_none) {
            Some(i) => {
                self.ports[i] = slot;
                i as PortId
            }
            None => {
                self.ports.push(slot);
                (self.ports.len() - 1) as PortId
            }
        }
    }

    /// Removes a port and every MAC entry on it.
    pub fn remove_port(&mut self, id: PortId) -> Option<PortSlot<P>> {
        let slot = self.ports.get_mut(id as usize)?.take()?;
        self.fdb.forget_port(id);
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

    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }
    pub fn fdb_mut(&mut self) -> &mut Fdb {
        &mut self.fdb
    }

    /// Reads and forwards up to `budget` frames from port `id`. Returns how
    /// many were read; `Err` only for a read error other than "no frame".
    pub fn poll_port(&mut self, id: PortId, now: Millis, budget: usize) -> io::Result<usize> {
        let mut n = 0;
        while n < budget {
            let Some(Some(slot)) = self.ports.get_mut(id as usize) else {
                return Ok(n);
            };
            let len = match slot.port.recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            n += 1;
            self.forward(id, len, now);
        }
        Ok(n)
    }

    /// Forwards one frame as if it had been received on `id` (tests, benches).
    pub fn inject(&mut self, id: PortId, frame: &[u8], now: Millis) {
        let len = frame.len().min(self.buf.len());
        self.buf[..len].copy_from_slice(&frame[..len]);
        self.forward(id, len, now);
    }

    /// Decide, then act, for the frame in `self.buf[..len]`.
    fn forward(&mut self, in_port: PortId, len: usize, now: Millis) {
        let Switch {
            ports,
            fdb,
            mtu,
            buf,
            evict_log,
        } = self;
        let frame = &buf[..len];
        {
            let Some(Some(slot)) = ports.get_mut(in_port as usize) else {
                return;
            };
            slot.counters.rx_packets += 1;
            slot.counters.rx_bytes += len as u64;
        }
        let verdict = decide(fdb, frame, in_port, *mtu, now);
        match verdict.learned {
            Some(Learned::Moved { from }) => {
                let name = |p: PortId| {
                    ports
                        .get(p as usize)
                        .and_then(|s| s.as_ref())
                        .map_or("?", |s| s.info.name.as_str())
                };
                tracing::debug!(
                    mac = %MacAddr::from_slice(&frame[6..12]),
                    "MAC moved from port {} to port {}",
                    name(from),
                    name(in_port)
                );
            }
            Some(Learned::New {
                evicted: Some((mac, port)),
            }) => {
                if let Some(suppressed) = evict_log.allow(now) {
                    tracing::warn!(
                        evicted = %mac,
                        from_port = port,
                        suppressed,
                        "MAC table full ({} entries): evicting the oldest entry of the port with the most entries",
                        fdb.max_entries()
                    );
                }
            }
            _ => {}
        }
        match verdict.decision {
            Decision::Drop(reason) => {
                if let Some(Some(slot)) = ports.get_mut(in_port as usize) {
                    slot.counters.drops[reason as usize] += 1;
                }
            }
            Decision::Unicast(out) => {
                if let Some(Some(slot)) = ports.get_mut(out as usize) {
                    transmit(slot, frame);
                }
            }
            Decision::Flood(_) => {
                for (i, slot) in ports.iter_mut().enumerate() {
                    if i == in_port as usize {
                        continue;
                    }
                    if let Some(slot) = slot {
                        transmit(slot, frame);
                    }
                }
            }
        }
    }
}

#[inline]
fn transmit<P: Port>(slot: &mut PortSlot<P>, frame: &[u8]) {
    match slot.port.send(frame) {
        Ok(()) => {
            slot.counters.tx_packets += 1;
            slot.counters.tx_bytes += frame.len() as u64;
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            slot.counters.drops[DropReason::TxQueueFull as usize] += 1;
        }
        Err(_) => {
            slot.counters.drops[DropReason::TxError as usize] += 1;
        }
    }
}

/// Monotonic milliseconds since the datapath started.
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }
    pub fn now(&self) -> Millis {
        self.0.elapsed().as_millis() as Millis
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

const TOKEN_SIGNAL: u64 = 0;
const TOKEN_CONTROL: u64 = 1;
/// Control-connection tokens: `TOKEN_CLIENT_BASE + client id`.
pub const TOKEN_CLIENT_BASE: u64 = 1 << 32;
/// Port tokens: `TOKEN_PORT_BASE + port id`.
const TOKEN_PORT_BASE: u64 = 16;

/// Static facts about the running instance, for `vswitchctl status`.
#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    pub started: std::time::SystemTime,
}

/// Runs the event loop until SIGINT or SIGTERM arrives on `signals`.
pub fn run<P: Port + AsFd>(
    sw: &mut Switch<P>,
    control: &mut ControlServer,
    signals: &SignalFd,
    instance: &Instance,
    clock: &Clock,
) -> io::Result<()> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(signals, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGNAL))?;
    epoll.add(
        control.listener(),
        EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CONTROL),
    )?;
    for (id, slot) in sw.ports() {
        epoll.add(
            slot.port.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_PORT_BASE + id as u64),
        )?;
    }
    let mut events = vec![EpollEvent::empty(); 64];
    loop {
        let now = clock.now();
        sw.fdb_mut().expire(now);
        // Sleep until the next entry expires, at most a second.
        let timeout_ms = sw
            .fdb()
            .next_expiry()
            .map_or(1000, |t| t.saturating_sub(now).clamp(1, 1000));
        let n = match epoll.wait(
            &mut events,
            EpollTimeout::try_from(timeout_ms as u32).unwrap_or(EpollTimeout::NONE),
        ) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let now = clock.now();
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_SIGNAL => {
                    if let Ok(Some(info)) = signals.read_signal() {
                        tracing::info!(signal = info.ssi_signo, "signal received; shutting down");
                        return Ok(());
                    }
                }
                TOKEN_CONTROL => control.accept(&epoll),
                t if t >= TOKEN_CLIENT_BASE => {
                    control.service(&epoll, t, ev.events(), |req| {
                        crate::control::api::handle(req, sw, instance, now)
                    });
                }
                t => {
                    let id = (t - TOKEN_PORT_BASE) as PortId;
                    if let Err(e) = sw.poll_port(id, now, RX_BUDGET) {
                        // A port whose fd fails (its namespace was destroyed,
                        // for one) is taken down; the others carry on.
                        let name = sw.port(id).map(|s| s.info.name.clone()).unwrap_or_default();
                        tracing::error!(port = %name, "port read failed: {e}; removing the port");
                        if let Some(slot) = sw.remove_port(id) {
                            let _ = epoll.delete(slot.port.as_fd());
                        }
                    }
                }
            }
        }
    }
}
