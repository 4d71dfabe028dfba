//! Packet capture: `vswitchctl capture` streams the frames crossing chosen
//! points of the switch as pcapng (or classic pcap on request), readable by
//! `tcpdump -r -`, tshark and Wireshark.
//!
//! A capture point is a port, the gateway port, or the uplink. A frame is
//! recorded once per session if it crosses any of the session's points (on
//! its way in or out), so a session on every point shows each frame once,
//! like `tcpdump -i br01`, and a session on one port shows both directions
//! there. Frames on the uplink are recorded as they are on the wire there
//! (after translation).
//!
//! In pcapng each point is an interface of its own, named after it (the
//! port's namespace, `gateway`, `uplink:IFACE`; the switch names them with
//! [`Captures::name`]), and a frame is recorded on the first of its points
//! the session watches (its ingress when watched), so
//! `tshark -T fields -e frame.interface_name` says where each frame was.
//! An interface's description block is written the first time a frame is
//! recorded there. The blocks are written by the `pcap-file` crate.
//!
//! Each session has a bounded buffer (4 MiB). A slow or stopped reader never
//! stalls forwarding: frames that do not fit are dropped from the capture and
//! counted. With no session, the datapath pays one `is_empty` check per
//! frame.

use crate::switch::PortId;
use byteorder_slice::LittleEndian;
use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::pcapng::PcapNgBlock;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
use pcap_file::{DataLink, Endianness, TsResolution};
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

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

/// The file format of a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// pcapng: an interface per capture point, named after it.
    #[default]
    PcapNg,
    /// Classic pcap (`vswitchctl capture --pcap`): one link, no names.
    Pcap,
}

/// Appends to a capture's buffer, which cannot fail (the crate's writers
/// return `Result` for files and sockets).
fn put<T, E>(written: Result<T, E>) {
    debug_assert!(written.is_ok(), "writing to memory failed");
}

/// The file's first bytes: a pcapng section header, or the pcap global
/// header (microsecond timestamps, Ethernet).
fn file_header(format: Format, out: &mut VecDeque<u8>) {
    match format {
        Format::PcapNg => put(SectionHeaderBlock {
            endianness: Endianness::Little,
            ..Default::default()
        }
        .into_block()
        .write_to::<LittleEndian, _>(out)),
        Format::Pcap => put(PcapHeader {
            snaplen: SNAPLEN as u32,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
            ..Default::default()
        }
        .write_to(out)),
    }
}

/// pcapng's interface description for a point called `name`. pcap-file
/// writes packet timestamps in nanoseconds, so the interface says so.
fn interface(name: &str) -> InterfaceDescriptionBlock<'static> {
    InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: SNAPLEN as u32,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    }
}

/// Bytes of a pcapng block with `body` bytes of content padded to 32 bits.
fn block_len(fixed: usize, body: usize) -> usize {
    fixed + body.div_ceil(4) * 4
}

/// One capture session.
pub struct Session {
    points: Vec<Point>,
    /// Every port (including ones added later) and the gateway.
    all_ports: bool,
    format: Format,
    /// pcapng: the interface id of each point name written so far.
    interfaces: BTreeMap<String, u32>,
    /// Capture bytes not yet written to the reader.
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
    /// The first of `points` this session watches, if any.
    fn watched(&self, mut points: impl Iterator<Item = Point>) -> Option<Point> {
        points.find(|p| (self.all_ports && matches!(p, Point::Port(_))) || self.points.contains(p))
    }

