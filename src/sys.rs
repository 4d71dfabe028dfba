//! Kernel structs, constants and ioctl numbers, in one place.

use std::os::raw::{c_char, c_short};

/// `IFNAMSIZ`: interface names are at most 15 bytes plus the NUL.
pub const IFNAMSIZ: usize = 16;

/// `<linux/if_tun.h>` flags for `TUNSETIFF`.
pub const IFF_TAP: c_short = 0x0002;
pub const IFF_NO_PI: c_short = 0x1000;
pub const IFF_VNET_HDR: c_short = 0x4000;
/// Fail (EBUSY) rather than attach to an existing device of that name.
pub const IFF_TUN_EXCL: c_short = 0x8000u16 as c_short;
/// A device with one queue per open fd (`--workers`): each `TUNSETIFF` of
/// the same name with this flag attaches one more queue.
pub const IFF_MULTI_QUEUE: c_short = 0x0100;

/// `TUNSETOFFLOAD` flags: what the TAP may hand us (partial checksums,
/// TCP segmentation offload).
pub const TUN_F_CSUM: u32 = 0x01;
pub const TUN_F_TSO4: u32 = 0x02;
pub const TUN_F_TSO6: u32 = 0x04;
pub const TUN_F_TSO_ECN: u32 = 0x08;
/// UDP segmentation offload (Linux 6.2+; the kernel takes the two only
/// together). Only probed: a kernel that knows them also takes
/// `GSO_UDP_L4` super-frames written to a TAP.
pub const TUN_F_USO4: u32 = 0x20;
pub const TUN_F_USO6: u32 = 0x40;

/// `NSFS_MAGIC` from `<linux/magic.h>`: the filesystem of `/proc/*/ns/*` and
/// of their bind mounts under `/run/netns`.
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

/// `struct ifreq` as `TUNSETIFF` reads it: the name and the flags union
/// member, padded to the kernel's 40 bytes.
#[repr(C)]
pub struct IfReqFlags {
    pub ifr_name: [c_char; IFNAMSIZ],
    pub ifr_flags: c_short,
    pub _pad: [u8; 22],
}

impl IfReqFlags {
    /// `name` must be at most 15 bytes (checked by config validation).
    pub fn new(name: &str, flags: c_short) -> Self {
        let mut r = IfReqFlags {
            ifr_name: [0; IFNAMSIZ],
            ifr_flags: flags,
            _pad: [0; 22],
        };
        for (dst, src) in r.ifr_name.iter_mut().zip(name.bytes().take(IFNAMSIZ - 1)) {
            *dst = src as c_char;
        }
        r
    }
}

// TUNSETIFF = _IOW('T', 202, int); the kernel reads a `struct ifreq` through
// the pointer despite the declared `int`, hence the "bad" variant.
nix::ioctl_write_ptr_bad!(
    tunsetiff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<std::os::raw::c_int>()),
    IfReqFlags
);

/// `<linux/if_packet.h>` socket options and values.
pub const SOL_PACKET: i32 = 263;
pub const PACKET_ADD_MEMBERSHIP: i32 = 1;
pub const PACKET_MR_PROMISC: u16 = 1;
pub const PACKET_VNET_HDR: i32 = 15;
pub const PACKET_IGNORE_OUTGOING: i32 = 23;
pub const ETH_P_ALL: u16 = 0x0003;

/// `struct packet_mreq`.
#[repr(C)]
pub struct PacketMreq {
    pub mr_ifindex: i32,
    pub mr_type: u16,
    pub mr_alen: u16,
    pub mr_address: [u8; 8],
}

// TUNSETOFFLOAD = _IOW('T', 208, unsigned int), the value passed directly.
nix::ioctl_write_int!(tunsetoffload, b'T', 208);

/// `struct ifreq` as `SIOCGIFMTU` fills it: the name and the MTU.
#[repr(C)]
struct IfReqMtu {
    ifr_name: [c_char; IFNAMSIZ],
    ifr_mtu: i32,
    _pad: [u8; 20],
}

/// The MTU of interface `name` in the calling thread's network namespace
/// (asked of the kernel with `SIOCGIFMTU`; `/sys/class/net` would show the
/// namespace sysfs was mounted in, which under `nsenter --net` is another).
pub fn interface_mtu(name: &str) -> std::io::Result<u32> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if name.len() >= IFNAMSIZ {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    let mut req = IfReqMtu {
        ifr_name: [0; IFNAMSIZ],
        ifr_mtu: 0,
        _pad: [0; 20],
    };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as c_char;
    }
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into a
    // live, properly sized ifreq.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(req.ifr_mtu as u32)
}

/// The name of the interface that holds `addr` in the calling thread's
/// network namespace.
pub fn interface_with_addr(addr: std::net::Ipv4Addr) -> Option<String> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|i| {
        let a = i.address?;
        let sin = a.as_sockaddr_in()?;
        (sin.ip() == addr).then_some(i.interface_name)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ifreq_is_kernel_sized() {
        assert_eq!(std::mem::size_of::<super::IfReqFlags>(), 40);
    }
}
