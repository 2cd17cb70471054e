//! The registry of open volumes: each `Kind::Volume` object's data is a [`Volume`] (VolumeDriver)
//! in `<data_dir>/volumes/<ino as 16 hex>/`, uploaded to the backend namespace
//! `volumes/<ino as 16 hex>/` by a background pipeline on the engine runtime.
//!
//! A volume is opened at most once per process (two `Volume`s on one directory would corrupt
//! it), lazily on first access, and stays open until it is deleted or the engine stops. The
//! volume's own TLogs are authoritative for its size (see `FORMATS.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_backend::{Namespaced, ObjectStore};
use tokio::sync::{watch, Semaphore};

use crate::backlog::{known_on_backend, pending_bytes, Backlog};
use crate::data::{Commit, ObjectData, Persist};
use crate::error::{Error, Result};
use crate::types::{Ino, VolumeInfo};
use crate::volume::cluster_cache::{ClusterCache, ClusterCacheStats};
use crate::volume::{LocalFs, StdFs, Volume, VolumeId, VolumeOptions};

/// Directory of the volumes' local state inside the data directory.
pub const VOLUMES_DIR: &str = "volumes";
/// Key prefix of the volumes' namespaces on the backend.
pub const VOLUMES_PREFIX: &str = "volumes/";
/// Backend uploads (pipeline passes and flushes) running at once, over all volumes.
const UPLOADS: usize = 2;
/// Longest wait between two failed pipeline passes.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Settings of the registry, from the engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct VolumesConfig {
    /// `<data_dir>/volumes`.
    pub dir: PathBuf,
    /// SCO and TLog sizes.
    pub opts: VolumeOptions,
    /// `SCO_Max_Age`.
    pub max_age: Duration,
    /// The local-file layer of every volume ([`StdFs`] unless a test simulates crashes).
    pub fs: Option<Arc<dyn LocalFs>>,
    /// `Write_Buffer_Size`: the hard mark of a volume's data not yet on the backend, at which
    /// its writes wait for room (see [`crate::pacing`]).
    pub write_buffer: u64,
    /// `Write_Throttle_Start`: the soft mark, in percent of `write_buffer`.
    pub throttle_start: u64,
    /// `Backend_Stall_Timeout`: a write at the hard mark is answered `Delay` only after the
    /// backend made no progress for this long.
    pub stall_timeout: Duration,
    /// `SCO_Cache_Size`: the bound of the local SCO files of all volumes (0: unbounded).
    pub sco_cache_size: u64,
    /// `Cluster_Cache_Size`: the bound of the cluster cache shared by all volumes (0: off).
    pub cluster_cache_size: u64,
}

/// The SCO cache shared by every open volume: runs the eviction policy
/// ([`crate::volume::evict_lfu`]) over all of them, one run at a time.
#[derive(Debug)]
struct ScoCache {
    size: u64,
    vols: Mutex<HashMap<Ino, std::sync::Weak<Volume>>>,
    running: Mutex<()>,
}

impl ScoCache {
    /// Evicts disposable SCOs of the open volumes when they exceed the high watermark.
    /// Blocking: runs on a blocking thread (see [`ScoCache::run_async`]) or outside the runtime.
    fn run(&self) {
        let _one = self.running.lock();
        let vols: Vec<Arc<Volume>> = self
            .vols
            .lock()
            .values()
            .filter_map(|w| w.upgrade())
            .collect();
        let r = crate::volume::evict_lfu(&vols, self.size);
        if r.scos > 0 {
            tracing::debug!(
                before = r.before,
                after = r.after,
                scos = r.scos,
                "SCO cache eviction"
            );
        }
    }

    /// [`ScoCache::run`] on a blocking thread, so async workers never wait on volume locks.
    async fn run_async(self: &Arc<Self>) {
        let me = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || me.run()).await {
            tracing::warn!(error = %e, "SCO cache eviction task failed");
        }
    }
}

/// One open volume with its backend namespace and pipeline.
#[derive(Debug)]
pub(crate) struct VolumeData {
    ino: Ino,
    vol: Arc<Volume>,
    store: Arc<dyn ObjectStore>,
    dir: PathBuf,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    backlog: Arc<Backlog>,
    /// Paces writes between the soft and the hard mark of the backlog.
    pacer: crate::pacing::Pacer,
}