    /// Appends one frame seen at the point called `at`, or counts it as
    /// dropped when the buffer cannot take it.
    fn append(&mut self, frame: &[u8], at: &str, ts: Duration) {
        let cut = &frame[..frame.len().min(SNAPLEN)];
        let new_if = self.format == Format::PcapNg && !self.interfaces.contains_key(at);
        let need = match self.format {
            Format::Pcap => 16 + cut.len(),
            Format::PcapNg => {
                block_len(32, cut.len()) + if new_if { block_len(28, at.len()) } else { 0 }
            }
        };
        if self.pending.len() + need > SESSION_BUFFER {
            self.dropped += 1;
            return;
        }
        match self.format {
            Format::Pcap => put(PcapPacket::new(ts, frame.len() as u32, cut)
                .write_to::<_, LittleEndian>(
                    &mut self.pending,
                    TsResolution::MicroSecond,
                    SNAPLEN as u32,
                )),
            Format::PcapNg => {
                if new_if {
                    let id = self.interfaces.len() as u32;
                    self.interfaces.insert(at.to_string(), id);
                    put(interface(at)
                        .into_block()
                        .write_to::<LittleEndian, _>(&mut self.pending));
                }
                put(EnhancedPacketBlock {
                    interface_id: self.interfaces[at],
                    timestamp: ts,
                    original_len: frame.len() as u32,
                    data: Cow::Borrowed(cut),
                    options: vec![],
                }
                .into_block()
                .write_to::<LittleEndian, _>(&mut self.pending));
            }
        }
        self.recorded += 1;
    }
}

/// The sessions, keyed by their control connection's token.
#[derive(Default)]
pub struct Captures {
    sessions: BTreeMap<u64, Session>,
    /// What each point is called in pcapng (set by the switch).
    names: BTreeMap<Point, String>,
    /// Frames dropped from captures since start, over all sessions.
    dropped_total: u64,
}

impl Captures {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Names a capture point (its pcapng interface name).
    pub fn name(&mut self, point: Point, name: impl Into<String>) {
        self.names.insert(point, name.into());
    }

