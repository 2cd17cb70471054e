//! The wire: one JSON request line, one JSON response line, both carrying the protocol
//! version.

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::offload::{OffloadCloneReport, OffloadStatsReport};
use crate::reports::{
    JobListReport, JobReport, SnapshotDeleteReport, SnapshotListReport, SnapshotReport,
    StatusReport, SyncReport, VolumeCloneReport, VolumeCreateReport, VolumeListReport,
    VolumeReport,
};

/// Version of the protocol spoken here; requests of another version are refused.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request line accepted, in bytes (newline included).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest response line the client accepts, in bytes (a list of 10,000 snapshots with a
/// little metadata each fits).
pub const MAX_RESPONSE: usize = 16 << 20;

// Wire types
// ---------------------------------------------------------------------------------------------

/// A request, as the `"op"` field names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The gateway's status: versions, uptime, data directory, capacity.
    Status,
    /// Put everything committed so far on the backend. With `wait` (the default) the answer
    /// comes once it is there; without, the sync starts and the answer comes at once.
    Sync {
        /// Wait for the sync to finish before answering.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// A scrub and GC pass (a job) over the volume at `path`, or over every volume: SCOs
    /// mostly garbage are compacted, garbage objects deleted once `GC_Grace` passed. With
    /// `wait`, answered once it ended.
    Scrub {
        /// The volume; every volume when absent.
        #[serde(default)]
        path: Option<String>,
        /// Answer once it is done; without, answer at once with its job.
        #[serde(default)]
        wait: bool,
    },
    /// A check of the backend against the namespace (a job): every file's extents exist, every
    /// volume's manifest, checkpoint and TLogs read and verified, with `deep` every cluster of
    /// every volume read back and MD5-checked; damage and orphans reported in the job's
    /// `result` (an [`FsckReport`](crate::FsckReport)). With `repair`, orphans are moved to
    /// `quarantine/` (copied, then deleted); nothing else changes. With `wait`, answered once
    /// it ended.
    Fsck {
        /// Read every cluster back.
        #[serde(default)]
        deep: bool,
        /// Quarantine the orphans.
        #[serde(default)]
        repair: bool,
        /// Answer once it is done.
        #[serde(default)]
        wait: bool,
    },
    /// State of the volume at `path` (absolute, inside the Strata namespace).
    VolumeInfo {
        /// e.g. `/vm1/disk-flat.vmdk`.
        path: String,
    },
    /// Every volume in the namespace, by path, with what it is in a chain of clones; with
    /// `all`, also the volumes removed while clones read them (hidden).
    VolumeList {
        /// Also the hidden volumes.
        #[serde(default)]
        all: bool,
    },
    /// Clone the volume at `source` as a new volume at `path` (its name must end in one of the
    /// gateway's `Volume_Suffixes`; its directory must exist), at snapshot `snapshot`, or,
    /// without one, at a template's snapshot or a snapshot taken for the purpose.
    VolumeClone {
        /// The volume cloned.
        source: String,
        /// The new volume.
        path: String,
        /// The snapshot of `source`.
        #[serde(default)]
        snapshot: Option<String>,
    },
    /// Make the clone at `path` independent of the volumes it reads (a job).
    VolumeFlatten {
        /// The clone.
        path: String,
        /// Answer once it is done (the default); without, answer at once with its job.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// Make the volume at `path` a template: read-only, cloned without naming a snapshot.
    VolumeTemplate {
        /// The volume.
        path: String,
    },
    /// Create a volume of `size` bytes at `path` (its name must end in one of the gateway's
    /// `Volume_Suffixes`; its directory must exist).
    VolumeCreate {
        /// e.g. `/vm1/disk-flat.vmdk`.
        path: String,
        /// Size in bytes.
        size: u64,
    },
    /// Take a snapshot named `name` of the volume at `path`, with user metadata.
    SnapshotCreate {
        /// The volume.
        path: String,
        /// The snapshot's name, unique within the volume.
        name: String,
        /// `(key, value)` pairs.
        #[serde(default)]
        meta: Vec<(String, String)>,
    },
    /// Every snapshot of the volume at `path`, oldest first.
    SnapshotList {
        /// The volume.
        path: String,
    },
    /// Snapshot `name` of the volume at `path`.
    SnapshotInfo {
        /// The volume.
        path: String,
        /// The snapshot.
        name: String,
    },
    /// Roll the volume at `path` back to snapshot `name` (refused while an NFSv4 client holds
    /// it open, unless `force`).
    SnapshotRollback {
        /// The volume.
        path: String,
        /// The snapshot.
        name: String,
        /// Roll back even while a client holds the volume open.
        #[serde(default)]
        force: bool,
        /// Answer once it is done (the default); without, answer at once with its job.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// The running jobs and the last finished ones.
    JobList,
    /// One job.
    JobShow {
        /// Its id.
        id: u64,
    },
    /// Ask a job to stop (where stopping leaves everything consistent; see each operation).
    JobCancel {
        /// Its id.
        id: u64,
    },
    /// Delete snapshot `name` of the volume at `path`.
    SnapshotDelete {
        /// The volume.
        path: String,
        /// The snapshot.
        name: String,
    },
    /// VAAI-NAS "clone file": the volume at `source` cloned as a new volume at `path` (a
    /// name with a volume suffix, in an existing directory), at a snapshot of `source` taken
    /// now. Fast (the default): the new volume shares every byte with `source` until one of
    /// them writes it, nothing copied. With `full`, the clone is then flattened (a job): once
    /// it is done, the new volume reads nothing of `source`.
    OffloadClone {
        /// The volume cloned.
        source: String,
        /// The new volume.
        path: String,
        /// Flatten the clone (a full copy).
        #[serde(default)]
        full: bool,
        /// With `full`: answer once the flatten ended (the default); without, at once.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// VAAI-NAS "reserve space": ALLOCATE over the whole volume at `path` (its clusters not
    /// written yet are counted as reserved; a thick-provisioned disk).
    OffloadReserve {
        /// The volume.
        path: String,
    },
    /// VAAI-NAS "extended statistics": the volume's size, used bytes, and how much of it is
    /// its own and how much shared with the volumes it was cloned from.
    OffloadStats {
        /// The volume.
        path: String,
    },
}

fn yes() -> bool {
    true
}

/// A request line: the version and the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestLine {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// The result of a successful request, keyed by the request's op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to [`Request::Sync`].
    Sync(SyncReport),
    /// Answer to [`Request::VolumeInfo`].
    VolumeInfo(VolumeReport),
    /// Answer to [`Request::VolumeList`].
    VolumeList(VolumeListReport),
    /// Answer to [`Request::VolumeCreate`].
    VolumeCreate(VolumeCreateReport),
    /// Answer to [`Request::VolumeClone`].
    VolumeClone(VolumeCloneReport),
    /// Answer to [`Request::SnapshotCreate`], [`Request::SnapshotInfo`] and
    /// [`Request::SnapshotRollback`] (the snapshot rolled back to).
    Snapshot(SnapshotReport),
    /// Answer to [`Request::SnapshotList`].
    SnapshotList(SnapshotListReport),
    /// Answer to [`Request::SnapshotDelete`].
    SnapshotDelete(SnapshotDeleteReport),
    /// Answer to [`Request::JobList`].
    JobList(JobListReport),
    /// Answer to [`Request::JobShow`], [`Request::JobCancel`], and to a request that started a
    /// job without waiting for it.
    Job(JobReport),
    /// Answer to [`Request::OffloadClone`].
    OffloadClone(OffloadCloneReport),
    /// Answer to [`Request::OffloadStats`].
    OffloadStats(OffloadStatsReport),
}

/// A response line: the version and either a result or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseLine {
    /// [`PROTOCOL_VERSION`] of the server.
    pub version: u32,
    /// The result of a request that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Reply>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}
