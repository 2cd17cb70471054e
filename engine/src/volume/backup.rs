//! The backend pipeline (first part): upload closed TLogs in order — each TLog's sealed SCOs
//! first, then the TLog, then the manifest (conditional PUT) — and backend restart: rebuild a
//! volume's local state from its backend namespace alone.
//!
//! The store passed in is the volume's own namespace (e.g. a `strata_backend::Namespaced`
//! keyed by the volume id). Object names: `sco/<seq>`, `tlog/<seq>`, `manifest.xml`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_backend::ObjectStore;

use super::core::{fmt_err, io_err, parse_tlog, read_all, Volume, VolumeOptions};
use super::format::{
    sco_name, tlog_name, Entry, FormatError, ScoFooter, ScoHeader, VolumeId, SCO_FOOTER_LEN,
    SCO_HEADER_LEN,
};
use super::localfs::LocalFs;
use super::manifest::{Manifest, MANIFEST_NAME};
use crate::error::{Error, Result};

/// What the pipeline knows of the backend copy of one volume.
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    loaded: bool,
    manifest: Option<Manifest>,
    etag: Option<String>,
}

/// What one [`Volume::backup`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// TLogs uploaded.
    pub tlogs: u64,
    /// SCOs uploaded.
    pub scos: u64,
    /// Bytes uploaded (SCOs, TLogs and manifest).
    pub bytes: u64,
    /// The newest TLog the backend manifest names after the call.
    pub last_tlog: Option<u64>,
}

fn be_err(what: &str, e: strata_backend::Error) -> Error {
    match e {
        strata_backend::Error::NoSpace => Error::NoSpace,
        strata_backend::Error::NotFound { .. } => Error::Io(format!("backend: {what}: {e}")),
        e if e.is_condition_failed() => Error::Io(format!(
            "backend: {what}: the manifest was changed by another writer ({e})"
        )),
        e => Error::Io(format!("backend: {what}: {e}")),
    }
}

/// The backend key of SCO `seq`.
pub(super) fn sco_key(seq: u64) -> String {
    format!("sco/{}", sco_name(seq))
}

fn tlog_key(seq: u64) -> String {
    format!("tlog/{}", tlog_name(seq))
}

/// The SCOs a closed TLog seals (every SCO its clusters live in: a TLog covers whole SCOs).
fn sealed_scos(entries: &[(u64, Entry)]) -> Vec<(u64, u32, u32)> {
    entries
        .iter()
        .filter_map(|(_, e)| match *e {
            Entry::ScoSealed { sco, clusters, crc } => Some((sco, clusters, crc)),
            _ => None,
        })
        .collect()
}

/// Verifies a whole sealed SCO: exact length, header, footer and data CRC.
fn verify_sco(what: &str, b: &[u8], id: VolumeId, seq: u64, clusters: u32, crc: u32) -> Result<()> {
    let want = ScoFooter::offset(clusters) + SCO_FOOTER_LEN as u64;
    if b.len() as u64 != want {
        return Err(fmt_err(FormatError::Truncated {
            what: what.to_string(),
            len: b.len() as u64,
            need: want,
        }));
    }
    let h = ScoHeader::decode(what, b).map_err(fmt_err)?;
    let fo = ScoFooter::offset(clusters) as usize;
    let f = ScoFooter::decode(what, &b[fo..]).map_err(fmt_err)?;
    let computed = crc32c::crc32c(&b[SCO_HEADER_LEN as usize..fo]);
    if computed != crc {
        return Err(fmt_err(FormatError::Crc {
            what: format!("{what} data"),
            stored: crc,
            computed,
        }));
    }
    if h.volume != id
        || h.seq != seq
        || f != (ScoFooter {
            seq,
            clusters,
            data_crc: crc,
        })
    {
        return Err(fmt_err(FormatError::Inconsistent {
            what: what.to_string(),
            reason: "header or footer disagree with the TLog".into(),
        }));
    }
    Ok(())
}

