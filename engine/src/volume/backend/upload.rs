//! Uploading a volume to its backend namespace: closed TLogs in order, each TLog's sealed SCOs
//! first (up to 4 at a time), then the TLog, then the manifest (a conditional PUT), and now and
//! then a metadata checkpoint.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use strata_backend::ObjectStore;

use super::bounded_get::{get_at_most, MAX_MANIFEST_LEN};
use super::keys::{sco_key, tlog_key};
use super::manifest::{Manifest, MANIFEST_NAME};
use super::{be_err, sealed_scos, BackendState, BackupReport};
use crate::error::{Error, Result};
use crate::volume::files::{fmt_err, io_err, read_all};
use crate::volume::format::{parse_tlog, sco_name, tlog_name, Entry, CLUSTER_SIZE_U64};
use crate::volume::mds::checkpoint as ck;
use crate::volume::options::VolumeOptions;
use crate::volume::state::Volume;

/// Within a long pass, the manifest names what went up once this much is sent...
const MANIFEST_EVERY_BYTES: u64 = 64 << 20;
/// ...or this long after it last did.
const MANIFEST_EVERY: Duration = Duration::from_secs(1);

/// SCO uploads of one TLog in flight at once: 4, fewer for large SCOs (each is held in memory
/// while it is sent: at most 64 MiB of them, and always one).
fn parallel_puts(opts: VolumeOptions) -> usize {
    let sco_bytes = u64::from(opts.sco_clusters) * CLUSTER_SIZE_U64;
    usize::try_from((64 << 20) / sco_bytes.max(1))
        .unwrap_or(usize::MAX)
        .clamp(1, 4)
}

/// Replaces the manifest with `m` (generation bumped, the volume's lineage and template mark
/// as they are now) by a conditional PUT; returns the bytes.
async fn put_manifest(
    vol: &Volume,
    store: &dyn ObjectStore,
    g: &mut BackendState,
    mut m: Manifest,
) -> Result<u64> {
    if let Some(why) = &g.deposed {
        return Err(Error::NotOwner(why.clone()));
    }
    m.generation += 1;
    m.lineage = vol.lineage();
    m.template = vol.template_snapshot().unwrap_or(0);
    let xml = Bytes::from(m.to_xml());
    let len = xml.len() as u64;
    let put = match &g.etag {
        Some(etag) => store.put_if_match(MANIFEST_NAME, xml.clone(), etag).await,
        None => store.put_if_absent(MANIFEST_NAME, xml.clone()).await,
    };
    match put {
        Ok(meta) => {
            g.etag = Some(meta.etag);
            g.manifest = Some(m);
            Ok(len)
        }
        Err(e) if e.is_condition_failed() => {
            // Our own put may have landed with its answer lost (a store that retried it):
            // then the manifest is exactly what was sent.
            if let Ok((now, meta)) = get_at_most(store, MANIFEST_NAME, MAX_MANIFEST_LEN).await {
                if now == xml {
                    g.etag = Some(meta.etag);
                    g.manifest = Some(m);
                    return Ok(len);
                }
            }
            let why = format!(
                "volume {}: its manifest on the backend was changed by another writer (another \
                 gateway took the backend over?): this gateway uploads and deletes nothing of it \
                 any more",
                vol.id()
            );
            g.deposed = Some(why.clone());
            // Its clients' writes are refused from now on (they would stay local for good).
            vol.halt(&Error::NotOwner(why.clone()));
            Err(Error::NotOwner(why))
        }
        Err(e) => {
            // The outcome is unknown: read the manifest again next time.
            g.loaded = false;
            Err(be_err(MANIFEST_NAME, e))
        }
    }
}

impl Volume {
    /// A manifest for this volume with nothing on the backend yet but its lineage (a clone's
    /// own TLogs start after it).
    fn new_manifest(&self) -> Manifest {
        let mut m = Manifest::new(self.id());
        m.lineage = self.lineage();
        m
    }

