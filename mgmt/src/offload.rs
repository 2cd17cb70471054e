//! The VAAI-NAS-style offload verbs' answers: what an ESXi host plugin (or any storage
//! orchestrator) gets back from [`Request::OffloadClone`](crate::Request::OffloadClone),
//! [`Request::OffloadReserve`](crate::Request::OffloadReserve) (a
//! [`VolumeReport`](crate::VolumeReport)) and
//! [`Request::OffloadStats`](crate::Request::OffloadStats). The verbs compose the snapshot,
//! clone, flatten and ALLOCATE operations; README "ESXi" documents them on the wire.

use serde::{Deserialize, Serialize};

use crate::reports::{JobReport, VolumeCloneReport};

/// Answer to [`Request::OffloadClone`](crate::Request::OffloadClone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadCloneReport {
    /// The new volume, cloned at a snapshot of the source taken for the purpose.
    pub clone: VolumeCloneReport,
    /// A full clone: the flatten job that makes it independent of its source (done when the
    /// request waited; otherwise follow it with `job_show`). `None` for a fast clone.
    #[serde(default)]
    pub flatten: Option<JobReport>,
}

/// Answer to [`Request::OffloadStats`](crate::Request::OffloadStats): a volume's space by what
/// it shares with the volumes it was cloned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadStatsReport {
    /// The path asked about.
    pub path: String,
    /// Its inode number (NFS fileid).
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes holding data (its mapped 4 KiB clusters, its own and those it reads of its
    /// ancestors): what a guest wrote, as the volume sees it.
    pub used_bytes: u64,
    /// Of `used_bytes`, those in the volume's own storage: written since it was cloned (or
    /// copied up by a flatten). All of `used_bytes` for a volume that is no clone.
    pub unshared_bytes: u64,
    /// Of `used_bytes`, those it reads from the volumes it was cloned from (`used_bytes -
    /// unshared_bytes`): freed by nothing done to this volume alone.
    pub shared_bytes: u64,
    /// Bytes reserved by ALLOCATE (a reserve) and not written yet.
    pub reserved_bytes: u64,
    /// How many volumes it reads from (0: no clone, or flattened).
    pub ancestors: u64,
}
