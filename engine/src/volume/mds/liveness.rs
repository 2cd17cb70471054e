//! What is live in each of the volume's own SCOs, kept with the map (issue #17).
//!
//! A *position* is one cluster slot of a SCO, `(SCO, index)`. A position is live while the
//! volume's map, any snapshot's view, or any clone's view can still read it. It is written in
//! the TLog that seals its SCO (`t0`: a TLog covers whole SCOs) and superseded in the TLog `t`
//! whose entry (a write, a Remap, a shrink) took its address away. Every view is a TLog
//! boundary `b` (a snapshot's TLog, or the TLog a clone reads this volume up to: a *reader
//! point*), and the view at `b` reads a superseded position exactly when `t0 <= b < t`. So, as
//! the cork is lifted and each change is applied to `clusters`, the position it replaced is:
//!
//! - **dead** when no boundary lies in `t0..t` (a row in `dead_clusters`, counted per SCO in
//!   `sco_dead`): nothing can ever read it again, because a new view is either a snapshot
//!   (at the head: what the map reads now) or a clone at a snapshot that still exists (its
//!   reader point is recorded under the rollback lock while the snapshot is checked, the lock
//!   a scrub holds while it finds positions dead), and a rollback only maps addresses back
//!   to positions its snapshot reads (a scrub pass applies what is closed first, and keeps
//!   any position the cork still maps);
//! - **pinned** otherwise (a row in `pinned_clusters` with `t`): a snapshot or a clone reads
//!   it. Deleting a snapshot changes nothing here (constant time); the scrubber re-evaluates
//!   the pinned rows against the boundaries left and moves those no view reads to dead.
//!
//! The cost is a few B-tree updates per change applied (the inserts into `dead_clusters`, and
//! for a Remap the look-ups of the position's rows: a position mapped for the first time is
//! in no table yet; the SCO rows and dead counts an uncork meets once per cluster are kept in
//! memory for its transaction, and the dead counts written once at its end; empty
//! `pinned_clusters` and `remapped_clusters` tables are not searched), and the
//! tables hold only positions that are superseded and still on the backend: nothing multiplies
//! snapshots by SCOs.
//!
//! Rules that keep "dead" safe (a position is marked dead only when truly unreadable): a
//! position a Remap mapped again (a rollback: a position mapped twice in one transaction, or
//! one of a SCO sealed before the entry's TLog) is recorded in `remapped_clusters` and never
//! found dead, since it may back several addresses at once (the rollback's one zero cluster
//! backs every hole); an address mapped back to a pinned or dead position drops that row; a
//! clone's positions in its
//! ancestors' SCOs are not tracked (the ancestors' own tables and reader points protect
//! them). Layout: `FORMATS.md`, "Scrubbing and garbage collection".

use std::collections::{BTreeSet, HashMap};

use redb::{ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};

use super::store::{db_err, Loc, Mds, SCOS};
use crate::error::Result;

/// (SCO, index) -> (): positions no view reads any more, still in the SCO's object.
pub(super) const DEAD: TableDefinition<(u64, u32), ()> = TableDefinition::new("dead_clusters");
/// SCO -> how many of its positions `dead_clusters` holds.
pub(super) const SCO_DEAD: TableDefinition<u64, u32> = TableDefinition::new("sco_dead");
/// (SCO, index) -> the TLog that superseded it: positions a snapshot or a clone may read.
pub(super) const PINNED: TableDefinition<(u64, u32), u64> = TableDefinition::new("pinned_clusters");
/// TLog -> how many clones read this volume up to it (their views are boundaries too).
pub(super) const READER_POINTS: TableDefinition<u64, u64> = TableDefinition::new("reader_points");
/// (SCO, index) -> (): positions a Remap mapped again (a rollback): they may back several
/// addresses at once (the rollback's one zero cluster backs every hole), so they are never
/// found dead.
pub(super) const REMAPPED: TableDefinition<(u64, u32), ()> =
    TableDefinition::new("remapped_clusters");

/// Creates the tables (opening a store from before scrubbing adds them empty).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(DEAD).map_err(db_err)?;
    tx.open_table(SCO_DEAD).map_err(db_err)?;
    tx.open_table(PINNED).map_err(db_err)?;
    tx.open_table(READER_POINTS).map_err(db_err)?;
    tx.open_table(REMAPPED).map_err(db_err)?;
    Ok(())
}

