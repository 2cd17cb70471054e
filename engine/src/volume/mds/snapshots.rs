//! The snapshot tables of the MetaDataStore: every snapshot's record by id, ids by name, and
//! where each stands on the backend (uploaded in which epoch, waiting for upload, deleted
//! here but not yet there). Every change is one durable redb transaction whose cost does not
//! depend on how many snapshots the volume has (a few B-tree updates). Layout: `FORMATS.md`,
//! "Snapshots".

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::store::{db_err, Mds, META};
use crate::error::{Error, Result};

/// Snapshot id -> its record (`volume/snapshot/record.rs`).
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");
/// Snapshot name -> id.
const NAMES: TableDefinition<&str, u64> = TableDefinition::new("snapshot_names");
/// Snapshot id -> its TLog, for snapshots whose object is not on the backend yet.
const PENDING: TableDefinition<u64, u64> = TableDefinition::new("snapshot_pending");
/// Snapshot id -> the epoch its object was uploaded in.
const UPLOADED: TableDefinition<u64, u64> = TableDefinition::new("snapshot_uploaded");
/// Snapshot id -> the epoch of its object, for snapshots deleted here whose object is still
/// on the backend.
const GONE: TableDefinition<u64, u64> = TableDefinition::new("snapshot_gone");
/// Snapshot id -> its TLog, for every snapshot deleted here whose record may still be on the
/// backend (uploaded, or a PUT that failed yet landed, or one in flight): a backend restart
/// would bring it back, so it stays a boundary of the liveness (`liveness.rs`) until every
/// `snap/<id>.` object is deleted.
const DELETED: TableDefinition<u64, u64> = TableDefinition::new("snapshot_deleted");

/// One snapshot row: id, record bytes, and the epoch its object was uploaded in (`None`: not
/// on the backend yet).
pub(in crate::volume) type SnapshotRow = (u64, Vec<u8>, Option<u64>);

/// Creates the tables (opening a store from before snapshots adds them empty).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(SNAPSHOTS).map_err(db_err)?;
    tx.open_table(NAMES).map_err(db_err)?;
    tx.open_table(PENDING).map_err(db_err)?;
    tx.open_table(UPLOADED).map_err(db_err)?;
    tx.open_table(GONE).map_err(db_err)?;
    tx.open_table(DELETED).map_err(db_err)?;
    Ok(())
}

impl Mds {
    /// Adds a snapshot named `name` of TLog `tlog`, its record made by `encode` from the id it
    /// gets (one more than any before), durably; with `template`, marks the volume a template
    /// made at it. A name in use is `Exists`.
    pub(in crate::volume) fn snapshot_add(
        &self,
        name: &str,
        tlog: u64,
        encode: impl FnOnce(u64) -> Vec<u8>,
        template: bool,
    ) -> Result<u64> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let id = {
            let mut names = tx.open_table(NAMES).map_err(db_err)?;
            if names.get(name).map_err(db_err)?.is_some() {
                return Err(Error::Exists);
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let id = meta
                .get("next_snapshot")
                .map_err(db_err)?
                .map_or(1, |v| v.value());
            meta.insert("next_snapshot", id + 1).map_err(db_err)?;
            if template {
                // In the same transaction: the template and its snapshot come together.
                meta.insert("template", id).map_err(db_err)?;
            }
            names.insert(name, id).map_err(db_err)?;
            let rec = encode(id);
            tx.open_table(SNAPSHOTS)
                .map_err(db_err)?
                .insert(id, rec.as_slice())
                .map_err(db_err)?;
            tx.open_table(PENDING)
                .map_err(db_err)?
                .insert(id, tlog)
                .map_err(db_err)?;
            id
        };
        tx.commit().map_err(db_err)?;
        Ok(id)
    }

