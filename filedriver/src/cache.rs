//! The local extent cache: one file per cached extent; fetching, reading, writing, zeroing a
//! tail, installing and dropping extents.

use super::{
    extent_key, Error, Extent, ExtentMap, FileDriver, FileId, FileMeta, FileState, Result,
    EXTENT_SIZE,
};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) fn cache_err(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace,
        _ => Error::Io(e),
    }
}

/// Empties `dir` (creating it if needed) without removing the directory itself.
pub(super) fn wipe_dir(dir: &Path) -> std::io::Result<()> {
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
    /// `Handle::block_on` panics inside a runtime; refuse instead (panics must not reach C).
    pub(super) fn check_context(&self) -> Result<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Io(std::io::Error::other(
                "FileDriver called from inside a tokio runtime (it blocks; call it from a plain thread)",
            )));
        }
        Ok(())
    }

    pub(super) fn state(&self, file: FileId) -> Arc<FileState> {
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
    pub(super) fn release(&self, st: Arc<FileState>) {
        let mut files = self.files.lock();
        if Arc::strong_count(&st) != 2 || !files.get(&st.file).is_some_and(|s| Arc::ptr_eq(s, &st))
        {
            return;
        }
        // Never wait for a file lock while holding the map lock.
        let idle = st
            .meta
            .try_lock()
            .is_some_and(|m| m.extents.is_empty() && m.backend.is_empty() && m.garbage.is_empty());
        if idle {
            files.remove(&st.file);
        }
    }

    pub(super) fn cache_path(&self, file: FileId, idx: u64, id: u64) -> PathBuf {
        self.config
            .cache_dir
            .join(format!("{file:016x}.{idx:08x}.{id:x}"))
    }

    /// GETs a whole extent object; a missing one reads as empty (a map naming a missing
    /// object is either a stale copy racing a truncate, or lost data: logged).
    pub(super) fn fetch(&self, file: FileId, idx: u64, gen: u64) -> Result<Bytes> {
        let key = extent_key(file, idx, gen);
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

    pub(super) fn read_extent(
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
            let Some(gen) = m.version(map, idx) else {
                out.fill(0);
                return Ok(());
            };
            (m.epoch(idx), gen)
        };
        let (epoch, gen) = epoch;
        let data = self.fetch(st.file, idx, gen)?;
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

    pub(super) fn write_extent(
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
                let version = m.version(map, idx);
                if whole || version.is_none() {
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
                (m.epoch(idx), version.unwrap_or(0))
            };
            let (epoch, gen) = epoch;
            // Read-modify-write: fetch the base outside the lock.
            let base = self.fetch(st.file, idx, gen)?;
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
    pub(super) fn zero_tail(
        &self,
        st: &Arc<FileState>,
        map: &ExtentMap,
        idx: u64,
        off: u64,
    ) -> Result<()> {
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
                let Some(gen) = m.version(map, idx) else {
                    return Ok(());
                };
                (m.epoch(idx), gen)
            };
            let (epoch, gen) = epoch;
            let base = self.fetch(st.file, idx, gen)?;
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
    pub(super) fn install(
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
    pub(super) fn drop_extent(&self, st: &Arc<FileState>, m: &mut FileMeta, idx: u64) {
        if let Some(e) = m.extents.remove(&idx) {
            self.unlist(&e);
            m.bump(idx);
            if let Err(err) = fs::remove_file(self.cache_path(st.file, idx, e.id)) {
                tracing::warn!(file = st.file, idx, %err, "could not remove a cache file");
            }
        }
    }
}

pub(super) fn copy_from(data: &[u8], off: u64, out: &mut [u8]) {
    let off = (off as usize).min(data.len());
    let n = (data.len() - off).min(out.len());
    out[..n].copy_from_slice(&data[off..off + n]);
    out[n..].fill(0);
}

/// Reads `out.len()` bytes at `off` of a cache file holding `len` bytes; beyond is zeros.
pub(super) fn read_cached(path: &Path, len: u64, off: u64, out: &mut [u8]) -> Result<()> {
    let n = (len.saturating_sub(off) as usize).min(out.len());
    if n > 0 {
        let f = File::open(path).map_err(cache_err)?;
        f.read_exact_at(&mut out[..n], off).map_err(cache_err)?;
    }
    out[n..].fill(0);
    Ok(())
}

pub(super) fn write_cached(path: &Path, off: u64, data: &[u8]) -> Result<()> {
    let f = File::options().write(true).open(path).map_err(cache_err)?;
    f.write_all_at(data, off).map_err(cache_err)
}

pub(super) fn set_len(path: &Path, len: u64) -> Result<()> {
    let f = File::options().write(true).open(path).map_err(cache_err)?;
    f.set_len(len).map_err(cache_err)
}
