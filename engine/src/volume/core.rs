//! One volume: the write path (clusters appended to the open SCO, one TLog entry each), the
//! in-memory MetaDataStore, group commit, reads, resize and local restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::cluster_cache::ClusterCache;
use super::dirsync::DirSync;
use super::format::{
    md5, parse_seq_name, sco_name, sco_stub_name, tlog_name, Entry, FormatError, ScoFooter,
    ScoHeader, TlogHeader, VolumeId, CLUSTER_SIZE, CLUSTER_SIZE_U64, MAX_SCO_CLUSTERS, MAX_SCO_LEN,
    MAX_TLOG_LEN, SCO_FOOTER_LEN, SCO_HEADER_LEN, SCO_STUB_SUFFIX, TLOG_ENTRY_LEN, TLOG_HEADER_LEN,
};
use super::localfs::{LocalFile, LocalFs};
use super::mds::{Loc, Mds, Op};
use crate::error::{Error, Result};
use strata_backend::ObjectStore;

/// Largest volume size accepted (1 PiB): keeps every offset computation far from overflow.
pub const MAX_VOLUME_SIZE: u64 = 1 << 50;

/// Most clusters of an evicted SCO fetched by one ranged GET (1 MiB).
const REMOTE_RUN: u64 = 256;

/// Default SCO size: 4 MiB (`SCO_Size`).
pub const DEFAULT_SCO_SIZE: u64 = 4 << 20;
/// Default number of SCOs covered by one TLog (`TLog_SCOs`).
pub const DEFAULT_TLOG_SCOS: u32 = 16;

/// Tunables of a volume. They may change between restarts: every SCO and TLog describes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeOptions {
    /// Clusters per SCO (`SCO_Size` / 4 KiB), at least 1.
    pub sco_clusters: u32,
    /// SCOs per TLog (`TLog_SCOs`), at least 1.
    pub tlog_scos: u32,
    /// A metadata checkpoint is written to the backend once at least this many TLogs were
    /// applied to the MetaDataStore since the last one (at least 1).
    pub checkpoint_tlogs: u32,
}

/// Default TLogs between metadata checkpoints.
pub const DEFAULT_CHECKPOINT_TLOGS: u32 = 64;

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            sco_clusters: (DEFAULT_SCO_SIZE / CLUSTER_SIZE_U64) as u32,
            tlog_scos: DEFAULT_TLOG_SCOS,
            checkpoint_tlogs: DEFAULT_CHECKPOINT_TLOGS,
        }
    }
}

impl VolumeOptions {
    /// Options from the configuration parameters `SCO_Size` (bytes, a multiple of 4 KiB between
    /// 4 KiB and 1 GiB) and `TLog_SCOs` (1..=65536).
    pub fn from_params(sco_size: u64, tlog_scos: u32) -> Result<VolumeOptions> {
        if sco_size == 0 || !sco_size.is_multiple_of(CLUSTER_SIZE_U64) || sco_size > 1 << 30 {
            return Err(Error::Invalid(format!(
                "SCO_Size {sco_size}: must be a multiple of 4K between 4K and 1G"
            )));
        }
        if tlog_scos == 0 || tlog_scos > 65536 {
            return Err(Error::Invalid(format!(
                "TLog_SCOs {tlog_scos}: must be between 1 and 65536"
            )));
        }
        Ok(VolumeOptions {
            sco_clusters: (sco_size / CLUSTER_SIZE_U64) as u32,
            tlog_scos,
            checkpoint_tlogs: DEFAULT_CHECKPOINT_TLOGS,
        })
    }

    fn check(&self) -> Result<()> {
        if self.sco_clusters == 0
            || self.tlog_scos == 0
            || self.checkpoint_tlogs == 0
            || self.sco_clusters > 1 << 18
        {
            return Err(Error::Invalid(format!("bad volume options {self:?}")));
        }
        Ok(())
    }
}

/// Every place where the VolumeDriver fsyncs. Tests switch each off in turn to prove that each
/// one is needed (see `FORMATS.md`, "Durability contract").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsyncSite {
    /// Commit: fdatasync of the open SCO.
    CommitSco,
    /// Commit: fdatasync of the open TLog.
    CommitTlog,
    /// Commit: fsync of the `sco/` directory after a SCO was created or removed.
    CommitScoDir,
    /// Commit: fsync of the `tlog/` directory after a TLog was created.
    CommitTlogDir,
    /// Closing a TLog: fdatasync of every SCO it sealed that is not durable yet, before the
    /// TLogClosed entry (a closed TLog only names durable SCOs).
    SealSco,
    /// Closing a TLog: fsync of the `sco/` directory (when a SCO was created since the last
    /// fsync of it) before the TLogClosed entry.
    SealScoDir,
    /// Commit: fdatasync of the SCOs sealed since the last commit that are not durable yet.
    CommitSealedSco,
    /// Closing a TLog: fdatasync of the TLog (with its TLogClosed entry) before the next TLog.
    CloseTlog,
    /// Creating a TLog: fdatasync of its header before any entry is written.
    CreateTlog,
    /// Restart: fdatasync of the last TLog after cutting its torn tail, before anything is
    /// written at the cut. Not in [`FsyncSite::ALL`]: since every cluster and seal of the open
    /// TLog is verified at restart, a cut tail that reappears after another crash is cut again
    /// (or holds only data never acknowledged); it is kept so that a cut is final.
    RestartCut,
    /// Uncork: the MetaDataStore (redb) commit that applies TLogs now on the backend, before
    /// their local files are deleted.
    MdsCommit,
    /// Eviction: fsync of the `sco/` directory after a stub was renamed over a SCO, so that the
    /// space freed stays free. Not in [`FsyncSite::ALL`]: the whole SCO and its stub are both
    /// valid after a crash.
    EvictScoDir,
}

impl FsyncSite {
    /// Every site the crash tests prove necessary (all but [`FsyncSite::RestartCut`]).
    pub const ALL: [FsyncSite; 10] = [
        FsyncSite::CommitSealedSco,
        FsyncSite::CommitSco,
        FsyncSite::CommitTlog,
        FsyncSite::CommitScoDir,
        FsyncSite::CommitTlogDir,
        FsyncSite::SealSco,
        FsyncSite::SealScoDir,
        FsyncSite::CloseTlog,
        FsyncSite::CreateTlog,
        FsyncSite::MdsCommit,
    ];
}

/// Counters of one volume since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeStats {
    /// Calls of [`Volume::sync`] (COMMITs and stable writes).
    pub commits: u64,
    /// Group-commit rounds: each fsyncs for every commit that joined before it started.
    pub commit_rounds: u64,
    /// fsync/fdatasync calls made (all sites).
    pub fsyncs: u64,
    /// Clusters appended to SCOs.
    pub clusters_written: u64,
    /// SCOs sealed.
    pub scos_sealed: u64,
    /// Bytes of the last TLog that the opening restart cut (a torn or unsynced tail).
    pub restart_cut_bytes: u64,
    /// Clusters read from SCOs in the local SCO cache.
    pub cache_hits: u64,
    /// Clusters read from the backend (ranged GETs) because their SCO was evicted.
    pub cache_misses: u64,
    /// Clusters of evicted SCOs served by the cluster cache instead of the backend.
    pub cluster_cache_hits: u64,
    /// SCOs evicted from the local SCO cache.
    pub scos_evicted: u64,
    /// TLogs replayed when the volume was opened (local TLogs after `applied_tlog`, or on a
    /// backend restart the TLogs after the checkpoint).
    pub tlogs_replayed: u64,
    /// Cluster entries still corked in memory (their TLog is not on the backend yet).
    pub corked_clusters: u64,
    /// The newest TLog whose effect is in the on-disk MetaDataStore (0: none).
    pub applied_tlog: u64,
    /// The newest metadata checkpoint on the backend as this volume knows it (0: none).
    pub checkpoint_tlog: u64,
    /// Metadata checkpoints written since the volume was opened.
    pub checkpoints: u64,
    /// Checkpoint pages written or removed since the volume was opened.
    pub checkpoint_pages: u64,
}

/// A sealed SCO as the SCO cache sees it.
#[derive(Debug)]
struct ScoEntry {
    /// The TLog holding its ScoSealed entry: once the backend manifest names that TLog, the SCO
    /// (uploaded before it) is on the backend and its local file disposable.
    tlog: u64,
    /// Clusters in the SCO.
    clusters: u32,
    /// The local file is only a stub (the SCO header): the data is on the backend only.
    evicted: bool,
    /// A local file (whole or stub) exists.
    has_file: bool,
    /// Reads that touched the SCO (the eviction order: least-frequently-used first).
    reads: AtomicU64,
    /// When it entered the cache (sealed, restored or found at restart): breaks ties, oldest
    /// first.
    since: std::time::Instant,
}

impl ScoEntry {
    fn new(tlog: u64, clusters: u32, evicted: bool) -> ScoEntry {
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
    fn local_bytes_before_eviction(&self) -> u64 {
        ScoFooter::offset(self.clusters) + SCO_FOOTER_LEN as u64 - SCO_HEADER_LEN
    }

    /// Bytes of its local file: the whole SCO, the header stub once evicted, or nothing for a
    /// SCO a backend restart took from a checkpoint (no local file at all).
    fn local_bytes(&self) -> u64 {
        if !self.has_file {
            0
        } else if self.evicted {
            SCO_HEADER_LEN
        } else {
            ScoFooter::offset(self.clusters) + SCO_FOOTER_LEN as u64
        }
    }
}

/// A disposable SCO that [`Volume::evict_sco`] may evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionCandidate {
    /// The SCO's sequence number.
    pub sco: u64,
    /// Reads that touched it since the volume was opened.
    pub reads: u64,
    /// When it entered the cache.
    pub since: std::time::Instant,
    /// Bytes eviction frees.
    pub bytes: u64,
}

/// Where evicted SCOs are read back from: the volume's backend namespace.
#[derive(Debug, Clone)]
struct Remote {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
}

/// The corked part of the MetaDataStore: the effect of TLogs not yet applied to `mds.redb`
/// (not yet known to be on the backend). Lookups consult it first.
#[derive(Debug, Default)]
struct Overlay {
    /// Per TLog, its changes in log order (what is applied to redb when the cork is lifted).
    ops: BTreeMap<u64, Vec<Op>>,
    /// The newest location of every address changed here, with the TLog that logged it.
    by_addr: BTreeMap<u64, (Loc, u64)>,
    /// A shrink not yet applied: redb entries at or past this address are stale (holes),
    /// unless `by_addr` has a newer one.
    trim: Option<u64>,
}

impl Overlay {
    fn push(&mut self, tlog: u64, op: Op) {
        self.ops.entry(tlog).or_default().push(op);
    }
}

struct OpenSco {
    seq: u64,
    file: Arc<dyn LocalFile>,
    clusters: u32,
    crc: u32,
    /// When the SCO was created: partial SCOs older than `SCO_Max_Age` are sealed for upload.
    created: std::time::Instant,
}

struct OpenTlog {
    seq: u64,
    file: Arc<dyn LocalFile>,
    len: u64,
    /// CRC32C of every byte of the TLog so far.
    crc: u32,
    /// ScoSealed entries in this TLog.
    scos: u32,
    /// When its first entry was written (None while it holds none): its entries are not on the
    /// backend until it is closed, so `SCO_Max_Age` is measured from here.
    first_entry: Option<std::time::Instant>,
}

struct State {
    size: u64,
    /// The corked MetaDataStore entries (the rest is in redb).
    ov: Overlay,
    /// Mapped clusters (what `space_used` reports), kept up to date on every change.
    mapped: u64,
    /// The newest TLog applied to redb, and the size after it.
    applied_tlog: u64,
    applied_size: u64,
    /// redb holds no cluster entry (lets writes skip the lookup that keeps `mapped` exact).
    db_empty: bool,
    sco: Option<OpenSco>,
    tlog: OpenTlog,
    next_sco: u64,
    /// Bumped by every completed change; a commit round makes everything up to it durable.
    write_gen: u64,
    /// Names created or removed in `sco/` and `tlog/`, and how many are durable.
    sco_dir: DirSync,
    tlog_dir: DirSync,
    /// Sealed SCOs whose bytes are not known to be durable yet (all sealed in the open TLog):
    /// fdatasynced by the next commit round or, at the latest, before the TLog is closed.
    unsynced: Vec<(u64, Arc<dyn LocalFile>)>,
    /// Cluster bytes logged per TLog, for the TLogs not known to be on the backend.
    tlog_bytes: BTreeMap<u64, u64>,
    /// Every sealed SCO (the SCO cache).
    scos: BTreeMap<u64, ScoEntry>,
    /// The newest TLog known to be named by the backend manifest (0: none known).
    backend_tlog: u64,
}

