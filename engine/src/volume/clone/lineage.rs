//! A clone's lineage: the volumes whose data it still reads, oldest first.
//!
//! A clone of volume P at the snapshot of TLog N continues P's numbering: its own TLogs start
//! at N + 1 and its own SCOs above every SCO P had sealed by then. So a TLog number names one
//! volume of the chain: ancestor `i` owns the TLogs after ancestor `i - 1`'s last up to its own
//! `last_tlog`, and the clone the TLogs after the last ancestor's. The MetaDataStore maps every
//! cluster to a SCO whatever volume wrote it, and the SCO table gives the TLog that sealed it;
//! that TLog names the volume whose backend namespace holds the SCO, and that volume's upload
//! epochs give its key. A read is one lookup however deep the chain.

use crate::volume::backend::keys::Epochs;
use crate::volume::format::VolumeId;

/// One volume a clone reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ancestor {
    /// The volume (its backend namespace is keyed by it).
    pub(crate) volume: VolumeId,
    /// The last TLog of it the clone's data goes back to (the snapshot's).
    pub(crate) last_tlog: u64,
    /// The epochs its TLogs up to `last_tlog` (and the SCOs they seal) were uploaded in.
    pub(crate) epochs: Epochs,
}

/// The ancestors of a volume, oldest first (empty: not a clone, or flattened).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lineage(Vec<Ancestor>);

impl Lineage {
    /// A lineage from `ancestors`, oldest first: their `last_tlog`s must ascend strictly from
    /// at least 1, and no epoch range of an ancestor may start past its `last_tlog`.
    pub(crate) fn new(ancestors: Vec<Ancestor>) -> Result<Lineage, String> {
        let mut prev = 0u64;
        for a in &ancestors {
            if a.last_tlog <= prev {
                return Err(format!(
                    "ancestor {} ends at TLog {}, not after {prev}",
                    a.volume, a.last_tlog
                ));
            }
            if let Some((f, _)) = a.epochs.ranges().last() {
                if *f > a.last_tlog {
                    return Err(format!(
                        "ancestor {}: epoch range from TLog {f}, past its last TLog {}",
                        a.volume, a.last_tlog
                    ));
                }
            }
            prev = a.last_tlog;
        }
        Ok(Lineage(ancestors))
    }

    /// The ancestors, oldest first.
    pub(crate) fn ancestors(&self) -> &[Ancestor] {
        &self.0
    }

    /// True for a volume that reads nothing of another.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last TLog that belongs to an ancestor (0: none): the volume's own start after it.
    pub(crate) fn base_tlog(&self) -> u64 {
        self.0.last().map_or(0, |a| a.last_tlog)
    }

    /// The ancestor owning TLog `tlog` (`None`: the volume's own).
    pub(crate) fn owner(&self, tlog: u64) -> Option<usize> {
        let i = self.0.partition_point(|a| a.last_tlog < tlog);
        (i < self.0.len()).then_some(i)
    }

    /// The lineage of a clone of `parent` (whose own lineage is `self`, whose epochs are
    /// `epochs`) at the end of its TLog `n`: this lineage, then the parent up to `n` — unless
    /// `n` is where the parent's own TLogs start (a clone that wrote nothing of its own before
    /// the snapshot): the new clone then reads only the parent's ancestors.
    pub(crate) fn child(
        &self,
        parent: VolumeId,
        n: u64,
        epochs: &Epochs,
    ) -> Result<Lineage, String> {
        let base = self.base_tlog();
        if n == base && base > 0 {
            return Ok(self.clone());
        }
        if n <= base {
            return Err(format!(
                "TLog {n} of volume {parent} is one of its parent's (up to {base}): clone the \
                 parent instead"
            ));
        }
        let ranges: Vec<(u64, u64)> = epochs
            .ranges()
            .iter()
            .copied()
            .filter(|(f, _)| *f <= n)
            .collect();
        let mut v = self.0.clone();
        v.push(Ancestor {
            volume: parent,
            last_tlog: n,
            epochs: Epochs::new(ranges)?,
        });
        Lineage::new(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> VolumeId {
        VolumeId([b; 16])
    }

    #[test]
    fn tlogs_belong_to_the_ancestor_whose_range_holds_them() {
        let p = Lineage::default()
            .child(id(1), 5, &Epochs::new(vec![(1, 3), (6, 4)]).unwrap())
            .unwrap();
        // The range from 6 is past the snapshot: not the clone's.
        assert_eq!(p.ancestors()[0].epochs.ranges(), &[(1, 3)]);
        let c = p
            .child(id(2), 9, &Epochs::new(vec![(6, 7)]).unwrap())
            .unwrap();
        assert_eq!(c.base_tlog(), 9);
        assert_eq!(c.owner(1), Some(0));
        assert_eq!(c.owner(5), Some(0));
        assert_eq!(c.owner(6), Some(1));
        assert_eq!(c.owner(9), Some(1));
        assert_eq!(c.owner(10), None);
        // A clone of a clone that wrote nothing of its own: it reads only the ancestors.
        assert_eq!(c.child(id(3), 9, &Epochs::default()), Ok(c.clone()));
        assert!(c.child(id(3), 8, &Epochs::default()).is_err());
        assert!(Lineage::new(vec![c.ancestors()[1].clone(), c.ancestors()[0].clone()]).is_err());
    }
}
