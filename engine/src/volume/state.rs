//! The [`Volume`] type and the state behind its lock: the open SCO and TLog, the SCO table
//! (the SCO cache as the volume sees it), the corked MetaDataStore, group-commit bookkeeping,
//! the halted flag. The methods are split by concern over the sibling files: `create`, `write`,
//! `log`, `read`, `commit`, `restart`, `evict`, `verify`, `mds` (the cork) and `backend`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use strata_backend::ObjectStore;

use crate::error::{Error, Result};
use crate::volume::cluster_cache::ClusterCache;
use crate::volume::commit::FsyncSite;
use crate::volume::deferred::Deferred;
use crate::volume::dirsync::DirSync;
use crate::volume::format::{
    ScoFooter, VolumeId, CLUSTER_SIZE_U64, SCO_FOOTER_LEN, SCO_HEADER_LEN,
};
use crate::volume::localfs::{LocalFile, LocalFs};
use crate::volume::mds::cork::Overlay;
use crate::volume::mds::store::Mds;
use crate::volume::options::VolumeOptions;

/// A sealed SCO as the SCO cache sees it.
#[derive(Debug)]
pub(super) struct ScoEntry {
    /// The TLog holding its ScoSealed entry: once the backend manifest names that TLog, the SCO
    /// (uploaded before it) is on the backend and its local file disposable.
    pub(super) tlog: u64,
    /// Clusters in the SCO.
    pub(super) clusters: u32,
    /// The local file is only a stub (the SCO header): the data is on the backend only.
    pub(super) evicted: bool,
    /// A local file (whole or stub) exists.
    pub(super) has_file: bool,
    /// Reads that touched the SCO (the eviction order: least-frequently-used first).
    pub(super) reads: AtomicU64,
    /// When it entered the cache (sealed, restored or found at restart): breaks ties, oldest
    /// first.
    pub(super) since: std::time::Instant,
}

impl ScoEntry {
    pub(super) fn new(tlog: u64, clusters: u32, evicted: bool) -> ScoEntry {
        ScoEntry {
            tlog,
            clusters,
            evicted,
            has_file: true,
            reads: AtomicU64::new(0),
            since: std::time::Instant::now(),
        }
    }

    /// Bytes an eviction frees from the cache: the whole SCO less the stub it leaves.
    pub(super) fn local_bytes_before_eviction(&self) -> u64 {
        ScoFooter::offset(self.clusters) + SCO_FOOTER_LEN as u64 - SCO_HEADER_LEN
    }

    /// Bytes of its local file: the whole SCO, the header stub once evicted, or nothing for a
    /// SCO a backend restart took from a checkpoint (no local file at all).
    pub(super) fn local_bytes(&self) -> u64 {
        if !self.has_file {
            0
        } else if self.evicted {
            SCO_HEADER_LEN
        } else {
            ScoFooter::offset(self.clusters) + SCO_FOOTER_LEN as u64
        }
    }
}

/// Where evicted SCOs are read back from: the volume's backend namespace.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) rt: tokio::runtime::Handle,
}

impl Remote {
    /// Runs `f` (a backend call) to completion from a blocking caller: on the engine's
    /// runtime, or in place on a worker of a multi-threaded one (`what` names the call in the
    /// error of a single-threaded runtime, which cannot wait).
    pub(super) fn block_on<F: std::future::Future>(&self, what: &str, f: F) -> Result<F::Output> {
        match tokio::runtime::Handle::try_current() {
            Err(_) => Ok(self.rt.block_on(f)),
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                Ok(tokio::task::block_in_place(|| self.rt.block_on(f)))
            }
            Ok(_) => Err(Error::Io(format!(
                "{what}: cannot wait for the backend on a single-threaded runtime"
            ))),
        }
    }
}

pub(super) struct OpenSco {
    pub(super) seq: u64,
    pub(super) file: Arc<dyn LocalFile>,
    pub(super) clusters: u32,
    pub(super) crc: u32,
    /// Clusters the write-ahead log holds that the file does not yet (`deferred.rs`).
    pub(super) deferred: Deferred,
    /// When the SCO was created: partial SCOs older than `SCO_Max_Age` are sealed for upload.
    pub(super) created: std::time::Instant,
}

