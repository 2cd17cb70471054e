//! The write-ahead log of small commits (`<volume dir>/wal`): a COMMIT of a few writes costs
//! one fdatasync of one preallocated file instead of two of growing ones (the open SCO and the
//! open TLog). Byte layout in `record.rs` and `engine/FORMATS.md`.
//!
//! # The protocol
//! 1. Every byte written into the open SCO or TLog (clusters, a SCO's header and footer, TLog
//!    entries) is also appended here as a record — its file, offset and bytes — as long as
//!    the *commit window* (what was written since the last commit round began) stays within
//!    [`WINDOW`] and the ring has room behind the durable head. Once one write does not fit,
//!    the rest of the window is not logged here: the window is no longer *whole*. The records
//!    of one write of the volume go into this file in one `pwrite` at its end
//!    ([`Wal::flush`]), and the SCO's and TLog's copies of what was logged may wait in memory
//!    (`volume/deferred.rs`): a 4 KiB write costs one `pwrite`, not four.
//! 2. A commit round takes the window (under the volume lock; the staged records written). A
//!    whole window is made durable by one fdatasync of this file (`FsyncSite::CommitWal`),
//!    plus the `sco/` and `tlog/` directories when names were created there: the SCO and TLog
//!    copies stay in the page cache or in memory. A window that is not whole is made durable
//!    in place, as without this log (what waited in memory written first; then the SCOs, the
//!    TLog, the directories); then everything before the window's end is durable in place,
//!    and the *head* moves there.
//! 3. The head is the position of the oldest record a replay may need. Its value is written
//!    in one of two header slots (alternately, so a torn write leaves the other valid), without
//!    waiting; it becomes durable with the next fdatasync of this file, or at once
//!    (`FsyncSite::WalHead`) when more than half of the ring lies behind the durable head. The
//!    ring reuses space only behind the *durable* head, so a replay never meets an overwritten
//!    record where it expects one it needs.
//! 4. A TLog's close makes everything durable in place (what waited in memory written first;
//!    its SCOs, itself, the open SCO's header) and then moves the head to the end, durably: no
//!    record ever names a TLog that was closed, so none names a file the upload, the uncork or
//!    an eviction may delete or replace.
//! 5. A restart replays first, before anything else reads the volume's files: the records from
//!    the head on, up to the first one that does not verify, are written into their files
//!    (a file that does not exist was never named durably, so no acknowledged record is in
//!    it: skipped); the files written are fdatasynced (`FsyncSite::WalReplay`); then the head
//!    moves to the end and the run number goes up, durably (`FsyncSite::WalHead`). Records of
//!    an earlier run that lie beyond the end are never replayed: a record carries its run. A
//!    replay only repeats writes that were made, in order: its result is a state the page
//!    cache could have left by itself, which the rest of the restart already handles. (Bytes
//!    that waited in memory when the process died are such writes too: logged, not yet in
//!    their file.)
//!
//! A volume directory without this file (made by an older build, a backend restart, a clone)
//! gets a new one at open; one is created under a temporary name, filled with zeros (a commit
//! then overwrites allocated blocks: no file-size change for ext4 to journal), made durable and
//! renamed into place.

mod record;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) use self::record::Target;
use self::record::{
    decode_record, encode_record, encode_record_into, Header, HEADER_AREA, RECORD_HEADER_LEN,
    SLOTS, SLOT_LEN,
};
use crate::error::{Error, Result};
use crate::volume::commit::FsyncSite;
use crate::volume::files::io_err;
use crate::volume::format::{sco_name, tlog_name, VolumeId};
use crate::volume::int::usize_of;
use crate::volume::layout;
use crate::volume::localfs::{LocalFile, LocalFs};

/// The ring's size: how much the log holds behind its durable head.
#[cfg(not(test))]
pub(super) const RING: u64 = 8 << 20;
/// Small in unit tests, so that the crash workload wraps the ring and fills it.
#[cfg(test)]
pub(super) const RING: u64 = 256 << 10;

/// The most a commit window may log here: a larger window is made durable in place, where its
/// data is written once instead of twice.
#[cfg(not(test))]
pub(super) const WINDOW: u64 = 256 << 10;
/// Small in unit tests, so that the crash workload takes both kinds of commit round.
#[cfg(test)]
pub(super) const WINDOW: u64 = 24 << 10;