impl Volume {
    /// Uploads every closed TLog not yet on the backend, in order: for each, its sealed SCOs,
    /// then the TLog; then the manifest naming them (conditional PUT: a manifest changed by
    /// anyone else is an error, never overwritten). With `everything`, the open SCO is sealed and
    /// the open TLog closed first, so all data written before the call ends up on the backend
    /// ("sync and wait"). A failed call uploads again next time (uploads are idempotent).
    pub async fn backup(&self, store: &dyn ObjectStore, everything: bool) -> Result<BackupReport> {
        let mut g = self.backend.lock().await;
        if !g.loaded {
            match store.get(MANIFEST_NAME).await {
                Ok((b, meta)) => {
                    let m = Manifest::from_xml(MANIFEST_NAME, &b).map_err(fmt_err)?;
                    if m.volume != self.id() {
                        return Err(Error::Io(format!(
                            "backend manifest names volume {}, expected {}",
                            m.volume,
                            self.id()
                        )));
                    }
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
        }
        let open = if everything {
            self.close_for_backup()?
        } else {
            self.open_tlog_seq()
        };
        let mut m = g
            .manifest
            .clone()
            .unwrap_or_else(|| Manifest::new(self.id()));
        let from = m.tlogs.map_or(1, |(_, last)| last + 1);
        let mut rep = BackupReport {
            last_tlog: m.tlogs.map(|t| t.1),
            ..Default::default()
        };
        if from >= open {
            return Ok(rep);
        }
        let fs = self.local_fs().clone();
        let (sco_dir, tlog_dir) = self.dirs();
        for seq in from..open {
            let what = format!("TLog {}", tlog_name(seq));
            let path = tlog_dir.join(tlog_name(seq));
            let f = fs.open(&path).map_err(|e| io_err(path.display(), e))?;
            let data = read_all(&*f, &what)?;
            let parsed = parse_tlog(&what, &data, self.id(), seq, false)?;
            if !matches!(parsed.entries.last(), Some((_, Entry::TlogClosed { .. }))) {
                return Err(Error::Io(format!("{what}: not closed, cannot upload it")));
            }
            for (sco, _, _) in sealed_scos(&parsed.entries) {
                let p = sco_dir.join(sco_name(sco));
                let sf = fs.open(&p).map_err(|e| io_err(p.display(), e))?;
                let body = read_all(&*sf, &format!("SCO {}", sco_name(sco)))?;
                rep.bytes += body.len() as u64;
                store
                    .put(&sco_key(sco), Bytes::from(body))
                    .await
                    .map_err(|e| be_err(&sco_key(sco), e))?;
                rep.scos += 1;
            }
            rep.bytes += data.len() as u64;
            store
                .put(&tlog_key(seq), Bytes::from(data))
                .await
                .map_err(|e| be_err(&tlog_key(seq), e))?;
            rep.tlogs += 1;
        }
        m.tlogs = Some((m.tlogs.map_or(from, |t| t.0), open - 1));
        m.generation += 1;
        let xml = Bytes::from(m.to_xml());
        rep.bytes += xml.len() as u64;
        let put = match &g.etag {
            Some(etag) => store.put_if_match(MANIFEST_NAME, xml, etag).await,
            None => store.put_if_absent(MANIFEST_NAME, xml).await,
        };
        match put {
            Ok(meta) => {
                self.on_backend_up_to(open - 1);
                g.etag = Some(meta.etag);
                rep.last_tlog = m.tlogs.map(|t| t.1);
                g.manifest = Some(m);
                Ok(rep)
            }
            Err(e) => {
                // The outcome is unknown (or someone else wrote): read the manifest again next time.
                g.loaded = false;
                Err(be_err(MANIFEST_NAME, e))
            }
        }
    }

    /// One pass of the background pipeline: like `backup(store, false)`, but when the open SCO
    /// has held data for `max_age` (`SCO_Max_Age`) or longer it is sealed and the TLog closed
    /// first, so that no written data stays off the backend for much longer than that.
    pub async fn backup_aged(
        &self,
        store: &dyn ObjectStore,
        max_age: Duration,
    ) -> Result<BackupReport> {
        let aged = self.open_sco_age().is_some_and(|a| a >= max_age);
        self.backup(store, aged).await
    }

    /// The newest TLog the backend manifest names, as this volume last saw it (`None` before
    /// the first backup call or while nothing is on the backend).
    pub async fn backend_last_tlog(&self) -> Option<u64> {
        self.backend
            .lock()
            .await
            .manifest
            .as_ref()
            .and_then(|m| m.tlogs)
            .map(|t| t.1)
    }

    /// Backend restart: rebuilds the volume's local state in `dir` (which must hold no volume)
    /// from its backend namespace alone — the manifest, then every TLog it names and every SCO
    /// those TLogs seal, each verified (headers, CRCs, data CRC) — and opens it. Data that never
    /// reached the backend is not there.
    pub async fn restore(
        store: &dyn ObjectStore,
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
    ) -> Result<Volume> {
        let (b, _) = store.get(MANIFEST_NAME).await.map_err(|e| {
            if e.is_not_found() {
                Error::NotFound
            } else {
                be_err(MANIFEST_NAME, e)
            }
        })?;
        let m = Manifest::from_xml(MANIFEST_NAME, &b).map_err(fmt_err)?;
        if m.volume != id {
            return Err(Error::Io(format!(
                "backend manifest names volume {}, expected {id}",
                m.volume
            )));
        }
        let Some((first, last)) = m.tlogs else {
            return Volume::create(fs, dir, id, opts, 0);
        };
        let sco_dir = dir.join("sco");
        let tlog_dir = dir.join("tlog");
        for d in [&sco_dir, &tlog_dir] {
            fs.create_dir_all(d).map_err(|e| io_err(d.display(), e))?;
        }
        if !fs
            .list(&tlog_dir)
            .map_err(|e| io_err(tlog_dir.display(), e))?
            .is_empty()
        {
            return Err(Error::Exists);
        }
        let write_local = |path: &Path, data: &[u8]| -> Result<()> {
            let f = fs.create_new(path).map_err(|e| io_err(path.display(), e))?;
            f.write_at(data, 0).map_err(|e| io_err(path.display(), e))?;
            f.sync_data().map_err(|e| io_err(path.display(), e))
        };
        for seq in first..=last {
            let what = format!("backend TLog {}", tlog_name(seq));
            let (t, _) = store
                .get(&tlog_key(seq))
                .await
                .map_err(|e| be_err(&tlog_key(seq), e))?;
            let parsed = parse_tlog(&what, &t, id, seq, false)?;
            if !matches!(parsed.entries.last(), Some((_, Entry::TlogClosed { .. }))) {
                return Err(Error::Io(format!("{what}: not closed")));
            }
            for (sco, clusters, crc) in sealed_scos(&parsed.entries) {
                let (s, _) = store
                    .get(&sco_key(sco))
                    .await
                    .map_err(|e| be_err(&sco_key(sco), e))?;
                verify_sco(
                    &format!("backend SCO {}", sco_name(sco)),
                    &s,
                    id,
                    sco,
                    clusters,
                    crc,
                )?;
                write_local(&sco_dir.join(sco_name(sco)), &s)?;
            }
            write_local(&tlog_dir.join(tlog_name(seq)), &t)?;
        }
        for d in [&sco_dir, &tlog_dir] {
            fs.sync_dir(d).map_err(|e| io_err(d.display(), e))?;
        }
        let vol = Volume::open(fs, dir, id, opts)?;
        vol.on_backend_up_to(last);
        Ok(vol)
    }
}

/// Runs the backend pipeline of one volume until `stop` turns true: a [`Volume::backup_aged`]
/// pass every `interval`; after a failure, passes are retried with exponential backoff (from
/// `interval`, doubling, capped at 30 s, with jitter) until the backend answers again. Nothing is
/// dropped meanwhile: un-uploaded SCOs and TLogs stay in the local cache.
pub async fn run_pipeline(
    vol: Arc<Volume>,
    store: Arc<dyn ObjectStore>,
    max_age: Duration,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = interval;
    let mut jitter = super::localfs::SimRng::new(u64::from_le_bytes(
        vol.id().0[..8].try_into().unwrap_or([0; 8]),
    ));
    loop {
        if *stop.borrow() {
            return;
        }
        match vol.backup_aged(&*store, max_age).await {
            Ok(_) => delay = interval,
            Err(e) => {
                tracing::warn!(volume = %vol.id(), error = %e, retry_in = ?delay, "backend upload failed");
                let cap = Duration::from_secs(30).max(interval);
                let next = delay.saturating_mul(2).min(cap);
                let j = jitter.below(next.as_millis().max(1) as u64 / 4 + 1);
                delay = next + Duration::from_millis(j);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            r = stop.changed() => if r.is_err() { return },
        }
    }
}