struct SyncState {
    durable_gen: u64,
    leader: bool,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    commit_rounds: AtomicU64,
    fsyncs: AtomicU64,
    clusters_written: AtomicU64,
    scos_sealed: AtomicU64,
    restart_cut_bytes: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cluster_cache_hits: AtomicU64,
    scos_evicted: AtomicU64,
    tlogs_replayed: AtomicU64,
    checkpoint_tlog: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_pages: AtomicU64,
    /// Bytes of SCOs and TLogs uploaded to the backend (progress, for backpressure).
    uploaded_bytes: AtomicU64,
}

/// A volume: a VM disk kept as 4 KiB clusters logged into SCOs and TLogs under one local
/// directory (`sco/`, `tlog/`). All methods are blocking and may be called from many threads.
///
/// Durability: [`Volume::write`] with `stable == false` may leave data in the page cache;
/// [`Volume::sync`] (and a stable write) returns only once every change made before it is on
/// stable local storage. See `FORMATS.md`.
pub struct Volume {
    fs: Arc<dyn LocalFs>,
    id: VolumeId,
    opts: VolumeOptions,
    sco_dir: PathBuf,
    tlog_dir: PathBuf,
    state: RwLock<State>,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    /// Set after an I/O error that left the volume's files in an unknown state: every later
    /// operation fails until the volume is reopened (which replays and repairs).
    halted: Mutex<Option<String>>,
    handles: Mutex<HashMap<u64, Arc<dyn LocalFile>>>,
    counters: Counters,
    skip_fsync: Option<FsyncSite>,
    /// What the backend pipeline knows of the backend (serializes backups).
    pub(super) backend: tokio::sync::Mutex<super::backup::BackendState>,
    /// Where clusters of evicted SCOs are fetched from (set by [`Volume::set_backend`]).
    remote: Mutex<Option<Remote>>,
    /// The content-addressed cache of clusters read from the backend, shared by the volumes of
    /// an engine (set by [`Volume::set_cluster_cache`]).
    cluster_cache: Mutex<Option<Arc<ClusterCache>>>,
    /// The on-disk MetaDataStore.
    mds: Mds,
    /// fsyncs redb made (added to `fsyncs`).
    mds_syncs: Arc<AtomicU64>,
    /// Serializes uncorks.
    uncork_lock: Mutex<()>,
    /// A TLog longer than this is closed at the next change ([`TLOG_ROLL_LEN`]; tests lower it).
    tlog_roll_len: AtomicU64,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("id", &self.id)
            .field("dir", &self.sco_dir.parent())
            .finish()
    }
}

pub(super) fn io_err(what: impl std::fmt::Display, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace,
        _ => Error::Io(format!("{what}: {e}")),
    }
}

pub(super) fn fmt_err(e: FormatError) -> Error {
    Error::Format(e)
}

/// Reads a whole local SCO or TLog. A file longer than the largest either may be
/// ([`MAX_TLOG_LEN`], above [`MAX_SCO_LEN`]) is an error, not an allocation of whatever
/// length the file claims; memory that cannot be had is an error too, not an abort.
pub(super) fn read_all(f: &dyn LocalFile, what: &str) -> Result<Vec<u8>> {
    let len = f.file_len().map_err(|e| io_err(what, e))?;
    let max = MAX_SCO_LEN.max(MAX_TLOG_LEN);
    if len > max {
        return Err(Error::Io(format!(
            "{what}: {len} bytes, more than any SCO or TLog may hold ({max})"
        )));
    }
    let len = usize::try_from(len).map_err(|_| Error::Io(format!("{what}: too large")))?;
    let mut b = Vec::new();
    b.try_reserve_exact(len)
        .map_err(|e| Error::Io(format!("{what}: cannot allocate {len} bytes: {e}")))?;
    b.resize(len, 0);
    let n = f.read_at(&mut b, 0).map_err(|e| io_err(what, e))?;
    b.truncate(n);
    Ok(b)
}

/// What a read-modify-write needs of a cluster it partly overwrites.
enum Base {
    /// Its current bytes (zeros if never written).
    Have(Vec<u8>),
    /// It lives in an evicted SCO: fetched from the backend with the volume lock released.
    Fetch(Loc),
}

/// Clusters fetched from the backend for a read-modify-write: address -> (the location they
/// were read from, their bytes). Used only while the address still maps to that location.
type Fetched = HashMap<u64, (Loc, Vec<u8>)>;

/// A TLog longer than this is closed at the next write, whatever its SCO count: half of what
/// a reader accepts ([`MAX_TLOG_LEN`]).
const TLOG_ROLL_LEN: u64 = MAX_TLOG_LEN / 2;

/// Rounds of fetching a read-modify-write may take (a cluster only moves to another evicted
/// SCO by a concurrent write plus an upload and an eviction in between: rare).
const RMW_ATTEMPTS: usize = 8;

/// What replaying TLogs builds up.
#[derive(Default)]
struct Replay {
    size: u64,
    /// MetaDataStore changes, with the TLog that logged each, in log order.
    ops: Vec<(u64, Op)>,
    /// Per SCO: clusters seen so far (the next expected offset).
    sco_clusters: BTreeMap<u64, u32>,
    sealed: BTreeSet<u64>,
    /// The TLog being replayed.
    cur_tlog: u64,
    /// Sealed SCOs: sequence -> (sealing TLog, clusters, evicted).
    sealed_in: BTreeMap<u64, (u64, u32, bool)>,
}

impl Volume {
    /// Creates a new, empty volume of `size` bytes in `dir` (which must not hold a volume yet).
    /// Durable when it returns.
    pub fn create(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        size: u64,
    ) -> Result<Volume> {
        Self::create_inner(fs, dir, id, opts, size, None)
    }

    pub(crate) fn create_inner(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        size: u64,
        skip_fsync: Option<FsyncSite>,
    ) -> Result<Volume> {
        opts.check()?;
        if size > MAX_VOLUME_SIZE {
            return Err(Error::Invalid(format!(
                "volume size {size} above {MAX_VOLUME_SIZE}"
            )));
        }
        let (sco_dir, tlog_dir) = prepare_empty_dir(&*fs, dir)?;
        let mds_syncs = Arc::new(AtomicU64::new(0));
        let mds = Mds::open(
            &*fs,
            dir,
            true,
            skip_fsync == Some(FsyncSite::MdsCommit),
            mds_syncs.clone(),
        )?;
        // The first TLog is created directly (there is no previous one to close).
        let path = tlog_dir.join(tlog_name(1));
        let file = fs
            .create_new(&path)
            .map_err(|e| io_err(path.display(), e))?;
        let header = TlogHeader { volume: id, seq: 1 }.encode();
        file.write_at(&header, 0)
            .map_err(|e| io_err(path.display(), e))?;
        let tlog = OpenTlog {
            seq: 1,
            file,
            len: TLOG_HEADER_LEN as u64,
            crc: crc32c::crc32c(&header),
            scos: 0,
            first_entry: None,
        };
        let vol = Volume::assemble(
            fs,
            id,
            opts,
            (sco_dir, tlog_dir),
            State {
                size: 0,
                ov: Overlay::default(),
                mapped: 0,
                applied_tlog: 0,
                applied_size: 0,
                db_empty: true,
                sco: None,
                tlog,
                next_sco: 1,
                write_gen: 0,
                sco_dir: DirSync::dirty(),
                tlog_dir: DirSync::dirty(),
                unsynced: Vec::new(),
                tlog_bytes: BTreeMap::new(),
                scos: BTreeMap::new(),
                backend_tlog: 0,
            },
            skip_fsync,
            (mds, mds_syncs),
        );
        {
            let mut st = vol.state.write();
            vol.fsync(FsyncSite::CreateTlog, &*st.tlog.file, "tlog create")?;
            if size > 0 {
                vol.tlog_append(&mut st, &[Entry::Resize { size }])?;
                vol.set_size(&mut st, 1, size)?;
            }
        }
        vol.commit_round()?;
        Ok(vol)
    }

    fn assemble(
        fs: Arc<dyn LocalFs>,
        id: VolumeId,
        opts: VolumeOptions,
        (sco_dir, tlog_dir): (PathBuf, PathBuf),
        st: State,
        skip_fsync: Option<FsyncSite>,
        (mds, mds_syncs): (Mds, Arc<AtomicU64>),
    ) -> Volume {
        let gen = st.write_gen;
        Volume {
            fs,
            id,
            opts,
            sco_dir,
            tlog_dir,
            state: RwLock::new(st),
            sync: Mutex::new(SyncState {
                durable_gen: gen,
                leader: false,
            }),
            sync_cv: Condvar::new(),
            halted: Mutex::new(None),
            handles: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            skip_fsync,
            backend: tokio::sync::Mutex::new(Default::default()),
            remote: Mutex::new(None),
            cluster_cache: Mutex::new(None),
            mds,
            mds_syncs,
            uncork_lock: Mutex::new(()),
            tlog_roll_len: AtomicU64::new(TLOG_ROLL_LEN),
        }
    }

    /// The volume's id.
    pub fn id(&self) -> VolumeId {
        self.id
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.state.read().size
    }

    /// Bytes of data stored for the volume: live (mapped) clusters × 4 KiB. Never-written and
    /// dropped clusters take none; superseded cluster versions still in SCOs are not counted.
    pub fn space_used(&self) -> u64 {
        self.state.read().mapped * CLUSTER_SIZE_U64
    }

