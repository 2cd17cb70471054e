//! The clone tables: which volumes read which (a clone reads the SCOs of every volume of its
//! lineage), and the volumes removed from the namespace whose data stays because clones still
//! read it ("hidden"). Creating a clone links its inode, its name and its reader rows in one
//! durable transaction.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::inode::Inode;
use super::names::{check_new_name, now};
use super::{get_inode, load_dir, put_inode, Namespace, INODES};
use crate::error::{Error, Result};
use crate::types::{Cred, Handle, Ino, Kind};

/// (ancestor volume, volume reading its SCOs) -> ().
pub(super) const READERS: TableDefinition<(u64, u64), ()> = TableDefinition::new("clone_readers");
/// Volume removed from the namespace while clones read it -> when (seconds since the epoch).
pub(super) const HIDDEN: TableDefinition<u64, i64> = TableDefinition::new("hidden_volumes");

impl Namespace {
    /// Takes an inode number for an object linked later (a clone, built before its name
    /// appears), durably: it is never handed out again.
    pub(crate) fn reserve_ino(&self) -> Result<Ino> {
        let txn = self.begin()?;
        let ino = self.alloc_ino(&txn)?;
        self.commit(txn)?;
        Ok(ino)
    }

    /// Links clone `ino` (reserved by [`Namespace::reserve_ino`]) as `dir/name`: a volume of
    /// `size` bytes that reads the SCOs of `ancestors`, in one durable transaction.
    pub(crate) fn link_clone(
        &self,
        dir: Handle,
        name: &[u8],
        ino: Ino,
        (mode, cred, size): (u32, Cred, u64),
        ancestors: &[Ino],
    ) -> Result<Inode> {
        check_new_name(name)?;
        let txn = self.begin()?;
        let i = {
            let mut inodes = txn.open_table(INODES)?;
            let mut d = load_dir(&inodes, dir)?;
            if txn
                .open_table(super::DIRENTS)?
                .get((dir.ino, name))?
                .is_some()
            {
                return Err(Error::Exists);
            }
            if get_inode(&inodes, ino)?.is_some() {
                return Err(Error::Io(format!("inode {ino} exists already")));
            }
            // Every volume the clone reads must still be there: in the namespace, or hidden. A
            // flatten or deletion that let one go commits before this transaction (then the
            // clone is refused) or after it (then it sees the clone's rows and keeps it).
            // A hidden one counts only while someone still reads it: once its last reader
            // went, its deletion has begun (the hidden row goes only after the marker).
            let hidden = txn.open_table(HIDDEN)?;
            let readers = txn.open_table(READERS)?;
            for a in ancestors {
                let live = get_inode(&inodes, *a)?.is_some()
                    || (hidden.get(*a)?.is_some()
                        && readers.range((*a, 0)..=(*a, u64::MAX))?.next().is_some());
                if !live {
                    return Err(Error::Stale);
                }
            }
            drop((hidden, readers));
            let t = now();
            let mut i = Inode::new(Kind::Volume, mode, cred, self.fsid());
            i.size = size;
            Self::add_entry(&txn, dir.ino, &mut d, name, ino)?;
            d.touch_mc(t);
            put_inode(&mut inodes, dir.ino, &d)?;
            put_inode(&mut inodes, ino, &i)?;
            let mut r = txn.open_table(READERS)?;
            for a in ancestors {
                r.insert((*a, ino), ())?;
            }
            i
        };
        self.commit(txn)?;
        Ok(i)
    }

    /// The volumes reading `ino`'s SCOs.
    pub(crate) fn clone_readers(&self, ino: Ino) -> Result<Vec<Ino>> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(READERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for r in t.range((ino, 0)..=(ino, u64::MAX))? {
            out.push(r?.0.value().1);
        }
        Ok(out)
    }

    /// Marks volume `ino` hidden (its name is gone, clones read its data), durably.
    pub(crate) fn hide_volume(&self, ino: Ino) -> Result<()> {
        let txn = self.begin()?;
        txn.open_table(HIDDEN)?.insert(ino, now().secs)?;
        self.commit(txn)
    }

    /// Volume `reader` reads no ancestor any more (deleted, or flattened): its reader rows go,
    /// durably. Returns the hidden volumes nobody reads now (their data is garbage): the caller
    /// marks each deleted, then [`Namespace::unhide`]s it; a crash in between leaves them to
    /// [`Namespace::unread_hidden`] at the next start.
    pub(crate) fn drop_reader(&self, reader: Ino) -> Result<Vec<Ino>> {
        let txn = self.begin()?;
        let freed = {
            let mut r = txn.open_table(READERS)?;
            let mine: Vec<(u64, u64)> = r
                .iter()?
                .filter_map(|e| e.ok().map(|(k, _)| k.value()))
                .filter(|(_, rd)| *rd == reader)
                .collect();
            if mine.is_empty() {
                return Ok(Vec::new());
            }
            for k in &mine {
                r.remove(*k)?;
            }
            let mut freed = Vec::new();
            for (a, _) in mine {
                if r.range((a, 0)..=(a, u64::MAX))?.next().is_none() {
                    freed.push(a);
                }
            }
            freed
        };
        let hidden = txn.open_table(HIDDEN)?;
        let mut out = Vec::new();
        for a in freed {
            if hidden.get(a)?.is_some() {
                out.push(a);
            }
        }
        drop(hidden);
        self.commit(txn)?;
        Ok(out)
    }

    /// Hidden volume `ino`, whose deletion is now marked, is no longer hidden (durably).
    pub(crate) fn unhide(&self, ino: Ino) -> Result<()> {
        let txn = self.begin()?;
        txn.open_table(HIDDEN)?.remove(ino)?;
        self.commit(txn)
    }

    /// Hidden volumes that nobody reads any more (a crash came between the last reader's end
    /// and their deletion): the caller deletes them as [`Namespace::drop_reader`]'s.
    pub(crate) fn unread_hidden(&self) -> Result<Vec<Ino>> {
        Ok(self
            .hidden_volumes()?
            .into_iter()
            .filter(|(_, _, readers)| readers.is_empty())
            .map(|(i, _, _)| i)
            .collect())
    }

    /// Whether volume `ino` is a clone that reads another volume.
    pub(crate) fn reads_ancestors(&self, ino: Ino) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(READERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        for r in t.iter()? {
            if r?.0.value().1 == ino {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every hidden volume: ino, when it was removed, the volumes reading it.
    pub(crate) fn hidden_volumes(&self) -> Result<Vec<(Ino, i64, Vec<Ino>)>> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(HIDDEN) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            out.push((k.value(), v.value(), Vec::new()));
        }
        drop(t);
        drop(txn);
        for (i, _, readers) in &mut out {
            *readers = self.clone_readers(*i)?;
        }
        Ok(out)
    }
}