    /// Starts a session on `points`, or on every port and the gateway when
    /// `points` is empty.
    pub fn start(&mut self, token: u64, points: Vec<Point>, limit: Option<u64>, format: Format) {
        let all_ports = points.is_empty();
        let mut pending = VecDeque::with_capacity(64 * 1024);
        file_header(format, &mut pending);
        self.sessions.insert(
            token,
            Session {
                points,
                all_ports,
                format,
                interfaces: BTreeMap::new(),
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

    /// Frames dropped from captures since start, ended sessions included
    /// (the `capture_dropped` metric).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Records `frame` in every session that watches one of `points`.
    /// `points` is a function so the caller need not build a list when
    /// nobody captures.
    pub fn record<I: Iterator<Item = Point>>(&mut self, frame: &[u8], points: impl Fn() -> I) {
        let mut now: Option<Duration> = None;
        for s in self.sessions.values_mut() {
            if s.finished() {
                continue;
            }
            let Some(at) = s.watched(points()) else {
                continue;
            };
            let ts = *now.get_or_insert_with(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
            });
            let unnamed;
            let name = match self.names.get(&at) {
                Some(n) => n.as_str(),
                None => {
                    unnamed = match at {
                        Point::Port(id) => format!("port{id}"),
                        Point::Uplink => "uplink".to_string(),
                    };
                    &unnamed
                }
            };
            let before = s.dropped;
            s.append(frame, name, ts);
            self.dropped_total += s.dropped - before;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    fn bytes(c: &mut Captures, token: u64) -> Vec<u8> {
        c.get_mut(token).unwrap().pending.iter().copied().collect()
    }

    /// (interface name, frame length) of each packet in a pcapng stream.
    fn read_ng(b: &[u8]) -> Vec<(String, usize)> {
        let mut r = PcapNgReader::new(b).unwrap();
        let mut names = Vec::new();
        let mut out = Vec::new();
        while let Some(block) = r.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(i) => {
                    let name = i.options.iter().find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    });
                    names.push(name.unwrap());
                }
                Block::EnhancedPacket(p) => {
                    out.push((names[p.interface_id as usize].clone(), p.data.len()));
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn records_once_per_session_and_only_its_points() {
        let mut c = Captures::default();
        c.start(1, vec![Point::Port(1), Point::Port(2)], None, Format::Pcap);
        c.start(2, vec![Point::Uplink], Some(1), Format::Pcap);
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
        for (token, format) in [(7, Format::Pcap), (8, Format::PcapNg)] {
            c.start(token, vec![Point::Uplink], None, format);
        }
        let f = vec![0u8; 1500];
        for _ in 0..10_000 {
            c.record(&f, || [Point::Uplink].into_iter());
        }
        for token in [7, 8] {
            let s = c.get_mut(token).unwrap();
            assert!(s.pending.len() <= SESSION_BUFFER);
            assert_eq!(s.recorded + s.dropped, 10_000);
            assert!(s.dropped > 0);
        }
        let live = c.dropped();
        assert_eq!(c.dropped_total(), live);
        c.end(7);
        assert!(c.dropped() < live);
        assert_eq!(c.dropped_total(), live, "the total keeps ended sessions'");
    }

    #[test]
    fn pcap_records_are_well_formed() {
        let mut c = Captures::default();
        c.start(1, vec![Point::Port(3)], None, Format::Pcap);
        let big = vec![1u8; SNAPLEN + 10];
        c.record(&big, || [Point::Port(3)].into_iter());
        let bytes = bytes(&mut c, 1);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        let incl = u32::from_le_bytes(bytes[24 + 8..24 + 12].try_into().unwrap());
        let orig = u32::from_le_bytes(bytes[24 + 12..24 + 16].try_into().unwrap());
        assert_eq!(incl as usize, SNAPLEN);
        assert_eq!(orig as usize, SNAPLEN + 10);
        assert_eq!(bytes.len(), 24 + 16 + SNAPLEN);
    }

    #[test]
    fn pcapng_has_an_interface_per_point_named_after_it() {
        let mut c = Captures::default();
        c.name(Point::Port(0), "gateway");
        c.name(Point::Port(2), "ns02");
        c.name(Point::Uplink, "uplink:up0");
        c.start(1, vec![Point::Port(2), Point::Uplink], None, Format::PcapNg);
        c.start(2, Vec::new(), None, Format::PcapNg);
        // ns02 -> gateway, then out of the uplink translated; the reply in
        // from the uplink, then gateway -> ns02; a port without a name.
        c.record(&[1; 60], || [Point::Port(2), Point::Port(0)].into_iter());
        c.record(&[2; 61], || [Point::Uplink].into_iter());
        c.record(&[3; 62], || [Point::Uplink].into_iter());
        c.record(&[4; 63], || [Point::Port(0), Point::Port(2)].into_iter());
        c.record(&[5; 64], || [Point::Port(9)].into_iter());
        let got = read_ng(&bytes(&mut c, 1));
        let want = [
            ("ns02", 60),
            ("uplink:up0", 61),
            ("uplink:up0", 62),
            ("ns02", 63),
        ];
        assert_eq!(
            got,
            want.map(|(n, l)| (n.to_string(), l)).to_vec(),
            "the first watched point names the frame"
        );
        // Every port and the gateway: frames at their ingress.
        let got = read_ng(&bytes(&mut c, 2));
        let want = [("ns02", 60), ("gateway", 63), ("port9", 64)];
        assert_eq!(got, want.map(|(n, l)| (n.to_string(), l)).to_vec());
        // Timestamps in nanoseconds, said by the interface: within a minute
        // of now when read back at that resolution.
        let b = bytes(&mut c, 1);
        let mut r = PcapNgReader::new(&b[..]).unwrap();
        let mut resol = None;
        while let Some(Ok(block)) = r.next_block() {
            match block {
                Block::InterfaceDescription(i) => {
                    resol = i.options.iter().find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(t) => Some(*t),
                        _ => None,
                    })
                }
                Block::EnhancedPacket(p) => {
                    assert_eq!(resol, Some(9));
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap();
                    assert!(now.abs_diff(p.timestamp) < Duration::from_secs(60));
                }
                _ => {}
            }
        }
    }
}
