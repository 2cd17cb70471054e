//! The VolumeDriver: VM disks ("volumes") kept as 4 KiB clusters logged into SCOs (Storage
//! Container Objects, the data) and TLogs (transaction logs, the metadata), DESIGN §5.
//!
//! - [`format`](mod@format): the SCO and TLog formats (documented byte by byte in `engine/FORMATS.md`).
//! - [`localfs`]: the local-file layer all local I/O goes through, with a real implementation
//!   and a crash-simulating one for tests.
//! - [`Volume`]: the write path, the MetaDataStore, group commit, reads, resize and local restart.
//! - `mds`: the MetaDataStore in redb (`mds.redb`) under the in-memory cork; `checkpoint`: its
//!   paged, incremental checkpoints on the backend.
//! - [`cache`]: the SCO cache's eviction policy (disposable SCOs, LFU between watermarks).
//! - [`manifest`] and [`Volume::backup`] / [`Volume::restore`]: the backend pipeline (ordered
//!   upload of SCOs, TLogs, manifest) and backend restart.
//!
//! The facade routes `Kind::Volume` data here: `read`, `write(stable)`, `resize`, `sync`,
//! `size`, `space_used`.

mod backup;
mod bounded_get;
pub mod cache;
mod checkpoint;
pub mod cluster_cache;
mod core;
mod dirsync;
pub mod format;
pub mod localfs;
pub mod manifest;
mod mds;

#[cfg(test)]
pub(crate) mod decoder_tests;
#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod eviction_tests;
#[cfg(test)]
mod tests;

pub use self::backup::{remove_local_state, restore_interrupted, BackupReport, RESTORE_MARKER};
pub use self::cache::{evict_lfu, EvictionReport};
pub use self::core::{
    EvictionCandidate, FsyncSite, Volume, VolumeOptions, VolumeStats, DEFAULT_CHECKPOINT_TLOGS,
    DEFAULT_SCO_SIZE, DEFAULT_TLOG_SCOS, MAX_VOLUME_SIZE,
};
pub use self::format::{FormatError, VolumeId, CLUSTER_SIZE};
pub use self::localfs::{CrashMode, LocalFile, LocalFs, SimFs, SimRng, StdFs};
pub use self::mds::MDS_FILE;
