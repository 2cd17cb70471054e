//! An object's data as the namespace records it: extent maps, attributes, orphans (unlinked
//! but still open), purging.

use super::inode::Inode;
use super::names::{now, resolve};
use super::{
    get_inode, load, put_inode, Namespace, APPLIED, EXTENTS, GARBAGE, INODES, LAZY_SYNC_EVERY,
    ORPHANS,
};
use crate::error::{Error, Result};
use crate::types::{Handle, Ino, SetAttr, Timestamp};
use redb::{ReadableDatabase, ReadableTable};
use strata_filedriver::{ExtentMap, ExtentVersion};

/// A regular object that lost its last link in a transaction: its data must go unless opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Orphaned(pub Ino);

impl Namespace {
    /// The extent map of a file (extent index → generation of its object).
    pub(crate) fn extents(&self, ino: Ino) -> Result<ExtentMap> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(EXTENTS)?;
        let mut m = ExtentMap::new();
        for r in t.range((ino, 0)..=(ino, u64::MAX))? {
            let (k, v) = r?;
            m.insert(k.value().1, v.value());
        }
        Ok(m)
    }

    /// The LSN up to which a file's journal records are on the backend and recorded (0: none).
    pub(crate) fn applied_lsn(&self, ino: Ino) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(APPLIED)?;
        Ok(t.get(ino)?.map(|v| v.value()).unwrap_or(0))
    }

    /// The highest applied LSN recorded for any file (0: none): the journal never hands out
    /// an LSN at or below it again.
    pub(crate) fn max_applied_lsn(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(APPLIED)?;
        let mut max = 0;
        for r in t.iter()? {
            max = max.max(r?.1.value());
        }
        Ok(max)
    }

    /// Records extent objects no map names (durably): the collector's list.
    pub(crate) fn add_garbage(&self, garbage: &[(Ino, u64, u64)]) -> Result<()> {
        if garbage.is_empty() {
            return Ok(());
        }
        let txn = self.begin()?;
        {
            let mut t = txn.open_table(GARBAGE)?;
            for g in garbage {
                t.insert(*g, ())?;
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Forgets garbage objects that are deleted from the backend. Not durable by itself (the
    /// next durable transaction carries it): forgetting again after a crash costs a delete.
    pub(crate) fn forget_garbage(&self, deleted: &[(Ino, u64, u64)]) -> Result<()> {
        if deleted.is_empty() {
            return Ok(());
        }
        let txn = self.begin()?;
        {
            let mut t = txn.open_table(GARBAGE)?;
            for g in deleted {
                t.remove(*g)?;
            }
        }
        // The image holds no garbage rows: not a change of it.
        self.commit_counted(txn, false)?;
        Ok(())
    }

    /// Garbage objects recorded (at most `limit`).
    pub(crate) fn garbage(&self, limit: usize) -> Result<Vec<(Ino, u64, u64)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(GARBAGE)?;
        let mut v = Vec::new();
        for r in t.iter()?.take(limit) {
            v.push(r?.0.value());
        }
        Ok(v)
    }

    /// Inodes waiting for their data to be deleted.
    pub(crate) fn orphans(&self) -> Result<Vec<Ino>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ORPHANS)?;
        let mut v = Vec::new();
        for r in t.iter()? {
            v.push(r?.0.value());
        }
        Ok(v)
    }

    /// Applies the metadata part of a setattr (mode, owner, times); size is the caller's.
    pub(crate) fn setattr(&self, h: Handle, set: &SetAttr) -> Result<Inode> {
        let txn = self.begin()?;
        let i;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut obj = load(&inodes, h)?;
            let t = now();
            if let Some(m) = set.mode {
                obj.mode = m & 0o7777;
            }
            if let Some(u) = set.uid {
                obj.uid = u;
            }
            if let Some(g) = set.gid {
                obj.gid = g;
            }
            if let Some(a) = set.atime {
                obj.atime = resolve(a);
            }
            if let Some(m) = set.mtime {
                obj.mtime = resolve(m);
            }
            obj.touch_c(t);
            put_inode(&mut inodes, h.ino, &obj)?;
            i = obj;
        }
        self.commit(txn)?;
        Ok(i)
    }

    /// Records a data commit of a file: new durable size, extents added and removed, times and
    /// change counter (the caller passes the values of its pending writes).
    pub(crate) fn persist_data(&self, ino: Ino, up: &DataUpdate) -> Result<Inode> {
        let txn = self.begin()?;
        // Lazy: made durable by the next durable transaction; a crash before it loses only what
        // the data's owner records itself. At least every LAZY_SYNC_EVERY all the same.
        let mut quiet = up.defer_sync;
        if up.lazy {
            let mut last = self.lazy_synced.lock();
            if last.elapsed() < LAZY_SYNC_EVERY {
                quiet = true;
            } else {
                *last = std::time::Instant::now();
            }
        }
        let i;
        {
            let mut inodes = txn.open_table(INODES)?;
            let mut obj = get_inode(&inodes, ino)?.ok_or(Error::Stale)?;
            let mut ext = txn.open_table(EXTENTS)?;
            for &(e, gen) in &up.set {
                if ext.insert((ino, e), gen)?.is_none() {
                    obj.nextents += 1;
                }
            }
            for &e in &up.removed {
                if ext.remove((ino, e))?.is_some() {
                    obj.nextents = obj.nextents.saturating_sub(1);
                }
            }
            drop(ext);
            if !up.garbage.is_empty() {
                let mut g = txn.open_table(GARBAGE)?;
                for &(idx, gen) in &up.garbage {
                    g.insert((ino, idx, gen), ())?;
                }
            }
            if let Some(lsn) = up.applied_lsn {
                let mut a = txn.open_table(APPLIED)?;
                let was = a.get(ino)?.map(|v| v.value()).unwrap_or(0);
                a.insert(ino, was.max(lsn))?;
            }
            obj.size = up.size;
            obj.mtime = up.mtime;
            obj.ctime = obj.ctime.max(up.mtime);
            // 0: no pending writes carried a counter (e.g. a size change alone); the data
            // changed all the same, so the counter must move.
            obj.change = if up.change == 0 {
                obj.change + 1
            } else {
                obj.change.max(up.change)
            };
            put_inode(&mut inodes, ino, &obj)?;
            i = obj;
        }
        if quiet {
            self.commit_quiet(txn)?;
        } else {
            self.commit(txn)?;
        }
        Ok(i)
    }

    /// Deletes an orphan's inode and extent rows, and lists its extent objects (`garbage`:
    /// index, generation) for the collector, in one durable transaction.
    pub(crate) fn purge(&self, ino: Ino, garbage: &[(u64, u64)]) -> Result<()> {
        let txn = self.begin()?;
        {
            let mut inodes = txn.open_table(INODES)?;
            if let Some(i) = get_inode(&inodes, ino)? {
                if i.nlink > 0 {
                    // Linked again meanwhile: keep it.
                    txn.open_table(ORPHANS)?.remove(ino)?;
                    drop(inodes);
                    self.commit(txn)?;
                    return Ok(());
                }
                inodes.remove(ino)?;
            }
            txn.open_table(EXTENTS)?
                .retain_in((ino, 0)..=(ino, u64::MAX), |_, _| false)?;
            Self::xattrs_drop(&txn, ino)?;
            let mut g = txn.open_table(GARBAGE)?;
            for &(idx, gen) in garbage {
                g.insert((ino, idx, gen), ())?;
            }
            drop(g);
            txn.open_table(APPLIED)?.remove(ino)?;
            txn.open_table(ORPHANS)?.remove(ino)?;
        }
        self.commit(txn)?;
        Ok(())
    }
}

/// What a data commit persists.
#[derive(Debug, Clone, Default)]
pub(crate) struct DataUpdate {
    pub size: u64,
    /// Extents (index, generation) to record, new or replacing the generation recorded.
    pub set: Vec<ExtentVersion>,
    /// Extent indices to forget.
    pub removed: Vec<u64>,
    /// Extent objects no map names any more (index, generation), for the collector.
    pub garbage: Vec<ExtentVersion>,
    /// The file's journal records up to this LSN are applied (on the backend and recorded).
    pub applied_lsn: Option<u64>,
    pub mtime: Timestamp,
    /// The change counter to record (at least); 0 means one more than the recorded one.
    pub change: u64,
    /// Commit without fsync (see `Commit::lazy`).
    pub lazy: bool,
    /// Commit without waiting to be durable: the caller calls [`Namespace::sync`] before it
    /// relies on it (see `Commit::defer_sync`).
    pub defer_sync: bool,
}
