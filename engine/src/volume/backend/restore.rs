//! Backend restart: rebuilding a volume's local state from its backend namespace alone.

use std::path::Path;
use std::sync::Arc;

use strata_backend::ObjectStore;

use super::bounded_get::{get_at_most, MAX_INDEX_LEN, MAX_MANIFEST_LEN, MAX_PAGE_LEN};
use super::manifest::{Manifest, MANIFEST_NAME};
use super::tlog_object::get_tlog;
use super::{be_err, sealed_scos};
use crate::error::{Error, Result};
use crate::volume::files::{fmt_err, io_err};
use crate::volume::format::{
    parse_tlog, sco_name, tlog_name, Entry, ScoHeader, TlogHeader, VolumeId,
};
use crate::volume::localfs::LocalFs;
use crate::volume::mds::checkpoint as ck;
use crate::volume::options::VolumeOptions;
use crate::volume::state::Volume;
use crate::volume::{files, layout};

impl Volume {
    /// Backend restart: rebuilds the volume's local state in `dir` (which must hold no volume)
    /// from its backend namespace alone and opens it. With a metadata checkpoint named by the
    /// manifest, its index, pages and SCO table fill a fresh MetaDataStore and only the TLogs
    /// after it are fetched and replayed; without one every TLog is. Every object is verified
    /// (CRCs, magic, version, volume id). SCOs are not downloaded: they are all on the backend,
    /// so they are recorded as evicted (a header stub, or nothing for checkpointed ones) and reads
    /// fetch their clusters with ranged GETs, hash-verified. Data that never reached the backend
    /// is not there. On any error nothing of the partial local state is left behind.
    pub(crate) async fn restore(
        store: &dyn ObjectStore,
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
    ) -> Result<Volume> {
        Volume::restore_at(store, fs, dir, id, opts, None).await
    }

    /// [`Volume::restore`] as of the end of TLog `until` (the volume a snapshot of that TLog
    /// saw; a checkpoint after it is not used), or of the last TLog the manifest names. Only a
    /// full restore takes the snapshot records back.
    pub(crate) async fn restore_at(
        store: &dyn ObjectStore,
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        until: Option<u64>,
    ) -> Result<Volume> {
        let (b, _) = get_at_most(store, MANIFEST_NAME, MAX_MANIFEST_LEN)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    Error::NotFound
                } else {
                    be_err(MANIFEST_NAME, e)
                }
            })?;
        let mut m = Manifest::from_xml(MANIFEST_NAME, &b).map_err(fmt_err)?;
        if m.volume != id {
            return Err(Error::Io(format!(
                "backend manifest names volume {}, expected {id}",
                m.volume
            )));
        }
        // The TLogs before the first named are not in this namespace when the volume is a
        // clone (or a flattened one): its checkpoint holds their effect.
        let named = m.named_last();
        if named == 0 {
            return Volume::create(fs, dir, id, opts, 0);
        }
        let (first, last) = m.tlogs.unwrap_or((named + 1, named));
        let last = until.map_or(last, |u| last.min(u));
        if last < first && first == 1 {
            return Volume::create(fs, dir, id, opts, 0);
        }
        if m.checkpoint.is_some_and(|(n, _)| n > last) {
            m.checkpoint = None;
        }
        if m.checkpoint.is_none() && first > 1 {
            return Err(Error::Invalid(format!(
                "the volume as of TLog {last} cannot be rebuilt: its TLogs before {first} are \
                 not in its namespace (a clone's, or a flattened clone's), and its metadata \
                 checkpoint on the backend is newer"
            )));
        }
        crate::volume::create::prepare_empty_dir(&*fs, dir)?;
        // Durable before anything else is written: whatever a crash leaves behind from here on
        // is recognised as an unfinished restore and thrown away by the next open.
        let marker = layout::restore_marker(dir);
        let f = fs
            .create_new(&marker)
            .map_err(|e| io_err(marker.display(), e))?;
        f.sync_data().map_err(|e| io_err(marker.display(), e))?;
        fs.sync_dir(dir).map_err(|e| io_err(dir.display(), e))?;
        let r = async {
            restore_files(store, &*fs, dir, id, &m, first, last).await?;
            // The marker is still there: `open` would refuse what this restore is writing.
            let vol = Volume::open_inner(fs.clone(), dir, id, opts, None)?;
            // Where the SCOs are, before any read may look for one.
            vol.record_epochs(&m.epochs)?;
            vol.lineage_restored(&m.lineage, m.template)?;
            if until.is_none() {
                let snaps = crate::volume::snapshot::restore_snapshots(store, id, last).await?;
                vol.snapshots_restored(&snaps)?;
            }
            vol.on_backend_up_to(last);
            // The replayed TLogs are on the backend: lift their cork at once.
            vol.uncork(last)?;
            // Complete: from now on the local state is the volume's own.
            fs.remove_file(&marker)
                .map_err(|e| io_err(marker.display(), e))?;
            fs.sync_dir(dir).map_err(|e| io_err(dir.display(), e))?;
            Ok(vol)
        }
        .await;
        if r.is_err() {
            if let Err(e) = remove_local(&*fs, dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot clean up after a failed restore");
            }
        }
        r
    }
}

