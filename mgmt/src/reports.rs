//! The answers' payloads: the gateway's status, a sync, a volume's state.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Capacity of the data directory's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceReport {
    /// Total bytes.
    pub total_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// Bytes available to unprivileged users.
    pub avail_bytes: u64,
    /// Total inodes.
    pub total_files: u64,
    /// Free inodes.
    pub free_files: u64,
}

/// Answer to [`Request::Status`](crate::Request::Status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Version of the engine serving the request (the strata crates' version).
    pub gateway_version: String,
    /// The protocol version the server speaks.
    pub protocol_version: u32,
    /// PID of the gateway process (ganesha.nfsd).
    pub pid: u32,
    /// Seconds since the management server started (with the engine).
    pub uptime_secs: u64,
    /// The engine's data directory.
    pub data_dir: PathBuf,
    /// The object backend, e.g. `local /var/lib/strata/backend`.
    pub backend: String,
    /// The namespace's identity (the NFS fsid).
    pub fsid: u64,
    /// Capacity of the data directory.
    pub space: SpaceReport,
    /// Management requests served so far (this one included).
    pub requests: u64,
    /// The cluster cache shared by all volumes.
    #[serde(default)]
    pub cluster_cache: ClusterCacheReport,
    /// The decoded cluster-map pages shared by all volumes' reads.
    #[serde(default)]
    pub map_cache: MapCacheReport,
    /// What losing the local disk now would lose.
    #[serde(default)]
    pub not_on_backend: RecoveryPointReport,
}

/// Committed data not yet on the backend, in [`StatusReport`], and how old the namespace's
/// image on the backend is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPointReport {
    /// Bytes of the volumes' SCOs and TLogs not yet on the backend.
    pub volume_bytes: u64,
    /// How long ago the oldest of those changes was logged, milliseconds (None: none).
    pub volume_age_ms: Option<u64>,
    /// Bytes of the file journal holding regular files' records not yet applied (at most).
    pub file_bytes: u64,
    /// How long ago the oldest of those was written, milliseconds (None: none).
    pub file_age_ms: Option<u64>,
    /// How long ago the namespace image on the backend was taken, milliseconds (None: there is
    /// none yet).
    #[serde(default)]
    pub namespace_image_age_ms: Option<u64>,
    /// Whether the namespace changed since that image.
    #[serde(default)]
    pub namespace_changed: bool,
}

/// The content-addressed cluster cache in [`StatusReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCacheReport {
    /// Its bound in bytes (`Cluster_Cache_Size`; 0: off).
    pub capacity: u64,
    /// Bytes of cluster data held.
    pub bytes: u64,
    /// Lookups that found the cluster (a backend read saved).
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
}

/// The cache of decoded cluster-map pages in [`StatusReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapCacheReport {
    /// Its bound in bytes (`Map_Cache_Size`; 0: off).
    pub capacity: u64,
    /// Bytes of pages held.
    pub bytes: u64,
    /// Page lookups answered from memory.
    pub hits: u64,
    /// Page lookups that read a volume's `mds.redb`.
    pub misses: u64,
}

/// Answer to [`Request::Sync`](crate::Request::Sync).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// True when the answer waited for the sync: everything committed before the request is
    /// on the backend. False: the sync was started in the background.
    pub waited: bool,
    /// Time the sync took, in milliseconds (0 when not waited for).
    pub elapsed_ms: u64,
    /// The sync's job (see `strata job show`).
    #[serde(default)]
    pub job: Option<u64>,
}

