//! Strata's engine: the namespace in redb, object data (files through the FileDriver, volumes
//! through the VolumeDriver) and the blocking [`Filesystem`] facade that the FSAL calls.
//!
//! The engine knows nothing of Ganesha. See `FORMATS.md` for the redb tables.

#![warn(missing_docs)]

mod data;
mod error;
mod fs;
pub mod mgmt;
mod namespace;
mod owner;
mod runtime;
mod types;
pub mod volume;
mod volumes;

pub use error::{Error, Result};
pub use fs::{
    BackendConfig, EngineConfig, Filesystem, OpenOptions, DEFAULT_VOLUME_SUFFIXES,
    EXTENT_CACHE_DIR, FILES_PREFIX, METADATA_FILE,
};
pub use owner::{OwnerRecord, OWNER_KEY};
pub use types::*;
pub use volumes::{VOLUMES_DIR, VOLUMES_PREFIX};

/// redb, re-exported so that callers can implement [`redb::StorageBackend`] for
/// [`OpenOptions::metadata_backend`] without depending on it themselves.
pub use redb;
