//! A regular file's data: the FileDriver's extents, made durable at COMMIT by the file journal
//! (`journal/`), uploaded in the background (`fs/upload.rs`), and the pacing of files' writes.
//!
//! The contract (FORMATS.md, "The file journal"): a COMMIT or a stable write returns once the
//! file's journal records are durable; the extents reach the backend later, each upload a new
//! object generation; the namespace records the extent map, the size and the applied LSN in one
//! durable transaction after the objects are on the backend.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use strata_filedriver::{ExtentMap, ExtentVersion, FileDriver, EXTENT_SIZE};

use crate::data::{space_used, Commit, ObjectData, Persist};
use crate::error::{Error, Result};
use crate::journal::{write_cost, Journal, Record, MAX_WRITE_DATA};
use crate::registry::pacing::{soft_mark, Admit, Pacer};
use crate::types::Timestamp;

mod space;

/// Free space a write to a regular file leaves on the data directory's disk (beyond its own
/// length): room for the namespace's transactions, so that a full disk still lets files be
/// removed (as a filesystem's reserved blocks do).
pub(crate) const FREE_SPACE_RESERVE: u64 = 2 << 20;

/// How long a write waits for the uploader to free journal space on a full disk before it is
/// answered `NoSpace`.
const SPACE_WAIT: Duration = Duration::from_secs(2);

/// The bounds and delays of regular files' writes and uploads (from the parameter table).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilePolicy {
    /// `File_Write_Buffer_Size`: the hard mark of the journal's bytes.
    pub(crate) hard: u64,
    /// `Write_Throttle_Start`: the soft mark, in % of `hard`.
    pub(crate) start_pct: u64,
    /// `Backend_Stall_Timeout`.
    pub(crate) stall: Duration,
    /// `File_Upload_Delay`.
    pub(crate) upload_delay: Duration,
    /// `Extent_Cache_Size`: dirty extents past half of it make uploads urgent.
    pub(crate) cache_bytes: u64,
}

/// What every regular file shares: the driver, the journal, the pacing of writes, and the
/// uploader's wake-up.
#[derive(Debug)]
pub(crate) struct FileShared {
    pub(crate) driver: Arc<FileDriver>,
    pub(crate) journal: Arc<Journal>,
    /// The data directory (its free space is checked before each write).
    data_dir: PathBuf,
    pacer: Pacer,
    soft: u64,
    policy: FilePolicy,
    /// Set when the uploader is wanted now (a backlog above the soft mark, a flush).
    wanted: Mutex<bool>,
    wake: Condvar,
}

