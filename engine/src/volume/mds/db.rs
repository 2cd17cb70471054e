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
//!
//! Above the snapshot, decoded pages of the map are kept in the engine's [`MapCache`] (when
//! the registry gave the volume one) by the same two rules: a page read from the snapshot of
//! generation `g` is kept only while no commit came since (under `shared`), and each commit,
//! under `shared` too, forgets the pages it changed ([`Touched`]; all of them, by a new epoch,
//! when it does not say). As for the snapshot, the uncork trims its overlay only after that.

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use redb::ReadableDatabase;

use super::map_cache::{self, MapCache, MapPage};
use super::store::CLUSTERS;

/// Most pages a commit names one by one; beyond, it forgets all of the volume's.
const MAX_TOUCHED: usize = 4096;

/// The cluster map as one snapshot reads it.
pub(in crate::volume) type ClusterTable = redb::ReadOnlyTable<u64, [u8; 28]>;

/// One volume's redb database (`mds.redb`).
pub(in crate::volume) struct Db {
    inner: redb::Database,
    /// The commit generation, and the cluster map shared by lookups since that commit.
    shared: Mutex<(u64, Option<Arc<ClusterTable>>)>,
    /// This open's key in the map cache.
    id: u64,
    /// Cached pages of an older epoch are stale (changed only under `shared`).
    epoch: AtomicU64,
    /// The engine's cache of decoded map pages, once the registry gave it.
    cache: OnceLock<Arc<MapCache>>,
}

/// The map pages a write transaction changed: its commit forgets them in the map cache.
#[derive(Debug)]
pub(in crate::volume) enum Touched {
    /// Unknown, or too many to name: every page of the volume.
    All,
    /// These pages ([`map_cache::page_of`]).
    Pages(BTreeSet<u64>),
}

impl Touched {
    /// None yet.
    pub(super) fn none() -> Touched {
        Touched::Pages(BTreeSet::new())
    }

    /// Cluster address `a` changed.
    pub(super) fn add(&mut self, a: u64) {
        if let Touched::Pages(p) = self {
            p.insert(map_cache::page_of(a));
            if p.len() > MAX_TOUCHED {
                *self = Touched::All;
            }
        }
    }
}

impl Db {
    pub(super) fn new(inner: redb::Database) -> Db {
        Db {
            inner,
            shared: Mutex::new((0, None)),
            id: map_cache::new_id(),
            epoch: AtomicU64::new(0),
            cache: OnceLock::new(),
        }
    }

    /// Keeps decoded map pages in `cache` from now on (once; later calls change nothing).
    pub(super) fn set_map_cache(&self, cache: Arc<MapCache>) {
        let _ = self.cache.set(cache);
    }

    /// Whether map pages are cached.
    pub(super) fn caching(&self) -> bool {
        self.cache.get().is_some()
    }

    /// `f` of page `page` of the map if cached and current.
    pub(super) fn cached<R>(&self, page: u64, f: impl FnOnce(&MapPage) -> R) -> Option<R> {
        let c = self.cache.get()?;
        c.with(self.id, page, self.epoch.load(Ordering::Acquire), f)
    }

    /// Keeps `p`, read from the snapshot of commit generation `generation`, unless a commit
    /// came since (rule 1 of `map_cache.rs`).
    pub(super) fn keep(&self, page: u64, generation: u64, p: &MapPage) {
        let Some(c) = self.cache.get() else {
            return;
        };
        // Copied before the lock every commit takes.
        let copy = p.clone();
        let s = self.shared.lock();
        if s.0 == generation {
            c.insert(self.id, page, self.epoch.load(Ordering::Relaxed), copy);
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
            touched: Touched::All,
        })
    }

    /// The cluster map of the latest commit, shared by lookups (step 1 above).
    pub(super) fn clusters(&self) -> Result<Arc<ClusterTable>, redb::Error> {
        Ok(self.snapshot()?.0)
    }

    /// The commit generation: it changes with every commit.
    pub(super) fn generation(&self) -> u64 {
        self.shared.lock().0
    }

    /// [`Db::clusters`], with the commit generation it holds every commit of (it may hold
    /// later ones too).
    pub(super) fn snapshot(&self) -> Result<(Arc<ClusterTable>, u64), redb::Error> {
        let generation = {
            let s = self.shared.lock();
            if let Some(t) = &s.1 {
                return Ok((t.clone(), s.0));
            }
            s.0
        };
        let table = Arc::new(self.inner.begin_read()?.open_table(CLUSTERS)?);
        self.share(generation, &table);
        Ok((table, generation))
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
    touched: Touched,
}

impl WriteTx<'_> {
    /// Says which map pages this transaction changes (without it, its commit forgets every
    /// cached page of the volume).
    pub(super) fn set_touched(&mut self, touched: Touched) {
        self.touched = touched;
    }

    /// Commits; then no lookup starts from a snapshot before this commit (step 2 above), nor
    /// from a cached page it changed.
    pub(super) fn commit(self) -> Result<(), redb::CommitError> {
        let r = self.tx.commit();
        // Also after a failed commit: what redb holds then is unknown.
        let mut s = self.db.shared.lock();
        s.0 += 1;
        s.1 = None;
        match (&r, self.touched, self.db.cache.get()) {
            (_, _, None) => {}
            (Ok(()), Touched::Pages(pages), Some(c)) => {
                for p in pages {
                    c.remove(self.db.id, p);
                }
            }
            _ => {
                self.db.epoch.fetch_add(1, Ordering::Release);
            }
        }
        drop(s);
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

    fn cached(db: &Db, page: u64) -> bool {
        db.cached(page, |_| ()).is_some()
    }

    #[test]
    fn a_commit_that_names_no_pages_forgets_every_cached_page() {
        let db = db();
        db.set_map_cache(MapCache::new(1 << 20).expect("on"));
        for p in [0, 5] {
            let (_, generation) = db.snapshot().expect("snapshot");
            db.keep(p, generation, &MapPage::default());
        }
        assert!(cached(&db, 0) && cached(&db, 5));
        // Names page 5 only: page 0 stays.
        let mut tx = db.begin_write().expect("write");
        let mut t = Touched::none();
        t.add(5 * map_cache::PAGE + 3);
        tx.set_touched(t);
        tx.commit().expect("commit");
        assert!(cached(&db, 0) && !cached(&db, 5));
        // Names nothing (any commit but the uncork's): all of them go.
        put(&db, 1, 1);
        assert!(!cached(&db, 0));
    }

    #[test]
    fn a_page_read_before_a_commit_is_not_kept_after_it() {
        let db = db();
        db.set_map_cache(MapCache::new(1 << 20).expect("on"));
        let (_, generation) = db.snapshot().expect("snapshot");
        put(&db, 2, 4);
        db.keep(0, generation, &MapPage::default());
        assert!(
            !cached(&db, 0),
            "a page older than the last commit was kept"
        );
        let (_, generation) = db.snapshot().expect("snapshot");
        db.keep(0, generation, &MapPage::default());
        assert!(cached(&db, 0));
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
