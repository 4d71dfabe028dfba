//! Queries sent upstream, waiting for their answers: bounded in number
//! ([`Upstream::new`]'s `max`) and in time (`timeout`, against the `now`
//! each call is given). Each gets an id of its own, unused among those
//! waiting, and an answer is taken only from the server it was sent to,
//! from port 53, with that id (RFC 5452's checks, short of a random source
//! port per query).

use crate::switch::Millis;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One query upstream: who asked (`C`: the glue's handle of the asker),
/// under which id, and the question itself (for a SERVFAIL if it times out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending<C> {
    pub client: C,
    /// The asker's id, given back to the answer.
    pub client_id: u16,
    pub server: Ipv4Addr,
    pub deadline: Millis,
    /// The query as the asker sent it.
    pub query: Vec<u8>,
}

/// Why a query could not be sent upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max` queries are waiting already.
    Full,
}

/// The queries waiting for an upstream answer, by the id they were sent
/// with.
#[derive(Debug)]
pub struct Upstream<C> {
    waiting: BTreeMap<u16, Pending<C>>,
    max: usize,
    timeout: Millis,
    /// xorshift32 state for the ids.
    rng: u32,
}

impl<C> Upstream<C> {
    /// At most `max` (1..=4096) queries waiting, each at most `timeout` ms.
    pub fn new(max: usize, timeout: Millis, seed: u32) -> Upstream<C> {
        Upstream {
            waiting: BTreeMap::new(),
            max: max.clamp(1, 4096),
            timeout,
            rng: seed | 1,
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn next_rand(&mut self) -> u16 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        (x >> 8) as u16
    }

    /// Records `query` (from `client`, id `client_id`) as sent to `server`
    /// now; returns the id to send it with.
    pub fn insert(
        &mut self,
        client: C,
        client_id: u16,
        server: Ipv4Addr,
        query: &[u8],
        now: Millis,
    ) -> Result<u16, Refused> {
        if self.waiting.len() >= self.max {
            return Err(Refused::Full);
        }
        // At most 4096 of 65536 ids are taken: a free one comes quickly.
        let id = loop {
            let id = self.next_rand();
            if !self.waiting.contains_key(&id) {
                break id;
            }
        };
        self.waiting.insert(
            id,
            Pending {
                client,
                client_id,
                server,
                deadline: now + self.timeout,
                query: query.to_vec(),
            },
        );
        Ok(id)
    }

    /// The query an answer with `id` from `from:port` belongs to, if any
    /// (taken out of the table). An answer from anyone else is ignored.
    pub fn take(&mut self, id: u16, from: Ipv4Addr, port: u16) -> Option<Pending<C>> {
        match self.waiting.get(&id) {
            Some(p) if p.server == from && port == 53 => self.waiting.remove(&id),
            _ => None,
        }
    }

    /// Takes out every query whose time is up at `now`.
    pub fn expire(&mut self, now: Millis) -> Vec<Pending<C>> {
        let late: Vec<u16> = self
            .waiting
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        late.into_iter()
            .filter_map(|id| self.waiting.remove(&id))
            .collect()
    }

    /// Takes out every query of a client `gone` says is gone.
    pub fn forget(&mut self, mut gone: impl FnMut(&C) -> bool) {
        self.waiting.retain(|_, p| !gone(&p.client));
    }

    /// Whether a query of a client `f` picks out is waiting.
    pub fn any(&self, mut f: impl FnMut(&C) -> bool) -> bool {
        self.waiting.values().any(|p| f(&p.client))
    }

    /// When the next query times out.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.waiting.values().map(|p| p.deadline).min()
    }
}
