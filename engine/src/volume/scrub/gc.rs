//! Deleting a volume's garbage, last and safely: only the kinds the scrubber marks (SCO
//! objects, metadata checkpoint objects), only once marked for `GC_Grace`, and only if a check
//! just before the delete still finds them garbage (not the SCO's current object; not an
//! object of the checkpoint the manifest and the MetaDataStore name). A crash anywhere leaves marks (or objects) that
//! the next pass deletes; a deleted object is never one a reader can be sent to.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::volume::format::{
    compacted_key, compacted_tlog_key, parse_sco_key, parse_tlog_key, Generation,
};
use crate::volume::mds::compaction::Compacted;
use crate::volume::state::{Remote, Volume};

use super::sweep::MDS_PREFIX;
use super::unix_now;
use super::ScrubOptions;

/// Keys deleted per backend call.
const BATCH: usize = 256;

impl Volume {
    /// Step 1 of a pass: compactions a crash cut short have the object they may have put
    /// marked garbage (unless it became the SCO's object after all).
    pub(super) fn gc_mark_inflight(&self, _remote: &Remote) -> Result<()> {
        for (counter, (sco, writer, epoch)) in self.mds.compactions_in_flight()? {
            let key = compacted_key(sco, epoch, writer, counter);
            tracing::info!(volume = %self.id, %key, "scrub: a compaction was cut short; its object is garbage");
            self.mds.abandon_compaction(counter, &key, unix_now())?;
        }
        for (counter, (tlog, writer, epoch)) in self.mds.tlog_compactions_in_flight()? {
            let key = compacted_tlog_key(tlog, epoch, writer, counter);
            tracing::info!(volume = %self.id, %key, "scrub: a TLog compaction was cut short; its object is garbage");
            self.mds
                .abandon_tlog_compaction(counter, &key, unix_now())?;
        }
        Ok(())
    }

    /// Step 4 of a pass: deletes the objects marked at least `grace` ago that are still
    /// garbage; returns how many were deleted. Checkpoint objects are checked and deleted with
    /// the pipeline held off (a checkpoint being written may reuse a directory's name).
    /// Paced as `opts.bandwidth` says: after each batch the pass rests (`super::rest_after`;
    /// deleting many objects at once is a burst of metadata work for the store).
    pub(super) fn gc_delete(&self, remote: &Remote, opts: &ScrubOptions) -> Result<u64> {
        let (grace, bandwidth) = (opts.grace, opts.bandwidth);
        let now = unix_now();
        let due: Vec<String> = self
            .mds
            .gc_pending()?
            .into_iter()
            .filter(|(_, at)| now.saturating_sub(*at) >= grace.as_secs())
            .map(|(k, _)| k)
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        self.fenced_write(remote)?;
        let (mds, scos): (Vec<String>, Vec<String>) =
            due.into_iter().partition(|k| k.starts_with(MDS_PREFIX));
        let marked = self.marked()?;
        let mut deleted = self.gc_delete_checked(remote, &scos, bandwidth, |k| {
            self.still_garbage(remote, k, &marked)
        })?;
        if !mds.is_empty() {
            let g = self.hold_uploads();
            if let Some(refs) = self.checkpoint_refs(&g)? {
                // No rest here: the uploads are held off meanwhile.
                deleted += self.gc_delete_checked(remote, &mds, 0, |k| Ok(!refs.contains(k)))?;
            }
        }
        Ok(deleted)
    }

    /// The fenced write a deletion follows (`Volume::fence`): a gateway that lost the backend
    /// to another (a take-over) learns it here and deletes nothing.
    fn fenced_write(&self, remote: &Remote) -> Result<()> {
        remote.block_on(
            "scrub: the manifest's fenced write",
            self.fence(&*remote.store),
        )?
    }

    /// Deletes the keys of `due` that `garbage` still says are garbage, unmarks the others.
    fn gc_delete_checked(
        &self,
        remote: &Remote,
        due: &[String],
        bandwidth: u64,
        garbage: impl Fn(&str) -> Result<bool>,
    ) -> Result<u64> {
        let mut del = Vec::new();
        let mut keep = Vec::new();
        for key in due {
            if garbage(key)? {
                del.push(key.clone());
            } else {
                tracing::warn!(volume = %self.id, %key, "scrub: an object marked garbage is in use; unmarked");
                keep.push(key.clone());
            }
        }
        self.mds.gc_unmark(&keep)?;
        let mut deleted = 0;
        for chunk in del.chunks(BATCH) {
            let started = std::time::Instant::now();
            let what = format!("scrub: delete {} objects", chunk.len());
            remote
                .block_on(&what, remote.store.delete_many(chunk))?
                .map_err(|e| Error::Backend {
                    what: what.clone(),
                    source: e,
                })?;
            self.mds.gc_done(chunk)?;
            deleted += chunk.len() as u64;
            super::rest_after(bandwidth, started.elapsed());
        }
        Ok(deleted)
    }

