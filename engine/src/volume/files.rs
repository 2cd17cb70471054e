//! Small helpers for the volume's local files: error mapping, bounded whole-file reads, and
//! durable removals.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::volume::format::{FormatError, MAX_SCO_LEN, MAX_TLOG_LEN};
use crate::volume::localfs::{LocalFile, LocalFs};

pub(crate) use crate::error::io_err;

pub(super) fn fmt_err(e: FormatError) -> Error {
    Error::Format(e)
}

/// Reads a whole local SCO or TLog. A file longer than the largest either may be
/// ([`MAX_TLOG_LEN`], above [`MAX_SCO_LEN`]) is an error, not an allocation of whatever
/// length the file claims; memory that cannot be had is an error too, not an abort.
pub(super) fn read_all(f: &dyn LocalFile, what: &str) -> Result<Vec<u8>> {
    let len = f.file_len().map_err(|e| io_err(what, e))?;
    let max = MAX_SCO_LEN.max(MAX_TLOG_LEN);
    if len > max {
        return Err(Error::Io(format!(
            "{what}: {len} bytes, more than any SCO or TLog may hold ({max})"
        )));
    }
    let len = usize::try_from(len).map_err(|_| Error::Io(format!("{what}: too large")))?;
    let mut b = Vec::new();
    b.try_reserve_exact(len)
        .map_err(|e| Error::Io(format!("{what}: cannot allocate {len} bytes: {e}")))?;
    b.resize(len, 0);
    let n = f.read_at(&mut b, 0).map_err(|e| io_err(what, e))?;
    b.truncate(n);
    Ok(b)
}

pub(super) fn open_if_exists(
    fs: &dyn LocalFs,
    path: &Path,
    what: &str,
) -> Result<Option<Arc<dyn LocalFile>>> {
    match fs.open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(what, e)),
    }
}

/// Removes the file at `path` if it exists and makes its removal durable (fsync of its
/// directory). A file already gone is fine.
pub(crate) fn remove_durably(fs: &dyn LocalFs, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path.display(), e)),
    }
    match path.parent() {
        Some(dir) => fs.sync_dir(dir).map_err(|e| io_err(dir.display(), e)),
        None => Ok(()),
    }
}

/// Removes every file in `dir` and makes the removals durable (one fsync of `dir`). A missing
/// `dir` holds nothing.
pub(crate) fn empty_dir_durably(fs: &dyn LocalFs, dir: &Path) -> Result<()> {
    let names = match fs.list(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir.display(), e)),
    };
    for n in names {
        let p = dir.join(n);
        fs.remove_file(&p).map_err(|e| io_err(p.display(), e))?;
    }
    fs.sync_dir(dir).map_err(|e| io_err(dir.display(), e))
}
