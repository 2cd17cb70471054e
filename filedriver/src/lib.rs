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

#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
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

fn cache_err(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace,
        _ => Error::Io(e),
    }
}

/// Empties `dir` (creating it if needed) without removing the directory itself.
fn wipe_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
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

    // ---- internals ------------------------------------------------------------------------

    /// `Handle::block_on` panics inside a runtime; refuse instead (panics must not reach C).
    fn check_context(&self) -> Result<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Io(std::io::Error::other(
                "FileDriver called from inside a tokio runtime (it blocks; call it from a plain thread)",
            )));
        }
        Ok(())
    }

    fn state(&self, file: FileId) -> Arc<FileState> {
        self.files
            .lock()
            .entry(file)
            .or_insert_with(|| {
                Arc::new(FileState {
                    file,
                    meta: Mutex::new(FileMeta::default()),
                    uploaded: Condvar::new(),
                })
            })
            .clone()
    }

    /// Ends an operation's use of a file's state; forgets the state when nothing needs it: no
    /// other user (the map's reference and ours are the only ones; cached extents hold one in
    /// the LRU), nothing cached, no write-back the map does not know of yet.
    fn release(&self, st: Arc<FileState>) {
        let mut files = self.files.lock();
        if Arc::strong_count(&st) != 2 || !files.get(&st.file).is_some_and(|s| Arc::ptr_eq(s, &st))
        {
            return;
        }
        // Never wait for a file lock while holding the map lock.
        let idle = st
            .meta
            .try_lock()
            .is_some_and(|m| m.extents.is_empty() && m.backend.is_empty());
        if idle {
            files.remove(&st.file);
        }
    }

    fn cache_path(&self, file: FileId, idx: u64, id: u64) -> PathBuf {
        self.config
            .cache_dir
            .join(format!("{file:016x}.{idx:08x}.{id:x}"))
    }

    /// GETs a whole extent object; a missing one reads as empty (a map naming a missing
    /// object is either a stale copy racing a truncate, or lost data: logged).
    fn fetch(&self, file: FileId, idx: u64) -> Result<Bytes> {
        let key = extent_key(file, idx);
        match self.rt.block_on(self.store.get(&key)) {
            Ok((mut data, _)) => {
                if data.len() as u64 > EXTENT_SIZE {
                    tracing::warn!(%key, len = data.len(), "extent object longer than an extent; extra bytes ignored");
                    data.truncate(EXTENT_SIZE as usize);
                }
                Ok(data)
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!(%key, "extent named by the map is missing on the backend; reading zeros");
                Ok(Bytes::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn read_extent(
        &self,
        st: &Arc<FileState>,
        map: &ExtentMap,
        idx: u64,
        off: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let epoch = {
            let mut m = st.meta.lock();
            if let Some(e) = m.extents.get_mut(&idx) {
                read_cached(&self.cache_path(st.file, idx, e.id), e.len, off, out)?;
                self.relist(st, idx, e, |_| {});
                return Ok(());
            }
            if !m.exists(map, idx) {
                out.fill(0);
                return Ok(());
            }
            m.epoch(idx)
        };
        let data = self.fetch(st.file, idx)?;
        let mut m = st.meta.lock();
        if let Some(e) = m.extents.get_mut(&idx) {
            // Cached meanwhile (by a reader or a writer): that copy is the newest.
            read_cached(&self.cache_path(st.file, idx, e.id), e.len, off, out)?;
            self.relist(st, idx, e, |_| {});
            return Ok(());
        }
        copy_from(&data, off, out);
        if m.epoch(idx) == epoch {
            self.install(st, &mut m, idx, &data, false)?;
        }
        // Else the extent changed while we fetched: what we read overlapped that change and
        // may be returned, but must not be cached.
        Ok(())
    }

    fn write_extent(
        &self,
        st: &Arc<FileState>,
        map: &ExtentMap,
        idx: u64,
        off: u64,
        data: &[u8],
    ) -> Result<()> {
        loop {
            let epoch = {
                let mut m = st.meta.lock();
                if let Some(e) = m.extents.get_mut(&idx) {
                    let path = self.cache_path(st.file, idx, e.id);
                    if let Err(err) = write_cached(&path, off, data) {
                        // Part of it may have landed: a clean copy no longer equals the
                        // backend's (drop it); a dirty one stays dirty with a new generation.
                        if e.dirty {
                            e.gen += 1;
                        } else {
                            self.drop_extent(st, &mut m, idx);
                        }
                        return Err(err);
                    }
                    let end = (off + data.len() as u64).max(e.len);
                    self.relist(st, idx, e, |e| {
                        e.len = end;
                        e.gen += 1;
                        e.dirty = true;
                    });
                    return Ok(());
                }
                let whole = off == 0 && data.len() as u64 == EXTENT_SIZE;
                if whole || !m.exists(map, idx) {
                    let id = self.install(st, &mut m, idx, &[], true)?;
                    let path = self.cache_path(st.file, idx, id);
                    if let Err(e) = write_cached(&path, off, data) {
                        // Leave no empty copy claiming to be the extent.
                        self.drop_extent(st, &mut m, idx);
                        return Err(e);
                    }
                    if let Some(e) = m.extents.get_mut(&idx) {
                        let end = off + data.len() as u64;
                        self.relist(st, idx, e, |e| e.len = end);
                    }
                    return Ok(());
                }
                m.epoch(idx)
            };
            // Read-modify-write: fetch the base outside the lock.
            let base = self.fetch(st.file, idx)?;
            let mut m = st.meta.lock();
            if m.extents.contains_key(&idx) || m.epoch(idx) != epoch {
                continue; // cached or changed meanwhile: write onto the current state
            }
            let id = self.install(st, &mut m, idx, &base, false)?;
            if let Err(err) = write_cached(&self.cache_path(st.file, idx, id), off, data) {
                self.drop_extent(st, &mut m, idx); // may be partly written: not the backend's
                return Err(err);
            }
            if let Some(e) = m.extents.get_mut(&idx) {
                let end = (off + data.len() as u64).max(base.len() as u64);
                self.relist(st, idx, e, |e| {
                    e.len = end;
                    e.gen += 1;
                    e.dirty = true;
                });
            }
            return Ok(());
        }
    }

    /// Zeroes extent `idx` from `off` on (a truncate's new end falls inside it).
    fn zero_tail(&self, st: &Arc<FileState>, map: &ExtentMap, idx: u64, off: u64) -> Result<()> {
        loop {
            let epoch = {
                let mut m = st.meta.lock();
                if let Some(e) = m.extents.get_mut(&idx) {
                    if e.len > off {
                        set_len(&self.cache_path(st.file, idx, e.id), off)?;
                        self.relist(st, idx, e, |e| {
                            e.len = off;
                            e.gen += 1;
                            e.dirty = true;
                        });
                    }
                    return Ok(());
                }
                if !m.exists(map, idx) {
                    return Ok(());
                }
                m.epoch(idx)
            };
            let base = self.fetch(st.file, idx)?;
            if base.len() as u64 <= off {
                return Ok(()); // the object already ends before the new end
            }
            let mut m = st.meta.lock();
            if m.extents.contains_key(&idx) || m.epoch(idx) != epoch {
                continue;
            }
            self.install(st, &mut m, idx, &base[..off as usize], true)?;
            return Ok(());
        }
    }

    /// Caches `data` as extent `idx` (not cached yet) and returns the copy's id.
    fn install(
        &self,
        st: &Arc<FileState>,
        m: &mut FileMeta,
        idx: u64,
        data: &[u8],
        dirty: bool,
    ) -> Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = self.cache_path(st.file, idx, id);
        let created = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|f| f.write_all_at(data, 0));
        if let Err(e) = created {
            let _ = fs::remove_file(&path);
            return Err(cache_err(e));
        }
        let mut e = Extent {
            id,
            len: data.len() as u64,
            gen: 1,
            dirty,
            uploading: false,
            tick: 0,
        };
        self.list(st, idx, &mut e);
        m.extents.insert(idx, e);
        Ok(id)
    }

    /// Removes a cached extent (whatever its state) and its cache file.
    fn drop_extent(&self, st: &Arc<FileState>, m: &mut FileMeta, idx: u64) {
        if let Some(e) = m.extents.remove(&idx) {
            self.unlist(&e);
            m.bump(idx);
            if let Err(err) = fs::remove_file(self.cache_path(st.file, idx, e.id)) {
                tracing::warn!(file = st.file, idx, %err, "could not remove a cache file");
            }
        }
    }

    fn list(&self, st: &Arc<FileState>, idx: u64, e: &mut Extent) {
        let mut lru = self.lru.lock();
        lru.next_tick += 1;
        e.tick = lru.next_tick;
        let list = if e.dirty {
            &mut lru.dirty
        } else {
            &mut lru.clean
        };
        list.insert(e.tick, (st.clone(), idx));
        lru.extents += 1;
        lru.bytes += e.len;
        if e.dirty {
            lru.dirty_bytes += e.len;
        }
    }

    fn unlist(&self, e: &Extent) {
        let mut lru = self.lru.lock();
        let list = if e.dirty {
            &mut lru.dirty
        } else {
            &mut lru.clean
        };
        list.remove(&e.tick);
        lru.extents -= 1;
        lru.bytes -= e.len;
        if e.dirty {
            lru.dirty_bytes -= e.len;
        }
    }

    /// Changes an extent with `f` and moves it to the young end of its LRU list.
    fn relist(&self, st: &Arc<FileState>, idx: u64, e: &mut Extent, f: impl FnOnce(&mut Extent)) {
        self.unlist(e);
        f(e);
        self.list(st, idx, e);
    }

    fn is_uploading(&self, st: &FileState, idx: u64) -> bool {
        st.meta
            .lock()
            .extents
            .get(&idx)
            .is_some_and(|e| e.uploading)
    }

    /// Claims dirty extent `idx` for upload and reads its content. `None` when it is not
    /// cached or clean, or (unless `wait`) when another upload of it is running.
    fn claim(&self, st: &Arc<FileState>, idx: u64, wait: bool) -> Result<Option<Claim>> {
        let mut m = st.meta.lock();
        loop {
            match m.extents.get(&idx) {
                Some(e) if e.uploading && wait => st.uploaded.wait(&mut m),
                Some(e) if e.dirty && !e.uploading => break,
                _ => return Ok(None),
            }
        }
        let Some(e) = m.extents.get_mut(&idx) else {
            return Ok(None);
        };
        let mut data = vec![0u8; e.len as usize];
        read_cached(&self.cache_path(st.file, idx, e.id), e.len, 0, &mut data)?;
        e.uploading = true;
        Ok(Some(Claim {
            idx,
            id: e.id,
            gen: e.gen,
            data: Bytes::from(data),
        }))
    }

    /// Uploads claimed extents concurrently and records the outcome; keeps the first error.
    fn upload_batch(&self, st: &Arc<FileState>, claims: Vec<Claim>, first_err: &mut Option<Error>) {
        if claims.is_empty() {
            return;
        }
        let tasks: Vec<_> = claims
            .iter()
            .map(|c| {
                let store = self.store.clone();
                let key = extent_key(st.file, c.idx);
                let data = c.data.clone();
                self.rt.spawn(async move { store.put(&key, data).await })
            })
            .collect();
        let results = self.rt.block_on(async {
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(match t.await {
                    Ok(r) => r.map(|_| ()).map_err(Error::from),
                    Err(e) => Err(Error::Io(std::io::Error::other(e.to_string()))),
                });
            }
            out
        });
        let mut m = st.meta.lock();
        for (c, r) in claims.iter().zip(results) {
            let ok = r.is_ok();
            if let Err(e) = r {
                tracing::warn!(file = st.file, idx = c.idx, err = %e, "extent upload failed");
                first_err.get_or_insert(e);
            }
            if ok {
                m.backend.insert(c.idx);
            }
            if let Some(e) = m.extents.get_mut(&c.idx).filter(|e| e.id == c.id) {
                e.uploading = false;
                if ok && e.gen == c.gen {
                    self.relist(st, c.idx, e, |e| e.dirty = false);
                }
            }
        }
        drop(m);
        st.uploaded.notify_all();
    }

    /// Brings the cache under its bound: evicts the least recently used clean extents; when
    /// only dirty ones are left, uploads the oldest one that no one else is uploading, then
    /// evicts it. Failures are logged (the data
    /// stays cached and dirty), not returned: the caller's own operation succeeded.
    fn evict(&self) {
        let bound = self.config.cache_bytes;
        let mut stalls = 0;
        loop {
            let (clean, dirty) = {
                let lru = self.lru.lock();
                if lru.bytes <= bound {
                    return;
                }
                let clean = lru
                    .clean
                    .iter()
                    .next()
                    .map(|(t, (st, i))| (*t, st.clone(), *i));
                let dirty: Vec<(Arc<FileState>, u64)> = if clean.is_none() {
                    lru.dirty.values().take(MAX_PARALLEL).cloned().collect()
                } else {
                    Vec::new()
                };
                (clean, dirty)
            };
            if let Some((tick, st, idx)) = clean {
                {
                    let mut m = st.meta.lock();
                    if m.extents
                        .get(&idx)
                        .is_some_and(|e| e.tick == tick && !e.dirty)
                    {
                        self.drop_extent(&st, &mut m, idx);
                    }
                }
                self.release(st);
                continue;
            }
            if dirty.is_empty() {
                return;
            }
            let mut uploaded = 0;
            for (st, idx) in dirty {
                let claim = match self.claim(&st, idx, false) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(file = st.file, idx, err = %e, "cannot read a dirty extent for write-back");
                        None
                    }
                };
                if let Some(c) = claim {
                    let mut err = None;
                    self.upload_batch(&st, vec![c], &mut err);
                    if err.is_none() {
                        // Now clean: the next round evicts it, and writes back no more than
                        // the bound needs.
                        uploaded += 1;
                        break;
                    }
                }
            }
            if uploaded == 0 {
                stalls += 1;
                if stalls > 2 {
                    tracing::warn!(
                        bound,
                        "extent cache over its bound: dirty extents cannot be written back now"
                    );
                    return;
                }
            }
        }
    }
}

fn copy_from(data: &[u8], off: u64, out: &mut [u8]) {
    let off = (off as usize).min(data.len());
    let n = (data.len() - off).min(out.len());
    out[..n].copy_from_slice(&data[off..off + n]);
    out[n..].fill(0);
}

/// Reads `out.len()` bytes at `off` of a cache file holding `len` bytes; beyond is zeros.
fn read_cached(path: &Path, len: u64, off: u64, out: &mut [u8]) -> Result<()> {
    let n = (len.saturating_sub(off) as usize).min(out.len());
    if n > 0 {
        let f = File::open(path).map_err(cache_err)?;
        f.read_exact_at(&mut out[..n], off).map_err(cache_err)?;
    }
    out[n..].fill(0);
    Ok(())
}

fn write_cached(path: &Path, off: u64, data: &[u8]) -> Result<()> {
    let f = File::options().write(true).open(path).map_err(cache_err)?;
    f.write_all_at(data, off).map_err(cache_err)
}

fn set_len(path: &Path, len: u64) -> Result<()> {
    let f = File::options().write(true).open(path).map_err(cache_err)?;
    f.set_len(len).map_err(cache_err)
}

#[cfg(test)]
mod tests;