    /// Reads the backend's manifest into `g` once (it names what is on the backend, and its
    /// ETag the version a conditional write replaces).
    async fn load_manifest(&self, store: &dyn ObjectStore, g: &mut BackendState) -> Result<()> {
        if g.loaded {
            return Ok(());
        }
        match get_at_most(store, MANIFEST_NAME, MAX_MANIFEST_LEN).await {
            Ok((b, meta)) => {
                let m = Manifest::from_xml(MANIFEST_NAME, &b).map_err(fmt_err)?;
                if m.volume != self.id() {
                    return Err(Error::Io(format!(
                        "backend manifest names volume {}, expected {}",
                        m.volume,
                        self.id()
                    )));
                }
                let named = m.named_last();
                let applied = self.stats().applied_tlog;
                if named < applied {
                    // Checked before anything of it is taken: see the check below.
                    return Err(Error::Io(format!(
                        "backend manifest names TLogs up to {named} but this volume applied \
                         up to {applied}: the backend lost data it had (emptied or \
                         replaced?); refusing to upload"
                    )));
                }
                // Durable here before any SCO of those TLogs may be evicted.
                self.adopt_epochs(&m.epochs, named)?;
                if let Some((_, last)) = m.tlogs {
                    self.on_backend_up_to(last);
                }
                g.manifest = Some(m);
                g.etag = Some(meta.etag);
            }
            Err(e) if e.is_not_found() => {
                g.manifest = None;
                g.etag = None;
            }
            Err(e) => return Err(be_err(MANIFEST_NAME, e)),
        }
        g.loaded = true;
        Ok(())
    }

    /// A fenced write before a deletion: the manifest rewritten as it is (generation one up) by
    /// a conditional write. Refused (a final error) when another gateway wrote it since this
    /// one read it: it took the backend over, and this gateway must delete nothing. A volume
    /// with no manifest on the backend has nothing there to delete.
    pub(crate) async fn fence(&self, store: &dyn ObjectStore) -> Result<()> {
        let mut g = self.backend.lock().await;
        self.load_manifest(store, &mut g).await?;
        if let Some(m) = g.manifest.clone() {
            put_manifest(self, store, &mut g, m).await?;
        }
        Ok(())
    }

    /// Returns once no backup of this volume is in flight (a deletion waits for a flush this
    /// way; a halted volume starts no new upload).
    pub(crate) async fn backend_idle(&self) {
        drop(self.backend.lock().await);
    }

