//! Packet capture: `vswitchctl capture` streams the frames crossing chosen
//! points of the switch as pcap, readable by `tcpdump -r -`, tshark and
//! Wireshark.
//!
//! A capture point is a port, the gateway port, or the uplink. A frame is
//! recorded once per session if it crosses any of the session's points (on
//! its way in or out), so a session on every point shows each frame once,
//! like `tcpdump -i br01`, and a session on one port shows both directions
//! there. Frames on the uplink are recorded as they are on the wire there
//! (after translation).
//!
//! Each session has a bounded buffer (4 MiB). A slow or stopped reader never
//! stalls forwarding: frames that do not fit are dropped from the capture and
//! counted. With no session, the datapath pays one `is_empty` check per
//! frame.

use crate::switch::PortId;
use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

/// Bytes a session may hold before frames are dropped from it.
pub const SESSION_BUFFER: usize = 4 << 20;
/// Frames longer than this are cut in the capture (their original length is
/// kept in the record); covers 64 KB super-frames.
pub const SNAPLEN: usize = 262_144;

/// Where a frame crosses the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Point {
    Port(PortId),
    Uplink,
}

/// The pcap global header: microsecond timestamps, Ethernet.
pub fn pcap_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&(SNAPLEN as u32).to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    h
}

/// One capture session.
pub struct Session {
    points: Vec<Point>,
    /// Every port (including ones added later) and the gateway.
    all_ports: bool,
    /// pcap bytes not yet written to the reader.
    pub pending: VecDeque<u8>,
    /// Frames recorded so far.
    pub recorded: u64,
    /// Frames dropped because the reader was behind.
    pub dropped: u64,
    /// Stop after this many frames.
    limit: Option<u64>,
}

impl Session {
    /// Whether the session has recorded all it was asked for.
    pub fn finished(&self) -> bool {
        self.limit.is_some_and(|l| self.recorded >= l)
    }
    fn wants(&self, mut points: impl Iterator<Item = Point>) -> bool {
        points.any(|p| (self.all_ports && matches!(p, Point::Port(_))) || self.points.contains(&p))
    }
}

/// The sessions, keyed by their control connection's token.
#[derive(Default)]
pub struct Captures {
    sessions: BTreeMap<u64, Session>,
}

impl Captures {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Starts a session on `points`, or on every port and the gateway when
    /// `points` is empty.
    pub fn start(&mut self, token: u64, points: Vec<Point>, limit: Option<u64>) {
        let all_ports = points.is_empty();
        let mut pending = VecDeque::with_capacity(64 * 1024);
        pending.extend(pcap_header());
        self.sessions.insert(
            token,
            Session {
                points,
                all_ports,
                pending,
                recorded: 0,
                dropped: 0,
                limit,
            },
        );
    }

    pub fn end(&mut self, token: u64) -> Option<Session> {
        self.sessions.remove(&token)
    }

    pub fn get_mut(&mut self, token: u64) -> Option<&mut Session> {
        self.sessions.get_mut(&token)
    }

    pub fn tokens(&self) -> Vec<u64> {
        self.sessions.keys().copied().collect()
    }

    /// Frames dropped from captures so far, over the live sessions.
    pub fn dropped(&self) -> u64 {
        self.sessions.values().map(|s| s.dropped).sum()
    }

    /// Records `frame` in every session that watches one of `points`.
    /// `points` is a function so the caller need not build a list when
    /// nobody captures.
    pub fn record<I: Iterator<Item = Point>>(&mut self, frame: &[u8], points: impl Fn() -> I) {
        let mut now: Option<(u32, u32)> = None;
        for s in self.sessions.values_mut() {
            if s.finished() || !s.wants(points()) {
                continue;
            }
            let cut = frame.len().min(SNAPLEN);
            if s.pending.len() + 16 + cut > SESSION_BUFFER {
                s.dropped += 1;
                continue;
            }
            let (sec, usec) = *now.get_or_insert_with(|| {
                let d = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                (d.as_secs() as u32, d.subsec_micros())
            });
            let mut rec = [0u8; 16];
            rec[0..4].copy_from_slice(&sec.to_le_bytes());
            rec[4..8].copy_from_slice(&usec.to_le_bytes());
            rec[8..12].copy_from_slice(&(cut as u32).to_le_bytes());
            rec[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
            s.pending.extend(rec);
            s.pending.extend(&frame[..cut]);
            s.recorded += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_once_per_session_and_only_its_points() {
        let mut c = Captures::default();
        c.start(1, vec![Point::Port(1), Point::Port(2)], None);
        c.start(2, vec![Point::Uplink], Some(1));
        let f = [0xabu8; 60];
        // Crosses ports 1 and 2: once in session 1, not in session 2.
        c.record(&f, || [Point::Port(1), Point::Port(2)].into_iter());
        assert_eq!(c.get_mut(1).unwrap().recorded, 1);
        assert_eq!(c.get_mut(1).unwrap().pending.len(), 24 + 16 + 60);
        assert_eq!(c.get_mut(2).unwrap().recorded, 0);
        c.record(&f, || [Point::Uplink].into_iter());
        c.record(&f, || [Point::Uplink].into_iter());
        let s2 = c.get_mut(2).unwrap();
        assert_eq!(s2.recorded, 1, "count limit");
        assert!(s2.finished());
    }

    #[test]
    fn a_stalled_reader_drops_not_blocks() {
        let mut c = Captures::default();
        c.start(7, vec![Point::Uplink], None);
        let f = vec![0u8; 1500];
        for _ in 0..10_000 {
            c.record(&f, || [Point::Uplink].into_iter());
        }
        let s = c.get_mut(7).unwrap();
        assert!(s.pending.len() <= SESSION_BUFFER);
        assert_eq!(s.recorded + s.dropped, 10_000);
        assert!(s.dropped > 0);
    }

    #[test]
    fn pcap_records_are_well_formed() {
        let mut c = Captures::default();
        c.start(1, vec![Point::Port(3)], None);
        let big = vec![1u8; SNAPLEN + 10];
        c.record(&big, || [Point::Port(3)].into_iter());
        let bytes: Vec<u8> = c.get_mut(1).unwrap().pending.iter().copied().collect();
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        let incl = u32::from_le_bytes(bytes[24 + 8..24 + 12].try_into().unwrap());
        let orig = u32::from_le_bytes(bytes[24 + 12..24 + 16].try_into().unwrap());
        assert_eq!(incl as usize, SNAPLEN);
        assert_eq!(orig as usize, SNAPLEN + 10);
        assert_eq!(bytes.len(), 24 + 16 + SNAPLEN);
    }
}