    /// Counters since the volume was opened.
    pub fn stats(&self) -> VolumeStats {
        let c = &self.counters;
        let (corked, applied) = {
            let st = self.state.read();
            (st.ov.by_addr.len() as u64, st.applied_tlog)
        };
        VolumeStats {
            commits: c.commits.load(Ordering::Relaxed),
            commit_rounds: c.commit_rounds.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed) + self.mds_syncs.load(Ordering::Relaxed),
            clusters_written: c.clusters_written.load(Ordering::Relaxed),
            scos_sealed: c.scos_sealed.load(Ordering::Relaxed),
            restart_cut_bytes: c.restart_cut_bytes.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            cluster_cache_hits: c.cluster_cache_hits.load(Ordering::Relaxed),
            scos_evicted: c.scos_evicted.load(Ordering::Relaxed),
            tlogs_replayed: c.tlogs_replayed.load(Ordering::Relaxed),
            corked_clusters: corked,
            applied_tlog: applied,
            checkpoint_tlog: c.checkpoint_tlog.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            checkpoint_pages: c.checkpoint_pages.load(Ordering::Relaxed),
        }
    }

    fn check_halted(&self) -> Result<()> {
        match &*self.halted.lock() {
            Some(m) => Err(Error::Io(format!(
                "volume {} halted after an earlier error: {m}",
                self.id
            ))),
            None => Ok(()),
        }
    }

    fn halt(&self, e: &Error) {
        let mut h = self.halted.lock();
        if h.is_none() {
            tracing::error!(volume = %self.id, error = %e, "volume halted");
            *h = Some(e.to_string());
        }
    }

    /// Runs `f`; an error halts the volume (its files may be half-written: only a restart,
    /// which replays and verifies, may continue from there).
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_halted()?;
        let r = f();
        if let Err(e) = &r {
            // Invalid arguments and an unreachable backend (a cluster of an evicted SCO could not
            // be fetched for a read-modify-write) happen before anything is written.
            if !matches!(e, Error::Invalid(_) | Error::Delay) {
                self.halt(e);
            }
        }
        r
    }

    fn fsync(&self, site: FsyncSite, f: &dyn LocalFile, what: &str) -> Result<()> {
        if self.skip_fsync == Some(site) {
            return Ok(());
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        f.sync_data()
            .map_err(|e| io_err(format!("{what}: fdatasync"), e))
    }

    fn fsync_dir(&self, site: FsyncSite, dir: &Path) -> Result<()> {
        if self.skip_fsync == Some(site) {
            return Ok(());
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fs
            .sync_dir(dir)
            .map_err(|e| io_err(format!("{}: fsync", dir.display()), e))
    }

    fn sco_handle(&self, seq: u64) -> Result<Arc<dyn LocalFile>> {
        let mut h = self.handles.lock();
        if let Some(f) = h.get(&seq) {
            return Ok(f.clone());
        }
        let path = self.sco_dir.join(sco_name(seq));
        let f = self.fs.open(&path).map_err(|e| io_err(path.display(), e))?;
        // A crude bound on open descriptors; an LRU comes with the SCO cache.
        if h.len() >= 256 {
            h.clear();
        }
        h.insert(seq, f.clone());
        Ok(f)
    }

    /// Reads `buf.len()` bytes at `within` of the cluster at `loc` and on (a run of clusters
    /// contiguous in one SCO, in the local SCO cache). A cluster of an evicted SCO is read
    /// through the cluster cache and the backend ([`Volume::read_remote`]).
    fn read_loc(&self, st: &State, loc: &Loc, buf: &mut [u8], within: u64) -> Result<()> {
        if st.scos.get(&loc.sco).is_some_and(|e| e.evicted) {
            return self.read_remote(std::slice::from_ref(loc), buf, within);
        }
        let f = self.sco_handle(loc.sco)?;
        let off = ScoFooter::offset(loc.offset) + within;
        let n = f
            .read_at(buf, off)
            .map_err(|e| io_err(format!("SCO {}", sco_name(loc.sco)), e))?;
        if n != buf.len() {
            return Err(Error::Io(format!(
                "SCO {}: short read at cluster {} (the SCO is truncated)",
                sco_name(loc.sco),
                loc.offset
            )));
        }
        Ok(())
    }

    /// The current bytes of cluster `ca` for a read-modify-write, or, when it lives in an
    /// evicted SCO and is not in `fetched` (at the same location), that it must be fetched.
    fn rmw_base(&self, st: &State, ca: u64, fetched: &Fetched) -> Result<Base> {
        let Some(loc) = self.lookup(st, ca)? else {
            return Ok(Base::Have(vec![0u8; CLUSTER_SIZE]));
        };
        if st.scos.get(&loc.sco).is_some_and(|e| e.evicted) {
            return Ok(match fetched.get(&ca) {
                Some((l, c)) if *l == loc => Base::Have(c.clone()),
                _ => Base::Fetch(loc),
            });
        }
        let mut c = vec![0u8; CLUSTER_SIZE];
        self.read_loc(st, &loc, &mut c, 0)?;
        Ok(Base::Have(c))
    }

    /// Runs `f` under the volume's write lock, guarded (an error there halts the volume). `f`
    /// returns the clusters it must read-modify-write that live in evicted SCOs, having changed
    /// nothing; they are fetched from the backend with the lock released (writers never wait
    /// for the backend) and `f` runs again with them. A failed fetch changed nothing, so it
    /// does not halt the volume: a backend that cannot be reached is `Delay`, a bad object an
    /// error for this call only. Each attempt checks, under the lock, that the volume was not
    /// halted (a failed fsync, a deletion) while the lock was released.
    fn with_rmw<T>(
        &self,
        mut f: impl FnMut(&mut State, &Fetched) -> Result<std::result::Result<T, Vec<(u64, Loc)>>>,
    ) -> Result<T> {
        let mut fetched = Fetched::new();
        for _ in 0..RMW_ATTEMPTS {
            let attempt = self.guarded(|| {
                let mut st = self.state.write();
                self.check_halted()?;
                f(&mut st, &fetched)
            })?;
            let need = match attempt {
                Ok(v) => return Ok(v),
                Err(need) => need,
            };
            for (ca, loc) in need {
                let mut c = vec![0u8; CLUSTER_SIZE];
                self.read_remote(std::slice::from_ref(&loc), &mut c, 0)?;
                fetched.insert(ca, (loc, c));
            }
        }
        // Each attempt found its clusters moved to other evicted SCOs: give the client a retry.
        Err(Error::Delay)
    }

    /// The MetaDataStore entry of cluster `ca`: the corked overlay first, then redb.
    fn lookup(&self, st: &State, ca: u64) -> Result<Option<Loc>> {
        if let Some((l, _)) = st.ov.by_addr.get(&ca) {
            return Ok(Some(*l));
        }
        if st.db_empty || st.ov.trim.is_some_and(|t| ca >= t) {
            return Ok(None);
        }
        Ok(self.mds.range(ca, ca + 1)?.first().map(|(_, l)| *l))
    }

    /// Every mapped cluster with an address in `from..to` (one redb range scan, then the
    /// overlay on top).
    fn lookup_range(&self, st: &State, from: u64, to: u64) -> Result<BTreeMap<u64, Loc>> {
        let hi = to.min(st.ov.trim.unwrap_or(u64::MAX));
        let mut m: BTreeMap<u64, Loc> = if st.db_empty {
            BTreeMap::new()
        } else {
            self.mds.range(from, hi)?.into_iter().collect()
        };
        for (a, (l, _)) in st.ov.by_addr.range(from..to) {
            m.insert(*a, *l);
        }
        Ok(m)
    }

    /// Records new locations of clusters (already logged in the open TLog) in the overlay and
    /// keeps the mapped-cluster count exact.
    fn map_clusters(&self, st: &mut State, tlog: u64, locs: &[(u64, Loc)]) -> Result<()> {
        let fresh: Vec<u64> = locs
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| !st.ov.by_addr.contains_key(a))
            .collect();
        let mut new = fresh.len() as u64;
        if !st.db_empty {
            let probe: Vec<u64> = fresh
                .iter()
                .copied()
                .filter(|a| st.ov.trim.is_none_or(|t| *a < t))
                .collect();
            new -= self.mds.contains(&probe)?.iter().filter(|b| **b).count() as u64;
        }
        st.mapped += new;
        let ops = st.ov.ops.entry(tlog).or_default();
        for (a, l) in locs {
            ops.push(Op::Cluster(*a, *l));
        }
        for (a, l) in locs {
            st.ov.by_addr.insert(*a, (*l, tlog));
        }
        Ok(())
    }

    /// Records a size change (already logged in the open TLog); a shrink drops the clusters
    /// past the new end.
    fn set_size(&self, st: &mut State, tlog: u64, size: u64) -> Result<()> {
        let shrink = size < st.size;
        st.ov.push(tlog, Op::Resize { size, shrink });
        st.size = size;
        if shrink {
            let keep = size.div_ceil(CLUSTER_SIZE_U64);
            let hi = st.ov.trim.unwrap_or(u64::MAX);
            let in_db = if st.db_empty || keep >= hi {
                0
            } else {
                let ov = &st.ov.by_addr;
                self.mds.count_range(keep, hi, |a| !ov.contains_key(&a))?
            };
            let tail = st.ov.by_addr.split_off(&keep);
            st.mapped -= tail.len() as u64 + in_db;
            st.ov.trim = Some(hi.min(keep));
        }
        Ok(())
    }

    /// Reads clusters of an evicted SCO: `run` holds their locations, contiguous in one SCO,
    /// and `buf` receives `buf.len()` bytes from `within` of the first one on. Each cluster is
    /// taken from the cluster cache by its MD5 when there; the others come from the backend SCO
    /// object with ONE ranged GET (from the first missing cluster to the last), are verified
    /// against their MD5 and kept in the cluster cache. An unreachable backend is `Delay` (the
    /// client retries); a mismatch is an error.
    fn read_remote(&self, run: &[Loc], buf: &mut [u8], within: u64) -> Result<()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let what = format!(
            "backend SCO {} clusters {}..={}",
            sco_name(first.sco),
            first.offset,
            last.offset
        );
        let within = within as usize;
        if within + buf.len() > run.len() * CLUSTER_SIZE || within >= CLUSTER_SIZE {
            return Err(Error::Io(format!("{what}: read outside the run")));
        }
        let cache = self.cluster_cache.lock().clone();
        // Which clusters the cluster cache serves; the bytes of the others are fetched.
        let mut missing = Vec::new();
        for (i, loc) in run.iter().enumerate() {
            let (lo, hi) = Self::run_slice(i, within, buf.len());
            let hit = cache
                .as_ref()
                .is_some_and(|c| c.get(&loc.md5, lo.0, &mut buf[hi.0..hi.1]));
            if hit {
                self.counters
                    .cluster_cache_hits
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                missing.push(i);
            }
        }
        let (Some(&m0), Some(&m1)) = (missing.first(), missing.last()) else {
            return Ok(());
        };
        let Some(remote) = self.remote.lock().clone() else {
            return Err(Error::Io(format!(
                "{what}: the SCO was evicted and the volume has no backend"
            )));
        };
        let start = ScoFooter::offset(run[m0].offset);
        let len = (m1 - m0 + 1) as u64 * CLUSTER_SIZE_U64;
        let key = super::backup::sco_key(first.sco);
        let fetch = remote.store.get_range(&key, start..start + len);
        let got = match tokio::runtime::Handle::try_current() {
            Err(_) => remote.rt.block_on(fetch),
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| remote.rt.block_on(fetch))
            }
            Ok(_) => {
                return Err(Error::Io(format!(
                    "{what}: cannot wait for the backend on a single-threaded runtime"
                )))
            }
        };
        let data = match got {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Err(Error::Io(format!("{what}: {e}"))),
            Err(e) => {
                tracing::warn!(volume = %self.id, error = %e, "{what}: backend read failed");
                return Err(Error::Delay);
            }
        };
        if data.len() as u64 != len {
            return Err(Error::Io(format!(
                "{what}: the backend returned {} bytes, expected {len}",
                data.len()
            )));
        }
        for i in missing {
            let c = &data[(i - m0) * CLUSTER_SIZE..(i - m0 + 1) * CLUSTER_SIZE];
            if md5(c) != run[i].md5 {
                return Err(Error::Io(format!(
                    "backend SCO {} cluster {}: MD5 mismatch: the backend copy is corrupt",
                    sco_name(run[i].sco),
                    run[i].offset
                )));
            }
            let (lo, hi) = Self::run_slice(i, within, buf.len());
            buf[hi.0..hi.1].copy_from_slice(&c[lo.0..lo.1]);
            if let Some(cc) = &cache {
                cc.insert(run[i].md5, c);
            }
            self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// For cluster `i` of a run read into a buffer of `len` bytes starting `within` the first
    /// cluster: the byte range inside the cluster, and the range of the buffer it fills (both
    /// empty when the cluster is outside the read).
    fn run_slice(i: usize, within: usize, len: usize) -> ((usize, usize), (usize, usize)) {
        let c0 = i * CLUSTER_SIZE;
        let (r0, r1) = (within, within + len);
        let (a, b) = (c0.max(r0), (c0 + CLUSTER_SIZE).min(r1));
        if a >= b {
            return ((0, 0), (0, 0));
        }
        ((a - c0, b - c0), (a - r0, b - r0))
    }

    /// Reads up to `buf.len()` bytes at `off`; returns the count (short only at the end of the
    /// volume). Never-written clusters read as zeros.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        self.check_halted()?;
        let st = self.state.read();
        if off >= st.size || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(st.size - off) as usize;
        let end = off + n as u64;
        let map = self.lookup_range(&st, off / CLUSTER_SIZE_U64, end.div_ceil(CLUSTER_SIZE_U64))?;
        // Runs of evicted SCOs, fetched from the backend after the volume lock is released
        // (writers must not wait for the backend): (buffer range, offset in the first cluster,
        // locations). What a location names never changes, so reading it later is safe.
        let mut remote: Vec<(std::ops::Range<usize>, u64, Vec<Loc>)> = Vec::new();
        let mut pos = off;
        // Runs of clusters that are contiguous in one SCO are read with one pread.
        while pos < end {
            let ca = pos / CLUSTER_SIZE_U64;
            let within = pos % CLUSTER_SIZE_U64;
            let b0 = (pos - off) as usize;
            match map.get(&ca) {
                None => {
                    let stop = ((ca + 1) * CLUSTER_SIZE_U64).min(end);
                    buf[b0..(stop - off) as usize].fill(0);
                    pos = stop;
                }
                Some(loc) => {
                    let mut stop_ca = ca + 1;
                    let entry = st.scos.get(&loc.sco);
                    if let Some(e) = entry {
                        e.reads.fetch_add(1, Ordering::Relaxed);
                    }
                    let evicted = entry.is_some_and(|e| e.evicted);
                    // A remote run is one ranged GET: bounded, so one read never asks the
                    // backend for more than REMOTE_RUN clusters at once.
                    let cap = if evicted { ca + REMOTE_RUN } else { u64::MAX };
                    while stop_ca < cap && stop_ca * CLUSTER_SIZE_U64 < end {
                        match map.get(&stop_ca) {
                            Some(l)
                                if l.sco == loc.sco
                                    && u64::from(l.offset)
                                        == u64::from(loc.offset) + (stop_ca - ca) =>
                            {
                                stop_ca += 1
                            }
                            _ => break,
                        }
                    }
                    let stop = (stop_ca * CLUSTER_SIZE_U64).min(end);
                    let range = b0..(stop - off) as usize;
                    if evicted {
                        let run: Vec<Loc> =
                            (ca..stop_ca).filter_map(|a| map.get(&a).copied()).collect();
                        remote.push((range, within, run));
                    } else {
                        self.read_loc(&st, loc, &mut buf[range], within)?;
                    }
                    if !evicted {
                        self.counters
                            .cache_hits
                            .fetch_add(stop_ca - ca, Ordering::Relaxed);
                    }
                    pos = stop;
                }
            }
        }
        drop(st);
        for (range, within, run) in remote {
            self.read_remote(&run, &mut buf[range], within)?;
        }
        Ok(n)
    }

    /// Writes `data` at `off`, growing the volume when it ends past the current size. With
    /// `stable`, returns only once the write (and everything before it) is durable.
    pub fn write(&self, off: u64, data: &[u8], stable: bool) -> Result<()> {
        let end = off
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_VOLUME_SIZE)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "write past the largest volume size {MAX_VOLUME_SIZE}"
                ))
            })?;
        if !data.is_empty() {
            // Whole clusters are hashed before the volume lock is taken, so concurrent writers
            // hash in parallel instead of one after the other under it.
            let hashes: Option<Vec<[u8; 16]>> = (off.is_multiple_of(CLUSTER_SIZE_U64)
                && data.len().is_multiple_of(CLUSTER_SIZE))
            .then(|| data.chunks_exact(CLUSTER_SIZE).map(md5).collect());
            if let Some(h) = &hashes {
                self.guarded(|| {
                    let mut st = self.state.write();
                    self.write_aligned_locked(&mut st, off, end, data, h)
                })?;
            } else {
                self.with_rmw(|st, fetched| {
                    let r = self.write_locked(st, off, end, data, fetched)?;
                    if r.is_ok() {
                        st.write_gen += 1;
                        self.roll_if_long(st)?;
                    }
                    Ok(r)
                })?;
            }
        }
        if stable {
            self.sync()?;
        }
        Ok(())
    }

    /// [`Volume::write_locked`] for whole clusters with their MD5s already computed: no
    /// read-modify-write and no copy of the data.
    fn write_aligned_locked(
        &self,
        st: &mut State,
        off: u64,
        end: u64,
        data: &[u8],
        hashes: &[[u8; 16]],
    ) -> Result<()> {
        self.grow_to(st, end)?;
        self.append_hashed(st, off / CLUSTER_SIZE_U64, data, Some(hashes))?;
        st.write_gen += 1;
        self.roll_if_long(st)
    }

    /// Grows the volume to `end` if it is smaller, logged before the clusters written there so
    /// that replay never sees a cluster past the size.
    fn grow_to(&self, st: &mut State, end: u64) -> Result<()> {
        if end > st.size {
            self.tlog_append(st, &[Entry::Resize { size: end }])?;
            let tlog = st.tlog.seq;
            self.set_size(st, tlog, end)?;
        }
        Ok(())
    }

    /// Writes `data` at `off` (not whole clusters): the partly written clusters are
    /// read-modify-written. Changes nothing and returns the clusters to fetch first when one of
    /// them lives in an evicted SCO (see [`Volume::with_rmw`]).
    fn write_locked(
        &self,
        st: &mut State,
        off: u64,
        end: u64,
        data: &[u8],
        fetched: &Fetched,
    ) -> Result<std::result::Result<(), Vec<(u64, Loc)>>> {
        let first = off / CLUSTER_SIZE_U64;
        let last = (end - 1) / CLUSTER_SIZE_U64;
        let mut buf = Vec::with_capacity(((last - first + 1) as usize) * CLUSTER_SIZE);
        let mut need = Vec::new();
        for ca in first..=last {
            let cstart = ca * CLUSTER_SIZE_U64;
            let lo = off.max(cstart) - cstart;
            let hi = end.min(cstart + CLUSTER_SIZE_U64) - cstart;
            let src = &data[(cstart + lo - off) as usize..(cstart + hi - off) as usize];
            if lo == 0 && hi == CLUSTER_SIZE_U64 {
                buf.extend_from_slice(src);
            } else {
                // Read-modify-write of a partly written cluster, under the volume lock.
                match self.rmw_base(st, ca, fetched)? {
                    Base::Have(mut c) => {
                        c[lo as usize..hi as usize].copy_from_slice(src);
                        buf.extend_from_slice(&c);
                    }
                    Base::Fetch(loc) => need.push((ca, loc)),
                }
            }
        }
        if !need.is_empty() {
            return Ok(Err(need));
        }
        // Nothing changes before the write is sure to be accepted: the size grows only now.
        self.grow_to(st, end)?;
        self.append_hashed(st, first, &buf, None)?;
        Ok(Ok(()))
    }

    /// Appends whole clusters for addresses `first..` to the open SCO(s), logs them and updates
    /// the MetaDataStore; `hashes` are their MD5s when the caller computed them already.
    fn append_hashed(
        &self,
        st: &mut State,
        first: u64,
        buf: &[u8],
        hashes: Option<&[[u8; 16]]>,
    ) -> Result<()> {
        let n = buf.len() / CLUSTER_SIZE;
        let mut i = 0;
        while i < n {
            self.ensure_open_sco(st)?;
            let Some(sco) = st.sco.as_mut() else {
                return Err(Error::Io("no open SCO".into()));
            };
            let k = ((self.opts.sco_clusters - sco.clusters) as usize).min(n - i);
            let chunk = &buf[i * CLUSTER_SIZE..(i + k) * CLUSTER_SIZE];
            sco.file
                .write_at(chunk, ScoFooter::offset(sco.clusters))
                .map_err(|e| io_err(format!("SCO {}", sco_name(sco.seq)), e))?;
            sco.crc = crc32c::crc32c_append(sco.crc, chunk);
            let mut entries = Vec::with_capacity(k);
            let mut locs = Vec::with_capacity(k);
            for j in 0..k {
                let m = match hashes.and_then(|h| h.get(i + j)) {
                    Some(h) => *h,
                    None => md5(&chunk[j * CLUSTER_SIZE..(j + 1) * CLUSTER_SIZE]),
                };
                let address = first + (i + j) as u64;
                let offset = sco.clusters + j as u32;
                entries.push(Entry::Cluster {
                    address,
                    sco: sco.seq,
                    offset,
                    md5: m,
                });
                locs.push((
                    address,
                    Loc {
                        sco: sco.seq,
                        offset,
                        md5: m,
                    },
                ));
            }
            sco.clusters += k as u32;
            self.tlog_append(st, &entries)?;
            let tlog = st.tlog.seq;
            self.map_clusters(st, tlog, &locs)?;
            let seq = st.tlog.seq;
            *st.tlog_bytes.entry(seq).or_default() += (k * CLUSTER_SIZE) as u64;
            self.counters
                .clusters_written
                .fetch_add(k as u64, Ordering::Relaxed);
            i += k;
        }
        Ok(())
    }

    fn tlog_append(&self, st: &mut State, entries: &[Entry]) -> Result<()> {
        let mut bytes = Vec::with_capacity(entries.len() * TLOG_ENTRY_LEN);
        for e in entries {
            bytes.extend_from_slice(&e.encode());
        }
        let t = &mut st.tlog;
        t.file
            .write_at(&bytes, t.len)
            .map_err(|e| io_err(format!("TLog {}", tlog_name(t.seq)), e))?;
        t.len += bytes.len() as u64;
        t.crc = crc32c::crc32c_append(t.crc, &bytes);
        t.first_entry.get_or_insert_with(std::time::Instant::now);
        Ok(())
    }

    fn ensure_open_sco(&self, st: &mut State) -> Result<()> {
        if st
            .sco
            .as_ref()
            .is_some_and(|s| s.clusters >= self.opts.sco_clusters)
        {
            self.seal_open_sco(st)?;
        }
        if st.sco.is_none() {
            let seq = st.next_sco;
            st.next_sco += 1;
            let path = self.sco_dir.join(sco_name(seq));
            let file = self
                .fs
                .create_new(&path)
                .map_err(|e| io_err(path.display(), e))?;
            file.write_at(
                &ScoHeader {
                    volume: self.id,
                    seq,
                }
                .encode(),
                0,
            )
            .map_err(|e| io_err(path.display(), e))?;
            st.sco_dir.touch();
            self.handles.lock().insert(seq, file.clone());
            st.sco = Some(OpenSco {
                seq,
                file,
                clusters: 0,
                crc: 0,
                created: std::time::Instant::now(),
            });
        }
        Ok(())
    }

    /// Seals the open SCO: footer, fdatasync, then the ScoSealed entry (so a ScoSealed entry
    /// always names a SCO whose bytes are durable); closes the TLog when it covers enough SCOs.
    fn seal_open_sco(&self, st: &mut State) -> Result<()> {
        let Some(sco) = st.sco.take() else {
            return Ok(());
        };
        let what = format!("SCO {}", sco_name(sco.seq));
        let footer = ScoFooter {
            seq: sco.seq,
            clusters: sco.clusters,
            data_crc: sco.crc,
        };
        sco.file
            .write_at(&footer.encode(), ScoFooter::offset(sco.clusters))
            .map_err(|e| io_err(&what, e))?;
        // Not waited for here (a writer would stall on every full SCO): the next commit round,
        // or at the latest the close of this TLog, makes it durable. Until then a restart checks
        // every cluster of it against its MD5 (see `open`).
        sco.file.start_writeback().map_err(|e| io_err(&what, e))?;
        st.unsynced.push((sco.seq, sco.file.clone()));
        self.tlog_append(
            st,
            &[Entry::ScoSealed {
                sco: sco.seq,
                clusters: sco.clusters,
                crc: sco.crc,
            }],
        )?;
        st.tlog.scos += 1;
        let tlog = st.tlog.seq;
        st.ov.push(
            tlog,
            Op::Sealed {
                sco: sco.seq,
                tlog,
                clusters: sco.clusters,
                crc: sco.crc,
            },
        );
        st.scos
            .insert(sco.seq, ScoEntry::new(tlog, sco.clusters, false));
        self.counters.scos_sealed.fetch_add(1, Ordering::Relaxed);
        if st.tlog.scos >= self.opts.tlog_scos {
            self.roll_tlog(st)?;
        }
        Ok(())
    }

    /// Closes the open TLog once it is longer than [`TLOG_ROLL_LEN`], whatever its SCO count:
    /// resize entries (a guest appending in small writes logs one per write; truncates fill
    /// no SCO at all) would otherwise grow it past what a reader accepts ([`MAX_TLOG_LEN`]).
    /// The open SCO is sealed first: a closed TLog names only sealed, durable SCOs.
    fn roll_if_long(&self, st: &mut State) -> Result<()> {
        if st.tlog.len <= self.tlog_roll_len.load(Ordering::Relaxed) {
            return Ok(());
        }
        if st.sco.as_ref().is_some_and(|s| s.clusters > 0) {
            // Sealing may close the TLog already (when it fills its SCO count).
            let seq = st.tlog.seq;
            self.seal_open_sco(st)?;
            if st.tlog.seq != seq {
                return Ok(());
            }
        }
        self.roll_tlog(st)
    }

    /// Closes the open TLog (TLogClosed + fdatasync) and starts the next one (header +
    /// fdatasync; its name becomes durable at the next commit).
    fn roll_tlog(&self, st: &mut State) -> Result<()> {
        // A closed TLog only names durable SCOs: a restart trusts them without reading them.
        for (seq, f) in std::mem::take(&mut st.unsynced) {
            self.fsync(FsyncSite::SealSco, &*f, &format!("SCO {}", sco_name(seq)))?;
        }
        // Also when a commit round is about to fsync `sco/` (it has not yet): the round runs
        // without the lock, and this TLog is closed now.
        if let Some(mark) = st.sco_dir.pending() {
            self.fsync_dir(FsyncSite::SealScoDir, &self.sco_dir)?;
            st.sco_dir.synced_up_to(mark);
        }
        let crc = st.tlog.crc;
        self.tlog_append(st, &[Entry::TlogClosed { crc }])?;
        let what = format!("TLog {}", tlog_name(st.tlog.seq));
        self.fsync(FsyncSite::CloseTlog, &*st.tlog.file, &what)?;
        self.start_next_tlog(st)
    }

    /// Starts the TLog after the open one: header + fdatasync; its name becomes durable at the
    /// next commit (the TLog directory is marked dirty).
    fn start_next_tlog(&self, st: &mut State) -> Result<()> {
        let seq = st.tlog.seq + 1;
        let path = self.tlog_dir.join(tlog_name(seq));
        let file = self
            .fs
            .create_new(&path)
            .map_err(|e| io_err(path.display(), e))?;
        let header = TlogHeader {
            volume: self.id,
            seq,
        }
        .encode();
        file.write_at(&header, 0)
            .map_err(|e| io_err(path.display(), e))?;
        self.fsync(
            FsyncSite::CreateTlog,
            &*file,
            &format!("TLog {}", tlog_name(seq)),
        )?;
        st.tlog = OpenTlog {
            seq,
            file,
            len: TLOG_HEADER_LEN as u64,
            crc: crc32c::crc32c(&header),
            scos: 0,
            first_entry: None,
        };
        st.tlog_dir.touch();
        Ok(())
    }

    /// Changes the size. Growing is sparse; shrinking drops the clusters past the end and zeroes
    /// the tail of the last cluster, so a later grow reads zeros there.
    pub fn resize(&self, size: u64) -> Result<()> {
        if size > MAX_VOLUME_SIZE {
            return Err(Error::Invalid(format!(
                "volume size {size} above {MAX_VOLUME_SIZE}"
            )));
        }
        self.with_rmw(|st, fetched| {
            if size == st.size {
                return Ok(Ok(()));
            }
            if size < st.size {
                let tail = size % CLUSTER_SIZE_U64;
                let ca = size / CLUSTER_SIZE_U64;
                if tail != 0 && self.lookup(st, ca)?.is_some() {
                    match self.rmw_base(st, ca, fetched)? {
                        Base::Have(mut c) => {
                            c[tail as usize..].fill(0);
                            self.append_hashed(st, ca, &c, None)?;
                        }
                        Base::Fetch(loc) => return Ok(Err(vec![(ca, loc)])),
                    }
                }
            }
            self.tlog_append(st, &[Entry::Resize { size }])?;
            let tlog = st.tlog.seq;
            self.set_size(st, tlog, size)?;
            st.write_gen += 1;
            self.roll_if_long(st)?;
            Ok(Ok(()))
        })
    }

    /// Makes every change completed before this call durable (COMMIT). Concurrent callers share
    /// one round of fsyncs: a leader fsyncs for every caller that arrived before it started.
    pub fn sync(&self) -> Result<()> {
        self.check_halted()?;
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let target = self.state.read().write_gen;
        let mut g = self.sync.lock();
        loop {
            if g.durable_gen >= target {
                return Ok(());
            }
            if !g.leader {
                g.leader = true;
                break;
            }
            self.sync_cv.wait(&mut g);
            self.check_halted()?;
        }
        drop(g);
        let r = self.guarded(|| self.commit_round());
        let mut g = self.sync.lock();
        g.leader = false;
        if let Ok(gen) = r {
            g.durable_gen = g.durable_gen.max(gen);
        }
        self.sync_cv.notify_all();
        drop(g);
        r.map(|_| ())
    }

    /// One round of group commit; returns the write generation it made durable.
    fn commit_round(&self) -> Result<u64> {
        let (gen, sealed, sco, tlog, sco_dir, tlog_dir) = {
            let st = self.state.read();
            let s = (
                st.write_gen,
                st.unsynced.clone(),
                st.sco.as_ref().map(|s| (s.seq, s.file.clone())),
                (st.tlog.seq, st.tlog.file.clone()),
                st.sco_dir.pending(),
                st.tlog_dir.pending(),
            );
            s
        };
        self.counters.commit_rounds.fetch_add(1, Ordering::Relaxed);
        // Data first (every SCO holding clusters written before the round), then the TLog that
        // names it.
        for (seq, f) in &sealed {
            self.fsync(
                FsyncSite::CommitSealedSco,
                &**f,
                &format!("SCO {}", sco_name(*seq)),
            )?;
        }
        if !sealed.is_empty() {
            // A TLog roll may have synced (and dropped) some of them meanwhile: harmless.
            let done: BTreeSet<u64> = sealed.iter().map(|(s, _)| *s).collect();
            self.state
                .write()
                .unsynced
                .retain(|(s, _)| !done.contains(s));
        }
        if let Some((seq, f)) = sco {
            self.fsync(FsyncSite::CommitSco, &*f, &format!("SCO {}", sco_name(seq)))?;
        }
        self.fsync(
            FsyncSite::CommitTlog,
            &*tlog.1,
            &format!("TLog {}", tlog_name(tlog.0)),
        )?;
        // The marks are recorded only once the fsyncs returned: until then a TLog close that
        // runs meanwhile still sees the names as not durable and fsyncs them itself.
        if let Some(mark) = sco_dir {
            self.fsync_dir(FsyncSite::CommitScoDir, &self.sco_dir)?;
            self.state.write().sco_dir.synced_up_to(mark);
        }
        if let Some(mark) = tlog_dir {
            self.fsync_dir(FsyncSite::CommitTlogDir, &self.tlog_dir)?;
            self.state.write().tlog_dir.synced_up_to(mark);
        }
        Ok(gen)
    }

    // --------------------------------------------------------------------------------------------
    // Local restart

    /// Opens an existing volume from its local SCOs and TLogs (local restart): replays every
    /// TLog in order, verifying every CRC; cuts a torn tail of the last TLog at the first entry
    /// that does not verify (an entry whose CRC fails, or a cluster of the unsealed SCO whose MD5
    /// does not match its data); seals the last SCO; makes the repaired state durable. Anything
    /// else that does not verify is an error naming the file and what failed.
    pub fn open(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
    ) -> Result<Volume> {
        if super::backup::restore_interrupted(&*fs, dir)? {
            return Err(Error::Io(format!(
                "{}: a backend restart into this directory was interrupted; remove its local \
                 state and restore again",
                dir.display()
            )));
        }
        Self::open_inner(fs, dir, id, opts, None)
    }

    pub(crate) fn open_inner(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        id: VolumeId,
        opts: VolumeOptions,
        skip_fsync: Option<FsyncSite>,
    ) -> Result<Volume> {
        opts.check()?;
        let sco_dir = dir.join("sco");
        let tlog_dir = dir.join("tlog");
        let mut tlogs: Vec<u64> = Vec::new();
        let names = match fs.list(&tlog_dir) {
            Ok(n) => n,
            // No volume here at all.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
            Err(e) => return Err(io_err(tlog_dir.display(), e)),
        };
        for n in names {
            match parse_seq_name(&n) {
                Some(s) => tlogs.push(s),
                None => tracing::warn!(file = %n, "ignoring unexpected file in the TLog directory"),
            }
        }
        tlogs.sort_unstable();
        let mds_syncs = Arc::new(AtomicU64::new(0));
        // A volume from before the MetaDataStore was on disk gets an empty one (applied_tlog 0:
        // every TLog is replayed).
        let mds = Mds::open(
            &*fs,
            dir,
            true,
            skip_fsync == Some(FsyncSite::MdsCommit),
            mds_syncs.clone(),
        )?;
        let meta = mds.meta()?;
        // TLogs whose effect is in redb were on the backend: one left behind by a crash between
        // the redb commit and the deletion is deleted now.
        for seq in tlogs.iter().filter(|s| **s <= meta.applied_tlog) {
            let p = tlog_dir.join(tlog_name(*seq));
            fs.remove_file(&p).map_err(|e| io_err(p.display(), e))?;
        }
        tlogs.retain(|s| *s > meta.applied_tlog);
        if tlogs.first().is_some_and(|f| *f != meta.applied_tlog + 1) {
            return Err(Error::Io(format!(
                "{}: the MetaDataStore holds TLogs up to {}, but the next local TLog is {}",
                dir.display(),
                meta.applied_tlog,
                tlogs[0]
            )));
        }
        let Some(&last_seq) = tlogs.last() else {
            return Err(Error::Io(format!(
                "{}: no TLog: not a volume",
                tlog_dir.display()
            )));
        };
        for w in tlogs.windows(2) {
            if w[1] != w[0] + 1 {
                return Err(Error::Io(format!(
                    "{}: TLogs {} to {} are missing",
                    tlog_dir.display(),
                    tlog_name(w[0] + 1),
                    tlog_name(w[1] - 1)
                )));
            }
        }
        let mut sco_files: BTreeSet<u64> = BTreeSet::new();
        // Stubs of evictions a crash interrupted before their rename: they hold nothing.
        let mut stray_stubs: Vec<String> = Vec::new();
        for n in fs
            .list(&sco_dir)
            .map_err(|e| io_err(sco_dir.display(), e))?
        {
            match parse_seq_name(&n) {
                Some(s) => {
                    sco_files.insert(s);
                }
                None if n
                    .strip_suffix(SCO_STUB_SUFFIX)
                    .and_then(parse_seq_name)
                    .is_some() =>
                {
                    stray_stubs.push(n)
                }
                None => tracing::warn!(file = %n, "ignoring unexpected file in the SCO directory"),
            }
        }

        let mut rp = Replay {
            size: meta.size,
            ..Default::default()
        };
        let mut tlog_bytes: BTreeMap<u64, u64> = BTreeMap::new();
        let ctx = ReplayCtx {
            fs: &*fs,
            sco_dir: &sco_dir,
            id,
        };
        // Every TLog but the last must be complete and closed.
        for &seq in &tlogs[..tlogs.len() - 1] {
            let what = format!("TLog {}", tlog_name(seq));
            let path = tlog_dir.join(tlog_name(seq));
            let f = fs.open(&path).map_err(|e| io_err(path.display(), e))?;
            let data = read_all(&*f, &what)?;
            let entries = parse_tlog(&what, &data, id, seq, false)?;
            if !matches!(entries.entries.last(), Some((_, Entry::TlogClosed { .. }))) {
                return Err(fmt_err(FormatError::Inconsistent {
                    what,
                    reason: "not closed, yet a later TLog exists".into(),
                }));
            }
            rp.cur_tlog = seq;
            for (pos, e) in entries.entries {
                if matches!(e, Entry::Cluster { .. }) {
                    *tlog_bytes.entry(seq).or_default() += CLUSTER_SIZE_U64;
                }
                ctx.apply(&mut rp, &format!("{what} entry at byte {pos}"), e)?;
            }
        }

        // The last TLog: a torn tail is cut.
        let what = format!("TLog {}", tlog_name(last_seq));
        let path = tlog_dir.join(tlog_name(last_seq));
        let tfile = fs.open(&path).map_err(|e| io_err(path.display(), e))?;
        let mut data = read_all(&*tfile, &what)?;
        if data.len() <= TLOG_HEADER_LEN && TlogHeader::decode(&what, &data).is_err() {
            // Created at a TLog roll, but the power failed before its header was durable (the
            // header is fdatasynced before any entry is written): it holds nothing. Write it
            // again; the commit at the end of the restart makes it durable.
            tracing::warn!(tlog = %what, "rewriting the header of an empty TLog");
            let h = TlogHeader {
                volume: id,
                seq: last_seq,
            }
            .encode();
            tfile.set_len(0).map_err(|e| io_err(&what, e))?;
            tfile.write_at(&h, 0).map_err(|e| io_err(&what, e))?;
            data = h.to_vec();
        }
        let parsed = parse_tlog(&what, &data, id, last_seq, true)?;
        let mut cut = parsed.valid_len;
        // SCOs sealed in closed TLogs are durable (closing a TLog fdatasyncs them first). The
        // SCOs this TLog writes or seals may not be (a seal does not wait for its data; a commit
        // or the TLog's close does): every cluster of them is checked against its MD5, every
        // ScoSealed against the SCO's footer, and the log is cut at the first that does not
        // verify — nothing after it was acknowledged.
        let mut handles: HashMap<u64, Option<Arc<dyn LocalFile>>> = HashMap::new();
        // A closed last TLog (its TLogClosed verified) was fdatasynced after its SCOs: trusted
        // like the others (a backend restart leaves one whose SCOs are header stubs).
        let closed = matches!(parsed.entries.last(), Some((_, Entry::TlogClosed { .. })));
        for (pos, e) in parsed.entries.iter().filter(|_| !closed) {
            if let Entry::ScoSealed { sco, clusters, crc } = *e {
                if rp.sealed.contains(&sco) {
                    continue;
                }
                if !sealed_sco_is_whole(&*fs, &sco_dir, id, sco, clusters, crc)?
                    && !repair_sealed_sco(&*fs, &sco_dir, id, sco, clusters, crc)?
                {
                    tracing::warn!(tlog = %what, at = pos, "cutting the TLog: a SCO it seals is not whole");
                    cut = *pos;
                    break;
                }
            }
            if let Entry::Cluster {
                sco,
                offset,
                md5: m,
                ..
            } = e
            {
                if rp.sealed.contains(sco) {
                    continue;
                }
                let swhat = format!("SCO {}", sco_name(*sco));
                let h = match handles.get(sco) {
                    Some(h) => h.clone(),
                    None => {
                        // A missing SCO is a mismatch (its name never became durable); any
                        // other error fails the restart rather than cutting committed data.
                        let h = match fs.open(&sco_dir.join(sco_name(*sco))) {
                            Ok(f) => Some(f),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                            Err(e) => return Err(io_err(&swhat, e)),
                        };
                        handles.insert(*sco, h.clone());
                        h
                    }
                };
                let mut c = vec![0u8; CLUSTER_SIZE];
                let ok = match h {
                    Some(f) => {
                        let n = f
                            .read_at(&mut c, ScoFooter::offset(*offset))
                            .map_err(|e| io_err(&swhat, e))?;
                        n == CLUSTER_SIZE && md5(&c) == *m
                    }
                    None => false,
                };
                if !ok {
                    tracing::warn!(tlog = %what, at = pos, "cutting the TLog: cluster data of an unsynced write is missing");
                    cut = *pos;
                    break;
                }
            }
        }
        let mut last_closed = false;
        let mut scos_in_last = 0u32;
        rp.cur_tlog = last_seq;
        for (pos, e) in parsed.entries.iter().filter(|(p, _)| *p < cut) {
            match e {
                Entry::TlogClosed { .. } => last_closed = true,
                Entry::ScoSealed { .. } => scos_in_last += 1,
                Entry::Cluster { .. } => {
                    *tlog_bytes.entry(last_seq).or_default() += CLUSTER_SIZE_U64
                }
                _ => {}
            }
            ctx.apply(&mut rp, &format!("{what} entry at byte {pos}"), *e)?;
        }
        let must_cut = (cut as usize) < data.len();
        let tcrc = crc32c::crc32c(&data[..cut as usize]);

        // Unsealed SCOs: at most one, the newest.
        let unsealed: Vec<(u64, u32)> = rp
            .sco_clusters
            .iter()
            .filter(|(s, _)| !rp.sealed.contains(s))
            .map(|(s, c)| (*s, *c))
            .collect();
        let max_ref = rp.sco_clusters.keys().next_back().copied().unwrap_or(0);
        if unsealed.len() > 1 || unsealed.first().is_some_and(|(s, _)| *s != max_ref) {
            return Err(Error::Io(format!(
                "{}: more than one unsealed SCO ({unsealed:?}) or an unsealed SCO older than a sealed one",
                dir.display()
            )));
        }
        let db_scos = mds.scos()?;
        let max_db_sco = db_scos.last().map_or(0, |(s, _)| *s);
        let next_sco = max_ref
            .max(sco_files.last().copied().unwrap_or(0))
            .max(max_db_sco)
            + 1;
        let mut scos: BTreeMap<u64, ScoEntry> = BTreeMap::new();
        for (seq, (tlog, clusters, _crc)) in &db_scos {
            // Applied SCOs are on the backend: no local file (a backend restart never fetched
            // it) or a header stub means the data is only there.
            let has_file = sco_files.contains(seq);
            let evicted = if has_file {
                let p = sco_dir.join(sco_name(*seq));
                let f = fs.open(&p).map_err(|e| io_err(p.display(), e))?;
                let len = f.file_len().map_err(|e| io_err(p.display(), e))?;
                let whole = ScoFooter::offset(*clusters) + SCO_FOOTER_LEN as u64;
                if len > SCO_HEADER_LEN && len != whole {
                    // Not a copy to read from (damaged, or an eviction's cut half-done): the
                    // data is on the backend; keep only the stub.
                    tracing::warn!(sco = %sco_name(*seq), len, "a cached SCO is not whole: reading it from the backend");
                    replace_sco_by_stub(&*fs, &sco_dir, id, *seq)?;
                }
                len != whole
            } else {
                true
            };
            let mut e = ScoEntry::new(*tlog, *clusters, evicted);
            e.has_file = has_file;
            scos.insert(*seq, e);
        }
        for (s, (t, c, ev)) in &rp.sealed_in {
            scos.insert(*s, ScoEntry::new(*t, *c, *ev));
        }
        let mapped = mds.mapped()?;
        let state = State {
            size: meta.size,
            ov: Overlay::default(),
            mapped,
            applied_tlog: meta.applied_tlog,
            applied_size: meta.size,
            db_empty: mapped == 0,
            sco: None,
            tlog: OpenTlog {
                seq: last_seq,
                file: tfile,
                len: cut,
                crc: tcrc,
                scos: scos_in_last,
                // Entries left by the last run count as just written.
                first_entry: (cut > TLOG_HEADER_LEN as u64).then(std::time::Instant::now),
            },
            next_sco,
            write_gen: 0,
            // After a process crash the page cache may hold names never fsynced (of SCOs and
            // TLogs the last run created or removed): the restart's commit makes them durable.
            sco_dir: DirSync::dirty(),
            tlog_dir: DirSync::dirty(),
            unsynced: Vec::new(),
            tlog_bytes,
            scos,
            // Everything applied to redb is on the backend.
            backend_tlog: meta.applied_tlog,
        };
        let vol = Volume::assemble(
            fs.clone(),
            id,
            opts,
            (sco_dir.clone(), tlog_dir),
            state,
            skip_fsync,
            (mds, mds_syncs),
        );
        vol.counters
            .restart_cut_bytes
            .store(data.len() as u64 - cut, Ordering::Relaxed);
        vol.counters
            .tlogs_replayed
            .store(tlogs.len() as u64, Ordering::Relaxed);
        vol.counters
            .checkpoint_tlog
            .store(vol.mds.checkpoint_tlog()?, Ordering::Relaxed);
        {
            let mut st = vol.state.write();
            // The replayed TLogs' changes are corked until the backend has those TLogs.
            // Runs of clusters (distinct addresses, one TLog) are mapped together: one redb
            // lookup per run.
            let mut run: Vec<(u64, Loc)> = Vec::new();
            let mut in_run: BTreeSet<u64> = BTreeSet::new();
            let mut run_tlog = 0;
            for (tlog, op) in std::mem::take(&mut rp.ops) {
                let joins =
                    matches!(op, Op::Cluster(a, _) if tlog == run_tlog && !in_run.contains(&a));
                if !joins && !run.is_empty() {
                    vol.map_clusters(&mut st, run_tlog, &run)?;
                    run.clear();
                    in_run.clear();
                }
                match op {
                    Op::Cluster(a, l) => {
                        run_tlog = tlog;
                        run.push((a, l));
                        in_run.insert(a);
                    }
                    Op::Resize { size, .. } => vol.set_size(&mut st, tlog, size)?,
                    Op::Sealed { .. } => st.ov.push(tlog, op),
                }
            }
            if !run.is_empty() {
                vol.map_clusters(&mut st, run_tlog, &run)?;
            }
            if must_cut {
                // Durable before anything is written at the cut: stale entries past it must
                // never reappear behind new ones.
                tracing::warn!(tlog = %what, from = data.len(), to = cut, "cutting a torn TLog tail");
                st.tlog.file.set_len(cut).map_err(|e| io_err(&what, e))?;
                vol.fsync(FsyncSite::RestartCut, &*st.tlog.file, &what)?;
            }
            for n in &stray_stubs {
                let p = sco_dir.join(n);
                fs.remove_file(&p).map_err(|e| io_err(p.display(), e))?;
                st.sco_dir.touch();
            }
            // SCO files no entry refers to hold nothing that was ever committed.
            let in_db: BTreeSet<u64> = db_scos.iter().map(|(s, _)| *s).collect();
            for s in sco_files
                .iter()
                .filter(|s| !rp.sco_clusters.contains_key(s) && !in_db.contains(s))
            {
                let p = sco_dir.join(sco_name(*s));
                fs.remove_file(&p).map_err(|e| io_err(p.display(), e))?;
                st.sco_dir.touch();
            }
            // The SCOs sealed in the open TLog were verified against what the page cache shows:
            // after a process crash their bytes may never have been fdatasynced. The restart's
            // commit makes them durable before anything new is acknowledged behind them.
            if !closed {
                for (seq, (tlog, _, evicted)) in &rp.sealed_in {
                    if *tlog == last_seq && !*evicted {
                        let f = vol.sco_handle(*seq)?;
                        st.unsynced.push((*seq, f));
                    }
                }
            }
            if let Some(&(seq, clusters)) = unsealed.first() {
                // Reopen the unsealed SCO at its verified length, then seal it.
                let what = format!("SCO {}", sco_name(seq));
                let f = vol.sco_handle(seq)?;
                f.write_at(&ScoHeader { volume: id, seq }.encode(), 0)
                    .map_err(|e| io_err(&what, e))?;
                f.set_len(ScoFooter::offset(clusters))
                    .map_err(|e| io_err(&what, e))?;
                let mut crc = 0u32;
                let mut c = vec![0u8; CLUSTER_SIZE];
                for k in 0..clusters {
                    let n = f
                        .read_at(&mut c, ScoFooter::offset(k))
                        .map_err(|e| io_err(&what, e))?;
                    if n != CLUSTER_SIZE {
                        return Err(Error::Io(format!("{what}: short read at cluster {k}")));
                    }
                    crc = crc32c::crc32c_append(crc, &c);
                }
                st.sco = Some(OpenSco {
                    seq,
                    file: f,
                    clusters,
                    crc,
                    created: std::time::Instant::now(),
                });
                vol.seal_open_sco(&mut st)?;
            }
            if last_closed {
                // Closed, but the next TLog never became durable: start it now. The close may
                // be only in the page cache (a process crash before its fdatasync): made
                // durable first, or a power cut would leave an unclosed TLog before the next.
                let file = st.tlog.file.clone();
                vol.fsync(FsyncSite::CloseTlog, &*file, &what)?;
                vol.start_next_tlog(&mut st)?;
            } else if st.tlog.scos >= opts.tlog_scos {
                vol.roll_tlog(&mut st)?;
            }
        }
        vol.commit_round()?;
        Ok(vol)
    }

    /// Seals the open SCO (if it holds clusters) and closes the open TLog (if it holds
    /// entries), durably, so that everything written so far is in closed TLogs. Returns the
    /// sequence number of the TLog now open: every TLog before it is closed.
    pub(super) fn close_for_backup(&self) -> Result<u64> {
        self.guarded(|| {
            let mut st = self.state.write();
            if st.sco.as_ref().is_some_and(|s| s.clusters > 0) {
                self.seal_open_sco(&mut st)?;
            }
            if st.tlog.len > TLOG_HEADER_LEN as u64 {
                self.roll_tlog(&mut st)?;
            }
            st.write_gen += 1;
            Ok(())
        })?;
        self.sync()?;
        Ok(self.open_tlog_seq())
    }

    /// How long the oldest change not in a closed TLog has waited (None when there is none):
    /// the open TLog's first entry, or the open SCO's first cluster. Only closed TLogs (and the
    /// SCOs they seal) are uploaded, so this is how long data may have been kept off the backend.
    pub(super) fn unuploaded_age(&self) -> Option<std::time::Duration> {
        let st = self.state.read();
        let sco = st
            .sco
            .as_ref()
            .filter(|s| s.clusters > 0)
            .map(|s| s.created.elapsed());
        let tlog = st.tlog.first_entry.map(|t| t.elapsed());
        sco.max(tlog)
    }

    /// Forgets the byte counts of TLogs up to `last`, now on the backend.
    pub(super) fn on_backend_up_to(&self, last: u64) {
        let mut st = self.state.write();
        st.tlog_bytes.retain(|seq, _| *seq > last);
        st.backend_tlog = st.backend_tlog.max(last);
    }

    /// Lifts the cork for every TLog up to `last`, now on the backend (the manifest naming it
    /// was written): their MetaDataStore changes are applied to redb in one durable transaction
    /// that also records `applied_tlog = last`, the applied entries leave the overlay, and only
    /// then are the local TLog files deleted (redb now holds their effect, the backend their
    /// bytes). The redb commit runs without the state lock held for writing.
    pub(super) fn uncork(&self, last: u64) -> Result<()> {
        self.check_halted()?;
        let _one = self.uncork_lock.lock();
        let (ops, size, from) = {
            let st = self.state.read();
            if last <= st.applied_tlog {
                return Ok(());
            }
            if last >= st.tlog.seq {
                return Err(Error::Io(format!(
                    "volume {}: the backend names TLog {} but TLog {} is still open locally",
                    self.id,
                    tlog_name(last),
                    tlog_name(st.tlog.seq)
                )));
            }
            let mut size = st.applied_size;
            let mut ops = Vec::new();
            for v in st.ov.ops.range(..=last).map(|(_, v)| v) {
                for op in v {
                    if let Op::Resize { size: s, .. } = op {
                        size = *s;
                    }
                    ops.push(*op);
                }
            }
            (ops, size, st.applied_tlog + 1)
        };
        // redb remembers a failed write (every later commit fails): halt, so that a reopen
        // (which replays the TLogs, still local) repairs it instead of corked entries and local
        // TLogs piling up behind a MetaDataStore that can no longer take them.
        let db_empty = self.guarded(|| {
            self.mds.apply(&ops, last, size)?;
            Ok(self.mds.mapped()? == 0)
        })?;
        {
            let mut st = self.state.write();
            let keep = st.ov.ops.split_off(&(last + 1));
            st.ov.ops = keep;
            for op in &ops {
                if let Op::Cluster(a, _) = op {
                    if st.ov.by_addr.get(a).is_some_and(|(_, t)| *t <= last) {
                        st.ov.by_addr.remove(a);
                    }
                }
            }
            // Only shrinks still corked make redb entries stale.
            st.ov.trim = st
                .ov
                .ops
                .values()
                .flatten()
                .filter_map(|op| match op {
                    Op::Resize { size, shrink: true } => Some(size.div_ceil(CLUSTER_SIZE_U64)),
                    _ => None,
                })
                .min();
            st.applied_tlog = last;
            st.applied_size = size;
            st.db_empty = db_empty;
            st.backend_tlog = st.backend_tlog.max(last);
        }
        for seq in from..=last {
            let p = self.tlog_dir.join(tlog_name(seq));
            match self.fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p.display(), e)),
            }
        }
        self.fs
            .sync_dir(&self.tlog_dir)
            .map_err(|e| io_err(self.tlog_dir.display(), e))?;
        Ok(())
    }

    /// Sets the backend namespace clusters of evicted SCOs are read back from, and the runtime
    /// that drives its requests. Without one, reading an evicted SCO is an error.
    pub fn set_backend(&self, store: Arc<dyn ObjectStore>, rt: tokio::runtime::Handle) {
        *self.remote.lock() = Some(Remote { store, rt });
    }

    /// Sets the cluster cache that reads of evicted SCOs go through (shared by all volumes).
    pub fn set_cluster_cache(&self, cache: Arc<ClusterCache>) {
        *self.cluster_cache.lock() = Some(cache);
    }

    /// Bytes of the volume's local SCO files: sealed SCOs (an evicted one as its header stub)
    /// and the open SCO.
    pub fn sco_cache_bytes(&self) -> u64 {
        let st = self.state.read();
        let open = st.sco.as_ref().map_or(0, |s| ScoFooter::offset(s.clusters));
        open + st.scos.values().map(ScoEntry::local_bytes).sum::<u64>()
    }

    /// The disposable SCOs: sealed, still in the local cache, and on the backend (the manifest
    /// names the TLog that sealed them, and the SCO was uploaded before that TLog).
    pub fn eviction_candidates(&self) -> Vec<EvictionCandidate> {
        let st = self.state.read();
        st.scos
            .iter()
            .filter(|(_, e)| !e.evicted && e.tlog <= st.backend_tlog)
            .map(|(sco, e)| EvictionCandidate {
                sco: *sco,
                reads: e.reads.load(Ordering::Relaxed),
                since: e.since,
                bytes: e.local_bytes() - SCO_HEADER_LEN,
            })
            .collect()
    }

    /// Evicts SCO `sco` from the local cache if it is disposable: its file is replaced by the
    /// header (a stub that tells a restart the data is on the backend) and later reads of its
    /// clusters fetch them from the backend. Returns the bytes freed from the cache (0 when it
    /// was not disposable).
    ///
    /// The SCO's file is never cut in place: the local store may hold that very file as the
    /// backend's object (it hard-links sealed SCOs instead of copying their bytes). The stub is
    /// written aside, made durable and renamed over the SCO, so a crash leaves the whole SCO or
    /// the stub (and at worst a stray stub beside the SCO, which the next restart removes).
    pub fn evict_sco(&self, sco: u64) -> Result<u64> {
        self.check_halted()?;
        let disposable = |st: &State| {
            st.scos
                .get(&sco)
                .is_some_and(|e| !e.evicted && e.tlog <= st.backend_tlog)
        };
        if !disposable(&self.state.read()) {
            return Ok(0);
        }
        let stub = self.sco_dir.join(sco_stub_name(sco));
        write_sco_stub(&*self.fs, &stub, self.id, sco)?;
        let freed = {
            // Under the write lock: no reader opens the SCO's name while it changes files.
            let mut st = self.state.write();
            if !disposable(&st) {
                drop(st);
                self.fs
                    .remove_file(&stub)
                    .map_err(|e| io_err(stub.display(), e))?;
                self.state.write().sco_dir.touch();
                return Ok(0);
            }
            let path = self.sco_dir.join(sco_name(sco));
            self.fs
                .rename(&stub, &path)
                .map_err(|e| io_err(path.display(), e))?;
            // Durable at the next fsync of `sco/`: [`Volume::sync_evictions`] after a batch.
            st.sco_dir.touch();
            self.handles.lock().remove(&sco);
            let Some(e) = st.scos.get_mut(&sco) else {
                return Ok(0);
            };
            e.evicted = true;
            e.local_bytes_before_eviction()
        };
        self.counters.scos_evicted.fetch_add(1, Ordering::Relaxed);
        Ok(freed)
    }

    /// Makes the evictions done so far durable (one fsync of `sco/` for a batch of them). Not
    /// needed for correctness — a whole SCO and its stub are both valid after a crash — but the
    /// space freed is only reliably free once the stubs' names are durable.
    pub fn sync_evictions(&self) -> Result<()> {
        let Some(mark) = self.state.read().sco_dir.pending() else {
            return Ok(());
        };
        self.fsync_dir(FsyncSite::EvictScoDir, &self.sco_dir)?;
        self.state.write().sco_dir.synced_up_to(mark);
        Ok(())
    }

    /// Cluster bytes written that are not known to be on the backend yet (all of them until
    /// the first backup call has read the backend manifest). What `Write_Buffer_Size` limits.
    pub fn bytes_not_on_backend(&self) -> u64 {
        self.state.read().tlog_bytes.values().sum()
    }

    /// The newest SCO sealed by a TLog up to `tlog` (0: none). SCOs are sealed in sequence
    /// order, so every SCO up to it is covered by those TLogs.
    pub fn newest_sco_sealed_by(&self, tlog: u64) -> u64 {
        let st = self.state.read();
        st.scos
            .iter()
            .rev()
            .find(|(_, e)| e.tlog <= tlog)
            .map_or(0, |(s, _)| *s)
    }

    /// The volume's options.
    pub fn options(&self) -> VolumeOptions {
        self.opts
    }

    pub(super) fn mds_checkpoint_tlog(&self) -> Result<u64> {
        self.mds.checkpoint_tlog()
    }

    pub(super) fn mds_snapshot(&self) -> Result<super::mds::SnapshotTx> {
        self.mds.begin_snapshot()
    }

    pub(super) fn mds_checkpoint_done(
        &self,
        n: u64,
        written: &[u64],
        pages: &[(u64, u64)],
    ) -> Result<()> {
        self.mds.checkpoint_done(n, written, pages)?;
        self.counters.checkpoint_tlog.store(n, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn counters_checkpoint(&self, pages: u64) {
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.counters
            .checkpoint_pages
            .fetch_add(pages, Ordering::Relaxed);
    }

    /// Bytes of SCOs and TLogs this volume uploaded to the backend since it was opened: its
    /// upload progress (the write path's pacing watches it).
    pub fn uploaded_bytes(&self) -> u64 {
        self.counters.uploaded_bytes.load(Ordering::Relaxed)
    }

    /// Records `n` bytes uploaded (an SCO or a TLog PUT that succeeded).
    pub(super) fn note_uploaded(&self, n: u64) {
        self.counters.uploaded_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Sequence number of the open TLog.
    pub(super) fn open_tlog_seq(&self) -> u64 {
        self.state.read().tlog.seq
    }

    /// The local `sco/` and `tlog/` directories.
    pub(super) fn dirs(&self) -> (&Path, &Path) {
        (&self.sco_dir, &self.tlog_dir)
    }

    /// The local-file layer.
    pub(super) fn local_fs(&self) -> &Arc<dyn LocalFs> {
        &self.fs
    }

    /// Checks the integrity of everything the volume keeps locally (an online fsck): every
    /// sealed SCO's header, footer and data CRC32C, and the MD5 of every live cluster against
    /// its TLog entry. Reads everything: meant for tests, scrubbing and repair tools. Returns
    /// the problems found (empty when all verifies); I/O errors are errors.
    pub fn verify(&self) -> Result<Vec<String>> {
        self.check_halted()?;
        let st = self.state.read();
        let mut problems = Vec::new();
        let all = self.lookup_range(&st, 0, st.size.div_ceil(CLUSTER_SIZE_U64))?;
        if all.len() as u64 != st.mapped {
            problems.push(format!(
                "the mapped-cluster count {} disagrees with the MetaDataStore ({})",
                st.mapped,
                all.len()
            ));
        }
        let mut scos: BTreeSet<u64> = all.values().map(|l| l.sco).collect();
        if let Some(s) = &st.sco {
            scos.remove(&s.seq);
        }
        scos.retain(|s| !st.scos.get(s).is_some_and(|e| e.evicted));
        for seq in scos {
            let what = format!("SCO {}", sco_name(seq));
            let f = self.sco_handle(seq)?;
            let b = read_all(&*f, &what)?;
            let check = (|| -> std::result::Result<(), FormatError> {
                let h = ScoHeader::decode(&what, &b)?;
                let fo = b
                    .len()
                    .checked_sub(SCO_FOOTER_LEN)
                    .filter(|o| *o >= SCO_HEADER_LEN as usize)
                    .ok_or_else(|| FormatError::Truncated {
                        what: what.clone(),
                        len: b.len() as u64,
                        need: SCO_HEADER_LEN + SCO_FOOTER_LEN as u64,
                    })?;
                let foot = ScoFooter::decode(&what, &b[fo..])?;
                let computed = crc32c::crc32c(&b[SCO_HEADER_LEN as usize..fo]);
                if h.volume != self.id
                    || h.seq != seq
                    || foot.seq != seq
                    || ScoFooter::offset(foot.clusters) != fo as u64
                {
                    return Err(FormatError::Inconsistent {
                        what: what.clone(),
                        reason: "header or footer disagree with the file".into(),
                    });
                }
                if computed != foot.data_crc {
                    return Err(FormatError::Crc {
                        what: format!("{what} data"),
                        stored: foot.data_crc,
                        computed,
                    });
                }
                Ok(())
            })();
            if let Err(e) = check {
                problems.push(e.to_string());
            }
        }
        let mut c = vec![0u8; CLUSTER_SIZE];
        for (ca, loc) in &all {
            match self.read_loc(&st, loc, &mut c, 0) {
                Ok(()) if md5(&c) == loc.md5 => {}
                Ok(()) => problems.push(format!(
                    "cluster {ca} (SCO {} cluster {}): MD5 mismatch",
                    sco_name(loc.sco),
                    loc.offset
                )),
                Err(e) => problems.push(format!("cluster {ca}: {e}")),
            }
        }
        Ok(problems)
    }

    /// True when changes made since the last completed commit may not be durable yet.
    pub fn is_dirty(&self) -> bool {
        let gen = self.state.read().write_gen;
        gen > self.sync.lock().durable_gen
    }

    /// Deletes every local file of the volume (its last link and open are gone). The volume is
    /// halted: any later call fails.
    pub fn destroy(&self) -> Result<()> {
        self.halt(&Error::Io("volume deleted".into()));
        let _st = self.state.write();
        self.handles.lock().clear();
        for d in [&self.sco_dir, &self.tlog_dir] {
            for n in self.fs.list(d).map_err(|e| io_err(d.display(), e))? {
                let p = d.join(&n);
                self.fs
                    .remove_file(&p)
                    .map_err(|e| io_err(p.display(), e))?;
            }
            self.fs.sync_dir(d).map_err(|e| io_err(d.display(), e))?;
        }
        if let Some(dir) = self.sco_dir.parent() {
            let p = dir.join(super::mds::MDS_FILE);
            match self.fs.remove_file(&p) {
                Ok(()) => self
                    .fs
                    .sync_dir(dir)
                    .map_err(|e| io_err(dir.display(), e))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p.display(), e)),
            }
        }
        Ok(())
    }

    /// Test knob: close TLogs once they are longer than `len` bytes.
    #[cfg(test)]
    pub(crate) fn set_tlog_roll_len(&self, len: u64) {
        self.tlog_roll_len.store(len, Ordering::Relaxed);
    }

    /// Test helper: the content of cluster `ca` as the MetaDataStore maps it, ignoring the size.
    #[cfg(test)]
    pub(crate) fn raw_cluster(&self, ca: u64) -> Result<Vec<u8>> {
        let st = self.state.read();
        let mut c = vec![0u8; CLUSTER_SIZE];
        if let Some(loc) = self.lookup(&st, ca)? {
            self.read_loc(&st, &loc, &mut c, 0)?;
        }
        Ok(c)
    }
}

