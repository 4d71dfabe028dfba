//! The switch's side of more than one datapath thread (`--workers`,
//! [`crate::workers`]): forwarding a batch a worker read from its queue,
//! with what goes to its queues deferred into its [`TxBatch`]; the failed
//! writes it reports back; the frames each thread read.

use super::queues::QueueSync;
use super::{Switch, TxBatch, TxFail, TxFailed};
use crate::port::{FrameRing, Port};
use crate::switch::{DropReason, Millis, PortId};
use std::sync::Arc;

impl<P: Port, U: Port> Switch<P, U> {
    /// Shares the port set with `workers` worker threads (`--workers`).
    pub fn set_queue_sync(&mut self, sync: Arc<QueueSync>, workers: usize) {
        self.queues = Some(sync);
        self.thread_frames = vec![0; workers + 1];
    }

    /// What the switch shares with the worker threads, if any.
    pub fn queue_sync(&self) -> Option<&Arc<QueueSync>> {
        self.queues.as_ref()
    }

    /// Frames read from the ports by each datapath thread: the event loop's
    /// queue 0 (and the overlay port), then each worker's queue (the
    /// uplink's frames are not counted here).
    pub fn thread_frames(&self) -> &[u64] {
        &self.thread_frames
    }

    /// Forwards the frames a worker thread read from its queue of port
    /// `id` (`ring`), exactly as [`Switch::poll_port`] forwards what it
    /// reads; what goes to the worker's queue of multi-queue ports is
    /// appended to `batch` for the worker to write after it lets go of the
    /// switch (anything else is sent here). Returns the frames forwarded.
    pub fn forward_ring(
        &mut self,
        id: PortId,
        ring: &mut FrameRing,
        batch: &mut TxBatch,
        now: Millis,
    ) -> usize {
        let Some(Some(slot)) = self.ports.get_mut(id as usize) else {
            return 0;
        };
        for _ in 0..ring.runts() {
            slot.counters.drops.add(DropReason::Runt);
        }
        std::mem::swap(&mut self.rx, ring);
        std::mem::swap(&mut self.run.defer, batch);
        let n = self.rx.len();
        for i in 0..n {
            self.forward(id, i, now);
        }
        self.flush_tx();
        std::mem::swap(&mut self.run.defer, batch);
        std::mem::swap(&mut self.rx, ring);
        if let Some(c) = self.thread_frames.get_mut(batch.queue()) {
            *c += n as u64;
        }
        self.log_gateway_events(now);
        // The event loop writes captures and events to their readers.
        if (!self.captures.is_empty() || self.monitors.on())
            && let Some(q) = &self.queues
        {
            q.wake_main();
        }
        n
    }

    /// A worker's deferred writes that failed: each moves from sent to its
    /// drop reason (as if the write had failed here).
    pub fn tx_failed(&mut self, failed: &[TxFailed]) {
        for f in failed {
            let Some(Some(slot)) = self.ports.get_mut(f.port as usize) else {
                continue; // the port went meanwhile
            };
            if slot.serial != f.serial {
                continue; // ... and another took its id
            }
            let c = &mut slot.counters;
            c.tx_packets = c.tx_packets.saturating_sub(f.segs as u64);
            c.tx_bytes = c.tx_bytes.saturating_sub(f.bytes);
            if f.segs > 1 {
                c.tx_coalesced = c.tx_coalesced.saturating_sub(f.segs as u64);
                c.tx_super_frames = c.tx_super_frames.saturating_sub(1);
            }
            let reason = match f.why {
                TxFail::Full => DropReason::TxQueueFull,
                TxFail::Refused => {
                    if !slot.coalesce_refused {
                        tracing::warn!(
                            port = %slot.info.name,
                            "the kernel refused a UDP super-frame; writing datagrams one by one to this port"
                        );
                    }
                    slot.coalesce_refused = true;
                    DropReason::BadOffload
                }
                TxFail::Error => {
                    c.tx_failing = true;
                    DropReason::TxError
                }
            };
            c.drops.add_n(reason, f.segs as u64);
        }
    }
}
