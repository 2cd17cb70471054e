//! The marks of the extent sweep (`fs/extent_sweep.rs`): extent objects of an earlier run that
//! no map names and the collector's list (`garbage`) does not hold, found on the backend, and
//! when a pass first found them.

use super::{Namespace, EXTENTS, GARBAGE, UNNAMED};
use crate::error::Result;
use crate::types::Ino;
use redb::{ReadableTable, ReadableTableMetadata};

impl Namespace {
    /// Marks each of `found` (versions of an earlier run: nothing gives a map one of those
    /// at runtime) that no map names and `garbage` does not list, as found at `now` (a mark
    /// already there keeps its time). Not durable by itself: a lost mark is found again.
    /// Returns how many were new.
    pub(crate) fn mark_unnamed_extents(&self, found: &[(Ino, u64, u64)], now: u64) -> Result<u64> {
        if found.is_empty() {
            return Ok(0);
        }
        let txn = self.begin()?;
        let mut new = 0;
        {
            let extents = txn.open_table(EXTENTS)?;
            let garbage = txn.open_table(GARBAGE)?;
            let mut unnamed = txn.open_table(UNNAMED)?;
            for &(ino, idx, gen) in found {
                let named = extents.get((ino, idx))?.map(|g| g.value()) == Some(gen);
                if named
                    || garbage.get((ino, idx, gen))?.is_some()
                    || unnamed.get((ino, idx, gen))?.is_some()
                {
                    continue;
                }
                unnamed.insert((ino, idx, gen), now)?;
                new += 1;
            }
        }
        self.commit_quiet(txn)?;
        Ok(new)
    }

    /// Hands the collector every mark made at or before `cutoff` whose version no map names
    /// (checked again here, in the transaction that moves it to `garbage`), and drops marks
    /// of versions a map does name. Durable before it returns. Returns what moved.
    pub(crate) fn condemn_unnamed_extents(&self, cutoff: u64) -> Result<Vec<(Ino, u64, u64)>> {
        let txn = self.begin()?;
        let mut moved = Vec::new();
        {
            let extents = txn.open_table(EXTENTS)?;
            let mut garbage = txn.open_table(GARBAGE)?;
            let mut unnamed = txn.open_table(UNNAMED)?;
            let mut due = Vec::new();
            for r in unnamed.iter()? {
                let (k, v) = r?;
                if v.value() <= cutoff {
                    due.push(k.value());
                }
            }
            for (ino, idx, gen) in due {
                unnamed.remove((ino, idx, gen))?;
                if extents.get((ino, idx))?.map(|g| g.value()) == Some(gen) {
                    continue;
                }
                garbage.insert((ino, idx, gen), ())?;
                moved.push((ino, idx, gen));
            }
        }
        if moved.is_empty() {
            self.commit_quiet(txn)?;
        } else {
            self.commit(txn)?;
        }
        Ok(moved)
    }

    /// How many marks wait for their grace to pass.
    pub(crate) fn unnamed_extents(&self) -> Result<u64> {
        let txn = redb::ReadableDatabase::begin_read(&self.db)?;
        Ok(txn.open_table(UNNAMED)?.len()?)
    }
}
