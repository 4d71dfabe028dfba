//! The event loop: the one thread that waits on every file descriptor and
//! hands each event to its owner. It sits above both the datapath (the
//! [`Switch`], which moves frames) and the control plane (the control
//! socket, metrics, port management), so neither imports the other's
//! insides; as Firecracker keeps its `event_handler` apart from the device.
//!
//! [`run`]: epoll over the TAP fds, the uplink, the control and metrics
//! sockets and a signalfd; level-triggered, with a bounded number of frames
//! per port per wake-up so one busy port cannot starve the others or the
//! control socket. Timers (MAC aging, the gateway's stacks, DHCP, the NAT
//! sweep, vanished namespaces) run when due, at least every second. Control
//! requests run between batches of frames, so the engine needs no lock.
//! The [`Clock`] is read here and passed down as a parameter.

use crate::control::api::PortControl;
use crate::control::netlink::{LinkEvent, LinkWatch};
use crate::control::server::{Outcome, Server};
use crate::control::{self, Instance};
use crate::datapath::{LinkState, RX_BUDGET, Switch};
use crate::port::{Port, Uplink};
use crate::switch::{Millis, PortId};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signalfd::SignalFd;
use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

/// Monotonic milliseconds since the datapath started.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }
    pub fn now(&self) -> Millis {
        self.at(Instant::now())
    }
    /// `t` in milliseconds since the clock started.
    pub fn at(&self, t: Instant) -> Millis {
        t.saturating_duration_since(self.0).as_millis() as Millis
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

const TOKEN_SIGNAL: u64 = 0;
const TOKEN_CONTROL: u64 = 1;
const TOKEN_UPLINK: u64 = 2;
const TOKEN_METRICS: u64 = 3;
const TOKEN_DIRECTORY: u64 = 4;
const TOKEN_LINKS: u64 = 5;
/// A worker recorded something for a capture or monitor (`--workers`).
const TOKEN_WORKERS: u64 = 6;
/// Metrics-connection tokens: `TOKEN_METRICS_BASE + connection id`.
pub const TOKEN_METRICS_BASE: u64 = 2 << 32;
/// Control-connection tokens: `TOKEN_CLIENT_BASE + client id`.
pub const TOKEN_CLIENT_BASE: u64 = 1 << 32;
/// Port tokens: `TOKEN_PORT_BASE + port id`.
const TOKEN_PORT_BASE: u64 = 16;

/// Adds the fds of ports added since the last call to the epoll set.
fn register_new_ports<P: Port + AsFd, U: Port>(
    sw: &mut Switch<P, U>,
    epoll: &Epoll,
) -> io::Result<()> {
    for id in sw.take_new_ports() {
        if let Some(slot) = sw.port(id) {
            epoll.add(
                slot.port.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_PORT_BASE + id as u64),
            )?;
        }
    }
    Ok(())
}

/// Everything the event loop serves besides the switch.
pub struct LoopParts<'a, P> {
    pub control: &'a mut Server,
    pub metrics: Option<&'a mut Server>,
    pub port_ctl: &'a mut dyn PortControl<P>,
    pub signals: &'a SignalFd,
    pub instance: &'a Instance,
    pub clock: &'a Clock,
    /// How long to poll after traffic (`--busy-poll`, `--busy-poll-adaptive`).
    pub busy_poll: crate::busy_poll::BusyPoll,
}

/// Whether the loop goes on after an event.
enum Next {
    Continue,
    Stop,
}

