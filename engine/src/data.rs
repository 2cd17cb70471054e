//! Object data behind one trait: the facade reads, writes, truncates and syncs an object without
//! caring whether a FileDriver file or a volume (`registry/`) holds it (DESIGN §2).

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use strata_filedriver::{ExtentMap, FileDriver, EXTENT_SIZE};

use crate::error::Result;

/// What a data commit must record in the namespace, atomically, before it counts as durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Commit {
    /// The size to persist.
    pub size: u64,
    /// Extent indices now on the backend that the metadata must name.
    pub added: Vec<u64>,
    /// Extent indices the metadata must forget.
    pub removed: Vec<u64>,
    /// The record needs no fsync of its own: the data's owner is the authority for what it
    /// records (a volume's size lives in its TLogs), so a crash that loses it loses nothing.
    pub lazy: bool,
}

/// Persists a [`Commit`] (one redb transaction). Called with the object's data lock held, so
/// commits of one object are recorded in order.
pub(crate) type Persist<'a> = &'a mut dyn FnMut(&Commit) -> Result<()>;

/// The data of one regular object (file or volume).
pub(crate) trait ObjectData: Send + Sync + std::fmt::Debug {
    /// Reads from `offset`, clamped at the current size: bytes read and whether EOF was reached.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)>;
    /// Writes `data` at `offset` (not yet durable); grows the size if needed.
    fn write(&self, offset: u64, data: &[u8]) -> Result<()>;
    /// Sets the size; durable (data and metadata) when it returns.
    fn truncate(&self, new_size: u64, persist: Persist<'_>) -> Result<()>;
    /// Makes every write so far durable, then persists the metadata naming it.
    fn sync(&self, persist: Persist<'_>) -> Result<()>;
    /// Current size, including writes not yet durable.
    fn size(&self) -> u64;
    /// Bytes stored for this object.
    fn space_used(&self) -> u64;
    /// True when writes since the last sync are not yet durable.
    fn is_dirty(&self) -> bool;
    /// Deletes all the object's data (its last link and open are gone).
    fn delete(&self) -> Result<()>;
}

#[derive(Debug)]
struct Sizes {
    /// Size including unstable writes.
    size: u64,
    /// Writes since the last sync.
    dirty: bool,
    /// Extent indices whose presence a failed persist did not record: the next commit records
    /// them as the map has them then.
    unrecorded: BTreeSet<u64>,
    /// The extent holding the end of file may have bytes beyond the size on the backend (an
    /// unstable write that reached the backend before a crash, whose size was never recorded).
    /// They must read as zeros when the file grows over them, so the first growth zeroes them.
    suspect_tail: bool,
}

/// A regular file kept by the FileDriver: the extent map and sizes live here while loaded, and
/// in the namespace (redb) when durable.
#[derive(Debug)]
pub(crate) struct FileData {
    id: u64,
    driver: Arc<FileDriver>,
    /// Read and write take it shared (the driver locks extents itself); sync, truncate and
    /// delete take it exclusive so that the map they change is never read half-updated.
    map: RwLock<ExtentMap>,
    sizes: Mutex<Sizes>,
}

impl FileData {
    /// The data of file `id` with its durable `size` and extent `map` as the namespace has them.
    pub(crate) fn new(id: u64, driver: Arc<FileDriver>, size: u64, map: ExtentMap) -> FileData {
        let suspect_tail = !size.is_multiple_of(EXTENT_SIZE) && map.contains(&(size / EXTENT_SIZE));
        FileData {
            id,
            driver,
            map: RwLock::new(map),
            sizes: Mutex::new(Sizes {
                size,
                dirty: false,
                unrecorded: BTreeSet::new(),
                suspect_tail,
            }),
        }
    }

    /// Zeroes `[from, to)` within the extent that holds `from` (the rest reads as holes).
    fn zero_gap(&self, map: &ExtentMap, from: u64, to: u64) -> Result<()> {
        let end = to.min((from / EXTENT_SIZE + 1) * EXTENT_SIZE);
        if end > from {
            let zeros = vec![0u8; (end - from) as usize];
            self.driver.write(self.id, map, from, &zeros)?;
        }
        Ok(())
    }

    /// Uploads dirty extents; returns the indices the metadata must add and remove, relative
    /// to `old` (the map as the metadata last recorded it) plus any left unrecorded earlier.
    fn upload(&self, old: &ExtentMap, map: &mut ExtentMap) -> Result<(Vec<u64>, Vec<u64>)> {
        // The driver also applies what it learnt on its own (write-back by eviction, cuts):
        // diff against the recorded map to know exactly what the metadata must change.
        let synced = self.driver.sync(self.id, map);
        let mut sizes = self.sizes.lock();
        let mut touched: BTreeSet<u64> = map.symmetric_difference(old).copied().collect();
        touched.append(&mut sizes.unrecorded);
        if let Err(e) = synced {
            // Whatever did reach the backend is in `map` now: record it with the next commit.
            sizes.unrecorded = touched;
            return Err(e.into());
        }
        Ok(touched.into_iter().partition(|i| map.contains(i)))
    }

    /// Remembers a commit that could not be recorded, for the next one.
    fn unrecorded(&self, c: &Commit) {
        let mut s = self.sizes.lock();
        s.unrecorded
            .extend(c.added.iter().chain(&c.removed).copied());
    }
}

impl ObjectData for FileData {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)> {
        let map = self.map.read();
        let size = self.sizes.lock().size;
        if offset >= size {
            return Ok((0, true));
        }
        let n = (size - offset).min(buf.len() as u64) as usize;
        self.driver.read(self.id, &map, offset, &mut buf[..n])?;
        Ok((n, offset + n as u64 >= size))
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset + data.len() as u64;
        {
            let map = self.map.read();
            let gap = {
                let s = self.sizes.lock();
                s.suspect_tail && offset > s.size
            };
            if !gap {
                self.driver.write(self.id, &map, offset, data)?;
                let mut s = self.sizes.lock();
                s.size = s.size.max(end);
                s.dirty = true;
                return Ok(());
            }
        }
        // Growing over a suspect tail: alone on the file, zero the gap first.
        let map = self.map.write();
        let (size, suspect) = {
            let s = self.sizes.lock();
            (s.size, s.suspect_tail)
        };
        if suspect && offset > size {
            self.zero_gap(&map, size, offset)?;
        }
        self.driver.write(self.id, &map, offset, data)?;
        let mut s = self.sizes.lock();
        s.size = s.size.max(end);
        s.dirty = true;
        if offset > size {
            s.suspect_tail = false;
        }
        Ok(())
    }

    fn truncate(&self, new_size: u64, persist: Persist<'_>) -> Result<()> {
        let mut map = self.map.write();
        let (size, suspect) = {
            let s = self.sizes.lock();
            (s.size, s.suspect_tail)
        };
        if suspect && new_size > size {
            self.zero_gap(&map, size, new_size)?;
        }
        let old = map.clone();
        // From here on the cut may be partly done (map and cache cut, tail zeroed): on failure
        // the file must stay the truncated one in memory, never the old size over cut extents,
        // and the next commit records it.
        let cut_half_done = |e: crate::error::Error| {
            let mut s = self.sizes.lock();
            s.size = new_size;
            s.dirty = true;
            s.suspect_tail = !new_size.is_multiple_of(EXTENT_SIZE);
            e
        };
        let removed = match self.driver.truncate(self.id, &mut map, new_size) {
            Ok(r) => r,
            Err(e) => {
                // The indices it cut from the map are for the next commit to forget.
                let changed = map.symmetric_difference(&old).copied().collect::<Vec<_>>();
                self.sizes.lock().unrecorded.extend(changed);
                return Err(cut_half_done(e.into()));
            }
        };
        // The zeroed tail of the last extent (and any earlier unstable write) goes up first, so
        // that the size recorded next never exposes stale bytes.
        let (added, mut cut) = self.upload(&old, &mut map).map_err(cut_half_done)?;
        for r in &removed {
            if !cut.contains(r) {
                cut.push(*r);
            }
        }
        let commit = Commit {
            size: new_size,
            added,
            removed: cut,
            lazy: false,
        };
        if let Err(e) = persist(&commit) {
            self.unrecorded(&commit);
            return Err(cut_half_done(e));
        }
        {
            let mut s = self.sizes.lock();
            s.size = new_size;
            s.dirty = false;
            s.suspect_tail = false;
        }
        // Not named by the metadata any more: leftovers after a crash are harmless garbage.
        if let Err(e) = self.driver.delete_extents(self.id, &removed) {
            tracing::warn!(file = self.id, error = %e, "deleting truncated extents failed");
        }
        Ok(())
    }

    fn sync(&self, persist: Persist<'_>) -> Result<()> {
        let mut map = self.map.write();
        let old = map.clone();
        let (added, removed) = self.upload(&old, &mut map)?;
        let size = self.sizes.lock().size;
        let commit = Commit {
            size,
            added,
            removed,
            lazy: false,
        };
        if let Err(e) = persist(&commit) {
            self.unrecorded(&commit);
            return Err(e);
        }
        self.sizes.lock().dirty = false;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.sizes.lock().size
    }

    fn space_used(&self) -> u64 {
        let extents = self.map.read().len() as u64;
        space_used(self.size(), extents)
    }

    fn is_dirty(&self) -> bool {
        self.sizes.lock().dirty
    }

    fn delete(&self) -> Result<()> {
        let map = self.map.write();
        self.driver.delete(self.id, &map)?;
        Ok(())
    }
}

/// Bytes used by a file of `size` with `extents` extents on the backend.
pub(crate) fn space_used(size: u64, extents: u64) -> u64 {
    let rounded = size.div_ceil(4096).saturating_mul(4096);
    rounded.min(extents.saturating_mul(EXTENT_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_used_is_bounded_by_size_and_extents() {
        assert_eq!(space_used(0, 0), 0);
        assert_eq!(space_used(10, 1), 4096);
        assert_eq!(space_used(10 * EXTENT_SIZE, 2), 2 * EXTENT_SIZE);
        assert_eq!(space_used(100, 0), 0);
        assert_eq!(
            space_used(u64::MAX, u64::MAX),
            u64::MAX,
            "saturates, no overflow"
        );
    }
}