/// The most staging memory a volume keeps between writes (a write larger than this stages in
/// memory it gives back at [`Wal::flush`]).
const STAGED_KEEP: usize = 64 << 10;

/// What a commit round takes from the log (step 2).
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// Every change since the last round is logged here.
    pub(super) whole: bool,
    /// The log's end when the round began.
    pub(super) end: u64,
    /// The head as written in the header then (durable after this round's fdatasync).
    pub(super) written_head: u64,
}

/// A volume's write-ahead log, kept in the volume's state (behind its lock).
pub(super) struct Wal {
    file: Arc<dyn LocalFile>,
    volume: VolumeId,
    run: u32,
    /// The ring's size (as the header says: [`RING`] for a log this build made).
    ring: u64,
    /// Where the next record goes (counting every lap).
    pos: u64,
    /// The head as written in the newest header slot.
    written_head: u64,
    /// The head known to be durable: the ring reuses space only behind it.
    durable_head: u64,
    /// The newest header slot's sequence number.
    slot_seq: u64,
    /// Every change since the window began is logged here (false at open: the first round
    /// makes everything durable in place).
    window_whole: bool,
    /// Bytes logged in this window.
    window_bytes: u64,
    /// Records logged and not yet written into the file: one `pwrite` per write of the volume
    /// ([`Wal::flush`]) instead of one per record.
    staged: Vec<u8>,
    /// The position of the first staged byte (the staged records end at `pos`).
    staged_at: u64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("run", &self.run)
            .field("pos", &self.pos)
            .field("durable_head", &self.durable_head)
            .finish()
    }
}

fn sync(skip: Option<FsyncSite>, site: FsyncSite, f: &dyn LocalFile, what: &str) -> Result<()> {
    if skip == Some(site) {
        return Ok(());
    }
    f.sync_data()
        .map_err(|e| io_err(format!("{what}: fdatasync"), e))
}

/// Removes the file at `path` unless it does not exist (not durably: what it held is never read).
fn remove_if_exists(fs: &dyn LocalFs, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path.display(), e)),
    }
}

/// Where the header with slot sequence `seq` goes: the slots alternate, so that a torn write
/// of one leaves the other, older one valid.
fn slot_of(seq: u64) -> u64 {
    SLOTS[usize_of(seq % 2)]
}

fn wal_err(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Io(format!("{}: {why}", path.display()))
}

impl Wal {
    /// Creates the log of a volume directory that has none (durable when it returns): written
    /// under a temporary name, filled, its header written, fdatasynced, renamed into place and
    /// the directory fsynced.
    pub(super) fn create(
        fs: &dyn LocalFs,
        dir: &Path,
        volume: VolumeId,
        skip: Option<FsyncSite>,
    ) -> Result<Wal> {
        let tmp = layout::wal_tmp_path(dir);
        let path = layout::wal_path(dir);
        remove_if_exists(fs, &tmp)?;
        let f = fs.create_new(&tmp).map_err(|e| io_err(tmp.display(), e))?;
        let zeros = vec![0u8; 1 << 20];
        let total = HEADER_AREA + RING;
        let mut off = 0;
        while off < total {
            let n = (total - off).min(zeros.len() as u64);
            f.write_at(&zeros[..usize_of(n)], off)
                .map_err(|e| io_err(tmp.display(), e))?;
            off += n;
        }
        let h = Header {
            volume,
            run: 1,
            ring: RING,
            seq: 1,
            head: 0,
        };
        f.write_at(&h.encode(), slot_of(h.seq))
            .map_err(|e| io_err(tmp.display(), e))?;
        sync(skip, FsyncSite::WalCreate, &*f, &tmp.display().to_string())?;
        fs.rename(&tmp, &path)
            .map_err(|e| io_err(path.display(), e))?;
        if skip != Some(FsyncSite::WalCreate) {
            fs.sync_dir(dir).map_err(|e| io_err(dir.display(), e))?;
        }
        let f = fs.open(&path).map_err(|e| io_err(path.display(), e))?;
        Ok(Wal::new(f, volume, h))
    }

    fn new(file: Arc<dyn LocalFile>, volume: VolumeId, h: Header) -> Wal {
        Wal {
            file,
            volume,
            run: h.run,
            ring: h.ring,
            pos: h.head,
            written_head: h.head,
            durable_head: h.head,
            slot_seq: h.seq,
            window_whole: false,
            window_bytes: 0,
            staged: Vec::new(),
            staged_at: h.head,
        }
    }

