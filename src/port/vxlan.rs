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
//! Receiving: a UDP socket bound to `VTEP:4789`. Sending: a raw IPv4 socket
//! (`IPPROTO_RAW`, send only), so the outer UDP source port can follow a hash
//! of the inner flow (underlay ECMP spreads flows) while the receive port
//! stays 4789; the outer UDP checksum is zero, as RFC 7348 recommends.
//! An inner TCP/UDP checksum left for offload by a peer on the same machine
//! is finished on receipt ([`vxlan::finish_inner_checksum`]).

use super::Port;
use crate::reason::{Drops, Reason};
use crate::wire::vnet::{self, F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, VnetHdr};
use crate::wire::vxlan::{self, ENCAP_LEN, VxlanDrop};
use crate::wire::{ETH_HEADER_LEN, MacAddr, ipv4};
use nix::sys::socket::{MsgFlags, SockaddrIn, sendto};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

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
}

#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error("--vtep {addr}: cannot bind UDP port {port} there: {source}")]
    Bind {
        addr: Ipv4Addr,
        port: u16,
        source: io::Error,
    },
    #[error("overlay: cannot open the raw send socket: {0}")]
    RawSocket(io::Error),
}

/// One peer VTEP and what crossed with it.
#[derive(Clone, Debug)]
struct Peer {
    addr: Ipv4Addr,
    rx_packets: u64,
    tx_packets: u64,
    last_rx: Option<Instant>,
}

/// One row of `vswitchctl overlay`'s host list.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HostView {
    pub vtep: Ipv4Addr,
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
}

/// The VXLAN endpoint.
pub struct Vxlan {
    cfg: VxlanConfig,
    rx: UdpSocket,
    tx: OwnedFd,
    peers: Vec<Peer>,
    /// Inner MAC -> index of the peer it was last seen behind.
    remote: HashMap<MacAddr, usize>,
    /// The inner MTU (the TAPs'): received TCP super-frames are described
    /// for segmentation to it.
    mtu: usize,
    /// Encapsulation buffer and segmentation scratch, reused for every frame.
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
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        };
        if raw < 0 {
            return Err(VxlanError::RawSocket(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let tx = unsafe { OwnedFd::from_raw_fd(raw) };
        let peers = cfg
            .peers
            .iter()
            .map(|&addr| Peer {
                addr,
                rx_packets: 0,
                tx_packets: 0,
                last_rx: None,
            })
            .collect();
        Ok(Vxlan {
            cfg,
            rx,
            tx,
            peers,
            remote: HashMap::new(),
            mtu,
            out: Vec::with_capacity(ENCAP_LEN + 65536),
            copy: Vec::new(),
            seg: Vec::new(),
            drops: Drops::default(),
        })
    }

    /// The VTEP a MAC was last seen behind.
    pub fn vtep_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.remote.get(&mac).map(|&i| self.peers[i].addr)
    }

    pub fn view(&self) -> OverlayView {
        let now = Instant::now();
        OverlayView {
            mode: "static".into(),
            vni: self.cfg.vni,
            vtep: self.cfg.vtep,
            port: self.cfg.port,
            hosts: self
                .peers
                .iter()
                .enumerate()
                .map(|(i, p)| HostView {
                    vtep: p.addr,
                    macs: self.remote.values().filter(|&&j| j == i).count(),
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
        }
    }
}

/// Encapsulates `frame` and sends it to every peer in `to` (their indices);
/// the first error is reported after trying all.
fn encap_send(
    cfg: &VxlanConfig,
    tx: &OwnedFd,
    peers: &mut [Peer],
    out: &mut Vec<u8>,
    to: std::ops::Range<usize>,
    frame: &[u8],
) -> io::Result<()> {
    out.clear();
    out.resize(ENCAP_LEN, 0);
    out.extend_from_slice(frame);
    let sport = vxlan::source_port(frame);
    let mut result = Ok(());
    for i in to {
        let dst = peers[i].addr;
        vxlan::encap_header(out, cfg.vtep, dst, sport, cfg.port, cfg.vni, frame.len());
        let addr = SockaddrIn::from(SocketAddrV4::new(dst, 0));
        match sendto(tx.as_raw_fd(), out, &addr, MsgFlags::empty()) {
            Ok(_) => peers[i].tx_packets += 1,
            Err(e) if result.is_ok() => result = Err(io::Error::from(e)),
            Err(_) => {}
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
            let Some(peer) = self.peers.iter().position(|p| p.addr == *from.ip()) else {
                self.drops.add(VxlanDrop::UnknownVtep);
                continue;
            };
            if let Err(why) = vxlan::decap(&buf[AT..AT + n], self.cfg.vni) {
                self.drops.add(why);
                continue;
            }
            let p = &mut self.peers[peer];
            p.rx_packets += 1;
            p.last_rx = Some(Instant::now());
            let end = AT + n;
            let hdr = describe(&mut buf[VNET_HDR_LEN..end], self.mtu);
            hdr.write(&mut buf[..VNET_HDR_LEN]);
            let src = vxlan::inner_source(&buf[VNET_HDR_LEN..end]);
            if src.is_valid_source()
                && (self.remote.len() < REMOTE_MAX || self.remote.contains_key(&src))
            {
                self.remote.insert(src, peer);
            }
            return Ok(end);
        }
    }

    /// Sends to the VTEP behind the destination MAC, or to every peer;
    /// a frame with offload work is made whole (segmented) first.
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
        let Vxlan {
            cfg,
            tx,
            peers,
            out,
            copy,
            seg,
            ..
        } = self;
        if hdr.is_plain() {
            return encap_send(cfg, tx, peers, out, to, frame);
        }
        let mut result = Ok(());
        let done = vnet::for_each_whole(&hdr, frame, copy, seg, |f| {
            if let Err(e) = encap_send(cfg, tx, peers, out, to.clone(), f)
                && result.is_ok()
            {
                result = Err(e);
            }
        });
        done.map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        result
    }
}