/// Writes the local state a backend restart starts from: the MetaDataStore from the checkpoint
/// (if any), the TLogs after it, and a header stub for every SCO those TLogs seal.
async fn restore_files(
    store: &dyn ObjectStore,
    fs: &dyn LocalFs,
    dir: &Path,
    id: VolumeId,
    m: &Manifest,
    first: u64,
    last: u64,
) -> Result<()> {
    let sco_dir = layout::sco_dir(dir);
    let tlog_dir = layout::tlog_dir(dir);
    let write_local = |path: &Path, data: &[u8]| -> Result<()> {
        let f = fs.create_new(path).map_err(|e| io_err(path.display(), e))?;
        f.write_at(data, 0).map_err(|e| io_err(path.display(), e))?;
        f.sync_data().map_err(|e| io_err(path.display(), e))
    };
    let from = match m.checkpoint {
        Some((n, epoch)) => {
            let cid = ck::checkpoint_id(n, epoch).ok_or_else(|| {
                Error::Io(format!(
                    "backend manifest: checkpoint of TLog {n} in epoch {epoch} has no id"
                ))
            })?;
            load_checkpoint(store, fs, dir, id, (n, cid)).await?;
            n + 1
        }
        None => first,
    };
    // Newest first: a crash part-way leaves a suffix of the TLogs, which a local open refuses
    // (the MetaDataStore's `applied_tlog + 1` is missing) instead of trusting a prefix.
    for seq in (from..=last).rev() {
        let what = format!("backend TLog {}", tlog_name(seq));
        let (_, t) = get_tlog(store, seq, m.epochs.of(seq), None).await?;
        let parsed = parse_tlog(&what, &t, id, seq, false)?;
        if !matches!(parsed.entries.last(), Some((_, Entry::TlogClosed { .. }))) {
            return Err(Error::Io(format!("{what}: not closed")));
        }
        for (sco, _, _) in sealed_scos(&parsed.entries) {
            // An evicted SCO's stub: the data stays on the backend until a read needs it.
            let stub = ScoHeader {
                volume: id,
                seq: sco,
            }
            .encode();
            write_local(&sco_dir.join(sco_name(sco)), &stub)?;
        }
        write_local(&tlog_dir.join(tlog_name(seq)), &t)?;
    }
    if from > last {
        // The checkpoint covers every TLog: start the next one empty.
        let h = TlogHeader {
            volume: id,
            seq: last + 1,
        }
        .encode();
        write_local(&tlog_dir.join(tlog_name(last + 1)), &h)?;
    }
    for d in [&sco_dir, &tlog_dir] {
        fs.sync_dir(d).map_err(|e| io_err(d.display(), e))?;
    }
    Ok(())
}

/// Fetches and verifies checkpoint `cid` of TLog `n` (index, every page it names, SCO table)
/// into a fresh MetaDataStore in `dir`; committed only once everything verified.
async fn load_checkpoint(
    store: &dyn ObjectStore,
    fs: &dyn LocalFs,
    dir: &Path,
    id: VolumeId,
    (n, cid): (u64, u64),
) -> Result<()> {
    let get = |key: String, max: u64| async move {
        get_at_most(store, &key, max)
            .await
            .map(|(b, _)| b)
            .map_err(|e| be_err(&key, e))
    };
    let ikey = ck::index_key(cid);
    let ix = ck::decode_index(
        &format!("backend {ikey}"),
        &get(ikey.clone(), MAX_INDEX_LEN).await?,
        id,
        cid,
    )
    .map_err(fmt_err)?;
    // The SCO table has no fixed bound (one row per SCO ever sealed and still referenced).
    let skey = ck::scos_key(cid);
    let scos = ck::decode_scos(
        &format!("backend {skey}"),
        &get(skey.clone(), u64::MAX).await?,
        id,
        cid,
    )
    .map_err(fmt_err)?;
    let mds = crate::volume::mds::store::Mds::open(fs, dir, true, false, Default::default())?;
    for (p, c) in &ix.pages {
        let key = ck::page_key(*c, *p);
        let b = get(key.clone(), MAX_PAGE_LEN).await?;
        let entries =
            ck::decode_page(&format!("backend {key}"), &b, id, *c, *p).map_err(fmt_err)?;
        mds.load_page(&entries)?;
    }
    mds.finish_checkpoint_load((n, cid), &ix, &scos)
}

/// True when a backend restart into `dir` was interrupted (its marker is still there).
pub(crate) fn restore_interrupted(fs: &dyn LocalFs, dir: &Path) -> Result<bool> {
    match fs.open(&layout::restore_marker(dir)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(layout::restore_marker(dir).display(), e)),
    }
}

/// Removes, durably, every file of a volume's local state in `dir`: SCOs, TLogs, the
/// MetaDataStore and a restore marker (the directories stay).
pub(crate) fn remove_local_state(fs: &dyn LocalFs, dir: &Path) -> Result<()> {
    remove_local(fs, dir)
}

fn remove_local(fs: &dyn LocalFs, dir: &Path) -> Result<()> {
    // The write-ahead log first: it names the files removed next.
    for p in [layout::wal_path(dir), layout::wal_tmp_path(dir)] {
        files::remove_durably(fs, &p)?;
    }
    for d in [layout::sco_dir(dir), layout::tlog_dir(dir)] {
        files::empty_dir_durably(fs, &d)?;
    }
    // The marker goes last: until then a crash leaves it, and the next restart starts over.
    for p in [layout::mds_path(dir), layout::restore_marker(dir)] {
        files::remove_durably(fs, &p)?;
    }
    Ok(())
}
