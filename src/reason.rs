//! Drop reasons and their counters: one scheme for every table of reasons
//! (the switch's [`crate::switch::DropReason`], the gateway's
//! [`crate::gateway::GwDrop`], the NAT's [`crate::gateway::nat::NatDrop`]).
//! A reason lists all its values in counter order, names each one (the
//! name is what status, metrics and trace print), and knows its slot;
//! [`Drops`] is one counter per reason, indexed by the reason itself.

use std::marker::PhantomData;
use std::ops::Index;

/// A named reason with a fixed counter slot.
pub trait Reason: Copy + PartialEq + 'static {
    /// Every reason, in counter order.
    const ALL: &'static [Self];
    /// The stable snake_case name shown to users.
    fn name(self) -> &'static str;
    /// The reason's slot: its position in [`Reason::ALL`].
    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is listed in ALL")
    }
}

/// One counter per reason of `R` (`N` = `R::ALL.len()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drops<R, const N: usize> {
    counts: [u64; N],
    _reason: PhantomData<R>,
}

impl<R: Reason, const N: usize> Default for Drops<R, N> {
    fn default() -> Self {
        debug_assert_eq!(R::ALL.len(), N);
        Drops {
            counts: [0; N],
            _reason: PhantomData,
        }
    }
}

impl<R: Reason, const N: usize> Drops<R, N> {
    /// Counts one drop for `r`.
    pub fn add(&mut self, r: R) {
        self.counts[r.index()] += 1;
    }
    pub fn add_n(&mut self, r: R, n: u64) {
        self.counts[r.index()] += n;
    }
    pub fn get(&self, r: R) -> u64 {
        self.counts[r.index()]
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// Every reason with its count, in counter order (zeros included).
    pub fn iter(&self) -> impl Iterator<Item = (R, u64)> + '_ {
        R::ALL.iter().map(|&r| (r, self.counts[r.index()]))
    }
    /// The reasons that counted anything, by name.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.name(), n))
    }
}

/// By slot, as `drops[reason.index()]`.
impl<R, const N: usize> Index<usize> for Drops<R, N> {
    type Output = u64;
    fn index(&self, i: usize) -> &u64 {
        &self.counts[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::GwDrop;
    use crate::gateway::nat::NatDrop;
    use crate::switch::DropReason;

    /// Names are unique and non-empty, slots are positions, for each scheme.
    fn well_formed<R: Reason + std::fmt::Debug>() {
        let mut names: Vec<_> = R::ALL.iter().map(|r| r.name()).collect();
        for (i, r) in R::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert!(!r.name().is_empty());
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), R::ALL.len(), "duplicate names");
    }

    #[test]
    fn every_scheme_is_well_formed() {
        well_formed::<DropReason>();
        well_formed::<GwDrop>();
        well_formed::<NatDrop>();
        well_formed::<crate::wire::vxlan::VxlanDrop>();
    }

    #[test]
    fn counts_by_reason() {
        let mut d: Drops<NatDrop, { NatDrop::ALL.len() }> = Drops::default();
        d.add(NatDrop::NoFlow);
        d.add(NatDrop::NoFlow);
        d.add(NatDrop::TableFull);
        assert_eq!(d.get(NatDrop::NoFlow), 2);
        assert_eq!(d[NatDrop::TableFull.index()], 1);
        assert_eq!(d.total(), 3);
        assert_eq!(
            d.nonzero().collect::<Vec<_>>(),
            vec![("nat_no_flow", 2), ("nat_table_full", 1)]
        );
    }
}
