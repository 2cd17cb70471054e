//! Clones and templates: a clone is a new volume that reads its parent's data as of a snapshot
//! (zero bytes copied) and writes into its own backend namespace; a template is a volume made
//! read-only, cloned without naming a snapshot; flatten makes a clone independent.
//!
//! 1. **Create** (`Volume::create_clone`): the parent's MetaDataStore as of the snapshot's
//!    TLog N (every cluster's SCO, the SCO table, the size) is copied into the clone's fresh
//!    one, with the clone's lineage (`lineage.rs`: the parent and the parent's own ancestors);
//!    the clone's first TLog is N + 1 and its SCOs are numbered above every SCO it reads. Its
//!    map is a full map: a read is one lookup however deep the chain, and the SCO's sealing
//!    TLog names the volume (and so the backend namespace and the upload epoch) holding it.
//! 2. **On the backend** the clone's first pass writes a metadata checkpoint of every page
//!    before its first manifest, which names the lineage (`FORMATS.md`, "Clones"): a backend
//!    restart of the clone reads its own namespace, and only SCOs of its ancestors'.
//! 3. **Template** (`template.rs`): a snapshot and the template mark in one durable
//!    transaction; writes and resizes are refused (`ReadOnly`) from the moment it starts.
//! 4. **Flatten** (`flatten.rs`): every cluster still read from an ancestor is written again
//!    into the clone's own SCOs (only where it still maps there: newer writes win), all of it
//!    uploaded, then the lineage dropped in one durable transaction (the commit point) and a
//!    checkpoint of every page written with a manifest without lineage.

mod flatten;
mod lineage;
mod sharing;
mod template;

pub(crate) use self::lineage::{Ancestor, Lineage};

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_backend::ObjectStore;

use crate::error::{Error, Result};
use crate::volume::files::io_err;
use crate::volume::format::{tlog_name, TlogHeader, VolumeId, CLUSTER_SIZE_U64};
use crate::volume::localfs::LocalFs;
use crate::volume::mds::checkpoint::PAGE_CLUSTERS;
use crate::volume::mds::store::{Mds, SnapshotTx};
use crate::volume::options::VolumeOptions;
use crate::volume::state::{State, Volume};
use crate::volume::{backend, layout};

/// Where other volumes' SCOs are found, by volume id (a clone reads its ancestors'): their
/// backend namespaces, and their local directories (a SCO still whole in its owner's local
/// SCO cache is read from there).
#[derive(Clone)]
pub(crate) struct AncestorStores {
    /// The backend namespace of a volume.
    pub(crate) store: Arc<dyn Fn(VolumeId) -> Result<Arc<dyn ObjectStore>> + Send + Sync>,
    /// The local directory of a volume (it may not exist).
    pub(crate) local_dir: Arc<dyn Fn(VolumeId) -> std::path::PathBuf + Send + Sync>,
}

/// The template mark while a volume is being made a template (writes already refused).
pub(super) const FREEZING: u64 = u64::MAX;

/// Where a SCO's object is: the volume that uploaded it (`None`: this one; else the index of
/// an ancestor) and the epoch it was uploaded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ScoSource {
    pub(super) ancestor: Option<usize>,
    pub(super) epoch: u64,
}

impl Volume {
    /// The volumes this one reads from (empty: not a clone).
    pub(crate) fn lineage(&self) -> Lineage {
        self.lineage.read().clone()
    }

    /// The lineage of a clone of this volume at the end of its TLog `n` (a snapshot's).
    pub(crate) fn clone_lineage(&self, n: u64) -> Result<Lineage> {
        self.lineage()
            .child(self.id, n, &self.epochs.read())
            .map_err(Error::Invalid)
    }

    /// Sets where the backend namespaces of ancestors are found.
    pub(crate) fn set_ancestor_stores(&self, stores: AncestorStores) {
        *self.ancestor_stores.lock() = Some(stores);
    }

    /// The snapshot id a template was made at (`None`: not a template).
    pub(crate) fn template_snapshot(&self) -> Option<u64> {
        match self.template.load(Ordering::Acquire) {
            0 | FREEZING => None,
            id => Some(id),
        }
    }

    /// `ReadOnly` for a template (or a volume being made one).
    pub(super) fn check_writable(&self) -> Result<()> {
        if self.template.load(Ordering::Acquire) != 0 {
            return Err(Error::ReadOnly(
                "the volume is a template: clone it to write".into(),
            ));
        }
        Ok(())
    }

    /// Takes the lineage and template mark a backend restart read from the manifest, durably.
    pub(in crate::volume) fn lineage_restored(
        &self,
        lineage: &Lineage,
        template: u64,
    ) -> Result<()> {
        if *self.lineage.read() != *lineage {
            self.mds.set_lineage(lineage)?;
            *self.lineage.write() = lineage.clone();
        }
        if template != 0 {
            self.mds.set_template(template)?;
            self.template.store(template, Ordering::Release);
        }
        Ok(())
    }

    /// Where SCO `sco` (an evicted one, or one of an ancestor) is on the backend.
    pub(super) fn sco_source(&self, st: &State, sco: u64) -> Result<ScoSource> {
        let e = st.scos.get(&sco).ok_or_else(|| {
            Error::Io(format!(
                "SCO {}: not in the volume's SCO table",
                crate::volume::format::sco_name(sco)
            ))
        })?;
        let lin = self.lineage.read();
        Ok(match lin.owner(e.tlog) {
            Some(i) => ScoSource {
                ancestor: Some(i),
                epoch: lin.ancestors()[i].epochs.of(e.tlog),
            },
            None => ScoSource {
                ancestor: None,
                epoch: self.epochs.read().of(e.tlog),
            },
        })
    }

