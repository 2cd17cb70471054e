//! The file journal: regular files' writes durable on local disk at COMMIT, uploaded later.
//!
//! One journal per gateway, a directory of segments (`<first LSN as 16 hex>.jnl`) on the
//! local-file layer (so the crash simulator sees every byte). Byte layout in `FORMATS.md`.
//!
//! # The protocol
//! 1. A write to a regular file goes into the FileDriver's extent cache, then is appended here
//!    as one record (file, offset, mtime, bytes) with the next log sequence number (LSN). Not
//!    durable yet.
//! 2. A COMMIT (or a stable write) calls [`Journal::commit`] with the file's last LSN: one
//!    thread fdatasyncs the segment for every thread waiting (group commit), and all records up
//!    to the LSN it captured are durable when it returns.
//! 3. The uploader (`fs/upload.rs`) uploads a file's dirty extents, each as a new object
//!    generation. It first appends an upload record per object and commits them, so that an
//!    upload a crash interrupts is a known orphan; then it PUTs; then one durable redb
//!    transaction records the file's extent map, size and *applied LSN* (every record of the
//!    file up to it is on the backend).
//! 4. A segment is deleted ([`Journal::retire`]) once every record in it is applied: its last
//!    LSN is below the low-water mark, the smallest LSN of any file's first unapplied record.
//!    Deleting needs no directory fsync: a segment that comes back after a crash holds only
//!    applied records, which a restart skips.
//! 5. At open ([`Journal::open`]) the segments are read in LSN order and checked, then
//!    [`Journal::replay`] gives every record to the caller, which replays a file's writes above its applied LSN into the cache (and
//!    they go through step 3 again) and checks upload records against the extent maps. A torn
//!    tail of the last segment (records never committed) is cut durably; damage anywhere else
//!    refuses the start. New records go to a new segment.
//!
//! The current segment is filled with zeros ahead of its records ([`ZERO_AHEAD`]), so that a
//! commit's fdatasync does not also change the file's size. A segment is sealed (its zeros
//! cut, fdatasynced, and a new one created, its name made durable by a directory fsync) when
//! it reaches its limit (an eighth of the buffer, 1 MiB to 64 MiB) or
//! when everything in it is applied. A failed fdatasync breaks the journal: what it holds is unknown, so every later
//! append and commit fails (the gateway must restart, replaying what is durable).

mod record;
#[cfg(test)]
mod tests;

pub(crate) use self::record::{Record, MAX_WRITE_DATA};

use self::record::{
    parse_record, parse_segment_header, segment_header, Parsed, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::error::{io_err, Error, Result};
use crate::volume::localfs::created_at;
use crate::volume::{LocalFile, LocalFs};
use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The journal's directory under the data directory.
pub(crate) const JOURNAL_DIR: &str = "file-journal";

/// A segment is sealed once it holds this much (or less, see [`Journal::segment_limit`]).
const SEGMENT_MAX: u64 = 64 << 20;

/// How far ahead of the records the current segment is filled with zeros. A commit's
/// fdatasync then writes data blocks only: appending to the end would change the file's size,
/// and ext4 makes every such fdatasync commit its own journal too (measured on this project's
/// VM: 3.7k appending fdatasyncs a second against 6.1k overwriting ones). The first commit
/// after each extension pays that once.
const ZERO_AHEAD: u64 = 1 << 20;

/// The journal's fsyncs, by name, so that tests can leave one out and prove it needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JournalSync {
    /// The fdatasync of a commit (step 2).
    Commit,
    /// The fdatasync of a segment being sealed.
    Seal,
    /// The directory fsync that makes a new segment's name durable.
    CreateName,
    /// The fdatasync at open of the last segment kept, after its torn tail or its zeros are
    /// cut (a process crash left its records in the page cache only; once a newer segment
    /// exists, a torn tail there would refuse the start, and an undone cut would bring junk
    /// back after the records).
    OpenLast,
}

