//! Snapshots of volumes: create, list, info, delete (the volume's own methods do the work,
//! `volume/snapshot/`).

use super::Filesystem;
use crate::error::{Error, Result};
use crate::registry::OpenVolume;
use crate::types::{Handle, Kind, Snapshot};
use crate::volume::snapshot::SnapshotInfo;
use std::sync::Arc;

fn report(s: SnapshotInfo) -> Snapshot {
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
    fn snapshot_volume(&self, h: Handle) -> Result<Arc<OpenVolume>> {
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

    /// Deletes snapshot `name` of volume `h` (`NotFound` without one), in constant time.
    pub fn snapshot_delete(&self, h: Handle, name: &str) -> Result<()> {
        let v = self.snapshot_volume(h)?;
        v.volume().snapshot_delete(name)
    }
}