/// Makes `dir` ready to receive a new volume (create, or a backend restart): its `sco/` and
/// `tlog/` directories exist, there is no TLog (else `Exists`), and a MetaDataStore left without
/// TLogs (by a create or restore that did not finish) is removed, since nothing there is a
/// volume. Returns the two directories.
pub(super) fn prepare_empty_dir(fs: &dyn LocalFs, dir: &Path) -> Result<(PathBuf, PathBuf)> {
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
    let mds_path = dir.join(super::mds::MDS_FILE);
    match fs.remove_file(&mds_path) {
        Ok(()) => fs.sync_dir(dir).map_err(|e| io_err(dir.display(), e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(mds_path.display(), e)),
    }
    Ok((sco_dir, tlog_dir))
}

/// Opens `path`; `None` if it does not exist (other errors are errors).
/// Writes the header stub of SCO `seq` (what an evicted SCO's local file holds) to a new file
/// at `path`, replacing one a crash left there, and makes its bytes durable (its name is
/// durable only after the directory's fsync).
fn write_sco_stub(fs: &dyn LocalFs, path: &Path, id: VolumeId, seq: u64) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path.display(), e)),
    }
    let f = fs.create_new(path).map_err(|e| io_err(path.display(), e))?;
    f.write_at(&ScoHeader { volume: id, seq }.encode(), 0)
        .map_err(|e| io_err(path.display(), e))?;
    f.sync_data().map_err(|e| io_err(path.display(), e))
}

