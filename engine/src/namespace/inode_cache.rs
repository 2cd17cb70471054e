//! The inodes [`Namespace::get`](super::Namespace::get) read lately, kept until the next
//! write transaction commits.
//!
//! Ganesha asks for a file's attributes after every WRITE (its reply carries them, and the
//! write made its cached ones stale), under its own lock of the object: with many writes in
//! flight to one volume they queue there, so each GETATTR's redb read transaction is paid
//! once per write and waited for by the others. Between two commits of the namespace the
//! inode rows cannot change, so a read repeats the last one's answer.
//!
//! # The protocol
//! The epoch counts, in its low 16 bits, the commits in flight, and above them the commits
//! begun. Writers are serialised by redb, but one may begin its commit before the one before
//! it has counted itself out (redb lets the next writer in as the commit ends, before
//! `commit` returns), so the count may briefly be two.
//! 1. A reader takes the epoch *before* it looks anything up. One with a commit in flight: it
//!    reads redb and keeps nothing.
//! 2. It keeps what it read from redb only if the epoch, checked again under the cache's lock,
//!    is still the one it took: then no commit began since, and the row it read is the
//!    current one.
//! 3. A writer counts a commit begun and in flight *before* its transaction's commit, and out
//!    of flight *after* the commit returned (or failed), before the operation that made it
//!    returns.
//! 4. An entry is used only under the epoch it was kept under.
//!
//! An epoch with no commit in flight comes after every commit begun before it ended, and is
//! never seen again once the next commit begins. So an entry is what redb held all through
//! its epoch, and a reader that started after a write returned takes a later epoch: it never
//! sees an older row, nor one older than what another reader already answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Inode;
use crate::types::Ino;

/// Most inodes kept: reached, the cache starts again empty (a few hundred KiB at most).
const MAX_ENTRIES: usize = 4096;

/// One commit begun, in the epoch (above the count of commits in flight).
const BEGUN: u64 = 1 << 16;

/// Whether a commit is in flight at `epoch`.
fn in_flight(epoch: u64) -> bool {
    !epoch.is_multiple_of(BEGUN)
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct InodeCache {
    epoch: AtomicU64,
    entries: Mutex<HashMap<Ino, (u64, Inode)>>,
}

impl InodeCache {
    /// Step 1: the epoch a reader works under.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Step 4: the inode kept for `ino` under `epoch`, if any (none while a commit runs).
    pub(super) fn get(&self, ino: Ino, epoch: u64) -> Option<Inode> {
        if in_flight(epoch) {
            return None;
        }
        match self.entries.lock().get(&ino) {
            Some((e, i)) if *e == epoch => Some(i.clone()),
            _ => None,
        }
    }

    /// Step 2: keeps `inode`, read from redb after `epoch` was taken, if no commit began since.
    pub(super) fn keep(&self, ino: Ino, epoch: u64, inode: &Inode) {
        if in_flight(epoch) {
            return;
        }
        let mut m = self.entries.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if m.len() >= MAX_ENTRIES && !m.contains_key(&ino) {
            m.clear();
        }
        m.insert(ino, (epoch, inode.clone()));
    }

    /// Step 3: a write transaction is about to commit; it is counted out of flight when the
    /// returned guard is dropped (after the commit returned or failed, or a panic).
    pub(super) fn committing(&self) -> Committing<'_> {
        self.epoch.fetch_add(BEGUN + 1, Ordering::AcqRel);
        Committing(self)
    }
}

/// A commit in progress ([`InodeCache::committing`]).
#[must_use]
pub(super) struct Committing<'a>(&'a InodeCache);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.epoch.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Cred, Kind};

    fn inode(size: u64) -> Inode {
        let mut i = Inode::new(Kind::File, 0o644, Cred::default(), 7);
        i.size = size;
        i
    }

    #[test]
    fn an_entry_is_used_only_under_the_epoch_it_was_kept_under() {
        let c = InodeCache::default();
        let e = c.epoch();
        assert!(c.get(5, e).is_none());
        c.keep(5, e, &inode(10));
        assert_eq!(c.get(5, e).map(|i| i.size), Some(10));
        drop(c.committing());
        assert!(c.get(5, c.epoch()).is_none(), "a commit invalidates it");
        // A read begun before the commit keeps nothing.
        c.keep(5, e, &inode(11));
        assert!(c.get(5, c.epoch()).is_none());
    }

    #[test]
    fn nothing_is_kept_or_answered_while_a_commit_runs() {
        let c = InodeCache::default();
        let before = c.epoch();
        let commit = c.committing();
        // A reader that took the epoch before the commit began read the old row: not kept.
        c.keep(5, before, &inode(1));
        assert!(
            c.get(5, before).is_none(),
            "a row read before the commit is kept"
        );
        // One that takes it during the commit reads redb (the old row or the new one), and
        // neither keeps nor answers from the cache.
        let during = c.epoch();
        c.keep(5, during, &inode(1));
        assert!(
            c.get(5, during).is_none(),
            "answered from the cache during a commit"
        );
        drop(commit);
        let after = c.epoch();
        assert!(
            c.get(5, after).is_none(),
            "neither the old row nor the racing one"
        );
        c.keep(5, after, &inode(2));
        assert_eq!(c.get(5, after).map(|i| i.size), Some(2));
    }

    #[test]
    fn a_commit_begun_before_the_last_one_counted_itself_out_keeps_the_cache_off() {
        let c = InodeCache::default();
        let first = c.committing();
        // redb lets the next writer commit before the first one's guard is dropped.
        let second = c.committing();
        let during = c.epoch();
        c.keep(5, during, &inode(1));
        assert!(
            c.get(5, during).is_none(),
            "answered while two commits are in flight"
        );
        drop(first);
        let still = c.epoch();
        c.keep(5, still, &inode(1));
        assert!(
            c.get(5, still).is_none(),
            "the second commit is still in flight"
        );
        drop(second);
        let after = c.epoch();
        assert!(c.get(5, after).is_none());
        assert!(
            ![during, still].contains(&after),
            "an epoch seen during a commit came back"
        );
        c.keep(5, after, &inode(2));
        assert_eq!(c.get(5, after).map(|i| i.size), Some(2));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let c = InodeCache::default();
        let e = c.epoch();
        for ino in 0..(MAX_ENTRIES as u64 + 10) {
            c.keep(ino, e, &inode(ino));
        }
        assert!(c.entries.lock().len() <= MAX_ENTRIES);
        let last = MAX_ENTRIES as u64 + 9;
        assert_eq!(c.get(last, e).map(|i| i.size), Some(last));
    }
}
