//! Ports: where frames enter and leave the switch.
//!
//! [`Port`] is the whole contract the datapath needs: a non-blocking receive
//! of one frame and a send of one frame. [`tap::Tap`] is the real thing (a TAP
//! device inside a network namespace); [`mem::MemPort`] is an in-memory
//! double for tests and benches that drive the same pipeline without root.

pub mod mem;
pub mod raw;
pub mod tap;

use std::io;

/// A frame source and sink.
pub trait Port {
    /// Whether frames read from and written to this port carry a
    /// virtio-net header (`wire::vnet`) in front.
    fn vnet_hdr(&self) -> bool {
        false
    }
    /// Reads one frame into `buf` (header first if [`Port::vnet_hdr`]).
    /// Returns `ErrorKind::WouldBlock` when no frame is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (header first if [`Port::vnet_hdr`]).
    /// `ErrorKind::WouldBlock` means the port's queue is full.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
}
