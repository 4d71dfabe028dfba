//! The overlay as one switch port: a VXLAN tunnel endpoint (RFC 7348), as
//! the Linux `vxlan` device is one port of a bridge.
//!
//! Frames the switch sends here are encapsulated and sent to the VTEP that
//! owns the destination MAC, or, for broadcast, multicast and unknown
//! unicast, to every peer (head-end replication, like `bridge fdb append
//! 00:00:00:00:00:00 dev vx0 dst PEER` on Linux). Datagrams received are
//! checked (I flag, VNI, a configured peer as the outer source) and their
//! inner frame goes into the switch; the inner source MAC is learned with the
//! outer source as its VTEP. The switch's own MAC table learns those MACs on
//! this port like any other and ages them; since the switch never sends a
//! frame back out of the port it came in by, a frame from the overlay never
//! goes back into it (split horizon).
//!
//! Receiving: a UDP socket bound to `VTEP:4789`. Sending: a small pool of
//! UDP sockets bound to the VTEP with their own source ports; a hash of the
//! inner flow picks one, so each flow keeps one outer source port and an
//! underlay with ECMP spreads flows. A TCP super-frame from a TAP is cut
//! into its segments, each behind a VXLAN header, and all of them leave in
//! one `sendmsg` with `UDP_SEGMENT` (UDP GSO): the kernel makes the
//! datagrams, as it would for its own vxlan device.
//! An inner TCP/UDP checksum left for offload by a peer on the same machine
//! is finished on receipt ([`vxlan::finish_inner_checksum`]).
//!
//! In directory mode (`--etcd`) the peers are the network's hosts as the
//! directory lists them ([`Vxlan::add_host`], [`Vxlan::remove_host`]) and
//! the remote MACs are the directory's ([`Vxlan::set_remote`]): nothing is
//! learned from traffic.

use super::Port;
use crate::reason::{Drops, Reason};
use crate::wire::vnet::{self, F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, VnetHdr};
use crate::wire::vxlan::{self, VxlanDrop};
use crate::wire::{ETH_HEADER_LEN, MacAddr, ipv4};
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrIn, sendmsg};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Instant;

/// Send sockets (outer UDP source ports) a flow hash chooses from.
const TX_SOCKETS: usize = 8;
/// Datagrams in one UDP GSO send at most (the kernel's UDP_MAX_SEGMENTS is
/// 64 on older kernels, 128 on newer).
const GSO_MAX_SEGS: usize = 64;
/// The largest UDP payload of one send.
const UDP_MAX: usize = 65_507;

/// Remote MACs remembered with their VTEP at most (beyond it, frames to
/// an unremembered MAC go to every peer, which is still correct).
const REMOTE_MAX: usize = 100_000;

/// What the overlay is told at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanConfig {
    /// This host's underlay address (`--vtep`).
    pub vtep: Ipv4Addr,
    /// The UDP port VXLAN uses (`--vxlan-port`, default 4789).
    pub port: u16,
    pub vni: u32,
    /// The other VTEPs (`--vxlan-peer`).
    pub peers: Vec<Ipv4Addr>,
    /// Directory mode: peers and remote MACs come from the directory, not
    /// from the command line and traffic.
    pub directory: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error("--vtep {addr}: cannot bind UDP port {port} there: {source}")]
    Bind {
        addr: Ipv4Addr,
        port: u16,
        source: io::Error,
    },
    #[error("--vtep {addr}: cannot open a send socket there: {source}")]
    SendSocket { addr: Ipv4Addr, source: io::Error },
}

/// One peer VTEP and what crossed with it.
#[derive(Clone, Debug)]
struct Peer {
    addr: Ipv4Addr,
    /// The host's name, from the directory.
    name: Option<String>,
    rx_packets: u64,
    tx_packets: u64,
    last_rx: Option<Instant>,
}

/// One row of `vswitchctl overlay`'s host list.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HostView {
    pub vtep: Ipv4Addr,
    /// The host's name (directory mode).
    #[serde(default)]
    pub name: Option<String>,
    /// Inner MACs last seen behind this VTEP.
    pub macs: usize,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Seconds since a datagram last came from it (`None`: never).
    pub last_seen_secs: Option<u64>,
}

