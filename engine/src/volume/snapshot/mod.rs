//! Snapshots of a volume: a snapshot is a TLog boundary, the volume as of the end of TLog N.
//!
//! 1. **Create** seals the open SCO and closes the open TLog (durably: the boundary), then adds
//!    the snapshot's record to the MetaDataStore in one durable transaction. Nothing is copied
//!    and nothing depends on the volume's size or on how many snapshots it has.
//! 2. **On the backend**, once the manifest names TLog N, the pipeline puts the record as an
//!    object of its own, `snap/<id>.<epoch>` (immutable, one per snapshot), so the manifest
//!    rewritten on every TLog upload never grows with the snapshot count. A backend restart
//!    lists `snap/` and takes every record back.
//! 3. **Delete** drops the record (one durable transaction) and remembers its object, which
//!    the pipeline deletes. What only the snapshot referenced becomes garbage for the scrubber.
//! 4. **Rollback** (`rollback.rs`) appends entries that point every cluster back at the data
//!    the snapshot saw; the history stays one line of TLogs, so every snapshot is kept.
//!
//! Byte layout and tables: `engine/FORMATS.md`, "Snapshots".

mod backend;
pub(crate) mod record;
mod rollback;

pub(in crate::volume) use self::backend::restore_snapshots;
pub(crate) use self::record::SnapshotRecord;
use self::record::{check_meta, check_name};
pub(in crate::volume) use self::rollback::{remove_rollback_dir, undo_unfinished_rollback};

use crate::error::{Error, Result};
use crate::volume::format::CLUSTER_SIZE_U64;
use crate::volume::state::Volume;

/// A snapshot as a volume reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotInfo {
    /// Its record.
    pub record: SnapshotRecord,
    /// Bytes the volume wrote between the previous snapshot and this one (since the volume was
    /// created, or since its last backend restart, for the first).
    pub bytes_since_previous: u64,
    /// Its TLogs and its record are on the backend (a backend restart keeps it).
    pub on_backend: bool,
}

fn decode(vol: &Volume, id: u64, rec: &[u8]) -> Result<SnapshotRecord> {
    SnapshotRecord::decode(&format!("snapshot {id}"), rec, vol.id()).map_err(Error::Format)
}

impl Volume {
    /// Takes snapshot `name` (with user metadata `meta`) of everything written before the call.
    /// A name in use is `Exists`; a bad name or metadata is `Invalid`.
    pub(crate) fn snapshot_create(
        &self,
        name: &str,
        meta: Vec<(String, String)>,
    ) -> Result<SnapshotInfo> {
        check_name(name).map_err(Error::Invalid)?;
        check_meta(&meta).map_err(Error::Invalid)?;
        self.add_snapshot(name, meta, false)?;
        self.snapshot_info(name)
    }

    /// Closes the open TLog and records snapshot `name` of it (with `template`, the template
    /// mark too, in the same durable transaction); returns its id. A name in use is `Exists`.
    /// The caller checked the name and the metadata.
    pub(in crate::volume) fn add_snapshot(
        &self,
        name: &str,
        meta: Vec<(String, String)>,
        template: bool,
    ) -> Result<u64> {
        if self.mds.snapshot_by_name(name)?.is_some() {
            return Err(Error::Exists);
        }
        let (tlog, logged) = self.close_open_tlog()?;
        let created = crate::namespace::now();
        let volume = self.id();
        self.mds.snapshot_add(
            name,
            tlog,
            |id| {
                SnapshotRecord {
                    id,
                    name: name.to_string(),
                    tlog,
                    created,
                    logged_clusters: logged,
                    meta,
                }
                .encode(volume)
            },
            template,
        )
    }

    /// Snapshot `name` (`NotFound` without one).
    pub(crate) fn snapshot_info(&self, name: &str) -> Result<SnapshotInfo> {
        let (id, rec, epoch) = self.mds.snapshot_by_name(name)?.ok_or(Error::NotFound)?;
        let record = decode(self, id, &rec)?;
        let prev = match self.mds.snapshot_before(id)? {
            Some(p) => decode(self, id, &p)?.logged_clusters,
            None => 0,
        };
        Ok(SnapshotInfo {
            bytes_since_previous: record.logged_clusters.saturating_sub(prev) * CLUSTER_SIZE_U64,
            record,
            on_backend: epoch.is_some(),
        })
    }

    /// Every snapshot, oldest first.
    pub(crate) fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        let mut prev = 0;
        let mut out = Vec::new();
        for (id, rec, epoch) in self.mds.snapshot_list()? {
            let record = decode(self, id, &rec)?;
            let since = record.logged_clusters.saturating_sub(prev) * CLUSTER_SIZE_U64;
            prev = record.logged_clusters;
            out.push(SnapshotInfo {
                record,
                bytes_since_previous: since,
                on_backend: epoch.is_some(),
            });
        }
        Ok(out)
    }

    /// Takes the snapshot records a backend restart read back.
    pub(in crate::volume) fn snapshots_restored(
        &self,
        rows: &[(u64, String, Vec<u8>, u64)],
    ) -> Result<()> {
        self.mds.snapshots_restored(rows)
    }

    /// Deletes snapshot `name` (`NotFound` without one); its backend object goes with the next
    /// pass of the pipeline.
    pub(crate) fn snapshot_delete(&self, name: &str) -> Result<()> {
        if let Some(t) = self.template_snapshot() {
            if self
                .mds
                .snapshot_by_name(name)?
                .is_some_and(|(id, _, _)| id == t)
            {
                return Err(Error::ReadOnly(
                    "the snapshot a template was made at stays as long as the template".into(),
                ));
            }
        }
        self.mds.snapshot_remove(name)
    }
}
