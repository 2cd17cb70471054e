//! Strata's engine: the namespace in redb, object data (files through the FileDriver, volumes
//! through the VolumeDriver) and the blocking [`Filesystem`] facade that the FSAL calls.
//!
//! The engine knows nothing of Ganesha. See `FORMATS.md` for the redb tables.

mod error;
mod fs;
mod types;

pub use error::{Error, Result};
pub use fs::{BackendConfig, EngineConfig, Filesystem, DEFAULT_VOLUME_SUFFIXES};
pub use types::*;
