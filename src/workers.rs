//! Worker threads (`--workers N`): more than one core for the datapath.
//!
//! With N > 1 every TAP is a multi-queue device with N queues
//! ([`crate::port::tap`]); the kernel puts each flow from a namespace on
//! one queue (by flow hash, and on the queue that last wrote the flow's
//! other direction). The event loop keeps queue 0, the uplink, the overlay,
//! the control socket and the timers; worker `k` (1..N) waits on queue `k`
//! of every port in its own epoll set and, for each ready queue:
//!
//! 1. reads a batch of frames into its own ring, without the switch;
//! 2. takes the switch's lock and hands the batch to
//!    [`Switch::forward_ring`]: the same decisions, learning, NAT,
//!    gateway, captures and counters as the event loop's frames (one copy
//!    of the logic, one table); frames for queue `k` of multi-queue ports
//!    are appended to the worker's [`TxBatch`] instead of written;
//! 3. lets go of the switch and writes the batch to its queues.
//!
//! The reads and writes, about three quarters of the datapath's CPU in the
//! profiles (BENCHMARKS.md), so run on N cores at once; the decisions stay
//! one at a time. Writes that fail afterwards are reported back
//! ([`Switch::tx_failed`]) under the next lock and counted as drops then.
//!
//! Ports come and go under the switch's lock; [`QueueSync`] tells the
//! workers (a generation and a wake-up eventfd each), and a removed port's
//! queues are closed only when no worker is using a queue fd. A worker
//! never waits for the switch while it holds that read lock. Frames read
//! from a queue whose port was removed before they were forwarded go with
//! their port; a deferred frame is written only to the port it was decided
//! for (port ids are reused, `PortSlot::serial`s never).
//!
//! Which queue a flow uses is the kernel's choice: by hash at first, then
//! the queue that last wrote the flow's other direction. Frames from the
//! uplink, the overlay and the gateway's timers are written by the event
//! loop to queue 0, so flows through the NAT settle on queue 0 and are
//! served by the event loop; a flow may move once, at its start (a frame
//! or two can then pass one still being forwarded by the other thread, as
//! with the kernel's own RFS). A worker that fails stops the daemon
//! ([`QueueSync::fail`]): its queues would otherwise go unread. Each worker
//! busy-polls after traffic as the event loop does (`--busy-poll`), so
//! steady traffic can keep several cores polling.

use crate::busy_poll::BusyPoll;
use crate::datapath::queues::{QueueSync, lock};
use crate::datapath::{FRAME_BUF, RX_BATCH, RX_BUDGET, Switch, TxBatch, TxFailed};
use crate::event_loop::Clock;
use crate::port::{FrameRing, Port};
use crate::switch::PortId;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// The epoll token of a worker's wake-up eventfd (ports use their id).
const WAKE: u64 = u64::MAX;

/// The running workers.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
    sync: Arc<QueueSync>,
}

impl Workers {
    /// Asks every worker to end and waits for them.
    pub fn stop(self) {
        self.sync.stop();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts workers 1..=`sync`'s count over the shared switch.
pub fn spawn<P, U>(
    sw: &Arc<Mutex<Switch<P, U>>>,
    sync: &Arc<QueueSync>,
    workers: usize,
    clock: Clock,
    busy: &BusyPoll,
) -> io::Result<Workers>
where
    P: Port + Send + 'static,
    U: Port + Send + 'static,
{
    let mut threads = Vec::with_capacity(workers);
    for k in 1..=workers {
        let (shared, qs, busy) = (Arc::clone(sw), Arc::clone(sync), busy.clone());
        let t = std::thread::Builder::new()
            .name(format!("vswitchd-w{k}"))
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Worker::new(k).and_then(|mut w| w.run(&shared, &qs, clock, busy))
                }));
                let why = match r {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "it panicked".to_string(),
                };
                // Its queues would go unread: the daemon stops (and tears
                // down) rather than drop those flows unseen.
                tracing::error!("datapath worker {k} failed: {why}; stopping");
                qs.fail();
            });
        match t {
            Ok(t) => threads.push(t),
            Err(e) => {
                Workers {
                    threads,
                    sync: Arc::clone(sync),
                }
                .stop();
                return Err(e);
            }
        }
    }
    Ok(Workers {
        threads,
        sync: Arc::clone(sync),
    })
}

/// One queue as a worker sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Queue {
    fd: RawFd,
    vnet: bool,
    /// Its port's serial (port ids are reused, serials never).
    serial: u64,
}

impl Queue {
    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: a worker uses a queue's fd only while the generation it
        // took the fd in is current and it holds either `QueueSync::using`
        // or the switch's lock; a port's queues are closed only under both
        // the switch's lock and `QueueSync::closing`, after the generation
        // moved on.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl Port for Queue {
    fn vnet_hdr(&self) -> bool {
        self.vnet
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(self.fd(), buf).map_err(io::Error::from)
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        loop {
            match nix::unistd::write(self.fd(), frame) {
                Err(nix::Error::EINTR) => continue,
                r => return r.map(|_| ()).map_err(io::Error::from),
            }
        }
    }
}

struct Worker {
    k: usize,
    epoll: Epoll,
    /// Queue `k` of each port, by port id, as of generation `seen`.
    table: Vec<Option<Queue>>,
    seen: u64,
    ring: FrameRing,
    batch: TxBatch,
    /// Deferred writes that failed, reported under the next lock.
    failed: Vec<TxFailed>,
}

impl Worker {
    fn new(k: usize) -> io::Result<Worker> {
        Ok(Worker {
            k,
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            table: Vec::new(),
            seen: u64::MAX,
            ring: FrameRing::new(RX_BATCH, FRAME_BUF),
            batch: TxBatch::new(k),
            failed: Vec::with_capacity(4096),
        })
    }

