//! The gateway's own host stack: a smoltcp [`Interface`] fed frame by frame
//! from the switch (or the uplink) through a queue device. smoltcp answers
//! ARP and ICMP echo for the interface's addresses and runs the DHCPv4
//! client; what it transmits is collected for the caller to deliver.

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress};

use crate::switch::Millis;
use crate::wire::MacAddr;

/// A device with at most one received frame pending and a reusable list of
/// transmitted frames.
struct QueueDevice {
    rx: Vec<u8>,
    rx_pending: bool,
    tx: Vec<Vec<u8>>,
    tx_n: usize,
    mtu: usize,
}

struct Rx<'a>(&'a [u8]);
struct Tx<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    n: &'a mut usize,
}

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if *self.n == self.tx.len() {
            self.tx.push(Vec::with_capacity(len));
        }
        let buf = &mut self.tx[*self.n];
        buf.clear();
        buf.resize(len, 0);
        *self.n += 1;
        f(buf)
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        if !self.rx_pending {
            return None;
        }
        self.rx_pending = false;
        Some((
            Rx(&self.rx),
            Tx {
                tx: &mut self.tx,
                n: &mut self.tx_n,
            },
        ))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            tx: &mut self.tx,
            n: &mut self.tx_n,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = self.mtu + 14;
        c
    }
}

/// One smoltcp interface and its device.
pub struct Stack {
    pub iface: Interface,
    dev: QueueDevice,
}

pub fn instant(now: Millis) -> Instant {
    Instant::from_millis(now as i64)
}

impl Stack {
    pub fn new(mac: MacAddr, mtu: usize, seed: u64, now: Millis) -> Stack {
        let mut dev = QueueDevice {
            rx: Vec::new(),
            rx_pending: false,
            tx: Vec::new(),
            tx_n: 0,
            mtu,
        };
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac.to_bytes())));
        cfg.random_seed = seed;
        let iface = Interface::new(cfg, &mut dev, instant(now));
        Stack { iface, dev }
    }

    /// Feeds one frame to the stack and polls it; `emit` gets every frame
    /// the stack transmits.
    pub fn input(
        &mut self,
        frame: &[u8],
        now: Millis,
        sockets: &mut SocketSet<'_>,
        emit: impl FnMut(&[u8]),
    ) {
        if self.tcp_not_for_us(frame) {
            return self.poll(now, sockets, emit);
        }
        self.dev.rx.clear();
        self.dev.rx.extend_from_slice(frame);
        self.dev.rx_pending = true;
        self.poll(now, sockets, emit);
    }

    /// Whether `frame` is TCP to an address that is not the stack's own
    /// (a broadcast): smoltcp would answer it with a reset from that
    /// broadcast address. Such a frame is not handed to it.
    fn tcp_not_for_us(&self, frame: &[u8]) -> bool {
        const ETH: usize = crate::wire::ETH_HEADER_LEN;
        if frame.len() < ETH + 20
            || frame[12..14] != [0x08, 0x00]
            || frame[ETH + 9] != crate::wire::ipv4::PROTO_TCP
        {
            return false;
        }
        let d = &frame[ETH + 16..ETH + 20];
        let dst = std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3]);
        !self.iface.has_ip_addr(dst)
    }

    /// Polls the stack (timers, sockets) and hands over what it transmits.
    pub fn poll(&mut self, now: Millis, sockets: &mut SocketSet<'_>, mut emit: impl FnMut(&[u8])) {
        self.iface.poll(instant(now), &mut self.dev, sockets);
        self.dev.rx_pending = false;
        for f in &self.dev.tx[..self.dev.tx_n] {
            emit(f);
        }
        self.dev.tx_n = 0;
    }

    /// When the stack wants to be polled next.
    pub fn poll_at(&mut self, now: Millis, sockets: &SocketSet<'_>) -> Option<Millis> {
        self.iface
            .poll_at(instant(now), sockets)
            .map(|t| t.total_millis().max(0) as Millis)
    }
}