/// Runs the event loop until SIGINT or SIGTERM arrives on `signals`. The
/// switch is shared with the worker threads (`--workers`): the loop holds
/// its lock while it handles events and timers, never while it waits.
pub fn run<P: Port + AsFd, U: Uplink + AsFd>(
    shared: &std::sync::Mutex<Switch<P, U>>,
    mut parts: LoopParts<'_, P>,
) -> io::Result<()> {
    let mut guard = crate::datapath::queues::lock(shared);
    let sw = &mut *guard;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let watch = |fd, token| epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token));
    watch(parts.signals.as_fd(), TOKEN_SIGNAL)?;
    watch(parts.control.listener_fd(), TOKEN_CONTROL)?;
    if let Some(m) = parts.metrics.as_deref() {
        watch(m.listener_fd(), TOKEN_METRICS)?;
    }
    register_new_ports(sw, &epoll)?;
    // The uplink, and rtnetlink's link announcements to follow it (down,
    // up, deleted, created again).
    let mut links = None;
    if let Some(u) = sw.uplink() {
        watch(u.port.as_fd(), TOKEN_UPLINK)?;
        let w = LinkWatch::open()?;
        epoll.add(w.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_LINKS))?;
        links = Some(w);
    }
    if let Some(fd) = parts.port_ctl.directory_fd() {
        watch(fd, TOKEN_DIRECTORY)?;
    }
    let from_workers = sw.queue_sync().cloned();
    if let Some(q) = &from_workers {
        watch(q.main_wake_fd().as_fd(), TOKEN_WORKERS)?;
    }
    let mut sync = crate::overlay::SyncStats::default();
    let mut views = control::views::Views::default();
    let clock = parts.clock;
    let mut events = vec![EpollEvent::empty(); 64];
    sw.announce(clock.now());
    let mut timers_due: Millis = 0;
    let mut spin_until: Option<Instant> = None;
    let mut monitoring = sw.monitoring();
    drop(guard);
    loop {
        // One clock read per idle iteration: the loop spins while
        // busy-polling.
        let t = Instant::now();
        let now = clock.at(t);
        if now >= timers_due {
            timers_due = run_timers(
                &mut crate::datapath::queues::lock(shared),
                parts.port_ctl,
                now,
            );
            parts.control.expire_idle(&epoll, t);
            if let Some(m) = parts.metrics.as_deref_mut() {
                m.expire_idle(&epoll, t);
            }
        }
        // After traffic, poll without sleeping for a little while: the reply
        // to what we just forwarded usually comes within microseconds, and
        // catching it without a scheduler wake-up halves the added latency.
        let spinning = spin_until.is_some_and(|until| t < until);
        // A view with rows to write goes on as soon as frames allow.
        let timeout = if spinning || views.has_work() {
            EpollTimeout::ZERO
        } else {
            spin_until = None;
            let ms = timers_due.saturating_sub(now).clamp(1, 1000);
            EpollTimeout::try_from(ms as u32).unwrap_or(EpollTimeout::NONE)
        };
        let n = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            // The lock only for views or monitors: otherwise a spinning
            // loop leaves it to the workers.
            if !views.is_empty() || monitoring {
                let mut guard = crate::datapath::queues::lock(shared);
                let sw = &mut *guard;
                if !views.is_empty() {
                    views.pump(sw, parts.control, &epoll, now);
                }
                // What the timers produced (MACs aged, flows expired)
                // reaches the monitors on an idle switch too.
                if sw.monitoring() {
                    pump_monitors(sw, parts.control, &epoll);
                }
                monitoring = sw.monitoring();
            }
            continue;
        }
        let mut guard = crate::datapath::queues::lock(shared);
        let sw = &mut *guard;
        // Events: take the time again (the wait may have slept).
        let t = Instant::now();
        let now = clock.at(t);
        spin_until = parts.busy_poll.traffic(t);
        for ev in &events[..n] {
            if ev.data() == TOKEN_LINKS {
                if let Some(w) = links.as_mut() {
                    follow_uplink(sw, w, &epoll, now)?;
                }
                continue;
            }
            if ev.data() == TOKEN_WORKERS {
                // What they recorded is written out below.
                if let Some(q) = &from_workers {
                    let _ = q.main_wake_fd().read();
                    if q.failed() {
                        return Err(io::Error::other("a datapath worker failed (logged above)"));
                    }
                }
                continue;
            }
            if ev.data() == TOKEN_DIRECTORY {
                for u in parts.port_ctl.directory_updates() {
                    crate::overlay::apply(sw, u, &mut sync);
                }
                continue;
            }
            if let Next::Stop = dispatch(ev.data(), sw, &mut parts, &epoll, now, &mut views)? {
                return Ok(());
            }
        }
        if !sw.captures().is_empty() {
            pump_captures(sw, parts.control, &epoll);
        }
        if sw.monitoring() {
            pump_monitors(sw, parts.control, &epoll);
        }
        if !views.is_empty() {
            views.pump(sw, parts.control, &epoll, now);
        }
        monitoring = sw.monitoring();
    }
}

