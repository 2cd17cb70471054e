//! The registry of open volumes ([`VolumeRegistry`]): each `Kind::Volume` object's data is a
//! [`Volume`] (VolumeDriver) in `<data_dir>/volumes/<ino as 16 hex>/`, uploaded to the backend
//! namespace `volumes/<ino as 16 hex>/` by a background pipeline on the engine runtime.
//!
//! A volume is opened at most once per process (two `Volume`s on one directory would corrupt
//! it), lazily on first access, and stays open until it is deleted or the engine stops. The
//! volume's own TLogs are authoritative for its size (see `FORMATS.md`).
//!
//! - this file: the registry, its settings, and the per-volume gate;
//! - [`open`](self::open): opening a volume (local restart, backend restore or creation);
//! - [`open_volume`]: one open volume ([`OpenVolume`]) with its pipeline and pacing state;
//! - [`object`]: an open volume as the facade's object data (writes admitted by the pacing);
//! - [`pipeline`]: the upload loop, the only one;
//! - [`backlog`] and [`pacing`]: what is not on the backend yet, and the backpressure on it;
//! - [`sco_cache`]: the SCO cache shared by all volumes (eviction runs);
//! - [`deletion`]: deleting a volume everywhere, and resuming deletions after a crash.

mod backlog;
mod clone;
mod deletion;
mod fsck;
mod object;
mod open;
mod open_volume;
pub(crate) mod pacing;
mod pipeline;
mod sco_cache;
mod scrub;
pub(crate) use self::scrub::{ExtraPass, Scrubber};
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_backend::{Namespaced, ObjectStore};
use tokio::sync::Semaphore;

use crate::error::{io_err, Error, Result};
use crate::types::{Ino, VolumeInfo};
use crate::volume::cluster_cache::{ClusterCache, ClusterCacheStats, CLUSTER_CACHE_FILE};
use crate::volume::{LocalFs, StdFs, VolumeId, VolumeOptions};
use crate::volume::{MapCache, MapCacheStats};

use self::backlog::{known_on_backend, pending_bytes};
pub(crate) use self::clone::ino_of;
pub(crate) use self::object::VolumeObject;
pub(crate) use self::open_volume::OpenVolume;
use self::sco_cache::ScoCache;

/// Directory of the volumes' local state inside the data directory.
pub const VOLUMES_DIR: &str = "volumes";
/// Key prefix of the volumes' namespaces on the backend.
pub const VOLUMES_PREFIX: &str = "volumes/";
/// Backend uploads (pipeline passes and flushes) running at once, over all volumes.
const UPLOADS: usize = 2;

/// Settings of the registry, from the engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct RegistryConfig {
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
    /// `Map_Cache_Size`: the bound of the decoded map pages shared by all volumes (0: off).
    pub map_cache_size: u64,
    /// `Scrub_Threshold`, `GC_Grace`, `Scrub_Bandwidth`: how a scrub pass runs.
    pub scrub: crate::volume::scrub::ScrubOptions,
    /// `Scrub_Interval`: time between background passes (zero: only on demand).
    pub scrub_interval: Duration,
    /// `Zero_Detect`: whole clusters of zeros written to a volume are unmapped.
    pub zero_detect: bool,
    /// The owner epoch of this run: every object a volume uploads carries it in its key.
    pub epoch: u64,
}

