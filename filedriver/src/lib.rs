//! The FileDriver: regular files as 1 MiB extents on an [`ObjectStore`].
//!
//! Each upload of extent `i` of file `f` is a new object `<f as 16 hex>.<i as 8 hex>.<gen as 16
//! hex>` (a generation unique to that upload, from [`Config::first_gen`] on): an object is never
//! overwritten, so every PUT is safe to retry and a crash never mixes two versions. The file's
//! size and its extent map (which generation of which extent is the file's) belong to the
//! caller's metadata; this crate never lists the backend. See `FORMATS.md`.
//!
//! # Cache
//! Extents are read and written through a local cache directory (`Config::cache_dir`), one file
//! per cached extent, bounded by `Config::cache_bytes` with a least-recently-used policy. Clean
//! extents are evicted first; when only dirty ones are left and the cache is still over its
//! bound, dirty ones stay (the caller's uploads make them clean; [`CacheStats::dirty_bytes`]
//! tells it when). A read of an extent that is not cached GETs the whole extent object and
//! caches it (files tend to be read sequentially and re-read).
//!
//! # Uploads
//! [`FileDriver::upload_dirty`] uploads every dirty extent of a file, each under a fresh
//! generation, and remembers what landed; [`FileDriver::merge_landed`] then moves that into the
//! caller's map and returns the keys the map no longer names (garbage for the caller to
//! record). The caller persists the map in between uploads and its own readers' use of it: until
//! then the driver reads landed extents by their new keys itself.
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
mod listing;
mod writeback;

pub use listing::{parse_extent_key, VersionPage};

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

/// The extents of one file that exist on the backend: extent index → generation of its object.
/// Kept by the caller.
pub type ExtentMap = BTreeMap<u64, u64>;

/// An extent object: (extent index, generation).
pub type ExtentVersion = (u64, u64);

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
    /// The first generation this driver hands out (each upload takes the next one). Must be
    /// above every generation any earlier run handed out (the engine uses its owner epoch in
    /// the high bits); 0 is reserved for objects written before generations existed.
    pub first_gen: u64,
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

/// The backend object name of generation `gen` of extent `index` of `file` (generation 0: the
/// name objects had before generations existed).
pub fn extent_key(file: FileId, index: u64, gen: u64) -> String {
    if gen == 0 {
        format!("{file:016x}.{index:08x}")
    } else {
        format!("{file:016x}.{index:08x}.{gen:016x}")
    }
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
    next_gen: AtomicU64,
    /// Bytes uploaded since open (each successful extent PUT counted once).
    uploaded: AtomicU64,
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
    /// Extents uploaded that the caller's map does not name yet (index → generation);
    /// [`FileDriver::merge_landed`] moves them into the map.
    backend: BTreeMap<u64, u64>,
    /// Objects that may exist and that no map will name: uploads that failed (they may have
    /// landed all the same), landed versions superseded before a merge. Handed to the caller
    /// by the next merge.
    garbage: Vec<ExtentVersion>,
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
            backend: BTreeMap::new(),
            garbage: Vec::new(),
            epochs: [0; EPOCH_BUCKETS],
        }
    }
}