impl VolumeData {
    /// The volume.
    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }
}

/// The registry of open volumes.
#[derive(Debug)]
pub(crate) struct Volumes {
    cfg: VolumesConfig,
    fs: Arc<dyn LocalFs>,
    fsid: u64,
    base: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    uploads: Arc<Semaphore>,
    cache: Arc<ScoCache>,
    /// The content-addressed cluster cache every volume reads evicted clusters through.
    clusters: Arc<ClusterCache>,
    /// Open volumes. Held only briefly: a volume that is opening holds its own gate instead.
    open: Mutex<HashMap<Ino, Arc<VolumeData>>>,
    /// One gate per volume being opened, so that it is opened once, while opening other volumes
    /// (a local restart, or a whole backend restore) never waits for it.
    opening: Mutex<HashMap<Ino, Arc<Mutex<()>>>>,
    /// Background deletions of deleted volumes' backend objects.
    deletions: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Volumes deleted by this run: never opened again, even once their deletion marker is
    /// gone (a flush of all volumes may have listed one just before it was deleted).
    deleted: Mutex<std::collections::HashSet<Ino>>,
}

/// The id of volume `ino` of namespace `fsid`: both, little-endian.
pub(crate) fn volume_id(fsid: u64, ino: Ino) -> VolumeId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&fsid.to_le_bytes());
    b[8..].copy_from_slice(&ino.to_le_bytes());
    VolumeId(b)
}

fn ino_name(ino: Ino) -> String {
    format!("{ino:016x}")
}

/// A local I/O error on `what`: `NoSpace` for a full disk or quota.
pub(crate) fn io_err(what: &Path, e: std::io::Error) -> Error {
    if crate::error::is_enospc(&e) {
        Error::NoSpace
    } else {
        Error::Io(format!("{}: {e}", what.display()))
    }
}

