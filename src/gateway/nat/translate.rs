//! Acting on a [`Class`]: rewriting a packet in place and advancing its
//! flow (created first when new). The decision itself is
//! [`Nat::classify`]'s; nothing here looks a packet up a second time.

use super::frag::Evicted;
use super::{Class, Dir, Nat, NatDrop, NewFlow, frag_key};
use crate::switch::Millis;
use crate::wire::checksum;
use crate::wire::ipv4::{self, DST, Ipv4Hdr, PROTO_ICMP, SRC, set_addr, set_port};

impl Nat {
    /// Translates a packet going out of the uplink: the source becomes the
    /// external address and port. `b` is exactly the IPv4 packet.
    pub fn outbound(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.classify_and_translate(b, Dir::Out, false, now)
    }

    /// [`Nat::outbound`] for a TCP/UDP packet whose L4 checksum is left for
    /// offload (a virtio-net `NEEDS_CSUM` frame or super-frame): the
    /// checksum field holds the pseudo-header sum, so only the address change
    /// is folded into it; the port change is covered when the checksum is
    /// completed (by the kernel or by segmentation).
    pub fn outbound_partial(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.classify_and_translate(b, Dir::Out, true, now)
    }

    /// Translates a packet that came in on the uplink for the external
    /// address: the destination becomes the inside host and port.
    pub fn inbound(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.classify_and_translate(b, Dir::In, false, now)
    }

    /// [`Nat::inbound`] for a packet whose L4 checksum is left for offload.
    pub fn inbound_partial(&mut self, b: &mut [u8], now: Millis) -> Result<(), NatDrop> {
        self.classify_and_translate(b, Dir::In, true, now)
    }

    fn classify_and_translate(
        &mut self,
        b: &mut [u8],
        dir: Dir,
        partial: bool,
        now: Millis,
    ) -> Result<(), NatDrop> {
        let r = self
            .classify(b, dir, partial, now)
            .and_then(|class| self.translate(b, dir, class, partial, now));
        if let Err(e) = r {
            self.count_refusal(e);
        }
        r
    }

    /// Rewrites packet `b` as `class` (from [`Nat::classify`] of the same
    /// packet, just before) says, creating the flow of a new one. A
    /// refusal here (the new flow finds no port) is the caller's to count
    /// with [`Nat::count_refusal`].
    pub fn translate(
        &mut self,
        b: &mut [u8],
        dir: Dir,
        class: Class,
        partial: bool,
        now: Millis,
    ) -> Result<(), NatDrop> {
        let lan_flow = match class {
            Class::Flow { idx, .. } => self.flows[idx as usize].lan,
            Class::Publish { lan, .. } => lan,
            _ => false,
        };
        let ext = match lan_flow {
            true => self.lan_ip,
            false => self.ext_ip.ok_or(NatDrop::NoAddress)?,
        };
        let h = Ipv4Hdr::parse(b).ok_or(NatDrop::Malformed)?;
        let b = &mut b[..h.total_len];
        let (idx, seg) = match class {
            Class::Fragment { idx } => {
                match dir {
                    Dir::Out => set_addr(b, SRC.start, ext, None),
                    Dir::In => set_addr(b, DST.start, self.flows[idx as usize].inside_ip, None),
                }
                self.count(dir);
                return Ok(());
            }
            Class::IcmpError {
                idx,
                quoted,
                quoted_ihl,
                quoted_proto,
            } => {
                self.rewrite_icmp_error(b, &h, dir, ext, idx, quoted, quoted_ihl, quoted_proto);
                return Ok(());
            }
            Class::Flow { idx, seg } => (idx, seg),
            Class::New { key, seg } => {
                let n = NewFlow {
                    proto: key.proto,
                    inside: (key.inside.ip().octets(), key.inside.port()),
                    remote: (key.remote.ip().octets(), key.remote.port()),
                    ext_port: None,
                    front: None,
                    lan: false,
                    remote_opened: false,
                    svc: None,
                };
                (self.create(n, now)?, seg)
            }
            Class::Publish {
                key,
                seg,
                pick,
                lan,
            } => {
                let opener = (key.inside.ip().octets(), key.inside.port());
                let front = (key.remote.ip().octets(), key.remote.port());
                let backend = (pick.to.ip().octets(), pick.to.port());
                let n = if lan {
                    // Hairpin: opener -> front becomes gateway -> backend.
                    NewFlow {
                        proto: key.proto,
                        inside: opener,
                        remote: backend,
                        ext_port: None,
                        front: Some(front),
                        lan: true,
                        remote_opened: false,
                        svc: Some(pick),
                    }
                } else {
                    // From outside: the backend is the inside end, its
                    // answers leave from the published port.
                    NewFlow {
                        proto: key.proto,
                        inside: backend,
                        remote: opener,
                        ext_port: Some(front.1),
                        front: None,
                        lan: false,
                        remote_opened: true,
                        svc: Some(pick),
                    }
                };
                (self.create(n, now)?, seg)
            }
        };
        self.touch(idx, dir, &seg, now);
        let f = self.flows[idx as usize];
        let front = self.front_of(idx);
        let (sport, dport) = (h.ihl, h.ihl + 2);
        match dir {
            Dir::Out => {
                rewrite(
                    b,
                    &h,
                    partial,
                    SRC.start,
                    ext,
                    sport,
                    f.inside_port,
                    f.ext_port,
                );
                if let Some((_, fport)) = front {
                    rewrite(
                        b,
                        &h,
                        partial,
                        DST.start,
                        f.remote_ip,
                        dport,
                        fport,
                        f.remote_port,
                    );
                }
            }
            Dir::In => {
                let (iip, iport) = (f.inside_ip, f.inside_port);
                rewrite(b, &h, partial, DST.start, iip, dport, f.ext_port, iport);
                if let Some((fip, fport)) = front {
                    rewrite(b, &h, partial, SRC.start, fip, sport, f.remote_port, fport);
                }
            }
        }
        if h.more_frags && !f.lan {
            self.frag_record(&h, dir, idx, now);
        }
        self.count(dir);
        Ok(())
    }