/// `vswitchctl overlay`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OverlayView {
    pub mode: String,
    pub vni: u32,
    pub vtep: Ipv4Addr,
    pub port: u16,
    pub hosts: Vec<HostView>,
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Directory mode: etcd and what came from it.
    #[serde(default)]
    pub directory: Option<DirectoryView>,
}

/// The directory part of `vswitchctl overlay`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DirectoryView {
    pub network: String,
    /// The etcd endpoint in use.
    pub endpoint: String,
    pub connected: bool,
    pub lease_id: i64,
    pub ttl_secs: i64,
    /// Remote ports known from the directory.
    pub remote_ports: usize,
    /// ARP requests answered from the directory.
    pub arp_answered: u64,
}

/// The VXLAN endpoint.
pub struct Vxlan {
    cfg: VxlanConfig,
    rx: UdpSocket,
    tx: Vec<UdpSocket>,
    /// Peer slots (a removed host leaves `None`, reused by the next).
    peers: Vec<Option<Peer>>,
    /// VTEP address -> slot.
    by_addr: HashMap<Ipv4Addr, usize>,
    /// Inner MAC -> slot of the peer it lives behind (learned, or from the
    /// directory).
    remote: HashMap<MacAddr, usize>,
    /// The inner MTU (the TAPs'): received TCP super-frames are described
    /// for segmentation to it.
    mtu: usize,
    /// Datagram payloads (VXLAN header + frame) of one send, back to back,
    /// and segmentation scratch; reused for every frame.
    out: Vec<u8>,
    copy: Vec<u8>,
    seg: Vec<u8>,
    drops: Drops<VxlanDrop, { VxlanDrop::COUNT }>,
}

impl Vxlan {
    /// Opens the endpoint; `mtu` is the inner (TAP) MTU.
    pub fn open(cfg: VxlanConfig, mtu: usize) -> Result<Vxlan, VxlanError> {
        let rx = UdpSocket::bind(SocketAddrV4::new(cfg.vtep, cfg.port)).map_err(|source| {
            VxlanError::Bind {
                addr: cfg.vtep,
                port: cfg.port,
                source,
            }
        })?;
        rx.set_nonblocking(true)
            .map_err(|source| VxlanError::Bind {
                addr: cfg.vtep,
                port: cfg.port,
                source,
            })?;
        let tx = (0..TX_SOCKETS)
            .map(|_| {
                let u = UdpSocket::bind(SocketAddrV4::new(cfg.vtep, 0))?;
                u.set_nonblocking(true)?;
                Ok(u)
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|source| VxlanError::SendSocket {
                addr: cfg.vtep,
                source,
            })?;
        let mut v = Vxlan {
            cfg,
            rx,
            tx,
            peers: Vec::new(),
            by_addr: HashMap::new(),
            remote: HashMap::new(),
            mtu,
            out: Vec::with_capacity(2 * UDP_MAX),
            copy: Vec::new(),
            seg: Vec::new(),
            drops: Drops::default(),
        };
        for p in v.cfg.peers.clone() {
            v.add_host(p, None);
        }
        Ok(v)
    }

    /// Adds a peer VTEP (a host of the network), or names it if known;
    /// whether it is new.
    pub fn add_host(&mut self, addr: Ipv4Addr, name: Option<&str>) -> bool {
        if addr == self.cfg.vtep {
            return false;
        }
        if let Some(&slot) = self.by_addr.get(&addr) {
            if let (Some(p), Some(n)) = (self.peers[slot].as_mut(), name) {
                p.name = Some(n.to_string());
            }
            return false;
        }
        let peer = Peer {
            addr,
            name: name.map(str::to_string),
            rx_packets: 0,
            tx_packets: 0,
            last_rx: None,
        };
        let slot = match self.peers.iter().position(Option::is_none) {
            Some(i) => {
                self.peers[i] = Some(peer);
                i
            }
            None => {
                self.peers.push(Some(peer));
                self.peers.len() - 1
            }
        };
        self.by_addr.insert(addr, slot);
        true
    }

    /// The peer VTEPs.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.peers.iter().flatten().map(|p| p.addr)
    }

