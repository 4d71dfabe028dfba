//! Fragment tracking shared fairly between sources. A first fragment
//! records (protocol, source, destination, IP id) -> flow for
//! [`FRAG_TTL_MS`] so its later fragments follow it; the records of one
//! source (an inside address outbound, a remote address inbound) are
//! capped at [`FRAG_PER_SOURCE`], all of them at [`FRAG_MAX`].
//!
//! * A source at its cap loses its own oldest record, never another's.
//! * A full table takes the oldest record of the source holding the most.
//! * A record is refreshed (moved to its source's newest) when its id comes
//!   again; its source's records are kept oldest first, so expired ones
//!   are at the front and the sweep pops them.
//!
//! So a source flooding incomplete first fragments only churns its own
//! records, and honest traffic loses nothing as long as a source has fewer
//! than [`FRAG_PER_SOURCE`] datagrams in flight (a 50 MB transfer in
//! 8000-byte datagrams needs a handful: each datagram's fragments follow
//! each other). Finding the largest source is O(1): the sources are kept
//! sorted by how many records they hold (moving one place per record, as
//! counts change by one). Nothing allocates once the slabs reached their
//! bound: at most [`FRAG_MAX`] records of 48 bytes and their index (about
//! 66 bytes a record at the hash map's load), about 0.9 MB when full; with
//! as many sources as records (24 bytes each, and their index) about
//! 1.4 MB: under [`FRAG_BYTES_MAX`] (1.5 MiB) in all.

use crate::hash::FastMap;
use crate::switch::Millis;

/// How long a fragment-tracking record lives.
pub(super) const FRAG_TTL_MS: Millis = 30_000;
/// Most fragment-tracking records.
pub(super) const FRAG_MAX: usize = 8192;
/// Most records one source holds.
pub(super) const FRAG_PER_SOURCE: usize = 1024;
/// What the fragment tracking may hold on the heap at most.
pub(super) const FRAG_BYTES_MAX: usize = 3 << 19;

// The worst case fits: every record with its own source, each hash map at
// two buckets per entry (a power of two over 7/8 load), the order, the
// free list and the bounds.
const _: () = {
    use std::mem::size_of;
    let rec = size_of::<Rec>() + 2 * (size_of::<(u128, u32)>() + 1);
    let src = size_of::<Src>() + 2 * (size_of::<(u64, u32)>() + 1) + 8;
    assert!(FRAG_MAX * (rec + src) + (FRAG_PER_SOURCE + 2) * 4 <= FRAG_BYTES_MAX);
};

const NIL: u32 = u32::MAX;

/// Which source lost a record to make room for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Evicted {
    /// The source itself, at its cap: its own oldest.
    SourceCap,
    /// The table was full: the oldest of the source holding the most.
    TableFull,
}

#[derive(Clone, Copy, Debug)]
struct Rec {
    key: u128,
    expires: Millis,
    flow: u32,
    generation: u32,
    src: u32,
    /// Neighbours in its source's list, oldest first (`next` also chains
    /// free records).
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Src {
    key: u64,
    head: u32,
    tail: u32,
    /// Records held; 0 for a free slot.
    count: u32,
    /// Its place in `order`.
    pos: u32,
}

/// The fragment-tracking records.
#[derive(Default)]
pub(super) struct Frags {
    index: FastMap<u128, u32>,
    recs: Vec<Rec>,
    free_rec: Option<u32>,
    srcs: Vec<Src>,
    free_src: Vec<u32>,
    by_key: FastMap<u64, u32>,
    /// Source slots, those holding the most records first.
    order: Vec<u32>,
    /// `bound[c]`: how many sources hold `c` records or more (`c >= 1`):
    /// they are `order[..bound[c]]`.
    bound: Vec<u32>,
    len: usize,
}

impl Frags {
    /// Heap bytes (a hash map's buckets from its capacity at 7/8 load).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let buckets = |cap: usize| (cap * 8).div_ceil(7);
        buckets(self.index.capacity()) * (size_of::<(u128, u32)>() + 1)
            + buckets(self.by_key.capacity()) * (size_of::<(u64, u32)>() + 1)
            + self.recs.capacity() * std::mem::size_of::<Rec>()
            + self.srcs.capacity() * std::mem::size_of::<Src>()
            + (self.free_src.capacity() + self.order.capacity() + self.bound.capacity()) * 4
    }

    pub(super) fn clear(&mut self) {
        *self = Frags::default();
    }

    /// The (flow, generation) a live record of `key` points to.
    pub(super) fn get(&self, key: u128, now: Millis) -> Option<(u32, u32)> {
        let r = &self.recs[*self.index.get(&key)? as usize];
        (r.expires > now).then_some((r.flow, r.generation))
    }

    /// Records `key` -> (`flow`, `generation`) for `source`, making room as
    /// the module says; returns whose record went, if a live one did.
    pub(super) fn record(
        &mut self,
        key: u128,
        source: u64,
        flow: u32,
        generation: u32,
        now: Millis,
    ) -> Option<Evicted> {
        if let Some(&r) = self.index.get(&key) {
            self.unlink(r);
        }
        let mut evicted = None;
        if let Some(&s) = self.by_key.get(&source) {
            self.pop_expired(s, now);
        }
        let victim = match self.by_key.get(&source) {
            Some(&s) if self.srcs[s as usize].count as usize >= FRAG_PER_SOURCE => {
                Some((s, Evicted::SourceCap))
            }
            _ if self.len >= FRAG_MAX => Some((self.order[0], Evicted::TableFull)),
            _ => None,
        };
        if let Some((s, why)) = victim {
            let r = self.srcs[s as usize].head;
            if self.recs[r as usize].expires > now {
                evicted = Some(why);
            }
            self.unlink(r);
        }
        let s = self.source(source);
        let rec = Rec {
            key,
            expires: now + FRAG_TTL_MS,
            flow,
            generation,
            src: s,
            prev: self.srcs[s as usize].tail,
            next: NIL,
        };
        let r = match self.free_rec {
            Some(r) => {
                let next = self.recs[r as usize].next;
                self.free_rec = (next != NIL).then_some(next);
                self.recs[r as usize] = rec;
                r
            }
            None => {
                self.recs.push(rec);
                (self.recs.len() - 1) as u32
            }
        };
        match rec.prev {
            NIL => self.srcs[s as usize].head = r,
            p => self.recs[p as usize].next = r,
        }
        self.srcs[s as usize].tail = r;
        self.index.insert(key, r);
        self.len += 1;
        self.grow(s);
        evicted
    }

