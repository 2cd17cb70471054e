//! Recounting what TLogs superseded before liveness was kept (`liveness.rs`): a store from
//! before scrubbing, or one a backend restart loaded from a checkpoint, does not know which
//! positions the TLogs up to `meta.liveness_from` superseded. The scrubber replays those TLogs
//! from the backend, oldest first, into two scratch tables (non-durable transactions; a crash
//! starts the recount over), then records every superseded own position, in one durable
//! transaction, as dead or pinned by the boundaries that exist now — except one the map names
//! again at its address, one a Remap mapped again (in those TLogs or since: it may back other
//! addresses), or one already recorded.

use redb::{ReadableTable, TableDefinition};

use super::liveness::{boundaries, viewed, DEAD, PINNED, REMAPPED, SCO_DEAD};
use super::store::{db_err, Loc, Mds, CLUSTERS, META, SCOS};
use crate::error::Result;
use crate::volume::format::{Entry, CLUSTER_SIZE_U64};

/// Scratch: address -> its position as of the TLogs replayed so far.
const RECOUNT_MAP: TableDefinition<u64, [u8; 28]> = TableDefinition::new("recount_map");
/// Scratch: (SCO, index) -> (address, TLog that superseded it, hash).
const RECOUNT_GONE: TableDefinition<(u64, u32), (u64, u64, [u8; 16])> =
    TableDefinition::new("recount_gone");
/// Scratch: positions a Remap entry of the replayed TLogs mapped again.
const RECOUNT_REMAPPED: TableDefinition<(u64, u32), ()> = TableDefinition::new("recount_remapped");

impl Mds {
    /// Positions superseded in TLogs up to this one are not recorded (0: all are).
    pub(in crate::volume) fn liveness_from(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        let v = meta
            .get("liveness_from")
            .map_err(db_err)?
            .map_or(0, |v| v.value());
        Ok(v)
    }

