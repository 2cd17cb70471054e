//! A volume's reserved ranges (NFSv4.2 ALLOCATE): cluster addresses a client asked space for.
//! Kept in `mds.redb` (table `reserved`, start -> end), local only: they are accounting, not
//! data, and a backend restart starts without them.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::ranges::Ranges;
use super::store::{db_err, Mds};
use crate::error::Result;

/// First cluster address -> end (exclusive) of each reserved range.
const RESERVED: TableDefinition<u64, u64> = TableDefinition::new("reserved");

/// Creates the table (at open).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(RESERVED).map_err(db_err)?;
    Ok(())
}

impl Mds {
    /// The reserved ranges.
    pub(in crate::volume) fn reserved(&self) -> Result<Ranges> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(RESERVED).map_err(db_err)?;
        let mut r = Ranges::default();
        for e in t.iter().map_err(db_err)? {
            let (k, v) = e.map_err(db_err)?;
            r.insert(k.value(), v.value());
        }
        Ok(r)
    }

    /// Replaces the reserved ranges, durably.
    pub(in crate::volume) fn set_reserved(&self, r: &Ranges) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        // The cluster map is not written: cached map pages stay.
        tx.set_touched(super::db::Touched::none());
        {
            let mut t = tx.open_table(RESERVED).map_err(db_err)?;
            t.retain(|_, _| false).map_err(db_err)?;
            for (from, to) in r.iter() {
                t.insert(from, to).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }
}