    /// Step 5: opens the log of a volume directory and replays it into the SCO and TLog files
    /// (creates a log when there is none). A log that cannot be read (no valid header, another
    /// volume's, a size that does not match) is an error naming it: it may hold committed
    /// writes.
    pub(super) fn recover(
        fs: &dyn LocalFs,
        dir: &Path,
        volume: VolumeId,
        skip: Option<FsyncSite>,
    ) -> Result<Wal> {
        let path = layout::wal_path(dir);
        let f = match fs.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Wal::create(fs, dir, volume, skip);
            }
            Err(e) => return Err(io_err(path.display(), e)),
        };
        // A creation cut short after a rename of an earlier one: nothing in it.
        remove_if_exists(fs, &layout::wal_tmp_path(dir))?;
        let len = f.file_len().map_err(|e| io_err(path.display(), e))?;
        if !(HEADER_AREA + (64 << 10)..=HEADER_AREA + (1 << 30)).contains(&len) {
            return Err(wal_err(&path, format!("unexpected length {len}")));
        }
        let mut all = vec![0u8; usize_of(len)];
        let n = f
            .read_at(&mut all, 0)
            .map_err(|e| io_err(path.display(), e))?;
        if (n as u64) < len {
            return Err(wal_err(&path, "short read"));
        }
        let h = SLOTS
            .iter()
            .filter_map(|s| Header::decode(&all[usize_of(*s)..usize_of(*s) + SLOT_LEN]))
            .max_by_key(|h| h.seq)
            .ok_or_else(|| wal_err(&path, "no header slot verifies"))?;
        if h.volume != volume {
            return Err(wal_err(
                &path,
                format!("the log of volume {}, expected volume {volume}", h.volume),
            ));
        }
        if h.ring != len - HEADER_AREA {
            return Err(wal_err(
                &path,
                format!("ring of {} bytes in a file of {len}", h.ring),
            ));
        }
        let ring = &all[usize_of(HEADER_AREA)..];
        // Records written back into their files, and records whose file does not exist.
        let (mut replayed, mut skipped) = (0u64, 0u64);
        let mut files: BTreeMap<PathBuf, Option<Arc<dyn LocalFile>>> = BTreeMap::new();
        let mut pos = h.head;
        while pos - h.head < h.ring {
            let at = usize_of(pos % h.ring);
            let left = ring.len() - at;
            if left < RECORD_HEADER_LEN {
                pos += left as u64;
                continue;
            }
            let Some(found) = decode_record(&ring[at..], h.run, pos) else {
                break;
            };
            let Some(target) = found.target else {
                pos += left as u64;
                continue;
            };
            let p = match target {
                Target::Sco(s) => layout::sco_dir(dir).join(sco_name(s)),
                Target::Tlog(s) => layout::tlog_dir(dir).join(tlog_name(s)),
            };
            let file = match files.get(&p) {
                Some(f) => f.clone(),
                None => {
                    let f = crate::volume::files::open_if_exists(fs, &p, &p.display().to_string())?;
                    files.insert(p.clone(), f.clone());
                    f
                }
            };
            match file {
                Some(file) => {
                    file.write_at(found.payload, found.off)
                        .map_err(|e| io_err(p.display(), e))?;
                    replayed += 1;
                }
                None => skipped += 1,
            }
            pos += (RECORD_HEADER_LEN + found.payload.len()) as u64;
        }
        for (p, file) in &files {
            if let Some(file) = file {
                sync(
                    skip,
                    FsyncSite::WalReplay,
                    &**file,
                    &p.display().to_string(),
                )?;
            }
        }
        if replayed + skipped > 0 {
            tracing::info!(
                volume = %volume,
                replayed,
                skipped,
                "write-ahead log replayed"
            );
        }
        let mut wal = Wal::new(f, volume, h);
        wal.run = h.run.wrapping_add(1);
        wal.pos = pos;
        wal.write_head(pos)?;
        sync(
            skip,
            FsyncSite::WalHead,
            &*wal.file,
            &path.display().to_string(),
        )?;
        wal.durable_head = pos;
        Ok(wal)
    }

    /// Writes `head` (and the run) into the older header slot, without waiting.
    fn write_head(&mut self, head: u64) -> Result<()> {
        self.slot_seq += 1;
        let h = Header {
            volume: self.volume,
            run: self.run,
            ring: self.ring,
            seq: self.slot_seq,
            head,
        };
        self.file
            .write_at(&h.encode(), slot_of(self.slot_seq))
            .map_err(|e| io_err("write-ahead log header", e))?;
        self.written_head = head;
        Ok(())
    }

    /// Step 1: logs `bytes` written at `off` into `target`, if the window is still whole and
    /// this fits in it and in the ring (true: logged; the caller may defer the file's copy,
    /// `deferred.rs`); otherwise the window is no longer whole (false).
    pub(super) fn log(&mut self, target: Target, off: u64, bytes: &[u8]) -> Result<bool> {
        if !self.window_whole {
            return Ok(false);
        }
        let ring = self.ring;
        let need = (RECORD_HEADER_LEN + bytes.len()) as u64;
        let lap_left = ring - self.pos % ring;
        let at = if need > lap_left {
            self.pos + lap_left
        } else {
            self.pos
        };
        if self.window_bytes + need > WINDOW || at + need - self.durable_head > ring {
            self.window_whole = false;
            return Ok(false);
        }
        // The staged records stay within one lap of the file: a record that starts the next
        // lap (after a wrap, or where the last one ended exactly at the ring's end) is staged
        // anew, or one pwrite would run past the ring.
        if !self.staged.is_empty() && at / ring != self.staged_at / ring {
            self.flush()?;
        }
        if at != self.pos && lap_left >= RECORD_HEADER_LEN as u64 {
            let wrap = encode_record(self.run, self.pos, None, 0, &[]);
            self.file
                .write_at(&wrap, HEADER_AREA + self.pos % ring)
                .map_err(|e| io_err("write-ahead log", e))?;
        }
        if self.staged.is_empty() {
            self.staged_at = at;
        }
        encode_record_into(&mut self.staged, self.run, at, Some(target), off, bytes);
        self.pos = at + need;
        self.window_bytes += need;
        Ok(true)
    }

    /// Writes the records staged by [`Wal::log`] into the file: at the end of every write of
    /// the volume (so that its records outlive the process, as the page cache does), before a
    /// commit round fdatasyncs the log ([`Wal::take_window`]), and when the volume is closed.
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        self.file
            .write_at(&self.staged, HEADER_AREA + self.staged_at % self.ring)
            .map_err(|e| io_err("write-ahead log", e))?;
        self.staged.clear();
        // What a large write staged is not kept for the small ones after it.
        self.staged.shrink_to(STAGED_KEEP);
        Ok(())
    }

    /// Step 2: the window a commit round takes (its records written into the file, for the
    /// round's fdatasync); the next one begins.
    pub(super) fn take_window(&mut self) -> Result<Window> {
        self.flush()?;
        let w = Window {
            whole: self.window_whole,
            end: self.pos,
            written_head: self.written_head,
        };
        self.window_whole = true;
        self.window_bytes = 0;
        Ok(w)
    }

    /// Every change since the window began is logged here: a round now costs one fdatasync of
    /// this file.
    pub(super) fn window_whole(&self) -> bool {
        self.window_whole
    }

    /// The log's file (a commit round fdatasyncs it without the volume lock).
    pub(super) fn file(&self) -> Arc<dyn LocalFile> {
        self.file.clone()
    }

    /// An fdatasync of the log that began when the header said `head` has returned.
    pub(super) fn synced(&mut self, head: u64) {
        self.durable_head = self.durable_head.max(head);
    }

    /// Step 2, a round that made everything before `end` durable in place: the head moves
    /// there. Returns true when the caller must fdatasync the log now (more than half of the
    /// ring behind the durable head) and then call [`Wal::synced`] with `end`.
    pub(super) fn advance_head(&mut self, end: u64) -> Result<bool> {
        if end <= self.written_head {
            return Ok(false);
        }
        self.write_head(end)?;
        Ok(self.pos - self.durable_head > self.ring / 2)
    }

    /// Step 4: everything written so far is durable in place; the head moves to the end.
    /// Returns that head when it is not durable yet: the caller fdatasyncs the log and then
    /// calls [`Wal::synced`] with it.
    pub(super) fn head_to_end(&mut self) -> Result<Option<u64>> {
        let end = self.pos;
        if end > self.written_head {
            self.write_head(end)?;
        }
        Ok((end > self.durable_head).then_some(end))
    }
}

#[cfg(test)]
mod tests;