/// Answer to [`Request::VolumeInfo`](crate::Request::VolumeInfo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeReport {
    /// The path asked about.
    pub path: String,
    /// Its inode number (NFS fileid).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Bytes of data stored for it (mapped clusters).
    pub space_used: u64,
    /// Bytes ALLOCATE reserved that hold no data yet (allocated = `space_used` + this).
    #[serde(default)]
    pub reserved_bytes: u64,
    /// Bytes written locally and not yet on the backend.
    pub pending_backend_bytes: u64,
    /// How long ago the oldest change not yet on the backend was logged, milliseconds (None:
    /// every change is there): with `pending_backend_bytes`, what losing the local disk now
    /// would lose of this volume.
    #[serde(default)]
    pub pending_backend_age_ms: Option<u64>,
    /// Commits since the gateway opened it.
    pub commits: u64,
    /// Group-commit rounds since the gateway opened it.
    pub commit_rounds: u64,
    /// Of those, rounds that fdatasynced only the write-ahead log of small commits.
    #[serde(default)]
    pub wal_rounds: u64,
    /// Writes after which a COMMIT was expected (the same number of writes as between the
    /// last two COMMITs): the write-ahead log's writeback was started then.
    #[serde(default)]
    pub expected_commits: u64,
    /// Clusters written since the gateway opened it.
    pub clusters_written: u64,
    /// Mapped clusters unmapped since the gateway opened it: holes punched (DEALLOCATE, a
    /// guest's discard) and clusters of zeros written (`Zero_Detect`).
    #[serde(default)]
    pub clusters_unmapped: u64,
    /// SCOs sealed since the gateway opened it.
    pub scos_sealed: u64,
    /// Read cache hits.
    pub cache_hits: u64,
    /// Read cache misses.
    pub cache_misses: u64,
    /// `cache_hits / (cache_hits + cache_misses)`, absent before the first cached read.
    pub cache_hit_rate: Option<f64>,
    /// Clusters of evicted SCOs served by the cluster cache instead of the backend.
    #[serde(default)]
    pub cluster_cache_hits: u64,
    /// TLogs replayed when the volume was opened.
    #[serde(default)]
    pub tlogs_replayed: u64,
    /// The newest TLog applied to the on-disk MetaDataStore.
    #[serde(default)]
    pub applied_tlog: u64,
    /// The newest metadata checkpoint on the backend (0: none).
    #[serde(default)]
    pub checkpoint_tlog: u64,
    /// MetaDataStore entries still corked in memory.
    #[serde(default)]
    pub corked_clusters: u64,
    /// Writes that waited for the upload (paced, or at the write buffer's hard mark).
    #[serde(default)]
    pub writes_paced: u64,
    /// Their total wait, milliseconds.
    #[serde(default)]
    pub pacing_delay_ms: u64,
    /// Writes answered DELAY (buffer full, backend stalled).
    #[serde(default)]
    pub writes_refused: u64,
    /// The largest backlog a write saw, bytes.
    #[serde(default)]
    pub peak_backlog: u64,
    /// The measured upload rate, bytes per second.
    #[serde(default)]
    pub upload_rate: u64,
    /// Scrubbing and garbage collection.
    #[serde(default)]
    pub scrub: ScrubInfoReport,
}

/// A volume's scrubbing and garbage collection, in [`VolumeReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubInfoReport {
    /// Clusters superseded that nothing reads any more, still on the backend.
    pub dead_clusters: u64,
    /// Clusters superseded that a snapshot or a clone still reads.
    pub pinned_clusters: u64,
    /// Backend objects marked garbage, waiting for `GC_Grace`.
    pub garbage_objects: u64,
    /// Completed passes.
    pub passes: u64,
    /// When the last pass finished, seconds since the Unix epoch (0: never).
    pub last_finished_secs: u64,
    /// How long it took, milliseconds.
    pub last_millis: u64,
    /// SCOs compacted (or dropped whole), all passes.
    pub scos_compacted: u64,
    /// Backend bytes reclaimed, all passes.
    pub reclaimed_bytes: u64,
    /// Backend objects deleted, all passes.
    pub objects_deleted: u64,
}

/// One snapshot of a volume: answer to [`Request::SnapshotCreate`](crate::Request::SnapshotCreate)
/// and [`Request::SnapshotInfo`](crate::Request::SnapshotInfo), and an item of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// The volume's path.
    pub path: String,
    /// The snapshot's name.
    pub name: String,
    /// Its id: unique within the volume, growing in the order snapshots were taken.
    pub id: u64,
    /// The volume as of the end of this TLog.
    pub tlog: u64,
    /// When it was taken, seconds since the Unix epoch.
    pub created_secs: i64,
    /// ... and nanoseconds.
    pub created_nsecs: u32,
    /// User metadata, `(key, value)` pairs.
    pub meta: Vec<(String, String)>,
    /// Bytes written to the volume between the previous snapshot and this one.
    pub bytes_since_previous: u64,
    /// Its data and record are on the backend: a backend restart keeps it.
    pub on_backend: bool,
}

