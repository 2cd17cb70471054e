//! The scrubber's tables for TLogs: which TLogs were compacted (and into which object), and
//! TLog compactions in flight. Layout: `FORMATS.md`, "Scrubbing and garbage collection".

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::compaction::{Compacted, InFlight, Replaced};
use super::store::{db_err, Mds, SCOS};
use crate::error::Result;

/// TLog -> (writer epoch, counter, cluster entries kept): the TLog's current compacted object
/// (`tlog/<seq>.<epoch>.<writer>.<counter>`).
const TLOG_COMPACTED: TableDefinition<u64, (u64, u64, u32)> =
    TableDefinition::new("tlog_compacted");

/// Compaction counter -> (TLog, writer epoch, the TLog's upload epoch): TLog compactions whose
/// object may be on the backend but which are not recorded yet.
const TLOG_INFLIGHT: TableDefinition<u64, (u64, u64, u64)> =
    TableDefinition::new("tlog_compaction_inflight");

/// Creates the tables (opening an older store adds them empty).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(TLOG_COMPACTED).map_err(db_err)?;
    tx.open_table(TLOG_INFLIGHT).map_err(db_err)?;
    Ok(())
}

impl Mds {
    /// The current compacted object of TLog `t`, if it was compacted (`kept`: its cluster
    /// entries).
    pub(in crate::volume) fn tlog_compacted(&self, t: u64) -> Result<Option<Compacted>> {
        self.compacted_in(TLOG_COMPACTED, t)
    }

    /// The own SCOs of each TLog after `base`: TLog -> [(SCO, clusters)].
    pub(in crate::volume) fn scos_by_tlog(
        &self,
        base: u64,
    ) -> Result<BTreeMap<u64, Vec<(u64, u32)>>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let tab = tx.open_table(SCOS).map_err(db_err)?;
        let mut out: BTreeMap<u64, Vec<(u64, u32)>> = BTreeMap::new();
        for r in tab.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            let (t, clusters, _) = v.value();
            if t > base {
                out.entry(t).or_default().push((k.value(), clusters));
            }
        }
        Ok(out)
    }

    /// A new compaction counter (shared with SCOs') for TLog `t`, durably taken and recorded
    /// as in flight.
    pub(in crate::volume) fn next_tlog_compaction(
        &self,
        t: u64,
        writer: u64,
        epoch: u64,
    ) -> Result<u64> {
        self.take_counter(TLOG_INFLIGHT, (t, writer, epoch))
    }

    /// The TLog compactions in flight: (counter, (TLog, writer epoch, upload epoch)).
    pub(in crate::volume) fn tlog_compactions_in_flight(&self) -> Result<Vec<(u64, InFlight)>> {
        self.in_flight(TLOG_INFLIGHT)
    }

    /// TLog compaction `counter`, cut short or abandoned, had its possible object `key`
    /// marked garbage, in one durable transaction.
    pub(in crate::volume) fn abandon_tlog_compaction(
        &self,
        counter: u64,
        key: &str,
        now: u64,
    ) -> Result<()> {
        self.abandon_in(TLOG_INFLIGHT, counter, key, now)
    }

    /// Records that TLog `t` now lives in `new` (on the backend already), in one durable
    /// transaction: `old_key` is marked garbage as of `now` and the totals grow by
    /// `reclaimed` bytes. The store becomes format 4.
    pub(in crate::volume) fn finish_tlog_compaction(
        &self,
        t: u64,
        new: Compacted,
        old_key: &str,
        now: u64,
        reclaimed: u64,
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let done = Replaced {
            table: TLOG_COMPACTED,
            inflight: TLOG_INFLIGHT,
            total: "scrub_tlogs_compacted",
            level: super::compaction::SCRUBBED_TLOGS,
        };
        done.record(&tx, t, new, old_key, now, reclaimed)?;
        tx.commit().map_err(db_err)
    }
}
