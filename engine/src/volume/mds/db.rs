//! The MetaDataStore's redb database, and the read snapshot of its cluster map that lookups
//! share.
//!
//! A READ looks its clusters up in `clusters`; a redb read transaction and the opening of the
//! table cost more than the range scan itself. So lookups share one read-only table, taken
//! from one snapshot, until the next write transaction commits:
//!
//! 1. A lookup takes the shared table when there is one; otherwise it notes the generation,
//!    opens a snapshot, and shares it only if no commit happened meanwhile (a snapshot older
//!    than a commit is used once, as any lookup's own snapshot would be, never kept).
//! 2. Every commit, through [`WriteTx::commit`] (the only way to commit this database), bumps
//!    the generation and drops the shared table, after redb's commit returned.
//!
//! A lookup between a commit and the drop still reads the snapshot before it: what that commit
//! applied is still in the overlay then (the uncork trims the overlay only after its commit,
//! under the volume lock), so it reads the same. Dropping the table at each commit also means
//! no old snapshot stays pinned while writes go on (redb cannot reuse pages a live reader sees).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use parking_lot::Mutex;
use redb::ReadableDatabase;

use super::store::CLUSTERS;

/// The cluster map as one snapshot reads it.
pub(in crate::volume) type ClusterTable = redb::ReadOnlyTable<u64, [u8; 28]>;

/// One volume's redb database (`mds.redb`).
pub(in crate::volume) struct Db {
    inner: redb::Database,
    /// The commit generation, and the cluster map shared by lookups since that commit.
    shared: Mutex<(u64, Option<Arc<ClusterTable>>)>,
}

impl Db {
    pub(super) fn new(inner: redb::Database) -> Db {
        Db {
            inner,
            shared: Mutex::new((0, None)),
        }
    }

    /// A read transaction of its own (a consistent snapshot of every table).
    pub(super) fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        self.inner.begin_read()
    }

    /// A write transaction; commit it with [`WriteTx::commit`].
    pub(super) fn begin_write(&self) -> Result<WriteTx<'_>, redb::TransactionError> {
        Ok(WriteTx {
            tx: self.inner.begin_write()?,
            db: self,
        })
    }

    /// The cluster map of the latest commit, shared by lookups (step 1 above).
    pub(super) fn clusters(&self) -> Result<Arc<ClusterTable>, redb::Error> {
        let generation = {
            let s = self.shared.lock();
            if let Some(t) = &s.1 {
                return Ok(t.clone());
            }
            s.0
        };
        let table = Arc::new(self.inner.begin_read()?.open_table(CLUSTERS)?);
        self.share(generation, &table);
        Ok(table)
    }

    /// Shares `table`, opened after commit generation `generation`, unless a commit came since.
    fn share(&self, generation: u64, table: &Arc<ClusterTable>) {
        let mut s = self.shared.lock();
        if s.0 == generation {
            s.1 = Some(table.clone());
        }
    }
}

/// A write transaction of [`Db`]: redb's, whose commit also ends the shared snapshot.
pub(in crate::volume) struct WriteTx<'a> {
    tx: redb::WriteTransaction,
    db: &'a Db,
}

impl WriteTx<'_> {
    /// Commits; then no lookup starts from a snapshot before this commit (step 2 above).
    pub(super) fn commit(self) -> Result<(), redb::CommitError> {
        let r = self.tx.commit();
        // Also after a failed commit: what redb holds then is unknown.
        let mut s = self.db.shared.lock();
        s.0 += 1;
        s.1 = None;
        r
    }
}

impl Deref for WriteTx<'_> {
    type Target = redb::WriteTransaction;
    fn deref(&self) -> &redb::WriteTransaction {
        &self.tx
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut redb::WriteTransaction {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;

    fn db() -> Db {
        let inner = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("in-memory redb");
        let db = Db::new(inner);
        let tx = db.begin_write().expect("write");
        tx.open_table(CLUSTERS).expect("table");
        tx.commit().expect("commit");
        db
    }

    fn put(db: &Db, address: u64, byte: u8) {
        let tx = db.begin_write().expect("write");
        tx.open_table(CLUSTERS)
            .expect("table")
            .insert(address, [byte; 28])
            .expect("insert");
        tx.commit().expect("commit");
    }

    fn get(db: &Db, address: u64) -> Option<u8> {
        let t = db.clusters().expect("clusters");
        let v = t.get(address).expect("get");
        v.map(|v| v.value()[0])
    }

    #[test]
    fn a_lookup_after_a_commit_sees_it() {
        let db = db();
        assert_eq!(get(&db, 7), None);
        // Shared now: the next lookup reuses this snapshot ...
        assert!(Arc::ptr_eq(
            &db.clusters().expect("a"),
            &db.clusters().expect("b")
        ));
        // ... until a commit.
        put(&db, 7, 1);
        assert_eq!(get(&db, 7), Some(1));
        put(&db, 7, 2);
        assert_eq!(get(&db, 7), Some(2));
    }

    #[test]
    fn a_snapshot_opened_before_a_commit_is_not_shared_after_it() {
        let db = db();
        let generation = db.shared.lock().0;
        // A lookup opened its snapshot, then a commit landed before it could share it.
        let old = Arc::new(
            db.inner
                .begin_read()
                .expect("read")
                .open_table(CLUSTERS)
                .expect("table"),
        );
        put(&db, 3, 9);
        db.share(generation, &old);
        assert_eq!(get(&db, 3), Some(9), "the older snapshot was kept");
    }

    #[test]
    fn a_failed_or_aborted_write_changes_nothing_shared() {
        let db = db();
        put(&db, 1, 5);
        assert_eq!(get(&db, 1), Some(5));
        {
            let tx = db.begin_write().expect("write");
            tx.open_table(CLUSTERS)
                .expect("table")
                .insert(1, [6; 28])
                .expect("insert");
            // Dropped without a commit: redb aborts it.
        }
        assert_eq!(get(&db, 1), Some(5));
    }
}
