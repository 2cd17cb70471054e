//! Flatten: a clone made independent of its ancestors.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::progress::{cancelled_error, Progress};
use crate::volume::format::{CLUSTER_SIZE, CLUSTER_SIZE_U64};
use crate::volume::mds::store::Loc;
use crate::volume::state::Volume;

/// Clusters looked at (and copied) at a time.
const STEP: u64 = 1024;

/// What a flatten did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flattened {
    /// Clusters copied from ancestors into the volume's own SCOs.
    pub(crate) clusters: u64,
}

impl Volume {
    /// Makes the clone independent (steps in the module doc of `clone`): every cluster it
    /// still reads from an ancestor is written again into its own SCOs, where it still maps
    /// there (a newer write wins); everything is uploaded; then the lineage and the ancestors'
    /// SCO rows go in one durable transaction (the commit point), and a checkpoint of every
    /// page goes up with a manifest without lineage. Cancelled or cut short before the commit
    /// point, the volume is still a clone that reads the same (partly copied). Needs the
    /// backend. A volume that is no clone is left alone.
    pub(crate) fn flatten(&self, p: &dyn Progress) -> Result<Flattened> {
        // No rollback meanwhile: it could point clusters back at an ancestor's SCOs.
        let _one = self.rollback_lock.lock();
        let lineage = self.lineage();
        let mut done = Flattened::default();
        if lineage.is_empty() {
            return Ok(done);
        }
        // Its clones are made at its snapshot, which needs the TLogs before the flatten.
        self.check_writable()?;
        let remote = self
            .remote
            .lock()
            .clone()
            .ok_or_else(|| Error::Io("a flatten needs the volume's backend".into()))?;
        let base = lineage.base_tlog();
        let total = self.size().div_ceil(CLUSTER_SIZE_U64);
        let mut at = 0;
        while at < total {
            if p.cancelled() {
                return Err(cancelled_error());
            }
            p.step(at, total);
            let end = (at + STEP).min(total);
            done.clusters += self.copy_up(at, end, base)?;
            at = end;
        }
        p.step(total, total);
        // Everything the clone reads is its own now (and on the backend once this returns).
        remote.rt.block_on(self.backup(&*remote.store, true))?;
        {
            let _uploads = self.hold_uploads();
            let gone: BTreeSet<u64> = self
                .state
                .read()
                .scos
                .iter()
                .filter(|(_, e)| e.tlog <= base)
                .map(|(s, _)| *s)
                .collect();
            // Checked a step at a time (writes go on: they never map to an ancestor's SCO,
            // and no rollback runs).
            let total = self.size().div_ceil(CLUSTER_SIZE_U64);
            let mut at = 0;
            while at < total {
                let end = (at + 65_536).min(total);
                let st = self.state.read();
                let map = self.lookup_range(&st, at, end)?;
                if let Some((a, _)) = map.iter().find(|(_, l)| gone.contains(&l.sco)) {
                    return Err(Error::Io(format!(
                        "flatten: cluster {a} still reads an ancestor's SCO after the copy"
                    )));
                }
                at = end;
            }
            let gone: Vec<u64> = gone.into_iter().collect();
            // The commit point.
            self.mds.finish_flatten(&gone)?;
            let mut st = self.state.write();
            for s in &gone {
                st.scos.remove(s);
            }
            *self.lineage.write() = Default::default();
        }
        // The checkpoint the flatten asked for and a manifest without lineage; should this
        // fail, the pipeline's next pass does it (the mark is durable).
        remote.rt.block_on(self.backup(&*remote.store, false))?;
        Ok(done)
    }

    /// Copies the clusters in `from..to` that still map to an ancestor's SCO (sealed by a TLog
    /// up to `base`) into the volume's own; returns how many.
    fn copy_up(&self, from: u64, to: u64, base: u64) -> Result<u64> {
        let (theirs, srcs) = {
            let st = self.state.read();
            let map = self.lookup_range(&st, from, to)?;
            let mut theirs: Vec<(u64, Loc)> = Vec::new();
            let mut srcs = Vec::new();
            for (a, l) in map {
                if st.scos.get(&l.sco).is_some_and(|e| e.tlog <= base) {
                    theirs.push((a, l));
                    srcs.push(self.sco_source(&st, l.sco)?);
                }
            }
            (theirs, srcs)
        };
        if theirs.is_empty() {
            return Ok(0);
        }
        let mut data = vec![0u8; theirs.len() * CLUSTER_SIZE];
        // Runs contiguous in one SCO: one ranged GET each (the cluster cache first).
        let mut i = 0;
        while i < theirs.len() {
            let mut j = i + 1;
            while j < theirs.len()
                && j - i < 256
                && theirs[j].1.sco == theirs[i].1.sco
                && theirs[j].1.offset == theirs[j - 1].1.offset + 1
            {
                j += 1;
            }
            let run: Vec<Loc> = theirs[i..j].iter().map(|(_, l)| *l).collect();
            self.read_remote(
                &run,
                &mut data[i * CLUSTER_SIZE..j * CLUSTER_SIZE],
                0,
                srcs[i],
            )?;
            i = j;
        }
        let copied = self.guarded(|| {
            let mut st = self.state.write();
            let now = self.lookup_range(&st, from, to)?;
            let mut copied = 0;
            for (k, (a, l)) in theirs.iter().enumerate() {
                // A write since the read wins.
                if now.get(a) != Some(l) {
                    continue;
                }
                let c = &data[k * CLUSTER_SIZE..(k + 1) * CLUSTER_SIZE];
                self.append_hashed(&mut st, *a, c, Some(&[l.hash]), None)?;
                copied += 1;
            }
            st.write_gen += 1;
            self.roll_if_long(&mut st)?;
            Ok(copied)
        });
        self.start_sealed_writeback();
        copied
    }
}