impl JournalSync {
    /// Every site, for the tests that prove each necessary.
    #[cfg(test)]
    pub(crate) const ALL: [JournalSync; 4] = [
        JournalSync::Commit,
        JournalSync::Seal,
        JournalSync::CreateName,
        JournalSync::OpenLast,
    ];
}

/// A sealed segment, kept until every record in it is applied.
#[derive(Debug)]
struct Sealed {
    path: PathBuf,
    last_lsn: u64,
    bytes: u64,
    /// When its first record was appended (None: it has none).
    since: Option<SystemTime>,
}

#[derive(Debug)]
struct State {
    /// The segment being appended to.
    cur: Arc<dyn LocalFile>,
    cur_path: PathBuf,
    /// Bytes in the current segment (the next record's offset).
    pos: u64,
    /// When the current segment's first record was appended (None: none yet).
    cur_since: Option<SystemTime>,
    /// The current segment's length: zeros from `pos` up to here ([`ZERO_AHEAD`]).
    zeroed: u64,
    /// The LSN the next record gets.
    next_lsn: u64,
    /// Every record up to this LSN is durable.
    synced_lsn: u64,
    /// A thread is fdatasyncing (the others wait for it).
    syncing: bool,
    sealed: Vec<Sealed>,
    /// Bytes of all segments kept.
    bytes: u64,
    /// Bytes reserved by writers about to append (pacing).
    reserved: u64,
    /// Why the journal cannot be used any more (a failed fdatasync).
    broken: Option<String>,
}

/// The file journal. `Send + Sync`.
#[derive(Debug)]
pub(crate) struct Journal {
    fs: Arc<dyn LocalFs>,
    dir: PathBuf,
    fsid: u64,
    limit: u64,
    state: Mutex<State>,
    /// Signalled when a commit's fdatasync ends, and when segments are retired.
    changed: Condvar,
    skip: Option<JournalSync>,
    /// Test knob: commits without fdatasync (to prove the crash tests notice).
    no_sync: std::sync::atomic::AtomicBool,
}

fn seg_name(first_lsn: u64) -> String {
    format!("{first_lsn:016x}.jnl")
}

fn broken_err(why: &str) -> Error {
    Error::Io(format!(
        "the file journal failed ({why}); restart the gateway to replay what is durable"
    ))
}