    /// The snapshot named `name`, if any.
    pub(in crate::volume) fn snapshot_by_name(&self, name: &str) -> Result<Option<SnapshotRow>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let Some(id) = tx
            .open_table(NAMES)
            .map_err(db_err)?
            .get(name)
            .map_err(db_err)?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let rec = tx
            .open_table(SNAPSHOTS)
            .map_err(db_err)?
            .get(id)
            .map_err(db_err)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| Error::Io(format!("snapshot {name:?}: id {id} has no record")))?;
        let up = tx
            .open_table(UPLOADED)
            .map_err(db_err)?
            .get(id)
            .map_err(db_err)?
            .map(|v| v.value());
        Ok(Some((id, rec, up)))
    }

    /// The snapshot just before `id` (the previous one taken), if any.
    pub(in crate::volume) fn snapshot_before(&self, id: u64) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(SNAPSHOTS).map_err(db_err)?;
        let prev = t.range(..id).map_err(db_err)?.next_back();
        prev.map(|r| r.map(|(_, v)| v.value().to_vec()).map_err(db_err))
            .transpose()
    }

    /// Every snapshot, oldest first.
    pub(in crate::volume) fn snapshot_list(&self) -> Result<Vec<SnapshotRow>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let up = tx.open_table(UPLOADED).map_err(db_err)?;
        let mut out = Vec::new();
        for r in tx
            .open_table(SNAPSHOTS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (k, v) = r.map_err(db_err)?;
            let id = k.value();
            let epoch = up.get(id).map_err(db_err)?.map(|e| e.value());
            out.push((id, v.value().to_vec(), epoch));
        }
        Ok(out)
    }

    /// Deletes the snapshot named `name`, durably; its backend object, if uploaded, is
    /// remembered for deletion. No such snapshot is `NotFound`.
    pub(in crate::volume) fn snapshot_remove(&self, name: &str) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut names = tx.open_table(NAMES).map_err(db_err)?;
            let id = names
                .remove(name)
                .map_err(db_err)?
                .map(|v| v.value())
                .ok_or(Error::NotFound)?;
            let tlog = tx
                .open_table(SNAPSHOTS)
                .map_err(db_err)?
                .remove(id)
                .map_err(db_err)?
                .map(|v| record_tlog(v.value()))
                .transpose()?;
            if let Some(t) = tlog {
                tx.open_table(DELETED)
                    .map_err(db_err)?
                    .insert(id, t)
                    .map_err(db_err)?;
            }
            tx.open_table(PENDING)
                .map_err(db_err)?
                .remove(id)
                .map_err(db_err)?;
            let epoch = tx
                .open_table(UPLOADED)
                .map_err(db_err)?
                .remove(id)
                .map_err(db_err)?
                .map(|v| v.value());
            if let Some(e) = epoch {
                tx.open_table(GONE)
                    .map_err(db_err)?
                    .insert(id, e)
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Snapshots waiting for upload whose TLog is at most `last` (the backend names it):
    /// `(id, record)`.
    pub(in crate::volume) fn snapshots_to_upload(&self, last: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let recs = tx.open_table(SNAPSHOTS).map_err(db_err)?;
        let mut out = Vec::new();
        for r in tx
            .open_table(PENDING)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (k, v) = r.map_err(db_err)?;
            if v.value() > last {
                continue;
            }
            if let Some(rec) = recs.get(k.value()).map_err(db_err)? {
                out.push((k.value(), rec.value().to_vec()));
            }
        }
        Ok(out)
    }

    /// Records that the objects of snapshots `ids` are on the backend, uploaded in `epoch`
    /// (one transaction for all of them).
    pub(in crate::volume) fn snapshots_uploaded(&self, ids: &[u64], epoch: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut pending = tx.open_table(PENDING).map_err(db_err)?;
            let mut up = tx.open_table(UPLOADED).map_err(db_err)?;
            let mut gone = tx.open_table(GONE).map_err(db_err)?;
            for id in ids {
                if pending.remove(*id).map_err(db_err)?.is_some() {
                    up.insert(*id, epoch).map_err(db_err)?;
                } else {
                    // Deleted while its object went up: that object goes again.
                    gone.insert(*id, epoch).map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Snapshots deleted here whose object is still on the backend: `(id, epoch)`.
    pub(in crate::volume) fn snapshots_gone(&self) -> Result<Vec<(u64, u64)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(GONE).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// Forgets that snapshot `id`'s object was to be deleted (it is gone from the backend).
    pub(in crate::volume) fn snapshot_gone_done(&self, id: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(GONE)
            .map_err(db_err)?
            .remove(id)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Snapshots deleted here whose records may still be on the backend: their ids.
    pub(in crate::volume) fn snapshots_deleted(&self) -> Result<Vec<u64>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(DELETED).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            out.push(r.map_err(db_err)?.0.value());
        }
        Ok(out)
    }

    /// Every record of deleted snapshot `id` is gone from the backend (and none can land any
    /// more): it is no longer a boundary.
    pub(in crate::volume) fn snapshot_deleted_done(&self, id: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(DELETED)
            .map_err(db_err)?
            .remove(id)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Adds snapshots read back from the backend (a backend restart): `(id, name, record,
    /// epoch)`, all in one durable transaction; later ids continue after the largest.
    pub(in crate::volume) fn snapshots_restored(
        &self,
        rows: &[(u64, String, Vec<u8>, u64)],
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut recs = tx.open_table(SNAPSHOTS).map_err(db_err)?;
            let mut names = tx.open_table(NAMES).map_err(db_err)?;
            let mut up = tx.open_table(UPLOADED).map_err(db_err)?;
            let mut next = 1;
            for (id, name, rec, epoch) in rows {
                recs.insert(*id, rec.as_slice()).map_err(db_err)?;
                names.insert(name.as_str(), *id).map_err(db_err)?;
                up.insert(*id, *epoch).map_err(db_err)?;
                next = next.max(id + 1);
            }
            tx.open_table(META)
                .map_err(db_err)?
                .insert("next_snapshot", next)
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }
}

/// The TLog of every snapshot, inside `tx` (the record's bytes 36..44, see "Snapshots" in
/// `FORMATS.md`).
pub(super) fn snapshot_tlogs(tx: &WriteTransaction) -> Result<std::collections::BTreeSet<u64>> {
    let mut out = std::collections::BTreeSet::new();
    for r in tx
        .open_table(SNAPSHOTS)
        .map_err(db_err)?
        .iter()
        .map_err(db_err)?
    {
        out.insert(record_tlog(r.map_err(db_err)?.1.value())?);
    }
    // Deleted, but a backend restart could still bring them back.
    for r in tx
        .open_table(DELETED)
        .map_err(db_err)?
        .iter()
        .map_err(db_err)?
    {
        out.insert(r.map_err(db_err)?.1.value());
    }
    Ok(out)
}

/// The TLog a snapshot record stands at (bytes 36..44, see `snapshot/record.rs`).
fn record_tlog(rec: &[u8]) -> Result<u64> {
    let n = rec
        .get(36..44)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .ok_or_else(|| Error::Io("mds.redb: a snapshot record is too short".into()))?;
    Ok(u64::from_le_bytes(n))
}