    /// Removes a peer VTEP and every MAC behind it.
    pub fn remove_host(&mut self, addr: Ipv4Addr) {
        if let Some(slot) = self.by_addr.remove(&addr) {
            self.peers[slot] = None;
            self.remote.retain(|_, s| *s != slot);
        }
    }

    /// `mac` lives behind `vtep` (directory mode); the host is added if new.
    pub fn set_remote(&mut self, mac: MacAddr, vtep: Ipv4Addr) {
        self.add_host(vtep, None);
        if let Some(&slot) = self.by_addr.get(&vtep) {
            self.remote.insert(mac, slot);
        }
    }

    pub fn remove_remote(&mut self, mac: MacAddr) {
        self.remote.remove(&mac);
    }

    /// The VTEP a MAC was last seen behind.
    pub fn vtep_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        let slot = *self.remote.get(&mac)?;
        self.peers[slot].as_ref().map(|p| p.addr)
    }

    pub fn view(&self) -> OverlayView {
        let now = Instant::now();
        // MACs per peer slot, in one pass over the remote map (not one per
        // host: 1,000 hosts x 100,000 MACs stalled the loop).
        let mut macs = vec![0usize; self.peers.len()];
        for &slot in self.remote.values() {
            macs[slot] += 1;
        }
        OverlayView {
            mode: if self.cfg.directory {
                "directory".into()
            } else {
                "static".into()
            },
            vni: self.cfg.vni,
            vtep: self.cfg.vtep,
            port: self.cfg.port,
            hosts: self
                .peers
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
                .map(|(i, p)| HostView {
                    vtep: p.addr,
                    name: p.name.clone(),
                    macs: macs[i],
                    rx_packets: p.rx_packets,
                    tx_packets: p.tx_packets,
                    last_seen_secs: p.last_rx.map(|t| now.duration_since(t).as_secs()),
                })
                .collect(),
            drops: self
                .drops
                .iter()
                .map(|(r, n)| (r.name().to_string(), n))
                .collect(),
            directory: None,
        }
    }
}

/// Sends the datagram payloads in `out` (all `each` bytes long but the
/// last) to every peer in `to` from `sock`: one `sendmsg` per peer and per
/// chunk of up to [`GSO_MAX_SEGS`] datagrams, the kernel cutting them apart
/// (UDP GSO). The first error is reported after trying all.
fn send_datagrams(
    sock: &UdpSocket,
    port: u16,
    peers: &mut [Option<Peer>],
    to: std::ops::Range<usize>,
    out: &[u8],
    each: usize,
) -> io::Result<()> {
    let per_send = GSO_MAX_SEGS.min(UDP_MAX / each).max(1) * each;
    let mut result = Ok(());
    for p in &mut peers[to] {
        let Some(p) = p else { continue };
        let dst = SockaddrIn::from(SocketAddrV4::new(p.addr, port));
        for chunk in out.chunks(per_send) {
            let seg = each as u16;
            let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
            let cmsgs: &[ControlMessage] = if chunk.len() > each { &cmsg } else { &[] };
            let iov = [std::io::IoSlice::new(chunk)];
            match sendmsg(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), Some(&dst)) {
                Ok(_) => p.tx_packets += chunk.len().div_ceil(each) as u64,
                Err(e) if result.is_ok() => result = Err(io::Error::from(e)),
                Err(_) => {}
            }
        }
    }
    result
}

