//! Group commit of namespace transactions.
//!
//! 1. Every write transaction commits without an fsync (`Durability::None`: redb keeps its
//!    pages in its write buffer) and takes a sequence number while it is still the only writer,
//!    so the numbers follow redb's commit order.
//! 2. It then waits until a durable commit has covered its number. One waiting thread makes
//!    that commit for everyone (an empty transaction with `Durability::Immediate`, which
//!    persists every commit before it); those that committed while it ran wait for the next.
//! 3. A crash shows a prefix of the commits, each whole: every operation stays atomic, and one
//!    returns only once durable. Concurrent operations share one fsync and one write of the
//!    pages they touched.
//!
//! `commit_quiet` skips step 2 for callers that make the commit durable later ([`Namespace::sync`])
//! or never need it to be (a volume's cached size).

use super::Namespace;
use crate::error::{Error, Result};
use parking_lot::{Condvar, Mutex};
use redb::{Durability, WriteTransaction};

/// The group commit's state.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The sequence number of the last transaction that began committing.
    committed: u64,
    /// Every transaction up to this number is durable.
    durable: u64,
    /// A thread is making a durable commit.
    syncing: bool,
    /// Journaled transactions not yet durable in redb: (sequence number once committed,
    /// journal LSN or a lower bound of it), in order (`redo.rs`).
    journaled: std::collections::VecDeque<(Option<u64>, u64, std::time::Instant)>,
}

impl Namespace {
    /// A write transaction (committed by [`Namespace::commit`] or [`Namespace::commit_quiet`]).
    pub(super) fn begin(&self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)
            .map_err(|e| Error::Io(e.to_string()))?;
        Ok(txn)
    }

    /// Commits `txn` and returns once it is durable (steps 1 and 2).
    pub(super) fn commit(&self, txn: WriteTransaction) -> Result<()> {
        let seq = self.commit_quiet(txn)?;
        self.make_durable(seq)
    }

    /// Commits `txn` without waiting for it to be durable (step 1); returns its number.
    pub(super) fn commit_quiet(&self, txn: WriteTransaction) -> Result<u64> {
        let seq = {
            let mut st = self.group.state.lock();
            st.committed += 1;
            st.committed
        };
        txn.commit()?;
        Ok(seq)
    }

    /// Pins the journal from `lsn` on (a lower bound of the record about to be appended) for
    /// the journaled transaction being committed: before its record exists, so that no
    /// retirement can miss it. [`Namespace::journaled`] or [`Namespace::unpin`] follows.
    pub(super) fn pin_journal(&self, lsn: u64) {
        self.group
            .state
            .lock()
            .journaled
            .push_back((None, lsn, std::time::Instant::now()));
    }

    /// The pinned transaction committed as `seq` with its record at `lsn`: durable through the
    /// journal only, until a durable commit covers `seq`.
    pub(super) fn journaled(&self, seq: u64, lsn: u64) {
        let mut st = self.group.state.lock();
        if let Some(e) = st.journaled.iter_mut().rev().find(|e| e.0.is_none()) {
            e.0 = Some(seq);
            e.1 = lsn;
        }
    }

    /// The pinned transaction did not commit.
    pub(super) fn unpin(&self) {
        let mut st = self.group.state.lock();
        if let Some(i) = st.journaled.iter().rposition(|e| e.0.is_none()) {
            st.journaled.remove(i);
        }
    }

    /// The LSN of the first journaled namespace record not yet durable in redb (the journal
    /// keeps it), if any.
    pub(crate) fn first_unsynced_lsn(&self) -> Option<u64> {
        self.group
            .state
            .lock()
            .journaled
            .front()
            .map(|(_, l, _)| *l)
    }

    /// How long the oldest journaled namespace record has waited for a durable redb commit.
    pub(crate) fn unsynced_for(&self) -> Option<std::time::Duration> {
        let st = self.group.state.lock();
        st.journaled.front().map(|(_, _, t)| t.elapsed())
    }

    /// Returns once every transaction committed so far is durable.
    pub(crate) fn sync(&self) -> Result<()> {
        let seq = self.group.state.lock().committed;
        self.make_durable(seq)
    }

    /// Step 2: returns once transaction `seq` is durable.
    fn make_durable(&self, seq: u64) -> Result<()> {
        let mut st = self.group.state.lock();
        loop {
            if st.durable >= seq {
                return Ok(());
            }
            if st.syncing {
                self.group.done.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            let r = self.durable_commit();
            st = self.group.state.lock();
            st.syncing = false;
            self.group.done.notify_all();
            match r {
                Ok(upto) => {
                    st.durable = st.durable.max(upto);
                    while st
                        .journaled
                        .front()
                        .is_some_and(|(s, _, _)| s.is_some_and(|s| s <= upto))
                    {
                        st.journaled.pop_front();
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An empty durable commit; returns the number of the last transaction it covers.
    fn durable_commit(&self) -> Result<u64> {
        let mut txn = self.db.begin_write()?;
        // The only writer now: every numbered transaction has committed (or failed).
        let upto = self.group.state.lock().committed;
        let durability = if self.no_sync.load(std::sync::atomic::Ordering::Relaxed) {
            Durability::None
        } else {
            Durability::Immediate
        };
        txn.set_durability(durability)
            .map_err(|e| Error::Io(e.to_string()))?;
        txn.commit()?;
        Ok(upto)
    }
}
