//! Object data behind one trait: the facade reads, writes, truncates and syncs an object without
//! caring whether a FileDriver file or a volume (`registry/`) holds it (DESIGN §2).

use strata_filedriver::{ExtentVersion, EXTENT_SIZE};

use crate::error::Result;
use crate::types::Timestamp;

/// What a data commit must record in the namespace, atomically, before it counts as durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Commit {
    /// The size to persist.
    pub size: u64,
    /// Extents (index, generation) now on the backend that the metadata must name.
    pub set: Vec<ExtentVersion>,
    /// Extent indices the metadata must forget.
    pub removed: Vec<u64>,
    /// Extent objects no map names any more (for the collector).
    pub garbage: Vec<ExtentVersion>,
    /// The file's journal records up to this LSN are applied.
    pub applied_lsn: Option<u64>,
    /// The record needs no fsync of its own: the data's owner is the authority for what it
    /// records (a volume's size lives in its TLogs), so a crash that loses it loses nothing.
    pub lazy: bool,
    /// Recorded without waiting to be durable: the caller makes it durable (the namespace's
    /// `sync`) before anything relies on it (the uploader, once per round).
    pub defer_sync: bool,
}

/// Persists a [`Commit`] (one redb transaction). Called with the object's data lock held, so
/// commits of one object are recorded in order.
pub(crate) type Persist<'a> = &'a mut dyn FnMut(&Commit) -> Result<()>;

/// The data of one regular object (file or volume).
pub(crate) trait ObjectData: Send + Sync + std::fmt::Debug {
    /// Reads from `offset`, clamped at the current size: bytes read and whether EOF was reached.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(usize, bool)>;
    /// Writes `data` at `offset` (not yet durable); grows the size if needed. `mtime` is the
    /// write's modification time (the facade shows the same).
    fn write(&self, offset: u64, data: &[u8], mtime: Timestamp) -> Result<()>;
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
    /// Punches a hole: `offset .. offset + len`, cut at the size (which never changes), reads
    /// as zeros; durable (with its metadata) when it returns.
    fn punch(&self, offset: u64, len: u64, persist: Persist<'_>) -> Result<()>;
    /// ALLOCATE: reserves `offset .. offset + len` and grows the size over it (never shrinks
    /// it); durable (with its metadata) when it returns.
    fn allocate(&self, offset: u64, len: u64, persist: Persist<'_>) -> Result<()>;
    /// SEEK: the first offset at or after `offset` in data or in a hole; `None` when there is
    /// no data after `offset`, or `offset` is at or past the end.
    fn seek(&self, offset: u64, what: crate::types::SeekWhat) -> Result<Option<u64>>;
    /// Deletes all the object's data (its last link and open are gone).
    fn delete(&self) -> Result<()>;
    /// The regular file behind this object, if it is one (the uploader's way in).
    fn as_file(&self) -> Option<&crate::file_data::FileData> {
        None
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
