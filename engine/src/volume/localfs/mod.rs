//! The local-file layer: every byte the VolumeDriver keeps on local disk goes through
//! [`LocalFs`]. [`StdFs`] is the real one (std::fs, fdatasync, directory fsync). [`SimFs`] is an
//! in-memory one that remembers, per file and per directory, what is durable and what is not, and
//! can simulate a machine crash that loses everything not fsynced.

mod sim;
mod std_fs;

pub use self::sim::{CrashMode, SimFs, SimRng};
pub use self::std_fs::StdFs;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open local file. Offsets are absolute (pread/pwrite); handles are shared between threads.
pub trait LocalFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `off`; returns how many were read (fewer only at EOF).
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes all of `data` at `off`, extending the file as needed.
    fn write_at(&self, data: &[u8], off: u64) -> io::Result<()>;
    /// The file's current length.
    fn file_len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) the file to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and its length) durable: fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// Starts writing the file's dirty data to disk without waiting, so that a later
    /// [`LocalFile::sync_data`] has little left to do. A hint: guarantees nothing.
    fn start_writeback(&self) -> io::Result<()> {
        Ok(())
    }
    /// Drops the file's clean pages from the OS page cache (nothing will read them again).
    /// A hint: the bytes stay on disk; guarantees nothing.
    fn drop_cache(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A local filesystem as the VolumeDriver uses it.
pub trait LocalFs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents; they are durable when this returns.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates a new, empty file (`AlreadyExists` if it exists). Its name is durable only after
    /// [`LocalFs::sync_dir`] of its directory.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn LocalFile>>;
    /// Opens an existing file for reading and writing (`NotFound` if it does not exist).
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LocalFile>>;
    /// The names in directory `dir` (files only, unsorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The names of the subdirectories of `dir` (unsorted).
    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes a file's name. Durable only after [`LocalFs::sync_dir`].
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the names in `dir` (creations and removals) durable: fsync of the directory.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes the empty directory `dir` (`DirectoryNotEmpty` if it holds anything); durable
    /// when this returns, like [`LocalFs::create_dir_all`].
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;
    /// Renames `from` to `to` in the same directory, atomically replacing any file named `to`:
    /// after a crash the directory shows either the old names or the new ones. Durable only
    /// after [`LocalFs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// The path of `path` on the machine's real filesystem, when this layer is backed by one
    /// (so that another component, such as the local object store, may take the file itself);
    /// `None` for a simulated filesystem.
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        let _ = path;
        None
    }
}

/// When the local file at `path` was created (else last modified; else now: a layer without
/// real files, such as the crash simulator). What a restart dates the changes it finds by.
pub(crate) fn created_at(fs: &dyn LocalFs, path: &Path) -> std::time::SystemTime {
    fs.real_path(path)
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.created().or_else(|_| m.modified()).ok())
        .unwrap_or_else(std::time::SystemTime::now)
}
