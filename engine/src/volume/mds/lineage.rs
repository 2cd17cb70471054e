//! The clone tables of the MetaDataStore: the volume's lineage (the volumes whose SCOs it
//! still reads), the template mark, and loading a clone's map. Layout: `FORMATS.md`, "Clones".

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::checkpoint::ScoRow;
use super::store::{db_err, Mds, META};
use crate::error::{Error, Result};
use crate::volume::backend::keys::Epochs;
use crate::volume::clone::{Ancestor, Lineage};
use crate::volume::format::VolumeId;

/// Ancestor index (0: the oldest) -> (volume id, its last TLog the volume reads).
const LINEAGE: TableDefinition<u64, ([u8; 16], u64)> = TableDefinition::new("lineage");
/// (ancestor index, first TLog) -> the epoch that ancestor uploaded them in.
const LINEAGE_EPOCHS: TableDefinition<(u64, u64), u64> = TableDefinition::new("lineage_epochs");

/// Creates the tables (opening a store from before clones adds them empty).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(LINEAGE).map_err(db_err)?;
    tx.open_table(LINEAGE_EPOCHS).map_err(db_err)?;
    Ok(())
}

/// Replaces the lineage inside `tx`.
fn write_lineage(tx: &WriteTransaction, lineage: &Lineage) -> Result<()> {
    let mut t = tx.open_table(LINEAGE).map_err(db_err)?;
    t.retain(|_, _| false).map_err(db_err)?;
    let mut e = tx.open_table(LINEAGE_EPOCHS).map_err(db_err)?;
    e.retain(|_, _| false).map_err(db_err)?;
    for (i, a) in lineage.ancestors().iter().enumerate() {
        let i = i as u64;
        t.insert(i, (a.volume.0, a.last_tlog)).map_err(db_err)?;
        for (first, epoch) in a.epochs.ranges() {
            e.insert((i, *first), *epoch).map_err(db_err)?;
        }
    }
    Ok(())
}

impl Mds {
    /// The lineage recorded (empty for a volume that is no clone).
    pub(in crate::volume) fn lineage(&self) -> Result<Lineage> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(LINEAGE).map_err(db_err)?;
        let e = tx.open_table(LINEAGE_EPOCHS).map_err(db_err)?;
        let mut v = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, val) = row.map_err(db_err)?;
            let (i, (volume, last_tlog)) = (k.value(), val.value());
            let mut ranges = Vec::new();
            for r in e.range((i, 0)..=(i, u64::MAX)).map_err(db_err)? {
                let (k, val) = r.map_err(db_err)?;
                ranges.push((k.value().1, val.value()));
            }
            let bad = |e: String| Error::Io(format!("mds.redb lineage: {e}"));
            v.push(Ancestor {
                volume: VolumeId(volume),
                last_tlog,
                epochs: Epochs::new(ranges).map_err(bad)?,
            });
        }
        Lineage::new(v).map_err(|e| Error::Io(format!("mds.redb lineage: {e}")))
    }

    /// Records `lineage` (a backend restart of a clone), durably.
    pub(in crate::volume) fn set_lineage(&self, lineage: &Lineage) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let format = if let Some(f) = super::compaction::scrubbed(&tx)? {
            f
        } else if lineage.is_empty() {
            super::store::MDS_FORMAT
        } else {
            super::store::MDS_FORMAT_CLONE
        };
        tx.open_table(META)
            .map_err(db_err)?
            .insert("format", format)
            .map_err(db_err)?;
        write_lineage(&tx, lineage)?;
        tx.commit().map_err(db_err)
    }

    /// The snapshot a template was made at (0: not a template).
    pub(in crate::volume) fn template(&self) -> Result<u64> {
        self.meta_or_zero("template")
    }

    /// Whether the next backup must write a checkpoint of every page before its manifest (a
    /// clone, or a flattened one, whose backend namespace has none that suffices).
    pub(in crate::volume) fn checkpoint_due(&self) -> Result<bool> {
        Ok(self.meta_or_zero("checkpoint_due")? != 0)
    }

    /// The store's format (tests).
    #[cfg(test)]
    pub(in crate::volume) fn format(&self) -> Result<u64> {
        self.meta_or_zero("format")
    }

    fn meta_or_zero(&self, k: &str) -> Result<u64> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        Ok(meta.get(k).map_err(db_err)?.map_or(0, |v| v.value()))
    }

    /// Sets the template mark (a backend restart of a template), durably.
    pub(in crate::volume) fn set_template(&self, snapshot: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(META)
            .map_err(db_err)?
            .insert("template", snapshot)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Completes loading a clone's map (its `pages` loaded with `load_page`): the SCO table
    /// (the parent's), `applied_tlog = n`, the size, the lineage; every page is dirty and a
    /// checkpoint due, since the clone's backend namespace holds none. Durable.
    pub(in crate::volume) fn finish_clone_load(
        &self,
        (n, size): (u64, u64),
        pages: &[u64],
        scos: &[ScoRow],
        lineage: &Lineage,
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut dirty = tx.open_table(super::store::DIRTY).map_err(db_err)?;
            for p in pages {
                dirty.insert(*p, ()).map_err(db_err)?;
            }
            let mut t = tx.open_table(super::store::SCOS).map_err(db_err)?;
            for (s, v) in scos {
                t.insert(*s, *v).map_err(db_err)?;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("applied_tlog", n).map_err(db_err)?;
            meta.insert("size", size).map_err(db_err)?;
            meta.insert("checkpoint_due", 1).map_err(db_err)?;
            if !lineage.is_empty() {
                meta.insert("format", super::store::MDS_FORMAT_CLONE)
                    .map_err(db_err)?;
            }
        }
        write_lineage(&tx, lineage)?;
        tx.commit().map_err(db_err)
    }

    /// The commit point of a flatten: the lineage goes, the SCO rows of ancestors (`gone`) go,
    /// every page is dirty and a checkpoint due. Durable.
    pub(in crate::volume) fn finish_flatten(&self, gone: &[u64]) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let clusters = tx.open_table(super::store::CLUSTERS).map_err(db_err)?;
            let mut dirty = tx.open_table(super::store::DIRTY).map_err(db_err)?;
            let mut last = None;
            for r in clusters.iter().map_err(db_err)? {
                let p = super::checkpoint::page_of(r.map_err(db_err)?.0.value());
                if last != Some(p) {
                    dirty.insert(p, ()).map_err(db_err)?;
                    last = Some(p);
                }
            }
            let mut t = tx.open_table(super::store::SCOS).map_err(db_err)?;
            for s in gone {
                t.remove(*s).map_err(db_err)?;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("checkpoint_due", 1).map_err(db_err)?;
            drop(meta);
            let format = super::compaction::scrubbed(&tx)?.unwrap_or(super::store::MDS_FORMAT);
            tx.open_table(META)
                .map_err(db_err)?
                .insert("format", format)
                .map_err(db_err)?;
        }
        write_lineage(&tx, &Lineage::default())?;
        tx.commit().map_err(db_err)
    }
}

/// The last TLog the volume reads from its ancestors, inside `tx` (0: no clone): its own SCOs
/// are those sealed after it.
pub(super) fn lineage_base(tx: &WriteTransaction) -> Result<u64> {
    let t = tx.open_table(LINEAGE).map_err(db_err)?;
    let last = t.last().map_err(db_err)?;
    Ok(last.map_or(0, |(_, v)| v.value().1))
}
