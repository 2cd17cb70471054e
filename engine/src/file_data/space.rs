//! A regular file's space operations: holes punched (DEALLOCATE) and SEEK over its extents.
//!
//! A hole drops the whole 1 MiB extents it covers (their objects become garbage, deleted once
//! the namespace on the backend no longer names them) and writes zeros through the journal
//! over the partial extents at its ends (where they hold data: a hole in a hole writes
//! nothing). It is durable when it returns: the zeros are
//! committed in the journal, and the cut is recorded the way a truncate's is — every earlier
//! write uploaded, the map without the dropped extents persisted with its applied LSN — so a
//! crash and a journal replay never bring the dropped data back.

use std::collections::BTreeSet;

use strata_filedriver::EXTENT_SIZE;

use super::FileData;
use crate::data::{ObjectData, Persist};
use crate::error::Result;
use crate::journal::MAX_WRITE_DATA;
use crate::types::SeekWhat;

impl FileData {
    /// Punches a hole over `offset .. offset + len`, cut at the size (which never changes).
    pub(super) fn punch_range(&self, offset: u64, len: u64, persist: Persist<'_>) -> Result<()> {
        let end = offset.saturating_add(len).min(self.size());
        let first = offset.div_ceil(EXTENT_SIZE);
        let last = end / EXTENT_SIZE;
        if offset >= end || first >= last {
            self.write_zeros(offset, end)?;
            return self.sync(persist);
        }
        self.write_zeros(offset, first * EXTENT_SIZE)?;
        self.write_zeros(last * EXTENT_SIZE, end)?;
        let _one = self.upload.lock();
        let mut map = self.map.write();
        let (size, lsn) = {
            let s = self.sizes.lock();
            (s.size, s.last_lsn)
        };
        let old = map.clone();
        // The applied LSN recorded below is never above what the journal made durable.
        self.shared.journal.commit(lsn)?;
        let garbage = self
            .driver()
            .punch_extents(self.id, &mut map, first, last)?;
        self.record_cut(&old, &mut map, garbage, lsn, size, persist, |_| {})
    }

    /// Zeros over `from..to` through the journal, cut at the size as it is then (a punch never
    /// grows the file), and only in extents that hold data (a hole stays a hole).
    fn write_zeros(&self, from: u64, to: u64) -> Result<()> {
        let to = to.min(self.size());
        if from >= to {
            return Ok(());
        }
        let data = self.data_extents();
        let zeros =
            vec![0u8; MAX_WRITE_DATA.min(usize::try_from(to - from).unwrap_or(MAX_WRITE_DATA))];
        let mtime = crate::namespace::now();
        let mut at = from;
        while at < to {
            let idx = at / EXTENT_SIZE;
            let stop = to.min((idx + 1) * EXTENT_SIZE);
            if data.contains(&idx) {
                let n = usize::try_from(stop - at).map_or(zeros.len(), |r| r.min(zeros.len()));
                self.write_chunk(at, &zeros[..n], mtime)?;
                at += n as u64;
            } else {
                at = stop;
            }
        }
        Ok(())
    }

    /// The indexes of the extents that hold data: on the backend (the map) or only local.
    fn data_extents(&self) -> BTreeSet<u64> {
        let map = self.map.read();
        let mut d = self.driver().local_extents(self.id, &map);
        d.extend(map.keys().copied());
        d
    }

    /// SEEK over the extents: an extent on the backend or in the cache holds data, any other
    /// is a hole (granularity: 1 MiB).
    pub(super) fn seek_extents(&self, offset: u64, what: SeekWhat) -> Result<Option<u64>> {
        let size = self.size();
        if offset >= size {
            return Ok(None);
        }
        let mut data = self.data_extents();
        let first = offset / EXTENT_SIZE;
        let found = match what {
            SeekWhat::Data => data.split_off(&first).into_iter().next(),
            SeekWhat::Hole => (first..size.div_ceil(EXTENT_SIZE))
                .find(|i| !data.contains(i))
                .or(Some(size.div_ceil(EXTENT_SIZE))),
        };
        Ok(found.map(|i| i.saturating_mul(EXTENT_SIZE).max(offset).min(size)))
    }
}
