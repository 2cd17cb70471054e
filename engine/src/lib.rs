//! Strata's engine: the namespace in redb, object data (files through the FileDriver, volumes
//! through the VolumeDriver) and the blocking [`Filesystem`] facade that the FSAL calls.
//!
//! The engine knows nothing of Ganesha. See `FORMATS.md` for the redb tables.

#![warn(missing_docs)]

#[cfg(test)]
mod alloc_probe;
mod data;
#[cfg(test)]
mod decoder_tests;
mod error;
mod file_data;
mod fs;
mod jobs;
mod journal;
pub mod mgmt;
mod namespace;
mod niceness;
mod ns_backend;
mod owner;
mod progress;
mod registry;
mod runtime;
mod test_knobs;
mod types;
pub mod volume;

/// Unit tests record their largest allocations (see `alloc_probe`).
#[cfg(test)]
#[global_allocator]
static ALLOC_PROBE: alloc_probe::Probe = alloc_probe::Probe;

pub use error::{Error, Result};
pub use fs::{
    BackendConfig, ChangeHook, CloneInfo, EngineConfig, Filesystem, FsckOptions, HiddenVolume,
    OpenOptions, FILES_PREFIX, QUARANTINE_PREFIX,
};
pub use namespace::{XATTR_NAME_MAX, XATTR_OBJECT_MAX, XATTR_VALUE_MAX};
pub use ns_backend::{restore, RestoreOptions, RestoreReport, TAKE_OVER_PROBE};
pub use owner::{OwnerRecord, OWNER_KEY};
pub use progress::{NoProgress, Progress};
pub use registry::{VOLUMES_DIR, VOLUMES_PREFIX};
/// The S3 backend's configuration types (from strata-backend), for [`BackendConfig::S3`].
pub use strata_backend::{CredentialsSource, S3Config};
pub use types::*;

/// redb, re-exported so that callers can implement [`redb::StorageBackend`] for
/// [`OpenOptions::metadata_backend`] without depending on it themselves.
pub use redb;