/// Replaces SCO `seq`'s local file by its header stub (written aside, then renamed over it),
/// never changing the old file's bytes: it may be the backend's object too.
fn replace_sco_by_stub(fs: &dyn LocalFs, sco_dir: &Path, id: VolumeId, seq: u64) -> Result<()> {
    let stub = sco_dir.join(sco_stub_name(seq));
    write_sco_stub(fs, &stub, id, seq)?;
    let path = sco_dir.join(sco_name(seq));
    fs.rename(&stub, &path)
        .map_err(|e| io_err(path.display(), e))
}

fn open_if_exists(fs: &dyn LocalFs, path: &Path, what: &str) -> Result<Option<Arc<dyn LocalFile>>> {
    match fs.open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(what, e)),
    }
}

/// Whether sealed SCO `seq` is whole on local disk: exact length, header and footer matching
/// its ScoSealed entry (its clusters are checked one by one against their MD5s elsewhere). A
/// missing file is not whole; other I/O errors are errors.
fn sealed_sco_is_whole(
    fs: &dyn LocalFs,
    sco_dir: &Path,
    id: VolumeId,
    seq: u64,
    clusters: u32,
    crc: u32,
) -> Result<bool> {
    let what = format!("SCO {}", sco_name(seq));
    let Some(f) = open_if_exists(fs, &sco_dir.join(sco_name(seq)), &what)? else {
        return Ok(false);
    };
    let want = ScoFooter::offset(clusters) + SCO_FOOTER_LEN as u64;
    if f.file_len().map_err(|e| io_err(&what, e))? != want {
        return Ok(false);
    }
    let mut hb = vec![0u8; SCO_HEADER_LEN as usize];
    let mut fb = [0u8; SCO_FOOTER_LEN];
    f.read_at(&mut hb, 0).map_err(|e| io_err(&what, e))?;
    f.read_at(&mut fb, ScoFooter::offset(clusters))
        .map_err(|e| io_err(&what, e))?;
    let header_ok = ScoHeader::decode(&what, &hb).is_ok_and(|h| h.volume == id && h.seq == seq);
    let footer_ok = ScoFooter::decode(&what, &fb).is_ok_and(|foot| {
        foot == ScoFooter {
            seq,
            clusters,
            data_crc: crc,
        }
    });
    Ok(header_ok && footer_ok)
}

