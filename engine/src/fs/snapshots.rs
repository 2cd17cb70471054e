//! Snapshots of volumes: create, list, info, delete, rollback (the volume's own methods do the
//! work, `volume/snapshot/`).

use super::{ChangeHook, Filesystem};
use crate::error::{Error, Result};
use crate::namespace::{self, DataUpdate};
use crate::registry::OpenVolume;
use crate::types::{Handle, Kind, Snapshot};
use crate::volume::snapshot::SnapshotInfo;
use std::sync::Arc;

pub(super) fn report(s: SnapshotInfo) -> Snapshot {
    let r = s.record;
    Snapshot {
        id: r.id,
        name: r.name,
        tlog: r.tlog,
        created: r.created,
        meta: r.meta,
        bytes_since_previous: s.bytes_since_previous,
        on_backend: s.on_backend,
    }
}

impl Filesystem {
    /// The open volume behind `h` (`Invalid` for anything else).
    pub(super) fn snapshot_volume(&self, h: Handle) -> Result<Arc<OpenVolume>> {
        let inode = self.get_valid(h)?;
        if inode.kind != Kind::Volume {
            return Err(Error::Invalid("not a volume".into()));
        }
        self.open_volume(h.ino, &inode)
    }

    /// Takes snapshot `name` of volume `h`: everything written to it before the call, whatever
    /// its size or its number of snapshots, in constant time. A name in use is `Exists`.
    pub fn snapshot_create(
        &self,
        h: Handle,
        name: &str,
        meta: Vec<(String, String)>,
    ) -> Result<Snapshot> {
        let v = self.snapshot_volume(h)?;
        v.volume().snapshot_create(name, meta).map(report)
    }

    /// Every snapshot of volume `h`, oldest first.
    pub fn snapshot_list(&self, h: Handle) -> Result<Vec<Snapshot>> {
        let v = self.snapshot_volume(h)?;
        Ok(v.volume()
            .snapshot_list()?
            .into_iter()
            .map(report)
            .collect())
    }

    /// Snapshot `name` of volume `h` (`NotFound` without one).
    pub fn snapshot_info(&self, h: Handle, name: &str) -> Result<Snapshot> {
        let v = self.snapshot_volume(h)?;
        v.volume().snapshot_info(name).map(report)
    }

    /// Rolls volume `h` back to snapshot `name`: it then reads exactly as when the snapshot
    /// was taken, and every snapshot is kept. Refused (`Invalid`) while an NFSv4 client holds the
    /// volume open, unless `force`: a client with the disk open would go on from data that is
    /// no longer there. Its size, mtime, ctime and change attribute move, so clients drop what
    /// they cached. Needs the backend (the snapshot's TLogs are read from there).
    pub fn snapshot_rollback(&self, h: Handle, name: &str, force: bool) -> Result<Snapshot> {
        self.snapshot_rollback_with(h, name, force, &crate::progress::NoProgress)
    }

    /// [`Filesystem::snapshot_rollback`], reporting its steps to `p`; a cancel is honoured
    /// until the volume starts to be rewritten (the volume is then as before).
    pub fn snapshot_rollback_with(
        &self,
        h: Handle,
        name: &str,
        force: bool,
        p: &dyn crate::progress::Progress,
    ) -> Result<Snapshot> {
        let v = self.snapshot_volume(h)?;
        if !force && self.is_open(h.ino) {
            return Err(Error::Invalid(
                "an NFSv4 client holds the volume open: power the VM off or detach the disk \
                 first (or force the rollback)"
                    .into(),
            ));
        }
        // Attributes of writes not committed yet are recorded first: the change counter
        // recorded after the rollback is then above every one a client saw.
        if let Some(live) = self.peek_live(h.ino) {
            self.commit_live(h.ino, &live)?;
        }
        let s = v.volume().snapshot_rollback(name, p)?;
        // Above every change value a client saw: the recorded one, and that of writes not
        // committed yet (which the rollback superseded).
        let live = self.peek_live(h.ino);
        let pending = live
            .as_ref()
            .and_then(|l| l.pending.lock().take())
            .map_or(0, |p| p.change);
        let recorded = self.ns.get_ino(h.ino)?.map_or(0, |i| i.change);
        let up = DataUpdate {
            size: v.volume().size(),
            mtime: namespace::now(),
            change: recorded.max(pending) + 1,
            ..DataUpdate::default()
        };
        self.ns.persist_data(h.ino, &up)?;
        let hook = self.change_hook.0.lock().clone();
        if let Some(hook) = hook {
            hook(h);
        }
        Ok(report(s))
    }

    /// Sets what runs when an object changed other than through an NFS operation (a
    /// rollback): the FSAL drops Ganesha's cached attributes of it, so that clients see the new
    /// size, mtime and change attribute at once.
    pub fn set_change_hook(&self, hook: ChangeHook) {
        *self.change_hook.0.lock() = Some(hook);
    }

    /// Deletes snapshot `name` of volume `h` (`NotFound` without one), in constant time.
    pub fn snapshot_delete(&self, h: Handle, name: &str) -> Result<()> {
        let v = self.snapshot_volume(h)?;
        v.volume().snapshot_delete(name)
    }
}
