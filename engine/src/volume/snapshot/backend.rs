//! Snapshot records on the backend: put once the manifest names their TLog, deleted after
//! the snapshot is, and read back by a backend restart.

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use strata_backend::ObjectStore;

use super::record::{SnapshotRecord, MAX_RECORD};
use crate::error::{Error, Result};
use crate::volume::backend::be_err;
use crate::volume::backend::keys::{parse_snap_key, snap_key, SNAP_PREFIX};
use crate::volume::format::VolumeId;
use crate::volume::state::Volume;

/// Snapshot records whose upload one MetaDataStore transaction records.
const UPLOAD_BATCH: usize = 256;
/// Snapshot record PUTs (and GETs, at a backend restart) in flight at once.
const PARALLEL_PUTS: usize = 8;

impl Volume {
    /// Deletes the objects of deleted snapshots, then puts the record of every snapshot whose
    /// TLog is at most `last` (the manifest names it) and that is not on the backend yet.
    /// Returns the bytes put.
    pub(in crate::volume) async fn sync_snapshots(
        &self,
        store: &dyn ObjectStore,
        last: u64,
    ) -> Result<u64> {
        // Deleted records go first: a name deleted and taken again must never have two
        // records on the backend for a backend restart to find.
        for (id, epoch) in self.mds.snapshots_gone()? {
            let key = snap_key(id, epoch);
            match store.delete(&key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(be_err(&key, e)),
            }
            self.mds.snapshot_gone_done(id)?;
        }
        // Then every object of each deleted snapshot, whatever epoch put it (a PUT that
        // failed may have landed): only then is it no longer a boundary. No PUT of its record
        // starts any more (its pending row went with it), and this loop is the only uploader.
        for id in self.mds.snapshots_deleted()? {
            let prefix = format!("{SNAP_PREFIX}{id:016x}.");
            let page = store
                .list(&prefix, None, 1000)
                .await
                .map_err(|e| be_err(&prefix, e))?;
            for o in &page.objects {
                match store.delete(&o.key).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(be_err(&o.key, e)),
                }
            }
            if page.next.is_none() {
                self.mds.snapshot_deleted_done(id)?;
            }
        }
        let epoch = self.writer_epoch();
        let mut bytes = 0;
        // Several records in flight (a PUT's latency, not its size, is what they cost), and
        // their upload recorded in one transaction per batch.
        for batch in self.mds.snapshots_to_upload(last)?.chunks(UPLOAD_BATCH) {
            let puts: Vec<_> = batch
                .iter()
                .map(|(id, rec)| {
                    let (id, key, body) = (*id, snap_key(*id, epoch), Bytes::from(rec.clone()));
                    async move {
                        store
                            .put(&key, body)
                            .await
                            .map_err(|e| be_err(&key, e))
                            .map(|_| id)
                    }
                })
                .collect();
            let mut done = Vec::with_capacity(batch.len());
            let mut puts = stream::iter(puts).buffer_unordered(PARALLEL_PUTS);
            let mut failed = None;
            while let Some(r) = puts.next().await {
                match r {
                    Ok(id) => done.push(id),
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            bytes += batch.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
            self.mds.snapshots_uploaded(&done, epoch)?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(bytes)
    }
}

/// Every snapshot record in a volume's backend namespace whose TLog is at most `last`, checked:
/// `(id, name, record, epoch)`, by id. A record uploaded twice (by two runs) counts once.
pub(in crate::volume) async fn restore_snapshots(
    store: &dyn ObjectStore,
    volume: VolumeId,
    last: u64,
) -> Result<Vec<(u64, String, Vec<u8>, u64)>> {
    let mut out: std::collections::BTreeMap<u64, (String, Vec<u8>, u64)> = Default::default();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(SNAP_PREFIX, token.as_deref(), 1000)
            .await
            .map_err(|e| be_err(SNAP_PREFIX, e))?;
        let mut wanted = Vec::new();
        for o in page.objects {
            let Some((id, epoch)) = parse_snap_key(&o.key) else {
                tracing::warn!(volume = %volume, key = o.key, "not a snapshot record; ignored");
                continue;
            };
            if o.size > MAX_RECORD {
                return Err(Error::Io(format!(
                    "backend {}: {} bytes, larger than any snapshot record",
                    o.key, o.size
                )));
            }
            wanted.push((o.key, id, epoch));
        }
        // Several GETs in flight: a backend restart of a volume with thousands of snapshots
        // pays a round trip per record.
        let gets: Vec<_> = wanted
            .into_iter()
            .map(|(key, id, epoch)| async move {
                let (b, _) = super::super::backend::get_at_most(store, &key, MAX_RECORD)
                    .await
                    .map_err(|e| be_err(&key, e))?;
                let r = SnapshotRecord::decode(&format!("backend {key}"), &b, volume)
                    .map_err(Error::Format)?;
                if r.id != id {
                    return Err(Error::Io(format!("backend {key}: holds snapshot {}", r.id)));
                }
                Ok::<_, Error>((key, id, epoch, r, b))
            })
            .collect();
        let mut gets = stream::iter(gets).buffer_unordered(PARALLEL_PUTS);
        while let Some(got) = gets.next().await {
            let (key, id, epoch, r, b) = got?;
            if r.tlog > last {
                // Put before its TLog was named: impossible by the upload order; not trusted.
                tracing::warn!(volume = %volume, key, "snapshot of a TLog the manifest does not name; ignored");
                continue;
            }
            out.insert(id, (r.name, b.to_vec(), epoch));
        }
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    // One record per name, the newest (a deletion whose object a crash left behind).
    let mut newest: std::collections::HashMap<String, u64> = Default::default();
    for (id, (name, _, _)) in &out {
        newest.insert(name.clone(), *id);
    }
    Ok(out
        .into_iter()
        .filter(|(id, (name, _, _))| {
            let keep = newest.get(name) == Some(id);
            if !keep {
                tracing::warn!(volume = %volume, snapshot = *id, "an older record of a snapshot name; ignored");
            }
            keep
        })
        .map(|(id, (name, rec, epoch))| (id, name, rec, epoch))
        .collect())
}