pub(super) struct OpenTlog {
    pub(super) seq: u64,
    pub(super) file: Arc<dyn LocalFile>,
    pub(super) len: u64,
    /// CRC32C of every byte of the TLog so far.
    pub(super) crc: u32,
    /// Entries the write-ahead log holds that the file does not yet (`deferred.rs`).
    pub(super) deferred: Deferred,
    /// ScoSealed entries in this TLog.
    pub(super) scos: u32,
    /// When its first entry was written (None while it holds none): its entries are not on the
    /// backend until it is closed, so `SCO_Max_Age` is measured from here.
    pub(super) first_entry: Option<std::time::Instant>,
    /// Its header carries every flag this build writes (`TLOG_FLAG_UNMAP`,
    /// `TLOG_FLAG_HASHES`: this build made it): `Unmap` entries and BLAKE3 hashes may go in.
    pub(super) ours: bool,
}

pub(super) struct State {
    pub(super) size: u64,
    /// The corked MetaDataStore entries (the rest is in redb).
    pub(super) ov: Overlay,
    /// Mapped clusters (what `space_used` reports), kept up to date on every change.
    pub(super) mapped: u64,
    /// The newest TLog applied to redb, and the size after it.
    pub(super) applied_tlog: u64,
    pub(super) applied_size: u64,
    /// redb holds no cluster entry (lets writes skip the lookup that keeps `mapped` exact).
    pub(super) db_empty: bool,
    pub(super) sco: Option<OpenSco>,
    pub(super) tlog: OpenTlog,
    pub(super) next_sco: u64,
    /// Bumped by every completed change; a commit round makes everything up to it durable.
    pub(super) write_gen: u64,
    /// Names created or removed in `sco/` and `tlog/`, and how many are durable.
    pub(super) sco_dir: DirSync,
    pub(super) tlog_dir: DirSync,
    /// Sealed SCOs whose bytes are not known to be durable yet (all sealed in the open TLog):
    /// fdatasynced by the next commit round or, at the latest, before the TLog is closed.
    pub(super) unsynced: Vec<(u64, Arc<dyn LocalFile>)>,
    /// Cluster bytes logged per TLog, for the TLogs not known to be on the backend.
    pub(super) tlog_bytes: BTreeMap<u64, u64>,
    /// When the first entry of each TLog not known to be on the backend was logged (for
    /// TLogs a restart found, when their file was created): the recovery point's age.
    pub(super) tlog_since: BTreeMap<u64, std::time::SystemTime>,
    /// Every sealed SCO (the SCO cache).
    pub(super) scos: BTreeMap<u64, ScoEntry>,
    /// The newest TLog known to be named by the backend manifest (0: none known).
    pub(super) backend_tlog: u64,
    /// Clusters logged over the volume's life (as counted by the MetaDataStore, plus the
    /// corked TLogs): what a snapshot records to tell the bytes written between two.
    pub(super) logged: u64,
    /// The write-ahead log of small commits.
    pub(super) wal: crate::volume::wal::Wal,
}

pub(super) struct SyncState {
    pub(super) durable_gen: u64,
    pub(super) leader: bool,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) commit_rounds: AtomicU64,
    /// Commit rounds served by one fdatasync of the write-ahead log.
    pub(super) wal_rounds: AtomicU64,
    /// Writes after which a COMMIT was expected (`expected_commit.rs`).
    pub(super) expected_commits: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) clusters_written: AtomicU64,
    /// Mapped clusters unmapped (holes punched, zeros written).
    pub(super) clusters_unmapped: AtomicU64,
    pub(super) scos_sealed: AtomicU64,
    pub(super) restart_cut_bytes: AtomicU64,
    pub(super) cache_hits: AtomicU64,
    pub(super) cache_misses: AtomicU64,
    pub(super) cluster_cache_hits: AtomicU64,
    pub(super) scos_evicted: AtomicU64,
    pub(super) tlogs_replayed: AtomicU64,
    pub(super) checkpoint_tlog: AtomicU64,
    pub(super) checkpoints: AtomicU64,
    pub(super) checkpoint_pages: AtomicU64,
    /// Bytes of SCOs and TLogs uploaded to the backend (progress, for backpressure).
    pub(super) uploaded_bytes: AtomicU64,
}