/// Bytes of SCO data [`repair_sealed_sco`] reads at a time.
const REPAIR_CHUNK: usize = 1 << 20;

/// A sealed SCO of the open TLog whose header or footer did not survive (a crash before the
/// seal was durable, or damage): when its clusters are all there with the data CRC its
/// ScoSealed entry names (each was also checked against its MD5), the header and footer are
/// written again, durably, and the seal stands. False when the data does not match: the caller
/// cuts the TLog there.
pub(super) fn repair_sealed_sco(
    fs: &dyn LocalFs,
    sco_dir: &Path,
    id: VolumeId,
    seq: u64,
    clusters: u32,
    crc: u32,
) -> Result<bool> {
    let what = format!("SCO {}", sco_name(seq));
    if clusters > MAX_SCO_CLUSTERS {
        // Entry::decode refuses such a count; never trust it to size a read.
        return Ok(false);
    }
    let Some(f) = open_if_exists(fs, &sco_dir.join(sco_name(seq)), &what)? else {
        return Ok(false);
    };
    let data_len = u64::from(clusters) * CLUSTER_SIZE_U64;
    if f.file_len().map_err(|e| io_err(&what, e))? < SCO_HEADER_LEN + data_len {
        return Ok(false);
    }
    // The data CRC over a bounded buffer, whatever the count says.
    let mut buf = vec![0u8; REPAIR_CHUNK];
    let (mut done, mut computed) = (0u64, 0u32);
    while done < data_len {
        let chunk = &mut buf[..(data_len - done).min(REPAIR_CHUNK as u64) as usize];
        let n = f
            .read_at(chunk, SCO_HEADER_LEN + done)
            .map_err(|e| io_err(&what, e))?;
        if n != chunk.len() {
            return Ok(false);
        }
        computed = crc32c::crc32c_append(computed, chunk);
        done += n as u64;
    }
    if computed != crc {
        return Ok(false);
    }
    tracing::warn!(sco = %what, "rewriting the header and footer of a sealed SCO whose data verifies");
    let footer = ScoFooter {
        seq,
        clusters,
        data_crc: crc,
    };
    f.write_at(&ScoHeader { volume: id, seq }.encode(), 0)
        .map_err(|e| io_err(&what, e))?;
    f.write_at(&footer.encode(), ScoFooter::offset(clusters))
        .map_err(|e| io_err(&what, e))?;
    f.set_len(ScoFooter::offset(clusters) + SCO_FOOTER_LEN as u64)
        .map_err(|e| io_err(&what, e))?;
    f.sync_data().map_err(|e| io_err(&what, e))?;
    Ok(true)
}