    fn count(&mut self, dir: Dir) {
        match dir {
            Dir::Out => self.stats.translated_out += 1,
            Dir::In => self.stats.translated_in += 1,
        }
    }

    /// Rewrites an ICMP error about flow `idx`: the outer address, the
    /// quoted header's address and port with its checksums, and the ICMP
    /// checksum (which covers the quoted packet).
    #[allow(clippy::too_many_arguments)]
    fn rewrite_icmp_error(
        &mut self,
        b: &mut [u8],
        h: &Ipv4Hdr,
        dir: Dir,
        ext: [u8; 4],
        idx: u32,
        e: usize,
        eihl: usize,
        eproto: u8,
    ) {
        let f = self.flows[idx as usize];
        let quoted = &mut b[e..];
        let qcsum = ipv4::l4_checksum_offset(eproto).map(|o| eihl + o);
        let echo_id_at = eihl + 4;
        let (addr_at, new_addr, port_at, new_port) = match dir {
            Dir::In => (
                SRC.start,
                f.inside_ip,
                if eproto == PROTO_ICMP {
                    echo_id_at
                } else {
                    eihl
                },
                f.inside_port,
            ),
            Dir::Out => (
                DST.start,
                ext,
                if eproto == PROTO_ICMP {
                    echo_id_at
                } else {
                    eihl + 2
                },
                f.ext_port,
            ),
        };
        set_addr(quoted, addr_at, new_addr, Some((eihl, eproto)));
        if let Some(c) = qcsum {
            set_port(quoted, port_at, new_port, c, eproto);
        } else {
            quoted[port_at..port_at + 2].copy_from_slice(&new_port.to_be_bytes());
        }
        match dir {
            Dir::In => set_addr(b, DST.start, f.inside_ip, None),
            Dir::Out => set_addr(b, SRC.start, ext, None),
        }
        let l4 = h.ihl;
        b[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[l4..h.total_len]);
        b[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        self.stats.icmp_errors_translated += 1;
    }

    /// Records a first fragment (header `h`, crossing in direction `dir`)
    /// of flow `idx` for its later fragments, under its source: the inside
    /// address outbound, the remote one inbound (`h.src` both ways).
    fn frag_record(&mut self, h: &Ipv4Hdr, dir: Dir, idx: u32, now: Millis) {
        let key = frag_key(h.proto, h.src, h.dst, h.id);
        let source = ((dir == Dir::In) as u64) << 32 | u32::from_be_bytes(h.src) as u64;
        let generation = self.flows[idx as usize].generation;
        match self.frags.record(key, source, idx, generation, now) {
            Some(Evicted::SourceCap) => self.stats.frag_evicted_source_cap += 1,
            Some(Evicted::TableFull) => self.stats.frag_evicted_table_full += 1,
            None => {}
        }
    }
}

/// Rewrites one end of packet `b`: the address at `addr_at` to `addr` and
/// the port at `port_at` from `old` to `new` (for ICMP echo, the
/// identifier), with the checksums updated incrementally; `partial`: the
/// L4 checksum is left for offload, so only the address is folded in.
#[allow(clippy::too_many_arguments)]
fn rewrite(
    b: &mut [u8],
    h: &Ipv4Hdr,
    partial: bool,
    addr_at: usize,
    addr: [u8; 4],
    port_at: usize,
    old: u16,
    new: u16,
) {
    if partial && h.proto != PROTO_ICMP {
        ipv4::set_addr_partial(b, addr_at, addr, h.ihl, h.proto);
        b[port_at..port_at + 2].copy_from_slice(&new.to_be_bytes());
        return;
    }
    set_addr(b, addr_at, addr, Some((h.ihl, h.proto)));
    if new != old {
        let (at, csum) = if h.proto == PROTO_ICMP {
            (h.ihl + 4, h.ihl + 2)
        } else {
            let off = ipv4::l4_checksum_offset(h.proto).unwrap_or(0);
            (port_at, h.ihl + off)
        };
        set_port(b, at, new, csum, h.proto);
    }
}