impl FileShared {
    /// Files' shared state: pacing and uploads per `policy`.
    pub(crate) fn new(
        driver: Arc<FileDriver>,
        journal: Arc<Journal>,
        data_dir: PathBuf,
        policy: FilePolicy,
    ) -> FileShared {
        let uploaded = driver.uploaded_bytes();
        let p = policy;
        FileShared {
            driver,
            journal,
            data_dir,
            pacer: Pacer::named("regular files", p.hard, p.start_pct, p.stall, uploaded),
            soft: soft_mark(p.hard, p.start_pct),
            policy,
            wanted: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// Waits until the data directory's disk has room for `len` bytes and the reserve; the
    /// uploader, woken, frees journal segments once their data is on the backend. `NoSpace`
    /// after [`SPACE_WAIT`].
    fn check_space(&self, len: u64) -> Result<()> {
        let start = std::time::Instant::now();
        loop {
            let st = nix::sys::statvfs::statvfs(&self.data_dir)
                .map_err(|e| crate::error::io_err("statvfs", std::io::Error::from(e)))?;
            let avail = st.blocks_available().saturating_mul(st.fragment_size());
            if avail >= FREE_SPACE_RESERVE + 2 * len {
                return Ok(());
            }
            if start.elapsed() >= SPACE_WAIT {
                return Err(Error::NoSpace);
            }
            self.wake_uploader();
            self.journal.wait_for_room(Duration::from_millis(100));
        }
    }

    /// Admits a write that appends `cost` journal bytes; returns the bytes it reserved.
    fn admit(&self, cost: u64) -> Result<u64> {
        self.check_space(cost)?;
        let reserved = std::cell::Cell::new(0);
        let admitted = self.pacer.admit(
            cost,
            || self.journal.backlog(),
            || self.driver.uploaded_bytes(),
            |len, hard| {
                let r = self.journal.reserve(len, hard);
                if r.is_some() {
                    reserved.set(len);
                }
                r
            },
            |t| {
                self.wake_uploader();
                self.journal.wait_for_room(t);
            },
        );
        if admitted == Admit::Refuse {
            return Err(Error::Delay);
        }
        if self.pressure() {
            self.wake_uploader();
        }
        Ok(reserved.get())
    }

    /// Whether uploads cannot wait for `File_Upload_Delay`: the journal past its soft mark, or
    /// dirty extents filling half of the extent cache.
    pub(crate) fn pressure(&self) -> bool {
        self.journal.backlog() > self.soft
            || self.driver.cache_stats().dirty_bytes > self.policy.cache_bytes / 2
    }

    /// `File_Upload_Delay`.
    pub(crate) fn upload_delay(&self) -> Duration {
        self.policy.upload_delay
    }

    /// Asks the uploader to run now.
    pub(crate) fn wake_uploader(&self) {
        *self.wanted.lock() = true;
        self.wake.notify_all();
    }

    /// The uploader waits here at most `limit` for a wake-up; true if it was woken.
    pub(crate) fn wait_for_work(&self, limit: Duration) -> bool {
        let mut w = self.wanted.lock();
        if !*w {
            self.wake.wait_for(&mut w, limit);
        }
        std::mem::replace(&mut *w, false)
    }
}

#[derive(Debug)]
struct Sizes {
    /// Size including writes not yet committed.
    size: u64,
    /// Writes since the last commit.
    dirty: bool,
    /// The LSN of the file's last journal record (0: none this run).
    last_lsn: u64,
    /// The LSN of the file's first record not yet applied (uploaded and recorded), if any.
    first_unapplied: Option<u64>,
    /// Since when records wait (set with `first_unapplied`).
    waiting_since: Option<Instant>,
    /// The LSN of the first upload record not yet resolved by a recorded persist (its segment
    /// stays until then: a crash must find it to list the object as garbage).
    upload_pin: Option<u64>,
    /// The file's data was deleted (unlinked and released): writes racing it are refused.
    deleted: bool,
    /// Extent indices whose state a failed persist did not record: the next one records them
    /// as the map has them then.
    unrecorded: BTreeSet<u64>,
    /// Garbage a failed persist did not record.
    garbage: Vec<ExtentVersion>,
    /// The extent holding the end of file may have bytes beyond the size on the backend (only
    /// from format 1, whose uploads overwrote objects in place): the first growth zeroes them.
    suspect_tail: bool,
}

/// A regular file: the extent map and sizes live here while loaded, and in the namespace
/// (redb) once applied.
#[derive(Debug)]
pub(crate) struct FileData {
    id: u64,
    shared: Arc<FileShared>,
    /// Read and write take it shared (the driver locks extents itself); merging uploads,
    /// truncate and delete take it exclusive, so the map they change is never read half-updated.
    map: RwLock<ExtentMap>,
    sizes: Mutex<Sizes>,
    /// Held across one upload (or truncate, or delete) of this file: they never overlap.
    upload: Mutex<()>,
}

impl FileData {
    /// The file is gone (its last link and open): refuses later writes, drops its cache and
    /// returns every extent object it has on the backend, for the caller to delete or to
    /// record as garbage.
    pub(crate) fn forget(&self) -> Result<Vec<ExtentVersion>> {
        let _one = self.upload.lock();
        let map = self.map.write();
        self.sizes.lock().deleted = true;
        let versions = self.driver().forget(self.id, &map)?;
        let mut s = self.sizes.lock();
        s.first_unapplied = None;
        s.waiting_since = None;
        s.upload_pin = None;
        // What an earlier upload superseded or left behind, not recorded yet (the map, which
        // `forget` took, names the versions of the unrecorded indices).
        s.unrecorded.clear();
        let mut all: Vec<ExtentVersion> = versions;
        all.append(&mut s.garbage);
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    /// The data of file `id` with its recorded `size` and extent `map`.
    pub(crate) fn new(id: u64, shared: Arc<FileShared>, size: u64, map: ExtentMap) -> FileData {
        let suspect_tail =
            !size.is_multiple_of(EXTENT_SIZE) && map.get(&(size / EXTENT_SIZE)) == Some(&0);
        FileData {
            id,
            shared,
            map: RwLock::new(map),
            sizes: Mutex::new(Sizes {
                size,
                dirty: false,
                last_lsn: 0,
                first_unapplied: None,
                waiting_since: None,
                upload_pin: None,
                deleted: false,
                unrecorded: BTreeSet::new(),
                garbage: Vec::new(),
                suspect_tail,
            }),
            upload: Mutex::new(()),
        }
    }

    fn driver(&self) -> &FileDriver {
        &self.shared.driver
    }

    /// Appends a write's record and takes its effect on the size (one lock: the size and the
    /// last LSN always agree).
    fn journal_write(
        &self,
        offset: u64,
        data: &[u8],
        reserved: u64,
        mtime: Timestamp,
    ) -> Result<()> {
        let mut s = self.sizes.lock();
        let lsn = self.shared.journal.append(
            &Record::Write {
                ino: self.id,
                offset,
                mtime,
                data: Cow::Borrowed(data),
            },
            reserved,
        )?;
        s.size = s.size.max(offset + data.len() as u64);
        s.dirty = true;
        s.last_lsn = lsn;
        s.first_unapplied.get_or_insert(lsn);
        s.waiting_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Writes one record's worth: into the cache, then the journal.
    fn write_chunk(&self, offset: u64, data: &[u8], mtime: Timestamp) -> Result<()> {
        let reserved = self.shared.admit(write_cost(data.len()))?;
        let r = self.write_admitted(offset, data, reserved, mtime);
        if let Err(WriteFailed::Before(e)) = r {
            self.shared.journal.unreserve(reserved);
            return Err(e);
        }
        r.map_err(WriteFailed::into_inner)
    }

    fn write_admitted(
        &self,
        offset: u64,
        data: &[u8],
        reserved: u64,
        mtime: Timestamp,
    ) -> std::result::Result<(), WriteFailed> {
        {
            let map = self.map.read();
            let gap = {
                let s = self.sizes.lock();
                if s.deleted {
                    return Err(WriteFailed::Before(Error::Stale));
                }
                s.suspect_tail && offset > s.size
            };
            if !gap {
                self.driver()
                    .write(self.id, &map, offset, data)
                    .map_err(|e| WriteFailed::Before(e.into()))?;
                return self
                    .journal_write(offset, data, reserved, mtime)
                    .map_err(WriteFailed::After);
            }
        }
        // Growing over a suspect tail: alone on the file, zero the gap first (journaled too).
        let map = self.map.write();
        let (size, suspect) = {
            let s = self.sizes.lock();
            (s.size, s.suspect_tail)
        };
        if suspect && offset > size {
            let end = offset.min((size / EXTENT_SIZE + 1) * EXTENT_SIZE);
            if end > size {
                let zeros = vec![0u8; (end - size) as usize];
                self.driver()
                    .write(self.id, &map, size, &zeros)
                    .map_err(|e| WriteFailed::Before(e.into()))?;
                self.journal_write(size, &zeros, 0, mtime)
                    .map_err(WriteFailed::Before)?;
            }
            self.sizes.lock().suspect_tail = false;
        }
        self.driver()
            .write(self.id, &map, offset, data)
            .map_err(|e| WriteFailed::Before(e.into()))?;
        self.journal_write(offset, data, reserved, mtime)
            .map_err(WriteFailed::After)
    }

    /// Replays a durable journal record (restart): into the cache, as if just written.
    pub(crate) fn replay_write(&self, lsn: u64, offset: u64, data: &[u8]) -> Result<()> {
        let map = self.map.read();
        {
            let mut s = self.sizes.lock();
            if s.suspect_tail && offset > s.size {
                let end = offset.min((s.size / EXTENT_SIZE + 1) * EXTENT_SIZE);
                if end > s.size {
                    let zeros = vec![0u8; (end - s.size) as usize];
                    self.driver().write(self.id, &map, s.size, &zeros)?;
                }
                s.suspect_tail = false;
            }
        }
        self.driver().write(self.id, &map, offset, data)?;
        let mut s = self.sizes.lock();
        s.size = s.size.max(offset + data.len() as u64);
        s.last_lsn = s.last_lsn.max(lsn);
        s.first_unapplied.get_or_insert(lsn);
        s.waiting_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// The LSN of the first record not yet applied, if any (the journal keeps it).
    pub(crate) fn first_unapplied(&self) -> Option<u64> {
        let s = self.sizes.lock();
        match (s.first_unapplied, s.upload_pin) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the uploader should upload this file now: something to do, and its records
    /// waited `delay` (or something a failed round left to record).
    pub(crate) fn upload_due(&self, delay: Duration) -> bool {
        let s = self.sizes.lock();
        let waited = s.waiting_since.is_none_or(|t| t.elapsed() >= delay);
        drop(s);
        (waited && self.needs_upload()) || self.has_unrecorded()
    }

    fn has_unrecorded(&self) -> bool {
        let s = self.sizes.lock();
        !s.unrecorded.is_empty() || !s.garbage.is_empty()
    }

    /// Whether the uploader has something to do for this file.
    pub(crate) fn needs_upload(&self) -> bool {
        let s = self.sizes.lock();
        s.first_unapplied.is_some()
            || s.upload_pin.is_some()
            || !s.unrecorded.is_empty()
            || !s.garbage.is_empty()
            || self.shared.driver.has_dirty(self.id)
    }

    /// Records the objects an upload is about to write, durably, before any PUT.
    fn record_uploads(&self, versions: &[ExtentVersion]) -> strata_filedriver::Result<()> {
        let mut last = 0;
        for &(index, gen) in versions {
            let lsn = self
                .shared
                .journal
                .append(
                    &Record::Upload {
                        ino: self.id,
                        index,
                        gen,
                    },
                    0,
                )
                .map_err(to_driver)?;
            if last == 0 {
                // The segment holding them stays until this upload is recorded.
                let mut s = self.sizes.lock();
                s.upload_pin = Some(s.upload_pin.map_or(lsn, |p| p.min(lsn)));
            }
            last = lsn;
        }
        self.shared.journal.commit(last).map_err(to_driver)
    }

    /// What the metadata must record after `map` changed from `old`: extents set (with their
    /// generation) and indices removed, plus any left unrecorded by a failed persist.
    fn diff(&self, old: &ExtentMap, map: &ExtentMap) -> (Vec<ExtentVersion>, Vec<u64>) {
        let mut touched: BTreeSet<u64> = std::mem::take(&mut self.sizes.lock().unrecorded);
        touched.extend(old.keys().filter(|i| old.get(i) != map.get(i)));
        touched.extend(map.keys().filter(|i| old.get(i) != map.get(i)));
        let mut set = Vec::new();
        let mut removed = Vec::new();
        for i in touched {
            match map.get(&i) {
                Some(g) => set.push((i, *g)),
                None => removed.push(i),
            }
        }
        (set, removed)
    }

    /// Records a cut of the map (a truncate, extents of a hole), with the upload lock and the
    /// map's write lock held and the journal committed up to `lsn`: every other dirty extent
    /// goes up too (the applied LSN recorded covers them all), then the map's changes since
    /// `old`, the `garbage` and `lsn` are persisted with `size`; `done` updates the sizes in
    /// the same hold of their lock. On failure nothing is recorded (the next commit records
    /// what this one could not) and the error is returned.
    #[allow(clippy::too_many_arguments)]
    fn record_cut(
        &self,
        old: &ExtentMap,
        map: &mut ExtentMap,
        mut garbage: Vec<ExtentVersion>,
        lsn: u64,
        size: u64,
        persist: Persist<'_>,
        done: impl FnOnce(&mut Sizes),
    ) -> Result<()> {
        let uploaded = self
            .driver()
            .upload_dirty(self.id, &mut |v| self.record_uploads(v));
        garbage.extend(self.driver().merge_landed(self.id, map));
        let (set, removed) = self.diff(old, map);
        let pin = {
            let mut s = self.sizes.lock();
            garbage.append(&mut s.garbage);
            s.upload_pin
        };
        let commit = Commit {
            size,
            set,
            removed,
            garbage,
            applied_lsn: Some(lsn),
            lazy: false,
            defer_sync: false,
        };
        if let Err(e) = uploaded {
            self.unrecorded(&commit);
            return Err(e.into());
        }
        if let Err(e) = persist(&commit) {
            self.unrecorded(&commit);
            return Err(e);
        }
        let mut s = self.sizes.lock();
        done(&mut s);
        s.dirty = false;
        if s.upload_pin == pin {
            s.upload_pin = None;
        }
        if s.last_lsn <= lsn {
            s.first_unapplied = None;
            s.waiting_since = None;
        }
        Ok(())
    }

    /// Remembers a commit that could not be recorded, for the next one.
    fn unrecorded(&self, c: &Commit) {
        let mut s = self.sizes.lock();
        s.unrecorded.extend(
            c.set
                .iter()
                .map(|(i, _)| *i)
                .chain(c.removed.iter().copied()),
        );
        s.garbage.extend(c.garbage.iter().copied());
    }

    /// Uploads the file's dirty extents and records them with `persist` (the uploader's step 3
    /// of the journal protocol), not durable yet: returns what it recorded, for
    /// [`FileData::applied`] once the namespace made it durable; or the error that stopped it
    /// (what landed is merged by the next call).
    pub(crate) fn upload(&self, persist: Persist<'_>) -> Result<Option<Recorded>> {
        let _one = self.upload.lock();
        if !self.needs_upload() {
            return Ok(None);
        }
        // Every record up to `lsn` is in the cache already (a write's record is appended after
        // its cache write), and `size` has its effect: what the claims below read covers them.
        let (size, lsn) = {
            let s = self.sizes.lock();
            (s.size, s.last_lsn)
        };
        // The applied LSN recorded below must never be above what the journal made durable:
        // after a crash the LSNs above it would be handed out again, and skipped at replay.
        self.shared.journal.commit(lsn)?;
        self.driver()
            .upload_dirty(self.id, &mut |v| self.record_uploads(v))?;
        // Every upload record so far is resolved by this persist (landed, or garbage).
        let pin = self.sizes.lock().upload_pin;
        let mut map = self.map.write();
        let old = map.clone();
        let mut garbage = self.driver().merge_landed(self.id, &mut map);
        let (set, removed) = self.diff(&old, &map);
        garbage.append(&mut self.sizes.lock().garbage);
        let commit = Commit {
            size,
            set,
            removed,
            garbage,
            applied_lsn: Some(lsn),
            lazy: false,
            defer_sync: true,
        };
        if let Err(e) = persist(&commit) {
            self.unrecorded(&commit);
            return Err(e);
        }
        Ok(Some(Recorded { lsn, pin }))
    }

    /// What [`FileData::upload`] recorded is durable: the journal may let it go.
    pub(crate) fn applied(&self, rec: Recorded) {
        let lsn = rec.lsn;
        let mut s = self.sizes.lock();
        if s.upload_pin == rec.pin {
            s.upload_pin = None;
        }
        if s.first_unapplied.is_some_and(|f| f <= lsn) {
            if s.last_lsn <= lsn {
                s.first_unapplied = None;
                s.waiting_since = None;
            } else {
                s.first_unapplied = Some(lsn + 1);
            }
        }
    }
}

/// What one upload recorded: the applied LSN, and the upload pin it resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorded {
    lsn: u64,
    pin: Option<u64>,
}

/// A write that failed before its journal record (its reservation is unused) or after.
enum WriteFailed {
    Before(Error),
    After(Error),
}

impl WriteFailed {
    fn into_inner(self) -> Error {
        match self {
            WriteFailed::Before(e) | WriteFailed::After(e) => e,
        }
    }
}

fn to_driver(e: Error) -> strata_filedriver::Error {
    strata_filedriver::Error::Io(std::io::Error::other(e.to_string()))
}

impl ObjectData for FileData {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        let map = self.map.read();
        let size = self.sizes.lock().size;
        if offset >= size {
            return Ok((0, true));
        }
        let n = (size - offset).min(buf.len() as u64) as usize;
        self.driver().read(self.id, &map, offset, &mut buf[..n])?;
        Ok((n, offset + n as u64 >= size))
    }

    fn write(&self, offset: u64, data: &[u8], mtime: Timestamp) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let n = (data.len() - done).min(MAX_WRITE_DATA);
            self.write_chunk(offset + done as u64, &data[done..done + n], mtime)?;
            done += n;
        }
        Ok(())
    }

    fn truncate(&self, new_size: u64, persist: Persist<'_>) -> Result<()> {
        let _one = self.upload.lock();
        let mut map = self.map.write();
        let (size, suspect, lsn) = {
            let s = self.sizes.lock();
            (s.size, s.suspect_tail, s.last_lsn)
        };
        if suspect && new_size > size {
            let end = new_size.min((size / EXTENT_SIZE + 1) * EXTENT_SIZE);
            if end > size {
                self.driver()
                    .write(self.id, &map, size, &vec![0u8; (end - size) as usize])?;
            }
        }
        let old = map.clone();
        // The applied LSN recorded below is never above what the journal made durable.
        self.shared.journal.commit(lsn)?;
        // From here on the cut may be partly done (map and cache cut, tail zeroed or not): on
        // failure the file must stay the truncated one in memory, never the old size over cut
        // extents, and the next commit records it; bytes past the new end in the tail's object
        // may still be there, to be zeroed before the file grows over them.
        let cut_half_done = |e: Error| {
            let mut s = self.sizes.lock();
            s.size = new_size;
            s.dirty = true;
            s.suspect_tail = !new_size.is_multiple_of(EXTENT_SIZE);
            e
        };
        let garbage = match self
            .driver()
            .truncate(self.id, &mut map, new_size, &mut |v| self.record_uploads(v))
        {
            Ok(g) => g,
            Err(e) => {
                let changed: Vec<u64> = old
                    .keys()
                    .chain(map.keys())
                    .filter(|i| old.get(i) != map.get(i))
                    .copied()
                    .collect();
                self.sizes.lock().unrecorded.extend(changed);
                return Err(cut_half_done(e.into()));
            }
        };
        self.record_cut(&old, &mut map, garbage, lsn, new_size, persist, |s| {
            s.size = new_size;
            s.suspect_tail = false;
        })
        .map_err(cut_half_done)
    }

    fn sync(&self, _persist: Persist<'_>) -> Result<()> {
        let lsn = self.sizes.lock().last_lsn;
        self.shared.journal.commit(lsn)?;
        let mut s = self.sizes.lock();
        if s.last_lsn == lsn {
            s.dirty = false;
        }
        Ok(())
    }

    fn punch(&self, offset: u64, len: u64, persist: Persist<'_>) -> Result<()> {
        self.punch_range(offset, len, persist)
    }

    fn allocate(&self, offset: u64, len: u64, persist: Persist<'_>) -> Result<()> {
        // The size grows over the range (sparse); a regular file's extents are written when
        // data comes, so nothing is set aside for them.
        let end = offset.saturating_add(len);
        if end > self.size() {
            self.truncate(end, persist)?;
        }
        Ok(())
    }

    fn seek(&self, offset: u64, what: crate::types::SeekWhat) -> Result<Option<u64>> {
        self.seek_extents(offset, what)
    }

    fn size(&self) -> u64 {
        self.sizes.lock().size
    }

    fn space_used(&self) -> u64 {
        let map = self.map.read();
        let extents = map.len() as u64 + self.driver().extents_beyond(self.id, &map);
        space_used(self.size(), extents)
    }

    fn is_dirty(&self) -> bool {
        self.sizes.lock().dirty
    }

    fn delete(&self) -> Result<()> {
        let versions = self.forget()?;
        self.driver().delete_extents(self.id, &versions)?;
        Ok(())
    }

    fn as_file(&self) -> Option<&FileData> {
        Some(self)
    }
}
