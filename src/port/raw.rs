//! The uplink: a host Ethernet interface taken raw with an `AF_PACKET`
//! socket, promiscuous (the gateway has its own MAC on that segment).
//!
//! The socket asks for `PACKET_VNET_HDR`, so every frame comes with a
//! virtio-net header saying whether its checksum was left for offload
//! (CHECKSUM_PARTIAL, common for frames from a veth peer or a local sender)
//! and whether it is a TCP super-frame (GSO); [`crate::wire::vnet`] makes such
//! frames whole. Frames we send carry a header too (all zero: whole frames).
//! `PACKET_IGNORE_OUTGOING` keeps our own transmissions (and the host's) out
//! of the receive path.
//!
//! On Linux 6.2+ the socket's virtio-net header also takes UDP super-frames
//! (`VIRTIO_NET_HDR_GSO_UDP_L4`, the same as a TAP with USO): a run of
//! datagrams to the wan leaves in one `send` ([`crate::wire::coalesce`]),
//! and the kernel cuts it apart (in the NIC if it can segment UDP, else in
//! software on the way out). Earlier kernels refuse such a header with
//! `EINVAL`; the probe is the kernel's version, and the datapath stops
//! sending runs to an uplink that refuses one anyway (the refused run's
//! datagrams are lost and counted as `bad_offload`, as on a TAP).

use super::Port;
use crate::sys::{
    ETH_P_ALL, PACKET_ADD_MEMBERSHIP, PACKET_IGNORE_OUTGOING, PACKET_MR_PROMISC, PACKET_VNET_HDR,
    PacketMreq, SOL_PACKET,
};
use crate::wire::vnet::VNET_HDR_LEN;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("uplink {ifname}: no such interface in vswitchd's namespace")]
    NoSuchInterface { ifname: String },
    #[error("uplink {ifname}: not an Ethernet interface")]
    NotEthernet { ifname: String },
    #[error("uplink {ifname}: {step}: {source}")]
    Socket {
        ifname: String,
        step: &'static str,
        source: io::Error,
    },
}

/// An open raw uplink.
pub struct RawPort {
    fd: OwnedFd,
    ifname: String,
    index: u32,
    mtu: usize,
    uso: bool,
}

/// Whether this kernel's packet sockets take `VIRTIO_NET_HDR_GSO_UDP_L4`
/// (Linux 6.2, "Support USO offload in vnet header"). Asked once, at the
/// first open (before the sandbox).
fn kernel_takes_uso() -> bool {
    static USO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USO.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        release_at_least(&release, (6, 2))
    })
}

/// `release` (as `uname -r` prints it, "6.18.44-foo") is at least `min`.
fn release_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live value of the size we pass; the kernel
    // copies it before returning.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl RawPort {
    /// Opens `ifname` (in the calling thread's namespace).
    pub fn open(ifname: &str) -> Result<RawPort, RawError> {
        let sys = std::path::Path::new("/sys/class/net").join(ifname);
        let index =
            nix::net::if_::if_nametoindex(ifname).map_err(|_| RawError::NoSuchInterface {
                ifname: ifname.into(),
            })?;
        let read = |f: &str| std::fs::read_to_string(sys.join(f)).unwrap_or_default();
        if read("type").trim() != "1" {
            return Err(RawError::NotEthernet {
                ifname: ifname.into(),
            });
        }
        let mtu = read("mtu").trim().parse().unwrap_or(1500);
        let err = |step: &'static str| {
            let ifname = ifname.to_string();
            move |source: io::Error| RawError::Socket {
                ifname,
                step,
                source,
            }
        };
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                ETH_P_ALL.to_be() as i32,
            )
        };
        if raw < 0 {
            return Err(err("socket(AF_PACKET)")(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: i32 = 1;
        setsockopt(raw, SOL_PACKET, PACKET_VNET_HDR, &one).map_err(err("PACKET_VNET_HDR"))?;
        setsockopt(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one)
            .map_err(err("PACKET_IGNORE_OUTGOING"))?;
        let rcvbuf: i32 = 4 << 20;
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        // SAFETY: an all-zero sockaddr_ll is valid; we fill what bind needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(err("bind")(io::Error::last_os_error()));
        }
        let mreq = PacketMreq {
            mr_ifindex: index as i32,
            mr_type: PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(err("promiscuous mode"))?;
        Ok(RawPort {
            fd,
            ifname: ifname.into(),
            index,
            mtu,
            uso: kernel_takes_uso(),
        })
    }

    /// The interface's index when it was opened (one deleted and created
    /// again under the same name has a new index).
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    pub fn mtu(&self) -> usize {
        self.mtu
    }
}

impl AsRawFd for RawPort {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for RawPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl super::Uplink for RawPort {
    fn name(&self) -> &str {
        &self.ifname
    }
    fn index(&self) -> u32 {
        self.index
    }
    fn reopen(&self) -> io::Result<Self> {
        RawPort::open(&self.ifname).map_err(io::Error::other)
    }
}

impl Port for RawPort {
    fn vnet_hdr(&self) -> bool {
        true
    }

    fn takes_udp_gso(&self) -> bool {
        self.uso
    }

    /// Reads one frame, virtio-net header first.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(&self.fd, buf).map_err(io::Error::from)
    }

    /// Writes one frame, virtio-net header first.
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        debug_assert!(frame.len() >= VNET_HDR_LEN);
        nix::unistd::write(&self.fd, frame)
            .map(|_| ())
            .map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn kernel_release_compares_major_then_minor() {
        assert!(release_at_least("6.18.44-fc-v669\n", (6, 2)));
        assert!(release_at_least("6.2.0", (6, 2)));
        assert!(release_at_least("7.0-rc1", (6, 2)));
        assert!(!release_at_least("6.1.112-1-amd64", (6, 2)));
        assert!(!release_at_least("5.19.0", (6, 2)));
        assert!(!release_at_least("", (6, 2)));
        assert!(!release_at_least("garbage", (6, 2)));
    }
}
