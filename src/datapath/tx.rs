//! Frame output helpers of the datapath: recording into captures, logging
//! what learning did, flooding and transmitting with per-port counters.
//! Free functions over the switch's parts so the borrow of one port and
//! the shared buffer stay disjoint.
//!
//! Unicast frames go through [`unicast`], which gathers consecutive UDP
//! datagrams of one flow for a TAP into a [`TxRun`] (one write per run,
//! see [`crate::wire::coalesce`]). At most one run is pending, and any
//! other frame to any TAP or overlay port sends it first, so each port
//! gets its frames in exactly the order they were decided. The uplink,
//! another device, has a run of its own ([`uplink_send`]) that does not
//! wait for the TAPs' nor they for it; the public calls of `Switch` that
//! transmit end with [`flush_run`] and [`flush_uplink_run`].
//!
//! A worker thread's call (`--workers`, [`crate::workers`]) defers what it
//! sends to its queue of multi-queue ports into a [`TxBatch`]: the worker
//! writes the batch after it lets go of the switch, so the writes of
//! several workers run at once. Counters count a deferred frame as sent;
//! the worker reports writes that then fail ([`TxFailed`]) and they are
//! moved to their drop reason.

use super::{GW_PORT, LogLimit, PortCounters, PortSlot, UplinkSlot};
use crate::capture::{Captures, Point};
use crate::port::Port;
use crate::switch::{Decision, DropReason, Fdb, Learned, Millis, PortId};
use crate::wire::MacAddr;
use crate::wire::coalesce::{Push, UdpRun};
use crate::wire::vnet::{self, VNET_HDR_LEN, VnetHdr};
use std::io;

/// Records `frame` in the capture sessions that watch where it crossed:
/// its ingress point and wherever the decision sends it.
pub(super) fn record<P>(
    captures: &mut Captures,
    ports: &[Option<PortSlot<P>>],
    frame: &[u8],
    ingress: Point,
    decision: Decision,
    overlay: Option<PortId>,
) {
    let in_id = match ingress {
        Point::Port(id) => id,
        Point::Uplink => PortId::MAX,
    };
    captures.record(frame, || {
        let egress: Box<dyn Iterator<Item = Point>> = match decision {
            Decision::Unicast(out) => Box::new(std::iter::once(Point::Port(out))),
            Decision::Flood(_) | Decision::FloodLocal(_) => {
                let skip = match decision {
                    Decision::FloodLocal(_) => overlay,
                    _ => None,
                };
                Box::new(
                    ports
                        .iter()
                        .enumerate()
                        .filter(move |(i, s)| {
                            let i = *i as PortId;
                            i != in_id && Some(i) != skip && (i == 0 || s.is_some())
                        })
                        .map(|(i, _)| Point::Port(i as PortId)),
                )
            }
            // The answer is recorded as a frame of its own.
            Decision::Drop(_) | Decision::Answer(_) => Box::new(std::iter::empty()),
        };
        std::iter::once(ingress).chain(egress)
    });
}

/// A port's name for logs and events (`gateway` for port 0).
pub(super) fn port_name<P>(ports: &[Option<PortSlot<P>>], p: PortId) -> &str {
    if p == GW_PORT {
        return "gateway";
    }
    ports
        .get(p as usize)
        .and_then(|s| s.as_ref())
        .map_or("?", |s| s.info.name.as_str())
}

/// The monitor's events for what learning did with a frame's source.
pub(super) fn learning_events<P>(
    mon: &mut super::events::Monitors,
    ports: &[Option<PortSlot<P>>],
    learned: Option<Learned>,
    frame: &[u8],
    in_port: PortId,
    now: Millis,
) {
    use super::events::Event;
    let name = |p: PortId| port_name(ports, p).to_string();
    let mac = MacAddr::from_slice(&frame[6..12]);
    match learned {
        Some(Learned::Moved { from }) => mon.emit(
            now,
            Event::MacMoved {
                mac,
                from: name(from),
                to: name(in_port),
            },
        ),
        Some(Learned::New { evicted }) => {
            if let Some((old, port)) = evicted {
                mon.emit(
                    now,
                    Event::MacEvicted {
                        mac: old,
                        port: name(port),
                    },
                );
            }
            mon.emit(
                now,
                Event::MacLearned {
                    mac,
                    port: name(in_port),
                },
            );
        }
        _ => {}
    }
}