impl Volumes {
    /// A registry keeping volumes of namespace `fsid` under `cfg.dir` and `base`/`volumes/`.
    pub fn new(
        cfg: VolumesConfig,
        fsid: u64,
        base: Arc<dyn ObjectStore>,
        rt: tokio::runtime::Handle,
    ) -> Volumes {
        let fs = cfg.fs.clone().unwrap_or_else(|| Arc::new(StdFs));
        let cache = Arc::new(ScoCache {
            size: cfg.sco_cache_size,
            vols: Mutex::new(HashMap::new()),
            running: Mutex::new(()),
        });
        Volumes {
            cache,
            clusters: Arc::new(ClusterCache::new(cfg.cluster_cache_size)),
            cfg,
            fs,
            fsid,
            base,
            rt,
            uploads: Arc::new(Semaphore::new(UPLOADS)),
            open: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            deletions: Mutex::new(Vec::new()),
            deleted: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn local_dir(&self, ino: Ino) -> PathBuf {
        self.cfg.dir.join(ino_name(ino))
    }

    fn store_of(&self, ino: Ino) -> Result<Arc<dyn ObjectStore>> {
        let ns = Namespaced::new(
            self.base.clone(),
            format!("{VOLUMES_PREFIX}{}/", ino_name(ino)),
        )?;
        Ok(Arc::new(ns))
    }

    /// The open volume `ino`, if it is open.
    pub fn get(&self, ino: Ino) -> Option<Arc<VolumeData>> {
        self.open.lock().get(&ino).cloned()
    }

    /// Inode numbers of every open volume and every volume with a local directory.
    pub fn local_inos(&self) -> Result<Vec<Ino>> {
        let mut out: Vec<Ino> = self.open.lock().keys().copied().collect();
        // Through the local-file layer, so that a simulated disk is listed, not the real one.
        match self.fs.list_dirs(&self.cfg.dir) {
            Ok(names) => {
                out.extend(
                    names
                        .iter()
                        .filter(|n| n.len() == 16)
                        .filter_map(|n| u64::from_str_radix(n, 16).ok()),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&self.cfg.dir, e)),
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Removes every SCO and TLog of the volume in `dir` (durably) and then, on the real
    /// filesystem, its directories.
    fn remove_local(&self, dir: &Path) -> Result<()> {
        crate::volume::remove_local_state(&*self.fs, dir)?;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(dir, e)),
        }
    }

    /// Opens volume `ino`: a local restart from its SCOs and TLogs if it has local state, else
    /// a backend restart if its backend namespace has a manifest, else a new volume of
    /// `size_hint` bytes. With `fresh` (the inode was just created), anything found locally or
    /// on the backend under this ino belongs to another namespace (inos are never reused within
    /// one) and is removed, and the volume is created. Starts its backend pipeline.
    pub fn open_or_create(&self, ino: Ino, size_hint: u64, fresh: bool) -> Result<Arc<VolumeData>> {
        if let Some(v) = self.get(ino) {
            return Ok(v);
        }
        self.gated(ino, || match self.get(ino) {
            // Opened by another thread while this one waited at the gate.
            Some(v) => Ok(v),
            None => self.open_gated(ino, size_hint, fresh),
        })
    }

    /// Runs `f` holding volume `ino`'s gate: opening and deleting a volume never overlap, and
    /// a volume is opened once.
    fn gated<T>(&self, ino: Ino, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let gate = self.opening.lock().entry(ino).or_default().clone();
        let r = {
            let _held = gate.lock();
            f()
        };
        let mut opening = self.opening.lock();
        // Only the map and this thread hold the gate: nobody waits at it any more.
        if Arc::strong_count(&gate) == 2 {
            opening.remove(&ino);
        }
        r
    }

    /// Whether volume `ino` is deleted (its deletion marker exists), so that it must never be
    /// opened, restored or created again under this ino.
    pub fn is_deleted(&self, ino: Ino) -> Result<bool> {
        if self.deleted.lock().contains(&ino) {
            return Ok(true);
        }
        let marker = self.deleting_marker(ino);
        match self.fs.open(&marker) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&marker, e)),
        }
    }

    /// [`Volumes::open_or_create`] with the volume's gate held.
    fn open_gated(&self, ino: Ino, size_hint: u64, fresh: bool) -> Result<Arc<VolumeData>> {
        if !fresh && self.is_deleted(ino)? {
            // Deleted (perhaps right now, by another thread): never opened, restored from the
            // backend or created again.
            return Err(Error::Stale);
        }
        let dir = self.local_dir(ino);
        let store = self.store_of(ino)?;
        let id = volume_id(self.fsid, ino);
        let fs = self.fs.clone();
        let tlog_dir = dir.join("tlog");
        let has_local = match fs.list(&tlog_dir) {
            Ok(names) => !names.is_empty(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&tlog_dir, e)),
        };
        // A backend restart cut short (a crash, or the backend failed half-way): its files are
        // only a partial copy of the backend; throw them away and restore again below.
        let has_local = has_local && {
            let interrupted = crate::volume::restore_interrupted(&*fs, &dir)?;
            if interrupted {
                tracing::warn!(ino, "an interrupted backend restart is started again");
            }
            !interrupted
        };
        let vol = if fresh {
            self.remove_local(&dir)?;
            match self.rt.block_on(store.list("", None, 1)) {
                Ok(stale) if !stale.objects.is_empty() => {
                    tracing::warn!(
                        ino,
                        "removing another namespace's volume objects from the backend"
                    );
                    self.rt.block_on(delete_all(&*store))?;
                }
                Ok(_) => {}
                // A VM disk can be created while the backend is down. Should another
                // namespace's objects be there, the pipeline refuses to upload over them (the
                // manifest names another volume) and says so: nothing is overwritten.
                Err(e) => tracing::warn!(
                    ino,
                    error = %e,
                    "backend unreachable: creating the volume without checking its namespace for stale objects"
                ),
            }
            Volume::create(fs, &dir, id, self.cfg.opts, size_hint)?
        } else if has_local {
            Volume::open(fs, &dir, id, self.cfg.opts)?
        } else {
            // No TLog: nothing here was ever durable (a crash during create); start clean.
            self.remove_local(&dir)?;
            let restored = self.rt.block_on(Volume::restore(
                &*store,
                fs.clone(),
                &dir,
                id,
                self.cfg.opts,
            ));
            match restored {
                Ok(v) => {
                    tracing::info!(ino, volume = %id, "volume restored from the backend");
                    v
                }
                Err(Error::NotFound) => Volume::create(fs, &dir, id, self.cfg.opts, size_hint)?,
                Err(e) => return Err(e),
            }
        };
        vol.set_backend(store.clone(), self.rt.clone());
        vol.set_cluster_cache(self.clusters.clone());
        let vol = Arc::new(vol);
        self.cache.vols.lock().insert(ino, Arc::downgrade(&vol));
        let (stop, stopped) = watch::channel(false);
        // Unknown until the first pass measured it: no throttling meanwhile.
        let backlog = Arc::new(Backlog::new(
            self.fs.clone(),
            dir.clone(),
            crate::pacing::soft_mark(self.cfg.write_buffer, self.cfg.throttle_start),
        ));
        let task = self.rt.spawn(pipeline(
            vol.clone(),
            store.clone(),
            self.uploads.clone(),
            backlog.clone(),
            self.cache.clone(),
            self.cfg.max_age,
            stopped,
        ));
        let uploaded = vol.uploaded_bytes();
        let data = Arc::new(VolumeData {
            ino,
            vol,
            store,
            dir,
            stop,
            task: Mutex::new(Some(task)),
            pacer: crate::pacing::Pacer::new(
                self.cfg.write_buffer,
                self.cfg.throttle_start,
                self.cfg.stall_timeout,
                uploaded,
            ),
            backlog,
        });
        self.open.lock().insert(ino, data.clone());
        Ok(data)
    }

    /// Uploads everything written to volume `v` so far (open SCO and TLog included) and its
    /// manifest; returns once it is on the backend.
    pub fn flush(&self, v: &VolumeData) -> Result<()> {
        let uploads = self.uploads.clone();
        self.rt.block_on(async {
            let _permit = uploads
                .acquire()
                .await
                .map_err(|_| Error::Io("upload limiter closed".into()))?;
            let r = v.vol.backup(&*v.store, true).await;
            v.backlog.refresh(&v.vol).await;
            r.map(|_| ())
        })?;
        self.cache.run();
        Ok(())
    }

    /// Deletes volume `ino` everywhere: stops its pipeline, removes its local directory and
    /// every object of its backend namespace. Works whether or not it is open. Holds the
    /// volume's gate throughout, so no other thread opens (or restores) it meanwhile.
    ///
    /// 1. A durable marker, first: from here on the volume is deleted. Nothing opens, restores
    ///    or re-creates it ([`Volumes::open_or_create`] refuses it), and a crash resumes the
    ///    deletion at the next start.
    /// 2. Out of the registry; its pipeline is stopped and a pass in flight waited for.
    /// 3. Its local files go (the volume is halted: no later call uploads anything), and a
    ///    flush in flight (`strata sync --wait`) is waited for, so that nothing reaches the
    ///    backend after step 4 starts.
    /// 4. Its backend objects go in the background (a large volume has thousands: deleting
    ///    them inside the client's REMOVE would take minutes); the marker goes last.
    pub fn delete(&self, ino: Ino) -> Result<()> {
        self.gated(ino, || self.delete_gated(ino))
    }

    /// [`Volumes::delete`] with the volume's gate held.
    fn delete_gated(&self, ino: Ino) -> Result<()> {
        let marker = self.deleting_marker(ino);
        self.fs
            .create_dir_all(&self.cfg.dir)
            .map_err(|e| io_err(&self.cfg.dir, e))?;
        match self.fs.create_new(&marker) {
            Ok(f) => f.sync_data().map_err(|e| io_err(&marker, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&marker, e)),
        }
        self.fs
            .sync_dir(&self.cfg.dir)
            .map_err(|e| io_err(&self.cfg.dir, e))?;
        // Deleted from here on (not before: a failed marker leaves the volume as it was).
        self.deleted.lock().insert(ino);
        let data = self.open.lock().remove(&ino);
        self.cache.vols.lock().remove(&ino);
        if let Some(d) = &data {
            d.stop.send_replace(true);
            let task = d.task.lock().take();
            if let Some(t) = task {
                // Wait for a pass in flight: it must not upload after the deletion below.
                let _ = self.rt.block_on(t);
            }
            d.vol.destroy()?;
            self.rt.block_on(d.vol.backend_idle());
        }
        let dir = data
            .as_ref()
            .map_or_else(|| self.local_dir(ino), |d| d.dir.clone());
        let store = match &data {
            Some(d) => d.store.clone(),
            None => self.store_of(ino)?,
        };
        self.remove_local(&dir)?;
        self.spawn_backend_delete(ino, store);
        Ok(())
    }

    /// `<volumes dir>/<ino>.deleting`: the volume is deleted, its backend objects not all yet.
    fn deleting_marker(&self, ino: Ino) -> PathBuf {
        self.cfg
            .dir
            .join(format!("{}{DELETING_SUFFIX}", ino_name(ino)))
    }

    /// Deletes every object of a deleted volume's namespace on the runtime, then its marker.
    /// A failure is logged and left to [`Volumes::finish_deletions`] or the next start.
    fn spawn_backend_delete(&self, ino: Ino, store: Arc<dyn ObjectStore>) {
        let fs = self.fs.clone();
        let marker = self.deleting_marker(ino);
        let dir = self.cfg.dir.clone();
        let task = self.rt.spawn(async move {
            if let Err(e) = delete_all(&*store).await {
                tracing::warn!(ino, error = %e, "deleting a volume's backend objects failed; retried at the next sync or start");
                return;
            }
            let done = tokio::task::spawn_blocking(move || remove_marker(&*fs, &marker, &dir)).await;
            if let Ok(Err(e)) | Err(e) = done.map_err(|e| Error::Io(e.to_string())) {
                tracing::warn!(ino, error = %e, "removing a volume's deletion marker failed");
            }
        });
        self.deletions.lock().push(task);
    }

    /// Inos of deleted volumes whose backend objects are not all deleted yet (their markers).
    fn pending_deletions(&self) -> Result<Vec<Ino>> {
        let names = match self.fs.list(&self.cfg.dir) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.cfg.dir, e)),
        };
        Ok(names
            .iter()
            .filter_map(|n| n.strip_suffix(DELETING_SUFFIX))
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
            .collect())
    }

    /// At start: resumes, in the background, the deletions an earlier run left unfinished.
    pub fn resume_deletions(&self) -> Result<()> {
        for ino in self.pending_deletions()? {
            tracing::info!(ino, "resuming the deletion of a volume's backend objects");
            let store = self.store_of(ino)?;
            self.spawn_backend_delete(ino, store);
        }
        Ok(())
    }

    /// Returns once every deleted volume's backend objects are gone: waits for the background
    /// deletions, then deletes (here, synchronously) whatever a failed one left.
    pub fn finish_deletions(&self) -> Result<()> {
        let running = std::mem::take(&mut *self.deletions.lock());
        for t in running {
            // A failed task leaves its marker: handled below.
            let _ = self.rt.block_on(t);
        }
        for ino in self.pending_deletions()? {
            let store = self.store_of(ino)?;
            self.rt.block_on(delete_all(&*store))?;
            remove_marker(&*self.fs, &self.deleting_marker(ino), &self.cfg.dir)?;
        }
        Ok(())
    }

    /// The management view of volume `v`.
    pub fn info(&self, v: &VolumeData) -> VolumeInfo {
        let s = v.vol.stats();
        let last = known_on_backend(&v.vol, self.rt.block_on(v.vol.backend_last_tlog()));
        let last_sco = v.vol.newest_sco_sealed_by(last);
        let pending = pending_bytes(&*self.fs, &v.dir, last, last_sco).unwrap_or_else(|e| {
            tracing::warn!(ino = v.ino, error = %e, "cannot measure a volume's upload backlog");
            0
        });
        let p = v.pacer.stats();
        VolumeInfo {
            writes_paced: p.delayed,
            pacing_delay_ms: p.delay_ms,
            writes_refused: p.refused,
            peak_backlog: p.peak_backlog,
            upload_rate: p.upload_rate as u64,
            size: v.vol.size(),
            space_used: v.vol.space_used(),
            pending_backend_bytes: pending,
            commits: s.commits,
            commit_rounds: s.commit_rounds,
            clusters_written: s.clusters_written,
            scos_sealed: s.scos_sealed,
            cache_hits: s.cache_hits,
            cache_misses: s.cache_misses,
            cluster_cache_hits: s.cluster_cache_hits,
            tlogs_replayed: s.tlogs_replayed,
            applied_tlog: s.applied_tlog,
            checkpoint_tlog: s.checkpoint_tlog,
            corked_clusters: s.corked_clusters,
        }
    }

    /// Counters of the cluster cache shared by all volumes.
    pub fn cluster_cache_stats(&self) -> ClusterCacheStats {
        self.clusters.stats()
    }

    /// Stops every pipeline (engine shutdown); a pass in flight is abandoned (uploads are
    /// idempotent and redone by the next run).
    pub fn stop_all(&self) {
        for d in self.open.lock().values() {
            d.stop.send_replace(true);
        }
    }
}

