//! The FileDriver: regular files as 1 MiB extents on an [`ObjectStore`].
//!
//! Extent `i` of file `f` is the object `<f as 16 hex>.<i as 8 hex>`. The file's size and its
//! extent map (which extents exist on the backend) belong to the caller's metadata; this crate
//! never lists the backend. See `FORMATS.md`.
//!
//! # Cache
//! Extents are read and written through a local cache directory (`Config::cache_dir`), one file
//! per cached extent, bounded by `Config::cache_bytes` with a least-recently-used policy. Clean
//! extents are evicted first; when only dirty ones are left and the cache is still over its
//! bound, the oldest dirty extents are uploaded (written back, like a page cache) and then
//! evicted. A read of an extent that is not cached GETs the whole extent object and caches it
//! (files tend to be read sequentially and re-read).
//!
//! Write-back means an extent object may hold data newer than the caller's last `sync`, and an
//! extent uploaded by eviction may exist on the backend before the caller's map names it; the
//! driver remembers such extents until the next [`FileDriver::sync`] adds them to the map. After
//! a crash, such objects are either named by the persisted map (then they hold data at least as
//! new as the last sync, as with any write-back cache) or are orphans that read as holes.
//!
//! # The caller's map
//! Every call takes the caller's current extent map of the file, the one that `sync` and
//! `truncate` update: a `read` or `write` must not be given a copy older than the last `sync`
//! or `truncate` of that file that has returned. A read-write lock per file does it (shared for
//! `read`/`write`, exclusive for `sync`/`truncate`/`delete`). Reads and writes of a file may
//! run concurrently with each other, and extents written while a `sync` uploads them stay
//! dirty for the next one.
//!
//! # Concurrency
//! Each file has its own lock, held for cache-file I/O (local disk) but never across backend
//! I/O. One LRU lock is held only for list bookkeeping. Uploads of one extent never overlap
//! (an `uploading` flag), so an older upload cannot land after a newer one; a write during an
//! upload bumps the extent's generation and keeps it dirty.

mod cache;
mod writeback;

use self::cache::{cache_err, wipe_dir};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
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

/// Most uploads (or deletes) one call runs at once.
const MAX_PARALLEL: usize = 8;

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

/// Figures of the local extent cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Extents cached.
    pub extents: u64,
    /// Bytes cached (sum of the cached extents' lengths).
    pub bytes: u64,
    /// Bytes of dirty extents (written, not yet uploaded).
    pub dirty_bytes: u64,
}

/// The backend object name of extent `index` of `file`.
pub fn extent_key(file: FileId, index: u64) -> String {
    format!("{file:016x}.{index:08x}")
}

/// Regular files as extents. `Send + Sync`; safe to call from many threads.
#[derive(Debug)]
pub struct FileDriver {
    store: Arc<dyn ObjectStore>,
    config: Config,
    rt: tokio::runtime::Handle,
    files: Mutex<HashMap<FileId, Arc<FileState>>>,
    lru: Mutex<Lru>,
    next_id: AtomicU64,
}

/// Per-file state: its cached extents and what the driver knows of its backend objects.
#[derive(Debug)]
struct FileState {
    file: FileId,
    meta: Mutex<FileMeta>,
    /// Signalled when an upload of one of this file's extents ends.
    uploaded: Condvar,
}

#[derive(Debug)]
struct FileMeta {
    extents: BTreeMap<u64, Extent>,
    /// Extents uploaded by write-back (eviction) that the caller's map may not name yet;
    /// `sync` adds them to the map and forgets them.
    backend: BTreeSet<u64>,
    /// How often a cached copy was dropped or a backend object cut, per bucket of extent
    /// indices (`idx % EPOCH_BUCKETS`): a fetch that raced with such a change must not install
    /// what it fetched. Buckets keep this bounded; a false conflict only costs a re-fetch.
    epochs: [u64; EPOCH_BUCKETS],
}

/// Number of epoch buckets per file.
const EPOCH_BUCKETS: usize = 64;

impl Default for FileMeta {
    fn default() -> FileMeta {
        FileMeta {
            extents: BTreeMap::new(),
            backend: BTreeSet::new(),
            epochs: [0; EPOCH_BUCKETS],
        }
    }
}

impl FileMeta {
    fn exists(&self, map: &ExtentMap, idx: u64) -> bool {
        map.contains(&idx) || self.backend.contains(&idx)
    }

