//! The MAC table (forwarding database): which port each unicast MAC lives on.
//!
//! Design, in the spirit of Open vSwitch's `lib/mac-learning.h`:
//!
//! * Entries live in a slab (`Vec<Entry>` plus a free list) and are found
//!   through a hash map from the MAC (packed in a `u64`) to the slab index.
//!   A lookup is one hash probe; learning allocates nothing once the slab and
//!   map have grown to the table's size.
//! * Every dynamic entry sits on its port's LRU list (intrusive, doubly
//!   linked by slab index), least recently seen first. Refreshing an entry
//!   moves it to the tail in O(1); aging only looks at list heads.
//! * The table is bounded (`max_entries`, `--fdb-max`). When a new MAC
//!   arrives at a full table, the least recently seen entry **of the port
//!   that holds the most dynamic entries** is evicted. A port that floods the
//!   table with random source MACs therefore evicts its own entries, not
//!   other ports' (OVS's policy against MAC flooding).
//! * Static entries (`vswitchctl fdb add`) are on no list: they never age,
//!   are never evicted, and learning never moves them. They count towards the
//!   table size; if the table is full of static entries, learning is refused
//!   and counted.
//! * A known MAC seen again on its port is re-timestamped (and moved to the
//!   tail of its LRU list) at most once per `aging/64` (capped at 1 s), so the
//!   per-frame cost of a busy flow is one hash probe.
//! * Time is a parameter (`now`, monotonic milliseconds), never read here, so
//!   tests warp it. An entry older than the aging time is invisible to
//!   [`Fdb::lookup`] even before [`Fdb::expire`] has removed it.

use crate::wire::MacAddr;

/// Index of a port in the switch's port table.
pub type PortId = u16;
/// Monotonic time in milliseconds, supplied by the caller.
pub type Millis = u64;

const NIL: u32 = u32::MAX;

type MacMap = crate::hash::FastMap<u64, u32>;

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: u64,
    last_seen: Millis,
    prev: u32,
    next: u32,
    port: PortId,
    is_static: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct PortList {
    head: u32,
    tail: u32,
    len: u32,
}

impl PortList {
    const EMPTY: PortList = PortList {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// Table-wide counters (monotonic, never reset by `flush`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FdbStats {
    /// New entries created by learning.
    pub learned: u64,
    /// Entries removed because they were not refreshed within the aging time.
    pub expired: u64,
    /// Entries removed to make room in a full table.
    pub evicted: u64,
    /// Learned MACs that showed up on another port and moved there.
    pub moved: u64,
    /// Learning refused because the table was full of static entries.
    pub refused: u64,
}

/// What [`Fdb::learn`] did with a source MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Known on this port; its age was reset.
    Refreshed,
    /// A new entry. `evicted` names the MAC and port that made room, if any.
    New { evicted: Option<(MacAddr, PortId)> },
    /// Known on `from`; it now lives on the ingress port.
    Moved { from: PortId },
    /// A static entry holds this MAC; learning leaves it alone.
    Static,
    /// Not a learnable source (multicast or all-zero).
    NotLearnable,
    /// The table is full of static entries.
    Refused,
}

/// Why a static entry could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    #[error("{0} is not a unicast MAC address; static entries need one")]
    NotUnicast(MacAddr),
    #[error("the MAC table is full ({0} entries, all static)")]
    Full(usize),
}

/// One row of [`Fdb::entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView {
    pub mac: MacAddr,
    pub port: PortId,
    /// `None` for static entries.
    pub age_ms: Option<Millis>,
}

/// The MAC learning table. See the module docs for the design.
#[derive(Clone)]
pub struct Fdb {
    map: MacMap,
    slots: Vec<Entry>,
    free: Vec<u32>,
    lists: Vec<PortList>,
    statics: usize,
    aging_ms: Millis,
    refresh_ms: Millis,
    max_entries: usize,
    stats: FdbStats,
}

impl Fdb {
    /// A table that holds at most `max_entries` entries (at least 1), whose
    /// dynamic entries expire `aging_ms` after they were last seen.
    pub fn new(aging_ms: Millis, max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        Fdb {
            map: MacMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            lists: Vec::new(),
            statics: 0,
            aging_ms,
            refresh_ms: (aging_ms / 64).clamp(1, 1000),
            max_entries,
            stats: FdbStats::default(),
        }
    }

    pub fn aging_ms(&self) -> Millis {
        self.aging_ms
    }
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
    /// Entries currently stored (static and dynamic, including ones that have
    /// aged but not yet been expired).
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn stats(&self) -> FdbStats {
        self.stats
    }
    /// Dynamic entries held by `port`.
    pub fn port_len(&self, port: PortId) -> usize {
        self.lists.get(port as usize).map_or(0, |l| l.len as usize)
    }