/// A volume: a VM disk kept as 4 KiB clusters logged into SCOs and TLogs under one local
/// directory (`sco/`, `tlog/`). All methods are blocking and may be called from many threads.
///
/// Durability: [`Volume::write`] with `stable == false` may leave data in the page cache;
/// [`Volume::sync`] (and a stable write) returns only once every change made before it is on
/// stable local storage. See `FORMATS.md`.
pub(crate) struct Volume {
    pub(super) fs: Arc<dyn LocalFs>,
    pub(super) id: VolumeId,
    pub(super) opts: VolumeOptions,
    pub(super) sco_dir: PathBuf,
    pub(super) tlog_dir: PathBuf,
    pub(super) state: RwLock<State>,
    pub(super) sync: Mutex<SyncState>,
    pub(super) sync_cv: Condvar,
    /// Set after an I/O error that left the volume's files in an unknown state: every later
    /// operation fails until the volume is reopened (which replays and repairs).
    pub(super) halted: Mutex<Option<String>>,
    /// The SCO files kept open for reads (`open_files.rs`).
    pub(super) handles: Mutex<crate::volume::open_files::OpenFiles>,
    /// SCOs sealed under the lock whose writeback the writer starts once it let the lock go
    /// ([`Volume::start_sealed_writeback`]). Weak: a SCO made durable (or closed) meanwhile is
    /// skipped, and no file stays open for this list.
    pub(super) sealed: Mutex<Vec<std::sync::Weak<dyn LocalFile>>>,
    pub(super) counters: Counters,
    /// How many writes come between COMMITs (`expected_commit.rs`).
    pub(super) pattern: crate::volume::expected_commit::CommitPattern,
    pub(super) skip_fsync: Option<FsyncSite>,
    /// What the backend pipeline knows of the backend (serializes backups).
    pub(super) backend: tokio::sync::Mutex<crate::volume::backend::BackendState>,
    /// Where clusters of evicted SCOs are fetched from (set by [`Volume::set_backend`]).
    pub(super) remote: Mutex<Option<Remote>>,
    /// The epoch each TLog the manifest names was uploaded in (kept durably in the
    /// MetaDataStore before any SCO of those TLogs may be evicted; see `backend/keys.rs`).
    pub(super) epochs: RwLock<crate::volume::backend::keys::Epochs>,
    /// The owner epoch of this run, which the keys of everything this volume uploads carry (set
    /// by [`Volume::set_backend`]; 1 for a volume uploaded without one, in tests).
    pub(super) writer_epoch: AtomicU64,
    /// The content-addressed cache of clusters read from the backend, shared by the volumes of
    /// an engine (set by [`Volume::set_cluster_cache`]).
    pub(super) cluster_cache: Mutex<Option<Arc<ClusterCache>>>,
    /// The on-disk MetaDataStore.
    pub(super) mds: Mds,
    /// fsyncs redb made (added to `fsyncs`).
    pub(super) mds_syncs: Arc<AtomicU64>,
    /// Serializes uncorks.
    pub(super) uncork_lock: Mutex<()>,
    /// Held by a rollback: one at a time.
    pub(super) rollback_lock: Mutex<()>,
    /// The volumes this one reads from (a clone), oldest first (`volume/clone/`).
    pub(super) lineage: RwLock<crate::volume::clone::Lineage>,
    /// Where the ancestors' backend namespaces are (set by the registry).
    pub(super) ancestor_stores: Mutex<Option<crate::volume::clone::AncestorStores>>,
    /// The snapshot id of a template (0: not a template; `FREEZING` while it is made one).
    pub(super) template: AtomicU64,
    /// Compacted SCOs whose layout a read resolved (`volume/scrub/resolve.rs`).
    pub(super) sco_layouts: Mutex<crate::volume::scrub::resolve::Layouts>,
    /// Held by a scrub pass: one at a time.
    pub(super) scrub_lock: Mutex<()>,
    /// The objects a crash may have left were swept in this run (`volume/scrub/sweep.rs`).
    pub(super) swept: std::sync::atomic::AtomicBool,
    /// TLogs a pass of this run read and found nothing to drop in, with the count of their
    /// positions known gone then (`volume/scrub/tlogs.rs`): not read again until it grows.
    pub(super) tlogs_examined: Mutex<std::collections::HashMap<u64, u64>>,
    /// A TLog longer than this is closed at the next change ([`TLOG_ROLL_LEN`]; tests lower it).
    pub(super) tlog_roll_len: AtomicU64,
    /// Whole clusters of zeros written are unmapped instead of stored (`Zero_Detect`).
    pub(super) zero_detect: std::sync::atomic::AtomicBool,
    /// The ranges ALLOCATE reserved (cluster addresses), as `mds.redb` holds them.
    pub(super) reserved: Mutex<crate::volume::mds::ranges::Ranges>,
    /// Notified when a TLog closes: its SCOs and it can go to the backend now.
    pub(super) tlog_closed: tokio::sync::Notify,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("id", &self.id)
            .field("dir", &self.sco_dir.parent())
            .finish()
    }
}

