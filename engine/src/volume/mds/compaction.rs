//! The scrubber's tables: which SCOs were compacted (and into which object), which backend
//! objects are marked for deletion since when, and the totals `strata volume info` shows.
//! Layout: `FORMATS.md`, "Scrubbing and garbage collection".

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::liveness::{DEAD, SCO_DEAD};
use super::store::{db_err, Mds, META};
use crate::error::Result;

/// SCO -> (writer epoch, counter, positions kept): the SCO's current compacted object
/// (`sco/<seq>.<epoch>.<writer>.<counter>`); positions kept 0: none, the SCO is gone.
const COMPACTED: TableDefinition<u64, (u64, u64, u32)> = TableDefinition::new("compacted");
/// Backend key (in the volume's namespace) -> when it was marked garbage (Unix seconds).
const GC_PENDING: TableDefinition<&str, u64> = TableDefinition::new("gc_pending");
/// A compaction in flight: (SCO, writer epoch, the SCO's upload epoch).
pub(in crate::volume) type InFlight = (u64, u64, u64);

/// Compaction counter -> (SCO, writer epoch, the SCO's upload epoch): compactions whose
/// object may be on the backend but which are not recorded yet (a crash came in between).
const INFLIGHT: TableDefinition<u64, (u64, u64, u64)> = TableDefinition::new("compaction_inflight");

/// The format of a store whose volume had SCOs compacted (their original objects may be gone
/// from the backend): a build before scrubbing refuses it rather than read them.
pub(in crate::volume) const MDS_FORMAT_SCRUBBED: u64 = 4;

/// The format of a store whose volume had TLogs compacted (their originals may be gone from
/// the backend, and the compacted ones leave entries out): a build before TLog compaction
/// refuses it.
pub(in crate::volume) const MDS_FORMAT_TLOGS_COMPACTED: u64 = 5;

/// Creates the tables (opening a store from before scrubbing adds them empty).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(COMPACTED).map_err(db_err)?;
    tx.open_table(GC_PENDING).map_err(db_err)?;
    tx.open_table(INFLIGHT).map_err(db_err)?;
    Ok(())
}

/// Whether `sco` was dropped whole (nothing of it is on the backend), inside `tx`.
pub(super) fn dropped_whole(
    compacted: &impl ReadableTable<u64, (u64, u64, u32)>,
    sco: u64,
) -> Result<bool> {
    Ok(compacted
        .get(sco)
        .map_err(db_err)?
        .is_some_and(|v| v.value().2 == 0))
}

/// The table of compacted SCOs, for [`dropped_whole`].
pub(super) fn compacted_table(
    tx: &WriteTransaction,
) -> Result<redb::Table<'_, u64, (u64, u64, u32)>> {
    tx.open_table(COMPACTED).map_err(db_err)
}

/// Whether the volume of `tx`'s store had SCOs compacted (its format stays 4).
pub(super) fn scrubbed(tx: &WriteTransaction) -> Result<Option<u64>> {
    let meta = tx.open_table(META).map_err(db_err)?;
    let v = meta.get("scrubbed").map_err(db_err)?.map(|v| v.value());
    Ok(match v {
        Some(SCRUBBED_TLOGS) => Some(MDS_FORMAT_TLOGS_COMPACTED),
        Some(_) => Some(MDS_FORMAT_SCRUBBED),
        None => None,
    })
}

/// `meta.scrubbed`: SCOs were compacted (format 4).
pub(super) const SCRUBBED_SCOS: u64 = 1;
/// `meta.scrubbed`: TLogs were compacted too (format 5).
pub(super) const SCRUBBED_TLOGS: u64 = 2;

/// The scrubber's totals for a volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScrubTotals {
    /// Bytes of SCO objects reclaimed (the old object's size minus the compacted one's).
    pub(crate) reclaimed_bytes: u64,
    /// Backend objects deleted.
    pub(crate) objects_deleted: u64,
    /// SCOs compacted (or dropped whole).
    pub(crate) scos_compacted: u64,
    /// Completed passes.
    pub(crate) passes: u64,
    /// When the last pass finished (Unix seconds; 0: never).
    pub(crate) last_finished: u64,
    /// How long the last pass took, in milliseconds.
    pub(crate) last_millis: u64,
}

/// One compacted SCO: its object and the positions it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::volume) struct Compacted {
    pub(in crate::volume) writer: u64,
    pub(in crate::volume) counter: u64,
    pub(in crate::volume) kept: u32,
}

impl Mds {
    /// The current compacted object of `sco`, if it was compacted.
    pub(in crate::volume) fn compacted(&self, sco: u64) -> Result<Option<Compacted>> {
        self.compacted_in(COMPACTED, sco)
    }

