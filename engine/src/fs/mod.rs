//! The [`Filesystem`] facade: blocking, `Send + Sync`, called from Ganesha's worker threads.
//!
//! Namespace changes are redb transactions (see `namespace/`). File data goes through
//! [`ObjectData`]; unstable writes keep their new size, mtime and change counter in memory
//! (`Pending`) until a commit, a stable write, a truncate or `sync_all` records them together
//! with the extents that hold the data, so a crash never shows a size whose data is missing.
//!
//! The facade's methods by family, one file each: `lookup` (reading the namespace), `modify`
//! (changing it), `io` (read, write, commit, open counts), `sync` (capacity, durability,
//! upload), `live` (loaded objects and their unstable attributes); `config`: [`EngineConfig`].

mod clones;
mod config;
mod extent_sweep;
mod fsck;

pub use self::clones::{CloneInfo, HiddenVolume};
mod io;
mod live;
mod lookup;
mod modify;
mod replay;
mod scrub;
mod snapshots;
mod space;
mod sync;
mod upload;
mod xattrs;

#[cfg(test)]
mod attr_tests;

pub use self::config::{BackendConfig, EngineConfig};
pub use self::fsck::{FsckOptions, QUARANTINE_PREFIX};
use self::live::Live;
pub(crate) use self::sync::host_name;
use self::upload::{FileSide, Uploader};
use crate::error::{io_err, Error, Result};
use crate::file_data::FileShared;
use crate::journal::{Journal, JOURNAL_DIR};
use crate::namespace::Namespace;
use crate::owner::{Claimant, OwnerRecord};
use crate::registry::{RegistryConfig, VolumeRegistry, VOLUMES_DIR};
use crate::types::*;
use crate::volume::VolumeOptions;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use strata_backend::{LocalStore, Namespaced, ObjectStore, S3Store};
use strata_filedriver::FileDriver;

/// Key prefix of regular files' extents on the backend.
pub const FILES_PREFIX: &str = "files/";

/// Name of the redb file in the data directory.
pub(crate) const METADATA_FILE: &str = "strata.redb";

/// Name of the FileDriver's cache directory in the data directory.
pub(crate) const EXTENT_CACHE_DIR: &str = "extent-cache";

/// What the embedding NFS server runs when an object changed other than through one of its
/// operations: the FSAL drops Ganesha's cached attributes of that handle.
pub type ChangeHook = Arc<dyn Fn(Handle) + Send + Sync>;

/// Where the [`ChangeHook`] is kept (its `Debug` says only whether one is set).
#[derive(Default)]
pub(super) struct HookSlot(pub(super) Mutex<Option<ChangeHook>>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HookSlot(set: {})", self.0.lock().is_some())
    }
}

/// Bits of a file extent's generation below the owner epoch (see [`first_generation`]).
pub(crate) const GEN_EPOCH_SHIFT: u32 = 40;

/// Loaded objects kept in memory beyond those in use or with pending writes.
const LIVE_LIMIT: usize = 4096;

/// Longest symlink target accepted, in bytes.
const TARGET_MAX: usize = 4096;

