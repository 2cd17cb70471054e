//! The [`Filesystem`] facade: blocking, `Send + Sync`, called from Ganesha's worker threads.
//!
//! Namespace changes are redb transactions (see `namespace.rs`). File data goes through
//! [`ObjectData`]; unstable writes keep their new size, mtime and change counter in memory
//! (`Pending`) until a commit, a stable write, a truncate or `sync_all` records them together
//! with the extents that hold the data, so a crash never shows a size whose data is missing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use strata_backend::{LocalStore, Namespaced, ObjectStore};
use strata_filedriver::FileDriver;

use crate::data::{space_used, Commit, FileData, ObjectData};
use crate::error::{io_err, Error, Result};
use crate::namespace::{self, DataUpdate, Inode, Namespace, NewNode, Orphaned, ROOT};
use crate::owner::{Claimant, OwnerRecord};
use crate::registry::{OpenVolume, RegistryConfig, VolumeObject, VolumeRegistry, VOLUMES_DIR};
use crate::types::*;
use crate::volume::VolumeOptions;

/// Key prefix of regular files' extents on the backend.
pub const FILES_PREFIX: &str = "files/";
/// Name of the redb file in the data directory.
pub const METADATA_FILE: &str = "strata.redb";
/// Name of the FileDriver's cache directory in the data directory.
pub const EXTENT_CACHE_DIR: &str = "extent-cache";
/// Loaded objects kept in memory beyond those in use or with pending writes.
const LIVE_LIMIT: usize = 4096;
/// Longest symlink target accepted, in bytes.
const TARGET_MAX: usize = 4096;

/// Name suffixes that make a new regular file a volume (DESIGN §3).
pub const DEFAULT_VOLUME_SUFFIXES: &[&str] = &[
    "-flat.vmdk",
    "-delta.vmdk",
    "-sesparse.vmdk",
    ".vswp",
    ".raw",
    ".img",
    ".qcow2",
];

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
    /// Size of a volume's SCO in bytes (`SCO_Size`, a multiple of 4 KiB).
    pub sco_size: u64,
    /// SCOs covered by one TLog (`TLog_SCOs`).
    pub tlog_scos: u32,
    /// TLogs applied to a volume's MetaDataStore between two metadata checkpoints on the
    /// backend (at least 1; default 64).
    pub checkpoint_tlogs: u32,
    /// A partial SCO holding data for this long is sealed and uploaded (`SCO_Max_Age`).
    pub sco_max_age: std::time::Duration,
    /// Bytes of a volume not yet on the backend at which its writes wait for room
    /// (`Write_Buffer_Size`, the hard mark).
    pub write_buffer_size: u64,
    /// Percentage of `write_buffer_size` above which a volume's writes are paced
    /// (`Write_Throttle_Start`, 1..=100).
    pub write_throttle_start: u64,
    /// How long the backend may make no upload progress before a write waiting at the hard
    /// mark is answered `Delay` (`Backend_Stall_Timeout`).
    pub backend_stall_timeout: std::time::Duration,
    /// Bound of the local SCO files of all volumes, bytes (`SCO_Cache_Size`; 0: unbounded).
    pub sco_cache_size: u64,
    /// Bound of the content-addressed cluster cache shared by all volumes, bytes
    /// (`Cluster_Cache_Size`; 0: off).
    pub cluster_cache_size: u64,
}

impl EngineConfig {
    /// Defaults of DESIGN §7 for a data directory, with the local backend at `<data_dir>/backend`.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        let data_dir = data_dir.into();
        EngineConfig {
            backend: BackendConfig::Local {
                dir: data_dir.join("backend"),
            },
            data_dir,
            volume_suffixes: DEFAULT_VOLUME_SUFFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            extent_cache_size: 1 << 30,
            metadata_cache_size: 64 << 20,
            sco_size: crate::volume::DEFAULT_SCO_SIZE,
            tlog_scos: crate::volume::DEFAULT_TLOG_SCOS,
            checkpoint_tlogs: crate::volume::DEFAULT_CHECKPOINT_TLOGS,
            sco_max_age: std::time::Duration::from_secs(60),
            write_buffer_size: 1 << 30,
            write_throttle_start: 50,
            backend_stall_timeout: std::time::Duration::from_secs(60),
            sco_cache_size: 8 << 30,
            cluster_cache_size: 1 << 30,
        }
    }
}