pub(super) struct ParsedTlog {
    /// (byte offset, entry) of every entry that verified, in order.
    pub(super) entries: Vec<(u64, Entry)>,
    /// Bytes up to the end of the last verified entry.
    valid_len: u64,
}

/// Parses a whole TLog. With `tail_may_tear`, parsing stops at the first entry that does not
/// verify (a torn tail); otherwise that is an error.
pub(super) fn parse_tlog(
    what: &str,
    data: &[u8],
    id: VolumeId,
    seq: u64,
    tail_may_tear: bool,
) -> Result<ParsedTlog> {
    let h = TlogHeader::decode(what, data).map_err(fmt_err)?;
    if h.volume != id || h.seq != seq {
        return Err(fmt_err(FormatError::Inconsistent {
            what: what.to_string(),
            reason: format!(
                "header names volume {} TLog {}, expected volume {id} TLog {seq}",
                h.volume, h.seq
            ),
        }));
    }
    let mut entries = Vec::new();
    let mut pos = TLOG_HEADER_LEN;
    let mut closed = false;
    while pos < data.len() {
        let ewhat = format!("{what} entry at byte {pos}");
        let decoded = if data.len() - pos < TLOG_ENTRY_LEN {
            Err(FormatError::Truncated {
                what: ewhat.clone(),
                len: (data.len() - pos) as u64,
                need: TLOG_ENTRY_LEN as u64,
            })
        } else {
            Entry::decode(&ewhat, &data[pos..pos + TLOG_ENTRY_LEN])
        };
        let e = match decoded {
            Ok(e) => e,
            Err(_) if tail_may_tear && !closed => break,
            Err(e) => return Err(fmt_err(e)),
        };
        if closed {
            return Err(fmt_err(FormatError::Inconsistent {
                what: ewhat,
                reason: "entry after TLogClosed".into(),
            }));
        }
        if let Entry::TlogClosed { crc } = e {
            let computed = crc32c::crc32c(&data[..pos]);
            if crc != computed {
                return Err(fmt_err(FormatError::Crc {
                    what: format!("{what} (whole TLog)"),
                    stored: crc,
                    computed,
                }));
            }
            closed = true;
        }
        entries.push((pos as u64, e));
        pos += TLOG_ENTRY_LEN;
    }
    Ok(ParsedTlog {
        valid_len: (TLOG_HEADER_LEN + entries.len() * TLOG_ENTRY_LEN) as u64,
        entries,
    })
}