/// Suffix of the marker of a volume deleted from the namespace whose backend objects are not
/// all deleted yet.
const DELETING_SUFFIX: &str = ".deleting";

/// Removes a deletion marker (durably); a marker already gone is fine.
fn remove_marker(fs: &dyn LocalFs, marker: &Path, dir: &Path) -> Result<()> {
    match fs.remove_file(marker) {
        Ok(()) => fs.sync_dir(dir).map_err(|e| io_err(dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(marker, e)),
    }
}

/// Deletes every object of a store (a volume's namespace).
async fn delete_all(store: &dyn ObjectStore) -> Result<()> {
    loop {
        // Deleting as we go: every page starts at the beginning again.
        let page = store.list("", None, 1000).await?;
        if page.objects.is_empty() {
            return Ok(());
        }
        for o in page.objects {
            store.delete(&o.key).await?;
        }
    }
}

/// The background pipeline of one volume, the only upload loop: a pass every `interval` (a
/// quarter of `max_age`, between 100 ms and 5 s) uploads closed TLogs, their SCOs and the
/// manifest, sealing a partial SCO older than `max_age` first; failures back off exponentially
/// (from `interval`, doubling, capped at 30 s, plus up to a quarter of jitter) until the
/// backend answers again. Nothing is dropped meanwhile: what is not uploaded stays local. At
/// most [`UPLOADS`] passes run at once over all volumes.
async fn pipeline(
    vol: Arc<Volume>,
    store: Arc<dyn ObjectStore>,
    uploads: Arc<Semaphore>,
    backlog: Arc<Backlog>,
    cache: Arc<ScoCache>,
    max_age: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let interval = (max_age / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut delay = interval;
    // Retries of many volumes after one outage spread out instead of arriving together.
    // Seeded by the whole volume id: the fsid half alone is the same for every volume.
    let half =
        |r: std::ops::Range<usize>| u64::from_le_bytes(vol.id().0[r].try_into().unwrap_or([0; 8]));
    let seed = half(0..8) ^ half(8..16).rotate_left(32);
    let mut jitter = crate::volume::SimRng::new(seed ^ 0x5ca1_ab1e);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            // A writer waits for room: a pass now, unless the backend is failing (the backoff
            // stands).
            _ = backlog.wanted(), if !failing => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
        if *stop.borrow() {
            return;
        }
        let Ok(_permit) = uploads.acquire().await else {
            return;
        };
        let mut pass = vol.backup_aged(&*store, max_age).await;
        if matches!(&pass, Ok(r) if r.tlogs == 0) && backlog.above_soft(vol.uploaded_bytes()) {
            // Above the soft mark with no closed TLog to upload: the backlog is all in the open
            // TLog (a write buffer smaller than a few TLogs), which would otherwise only go up
            // at SCO_Max_Age while writers wait. Close it now.
            pass = vol.backup(&*store, true).await;
        }
        failing = pass.is_err();
        match pass {
            // Something went up: go on at once while a backlog is left, so throttled writers
            // wait as little as possible.
            Ok(r) if r.bytes > 0 => delay = Duration::from_millis(1),
            Ok(_) => delay = interval,
            Err(e) => {
                let next = delay
                    .saturating_mul(2)
                    .clamp(interval, BACKOFF_CAP.max(interval));
                let spread = u64::try_from(next.as_millis() / 4).unwrap_or(u64::MAX);
                delay = next + Duration::from_millis(jitter.below(spread.saturating_add(1)));
                tracing::warn!(volume = %vol.id(), error = %e, retry_in = ?delay, "volume upload failed");
            }
        }
        backlog.refresh(&vol).await;
        // SCOs that just became disposable may be evicted now.
        cache.run_async().await;
    }
}

/// A volume as the facade's [`ObjectData`].
#[derive(Debug)]
pub(crate) struct VolumeObject {
    data: Arc<VolumeData>,
    volumes: std::sync::Weak<Volumes>,
}

impl VolumeObject {
    /// The object data of an open volume.
    pub fn new(data: Arc<VolumeData>, volumes: &Arc<Volumes>) -> VolumeObject {
        VolumeObject {
            data,
            volumes: Arc::downgrade(volumes),
        }
    }
}

impl ObjectData for VolumeObject {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        let n = self.data.vol.read(offset, buf)?;
        Ok((n, offset + n as u64 >= self.data.vol.size()))
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let d = &self.data;
        let admitted = d.pacer.admit(
            crate::backlog::cost(data.len() as u64, d.vol.options()),
            || d.backlog.estimate(d.vol.uploaded_bytes()),
            || d.vol.uploaded_bytes(),
            |len, hard| d.backlog.reserve(len, hard, d.vol.uploaded_bytes()),
            |t| d.backlog.wait_for_room(t),
        );
        if admitted == crate::pacing::Admit::Refuse {
            // Full, and the backend made no progress for Backend_Stall_Timeout: an outage.
            // The client retries later (NFS3ERR_JUKEBOX / NFS4ERR_DELAY).
            return Err(Error::Delay);
        }
        // Its length is in the backlog already (reserved above).
        d.vol.write(offset, data, false)
    }

    fn truncate(&self, new_size: u64, persist: Persist<'_>) -> Result<()> {
        self.data.vol.resize(new_size)?;
        self.data.vol.sync()?;
        persist(&Commit {
            size: new_size,
            ..Commit::default()
        })
    }

    fn sync(&self, persist: Persist<'_>) -> Result<()> {
        // The volume's fsyncs are the durability point; the namespace only caches the size.
        self.data.vol.sync()?;
        persist(&Commit {
            size: self.data.vol.size(),
            lazy: true,
            ..Commit::default()
        })
    }

    fn size(&self) -> u64 {
        self.data.vol.size()
    }

    fn space_used(&self) -> u64 {
        self.data.vol.space_used()
    }

    fn is_dirty(&self) -> bool {
        self.data.vol.is_dirty()
    }

    fn delete(&self) -> Result<()> {
        match self.volumes.upgrade() {
            Some(v) => v.delete(self.data.ino),
            None => Err(Error::Io("volume registry gone".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_evicts_down_to_the_sco_cache_size_after_a_flush() {
        let t = tempfile::tempdir().expect("tempdir");
        let rt = crate::runtime::build().expect("runtime");
        let base: Arc<dyn ObjectStore> = Arc::new(strata_backend::MemStore::new());
        let sco = 4096 + 16 * 4096 + 32;
        let cfg = VolumesConfig {
            dir: t.path().join("volumes"),
            opts: VolumeOptions {
                sco_clusters: 16,
                tlog_scos: 2,
                checkpoint_tlogs: 64,
            },
            max_age: Duration::from_secs(3600),
            fs: None,
            write_buffer: 1 << 40,
            throttle_start: 50,
            stall_timeout: Duration::from_secs(60),
            sco_cache_size: 8 * sco,
            cluster_cache_size: 0,
        };
        let vols = Volumes::new(cfg, 1, base, rt.handle().clone());
        let a = vols.open_or_create(2, 0, true).expect("open a");
        let b = vols.open_or_create(3, 0, true).expect("open b");
        let data: Vec<u8> = (0..20 * 65_536u32).map(|i| (i % 253) as u8).collect();
        for v in [&a, &b] {
            v.volume().write(0, &data, false).expect("write");
            vols.flush(v).expect("flush");
        }
        let local: u64 = [&a, &b].iter().map(|v| v.volume().sco_cache_bytes()).sum();
        assert!(local <= 8 * sco * 7 / 10, "{local}");
        // What the volumes count is what is on disk.
        let mut disk = 0;
        for v in [&a, &b] {
            for e in std::fs::read_dir(v.dir.join("sco")).expect("sco dir") {
                disk += e.expect("entry").metadata().expect("metadata").len();
            }
        }
        assert_eq!(disk, local);
        let mut hits = 0;
        for v in [&a, &b] {
            let mut buf = vec![0u8; data.len()];
            assert_eq!(v.volume().read(0, &mut buf).expect("read"), data.len());
            assert!(buf == data, "volume {} reads back", v.ino);
            let info = vols.info(v);
            assert!(info.cache_misses > 0, "{info:?}");
            hits += info.cache_hits;
        }
        // The newest SCOs (of the volume flushed last) stayed in the cache.
        assert!(hits > 0);
        vols.stop_all();
    }
}
