//! Whether a volume directory's names (files created or removed in it) are durable.
//!
//! A name is durable only after an fsync of its directory. Several paths fsync the same
//! directory (a commit round, a TLog's close, a restart), and a commit round does it without
//! the volume lock held, so a single "dirty" flag cleared at the start of a round would let a
//! concurrent TLog close believe the names durable while the round's fsync has not happened yet.
//! Instead every change bumps a counter, and an fsync records the count it covered once it
//! has returned: the names are durable exactly when `synced == changes`.

/// Changes to one directory's names, and how many of them an fsync has made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DirSync {
    changes: u64,
    synced: u64,
}

impl DirSync {
    /// A directory with changes not yet durable (a new volume, or one reopened after a crash,
    /// whose names may still be only in the page cache).
    pub(super) fn dirty() -> DirSync {
        DirSync {
            changes: 1,
            synced: 0,
        }
    }

    /// A name was created or removed.
    pub(super) fn touch(&mut self) {
        self.changes += 1;
    }

    /// The fsync to ask for: `Some(mark)` when names are not durable yet; pass the mark to
    /// [`DirSync::synced_up_to`] once the fsync has returned.
    pub(super) fn pending(&self) -> Option<u64> {
        (self.synced < self.changes).then_some(self.changes)
    }

    /// An fsync that started after change `mark` has returned.
    pub(super) fn synced_up_to(&mut self, mark: u64) {
        self.synced = self.synced.max(mark);
    }
}

#[cfg(test)]
mod tests {
    use super::DirSync;

    #[test]
    fn a_change_during_an_fsync_stays_pending() {
        let mut d = DirSync::default();
        assert_eq!(d.pending(), None);
        d.touch();
        let mark = d.pending().expect("pending");
        // A round takes the mark, then (before its fsync returns) another name is created.
        d.touch();
        d.synced_up_to(mark);
        assert!(d.pending().is_some(), "the later change is not covered");
        let m2 = d.pending().expect("pending");
        d.synced_up_to(m2);
        assert_eq!(d.pending(), None);
        // An older fsync finishing late never moves the mark back.
        d.synced_up_to(mark);
        assert_eq!(d.pending(), None);
    }
}
