//! Loaded objects: the data of open regular files and volumes (`Live`), their unstable
//! attributes (`Pending`), recording them in the namespace, releasing and purging them.

use super::{Filesystem, LIVE_LIMIT};
use crate::data::{space_used, Commit, ObjectData};
use crate::error::{Error, Result};
use crate::file_data::FileData;
use crate::namespace::{self, DataUpdate, Inode, Namespace, Orphaned};
use crate::registry::{OpenVolume, VolumeObject};
use crate::types::*;
use parking_lot::Mutex;
use std::sync::Arc;

/// Attributes of unstable writes not yet recorded in redb.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) mtime: Timestamp,
    pub(super) change: u64,
}

/// A regular object whose data is loaded.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) generation: u64,
    pub(super) data: Box<dyn ObjectData>,
    pub(super) pending: Mutex<Option<Pending>>,
}

impl Live {
    pub(super) fn needs_commit(&self) -> bool {
        self.data.is_dirty() || self.pending.lock().is_some()
    }

    /// Whether it must stay loaded though nobody uses it: something to commit, or a file's
    /// data the uploader has not applied yet (only a loaded file is uploaded).
    pub(super) fn must_stay(&self) -> bool {
        self.needs_commit() || self.data.as_file().is_some_and(|f| f.needs_upload())
    }
}

impl Filesystem {
    /// Opens every volume that has local state (a local restart each), so that what the last
    /// run left un-uploaded goes to the backend now, and their cached SCOs count towards (and
    /// can be evicted from) `SCO_Cache_Size`, without waiting for a client to touch them. A
    /// volume that fails to open is logged and left for its first access, which reports the
    /// error to the client.
    pub(super) fn reopen_local_volumes(&self) -> Result<()> {
        let mut opened = 0u32;
        for ino in self.volumes.local_inos()? {
            let inode = match self.ns.get_ino(ino)? {
                Some(i) if i.kind == Kind::Volume => i,
                // Not a volume of this namespace (any more): left alone.
                _ => continue,
            };
            match self.open_volume(ino, &inode) {
                Ok(_) => opened += 1,
                // Deleted: its deletion resumes below, nothing to open.
                Err(Error::Stale) => {}
                Err(e) => tracing::error!(ino, error = %e, "cannot reopen a volume at startup"),
            }
        }
        if opened > 0 {
            tracing::info!(volumes = opened, "volumes with local state reopened");
        }
        Ok(())
    }

    /// True when a file created under `name` is a volume (its name ends in one of
    /// `Volume_Suffixes`).
    pub fn is_volume_name(&self, name: &[u8]) -> bool {
        self.config
            .volume_suffixes
            .iter()
            .any(|s| !s.is_empty() && name.ends_with(s.as_bytes()))
    }

    pub(super) fn is_open(&self, ino: Ino) -> bool {
        self.opens.lock().contains_key(&ino)
    }

    /// The open volume `ino` (opened, or created, on first use). The namespace's size of a
    /// volume follows the volume's own (its TLogs are authoritative): a size that a crash left
    /// behind is corrected here.
    pub(super) fn open_volume(&self, ino: Ino, inode: &Inode) -> Result<Arc<OpenVolume>> {
        if let Some(v) = self.volumes.get(ino) {
            return Ok(v);
        }
        let v = self.volumes.open_or_create(ino, inode.size, false)?;
        let size = v.volume().size();
        if size != inode.size {
            tracing::info!(
                ino,
                recorded = inode.size,
                size,
                "volume size recorded again"
            );
            let up = DataUpdate {
                size,
                mtime: inode.mtime,
                change: inode.change + 1,
                ..DataUpdate::default()
            };
            self.ns.persist_data(ino, &up)?;
        }
        Ok(v)
    }

    /// Loads an inode and refuses objects that are gone (no links and not open).
    pub(super) fn get_valid(&self, h: Handle) -> Result<Inode> {
        let inode = self.ns.get(h)?;
        if inode.nlink == 0 && !self.is_open(h.ino) {
            return Err(Error::Stale);
        }
        Ok(inode)
    }

    pub(super) fn peek_live(&self, ino: Ino) -> Option<Arc<Live>> {
        self.live.lock().get(&ino).cloned()
    }

    /// The loaded data of a regular object, loading it on first use.
    pub(super) fn get_live(&self, h: Handle) -> Result<Arc<Live>> {
        if let Some(l) = self.peek_live(h.ino) {
            if l.generation != h.generation {
                return Err(Error::Stale);
            }
            return Ok(l);
        }
        let inode = self.get_valid(h)?;
        match inode.kind {
            Kind::Directory => return Err(Error::IsDir),
            k if !k.is_regular() => return Err(Error::Invalid("not a regular file".into())),
            _ => {}
        }
        let data: Box<dyn ObjectData> = if inode.kind == Kind::Volume {
            let v = self.open_volume(h.ino, &inode)?;
            Box::new(VolumeObject::new(v, &self.volumes))
        } else {
            let map = self.ns.extents(h.ino)?;
            Box::new(FileData::new(h.ino, self.files.clone(), inode.size, map))
        };
        let fresh = Arc::new(Live {
            generation: inode.generation,
            data,
            pending: Mutex::new(None),
        });
        let mut live = self.live.lock();
        let l = live.entry(h.ino).or_insert(fresh).clone();
        if live.len() > LIVE_LIMIT {
            // Forget objects nobody uses and with nothing pending; they reload from redb.
            live.retain(|_, l| Arc::strong_count(l) > 1 || l.must_stay());
        }
        Ok(l)
    }

