//! The [`Filesystem`] facade: blocking, `Send + Sync`, called from Ganesha's worker threads.

use std::path::PathBuf;

use crate::error::Result;
use crate::types::*;

/// Name suffixes that make a new regular file a volume (DESIGN §3).
pub const DEFAULT_VOLUME_SUFFIXES: &[&str] =
    &["-flat.vmdk", "-delta.vmdk", "-sesparse.vmdk", ".vswp", ".raw", ".img", ".qcow2"];

/// Where object data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// A local directory.
    Local {
        /// The directory.
        dir: PathBuf,
    },
}

/// Engine configuration (built by the FSAL from the `STRATA { }` block).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Local state: redb file, caches, sockets.
    pub data_dir: PathBuf,
    /// The object backend.
    pub backend: BackendConfig,
    /// Name suffixes that make a new regular file a volume.
    pub volume_suffixes: Vec<String>,
    /// Bound of the FileDriver's local extent cache, bytes.
    pub extent_cache_size: u64,
    /// Bound of redb's page cache, bytes.
    pub metadata_cache_size: u64,
}

impl EngineConfig {
    /// Defaults of DESIGN §7 for a data directory, with the local backend at `<data_dir>/backend`.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        let data_dir = data_dir.into();
        EngineConfig {
            backend: BackendConfig::Local { dir: data_dir.join("backend") },
            data_dir,
            volume_suffixes: DEFAULT_VOLUME_SUFFIXES.iter().map(|s| s.to_string()).collect(),
            extent_cache_size: 1 << 30,
            metadata_cache_size: 64 << 20,
        }
    }
}

/// The filesystem facade. All methods block; none may be called from inside the engine's
/// tokio runtime.
#[derive(Debug)]
pub struct Filesystem {}

#[allow(unused_variables)]
impl Filesystem {
    /// Opens (or creates) the filesystem described by `config`.
    pub fn open(config: EngineConfig) -> Result<Filesystem> {
        todo!()
    }
    /// Handle of the root directory.
    pub fn root(&self) -> Handle {
        todo!()
    }
    /// Looks `name` up in `dir` ("." and ".." included).
    pub fn lookup(&self, dir: Handle, name: &[u8]) -> Result<Attr> {
        todo!()
    }
    /// Resolves an absolute path inside the namespace ("/" is the root).
    pub fn lookup_path(&self, path: &str) -> Result<Attr> {
        todo!()
    }
    /// Attributes of an object; `Stale` if it is gone.
    pub fn getattr(&self, h: Handle) -> Result<Attr> {
        todo!()
    }
    /// Changes attributes; returns the new ones.
    pub fn setattr(&self, h: Handle, set: &SetAttr) -> Result<Attr> {
        todo!()
    }
    /// Creates a regular file (a volume if the name has a volume suffix).
    pub fn create(&self, dir: Handle, name: &[u8], mode: u32, cred: Cred, how: CreateMode) -> Result<Created> {
        todo!()
    }
    /// Creates a directory.
    pub fn mkdir(&self, dir: Handle, name: &[u8], mode: u32, cred: Cred) -> Result<Attr> {
        todo!()
    }
    /// Creates a symbolic link to `target`.
    pub fn symlink(&self, dir: Handle, name: &[u8], target: &[u8], cred: Cred) -> Result<Attr> {
        todo!()
    }
    /// Target of a symbolic link.
    pub fn readlink(&self, h: Handle) -> Result<Vec<u8>> {
        todo!()
    }
    /// Adds a hard link `dir/name` to the non-directory `h`.
    pub fn link(&self, h: Handle, dir: Handle, name: &[u8]) -> Result<Attr> {
        todo!()
    }
    /// Removes the non-directory `dir/name`.
    pub fn unlink(&self, dir: Handle, name: &[u8]) -> Result<()> {
        todo!()
    }
    /// Removes the empty directory `dir/name`.
    pub fn rmdir(&self, dir: Handle, name: &[u8]) -> Result<()> {
        todo!()
    }
    /// Renames, atomically replacing a compatible target.
    pub fn rename(&self, from_dir: Handle, from: &[u8], to_dir: Handle, to: &[u8]) -> Result<()> {
        todo!()
    }
    /// Lists `dir` from `cookie` (0 = start), at most `max` entries.
    pub fn readdir(&self, dir: Handle, cookie: u64, max: usize) -> Result<ReadDir> {
        todo!()
    }
    /// Reads into `buf` from `offset`; returns bytes read and whether the end of file was reached.
    pub fn read(&self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        todo!()
    }
    /// Writes `data` at `offset`; with `stable`, returns only once durable.
    pub fn write(&self, h: Handle, offset: u64, data: &[u8], stable: bool) -> Result<(usize, Stability)> {
        todo!()
    }
    /// Makes every write to `h` so far durable.
    pub fn commit(&self, h: Handle) -> Result<()> {
        todo!()
    }
    /// Capacity of the data directory.
    pub fn statfs(&self) -> Result<StatFs> {
        todo!()
    }
    /// Records an open (NFSv4 OPEN state): the object keeps its data while opened.
    pub fn open_file(&self, h: Handle) -> Result<()> {
        todo!()
    }
    /// Drops an open; an object with no links and no opens is removed.
    pub fn close_file(&self, h: Handle) -> Result<()> {
        todo!()
    }
    /// Makes everything written so far durable (shutdown, management "sync").
    pub fn sync_all(&self) -> Result<()> {
        todo!()
    }
}