struct ReplayCtx<'a> {
    fs: &'a dyn LocalFs,
    sco_dir: &'a Path,
    id: VolumeId,
}

impl ReplayCtx<'_> {
    fn apply(&self, rp: &mut Replay, what: &str, e: Entry) -> Result<()> {
        let bad = |reason: String| {
            fmt_err(FormatError::Inconsistent {
                what: what.to_string(),
                reason,
            })
        };
        match e {
            Entry::Cluster {
                address,
                sco,
                offset,
                md5: m,
            } => {
                if rp.sealed.contains(&sco) {
                    return Err(bad(format!(
                        "cluster in SCO {} after it was sealed",
                        sco_name(sco)
                    )));
                }
                let next = rp.sco_clusters.entry(sco).or_insert(0);
                if offset != *next {
                    return Err(bad(format!(
                        "cluster offset {offset} in SCO {}, expected {next}",
                        sco_name(sco)
                    )));
                }
                *next += 1;
                if address.saturating_mul(CLUSTER_SIZE_U64) >= rp.size {
                    return Err(bad(format!(
                        "cluster {address} beyond the volume size {}",
                        rp.size
                    )));
                }
                rp.ops.push((
                    rp.cur_tlog,
                    Op::Cluster(
                        address,
                        Loc {
                            sco,
                            offset,
                            md5: m,
                        },
                    ),
                ));
            }
            Entry::ScoSealed { sco, clusters, crc } => {
                let seen = rp.sco_clusters.get(&sco).copied().unwrap_or(0);
                if seen != clusters || rp.sealed.contains(&sco) {
                    return Err(bad(format!(
                        "SCO {} sealed with {clusters} clusters, {seen} logged",
                        sco_name(sco)
                    )));
                }
                let evicted = self.verify_sealed_sco(sco, clusters, crc)?;
                rp.sealed.insert(sco);
                rp.sealed_in.insert(sco, (rp.cur_tlog, clusters, evicted));
                rp.ops.push((
                    rp.cur_tlog,
                    Op::Sealed {
                        sco,
                        tlog: rp.cur_tlog,
                        clusters,
                        crc,
                    },
                ));
            }
            Entry::Resize { size } => {
                if size > MAX_VOLUME_SIZE {
                    return Err(bad(format!("size {size} above the maximum")));
                }
                let shrink = size < rp.size;
                rp.size = size;
                rp.ops.push((rp.cur_tlog, Op::Resize { size, shrink }));
            }
            Entry::TlogClosed { .. } => {}
        }
        Ok(())
    }

    /// A sealed SCO must exist with the exact length and a footer that matches its ScoSealed
    /// entry, or be an evicted SCO's stub (just its header; the data is on the backend).
    /// Returns whether it is a stub. (Its data CRC is checked by scrubbing, not at every
    /// restart.)
    fn verify_sealed_sco(&self, seq: u64, clusters: u32, crc: u32) -> Result<bool> {
        let what = format!("SCO {}", sco_name(seq));
        let path = self.sco_dir.join(sco_name(seq));
        let f = self
            .fs
            .open(&path)
            .map_err(|e| io_err(format!("{what} (sealed)"), e))?;
        let len = f.file_len().map_err(|e| io_err(&what, e))?;
        let want = ScoFooter::offset(clusters) + SCO_FOOTER_LEN as u64;
        if len == SCO_HEADER_LEN && len != want {
            // Eviction cuts a sealed SCO to its header only after it was on the backend; a sealed
            // SCO never has this length otherwise (sealing fdatasyncs the whole SCO first).
            let mut hb = vec![0u8; SCO_HEADER_LEN as usize];
            f.read_at(&mut hb, 0).map_err(|e| io_err(&what, e))?;
            let h = ScoHeader::decode(&what, &hb).map_err(fmt_err)?;
            if h.volume != self.id || h.seq != seq {
                return Err(fmt_err(FormatError::Inconsistent {
                    what,
                    reason: format!("evicted stub's header {h:?} names another SCO"),
                }));
            }
            return Ok(true);
        }
        if len != want {
            return Err(fmt_err(FormatError::Truncated {
                what: format!("{what} (sealed)"),
                len,
                need: want,
            }));
        }
        let mut hb = vec![0u8; SCO_HEADER_LEN as usize];
        let mut fb = [0u8; SCO_FOOTER_LEN];
        f.read_at(&mut hb, 0).map_err(|e| io_err(&what, e))?;
        f.read_at(&mut fb, ScoFooter::offset(clusters))
            .map_err(|e| io_err(&what, e))?;
        let h = ScoHeader::decode(&what, &hb).map_err(fmt_err)?;
        let foot = ScoFooter::decode(&what, &fb).map_err(fmt_err)?;
        if h.volume != self.id
            || h.seq != seq
            || foot
                != (ScoFooter {
                    seq,
                    clusters,
                    data_crc: crc,
                })
        {
            return Err(fmt_err(FormatError::Inconsistent {
                what,
                reason: format!("header/footer {h:?} {foot:?} disagree with the TLog (clusters {clusters}, crc {crc:08x})"),
            }));
        }
        Ok(false)
    }
}