    /// Empties the scratch tables (a recount starts).
    pub(in crate::volume) fn recount_start(&self) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(redb::Durability::None).map_err(db_err)?;
        tx.delete_table(RECOUNT_MAP).map_err(db_err)?;
        tx.delete_table(RECOUNT_GONE).map_err(db_err)?;
        tx.delete_table(RECOUNT_REMAPPED).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Replays TLog `t`'s `entries` into the scratch tables (not durably).
    pub(in crate::volume) fn recount_tlog(&self, t: u64, entries: &[Entry]) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(redb::Durability::None).map_err(db_err)?;
        {
            let mut map = tx.open_table(RECOUNT_MAP).map_err(db_err)?;
            let mut gone = tx.open_table(RECOUNT_GONE).map_err(db_err)?;
            let mut remapped = tx.open_table(RECOUNT_REMAPPED).map_err(db_err)?;
            for e in entries {
                if let Entry::Remap { sco, offset, .. } = *e {
                    remapped.insert((sco, offset), ()).map_err(db_err)?;
                }
                match *e {
                    Entry::Cluster {
                        address,
                        sco,
                        offset,
                        hash,
                    }
                    | Entry::Remap {
                        address,
                        sco,
                        offset,
                        hash,
                    } => {
                        let new = Loc { sco, offset, hash };
                        gone.remove((sco, offset)).map_err(db_err)?;
                        let old = map
                            .insert(address, new.encode())
                            .map_err(db_err)?
                            .map(|v| Loc::decode(&v.value()))
                            .transpose()?;
                        if let Some(old) = old.filter(|o| *o != new) {
                            gone.insert((old.sco, old.offset), (address, t, *old.hash.digest()))
                                .map_err(db_err)?;
                        }
                    }
                    Entry::Resize { .. } | Entry::Unmap { .. } => {
                        let (from, to) = match *e {
                            Entry::Unmap { address, count } => {
                                (address, address.saturating_add(count))
                            }
                            Entry::Resize { size } => (size.div_ceil(CLUSTER_SIZE_U64), u64::MAX),
                            _ => continue,
                        };
                        let mut cut = Vec::new();
                        for r in map.range(from..to).map_err(db_err)? {
                            let (k, v) = r.map_err(db_err)?;
                            cut.push((k.value(), Loc::decode(&v.value())?));
                        }
                        for (a, old) in cut {
                            map.remove(a).map_err(db_err)?;
                            gone.insert((old.sco, old.offset), (a, t, *old.hash.digest()))
                                .map_err(db_err)?;
                        }
                    }
                    Entry::ScoSealed { .. } | Entry::TlogClosed { .. } => {}
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Records what the replay found superseded (own positions sealed after `base`, not the
    /// zero cluster, not mapped again, not recorded yet) as dead or pinned, empties the
    /// scratch tables and clears `liveness_from`, in one durable transaction. Returns the
    /// positions found dead. The caller holds the uncork lock (the map does not change).
    pub(in crate::volume) fn recount_finish(&self, base: u64) -> Result<u64> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let mut found = 0;
        {
            let bounds = boundaries(&tx)?;
            let clusters = tx.open_table(CLUSTERS).map_err(db_err)?;
            let scos = tx.open_table(SCOS).map_err(db_err)?;
            let compacted = super::compaction::compacted_table(&tx)?;
            let gone = tx.open_table(RECOUNT_GONE).map_err(db_err)?;
            let scratch_remapped = tx.open_table(RECOUNT_REMAPPED).map_err(db_err)?;
            let mut remapped = tx.open_table(REMAPPED).map_err(db_err)?;
            for r in scratch_remapped.iter().map_err(db_err)? {
                remapped
                    .insert(r.map_err(db_err)?.0.value(), ())
                    .map_err(db_err)?;
            }
            let mut dead = tx.open_table(DEAD).map_err(db_err)?;
            let mut sco_dead = tx.open_table(SCO_DEAD).map_err(db_err)?;
            let mut pinned = tx.open_table(PINNED).map_err(db_err)?;
            for r in gone.iter().map_err(db_err)? {
                let (k, v) = r.map_err(db_err)?;
                let (sco, idx) = k.value();
                let (addr, t, _hash) = v.value();
                let Some(t0) = scos.get(sco).map_err(db_err)?.map(|v| v.value().0) else {
                    continue;
                };
                // A SCO dropped whole has nothing left on the backend to record (its rows went
                // with its compaction; the TLogs replayed may still name its positions).
                if t0 <= base
                    || remapped.get((sco, idx)).map_err(db_err)?.is_some()
                    || super::compaction::dropped_whole(&compacted, sco)?
                {
                    continue;
                }
                let now = clusters
                    .get(addr)
                    .map_err(db_err)?
                    .map(|v| Loc::decode(&v.value()))
                    .transpose()?;
                if now.is_some_and(|l| (l.sco, l.offset) == (sco, idx)) {
                    continue;
                }
                let pos = (sco, idx);
                if dead.get(pos).map_err(db_err)?.is_some()
                    || pinned.get(pos).map_err(db_err)?.is_some()
                {
                    continue;
                }
                if viewed(&bounds, t0, t) {
                    pinned.insert(pos, t).map_err(db_err)?;
                } else {
                    dead.insert(pos, ()).map_err(db_err)?;
                    let n = sco_dead.get(sco).map_err(db_err)?.map_or(0, |v| v.value());
                    sco_dead.insert(sco, n + 1).map_err(db_err)?;
                    found += 1;
                }
            }
        }
        tx.delete_table(RECOUNT_MAP).map_err(db_err)?;
        tx.delete_table(RECOUNT_GONE).map_err(db_err)?;
        tx.delete_table(RECOUNT_REMAPPED).map_err(db_err)?;
        tx.open_table(META)
            .map_err(db_err)?
            .insert("liveness_from", 0)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(found)
    }
}
