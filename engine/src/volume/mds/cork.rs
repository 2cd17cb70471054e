//! The cork: the effect of TLogs not yet on the backend, kept in memory on top of `mds.redb`
//! ([`Overlay`]); lookups consult it first. Uncorking applies the TLogs the backend manifest
//! now names to redb in one durable transaction, then deletes their local files and drops the
//! page cache of the SCOs it made wholly dead.

use std::collections::BTreeMap;
use std::io;

use crate::error::{Error, Result};
use crate::volume::files::io_err;
use crate::volume::format::{tlog_name, CLUSTER_SIZE_U64};
use crate::volume::mds::ranges::Ranges;
use crate::volume::mds::store::{Known, Loc, Op};
use crate::volume::state::{State, Volume};

/// The corked part of the MetaDataStore: the effect of TLogs not yet applied to `mds.redb`
/// (not yet known to be on the backend). Lookups consult it first.
#[derive(Debug, Default)]
pub(in crate::volume) struct Overlay {
    /// Per TLog, its changes in log order (what is applied to redb when the cork is lifted).
    pub(in crate::volume) ops: BTreeMap<u64, Vec<Op>>,
    /// The newest location of every address changed here, with the TLog that logged it.
    pub(in crate::volume) by_addr: BTreeMap<u64, (Loc, u64)>,
    /// A shrink not yet applied: redb entries at or past this address are stale (holes),
    /// unless `by_addr` has a newer one.
    pub(in crate::volume) trim: Option<u64>,
    /// Unmaps not yet applied: redb entries inside these ranges are holes, unless `by_addr`
    /// has a newer one.
    pub(in crate::volume) holes: Ranges,
    /// The TLogs in `ops` holding a shrink or an unmap (what `trim` and `holes` come from), so
    /// that an uncork recomputes those from them alone, not from every corked op.
    shaping: std::collections::BTreeSet<u64>,
}

impl Overlay {
    /// Appends a change other than a cluster's (those go in by [`Volume::map_clusters`]).
    pub(in crate::volume) fn push(&mut self, tlog: u64, op: Op) {
        if matches!(op, Op::Resize { shrink: true, .. } | Op::Unmap { .. }) {
            self.shaping.insert(tlog);
        }
        self.ops.entry(tlog).or_default().push(op);
    }

    /// The TLogs up to `last` were applied to redb: drops their changes, and recomputes
    /// `trim` and `holes` from the shrinks and unmaps still corked.
    fn applied(&mut self, last: u64) {
        self.ops = self.ops.split_off(&(last + 1));
        self.shaping = self.shaping.split_off(&(last + 1));
        let shaping = || {
            self.shaping
                .iter()
                .filter_map(|t| self.ops.get(t))
                .flatten()
        };
        self.trim = shaping()
            .filter_map(|op| match op {
                Op::Resize { size, shrink: true } => Some(size.div_ceil(CLUSTER_SIZE_U64)),
                _ => None,
            })
            .min();
        let mut holes = Ranges::default();
        for op in shaping() {
            if let Op::Unmap { from, to } = op {
                holes.insert(*from, *to);
            }
        }
        self.holes = holes;
    }
}

impl Volume {
    /// The MetaDataStore entry of cluster `ca`: the corked overlay first, then redb.
    pub(in crate::volume) fn lookup(&self, st: &State, ca: u64) -> Result<Option<Loc>> {
        if let Some((l, _)) = st.ov.by_addr.get(&ca) {
            return Ok(Some(*l));
        }
        if st.db_empty || st.ov.trim.is_some_and(|t| ca >= t) || st.ov.holes.contains(ca) {
            return Ok(None);
        }
        self.mds.get(ca)
    }

    /// Every mapped cluster with an address in `from..to` (one redb range scan, then the
    /// overlay on top).
    pub(in crate::volume) fn lookup_range(
        &self,
        st: &State,
        from: u64,
        to: u64,
    ) -> Result<BTreeMap<u64, Loc>> {
        let hi = to.min(st.ov.trim.unwrap_or(u64::MAX));
        let mut m: BTreeMap<u64, Loc> = if st.db_empty {
            BTreeMap::new()
        } else {
            let mut m: BTreeMap<u64, Loc> = self.mds.range(from, hi)?.into_iter().collect();
            for (lo, hi) in st.ov.holes.within(from, hi) {
                let mut tail = m.split_off(&lo);
                m.append(&mut tail.split_off(&hi));
            }
            m
        };
        for (a, (l, _)) in st.ov.by_addr.range(from..to) {
            m.insert(*a, *l);
        }
        Ok(m)
    }