    /// Removes every expired record.
    pub(super) fn sweep(&mut self, now: Millis) {
        for s in 0..self.srcs.len() as u32 {
            if self.srcs[s as usize].count > 0 {
                self.pop_expired(s, now);
            }
        }
    }

    /// Removes the expired records at the front of source `s`'s list (it
    /// may go with its last one).
    fn pop_expired(&mut self, s: u32, now: Millis) {
        while self.srcs[s as usize].count > 0 {
            let r = self.srcs[s as usize].head;
            if self.recs[r as usize].expires > now {
                break;
            }
            self.unlink(r);
        }
    }

    /// The slot of source `key`, taken (holding nothing yet) if new.
    fn source(&mut self, key: u64) -> u32 {
        if let Some(&s) = self.by_key.get(&key) {
            return s;
        }
        let src = Src {
            key,
            head: NIL,
            tail: NIL,
            count: 0,
            pos: self.order.len() as u32,
        };
        let s = match self.free_src.pop() {
            Some(s) => {
                self.srcs[s as usize] = src;
                s
            }
            None => {
                self.srcs.push(src);
                (self.srcs.len() - 1) as u32
            }
        };
        self.order.push(s);
        self.by_key.insert(key, s);
        s
    }

    /// Takes record `r` out of its source's list and the index.
    fn unlink(&mut self, r: u32) {
        let Rec {
            key,
            src,
            prev,
            next,
            ..
        } = self.recs[r as usize];
        match prev {
            NIL => self.srcs[src as usize].head = next,
            p => self.recs[p as usize].next = next,
        }
        match next {
            NIL => self.srcs[src as usize].tail = prev,
            n => self.recs[n as usize].prev = prev,
        }
        self.index.remove(&key);
        self.recs[r as usize].next = self.free_rec.unwrap_or(NIL);
        self.free_rec = Some(r);
        self.len -= 1;
        self.shrink(src);
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.order.swap(a, b);
        self.srcs[self.order[a] as usize].pos = a as u32;
        self.srcs[self.order[b] as usize].pos = b as u32;
    }

    /// Source `s` holds one record more: it moves to the front of those
    /// holding as many as it did, which then hold one fewer than it.
    fn grow(&mut self, s: u32) {
        let c = self.srcs[s as usize].count as usize;
        if self.bound.len() < c + 2 {
            self.bound.resize(FRAG_PER_SOURCE + 2, 0);
        }
        let to = self.bound[c + 1] as usize;
        self.swap(self.srcs[s as usize].pos as usize, to);
        self.bound[c + 1] += 1;
        self.srcs[s as usize].count += 1;
    }

    /// Source `s` holds one record fewer: it moves to the back of those
    /// holding as many as it did; with none left it is gone.
    fn shrink(&mut self, s: u32) {
        let c = self.srcs[s as usize].count as usize;
        let last = self.bound[c] as usize - 1;
        self.swap(self.srcs[s as usize].pos as usize, last);
        self.bound[c] -= 1;
        self.srcs[s as usize].count -= 1;
        if c == 1 {
            // Among those holding nothing, which are last in `order`.
            let end = self.order.len() - 1;
            self.swap(self.srcs[s as usize].pos as usize, end);
            self.order.pop();
            self.by_key.remove(&self.srcs[s as usize].key);
            self.free_src.push(s);
        }
    }
}

#[cfg(test)]
impl Frags {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Records held by `source`.
    pub(super) fn held_by(&self, source: u64) -> usize {
        self.by_key
            .get(&source)
            .map_or(0, |&s| self.srcs[s as usize].count as usize)
    }

    /// Checks the invariants: counts, lists, order and bounds agree.
    pub(super) fn check(&self) {
        let mut total = 0;
        for (i, &s) in self.order.iter().enumerate() {
            let src = &self.srcs[s as usize];
            assert_eq!(src.pos as usize, i);
            assert!(src.count > 0);
            if i > 0 {
                assert!(self.srcs[self.order[i - 1] as usize].count >= src.count);
            }
            let (mut n, mut r, mut prev) = (0, src.head, NIL);
            while r != NIL {
                let rec = &self.recs[r as usize];
                assert_eq!((rec.src, rec.prev), (s, prev));
                assert_eq!(self.index.get(&rec.key), Some(&r));
                prev = r;
                r = rec.next;
                n += 1;
            }
            assert_eq!((n, prev), (src.count, src.tail));
            total += n as usize;
        }
        for c in 1..self.bound.len() {
            let want = self
                .order
                .iter()
                .filter(|&&s| self.srcs[s as usize].count as usize >= c);
            assert_eq!(self.bound[c] as usize, want.count(), "bound[{c}]");
        }
        assert_eq!((total, self.index.len()), (self.len, self.len));
        assert!(self.len <= FRAG_MAX);
    }
}