/// Every boundary a view stands at, inside `tx`: the snapshots' TLogs (deleted ones too while their
/// records may still be on the backend: a backend restart would bring them back) and the reader
/// points.
pub(super) fn boundaries(tx: &WriteTransaction) -> Result<BTreeSet<u64>> {
    let mut b = super::snapshots::snapshot_tlogs(tx)?;
    for r in tx
        .open_table(READER_POINTS)
        .map_err(db_err)?
        .iter()
        .map_err(db_err)?
    {
        b.insert(r.map_err(db_err)?.0.value());
    }
    Ok(b)
}

/// Whether a view reads a position written in `t0` and superseded in `t`.
pub(super) fn viewed(bounds: &BTreeSet<u64>, t0: u64, t: u64) -> bool {
    t0 < t && bounds.range(t0..t).next().is_some()
}

/// The liveness tables inside one write transaction (the uncork's).
pub(super) struct Tracker<'t> {
    dead: Table<'t, (u64, u32), ()>,
    sco_dead: Table<'t, u64, u32>,
    pinned: Table<'t, (u64, u32), u64>,
    remapped: Table<'t, (u64, u32), ()>,
    /// Positions mapped so far in this transaction: mapping one again is a Remap.
    seen: std::collections::HashSet<(u64, u32)>,
    bounds: BTreeSet<u64>,
    /// SCOs sealed in TLogs up to this one are the ancestors' (a clone's lineage).
    base: u64,
    /// SCOs whose every position became dead in this transaction (see [`Tracker::finish`]).
    whole: Vec<u64>,
    /// The SCO table's rows read in this transaction (an uncork meets each SCO once per
    /// cluster): dropped when the transaction seals the SCO ([`Tracker::sealed`]).
    sco_rows: HashMap<u64, Option<(u64, u32, u32)>>,
    /// `sco_dead` as this transaction changed it, written by [`Tracker::finish`] (0: no row).
    dead_counts: HashMap<u64, u32>,
    /// `remapped_clusters` holds no row (it has one only after a rollback): no look-up then.
    no_remapped: bool,
    /// `pinned_clusters` holds no row (it has some only while a snapshot or a clone reads a
    /// superseded position): nothing to remove then.
    no_pinned: bool,
}