    fn run<P: Port, U: Port>(
        &mut self,
        sw: &Mutex<Switch<P, U>>,
        sync: &QueueSync,
        clock: Clock,
        mut busy: BusyPoll,
    ) -> io::Result<()> {
        let wake = sync.wake_fd(self.k);
        let mut events = vec![EpollEvent::empty(); 64];
        let mut spin_until: Option<Instant> = None;
        loop {
            if sync.stopping() {
                return Ok(());
            }
            if sync.generation() != self.seen {
                self.resync(&lock(sw), sync)?;
            }
            let spinning = spin_until.is_some_and(|until| Instant::now() < until);
            let timeout = if spinning {
                EpollTimeout::ZERO
            } else {
                spin_until = None;
                // Failed writes are reported within a second on a quiet
                // switch too.
                EpollTimeout::from(1000u16)
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                if !spinning && !self.failed.is_empty() {
                    lock(sw).tx_failed(&self.failed);
                    self.failed.clear();
                }
                continue;
            }
            let t = Instant::now();
            spin_until = busy.traffic(t);
            let now = clock.at(t);
            for ev in &events[..n] {
                if ev.data() == WAKE {
                    let _ = wake.read();
                    continue;
                }
                self.serve(ev.data() as PortId, sw, sync, now)?;
            }
        }
    }

    /// Takes queue `k` of every port anew (under the switch's lock, so no
    /// port comes or goes meanwhile) and watches them.
    fn resync<P: Port, U: Port>(&mut self, sw: &Switch<P, U>, sync: &QueueSync) -> io::Result<()> {
        // A new epoll set: no registration of a closed (or reused) fd can
        // outlive the table.
        self.epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        self.epoll.add(
            sync.wake_fd(self.k).as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE),
        )?;
        self.table.clear();
        for (id, slot) in sw.ports() {
            let Some(fd) = slot.port.queue_fd(self.k) else {
                continue;
            };
            let i = id as usize;
            if self.table.len() <= i {
                self.table.resize(i + 1, None);
            }
            let q = Queue {
                fd: fd.as_raw_fd(),
                vnet: slot.port.vnet_hdr(),
                serial: slot.serial,
            };
            match self
                .epoll
                .add(q.fd(), EpollEvent::new(EpollFlags::EPOLLIN, id as u64))
            {
                Ok(()) => self.table[i] = Some(q),
                Err(e) => tracing::error!(
                    port = %slot.info.name,
                    "worker {} cannot watch its queue: {e}",
                    self.k
                ),
            }
        }
        self.seen = sync.generation();
        Ok(())
    }

    /// Reads, forwards and writes up to `RX_BUDGET` frames of port `id`'s
    /// queue.
    fn serve<P: Port, U: Port>(
        &mut self,
        id: PortId,
        sw: &Mutex<Switch<P, U>>,
        sync: &QueueSync,
        now: crate::switch::Millis,
    ) -> io::Result<()> {
        let mut n = 0;
        while n < RX_BUDGET {
            let (got, serial) = {
                let using = sync.using();
                if sync.generation() != self.seen {
                    return Ok(()); // the loop takes the queues anew first
                }
                let Some(mut q) = self.table.get(id as usize).copied().flatten() else {
                    return Ok(());
                };
                let got = match q.recv_batch(&mut self.ring, RX_BUDGET - n) {
                    Ok(got) => got,
                    Err(e) => {
                        // The event loop's queue 0 fails the same way and
                        // removes the port; stop watching this one (frames
                        // deferred to it meanwhile count as tx errors).
                        tracing::debug!(port = id, "worker {} read failed: {e}", self.k);
                        let _ = self.epoll.delete(q.fd());
                        self.table[id as usize] = None;
                        return Ok(());
                    }
                };
                drop(using);
                (got, q.serial)
            };
            if got == 0 {
                return Ok(());
            }
            n += got;
            let mut s = lock(sw);
            if !self.failed.is_empty() {
                s.tx_failed(&self.failed);
                self.failed.clear();
            }
            if sync.generation() != self.seen {
                // Ports changed since the read: forward only if the port
                // is still the one read from (frames of a removed port go
                // with it), then write under the lock.
                let same = s.port(id).is_some_and(|p| p.serial == serial);
                self.resync(&s, sync)?;
                if same {
                    s.forward_ring(id, &mut self.ring, &mut self.batch, now);
                    self.write_batch();
                }
                self.batch.clear();
                return Ok(());
            }
            s.forward_ring(id, &mut self.ring, &mut self.batch, now);
            drop(s);
            if !self.batch.is_empty() {
                let using = sync.using();
                if sync.generation() == self.seen {
                    self.write_batch();
                } else {
                    drop(using);
                    let s = lock(sw);
                    self.resync(&s, sync)?;
                    self.write_batch();
                }
            }
            self.batch.clear();
            if got < RX_BATCH {
                return Ok(()); // the queue is empty
            }
        }
        Ok(())
    }

    /// Writes the batch to queue `k` of each frame's port (the caller made
    /// sure the table is current and its fds open). A frame whose port went
    /// (or whose id another port took) is not written; one whose port this
    /// worker cannot serve is reported as a failed write.
    fn write_batch(&mut self) {
        for (item, frame) in self.batch.iter() {
            let q = self.table.get(item.port as usize).copied().flatten();
            let r = match q {
                Some(mut q) if q.serial == item.serial => q.send(frame),
                _ => Err(io::Error::from_raw_os_error(libc::ENODEV)),
            };
            if let Err(e) = r {
                // (`tx_failed` skips reports for a port that is gone.)
                self.failed.push(TxFailed::of(item, &e));
            }
        }
    }
}
