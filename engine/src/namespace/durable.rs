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
//!
//! Transactions made durable by the file journal instead (`redo.rs`) are pinned here, each by
//! its own [`PinId`], until a durable commit covers them: the journal keeps its segments from
//! the lowest pinned LSN on.

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
    /// The last transaction whose commit returned (of those [`Namespace::commit_local`] does
    /// not make).
    finished: u64,
    /// Every transaction up to this number is durable.
    durable: u64,
    /// A thread is making a durable commit.
    syncing: bool,
    /// Journaled transactions not yet durable in redb (`redo.rs`), by pin number.
    journaled: std::collections::BTreeMap<u64, Pin>,
    /// The number of the last pin handed out.
    pins: u64,
    /// A journaled transaction's record is in the journal and its redb commit has not
    /// reported yet: the next writer waits for the outcome ([`Namespace::begin`]).
    in_doubt: bool,
    /// Why the namespace refuses every write until a restart, if it does.
    broken: Option<String>,
}

/// A journaled transaction the journal must keep until redb has it durably.
#[derive(Debug)]
struct Pin {
    /// Its sequence number once committed.
    seq: Option<u64>,
    /// Its record's LSN (a lower bound until it is appended).
    lsn: u64,
    since: std::time::Instant,
}

/// A journaled transaction whose record is appended and whose redb commit has not reported
/// ([`Namespace::in_doubt`]).
#[derive(Debug)]
pub(super) struct InDoubt<'a>(Option<&'a Namespace>);

impl InDoubt<'_> {
    /// The redb commit reported: `Err` stops every later write until a restart.
    pub(super) fn resolve<T>(mut self, outcome: &Result<T>) {
        if let Some(ns) = self.0.take() {
            ns.resolve_doubt(outcome.as_ref().err().map(|e| e as &dyn std::fmt::Display));
        }
    }
}

impl Drop for InDoubt<'_> {
    fn drop(&mut self) {
        if let Some(ns) = self.0.take() {
            ns.resolve_doubt(Some(&"the transaction panicked"));
        }
    }
}

/// A pinned journaled transaction ([`Namespace::pin_journal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PinId(u64);

impl Namespace {
    /// A write transaction (committed by [`Namespace::commit`] or [`Namespace::commit_quiet`]).
    /// Refused once a journaled transaction failed after its record was appended.
    pub(super) fn begin(&self) -> Result<WriteTransaction> {
        self.check_deposed()?;
        let mut txn = self.db.begin_write()?;
        {
            // The only writer now: a journaled commit before it has ended, and reports soon.
            let mut st = self.group.state.lock();
            while st.in_doubt {
                self.group.done.wait(&mut st);
            }
            if let Some(why) = &st.broken {
                return Err(Error::Io(why.clone()));
            }
        }
        txn.set_durability(Durability::None)
            .map_err(|e| Error::Io(e.to_string()))?;
        Ok(txn)
    }

