//! What the switch and the worker threads (`--workers`, [`crate::workers`])
//! share about the ports' queues.
//!
//! A worker reads and writes its queue of every multi-queue port without
//! holding the switch, so it must know when a port comes or goes:
//! [`QueueSync::changed`] (called by the switch under its lock, on every
//! port added or removed) bumps a generation and wakes the workers, which
//! then take their queue fds anew. A removed port's queues are closed only
//! under [`QueueSync::closing`], the write side of a lock the workers hold
//! for reading while they use queue fds; a worker never waits for the switch
//! while it holds that read lock, so the two cannot deadlock.

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct QueueSync {
    generation: AtomicU64,
    epoch: RwLock<()>,
    /// One per worker: written on every change.
    wakes: Vec<EventFd>,
    /// The event loop's: a worker recorded frames or events for a capture
    /// or monitor, which the loop writes to their readers.
    main_wake: EventFd,
    /// Set when the daemon stops: the workers end.
    stop: AtomicBool,
    /// Set by a worker that failed: the daemon stops.
    failed: AtomicBool,
}

impl QueueSync {
    /// For `workers` worker threads (queues 1..=workers).
    pub fn new(workers: usize) -> nix::Result<QueueSync> {
        let wakes = (0..workers)
            .map(|_| {
                EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            })
            .collect::<nix::Result<Vec<_>>>()?;
        Ok(QueueSync {
            main_wake: EventFd::from_value_and_flags(
                0,
                EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
            )?,
            generation: AtomicU64::new(0),
            epoch: RwLock::new(()),
            wakes,
            stop: Default::default(),
            failed: Default::default(),
        })
    }
    /// The generation of the port set.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
    /// A port was added or removed: new generation, workers woken.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }
    fn wake_all(&self) {
        for w in &self.wakes {
            // A full counter (never in practice) is a wake-up all the same.
            let _ = w.write(1);
        }
    }
    /// Worker `k`'s (1-based) wake-up fd.
    pub fn wake_fd(&self, k: usize) -> &EventFd {
        &self.wakes[k - 1]
    }
    /// The event loop's wake-up fd.
    pub fn main_wake_fd(&self) -> &EventFd {
        &self.main_wake
    }
    /// Wakes the event loop (captures or monitors have something to send).
    pub fn wake_main(&self) {
        let _ = self.main_wake.write(1);
    }
    /// Held by a worker while it uses queue fds.
    pub fn using(&self) -> RwLockReadGuard<'_, ()> {
        self.epoch.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Held while a removed port's queues are closed.
    pub fn closing(&self) -> RwLockWriteGuard<'_, ()> {
        self.epoch.write().unwrap_or_else(|e| e.into_inner())
    }
    /// Asks the workers to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake_all();
    }
    /// Whether the workers were asked to end.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// A worker failed (its queues would go unread): the event loop is
    /// woken and stops the daemon.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.wake_main();
    }
    /// Whether a worker failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Locks the shared switch. A poisoned lock is taken all the same: a
/// worker that panicked has already asked the daemon to stop
/// ([`QueueSync::fail`]), and the teardown still needs the switch.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