/// The timers: vanished namespaces, MAC aging, the gateway's timers.
/// Returns when they are due next (at least every second).
fn run_timers<P: Port, U: Port>(
    sw: &mut Switch<P, U>,
    port_ctl: &mut dyn PortControl<P>,
    now: Millis,
) -> Millis {
    // A namespace deleted underneath us takes its port down.
    for ns in port_ctl.vanished() {
        tracing::warn!(port = %ns, "namespace {ns} was deleted (ip netns del); removing its port");
        if let Err(e) = control::api::port_del(&ns, sw, port_ctl) {
            // No port any more (its TAP went first): let go of the
            // namespace all the same, or it is reported every second.
            tracing::debug!("{e}");
            port_ctl.release(&ns);
        }
    }
    sw.fdb_expire(now);
    let gw_next = sw.poll_gateway(now);
    let fdb_next = sw.fdb().next_expiry().unwrap_or(u64::MAX);
    fdb_next.min(gw_next).min(now + 1000).max(now + 1)
}

/// Follows the uplink's interface from rtnetlink's announcements: down or
/// deleted, frames to it are dropped (`uplink_down`); up again, or created
/// again under its name, it is used (opened anew if it was deleted) and the
/// gateway announces itself there. Each transition is logged once.
fn follow_uplink<P: Port, U: Uplink + AsFd>(
    sw: &mut Switch<P, U>,
    links: &mut LinkWatch,
    epoll: &Epoll,
    now: Millis,
) -> io::Result<()> {
    let mut events = Vec::new();
    if let Err(e) = links.drain(|ev| events.push(ev)) {
        // Announcements were lost (ENOBUFS): look at the link itself.
        tracing::warn!("link announcements lost ({e}); checking the uplink");
        if let Some(u) = sw.uplink() {
            let name = u.ifname.clone();
            match nix::net::if_::if_nametoindex(name.as_str()) {
                Ok(index) => events.push(LinkEvent {
                    index,
                    name: Some(name),
                    up: true,
                    deleted: false,
                }),
                Err(_) => events.push(LinkEvent {
                    index: u.port.index(),
                    name: Some(name),
                    up: false,
                    deleted: true,
                }),
            }
        }
    }
    for ev in events {
        let Some(u) = sw.uplink_mut() else {
            return Ok(());
        };
        let ours = ev.index == u.port.index() && u.state != LinkState::Gone;
        if !ours && ev.name.as_deref() != Some(u.ifname.as_str()) {
            continue; // another interface
        }
        let was = u.state;
        if ev.deleted {
            if ours {
                let _ = epoll.delete(u.port.as_fd());
                u.state = LinkState::Gone;
            }
        } else if !ours {
            // An interface of the uplink's name, new (created again).
            if !ev.up {
                continue; // wait until it is up
            }
            match u.port.reopen() {
                Ok(new) => {
                    if was == LinkState::Up {
                        let _ = epoll.delete(u.port.as_fd());
                    }
                    u.port = new;
                    epoll.add(
                        u.port.as_fd(),
                        EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_UPLINK),
                    )?;
                    u.state = LinkState::Up;
                }
                Err(e) => {
                    tracing::warn!("uplink {} is back but cannot be opened: {e}", u.ifname);
                    continue;
                }
            }
        } else {
            u.state = if ev.up {
                LinkState::Up
            } else {
                LinkState::Down
            };
            // A socket on a link that is down reports errors, not frames:
            // out of the epoll set until the link is up again.
            match (was, u.state) {
                (LinkState::Up, LinkState::Down) => {
                    let _ = epoll.delete(u.port.as_fd());
                }
                (LinkState::Down, LinkState::Up) => epoll.add(
                    u.port.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_UPLINK),
                )?,
                _ => {}
            }
        }
        if u.state == was {
            continue;
        }
        u.since = now;
        let name = u.ifname.clone();
        match u.state {
            LinkState::Up => {
                tracing::info!("uplink {name} is up again; forwarding to it resumes");
                sw.uplink_back(now);
            }
            LinkState::Down => tracing::warn!(
                "uplink {name} is down; frames to it are dropped (uplink_down) until it is up"
            ),
            LinkState::Gone => tracing::warn!(
                "uplink {name} was deleted; frames to it are dropped (uplink_down) until an interface of that name is back"
            ),
        }
    }
    Ok(())
}