    /// The check just before a delete (and the sweep's rule): `key` is a SCO object that is
    /// not the SCO's current one, or a TLog copy under an epoch the manifest does not give
    /// that TLog. Anything else is never garbage.
    /// Objects marked garbage (`marked`: every key in `gc_pending`) never count as a SCO's
    /// or TLog's newest compacted object: an abandoned compaction's object (it may lack a
    /// position found live again) is marked the moment it is abandoned.
    pub(super) fn still_garbage(
        &self,
        remote: &Remote,
        key: &str,
        marked: &HashSet<String>,
    ) -> Result<bool> {
        if let Some((t, e, gen)) = parse_tlog_key(key) {
            return self.tlog_garbage(remote, t, e, gen, marked);
        }
        let Some((sco, e, gen)) = parse_sco_key(key) else {
            return Ok(false);
        };
        let Some((tlog, _, _)) = self.mds.sco_row(sco)? else {
            return Ok(false);
        };
        if tlog <= self.lineage.read().base_tlog() {
            return Ok(false);
        }
        let epoch = self.epochs.read().of(tlog);
        let row = self.mds.compacted(sco)?;
        let listed = if row.is_none() && e == epoch {
            let what = "scrub: list a SCO's compacted objects";
            unmarked(
                self.compacted_objects(what, remote, &remote.store, sco, epoch)
                    .map_err(|f| f.into_error(what))?,
                marked,
            )
        } else {
            Vec::new()
        };
        Ok(sco_garbage(e, gen, epoch, row, &listed))
    }

    /// Whether the object of TLog `t` uploaded in epoch `e` (compacted generation `gen`, or
    /// the original) is garbage: only for a TLog applied (the manifest names it) and the
    /// volume's own; then as [`sco_garbage`] says: a copy under another epoch, an original once
    /// a compacted object holds the TLog, a compacted object other than the current one.
    pub(super) fn tlog_garbage(
        &self,
        remote: &Remote,
        t: u64,
        e: u64,
        gen: Option<Generation>,
        marked: &HashSet<String>,
    ) -> Result<bool> {
        let listed = |epoch: u64| -> Result<Vec<Generation>> {
            let what = format!("scrub: list TLog {t}'s compacted objects");
            let objs = remote.block_on(
                &what,
                crate::volume::backend::tlog_object::compacted_tlogs(&*remote.store, t, epoch),
            )??;
            Ok(unmarked(objs, marked))
        };
        self.tlog_rule(t, e, gen, listed)
    }

    /// [`Volume::tlog_garbage`] with the TLog's compacted generations of its upload epoch
    /// from `listed` (asked only when no row records them).
    pub(super) fn tlog_rule(
        &self,
        t: u64,
        e: u64,
        gen: Option<Generation>,
        listed: impl FnOnce(u64) -> Result<Vec<Generation>>,
    ) -> Result<bool> {
        let applied = self.mds.meta()?.applied_tlog;
        if t > applied || t <= self.lineage.read().base_tlog() {
            return Ok(false);
        }
        let epoch = self.epochs.read().of(t);
        // A compacted TLog always has an object (`kept` is its cluster entries, maybe none).
        let row = self
            .mds
            .tlog_compacted(t)?
            .map(|c| Compacted { kept: 1, ..c });
        let listed = if row.is_none() && e == epoch {
            listed(epoch)?
        } else {
            Vec::new()
        };
        Ok(sco_garbage(e, gen, epoch, row, &listed))
    }

    /// Every key marked garbage.
    pub(super) fn marked(&self) -> Result<HashSet<String>> {
        Ok(self.mds.gc_pending()?.into_iter().map(|(k, _)| k).collect())
    }

    /// An abandoned compaction's object `key` (marked already) is deleted at once, so that no
    /// later listing (after a backend restart lost the marks) takes it for the newest one; a
    /// failed delete leaves it to the collector.
    pub(super) fn drop_abandoned(&self, remote: &Remote, key: &str) -> Result<()> {
        self.fenced_write(remote)?;
        let what = format!("scrub: delete {key}");
        match remote.block_on(&what, remote.store.delete(key))? {
            Ok(()) => self.mds.gc_done(&[key.to_string()]),
            Err(e) if e.is_not_found() => self.mds.gc_done(&[key.to_string()]),
            Err(e) => {
                tracing::warn!(volume = %self.id, %key, error = %e, "scrub: an abandoned compaction's object stays for the collector");
                Ok(())
            }
        }
    }
}

