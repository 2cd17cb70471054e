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
//! 1. A reader takes the epoch *before* it looks anything up, and keeps what it read from
//!    redb under that epoch.
//! 2. A writer bumps the epoch *after* its transaction's commit returned (or failed), before
//!    the operation that made it returns.
//! 3. An entry is used only while the epoch is still the one it was kept under.
//!
//! A read that raced a commit may keep the old row or the new one, but under the old epoch,
//! which no later reader uses. A reader that meets the old epoch between a commit and its bump
//! answers what was true before the write, whose operation has not returned yet: every
//! operation that starts after a write returned sees its change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Inode;
use crate::types::Ino;

/// Most inodes kept: reached, the cache starts again empty (a few hundred KiB at most).
const MAX_ENTRIES: usize = 4096;

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

    /// Step 3: the inode kept for `ino` under `epoch`, if any.
    pub(super) fn get(&self, ino: Ino, epoch: u64) -> Option<Inode> {
        match self.entries.lock().get(&ino) {
            Some((e, i)) if *e == epoch => Some(i.clone()),
            _ => None,
        }
    }

    /// Step 1: keeps `inode`, read from redb after `epoch` was taken.
    pub(super) fn keep(&self, ino: Ino, epoch: u64, inode: &Inode) {
        let mut m = self.entries.lock();
        if m.len() >= MAX_ENTRIES && !m.contains_key(&ino) {
            m.clear();
        }
        m.insert(ino, (epoch, inode.clone()));
    }

    /// Step 2: a write transaction committed (or failed): nothing kept before is used again.
    pub(super) fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
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
        c.invalidate();
        assert!(c.get(5, c.epoch()).is_none(), "a commit invalidates it");
        // A read that raced the commit keeps under the old epoch: never used again.
        c.keep(5, e, &inode(11));
        assert!(c.get(5, c.epoch()).is_none());
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