/// The registry of open volumes.
#[derive(Debug)]
pub(crate) struct VolumeRegistry {
    cfg: RegistryConfig,
    fs: Arc<dyn LocalFs>,
    fsid: u64,
    base: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    uploads: Arc<Semaphore>,
    cache: Arc<ScoCache>,
    /// The content-addressed cluster cache every volume reads evicted clusters through.
    clusters: Arc<ClusterCache>,
    /// The decoded cluster-map pages every volume's lookups share (none when off).
    maps: Option<Arc<MapCache>>,
    /// Open volumes. Held only briefly: a volume that is opening holds its own gate instead.
    open: Mutex<HashMap<Ino, Arc<OpenVolume>>>,
    /// One gate per volume being opened, so that it is opened once, while opening other volumes
    /// (a local restart, or a whole backend restore) never waits for it.
    opening: Mutex<HashMap<Ino, Arc<Mutex<()>>>>,
    /// Background deletions of deleted volumes' backend objects.
    deletions: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Volumes deleted by this run: never opened again, even once their deletion marker is
    /// gone (a flush of all volumes may have listed one just before it was deleted).
    deleted: Mutex<std::collections::HashSet<Ino>>,
    /// Where a deletion's backend part shows as a job.
    jobs: Arc<crate::jobs::Jobs>,
    /// The namespace's clone tables (which volumes clones read), set by the facade.
    namespace: Mutex<Option<Arc<crate::namespace::Namespace>>>,
    /// The namespace's images on the backend (set by the facade): a deleted volume's objects go
    /// only once an image no longer names it.
    images: Mutex<Option<Arc<crate::ns_backend::NsBackend>>>,
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

impl VolumeRegistry {
    /// A registry keeping volumes of namespace `fsid` under `cfg.dir` and `base`/`volumes/`.
    pub(crate) fn new(
        cfg: RegistryConfig,
        fsid: u64,
        base: Arc<dyn ObjectStore>,
        rt: tokio::runtime::Handle,
        jobs: Arc<crate::jobs::Jobs>,
    ) -> VolumeRegistry {
        let fs = cfg.fs.clone().unwrap_or_else(|| Arc::new(StdFs));
        let cache = Arc::new(ScoCache {
            size: cfg.sco_cache_size,
            vols: Mutex::new(HashMap::new()),
            running: Mutex::new(()),
        });
        VolumeRegistry {
            cache,
            clusters: Arc::new(ClusterCache::open(
                &*fs,
                &cfg.dir.with_file_name(CLUSTER_CACHE_FILE),
                cfg.cluster_cache_size,
            )),
            maps: MapCache::new(cfg.map_cache_size),
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
            jobs,
            namespace: Mutex::new(None),
            images: Mutex::new(None),
        }
    }

    /// Sets the namespace whose clone tables deletions consult.
    pub(crate) fn set_namespace(&self, ns: Arc<crate::namespace::Namespace>) {
        *self.namespace.lock() = Some(ns);
    }