/// The generations of `objs` ((generation, key), from a listing) whose key is not marked.
pub(super) fn unmarked(
    objs: Vec<(Generation, String)>,
    marked: &HashSet<String>,
) -> Vec<Generation> {
    objs.into_iter()
        .filter(|(_, k)| !marked.contains(k))
        .map(|(g, _)| g)
        .collect()
}

/// Whether a SCO object (epoch `e`, compacted generation `gen` or the original) is garbage,
/// for a SCO uploaded in `epoch` whose `compacted` row is `row` and whose compacted objects
/// of that epoch on the backend are `listed` (looked at only without a row: a backend restart
/// forgot the compactions). A copy under another epoch is garbage (a crashed upload's: the
/// manifest names this one); an original is garbage once a compacted object holds the SCO;
/// a compacted object unless it is the current one (the row's, else the newest listed: any
/// of them holds every position live now, since positions only die).
pub(super) fn sco_garbage(
    e: u64,
    gen: Option<Generation>,
    epoch: u64,
    row: Option<Compacted>,
    listed: &[Generation],
) -> bool {
    if e != epoch {
        return true;
    }
    match (row, gen) {
        (Some(_), None) => true,
        (Some(r), Some(g)) => r.kept == 0 || (r.writer, r.counter) != g,
        (None, None) => !listed.is_empty(),
        (None, Some(g)) => listed.iter().max() != Some(&g),
    }
}

/// Every key under `prefix` in the volume's namespace.
pub(super) fn list_keys(remote: &Remote, prefix: &str) -> Result<Vec<String>> {
    let what = format!("scrub: list {prefix}");
    super::resolve::list_all(&what, remote, &remote.store, prefix).map_err(|f| f.into_error(&what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(writer: u64, counter: u64, kept: u32) -> Option<Compacted> {
        Some(Compacted {
            writer,
            counter,
            kept,
        })
    }

    #[test]
    fn which_sco_objects_are_garbage() {
        // Another epoch's copy.
        assert!(sco_garbage(1, None, 2, None, &[]));
        // The original while it is the SCO's object; once compacted (recorded or listed).
        assert!(!sco_garbage(2, None, 2, None, &[]));
        assert!(sco_garbage(2, None, 2, c(3, 4, 10), &[]));
        assert!(sco_garbage(2, None, 2, None, &[(3, 4)]));
        // Compacted: the current one stays, the others go.
        assert!(!sco_garbage(2, Some((3, 4)), 2, c(3, 4, 10), &[]));
        assert!(sco_garbage(2, Some((3, 3)), 2, c(3, 4, 10), &[]));
        assert!(sco_garbage(2, Some((3, 4)), 2, c(3, 4, 0), &[]));
        assert!(!sco_garbage(2, Some((3, 4)), 2, None, &[(3, 4), (3, 2)]));
        assert!(sco_garbage(2, Some((3, 2)), 2, None, &[(3, 4), (3, 2)]));
    }

    #[test]
    fn a_marked_compacted_object_never_counts_as_the_newest() {
        // (3, 5) is an abandoned compaction's object: marked the moment it was abandoned.
        let marked: HashSet<String> = [compacted_key(7, 2, 3, 5)].into();
        let both = vec![
            ((3, 4), compacted_key(7, 2, 3, 4)),
            ((3, 5), compacted_key(7, 2, 3, 5)),
        ];
        let listed = unmarked(both, &marked);
        assert_eq!(listed, vec![(3, 4)]);
        assert!(sco_garbage(2, Some((3, 5)), 2, None, &listed));
        assert!(!sco_garbage(2, Some((3, 4)), 2, None, &listed));
        // Only the abandoned one: the original stays the SCO's object.
        let alone = unmarked(vec![((3, 5), compacted_key(7, 2, 3, 5))], &marked);
        assert!(!sco_garbage(2, None, 2, None, &alone));
        assert!(sco_garbage(2, Some((3, 5)), 2, None, &alone));
    }

    #[test]
    fn tlog_keys_parse() {
        assert_eq!(parse_tlog_key("tlog/0000000000000007"), Some((7, 0, None)));
        assert_eq!(
            parse_tlog_key("tlog/0000000000000007.0000000000000002"),
            Some((7, 2, None))
        );
        assert_eq!(
            parse_tlog_key(&compacted_tlog_key(7, 2, 3, 4)),
            Some((7, 2, Some((3, 4))))
        );
        assert_eq!(parse_tlog_key("tlog/7"), None);
        assert_eq!(parse_tlog_key("sco/0000000000000007"), None);
        assert_eq!(parse_sco_key(&compacted_tlog_key(7, 2, 3, 4)), None);
    }
}
