//! Space operations (NFSv4.2, RFC 7862): DEALLOCATE punches a hole, ALLOCATE reserves a range,
//! SEEK finds data and holes.

use super::Filesystem;
use crate::data::Commit;
use crate::error::{Error, Result};
use crate::namespace;
use crate::types::*;

impl Filesystem {
    /// DEALLOCATE: `offset .. offset + len` reads as zeros (a range past the end is cut there;
    /// the size never changes). A volume's whole clusters are unmapped and their space comes
    /// back (on the backend after a scrub); a regular file's range is written with zeros.
    /// Durable when it returns: a crash after the answer never brings the old bytes back.
    pub fn deallocate(&self, h: Handle, offset: u64, len: u64) -> Result<()> {
        if offset.checked_add(len).is_none() {
            return Err(Error::Invalid("range beyond the largest offset".into()));
        }
        self.ns.check_deposed()?;
        let live = self.get_live(h)?;
        if len == 0 || offset >= live.data.size() {
            return Ok(());
        }
        self.note_data_change(h, &live, namespace::now())?;
        live.data.punch(offset, len, &mut |c: &Commit| {
            self.persist(h.ino, &live, c, false)
        })
    }

    /// ALLOCATE: a range past the end grows the object (sparse, like a truncate up); a
    /// volume also reserves the range (its unwritten clusters show as reserved in `strata
    /// volume info`). Durable when it returns.
    pub fn allocate(&self, h: Handle, offset: u64, len: u64) -> Result<()> {
        if offset.checked_add(len).is_none() {
            return Err(Error::Invalid("range beyond the largest offset".into()));
        }
        self.ns.check_deposed()?;
        let live = self.get_live(h)?;
        if len == 0 {
            return Ok(());
        }
        live.data.allocate(offset, len, &mut |c: &Commit| {
            self.persist(h.ino, &live, c, true)
        })
    }

    /// SEEK: the first offset at or after `offset` in data or in a hole (the end of the object
    /// counts as a hole; with no data after `offset` the answer is the end, with `eof`).
    /// `None`: `offset` is at or past the end (NFS4ERR_NXIO).
    pub fn seek(&self, h: Handle, offset: u64, what: SeekWhat) -> Result<Option<SeekFound>> {
        let live = self.get_live(h)?;
        let size = live.data.size();
        if offset >= size {
            return Ok(None);
        }
        Ok(Some(match live.data.seek(offset, what)? {
            Some(o) => SeekFound {
                offset: o,
                eof: o >= size,
            },
            None => SeekFound {
                offset: size,
                eof: true,
            },
        }))
    }
}
