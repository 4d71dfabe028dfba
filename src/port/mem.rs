//! In-memory port: a queue of frames to receive and a log of frames sent,
//! shared with the test through an [`Rc`] handle. Used by the in-memory
//! pipeline tests and the pipeline bench.

use super::Port;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

#[derive(Default, Debug)]
pub struct MemQueues {
    /// Frames the switch will read from this port, front first.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames the switch wrote to this port, in order.
    pub tx: Vec<Vec<u8>>,
    /// When set, sends fail with `WouldBlock` (a full queue).
    pub tx_full: bool,
    /// When not 0, sends fail with this errno (`EIO`: an interface gone
    /// or down).
    pub tx_errno: i32,
    /// When false, sent frames are counted but not stored (benches).
    pub keep_tx: bool,
    /// Frames carry a virtio-net header (like a TAP with offloads).
    pub vnet: bool,
    /// Takes UDP super-frames (like a TAP on Linux 6.2+); needs `vnet`.
    pub uso: bool,
    /// Says it does, but refuses any GSO frame with EINVAL (a kernel that
    /// lied to the probe).
    pub refuse_gso: bool,
    pub tx_count: u64,
    /// Queues it says it has (`--workers`; 0 or 1: one). Only queue 0 is
    /// real: what a worker defers for the others stays in its batch.
    pub queues: usize,
}

/// A port backed by [`MemQueues`].
#[derive(Clone, Default)]
pub struct MemPort(pub Rc<RefCell<MemQueues>>);

impl MemPort {
    pub fn new() -> Self {
        let p = MemPort::default();
        p.0.borrow_mut().keep_tx = true;
        p
    }
    pub fn push_rx(&self, frame: &[u8]) {
        self.0.borrow_mut().rx.push_back(frame.to_vec());
    }
    pub fn take_tx(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.0.borrow_mut().tx)
    }
}

impl Port for MemPort {
    fn vnet_hdr(&self) -> bool {
        self.0.borrow().vnet
    }
    fn takes_udp_gso(&self) -> bool {
        let q = self.0.borrow();
        q.vnet && q.uso
    }

    fn queues(&self) -> usize {
        self.0.borrow().queues.max(1)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.0.borrow_mut();
        match q.rx.pop_front() {
            Some(f) => {
                let n = f.len().min(buf.len());
                buf[..n].copy_from_slice(&f[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut q = self.0.borrow_mut();
        if q.tx_full {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if q.tx_errno != 0 {
            return Err(io::Error::from_raw_os_error(q.tx_errno));
        }
        if q.refuse_gso && frame.get(1).is_some_and(|t| *t != 0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        q.tx_count += 1;
        if q.keep_tx {
            q.tx.push(frame.to_vec());
        }
        Ok(())
    }
}
