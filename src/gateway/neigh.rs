//! Neighbour (ARP) cache for the router's next hops. Pure: time is a
//! parameter; the caller sends the ARP requests this module asks for.
//!
//! States, after Linux's: an entry confirmed within `REACHABLE_MS` is used
//! as is; an older one is still used (stale) but asks for a refresh probe at
//! most once a second, and is removed when `PROBES` probes went unanswered.
//! An unknown address is resolved with up to `PROBES` requests one second
//! apart while at most `HOLD` packets wait for it; when resolution fails the
//! held packets are dropped and counted.

use crate::hash::FastMap;
use crate::switch::Millis;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

pub const REACHABLE_MS: Millis = 30_000;
pub const PROBE_INTERVAL_MS: Millis = 1_000;
pub const PROBES: u8 = 3;
/// Packets held per address while it is being resolved.
pub const HOLD: usize = 3;
/// Most entries; beyond this, new resolutions are refused.
pub const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Entry {
    mac: Option<MacAddr>,
    confirmed: Millis,
    last_probe: Millis,
    probes: u8,
    held: Vec<Vec<u8>>,
    /// Set by vswitchd itself (a port's assigned address and MAC): never
    /// changed by ARP, never probed or aged.
    pinned: bool,
}

/// What the caller should do with a packet for `ip`.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve {
    /// Send it to this MAC. `probe`: also send an ARP request (refresh).
    Known { mac: MacAddr, probe: bool },
    /// The packet is held; send an ARP request if `probe`.
    Held { probe: bool },
    /// Not held: the hold queue or the cache is full.
    Dropped,
}

/// One row of `vswitchctl neigh`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NeighView {
    pub ip: Ipv4Addr,
    pub mac: Option<MacAddr>,
    pub state: String,
    pub confirmed_secs_ago: Option<u64>,
}

#[derive(Default)]
pub struct NeighCache {
    entries: FastMap<u32, Entry>,
    /// Packets dropped because resolution failed or the queue was full.
    pub dropped: u64,
}