/// A redb storage backend chosen by the caller (tests put redb on a crash-simulating layer).
#[derive(Debug)]
struct BoxedBackend(Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for BoxedBackend {
    fn len(&self) -> std::result::Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::result::Result<(), std::io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> std::result::Result<(), std::io::Error> {
        self.0.close()
    }
}

/// How to open a [`Filesystem`] beyond its [`EngineConfig`] (tests and embedding).
#[derive(Debug, Default)]
pub struct OpenOptions {
    /// The object store to use instead of the one `config.backend` names. Files live under
    /// [`FILES_PREFIX`] inside it.
    pub store: Option<Arc<dyn ObjectStore>>,
    /// Where redb keeps its pages instead of `<data_dir>/strata.redb`.
    pub metadata_backend: Option<Box<dyn redb::StorageBackend>>,
    /// The local-file layer of volumes instead of the real filesystem (tests simulating a
    /// machine crash use a [`crate::volume::SimFs`]).
    pub volume_fs: Option<Arc<dyn crate::volume::LocalFs>>,
}

/// The filesystem facade. All methods block; none may be called from inside the engine's
/// tokio runtime. `Send + Sync`: call it from any number of threads.
#[derive(Debug)]
pub struct Filesystem {
    config: EngineConfig,
    ns: Arc<Namespace>,
    /// The backend's owner record as this start wrote it.
    owner: OwnerRecord,
    /// Regular files' driver, journal and pacing.
    files: Arc<FileShared>,
    /// Uploads regular files' data in the background (`upload.rs`).
    side: FileSide,
    uploader: Option<Uploader>,
    /// Scrub and GC passes every `Scrub_Interval` (`registry/scrub.rs`).
    scrubber: Option<crate::registry::Scrubber>,
    /// Open volumes (the data of `Kind::Volume` objects).
    /// Told when an object changed other than through an NFS operation (a rollback), so the
    /// NFS server drops what it cached of it (see [`Filesystem::set_change_hook`]).
    change_hook: HookSlot,
    /// The long operations (syncs, rollbacks, volume deletions) and their progress.
    jobs: Arc<crate::jobs::Jobs>,
    volumes: Arc<VolumeRegistry>,
    /// Loaded regular objects. Locked only to find or insert an entry, never across I/O.
    live: Arc<Mutex<HashMap<Ino, Arc<Live>>>>,
    /// Open counts (NFSv4 OPEN state) per object.
    opens: Mutex<HashMap<Ino, u32>>,
    /// Set by [`Filesystem::crash`]: drop without flushing anything.
    crashed: bool,
    rt: Option<tokio::runtime::Runtime>,
}

impl Filesystem {
    /// Opens (or creates) the filesystem described by `config`.
    pub fn open(config: EngineConfig) -> Result<Filesystem> {
        Filesystem::open_with(config, OpenOptions::default())
    }

    /// Opens with a caller-chosen object store and/or redb storage backend.
    pub fn open_with(config: EngineConfig, opts: OpenOptions) -> Result<Filesystem> {
        if crate::runtime::inside_runtime() {
            return Err(Error::Invalid(
                "the engine cannot be opened from inside a tokio runtime".into(),
            ));
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| io_err(format!("creating {}", config.data_dir.display()), e))?;
        let rt = crate::runtime::build()?;
        let (store, location) = connect_store(&config, &rt, opts.store)?;
        let vol_opts = VolumeOptions::new(
            config.sco_size,
            config.tlog_scos,
            config.checkpoint_tlogs.max(1),
        )?;
        let mut builder = redb::Builder::new();
        builder.set_cache_size(usize::try_from(config.metadata_cache_size).unwrap_or(usize::MAX));
        let ns_path = config.data_dir.join(METADATA_FILE);
        // A namespace created by this call and refused below goes again, so that the empty
        // data directory stays empty (for `strata restore`).
        let created = opts.metadata_backend.is_none() && !ns_path.exists();
        let db = match opts.metadata_backend {
            Some(b) => builder.create_with_backend(BoxedBackend(b))?,
            None => builder.create(&ns_path)?,
        };
        let ns = Arc::new(Namespace::open(db)?);
        // Before anything touches the backend: is it ours? (A refusal changes nothing there.)
        let claimant = Claimant {
            ns: &ns,
            label: format!("{}:{}", host_name(), config.data_dir.display()),
            location,
        };
        let owner = match rt.block_on(crate::owner::claim(&*store, &claimant)) {
            Ok(o) => o,
            Err(e) => {
                if created {
                    drop(ns);
                    let _ = std::fs::remove_file(&ns_path);
                }
                return Err(e);
            }
        };
        let images = crate::ns_backend::NsBackend::open(
            ns.clone(),
            store.clone(),
            rt.handle().clone(),
            owner.epoch,
            config.namespace_upload_interval,
        )?;
        let files_store: Arc<dyn ObjectStore> =
            Arc::new(Namespaced::new(store.clone(), FILES_PREFIX)?);
        let driver = FileDriver::open(
            files_store,
            strata_filedriver::Config {
                cache_dir: config.data_dir.join(EXTENT_CACHE_DIR),
                cache_bytes: config.extent_cache_size,
                first_gen: first_generation(owner.epoch)?,
            },
            rt.handle().clone(),
        )?;
        let local: Arc<dyn crate::volume::LocalFs> = match &opts.volume_fs {
            Some(f) => f.clone(),
            None => Arc::new(crate::volume::StdFs),
        };
        let journal = Journal::open(
            local,
            &config.data_dir.join(JOURNAL_DIR),
            ns.fsid(),
            config.file_write_buffer_size,
            ns.lsn_floor()?,
            None,
        )?;
        let journal = Arc::new(journal);
        // The namespace catches up with its journaled changes before anything reads it.
        ns.replay_journaled(&journal)?;
        ns.attach_journal(journal.clone());
        let files = Arc::new(FileShared::new(
            Arc::new(driver),
            journal,
            config.data_dir.clone(),
            crate::file_data::FilePolicy {
                hard: config.file_write_buffer_size,
                start_pct: config.write_throttle_start,
                stall: config.backend_stall_timeout,
                upload_delay: config.file_upload_delay,
                cache_bytes: config.extent_cache_size,
            },
        ));
        let live = Arc::new(Mutex::new(HashMap::new()));
        let side = FileSide::new(ns.clone(), live.clone(), files.clone(), images.clone());
        let jobs = Arc::new(crate::jobs::Jobs::open(ns.clone())?);
        let volumes = Arc::new(VolumeRegistry::new(
            RegistryConfig {
                dir: config.data_dir.join(VOLUMES_DIR),
                opts: vol_opts,
                max_age: config.sco_max_age,
                fs: opts.volume_fs,
                write_buffer: config.write_buffer_size,
                throttle_start: config.write_throttle_start,
                stall_timeout: config.backend_stall_timeout,
                sco_cache_size: config.sco_cache_size,
                cluster_cache_size: config.cluster_cache_size,
                map_cache_size: config.map_cache_size,
                scrub: crate::volume::scrub::ScrubOptions {
                    threshold: config.scrub_threshold as f64 / 100.0,
                    grace: config.gc_grace,
                    bandwidth: config.scrub_bandwidth,
                },
                scrub_interval: config.scrub_interval,
                zero_detect: config.zero_detect,
                epoch: owner.epoch,
            },
            ns.fsid(),
            store,
            rt.handle().clone(),
            jobs.clone(),
        ));
        let mut fs = Filesystem {
            config,
            ns,
            owner,
            files,
            side,
            uploader: None,
            scrubber: None,
            volumes,
            live,
            opens: Mutex::new(HashMap::new()),
            crashed: false,
            rt: Some(rt),
            change_hook: HookSlot::default(),
            jobs,
        };
        // Before any volume is deleted: a volume clones read is hidden, not deleted.
        fs.volumes.set_namespace(fs.ns.clone());
        fs.volumes.set_images(images);
        // Nothing is open after a restart: orphans left by the last run go now.
        for ino in fs.ns.orphans()? {
            fs.purge(ino);
        }
        // Committed file data not yet on the backend: back into the cache, uploaded below.
        fs.replay_journal()?;
        fs.uploader = Some(Uploader::start(fs.side.clone())?);
        // Clones a crash cut short go (or keep what was linked) before any volume opens.
        fs.volumes
            .finish_clones(|ino| Ok(fs.ns.get_ino(ino)?.is_some()))?;
        fs.reopen_local_volumes()?;
        fs.volumes.resume_deletions()?;
        for ino in fs.ns.unread_hidden()? {
            fs.volumes.delete_hidden(ino)?;
        }
        fs.scrubber = crate::registry::Scrubber::start(fs.volumes.clone(), fs.file_pass())?;
        tracing::info!(data_dir = %fs.config.data_dir.display(), fsid = fs.ns.fsid(), "strata engine open");
        Ok(fs)
    }

    /// Test knob: commit redb transactions without fsync. Only for proving that the crash
    /// tests notice a missing fsync; never use it otherwise.
    #[doc(hidden)]
    pub fn set_unsafe_no_sync(&self, on: bool) {
        self.ns.set_unsafe_no_sync(on);
        self.files.journal.set_unsafe_no_sync(on);
    }

    /// Stops without flushing anything, as a crash would (tests). Unlike a plain drop, nothing
    /// pending is committed; the runtime stops without waiting for its tasks.
    pub fn crash(mut self) {
        self.crashed = true;
        drop(self);
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// This namespace's random identity (also the generation of every handle): stable across
    /// restarts, different for every newly created namespace. Usable as the NFS fsid.
    pub fn fsid(&self) -> u64 {
        self.ns.fsid()
    }

    /// The long operations of this run (syncs, rollbacks, volume deletions).
    pub(crate) fn jobs(&self) -> &Arc<crate::jobs::Jobs> {
        &self.jobs
    }

    /// The backend's owner record as this start wrote it (this gateway; the epoch of this run).
    pub fn owner(&self) -> &OwnerRecord {
        &self.owner
    }
}

impl Drop for Filesystem {
    fn drop(&mut self) {
        if !self.crashed && !crate::runtime::inside_runtime() {
            if let Err(e) = self.sync_all() {
                tracing::warn!(error = %e, "final sync failed");
            }
        }
        drop(self.scrubber.take());
        if let Some(mut u) = self.uploader.take() {
            u.stop();
        }
        self.volumes.stop_all();
        if let Some(rt) = self.rt.take() {
            if crate::runtime::inside_runtime() {
                rt.shutdown_background();
            } else {
                // Tasks stop at their next await: nothing of this engine writes after it is
                // gone (a reopened engine must be the only writer of its volumes).
                rt.shutdown_timeout(std::time::Duration::from_secs(10));
            }
        }
    }
}

/// The object store `config` names (or the one the caller gave), and where it is for messages.
pub(crate) fn connect_store(
    config: &EngineConfig,
    rt: &tokio::runtime::Runtime,
    given: Option<Arc<dyn ObjectStore>>,
) -> Result<(Arc<dyn ObjectStore>, String)> {
    let mut location = config.backend.location();
    let store: Arc<dyn ObjectStore> = match given {
        Some(s) => {
            location.push_str(" (through a store given by the caller)");
            s
        }
        None => match &config.backend {
            BackendConfig::Local { dir } => Arc::new(LocalStore::open(dir.clone())?),
            BackendConfig::S3(s3) => Arc::new(rt.block_on(S3Store::connect((**s3).clone()))?),
        },
    };
    Ok((crate::test_knobs::slow_backend(store), location))
}

/// The first generation of file extent objects this run hands out: the owner epoch (bumped by
/// every start) above [`GEN_EPOCH_SHIFT`] bits of a counter, so no two runs share one.
fn first_generation(epoch: u64) -> Result<u64> {
    if epoch >= 1 << (64 - GEN_EPOCH_SHIFT) {
        return Err(Error::Io(format!(
            "owner epoch {epoch} too large for file extent generations"
        )));
    }
    Ok(epoch << GEN_EPOCH_SHIFT)
}

// The facade is shared by Ganesha's worker threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Filesystem>();
};