impl<'t> Tracker<'t> {
    pub(super) fn new(tx: &'t WriteTransaction) -> Result<Tracker<'t>> {
        let remapped = tx.open_table(REMAPPED).map_err(db_err)?;
        let pinned = tx.open_table(PINNED).map_err(db_err)?;
        Ok(Tracker {
            bounds: boundaries(tx)?,
            base: super::lineage::lineage_base(tx)?,
            dead: tx.open_table(DEAD).map_err(db_err)?,
            sco_dead: tx.open_table(SCO_DEAD).map_err(db_err)?,
            no_pinned: pinned.is_empty().map_err(db_err)?,
            pinned,
            no_remapped: remapped.is_empty().map_err(db_err)?,
            remapped,
            seen: Default::default(),
            whole: Vec::new(),
            sco_rows: HashMap::new(),
            dead_counts: HashMap::new(),
        })
    }

    /// Writes the dead counts this transaction changed; returns the SCOs it made wholly dead
    /// (their last position died here). Nothing reads those again, so the uncork drops their
    /// pages from the OS page cache (a hint; see `Volume::drop_dead_pages`). Called once,
    /// before the transaction commits.
    pub(super) fn finish(mut self) -> Result<Vec<u64>> {
        for (sco, n) in std::mem::take(&mut self.dead_counts) {
            if n == 0 {
                self.sco_dead.remove(sco).map_err(db_err)?;
            } else {
                self.sco_dead.insert(sco, n).map_err(db_err)?;
            }
        }
        Ok(self.whole)
    }

    /// The transaction wrote `sco`'s row in the SCO table.
    pub(super) fn sealed(&mut self, sco: u64) {
        self.sco_rows.remove(&sco);
    }

    /// `sco`'s row in the SCO table: (sealed in TLog, clusters, crc).
    fn sco_row(
        &mut self,
        scos: &Table<'t, u64, (u64, u32, u32)>,
        sco: u64,
    ) -> Result<Option<(u64, u32, u32)>> {
        if let Some(r) = self.sco_rows.get(&sco) {
            return Ok(*r);
        }
        let r = scos.get(sco).map_err(db_err)?.map(|v| v.value());
        self.sco_rows.insert(sco, r);
        Ok(r)
    }

    /// How many dead positions `sco` has, as this transaction left it.
    fn dead_count(&mut self, sco: u64) -> Result<u32> {
        if let Some(n) = self.dead_counts.get(&sco) {
            return Ok(*n);
        }
        Ok(self
            .sco_dead
            .get(sco)
            .map_err(db_err)?
            .map_or(0, |v| v.value()))
    }

    /// `old` lost its address in TLog `t` (`scos`: the SCO table of the same transaction; a
    /// SCO not in it yet is sealed in `t` itself).
    pub(super) fn superseded(
        &mut self,
        scos: &Table<'t, u64, (u64, u32, u32)>,
        old: Loc,
        t: u64,
    ) -> Result<()> {
        let pos = (old.sco, old.offset);
        if !self.no_remapped && self.remapped.get(pos).map_err(db_err)?.is_some() {
            return Ok(());
        }
        // (sealed in TLog, clusters, crc); none yet when sealed in `t` itself.
        let sealed = self.sco_row(scos, old.sco)?;
        let t0 = sealed.map_or(t, |v| v.0);
        if t0 <= self.base {
            return Ok(());
        }
        if viewed(&self.bounds, t0, t) {
            self.pinned.insert(pos, t).map_err(db_err)?;
            self.no_pinned = false;
        } else if self.dead.insert(pos, ()).map_err(db_err)?.is_none() {
            let n = 1 + self.dead_count(old.sco)?;
            self.dead_counts.insert(old.sco, n);
            if sealed.is_some_and(|s| s.1 == n) {
                self.whole.push(old.sco);
            }
        }
        Ok(())
    }

    /// `new` is mapped in TLog `t` (a write, or a Remap back to an older position: one mapped
    /// before in this transaction, or in a SCO sealed before `t`): it is read again.
    pub(super) fn mapped(
        &mut self,
        scos: &Table<'t, u64, (u64, u32, u32)>,
        new: Loc,
        t: u64,
    ) -> Result<()> {
        let pos = (new.sco, new.offset);
        let older = self.sco_row(scos, new.sco)?.is_some_and(|v| v.0 < t);
        if self.seen.insert(pos) && !older {
            // Mapped for the first time (a write, not a Remap): a position is superseded only
            // after it was mapped, and one mapped by an earlier transaction is in a SCO sealed
            // before `t`. So it is in neither `pinned_clusters` nor `dead_clusters`.
            return Ok(());
        }
        self.remapped.insert(pos, ()).map_err(db_err)?;
        self.no_remapped = false;
        if !self.no_pinned {
            self.pinned.remove(pos).map_err(db_err)?;
        }
        if self.dead.remove(pos).map_err(db_err)?.is_some() {
            tracing::warn!(
                sco = new.sco,
                index = new.offset,
                "a dead cluster was mapped again"
            );
            let n = self.dead_count(new.sco)?;
            self.dead_counts.insert(new.sco, n.saturating_sub(1));
        }
        Ok(())
    }
}

impl Mds {
    /// Moves every pinned position no view reads any more (a snapshot was deleted, a clone
    /// went) to dead, in one durable transaction; returns how many moved.
    pub(in crate::volume) fn reevaluate_pinned(&self) -> Result<u64> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let mut moved = 0;
        {
            let bounds = boundaries(&tx)?;
            let scos = tx.open_table(SCOS).map_err(db_err)?;
            let mut pinned = tx.open_table(PINNED).map_err(db_err)?;
            let mut gone = Vec::new();
            for r in pinned.iter().map_err(db_err)? {
                let (k, v) = r.map_err(db_err)?;
                let (sco, idx) = k.value();
                let t0 = scos.get(sco).map_err(db_err)?.map_or(0, |v| v.value().0);
                if !viewed(&bounds, t0, v.value()) {
                    gone.push((sco, idx));
                }
            }
            let mut dead = tx.open_table(DEAD).map_err(db_err)?;
            let mut sco_dead = tx.open_table(SCO_DEAD).map_err(db_err)?;
            for pos in gone {
                pinned.remove(pos).map_err(db_err)?;
                if dead.insert(pos, ()).map_err(db_err)?.is_none() {
                    let n = sco_dead
                        .get(pos.0)
                        .map_err(db_err)?
                        .map_or(0, |v| v.value());
                    sco_dead.insert(pos.0, n + 1).map_err(db_err)?;
                    moved += 1;
                }
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(moved)
    }

    /// The SCOs with dead positions: (SCO, how many), ascending.
    pub(in crate::volume) fn scos_with_dead(&self) -> Result<Vec<(u64, u32)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(SCO_DEAD).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// The dead positions of `sco`, ascending.
    pub(in crate::volume) fn dead_of(&self, sco: u64) -> Result<Vec<u32>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(DEAD).map_err(db_err)?;
        let mut out = Vec::new();
        for r in t.range((sco, 0)..=(sco, u32::MAX)).map_err(db_err)? {
            out.push(r.map_err(db_err)?.0.value().1);
        }
        Ok(out)
    }

