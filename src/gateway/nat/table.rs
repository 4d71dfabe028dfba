//! The flow table's life cycle: a flow created (its external port
//! allocated, room made by evicting an unanswered flow, the per-inside
//! share counted), touched by each packet (counts, TCP state, answered or
//! not, expiry), and removed (expired a slice at a time, or by address).

use super::*;

impl Nat {
    pub(super) fn remove_where(&mut self, pred: impl Fn(&Flow) -> bool) -> usize {
        let idxs: Vec<u32> = (0..self.flows.len() as u32)
            .filter(|&i| {
                let f = &self.flows[i as usize];
                f.live && pred(f)
            })
            .collect();
        for &i in &idxs {
            self.remove(i);
        }
        idxs.len()
    }

    pub(super) fn timeout_of(&self, f: &Flow) -> Millis {
        let t = &self.cfg.timeouts;
        match f.proto {
            PROTO_TCP => match f.tcp {
                TcpState::Established => t.tcp_established,
                TcpState::Closed => t.tcp_closed,
                TcpState::Loose => t.tcp_loose,
                _ => t.tcp_transitory,
            },
            PROTO_UDP => t.udp,
            _ => t.icmp,
        }
    }

    pub(super) fn remove(&mut self, idx: u32) {
        let f = self.flows[idx as usize];
        if !f.live {
            return;
        }
        self.flow_event(idx, false);
        let front = self.front_of(idx);
        self.out_map.remove(&f.out_key(front));
        self.in_map.remove(&f.in_key());
        if f.is_published() {
            self.published.remove(&idx);
        }
        self.flows[idx as usize].live = false;
        self.free.push(idx);
        self.live -= 1;
        if !f.replied {
            self.unreplied -= 1;
        }
        let share = f.share_key();
        if let Some(n) = self.per_inside.get_mut(&share) {
            *n -= 1;
            if *n == 0 {
                self.per_inside.remove(&share);
            }
        }
    }

    /// Sweeps up to `budget` slots for expired flows (and expired fragment
    /// entries when the sweep wraps). Returns how many flows were removed.
    pub fn expire(&mut self, now: Millis, budget: usize) -> usize {
        let mut removed = 0;
        let n = self.flows.len();
        for _ in 0..budget.min(n) {
            if self.sweep >= n {
                self.sweep = 0;
                self.frags.sweep(now);
            }
            let i = self.sweep;
            self.sweep += 1;
            let f = &self.flows[i];
            if f.live && f.expires <= now {
                self.remove(i as u32);
                removed += 1;
            }
        }
        self.stats.expired += removed as u64;
        removed
    }

    /// Keeps `want` if the inbound key it makes is free; otherwise tries up
    /// to `ALLOC_TRIES` random ports of the range (Linux bounds its search
    /// the same way), so a crowded remote endpoint costs bounded work.
    pub(super) fn alloc_port(
        &mut self,
        proto: u8,
        r_ip: [u8; 4],
        r_port: u16,
        want: u16,
        lan: bool,
    ) -> Option<u16> {
        const ALLOC_TRIES: u32 = 128;
        let uplink = self.ext_ip();
        let free = |s: &Self, p: u16| {
            !s.in_map
                .contains_key(&(in_key(proto, r_ip, r_port, p) | lan_bit(lan)))
                && (lan || !s.services.on_uplink(proto, p, uplink))
        };
        // A hairpin flow's port is on the gateway's own address: keep the
        // well-known ports (its DNS) clear.
        if (!lan || want >= self.cfg.port_min) && free(self, want) {
            return Some(want);
        }
        let (lo, hi) = if proto == PROTO_ICMP {
            (0u32, 65_535u32)
        } else {
            (self.cfg.port_min as u32, self.cfg.port_max as u32)
        };
        let n = hi - lo + 1;
        for _ in 0..ALLOC_TRIES.min(n) {
            self.alloc_seed = self
                .alloc_seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(
                    1_442_695_040_888_963_407 ^ (want as u64) ^ (u32::from_be_bytes(r_ip) as u64),
                );
            let p = (lo + ((self.alloc_seed >> 33) as u32 % n)) as u16;
            if free(self, p) {
                return Some(p);
            }
        }
        // A small range: finish with a full scan so no free port is missed.
        if n <= ALLOC_TRIES * 4 {
            return (lo..=hi).map(|p| p as u16).find(|&p| free(self, p));
        }
        None
    }

