//! A small synchronous rtnetlink client: link state, MAC, MTU, IPv4
//! addresses and routes, built on `netlink-packet-route` messages over a
//! `netlink-sys` socket. The socket belongs to the network namespace of the
//! thread that opened it, so open it inside [`crate::control::netns::in_netns`].
//!
//! Every request asks for an ACK and waits for it; a kernel error comes back
//! as `io::Error` carrying the errno.

use crate::wire::MacAddr;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// An rtnetlink socket in the namespace it was opened in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            sock,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Index of interface `name` in this namespace.
    pub fn link_index(name: &str) -> io::Result<u32> {
        nix::net::if_::if_nametoindex(name).map_err(io::Error::from)
    }

    /// Sets link `index` up, and optionally its MAC and MTU, in one request.
    pub fn set_link(
        &mut self,
        index: u32,
        mac: Option<MacAddr>,
        mtu: Option<u32>,
    ) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(mac) = mac {
            msg.attributes
                .push(LinkAttribute::Address(mac.to_bytes().to_vec()));
        }
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Adds `addr/prefix_len` (with its broadcast address) to link `index`.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        let brd = crate::wire::ipv4::Ipv4Net::of(addr, prefix_len).broadcast();
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        if prefix_len < 31 {
            msg.attributes.push(AddressAttribute::Broadcast(brd));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds `default via gateway dev index` to the main table. Fails with
    /// `AlreadyExists` if there is a default route already.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Sends one request with `NLM_F_REQUEST | NLM_F_ACK | extra_flags` and
    /// waits for its ACK or error.
    fn request(&mut self, payload: RouteNetlinkMessage, extra_flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let len = msg.buffer_len();
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        msg.serialize(&mut self.buf[..len]);
        self.sock.send(&self.buf[..len], 0)?;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[off..n]).map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {e}"))
                    })?;
                let step = reply.header.length as usize;
                if reply.header.sequence_number == self.seq
                    && let NetlinkPayload::Error(err) = reply.payload
                {
                    return match err.code {
                        None => Ok(()),
                        Some(_) => Err(err.to_io()),
                    };
                }
                if step == 0 {
                    break;
                }
                off += (step + 3) & !3;
            }
        }
    }
}

/// A change of a network interface, as rtnetlink announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    pub index: u32,
    /// The interface's name (`None` if the message did not carry it).
    pub name: Option<String>,
    /// Administratively up (`IFF_UP`) and with a carrier (`IFF_RUNNING`).
    pub up: bool,
    /// The interface was deleted (`RTM_DELLINK`).
    pub deleted: bool,
}

/// A non-blocking rtnetlink socket subscribed to link changes
/// (`RTNLGRP_LINK`) in the namespace it was opened in: the uplink's
/// lifecycle (down, up, deleted, created again) without polling.
pub struct LinkWatch {
    sock: Socket,
    buf: Vec<u8>,
}

/// `RTMGRP_LINK`: the link group's bit for `bind`.
const RTMGRP_LINK: u32 = 1;

impl LinkWatch {
    pub fn open() -> io::Result<LinkWatch> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        sock.set_non_blocking(true)?;
        Ok(LinkWatch {
            sock,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Reads every waiting announcement and hands each link change to `f`.
    /// A message that cannot be parsed is skipped. If the kernel dropped
    /// announcements (the socket's buffer overflowed, `ENOBUFS`), `f` gets
    /// nothing for them: the caller should check the link itself then;
    /// `Err` carries that case.
    pub fn drain(&mut self, mut f: impl FnMut(LinkEvent)) -> io::Result<()> {
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut off = 0;
            while off < n {
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                else {
                    break;
                };
                let step = msg.header.length as usize;
                let (link, deleted) = match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                        (Some(l), false)
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                        (Some(l), true)
                    }
                    _ => (None, false),
                };
                if let Some(l) = link {
                    let name = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    });
                    let flags = l.header.flags;
                    f(LinkEvent {
                        index: l.header.index,
                        name,
                        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
                        deleted,
                    });
                }
                if step == 0 {
                    break;
                }
                off += step;
            }
        }
    }
}

impl std::os::fd::AsFd for LinkWatch {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsRawFd;
        // SAFETY: the socket's fd stays open as long as `self` (the
        // borrow's lifetime).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }
}