/// The virtio-net header for an inner frame just received: a TCP/IPv4
/// frame longer than the MTU is a super-frame the peer's kernel handed over
/// unsegmented (a UDP socket on the same machine gets them so), described
/// for segmentation to the MTU with its checksum left to finish; any other
/// frame is whole, its checksum finished here if the peer left it.
fn describe(frame: &mut [u8], mtu: usize) -> VnetHdr {
    let whole = VnetHdr::default();
    if frame.len() <= mtu + ETH_HEADER_LEN {
        vxlan::finish_inner_checksum(frame);
        return whole;
    }
    if frame.len() < ETH_HEADER_LEN + 40 || ipv4::get16(frame, 12) != 0x0800 {
        return whole;
    }
    let Some(h) = ipv4::Ipv4Hdr::parse(&frame[ETH_HEADER_LEN..]) else {
        return whole;
    };
    let l4 = ETH_HEADER_LEN + h.ihl;
    if h.proto != ipv4::PROTO_TCP || h.is_fragment() || frame.len() < l4 + 20 {
        return whole;
    }
    let thl = ((frame[l4 + 12] >> 4) as usize) * 4;
    let Some(mss) = mtu.checked_sub(h.ihl + thl).filter(|m| *m > 0) else {
        return whole;
    };
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: (l4 + thl) as u16,
        gso_size: mss as u16,
        csum_start: l4 as u16,
        csum_offset: 16,
    }
}

impl AsFd for Vxlan {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl Port for Vxlan {
    /// Frames come and go with a virtio-net header, so super-frames pass
    /// to TAP ports whole.
    fn vnet_hdr(&self) -> bool {
        true
    }

    /// Reads datagrams until one carries a frame for this segment from a
    /// peer (the others are dropped and counted by reason). The datagram is
    /// read so that its VXLAN header sits where the virtio-net header goes:
    /// the inner frame is already in place.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        const AT: usize = VNET_HDR_LEN - vxlan::HEADER_LEN;
        loop {
            let (n, from) = self.rx.recv_from(&mut buf[AT..])?;
            let std::net::SocketAddr::V4(from) = from else {
                continue;
            };
            let Some(&peer) = self.by_addr.get(from.ip()) else {
                self.drops.add(VxlanDrop::UnknownVtep);
                continue;
            };
            if let Err(why) = vxlan::decap(&buf[AT..AT + n], self.cfg.vni) {
                self.drops.add(why);
                continue;
            }
            let Some(p) = self.peers[peer].as_mut() else {
                continue;
            };
            p.rx_packets += 1;
            p.last_rx = Some(Instant::now());
            let end = AT + n;
            let hdr = describe(&mut buf[VNET_HDR_LEN..end], self.mtu);
            hdr.write(&mut buf[..VNET_HDR_LEN]);
            let src = vxlan::inner_source(&buf[VNET_HDR_LEN..end]);
            if !self.cfg.directory
                && src.is_valid_source()
                && (self.remote.len() < REMOTE_MAX || self.remote.contains_key(&src))
            {
                self.remote.insert(src, peer);
            }
            return Ok(end);
        }
    }

    /// Sends to the VTEP behind the destination MAC, or to every peer; a
    /// super-frame goes as its segments in one UDP GSO send, a frame with
    /// only a checksum to finish is finished first.
    fn send(&mut self, whole: &[u8]) -> io::Result<()> {
        let hdr = VnetHdr::parse(whole).ok_or(io::ErrorKind::InvalidInput)?;
        let frame = &whole[VNET_HDR_LEN..];
        if frame.len() < ETH_HEADER_LEN {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let to = match self.remote.get(&MacAddr::from_slice(&frame[0..6])) {
            Some(&i) => i..i + 1,
            None => 0..self.peers.len(), // head-end replication
        };
        let vx = vxlan::header(self.cfg.vni);
        let sock = &self.tx[vxlan::flow_hash(frame) as usize % self.tx.len()];
        let Vxlan {
            peers,
            out,
            copy,
            seg,
            cfg,
            ..
        } = self;
        out.clear();
        let mut each = 0;
        if hdr.is_plain() {
            out.extend_from_slice(&vx);
            out.extend_from_slice(frame);
            each = out.len();
        } else {
            vnet::for_each_whole(&hdr, frame, copy, seg, |f| {
                out.extend_from_slice(&vx);
                out.extend_from_slice(f);
                if each == 0 {
                    each = out.len();
                }
            })
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        }
        send_datagrams(sock, cfg.port, peers, to, out, each)
    }
}