    pub(super) fn create(&mut self, n: NewFlow, now: Millis) -> Result<u32, NatDrop> {
        let (inside_ip, inside_port) = n.inside;
        let (remote_ip, remote_port) = n.remote;
        let mut f = Flow {
            proto: n.proto,
            inside_ip,
            inside_port,
            remote_ip,
            remote_port,
            ext_port: 0,
            tcp: TcpState::SynSent,
            track: tcp::Track::default(),
            replied: false,
            live: true,
            generation: 0,
            expires: now,
            packets_out: 0,
            packets_in: 0,
            lan: n.lan,
            remote_opened: n.remote_opened,
        };
        // An expired flow under the same key (not swept yet) makes way; a
        // live one stays, and the newcomer is refused.
        let key = f.out_key(n.front);
        if let Some(&stale) = self.out_map.get(&key) {
            if self.flows[stale as usize].expires > now {
                return Err(NatDrop::Clash);
            }
            self.remove(stale);
            self.stats.expired += 1;
        }
        if let Some(p) = n.ext_port {
            f.ext_port = p;
            if let Some(&stale) = self.in_map.get(&f.in_key()) {
                if self.flows[stale as usize].expires > now {
                    return Err(NatDrop::Clash);
                }
                self.remove(stale);
                self.stats.expired += 1;
            }
        }
        if self.held_by(f.share_key()) >= self.cfg.max_per_inside {
            return Err(NatDrop::ShareExceeded);
        }
        if self.live >= self.cfg.max_flows && !self.early_drop() {
            return Err(NatDrop::TableFull);
        }
        if n.ext_port.is_none() {
            f.ext_port = self
                .alloc_port(n.proto, remote_ip, remote_port, inside_port, n.lan)
                .ok_or(NatDrop::PortsExhausted)?;
        }
        if let Some(p) = n.svc {
            self.services.chose(p);
        }
        let idx = match self.free.pop() {
            Some(i) => {
                f.generation = self.flows[i as usize].generation.wrapping_add(1);
                self.flows[i as usize] = f;
                i
            }
            None => {
                self.flows.push(f);
                (self.flows.len() - 1) as u32
            }
        };
        let bound = map_bound(self.cfg.max_flows);
        insert_bounded(&mut self.out_map, key, idx, bound);
        insert_bounded(&mut self.in_map, f.in_key(), idx, bound);
        if let Some(p) = n.svc {
            let published = Published {
                front: n.front,
                svc: (p.front, p.backend),
            };
            self.published.insert(idx, published);
        }
        self.live += 1;
        *self.per_inside.entry(f.share_key()).or_insert(0) += 1;
        self.flow_event(idx, true);
        // Answered and removed flows stay in `order` until a full table
        // looks at them; at its bound, the queue keeps only the live
        // unreplied flows (at most `max_flows`, so at least a fifth of the
        // queue goes: amortised O(1)); up to `PRESIZE_FLOWS` it never
        // outgrows its first allocation.
        if self.order.len() >= order_bound(self.cfg.max_flows) {
            let flows = &self.flows;
            self.order.retain(|&(i, g)| {
                let f = &flows[i as usize];
                f.live && f.generation == g && !f.replied
            });
        }
        self.order
            .push_back((idx, self.flows[idx as usize].generation));
        self.unreplied += 1;
        self.stats.created += 1;
        Ok(idx)
    }

    /// Counts a packet in direction `dir`, and unless [`Nat::classify`]
    /// found it outside the window, advances the flow's state; refreshes
    /// the expiry.
    pub(super) fn touch(&mut self, idx: u32, dir: Dir, seg: &Seg, now: Millis) {
        let f = &mut self.flows[idx as usize];
        match dir {
            Dir::Out => f.packets_out += 1,
            Dir::In => f.packets_in += 1,
        }
        if f.is_published()
            && let Some(p) = self.published.get(&idx)
        {
            self.services.count_packet(p.svc.0, p.svc.1);
        }
        let f = &mut self.flows[idx as usize];
        if seg.fit != Fit::Ignore {
            let td = f.tdir(dir);
            if f.proto == PROTO_TCP {
                f.advance(td, seg);
            }
            // A connection from outside counts as answered only once its
            // handshake is complete: a flood of spoofed SYNs, each drawing
            // the backend's SYN-ACK, stays evictable.
            let answered = match (f.remote_opened, f.proto) {
                (true, PROTO_TCP) => matches!(
                    f.tcp,
                    TcpState::Established | TcpState::FinWait | TcpState::TimeWait
                ),
                // From outside, UDP: the client spoke again after the
                // backend answered (as conntrack's UDP stream), so spoofed
                // queries that draw one answer each stay evictable.
                (true, _) => dir == Dir::In && f.packets_out > 0,
                (false, _) => td == Dir::In,
            };
            if answered && !f.replied {
                f.replied = true;
                self.unreplied -= 1;
            }
        }
        let t = self.timeout_of(&self.flows[idx as usize]);
        self.flows[idx as usize].expires = now + t;
    }
}