    fn epoch(&self, idx: u64) -> u64 {
        self.epochs[(idx % EPOCH_BUCKETS as u64) as usize]
    }

    fn bump(&mut self, idx: u64) {
        self.epochs[(idx % EPOCH_BUCKETS as u64) as usize] += 1;
    }
}

/// A cached extent.
#[derive(Debug)]
struct Extent {
    /// Unique among all cached copies; names the cache file.
    id: u64,
    /// Bytes in the cache file (the extent object's length once uploaded).
    len: u64,
    /// Bumped by every change of the content.
    gen: u64,
    dirty: bool,
    uploading: bool,
    /// Position in the LRU list (clean or dirty, as `dirty` says).
    tick: u64,
}

#[derive(Debug, Default)]
struct Lru {
    clean: BTreeMap<u64, (Arc<FileState>, u64)>,
    dirty: BTreeMap<u64, (Arc<FileState>, u64)>,
    next_tick: u64,
    extents: u64,
    bytes: u64,
    dirty_bytes: u64,
}

/// An extent claimed for upload: its content as of generation `gen`.
struct Claim {
    idx: u64,
    id: u64,
    gen: u64,
    data: Bytes,
}

impl FileDriver {
    /// Opens the driver on `store`, running backend I/O on `rt` (callers are never inside it).
    /// Empties `config.cache_dir` (creating it if needed).
    pub fn open(
        store: Arc<dyn ObjectStore>,
        config: Config,
        rt: tokio::runtime::Handle,
    ) -> Result<FileDriver> {
        wipe_dir(&config.cache_dir).map_err(cache_err)?;
        Ok(FileDriver {
            store,
            config,
            rt,
            files: Mutex::new(HashMap::new()),
            lru: Mutex::new(Lru::default()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Fills `buf` from `offset`; holes (extents not in `map` and not cached) read as zeros.
    /// The caller clamps `buf` at the file size.
    pub fn read(&self, file: FileId, map: &ExtentMap, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_context()?;
        let st = self.state(file);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (idx, off) = (pos / EXTENT_SIZE, pos % EXTENT_SIZE);
            let n = ((EXTENT_SIZE - off) as usize).min(buf.len() - done);
            if let Err(e) = self.read_extent(&st, map, idx, off, &mut buf[done..done + n]) {
                self.release(st);
                return Err(e);
            }
            done += n;
        }
        self.release(st);
        self.evict();
        Ok(())
    }

    /// Writes `data` at `offset` into the cache (dirty until `sync`).
    pub fn write(&self, file: FileId, map: &ExtentMap, offset: u64, data: &[u8]) -> Result<()> {
        self.check_context()?;
        let st = self.state(file);
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let (idx, off) = (pos / EXTENT_SIZE, pos % EXTENT_SIZE);
            let n = ((EXTENT_SIZE - off) as usize).min(data.len() - done);
            if let Err(e) = self.write_extent(&st, map, idx, off, &data[done..done + n]) {
                self.release(st);
                return Err(e);
            }
            done += n;
        }
        self.release(st);
        self.evict();
        Ok(())
    }

    /// Uploads every dirty extent of `file` and adds its index to `map`. When it returns, the
    /// uploaded extents are durable on the backend; the caller then persists `map`.
    pub fn sync(&self, file: FileId, map: &mut ExtentMap) -> Result<()> {
        self.check_context()?;
        let st = self.state(file);
        let dirty: Vec<u64> = {
            let m = st.meta.lock();
            m.extents
                .iter()
                .filter(|(_, e)| e.dirty)
                .map(|(i, _)| *i)
                .collect()
        };
        let mut first_err = None;
        let mut batch = Vec::new();
        for idx in dirty {
            let claim = match self.claim(&st, idx, false) {
                Ok(Some(c)) => Some(c),
                Ok(None) if self.is_uploading(&st, idx) => {
                    // Another upload of it is running: finish ours first so that two syncs
                    // never wait on each other's claims, then wait for it.
                    self.upload_batch(&st, std::mem::take(&mut batch), &mut first_err);
                    match self.claim(&st, idx, true) {
                        Ok(c) => c,
                        Err(e) => {
                            first_err.get_or_insert(e);
                            None
                        }
                    }
                }
                Ok(None) => None,
                Err(e) => {
                    first_err.get_or_insert(e);
                    None
                }
            };
            batch.extend(claim);
            if batch.len() >= MAX_PARALLEL {
                self.upload_batch(&st, std::mem::take(&mut batch), &mut first_err);
            }
        }
        self.upload_batch(&st, batch, &mut first_err);
        {
            let mut m = st.meta.lock();
            map.append(&mut m.backend);
        }
        self.release(st);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Cuts the file to `new_size`: cached data beyond it is dropped, the tail of the last extent
    /// is zeroed (made dirty), and the indices beyond the last extent are removed from `map` and
    /// returned. The caller persists `map`, then calls [`FileDriver::delete_extents`].
    ///
    /// The zeroed last extent (with any unsynced writes to it) is uploaded before this returns
    /// and added to `map`, so that the persisted size never has stale bytes past it on the
    /// backend. Growing (`new_size` past the end) changes nothing but that extent's tail: the
    /// new range is a hole. The caller keeps the size.
    pub fn truncate(&self, file: FileId, map: &mut ExtentMap, new_size: u64) -> Result<Vec<u64>> {
        self.check_context()?;
        let st = self.state(file);
        let cut = new_size.div_ceil(EXTENT_SIZE);
        let removed: BTreeSet<u64> = {
            let mut m = st.meta.lock();
            // An upload in flight could land after the caller deletes the object: let it end.
            while m.extents.range(cut..).any(|(_, e)| e.uploading) {
                st.uploaded.wait(&mut m);
            }
            let cached: Vec<u64> = m.extents.range(cut..).map(|(i, _)| *i).collect();
            for idx in &cached {
                self.drop_extent(&st, &mut m, *idx);
            }
            let mut gone = map.split_off(&cut);
            gone.append(&mut m.backend.split_off(&cut));
            for idx in &gone {
                m.bump(*idx);
            }
            gone
        };
        let off = new_size % EXTENT_SIZE;
        if off != 0 {
            let idx = new_size / EXTENT_SIZE;
            self.zero_tail(&st, map, idx, off)?;
            // Upload the tail now: once the caller persists the new size, a crash must not
            // leave the old bytes past it on the backend (a later grow would show them).
            if let Some(claim) = self.claim(&st, idx, true)? {
                let mut err = None;
                self.upload_batch(&st, vec![claim], &mut err);
                if let Some(e) = err {
                    return Err(e);
                }
            }
            if st.meta.lock().backend.remove(&idx) {
                map.insert(idx);
            }
        }
        self.release(st);
        Ok(removed.into_iter().collect())
    }

    /// Deletes these extents from the backend (missing ones are fine).
    pub fn delete_extents(&self, file: FileId, extents: &[u64]) -> Result<()> {
        self.check_context()?;
        for chunk in extents.chunks(MAX_PARALLEL * 2) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|idx| {
                    let store = self.store.clone();
                    let key = extent_key(file, *idx);
                    self.rt.spawn(async move { store.delete(&key).await })
                })
                .collect();
            let results = self.rt.block_on(async {
                let mut out = Vec::with_capacity(tasks.len());
                for t in tasks {
                    out.push(t.await);
                }
                out
            });
            for r in results {
                r.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
            }
        }
        Ok(())
    }

    /// Drops the file's cache and deletes all its extents in `map` from the backend.
    pub fn delete(&self, file: FileId, map: &ExtentMap) -> Result<()> {
        self.check_context()?;
        let st = self.files.lock().remove(&file);
        let mut keys: BTreeSet<u64> = map.clone();
        if let Some(st) = st {
            let mut m = st.meta.lock();
            while m.extents.values().any(|e| e.uploading) {
                st.uploaded.wait(&mut m);
            }
            let cached: Vec<u64> = m.extents.keys().copied().collect();
            for idx in cached {
                self.drop_extent(&st, &mut m, idx);
            }
            // Written back but not in the map yet: delete those too.
            keys.append(&mut m.backend);
            for idx in &keys {
                m.bump(*idx);
            }
        }
        self.delete_extents(file, &keys.into_iter().collect::<Vec<_>>())
    }

    /// Figures of the extent cache.
    pub fn cache_stats(&self) -> CacheStats {
        let lru = self.lru.lock();
        CacheStats {
            extents: lru.extents,
            bytes: lru.bytes,
            dirty_bytes: lru.dirty_bytes,
        }
    }

    /// Whether `file` has extents written and not yet uploaded.
    pub fn has_dirty(&self, file: FileId) -> bool {
        let st = self.files.lock().get(&file).cloned();
        st.is_some_and(|st| st.meta.lock().extents.values().any(|e| e.dirty))
    }
}

#[cfg(test)]
mod tests;