pub(super) fn log_learning<P>(
    ports: &[Option<PortSlot<P>>],
    fdb: &Fdb,
    evict_log: &mut LogLimit,
    learned: Option<Learned>,
    frame: &[u8],
    in_port: PortId,
    now: Millis,
) {
    let name = |p: PortId| port_name(ports, p);
    match learned {
        Some(Learned::Moved { from }) => {
            tracing::info!(
                mac = %MacAddr::from_slice(&frame[6..12]),
                "MAC moved from port {} to port {}",
                name(from),
                name(in_port)
            );
        }
        Some(Learned::New { evicted: None }) => {
            tracing::debug!(
                mac = %MacAddr::from_slice(&frame[6..12]),
                port = name(in_port),
                "MAC learned"
            );
        }
        Some(Learned::New {
            evicted: Some((mac, port)),
        }) => {
            if let Some(suppressed) = evict_log.allow(now) {
                tracing::warn!(
                    evicted = %mac,
                    from_port = name(port),
                    suppressed,
                    "MAC table full ({} entries): evicted the oldest entry of the port with the most entries",
                    fdb.max_entries()
                );
            }
        }
        _ => {}
    }
}

/// UDP datagrams gathered for one TAP, not yet written.
pub(super) struct TxRun {
    port: PortId,
    udp: UdpRun,
    /// `--no-udp-coalesce` clears it.
    pub(super) enabled: bool,
    /// The calling worker's batch (queue 0, the event loop's, defers
    /// nothing).
    pub(super) defer: TxBatch,
}

impl TxRun {
    pub(super) fn new(enabled: bool) -> TxRun {
        TxRun {
            port: 0,
            udp: UdpRun::new(),
            enabled,
            defer: TxBatch::default(),
        }
    }
}

/// Bytes a worker's batch holds: what one batch of read frames (8 frames
/// of at most 16 KB together, or one 64 KB super-frame) becomes when
/// flooded to 100 ports. Allocated once per worker; only what is used
/// becomes resident. A frame that does not fit is dropped as
/// `tx_queue_full` (written now, it would overtake the frames before it).
const TX_BATCH_BYTES: usize = 8 << 20;
/// Frames a worker's batch holds.
const TX_BATCH_FRAMES: usize = 4096;

/// One frame in a [`TxBatch`].
#[derive(Clone, Copy, Debug)]
pub struct TxItem {
    pub port: PortId,
    /// The port's `PortSlot::serial` when the frame was decided.
    pub serial: u64,
    start: usize,
    len: usize,
    /// Datagrams in it (a UDP run), and their bytes as counted.
    pub segs: u32,
    pub bytes: u64,
}

/// Frames a worker's call sent to queue [`TxBatch::queue`] of multi-queue
/// ports, in the order they were decided, for the worker to write.
#[derive(Default)]
pub struct TxBatch {
    queue: usize,
    buf: Vec<u8>,
    items: Vec<TxItem>,
}

impl TxBatch {
    /// The batch of worker `queue` (≥ 1), allocated once.
    pub fn new(queue: usize) -> TxBatch {
        TxBatch {
            queue,
            buf: Vec::with_capacity(TX_BATCH_BYTES),
            items: Vec::with_capacity(TX_BATCH_FRAMES),
        }
    }
    pub fn queue(&self) -> usize {
        self.queue
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
    }
    /// Each frame with its port and counts, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&TxItem, &[u8])> {
        self.items
            .iter()
            .map(|i| (i, &self.buf[i.start..i.start + i.len]))
    }
    /// Appends a frame; false when it does not fit (never reallocates).
    fn push(&mut self, port: (PortId, u64), frame: &[u8], segs: u32, bytes: u64) -> bool {
        if self.buf.len() + frame.len() > self.buf.capacity()
            || self.items.len() == self.items.capacity()
        {
            return false;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(frame);
        self.items.push(TxItem {
            port: port.0,
            serial: port.1,
            start,
            len: frame.len(),
            segs,
            bytes,
        });
        true
    }
}

/// Why a worker's deferred write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxFail {
    /// EAGAIN: the queue was full.
    Full,
    /// EINVAL on a UDP super-frame: the kernel refused the type.
    Refused,
    /// Any other error.
    Error,
}

/// A deferred write that failed, reported back to the switch.
#[derive(Clone, Copy, Debug)]
pub struct TxFailed {
    pub port: PortId,
    pub serial: u64,
    pub segs: u32,
    pub bytes: u64,
    pub why: TxFail,
}

