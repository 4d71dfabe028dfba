//! The gateway's output: frames it produced, each tagged with where it goes,
//! in one reusable buffer the datapath drains after every call.

use crate::wire::vnet::{VNET_HDR_LEN, VnetHdr};

/// Where a frame from the gateway goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Into the switch, from the gateway port.
    Lan,
    /// Out of the uplink.
    Wan,
}

/// Frames the gateway produced, in one reusable buffer. Each frame is
/// stored behind an all-zero virtio-net header, so it can be written to a
/// port that takes one without another copy.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// (where, offset of the header, frame length)
    frames: Vec<(Egress, usize, usize)>,
}

impl Outbox {
    pub fn push(&mut self, eg: Egress, frame: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; VNET_HDR_LEN]);
        self.buf.extend_from_slice(frame);
        self.frames.push((eg, start, frame.len()));
    }
    /// Pushes a frame behind the given virtio-net header (offload work the
    /// receiver's kernel will do).
    pub fn push_with_hdr(&mut self, eg: Egress, hdr: &VnetHdr, frame: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; VNET_HDR_LEN]);
        hdr.write(&mut self.buf[start..]);
        self.buf.extend_from_slice(frame);
        self.frames.push((eg, start, frame.len()));
    }
    /// The last frame (without its header), for rewriting in place.
    pub(super) fn last_mut(&mut self) -> &mut [u8] {
        let (_, s, l) = *self.frames.last().expect("outbox not empty");
        &mut self.buf[s + VNET_HDR_LEN..s + VNET_HDR_LEN + l]
    }
    pub(super) fn last(&self) -> &[u8] {
        let (_, s, l) = *self.frames.last().expect("outbox not empty");
        &self.buf[s + VNET_HDR_LEN..s + VNET_HDR_LEN + l]
    }
    pub(super) fn pop(&mut self) {
        if let Some((_, s, _)) = self.frames.pop() {
            self.buf.truncate(s);
        }
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    /// Frame `i`, behind its (all-zero) virtio-net header, and where it goes.
    pub fn get(&self, i: usize) -> (Egress, &[u8]) {
        let (eg, s, l) = self.frames[i];
        (eg, &self.buf[s..s + VNET_HDR_LEN + l])
    }
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
    }
}