impl Volume {
    /// The volume's id.
    pub(crate) fn id(&self) -> VolumeId {
        self.id
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.state.read().size
    }

    /// Bytes of data stored for the volume: live (mapped) clusters × 4 KiB. Never-written and
    /// dropped clusters take none; superseded cluster versions still in SCOs are not counted.
    pub(crate) fn space_used(&self) -> u64 {
        self.state.read().mapped * CLUSTER_SIZE_U64
    }

    /// The volume's options.
    pub(crate) fn options(&self) -> VolumeOptions {
        self.opts
    }

    pub(super) fn check_halted(&self) -> Result<()> {
        match &*self.halted.lock() {
            Some(m) => Err(Error::Io(format!(
                "volume {} halted after an earlier error: {m}",
                self.id
            ))),
            None => Ok(()),
        }
    }

    pub(super) fn halt(&self, e: &Error) {
        let mut h = self.halted.lock();
        if h.is_none() {
            tracing::error!(volume = %self.id, error = %e, "volume halted");
            *h = Some(e.to_string());
        }
    }

    /// Runs `f`; an error halts the volume (its files may be half-written: only a restart,
    /// which replays and verifies, may continue from there).
    pub(super) fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_halted()?;
        let r = f();
        if let Err(e) = &r {
            // Invalid arguments and an unreachable backend (a cluster of an evicted SCO could not
            // be fetched for a read-modify-write) happen before anything is written, and so does
            // a write refused because the volume is a template.
            if !matches!(e, Error::Invalid(_) | Error::Delay | Error::ReadOnly(_)) {
                self.halt(e);
            }
        }
        r
    }

    /// Sets the backend namespace clusters of evicted SCOs are read back from, the runtime
    /// that drives its requests, and the owner epoch of this run (what this volume uploads
    /// carries it in its keys). Without a backend, reading an evicted SCO is an error.
    pub(crate) fn set_backend(
        &self,
        store: Arc<dyn ObjectStore>,
        rt: tokio::runtime::Handle,
        epoch: u64,
    ) {
        self.writer_epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
        *self.remote.lock() = Some(Remote { store, rt });
    }

    /// Sets the cluster cache that reads of evicted SCOs go through (shared by all volumes).
    pub(crate) fn set_cluster_cache(&self, cache: Arc<ClusterCache>) {
        *self.cluster_cache.lock() = Some(cache);
    }

    /// Sets the cache of decoded map pages its lookups go through (shared by all volumes).
    pub(crate) fn set_map_cache(&self, cache: Arc<crate::volume::MapCache>) {
        self.mds.set_map_cache(cache);
    }
}