impl TxFailed {
    /// What a failed write of `item` with `err` means.
    pub fn of(item: &TxItem, err: &io::Error) -> TxFailed {
        let why = if err.kind() == io::ErrorKind::WouldBlock {
            TxFail::Full
        } else if item.segs > 1 && err.raw_os_error() == Some(libc::EINVAL) {
            TxFail::Refused
        } else {
            TxFail::Error
        };
        TxFailed {
            port: item.port,
            serial: item.serial,
            segs: item.segs,
            bytes: item.bytes,
            why,
        }
    }
}

/// Sends `frame` to port `id` (with its serial), or defers it to the
/// calling worker's batch when the port has that worker's queue; a batch
/// without room says the queue is full.
#[inline]
fn emit<P: Port>(
    port: &mut P,
    id: (PortId, u64),
    defer: &mut TxBatch,
    frame: &[u8],
    segs: u32,
    bytes: u64,
) -> io::Result<()> {
    if defer.queue != 0 && defer.queue < port.queues() {
        return if defer.push(id, frame, segs, bytes) {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        };
    }
    port.send(frame)
}

/// Sends a unicast frame to port `out`: into the pending run when it can
/// join (or start) one, else after the pending run.
#[inline]
pub(super) fn unicast<P: Port>(
    ports: &mut [Option<PortSlot<P>>],
    run: &mut TxRun,
    out: PortId,
    hdr: &VnetHdr,
    whole: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
) {
    let Some(Some(slot)) = ports.get(out as usize) else {
        return;
    };
    if run.enabled && slot.port.takes_udp_gso() && !slot.coalesce_refused {
        if !run.udp.is_empty() && run.port == out {
            match run.udp.push(hdr, whole) {
                Push::Added => return,
                Push::Ends => flush_run(ports, run),
                Push::Alone => {
                    flush_run(ports, run);
                    return send_to(ports, run, out, hdr, whole, copy, seg);
                }
            }
        } else {
            flush_run(ports, run);
        }
        if run.udp.push(hdr, whole) == Push::Added {
            run.port = out;
            return;
        }
    } else {
        flush_run(ports, run);
    }
    send_to(ports, run, out, hdr, whole, copy, seg);
}

fn send_to<P: Port>(
    ports: &mut [Option<PortSlot<P>>],
    run: &mut TxRun,
    out: PortId,
    hdr: &VnetHdr,
    whole: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
) {
    if let Some(Some(slot)) = ports.get_mut(out as usize) {
        transmit(slot, out, &mut run.defer, hdr, whole, copy, seg);
    }
}

/// Writes the pending run, if any, counting each datagram in it.
#[inline]
pub(super) fn flush_run<P: Port>(ports: &mut [Option<PortSlot<P>>], run: &mut TxRun) {
    let Some((whole, segs, bytes)) = run.udp.take() else {
        return;
    };
    // A port removed meanwhile sent its run before it went.
    let Some(Some(slot)) = ports.get_mut(run.port as usize) else {
        return;
    };
    let r = emit(
        &mut slot.port,
        (run.port, slot.serial),
        &mut run.defer,
        whole,
        segs as u32,
        bytes,
    );
    if count_run(r, &mut slot.counters, segs, bytes) {
        slot.coalesce_refused = true;
        tracing::warn!(
            port = %slot.info.name,
            "the kernel refused a UDP super-frame; writing datagrams one by one to this port"
        );
    }
}

/// Counts the write of a run of `segs` datagrams (`bytes` bytes) as sent
/// or as each datagram's drop reason. True when the kernel refused the
/// super-frame itself (the port's probe said it would take them): the
/// caller sends no more runs there.
fn count_run(r: io::Result<()>, c: &mut PortCounters, segs: u16, bytes: u64) -> bool {
    match r {
        Ok(()) => {
            c.tx_packets += segs as u64;
            c.tx_bytes += bytes;
            c.tx_failing = false;
            if segs > 1 {
                c.tx_coalesced += segs as u64;
                c.tx_super_frames += 1;
            }
            false
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            c.drops.add_n(DropReason::TxQueueFull, segs as u64);
            false
        }
        Err(e) if segs > 1 && e.raw_os_error() == Some(libc::EINVAL) => {
            c.drops.add_n(DropReason::BadOffload, segs as u64);
            true
        }
        Err(_) => {
            c.drops.add_n(DropReason::TxError, segs as u64);
            c.tx_failing = true;
            false
        }
    }
}