/// Attributes of unstable writes not yet recorded in redb.
#[derive(Debug, Clone, Copy)]
struct Pending {
    mtime: Timestamp,
    change: u64,
}

/// A regular object whose data is loaded.
#[derive(Debug)]
struct Live {
    generation: u64,
    data: Box<dyn ObjectData>,
    pending: Mutex<Option<Pending>>,
}

impl Live {
    fn needs_commit(&self) -> bool {
        self.data.is_dirty() || self.pending.lock().is_some()
    }
}

/// A redb storage backend chosen by the caller (tests put redb on a crash-simulating layer).
#[derive(Debug)]
struct BoxedBackend(Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for BoxedBackend {
    fn len(&self) -> std::result::Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::result::Result<(), std::io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> std::result::Result<(), std::io::Error> {
        self.0.close()
    }
}

/// How to open a [`Filesystem`] beyond its [`EngineConfig`] (tests and embedding).
#[derive(Debug, Default)]
pub struct OpenOptions {
    /// The object store to use instead of the one `config.backend` names. Files live under
    /// [`FILES_PREFIX`] inside it.
    pub store: Option<Arc<dyn ObjectStore>>,
    /// Where redb keeps its pages instead of `<data_dir>/strata.redb`.
    pub metadata_backend: Option<Box<dyn redb::StorageBackend>>,
    /// The local-file layer of volumes instead of the real filesystem (tests simulating a
    /// machine crash use a [`crate::volume::SimFs`]).
    pub volume_fs: Option<Arc<dyn crate::volume::LocalFs>>,
}

/// The filesystem facade. All methods block; none may be called from inside the engine's
/// tokio runtime. `Send + Sync`: call it from any number of threads.
#[derive(Debug)]
pub struct Filesystem {
    config: EngineConfig,
    ns: Namespace,
    /// The backend's owner record as this start wrote it.
    owner: OwnerRecord,
    driver: Arc<FileDriver>,
    /// Open volumes (the data of `Kind::Volume` objects).
    volumes: Arc<VolumeRegistry>,
    /// Loaded regular objects. Locked only to find or insert an entry, never across I/O.
    live: Mutex<HashMap<Ino, Arc<Live>>>,
    /// Open counts (NFSv4 OPEN state) per object.
    opens: Mutex<HashMap<Ino, u32>>,
    /// Set by [`Filesystem::crash`]: drop without flushing anything.
    crashed: bool,
    rt: Option<tokio::runtime::Runtime>,
}

impl Filesystem {
    /// Opens (or creates) the filesystem described by `config`.
    pub fn open(config: EngineConfig) -> Result<Filesystem> {
        Filesystem::open_with(config, OpenOptions::default())
    }

    /// Opens with a caller-chosen object store and/or redb storage backend.
    pub fn open_with(config: EngineConfig, opts: OpenOptions) -> Result<Filesystem> {
        if crate::runtime::inside_runtime() {
            return Err(Error::Invalid(
                "the engine cannot be opened from inside a tokio runtime".into(),
            ));
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| io_err(format!("creating {}", config.data_dir.display()), e))?;
        let mut location = match &config.backend {
            BackendConfig::Local { dir } => dir.display().to_string(),
        };
        let store: Arc<dyn ObjectStore> = match opts.store {
            Some(s) => {
                location.push_str(" (through a store given by the caller)");
                s
            }
            None => match &config.backend {
                BackendConfig::Local { dir } => Arc::new(LocalStore::open(dir.clone())?),
            },
        };
        let store = crate::test_knobs::slow_backend(store);
        let mut vol_opts = VolumeOptions::from_params(config.sco_size, config.tlog_scos)?;
        vol_opts.checkpoint_tlogs = config.checkpoint_tlogs.max(1);
        let files: Arc<dyn ObjectStore> = Arc::new(Namespaced::new(store.clone(), FILES_PREFIX)?);
        let rt = crate::runtime::build()?;
        let driver = FileDriver::open(
            files,
            strata_filedriver::Config {
                cache_dir: config.data_dir.join(EXTENT_CACHE_DIR),
                cache_bytes: config.extent_cache_size,
            },
            rt.handle().clone(),
        )?;
        let mut builder = redb::Builder::new();
        builder.set_cache_size(usize::try_from(config.metadata_cache_size).unwrap_or(usize::MAX));
        let db = match opts.metadata_backend {
            Some(b) => builder.create_with_backend(BoxedBackend(b))?,
            None => builder.create(config.data_dir.join(METADATA_FILE))?,
        };
        let ns = Namespace::open(db)?;
        // Before anything touches the backend: is it ours? (A refusal changes nothing there.)
        let claimant = Claimant {
            ns: &ns,
            label: format!("{}:{}", host_name(), config.data_dir.display()),
            location,
        };
        let owner = rt.block_on(crate::owner::claim(&*store, &claimant))?;
        let volumes = Arc::new(VolumeRegistry::new(
            RegistryConfig {
                dir: config.data_dir.join(VOLUMES_DIR),
                opts: vol_opts,
                max_age: config.sco_max_age,
                fs: opts.volume_fs,
                write_buffer: config.write_buffer_size,
                throttle_start: config.write_throttle_start,
                stall_timeout: config.backend_stall_timeout,
                sco_cache_size: config.sco_cache_size,
                cluster_cache_size: config.cluster_cache_size,
            },
            ns.fsid(),
            store,
            rt.handle().clone(),
        ));
        let fs = Filesystem {
            config,
            ns,
            owner,
            driver: Arc::new(driver),
            volumes,
            live: Mutex::new(HashMap::new()),
            opens: Mutex::new(HashMap::new()),
            crashed: false,
            rt: Some(rt),
        };
        // Nothing is open after a restart: orphans left by the last run go now.
        for ino in fs.ns.orphans()? {
            fs.purge(ino);
        }
        fs.reopen_local_volumes()?;
        fs.volumes.resume_deletions()?;
        tracing::info!(data_dir = %fs.config.data_dir.display(), fsid = fs.ns.fsid(), "strata engine open");
        Ok(fs)
    }

    /// Test knob: commit redb transactions without fsync. Only for proving that the crash
    /// tests notice a missing fsync; never use it otherwise.
    #[doc(hidden)]
    pub fn set_unsafe_no_sync(&mut self, on: bool) {
        self.ns.set_unsafe_no_sync(on);
    }

    /// Stops without flushing anything, as a crash would (tests). Unlike a plain drop, nothing
    /// pending is committed; the runtime stops without waiting for its tasks.
    pub fn crash(mut self) {
        self.crashed = true;
        drop(self);
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// This namespace's random identity (also the generation of every handle): stable across
    /// restarts, different for every newly created namespace. Usable as the NFS fsid.
    pub fn fsid(&self) -> u64 {
        self.ns.fsid()
    }

    /// The backend's owner record as this start wrote it (this gateway; the epoch of this run).
    pub fn owner(&self) -> &OwnerRecord {
        &self.owner
    }

    /// Handle of the root directory.
    pub fn root(&self) -> Handle {
        Handle {
            ino: ROOT,
            generation: self.ns.fsid(),
        }
    }

    /// Looks `name` up in `dir` ("." and ".." included).
    pub fn lookup(&self, dir: Handle, name: &[u8]) -> Result<Attr> {
        let (ino, inode) = self.ns.lookup(dir, name)?;
        Ok(self.attr_of(ino, &inode))
    }

    /// Resolves an absolute path inside the namespace ("/" is the root).
    pub fn lookup_path(&self, path: &str) -> Result<Attr> {
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| Error::Invalid(format!("path {path:?} is not absolute")))?;
        let mut attr = self.getattr(self.root())?;
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            attr = self.lookup(attr.handle, comp.as_bytes())?;
        }
        Ok(attr)
    }

    /// Attributes of an object; `Stale` if it is gone.
    pub fn getattr(&self, h: Handle) -> Result<Attr> {
        let inode = self.get_valid(h)?;
        Ok(self.attr_of(h.ino, &inode))
    }

    /// Changes attributes; returns the new ones. A size change is durable (data and metadata)
    /// when it returns; it and the other fields are recorded in two transactions.
    pub fn setattr(&self, h: Handle, set: &SetAttr) -> Result<Attr> {
        let inode = self.get_valid(h)?;
        if let Some(size) = set.size {
            match inode.kind {
                Kind::Directory => return Err(Error::IsDir),
                Kind::Symlink => {
                    return Err(Error::Invalid("cannot set the size of a symlink".into()))
                }
                Kind::File | Kind::Volume => {}
            }
            let live = self.get_live(h)?;
            live.data
                .truncate(size, &mut |c: &Commit| self.persist(h.ino, &live, c, true))?;
        }
        let meta = set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some();
        if meta {
            let live = self.peek_live(h.ino);
            // Hold the pending attributes still while redb changes, so both stay in step.
            let mut pending = live.as_ref().map(|l| l.pending.lock());
            let i = self.ns.setattr(h, set)?;
            if let Some(Some(p)) = pending.as_deref_mut() {
                p.change = (p.change + 1).max(i.change);
                if set.mtime.is_some() {
                    p.mtime = i.mtime;
                }
            }
        }
        self.getattr(h)
    }

    /// Creates a regular file (a volume if the name has a volume suffix).
    pub fn create(
        &self,
        dir: Handle,
        name: &[u8],
        mode: u32,
        cred: Cred,
        how: CreateMode,
    ) -> Result<Created> {
        let kind = if self.is_volume_name(name) {
            Kind::Volume
        } else {
            Kind::File
        };
        let node = NewNode {
            kind,
            mode,
            cred,
            target: Vec::new(),
        };
        let (ino, inode, created) = self.ns.create(dir, name, node, how)?;
        if created && kind == Kind::Volume {
            self.volumes.open_or_create(ino, 0, true)?;
        }
        Ok(Created {
            attr: self.attr_of(ino, &inode),
            created,
        })
    }

    /// Creates a directory.
    pub fn mkdir(&self, dir: Handle, name: &[u8], mode: u32, cred: Cred) -> Result<Attr> {
        let node = NewNode {
            kind: Kind::Directory,
            mode,
            cred,
            target: Vec::new(),
        };
        let (ino, inode, _) = self.ns.create(dir, name, node, CreateMode::Guarded)?;
        Ok(self.attr_of(ino, &inode))
    }

    /// Creates a symbolic link to `target`.
    pub fn symlink(&self, dir: Handle, name: &[u8], target: &[u8], cred: Cred) -> Result<Attr> {
        if target.is_empty() {
            return Err(Error::Invalid("empty symlink target".into()));
        }
        if target.len() > TARGET_MAX {
            return Err(Error::NameTooLong);
        }
        let node = NewNode {
            kind: Kind::Symlink,
            mode: 0o777,
            cred,
            target: target.to_vec(),
        };
        let (ino, inode, _) = self.ns.create(dir, name, node, CreateMode::Guarded)?;
        Ok(self.attr_of(ino, &inode))
    }

    /// Target of a symbolic link.
    pub fn readlink(&self, h: Handle) -> Result<Vec<u8>> {
        let inode = self.get_valid(h)?;
        if inode.kind != Kind::Symlink {
            return Err(Error::Invalid("not a symbolic link".into()));
        }
        Ok(inode.target)
    }

    /// Adds a hard link `dir/name` to the non-directory `h`.
    pub fn link(&self, h: Handle, dir: Handle, name: &[u8]) -> Result<Attr> {
        self.get_valid(h)?;
        let inode = self.ns.link(h, dir, name)?;
        Ok(self.attr_of(h.ino, &inode))
    }

    /// Removes the non-directory `dir/name`.
    pub fn unlink(&self, dir: Handle, name: &[u8]) -> Result<()> {
        let orphan = self.ns.remove(dir, name, false)?;
        self.release(orphan);
        Ok(())
    }

    /// Removes the empty directory `dir/name`.
    pub fn rmdir(&self, dir: Handle, name: &[u8]) -> Result<()> {
        self.ns.remove(dir, name, true)?;
        Ok(())
    }

    /// Renames, atomically replacing a compatible target.
    pub fn rename(&self, from_dir: Handle, from: &[u8], to_dir: Handle, to: &[u8]) -> Result<()> {
        let orphan = self.ns.rename(from_dir, from, to_dir, to)?;
        self.release(orphan);
        Ok(())
    }

    /// Lists `dir` from `cookie` (0 = start), at most `max` entries.
    pub fn readdir(&self, dir: Handle, cookie: u64, max: usize) -> Result<ReadDir> {
        let (rows, eof) = self.ns.readdir(dir, cookie, max)?;
        let entries = rows
            .into_iter()
            .map(|r| DirEntry {
                attr: self.attr_of(r.ino, &r.inode),
                name: r.name,
                cookie: r.cookie,
            })
            .collect();
        Ok(ReadDir { entries, eof })
    }

    /// Reads into `buf` from `offset`; returns bytes read and whether the end of file was reached.
    pub fn read(&self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        let live = self.get_live(h)?;
        live.data.read(offset, buf)
    }

    /// Writes `data` at `offset`; with `stable`, returns only once durable.
    pub fn write(
        &self,
        h: Handle,
        offset: u64,
        data: &[u8],
        stable: bool,
    ) -> Result<(usize, Stability)> {
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(Error::Invalid("write beyond the largest offset".into()));
        }
        let live = self.get_live(h)?;
        if data.is_empty() {
            // Writes nothing: a zero-length write past the end must not grow the file (POSIX
            // pwrite), nor touch mtime or the change counter.
            if stable {
                self.commit_live(h.ino, &live)?;
                return Ok((0, Stability::Stable));
            }
            return Ok((0, Stability::Unstable));
        }
        live.data.write(offset, data)?;
        {
            let mut p = live.pending.lock();
            let t = namespace::now();
            match p.as_mut() {
                Some(p) => {
                    p.mtime = t;
                    p.change += 1;
                }
                None => {
                    let base = self.ns.get_ino(h.ino)?.map(|i| i.change).unwrap_or(0);
                    *p = Some(Pending {
                        mtime: t,
                        change: base + 1,
                    });
                }
            }
        }
        if stable {
            self.commit_live(h.ino, &live)?;
            return Ok((data.len(), Stability::Stable));
        }
        Ok((data.len(), Stability::Unstable))
    }

    /// Makes every write to `h` so far durable.
    pub fn commit(&self, h: Handle) -> Result<()> {
        let inode = self.get_valid(h)?;
        if !inode.kind.is_regular() {
            return Ok(());
        }
        let live = self.get_live(h)?;
        self.commit_live(h.ino, &live)
    }

    /// Capacity of the data directory.
    pub fn statfs(&self) -> Result<StatFs> {
        statvfs(&self.config.data_dir)
    }

    /// Records an open (NFSv4 OPEN state): the object keeps its data while opened.
    pub fn open_file(&self, h: Handle) -> Result<()> {
        let mut opens = self.opens.lock();
        if let Some(n) = opens.get_mut(&h.ino) {
            // Still the same object (the ino is never reused), only the generation to check.
            if h.generation != self.ns.fsid() {
                return Err(Error::Stale);
            }
            *n += 1;
            return Ok(());
        }
        // Read under the lock: an unlink that commits now either sees this open or makes
        // this read find no links.
        let inode = self.ns.get(h)?;
        if inode.nlink == 0 {
            return Err(Error::Stale);
        }
        opens.insert(h.ino, 1);
        Ok(())
    }

    /// Drops an open; an object with no links and no opens is removed.
    pub fn close_file(&self, h: Handle) -> Result<()> {
        let last = {
            let mut opens = self.opens.lock();
            match opens.get_mut(&h.ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    opens.remove(&h.ino);
                    true
                }
                None => return Err(Error::Invalid("close without open".into())),
            }
        };
        if last {
            if let Some(i) = self.ns.get_ino(h.ino)? {
                if i.nlink == 0 && i.kind.is_regular() {
                    self.release(Some(Orphaned(h.ino)));
                }
            }
        }
        Ok(())
    }

    /// Makes everything written so far durable (shutdown, management "sync").
    pub fn sync_all(&self) -> Result<()> {
        let lives: Vec<(Ino, Arc<Live>)> = self
            .live
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut first_err = None;
        for (ino, live) in lives {
            if let Err(e) = self.commit_live(ino, &live) {
                if !matches!(e, Error::Stale) && first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Returns once everything committed so far (files and volumes) is on the object backend:
    /// committed file data is uploaded by its commit already; volumes upload every SCO and
    /// TLog (including the open ones) and their manifest; the objects of deleted volumes are
    /// gone from the backend.
    pub fn flush_to_backend(&self) -> Result<()> {
        self.sync_all()?;
        // Every volume with local state, also those not opened by this run: a previous run may
        // have left data that never reached the backend.
        let mut first_err = None;
        for ino in self.volumes.local_inos()? {
            let inode = match self.ns.get_ino(ino)? {
                Some(i) if i.kind == Kind::Volume => i,
                _ => continue,
            };
            let r = self
                .open_volume(ino, &inode)
                .and_then(|v| self.volumes.flush(&v));
            // A volume deleted meanwhile has nothing to flush (its deletion is waited for below).
            if matches!(r, Err(Error::Stale)) || self.volumes.is_deleted(ino).unwrap_or(false) {
                continue;
            }
            if let Err(e) = r {
                tracing::warn!(ino, error = %e, "flushing a volume to the backend failed");
                first_err.get_or_insert(e);
            }
        }
        // Deleted volumes' objects are gone from the backend too.
        if let Err(e) = self.volumes.finish_deletions() {
            tracing::warn!(error = %e, "deleting removed volumes' backend objects failed");
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Counters of the content-addressed cluster cache shared by all volumes.
    pub fn cluster_cache_stats(&self) -> crate::volume::cluster_cache::ClusterCacheStats {
        self.volumes.cluster_cache_stats()
    }

    /// State of the volume `h` (`Invalid` if `h` is not a volume).
    pub fn volume_stats(&self, h: Handle) -> Result<VolumeInfo> {
        let inode = self.get_valid(h)?;
        if inode.kind != Kind::Volume {
            return Err(Error::Invalid("not a volume".into()));
        }
        let v = self.open_volume(h.ino, &inode)?;
        Ok(self.volumes.info(&v))
    }

    // ---- internals ----

    /// Opens every volume that has local state (a local restart each), so that what the last
    /// run left un-uploaded goes to the backend now, and their cached SCOs count towards (and
    /// can be evicted from) `SCO_Cache_Size`, without waiting for a client to touch them. A
    /// volume that fails to open is logged and left for its first access, which reports the
    /// error to the client.
    fn reopen_local_volumes(&self) -> Result<()> {
        let mut opened = 0u32;
        for ino in self.volumes.local_inos()? {
            let inode = match self.ns.get_ino(ino)? {
                Some(i) if i.kind == Kind::Volume => i,
                // Not a volume of this namespace (any more): left alone.
                _ => continue,
            };
            match self.open_volume(ino, &inode) {
                Ok(_) => opened += 1,
                // Deleted: its deletion resumes below, nothing to open.
                Err(Error::Stale) => {}
                Err(e) => tracing::error!(ino, error = %e, "cannot reopen a volume at startup"),
            }
        }
        if opened > 0 {
            tracing::info!(volumes = opened, "volumes with local state reopened");
        }
        Ok(())
    }

    fn is_volume_name(&self, name: &[u8]) -> bool {
        self.config
            .volume_suffixes
            .iter()
            .any(|s| !s.is_empty() && name.ends_with(s.as_bytes()))
    }

    fn is_open(&self, ino: Ino) -> bool {
        self.opens.lock().contains_key(&ino)
    }

    /// The open volume `ino` (opened, or created, on first use). The namespace's size of a
    /// volume follows the volume's own (its TLogs are authoritative): a size that a crash left
    /// behind is corrected here.
    fn open_volume(&self, ino: Ino, inode: &Inode) -> Result<Arc<OpenVolume>> {
        if let Some(v) = self.volumes.get(ino) {
            return Ok(v);
        }
        let v = self.volumes.open_or_create(ino, inode.size, false)?;
        let size = v.volume().size();
        if size != inode.size {
            tracing::info!(
                ino,
                recorded = inode.size,
                size,
                "volume size recorded again"
            );
            let up = DataUpdate {
                size,
                mtime: inode.mtime,
                change: inode.change + 1,
                ..DataUpdate::default()
            };
            self.ns.persist_data(ino, &up)?;
        }
        Ok(v)
    }

    /// Loads an inode and refuses objects that are gone (no links and not open).
    fn get_valid(&self, h: Handle) -> Result<Inode> {
        let inode = self.ns.get(h)?;
        if inode.nlink == 0 && !self.is_open(h.ino) {
            return Err(Error::Stale);
        }
        Ok(inode)
    }

    fn peek_live(&self, ino: Ino) -> Option<Arc<Live>> {
        self.live.lock().get(&ino).cloned()
    }

    /// The loaded data of a regular object, loading it on first use.
    fn get_live(&self, h: Handle) -> Result<Arc<Live>> {
        if let Some(l) = self.peek_live(h.ino) {
            if l.generation != h.generation {
                return Err(Error::Stale);
            }
            return Ok(l);
        }
        let inode = self.get_valid(h)?;
        match inode.kind {
            Kind::Directory => return Err(Error::IsDir),
            Kind::Symlink => return Err(Error::Invalid("not a regular file".into())),
            Kind::File | Kind::Volume => {}
        }
        let data: Box<dyn ObjectData> = if inode.kind == Kind::Volume {
            let v = self.open_volume(h.ino, &inode)?;
            Box::new(VolumeObject::new(v, &self.volumes))
        } else {
            let map = self.ns.extents(h.ino)?;
            Box::new(FileData::new(h.ino, self.driver.clone(), inode.size, map))
        };
        let fresh = Arc::new(Live {
            generation: inode.generation,
            data,
            pending: Mutex::new(None),
        });
        let mut live = self.live.lock();
        let l = live.entry(h.ino).or_insert(fresh).clone();
        if live.len() > LIVE_LIMIT {
            // Forget objects nobody uses and with nothing pending; they reload from redb.
            live.retain(|_, l| Arc::strong_count(l) > 1 || l.needs_commit());
        }
        Ok(l)
    }

    /// Records a data commit of `ino` in redb and clears its pending attributes.
    fn persist(&self, ino: Ino, live: &Live, c: &Commit, truncate: bool) -> Result<()> {
        let mut pending = live.pending.lock();
        let (mtime, change) = match (*pending, truncate) {
            (Some(p), false) => (p.mtime, p.change),
            (Some(p), true) => (namespace::now(), p.change + 1),
            (None, _) => (namespace::now(), 0),
        };
        let up = DataUpdate {
            size: c.size,
            added: c.added.clone(),
            removed: c.removed.clone(),
            mtime,
            change,
            lazy: c.lazy,
        };
        self.ns.persist_data(ino, &up)?;
        *pending = None;
        Ok(())
    }

    fn commit_live(&self, ino: Ino, live: &Live) -> Result<()> {
        if !live.needs_commit() {
            return Ok(());
        }
        live.data
            .sync(&mut |c: &Commit| self.persist(ino, live, c, false))
    }

    /// Attributes from an inode record, with the pending state of unstable writes on top.
    fn attr_of(&self, ino: Ino, i: &Inode) -> Attr {
        let mut a = Attr {
            handle: Handle {
                ino,
                generation: i.generation,
            },
            kind: i.kind,
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            space_used: 0,
            nlink: i.nlink,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            change: i.change,
        };
        match i.kind {
            Kind::Volume if self.peek_live(ino).is_none() => {
                // The volume is the authority for its size: open it (once per run).
                match self.open_volume(ino, i) {
                    Ok(v) => {
                        a.size = v.volume().size();
                        a.space_used = v.volume().space_used();
                    }
                    Err(e) => tracing::warn!(ino, error = %e, "cannot open a volume"),
                }
            }
            Kind::File | Kind::Volume => match self.peek_live(ino) {
                Some(l) => {
                    a.size = l.data.size();
                    a.space_used = l.data.space_used();
                    if let Some(p) = *l.pending.lock() {
                        a.mtime = p.mtime;
                        a.ctime = a.ctime.max(p.mtime);
                        a.change = a.change.max(p.change);
                    }
                }
                None => a.space_used = space_used(i.size, i.nextents),
            },
            Kind::Directory => a.space_used = 4096,
            Kind::Symlink => a.space_used = i.size,
        }
        a
    }

    /// An object lost its last link: delete it now unless it is open (then at the last close).
    fn release(&self, orphan: Option<Orphaned>) {
        let Some(Orphaned(ino)) = orphan else { return };
        if self.is_open(ino) {
            return;
        }
        self.purge(ino);
    }

    /// Deletes an orphan's data, then its inode. Failures leave the orphan row for the next open.
    fn purge(&self, ino: Ino) {
        let live = self.live.lock().remove(&ino);
        let deleted = match live {
            Some(l) => l.data.delete(),
            None => match self.ns.get_ino(ino) {
                Ok(Some(i)) if i.kind == Kind::Volume => self.volumes.delete(ino),
                Ok(_) => self
                    .ns
                    .extents(ino)
                    .and_then(|m| self.driver.delete(ino, &m).map_err(Error::from)),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = deleted.and_then(|()| self.ns.purge(ino)) {
            tracing::warn!(ino, error = %e, "purging an unlinked object failed; retried at the next open");
        }
    }
}

impl Drop for Filesystem {
    fn drop(&mut self) {
        if !self.crashed && !crate::runtime::inside_runtime() {
            if let Err(e) = self.sync_all() {
                tracing::warn!(error = %e, "final sync failed");
            }
        }
        self.volumes.stop_all();
        if let Some(rt) = self.rt.take() {
            if crate::runtime::inside_runtime() {
                rt.shutdown_background();
            } else {
                // Tasks stop at their next await: nothing of this engine writes after it is
                // gone (a reopened engine must be the only writer of its volumes).
                rt.shutdown_timeout(std::time::Duration::from_secs(10));
            }
        }
    }
}

/// This machine's name, for the owner record's label ("unknown" if it cannot be read).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// statvfs of a directory.
fn statvfs(path: &std::path::Path) -> Result<StatFs> {
    let st =
        nix::sys::statvfs::statvfs(path).map_err(|e| io_err("statvfs", std::io::Error::from(e)))?;
    let frsize = st.fragment_size();
    Ok(StatFs {
        total_bytes: st.blocks().saturating_mul(frsize),
        free_bytes: st.blocks_free().saturating_mul(frsize),
        avail_bytes: st.blocks_available().saturating_mul(frsize),
        total_files: st.files(),
        free_files: st.files_free(),
        avail_files: st.files_available(),
    })
}

// The facade is shared by Ganesha's worker threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Filesystem>();
};
