//! Ports: where frames enter and leave the switch.
//!
//! [`Port`] is the whole contract the datapath needs: a non-blocking receive
//! of one frame and a send of one frame, and [`Port::recv_batch`], which
//! fills a [`FrameRing`] with as many frames as are waiting (up to its size)
//! in one call. Its default is a loop of `recv` until the port is empty; a
//! port that can do better (io_uring, a multi-queue TAP, AF_XDP) overrides
//! it and the datapath does not change. [`tap::Tap`] is the real thing (a TAP
//! device inside a network namespace); [`mem::MemPort`] is an in-memory
//! double for tests and benches that drive the same pipeline without root.

pub mod mem;
pub mod raw;
pub mod tap;
pub mod vxlan;

use crate::wire::MacAddr;
use crate::wire::vnet::VNET_HDR_LEN;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};

/// A batch stops once it holds this many bytes: small frames come in
/// batches, a super-frame comes alone and is forwarded while it is still in
/// the cache (eight 64 KB frames read before the first is written out cost
/// half the TCP throughput: the copy out of the buffer found it evicted).
pub const BATCH_BYTES: usize = 16 * 1024;

/// A small ring of frame buffers, each frame stored behind a virtio-net
/// header (all zero for ports that take none), so the datapath treats every
/// frame alike. Allocated once; reused for every batch.
pub struct FrameRing {
    bufs: Vec<Box<[u8]>>,
    /// Length (header included) of the frame in each filled slot.
    lens: Vec<usize>,
    /// Frames read that were too short to hold their header.
    runts: usize,
}

