//! Sharing the table fairly: each inside address (port) holds at most its
//! share, and a full table makes room by evicting the oldest flow that
//! never saw a reply (conntrack's early drop); a flow that has seen traffic
//! both ways is never evicted for a newcomer.

use super::Nat;

impl Nat {
    /// Flows `ip` holds.
    pub(super) fn held_by(&self, ip: [u8; 4]) -> usize {
        self.per_inside.get(&ip).map_or(0, |&n| n as usize)
    }

    /// Whether a full table could make room for a newcomer (a live flow
    /// that never saw a reply exists).
    pub(super) fn can_evict(&self) -> bool {
        self.unreplied > 0
    }

    /// Makes room in a full table by evicting the oldest unreplied flow; a
    /// flow that has seen traffic both ways is never evicted for a
    /// newcomer. Returns whether it made room.
    pub(super) fn early_drop(&mut self) -> bool {
        // Each entry is looked at once: answered or gone, it is dropped.
        while let Some((idx, generation)) = self.order.pop_front() {
            let f = &self.flows[idx as usize];
            if f.live && f.generation == generation && !f.replied {
                self.remove(idx);
                self.stats.early_dropped += 1;
                return true;
            }
        }
        false
    }
}
