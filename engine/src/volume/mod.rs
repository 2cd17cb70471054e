//! The VolumeDriver: VM disks ("volumes") kept as 4 KiB clusters logged into SCOs (Storage
//! Container Objects, the data) and TLogs (transaction logs, the metadata), DESIGN §5.
//!
//! One `Volume` type, its methods split by concern, one file each:
//!
//! - `state`: the type and the state behind its lock; `options`: `VolumeOptions`;
//!   `stats`: `VolumeStats`; `create`: creating and destroying a volume.
//! - `write`: writes and resizes (read-modify-write of partial clusters); `log`: appending to
//!   the open SCO and TLog, sealing SCOs, closing TLogs; `read`: the read path (local SCOs, or
//!   the cluster cache and the backend for evicted ones).
//! - `commit`: group commit and every fsync site (`FsyncSite`); `wal`: the write-ahead log
//!   that makes a small commit durable with one fdatasync.
//! - `restart`: opening a volume from its local files, in numbered steps (replay, repair).
//! - `evict`: replacing a disposable SCO by its stub; `cache`: the eviction policy (LFU
//!   between watermarks); `cluster_cache`: the content-addressed cache of clusters read from
//!   the backend; `page_cache`: dropping the OS page cache of SCOs nothing reads any more.
//! - `verify`: the online check of everything kept locally.
//! - `mds`: the MetaDataStore (redb store, the in-memory cork, backend checkpoints).
//! - `backend`: the ordered upload to the backend, backend restart, the manifest.
//! - `format`: the SCO and TLog formats (byte by byte in `engine/FORMATS.md`);
//!   `localfs`: the local-file layer all local I/O goes through, with a real implementation
//!   and a crash-simulating one for tests; `layout`: the names in a volume's directory;
//!   `files` and `dirsync`: helpers for local files.
//!
//! The facade routes `Kind::Volume` data here: `read`, `write(stable)`, `resize`, `sync`,
//! `size`, `space_used`.

#![warn(clippy::cast_possible_truncation)]

mod backend;
pub(crate) mod cache;
pub(crate) mod clone;
pub(crate) mod cluster_cache;
mod commit;
mod create;
mod deferred;
mod dirsync;
mod evict;
mod expected_commit;
pub(crate) mod files;
pub(crate) mod format;
mod int;
pub(crate) mod layout;
pub(crate) mod localfs;
mod log;
mod mds;
mod open_files;
mod options;
mod page_cache;
mod read;
mod restart;
pub(crate) mod scrub;
pub(crate) mod snapshot;
mod space;
mod state;
mod stats;
mod verify;
mod wal;
mod write;

#[cfg(test)]
mod clone_tests;
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
pub(crate) mod decoder_tests;
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod durability_tests;
#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod eviction_tests;
#[cfg(test)]
mod expected_commit_tests;
#[cfg(test)]
mod hash_tests;
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod map_cache_tests;
#[cfg(test)]
mod recovery_point_tests;
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod scrub_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod space_tests;
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests;

// What other crates see: the local-file layer (a test or an embedder gives the engine a
// crash-simulating one through `OpenOptions::volume_fs`), the restore marker a test plants, and
// the cluster hash. Everything else is the engine's own.
pub use self::format::{ClusterHash, FormatError, HashAlg};
pub use self::layout::RESTORE_MARKER;
pub use self::localfs::{CrashMode, LocalFile, LocalFs, SimFs, SimRng, StdFs};
pub(crate) use self::mds::map_cache::{MapCache, MapCacheStats};

pub(crate) use self::backend::manifest;
pub(crate) use self::backend::{remove_local_state, restore_interrupted};
pub(crate) use self::cache::evict_lfu;
pub(crate) use self::format::VolumeId;
pub(crate) use self::format::{le_u32, le_u64};
pub(crate) use self::options::VolumeOptions;
pub(crate) use self::options::{table_default, table_text};
pub(crate) use self::space::is_zeros;
pub(crate) use self::state::Volume;