    /// Sets the namespace images whose upload deletions wait for.
    pub(crate) fn set_images(&self, images: Arc<crate::ns_backend::NsBackend>) {
        *self.images.lock() = Some(images);
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
    pub(crate) fn get(&self, ino: Ino) -> Option<Arc<OpenVolume>> {
        self.open.lock().get(&ino).cloned()
    }

    /// Inode numbers of every open volume and every volume with a local directory.
    pub(crate) fn local_inos(&self) -> Result<Vec<Ino>> {
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
            Err(e) => return Err(io_err(self.cfg.dir.display(), e)),
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Removes every file of the volume in `dir` (durably), then its directories, all through
    /// the local-file layer.
    fn remove_local(&self, dir: &Path) -> Result<()> {
        use crate::volume::layout;
        // Twice at most: an eviction already under way may rename its stub into `sco/` after
        // the first emptying.
        for attempt in 0..2 {
            crate::volume::remove_local_state(&*self.fs, dir)?;
            let mut refilled = false;
            for d in [
                layout::sco_dir(dir),
                layout::tlog_dir(dir),
                dir.to_path_buf(),
            ] {
                match self.fs.remove_dir(&d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempt == 0 => {
                        refilled = true;
                        break;
                    }
                    Err(e) => return Err(io_err(d.display(), e)),
                }
            }
            if !refilled {
                break;
            }
        }
        Ok(())
    }

    /// Opens volume `ino`: a local restart from its SCOs and TLogs if it has local state, else
    /// a backend restart if its backend namespace has a manifest, else a new volume of
    /// `size_hint` bytes. With `fresh` (the inode was just created), anything found locally or
    /// on the backend under this ino belongs to another namespace (inos are never reused within
    /// one) and is removed, and the volume is created. Starts its backend pipeline.
    pub(crate) fn open_or_create(
        &self,
        ino: Ino,
        size_hint: u64,
        fresh: bool,
    ) -> Result<Arc<OpenVolume>> {
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
    pub(crate) fn is_deleted(&self, ino: Ino) -> Result<bool> {
        if self.deleted.lock().contains(&ino) {
            return Ok(true);
        }
        let marker = self.deleting_marker(ino);
        match self.fs.open(&marker) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(marker.display(), e)),
        }
    }

    /// [`VolumeRegistry::open_or_create`] with the volume's gate held.
    /// Uploads everything written to volume `v` so far (open SCO and TLog included) and its
    /// manifest; returns once it is on the backend.
    pub(crate) fn flush(&self, v: &OpenVolume) -> Result<()> {
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

    /// The management view of volume `v`.
    pub(crate) fn info(&self, v: &OpenVolume) -> VolumeInfo {
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
            reserved_bytes: v.vol.reserved_bytes().unwrap_or_else(|e| {
                tracing::warn!(ino = v.ino, error = %e, "cannot count a volume's reserved bytes");
                0
            }),
            pending_backend_bytes: pending,
            pending_backend_since: v.vol.not_on_backend_since(),
            commits: s.commits,
            commit_rounds: s.commit_rounds,
            wal_rounds: s.wal_rounds,
            expected_commits: s.expected_commits,
            clusters_written: s.clusters_written,
            clusters_unmapped: s.clusters_unmapped,
            scos_sealed: s.scos_sealed,
            cache_hits: s.cache_hits,
            cache_misses: s.cache_misses,
            cluster_cache_hits: s.cluster_cache_hits,
            tlogs_replayed: s.tlogs_replayed,
            applied_tlog: s.applied_tlog,
            checkpoint_tlog: s.checkpoint_tlog,
            corked_clusters: s.corked_clusters,
            scrub: v.vol.scrub_info().unwrap_or_else(|e| {
                tracing::warn!(ino = v.ino, error = %e, "cannot read a volume's scrub totals");
                Default::default()
            }),
        }
    }

    /// What the open volumes hold that the backend does not have yet: their bytes, and when
    /// the oldest change of them all was logged (volumes with local state are all open: the
    /// engine opens them at start).
    pub(crate) fn not_on_backend(&self) -> (u64, Option<std::time::SystemTime>) {
        let open: Vec<Arc<OpenVolume>> = self.open.lock().values().cloned().collect();
        let mut bytes = 0;
        let mut since: Option<std::time::SystemTime> = None;
        for v in open {
            let last = known_on_backend(&v.vol, self.rt.block_on(v.vol.backend_last_tlog()));
            let last_sco = v.vol.newest_sco_sealed_by(last);
            bytes += pending_bytes(&*self.fs, &v.dir, last, last_sco).unwrap_or_else(|e| {
                tracing::warn!(ino = v.ino, error = %e, "cannot measure a volume's upload backlog");
                0
            });
            if let Some(t) = v.vol.not_on_backend_since() {
                since = Some(since.map_or(t, |s| s.min(t)));
            }
        }
        (bytes, since)
    }

    /// Counters of the cluster cache shared by all volumes.
    pub(crate) fn cluster_cache_stats(&self) -> ClusterCacheStats {
        self.clusters.stats()
    }

    /// Counters of the map cache shared by all volumes (zeros when it is off).
    pub(crate) fn map_cache_stats(&self) -> MapCacheStats {
        self.maps.as_ref().map(|m| m.stats()).unwrap_or_default()
    }

    /// Stops every pipeline (engine shutdown); a pass in flight is abandoned (uploads are
    /// idempotent and redone by the next run).
    pub(crate) fn stop_all(&self) {
        for d in self.open.lock().values() {
            d.stop.send_replace(true);
        }
    }
}