    /// The row of `key` in `table` (a SCO's or a TLog's compacted object).
    pub(super) fn compacted_in(
        &self,
        table: TableDefinition<u64, (u64, u64, u32)>,
        key: u64,
    ) -> Result<Option<Compacted>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(table).map_err(db_err)?;
        Ok(t.get(key).map_err(db_err)?.map(|v| {
            let (writer, counter, kept) = v.value();
            Compacted {
                writer,
                counter,
                kept,
            }
        }))
    }

    /// A new compaction counter for `sco`, durably taken and recorded as in flight (a key is
    /// never written twice, and an object put but never recorded is found again).
    pub(in crate::volume) fn next_compaction(
        &self,
        sco: u64,
        writer: u64,
        epoch: u64,
    ) -> Result<u64> {
        self.take_counter(INFLIGHT, (sco, writer, epoch))
    }

    /// Takes the next compaction counter (one sequence for SCOs and TLogs) and records it in
    /// `inflight` with `row`, durably.
    pub(super) fn take_counter(
        &self,
        inflight: TableDefinition<u64, InFlight>,
        row: InFlight,
    ) -> Result<u64> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let n = {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let n = meta
                .get("next_compaction")
                .map_err(db_err)?
                .map_or(1, |v| v.value());
            meta.insert("next_compaction", n + 1).map_err(db_err)?;
            tx.open_table(inflight)
                .map_err(db_err)?
                .insert(n, row)
                .map_err(db_err)?;
            n
        };
        tx.commit().map_err(db_err)?;
        Ok(n)
    }

    /// The compactions in flight: (counter, (SCO, writer epoch, upload epoch)).
    pub(in crate::volume) fn compactions_in_flight(&self) -> Result<Vec<(u64, InFlight)>> {
        self.in_flight(INFLIGHT)
    }

    /// The rows of `inflight`.
    pub(super) fn in_flight(
        &self,
        inflight: TableDefinition<u64, InFlight>,
    ) -> Result<Vec<(u64, InFlight)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(inflight).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// Compaction `counter`, cut short, had its possible object `key` marked garbage: one
    /// durable transaction drops it from the compactions in flight and marks `key`.
    pub(in crate::volume) fn abandon_compaction(
        &self,
        counter: u64,
        key: &str,
        now: u64,
    ) -> Result<()> {
        self.abandon_in(INFLIGHT, counter, key, now)
    }

    /// Drops `counter` from `inflight` and marks `key` garbage as of `now` (a mark already
    /// there keeps its time), in one durable transaction.
    pub(super) fn abandon_in(
        &self,
        inflight: TableDefinition<u64, InFlight>,
        counter: u64,
        key: &str,
        now: u64,
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            tx.open_table(inflight)
                .map_err(db_err)?
                .remove(counter)
                .map_err(db_err)?;
            let mut t = tx.open_table(GC_PENDING).map_err(db_err)?;
            if t.get(key).map_err(db_err)?.is_none() {
                t.insert(key, now).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// The SCO table's row of `sco`: (sealing TLog, clusters, data CRC32C).
    pub(in crate::volume) fn sco_row(&self, sco: u64) -> Result<Option<(u64, u32, u32)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(super::store::SCOS).map_err(db_err)?;
        let v = t.get(sco).map_err(db_err)?.map(|v| v.value());
        Ok(v)
    }

    /// Records that `sco` now lives in `new` (its object on the backend already), in one
    /// durable transaction: the dead rows of the positions it `dropped` go (rows found since
    /// stay, for the next compaction), `old_key` is marked garbage as of `now`, and the totals
    /// grow by `reclaimed` bytes. The store becomes format 4.
    pub(in crate::volume) fn finish_compaction(
        &self,
        sco: u64,
        new: Compacted,
        dropped: &[u32],
        old_key: &str,
        now: u64,
        reclaimed: u64,
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let done = Replaced {
            table: COMPACTED,
            inflight: INFLIGHT,
            total: "scrub_scos_compacted",
            level: SCRUBBED_SCOS,
        };
        done.record(&tx, sco, new, old_key, now, reclaimed)?;
        {
            let mut dead = tx.open_table(DEAD).map_err(db_err)?;
            let mut gone = 0u32;
            for idx in dropped {
                if dead.remove((sco, *idx)).map_err(db_err)?.is_some() {
                    gone += 1;
                }
            }
            let mut sco_dead = tx.open_table(SCO_DEAD).map_err(db_err)?;
            let left = sco_dead
                .get(sco)
                .map_err(db_err)?
                .map_or(0, |v| v.value())
                .saturating_sub(gone);
            if left == 0 {
                sco_dead.remove(sco).map_err(db_err)?;
            } else {
                sco_dead.insert(sco, left).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Marks `keys` garbage as of `now` (those already marked keep their time).
    pub(in crate::volume) fn gc_mark(&self, keys: &[String], now: u64) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(GC_PENDING).map_err(db_err)?;
            for k in keys {
                if t.get(k.as_str()).map_err(db_err)?.is_none() {
                    t.insert(k.as_str(), now).map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Drops the marks of `keys` (found in use by the check before the delete).
    pub(in crate::volume) fn gc_unmark(&self, keys: &[String]) -> Result<()> {
        self.unmark(keys, false)
    }

    /// Every key marked garbage, with when.
    pub(in crate::volume) fn gc_pending(&self) -> Result<Vec<(String, u64)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(GC_PENDING).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    /// `keys` were deleted from the backend (or found gone): their marks go and the totals
    /// count them, durably.
    pub(in crate::volume) fn gc_done(&self, keys: &[String]) -> Result<()> {
        self.unmark(keys, true)
    }

    /// Drops the marks of `keys` in one durable transaction; with `deleted`, the totals count
    /// them as deleted objects.
    fn unmark(&self, keys: &[String], deleted: bool) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(GC_PENDING).map_err(db_err)?;
            for k in keys {
                t.remove(k.as_str()).map_err(db_err)?;
            }
            if deleted {
                let mut meta = tx.open_table(META).map_err(db_err)?;
                add(&mut meta, "scrub_objects_deleted", keys.len() as u64)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Records a finished pass: when, and how long it took.
    pub(in crate::volume) fn scrub_pass_done(&self, finished: u64, millis: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            add(&mut meta, "scrub_passes", 1)?;
            meta.insert("scrub_last_finished", finished)
                .map_err(db_err)?;
            meta.insert("scrub_last_millis", millis).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The scrubber's totals.
    pub(in crate::volume) fn scrub_totals(&self) -> Result<ScrubTotals> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        let get =
            |k: &str| -> Result<u64> { Ok(meta.get(k).map_err(db_err)?.map_or(0, |v| v.value())) };
        Ok(ScrubTotals {
            reclaimed_bytes: get("scrub_reclaimed_bytes")?,
            objects_deleted: get("scrub_objects_deleted")?,
            scos_compacted: get("scrub_scos_compacted")?,
            passes: get("scrub_passes")?,
            last_finished: get("scrub_last_finished")?,
            last_millis: get("scrub_last_millis")?,
        })
    }
}

/// Where a compaction (of a SCO or a TLog) is recorded.
pub(super) struct Replaced {
    /// The table of current compacted objects.
    pub(super) table: TableDefinition<'static, u64, (u64, u64, u32)>,
    /// The table of compactions in flight.
    pub(super) inflight: TableDefinition<'static, u64, InFlight>,
    /// The `meta` total counting them.
    pub(super) total: &'static str,
    /// What `meta.scrubbed` becomes at least ([`SCRUBBED_SCOS`] or [`SCRUBBED_TLOGS`]).
    pub(super) level: u64,
}

impl Replaced {
    /// In `tx`: `key` now lives in `new` (no longer in flight), `old_key` is marked garbage
    /// as of `now`, the totals grow (`reclaimed` bytes, one compaction) and the store becomes
    /// format 4.
    pub(super) fn record(
        &self,
        tx: &WriteTransaction,
        key: u64,
        new: Compacted,
        old_key: &str,
        now: u64,
        reclaimed: u64,
    ) -> Result<()> {
        tx.open_table(self.table)
            .map_err(db_err)?
            .insert(key, (new.writer, new.counter, new.kept))
            .map_err(db_err)?;
        tx.open_table(self.inflight)
            .map_err(db_err)?
            .remove(new.counter)
            .map_err(db_err)?;
        tx.open_table(GC_PENDING)
            .map_err(db_err)?
            .insert(old_key, now)
            .map_err(db_err)?;
        let mut meta = tx.open_table(META).map_err(db_err)?;
        add(&mut meta, "scrub_reclaimed_bytes", reclaimed)?;
        add(&mut meta, self.total, 1)?;
        let level = meta
            .get("scrubbed")
            .map_err(db_err)?
            .map_or(self.level, |v| v.value().max(self.level));
        meta.insert("scrubbed", level).map_err(db_err)?;
        drop(meta);
        let format = scrubbed(tx)?.unwrap_or(MDS_FORMAT_SCRUBBED);
        tx.open_table(META)
            .map_err(db_err)?
            .insert("format", format)
            .map_err(db_err)?;
        Ok(())
    }
}

/// Adds `n` to the meta counter `k`.
fn add(meta: &mut redb::Table<'_, &str, u64>, k: &str, n: u64) -> Result<()> {
    let v = meta.get(k).map_err(db_err)?.map_or(0, |v| v.value());
    meta.insert(k, v.saturating_add(n)).map_err(db_err)?;
    Ok(())
}