/// Sends a frame out of the uplink: into the uplink's pending run when it
/// can join (or start) one, else after the run. The uplink's run is its
/// own (it is another device than the TAPs: only its own frames keep
/// their order behind it).
pub(super) fn uplink_send<U: Port>(
    u: &mut UplinkSlot<U>,
    coalesce: bool,
    hdr: &VnetHdr,
    whole: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
) {
    if coalesce && u.port.takes_udp_gso() && !u.coalesce_refused {
        match u.run.push(hdr, whole) {
            Push::Added => return,
            Push::Ends => {
                flush_uplink_run(u);
                if u.run.push(hdr, whole) == Push::Added {
                    return;
                }
            }
            Push::Alone => flush_uplink_run(u),
        }
    } else {
        flush_uplink_run(u);
    }
    send_counted(&mut u.port, &mut u.counters, hdr, whole, copy, seg);
}

/// Sends the uplink's pending run, if any, counting each datagram in it.
pub(super) fn flush_uplink_run<U: Port>(u: &mut UplinkSlot<U>) {
    let Some((whole, segs, bytes)) = u.run.take() else {
        return;
    };
    let r = u.port.send(whole);
    if count_run(r, &mut u.counters, segs, bytes) {
        u.coalesce_refused = true;
        tracing::warn!(
            uplink = %u.ifname,
            "the kernel refused a UDP super-frame; sending datagrams one by one to the uplink"
        );
    }
}

/// Sends a frame (`whole`: virtio-net header + frame) to every port but
/// `in_port` and `skip`, after the pending run.
pub(super) fn flood<P: Port>(
    ports: &mut [Option<PortSlot<P>>],
    run: &mut TxRun,
    in_port: PortId,
    skip: Option<PortId>,
    whole: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
) {
    flush_run(ports, run);
    let hdr = VnetHdr::parse(whole).unwrap_or_default();
    for (i, slot) in ports.iter_mut().enumerate() {
        if i != in_port as usize
            && Some(i as PortId) != skip
            && let Some(slot) = slot
        {
            transmit(slot, i as PortId, &mut run.defer, &hdr, whole, copy, seg);
        }
    }
}

#[inline]
fn transmit<P: Port>(
    slot: &mut PortSlot<P>,
    id: PortId,
    defer: &mut TxBatch,
    hdr: &VnetHdr,
    whole: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
) {
    let vnet = slot.port.vnet_hdr();
    // Counted as `send_counted_with` counts: the frame without its header.
    let hdr_len = if vnet { VNET_HDR_LEN } else { 0 };
    let (port, id) = (&mut slot.port, (id, slot.serial));
    let mut send = |f: &[u8]| emit(port, id, defer, f, 1, (f.len() - hdr_len) as u64);
    send_counted_with(vnet, &mut send, &mut slot.counters, hdr, whole, copy, seg);
}

/// Sends `whole` (virtio-net header + frame) to a port: as it is to a port
/// that takes the header; the bare frame to one that does not, finished and
/// segmented first if the header asks for offload work.
#[inline]
pub(super) fn send_counted(
    port: &mut impl Port,
    counters: &mut PortCounters,
    hdr: &VnetHdr,
    whole: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
) {
    let vnet = port.vnet_hdr();
    send_counted_with(vnet, &mut |f| port.send(f), counters, hdr, whole, copy, seg);
}

/// [`send_counted`] through `send`.
#[inline]
fn send_counted_with(
    vnet: bool,
    send: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    counters: &mut PortCounters,
    hdr: &VnetHdr,
    whole: &[u8],
    copy: &mut Vec<u8>,
    seg: &mut Vec<u8>,
) {
    let mut count = |r: io::Result<()>, len: usize| match r {
        Ok(()) => {
            counters.tx_packets += 1;
            counters.tx_bytes += len as u64;
            counters.tx_failing = false;
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            counters.drops.add(DropReason::TxQueueFull);
        }
        Err(_) => {
            counters.drops.add(DropReason::TxError);
            counters.tx_failing = true;
        }
    };
    let frame = &whole[VNET_HDR_LEN..];
    if vnet {
        count(send(whole), frame.len());
    } else if hdr.is_plain() {
        count(send(frame), frame.len());
    } else {
        let done = vnet::for_each_whole(hdr, frame, copy, seg, |f| {
            let r = send(f);
            count(r, f.len());
        });
        if done.is_err() {
            counters.drops.add(DropReason::BadOffload);
        }
    }
}
