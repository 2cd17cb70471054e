//! Data: read, write (stable or not), COMMIT, and the NFSv4 open/close counts.

use super::live::{Live, Pending};
use super::Filesystem;
use crate::error::{Error, Result};
use crate::namespace::{self, Orphaned};
use crate::types::*;

impl Filesystem {
    /// Reads into `buf` from `offset`; returns bytes read and whether the end of file was reached.
    pub fn read(&self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        let live = self.get_live(h)?;
        live.data.read(offset, buf)
    }

    /// Writes `data` at `offset`; with `stable`, returns only once durable.
    pub fn write(
        &self,
        h: Handle,
        offset: u64,
        data: &[u8],
        stable: bool,
    ) -> Result<(usize, Stability)> {
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(Error::Invalid("write beyond the largest offset".into()));
        }
        self.ns.check_deposed()?;
        let live = self.get_live(h)?;
        if data.is_empty() {
            // Writes nothing: a zero-length write past the end must not grow the file (POSIX
            // pwrite), nor touch mtime or the change counter.
            if stable {
                self.commit_for_client(h.ino, &live)?;
                return Ok((0, Stability::Stable));
            }
            return Ok((0, Stability::Unstable));
        }
        let t = namespace::now();
        live.data.write(offset, data, t)?;
        self.note_data_change(h, &live, t)?;
        if stable {
            self.commit_for_client(h.ino, &live)?;
            return Ok((data.len(), Stability::Stable));
        }
        Ok((data.len(), Stability::Unstable))
    }

    /// Records that `h`'s data changed at `t` (its mtime and change attribute, pending until
    /// the next data commit records them).
    pub(super) fn note_data_change(&self, h: Handle, live: &Live, t: Timestamp) -> Result<()> {
        let mut p = live.pending.lock();
        match p.as_mut() {
            Some(p) => {
                p.mtime = t;
                p.change += 1;
            }
            None => {
                let base = self.ns.get_ino(h.ino)?.map(|i| i.change).unwrap_or(0);
                *p = Some(Pending {
                    mtime: t,
                    change: base + 1,
                });
            }
        }
        Ok(())
    }

    /// Makes every write to `h` so far durable.
    pub fn commit(&self, h: Handle) -> Result<()> {
        // A loaded object is a regular one of this generation: no namespace lookup then.
        let live = match self.peek_live(h.ino) {
            Some(l) if l.generation == h.generation => l,
            _ => {
                let inode = self.get_valid(h)?;
                if !inode.kind.is_regular() {
                    return Ok(());
                }
                self.get_live(h)?
            }
        };
        self.commit_for_client(h.ino, &live)
    }

    /// Records an open (NFSv4 OPEN state): the object keeps its data while opened.
    pub fn open_file(&self, h: Handle) -> Result<()> {
        let mut opens = self.opens.lock();
        if let Some(n) = opens.get_mut(&h.ino) {
            // Still the same object (the ino is never reused), only the generation to check.
            if h.generation != self.ns.fsid() {
                return Err(Error::Stale);
            }
            *n += 1;
            return Ok(());
        }
        // Read under the lock: an unlink that commits now either sees this open or makes
        // this read find no links.
        let inode = self.ns.get(h)?;
        if inode.nlink == 0 {
            return Err(Error::Stale);
        }
        opens.insert(h.ino, 1);
        Ok(())
    }

    /// Drops an open; an object with no links and no opens is removed.
    pub fn close_file(&self, h: Handle) -> Result<()> {
        let last = {
            let mut opens = self.opens.lock();
            match opens.get_mut(&h.ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    opens.remove(&h.ino);
                    true
                }
                None => return Err(Error::Invalid("close without open".into())),
            }
        };
        if last {
            if let Some(i) = self.ns.get_ino(h.ino)? {
                if i.nlink == 0 && i.kind.is_regular() {
                    self.release(Some(Orphaned(h.ino)));
                }
            }
        }
        Ok(())
    }
}