    /// Rows of the liveness tables: (dead, pinned), for `strata volume info` and tests.
    pub(in crate::volume) fn liveness_rows(&self) -> Result<(u64, u64)> {
        use redb::ReadableTableMetadata;
        let tx = self.db.begin_read().map_err(db_err)?;
        let d = tx.open_table(DEAD).map_err(db_err)?.len().map_err(db_err)?;
        let p = tx
            .open_table(PINNED)
            .map_err(db_err)?
            .len()
            .map_err(db_err)?;
        Ok((d, p))
    }

    /// Makes the reader points exactly `want` (TLog -> clones reading up to it, from the
    /// namespace and the clones' lineages). When the recorded ones differ (a backend restart
    /// or a build before scrubbing lost them, an ancestor was not open when a clone came or
    /// went), what was found dead or pinned may be wrong: those rows are dropped and
    /// `liveness_from` set to `applied_tlog`, so the recount redoes them with the right
    /// boundaries. One durable transaction; returns whether they differed. The caller holds
    /// the rollback and uncork locks.
    pub(in crate::volume) fn reconcile_reader_points(
        &self,
        want: &std::collections::BTreeMap<u64, u64>,
    ) -> Result<bool> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(READER_POINTS).map_err(db_err)?;
            let mut have = std::collections::BTreeMap::new();
            for r in t.iter().map_err(db_err)? {
                let (k, v) = r.map_err(db_err)?;
                have.insert(k.value(), v.value());
            }
            if &have == want {
                return Ok(false);
            }
            t.retain(|_, _| false).map_err(db_err)?;
            for (k, v) in want {
                t.insert(*k, *v).map_err(db_err)?;
            }
            tx.open_table(DEAD)
                .map_err(db_err)?
                .retain(|_, _| false)
                .map_err(db_err)?;
            tx.open_table(SCO_DEAD)
                .map_err(db_err)?
                .retain(|_, _| false)
                .map_err(db_err)?;
            tx.open_table(PINNED)
                .map_err(db_err)?
                .retain(|_, _| false)
                .map_err(db_err)?;
            let mut meta = tx.open_table(super::store::META).map_err(db_err)?;
            let applied = meta
                .get("applied_tlog")
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            meta.insert("liveness_from", applied).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(true)
    }

    /// A clone reads this volume up to TLog `tlog` from now on (durably, before the clone is
    /// linked).
    pub(in crate::volume) fn add_reader_point(&self, tlog: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(READER_POINTS).map_err(db_err)?;
            let n = t.get(tlog).map_err(db_err)?.map_or(0, |v| v.value());
            t.insert(tlog, n + 1).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// A clone reading this volume up to TLog `tlog` went (deleted or flattened).
    pub(in crate::volume) fn remove_reader_point(&self, tlog: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(READER_POINTS).map_err(db_err)?;
            let n = t.get(tlog).map_err(db_err)?.map_or(0, |v| v.value());
            if n <= 1 {
                t.remove(tlog).map_err(db_err)?;
            } else {
                t.insert(tlog, n - 1).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_reads_what_was_current_at_its_boundary() {
        let b: BTreeSet<u64> = [5, 9].into_iter().collect();
        assert!(
            viewed(&b, 5, 6),
            "written in 5, superseded in 6: snapshot 5 reads it"
        );
        assert!(
            !viewed(&b, 6, 9),
            "superseded in 9 itself: snapshot 9 does not"
        );
        assert!(viewed(&b, 6, 10));
        assert!(!viewed(&b, 5, 5), "superseded in its own TLog");
        assert!(!viewed(&b, 10, 20));
    }
}