    /// Uploads every closed TLog not yet on the backend, in order: for each, its sealed SCOs,
    /// then the TLog; then the manifest naming them (conditional PUT: a manifest changed by
    /// anyone else is an error, never overwritten), also within the pass every
    /// `MANIFEST_EVERY_BYTES` (64 MiB) or `MANIFEST_EVERY` (1 s). With `everything`, the open SCO is sealed and
    /// the open TLog closed first, so all data written before the call ends up on the backend
    /// ("sync and wait"). A failed call uploads again next time (uploads are idempotent).
    pub(crate) async fn backup(
        &self,
        store: &dyn ObjectStore,
        everything: bool,
    ) -> Result<BackupReport> {
        let mut g = self.backend.lock().await;
        self.load_manifest(store, &mut g).await?;
        if self.mds.checkpoint_due()? {
            // A clone's first manifest (or a flattened clone's first without lineage) comes
            // with a checkpoint of every page: its backend namespace holds no other.
            self.maybe_checkpoint(store, &mut g, true).await?;
        }
        let open = if everything {
            self.close_for_backup()?
        } else {
            self.open_tlog_seq()
        };
        let mut m = g.manifest.clone().unwrap_or_else(|| self.new_manifest());
        let applied = self.stats().applied_tlog;
        if m.named_last() < applied {
            // The MetaDataStore only ever takes TLogs the backend had: this backend lost them
            // (emptied, replaced, or another backend directory). Uploading again is impossible,
            // since the local TLogs up to `applied` are gone; never overwrite it silently.
            return Err(Error::Io(format!(
                "backend manifest names TLogs up to {} but this volume applied up to {applied}: \
                 the backend lost data it had (emptied or replaced?); refusing to upload",
                m.named_last()
            )));
        }
        let from = m.named_last().saturating_add(1);
        let mut rep = BackupReport {
            // A clone that uploaded no TLog of its own yet has the effect of its lineage's (and
            // its snapshots at its start go up with it).
            last_tlog: Some(m.named_last()).filter(|n| *n > 0),
            ..Default::default()
        };
        if from >= open {
            // A crash (or a failed redb commit) may have left the cork on after the manifest PUT
            // (and the epochs it names unrecorded).
            self.record_epochs(&m.epochs)?;
            if let Some(last) = rep.last_tlog {
                self.uncork(last)?;
                self.on_backend_up_to(last);
                // And a checkpoint that failed last time is tried again.
                self.checkpoint_or_log(store, &mut g, &mut rep).await;
            }
            self.snapshots_or_log(store, &mut rep).await;
            return Ok(rep);
        }
        if !everything {
            // The TLogs about to be named by the manifest (and their names) must be durable
            // locally first: a crash must never lose a TLog the backend has, which a restart
            // would then write again, differently, under the same number.
            self.sync()?;
        }
        // Everything this pass uploads carries this run's epoch in its key: no other writer
        // (nor an earlier run, whose unnamed uploads may be there) ever wrote those keys.
        let epoch = self.writer_epoch();
        m.epochs.upload_from(from, epoch)?;
        let fs = self.local_fs().clone();
        let (sco_dir, tlog_dir) = self.dirs();
        // Bytes of SCOs and TLogs sent that no manifest names yet, and when one last did.
        let mut unnamed = 0u64;
        let mut named_at = std::time::Instant::now();
        for seq in from..open {
            let what = format!("TLog {}", tlog_name(seq));
            let path = tlog_dir.join(tlog_name(seq));
            let f = fs.open(&path).map_err(|e| io_err(path.display(), e))?;
            let data = read_all(&*f, &what)?;
            let parsed = parse_tlog(&what, &data, self.id(), seq, false)?;
            if !matches!(parsed.entries.last(), Some((_, Entry::TlogClosed { .. }))) {
                return Err(Error::Io(format!("{what}: not closed, cannot upload it")));
            }
            // The TLog's SCOs go up several at a time (a PUT's latency, not its bandwidth, is
            // what limits one stream to S3), all of them before the TLog that names them.
            let puts = sealed_scos(&parsed.entries).into_iter().map(|(sco, _, _)| {
                let (fs, p) = (fs.clone(), sco_dir.join(sco_name(sco)));
                async move {
                    if let Some(real) = fs.real_path(&p) {
                        // A sealed SCO is durable and never changed in place (eviction renames
                        // a stub over it): the store may take the file itself, and the local
                        // store does, hard-linking it instead of writing its bytes again.
                        let meta = store
                            .put_file(&sco_key(sco, epoch), &real)
                            .await
                            .map_err(|e| be_err(&sco_key(sco, epoch), e))?;
                        return Ok::<u64, Error>(meta.size);
                    }
                    // Reading a whole SCO blocks: off the runtime's workers.
                    let body = tokio::task::spawn_blocking(move || {
                        let sf = fs.open(&p).map_err(|e| io_err(p.display(), e))?;
                        read_all(&*sf, &format!("SCO {}", sco_name(sco)))
                    })
                    .await
                    .map_err(|e| Error::Io(format!("reading SCO {}: {e}", sco_name(sco))))??;
                    let len = body.len() as u64;
                    store
                        .put(&sco_key(sco, epoch), Bytes::from(body))
                        .await
                        .map_err(|e| be_err(&sco_key(sco, epoch), e))?;
                    Ok::<u64, Error>(len)
                }
            });
            let mut puts = stream::iter(puts).buffer_unordered(parallel_puts(self.options()));
            while let Some(put) = puts.next().await {
                unnamed += put?;
                rep.scos += 1;
            }
            unnamed += data.len() as u64;
            store
                .put(&tlog_key(seq, epoch), Bytes::from(data))
                .await
                .map_err(|e| be_err(&tlog_key(seq, epoch), e))?;
            rep.tlogs += 1;
            // The manifest names what went up at the end of the pass, and within a long pass
            // every MANIFEST_EVERY_BYTES or MANIFEST_EVERY: what the backend has is then on it
            // for good, and leaves the write buffer as it goes rather than at the end.
            if seq + 1 < open
                && unnamed < MANIFEST_EVERY_BYTES
                && named_at.elapsed() < MANIFEST_EVERY
            {
                continue;
            }
            m.tlogs = Some((m.tlogs.map_or(from, |t| t.0), seq));
            let epochs = m.epochs.clone();
            rep.bytes += put_manifest(self, store, &mut g, m).await? + unnamed;
            rep.last_tlog = Some(seq);
            self.record_epochs(&epochs)?;
            // Progress for the pacing, counted once: a pass that failed before this point
            // sends the same objects again next time, which is no progress. Counted before the
            // uncork deletes the local TLogs, so that a backlog measurement that could have
            // missed those files sees the count change and is not recorded.
            self.note_uploaded(unnamed);
            self.uncork(seq)?;
            // Only now: until the cork is lifted the local TLogs stay, and so does their weight
            // in the write buffer.
            self.on_backend_up_to(seq);
            unnamed = 0;
            named_at = std::time::Instant::now();
            m = g.manifest.clone().unwrap_or_else(|| self.new_manifest());
        }
        self.checkpoint_or_log(store, &mut g, &mut rep).await;
        self.snapshots_or_log(store, &mut rep).await;
        Ok(rep)
    }