    /// Approximate heap bytes used (slab + hash buckets), for the benches'
    /// bytes-per-entry figure.
    pub fn heap_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(u64, u32)>() + 1; // + control byte
        self.slots.capacity() * std::mem::size_of::<Entry>()
            + self.map.capacity() * bucket
            + self.free.capacity() * 4
            + self.lists.capacity() * std::mem::size_of::<PortList>()
    }

    #[inline]
    fn is_live(&self, e: &Entry, now: Millis) -> bool {
        e.is_static || now.saturating_sub(e.last_seen) < self.aging_ms
    }

    /// The port `mac` was learned on, if the entry exists and has not aged.
    #[inline]
    pub fn lookup(&self, mac: MacAddr, now: Millis) -> Option<PortId> {
        let idx = *self.map.get(&mac.as_u64())?;
        let e = &self.slots[idx as usize];
        self.is_live(e, now).then_some(e.port)
    }

    /// Learns that `mac` was seen as a source on `port` at `now`.
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Millis) -> Learned {
        if !mac.is_valid_source() {
            return Learned::NotLearnable;
        }
        if let Some(&idx) = self.map.get(&mac.as_u64()) {
            let e = self.slots[idx as usize];
            if e.is_static {
                return Learned::Static;
            }
            if e.port == port {
                // Refresh at a coarse grain: a busy flow does not relink the
                // LRU list on every frame. The entry may then age up to
                // `refresh_ms` early (<= 1/64 of the aging time, <= 1 s).
                if now.saturating_sub(e.last_seen) < self.refresh_ms {
                    return Learned::Refreshed;
                }
                self.unlink(idx);
                self.slots[idx as usize].last_seen = now;
                self.push_tail(idx);
                return Learned::Refreshed;
            }
            self.unlink(idx);
            let slot = &mut self.slots[idx as usize];
            slot.port = port;
            slot.last_seen = now;
            self.push_tail(idx);
            self.stats.moved += 1;
            return Learned::Moved { from: e.port };
        }
        let mut evicted = None;
        if self.map.len() >= self.max_entries {
            match self.evict_one() {
                Some(v) => evicted = Some(v),
                None => {
                    self.stats.refused += 1;
                    return Learned::Refused;
                }
            }
        }
        let idx = self.alloc(Entry {
            mac: mac.as_u64(),
            last_seen: now,
            prev: NIL,
            next: NIL,
            port,
            is_static: false,
        });
        self.map.insert(mac.as_u64(), idx);
        self.push_tail(idx);
        self.stats.learned += 1;
        Learned::New { evicted }
    }

    /// Adds or replaces a static entry: `mac` always forwards to `port`.
    pub fn add_static(&mut self, mac: MacAddr, port: PortId) -> Result<(), FdbError> {
        if !mac.is_valid_source() {
            return Err(FdbError::NotUnicast(mac));
        }
        if let Some(&idx) = self.map.get(&mac.as_u64()) {
            let e = self.slots[idx as usize];
            if !e.is_static {
                self.unlink(idx);
                self.statics += 1;
            }
            let slot = &mut self.slots[idx as usize];
            slot.is_static = true;
            slot.port = port;
            return Ok(());
        }
        if self.map.len() >= self.max_entries && self.evict_one().is_none() {
            return Err(FdbError::Full(self.max_entries));
        }
        let idx = self.alloc(Entry {
            mac: mac.as_u64(),
            last_seen: 0,
            prev: NIL,
            next: NIL,
            port,
            is_static: true,
        });
        self.map.insert(mac.as_u64(), idx);
        self.statics += 1;
        Ok(())
    }

    /// Removes the entry for `mac` (static or dynamic). Returns whether one
    /// existed.
    pub fn remove(&mut self, mac: MacAddr) -> bool {
        match self.map.get(&mac.as_u64()).copied() {
            Some(idx) => {
                self.remove_idx(idx);
                true
            }
            None => false,
        }
    }

    /// Removes dynamic entries that have not been refreshed within the aging
    /// time. Returns how many were removed.
    pub fn expire(&mut self, now: Millis) -> usize {
        self.expire_each(now, |_, _| {})
    }

    /// [`Fdb::expire`], telling `aged` each entry it removes.
    pub fn expire_each(&mut self, now: Millis, mut aged: impl FnMut(MacAddr, PortId)) -> usize {
        let mut n = 0;
        for p in 0..self.lists.len() {
            loop {
                let head = self.lists[p].head;
                if head == NIL {
                    break;
                }
                let e = &self.slots[head as usize];
                if now.saturating_sub(e.last_seen) < self.aging_ms {
                    break;
                }
                aged(MacAddr::from_u64(e.mac), e.port);
                self.remove_idx(head);
                n += 1;
            }
        }
        self.stats.expired += n as u64;
        n
    }

    /// When the next dynamic entry will expire, if any: the datapath sleeps
    /// until then at most.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.lists
            .iter()
            .filter(|l| l.head != NIL)
            .map(|l| self.slots[l.head as usize].last_seen + self.aging_ms)
            .min()
    }

    /// Removes dynamic entries (of `port`, or of all ports). Static entries
    /// stay; remove those with [`Fdb::remove`]. Returns how many went.
    pub fn flush(&mut self, port: Option<PortId>) -> usize {
        let ports: Vec<usize> = match port {
            Some(p) => vec![p as usize],
            None => (0..self.lists.len()).collect(),
        };
        let mut n = 0;
        for p in ports {
            while let Some(head) = self.lists.get(p).map(|l| l.head).filter(|&h| h != NIL) {
                self.remove_idx(head);
                n += 1;
            }
        }
        n
    }

    /// Removes every entry of `port`, static ones too (the port is going away).
    pub fn forget_port(&mut self, port: PortId) -> usize {
        let statics: Vec<u64> = self
            .map
            .values()
            .map(|&i| self.slots[i as usize])
            .filter(|e| e.is_static && e.port == port)
            .map(|e| e.mac)
            .collect();
        for mac in &statics {
            if let Some(idx) = self.map.get(mac).copied() {
                self.remove_idx(idx);
            }
        }
        statics.len() + self.flush(Some(port))
    }

    /// All live entries, ordered by port then MAC.
    pub fn entries(&self, now: Millis) -> Vec<EntryView> {
        let mut v: Vec<EntryView> = self
            .map
            .values()
            .map(|&i| &self.slots[i as usize])
            .filter(|e| self.is_live(e, now))
            .map(|e| EntryView {
                mac: MacAddr::from_bytes(MacAddr::from_u64(e.mac).to_bytes()),
                port: e.port,
                age_ms: (!e.is_static).then(|| now.saturating_sub(e.last_seen)),
            })
            .collect();
        v.sort_by_key(|e| (e.port, e.mac));
        v
    }

    /// Up to `max` live entries from slab slot `from` on, in slot order;
    /// returns the slot to go on from, `None` at the end (`fdb show` in
    /// chunks between batches of frames).
    pub fn entries_page(
        &self,
        from: usize,
        max: usize,
        now: Millis,
        mut emit: impl FnMut(EntryView),
    ) -> Option<usize> {
        let mut n = 0;
        for (i, e) in self.slots.iter().enumerate().skip(from) {
            if n == max {
                return Some(i);
            }
            // A freed slot keeps its old contents: live only if the map
            // still points here.
            if self.map.get(&e.mac) != Some(&(i as u32)) || !self.is_live(e, now) {
                continue;
            }
            n += 1;
            emit(EntryView {
                mac: MacAddr::from_u64(e.mac),
                port: e.port,
                age_ms: (!e.is_static).then(|| now.saturating_sub(e.last_seen)),
            });
        }
        None
    }

    // ---- internals -------------------------------------------------------

    fn alloc(&mut self, e: Entry) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = e;
                i
            }
            None => {
                self.slots.push(e);
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Evicts the least recently seen dynamic entry of the port holding the
    /// most dynamic entries. `None` if there is no dynamic entry.
    fn evict_one(&mut self) -> Option<(MacAddr, PortId)> {
        let (port, list) = self
            .lists
            .iter()
            .enumerate()
            .filter(|(_, l)| l.len > 0)
            .max_by_key(|(p, l)| (l.len, std::cmp::Reverse(*p)))?;
        let head = list.head;
        let mac = MacAddr::from_u64(self.slots[head as usize].mac);
        self.remove_idx(head);
        self.stats.evicted += 1;
        Some((mac, port as PortId))
    }

    fn remove_idx(&mut self, idx: u32) {
        let e = self.slots[idx as usize];
        if e.is_static {
            self.statics -= 1;
        } else {
            self.unlink(idx);
        }
        self.map.remove(&e.mac);
        self.free.push(idx);
    }

    fn list_mut(&mut self, port: PortId) -> &mut PortList {
        let p = port as usize;
        if self.lists.len() <= p {
            self.lists.resize(p + 1, PortList::EMPTY);
        }
        &mut self.lists[p]
    }

    fn push_tail(&mut self, idx: u32) {
        let port = self.slots[idx as usize].port;
        let old_tail = {
            let l = self.list_mut(port);
            let t = l.tail;
            l.tail = idx;
            if l.head == NIL {
                l.head = idx;
            }
            l.len += 1;
            t
        };
        if old_tail != NIL {
            self.slots[old_tail as usize].next = idx;
        }
        let e = &mut self.slots[idx as usize];
        e.prev = old_tail;
        e.next = NIL;
    }

    fn unlink(&mut self, idx: u32) {
        let Entry {
            prev, next, port, ..
        } = self.slots[idx as usize];
        if prev != NIL {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        let l = self.list_mut(port);
        if l.head == idx {
            l.head = next;
        }
        if l.tail == idx {
            l.tail = prev;
        }
        l.len -= 1;
    }
}

#[cfg(test)]
mod tests;