    /// Records new locations of clusters (already logged in the open TLog) in the overlay and
    /// keeps the mapped-cluster count exact (with `known`, what the writer looked up in redb
    /// before taking the lock, when no commit came since).
    pub(in crate::volume) fn map_clusters(
        &self,
        st: &mut State,
        tlog: u64,
        locs: &[(u64, Loc)],
        known: Option<&Known>,
    ) -> Result<()> {
        let fresh: Vec<u64> = locs
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| !st.ov.by_addr.contains_key(a))
            .collect();
        let mut new = fresh.len() as u64;
        if !st.db_empty {
            let probe: Vec<u64> = fresh
                .iter()
                .copied()
                .filter(|a| st.ov.trim.is_none_or(|t| *a < t) && !st.ov.holes.contains(*a))
                .collect();
            new -= match known.and_then(|k| self.mds.count_known(k, &probe)) {
                Some(n) => n,
                None => self.mds.contains(&probe)?.iter().filter(|b| **b).count() as u64,
            };
        }
        st.mapped += new;
        st.logged += locs.len() as u64;
        let ops = st.ov.ops.entry(tlog).or_default();
        for (a, l) in locs {
            ops.push(Op::Cluster(*a, *l));
        }
        for (a, l) in locs {
            st.ov.by_addr.insert(*a, (*l, tlog));
        }
        Ok(())
    }

    /// Records a size change (already logged in the open TLog); a shrink drops the clusters
    /// past the new end.
    pub(in crate::volume) fn set_size(&self, st: &mut State, tlog: u64, size: u64) -> Result<()> {
        let shrink = size < st.size;
        st.ov.push(tlog, Op::Resize { size, shrink });
        st.size = size;
        if shrink {
            let keep = size.div_ceil(CLUSTER_SIZE_U64);
            st.mapped -= self.count_mapped(st, keep, u64::MAX)?;
            st.ov.by_addr.split_off(&keep);
            st.ov.trim = Some(st.ov.trim.unwrap_or(u64::MAX).min(keep));
        }
        Ok(())
    }

    /// Records that clusters `from..to` (below the size; already logged in the open TLog as
    /// an `Unmap`) read as zeros from now on; `gone` of them were mapped
    /// ([`Volume::count_mapped`]), which keeps the mapped-cluster count exact.
    pub(in crate::volume) fn unmap_clusters(
        &self,
        st: &mut State,
        tlog: u64,
        from: u64,
        to: u64,
        gone: u64,
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let mut tail = st.ov.by_addr.split_off(&from);
        st.ov.by_addr.append(&mut tail.split_off(&to));
        st.ov.holes.insert(from, to);
        st.ov.push(tlog, Op::Unmap { from, to });
        st.mapped -= gone;
        Ok(())
    }

    /// Mapped clusters (the overlay over redb) with an address in `from..to`, counted
    /// without building the map.
    pub(in crate::volume) fn count_mapped(&self, st: &State, from: u64, to: u64) -> Result<u64> {
        let in_ov = st.ov.by_addr.range(from..to).count() as u64;
        let hi = to.min(st.ov.trim.unwrap_or(u64::MAX));
        if st.db_empty || from >= hi {
            return Ok(in_ov);
        }
        let (ov, holes) = (&st.ov.by_addr, &st.ov.holes);
        Ok(in_ov
            + self
                .mds
                .count_range(from, hi, |a| !ov.contains_key(&a) && !holes.contains(a))?)
    }

    /// Lifts the cork for every TLog up to `last`, now on the backend (the manifest naming it
    /// was written): their MetaDataStore changes are applied to redb in one durable transaction
    /// that also records `applied_tlog = last`, the applied entries leave the overlay, and only
    /// then are the local TLog files deleted (redb now holds their effect, the backend their
    /// bytes). The redb commit runs without the state lock held for writing.
    pub(in crate::volume) fn uncork(&self, last: u64) -> Result<()> {
        self.check_halted()?;
        let _one = self.uncork_lock.lock();
        let (ops, size, from) = {
            let st = self.state.read();
            if last <= st.applied_tlog {
                return Ok(());
            }
            if last >= st.tlog.seq {
                return Err(Error::Io(format!(
                    "volume {}: the backend names TLog {} but TLog {} is still open locally",
                    self.id,
                    tlog_name(last),
                    tlog_name(st.tlog.seq)
                )));
            }
            let mut size = st.applied_size;
            let mut ops = Vec::new();
            for (t, v) in st.ov.ops.range(..=last) {
                for op in v {
                    if let Op::Resize { size: s, .. } = op {
                        size = *s;
                    }
                    ops.push((*t, *op));
                }
            }
            (ops, size, st.applied_tlog + 1)
        };
        // redb remembers a failed write (every later commit fails): halt, so that a reopen
        // (which replays the TLogs, still local) repairs it instead of corked entries and local
        // TLogs piling up behind a MetaDataStore that can no longer take them.
        let (db_empty, dead) = self.guarded(|| {
            let dead = self.mds.apply(&ops, last, size)?;
            Ok((self.mds.mapped()? == 0, dead))
        })?;
        {
            let mut st = self.state.write();
            for (_, op) in &ops {
                if let Op::Cluster(a, _) = op {
                    if st.ov.by_addr.get(a).is_some_and(|(_, t)| *t <= last) {
                        st.ov.by_addr.remove(a);
                    }
                }
            }
            // Only shrinks and unmaps still corked make redb entries stale (holes).
            st.ov.applied(last);
            st.applied_tlog = last;
            st.applied_size = size;
            st.db_empty = db_empty;
            st.backend_tlog = st.backend_tlog.max(last);
        }
        self.drop_dead_pages(&dead);
        for seq in from..=last {
            let p = self.tlog_dir.join(tlog_name(seq));
            match self.fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p.display(), e)),
            }
        }
        self.fs
            .sync_dir(&self.tlog_dir)
            .map_err(|e| io_err(self.tlog_dir.display(), e))?;
        Ok(())
    }
}