    /// [`Volume::sync_snapshots`] up to the last TLog named, whose failure does not fail the
    /// backup either: the records go up (and deleted ones away) at the next pass.
    async fn snapshots_or_log(&self, store: &dyn ObjectStore, rep: &mut BackupReport) {
        match self.sync_snapshots(store, rep.last_tlog.unwrap_or(0)).await {
            Ok(n) => rep.bytes += n,
            Err(e) => {
                rep.snapshot_error = Some(e.to_string());
                tracing::warn!(volume = %self.id(), error = %e, "snapshot records not synced with the backend; retried at the next pass");
            }
        }
    }

    /// [`Volume::maybe_checkpoint`], whose failure does not fail the backup: the data is on the
    /// backend; only a faster backend restart is missing, and the next pass tries again.
    async fn checkpoint_or_log(
        &self,
        store: &dyn ObjectStore,
        g: &mut BackendState,
        rep: &mut BackupReport,
    ) {
        match self.maybe_checkpoint(store, g, false).await {
            Ok(n) => rep.bytes += n,
            Err(e) => {
                rep.checkpoint_error = Some(e.to_string());
                tracing::warn!(volume = %self.id(), error = %e, "metadata checkpoint failed; retried at the next pass");
            }
        }
    }

    /// Writes a metadata checkpoint when at least `checkpoint_tlogs` TLogs were applied to the
    /// MetaDataStore since the last one: the changed pages, the SCO table and the index, all
    /// from one redb snapshot at `applied_tlog = N`; then the manifest names it; only then are
    /// the dirty marks cleared and the superseded objects deleted. Returns the bytes uploaded.
    /// With `due`, whatever its size and however few TLogs were applied (a clone's first).
    async fn maybe_checkpoint(
        &self,
        store: &dyn ObjectStore,
        g: &mut BackendState,
        due: bool,
    ) -> Result<u64> {
        let last = self.mds_checkpoint_tlog()?;
        let applied = self.stats().applied_tlog;
        if !due && applied < last.saturating_add(u64::from(self.options().checkpoint_tlogs)) {
            return Ok(0);
        }
        let snap = self.mds_snapshot()?;
        let n = snap.applied_tlog()?;
        let prev = snap.prev_checkpoint()?;
        let id = self.id();
        // Its keys carry this run's epoch, like every data key.
        let epoch = self.writer_epoch();
        let cid = ck::checkpoint_id(n, epoch).ok_or_else(|| {
            Error::Io(format!(
                "checkpoint of TLog {n} in epoch {epoch}: beyond what a checkpoint id holds"
            ))
        })?;
        let written = snap.dirty_pages()?;
        // Never upload more metadata than the data written since the last checkpoint: random
        // writes over a large volume dirty every page, and rewriting all of them every
        // `checkpoint_tlogs` TLogs would multiply the backend traffic. Waiting longer only means
        // more TLogs to replay at a backend restart (what the checkpoint saves).
        let opts = self.options();
        let entries_max = (written.len() as u64)
            .saturating_mul(ck::PAGE_CLUSTERS)
            .min(snap.mapped()?);
        let cost = entries_max.saturating_mul(ck::PAGE_ENTRY_LEN as u64);
        let data_since = n
            .saturating_sub(last)
            .saturating_mul(u64::from(opts.tlog_scos))
            .saturating_mul(u64::from(opts.sco_clusters))
            .saturating_mul(CLUSTER_SIZE_U64);
        if !due && cost > data_since {
            tracing::debug!(volume = %id, cost, data_since, "metadata checkpoint deferred: larger than the data it covers");
            return Ok(0);
        }
        let mut bytes = 0u64;
        let mut pages: std::collections::BTreeMap<u64, u64> =
            snap.old_pages()?.into_iter().collect();
        let mut superseded = Vec::new();
        for p in &written {
            if let Some(old) = pages.get(p) {
                superseded.push(ck::page_key(*old, *p));
            }
            let entries = snap.page(*p)?;
            if entries.is_empty() {
                pages.remove(p);
                continue;
            }
            let body = ck::encode_page(id, cid, *p, &entries);
            drop(entries);
            bytes += body.len() as u64;
            let key = ck::page_key(cid, *p);
            store
                .put(&key, Bytes::from(body))
                .await
                .map_err(|e| be_err(&key, e))?;
            pages.insert(*p, cid);
        }
        let body = ck::encode_scos(id, cid, &snap.scos()?);
        bytes += body.len() as u64;
        store
            .put(&ck::scos_key(cid), Bytes::from(body))
            .await
            .map_err(|e| be_err(&ck::scos_key(cid), e))?;
        let ix = ck::Index {
            size: snap.size()?,
            mapped: snap.mapped()?,
            pages: pages.into_iter().collect(),
        };
        drop(snap);
        let body = ck::encode_index(id, cid, &ix);
        bytes += body.len() as u64;
        store
            .put(&ck::index_key(cid), Bytes::from(body))
            .await
            .map_err(|e| be_err(&ck::index_key(cid), e))?;
        let mut m = g.manifest.clone().unwrap_or_else(|| self.new_manifest());
        m.checkpoint = Some((n, epoch));
        bytes += put_manifest(self, store, g, m).await?;
        self.mds_checkpoint_done((n, cid), &written, &ix.pages)?;
        self.counters_checkpoint(written.len() as u64);
        if prev > 0 {
            superseded.push(ck::index_key(prev));
            superseded.push(ck::scos_key(prev));
        }
        // A checkpoint written again at the same TLog in the same run (one a clone or a flatten
        // asked for, right after an ordinary one) has the same id: its objects replaced the old
        // ones under the same keys, which are not superseded but in use.
        let own = |k: &String| {
            *k == ck::index_key(cid)
                || *k == ck::scos_key(cid)
                || ix
                    .pages
                    .iter()
                    .any(|(p, c)| *c == cid && *k == ck::page_key(cid, *p))
        };
        superseded.retain(|k| !own(k));
        // The manifest no longer reaches these; a failure leaves garbage, never a dangling
        // reference.
        for key in superseded {
            if let Err(e) = store.delete(&key).await {
                if !e.is_not_found() {
                    tracing::warn!(volume = %id, key, error = %e, "cannot delete a superseded checkpoint object");
                }
            }
        }
        Ok(bytes)
    }

    /// One pass of the background pipeline: like `backup(store, false)`, but when a change not
    /// yet in a closed TLog (a cluster in the open SCO, a sealed SCO or a resize in the open
    /// TLog) is `max_age` (`SCO_Max_Age`) old or older, the open SCO is sealed and the TLog
    /// closed first, so that nothing written stays off the backend for much longer than that.
    pub(crate) async fn backup_aged(
        &self,
        store: &dyn ObjectStore,
        max_age: Duration,
    ) -> Result<BackupReport> {
        let aged = self.unuploaded_age().is_some_and(|a| a >= max_age);
        self.backup(store, aged).await
    }

    /// The newest TLog the backend manifest names, as this volume last saw it (`None` before
    /// the first backup call or while nothing is on the backend).
    pub(crate) async fn backend_last_tlog(&self) -> Option<u64> {
        self.backend
            .lock()
            .await
            .manifest
            .as_ref()
            .and_then(|m| m.tlogs)
            .map(|t| t.1)
    }
}