/// Hands one epoll event to its owner.
fn dispatch<P: Port + AsFd, U: Port + AsFd>(
    token: u64,
    sw: &mut Switch<P, U>,
    parts: &mut LoopParts<'_, P>,
    epoll: &Epoll,
    now: Millis,
    views: &mut control::views::Views,
) -> io::Result<Next> {
    match token {
        TOKEN_SIGNAL => {
            if let Ok(Some(info)) = parts.signals.read_signal() {
                tracing::info!(signal = info.ssi_signo, "signal received; shutting down");
                return Ok(Next::Stop);
            }
        }
        TOKEN_CONTROL => parts.control.accept(epoll),
        TOKEN_UPLINK => {
            if let Err(e) = sw.poll_uplink(now, RX_BUDGET) {
                tracing::warn!("uplink read failed: {e}");
            }
        }
        TOKEN_METRICS => {
            if let Some(m) = parts.metrics.as_deref_mut() {
                m.accept(epoll);
            }
        }
        t if parts.control.owns(t) => {
            let (inst, port_ctl) = (parts.instance, &mut *parts.port_ctl);
            parts.control.service(epoll, t, |req| {
                control::api::handle_bytes(req, t, sw, inst, port_ctl, now, views)
            });
            register_new_ports(sw, epoll)?;
        }
        t if t >= TOKEN_METRICS_BASE => {
            let inst = parts.instance;
            if let Some(m) = parts.metrics.as_deref_mut() {
                m.service(epoll, t, |req| {
                    Outcome::Reply(control::metrics::http_response(req, sw, inst))
                });
            }
        }
        t => {
            let id = (t - TOKEN_PORT_BASE) as PortId;
            if let Err(e) = sw.poll_port(id, now, RX_BUDGET) {
                // A port whose fd fails (its namespace was destroyed, for
                // one) is taken down; the others carry on.
                let name = sw.port(id).map(|s| s.info.name.clone()).unwrap_or_default();
                tracing::error!(port = %name, "port read failed: {e}; removing the port");
                if let Some(slot) = sw.remove_port(id) {
                    let _ = epoll.delete(slot.port.as_fd());
                }
            }
        }
    }
    Ok(Next::Continue)
}

/// Writes what the capture sessions recorded to their readers; ends the
/// sessions whose reader left or whose count is reached.
/// Sends the event streams (`vswitchctl monitor`) what they have waiting;
/// ends those whose reader left.
fn pump_monitors<P: Port, U: Port>(sw: &mut Switch<P, U>, control: &mut Server, epoll: &Epoll) {
    for token in sw.monitor_tokens() {
        let open = sw
            .monitor_pending(token)
            .is_some_and(|p| control.pump(epoll, token, p));
        if !open {
            sw.monitor_end(token);
        }
    }
}

fn pump_captures<P: Port, U: Port>(sw: &mut Switch<P, U>, control: &mut Server, epoll: &Epoll) {
    for token in sw.captures().tokens() {
        let Some(s) = sw.capture_session(token) else {
            continue;
        };
        let open = control.pump(epoll, token, &mut s.pending);
        let done = s.finished() && s.pending.is_empty();
        if open && !done {
            continue;
        }
        if open {
            control.finish(epoll, token);
        }
        if let Some(s) = sw.capture_end(token) {
            tracing::info!(
                recorded = s.recorded,
                dropped = s.dropped,
                "capture ended ({})",
                if done { "count reached" } else { "reader left" }
            );
        }
    }
}