    /// Records a data commit of `ino` in redb and clears its pending attributes.
    pub(super) fn persist(&self, ino: Ino, live: &Live, c: &Commit, truncate: bool) -> Result<()> {
        persist_commit(&self.ns, ino, live, c, truncate)
    }

    pub(super) fn commit_live(&self, ino: Ino, live: &Live) -> Result<()> {
        if !live.needs_commit() {
            return Ok(());
        }
        live.data
            .sync(&mut |c: &Commit| self.persist(ino, live, c, false))
    }

    /// A client's COMMIT (or stable write): [`Filesystem::commit_live`], except that a
    /// volume's pending attributes (mtime, change) are left for the uploader's next round
    /// (`upload.rs`, within [`super::upload::UPLOAD_EVERY`]) instead of a namespace
    /// transaction per COMMIT. The volume's data is durable when this returns; its namespace
    /// record only caches attributes the loaded object already answers with (`attr_of`).
    pub(super) fn commit_for_client(&self, ino: Ino, live: &Live) -> Result<()> {
        if live.data.as_file().is_some() {
            return self.commit_live(ino, live);
        }
        live.data.sync(&mut |_: &Commit| Ok(()))
    }

    /// Attributes from an inode record, with the pending state of unstable writes on top.
    pub(super) fn attr_of(&self, ino: Ino, i: &Inode) -> Attr {
        let mut a = Attr {
            handle: Handle {
                ino,
                generation: i.generation,
            },
            kind: i.kind,
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            space_used: 0,
            nlink: i.nlink,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            change: i.change,
            rdev: i.rdev,
        };
        match i.kind {
            Kind::Volume if self.peek_live(ino).is_none() => {
                // The volume is the authority for its size: open it (once per run).
                match self.open_volume(ino, i) {
                    Ok(v) => {
                        a.size = v.volume().size();
                        a.space_used = v.volume().space_used();
                    }
                    Err(e) => tracing::warn!(ino, error = %e, "cannot open a volume"),
                }
            }
            Kind::File | Kind::Volume => match self.peek_live(ino) {
                Some(l) => {
                    a.size = l.data.size();
                    a.space_used = l.data.space_used();
                    if let Some(p) = *l.pending.lock() {
                        a.mtime = p.mtime;
                        a.ctime = a.ctime.max(p.mtime);
                        a.change = a.change.max(p.change);
                    }
                }
                None => a.space_used = space_used(i.size, i.nextents),
            },
            Kind::Directory => a.space_used = 4096,
            Kind::Symlink => a.space_used = i.size,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {}
        }
        a
    }

    /// An object lost its last link: delete it now unless it is open (then at the last close).
    pub(super) fn release(&self, orphan: Option<Orphaned>) {
        let Some(Orphaned(ino)) = orphan else { return };
        if self.is_open(ino) {
            return;
        }
        self.purge(ino);
    }

    /// Deletes an orphan's data, then its inode. A regular file's extent objects are not
    /// deleted here: the transaction that drops the inode lists them as garbage, which the
    /// uploader deletes from the backend later (a removal never waits for the backend).
    /// Failures leave the orphan row for the next open.
    pub(super) fn purge(&self, ino: Ino) {
        let live = self.live.lock().remove(&ino);
        let garbage = match live {
            Some(l) => match l.data.as_file() {
                Some(f) => f.forget(),
                None => l.data.delete().map(|()| Vec::new()),
            },
            None => match self.ns.get_ino(ino) {
                Ok(Some(i)) if i.kind == Kind::Volume => {
                    self.volumes.delete(ino).map(|()| Vec::new())
                }
                Ok(_) => self
                    .ns
                    .extents(ino)
                    .and_then(|m| self.files.driver.forget(ino, &m).map_err(Error::from)),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = garbage.and_then(|g| self.ns.purge(ino, &g)) {
            tracing::warn!(ino, error = %e, "purging an unlinked object failed; retried at the next open");
        }
    }
}

/// Records a data commit of `ino` in redb and clears its pending attributes (the facade's
/// commits and the uploader's).
pub(super) fn persist_commit(
    ns: &Namespace,
    ino: Ino,
    live: &Live,
    c: &Commit,
    truncate: bool,
) -> Result<()> {
    let mut pending = live.pending.lock();
    let (mtime, change) = match (*pending, truncate) {
        (Some(p), false) => (p.mtime, p.change),
        (Some(p), true) => (namespace::now(), p.change + 1),
        // An upload of data whose attributes are recorded already: no change of its own.
        (None, false) if c.applied_lsn.is_some() => match ns.get_ino(ino)? {
            Some(i) => (i.mtime, i.change),
            None => return Err(Error::Stale),
        },
        (None, _) => (namespace::now(), 0),
    };
    let up = DataUpdate {
        size: c.size,
        set: c.set.clone(),
        removed: c.removed.clone(),
        garbage: c.garbage.clone(),
        applied_lsn: c.applied_lsn,
        mtime,
        change,
        lazy: c.lazy,
        defer_sync: c.defer_sync,
    };
    ns.persist_data(ino, &up)?;
    *pending = None;
    Ok(())
}
