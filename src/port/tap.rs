//! TAP devices: the switch's ports into network namespaces.
//!
//! A TAP belongs to the network namespace of the thread that opened
//! `/dev/net/tun` and called `TUNSETIFF`, so [`Tap::create_here`] must run on a
//! thread that has entered the target namespace (see
//! [`crate::control::netns::in_netns`]). The returned fd keeps working from
//! any namespace. The device is not persistent: closing the fd (dropping the
//! [`Tap`]) removes the interface from its namespace.

use super::Port;
use crate::sys::{
    IFF_NO_PI, IFF_TAP, IFF_TUN_EXCL, IFF_VNET_HDR, IfReqFlags, TUN_F_CSUM, TUN_F_TSO_ECN,
    TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6, tunsetiff, tunsetoffload,
};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// One failing step of TAP creation, naming the interface and namespace.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("namespace {netns}: cannot open /dev/net/tun: {source}")]
    OpenTun { netns: String, source: nix::Error },
    #[error("namespace {netns}: an interface named {ifname} already exists")]
    Exists { netns: String, ifname: String },
    #[error("namespace {netns}: cannot enable offloads on TAP {ifname} (TUNSETOFFLOAD): {source}")]
    Offload {
        netns: String,
        ifname: String,
        source: nix::Error,
    },
    #[error("namespace {netns}: cannot create TAP {ifname} (TUNSETIFF): {source}")]
    SetIff {
        netns: String,
        ifname: String,
        source: nix::Error,
    },
}

/// An open TAP device.
pub struct Tap {
    fd: OwnedFd,
    ifname: String,
    vnet: bool,
    /// The kernel takes UDP super-frames written to this TAP.
    uso: bool,
}

impl Tap {
    /// Creates TAP `ifname` in the calling thread's network namespace
    /// (`netns` is only used in error messages). Refuses to attach to an
    /// existing interface of that name.
    ///
    /// With `offload`, the TAP carries a virtio-net header and advertises
    /// checksum and TCP segmentation offload: the namespace's stack then
    /// hands over 64 KB TCP super-frames with unfinished checksums, which
    /// pass between TAP ports untouched.
    pub fn create_here(ifname: &str, netns: &str, offload: bool) -> Result<Tap, TapError> {
        if nix::net::if_::if_nametoindex(ifname).is_ok() {
            return Err(TapError::Exists {
                netns: netns.into(),
                ifname: ifname.into(),
            });
        }
        let fd = open(
            "/dev/net/tun",
            OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| TapError::OpenTun {
            netns: netns.into(),
            source,
        })?;
        let vnet = if offload { IFF_VNET_HDR } else { 0 };
        let req = IfReqFlags::new(ifname, IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL | vnet);
        // SAFETY: `fd` is an open /dev/net/tun descriptor and `req` is a
        // properly sized, NUL-terminated `struct ifreq` that outlives the call.
        unsafe { tunsetiff(fd.as_raw_fd(), &req) }.map_err(|source| TapError::SetIff {
            netns: netns.into(),
            ifname: ifname.into(),
            source,
        })?;
        let mut uso = false;
        if offload {
            let flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
            // A kernel that accepts USO here (6.2+; it refuses flags it
            // does not know) also takes GSO_UDP_L4 frames on write, which
            // is all we use it for: the flags are set back at once, before
            // the interface is up, so the namespace never hands us UDP
            // super-frames (we could not segment them for the uplink).
            let probe = flags | TUN_F_USO4 | TUN_F_USO6;
            // SAFETY: `fd` is a TAP after TUNSETIFF; the flags are passed by value.
            uso = unsafe { tunsetoffload(fd.as_raw_fd(), probe as _) }.is_ok();
            // SAFETY: as above.
            unsafe { tunsetoffload(fd.as_raw_fd(), flags as _) }.map_err(|source| {
                TapError::Offload {
                    netns: netns.into(),
                    ifname: ifname.into(),
                    source,
                }
            })?;
        }
        Ok(Tap {
            fd,
            ifname: ifname.into(),
            vnet: offload,
            uso,
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Port for Tap {
    fn vnet_hdr(&self) -> bool {
        self.vnet
    }

    fn takes_udp_gso(&self) -> bool {
        self.uso
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(&self.fd, buf).map_err(io::Error::from)
    }

    #[inline]
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        // A TAP write takes one whole frame or fails; it never writes part.
        nix::unistd::write(&self.fd, frame)
            .map(|_| ())
            .map_err(io::Error::from)
    }
}