    /// A journaled transaction's record is appended; its redb commit follows, then
    /// [`InDoubt::resolve`] (a panic meanwhile resolves it as failed).
    pub(super) fn in_doubt(&self) -> InDoubt<'_> {
        self.group.state.lock().in_doubt = true;
        InDoubt(Some(self))
    }

    /// The journaled transaction in doubt ended: committed, or failed (`Some`: the journal may
    /// make its record durable, so redb and the journal disagree until a restart, which may
    /// replay it; every later write is refused until then).
    fn resolve_doubt(&self, failed: Option<&dyn std::fmt::Display>) {
        let mut st = self.group.state.lock();
        st.in_doubt = false;
        if let Some(e) = failed {
            let why = format!(
                "a namespace change failed after its journal record was written ({e}); \
                 restart the gateway to replay the journal"
            );
            tracing::error!("{why}");
            st.broken.get_or_insert(why);
        }
        self.group.done.notify_all();
    }

    /// Commits `txn` and returns once it is durable (steps 1 and 2).
    pub(super) fn commit(&self, txn: WriteTransaction) -> Result<()> {
        let seq = self.commit_quiet(txn)?;
        self.make_durable(seq)
    }

    /// Commits `txn` without waiting for it to be durable (step 1); returns its number.
    pub(super) fn commit_quiet(&self, txn: WriteTransaction) -> Result<u64> {
        self.commit_counted(txn, true)
    }

    /// Commits `txn`, which changes only tables the namespace image leaves out (`jobs`,
    /// `garbage` rows forgotten), and returns once it is durable: not a change of the image
    /// ([`Namespace::changes`]).
    pub(super) fn commit_local(&self, txn: WriteTransaction) -> Result<()> {
        let seq = self.commit_counted(txn, false)?;
        self.make_durable(seq)
    }

    /// Step 1; `counted`: a change the namespace image holds.
    pub(super) fn commit_counted(&self, txn: WriteTransaction, counted: bool) -> Result<u64> {
        let seq = {
            let mut st = self.group.state.lock();
            st.committed += 1;
            st.committed
        };
        // The inodes read before stay unused from now on (`inode_cache.rs`, step 3).
        let committing = self.inodes.committing();
        let done = txn.commit();
        drop(committing);
        done?;
        if counted {
            let mut st = self.group.state.lock();
            st.finished = st.finished.max(seq);
        }
        Ok(seq)
    }

    /// The number of the last transaction whose commit returned, of those the namespace image
    /// holds: every change up to it is visible to a read transaction begun after this call
    /// (writers are serialised, so all those before it returned too). Counts changes for the
    /// namespace image (`image.rs`).
    pub(crate) fn changes(&self) -> u64 {
        self.group.state.lock().finished
    }

    /// Pins the journal from `lsn` on (a lower bound of the record about to be appended) for
    /// the journaled transaction being committed: before its record exists, so that no
    /// retirement can miss it. [`Namespace::journaled`] or [`Namespace::unpin`] follows with
    /// the pin returned.
    pub(super) fn pin_journal(&self, lsn: u64) -> PinId {
        let mut st = self.group.state.lock();
        st.pins += 1;
        let id = st.pins;
        st.journaled.insert(
            id,
            Pin {
                seq: None,
                lsn,
                since: std::time::Instant::now(),
            },
        );
        PinId(id)
    }

    /// The pinned transaction committed as `seq` with its record at `lsn`: durable through the
    /// journal only, until a durable commit covers `seq` (one may have already).
    pub(super) fn journaled(&self, pin: PinId, seq: u64, lsn: u64) {
        let mut st = self.group.state.lock();
        if seq <= st.durable {
            st.journaled.remove(&pin.0);
        } else if let Some(p) = st.journaled.get_mut(&pin.0) {
            p.seq = Some(seq);
            p.lsn = lsn;
        }
    }

    /// The pinned transaction did not commit.
    pub(super) fn unpin(&self, pin: PinId) {
        self.group.state.lock().journaled.remove(&pin.0);
    }

    /// The LSN of the first journaled namespace record not yet durable in redb (the journal
    /// keeps it), if any.
    pub(crate) fn first_unsynced_lsn(&self) -> Option<u64> {
        let st = self.group.state.lock();
        st.journaled.values().map(|p| p.lsn).min()
    }

    /// How long the oldest journaled namespace record has waited for a durable redb commit.
    pub(crate) fn unsynced_for(&self) -> Option<std::time::Duration> {
        let st = self.group.state.lock();
        st.journaled.values().map(|p| p.since.elapsed()).max()
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
                    st.journaled.retain(|_, p| p.seq.is_none_or(|s| s > upto));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> (tempfile::TempDir, Namespace) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
        (dir, Namespace::open(db).expect("open"))
    }

    /// An empty transaction committed without waiting: its number.
    fn quiet(ns: &Namespace) -> u64 {
        ns.commit_quiet(ns.begin().expect("begin")).expect("commit")
    }

    /// Two journaled creates: the second pins the journal before the first reports its record
    /// (the first left redb's write lock already). The journal must keep the first's record.
    #[test]
    fn the_first_unsynced_record_is_kept_when_pins_interleave() {
        let (_d, ns) = ns();
        let p1 = ns.pin_journal(10);
        let s1 = quiet(&ns);
        let p2 = ns.pin_journal(11);
        ns.journaled(p1, s1, 10);
        let s2 = quiet(&ns);
        ns.journaled(p2, s2, 11);
        assert_eq!(ns.first_unsynced_lsn(), Some(10));
        ns.sync().expect("sync");
        assert_eq!(ns.first_unsynced_lsn(), None);
    }

    /// A durable commit (another thread's) covers a journaled transaction before it reports its
    /// record: nothing is left pinned.
    #[test]
    fn a_record_already_durable_in_redb_pins_nothing() {
        let (_d, ns) = ns();
        let p = ns.pin_journal(5);
        let s = quiet(&ns);
        ns.sync().expect("sync");
        ns.journaled(p, s, 5);
        assert_eq!(ns.first_unsynced_lsn(), None);
        assert!(ns.unsynced_for().is_none());
    }
}
