//! Sets of cluster-address ranges: the cork's unmapped ranges (clusters an `Unmap` entry not
//! yet applied to redb made holes: a redb entry inside one reads as a hole unless the overlay
//! has a newer location) and a volume's reserved ranges (ALLOCATE).

use std::collections::BTreeMap;

/// Disjoint, non-adjacent ranges of cluster addresses (start -> end, exclusive).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(in crate::volume) struct Ranges {
    ranges: BTreeMap<u64, u64>,
}

impl Ranges {
    /// Adds `from..to`, merging it with the ranges it touches.
    pub(in crate::volume) fn insert(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        let (mut lo, mut hi) = (from, to);
        let touching: Vec<u64> = self
            .ranges
            .range(..=to)
            .rev()
            .take_while(|(_, e)| **e >= from)
            .map(|(s, _)| *s)
            .collect();
        for s in touching {
            if let Some(e) = self.ranges.remove(&s) {
                lo = lo.min(s);
                hi = hi.max(e);
            }
        }
        self.ranges.insert(lo, hi);
    }

    /// Removes `from..to`, cutting the ranges it overlaps; returns whether anything changed.
    pub(in crate::volume) fn remove(&mut self, from: u64, to: u64) -> bool {
        let parts = self.within(from, to);
        if parts.is_empty() {
            return false;
        }
        let first = self
            .ranges
            .range(..=from)
            .next_back()
            .map_or(from, |(s, _)| *s);
        let hit: Vec<(u64, u64)> = self
            .ranges
            .range(first..to)
            .filter(|(_, e)| **e > from)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in hit {
            self.ranges.remove(&s);
            if s < from {
                self.ranges.insert(s, from);
            }
            if e > to {
                self.ranges.insert(to, e);
            }
        }
        true
    }

    /// Every range, in order.
    pub(in crate::volume) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(s, e)| (*s, *e))
    }

    /// Whether address `a` is in a range.
    pub(in crate::volume) fn contains(&self, a: u64) -> bool {
        self.ranges
            .range(..=a)
            .next_back()
            .is_some_and(|(_, e)| a < *e)
    }

    /// The parts of the ranges inside `from..to`, in order.
    pub(in crate::volume) fn within(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        if from >= to {
            return Vec::new();
        }
        let first = self
            .ranges
            .range(..=from)
            .next_back()
            .map_or(from, |(s, _)| *s);
        self.ranges
            .range(first..to)
            .filter(|(_, e)| **e > from)
            .map(|(s, e)| ((*s).max(from), (*e).min(to)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Ranges;

    #[test]
    fn ranges_merge_cut_and_answer() {
        let mut h = Ranges::default();
        h.insert(10, 20);
        h.insert(30, 40);
        assert!(h.contains(10) && h.contains(19) && !h.contains(20) && !h.contains(9));
        assert_eq!(h.within(0, 100), vec![(10, 20), (30, 40)]);
        assert_eq!(h.within(15, 35), vec![(15, 20), (30, 35)]);
        h.insert(20, 30);
        assert_eq!(h.within(0, 100), vec![(10, 40)]);
        h.insert(5, 12);
        h.insert(39, 50);
        assert_eq!(h.within(0, 100), vec![(5, 50)]);
        h.insert(60, 60);
        assert_eq!(h.within(0, 100), vec![(5, 50)]);
        assert!(h.within(50, 60).is_empty());
        assert!(h.within(30, 20).is_empty());
        h.insert(0, 100);
        assert_eq!(h.within(0, u64::MAX), vec![(0, 100)]);
        assert!(h.remove(10, 20));
        assert!(!h.remove(12, 18));
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![(0, 10), (20, 100)]);
        assert!(h.remove(5, 30));
        assert!(h.remove(90, 200));
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![(0, 5), (30, 90)]);
    }
}