/// Answer to [`Request::SnapshotList`](crate::Request::SnapshotList).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotListReport {
    /// The volume's path.
    pub path: String,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<SnapshotReport>,
}

/// Answer to [`Request::SnapshotDelete`](crate::Request::SnapshotDelete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDeleteReport {
    /// The volume's path.
    pub path: String,
    /// The snapshot deleted.
    pub name: String,
}

/// One volume of [`VolumeListReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeListItem {
    /// Its path (a volume with several names is listed once per name).
    pub path: String,
    /// Its inode number (NFS fileid).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// For a template, the snapshot clones are made at.
    #[serde(default)]
    pub template: Option<String>,
    /// For a clone, the volume it was cloned from: its path, or `hidden:<ino>` once removed.
    #[serde(default)]
    pub parent: Option<String>,
    /// For a clone, the inode numbers of every volume whose data it reads, oldest first.
    #[serde(default)]
    pub ancestors: Vec<u64>,
}

/// A volume removed from the namespace whose data stays because clones read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenVolumeItem {
    /// Its inode number (its backend namespace is `volumes/<ino as 16 hex>/`).
    pub ino: u64,
    /// When it was removed, in seconds since the Unix epoch.
    pub removed_secs: i64,
    /// The paths of the clones reading it (`hidden:<ino>` for hidden ones).
    pub readers: Vec<String>,
}

/// Answer to [`Request::VolumeList`](crate::Request::VolumeList).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeListReport {
    /// Every volume, by path (directories in name order, depth first).
    pub volumes: Vec<VolumeListItem>,
    /// With `all`: the hidden volumes.
    #[serde(default)]
    pub hidden: Vec<HiddenVolumeItem>,
}

/// Answer to [`Request::VolumeClone`](crate::Request::VolumeClone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCloneReport {
    /// The new volume's path.
    pub path: String,
    /// Its inode number (NFS fileid).
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The volume cloned.
    pub source: String,
    /// The snapshot of `source` it was cloned at.
    pub snapshot: String,
}

/// Answer to [`Request::VolumeCreate`](crate::Request::VolumeCreate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCreateReport {
    /// The new volume's path.
    pub path: String,
    /// Its inode number (NFS fileid).
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// One job: a long operation of the gateway (a sync, a rollback), with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReport {
    /// Its id, growing from 1 in each gateway run.
    pub id: u64,
    /// What it does: `sync`, `rollback`.
    pub kind: String,
    /// What it works on (`/` for the whole gateway, a volume's path, `path@snapshot`).
    pub target: String,
    /// `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Steps done...
    pub done: u64,
    /// ... of this many (it may grow while the job learns more).
    pub total: u64,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started, seconds since the Unix epoch.
    pub started_secs: i64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_secs: Option<i64>,
    /// What a job that reports more than done or failed found (an fsck: its
    /// [`FsckReport`]), once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// What `strata fsck` found: the `result` of its job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    /// Objects on the backend.
    pub objects: u64,
    /// Regular files checked (their extents exist).
    pub files: u64,
    /// Volumes checked (manifest, checkpoint, TLogs; with `deep`, every cluster).
    pub volumes: u64,
    /// Whether every cluster was read back.
    pub deep: bool,
    /// Bytes of volume data read back (`deep`).
    pub bytes_read: u64,
    /// Objects missing or damaged.
    pub damage: Vec<FsckFinding>,
    /// Objects nothing in the namespace refers to.
    pub orphans: Vec<FsckFinding>,
    /// Orphans moved to `quarantine/` (`repair`).
    pub quarantined: u64,
    /// What was not checked, and why.
    pub notes: Vec<String>,
}

/// One object `strata fsck` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckFinding {
    /// Its key on the backend (or the prefix of a volume's objects).
    pub key: String,
    /// What is wrong with it.
    pub what: String,
}

/// Answer to [`Request::JobList`](crate::Request::JobList).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobListReport {
    /// Running jobs and the last finished ones, by id.
    pub jobs: Vec<JobReport>,
}
