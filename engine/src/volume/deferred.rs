//! Bytes appended to a file of the open log (the open SCO, the open TLog) that the
//! write-ahead log already holds and the file does not yet.
//!
//! A 4 KiB write inside a whole commit window (`wal/`) used to cost four `pwrite`s: its cluster
//! into the open SCO, its entry into the open TLog, and both again into the write-ahead log.
//! Only the log's copy matters for durability (a round of a whole window fdatasyncs the log
//! alone), so the SCO's and the TLog's copies wait here and go to their files in one `pwrite`
//! each, once [`LIMIT`] bytes are waiting or before anything needs the file to hold them.
//!
//! # The rules
//! 1. Only bytes the write-ahead log took ([`crate::volume::wal::Wal::log`] returned true) are
//!    deferred; anything else is written at once, after what waits (the file's bytes stay in
//!    the order they were appended).
//! 2. Everything waiting is written before the file is sealed (the SCO's footer), closed (the
//!    TLog's `TlogClosed`), fdatasynced in place (a commit round of a window that is not whole,
//!    a TLog's close), and before the write-ahead log's head moves: a record behind the head is
//!    never replayed, so its bytes must be in the file's page cache by then.
//! 3. A READ of the open SCO takes the waiting bytes from here ([`Deferred::read`]).
//!
//! A crash loses what waits here, and the same crash would have lost those bytes from the page
//! cache: they were never fdatasynced in the file, and the write-ahead log's replay (from its
//! head on) writes them into the file at restart, as it does for bytes the page cache lost. So
//! the states a crash can leave are the ones it could leave before. A clean exit of the process
//! keeps the log's page cache, so the replay brings them back then too.

use crate::error::Result;
use crate::volume::files::io_err;
use crate::volume::localfs::LocalFile;

/// The most bytes that wait for one file: reached, they are written in one `pwrite`. Bounds
/// what a volume holds in memory (twice this at most: its open SCO's and its open TLog's).
pub(super) const LIMIT: usize = 64 << 10;

/// The bytes waiting for one file: `bytes` belong at file offset `at` and on.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    at: u64,
    bytes: Vec<u8>,
}