impl NeighCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The MAC for `ip` if known (reachable or stale), without side effects.
    pub fn get(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.entries.get(&u32::from(ip))?.mac
    }

    /// Resolves `ip` for a packet. If the address is unknown, `packet()` is
    /// called to get a copy to hold (only then: no copy on the fast path).
    pub fn resolve(
        &mut self,
        ip: Ipv4Addr,
        now: Millis,
        packet: impl FnOnce() -> Vec<u8>,
    ) -> Resolve {
        let key = u32::from(ip);
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_ENTRIES {
            self.dropped += 1;
            return Resolve::Dropped;
        }
        let e = self.entries.entry(key).or_insert(Entry {
            mac: None,
            confirmed: 0,
            last_probe: 0,
            probes: 0,
            held: Vec::new(),
            pinned: false,
        });
        let may_probe = e.probes < PROBES
            && (e.probes == 0 || now.saturating_sub(e.last_probe) >= PROBE_INTERVAL_MS);
        match e.mac {
            Some(mac) if e.pinned => Resolve::Known { mac, probe: false },
            Some(mac) => {
                let stale = now.saturating_sub(e.confirmed) >= REACHABLE_MS;
                let probe = stale && may_probe;
                if probe {
                    e.probes += 1;
                    e.last_probe = now;
                }
                Resolve::Known { mac, probe }
            }
            None => {
                if e.held.len() >= HOLD {
                    self.dropped += 1;
                    return Resolve::Dropped;
                }
                e.held.push(packet());
                if may_probe {
                    e.probes += 1;
                    e.last_probe = now;
                }
                Resolve::Held { probe: may_probe }
            }
        }
    }

    /// Records that `ip` is at `mac` (from an ARP request or reply). Returns
    /// the packets that were waiting for it.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, now: Millis) -> Vec<Vec<u8>> {
        if !mac.is_valid_source() {
            return Vec::new();
        }
        let key = u32::from(ip);
        match self.entries.get_mut(&key) {
            // Pinned: what ARP says does not change it.
            Some(e) if e.pinned => Vec::new(),
            Some(e) => {
                e.mac = Some(mac);
                e.confirmed = now;
                e.probes = 0;
                std::mem::take(&mut e.held)
            }
            None => {
                if self.entries.len() < MAX_ENTRIES {
                    self.entries.insert(
                        key,
                        Entry {
                            mac: Some(mac),
                            confirmed: now,
                            last_probe: 0,
                            probes: 0,
                            held: Vec::new(),
                            pinned: false,
                        },
                    );
                }
                Vec::new()
            }
        }
    }

    /// Addresses that need another probe now (unresolved, probes left, the
    /// interval passed); marks them probed. Entries whose probes all went
    /// unanswered are removed (their held packets counted as dropped).
    pub fn poll(&mut self, now: Millis, mut probe: impl FnMut(Ipv4Addr)) {
        let mut dropped = 0;
        self.entries.retain(|&ip, e| {
            if e.pinned {
                return true;
            }
            let waited = now.saturating_sub(e.last_probe) >= PROBE_INTERVAL_MS;
            let unanswered = e.probes >= PROBES && waited;
            let failed = match e.mac {
                None => unanswered,
                Some(_) => unanswered && now.saturating_sub(e.confirmed) >= REACHABLE_MS,
            };
            if failed {
                dropped += e.held.len() as u64;
                return false;
            }
            if e.mac.is_none() && e.probes < PROBES && waited {
                e.probes += 1;
                e.last_probe = now;
                probe(Ipv4Addr::from(ip));
            }
            true
        });
        self.dropped += dropped;
    }

    /// When [`NeighCache::poll`] has work next, if ever.
    pub fn next_poll(&self) -> Option<Millis> {
        self.entries
            .values()
            .filter(|e| !e.pinned && (e.mac.is_none() || e.probes > 0))
            .map(|e| e.last_probe + PROBE_INTERVAL_MS)
            .min()
    }

    pub fn flush(&mut self) {
        self.entries.clear();
    }

    /// Pins `ip` to `mac`: the address vswitchd gave a port, with that
    /// port's MAC. ARP from anywhere else never changes it (no gratuitous-ARP
    /// poisoning); it is never probed or aged. Returns the packets that were
    /// waiting for it.
    pub fn pin(&mut self, ip: Ipv4Addr, mac: MacAddr) -> Vec<Vec<u8>> {
        let e = self.entries.insert(
            u32::from(ip),
            Entry {
                mac: Some(mac),
                confirmed: 0,
                last_probe: 0,
                probes: 0,
                held: Vec::new(),
                pinned: true,
            },
        );
        e.map(|e| e.held).unwrap_or_default()
    }

    /// Forgets `ip` (its port went away; the address may come back on
    /// another port with another MAC). Returns whether it was known.
    pub fn forget(&mut self, ip: Ipv4Addr) -> bool {
        self.entries.remove(&u32::from(ip)).is_some()
    }

    /// Forgets every address resolved to `mac` (a removed port's MAC: the
    /// namespace may have used addresses besides the one vswitchd gave it).
    /// Returns how many went.
    pub fn forget_mac(&mut self, mac: MacAddr) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.mac != Some(mac));
        before - self.entries.len()
    }

    pub fn entries(&self, now: Millis) -> Vec<NeighView> {
        let mut v: Vec<NeighView> = self
            .entries
            .iter()
            .map(|(&ip, e)| NeighView {
                ip: Ipv4Addr::from(ip),
                mac: e.mac,
                state: match e.mac {
                    Some(_) if e.pinned => "PERMANENT",
                    None => "INCOMPLETE",
                    Some(_) if now.saturating_sub(e.confirmed) < REACHABLE_MS => "REACHABLE",
                    Some(_) => "STALE",
                }
                .into(),
                confirmed_secs_ago: e
                    .mac
                    .filter(|_| !e.pinned)
                    .map(|_| now.saturating_sub(e.confirmed) / 1000),
            })
            .collect();
        v.sort_by_key(|n| n.ip);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn mac() -> MacAddr {
        "02:00:00:00:00:01".parse().unwrap()
    }

    #[test]
    fn hold_then_release_on_learn() {
        let mut n = NeighCache::new();
        assert_eq!(n.resolve(IP, 0, || vec![1]), Resolve::Held { probe: true });
        assert_eq!(
            n.resolve(IP, 10, || vec![2]),
            Resolve::Held { probe: false }
        );
        assert_eq!(
            n.resolve(IP, 20, || vec![3]),
            Resolve::Held { probe: false }
        );
        assert_eq!(n.resolve(IP, 30, || vec![4]), Resolve::Dropped);
        assert_eq!(n.dropped, 1);
        assert_eq!(n.learn(IP, mac(), 40), vec![vec![1], vec![2], vec![3]]);
        assert_eq!(
            n.resolve(IP, 50, || unreachable!()),
            Resolve::Known {
                mac: mac(),
                probe: false
            }
        );
    }

    #[test]
    fn retries_then_gives_up() {
        let mut n = NeighCache::new();
        n.resolve(IP, 0, || vec![1]);
        let mut probes = Vec::new();
        for t in [500, 1000, 1500, 2000, 2500, 3000, 4000] {
            n.poll(t, |ip| probes.push((t, ip)));
        }
        assert_eq!(probes, vec![(1000, IP), (2000, IP)]);
        assert!(n.get(IP).is_none());
        assert_eq!(n.entries(4000).len(), 0, "failed entry removed");
        assert_eq!(n.dropped, 1);
    }

    #[test]
    fn stale_entries_are_used_and_refreshed() {
        let mut n = NeighCache::new();
        n.learn(IP, mac(), 0);
        assert_eq!(n.entries(1).first().unwrap().state, "REACHABLE");
        let r = n.resolve(IP, REACHABLE_MS, Vec::new);
        assert_eq!(
            r,
            Resolve::Known {
                mac: mac(),
                probe: true
            }
        );
        assert_eq!(n.entries(REACHABLE_MS).first().unwrap().state, "STALE");
        // A confirmation makes it reachable again.
        n.learn(IP, mac(), REACHABLE_MS + 5);
        assert_eq!(
            n.entries(REACHABLE_MS + 6).first().unwrap().state,
            "REACHABLE"
        );
    }

    #[test]
    fn forget_mac_removes_every_address_at_that_mac_and_only_those() {
        let mut n = NeighCache::new();
        let other: MacAddr = "02:00:00:00:00:02".parse().unwrap();
        let ip2 = Ipv4Addr::new(10, 0, 0, 2);
        let ip3 = Ipv4Addr::new(10, 0, 0, 3);
        n.pin(IP, mac());
        n.learn(ip2, mac(), 0);
        n.learn(ip3, other, 0);
        assert_eq!(n.forget_mac(mac()), 2);
        assert!(n.get(IP).is_none() && n.get(ip2).is_none());
        assert_eq!(n.get(ip3), Some(other));
        assert_eq!(n.forget_mac(mac()), 0);
    }

    #[test]
    fn multicast_mac_is_not_learned() {
        let mut n = NeighCache::new();
        n.learn(IP, MacAddr::BROADCAST, 0);
        assert!(n.get(IP).is_none());
    }
}
