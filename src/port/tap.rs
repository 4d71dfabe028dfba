//! TAP devices: the switch's ports into network namespaces.
//!
//! A TAP belongs to the network namespace of the thread that opened
//! `/dev/net/tun` and called `TUNSETIFF`, so [`Tap::create_here`] must run on a
//! thread that has entered the target namespace (see
//! [`crate::control::netns::in_netns`]). The returned fd keeps working from
//! any namespace. The device is not persistent: closing its fds (dropping
//! the [`Tap`]) removes the interface from its namespace.
//!
//! With `--workers N` (N > 1) the TAP is a multi-queue device
//! (`IFF_MULTI_QUEUE`) with N fds, one queue each: the kernel hands each
//! flow from the namespace to one queue (by flow hash, and to the queue
//! that last wrote the flow's other direction), so worker `k` reads and
//! writes queue `k` while the event loop keeps queue 0.

use super::Port;
use crate::sys::{
    IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, IFF_TUN_EXCL, IFF_VNET_HDR, IfReqFlags, TUN_F_CSUM,
    TUN_F_TSO_ECN, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6, tunsetiff, tunsetoffload,
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
    #[error("namespace {netns}: cannot attach queue {queue} of TAP {ifname} (TUNSETIFF): {source}")]
    Queue {
        netns: String,
        ifname: String,
        queue: usize,
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
    /// Queues 1 and up of a multi-queue TAP (`--workers`).
    extra: Vec<OwnedFd>,
}

/// Opens `/dev/net/tun` and attaches it to (or creates) TAP `ifname`.
fn open_queue(ifname: &str, flags: std::os::raw::c_short) -> Result<OwnedFd, (bool, nix::Error)> {
    let fd = open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| (true, e))?;
    let req = IfReqFlags::new(ifname, flags);
    // SAFETY: `fd` is an open /dev/net/tun descriptor and `req` is a
    // properly sized, NUL-terminated `struct ifreq` that outlives the call.
    unsafe { tunsetiff(fd.as_raw_fd(), &req) }.map_err(|e| (false, e))?;
    Ok(fd)
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
    ///
    /// With `queues` > 1 the device is multi-queue and gets that many fds.
    pub fn create_here(
        ifname: &str,
        netns: &str,
        offload: bool,
        queues: usize,
    ) -> Result<Tap, TapError> {
        if nix::net::if_::if_nametoindex(ifname).is_ok() {
            return Err(TapError::Exists {
                netns: netns.into(),
                ifname: ifname.into(),
            });
        }
        let vnet = if offload { IFF_VNET_HDR } else { 0 };
        let multi = if queues > 1 { IFF_MULTI_QUEUE } else { 0 };
        let flags = IFF_TAP | IFF_NO_PI | vnet | multi;
        let fd = open_queue(ifname, flags | IFF_TUN_EXCL).map_err(|(open, source)| {
            if open {
                TapError::OpenTun {
                    netns: netns.into(),
                    source,
                }
            } else {
                TapError::SetIff {
                    netns: netns.into(),
                    ifname: ifname.into(),
                    source,
                }
            }
        })?;
        // The further queues attach to the device just made (without
        // TUN_EXCL, which refuses an existing name); dropping `fd` on an
        // error removes the device with them.
        let mut extra = Vec::with_capacity(queues.saturating_sub(1));
        for queue in 1..queues {
            extra.push(
                open_queue(ifname, flags).map_err(|(_, source)| TapError::Queue {
                    netns: netns.into(),
                    ifname: ifname.into(),
                    queue,
                    source,
                })?,
            );
        }
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
            extra,
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

    fn queues(&self) -> usize {
        1 + self.extra.len()
    }

    fn queue_fd(&self, k: usize) -> Option<BorrowedFd<'_>> {
        self.extra.get(k.checked_sub(1)?).map(|f| f.as_fd())
    }

    fn close_queues(&mut self) {
        self.extra.clear();
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