impl Journal {
    /// Opens the journal in `dir` (creating it), of the namespace `fsid`: checks every segment
    /// and cuts a torn tail; [`Journal::replay`] then reads them. `buffer` is the bound of the
    /// bytes it keeps (`File_Write_Buffer_Size`), which sizes its segments. New LSNs start at
    /// `min_next` at least (above every LSN the namespace recorded: `Namespace::lsn_floor`).
    pub(crate) fn open(
        fs: Arc<dyn LocalFs>,
        dir: &Path,
        fsid: u64,
        buffer: u64,
        min_next: u64,
        skip: Option<JournalSync>,
    ) -> Result<Journal> {
        fs.create_dir_all(dir)
            .map_err(|e| io_err(format!("creating {}", dir.display()), e))?;
        let mut names: Vec<(u64, String)> = Vec::new();
        for name in fs
            .list(dir)
            .map_err(|e| io_err(format!("listing {}", dir.display()), e))?
        {
            match name
                .strip_suffix(".jnl")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                Some(first) => names.push((first, name)),
                None => {
                    tracing::warn!(%name, dir = %dir.display(), "not a journal segment: ignored")
                }
            }
        }
        names.sort();
        let mut sealed = Vec::new();
        let mut bytes = 0u64;
        let mut last_lsn = 0u64;
        let count = names.len();
        for (n, (first, name)) in names.into_iter().enumerate() {
            let path = dir.join(&name);
            let is_last = n + 1 == count;
            let what = || format!("journal segment {}", path.display());
            let f = fs.open(&path).map_err(|e| io_err(what(), e))?;
            let data = read_segment(&*f).map_err(|e| Error::Io(format!("{}: {e}", what())))?;
            let (hfirst, hfsid) = match parse_segment_header(&data) {
                Ok(h) => h,
                Err(why) if is_last => {
                    // Created just before a crash, its header never synced: it holds nothing,
                    // but its name still says which LSNs were handed out (they never go back).
                    last_lsn = last_lsn.max(first.saturating_sub(1));
                    tracing::warn!(segment = %path.display(), %why, "journal segment without a valid header at the end: removed");
                    fs.remove_file(&path).map_err(|e| io_err(what(), e))?;
                    continue;
                }
                Err(why) => return Err(Error::Io(format!("{}: {why}", what()))),
            };
            if hfirst != first || hfsid != fsid {
                return Err(Error::Io(format!(
                    "{}: header names LSN {hfirst} of namespace {hfsid:016x}, expected {first} of {fsid:016x}",
                    what()
                )));
            }
            if first <= last_lsn {
                return Err(Error::Io(format!(
                    "{}: starts at LSN {first}, not after the previous segment's {last_lsn}",
                    what()
                )));
            }
            let mut pos = SEGMENT_HEADER_LEN;
            let mut expect = first;
            loop {
                match parse_record(&data[pos..]) {
                    Parsed::Record { lsn, len, .. } if lsn == expect => {
                        pos += len;
                        expect += 1;
                    }
                    Parsed::Record { lsn, .. } if is_last => {
                        tracing::warn!(segment = %path.display(), lsn, expect, "journal record out of sequence at the tail: cut");
                        break;
                    }
                    Parsed::Record { lsn, .. } => {
                        return Err(Error::Io(format!(
                            "{} at byte {pos}: record LSN {lsn}, expected {expect}",
                            what()
                        )))
                    }
                    Parsed::End(None) => break,
                    Parsed::End(Some(_)) if is_last && data[pos..].iter().all(|b| *b == 0) => {
                        // The zeros ahead of the records (`ZERO_AHEAD`): the end.
                        break;
                    }
                    Parsed::End(Some(why)) if is_last => {
                        tracing::info!(segment = %path.display(), at = pos, %why, "torn tail of the journal cut (never committed)");
                        break;
                    }
                    Parsed::End(Some(why)) => {
                        return Err(Error::Io(format!(
                            "{} damaged at byte {pos}: {why}",
                            what()
                        )))
                    }
                }
            }
            if expect == first && is_last {
                // No record: the new current segment below takes its name over.
                last_lsn = last_lsn.max(first - 1);
                continue;
            }
            if pos < data.len() {
                f.set_len(pos as u64).map_err(|e| io_err(what(), e))?;
            }
            if is_last && skip != Some(JournalSync::OpenLast) {
                f.sync_data().map_err(|e| io_err(what(), e))?;
            }
            last_lsn = last_lsn.max(expect - 1).max(first - 1);
            bytes += pos as u64;
            // Its records were appended after the file was created.
            let since = (expect > first).then(|| created_at(&*fs, &path));
            sealed.push(Sealed {
                path,
                last_lsn: expect - 1,
                bytes: pos as u64,
                since,
            });
        }
        let next_lsn = (last_lsn + 1).max(min_next);
        let (cur, cur_path) = create_segment(&*fs, dir, next_lsn, fsid, skip)?;
        let j = Journal {
            fs,
            dir: dir.to_path_buf(),
            fsid,
            limit: (buffer / 8).clamp(1 << 20, SEGMENT_MAX),
            state: Mutex::new(State {
                cur,
                cur_path,
                pos: SEGMENT_HEADER_LEN as u64,
                cur_since: None,
                zeroed: SEGMENT_HEADER_LEN as u64,
                next_lsn,
                synced_lsn: next_lsn - 1,
                syncing: false,
                sealed,
                bytes: bytes + SEGMENT_HEADER_LEN as u64,
                reserved: 0,
                broken: None,
            }),
            changed: Condvar::new(),
            skip,
            no_sync: std::sync::atomic::AtomicBool::new(false),
        };
        Ok(j)
    }

    /// Gives every record of the segments found at open to `visit`, in LSN order. Call it once,
    /// before anything retires segments.
    pub(crate) fn replay(
        &self,
        visit: &mut dyn FnMut(u64, Record<'static>) -> Result<()>,
    ) -> Result<()> {
        let segs: Vec<(PathBuf, u64)> = {
            let st = self.state.lock();
            st.sealed
                .iter()
                .map(|s| (s.path.clone(), s.bytes))
                .collect()
        };
        for (path, len) in segs {
            let what = || format!("journal segment {}", path.display());
            let f = self.fs.open(&path).map_err(|e| io_err(what(), e))?;
            let data = read_segment(&*f).map_err(|e| Error::Io(format!("{}: {e}", what())))?;
            let end = usize::try_from(len).unwrap_or(usize::MAX).min(data.len());
            let mut pos = SEGMENT_HEADER_LEN.min(end);
            while pos < end {
                match parse_record(&data[pos..end]) {
                    Parsed::Record { lsn, len, record } => {
                        visit(lsn, record)?;
                        pos += len;
                    }
                    Parsed::End(why) => {
                        return Err(Error::Io(format!(
                            "{} changed since it was checked at byte {pos}: {}",
                            what(),
                            why.unwrap_or_default()
                        )))
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends `record`; returns its LSN. `reserved` bytes a writer reserved for it are
    /// released (counted as kept bytes instead).
    pub(crate) fn append(&self, record: &Record<'_>, reserved: u64) -> Result<u64> {
        let mut st = self.state.lock();
        st.reserved = st.reserved.saturating_sub(reserved);
        if let Some(why) = &st.broken {
            return Err(broken_err(why));
        }
        let lsn = st.next_lsn;
        let bytes = record.encode(lsn);
        if st.pos + bytes.len() as u64 > self.limit && st.pos > SEGMENT_HEADER_LEN as u64 {
            self.seal(&mut st)?;
        }
        let pos = st.pos;
        let end = pos + bytes.len() as u64;
        let written = if end > st.zeroed {
            // Zeros ahead, up to the segment's limit (a record over it ends the segment).
            let to = (st.zeroed + ZERO_AHEAD).min(self.limit).max(end);
            let mut b = bytes.clone();
            b.resize(usize::try_from(to - pos).unwrap_or(usize::MAX), 0);
            st.cur.write_at(&b, pos).map(|()| to)
        } else {
            st.cur.write_at(&bytes, pos).map(|()| st.zeroed)
        };
        match written {
            Ok(to) => st.zeroed = to,
            Err(e) => {
                // Part of it may be there: cut it, or a shorter record after it would leave
                // junk that a later start finds before the tail. If even that fails, stop.
                st.zeroed = pos;
                if let Err(cut) = st.cur.set_len(pos) {
                    st.broken = Some(format!(
                        "cutting a failed append of {}: {cut}",
                        st.cur_path.display()
                    ));
                }
                return Err(io_err(format!("appending to {}", st.cur_path.display()), e));
            }
        }
        st.pos += bytes.len() as u64;
        st.bytes += bytes.len() as u64;
        st.next_lsn += 1;
        st.cur_since.get_or_insert_with(SystemTime::now);
        Ok(lsn)
    }

    /// Seals the current segment and starts the next one (the lock held). A sealed segment
    /// ends with its last record (its zeros cut off): anything else there is damage.
    fn seal(&self, st: &mut State) -> Result<()> {
        let cut = if st.zeroed > st.pos {
            st.cur.set_len(st.pos)
        } else {
            Ok(())
        };
        let synced = cut.and_then(|()| {
            if self.skip == Some(JournalSync::Seal) {
                Ok(())
            } else {
                st.cur.sync_data()
            }
        });
        if let Err(e) = synced {
            let why = format!("sealing {}: {e}", st.cur_path.display());
            st.broken = Some(why.clone());
            return Err(broken_err(&why));
        }
        st.zeroed = st.pos;
        st.synced_lsn = st.next_lsn - 1;
        let (cur, path) = create_segment(&*self.fs, &self.dir, st.next_lsn, self.fsid, self.skip)?;
        let old = std::mem::replace(&mut st.cur_path, path);
        st.sealed.push(Sealed {
            path: old,
            last_lsn: st.next_lsn - 1,
            bytes: st.pos,
            since: st.cur_since.take(),
        });
        st.cur = cur;
        st.pos = SEGMENT_HEADER_LEN as u64;
        st.zeroed = st.pos;
        st.bytes += SEGMENT_HEADER_LEN as u64;
        self.changed.notify_all();
        Ok(())
    }

    /// Returns once every record up to `lsn` is durable (group commit).
    pub(crate) fn commit(&self, lsn: u64) -> Result<()> {
        let mut st = self.state.lock();
        loop {
            if let Some(why) = &st.broken {
                return Err(broken_err(why));
            }
            if st.synced_lsn >= lsn {
                return Ok(());
            }
            if st.syncing {
                self.changed.wait(&mut st);
                continue;
            }
            st.syncing = true;
            let target = st.next_lsn - 1;
            let file = st.cur.clone();
            let path = st.cur_path.clone();
            drop(st);
            let r = if self.skip == Some(JournalSync::Commit)
                || self.no_sync.load(std::sync::atomic::Ordering::Relaxed)
            {
                Ok(())
            } else {
                file.sync_data()
            };
            st = self.state.lock();
            st.syncing = false;
            match r {
                Ok(()) => st.synced_lsn = st.synced_lsn.max(target),
                Err(e) => st.broken = Some(format!("fdatasync of {}: {e}", path.display())),
            }
            self.changed.notify_all();
        }
    }

    /// Test knob: commits without fdatasync.
    pub(crate) fn set_unsafe_no_sync(&self, on: bool) {
        self.no_sync.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The LSN the next record gets (every record so far is below it).
    pub(crate) fn next_lsn(&self) -> u64 {
        self.state.lock().next_lsn
    }

    /// Deletes the sealed segments whose records are all below `low` (applied). When every
    /// record is applied and the current segment holds some, it is sealed and goes too.
    pub(crate) fn retire(&self, low: u64) -> Result<()> {
        let gone: Vec<Sealed> = {
            let mut st = self.state.lock();
            if st.broken.is_none()
                && low >= st.next_lsn
                && st.pos > SEGMENT_HEADER_LEN as u64
                && !st.syncing
            {
                // A failed seal (a full disk: no room for the next segment's header) must not
                // keep the sealed segments below from going.
                if let Err(e) = self.seal(&mut st) {
                    tracing::warn!(error = %e, "sealing the file journal's segment failed");
                }
            }
            let (gone, keep): (Vec<Sealed>, Vec<Sealed>) = std::mem::take(&mut st.sealed)
                .into_iter()
                .partition(|s| s.last_lsn < low);
            st.sealed = keep;
            for s in &gone {
                st.bytes = st.bytes.saturating_sub(s.bytes);
            }
            gone
        };
        if !gone.is_empty() {
            self.changed.notify_all();
        }
        let mut first_err = None;
        for s in gone {
            // No directory fsync: a segment that comes back holds only applied records.
            if let Err(e) = self.fs.remove_file(&s.path) {
                first_err.get_or_insert(io_err(format!("removing {}", s.path.display()), e));
                // Kept (and counted) until a later retire removes it.
                let mut st = self.state.lock();
                st.bytes += s.bytes;
                st.sealed.push(s);
                st.sealed.sort_by_key(|s| s.last_lsn);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Files' records not yet applied (on the backend): the bytes of the segments that hold
    /// them, and when the first record of the oldest was appended (at or before the oldest
    /// such record; after a restart, the segment file's creation). None when every record
    /// kept is applied as far as the journal knows (segments are retired as they become so).
    pub(crate) fn not_applied(&self) -> Option<(u64, SystemTime)> {
        let st = self.state.lock();
        let since = st
            .sealed
            .iter()
            .filter_map(|s| s.since)
            .chain(st.cur_since)
            .min()?;
        Some((st.bytes, since))
    }

    /// Bytes kept (all segments) plus bytes reserved by writers.
    pub(crate) fn backlog(&self) -> u64 {
        let st = self.state.lock();
        st.bytes + st.reserved
    }

    /// Reserves `len` bytes if the backlog stays at most `hard` (or nothing is kept beyond the
    /// current segment's header and nothing reserved); returns the new backlog.
    pub(crate) fn reserve(&self, len: u64, hard: u64) -> Option<u64> {
        let mut st = self.state.lock();
        let now = st.bytes + st.reserved;
        let empty = st.sealed.is_empty() && st.pos == SEGMENT_HEADER_LEN as u64 && st.reserved == 0;
        if now + len <= hard || empty {
            st.reserved += len;
            return Some(now + len);
        }
        None
    }

    /// Gives back a reservation that was not used.
    pub(crate) fn unreserve(&self, len: u64) {
        let mut st = self.state.lock();
        st.reserved = st.reserved.saturating_sub(len);
    }

    /// Waits at most `limit` for segments to be retired.
    pub(crate) fn wait_for_room(&self, limit: Duration) {
        let mut st = self.state.lock();
        self.changed.wait_for(&mut st, limit);
    }
}

/// Creates segment `<first_lsn>.jnl` with its header, durable (data, then name).
fn create_segment(
    fs: &dyn LocalFs,
    dir: &Path,
    first_lsn: u64,
    fsid: u64,
    skip: Option<JournalSync>,
) -> Result<(Arc<dyn LocalFile>, PathBuf)> {
    let path = dir.join(seg_name(first_lsn));
    let what = || format!("creating journal segment {}", path.display());
    let f = match fs.create_new(&path) {
        Ok(f) => f,
        // Left by a start that failed before writing a record: empty of records, reuse it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let f = fs.open(&path).map_err(|e| io_err(what(), e))?;
            f.set_len(0).map_err(|e| io_err(what(), e))?;
            f
        }
        Err(e) => return Err(io_err(what(), e)),
    };
    // The header needs no fdatasync of its own: the first commit or the seal of this segment
    // syncs it with the records, and a segment whose header was lost holds nothing committed
    // (it is the last one then, and removed at open).
    f.write_at(&segment_header(first_lsn, fsid), 0)
        .map_err(|e| io_err(what(), e))?;
    if skip != Some(JournalSync::CreateName) {
        fs.sync_dir(dir).map_err(|e| io_err(what(), e))?;
    }
    Ok((f, path))
}

/// A whole segment's bytes (at most a full segment and one record more).
fn read_segment(f: &dyn LocalFile) -> std::result::Result<Vec<u8>, String> {
    let len = f.file_len().map_err(|e| e.to_string())?;
    let max = SEGMENT_MAX + record::MAX_RECORD_LEN as u64;
    if len > max {
        return Err(format!("{len} bytes, more than a segment may hold ({max})"));
    }
    let mut b = vec![0u8; usize::try_from(len).map_err(|e| e.to_string())?];
    let n = f.read_at(&mut b, 0).map_err(|e| e.to_string())?;
    b.truncate(n);
    Ok(b)
}

/// Bytes a write record of `len` data bytes takes (for reservations).
pub(crate) fn write_cost(len: usize) -> u64 {
    (RECORD_HEADER_LEN + 32 + len) as u64
}