impl Deferred {
    /// Appends `data` at file offset `off`. When the write-ahead log took it (`logged`, rule 1)
    /// it waits here, unless it is [`LIMIT`] bytes or more; otherwise it is written at once.
    /// What waits is written first whenever `data` is written at once, does not follow it, or
    /// would take it past [`LIMIT`]: the file's bytes stay in the order they were appended.
    pub(super) fn append(
        &mut self,
        file: &dyn LocalFile,
        off: u64,
        data: &[u8],
        logged: bool,
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let waits = logged && data.len() < LIMIT;
        if !self.bytes.is_empty()
            && (!waits || off != self.end() || self.bytes.len() + data.len() > LIMIT)
        {
            self.flush(file, what)?;
        }
        if !waits {
            return file.write_at(data, off).map_err(|e| io_err(what(), e));
        }
        if self.bytes.is_empty() {
            self.at = off;
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// Writes what waits into `file` (rule 2).
    pub(super) fn flush(&mut self, file: &dyn LocalFile, what: &dyn Fn() -> String) -> Result<()> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        file.write_at(&self.bytes, self.at)
            .map_err(|e| io_err(what(), e))?;
        self.bytes.clear();
        Ok(())
    }

    /// The file offset just past what waits (where the next deferred byte must go).
    fn end(&self) -> u64 {
        self.at + self.bytes.len() as u64
    }

    /// Copies into `buf` the part of file range `off..off + buf.len()` that waits here (rule 3);
    /// returns how many bytes at the start of `buf` must still be read from the file (the
    /// bytes before the first waiting one), or None when the range runs past the last byte
    /// appended (past the file's data: a short read).
    pub(super) fn read(&self, off: u64, buf: &mut [u8]) -> Option<usize> {
        let len = buf.len() as u64;
        if self.bytes.is_empty() || off + len <= self.at {
            return Some(buf.len());
        }
        if off + len > self.end() {
            return None;
        }
        // Bytes of the range before `at` come from the file; the rest from here.
        let from_file = usize::try_from(self.at.saturating_sub(off)).ok()?;
        let start = usize::try_from(off.max(self.at) - self.at).ok()?;
        let n = buf.len() - from_file;
        buf[from_file..].copy_from_slice(self.bytes.get(start..start + n)?);
        Some(from_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::localfs::{LocalFs, SimFs};
    use std::path::Path;

    fn what() -> String {
        "test file".into()
    }

    fn file() -> (SimFs, std::sync::Arc<dyn LocalFile>) {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).expect("dir");
        let f = fs.create_new(Path::new("/d/f")).expect("file");
        (fs, f)
    }

    fn contents(f: &dyn LocalFile) -> Vec<u8> {
        let len = usize::try_from(f.file_len().expect("len")).expect("small");
        let mut b = vec![0u8; len];
        let n = f.read_at(&mut b, 0).expect("read");
        b.truncate(n);
        b
    }

    #[test]
    fn bytes_wait_until_the_limit_or_a_flush_and_keep_their_order() {
        let (_fs, f) = file();
        let mut d = Deferred::default();
        d.append(&*f, 0, b"head", false, &what).expect("header");
        d.append(&*f, 4, b"abc", true, &what).expect("push");
        d.append(&*f, 7, b"def", true, &what).expect("push");
        assert_eq!(
            contents(&*f),
            b"head",
            "deferred bytes are not in the file yet"
        );
        // Bytes the log did not take are written after the ones waiting.
        d.append(&*f, 10, b"XY", false, &what).expect("through");
        assert_eq!(contents(&*f), b"headabcdefXY");
        // A push that would pass the limit writes what waits first.
        d.append(&*f, 12, b"z", true, &what).expect("push");
        d.append(&*f, 13, &vec![7u8; LIMIT - 1], true, &what)
            .expect("push");
        assert_eq!(contents(&*f).len(), 12, "up to the limit, everything waits");
        d.append(&*f, 12 + LIMIT as u64, b"w", true, &what)
            .expect("push");
        assert_eq!(
            contents(&*f).len(),
            12 + LIMIT,
            "past it, what waited is written"
        );
        d.flush(&*f, &what).expect("flush");
        assert_eq!(contents(&*f).len(), 13 + LIMIT);
        // Data as large as the limit goes straight to the file.
        d.append(&*f, 13 + LIMIT as u64, &vec![1u8; LIMIT], true, &what)
            .expect("push");
        assert_eq!(contents(&*f).len(), 13 + 2 * LIMIT);
    }

    #[test]
    fn a_push_that_does_not_follow_writes_what_waits_first() {
        let (_fs, f) = file();
        let mut d = Deferred::default();
        d.append(&*f, 0, b"aaaa", true, &what).expect("push");
        d.append(&*f, 8, b"bbbb", true, &what).expect("push");
        assert_eq!(&contents(&*f)[..4], b"aaaa");
        let mut buf = [0u8; 4];
        assert_eq!(d.read(8, &mut buf), Some(0));
        assert_eq!(&buf, b"bbbb");
    }

    #[test]
    fn a_read_takes_the_waiting_part_from_memory_and_the_rest_from_the_file() {
        let (_fs, f) = file();
        let mut d = Deferred::default();
        d.append(&*f, 0, b"0123", false, &what).expect("through");
        d.append(&*f, 4, b"4567", true, &what).expect("push");
        // Wholly before what waits: all from the file.
        let mut b = [0u8; 3];
        assert_eq!(d.read(1, &mut b), Some(3));
        // Straddling: the first bytes from the file, the rest from here.
        let mut b = [0u8; 4];
        assert_eq!(d.read(2, &mut b), Some(2));
        assert_eq!(&b[2..], b"45");
        // Inside.
        let mut b = [0u8; 2];
        assert_eq!(d.read(5, &mut b), Some(0));
        assert_eq!(&b, b"56");
        // Past the last byte appended: a short read.
        let mut b = [0u8; 4];
        assert_eq!(d.read(6, &mut b), None);
        // Empty: everything from the file.
        d.flush(&*f, &what).expect("flush");
        let mut b = [0u8; 4];
        assert_eq!(d.read(4, &mut b), Some(4));
    }
}