impl FrameRing {
    /// `slots` buffers of `size` bytes (a header plus the largest frame).
    pub fn new(slots: usize, size: usize) -> FrameRing {
        FrameRing {
            bufs: (0..slots.max(1))
                .map(|_| vec![0u8; size].into_boxed_slice())
                .collect(),
            lens: Vec::with_capacity(slots),
            runts: 0,
        }
    }
    /// How many frames the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }
    /// Frames in the ring.
    pub fn len(&self) -> usize {
        self.lens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
    /// Frames of the last batch dropped as too short for their header.
    pub fn runts(&self) -> usize {
        self.runts
    }
    /// Empties the ring for the next batch.
    pub fn clear(&mut self) {
        self.lens.clear();
        self.runts = 0;
    }
    /// Frame `i` behind its virtio-net header.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }
    /// Copies `frame` into the next free slot behind an all-zero header
    /// (cut to the buffer); returns its slot, or `None` when the ring is
    /// full.
    pub fn put(&mut self, frame: &[u8]) -> Option<usize> {
        let i = self.lens.len();
        let buf = self.bufs.get_mut(i)?;
        let len = frame.len().min(buf.len() - VNET_HDR_LEN);
        buf[..VNET_HDR_LEN].fill(0);
        buf[VNET_HDR_LEN..VNET_HDR_LEN + len].copy_from_slice(&frame[..len]);
        self.lens.push(VNET_HDR_LEN + len);
        Some(i)
    }
    /// Buffer `i` whole (to read into, or to build a frame in).
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }
    /// Reads one frame from `port` into the next free slot, behind a
    /// header; `Ok(false)` when the port has none waiting.
    fn recv_one<P: Port + ?Sized>(&mut self, port: &mut P) -> io::Result<bool> {
        let i = self.lens.len();
        let vnet = port.vnet_hdr();
        let buf = &mut self.bufs[i];
        let got = loop {
            let r = if vnet {
                port.recv(buf)
            } else {
                port.recv(&mut buf[VNET_HDR_LEN..])
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match got {
            Ok(len) if vnet && len < VNET_HDR_LEN => self.runts += 1,
            Ok(len) if vnet => self.lens.push(len),
            Ok(len) => {
                buf[..VNET_HDR_LEN].fill(0);
                self.lens.push(VNET_HDR_LEN + len);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
        Ok(true)
    }
}

/// A frame source and sink.
pub trait Port {
    /// Whether frames read from and written to this port carry a
    /// virtio-net header (`wire::vnet`) in front.
    fn vnet_hdr(&self) -> bool {
        false
    }
    /// Whether the port takes UDP segmentation-offload super-frames
    /// (`wire::coalesce`) behind its virtio-net header.
    fn takes_udp_gso(&self) -> bool {
        false
    }
    /// How many queues the port has (`--workers`): queue 0 is the one
    /// [`Port::recv`] and [`Port::send`] use; a worker thread `k` reads and
    /// writes queue `k` through [`Port::queue_fd`].
    fn queues(&self) -> usize {
        1
    }
    /// The fd of queue `k` (1 ≤ k < [`Port::queues`]) for a worker thread.
    fn queue_fd(&self, _k: usize) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Closes queues 1 and up (the port is being removed; the caller made
    /// sure no worker uses them any more).
    fn close_queues(&mut self) {}
    /// Reads one frame into `buf` (header first if [`Port::vnet_hdr`]).
    /// Returns `ErrorKind::WouldBlock` when no frame is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (header first if [`Port::vnet_hdr`]).
    /// `ErrorKind::WouldBlock` means the port's queue is full.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Empties `ring` and fills it with up to `max` (and at most its
    /// capacity) waiting frames, each behind a virtio-net header. Returns how
    /// many frames were read (short ones included, counted in
    /// [`FrameRing::runts`]); `Err` only when a read fails before any frame.
    fn recv_batch(&mut self, ring: &mut FrameRing, max: usize) -> io::Result<usize> {
        ring.clear();
        let mut read = 0;
        let mut bytes = 0;
        while read < max.min(ring.capacity()) && ring.len() < ring.capacity() && bytes < BATCH_BYTES
        {
            match ring.recv_one(self) {
                Ok(true) => {
                    read += 1;
                    bytes += ring.lens.last().copied().unwrap_or(0);
                }
                Ok(false) => break,
                // The error comes back on the next call; deliver what we have.
                Err(_) if read > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(read)
    }
    /// For an overlay port: the remote VTEP a MAC was last seen behind.
    fn vtep_of(&self, _mac: MacAddr) -> Option<Ipv4Addr> {
        None
    }
    /// For an overlay port: what `vswitchctl overlay` shows.
    fn overlay(&self) -> Option<vxlan::OverlayView> {
        None
    }
    /// For an overlay port: the endpoint, to set its hosts and remote MACs
    /// from the directory.
    fn vxlan_mut(&mut self) -> Option<&mut vxlan::Vxlan> {
        None
    }
}

/// An uplink that can be opened again by its name, after its interface
/// was deleted and created again (the event loop watches link changes).
pub trait Uplink: Port + Sized {
    fn name(&self) -> &str;
    /// The interface index it is bound to.
    fn index(&self) -> u32;
    fn reopen(&self) -> io::Result<Self>;
}

/// The ports a running daemon has: TAPs in namespaces and, with an
/// overlay, one VXLAN endpoint.
pub enum AnyPort {
    Tap(tap::Tap),
    Vxlan(Box<vxlan::Vxlan>),
}

impl Port for AnyPort {
    fn vnet_hdr(&self) -> bool {
        match self {
            AnyPort::Tap(t) => t.vnet_hdr(),
            AnyPort::Vxlan(v) => v.vnet_hdr(),
        }
    }
    #[inline]
    fn takes_udp_gso(&self) -> bool {
        match self {
            AnyPort::Tap(t) => t.takes_udp_gso(),
            AnyPort::Vxlan(_) => false,
        }
    }
    fn queues(&self) -> usize {
        match self {
            AnyPort::Tap(t) => t.queues(),
            AnyPort::Vxlan(_) => 1,
        }
    }
    fn queue_fd(&self, k: usize) -> Option<BorrowedFd<'_>> {
        match self {
            AnyPort::Tap(t) => t.queue_fd(k),
            AnyPort::Vxlan(_) => None,
        }
    }
    fn close_queues(&mut self) {
        if let AnyPort::Tap(t) = self {
            t.close_queues();
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            AnyPort::Tap(t) => t.recv(buf),
            AnyPort::Vxlan(v) => v.recv(buf),
        }
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        match self {
            AnyPort::Tap(t) => t.send(frame),
            AnyPort::Vxlan(v) => v.send(frame),
        }
    }
    fn vtep_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        match self {
            AnyPort::Tap(_) => None,
            AnyPort::Vxlan(v) => v.vtep_of(mac),
        }
    }
    fn overlay(&self) -> Option<vxlan::OverlayView> {
        match self {
            AnyPort::Tap(_) => None,
            AnyPort::Vxlan(v) => Some(v.view()),
        }
    }
    fn vxlan_mut(&mut self) -> Option<&mut vxlan::Vxlan> {
        match self {
            AnyPort::Tap(_) => None,
            AnyPort::Vxlan(v) => Some(v),
        }
    }
}

impl AsFd for AnyPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AnyPort::Tap(t) => t.as_fd(),
            AnyPort::Vxlan(v) => v.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A port that hands out scripted results (errors other than an
    /// interrupt stay, as a dead fd's do).
    struct Script {
        vnet: bool,
        rx: VecDeque<io::Result<Vec<u8>>>,
    }

    impl Port for Script {
        fn vnet_hdr(&self) -> bool {
            self.vnet
        }
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.rx.pop_front() {
                Some(Ok(f)) => {
                    buf[..f.len()].copy_from_slice(&f);
                    Ok(f.len())
                }
                // A failing fd keeps failing; an interrupt happens once.
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Err(e),
                Some(Err(e)) => {
                    let again = io::Error::new(e.kind(), e.to_string());
                    self.rx.push_front(Err(e));
                    Err(again)
                }
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
        fn send(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    fn port(vnet: bool, rx: Vec<io::Result<Vec<u8>>>) -> Script {
        Script {
            vnet,
            rx: rx.into(),
        }
    }

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_the_limits() {
        let mut ring = FrameRing::new(4, 256);
        let frames = (1..=6u8).map(|i| Ok(vec![i; 20])).collect();
        let mut p = port(false, frames);
        assert_eq!(p.recv_batch(&mut ring, 64).unwrap(), 4, "ring size");
        assert_eq!(ring.len(), 4);
        // Behind an all-zero header, in order.
        assert_eq!(&ring.get(0)[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&ring.get(3)[VNET_HDR_LEN..], &[4u8; 20]);
        assert_eq!(p.recv_batch(&mut ring, 1).unwrap(), 1, "max");
        assert_eq!(&ring.get(0)[VNET_HDR_LEN..], &[5u8; 20]);
        assert_eq!(p.recv_batch(&mut ring, 64).unwrap(), 1, "then empty");
        assert_eq!(p.recv_batch(&mut ring, 64).unwrap(), 0);
        assert!(ring.is_empty());
    }

    #[test]
    fn short_frames_interrupts_and_errors() {
        let mut ring = FrameRing::new(8, 256);
        let mut p = port(
            true,
            vec![
                Ok(vec![1; VNET_HDR_LEN - 1]),
                Err(io::ErrorKind::Interrupted.into()),
                Ok(vec![2; VNET_HDR_LEN + 14]),
                Err(io::Error::other("gone")),
            ],
        );
        // The runt is counted, the interrupt retried, the error held back
        // until the frame read before it is delivered.
        assert_eq!(p.recv_batch(&mut ring, 64).unwrap(), 2);
        assert_eq!(ring.runts(), 1);
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.get(0), &[2; VNET_HDR_LEN + 14][..]);
        assert!(p.recv_batch(&mut ring, 64).is_err());
    }

    #[test]
    fn put_cuts_to_the_buffer() {
        let mut ring = FrameRing::new(1, VNET_HDR_LEN + 10);
        assert_eq!(ring.put(&[7; 30]), Some(0));
        assert_eq!(ring.get(0).len(), VNET_HDR_LEN + 10);
        assert_eq!(ring.put(&[7; 3]), None, "full");
    }
}
