//! The FileDriver: regular files as 1 MiB extents on an [`ObjectStore`].
//!
//! Extent `i` of file `f` is the object `<f as 16 hex>.<i as 8 hex>`. The file's size and its
//! extent map (which extents exist on the backend) belong to the caller's metadata; this crate
//! never lists the backend. See `FORMATS.md`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use strata_backend::ObjectStore;

/// Size of one extent.
pub const EXTENT_SIZE: u64 = 1 << 20;

/// Identifies a file on the backend (the engine uses the inode number).
pub type FileId = u64;

/// Extent indices of one file that exist on the backend. Kept by the caller.
pub type ExtentMap = BTreeSet<u64>;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the FileDriver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] strata_backend::Error),
    /// The local extent cache failed.
    #[error("extent cache I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The local cache disk is full.
    #[error("no space left in the extent cache")]
    NoSpace,
}

/// Configuration of a [`FileDriver`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the local extent cache (emptied at open: it holds no committed state).
    pub cache_dir: PathBuf,
    /// Upper bound of the cache in bytes.
    pub cache_bytes: u64,
}

/// Regular files as extents. `Send + Sync`; safe to call from many threads.
#[derive(Debug)]
pub struct FileDriver {
    #[allow(dead_code)]
    store: Arc<dyn ObjectStore>,
    #[allow(dead_code)]
    config: Config,
    #[allow(dead_code)]
    rt: tokio::runtime::Handle,
}

impl FileDriver {
    /// Opens the driver on `store`, running backend I/O on `rt` (callers are never inside it).
    pub fn open(store: Arc<dyn ObjectStore>, config: Config, rt: tokio::runtime::Handle) -> Result<FileDriver> {
        Ok(FileDriver { store, config, rt })
    }

    /// Fills `buf` from `offset`; holes (extents not in `map` and not cached) read as zeros.
    /// The caller clamps `buf` at the file size.
    pub fn read(&self, _file: FileId, _map: &ExtentMap, _offset: u64, _buf: &mut [u8]) -> Result<()> {
        todo!()
    }

    /// Writes `data` at `offset` into the cache (dirty until `sync`).
    pub fn write(&self, _file: FileId, _map: &ExtentMap, _offset: u64, _data: &[u8]) -> Result<()> {
        todo!()
    }

    /// Uploads every dirty extent of `file` and adds its index to `map`. When it returns, the
    /// uploaded extents are durable on the backend; the caller then persists `map`.
    pub fn sync(&self, _file: FileId, _map: &mut ExtentMap) -> Result<()> {
        todo!()
    }

    /// Cuts the file to `new_size`: cached data beyond it is dropped, the tail of the last extent
    /// is zeroed (made dirty), and the indices beyond the last extent are removed from `map` and
    /// returned. The caller persists `map`, then calls [`FileDriver::delete_extents`].
    pub fn truncate(&self, _file: FileId, _map: &mut ExtentMap, _new_size: u64) -> Result<Vec<u64>> {
        todo!()
    }

    /// Deletes these extents from the backend (missing ones are fine).
    pub fn delete_extents(&self, _file: FileId, _extents: &[u64]) -> Result<()> {
        todo!()
    }

    /// Drops the file's cache and deletes all its extents in `map` from the backend.
    pub fn delete(&self, _file: FileId, _map: &ExtentMap) -> Result<()> {
        todo!()
    }
}