impl FileMeta {
    /// The generation of extent `idx` on the backend, if it has an object.
    fn version(&self, map: &ExtentMap, idx: u64) -> Option<u64> {
        self.backend.get(&idx).or_else(|| map.get(&idx)).copied()
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

/// An extent claimed for upload: its content as of change count `gen`, to be uploaded as
/// object generation `version`.
struct Claim {
    idx: u64,
    id: u64,
    gen: u64,
    version: u64,
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
            rt,
            files: Mutex::new(HashMap::new()),
            lru: Mutex::new(Lru::default()),
            next_id: AtomicU64::new(1),
            next_gen: AtomicU64::new(config.first_gen.max(1)),
            uploaded: AtomicU64::new(0),
            config,
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

    /// Uploads every dirty extent of `file`, each as a new object generation, and remembers
    /// what landed for [`FileDriver::merge_landed`]. `before` is given the objects about to be
    /// written before any PUT starts (the caller records them, so that an upload a crash
    /// interrupts is never an unknown object). Extents written during the upload stay dirty.
    /// Uploads of one file must not run concurrently (the caller serialises them).
    pub fn upload_dirty(
        &self,
        file: FileId,
        before: &mut dyn FnMut(&[ExtentVersion]) -> Result<()>,
    ) -> Result<()> {
        self.check_context()?;
        let st = self.state(file);
        let r = self.upload_claimed(&st, None, before);
        self.release(st);
        r
    }

    fn upload_claimed(
        &self,
        st: &Arc<FileState>,
        only: Option<u64>,
        before: &mut dyn FnMut(&[ExtentVersion]) -> Result<()>,
    ) -> Result<()> {
        let dirty: Vec<u64> = {
            let m = st.meta.lock();
            m.extents
                .iter()
                .filter(|(i, e)| e.dirty && only.is_none_or(|o| o == **i))
                .map(|(i, _)| *i)
                .collect()
        };
        let mut first_err = None;
        let mut claims = Vec::new();
        for idx in dirty {
            match self.claim(st, idx, true) {
                Ok(c) => claims.extend(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if claims.is_empty() {
            return first_err.map_or(Ok(()), Err);
        }
        let versions: Vec<ExtentVersion> = claims.iter().map(|c| (c.idx, c.version)).collect();
        if let Err(e) = before(&versions) {
            // Nothing was sent: the claims go back to dirty, their versions unused.
            let mut m = st.meta.lock();
            for c in &claims {
                if let Some(x) = m.extents.get_mut(&c.idx).filter(|x| x.id == c.id) {
                    x.uploading = false;
                }
            }
            drop(m);
            st.uploaded.notify_all();
            return Err(e);
        }
        let mut rest = claims;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_PARALLEL));
            self.upload_batch(st, rest, &mut first_err);
            rest = tail;
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Moves what landed since the last merge into `map` and returns the objects no map names
    /// any more: the versions `map` named before (superseded), uploads that failed, versions
    /// superseded before this merge. The caller records them as garbage once `map` is
    /// persisted; nothing reads them after this returns.
    pub fn merge_landed(&self, file: FileId, map: &mut ExtentMap) -> Vec<ExtentVersion> {
        let st = self.state(file);
        let garbage = {
            let mut m = st.meta.lock();
            let mut garbage = std::mem::take(&mut m.garbage);
            for (idx, gen) in std::mem::take(&mut m.backend) {
                if let Some(old) = map.insert(idx, gen) {
                    if old != gen {
                        garbage.push((idx, old));
                    }
                }
            }
            garbage
        };
        self.release(st);
        garbage
    }

    /// Uploads every dirty extent of `file` and merges them into `map` (both steps above, with
    /// nothing recorded before the PUTs); returns the garbage. For callers without a journal.
    pub fn sync(&self, file: FileId, map: &mut ExtentMap) -> Result<Vec<ExtentVersion>> {
        let r = self.upload_dirty(file, &mut |_| Ok(()));
        let garbage = self.merge_landed(file, map);
        r.map(|()| garbage)
    }

    /// Cuts the file to `new_size`: cached data beyond it is dropped, the tail of the last extent
    /// is zeroed (made dirty), and the extents beyond the last one are removed from `map` and
    /// returned (with any that landed unmerged). The caller persists `map`, then deletes them.
    ///
    /// The zeroed last extent (with any unsynced writes to it) is uploaded before this returns
    /// and merged into `map` (`before` as in [`FileDriver::upload_dirty`]), so that the
    /// persisted size never has stale bytes past it on the backend. Growing (`new_size` past
    /// the end) changes nothing but that extent's tail: the new range is a hole. The caller
    /// keeps the size. The returned list also holds the superseded version of that extent.
    pub fn truncate(
        &self,
        file: FileId,
        map: &mut ExtentMap,
        new_size: u64,
        before: &mut dyn FnMut(&[ExtentVersion]) -> Result<()>,
    ) -> Result<Vec<ExtentVersion>> {
        self.check_context()?;
        let st = self.state(file);
        let cut = new_size.div_ceil(EXTENT_SIZE);
        let mut removed: Vec<ExtentVersion> = {
            let mut m = st.meta.lock();
            // An upload in flight could land after the caller deletes the object: let it end.
            while m.extents.range(cut..).any(|(_, e)| e.uploading) {
                st.uploaded.wait(&mut m);
            }
            let cached: Vec<u64> = m.extents.range(cut..).map(|(i, _)| *i).collect();
            for idx in &cached {
                self.drop_extent(&st, &mut m, *idx);
            }
            let mut gone: Vec<ExtentVersion> = map.split_off(&cut).into_iter().collect();
            gone.extend(m.backend.split_off(&cut));
            for (idx, _) in &gone {
                m.bump(*idx);
            }
            gone
        };
        let off = new_size % EXTENT_SIZE;
        if off != 0 {
            let idx = new_size / EXTENT_SIZE;
            // Upload the tail now: once the caller persists the new size, a crash must not
            // leave the old bytes past it on the backend (a later grow would show them).
            let r = self
                .zero_tail(&st, map, idx, off)
                .and_then(|()| self.upload_claimed(&st, Some(idx), before));
            if let Err(e) = r {
                // What the map no longer names is garbage all the same: the next merge says so.
                st.meta.lock().garbage.append(&mut removed);
                self.release(st);
                return Err(e);
            }
        }
        self.release(st);
        removed.extend(self.merge_landed(file, map));
        Ok(removed)
    }

    /// Drops the extents `from..to` whole (a hole punched): their cached data (dirty or not)
    /// is dropped and they leave `map`; returned (with any that landed unmerged, and what
    /// [`FileDriver::merge_landed`] then finds) for the caller to record as garbage once it
    /// persisted `map`. The range reads as a hole (zeros) at once.
    pub fn punch_extents(
        &self,
        file: FileId,
        map: &mut ExtentMap,
        from: u64,
        to: u64,
    ) -> Result<Vec<ExtentVersion>> {
        self.check_context()?;
        if from >= to {
            return Ok(Vec::new());
        }
        let st = self.state(file);
        let gone: Vec<ExtentVersion> = {
            let mut m = st.meta.lock();
            // An upload in flight could land after the caller deletes the object: let it end.
            while m.extents.range(from..to).any(|(_, e)| e.uploading) {
                st.uploaded.wait(&mut m);
            }
            let cached: Vec<u64> = m.extents.range(from..to).map(|(i, _)| *i).collect();
            for idx in &cached {
                self.drop_extent(&st, &mut m, *idx);
            }
            let mut gone: Vec<ExtentVersion> = map.range(from..to).map(|(i, g)| (*i, *g)).collect();
            map.retain(|i, _| !(from..to).contains(i));
            let landed: Vec<ExtentVersion> =
                m.backend.range(from..to).map(|(i, g)| (*i, *g)).collect();
            m.backend.retain(|i, _| !(from..to).contains(i));
            gone.extend(landed);
            for (idx, _) in &gone {
                m.bump(*idx);
            }
            gone
        };
        self.release(st);
        let mut gone = gone;
        gone.extend(self.merge_landed(file, map));
        Ok(gone)
    }

    /// Deletes these extent objects from the backend (missing ones are fine).
    pub fn delete_extents(&self, file: FileId, extents: &[ExtentVersion]) -> Result<()> {
        let versions: Vec<(FileId, u64, u64)> =
            extents.iter().map(|(i, g)| (file, *i, *g)).collect();
        self.delete_versions(&versions)
    }

    /// Deletes these extent objects of any files from the backend, batched (the store's
    /// `delete_many`: one request per 1000 keys on S3); missing ones are fine.
    pub fn delete_versions(&self, versions: &[(FileId, u64, u64)]) -> Result<()> {
        self.check_context()?;
        if versions.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = versions
            .iter()
            .map(|(f, i, g)| extent_key(*f, *i, *g))
            .collect();
        let store = self.store.clone();
        self.rt
            .block_on(async move { store.delete_many(&keys).await })
            .map_err(Error::from)
    }

    /// Drops the file's cache and returns every extent object it has on the backend: those in
    /// `map`, and uploads landed or failed but not merged yet (the caller deletes them, or
    /// records them for a collector).
    pub fn forget(&self, file: FileId, map: &ExtentMap) -> Result<Vec<ExtentVersion>> {
        self.check_context()?;
        let st = self.files.lock().remove(&file);
        let mut keys: BTreeSet<ExtentVersion> = map.iter().map(|(i, g)| (*i, *g)).collect();
        if let Some(st) = st {
            let mut m = st.meta.lock();
            while m.extents.values().any(|e| e.uploading) {
                st.uploaded.wait(&mut m);
            }
            let cached: Vec<u64> = m.extents.keys().copied().collect();
            for idx in cached {
                self.drop_extent(&st, &mut m, idx);
            }
            // Landed or failed but not in the map yet: those too.
            keys.extend(std::mem::take(&mut m.backend));
            keys.extend(std::mem::take(&mut m.garbage));
            for (idx, _) in &keys {
                m.bump(*idx);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Drops the file's cache and deletes all its extents in `map` (and any landed or failed
    /// upload not merged yet) from the backend.
    pub fn delete(&self, file: FileId, map: &ExtentMap) -> Result<()> {
        let keys = self.forget(file, map)?;
        self.delete_extents(file, &keys)
    }

    /// How many extents of `file` exist only locally (dirty or landed, not in `map` yet).
    pub fn extents_beyond(&self, file: FileId, map: &ExtentMap) -> u64 {
        self.local_extents(file, map).len() as u64
    }

    /// The indexes of the extents of `file` that exist only locally (dirty or landed, not in
    /// `map` yet): with `map`'s, every extent that holds data.
    pub fn local_extents(&self, file: FileId, map: &ExtentMap) -> BTreeSet<u64> {
        let st = self.files.lock().get(&file).cloned();
        st.map_or_else(BTreeSet::new, |st| {
            let m = st.meta.lock();
            let mut extra: BTreeSet<u64> = m
                .extents
                .iter()
                .filter(|(i, e)| e.dirty && !map.contains_key(i))
                .map(|(i, _)| *i)
                .collect();
            extra.extend(m.backend.keys().filter(|i| !map.contains_key(i)));
            extra
        })
    }

    /// Bytes uploaded since open (each extent PUT that succeeded, counted once).
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Whether `file` has extents written and not yet uploaded, or uploads not yet merged.
    pub fn has_dirty(&self, file: FileId) -> bool {
        let st = self.files.lock().get(&file).cloned();
        st.is_some_and(|st| {
            let m = st.meta.lock();
            m.extents.values().any(|e| e.dirty) || !m.backend.is_empty() || !m.garbage.is_empty()
        })
    }
}

#[cfg(test)]
mod tests;