    /// The backend namespace of ancestor `i`.
    pub(super) fn ancestor_store(&self, i: usize) -> Result<Arc<dyn ObjectStore>> {
        let volume = self.ancestor(i)?;
        let stores = self.ancestor_stores.lock().clone().ok_or_else(|| {
            Error::Io(format!(
                "the backend namespace of ancestor volume {volume} is not known"
            ))
        })?;
        (stores.store)(volume)
    }

    pub(in crate::volume) fn ancestor(&self, i: usize) -> Result<VolumeId> {
        self.lineage
            .read()
            .ancestors()
            .get(i)
            .map(|a| a.volume)
            .ok_or_else(|| Error::Io(format!("no ancestor {i} in the volume's lineage")))
    }

    /// The clusters of `run` (contiguous in one SCO of ancestor `i`, from byte `start` of
    /// it), read from the ancestor's local SCO file when it is there whole and every cluster
    /// matches its hash; `None` otherwise (the caller reads the backend). A sealed SCO file is
    /// never changed in place (an eviction renames a stub over it; an open file keeps its
    /// data), and a short read or a mismatch only sends the read to the backend.
    pub(super) fn ancestor_local(
        &self,
        i: usize,
        run: &[crate::volume::mds::store::Loc],
        start: u64,
    ) -> Option<Vec<u8>> {
        use crate::volume::format::{sco_name, CLUSTER_SIZE};
        let first = run.first()?;
        let dir = (self.ancestor_stores.lock().clone()?.local_dir)(self.ancestor(i).ok()?);
        let f = self
            .fs
            .open(&layout::sco_dir(&dir).join(sco_name(first.sco)))
            .ok()?;
        let mut data = vec![0u8; run.len() * CLUSTER_SIZE];
        if f.read_at(&mut data, start).ok()? != data.len() {
            return None;
        }
        let whole = data
            .chunks_exact(CLUSTER_SIZE)
            .zip(run)
            .all(|(c, loc)| loc.hash.matches(c));
        whole.then_some(data)
    }

    /// Creates a clone in `dir` (which must hold no volume) with id `id`, from `src`: a read
    /// transaction of the parent's MetaDataStore whose `applied_tlog` N is the snapshot's TLog
    /// (every cluster of the snapshot applied), and `lineage` (the parent's own, then the parent
    /// up to N). Its first TLog is N + 1. A failure leaves nothing in `dir`; until the caller
    /// links the clone into the namespace, a crash leaves only a directory nobody opens.
    pub(crate) fn create_clone(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        src: &SnapshotTx,
        lineage: &Lineage,
    ) -> Result<Volume> {
        opts.check()?;
        let n = src.applied_tlog()?;
        if n != lineage.base_tlog() {
            return Err(Error::Io(format!(
                "clone: the parent's map is at TLog {n}, the lineage ends at {}",
                lineage.base_tlog()
            )));
        }
        crate::volume::create::prepare_empty_dir(&*fs, dir)?;
        let r = (|| {
            let mds = Mds::open(&*fs, dir, true, false, Default::default())?;
            let size = src.size()?;
            let mut loaded = Vec::new();
            for p in 0..size.div_ceil(CLUSTER_SIZE_U64).div_ceil(PAGE_CLUSTERS) {
                let entries = src.page(p)?;
                if !entries.is_empty() {
                    mds.load_page(&entries)?;
                    loaded.push(p);
                }
            }
            mds.finish_clone_load((n, size), &loaded, &src.scos()?, lineage)?;
            drop(mds);
            let tlog_dir = layout::tlog_dir(dir);
            let path = tlog_dir.join(tlog_name(n + 1));
            let f = fs
                .create_new(&path)
                .map_err(|e| io_err(path.display(), e))?;
            let h = TlogHeader {
                volume: id,
                seq: n + 1,
            }
            .encode();
            f.write_at(&h, 0).map_err(|e| io_err(path.display(), e))?;
            f.sync_data().map_err(|e| io_err(path.display(), e))?;
            for d in [&tlog_dir, &layout::sco_dir(dir), &dir.to_path_buf()] {
                fs.sync_dir(d).map_err(|e| io_err(d.display(), e))?;
            }
            Volume::open_inner(fs.clone(), dir, id, opts, None)
        })();
        if r.is_err() {
            if let Err(e) = backend::remove_local_state(&*fs, dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot clean up after a failed clone");
            }
        }
        r
    }

    /// The MetaDataStore of this volume as of the end of TLog `n`, for a clone: a read
    /// transaction of its own store when that is exactly at `n` (everything up to `n` uploaded
    /// and applied, nothing after), else `None` (the caller rebuilds it from the backend).
    /// The pipeline must be held off (the caller holds [`Volume::hold_uploads`]).
    pub(crate) fn map_at(&self, n: u64) -> Result<Option<SnapshotTx>> {
        let tx = self.mds.begin_snapshot()?;
        Ok((tx.applied_tlog()? == n).then_some(tx))
    }

    /// Holds the upload pipeline (and every other backup) off while the guard lives.
    pub(crate) fn hold_uploads(&self) -> tokio::sync::MutexGuard<'_, backend::BackendState> {
        self.backend.blocking_lock()
    }
}
